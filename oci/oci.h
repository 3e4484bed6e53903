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
