#!/bin/bash
# test_push_roundtrip.sh — modelpush against a real docker-registry: what
# skopeo sees (media types, annotations, config), byte-identical files back
# through `skopeo copy ... dir:`, reproducible digests, re-pushes that send no
# layer bytes, a second model sharing files, cross-repository mount, extra
# tags, --format oras, --tar --zstd, and a one-line error when the registry
# is unreachable.
set -u
source "${MV_SOURCE_DIR:?}/tests/lib/registry.sh"
PUSH=${MV_BUILD_DIR:?}/modelpush
PY=/usr/bin/python3
if [ ! -x "$PUSH" ]; then
  echo "SKIP: $PUSH is not built"
  exit 77
fi
for t in docker-registry skopeo; do
  command -v $t >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done

mv_tmpdir
mv_start_registry || exit 1
A=$MV_REG_ADDR
source "$MV_SOURCE_DIR/tests/lib/check.sh"

# A small Hugging Face style model: a safetensors file with a real header,
# configuration, docs, code in a subdirectory, and a dataset file.
M=$MV_TMP/model
mkdir -p "$M/src" "$M/data"
$PY - "$M" <<'EOF'
import json, os, struct, sys
d = sys.argv[1]
hdr = json.dumps({"w": {"dtype": "F16", "shape": [1024, 1024], "data_offsets": [0, 2 * 1024 * 1024]}}).encode()
with open(os.path.join(d, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(hdr)) + hdr + os.urandom(2 * 1024 * 1024))
open(os.path.join(d, "config.json"), "w").write('{"architectures": ["Tiny"]}\n')
open(os.path.join(d, "tokenizer.json"), "w").write('{"model": {}}\n')
open(os.path.join(d, "README.md"), "w").write("# tiny\n")
open(os.path.join(d, "LICENSE"), "w").write("MIT\n")
open(os.path.join(d, "src", "modeling_tiny.py"), "w").write("print('tiny')\n")
open(os.path.join(d, "data", "eval.jsonl"), "w").write('{"q": 1}\n')
EOF

push() { # push OUT ERR ARGS...: runs modelpush with JSON progress
  local out=$1 err=$2
  shift 2
  SOURCE_DATE_EPOCH=1700000000 "$PUSH" --progress=json --state-dir "$MV_TMP/state" "$@" \
    >"$out" 2>"$err"
}
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
upload_writes() { # PATCH/PUT requests to blob uploads of REPO in the access log
  grep -cE "\"(PATCH|PUT) /v2/$1/blobs/uploads/" "$MV_REG_LOG" || true
}

# ---- 1. push, result line ----------------------------------------------------
push "$MV_TMP/o1" "$MV_TMP/e1" "$M" "$A/models/tiny:v1" --tag stable --name tiny
rc=$?
check "push exits 0" [ $rc -eq 0 ]
[ $rc -eq 0 ] || cat "$MV_TMP/e1"
last=$(tail -n1 "$MV_TMP/o1")
check "last stdout line is REF@sha256" \
  grep -qE "^$A/models/tiny:v1@sha256:[0-9a-f]{64}\$" <<<"$last"
D1=${last##*@}

# ---- 2. what skopeo sees -------------------------------------------------------
skopeo inspect --raw --tls-verify=false "docker://$A/models/tiny:v1" >"$MV_TMP/raw.json"
check "manifest digest is the printed digest" \
  [ "sha256:$(sha256sum <"$MV_TMP/raw.json" | cut -d' ' -f1)" = "$D1" ]
check "extra --tag names the same manifest" \
  [ "$(skopeo inspect --raw --tls-verify=false "docker://$A/models/tiny:stable" | sha256sum)" = \
    "$(sha256sum <"$MV_TMP/raw.json")" ]
check "media types and annotations are ModelPack's" $PY - "$MV_TMP/raw.json" "$M" <<'EOF'
import json, os, sys
m = json.load(open(sys.argv[1]))
d = sys.argv[2]
assert m["mediaType"] == "application/vnd.oci.image.manifest.v1+json", m["mediaType"]
assert m["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
assert m["config"]["mediaType"] == "application/vnd.cncf.model.config.v1+json"
want = {
    "model.safetensors": "weight", "config.json": "weight.config",
    "tokenizer.json": "weight.config", "README.md": "doc", "LICENSE": "doc",
    "src/modeling_tiny.py": "code", "data/eval.jsonl": "dataset",
}
seen = {}
for l in m["layers"]:
    a = l["annotations"]
    p = a["org.cncf.model.filepath"]
    seen[p] = l["mediaType"]
    assert a["org.opencontainers.image.title"] == p, a
    meta = json.loads(a["org.cncf.model.file.metadata+json"])
    assert set(meta) == {"name", "mode", "uid", "gid", "size", "mtime", "typeflag"}, meta
    assert meta["name"] == os.path.basename(p)
    assert meta["size"] == os.path.getsize(os.path.join(d, p)) == l["size"], (meta, l)
    assert meta["mtime"] == "2023-11-14T22:13:20Z" and meta["typeflag"] == 48
for p, kind in want.items():
    assert seen.get(p) == f"application/vnd.cncf.model.{kind}.v1.raw", (p, seen.get(p))
assert len(seen) == len(want), seen
EOF
CFG=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["digest"])' "$MV_TMP/raw.json")
curl -sf "http://$A/v2/models/tiny/blobs/$CFG" >"$MV_TMP/config.json"
check "config carries descriptor, format, paramSize and diffIds" $PY - "$MV_TMP/config.json" "$MV_TMP/raw.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
m = json.load(open(sys.argv[2]))
assert c["descriptor"] == {"createdAt": "2023-11-14T22:13:20Z", "name": "tiny"}, c["descriptor"]
assert c["config"] == {"format": "safetensors", "paramSize": "1M", "precision": "fp16"}, c["config"]
assert c["modelfs"]["type"] == "layers"
assert c["modelfs"]["diffIds"] == [l["digest"] for l in m["layers"]]
EOF

# ---- 3. bytes back through skopeo ----------------------------------------------
skopeo copy -q --src-tls-verify=false "docker://$A/models/tiny:v1" "dir:$MV_TMP/copy" >/dev/null
check "skopeo copy returns byte-identical files" $PY - "$MV_TMP/raw.json" "$M" "$MV_TMP/copy" <<'EOF'
import filecmp, json, os, sys
m = json.load(open(sys.argv[1]))
for l in m["layers"]:
    p = l["annotations"]["org.cncf.model.filepath"]
    blob = os.path.join(sys.argv[3], l["digest"].split(":")[1])
    assert filecmp.cmp(blob, os.path.join(sys.argv[2], p), shallow=False), p
EOF

# ---- 4. reproducible -------------------------------------------------------------
cp -r "$M" "$MV_TMP/model-copy" # new mtimes, same content
push "$MV_TMP/o2" "$MV_TMP/e2" "$MV_TMP/model-copy" "$A/models/tiny:again" --name tiny
check "same dir and flags give the same manifest digest" [ "$(tail -n1 "$MV_TMP/o2" | sed 's/.*@//')" = "$D1" ]
D3=$(SOURCE_DATE_EPOCH=1700000001 "$PUSH" --dry-run --no-hash-cache --name tiny "$M" "$A/models/tiny:v1" | tail -n1)
check "another SOURCE_DATE_EPOCH gives another digest" [ "${D3##*@}" != "$D1" ]

# ---- 5. re-push sends no layer bytes --------------------------------------------------
before=$(upload_writes models/tiny)
push "$MV_TMP/o3" "$MV_TMP/e3" "$M" "$A/models/tiny:v1" --name tiny
check "re-push exits 0" [ $? -eq 0 ]
check "re-push: no PATCH/PUT to blob uploads in the access log" [ "$(upload_writes models/tiny)" -eq "$before" ]
check "re-push: 0 bytes uploaded, every blob skipped" \
  [ "$(summary "$MV_TMP/e3" bytes_uploaded)" = 0 -a "$(summary "$MV_TMP/e3" blobs_skipped)" = 8 ]

# ---- 6. a second model sharing files uploads only what is new ----------------------
cp -r "$M" "$MV_TMP/model2"
head -c 1048576 /dev/urandom >"$MV_TMP/model2/adapter.safetensors.extra"
NEW=sha256:$(sha256sum <"$MV_TMP/model2/adapter.safetensors.extra" | cut -d' ' -f1)
before=$(upload_writes models/tiny)
push "$MV_TMP/o4" "$MV_TMP/e4" "$MV_TMP/model2" "$A/models/tiny:v2" --name tiny
check "second model exits 0" [ $? -eq 0 ]
check "second model: only the new file and the config are uploaded" \
  [ "$(summary "$MV_TMP/e4" blobs_uploaded)" = 2 -a "$(summary "$MV_TMP/e4" blobs_skipped)" = 7 ]
check "second model: the access log has the new file's PUT" grep -q "PUT /v2/models/tiny/blobs/uploads/.*digest=$NEW" "$MV_REG_LOG"
check "second model: two upload PUTs, no more" [ "$(upload_writes models/tiny)" -eq $((before + 2)) ]

# ---- 7. cross-repository mount -------------------------------------------------------
push "$MV_TMP/o5" "$MV_TMP/e5" "$M" "$A/models/other:v1" --name tiny --from models/tiny
check "mount push exits 0" [ $? -eq 0 ]
check "--from mounts every blob the source has" \
  [ "$(summary "$MV_TMP/e5" blobs_mounted)" = 8 -a "$(summary "$MV_TMP/e5" bytes_uploaded)" = 0 ]
check "mount: POST with mount= in the access log" grep -q "POST /v2/models/other/blobs/uploads/?mount=sha256:.*from=models/tiny" "$MV_REG_LOG"

# ---- 8. --format oras ------------------------------------------------------------------
push "$MV_TMP/o6" "$MV_TMP/e6" "$M" "$A/models/oras:v1" --format oras --artifact-type application/vnd.example.tiny
check "oras push exits 0" [ $? -eq 0 ]
skopeo inspect --raw --tls-verify=false "docker://$A/models/oras:v1" >"$MV_TMP/oras.json"
rm -rf "$MV_TMP/copy"
skopeo copy -q --src-tls-verify=false "docker://$A/models/oras:v1" "dir:$MV_TMP/copy" >/dev/null
check "oras: empty config, artifactType, titled raw blobs, bytes identical" $PY - "$MV_TMP/oras.json" "$M" "$MV_TMP/copy" <<'EOF'
import filecmp, json, os, sys
m = json.load(open(sys.argv[1]))
assert m["artifactType"] == "application/vnd.example.tiny"
assert m["config"]["mediaType"] == "application/vnd.oci.empty.v1+json" and m["config"]["size"] == 2
assert len(m["layers"]) == 7
for l in m["layers"]:
    assert l["mediaType"] == "application/octet-stream", l
    t = l["annotations"]["org.opencontainers.image.title"]
    blob = os.path.join(sys.argv[3], l["digest"].split(":")[1])
    assert filecmp.cmp(blob, os.path.join(sys.argv[2], t), shallow=False), t
EOF

# ---- 9. --tar --zstd ----------------------------------------------------------------
push "$MV_TMP/o7" "$MV_TMP/e7" "$M" "$A/models/tarred:v1" --tar --zstd --tar-max 64K
check "tar push exits 0" [ $? -eq 0 ]
skopeo inspect --raw --tls-verify=false "docker://$A/models/tarred:v1" >"$MV_TMP/tar.json"
rm -rf "$MV_TMP/copy" "$MV_TMP/untar"
skopeo copy -q --src-tls-verify=false "docker://$A/models/tarred:v1" "dir:$MV_TMP/copy" >/dev/null
mkdir -p "$MV_TMP/untar"
check "tar: small files in tar+zstd layers per kind, the tree comes back whole" $PY - "$MV_TMP/tar.json" "$MV_TMP/copy" "$MV_TMP/untar" <<'EOF'
import json, os, shutil, subprocess, sys
m = json.load(open(sys.argv[1]))
kinds = sorted(l["mediaType"] for l in m["layers"])
assert kinds == sorted([
    "application/vnd.cncf.model.weight.v1.raw",
    "application/vnd.cncf.model.weight.config.v1.tar+zstd",
    "application/vnd.cncf.model.doc.v1.tar+zstd",
    "application/vnd.cncf.model.code.v1.tar+zstd",
    "application/vnd.cncf.model.dataset.v1.tar+zstd",
]), kinds
for l in m["layers"]:
    blob = os.path.join(sys.argv[2], l["digest"].split(":")[1])
    if l["mediaType"].endswith(".raw"):
        shutil.copy(blob, os.path.join(sys.argv[3], l["annotations"]["org.cncf.model.filepath"]))
    else:
        subprocess.run(["tar", "--zstd", "-xf", blob, "-C", sys.argv[3]], check=True)
EOF
check "tar: extracted tree equals the model dir" diff -r "$M" "$MV_TMP/untar"

# ---- 10. unreachable registry: one line naming the file -----------------------------------
dead=$(mv_free_port)
SOURCE_DATE_EPOCH=1 "$PUSH" --progress=none --no-resume --no-hash-cache --jobs 1 "$M" "127.0.0.1:$dead/models/x:v1" \
  >"$MV_TMP/o8" 2>"$MV_TMP/e8"
rc=$?
check "unreachable registry: non-zero exit" [ $rc -ne 0 ]
check "unreachable registry: exactly one line on stderr" [ "$(wc -l <"$MV_TMP/e8")" -eq 1 ]
check "unreachable registry: the line names a file and the host" \
  grep -qE "^modelpush: push 127.0.0.1:$dead/models/x:v1: [^ :]+: blob sha256:[0-9a-f]{64}: .*127.0.0.1:$dead" "$MV_TMP/e8"
cat "$MV_TMP/e8"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
