"""Bad servers (issue 8), through `modelpull pull` and the cache, with a
real docker-registry:

  * wrong bytes: the registry's stored blob file is corrupted on disk, so
    the real server serves wrong bytes under the right digest. The pull
    fails with one line naming the digest mismatch and the blob; the blob
    never becomes visible (not in blobs/, no tree, no resume record) and
    `modelpull verify` is clean; once the registry is repaired the same
    pull succeeds;
  * registry killed mid-pull (SIGKILL behind nginx's rate-limited
    storage): the pull retries, then fails with a clear one-line error;
    a new registry process on the same port and data dir lets the same
    pull finish byte-identical, fetching only what was not kept;
  * a dead mirror in the registry config: the pull falls back to the
    origin.

tests/integration/test_pull_faults.py and test_pull_resume.py cover the
same faults for the bare puller (tests/tools/mvfetch) without the cache."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import hardlib  # noqa: E402
from hardlib import TimedNginx  # noqa: E402
from checks import Checks  # noqa: E402
from mvreg import Registry  # noqa: E402
from util import free_port, tree_digests, wait_for  # noqa: E402

PULL = ["pull", "--progress=none", "--connections", "4", "--chunk-size", "4M"]


def registry_blob_file(reg, digest):
    hx = digest.split(":", 1)[1]
    return os.path.join(reg.tmp, "data", "docker", "registry", "v2", "blobs", "sha256", hx[:2],
                        hx, "data")


def flip_byte(path, at):
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0xFF]))


def kill_registry(reg):
    reg.proc.send_signal(signal.SIGKILL)
    reg.proc.wait(timeout=30)
    reg.proc = None
    reg.log.close()


def main():
    t = Checks()
    tmp = tempfile.mkdtemp(prefix="modelvol-hard-bad.")
    try:
        paths, want = hardlib.make_model(os.path.join(tmp, "src"), {
            "model.safetensors": 40 << 20, "config.json": 777})
        with Registry(tmp=os.path.join(tmp, "reg")) as reg:
            reg.push_model("models/bad", "v1", paths)
            sizes = hardlib.manifest_sizes(reg, "models/bad", "v1")
            total = sum(sizes.values())
            weight = next(d for d, s in sizes.items() if s == 40 << 20)
            ref = f"{reg.addr}/models/bad:v1"

            # ---- wrong bytes -------------------------------------------
            cache = os.path.join(tmp, "cache-wrong")
            blobfile = registry_blob_file(reg, weight)
            t.check("found the registry's blob file", os.path.isfile(blobfile), blobfile)
            flip_byte(blobfile, (30 << 20) + 5)
            rc, out, err = hardlib.modelpull(cache, *PULL, ref)
            t.check("wrong bytes: the pull fails", rc != 0, out)
            t.check("wrong bytes: one line naming the digest mismatch and the blob",
                    "digest mismatch" in err and weight in err and
                    len(err.strip().splitlines()) == 1, err)
            hx = weight.split(":", 1)[1]
            t.check("wrong bytes: the blob is not visible",
                    not os.path.exists(os.path.join(cache, "blobs", "sha256", hx)))
            t.check("wrong bytes: no resume record kept",
                    not os.path.exists(os.path.join(cache, "ingest", hx + ".state")))
            trees = os.listdir(os.path.join(cache, "trees"))
            t.check("wrong bytes: no tree", trees == [], str(trees))
            ok, vout = hardlib.verify_clean(cache)
            t.check("wrong bytes: verify clean", ok, vout)
            flip_byte(blobfile, (30 << 20) + 5)
            rc, out, err = hardlib.modelpull(cache, *PULL, ref)
            tree = out.strip().splitlines()[-1] if rc == 0 and out.strip() else ""
            t.check("repaired registry: the same pull succeeds byte-identical",
                    rc == 0 and tree_digests(tree) == want, err)

            # ---- registry killed mid-pull, then restarted ---------------
            with TimedNginx(tmp, reg.addr, redirect_blobs=True, storage_rate="3m") as ng:
                nref = f"{ng.addr}/models/bad:v1"
                cache = os.path.join(tmp, "cache-kill")
                t0 = time.time()
                p = subprocess.Popen([hardlib.MODELPULL, "--cache", cache] + PULL + [nref],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=hardlib.ENV)
                try:
                    progressed = wait_for(lambda: p.poll() is not None or
                                          hardlib.kept_bytes(cache, sizes) >= (8 << 20), 60)
                    t.check("the pull recorded ranges before the registry died",
                            progressed and p.poll() is None)
                    kill_registry(reg)
                    t_kill = time.time()
                    out, err = p.communicate(timeout=120)
                except subprocess.TimeoutExpired:
                    p.kill()
                    out, err = p.communicate()
                took = time.time() - t_kill
                t.check("registry gone: the pull fails", p.returncode not in (0, None), out)
                t.check("registry gone: one clear line naming the blob and the retries",
                        len(err.strip().splitlines()) == 1 and weight in err and
                        ("gave up" in err or "retr" in err), err)
                t.check(f"registry gone: it retried for a while first ({took:.1f}s)", took >= 1.0)
                kept = hardlib.kept_bytes(cache, sizes)
                t.check("some of the blob was kept for resume", kept >= (8 << 20), str(kept))
                reg.start()  # a new process, same port and data dir
                t_restart = time.time()
                rc, out, err = hardlib.modelpull(cache, *PULL, nref)
                tree = out.strip().splitlines()[-1] if rc == 0 and out.strip() else ""
                t.check("after the restart the same pull succeeds byte-identical",
                        rc == 0 and tree_digests(tree) == want, err)
                after = ng.bytes_since(t_restart)
                before = ng.settled_bytes(t0 - 0.01, t_restart)
                print(f"FIGURE registry kill: served before {before} B, kept {kept} B, "
                      f"fetched after restart {after} B of {total} B", flush=True)
                t.check("the resumed pull fetched only what was not kept",
                        after <= total - kept, f"{after} > {total - kept}")
                ok, vout = hardlib.verify_clean(cache)
                t.check("verify clean after the resume", ok, vout)

            # ---- dead mirror ------------------------------------------
            cfgp = os.path.join(tmp, "mirror.json")
            with open(cfgp, "w") as f:
                json.dump({"registries": {reg.addr: {
                    "mirrors": [f"http://127.0.0.1:{free_port()}"]}}}, f)
            cache = os.path.join(tmp, "cache-mirror")
            nlog = len(reg.access_log())
            rc, out, err = hardlib.modelpull(cache, *PULL, ref, config=cfgp)
            tree = out.strip().splitlines()[-1] if rc == 0 and out.strip() else ""
            t.check("dead mirror: falls back to the origin, byte-identical",
                    rc == 0 and tree_digests(tree) == want, err)
            t.check("dead mirror: the origin served the blob",
                    f"/blobs/{weight}" in reg.access_log()[nlog:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
