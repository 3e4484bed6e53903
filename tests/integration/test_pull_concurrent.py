"""Several blobs of one model in one pull_blobs call: large ones split into
ranges, small ones one stream, all at the same time within the connection
budget (the server counts blob GETs in flight), every byte verified."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import mvfetch  # noqa: E402
from checks import Checks  # noqa: E402
from faultserver import FaultServer  # noqa: E402
from mvreg import Registry  # noqa: E402
from util import sha256_file  # noqa: E402

CONNS = 4


def main():
    t = Checks()
    tmp = tempfile.mkdtemp(prefix="modelvol-pull-conc.")
    try:
        files = {}
        for i, size in enumerate([20 << 20, 12 << 20, 20 << 20 | 3, 300 << 10, 1, 0]):
            path = os.path.join(tmp, f"f{i}")
            files[mvfetch.random_file(path, size)] = (path, size)
        args = [f"{d}:{s}" for d, (p, s) in files.items()]
        flags = ["--plain-http", "--chunk-size", "4M", "--threshold", "8M",
                 "--connections", str(CONNS)]
        with FaultServer({d: p for d, (p, s) in files.items()}) as fs:
            out_dir = os.path.join(tmp, "out")
            os.makedirs(out_dir)
            rc, out, err = mvfetch.run(flags + ["blobs", f"{fs.addr}/models/c:v1", out_dir] + args)
            t.check("all blobs pulled", rc == 0, err)
            total = sum(s for p, s in files.values())
            t.check("every byte downloaded once", mvfetch.stats(out).get("downloaded") == total, out)
            for d, (p, s) in files.items():
                got = os.path.join(out_dir, d.split(":")[1])
                t.check(f"blob of {s} bytes identical", sha256_file(got) == d)
            ranged = [e for e in fs.blob_requests() if e[4] == 206 and e[3] != "bytes=0-0"]
            t.check("large blobs fetched in ranges", len(ranged) >= 13, str(len(ranged)))
            # The budget bounds data transfers; a blob's one-off URL resolution
            # may briefly add one more.
            t.check(f"at most {CONNS} (+1 resolving) transfers at once",
                    fs.max_inflight <= CONNS + 1, str(fs.max_inflight))
            t.check("transfers ran in parallel", fs.max_inflight >= 2, str(fs.max_inflight))

        with Registry(tmp=os.path.join(tmp, "reg")) as reg:
            d0 = next(iter(files))
            rc, out, err = mvfetch.run(["blob", f"{reg.addr}/models/none:v1", d0, files[d0][1],
                                        os.path.join(tmp, "x"), os.path.join(tmp, "x.st")])
            t.check("missing blob in a real registry: one-line 404 naming blob and host",
                    rc != 0 and d0 in err and f"404 from {reg.addr}" in err and
                    len(err.strip().splitlines()) == 1, err)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
