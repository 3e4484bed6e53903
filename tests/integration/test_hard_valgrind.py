"""valgrind --leak-check=full --error-exitcode=1 (issue 8) on
`modelpull pull` of a ranged multi-blob model and on `modelpush`, built
without sanitizers in <build>/hard-valgrind. MV_LONG=1 only (the extra
build takes minutes)."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import hardlib  # noqa: E402
import hardstatic  # noqa: E402
from mvfetch import Checks  # noqa: E402


def main():
    if not hardlib.LONG:
        print("SKIP: runs with MV_LONG=1 (scripts/test --long): it takes minutes")
        sys.exit(77)
    for tool in ("valgrind", "cmake"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} is not installed")
            sys.exit(77)
    t = Checks()
    tmp = tempfile.mkdtemp(prefix="modelvol-hard-static.")
    try:
        hardstatic.run_valgrind(t, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
