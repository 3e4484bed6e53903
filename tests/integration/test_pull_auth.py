"""Registry auth and TLS against docker-registry behind real nginx: the
Bearer challenge flow with our token issuer (anonymous, with username and
password, from a credential helper named in config.json, and with an
identitytoken through the OAuth2 refresh-token POST),
tokens refreshed once on a 401 in the middle of a ranged download, and TLS
with a test CA given as caFile (read once per curl multi handle, not once per
connection) and insecureSkipVerify, explicit only."""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import mvfetch  # noqa: E402
from checks import Checks  # noqa: E402
from inotify import OpenCounter  # noqa: E402
from mvreg import Registry  # noqa: E402
from nginx import Nginx, make_ca  # noqa: E402
from tokenserver import TokenServer  # noqa: E402
from util import sha256_file  # noqa: E402

SIZE = 40 * 1024 * 1024 + 77
USER, PASSWORD = "tokenuser", "t0ken-Pa55-abcdef"
IDTOKEN = "identity-refresh-token-0123456789"


def main():
    t = Checks()
    tmp = tempfile.mkdtemp(prefix="modelvol-pull-auth.")
    try:
        blob = os.path.join(tmp, "blob.bin")
        digest = mvfetch.random_file(blob, SIZE)
        flags = ["--chunk-size", "4M", "--threshold", "8M", "--connections", "4"]
        with Registry(tmp=os.path.join(tmp, "reg")) as reg:
            reg.push_model("models/tok", "v1", {"w.safetensors": blob})

            # Anonymous Bearer: a token without credentials.
            with TokenServer() as ts, Nginx(tmp, reg.addr, bearer=ts) as ng:
                rc, out, err = mvfetch.run(["ping", f"{ng.addr}/models/tok:v1"])
                t.check("ping /v2/ answers the challenge", rc == 0 and ts.issued == 1, err)
                rc, out, err = mvfetch.run(flags + ["manifest", f"{ng.addr}/models/tok:v1"])
                t.check("anonymous bearer token flow", rc == 0 and ts.issued >= 2, err)

            # Username/password at the realm; tokens good for 3 uses so the
            # ranged download must refresh on 401 several times.
            with TokenServer(user=USER, password=PASSWORD, max_uses=3) as ts, \
                    Nginx(tmp, reg.addr, bearer=ts) as ng:
                ref = f"{ng.addr}/models/tok:v1"
                rc, out, err = mvfetch.run(flags + ["manifest", ref])
                t.check("realm refuses anonymous: one-line 401", rc != 0 and "401" in err and
                        len(err.strip().splitlines()) == 1, err)
                dc = mvfetch.write_docker_config(os.path.join(tmp, "d1"), {
                    f"http://{ng.addr}": {"username": USER, "password": PASSWORD}})
                env = {"DOCKER_CONFIG": dc}
                before = ts.issued
                outf = os.path.join(tmp, "o1")
                rc, out, err = mvfetch.run(flags + ["blob", ref, digest, SIZE, outf, outf + ".st"],
                                           env=env)
                t.check("ranged pull with expiring tokens succeeds", rc == 0, err)
                t.check("bytes identical", rc == 0 and sha256_file(outf) == digest)
                t.check("tokens were refreshed on 401", ts.issued - before >= 3,
                        f"issued {ts.issued - before}")
                t.check("no credential in output", PASSWORD not in out + err)

            # A credential helper named in the node's config.json (credHelpers).
            with TokenServer(user=USER, password=PASSWORD) as ts, \
                    Nginx(tmp, reg.addr, bearer=ts) as ng:
                bindir = os.path.join(tmp, "helper-bin")
                os.makedirs(bindir, exist_ok=True)
                asked = os.path.join(tmp, "helper-asked")
                helper = os.path.join(bindir, "docker-credential-mvtest")
                with open(helper, "w") as f:
                    f.write(f"#!/bin/sh\nread server\necho \"$server\" >>{asked}\n"
                            f"echo '{{\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n")
                os.chmod(helper, 0o755)
                dc = os.path.join(tmp, "d5")
                os.makedirs(dc, exist_ok=True)
                with open(os.path.join(dc, "config.json"), "w") as f:
                    json.dump({"credHelpers": {ng.addr: "mvtest"}}, f)
                env = {"DOCKER_CONFIG": dc, "PATH": bindir + ":" + os.environ.get("PATH", "")}
                rc, out, err = mvfetch.run(flags + ["manifest", f"{ng.addr}/models/tok:v1"],
                                           env=env)
                t.check("credHelpers: the helper's credential gets a token", rc == 0 and
                        ts.issued >= 1, err)
                with open(asked) as f:
                    servers = f.read().split()
                t.check("credHelpers: the helper was asked for this registry",
                        servers == [ng.addr], servers)
                t.check("credHelpers: the secret is not in output", PASSWORD not in out + err)

            # identitytoken: docker's OAuth2 refresh-token POST.
            with TokenServer(identity_token=IDTOKEN) as ts, Nginx(tmp, reg.addr, bearer=ts) as ng:
                dc = mvfetch.write_docker_config(os.path.join(tmp, "d2"), {
                    ng.addr: {"username": "<token>", "identitytoken": IDTOKEN}})
                rc, out, err = mvfetch.run(flags + ["manifest", f"{ng.addr}/models/tok:v1"],
                                           env={"DOCKER_CONFIG": dc})
                t.check("identitytoken used as OAuth2 refresh_token", rc == 0 and ts.oauth_issued >= 1,
                        err)
                t.check("identity token not in output", IDTOKEN not in out + err)
                dc = mvfetch.write_docker_config(os.path.join(tmp, "d3"), {
                    ng.addr: {"identitytoken": "wrong-" + IDTOKEN}})
                rc, out, err = mvfetch.run(flags + ["manifest", f"{ng.addr}/models/tok:v1"],
                                           env={"DOCKER_CONFIG": dc})
                t.check("bad identitytoken is a 401 without the secret",
                        rc != 0 and "401" in err and IDTOKEN not in err, err)

            # A token server without OAuth2: POST 404, then the GET form.
            with TokenServer(oauth=False) as ts, Nginx(tmp, reg.addr, bearer=ts) as ng:
                dc = mvfetch.write_docker_config(os.path.join(tmp, "d4"), {
                    ng.addr: {"username": "<token>", "identitytoken": IDTOKEN}})
                rc, out, err = mvfetch.run(flags + ["manifest", f"{ng.addr}/models/tok:v1"],
                                           env={"DOCKER_CONFIG": dc})
                t.check("no OAuth2 at the realm: falls back to GET",
                        rc == 0 and ts.oauth_refused >= 1 and ts.issued >= 1, err)

            # TLS with a test CA.
            ca = make_ca(os.path.join(tmp, "ca"))
            with Nginx(tmp, reg.addr, tls=ca) as ng:
                ref = f"{ng.addr}/models/tok:v1"
                rc, out, err = mvfetch.run(flags + ["manifest", ref])
                t.check("untrusted certificate is refused", rc != 0, out)
                cfg = os.path.join(tmp, "tls.json")
                with open(cfg, "w") as f:
                    json.dump({"registries": {ng.addr: {"caFile": ca["ca"]}}}, f)
                rc, out, err = mvfetch.run(flags + ["--config", cfg, "manifest", ref])
                t.check("caFile makes TLS work", rc == 0, err)
                outf = os.path.join(tmp, "o2")
                with OpenCounter(ca["ca"]) as ca_opens:
                    rc, out, err = mvfetch.run(flags + ["--config", cfg, "blob", ref, digest, SIZE,
                                                        outf, outf + ".st"])
                t.check("ranged pull over TLS", rc == 0 and sha256_file(outf) == digest, err)
                # libcurl keeps the parsed CA file per multi handle (one for
                # single requests, one for ranges) only when no CA directory
                # is set; otherwise each of the 4 connections parses it.
                t.check("the CA file is read once per multi handle, not per connection",
                        1 <= ca_opens.opens <= 2, f"{ca_opens.opens} opens")
                with open(cfg, "w") as f:
                    json.dump({"registries": {ng.addr: {"insecureSkipVerify": True}}}, f)
                rc, out, err = mvfetch.run(flags + ["--config", cfg, "manifest", ref])
                t.check("insecureSkipVerify when explicit", rc == 0, err)
            rc, out, err = mvfetch.run(["--config", os.path.join(tmp, "missing.json"),
                                        "manifest", f"{reg.addr}/models/tok:v1"])
            t.check("a named config that is missing is an error", rc != 0 and "missing.json" in err,
                    err)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
