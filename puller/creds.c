/* creds.c — registry credentials from docker config.json content: the file
 * chain ($DOCKER_CONFIG/config.json, ~/.docker/config.json,
 * /var/lib/kubelet/config.json) or a .dockerconfigjson held in memory.
 * Entries give "auth" (base64 "user:password"), or username/password, and
 * optionally an identitytoken (an OAuth2 refresh token). Secrets are wiped on
 * free and never appear in an error message.
 *
 * Keys are matched as the kubelet matches them, which for a plain host is
 * what docker does: [scheme://]host[:port][/path]. A host may hold globs,
 * matched label by label ("*.example.com" matches "a.example.com", not
 * "example.com" nor "a.b.example.com"); the port must be the same (none
 * matches none); a path keeps the entry to repositories under it, on whole
 * segments. Docker's API suffixes "/v1/" and "/v2/" are not paths. Where
 * several entries match, the most specific wins: the longer path, then a
 * host without globs, then the earlier entry in the file chain.
 *
 * Files on the node may also name credential helpers ("credHelpers" per
 * host, "credsStore" for the rest); credhelper.c runs them. Content passed
 * in (a pod's Secret) may not: it would choose which program the plugin,
 * running as root, executes. Precedence, as docker: a host's helper, then
 * an "auths" entry, then the store. */
#include "puller-internal.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <string.h>
#include <sys/stat.h>

#define CREDS_MAX_BYTES (4 << 20)

typedef struct cred_key {
    char *host; /* lower case; Docker Hub's names become "docker.io" */
    char *port; /* "" when none */
    char *path; /* "" or a repository prefix, no slash at either end */
    bool glob;
} cred_key;

typedef struct cred_entry {
    cred_key key;
    pull_cred cred;
} cred_entry;

typedef struct cred_helper {
    cred_key key;
    char *helper;
} cred_helper;

struct pull_creds {
    cred_entry *v;
    size_t n;
    cred_helper *helpers; /* "credHelpers", from files only */
    size_t n_helpers;
    char *store; /* "credsStore" of the first file that names one */
};

static void key_clear(cred_key *k)
{
    free(k->host);
    free(k->port);
    free(k->path);
}

void pull_cred_clear(pull_cred *c)
{
    pull_wipe_free(c->username);
    pull_wipe_free(c->password);
    pull_wipe_free(c->identity_token);
    memset(c, 0, sizeof(*c));
}

void pull_creds_free(pull_creds *creds)
{
    if (!creds)
        return;
    for (size_t i = 0; i < creds->n; i++) {
        key_clear(&creds->v[i].key);
        pull_cred_clear(&creds->v[i].cred);
    }
    free(creds->v);
    for (size_t i = 0; i < creds->n_helpers; i++) {
        key_clear(&creds->helpers[i].key);
        free(creds->helpers[i].helper);
    }
    free(creds->helpers);
    free(creds->store);
    free(creds);
}

static bool is_docker_hub(const char *h)
{
    return strcmp(h, OCI_DOCKER_HUB) == 0 || strcmp(h, OCI_DOCKER_HUB_API) == 0 ||
           strcmp(h, "index.docker.io") == 0;
}

/* "https://index.docker.io/v1/" -> docker.io; "http://h:5000/v2/" -> h, 5000;
 * "*.example.com/team/" -> *.example.com (glob), path "team";
 * "[::1]:5000" -> [::1], 5000. */
static void parse_key(const char *key, cred_key *out)
{
    const char *p = key;
    if (strncmp(p, "https://", 8) == 0)
        p += 8;
    else if (strncmp(p, "http://", 7) == 0)
        p += 7;
    size_t n = strcspn(p, "/");
    const char *colon = NULL;
    if (p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (close && close + 1 < p + n && close[1] == ':')
            colon = close + 1;
    } else {
        colon = memchr(p, ':', n);
    }
    size_t hl = colon ? (size_t)(colon - p) : n;
    out->host = mv_xstrndup(p, hl);
    for (char *h = out->host; *h; h++)
        *h = (char)tolower((unsigned char)*h);
    out->port = colon ? mv_xstrndup(colon + 1, (size_t)(p + n - colon - 1)) : mv_xstrdup("");
    if (is_docker_hub(out->host)) {
        free(out->host);
        out->host = mv_xstrdup(OCI_DOCKER_HUB);
    }
    /* "[::1]" is an address, not a bracket expression. */
    out->glob = out->host[0] != '[' && strpbrk(out->host, "*?[") != NULL;
    const char *path = p + n;
    while (*path == '/')
        path++;
    size_t pl = strlen(path);
    while (pl && path[pl - 1] == '/')
        pl--;
    bool api = (pl == 2 && (strncmp(path, "v1", 2) == 0 || strncmp(path, "v2", 2) == 0));
    out->path = mv_xstrndup(path, api ? 0 : pl);
}

static bool host_matches(const cred_key *k, const char *host)
{
    if (!k->glob)
        return strcmp(k->host, host) == 0;
    const char *a = k->host, *b = host;
    for (;;) {
        size_t al = strcspn(a, "."), bl = strcspn(b, ".");
        char pa[256], pb[256];
        if (al >= sizeof(pa) || bl >= sizeof(pb))
            return false;
        memcpy(pa, a, al);
        pa[al] = '\0';
        memcpy(pb, b, bl);
        pb[bl] = '\0';
        if (fnmatch(pa, pb, 0) != 0)
            return false;
        a += al;
        b += bl;
        if (!*a || !*b)
            return !*a && !*b;
        a++;
        b++;
    }
}

static bool key_matches(const cred_key *k, const cred_key *target, const char *repository)
{
    if (strcmp(k->port, target->port) != 0 || !host_matches(k, target->host))
        return false;
    size_t pl = strlen(k->path);
    if (!pl)
        return true;
    return repository && strncmp(repository, k->path, pl) == 0 &&
           (repository[pl] == '\0' || repository[pl] == '/');
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Standard or URL-safe base64, padding optional. NULL when malformed. */
static char *b64_decode(const char *in, size_t *outlen)
{
    size_t len = strlen(in);
    char *out = mv_xmalloc(len / 4 * 3 + 4);
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '=')
            break;
        int v = b64val((unsigned char)in[i]);
        if (v < 0) {
            explicit_bzero(out, n);
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[n] = '\0';
    *outlen = n;
    return out;
}

static const char *str_item(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

static int add_entry(pull_creds *c, const char *key, const cJSON *o, const char *origin,
                     mv_error *err)
{
    if (!cJSON_IsObject(o))
        return mv_error_set(err, -EINVAL, "%s: auths entry \"%s\" is not an object", origin, key);
    pull_cred cr = {0};
    const char *auth = str_item(o, "auth");
    if (auth) {
        size_t n;
        char *dec = b64_decode(auth, &n);
        char *colon = dec ? memchr(dec, ':', n) : NULL;
        if (!colon || strlen(dec) != n) {
            pull_wipe_free(dec);
            /* Say which entry, never what it held. */
            return mv_error_set(err, -EINVAL,
                                "%s: auths entry \"%s\": \"auth\" is not base64 of user:password",
                                origin, key);
        }
        *colon = '\0';
        cr.username = mv_xstrdup(dec);
        cr.password = mv_xstrdup(colon + 1);
        pull_wipe_free(dec);
    } else {
        const char *u = str_item(o, "username"), *pw = str_item(o, "password");
        if (u)
            cr.username = mv_xstrdup(u);
        if (pw)
            cr.password = mv_xstrdup(pw);
    }
    const char *it = str_item(o, "identitytoken");
    if (it)
        cr.identity_token = mv_xstrdup(it);
    if (!cr.username && !cr.password && !cr.identity_token)
        return 0; /* e.g. an entry that only names a credsStore */
    c->v = mv_xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
    parse_key(key, &c->v[c->n].key);
    c->v[c->n].cred = cr;
    c->n++;
    return 0;
}

static int parse_helpers(pull_creds *c, const cJSON *root, const char *origin, mv_error *err)
{
    const cJSON *store = cJSON_GetObjectItemCaseSensitive(root, "credsStore");
    if (store && !(cJSON_IsString(store) &&
                   (!store->valuestring[0] || pull_credhelper_name_ok(store->valuestring))))
        return mv_error_set(err, -EINVAL, "%s: \"credsStore\" must name a helper", origin);
    if (store && store->valuestring[0] && !c->store)
        c->store = mv_xstrdup(store->valuestring);
    const cJSON *helpers = cJSON_GetObjectItemCaseSensitive(root, "credHelpers");
    if (!helpers)
        return 0;
    if (!cJSON_IsObject(helpers))
        return mv_error_set(err, -EINVAL, "%s: \"credHelpers\" must be an object", origin);
    const cJSON *e;
    cJSON_ArrayForEach(e, helpers)
    {
        if (!cJSON_IsString(e) || !pull_credhelper_name_ok(e->valuestring))
            return mv_error_set(err, -EINVAL, "%s: credHelpers \"%s\" must name a helper", origin,
                                e->string ? e->string : "");
        c->helpers = mv_xrealloc(c->helpers, (c->n_helpers + 1) * sizeof(*c->helpers));
        cred_helper *h = &c->helpers[c->n_helpers++];
        parse_key(e->string ? e->string : "", &h->key);
        h->helper = mv_xstrdup(e->valuestring);
    }
    return 0;
}

static int parse_into(pull_creds *c, const char *json, size_t len, const char *origin,
                      bool from_file, mv_error *err)
{
    if (len > CREDS_MAX_BYTES)
        return mv_error_set(err, -EINVAL, "%s: larger than %d bytes", origin, CREDS_MAX_BYTES);
    _cleanup_(pull_json_freep) cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root))
        return mv_error_set(err, -EINVAL, "%s: not a JSON object", origin);
    if (from_file) {
        int rc = parse_helpers(c, root, origin, err);
        if (rc < 0)
            return rc;
    }
    const cJSON *auths = cJSON_GetObjectItemCaseSensitive(root, "auths");
    if (!auths && (cJSON_GetObjectItemCaseSensitive(root, "credHelpers") ||
                   cJSON_GetObjectItemCaseSensitive(root, "credsStore"))) {
        return 0; /* a config.json with helpers only */
    } else if (!auths) {
        /* The legacy .dockercfg shape (kubelet still reads it): entries at
         * the top level. Only take members that look like entries. */
        auths = root;
    } else if (!cJSON_IsObject(auths)) {
        return mv_error_set(err, -EINVAL, "%s: \"auths\" must be an object", origin);
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, auths)
    {
        if (auths == root && !cJSON_IsObject(e))
            continue;
        int rc = add_entry(c, e->string ? e->string : "", e, origin, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int pull_creds_parse(const char *json, size_t len, pull_creds **out, mv_error *err)
{
    *out = NULL;
    _cleanup_(pull_creds_freep) pull_creds *c = mv_xcalloc(1, sizeof(*c));
    int rc = parse_into(c, json, len, "docker config", false, err);
    if (rc < 0)
        return rc;
    *out = MV_STEAL(c);
    return 0;
}

static int load_file(pull_creds *c, const char *path, mv_error *err)
{
    char *buf = NULL;
    size_t n = 0;
    int r = mv_read_file(path, CREDS_MAX_BYTES, &buf, &n, err);
    if (r == -ENOENT || r == -ENOTDIR) {
        mv_error_clear(err);
        return 0;
    }
    if (r < 0)
        return r;
    int rc = parse_into(c, buf, n, path, true, err);
    explicit_bzero(buf, n);
    free(buf);
    return rc;
}

int pull_creds_load_default(pull_creds **out, mv_error *err)
{
    *out = NULL;
    _cleanup_(pull_creds_freep) pull_creds *c = mv_xcalloc(1, sizeof(*c));
    const char *dc = getenv("DOCKER_CONFIG");
    const char *home = getenv("HOME");
    _cleanup_free_ char *p1 = dc && *dc ? mv_xasprintf("%s/config.json", dc) : NULL;
    _cleanup_free_ char *p2 = home && *home ? mv_xasprintf("%s/.docker/config.json", home) : NULL;
    const char *paths[] = {p1, p2, "/var/lib/kubelet/config.json"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        if (!paths[i])
            continue;
        int rc = load_file(c, paths[i], err);
        if (rc < 0)
            return mv_error_wrap(err, "docker credentials");
    }
    *out = MV_STEAL(c);
    return 0;
}

/* A longer path, then a host without globs; on a tie the earlier entry
 * stays. */
static bool more_specific(const cred_key *a, const cred_key *b)
{
    size_t pa = strlen(a->path), pb = strlen(b->path);
    if (pa != pb)
        return pa > pb;
    return !a->glob && b->glob;
}

static const pull_cred *lookup_key(const pull_creds *creds, const cred_key *target,
                                   const char *repository)
{
    const cred_entry *best = NULL;
    for (size_t i = 0; i < creds->n; i++) {
        const cred_entry *e = &creds->v[i];
        if (!key_matches(&e->key, target, repository))
            continue;
        if (!best || more_specific(&e->key, &best->key))
            best = e;
    }
    return best ? &best->cred : NULL;
}

const pull_cred *pull_creds_lookup(const pull_creds *creds, const char *registry,
                                   const char *repository)
{
    if (!creds || !registry)
        return NULL;
    cred_key target;
    parse_key(registry, &target);
    const pull_cred *cr = lookup_key(creds, &target, repository);
    key_clear(&target);
    return cr;
}

static void cred_copy(pull_cred *dst, const pull_cred *src)
{
    dst->username = src->username ? mv_xstrdup(src->username) : NULL;
    dst->password = src->password ? mv_xstrdup(src->password) : NULL;
    dst->identity_token = src->identity_token ? mv_xstrdup(src->identity_token) : NULL;
}

int pull_creds_resolve(const pull_creds *creds, const char *registry, const char *repository,
                       pull_cred *out, mv_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!creds || !registry)
        return 0;
    cred_key target;
    parse_key(registry, &target);
    const char *helper = NULL;
    for (size_t i = 0; i < creds->n_helpers && !helper; i++)
        if (!creds->helpers[i].key.glob && key_matches(&creds->helpers[i].key, &target, NULL))
            helper = creds->helpers[i].helper;
    const pull_cred *entry = helper ? NULL : lookup_key(creds, &target, repository);
    bool hub = strcmp(target.host, OCI_DOCKER_HUB) == 0;
    key_clear(&target);
    if (entry) {
        cred_copy(out, entry);
        return 0;
    }
    if (!helper)
        helper = creds->store;
    if (!helper)
        return 0;
    /* Helpers know Docker Hub by docker's old index URL. */
    int rc = pull_credhelper_get(helper, hub ? "https://index.docker.io/v1/" : registry, out, err);
    return rc < 0 ? mv_error_wrap(err, "credentials for %s", registry) : 0;
}
