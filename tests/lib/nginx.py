"""nginx.py — a real nginx (Debian's nginx-light) in front of a registry for
puller tests, on free 127.0.0.1 ports with everything under one temp dir:

  * a front server block proxying /v2/ to the registry, optionally with TLS
    (a test CA generated with openssl), Basic auth (htpasswd) or Bearer
    tokens (auth_request to tokenserver.py, which also answers the challenge);
  * optionally, blob GETs answered with a 307 to a separate "storage" server
    block that proxies to the registry with a per-connection limit_rate and
    its own access log recording $http_authorization and $http_range.

Started with `nginx -p DIR -c DIR/nginx.conf -e stderr` in the foreground."""
import os
import shutil
import socket
import subprocess

from util import free_port, stop_process, wait_for

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def make_ca(dirpath, host="127.0.0.1"):
    """A throwaway CA and a server certificate for host; returns paths."""
    os.makedirs(dirpath, exist_ok=True)
    ca_key, ca_crt = os.path.join(dirpath, "ca.key"), os.path.join(dirpath, "ca.pem")
    key, csr, crt = (os.path.join(dirpath, n) for n in ("server.key", "server.csr", "server.pem"))
    ext = os.path.join(dirpath, "ext.cnf")
    run = lambda *a: subprocess.run(a, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        "/CN=modelvol test CA", "-keyout", ca_key, "-out", ca_crt)
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}", "-keyout", key,
        "-out", csr)
    with open(ext, "w") as f:
        f.write(f"subjectAltName=IP:{host},DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
        "-days", "2", "-extfile", ext, "-out", crt)
    return {"ca": ca_crt, "cert": crt, "key": key}


class Nginx:
    def __init__(self, tmp, upstream, tls=None, basic=None, bearer=None, redirect_blobs=False,
                 storage_rate=None, storage_root=None):
        """upstream: "127.0.0.1:port" of the registry; tls: make_ca() paths;
        basic: (user, password); bearer: a tokenserver.TokenServer;
        storage_rate: nginx limit_rate value per storage connection;
        storage_root: the registry's filesystem root ("data" of mvreg): the
        storage block then serves blob files from it itself, as object
        storage would, instead of proxying each byte through the registry
        (a second loopback hop that a shaped link would count twice)."""
        self.dir = os.path.join(tmp, f"nginx-{free_port()}")
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self.upstream = upstream
        self.tls, self.basic, self.bearer = tls, basic, bearer
        self.redirect_blobs, self.storage_rate = redirect_blobs, storage_rate
        self.storage_root = storage_root
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.storage_port = free_port()
        self.front_log = os.path.join(self.dir, "logs", "front.log")
        self.storage_log = os.path.join(self.dir, "logs", "storage.log")
        self.proc = None

    def _conf(self):
        d = self.dir
        auth = ""
        if self.basic:
            with open(os.path.join(d, "htpasswd"), "w") as f:
                f.write(f"{self.basic[0]}:{{PLAIN}}{self.basic[1]}\n")
            auth = f'auth_basic "registry"; auth_basic_user_file {d}/htpasswd;'
        elif self.bearer:
            auth = ("auth_request /_auth; auth_request_set $chal $upstream_http_www_authenticate; "
                    "add_header WWW-Authenticate $chal always;")
        listen = f"listen 127.0.0.1:{self.port}"
        if self.tls:
            listen += f" ssl; ssl_certificate {self.tls['cert']}; ssl_certificate_key {self.tls['key']}"
        blob_redirect = ""
        if self.redirect_blobs:
            blob_redirect = f"""
        location ~ ^/v2/.+/blobs/sha256:[0-9a-f]+$ {{
            {auth}
            if ($request_method = GET) {{
                return 307 http://127.0.0.1:{self.storage_port}$request_uri;
            }}
            proxy_pass http://registry;
        }}"""
        bearer_loc = ""
        if self.bearer:
            bearer_loc = f"""
        location = /_auth {{
            internal;
            proxy_pass http://{self.bearer.addr}/validate;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
        }}"""
        rate = f"limit_rate {self.storage_rate};" if self.storage_rate else ""
        files = ""
        if self.storage_root:
            # docker-registry's filesystem layout (registry/storage/paths.go):
            # blobs/<alg>/<first two hex>/<hex>/data.
            files = f"""
        location ~ "^/v2/.+/blobs/sha256:(?<p>[0-9a-f]{{2}})(?<r>[0-9a-f]{{62}})$" {{
            {rate}
            default_type application/octet-stream;
            alias {self.storage_root}/docker/registry/v2/blobs/sha256/$p/$p$r/data;
        }}"""
        return f"""
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    log_format front '$remote_addr "$request" $status $body_bytes_sent range="$http_range"';
    log_format storage '$remote_addr "$request" $status $body_bytes_sent range="$http_range" auth="$http_authorization"';
    upstream registry {{ server {self.upstream}; keepalive 32; }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_buffering off;
    proxy_request_buffering off;
    client_max_body_size 0;
    server {{
        {listen};
        access_log {self.front_log} front;
        {blob_redirect}
        location /v2/ {{
            {auth}
            proxy_pass http://registry;
        }}
        {bearer_loc}
    }}
    server {{
        listen 127.0.0.1:{self.storage_port};
        access_log {self.storage_log} storage;
        {files}
        location / {{
            # limit_rate needs buffered proxying; no temp files so memory
            # and disk stay flat whatever the blob size.
            proxy_buffering on;
            proxy_max_temp_file_size 0;
            {rate}
            proxy_set_header Authorization "";
            proxy_pass http://registry;
        }}
    }}
}}
"""

    def start(self):
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(self._conf())
        self.err = open(os.path.join(self.dir, "stderr.log"), "w")
        self.proc = subprocess.Popen([NGINX, "-p", self.dir, "-c", conf, "-e", "stderr"],
                                     stdout=self.err, stderr=self.err)

        def listening():
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited: " + open(os.path.join(self.dir, "stderr.log")).read())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                socket.create_connection(("127.0.0.1", self.storage_port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(listening, 15, message="nginx did not come up")
        return self

    def stop(self):
        if self.proc:
            stop_process(self.proc, secs=10)
            self.proc = None
            self.err.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    def read_log(self, which="storage"):
        path = self.storage_log if which == "storage" else self.front_log
        try:
            with open(path) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []
