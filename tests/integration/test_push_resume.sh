#!/bin/bash
# test_push_resume.sh — interrupted chunked uploads against a real
# docker-registry: a push SIGKILLed between chunks resumes where the session
# stands (bytes sent and the access log say so); one killed at a random
# moment (usually mid-chunk, which docker distribution cannot resume) still
# completes with verified bytes; an expired session starts over; and
# --monolithic sends no PATCH at all.
set -u
source "${MV_SOURCE_DIR:?}/tests/lib/registry.sh"
PUSH=${MV_BUILD_DIR:?}/modelpush
PY=/usr/bin/python3
if [ ! -x "$PUSH" ]; then
  echo "SKIP: $PUSH is not built"
  exit 77
fi
command -v docker-registry >/dev/null || { echo "SKIP: docker-registry not installed"; exit 77; }

mv_tmpdir
mv_start_registry || exit 1
A=$MV_REG_ADDR
source "$MV_SOURCE_DIR/tests/lib/check.sh"
summary() { # summary ERRFILE FIELD
  $PY -c '
import json, sys
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        o = json.loads(line)
        if o.get("event") == "summary":
            print(o[sys.argv[2]])' "$1" "$2"
}
not() { ! "$@"; }
records() { find "$1" -name '*.json' 2>/dev/null | wc -l; }

MIB=1048576
SIZE=$((200 * MIB))
CHUNK=$((16 * MIB))
M=$MV_TMP/model
mkdir -p "$M"
head -c $SIZE /dev/urandom >"$M/model.safetensors"
DIG=sha256:$(sha256sum <"$M/model.safetensors" | cut -d' ' -f1)
push() { # push STATE OUT ERR ARGS...
  local state=$1 out=$2 err=$3
  shift 3
  SOURCE_DATE_EPOCH=1700000000 "$PUSH" --progress=json --chunk-size 16M --jobs 1 \
    --state-dir "$state" "$@" >"$out" 2>"$err"
}
blob_ok() { # the registry serves the blob and it hashes right
  [ "sha256:$(curl -sf "http://$A/v2/$1/blobs/$DIG" | sha256sum | cut -d' ' -f1)" = "$DIG" ]
}

# ---- 1. killed between chunks: resumes --------------------------------------------------
S1=$MV_TMP/state1
MODELVOL_TEST_PUSH_KILL_AFTER_CHUNKS=5 push "$S1" "$MV_TMP/o1" "$MV_TMP/e1" "$M" "$A/models/r1:v1"
rc=$?
check "first push dies by SIGKILL after 5 chunks" [ $rc -eq 137 ]
check "a resume record is left behind" [ "$(records "$S1")" -eq 1 ]
check "the record holds no credentials" not grep -qiE "authorization|password|token" "$S1"/*.json
gets_before=$(grep -cE '"GET /v2/models/r1/blobs/uploads/[^ ]+ HTTP/1.1" 204' "$MV_REG_LOG" || true)
push "$S1" "$MV_TMP/o2" "$MV_TMP/e2" "$M" "$A/models/r1:v1"
rc=$?
check "re-run exits 0" [ $rc -eq 0 ]
[ $rc -eq 0 ] || cat "$MV_TMP/e2"
check "re-run asked the session where it stands (GET -> 204)" \
  [ "$(grep -cE '"GET /v2/models/r1/blobs/uploads/[^ ]+ HTTP/1.1" 204' "$MV_REG_LOG")" -gt "$gets_before" ]
sent=$(summary "$MV_TMP/e2" bytes_uploaded)
rest=$((SIZE - 5 * CHUNK))
# The rest of the blob, plus the config (a few hundred bytes) the first run
# never reached.
check "re-run sent only the rest ($sent = $rest + config)" [ "$sent" -ge $rest -a "$sent" -lt $((rest + 4096)) ]
check "the start event says where it resumed" \
  grep -q "\"event\":\"start\",\"digest\":\"$DIG\".*\"done\":$((5 * CHUNK))," "$MV_TMP/e2"
check "resumed blob is byte-exact in the registry" blob_ok models/r1
check "resume record removed after success" [ "$(records "$S1")" -eq 0 ]

# ---- 2. kill -9 at a random point: completes with verified bytes ---------------------------
S2=$MV_TMP/state2
# Stop it the moment the first chunk is acknowledged (read through a FIFO,
# no polling: loopback uploads are fast), then kill -9. It is then most
# likely mid-PATCH of the second chunk; every outcome must end in a correct
# blob.
mkfifo "$MV_TMP/e3.fifo"
push "$S2" "$MV_TMP/o3" "$MV_TMP/e3.fifo" "$M" "$A/models/r2:v1" &
pid=$!
exec 4<"$MV_TMP/e3.fifo"
while IFS= read -r -t 120 line <&4; do
  case $line in
  *'"event":"progress"'*)
    kill -STOP $pid 2>/dev/null
    break
    ;;
  esac
done
kill -9 $pid 2>/dev/null
exec 4<&-
wait $pid 2>/dev/null
rc=$?
check "random kill -9 landed during the push" [ $rc -eq 137 ]
push "$S2" "$MV_TMP/o4" "$MV_TMP/e4" "$M" "$A/models/r2:v1"
rc=$?
check "re-run after kill -9 exits 0" [ $rc -eq 0 ]
[ $rc -eq 0 ] || cat "$MV_TMP/e4"
sent=$(summary "$MV_TMP/e4" bytes_uploaded)
echo "     (re-run after kill -9 sent $sent bytes)"
check "the kill interrupted the blob: the re-run had bytes to send" [ "${sent:-0}" -gt 0 ]
check "re-run after kill -9 sent at most the blob once" [ "${sent:-x}" -le $((SIZE + 4096)) ]
check "blob after kill -9 is byte-exact in the registry" blob_ok models/r2
check "record removed after the re-run" [ "$(records "$S2")" -eq 0 ]

# ---- 3. an expired session starts over ---------------------------------------------------
S3=$MV_TMP/state3
MODELVOL_TEST_PUSH_KILL_AFTER_CHUNKS=3 push "$S3" "$MV_TMP/o5" "$MV_TMP/e5" "$M" "$A/models/r3:v1"
check "third push dies after 3 chunks" [ $? -eq 137 ]
# What the registry's upload purger does to an abandoned session.
rm -rf "$MV_TMP/registry/data/docker/registry/v2/repositories/models/r3/_uploads"
push "$S3" "$MV_TMP/o6" "$MV_TMP/e6" "$M" "$A/models/r3:v1"
rc=$?
check "expired session: re-run exits 0" [ $rc -eq 0 ]
check "expired session: the blob was sent again in full" [ "$(summary "$MV_TMP/e6" bytes_uploaded)" -ge $SIZE ]
check "expired session: blob is byte-exact" blob_ok models/r3

# ---- 4. --monolithic: one PUT, no PATCH -----------------------------------------------------
push "$MV_TMP/state4" "$MV_TMP/o7" "$MV_TMP/e7" "$M" "$A/models/r4:v1" --monolithic
check "--monolithic exits 0" [ $? -eq 0 ]
check "--monolithic: no PATCH in the access log" not grep -q '"PATCH /v2/models/r4/' "$MV_REG_LOG"
check "--monolithic: one PUT carrying the digest" grep -q "\"PUT /v2/models/r4/blobs/uploads/.*digest=$DIG" "$MV_REG_LOG"
check "--monolithic: blob is byte-exact" blob_ok models/r4

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
