"""hardstatic.py — the static-analysis and valgrind runs of issue 8 for
tests/integration/test_hard_{cppcheck,tidy,valgrind}.py:

  * cppcheck --enable=warning,performance,portability --inline-suppr over
    base/ oci/ puller/ cache/ push/ csi/ cli/ (the build's compile_commands.json,
    restricted to those directories);
  * clang-tidy -checks='-*,bugprone-*,clang-analyzer-*' (minus the checks
    in TIDY_OFF, each with its reason);
  * valgrind --leak-check=full --error-exitcode=1 on `modelpull pull` (a
    ranged multi-blob model) and on `modelpush`, built without sanitizers
    in a build directory of their own.

Both analysers must report nothing: the baselines below are empty, and
a finding fails the test (every finding is printed). A false positive is
silenced in the source, at its line, by a NOLINT / cppcheck-suppress
comment that says why; the checks switched off as a whole are TIDY_OFF,
each with its reason.
One cppcheck report is filtered mechanically: a leak of a variable
declared with a _cleanup_* macro, since cppcheck does not model
__attribute__((cleanup)), which frees it on every return."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import hardlib
from checks import Checks
from mvreg import Registry
from util import BUILD_DIR, SOURCE_DIR, tree_digests

DIRS = ("base", "oci", "puller", "cache", "push", "csi", "cli")
# Checks left out, and why. Everything else in bugprone-* and
# clang-analyzer-* must be clean.
TIDY_OFF = {
    # A style heuristic (two adjacent parameters of one type), not a bug.
    "bugprone-easily-swappable-parameters": "heuristic about API shape",
    # The project's _cleanup_* macros (STYLE.md) are reserved-looking names
    # by design, like systemd's.
    "bugprone-reserved-identifier": "the _cleanup_* macros are the house style",
    # Asks for C11 Annex K (memset_s, snprintf_s), which glibc does not
    # have; snprintf with sizeof is the project's bounded form.
    "clang-analyzer-security.insecureAPI.DeprecatedOrUnsafeBufferHandling": "no Annex K in glibc",
}
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# (file, check) -> (count, verdict) of findings tolerated. Empty: the
# findings of the 2026-11-23 review were fixed in the sources, and a false
# positive is suppressed there, at its line, with the reason. Keep it empty.
BASELINE = {}
# cppcheck's, likewise: (file, id) -> (count, verdict). Empty.
CPPCHECK_BASELINE = {}


def over_baseline(found, baseline):
    """found: [(file, check, text)]. Returns the lines beyond the baseline."""
    import collections
    counts = collections.Counter((f, c) for f, c, _ in found)
    new = []
    for key, n in counts.items():
        allowed = baseline.get(key, (0, ""))[0]
        if n > allowed:
            new += [x[2] for x in found if (x[0], x[1]) == key]
    return new


def sources_db(tmp):
    """compile_commands.json of the build restricted to DIRS, in tmp."""
    with open(os.path.join(BUILD_DIR, "compile_commands.json")) as f:
        db = json.load(f)
    keep = [e for e in db
            if os.path.relpath(e["file"], SOURCE_DIR).split(os.sep)[0] in DIRS]
    with open(os.path.join(tmp, "compile_commands.json"), "w") as f:
        json.dump(keep, f)
    return len(keep)


def cleanup_declared(path, var):
    try:
        with open(path, errors="replace") as f:
            src = f.read()
    except OSError:
        return False
    return re.search(r"_cleanup_\w*_\s+[\w\s]*?\**\s*\b" + re.escape(var) + r"\b", src) is not None


def run_cppcheck(t, tmp):
    p = subprocess.run(["cppcheck", f"--project={tmp}/compile_commands.json",
                        "--enable=warning,performance,portability", "--inline-suppr", "-q",
                        "-j2", "--template={file}:{line}:{severity}:{id}:{message}"],
                       capture_output=True, text=True, timeout=1800)
    findings, filtered, unparsed = [], 0, []
    for line in p.stderr.splitlines():
        m = re.match(r"^(/[^:]+):(\d+):(\w+):(\w+):(.*)$", line)
        if not m:
            continue
        path, lineno, sev, ident, msg = m.groups()
        if ident in ("resourceLeak", "memleak"):
            var = msg.rsplit(":", 1)[-1].strip()
            if cleanup_declared(path, var):
                filtered += 1
                continue
        if ident in ("internalAstError", "syntaxError"):
            # cppcheck cannot parse some GNU statement expressions: say so.
            unparsed.append(f"{os.path.relpath(path, SOURCE_DIR)}:{lineno}")
            continue
        rel = os.path.relpath(path, SOURCE_DIR)
        findings.append((rel, ident, f"{rel}:{lineno}: {sev} [{ident}] {msg}"))
    for f in findings:
        v = CPPCHECK_BASELINE.get((f[0], f[1]), (0, "NEW"))[1]
        print(f"   cppcheck: {f[2]}  -- {v}", flush=True)
    print(f"FIGURE cppcheck: {len(findings)} findings, {filtered} _cleanup_ leak reports "
          f"filtered, not parsed by cppcheck: {unparsed}", flush=True)
    t.check("cppcheck ran", p.returncode == 0 or findings or filtered, p.stderr[-500:])
    new = over_baseline(findings, CPPCHECK_BASELINE)
    t.check("cppcheck: no findings", not new, "; ".join(new[:5]))


def run_tidy(t, tmp):
    checks = "-*,bugprone-*,clang-analyzer-*," + ",".join("-" + c for c in TIDY_OFF)
    p = subprocess.run(["run-clang-tidy", "-p", tmp, "-j", "2", "-quiet", f"-checks={checks}"],
                       capture_output=True, text=True, timeout=3600)
    seen = set()
    for line in ANSI.sub("", p.stdout + p.stderr).splitlines():
        m = re.match(r"^(/[^:]+):(\d+):\d+: (warning|error): (.*) \[([\w.,-]+)\]$", line)
        if m and os.path.relpath(m[1], SOURCE_DIR).split(os.sep)[0] in DIRS:
            rel = os.path.relpath(m[1], SOURCE_DIR)
            seen.add((rel, m[5], f"{rel}:{m[2]}: {m[4]} [{m[5]}]"))
    findings = sorted(seen)
    for f in findings:
        print(f"   clang-tidy: {f[2]}  -- {BASELINE.get((f[0], f[1]), (0, 'NEW'))[1]}",
              flush=True)
    real = sum(1 for f in findings if BASELINE.get((f[0], f[1]), (0, ""))[1].startswith("REAL"))
    print(f"FIGURE clang-tidy: {len(findings)} findings ({real} REAL, baseline "
          f"{sum(n for n, _ in BASELINE.values())})", flush=True)
    t.check("clang-tidy ran over every unit", "warnings generated" in p.stdout + p.stderr or
            p.returncode == 0, (p.stdout + p.stderr)[-500:])
    new = over_baseline(findings, BASELINE)
    t.check("clang-tidy: no findings", not new, "; ".join(new[:5]))


def plain_build(tmp):
    """modelpull and modelpush without sanitizers (valgrind and ASan do not
    mix), in a build directory of their own."""
    bdir = os.path.join(BUILD_DIR, "hard-valgrind")
    cfg = subprocess.run(["cmake", "-S", SOURCE_DIR, "-B", bdir, "-DCMAKE_BUILD_TYPE=Debug",
                          "-DMV_SANITIZE=OFF", "-DMV_FUZZ=OFF",
                          # valgrind 3.19 cannot read clang's default DWARF 5.
                          "-DCMAKE_C_FLAGS=-gdwarf-4"], capture_output=True, text=True)
    if cfg.returncode:
        return None, cfg.stdout + cfg.stderr
    b = subprocess.run(["cmake", "--build", bdir, "-j2", "--target", "modelpull", "modelpush"],
                       capture_output=True, text=True, timeout=3600)
    if b.returncode:
        return None, b.stdout[-2000:] + b.stderr[-2000:]
    return bdir, ""


def valgrind(args, log, env):
    cmd = ["valgrind", "--leak-check=full", "--error-exitcode=1", f"--log-file={log}"] + args
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    with open(log) as f:
        text = f.read()
    return p.returncode, p.stdout, p.stderr, text


def run_valgrind(t, tmp):
    bdir, why = plain_build(tmp)
    t.check("non-sanitized build of modelpull and modelpush", bdir is not None, why)
    if not bdir:
        return
    env = {k: v for k, v in hardlib.ENV.items() if not k.endswith("SAN_OPTIONS")}
    paths, want = hardlib.make_model(os.path.join(tmp, "src"), {
        "model.safetensors": 40 << 20, "config.json": 900, "tokenizer.json": 5000})
    with Registry(tmp=os.path.join(tmp, "reg")) as reg:
        src = os.path.join(tmp, "src")
        rc, out, err, log = valgrind([os.path.join(bdir, "modelpush"), src,
                                      f"{reg.addr}/models/vg:v1"], os.path.join(tmp, "push.vg"),
                                     env)
        summary = re.findall(r"ERROR SUMMARY: .*", log)
        print(f"FIGURE valgrind modelpush: exit {rc}; {summary[-1] if summary else '?'}",
              flush=True)
        t.check("valgrind clean on modelpush", rc == 0 and summary and
                summary[-1].startswith("ERROR SUMMARY: 0 errors"), err[-300:] + log[-3000:])
        cache = os.path.join(tmp, "cache")
        rc, out, err, log = valgrind([os.path.join(bdir, "modelpull"), "--cache", cache, "pull",
                                      "--progress=none", "--connections", "4", "--chunk-size",
                                      "4M", f"{reg.addr}/models/vg:v1"],
                                     os.path.join(tmp, "pull.vg"), env)
        summary = re.findall(r"ERROR SUMMARY: .*", log)
        print(f"FIGURE valgrind modelpull pull: exit {rc}; {summary[-1] if summary else '?'}",
              flush=True)
        tree = out.strip().splitlines()[-1] if rc == 0 and out.strip() else ""
        t.check("valgrind clean on modelpull pull", rc == 0 and summary and
                summary[-1].startswith("ERROR SUMMARY: 0 errors"), err[-300:] + log[-3000:])
        t.check("and the pull under valgrind is byte-identical",
                tree and tree_digests(tree) == want)


def suite(run, tools, long_only=False, sources=True):
    """The whole of test_hard_{cppcheck,tidy,valgrind}: skip (exit 77) when a
    tool is missing or, for long_only, without MV_LONG=1; else run(t, tmp) in
    a fresh temporary directory, after writing the restricted compilation
    database there when sources is set, and exit with the result."""
    if long_only and not hardlib.LONG:
        print("SKIP: runs with MV_LONG=1 (scripts/test --long): it takes minutes")
        sys.exit(77)
    for tool in tools:
        if not shutil.which(tool):
            print(f"SKIP: {tool} is not installed")
            sys.exit(77)
    t = Checks()
    tmp = tempfile.mkdtemp(prefix="modelvol-hard-static.")
    try:
        if sources:
            n = sources_db(tmp)
            print(f"   {n} translation units in {', '.join(DIRS)}", flush=True)
        run(t, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()
