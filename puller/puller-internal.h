/* internal.h — private to libpuller: the client's internals and the one
 * authenticated request helper (pull_http_do) that manifest fetch, blob
 * resolution and upload (puller/upload.c) share. Nothing outside puller/
 * includes this file. */
#ifndef MODELVOL_PULLER_INTERNAL_H
#define MODELVOL_PULLER_INTERNAL_H

#include "puller.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <string.h>
#include <time.h>

#define PULL_DEFAULT_CHUNK     (16ull << 20)
#define PULL_DEFAULT_THRESHOLD (32ull << 20)
#define PULL_DEFAULT_STALL     30
#define PULL_DEFAULT_RETRIES   6
#define PULL_USER_AGENT        "modelvol/" MV_VERSION
/* Response bodies pull_http_do keeps when the caller does not say. */
#define PULL_HTTP_BODY_DEFAULT (64u << 10)

/* One pull's place in the node's budget (budget.c), from pull_client_new
 * to pull_client_free. */
typedef struct pull_tenant pull_tenant;

/* ------------------------------------------------------------------------ */
/* Cleanup helpers the puller's files share                                 */
/* ------------------------------------------------------------------------ */

MV_DEFINE_FREEP(CURL, pull_curl_easy_freep, curl_easy_cleanup)
MV_DEFINE_FREEP(struct curl_slist, pull_slist_freep, curl_slist_free_all)
MV_DEFINE_FREEP(cJSON, pull_json_freep, cJSON_Delete)

/* Frees a string that held a secret (a password, a token, an Authorization
 * header), zeroing it first so it does not linger in freed memory. NULL is
 * fine. */
static inline void pull_wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}
MV_DEFINE_FREEP(char, pull_wipe_freep, pull_wipe_free)

/* ------------------------------------------------------------------------ */
/* Registry configuration (config.c)                                        */
/* ------------------------------------------------------------------------ */

/* One registry's settings, keyed by "host[:port]" as written in a
 * reference ("docker.io" also matches its API host). */
typedef struct pull_host_config {
    char *host;
    char **mirrors; /* NULL-terminated; each "scheme://host[:port][/prefix]" or "host[:port]" */
    size_t n_mirrors;
    bool plain_http;
    char *ca_file;
    char *cert_file;
    char *key_file;
    bool insecure_skip_verify;
} pull_host_config;

struct pull_config {
    pull_host_config *hosts;
    size_t n_hosts;
};

/* The entry for host (host[:port]); NULL when the config has none. */
const pull_host_config *pull_config_host(const pull_config *cfg, const char *host);

/* ------------------------------------------------------------------------ */
/* Credentials (creds.c)                                                    */
/* ------------------------------------------------------------------------ */

/* What config.json holds for one registry. identity_token is an OAuth2
 * refresh token: docker sends it as refresh_token in a POST to the realm
 * (grant_type=refresh_token) instead of Basic-authenticating the GET. */
typedef struct pull_cred {
    char *username;
    char *password;
    char *identity_token;
} pull_cred;

/* The credential for a repository (may be NULL) on a registry (reference
 * form, e.g. "docker.io", "localhost:5000"): the most specific matching
 * entry (creds.c says how keys match), or NULL. Points into creds. */
const pull_cred *pull_creds_lookup(const pull_creds *creds, const char *registry,
                                   const char *repository);
/* What a pull of repository on registry authenticates with, as an owned
 * copy (pull_cred_clear wipes it): a credential helper's answer or an
 * "auths" entry, by docker's precedence. All fields NULL when there is
 * none. Fails only when a helper named in a file fails. */
int pull_creds_resolve(const pull_creds *creds, const char *registry, const char *repository,
                       pull_cred *out, mv_error *err);
void pull_cred_clear(pull_cred *c);

/* credhelper.c: runs docker-credential-<helper> get for server. out stays
 * empty, and no error is set, when the helper has no credential for it. */
int pull_credhelper_get(const char *helper, const char *server, pull_cred *out, mv_error *err);
/* A name docker-credential-<name> may be made of: letters, digits, - _ . */
bool pull_credhelper_name_ok(const char *name);

/* ------------------------------------------------------------------------ */
/* Endpoints and auth (client.c, auth.c)                                    */
/* ------------------------------------------------------------------------ */

/* A server the client talks to for the repository: the origin registry or
 * one of its mirrors. The scheme of a loopback origin is learned on first
 * contact (https first, then http). */
typedef struct pull_endpoint {
    char *hostport; /* "127.0.0.1:5000", "registry-1.docker.io" */
    char *prefix;   /* path before "/v2/", "" for none (mirrors only) */
    char *scheme;   /* "https" / "http"; NULL until known */
    bool try_plain; /* on a transport failure over https, try http once */
    bool is_mirror;
    bool send_creds; /* the registry's credentials may go here (origin, same-host mirror) */
    const pull_host_config *tls; /* CA/cert/key/insecure for this host; may be NULL */
    /* Last auth challenge seen from this endpoint. */
    char *auth_scheme; /* "Bearer", "Basic" or NULL */
    char *realm;
    char *service;
} pull_endpoint;

/* A cached Bearer token for one (endpoint, scope). */
typedef struct pull_token {
    size_t endpoint;
    char *scope; /* "repository:x/y:pull" */
    char *token; /* never logged */
    time_t expires;
    struct pull_token *next;
} pull_token;

struct pull_client {
    char *registry;                  /* reference form: "docker.io", "127.0.0.1:5000" */
    char *ref_api_host;              /* host[:port] of the origin's API */
    char *repository;                /* "models/llama" */
    char *refname;                   /* "registry/repository" for error messages */
    pull_options opt;                /* defaults filled in */
    const pull_host_config *hostcfg; /* origin's config entry; may be NULL */
    pull_cred cred;                  /* origin's credential; fields NULL when none */
    pull_endpoint *ep;               /* mirrors in config order, then the origin last */
    size_t n_ep;
    size_t origin; /* index of the origin in ep */
    pull_token *tokens;
    CURLSH *share; /* DNS, TLS sessions and connections across handles */
    CURLM *multi;  /* the download event loop (download.c) */
    CURLM *sync;   /* the loop pull_http_do drives one request on */
    pull_stats stats;
    pull_tenant *tenant; /* in opt.budget; NULL without one */
};

/* ------------------------------------------------------------------------ */
/* The node's pull scheduler (budget.c)                                     */
/* ------------------------------------------------------------------------ */

/* Joins at the end of its priority; max is the most connections it uses. */
pull_tenant *pull_budget_join(pull_budget *b, int priority, int max);
void pull_budget_leave(pull_tenant *t);
/* Reports the tenant's bytes received so far and the connections it could
 * use now; returns how many it may hold now. */
int pull_budget_tick(pull_tenant *t, uint64_t bytes, int want);
/* Takes a connection to host within the tenant's allowance and the host's
 * cap; false when either is full. */
bool pull_budget_take(pull_tenant *t, const char *host);
void pull_budget_give(pull_tenant *t, const char *host);
/* Whether the tenant holds slots on host that an earlier pull waits for:
 * the connections to give back first when its allowance shrinks. */
bool pull_budget_yields(pull_tenant *t, const char *host);
/* Closes the download loop's idle connections (a new multi handle). */
void pull_client_reset_multi(pull_client *c);
/* For tests: the millisecond clock the budget measures with. */
void pull_budget_set_clock(pull_budget *b, uint64_t (*clock)(void));

/* Fills an easy handle's connection, TLS and timeout options for url (the
 * host's own CA/cert/insecure settings, HTTP/1.1, no auto-redirects, the
 * shared caches, the stall limit). */
void pull_curl_setup(pull_client *c, CURL *h, const char *url);

/* The Authorization header line ("Authorization: Bearer …") to send to
 * endpoint ep for scope, or NULL when none applies. Caller frees; never log
 * it. */
char *pull_auth_header(pull_client *c, size_t ep, const char *scope);
/* Handles a 401 from endpoint ep: parses the challenge, fetches a token for
 * scope (with the credential when the endpoint may receive it). 0 when a new
 * authorization is available and the request is worth repeating. */
int pull_auth_handle_401(pull_client *c, size_t ep, const char *www_authenticate, const char *scope,
                         mv_error *err);
/* Forgets cached tokens of endpoint ep for scope (a 401 on a request that
 * carried one). */
void pull_auth_forget(pull_client *c, size_t ep, const char *scope);
/* "repository:<repo>:<actions>" for the client's repository. Caller frees. */
char *pull_scope(const pull_client *c, const char *actions);

/* Builds "<scheme>://<hostport><prefix>/v2/<repo>/<path>". Caller frees. */
char *pull_endpoint_url(const pull_client *c, size_t ep, const char *path);
/* "host:port" of an absolute URL (default port omitted), malloc'd, or NULL
 * when the URL cannot be parsed. */
char *pull_url_hostport(const char *url);
/* Resolves a Location value against base. Caller frees. */
char *pull_url_resolve(const char *base, const char *location);

/* Runs one easy handle to completion on c->sync (the multi interface, so
 * the same transport code serves both loops). Returns the CURLcode. */
CURLcode pull_sync_perform(pull_client *c, CURL *h);

/* Seconds from a Retry-After value (delta-seconds or an HTTP date); -1 if
 * unparseable. */
long pull_retry_after(const char *value);
/* Milliseconds to wait before retry attempt n (0-based): exponential with
 * jitter, at least min_seconds when > 0. */
uint64_t pull_backoff_ms(int attempt, long min_seconds);
/* CLOCK_MONOTONIC in milliseconds. */
uint64_t pull_now_ms(void);
/* Sleeps for backoff attempt n (0-based) with full jitter, at least
 * min_seconds when >0, at most 30 s; wakes early on cancel. */
void pull_backoff_sleep(const pull_client *c, int attempt, long min_seconds);
/* Maps a transport failure to an errno-style code (-ETIMEDOUT, -ECONNREFUSED,
 * -EIO, ...). */
int pull_curl_errno(CURLcode rc);

/* ------------------------------------------------------------------------ */
/* The generic request helper (http.c)                                      */
/* ------------------------------------------------------------------------ */

/* Where a request body comes from. */
typedef enum {
    PULL_BODY_NONE = 0,
    PULL_BODY_MEM, /* mem/mem_len, not copied */
    PULL_BODY_FD,  /* fd_len bytes of fd from fd_off, read with pread as sent */
} pull_body_kind;

typedef struct pull_http_req {
    const char *method; /* "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE" */
    /* Path under /v2/<repo>/ ("blobs/uploads/", "manifests/v1") or an
     * absolute URL (an upload Location). A path starting with '/' is taken
     * relative to the endpoint's root ("/v2/"). */
    const char *path;
    const char *const *headers; /* extra header lines, NULL-terminated; may be NULL */
    pull_body_kind body;
    const void *mem;
    size_t mem_len;
    int fd;
    uint64_t fd_off;
    uint64_t fd_len;
    const char *content_type; /* request Content-Type; may be NULL */
    const char *actions;      /* auth scope actions: "pull" (NULL) or "pull,push" */
    const char *extra_scope;  /* a second scope the token must carry, e.g. the
                               * source "repository:<from>:pull" of a mount */
    bool use_mirrors;         /* GET/HEAD that a mirror may answer; false = origin only */
    bool follow;              /* follow 3xx for GET/HEAD (without the Authorization
                               * header when the host changes); false = return the 3xx */
    size_t body_max;          /* keep at most this much body; 0 = PULL_HTTP_BODY_DEFAULT */
    bool body_exact;          /* a body longer than body_max is an error (-EBADMSG),
                               * else the excess is discarded and body_truncated set */
} pull_http_req;

typedef struct pull_http_resp {
    long status;
    char *location; /* absolute, resolved against the request URL */
    char *range;
    char *content_range;
    char *docker_content_digest;
    char *content_type;
    char *docker_upload_uuid;
    char *www_authenticate;
    char *retry_after;
    uint64_t content_length; /* from the header; 0 if absent */
    bool has_content_length;
    char *body; /* NUL-terminated (not counted in body_len) */
    size_t body_len;
    bool body_truncated;
    char *url;       /* the URL that answered (after redirects) */
    size_t endpoint; /* index into c->ep that answered */
    char host[256];  /* host:port that answered, for error messages */
} pull_http_resp;

/* Sends req to the registry: picks the scheme (loopback: https then http;
 * plain_http from options or config), tries mirrors in order for pull
 * requests, authenticates (Basic, or a Bearer token for the scope, fetched
 * on the challenge and cached; on a 401 with a cached token it refreshes
 * once). Returns 0 with resp filled for ANY HTTP status (the caller judges
 * it), or a negative code for a transport failure / auth failure (-EACCES
 * when still 401 after refreshing: resp->status is 401 then too). Transport
 * failures are not retried here; callers decide. Whatever the result, resp
 * must be released with pull_http_resp_clear (it may hold a partial answer). */
int pull_http_do(pull_client *c, const pull_http_req *req, pull_http_resp *resp, mv_error *err);
void pull_http_resp_clear(pull_http_resp *resp);
static inline void pull_http_resp_clearp(pull_http_resp *resp)
{
    pull_http_resp_clear(resp);
}
#define _cleanup_http_resp_ _cleanup_(pull_http_resp_clearp)

/* Sets err to the one-line "<what>: <status> from <host>" for a failed
 * response, mapping the status (404 -ENOENT, 401 -EACCES, 403 -EPERM,
 * 416/other 4xx -EINVAL, 5xx -EIO) and storing it in err->http_status;
 * includes an OCI error message from the body when present. */
int pull_http_status_error(const pull_http_resp *resp, mv_error *err, const char *what);

/* ------------------------------------------------------------------------ */
/* Blob download pieces (download.c, hashq.c, rangestate.c)                  */
/* ------------------------------------------------------------------------ */

/* The in-order hasher: a thread that reads fd back with pread over the
 * contiguous prefix made available so far and hashes it. */
typedef struct pull_hashq pull_hashq;
int pull_hashq_start(int fd, oci_digest_alg alg, pull_hashq **out, mv_error *err);
/* Bytes [0, upto) of fd are written; hash them when ready. Monotonic. */
void pull_hashq_advance(pull_hashq *q, uint64_t upto);
/* Waits for the hash of [0, upto) and writes it. Frees q. */
int pull_hashq_finish(pull_hashq *q, uint64_t upto, char out[OCI_DIGEST_MAX], mv_error *err);
/* Stops without a result. Frees q. NULL is fine. */
void pull_hashq_abort(pull_hashq *q);

/* The resume record of one blob: byte intervals known written. */
typedef struct pull_rangeset {
    uint64_t (*iv)[2]; /* sorted, merged [start, end) */
    size_t n;
} pull_rangeset;
void pull_rangeset_add(pull_rangeset *s, uint64_t start, uint64_t end);
bool pull_rangeset_covers(const pull_rangeset *s, uint64_t start, uint64_t end);
/* How many bytes from start on (at most end - start) s holds without a gap:
 * where a partly written range resumes. */
uint64_t pull_rangeset_prefix(const pull_rangeset *s, uint64_t start, uint64_t end);
void pull_rangeset_clear(pull_rangeset *s);
/* Loads state_path for digest/size (record version 1 or 2). A missing,
 * foreign or damaged record yields an empty set (and 0). */
int pull_rangestate_load(const char *path, const char *digest, uint64_t size, pull_rangeset *out,
                         mv_error *err);
/* Atomically replaces state_path (mv_write_atomic) with a version 2 record. durable:
 * fdatasync(data_fd) first and write the record with MV_WRITE_SYNC_DATA, so it never claims bytes a
 * power loss could take; otherwise only a killed process is covered. */
int pull_rangestate_save(const char *path, int data_fd, const char *digest, uint64_t size,
                         const pull_rangeset *s, bool durable, mv_error *err);

/* The resume-record writer (saver.c): a thread that syncs partial files and
 * writes their records at most once per interval, so the event loop never
 * waits on the disk. NULL when the thread cannot start. */
typedef struct pull_saver pull_saver;
pull_saver *pull_saver_start(uint64_t interval_ms);
/* Registers a blob; path and digest must outlive the slot. */
int pull_saver_add(pull_saver *s, const char *path, int fd, const char *digest, uint64_t size);
/* Hands over the bytes written so far (whole ranges and the written prefixes
 * of ranges in flight); the record follows within the interval. writeback:
 * a range completed since the last call, so start writing its pages out
 * (sync_file_range) now; progress alone does not. */
void pull_saver_update(pull_saver *s, int slot, const pull_rangeset *written, bool writeback);
/* Waits for a save in progress, then forgets the slot: nothing more is
 * written for it, so the caller may remove or rewrite the record. */
void pull_saver_close(pull_saver *s, int slot);
/* Writes what open slots hold that is not yet recorded, joins the thread
 * and frees s. NULL is fine. */
void pull_saver_stop(pull_saver *s);

/* ------------------------------------------------------------------------ */
/* Upload pieces that need no registry (upload.c)                           */
/* ------------------------------------------------------------------------ */

/* A Range value registries answer upload requests with: "0-1234" (some send
 * "bytes=0-1234") means 1235 bytes received. false when it does not start at
 * 0 or is not two numbers. */
bool pull_upload_range_end(const char *v, uint64_t *received);
/* url with "digest=<digest>" appended as a query parameter. Caller frees. */
char *pull_upload_with_digest(const char *url, const char *digest);
/* The resume record of an upload at path (NULL: none kept): the session URL
 * saved for digest/size, or NULL when missing, foreign, damaged or not
 * http(s). Caller frees. */
char *pull_upload_record_load(const char *path, const char *digest, uint64_t size);
/* Replaces the record atomically and durably, mode 0600. Failures only cost
 * the ability to resume, so they are not reported. */
void pull_upload_record_save(const char *path, const char *digest, uint64_t size,
                             const char *location);
void pull_upload_record_remove(const char *path);

#endif
