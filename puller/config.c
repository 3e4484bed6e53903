/* config.c — the registry configuration file (--config, default
 * /etc/modelvol/config.json): per-registry mirrors, plain HTTP and TLS
 * material. The format:
 *
 *   {
 *     "registries": {
 *       "registry.example.com": {
 *         "mirrors": ["http://127.0.0.1:5001", "https://mirror.local"],
 *         "plainHTTP": false,
 *         "caFile": "/etc/modelvol/ca.pem",
 *         "certFile": "/etc/modelvol/client.pem",
 *         "keyFile": "/etc/modelvol/client.key",
 *         "insecureSkipVerify": false
 *       }
 *     }
 *   }
 *
 * Keys are "host[:port]" as written in references ("docker.io" also covers
 * registry-1.docker.io). Mirrors are tried in order before the origin with
 * the same /v2/<repository>/ paths, like containerd's hosts.toml; a mirror
 * without a scheme is reached over https (loopback: https, then http). An
 * entry for a mirror's own host:port sets that mirror's TLS material.
 * Unknown keys are ignored so that newer files load in older builds. */
#include "puller-internal.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#define CONFIG_MAX_BYTES (1 << 20)

static void host_config_clear(pull_host_config *h)
{
    free(h->host);
    for (size_t i = 0; i < h->n_mirrors; i++)
        free(h->mirrors[i]);
    free(h->mirrors);
    free(h->ca_file);
    free(h->cert_file);
    free(h->key_file);
    memset(h, 0, sizeof(*h));
}

void pull_config_free(pull_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_hosts; i++)
        host_config_clear(&cfg->hosts[i]);
    free(cfg->hosts);
    free(cfg);
}

static int get_bool(const cJSON *obj, const char *host, const char *key, bool *out, mv_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return 0;
    if (!cJSON_IsBool(v))
        return mv_error_set(err, -EINVAL, "registry \"%s\": \"%s\" must be true or false", host,
                            key);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int get_path(const cJSON *obj, const char *host, const char *key, char **out, mv_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return 0;
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return mv_error_set(err, -EINVAL, "registry \"%s\": \"%s\" must be a non-empty string",
                            host, key);
    *out = mv_xstrdup(v->valuestring);
    return 0;
}

/* A mirror is "scheme://host[:port][/prefix]" or "host[:port][/prefix]". */
static int check_mirror(const char *host, const char *m, mv_error *err)
{
    const char *p = m;
    if (strncmp(p, "http://", 7) == 0)
        p += 7;
    else if (strncmp(p, "https://", 8) == 0)
        p += 8;
    else if (strstr(p, "://"))
        return mv_error_set(
            err, -EINVAL, "registry \"%s\": mirror \"%s\": scheme must be http or https", host, m);
    if (!*p || *p == '/')
        return mv_error_set(err, -EINVAL, "registry \"%s\": mirror \"%s\" has no host", host, m);
    for (; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == '?' || *p == '#' || *p == '@' || *p == '\\')
            return mv_error_set(err, -EINVAL,
                                "registry \"%s\": mirror \"%s\": unexpected character", host, m);
    return 0;
}

static int parse_host(const char *host, const cJSON *obj, pull_host_config *h, mv_error *err)
{
    if (!cJSON_IsObject(obj))
        return mv_error_set(err, -EINVAL, "registry \"%s\": must be an object", host);
    if (!host[0])
        return mv_error_set(err, -EINVAL, "registry \"\": empty host name");
    h->host = mv_xstrdup(host);
    const cJSON *mirrors = cJSON_GetObjectItemCaseSensitive(obj, "mirrors");
    if (mirrors) {
        if (!cJSON_IsArray(mirrors))
            return mv_error_set(err, -EINVAL, "registry \"%s\": \"mirrors\" must be an array",
                                host);
        size_t n = (size_t)cJSON_GetArraySize(mirrors);
        h->mirrors = mv_xcalloc(n + 1, sizeof(char *));
        const cJSON *m;
        cJSON_ArrayForEach(m, mirrors)
        {
            if (!cJSON_IsString(m))
                return mv_error_set(err, -EINVAL,
                                    "registry \"%s\": each mirror must be a URL string", host);
            int rc = check_mirror(host, m->valuestring, err);
            if (rc < 0)
                return rc;
            h->mirrors[h->n_mirrors++] = mv_xstrdup(m->valuestring);
        }
    }
    int rc;
    if ((rc = get_bool(obj, host, "plainHTTP", &h->plain_http, err)) < 0 ||
        (rc = get_bool(obj, host, "insecureSkipVerify", &h->insecure_skip_verify, err)) < 0 ||
        (rc = get_path(obj, host, "caFile", &h->ca_file, err)) < 0 ||
        (rc = get_path(obj, host, "certFile", &h->cert_file, err)) < 0 ||
        (rc = get_path(obj, host, "keyFile", &h->key_file, err)) < 0)
        return rc;
    if (!h->cert_file != !h->key_file)
        return mv_error_set(err, -EINVAL,
                            "registry \"%s\": \"certFile\" and \"keyFile\" go together", host);
    return 0;
}

int pull_config_parse(const char *json, size_t len, pull_config **out, mv_error *err)
{
    *out = NULL;
    if (len > CONFIG_MAX_BYTES)
        return mv_error_set(err, -EINVAL, "registry config: larger than %d bytes",
                            CONFIG_MAX_BYTES);
    _cleanup_(pull_json_freep) cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return mv_error_set(err, -EINVAL, "registry config: not valid JSON");
    if (!cJSON_IsObject(root))
        return mv_error_set(err, -EINVAL, "registry config: must be a JSON object");
    _cleanup_(pull_config_freep) pull_config *cfg = mv_xcalloc(1, sizeof(*cfg));
    const cJSON *regs = cJSON_GetObjectItemCaseSensitive(root, "registries");
    if (regs) {
        if (!cJSON_IsObject(regs))
            return mv_error_set(err, -EINVAL, "registry config: \"registries\" must be an object");
        size_t n = (size_t)cJSON_GetArraySize(regs);
        cfg->hosts = mv_xcalloc(n ? n : 1, sizeof(*cfg->hosts));
        const cJSON *r;
        cJSON_ArrayForEach(r, regs)
        {
            pull_host_config *h = &cfg->hosts[cfg->n_hosts++];
            int rc = parse_host(r->string ? r->string : "", r, h, err);
            if (rc < 0)
                return mv_error_wrap(err, "registry config");
        }
    }
    *out = MV_STEAL(cfg);
    return 0;
}

int pull_config_load(const char *path, bool user_named, pull_config **out, mv_error *err)
{
    *out = NULL;
    _cleanup_free_ char *buf = NULL;
    size_t n = 0;
    int r = mv_read_file(path, CONFIG_MAX_BYTES, &buf, &n, err);
    if (r == -ENOENT && !user_named) {
        mv_error_clear(err);
        return pull_config_parse("{}", 2, out, err);
    }
    if (r < 0)
        return mv_error_wrap(err, "registry config");
    r = pull_config_parse(buf, n, out, err);
    if (r < 0)
        return mv_error_wrap(err, "%s", path);
    return 0;
}

static bool is_docker_hub(const char *h)
{
    return strcmp(h, OCI_DOCKER_HUB) == 0 || strcmp(h, OCI_DOCKER_HUB_API) == 0 ||
           strcmp(h, "index.docker.io") == 0;
}

const pull_host_config *pull_config_host(const pull_config *cfg, const char *host)
{
    if (!cfg || !host)
        return NULL;
    for (size_t i = 0; i < cfg->n_hosts; i++)
        if (strcmp(cfg->hosts[i].host, host) == 0)
            return &cfg->hosts[i];
    if (is_docker_hub(host))
        for (size_t i = 0; i < cfg->n_hosts; i++)
            if (is_docker_hub(cfg->hosts[i].host))
                return &cfg->hosts[i];
    return NULL;
}

/* ---- the registry context ------------------------------------------------ */

int pull_context_load(const char *config_path, bool config_named, unsigned flags,
                      pull_context **out, mv_error *err)
{
    *out = NULL;
    _cleanup_pull_context_ pull_context *ctx = mv_xcalloc(1, sizeof(*ctx));
    int r = pull_config_load(config_path ? config_path : PULL_DEFAULT_CONFIG,
                             config_path && config_named, &ctx->config, err);
    if (r < 0)
        return r;
    mv_error cerr = MV_ERROR_INIT;
    r = pull_creds_load_default(&ctx->creds, &cerr);
    if (r < 0) {
        if (!(flags & PULL_CONTEXT_CREDS_OPTIONAL)) {
            mv_error_copy(err, &cerr);
            return r;
        }
        mv_log("warn", "default_credentials_unavailable", "error", cerr.msg);
        ctx->creds = NULL;
    }
    *out = MV_STEAL(ctx);
    return 0;
}

void pull_context_free(pull_context *ctx)
{
    if (!ctx)
        return;
    pull_config_free(ctx->config);
    pull_creds_free(ctx->creds);
    free(ctx);
}
