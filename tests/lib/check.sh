# check.sh — sourced by shell tests: named checks that count, so a script
# ends with the line ctest readers expect ("N passed, N failed").
#   check NAME COMMAND...   runs COMMAND; counts and prints ok/FAIL NAME
#   $pass, $fail            the counts so far
pass=0
fail=0
check() {
  local name=$1
  shift
  if "$@"; then
    echo "ok   $name"
    pass=$((pass + 1))
  else
    echo "FAIL $name"
    fail=$((fail + 1))
  fi
}
