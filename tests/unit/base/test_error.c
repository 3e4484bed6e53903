/* test_error.c — the mv_error chain: set, wrap, overflow, errno text. */
#include "mv.h"
#include "mvtest.h"

MV_TEST(set_and_wrap_build_a_chain)
{
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(mv_error_set(&e, -ENOENT, "404 from %s", "registry.example"), -ENOENT);
    CHECK_INT(mv_error_wrap(&e, "blob %s", "sha256:ab"), -ENOENT);
    CHECK_INT(mv_error_wrap(&e, "pull %s", "ghcr.io/x/y:v1"), -ENOENT);
    CHECK_STR(e.msg, "pull ghcr.io/x/y:v1: blob sha256:ab: 404 from registry.example");
}

MV_TEST(positive_code_never_looks_like_success)
{
    mv_error e = MV_ERROR_INIT;
    CHECK(mv_error_set(&e, 0, "x") < 0);
    CHECK(e.code < 0);
}

MV_TEST(errno_appends_strerror)
{
    mv_error e = MV_ERROR_INIT;
    mv_error_errno(&e, -ENOSPC, "write %s", "/cache/blob");
    CHECK_CONTAINS(e.msg, "write /cache/blob: No space left on device");
}

MV_TEST(overflow_keeps_outermost_context)
{
    mv_error e = MV_ERROR_INIT;
    char big[2000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    mv_error_set(&e, -EIO, "%s", big);
    mv_error_wrap(&e, "pull REF");
    CHECK(strncmp(e.msg, "pull REF: xxx", 13) == 0);
    CHECK(strlen(e.msg) == MV_ERROR_MSG_MAX - 1);
}

MV_TEST(null_error_is_allowed)
{
    CHECK_INT(mv_error_set(NULL, -EINVAL, "x"), -EINVAL);
}

int main(void)
{
    MV_RUN(set_and_wrap_build_a_chain);
    MV_RUN(positive_code_never_looks_like_success);
    MV_RUN(errno_appends_strerror);
    MV_RUN(overflow_keeps_outermost_context);
    MV_RUN(null_error_is_allowed);
    MV_DONE();
}
