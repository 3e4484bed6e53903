"""tokenserver.py — a small Bearer token issuer for tests (the docker
registry token flow): GET /token?service=&scope= issues a token, requiring
Basic credentials when configured; POST /token accepts the OAuth2
refresh_token grant with the configured identity token. GET /validate is the
nginx auth_request target: 200 for a valid token covering the repository in
X-Original-URI, else 401 with the WWW-Authenticate challenge. Tokens can be
limited to N uses to exercise refresh-on-401; with oauth=False the POST
answers 404, like token servers without OAuth2.

A cross-repository mount (POST …/blobs/uploads/?mount=…&from=SRC) also
needs pull on SRC, as in docker-registry's token auth: without it the
answer is a 401 whose challenge names both scopes (counted in
mount_refused)."""
import base64
import re
import secrets
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler

from util import free_port, serve_http, stop_http


class TokenServer:
    def __init__(self, user=None, password=None, identity_token=None, max_uses=0,
                 service="modelvol-test", oauth=True):
        self.user, self.password, self.identity_token = user, password, identity_token
        self.max_uses, self.service, self.oauth = max_uses, service, oauth
        self.oauth_refused = 0  # POSTs answered 404 because oauth=False
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.tokens = {}  # token -> [scopes, uses]
        self.issued = 0
        self.oauth_issued = 0
        self.denied = 0
        self.mount_refused = 0  # mounts tried with a token lacking the source scope
        self.lock = threading.Lock()
        self.httpd = None

    def _challenge(self, repo, extra=""):
        scope = f',scope="repository:{repo}:pull{extra}"' if repo else ""
        return f'Bearer realm="http://{self.addr}/token",service="{self.service}"{scope}'

    def _issue(self, scopes):
        # A scope parameter may hold several, space-separated.
        scopes = [s for v in scopes for s in v.split()]
        tok = secrets.token_hex(16)
        with self.lock:
            self.tokens[tok] = [scopes, 0]
            self.issued += 1
        return tok

    def start(self):
        ts = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, code, body=b"", headers=()):
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _basic_ok(self):
                if not ts.user:
                    return True
                h = self.headers.get("Authorization", "")
                if not h.startswith("Basic "):
                    return False
                try:
                    u, _, p = base64.b64decode(h[6:]).decode().partition(":")
                except Exception:
                    return False
                return u == ts.user and p == ts.password

            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                if url.path == "/token":
                    if not self._basic_ok():
                        with ts.lock:
                            ts.denied += 1
                        return self._send(401, b'{"details":"bad credentials"}')
                    q = urllib.parse.parse_qs(url.query)
                    tok = ts._issue(q.get("scope", []))
                    return self._send(200, ('{"token":"%s","expires_in":300}' % tok).encode(),
                                      [("Content-Type", "application/json")])
                if url.path == "/validate":
                    uri = self.headers.get("X-Original-URI", "")
                    m = re.match(r"^/v2/(.+?)/(manifests|blobs|tags)/", uri)
                    repo = m.group(1) if m else None
                    q = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)
                    src = q.get("from", [None])[0] if "mount" in q else None
                    h = self.headers.get("Authorization", "")
                    ok = False
                    if h.startswith("Bearer "):
                        with ts.lock:
                            ent = ts.tokens.get(h[7:])
                            if ent is not None:
                                ent[1] += 1
                                if ts.max_uses and ent[1] > ts.max_uses:
                                    del ts.tokens[h[7:]]
                                elif repo is None or any(s.startswith(f"repository:{repo}:") for s in ent[0]):
                                    ok = True
                                if ok and src and not any(
                                        s.startswith(f"repository:{src}:") for s in ent[0]):
                                    ok = False
                                    ts.mount_refused += 1
                    if ok:
                        return self._send(200)
                    extra = f",push repository:{src}:pull" if src else ""
                    return self._send(401, b"", [("WWW-Authenticate", ts._challenge(repo, extra))])
                self._send(404)

            def do_POST(self):
                url = urllib.parse.urlparse(self.path)
                n = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(n).decode())
                if url.path != "/token":
                    return self._send(404)
                if not ts.oauth:
                    with ts.lock:
                        ts.oauth_refused += 1
                    return self._send(404)
                if (form.get("grant_type") != ["refresh_token"] or not ts.identity_token or
                        form.get("refresh_token") != [ts.identity_token]):
                    with ts.lock:
                        ts.denied += 1
                    return self._send(401, b'{"error":"invalid_grant"}')
                tok = ts._issue(form.get("scope", []))
                with ts.lock:
                    ts.oauth_issued += 1
                self._send(200, ('{"access_token":"%s","expires_in":300}' % tok).encode(),
                           [("Content-Type", "application/json")])

        self.httpd = serve_http(H, self.port)
        return self

    def stop(self):
        if self.httpd:
            stop_http(self.httpd)
            self.httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()
