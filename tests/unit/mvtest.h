/* mvtest.h — a minimal unit-test harness: CHECK macros that report file and
 * line, a runner that counts, and exit codes ctest understands (0 pass,
 * 1 fail, 77 skip). Each test file defines its cases with MV_TEST and lists
 * them in main with MV_RUN. */
#ifndef MODELVOL_MVTEST_H
#define MODELVOL_MVTEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int mvt_failures;
static int mvt_cases;
static int mvt_case_failed;

#define MV_TEST(name) static void name(void)

#define MV_RUN(name)                                                                               \
    do {                                                                                           \
        mvt_case_failed = 0;                                                                       \
        mvt_cases++;                                                                               \
        name();                                                                                    \
        printf("%s %s\n", mvt_case_failed ? "FAIL" : "ok  ", #name);                               \
        if (mvt_case_failed)                                                                       \
            mvt_failures++;                                                                        \
    } while (0)

#define MV_DONE()                                                                                  \
    do {                                                                                           \
        printf("%d passed, %d failed\n", mvt_cases - mvt_failures, mvt_failures);                  \
        return mvt_failures ? 1 : 0;                                                               \
    } while (0)

#define MV_SKIP(why)                                                                               \
    do {                                                                                           \
        printf("SKIP: %s\n", why);                                                                 \
        exit(77);                                                                                  \
    } while (0)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            mvt_case_failed = 1;                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long _a = (long long)(a), _b = (long long)(b);                                        \
        if (_a != _b) {                                                                            \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a,    \
                    _a, #b, _b);                                                                   \
            mvt_case_failed = 1;                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *_a = (a), *_b = (b);                                                           \
        if (!_a || !_b || strcmp(_a, _b) != 0) {                                                   \
            fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a,      \
                    _a ? _a : "(null)", _b ? _b : "(null)");                                       \
            mvt_case_failed = 1;                                                                   \
        }                                                                                          \
    } while (0)

/* The message contains needle. */
#define CHECK_CONTAINS(hay, needle)                                                                \
    do {                                                                                           \
        const char *_h = (hay), *_n = (needle);                                                    \
        if (!_h || !strstr(_h, _n)) {                                                              \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__,         \
                    _h ? _h : "(null)", _n);                                                       \
            mvt_case_failed = 1;                                                                   \
        }                                                                                          \
    } while (0)

#endif
