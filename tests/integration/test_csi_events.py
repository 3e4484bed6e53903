"""test_csi_events.py — pod events (podInfoOnMount): a publish whose
volume_context names its pod posts core/v1 Events on that pod, through a
TLS stand-in for the API server (tests/lib/kubeapi.py) that checks the
bearer token; a real kube-apiserver is the e2e suite's job.

- a successful pull posts "Pulled model REF in S s (N GB fetched, M GB
  from cache)" (reason Pulled, Normal) with involvedObject the pod;
- a failed publish posts a Warning (PullFailed) with the very message of
  the gRPC error;
- an API server that refuses connections leaves the publish successful and
  counts modelvol_events_failed_total;
- the token is in no log line.
Needs root (real bind mounts) and docker-registry."""
import os
import re
import socket
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import mvreg  # noqa: E402
from csiclient import Checks, code_of  # noqa: E402
from csidaemon import Daemon  # noqa: E402
from kubeapi import KubeAPI  # noqa: E402
from util import wait_for  # noqa: E402
import grpc  # noqa: E402

TOKEN = "eyJ-test-token-never-in-logs-8f3a"
POD = {"csi.storage.k8s.io/pod.name": "llm-0", "csi.storage.k8s.io/pod.namespace": "team-a",
       "csi.storage.k8s.io/pod.uid": "0b6a9b2e-1111-2222-3333-444455556666",
       "csi.storage.k8s.io/serviceAccount.name": "default"}


def counter(d, name):
    m = re.search(rf"^{name} (\d+)$", d.metrics(), re.M)
    return int(m.group(1)) if m else None


def main():
    if os.geteuid() != 0:
        print("SKIP: needs root for bind mounts")
        return 77
    t = Checks()
    with tempfile.TemporaryDirectory(prefix="wt-reg-csi-events.", dir="/tmp") as work, \
            mvreg.Registry(os.path.join(work, "reg")) as reg:
        reg.push_model("models/tiny", "v1", {"config.json": b'{"a": 1}',
                                              "model.safetensors": b"w" * 4096})
        ref = f"{reg.addr}/models/tiny:v1"
        api = KubeAPI(work, TOKEN)
        d = Daemon(work, os.path.join(work, "cache"), node_id="events-node",
                   args=["--kube-api-url", api.url, "--kube-token-file", api.token_file,
                         "--kube-ca-file", api.ca]).start()
        try:
            target = os.path.join(work, "t1")
            d.client.publish(target, ref, context=POD)
            got = wait_for(lambda: [e for e in api.events() if e["body"]["reason"] == "Pulled"], 20)
            t.check("a Pulled event is posted", len(got) == 1, str(api.requests))
            if got:
                e, b = got[0], got[0]["body"]
                t.check("POST to /api/v1/namespaces/<pod ns>/events",
                        e["method"] == "POST" and e["path"] == "/api/v1/namespaces/team-a/events",
                        e["path"])
                t.check("with the service account token", e["auth"] == f"Bearer {TOKEN}")
                io = b["involvedObject"]
                t.check("involvedObject is the pod",
                        io == {"apiVersion": "v1", "kind": "Pod", "namespace": "team-a",
                               "name": "llm-0", "uid": POD["csi.storage.k8s.io/pod.uid"]}, str(io))
                t.check("Normal, from modelvol-csi on the node",
                        b["type"] == "Normal" and b["source"] == {"component": "modelvol-csi",
                                                                   "host": "events-node"},
                        str(b))
                t.check("Pulled message: time, fetched and cached sizes",
                        re.fullmatch(rf"Pulled model {re.escape(ref)} in \d+\.\d s "
                                     r"\(\d+\.\d GB fetched, \d+\.\d GB from cache\)",
                                     b["message"]) is not None, b["message"])
                t.check("timestamps and count set",
                        b.get("firstTimestamp") and b.get("lastTimestamp") and b.get("count") == 1)
            d.client.unpublish(target)

            # A failure: the event carries the gRPC error's message.
            bad = f"{reg.addr}/models/absent:v1"
            code, details = code_of(d.client.publish, os.path.join(work, "t2"), bad, context=POD)
            t.check("publish of a missing model fails", code != grpc.StatusCode.OK, str(code))
            fail = wait_for(lambda: [e for e in api.events()
                                     if e["body"]["reason"] == "PullFailed"], 20)
            t.check("a PullFailed Warning carries the gRPC error's message",
                    len(fail) == 1 and fail[0]["body"]["type"] == "Warning"
                    and fail[0]["body"]["message"] == details,
                    f"{details!r} vs {[f['body']['message'] for f in fail]}")
            t.check("modelvol_events_total counts both", wait_for(
                lambda: counter(d, "modelvol_events_total") == 2, 10))
        finally:
            d.stop()
            api.stop()
        t.check("the token is in no log line", TOKEN not in d.read_log())

        # A dead API server: connection refused.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        dead = f"https://127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: refused
        d = Daemon(work, os.path.join(work, "cache"), node_id="events-node",
                   args=["--kube-api-url", dead, "--kube-token-file", api.token_file,
                         "--kube-ca-file", api.ca]).start()
        try:
            target = os.path.join(work, "t3")
            code, details = code_of(d.client.publish, target, ref, context=POD)
            t.check("with the API server unreachable the publish still succeeds",
                    code == grpc.StatusCode.OK, details)
            t.check("modelvol_events_failed_total counts the lost event",
                    wait_for(lambda: (counter(d, "modelvol_events_failed_total") or 0) >= 1, 20),
                    d.metrics()[-600:])
            d.client.unpublish(target)
        finally:
            d.stop()
            s.close()
        t.check("the token is in no log line (dead API)", TOKEN not in d.read_log())
        t.check("the failure is logged as event_failed", "event=event_failed" in d.read_log())
    return t.summary()


if __name__ == "__main__":
    sys.exit(main())
