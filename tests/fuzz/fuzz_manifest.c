/* fuzz_manifest.c — libFuzzer target for manifest and index parsing. Any
 * document that parses must emit canonical JSON that parses again to the
 * same thing and emits byte-identical; selection, layer paths and the
 * layout plan must hold up on whatever parsed. */
#include "oci.h"

#include <string.h>

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_descriptor(const oci_descriptor *d)
{
    ASSERT(d->media_type && *d->media_type);
    ASSERT(oci_digest_validate(d->digest, NULL) == 0);
    ASSERT(d->size >= 0);
    ASSERT(!d->platform || (d->platform->os && d->platform->architecture));
    oci_media_class c;
    ASSERT(oci_media_classify(d->media_type, &c));
    mv_error e = MV_ERROR_INIT;
    _cleanup_free_ char *path = NULL;
    int r = oci_layer_filepath(d, &path, &e);
    ASSERT(r == 0 || r == -ENOENT || r == -EINVAL);
    if (r == 0)
        ASSERT(path && path[0] != '/' && !strstr(path, "//"));
    else
        ASSERT(!path && e.msg[0] && !strchr(e.msg, '\n'));
}

static void same_descriptor(const oci_descriptor *a, const oci_descriptor *b)
{
    ASSERT(strcmp(a->media_type, b->media_type) == 0 && strcmp(a->digest, b->digest) == 0);
    ASSERT(a->size == b->size && a->n_annotations == b->n_annotations && a->n_urls == b->n_urls);
    ASSERT(!a->platform == !b->platform && !a->artifact_type == !b->artifact_type);
    ASSERT(!a->data == !b->data);
    for (size_t i = 0; i < a->n_annotations; i++) {
        const char *v = oci_annotation_get(b->annotations, b->n_annotations, a->annotations[i].key);
        ASSERT(v && strcmp(v, a->annotations[i].value) == 0);
    }
}

/* A FILE path or an UNPACK directory as the planner promises them:
 * relative, normalised, no "..". */
static void check_plan_path(const char *p, bool may_be_root)
{
    ASSERT(p);
    if (!*p) {
        ASSERT(may_be_root);
        return;
    }
    ASSERT(p[0] != '/' && p[strlen(p) - 1] != '/' && !strstr(p, "//"));
    for (const char *c = p; *c;) {
        size_t n = strcspn(c, "/");
        ASSERT(n > 0 && !(n == 1 && c[0] == '.') && !(n == 2 && c[0] == '.' && c[1] == '.'));
        c += n;
        if (*c)
            c++;
    }
}

/* The plan of whatever parsed: one entry per layer, each consistent with
 * its placement, no two files at one path; or one line naming a layer. The
 * input's second half doubles as config bytes when its first byte is odd. */
static void check_plan(const oci_manifest *m, const oci_manifest *m2, const uint8_t *data,
                       size_t size)
{
    const void *config = NULL;
    size_t config_len = 0;
    if (size > 1 && (data[0] & 1)) {
        config = data + size / 2;
        config_len = size - size / 2;
    }
    mv_error e = MV_ERROR_INIT;
    _cleanup_layout_plan_ oci_layout_plan *p = NULL;
    int r = oci_layout_plan_make(m, config, config_len, &p, &e);
    if (r < 0) {
        ASSERT(!p && (r == -EINVAL || r == -ENOTSUP));
        ASSERT(e.msg[0] && !strchr(e.msg, '\n'));
        if (!oci_manifest_is_index(m))
            ASSERT(strncmp(e.msg, "layer ", 6) == 0);
        return;
    }
    ASSERT(!oci_manifest_is_index(m));
    ASSERT(p && p->n_layers == m->n_layers);
    ASSERT(strcmp(oci_artifact_family_name(p->family), "unknown") != 0);
    ASSERT(!p->default_subpath == (p->family != OCI_ARTIFACT_IMAGE));
    for (size_t i = 0; i < p->n_layers; i++) {
        const oci_layer_plan *l = &p->layers[i];
        ASSERT(l->index == i);
        switch (l->place) {
        case OCI_PLACE_FILE:
            ASSERT(l->format == OCI_FMT_RAW && !l->whiteouts && !l->skip_reason);
            check_plan_path(l->path, false);
            break;
        case OCI_PLACE_UNPACK:
            ASSERT(l->format >= OCI_FMT_TAR && l->format <= OCI_FMT_TAR_ZSTD);
            ASSERT(!l->executable && !l->skip_reason);
            check_plan_path(l->path, true);
            if (l->declared_path)
                check_plan_path(l->declared_path, false);
            if (l->unpacked_digest)
                ASSERT(oci_digest_validate(l->unpacked_digest, NULL) == 0);
            break;
        case OCI_PLACE_SKIP:
            ASSERT(!l->path && !l->executable && l->skip_reason && l->skip_reason[0]);
            ASSERT(!strchr(l->skip_reason, '\n'));
            break;
        default:
            ASSERT(false);
        }
        ASSERT(!l->whiteouts || p->family == OCI_ARTIFACT_IMAGE);
    }
    /* Pairwise only while cheap; the planner itself sorts. */
    if (p->n_layers <= 256)
        for (size_t i = 0; i < p->n_layers; i++)
            for (size_t j = i + 1; j < p->n_layers; j++)
                if (p->layers[i].place == OCI_PLACE_FILE && p->layers[j].place == OCI_PLACE_FILE)
                    ASSERT(strcmp(p->layers[i].path, p->layers[j].path) != 0);

    /* The canonical re-emission plans the same. */
    _cleanup_layout_plan_ oci_layout_plan *p2 = NULL;
    ASSERT(oci_layout_plan_make(m2, config, config_len, &p2, &e) == 0);
    ASSERT(p2->family == p->family && p2->n_layers == p->n_layers);
    for (size_t i = 0; i < p->n_layers; i++) {
        ASSERT(p2->layers[i].place == p->layers[i].place);
        ASSERT(p2->layers[i].format == p->layers[i].format);
        ASSERT(p2->layers[i].kind == p->layers[i].kind);
        ASSERT(!p2->layers[i].path == !p->layers[i].path);
        if (p->layers[i].path)
            ASSERT(strcmp(p2->layers[i].path, p->layers[i].path) == 0);
    }
}

/* The last byte's parity picks a Content-Type, so the corpus files stay
 * plain JSON and the fuzzer still reaches the header-driven paths. */
static const char *content_type_for(const uint8_t *data, size_t size)
{
    static const char *const types[] = {NULL, OCI_MT_MANIFEST, DOCKER_MT_LIST,
                                        "application/json; charset=utf-8", DOCKER_MT_V1_SIGNED};
    if (size == 0)
        return NULL;
    return types[data[size - 1] % 5];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mv_error e = MV_ERROR_INIT;
    _cleanup_manifest_ oci_manifest *m = NULL;
    int r = oci_manifest_parse(data, size, content_type_for(data, size), &m, &e);
    if (r < 0) {
        ASSERT(m == NULL && (r == -EINVAL || r == -EBADMSG));
        ASSERT(e.msg[0] && !strchr(e.msg, '\n'));
        return 0;
    }
    ASSERT(m && m->media_type);
    ASSERT(m->n_layers <= OCI_MANIFEST_MAX_LAYERS && m->n_manifests <= OCI_MANIFEST_MAX_LAYERS);
    if (m->has_config)
        check_descriptor(&m->config);
    for (size_t i = 0; i < m->n_layers; i++)
        check_descriptor(&m->layers[i]);
    for (size_t i = 0; i < m->n_manifests; i++)
        check_descriptor(&m->manifests[i]);

    size_t len1 = 0;
    _cleanup_free_ char *e1 = oci_manifest_emit(m, &len1);
    ASSERT(e1 && strlen(e1) == len1);
    _cleanup_manifest_ oci_manifest *m2 = NULL;
    if (oci_manifest_parse(e1, len1, NULL, &m2, &e) < 0) {
        fprintf(stderr, "emitted manifest does not parse: %s\n%s\n", e.msg, e1);
        abort();
    }
    ASSERT(m2->kind == m->kind && strcmp(m2->media_type, m->media_type) == 0);
    ASSERT(m2->n_layers == m->n_layers && m2->n_manifests == m->n_manifests);
    ASSERT(m2->n_annotations == m->n_annotations && !m2->subject == !m->subject);
    for (size_t i = 0; i < m->n_layers; i++)
        same_descriptor(&m->layers[i], &m2->layers[i]);
    for (size_t i = 0; i < m->n_manifests; i++)
        same_descriptor(&m->manifests[i], &m2->manifests[i]);
    if (m->has_config)
        same_descriptor(&m->config, &m2->config);
    size_t len2 = 0;
    _cleanup_free_ char *e2 = oci_manifest_emit(m2, &len2);
    ASSERT(len1 == len2 && memcmp(e1, e2, len1) == 0);

    check_plan(m, m2, data, size);

    if (oci_manifest_is_index(m)) {
        const oci_descriptor *d = NULL;
        r = oci_index_select_platform(m, NULL, NULL, NULL, &d, &e);
        ASSERT((r == 0 && d) || (r == -ENOENT && !d && !strchr(e.msg, '\n')));
        r = oci_index_select_platform(m, "linux", "arm64", "v8", &d, &e);
        ASSERT((r == 0 && d) || (r == -ENOENT && !d));
        r = oci_index_select_artifact(m, MODEL_ARTIFACT_TYPE, &d, &e);
        ASSERT((r == 0 && d && strcmp(d->artifact_type, MODEL_ARTIFACT_TYPE) == 0) ||
               (r == -ENOENT && !d));
    }
    return 0;
}
