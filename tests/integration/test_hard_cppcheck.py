"""cppcheck (issue 8) over oci/ puller/ cache/ csi/ cli/ with
--enable=warning,performance,portability: no findings (false positives
are suppressed in the sources with the reason; see tests/lib/hardstatic.py).
About 40 s, so it runs in short
mode too."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import hardstatic  # noqa: E402
from mvfetch import Checks  # noqa: E402


def main():
    for tool in ("cppcheck",):
        if not shutil.which(tool):
            print(f"SKIP: {tool} is not installed")
            sys.exit(77)
    t = Checks()
    tmp = tempfile.mkdtemp(prefix="modelvol-hard-static.")
    try:
        n = hardstatic.sources_db(tmp)
        print(f"   {n} translation units in {', '.join(hardstatic.DIRS)}", flush=True)
        hardstatic.run_cppcheck(t, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
