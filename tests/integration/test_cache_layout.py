"""test_cache_layout.py — the cache executes the layout plan, against a real
docker-registry:

  * an ORAS single-file artifact whose layer type is
    application/vnd.oci.image.layer.v1.tar (oras-go's default for a file)
    pulls as that raw file, hard-linked to its verified blob;
  * an artifact whose only layer nothing can place is an error naming the
    manifest digest and the media type, never an empty tree;
  * filters that leave no file are errors naming the filter: include
    "[[[[", and a kind filter that matches nothing;
  * a kind filter fetches only the blobs of the kinds it keeps;
  * modelpull inspect (text and JSON) shows the plan and fetches no layer
    blob;
  * through modelvol-csi: include "[[[[" is INVALID_ARGUMENT, an artifact
    nothing can place is FAILED_PRECONDITION, and a layer skipped while
    others are laid out is logged (layer_skipped) and counted
    (modelvol_layers_skipped_total)."""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import logs  # noqa: E402
import mounts  # noqa: E402
from csiclient import Checks  # noqa: E402
from csidaemon import Daemon  # noqa: E402
from mvreg import Registry  # noqa: E402
from util import BUILD_DIR, sha256_file  # noqa: E402
import grpc  # noqa: E402

SC = grpc.StatusCode
MODELPULL = os.path.join(BUILD_DIR, "modelpull")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def modelpull(cache, *args, timeout=300):
    env = dict(os.environ, DOCKER_CONFIG="/nonexistent-modelvol-test")
    p = subprocess.run([MODELPULL, "--cache", cache] + [str(a) for a in args],
                       capture_output=True, text=True, env=env, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def push_oras(reg, repo, tag, layers):
    """An artifact as `oras push` makes one (oras-go v2 image-spec 1.1
    packing). Facts, from oras-project/oras-go:
      - pack.go: with no artifact type given, artifactType is
        "application/vnd.unknown.artifact.v1"; with no config, the config is
        the empty descriptor (application/vnd.oci.empty.v1+json, "{}").
      - content/file/file.go: a file's layer type defaults to
        ocispec.MediaTypeImageLayer ("application/vnd.oci.image.layer.v1.tar")
        and holds the raw file; its name is org.opencontainers.image.title.
    layers: [(media type, bytes, annotations)]. Returns the manifest digest
    and the layer descriptors."""
    empty = reg.push_blob(repo, b"{}")
    descs = []
    for media_type, data, ann in layers:
        d = reg.push_blob(repo, data)
        desc = {"mediaType": media_type, "digest": d["digest"], "size": d["size"]}
        if ann:
            desc["annotations"] = ann
        descs.append(desc)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.unknown.artifact.v1",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "data": "e30=", **empty},
        "layers": descs,
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    }
    return reg.push_manifest(repo, tag, manifest, OCI_MANIFEST), descs


def push_modelpack(reg, repo, tag, files):
    """ModelPack raw layers, one per file: {path: (kind, bytes)}."""
    layers = []
    for path, (kind, data) in sorted(files.items()):
        d = reg.push_blob(repo, data)
        layers.append({"mediaType": f"application/vnd.cncf.model.{kind}.v1.raw",
                       "digest": d["digest"], "size": d["size"],
                       "annotations": {"org.cncf.model.filepath": path}})
    cfg = json.dumps({"descriptor": {"name": repo},
                      "modelfs": {"type": "layers",
                                  "diffIds": [l["digest"] for l in layers]}}).encode()
    c = reg.push_blob(repo, cfg)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "artifactType": "application/vnd.cncf.model.manifest.v1+json",
                "config": {"mediaType": "application/vnd.cncf.model.config.v1+json", **c},
                "layers": layers}
    return reg.push_manifest(repo, tag, manifest, OCI_MANIFEST), layers


def gets_of(reg, digest):
    return [g for g in logs.blob_gets(reg.access_log(), digest) if g[1] in (200, 206)]


def oras_file(t, reg, work):
    hello = b"hello from oras\n"
    digest, descs = push_oras(reg, "oras/hello", "v1", [
        ("application/vnd.oci.image.layer.v1.tar", hello,
         {"org.opencontainers.image.title": "hello.txt"})])
    cache = os.path.join(work, "c-oras")
    rc, out, err = modelpull(cache, "pull", f"{reg.addr}/oras/hello:v1")
    t.check("ORAS single file: pull exits 0", rc == 0, err)
    if rc != 0:
        return
    tree = out.strip().splitlines()[-1]
    got = sorted(os.listdir(tree))
    t.check("ORAS single file: the tree holds hello.txt only", got == ["hello.txt"], got)
    path = os.path.join(tree, "hello.txt")
    t.check("ORAS single file: the raw bytes, not unpacked",
            sha256_file(path) == descs[0]["digest"], sha256_file(path))
    blob = os.path.join(cache, "blobs", "sha256", descs[0]["digest"].split(":")[1])
    t.check("ORAS single file: hard-linked to its blob (zero-copy)",
            os.stat(path).st_ino == os.stat(blob).st_ino)
    t.check("ORAS single file: read-only 0444", (os.stat(path).st_mode & 0o7777) == 0o444,
            oct(os.stat(path).st_mode))
    t.check("ORAS single file: manifest digest is the one pushed", digest.startswith("sha256:"))


def empty_manifest(t, reg, work):
    mt = "application/x-modelvol-test-unknown"
    digest, _ = push_oras(reg, "oras/nothing", "v1", [(mt, b"opaque bytes", None)])
    cache = os.path.join(work, "c-empty")
    rc, out, err = modelpull(cache, "pull", f"{reg.addr}/oras/nothing:v1")
    t.check("nothing to place: pull fails", rc != 0, out)
    t.check("nothing to place: the error names the manifest digest", digest in err, err)
    t.check("nothing to place: the error names the media type", mt in err, err)
    t.check("nothing to place: one line", err.strip().count("\n") == 0, err)
    trees = os.listdir(os.path.join(cache, "trees")) if os.path.isdir(
        os.path.join(cache, "trees")) else []
    t.check("nothing to place: no tree is left", trees == [], trees)


def filters(t, reg, work):
    digest, layers = push_modelpack(reg, "mp/kinds", "v1", {
        "model.safetensors": ("weight", os.urandom(256 * 1024)),
        "config.json": ("weight.config", b'{"hidden": 8}'),
        "README.md": ("doc", b"# readme\n"),
    })
    ref = f"{reg.addr}/mp/kinds:v1"
    by_path = {l["annotations"]["org.cncf.model.filepath"]: l["digest"] for l in layers}

    cache = os.path.join(work, "c-filter")
    rc, out, err = modelpull(cache, "pull", "--include", "[[[[", ref)
    t.check('include "[[[[": pull fails', rc != 0, out)
    t.check('include "[[[[": the error names the filter and the manifest',
            'include "[[[["' in err and "matches no file" in err and digest in err, err)

    rc, out, err = modelpull(cache, "pull", "--kind", "datasets", ref)
    t.check('kinds "datasets" on a model without datasets: pull fails', rc != 0, out)
    t.check("kinds: the error names the filter",
            'kinds "datasets"' in err and "matches no file" in err, err)

    rc, out, err = modelpull(cache, "pull", "--kind", "nonsense", ref)
    t.check("--kind nonsense: refused before any pull", rc != 0 and "--kind" in err
            and "nonsense" in err, err)

    before = {p: len(gets_of(reg, d)) for p, d in by_path.items()}
    rc, out, err = modelpull(cache, "pull", "--kind", "config", "--kind", "docs", ref)
    t.check("kinds config,docs: pull exits 0", rc == 0, err)
    if rc == 0:
        tree = out.strip().splitlines()[-1]
        got = sorted(os.listdir(tree))
        t.check("kinds config,docs: only config.json and README.md", got ==
                ["README.md", "config.json"], got)
    after = {p: len(gets_of(reg, d)) for p, d in by_path.items()}
    t.check("kinds config,docs: the weights blob is never fetched",
            after["model.safetensors"] == before["model.safetensors"], after)
    t.check("kinds config,docs: the kept blobs are fetched",
            after["config.json"] > before["config.json"] and after["README.md"] > before[
                "README.md"], after)

    # ORAS files carry no kind: a kind filter keeps none of them.
    push_oras(reg, "oras/kinds", "v1", [
        ("application/vnd.oci.image.layer.v1.tar", b"x", {"org.opencontainers.image.title": "x"})])
    rc, out, err = modelpull(cache, "pull", "--kind", "weights", f"{reg.addr}/oras/kinds:v1")
    t.check("kinds on an ORAS artifact (no kinds): fails naming the filter",
            rc != 0 and 'kinds "weights"' in err, err)


def inspect(t, reg, work):
    digest, descs = push_oras(reg, "oras/inspect", "v1", [
        ("application/vnd.oci.image.layer.v1.tar", b"weights\n" * 1000,
         {"org.opencontainers.image.title": "w.bin"}),
        ("application/x-modelvol-untitled", b"untitled", None),
    ])
    ref = f"{reg.addr}/oras/inspect:v1"
    cache = os.path.join(work, "c-inspect")
    rc, out, err = modelpull(cache, "inspect", ref)
    t.check("inspect: exits 0", rc == 0, err)
    t.check("inspect: names the family", re.search(r"^family:\s+oras$", out, re.M), out)
    t.check("inspect: names the manifest", digest in out, out)
    line = [l for l in out.splitlines() if l.startswith("w.bin")]
    t.check("inspect: the titled layer is a file with its media type",
            line and line[0].rstrip().endswith(" file") and
            " application/vnd.oci.image.layer.v1.tar " in line[0],
            out)
    t.check("inspect: the untitled layer is a skip with a reason",
            re.search(r"application/x-modelvol-untitled\s+skip: \S", out), out)

    rc, out, err = modelpull(cache, "inspect", "--json", ref)
    t.check("inspect --json: exits 0", rc == 0, err)
    try:
        doc = json.loads(out)
    except ValueError:
        doc = {}
    t.check("inspect --json: one JSON document with family and manifest",
            doc.get("family") == "oras" and doc.get("manifest") == digest, out)
    ls = doc.get("layers", [])
    t.check("inspect --json: one entry per layer", len(ls) == 2, out)
    if len(ls) == 2:
        t.check("inspect --json: file entry", ls[0].get("action") == "file" and
                ls[0].get("path") == "w.bin" and ls[0].get("size") == descs[0]["size"] and
                ls[0].get("mediaType") == "application/vnd.oci.image.layer.v1.tar", ls[0])
        t.check("inspect --json: skip entry with its reason", ls[1].get("action") == "skip" and
                ls[1].get("skipReason"), ls[1])
    t.check("inspect: no layer blob fetched",
            not gets_of(reg, descs[0]["digest"]) and not gets_of(reg, descs[1]["digest"]),
            logs.blob_gets(reg.access_log()))


def through_csi(t, reg, work):
    # A titled file and an untitled layer: the file is laid out, the other
    # layer skipped, logged and counted.
    push_oras(reg, "oras/mixed", "v1", [
        ("application/vnd.oci.image.layer.v1.tar", b"kept\n",
         {"org.opencontainers.image.title": "kept.txt"}),
        ("application/x-modelvol-untitled", b"dropped", None),
    ])
    push_modelpack(reg, "mp/csi", "v1", {"config.json": ("weight.config", b"{}")})
    d = Daemon(work, os.path.join(work, "c-csi"), node_id="layout-node")
    d.start()
    try:
        c = d.client
        tgt = os.path.join(work, "pods", "mixed", "mount")
        os.makedirs(os.path.dirname(tgt))
        t.code("csi: publish an artifact with a skipped layer", SC.OK, c.publish, tgt,
               f"{reg.addr}/oras/mixed:v1", volume_id="vol-mixed")
        t.check("csi: the titled file is published", os.path.exists(os.path.join(tgt, "kept.txt")))
        ev = logs.log_events(d.read_log(), "layer_skipped")
        t.check("csi: layer_skipped is logged with the media type",
                ev and ev[0].get("layers") == "1" and
                "application/x-modelvol-untitled" in ev[0].get("skipped", ""), ev)
        m = re.search(r"^modelvol_layers_skipped_total (\d+)$", d.metrics(), re.M)
        t.check("csi: modelvol_layers_skipped_total counts it", m and m.group(1) == "1",
                d.metrics())
        t.code("csi: unpublish", SC.OK, c.unpublish, tgt, volume_id="vol-mixed")

        bad = os.path.join(work, "pods", "bad", "mount")
        os.makedirs(os.path.dirname(bad))
        t.code('csi: include "[[[[" is refused', SC.INVALID_ARGUMENT, c.publish, bad,
               f"{reg.addr}/mp/csi:v1", volume_id="vol-bad", context={"include": "[[[["})
        t.code('csi: kinds "weights" on a config-only model is refused', SC.INVALID_ARGUMENT,
               c.publish, bad, f"{reg.addr}/mp/csi:v1", volume_id="vol-bad",
               context={"kinds": "weights"})
        t.code("csi: a bad kind word is refused", SC.INVALID_ARGUMENT, c.publish, bad,
               f"{reg.addr}/mp/csi:v1", volume_id="vol-bad", context={"kinds": "weights,bogus"})
        t.code("csi: an artifact nothing can place is refused", SC.FAILED_PRECONDITION,
               c.publish, bad, f"{reg.addr}/oras/nothing:v1", volume_id="vol-bad")
        t.check("csi: nothing was mounted on the refused target",
                not os.path.ismount(bad))
        t.code("csi: kinds config publishes", SC.OK, c.publish, bad, f"{reg.addr}/mp/csi:v1",
               volume_id="vol-bad", context={"kinds": "config"})
        t.check("csi: kinds config holds config.json",
                os.path.exists(os.path.join(bad, "config.json")))
        t.code("csi: unpublish kinds config", SC.OK, c.unpublish, bad, volume_id="vol-bad")
    finally:
        rc = d.stop()
        t.check("csi: daemon exits 0 on SIGTERM", rc == 0, f"exit {rc}")
        if t.failed:
            print(d.read_log()[-4000:])


def main():
    mounts.require_root()
    t = Checks()
    work = tempfile.mkdtemp(prefix="cache-layout.")
    try:
        with Registry(os.path.join(work, "reg")) as reg:
            oras_file(t, reg, work)
            empty_manifest(t, reg, work)
            filters(t, reg, work)
            inspect(t, reg, work)
            through_csi(t, reg, work)
    finally:
        mounts.remove_tree(work)
    return t.summary()


if __name__ == "__main__":
    sys.exit(main())
