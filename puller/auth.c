/* auth.c — registry authentication: the Authorization header for a request
 * (Basic, or a cached Bearer token for the scope), and the answer to a 401:
 * parse the challenge, fetch a token from the realm (GET with Basic
 * credentials, or the OAuth2 refresh-token POST when config.json holds an
 * identitytoken, as docker does), cache it per scope until it expires.
 * Credentials go only to the origin (or a mirror on the same host:port) and
 * its token realm; no secret is ever put in an error message. */
#include "puller-internal.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <strings.h>

#define TOKEN_BODY_MAX (1u << 20)

static void set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = src ? mv_xstrdup(src) : NULL;
}

static pull_token *find_token(pull_client *c, size_t ep, const char *scope)
{
    time_t now = time(NULL);
    for (pull_token *t = c->tokens; t; t = t->next)
        if (t->endpoint == ep && strcmp(t->scope, scope) == 0 && t->expires > now)
            return t;
    return NULL;
}

static const pull_cred *endpoint_cred(pull_client *c, size_t ep)
{
    const pull_cred *cr = &c->cred;
    bool any = cr->username || cr->password || cr->identity_token;
    return c->ep[ep].send_creds && any ? cr : NULL;
}

static char *b64_encode(const char *in, size_t len)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = mv_xmalloc((len + 2) / 3 * 4 + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)(unsigned char)in[i + 1] << 8;
        if (i + 2 < len)
            v |= (uint32_t)(unsigned char)in[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = (char)(i + 1 < len ? tbl[(v >> 6) & 63] : '=');
        out[o++] = (char)(i + 2 < len ? tbl[v & 63] : '=');
    }
    out[o] = '\0';
    return out;
}

char *pull_auth_header(pull_client *c, size_t ep, const char *scope)
{
    pull_endpoint *e = &c->ep[ep];
    if (!e->auth_scheme)
        return NULL;
    if (strcasecmp(e->auth_scheme, "Bearer") == 0) {
        pull_token *t = find_token(c, ep, scope);
        if (!t && strstr(scope, ":pull") && !strstr(scope, "push")) {
            /* A push token covers pull. */
            _cleanup_free_ char *wider = mv_xasprintf("%s,push", scope);
            t = find_token(c, ep, wider);
        }
        return t ? mv_xasprintf("Authorization: Bearer %s", t->token) : NULL;
    }
    const pull_cred *cr = endpoint_cred(c, ep);
    if (strcasecmp(e->auth_scheme, "Basic") == 0 && cr && cr->username && cr->password) {
        char *raw = mv_xasprintf("%s:%s", cr->username, cr->password);
        char *enc = b64_encode(raw, strlen(raw));
        pull_wipe_free(raw);
        char *h = mv_xasprintf("Authorization: Basic %s", enc);
        pull_wipe_free(enc);
        return h;
    }
    return NULL;
}

void pull_auth_forget(pull_client *c, size_t ep, const char *scope)
{
    for (pull_token **pp = &c->tokens; *pp;) {
        pull_token *t = *pp;
        if (t->endpoint == ep && (!scope || strcmp(t->scope, scope) == 0)) {
            *pp = t->next;
            free(t->scope);
            pull_wipe_free(t->token);
            free(t);
        } else {
            pp = &t->next;
        }
    }
}

typedef struct membuf {
    char *p;
    size_t n;
    bool over;
} membuf;

static size_t membuf_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    membuf *b = ud;
    size_t len = size * nmemb;
    if (b->n + len > TOKEN_BODY_MAX) {
        b->over = true;
        return 0;
    }
    b->p = mv_xrealloc(b->p, b->n + len + 1);
    memcpy(b->p + b->n, ptr, len);
    b->n += len;
    b->p[b->n] = '\0';
    return len;
}

static void membuf_wipe(membuf *b)
{
    if (b->p) {
        explicit_bzero(b->p, b->n);
        free(b->p);
    }
    b->p = NULL;
}

/* The distinct scopes in the space-separated `all`, escaped: as repeated
 * query parameters (*params) and as one space-separated value (*list). */
static void scope_params(CURL *h, const char *all, char **params, char **list)
{
    _cleanup_free_ char *copy = mv_xstrdup(all);
    _cleanup_free_ char *seen = mv_xstrdup(" "); /* " a b ": the scopes so far */
    *params = mv_xstrdup("");
    *list = mv_xstrdup("");
    char *save = NULL;
    for (char *s = strtok_r(copy, " ", &save); s; s = strtok_r(NULL, " ", &save)) {
        _cleanup_free_ char *key = mv_xasprintf(" %s ", s);
        if (strstr(seen, key))
            continue;
        char *more = mv_xasprintf("%s%s ", seen, s);
        free(seen);
        seen = more;
        _cleanup_free_ char *esc = curl_easy_escape(h, s, 0);
        char *p = mv_xasprintf("%s%sscope=%s", *params, **params ? "&" : "", esc);
        char *l = mv_xasprintf("%s%s%s", *list, **list ? "%20" : "", esc);
        free(*params);
        free(*list);
        *params = p;
        *list = l;
    }
}

/* GET realm?service=&scope= (Basic with the credential when there is one),
 * or the OAuth2 POST with the identity token. Stores the token. */
static int fetch_token(pull_client *c, size_t ep, const char *scope, const char *chal_scope,
                       bool allow_oauth, mv_error *err)
{
    pull_endpoint *e = &c->ep[ep];
    _cleanup_free_ char *realm_host = pull_url_hostport(e->realm);
    if (!realm_host)
        return mv_error_set(err, -EPROTO, "%s: token realm is not an http(s) URL", e->hostport);
    const pull_cred *cr = endpoint_cred(c, ep);
    _cleanup_(pull_curl_easy_freep) CURL *h = curl_easy_init();
    if (!h)
        return mv_error_set(err, -ENOMEM, "token request: curl_easy_init failed");
    _cleanup_free_ char *svc = e->service ? curl_easy_escape(h, e->service, 0) : NULL;
    /* Ours, then any the challenge adds: both may list several, separated
     * by spaces (a mount needs the source's too). */
    _cleanup_free_ char *all =
        chal_scope && *chal_scope ? mv_xasprintf("%s %s", scope, chal_scope) : mv_xstrdup(scope);
    _cleanup_free_ char *params = NULL; /* "scope=a&scope=b", for the GET */
    _cleanup_free_ char *list = NULL;   /* "a b", the OAuth2 form's one scope */
    scope_params(h, all, &params, &list);
    bool oauth = allow_oauth && cr && cr->identity_token;
    _cleanup_free_ char *url = NULL;
    char *form = NULL; /* holds the refresh token: wiped below */
    _cleanup_(pull_slist_freep) struct curl_slist *hdrs = NULL;
    if (oauth) {
        _cleanup_free_ char *rt = curl_easy_escape(h, cr->identity_token, 0);
        url = mv_xstrdup(e->realm);
        form = mv_xasprintf("grant_type=refresh_token&client_id=modelvol&access_type=offline"
                            "&refresh_token=%s%s%s&scope=%s",
                            rt, svc ? "&service=" : "", svc ? svc : "", list);
        explicit_bzero(rt, strlen(rt));
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, form);
        hdrs = curl_slist_append(hdrs, "Content-Type: application/x-www-form-urlencoded");
    } else {
        url = mv_xasprintf("%s%s%s%s%s", e->realm, strchr(e->realm, '?') ? "&" : "?", params,
                           svc ? "&service=" : "", svc ? svc : "");
        if (cr && cr->username && cr->password) {
            curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
            curl_easy_setopt(h, CURLOPT_USERNAME, cr->username);
            curl_easy_setopt(h, CURLOPT_PASSWORD, cr->password);
        }
    }
    pull_curl_setup(c, h, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    _cleanup_(membuf_wipe) membuf body = {0};
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, membuf_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    CURLcode cc = pull_sync_perform(c, h);
    c->stats.requests++;
    if (form) {
        explicit_bzero(form, strlen(form));
        free(form);
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK)
        return mv_error_set(err, pull_curl_errno(cc), "token from %s: %s", realm_host,
                            body.over ? "response too large" : curl_easy_strerror(cc));
    if (oauth && (status == 404 || status == 405)) {
        /* Not every token server speaks OAuth2; the distribution spec says
         * to use the GET form then. */
        return fetch_token(c, ep, scope, chal_scope, false, err);
    }
    if (status == 401 || status == 403) {
        int code = status == 401 ? -EACCES : -EPERM;
        mv_error_set(err, code, "token from %s: %ld (%s)", realm_host, status,
                     cr ? "credentials rejected" : "anonymous access refused");
        if (err)
            err->http_status = (int)status;
        return code;
    }
    if (status != 200) {
        mv_error_set(err, status >= 500 ? -EIO : -EACCES, "token from %s: %ld", realm_host, status);
        if (err)
            err->http_status = (int)status;
        return err ? err->code : -EIO;
    }
    cJSON *j = cJSON_ParseWithLength(body.p ? body.p : "", body.n);
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(j, "token");
    if (!cJSON_IsString(tok) || !tok->valuestring[0])
        tok = cJSON_GetObjectItemCaseSensitive(j, "access_token");
    if (!cJSON_IsString(tok) || !tok->valuestring[0]) {
        cJSON_Delete(j);
        return mv_error_set(err, -EPROTO, "token from %s: response has no token", realm_host);
    }
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(j, "expires_in");
    long expires_in = cJSON_IsNumber(exp) && exp->valuedouble > 0 ? (long)exp->valuedouble : 60;
    pull_auth_forget(c, ep, scope);
    pull_token *t = mv_xcalloc(1, sizeof(*t));
    t->endpoint = ep;
    t->scope = mv_xstrdup(scope);
    t->token = mv_xstrdup(tok->valuestring);
    explicit_bzero(tok->valuestring, strlen(tok->valuestring));
    /* Renew a little early so a token does not expire mid-request. */
    t->expires = time(NULL) + (expires_in > 20 ? expires_in - 10 : expires_in);
    t->next = c->tokens;
    c->tokens = t;
    cJSON_Delete(j);
    return 0;
}

int pull_auth_handle_401(pull_client *c, size_t ep, const char *www_authenticate, const char *scope,
                         mv_error *err)
{
    pull_endpoint *e = &c->ep[ep];
    pull_challenge ch;
    int rc = pull_challenge_parse(www_authenticate, &ch, err);
    if (rc < 0)
        return mv_error_wrap(err, "401 from %s", e->hostport);
    set_str(&e->auth_scheme, ch.scheme);
    if (strcasecmp(ch.scheme, "Basic") == 0) {
        pull_challenge_clear(&ch);
        const pull_cred *cr = endpoint_cred(c, ep);
        if (!cr || !cr->username || !cr->password)
            return mv_error_set(err, -EACCES,
                                "401 from %s: authentication required and no "
                                "credentials for %s",
                                e->hostport, c->registry);
        return 0;
    }
    if (strcasecmp(ch.scheme, "Bearer") != 0) {
        mv_error_set(err, -EACCES, "401 from %s: unsupported auth scheme \"%s\"", e->hostport,
                     ch.scheme);
        pull_challenge_clear(&ch);
        return -EACCES;
    }
    if (!ch.realm) {
        pull_challenge_clear(&ch);
        return mv_error_set(err, -EACCES, "401 from %s: Bearer challenge without a realm",
                            e->hostport);
    }
    set_str(&e->realm, ch.realm);
    set_str(&e->service, ch.service);
    rc = fetch_token(c, ep, scope, ch.scope, true, err);
    pull_challenge_clear(&ch);
    return rc;
}
