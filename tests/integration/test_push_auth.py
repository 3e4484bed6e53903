"""test_push_auth.py — modelpush authenticates like modelpull, with the push
scope: docker-registry behind real nginx with our Bearer token issuer
(credentials from $DOCKER_CONFIG/config.json, tokens good for three uses so a
chunked upload must refresh on 401 mid-blob), and behind nginx Basic auth.
Missing or wrong credentials give one line with the 401 and never the
secret. A --from mount under Bearer asks up front for a token that also
reads the source repository, and mounts instead of uploading."""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from checks import Checks  # noqa: E402
from mvreg import Registry  # noqa: E402
from nginx import Nginx  # noqa: E402
from tokenserver import TokenServer  # noqa: E402
from util import BUILD_DIR, sha256_bytes, sha256_stream  # noqa: E402

PUSH = os.path.join(BUILD_DIR, "modelpush")
USER, PASSWORD = "pushuser", "pu5h-Pa55-0123456789"
t = Checks()
check = t.check


def docker_config(path, auths):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"auths": auths}, f)
    return path


def push(model, ref, state, docker_cfg, *args):
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000", DOCKER_CONFIG=docker_cfg)
    p = subprocess.run([PUSH, "--progress=none", "--state-dir", state, *args, model, ref],
                       capture_output=True, text=True, env=env, timeout=300)
    return p.returncode, p.stdout, p.stderr


def blob_ok(reg, repo, digest):
    with urllib.request.urlopen(f"http://{reg.addr}/v2/{repo}/blobs/{digest}", timeout=60) as r:
        return sha256_stream(r) == digest


def main():
    if not os.access(PUSH, os.X_OK):
        print(f"SKIP: {PUSH} is not built")
        return 77
    if not shutil.which("nginx"):
        print("SKIP: nginx not installed")
        return 77
    tmp = tempfile.mkdtemp(prefix="modelvol-push-auth.")
    try:
        model = os.path.join(tmp, "model")
        os.makedirs(model)
        data = os.urandom(20 * 1024 * 1024 + 5)
        with open(os.path.join(model, "model.safetensors"), "wb") as f:
            f.write(data)
        with open(os.path.join(model, "config.json"), "w") as f:
            f.write("{}\n")
        digest = sha256_bytes(data)
        state = os.path.join(tmp, "state")
        nocreds = docker_config(os.path.join(tmp, "none"), {})
        with Registry(tmp=os.path.join(tmp, "reg")) as reg:
            # Bearer, tokens good for 3 requests: a 5-chunk upload refreshes.
            with TokenServer(user=USER, password=PASSWORD, max_uses=3) as ts, \
                    Nginx(tmp, reg.addr, bearer=ts) as ng:
                ref = f"{ng.addr}/models/auth:v1"
                rc, out, err = push(model, ref, state, nocreds)
                check("bearer without credentials: non-zero exit", rc != 0, err)
                check("bearer without credentials: one line with the 401",
                      len(err.strip().splitlines()) == 1 and "401" in err, err)
                good = docker_config(os.path.join(tmp, "good"), {
                    f"http://{ng.addr}": {"username": USER, "password": PASSWORD}})
                before = ts.issued
                rc, out, err = push(model, ref, state, good, "--chunk-size", "4M", "--jobs", "1")
                check("bearer with credentials: push exits 0", rc == 0, err)
                check("bearer: the last line is REF@digest",
                      out.strip().splitlines()[-1].startswith(ref + "@sha256:") if out.strip() else False, out)
                scopes = [s for ent in ts.tokens.values() for s in ent[0]]
                check("bearer: tokens asked for the push scope",
                      "repository:models/auth:pull,push" in scopes, str(scopes))
                check("bearer: tokens were refreshed during the chunked upload",
                      ts.issued - before >= 3, f"issued {ts.issued - before}")
                check("bearer: the blob arrived intact", blob_ok(reg, "models/auth", digest))
                check("bearer: no credential in the output", PASSWORD not in out + err)

                # --from: the same model into another repository, mounted (same
                # --name, so that the config blob is the same too).
                ng_log = len(ng.read_log("front"))
                rc, out, err = push(model, f"{ng.addr}/models/auth-copy:v1", state, good,
                                    "--from", "models/auth", "--name", "auth",
                                    "--progress=json")
                check("bearer --from: push exits 0", rc == 0, err)
                summary = [json.loads(l) for l in err.splitlines()
                           if l.startswith("{") and '"summary"' in l]
                check("bearer --from: every blob mounted, no byte uploaded",
                      summary and summary[-1].get("blobs_mounted") == 3 and
                      summary[-1].get("bytes_uploaded") == 0, err[-600:])
                check("bearer --from: the mount's token already covered the source "
                      "(no 401 for want of it)", ts.mount_refused == 0,
                      f"mount_refused={ts.mount_refused}")
                front = ng.read_log("front")[ng_log:]
                check("bearer --from: POST with mount= answered 201, no blob PATCH or PUT",
                      any("mount=" + digest in l and '" 201 ' in l for l in front) and
                      not any(("PATCH" in l or "PUT" in l) and "/blobs/uploads/" in l
                              for l in front), "\n".join(front[-8:]))
                check("bearer --from: the mounted blob is intact",
                      blob_ok(reg, "models/auth-copy", digest))
                bad = docker_config(os.path.join(tmp, "bad"), {
                    f"http://{ng.addr}": {"username": USER, "password": "wrong-" + PASSWORD}})
                rc, out, err = push(model, f"{ng.addr}/models/auth2:v1", state, bad)
                check("bearer with a wrong password: one line with the 401, no secret",
                      rc != 0 and "401" in err and len(err.strip().splitlines()) == 1 and
                      PASSWORD not in err, err)

            # Basic auth at nginx.
            with Nginx(tmp, reg.addr, basic=(USER, PASSWORD)) as ng:
                ref = f"{ng.addr}/models/basic:v1"
                good = docker_config(os.path.join(tmp, "basic"), {
                    ng.addr: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}})
                rc, out, err = push(model, ref, state, good, "--chunk-size", "8M")
                check("basic: push exits 0", rc == 0, err)
                check("basic: the blob arrived intact", rc == 0 and blob_ok(reg, "models/basic", digest))
                rc, out, err = push(model, f"{ng.addr}/models/basic2:v1", state, nocreds)
                check("basic without credentials: one line with the 401",
                      rc != 0 and "401" in err and len(err.strip().splitlines()) == 1, err)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return t.summary()


if __name__ == "__main__":
    sys.exit(main())
