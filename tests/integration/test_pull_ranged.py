"""Ranged parallel blob download against a real docker-registry, directly
and behind nginx with Basic auth redirecting blob GETs (307) to a separate
storage server block: several Range requests, identical bytes, no
Authorization header at the storage host, no credential in any output,
manifest verification."""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import mvfetch  # noqa: E402
from checks import Checks  # noqa: E402
from mvreg import Registry  # noqa: E402
from nginx import Nginx  # noqa: E402
from util import sha256_file  # noqa: E402

SIZE = 100 * 1024 * 1024 + 4321
USER, PASSWORD = "modeluser", "s3cret-Pa55word-xyz"


def main():
    t = Checks()
    tmp = tempfile.mkdtemp(prefix="modelvol-pull-ranged.")
    try:
        blob = os.path.join(tmp, "blob.bin")
        digest = mvfetch.random_file(blob, SIZE)
        with Registry(tmp=os.path.join(tmp, "reg")) as reg:
            mdigest = reg.push_model("models/big", "v1", {"model.safetensors": blob})
            ref = f"{reg.addr}/models/big:v1"
            flags = ["--chunk-size", "8M", "--threshold", "16M", "--connections", "8"]

            rc, out, err = mvfetch.run(flags + ["manifest", ref])
            t.check("manifest by tag", rc == 0 and out.splitlines()[0] == mdigest, err)
            rc, out, err = mvfetch.run(flags + ["manifest", f"{reg.addr}/models/big@{mdigest}"])
            t.check("manifest by digest", rc == 0 and out.splitlines()[0] == mdigest, err)
            rc, out, err = mvfetch.run(flags + ["manifest", f"{reg.addr}/models/big:nope"])
            t.check("unknown tag is a one-line 404", rc != 0 and "404" in err and
                    len(err.strip().splitlines()) == 1, err)

            outf, state = os.path.join(tmp, "out1"), os.path.join(tmp, "out1.state")
            rc, out, err = mvfetch.run(flags + ["blob", ref, digest, SIZE, outf, state])
            t.check("direct ranged pull succeeds", rc == 0, err)
            t.check("direct bytes identical", sha256_file(outf) == digest)
            t.check("state removed after success", not os.path.exists(state))
            ranged = [l for l in reg.access_log().splitlines()
                      if f"blobs/{digest}" in l and '" 206 ' in l]
            t.check("registry saw many 206 range responses", len(ranged) >= 13, str(len(ranged)))

            with Nginx(tmp, reg.addr, basic=(USER, PASSWORD), redirect_blobs=True,
                       storage_rate="40m") as ng:
                dc = mvfetch.write_docker_config(os.path.join(tmp, "docker"), {
                    ng.addr: {"username": USER, "password": PASSWORD}})
                env = {"DOCKER_CONFIG": dc}
                nref = f"{ng.addr}/models/big:v1"
                rc, out, err = mvfetch.run(flags + ["manifest", nref])
                t.check("Basic auth required without credentials", rc != 0 and "401" in err, err)
                rc, out, err = mvfetch.run(flags + ["manifest", nref], env=env)
                t.check("manifest through nginx with Basic auth", rc == 0, err)
                cfg = json.loads(out.split("\n", 2)[2])["config"]
                rc, out1, err1 = mvfetch.run(["small", nref, cfg["digest"], cfg["size"]], env=env)
                t.check("config blob through the 307 (redirect body ignored)",
                        rc == 0 and out1.strip() == str(cfg["size"]), err1)
                err += err1
                outf2, state2 = os.path.join(tmp, "out2"), os.path.join(tmp, "out2.state")
                rc, out2, err2 = mvfetch.run(flags + ["--progress", "json", "blob", nref, digest,
                                                     SIZE, outf2, state2], env=env)
                t.check("redirected ranged pull succeeds", rc == 0, err2)
                t.check("redirected bytes identical", sha256_file(outf2) == digest)
                st = mvfetch.stats(out2)
                t.check("downloaded counts every byte once", st.get("downloaded") == SIZE, out2)
                slog = ng.read_log("storage")
                ranges = {l.split('range="')[1].split('"')[0] for l in slog
                          if digest in l and '" 206 ' in l}
                t.check("storage served many distinct ranges", len(ranges) >= 13, str(len(ranges)))
                t.check("no Authorization header reached storage",
                        slog and all('auth="-"' in l for l in slog), "\n".join(slog[:3]))
                front = ng.read_log("front")
                t.check("registry answered the blob GET with 307",
                        any(digest in l and '" 307 ' in l for l in front), "\n".join(front[-5:]))
                everything = out + err + out2 + err2
                t.check("no credential in any output",
                        PASSWORD not in everything and USER + ":" not in everything)
                import base64
                b64 = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                t.check("no encoded credential in any output", b64 not in everything)

                bad = mvfetch.write_docker_config(os.path.join(tmp, "docker-bad"), {
                    ng.addr: {"auth": base64.b64encode(f"{USER}:wrong-{PASSWORD}".encode()).decode()}})
                rc, out, err = mvfetch.run(flags + ["manifest", nref], env={"DOCKER_CONFIG": bad})
                t.check("wrong password: 401 after retry, secret not echoed",
                        rc != 0 and "401" in err and PASSWORD not in err, err)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
