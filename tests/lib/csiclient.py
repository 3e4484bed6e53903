"""csiclient.py — a kubelet-like gRPC CSI client for tests and the demo.

It compiles proto/csi.proto with `protoc --python_out` at run time (so the
client always speaks exactly what the daemon was built from) and calls a
plugin socket over Debian's python3-grpcio the way the kubelet does:
NodePublishVolume with a volume_context, a capability and a deadline,
retried after DEADLINE_EXCEEDED. Checks here adds assertions on gRPC status
codes. Starting the daemon is csidaemon.py's job.

Run with /usr/bin/python3 (Debian's grpc and protobuf live there).
"""
import importlib
import os
import shutil
import subprocess
import sys
import tempfile

import grpc

import checks
from util import SOURCE_DIR

_pb = {}


def pb(proto="csi"):
    """The <proto>_pb2 module, generated from proto/<proto>.proto on first
    use (csi by default; "pluginregistration" for the kubelet's side of
    self-registration)."""
    if proto not in _pb:
        out = tempfile.mkdtemp(prefix="modelvol-csipb.")
        proto_dir = os.path.join(SOURCE_DIR, "proto")
        subprocess.run(["protoc", f"--proto_path={proto_dir}", f"--python_out={out}",
                        os.path.join(proto_dir, f"{proto}.proto")], check=True)
        sys.path.insert(0, out)
        try:
            _pb[proto] = importlib.import_module(f"{proto}_pb2")
        finally:
            sys.path.remove(out)
            shutil.rmtree(out, ignore_errors=True)
    return _pb[proto]


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


class Registration:
    """The kubelet's plugin watcher side of pluginregistration v1 on a
    registration socket: GetInfo, then NotifyRegistrationStatus (see
    csi/register.c for the kubelet sources this follows)."""

    def __init__(self, sock_path):
        self.channel = grpc.insecure_channel(f"unix://{sock_path}")

    def close(self):
        self.channel.close()

    def _call(self, method, request, resp_name, timeout):
        m = pb("pluginregistration")
        fn = self.channel.unary_unary(f"/pluginregistration.Registration/{method}",
                                      request_serializer=lambda r: r.SerializeToString(),
                                      response_deserializer=getattr(m, resp_name).FromString)
        return fn(request, timeout=timeout)

    def get_info(self, timeout=1):
        # The kubelet gives GetInfo one second.
        return self._call("GetInfo", pb("pluginregistration").InfoRequest(), "PluginInfo", timeout)

    def notify(self, registered, error="", timeout=10):
        m = pb("pluginregistration")
        return self._call("NotifyRegistrationStatus",
                          m.RegistrationStatus(plugin_registered=registered, error=error),
                          "RegistrationStatusResponse", timeout)


def code_of(fn, *a, **kw):
    """Runs fn and returns the grpc.StatusCode and details it failed with
    (StatusCode.OK and "" when it succeeded)."""
    try:
        fn(*a, **kw)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details() or ""


class Checks(checks.Checks):
    """checks.Checks plus assertions on gRPC status codes."""

    def code(self, name, want, fn, *a, **kw):
        """Checks that fn(*a, **kw) ends with grpc status want."""
        got, details = code_of(fn, *a, **kw)
        return self.check(f"{name} -> {want.name}", got == want, f"got {got.name}: {details}")
