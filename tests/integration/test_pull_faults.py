"""Faults real servers won't produce, from tests/lib/faultserver.py: wrong
bytes (digest mismatch: fatal, nothing verified left, resume record gone),
a truncated body, Range ignored (fall back to one stream), 500s then
success, 429 with Retry-After honoured, a stalled body (detected by the
stall timer and retried), an expiring storage URL (403 from storage: the
blob is resolved again), and a 404 (fatal, one line naming blob, host and
status)."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import mvfetch  # noqa: E402
from checks import Checks  # noqa: E402
from faultserver import FaultServer  # noqa: E402
from util import sha256_bytes, sha256_file  # noqa: E402

SIZE = 24 * 1024 * 1024 + 999
FLAGS = ["--plain-http", "--chunk-size", "4M", "--threshold", "8M", "--connections", "4",
         "--stall", "1", "--retries", "4"]


def pull(fs, tmp, name, digest, size=SIZE):
    outf = os.path.join(tmp, name)
    state = outf + ".state"
    rc, out, err = mvfetch.run(FLAGS + ["blob", f"{fs.addr}/models/f:v1", digest, size, outf, state])
    return rc, out, err, outf, state


def main():
    t = Checks()
    tmp = tempfile.mkdtemp(prefix="modelvol-pull-faults.")
    try:
        blob = os.path.join(tmp, "blob.bin")
        digest = mvfetch.random_file(blob, SIZE)
        small = os.path.join(tmp, "small.bin")
        sdigest = mvfetch.random_file(small, 300 * 1024)
        blobs = {digest: blob, sdigest: small}

        with FaultServer(blobs, "wrong") as fs:
            rc, out, err, outf, state = pull(fs, tmp, "wrong", digest)
            t.check("wrong bytes: fails", rc != 0, out)
            t.check("wrong bytes: one-line digest mismatch naming blob and host",
                    "digest mismatch" in err and digest in err and fs.addr in err and
                    len(err.strip().splitlines()) == 1, err)
            t.check("wrong bytes: no resume record left", not os.path.exists(state))
            rc, out, err, outf, state = pull(fs, tmp, "wrong-small", sdigest, 300 * 1024)
            t.check("wrong bytes in a single stream: fails", rc != 0 and "digest mismatch" in err,
                    err)

        with FaultServer(blobs, "truncate", count=3) as fs:
            rc, out, err, outf, state = pull(fs, tmp, "trunc", digest)
            t.check("truncated bodies are retried", rc == 0 and mvfetch.stats(out)["retries"] >= 3,
                    out + err)
            t.check("truncated: bytes identical", sha256_file(outf) == digest)
            # The bytes that arrived before the cut are kept: each retry asks
            # for the second half only.
            firsts, retries = {}, []
            for _, method, _, rng, _ in fs.log:
                if method != "GET" or not rng:
                    continue
                a, b = (int(v) for v in rng.split("=")[1].split("-"))
                if b == a:
                    continue
                if b in firsts:
                    retries.append((firsts[b], a, b))
                else:
                    firsts[b] = a
            t.check("truncated: each retry asks only for what was cut off",
                    len(retries) >= 3 and
                    all(a == a0 + (b - a0 + 1) // 2 for a0, a, b in retries), retries)

        with FaultServer(blobs, "norange") as fs:
            rc, out, err, outf, state = pull(fs, tmp, "norange", digest)
            t.check("Range ignored: falls back to one stream", rc == 0, err)
            t.check("Range ignored: bytes identical", sha256_file(outf) == digest)
            full = [e for e in fs.blob_requests() if e[4] == 200 and e[3] is None]
            t.check("Range ignored: a single full GET followed", len(full) == 1,
                    str(fs.blob_requests()))

        with FaultServer(blobs, "fail500", count=3) as fs:
            rc, out, err, outf, state = pull(fs, tmp, "f500", digest)
            t.check("500s then success", rc == 0 and sha256_file(outf) == digest, err)
            t.check("500s were retried", mvfetch.stats(out).get("retries", 0) >= 3, out)

        with FaultServer(blobs, "fail500", count=1000) as fs:
            rc, out, err, outf, state = pull(fs, tmp, "f500x", sdigest, 300 * 1024)
            t.check("endless 500s: gives up with a one-line error naming the status",
                    rc != 0 and "500" in err and fs.addr in err and
                    len(err.strip().splitlines()) == 1, err)

        with FaultServer(blobs, "429", count=1) as fs:
            rc, out, err, outf, state = pull(fs, tmp, "f429", sdigest, 300 * 1024)
            t.check("429 then success", rc == 0 and sha256_file(outf) == sdigest, err)
            reqs = fs.blob_requests()
            first429 = next(e[0] for e in reqs if e[4] == 429)
            after = [e[0] for e in reqs if e[0] > first429]
            t.check("Retry-After honoured (next request >= 1 s later)",
                    after and min(after) - first429 >= 0.95, str(reqs))

        with FaultServer(blobs, "stall", count=2) as fs:
            rc, out, err, outf, state = pull(fs, tmp, "stall", digest)
            t.check("stalled bodies are detected and retried",
                    rc == 0 and mvfetch.stats(out).get("retries", 0) >= 2, out + err)
            t.check("stall: bytes identical", sha256_file(outf) == digest)

        with FaultServer(blobs, "expire", count=2) as fs:
            rc, out, err, outf, state = pull(fs, tmp, "expire", digest)
            t.check("expired storage URL (403) is resolved again", rc == 0 and fs.generation >= 3,
                    f"gen={fs.generation} {err}")
            t.check("expire: bytes identical", sha256_file(outf) == digest)

        good = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
        gdig = sha256_bytes(good)
        other = "sha256:" + "0" * 64
        huge = b'{"schemaVersion":2,"x":"' + b"a" * (4 << 20) + b'"}'
        mt = "application/vnd.oci.image.manifest.v1+json"
        manifests = {"good": (good, mt, gdig), "lying": (good, mt, other), gdig: (good, mt, None),
                     other: (good, mt, None), "huge": (huge, mt, None)}
        with FaultServer({}, "ok", manifests=manifests) as fs:
            base = f"{fs.addr}/models/f"
            rc, out, err = mvfetch.run(["--plain-http", "manifest", base + ":good"])
            t.check("manifest matching Docker-Content-Digest", rc == 0 and
                    out.splitlines()[0] == gdig, err)
            rc, out, err = mvfetch.run(["--plain-http", "manifest", base + ":lying"])
            t.check("manifest not matching Docker-Content-Digest is refused",
                    rc != 0 and "digest mismatch" in err and fs.addr in err, err)
            rc, out, err = mvfetch.run(["--plain-http", "manifest", f"{base}@{gdig}"])
            t.check("manifest by digest verified", rc == 0, err)
            rc, out, err = mvfetch.run(["--plain-http", "manifest", f"{base}@{other}"])
            t.check("manifest by digest with other bytes is refused",
                    rc != 0 and "digest mismatch" in err, err)
            rc, out, err = mvfetch.run(["--plain-http", "manifest", base + ":huge"])
            t.check("manifest over 4 MiB is refused while reading", rc != 0 and "larger" in err,
                    err)

        with FaultServer(blobs, "404") as fs:
            rc, out, err, outf, state = pull(fs, tmp, "f404", digest)
            t.check("404 is fatal with blob, host and status in one line",
                    rc != 0 and digest in err and f"404 from {fs.addr}" in err and
                    len(err.strip().splitlines()) == 1, err)
            t.check("404 is not retried", len(fs.blob_requests()) == 1, str(fs.blob_requests()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
