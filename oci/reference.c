/* reference.c — image references: parsing [host[:port]/]path[:tag][@digest]
 * by the distribution reference grammar, Docker Hub normalisation, the
 * canonical string form, and the loopback test for registry hosts. */
#include "oci.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

/* No sane reference comes near this; it bounds the work on hostile input
 * before any finer check runs. */
#define REF_INPUT_MAX 4096

void oci_ref_free(oci_ref *ref)
{
    if (!ref)
        return;
    free(ref->registry);
    free(ref->api_host);
    free(ref->repository);
    free(ref->tag);
    free(ref->digest);
    free(ref);
}

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* ASCII only, whatever the process locale: the grammar is ASCII. */
static bool is_alnum(char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_word(char c)
{
    return is_alnum(c) || c == '_';
}

/* A port is 1..65535 in decimal, without sign or leading junk. */
static bool valid_port(const char *p, size_t n)
{
    if (n == 0 || n > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

/* domain-component: [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9] */
static bool valid_domain_name(const char *h, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && h[i] != '.') {
            if (!is_alnum(h[i]) && h[i] != '-')
                return false;
            continue;
        }
        if (i == start || h[start] == '-' || h[i - 1] == '-')
            return false;
        start = i + 1;
    }
    return true;
}

/* host[:port], host being a domain name, IPv4, or [IPv6] without zone. */
static bool valid_host(const char *h, size_t n)
{
    if (n == 0)
        return false;
    size_t host_len = n;
    if (h[0] == '[') {
        const char *close = memchr(h, ']', n);
        if (!close || close == h + 1)
            return false;
        for (const char *p = h + 1; p < close; p++)
            if (!is_hex(*p) && *p != ':')
                return false;
        host_len = (size_t)(close - h) + 1;
        if (host_len < n && h[host_len] != ':')
            return false;
    } else {
        const char *colon = memchr(h, ':', n);
        if (colon)
            host_len = (size_t)(colon - h);
        if (!valid_domain_name(h, host_len))
            return false;
    }
    if (host_len == n)
        return true;
    return valid_port(h + host_len + 1, n - host_len - 1);
}

/* path-component: [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)* */
static bool valid_component(const char *c, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (!is_lower_alnum(c[i]))
            return false;
        while (i < n && is_lower_alnum(c[i]))
            i++;
        if (i == n)
            return true;
        if (c[i] == '.') {
            i++;
        } else if (c[i] == '_') {
            i += (i + 1 < n && c[i + 1] == '_') ? 2 : 1;
        } else if (c[i] == '-') {
            while (i < n && c[i] == '-')
                i++;
        } else {
            return false;
        }
        if (i == n)
            return false; /* a separator must be followed by alphanumerics */
    }
    return n > 0;
}

static int check_repository(const char *input, const char *repo, mv_error *err)
{
    if (!*repo)
        return mv_error_set(err, -EINVAL, "reference \"%s\": repository is empty",
                            MV_QUOTED(input));
    for (const char *p = repo; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            return mv_error_set(err, -EINVAL,
                                "reference \"%s\": repository \"%s\" has uppercase letters",
                                MV_QUOTED(input), MV_QUOTED(repo));
    const char *c = repo;
    for (;;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 0)
            return mv_error_set(err, -EINVAL,
                                "reference \"%s\": repository \"%s\" has an empty path component",
                                MV_QUOTED(input), MV_QUOTED(repo));
        if (!valid_component(c, n)) {
            _cleanup_free_ char *comp = mv_xstrndup(c, n);
            return mv_error_set(err, -EINVAL,
                                "reference \"%s\": repository path component \"%s\" is invalid "
                                "(allowed: a-z 0-9 joined by '.', '_', '__' or '-')",
                                MV_QUOTED(input), MV_QUOTED(comp));
        }
        if (!slash)
            return 0;
        c = slash + 1;
    }
}

static int check_tag(const char *input, const char *tag, mv_error *err)
{
    size_t n = strlen(tag);
    if (n == 0)
        return mv_error_set(err, -EINVAL, "reference \"%s\": tag is empty", MV_QUOTED(input));
    if (n > OCI_TAG_MAX)
        return mv_error_set(err, -EINVAL,
                            "reference \"%s\": tag \"%s\" is %zu characters, over the limit of %d",
                            MV_QUOTED(input), MV_QUOTED(tag), n, OCI_TAG_MAX);
    bool ok = is_word(tag[0]);
    for (size_t i = 1; ok && i < n; i++)
        ok = is_word(tag[i]) || tag[i] == '.' || tag[i] == '-';
    if (!ok)
        return mv_error_set(err, -EINVAL,
                            "reference \"%s\": tag \"%s\" is invalid (allowed: [A-Za-z0-9_] then "
                            "[A-Za-z0-9_.-])",
                            MV_QUOTED(input), MV_QUOTED(tag));
    return 0;
}

/* Hosts compare case-insensitively; the Hub answers to several names. */
static char *normalize_registry(const char *h, size_t n)
{
    char *r = mv_xstrndup(h, n);
    for (char *p = r; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    if (strcmp(r, "index.docker.io") == 0 || strcmp(r, OCI_DOCKER_HUB_API) == 0) {
        free(r);
        r = mv_xstrdup(OCI_DOCKER_HUB);
    }
    return r;
}

/* The distribution rule: the first component names a host only if it could
 * not be a path component, i.e. has a '.' or ':', or is "localhost". */
static bool looks_like_host(const char *c, size_t n)
{
    return memchr(c, '.', n) || memchr(c, ':', n) || (n == 9 && memcmp(c, "localhost", 9) == 0) ||
           (n > 0 && c[0] == '[');
}

int oci_ref_parse(const char *s, oci_ref **out, mv_error *err)
{
    *out = NULL;
    if (!s || !*s)
        return mv_error_set(err, -EINVAL, "empty reference");
    size_t len = strnlen(s, REF_INPUT_MAX + 1);
    if (len > REF_INPUT_MAX)
        return mv_error_set(err, -EINVAL, "reference \"%s\" is longer than %d characters",
                            MV_QUOTED(s), REF_INPUT_MAX);

    _cleanup_free_ char *work = mv_xstrdup(s);
    _cleanup_free_ char *digest = NULL;
    _cleanup_free_ char *tag = NULL;

    char *at = strchr(work, '@');
    if (at) {
        *at = '\0';
        mv_error derr = MV_ERROR_INIT;
        if (oci_digest_validate(at + 1, &derr) < 0)
            return mv_error_set(err, -EINVAL, "reference \"%s\": %s", MV_QUOTED(s), derr.msg);
        digest = mv_xstrdup(at + 1);
    }

    /* The tag is after the last ':' that follows the last '/', so that
     * "host:5000/repo" keeps its port. */
    char *last_slash = strrchr(work, '/');
    char *colon = strrchr(last_slash ? last_slash : work, ':');
    if (colon) {
        *colon = '\0';
        int r = check_tag(s, colon + 1, err);
        if (r < 0)
            return r;
        tag = mv_xstrdup(colon + 1);
    }

    if (!*work)
        return mv_error_set(err, -EINVAL, "reference \"%s\": repository is empty", MV_QUOTED(s));
    /* A bare 64-hex name is an image ID, which distribution refuses as a
     * name so it cannot be mistaken for one. */
    if (strlen(work) == 64 && strspn(work, "0123456789abcdef") == 64)
        return mv_error_set(err, -EINVAL,
                            "reference \"%s\": a 64-character hex string is an ID, not a name",
                            MV_QUOTED(s));

    _cleanup_free_ char *registry = NULL;
    const char *path = work;
    char *slash = strchr(work, '/');
    if (slash && looks_like_host(work, (size_t)(slash - work))) {
        size_t hn = (size_t)(slash - work);
        if (!valid_host(work, hn)) {
            _cleanup_free_ char *host = mv_xstrndup(work, hn);
            return mv_error_set(err, -EINVAL, "reference \"%s\": registry host \"%s\" is invalid",
                                MV_QUOTED(s), MV_QUOTED(host));
        }
        registry = normalize_registry(work, hn);
        path = slash + 1;
    } else {
        registry = mv_xstrdup(OCI_DOCKER_HUB);
    }

    _cleanup_free_ char *repository = NULL;
    if (strcmp(registry, OCI_DOCKER_HUB) == 0 && *path && !strchr(path, '/'))
        repository = mv_xasprintf("library/%s", path);
    else
        repository = mv_xstrdup(path);
    int r = check_repository(s, repository, err);
    if (r < 0)
        return r;

    /* distribution counts the whole name, registry included. */
    size_t name_len = strlen(registry) + 1 + strlen(repository);
    if (name_len > OCI_NAME_MAX)
        return mv_error_set(err, -EINVAL,
                            "reference \"%s\": name \"%s/%s\" is %zu characters, over the limit "
                            "of %d",
                            MV_QUOTED(s), registry, MV_QUOTED(repository), name_len,
                            OCI_NAME_MAX);

    if (!tag && !digest)
        tag = mv_xstrdup("latest");

    oci_ref *ref = mv_xcalloc(1, sizeof(*ref));
    ref->api_host =
        mv_xstrdup(strcmp(registry, OCI_DOCKER_HUB) == 0 ? OCI_DOCKER_HUB_API : registry);
    ref->registry = MV_STEAL(registry);
    ref->repository = MV_STEAL(repository);
    ref->tag = MV_STEAL(tag);
    ref->digest = MV_STEAL(digest);
    *out = ref;
    return 0;
}

char *oci_ref_string(const oci_ref *ref)
{
    return mv_xasprintf("%s/%s%s%s%s%s", ref->registry, ref->repository, ref->tag ? ":" : "",
                        ref->tag ? ref->tag : "", ref->digest ? "@" : "",
                        ref->digest ? ref->digest : "");
}

static bool is_loopback_name(const char *h)
{
    if (strcasecmp(h, "localhost") == 0)
        return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, h, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, h, &a6) == 1)
        return memcmp(&a6, &in6addr_loopback, sizeof(a6)) == 0;
    return false;
}

bool oci_host_is_loopback(const char *host)
{
    if (!host || !*host || strlen(host) > 300)
        return false;
    char buf[301];
    const char *port = NULL;
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        if (!close)
            return false;
        size_t n = (size_t)(close - host - 1);
        memcpy(buf, host + 1, n);
        buf[n] = '\0';
        if (close[1] == ':')
            port = close + 2;
        else if (close[1])
            return false;
        /* Only an IPv6 address may be bracketed. */
        struct in6_addr a6;
        if (inet_pton(AF_INET6, buf, &a6) != 1)
            return false;
    } else {
        const char *colon = strchr(host, ':');
        if (colon && strchr(colon + 1, ':')) {
            snprintf(buf, sizeof(buf), "%s", host); /* bare IPv6, no port possible */
        } else {
            size_t n = colon ? (size_t)(colon - host) : strlen(host);
            memcpy(buf, host, n);
            buf[n] = '\0';
            if (colon)
                port = colon + 1;
        }
    }
    if (port && !valid_port(port, strlen(port)))
        return false;
    return is_loopback_name(buf);
}
