/* test_cache_layout.c — the cache executing layout plans, without a
 * registry (policy Never on stored blobs): an ORAS file under a tar media
 * type linked raw, an ORAS directory tar unpacked with its
 * io.deis.oras.content.digest checked, an executable code file copied
 * (never a chmod of the shared blob), the kind filter, and the errors that
 * replace an empty volume: nothing placeable, a filter leaving no file. */
#include "cachetest.h"

#define REPO "127.0.0.1:9/test/layout"
#define EMPTY_CFG                                                                                  \
    "{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":"                             \
    "\"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\",\"size\":2}"

/* An ORAS-style manifest (artifactType, empty config) over layers JSON. */
static void store_oras(cache *c, const char *layers, char md[OCI_DIGEST_MAX])
{
    char cd[OCI_DIGEST_MAX];
    ct_blob(c, "{}", 2, cd);
    _cleanup_free_ char *m = mv_xasprintf(
        "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_MANIFEST
        "\",\"artifactType\":\"application/vnd.unknown.artifact.v1\",\"config\":" EMPTY_CFG
        ",\"layers\":[%s]}",
        layers);
    ct_blob(c, m, strlen(m), md);
}

static int pull_never(cache *c, const char *md, const cache_request_args *base,
                      cache_pull_result *res, mv_error *e)
{
    cache_request_args o = base ? *base : (cache_request_args){0};
    o.policy = CACHE_PULL_NEVER;
    _cleanup_free_ char *ref = mv_xasprintf(REPO "@%s", md);
    o.reference = ref;
    _cleanup_cache_request_ cache_request *rq = NULL;
    int r = cache_request_parse(&o, &rq, e);
    if (r == 0)
        r = cache_pull(c, rq, res, e);
    return r;
}

static char *in(const char *dir, const char *rel)
{
    return mv_xasprintf("%s/%s", dir ? dir : "/nonexistent", rel);
}

static struct stat stat_of(const char *p)
{
    struct stat st = {0};
    stat(p, &st);
    return st;
}

MV_TEST(oras_file_under_a_tar_type_is_linked_raw)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    char fd[OCI_DIGEST_MAX], md[OCI_DIGEST_MAX];
    ct_blob(c, "not a tar\n", 10, fd);
    _cleanup_free_ char *layers = mv_xasprintf(
        "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"%s\","
        "\"size\":10,\"annotations\":{\"org.opencontainers.image.title\":\"hello.txt\"}}",
        fd);
    store_oras(c, layers, md);
    cache_pull_result r = {0};
    CHECK_INT(pull_never(c, md, NULL, &r, &e), 0);
    _cleanup_free_ char *p = in(r.tree_path, "hello.txt");
    _cleanup_free_ char *blob = mv_xasprintf("%s/blobs/sha256/%s", dir, oci_digest_hex(fd));
    struct stat st = stat_of(p);
    CHECK(st.st_ino != 0 && st.st_ino == stat_of(blob).st_ino);
    CHECK_INT(st.st_mode & 07777, 0444);
    CHECK_INT(ct_count(r.tree_path ? r.tree_path : "/nonexistent"), 1);
    CHECK_INT(r.n_skipped, 0);
    cache_pull_result_clear(&r);
    ct_rmtree(dir);
}

MV_TEST(oras_directory_unpacks_and_checks_its_digest)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    /* oras-go's file store tars a directory "weights" with entries under
     * "weights/" (content/file/utils.go tarDirectory). */
    static const ct_entry te[] = {
        {"weights/", AE_IFDIR, NULL, 0755, 0},
        {"weights/a.bin", AE_IFREG, "AAAA", 0644, 0},
    };
    ct_buf gz = ct_tar(te, 2, CT_GZIP);
    ct_buf plain = ct_tar(te, 2, CT_PLAIN);
    char td[OCI_DIGEST_MAX], diff[OCI_DIGEST_MAX];
    ct_blob(c, gz.data, gz.len, td);
    oci_digest_buf(OCI_DIGEST_SHA256, plain.data, plain.len, diff);
    for (int good = 0; good < 2; good++) {
        char md[OCI_DIGEST_MAX];
        _cleanup_free_ char *layers = mv_xasprintf(
            "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"%s\","
            "\"size\":%zu,\"annotations\":{\"org.opencontainers.image.title\":\"weights\","
            "\"io.deis.oras.content.unpack\":\"true\",\"io.deis.oras.content.digest\":\"%s\"}}",
            td, gz.len,
            good ? diff
                 : "sha256:0000000000000000000000000000000000000000000000000000000000000000");
        store_oras(c, layers, md);
        cache_pull_result r = {0};
        int rr = pull_never(c, md, NULL, &r, &e);
        if (!good) {
            CHECK_INT(rr, -EBADMSG);
            CHECK_CONTAINS(e.msg, td);
            mv_error_clear(&e);
            continue;
        }
        CHECK_INT(rr, 0);
        _cleanup_free_ char *a = in(r.tree_path, "weights/a.bin");
        _cleanup_free_ char *ac = ct_read(a);
        CHECK_STR(ac, "AAAA");
        cache_pull_result_clear(&r);
    }
    free(gz.data);
    free(plain.data);
    ct_rmtree(dir);
}

/* A ModelPack model: a weight, a config, an executable code file. */
static void store_modelpack(cache *c, char md[OCI_DIGEST_MAX], char wd[OCI_DIGEST_MAX],
                            char kd[OCI_DIGEST_MAX], char xd[OCI_DIGEST_MAX])
{
    ct_blob(c, "weights!", 8, wd);
    ct_blob(c, "{\"h\":1}", 7, kd);
    ct_blob(c, "#!/bin/sh\necho hi\n", 18, xd);
    _cleanup_free_ char *cfg = mv_xasprintf(
        "{\"modelfs\":{\"type\":\"layers\",\"diffIds\":[\"%s\",\"%s\",\"%s\"]}}", wd, kd, xd);
    char cd[OCI_DIGEST_MAX];
    ct_blob(c, cfg, strlen(cfg), cd);
    _cleanup_free_ char *m = mv_xasprintf(
        "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_MANIFEST
        "\",\"artifactType\":\"" MODEL_ARTIFACT_TYPE
        "\",\"config\":{\"mediaType\":\"" MODEL_MT_CONFIG
        "\",\"digest\":\"%s\",\"size\":%zu},\"layers\":["
        "{\"mediaType\":\"application/vnd.cncf.model.weight.v1.raw\",\"digest\":\"%s\","
        "\"size\":8,\"annotations\":{\"org.cncf.model.filepath\":\"w.bin\"}},"
        "{\"mediaType\":\"application/vnd.cncf.model.weight.config.v1.raw\",\"digest\":\"%s\","
        "\"size\":7,\"annotations\":{\"org.cncf.model.filepath\":\"config.json\"}},"
        "{\"mediaType\":\"application/vnd.cncf.model.code.v1.raw\",\"digest\":\"%s\","
        "\"size\":18,\"annotations\":{\"org.cncf.model.filepath\":\"run.sh\","
        "\"org.cncf.model.file.metadata+json\":\"{\\\"name\\\":\\\"run.sh\\\",\\\"mode\\\":493}\"}}"
        "]}",
        cd, strlen(cfg), wd, kd, xd);
    ct_blob(c, m, strlen(m), md);
}

MV_TEST(executable_code_is_a_copy_the_blob_stays_0444)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    char md[OCI_DIGEST_MAX], wd[OCI_DIGEST_MAX], kd[OCI_DIGEST_MAX], xd[OCI_DIGEST_MAX];
    store_modelpack(c, md, wd, kd, xd);
    cache_pull_result r = {0};
    CHECK_INT(pull_never(c, md, NULL, &r, &e), 0);
    _cleanup_free_ char *x = in(r.tree_path, "run.sh");
    _cleanup_free_ char *xb = mv_xasprintf("%s/blobs/sha256/%s", dir, oci_digest_hex(xd));
    struct stat st = stat_of(x);
    CHECK_INT(st.st_mode & 07777, 0555);
    CHECK(st.st_ino != stat_of(xb).st_ino);
    CHECK_INT(stat_of(xb).st_mode & 07777, 0444);
    _cleanup_free_ char *xc = ct_read(x);
    CHECK_STR(xc, "#!/bin/sh\necho hi\n");
    _cleanup_free_ char *w = in(r.tree_path, "w.bin");
    _cleanup_free_ char *wb = mv_xasprintf("%s/blobs/sha256/%s", dir, oci_digest_hex(wd));
    CHECK(stat_of(w).st_ino == stat_of(wb).st_ino); /* weights stay zero-copy */
    cache_pull_result_clear(&r);
    ct_rmtree(dir);
}

MV_TEST(kind_filter_keeps_its_kinds_and_is_part_of_the_tree_id)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    char md[OCI_DIGEST_MAX], wd[OCI_DIGEST_MAX], kd[OCI_DIGEST_MAX], xd[OCI_DIGEST_MAX];
    store_modelpack(c, md, wd, kd, xd);
    cache_pull_result all = {0}, cfg = {0}, cfg2 = {0};
    CHECK_INT(pull_never(c, md, NULL, &all, &e), 0);
    CHECK_INT(pull_never(c, md, &(cache_request_args){.kinds_csv = "config"}, &cfg, &e), 0);
    CHECK(strcmp(all.tree_id, cfg.tree_id) != 0);
    CHECK_INT(ct_count(cfg.tree_path ? cfg.tree_path : "/nonexistent"), 1);
    _cleanup_free_ char *cj = in(cfg.tree_path, "config.json");
    CHECK(ct_exists(cj));
    /* The same filter however it is spelled: one tree. */
    static const char *const words[] = {"code", NULL};
    CHECK_INT(pull_never(c, md,
                         &(cache_request_args){.kinds_csv = " code , config", .kinds = words},
                         &cfg2, &e),
              0);
    cache_pull_result cfg3 = {0};
    CHECK_INT(pull_never(c, md, &(cache_request_args){.kinds_csv = "config,code"}, &cfg3, &e), 0);
    CHECK_STR(cfg2.tree_id, cfg3.tree_id);
    CHECK(cfg3.cache_hit);
    CHECK_INT(ct_count(cfg3.tree_path ? cfg3.tree_path : "/nonexistent"), 2);
    cache_pull_result_clear(&all);
    cache_pull_result_clear(&cfg);
    cache_pull_result_clear(&cfg2);
    cache_pull_result_clear(&cfg3);
    ct_rmtree(dir);
}

MV_TEST(filters_that_leave_nothing_are_errors_naming_them)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    char md[OCI_DIGEST_MAX], wd[OCI_DIGEST_MAX], kd[OCI_DIGEST_MAX], xd[OCI_DIGEST_MAX];
    store_modelpack(c, md, wd, kd, xd);
    cache_pull_result r = {0};
    CHECK_INT(pull_never(c, md, &(cache_request_args){.include_csv = "[[[["}, &r, &e), -EINVAL);
    CHECK_CONTAINS(e.msg, "include \"[[[[\" matches no file of");
    CHECK_CONTAINS(e.msg, md);
    mv_error_clear(&e);
    CHECK_INT(pull_never(c, md, &(cache_request_args){.kinds_csv = "datasets"}, &r, &e), -EINVAL);
    CHECK_CONTAINS(e.msg, "kinds \"datasets\" matches no file");
    mv_error_clear(&e);
    CHECK_INT(pull_never(c, md, &(cache_request_args){.kinds_csv = "weights,bogus"}, &r, &e),
              -EINVAL);
    CHECK_CONTAINS(e.msg, "bogus");
    mv_error_clear(&e);
    _cleanup_free_ char *trees = mv_xasprintf("%s/trees", dir);
    CHECK_INT(ct_count(trees), 0);
    ct_rmtree(dir);
}

MV_TEST(nothing_placeable_is_an_error_skips_are_reported)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    char od[OCI_DIGEST_MAX], fd[OCI_DIGEST_MAX], md[OCI_DIGEST_MAX], md2[OCI_DIGEST_MAX];
    ct_blob(c, "opaque", 6, od);
    ct_blob(c, "file", 4, fd);
    _cleanup_free_ char *l1 = mv_xasprintf(
        "{\"mediaType\":\"application/x-nobody-knows\",\"digest\":\"%s\",\"size\":6}", od);
    store_oras(c, l1, md);
    cache_pull_result r = {0};
    CHECK_INT(pull_never(c, md, NULL, &r, &e), -EPROTO);
    CHECK_CONTAINS(e.msg, md);
    CHECK_CONTAINS(e.msg, "application/x-nobody-knows");
    mv_error_clear(&e);

    _cleanup_free_ char *l2 = mv_xasprintf(
        "%s,{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"%s\","
        "\"size\":4,\"annotations\":{\"org.opencontainers.image.title\":\"f.txt\"}}",
        l1, fd);
    store_oras(c, l2, md2);
    CHECK_INT(pull_never(c, md2, NULL, &r, &e), 0);
    CHECK_INT(r.n_skipped, 1);
    CHECK_CONTAINS(r.skipped, od);
    CHECK_CONTAINS(r.skipped, "application/x-nobody-knows");
    cache_pull_result_clear(&r);
    ct_rmtree(dir);
}

MV_TEST(filter_describe)
{
    static const char *const inc[] = {"*.json", "tok/*", NULL};
    static const char *const kinds[] = {"weights", NULL};
    _cleanup_free_ char *a = cache_filter_describe(inc, NULL, kinds, "sub");
    CHECK_STR(a, "include \"*.json,tok/*\" kinds \"weights\" subpath \"sub\"");
    _cleanup_free_ char *b = cache_filter_describe(NULL, NULL, NULL, NULL);
    CHECK_STR(b, "");
}

int main(void)
{
    MV_RUN(oras_file_under_a_tar_type_is_linked_raw);
    MV_RUN(oras_directory_unpacks_and_checks_its_digest);
    MV_RUN(executable_code_is_a_copy_the_blob_stays_0444);
    MV_RUN(kind_filter_keeps_its_kinds_and_is_part_of_the_tree_id);
    MV_RUN(filters_that_leave_nothing_are_errors_naming_them);
    MV_RUN(nothing_placeable_is_an_error_skips_are_reported);
    MV_RUN(filter_describe);
    MV_DONE();
}
