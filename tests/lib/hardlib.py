"""hardlib.py — shared pieces of the hardening suites (tests/integration/
test_hard_*): short or long mode from MV_LONG, running modelpull, an nginx
whose storage log records when each blob GET started and how many bytes it
sent, multi-blob models, and the byte accounting of an interrupted pull
(what was kept on disk, what was fetched again)."""
import json
import os
import re
import subprocess

from mvfetch import random_file
from nginx import Nginx
from util import BUILD_DIR, wait_for

LONG = os.environ.get("MV_LONG", "0") == "1"
MODELPULL = os.path.join(BUILD_DIR, "modelpull")
MODELPUSH = os.path.join(BUILD_DIR, "modelpush")
ENV = dict(os.environ, DOCKER_CONFIG="/nonexistent-modelvol-test")


def pick(short, long):
    return long if LONG else short


def modelpull(cache, *args, env=None, timeout=300, config=None):
    cmd = [MODELPULL, "--cache", cache]
    if config:
        cmd += ["--config", config]
    p = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                       env=env or ENV, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def verify_clean(cache):
    """(ok, output) of `modelpull verify`: exit 0 and nothing corrupt."""
    rc, out, err = modelpull(cache, "verify")
    return rc == 0 and " 0 corrupt" in out, out + err


def make_model(dirpath, sizes):
    """Writes random files {name: size}; returns ({name: path}, {name: sha256})."""
    os.makedirs(dirpath, exist_ok=True)
    paths, digests = {}, {}
    for name, size in sizes.items():
        p = os.path.join(dirpath, name.replace("/", "_"))
        digests[name] = random_file(p, size)
        paths[name] = p
    return paths, digests


class TimedNginx(Nginx):
    """nginx.Nginx whose storage log also records $msec and $request_time,
    so each blob GET can be placed before or after a kill by its start."""

    def _conf(self):
        conf = super()._conf()
        return conf.replace(
            "log_format storage '$remote_addr",
            "log_format storage '$msec $request_time $remote_addr", 1)

    def blob_gets(self):
        """[(start epoch s, digest, status, bytes sent, authorization)]"""
        out = []
        rx = re.compile(r'^(?P<msec>[\d.]+) (?P<rt>[\d.]+) \S+ '
                        r'"GET \S*/blobs/(?P<d>sha256:[0-9a-f]+)\S* [^"]*" '
                        r'(?P<st>\d+) (?P<b>\d+) range="[^"]*" auth="(?P<a>[^"]*)"')
        for line in self.read_log("storage"):
            m = rx.match(line)
            if m:
                out.append((float(m["msec"]) - float(m["rt"]), m["d"], int(m["st"]), int(m["b"]),
                            m["a"]))
        return out

    def bytes_since(self, t0, t1=None):
        return sum(b for s, _, st, b, _ in self.blob_gets()
                   if s >= t0 and (t1 is None or s < t1) and st in (200, 206))

    def settled_bytes(self, t0, t1, secs=10):
        """Bytes of GETs started in [t0, t1), once the log stops growing:
        a killed client's requests are logged when nginx notices it is gone."""
        last = [None]

        def stable():
            n = len(self.read_log("storage"))
            same = last[0] == n
            last[0] = n
            return same
        wait_for(stable, secs, 0.25)
        return self.bytes_since(t0, t1)


def kept_bytes(cache, sizes):
    """Bytes of this model a later pull may reuse: whole blobs already in
    blobs/, plus the ranges recorded in ingest/<hex>.state sidecars whose
    partial file exists. sizes: {digest: size}."""
    kept = 0
    bdir = os.path.join(cache, "blobs", "sha256")
    idir = os.path.join(cache, "ingest")
    for digest, size in sizes.items():
        hx = digest.split(":", 1)[1]
        if os.path.exists(os.path.join(bdir, hx)):
            kept += size
            continue
        st, part = os.path.join(idir, hx + ".state"), os.path.join(idir, hx + ".partial")
        if not (os.path.exists(st) and os.path.exists(part)):
            continue
        try:
            with open(st) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        if len(lines) < 3 or lines[1] != f"digest {digest}":
            continue
        for line in lines[3:]:
            a, _, b = line.partition(" ")
            if a.isdigit() and b.isdigit():
                kept += int(b) - int(a)
    return kept


def manifest_sizes(reg, repo, tag):
    """{digest: size} of the config and layers of a pushed manifest."""
    import urllib.request
    req = urllib.request.Request(f"http://{reg.addr}/v2/{repo}/manifests/{tag}", headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json"})
    m = json.loads(urllib.request.urlopen(req, timeout=10).read())
    sizes = {m["config"]["digest"]: m["config"]["size"]}
    for layer in m["layers"]:
        sizes[layer["digest"]] = layer["size"]
    return sizes


def percentile(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]
