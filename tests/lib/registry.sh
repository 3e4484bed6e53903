# registry.sh — sourced by shell tests: starts Debian's docker-registry on a
# free 127.0.0.1 port with its data under a temp dir, and stops it on exit.
#   mv_tmpdir                 sets MV_TMP (removed on exit)
#   mv_start_registry         sets MV_REG_PORT, MV_REG_ADDR, MV_REG_LOG, MV_REG_PID
#   mv_free_port              prints a free loopback port
#   mv_wait_http URL [SECS]   polls until URL answers (bounded)

MV_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

mv_free_port() {
  PYTHONPATH="$MV_LIB_DIR" /usr/bin/python3 -c 'import util; print(util.free_port())'
}

mv_tmpdir() {
  MV_TMP=$(mktemp -d "${TMPDIR:-/tmp}/modelvol-test.XXXXXX")
  trap 'mv_cleanup' EXIT
}

MV_PIDS=()
mv_cleanup() {
  local p
  for p in "${MV_PIDS[@]:-}"; do
    # wait returns the killed child's status (143): under set -e that
    # must not become the script's exit status.
    [ -n "$p" ] || continue
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ -n "${MV_TMP:-}" ]; then rm -rf "$MV_TMP"; fi
  return 0
}

mv_wait_http() {
  local url=$1 secs=${2:-20} i
  for ((i = 0; i < secs * 20; i++)); do
    curl -s -o /dev/null "$url" && return 0
    sleep 0.05
  done
  echo "server at $url did not come up within ${secs}s" >&2
  return 1
}

mv_start_registry() {
  [ -n "${MV_TMP:-}" ] || mv_tmpdir
  local dir=$MV_TMP/registry
  mkdir -p "$dir/data"
  MV_REG_PORT=$(mv_free_port)
  MV_REG_ADDR=127.0.0.1:$MV_REG_PORT
  MV_REG_LOG=$dir/registry.log
  cat >"$dir/config.yml" <<YML
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $MV_REG_ADDR
YML
  docker-registry serve "$dir/config.yml" >"$MV_REG_LOG" 2>&1 &
  MV_REG_PID=$!
  MV_PIDS+=("$MV_REG_PID")
  mv_wait_http "http://$MV_REG_ADDR/v2/"
}
