/* oci.h — the whole public API of liboci: the OCI data model (references,
 * digests, manifests, indexes, media types, layer paths). No I/O happens
 * behind this header; errors and cleanup come from base/mv.h. */
#ifndef MODELVOL_OCI_H
#define MODELVOL_OCI_H

#include "mv.h"

/* ------------------------------------------------------------------------ */
/* References                                                               */
/* ------------------------------------------------------------------------ */

#define OCI_DOCKER_HUB        "docker.io"
#define OCI_DOCKER_HUB_API    "registry-1.docker.io"
#define OCI_NAME_MAX          255
#define OCI_TAG_MAX           128

/* A parsed, normalised reference [host[:port]/]path[:tag][@digest]. */
typedef struct oci_ref {
    char *registry;   /* normalised registry name: "docker.io", "localhost:5000", "[::1]:5000" */
    char *api_host;   /* host[:port] for API calls: "registry-1.docker.io" for docker.io */
    char *repository; /* "library/ubuntu", "models/llama" */
    char *tag;        /* NULL when absent; "latest" is filled in when neither tag nor digest */
    char *digest;     /* NULL when absent, else a validated digest */
} oci_ref;

/* Parses and normalises. Errors name the offending part, e.g.
 * "reference \"Foo/bar\": repository \"Foo/bar\" has uppercase letters". */
int oci_ref_parse(const char *s, oci_ref **out, mv_error *err);
void oci_ref_free(oci_ref *ref);
MV_DEFINE_FREEP(oci_ref, oci_ref_freep, oci_ref_free)
#define _cleanup_ref_ _cleanup_(oci_ref_freep)
/* Canonical string: registry/repository[:tag][@digest]. Caller frees. */
char *oci_ref_string(const oci_ref *ref);
/* True for localhost, 127.0.0.0/8 and [::1], with or without a port. */
bool oci_host_is_loopback(const char *host);

/* ------------------------------------------------------------------------ */
/* Digests                                                                  */
/* ------------------------------------------------------------------------ */

/* "sha512:" + 128 hex + NUL */
#define OCI_DIGEST_MAX 136

typedef enum { OCI_DIGEST_SHA256 = 0, OCI_DIGEST_SHA512 = 1 } oci_digest_alg;

/* Accepts "sha256:<64 lowercase hex>" and "sha512:<128 lowercase hex>". */
int oci_digest_validate(const char *digest, mv_error *err);
int oci_digest_alg_of(const char *digest, oci_digest_alg *alg, mv_error *err);
/* The hex part of a validated digest (points into digest). */
const char *oci_digest_hex(const char *digest);

/* A streaming hasher on OpenSSL EVP. */
typedef struct oci_hasher oci_hasher;
oci_hasher *oci_hasher_new(oci_digest_alg alg);
void oci_hasher_update(oci_hasher *h, const void *buf, size_t len);
/* Writes "alg:hex" into out (OCI_DIGEST_MAX bytes). The hasher is then reset. */
void oci_hasher_final(oci_hasher *h, char out[OCI_DIGEST_MAX]);
void oci_hasher_free(oci_hasher *h);
MV_DEFINE_FREEP(oci_hasher, oci_hasher_freep, oci_hasher_free)
#define _cleanup_hasher_ _cleanup_(oci_hasher_freep)
/* One-shot digest of a buffer. */
void oci_digest_buf(oci_digest_alg alg, const void *buf, size_t len, char out[OCI_DIGEST_MAX]);

/* ------------------------------------------------------------------------ */
/* Media types                                                              */
/* ------------------------------------------------------------------------ */

#define OCI_MT_MANIFEST       "application/vnd.oci.image.manifest.v1+json"
#define OCI_MT_INDEX          "application/vnd.oci.image.index.v1+json"
#define OCI_MT_CONFIG         "application/vnd.oci.image.config.v1+json"
#define OCI_MT_EMPTY          "application/vnd.oci.empty.v1+json"
#define OCI_MT_LAYER_TAR      "application/vnd.oci.image.layer.v1.tar"
#define OCI_MT_LAYER_GZIP     "application/vnd.oci.image.layer.v1.tar+gzip"
#define OCI_MT_LAYER_ZSTD     "application/vnd.oci.image.layer.v1.tar+zstd"
#define OCI_MT_LAYER_ND_TAR   "application/vnd.oci.image.layer.nondistributable.v1.tar"
#define OCI_MT_LAYER_ND_GZIP  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
#define OCI_MT_LAYER_ND_ZSTD  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
#define DOCKER_MT_MANIFEST    "application/vnd.docker.distribution.manifest.v2+json"
#define DOCKER_MT_LIST        "application/vnd.docker.distribution.manifest.list.v2+json"
#define DOCKER_MT_V1          "application/vnd.docker.distribution.manifest.v1+json"
#define DOCKER_MT_V1_SIGNED   "application/vnd.docker.distribution.manifest.v1+prettyjws"
#define DOCKER_MT_CONFIG      "application/vnd.docker.container.image.v1+json"
#define DOCKER_MT_LAYER_GZIP  "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define DOCKER_MT_LAYER_FOREIGN "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
#define MODEL_ARTIFACT_TYPE   "application/vnd.cncf.model.manifest.v1+json"
#define MODEL_MT_CONFIG       "application/vnd.cncf.model.config.v1+json"
#define MODEL_ARTIFACT_TYPE_CNAI "application/vnd.cnai.model.manifest.v1+json"
#define MODEL_MT_CONFIG_CNAI  "application/vnd.cnai.model.config.v1+json"
/* Layer types are "application/vnd.cncf.model.<kind>.v1.<format>", kind one
 * of weight, weight.config, doc, code, dataset; format raw, tar, tar+gzip,
 * tar+zstd; and the same with "vnd.cnai.model". */

#define OCI_ANNO_TITLE        "org.opencontainers.image.title"
#define MODEL_ANNO_FILEPATH   "org.cncf.model.filepath"
#define MODEL_ANNO_FILEMETA   "org.cncf.model.file.metadata+json"
#define MODEL_ANNO_FILEPATH_CNAI "org.cnai.model.filepath"

/* ORAS (oras-go content/file): a directory pushed as a tar carries these. */
#define ORAS_ANNO_UNPACK      "io.deis.oras.content.unpack"
#define ORAS_ANNO_DIGEST      "io.deis.oras.content.digest"

/* KitOps ModelKits (kitops-ml/kitops pkg/lib/constants/mediatype/): a
 * Kitfile config and "application/vnd.kitops.modelkit.<kind>.v1.<fmt>"
 * layers, kind one of model, modelpart, dataset, code, docs, mcpb; fmt tar
 * or raw, optionally +gzip or +zstd. */
#define KITOPS_ARTIFACT_TYPE  "application/vnd.kitops.modelkit.manifest.v1+json"
#define KITOPS_MT_CONFIG      "application/vnd.kitops.modelkit.config.v1+json"
#define KITOPS_MT_PREFIX      "application/vnd.kitops.modelkit."

/* Docker Model Runner (docker/model-runner pkg/distribution/types/config.go). */
#define DMR_MT_CONFIG_V01     "application/vnd.docker.ai.model.config.v0.1+json"
#define DMR_MT_CONFIG_V02     "application/vnd.docker.ai.model.config.v0.2+json"
#define DMR_MT_GGUF           "application/vnd.docker.ai.gguf.v3"
#define DMR_MT_SAFETENSORS    "application/vnd.docker.ai.safetensors"
#define DMR_MT_VLLM_CONFIG    "application/vnd.docker.ai.vllm.config.tar"
#define DMR_MT_DIR_TAR        "application/vnd.docker.ai.dir.tar"
#define DMR_MT_DDUF           "application/vnd.docker.ai.dduf"
#define DMR_MT_LICENSE        "application/vnd.docker.ai.license"
#define DMR_MT_MMPROJ         "application/vnd.docker.ai.mmproj"
#define DMR_MT_CHAT_TEMPLATE  "application/vnd.docker.ai.chat.template.jinja"
/* Any other file of a model directory (config.json, tokenizer.json, ...),
 * always named by org.cncf.model.filepath (docker/model-runner
 * types/config.go MediaTypeModelFile). */
#define DMR_MT_FILE           "application/vnd.docker.ai.model.file"
#define DMR_MT_PREFIX         "application/vnd.docker.ai."

/* Ollama (ollama/ollama server/images.go GetModel, server/create.go). */
#define OLLAMA_MT_MODEL       "application/vnd.ollama.image.model"
#define OLLAMA_MT_TEMPLATE    "application/vnd.ollama.image.template"
#define OLLAMA_MT_PARAMS      "application/vnd.ollama.image.params"
#define OLLAMA_MT_SYSTEM      "application/vnd.ollama.image.system"
#define OLLAMA_MT_LICENSE     "application/vnd.ollama.image.license"
#define OLLAMA_MT_PROJECTOR   "application/vnd.ollama.image.projector"
#define OLLAMA_MT_ADAPTER     "application/vnd.ollama.image.adapter"
#define OLLAMA_MT_MESSAGES    "application/vnd.ollama.image.messages"
#define OLLAMA_MT_DRAFT       "application/vnd.ollama.image.draft"
#define OLLAMA_MT_PROMPT      "application/vnd.ollama.image.prompt" /* the template's old name */
#define OLLAMA_MT_EMBED       "application/vnd.ollama.image.embed"  /* ignored since 0.1.2 */
#define OLLAMA_MT_PREFIX      "application/vnd.ollama.image."

/* The Accept header value for manifest requests: every type we parse. */
const char *oci_manifest_accept(void);

typedef enum {
    OCI_FMT_UNKNOWN = 0,
    OCI_FMT_RAW,      /* the blob is the file */
    OCI_FMT_TAR,
    OCI_FMT_TAR_GZIP,
    OCI_FMT_TAR_ZSTD,
} oci_layer_format;

typedef enum {
    OCI_FAMILY_UNKNOWN = 0,
    OCI_FAMILY_OCI,       /* application/vnd.oci.image.layer.* */
    OCI_FAMILY_DOCKER,    /* application/vnd.docker.image.rootfs.* */
    OCI_FAMILY_MODELPACK, /* application/vnd.cncf.model.* and vnd.cnai.model.* */
    OCI_FAMILY_ORAS,      /* anything else: an ORAS-style raw blob */
} oci_layer_family;

typedef enum {
    MODEL_KIND_NONE = 0,
    MODEL_KIND_WEIGHT,
    MODEL_KIND_WEIGHT_CONFIG,
    MODEL_KIND_DOC,
    MODEL_KIND_CODE,
    MODEL_KIND_DATASET,
} model_kind;

typedef struct oci_media_class {
    oci_layer_family family;
    oci_layer_format format;
    model_kind kind;          /* MODELPACK only */
    bool nondistributable;    /* OCI nondistributable and Docker foreign layers */
    bool legacy_cnai;         /* spelled vnd.cnai.* */
} oci_media_class;

/* Classifies a layer media type. Unknown non-empty types classify as an
 * ORAS raw blob. Returns false only for NULL or empty strings. A known
 * family prefix with an unknown rest (".v1.tar+lz4", "model.foo.v1.raw")
 * stays in its family with OCI_FMT_UNKNOWN or MODEL_KIND_NONE: the caller
 * must refuse it, never write it out as a raw file. Parameters after ';'
 * are ignored. */
bool oci_media_classify(const char *media_type, oci_media_class *out);
/* "application/vnd.cncf.model.<kind>.v1.<fmt>"; static storage. NULL for
 * MODEL_KIND_NONE or OCI_FMT_UNKNOWN. */
const char *model_media_type(model_kind kind, oci_layer_format fmt);
const char *model_kind_name(model_kind kind); /* "weight", "weight.config", ... */

/* ------------------------------------------------------------------------ */
/* Descriptors, manifests, indexes                                          */
/* ------------------------------------------------------------------------ */

#define OCI_MANIFEST_MAX_BYTES (4 * 1024 * 1024)
#define OCI_MANIFEST_MAX_LAYERS 10000

typedef struct oci_annotation {
    char *key;
    char *value;
} oci_annotation;

typedef struct oci_platform {
    char *architecture;
    char *os;
    char *variant;    /* NULL if absent */
    char *os_version; /* NULL if absent */
} oci_platform;

typedef struct oci_descriptor {
    char *media_type;
    char *digest;      /* validated */
    int64_t size;      /* >= 0 */
    char *artifact_type;
    oci_annotation *annotations;
    size_t n_annotations;
    oci_platform *platform; /* NULL if absent */
    char **urls;
    size_t n_urls;
    char *data;       /* base64 text as given, NULL if absent */
} oci_descriptor;

typedef enum {
    OCI_KIND_MANIFEST = 1,    /* OCI image manifest */
    OCI_KIND_INDEX,           /* OCI image index */
    OCI_KIND_DOCKER_MANIFEST, /* Docker v2 schema 2 */
    OCI_KIND_DOCKER_LIST,     /* Docker manifest list */
} oci_manifest_kind;

typedef struct oci_manifest {
    oci_manifest_kind kind;
    char *media_type;    /* as declared, or the Content-Type, or inferred */
    char *artifact_type; /* NULL if absent */
    bool has_config;
    oci_descriptor config;
    oci_descriptor *layers; /* manifests */
    size_t n_layers;
    oci_descriptor *manifests; /* indexes */
    size_t n_manifests;
    oci_descriptor *subject; /* NULL if absent */
    oci_annotation *annotations;
    size_t n_annotations;
} oci_manifest;

/* Parses a manifest or index. content_type (may be NULL) is the HTTP
 * Content-Type; the document's own mediaType wins when present, and the
 * shape (layers vs manifests) decides when neither is. Schema 1 is rejected
 * as unsupported. Unknown fields are ignored. Returns -EINVAL for malformed
 * or unsupported documents (including any NUL inside a string, duplicate
 * annotation keys, sizes that are not integers in [0, 2^63)), -EBADMSG for
 * one over OCI_MANIFEST_MAX_BYTES or with more than OCI_MANIFEST_MAX_LAYERS
 * layers or manifests. */
int oci_manifest_parse(const void *buf, size_t len, const char *content_type, oci_manifest **out,
                       mv_error *err);
void oci_manifest_free(oci_manifest *m);
MV_DEFINE_FREEP(oci_manifest, oci_manifest_freep, oci_manifest_free)
#define _cleanup_manifest_ _cleanup_(oci_manifest_freep)
static inline bool oci_manifest_is_index(const oci_manifest *m)
{
    return m->kind == OCI_KIND_INDEX || m->kind == OCI_KIND_DOCKER_LIST;
}
/* Serialises to compact JSON with a stable key order, for modelpush.
 * Returns a malloc'd string; *len (may be NULL) gets its length. Top level:
 * schemaVersion, mediaType (from the kind when NULL), artifactType, config
 * (when has_config), layers or manifests, subject, annotations; descriptors:
 * mediaType, digest, size, urls, annotations, data, platform, artifactType.
 * Annotation keys are sorted, so parse(emit(m)) emits byte-identical. */
char *oci_manifest_emit(const oci_manifest *m, size_t *len);
/* Value of an annotation, or NULL. */
const char *oci_annotation_get(const oci_annotation *a, size_t n, const char *key);

/* The file path a raw layer presents, from the annotations
 * org.cncf.model.filepath, then org.opencontainers.image.title, then
 * org.cnai.model.filepath. The path must be relative, free of ".." and NUL;
 * it is normalised ("a//b/./c" -> "a/b/c"). -ENOENT if none is present,
 * -EINVAL if the path is unsafe. Caller frees *out. */
int oci_layer_filepath(const oci_descriptor *d, char **out, mv_error *err);
/* Normalises a relative path; rejects absolute paths, "..", NUL and empty. */
int oci_path_normalize(const char *path, char **out, mv_error *err);

/* Index selection. For images: the platform (os/arch/variant; NULL means
 * linux/amd64, variant matches when the caller's is NULL or equal). With no
 * variant asked, an entry without one is preferred. On arm64 "v8" and no
 * variant are the same; "x86_64" and "aarch64" are accepted for arch. For
 * artifacts: the first entry whose artifactType matches. -ENOENT when none
 * matches, with a message listing what was there; -EINVAL if idx is not an
 * index. *out points into idx. */
int oci_index_select_platform(const oci_manifest *idx, const char *os, const char *arch,
                              const char *variant, const oci_descriptor **out, mv_error *err);
int oci_index_select_artifact(const oci_manifest *idx, const char *artifact_type,
                              const oci_descriptor **out, mv_error *err);

/* ------------------------------------------------------------------------ */
/* Layout plans (layout.c): what each layer of a manifest lays out          */
/* ------------------------------------------------------------------------ */

/* The tool family a manifest comes from, detected once from its
 * artifactType, config media type and layer media types. */
typedef enum {
    OCI_ARTIFACT_UNKNOWN = 0,
    OCI_ARTIFACT_MODELPACK, /* vnd.cncf.model.* / vnd.cnai.model.* (modctl, modelpush) */
    OCI_ARTIFACT_IMAGE,     /* an OCI or Docker image config AND image layers (modelcars) */
    OCI_ARTIFACT_ORAS,      /* any other artifact: titled files, optional unpack */
    OCI_ARTIFACT_KITOPS,    /* KitOps ModelKit (Kitfile config) */
    OCI_ARTIFACT_DMR,       /* Docker Model Runner (vnd.docker.ai.model.config.*) */
    OCI_ARTIFACT_OLLAMA,    /* Ollama (vnd.ollama.image.* layers) */
} oci_artifact_family;
/* "modelpack", "image", "oras", "kitops", "docker-model-runner", "ollama", "unknown". */
const char *oci_artifact_family_name(oci_artifact_family f);

typedef enum {
    OCI_PLACE_SKIP = 0, /* lays out nothing; skip_reason says why */
    OCI_PLACE_FILE,     /* the blob itself is one file at path (zero-copy hard link) */
    OCI_PLACE_UNPACK,   /* a tar (format says which compression): entries land under path */
} oci_placement;

typedef struct oci_layer_plan {
    size_t index;            /* of the layer in m->layers */
    oci_placement place;
    oci_layer_format format; /* OCI_FMT_RAW for FILE; a tar flavour for UNPACK */
    /* FILE: the file's relative path; UNPACK: the relative directory its
     * entries land under, "" for the tree's root. Normalised (no "..", no
     * leading '/', no "//" or "."), NULL for SKIP. */
    char *path;
    model_kind kind;         /* for the kind filter; MODEL_KIND_NONE when the family says nothing */
    bool executable;         /* FILE: mode 0555 instead of 0444 (never setuid/setgid/writable) */
    bool whiteouts;          /* UNPACK: a container image layer (OCI whiteouts apply) */
    char *unpacked_digest;   /* UNPACK: ORAS io.deis.oras.content.digest of the uncompressed tar, or NULL */
    char *skip_reason;       /* SKIP: one line, e.g. "Ollama license is named in the config" */
    /* UNPACK: the directory the layer says its entries fill (its file path
     * or title annotation, normalised), for include/exclude and inspect;
     * NULL when it names none. Added beside the lead's API block. */
    char *declared_path;
    /* UNPACK: every entry must lie under declared_path, as oras-go's file
     * store requires (content/file/utils.go ensureBasePath); the cache
     * refuses a tar with an entry elsewhere. */
    bool confined;
} oci_layer_plan;

typedef struct oci_layout_plan {
    oci_artifact_family family;
    char *default_subpath;  /* "models" for images (modelcars), NULL otherwise */
    oci_layer_plan *layers; /* one per manifest layer, same order */
    size_t n_layers;
} oci_layout_plan;

/* Decides once, with no I/O, what each layer of manifest m lays out.
 * config (may be NULL, config_len 0) is the config blob's bytes, which some
 * families need (Docker Model Runner's older artifacts name files from it).
 * Hostile or contradictory input is an error whose one line names the layer
 * by index and digest: a path that leaves the tree ("../x", "/etc/x"), two
 * layers with the same file path, a file path that is also (or is inside)
 * a directory another layer unpacks into, an unpack flag on a blob that is
 * not a tar. -EINVAL for those, -ENOTSUP for a layer media type of a known
 * family with an unknown format. A layer nobody knows how to place is
 * OCI_PLACE_SKIP with a reason, not an error: the cache decides whether
 * the result would be empty. */
int oci_layout_plan_make(const oci_manifest *m, const void *config, size_t config_len,
                         oci_layout_plan **out, mv_error *err);
void oci_layout_plan_free(oci_layout_plan *p);
MV_DEFINE_FREEP(oci_layout_plan, oci_layout_plan_freep, oci_layout_plan_free)
#define _cleanup_layout_plan_ _cleanup_(oci_layout_plan_freep)

/* The kind filter across families: "weights", "config", "docs", "code",
 * "datasets" (and the model_kind they map to). -EINVAL names the bad word. */
int oci_kind_parse(const char *name, model_kind *out, mv_error *err);
/* NULL for MODEL_KIND_NONE and values out of range. */
const char *oci_kind_filter_name(model_kind k);

/* What a user asks an index for: any of an artifactType, a platform and one
 * annotation key=value; every field given must match. All fields NULL is
 * "no selector": today's rules (see oci_index_select). Owned strings. */
typedef struct oci_index_selector {
    char *artifact_type;
    oci_platform platform; /* os and architecture both set, or both NULL */
    char *annotation_key;
    char *annotation_value;
} oci_index_selector;

/* "os/arch[/variant]" into p (owned strings; arch normalised: x86_64 ->
 * amd64, aarch64 -> arm64). Errors name the input: 'platform "linux": not
 * os/arch[/variant]'. */
int oci_platform_parse(const char *s, oci_platform *p, mv_error *err);
/* "key=value" (the value may be empty, the key not). */
int oci_annotation_selector_parse(const char *s, char **key, char **value, mv_error *err);
/* Fills sel from the three texts (NULL or "" = not asked for). */
int oci_index_selector_parse(const char *artifact_type, const char *platform,
                             const char *annotation, oci_index_selector *sel, mv_error *err);
void oci_index_selector_clear(oci_index_selector *sel);
bool oci_index_selector_empty(const oci_index_selector *sel);
/* "artifactType=T platform=os/arch/v annotation=k=v" with only what was
 * asked for, "" for no selector. Caller frees. */
char *oci_index_selector_string(const oci_index_selector *sel);

/* The one entry of idx the selector picks. With no selector (sel NULL or
 * empty): the first ModelPack artifactType entry (vnd.cncf, then vnd.cnai),
 * else the best host_os/host_arch platform entry, else the only entry that
 * is itself an index. With one: every field given must match (an entry that
 * is an index and lacks a field is not ruled out by it, so nested indexes
 * can be followed); among platform matches only the best is kept. Several
 * matches: -EINVAL listing each candidate (digest, artifactType, platform,
 * annotations); none: -ENOENT listing what was there. *out points into idx. */
int oci_index_select(const oci_manifest *idx, const oci_index_selector *sel, const char *host_os,
                     const char *host_arch, const oci_descriptor **out, mv_error *err);
/* Whether a descriptor's media type names an index or manifest list. */
bool oci_descriptor_is_index(const oci_descriptor *d);

#endif
