/* fuzz_manifest.c — libFuzzer target for manifest and index parsing. Any
 * document that parses must emit canonical JSON that parses again to the
 * same thing and emits byte-identical; selection and layer paths must hold
 * up on whatever parsed. */
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
