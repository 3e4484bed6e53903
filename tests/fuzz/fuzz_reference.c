/* fuzz_reference.c — libFuzzer target for the string parsers of liboci:
 * references above all, plus digests, relative paths, size strings and the
 * loopback test, which take the same kind of untrusted one-line input.
 * Asserts the invariants callers rely on, not just "no crash". */
#include "oci.h"

#include <string.h>

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static bool one_line(const mv_error *e)
{
    return e->msg[0] && !strchr(e->msg, '\n') && strlen(e->msg) < MV_ERROR_MSG_MAX;
}

static void check_ref(const char *s)
{
    mv_error e = MV_ERROR_INIT;
    _cleanup_ref_ oci_ref *r = NULL;
    int rc = oci_ref_parse(s, &r, &e);
    if (rc < 0) {
        ASSERT(rc == -EINVAL && r == NULL && one_line(&e));
        return;
    }
    ASSERT(r && r->registry && r->api_host && r->repository && *r->repository);
    ASSERT(r->tag || r->digest);
    ASSERT(!r->tag || strlen(r->tag) <= OCI_TAG_MAX);
    ASSERT(!r->digest || oci_digest_validate(r->digest, NULL) == 0);
    ASSERT(strlen(r->registry) + 1 + strlen(r->repository) <= OCI_NAME_MAX);
    for (const char *p = r->repository; *p; p++)
        ASSERT(!(*p >= 'A' && *p <= 'Z'));
    ASSERT(!strstr(r->repository, "//") && r->repository[0] != '/');
    if (strcmp(r->registry, OCI_DOCKER_HUB) == 0)
        ASSERT(strcmp(r->api_host, OCI_DOCKER_HUB_API) == 0 && strchr(r->repository, '/'));
    else
        ASSERT(strcmp(r->api_host, r->registry) == 0);

    /* The canonical string is a fixed point. */
    _cleanup_free_ char *canon = oci_ref_string(r);
    _cleanup_ref_ oci_ref *r2 = NULL;
    rc = oci_ref_parse(canon, &r2, &e);
    if (rc < 0) {
        fprintf(stderr, "canonical \"%s\" does not parse: %s\n", canon, e.msg);
        abort();
    }
    _cleanup_free_ char *canon2 = oci_ref_string(r2);
    ASSERT(strcmp(canon, canon2) == 0);
    ASSERT(strcmp(r->registry, r2->registry) == 0 && strcmp(r->repository, r2->repository) == 0);
    (void)oci_host_is_loopback(r->registry);
}

static void check_path(const char *s)
{
    mv_error e = MV_ERROR_INIT;
    _cleanup_free_ char *p = NULL;
    if (oci_path_normalize(s, &p, &e) < 0) {
        ASSERT(p == NULL && one_line(&e));
        return;
    }
    /* Normalised paths are relative, clean, and normalise to themselves. */
    ASSERT(*p && p[0] != '/' && p[strlen(p) - 1] != '/');
    ASSERT(!strstr(p, "//") && strcmp(p, ".") != 0 && strncmp(p, "./", 2) != 0);
    for (const char *c = p; c; c = strchr(c, '/') ? strchr(c, '/') + 1 : NULL)
        ASSERT(strncmp(c, "../", 3) != 0 && strcmp(c, "..") != 0 && strncmp(c, "./", 2) != 0 &&
               strcmp(c, ".") != 0);
    _cleanup_free_ char *again = NULL;
    ASSERT(oci_path_normalize(p, &again, &e) == 0 && strcmp(p, again) == 0);
}

static void check_size(const char *s)
{
    mv_error e = MV_ERROR_INIT;
    uint64_t v = 0;
    if (mv_parse_size(s, &v, &e) < 0) {
        ASSERT(one_line(&e));
        return;
    }
    /* The printed form parses back to within its one decimal of rounding;
     * only the very top rounds up to "16 EiB", one past what fits. */
    char buf[32];
    uint64_t back = 0;
    mv_format_size(v, buf, sizeof(buf));
    if (mv_parse_size(buf, &back, &e) < 0) {
        ASSERT(strcmp(buf, "16 EiB") == 0);
        return;
    }
    if (v >= 1024)
        ASSERT((double)back / (double)v > 0.95 && (double)back / (double)v < 1.05);
    else
        ASSERT(back == v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Not strndup: the input is not NUL-terminated, and strict string
     * checking rightly objects to reading it as a string. */
    _cleanup_free_ char *s = mv_xmalloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    check_ref(s);
    check_path(s);
    check_size(s);
    mv_error e = MV_ERROR_INIT;
    if (oci_digest_validate(s, &e) < 0)
        ASSERT(one_line(&e));
    (void)oci_host_is_loopback(s);
    return 0;
}
