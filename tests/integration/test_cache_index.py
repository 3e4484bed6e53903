"""test_cache_index.py — choosing in an image index, against a real
docker-registry: a nested index (index -> index -> three ModelPack
manifests) chosen from by artifactType, by platform and by annotation,
through `modelpull pull` flags, a prewarm list line's fields and
modelvol-csi's volume attributes; several matches fail with one line that
lists each candidate; no selector keeps today's rule (the ModelPack
artifactType); a tag already resolved under one selector never hands its
manifest to another; indexes nested deeper than 4 fail naming the chain.
Run as root with Debian's /usr/bin/python3."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import mounts  # noqa: E402
import util  # noqa: E402
from csiclient import Checks  # noqa: E402
from csidaemon import Daemon  # noqa: E402
import csiclient  # noqa: E402
import grpc  # noqa: E402
from mvreg import Registry  # noqa: E402
from util import BUILD_DIR  # noqa: E402

SC = grpc.StatusCode
MODELPULL = os.path.join(BUILD_DIR, "modelpull")
MVPINS = next((p for p in (os.path.join(BUILD_DIR, "tests", "mvpins"),
                           os.path.join(BUILD_DIR, "mvpins")) if os.access(p, os.X_OK)),
              os.path.join(BUILD_DIR, "tests", "mvpins"))

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
CNCF = "application/vnd.cncf.model.manifest.v1+json"
CNAI = "application/vnd.cnai.model.manifest.v1+json"
QUANT = "org.example.quant"
REPO = "models/multi"


def body_of(doc):
    """The bytes mvreg.push_manifest sends, so the size in a descriptor is right."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def push_leaf(reg, name, data, legacy=False):
    """A one-file ModelPack manifest as modelpush writes it (vnd.cncf), or as
    older modctl writes it (vnd.cnai.model.*, org.cnai.model.filepath).
    Returns its descriptor fields (digest, size)."""
    blob = reg.push_blob(REPO, data)
    ns = "cnai" if legacy else "cncf"
    layer = {"mediaType": f"application/vnd.{ns}.model.weight.v1.raw", **blob,
             "annotations": {f"org.{ns}.model.filepath": name}}
    cfg = reg.push_blob(REPO, json.dumps({"descriptor": {"name": name},
                                          "modelfs": {"type": "layers",
                                                      "diffIds": [blob["digest"]]}}).encode())
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "artifactType": CNAI if legacy else CNCF,
           "config": {"mediaType": f"application/vnd.{ns}.model.config.v1+json", **cfg},
           "layers": [layer]}
    digest = reg.push_manifest(REPO, name.replace(".", "-"), doc, OCI_MANIFEST)
    return {"digest": digest, "size": len(body_of(doc))}


def push_index(reg, tag, entries):
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    digest = reg.push_manifest(REPO, tag, doc, OCI_INDEX)
    return {"mediaType": OCI_INDEX, "digest": digest, "size": len(body_of(doc))}


def modelpull(cache, *args):
    env = dict(os.environ, DOCKER_CONFIG="/nonexistent-modelvol-test")
    p = subprocess.run([MODELPULL, "--cache", cache, *args], capture_output=True, text=True,
                       env=env, timeout=180)
    lines = p.stdout.strip().splitlines()
    return p.returncode, (lines[-1] if lines else ""), p.stderr


def files_in(tree):
    return sorted(util.tree_digests(tree)) if tree and os.path.isdir(tree) else None


def build(reg):
    """index v1 -> inner index -> A (cncf, linux/amd64, q4), B (cncf,
    linux/arm64, q8), C (cnai, linux/amd64, q4)."""
    a = push_leaf(reg, "a.txt", b"model A\n")
    b = push_leaf(reg, "b.txt", b"model B\n")
    c = push_leaf(reg, "c.txt", b"model C\n", legacy=True)
    entries = [
        {"mediaType": OCI_MANIFEST, **a, "artifactType": CNCF,
         "platform": {"os": "linux", "architecture": "amd64"}, "annotations": {QUANT: "q4"}},
        {"mediaType": OCI_MANIFEST, **b, "artifactType": CNCF,
         "platform": {"os": "linux", "architecture": "arm64"}, "annotations": {QUANT: "q8"}},
        {"mediaType": OCI_MANIFEST, **c, "artifactType": CNAI,
         "platform": {"os": "linux", "architecture": "amd64"}, "annotations": {QUANT: "q4"}},
    ]
    inner = push_index(reg, "inner", entries)
    top = push_index(reg, "v1", [inner])
    # Five indexes deep: one more than is followed.
    deep = inner
    for i in range(4):
        deep = push_index(reg, f"deep{i}", [deep])
    return a, b, c, inner, top, deep


def pull_checks(t, reg, work, a, b, c, inner, top, deep):
    cache = os.path.join(work, "cache")
    ref = f"{reg.addr}/{REPO}:v1"
    pull = ("pull", "--plain-http")

    # Under a selector first: the tag record this writes must not answer
    # the pulls below with B.
    rc, tree, err = modelpull(cache, *pull, "--platform", "linux/arm64", ref)
    t.check("--platform linux/arm64 through two indexes pulls B", rc == 0
            and files_in(tree) == ["b.txt"], f"{rc} {files_in(tree)} {err}")
    meta = json.load(open(os.path.join(os.path.dirname(tree), "meta.json"))) if rc == 0 else {}
    t.check("the tree's meta names the index chain and the manifest",
            meta.get("index") == top["digest"]
            and meta.get("indexes") == [top["digest"], inner["digest"]]
            and meta.get("manifest") == b["digest"], str(meta))

    rc, tree, err = modelpull(cache, *pull, ref)
    t.check("no selector: today's rule, the vnd.cncf ModelPack entry (A)",
            rc == 0 and files_in(tree) == ["a.txt"], f"{rc} {files_in(tree)} {err}")
    rc, tree, err = modelpull(cache, *pull, "--artifact-type", CNAI, ref)
    t.check("--artifact-type vnd.cnai pulls C", rc == 0 and files_in(tree) == ["c.txt"],
            f"{rc} {files_in(tree)} {err}")
    rc, tree, err = modelpull(cache, *pull, "--annotation", f"{QUANT}=q8", ref)
    t.check("--annotation quant=q8 pulls B", rc == 0 and files_in(tree) == ["b.txt"],
            f"{rc} {files_in(tree)} {err}")
    rc, tree, err = modelpull(cache, *pull, "--annotation", f"{QUANT}=q4", "--artifact-type",
                              CNCF, "--platform", "linux/x86_64", ref)
    t.check("all three selectors together pull A", rc == 0 and files_in(tree) == ["a.txt"],
            f"{rc} {files_in(tree)} {err}")

    rc, _, err = modelpull(cache, *pull, "--annotation", f"{QUANT}=q4", ref)
    line = err.strip().splitlines()[-1] if err.strip() else ""
    t.check("two matches fail", rc != 0, f"{rc}")
    t.check("the error lists both candidates and names the index, on one line",
            a["digest"] in line and c["digest"] in line and b["digest"] not in line
            and inner["digest"] in line and f"annotation={QUANT}=q4" in line
            and "platform linux/amd64" in line and CNAI in line, err)

    rc, _, err = modelpull(cache, *pull, "--platform", "linux/s390x", ref)
    t.check("no match fails listing what the index has", rc != 0 and "platform=linux/s390x" in err
            and a["digest"] in err and b["digest"] in err, err)
    rc, _, err = modelpull(cache, *pull, "--platform", "linux", ref)
    t.check("a bad --platform is refused naming it", rc != 0
            and 'platform "linux": not os/arch[/variant]' in err, err)

    rc, _, err = modelpull(cache, *pull, "--platform", "linux/amd64", "--artifact-type", CNCF,
                           f"{reg.addr}/{REPO}:deep3")
    t.check("indexes nested 5 deep fail naming the chain", rc != 0
            and "nested deeper than 4" in err and deep["digest"] in err
            and inner["digest"] in err and " -> " in err, err)

    # Offline, from the cache only: the index is walked again from the store.
    rc, tree, err = modelpull(cache, *pull, "--policy", "Never", "--platform", "linux/arm64", ref)
    t.check("policy Never, selector: the cached B", rc == 0 and files_in(tree) == ["b.txt"],
            f"{rc} {files_in(tree)} {err}")


def prewarm_checks(t, reg, work, b, c):
    cache = os.path.join(work, "pwcache")
    ref = f"{reg.addr}/{REPO}:v1"
    lst = os.path.join(work, "prewarm.list")
    with open(lst, "w") as f:
        f.write(f"{ref} platform=linux/arm64   # the arm build\n{ref} artifactType={CNAI}\n")
    p = subprocess.run([MODELPULL, "--cache", cache, "prewarm", "-f", lst, "--plain-http"],
                       capture_output=True, text=True, timeout=180)
    t.check("prewarm with selector fields exits 0", p.returncode == 0, p.stderr)
    r = subprocess.run([MVPINS, cache], capture_output=True, text=True, timeout=30)
    pins = dict(reversed(line.split(" ", 1)) for line in r.stdout.splitlines())
    arm = pins.get(f"prewarm:{ref} platform=linux/arm64")
    legacy = pins.get(f"prewarm:{ref} artifactType={CNAI}")
    tree = lambda tid: os.path.join(cache, "trees", tid.split(":", 1)[1], "root")  # noqa: E731
    t.check("one pin per list line, each holding its own manifest",
            arm and legacy and files_in(tree(arm)) == ["b.txt"]
            and files_in(tree(legacy)) == ["c.txt"], f"{pins} {p.stderr}")
    with open(lst, "w") as f:
        f.write(f"{ref} colour=red\n")
    p = subprocess.run([MODELPULL, "--cache", cache, "prewarm", "-f", lst, "--plain-http"],
                       capture_output=True, text=True, timeout=180)
    t.check("an unknown field fails the line, naming it", p.returncode != 0
            and "colour" in p.stderr and "unknown field" in p.stderr, p.stderr)


def csi_checks(t, reg, work, a, b, c):
    ref = f"{reg.addr}/{REPO}:v1"
    # A loopback registry is tried over plain HTTP by itself.
    d = Daemon(work, os.path.join(work, "csicache"), node_id="index-node")
    d.start()
    try:
        cl = d.client
        pods = os.path.join(work, "pods")
        tg = {k: os.path.join(pods, k, "mount") for k in ("arm", "anno", "at", "two")}
        for p in tg.values():
            os.makedirs(os.path.dirname(p))
        t.code("publish with platform linux/arm64", SC.OK, cl.publish, tg["arm"], ref,
               volume_id="v-arm", context={"platform": "linux/arm64"})
        t.check("the arm volume holds B", files_in(tg["arm"]) == ["b.txt"], str(files_in(tg["arm"])))
        t.code("publish with annotation quant=q8 and artifactType", SC.OK, cl.publish, tg["anno"],
               ref, volume_id="v-anno", context={"annotation": f"{QUANT}=q8", "artifactType": CNCF})
        t.check("that volume holds B", files_in(tg["anno"]) == ["b.txt"])
        t.code("publish with artifactType vnd.cnai", SC.OK, cl.publish, tg["at"], ref,
               volume_id="v-at", context={"artifactType": CNAI})
        t.check("that volume holds C", files_in(tg["at"]) == ["c.txt"], str(files_in(tg["at"])))
        code, details = csiclient.code_of(cl.publish, tg["two"], ref, volume_id="v-two",
                                          context={"annotation": f"{QUANT}=q4"})
        t.check("two matches: the publish fails", code != SC.OK, f"{code}")
        t.check("and its message lists both candidates", a["digest"] in details
                and c["digest"] in details and b["digest"] not in details, details)
        t.check("no volume where the user expected files", not mounts.mountinfo_lines(tg["two"]))
        code, details = csiclient.code_of(cl.publish, tg["two"], ref, volume_id="v-two",
                                          context={"platform": "linux/"})
        t.check("a bad platform attribute -> INVALID_ARGUMENT naming it",
                code == SC.INVALID_ARGUMENT and 'volumeAttributes: platform "linux/"' in details,
                f"{code}: {details}")
        for k in ("arm", "anno", "at"):
            t.code(f"unpublish {k}", SC.OK, cl.unpublish, tg[k], volume_id=f"v-{k}")
    finally:
        rc = d.stop()
        t.check("daemon exits 0", rc == 0, f"exit {rc}")
        if t.failed:
            print(d.read_log()[-4000:])


def main():
    mounts.require_root()
    t = Checks()
    work = tempfile.mkdtemp(prefix="cache-index.")
    try:
        with Registry(os.path.join(work, "reg")) as reg:
            a, b, c, inner, top, deep = build(reg)
            pull_checks(t, reg, work, a, b, c, inner, top, deep)
            prewarm_checks(t, reg, work, b, c)
            csi_checks(t, reg, work, a, b, c)
    finally:
        mounts.remove_tree(work)
    return t.summary()


if __name__ == "__main__":
    sys.exit(main())
