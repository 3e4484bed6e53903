/* csi.h — private to csi/: the pieces of the modelvol-csi daemon and how
 * they meet. The gRPC plumbing (server.c) hands raw request bytes to
 * csi_dispatch (dispatch.c), which decodes them with protobuf-c and calls an
 * Identity or Node handler; those never see gRPC, so a fuzz target can drive
 * them directly with mounting switched off (csi_set_dry_run). */
#ifndef MODELVOL_CSI_H
#define MODELVOL_CSI_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "cache.h"
#include "csi.pb-c.h"
#include "pluginregistration.pb-c.h"

#define CSI_PLUGIN_NAME             "modelvol.csi.io"
#define CSI_DEFAULT_PUBLISH_TIMEOUT 100
#define CSI_DEFAULT_METRICS_ADDR    "127.0.0.1:9808"
#define CSI_STATE_SUBDIR            "csi"
#define CSI_PIN_PREFIX              "csi:"
#define CSI_SECRET_DOCKERCONFIGJSON ".dockerconfigjson"
#define CSI_MAX_REQUEST_BYTES       (4 * 1024 * 1024)
/* Where the kubelet's plugin watcher looks for registration sockets. */
#define CSI_DEFAULT_REGISTRATION_DIR "/var/lib/kubelet/plugins_registry"

/* ------------------------------------------------------------------------ */
/* Status: gRPC status codes, numbered as in grpc/status.h                  */
/* ------------------------------------------------------------------------ */

typedef enum {
    CSI_OK = 0,
    CSI_CANCELLED = 1,
    CSI_UNKNOWN = 2,
    CSI_INVALID_ARGUMENT = 3,
    CSI_DEADLINE_EXCEEDED = 4,
    CSI_NOT_FOUND = 5,
    CSI_ALREADY_EXISTS = 6,
    CSI_PERMISSION_DENIED = 7,
    CSI_RESOURCE_EXHAUSTED = 8,
    CSI_FAILED_PRECONDITION = 9,
    CSI_ABORTED = 10,
    CSI_OUT_OF_RANGE = 11,
    CSI_UNIMPLEMENTED = 12,
    CSI_INTERNAL = 13,
    CSI_UNAVAILABLE = 14,
    CSI_DATA_LOSS = 15,
    CSI_UNAUTHENTICATED = 16,
} csi_code;

/* What a call answers: a code and a one-line message for the pod's events. */
typedef struct csi_status {
    csi_code code;
    bool logged; /* the handler logged the failure with more context */
    char msg[MV_ERROR_MSG_MAX];
} csi_status;

/* Sets the status and returns code. */
csi_code csi_status_set(csi_status *st, csi_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* How csi_fail reads an error. */
typedef enum {
    /* A pull, a pin, a record write: the error's code says what went wrong
     * and maps by csi_code_from_errno (-ENOENT NOT_FOUND, -ENOSPC
     * RESOURCE_EXHAUSTED, transport trouble UNAVAILABLE, ...). */
    CSI_FAIL_MAPPED = 0,
    /* The node's own machinery (a mount, a record read, an unpin): INTERNAL
     * whatever the errno, since nothing the caller sends changes it. */
    CSI_FAIL_NODE,
    /* What the caller sent (a volume attribute, a secret): INVALID_ARGUMENT
     * whatever the errno. */
    CSI_FAIL_REQUEST,
} csi_fail_kind;

/* The one way an mv_error becomes what a call answers: the code as kind
 * says, and the message "<fmt>: <err's chain>" (just the chain when fmt is
 * NULL). Every handler failure that carries an mv_error goes through it. */
csi_code csi_fail(csi_status *st, const mv_error *err, csi_fail_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The errno-style code to gRPC code table csi_fail uses (see mv.h for the
 * codes); also the result label of the pull metrics. */
csi_code csi_code_from_errno(int code);
/* "INVALID_ARGUMENT"; "ok" style lower-case names for metric labels. */
const char *csi_code_name(csi_code code);
const char *csi_code_label(csi_code code);

/* ------------------------------------------------------------------------ */
/* The plugin: state shared by every call                                   */
/* ------------------------------------------------------------------------ */

#define CSI_TARGET_LOCKS 64

/* Thread stacks. glibc keeps up to 40 MiB of freed stacks for reuse; at its
 * 8 MiB default, 50 concurrent calls meant an mmap and munmap per thread
 * (8% of the plugin's CPU under load). Calls and jobs need far less. */
#define CSI_CALL_STACK (512u << 10)
#define CSI_JOB_STACK  (1u << 20)

typedef struct csi_plugin {
    /* configuration, fixed after start */
    const char *node_id;
    const char *cache_dir;
    char *state_dir; /* <cache>/csi: one record per published target */
    cache_options cache_opts;
    const cache_registry *registry; /* registry config and the node's default credentials */
    int connections;                /* pull connection budget; 0 = library default */
    int connections_per_host;       /* the node's cap per host; 0 = library default */
    pull_budget *budget;            /* the node's pull scheduler; NULL: none (tests) */
    unsigned publish_timeout;       /* seconds a publish waits for its pull */

    /* set once by recovery, then read-only */
    cache *cache;
    atomic_bool ready;              /* cache recovery and reconciliation finished */
    atomic_bool failed;             /* recovery failed: Probe answers FAILED_PRECONDITION */
    char failure[MV_ERROR_MSG_MAX]; /* why; written before failed is set */

    /* Serialise the calls on one target path (its mount, pin and record).
     * Striped by a hash of the path: calls on different targets, the
     * common case under load, proceed side by side; one plugin-wide lock
     * queued 50 callers behind each other's fsyncs and mounts. */
    pthread_mutex_t target_locks[CSI_TARGET_LOCKS];

    /* Background pulls (jobs.c), under jobs.lock. */
    struct {
        pthread_mutex_t lock;
        pthread_cond_t cond; /* a job ended or a waiter left; CLOCK_MONOTONIC */
        struct csi_job *running;
        int threads;
        bool stopping;
    } jobs;

    /* The cache GC pass after pulls (jobs.c): one at a time, and one more
     * when asked during one. Under gc.lock. */
    struct {
        pthread_mutex_t lock;
        bool running, again;
    } gc;

    /* gRPC calls in flight (server.c), under calls.lock. */
    struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int running;
    } calls;

    struct csi_metrics *metrics; /* counters and the /metrics server (metrics.c) */

    /* Self-registration with the kubelet's plugin watcher (register.c). */
    struct {
        char *socket;      /* registration socket path; NULL: switched off */
        char *endpoint;    /* the CSI socket's path as the kubelet dials it */
        atomic_int status; /* csi_reg_status */
    } reg;

    struct csi_events *events; /* pod events to the API server (events.c); NULL: off */
} csi_plugin;

/* Sets up the state p's calls share (locks, the job table, the counters);
 * its configuration fields may be filled before or after. Every plugin,
 * the daemon's, a test's or the fuzzer's, starts here. */
void csi_plugin_init(csi_plugin *p);
/* Tears it down once no call or job runs. Does not close p->cache. */
void csi_plugin_destroy(csi_plugin *p);

/* The lock for calls on target path `target` (see csi_plugin). */
pthread_mutex_t *csi_target_lock(csi_plugin *p, const char *target);

/* One call: the plugin and the caller's deadline. */
typedef struct csi_call {
    csi_plugin *plugin;
    int64_t deadline_ns; /* CLOCK_MONOTONIC; 0 = none */
} csi_call;

/* CLOCK_MONOTONIC now in nanoseconds. */
int64_t csi_now_ns(void);

/* ------------------------------------------------------------------------ */
/* Dispatch (dispatch.c)                                                    */
/* ------------------------------------------------------------------------ */

/* An encoded response. */
typedef struct csi_reply {
    uint8_t *buf;
    size_t len;
} csi_reply;

/* Encodes msg into reply (replacing what it held). */
void csi_reply_pack(csi_reply *reply, const ProtobufCMessage *msg);
void csi_reply_clear(csi_reply *reply);

typedef csi_code (*csi_handler_fn)(csi_call *call, const ProtobufCMessage *req, csi_reply *reply,
                                   csi_status *st);

/* Decodes req for the full method name ("/csi.v1.Node/NodeGetInfo"), runs
 * its handler and fills reply when the answer is CSI_OK. An unknown method
 * answers CSI_UNIMPLEMENTED, undecodable bytes CSI_INVALID_ARGUMENT. */
csi_code csi_dispatch(csi_call *call, const char *method, const uint8_t *req, size_t len,
                      csi_reply *reply, csi_status *st);

/* ------------------------------------------------------------------------ */
/* Handlers (identity.c, node.c)                                            */
/* ------------------------------------------------------------------------ */

csi_code csi_identity_get_plugin_info(csi_call *call, const ProtobufCMessage *req, csi_reply *reply,
                                      csi_status *st);
csi_code csi_identity_get_plugin_capabilities(csi_call *call, const ProtobufCMessage *req,
                                              csi_reply *reply, csi_status *st);
csi_code csi_identity_probe(csi_call *call, const ProtobufCMessage *req, csi_reply *reply,
                            csi_status *st);

csi_code csi_node_get_info(csi_call *call, const ProtobufCMessage *req, csi_reply *reply,
                           csi_status *st);
csi_code csi_node_get_capabilities(csi_call *call, const ProtobufCMessage *req, csi_reply *reply,
                                   csi_status *st);
csi_code csi_node_get_volume_stats(csi_call *call, const ProtobufCMessage *req, csi_reply *reply,
                                   csi_status *st);
csi_code csi_node_publish(csi_call *call, const ProtobufCMessage *req, csi_reply *reply,
                          csi_status *st);
csi_code csi_node_unpublish(csi_call *call, const ProtobufCMessage *req, csi_reply *reply,
                            csi_status *st);

/* ------------------------------------------------------------------------ */
/* Self-registration with the kubelet (register.c)                          */
/* ------------------------------------------------------------------------ */

typedef enum {
    CSI_REG_OFF = 0,    /* --self-register=false, or no plugin watcher here */
    CSI_REG_WAITING,    /* socket served, the kubelet has not answered yet */
    CSI_REG_REGISTERED, /* NotifyRegistrationStatus{plugin_registered: true} */
    CSI_REG_REFUSED,    /* the kubelet refused us; the reason is in the log */
} csi_reg_status;

/* Decides p->reg from the flags: dir is --kubelet-registration-dir (NULL:
 * the default, which may be absent on a machine without a kubelet: then
 * self-registration is off, with a warning); kubelet_path is
 * --kubelet-registration-path (NULL: the path of endpoint). */
int csi_register_setup(csi_plugin *p, bool on, const char *dir, const char *kubelet_path,
                       const char *endpoint, mv_error *err);
void csi_register_clear(csi_plugin *p);
/* pluginregistration.Registration, served on the registration socket by
 * the same gRPC server as the CSI services. */
csi_code csi_register_get_info(csi_call *call, const ProtobufCMessage *req, csi_reply *reply,
                               csi_status *st);
csi_code csi_register_notify(csi_call *call, const ProtobufCMessage *req, csi_reply *reply,
                             csi_status *st);
/* The registration's lines of the /metrics page; caller frees. */
char *csi_register_metrics(const csi_plugin *p);

/* ------------------------------------------------------------------------ */
/* Pod events (events.c)                                                    */
/* ------------------------------------------------------------------------ */

#define CSI_DEFAULT_KUBE_TOKEN "/var/run/secrets/kubernetes.io/serviceaccount/token"
#define CSI_DEFAULT_KUBE_CA    "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"

typedef struct csi_events csi_events;
/* The pod a publish is for, from volume_context (podInfoOnMount). */
typedef struct csi_pod {
    const char *ns, *name, *uid;
} csi_pod;
/* Starts the event worker. api: https://HOST:PORT, "off", or NULL for
 * the in-cluster KUBERNETES_SERVICE_HOST/PORT (none: events off). */
int csi_events_start(csi_plugin *p, const char *api, const char *token_file, const char *ca_file,
                     mv_error *err);
/* Sends what is queued, then ends the worker. */
void csi_events_stop(csi_plugin *p);
/* Queues an event on pod; never blocks on the network, never fails. */
void csi_events_post(csi_plugin *p, const csi_pod *pod, bool warning, const char *reason,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The events' lines of the /metrics page; caller frees. */
char *csi_events_metrics(csi_plugin *p);

/* ------------------------------------------------------------------------ */
/* Mounts (mounts.c)                                                        */
/* ------------------------------------------------------------------------ */

/* Dry run: no mount, umount, mkdir or rmdir reaches the kernel. For the
 * fuzz target and for tests that must not need root. */
void csi_set_dry_run(bool on);
bool csi_dry_run(void);

/* Creates target (one level) and bind-mounts src onto it read-only with
 * nosuid,nodev. On failure nothing stays mounted. */
int csi_mount_ro_bind(const char *src, const char *target, mv_error *err);
/* Unmounts every mount stacked on target; not mounted is success. */
int csi_unmount(const char *target, mv_error *err);
/* Whether target is a mount point in /proc/self/mountinfo. */
int csi_is_mounted(const char *target, bool *out, mv_error *err);
/* Mount options of the top mount at target ("ro,nosuid,nodev,relatime"),
 * caller frees; -ENOENT when not mounted. */
int csi_mount_options(const char *target, char **out, mv_error *err);

/* ------------------------------------------------------------------------ */
/* Durable records (state.c)                                                */
/* ------------------------------------------------------------------------ */

/* Which target holds which tree, and with which arguments it was published.
 * One file per target under <cache>/csi/, replaced atomically. */
typedef struct csi_record {
    char *target;
    char *volume_id;
    char *reference;
    char *policy;
    char *include; /* comma-separated, as given; "" when none */
    char *exclude;
    char *subpath;
    char *tree_id;
    char *tree_path;
    /* Recorded since the index selector came: NULL in an older record,
     * which cannot say what it was published with. */
    char *kinds;
    char *artifact_type;
    char *platform;
    char *annotation;
} csi_record;

void csi_record_free(csi_record *r);
static inline void csi_record_freep(csi_record **r)
{
    csi_record_free(*r);
    *r = NULL;
}
#define _cleanup_record_ _cleanup_(csi_record_freep)

int csi_state_init(const char *dir, mv_error *err);
/* -ENOENT when target has no record. */
int csi_state_load(const char *dir, const char *target, csi_record **out, mv_error *err);
int csi_state_save(const char *dir, const csi_record *r, mv_error *err);
/* Removing a record that does not exist is success. */
int csi_state_remove(const char *dir, const char *target, mv_error *err);
/* All records; unreadable files are logged and skipped. */
int csi_state_list(const char *dir, csi_record ***out, size_t *n, mv_error *err);

/* Start-up: opens the cache (its recovery), then reconciles the records
 * with /proc/self/mountinfo: a record whose target is no longer mounted is
 * dropped with its pin. Sets plugin->ready when done, or plugin->failed
 * (and plugin->failure) when it fails. */
int csi_recover(csi_plugin *p, mv_error *err);

/* ------------------------------------------------------------------------ */
/* Shared background pulls (jobs.c)                                         */
/* ------------------------------------------------------------------------ */

typedef struct csi_job csi_job;

/* Finds the running pull for the same request (normalised reference,
 * policy, filters) and credentials (creds_id: the digest of the pod's
 * secret, "" without one), or starts one in the background. *joined tells
 * which. *rq is taken over (set to NULL) whatever the outcome. The caller
 * holds a reference until csi_job_release; the pull itself runs to its end
 * whether or not anybody still waits. */
int csi_job_get(csi_plugin *p, cache_request **rq, cache_request **probe, const char *creds_id,
                csi_job **out, bool *joined, mv_error *err);
/* Waits until the pull ends or deadline_ns (CLOCK_MONOTONIC) passes, or
 * with until_pulling also until it starts downloading: true when it ended. */
bool csi_job_wait(csi_job *j, int64_t deadline_ns, bool until_pulling);
/* After csi_job_wait returned true: the pull's code, error and result. */
int csi_job_result(csi_job *j, const cache_pull_result **res, const mv_error **err);
/* Blobs finished and started so far, for messages. */
void csi_job_progress(csi_job *j, unsigned *blobs_done, unsigned *blobs_started);
/* Whether the pull downloads (false until its first blob starts, and for
 * a cache hit), with the bytes it has fetched and the model's size. */
bool csi_job_bytes(csi_job *j, uint64_t *done, uint64_t *total);
/* At most one Pulling event per pod per interval: a kubelet polls a slow
 * publish and each of its calls waits its own pod's events. */
#define CSI_PULLING_EVENT_INTERVAL_NS ((int64_t)10 * 1000000000)
/* Whether pod (its namespace/name) is due a Pulling event from this job
 * at now_ns; when due, notes it sent. *first: none was sent for it yet;
 * *next_ns: when the next is due. */
bool csi_job_event_due(csi_job *j, const char *pod, int64_t now_ns, bool *first, int64_t *next_ns);
void csi_job_release(csi_job *j);
/* Runs the cache's GC when the disk or --max-size asks for it, and
 * refreshes the cache metrics. Called after each pull and at start. */
void csi_cache_maintain(csi_plugin *p);
/* Shutdown: refuses new pulls, asks every running one to stop, then waits
 * up to secs for them to end. Returns how many still run. */
int csi_jobs_shutdown(csi_plugin *p, int secs);

/* ------------------------------------------------------------------------ */
/* Metrics (metrics.c)                                                      */
/* ------------------------------------------------------------------------ */

typedef struct csi_metrics csi_metrics;
csi_metrics *csi_metrics_new(void);
void csi_metrics_free(csi_metrics *m);
/* Serves /metrics and /healthz for p on addr ("127.0.0.1:9808", ":9808"). */
int csi_metrics_start(csi_plugin *p, const char *addr, mv_error *err);
void csi_metrics_stop(csi_plugin *p);
void csi_metrics_pull(csi_metrics *m, csi_code result, double seconds, uint64_t bytes_origin,
                      uint64_t bytes_mirror, bool cache_hit);
void csi_metrics_publish(csi_metrics *m, csi_code result);
/* Layers a pull's layout plan skipped while it laid out others. */
void csi_metrics_layers_skipped(csi_metrics *m, size_t n);
/* Re-measures the cache's size and its file system's use. */
void csi_metrics_update_cache(csi_metrics *m, cache *c);
/* The /metrics page of p; caller frees. */
char *csi_metrics_render(csi_plugin *p);

/* ------------------------------------------------------------------------ */
/* gRPC server (server.c)                                                   */
/* ------------------------------------------------------------------------ */

/* Serves Identity and Node on endpoint ("unix:///csi/csi.sock"), and the
 * kubelet's Registration on p->reg.socket when set, until one of
 * stop_signals arrives (they must be blocked in every thread), then shuts
 * down: running pulls are cancelled, calls answered, the sockets removed. */
int csi_server_run(csi_plugin *p, const char *endpoint, const sigset_t *stop_signals,
                   mv_error *err);

#endif
