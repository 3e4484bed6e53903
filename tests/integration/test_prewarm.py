"""test_prewarm.py — `modelpull prewarm` against a real docker-registry:

- pull + pin: every listed model is pulled and pinned with owner
  "prewarm:<reference>"; comments, blank lines, surrounding blanks, CRLF
  line ends and duplicates are ignored;
  the pinned tree holds the model's bytes;
- unpin on removal: a reference that leaves the list loses its pin;
- a bad reference (unparsable, or missing from the registry) makes the run
  exit non-zero and is named on stderr, while the good ones are still pinned;
- --watch follows a ConfigMap-style update (the kubelet's ..data symlink
  swap) and an in-place rewrite of a plain file, then exits 0 on SIGTERM;
- --watch retries a failed reference (--retry) without a change to the list;
- SIGTERM while a pull hangs cancels it (cooperatively, not by SIGKILL)
  and exits 0;
- --policy Always follows a moved tag and unpins the old tree.

Pins are observed with tests/tools/mvpins (cache_pins_list); what prewarm
says is read from its logfmt lines on stderr, the node plugin's format. Run
with Debian's /usr/bin/python3."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mvreg  # noqa: E402
import logs  # noqa: E402
from util import BUILD_DIR, stop_process, wait_for  # noqa: E402

MODELPULL = os.path.join(BUILD_DIR, "modelpull")
# tests/tools/*.c build into the tests/ subdirectory of the build tree.
MVPINS = next((p for p in (os.path.join(BUILD_DIR, "tests", "mvpins"),
                           os.path.join(BUILD_DIR, "mvpins")) if os.access(p, os.X_OK)),
              os.path.join(BUILD_DIR, "tests", "mvpins"))
PREFIX = "prewarm:"

from checks import Checks  # noqa: E402

T = Checks()


def check(name, cond, detail=""):
    return T.check(name, cond, str(detail)[:2000] if detail else "")


LOG_LINE = re.compile(r'^ts=\S+ level=(info|warn|error) event=[a-z_]+( |$)')


def logged(text, event, **fields):
    """True when text holds a line of event whose fields have these values."""
    return any(all(r.get(k) == v for k, v in fields.items()) for r in logs.log_events(text, event))


def pins(cache):
    r = subprocess.run([MVPINS, cache, PREFIX], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"mvpins failed: {r.stderr}")
    out = {}
    for line in r.stdout.splitlines():
        tree, owner = line.split(" ", 1)
        out[owner] = tree
    return out


def prewarm(cache, listfile, *extra, timeout=180):
    return subprocess.run([MODELPULL, "--cache", cache, "prewarm", "-f", listfile, *extra],
                          capture_output=True, text=True, timeout=timeout)


def tree_of(cache, ref):
    """The tree path `modelpull pull` prints last (IfNotPresent: from the cache)."""
    r = subprocess.run([MODELPULL, "--cache", cache, "pull", "--plain-http", ref],
                       capture_output=True, text=True, timeout=120)
    lines = r.stdout.strip().splitlines()
    return lines[-1] if r.returncode == 0 and lines else None


class ConfigMapDir:
    """A directory laid out like a mounted ConfigMap: models.txt is a symlink
    to ..data/models.txt, and ..data points at a timestamped directory that an
    update replaces by renaming a new symlink over it."""

    def __init__(self, path):
        self.path = path
        self.n = 0
        os.makedirs(path)
        os.symlink("..data/models.txt", os.path.join(path, "models.txt"))

    @property
    def file(self):
        return os.path.join(self.path, "models.txt")

    def update(self, text):
        self.n += 1
        ts = f"..2026_11_23_10_00_00.{self.n:04d}"
        os.makedirs(os.path.join(self.path, ts))
        with open(os.path.join(self.path, ts, "models.txt"), "w") as f:
            f.write(text)
        data = os.path.join(self.path, "..data")
        old = os.readlink(data) if os.path.islink(data) else None
        tmp = os.path.join(self.path, "..data_tmp")
        os.symlink(ts, tmp)
        os.rename(tmp, data)
        if old:
            shutil.rmtree(os.path.join(self.path, old))


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def model_files(tag):
    return {
        "config.json": f'{{"model": "{tag}"}}'.encode(),
        "model.safetensors": os.urandom(96 * 1024) + tag.encode(),
    }


def same_tree_contents(tree, files):
    if not tree:
        return False
    for rel, data in files.items():
        p = os.path.join(tree, rel)
        if not os.path.isfile(p):
            return False
        with open(p, "rb") as f:
            if f.read() != data:
                return False
    return True


def test_pull_pin_unpin_bad(reg, tmp):
    cache = os.path.join(tmp, "cache1")
    files1, files2 = model_files("one"), model_files("two")
    reg.push_model("models/one", "v1", files1)
    reg.push_model("models/two", "v1", files2)
    m1, m2 = f"{reg.addr}/models/one:v1", f"{reg.addr}/models/two:v1"
    lst = os.path.join(tmp, "list1.txt")

    write(lst, f"# models to keep warm\n\n  {m1}   # the first\n\t{m2}\r\n{m1}\n")
    r = prewarm(cache, lst, "--plain-http", "--parallel", "2")
    check("pull+pin: exit 0", r.returncode == 0, r.stderr)
    p = pins(cache)
    check("pull+pin: both references pinned with owner prewarm:<reference>",
          set(p) == {PREFIX + m1, PREFIX + m2}, p)
    t1 = tree_of(cache, m1)
    check("pull+pin: the pinned tree holds the model's bytes", same_tree_contents(t1, files1), t1)
    check("pull+pin: the pin names the tree `pull` resolves to",
          t1 is not None and p.get(PREFIX + m1, "-").split(":")[-1] in t1, (t1, p))

    write(lst, f"{m1}\n")
    r = prewarm(cache, lst, "--plain-http")
    check("unpin: exit 0", r.returncode == 0, r.stderr)
    p2 = pins(cache)
    check("unpin: the removed reference lost its pin, the other kept its own",
          p2 == {PREFIX + m1: p[PREFIX + m1]}, p2)
    check("unpin: the run says what it unpinned", logged(r.stderr, "unpinned", reference=m2),
          r.stderr)

    missing = f"{reg.addr}/models/missing:v1"
    write(lst, f"{m1}\n{missing}\nNot A//Reference\n")
    r = prewarm(cache, lst, "--plain-http")
    check("bad reference: exit non-zero", r.returncode != 0, r.returncode)
    check("bad reference: the missing model is named on stderr", missing in r.stderr, r.stderr)
    check("bad reference: the unparsable line is named with its line number",
          logged(r.stderr, "invalid_reference", list=lst, line="3"), r.stderr)
    check("bad reference: each error is one line",
          all(LOG_LINE.match(line) for line in r.stderr.strip().splitlines()), r.stderr)
    check("bad reference: the good reference stays pinned", pins(cache) == {PREFIX + m1: p[PREFIX + m1]})

    r = subprocess.run([MODELPULL, "--cache", cache, "prewarm", "-f", lst, "--parallel", "0"],
                       capture_output=True, text=True, timeout=30)
    check("usage error: --parallel 0 exits 2", r.returncode == 2, r.stderr)
    r = prewarm(cache, os.path.join(tmp, "no-such-list.txt"))
    check("missing list file: exit 1 naming the file",
          r.returncode == 1 and "no-such-list.txt" in r.stderr, r.stderr)


def test_watch(reg, tmp):
    files_a, files_b = model_files("watch-a"), model_files("watch-b")
    reg.push_model("models/watch-a", "v1", files_a)
    reg.push_model("models/watch-b", "v1", files_b)
    ma, mb = f"{reg.addr}/models/watch-a:v1", f"{reg.addr}/models/watch-b:v1"

    # A ConfigMap update: the kubelet swaps the ..data symlink.
    cache = os.path.join(tmp, "cache-watch")
    cm = ConfigMapDir(os.path.join(tmp, "configmap"))
    cm.update(f"{ma}\n")
    log = open(os.path.join(tmp, "watch.log"), "w")
    proc = subprocess.Popen([MODELPULL, "--cache", cache, "prewarm", "-f", cm.file, "--watch",
                             "--plain-http"], stdout=log, stderr=subprocess.STDOUT)
    try:
        ok = wait_for(lambda: set(pins(cache)) == {PREFIX + ma}, 60)
        check("watch: the initial list is pinned", ok, pins(cache))
        cm.update(f"# swapped\n{mb}\n")
        ok = wait_for(lambda: set(pins(cache)) == {PREFIX + mb}, 60)
        check("watch: a ConfigMap symlink swap is followed (new pinned, old unpinned)", ok,
              pins(cache))
        check("watch: still running after the reload", proc.poll() is None)
    finally:
        rc = stop_process(proc)
        log.close()
    check("watch: SIGTERM exits 0", rc == 0, rc)

    # A plain file rewritten in place (an editor, a hostPath list).
    cache = os.path.join(tmp, "cache-watch2")
    d = os.path.join(tmp, "plain")
    os.makedirs(d)
    lst = os.path.join(d, "models.txt")
    write(lst, f"{ma}\n")
    log = open(os.path.join(tmp, "watch2.log"), "w")
    proc = subprocess.Popen([MODELPULL, "--cache", cache, "prewarm", "-f", lst, "--watch",
                             "--plain-http", "--parallel", "1"], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        check("watch (plain file): the initial list is pinned",
              wait_for(lambda: set(pins(cache)) == {PREFIX + ma}, 60), pins(cache))
        write(lst, f"{ma}\n{mb}\n")
        check("watch (plain file): an in-place rewrite adds the new reference",
              wait_for(lambda: set(pins(cache)) == {PREFIX + ma, PREFIX + mb}, 60), pins(cache))
        write(lst, "")
        check("watch (plain file): an emptied list unpins everything",
              wait_for(lambda: pins(cache) == {}, 60), pins(cache))
    finally:
        rc = stop_process(proc)
        log.close()
    check("watch (plain file): SIGTERM exits 0", rc == 0, rc)


def test_retry(reg, tmp):
    """Under --watch a reference that failed is retried without any change
    to the list: here the model is pushed only after the first pass."""
    cache = os.path.join(tmp, "cache-retry")
    reg.push_model("models/early", "v1", model_files("early"))
    early, late = f"{reg.addr}/models/early:v1", f"{reg.addr}/models/late:v1"
    d = os.path.join(tmp, "retry")
    os.makedirs(d)
    lst = os.path.join(d, "models.txt")
    write(lst, f"{early}\n{late}\n")
    log_path = os.path.join(tmp, "retry.log")
    log = open(log_path, "w")
    proc = subprocess.Popen([MODELPULL, "--cache", cache, "prewarm", "-f", lst, "--watch",
                             "--plain-http", "--retry", "1"], stdout=log, stderr=subprocess.STDOUT)
    try:
        first = wait_for(lambda: logged(open(log_path).read(), "cycle_done", references="2",
                                        failed="1"), 60)
        check("retry: the first pass pins what exists and counts the missing one",
              first and set(pins(cache)) == {PREFIX + early}, open(log_path).read()[-2000:])
        reg.push_model("models/late", "v1", model_files("late"))
        check("retry: the late model is pinned by a retry, the list unchanged",
              wait_for(lambda: set(pins(cache)) == {PREFIX + early, PREFIX + late}, 60),
              open(log_path).read()[-2000:])
    finally:
        rc = stop_process(proc)
        log.close()
    check("retry: SIGTERM exits 0", rc == 0, rc)


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers: a registry that
    hangs mid-pull, which no real server does on purpose."""

    def __init__(self):
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.done = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.done:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except OSError:
                continue

    def all_closed_by_peer(self, secs=10):
        """True when every accepted connection has been closed by the client."""
        deadline = time.monotonic() + secs
        for c in list(self.conns):
            c.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                while c.recv(65536):
                    pass
            except OSError:
                return False
        return True

    def close(self):
        self.done = True
        self.thread.join(timeout=5)
        for c in self.conns:
            c.close()
        self.sock.close()


def test_sigterm_mid_pull(tmp):
    """SIGTERM while a pull hangs: prewarm cancels it and exits 0, bounded,
    and leaves no pull process behind (its connection gets closed)."""
    srv = SilentServer()
    cache = os.path.join(tmp, "cache-hang")
    d = os.path.join(tmp, "hang")
    os.makedirs(d)
    lst = os.path.join(d, "models.txt")
    write(lst, f"127.0.0.1:{srv.port}/models/hang:v1\n")
    log_path = os.path.join(tmp, "hang.log")
    log = open(log_path, "w")
    proc = subprocess.Popen([MODELPULL, "--cache", cache, "prewarm", "-f", lst, "--watch"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        check("sigterm: the pull reached the hanging registry", wait_for(lambda: srv.conns, 30))
        rc = stop_process(proc, secs=40)
        out = open(log_path).read()
        check("sigterm: exits 0 while a pull hangs", rc == 0, rc)
        check("sigterm: the pull was cancelled, not killed",
              "cancelled" in out and "killed by signal" not in out, out[-1500:])
        check("sigterm: the pull process is gone (its connection closed)", srv.all_closed_by_peer())
    finally:
        log.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        srv.close()


def test_tag_moved(reg, tmp):
    cache = os.path.join(tmp, "cache-tag")
    reg.push_model("models/moving", "latest", model_files("moving-1"))
    ref = f"{reg.addr}/models/moving:latest"
    lst = os.path.join(tmp, "list-tag.txt")
    write(lst, f"{ref}\n")
    r = prewarm(cache, lst, "--plain-http")
    first = pins(cache).get(PREFIX + ref)
    check("tag moved: first pass pins a tree", r.returncode == 0 and first, r.stderr)

    reg.push_model("models/moving", "latest", model_files("moving-2"))
    r = prewarm(cache, lst, "--plain-http")
    check("tag moved: IfNotPresent keeps the cached tree",
          r.returncode == 0 and pins(cache) == {PREFIX + ref: first}, (r.stderr, pins(cache)))
    r = prewarm(cache, lst, "--plain-http", "--policy", "Always")
    now = pins(cache)
    check("tag moved: Always pins the new tree and unpins the old one",
          r.returncode == 0 and set(now) == {PREFIX + ref} and now[PREFIX + ref] != first,
          (r.stderr, now, first))
    check("tag moved: the run says why it unpinned",
          logged(r.stderr, "unpinned", reference=ref, reason="tag-moved"), r.stderr)


def main():
    for exe in (MODELPULL, MVPINS):
        if not os.access(exe, os.X_OK):
            print(f"SKIP: {exe} is not built (set MV_BUILD_DIR)")
            return 77
    if not shutil.which("docker-registry"):
        print("SKIP: docker-registry is not installed (scripts/install-deps)")
        return 77
    tmp = tempfile.mkdtemp(prefix="modelvol-prewarm.")
    try:
        with mvreg.Registry(os.path.join(tmp, "registry")) as reg:
            test_pull_pin_unpin_bad(reg, tmp)
            test_watch(reg, tmp)
            test_retry(reg, tmp)
            test_sigterm_mid_pull(tmp)
            test_tag_moved(reg, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return T.summary()


if __name__ == "__main__":
    sys.exit(main())
