"""test_pull_scheduler.py — the node's pull scheduler (puller/budget.c) in
modelvol-csi and modelpull prewarm, against a real docker-registry behind
real nginx: blob GETs are redirected to a storage server block that caps
each connection (limit_rate), so pulls last seconds. Root, real mounts.

  * per-host budget: with --connections-per-host 4, three publishes of
    different models never open more than 4 connections to the storage
    host (sampled with ss), use all 4, queue in arrival order (queue length
    and wait metrics), finish in that order with every file intact, and hold
    no connection afterwards;
  * side by side: storage that caps each connection (more tightly, in its
    own nginx) leaves the link idle, so a throughput probe is kept and two
    pulls run at once;
  * prewarm yields: `modelpull prewarm` on the plugin's cache keeps at most
    4 connections to storage while a publish is in flight, and takes more
    again once it ends."""
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import mounts  # noqa: E402
from csiclient import Checks  # noqa: E402
from csidaemon import Daemon  # noqa: E402
import mvreg  # noqa: E402
from nginx import Nginx  # noqa: E402
import util  # noqa: E402
from util import BUILD_DIR, stop_process, wait_for  # noqa: E402

MIB = 1024 * 1024
MODELPULL = os.path.join(BUILD_DIR, "modelpull")


def metric(text, name, labels=""):
    """The value of one sample in a Prometheus text page, or None."""
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def push(reg, work, repo, size):
    path = os.path.join(work, repo.replace("/", "_") + ".safetensors")
    with open(path, "wb") as f:
        for _ in range(size // MIB):
            f.write(os.urandom(MIB))
    reg.push_model(repo, "v1", {"model.safetensors": path, "config.json": b'{"m": "%s"}' %
                                repo.encode()})
    return util.sha256_file(path)


class Sampler:
    """Counts established TCP connections to a port, by owning process name,
    every 50 ms on a thread (pacing between samples, not synchronisation)."""

    def __init__(self, port):
        self.port = port
        self.samples = []  # (monotonic, {process: count})
        self.stop_ev = threading.Event()
        self.th = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop_ev.is_set():
            out = subprocess.run(["ss", "-Htnp", "state", "established",
                                  f"( dport = :{self.port} )"], capture_output=True, text=True,
                                 timeout=10).stdout
            counts = {}
            for line in out.splitlines():
                m = re.search(r'users:\(\("([^"]+)"', line)
                name = m.group(1) if m else "?"
                counts[name] = counts.get(name, 0) + 1
            self.samples.append((time.monotonic(), counts))
            self.stop_ev.wait(0.05)

    def __enter__(self):
        self.th.start()
        return self

    def __exit__(self, *a):
        self.stop_ev.set()
        self.th.join(timeout=10)

    def between(self, t0, t1, proc):
        return [c.get(proc, 0) for t, c in self.samples if t0 <= t <= t1]

    def now(self, proc):
        return self.samples[-1][1].get(proc, 0) if self.samples else 0


def publish_thread(client, target, ref, results, key):
    def run():
        try:
            results[key] = client.publish(target, ref, timeout=300)
            results[key] = "ok"
            results[key + ":done"] = time.monotonic()
        except Exception as e:  # noqa: BLE001 - reported by the caller
            results[key] = e
    os.makedirs(os.path.dirname(target), exist_ok=True)
    th = threading.Thread(target=run)
    th.start()
    return th


def per_host_budget(t, reg, ng, work):
    models = {f"models/q{i}": push(reg, work, f"models/q{i}", 64 * MIB) for i in range(3)}
    cache = os.path.join(work, "cache-budget")
    host = f"127.0.0.1:{ng.storage_port}"
    with Daemon(work, cache, args=["--connections-per-host", "4"]) as d, \
            Sampler(ng.storage_port) as ss:
        results, threads, targets = {}, [], {}

        def gauge(name, labels=""):
            return metric(d.metrics(), name, labels) or 0
        # Arrivals one after another: the first holds the whole host budget
        # (its 64 MiB blob is four 16 MiB ranges) before the second comes,
        # and each later one is in the queue before the next.
        arrived = [lambda: gauge("modelvol_pull_connections_in_use", f'{{host="{host}"}}') == 4,
                   lambda: gauge("modelvol_pull_queue_length") == 1,
                   lambda: gauge("modelvol_pull_queue_length") == 2]
        for i, repo in enumerate(models):
            targets[repo] = os.path.join(work, "pods", f"q{i}", "mount")
            threads.append(publish_thread(d.client, targets[repo], f"{ng.addr}/{repo}:v1",
                                          results, repo))
            t.check(f"pull {i} took its place", wait_for(arrived[i], 60))
        queued = gauge("modelvol_pull_queue_length")
        t.check("the later pulls wait in the queue", queued == 2, str(queued))
        in_use = []
        while any(th.is_alive() for th in threads):
            v = metric(d.metrics(), "modelvol_pull_connections_in_use", f'{{host="{host}"}}')
            in_use.append(v or 0)
            time.sleep(0.1)  # pacing between samples
        for th in threads:
            th.join()
        page = d.metrics()
        counts = [c.get("modelvol-csi", 0) for _, c in ss.samples]
        t.check("never more than 4 connections to the storage host (ss)", max(counts) <= 4,
                f"max {max(counts)} of {len(counts)} samples")
        t.check("the budget was used: 4 connections at once", max(counts) == 4, str(max(counts)))
        t.check("the metric never showed more than 4 in use", max(in_use) <= 4, str(max(in_use)))
        t.check("all three published", all(results.get(r) == "ok" for r in models),
                repr({r: results.get(r) for r in models}))
        done = [results.get(r + ":done", 0) for r in models]
        t.check("they finished in arrival order", done == sorted(done), str(done))
        waits = metric(page, "modelvol_pull_wait_seconds_count")
        t.check("two pulls waited for their first connection", waits == 2, str(waits))
        t.check("the waits add up to seconds",
                (metric(page, "modelvol_pull_wait_seconds_sum") or 0) > 1.0,
                str(metric(page, "modelvol_pull_wait_seconds_sum")))
        for repo, digest in models.items():
            got = util.sha256_file(os.path.join(targets[repo], "model.safetensors"))
            t.check(f"{repo}: the file is intact", got == digest)
        after = metric(page, "modelvol_pull_connections_in_use", f'{{host="{host}"}}')
        t.check("no connection held after the pulls", after == 0, str(after))
        t.check("nothing queued or running after", metric(page, "modelvol_pull_queue_length") == 0
                and metric(page, "modelvol_pulls_running") == 0)
        for repo in models:
            d.client.unpublish(targets[repo])
            t.check(f"{repo}: unpublished", mounts.mountinfo_line(targets[repo]) is None)


def side_by_side(t, reg, work):
    repos = {f"models/s{i}": push(reg, work, f"models/s{i}", 64 * MIB) for i in range(2)}
    cache = os.path.join(work, "cache-side")
    # Storage slow enough per connection that the node, not the CPU of a
    # loaded test machine, decides whether more connections pay: four carry
    # 8 MiB/s, and the first pull lasts 8 s, room for several probes.
    with Nginx(work, reg.addr, redirect_blobs=True, storage_rate="2m") as ng, \
            Daemon(work, cache, args=["--connections", "4"]) as d:
        results, threads = {}, []
        for i, repo in enumerate(repos):
            tg = os.path.join(work, "pods", f"s{i}", "mount")
            threads.append(publish_thread(d.client, tg, f"{ng.addr}/{repo}:v1", results, repo))
        both = []
        while any(th.is_alive() for th in threads):
            both.append(metric(d.metrics(), "modelvol_pulls_running") or 0)
            time.sleep(0.1)  # pacing between samples
        for th in threads:
            th.join()
        page = d.metrics()
        kept = metric(page, "modelvol_pull_probes_total", '{outcome="kept"}')
        dropped = metric(page, "modelvol_pull_probes_total", '{outcome="dropped"}')
        t.check("behind storage that caps each connection, a probe was kept", (kept or 0) >= 1,
                f"kept {kept}, dropped {dropped}")
        t.check("the two pulls ran side by side", max(both) == 2, str(max(both)))
        t.check("both published", all(results.get(r) == "ok" for r in repos), repr(results))
        for i, repo in enumerate(repos):
            d.client.unpublish(os.path.join(work, "pods", f"s{i}", "mount"))


def prewarm_yields(t, reg, ng, work):
    push(reg, work, "models/warm", 384 * MIB)
    push(reg, work, "models/hot", 48 * MIB)
    cache = os.path.join(work, "cache-yield")
    listfile = os.path.join(work, "prewarm.list")
    with open(listfile, "w") as f:
        f.write(f"{ng.addr}/models/warm:v1\n")
    with Daemon(work, cache) as d, Sampler(ng.storage_port) as ss:
        err = open(os.path.join(work, "prewarm.err"), "w")
        pw = subprocess.Popen([MODELPULL, "--cache", cache, "prewarm", "-f", listfile], stderr=err)
        try:
            wait_for(lambda: ss.now("modelpull") > 4, 60,
                     message="prewarm never opened more than 4 connections")
            t.check("alone, prewarm uses more than 4 connections", ss.now("modelpull") > 4)
            results = {}
            tg = os.path.join(work, "pods", "hot", "mount")
            th = publish_thread(d.client, tg, f"{ng.addr}/models/hot:v1", results, "hot")
            started = time.monotonic()
            # The limit is asked every 250 ms and applied on the next loop.
            wait_for(lambda: ss.now("modelpull") <= 4 or not th.is_alive(), 10)
            settled = time.monotonic()
            th.join(timeout=300)
            ended = results.get("hot:done", time.monotonic())
            during = ss.between(settled, ended - 0.3, "modelpull")
            t.check("the publish succeeded", results.get("hot") == "ok", repr(results.get("hot")))
            t.check("prewarm yielded within 2 s of the publish", settled - started < 2.0,
                    f"{settled - started:.2f}s")
            t.check("while the publish ran, prewarm held at most 4 connections",
                    during and max(during) <= 4, f"{during[:40]}")
            if pw.poll() is None:
                wait_for(lambda: ss.now("modelpull") > 4 or pw.poll() is not None, 30)
            back = [c for t_, c in ss.samples if t_ > ended]
            t.check("after the publish, prewarm took more than 4 again",
                    any(c.get("modelpull", 0) > 4 for c in back))
            rc = pw.wait(timeout=300)
            t.check("prewarm finished", rc == 0, f"exit {rc}")
            d.client.unpublish(tg)
        finally:
            if pw.poll() is None:
                stop_process(pw, secs=10)
            err.close()


def main():
    if os.geteuid() != 0:
        print("SKIP: needs root (bind mounts)")
        sys.exit(77)
    t = Checks()
    with tempfile.TemporaryDirectory(prefix="mv-sched-") as work, \
            mvreg.Registry(work) as reg, \
            Nginx(work, reg.addr, redirect_blobs=True, storage_rate="4m") as ng:
        per_host_budget(t, reg, ng, work)
        side_by_side(t, reg, work)
        prewarm_yields(t, reg, ng, work)
    t.done()


if __name__ == "__main__":
    main()
