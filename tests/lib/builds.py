"""builds.py — the two builds a side-by-side benchmark compares: this tree
in release mode (build/release/) and an earlier commit, checked out as a
detached git worktree under build/compare/<rev>/src and built beside it,
as bench/compare/run does. Benchmarks only; no test uses it."""
import os
import subprocess
import sys

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _sh(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def build(src, out, targets):
    """Configures src into out (Release) and builds targets; returns out."""
    _sh("cmake", "-S", src, "-B", out, "-DCMAKE_BUILD_TYPE=Release")
    _sh("cmake", "--build", out, "-j", "2", "--target", *targets)
    return out


def this_build(targets):
    return build(SRC, os.path.join(SRC, "build", "release"), targets)


def base_build(rev, targets, what="bench"):
    """(short hash, build dir) of rev, built for targets."""
    full = subprocess.run(["git", "-C", SRC, "rev-parse", "--verify", rev + "^{commit}"],
                          capture_output=True, text=True)
    if full.returncode != 0:
        sys.exit(f"{what}: {rev!r} is not a commit")
    short = full.stdout.strip()[:12]
    root = os.path.join(SRC, "build", "compare", short)
    tree = os.path.join(root, "src")
    if not os.path.isdir(tree):
        os.makedirs(root, exist_ok=True)
        subprocess.run(["git", "-C", SRC, "worktree", "add", "--detach", "-f", tree, short],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return short, build(tree, os.path.join(root, "build"), targets)
