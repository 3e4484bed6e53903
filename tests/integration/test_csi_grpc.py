"""test_csi_grpc.py — modelvol-csi over real gRPC, everything that needs no
registry and no mount: flags and --help, Identity, NodeGetInfo and
NodeGetCapabilities, unknown methods, every INVALID_ARGUMENT a publish can
earn before it pulls (with no secret in any message or log line), unpublish
of an unknown target, metrics and /healthz, the log format, SIGTERM and a
stale socket left by a killed daemon."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import csiclient  # noqa: E402
import csidaemon  # noqa: E402
import mounts  # noqa: E402
import util  # noqa: E402
from csiclient import Checks  # noqa: E402
from csidaemon import Daemon  # noqa: E402
import grpc  # noqa: E402

SC = grpc.StatusCode
SECRET = "s3cr3t-Pa55w0rd-do-not-log"
LOG_LINE = re.compile(r'^ts=\S+ level=(info|warn|error) event=[a-z_]+'
                      r'( [a-z_]+=("([^"\\]|\\.)*"|[^" =]+))*$')


def mv_version():
    with open(os.path.join(util.SOURCE_DIR, "base", "mv.h")) as f:
        return re.search(r'#define MV_VERSION "([^"]+)"', f.read()).group(1)


def flags(t, binary, work):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    t.check("--help exits 0", out.returncode == 0, out.stderr)
    for flag in ["--endpoint", "--node-id", "--cache", "--config", "--metrics-addr",
                 "--publish-timeout", "--max-size", "--high-watermark", "--low-watermark",
                 "--connections", "--version", "--help"]:
        t.check(f"--help lists {flag}", flag in out.stdout)
    r = subprocess.run([binary, "--endpoint", "unix:///tmp/x.sock"], capture_output=True,
                       text=True, timeout=30)
    t.check("missing --node-id is a usage error", r.returncode == 2 and "--node-id" in r.stderr,
            r.stderr)
    r = subprocess.run([binary, "--endpoint", "unix:///tmp/x.sock", "--node-id", "n",
                        "--publish-timeout", "soon"], capture_output=True, text=True, timeout=30)
    t.check("bad --publish-timeout is a usage error",
            r.returncode == 2 and "--publish-timeout" in r.stderr and r.stderr.count("\n") == 1,
            r.stderr)
    cache = os.path.join(work, "flags-cache")
    r = subprocess.run([binary, "--endpoint", "tcp://0.0.0.0:1", "--node-id", "n", "--cache", cache,
                        "--metrics-addr", "off"], capture_output=True, text=True, timeout=30)
    t.check("non-unix endpoint refused", r.returncode != 0 and "unix" in r.stderr, r.stderr)
    missing = os.path.join(work, "no-such-dir", "csi.sock")
    r = subprocess.run([binary, "--endpoint", f"unix://{missing}", "--node-id", "n", "--cache",
                        cache, "--metrics-addr", "off"], capture_output=True, text=True, timeout=30)
    t.check("a missing socket directory is named", r.returncode != 0 and
            f"socket directory {os.path.dirname(missing)}" in r.stderr, r.stderr)


def identity_and_node(t, c):
    info = c.call("Identity", "GetPluginInfo")
    t.check("GetPluginInfo name", info.name == "modelvol.csi.io", info.name)
    t.check("GetPluginInfo version", info.vendor_version == mv_version(), info.vendor_version)
    m = csiclient.pb()
    caps = c.call("Identity", "GetPluginCapabilities")
    ctrl = m.PluginCapability.Service.Type.Value("CONTROLLER_SERVICE")
    t.check("GetPluginCapabilities: no controller service",
            all(not (cap.HasField("service") and cap.service.type == ctrl)
                for cap in caps.capabilities), str(caps))
    probe = c.call("Identity", "Probe")
    t.check("Probe ready after recovery", probe.HasField("ready") and probe.ready.value)
    t.check("NodeGetInfo node id", c.call("Node", "NodeGetInfo").node_id == "csi-grpc-node")
    ncaps = c.call("Node", "NodeGetCapabilities")
    types = [cap.rpc.type for cap in ncaps.capabilities]
    t.check("NodeGetCapabilities: GET_VOLUME_STATS only",
            types == [m.NodeServiceCapability.RPC.Type.Value("GET_VOLUME_STATS")], str(types))


def unimplemented(t, c):
    for method in ["/csi.v1.Controller/CreateVolume", "/csi.v1.Node/NodeStageVolume",
                   "/csi.v1.Node/NodeExpandVolume", "/no.such.Service/Method"]:
        t.code(f"{method}", SC.UNIMPLEMENTED, c.raw, method, b"")
    t.code("undecodable NodePublishVolume body", SC.INVALID_ARGUMENT, c.raw,
           "/csi.v1.Node/NodePublishVolume", b"\xff\xff\xff\xff")


def publish_refusals(t, c, work):
    tgt = os.path.join(work, "target")
    ref = "127.0.0.1:1/models/never-pulled:v1"
    P = c.publish
    t.code("publish without volume_id", SC.INVALID_ARGUMENT, P, tgt, ref, volume_id="")
    t.code("publish without target_path", SC.INVALID_ARGUMENT, P, "", ref)
    t.code("publish with relative target_path", SC.INVALID_ARGUMENT, P, "rel/target", ref)
    t.code("publish with .. in target_path", SC.INVALID_ARGUMENT, P, work + "/../x", ref)
    t.code("publish without capability", SC.INVALID_ARGUMENT, P, tgt, ref, capability=False)
    t.code("publish of a block volume", SC.INVALID_ARGUMENT, P, tgt, ref, block=True)
    t.code("publish SINGLE_NODE_WRITER read-write", SC.INVALID_ARGUMENT, P, tgt, ref,
           mode="SINGLE_NODE_WRITER", readonly=False)
    t.code("publish MULTI_NODE_MULTI_WRITER read-write", SC.INVALID_ARGUMENT, P, tgt, ref,
           mode="MULTI_NODE_MULTI_WRITER", readonly=False)
    t.code("publish with a malformed reference", SC.INVALID_ARGUMENT, P, tgt, "Bad/Ref:v1")
    t.code("publish with an empty reference", SC.INVALID_ARGUMENT, P, tgt, "")
    t.code("inline volume without reference", SC.INVALID_ARGUMENT, P, tgt, None,
           context={"csi.storage.k8s.io/ephemeral": "true"})
    t.code("PV whose volume_id is not a reference", SC.INVALID_ARGUMENT, P, tgt, None,
           volume_id="pv-UPPER/Case")
    t.code("publish with pullPolicy Sometimes", SC.INVALID_ARGUMENT, P, tgt, ref,
           context={"pullPolicy": "Sometimes"})
    t.code("publish with path escaping the model", SC.INVALID_ARGUMENT, P, tgt, ref,
           context={"path": "../../etc"})
    code, details = csiclient.code_of(P, tgt, ref,
                                      secrets={".dockerconfigjson": "{not json " + SECRET})
    t.check("publish with a broken .dockerconfigjson -> INVALID_ARGUMENT",
            code == SC.INVALID_ARGUMENT, f"{code}: {details}")
    t.check("the broken secret is not echoed", SECRET not in details, details)
    code, details = csiclient.code_of(P, tgt, "Bad/Ref:v1")
    t.check("messages name the bad value", "Bad/Ref" in details, details)
    t.check("nothing was created at the target", not os.path.exists(tgt))


def unpublish_and_stats(t, c, work):
    t.code("unpublish without volume_id", SC.INVALID_ARGUMENT, c.unpublish, "/x/y", volume_id="")
    t.code("unpublish without target_path", SC.INVALID_ARGUMENT, c.unpublish, "")
    t.code("unpublish of a never-published target", SC.OK, c.unpublish,
           os.path.join(work, "never-published"))
    t.code("stats of an unknown volume", SC.NOT_FOUND, c.volume_stats,
           os.path.join(work, "never-published"))
    t.code("stats without volume_path", SC.INVALID_ARGUMENT, c.volume_stats, "")


def parallel_calls(t, c):
    errors = []

    def worker():
        try:
            for _ in range(20):
                c.call("Node", "NodeGetInfo", timeout=10)
                c.probe(timeout=10)
        except Exception as e:  # noqa: BLE001 - collected and reported
            errors.append(repr(e))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    t.check("8 clients x 40 calls in parallel", not errors and not any(th.is_alive() for th in threads),
            "; ".join(errors[:3]))


def metrics(t, d):
    text = d.metrics()
    t.check("/metrics counts refused publishes",
            re.search(r'^modelvol_publishes_total\{result="invalid_argument"\} [1-9]', text, re.M),
            text)
    for name in ["modelvol_pulls_total", "modelvol_pull_bytes_total{source=\"origin\"}",
                 "modelvol_pull_bytes_total{source=\"mirror\"}", "modelvol_cache_hits_total",
                 "modelvol_pull_duration_seconds_bucket", "modelvol_ready 1"]:
        t.check(f"/metrics has {name}", name in text)
    with urllib.request.urlopen(f"http://{d.metrics_addr}/healthz", timeout=5) as r:
        t.check("/healthz answers 200 ok", r.status == 200 and r.read() == b"ok\n")


def not_ready(t, work):
    """A cache that cannot be opened: the plugin serves, but Probe reports it
    unhealthy, and it refuses to publish."""
    bad_cache = os.path.join(work, "not-a-directory")
    with open(bad_cache, "w") as f:
        f.write("x")
    d = Daemon(os.path.join(work, "nr"), bad_cache, node_id="csi-grpc-node")
    os.makedirs(d.workdir)
    d.start(wait_ready=False)
    try:
        c = d.client
        util.wait_for(lambda: "event=recovery_failed" in d.read_log(), 30)
        t.check("recovery failure is logged", "event=recovery_failed" in d.read_log())
        # spec.md, Probe Errors: "Plugin not healthy" is FAILED_PRECONDITION;
        # ready=false is for a plugin still initialising, which this one is
        # not: it needs a restart once the cache is fixed.
        code, details = csiclient.code_of(c.probe)
        t.check("Probe after a failed recovery -> FAILED_PRECONDITION",
                code == SC.FAILED_PRECONDITION and bad_cache in details, f"{code}: {details}")
        t.check("NodeGetInfo still answers", c.call("Node", "NodeGetInfo").node_id == "csi-grpc-node")
        code, details = csiclient.code_of(c.publish, os.path.join(work, "t"), "r.example/m:v1")
        t.check("publish before ready -> UNAVAILABLE", code == SC.UNAVAILABLE, f"{code}: {details}")
        try:
            urllib.request.urlopen(f"http://{d.metrics_addr}/healthz", timeout=5)
            t.check("/healthz is 503 before ready", False, "got 200")
        except urllib.error.HTTPError as e:
            t.check("/healthz is 503 before ready", e.code == 503, str(e.code))
    finally:
        t.check("an unready daemon still stops cleanly", d.stop() == 0)


def main():
    binary = csidaemon.csi_binary()
    t = Checks()
    if not os.access(binary, os.X_OK):
        t.check(f"modelvol-csi is built at {binary}", False)
        return t.summary()
    work = tempfile.mkdtemp(prefix="csi-grpc.")
    try:
        flags(t, binary, work)
        d = Daemon(work, os.path.join(work, "cache"), node_id="csi-grpc-node")
        d.start()
        try:
            c = d.client
            identity_and_node(t, c)
            unimplemented(t, c)
            publish_refusals(t, c, work)
            unpublish_and_stats(t, c, work)
            parallel_calls(t, c)
            metrics(t, d)
            not_ready(t, work)
        finally:
            rc = d.stop(signal.SIGTERM)
        t.check("SIGTERM: exit status 0", rc == 0, f"exit {rc}")
        t.check("SIGTERM: socket removed", not os.path.exists(d.sock_path))
        log = d.read_log()
        t.check("no secret in the log", SECRET not in log)
        bad = [l for l in log.splitlines() if not LOG_LINE.match(l)]
        t.check("every log line is key=value", not bad, "\n".join(bad[:5]))
        t.check("the log has an event per refused publish",
                log.count("event=publish_failed") >= 15)

        # A daemon killed with SIGKILL leaves its socket; the next one must
        # replace it rather than fail to bind.
        d2 = Daemon(work, os.path.join(work, "cache"), node_id="csi-grpc-node")
        d2.start()
        d2.stop(signal.SIGKILL)
        t.check("SIGKILL leaves the socket behind", os.path.exists(d2.sock_path))
        d3 = Daemon(work, os.path.join(work, "cache"), node_id="csi-grpc-node")
        d3.start()
        try:
            t.check("restart over a stale socket serves again", d3.client.probe())
        finally:
            t.check("second SIGTERM exit 0", d3.stop() == 0)
    finally:
        mounts.remove_tree(work)
    return t.summary()


if __name__ == "__main__":
    sys.exit(main())
