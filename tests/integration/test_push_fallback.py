"""test_push_fallback.py — modelpush against registry behaviour the real
docker-registry does not produce on demand, put in front of a real
docker-registry by a small forwarding proxy of our own:
  * a registry that refuses chunked uploads (PATCH -> 405): modelpush falls
    back to one monolithic PUT, says so, and the blob arrives intact;
  * a transient 503 on one PATCH mid-upload: modelpush asks the upload
    session where it stands, carries on, and the blob arrives intact;
  * an upload session that expires mid-upload: the blob starts over;
  * a 503 on a monolithic PUT: the blob starts over in a new session;
  * one blob refused while another uploads: the failure stops the other;
  * a registry that keeps answering 503: a non-zero exit and one line naming
    the file and the status.
The proxy only listens on 127.0.0.1."""
import http.client
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import mvreg  # noqa: E402
from util import BUILD_DIR, serve_http, sha256_bytes, sha256_stream, stop_http  # noqa: E402

PUSH = os.path.join(BUILD_DIR, "modelpush")
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "proxy-authorization", "proxy-authenticate"}


class Limited:
    """Reads at most n bytes of a stream, so bodies are forwarded in pieces."""

    def __init__(self, f, n):
        self.f, self.n = f, n

    def read(self, size=-1):
        if self.n <= 0:
            return b""
        if size < 0 or size > self.n:
            size = self.n
        b = self.f.read(min(size, 1 << 20))
        self.n -= len(b)
        return b


class Proxy:
    """Forwards to upstream; fault(method, path, count) may return a status
    to answer instead (the request body is drained first)."""

    def __init__(self, upstream, fault):
        self.upstream = upstream
        self.fault = fault
        self.counts = {}
        self.lock = threading.Lock()
        proxy = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def handle_one(self):
                n = int(self.headers.get("Content-Length") or 0)
                with proxy.lock:
                    key = self.command
                    proxy.counts[key] = proxy.counts.get(key, 0) + 1
                    count = proxy.counts[key]
                status = proxy.fault(self.command, self.path, count)
                if status:
                    body = Limited(self.rfile, n)
                    while body.read():
                        pass
                    msg = json.dumps({"errors": [{"code": "UNSUPPORTED", "message": "fault"}]}).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                conn.request(self.command, self.path, body=Limited(self.rfile, n) if n else None,
                             headers=headers, encode_chunked=False)
                r = conn.getresponse()
                data = r.read()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one

        self.server = serve_http(H)
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        stop_http(self.server)


from checks import Checks  # noqa: E402

T = Checks()
check = T.check


def push(model, ref, state, *args):
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    p = subprocess.run([PUSH, "--progress=json", "--jobs", "1", "--state-dir", state, *args, model, ref],
                       capture_output=True, text=True, env=env, timeout=300)
    events = []
    for line in p.stderr.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return p, events


def blob_digest(reg, repo, digest):
    with urllib.request.urlopen(f"http://{reg.addr}/v2/{repo}/blobs/{digest}", timeout=60) as r:
        return sha256_stream(r)


def main():
    if not os.access(PUSH, os.X_OK):
        print(f"SKIP: {PUSH} is not built")
        return 77
    with tempfile.TemporaryDirectory(prefix="modelvol-pushfb.") as tmp, \
            mvreg.Registry(os.path.join(tmp, "reg")) as reg:
        model = os.path.join(tmp, "model")
        os.makedirs(model)
        data = os.urandom(5 * 1024 * 1024 + 123)
        with open(os.path.join(model, "model.safetensors"), "wb") as f:
            f.write(data)
        digest = sha256_bytes(data)
        state = os.path.join(tmp, "state")

        # 1. chunks refused -> monolithic
        proxy = Proxy(reg.addr, lambda m, path, n: 405 if m == "PATCH" else None)
        try:
            p, ev = push(model, f"{proxy.addr}/models/nochunks:v1", state, "--chunk-size", "1M")
        finally:
            proxy.close()
        check("chunks refused: push exits 0", p.returncode == 0)
        if p.returncode:
            print(p.stderr)
        check("chunks refused: the proxy refused a PATCH", proxy.counts.get("PATCH", 0) >= 1)
        check("chunks refused: a retry event says it fell back to one PUT",
              any(e["event"] == "retry" and "one PUT" in e.get("message", "") for e in ev))
        log = reg.access_log()
        check("chunks refused: no PATCH reached the registry", '"PATCH /v2/models/nochunks/' not in log)
        check("chunks refused: the blob arrived intact", blob_digest(reg, "models/nochunks", digest) == digest)
        check("chunks refused: the last stdout line is REF@digest",
              p.stdout.strip().splitlines()[-1].startswith(f"{proxy.addr}/models/nochunks:v1@sha256:"))

        # 2. one transient 503 on the second PATCH -> status query, carry on
        proxy = Proxy(reg.addr, lambda m, path, n: 503 if (m == "PATCH" and n == 2) else None)
        try:
            p, ev = push(model, f"{proxy.addr}/models/flaky:v1", state, "--chunk-size", "1M")
        finally:
            proxy.close()
        check("transient 503: push exits 0", p.returncode == 0)
        if p.returncode:
            print(p.stderr)
        check("transient 503: a retry event was reported", any(e["event"] == "retry" for e in ev))
        check("transient 503: PATCHes went on after the failure", proxy.counts.get("PATCH", 0) >= 6)
        summary = [e for e in ev if e["event"] == "summary"]
        check("transient 503: the blob was not sent twice",
              bool(summary) and summary[0]["bytes_uploaded"] < 2 * len(data))
        check("transient 503: the blob arrived intact", blob_digest(reg, "models/flaky", digest) == digest)

        # 2b. the session expires mid-upload (the registry purges it, the
        # next PATCH is a 404): modelpush notices and starts the blob over.
        uploads = os.path.join(reg.tmp, "data", "docker", "registry", "v2", "repositories",
                               "models", "expire", "_uploads")

        def expire(m, path, n):
            if m == "PATCH" and n == 3:
                shutil.rmtree(uploads, ignore_errors=True)
                return 404
            return None

        proxy = Proxy(reg.addr, expire)
        try:
            p, ev = push(model, f"{proxy.addr}/models/expire:v1", state, "--chunk-size", "1M")
        finally:
            proxy.close()
        check("expired mid-upload: push exits 0", p.returncode == 0)
        if p.returncode:
            print(p.stderr)
        starts = [e for e in ev if e["event"] == "start" and e["digest"] == digest]
        check("expired mid-upload: the blob started over", len(starts) == 2 and starts[1]["done"] == 0)
        check("expired mid-upload: the blob arrived intact", blob_digest(reg, "models/expire", digest) == digest)

        # 3. a 503 on a monolithic PUT: the blob starts over in a new session
        proxy = Proxy(reg.addr, lambda m, path, n: 503 if (m == "PUT" and n == 1) else None)
        try:
            p, ev = push(model, f"{proxy.addr}/models/putfail:v1", state, "--monolithic")
        finally:
            proxy.close()
        check("503 on PUT: push exits 0", p.returncode == 0)
        if p.returncode:
            print(p.stderr)
        check("503 on PUT: a new session was opened", proxy.counts.get("POST", 0) >= 3)
        check("503 on PUT: the blob arrived intact", blob_digest(reg, "models/putfail", digest) == digest)

        # 4. one blob refused (403) while another is mid-upload: the failure
        # stops the other worker's transfer instead of letting it finish.
        model2 = os.path.join(tmp, "model2")
        os.makedirs(model2)
        big = os.urandom(64 * 1024 * 1024)
        with open(os.path.join(model2, "a.safetensors"), "wb") as f:
            f.write(big)
        with open(os.path.join(model2, "b.md"), "w") as f:
            f.write("# refused\n")
        small = sha256_bytes(b"# refused\n")
        proxy = Proxy(reg.addr, lambda m, path, n: 403 if (m == "PUT" and small in path) else None)
        try:
            p, ev = push(model2, f"{proxy.addr}/models/stop:v1", state, "--jobs", "2",
                         "--chunk-size", "1M", "--progress=none")
        finally:
            proxy.close()
        err = [l for l in p.stderr.splitlines() if not l.startswith("{")]
        check("one blob refused: non-zero exit naming that file and the 403",
              p.returncode == 1 and len(err) == 1 and "b.md" in err[0] and "403" in err[0])
        check("one blob refused: the other upload was stopped mid-way",
              proxy.counts.get("PATCH", 0) < 64)
        print("\n".join(err))

        # 5. a registry that keeps failing -> one line naming the file and status
        proxy = Proxy(reg.addr, lambda m, path, n: 503 if m == "POST" else None)
        try:
            p, ev = push(model, f"{proxy.addr}/models/down:v1", state, "--retries", "2")
        finally:
            proxy.close()
        err = [l for l in p.stderr.splitlines() if not l.startswith("{")]
        check("failing registry: non-zero exit", p.returncode != 0)
        check("failing registry: POST tried 1 + 2 retries times", proxy.counts.get("POST", 0) == 3)
        check("failing registry: each retry reported",
              len([e for e in ev if e["event"] == "retry"]) == 2)
        check("failing registry: one line on stderr", len(err) == 1)
        check("failing registry: it names the file and the status",
              bool(err) and "model.safetensors" in err[0] and "503" in err[0])
        print("\n".join(err))

    return T.summary()


if __name__ == "__main__":
    sys.exit(main())
