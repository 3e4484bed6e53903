"""checks.py — named assertions for Python tests that keep going after a
failure and end with the line ctest readers expect: "N passed, N failed"."""
import sys


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, cond, detail=""):
        if cond:
            self.passed += 1
            print(f"ok   {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {name}" + (f": {detail}" if detail else ""), flush=True)
        return cond

    def summary(self):
        """Prints the counts and returns the exit code."""
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        return 1 if self.failed else 0

    def done(self):
        sys.exit(self.summary())
