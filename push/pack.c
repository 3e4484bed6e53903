/* pack.c — turns a model directory into a pack: walks it (walk.c),
 * classifies each file into a ModelPack kind, hashes every file in one read
 * (hash.c) or streams it into a deterministic tar layer (tar.c), and builds
 * the config and manifest. No network here: the same directory and options
 * always give the same manifest bytes. */
#include "push-internal.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Time                                                                     */
/* ------------------------------------------------------------------------ */

const char *push_time_rfc3339(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, len, "1970-01-01T00:00:00Z");
    return buf;
}

int push_parse_time(const char *s, int64_t *out, mv_error *err)
{
    if (!s || !*s)
        return mv_error_set(err, -EINVAL, "empty time");
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno == 0 && *end == '\0' && v >= 0) {
        *out = v;
        return 0;
    }
    struct tm tm = {0};
    const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (rest && *rest == '.') /* fractional seconds: dropped */
        for (rest++; *rest >= '0' && *rest <= '9'; rest++)
            ;
    if (!rest || (strcmp(rest, "Z") != 0 && strcmp(rest, "z") != 0 && strcmp(rest, "+00:00") != 0))
        return mv_error_set(err, -EINVAL,
                            "time \"%s\" is neither seconds since the epoch nor "
                            "RFC 3339 UTC (2024-05-01T12:00:00Z)",
                            s);
    *out = (int64_t)timegm(&tm);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Config and manifest                                                      */
/* ------------------------------------------------------------------------ */

void push_annos_add(oci_descriptor *d, const char *k, const char *v)
{
    d->annotations = mv_xrealloc(d->annotations, (d->n_annotations + 1) * sizeof(oci_annotation));
    d->annotations[d->n_annotations].key = mv_xstrdup(k);
    d->annotations[d->n_annotations].value = mv_xstrdup(v);
    d->n_annotations++;
}

static int anno_cmp(const void *a, const void *b)
{
    return strcmp(((const oci_annotation *)a)->key, ((const oci_annotation *)b)->key);
}

static void descriptor_clear(oci_descriptor *d)
{
    free(d->media_type);
    free(d->digest);
    free(d->artifact_type);
    for (size_t i = 0; i < d->n_annotations; i++) {
        free(d->annotations[i].key);
        free(d->annotations[i].value);
    }
    free(d->annotations);
    memset(d, 0, sizeof(*d));
}

static char *file_metadata_json(const push_file *f, int64_t mtime)
{
    const char *base = strrchr(f->rel, '/');
    char when[32];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", base ? base + 1 : f->rel);
    cJSON_AddNumberToObject(o, "mode", f->mode);
    cJSON_AddNumberToObject(o, "uid", 0);
    cJSON_AddNumberToObject(o, "gid", 0);
    cJSON_AddNumberToObject(o, "size", (double)f->size);
    cJSON_AddStringToObject(o, "mtime", push_time_rfc3339(mtime, when, sizeof(when)));
    cJSON_AddNumberToObject(o, "typeflag", '0'); /* tar.TypeReg, as a byte */
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

push_blob *push_blob_add(push_pack *p, const char *digest)
{
    for (size_t i = 0; i < p->n_blobs; i++)
        if (strcmp(p->blobs[i].digest, digest) == 0)
            return NULL; /* the same bytes twice: upload once */
    p->blobs = mv_xrealloc(p->blobs, (p->n_blobs + 1) * sizeof(*p->blobs));
    push_blob *b = &p->blobs[p->n_blobs++];
    memset(b, 0, sizeof(*b));
    b->fd = -1;
    snprintf(b->digest, sizeof(b->digest), "%s", digest);
    return b;
}

oci_descriptor *push_layer_add(push_pack *p)
{
    oci_manifest *m = &p->manifest;
    m->layers = mv_xrealloc(m->layers, (m->n_layers + 1) * sizeof(*m->layers));
    oci_descriptor *d = &m->layers[m->n_layers++];
    memset(d, 0, sizeof(*d));
    return d;
}

static int add_raw_layer(push_pack *p, const push_file *f, const push_pack_opts *o)
{
    oci_descriptor *d = push_layer_add(p);
    d->digest = mv_xstrdup(f->digest);
    d->size = (int64_t)f->size;
    if (o->spec.format == PUSH_FORMAT_ORAS) {
        d->media_type = mv_xstrdup(PUSH_MT_OCTET);
        push_annos_add(d, OCI_ANNO_TITLE, f->rel);
    } else {
        d->media_type = mv_xstrdup(model_media_type(f->kind, OCI_FMT_RAW));
        _cleanup_free_ char *meta = file_metadata_json(f, o->spec.created);
        push_annos_add(d, MODEL_ANNO_FILEPATH, f->rel);
        push_annos_add(d, OCI_ANNO_TITLE, f->rel);
        push_annos_add(d, MODEL_ANNO_FILEMETA, meta);
        if (f->guessed)
            push_annos_add(d, MODEL_ANNO_UNTESTED, "true");
        /* Sorted keys: the bytes must not depend on insertion order. */
        qsort(d->annotations, d->n_annotations, sizeof(*d->annotations), anno_cmp);
    }
    return 0;
}

static int pack_layers(push_pack *p, const push_pack_opts *o, cJSON *diff_ids, mv_error *err)
{
    uint64_t tar_max = o->spec.tar_max ? o->spec.tar_max : PUSH_DEFAULT_TAR_MAX;
    if (o->spec.tar)
        for (size_t i = 0; i < p->n_files; i++)
            p->files[i].in_tar = p->files[i].size <= tar_max;
    if (o->hash_cache)
        push_hashcache_apply(o->hash_cache, p->files, p->n_files);
    int r = push_hash_files(p->files, p->n_files, o->jobs, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < p->n_files; i++) {
        if (p->files[i].cached)
            p->n_cached++;
        else
            p->n_hashed++;
    }
    if (o->hash_cache)
        push_hashcache_store(o->hash_cache, p->files, p->n_files,
                             o->now ? o->now : (int64_t)time(NULL));
    /* Raw layers in path order, then one tar per kind in kind order. */
    for (size_t i = 0; i < p->n_files; i++) {
        push_file *f = &p->files[i];
        if (f->in_tar)
            continue;
        add_raw_layer(p, f, o);
        cJSON_AddItemToArray(diff_ids, cJSON_CreateString(f->digest));
        push_blob *b = push_blob_add(p, f->digest);
        if (b) {
            b->label = mv_xstrdup(f->rel);
            b->path = mv_xstrdup(f->path);
            b->size = f->size;
        }
    }
    if (!o->spec.tar)
        return 0;
    _cleanup_free_ size_t *idx = mv_xcalloc(p->n_files ? p->n_files : 1, sizeof(size_t));
    for (model_kind k = MODEL_KIND_WEIGHT; k <= MODEL_KIND_DATASET; k++) {
        size_t n = 0;
        for (size_t i = 0; i < p->n_files; i++)
            if (p->files[i].in_tar && p->files[i].kind == k)
                idx[n++] = i;
        if (n == 0)
            continue;
        push_blob tb = {.fd = -1};
        char diff_id[OCI_DIGEST_MAX];
        r = push_build_tar(p->files, idx, n, o, &tb, diff_id, err);
        if (r < 0)
            return mv_error_wrap(err, "tar layer for %s files", model_kind_name(k));
        oci_descriptor *d = push_layer_add(p);
        d->digest = mv_xstrdup(tb.digest);
        d->size = (int64_t)tb.size;
        d->media_type =
            mv_xstrdup(model_media_type(k, o->spec.zstd ? OCI_FMT_TAR_ZSTD : OCI_FMT_TAR));
        cJSON_AddItemToArray(diff_ids, cJSON_CreateString(diff_id));
        push_blob *b = push_blob_add(p, tb.digest);
        if (b) {
            b->label = mv_xasprintf("tar layer of %s files", model_kind_name(k));
            b->fd = tb.fd;
            b->size = tb.size;
        } else {
            close(tb.fd);
        }
    }
    return 0;
}

static char *config_json(const push_pack *p, const push_pack_opts *o, cJSON *diff_ids)
{
    char when[32];
    cJSON *root = cJSON_CreateObject();
    cJSON *desc = cJSON_AddObjectToObject(root, "descriptor");
    cJSON_AddStringToObject(desc, "createdAt",
                            push_time_rfc3339(o->spec.created, when, sizeof(when)));
    if (o->spec.name)
        cJSON_AddStringToObject(desc, "name", o->spec.name);
    if (o->spec.version)
        cJSON_AddStringToObject(desc, "version", o->spec.version);
    cJSON *cfg = cJSON_AddObjectToObject(root, "config");
    if (p->format)
        cJSON_AddStringToObject(cfg, "format", p->format);
    if (p->param_size)
        cJSON_AddStringToObject(cfg, "paramSize", p->param_size);
    if (p->precision)
        cJSON_AddStringToObject(cfg, "precision", p->precision);
    cJSON *fs = cJSON_AddObjectToObject(root, "modelfs");
    cJSON_AddStringToObject(fs, "type", "layers");
    cJSON_AddItemToObject(fs, "diffIds", diff_ids);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static int build_manifest(push_pack *p, const push_pack_opts *o, cJSON *diff_ids, mv_error *err)
{
    oci_manifest *m = &p->manifest;
    m->kind = OCI_KIND_MANIFEST;
    m->media_type = mv_xstrdup(OCI_MT_MANIFEST);
    m->has_config = true;
    char when[32];
    push_time_rfc3339(o->spec.created, when, sizeof(when));
    m->annotations = mv_xcalloc(1, sizeof(*m->annotations));
    /* kit pack stamps its version and, since 2026, no created time on a
     * Kit-format manifest (kitops-ml/kitops pkg/lib/filesystem/
     * local-storage.go createManifest; createManifest_test.go
     * TestCreateManifestSkipsCreatedAnnotationForKitFormat). */
    m->annotations[0].key =
        mv_xstrdup(o->spec.format == PUSH_FORMAT_KITOPS ? PUSH_KIT_ANNO_CLI : OCI_ANNO_CREATED);
    m->annotations[0].value =
        mv_xstrdup(o->spec.format == PUSH_FORMAT_KITOPS ? "modelpush/" MV_VERSION : when);
    m->n_annotations = 1;
    if (o->spec.format == PUSH_FORMAT_KITOPS) {
        cJSON_Delete(diff_ids);
        /* p->config_json is the Kitfile push_pack_kitops wrote. */
        m->artifact_type = mv_xstrdup(PUSH_KIT_ARTIFACT_TYPE);
        m->config.media_type = mv_xstrdup(PUSH_KIT_MT_CONFIG);
    } else if (o->spec.format == PUSH_FORMAT_ORAS) {
        cJSON_Delete(diff_ids);
        m->artifact_type =
            mv_xstrdup(o->spec.artifact_type ? o->spec.artifact_type : PUSH_ORAS_ARTIFACT_TYPE);
        p->config_json = mv_xstrdup("{}");
        m->config.media_type = mv_xstrdup(OCI_MT_EMPTY);
    } else {
        m->artifact_type = mv_xstrdup(MODEL_ARTIFACT_TYPE);
        p->config_json = config_json(p, o, diff_ids);
        m->config.media_type = mv_xstrdup(MODEL_MT_CONFIG);
    }
    size_t clen = strlen(p->config_json);
    char cdig[OCI_DIGEST_MAX];
    oci_digest_buf(OCI_DIGEST_SHA256, p->config_json, clen, cdig);
    m->config.digest = mv_xstrdup(cdig);
    m->config.size = (int64_t)clen;
    push_blob *b = push_blob_add(p, cdig);
    if (b) {
        b->label = mv_xstrdup("config");
        b->mem = mv_xstrdup(p->config_json);
        b->size = clen;
    }
    p->manifest_json = oci_manifest_emit(m, &p->manifest_len);
    if (!p->manifest_json)
        return mv_error_set(err, -EINVAL, "manifest could not be serialised");
    if (p->manifest_len > (size_t)OCI_MANIFEST_MAX_BYTES)
        return mv_error_set(err, -EINVAL, "manifest is %zu bytes, more than registries accept",
                            p->manifest_len);
    oci_digest_buf(OCI_DIGEST_SHA256, p->manifest_json, p->manifest_len, p->manifest_digest);
    return 0;
}

int push_pack_dir(const char *dir, const push_pack_opts *o, push_pack **out, mv_error *err)
{
    *out = NULL;
    /* An ORAS artifact's tar layer would be an image layer, which pullers
     * (ours included) read as a container image: files stay raw there. */
    if (o->spec.format == PUSH_FORMAT_ORAS && o->spec.tar)
        return mv_error_set(err, -EINVAL,
                            "--tar packs ModelPack layers; --format oras keeps "
                            "every file a raw blob");
    if (o->spec.format == PUSH_FORMAT_KITOPS && (o->spec.tar || o->spec.tar_max))
        return mv_error_set(err, -EINVAL,
                            "--tar packs ModelPack layers; --format kitops makes "
                            "one tar layer per file already");
    _cleanup_(push_pack_freep) push_pack *p = mv_xcalloc(1, sizeof(*p));
    int r = push_walk(dir, o, &p->files, &p->n_files, err);
    if (r < 0)
        return r;
    if (p->n_files == 0)
        return mv_error_set(err, -ENOENT, "model directory %s: no files to push", dir);
    for (size_t i = 0; i < p->n_files; i++)
        p->files[i].kind =
            push_classify(p->files[i].rel, o->spec.rules, o->spec.n_rules, &p->files[i].guessed);
    cJSON *diff_ids = cJSON_CreateArray();
    r = o->spec.format == PUSH_FORMAT_KITOPS ? push_pack_kitops(p, o, err)
                                             : pack_layers(p, o, diff_ids, err);
    if (r < 0) {
        cJSON_Delete(diff_ids);
        return mv_error_wrap(err, "model directory %s", dir);
    }
    if (o->spec.format == PUSH_FORMAT_MODELPACK)
        push_gather_facts(p);
    r = build_manifest(p, o, diff_ids, err);
    if (r < 0)
        return r;
    *out = MV_STEAL(p);
    return 0;
}

void push_pack_free(push_pack *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_files; i++) {
        free(p->files[i].rel);
        free(p->files[i].path);
    }
    free(p->files);
    for (size_t i = 0; i < p->n_blobs; i++) {
        push_blob *b = &p->blobs[i];
        free(b->label);
        free(b->path);
        free(b->mem);
        if (b->fd >= 0)
            close(b->fd);
    }
    free(p->blobs);
    oci_manifest *m = &p->manifest;
    free(m->media_type);
    free(m->artifact_type);
    descriptor_clear(&m->config);
    for (size_t i = 0; i < m->n_layers; i++)
        descriptor_clear(&m->layers[i]);
    free(m->layers);
    for (size_t i = 0; i < m->n_annotations; i++) {
        free(m->annotations[i].key);
        free(m->annotations[i].value);
    }
    free(m->annotations);
    free(p->config_json);
    free(p->manifest_json);
    free(p->format);
    free(p->param_size);
    free(p->precision);
    free(p);
}
