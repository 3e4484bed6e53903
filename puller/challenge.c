/* challenge.c — parses a WWW-Authenticate header (RFC 7235 auth-params:
 * tokens, quoted strings with backslash escapes, commas inside quotes) into
 * the first challenge's scheme, realm, service, scope and error. */
#include "puller-internal.h"

#include <string.h>
#include <strings.h>

/* Headers above this are hostile or broken; nothing legitimate is close. */
#define CHALLENGE_MAX 8192

static bool is_tchar(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

static const char *read_token(const char *p, const char *end)
{
    while (p < end && is_tchar(*p))
        p++;
    return p;
}

/* Reads a quoted-string starting at the opening quote into a new string. */
static int read_quoted(const char **pp, const char *end, char **out, mv_error *err)
{
    const char *p = *pp + 1;
    _cleanup_free_ char *buf = mv_xmalloc((size_t)(end - p) + 1);
    size_t n = 0;
    for (;;) {
        if (p >= end)
            return mv_error_set(err, -EINVAL, "WWW-Authenticate: unterminated quoted string");
        if (*p == '"')
            break;
        if (*p == '\\') {
            p++;
            if (p >= end)
                return mv_error_set(err, -EINVAL, "WWW-Authenticate: dangling escape");
        }
        if (*p == '\0' || *p == '\r' || *p == '\n')
            return mv_error_set(err, -EINVAL, "WWW-Authenticate: control character in value");
        buf[n++] = *p++;
    }
    buf[n] = '\0';
    *pp = p + 1;
    *out = MV_STEAL(buf);
    return 0;
}

static char **param_slot(pull_challenge *ch, const char *name, size_t len)
{
    static const struct {
        const char *name;
        size_t off;
    } known[] = {
        {"realm", offsetof(pull_challenge, realm)},
        {"service", offsetof(pull_challenge, service)},
        {"scope", offsetof(pull_challenge, scope)},
        {"error", offsetof(pull_challenge, error)},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strlen(known[i].name) == len && strncasecmp(known[i].name, name, len) == 0)
            return (char **)((char *)ch + known[i].off);
    return NULL;
}

int pull_challenge_parse(const char *header, pull_challenge *out, mv_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!header)
        return mv_error_set(err, -EINVAL, "WWW-Authenticate: missing");
    size_t hlen = strnlen(header, CHALLENGE_MAX + 1);
    if (hlen > CHALLENGE_MAX)
        return mv_error_set(err, -EINVAL, "WWW-Authenticate: longer than %d bytes", CHALLENGE_MAX);
    const char *end = header + hlen;
    const char *p = skip_ws(header, end);
    const char *s = p;
    p = read_token(p, end);
    if (p == s)
        return mv_error_set(err, -EINVAL, "WWW-Authenticate: no auth scheme");
    pull_challenge ch = {.scheme = mv_xstrndup(s, (size_t)(p - s))};

    while (p < end) {
        p = skip_ws(p, end);
        while (p < end && (*p == ',' || *p == ' ' || *p == '\t'))
            p++;
        if (p >= end)
            break;
        const char *name = p;
        p = read_token(p, end);
        size_t nlen = (size_t)(p - name);
        if (nlen == 0) {
            pull_challenge_clear(&ch);
            return mv_error_set(err, -EINVAL, "WWW-Authenticate: unexpected character '%c'",
                                *p >= 0x20 && *p < 0x7f ? *p : '?');
        }
        const char *q = skip_ws(p, end);
        if (q >= end || *q != '=') {
            /* A token68 or the next challenge's scheme: the first challenge
             * ends here. */
            break;
        }
        q = skip_ws(q + 1, end);
        if (q < end && *q == '=') {
            /* "token68==" style padding after a scheme: not a parameter. */
            break;
        }
        char *value = NULL;
        if (q < end && *q == '"') {
            int rc = read_quoted(&q, end, &value, err);
            if (rc < 0) {
                pull_challenge_clear(&ch);
                return rc;
            }
        } else {
            const char *v = q;
            q = read_token(q, end);
            value = mv_xstrndup(v, (size_t)(q - v));
        }
        p = q;
        char **slot = param_slot(&ch, name, nlen);
        if (slot && !*slot)
            *slot = value;
        else
            free(value);
        p = skip_ws(p, end);
        if (p < end && *p != ',') {
            pull_challenge_clear(&ch);
            return mv_error_set(err, -EINVAL, "WWW-Authenticate: expected ',' after parameter");
        }
    }
    *out = ch;
    return 0;
}

void pull_challenge_clear(pull_challenge *ch)
{
    if (!ch)
        return;
    free(ch->scheme);
    free(ch->realm);
    free(ch->service);
    free(ch->scope);
    free(ch->error);
    memset(ch, 0, sizeof(*ch));
}
