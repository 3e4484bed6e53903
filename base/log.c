/* log.c — the one logger (the plugin and prewarm): one line per event on stderr, in
 * key=value form (logfmt), written with a single write so lines from
 * concurrent calls never interleave. Callers never pass secrets. */
#include <stdarg.h>
#include <string.h>
#include <stdatomic.h>
#include <time.h>

#include "mv.h"

#define MV_LOG_LINE_MAX 4096

static atomic_bool log_quiet;

void mv_log_set_quiet(bool quiet)
{
    atomic_store(&log_quiet, quiet);
}

/* Appends s to buf at *pos, never past cap - 1. */
static void put(char *buf, size_t cap, size_t *pos, const char *s, size_t n)
{
    if (*pos >= cap - 1)
        return;
    if (n > cap - 1 - *pos)
        n = cap - 1 - *pos;
    memcpy(buf + *pos, s, n);
    *pos += n;
}

static bool needs_quotes(const char *v)
{
    if (!*v)
        return true;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
            return true;
    return false;
}

static void put_value(char *buf, size_t cap, size_t *pos, const char *v)
{
    if (!needs_quotes(v)) {
        put(buf, cap, pos, v, strlen(v));
        return;
    }
    put(buf, cap, pos, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put(buf, cap, pos, esc, 2);
        } else if (*p == '\n') {
            put(buf, cap, pos, "\\n", 2);
        } else if (*p < ' ' || *p == 0x7f) {
            int n = snprintf(esc, sizeof(esc), "\\x%02x", *p);
            put(buf, cap, pos, esc, (size_t)n);
        } else {
            put(buf, cap, pos, (const char *)p, 1);
        }
    }
    put(buf, cap, pos, "\"", 1);
}

void mv_log_pairs(const char *level, const char *event, ...)
{
    if (atomic_load(&log_quiet) && strcmp(level, "warn") != 0 && strcmp(level, "error") != 0)
        return;
    char line[MV_LOG_LINE_MAX];
    size_t pos = 0;

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[64];
    size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ", ts.tv_nsec / 1000000);

    put(line, sizeof(line), &pos, "ts=", 3);
    put(line, sizeof(line), &pos, stamp, strlen(stamp));
    put(line, sizeof(line), &pos, " level=", 7);
    put_value(line, sizeof(line), &pos, level);
    put(line, sizeof(line), &pos, " event=", 7);
    put_value(line, sizeof(line), &pos, event);

    va_list ap;
    va_start(ap, event);
    for (;;) {
        const char *key = va_arg(ap, const char *);
        if (!key)
            break;
        const char *value = va_arg(ap, const char *);
        if (!value)
            continue;
        put(line, sizeof(line), &pos, " ", 1);
        put(line, sizeof(line), &pos, key, strlen(key));
        put(line, sizeof(line), &pos, "=", 1);
        put_value(line, sizeof(line), &pos, value);
    }
    va_end(ap);
    line[pos++] = '\n';

    /* One write: lines from concurrent calls stay whole. */
    ssize_t w = write(STDERR_FILENO, line, pos);
    (void)w;
}
