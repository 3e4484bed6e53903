"""test_csi_publish.py — the publish path of modelvol-csi against a real
docker-registry with real bind mounts (root):

  * an uncached model publishes byte-identical, read-only (EROFS), mounted
    ro,nosuid,nodev, with volume stats matching the tree;
  * a second target downloads nothing; an identical repeat is OK and stacks
    no mount; another model on a used target is ALREADY_EXISTS;
  * a pre-provisioned PV (volume_id is the reference), include/exclude and
    path filters;
  * unpublishing both leaves nothing mounted, no target, no pin, no record;
  * error codes from the real thing: NOT_FOUND (no such tag, Never on an
    uncached model), UNAUTHENTICATED (nginx Basic auth, no secret), the
    nodePublishSecret used for that pull only and never logged or written,
    PERMISSION_DENIED (403), RESOURCE_EXHAUSTED (a full tmpfs cache)."""
import errno
import json
import base64
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import csiclient  # noqa: E402
import csidaemon  # noqa: E402
import logs  # noqa: E402
import mounts  # noqa: E402
import util  # noqa: E402
from csiclient import Checks  # noqa: E402
from csidaemon import Daemon  # noqa: E402
import mvreg  # noqa: E402
from nginx import Nginx  # noqa: E402
import grpc  # noqa: E402

SC = grpc.StatusCode
USER, PASSWORD = "puller", "Zq9-never-in-logs-Pw"


class Forbidding(Nginx):
    """nginx answering 403 for one repository, as a registry does for an
    authenticated user without pull rights."""

    def __init__(self, tmp, upstream, repo):
        super().__init__(tmp, upstream)
        self.repo = repo

    def _conf(self):
        conf = super()._conf()
        deny = f"location /v2/{self.repo}/ {{ return 403; }}\n        location /v2/ {{"
        return conf.replace("location /v2/ {", deny, 1)


def model_files(root):
    os.makedirs(os.path.join(root, "tokenizer"))
    files = {
        "model.safetensors": os.urandom(3 * 1024 * 1024 + 17),
        "config.json": json.dumps({"hidden_size": 64, "layers": 2}).encode(),
        "tokenizer/tokenizer.json": json.dumps({"vocab": {"a": 0, "b": 1}}).encode(),
    }
    for rel, data in files.items():
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
    return files


def write_fails_erofs(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return False
    except OSError as e:
        return e.errno == errno.EROFS


def publish_path(t, reg, d, work, files):
    c = d.client
    cache = d.cache
    ref = f"{reg.addr}/models/tiny:v1"
    a = os.path.join(work, "pods", "a", "mount")
    b = os.path.join(work, "pods", "b", "mount")
    os.makedirs(os.path.dirname(a))
    os.makedirs(os.path.dirname(b))
    want = {rel: util.sha256_bytes(data) for rel, data in files.items()}

    t.code("publish uncached model to target A", SC.OK, c.publish, a, ref, volume_id="vol-a")
    t.check("A holds the model byte for byte", util.tree_digests(a) == want,
            str(util.tree_digests(a)))
    opts = mounts.mount_options(a) or set()
    t.check("A is mounted ro,nosuid,nodev", {"ro", "nosuid", "nodev"} <= opts, str(opts))
    t.check("creating a file in A fails with EROFS", write_fails_erofs(os.path.join(a, "new")))
    t.check("overwriting a model file fails with EROFS",
            write_fails_erofs(os.path.join(a, "config.json")))
    stats = c.volume_stats(a, volume_id="vol-a")
    usage = {csiclient.pb().VolumeUsage.Unit.Name(u.unit): u.used for u in stats.usage}
    t.check("volume stats: bytes of the model",
            usage.get("BYTES") == sum(len(v) for v in files.values()), str(usage))
    t.check("volume stats: inodes (root, tokenizer/, 3 files)", usage.get("INODES") == 5,
            str(usage))
    t.check("A is pinned", csidaemon.owner_pinned(cache, a))
    gets_after_a = len(logs.blob_gets(reg.access_log()))
    t.check("the first publish downloaded the blobs", gets_after_a >= len(files), str(gets_after_a))

    t.code("publish the same model to target B", SC.OK, c.publish, b, ref, volume_id="vol-b")
    t.check("B downloaded nothing", len(logs.blob_gets(reg.access_log())) == gets_after_a)
    t.check("B holds the model byte for byte", util.tree_digests(b) == want)
    t.check("B is pinned", csidaemon.owner_pinned(cache, b))

    t.code("identical repeat of publish A", SC.OK, c.publish, a, ref, volume_id="vol-a")
    t.check("the repeat stacked no second mount", len(mounts.mountinfo_lines(a)) == 1,
            str(mounts.mountinfo_lines(a)))
    reg.push_model("models/other", "v1", {"other.json": b'{"other": true}'})
    code, details = csiclient.code_of(c.publish, a, f"{reg.addr}/models/other:v1",
                                      volume_id="vol-a")
    t.check("another model on target A -> ALREADY_EXISTS", code == SC.ALREADY_EXISTS,
            f"{code}: {details}")
    t.check("ALREADY_EXISTS names both models", "models/tiny" in details and "models/other" in details,
            details)
    t.code("same model, other pullPolicy on A", SC.ALREADY_EXISTS, c.publish, a, ref,
           volume_id="vol-a", context={"pullPolicy": "Always"})

    t.code("unpublish A", SC.OK, c.unpublish, a, volume_id="vol-a")
    t.code("unpublish B", SC.OK, c.unpublish, b, volume_id="vol-b")
    t.check("nothing stays mounted", not mounts.mountinfo_lines(a)
            and not mounts.mountinfo_lines(b))
    t.check("the targets are removed", not os.path.exists(a) and not os.path.exists(b))
    t.check("the pins are gone", not csidaemon.owner_pinned(cache, a)
            and not csidaemon.owner_pinned(cache, b))
    recs = [n for n in os.listdir(os.path.join(cache, "csi")) if n.endswith(".rec")]
    t.check("the records are gone", not recs, str(recs))
    t.code("unpublish A again (already gone)", SC.OK, c.unpublish, a, volume_id="vol-a")

    # A pre-provisioned PV: no reference attribute, the handle is the model.
    pv = os.path.join(work, "pods", "pv", "mount")
    os.makedirs(os.path.dirname(pv))
    t.code("pre-provisioned PV: volume_id is the reference", SC.OK, c.publish, pv, None,
           volume_id=ref, mode="SINGLE_NODE_READER_ONLY")
    t.check("the PV shows the model", util.tree_digests(pv) == want)
    t.code("unpublish the PV", SC.OK, c.unpublish, pv, volume_id=ref)

    # Filters and a subdirectory.
    f1 = os.path.join(work, "pods", "f1", "mount")
    f2 = os.path.join(work, "pods", "f2", "mount")
    os.makedirs(os.path.dirname(f1))
    os.makedirs(os.path.dirname(f2))
    t.code("publish with include *.json", SC.OK, c.publish, f1, ref, volume_id="vol-f1",
           context={"include": "*.json, tokenizer/*"})
    got = sorted(util.tree_digests(f1)) if os.path.isdir(f1) else []
    t.check("include keeps only the JSON files", "model.safetensors" not in got
            and "config.json" in got, str(got))
    t.code("publish with path tokenizer", SC.OK, c.publish, f2, ref, volume_id="vol-f2",
           context={"path": "tokenizer"})
    got = sorted(util.tree_digests(f2)) if os.path.isdir(f2) else []
    t.check("path mounts the subdirectory", got == ["tokenizer.json"], str(got))
    t.code("unpublish f1", SC.OK, c.unpublish, f1, volume_id="vol-f1")
    t.code("unpublish f2", SC.OK, c.unpublish, f2, volume_id="vol-f2")

    metrics = d.metrics()
    t.check("metrics: ok pulls counted", re.search(r'modelvol_pulls_total\{result="ok"\} [1-9]',
                                                   metrics), metrics)
    t.check("metrics: cache hits counted", re.search(r"^modelvol_cache_hits_total [1-9]", metrics,
                                                     re.M), metrics)
    m = re.search(r'modelvol_pull_bytes_total\{source="origin"\} (\d+)', metrics)
    t.check("metrics: origin bytes cover the model",
            m and int(m.group(1)) >= sum(len(v) for v in files.values()), metrics)
    t.check("metrics: cache bytes reported", re.search(r"^modelvol_cache_bytes [1-9]", metrics,
                                                       re.M), metrics)


def error_codes(t, reg, d, work):
    c = d.client
    tgt = os.path.join(work, "pods", "err", "mount")
    os.makedirs(os.path.dirname(tgt))
    code, details = csiclient.code_of(c.publish, tgt, f"{reg.addr}/models/tiny:no-such-tag")
    t.check("missing tag -> NOT_FOUND", code == SC.NOT_FOUND, f"{code}: {details}")
    t.check("NOT_FOUND names the reference", "no-such-tag" in details, details)
    reg.push_model("models/uncached", "v1", {"u.json": b"{}"})
    code, details = csiclient.code_of(c.publish, tgt, f"{reg.addr}/models/uncached:v1",
                                      context={"pullPolicy": "Never"})
    t.check("pullPolicy Never on an uncached model -> NOT_FOUND", code == SC.NOT_FOUND,
            f"{code}: {details}")
    t.check("refused publishes leave no target", not os.path.exists(tgt))

    # Basic auth in front of the registry: 401 without the secret.
    with Nginx(work, reg.addr, basic=(USER, PASSWORD)) as ng:
        ref = f"{ng.addr}/models/tiny:v1"
        code, details = csiclient.code_of(c.publish, tgt, ref, context={"pullPolicy": "Always"})
        t.check("401 from the registry -> UNAUTHENTICATED", code == SC.UNAUTHENTICATED,
                f"{code}: {details}")
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        secret = json.dumps({"auths": {ng.addr: {"auth": auth}}})
        t.code("with the nodePublishSecret the pull succeeds", SC.OK, c.publish, tgt, ref,
               context={"pullPolicy": "Always"}, secrets={".dockerconfigjson": secret})
        t.code("unpublish the authenticated volume", SC.OK, c.unpublish, tgt)
        code, _ = csiclient.code_of(c.publish, tgt, ref, context={"pullPolicy": "Always"},
                                    volume_id="vol-again")
        t.check("the secret served that pull only", code == SC.UNAUTHENTICATED, str(code))
    log = d.read_log()
    t.check("neither password nor auth string in the log", PASSWORD not in log and auth not in log)
    leaked = subprocess.run(["grep", "-rlF", PASSWORD, d.cache], capture_output=True, text=True)
    t.check("the secret was never written under the cache", leaked.stdout == "", leaked.stdout)

    with Forbidding(work, reg.addr, "models/tiny") as ng:
        code, details = csiclient.code_of(c.publish, tgt, f"{ng.addr}/models/tiny:v1",
                                          context={"pullPolicy": "Always"})
        t.check("403 from the registry -> PERMISSION_DENIED", code == SC.PERMISSION_DENIED,
                f"{code}: {details}")

    # A cache on a 1 MiB tmpfs cannot take a 3 MiB model.
    small = os.path.join(work, "small-cache")
    os.makedirs(small)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small], check=True)
    try:
        sd = Daemon(os.path.join(work, "small"), small, node_id="small")
        os.makedirs(sd.workdir)
        sd.start()
        try:
            code, details = csiclient.code_of(sd.client.publish, tgt, f"{reg.addr}/models/tiny:v1")
            t.check("full disk -> RESOURCE_EXHAUSTED", code == SC.RESOURCE_EXHAUSTED,
                    f"{code}: {details}")
        finally:
            sd.stop()
    finally:
        subprocess.run(["umount", small], check=False)


def gc_after_pulls(t, reg, work):
    """--max-size below the model: the plugin runs the cache's GC after each
    pull, once the publishers have pinned, and a published tree survives."""
    cache = os.path.join(work, "gc-cache")
    d = Daemon(os.path.join(work, "gc"), cache, node_id="gc", args=["--max-size", "1M"])
    os.makedirs(d.workdir)
    d.start()
    try:
        c = d.client
        t1 = os.path.join(work, "pods", "gc1", "mount")
        t2 = os.path.join(work, "pods", "gc2", "mount")
        os.makedirs(os.path.dirname(t1))
        os.makedirs(os.path.dirname(t2))
        t.code("publish a 3 MiB model into a 1M cache", SC.OK, c.publish, t1,
               f"{reg.addr}/models/tiny:v1", volume_id="gc1")
        # GC runs after the publishers of a pull have pinned its tree.
        ran = util.wait_for(lambda: "event=gc " in d.read_log())
        t.check("GC ran but kept the published tree",
                ran and os.path.exists(os.path.join(t1, "model.safetensors")))
        t.code("unpublish it (unpinned now)", SC.OK, c.unpublish, t1, volume_id="gc1")
        t.code("publish another model", SC.OK, c.publish, t2, f"{reg.addr}/models/other:v1",
               volume_id="gc2")
        # The cache spares trees used in the last minute (its pull-to-pin
        # window), so this pass may keep the unpinned one too: what the
        # plugin owes is a pass after every pull, never losing a pinned tree.
        again = util.wait_for(lambda: d.read_log().count("event=gc ") >= 2)
        t.check("GC ran again after the next pull", again,
                "\n".join(l for l in d.read_log().splitlines() if "event=gc" in l))
        t.check("the published model is intact", os.path.exists(os.path.join(t2, "other.json")))
        t.code("unpublish the other model", SC.OK, c.unpublish, t2, volume_id="gc2")
    finally:
        t.check("GC daemon exits 0", d.stop() == 0)


def mirror_bytes(t, reg, work):
    """A registry mirror in --config serves the blobs: the origin serves
    none and the metrics count the bytes under source="mirror"."""
    files = {"m.safetensors": os.urandom(1024 * 1024), "config.json": b'{"m": 1}'}
    reg.push_model("models/mirrored", "v1", files)
    with mvreg.Registry(os.path.join(work, "mirror-reg")) as mirror:
        mirror.push_model("models/mirrored", "v1", files)
        cfg = os.path.join(work, "mirrors.json")
        with open(cfg, "w") as f:
            json.dump({"registries": {reg.addr: {"mirrors": [f"http://{mirror.addr}"]}}}, f)
        d = Daemon(os.path.join(work, "mir"), os.path.join(work, "mirror-cache"),
                   node_id="mirror", args=["--config", cfg])
        os.makedirs(d.workdir)
        d.start()
        try:
            tg = os.path.join(work, "pods", "mirror", "mount")
            os.makedirs(os.path.dirname(tg))
            t.code("publish through a mirror", SC.OK, d.client.publish, tg,
                   f"{reg.addr}/models/mirrored:v1")
            t.check("the origin served no blob of it", not [
                g for g in logs.blob_gets(reg.access_log())
                if g[0] in mirror.access_log()], "")
            m = d.metrics()
            got = re.search(r'modelvol_pull_bytes_total\{source="mirror"\} (\d+)', m)
            t.check("metrics: mirror bytes counted",
                    got and int(got.group(1)) >= len(files["m.safetensors"]), m)
            t.code("unpublish the mirrored volume", SC.OK, d.client.unpublish, tg)
        finally:
            t.check("mirror daemon exits 0", d.stop() == 0)


def main():
    mounts.require_root()
    t = Checks()
    work = tempfile.mkdtemp(prefix="csi-publish.")
    try:
        with mvreg.Registry(os.path.join(work, "reg")) as reg:
            src = os.path.join(work, "src")
            files = model_files(src)
            reg.push_model("models/tiny", "v1", {k: os.path.join(src, k) for k in files})
            d = Daemon(work, os.path.join(work, "cache"), node_id="publish-node")
            d.start()
            try:
                publish_path(t, reg, d, work, files)
                error_codes(t, reg, d, work)
                gc_after_pulls(t, reg, work)
                mirror_bytes(t, reg, work)
            finally:
                rc = d.stop()
                t.check("daemon exits 0 on SIGTERM", rc == 0, f"exit {rc}")
                if t.failed:
                    print(d.read_log()[-6000:])
    finally:
        mounts.remove_tree(work)
    return t.summary()


if __name__ == "__main__":
    sys.exit(main())
