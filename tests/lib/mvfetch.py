"""mvfetch.py — for the puller's integration tests: runs the test-only
tests/tools/mvfetch driver, reads the counts it prints, makes random blobs
and writes a docker config.json."""
import hashlib
import os
import subprocess
import sys

from util import BUILD_DIR


def binary():
    path = os.environ.get("MVFETCH") or os.path.join(BUILD_DIR, "tests", "mvfetch")
    if not os.access(path, os.X_OK):
        print(f"mvfetch not built at {path}", file=sys.stderr)
        sys.exit(1)
    return path


def run(args, env=None, timeout=180):
    e = dict(os.environ)
    e.setdefault("DOCKER_CONFIG", "/nonexistent-modelvol-test")
    if env:
        e.update(env)
    p = subprocess.run([binary()] + [str(a) for a in args], capture_output=True, text=True,
                       env=e, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def stats(out):
    """{"downloaded": N, "resumed": N, "origin": N, "mirror": N, "retries": N}"""
    d = {}
    for line in out.splitlines():
        k, _, v = line.partition(" ")
        if v.isdigit():
            d[k] = int(v)
    return d


def random_file(path, size):
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 << 20)
            b = os.urandom(n)
            h.update(b)
            f.write(b)
            left -= n
    return "sha256:" + h.hexdigest()


def write_docker_config(dirpath, auths):
    import json
    os.makedirs(dirpath, exist_ok=True)
    with open(os.path.join(dirpath, "config.json"), "w") as f:
        json.dump({"auths": auths}, f)
    return dirpath


