/* test_cache_extract.c — safe tar-layer extraction: good layers (plain,
 * gzip, zstd) land with setuid/setgid stripped and the right diff_id;
 * hostile layers (traversal, absolute paths, symlink and hardlink escapes,
 * writes through symlinks, devices, fifos, bombs, newlines) are rejected
 * with an error naming the layer and the entry, nothing is written outside
 * and nothing is left in the cache. */
#include "cachetest.h"

#define LAYER_MT_GZIP                    OCI_MT_LAYER_GZIP
#define MODEL_MT_LAYER_TAR_GZIP_FOR_TEST "application/vnd.cncf.model.weight.v1.tar+gzip"

typedef struct sandbox {
    char *dir;     /* temp dir */
    char *outside; /* sentinel dir next to the cache */
    char *cache_dir;
    cache *c;
} sandbox;

static void sb_open(sandbox *s)
{
    s->dir = ct_tmpdir();
    s->outside = mv_xasprintf("%s/outside", s->dir);
    s->cache_dir = mv_xasprintf("%s/cache", s->dir);
    mkdir(s->outside, 0755);
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(s->cache_dir, NULL, &s->c, &e), 0);
}

static void sb_close(sandbox *s)
{
    cache_close(s->c);
    ct_rmtree(s->dir);
    free(s->dir);
    free(s->outside);
    free(s->cache_dir);
}

/* Runs cache_layer_ensure on a layer; returns its result and error. */
static int ensure(sandbox *s, ct_buf tar, const char *mt, const char *diff_id, mv_error *e,
                  char digest[OCI_DIGEST_MAX])
{
    ct_blob(s->c, tar.data, tar.len, digest);
    oci_descriptor d = {.media_type = (char *)mt, .digest = digest, .size = (int64_t)tar.len};
    return cache_layer_ensure(s->c, &d, diff_id, e);
}

/* The hostile layer must fail naming the entry, leave layers/ and tmp/
 * empty and write nothing outside the cache. */
static void hostile(const ct_entry *entries, size_t n, const char *mt, const char *needle)
{
    sandbox s = {0};
    sb_open(&s);
    ct_buf tar = ct_tar(entries, n, CT_GZIP);
    mv_error e = MV_ERROR_INIT;
    char digest[OCI_DIGEST_MAX];
    int r = ensure(&s, tar, mt, NULL, &e, digest);
    CHECK(r < 0);
    CHECK_CONTAINS(e.msg, needle);
    CHECK_CONTAINS(e.msg, digest);
    _cleanup_free_ char *layers = mv_xasprintf("%s/layers/sha256", s.cache_dir);
    _cleanup_free_ char *tmp = mv_xasprintf("%s/tmp", s.cache_dir);
    CHECK_INT(ct_count(layers), 0);
    CHECK_INT(ct_count(tmp), 0);
    CHECK_INT(ct_count(s.outside), 0);
    CHECK_INT(ct_count(s.dir), 2); /* outside/ and cache/ only */
    CHECK(!ct_exists("/tmp/mv-evil"));
    free(tar.data);
    sb_close(&s);
}

MV_TEST(good_layer_all_compressions)
{
    static const ct_entry e[] = {
        {"./", AE_IFDIR, NULL, 0755, 0},
        {"models/", AE_IFDIR, NULL, 0700, 0},
        {"models/w.bin", AE_IFREG, "weights", 06755, 0},
        {"models/sub/cfg.json", AE_IFREG, "{}", 0600, 0},
        {"models/link", AE_IFLNK, "sub/cfg.json", 0777, 0},
        {"models/hard", 0, "models/w.bin", 0644, 0},
        {"models/up", AE_IFLNK, "../models/w.bin", 0777, 0},
    };
    for (int comp = CT_PLAIN; comp <= CT_ZSTD; comp++) {
        sandbox s = {0};
        sb_open(&s);
        ct_buf plain = ct_tar(e, sizeof(e) / sizeof(e[0]), CT_PLAIN);
        char diff_id[OCI_DIGEST_MAX];
        oci_digest_buf(OCI_DIGEST_SHA256, plain.data, plain.len, diff_id);
        ct_buf tar = ct_tar(e, sizeof(e) / sizeof(e[0]), (ct_compress)comp);
        mv_error err = MV_ERROR_INIT;
        char digest[OCI_DIGEST_MAX];
        int r = ensure(&s, tar, LAYER_MT_GZIP, diff_id, &err, digest);
        if (r < 0)
            fprintf(stderr, "compression %d: %s\n", comp, err.msg);
        CHECK_INT(r, 0);
        _cleanup_free_ char *root =
            mv_xasprintf("%s/layers/sha256/%s", s.cache_dir, oci_digest_hex(digest));
        _cleanup_free_ char *w = mv_xasprintf("%s/models/w.bin", root);
        _cleanup_free_ char *h = mv_xasprintf("%s/models/hard", root);
        _cleanup_free_ char *l = mv_xasprintf("%s/models/link", root);
        _cleanup_free_ char *content = ct_read(w);
        CHECK_STR(content, "weights");
        struct stat sw, sh, sl;
        CHECK_INT(stat(w, &sw), 0);
        CHECK_INT(stat(h, &sh), 0);
        CHECK_INT(lstat(l, &sl), 0);
        CHECK(!(sw.st_mode & (S_ISUID | S_ISGID | S_ISVTX)));
        CHECK_INT(sw.st_mode & 0777, 0555); /* exec kept, write bits gone */
        CHECK_INT(sw.st_ino, sh.st_ino);
        CHECK(S_ISLNK(sl.st_mode));
        free(plain.data);
        free(tar.data);
        sb_close(&s);
    }
}

MV_TEST(diff_id_mismatch_rejected)
{
    static const ct_entry e[] = {{"a", AE_IFREG, "x", 0644, 0}};
    sandbox s = {0};
    sb_open(&s);
    ct_buf tar = ct_tar(e, 1, CT_GZIP);
    mv_error err = MV_ERROR_INIT;
    char digest[OCI_DIGEST_MAX];
    int r = ensure(&s, tar, LAYER_MT_GZIP,
                   "sha256:0000000000000000000000000000000000000000000000000000000000000000", &err,
                   digest);
    CHECK_INT(r, -EBADMSG);
    CHECK_CONTAINS(err.msg, "config says sha256:0000");
    _cleanup_free_ char *layers = mv_xasprintf("%s/layers/sha256", s.cache_dir);
    CHECK_INT(ct_count(layers), 0);
    free(tar.data);
    sb_close(&s);
}

MV_TEST(traversal)
{
    static const ct_entry e[] = {{"ok", AE_IFREG, "x", 0644, 0},
                                 {"../../../outside/evil", AE_IFREG, "pwned", 0644, 0}};
    hostile(e, 2, LAYER_MT_GZIP, "entry \"../../../outside/evil\" contains \"..\"");
    static const ct_entry e2[] = {{"a/b/../../../../outside/evil", AE_IFREG, "x", 0644, 0}};
    hostile(e2, 1, LAYER_MT_GZIP, "contains \"..\"");
}

MV_TEST(absolute_path)
{
    static const ct_entry e[] = {{"/tmp/mv-evil", AE_IFREG, "pwned", 0644, 0}};
    hostile(e, 1, LAYER_MT_GZIP, "entry \"/tmp/mv-evil\" has an absolute path");
}

MV_TEST(symlink_escape)
{
    static const ct_entry e[] = {{"esc", AE_IFLNK, "../../../outside", 0777, 0}};
    hostile(e, 1, LAYER_MT_GZIP, "symlink \"esc\" -> \"../../../outside\" escapes");
    /* Absolute targets escape in model layers (no container root). */
    static const ct_entry e2[] = {{"abs", AE_IFLNK, "/tmp", 0777, 0}};
    hostile(e2, 1, MODEL_MT_LAYER_TAR_GZIP_FOR_TEST, "escapes the layer root");
    /* Each link alone stays inside; together they climb out. */
    static const ct_entry e3[] = {
        {"x/", AE_IFDIR, NULL, 0755, 0},
        {"b", AE_IFLNK, "x/a/../..", 0777, 0},
        {"x/a", AE_IFLNK, "..", 0777, 0},
    };
    hostile(e3, 3, LAYER_MT_GZIP, "symlink \"b\" -> \"x/a/../..\" escapes the root");
}

MV_TEST(write_through_symlink)
{
    /* In an image layer "/" is the layer root, so this link is allowed; a
     * later entry below it must not be written through it. */
    static const ct_entry e[] = {{"lnk", AE_IFLNK, "/", 0777, 0},
                                 {"lnk/tmp/mv-evil", AE_IFREG, "pwned", 0644, 0}};
    hostile(e, 2, LAYER_MT_GZIP, "entry \"lnk/tmp/mv-evil\"");
    static const ct_entry e2[] = {{"d", AE_IFLNK, ".", 0777, 0}, {"d/f", AE_IFREG, "x", 0644, 0}};
    hostile(e2, 2, LAYER_MT_GZIP, "entry \"d/f\"");
}

MV_TEST(hardlink_escape)
{
    static const ct_entry e[] = {{"h", 0, "../../../outside/x", 0644, 0}};
    hostile(e, 1, LAYER_MT_GZIP, "hardlink \"h\"");
    static const ct_entry e2[] = {{"h", 0, "/etc/passwd", 0644, 0}};
    hostile(e2, 1, LAYER_MT_GZIP, "absolute path");
    static const ct_entry e3[] = {{"h", 0, "missing", 0644, 0}};
    hostile(e3, 1, LAYER_MT_GZIP, "not a regular file earlier in the layer");
    /* A hardlink to a symlink pointing outside must not become a file. */
    static const ct_entry e4[] = {{"s", AE_IFLNK, "/etc/passwd", 0777, 0}, {"h", 0, "s", 0644, 0}};
    hostile(e4, 2, LAYER_MT_GZIP, "hardlink \"h\" -> \"s\"");
}

MV_TEST(device_and_fifo)
{
    static const ct_entry e[] = {{"dev/null", AE_IFCHR, NULL, 0666, 0}};
    hostile(e, 1, LAYER_MT_GZIP, "entry \"dev/null\" is a character device");
    static const ct_entry e2[] = {{"fifo", AE_IFIFO, NULL, 0644, 0}};
    hostile(e2, 1, LAYER_MT_GZIP, "entry \"fifo\" is a fifo");
}

MV_TEST(newline_in_name)
{
    static const ct_entry e[] = {{"bad\nname", AE_IFREG, "x", 0644, 0}};
    hostile(e, 1, LAYER_MT_GZIP, "newline");
}

MV_TEST(bombs)
{
    /* 32 MiB of zeros compress to a few KiB; the limit stops it early. */
    static const ct_entry e[] = {{"zeros", AE_IFREG, NULL, 0644, 32u << 20}};
    _cleanup_free_ char *dir = ct_tmpdir();
    ct_buf tar = ct_tar(e, 1, CT_GZIP);
    CHECK(tar.len < (1u << 20));
    int src = memfd_create("layer", MFD_CLOEXEC);
    CHECK(write(src, tar.data, tar.len) == (ssize_t)tar.len);
    lseek(src, 0, SEEK_SET);
    int root = open(dir, O_RDONLY | O_DIRECTORY);
    cache_extract_limits lim = {.max_bytes = 4u << 20};
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(cache_extract_tar(src, root, "L", &lim, NULL, NULL, &err), -EFBIG);
    CHECK_CONTAINS(err.msg, "layer L: entry \"zeros\" expands beyond the limit");
    close(src);
    free(tar.data);

    ct_entry many[50];
    char names[50][16];
    for (int i = 0; i < 50; i++) {
        snprintf(names[i], sizeof(names[i]), "f%d", i);
        many[i] = (ct_entry){names[i], AE_IFREG, "x", 0644, 0};
    }
    tar = ct_tar(many, 50, CT_GZIP);
    src = memfd_create("layer", MFD_CLOEXEC);
    CHECK(write(src, tar.data, tar.len) == (ssize_t)tar.len);
    lseek(src, 0, SEEK_SET);
    lim = (cache_extract_limits){.max_entries = 10};
    CHECK_INT(cache_extract_tar(src, root, "L", &lim, NULL, NULL, &err), -EFBIG);
    CHECK_CONTAINS(err.msg, "more than 10 entries");
    close(src);
    close(root);
    free(tar.data);
    ct_rmtree(dir);
}

MV_TEST(garbage_is_rejected)
{
    sandbox s = {0};
    sb_open(&s);
    ct_buf junk = {mv_xstrdup("this is not a tar archive at all, not even close........"), 0};
    junk.len = strlen(junk.data);
    mv_error err = MV_ERROR_INIT;
    char digest[OCI_DIGEST_MAX];
    CHECK(ensure(&s, junk, LAYER_MT_GZIP, NULL, &err, digest) < 0);
    CHECK_CONTAINS(err.msg, digest);
    free(junk.data);
    sb_close(&s);
}

int main(void)
{
    MV_RUN(good_layer_all_compressions);
    MV_RUN(diff_id_mismatch_rejected);
    MV_RUN(traversal);
    MV_RUN(absolute_path);
    MV_RUN(symlink_escape);
    MV_RUN(write_through_symlink);
    MV_RUN(hardlink_escape);
    MV_RUN(device_and_fifo);
    MV_RUN(newline_in_name);
    MV_RUN(bombs);
    MV_RUN(garbage_is_rejected);
    MV_DONE();
}
