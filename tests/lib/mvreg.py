"""mvreg.py — test helpers for Python tests: a real docker-registry on a free
127.0.0.1 port, and pushing files to it as a ModelPack artifact over the
plain distribution API (monolithic uploads), so tests need not depend on
modelpush."""
import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request

from util import free_port, sha256_bytes, sha256_file, stop_process, wait_for


def wait_http(url, secs=20):
    """Returns once url answers at all (any HTTP status)."""
    def answers():
        try:
            urllib.request.urlopen(url, timeout=1).read()
        except urllib.error.HTTPError:
            pass  # it answered
        except OSError:
            return False
        return True
    wait_for(answers, secs, message=f"server at {url} did not come up within {secs}s")


class Registry:
    """docker-registry serving from a temp dir; use as a context manager."""

    def __init__(self, tmp=None):
        self.tmp = tmp or tempfile.mkdtemp(prefix="modelvol-reg.")
        self.own_tmp = tmp is None
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.log_path = os.path.join(self.tmp, "registry.log")
        self.proc = None

    def start(self):
        data = os.path.join(self.tmp, "data")
        os.makedirs(data, exist_ok=True)
        cfg = os.path.join(self.tmp, "config.yml")
        with open(cfg, "w") as f:
            f.write(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
                f"storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n"
                f"http:\n  addr: {self.addr}\n"
            )
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=self.log, stderr=self.log)
        wait_http(f"http://{self.addr}/v2/")
        return self

    def stop(self):
        if self.proc:
            stop_process(self.proc, secs=10)
            self.proc = None
            self.log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()
        if self.own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def access_log(self):
        with open(self.log_path) as f:
            return f.read()

    # ---- pushing ---------------------------------------------------------
    def _req(self, method, path, data=None, headers=None):
        req = urllib.request.Request(f"http://{self.addr}{path}", data=data, method=method,
                                     headers=headers or {})
        return urllib.request.urlopen(req, timeout=60)

    def push_blob(self, repo, data):
        digest = sha256_bytes(data)
        r = self._req("POST", f"/v2/{repo}/blobs/uploads/")
        loc = r.headers["Location"]
        sep = "&" if "?" in loc else "?"
        if loc.startswith("http"):
            loc = loc.split(self.addr, 1)[1]
        self._req("PUT", f"{loc}{sep}digest={digest}", data=data,
                  headers={"Content-Type": "application/octet-stream"})
        return {"digest": digest, "size": len(data)}

    def push_blob_file(self, repo, path):
        """Streams a file as a blob (monolithic PUT), never holding it in memory."""
        digest = sha256_file(path)
        size = os.path.getsize(path)
        r = self._req("POST", f"/v2/{repo}/blobs/uploads/")
        loc = r.headers["Location"]
        if loc.startswith("http"):
            loc = loc.split(self.addr, 1)[1]
        sep = "&" if "?" in loc else "?"
        with open(path, "rb") as f:
            self._req("PUT", f"{loc}{sep}digest={digest}", data=f,
                      headers={"Content-Type": "application/octet-stream",
                               "Content-Length": str(size)})
        return {"digest": digest, "size": size}

    def push_manifest(self, repo, ref, manifest, media_type):
        body = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
        self._req("PUT", f"/v2/{repo}/manifests/{ref}", data=body,
                  headers={"Content-Type": media_type})
        return sha256_bytes(body)

    def push_model(self, repo, tag, files):
        """files: {relative path: bytes, or a local file path as str}. Pushes
        one raw ModelPack layer per file and returns the manifest digest."""
        layers = []
        for path, data in sorted(files.items()):
            d = self.push_blob_file(repo, data) if isinstance(data, str) else self.push_blob(repo, data)
            kind = "weight" if path.endswith((".safetensors", ".bin", ".gguf")) else "weight.config"
            layers.append({
                "mediaType": f"application/vnd.cncf.model.{kind}.v1.raw",
                "digest": d["digest"], "size": d["size"],
                "annotations": {"org.cncf.model.filepath": path,
                                "org.opencontainers.image.title": os.path.basename(path)},
            })
        cfg = json.dumps({"descriptor": {"name": repo}, "modelfs": {"type": "layers", "diffIds": [l["digest"] for l in layers]}}).encode()
        c = self.push_blob(repo, cfg)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.cncf.model.manifest.v1+json",
            "config": {"mediaType": "application/vnd.cncf.model.config.v1+json", **c},
            "layers": layers,
        }
        return self.push_manifest(repo, tag, manifest, "application/vnd.oci.image.manifest.v1+json")
