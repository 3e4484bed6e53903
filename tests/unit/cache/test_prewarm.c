/* test_prewarm.c — the pre-warm pass without a registry: list parsing
 * (comments, blanks, CRLF, duplicates, invalid lines named by number, the
 * size limits, index selector fields), loading through a ConfigMap-style symlink, and
 * cache_prewarm_reconcile over models stored straight into a cache and
 * pulled by digest with policy Never: pins, stale pins dropped (removed,
 * tag moved), a failure keeping its pin, and a stop request. */
#include "cachetest.h"

#define REPO "127.0.0.1:9/test/prewarm"

static cache_prewarm_list parse_ok(const char *text)
{
    cache_prewarm_list l = {0};
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_prewarm_list_parse(text, &l, &e), 0);
    return l;
}

MV_TEST(parse_comments_blanks_crlf_duplicates)
{
    _cleanup_(cache_prewarm_list_clearp) cache_prewarm_list l =
        parse_ok("# models to keep warm\n"
                 "\n"
                 "  ghcr.io/a/one:v1   # the first\n"
                 "\tghcr.io/a/two@sha256:"
                 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n"
                 "ghcr.io/a/one:v1\n"
                 "   \r\n"
                 "registry.example.com:5000/x/y:latest");
    CHECK_INT(l.n, 3);
    CHECK_INT(l.n_bad, 0);
    if (l.n == 3) {
        CHECK_STR(l.v[0].reference, "ghcr.io/a/one:v1");
        CHECK_INT(l.v[0].line, 3);
        CHECK_STR(l.v[1].reference,
                  "ghcr.io/a/two@sha256:"
                  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        CHECK_INT(l.v[1].line, 4);
        CHECK_STR(l.v[2].reference, "registry.example.com:5000/x/y:latest");
        CHECK_INT(l.v[2].line, 7);
    }

    _cleanup_(cache_prewarm_list_clearp) cache_prewarm_list empty = parse_ok("");
    CHECK_INT(empty.n + empty.n_bad, 0);
    _cleanup_(cache_prewarm_list_clearp) cache_prewarm_list only = parse_ok("# nothing\n\n#\n");
    CHECK_INT(only.n + only.n_bad, 0);
}

MV_TEST(parse_invalid_lines_are_named_and_do_not_stop_the_rest)
{
    _cleanup_(cache_prewarm_list_clearp) cache_prewarm_list l =
        parse_ok("ghcr.io/a/one:v1\n"
                 "Not A//Reference\n"
                 "ghcr.io/a/two:v1 ghcr.io/a/three:v1\n"
                 "ghcr.io/a/four:v1\n"
                 "Not A//Reference\n");
    CHECK_INT(l.n, 2);
    if (l.n == 2) {
        CHECK_STR(l.v[0].reference, "ghcr.io/a/one:v1");
        CHECK_STR(l.v[1].reference, "ghcr.io/a/four:v1");
        CHECK_INT(l.v[1].line, 4);
    }
    /* Duplicates are skipped only once valid: each bad line is reported. */
    CHECK_INT(l.n_bad, 3);
    if (l.n_bad == 3) {
        CHECK_INT(l.bad[0].line, 2);
        CHECK_INT(l.bad[1].line, 3);
        CHECK(strstr(l.bad[1].error, "is not one reference") != NULL);
        CHECK_INT(l.bad[2].line, 5);
        for (size_t i = 0; i < l.n_bad; i++)
            CHECK(l.bad[i].error[0] && !strchr(l.bad[i].error, '\n'));
    }
}

MV_TEST(parse_selector_fields)
{
    _cleanup_(cache_prewarm_list_clearp) cache_prewarm_list l =
        parse_ok("ghcr.io/a/one:v1  platform=linux/arm64\tannotation=org.example.q=q4 # arm\n"
                 "ghcr.io/a/one:v1 platform=linux/arm64 annotation=org.example.q=q4\n"
                 "ghcr.io/a/one:v1 artifactType=application/vnd.example.model\n"
                 "ghcr.io/a/one:v1\n"
                 "ghcr.io/a/two:v1 colour=red\n"
                 "ghcr.io/a/two:v1 platform=linux\n"
                 "ghcr.io/a/two:v1 platform=linux/amd64 platform=linux/arm64\n"
                 "ghcr.io/a/two:v1 =x\n");
    /* The same words are one entry; other fields on one reference are
     * another entry, with a pin owner of its own. */
    CHECK_INT(l.n, 3);
    if (l.n == 3) {
        CHECK_STR(l.v[0].reference,
                  "ghcr.io/a/one:v1 platform=linux/arm64 annotation=org.example.q=q4");
        CHECK_STR(l.v[0].rq->reference, "ghcr.io/a/one:v1");
        CHECK_STR(l.v[0].rq->select.platform.architecture, "arm64");
        CHECK_STR(l.v[0].rq->select.annotation_key, "org.example.q");
        CHECK_STR(l.v[0].rq->select.annotation_value, "q4");
        CHECK(l.v[0].rq->select.artifact_type == NULL);
        CHECK_STR(l.v[1].rq->select.artifact_type, "application/vnd.example.model");
        CHECK_STR(l.v[2].reference, "ghcr.io/a/one:v1");
        CHECK(oci_index_selector_empty(&l.v[2].rq->select));
    }
    CHECK_INT(l.n_bad, 4);
    if (l.n_bad == 4) {
        CHECK_INT(l.bad[0].line, 5);
        CHECK_CONTAINS(l.bad[0].error, "\"ghcr.io/a/two:v1 colour=red\": unknown field "
                                       "\"colour\" (known: artifactType, platform, annotation, kinds)");
        CHECK_INT(l.bad[1].line, 6);
        CHECK_CONTAINS(l.bad[1].error, "platform \"linux\": not os/arch[/variant]");
        CHECK_CONTAINS(l.bad[2].error, "field platform given twice");
        CHECK_CONTAINS(l.bad[3].error, "unknown field \"\"");
    }
}

MV_TEST(parse_limits_and_equality)
{
    size_t cap = (CACHE_PREWARM_MAX_ENTRIES + 1) * 32;
    _cleanup_free_ char *many = mv_xmalloc(cap);
    size_t len = 0;
    for (int i = 0; i <= CACHE_PREWARM_MAX_ENTRIES; i++)
        len += (size_t)snprintf(many + len, cap - len, "ghcr.io/a/m:v%d\n", i);
    cache_prewarm_list l = {0};
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_prewarm_list_parse(many, &l, &e), -E2BIG);
    CHECK(strstr(e.msg, "4096") != NULL);
    CHECK_INT(l.n, 0);

    _cleanup_(cache_prewarm_list_clearp) cache_prewarm_list a = parse_ok("x.io/a:1\nx.io/b:1\n");
    _cleanup_(cache_prewarm_list_clearp) cache_prewarm_list b =
        parse_ok("# same\nx.io/a:1 \nx.io/b:1\nx.io/a:1\n");
    _cleanup_(cache_prewarm_list_clearp) cache_prewarm_list c = parse_ok("x.io/b:1\nx.io/a:1\n");
    _cleanup_(cache_prewarm_list_clearp) cache_prewarm_list d =
        parse_ok("x.io/a:1\nx.io/b:1\nNot A//Ref\n");
    CHECK(cache_prewarm_list_equal(&a, &b));
    CHECK(!cache_prewarm_list_equal(&a, &c));
    CHECK(!cache_prewarm_list_equal(&a, &d));
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

MV_TEST(load_follows_symlinks_and_names_the_file)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_free_ char *data = mv_xasprintf("%s/..2026_11_23", dir);
    _cleanup_free_ char *real = mv_xasprintf("%s/models.txt", data);
    _cleanup_free_ char *link = mv_xasprintf("%s/models.txt", dir);
    CHECK_INT(mkdir(data, 0755), 0);
    write_file(real, "x.io/a:1\n");
    CHECK_INT(symlink("..2026_11_23/models.txt", link), 0);
    mv_error e = MV_ERROR_INIT;
    _cleanup_(cache_prewarm_list_clearp) cache_prewarm_list l = {0};
    CHECK_INT(cache_prewarm_list_load(link, &l, &e), 0);
    CHECK_INT(l.n, 1);

    cache_prewarm_list bad = {0};
    _cleanup_free_ char *missing = mv_xasprintf("%s/no-such-list.txt", dir);
    CHECK_INT(cache_prewarm_list_load(missing, &bad, &e), -ENOENT);
    CHECK(strstr(e.msg, "no-such-list.txt") != NULL);
    CHECK_INT(cache_prewarm_list_load(data, &bad, &e), -EINVAL);

    _cleanup_free_ char *huge = mv_xmalloc(CACHE_PREWARM_MAX_LIST_BYTES + 2);
    memset(huge, '#', CACHE_PREWARM_MAX_LIST_BYTES + 1);
    huge[CACHE_PREWARM_MAX_LIST_BYTES + 1] = '\0';
    write_file(real, huge);
    CHECK_INT(cache_prewarm_list_load(link, &bad, &e), -EFBIG);
    CHECK(strstr(e.msg, link) != NULL);
    ct_rmtree(dir);
}

/* A ModelPack model of one file, stored straight into the cache; its
 * reference by digest, which policy Never pulls from the cache alone. */
static char *store_model(cache *c, const char *content)
{
    char ld[OCI_DIGEST_MAX], cd[OCI_DIGEST_MAX], md[OCI_DIGEST_MAX];
    ct_blob(c, content, strlen(content), ld);
    _cleanup_free_ char *cfg =
        mv_xasprintf("{\"modelfs\":{\"type\":\"layers\",\"diffIds\":[\"%s\"]}}", ld);
    ct_blob(c, cfg, strlen(cfg), cd);
    _cleanup_free_ char *m = mv_xasprintf(
        "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_MANIFEST
        "\",\"artifactType\":\"" MODEL_ARTIFACT_TYPE
        "\",\"config\":{\"mediaType\":\"" MODEL_MT_CONFIG "\",\"digest\":\"%s\",\"size\":%zu},"
        "\"layers\":[{\"mediaType\":\"application/vnd.cncf.model.weight.v1.raw\",\"digest\":"
        "\"%s\",\"size\":%zu,\"annotations\":{\"org.cncf.model.filepath\":\"model.bin\"}}]}",
        cd, strlen(cfg), ld, strlen(content));
    ct_blob(c, m, strlen(m), md);
    return mv_xasprintf(REPO "@%s", md);
}

typedef struct seen {
    int count[CACHE_PREWARM_DONE + 1];
    int bad_line;
    const char *reasons[8];
    int n_reasons;
    int done_failed;
} seen;

static void on_event(const cache_prewarm_event *ev, void *ud)
{
    seen *s = ud;
    s->count[ev->kind]++;
    if (ev->kind == CACHE_PREWARM_INVALID_LINE)
        s->bad_line = ev->line;
    if (ev->kind == CACHE_PREWARM_UNPINNED && s->n_reasons < 8)
        s->reasons[s->n_reasons++] = ev->reason;
    if (ev->kind == CACHE_PREWARM_DONE)
        s->done_failed = ev->failed;
}

/* The tree of each prewarm pin, by reference; NULL when not pinned. */
static bool pinned(cache *c, const char *ref, const char *tree_id)
{
    cache_pin_info *p = NULL;
    size_t n = 0;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_pins_list(c, CACHE_PREWARM_OWNER_PREFIX, &p, &n, &e), 0);
    bool found = false;
    for (size_t i = 0; i < n; i++)
        found = found || (strcmp(p[i].owner + strlen(CACHE_PREWARM_OWNER_PREFIX), ref) == 0 &&
                          strcmp(p[i].tree_id, tree_id) == 0);
    cache_pins_free(p, n);
    return found;
}

static cache_prewarm_opts never_opts(seen *s)
{
    return (cache_prewarm_opts){
        .policy = CACHE_PULL_NEVER, .parallel = 2, .stop_fd = -1, .report = on_event, .ud = s};
}

MV_TEST(reconcile_pins_and_drops_stale_pins)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    _cleanup_free_ char *a = store_model(c, "model a");
    _cleanup_free_ char *b = store_model(c, "model b");
    _cleanup_free_ char *gone = mv_xasprintf(REPO ":gone");
    _cleanup_free_ char *missing = mv_xasprintf(
        REPO "@sha256:00000000000000000000000000000000000000000000000000000000000000aa");
    _cleanup_free_ char *text = mv_xasprintf("%s\n%s\nNot A//Reference\n", a, b);
    _cleanup_(cache_prewarm_list_clearp) cache_prewarm_list l = parse_ok(text);

    seen s = {0};
    cache_prewarm_opts o = never_opts(&s);
    cache_prewarm_result res[2];
    CHECK_INT(cache_prewarm_reconcile(c, &o, &l, res, &e), 1);
    CHECK_INT(s.count[CACHE_PREWARM_INVALID_LINE], 1);
    CHECK_INT(s.bad_line, 3);
    CHECK_INT(s.count[CACHE_PREWARM_PINNED], 2);
    CHECK_INT(s.count[CACHE_PREWARM_DONE], 1);
    CHECK_INT(s.done_failed, 1);
    CHECK_INT(res[0].error.code, 0);
    CHECK_INT(res[1].error.code, 0);
    CHECK(strcmp(res[0].tree_id, res[1].tree_id) != 0);
    CHECK(pinned(c, a, res[0].tree_id) && pinned(c, b, res[1].tree_id));
    char ta[OCI_DIGEST_MAX], tb[OCI_DIGEST_MAX];
    snprintf(ta, sizeof(ta), "%s", res[0].tree_id);
    snprintf(tb, sizeof(tb), "%s", res[1].tree_id);

    /* Stale pins: a reference gone from the list, a's pin of another tree
     * (its tag moved), and a failing reference's pin, which stays. */
    _cleanup_free_ char *own_gone = mv_xasprintf(CACHE_PREWARM_OWNER_PREFIX "%s", gone);
    _cleanup_free_ char *own_a = mv_xasprintf(CACHE_PREWARM_OWNER_PREFIX "%s", a);
    _cleanup_free_ char *own_missing = mv_xasprintf(CACHE_PREWARM_OWNER_PREFIX "%s", missing);
    CHECK_INT(cache_pin(c, ta, own_gone, &e), 0);
    CHECK_INT(cache_pin(c, tb, own_a, &e), 0);
    CHECK_INT(cache_pin(c, tb, own_missing, &e), 0);
    CHECK_INT(cache_pin(c, tb, "csi:/not/ours", &e), 0);
    cache_prewarm_list_clear(&l);
    _cleanup_free_ char *text2 = mv_xasprintf("%s\n%s\n", a, missing);
    l = parse_ok(text2);
    s = (seen){0};
    CHECK_INT(cache_prewarm_reconcile(c, &o, &l, res, &e), 1);
    CHECK_INT(s.count[CACHE_PREWARM_PULL_FAILED], 1);
    CHECK(res[1].error.code < 0 && res[1].error.msg[0]);
    CHECK_INT(s.count[CACHE_PREWARM_UNPINNED], 3); /* gone, a's old tree, b (left the list) */
    int tag_moved = 0, removed = 0;
    for (int i = 0; i < s.n_reasons; i++) {
        tag_moved += strcmp(s.reasons[i], "tag-moved") == 0;
        removed += strcmp(s.reasons[i], "removed-from-list") == 0;
    }
    CHECK_INT(tag_moved, 1);
    CHECK_INT(removed, 2);
    CHECK(pinned(c, a, ta));
    CHECK(!pinned(c, a, tb));
    CHECK(!pinned(c, gone, ta));
    CHECK(!pinned(c, b, tb));
    CHECK(pinned(c, missing, tb)); /* a failure keeps what it had */
    cache_pin_info *p = NULL;
    size_t n = 0;
    CHECK_INT(cache_pins_list(c, "csi:", &p, &n, &e), 0);
    CHECK_INT(n, 1); /* other owners' pins are not prewarm's business */
    cache_pins_free(p, n);
    ct_rmtree(dir);
}

static bool stop_now(void *ud)
{
    (void)ud;
    return true;
}

MV_TEST(reconcile_stop_drops_nothing)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    _cleanup_free_ char *a = store_model(c, "model a");
    _cleanup_free_ char *b = store_model(c, "model b");
    _cleanup_(cache_prewarm_list_clearp) cache_prewarm_list l0 = parse_ok(a);
    seen s = {0};
    cache_prewarm_opts o = never_opts(&s);
    cache_prewarm_result r0;
    CHECK_INT(cache_prewarm_reconcile(c, &o, &l0, &r0, &e), 0);

    /* The stop fd is readable from the start: the running pull is
     * cancelled (or finishes), the next never starts, and a's pin, stale
     * now, stays. */
    int fds[2];
    CHECK_INT(pipe(fds), 0);
    CHECK_INT(write(fds[1], "x", 1), 1);
    o.parallel = 1;
    o.stop_fd = fds[0];
    o.stop = stop_now;
    _cleanup_free_ char *text = mv_xasprintf("%s\n" REPO ":other\n", b);
    _cleanup_(cache_prewarm_list_clearp) cache_prewarm_list l = parse_ok(text);
    cache_prewarm_result res[2];
    s = (seen){0};
    CHECK_INT(cache_prewarm_reconcile(c, &o, &l, res, &e), -ECANCELED);
    CHECK_INT(res[1].error.code, -ECANCELED);
    CHECK_INT(s.count[CACHE_PREWARM_UNPINNED] + s.count[CACHE_PREWARM_DONE], 0);
    CHECK(pinned(c, a, r0.tree_id));
    close(fds[0]);
    close(fds[1]);

    o.stop_fd = 3;
    o.stop = NULL;
    CHECK_INT(cache_prewarm_reconcile(c, &o, &l, res, &e), -EINVAL);
    o.stop_fd = -1;
    o.parallel = 0;
    CHECK_INT(cache_prewarm_reconcile(c, &o, &l, res, &e), -EINVAL);
    ct_rmtree(dir);
}

int main(void)
{
    MV_RUN(parse_comments_blanks_crlf_duplicates);
    MV_RUN(parse_invalid_lines_are_named_and_do_not_stop_the_rest);
    MV_RUN(parse_selector_fields);
    MV_RUN(parse_limits_and_equality);
    MV_RUN(load_follows_symlinks_and_names_the_file);
    MV_RUN(reconcile_pins_and_drops_stale_pins);
    MV_RUN(reconcile_stop_drops_nothing);
    MV_DONE();
}
