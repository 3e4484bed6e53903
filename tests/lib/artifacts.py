"""artifacts.py — other tools' model artifacts, built byte for byte as each
tool's own source builds them (media types, annotations, config JSON with
the tool's field order, tar entry names, order, modes and header format),
and pushed to a tests/lib/mvreg.py Registry. Payloads are small synthetic
files named like real ones; nothing is downloaded.

Each builder returns a Built: the reference it pushed and the tree modelvol
is expected to lay out for it (the lead's decisions for issue 14), so a test
can compare a pulled or mounted tree file by file.

Every fact about a tool cites the upstream file it comes from. Where a fact
is a property of Go's standard library (all five tools are Go), the Go
package is named instead: archive/tar writes USTAR headers when the fields
fit, a 512-byte-aligned body and two zero blocks at Close; encoding/json
writes struct fields in declaration order, map keys sorted, no spaces, and
escapes <, > and &; compress/gzip writes a 10-byte header with mtime 0,
XFL 0 and OS 255 (unknown)."""
import hashlib
import json
import os
import random
import struct
import zlib

from util import sha256_bytes

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

# Fixed clocks so every artifact is reproducible run to run.
CREATED = "2026-01-15T10:20:30Z"
CREATED_NANO = "2026-01-15T10:20:30.123456789Z"
MTIME = 1768472430  # CREATED as a Unix time


class Built:
    """What a builder pushed and what modelvol should lay out for it.

    files: {relative path: (bytes, executable)}; kinds: {relative path:
    kind word from decision 3, or None}."""

    def __init__(self, name, family, reg, repo, tag, digest, files, kinds, config_media_type):
        self.name = name
        self.family = family
        self.repo = repo
        self.tag = tag
        self.ref = f"{reg.addr}/{repo}:{tag}"
        self.digest = digest
        self.files = files
        self.kinds = kinds
        self.config_media_type = config_media_type


# ---- Go-shaped encodings ---------------------------------------------------

def go_json(obj):
    """encoding/json.Marshal: compact, insertion order (callers build dicts in
    the Go struct's field order; gomap() sorts a map's keys), HTML-escaped."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def gomap(d):
    """A Go map[string]T as encoding/json writes it: keys sorted."""
    return {k: d[k] for k in sorted(d)}


def _octal(n, width):
    # archive/tar formatOctal: zero-padded digits then a NUL.
    s = format(n, "o")
    return (s.rjust(width - 1, "0") + "\0").encode()


class GoTar:
    """A tar stream as Go's archive/tar Writer produces it for headers that
    fit USTAR (every test path is shorter than 100 bytes): one 512-byte
    header per entry, the body padded to 512, two zero blocks at the end."""

    def __init__(self):
        self.buf = bytearray()

    def _header(self, name, typeflag, mode, size, mtime, uid, gid, uname, gname):
        assert len(name.encode()) < 100, name
        h = bytearray(512)

        def put(off, width, data):
            h[off:off + len(data)] = data[:width]
        put(0, 100, name.encode())
        put(100, 8, _octal(mode, 8))
        put(108, 8, _octal(uid, 8))
        put(116, 8, _octal(gid, 8))
        put(124, 12, _octal(size, 12))
        put(136, 12, _octal(mtime, 12))
        h[148:156] = b" " * 8
        h[156:157] = typeflag
        put(257, 6, b"ustar\0")
        put(263, 2, b"00")
        put(265, 32, uname.encode())
        put(297, 32, gname.encode())
        put(329, 8, _octal(0, 8))  # devmajor
        put(337, 8, _octal(0, 8))  # devminor
        chk = sum(h)
        h[148:156] = format(chk, "o").rjust(6, "0").encode() + b"\0 "
        self.buf += h

    def add_dir(self, name, mode=0o755, mtime=MTIME, uid=0, gid=0, uname="", gname=""):
        self._header(name, b"5", mode, 0, mtime, uid, gid, uname, gname)

    def add_file(self, name, data, mode=0o644, mtime=MTIME, uid=0, gid=0, uname="", gname=""):
        self._header(name, b"0", mode, len(data), mtime, uid, gid, uname, gname)
        self.buf += data
        if len(data) % 512:
            self.buf += b"\0" * (512 - len(data) % 512)

    def bytes(self):
        return bytes(self.buf) + b"\0" * 1024


def go_gzip(data, level=6):
    """compress/gzip.NewWriter (DefaultCompression is level 6): header with
    no name, mtime 0, XFL 0, OS 255. Deflate streams differ between Go and
    zlib, but any gzip reader sees the same bytes."""
    co = zlib.compressobj(level, zlib.DEFLATED, -15)
    body = co.compress(data) + co.flush()
    return (b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x00\xff" + body
            + struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF))


def payload(name, size):
    """size deterministic pseudo-random bytes, different per file name."""
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return random.Random(seed).randbytes(size)


def gguf_payload(name, size=6 * 1024):
    """A GGUF v3 magic and version, then noise: enough to be recognised by
    a magic sniffer, nothing a loader could use."""
    return b"GGUF" + struct.pack("<I", 3) + payload(name, size - 8)


def descriptor(media_type, blob, annotations=None):
    """An OCI descriptor in image-spec's Go field order (specs-go/v1
    descriptor.go: mediaType, digest, size, ..., annotations)."""
    d = {"mediaType": media_type, "digest": sha256_bytes(blob), "size": len(blob)}
    if annotations:
        d["annotations"] = gomap(annotations)
    return d


def push_manifest_bytes(reg, repo, tag, body, media_type):
    """PUTs body unchanged (mvreg.push_manifest re-serialises with sorted
    keys, which would lose the tool's field order). Returns its digest."""
    reg._req("PUT", f"/v2/{repo}/manifests/{tag}", data=body, headers={"Content-Type": media_type})
    return sha256_bytes(body)


def _push_all(reg, repo, blobs):
    for b in blobs:
        reg.push_blob(repo, b)


# ---- ORAS --------------------------------------------------------------------

# oras-project/oras-go content/file/file.go: defaultBlobMediaType is
# ocispec.MediaTypeImageLayer, defaultBlobDirMediaType MediaTypeImageLayerGzip;
# AnnotationUnpack/AnnotationDigest are io.deis.oras.content.{unpack,digest}.
ORAS_FILE_MT = "application/vnd.oci.image.layer.v1.tar"
ORAS_DIR_MT = "application/vnd.oci.image.layer.v1.tar+gzip"
# image-spec specs-go/v1: DescriptorEmptyJSON (data "{}" inline, base64 e30=).
EMPTY_JSON = b"{}"
EMPTY_DESC = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_bytes(EMPTY_JSON),
              "size": 2, "data": "e30="}


def _oras_manifest(layers):
    # oras-project/oras cmd/oras/root/push.go: with image-spec v1.1 (the
    # default) and no --artifact-type/--config, artifactType is
    # oras.MediaTypeUnknownArtifact; oras-go pack.go packManifestV1_1 uses
    # DescriptorEmptyJSON as config and ensureAnnotationCreated adds
    # org.opencontainers.image.created. ocispec.Manifest field order:
    # schemaVersion, mediaType, artifactType, config, layers, annotations.
    return go_json({
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "artifactType": "application/vnd.unknown.artifact.v1",
        "config": EMPTY_DESC,
        "layers": layers,
        "annotations": {"org.opencontainers.image.created": CREATED},
    })


def oras_file(reg, repo="oras/hello", tag="v1"):
    """`oras push REF hello.txt`: one layer holding the file's raw bytes,
    typed ...image.layer.v1.tar, named by its title (oras-go file.go
    descriptorFromFile + Store.Add sets AnnotationTitle = name)."""
    data = b"hello from oras\n" + payload("hello.txt", 2048)
    layer = descriptor(ORAS_FILE_MT, data, {"org.opencontainers.image.title": "hello.txt"})
    _push_all(reg, repo, [EMPTY_JSON, data])
    dg = push_manifest_bytes(reg, repo, tag, _oras_manifest([layer]), MT_OCI_MANIFEST)
    return Built("oras-file", "oras", reg, repo, tag, dg, {"hello.txt": (data, False)},
                 {"hello.txt": None}, EMPTY_DESC["mediaType"])


def oras_dir(reg, repo="oras/weights", tag="v1"):
    """`oras push REF weights/`: oras CLI cleans the name to "weights"
    (oras cmd/oras/root/file.go loadFiles), oras-go file.go
    descriptorFromDir gzips what utils.go tarDirectory writes: a
    filepath.Walk of the directory (the root itself first, then lexical
    order), each entry named prefix/relative path with no trailing slash
    (header.Name replaces FileInfoHeader's "dir/"), uid/gid 0, empty
    uname/gname, mtimes kept (TarReproducible is false in oras push), modes
    from the files. Annotations: unpack "true", digest of the uncompressed
    tar, title = the name."""
    files = {
        "weights/config.json": json.dumps({"hidden_size": 64}).encode(),
        "weights/model.safetensors": payload("weights/model.safetensors", 8192),
        "weights/tokenizer/tokenizer.json": json.dumps({"vocab": {"a": 0}}).encode(),
    }
    t = GoTar()
    t.add_dir("weights")
    t.add_file("weights/config.json", files["weights/config.json"])
    t.add_file("weights/model.safetensors", files["weights/model.safetensors"])
    t.add_dir("weights/tokenizer")
    t.add_file("weights/tokenizer/tokenizer.json", files["weights/tokenizer/tokenizer.json"])
    tar = t.bytes()
    gz = go_gzip(tar)
    layer = descriptor(ORAS_DIR_MT, gz, {
        "io.deis.oras.content.digest": sha256_bytes(tar),
        "io.deis.oras.content.unpack": "true",
        "org.opencontainers.image.title": "weights",
    })
    _push_all(reg, repo, [EMPTY_JSON, gz])
    dg = push_manifest_bytes(reg, repo, tag, _oras_manifest([layer]), MT_OCI_MANIFEST)
    return Built("oras-dir", "oras", reg, repo, tag, dg, {p: (d, False) for p, d in files.items()},
                 {p: None for p in files}, EMPTY_DESC["mediaType"])


def oras_untitled(reg, repo="oras/untitled", tag="v1"):
    """An artifact made with the oras-go library rather than the CLI: a
    blob pushed with oras.PushBytes (oras-go content.go: a descriptor with
    no annotations, "application/octet-stream" when no media type is
    given) packed by PackManifest. With no title nothing names the file,
    so nothing can be laid out: the pull must fail, naming the manifest
    and the media type, never give an empty volume."""
    data = payload("untitled.bin", 1024)
    layer = descriptor("application/octet-stream", data)
    _push_all(reg, repo, [EMPTY_JSON, data])
    dg = push_manifest_bytes(reg, repo, tag, _oras_manifest([layer]), MT_OCI_MANIFEST)
    return Built("oras-untitled", "oras", reg, repo, tag, dg, {}, {}, EMPTY_DESC["mediaType"])


# ---- KitOps --------------------------------------------------------------------

# kitops-ml/kitops pkg/lib/constants/mediatype/kitops.go: config
# application/vnd.kitops.modelkit.config.v1+json; layers
# application/vnd.kitops.modelkit.<base>.v1.<format>[+gzip|+zstd].
# pkg/lib/constants/mediatype/artifacttype.go: ArtifactTypeKitManifest.
# pkg/lib/constants/consts.go: CliVersionAnnotation.
KIT_CONFIG_MT = "application/vnd.kitops.modelkit.config.v1+json"
KIT_ARTIFACT = "application/vnd.kitops.modelkit.manifest.v1+json"


def _kit_layer_tar(entries):
    """pkg/lib/filesystem/tar.go writeLayerToTar: filepath.Walk(".") from
    the context directory (kit pack chdirs there, pkg/cmd/pack/cmd.go),
    keeping entries in the layer path's tree: its parent directories too
    (sameDirTree), names relative to the context without "./" or a trailing
    slash; sanitizeTarHeader zeroes the times (written as 0), sets uid 1000,
    gid 0, empty uname/gname; modes are FileInfoHeader's permission bits."""
    t = GoTar()
    for name, data, mode in entries:
        if data is None:
            t.add_dir(name, mode, mtime=0, uid=1000, gid=0)
        else:
            t.add_file(name, data, mode, mtime=0, uid=1000, gid=0)
    return t.bytes()


def kitops(reg, repo="kitops/tiny", tag="v1", compression="none"):
    """`kit pack CONTEXT -t REF` then `kit push`: layers model, code,
    datasets, docs in that order (pkg/lib/filesystem/local-storage.go
    saveKitfileLayers), each a tar of its Kitfile path, typed by its base
    and the --compression flag ("none" by default, pkg/cmd/pack/cmd.go),
    annotated org.cncf.model.filepath = the Kitfile path
    (pkg/lib/filesystem/util.go fillDescAnnotations). The config is the
    Kitfile as JSON with each element's layer digest and diffId
    (pkg/artifact/kitfile.go field order, LayerInfo inlined last).

    The Kitfile packed:
        manifestVersion: v1.0.0
        package: {name: tiny, version: 1.0.0, authors: [modelvol tests]}
        model: {name: tiny, path: models/tiny.gguf, framework: llama.cpp, format: gguf}
        code: [{path: src}]
        datasets: [{name: train, path: data}]
        docs: [{path: README.md}]"""
    gguf = gguf_payload("models/tiny.gguf")
    infer = b"import sys\nprint('infer', sys.argv)\n"
    run = b"#!/bin/sh\nexec python3 \"$(dirname \"$0\")/infer.py\" \"$@\"\n"
    train = b"text,label\n" + b"".join(b"row%d,%d\n" % (i, i % 2) for i in range(200))
    evals = b"text,label\n" + b"".join(b"eval%d,%d\n" % (i, i % 2) for i in range(50))
    readme = b"# tiny\n\nA synthetic ModelKit for modelvol tests.\n"
    layers_src = [
        ("model", [("models", None, 0o755), ("models/tiny.gguf", gguf, 0o644)]),
        ("code", [("src", None, 0o755), ("src/infer.py", infer, 0o644), ("src/run.sh", run, 0o755)]),
        ("dataset", [("data", None, 0o755), ("data/eval.csv", evals, 0o644),
                     ("data/train.csv", train, 0o644)]),
        ("docs", [("README.md", readme, 0o644)]),
    ]
    kit_paths = {"model": "models/tiny.gguf", "code": "src", "dataset": "data", "docs": "README.md"}
    suffix = {"none": "tar", "gzip": "tar+gzip"}[compression]
    blobs, layers, info = [], [], {}
    for base, entries in layers_src:
        tar = _kit_layer_tar(entries)
        blob = go_gzip(tar) if compression == "gzip" else tar
        blobs.append(blob)
        layers.append(descriptor(f"application/vnd.kitops.modelkit.{base}.v1.{suffix}", blob,
                                 {"org.cncf.model.filepath": kit_paths[base]}))
        info[base] = {"digest": sha256_bytes(blob), "diffId": sha256_bytes(tar)}
    kitfile = {
        "manifestVersion": "v1.0.0",
        "package": {"name": "tiny", "version": "1.0.0", "authors": ["modelvol tests"]},
        "model": {"name": "tiny", "path": "models/tiny.gguf", "framework": "llama.cpp",
                  "format": "gguf", **info["model"]},
        "code": [{"path": "src", **info["code"]}],
        "datasets": [{"name": "train", "path": "data", **info["dataset"]}],
        "docs": [{"path": "README.md", **info["docs"]}],
    }
    config = go_json(kitfile)
    _push_all(reg, repo, blobs + [config])
    # local-storage.go createManifest (KitFormat): artifactType, config,
    # layers, then the cli-version and created annotations.
    manifest = go_json({
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "artifactType": KIT_ARTIFACT,
        "config": descriptor(KIT_CONFIG_MT, config),
        "layers": layers,
        "annotations": {"ml.kitops.modelkit.cli-version": "1.9.0",
                        "org.opencontainers.image.created": CREATED},
    })
    dg = push_manifest_bytes(reg, repo, tag, manifest, MT_OCI_MANIFEST)
    files = {"models/tiny.gguf": (gguf, False), "src/infer.py": (infer, False),
             "src/run.sh": (run, True), "data/eval.csv": (evals, False),
             "data/train.csv": (train, False), "README.md": (readme, False)}
    kinds = {"models/tiny.gguf": "weights", "src/infer.py": "code", "src/run.sh": "code",
             "data/eval.csv": "datasets", "data/train.csv": "datasets", "README.md": "docs"}
    return Built(f"kitops-{compression}", "kitops", reg, repo, tag, dg, files, kinds, KIT_CONFIG_MT)


# ---- Docker Model Runner -------------------------------------------------------

# docker/model-runner pkg/distribution/types/config.go: config and layer
# media types, annotation keys, FileMetadata field order.
DMR_CONFIG_V01 = "application/vnd.docker.ai.model.config.v0.1+json"
DMR_CONFIG_V02 = "application/vnd.docker.ai.model.config.v0.2+json"
DMR_GGUF = "application/vnd.docker.ai.gguf.v3"
DMR_SAFETENSORS = "application/vnd.docker.ai.safetensors"
DMR_LICENSE = "application/vnd.docker.ai.license"
DMR_MMPROJ = "application/vnd.docker.ai.mmproj"
DMR_TEMPLATE = "application/vnd.docker.ai.chat.template.jinja"
DMR_MODEL_FILE = "application/vnd.docker.ai.model.file"


def _ggcr_desc(media_type, blob, annotations=None):
    # model-runner's oci.Descriptor follows go-containerregistry's v1
    # Descriptor field order: mediaType, size, digest, ..., annotations.
    d = {"mediaType": media_type, "size": len(blob), "digest": sha256_bytes(blob)}
    if annotations:
        d["annotations"] = gomap(annotations)
    return d


def _dmr_named_layer(media_type, relpath, blob, mode=0o644):
    """pkg/distribution/internal/partial/layer.go NewLayerWithRelativePath:
    filepath (the relative path; NewLayer passes the base name), the file
    metadata JSON (name, mode = permission bits, uid 0, gid 0, size, mtime,
    typeflag 0) and mediatype.untested "false"."""
    meta = go_json({"name": os.path.basename(relpath), "mode": mode, "uid": 0, "gid": 0,
                    "size": len(blob), "mtime": CREATED_NANO, "typeflag": 0}).decode()
    return _ggcr_desc(media_type, blob, {
        "org.cncf.model.filepath": relpath,
        "org.cncf.model.file.metadata+json": meta,
        "org.cncf.model.file.mediatype.untested": "false",
    })


def _dmr_push(reg, repo, tag, config_mt, config_obj, blobs, layers):
    config = go_json(config_obj)
    _push_all(reg, repo, blobs + [config])
    # partial.go ManifestForLayersWithVersion: schemaVersion, mediaType
    # (OCI manifest), config, layers; no artifactType, no annotations.
    manifest = go_json({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                        "config": _ggcr_desc(config_mt, config), "layers": layers})
    return push_manifest_bytes(reg, repo, tag, manifest, MT_OCI_MANIFEST)


def _dmr_config(fmt, extra, diff_ids):
    # types/config.go ConfigFile: config, descriptor, rootfs (type "rootfs",
    # diff_ids); Config fields format, quantization, parameters,
    # architecture, size, gguf/safetensors maps.
    return {"config": {"format": fmt, **extra}, "descriptor": {"created": CREATED_NANO},
            "rootfs": {"type": "rootfs", "diff_ids": diff_ids}}


def dmr_gguf(reg, repo="dmr/qwen", tag="v1"):
    """`docker model package --gguf .../Qwen3-0.6B-Q4_K_M.gguf --license
    .../LICENSE --mmproj .../mmproj-F16.gguf --chat-template .../template.jinja`
    as model-runner writes it today: gguf/create.go NewModel makes one
    gguf.v3 layer per shard with partial.NewLayer (filepath = base name),
    the builder appends license, mmproj and template layers the same way
    (internal/mutate), and the manifest keeps the default config type
    v0.1 (internal/partial/model.go BaseModel.Manifest: an empty
    ConfigMediaType means v0.1; only builder/from_directory.go sets v0.2)."""
    names = [("Qwen3-0.6B-Q4_K_M.gguf", DMR_GGUF, gguf_payload("Qwen3-0.6B-Q4_K_M.gguf"), "weights"),
             ("LICENSE", DMR_LICENSE, b"Apache License 2.0 (synthetic)\n", "docs"),
             ("mmproj-Qwen3-0.6B-F16.gguf", DMR_MMPROJ, gguf_payload("mmproj.gguf", 3072), "weights"),
             ("template.jinja", DMR_TEMPLATE, b"{% for m in messages %}{{ m.content }}{% endfor %}\n",
              "config")]
    layers = [_dmr_named_layer(mt, n, b) for n, mt, b, _ in names]
    cfg = _dmr_config("gguf", {"quantization": "Q4_K_M", "parameters": "596.05 M",
                               "architecture": "qwen3", "size": "6.00 KiB",
                               "gguf": gomap({"general.architecture": "qwen3"})},
                      [sha256_bytes(b) for _, _, b, _ in names])
    dg = _dmr_push(reg, repo, tag, DMR_CONFIG_V01, cfg, [b for _, _, b, _ in names], layers)
    return Built("dmr-gguf", "docker-model-runner", reg, repo, tag, dg,
                 {n: (b, False) for n, _, b, _ in names}, {n: k for n, _, _, k in names},
                 DMR_CONFIG_V01)


def dmr_gguf_unnamed(reg, repo="dmr/old", tag="v1", shards=1):
    """An older model-distribution artifact: v0.1 config, layers with no
    annotations at all (GGUF then license). Docker Model Runner names such
    files itself when it bundles a model (pkg/distribution/internal/bundle/
    unpack.go unpackGGUFs: one GGUF is model.gguf, several are
    model-%05d-of-%05d.gguf in layer order). It never unpacks a license;
    decision 2's Ollama naming (LICENSE) is used for it."""
    ggufs = [gguf_payload(f"old-{shards}-{i}") for i in range(shards)]
    lic = b"MIT License (synthetic)\n"
    blobs = ggufs + [lic]
    layers = [_ggcr_desc(DMR_GGUF, g) for g in ggufs] + [_ggcr_desc(DMR_LICENSE, lic)]
    cfg = _dmr_config("gguf", {"quantization": "Q8_0", "parameters": "1.24 B",
                               "architecture": "llama", "size": "1.23 GiB"},
                      [sha256_bytes(b) for b in blobs])
    dg = _dmr_push(reg, repo, tag, DMR_CONFIG_V01, cfg, blobs, layers)
    if shards == 1:
        names = ["model.gguf"]
    else:
        names = [f"model-{i + 1:05d}-of-{shards:05d}.gguf" for i in range(shards)]
    files = {n: (g, False) for n, g in zip(names, ggufs)}
    files["LICENSE"] = (lic, False)
    kinds = {n: "weights" for n in names}
    kinds["LICENSE"] = "docs"
    return Built(f"dmr-unnamed-{shards}", "docker-model-runner", reg, repo, tag, dg, files, kinds,
                 DMR_CONFIG_V01)


def dmr_safetensors(reg, repo="dmr/st", tag="v1"):
    """`docker model package --safetensors-dir DIR`: builder/from_directory.go
    FromDirectory walks DIR (lexical order, hidden files skipped), one layer
    per file with its relative path (NewLayerWithRelativePath), typed by
    files.Classify (safetensors, license, chat template; config and other
    files are vnd.docker.ai.model.file), config type v0.2."""
    files = {
        "LICENSE": (DMR_LICENSE, b"Apache-2.0 (synthetic)\n", "docs"),
        "config.json": (DMR_MODEL_FILE, json.dumps({"architectures": ["Tiny"]}).encode(), "config"),
        "model-00001-of-00002.safetensors": (DMR_SAFETENSORS,
                                             payload("model-00001-of-00002.safetensors", 5000),
                                             "weights"),
        "model-00002-of-00002.safetensors": (DMR_SAFETENSORS,
                                             payload("model-00002-of-00002.safetensors", 3000),
                                             "weights"),
        "text_encoder/config.json": (DMR_MODEL_FILE, b'{"hidden": 8}', "config"),
        "tokenizer.json": (DMR_MODEL_FILE, json.dumps({"vocab": {"b": 1}}).encode(), "config"),
    }
    order = sorted(files)  # filepath.Walk order for these names
    layers = [_dmr_named_layer(files[p][0], p, files[p][1]) for p in order]
    blobs = [files[p][1] for p in order]
    cfg = _dmr_config("safetensors", {"parameters": "8.19 K", "architecture": "Tiny"},
                      [sha256_bytes(b) for b in blobs])
    dg = _dmr_push(reg, repo, tag, DMR_CONFIG_V02, cfg, blobs, layers)
    return Built("dmr-safetensors", "docker-model-runner", reg, repo, tag, dg,
                 {p: (files[p][1], False) for p in order}, {p: files[p][2] for p in order},
                 DMR_CONFIG_V02)


# ---- Ollama ------------------------------------------------------------------------

# ollama/ollama server/images.go WriteManifest and server/manifest.go:
# schemaVersion 2, the Docker manifest v2 media type, config typed
# application/vnd.docker.container.image.v1+json; server/layer.go Layer:
# mediaType, digest, size (from omitted when empty).
OLLAMA_CONFIG_MT = "application/vnd.docker.container.image.v1+json"


def _ollama_layer(kind, blob):
    return {"mediaType": f"application/vnd.ollama.image.{kind}", "digest": sha256_bytes(blob),
            "size": len(blob)}


def ollama(reg, repo="library/tinyllama", tag="1b"):
    """`ollama create` + `ollama push`: the model GGUF, a projector, then
    template, system, license and params layers (server/create.go
    createModel adds them in that order after the model's base layers).
    Layer.From (json "from,omitempty") is left empty, as in the manifests
    registry.ollama.ai serves for its library models."""
    parts = [
        ("model", gguf_payload("ollama-model"), "model.gguf", "weights"),
        ("projector", gguf_payload("ollama-projector", 2048), "projector.gguf", "weights"),
        ("template", b"{{ .System }}\n{{ .Prompt }}", "template.tmpl", "config"),
        ("system", b"You are a tiny test model.", "system.txt", "config"),
        ("license", b"LLAMA 3.2 COMMUNITY LICENSE (synthetic)\n", "LICENSE", "docs"),
        ("params", go_json({"stop": ["<|eot_id|>"], "temperature": 0.6}), "params.json", "config"),
    ]
    blobs = [b for _, b, _, _ in parts]
    # types/model/config.go ConfigV2 field order (empty omitempty fields
    # dropped): model_format, model_family, model_families, model_type,
    # file_type, architecture, os, rootfs (type "layers", diff_ids).
    config = go_json({"model_format": "gguf", "model_family": "llama", "model_families": ["llama"],
                      "model_type": "1.2B", "file_type": "Q4_K_M", "architecture": "amd64",
                      "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": [sha256_bytes(b) for b in blobs]}})
    _push_all(reg, repo, blobs + [config])
    manifest = go_json({"schemaVersion": 2, "mediaType": MT_DOCKER_MANIFEST,
                        "config": {"mediaType": OLLAMA_CONFIG_MT, "digest": sha256_bytes(config),
                                   "size": len(config)},
                        "layers": [_ollama_layer(k, b) for k, b, _, _ in parts]})
    dg = push_manifest_bytes(reg, repo, tag, manifest, MT_DOCKER_MANIFEST)
    return Built("ollama", "ollama", reg, repo, tag, dg, {n: (b, False) for _, b, n, _ in parts},
                 {n: k for _, _, n, k in parts}, OLLAMA_CONFIG_MT)


# ---- modctl (older vnd.cnai.model.* types) -------------------------------------------

# CloudNativeAI/model-spec specs-go/v1 (before the rename to CNCF):
# artifactType application/vnd.cnai.model.manifest.v1+json, config
# application/vnd.cnai.model.config.v1+json, layers
# application/vnd.cnai.model.<kind>.v1.<raw|tar>, annotation
# org.cnai.model.filepath. The file metadata annotation uses the key this
# project reads, org.cncf.model.file.metadata+json (modelpack/model-spec
# specs-go/v1/annotations.go), as the issue's brief asks.
CNAI = "application/vnd.cnai.model."


def _modctl_meta(name, blob, mode):
    # modelpack/modctl pkg/backend/build/builder.go getFileMetadata:
    # model-spec FileMetadata (name, mode = permission bits, uid, gid, size,
    # mtime, typeflag from tar.FileInfoHeader: '0' = 48 for a file).
    return go_json({"name": name, "mode": mode, "uid": 1000, "gid": 1000, "size": len(blob),
                    "mtime": CREATED_NANO, "typeflag": 48}).decode()


def modctl_cnai(reg, repo="modctl/tiny", tag="v1"):
    """`modctl build` of a small model directory: raw layers for the weight,
    its config and a code script (executable), tar layers for a tokenizer
    file and the README. modelpack/modctl pkg/archiver/archiver.go Tar: a
    single-file tar whose entry is the path relative to the work dir (no
    directory entries), FileInfoHeader's mode, uid/gid and mtime."""
    weight = payload("model.safetensors", 7000)
    cfg = json.dumps({"model_type": "tiny"}).encode()
    tok = json.dumps({"vocab": {"c": 2}}).encode()
    readme = b"# tiny (modctl)\n"
    serve = b"#!/bin/sh\necho serving\n"

    def single_tar(name, data):
        t = GoTar()
        t.add_file(name, data, 0o644, MTIME, uid=1000, gid=1000, uname="", gname="")
        return t.bytes()
    tok_tar = single_tar("tokenizer/tokenizer.json", tok)
    readme_tar = single_tar("README.md", readme)
    spec = [  # (media type, relpath, blob, file bytes, mode)
        (CNAI + "weight.v1.raw", "model.safetensors", weight, weight, 0o644),
        (CNAI + "weight.config.v1.raw", "config.json", cfg, cfg, 0o644),
        (CNAI + "weight.config.v1.tar", "tokenizer/tokenizer.json", tok_tar, tok, 0o644),
        (CNAI + "doc.v1.tar", "README.md", readme_tar, readme, 0o644),
        (CNAI + "code.v1.raw", "scripts/serve.sh", serve, serve, 0o755),
    ]
    layers, blobs = [], []
    for mt, rel, blob, data, mode in spec:
        ann = {"org.cnai.model.filepath": rel}
        if mt.endswith(".raw"):
            ann["org.cncf.model.file.metadata+json"] = _modctl_meta(os.path.basename(rel), data,
                                                                     mode)
        layers.append(descriptor(mt, blob, ann))
        blobs.append(blob)
    # model-spec config.go (cnai era): descriptor, modelfs (type "layers",
    # diff_ids), config.
    config = go_json({"descriptor": {"createdAt": CREATED_NANO, "name": "tiny"},
                      "modelfs": {"type": "layers", "diff_ids": [sha256_bytes(b) for b in blobs]},
                      "config": {"format": "safetensors"}})
    _push_all(reg, repo, blobs + [config])
    manifest = go_json({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                        "artifactType": CNAI + "manifest.v1+json",
                        "config": descriptor(CNAI + "config.v1+json", config), "layers": layers})
    dg = push_manifest_bytes(reg, repo, tag, manifest, MT_OCI_MANIFEST)
    files = {rel: (data, mode & 0o111 != 0) for _, rel, _, data, mode in spec}
    kinds = {"model.safetensors": "weights", "config.json": "config",
             "tokenizer/tokenizer.json": "config", "README.md": "docs", "scripts/serve.sh": "code"}
    return Built("modctl-cnai", "modelpack", reg, repo, tag, dg, files, kinds,
                 CNAI + "config.v1+json")


# Every builder whose artifact lays out files, in the order a test runs them.
ALL = [
    oras_file,
    oras_dir,
    lambda reg: kitops(reg),
    lambda reg: kitops(reg, repo="kitops/tiny-gz", compression="gzip"),
    dmr_gguf,
    lambda reg: dmr_gguf_unnamed(reg),
    lambda reg: dmr_gguf_unnamed(reg, repo="dmr/old-sharded", shards=2),
    dmr_safetensors,
    ollama,
    modctl_cnai,
]


def build_all(reg):
    return [b(reg) for b in ALL]
