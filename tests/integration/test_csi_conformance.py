"""test_csi_conformance.py — modelvol-csi, over real gRPC, against every row
of the CSI spec's error tables that applies to a node-only plugin. Each
check is named "RPC: condition -> CODE" after the row it checks.

The rows come from container-storage-interface/spec, spec.md (CSI v1):
  * "Error Scheme": missing required field and invalid or unsupported field
    (INVALID_ARGUMENT), call not implemented (UNIMPLEMENTED);
  * "Identity Service RPC": GetPluginInfo (name and vendor_version
    REQUIRED, name at most 63 characters), GetPluginCapabilities (a
    node-only plugin does not report CONTROLLER_SERVICE), Probe Errors
    ("Plugin not healthy": FAILED_PRECONDITION; ready=false only while
    initialising);
  * "Node Service RPC": NodePublishVolume ("MUST be idempotent", the
    second-publish table: T1=T2,P1=P2 OK, T1=T2,P1!=P2 ALREADY_EXISTS,
    T1!=T2 with MULTI_NODE_... OK; Errors: volume does not exist NOT_FOUND,
    volume published but incompatible ALREADY_EXISTS), NodeUnpublishVolume
    ("MUST be idempotent", the SP MUST delete what it created at
    target_path; Errors: volume does not exist NOT_FOUND),
    NodeGetVolumeStats Errors (volume does not exist on volume_path:
    NOT_FOUND), NodeGetCapabilities, NodeGetInfo (node_id REQUIRED, at most
    256 bytes; no accessible_topology without
    VOLUME_ACCESSIBILITY_CONSTRAINTS).

Where the spec leaves a choice (docs/csi.md, "Conformance"): a capability
no modelvol volume serves (block, a writable mode) is INVALID_ARGUMENT, an
unsupported field for the whole plugin, not "Exceeds capabilities"; a
relative volume_path in NodeGetVolumeStats is NOT_FOUND, as csi-sanity
(kubernetes-csi/csi-test pkg/sanity/node.go, "should fail when volume is
not found") asks with "some/path". "Staging target path not set" needs
STAGE_UNSTAGE_VOLUME, which is not advertised. UNAUTHENTICATED (401) and
PERMISSION_DENIED (403) from the registry are checked in
test_csi_publish.py against nginx. ABORTED ("operation pending") is a MAY:
calls on one target queue instead.

Rows that publish need a docker-registry (tests/lib/mvreg.py) and, for the
bind mount, root: without root those are skipped with a message, and the
rest still runs."""
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import csiclient  # noqa: E402
import mounts  # noqa: E402
import mvreg  # noqa: E402
import util  # noqa: E402
from csiclient import Checks  # noqa: E402
from csidaemon import Daemon  # noqa: E402
import grpc  # noqa: E402

SC = grpc.StatusCode
KNOWN = ("reference, pullPolicy, include, exclude, kinds, path, artifactType, platform, "
         "annotation")


def identity(t, c):
    m = csiclient.pb()
    info = c.call("Identity", "GetPluginInfo")
    t.check("GetPluginInfo: name is REQUIRED, at most 63 characters, domain notation",
            0 < len(info.name) <= 63
            and re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", info.name) is not None,
            info.name)
    t.check("GetPluginInfo: vendor_version is REQUIRED", info.vendor_version != "")

    caps = c.call("Identity", "GetPluginCapabilities")
    services = [cap.service.type for cap in caps.capabilities if cap.HasField("service")]
    T = m.PluginCapability.Service.Type
    t.check("GetPluginCapabilities: node-only plugin does not report CONTROLLER_SERVICE",
            T.Value("CONTROLLER_SERVICE") not in services, str(caps))
    t.check("GetPluginCapabilities: no VOLUME_ACCESSIBILITY_CONSTRAINTS (every node serves "
            "every model)", T.Value("VOLUME_ACCESSIBILITY_CONSTRAINTS") not in services, str(caps))
    t.check("GetPluginCapabilities: nothing else claimed (no group controller, no expansion)",
            len(caps.capabilities) == 0, str(caps))

    probe = c.call("Identity", "Probe")
    t.check("Probe: ready plugin answers OK with ready=true",
            probe.HasField("ready") and probe.ready.value)


def node_info_and_caps(t, c):
    m = csiclient.pb()
    info = c.call("Node", "NodeGetInfo")
    t.check("NodeGetInfo: node_id is REQUIRED, at most 256 bytes",
            0 < len(info.node_id.encode()) <= 256, info.node_id)
    t.check("NodeGetInfo: max_volumes_per_node is not negative", info.max_volumes_per_node >= 0)
    t.check("NodeGetInfo: no accessible_topology without VOLUME_ACCESSIBILITY_CONSTRAINTS",
            not info.HasField("accessible_topology"))
    ncaps = c.call("Node", "NodeGetCapabilities")
    types = [cap.rpc.type for cap in ncaps.capabilities]
    R = m.NodeServiceCapability.RPC.Type
    t.check("NodeGetCapabilities: GET_VOLUME_STATS, and no STAGE_UNSTAGE_VOLUME or "
            "EXPAND_VOLUME", types == [R.Value("GET_VOLUME_STATS")], str(types))


def not_implemented(t, c):
    for method in ["/csi.v1.Node/NodeStageVolume", "/csi.v1.Node/NodeUnstageVolume",
                   "/csi.v1.Node/NodeExpandVolume", "/csi.v1.Controller/CreateVolume",
                   "/csi.v1.Controller/ControllerGetCapabilities",
                   "/csi.v1.Controller/ControllerPublishVolume",
                   "/csi.v1.GroupController/GroupControllerGetCapabilities",
                   "/csi.v1.SnapshotMetadata/GetMetadataAllocated"]:
        t.code(f"Error Scheme: call not implemented ({method})", SC.UNIMPLEMENTED, c.raw, method,
               b"")


def missing_fields(t, c, work):
    tgt = os.path.join(work, "target")
    ref = "127.0.0.1:1/models/never-pulled:v1"
    P = c.publish
    row = "NodePublishVolume: missing required field"
    t.code(f"{row} volume_id", SC.INVALID_ARGUMENT, P, tgt, ref, volume_id="")
    t.code(f"{row} target_path", SC.INVALID_ARGUMENT, P, "", ref)
    t.code(f"{row} volume_capability", SC.INVALID_ARGUMENT, P, tgt, ref, capability=False)
    req = c.publish_request(tgt, ref)
    req.volume_capability.ClearField("access_mode")
    t.code(f"{row} volume_capability.access_mode", SC.INVALID_ARGUMENT, c.call, "Node",
           "NodePublishVolume", req)
    req = c.publish_request(tgt, ref)
    req.volume_capability.ClearField("mount")
    t.code(f"{row} volume_capability.access_type", SC.INVALID_ARGUMENT, c.call, "Node",
           "NodePublishVolume", req)
    req = c.publish_request(tgt, ref, mode="UNKNOWN")
    t.code(f"{row} volume_capability.access_mode.mode (UNKNOWN)", SC.INVALID_ARGUMENT, c.call,
           "Node", "NodePublishVolume", req)
    t.code("NodeUnpublishVolume: missing required field volume_id", SC.INVALID_ARGUMENT,
           c.unpublish, tgt, volume_id="")
    t.code("NodeUnpublishVolume: missing required field target_path", SC.INVALID_ARGUMENT,
           c.unpublish, "")
    t.code("NodeGetVolumeStats: missing required field volume_id", SC.INVALID_ARGUMENT,
           c.volume_stats, "some/path", volume_id="")
    t.code("NodeGetVolumeStats: missing required field volume_path", SC.INVALID_ARGUMENT,
           c.volume_stats, "")
    t.code("Error Scheme: invalid field (undecodable NodePublishVolume body)", SC.INVALID_ARGUMENT,
           c.raw, "/csi.v1.Node/NodePublishVolume", b"\xff\xff\xff\xff")
    t.check("no target was created by any refused call", not os.path.exists(tgt))


def invalid_fields(t, c, work):
    tgt = os.path.join(work, "target")
    ref = "127.0.0.1:1/models/never-pulled:v1"
    P = c.publish
    row = "NodePublishVolume: invalid or unsupported field"
    t.code(f"{row} target_path (relative)", SC.INVALID_ARGUMENT, P, "rel/target", ref)
    t.code("NodeUnpublishVolume: invalid field target_path (relative)", SC.INVALID_ARGUMENT,
           c.unpublish, "rel/target")
    t.code(f"{row} volume_capability (block)", SC.INVALID_ARGUMENT, P, tgt, ref, block=True)
    t.code(f"{row} volume_capability (SINGLE_NODE_WRITER, readonly=false)", SC.INVALID_ARGUMENT,
           P, tgt, ref, mode="SINGLE_NODE_WRITER", readonly=False)
    t.code(f"{row} volume_context reference (malformed)", SC.INVALID_ARGUMENT, P, tgt,
           "Bad/Ref:v1")
    t.code(f"{row} volume_context pullPolicy (Sometimes)", SC.INVALID_ARGUMENT, P, tgt, ref,
           context={"pullPolicy": "Sometimes"})

    # Strict volume attributes: a key outside csi.storage.k8s.io/ that the
    # plugin does not know is refused, named, with the known keys listed.
    for key, value in [("pullpolicy", "Always"), ("includes", "*.json"), ("Reference", ref),
                       ("model", ref)]:
        code, details = csiclient.code_of(P, tgt, ref, context={key: value})
        t.check(f"{row} volume_context key {key!r} (unknown) -> INVALID_ARGUMENT",
                code == SC.INVALID_ARGUMENT, f"{code}: {details}")
        t.check(f"the refusal of {key!r} names it and lists the known keys",
                f'unknown key "{key}"' in details and KNOWN in details, details)
    code, details = csiclient.code_of(P, tgt, ref, context={"pullpolicy": "Always"})
    t.check("a case slip names the key meant", "did you mean pullPolicy?" in details, details)
    # Every known key and the kubelet's own pass the check: the request goes
    # on to the pull, which pullPolicy Never ends at once with NOT_FOUND.
    code, details = csiclient.code_of(
        P, tgt, ref, timeout=30,
        context={"pullPolicy": "Never", "include": "*.json", "exclude": "*.md",
                 "kinds": "weights,config", "path": "/", "artifactType": "application/x",
                 "platform": "linux/amd64", "annotation": "k=v",
                 "csi.storage.k8s.io/pod.name": "p", "csi.storage.k8s.io/ephemeral": "true",
                 "csi.storage.k8s.io/serviceAccount.name": "default"})
    t.check("every known key and csi.storage.k8s.io/ keys are accepted",
            code == SC.NOT_FOUND and "Never" in details, f"{code}: {details}")
    t.check("no target was created by any refused call", not os.path.exists(tgt))


def not_published(t, c, work):
    never = os.path.join(work, "never-published")
    row = "NodeGetVolumeStats: volume does not exist on volume_path"
    t.code(f"{row} (absolute, never published)", SC.NOT_FOUND, c.volume_stats, never)
    t.code(f"{row} (relative \"some/path\", as csi-sanity asks)", SC.NOT_FOUND, c.volume_stats,
           "some/path")
    t.code(f"{row} (path that does not exist)", SC.NOT_FOUND, c.volume_stats,
           os.path.join(work, "no", "such", "dir"))
    t.code("NodeUnpublishVolume: MUST be idempotent (never-published target)", SC.OK,
           c.unpublish, never)
    t.code("NodeUnpublishVolume: MUST be idempotent (again)", SC.OK, c.unpublish, never)


def unhealthy(t, work):
    bad_cache = os.path.join(work, "cache-is-a-file")
    with open(bad_cache, "w") as f:
        f.write("x")
    d = Daemon(os.path.join(work, "unhealthy"), bad_cache, node_id="conformance-node")
    os.makedirs(d.workdir)
    d.start(wait_ready=False)
    try:
        code, details = csiclient.code_of(d.client.probe)
        t.check("Probe: plugin not healthy (cache recovery failed) -> FAILED_PRECONDITION",
                code == SC.FAILED_PRECONDITION, f"{code}: {details}")
        t.check("the Probe refusal says why", bad_cache in details, details)
    finally:
        d.stop()


def with_registry(t, c, reg, work, can_mount):
    ref = f"{reg.addr}/models/conf:v1"
    tgt = os.path.join(work, "pods", "a", "mount")
    os.makedirs(os.path.dirname(tgt))
    t.code("NodePublishVolume: volume does not exist (no such tag)", SC.NOT_FOUND, c.publish,
           tgt, f"{reg.addr}/models/conf:no-such-tag", volume_id="vol-a")
    t.code("NodePublishVolume: volume does not exist (no such repository)", SC.NOT_FOUND,
           c.publish, tgt, f"{reg.addr}/models/no-such-model:v1", volume_id="vol-a")
    t.code("NodePublishVolume: volume does not exist (PV whose handle names no model)",
           SC.NOT_FOUND, c.publish, tgt, None, volume_id=f"{reg.addr}/models/gone:v1")
    t.check("nothing was created at the target", not os.path.exists(tgt))
    if not can_mount:
        print("SKIP: the rows that mount (idempotent publish, ALREADY_EXISTS, stats of a "
              "published volume, unpublish NOT_FOUND) need root for bind mounts")
        return

    t.code("NodePublishVolume: publish", SC.OK, c.publish, tgt, ref, volume_id="vol-a")
    row = "NodePublishVolume: second publish"
    t.code(f"{row} T1=T2, P1=P2 (idempotent)", SC.OK, c.publish, tgt, ref, volume_id="vol-a")
    t.check("the idempotent repeat stacked no mount", len(mounts.mountinfo_lines(tgt)) == 1,
            str(mounts.mountinfo_lines(tgt)))
    t.code(f"{row} T1=T2, compatible capability (SINGLE_NODE_READER_ONLY; MUST reply OK)",
           SC.OK, c.publish, tgt, ref, volume_id="vol-a", mode="SINGLE_NODE_READER_ONLY")
    for name, kw in [
        ("other volume_id", {"volume_id": "vol-b"}),
        ("other model", {"reference": f"{reg.addr}/models/other:v1"}),
        ("other pullPolicy", {"context": {"pullPolicy": "Always"}}),
        ("other include", {"context": {"include": "*.json"}}),
        ("other exclude", {"context": {"exclude": "*.md"}}),
        ("other kinds", {"context": {"kinds": "weights"}}),
        ("other path", {"context": {"path": "sub"}}),
        ("other artifactType", {"context": {"artifactType": "application/vnd.example+json"}}),
        ("other platform", {"context": {"platform": "linux/arm64"}}),
        ("other annotation", {"context": {"annotation": "org.example.quant=q4"}}),
    ]:
        kw = dict(kw)
        kw.setdefault("volume_id", "vol-a")
        r = kw.pop("reference", ref)
        code, details = csiclient.code_of(c.publish, tgt, r, **kw)
        t.check(f"{row} T1=T2, P1!=P2 ({name}) -> ALREADY_EXISTS", code == SC.ALREADY_EXISTS,
                f"{code}: {details}")
    code, details = csiclient.code_of(c.publish, tgt, ref, volume_id="vol-a",
                                      context={"platform": "linux/arm64"})
    t.check("ALREADY_EXISTS names the attribute that differs",
            'platform "", not "linux/arm64"' in details, details)
    t.check("the target still holds the first publish", len(mounts.mountinfo_lines(tgt)) == 1)

    tgt2 = os.path.join(work, "pods", "b", "mount")
    os.makedirs(os.path.dirname(tgt2))
    t.code(f"{row} T1!=T2, P1=P2, MULTI_NODE_READER_ONLY", SC.OK, c.publish, tgt2, ref,
           volume_id="vol-a")

    stats = c.volume_stats(tgt, volume_id="vol-a")
    units = {csiclient.pb().VolumeUsage.Unit.Name(u.unit): u for u in stats.usage}
    t.check("NodeGetVolumeStats: published volume -> OK, BYTES and INODES, none negative",
            set(units) == {"BYTES", "INODES"}
            and all(u.total >= 0 and u.used >= 0 and u.available >= 0 for u in units.values()),
            str(stats))
    t.code("NodeGetVolumeStats: volume does not exist on volume_path (other volume_id)",
           SC.NOT_FOUND, c.volume_stats, tgt, volume_id="vol-other")

    code, details = csiclient.code_of(c.unpublish, tgt, volume_id="vol-other")
    t.check("NodeUnpublishVolume: volume does not exist (target holds another volume) -> "
            "NOT_FOUND", code == SC.NOT_FOUND, f"{code}: {details}")
    t.check("that refusal unmounted nothing", len(mounts.mountinfo_lines(tgt)) == 1)
    t.code("NodeUnpublishVolume: unpublish", SC.OK, c.unpublish, tgt, volume_id="vol-a")
    t.check("NodeUnpublishVolume: the SP MUST delete what it created at target_path",
            not os.path.exists(tgt) and not mounts.mountinfo_lines(tgt))
    t.code("NodeUnpublishVolume: MUST be idempotent (already unpublished)", SC.OK, c.unpublish,
           tgt, volume_id="vol-a")
    t.code("NodeGetVolumeStats: volume does not exist on volume_path (unpublished)",
           SC.NOT_FOUND, c.volume_stats, tgt, volume_id="vol-a")
    t.code("NodeUnpublishVolume: unpublish the second target", SC.OK, c.unpublish, tgt2,
           volume_id="vol-a")


def main():
    t = Checks()
    work = tempfile.mkdtemp(prefix="csi-conformance.")
    try:
        d = Daemon(work, os.path.join(work, "cache"), node_id="conformance-node")
        d.start()
        try:
            c = d.client
            identity(t, c)
            node_info_and_caps(t, c)
            not_implemented(t, c)
            missing_fields(t, c, work)
            invalid_fields(t, c, work)
            not_published(t, c, work)
            with mvreg.Registry(os.path.join(work, "reg")) as reg:
                reg.push_model("models/conf", "v1", {
                    "model.safetensors": os.urandom(64 * 1024),
                    "config.json": b'{"layers": 2}',
                    "sub/README.md": b"# conf\n",
                })
                reg.push_model("models/other", "v1", {"other.json": b"{}"})
                with_registry(t, c, reg, work, os.geteuid() == 0)
        finally:
            rc = d.stop()
            t.check("daemon exits 0 on SIGTERM", rc == 0, f"exit {rc}")
            if t.failed:
                print(d.read_log()[-6000:])
        unhealthy(t, work)
    finally:
        mounts.remove_tree(work)
    return t.summary()


if __name__ == "__main__":
    sys.exit(main())
