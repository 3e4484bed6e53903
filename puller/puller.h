/* puller.h — the whole public API of libpuller: the registry client on
 * libcurl. Registry configuration, credentials, manifest resolution,
 * parallel ranged blob download into files the caller owns, and upload
 * for push. The puller never decides what becomes visible in the cache:
 * it fills the fd it is handed and reports whether the digest matched. */
#ifndef MODELVOL_PULLER_H
#define MODELVOL_PULLER_H

#include "oci.h"

/* ------------------------------------------------------------------------ */
/* Registry configuration (--config, default /etc/modelvol/config.json)    */
/* ------------------------------------------------------------------------ */

#define PULL_DEFAULT_CONFIG "/etc/modelvol/config.json"

/* Per-host settings: mirrors (tried in order before the origin), plain HTTP,
 * a CA file, a client certificate and key, explicit insecure skip-verify.
 * Opaque; parsed from JSON. */
typedef struct pull_config pull_config;

/* Parses config JSON. */
int pull_config_parse(const char *json, size_t len, pull_config **out, mv_error *err);
/* Loads a file. A missing file at the default path yields an empty config;
 * a missing file the user named is an error. */
int pull_config_load(const char *path, bool user_named, pull_config **out, mv_error *err);
void pull_config_free(pull_config *cfg);
MV_DEFINE_FREEP(pull_config, pull_config_freep, pull_config_free)
#define _cleanup_pull_config_ _cleanup_(pull_config_freep)

/* ------------------------------------------------------------------------ */
/* Credentials: the docker config.json chain                                */
/* ------------------------------------------------------------------------ */

typedef struct pull_creds pull_creds;

/* Loads $DOCKER_CONFIG/config.json, ~/.docker/config.json, then
 * /var/lib/kubelet/config.json: "auths" entries, matched as the kubelet
 * matches keys (the most specific wins, then the earliest), and the
 * "credHelpers"/"credsStore" helpers those files name. */
int pull_creds_load_default(pull_creds **out, mv_error *err);
/* Parses config.json / .dockerconfigjson content held in memory (a pod's
 * nodePublishSecretRef). Nothing is written to disk. Only "auths" is read:
 * content from a pod may not choose a credential helper to run. */
int pull_creds_parse(const char *json, size_t len, pull_creds **out, mv_error *err);
void pull_creds_free(pull_creds *creds);
MV_DEFINE_FREEP(pull_creds, pull_creds_freep, pull_creds_free)
#define _cleanup_pull_creds_ _cleanup_(pull_creds_freep)

/* ------------------------------------------------------------------------ */
/* The registry context: what every front end loads once at start          */
/* ------------------------------------------------------------------------ */

/* The registry configuration and the node's default credentials, loaded
 * together by modelvol-csi, modelpull and modelpush. */
typedef struct pull_context {
    pull_config *config; /* never NULL after a successful load */
    pull_creds *creds;   /* the docker config chain; NULL when optional and unreadable */
} pull_context;

enum {
    /* Default credentials that cannot be loaded are logged (warn,
     * default_credentials_unavailable) and the context goes on anonymous,
     * instead of failing the load: a daemon still serves public models. */
    PULL_CONTEXT_CREDS_OPTIONAL = 1u << 0,
};

/* Loads the registry config at config_path (NULL: PULL_DEFAULT_CONFIG; see
 * pull_config_load for config_named) and the default credentials
 * (pull_creds_load_default). */
int pull_context_load(const char *config_path, bool config_named, unsigned flags,
                      pull_context **out, mv_error *err);
void pull_context_free(pull_context *ctx);
MV_DEFINE_FREEP(pull_context, pull_context_freep, pull_context_free)
#define _cleanup_pull_context_ _cleanup_(pull_context_freep)

/* A parsed WWW-Authenticate challenge. Exposed for tests and fuzzing. */
typedef struct pull_challenge {
    char *scheme; /* "Bearer" or "Basic" */
    char *realm;
    char *service;
    char *scope;
    char *error;
} pull_challenge;
int pull_challenge_parse(const char *header, pull_challenge *out, mv_error *err);
void pull_challenge_clear(pull_challenge *ch);

/* ------------------------------------------------------------------------ */
/* Client                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum {
    PULL_EV_MANIFEST = 1, /* a manifest was fetched */
    PULL_EV_BLOB_START,
    PULL_EV_BLOB_PROGRESS, /* bytes written for a blob */
    PULL_EV_BLOB_DONE,
    PULL_EV_RETRY, /* a transient failure is being retried */
} pull_event_kind;

typedef struct pull_event {
    pull_event_kind kind;
    const char *digest;
    uint64_t done;       /* bytes of this blob present so far */
    uint64_t total;      /* size of this blob */
    const char *message; /* PULL_EV_RETRY: why; never holds secrets */
} pull_event;

typedef void (*pull_event_fn)(void *ctx, const pull_event *ev);

/* The connection budget of one pull, for every front end (modelpull
 * --connections, modelvol-csi --connections) and the client alike. */
#define PULL_CONNECTIONS_MIN     1
#define PULL_CONNECTIONS_MAX     256
#define PULL_CONNECTIONS_DEFAULT 16

/* Parses a connection budget given as the option what ("--connections"):
 * a decimal from PULL_CONNECTIONS_MIN to PULL_CONNECTIONS_MAX. */
int pull_connections_parse(const char *what, const char *s, int *out, mv_error *err);

/* The node's pull scheduler (budget.c): one connection budget that every
 * pull of a process draws from, so concurrent pulls queue instead of
 * splitting a full link. Pulls go by priority, then arrival; the first gets
 * the connections it can use, the next only as many as measured throughput
 * says add to the node's rate. Each host (registry or storage) is also
 * capped at per_host connections. Thread-safe: pulls on many threads share
 * one budget. */
typedef struct pull_budget pull_budget;

#define PULL_BUDGET_PER_HOST_DEFAULT 64
#define PULL_BUDGET_PER_HOST_MAX     1024
#define PULL_BUDGET_HOSTS_MAX        32

/* Lower goes first: a pod's publish before pre-warm work. */
enum { PULL_PRIORITY_PUBLISH = 0, PULL_PRIORITY_BACKGROUND = 1 };

/* per_host 0 = PULL_BUDGET_PER_HOST_DEFAULT, else 1..PULL_BUDGET_PER_HOST_MAX. */
int pull_budget_new(int per_host, pull_budget **out, mv_error *err);
void pull_budget_free(pull_budget *b);
MV_DEFINE_FREEP(pull_budget, pull_budget_freep, pull_budget_free)
#define _cleanup_pull_budget_ _cleanup_(pull_budget_freep)
int pull_budget_per_host(const pull_budget *b);

/* A limit from outside on all the budget's connections together, asked
 * again every 250 ms: a positive count, or 0 for none. modelpull prewarm
 * uses it to yield while the plugin publishes. Called with the budget's
 * lock held: it must not call back into the budget. */
typedef int (*pull_budget_limit_fn)(void *ud);
void pull_budget_set_limit(pull_budget *b, pull_budget_limit_fn fn, void *ud);

typedef struct pull_budget_stats {
    int queued;        /* pulls that want connections and hold none */
    int running;       /* pulls holding connections */
    double throughput; /* bytes per second over the last window */
    int target;        /* connections the probe lets the pulls hold together */
    int limit;         /* the outside limit, 0 for none */
    int per_host;
    uint64_t waits;          /* pulls that waited for their first connection */
    double wait_seconds_sum; /* and how long, together */
    uint64_t probes_kept, probes_dropped;
    size_t n_hosts;
    struct {
        char host[256];
        int in_use;
    } hosts[PULL_BUDGET_HOSTS_MAX];
} pull_budget_stats;
void pull_budget_stats_read(pull_budget *b, pull_budget_stats *out);

typedef struct pull_options {
    const pull_config *config; /* may be NULL */
    const pull_creds *creds;   /* may be NULL: anonymous */
    bool plain_http;           /* --plain-http for this call */
    int connections;           /* total connection budget; 0 = PULL_CONNECTIONS_DEFAULT,
                                  else PULL_CONNECTIONS_MIN..MAX (others are refused) */
    uint64_t chunk_size;       /* range size; 0 = 16 MiB */
    uint64_t range_threshold;  /* ranged above this size; 0 = 32 MiB */
    int stall_seconds;         /* no bytes for this long = transient; 0 = 30 */
    int max_retries;           /* per range; 0 = 6 */
    pull_event_fn on_event;    /* may be NULL; called from the caller's thread */
    void *event_ctx;
    const volatile int *cancel; /* non-NULL and set: stop with -ECANCELED */
    pull_budget *budget;        /* may be NULL: this pull's own connections only */
    int priority;               /* PULL_PRIORITY_*, with a budget */
} pull_options;

typedef struct pull_stats {
    uint64_t bytes_origin; /* blob bytes received from the origin registry */
    uint64_t bytes_mirror; /* blob bytes received from mirrors */
    uint64_t requests;
    uint64_t retries;
} pull_stats;

/* One client per (registry, repository). It holds tokens, the resolved
 * scheme and connection pools. Not thread-safe: one thread at a time. */
typedef struct pull_client pull_client;

int pull_client_new(const oci_ref *ref, const pull_options *opt, pull_client **out, mv_error *err);
void pull_client_free(pull_client *c);
static inline void pull_client_freep(pull_client **c)
{
    pull_client_free(*c);
    *c = NULL;
}
#define _cleanup_pull_client_ _cleanup_(pull_client_freep)
void pull_client_stats(const pull_client *c, pull_stats *out);

/* GET /v2/ on the origin: settles the scheme (loopback: https, then http)
 * and answers the auth challenge, so that later requests go out
 * authenticated. 0 when the registry answers 200. */
int pull_ping(pull_client *c, mv_error *err);

/* Fetches a manifest or index by tag or digest, verified against the digest
 * asked for or against Docker-Content-Digest. At most OCI_MANIFEST_MAX_BYTES.
 * *buf and *content_type are malloc'd. digest_out gets the digest. */
int pull_fetch_manifest(pull_client *c, const char *tag_or_digest, void **buf, size_t *len,
                        char **content_type, char digest_out[OCI_DIGEST_MAX], mv_error *err);

/* Fetches a small blob (config) into memory, verified. Refuses sizes above
 * OCI_MANIFEST_MAX_BYTES. */
int pull_fetch_small_blob(pull_client *c, const oci_descriptor *d, void **buf, size_t *len,
                          mv_error *err);

/* One blob to download. The cache opens fd (O_RDWR) on a partial file in its
 * ingest area and names state_path, a sidecar where the puller records the
 * bytes written so far so a later pull from any process resumes. On success
 * the fd holds exactly d->size verified bytes and state_path is removed; the
 * caller then makes the blob visible. */
typedef struct pull_blob_job {
    const oci_descriptor *desc;
    int fd;
    const char *state_path;
    /* May be NULL. Called on pull_blobs' thread as soon as this blob's
     * bytes are verified, before the others end: the cache makes it visible
     * and lets go of its lock at once, so a pull waiting on this one blob
     * (a config another model shares) does not wait for the rest. The fd
     * stays the caller's. */
    void (*on_verified)(void *ud, struct pull_blob_job *job);
    void *ud;
    /* outputs */
    int result;          /* 0 or negative code */
    mv_error err;        /* set when result < 0 */
    uint64_t downloaded; /* bytes received over the network for this blob */
    uint64_t resumed;    /* bytes already present from an earlier attempt */
} pull_blob_job;

/* Downloads all jobs concurrently within the connection budget. Returns 0
 * when every job succeeded, else the first failure's code with err naming
 * the blob, the host and the status. */
int pull_blobs(pull_client *c, pull_blob_job *jobs, size_t n, mv_error *err);

/* ------------------------------------------------------------------------ */
/* Upload (modelpush)                                                       */
/* ------------------------------------------------------------------------ */

/* HEAD /v2/<name>/blobs/<digest>. */
int pull_blob_exists(pull_client *c, const char *digest, bool *exists, mv_error *err);
/* Cross-repository mount from from_repo on the same registry. *mounted is
 * false when the registry answered by opening an upload instead. */
int pull_blob_mount(pull_client *c, const char *digest, const char *from_repo, bool *mounted,
                    mv_error *err);

typedef struct pull_upload_opts {
    uint64_t chunk_size;     /* PATCH chunk size; 0 = 64 MiB */
    bool monolithic;         /* force a single PUT */
    const char *resume_path; /* where to record the upload session for resume; may be NULL */
} pull_upload_opts;

/* Uploads size bytes from fd as digest. Chunked with PATCH and
 * Content-Range, falling back to monolithic when refused; resumes a session
 * recorded at resume_path. */
int pull_blob_upload(pull_client *c, int fd, const char *digest, uint64_t size,
                     const pull_upload_opts *o, mv_error *err);
/* PUT /v2/<name>/manifests/<tag_or_digest>. */
int pull_manifest_put(pull_client *c, const char *tag_or_digest, const void *buf, size_t len,
                      const char *media_type, mv_error *err);

#endif
