/* test_challenge.c — the WWW-Authenticate parser: quoting, escapes, commas
 * inside quoted values, several challenges, and malformed headers. */
#include "mvtest.h"
#include "puller.h"

MV_TEST(bearer_full)
{
    pull_challenge ch;
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(pull_challenge_parse("Bearer realm=\"https://auth.docker.io/token\","
                                   "service=\"registry.docker.io\","
                                   "scope=\"repository:library/ubuntu:pull,push\"",
                                   &ch, &err),
              0);
    CHECK_STR(ch.scheme, "Bearer");
    CHECK_STR(ch.realm, "https://auth.docker.io/token");
    CHECK_STR(ch.service, "registry.docker.io");
    CHECK_STR(ch.scope, "repository:library/ubuntu:pull,push");
    CHECK(ch.error == NULL);
    pull_challenge_clear(&ch);
}

MV_TEST(spaces_case_and_tokens)
{
    pull_challenge ch;
    CHECK_INT(pull_challenge_parse(
                  "  bearer   Realm = \"r\" ,  SERVICE=svc,error=insufficient_scope", &ch, NULL),
              0);
    CHECK_STR(ch.scheme, "bearer");
    CHECK_STR(ch.realm, "r");
    CHECK_STR(ch.service, "svc");
    CHECK_STR(ch.error, "insufficient_scope");
    pull_challenge_clear(&ch);
}

MV_TEST(escapes)
{
    pull_challenge ch;
    CHECK_INT(pull_challenge_parse("Bearer realm=\"a\\\"b\\\\c\",scope=\"x,y\"", &ch, NULL), 0);
    CHECK_STR(ch.realm, "a\"b\\c");
    CHECK_STR(ch.scope, "x,y");
    pull_challenge_clear(&ch);
}

MV_TEST(basic_and_second_challenge)
{
    pull_challenge ch;
    CHECK_INT(
        pull_challenge_parse("Basic realm=\"Registry Realm\", Bearer realm=\"other\"", &ch, NULL),
        0);
    CHECK_STR(ch.scheme, "Basic");
    CHECK_STR(ch.realm, "Registry Realm");
    pull_challenge_clear(&ch);
    CHECK_INT(pull_challenge_parse("Basic", &ch, NULL), 0);
    CHECK_STR(ch.scheme, "Basic");
    CHECK(ch.realm == NULL);
    pull_challenge_clear(&ch);
}

MV_TEST(duplicates_keep_first)
{
    pull_challenge ch;
    CHECK_INT(pull_challenge_parse("Bearer realm=\"one\",realm=\"two\"", &ch, NULL), 0);
    CHECK_STR(ch.realm, "one");
    pull_challenge_clear(&ch);
}

MV_TEST(malformed)
{
    pull_challenge ch;
    mv_error err = MV_ERROR_INIT;
    CHECK(pull_challenge_parse("", &ch, &err) == -EINVAL);
    CHECK_CONTAINS(err.msg, "WWW-Authenticate");
    CHECK(pull_challenge_parse("Bearer realm=\"unterminated", &ch, &err) == -EINVAL);
    CHECK_CONTAINS(err.msg, "unterminated");
    CHECK(pull_challenge_parse("Bearer realm=\"x\\", &ch, &err) == -EINVAL);
    CHECK(pull_challenge_parse("Bearer realm=\"x\" junk\"", &ch, &err) == -EINVAL);
    CHECK(pull_challenge_parse("=x", &ch, &err) == -EINVAL);
    CHECK(pull_challenge_parse(NULL, &ch, &err) == -EINVAL);
    char big[9000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CHECK(pull_challenge_parse(big, &ch, &err) == -EINVAL);
}

int main(void)
{
    MV_RUN(bearer_full);
    MV_RUN(spaces_case_and_tokens);
    MV_RUN(escapes);
    MV_RUN(basic_and_second_challenge);
    MV_RUN(duplicates_keep_first);
    MV_RUN(malformed);
    MV_DONE();
}
