#!/bin/bash
# test_push_hostile.sh — modelpush refuses hostile model directories before
# touching the network, with a non-zero exit and one line on stderr naming
# the offending file: a symlink escaping the directory, a symlink back to it,
# a dangling symlink, a FIFO, an unreadable file, an empty directory, a
# missing directory. Nothing reaches the registry (its access log stays free
# of the repository). Also: a registry in read-only mode fails the push with
# the file and the HTTP status on one line.
set -u
source "${MV_SOURCE_DIR:?}/tests/lib/registry.sh"
PUSH=${MV_BUILD_DIR:?}/modelpush
if [ ! -x "$PUSH" ]; then
  echo "SKIP: $PUSH is not built"
  exit 77
fi
command -v docker-registry >/dev/null || { echo "SKIP: docker-registry not installed"; exit 77; }

mv_tmpdir
mv_start_registry || exit 1
A=$MV_REG_ADDR
chmod 755 "$MV_TMP"
source "$MV_SOURCE_DIR/tests/lib/check.sh"

# refused NAME DIR PATTERN [RUNNER...]: modelpush DIR must fail with exactly
# one stderr line matching PATTERN.
refused() {
  local name=$1 dir=$2 pattern=$3
  shift 3
  "$@" "$PUSH" --progress=none --no-resume --no-hash-cache "$dir" "$A/models/hostile:v1" >"$MV_TMP/out" 2>"$MV_TMP/err"
  local rc=$?
  check "$name: non-zero exit" [ $rc -ne 0 ]
  check "$name: one line on stderr" [ "$(wc -l <"$MV_TMP/err")" -eq 1 ]
  check "$name: the line names the file" grep -qE "$pattern" "$MV_TMP/err"
  check "$name: nothing on stdout" [ ! -s "$MV_TMP/out" ]
  sed 's/^/     /' "$MV_TMP/err"
}

base() { # a fresh model dir with one good file
  local d=$MV_TMP/$1
  mkdir -p "$d"
  chmod 755 "$d"
  echo '{}' >"$d/config.json"
  echo "$d"
}

d=$(base escape)
ln -s /etc/hostname "$d/stolen.json"
refused "escaping symlink" "$d" "stolen.json: symlink points outside the model directory"

d=$(base escape-dir)
mkdir -p "$d/sub"
ln -s ../.. "$d/sub/up"
refused "symlinked directory escaping" "$d" "sub/up: symlink points outside"

d=$(base loop)
mkdir -p "$d/sub"
ln -s .. "$d/sub/again"
refused "symlink back to the directory" "$d" "sub/again: symlink points back at the model directory"

d=$(base dangling)
ln -s does-not-exist "$d/weights.bin"
refused "dangling symlink" "$d" "weights.bin: symlink is dangling"

d=$(base fifo)
mkfifo "$d/stream.bin"
refused "FIFO" "$d" "stream.bin: a FIFO"

d=$(base unreadable)
echo secret >"$d/private.bin"
chmod 000 "$d/private.bin"
if [ "$(id -u)" -eq 0 ]; then
  # root reads mode-000 files: drop to nobody so the refusal is real.
  if command -v setpriv >/dev/null; then
    refused "unreadable file (as nobody)" "$d" "private.bin: Permission denied" \
      setpriv --reuid=65534 --regid=65534 --clear-groups
  else
    echo "SKIP unreadable file: running as root and setpriv is missing"
  fi
else
  refused "unreadable file" "$d" "private.bin: Permission denied"
fi

mkdir -p "$MV_TMP/empty/only/dirs"
refused "empty directory" "$MV_TMP/empty" "empty: no files to push"

refused "missing directory" "$MV_TMP/nope" "nope: No such file or directory"

check "no request for the hostile repository reached the registry" \
  bash -c "! grep -q 'models/hostile' '$MV_REG_LOG'"

# ---- a read-only registry: the status and the file on one line -------------------------
RO=$MV_TMP/ro
mkdir -p "$RO/data"
RP=$(mv_free_port)
cat >"$RO/config.yml" <<YML
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $RO/data
  maintenance:
    readonly:
      enabled: true
http:
  addr: 127.0.0.1:$RP
YML
docker-registry serve "$RO/config.yml" >"$RO/log" 2>&1 &
MV_PIDS+=("$!")
mv_wait_http "http://127.0.0.1:$RP/v2/" || exit 1
d=$(base good)
"$PUSH" --progress=none --no-resume --no-hash-cache --jobs 1 "$d" "127.0.0.1:$RP/models/ro:v1" >"$MV_TMP/out" 2>"$MV_TMP/err"
check "read-only registry: non-zero exit" [ $? -ne 0 ]
check "read-only registry: one line naming the file and the 405" \
  grep -qE "^modelpush: push 127.0.0.1:$RP/models/ro:v1: config(\.json)?: .*405 .*from 127.0.0.1:$RP" "$MV_TMP/err"
check "read-only registry: one line only" [ "$(wc -l <"$MV_TMP/err")" -eq 1 ]
sed 's/^/     /' "$MV_TMP/err"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
