"""Crash safety: modelpull is killed with SIGKILL while it downloads and
ingests blobs, while it extracts tar layers and while it builds trees (each
moment detected by polling the cache, plus kills at random instants).
After every kill nothing incomplete is visible: `modelpull verify` is
clean and every tree in trees/ is complete. A final pull of each model is
byte-identical and leaves no temp files behind."""
import gzip
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from checks import Checks  # noqa: E402
from mvfetch import random_file  # noqa: E402
from mvreg import Registry  # noqa: E402
from util import BUILD_DIR, sha256_bytes, sha256_file, wait_for  # noqa: E402

MODELPULL = os.path.join(BUILD_DIR, "modelpull")
ENV = dict(os.environ, DOCKER_CONFIG="/nonexistent-modelvol-test")
N_FILES = 3000


def run(cache, *args):
    p = subprocess.run([MODELPULL, "--cache", cache] + list(args), capture_output=True,
                       text=True, env=ENV, timeout=300)
    return p.returncode, p.stdout, p.stderr


def image_layers():
    """Two tar+gzip layers: many small files under models/, then an upper
    layer deleting one of them. Returns ([(gz, diff_id)], expected files)."""
    expected = {}
    raw1 = io.BytesIO()
    with tarfile.open(fileobj=raw1, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(N_FILES):
            data = (f"file {i}\n" * (i % 7 + 1)).encode()
            ti = tarfile.TarInfo(f"models/d{i % 30}/f{i}.txt")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
            expected[f"d{i % 30}/f{i}.txt"] = data
    raw2 = io.BytesIO()
    with tarfile.open(fileobj=raw2, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("models/d0/.wh.f0.txt")
        tf.addfile(ti, io.BytesIO(b""))
        del expected["d0/f0.txt"]
    out = []
    for raw in (raw1.getvalue(), raw2.getvalue()):
        out.append((gzip.compress(raw, 1), sha256_bytes(raw)))
    return out, expected


def push_image(reg, repo, tag, layers):
    descs = []
    for gz, _ in layers:
        d = reg.push_blob(repo, gz)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **d})
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": [l[1] for l in layers]}}).encode()
    c = reg.push_blob(repo, cfg)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **c},
                "layers": descs}
    return reg.push_manifest(repo, tag, manifest, manifest["mediaType"])


def visible_state_ok(cache):
    """Every tree in trees/ is complete (meta.json and root present)."""
    tdir = os.path.join(cache, "trees")
    for name in os.listdir(tdir) if os.path.isdir(tdir) else []:
        d = os.path.join(tdir, name)
        if not (os.path.isfile(os.path.join(d, "meta.json")) and os.path.isdir(
                os.path.join(d, "root"))):
            return False, f"incomplete tree {name}"
    return True, ""


def tree_ok(tree, expected):
    if not tree or not os.path.isdir(tree):
        return False
    count = 0
    for root, _, files in os.walk(tree):
        count += len(files)
    if count != len(expected):
        return False
    for rel, want in expected.items():
        p = os.path.join(tree, rel)
        if isinstance(want, str):
            if sha256_file(p) != want:
                return False
        elif open(p, "rb").read() != want:
            return False
    return True


def poll_then_kill(proc, cache, want, deadline_s=30):
    """Kills proc once want(cache) is true (bounded), or when it exits."""
    wait_for(lambda: proc.poll() is not None or want(cache), deadline_s, step=0.001)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


def ingesting(cache):
    d = os.path.join(cache, "ingest")
    return os.path.isdir(d) and any(os.path.getsize(os.path.join(d, f)) > 0
                                    for f in os.listdir(d) if f.endswith(".partial"))


def building(cache):
    d = os.path.join(cache, "tmp")
    return os.path.isdir(d) and any(f.startswith(("tree-", "layer-")) for f in os.listdir(d))


def main():
    if not os.access(MODELPULL, os.X_OK):
        print(f"modelpull not built at {MODELPULL}")
        sys.exit(1)
    t = Checks()
    rnd = random.Random(int(os.environ.get("MV_SEED", "0")) or None)
    tmp = tempfile.mkdtemp(prefix="modelvol-cache-crash.")
    try:
        w = os.path.join(tmp, "w.bin")
        wd = random_file(w, 48 << 20)
        raw_files = {"model.safetensors": w, "config.json": b'{"crash":1}'}
        raw_expected = {"model.safetensors": wd, "config.json": b'{"crash":1}'}
        layers, img_expected = image_layers()
        cache = os.path.join(tmp, "cache")
        with Registry(tmp=os.path.join(tmp, "reg")) as reg:
            reg.push_model("models/raw", "v1", raw_files)
            push_image(reg, "models/car", "v1", layers)
            refs = {"raw": f"{reg.addr}/models/raw:v1", "car": f"{reg.addr}/models/car:v1"}
            expected = {"raw": raw_expected, "car": img_expected}
            pull_args = ["pull", "--progress=none", "--connections", "2", "--chunk-size", "4M"]

            # How long a whole pull takes, to spread the random kills over it.
            start = time.monotonic()
            for k in refs:
                rc, out, err = run(cache, *pull_args, refs[k])
                t.check(f"reference pull of {k}", rc == 0, err)
            span = max(time.monotonic() - start, 0.2)

            kills = 0
            plans = ([("raw", ingesting)] * 4 + [("car", building)] * 4 +
                     [(rnd.choice(["raw", "car"]), None) for _ in range(8)])
            for which, cond in plans:
                # Start from scratch for this model so the kill lands in real work.
                run(cache, "rm", refs[which])
                p = subprocess.Popen([MODELPULL, "--cache", cache] + pull_args + [refs[which]],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=ENV)
                if cond:
                    poll_then_kill(p, cache, cond)
                else:
                    # A random instant, not a synchronisation: where it lands is the point.
                    try:
                        p.wait(timeout=rnd.uniform(0, span))
                    except subprocess.TimeoutExpired:
                        p.send_signal(signal.SIGKILL)
                    p.wait(timeout=60)
                kills += p.returncode == -signal.SIGKILL
                ok, why = visible_state_ok(cache)
                if not ok:
                    t.check("nothing incomplete visible after a kill", False, why)
                rc, out, err = run(cache, "verify")
                if rc != 0:
                    t.check("verify clean after a kill", False, out + err)
            t.check("the puller was actually killed mid-work", kills >= 6, f"{kills} kills")
            t.check("no incomplete tree was ever visible", visible_state_ok(cache)[0])

            for k in refs:
                rc, out, err = run(cache, *pull_args, refs[k])
                tree = out.strip().splitlines()[-1] if rc == 0 and out.strip() else ""
                t.check(f"pull of {k} after the kills succeeds", rc == 0, err)
                t.check(f"{k} tree is byte-identical", tree_ok(tree, expected[k]))
            rc, out, err = run(cache, "verify")
            t.check("verify is clean at the end", rc == 0 and "0 corrupt" in out, out + err)
            leftovers = os.listdir(os.path.join(cache, "tmp"))
            t.check("no temp files left after recovery", leftovers == [], str(leftovers))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
