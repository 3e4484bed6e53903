"""csiclient.py — a kubelet-like CSI client for tests and the demo.

It compiles proto/csi.proto with `protoc --python_out` at run time (so the
client always speaks exactly what the daemon was built from), starts and
stops a real modelvol-csi on a temp unix socket, and calls it over Debian's
python3-grpcio the way the kubelet does: NodePublishVolume with a
volume_context, a capability and a deadline, retried after
DEADLINE_EXCEEDED.

Run with /usr/bin/python3 (Debian's grpc and protobuf live there).

    csiclient.py demo --bin PATH --cache DIR --reference REF --workdir DIR
"""
import argparse
import errno
import hashlib
import importlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import grpc

import checks  # noqa: E402  (tests/lib is on sys.path for every user)

SOURCE_DIR = os.environ.get("MV_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("MV_BUILD_DIR", os.path.join(SOURCE_DIR, "build", "test"))

_pb = None


def pb():
    """The csi_pb2 module, generated from proto/csi.proto on first use."""
    global _pb
    if _pb is None:
        out = tempfile.mkdtemp(prefix="modelvol-csipb.")
        proto_dir = os.path.join(SOURCE_DIR, "proto")
        subprocess.run(["protoc", f"--proto_path={proto_dir}", f"--python_out={out}",
                        os.path.join(proto_dir, "csi.proto")], check=True)
        sys.path.insert(0, out)
        try:
            _pb = importlib.import_module("csi_pb2")
        finally:
            sys.path.remove(out)
            shutil.rmtree(out, ignore_errors=True)
    return _pb


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def csi_binary():
    return os.environ.get("MV_CSI_BIN", os.path.join(BUILD_DIR, "modelvol-csi"))


# (service, method) -> (request class name, response class name)
METHODS = {
    ("Identity", "GetPluginInfo"): ("GetPluginInfoRequest", "GetPluginInfoResponse"),
    ("Identity", "GetPluginCapabilities"): ("GetPluginCapabilitiesRequest",
                                            "GetPluginCapabilitiesResponse"),
    ("Identity", "Probe"): ("ProbeRequest", "ProbeResponse"),
    ("Node", "NodeGetInfo"): ("NodeGetInfoRequest", "NodeGetInfoResponse"),
    ("Node", "NodeGetCapabilities"): ("NodeGetCapabilitiesRequest", "NodeGetCapabilitiesResponse"),
    ("Node", "NodeGetVolumeStats"): ("NodeGetVolumeStatsRequest", "NodeGetVolumeStatsResponse"),
    ("Node", "NodePublishVolume"): ("NodePublishVolumeRequest", "NodePublishVolumeResponse"),
    ("Node", "NodeUnpublishVolume"): ("NodeUnpublishVolumeRequest", "NodeUnpublishVolumeResponse"),
    ("Node", "NodeStageVolume"): ("NodeStageVolumeRequest", "NodeStageVolumeResponse"),
}


class Client:
    """Calls one plugin socket. Errors surface as grpc.RpcError."""

    def __init__(self, sock_path):
        self.sock_path = sock_path
        self.channel = grpc.insecure_channel(f"unix://{sock_path}")

    def close(self):
        self.channel.close()

    def call(self, service, method, request=None, timeout=30):
        req_name, resp_name = METHODS[(service, method)]
        m = pb()
        if request is None:
            request = getattr(m, req_name)()
        fn = self.channel.unary_unary(f"/csi.v1.{service}/{method}",
                                      request_serializer=lambda r: r.SerializeToString(),
                                      response_deserializer=getattr(m, resp_name).FromString)
        return fn(request, timeout=timeout)

    def raw(self, full_method, payload=b"", timeout=10):
        """Sends raw bytes to any method name; returns raw bytes."""
        fn = self.channel.unary_unary(full_method, request_serializer=lambda b: b,
                                      response_deserializer=lambda b: b)
        return fn(payload, timeout=timeout)

    # ---- kubelet-shaped helpers ----------------------------------------
    def publish_request(self, target, reference=None, volume_id="modelvol-test", readonly=True,
                        mode="MULTI_NODE_READER_ONLY", block=False, context=None, secrets=None,
                        capability=True):
        m = pb()
        req = m.NodePublishVolumeRequest(volume_id=volume_id, target_path=target,
                                         readonly=readonly)
        if capability:
            cap = req.volume_capability
            if block:
                cap.block.SetInParent()
            else:
                cap.mount.SetInParent()
            cap.access_mode.mode = m.VolumeCapability.AccessMode.Mode.Value(mode)
        ctx = dict(context or {})
        if reference is not None:
            ctx.setdefault("reference", reference)
        for k, v in ctx.items():
            req.volume_context[k] = v
        for k, v in (secrets or {}).items():
            req.secrets[k] = v
        return req

    def publish(self, target, reference=None, timeout=120, **kw):
        return self.call("Node", "NodePublishVolume",
                         self.publish_request(target, reference, **kw), timeout=timeout)

    def unpublish(self, target, volume_id="modelvol-test", timeout=60):
        m = pb()
        return self.call("Node", "NodeUnpublishVolume",
                         m.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=target),
                         timeout=timeout)

    def volume_stats(self, path, volume_id="modelvol-test", timeout=30):
        m = pb()
        return self.call("Node", "NodeGetVolumeStats",
                         m.NodeGetVolumeStatsRequest(volume_id=volume_id, volume_path=path),
                         timeout=timeout)

    def probe(self, timeout=5):
        r = self.call("Identity", "Probe", timeout=timeout)
        return r.ready.value if r.HasField("ready") else True

    def publish_like_kubelet(self, target, reference, call_timeout, attempts=50, **kw):
        """Publishes, retrying after DEADLINE_EXCEEDED as the kubelet does
        (bounded attempts). Returns the number of attempts it took."""
        for i in range(1, attempts + 1):
            try:
                self.publish(target, reference, timeout=call_timeout, **kw)
                return i
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
        raise RuntimeError(f"publish of {reference} still not done after {attempts} attempts")


def code_of(fn, *a, **kw):
    """Runs fn and returns the grpc.StatusCode and details it failed with
    (StatusCode.OK and "" when it succeeded)."""
    try:
        fn(*a, **kw)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details() or ""


class Daemon:
    """A modelvol-csi process on a temp unix socket; a context manager."""

    def __init__(self, workdir, cache, node_id="test-node", binary=None, args=(), metrics=True,
                 sock_path=None):
        self.workdir = workdir
        self.cache = cache
        self.node_id = node_id
        self.binary = binary or csi_binary()
        self.args = list(args)
        self.sock_path = sock_path or os.path.join(workdir, "csi.sock")
        self.metrics_addr = f"127.0.0.1:{free_port()}" if metrics else "off"
        self.log_path = os.path.join(workdir, "modelvol-csi.log")
        self.proc = None
        self.client = None

    def start(self, wait_ready=True, ready_secs=60):
        self.log = open(self.log_path, "a")
        cmd = [self.binary, "--endpoint", f"unix://{self.sock_path}", "--node-id", self.node_id,
               "--cache", self.cache, "--metrics-addr", self.metrics_addr] + self.args
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + ready_secs
        while not os.path.exists(self.sock_path):
            if self.proc.poll() is not None:
                raise RuntimeError(f"modelvol-csi exited with {self.proc.returncode}:\n"
                                   + self.read_log())
            if time.monotonic() > deadline:
                raise RuntimeError("modelvol-csi did not create its socket:\n" + self.read_log())
            time.sleep(0.02)
        self.client = Client(self.sock_path)
        # The socket file appears at bind(), before listen(): wait until
        # Probe answers at all, and, with wait_ready, until it says ready.
        while True:
            try:
                if self.client.probe(timeout=2) or not wait_ready:
                    break
            except grpc.RpcError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("modelvol-csi never became ready:\n" + self.read_log())
            time.sleep(0.05)
        return self

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Stops the daemon and returns its exit code."""
        if self.client:
            self.client.close()
            self.client = None
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        self.log.close()
        return rc

    def read_log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def metrics(self):
        import urllib.request
        with urllib.request.urlopen(f"http://{self.metrics_addr}/metrics", timeout=5) as r:
            return r.read().decode()

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()


class Checks(checks.Checks):
    """checks.Checks plus assertions on gRPC status codes."""

    def code(self, name, want, fn, *a, **kw):
        """Checks that fn(*a, **kw) ends with grpc status want."""
        got, details = code_of(fn, *a, **kw)
        return self.check(f"{name} -> {want.name}", got == want, f"got {got.name}: {details}")


BLOB_GET = re.compile(r'"GET /v2/(?P<repo>\S+?)/blobs/(?P<digest>sha\d+:[0-9a-f]+)\S* HTTP/[\d.]+" '
                      r'(?P<status>\d{3}) (?P<bytes>\d+)')


def blob_gets(access_log, digest=None):
    """(digest, status, bytes) of every blob GET in a docker-registry or
    nginx access log, optionally only for one digest."""
    out = []
    for m in BLOB_GET.finditer(access_log):
        if digest is None or m.group("digest") == digest:
            out.append((m.group("digest"), int(m.group("status")), int(m.group("bytes"))))
    return out


def blob_bytes_served(access_log, digest=None):
    """Body bytes served by successful blob GETs."""
    return sum(b for _, status, b in blob_gets(access_log, digest) if status in (200, 206))


def wait_for(cond, secs=30, step=0.05):
    """Polls cond() until it is true or secs pass; returns its last value."""
    deadline = time.monotonic() + secs
    while True:
        v = cond()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def sha256_file(path):
    """"sha256:<hex>" of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def require_root():
    """Exits 77 with the reason when bind mounts are impossible."""
    if os.geteuid() != 0:
        print("SKIP: needs root for bind mounts")
        sys.exit(77)


def owner_pinned(cache, target):
    """Whether the cache holds a pin owned by csi:<target> (pins/ files are
    named <tree hex>-<sha256(owner) hex>)."""
    owner = hashlib.sha256(f"csi:{target}".encode()).hexdigest()
    try:
        return any(n.endswith("-" + owner) for n in os.listdir(os.path.join(cache, "pins")))
    except FileNotFoundError:
        return False


def umount_under(d):
    """Lazily unmounts everything mounted below d, deepest first, so a test
    that failed half-way leaks no mount into the next one."""
    for line in reversed(open("/proc/self/mountinfo").read().splitlines()):
        mp = line.split(" ")[4]
        if mp.startswith(d.rstrip("/") + "/"):
            subprocess.run(["umount", "-l", mp], stderr=subprocess.DEVNULL)


def mountinfo_lines(target):
    """The /proc/self/mountinfo lines whose mount point is target."""
    esc = target.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011") \
                .replace("\n", "\\012")
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" ")
            if len(fields) > 5 and fields[4] == esc:
                found.append(line.rstrip("\n"))
    return found


def mountinfo_line(target):
    """The topmost mountinfo line at target, or None."""
    lines = mountinfo_lines(target)
    return lines[-1] if lines else None


def mount_options(target):
    line = mountinfo_line(target)
    return set(line.split(" ")[5].split(",")) if line else None


def tree_listing(root):
    """Lines like `find -printf '%M %10s %P'`, sorted by path, for a tree."""
    rows = []
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            kind = "d" if os.path.isdir(p) else "-"
            rows.append((os.path.relpath(p, root), kind, st.st_size))
    return [f"{kind} {size:>12}  {rel}" for rel, kind, size in sorted(rows)]


def demo(args):
    if os.geteuid() != 0:
        print("SKIP: needs root for bind mounts")
        return 77
    work = tempfile.mkdtemp(prefix="csi-demo.", dir=args.workdir)
    target = os.path.join(work, "pods", "demo-pod", "volumes", "model")
    os.makedirs(os.path.dirname(target))
    d = Daemon(work, args.cache, node_id="demo-node", binary=args.bin)
    d.start()
    try:
        c = d.client
        info = c.call("Identity", "GetPluginInfo")
        print(f"plugin: {info.name} {info.vendor_version}; node: "
              f"{c.call('Node', 'NodeGetInfo').node_id}; ready: {c.probe()}")
        print(f"NodePublishVolume reference={args.reference} readonly=true -> {target}")
        t0 = time.monotonic()
        c.publish(target, args.reference, volume_id="demo-volume", timeout=args.timeout)
        print(f"published in {time.monotonic() - t0:.2f}s\n")
        print(f"mounted tree at {target}:")
        for line in tree_listing(target):
            print("  " + line)
        print("\nmount (from /proc/self/mountinfo):")
        print("  " + (mountinfo_line(target) or "(not mounted!)"))
        try:
            with open(os.path.join(target, "write-test"), "w") as f:
                f.write("x")
            print("\nwrite into the volume: SUCCEEDED (this is a bug)")
            return 1
        except OSError as e:
            print(f"\nwrite into the volume: {errno.errorcode.get(e.errno, e.errno)} "
                  f"({e.strerror}), as it should be")
        stats = c.volume_stats(target, volume_id="demo-volume")
        for u in stats.usage:
            print(f"NodeGetVolumeStats: {pb().VolumeUsage.Unit.Name(u.unit)} used={u.used}")
        c.unpublish(target, volume_id="demo-volume")
        print(f"\nunpublished: mounted={mountinfo_line(target) is not None} "
              f"target exists={os.path.exists(target)}")
    finally:
        rc = d.stop()
        print(f"modelvol-csi stopped (exit {rc}); socket removed={not os.path.exists(d.sock_path)}")
        shutil.rmtree(work, ignore_errors=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("demo", help="publish one model read-only and show it")
    p.add_argument("--bin", required=True, help="path to modelvol-csi")
    p.add_argument("--cache", required=True, help="node cache directory")
    p.add_argument("--reference", required=True, help="model reference")
    p.add_argument("--workdir", required=True, help="where the socket and target go")
    p.add_argument("--timeout", type=float, default=300, help="publish deadline in seconds")
    a = ap.parse_args()
    if a.cmd == "demo":
        return demo(a)
    return 2


if __name__ == "__main__":
    sys.exit(main())
