"""modelpull pull/ls/rm/gc/verify against a real docker-registry: trees
are byte-identical, a second pull is a cache hit with no blob GET, two
models sharing a big layer download it once and the disk (distinct inodes)
grows only by the new bytes, 8 concurrent pulls of one model fetch each
blob once (bytes counted in the registry's access log), filters skip
unselected layers, policy Never fails cleanly, verify finds corruption."""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from checks import Checks  # noqa: E402
import logs  # noqa: E402
from mvfetch import random_file  # noqa: E402
from mvreg import Registry  # noqa: E402
from util import BUILD_DIR, sha256_file  # noqa: E402

LONG = os.environ.get("MV_LONG") == "1"
SHARED = (256 if LONG else 64) << 20
MODELPULL = os.path.join(BUILD_DIR, "modelpull")


def modelpull(cache, *args, timeout=300):
    env = dict(os.environ, DOCKER_CONFIG="/nonexistent-modelvol-test")
    p = subprocess.run([MODELPULL, "--cache", cache] +
                       [str(a) for a in args], capture_output=True, text=True, env=env,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def served(reg):
    """Blob bytes the registry sent, by digest."""
    return logs.blob_bytes_by_digest(reg.access_log())


def disk_use(path):
    """Bytes of disk used under path, each inode once (hard links are free)."""
    seen, total = set(), 0
    for root, dirs, files in os.walk(path):
        for f in files:
            st = os.lstat(os.path.join(root, f))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def tree_matches(t, tree, files):
    ok = True
    for rel, src in files.items():
        p = os.path.join(tree, rel)
        if isinstance(src, str):
            ok &= os.path.exists(p) and sha256_file(p) == sha256_file(src)
        else:
            ok &= os.path.exists(p) and open(p, "rb").read() == src
    return ok


def main():
    if not os.access(MODELPULL, os.X_OK):
        print(f"modelpull not built at {MODELPULL}")
        sys.exit(1)
    t = Checks()
    tmp = tempfile.mkdtemp(prefix="modelvol-cache-pull.")
    try:
        shared = os.path.join(tmp, "shared.bin")
        shared_d = random_file(shared, SHARED)
        extra = os.path.join(tmp, "extra.bin")
        extra_d = random_file(extra, 4 << 20)
        big = os.path.join(tmp, "big.bin")
        big_d = random_file(big, 40 << 20)
        mid = os.path.join(tmp, "mid.bin")
        mid_d = random_file(mid, 3 << 20)
        cache = os.path.join(tmp, "cache")
        with Registry(tmp=os.path.join(tmp, "reg")) as reg:
            fa = {"model.safetensors": shared, "config.json": b'{"model":"a"}'}
            fb = {"model.safetensors": shared, "extra/adapter.bin": extra,
                  "config.json": b'{"model":"b"}'}
            fc = {"big.safetensors": big, "mid.bin": mid, "tok/tokenizer.json": b'{"t":1}'}
            reg.push_model("models/a", "v1", fa)
            reg.push_model("models/b", "v1", fb)
            reg.push_model("models/c", "v1", fc)
            ra, rb, rc_ = (f"{reg.addr}/models/{n}:v1" for n in "abc")

            # ---- pull, byte-identical, hit -----------------------------------
            rc, out, err = modelpull(cache, "pull", "--chunk-size", "8M", "--progress=none", ra)
            tree_a = out.strip().splitlines()[-1] if out.strip() else ""
            t.check("pull a succeeds", rc == 0, err)
            t.check("last stdout line is the tree", os.path.isdir(tree_a), out)
            t.check("tree a is byte-identical", tree_matches(t, tree_a, fa))
            before = served(reg)
            rc, out, err = modelpull(cache, "pull", "--progress=none", ra)
            t.check("second pull prints the same tree",
                    rc == 0 and out.strip().splitlines()[-1] == tree_a, err)
            t.check("second pull fetched no blob", served(reg) == before)

            # ---- dedupe: b shares a's big layer ---------------------------------
            disk0 = disk_use(cache)
            rc, out, err = modelpull(cache, "pull", "--progress=none", rb)
            tree_b = out.strip().splitlines()[-1] if out.strip() else ""
            t.check("pull b succeeds", rc == 0, err)
            t.check("tree b is byte-identical", tree_matches(t, tree_b, fb))
            s = served(reg)
            t.check("shared layer downloaded once in total",
                    SHARED <= s.get(shared_d, 0) < SHARED + 65536, str(s.get(shared_d)))
            t.check("new layer downloaded once", 4 << 20 <= s.get(extra_d, 0) < (4 << 20) + 65536)
            grown = disk_use(cache) - disk0
            t.check("disk grew only by the new bytes", (4 << 20) <= grown < (4 << 20) + (1 << 20),
                    f"grew {grown}")
            sa = os.stat(os.path.join(tree_a, "model.safetensors"))
            sb = os.stat(os.path.join(tree_b, "model.safetensors"))
            t.check("both trees link one inode", sa.st_ino == sb.st_ino)

            # ---- 8 concurrent pulls -------------------------------------------------
            cache8 = os.path.join(tmp, "cache8")
            env = dict(os.environ, DOCKER_CONFIG="/nonexistent-modelvol-test")
            procs = [subprocess.Popen([MODELPULL, "--cache", cache8, "pull", "--chunk-size", "4M",
                                       "--connections", "4", "--progress=none", rc_],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=env) for _ in range(8)]
            results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
            t.check("8 concurrent pulls succeed", all(r[2] == 0 for r in results),
                    " | ".join(r[1] for r in results if r[2]))
            trees = {r[0].strip().splitlines()[-1] for r in results if r[0].strip()}
            t.check("8 pulls agree on one tree", len(trees) == 1, str(trees))
            if len(trees) == 1:
                t.check("concurrent tree is byte-identical", tree_matches(t, trees.pop(), fc))
            s = served(reg)
            for name, d, size in (("big", big_d, 40 << 20), ("mid", mid_d, 3 << 20)):
                t.check(f"{name} blob downloaded once by 8 pulls",
                        size <= s.get(d, 0) < size + 65536, str(s.get(d)))

            # ---- two models sharing a layer, pulled at once ------------------------
            cache2 = os.path.join(tmp, "cache2")
            before = served(reg)
            procs = [subprocess.Popen([MODELPULL, "--cache", cache2, "pull", "--chunk-size", "8M",
                                       "--progress=none", ref], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=env)
                     for ref in (ra, rb, ra, rb)]
            results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
            t.check("concurrent pulls of a and b succeed", all(r[2] == 0 for r in results),
                    " | ".join(r[1] for r in results if r[2]))
            delta = served(reg).get(shared_d, 0) - before.get(shared_d, 0)
            t.check("their shared layer is downloaded once", SHARED <= delta < SHARED + 65536,
                    str(delta))
            t.check("both trees are byte-identical",
                    all(r[2] == 0 and tree_matches(t, r[0].strip().splitlines()[-1],
                                                   fa if i % 2 == 0 else fb)
                        for i, r in enumerate(results)))

            # ---- filters: excluded layers are not downloaded -----------------------
            cachef = os.path.join(tmp, "cachef")
            before = served(reg)
            rc, out, err = modelpull(cachef, "pull", "--include", "*.json", "--include",
                                     "*.bin", "--exclude", "mid.*", "--progress=none", rc_)
            treef = out.strip().splitlines()[-1] if out.strip() else ""
            t.check("filtered pull succeeds", rc == 0, err)
            t.check("filtered tree holds only selected files",
                    sorted(os.listdir(treef)) == ["tok"] if treef else False,
                    str(os.listdir(treef) if treef else None))
            after = served(reg)
            t.check("unselected layers not downloaded",
                    after.get(big_d) == before.get(big_d) and after.get(mid_d) == before.get(mid_d))

            # ---- policy Never ---------------------------------------------------------
            rc, out, err = modelpull(os.path.join(tmp, "empty"), "pull", "--policy", "Never", ra)
            t.check("Never with nothing cached fails with one line",
                    rc != 0 and "Never" in err and len(err.strip().splitlines()) == 1, err)
            rc, out, err = modelpull(cache, "pull", "--policy", "Never", ra)
            t.check("Never with the tag cached succeeds", rc == 0 and out.strip().endswith("/root"),
                    err)
            rc, out, err = modelpull(cache, "pull", f"{reg.addr}/models/nope:v1")
            t.check("unknown model: one-line error naming it",
                    rc != 0 and "models/nope" in err and len(err.strip().splitlines()) == 1, err)

            # ---- ls / verify / rm / gc ------------------------------------------------
            rc, out, err = modelpull(cache, "ls")
            t.check("ls lists both models", rc == 0 and ra in out and rb in out, out + err)
            rc, out, err = modelpull(cache, "verify")
            t.check("verify is clean", rc == 0 and "0 corrupt" in out, out + err)
            victim = os.path.join(tree_b, "config.json")
            os.chmod(victim, 0o644)
            with open(victim, "r+b") as f:
                f.write(b"X")
            rc, out, err = modelpull(cache, "verify")
            t.check("verify finds the corrupt blob and exits non-zero",
                    rc == 1 and "1 corrupt" in out and "quarantine" in err, out + err)
            rc, out, err = modelpull(cache, "pull", "--progress=none", rb)
            t.check("pull after quarantine restores the model",
                    rc == 0 and tree_matches(t, out.strip().splitlines()[-1], fb), err)
            rc, out, err = modelpull(cache, "rm", rb)
            t.check("rm removes b", rc == 0, err)
            rc, out, err = modelpull(cache, "ls")
            t.check("ls no longer shows b", rc == 0 and rb not in out and ra in out, out)
            t.check("a's shared blob survives rm of b", tree_matches(t, tree_a, fa))
            rc, out, err = modelpull(cache, "rm", rb)
            t.check("rm of a missing model fails", rc != 0 and "not in the cache" in err, err)
            rc, out, err = modelpull(cache, "gc", "--max-size", "0")
            t.check("gc --max-size 0 empties the cache", rc == 0 and disk_use(
                os.path.join(cache, "blobs")) == 0, out + err)
            rc, out, err = modelpull(cache, "ls")
            t.check("ls is empty after gc", rc == 0 and ra not in out, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
