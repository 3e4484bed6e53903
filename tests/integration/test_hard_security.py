"""Security (issue 8), through the whole stack (modelpull and modelvol-csi
with the cache), against docker-registry behind real nginx (root only):

  * redirects: blob GETs 307 to a storage server block on another port;
    its access log ($http_authorization) shows no Authorization header on
    any blob GET, for a Bearer-token pull by modelpull and for a publish
    with a Basic nodePublishSecret (test_pull_ranged.py checks the same
    for the bare puller);
  * secrets: the Basic password, its base64 auth string and every Bearer
    token issued appear in no stdout, stderr (including a failing pull's
    error), --progress=json line, plugin log, /metrics output, or file
    under the cache;
  * TLS: a registry with a certificate from an unknown CA is refused by
    modelpull and by the plugin; caFile makes it work; insecureSkipVerify
    works only when set (false, or a config without it, still refuses);
  * read-only mounts: write, create, mkdir, chmod, rename, unlink and
    utime through a published volume all fail with EROFS; nothing under
    the cache root is writable by others."""
import base64
import errno
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import csiclient  # noqa: E402
import csidaemon  # noqa: E402
import mounts  # noqa: E402
import hardlib  # noqa: E402
from hardlib import TimedNginx  # noqa: E402
from checks import Checks  # noqa: E402
from mvfetch import write_docker_config  # noqa: E402
from mvreg import Registry  # noqa: E402
from nginx import Nginx, make_ca  # noqa: E402
from tokenserver import TokenServer  # noqa: E402
import util  # noqa: E402

USER, PASSWORD = "hard-user", "Hx7-secret-never-logged-Q2"
PULL = ["pull", "--connections", "4", "--chunk-size", "4M"]


def erofs(fn, *a):
    try:
        fn(*a)
    except OSError as e:
        return e.errno == errno.EROFS
    return False


def write_existing(p):
    with open(p, "r+b") as f:
        f.write(b"x")


def create(p):
    with open(p, "xb") as f:
        f.write(b"x")


def files_with(root, needles):
    """Paths under root whose bytes (or name) contain any needle."""
    hits = []
    bneedles = [n.encode() for n in needles]
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            if any(n in name for n in needles):
                hits.append(p)
            if name in files and os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    data = f.read()
                if any(n in data for n in bneedles):
                    hits.append(p)
    return hits


def other_writable(root):
    bad = []
    for dirpath, dirs, files in os.walk(root):
        for name in [""] + dirs + files:
            p = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(p)
            if not os.path.islink(p) and st.st_mode & 0o002:
                bad.append(f"{oct(st.st_mode)} {p}")
    return bad


def storage_auth(ng, since):
    """Authorization values ('-' when absent) of blob GETs at storage since
    epoch `since`, and how many there were."""
    gets = [g for g in ng.blob_gets() if g[0] >= since]
    return [g[4] for g in gets if g[4] != "-"], len(gets)


def main():
    mounts.require_root()
    t = Checks()
    tmp = tempfile.mkdtemp(prefix="modelvol-hard-security.")
    os.chmod(tmp, 0o755)
    daemons = []
    try:
        paths, want = hardlib.make_model(os.path.join(tmp, "src"), {
            "model.safetensors": 36 << 20, "config.json": 500})
        auth_b64 = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        outputs = []
        with Registry(tmp=os.path.join(tmp, "reg")) as reg:
            reg.push_model("models/sec", "v1", paths)

            # ---- Bearer tokens, modelpull, redirect to storage ----------
            cache = os.path.join(tmp, "cache")
            with TokenServer(user=USER, password=PASSWORD) as ts, \
                    TimedNginx(tmp, reg.addr, bearer=ts, redirect_blobs=True) as ng:
                ref = f"{ng.addr}/models/sec:v1"
                dc = write_docker_config(os.path.join(tmp, "dc"), {
                    ng.addr: {"username": USER, "password": PASSWORD}})
                env = dict(hardlib.ENV, DOCKER_CONFIG=dc)
                since = 0
                rc, out, err = hardlib.modelpull(cache, *PULL, "--progress=json", ref, env=env)
                outputs += [out, err]
                tree = out.strip().splitlines()[-1] if rc == 0 and out.strip() else ""
                t.check("bearer pull through redirects succeeds", rc == 0, err)
                t.check("bearer pull is byte-identical",
                        tree and util.tree_digests(tree) == want)
                leaked, n = storage_auth(ng, since)
                t.check(f"no Authorization reached storage ({n} blob GETs)", n >= 9 and not leaked,
                        str(leaked[:2]))
                t.check("tokens were issued", ts.issued >= 1)
                bad = write_docker_config(os.path.join(tmp, "dcbad"), {
                    ng.addr: {"username": USER, "password": PASSWORD + "-wrong"}})
                rc, out, err = hardlib.modelpull(os.path.join(tmp, "cache-x"), *PULL,
                                                 "--progress=none", "--policy", "Always", ref,
                                                 env=dict(hardlib.ENV, DOCKER_CONFIG=bad))
                outputs += [out, err]
                t.check("a wrong password fails with one line", rc != 0 and
                        len(err.strip().splitlines()) == 1, err)
                tokens = list(ts.tokens)

            # ---- Basic nodePublishSecret, the plugin, redirect -----------
            with TimedNginx(tmp, reg.addr, basic=(USER, PASSWORD), redirect_blobs=True) as ng:
                ref = f"{ng.addr}/models/sec:v1"
                work = os.path.join(tmp, "csi")
                os.makedirs(work)
                ccache = os.path.join(tmp, "ccache")
                d = csidaemon.Daemon(work, ccache)
                daemons.append(d)
                d.start()
                secret = json.dumps({"auths": {ng.addr: {"auth": auth_b64}}})
                tg = os.path.join(work, "target")
                code, details = csiclient.code_of(d.client.publish, tg, ref, volume_id="sec",
                                                  secrets={".dockerconfigjson": secret})
                t.check("publish with a Basic nodePublishSecret", code.name == "OK", details)
                t.check("the volume is byte-identical", util.tree_digests(tg) == want)
                leaked, n = storage_auth(ng, 0)
                t.check(f"no Authorization reached storage from the plugin ({n} GETs)",
                        n >= 3 and not leaked, str(leaked[:2]))
                secret_bad = json.dumps({"auths": {ng.addr: {"auth": base64.b64encode(
                    f"{USER}:{PASSWORD}-wrong".encode()).decode()}}})
                code, details = csiclient.code_of(
                    d.client.publish, os.path.join(work, "t2"), f"{ng.addr}/models/other:v1",
                    volume_id="sec2", secrets={".dockerconfigjson": secret_bad})
                t.check("a wrong secret is UNAUTHENTICATED", code.name == "UNAUTHENTICATED",
                        f"{code.name} {details}")
                outputs.append(details)
                outputs.append(d.metrics())

                # ---- read-only mount -------------------------------------
                f = os.path.join(tg, "config.json")
                t.check("write to a model file: EROFS", erofs(write_existing, f))
                t.check("create a file: EROFS", erofs(create, os.path.join(tg, "new")))
                t.check("mkdir: EROFS", erofs(os.mkdir, os.path.join(tg, "dir")))
                t.check("chmod: EROFS", erofs(os.chmod, f, 0o666))
                t.check("rename: EROFS", erofs(os.rename, f, os.path.join(tg, "moved.json")))
                t.check("unlink: EROFS", erofs(os.unlink, f))
                t.check("utime: EROFS", erofs(os.utime, f, (0, 0)))
                t.check("the file is unchanged", util.sha256_file(f) == want["config.json"])
                for c in (cache, ccache):
                    bad = other_writable(c)
                    t.check(f"nothing under {os.path.basename(c)} is writable by others", not bad,
                            "; ".join(bad[:5]))
                code, _ = csiclient.code_of(d.client.unpublish, tg, volume_id="sec")
                t.check("unpublish", code.name == "OK")
                t.check("plugin exits 0", d.stop() == 0)
                outputs.append(d.read_log())

            needles = [PASSWORD, auth_b64] + tokens
            t.check(f"{len(tokens)} bearer tokens collected", len(tokens) >= 1)
            found = [n for n in needles if any(n in o for o in outputs)]
            t.check("no secret in any output, error, log or /metrics", not found,
                    str([f[:6] + "..." for f in found]))
            hits = files_with(cache, needles) + files_with(ccache, needles)
            t.check("no secret in any file under the caches", not hits, str(hits[:3]))

            # ---- TLS ---------------------------------------------------
            ca = make_ca(os.path.join(tmp, "ca"))
            tcache = os.path.join(tmp, "tcache")
            cfgp = os.path.join(tmp, "tls.json")

            def cfg(host_cfg):
                with open(cfgp, "w") as f:
                    json.dump({"registries": {ng.addr: host_cfg}} if host_cfg is not None else {},
                              f)
                return cfgp

            with Nginx(tmp, reg.addr, tls=ca) as ng:
                ref = f"{ng.addr}/models/sec:v1"
                for name, hc, ok in (
                        ("no config: unknown CA refused", None, False),
                        ("insecureSkipVerify false: refused", {"insecureSkipVerify": False}, False),
                        ("a config without skip-verify: refused", {"plainHTTP": False}, False),
                        ("caFile: accepted", {"caFile": ca["ca"]}, True),
                        ("explicit insecureSkipVerify: accepted", {"insecureSkipVerify": True},
                         True)):
                    shutil.rmtree(tcache, ignore_errors=True)
                    rc, out, err = hardlib.modelpull(tcache, *PULL, "--progress=none", ref,
                                                     config=cfg(hc))
                    tree = out.strip().splitlines()[-1] if rc == 0 and out.strip() else ""
                    if ok:
                        t.check(f"TLS {name}", rc == 0 and util.tree_digests(tree) == want,
                                err)
                    else:
                        t.check(f"TLS {name}", rc != 0 and len(err.strip().splitlines()) == 1,
                                err)
                t.check("the refusal names the certificate problem",
                        "certificate" in hardlib.modelpull(
                            os.path.join(tmp, "tc2"), *PULL, "--progress=none", ref,
                            config=cfg(None))[2].lower())
                work2 = os.path.join(tmp, "csi2")
                os.makedirs(work2)
                for name, hc, want_code in (("unknown CA", None, "FAILED_PRECONDITION"),
                                            ("caFile", {"caFile": ca["ca"]}, "OK")):
                    d = csidaemon.Daemon(work2, os.path.join(tmp, "ccache2"),
                                         args=["--config", cfg(hc)], metrics=False)
                    daemons.append(d)
                    d.start()
                    tg = os.path.join(work2, "t")
                    code, details = csiclient.code_of(d.client.publish, tg, ref, volume_id="tls",
                                                      context={"pullPolicy": "Always"})
                    t.check(f"plugin TLS with {name}: {want_code}", code.name == want_code and
                            (want_code == "OK" or "certificate" in details), f"{code.name} {details}")
                    if code.name == "OK":
                        csiclient.code_of(d.client.unpublish, tg, volume_id="tls")
                    d.stop()
    finally:
        for d in daemons:
            d.stop()
        mounts.remove_tree(tmp)
    t.done()


if __name__ == "__main__":
    main()
