/* test_cache_request.c — cache_request_parse, the one parse of a pull
 * request: the reference normalised once (spellings of one model agree),
 * globs split from a CSV and taken from lists, the subpath normalised, the
 * index selector parsed, and errors that name the bad input. Also the connection limit: one parse,
 * and the puller refuses what is out of range instead of capping it. */
#include "cachetest.h"

static cache_request *parse_ok(const cache_request_args *a)
{
    cache_request *rq = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_request_parse(a, &rq, &e), 0);
    if (!rq)
        fprintf(stderr, "parse: %s\n", e.msg);
    return rq;
}

MV_TEST(reference_is_normalised_once)
{
    _cleanup_cache_request_ cache_request *a =
        parse_ok(&(cache_request_args){.reference = "127.0.0.1:5000/models/llama"});
    _cleanup_cache_request_ cache_request *b =
        parse_ok(&(cache_request_args){.reference = "127.0.0.1:5000/models/llama:latest"});
    _cleanup_cache_request_ cache_request *c =
        parse_ok(&(cache_request_args){.reference = "llama:v1"});
    _cleanup_cache_request_ cache_request *d =
        parse_ok(&(cache_request_args){.reference = "docker.io/library/llama:v1"});
    if (!a || !b || !c || !d)
        return;
    CHECK_STR(a->reference, "127.0.0.1:5000/models/llama:latest");
    CHECK_STR(a->reference, b->reference);
    CHECK_STR(c->reference, d->reference);
    CHECK_STR(c->ref->repository, "library/llama");
    CHECK_STR(c->ref->tag, "v1");
    CHECK(a->include == NULL && a->exclude == NULL && a->subpath == NULL);
    CHECK_INT(a->policy, CACHE_PULL_IF_NOT_PRESENT);
}

MV_TEST(globs_and_subpath)
{
    static const char *const more[] = {"tok/*", "", NULL};
    _cleanup_cache_request_ cache_request *rq = parse_ok(&(cache_request_args){
        .reference = "r.example/m:v1",
        .policy = CACHE_PULL_NEVER,
        .include_csv = " *.json, ,*.safetensors,,",
        .exclude_csv = "",
        .exclude = more,
        .subpath = "./weights//big/",
    });
    if (!rq)
        return;
    CHECK_INT(rq->policy, CACHE_PULL_NEVER);
    CHECK(rq->include && rq->include[0] && rq->include[1] && !rq->include[2]);
    if (rq->include && rq->include[0] && rq->include[1]) {
        CHECK_STR(rq->include[0], "*.json");
        CHECK_STR(rq->include[1], "*.safetensors");
    }
    /* A list is taken glob by glob, as given. */
    CHECK(rq->exclude && rq->exclude[0] && rq->exclude[1] && !rq->exclude[2]);
    if (rq->exclude && rq->exclude[0] && rq->exclude[1]) {
        CHECK_STR(rq->exclude[0], "tok/*");
        CHECK_STR(rq->exclude[1], "");
    }
    CHECK_STR(rq->subpath, "weights/big");

    _cleanup_cache_request_ cache_request *whole = parse_ok(
        &(cache_request_args){.reference = "r.example/m:v1", .include_csv = " , ", .subpath = ""});
    if (whole)
        CHECK(whole->include == NULL && whole->subpath == NULL);
}

MV_TEST(errors_name_the_bad_input)
{
    cache_request *rq = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_request_parse(&(cache_request_args){.reference = "Bad/Ref:v1"}, &rq, &e),
              -EINVAL);
    CHECK(rq == NULL);
    CHECK_CONTAINS(e.msg, "reference \"Bad/Ref:v1\"");

    mv_error_clear(&e);
    CHECK_INT(cache_request_parse(&(cache_request_args){.reference = "Bad/Ref:v1",
                                                        .reference_what = "volume_id is not a "
                                                                          "model reference"},
                                  &rq, &e),
              -EINVAL);
    CHECK_CONTAINS(e.msg, "volume_id is not a model reference: reference \"Bad/Ref:v1\"");

    mv_error_clear(&e);
    CHECK_INT(
        cache_request_parse(
            &(cache_request_args){.reference = "r.example/m:v1", .subpath = "../etc"}, &rq, &e),
        -EINVAL);
    CHECK(rq == NULL);
    CHECK(strncmp(e.msg, "subpath: ", 9) == 0);
    CHECK_CONTAINS(e.msg, "../etc");

    mv_error_clear(&e);
    CHECK_INT(cache_request_parse(&(cache_request_args){.reference = "r.example/m:v1",
                                                        .subpath = "/abs",
                                                        .subpath_what = "--subpath"},
                                  &rq, &e),
              -EINVAL);
    CHECK(strncmp(e.msg, "--subpath: ", 11) == 0);

    mv_error_clear(&e);
    CHECK_INT(cache_request_parse(&(cache_request_args){0}, &rq, &e), -EINVAL);
    CHECK_CONTAINS(e.msg, "reference");
}

/* cache_pull refuses what did not come from cache_request_parse. */
MV_TEST(index_selector_is_parsed_once)
{
    _cleanup_cache_request_ cache_request *none =
        parse_ok(&(cache_request_args){.reference = "r.example/m:v1", .platform = ""});
    _cleanup_cache_request_ cache_request *rq = parse_ok(&(cache_request_args){
        .reference = "r.example/m:v1",
        .artifact_type = "application/vnd.example.model",
        .platform = "linux/x86_64",
        .annotation = "org.example.quant=q4=x",
    });
    if (!none || !rq)
        return;
    CHECK(oci_index_selector_empty(&none->select));
    CHECK_STR(rq->select.artifact_type, "application/vnd.example.model");
    CHECK_STR(rq->select.platform.os, "linux");
    CHECK_STR(rq->select.platform.architecture, "amd64");
    CHECK(rq->select.platform.variant == NULL);
    CHECK_STR(rq->select.annotation_key, "org.example.quant");
    CHECK_STR(rq->select.annotation_value, "q4=x");

    cache_request *bad = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_request_parse(&(cache_request_args){.reference = "r.example/m:v1",
                                                        .platform = "linux",
                                                        .select_what = "volumeAttributes"},
                                  &bad, &e),
              -EINVAL);
    CHECK(bad == NULL);
    CHECK_STR(e.msg, "volumeAttributes: platform \"linux\": not os/arch[/variant]");
    CHECK_INT(
        cache_request_parse(&(cache_request_args){.reference = "r.example/m:v1", .annotation = "k"},
                            &bad, &e),
        -EINVAL);
    CHECK_STR(e.msg, "annotation \"k\": not key=value");
}

MV_TEST(pull_needs_a_parsed_request)
{
    cache_request empty = {0};
    cache_pull_result res = {0};
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_pull(NULL, &empty, &res, &e), -EINVAL);
    CHECK(res.tree_path == NULL);
}

MV_TEST(connection_limit)
{
    int n = 0;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_connections_parse("--connections", "1", &n, &e), 0);
    CHECK_INT(n, CACHE_CONNECTIONS_MIN);
    CHECK_INT(cache_connections_parse("--connections", "256", &n, &e), 0);
    CHECK_INT(n, CACHE_CONNECTIONS_MAX);
    static const char *const bad[] = {"0", "257", "1024", "-4", "", "4x", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mv_error_clear(&e);
        n = 7;
        CHECK_INT(cache_connections_parse("--connections", bad[i], &n, &e), -EINVAL);
        CHECK_INT(n, 7);
        CHECK_CONTAINS(e.msg, "--connections");
        CHECK_CONTAINS(e.msg, "from 1 to 256");
    }
}

MV_TEST(out_of_range_connections_are_refused)
{
    _cleanup_free_ char *dir = ct_tmpdir();
    _cleanup_cache_ cache *c = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_open(dir, NULL, &c, &e), 0);
    /* Not cached: the pull needs a client, which refuses before any I/O. */
    _cleanup_cache_request_ cache_request *rq =
        parse_ok(&(cache_request_args){.reference = "127.0.0.1:9/m:v1"});
    if (!rq || !c)
        return;
    rq->pull.connections = CACHE_CONNECTIONS_MAX + 1;
    cache_pull_result res = {0};
    CHECK_INT(cache_pull(c, rq, &res, &e), -EINVAL);
    CHECK_CONTAINS(e.msg, "257 connections");
    ct_rmtree(dir);
}

/* The kind filter: words from the CSV and the list, each once, in one
 * order; a bad word names itself and the input it came from. */
MV_TEST(kinds_parsed_once)
{
    static const char *const more[] = {"weights", "docs", NULL};
    _cleanup_cache_request_ cache_request *rq = parse_ok(&(cache_request_args){
        .reference = "r.example/m:v1", .kinds_csv = " docs, ,config,", .kinds = more});
    if (!rq)
        return;
    CHECK(rq->kinds && rq->kinds[0] && rq->kinds[1] && rq->kinds[2] && !rq->kinds[3]);
    if (rq->kinds && rq->kinds[0] && rq->kinds[1] && rq->kinds[2]) {
        CHECK_STR(rq->kinds[0], "weights");
        CHECK_STR(rq->kinds[1], "config");
        CHECK_STR(rq->kinds[2], "docs");
    }
    CHECK_INT(rq->kinds_mask, (1u << MODEL_KIND_WEIGHT) | (1u << MODEL_KIND_WEIGHT_CONFIG) |
                                  (1u << MODEL_KIND_DOC));
    _cleanup_cache_request_ cache_request *none =
        parse_ok(&(cache_request_args){.reference = "r.example/m:v1", .kinds_csv = ""});
    CHECK(none && !none->kinds && none->kinds_mask == 0);

    cache_request *bad = NULL;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(cache_request_parse(&(cache_request_args){.reference = "r.example/m:v1",
                                                        .kinds_csv = "weights,weight",
                                                        .kinds_what = "volumeAttributes.kinds"},
                                  &bad, &e),
              -EINVAL);
    CHECK(!bad);
    CHECK_CONTAINS(e.msg, "volumeAttributes.kinds");
    CHECK_CONTAINS(e.msg, "\"weight\"");
}

int main(void)
{
    MV_RUN(reference_is_normalised_once);
    MV_RUN(globs_and_subpath);
    MV_RUN(kinds_parsed_once);
    MV_RUN(errors_name_the_bad_input);
    MV_RUN(index_selector_is_parsed_once);
    MV_RUN(pull_needs_a_parsed_request);
    MV_RUN(connection_limit);
    MV_RUN(out_of_range_connections_are_refused);
    MV_DONE();
}
