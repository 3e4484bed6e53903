/* test_push_pack.c — modelpush's packing without a registry: kind
 * classification and overrides, hostile directories, the config facts
 * (format, parameter count, precision), and reproducible manifests (raw,
 * tar+zstd, ORAS and KitOps), through libpush's internal header. */
#include "push-internal.h"

#include "mvtest.h"

#include <archive_entry.h>
#include <cjson/cJSON.h>

#include <fcntl.h>
#include <ftw.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static char *tmp_root;

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *path)
{
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static char *mkdir_tmp(const char *name)
{
    char *p = mv_xasprintf("%s/%s", tmp_root, name);
    rm_rf(p);
    if (mkdir(p, 0755) < 0)
        abort();
    return p;
}

static void write_file(const char *dir, const char *rel, const void *data, size_t len, mode_t mode)
{
    _cleanup_free_ char *p = mv_xasprintf("%s/%s", dir, rel);
    /* parents */
    for (char *s = p + strlen(dir) + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0755);
            *s = '/';
        }
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len)
        abort();
    fchmod(fd, mode);
    close(fd);
}

static void write_str(const char *dir, const char *rel, const char *s)
{
    write_file(dir, rel, s, strlen(s), 0644);
}

/* A safetensors file: header with two BF16 tensors of 3x4 and 5 elements. */
static void write_safetensors(const char *dir, const char *rel)
{
    const char *hdr = "{\"a\":{\"dtype\":\"BF16\",\"shape\":[3,4],\"data_offsets\":[0,24]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[5],\"data_offsets\":[24,34]},"
                      "\"__metadata__\":{\"format\":\"pt\"}}";
    size_t hl = strlen(hdr);
    size_t total = 8 + hl + 34;
    _cleanup_free_ unsigned char *buf = mv_xcalloc(1, total);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    write_file(dir, rel, buf, total, 0644);
}

static void make_model(const char *dir)
{
    write_safetensors(dir, "model.safetensors");
    write_str(dir, "config.json", "{\"architectures\":[\"X\"]}");
    write_str(dir, "tokenizer.json", "{}");
    write_str(dir, "README.md", "# model\n");
    write_str(dir, "vocab.txt", "a\nb\n");
    write_file(dir, "scripts/run.sh", "#!/bin/sh\n", 10, 0755);
    write_str(dir, "data/train.jsonl", "{}\n");
}

static push_pack_opts base_opts(void)
{
    push_pack_opts o = {0};
    o.spec.created = 1700000000;
    o.spec.name = "m";
    o.tmpdir = tmp_root;
    o.jobs = 2;
    return o;
}

static model_kind kind_of(const char *rel)
{
    return push_classify(rel, NULL, 0, NULL);
}

MV_TEST(default_kinds_follow_names_then_extensions)
{
    CHECK_INT(kind_of("model-00001-of-00002.safetensors"), MODEL_KIND_WEIGHT);
    CHECK_INT(kind_of("pytorch_model.bin"), MODEL_KIND_WEIGHT);
    CHECK_INT(kind_of("q4/model.gguf"), MODEL_KIND_WEIGHT);
    CHECK_INT(kind_of("model.safetensors.index.json"), MODEL_KIND_WEIGHT_CONFIG);
    CHECK_INT(kind_of("config.json"), MODEL_KIND_WEIGHT_CONFIG);
    CHECK_INT(kind_of("generation_config.json"), MODEL_KIND_WEIGHT_CONFIG);
    CHECK_INT(kind_of("tokenizer_config.json"), MODEL_KIND_WEIGHT_CONFIG);
    CHECK_INT(kind_of("tokenizer.model"), MODEL_KIND_WEIGHT_CONFIG);
    CHECK_INT(kind_of("vocab.txt"), MODEL_KIND_WEIGHT_CONFIG);
    CHECK_INT(kind_of("merges.txt"), MODEL_KIND_WEIGHT_CONFIG);
    CHECK_INT(kind_of("cl100k.tiktoken"), MODEL_KIND_WEIGHT_CONFIG);
    CHECK_INT(kind_of("README.md"), MODEL_KIND_DOC);
    CHECK_INT(kind_of("LICENSE"), MODEL_KIND_DOC);
    CHECK_INT(kind_of("notes.txt"), MODEL_KIND_DOC);
    CHECK_INT(kind_of("modeling_x.py"), MODEL_KIND_CODE);
    CHECK_INT(kind_of("run.sh"), MODEL_KIND_CODE);
    CHECK_INT(kind_of("eval/demo.ipynb"), MODEL_KIND_CODE);
    CHECK_INT(kind_of("train.parquet"), MODEL_KIND_DATASET);
    CHECK_INT(kind_of("d/x.csv"), MODEL_KIND_DATASET);
    bool guessed = false;
    CHECK_INT(push_classify("variables.data-00000-of-00001", NULL, 0, &guessed), MODEL_KIND_WEIGHT);
    CHECK(guessed);
    push_classify("model.safetensors", NULL, 0, &guessed);
    CHECK(!guessed);
}

MV_TEST(user_globs_win_in_order)
{
    push_rule rules[] = {
        {"extra/*.json", MODEL_KIND_DATASET},
        {"*.json", MODEL_KIND_DOC},
        {"*.bin", MODEL_KIND_DATASET},
    };
    CHECK_INT(push_classify("config.json", rules, 3, NULL), MODEL_KIND_DOC);
    CHECK_INT(push_classify("sub/config.json", rules, 3, NULL), MODEL_KIND_DOC);
    CHECK_INT(push_classify("extra/a.json", rules, 3, NULL), MODEL_KIND_DATASET);
    CHECK_INT(push_classify("x/extra/a.json", rules, 3, NULL), MODEL_KIND_DOC);
    CHECK_INT(push_classify("w.bin", rules, 3, NULL), MODEL_KIND_DATASET);
    CHECK_INT(push_classify("w.safetensors", rules, 3, NULL), MODEL_KIND_WEIGHT);
}

MV_TEST(times_parse_as_rfc3339_or_epoch)
{
    int64_t t = 0;
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(push_parse_time("2024-05-01T12:00:00Z", &t, &err), 0);
    CHECK_INT(t, 1714564800);
    CHECK_INT(push_parse_time("1714564800", &t, &err), 0);
    CHECK_INT(t, 1714564800);
    CHECK_INT(push_parse_time("2024-05-01T12:00:00.5Z", &t, &err), 0);
    CHECK_INT(t, 1714564800);
    CHECK_INT(push_parse_time("yesterday", &t, &err), -EINVAL);
    CHECK_CONTAINS(err.msg, "yesterday");
    CHECK_INT(push_parse_time("2024-05-01T12:00:00+02:00", &t, &err), -EINVAL);
    char buf[32];
    CHECK_STR(push_time_rfc3339(1714564800, buf, sizeof(buf)), "2024-05-01T12:00:00Z");
}

MV_TEST(param_sizes_use_the_modelpack_notation)
{
    char *s;
    CHECK_STR((s = push_format_params(6700000000ull)), "6.7B");
    free(s);
    CHECK_STR((s = push_format_params(8000000000ull)), "8B");
    free(s);
    CHECK_STR((s = push_format_params(125000000ull)), "125M");
    free(s);
    CHECK_STR((s = push_format_params(1000000000000ull)), "1T");
    free(s);
    CHECK_STR((s = push_format_params(1500)), "1.5K");
    free(s);
    CHECK(push_format_params(17) == NULL); /* the notation has no unit below K */
}

MV_TEST(model_dir_packs_one_raw_layer_per_file_with_annotations)
{
    _cleanup_free_ char *dir = mkdir_tmp("raw");
    make_model(dir);
    push_pack_opts o = base_opts();
    _cleanup_(push_pack_freep) push_pack *p = NULL;
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(push_pack_dir(dir, &o, &p, &err), 0);
    if (!p)
        return;
    CHECK_INT(p->n_files, 7);
    CHECK_INT(p->manifest.n_layers, 7);
    CHECK_INT(p->n_blobs, 8); /* 7 distinct files + config */
    CHECK_STR(p->manifest.artifact_type, MODEL_ARTIFACT_TYPE);
    CHECK_STR(p->manifest.config.media_type, MODEL_MT_CONFIG);
    /* Layers in path order: README.md, config.json, data/train.jsonl, ... */
    const oci_descriptor *l = &p->manifest.layers[0];
    CHECK_STR(l->media_type, "application/vnd.cncf.model.doc.v1.raw");
    CHECK_STR(oci_annotation_get(l->annotations, l->n_annotations, MODEL_ANNO_FILEPATH),
              "README.md");
    CHECK_STR(oci_annotation_get(l->annotations, l->n_annotations, OCI_ANNO_TITLE), "README.md");
    CHECK_STR(oci_annotation_get(l->annotations, l->n_annotations, MODEL_ANNO_FILEMETA),
              "{\"name\":\"README.md\",\"mode\":420,\"uid\":0,\"gid\":0,\"size\":8,"
              "\"mtime\":\"2023-11-14T22:13:20Z\",\"typeflag\":48}");
    CHECK_STR(p->manifest.layers[2].media_type, "application/vnd.cncf.model.dataset.v1.raw");
    const oci_descriptor *sh = &p->manifest.layers[4];
    CHECK_STR(oci_annotation_get(sh->annotations, sh->n_annotations, MODEL_ANNO_FILEPATH),
              "scripts/run.sh");
    CHECK_CONTAINS(oci_annotation_get(sh->annotations, sh->n_annotations, MODEL_ANNO_FILEMETA),
                   "\"mode\":493");
    /* The config carries the facts and one diffId per layer, in order. */
    CHECK_CONTAINS(p->config_json, "\"createdAt\":\"2023-11-14T22:13:20Z\"");
    CHECK_CONTAINS(p->config_json, "\"name\":\"m\"");
    CHECK_CONTAINS(p->config_json, "\"format\":\"safetensors\"");
    CHECK(strstr(p->config_json, "paramSize") == NULL); /* 17 parameters: too few to say */
    CHECK_CONTAINS(p->config_json, "\"precision\":\"bf16\"");
    CHECK_CONTAINS(p->config_json, "\"type\":\"layers\"");
    _cleanup_free_ char *first = mv_xasprintf("\"diffIds\":[\"%s\"", p->manifest.layers[0].digest);
    CHECK_CONTAINS(p->config_json, first);
    /* The emitted manifest parses back to the same layers. */
    _cleanup_manifest_ oci_manifest *back = NULL;
    CHECK_INT(oci_manifest_parse(p->manifest_json, p->manifest_len, NULL, &back, &err), 0);
    if (back) {
        CHECK_INT(back->n_layers, 7);
        CHECK_STR(back->artifact_type, MODEL_ARTIFACT_TYPE);
    }
}

static void digest_of_dir(const char *dir, const push_pack_opts *o, char out[OCI_DIGEST_MAX])
{
    _cleanup_(push_pack_freep) push_pack *p = NULL;
    mv_error err = MV_ERROR_INIT;
    out[0] = '\0';
    if (push_pack_dir(dir, o, &p, &err) < 0) {
        fprintf(stderr, "pack %s: %s\n", dir, err.msg);
        return;
    }
    snprintf(out, OCI_DIGEST_MAX, "%s", p->manifest_digest);
}

MV_TEST(same_dir_and_flags_give_the_same_manifest_digest)
{
    _cleanup_free_ char *a = mkdir_tmp("repro-a");
    _cleanup_free_ char *b = mkdir_tmp("repro-b");
    make_model(a);
    make_model(b);
    /* Different mtimes and group/other bits must not matter. */
    _cleanup_free_ char *readme = mv_xasprintf("%s/README.md", b);
    struct timespec ts[2] = {{12345, 0}, {12345, 0}};
    utimensat(AT_FDCWD, readme, ts, 0);
    chmod(readme, 0600);
    push_pack_opts o = base_opts();
    char d1[OCI_DIGEST_MAX], d2[OCI_DIGEST_MAX], d3[OCI_DIGEST_MAX], d4[OCI_DIGEST_MAX];
    digest_of_dir(a, &o, d1);
    digest_of_dir(b, &o, d2);
    CHECK(d1[0] != '\0');
    CHECK_STR(d1, d2);
    o.jobs = 1;
    digest_of_dir(a, &o, d3);
    CHECK_STR(d1, d3);
    o.spec.created++;
    digest_of_dir(a, &o, d4);
    CHECK(strcmp(d1, d4) != 0);
}

MV_TEST(tar_zstd_layers_are_reproducible_and_group_small_files_by_kind)
{
    _cleanup_free_ char *a = mkdir_tmp("tar-a");
    make_model(a);
    push_pack_opts o = base_opts();
    o.spec.tar = true;
    o.spec.zstd = true;
    o.spec.tar_max = 20; /* the safetensors file (> 20 bytes) stays raw */
    _cleanup_(push_pack_freep) push_pack *p = NULL;
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(push_pack_dir(a, &o, &p, &err), 0);
    if (!p)
        return;
    size_t raw = 0, tars = 0;
    for (size_t i = 0; i < p->manifest.n_layers; i++) {
        const char *mt = p->manifest.layers[i].media_type;
        if (strstr(mt, ".raw"))
            raw++;
        if (strstr(mt, ".tar+zstd"))
            tars++;
    }
    CHECK_INT(raw, 2);  /* model.safetensors and config.json (24 bytes) */
    CHECK_INT(tars, 4); /* weight.config, doc, code, dataset */
    char d1[OCI_DIGEST_MAX], d2[OCI_DIGEST_MAX];
    digest_of_dir(a, &o, d1);
    digest_of_dir(a, &o, d2);
    CHECK_STR(d1, p->manifest_digest);
    CHECK_STR(d1, d2);
}

MV_TEST(oras_format_has_an_empty_config_and_titled_blobs)
{
    _cleanup_free_ char *a = mkdir_tmp("oras");
    make_model(a);
    push_pack_opts o = base_opts();
    o.spec.format = PUSH_FORMAT_ORAS;
    o.spec.artifact_type = "application/vnd.example.model";
    _cleanup_(push_pack_freep) push_pack *p = NULL;
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(push_pack_dir(a, &o, &p, &err), 0);
    if (!p)
        return;
    CHECK_STR(p->manifest.artifact_type, "application/vnd.example.model");
    CHECK_STR(p->manifest.config.media_type, OCI_MT_EMPTY);
    CHECK_STR(p->config_json, "{}");
    CHECK_STR(p->manifest.config.digest,
              "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
    const oci_descriptor *l = &p->manifest.layers[4];
    CHECK_STR(l->media_type, PUSH_MT_OCTET);
    CHECK_STR(oci_annotation_get(l->annotations, l->n_annotations, OCI_ANNO_TITLE),
              "scripts/run.sh");
    /* Tar layers would read as a container image: refused for ORAS. */
    o.spec.tar = true;
    _cleanup_(push_pack_freep) push_pack *q = NULL;
    CHECK_INT(push_pack_dir(a, &o, &q, &err), -EINVAL);
    CHECK_CONTAINS(err.msg, "--format oras");
}

MV_TEST(duplicate_files_are_two_layers_but_one_blob)
{
    _cleanup_free_ char *a = mkdir_tmp("dup");
    write_str(a, "a.bin", "same");
    write_str(a, "b.bin", "same");
    push_pack_opts o = base_opts();
    _cleanup_(push_pack_freep) push_pack *p = NULL;
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(push_pack_dir(a, &o, &p, &err), 0);
    if (!p)
        return;
    CHECK_INT(p->manifest.n_layers, 2);
    CHECK_INT(p->n_blobs, 2); /* one file blob + config */
}

MV_TEST(symlinks_inside_are_followed_outside_refused)
{
    _cleanup_free_ char *a = mkdir_tmp("links");
    write_str(a, "in/real.bin", "x");
    _cleanup_free_ char *l1 = mv_xasprintf("%s/link.bin", a);
    _cleanup_free_ char *l2 = mv_xasprintf("%s/dirlink", a);
    CHECK_INT(symlink("in/real.bin", l1), 0);
    CHECK_INT(symlink("in", l2), 0);
    push_pack_opts o = base_opts();
    {
        _cleanup_(push_pack_freep) push_pack *p = NULL;
        mv_error err = MV_ERROR_INIT;
        CHECK_INT(push_pack_dir(a, &o, &p, &err), 0);
        if (p) {
            CHECK_INT(p->n_files, 3);
            CHECK_STR(p->files[0].rel, "dirlink/real.bin");
            CHECK_STR(p->files[1].rel, "in/real.bin");
            CHECK_STR(p->files[2].rel, "link.bin");
        }
    }
    _cleanup_free_ char *evil = mv_xasprintf("%s/evil", a);
    CHECK_INT(symlink("/etc/hostname", evil), 0);
    _cleanup_(push_pack_freep) push_pack *p = NULL;
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(push_pack_dir(a, &o, &p, &err), -EINVAL);
    CHECK_CONTAINS(err.msg, "evil: symlink points outside the model directory");
}

MV_TEST(excluded_paths_are_never_entered)
{
    _cleanup_free_ char *a = mkdir_tmp("exclude");
    make_model(a);
    write_str(a, "pytorch_model.bin", "old weights");
    write_str(a, "original/consolidated.pth", "x");
    /* An escaping symlink inside an excluded directory is not even seen. */
    _cleanup_free_ char *evil = mv_xasprintf("%s/original/evil", a);
    CHECK_INT(symlink("/etc/hostname", evil), 0);
    const char *ex[] = {"*.bin", "original"};
    push_pack_opts o = base_opts();
    o.spec.excludes = ex;
    o.spec.n_excludes = 2;
    _cleanup_(push_pack_freep) push_pack *p = NULL;
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(push_pack_dir(a, &o, &p, &err), 0);
    if (!p)
        return;
    CHECK_INT(p->n_files, 7);
    for (size_t i = 0; i < p->n_files; i++) {
        CHECK(strstr(p->files[i].rel, ".bin") == NULL);
        CHECK(strncmp(p->files[i].rel, "original", 8) != 0);
    }
    const char *all[] = {"*"};
    o.spec.excludes = all;
    o.spec.n_excludes = 1;
    _cleanup_(push_pack_freep) push_pack *q = NULL;
    CHECK_INT(push_pack_dir(a, &o, &q, &err), -ENOENT);
    CHECK_CONTAINS(err.msg, "no files to push");
}

MV_TEST(hostile_dirs_fail_with_one_line_naming_the_file)
{
    push_pack_opts o = base_opts();
    mv_error err = MV_ERROR_INIT;
    _cleanup_(push_pack_freep) push_pack *p = NULL;

    _cleanup_free_ char *empty = mkdir_tmp("empty");
    CHECK_INT(push_pack_dir(empty, &o, &p, &err), -ENOENT);
    CHECK_CONTAINS(err.msg, "no files to push");

    _cleanup_free_ char *dang = mkdir_tmp("dangling");
    _cleanup_free_ char *dl = mv_xasprintf("%s/gone", dang);
    CHECK_INT(symlink("nothere", dl), 0);
    CHECK_INT(push_pack_dir(dang, &o, &p, &err), -EINVAL);
    CHECK_CONTAINS(err.msg, "gone: symlink is dangling");

    _cleanup_free_ char *fifo = mkdir_tmp("fifo");
    _cleanup_free_ char *fp = mv_xasprintf("%s/pipe", fifo);
    CHECK_INT(mkfifo(fp, 0644), 0);
    CHECK_INT(push_pack_dir(fifo, &o, &p, &err), -EINVAL);
    CHECK_CONTAINS(err.msg, "pipe: a FIFO");

    _cleanup_free_ char *loop = mkdir_tmp("loop");
    write_str(loop, "d/f", "x");
    _cleanup_free_ char *lp = mv_xasprintf("%s/d/up", loop);
    CHECK_INT(symlink("..", lp), 0);
    CHECK_INT(push_pack_dir(loop, &o, &p, &err), -EINVAL);
    CHECK_CONTAINS(err.msg, "d/up: symlink points back at the model directory");

    if (geteuid() != 0) {
        _cleanup_free_ char *unr = mkdir_tmp("unreadable");
        write_file(unr, "secret.bin", "x", 1, 0000);
        CHECK_INT(push_pack_dir(unr, &o, &p, &err), -EACCES);
        CHECK_CONTAINS(err.msg, "secret.bin: Permission denied");
    } else {
        printf("note: running as root, the unreadable-file case is covered by the FIFO case\n");
    }
    CHECK(p == NULL);
}

MV_TEST(hash_cache_skips_unchanged_files_and_catches_changed_ones)
{
    _cleanup_free_ char *a = mkdir_tmp("cache");
    make_model(a);
    _cleanup_free_ char *cache = mv_xasprintf("%s/hashes", tmp_root);
    unlink(cache);
    push_pack_opts o = base_opts();
    o.hash_cache = cache;
    /* The files were written a moment ago: too fresh to trust their times. */
    char d1[OCI_DIGEST_MAX], d2[OCI_DIGEST_MAX];
    {
        _cleanup_(push_pack_freep) push_pack *p = NULL;
        mv_error err = MV_ERROR_INIT;
        CHECK_INT(push_pack_dir(a, &o, &p, &err), 0);
        if (!p)
            return;
        CHECK_INT(p->n_cached, 0);
        CHECK_INT(p->n_hashed, 7);
        snprintf(d1, sizeof(d1), "%s", p->manifest_digest);
    }
    {
        _cleanup_(push_pack_freep) push_pack *p = NULL;
        mv_error err = MV_ERROR_INIT;
        CHECK_INT(push_pack_dir(a, &o, &p, &err), 0);
        CHECK(p && p->n_cached == 0); /* nothing was stored as trustworthy */
    }
    /* Seen from ten seconds later, the same times are old enough. */
    o.now = (int64_t)time(NULL) + 10;
    {
        _cleanup_(push_pack_freep) push_pack *p = NULL;
        mv_error err = MV_ERROR_INIT;
        CHECK_INT(push_pack_dir(a, &o, &p, &err), 0);
    }
    {
        _cleanup_(push_pack_freep) push_pack *p = NULL;
        mv_error err = MV_ERROR_INIT;
        CHECK_INT(push_pack_dir(a, &o, &p, &err), 0);
        if (!p)
            return;
        CHECK_INT(p->n_cached, 7);
        CHECK_INT(p->n_hashed, 0);
        CHECK_STR(p->manifest_digest, d1);
    }
    /* A rewrite of the same size (even with the old mtime put back) moves
     * ctime: that file is hashed again, and the digest follows the bytes. */
    _cleanup_free_ char *readme = mv_xasprintf("%s/README.md", a);
    struct stat st;
    CHECK_INT(stat(readme, &st), 0);
    write_str(a, "README.md", "# MODEL");
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    utimensat(AT_FDCWD, readme, ts, 0);
    {
        _cleanup_(push_pack_freep) push_pack *p = NULL;
        mv_error err = MV_ERROR_INIT;
        CHECK_INT(push_pack_dir(a, &o, &p, &err), 0);
        if (!p)
            return;
        CHECK_INT(p->n_cached, 6);
        CHECK_INT(p->n_hashed, 1);
        snprintf(d2, sizeof(d2), "%s", p->manifest_digest);
        CHECK(strcmp(d1, d2) != 0);
    }
    /* A damaged cache only costs hashing. */
    write_str(tmp_root, "hashes", "garbage\nsha256:zz 1 2 3\n");
    {
        _cleanup_(push_pack_freep) push_pack *p = NULL;
        mv_error err = MV_ERROR_INIT;
        CHECK_INT(push_pack_dir(a, &o, &p, &err), 0);
        CHECK(p && p->n_cached == 0 && strcmp(p->manifest_digest, d2) == 0);
    }
}

/* ------------------------------------------------------------------------ */
/* --format kitops: a ModelKit as kit pack writes one                       */
/* ------------------------------------------------------------------------ */

static const push_blob *blob_of(const push_pack *p, const char *digest)
{
    for (size_t i = 0; i < p->n_blobs; i++)
        if (strcmp(p->blobs[i].digest, digest) == 0)
            return &p->blobs[i];
    return NULL;
}

static const char *json_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "(missing)";
}

/* One tar entry as the test sees it: "name type mode uid:gid mtime uname". */
static void tar_entries(const push_blob *b, char *out, size_t len)
{
    out[0] = '\0';
    if (!b || b->fd < 0 || lseek(b->fd, 0, SEEK_SET) != 0)
        return;
    struct archive *a = archive_read_new();
    archive_read_support_format_tar(a);
    archive_read_support_filter_zstd(a);
    if (archive_read_open_fd(a, b->fd, 65536) != ARCHIVE_OK) {
        archive_read_free(a);
        return;
    }
    struct archive_entry *e;
    size_t used = 0;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        const char *un = archive_entry_uname(e);
        int w = snprintf(
            out + used, len - used, "%s %c %o %lld:%lld %lld %s;", archive_entry_pathname(e),
            archive_entry_filetype(e) == AE_IFDIR ? 'd' : 'f', (unsigned)archive_entry_perm(e),
            (long long)archive_entry_uid(e), (long long)archive_entry_gid(e),
            (long long)archive_entry_mtime(e), un && *un ? un : "-");
        if (w < 0 || (size_t)w >= len - used)
            break;
        used += (size_t)w;
    }
    archive_read_free(a);
}

MV_TEST(kitops_format_is_a_modelkit_with_a_kitfile_config)
{
    _cleanup_free_ char *a = mkdir_tmp("kit");
    make_model(a);
    write_str(a, "Kitfile", "manifestVersion: 1.0.0\n"); /* describes a pack: never packed */
    push_pack_opts o = base_opts();
    o.spec.format = PUSH_FORMAT_KITOPS;
    o.spec.version = "v1";
    _cleanup_(push_pack_freep) push_pack *p = NULL;
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(push_pack_dir(a, &o, &p, &err), 0);
    if (!p)
        return;
    const oci_manifest *m = &p->manifest;
    CHECK_STR(m->media_type, OCI_MT_MANIFEST);
    CHECK_STR(m->artifact_type, "application/vnd.kitops.modelkit.manifest.v1+json");
    CHECK_STR(m->config.media_type, "application/vnd.kitops.modelkit.config.v1+json");
    CHECK(oci_annotation_get(m->annotations, m->n_annotations, "ml.kitops.modelkit.cli-version"));
    CHECK(!oci_annotation_get(m->annotations, m->n_annotations, OCI_ANNO_CREATED));
    /* kit pack's order: model, model parts, code, datasets, docs. */
    static const char *const want[][2] = {
        {"model", "model.safetensors"},  {"modelpart", "config.json"},
        {"modelpart", "tokenizer.json"}, {"modelpart", "vocab.txt"},
        {"code", "scripts/run.sh"},      {"dataset", "data/train.jsonl"},
        {"docs", "README.md"},
    };
    CHECK_INT(m->n_layers, 7);
    for (size_t i = 0; i < m->n_layers && i < 7; i++) {
        const oci_descriptor *l = &m->layers[i];
        _cleanup_free_ char *mt =
            mv_xasprintf("application/vnd.kitops.modelkit.%s.v1.tar", want[i][0]);
        CHECK_STR(l->media_type, mt);
        CHECK_INT(l->n_annotations, 1);
        CHECK_STR(oci_annotation_get(l->annotations, l->n_annotations, MODEL_ANNO_FILEPATH),
                  want[i][1]);
    }
    /* The config is the Kitfile, as json.Marshal writes it. */
    const char *head =
        "{\"manifestVersion\":\"1.0.0\",\"package\":{\"name\":\"m\",\"version\":\"v1\"},"
        "\"model\":{\"name\":\"model\",\"path\":\"model.safetensors\",\"parts\":[";
    CHECK(strncmp(p->config_json, head, strlen(head)) == 0);
    cJSON *kf = cJSON_Parse(p->config_json);
    CHECK(kf != NULL);
    if (!kf)
        return;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(kf, "model");
    CHECK_STR(json_str(model, "digest"), m->layers[0].digest);
    /* Uncompressed: the diffId is the digest. */
    CHECK_STR(json_str(model, "diffId"), m->layers[0].digest);
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(model, "parts");
    CHECK_INT(cJSON_GetArraySize(parts), 3);
    CHECK_STR(json_str(cJSON_GetArrayItem(parts, 0), "path"), "config.json");
    CHECK_STR(json_str(cJSON_GetArrayItem(parts, 0), "digest"), m->layers[1].digest);
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(kf, "code");
    CHECK_STR(json_str(cJSON_GetArrayItem(code, 0), "path"), "scripts/run.sh");
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(kf, "datasets");
    CHECK_STR(json_str(cJSON_GetArrayItem(ds, 0), "path"), "data/train.jsonl");
    const cJSON *docs = cJSON_GetObjectItemCaseSensitive(kf, "docs");
    CHECK_STR(json_str(cJSON_GetArrayItem(docs, 0), "description"), "Readme file");
    CHECK(!strstr(p->config_json, "Kitfile"));
    cJSON_Delete(kf);
    /* Tar entries: the parents first, then the file at its path in the
     * directory; owner 1000:0, mtime 0, no names (kit's sanitizeTarHeader). */
    char got[1024];
    tar_entries(blob_of(p, m->layers[4].digest), got, sizeof(got));
    CHECK_STR(got, "scripts/ d 755 1000:0 0 -;scripts/run.sh f 755 1000:0 0 -;");
    tar_entries(blob_of(p, m->layers[0].digest), got, sizeof(got));
    CHECK_STR(got, "model.safetensors f 644 1000:0 0 -;");
}

MV_TEST(kitops_format_is_reproducible_and_zstd_keeps_diff_ids)
{
    _cleanup_free_ char *a = mkdir_tmp("kit-repro");
    make_model(a);
    push_pack_opts o = base_opts();
    o.spec.format = PUSH_FORMAT_KITOPS;
    char d1[OCI_DIGEST_MAX], d2[OCI_DIGEST_MAX], d3[OCI_DIGEST_MAX];
    digest_of_dir(a, &o, d1);
    digest_of_dir(a, &o, d2);
    CHECK(d1[0] != '\0');
    CHECK_STR(d1, d2);
    /* kit pack writes no time at all into a Kit-format ModelKit: another
     * SOURCE_DATE_EPOCH gives the same bytes. */
    o.spec.created = 1800000000;
    digest_of_dir(a, &o, d3);
    CHECK_STR(d1, d3);

    o.spec.zstd = true;
    _cleanup_(push_pack_freep) push_pack *p = NULL;
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(push_pack_dir(a, &o, &p, &err), 0);
    if (!p)
        return;
    CHECK_STR(p->manifest.layers[0].media_type,
              "application/vnd.kitops.modelkit.model.v1.tar+zstd");
    cJSON *kf = cJSON_Parse(p->config_json);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(kf, "model");
    CHECK_STR(json_str(model, "digest"), p->manifest.layers[0].digest);
    CHECK(strcmp(json_str(model, "diffId"), p->manifest.layers[0].digest) != 0);
    CHECK(strncmp(json_str(model, "diffId"), "sha256:", 7) == 0);
    cJSON_Delete(kf);
    char got[256];
    tar_entries(blob_of(p, p->manifest.layers[0].digest), got, sizeof(got));
    CHECK_STR(got, "model.safetensors f 644 1000:0 0 -;");

    /* --tar has nothing to group: every kitops layer is a tar. */
    o.spec.tar = true;
    _cleanup_(push_pack_freep) push_pack *q = NULL;
    CHECK_INT(push_pack_dir(a, &o, &q, &err), -EINVAL);
    CHECK_CONTAINS(err.msg, "--format kitops");
}

MV_TEST(kitops_without_weights_makes_config_files_datasets)
{
    _cleanup_free_ char *a = mkdir_tmp("kit-noweights");
    write_str(a, "settings.yaml", "a: 1\n");
    write_str(a, "LICENSE", "MIT\n");
    write_str(a, "q&a<1>.csv", "x\n");
    push_pack_opts o = base_opts();
    o.spec.format = PUSH_FORMAT_KITOPS;
    _cleanup_(push_pack_freep) push_pack *p = NULL;
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(push_pack_dir(a, &o, &p, &err), 0);
    if (!p)
        return;
    CHECK_INT(p->manifest.n_layers, 3);
    CHECK_STR(p->manifest.layers[0].media_type, "application/vnd.kitops.modelkit.dataset.v1.tar");
    CHECK_STR(p->manifest.layers[1].media_type, "application/vnd.kitops.modelkit.dataset.v1.tar");
    CHECK_STR(p->manifest.layers[2].media_type, "application/vnd.kitops.modelkit.docs.v1.tar");
    CHECK(!strstr(p->config_json, "\"model\""));
    /* Go's encoding/json escapes <, > and &. */
    CHECK_CONTAINS(p->config_json, "q\\u0026a\\u003c1\\u003e.csv");
    CHECK_CONTAINS(p->config_json, "\"description\":\"License file\"");
}

int main(void)
{
    char tmpl[] = "/tmp/modelvol-push-pack.XXXXXX";
    tmp_root = mkdtemp(tmpl);
    if (!tmp_root)
        MV_SKIP("cannot create a temp dir");
    MV_RUN(default_kinds_follow_names_then_extensions);
    MV_RUN(user_globs_win_in_order);
    MV_RUN(times_parse_as_rfc3339_or_epoch);
    MV_RUN(param_sizes_use_the_modelpack_notation);
    MV_RUN(model_dir_packs_one_raw_layer_per_file_with_annotations);
    MV_RUN(same_dir_and_flags_give_the_same_manifest_digest);
    MV_RUN(tar_zstd_layers_are_reproducible_and_group_small_files_by_kind);
    MV_RUN(oras_format_has_an_empty_config_and_titled_blobs);
    MV_RUN(duplicate_files_are_two_layers_but_one_blob);
    MV_RUN(symlinks_inside_are_followed_outside_refused);
    MV_RUN(excluded_paths_are_never_entered);
    MV_RUN(hostile_dirs_fail_with_one_line_naming_the_file);
    MV_RUN(hash_cache_skips_unchanged_files_and_catches_changed_ones);
    MV_RUN(kitops_format_is_a_modelkit_with_a_kitfile_config);
    MV_RUN(kitops_format_is_reproducible_and_zstd_keeps_diff_ids);
    MV_RUN(kitops_without_weights_makes_config_files_datasets);
    rm_rf(tmp_root);
    MV_DONE();
}
