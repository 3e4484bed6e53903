#!/bin/bash
# test_push_pull.sh — modelpush and modelpull meet through a real
# docker-registry: a pushed model (raw layers, tar+zstd layers, ORAS format)
# pulls back into the cache as the same tree; and a ModelPack artifact that
# this test builds as an OCI layout and pushes with `skopeo copy oci:...`
# pulls correctly with modelpull (interop with a producer that is not ours).
set -u
source "${MV_SOURCE_DIR:?}/tests/lib/registry.sh"
PUSH=${MV_BUILD_DIR:?}/modelpush
PULL=${MV_BUILD_DIR:?}/modelpull
PY=/usr/bin/python3
for b in "$PUSH" "$PULL"; do
  [ -x "$b" ] || { echo "SKIP: $b is not built"; exit 77; }
done
for t in docker-registry skopeo; do
  command -v $t >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done

mv_tmpdir
mv_start_registry || exit 1
A=$MV_REG_ADDR
CACHE=$MV_TMP/cache
source "$MV_SOURCE_DIR/tests/lib/check.sh"

M=$MV_TMP/model
mkdir -p "$M/tokenizer" "$M/src"
head -c 3000000 /dev/urandom >"$M/model-00001-of-00002.safetensors"
head -c 2000000 /dev/urandom >"$M/model-00002-of-00002.safetensors"
echo '{"weight_map": {}}' >"$M/model.safetensors.index.json"
echo '{"architectures": ["T"]}' >"$M/config.json"
echo '{"v": 1}' >"$M/tokenizer/tokenizer.json"
printf '# T\n' >"$M/README.md"
printf 'x = 1\n' >"$M/src/model.py"
cp "$M/README.md" "$M/README-copy.md" # same bytes twice: one blob, two paths

pull_tree() { # prints the tree path (last stdout line of modelpull pull)
  "$PULL" --cache "$CACHE" pull --progress=none "$1" | tail -n1
}
roundtrip() { # roundtrip NAME TAG PUSH-ARGS...
  local name=$1 tag=$2
  shift 2
  if ! SOURCE_DATE_EPOCH=1700000000 "$PUSH" --progress=none --state-dir "$MV_TMP/state" "$@" "$M" "$A/models/$tag" \
    >"$MV_TMP/push.out" 2>"$MV_TMP/push.err"; then
    cat "$MV_TMP/push.err"
    check "$name: push" false
    return
  fi
  local tree
  tree=$(pull_tree "$A/models/$tag")
  check "$name: modelpull pull gives the same tree" diff -r "$M" "$tree"
}

roundtrip "raw layers" "rt:raw"
roundtrip "tar+zstd layers" "rt:tar" --tar --zstd --tar-max 1M
roundtrip "tar layers" "rt:tarplain" --tar
roundtrip "oras format" "rt:oras" --format oras

# ---- interop: an OCI layout with ModelPack media types, pushed by skopeo ----------
L=$MV_TMP/layout
$PY - "$M" "$L" <<'EOF'
import hashlib, json, os, sys
src, lay = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(lay, "blobs", "sha256"))
def put(b):
    d = hashlib.sha256(b).hexdigest()
    with open(os.path.join(lay, "blobs", "sha256", d), "wb") as f:
        f.write(b)
    return {"digest": "sha256:" + d, "size": len(b)}
layers = []
for root, _, names in sorted(os.walk(src)):
    for n in sorted(names):
        full = os.path.join(root, n)
        rel = os.path.relpath(full, src)
        kind = ("weight" if rel.endswith(".safetensors") else
                "doc" if rel.endswith(".md") else
                "code" if rel.endswith(".py") else "weight.config")
        with open(full, "rb") as f:
            d = put(f.read())
        layers.append({"mediaType": f"application/vnd.cncf.model.{kind}.v1.raw", **d,
                       "annotations": {"org.cncf.model.filepath": rel,
                                       "org.opencontainers.image.title": os.path.basename(rel)}})
cfg = put(json.dumps({"descriptor": {"name": "interop"}, "config": {"format": "safetensors"},
                      "modelfs": {"type": "layers", "diffIds": [l["digest"] for l in layers]}}).encode())
man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
       "artifactType": "application/vnd.cncf.model.manifest.v1+json",
       "config": {"mediaType": "application/vnd.cncf.model.config.v1+json", **cfg},
       "layers": layers}
md = put(json.dumps(man).encode())
with open(os.path.join(lay, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **md,
               "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}, f)
with open(os.path.join(lay, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion": "1.0.0"}')
EOF
if skopeo copy -q --dest-tls-verify=false "oci:$L:v1" "docker://$A/models/interop:v1" >/dev/null 2>"$MV_TMP/skopeo.err"; then
  check "interop: skopeo pushed the layout" true
  tree=$(pull_tree "$A/models/interop:v1")
  check "interop: modelpull pull of the skopeo-pushed ModelPack artifact gives the tree" diff -r "$M" "$tree"
else
  cat "$MV_TMP/skopeo.err"
  check "interop: skopeo pushed the layout" false
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
