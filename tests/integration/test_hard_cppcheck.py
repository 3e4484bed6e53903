"""cppcheck (issue 8) over oci/ puller/ cache/ csi/ cli/ with
--enable=warning,performance,portability: no findings (false positives
are suppressed in the sources with the reason; see tests/lib/hardstatic.py).
A few seconds, so it runs in short mode too."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import hardstatic  # noqa: E402

if __name__ == "__main__":
    hardstatic.suite(hardstatic.run_cppcheck, ("cppcheck",))
