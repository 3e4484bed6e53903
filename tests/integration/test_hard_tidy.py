"""clang-tidy (issue 8), bugprone-* and clang-analyzer-*, over oci/
puller/ cache/ csi/ cli/: no findings (false positives are suppressed in
the sources with the reason; see tests/lib/hardstatic.py). MV_LONG=1 only (about 7 minutes on 2 cores)."""
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
    for tool in ("run-clang-tidy",):
        if not shutil.which(tool):
            print(f"SKIP: {tool} is not installed")
            sys.exit(77)
    t = Checks()
    tmp = tempfile.mkdtemp(prefix="modelvol-hard-static.")
    try:
        n = hardstatic.sources_db(tmp)
        print(f"   {n} translation units in {', '.join(hardstatic.DIRS)}", flush=True)
        hardstatic.run_tidy(t, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
