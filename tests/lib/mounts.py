"""mounts.py — the kernel's side of published volumes for tests: whether
bind mounts are possible at all (root), what /proc/self/mountinfo says is
mounted at a target, unmounting whatever a failed test left below a
directory and removing it, and a listing of a mounted tree."""
import os
import shutil
import subprocess
import sys


def require_root():
    """Exits 77 with the reason when bind mounts are impossible."""
    if os.geteuid() != 0:
        print("SKIP: needs root for bind mounts")
        sys.exit(77)


def remove_tree(d):
    """Lazily unmounts everything mounted below d, deepest first, then
    removes d, so a test that failed half-way leaks no mount into the next
    one (and rmtree never walks into a published model)."""
    for line in reversed(open("/proc/self/mountinfo").read().splitlines()):
        mp = line.split(" ")[4]
        if mp.startswith(d.rstrip("/") + "/"):
            subprocess.run(["umount", "-l", mp], stderr=subprocess.DEVNULL)
    shutil.rmtree(d, ignore_errors=True)


def mountinfo_lines(target):
    """The /proc/self/mountinfo lines whose mount point is target."""
    esc = target.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011") \
                .replace("\n", "\\012")
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" ")
            if len(fields) > 5 and fields[4] == esc:
                found.append(line.rstrip("\n"))
    return found


def mountinfo_line(target):
    """The topmost mountinfo line at target, or None."""
    lines = mountinfo_lines(target)
    return lines[-1] if lines else None


def mount_options(target):
    line = mountinfo_line(target)
    return set(line.split(" ")[5].split(",")) if line else None


def tree_listing(root):
    """Lines like `find -printf '%M %10s %P'`, sorted by path, for a tree."""
    rows = []
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            kind = "d" if os.path.isdir(p) else "-"
            rows.append((os.path.relpath(p, root), kind, st.st_size))
    return [f"{kind} {size:>12}  {rel}" for rel, kind, size in sorted(rows)]
