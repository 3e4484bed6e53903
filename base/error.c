/* error.c — the mv_error message chain, and allocation helpers that abort
 * rather than hand NULL to callers that could not recover anyway. */
#include "mv.h"

#include <stdarg.h>
#include <string.h>

static int vset(mv_error *err, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static int vset(mv_error *err, int code, const char *fmt, va_list ap)
{
    if (code >= 0)
        code = -EIO; /* a failure must never look like success */
    if (!err)
        return code;
    err->code = code;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    return code;
}

int mv_error_set(mv_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vset(err, code, fmt, ap);
    va_end(ap);
    if (err)
        err->http_status = 0;
    return r;
}

int mv_error_errno(mv_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vset(err, code, fmt, ap);
    va_end(ap);
    if (err) {
        err->http_status = 0;
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(-r));
    }
    return r;
}

int mv_error_wrap(mv_error *err, const char *fmt, ...)
{
    if (!err)
        return -EIO;
    if (err->code >= 0)
        err->code = -EIO;
    char prefix[MV_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    /* Keep the outermost context when the chain overflows: it names what the
     * user asked for, which matters more than the deepest detail. */
    char joined[MV_ERROR_MSG_MAX];
    size_t cap = sizeof(joined) - 1;
    size_t n = strnlen(prefix, cap);
    memcpy(joined, prefix, n);
    for (const char *sep = ": "; *sep && n < cap; sep++)
        joined[n++] = *sep;
    size_t rest = strnlen(err->msg, sizeof(err->msg));
    if (rest > cap - n)
        rest = cap - n;
    memcpy(joined + n, err->msg, rest);
    joined[n + rest] = '\0';
    memcpy(err->msg, joined, sizeof(err->msg));
    return err->code;
}

void mv_error_clear(mv_error *err)
{
    if (!err)
        return;
    err->code = 0;
    err->http_status = 0;
    err->msg[0] = '\0';
}

void mv_error_copy(mv_error *dst, const mv_error *src)
{
    if (!dst)
        return;
    if (!src) {
        mv_error_clear(dst);
        return;
    }
    *dst = *src;
}

static void oom(size_t n) __attribute__((noreturn));
static void oom(size_t n)
{
    fprintf(stderr, "modelvol: out of memory allocating %zu bytes\n", n);
    abort();
}

void *mv_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *mv_xcalloc(size_t n, size_t m)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p)
        oom(n * m);
    return p;
}

void *mv_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *mv_xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        oom(strlen(s) + 1);
    return p;
}

char *mv_xstrndup(const char *s, size_t n)
{
    char *p = strndup(s, n);
    if (!p)
        oom(n + 1);
    return p;
}

char *mv_xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *out = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&out, fmt, ap);
    va_end(ap);
    if (n < 0)
        oom(0);
    return out;
}
