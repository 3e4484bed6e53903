"""test_families.py — every tool family's artifact, built exactly as that
tool builds it (tests/lib/artifacts.py), pulled and published as the lead
decided for issue 14 (decision 2):

  * each builder's artifact is accepted by docker-registry, served back
    byte for byte, and its config and tar layers are what the builder says;
  * `modelpull pull` lays out, per family, exactly the expected files:
    names, bytes and executable bits, nothing more; a kind filter keeps
    only the files of that kind;
  * ORAS hello.txt no longer fails with "not a tar archive", the ORAS
    directory no longer with `subpath "models" is not a directory`, and a
    KitOps ModelKit or a Docker Model Runner model is never an empty tree,
    and an ORAS artifact whose only layer has no title fails naming the
    manifest and the media type instead of giving an empty tree;
  * modelvol-csi publishes the same trees through real bind mounts (root
    only: without root that half is skipped with a message).

Every expected file prints its own ok/FAIL line, prefixed with the family,
and a per-family tally ends the run, so a failure names what the planner or
the cache still lacks."""
import json
import os
import subprocess
import sys
import tarfile
import io
import tempfile
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import artifacts  # noqa: E402
import checks  # noqa: E402
import mounts  # noqa: E402
import mvreg  # noqa: E402
from util import BUILD_DIR, sha256_bytes  # noqa: E402

MODELPULL = os.path.join(BUILD_DIR, "modelpull")


class FamilyChecks(checks.Checks):
    """checks.Checks that also counts results per family."""

    def __init__(self):
        super().__init__()
        self.tally = {}

    def fcheck(self, family, name, cond, detail=""):
        ok = self.check(f"[{family}] {name}", cond, detail)
        t = self.tally.setdefault(family, [0, 0])
        t[0 if ok else 1] += 1
        return ok

    def report(self):
        print("per family (passed/failed):", flush=True)
        for fam, (p, f) in sorted(self.tally.items()):
            print(f"  {'PASS' if f == 0 else 'FAIL'} {fam}: {p} passed, {f} failed", flush=True)


def modelpull(cache, *args, timeout=300):
    r = subprocess.run([MODELPULL, "--cache", cache, *args], capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def tree_of(root):
    """{relative path: (bytes, executable)} of every regular file under root."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    out[os.path.relpath(p, root)] = (f.read(), bool(os.stat(p).st_mode & 0o111))
    return out


def compare(t, b, how, got, want, err=""):
    """One line per expected file, one per unexpected file."""
    for path in sorted(want):
        data, exe = want[path]
        if path not in got:
            t.fcheck(b.family, f"{b.name} {how}: {path}", False, f"missing; {err}".strip("; "))
            continue
        gdata, gexe = got[path]
        ok = gdata == data and gexe == exe
        why = []
        if gdata != data:
            why.append(f"bytes differ ({len(gdata)} vs {len(data)})")
        if gexe != exe:
            why.append(f"executable {gexe}, want {exe}")
        t.fcheck(b.family, f"{b.name} {how}: {path}{' (executable)' if exe else ''}", ok,
                 ", ".join(why))
    extra = sorted(set(got) - set(want))
    t.fcheck(b.family, f"{b.name} {how}: no unexpected files", not extra, str(extra))


def first_line(err):
    """The one line a failed command names its error in."""
    lines = [l for l in err.strip().splitlines() if l.strip()]
    return lines[0] if lines else ""


def registry_get(reg, path, accept=None):
    req = urllib.request.Request(f"http://{reg.addr}{path}", headers={"Accept": accept} if accept
                                 else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def builder_shape(t, reg, b):
    """The builder's own artifact: accepted, served back unchanged, with the
    config type and tar layer entries it claims. skopeo reads the manifest;
    the config is read over the API (skopeo refuses Docker v2 manifests
    whose layers are not image layers, as Ollama's are)."""
    r = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{b.ref}"],
                       capture_output=True, timeout=60)
    ok = r.returncode == 0
    t.fcheck(b.family, f"{b.name} builder: skopeo reads the manifest", ok,
             r.stderr.decode(errors="replace")[-300:])
    if not ok:
        return
    raw = r.stdout
    t.fcheck(b.family, f"{b.name} builder: registry serves the manifest byte for byte",
             sha256_bytes(raw) == b.digest)
    m = json.loads(raw)
    t.fcheck(b.family, f"{b.name} builder: config type {b.config_media_type}",
             m["config"]["mediaType"] == b.config_media_type, m["config"]["mediaType"])
    if m["config"]["mediaType"] != artifacts.EMPTY_DESC["mediaType"]:
        r2 = subprocess.run(["skopeo", "inspect", "--config", "--raw", "--tls-verify=false",
                             f"docker://{b.ref}"], capture_output=True, timeout=60)
        cfg = r2.stdout if r2.returncode == 0 else registry_get(
            reg, f"/v2/{b.repo}/blobs/{m['config']['digest']}")
        try:
            json.loads(cfg)
            parsed = True
        except ValueError:
            parsed = False
        t.fcheck(b.family, f"{b.name} builder: config is JSON of the advertised digest",
                 parsed and sha256_bytes(cfg) == m["config"]["digest"])
    for layer in m["layers"]:
        mt = layer["mediaType"]
        ann = layer.get("annotations", {})
        is_tar = ".tar" in mt or ann.get("io.deis.oras.content.unpack") == "true"
        if not is_tar or mt == artifacts.ORAS_FILE_MT and "io.deis.oras.content.unpack" not in ann:
            continue
        blob = registry_get(reg, f"/v2/{b.repo}/blobs/{layer['digest']}")
        try:
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tf:
                names = tf.getnames()
            readable = all(not n.startswith(("/", "./")) and ".." not in n.split("/")
                           for n in names) and names
        except tarfile.TarError as e:
            readable, names = False, str(e)
        t.fcheck(b.family, f"{b.name} builder: {mt} layer is a tar of relative paths",
                 bool(readable), str(names))
        if "io.deis.oras.content.digest" in ann:
            import gzip
            t.fcheck(b.family, f"{b.name} builder: ORAS content digest is the uncompressed tar's",
                     sha256_bytes(gzip.decompress(blob)) == ann["io.deis.oras.content.digest"])


def pulls(t, reg, built, work):
    cache = os.path.join(work, "cache")
    for b in built:
        rc, out, err = modelpull(cache, "pull", "--plain-http", "--progress=none", b.ref)
        tree = out.strip().splitlines()[-1] if out.strip() else ""
        pulled = rc == 0 and os.path.isdir(tree)
        t.fcheck(b.family, f"{b.name} pull: modelpull exits 0 with a tree", pulled,
                 f"rc {rc}: {first_line(err)}")
        got = tree_of(tree) if pulled else {}
        compare(t, b, "pull", got, b.files, first_line(err))
        if b.name == "oras-file":
            t.fcheck(b.family, "oras-file pull: no \"not a tar archive\"",
                     "not a tar archive" not in err, err.strip()[-300:])
        if b.name == "oras-dir":
            t.fcheck(b.family, "oras-dir pull: no `subpath \"models\" is not a directory`",
                     'subpath "models" is not a directory' not in err, err.strip()[-300:])
        if b.family in ("kitops", "docker-model-runner"):
            t.fcheck(b.family, f"{b.name} pull: never an empty tree", bool(got) or rc != 0,
                     "exit 0 with an empty tree")

    # Nothing placeable: an error naming the manifest and the media type.
    u = artifacts.oras_untitled(reg)
    rc, out, err = modelpull(cache, "pull", "--plain-http", "--progress=none", u.ref)
    t.fcheck(u.family, "oras-untitled pull: fails rather than an empty tree", rc != 0,
             f"rc {rc}, stdout {out.strip()[-200:]}")
    t.fcheck(u.family, "oras-untitled pull: the error names the manifest and the media type",
             u.digest in err and "application/octet-stream" in err, first_line(err))

    # The kind filter (decision 3): only the files of that kind.
    by_name = {b.name: b for b in built}
    for name, kind in (("kitops-none", "weights"), ("kitops-none", "code"), ("ollama", "config"),
                       ("dmr-gguf", "docs"), ("modctl-cnai", "code")):
        b = by_name[name]
        kc = os.path.join(work, f"cache-kind-{name}-{kind}")
        rc, out, err = modelpull(kc, "pull", "--plain-http", "--progress=none", "--kind", kind,
                                 b.ref)
        tree = out.strip().splitlines()[-1] if out.strip() else ""
        got = tree_of(tree) if rc == 0 and os.path.isdir(tree) else {}
        want = {p: v for p, v in b.files.items() if b.kinds[p] == kind}
        compare(t, b, f"pull --kind {kind}", got, want, f"rc {rc}: {first_line(err)}")


def publishes(t, reg, built, work):
    import csiclient
    from csidaemon import Daemon
    d = Daemon(os.path.join(work, "csi"), os.path.join(work, "csi-cache"), node_id="families")
    os.makedirs(d.workdir)
    d.start()
    try:
        for i, b in enumerate(built):
            target = os.path.join(work, "pods", b.name, "mount")
            os.makedirs(os.path.dirname(target))
            code, details = csiclient.code_of(d.client.publish, target, b.ref,
                                              volume_id=f"vol-{i}")
            ok = code.name == "OK"
            t.fcheck(b.family, f"{b.name} publish: NodePublishVolume OK", ok,
                     f"{code.name}: {details}")
            got = tree_of(target) if ok else {}
            compare(t, b, "publish", got, b.files, details)
            if b.family in ("kitops", "docker-model-runner"):
                t.fcheck(b.family, f"{b.name} publish: never an empty volume", bool(got) or not ok,
                         "OK with an empty volume")
            if ok:
                code, details = csiclient.code_of(d.client.unpublish, target, volume_id=f"vol-{i}")
                t.fcheck(b.family, f"{b.name} publish: unpublished", code.name == "OK", details)
        b = next(x for x in built if x.name == "kitops-none")
        target = os.path.join(work, "pods", "kinds", "mount")
        os.makedirs(os.path.dirname(target))
        code, details = csiclient.code_of(d.client.publish, target, b.ref, volume_id="vol-kinds",
                                          context={"kinds": "datasets,docs"})
        want = {p: v for p, v in b.files.items() if b.kinds[p] in ("datasets", "docs")}
        compare(t, b, "publish kinds=datasets,docs",
                tree_of(target) if code.name == "OK" else {}, want, f"{code.name}: {details}")
        if code.name == "OK":
            csiclient.code_of(d.client.unpublish, target, volume_id="vol-kinds")
    finally:
        rc = d.stop()
        t.check("modelvol-csi exits 0 on SIGTERM", rc == 0, f"exit {rc}")
        if t.failed:
            print(d.read_log()[-4000:])


def main():
    if not os.path.exists(MODELPULL):
        print(f"SKIP: modelpull not built at {MODELPULL}")
        return 77
    t = FamilyChecks()
    work = tempfile.mkdtemp(prefix="families.")
    try:
        with mvreg.Registry(os.path.join(work, "reg")) as reg:
            built = artifacts.build_all(reg)
            for b in built:
                builder_shape(t, reg, b)
            pulls(t, reg, built, work)
            if os.geteuid() == 0:
                publishes(t, reg, built, work)
            else:
                print("SKIP: the modelvol-csi half needs root for bind mounts; pulls were checked")
    finally:
        mounts.remove_tree(work)
    t.report()
    return t.summary()


if __name__ == "__main__":
    sys.exit(main())
