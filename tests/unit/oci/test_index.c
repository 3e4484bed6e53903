/* test_index.c — choosing an index entry by platform (defaults, variants,
 * arm64's v8, uname spellings) and by artifactType, and the "not found"
 * message that lists what the index had; user selectors (artifactType,
 * platform, annotation), several matches, and nested index entries. */
#include "oci.h"
#include "mvtest.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"
#define D4 "sha256:4444444444444444444444444444444444444444444444444444444444444444"
#define D5 "sha256:5555555555555555555555555555555555555555555555555555555555555555"
#define D6 "sha256:6666666666666666666666666666666666666666666666666666666666666666"

#define ENTRY(d, plat)                                                                             \
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" d                \
    "\",\"size\":1" plat "}"
#define PLAT(os, arch) ",\"platform\":{\"os\":\"" os "\",\"architecture\":\"" arch "\"}"
#define PLATV(os, arch, v)                                                                         \
    ",\"platform\":{\"os\":\"" os "\",\"architecture\":\"" arch "\",\"variant\":\"" v "\"}"

static oci_manifest *parse(const char *json)
{
    mv_error e = MV_ERROR_INIT;
    oci_manifest *m = NULL;
    int r = oci_manifest_parse(json, strlen(json), NULL, &m, &e);
    if (r)
        fprintf(stderr, "parse: %s\n", e.msg);
    CHECK_INT(r, 0);
    return m;
}

/* A typical multi-arch image index, attestation entry included. */
// clang-format off
static const char MULTI[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"manifests\":["
    ENTRY(D1, PLATV("linux", "arm", "v7")) ","
    ENTRY(D2, PLAT("linux", "amd64")) ","
    ENTRY(D3, PLATV("linux", "arm64", "v8")) ","
    ENTRY(D4, PLAT("windows", "amd64")) ","
    ENTRY(D5, PLAT("unknown", "unknown")) ","
    ENTRY(D6, PLATV("linux", "arm", "v6")) "]}";
// clang-format on

static const char *pick(const oci_manifest *m, const char *os, const char *arch,
                        const char *variant)
{
    const oci_descriptor *d = NULL;
    mv_error e = MV_ERROR_INIT;
    int r = oci_index_select_platform(m, os, arch, variant, &d, &e);
    if (r < 0)
        return NULL;
    return d ? d->digest : NULL;
}

MV_TEST(platform_defaults_and_exact_matches)
{
    _cleanup_manifest_ oci_manifest *m = parse(MULTI);
    if (!m)
        return;
    CHECK_STR(pick(m, NULL, NULL, NULL), D2);
    CHECK_STR(pick(m, "linux", "amd64", NULL), D2);
    CHECK_STR(pick(m, "linux", "x86_64", NULL), D2);
    CHECK_STR(pick(m, "windows", "amd64", NULL), D4);
    CHECK_STR(pick(m, "linux", "arm", "v7"), D1);
    CHECK_STR(pick(m, "linux", "arm", "v6"), D6);
    CHECK(pick(m, "linux", "arm", "v5") == NULL);
    CHECK(pick(m, "linux", "amd64", "v3") == NULL);
}

MV_TEST(arm64_v8_is_the_same_as_no_variant)
{
    _cleanup_manifest_ oci_manifest *m = parse(MULTI);
    if (!m)
        return;
    CHECK_STR(pick(m, "linux", "arm64", NULL), D3);
    CHECK_STR(pick(m, "linux", "aarch64", NULL), D3);
    CHECK_STR(pick(m, "linux", "arm64", "v8"), D3);
    /* And the other way: an index that leaves the variant out. */
    _cleanup_manifest_ oci_manifest *n =
        parse("{\"schemaVersion\":2,\"manifests\":[" ENTRY(D1, PLAT("linux", "arm64")) "]}");
    if (n)
        CHECK_STR(pick(n, "linux", "arm64", "v8"), D1);
}

MV_TEST(no_variant_asked_prefers_the_plain_build)
{
    /* Listed first is the variant build; the plain one still wins. */
    _cleanup_manifest_ oci_manifest *m = parse("{\"schemaVersion\":2,\"manifests\":[" ENTRY(
        D1, PLATV("linux", "amd64", "v3")) "," ENTRY(D2, PLAT("linux", "amd64")) "]}");
    if (m) {
        CHECK_STR(pick(m, NULL, NULL, NULL), D2);
        CHECK_STR(pick(m, NULL, NULL, "v3"), D1);
    }
    /* With only variant builds, the first one is taken. */
    _cleanup_manifest_ oci_manifest *a = parse("{\"schemaVersion\":2,\"manifests\":[" ENTRY(
        D1, PLATV("linux", "arm", "v6")) "," ENTRY(D2, PLATV("linux", "arm", "v7")) "]}");
    if (a)
        CHECK_STR(pick(a, "linux", "arm", NULL), D1);
    /* arm64: v8 is preferred over other variants when none is asked for. */
    _cleanup_manifest_ oci_manifest *b = parse("{\"schemaVersion\":2,\"manifests\":[" ENTRY(
        D1, PLATV("linux", "arm64", "v9")) "," ENTRY(D2, PLATV("linux", "arm64", "v8")) "]}");
    if (b)
        CHECK_STR(pick(b, "linux", "arm64", NULL), D2);
}

MV_TEST(no_match_lists_what_was_there)
{
    _cleanup_manifest_ oci_manifest *m = parse(MULTI);
    if (!m)
        return;
    const oci_descriptor *d = (const oci_descriptor *)1;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(oci_index_select_platform(m, "linux", "s390x", NULL, &d, &e), -ENOENT);
    CHECK(d == NULL);
    CHECK_STR(e.msg, "no manifest for linux/s390x in index (it has: linux/arm/v7, linux/amd64, "
                     "linux/arm64/v8, windows/amd64, unknown/unknown, linux/arm/v6)");
    _cleanup_manifest_ oci_manifest *empty = parse("{\"schemaVersion\":2,\"manifests\":[]}");
    if (empty) {
        CHECK_INT(oci_index_select_platform(empty, NULL, NULL, NULL, &d, &e), -ENOENT);
        CHECK_CONTAINS(e.msg, "no manifest for linux/amd64 in index (it has: no entries)");
    }
}

MV_TEST(long_listing_is_cut_and_marked)
{
    /* 300 entries cannot all fit on one line; the list says it was cut. */
    size_t cap = 300 * 300 + 100;
    char *s = malloc(cap);
    char *p = stpcpy(s, "{\"schemaVersion\":2,\"manifests\":[");
    for (int i = 0; i < 300; i++)
        p += sprintf(p, "%s" ENTRY(D1, PLAT("plan9", "mips%d")), i ? "," : "", i);
    stpcpy(p, "]}");
    _cleanup_manifest_ oci_manifest *m = parse(s);
    free(s);
    if (!m)
        return;
    const oci_descriptor *d = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(oci_index_select_platform(m, NULL, NULL, NULL, &d, &e), -ENOENT);
    CHECK_CONTAINS(e.msg, "plan9/mips0, plan9/mips1");
    CHECK_CONTAINS(e.msg, "...");
    CHECK(strlen(e.msg) < MV_ERROR_MSG_MAX - 1);
}

MV_TEST(select_by_artifact_type)
{
    // clang-format off
    _cleanup_manifest_ oci_manifest *m = parse(
        "{\"schemaVersion\":2,\"manifests\":["
        ENTRY(D1, PLAT("linux", "amd64")) ","
        ENTRY(D2, ",\"artifactType\":\"application/vnd.example.sbom\"") ","
        ENTRY(D3, ",\"artifactType\":\"" MODEL_ARTIFACT_TYPE "\"") ","
        ENTRY(D4, ",\"artifactType\":\"" MODEL_ARTIFACT_TYPE "\"") "]}");
    // clang-format on
    if (!m)
        return;
    const oci_descriptor *d = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(oci_index_select_artifact(m, MODEL_ARTIFACT_TYPE, &d, &e), 0);
    CHECK(d && strcmp(d->digest, D3) == 0); /* the first match */
    CHECK_INT(oci_index_select_artifact(m, MODEL_ARTIFACT_TYPE_CNAI, &d, &e), -ENOENT);
    CHECK(d == NULL);
    CHECK_STR(e.msg, "no manifest with artifactType " MODEL_ARTIFACT_TYPE_CNAI " in index (it has: "
                     "(no artifactType), application/vnd.example.sbom, " MODEL_ARTIFACT_TYPE
                     ", " MODEL_ARTIFACT_TYPE ")");
    /* The entry's own mediaType is not its artifactType. */
    CHECK_INT(oci_index_select_artifact(m, OCI_MT_MANIFEST, &d, &e), -ENOENT);
    CHECK_INT(oci_index_select_artifact(m, "", &d, &e), -EINVAL);
}

MV_TEST(selection_needs_an_index)
{
    _cleanup_manifest_ oci_manifest *m =
        parse("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"" D1
              "\",\"size\":1},\"layers\":[]}");
    if (!m)
        return;
    const oci_descriptor *d = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(oci_index_select_platform(m, NULL, NULL, NULL, &d, &e), -EINVAL);
    CHECK_CONTAINS(e.msg, "is not an index");
    CHECK_INT(oci_index_select_artifact(m, MODEL_ARTIFACT_TYPE, &d, &e), -EINVAL);
}

MV_TEST(docker_list_selects_too)
{
    _cleanup_manifest_ oci_manifest *m =
        parse("{\"schemaVersion\":2,\"mediaType\":\"" DOCKER_MT_LIST "\",\"manifests\":[" ENTRY(
            D1, PLAT("linux", "ppc64le")) "," ENTRY(D2, PLAT("linux", "amd64")) "]}");
    if (m)
        CHECK_STR(pick(m, NULL, NULL, NULL), D2);
}

/* ---- selectors ------------------------------------------------------------- */

#define AT_A "application/vnd.example.a"
#define AT_B "application/vnd.example.b"
#define ENTRY_AT(d, at, plat, annos)                                                               \
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" d                \
    "\",\"size\":1,\"artifactType\":\"" at "\"" plat annos "}"
#define ANNO(k, v) ",\"annotations\":{\"" k "\":\"" v "\"}"
#define NESTED(d, plat)                                                                            \
    "{\"mediaType\":\"" OCI_MT_INDEX "\",\"digest\":\"" d "\",\"size\":1" plat "}"

// clang-format off
static const char MIXED[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"manifests\":["
    ENTRY_AT(D1, AT_A, PLAT("linux", "amd64"), ANNO("org.example.variant", "q4")) ","
    ENTRY_AT(D2, AT_A, PLAT("linux", "arm64"), ANNO("org.example.variant", "q8")) ","
    ENTRY_AT(D3, AT_B, PLAT("linux", "amd64"), ANNO("org.example.variant", "q4")) "]}";
// clang-format on

static const char *sel_pick(const oci_manifest *m, const char *at, const char *plat,
                            const char *anno, int want_r, mv_error *e)
{
    oci_index_selector sel;
    CHECK_INT(oci_index_selector_parse(at, plat, anno, &sel, e), 0);
    const oci_descriptor *d = NULL;
    int r = oci_index_select(m, &sel, "linux", "amd64", &d, e);
    oci_index_selector_clear(&sel);
    CHECK_INT(r, want_r);
    return d ? d->digest : NULL;
}

MV_TEST(selector_parsing_names_the_bad_input)
{
    oci_platform p;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(oci_platform_parse("linux/aarch64/v8", &p, &e), 0);
    CHECK_STR(p.os, "linux");
    CHECK_STR(p.architecture, "arm64");
    CHECK_STR(p.variant, "v8");
    free(p.os);
    free(p.architecture);
    free(p.variant);
    const char *bad[] = {"linux", "linux/", "/amd64", "linux/amd64/v8/x", "linux/am d64", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_INT(oci_platform_parse(bad[i], &p, &e), -EINVAL);
        CHECK_CONTAINS(e.msg, "platform");
    }
    CHECK_INT(oci_platform_parse("linux/amd64/v8/x", &p, &e), -EINVAL);
    CHECK_CONTAINS(e.msg, "\"linux/amd64/v8/x\"");

    char *k = NULL, *v = NULL;
    CHECK_INT(oci_annotation_selector_parse("a.b=c=d", &k, &v, &e), 0);
    CHECK_STR(k, "a.b");
    CHECK_STR(v, "c=d");
    free(k);
    free(v);
    CHECK_INT(oci_annotation_selector_parse("novalue", &k, &v, &e), -EINVAL);
    CHECK_CONTAINS(e.msg, "annotation \"novalue\": not key=value");
    CHECK_INT(oci_annotation_selector_parse("=v", &k, &v, &e), -EINVAL);

    oci_index_selector sel;
    CHECK_INT(oci_index_selector_parse(NULL, "", NULL, &sel, &e), 0);
    CHECK(oci_index_selector_empty(&sel));
    CHECK_INT(oci_index_selector_parse("a b", NULL, NULL, &sel, &e), -EINVAL);
    CHECK_CONTAINS(e.msg, "artifactType \"a b\"");
    CHECK_INT(oci_index_selector_parse(AT_A, "linux/arm64", "k=v", &sel, &e), 0);
    _cleanup_free_ char *s = oci_index_selector_string(&sel);
    CHECK_STR(s, "artifactType=" AT_A " platform=linux/arm64 annotation=k=v");
    oci_index_selector_clear(&sel);
    CHECK(oci_index_selector_empty(&sel));
}

MV_TEST(select_by_each_field_and_by_several)
{
    _cleanup_manifest_ oci_manifest *m = parse(MIXED);
    if (!m)
        return;
    mv_error e = MV_ERROR_INIT;
    CHECK_STR(sel_pick(m, AT_B, NULL, NULL, 0, &e), D3);
    CHECK_STR(sel_pick(m, NULL, "linux/arm64", NULL, 0, &e), D2);
    CHECK_STR(sel_pick(m, NULL, "linux/aarch64/v8", NULL, 0, &e), D2);
    CHECK_STR(sel_pick(m, NULL, NULL, "org.example.variant=q8", 0, &e), D2);
    CHECK_STR(sel_pick(m, AT_A, "linux/amd64", NULL, 0, &e), D1);
    CHECK_STR(sel_pick(m, AT_B, NULL, "org.example.variant=q4", 0, &e), D3);
}

MV_TEST(several_matches_list_each_candidate)
{
    _cleanup_manifest_ oci_manifest *m = parse(MIXED);
    if (!m)
        return;
    mv_error e = MV_ERROR_INIT;
    CHECK(sel_pick(m, AT_A, NULL, NULL, -EINVAL, &e) == NULL);
    CHECK_CONTAINS(e.msg, "2 manifests in the index match artifactType=" AT_A);
    CHECK_CONTAINS(e.msg, D1 " (artifactType " AT_A ", platform linux/amd64, annotations "
                             "{org.example.variant=\"q4\"})");
    CHECK_CONTAINS(e.msg, D2 " (artifactType " AT_A ", platform linux/arm64");
    CHECK(strstr(e.msg, D3) == NULL);
    CHECK(strchr(e.msg, '\n') == NULL);

    CHECK(sel_pick(m, NULL, "linux/amd64", NULL, -EINVAL, &e) == NULL);
    CHECK_CONTAINS(e.msg, D1);
    CHECK_CONTAINS(e.msg, D3);
}

MV_TEST(no_match_lists_the_entries)
{
    _cleanup_manifest_ oci_manifest *m = parse(MIXED);
    if (!m)
        return;
    mv_error e = MV_ERROR_INIT;
    CHECK(sel_pick(m, NULL, "linux/s390x", NULL, -ENOENT, &e) == NULL);
    CHECK_CONTAINS(e.msg, "no manifest in the index matches platform=linux/s390x (it has: ");
    CHECK_CONTAINS(e.msg, D1);
    CHECK_CONTAINS(e.msg, D3);
    CHECK(sel_pick(m, NULL, NULL, "org.example.variant=q2", -ENOENT, &e) == NULL);
    CHECK_CONTAINS(e.msg, "annotation=org.example.variant=q2");
}

MV_TEST(no_selector_keeps_todays_rules)
{
    mv_error e = MV_ERROR_INIT;
    const oci_descriptor *d = NULL;
    _cleanup_manifest_ oci_manifest *multi = parse(MULTI);
    if (!multi)
        return;
    CHECK_INT(oci_index_select(multi, NULL, "linux", "arm64", &d, &e), 0);
    CHECK_STR(d->digest, D3);
    oci_index_selector empty = {0};
    CHECK_INT(oci_index_select(multi, &empty, "linux", "amd64", &d, &e), 0);
    CHECK_STR(d->digest, D2);
    // clang-format off
    _cleanup_manifest_ oci_manifest *model = parse(
        "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"manifests\":["
        ENTRY(D1, PLAT("linux", "amd64")) ","
        ENTRY_AT(D2, MODEL_ARTIFACT_TYPE_CNAI, "", "") ","
        ENTRY_AT(D3, MODEL_ARTIFACT_TYPE, "", "") "]}");
    // clang-format on
    if (!model)
        return;
    CHECK_INT(oci_index_select(model, NULL, "linux", "amd64", &d, &e), 0);
    CHECK_STR(d->digest, D3);
    CHECK_INT(oci_index_select(multi, NULL, "linux", "s390x", &d, &e), -ENOENT);
    CHECK_CONTAINS(e.msg, "no manifest for linux/s390x");
}

MV_TEST(nested_index_entries_stay_candidates)
{
    mv_error e = MV_ERROR_INIT;
    const oci_descriptor *d = NULL;
    /* No selector: an index that only wraps another index is followed. */
    _cleanup_manifest_ oci_manifest *wrap =
        parse("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX
              "\",\"manifests\":[" NESTED(D4, "") "]}");
    if (!wrap)
        return;
    CHECK_INT(oci_index_select(wrap, NULL, "linux", "amd64", &d, &e), 0);
    CHECK_STR(d->digest, D4);
    CHECK(oci_descriptor_is_index(d));
    /* A selector is not ruled out by fields a nested index lacks ... */
    CHECK_STR(sel_pick(wrap, AT_A, "linux/arm64", "k=v", 0, &e), D4);
    /* ... but is by the fields it has. */
    _cleanup_manifest_ oci_manifest *two =
        parse("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"manifests\":[" NESTED(
            D4, PLAT("linux", "amd64")) "," NESTED(D5, PLAT("linux", "arm64")) "]}");
    if (!two)
        return;
    CHECK_STR(sel_pick(two, NULL, "linux/arm64", NULL, 0, &e), D5);
    /* Two nested indexes, one empty selector field each: the user chooses. */
    _cleanup_manifest_ oci_manifest *amb =
        parse("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX
              "\",\"manifests\":[" NESTED(D4, "") "," NESTED(D5, "") "]}");
    if (!amb)
        return;
    CHECK(sel_pick(amb, AT_A, NULL, NULL, -EINVAL, &e) == NULL);
    CHECK_CONTAINS(e.msg, D4);
    CHECK_CONTAINS(e.msg, D5);
}

int main(void)
{
    MV_RUN(platform_defaults_and_exact_matches);
    MV_RUN(arm64_v8_is_the_same_as_no_variant);
    MV_RUN(no_variant_asked_prefers_the_plain_build);
    MV_RUN(no_match_lists_what_was_there);
    MV_RUN(long_listing_is_cut_and_marked);
    MV_RUN(select_by_artifact_type);
    MV_RUN(selection_needs_an_index);
    MV_RUN(docker_list_selects_too);
    MV_RUN(selector_parsing_names_the_bad_input);
    MV_RUN(select_by_each_field_and_by_several);
    MV_RUN(several_matches_list_each_candidate);
    MV_RUN(no_match_lists_the_entries);
    MV_RUN(no_selector_keeps_todays_rules);
    MV_RUN(nested_index_entries_stay_candidates);
    MV_DONE();
}
