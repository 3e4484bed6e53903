"""csidaemon.py — runs a real modelvol-csi for tests: started on a temp unix
socket with a free metrics port, its output in a log file, ready once Probe
says so, and stopped with a signal; plus what it leaves in the node cache
(the pins it owns)."""
import hashlib
import os
import signal
import subprocess
import time
import urllib.request

import grpc

from csiclient import Client
from util import BUILD_DIR, free_port, stop_process, wait_for


def csi_binary():
    return os.environ.get("MV_CSI_BIN", os.path.join(BUILD_DIR, "modelvol-csi"))


class Daemon:
    """A modelvol-csi process on a temp unix socket; a context manager."""

    def __init__(self, workdir, cache, node_id="test-node", binary=None, args=(), metrics=True,
                 sock_path=None, register=True):
        self.workdir = workdir
        self.cache = cache
        self.node_id = node_id
        self.binary = binary or csi_binary()
        self.args = list(args)
        self.sock_path = sock_path or os.path.join(workdir, "csi.sock")
        self.metrics_addr = f"127.0.0.1:{free_port()}" if metrics else "off"
        self.log_path = os.path.join(workdir, "modelvol-csi.log")
        # Self-registration into a plugins_registry of the test's own, never
        # the host kubelet's; register=False switches it off.
        self.reg_dir = os.path.join(workdir, "plugins_registry")
        self.register = register
        self.proc = None
        self.client = None

    def start(self, wait_ready=True, ready_secs=60):
        if self.register:
            os.makedirs(self.reg_dir, exist_ok=True)
        self.log = open(self.log_path, "a")
        cmd = [self.binary, "--endpoint", f"unix://{self.sock_path}", "--node-id", self.node_id,
               "--cache", self.cache, "--metrics-addr", self.metrics_addr]
        if not any(a.startswith(("--self-register", "--kubelet-registration-dir"))
                   for a in self.args):
            cmd += (["--kubelet-registration-dir", self.reg_dir] if self.register
                    else ["--self-register=false"])
        cmd += self.args
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + ready_secs

        def exited():
            return self.proc.poll() is not None
        wait_for(lambda: os.path.exists(self.sock_path) or exited(), ready_secs, step=0.02,
                 message=lambda: "modelvol-csi did not create its socket:\n" + self.read_log())
        if exited():
            raise RuntimeError(f"modelvol-csi exited with {self.proc.returncode}:\n"
                               + self.read_log())
        self.client = Client(self.sock_path)

        # The socket file appears at bind(), before listen(): wait until
        # Probe answers at all, and, with wait_ready, until it says ready.
        def answered():
            try:
                if self.client.probe(timeout=2) or not wait_ready:
                    return True
            except grpc.RpcError as e:
                # A plugin whose recovery failed answers Probe with
                # FAILED_PRECONDITION: an answer, though not "ready".
                if not wait_ready and e.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    return True
            return exited()
        wait_for(answered, max(0.0, deadline - time.monotonic()),
                 message=lambda: "modelvol-csi never became ready:\n" + self.read_log())
        if exited():
            raise RuntimeError("modelvol-csi never became ready:\n" + self.read_log())
        return self

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Stops the daemon and returns its exit code."""
        if self.client:
            self.client.close()
            self.client = None
        if not self.proc:
            return None
        rc = stop_process(self.proc, sig, timeout)
        self.proc = None
        self.log.close()
        return rc

    def reg_socket(self):
        return os.path.join(self.reg_dir, "modelvol.csi.io-reg.sock")

    def read_log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def metrics(self):
        with urllib.request.urlopen(f"http://{self.metrics_addr}/metrics", timeout=5) as r:
            return r.read().decode()

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()


def owner_pinned(cache, target):
    """Whether the cache holds a pin owned by csi:<target> (pins/ files are
    named <tree hex>-<sha256(owner) hex>)."""
    owner = hashlib.sha256(f"csi:{target}".encode()).hexdigest()
    try:
        return any(n.endswith("-" + owner) for n in os.listdir(os.path.join(cache, "pins")))
    except FileNotFoundError:
        return False
