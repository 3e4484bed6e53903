"""test_docs_commands.py — the commands the user docs show still exist:
every `modelpull [GLOBAL] VERB --flag` and `modelvol-csi --flag` written in
README.md and docs/*.md (code blocks and inline code) names a verb in
`modelpull --help` and flags in that verb's (or the binary's) --help, and
every flag in the node plugin's flag table in docs/install.md is in
`modelvol-csi --help`. Catches docs drifting from the binaries.

Uses the built binaries in $MV_BUILD_DIR; a binary that is not built is
skipped with a message. Run with Debian's /usr/bin/python3."""
import glob
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import Checks  # noqa: E402
from util import BUILD_DIR, SOURCE_DIR  # noqa: E402

GLOBAL_WITH_VALUE = ("--cache", "--config")
STOP = ("#", "|", ";", "&&", "||", ">", "<", "`")

T = Checks()
check = T.check
helps = {}


def help_of(binary, *verb):
    key = (binary, *verb)
    if key not in helps:
        path = os.path.join(BUILD_DIR, binary)
        if not os.access(path, os.X_OK):
            helps[key] = None
        else:
            r = subprocess.run([path, *verb, "--help"], capture_output=True, text=True, timeout=30)
            helps[key] = r.stdout + r.stderr
    return helps[key]


def in_help(flag, text):
    return re.search(r"(?<![\w-])" + re.escape(flag) + r"(?![\w-])", text) is not None


def code_lines(text):
    """Lines of fenced code blocks (continuations joined) and inline code spans."""
    out = []
    fenced = False
    pending = ""
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            out.append(pending + line)
            pending = ""
        else:
            out += re.findall(r"`([^`]+)`", line)
    return out


def tokens_after(line, word):
    """Token lists following each standalone occurrence of word."""
    res = []
    for m in re.finditer(r"(?<![\w/.-])" + re.escape(word) + r"(?![\w-])", line):
        before = line[:m.start()].rstrip()
        if before.endswith("-c"):  # kubectl -c CONTAINER
            continue
        toks = []
        for t in line[m.end():].split():
            if t.startswith(STOP):
                break
            toks.append(t.strip("[]"))
        res.append(toks)
    return res


def check_modelpull(where, toks):
    top = help_of("modelpull")
    if top is None:
        return False
    i = 0
    while i < len(toks) and toks[i].startswith("-") and toks[i] != "--":
        flag = toks[i].split("=", 1)[0]
        check(f"{where}: modelpull {flag} is in modelpull --help", in_help(flag, top))
        i += 2 if toks[i] in GLOBAL_WITH_VALUE else 1
    if i >= len(toks):
        return True
    verb = toks[i].rstrip(":,.")
    if not re.fullmatch(r"[a-z]+", verb):
        return True  # prose, not a command
    check(f"{where}: verb {verb} is in modelpull --help",
          re.search(r"^\s+" + re.escape(verb) + r"\s", top, re.M) is not None)
    vhelp = help_of("modelpull", verb) or ""
    for t in toks[i + 1:]:
        if t.startswith("-") and t != "--" and re.match(r"^--?[a-z]", t):
            flag = t.split("=", 1)[0]
            check(f"{where}: modelpull {verb} {flag} is in its --help", in_help(flag, vhelp))
    return True


def check_csi(where, toks):
    top = help_of("modelvol-csi")
    if top is None:
        return False
    for t in toks:
        if t.startswith("-") and t != "--" and re.match(r"^--?[a-z]", t):
            flag = t.split("=", 1)[0]
            check(f"{where}: modelvol-csi {flag} is in its --help", in_help(flag, top))
    return True


def main():
    files = sorted(glob.glob(os.path.join(SOURCE_DIR, "docs", "*.md"))) + [
        os.path.join(SOURCE_DIR, "README.md")]
    skipped = set()
    seen = 0
    for path in files:
        rel = os.path.relpath(path, SOURCE_DIR)
        text = open(path).read()
        for line in code_lines(text):
            for toks in tokens_after(line, "modelpull"):
                seen += 1
                if not check_modelpull(rel, toks):
                    skipped.add("modelpull")
            for toks in tokens_after(line, "modelvol-csi"):
                seen += 1
                if not check_csi(rel, toks):
                    skipped.add("modelvol-csi")
    check("the docs show modelpull and modelvol-csi commands", seen > 0)

    install = open(os.path.join(SOURCE_DIR, "docs", "install.md")).read()
    m = re.search(r"### Flags of the node plugin\n(.*?)\n### ", install, re.S)
    check("docs/install.md has the node plugin's flag table", m is not None)
    if m:
        flags = re.findall(r"^\| `(--[a-z-]+)` \|", m.group(1), re.M)
        top = help_of("modelvol-csi")
        if top is None:
            skipped.add("modelvol-csi")
        else:
            check("the flag table lists flags", len(flags) > 0)
            for f in flags:
                check(f"docs/install.md flag table: {f} is in modelvol-csi --help", in_help(f, top))
    for b in sorted(skipped):
        print(f"SKIP: {b} is not built in {BUILD_DIR}: its documented flags are not checked")
    return T.summary()


if __name__ == "__main__":
    sys.exit(main())
