"""test_csi_concurrency.py — long pulls in modelvol-csi, made slow for real:
blob GETs go through nginx (307 to a storage server block with limit_rate),
so an 8 MiB model takes seconds. Root, real registry, real mounts.

  * 16 concurrent publishes of one uncached model: one pull, each blob byte
    served once, all 16 targets mounted;
  * while that pull runs, Probe and NodeGetInfo answer within 1 s;
  * the plugin's own budget (--publish-timeout) answers DEADLINE_EXCEEDED
    with a reason, and the pull goes on;
  * a kubelet-style retry after a client deadline shorter than the pull joins
    the running pull instead of starting another;
  * two spellings of one model (host/repo and host/repo:latest) share one
    pull: jobs are keyed by the normalised reference."""
import os
import re
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import csiclient  # noqa: E402
import logs  # noqa: E402
import mounts  # noqa: E402
from csiclient import Checks  # noqa: E402
from csidaemon import Daemon  # noqa: E402
import mvreg  # noqa: E402
from nginx import Nginx  # noqa: E402
import grpc  # noqa: E402
import util  # noqa: E402

SC = grpc.StatusCode
SIZE = 8 * 1024 * 1024
RATE = "1m"  # per storage connection: about 8 s for the model
BUDGET = 3   # --publish-timeout


def push_big(reg, work, repo, tag="v1"):
    path = os.path.join(work, repo.replace("/", "_") + ".safetensors")
    with open(path, "wb") as f:
        f.write(os.urandom(SIZE))
    reg.push_model(repo, tag, {"model.safetensors": path, "config.json": b'{"big": true}'})
    return util.sha256_file(path)


def served(ng, digest):
    return logs.blob_bytes_served("\n".join(ng.read_log("storage")), digest)


def sixteen_at_once(t, d, reg, ng, work, digest):
    c = d.client
    ref = f"{ng.addr}/models/big:v1"
    targets = [os.path.join(work, "pods", f"p{i}", "mount") for i in range(16)]
    results = [None] * 16

    def publish(i):
        try:
            results[i] = c.publish_like_kubelet(targets[i], ref, call_timeout=30,
                                                volume_id=f"vol-{i}")
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    for tg in targets:
        os.makedirs(os.path.dirname(tg))
    threads = [threading.Thread(target=publish, args=(i,)) for i in range(16)]
    t0 = time.monotonic()
    for th in threads:
        th.start()

    # While the pull runs, the cheap calls must stay cheap.
    slow = []
    samples = 0
    while any(th.is_alive() for th in threads) and samples < 40:
        for method in ("Probe", "NodeGetInfo"):
            s = time.monotonic()
            try:
                c.call("Identity" if method == "Probe" else "Node", method, timeout=5)
            except grpc.RpcError as e:
                slow.append(f"{method}: {e.code()}")
                continue
            if time.monotonic() - s >= 1.0:
                slow.append(f"{method}: {time.monotonic() - s:.2f}s")
        samples += 1
        time.sleep(0.2)  # pacing between samples, not synchronisation
    for th in threads:
        th.join(timeout=300)
    elapsed = time.monotonic() - t0

    t.check("the pull was slow enough to overlap the samples", samples >= 5,
            f"{samples} samples in {elapsed:.1f}s")
    t.check("Probe and NodeGetInfo answered within 1 s during the pull", not slow, "; ".join(slow))
    errors = [r for r in results if not isinstance(r, int)]
    t.check("16 concurrent publishes all succeeded", not errors, repr(errors[:2]))
    t.check("some waited past the budget and retried", any(isinstance(r, int) and r > 1
                                                           for r in results), str(results))
    mounted = [tg for tg in targets if mounts.mountinfo_line(tg)]
    t.check("16 targets mounted", len(mounted) == 16, f"{len(mounted)} mounted")
    t.check("the model blob was served exactly once", served(ng, digest) == SIZE,
            f"{served(ng, digest)} bytes served for {SIZE}")
    from_registry = logs.blob_bytes_served(reg.access_log(), digest)
    t.check("the registry's access log agrees", from_registry == SIZE,
            f"{from_registry} bytes in the registry log for {SIZE}")
    log = d.read_log()
    # A retry arriving after the pull ended starts a new one, a cache hit:
    # what must happen once is the download.
    downloads = re.findall(rf"event=pull_done reference={re.escape(ref)} .*cache_hit=false", log)
    t.check("one downloading pull for 16 publishes", len(downloads) == 1, str(len(downloads)))
    for i, tg in enumerate(targets):
        c.unpublish(tg, volume_id=f"vol-{i}")
    t.check("all 16 unpublished", not any(mounts.mountinfo_line(tg) for tg in targets))


def budget_and_retry(t, d, ng, work, digest2):
    c = d.client
    ref = f"{ng.addr}/models/big2:v1"
    tg = os.path.join(work, "pods", "retry", "mount")
    os.makedirs(os.path.dirname(tg))

    # The plugin answers at its budget, with a reason, long before ours.
    s = time.monotonic()
    code, details = csiclient.code_of(c.publish, tg, ref, timeout=60)
    took = time.monotonic() - s
    t.check("the plugin answers DEADLINE_EXCEEDED at its budget",
            code == SC.DEADLINE_EXCEEDED and took < BUDGET + 5, f"{code} after {took:.1f}s")
    t.check("the DEADLINE_EXCEEDED message says the pull goes on",
            "in progress" in details and "big2" in details, details)

    # The kubelet: a client deadline shorter than the pull, then retries.
    first, _ = csiclient.code_of(c.publish, tg, ref, timeout=1.5)
    t.check("a call with a short client deadline times out", first == SC.DEADLINE_EXCEEDED,
            str(first))
    attempts = c.publish_like_kubelet(tg, ref, call_timeout=1.5)
    t.check("a retry eventually publishes", mounts.mountinfo_line(tg) is not None)
    t.check("it took several retries", attempts >= 2, str(attempts))
    log = d.read_log()
    downloads = re.findall(rf"event=pull_done reference={re.escape(ref)} .*cache_hit=false", log)
    t.check("the retries joined the running pull",
            f"event=pull_joined reference={ref}" in log and len(downloads) == 1,
            f"{len(downloads)} downloading pulls")
    t.check("the blob was served exactly once across the retries", served(ng, digest2) == SIZE,
            f"{served(ng, digest2)} bytes for {SIZE}")
    t.code("unpublish the retried volume", SC.OK, c.unpublish, tg)


def spellings_coalesce(t, d, ng, work, digest4):
    """host/repo and host/repo:latest differ as strings and name one model:
    a publish of the second joins the pull the first started."""
    c = d.client
    short = f"{ng.addr}/models/big4"
    full = f"{short}:latest"  # what both normalise to
    targets = {short: os.path.join(work, "pods", "short", "mount"),
               full: os.path.join(work, "pods", "full", "mount")}
    results = {}

    def publish(ref, vol):
        try:
            results[ref] = c.publish_like_kubelet(targets[ref], ref, call_timeout=30,
                                                  volume_id=vol)
        except Exception as e:  # noqa: BLE001 - reported below
            results[ref] = e

    for tg in targets.values():
        os.makedirs(os.path.dirname(tg))
    first = threading.Thread(target=publish, args=(short, "vol-short"))
    first.start()
    util.wait_for(lambda: f"event=pull_start reference={full}" in d.read_log(), 30)
    t.check("the short spelling's pull started under the normalised reference",
            f"event=pull_start reference={full}" in d.read_log())
    second = threading.Thread(target=publish, args=(full, "vol-full"))
    second.start()
    first.join(timeout=300)
    second.join(timeout=300)

    t.check("both spellings published", all(isinstance(r, int) for r in results.values()),
            repr(results))
    t.check("both targets mounted", all(mounts.mountinfo_line(tg) for tg in targets.values()))
    log = d.read_log()
    spelled = rf"reference={re.escape(short)}(:latest)?(\s|$)"
    events = re.findall(rf"event=(pull_start|pull_done) {spelled}", log)
    kinds = [e[0] for e in events]
    # Retries after the download ended start cache-hit pulls; what must
    # happen once is a pull running while the download runs.
    before_done = kinds[:kinds.index("pull_done")] if "pull_done" in kinds else kinds
    t.check("one pull ran for both spellings", before_done.count("pull_start") == 1, str(kinds))
    t.check("the fully spelled publish joined it", f"event=pull_joined reference={full}" in log)
    downloads = re.findall(rf"event=pull_done {spelled}.*cache_hit=false", log)
    t.check("one downloading pull for both spellings", len(downloads) == 1, str(len(downloads)))
    t.check("the blob was served exactly once for both spellings",
            served(ng, digest4) == SIZE, f"{served(ng, digest4)} bytes for {SIZE}")
    t.code("unpublish the short spelling", SC.OK, c.unpublish, targets[short], "vol-short")
    t.code("unpublish the full spelling", SC.OK, c.unpublish, targets[full], "vol-full")


def sigterm_during_pull(t, d, ng, work):
    """SIGTERM while a publish waits for a slow pull: the pull is cancelled,
    the call answered, the daemon exits 0 promptly and removes its socket."""
    ref = f"{ng.addr}/models/big3:v1"
    tg = os.path.join(work, "pods", "term", "mount")
    os.makedirs(os.path.dirname(tg))
    result = []
    own = csiclient.Client(d.sock_path)  # d.stop() closes d.client's channel
    th = threading.Thread(target=lambda: result.append(
        csiclient.code_of(own.publish, tg, ref, timeout=60)))
    th.start()
    util.wait_for(lambda: f"event=pull_start reference={ref}" in d.read_log(), 30)
    t.check("the slow pull started", f"event=pull_start reference={ref}" in d.read_log())
    s = time.monotonic()
    rc = d.stop()
    took = time.monotonic() - s
    th.join(timeout=60)
    own.close()
    t.check("SIGTERM during a pull: exit 0", rc == 0, f"exit {rc}")
    t.check("SIGTERM during a pull: stopped within 15 s", took < 15, f"{took:.1f}s")
    t.check("SIGTERM during a pull: socket removed", not os.path.exists(d.sock_path))
    code = result[0][0] if result else None
    t.check("the waiting publish was answered ABORTED",
            code == SC.ABORTED, str(result))
    t.check("nothing was mounted", mounts.mountinfo_line(tg) is None)


def main():
    mounts.require_root()
    t = Checks()
    work = tempfile.mkdtemp(prefix="csi-conc.")
    try:
        with mvreg.Registry(os.path.join(work, "reg")) as reg:
            digest = push_big(reg, work, "models/big")
            digest2 = push_big(reg, work, "models/big2")
            push_big(reg, work, "models/big3")
            digest4 = push_big(reg, work, "models/big4", tag="latest")
            with Nginx(work, reg.addr, redirect_blobs=True, storage_rate=RATE) as ng:
                d = Daemon(work, os.path.join(work, "cache"), node_id="conc-node",
                           args=["--publish-timeout", str(BUDGET)])
                d.start()
                try:
                    sixteen_at_once(t, d, reg, ng, work, digest)
                    budget_and_retry(t, d, ng, work, digest2)
                    spellings_coalesce(t, d, ng, work, digest4)
                    sigterm_during_pull(t, d, ng, work)
                finally:
                    d.stop()
                    if t.failed:
                        print(d.read_log()[-6000:])
    finally:
        mounts.remove_tree(work)
    return t.summary()


if __name__ == "__main__":
    sys.exit(main())
