/* test_cache_store.c — the cache without a registry: atomic ingest, trees
 * of hard links built from stored blobs (ModelPack raw layers, filters,
 * subpath), modelcar images flattened with whiteouts, the tag cache under
 * the Never policy, pins, GC (LRU order, pins, size target), remove,
 * verify, locks and recovery of what killed processes leave, and tree usage
 * (recorded at build, measured for older trees). Pulls use
 * policy Never on a closed port, so any network use would fail the test. */
#include "cachetest.h"

#include <cJSON.h>
#include <sys/file.h>
#include <time.h>

#define REPO "127.0.0.1:9/test/model"

typedef struct tfile {
    const char *path;
    const char *data;
    size_t len;
} tfile;

static char *xdigest_json_layers(cache *c, const tfile *f, size_t n, char **diff_ids)
{
    char *layers = mv_xstrdup("");
    char *diffs = mv_xstrdup("");
    for (size_t i = 0; i < n; i++) {
        char d[OCI_DIGEST_MAX];
        ct_blob(c, f[i].data, f[i].len, d);
        char *l = mv_xasprintf(
            "%s%s{\"mediaType\":\"application/vnd.cncf.model.weight.v1.raw\",\"digest\":\"%s\","
            "\"size\":%zu,\"annotations\":{\"org.cncf.model.filepath\":\"%s\"}}",
            layers, i ? "," : "", d, f[i].len, f[i].path);
        char *dd = mv_xasprintf("%s%s\"%s\"", diffs, i ? "," : "", d);
        free(layers);
        free(diffs);
        layers = l;
        diffs = dd;
    }
    *diff_ids = diffs;
    return layers;
}

/* Stores a ModelPack model (one raw layer per file); returns the manifest
 * digest in out. */
static void store_model(cache *c, const tfile *f, size_t n, char out[OCI_DIGEST_MAX])
{
    _cleanup_free_ char *diffs = NULL;
    _cleanup_free_ char *layers = xdigest_json_layers(c, f, n, &diffs);
    _cleanup_free_ char *cfg =
        mv_xasprintf("{\"modelfs\":{\"type\":\"layers\",\"diffIds\":[%s]}}", diffs);
    char cd[OCI_DIGEST_MAX];
    ct_blob(c, cfg, strlen(cfg), cd);
    _cleanup_free_ char *m = mv_xasprintf("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_MANIFEST
                                          "\",\"artifactType\":\"" MODEL_ARTIFACT_TYPE
                                          "\",\"config\":{\"mediaType\":\"" MODEL_MT_CONFIG
                                          "\",\"digest\":\"%s\",\"size\":%zu},\"layers\":[%s]}",
                                          cd, strlen(cfg), layers);
    ct_blob(c, m, strlen(m), out);
}

/* cache_pull of the request a front end would build from a. */
static int pull_args(cache *c, const cache_request_args *a, cache_pull_result *res, mv_error *e)
{
    _cleanup_cache_request_ cache_request *rq = NULL;
    int r = cache_request_parse(a, &rq, e);
    if (r == 0)
        r = cache_pull(c, rq, res, e);
    return r;
}

static int pull_never(cache *c, const char *digest, const cache_request_args *base,
                      cache_pull_result *res, mv_error *e)
{
    cache_request_args o = base ? *base : (cache_request_args){0};
    o.policy = CACHE_PULL_NEVER;
    _cleanup_free_ char *ref = mv_xasprintf(REPO "@%s", digest);
    o.reference = ref;
    int r = pull_args(c, &o, res, e);
    if (r < 0)
        fprintf(stderr, "pull: %s\n", e->msg);
    return r;
}

static char *path_in(const char *dir, const char *rel)
{
    return mv_xasprintf("%s/%s", dir, rel);
}

static ino_t inode_of(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? st.st_ino : 0;
}

static char *big(size_t n, unsigned seed)
{
    char *b = mv_xmalloc(n);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        b[i] = (char)(seed >> 16);
    }
    return b;
}

MV_TEST(ingest_is_atomic_and_verified)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    _cleanup_free_ char *blobs = path_in(dir, "blobs/sha256");
    /* Wrong content for the digest: refused, nothing visible. */
    CHECK_INT(cache_ingest_buf(c,
                               "sha256:0000000000000000000000000000000000000000000000000000000000"
                               "000000",
                               "x", 1, &e),
              -EBADMSG);
    CHECK_INT(ct_count(blobs), 0);

    /* The puller's path: partial file, commit, read-only, EEXIST is fine. */
    const char data[] = "hello blob";
    char d[OCI_DIGEST_MAX];
    oci_digest_buf(OCI_DIGEST_SHA256, data, strlen(data), d);
    oci_descriptor desc = {.digest = d, .size = (int64_t)strlen(data), .media_type = "x"};
    for (int round = 0; round < 2; round++) {
        int fd = -1;
        _cleanup_free_ char *state = NULL;
        CHECK_INT(cache_ingest_open(c, d, &fd, &state, &e), 0);
        CHECK(write(fd, data, strlen(data)) == (ssize_t)strlen(data));
        CHECK_INT(cache_ingest_commit(c, &desc, fd, &e), 0);
        close(fd);
    }
    _cleanup_free_ char *bp = mv_xasprintf("%s/%s", blobs, oci_digest_hex(d));
    struct stat st;
    CHECK_INT(stat(bp, &st), 0);
    CHECK_INT(st.st_mode & 0777, 0444);
    _cleanup_free_ char *ingest = path_in(dir, "ingest");
    CHECK_INT(ct_count(ingest), 0);

    /* A short download never becomes visible. */
    char d2[OCI_DIGEST_MAX];
    oci_digest_buf(OCI_DIGEST_SHA256, "abc", 3, d2);
    oci_descriptor desc2 = {.digest = d2, .size = 3, .media_type = "x"};
    int fd = -1;
    _cleanup_free_ char *state = NULL;
    CHECK_INT(cache_ingest_open(c, d2, &fd, &state, &e), 0);
    CHECK(write(fd, "ab", 2) == 2);
    CHECK_INT(cache_ingest_commit(c, &desc2, fd, &e), -EBADMSG);
    CHECK_CONTAINS(e.msg, d2);
    close(fd);
    CHECK(!cache_blob_exists(c, d2));
    ct_rmtree(dir);
}

MV_TEST(modelpack_tree_links_filters_subpath)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    _cleanup_free_ char *w = big(1 << 20, 1);
    tfile f[] = {{"model.safetensors", w, 1 << 20},
                 {"config.json", "{\"x\":1}", 7},
                 {"tok/tokenizer.json", "{}", 2}};
    char md[OCI_DIGEST_MAX];
    store_model(c, f, 3, md);

    cache_pull_result r1 = {0};
    CHECK_INT(pull_never(c, md, NULL, &r1, &e), 0);
    CHECK(!r1.cache_hit);
    CHECK_STR(r1.manifest_digest, md);
    _cleanup_free_ char *p = path_in(r1.tree_path, "model.safetensors");
    char wd[OCI_DIGEST_MAX];
    oci_digest_buf(OCI_DIGEST_SHA256, w, 1 << 20, wd);
    _cleanup_free_ char *bp = mv_xasprintf("%s/blobs/sha256/%s", dir, oci_digest_hex(wd));
    CHECK(inode_of(p) != 0 && inode_of(p) == inode_of(bp)); /* a hard link, no copy */
    _cleanup_free_ char *tok = path_in(r1.tree_path, "tok/tokenizer.json");
    _cleanup_free_ char *tokc = ct_read(tok);
    CHECK_STR(tokc, "{}");
    CHECK_INT(ct_count(r1.tree_path), 3);

    cache_pull_result r2 = {0};
    CHECK_INT(pull_never(c, md, NULL, &r2, &e), 0);
    CHECK(r2.cache_hit);
    CHECK_STR(r2.tree_path, r1.tree_path);

    /* A filter is a different tree, holding only what it selects. */
    static const char *const inc[] = {"*.json", NULL};
    static const char *const exc[] = {"tok/*", NULL};
    cache_request_args o = {.include = inc, .exclude = exc};
    cache_pull_result r3 = {0};
    CHECK_INT(pull_never(c, md, &o, &r3, &e), 0);
    CHECK(strcmp(r3.tree_id, r1.tree_id) != 0);
    CHECK_INT(ct_count(r3.tree_path), 1);
    _cleanup_free_ char *cj = path_in(r3.tree_path, "config.json");
    CHECK(ct_exists(cj));

    cache_request_args os = {.subpath = "tok"};
    cache_pull_result r4 = {0};
    CHECK_INT(pull_never(c, md, &os, &r4, &e), 0);
    _cleanup_free_ char *tj = path_in(r4.tree_path, "tokenizer.json");
    CHECK(ct_exists(tj));
    CHECK_INT(ct_count(r4.tree_path), 1);

    cache_request_args bad = {.subpath = "../etc"};
    cache_pull_result r5 = {0};
    CHECK(pull_never(c, md, &bad, &r5, &e) < 0);
    cache_pull_result_clear(&r1);
    cache_pull_result_clear(&r2);
    cache_pull_result_clear(&r3);
    cache_pull_result_clear(&r4);
    ct_rmtree(dir);
}

/* A ModelPack model mixing a raw layer and a tar layer of a directory;
 * the tar layer is filtered by its filepath annotation and its diffId in
 * the config is checked. */
MV_TEST(modelpack_tar_layer)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    static const ct_entry te[] = {
        {"tok/", AE_IFDIR, NULL, 0755, 0},
        {"tok/a.json", AE_IFREG, "A", 0644, 0},
        {"tok/b.json", AE_IFREG, "B", 0644, 0},
    };
    ct_buf tar = ct_tar(te, 3, CT_ZSTD);
    ct_buf plain = ct_tar(te, 3, CT_PLAIN);
    char td[OCI_DIGEST_MAX], tdiff[OCI_DIGEST_MAX], wd[OCI_DIGEST_MAX], cd[OCI_DIGEST_MAX],
        md[OCI_DIGEST_MAX];
    ct_blob(c, tar.data, tar.len, td);
    oci_digest_buf(OCI_DIGEST_SHA256, plain.data, plain.len, tdiff);
    ct_blob(c, "weights", 7, wd);
    for (int good = 0; good < 2; good++) {
        _cleanup_free_ char *cfg =
            mv_xasprintf("{\"modelfs\":{\"type\":\"layers\",\"diffIds\":[\"%s\",\"%s\"]}}", wd,
                         good ? tdiff : wd);
        ct_blob(c, cfg, strlen(cfg), cd);
        _cleanup_free_ char *m = mv_xasprintf(
            "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_MANIFEST
            "\",\"artifactType\":\"" MODEL_ARTIFACT_TYPE
            "\",\"config\":{\"mediaType\":\"" MODEL_MT_CONFIG
            "\",\"digest\":\"%s\",\"size\":%zu},\"layers\":["
            "{\"mediaType\":\"application/vnd.cncf.model.weight.v1.raw\",\"digest\":\"%s\","
            "\"size\":7,\"annotations\":{\"org.cncf.model.filepath\":\"w.bin\"}},"
            "{\"mediaType\":\"application/vnd.cncf.model.weight.config.v1.tar+zstd\","
            "\"digest\":\"%s\",\"size\":%zu,\"annotations\":{\"org.cncf.model.filepath\":"
            "\"tok\"}}]}",
            cd, strlen(cfg), wd, td, tar.len);
        ct_blob(c, m, strlen(m), md);
        cache_pull_result r = {0};
        _cleanup_free_ char *ref = mv_xasprintf(REPO "@%s", md);
        cache_request_args never = {.policy = CACHE_PULL_NEVER};
        never.reference = ref;
        int rr = pull_args(c, &never, &r, &e);
        if (!good) {
            CHECK_INT(rr, -EBADMSG); /* the config's diffId does not match the tar */
            CHECK_CONTAINS(e.msg, td);
            continue;
        }
        CHECK_INT(rr, 0);
        _cleanup_free_ char *a = path_in(r.tree_path ? r.tree_path : "/x", "tok/a.json");
        _cleanup_free_ char *ac = ct_read(a);
        CHECK_STR(ac, "A");
        CHECK_INT(ct_count(r.tree_path ? r.tree_path : "/nonexistent"), 2);
        cache_pull_result_clear(&r);
        static const char *const inc[] = {"*.bin", NULL};
        cache_request_args o = {.include = inc};
        CHECK_INT(pull_never(c, md, &o, &r, &e), 0);
        CHECK_INT(ct_count(r.tree_path ? r.tree_path : "/nonexistent"), 1);
        cache_pull_result_clear(&r);
    }
    free(tar.data);
    free(plain.data);
    ct_rmtree(dir);
}

MV_TEST(tag_cache_and_never_policy)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    tfile f[] = {{"a.json", "{}", 2}};
    char md[OCI_DIGEST_MAX];
    store_model(c, f, 1, md);
    cache_request_args o = {.reference = REPO ":v1", .policy = CACHE_PULL_NEVER};
    cache_pull_result r = {0};
    CHECK_INT(pull_args(c, &o, &r, &e), -ENOENT);
    CHECK_CONTAINS(e.msg, "pull " REPO ":v1");
    CHECK_CONTAINS(e.msg, "pull policy is Never");

    CHECK_INT(cache_tag_put(c, REPO ":v1", md, md, &e), 0);
    CHECK_INT(pull_args(c, &o, &r, &e), 0);
    CHECK_STR(r.manifest_digest, md);
    cache_pull_result_clear(&r);
    /* IfNotPresent with the tree there: no registry round trip (port 9 is
     * closed, so a request would fail). */
    o.policy = CACHE_PULL_IF_NOT_PRESENT;
    CHECK_INT(pull_args(c, &o, &r, &e), 0);
    CHECK(r.cache_hit);
    cache_pull_result_clear(&r);
    ct_rmtree(dir);
}

/* An index holding the model (by artifactType) next to an image: the
 * model is chosen, and the tree records the index so GC keeps it. */
MV_TEST(index_selects_the_model)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    tfile f[] = {{"m.gguf", "gguf", 4}};
    char md[OCI_DIGEST_MAX], id[OCI_DIGEST_MAX];
    store_model(c, f, 1, md);
    _cleanup_free_ char *idx = mv_xasprintf(
        "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"manifests\":["
        "{\"mediaType\":\"" OCI_MT_MANIFEST "\",\"digest\":\"sha256:%064d\",\"size\":1,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
        "{\"mediaType\":\"" OCI_MT_MANIFEST "\",\"digest\":\"%s\",\"size\":1,"
        "\"artifactType\":\"" MODEL_ARTIFACT_TYPE "\"}]}",
        1, md);
    ct_blob(c, idx, strlen(idx), id);
    cache_pull_result r = {0};
    CHECK_INT(pull_never(c, id, NULL, &r, &e), 0);
    CHECK_STR(r.manifest_digest, md);
    _cleanup_free_ char *g = path_in(r.tree_path ? r.tree_path : "/nonexistent", "m.gguf");
    _cleanup_free_ char *gc = ct_read(g);
    CHECK_STR(gc, "gguf");
    cache_pull_result_clear(&r);
    /* GC of unreferenced data keeps the index the tree came from. */
    CHECK_INT(cache_sweep_unreferenced(c, true, NULL, NULL, NULL, &e), 0);
    CHECK(cache_blob_exists(c, id));
    ct_rmtree(dir);
}

/* Two image layers: the upper one deletes a file, makes a directory
 * opaque and adds files. */
MV_TEST(modelcar_whiteouts)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    static const ct_entry l1[] = {
        {"bin/", AE_IFDIR, NULL, 0755, 0},         {"bin/sh", AE_IFREG, "#!", 0755, 0},
        {"models/", AE_IFDIR, NULL, 0755, 0},      {"models/a.txt", AE_IFREG, "a", 0644, 0},
        {"models/b.txt", AE_IFREG, "b1", 0644, 0}, {"models/dir/", AE_IFDIR, NULL, 0755, 0},
        {"models/dir/x", AE_IFREG, "x", 0644, 0},
    };
    static const ct_entry l2[] = {
        {"models/.wh.a.txt", AE_IFREG, "", 0644, 0},
        {"models/b.txt", AE_IFREG, "b2", 0644, 0},
        {"models/dir/.wh..wh..opq", AE_IFREG, "", 0644, 0},
        {"models/dir/y", AE_IFREG, "y", 0644, 0},
        {"models/c.txt", AE_IFREG, "c", 0644, 0},
    };
    ct_buf t1 = ct_tar(l1, sizeof(l1) / sizeof(l1[0]), CT_GZIP);
    ct_buf t2 = ct_tar(l2, sizeof(l2) / sizeof(l2[0]), CT_GZIP);
    ct_buf p1 = ct_tar(l1, sizeof(l1) / sizeof(l1[0]), CT_PLAIN);
    ct_buf p2 = ct_tar(l2, sizeof(l2) / sizeof(l2[0]), CT_PLAIN);
    char d1[OCI_DIGEST_MAX], d2[OCI_DIGEST_MAX], f1[OCI_DIGEST_MAX], f2[OCI_DIGEST_MAX],
        cd[OCI_DIGEST_MAX], md[OCI_DIGEST_MAX];
    ct_blob(c, t1.data, t1.len, d1);
    ct_blob(c, t2.data, t2.len, d2);
    oci_digest_buf(OCI_DIGEST_SHA256, p1.data, p1.len, f1);
    oci_digest_buf(OCI_DIGEST_SHA256, p2.data, p2.len, f2);
    _cleanup_free_ char *cfg =
        mv_xasprintf("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\","
                     "\"diff_ids\":[\"%s\",\"%s\"]}}",
                     f1, f2);
    ct_blob(c, cfg, strlen(cfg), cd);
    _cleanup_free_ char *m = mv_xasprintf(
        "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_MANIFEST
        "\",\"config\":{\"mediaType\":\"" OCI_MT_CONFIG
        "\",\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":\"" OCI_MT_LAYER_GZIP
        "\",\"digest\":\"%s\",\"size\":%zu},{\"mediaType\":\"" OCI_MT_LAYER_GZIP
        "\",\"digest\":\"%s\",\"size\":%zu}]}",
        cd, strlen(cfg), d1, t1.len, d2, t2.len);
    ct_blob(c, m, strlen(m), md);

    cache_pull_result r = {0};
    CHECK_INT(pull_never(c, md, NULL, &r, &e), 0);
    if (r.tree_path) {
        _cleanup_free_ char *a = path_in(r.tree_path, "a.txt");
        _cleanup_free_ char *b = path_in(r.tree_path, "b.txt");
        _cleanup_free_ char *cc = path_in(r.tree_path, "c.txt");
        _cleanup_free_ char *x = path_in(r.tree_path, "dir/x");
        _cleanup_free_ char *y = path_in(r.tree_path, "dir/y");
        _cleanup_free_ char *wh = path_in(r.tree_path, ".wh.a.txt");
        _cleanup_free_ char *sh = path_in(r.tree_path, "bin");
        CHECK(!ct_exists(a));
        CHECK(!ct_exists(x));
        CHECK(!ct_exists(wh));
        CHECK(!ct_exists(sh)); /* only /models is presented */
        _cleanup_free_ char *bc = ct_read(b);
        CHECK_STR(bc, "b2");
        CHECK(ct_exists(cc));
        CHECK(ct_exists(y));
        CHECK_INT(ct_count(r.tree_path), 3); /* b.txt c.txt dir */
    }
    cache_pull_result_clear(&r);

    /* An image without /models needs an explicit subpath. */
    cache_request_args o = {.subpath = "bin"};
    CHECK_INT(pull_never(c, md, &o, &r, &e), 0);
    cache_pull_result_clear(&r);
    o.subpath = "nope";
    CHECK_INT(pull_never(c, md, &o, &r, &e), -ENOENT);
    CHECK_CONTAINS(e.msg, "subpath \"nope\"");

    /* An extracted file changed on disk: verify notices, drops the layer
     * and its trees, and the next pull rebuilds from the verified blob. */
    cache_verify_result v;
    CHECK_INT(cache_verify(c, &v, &e), 0);
    CHECK_INT(v.layers_checked, 2);
    CHECK_INT(v.layers_corrupt, 0);
    cache_verify_result_clear(&v);
    _cleanup_free_ char *cfile =
        mv_xasprintf("%s/layers/sha256/%s/models/c.txt", dir, oci_digest_hex(d2));
    chmod(cfile, 0644); /* root ignores the mode; anyone else needs this */
    int fd = open(cfile, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, "Z", 1, 0) == 1);
    close(fd);
    CHECK_INT(cache_verify(c, &v, &e), 0);
    CHECK_INT(v.layers_corrupt, 1);
    if (v.layers_corrupt)
        CHECK_CONTAINS(v.bad_layers[0], "models/c.txt");
    CHECK_INT(v.corrupt, 0);
    CHECK(v.trees_removed >= 1);
    cache_verify_result_clear(&v);
    CHECK_INT(pull_never(c, md, NULL, &r, &e), 0);
    _cleanup_free_ char *cpath = path_in(r.tree_path ? r.tree_path : "/nonexistent", "c.txt");
    _cleanup_free_ char *ccontent = ct_read(cpath);
    CHECK_STR(ccontent, "c");
    cache_pull_result_clear(&r);
    free(t1.data);
    free(t2.data);
    free(p1.data);
    free(p2.data);
    ct_rmtree(dir);
}

MV_TEST(pins)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    tfile f[] = {{"a.json", "{}", 2}};
    char md[OCI_DIGEST_MAX];
    store_model(c, f, 1, md);
    cache_pull_result r = {0};
    CHECK_INT(pull_never(c, md, NULL, &r, &e), 0);
    CHECK_INT(cache_pin(c, r.tree_id, "csi:/var/lib/kubelet/pods/p1/mount", &e), 0);
    CHECK_INT(cache_pin(c, r.tree_id, "csi:/var/lib/kubelet/pods/p1/mount", &e), 0);
    CHECK_INT(cache_pin(c, r.tree_id, "prewarm:" REPO ":v1", &e), 0);
    CHECK_INT(cache_pin(c, r.tree_id, "bad\nowner", &e), -EINVAL);
    CHECK_INT(cache_pin(c,
                        "sha256:1111111111111111111111111111111111111111111111111111111111111111",
                        "x", &e),
              -ENOENT);
    cache_pin_info *p = NULL;
    size_t n = 0;
    CHECK_INT(cache_pins_list(c, "csi:", &p, &n, &e), 0);
    CHECK_INT(n, 1);
    if (n == 1) {
        CHECK_STR(p[0].owner, "csi:/var/lib/kubelet/pods/p1/mount");
        CHECK_STR(p[0].tree_id, r.tree_id);
    }
    cache_pins_free(p, n);
    /* Durable across handles (a restarted plugin). */
    _cleanup_cache_ cache *c2 = NULL;
    CHECK_INT(cache_open(dir, NULL, &c2, &e), 0);
    CHECK_INT(cache_pins_list(c2, NULL, &p, &n, &e), 0);
    CHECK_INT(n, 2);
    cache_pins_free(p, n);
    CHECK_INT(cache_unpin(c2, r.tree_id, "csi:/var/lib/kubelet/pods/p1/mount", &e), 0);
    CHECK_INT(cache_unpin(c2, r.tree_id, "csi:/var/lib/kubelet/pods/p1/mount", &e), 0);
    CHECK_INT(cache_pins_list(c2, NULL, &p, &n, &e), 0);
    CHECK_INT(n, 1);
    cache_pins_free(p, n);
    char *path = NULL;
    CHECK_INT(cache_tree_lookup(c2, r.tree_id, &path, &e), 0);
    CHECK_STR(path, r.tree_path);
    free(path);
    cache_pull_result_clear(&r);
    ct_rmtree(dir);
}

static void set_lastuse(const char *tree_path, time_t t)
{
    _cleanup_free_ char *lu = mv_xasprintf("%s/../lastuse", tree_path);
    struct timespec ts[2] = {{t, 0}, {t, 0}};
    CHECK_INT(utimensat(AT_FDCWD, lu, ts, 0), 0);
}

MV_TEST(gc_lru_pins_and_size_target)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    enum { MB = 1 << 20 };
    char md[3][OCI_DIGEST_MAX];
    cache_pull_result r[3] = {{0}};
    char *data[3];
    for (int i = 0; i < 3; i++) {
        data[i] = big(MB, (unsigned)i + 7);
        tfile f[] = {{"w.bin", data[i], MB}};
        store_model(c, f, 1, md[i]);
        CHECK_INT(pull_never(c, md[i], NULL, &r[i], &e), 0);
        set_lastuse(r[i].tree_path, 1000 + 1000 * i); /* 0 oldest, 2 newest */
    }
    CHECK_INT(cache_pin(c, r[0].tree_id, "csi:pod-a", &e), 0);

    cache_entry *ents = NULL;
    size_t n = 0;
    CHECK_INT(cache_list(c, &ents, &n, &e), 0);
    CHECK_INT(n, 3);
    if (n == 3) {
        CHECK_STR(ents[0].tree_id, r[0].tree_id); /* least recently used first */
        CHECK_INT(ents[0].n_pins, 1);
        CHECK_INT(ents[1].size, MB);
    }
    cache_entries_free(ents, n);

    /* 3 MiB in use, target 2.5: the oldest unpinned (1) goes, then stop. */
    cache_gc_opts o = {.max_size = 5 * MB / 2};
    cache_gc_result res;
    CHECK_INT(cache_gc(c, &o, &res, &e), 0);
    CHECK_INT(res.trees_removed, 1);
    CHECK(res.target_reached);
    CHECK(res.bytes_after <= 5 * MB / 2);
    CHECK(ct_exists(r[0].tree_path));
    CHECK(!ct_exists(r[1].tree_path));
    CHECK(ct_exists(r[2].tree_path));
    CHECK(!cache_blob_exists(c, md[1]));
    CHECK(cache_blob_exists(c, md[2]));

    /* A tree used a moment ago survives a GC with a minimum age. */
    set_lastuse(r[2].tree_path, time(NULL));
    o.max_size = 1;
    o.min_age_seconds = 60;
    CHECK_INT(cache_gc(c, &o, &res, &e), 0);
    CHECK_INT(res.trees_removed, 0);
    CHECK(ct_exists(r[2].tree_path));

    /* Target below the pinned model: everything else goes, pins stay. */
    o.min_age_seconds = 0;
    CHECK_INT(cache_gc(c, &o, &res, &e), 0);
    CHECK(!res.target_reached);
    CHECK(ct_exists(r[0].tree_path));
    CHECK(!ct_exists(r[2].tree_path));
    _cleanup_free_ char *w0 = path_in(r[0].tree_path, "w.bin");
    _cleanup_free_ char *w0c = ct_read(w0);
    CHECK(w0c && memcmp(w0c, data[0], MB) == 0);

    /* rm refuses a pinned model, then removes it once unpinned. */
    _cleanup_free_ char *ref0 = mv_xasprintf(REPO "@%s", md[0]);
    CHECK_INT(cache_remove(c, ref0, NULL, &e), -EBUSY);
    CHECK_CONTAINS(e.msg, "csi:pod-a");
    CHECK_INT(cache_unpin(c, r[0].tree_id, "csi:pod-a", &e), 0);
    size_t removed = 0;
    CHECK_INT(cache_remove(c, ref0, &removed, &e), 0);
    CHECK_INT(removed, 1);
    CHECK(!ct_exists(r[0].tree_path));
    _cleanup_free_ char *blobs = path_in(dir, "blobs/sha256");
    CHECK_INT(ct_count(blobs), 0);
    CHECK_INT(cache_remove(c, ref0, NULL, &e), -ENOENT);
    for (int i = 0; i < 3; i++) {
        cache_pull_result_clear(&r[i]);
        free(data[i]);
    }
    ct_rmtree(dir);
}

/* Without a size target GC works to the disk-use watermarks; the
 * automatic variant only starts above the high one and spares trees used
 * in the last minute. */
MV_TEST(gc_watermarks)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    cache_options opts = {.high_watermark_pct = 100, .low_watermark_pct = 1};
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, &opts, &c, &e), 0);
    int pct = 0;
    uint64_t bytes = 0;
    CHECK_INT(cache_usage(c, &bytes, &pct, &e), 0);
    if (pct < 2 || pct >= 100)
        return; /* the watermarks below need a disk that is neither empty nor full */
    char md[2][OCI_DIGEST_MAX];
    cache_pull_result r[2] = {{0}};
    for (int i = 0; i < 2; i++) {
        tfile f[] = {{"x.json", i ? "{\"b\":2}" : "{\"a\":1}", 7}};
        store_model(c, f, 1, md[i]);
        CHECK_INT(pull_never(c, md[i], NULL, &r[i], &e), 0);
    }
    set_lastuse(r[0].tree_path, 1000); /* long unused; r[1] was used just now */

    bool ran = true;
    cache_gc_result res;
    CHECK_INT(cache_gc_if_needed(c, &ran, &res, &e), 0);
    CHECK(!ran); /* below the high watermark of 100% */

    cache_close(c);
    c = NULL;
    opts.high_watermark_pct = 1;
    CHECK_INT(cache_open(dir, &opts, &c, &e), 0);
    CHECK_INT(cache_gc_if_needed(c, &ran, &res, &e), 0);
    CHECK(ran);
    CHECK_INT(res.trees_removed, 1);
    CHECK(!res.target_reached); /* 1% is out of reach */
    CHECK(!ct_exists(r[0].tree_path));
    CHECK(ct_exists(r[1].tree_path));

    /* An explicit GC with the low watermark and no minimum age takes all. */
    cache_gc_opts o = {.low_watermark_pct = 1};
    CHECK_INT(cache_gc(c, &o, &res, &e), 0);
    CHECK(!ct_exists(r[1].tree_path));
    CHECK_INT(res.bytes_after, 0);
    for (int i = 0; i < 2; i++)
        cache_pull_result_clear(&r[i]);
    ct_rmtree(dir);
}

MV_TEST(verify_quarantines_corrupt_blobs)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    tfile f[] = {{"w.bin", "weights", 7}};
    char md[OCI_DIGEST_MAX], wd[OCI_DIGEST_MAX];
    store_model(c, f, 1, md);
    oci_digest_buf(OCI_DIGEST_SHA256, "weights", 7, wd);
    cache_pull_result r = {0};
    CHECK_INT(pull_never(c, md, NULL, &r, &e), 0);
    cache_verify_result v;
    CHECK_INT(cache_verify(c, &v, &e), 0);
    CHECK_INT(v.corrupt, 0);
    CHECK_INT(v.blobs_checked, 3);
    cache_verify_result_clear(&v);

    _cleanup_free_ char *bp = mv_xasprintf("%s/blobs/sha256/%s", dir, oci_digest_hex(wd));
    chmod(bp, 0644);
    int fd = open(bp, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, "W", 1, 0) == 1);
    close(fd);
    CHECK_INT(cache_verify(c, &v, &e), 0);
    CHECK_INT(v.corrupt, 1);
    if (v.corrupt)
        CHECK_STR(v.quarantined[0], wd);
    CHECK_INT(v.trees_removed, 1);
    cache_verify_result_clear(&v);
    CHECK(!ct_exists(bp));
    CHECK(!ct_exists(r.tree_path));
    _cleanup_free_ char *q = path_in(dir, "quarantine");
    CHECK_INT(ct_count(q), 1);
    CHECK_INT(cache_verify(c, &v, &e), 0);
    CHECK_INT(v.corrupt, 0);
    cache_verify_result_clear(&v);
    cache_pull_result_clear(&r);
    ct_rmtree(dir);
}

MV_TEST(locks_and_recovery)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    int a = -1, b = -1;
    CHECK_INT(cache_lock(c, "blob-abc", LOCK_EX, &a, &e), 0);
    CHECK_INT(cache_lock(c, "blob-abc", LOCK_EX | LOCK_NB, &b, &e), -EWOULDBLOCK);

    /* A killed builder's work dir goes; a live one (lock held) stays. */
    _cleanup_free_ char *stale = path_in(dir, "tmp/tree-dead");
    _cleanup_free_ char *stalef = path_in(dir, "tmp/tree-dead/f");
    _cleanup_free_ char *live = path_in(dir, "tmp/tree-live");
    mkdir(stale, 0755);
    close(open(stalef, O_CREAT | O_WRONLY, 0644));
    mkdir(live, 0755);
    int l = -1;
    CHECK_INT(cache_lock(c, "tree-live", LOCK_EX, &l, &e), 0);
    /* Partial downloads: resumable ones stay, those without state go,
     * and one a live process holds stays. */
    _cleanup_free_ char *p1 = path_in(dir, "ingest/aaaa.partial");
    _cleanup_free_ char *s1 = path_in(dir, "ingest/aaaa.state");
    _cleanup_free_ char *p2 = path_in(dir, "ingest/bbbb.partial");
    _cleanup_free_ char *p3 = path_in(dir, "ingest/abc.partial");
    close(open(p1, O_CREAT | O_WRONLY, 0644));
    close(open(s1, O_CREAT | O_WRONLY, 0644));
    close(open(p2, O_CREAT | O_WRONLY, 0644));
    close(open(p3, O_CREAT | O_WRONLY, 0644));
    _cleanup_free_ char *stale_lock = path_in(dir, "locks/layer-old.lock");
    close(open(stale_lock, O_CREAT | O_WRONLY, 0644));

    _cleanup_cache_ cache *c2 = NULL;
    CHECK_INT(cache_open(dir, NULL, &c2, &e), 0);
    CHECK(!ct_exists(stale));
    CHECK(ct_exists(live));
    CHECK(ct_exists(p1) && ct_exists(s1));
    CHECK(!ct_exists(p2));
    CHECK(ct_exists(p3)); /* blob-abc is held by a */
    CHECK(!ct_exists(stale_lock));
    _cleanup_free_ char *held = path_in(dir, "locks/blob-abc.lock");
    CHECK(ct_exists(held));
    close(a);
    close(l);
    /* Once released, the lock can be taken again even after a sweep. */
    _cleanup_cache_ cache *c3 = NULL;
    CHECK_INT(cache_open(dir, NULL, &c3, &e), 0);
    CHECK(!ct_exists(live));
    CHECK(!ct_exists(p3));
    CHECK_INT(cache_lock(c3, "blob-abc", LOCK_EX | LOCK_NB, &b, &e), 0);
    close(b);
    ct_rmtree(dir);
}

/* Moved from the CSI tests with csi/usage.c: what NodeGetVolumeStats
 * reports is the cache's measure of a tree. */
static void put_file(const char *path, const char *body)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(body, f);
        fclose(f);
    }
}

MV_TEST(tree_measure_counts_hard_links_once)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_free_ char *a = mv_xasprintf("%s/a", dir);
    _cleanup_free_ char *sub = mv_xasprintf("%s/sub", dir);
    _cleanup_free_ char *b = mv_xasprintf("%s/sub/b", dir);
    _cleanup_free_ char *hard = mv_xasprintf("%s/sub/link-to-a", dir);
    _cleanup_free_ char *sym = mv_xasprintf("%s/sym", dir);
    put_file(a, "0123456789");
    CHECK_INT(mkdir(sub, 0755), 0);
    put_file(b, "abc");
    CHECK_INT(link(a, hard), 0);
    CHECK_INT(symlink("/etc", sym), 0); /* never followed */
    cache_tree_size m;
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(cache_tree_measure_at(AT_FDCWD, dir, CACHE_USAGE_MAX_DEPTH + 1, &m, &err), 0);
    CHECK_INT(m.bytes, 13);
    CHECK_INT(m.inodes, 5); /* dir, a (+link), sub, b, sym */
    CHECK_INT(m.size, 23);  /* a counted through both links */
    CHECK(cache_tree_measure_at(AT_FDCWD, "/nonexistent/x", CACHE_USAGE_MAX_DEPTH + 1, &m, &err) <
          0);
    CHECK(strstr(err.msg, "/nonexistent/x") != NULL);
    ct_rmtree(dir);
}

/* Usage is recorded in meta.json when the tree is built; a tree built
 * before that (no "usage") is measured instead, to the same numbers. */
MV_TEST(tree_usage_recorded_at_build)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    /* The same bytes twice: one blob, linked at two paths. */
    tfile f[] = {{"a", "0123456789", 10}, {"sub/b", "abc", 3}, {"sub/link-to-a", "0123456789", 10}};
    char md[OCI_DIGEST_MAX];
    store_model(c, f, 3, md);
    cache_pull_result r = {0};
    CHECK_INT(pull_never(c, md, NULL, &r, &e), 0);
    uint64_t bytes = 0, inodes = 0;
    CHECK_INT(cache_tree_usage(c, r.tree_id, &bytes, &inodes, &e), 0);
    CHECK_INT(bytes, 13);
    CHECK_INT(inodes, 4); /* root, a (+link), sub, b */
    _cleanup_free_ char *mp =
        mv_xasprintf("%s/" CACHE_D_TREES "/%s/meta.json", dir, oci_digest_hex(r.tree_id));
    _cleanup_free_ char *meta = ct_read(mp);
    CHECK_CONTAINS(meta, "\"size\":23,");
    CHECK_CONTAINS(meta, "\"usage\":{\"bytes\":13,\"inodes\":4}");

    cJSON *j = cJSON_Parse(meta);
    cJSON_DeleteItemFromObjectCaseSensitive(j, "usage");
    _cleanup_free_ char *old = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    CHECK_INT(chmod(mp, 0644), 0);
    put_file(mp, old);
    bytes = inodes = 0;
    CHECK_INT(cache_tree_usage(c, r.tree_id, &bytes, &inodes, &e), 0);
    CHECK_INT(bytes, 13);
    CHECK_INT(inodes, 4);

    char other[OCI_DIGEST_MAX];
    oci_digest_buf(OCI_DIGEST_SHA256, "x", 1, other);
    CHECK_INT(cache_tree_usage(c, other, &bytes, &inodes, &e), -ENOENT);
    CHECK_CONTAINS(e.msg, other);
    CHECK_INT(cache_tree_usage(c, "sha256:nope", &bytes, &inodes, &e), -EINVAL);
    cache_pull_result_clear(&r);
    ct_rmtree(dir);
}

int main(void)
{
    MV_RUN(ingest_is_atomic_and_verified);
    MV_RUN(modelpack_tree_links_filters_subpath);
    MV_RUN(tree_measure_counts_hard_links_once);
    MV_RUN(tree_usage_recorded_at_build);
    MV_RUN(modelpack_tar_layer);
    MV_RUN(tag_cache_and_never_policy);
    MV_RUN(index_selects_the_model);
    MV_RUN(modelcar_whiteouts);
    MV_RUN(pins);
    MV_RUN(gc_lru_pins_and_size_target);
    MV_RUN(gc_watermarks);
    MV_RUN(verify_quarantines_corrupt_blobs);
    MV_RUN(locks_and_recovery);
    MV_DONE();
}
