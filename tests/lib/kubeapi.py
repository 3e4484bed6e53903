"""kubeapi.py — a stand-in for the Kubernetes API server's Events endpoint
for tests: HTTPS on 127.0.0.1 with a throwaway CA made by the openssl CLI,
recording every request's method, path, bearer token, JSON body and the
monotonic time it arrived ("at", for the spacing of events). Used
where no real kube-apiserver runs (ctest); the e2e suite checks events
against a real cluster."""
import json
import os
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from util import stop_http


class KubeAPI:
    def __init__(self, tmp, token):
        self.tmp = tmp
        self.token = token
        self.requests = []
        self.lock = threading.Lock()
        self.ca = os.path.join(tmp, "ca.crt")
        key = os.path.join(tmp, "api.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", self.ca], check=True, capture_output=True)
        self.token_file = os.path.join(tmp, "token")
        with open(self.token_file, "w") as f:
            f.write(token + "\n")
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _record(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                try:
                    doc = json.loads(body) if body else None
                except ValueError:
                    doc = None
                with api.lock:
                    api.requests.append({"method": self.command, "path": self.path,
                                         "auth": self.headers.get("Authorization"), "body": doc,
                                         "at": time.monotonic()})
                ok = self.headers.get("Authorization") == f"Bearer {api.token}"
                self.send_response(201 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_POST = _record
            do_PATCH = _record

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.ca, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"

    def events(self):
        with self.lock:
            return [r for r in self.requests if r["body"] and r["body"].get("kind") == "Event"]

    def stop(self):
        stop_http(self.httpd)
