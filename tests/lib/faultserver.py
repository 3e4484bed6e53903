"""faultserver.py — a tiny registry-shaped HTTP/1.1 server for faults real
servers will not produce. It serves /v2/ and blobs (from files, with Range
support) and misbehaves on purpose according to `mode`:

  ok        behave
  wrong     serve the right length with one byte flipped (digest mismatch)
  truncate  the first `count` responses end halfway through the body
  norange   ignore Range and answer 200 with the whole blob
  fail500   the first `count` blob requests get 500
  429       the first `count` blob requests get 429 with Retry-After: 1
  stall     the first `count` responses send half the body, then stall
  404       every blob is unknown
  expire    blob GETs get a 307 to a "storage" URL on localhost that serves
            `count` requests, then answers 403 until a new URL is issued

Every request is recorded in `log` as (monotonic time, method, path, range,
status). Manifests, when given, are served as they are (with whatever
Docker-Content-Digest the test chose)."""
import os
import threading
import time
from http.server import BaseHTTPRequestHandler

from util import free_port, serve_http, stop_http

STALL_SECONDS = 20


class FaultServer:
    def __init__(self, blobs, mode="ok", count=0, manifests=None):
        self.blobs = blobs  # digest -> file path
        # reference (tag or digest) -> (body bytes, content type, the
        # Docker-Content-Digest to send or None)
        self.manifests = manifests or {}
        self.mode, self.count = mode, count
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.log = []
        self.inflight = 0
        self.generation = 0  # "expire": signed storage URLs issued
        self.gen_uses = 0
        self.max_inflight = 0  # most blob GETs served at the same time
        self.auth_headers = []  # Authorization of each request (None if absent)
        self.faults = 0
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.httpd = None

    def _take_fault(self):
        with self.lock:
            if self.faults < self.count:
                self.faults += 1
                return True
            return False

    def start(self):
        fs = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _record(self, status):
                with fs.lock:
                    fs.auth_headers.append(self.headers.get("Authorization"))
                    fs.log.append((time.monotonic(), self.command, self.path,
                                   self.headers.get("Range"), status))

            def _simple(self, code, headers=()):
                self._record(code)
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_HEAD(self):
                self.do_GET(head=True)

            def do_GET(self, head=False):
                if self.path == "/v2/":
                    return self._simple(200)
                if "/manifests/" in self.path:
                    ref = self.path.split("/manifests/")[1]
                    if ref not in fs.manifests:
                        return self._simple(404)
                    body, ctype, dcd = fs.manifests[ref]
                    self._record(200)
                    self.send_response(200)
                    self.send_header("Content-Type", ctype)
                    if dcd:
                        self.send_header("Docker-Content-Digest", dcd)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if not head:
                        try:
                            self.wfile.write(body)
                        except OSError:
                            pass
                    return
                if fs.mode == "expire":
                    if self.path.startswith("/v2/") and "/blobs/" in self.path:
                        with fs.lock:
                            fs.generation += 1
                            fs.gen_uses = 0
                            gen = fs.generation
                        d = self.path.split("/blobs/")[1]
                        # "localhost" is another host than the 127.0.0.1 the
                        # client asked: storage, not the registry.
                        return self._simple(307, [("Location",
                                                   f"http://localhost:{fs.port}/storage/{d}?gen={gen}")])
                    if self.path.startswith("/storage/"):
                        d, _, q = self.path[len("/storage/"):].partition("?gen=")
                        with fs.lock:
                            fs.gen_uses += 1
                            valid = int(q) == fs.generation and fs.gen_uses <= fs.count
                        if not valid:
                            return self._simple(403)
                        self.path = "/v2/x/blobs/" + d
                parts = self.path.split("/blobs/")
                digest = parts[1] if len(parts) == 2 else None
                if not digest or digest not in fs.blobs or fs.mode == "404":
                    return self._simple(404)
                if fs.mode == "fail500" and fs._take_fault():
                    return self._simple(500)
                if fs.mode == "429" and fs._take_fault():
                    return self._simple(429, [("Retry-After", "1")])
                path = fs.blobs[digest]
                size = os.path.getsize(path)
                start, end = 0, size - 1
                rng = self.headers.get("Range")
                status = 200
                if rng and fs.mode != "norange" and rng.startswith("bytes="):
                    a, _, b = rng[6:].partition("-")
                    start = int(a)
                    end = min(int(b), size - 1) if b else size - 1
                    status = 206
                length = end - start + 1
                self._record(status)
                with fs.lock:
                    fs.inflight += 1
                    fs.max_inflight = max(fs.max_inflight, fs.inflight)
                try:
                    self._send_body(head, status, start, end, size, length, path, digest)
                finally:
                    with fs.lock:
                        fs.inflight -= 1

            def _send_body(self, head, status, start, end, size, length, path, digest):
                self.send_response(status)
                self.send_header("Content-Length", str(length))
                self.send_header("Docker-Content-Digest", digest)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if head:
                    return
                cut = None
                if fs.mode in ("truncate", "stall") and length > 1 and fs._take_fault():
                    cut = length // 2
                with open(path, "rb") as f:
                    f.seek(start)
                    sent = 0
                    while sent < length:
                        n = min(1 << 16, length - sent)
                        if cut is not None and sent + n > cut:
                            n = cut - sent
                        buf = f.read(n)
                        if fs.mode == "wrong" and start + sent <= size // 2 < start + sent + len(buf):
                            i = size // 2 - (start + sent)
                            buf = buf[:i] + bytes([buf[i] ^ 0xFF]) + buf[i + 1:]
                        try:
                            self.wfile.write(buf)
                        except OSError:
                            return
                        sent += len(buf)
                        if cut is not None and sent >= cut:
                            if fs.mode == "stall":
                                fs.stop_event.wait(STALL_SECONDS)
                            self.close_connection = True
                            return

        self.httpd = serve_http(H, self.port)
        return self

    def stop(self):
        self.stop_event.set()
        if self.httpd:
            stop_http(self.httpd)
            self.httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    def blob_requests(self):
        with self.lock:
            return [e for e in self.log if "/blobs/" in e[2]]
