/* test_manifest.c — manifest and index parsing for all four types, the
 * kind decision, schema 1 refusal, every hostile input we could think of
 * (truncation, wrong types, huge sizes, limits, NULs), and the canonical
 * emitter's key order and round trip. */
#include "oci.h"
#include "mvtest.h"

#define DA "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define DE "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define DB "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
#define D5                                                                                         \
    "sha512:"                                                                                      \
    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c"       \
    "23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"

static const char OCI_IMAGE[] =
    "{\n"
    "  \"schemaVersion\": 2,\n"
    "  \"mediaType\": \"application/vnd.oci.image.manifest.v1+json\",\n"
    "  \"config\": {\"mediaType\": \"application/vnd.oci.image.config.v1+json\",\n"
    "             \"digest\": \"" DA "\", \"size\": 1470},\n"
    "  \"layers\": [\n"
    "    {\"mediaType\": \"application/vnd.oci.image.layer.v1.tar+gzip\", \"digest\": \"" DB "\",\n"
    "     \"size\": 29533422, \"urls\": [\"https://mirror.example/blob\"],\n"
    "     \"annotations\": {\"b\": \"2\", \"a\": \"1\"}},\n"
    "    {\"mediaType\": \"application/vnd.oci.image.layer.v1.tar+zstd\", \"digest\": \"" D5 "\",\n"
    "     \"size\": 0, \"futureField\": {\"x\": [1, 2]}}\n"
    "  ],\n"
    "  \"annotations\": {\"org.opencontainers.image.created\": \"2026-01-01T00:00:00Z\"},\n"
    "  \"someUnknownTopLevel\": true\n"
    "}\n";

static const char OCI_INDEX[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
    "\"manifests\":["
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" DA "\","
    "\"size\":1000,\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" DB "\","
    "\"size\":1001,\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\","
    "\"os.version\":\"6.1\",\"os.features\":[\"x\"]}},"
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" DE "\","
    "\"size\":1002,\"artifactType\":\"application/vnd.cncf.model.manifest.v1+json\","
    "\"data\":\"e30=\"}]}";

static const char DOCKER_V2[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\","
    "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"size\":7023,"
    "\"digest\":\"" DA "\"},"
    "\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\","
    "\"size\":32654,\"digest\":\"" DB "\"},"
    "{\"mediaType\":\"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip\","
    "\"size\":1,\"digest\":\"" DE "\",\"urls\":[\"https://go.microsoft.com/x\"]}]}";

static const char DOCKER_LIST[] =
    "{\"schemaVersion\":2,"
    "\"mediaType\":\"application/vnd.docker.distribution.manifest.list.v2+json\","
    "\"manifests\":[{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\","
    "\"size\":7143,\"digest\":\"" DA "\",\"platform\":{\"architecture\":\"ppc64le\","
    "\"os\":\"linux\"}}]}";

static const char MODELPACK[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
    "\"artifactType\":\"application/vnd.cncf.model.manifest.v1+json\","
    "\"config\":{\"mediaType\":\"application/vnd.cncf.model.config.v1+json\",\"digest\":\"" DE "\","
    "\"size\":2},"
    "\"layers\":["
    "{\"mediaType\":\"application/vnd.cncf.model.weight.v1.raw\",\"digest\":\"" DA "\","
    "\"size\":4294967296,\"annotations\":{\"org.cncf.model.filepath\":\"model.safetensors\","
    "\"org.cncf.model.file.metadata+json\":\"{\\\"mode\\\":420}\"}},"
    "{\"mediaType\":\"application/vnd.cncf.model.weight.config.v1.raw\",\"digest\":\"" DB "\","
    "\"size\":512,\"annotations\":{\"org.opencontainers.image.title\":\"config.json\"}}],"
    "\"subject\":{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
    "\"digest\":\"" DB "\",\"size\":10}}";

static oci_manifest *parse_ok(const char *json, const char *ct)
{
    mv_error e = MV_ERROR_INIT;
    oci_manifest *m = NULL;
    int r = oci_manifest_parse(json, strlen(json), ct, &m, &e);
    if (r != 0)
        fprintf(stderr, "parse failed: %s\n", e.msg);
    CHECK_INT(r, 0);
    return m;
}

/* Parses and expects failure with code and a message containing needle. */
static void parse_bad(const char *json, size_t len, const char *ct, int code, const char *needle)
{
    mv_error e = MV_ERROR_INIT;
    oci_manifest *m = (oci_manifest *)1;
    int r = oci_manifest_parse(json, len, ct, &m, &e);
    CHECK_INT(r, code);
    CHECK(m == NULL);
    CHECK_CONTAINS(e.msg, needle);
    CHECK(strchr(e.msg, '\n') == NULL);
    if (r == 0)
        oci_manifest_free(m);
}
#define BAD(json, needle) parse_bad((json), strlen(json), NULL, -EINVAL, (needle))

MV_TEST(oci_image_manifest)
{
    _cleanup_manifest_ oci_manifest *m = parse_ok(OCI_IMAGE, NULL);
    if (!m)
        return;
    CHECK_INT(m->kind, OCI_KIND_MANIFEST);
    CHECK(!oci_manifest_is_index(m));
    CHECK_STR(m->media_type, OCI_MT_MANIFEST);
    CHECK(m->has_config);
    CHECK_STR(m->config.media_type, OCI_MT_CONFIG);
    CHECK_STR(m->config.digest, DA);
    CHECK_INT(m->config.size, 1470);
    CHECK_INT(m->n_layers, 2);
    CHECK_STR(m->layers[0].media_type, OCI_MT_LAYER_GZIP);
    CHECK_INT(m->layers[0].size, 29533422);
    CHECK_INT(m->layers[0].n_urls, 1);
    CHECK_STR(m->layers[0].urls[0], "https://mirror.example/blob");
    CHECK_INT(m->layers[0].n_annotations, 2);
    CHECK_STR(oci_annotation_get(m->layers[0].annotations, m->layers[0].n_annotations, "a"), "1");
    CHECK(oci_annotation_get(m->layers[0].annotations, m->layers[0].n_annotations, "c") == NULL);
    CHECK_STR(m->layers[1].digest, D5);
    CHECK_INT(m->layers[1].size, 0);
    CHECK(m->layers[1].platform == NULL);
    CHECK(m->subject == NULL);
    CHECK(m->artifact_type == NULL);
    CHECK_INT(m->n_annotations, 1);
    CHECK_INT(m->n_manifests, 0);
}

MV_TEST(oci_index)
{
    _cleanup_manifest_ oci_manifest *m = parse_ok(OCI_INDEX, NULL);
    if (!m)
        return;
    CHECK_INT(m->kind, OCI_KIND_INDEX);
    CHECK(oci_manifest_is_index(m));
    CHECK(!m->has_config);
    CHECK_INT(m->n_manifests, 3);
    CHECK_STR(m->manifests[0].platform->os, "linux");
    CHECK_STR(m->manifests[0].platform->architecture, "amd64");
    CHECK(m->manifests[0].platform->variant == NULL);
    CHECK_STR(m->manifests[1].platform->variant, "v8");
    CHECK_STR(m->manifests[1].platform->os_version, "6.1");
    CHECK(m->manifests[2].platform == NULL);
    CHECK_STR(m->manifests[2].artifact_type, MODEL_ARTIFACT_TYPE);
    CHECK_STR(m->manifests[2].data, "e30=");
}

MV_TEST(docker_manifest_and_list)
{
    _cleanup_manifest_ oci_manifest *m = parse_ok(DOCKER_V2, NULL);
    if (m) {
        CHECK_INT(m->kind, OCI_KIND_DOCKER_MANIFEST);
        CHECK_STR(m->media_type, DOCKER_MT_MANIFEST);
        CHECK_STR(m->config.media_type, DOCKER_MT_CONFIG);
        CHECK_INT(m->n_layers, 2);
        CHECK_STR(m->layers[1].media_type, DOCKER_MT_LAYER_FOREIGN);
    }
    _cleanup_manifest_ oci_manifest *l = parse_ok(DOCKER_LIST, NULL);
    if (l) {
        CHECK_INT(l->kind, OCI_KIND_DOCKER_LIST);
        CHECK(oci_manifest_is_index(l));
        CHECK_INT(l->n_manifests, 1);
        CHECK_STR(l->manifests[0].platform->architecture, "ppc64le");
    }
}

MV_TEST(modelpack_manifest)
{
    _cleanup_manifest_ oci_manifest *m = parse_ok(MODELPACK, NULL);
    if (!m)
        return;
    CHECK_STR(m->artifact_type, MODEL_ARTIFACT_TYPE);
    CHECK_STR(m->config.media_type, MODEL_MT_CONFIG);
    CHECK_INT(m->n_layers, 2);
    CHECK(m->layers[0].size == 4294967296LL);
    CHECK_STR(oci_annotation_get(m->layers[0].annotations, m->layers[0].n_annotations,
                                 MODEL_ANNO_FILEMETA),
              "{\"mode\":420}");
    _cleanup_free_ char *p0 = NULL, *p1 = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(oci_layer_filepath(&m->layers[0], &p0, &e), 0);
    CHECK_STR(p0, "model.safetensors");
    CHECK_INT(oci_layer_filepath(&m->layers[1], &p1, &e), 0);
    CHECK_STR(p1, "config.json");
    oci_media_class c;
    CHECK(oci_media_classify(m->layers[1].media_type, &c));
    CHECK_INT(c.kind, MODEL_KIND_WEIGHT_CONFIG);
    CHECK(m->subject != NULL);
    if (m->subject)
        CHECK_INT(m->subject->size, 10);
}

MV_TEST(kind_from_content_type_then_shape)
{
    /* No mediaType in the document: the Content-Type decides... */
    const char *bare = "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x/y\",\"digest\":\"" DA
                       "\",\"size\":1},\"layers\":[]}";
    _cleanup_manifest_ oci_manifest *a = parse_ok(bare, DOCKER_MT_MANIFEST "; charset=utf-8");
    if (a)
        CHECK_INT(a->kind, OCI_KIND_DOCKER_MANIFEST);
    /* ...an unrelated Content-Type is ignored and the shape decides... */
    _cleanup_manifest_ oci_manifest *b = parse_ok(bare, "application/json");
    if (b) {
        CHECK_INT(b->kind, OCI_KIND_MANIFEST);
        CHECK_STR(b->media_type, OCI_MT_MANIFEST);
    }
    const char *idx = "{\"schemaVersion\":2,\"manifests\":[]}";
    _cleanup_manifest_ oci_manifest *c = parse_ok(idx, NULL);
    if (c) {
        CHECK_INT(c->kind, OCI_KIND_INDEX);
        CHECK_INT(c->n_manifests, 0);
    }
    /* ...and the document's own mediaType beats the Content-Type. */
    _cleanup_manifest_ oci_manifest *d = parse_ok(DOCKER_LIST, OCI_MT_MANIFEST);
    if (d)
        CHECK_INT(d->kind, OCI_KIND_DOCKER_LIST);
    /* A declared type that does not fit the shape is an error, not a guess. */
    BAD("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_MANIFEST "\",\"manifests\":[]}",
        "config is missing");
    BAD("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"layers\":[]}",
        "manifests is missing");
    BAD("{\"schemaVersion\":2,\"mediaType\":\"" DOCKER_MT_MANIFEST
        "\",\"config\":{\"mediaType\":\"a\",\"digest\":\"" DA "\",\"size\":1}}",
        "layers is missing");
    BAD("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.config.v1+json\"}",
        "manifest media type \"application/vnd.oci.image.config.v1+json\" is unsupported");
}

MV_TEST(schema1_is_unsupported)
{
    BAD("{\"schemaVersion\":1,\"name\":\"library/x\",\"tag\":\"1\",\"fsLayers\":[]}",
        "schema 1 manifests are unsupported");
    BAD("{\"schemaVersion\":2,\"mediaType\":\"" DOCKER_MT_V1_SIGNED "\"}",
        "schema 1 manifests are unsupported");
    parse_bad("{\"schemaVersion\":2,\"fsLayers\":[]}", 33, DOCKER_MT_V1, -EINVAL,
              "schema 1 manifests are unsupported");
}

MV_TEST(schema_version_is_checked)
{
    BAD("{\"mediaType\":\"" OCI_MT_INDEX "\",\"manifests\":[]}", "schemaVersion is missing");
    BAD("{\"schemaVersion\":\"2\",\"manifests\":[]}", "schemaVersion is not a number");
    BAD("{\"schemaVersion\":3,\"manifests\":[]}", "schemaVersion 3 is unsupported");
    BAD("{\"schemaVersion\":2.5,\"manifests\":[]}", "schemaVersion 2.5 is unsupported");
}

MV_TEST(invalid_and_truncated_json)
{
    parse_bad("", 0, NULL, -EINVAL, "manifest is empty");
    BAD("{\"schemaVersion\":2,", "truncated");
    BAD("{\"schemaVersion\":2,\"manifests\":[", "truncated");
    BAD("{\"schemaVersion\" 2}", "not valid JSON (error at byte");
    BAD("{\"schemaVersion\":2,\"manifests\":[]} {}", "trailing data at byte 35 of 37");
    BAD("[]", "not a JSON object");
    BAD("\"a string\"", "not a JSON object");
    BAD("null", "not a JSON object");
    /* Every prefix of a good manifest fails cleanly (no crash, no success). */
    size_t n = strlen(OCI_IMAGE);
    /* The last byte is a newline, so the full document minus it still parses. */
    for (size_t i = 0; i + 2 < n; i++) {
        mv_error e = MV_ERROR_INIT;
        oci_manifest *m = NULL;
        int r = oci_manifest_parse(OCI_IMAGE, i, NULL, &m, &e);
        if (r == 0)
            fprintf(stderr, "prefix of %zu bytes parsed\n", i);
        CHECK(r < 0);
        CHECK(m == NULL);
        CHECK(e.msg[0] != '\0');
        oci_manifest_free(m);
    }
    /* Deep nesting hits cJSON's limit, not the stack. */
    char deep[4001];
    memset(deep, '[', 2000);
    memset(deep + 2000, ']', 2000);
    deep[4000] = '\0';
    BAD(deep, "not valid JSON");
    deep[3999] = '\0';
    BAD(deep, "truncated");
}

MV_TEST(sizes_must_be_int64)
{
    static const struct {
        const char *size;
        const char *needle;
    } bad[] = {
        {"-1", "size -1 is negative"},
        {"1.5", "size 1.5 is not a whole number"},
        {"\"12\"", "size is not a number"},
        {"true", "size is not a number"},
        {"null", "size is not a number"},
        {"[1]", "size is not a number"},
        {"9223372036854775808", "out of range"},
        {"9223372036854775807", "out of range"}, /* rounds to 2^63 as a double */
        {"1e19", "out of range"},
        {"1e400", "out of range"},
        {"99999999999999999999999999999", "out of range"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char json[512];
        snprintf(json, sizeof(json),
                 "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"" DA
                 "\",\"size\":%s},\"layers\":[]}",
                 bad[i].size);
        BAD(json, bad[i].needle);
        BAD(json, "config: size");
    }
    BAD("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"" DA
        "\"},\"layers\":[]}",
        "config: size is missing");
    /* The largest double below 2^63 is an int64 and survives exactly. */
    const char *big = "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"" DA
                      "\",\"size\":9223372036854774784},\"layers\":[]}";
    _cleanup_manifest_ oci_manifest *m = parse_ok(big, NULL);
    if (m) {
        CHECK(m->config.size == 9223372036854774784LL);
        _cleanup_free_ char *out = oci_manifest_emit(m, NULL);
        CHECK_CONTAINS(out, "\"size\":9223372036854774784");
    }
}

MV_TEST(descriptor_fields_are_type_checked)
{
#define LAYER(fields)                                                                              \
    "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"" DA "\",\"size\":1},"    \
    "\"layers\":[{\"mediaType\":\"a/b\",\"digest\":\"" DA "\",\"size\":1},{" fields "}]}"
    BAD(LAYER("\"digest\":\"" DA "\",\"size\":1"), "layers[1]: mediaType is missing");
    BAD(LAYER("\"mediaType\":7,\"digest\":\"" DA "\",\"size\":1"),
        "layers[1]: mediaType is not a string");
    BAD(LAYER("\"mediaType\":\"\",\"digest\":\"" DA "\",\"size\":1"),
        "layers[1]: mediaType is empty");
    BAD(LAYER("\"mediaType\":\"a\",\"size\":1"), "layers[1]: digest is missing");
    BAD(LAYER("\"mediaType\":\"a\",\"digest\":\"sha256:abc\",\"size\":1"),
        "layers[1]: digest \"sha256:abc\"");
    BAD(LAYER("\"mediaType\":\"a\",\"digest\":\"md5:00\",\"size\":1"), "unsupported algorithm");
    /* Without an mv_error the code is still the real one. */
    const char *bad_digest = LAYER("\"mediaType\":\"a\",\"digest\":\"sha256:abc\",\"size\":1");
    oci_manifest *m = NULL;
    CHECK_INT(oci_manifest_parse(bad_digest, strlen(bad_digest), NULL, &m, NULL), -EINVAL);
    CHECK(m == NULL);
    BAD(LAYER("\"mediaType\":\"a\",\"digest\":\"" DA "\",\"size\":1,\"annotations\":[]"),
        "layers[1]: annotations is not an object");
    BAD(LAYER("\"mediaType\":\"a\",\"digest\":\"" DA "\",\"size\":1,\"annotations\":{\"k\":1}"),
        "layers[1]: annotation \"k\" is not a string");
    BAD(LAYER("\"mediaType\":\"a\",\"digest\":\"" DA
              "\",\"size\":1,\"annotations\":{\"k\":{\"x\":\"y\"}}"),
        "annotation \"k\" is not a string");
    BAD(LAYER("\"mediaType\":\"a\",\"digest\":\"" DA
              "\",\"size\":1,\"annotations\":{\"k\":\"a\",\"k\":\"b\"}"),
        "annotation \"k\" appears twice");
    BAD(LAYER("\"mediaType\":\"a\",\"digest\":\"" DA "\",\"size\":1,\"urls\":\"http://x\""),
        "layers[1]: urls is not an array");
    BAD(LAYER("\"mediaType\":\"a\",\"digest\":\"" DA "\",\"size\":1,\"urls\":[\"a\",2]"),
        "layers[1]: urls[1] is not a string");
    BAD(LAYER("\"mediaType\":\"a\",\"digest\":\"" DA "\",\"size\":1,\"platform\":\"linux\""),
        "layers[1]: platform is not an object");
    BAD(LAYER("\"mediaType\":\"a\",\"digest\":\"" DA "\",\"size\":1,\"platform\":{\"os\":\"l\"}"),
        "layers[1].platform: architecture is missing");
    BAD(LAYER("\"mediaType\":\"a\",\"digest\":\"" DA
              "\",\"size\":1,\"platform\":{\"os\":\"l\",\"architecture\":\"a\",\"variant\":8}"),
        "variant is not a string");
    BAD(LAYER("\"mediaType\":\"a\",\"digest\":\"" DA "\",\"size\":1,\"artifactType\":[]"),
        "layers[1]: artifactType is not a string");
    BAD(LAYER("\"mediaType\":\"a\",\"digest\":\"" DA "\",\"size\":1,\"data\":false"),
        "layers[1]: data is not a string");
    BAD(LAYER("\"mediaType\":\"a\",\"digest\":\"" DA "\",\"size\":1,\"data\":\"e30\""),
        "layers[1]: data is not base64");
    BAD(LAYER("\"mediaType\":\"a\",\"digest\":\"" DA "\",\"size\":1,\"data\":\"e=0=\""),
        "layers[1]: data is not base64");
    BAD(LAYER("\"mediaType\":\"a\",\"digest\":\"" DA "\",\"size\":1,\"data\":\"e3 0\""),
        "layers[1]: data is not base64");
    BAD(LAYER("\"mediaType\":\"a\",\"digest\":\"" DA
              "\",\"size\":1,\"annotations\":{\"k\":\"a\",\"j\":\"c\",\"k\":\"b\"}"),
        "annotation \"k\" appears twice");
    BAD("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"" DA
        "\",\"size\":1},\"layers\":[1]}",
        "layers[0] is not an object");
    BAD("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"" DA
        "\",\"size\":1},\"layers\":{}}",
        "layers is not an array");
    BAD("{\"schemaVersion\":2,\"config\":[],\"layers\":[]}", "config is not an object");
    BAD("{\"schemaVersion\":2,\"manifests\":[],\"subject\":{}}", "subject: mediaType is missing");
    BAD("{\"schemaVersion\":2,\"manifests\":[],\"artifactType\":1}",
        "manifest: artifactType is not a string");
    BAD("{\"schemaVersion\":2,\"manifests\":[],\"annotations\":{\"a\":null}}",
        "manifest: annotation \"a\" is not a string");
    BAD("{\"schemaVersion\":2,\"manifests\":[],\"mediaType\":null}", "mediaType is not a string");
#undef LAYER
}

MV_TEST(nul_characters_are_refused)
{
    /* cJSON would cut this value at the NUL; "evil\u0000/../../x" must not
     * quietly become "evil". */
    BAD("{\"schemaVersion\":2,\"manifests\":[],\"annotations\":{\"a\":\"evil\\u0000/../x\"}}",
        "NUL character");
    const char raw[] = "{\"schemaVersion\":2,\"manifests\":[],\"annotations\":{\"a\":\"x\0y\"}}";
    parse_bad(raw, sizeof(raw) - 1, NULL, -EINVAL, "NUL character");
    /* An escaped backslash before u0000 is just text. */
    _cleanup_manifest_ oci_manifest *m = parse_ok(
        "{\"schemaVersion\":2,\"manifests\":[],\"annotations\":{\"a\":\"\\\\u0000\"}}", NULL);
    if (m)
        CHECK_STR(m->annotations[0].value, "\\u0000");
}

MV_TEST(huge_annotation_map_parses_and_still_finds_duplicates)
{
    /* 200,000 keys in one map: quadratic duplicate checking would not
     * finish within the test timeout. */
    size_t n = 200000;
    char *s = malloc(n * 24 + 200);
    char *p = stpcpy(s, "{\"schemaVersion\":2,\"manifests\":[],\"annotations\":{");
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s\"k%zu\":\"v\"", i ? "," : "", i);
    stpcpy(p, "}}");
    _cleanup_manifest_ oci_manifest *m = parse_ok(s, NULL);
    if (m)
        CHECK_INT(m->n_annotations, n);
    /* The same map with its last key repeated at the end. */
    strcpy(p, ",\"k7\":\"w\"}}");
    parse_bad(s, strlen(s), NULL, -EINVAL, "manifest: annotation \"k7\" appears twice");
    free(s);
}

static char *many_layers(size_t n)
{
    const char *head = "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"" DA
                       "\",\"size\":1},\"layers\":[";
    const char *layer = "{\"mediaType\":\"a/b\",\"digest\":\"" DA "\",\"size\":1}";
    size_t cap = strlen(head) + n * (strlen(layer) + 1) + 4;
    char *s = malloc(cap);
    char *p = stpcpy(s, head);
    for (size_t i = 0; i < n; i++) {
        if (i)
            *p++ = ',';
        p = stpcpy(p, layer);
    }
    stpcpy(p, "]}");
    return s;
}

MV_TEST(limits)
{
    _cleanup_free_ char *ok = many_layers(OCI_MANIFEST_MAX_LAYERS);
    _cleanup_manifest_ oci_manifest *m = parse_ok(ok, NULL);
    if (m)
        CHECK_INT(m->n_layers, OCI_MANIFEST_MAX_LAYERS);
    _cleanup_free_ char *over = many_layers(OCI_MANIFEST_MAX_LAYERS + 1);
    parse_bad(over, strlen(over), NULL, -EBADMSG, "layers has 10001 entries, over the limit");

    /* Over 4 MiB is refused before parsing, even if it is valid JSON. */
    size_t big = OCI_MANIFEST_MAX_BYTES + 1;
    char *s = malloc(big);
    const char *head = "{\"schemaVersion\":2,\"manifests\":[],\"x\":\"";
    memset(s, 'a', big);
    memcpy(s, head, strlen(head));
    memcpy(s + big - 2, "\"}", 2);
    parse_bad(s, big, NULL, -EBADMSG, "manifest is 4194305 bytes, over the limit of 4194304");
    /* Exactly 4 MiB is fine. */
    memcpy(s + big - 3, "\"}", 2);
    mv_error e = MV_ERROR_INIT;
    oci_manifest *m2 = NULL;
    CHECK_INT(oci_manifest_parse(s, big - 1, NULL, &m2, &e), 0);
    oci_manifest_free(m2);
    free(s);
}

MV_TEST(emit_has_stable_key_order)
{
    const char *in =
        "{\"annotations\":{\"z\":\"1\",\"a\":\"2\"},\"layers\":[{\"platform\":{\"variant\":\"v8\","
        "\"os\":\"linux\",\"architecture\":\"arm64\"},\"artifactType\":\"t/a\",\"data\":\"AA==\","
        "\"annotations\":{\"y\":\"1\",\"b\":\"2\"},\"urls\":[\"u\"],\"size\":5,\"digest\":\"" DB
        "\",\"mediaType\":\"m/l\"}],\"subject\":{\"size\":3,\"digest\":\"" DE
        "\",\"mediaType\":\"m/s\"},\"config\":{\"size\":2,\"digest\":\"" DA
        "\",\"mediaType\":\"m/c\"},\"artifactType\":\"t/m\",\"schemaVersion\":2}";
    const char *want =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"artifactType\":\"t/m\","
        "\"config\":{\"mediaType\":\"m/c\",\"digest\":\"" DA "\",\"size\":2},"
        "\"layers\":[{\"mediaType\":\"m/l\",\"digest\":\"" DB "\",\"size\":5,\"urls\":[\"u\"],"
        "\"annotations\":{\"b\":\"2\",\"y\":\"1\"},\"data\":\"AA==\","
        "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"},"
        "\"artifactType\":\"t/a\"}],"
        "\"subject\":{\"mediaType\":\"m/s\",\"digest\":\"" DE "\",\"size\":3},"
        "\"annotations\":{\"a\":\"2\",\"z\":\"1\"}}";
    _cleanup_manifest_ oci_manifest *m = parse_ok(in, NULL);
    if (!m)
        return;
    size_t len = 0;
    _cleanup_free_ char *out = oci_manifest_emit(m, &len);
    CHECK_STR(out, want);
    CHECK_INT(len, strlen(want));
}

MV_TEST(emit_round_trips_every_kind)
{
    const char *docs[] = {OCI_IMAGE, OCI_INDEX, DOCKER_V2, DOCKER_LIST, MODELPACK};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        _cleanup_manifest_ oci_manifest *m = parse_ok(docs[i], NULL);
        if (!m)
            continue;
        size_t len1 = 0, len2 = 0;
        _cleanup_free_ char *e1 = oci_manifest_emit(m, &len1);
        _cleanup_manifest_ oci_manifest *m2 = parse_ok(e1, NULL);
        if (!m2)
            continue;
        _cleanup_free_ char *e2 = oci_manifest_emit(m2, &len2);
        CHECK_STR(e2, e1);
        CHECK_INT(len1, len2);
        CHECK_INT(m2->kind, m->kind);
        CHECK_INT(m2->n_layers, m->n_layers);
        CHECK_INT(m2->n_manifests, m->n_manifests);
        for (size_t k = 0; k < m->n_layers; k++) {
            CHECK_STR(m2->layers[k].digest, m->layers[k].digest);
            CHECK(m2->layers[k].size == m->layers[k].size);
            CHECK_INT(m2->layers[k].n_annotations, m->layers[k].n_annotations);
        }
        /* Compact: no newlines or indentation. */
        CHECK(strchr(e1, '\n') == NULL);
    }
}

MV_TEST(emit_a_hand_built_manifest)
{
    /* What modelpush does: fill the struct, emit, and expect it to parse. */
    oci_annotation anno[] = {{MODEL_ANNO_FILEPATH, "w/model.bin"}};
    oci_descriptor layer = {.media_type = "application/vnd.cncf.model.weight.v1.raw",
                            .digest = DB,
                            .size = 123,
                            .annotations = anno,
                            .n_annotations = 1};
    oci_manifest m = {.kind = OCI_KIND_MANIFEST,
                      .artifact_type = MODEL_ARTIFACT_TYPE,
                      .has_config = true,
                      .config = {.media_type = MODEL_MT_CONFIG, .digest = DE, .size = 0},
                      .layers = &layer,
                      .n_layers = 1};
    _cleanup_free_ char *out = oci_manifest_emit(&m, NULL);
    CHECK_CONTAINS(out, "\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\"");
    /* Holes in a hand-built annotation list are skipped, not dereferenced. */
    oci_annotation holes[] = {{NULL, "x"}, {"k", "v"}, {NULL, NULL}};
    oci_descriptor cfg = m.config;
    cfg.annotations = holes;
    cfg.n_annotations = 3;
    CHECK_STR(oci_annotation_get(holes, 3, "k"), "v");
    oci_manifest m_holes = m;
    m_holes.config = cfg;
    _cleanup_free_ char *out_holes = oci_manifest_emit(&m_holes, NULL);
    CHECK_CONTAINS(out_holes, "\"annotations\":{\"k\":\"v\"}");
    _cleanup_manifest_ oci_manifest *back = parse_ok(out, NULL);
    if (back) {
        CHECK_STR(back->artifact_type, MODEL_ARTIFACT_TYPE);
        CHECK_STR(back->layers[0].annotations[0].value, "w/model.bin");
    }
}

int main(void)
{
    MV_RUN(oci_image_manifest);
    MV_RUN(oci_index);
    MV_RUN(docker_manifest_and_list);
    MV_RUN(modelpack_manifest);
    MV_RUN(kind_from_content_type_then_shape);
    MV_RUN(schema1_is_unsupported);
    MV_RUN(schema_version_is_checked);
    MV_RUN(invalid_and_truncated_json);
    MV_RUN(sizes_must_be_int64);
    MV_RUN(descriptor_fields_are_type_checked);
    MV_RUN(nul_characters_are_refused);
    MV_RUN(limits);
    MV_RUN(huge_annotation_map_parses_and_still_finds_duplicates);
    MV_RUN(emit_has_stable_key_order);
    MV_RUN(emit_round_trips_every_kind);
    MV_RUN(emit_a_hand_built_manifest);
    MV_DONE();
}
