"""valgrind --leak-check=full --error-exitcode=1 (issue 8) on
`modelpull pull` of a ranged multi-blob model and on `modelpush`, built
without sanitizers in <build>/hard-valgrind. MV_LONG=1 only (the extra
build takes minutes)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import hardstatic  # noqa: E402

if __name__ == "__main__":
    hardstatic.suite(hardstatic.run_valgrind, ("valgrind", "cmake"), long_only=True, sources=False)
