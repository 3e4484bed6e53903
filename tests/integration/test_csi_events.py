"""test_csi_events.py — pod events (podInfoOnMount): a publish whose
volume_context names its pod posts core/v1 Events on that pod, through a
TLS stand-in for the API server (tests/lib/kubeapi.py) that checks the
bearer token; a real kube-apiserver is the e2e suite's job.

- a publish that has to download posts "Pulling model REF (N GB)" (reason
  Pulling, Normal; N the model's size from its manifest) before Pulled;
- a pull that lasts longer than 10 s (storage behind nginx capped per
  connection) posts progress "Pulling model REF: X of N GB (P%)" on each
  waiting pod, never two within 10 s for one pod; two pods coalesced on one
  pull each get their own;
- a publish served from the cache posts no Pulling event; one with an
  include is sized by the layers it keeps;
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
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import mvreg  # noqa: E402
from csiclient import Checks, code_of  # noqa: E402
from csidaemon import Daemon  # noqa: E402
from kubeapi import KubeAPI  # noqa: E402
from util import wait_for  # noqa: E402
from nginx import Nginx  # noqa: E402
import grpc  # noqa: E402
import threading  # noqa: E402

MIB = 1 << 20
INTERVAL = 10.0  # CSI_PULLING_EVENT_INTERVAL_NS

TOKEN = "eyJ-test-token-never-in-logs-8f3a"
POD = {"csi.storage.k8s.io/pod.name": "llm-0", "csi.storage.k8s.io/pod.namespace": "team-a",
       "csi.storage.k8s.io/pod.uid": "0b6a9b2e-1111-2222-3333-444455556666",
       "csi.storage.k8s.io/serviceAccount.name": "default"}


def counter(d, name):
    m = re.search(rf"^{name} (\d+)$", d.metrics(), re.M)
    return int(m.group(1)) if m else None


def pod(name):
    return {**POD, "csi.storage.k8s.io/pod.name": name,
            "csi.storage.k8s.io/pod.uid": f"0b6a9b2e-{name}"}


def of_pod(api, name, reason):
    return [e for e in api.events() if e["body"]["reason"] == reason
            and e["body"]["involvedObject"]["name"] == name]


def gb(n):
    return f"{n / 1e9:.1f}"


def slow_pull(t, work, reg):
    """Two pods wait on one pull that lasts well over 10 s: 64 MiB over
    two connections to storage capped at 2 MiB/s each."""
    path = os.path.join(work, "big.safetensors")
    with open(path, "wb") as f:
        for _ in range(64):
            f.write(os.urandom(MIB))
    cfg = b'{"big": true}'
    reg.push_model("models/big", "v1", {"model.safetensors": path, "config.json": cfg})
    size = os.path.getsize(path) + len(cfg)
    os.makedirs(os.path.join(work, "api-slow"))
    api = KubeAPI(os.path.join(work, "api-slow"), TOKEN)
    with Nginx(work, reg.addr, redirect_blobs=True, storage_rate="2m") as ng:
        ref = f"{ng.addr}/models/big:v1"
        d = Daemon(work, os.path.join(work, "cache-slow"), node_id="events-node",
                   args=["--connections", "2", "--kube-api-url", api.url,
                         "--kube-token-file", api.token_file, "--kube-ca-file", api.ca]).start()
        try:
            results = {}

            def publish(name):
                results[name] = code_of(d.client.publish, os.path.join(work, name), ref,
                                        context=pod(name))[0]
            threads = [threading.Thread(target=publish, args=(n,)) for n in ("slow-a", "slow-b")]
            t0 = time.monotonic()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            took = time.monotonic() - t0
            t.check("both coalesced publishes succeed",
                    all(results.get(n) == grpc.StatusCode.OK for n in ("slow-a", "slow-b")),
                    repr(results))
            t.check("the pull lasted more than 10 s", took > INTERVAL + 1, f"{took:.1f} s")
            for name in ("slow-a", "slow-b"):
                wait_for(lambda: of_pod(api, name, "Pulled"), 20)
                pulling = of_pod(api, name, "Pulling")
                msgs = [e["body"]["message"] for e in pulling]
                t.check(f"{name}: its own Pulling event, with the model's size",
                        msgs[:1] == [f"Pulling model {ref} ({gb(size)} GB)"],
                        repr(msgs) + "\n" + d.read_log()[-3000:])
                progress = [e for e in pulling[1:] if re.fullmatch(
                    rf"Pulling model {re.escape(ref)}: \d+\.\d of {re.escape(gb(size))} GB "
                    r"\(\d+%\)", e["body"]["message"])]
                t.check(f"{name}: at least one progress event",
                        len(progress) >= 1 and len(progress) == len(pulling) - 1, repr(msgs))
                pct = [int(re.search(r"\((\d+)%\)", e["body"]["message"]).group(1))
                       for e in progress]
                t.check(f"{name}: progress from the pull, rising", pct == sorted(pct) and
                        all(0 <= p <= 100 for p in pct), repr(pct))
                gaps = [b["at"] - a["at"] for a, b in zip(pulling, pulling[1:])]
                # Events leave through a queue: allow the worker's jitter.
                t.check(f"{name}: never two Pulling events within 10 s",
                        all(g >= INTERVAL - 0.5 for g in gaps), repr(gaps))
                pulled = of_pod(api, name, "Pulled")
                t.check(f"{name}: Pulling comes before Pulled",
                        len(pulled) == 1 and pulling and pulling[-1]["at"] <= pulled[0]["at"])
            for name in ("slow-a", "slow-b"):
                d.client.unpublish(os.path.join(work, name))
        finally:
            d.stop()
            api.stop()


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
            pulling = of_pod(api, "llm-0", "Pulling")
            t.check("a cold publish posts Pulling with the model's size, before Pulled",
                    [e["body"]["message"] for e in pulling]
                    == [f"Pulling model {ref} ({gb(4096 + 8)} GB)"]
                    and got and pulling[0]["at"] <= got[0]["at"]
                    and pulling[0]["body"]["type"] == "Normal",
                    repr([e["body"] for e in pulling]))
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

            # Warm: the same model again, from the cache.
            warm = os.path.join(work, "t-warm")
            d.client.publish(warm, ref, context=pod("llm-warm"))
            wait_for(lambda: of_pod(api, "llm-warm", "Pulled"), 20)
            t.check("a warm publish posts Pulled", len(of_pod(api, "llm-warm", "Pulled")) == 1)
            t.check("a warm publish (cache hit) posts no Pulling event",
                    of_pod(api, "llm-warm", "Pulling") == [],
                    repr(of_pod(api, "llm-warm", "Pulling")))
            d.client.unpublish(warm)

            # A filtered publish is sized as filtered: 150 MB of weights an
            # include leaves out would read 0.2 GB.
            big = os.path.join(work, "filtered.safetensors")
            with open(big, "wb") as f:
                f.truncate(150 * 1000 * 1000)
            reg.push_model("models/filtered", "v1",
                           {"model.safetensors": big, "config.json": b'{"f": 1}'})
            fref = f"{reg.addr}/models/filtered:v1"
            d.client.publish(os.path.join(work, "t-filtered"), fref,
                             context={**pod("llm-filtered"), "include": "config.json"})
            wait_for(lambda: of_pod(api, "llm-filtered", "Pulled"), 20)
            msgs = [e["body"]["message"] for e in of_pod(api, "llm-filtered", "Pulling")]
            t.check("a publish with include is sized by the files it keeps",
                    msgs == [f"Pulling model {fref} (0.0 GB)"], repr(msgs))
            d.client.unpublish(os.path.join(work, "t-filtered"))

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
            t.check("modelvol_events_total counts every event", wait_for(
                lambda: counter(d, "modelvol_events_total") == len(api.events()) == 6, 10),
                    f"{counter(d, 'modelvol_events_total')} vs {len(api.events())}")
        finally:
            d.stop()
            api.stop()
        t.check("the token is in no log line", TOKEN not in d.read_log())

        slow_pull(t, work, reg)

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
