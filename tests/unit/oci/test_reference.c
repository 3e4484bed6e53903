/* test_reference.c — reference parsing and normalisation (Docker Hub
 * defaults, hosts with ports and IPv6), the canonical string, every
 * rejection naming its part, and the loopback host test. */
#include "oci.h"
#include "mvtest.h"

#define D256 "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static const struct {
    const char *in;
    const char *registry, *api_host, *repository, *tag, *digest;
    const char *canonical;
} good[] = {
    {"ubuntu", "docker.io", "registry-1.docker.io", "library/ubuntu", "latest", NULL,
     "docker.io/library/ubuntu:latest"},
    {"ubuntu:22.04", "docker.io", "registry-1.docker.io", "library/ubuntu", "22.04", NULL,
     "docker.io/library/ubuntu:22.04"},
    {"bitnami/redis", "docker.io", "registry-1.docker.io", "bitnami/redis", "latest", NULL,
     "docker.io/bitnami/redis:latest"},
    {"docker.io/ubuntu", "docker.io", "registry-1.docker.io", "library/ubuntu", "latest", NULL,
     "docker.io/library/ubuntu:latest"},
    {"index.docker.io/library/busybox:1", "docker.io", "registry-1.docker.io", "library/busybox",
     "1", NULL, "docker.io/library/busybox:1"},
    {"registry-1.docker.io/busybox", "docker.io", "registry-1.docker.io", "library/busybox",
     "latest", NULL, "docker.io/library/busybox:latest"},
    {"ghcr.io/org/models/llama:v1", "ghcr.io", "ghcr.io", "org/models/llama", "v1", NULL,
     "ghcr.io/org/models/llama:v1"},
    {"localhost/m", "localhost", "localhost", "m", "latest", NULL, "localhost/m:latest"},
    {"localhost:5000/models/tiny:v2", "localhost:5000", "localhost:5000", "models/tiny", "v2", NULL,
     "localhost:5000/models/tiny:v2"},
    {"127.0.0.1:39999/x/y", "127.0.0.1:39999", "127.0.0.1:39999", "x/y", "latest", NULL,
     "127.0.0.1:39999/x/y:latest"},
    {"[::1]:5000/m:t", "[::1]:5000", "[::1]:5000", "m", "t", NULL, "[::1]:5000/m:t"},
    {"[2001:DB8::1]/m", "[2001:db8::1]", "[2001:db8::1]", "m", "latest", NULL,
     "[2001:db8::1]/m:latest"},
    {"Registry.Example.COM/a", "registry.example.com", "registry.example.com", "a", "latest", NULL,
     "registry.example.com/a:latest"},
    {"ghcr.io/a/b@" D256, "ghcr.io", "ghcr.io", "a/b", NULL, D256, "ghcr.io/a/b@" D256},
    {"ghcr.io/a/b:v1@" D256, "ghcr.io", "ghcr.io", "a/b", "v1", D256, "ghcr.io/a/b:v1@" D256},
    {"busybox@" D256, "docker.io", "registry-1.docker.io", "library/busybox", NULL, D256,
     "docker.io/library/busybox@" D256},
    {"example:5000/a", "example:5000", "example:5000", "a", "latest", NULL,
     "example:5000/a:latest"},
    {"r.io/a_b/c__d/e-f/g--h/i.j:T_a.g-1", "r.io", "r.io", "a_b/c__d/e-f/g--h/i.j", "T_a.g-1", NULL,
     "r.io/a_b/c__d/e-f/g--h/i.j:T_a.g-1"},
    /* A bare host-looking name is a Hub repository, as in distribution. */
    {"localhost:5000", "docker.io", "registry-1.docker.io", "library/localhost", "5000", NULL,
     "docker.io/library/localhost:5000"},
};

MV_TEST(good_references_normalise)
{
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        mv_error e = MV_ERROR_INIT;
        _cleanup_ref_ oci_ref *r = NULL;
        int rc = oci_ref_parse(good[i].in, &r, &e);
        if (rc != 0) {
            fprintf(stderr, "input %s: %s\n", good[i].in, e.msg);
            CHECK_INT(rc, 0);
            continue;
        }
        CHECK_STR(r->registry, good[i].registry);
        CHECK_STR(r->api_host, good[i].api_host);
        CHECK_STR(r->repository, good[i].repository);
        if (good[i].tag)
            CHECK_STR(r->tag, good[i].tag);
        else
            CHECK(r->tag == NULL);
        if (good[i].digest)
            CHECK_STR(r->digest, good[i].digest);
        else
            CHECK(r->digest == NULL);
        _cleanup_free_ char *s = oci_ref_string(r);
        CHECK_STR(s, good[i].canonical);
        /* The canonical form parses back to itself. */
        _cleanup_ref_ oci_ref *r2 = NULL;
        CHECK_INT(oci_ref_parse(s, &r2, &e), 0);
        if (r2) {
            _cleanup_free_ char *s2 = oci_ref_string(r2);
            CHECK_STR(s2, s);
        }
    }
}

static void expect_bad(const char *in, const char *needle)
{
    mv_error e = MV_ERROR_INIT;
    oci_ref *r = (oci_ref *)1;
    int rc = oci_ref_parse(in, &r, &e);
    CHECK_INT(rc, -EINVAL);
    CHECK(r == NULL);
    CHECK_CONTAINS(e.msg, needle);
    CHECK(strchr(e.msg, '\n') == NULL);
    if (rc == 0)
        oci_ref_free(r);
}

MV_TEST(uppercase_repository_is_named)
{
    mv_error e = MV_ERROR_INIT;
    _cleanup_ref_ oci_ref *r = NULL;
    CHECK_INT(oci_ref_parse("Foo/bar", &r, &e), -EINVAL);
    CHECK_STR(e.msg, "reference \"Foo/bar\": repository \"Foo/bar\" has uppercase letters");
    expect_bad("ghcr.io/Org/model:v1", "repository \"Org/model\" has uppercase letters");
}

MV_TEST(empty_and_invalid_components_are_rejected)
{
    expect_bad("", "empty reference");
    expect_bad("ghcr.io//a", "repository \"/a\" has an empty path component");
    expect_bad("ghcr.io/a//b", "empty path component");
    expect_bad("ghcr.io/a/", "empty path component");
    expect_bad("ghcr.io/", "repository is empty");
    expect_bad(":tag", "repository is empty");
    expect_bad("ghcr.io/a..b", "component \"a..b\" is invalid");
    expect_bad("ghcr.io/-a", "component \"-a\" is invalid");
    expect_bad("ghcr.io/a-", "component \"a-\" is invalid");
    expect_bad("ghcr.io/a___b", "component \"a___b\" is invalid");
    expect_bad("ghcr.io/a b", "component \"a b\" is invalid");
    expect_bad("ghcr.io/a/../etc", "component \"..\" is invalid");
    expect_bad("a\nb", "reference \"a?b\"");
}

MV_TEST(bad_hosts_are_named)
{
    expect_bad("bad_host.io/a", "registry host \"bad_host.io\" is invalid");
    expect_bad("-bad.io/a", "registry host \"-bad.io\" is invalid");
    expect_bad("host.io:/a", "registry host \"host.io:\" is invalid");
    expect_bad("host.io:99999/a", "registry host \"host.io:99999\" is invalid");
    expect_bad("host.io:0/a", "registry host \"host.io:0\" is invalid");
    expect_bad("host.io:12ab/a", "is invalid");
    expect_bad("[::1/a", "is invalid");
    expect_bad("[]:5000/a", "is invalid");
    expect_bad("[::1]x/a", "is invalid");
    expect_bad("[fe80::1%eth0]/a", "is invalid");
    expect_bad("a..b.io/x", "is invalid");
}

MV_TEST(tags_are_checked)
{
    char tag128[200], tag129[200];
    snprintf(tag128, sizeof(tag128), "r.io/a:%0128d", 0);
    snprintf(tag129, sizeof(tag129), "r.io/a:%0129d", 0);
    mv_error e = MV_ERROR_INIT;
    _cleanup_ref_ oci_ref *r = NULL;
    CHECK_INT(oci_ref_parse(tag128, &r, &e), 0);
    if (r)
        CHECK_INT(strlen(r->tag), 128);
    expect_bad(tag129, "is 129 characters, over the limit of 128");
    expect_bad("r.io/a:", "tag is empty");
    expect_bad("r.io/a:.x", "tag \".x\" is invalid");
    expect_bad("r.io/a:-x", "tag \"-x\" is invalid");
    expect_bad("r.io/a:x/y", "invalid");
    expect_bad("r.io/a:x:y", "invalid");
    /* The grammar is ASCII: no locale may widen it. */
    expect_bad("r.io/a:caf\xc3\xa9", "tag \"caf??\" is invalid");
    expect_bad("r\xc3\xa9.io/a", "registry host \"r??.io\" is invalid");
}

MV_TEST(digests_are_checked)
{
    expect_bad("r.io/a@sha256:abc", "digest \"sha256:abc\"");
    expect_bad("r.io/a@", "empty digest");
    expect_bad("r.io/a@md5:900150983cd24fb0d6963f7d28e17f72", "unsupported algorithm");
    expect_bad("r.io/a@" D256 "@" D256, "digest");
    expect_bad("r.io/a@sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
               "lowercase hex");
}

MV_TEST(name_length_counts_the_registry)
{
    /* 255 in all with the registry: "r.io/" is 5, so 250 of path. */
    char ok[400], bad[400];
    memcpy(ok, "r.io/", 5);
    memset(ok + 5, 'a', 250);
    ok[255] = '\0';
    memcpy(bad, ok, 256);
    bad[255] = 'a';
    bad[256] = '\0';
    mv_error e = MV_ERROR_INIT;
    _cleanup_ref_ oci_ref *r = NULL;
    CHECK_INT(oci_ref_parse(ok, &r, &e), 0);
    expect_bad(bad, "is 256 characters, over the limit of 255");
    /* Hub names count as "docker.io/library/…" once normalised. */
    char hub[300];
    memset(hub, 'b', 240);
    hub[240] = '\0';
    expect_bad(hub, "over the limit of 255");
    /* Absurd input is refused before any other work. */
    char *huge = malloc(100000);
    memset(huge, 'a', 99999);
    huge[99999] = '\0';
    expect_bad(huge, "is longer than 4096 characters");
    free(huge);
}

MV_TEST(hex_id_is_not_a_name)
{
    expect_bad("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
               "is an ID, not a name");
}

MV_TEST(loopback_hosts)
{
    static const char *yes[] = {
        "localhost",      "localhost:5000", "LOCALHOST:1", "127.0.0.1", "127.0.0.1:5000",
        "127.255.0.9:80", "[::1]",          "[::1]:5000",  "::1",       "[0:0:0:0:0:0:0:1]:443"};
    static const char *no[] = {"",           "localhost.example.com",
                               "128.0.0.1",  "10.0.0.1:5000",
                               "[::2]:5000", "[::1]x",
                               "127.0.0.1:", "127.0.0.1:abc",
                               "127.1",      "localhost:0",
                               "ghcr.io",    "[127.0.0.1]:80",
                               "[::1"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (!oci_host_is_loopback(yes[i]))
            fprintf(stderr, "expected loopback: %s\n", yes[i]);
        CHECK(oci_host_is_loopback(yes[i]));
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        if (oci_host_is_loopback(no[i]))
            fprintf(stderr, "expected not loopback: %s\n", no[i]);
        CHECK(!oci_host_is_loopback(no[i]));
    }
    CHECK(!oci_host_is_loopback(NULL));
}

int main(void)
{
    MV_RUN(good_references_normalise);
    MV_RUN(uppercase_repository_is_named);
    MV_RUN(empty_and_invalid_components_are_rejected);
    MV_RUN(bad_hosts_are_named);
    MV_RUN(tags_are_checked);
    MV_RUN(digests_are_checked);
    MV_RUN(name_length_counts_the_registry);
    MV_RUN(hex_id_is_not_a_name);
    MV_RUN(loopback_hosts);
    MV_DONE();
}
