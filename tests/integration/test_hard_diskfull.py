"""Disk full (issue 8), the cache on a 64 MiB tmpfs (root only):

  * a manifest declaring more than the disk holds (an 80 MiB weight plus a
    small file) is refused before any layer download starts: one line
    naming the lack of space, no layer GET in the registry's access log;
  * with a ballast file leaving ~16 MiB free, a 28 MiB model fails with
    one line about space, nothing of it is visible (no blob, tree or temp
    file; `modelpull verify` clean); once the ballast is deleted the very
    same pull succeeds, byte-identical;
  * the same through modelvol-csi: NodePublishVolume answers
    RESOURCE_EXHAUSTED, nothing is mounted, and after freeing space the
    same publish succeeds.

test_cache_enospc.py covers a layer expanding beyond the disk and
test_csi_publish.py the plain RESOURCE_EXHAUSTED; this adds the up-front
refusal and the retry after freeing space."""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import csiclient  # noqa: E402
import csidaemon  # noqa: E402
import mounts  # noqa: E402
import hardlib  # noqa: E402
from checks import Checks  # noqa: E402
from mvreg import Registry  # noqa: E402
import util  # noqa: E402

PULL = ["pull", "--progress=none", "--connections", "4"]


def layer_gets(reg, sizes):
    log = reg.access_log()
    return [d for d in sizes if f"/blobs/{d}" in log]


def fill(path, nbytes):
    with open(path, "wb") as f:
        left = nbytes
        while left:
            n = min(left, 4 << 20)
            f.write(b"\0" * n)
            left -= n
        f.flush()
        os.fsync(f.fileno())


def nothing_visible(cache, digests):
    """No blob of `digests` stored (none may be reached before the refusal)
    or no incomplete blob (when some may complete first), no tree, no temp."""
    blobs = os.path.join(cache, "blobs", "sha256")
    have = set(os.listdir(blobs)) if os.path.isdir(blobs) else set()
    stray = [d for d in digests if d.split(":", 1)[1] in have]
    bad = [h for h in have if util.sha256_file(os.path.join(blobs, h)) != "sha256:" + h]
    trees = os.listdir(os.path.join(cache, "trees")) if os.path.isdir(
        os.path.join(cache, "trees")) else []
    tmpd = os.path.join(cache, "tmp")
    temps = os.listdir(tmpd) if os.path.isdir(tmpd) else []
    return (not stray and not bad and not trees and not temps,
            f"blobs={stray} unverified={bad} trees={trees} tmp={temps}")


def main():
    if os.geteuid() != 0:
        print("SKIP: mounting a tmpfs and bind mounts need root")
        sys.exit(77)
    t = Checks()
    tmp = tempfile.mkdtemp(prefix="modelvol-hard-diskfull.")
    small = os.path.join(tmp, "small")
    os.makedirs(small)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", small]).returncode:
        print("SKIP: cannot mount a tmpfs here")
        shutil.rmtree(tmp, ignore_errors=True)
        sys.exit(77)
    d = None
    try:
        cache = os.path.join(small, "cache")
        ballast = os.path.join(small, "ballast")
        with Registry(tmp=os.path.join(tmp, "reg")) as reg:
            hp, _ = hardlib.make_model(os.path.join(tmp, "huge"), {
                "a-config.json": 1024, "w.bin": 80 << 20})
            reg.push_model("models/huge", "v1", hp)
            fp, fwant = hardlib.make_model(os.path.join(tmp, "fit"), {
                "config.json": 3000, "w1.safetensors": 20 << 20, "w2.safetensors": 8 << 20})
            reg.push_model("models/fit", "v1", fp)
            huge = hardlib.manifest_sizes(reg, "models/huge", "v1")
            fit = hardlib.manifest_sizes(reg, "models/fit", "v1")
            hlayers = [dg for dg, s in huge.items() if s in (1024, 80 << 20)]

            # 1. Larger than the disk: refused before any layer download.
            rc, out, err = hardlib.modelpull(cache, *PULL, f"{reg.addr}/models/huge:v1")
            t.check("a model larger than the disk fails", rc != 0, out)
            t.check("with one line about space",
                    len(err.strip().splitlines()) == 1 and "space" in err.lower(), err)
            got = layer_gets(reg, hlayers)
            t.check("no layer download started", not got, str(got))
            ok, why = nothing_visible(cache, hlayers)
            t.check("nothing of it is visible", ok, why)

            # 2. Disk nearly full: fails cleanly, then the same pull succeeds.
            sv = os.statvfs(small)
            fill(ballast, sv.f_bavail * sv.f_frsize - (16 << 20))
            ref = f"{reg.addr}/models/fit:v1"
            rc, out, err = hardlib.modelpull(cache, *PULL, ref)
            t.check("pull on a full disk fails", rc != 0, out)
            t.check("one line naming the lack of space",
                    len(err.strip().splitlines()) == 1 and ("space" in err.lower() or
                                                            "ENOSPC" in err), err)
            ok, why = nothing_visible(cache, [dg for dg, s in fit.items() if s > 3000])
            t.check("nothing half-written visible", ok, why)
            ok, vout = hardlib.verify_clean(cache)
            t.check("verify clean after disk full", ok, vout)
            os.unlink(ballast)
            rc, out, err = hardlib.modelpull(cache, *PULL, ref)
            tree = out.strip().splitlines()[-1] if rc == 0 and out.strip() else ""
            t.check("after freeing space the same pull succeeds", rc == 0, err)
            t.check("and is byte-identical", tree and util.tree_digests(tree) == fwant)
            ok, vout = hardlib.verify_clean(cache)
            t.check("verify clean after the retry", ok, vout)
            rc, out, err = hardlib.modelpull(cache, "rm", ref)
            rc2, out2, err2 = hardlib.modelpull(cache, "gc", "--max-size", "0")
            t.check("rm + gc empty the cache for the CSI part", rc == 0 and rc2 == 0, err + err2)

            # 3. The plugin: RESOURCE_EXHAUSTED, then success after freeing.
            mounts.require_root()
            work = os.path.join(tmp, "csi")
            os.makedirs(work)
            sv = os.statvfs(small)
            fill(ballast, sv.f_bavail * sv.f_frsize - (16 << 20))
            d = csidaemon.Daemon(work, cache, metrics=False).start()
            tg = os.path.join(work, "target")
            code, details = csiclient.code_of(d.client.publish, tg, ref, volume_id="full",
                                              timeout=120)
            t.check("publish on a full disk -> RESOURCE_EXHAUSTED",
                    code.name == "RESOURCE_EXHAUSTED", f"{code.name}: {details}")
            t.check("the message names the lack of space", "space" in details.lower(), details)
            t.check("nothing mounted at the target", not mounts.mountinfo_lines(tg))
            os.unlink(ballast)
            code, details = csiclient.code_of(d.client.publish, tg, ref, volume_id="full",
                                              timeout=120)
            t.check("after freeing space the same publish succeeds", code.name == "OK", details)
            t.check("the published model is byte-identical", util.tree_digests(tg) == fwant)
            code, _ = csiclient.code_of(d.client.unpublish, tg, volume_id="full")
            t.check("unpublish", code.name == "OK" and not mounts.mountinfo_lines(tg))
            t.check("daemon exits 0", d.stop() == 0)
            d = None
            ok, vout = hardlib.verify_clean(cache)
            t.check("verify clean at the end", ok, vout)
    finally:
        if d:
            d.stop()
        for line in reversed(open("/proc/self/mountinfo").read().splitlines()):
            mp = line.split(" ")[4]
            if mp.startswith(tmp + "/") and mp != small:
                subprocess.run(["umount", "-l", mp], stderr=subprocess.DEVNULL)
        subprocess.run(["umount", small])
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
