"""Disk full: the cache lives on an 8 MiB tmpfs. A model whose blob does
not fit, and an image whose small gzip layer expands beyond the free
space, both fail with one line saying the disk is full; nothing partial is
visible (no blob, layer or tree; verify is clean) and a model that fits
still pulls afterwards. Needs root for the tmpfs mount."""
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from checks import Checks  # noqa: E402
from mvreg import Registry  # noqa: E402
from util import BUILD_DIR, sha256_bytes  # noqa: E402

MODELPULL = os.path.join(BUILD_DIR, "modelpull")
ENV = dict(os.environ, DOCKER_CONFIG="/nonexistent-modelvol-test")


def run(cache, *args):
    p = subprocess.run([MODELPULL, "--cache", cache] + list(args), capture_output=True,
                       text=True, env=ENV, timeout=300)
    return p.returncode, p.stdout, p.stderr


def push_zero_image(reg, repo, size):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("models/zeros.bin")
        ti.size = size
        tf.addfile(ti, io.BytesIO(bytes(size)))
    gz = gzip.compress(raw.getvalue(), 6)
    layer = reg.push_blob(repo, gz)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": [sha256_bytes(raw.getvalue())]}})
    c = reg.push_blob(repo, cfg.encode())
    m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **c},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}]}
    reg.push_manifest(repo, "v1", m, m["mediaType"])
    return len(gz)


def visible(cache, sub):
    d = os.path.join(cache, sub)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def main():
    if os.geteuid() != 0:
        print("SKIP: mounting a small tmpfs needs root")
        sys.exit(77)
    t = Checks()
    tmp = tempfile.mkdtemp(prefix="modelvol-cache-enospc.")
    small = os.path.join(tmp, "small")
    os.makedirs(small)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", small]).returncode:
        print("SKIP: cannot mount tmpfs here")
        shutil.rmtree(tmp, ignore_errors=True)
        sys.exit(77)
    try:
        cache = os.path.join(small, "cache")
        with Registry(tmp=os.path.join(tmp, "reg")) as reg:
            reg.push_model("models/big", "v1", {"w.bin": os.urandom(12 << 20)})
            ok_files = {"w.bin": os.urandom(2 << 20), "config.json": b"{}"}
            reg.push_model("models/ok", "v1", ok_files)
            gz_len = push_zero_image(reg, "models/bomb", 12 << 20)
            t.check("the image layer itself is small", gz_len < (1 << 20), str(gz_len))

            rc, out, err = run(cache, "pull", "--progress=none", f"{reg.addr}/models/big:v1")
            t.check("blob larger than the disk fails", rc != 0, out)
            t.check("one line saying the disk is full",
                    len(err.strip().splitlines()) == 1 and "space" in err.lower(), err)
            t.check("no weight blob visible",
                    all(os.path.getsize(os.path.join(cache, "blobs/sha256", b)) < (1 << 20)
                        for b in visible(cache, "blobs/sha256")))
            t.check("no tree visible", visible(cache, "trees") == [])

            rc, out, err = run(cache, "pull", "--progress=none", f"{reg.addr}/models/bomb:v1")
            t.check("layer expanding beyond the disk fails", rc != 0, out)
            t.check("error says no space and names the layer",
                    "space" in err.lower() and "layer sha256:" in err and
                    len(err.strip().splitlines()) == 1, err)
            t.check("no extracted layer visible", visible(cache, "layers/sha256") == [])
            t.check("no work directory left", visible(cache, "tmp") == [])
            rc, out, err = run(cache, "verify")
            t.check("verify is clean after disk full", rc == 0, out + err)

            rc, out, err = run(cache, "pull", "--progress=none", f"{reg.addr}/models/ok:v1")
            tree = out.strip().splitlines()[-1] if rc == 0 else ""
            t.check("a model that fits still pulls", rc == 0, err)
            t.check("and is byte-identical", bool(tree) and all(
                open(os.path.join(tree, k), "rb").read() == v for k, v in ok_files.items()))
    finally:
        subprocess.run(["umount", small])
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
