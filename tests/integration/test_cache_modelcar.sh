#!/usr/bin/env bash
# A KServe-style modelcar image built with umoci (three layers: files under
# /models, then an upper layer deleting a file and replacing a directory,
# i.e. OCI whiteouts), copied into a real docker-registry with skopeo, and
# pulled with modelpull: the tree is /models flattened in layer order, the
# whiteouts applied; --subpath presents another directory.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/registry.sh"

build=${MV_BUILD_DIR:-$here/../../build/test}
modelpull=$build/modelpull
[ -x "$modelpull" ] || { echo "modelpull not built at $modelpull"; exit 1; }
for tool in umoci skopeo; do
  command -v $tool >/dev/null || { echo "SKIP: $tool is not installed"; exit 77; }
done
rootless=()
[ "$(id -u)" = 0 ] || rootless=(--rootless)

passed=0 failed=0
check() { # check NAME COMMAND...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok   $name"
  else failed=$((failed + 1)); echo "FAIL $name"; fi
}

mv_tmpdir
mv_start_registry || exit 1
export DOCKER_CONFIG=$MV_TMP/nodocker
layout=$MV_TMP/oci
bundle=$MV_TMP/bundle

umoci init --layout "$layout"
umoci new --image "$layout:car"
# Layer 1: a tiny "OS" and the model.
umoci unpack "${rootless[@]}" --image "$layout:car" "$bundle" >/dev/null
mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/models/tok" "$bundle/rootfs/models/old"
echo '#!/bin/sh' >"$bundle/rootfs/bin/sh"
head -c 3000000 /dev/urandom >"$bundle/rootfs/models/model.safetensors"
echo '{"v":1}' >"$bundle/rootfs/models/config.json"
echo 'stale' >"$bundle/rootfs/models/drop.txt"
echo 'tok' >"$bundle/rootfs/models/tok/tokenizer.json"
echo 'old1' >"$bundle/rootfs/models/old/a"
echo 'old2' >"$bundle/rootfs/models/old/b"
ln -s config.json "$bundle/rootfs/models/cfg-link"
chmod 4755 "$bundle/rootfs/models/config.json"
umoci repack --image "$layout:car" "$bundle" >/dev/null
rm -rf "$bundle"
# Layer 2: delete a file, replace a directory, change a file.
umoci unpack "${rootless[@]}" --image "$layout:car" "$bundle" >/dev/null
rm "$bundle/rootfs/models/drop.txt"
rm -rf "$bundle/rootfs/models/old"
mkdir "$bundle/rootfs/models/old"
echo 'new' >"$bundle/rootfs/models/old/c"
echo '{"v":2}' >"$bundle/rootfs/models/config.json"
umoci repack --image "$layout:car" "$bundle" >/dev/null
rm -rf "$bundle"

ref=$MV_REG_ADDR/models/car:v1
skopeo copy --quiet --dest-tls-verify=false "oci:$layout:car" "docker://$ref" ||
  { echo "skopeo copy failed"; exit 1; }

out=$("$modelpull" --cache "$MV_TMP/cache" pull --progress=none "$ref" 2>"$MV_TMP/err")
rc=$?
tree=$(printf '%s\n' "$out" | tail -n1)
check "modelcar pull succeeds" test "$rc" = 0
[ "$rc" = 0 ] || cat "$MV_TMP/err"
# What /models looks like in the final image, per umoci itself.
umoci unpack "${rootless[@]}" --image "$layout:car" "$bundle" >/dev/null
check "tree is the flattened /models" diff -r --no-dereference "$bundle/rootfs/models" "$tree"
check "deleted file is gone (whiteout)" test ! -e "$tree/drop.txt"
check "replaced directory holds only new files" test "$(ls "$tree/old")" = c
check "changed file has the upper content" grep -q '"v":2' "$tree/config.json"
check "no whiteout markers in the tree" test -z "$(find "$tree" -name '.wh.*')"
check "nothing outside /models presented" test ! -e "$tree/bin"
check "symlink kept" test "$(readlink "$tree/cfg-link")" = config.json
check "weights byte-identical" cmp -s "$bundle/rootfs/models/model.safetensors" "$tree/model.safetensors"
perm=$(stat -c %a "$tree/config.json")
check "setuid stripped, read-only ($perm)" test "$perm" = 555 -o "$perm" = 444

out=$("$modelpull" --cache "$MV_TMP/cache" pull --progress=none --subpath models/tok "$ref" 2>"$MV_TMP/err")
check "--subpath presents a subdirectory" test "$(ls "$(printf '%s\n' "$out" | tail -n1)")" = tokenizer.json
out=$("$modelpull" --cache "$MV_TMP/cache" pull --progress=none --subpath nope "$ref" 2>"$MV_TMP/err")
rc=$?
check "missing subpath is a one-line error" test "$rc" != 0 -a "$(wc -l <"$MV_TMP/err")" = 1
check "error names the subpath" grep -q 'subpath "nope"' "$MV_TMP/err"
# The same image as Docker schema 2 (docker media types, Docker config).
skopeo copy --quiet --format v2s2 --dest-tls-verify=false "oci:$layout:car" \
  "docker://$MV_REG_ADDR/models/car-docker:v1" || { echo "skopeo copy v2s2 failed"; exit 1; }
out=$("$modelpull" --cache "$MV_TMP/cache" pull --progress=none "$MV_REG_ADDR/models/car-docker:v1" 2>"$MV_TMP/err")
rc=$?
dtree=$(printf '%s\n' "$out" | tail -n1)
check "Docker schema 2 modelcar pulls" test "$rc" = 0
check "Docker schema 2 tree equals /models" diff -r --no-dereference "$bundle/rootfs/models" "$dtree"

"$modelpull" --cache "$MV_TMP/cache" verify >/dev/null 2>&1
check "verify clean" test $? = 0

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
