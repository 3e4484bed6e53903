/* layout.c — the layout planner: decides once, with no I/O, what each layer
 * of a manifest lays out in a model tree (a file, a tar unpacked under a
 * directory, or nothing and why), from the tool family that pushed it. The
 * cache executes the plan and decides nothing about placement itself.
 *
 * Where each family's facts come from (media types, annotations, names):
 *   ModelPack  modelpack/model-spec specs-go/v1/mediatype.go, annotations.go
 *              (vnd.cncf.model.*; modctl still writes vnd.cnai.model.*)
 *   ORAS       oras-project/oras-go content/file/file.go (title, the
 *              io.deis.oras.content.* annotations, default media types) and
 *              content/file/utils.go (tarDirectory, extractTarGzip)
 *   KitOps     kitops-ml/kitops pkg/lib/constants/mediatype/{kitops,
 *              mediatype,artifacttype}.go (types), pkg/lib/filesystem/
 *              {tar,raw,util}.go (entry names, org.cncf.model.filepath)
 *   DMR        docker/model-runner pkg/distribution/types/config.go (types)
 *              and pkg/distribution/internal/bundle/unpack.go (names)
 *   Ollama     ollama/ollama server/images.go GetModel (types, which repeat);
 *              the file names are ours, documented in docs/usage.md
 *   Images     opencontainers/image-spec media-types.md and Docker's image
 *              manifest v2 schema 2 (config and layer types) */
#include "oci.h"

#include <cJSON.h>
#include <stdarg.h>
#include <string.h>

typedef struct planner {
    const oci_manifest *m;
    oci_layout_plan *p;
    mv_error *err;
    /* Ollama: how many of each repeatable layer were named so far, and the
     * last layer of each single-valued type (the one Ollama keeps). */
    unsigned n_projector, n_adapter, n_license, n_draft;
    size_t n_model, i_model;
    size_t last_template, last_system, last_params, last_messages;
    /* Docker Model Runner's legacy names depend on the totals. */
    size_t n_gguf, n_safetensors, i_gguf, i_safetensors;
    bool mmproj_seen, template_seen, dduf_seen;
    unsigned n_dmr_license;
} planner;

/* ---- small helpers -------------------------------------------------------- */

static bool starts_with(const char *s, const char *prefix)
{
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* The media type without parameters ("; name=x"), in buf. */
static const char *bare_type(const char *mt, char *buf, size_t size)
{
    size_t n = strcspn(mt ? mt : "", "; \t");
    if (n >= size)
        n = size - 1;
    memcpy(buf, mt ? mt : "", n);
    buf[n] = '\0';
    return buf;
}

static const char *anno(const oci_descriptor *d, const char *key)
{
    return oci_annotation_get(d->annotations, d->n_annotations, key);
}

/* Every error names the layer the same way: its index and digest. */
__attribute__((format(printf, 4, 5))) static int layer_error(planner *pl, int code, size_t i,
                                                             const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return mv_error_set(pl->err, code, "layer %zu (%s): %s", i, pl->m->layers[i].digest, msg);
}

static int unsupported(planner *pl, size_t i, const char *family)
{
    return layer_error(pl, -ENOTSUP, i, "unsupported %s media type \"%s\"", family,
                       MV_QUOTED(pl->m->layers[i].media_type));
}

/* The layer's file path from its annotations (org.cncf.model.filepath,
 * title, org.cnai.model.filepath). -ENOENT (no error set) when it has none;
 * -EINVAL naming the layer when the path leaves the tree. */
static int layer_path(planner *pl, size_t i, char **out)
{
    mv_error sub = MV_ERROR_INIT;
    int r = oci_layer_filepath(&pl->m->layers[i], out, &sub);
    if (r == -ENOENT)
        return r;
    if (r < 0)
        return layer_error(pl, r, i, "%s", sub.msg);
    return 0;
}

/* The directory a tar layer says it fills, from the same annotations. "."
 * (kit pack writes it for a Kitfile path of the whole context) names the
 * root: *out stays NULL, as when there is no annotation. */
static int declared_dir(planner *pl, size_t i, char **out)
{
    static const char *const keys[] = {MODEL_ANNO_FILEPATH, OCI_ANNO_TITLE,
                                       MODEL_ANNO_FILEPATH_CNAI};
    *out = NULL;
    const char *v = NULL;
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]) && !v; k++)
        v = anno(&pl->m->layers[i], keys[k]);
    if (!v)
        return 0;
    bool root = v[0] == '.';
    for (const char *c = v; *c && root; c++) {
        size_t n = strcspn(c, "/");
        root = n == 0 || (n == 1 && c[0] == '.');
        c += n;
        if (!*c)
            break;
    }
    if (root)
        return 0;
    int r = layer_path(pl, i, out);
    return r == -ENOENT ? 0 : r;
}

static void set_skip(oci_layer_plan *lp, const char *why)
{
    lp->place = OCI_PLACE_SKIP;
    lp->format = OCI_FMT_UNKNOWN;
    lp->skip_reason = mv_xstrdup(why);
}

static void set_file(oci_layer_plan *lp, char *path, model_kind kind)
{
    lp->place = OCI_PLACE_FILE;
    lp->format = OCI_FMT_RAW;
    lp->path = path;
    lp->kind = kind;
}

static void set_unpack(oci_layer_plan *lp, oci_layer_format fmt, const char *dir, model_kind kind)
{
    lp->place = OCI_PLACE_UNPACK;
    lp->format = fmt;
    lp->path = mv_xstrdup(dir);
    lp->kind = kind;
}

/* Media types whose bytes are, by their own name, not a tar: an unpack flag
 * on one of them contradicts the type. */
static bool type_says_not_tar(const char *mt)
{
    char buf[256];
    const char *t = bare_type(mt, buf, sizeof(buf));
    oci_media_class mc;
    if (oci_media_classify(t, &mc) && mc.family == OCI_FAMILY_MODELPACK)
        return mc.format == OCI_FMT_RAW;
    if (starts_with(t, DMR_MT_PREFIX))
        return !streq(t, DMR_MT_DIR_TAR) && !streq(t, DMR_MT_VLLM_CONFIG);
    if (starts_with(t, OLLAMA_MT_PREFIX))
        return true;
    size_t n = strlen(t);
    static const char *const suffixes[] = {"+json", "+yaml", ".raw", "gguf", "safetensors"};
    for (size_t k = 0; k < sizeof(suffixes) / sizeof(suffixes[0]); k++) {
        size_t sn = strlen(suffixes[k]);
        if (n >= sn && strcmp(t + n - sn, suffixes[k]) == 0)
            return true;
    }
    return streq(t, "application/octet-stream") || starts_with(t, "text/") ||
           streq(t, OCI_MT_EMPTY);
}

static bool unpack_flag(const oci_descriptor *d)
{
    return streq(anno(d, ORAS_ANNO_UNPACK), "true");
}

/* ---- family detection ----------------------------------------------------- */

static bool is_image_config(const char *mt)
{
    return streq(mt, OCI_MT_CONFIG) || streq(mt, DOCKER_MT_CONFIG);
}

static bool is_modelpack_type(const char *mt)
{
    return streq(mt, MODEL_ARTIFACT_TYPE) || streq(mt, MODEL_ARTIFACT_TYPE_CNAI) ||
           streq(mt, MODEL_MT_CONFIG) || streq(mt, MODEL_MT_CONFIG_CNAI);
}

static bool any_layer(const oci_manifest *m, const char *prefix)
{
    for (size_t i = 0; i < m->n_layers; i++)
        if (starts_with(m->layers[i].media_type, prefix))
            return true;
    return false;
}

/* A container image (modelcar): an image config, and nothing but image
 * layers. oras-go titles every layer it writes and image builders never
 * do, so a titled layer makes the manifest an ORAS artifact even under an
 * image config (oras push --config x:application/vnd.oci.image.config...). */
static bool is_image(const oci_manifest *m)
{
    if (!m->has_config || !is_image_config(m->config.media_type) || m->artifact_type)
        return false;
    for (size_t i = 0; i < m->n_layers; i++) {
        oci_media_class mc;
        oci_media_classify(m->layers[i].media_type, &mc);
        if (mc.family != OCI_FAMILY_OCI && mc.family != OCI_FAMILY_DOCKER)
            return false;
        if (anno(&m->layers[i], OCI_ANNO_TITLE))
            return false;
    }
    return true;
}

static oci_artifact_family detect(const oci_manifest *m)
{
    const char *cfg = m->has_config ? m->config.media_type : NULL;
    char buf[256];
    if (cfg)
        cfg = bare_type(cfg, buf, sizeof(buf));
    if (is_modelpack_type(m->artifact_type) || is_modelpack_type(cfg))
        return OCI_ARTIFACT_MODELPACK;
    if (streq(cfg, KITOPS_MT_CONFIG) || streq(m->artifact_type, KITOPS_ARTIFACT_TYPE))
        return OCI_ARTIFACT_KITOPS;
    if (streq(cfg, DMR_MT_CONFIG_V01) || streq(cfg, DMR_MT_CONFIG_V02))
        return OCI_ARTIFACT_DMR;
    if (any_layer(m, OLLAMA_MT_PREFIX))
        return OCI_ARTIFACT_OLLAMA;
    if (any_layer(m, "application/vnd.cncf.model.") || any_layer(m, "application/vnd.cnai.model."))
        return OCI_ARTIFACT_MODELPACK;
    if (any_layer(m, KITOPS_MT_PREFIX))
        return OCI_ARTIFACT_KITOPS;
    if (any_layer(m, DMR_MT_PREFIX))
        return OCI_ARTIFACT_DMR;
    if (is_image(m))
        return OCI_ARTIFACT_IMAGE;
    return OCI_ARTIFACT_ORAS;
}

const char *oci_artifact_family_name(oci_artifact_family f)
{
    switch (f) {
    case OCI_ARTIFACT_MODELPACK:
        return "modelpack";
    case OCI_ARTIFACT_IMAGE:
        return "image";
    case OCI_ARTIFACT_ORAS:
        return "oras";
    case OCI_ARTIFACT_KITOPS:
        return "kitops";
    case OCI_ARTIFACT_DMR:
        return "docker-model-runner";
    case OCI_ARTIFACT_OLLAMA:
        return "ollama";
    case OCI_ARTIFACT_UNKNOWN:
    default:
        return "unknown";
    }
}

/* ---- ORAS ------------------------------------------------------------------- */

/* oras-go's file store gzips every directory it packs whatever type the
 * user gave it (file.go packDirectory), and reads them back only through
 * gzip (utils.go extractTarGzip); so "+zstd" is the one type word trusted,
 * for other writers, and everything else, ".tar" included, is tar+gzip. */
static oci_layer_format oras_tar_format(const char *mt)
{
    char buf[256];
    const char *t = bare_type(mt, buf, sizeof(buf));
    size_t n = strlen(t);
    if (n >= 5 && strcmp(t + n - 5, "+zstd") == 0)
        return OCI_FMT_TAR_ZSTD;
    return OCI_FMT_TAR_GZIP;
}

/* Any layer outside a family's own types: a titled layer is a file whatever
 * its type says (oras-go's default file type is an image layer tar type);
 * with io.deis.oras.content.unpack=true it is a directory tar. */
static int plan_oras(planner *pl, size_t i, oci_layer_plan *lp)
{
    const oci_descriptor *d = &pl->m->layers[i];
    _cleanup_free_ char *path = NULL;
    int r = layer_path(pl, i, &path);
    if (r == -ENOENT) {
        set_skip(lp, "untitled ORAS layer (no " OCI_ANNO_TITLE ")");
        return 0;
    }
    if (r < 0)
        return r;
    if (!unpack_flag(d)) {
        set_file(lp, MV_STEAL(path), MODEL_KIND_NONE);
        return 0;
    }
    if (type_says_not_tar(d->media_type))
        return layer_error(pl, -EINVAL, i, "%s=true on media type \"%s\", which is not a tar",
                           ORAS_ANNO_UNPACK, MV_QUOTED(d->media_type));
    const char *dg = anno(d, ORAS_ANNO_DIGEST);
    if (dg) {
        mv_error sub = MV_ERROR_INIT;
        if (oci_digest_validate(dg, &sub) < 0)
            return layer_error(pl, -EINVAL, i, "annotation %s: %s", ORAS_ANNO_DIGEST, sub.msg);
        lp->unpacked_digest = mv_xstrdup(dg);
    }
    /* tarDirectory names each entry "<title>/...", so the tar lands at the
     * root; extractTarDirectory refuses entries outside the title. */
    set_unpack(lp, oras_tar_format(d->media_type), "", MODEL_KIND_NONE);
    lp->declared_path = MV_STEAL(path);
    lp->confined = true;
    return 0;
}

/* ---- ModelPack --------------------------------------------------------------- */

/* org.cncf.model.file.metadata+json: {"mode": <os.FileMode>, ...}. Only the
 * x bits survive; anything unreadable means "not executable". */
static bool meta_executable(const char *json)
{
    if (!json)
        return false;
    cJSON *j = cJSON_Parse(json);
    bool x = false;
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(j, "mode");
    if (cJSON_IsNumber(mode) && mode->valuedouble >= 0 && mode->valuedouble < 4294967296.0) {
        unsigned long v = (unsigned long)mode->valuedouble;
        x = (v & 0111) != 0;
    }
    cJSON_Delete(j);
    return x;
}

static int plan_modelpack(planner *pl, size_t i, oci_layer_plan *lp)
{
    const oci_descriptor *d = &pl->m->layers[i];
    oci_media_class mc;
    oci_media_classify(d->media_type, &mc);
    if (mc.family != OCI_FAMILY_MODELPACK)
        return plan_oras(pl, i, lp);
    if (mc.kind == MODEL_KIND_NONE || mc.format == OCI_FMT_UNKNOWN)
        return unsupported(pl, i, "ModelPack");
    _cleanup_free_ char *path = NULL;
    int r = mc.format == OCI_FMT_RAW ? layer_path(pl, i, &path) : declared_dir(pl, i, &path);
    if (r < 0 && r != -ENOENT)
        return r;
    if (mc.format == OCI_FMT_RAW) {
        if (unpack_flag(d))
            return layer_error(pl, -EINVAL, i, "%s=true on media type \"%s\", which is not a tar",
                               ORAS_ANNO_UNPACK, MV_QUOTED(d->media_type));
        if (!path) {
            set_skip(lp, "raw ModelPack layer without a file path annotation");
            return 0;
        }
        set_file(lp, MV_STEAL(path), mc.kind);
        lp->executable =
            mc.kind == MODEL_KIND_CODE && meta_executable(anno(d, MODEL_ANNO_FILEMETA));
        return 0;
    }
    /* modctl and modelpush write each entry's path relative to the
     * workspace, so a tar lands at the root whatever directory it names. */
    set_unpack(lp, mc.format, "", mc.kind);
    lp->declared_path = MV_STEAL(path);
    return 0;
}

/* ---- container images --------------------------------------------------------- */

static int plan_image(planner *pl, size_t i, oci_layer_plan *lp)
{
    oci_media_class mc;
    oci_media_classify(pl->m->layers[i].media_type, &mc);
    if (mc.format == OCI_FMT_UNKNOWN || mc.format == OCI_FMT_RAW)
        return unsupported(pl, i, "image layer");
    set_unpack(lp, mc.format, "", MODEL_KIND_NONE);
    lp->whiteouts = true;
    return 0;
}

/* ---- KitOps ------------------------------------------------------------------- */

static const struct {
    const char *word;
    model_kind kind;
} kit_kinds[] = {
    /* "modelpart" before "model": a prefix of it. mcpb is an MCP bundle, a
     * ZIP kit stores verbatim; no filter word names it. */
    {"modelpart", MODEL_KIND_WEIGHT}, {"model", MODEL_KIND_WEIGHT}, {"dataset", MODEL_KIND_DATASET},
    {"code", MODEL_KIND_CODE},        {"docs", MODEL_KIND_DOC},     {"mcpb", MODEL_KIND_NONE},
};

/* "application/vnd.kitops.modelkit.<kind>.v1.<tar|raw>[+gzip|+zstd]", as
 * kitopsMediaType.String() spells it (gzip-fastest is written "+gzip"). */
static bool kit_parse(const char *t, size_t *kind, bool *raw, oci_layer_format *fmt)
{
    const char *rest = t + strlen(KITOPS_MT_PREFIX);
    for (size_t k = 0; k < sizeof(kit_kinds) / sizeof(kit_kinds[0]); k++) {
        size_t n = strlen(kit_kinds[k].word);
        if (strncmp(rest, kit_kinds[k].word, n) != 0 || strncmp(rest + n, ".v1.", 4) != 0)
            continue;
        const char *f = rest + n + 4;
        *kind = k;
        *raw = starts_with(f, "raw");
        if (*raw || starts_with(f, "tar"))
            f += 3;
        else
            return false;
        *fmt = !*f                 ? (*raw ? OCI_FMT_RAW : OCI_FMT_TAR)
               : streq(f, "+gzip") ? OCI_FMT_TAR_GZIP
               : streq(f, "+zstd") ? OCI_FMT_TAR_ZSTD
                                   : OCI_FMT_UNKNOWN;
        return *fmt != OCI_FMT_UNKNOWN;
    }
    return false;
}

static int plan_kitops(planner *pl, size_t i, oci_layer_plan *lp)
{
    const oci_descriptor *d = &pl->m->layers[i];
    char buf[256];
    const char *t = bare_type(d->media_type, buf, sizeof(buf));
    if (!starts_with(t, KITOPS_MT_PREFIX))
        return plan_oras(pl, i, lp);
    size_t k = 0;
    bool raw = false;
    oci_layer_format fmt = OCI_FMT_UNKNOWN;
    /* A compressed raw layer is a single gzip or zstd file: there is no
     * zero-copy way to present it, and no tar to unpack. */
    if (!kit_parse(t, &k, &raw, &fmt) || (raw && fmt != OCI_FMT_RAW))
        return unsupported(pl, i, "KitOps");
    _cleanup_free_ char *path = NULL;
    if (raw) {
        if (unpack_flag(d))
            return layer_error(pl, -EINVAL, i, "%s=true on media type \"%s\", which is not a tar",
                               ORAS_ANNO_UNPACK, MV_QUOTED(d->media_type));
        /* raw.go: the blob is the file, named by org.cncf.model.filepath. */
        int r = layer_path(pl, i, &path);
        if (r == -ENOENT) {
            set_skip(lp, "raw KitOps layer without a file path annotation");
            lp->kind = kit_kinds[k].kind;
            return 0;
        }
        if (r < 0)
            return r;
        set_file(lp, MV_STEAL(path), kit_kinds[k].kind);
        lp->executable =
            kit_kinds[k].kind == MODEL_KIND_CODE && meta_executable(anno(d, MODEL_ANNO_FILEMETA));
        return 0;
    }
    int r = declared_dir(pl, i, &path);
    if (r < 0)
        return r;
    /* tar.go walks from the context directory and names each entry by its
     * path there, parents included, so the tar lands at the root. */
    set_unpack(lp, fmt, "", kit_kinds[k].kind);
    lp->declared_path = MV_STEAL(path);
    return 0;
}

/* ---- Docker Model Runner -------------------------------------------------------- */

static void dmr_count(planner *pl)
{
    for (size_t i = 0; i < pl->m->n_layers; i++) {
        char buf[256];
        const char *t = bare_type(pl->m->layers[i].media_type, buf, sizeof(buf));
        pl->n_gguf += streq(t, DMR_MT_GGUF);
        pl->n_safetensors += streq(t, DMR_MT_SAFETENSORS);
    }
}

/* Older artifacts name nothing; Docker Model Runner's bundle names them
 * (bundle/unpack.go): one GGUF is model.gguf, shards are
 * model-%05d-of-%05d.gguf in layer order, likewise for safetensors; the
 * first projector is model.mmproj, the first template template.jinja. It
 * never unpacks licenses; we name them LICENSE, LICENSE-2, ... as for
 * Ollama. The first DDUF keeps its blob's file name plus ".dduf", and the
 * store names blobs by the hex of their DiffID, the digest of these
 * uncompressed layers (store/blobs.go blobPath). */
static char *dmr_legacy_name(planner *pl, size_t i, const char *t, const char **skip)
{
    *skip = NULL;
    if (streq(t, DMR_MT_GGUF)) {
        size_t k = ++pl->i_gguf;
        return pl->n_gguf == 1 ? mv_xstrdup("model.gguf")
                               : mv_xasprintf("model-%05zu-of-%05zu.gguf", k, pl->n_gguf);
    }
    if (streq(t, DMR_MT_SAFETENSORS)) {
        size_t k = ++pl->i_safetensors;
        return pl->n_safetensors == 1
                   ? mv_xstrdup("model.safetensors")
                   : mv_xasprintf("model-%05zu-of-%05zu.safetensors", k, pl->n_safetensors);
    }
    if (streq(t, DMR_MT_MMPROJ)) {
        if (pl->mmproj_seen) {
            *skip = "Docker Model Runner uses only the first unnamed projector";
            return NULL;
        }
        pl->mmproj_seen = true;
        return mv_xstrdup("model.mmproj");
    }
    if (streq(t, DMR_MT_CHAT_TEMPLATE)) {
        if (pl->template_seen) {
            *skip = "Docker Model Runner uses only the first unnamed chat template";
            return NULL;
        }
        pl->template_seen = true;
        return mv_xstrdup("template.jinja");
    }
    if (streq(t, DMR_MT_LICENSE)) {
        unsigned k = ++pl->n_dmr_license;
        return k == 1 ? mv_xstrdup("LICENSE") : mv_xasprintf("LICENSE-%u", k);
    }
    /* DMR_MT_DDUF */
    if (pl->dduf_seen) {
        *skip = "Docker Model Runner uses only the first unnamed DDUF file";
        return NULL;
    }
    pl->dduf_seen = true;
    return mv_xasprintf("%s.dduf", oci_digest_hex(pl->m->layers[i].digest));
}

static int plan_dmr(planner *pl, size_t i, oci_layer_plan *lp)
{
    const oci_descriptor *d = &pl->m->layers[i];
    char buf[256];
    const char *t = bare_type(d->media_type, buf, sizeof(buf));
    if (!starts_with(t, DMR_MT_PREFIX))
        return plan_oras(pl, i, lp);
    if (streq(t, DMR_MT_DIR_TAR) || streq(t, DMR_MT_VLLM_CONFIG)) {
        _cleanup_free_ char *path = NULL;
        int r = declared_dir(pl, i, &path);
        if (r < 0)
            return r;
        /* bundle/unpack.go extracts both, uncompressed, into the model
         * directory, which is our tree's root. */
        set_unpack(lp, OCI_FMT_TAR, "", MODEL_KIND_WEIGHT_CONFIG);
        lp->declared_path = MV_STEAL(path);
        return 0;
    }
    if (streq(t, DMR_MT_FILE)) {
        /* `docker model package --safetensors-dir` sends every file that is
         * not a weight this way, each named; there is no legacy name. */
        if (unpack_flag(d))
            return layer_error(pl, -EINVAL, i, "%s=true on media type \"%s\", which is not a tar",
                               ORAS_ANNO_UNPACK, MV_QUOTED(d->media_type));
        _cleanup_free_ char *path = NULL;
        int r = layer_path(pl, i, &path);
        if (r == -ENOENT) {
            set_skip(lp, "Docker Model Runner file layer without " MODEL_ANNO_FILEPATH);
            lp->kind = MODEL_KIND_WEIGHT_CONFIG;
            return 0;
        }
        if (r < 0)
            return r;
        set_file(lp, MV_STEAL(path), MODEL_KIND_WEIGHT_CONFIG);
        return 0;
    }
    model_kind kind;
    if (streq(t, DMR_MT_GGUF) || streq(t, DMR_MT_SAFETENSORS) || streq(t, DMR_MT_DDUF) ||
        streq(t, DMR_MT_MMPROJ))
        kind = MODEL_KIND_WEIGHT;
    else if (streq(t, DMR_MT_LICENSE))
        kind = MODEL_KIND_DOC;
    else if (streq(t, DMR_MT_CHAT_TEMPLATE))
        kind = MODEL_KIND_WEIGHT_CONFIG;
    else
        return unsupported(pl, i, "Docker Model Runner");
    if (unpack_flag(d))
        return layer_error(pl, -EINVAL, i, "%s=true on media type \"%s\", which is not a tar",
                           ORAS_ANNO_UNPACK, MV_QUOTED(d->media_type));
    _cleanup_free_ char *path = NULL;
    int r = layer_path(pl, i, &path);
    if (r < 0 && r != -ENOENT)
        return r;
    /* Counted even when named, so shard numbers follow layer order. */
    const char *skip = NULL;
    _cleanup_free_ char *legacy = dmr_legacy_name(pl, i, t, &skip);
    if (path) {
        set_file(lp, MV_STEAL(path), kind);
        return 0;
    }
    if (skip) {
        set_skip(lp, skip);
        lp->kind = kind;
        return 0;
    }
    set_file(lp, MV_STEAL(legacy), kind);
    return 0;
}

/* ---- Ollama ----------------------------------------------------------------------- */

static void ollama_count(planner *pl)
{
    for (size_t i = 0; i < pl->m->n_layers; i++) {
        char buf[256];
        const char *t = bare_type(pl->m->layers[i].media_type, buf, sizeof(buf));
        /* GetModel reads each of these into one field: the last one wins.
         * The template's old name shares its field. Stored 1-based. */
        if (streq(t, OLLAMA_MT_TEMPLATE) || streq(t, OLLAMA_MT_PROMPT))
            pl->last_template = i + 1;
        else if (streq(t, OLLAMA_MT_SYSTEM))
            pl->last_system = i + 1;
        else if (streq(t, OLLAMA_MT_PARAMS))
            pl->last_params = i + 1;
        else if (streq(t, OLLAMA_MT_MESSAGES))
            pl->last_messages = i + 1;
        else if (streq(t, OLLAMA_MT_MODEL))
            pl->n_model++;
    }
}

/* A numbered name for the k-th of a repeatable layer: "stem.ext",
 * "stem-2.ext", ... (ext may be empty). */
static char *nth_name(const char *stem, const char *ext, unsigned k)
{
    return k == 1 ? mv_xasprintf("%s%s", stem, ext) : mv_xasprintf("%s-%u%s", stem, k, ext);
}

static int plan_ollama(planner *pl, size_t i, oci_layer_plan *lp)
{
    const oci_descriptor *d = &pl->m->layers[i];
    char buf[256];
    const char *t = bare_type(d->media_type, buf, sizeof(buf));
    if (!starts_with(t, OLLAMA_MT_PREFIX))
        return plan_oras(pl, i, lp);
    if (unpack_flag(d))
        return layer_error(pl, -EINVAL, i, "%s=true on media type \"%s\", which is not a tar",
                           ORAS_ANNO_UNPACK, MV_QUOTED(d->media_type));
    /* Ollama names no files; these names are ours (docs/usage.md). */
    char *name = NULL;
    model_kind kind = MODEL_KIND_WEIGHT_CONFIG;
    size_t last = 0;
    if (streq(t, OLLAMA_MT_MODEL)) {
        /* A split GGUF comes as several model layers; llama.cpp finds the
         * rest of a split from the first one's "-0000k-of-0000n" name. */
        size_t k = ++pl->i_model;
        name = pl->n_model == 1 ? mv_xstrdup("model.gguf")
                                : mv_xasprintf("model-%05zu-of-%05zu.gguf", k, pl->n_model);
        kind = MODEL_KIND_WEIGHT;
    } else if (streq(t, OLLAMA_MT_PROJECTOR)) {
        name = nth_name("projector", ".gguf", ++pl->n_projector);
        kind = MODEL_KIND_WEIGHT;
    } else if (streq(t, OLLAMA_MT_ADAPTER)) {
        name = nth_name("adapter", ".gguf", ++pl->n_adapter);
        kind = MODEL_KIND_WEIGHT;
    } else if (streq(t, OLLAMA_MT_DRAFT)) {
        name = nth_name("draft", ".gguf", ++pl->n_draft);
        kind = MODEL_KIND_WEIGHT;
    } else if (streq(t, OLLAMA_MT_LICENSE)) {
        name = nth_name("LICENSE", "", ++pl->n_license);
        kind = MODEL_KIND_DOC;
    } else if (streq(t, OLLAMA_MT_TEMPLATE) || streq(t, OLLAMA_MT_PROMPT)) {
        name = mv_xstrdup("template.tmpl");
        last = pl->last_template;
    } else if (streq(t, OLLAMA_MT_PARAMS)) {
        name = mv_xstrdup("params.json");
        last = pl->last_params;
    } else if (streq(t, OLLAMA_MT_SYSTEM)) {
        name = mv_xstrdup("system.txt");
        last = pl->last_system;
    } else if (streq(t, OLLAMA_MT_MESSAGES)) {
        name = mv_xstrdup("messages.json");
        last = pl->last_messages;
    } else if (streq(t, OLLAMA_MT_EMBED)) {
        set_skip(lp, "Ollama ignores embed layers (deprecated since 0.1.2)");
        return 0;
    } else {
        /* e.g. the safetensors "tensor" layers: one tensor per blob, no file
         * a runtime could open. */
        return unsupported(pl, i, "Ollama");
    }
    if (last && last != i + 1) {
        free(name);
        set_skip(lp, "superseded by a later layer of the same type (Ollama keeps the last)");
        lp->kind = kind;
        return 0;
    }
    set_file(lp, name, kind);
    return 0;
}

/* ---- conflicts ------------------------------------------------------------------- */

typedef struct claim {
    const char *path;
    size_t layer;
    bool dir;      /* a path an UNPACK layer says it fills */
    bool confined; /* ...and all its entries lie under it (ORAS) */
} claim;

static int cmp_claim(const void *a, const void *b)
{
    const claim *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    if (c)
        return c;
    return x->layer < y->layer ? -1 : x->layer > y->layer;
}

static const claim *find_claim(const claim *c, size_t n, const char *path, size_t len)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strncmp(c[mid].path, path, len);
        if (r == 0 && c[mid].path[len] != '\0')
            r = 1;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < n && strncmp(c[lo].path, path, len) == 0 && c[lo].path[len] == '\0')
        return &c[lo];
    return NULL;
}

/* Two files at one path, a file where a directory must be (another file's
 * parent, or a directory a tar says it fills), fail before anything is
 * fetched. Sorted, so a manifest of 10000 layers costs n log n. */
static int check_conflicts(planner *pl)
{
    const oci_layout_plan *p = pl->p;
    _cleanup_free_ claim *c = mv_xcalloc(p->n_layers ? p->n_layers : 1, sizeof(*c));
    size_t n = 0;
    for (size_t i = 0; i < p->n_layers; i++) {
        const oci_layer_plan *lp = &p->layers[i];
        if (lp->place == OCI_PLACE_FILE)
            c[n++] = (claim){lp->path, i, false, false};
        else if (lp->place == OCI_PLACE_UNPACK && lp->declared_path)
            c[n++] = (claim){lp->declared_path, i, true, lp->confined};
    }
    qsort(c, n, sizeof(*c), cmp_claim);
    for (size_t k = 1; k < n; k++) {
        if (strcmp(c[k - 1].path, c[k].path) != 0 || (c[k - 1].dir && c[k].dir))
            continue;
        const claim *a = c[k - 1].dir ? &c[k] : &c[k - 1], *b = a == &c[k] ? &c[k - 1] : &c[k];
        if (!b->dir)
            return layer_error(pl, -EINVAL, b->layer, "file path \"%s\" is also layer %zu's (%s)",
                               MV_QUOTED(b->path), a->layer, pl->m->layers[a->layer].digest);
        return layer_error(pl, -EINVAL, a->layer,
                           "file path \"%s\" is the %s layer %zu (%s) unpacks into",
                           MV_QUOTED(a->path), b->confined ? "directory" : "path", b->layer,
                           pl->m->layers[b->layer].digest);
    }
    /* Claims sharing a path are all directories by now; find_claim returns
     * the first of them, so let it speak for a confined one if any. */
    for (size_t k = n; k-- > 1;)
        if (c[k].confined && !c[k - 1].confined && strcmp(c[k - 1].path, c[k].path) == 0)
            c[k - 1] = c[k];
    for (size_t k = 0; k < n; k++) {
        const char *s = c[k].path;
        for (const char *slash = strchr(s, '/'); slash; slash = strchr(slash + 1, '/')) {
            const claim *parent = find_claim(c, n, s, (size_t)(slash - s));
            if (!parent)
                continue;
            /* A file is never a parent. A tar's path inside another's is
             * fine, and so is a file inside a KitOps or ModelPack tar's
             * path: kit pack leaves out of a layer's tar the paths other
             * layers pack (tar.go, ignore.Matches). Only ORAS promises that
             * its tar fills the directory alone. */
            if (parent->dir && (c[k].dir || !parent->confined))
                continue;
            if (!parent->dir)
                return layer_error(pl, -EINVAL, parent->layer,
                                   "file path \"%s\" is a directory in layer %zu's path \"%s\"",
                                   MV_QUOTED(parent->path), c[k].layer, MV_QUOTED(s));
            return layer_error(pl, -EINVAL, c[k].layer,
                               "file path \"%s\" is inside the directory layer %zu (%s) unpacks "
                               "into",
                               MV_QUOTED(s), parent->layer, pl->m->layers[parent->layer].digest);
        }
    }
    return 0;
}

/* ---- the plan ------------------------------------------------------------------ */

void oci_layout_plan_free(oci_layout_plan *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_layers; i++) {
        free(p->layers[i].path);
        free(p->layers[i].unpacked_digest);
        free(p->layers[i].skip_reason);
        free(p->layers[i].declared_path);
    }
    free(p->layers);
    free(p->default_subpath);
    free(p);
}

int oci_layout_plan_make(const oci_manifest *m, const void *config, size_t config_len,
                         oci_layout_plan **out, mv_error *err)
{
    *out = NULL;
    if (oci_manifest_is_index(m))
        return mv_error_set(err, -EINVAL, "an index has no layout; choose a manifest from it");
    _cleanup_layout_plan_ oci_layout_plan *p = mv_xcalloc(1, sizeof(*p));
    p->family = detect(m);
    p->layers = mv_xcalloc(m->n_layers ? m->n_layers : 1, sizeof(*p->layers));
    p->n_layers = m->n_layers;
    if (p->family == OCI_ARTIFACT_IMAGE)
        p->default_subpath = mv_xstrdup("models");
    /* No family needs the config yet: Docker Model Runner's legacy names
     * follow from the layer types and their order (bundle/unpack.go). The
     * bytes stay in the API for the family that will. */
    (void)config;
    (void)config_len;
    planner pl = {.m = m, .p = p, .err = err};
    if (p->family == OCI_ARTIFACT_DMR)
        dmr_count(&pl);
    if (p->family == OCI_ARTIFACT_OLLAMA)
        ollama_count(&pl);
    for (size_t i = 0; i < m->n_layers; i++) {
        oci_layer_plan *lp = &p->layers[i];
        lp->index = i;
        int r;
        switch (p->family) {
        case OCI_ARTIFACT_MODELPACK:
            r = plan_modelpack(&pl, i, lp);
            break;
        case OCI_ARTIFACT_IMAGE:
            r = plan_image(&pl, i, lp);
            break;
        case OCI_ARTIFACT_KITOPS:
            r = plan_kitops(&pl, i, lp);
            break;
        case OCI_ARTIFACT_DMR:
            r = plan_dmr(&pl, i, lp);
            break;
        case OCI_ARTIFACT_OLLAMA:
            r = plan_ollama(&pl, i, lp);
            break;
        case OCI_ARTIFACT_ORAS:
        case OCI_ARTIFACT_UNKNOWN:
        default:
            r = plan_oras(&pl, i, lp);
            break;
        }
        if (r < 0)
            return r;
    }
    int r = check_conflicts(&pl);
    if (r < 0)
        return r;
    *out = MV_STEAL(p);
    return 0;
}

/* ---- the kind filter ------------------------------------------------------------ */

static const char *const filter_names[] = {
    [MODEL_KIND_WEIGHT] = "weights",   [MODEL_KIND_WEIGHT_CONFIG] = "config",
    [MODEL_KIND_DOC] = "docs",         [MODEL_KIND_CODE] = "code",
    [MODEL_KIND_DATASET] = "datasets",
};

const char *oci_kind_filter_name(model_kind k)
{
    if ((size_t)k >= sizeof(filter_names) / sizeof(filter_names[0]))
        return NULL;
    return filter_names[k];
}

int oci_kind_parse(const char *name, model_kind *out, mv_error *err)
{
    for (size_t k = 1; k < sizeof(filter_names) / sizeof(filter_names[0]); k++)
        if (streq(name, filter_names[k])) {
            *out = (model_kind)k;
            return 0;
        }
    return mv_error_set(err, -EINVAL,
                        "kind \"%s\" is not one of weights, config, docs, code, datasets",
                        MV_QUOTED(name ? name : ""));
}
