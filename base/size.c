/* size.c — numbers as people write them on a command line: byte counts
 * ("64M", "1.5GiB", "4096", printed back as "1.5 GiB"; units are binary)
 * and plain counts in a range ("--jobs 4"). */
#include "mv.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
#define N_UNITS (sizeof(units) / sizeof(units[0]))

/* "", "B", "K", "KB", "KiB" (any case) → its power of 1024, or -1. */
static int unit_power(const char *u)
{
    if (!*u || strcasecmp(u, "b") == 0)
        return 0;
    static const char letters[] = "kmgtpe";
    const char *l = strchr(letters, tolower((unsigned char)u[0]));
    if (!l)
        return -1;
    const char *rest = u + 1;
    if (*rest == 'i' || *rest == 'I')
        rest++;
    if (*rest == 'b' || *rest == 'B')
        rest++;
    if (*rest)
        return -1;
    return (int)(l - letters) + 1;
}

int mv_parse_size(const char *s, uint64_t *out, mv_error *err)
{
    if (!s || !*s)
        return mv_error_set(err, -EINVAL, "empty size");
    const char *p = s;
    unsigned __int128 whole = 0, frac = 0, frac_den = 1;
    if (!isdigit((unsigned char)*p))
        return mv_error_set(err, -EINVAL, "size \"%s\" does not start with a digit", MV_QUOTED(s));
    for (; isdigit((unsigned char)*p); p++) {
        whole = whole * 10 + (unsigned)(*p - '0');
        if (whole > UINT64_MAX)
            return mv_error_set(err, -EINVAL, "size \"%s\" is too large", MV_QUOTED(s));
    }
    bool has_frac = false;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return mv_error_set(err, -EINVAL, "size \"%s\" has no digits after '.'", MV_QUOTED(s));
        has_frac = true;
        /* Digits past the 18th cannot change the result by a whole byte
         * below 2^64 / 10^18 units; they are checked but not used. */
        for (int nd = 0; isdigit((unsigned char)*p); p++, nd++) {
            if (nd < 18) {
                frac = frac * 10 + (unsigned)(*p - '0');
                frac_den *= 10;
            }
        }
    }
    while (*p == ' ')
        p++;
    int power = unit_power(p);
    if (power < 0)
        return mv_error_set(err, -EINVAL,
                            "size \"%s\": unknown unit \"%s\" (use B, K, M, G, T, P or E)",
                            MV_QUOTED(s), MV_QUOTED(p));
    if (has_frac && frac != 0 && power == 0)
        return mv_error_set(err, -EINVAL, "size \"%s\" is not a whole number of bytes",
                            MV_QUOTED(s));
    unsigned __int128 mult = (unsigned __int128)1 << (10 * power);
    unsigned __int128 v = whole * mult + frac * mult / frac_den;
    if (v > UINT64_MAX)
        return mv_error_set(err, -EINVAL, "size \"%s\" is too large", MV_QUOTED(s));
    *out = (uint64_t)v;
    return 0;
}

const char *mv_format_size(uint64_t bytes, char *buf, size_t len)
{
    if (bytes < 1024) {
        snprintf(buf, len, "%llu B", (unsigned long long)bytes);
        return buf;
    }
    size_t u = 1;
    /* Tenths of the unit, rounded half up; step up a unit when rounding
     * reaches 1024 so we never print "1024.0 KiB". */
    unsigned __int128 tenths = 0;
    for (; u < N_UNITS; u++) {
        unsigned __int128 unit = (unsigned __int128)1 << (10 * u);
        tenths = ((unsigned __int128)bytes * 10 + unit / 2) / unit;
        if (tenths < 10240 || u == N_UNITS - 1)
            break;
    }
    unsigned long long t = (unsigned long long)tenths;
    if (t % 10 == 0)
        snprintf(buf, len, "%llu %s", t / 10, units[u]);
    else
        snprintf(buf, len, "%llu.%llu %s", t / 10, t % 10, units[u]);
    return buf;
}

int mv_parse_uint(const char *what, const char *s, uint64_t min, uint64_t max, uint64_t *out,
                  mv_error *err)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = s && *s >= '0' && *s <= '9' ? strtoull(s, &end, 10) : 0;
    if (!end || *end || errno || v < min || v > max)
        return mv_error_set(err, -EINVAL, "%s \"%s\": expected a number from %llu to %llu", what,
                            MV_QUOTED(s), (unsigned long long)min, (unsigned long long)max);
    *out = v;
    return 0;
}

int mv_parse_int(const char *what, const char *s, int min, int max, int *out, mv_error *err)
{
    uint64_t v = 0;
    int r =
        mv_parse_uint(what, s, min > 0 ? (uint64_t)min : 0, max > 0 ? (uint64_t)max : 0, &v, err);
    if (r == 0)
        *out = (int)v;
    return r;
}
