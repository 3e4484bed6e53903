/* test_size.c — size flags parsed with binary units, garbage and overflow
 * refused, and the human-readable form. */
#include "mv.h"
#include "mvtest.h"

static void expect_size(const char *in, uint64_t want)
{
    mv_error e = MV_ERROR_INIT;
    uint64_t v = 0;
    int r = mv_parse_size(in, &v, &e);
    if (r != 0)
        fprintf(stderr, "size \"%s\": %s\n", in, e.msg);
    CHECK_INT(r, 0);
    if (v != want)
        fprintf(stderr, "size \"%s\" = %llu, want %llu\n", in, (unsigned long long)v,
                (unsigned long long)want);
    CHECK(v == want);
}

static void expect_bad(const char *in, const char *needle)
{
    mv_error e = MV_ERROR_INIT;
    uint64_t v = 12345;
    CHECK_INT(mv_parse_size(in, &v, &e), -EINVAL);
    CHECK(v == 12345);
    CHECK_CONTAINS(e.msg, needle);
}

MV_TEST(parses_binary_units)
{
    expect_size("0", 0);
    expect_size("4096", 4096);
    expect_size("4096B", 4096);
    expect_size("16k", 16384);
    expect_size("16K", 16384);
    expect_size("64M", 64ull << 20);
    expect_size("64MiB", 64ull << 20);
    expect_size("64mb", 64ull << 20);
    expect_size("1.5G", 3ull << 29);
    expect_size("1.5GiB", 3ull << 29);
    expect_size("1.5 GiB", 3ull << 29);
    expect_size("2T", 2ull << 40);
    expect_size("1P", 1ull << 50);
    expect_size("15E", 15ull << 60);
    expect_size("0.5K", 512);
    expect_size("2.0", 2);
    expect_size("18446744073709551615", UINT64_MAX);
    expect_size("15.999999999999999999E", 18446744073709551614ull); /* floor, no overflow */
}

MV_TEST(rejects_garbage_and_overflow)
{
    expect_bad(NULL, "empty size");
    expect_bad("", "empty size");
    expect_bad("abc", "does not start with a digit");
    expect_bad("-1", "does not start with a digit");
    expect_bad(" 1", "does not start with a digit");
    expect_bad(".5G", "does not start with a digit");
    expect_bad("1.G", "no digits after '.'");
    expect_bad("1..5G", "no digits after '.'");
    expect_bad("12Q", "unknown unit \"Q\"");
    expect_bad("12MiBs", "unknown unit");
    expect_bad("12 M B", "unknown unit");
    expect_bad("1.5", "not a whole number of bytes");
    expect_bad("18446744073709551616", "too large");
    expect_bad("99999999999999999999999999", "too large");
    expect_bad("16E", "too large");
    expect_bad("17179869184G", "too large");
}

MV_TEST(formats_sizes)
{
    char buf[32];
    CHECK_STR(mv_format_size(0, buf, sizeof(buf)), "0 B");
    CHECK_STR(mv_format_size(1023, buf, sizeof(buf)), "1023 B");
    CHECK_STR(mv_format_size(1024, buf, sizeof(buf)), "1 KiB");
    CHECK_STR(mv_format_size(1536, buf, sizeof(buf)), "1.5 KiB");
    CHECK_STR(mv_format_size(3ull << 29, buf, sizeof(buf)), "1.5 GiB");
    CHECK_STR(mv_format_size(64ull << 20, buf, sizeof(buf)), "64 MiB");
    /* 1023.96 KiB rounds to 1024.0 and so becomes the next unit. */
    CHECK_STR(mv_format_size(1048535, buf, sizeof(buf)), "1 MiB");
    CHECK_STR(mv_format_size(UINT64_MAX, buf, sizeof(buf)), "16 EiB");
    /* Truncates rather than overflowing a small buffer. */
    char small[4];
    CHECK_STR(mv_format_size(3ull << 29, small, sizeof(small)), "1.5");
}

MV_TEST(format_then_parse_is_close)
{
    static const uint64_t vals[] = {1, 1000, 4096, 123456789, 5ull << 33, 1ull << 62};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        char buf[32];
        uint64_t back = 0;
        mv_error e = MV_ERROR_INIT;
        CHECK_INT(mv_parse_size(mv_format_size(vals[i], buf, sizeof(buf)), &back, &e), 0);
        /* One decimal of the unit: within 5% either way. */
        double ratio = (double)back / (double)vals[i];
        CHECK(ratio > 0.95 && ratio < 1.05);
    }
}

MV_TEST(parses_counts_in_range)
{
    uint64_t v = 0;
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(mv_parse_uint("--jobs", "4", 1, 64, &v, &e), 0);
    CHECK(v == 4);
    CHECK_INT(mv_parse_uint("--jobs", "64", 1, 64, &v, &e), 0);
    CHECK(v == 64);
    CHECK_INT(mv_parse_uint("--n", "18446744073709551615", 0, UINT64_MAX, &v, &e), 0);
    CHECK(v == UINT64_MAX);
    static const char *const bad[] = {"0", "65", "", "-1", "+4", " 4", "4 ", "4x", "0x10",
                                      "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 7;
        mv_error_clear(&e);
        CHECK_INT(mv_parse_uint("--jobs", bad[i], 1, 64, &v, &e), -EINVAL);
        CHECK(v == 7);
        CHECK(strstr(e.msg, "--jobs \"") == e.msg);
        CHECK(strstr(e.msg, "expected a number from 1 to 64") != NULL);
    }
    /* The value is quoted safely: no control characters reach the message. */
    mv_error_clear(&e);
    CHECK_INT(mv_parse_uint("--jobs", "4\n\x1b", 1, 64, &v, &e), -EINVAL);
    CHECK(strchr(e.msg, '\n') == NULL && strchr(e.msg, '\x1b') == NULL);
}

int main(void)
{
    MV_RUN(parses_binary_units);
    MV_RUN(rejects_garbage_and_overflow);
    MV_RUN(formats_sizes);
    MV_RUN(format_then_parse_is_close);
    MV_RUN(parses_counts_in_range);
    MV_DONE();
}
