/* client.c — the pull_client: one per (registry, repository). Builds the
 * endpoint list (mirrors from the config in order, then the origin), owns
 * the curl multi handles and shared caches, and holds the small transport
 * helpers every request path uses (URLs, TLS settings, backoff). */
#include "puller-internal.h"

#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Fills ep from a mirror string "scheme://host[:port][/prefix]". */
static void endpoint_from_mirror(pull_client *c, const char *m, pull_endpoint *e)
{
    const char *p = m;
    const char *scheme = NULL;
    if (strncmp(p, "http://", 7) == 0) {
        scheme = "http";
        p += 7;
    } else if (strncmp(p, "https://", 8) == 0) {
        scheme = "https";
        p += 8;
    }
    size_t hn = strcspn(p, "/");
    e->hostport = mv_xstrndup(p, hn);
    const char *prefix = p + hn;
    size_t pn = strlen(prefix);
    while (pn && prefix[pn - 1] == '/')
        pn--;
    /* "https://mirror/v2" names the API root, as some hosts.toml files do. */
    if (pn >= 3 && strncmp(prefix + pn - 3, "/v2", 3) == 0)
        pn -= 3;
    e->prefix = mv_xstrndup(prefix, pn);
    e->is_mirror = true;
    e->send_creds = strcmp(e->hostport, c->ref_api_host) == 0;
    e->tls = pull_config_host(c->opt.config, e->hostport);
    bool plain = e->tls && e->tls->plain_http;
    if (scheme) {
        e->scheme = mv_xstrdup(scheme);
    } else if (plain) {
        e->scheme = mv_xstrdup("http");
    } else {
        e->scheme = mv_xstrdup("https");
        e->try_plain = oci_host_is_loopback(e->hostport);
    }
}

int pull_connections_parse(const char *what, const char *s, int *out, mv_error *err)
{
    return mv_parse_int(what, s, PULL_CONNECTIONS_MIN, PULL_CONNECTIONS_MAX, out, err);
}

/* The download loop's multi handle. Ranges need separate TCP connections:
 * no multiplexing, no pipelining, and every connection of the pull may go to
 * the same host. */
static CURLM *multi_new(const pull_client *c)
{
    CURLM *m = curl_multi_init();
    if (!m)
        return NULL;
    curl_multi_setopt(m, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)c->opt.connections);
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)c->opt.connections);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)c->opt.connections + 4);
    return m;
}

int pull_client_new(const oci_ref *ref, const pull_options *opt, pull_client **out, mv_error *err)
{
    *out = NULL;
    if (!ref || !ref->registry || !ref->repository)
        return mv_error_set(err, -EINVAL, "pull client: incomplete reference");
    if (opt && opt->connections != 0 &&
        (opt->connections < PULL_CONNECTIONS_MIN || opt->connections > PULL_CONNECTIONS_MAX))
        return mv_error_set(err, -EINVAL, "pull client: %d connections: expected %d to %d",
                            opt->connections, PULL_CONNECTIONS_MIN, PULL_CONNECTIONS_MAX);
    pthread_once(&curl_once, curl_init_once);
    pull_client *c = mv_xcalloc(1, sizeof(*c));
    if (opt)
        c->opt = *opt;
    if (c->opt.connections == 0)
        c->opt.connections = PULL_CONNECTIONS_DEFAULT;
    if (!c->opt.chunk_size)
        c->opt.chunk_size = PULL_DEFAULT_CHUNK;
    if (c->opt.chunk_size < (uint64_t)64 * 1024)
        c->opt.chunk_size = (uint64_t)64 * 1024;
    if (!c->opt.range_threshold)
        c->opt.range_threshold = PULL_DEFAULT_THRESHOLD;
    if (c->opt.stall_seconds <= 0)
        c->opt.stall_seconds = PULL_DEFAULT_STALL;
    if (c->opt.max_retries <= 0)
        c->opt.max_retries = PULL_DEFAULT_RETRIES;
    c->registry = mv_xstrdup(ref->registry);
    c->ref_api_host = mv_xstrdup(ref->api_host ? ref->api_host : ref->registry);
    c->repository = mv_xstrdup(ref->repository);
    c->refname = mv_xasprintf("%s/%s", ref->registry, ref->repository);
    c->hostcfg = pull_config_host(c->opt.config, ref->registry);
    if (!c->hostcfg)
        c->hostcfg = pull_config_host(c->opt.config, c->ref_api_host);
    int crc = pull_creds_resolve(c->opt.creds, ref->registry, ref->repository, &c->cred, err);
    if (crc < 0) {
        pull_client_free(c);
        return crc;
    }

    size_t nm = c->hostcfg ? c->hostcfg->n_mirrors : 0;
    c->ep = mv_xcalloc(nm + 1, sizeof(*c->ep));
    for (size_t i = 0; i < nm; i++)
        endpoint_from_mirror(c, c->hostcfg->mirrors[i], &c->ep[c->n_ep++]);
    pull_endpoint *o = &c->ep[c->n_ep];
    c->origin = c->n_ep++;
    o->hostport = mv_xstrdup(c->ref_api_host);
    o->prefix = mv_xstrdup("");
    o->send_creds = true;
    o->tls = c->hostcfg;
    if (c->opt.plain_http || (c->hostcfg && c->hostcfg->plain_http)) {
        o->scheme = mv_xstrdup("http");
    } else {
        o->scheme = mv_xstrdup("https");
        o->try_plain = oci_host_is_loopback(o->hostport);
    }

    c->share = curl_share_init();
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    c->sync = curl_multi_init();
    c->multi = multi_new(c);
    if (!c->share || !c->sync || !c->multi) {
        pull_client_free(c);
        return mv_error_set(err, -ENOMEM, "pull client: curl initialisation failed");
    }
    curl_multi_setopt(c->sync, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
    if (c->opt.budget)
        c->tenant = pull_budget_join(c->opt.budget, c->opt.priority, c->opt.connections);
    *out = c;
    return 0;
}

void pull_client_reset_multi(pull_client *c)
{
    CURLM *m = multi_new(c);
    if (!m)
        return; /* the old one stays: its idle sockets only cost the budget's count */
    curl_multi_cleanup(c->multi);
    c->multi = m;
}

void pull_client_free(pull_client *c)
{
    if (!c)
        return;
    for (pull_token *t = c->tokens, *next; t; t = next) {
        next = t->next;
        free(t->scope);
        if (t->token) {
            explicit_bzero(t->token, strlen(t->token));
            free(t->token);
        }
        free(t);
    }
    for (size_t i = 0; i < c->n_ep; i++) {
        pull_endpoint *e = &c->ep[i];
        free(e->hostport);
        free(e->prefix);
        free(e->scheme);
        free(e->auth_scheme);
        free(e->realm);
        free(e->service);
    }
    free(c->ep);
    if (c->multi)
        curl_multi_cleanup(c->multi);
    if (c->sync)
        curl_multi_cleanup(c->sync);
    if (c->share)
        curl_share_cleanup(c->share);
    pull_budget_leave(c->tenant);
    pull_cred_clear(&c->cred);
    free(c->registry);
    free(c->ref_api_host);
    free(c->repository);
    free(c->refname);
    free(c);
}

void pull_client_stats(const pull_client *c, pull_stats *out)
{
    *out = c->stats;
}

char *pull_scope(const pull_client *c, const char *actions)
{
    return mv_xasprintf("repository:%s:%s", c->repository, actions ? actions : "pull");
}

char *pull_endpoint_url(const pull_client *c, size_t ep, const char *path)
{
    const pull_endpoint *e = &c->ep[ep];
    if (path[0] == '/')
        return mv_xasprintf("%s://%s%s%s", e->scheme, e->hostport, e->prefix, path);
    return mv_xasprintf("%s://%s%s/v2/%s/%s", e->scheme, e->hostport, e->prefix, c->repository,
                        path);
}

char *pull_url_hostport(const char *url)
{
    const char *p;
    const char *defport;
    if (strncasecmp(url, "https://", 8) == 0) {
        p = url + 8;
        defport = "443";
    } else if (strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
        defport = "80";
    } else {
        return NULL;
    }
    size_t n = strcspn(p, "/?#");
    const char *at = memchr(p, '@', n);
    if (at) {
        n -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    if (n == 0)
        return NULL;
    char *hp = mv_xstrndup(p, n);
    /* Drop a default port so "h:443" and "h" compare equal. */
    char *colon = strrchr(hp, ':');
    if (colon && !strchr(colon, ']') && strcmp(colon + 1, defport) == 0)
        *colon = '\0';
    for (char *q = hp; *q; q++)
        if (*q >= 'A' && *q <= 'Z')
            *q = (char)(*q - 'A' + 'a');
    return hp;
}

char *pull_url_resolve(const char *base, const char *location)
{
    if (strncasecmp(location, "http://", 7) == 0 || strncasecmp(location, "https://", 8) == 0)
        return mv_xstrdup(location);
    const char *sep = strstr(base, "://");
    if (!sep)
        return mv_xstrdup(location);
    if (location[0] == '/' && location[1] == '/') {
        return mv_xasprintf("%.*s:%s", (int)(sep - base), base, location);
    }
    const char *hostend = sep + 3 + strcspn(sep + 3, "/?#");
    if (location[0] == '/')
        return mv_xasprintf("%.*s%s", (int)(hostend - base), base, location);
    /* Relative to the base's directory. */
    const char *q = hostend + strcspn(hostend, "?#");
    const char *slash = q;
    while (slash > hostend && slash[-1] != '/')
        slash--;
    if (slash == hostend)
        return mv_xasprintf("%.*s/%s", (int)(hostend - base), base, location);
    return mv_xasprintf("%.*s%s", (int)(slash - base), base, location);
}

void pull_curl_setup(pull_client *c, CURL *h, const char *url)
{
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_SHARE, c->share);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_USERAGENT, PULL_USER_AGENT);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_PIPEWAIT, 0L);
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L * 1024);
    /* A stall: under 1 byte/s for stall_seconds aborts with
     * CURLE_OPERATION_TIMEDOUT, which callers treat as transient. */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)c->opt.stall_seconds);
    /* No CA directory: libcurl caches the parsed CA file per multi handle
     * only when none is set, and Debian's libcurl sets /etc/ssl/certs by
     * default. Without the cache every connection parsed the bundle again:
     * 17 parses and about 0.6 s of CPU for a 16-connection pull with the
     * system's 145 roots. The bundle holds the same roots as the directory. */
    curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
    _cleanup_free_ char *hp = pull_url_hostport(url);
    const pull_host_config *tls = pull_config_host(c->opt.config, hp);
    if (!tls && hp && strcmp(hp, c->ref_api_host) == 0)
        tls = c->hostcfg;
    if (tls) {
        if (tls->ca_file)
            curl_easy_setopt(h, CURLOPT_CAINFO, tls->ca_file);
        if (tls->cert_file) {
            curl_easy_setopt(h, CURLOPT_SSLCERT, tls->cert_file);
            curl_easy_setopt(h, CURLOPT_SSLKEY, tls->key_file);
        }
        if (tls->insecure_skip_verify) {
            curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
            curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
        }
    }
}

static bool cancelled(const pull_client *c)
{
    return c->opt.cancel && *c->opt.cancel;
}

CURLcode pull_sync_perform(pull_client *c, CURL *h)
{
    if (curl_multi_add_handle(c->sync, h) != CURLM_OK)
        return CURLE_FAILED_INIT;
    CURLcode result = CURLE_OK;
    bool done = false;
    while (!done) {
        if (cancelled(c)) {
            result = CURLE_ABORTED_BY_CALLBACK;
            break;
        }
        int running = 0;
        if (curl_multi_perform(c->sync, &running) != CURLM_OK) {
            result = CURLE_FAILED_INIT;
            break;
        }
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(c->sync, &left))) {
            if (m->msg == CURLMSG_DONE && m->easy_handle == h) {
                result = m->data.result;
                done = true;
            }
        }
        if (!done && running)
            curl_multi_poll(c->sync, NULL, 0, 500, NULL);
        else if (!done && !running)
            done = true;
    }
    curl_multi_remove_handle(c->sync, h);
    return result;
}

long pull_retry_after(const char *value)
{
    if (!value)
        return -1;
    while (*value == ' ')
        value++;
    char *end;
    long v = strtol(value, &end, 10);
    if (end != value && (*end == '\0' || *end == ' ' || *end == '\r'))
        return v < 0 ? 0 : v;
    time_t t = curl_getdate(value, NULL);
    if (t < 0)
        return -1;
    time_t now = time(NULL);
    return t > now ? (long)(t - now) : 0;
}

static uint64_t rand64(void)
{
    static __thread uint64_t s;
    if (!s) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&s;
    }
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

uint64_t pull_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t pull_backoff_ms(int attempt, long min_seconds)
{
    /* Full jitter over an exponential cap: 200 ms, 400 ms, ... 30 s. */
    uint64_t cap = 200ull << (attempt < 8 ? attempt : 8);
    if (cap > 30000)
        cap = 30000;
    uint64_t ms = cap / 2 + rand64() % (cap / 2 + 1);
    if (min_seconds > 0 && (uint64_t)min_seconds * 1000 > ms)
        ms = (uint64_t)(min_seconds > 60 ? 60 : min_seconds) * 1000;
    return ms;
}

void pull_backoff_sleep(const pull_client *c, int attempt, long min_seconds)
{
    uint64_t ms = pull_backoff_ms(attempt, min_seconds);
    while (ms > 0 && !cancelled(c)) {
        uint64_t step = ms > 100 ? 100 : ms;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

int pull_curl_errno(CURLcode rc)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_ABORTED_BY_CALLBACK:
        return -ECANCELED;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        return -EPROTO;
    default:
        return -EIO;
    }
}
