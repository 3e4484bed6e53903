/* test_config.c — the registry configuration JSON: mirrors, plainHTTP, TLS
 * files, Docker Hub aliases, and one-line errors naming the bad key. */
#include "mvtest.h"
#include "puller-internal.h"

#include <string.h>

static pull_config *parse(const char *json, mv_error *err)
{
    pull_config *c = NULL;
    pull_config_parse(json, strlen(json), &c, err);
    return c;
}

MV_TEST(full_entry)
{
    mv_error err = MV_ERROR_INIT;
    pull_config *c = parse("{\"registries\":{\"reg.example:5000\":{"
                           "\"mirrors\":[\"http://127.0.0.1:5001\",\"mirror.local/v2\"],"
                           "\"plainHTTP\":true,\"caFile\":\"/ca.pem\",\"certFile\":\"/c.pem\","
                           "\"keyFile\":\"/k.pem\",\"insecureSkipVerify\":true,\"future\":1}}}",
                           &err);
    CHECK(c != NULL);
    const pull_host_config *h = pull_config_host(c, "reg.example:5000");
    CHECK(h != NULL);
    if (h) {
        CHECK_INT(h->n_mirrors, 2);
        CHECK_STR(h->mirrors[0], "http://127.0.0.1:5001");
        CHECK(h->plain_http);
        CHECK(h->insecure_skip_verify);
        CHECK_STR(h->ca_file, "/ca.pem");
        CHECK_STR(h->cert_file, "/c.pem");
        CHECK_STR(h->key_file, "/k.pem");
    }
    CHECK(pull_config_host(c, "reg.example") == NULL);
    pull_config_free(c);
}

MV_TEST(docker_hub_alias)
{
    pull_config *c = parse("{\"registries\":{\"docker.io\":{\"mirrors\":[\"https://m\"]}}}", NULL);
    CHECK(pull_config_host(c, "registry-1.docker.io") != NULL);
    CHECK(pull_config_host(c, "docker.io") != NULL);
    pull_config_free(c);
}

MV_TEST(empty_and_missing)
{
    pull_config *c = parse("{}", NULL);
    CHECK(c != NULL);
    CHECK(pull_config_host(c, "x") == NULL);
    pull_config_free(c);
    mv_error err = MV_ERROR_INIT;
    c = NULL;
    CHECK_INT(pull_config_load("/nonexistent/modelvol.json", false, &c, &err), 0);
    CHECK(c != NULL);
    pull_config_free(c);
    c = NULL;
    CHECK(pull_config_load("/nonexistent/modelvol.json", true, &c, &err) == -ENOENT);
    CHECK_CONTAINS(err.msg, "/nonexistent/modelvol.json");
}

MV_TEST(errors_name_the_key)
{
    mv_error err = MV_ERROR_INIT;
    CHECK(parse("[]", &err) == NULL);
    CHECK(parse("{\"registries\":[]}", &err) == NULL);
    CHECK_CONTAINS(err.msg, "registries");
    CHECK(parse("{\"registries\":{\"h\":{\"plainHTTP\":\"yes\"}}}", &err) == NULL);
    CHECK_CONTAINS(err.msg, "plainHTTP");
    CHECK_CONTAINS(err.msg, "\"h\"");
    CHECK(parse("{\"registries\":{\"h\":{\"mirrors\":[\"ftp://x\"]}}}", &err) == NULL);
    CHECK_CONTAINS(err.msg, "ftp://x");
    CHECK(parse("{\"registries\":{\"h\":{\"mirrors\":[\"http://\"]}}}", &err) == NULL);
    CHECK(parse("{\"registries\":{\"h\":{\"certFile\":\"/c\"}}}", &err) == NULL);
    CHECK_CONTAINS(err.msg, "keyFile");
    CHECK(parse("{\"registries\":{\"h\":{\"caFile\":\"\"}}}", &err) == NULL);
    CHECK(parse("{\"registries\":{\"h\":{\"mirrors\":[1]}}}", &err) == NULL);
    CHECK(parse("{bad", &err) == NULL);
    CHECK_CONTAINS(err.msg, "JSON");
}

int main(void)
{
    MV_RUN(full_entry);
    MV_RUN(docker_hub_alias);
    MV_RUN(empty_and_missing);
    MV_RUN(errors_name_the_key);
    MV_DONE();
}
