#!/bin/bash
# test_push_kitops.sh — modelpush --format kitops against a real
# docker-registry: what skopeo sees (a KitOps ModelKit: artifactType, the
# Kitfile config, kitops layer media types in kit pack's order, the filepath
# annotation), the Kitfile's digests and diffIds against the layers, the tar
# entries kit pack writes (parents first, owner 1000:0, mtime 0) that
# together rebuild the directory, and the --zstd flavour.
# Part 2 pulls the ModelKit back with modelpull; it needs the layout planner
# (oci: the KitOps family) and is skipped, saying so, while modelpull lacks it.
set -u
source "${MV_SOURCE_DIR:?}/tests/lib/registry.sh"
PUSH=${MV_BUILD_DIR:?}/modelpush
PULL=${MV_BUILD_DIR:?}/modelpull
PY=/usr/bin/python3
[ -x "$PUSH" ] || { echo "SKIP: $PUSH is not built"; exit 77; }
for t in docker-registry skopeo; do
  command -v $t >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done

mv_tmpdir
mv_start_registry || exit 1
A=$MV_REG_ADDR
source "$MV_SOURCE_DIR/tests/lib/check.sh"

M=$MV_TMP/model
mkdir -p "$M/scripts" "$M/data"
head -c 300000 /dev/urandom >"$M/model.safetensors"
echo '{"architectures": ["T"]}' >"$M/config.json"
echo '{"v": 1}' >"$M/tokenizer.json"
printf '# T\n' >"$M/README.md"
printf 'MIT\n' >"$M/LICENSE"
printf '#!/bin/sh\necho hi\n' >"$M/scripts/run.sh"
chmod 0755 "$M/scripts/run.sh"
echo '{"q": 1}' >"$M/data/eval.jsonl"
printf 'manifestVersion: 1.0.0\n' >"$M/Kitfile" # describes a pack; kit never packs it

push() { # push REF ARGS...
  local ref=$1
  shift
  SOURCE_DATE_EPOCH=1700000000 "$PUSH" --progress=none --state-dir "$MV_TMP/state" \
    --format kitops "$@" "$M" "$A/$ref" >"$MV_TMP/push.out" 2>"$MV_TMP/push.err"
}

# ---- 1. the ModelKit as a registry holds it ------------------------------------
push models/kit:v1 --name kit
rc=$?
check "push --format kitops exits 0" [ $rc -eq 0 ]
[ $rc -eq 0 ] || cat "$MV_TMP/push.err"
D=$(tail -n1 "$MV_TMP/push.out")
D=${D##*@}
skopeo inspect --raw --tls-verify=false "docker://$A/models/kit:v1" >"$MV_TMP/raw.json"
check "manifest digest is the printed digest" \
  [ "sha256:$(sha256sum <"$MV_TMP/raw.json" | cut -d' ' -f1)" = "$D" ]
check "manifest: artifactType, config and layer media types in kit pack's order" \
  $PY - "$MV_TMP/raw.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
assert m["mediaType"] == "application/vnd.oci.image.manifest.v1+json", m["mediaType"]
assert m["artifactType"] == "application/vnd.kitops.modelkit.manifest.v1+json", m.get("artifactType")
assert m["config"]["mediaType"] == "application/vnd.kitops.modelkit.config.v1+json"
assert "ml.kitops.modelkit.cli-version" in m["annotations"], m["annotations"]
assert "org.opencontainers.image.created" not in m["annotations"]
got = [(l["mediaType"].split(".")[3], l["annotations"]["org.cncf.model.filepath"]) for l in m["layers"]]
want = [("model", "model.safetensors"), ("modelpart", "config.json"),
        ("modelpart", "tokenizer.json"), ("code", "scripts/run.sh"),
        ("dataset", "data/eval.jsonl"), ("docs", "LICENSE"), ("docs", "README.md")]
assert got == want, got
for l in m["layers"]:
    assert l["mediaType"].endswith(".v1.tar"), l["mediaType"]
    assert list(l["annotations"]) == ["org.cncf.model.filepath"], l["annotations"]
EOF

# The blobs as skopeo fetches them: the config (Kitfile) and each layer.
skopeo copy -q --src-tls-verify=false "docker://$A/models/kit:v1" "dir:$MV_TMP/blobs" 2>"$MV_TMP/copy.err"
check "skopeo copy fetches the ModelKit" [ -s "$MV_TMP/blobs/manifest.json" ]
check "config: the Kitfile, whose digests and diffIds are the layers'" \
  $PY - "$MV_TMP/blobs" <<'EOF'
import hashlib, json, os, sys
d = sys.argv[1]
m = json.load(open(os.path.join(d, "manifest.json")))
cfg = json.load(open(os.path.join(d, m["config"]["digest"].split(":")[1])))
assert cfg["manifestVersion"] == "1.0.0", cfg
assert cfg["package"]["name"] == "kit", cfg["package"]
entries = [cfg["model"]] + cfg["model"]["parts"] + cfg["code"] + cfg["datasets"] + cfg["docs"]
assert [e["path"] for e in entries] == [l["annotations"]["org.cncf.model.filepath"] for l in m["layers"]]
for e, l in zip(entries, m["layers"]):
    assert e["digest"] == l["digest"], (e, l)
    assert e["diffId"] == l["digest"], e  # uncompressed tar: diffId == digest
assert cfg["model"]["name"] == "model", cfg["model"]
assert {e["description"] for e in cfg["docs"]} == {"Readme file", "License file"}
assert "Kitfile" not in json.dumps(cfg)
EOF
check "layers: kit pack's tar entries, which rebuild the directory" \
  $PY - "$MV_TMP/blobs" "$MV_TMP/untar" <<'EOF'
import json, os, sys, tarfile
d, out = sys.argv[1], sys.argv[2]
m = json.load(open(os.path.join(d, "manifest.json")))
names = []
for l in m["layers"]:
    with tarfile.open(os.path.join(d, l["digest"].split(":")[1]), "r:") as t:
        for ti in t.getmembers():
            assert (ti.uid, ti.gid, ti.mtime, ti.uname, ti.gname) == (1000, 0, 0, "", ""), ti.get_info()
            names.append(ti.name.rstrip("/") + ("/" if ti.isdir() else ""))
        t.extractall(out)
assert names == ["model.safetensors", "config.json", "tokenizer.json", "scripts/",
                 "scripts/run.sh", "data/", "data/eval.jsonl", "LICENSE", "README.md"], names
EOF
check "extracted layers equal the directory (the Kitfile left out)" diff -r -x Kitfile "$M" "$MV_TMP/untar"

# ---- 2. --zstd: the same ModelKit, tar+zstd layers ------------------------------
push models/kit:zstd --zstd
check "push --format kitops --zstd exits 0" [ $? -eq 0 ]
skopeo inspect --raw --tls-verify=false "docker://$A/models/kit:zstd" >"$MV_TMP/rawz.json"
check "--zstd: every layer is tar+zstd" $PY - "$MV_TMP/rawz.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
assert len(m["layers"]) == 7
assert all(l["mediaType"].endswith(".v1.tar+zstd") for l in m["layers"]), m["layers"]
EOF
push models/kit:bad --tar
check "--tar with --format kitops is refused" [ $? -ne 0 ]
check "--tar refusal names --format kitops" grep -q -- "--format kitops" "$MV_TMP/push.err"

# ---- 3. pulled back with modelpull (needs the KitOps layout planner) -------------
if [ -x "$PULL" ] && grep -aq "application/vnd.kitops.modelkit" "$PULL"; then
  CACHE=$MV_TMP/cache
  tree=$("$PULL" --cache "$CACHE" pull --progress=none "$A/models/kit:v1" | tail -n1)
  check "modelpull pull of the ModelKit gives the directory" diff -r -x Kitfile "$M" "$tree"
  tree=$("$PULL" --cache "$CACHE" pull --progress=none "$A/models/kit:zstd" | tail -n1)
  check "modelpull pull of the tar+zstd ModelKit gives the directory" diff -r -x Kitfile "$M" "$tree"
  check "the code file stays executable" [ -x "$tree/scripts/run.sh" ]
  tree=$("$PULL" --cache "$CACHE" pull --progress=none --kind docs "$A/models/kit:v1" | tail -n1)
  check "--kind docs keeps the docs layers only" \
    [ "$(cd "$tree" && find . -type f | sort | tr '\n' ' ')" = "./LICENSE ./README.md " ]
else
  echo "skip: part 3: $PULL has no KitOps layout planner yet"
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
