"""util.py — the small mechanisms every Python test and helper shares, each
written once: where the source and build trees are, a free loopback port,
a bounded wait for a condition, sha256 digests ("sha256:<hex>") of bytes,
streams and files, stopping a child process, and serving HTTP from a
thread."""
import hashlib
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import ThreadingHTTPServer

SOURCE_DIR = os.environ.get("MV_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("MV_BUILD_DIR", os.path.join(SOURCE_DIR, "build", "test"))


def free_port():
    """A 127.0.0.1 TCP port nothing listens on right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(cond, secs=30.0, step=0.05, message=None):
    """Calls cond() until it returns something true or secs pass, and
    returns its last value. With a message (a string, or a callable giving
    one: a log read late), running out of time raises TimeoutError instead,
    for waits a test cannot go on without."""
    deadline = time.monotonic() + secs
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            break
        time.sleep(step)
    if message is None:
        return v
    raise TimeoutError(message() if callable(message) else message)


def sha256_bytes(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_stream(f):
    """Digest of what is left to read from a binary file object, read in
    chunks so a large blob is never held in memory."""
    h = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
    return "sha256:" + h.hexdigest()


def sha256_file(path):
    with open(path, "rb") as f:
        return sha256_stream(f)


def tree_digests(root):
    """{path relative to root: digest} of every regular file under root."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for n in files:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = sha256_file(p)
    return out


def stop_process(proc, sig=signal.SIGTERM, secs=30):
    """Sends sig unless proc has exited, waits at most secs, then kills it.
    Returns its exit status (negative: the signal that ended it)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=secs)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def serve_http(handler, port=0):
    """A ThreadingHTTPServer for the handler class on 127.0.0.1:port (0: any
    free port), serving from a daemon thread; end it with stop_http."""
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def stop_http(httpd):
    httpd.shutdown()
    httpd.server_close()
