/* http.c — pull_http_do: one authenticated registry request, shared by
 * manifest fetch, blob resolution and upload. It picks the endpoint (mirrors
 * first for pulls), learns a loopback registry's scheme, answers auth
 * challenges once, follows redirects by hand so the Authorization header
 * never reaches another host, streams request bodies from memory or an fd,
 * and keeps a bounded amount of the response. */
#include "puller-internal.h"

#include <string.h>
#include <strings.h>

#define MAX_REDIRECTS 5

typedef struct body_src {
    const pull_http_req *req;
    uint64_t pos;
    uint64_t len;
    bool io_error;
} body_src;

typedef struct resp_sink {
    pull_http_resp *resp;
    CURL *h;
    size_t max;
    bool exact;
    bool judged; /* max/exact adjusted to the status */
    bool overflow;
} resp_sink;

static size_t body_read(char *buf, size_t size, size_t nmemb, void *ud)
{
    body_src *b = ud;
    size_t want = size * nmemb;
    if (b->pos >= b->len)
        return 0;
    if (want > b->len - b->pos)
        want = (size_t)(b->len - b->pos);
    if (b->req->body == PULL_BODY_MEM) {
        memcpy(buf, (const char *)b->req->mem + b->pos, want);
        b->pos += want;
        return want;
    }
    ssize_t r;
    do
        r = pread(b->req->fd, buf, want, (off_t)(b->req->fd_off + b->pos));
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
        /* A short file under an upload is an error, not an early end. */
        b->io_error = true;
        return CURL_READFUNC_ABORT;
    }
    b->pos += (uint64_t)r;
    return (size_t)r;
}

static int body_seek(void *ud, curl_off_t offset, int origin)
{
    body_src *b = ud;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > b->len)
        return CURL_SEEKFUNC_CANTSEEK;
    b->pos = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

static size_t resp_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    resp_sink *s = ud;
    pull_http_resp *r = s->resp;
    size_t len = size * nmemb;
    if (!s->judged) {
        /* The caller's limits are for the content it asked for; a redirect
         * or an error page is only kept for its message, and never fails
         * the request for being long. */
        long st = 0;
        curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &st);
        if (st < 200 || st >= 300) {
            s->exact = false;
            if (s->max > PULL_HTTP_BODY_DEFAULT)
                s->max = PULL_HTTP_BODY_DEFAULT;
        }
        s->judged = true;
    }
    if (r->body_len + len > s->max) {
        s->overflow = true;
        /* Stop reading: the rest is not wanted (or is an error). */
        size_t keep = s->max - r->body_len;
        if (keep) {
            r->body = mv_xrealloc(r->body, r->body_len + keep + 1);
            memcpy(r->body + r->body_len, ptr, keep);
            r->body_len += keep;
            r->body[r->body_len] = '\0';
        }
        return 0;
    }
    r->body = mv_xrealloc(r->body, r->body_len + len + 1);
    memcpy(r->body + r->body_len, ptr, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return len;
}

static void take_header(char **dst, const char *v, size_t n)
{
    free(*dst);
    *dst = mv_xstrndup(v, n);
}

static size_t resp_header(char *buf, size_t size, size_t nmemb, void *ud)
{
    resp_sink *s = ud;
    pull_http_resp *r = s->resp;
    size_t len = size * nmemb;
    if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        /* A new response (after 100 Continue): forget the previous one's. */
        char *keep_url = r->url;
        size_t keep_ep = r->endpoint;
        char keep_host[sizeof(r->host)];
        memcpy(keep_host, r->host, sizeof(keep_host));
        r->url = NULL;
        pull_http_resp_clear(r);
        r->url = keep_url;
        r->endpoint = keep_ep;
        memcpy(r->host, keep_host, sizeof(keep_host));
        return len;
    }
    const char *colon = memchr(buf, ':', len);
    if (!colon)
        return len;
    size_t nlen = (size_t)(colon - buf);
    const char *v = colon + 1;
    const char *end = buf + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t vlen = (size_t)(end - v);
    static const struct {
        const char *name;
        size_t off;
    } wanted[] = {
        {"location", offsetof(pull_http_resp, location)},
        {"range", offsetof(pull_http_resp, range)},
        {"content-range", offsetof(pull_http_resp, content_range)},
        {"docker-content-digest", offsetof(pull_http_resp, docker_content_digest)},
        {"content-type", offsetof(pull_http_resp, content_type)},
        {"docker-upload-uuid", offsetof(pull_http_resp, docker_upload_uuid)},
        {"www-authenticate", offsetof(pull_http_resp, www_authenticate)},
        {"retry-after", offsetof(pull_http_resp, retry_after)},
    };
    for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
        if (strlen(wanted[i].name) == nlen && strncasecmp(buf, wanted[i].name, nlen) == 0) {
            char **slot = (char **)((char *)r + wanted[i].off);
            /* Keep the first challenge: registries put the one to use first. */
            if (!(*slot && wanted[i].off == offsetof(pull_http_resp, www_authenticate)))
                take_header(slot, v, vlen);
            return len;
        }
    }
    if (nlen == 14 && strncasecmp(buf, "content-length", 14) == 0) {
        r->content_length = strtoull(v, NULL, 10);
        r->has_content_length = true;
    }
    return len;
}

void pull_http_resp_clear(pull_http_resp *r)
{
    if (!r)
        return;
    free(r->location);
    free(r->range);
    free(r->content_range);
    free(r->docker_content_digest);
    free(r->content_type);
    free(r->docker_upload_uuid);
    free(r->www_authenticate);
    free(r->retry_after);
    free(r->body);
    free(r->url);
    memset(r, 0, sizeof(*r));
}

static bool is_absolute(const char *p)
{
    return strncasecmp(p, "http://", 7) == 0 || strncasecmp(p, "https://", 8) == 0;
}

/* Whether url goes to one of the client's registry endpoints. */
static bool to_endpoint(const pull_client *c, const char *url)
{
    _cleanup_free_ char *hp = pull_url_hostport(url);
    for (size_t i = 0; hp && i < c->n_ep; i++)
        if (strcmp(hp, c->ep[i].hostport) == 0)
            return true;
    return false;
}

/* Sends one HTTP request to url and fills resp. Returns the CURLcode; a
 * body over the limit when not exact counts as success (truncated). */
static CURLcode send_once(pull_client *c, const pull_http_req *req, const char *url,
                          const char *auth, pull_http_resp *resp, bool *overflow)
{
    _cleanup_(pull_curl_easy_freep) CURL *h = curl_easy_init();
    if (!h)
        return CURLE_OUT_OF_MEMORY;
    pull_curl_setup(c, h, url);
    if (c->tenant && !to_endpoint(c, url)) {
        /* A redirect target (blob storage): a socket left idle there would
         * count against the node's budget for that host while nobody
         * holds a slot for it. */
        curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    }
    _cleanup_(pull_slist_freep) struct curl_slist *hl = NULL;
    for (const char *const *p = req->headers; p && *p; p++)
        hl = curl_slist_append(hl, *p);
    _cleanup_free_ char *ct =
        req->content_type ? mv_xasprintf("Content-Type: %s", req->content_type) : NULL;
    if (ct)
        hl = curl_slist_append(hl, ct);
    if (auth)
        hl = curl_slist_append(hl, auth);
    /* No 100-continue round trip: registries answer uploads directly. */
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);

    body_src src = {.req = req};
    if (req->body == PULL_BODY_MEM)
        src.len = req->mem_len;
    else if (req->body == PULL_BODY_FD)
        src.len = req->fd_len;
    const char *m = req->method ? req->method : "GET";
    bool sends_body = req->body != PULL_BODY_NONE;
    if (strcmp(m, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(m, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)src.len);
        sends_body = true;
    } else if (strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)src.len);
        if (strcmp(m, "PATCH") == 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PATCH");
        sends_body = true;
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, m);
    }
    if (sends_body) {
        curl_easy_setopt(h, CURLOPT_READFUNCTION, body_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &src);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, body_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, &src);
    }
    resp_sink sink = {.resp = resp,
                      .h = h,
                      .max = req->body_max ? req->body_max : PULL_HTTP_BODY_DEFAULT,
                      .exact = req->body_exact};
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, resp_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &sink);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, resp_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    CURLcode cc = pull_sync_perform(c, h);
    c->stats.requests++;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    *overflow = sink.overflow && sink.exact;
    if (cc == CURLE_WRITE_ERROR && sink.overflow && !sink.exact) {
        resp->body_truncated = true;
        cc = CURLE_OK;
    }
    if (src.io_error && cc == CURLE_OK)
        cc = CURLE_READ_ERROR;
    return cc;
}

static bool is_redirect(long s)
{
    return s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
}

/* The request against one endpoint (or an absolute URL owned by ep). */
static int do_endpoint(pull_client *c, const pull_http_req *req, size_t ep, const char *scope,
                       pull_http_resp *resp, mv_error *err)
{
    pull_endpoint *e = &c->ep[ep];
    const char *m = req->method ? req->method : "GET";
    bool absolute = is_absolute(req->path);
    bool can_follow = req->follow && (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0);
    int auth_round = 0, hops = 0;
    _cleanup_free_ char *url =
        absolute ? mv_xstrdup(req->path) : pull_endpoint_url(c, ep, req->path);
    for (;;) {
        pull_http_resp_clear(resp);
        _cleanup_free_ char *hp = pull_url_hostport(url);
        if (!hp)
            return mv_error_set(err, -EINVAL, "%s: not an http(s) URL", url);
        /* The registry's Authorization goes to the registry only. */
        bool same_host = strcmp(hp, e->hostport) == 0;
        _cleanup_(pull_wipe_freep) char *auth = same_host ? pull_auth_header(c, ep, scope) : NULL;
        resp->url = mv_xstrdup(url);
        resp->endpoint = ep;
        snprintf(resp->host, sizeof(resp->host), "%s", hp);
        bool overflow = false;
        CURLcode cc = send_once(c, req, url, auth, resp, &overflow);
        if (cc != CURLE_OK) {
            if (cc == CURLE_ABORTED_BY_CALLBACK)
                return mv_error_set(err, -ECANCELED, "%s %s: cancelled", m, hp);
            if (overflow)
                return mv_error_set(err, -EBADMSG, "%s %s: response body larger than %zu bytes", m,
                                    hp, req->body_max ? req->body_max : PULL_HTTP_BODY_DEFAULT);
            /* A certificate we do not trust is an answer, not a registry
             * that lacks TLS: no fallback then. */
            bool tls_answered = cc == CURLE_PEER_FAILED_VERIFICATION ||
                                cc == CURLE_SSL_CACERT_BADFILE || cc == CURLE_SSL_CERTPROBLEM;
            if (same_host && hops == 0 && e->try_plain && !tls_answered &&
                strcmp(e->scheme, "https") == 0) {
                /* A loopback registry that does not speak TLS: like
                 * containerd, fall back to plain HTTP once. */
                free(e->scheme);
                e->scheme = mv_xstrdup("http");
                e->try_plain = false;
                if (!absolute) {
                    free(url);
                    url = pull_endpoint_url(c, ep, req->path);
                } else if (strncasecmp(url, "https://", 8) == 0) {
                    char *u = mv_xasprintf("http://%s", url + 8);
                    free(url);
                    url = u;
                }
                continue;
            }
            return mv_error_set(err, pull_curl_errno(cc), "%s %s: %s", m, hp,
                                curl_easy_strerror(cc));
        }
        if (same_host)
            e->try_plain = false; /* the scheme is settled */
        if (resp->location) {
            char *abs_loc = pull_url_resolve(url, resp->location);
            free(resp->location);
            resp->location = abs_loc;
        }
        if (resp->status == 401 && same_host) {
            if (auth_round >= 1 || !resp->www_authenticate) {
                mv_error_set(err, -EACCES, "%s %s: 401 from %s%s", m, req->path, hp,
                             auth_round ? " after refreshing credentials" : "");
                err->http_status = 401;
                return -EACCES;
            }
            if (auth)
                pull_auth_forget(c, ep, scope);
            int rc = pull_auth_handle_401(c, ep, resp->www_authenticate, scope, err);
            if (rc < 0) {
                if (err && !err->http_status)
                    err->http_status = 401;
                return rc;
            }
            auth_round++;
            continue;
        }
        if (can_follow && is_redirect(resp->status) && resp->location) {
            if (++hops > MAX_REDIRECTS)
                return mv_error_set(err, -ELOOP, "%s %s: more than %d redirects from %s", m,
                                    req->path, MAX_REDIRECTS, hp);
            free(url);
            url = mv_xstrdup(resp->location);
            continue;
        }
        return 0;
    }
}

int pull_http_do(pull_client *c, const pull_http_req *req, pull_http_resp *resp, mv_error *err)
{
    memset(resp, 0, sizeof(*resp));
    _cleanup_free_ char *scope = pull_scope(c, req->actions);
    if (req->extra_scope) {
        /* Space-separated: one token cache key, and one scope parameter
         * each in the token request (auth.c). */
        char *both = mv_xasprintf("%s %s", scope, req->extra_scope);
        free(scope);
        scope = both;
    }
    if (is_absolute(req->path)) {
        /* An upload Location or a storage URL: auth only if it is one of
         * our endpoints. */
        _cleanup_free_ char *hp = pull_url_hostport(req->path);
        size_t ep = c->origin;
        for (size_t i = 0; hp && i < c->n_ep; i++)
            if (strcmp(c->ep[i].hostport, hp) == 0) {
                ep = i;
                break;
            }
        return do_endpoint(c, req, ep, scope, resp, err);
    }
    const char *m = req->method ? req->method : "GET";
    bool mirrors = req->use_mirrors && (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0);
    for (size_t i = 0; i < c->n_ep; i++) {
        if (c->ep[i].is_mirror && !mirrors)
            continue;
        if (!c->ep[i].is_mirror)
            return do_endpoint(c, req, i, scope, resp, err);
        mv_error merr = MV_ERROR_INIT;
        int rc = do_endpoint(c, req, i, scope, resp, &merr);
        if (rc == -ECANCELED) {
            mv_error_copy(err, &merr);
            return rc;
        }
        if (rc == 0 && resp->status < 400)
            return 0;
        /* A mirror that fails or lacks the content: fall back to the next,
         * then to the origin. */
        if (c->opt.on_event) {
            char msg[MV_ERROR_MSG_MAX + 512];
            if (rc < 0)
                snprintf(msg, sizeof(msg), "mirror %s: %s", c->ep[i].hostport, merr.msg);
            else
                snprintf(msg, sizeof(msg), "mirror %s: %ld", c->ep[i].hostport, resp->status);
            pull_event ev = {.kind = PULL_EV_RETRY, .message = msg};
            c->opt.on_event(c->opt.event_ctx, &ev);
        }
        pull_http_resp_clear(resp);
    }
    return mv_error_set(err, -EIO, "no endpoint for %s", c->refname);
}

static const char *oci_error_message(const pull_http_resp *r, char *buf, size_t len)
{
    /* {"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}:
     * take the code without a JSON parser; it is only decoration. */
    if (!r->body || !r->body_len)
        return NULL;
    const char *p = strstr(r->body, "\"code\"");
    if (!p)
        return NULL;
    p = strchr(p + 6, '"');
    if (!p)
        return NULL;
    p++;
    size_t n = 0;
    while (p[n] && p[n] != '"' && n + 1 < len && ((p[n] >= 'A' && p[n] <= 'Z') || p[n] == '_'))
        n++;
    if (!n || p[n] != '"')
        return NULL;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

int pull_http_status_error(const pull_http_resp *resp, mv_error *err, const char *what)
{
    long s = resp->status;
    int code;
    if (s == 404)
        code = -ENOENT;
    else if (s == 401)
        code = -EACCES;
    else if (s == 403)
        code = -EPERM;
    else if (s >= 500 || s == 429)
        code = -EIO;
    else
        code = -EINVAL;
    char ocode[64];
    const char *oc = oci_error_message(resp, ocode, sizeof(ocode));
    mv_error_set(err, code, "%s: %ld%s%s%s from %s", what, s, oc ? " (" : "", oc ? oc : "",
                 oc ? ")" : "", resp->host[0] ? resp->host : "registry");
    if (err)
        err->http_status = (int)s;
    return code;
}
