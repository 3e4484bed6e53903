/* mediatype.c — what a layer media type means to us (family, packing,
 * ModelPack kind), the ModelPack type names, and the manifest Accept list. */
#include "oci.h"

#include <string.h>

#define OCI_LAYER_PREFIX    "application/vnd.oci.image.layer."
#define DOCKER_LAYER_PREFIX "application/vnd.docker.image.rootfs."
#define MODEL_PREFIX        "application/vnd.cncf.model."
#define MODEL_PREFIX_CNAI   "application/vnd.cnai.model."

const char *oci_manifest_accept(void)
{
    return OCI_MT_MANIFEST ", " OCI_MT_INDEX ", " DOCKER_MT_MANIFEST ", " DOCKER_MT_LIST;
}

static const char *const kind_names[] = {
    [MODEL_KIND_WEIGHT] = "weight",   [MODEL_KIND_WEIGHT_CONFIG] = "weight.config",
    [MODEL_KIND_DOC] = "doc",         [MODEL_KIND_CODE] = "code",
    [MODEL_KIND_DATASET] = "dataset",
};

static const char *const fmt_names[] = {
    [OCI_FMT_RAW] = "raw",
    [OCI_FMT_TAR] = "tar",
    [OCI_FMT_TAR_GZIP] = "tar+gzip",
    [OCI_FMT_TAR_ZSTD] = "tar+zstd",
};

#define N_KINDS (sizeof(kind_names) / sizeof(kind_names[0]))
#define N_FMTS  (sizeof(fmt_names) / sizeof(fmt_names[0]))

const char *model_kind_name(model_kind kind)
{
    if ((size_t)kind >= N_KINDS || !kind_names[kind])
        return NULL;
    return kind_names[kind];
}

const char *model_media_type(model_kind kind, oci_layer_format fmt)
{
#define MT(k, f) MODEL_PREFIX k ".v1." f
    static const char *const table[][N_FMTS] = {
        [MODEL_KIND_WEIGHT] = {NULL, MT("weight", "raw"), MT("weight", "tar"),
                               MT("weight", "tar+gzip"), MT("weight", "tar+zstd")},
        [MODEL_KIND_WEIGHT_CONFIG] = {NULL, MT("weight.config", "raw"), MT("weight.config", "tar"),
                                      MT("weight.config", "tar+gzip"),
                                      MT("weight.config", "tar+zstd")},
        [MODEL_KIND_DOC] = {NULL, MT("doc", "raw"), MT("doc", "tar"), MT("doc", "tar+gzip"),
                            MT("doc", "tar+zstd")},
        [MODEL_KIND_CODE] = {NULL, MT("code", "raw"), MT("code", "tar"), MT("code", "tar+gzip"),
                             MT("code", "tar+zstd")},
        [MODEL_KIND_DATASET] = {NULL, MT("dataset", "raw"), MT("dataset", "tar"),
                                MT("dataset", "tar+gzip"), MT("dataset", "tar+zstd")},
    };
#undef MT
    if ((size_t)kind >= N_KINDS || (size_t)fmt >= N_FMTS)
        return NULL;
    return table[kind][fmt];
}

static bool eat(const char **s, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(*s, prefix, n) != 0)
        return false;
    *s += n;
    return true;
}

/* rest is "tar", "tar+gzip" or "tar+zstd" (raw only where allow_raw). */
static oci_layer_format format_of(const char *rest, bool allow_raw)
{
    for (size_t f = allow_raw ? OCI_FMT_RAW : OCI_FMT_TAR; f < N_FMTS; f++)
        if (strcmp(rest, fmt_names[f]) == 0)
            return (oci_layer_format)f;
    return OCI_FMT_UNKNOWN;
}

static void classify_modelpack(const char *rest, oci_media_class *out)
{
    out->family = OCI_FAMILY_MODELPACK;
    /* Longest kind first: "weight.config" also starts with "weight". */
    static const model_kind order[] = {MODEL_KIND_WEIGHT_CONFIG, MODEL_KIND_WEIGHT, MODEL_KIND_DOC,
                                       MODEL_KIND_CODE, MODEL_KIND_DATASET};
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        const char *p = rest;
        if (eat(&p, kind_names[order[i]]) && eat(&p, ".v1.")) {
            out->kind = order[i];
            out->format = format_of(p, true);
            return;
        }
    }
}

bool oci_media_classify(const char *media_type, oci_media_class *out)
{
    *out = (oci_media_class){0};
    if (!media_type || !*media_type)
        return false;
    /* Parameters ("; foo=bar") never change what the bytes are. */
    char buf[256];
    size_t n = strcspn(media_type, "; \t");
    if (n >= sizeof(buf)) {
        out->family = OCI_FAMILY_ORAS;
        out->format = OCI_FMT_RAW;
        return true;
    }
    memcpy(buf, media_type, n);
    buf[n] = '\0';
    const char *p = buf;

    if (eat(&p, OCI_LAYER_PREFIX)) {
        out->family = OCI_FAMILY_OCI;
        out->nondistributable = eat(&p, "nondistributable.");
        if (eat(&p, "v1."))
            out->format = format_of(p, false);
        return true;
    }
    if (eat(&p, DOCKER_LAYER_PREFIX)) {
        out->family = OCI_FAMILY_DOCKER;
        if (strcmp(p, "diff.tar.gzip") == 0) {
            out->format = OCI_FMT_TAR_GZIP;
        } else if (strcmp(p, "foreign.diff.tar.gzip") == 0) {
            out->format = OCI_FMT_TAR_GZIP;
            out->nondistributable = true;
        }
        return true;
    }
    if (eat(&p, MODEL_PREFIX)) {
        classify_modelpack(p, out);
        return true;
    }
    if (eat(&p, MODEL_PREFIX_CNAI)) {
        out->legacy_cnai = true;
        classify_modelpack(p, out);
        return true;
    }
    out->family = OCI_FAMILY_ORAS;
    out->format = OCI_FMT_RAW;
    return true;
}
