/* jobs.c — shared background pulls. A publish never pulls on its own call
 * thread: it joins the job for (normalised reference, policy, filters,
 * credentials), however the reference was spelled,
 * starting one when none runs, and waits for it with a deadline. The job
 * runs to its end on its own thread, so a kubelet that gives up after two
 * minutes and retries finds the same pull still going, and sixteen pods
 * asking for one model cause one download. */
#include <string.h>

#include "csi.h"

struct csi_job {
    csi_job *next; /* in the table while running */
    char *key;
    int refs; /* the thread's and each waiter's; under jobs.lock */
    bool done;
    volatile int cancel;
    atomic_uint blobs_started;
    atomic_uint blobs_done;

    /* Byte progress for the pods' Pulling events. The pull's thread alone
     * writes blobs[] and the sums; waiters read the atomics. pulling is set
     * once, after total, when the first blob download starts: a cache hit
     * never sets it. */
    cache_request *probe; /* the same request with policy Never, no secret: sizes the model */
    struct job_blob {
        char digest[OCI_DIGEST_MAX];
        uint64_t done, size;
    } * blobs;
    size_t n_blobs;
    uint64_t sum_done, sum_sizes; /* of blobs[] */
    int size_tries;
    atomic_bool pulling;
    _Atomic uint64_t bytes_total; /* the model, from its manifest */
    _Atomic uint64_t bytes_done;  /* of the blobs this pull fetches */

    /* The pods this job has posted Pulling events for, so a kubelet retry
     * of the same pod joining the job keeps its 10 s cadence; under
     * jobs.lock. */
    struct job_pod {
        char *key;
        int64_t last_ns;
    } * pods;
    size_t n_pods;

    /* the pull */
    csi_plugin *plugin;
    char *reference;   /* normalised, for the log */
    cache_request *rq; /* freed as soon as the pull ends: it holds the secret */

    /* the outcome, written once before done */
    int result;
    mv_error err;
    cache_pull_result res;
};

static void job_free(csi_job *j)
{
    free(j->key);
    free(j->reference);
    cache_request_free(j->rq);
    cache_request_free(j->probe);
    free(j->blobs);
    for (size_t i = 0; i < j->n_pods; i++)
        free(j->pods[i].key);
    free(j->pods);
    cache_pull_result_clear(&j->res);
    free(j);
}

/* Drops a reference; under jobs.lock. */
static void job_unref_locked(csi_job *j)
{
    if (--j->refs == 0)
        job_free(j);
}

/* The model's size as its manifest gives it: the distinct layers the
 * pull places after its include, exclude and kinds (cache_inspect decides,
 * with the selection the pull itself makes). Read from the store, where the pull has put the
 * manifest and config by the time its first layer starts, so it costs no registry request. 0 when
 * unknown (logged when log). */
static uint64_t model_size(csi_job *j, bool log)
{
    if (!j->probe)
        return 0;
    cache_inspection in = {0};
    mv_error err = MV_ERROR_INIT;
    if (cache_inspect(j->plugin->cache, j->probe, &in, &err) < 0) {
        if (log)
            mv_log("warn", "model_size_unknown", "reference", j->reference, "error", err.msg);
        return 0;
    }
    uint64_t total = in.bytes_selected;
    cache_inspection_clear(&in);
    return total;
}

/* Keeps the byte sums current from a blob event; on the pull's thread. */
static void track_bytes(csi_job *j, const cache_pull_event *ev)
{
    if (!ev->digest)
        return;
    struct job_blob *b = NULL;
    for (size_t i = 0; i < j->n_blobs && !b; i++)
        if (strcmp(j->blobs[i].digest, ev->digest) == 0)
            b = &j->blobs[i];
    if (!b) {
        j->blobs = mv_xrealloc(j->blobs, (j->n_blobs + 1) * sizeof(*j->blobs));
        b = &j->blobs[j->n_blobs++];
        memset(b, 0, sizeof(*b));
        snprintf(b->digest, sizeof(b->digest), "%s", ev->digest);
    }
    /* Running sums, so a progress event costs the lookup alone. */
    j->sum_done += ev->done - b->done;
    j->sum_sizes += ev->total - b->size;
    b->done = ev->done;
    b->size = ev->total;
    atomic_store(&j->bytes_done, j->sum_done);
    /* Without a size from the manifest, what is known to be fetched. */
    if (atomic_load(&j->bytes_total) < j->sum_sizes)
        atomic_store(&j->bytes_total, j->sum_sizes);
}

/* Announces the download to the waiters once the model's size is known:
 * at a blob's start, since the first may be the config, fetched through
 * the same path before the store has it. Should sizing keep failing, the
 * second try announces with what the blobs tell. */
static void note_pulling(csi_job *j, const cache_pull_event *ev)
{
    if (!atomic_load(&j->pulling) && ev->kind == CACHE_EV_BLOB_START) {
        uint64_t size = model_size(j, j->size_tries > 0);
        if (size || ++j->size_tries >= 2) {
            atomic_store(&j->bytes_total, size);
            csi_plugin *p = j->plugin;
            pthread_mutex_lock(&p->jobs.lock);
            atomic_store(&j->pulling, true);
            pthread_cond_broadcast(&p->jobs.cond); /* waiters announce the download */
            pthread_mutex_unlock(&p->jobs.lock);
        }
    }
    /* The config before that is not the model's bytes. */
    if (atomic_load(&j->pulling) &&
        (ev->kind == CACHE_EV_BLOB_START || ev->kind == PULL_EV_BLOB_PROGRESS ||
         ev->kind == CACHE_EV_BLOB_DONE))
        track_bytes(j, ev);
}

static void on_pull_event(void *ctx, const cache_pull_event *ev)
{
    csi_job *j = ctx;
    note_pulling(j, ev);
    if (ev->kind == CACHE_EV_BLOB_START) {
        atomic_fetch_add(&j->blobs_started, 1);
    } else if (ev->kind == CACHE_EV_BLOB_DONE) {
        atomic_fetch_add(&j->blobs_done, 1);
    } else if (ev->kind == CACHE_EV_RETRY) {
        mv_log("warn", "pull_retry", "reference", j->reference, "blob", ev->digest, "reason",
               ev->message);
    }
}

static void *job_main(void *arg)
{
    csi_job *j = arg;
    csi_plugin *p = j->plugin;
    cache_request *rq = j->rq;
    rq->registry = p->registry; /* rq->creds, a pod's secret, takes precedence */
    rq->pull.connections = p->connections;
    rq->pull.on_event = on_pull_event;
    rq->pull.event_ctx = j;
    rq->pull.cancel = &j->cancel;
    rq->pull.budget = p->budget;
    rq->pull.priority = PULL_PRIORITY_PUBLISH;

    mv_log("info", "pull_start", "reference", j->reference);
    int64_t t0 = csi_now_ns();
    mv_error err = MV_ERROR_INIT;
    cache_pull_result res = {0};
    /* A pod waits on this pull: pre-warm work in other processes yields. */
    int hold = -1;
    if (cache_publishing_hold(p->cache, &hold, &err) < 0) {
        mv_log("warn", "publishing_lock", "error", err.msg);
        mv_error_clear(&err);
    }
    int r = cache_pull(p->cache, rq, &res, &err);
    if (hold >= 0)
        close(hold);
    double secs = (double)(csi_now_ns() - t0) / 1e9;

    /* The credentials served this pull only. */
    cache_request_free(j->rq);
    j->rq = NULL;
    cache_request_free(j->probe);
    j->probe = NULL;

    char dur[32], bytes[32];
    snprintf(dur, sizeof(dur), "%.3f", secs);
    snprintf(bytes, sizeof(bytes), "%llu", (unsigned long long)res.bytes_downloaded);
    if (r < 0) {
        mv_log("warn", "pull_failed", "reference", j->reference, "seconds", dur, "code",
               csi_code_name(csi_code_from_errno(r)), "error", err.msg);
        csi_metrics_pull(p->metrics, csi_code_from_errno(r), secs, 0, 0, false);
    } else {
        mv_log("info", "pull_done", "reference", j->reference, "tree", res.tree_id, "seconds", dur,
               "bytes_downloaded", bytes, "cache_hit", res.cache_hit ? "true" : "false");
        /* Files were laid out, but not from every layer: say which were
         * left out, so a volume missing a file is explained. */
        if (res.n_skipped > 0) {
            char n[32];
            snprintf(n, sizeof(n), "%zu", res.n_skipped);
            mv_log("warn", "layer_skipped", "reference", j->reference, "manifest",
                   res.manifest_digest, "layers", n, "skipped", res.skipped);
            csi_metrics_layers_skipped(p->metrics, res.n_skipped);
        }
        uint64_t mirror = res.bytes_from_mirror;
        uint64_t origin = res.bytes_downloaded > mirror ? res.bytes_downloaded - mirror : 0;
        csi_metrics_pull(p->metrics, CSI_OK, secs, origin, mirror, res.cache_hit);
    }
    pthread_mutex_lock(&p->jobs.lock);
    j->result = r;
    mv_error_copy(&j->err, &err);
    j->res = res;
    j->done = true;
    /* Out of the table: a later publish starts afresh (a cache hit). */
    for (csi_job **pp = &p->jobs.running; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    }
    pthread_cond_broadcast(&p->jobs.cond);

    /* GC waits until the publishers waiting now have pinned the tree, or
     * it could collect it under them (bounded: a stuck caller does not
     * keep the cache from being collected). */
    int64_t until = csi_now_ns() + (int64_t)60 * 1000000000;
    struct timespec ts = {.tv_sec = until / 1000000000, .tv_nsec = until % 1000000000};
    while (j->refs > 1 && !p->jobs.stopping)
        if (pthread_cond_timedwait(&p->jobs.cond, &p->jobs.lock, &ts) == ETIMEDOUT)
            break;
    bool stopping = p->jobs.stopping;
    job_unref_locked(j);
    pthread_mutex_unlock(&p->jobs.lock);

    /* Only a pull that added to the cache can push it over its limits. A
     * hit adds nothing, and the check walks the whole cache to size it:
     * under load that walk was a tenth of the plugin's CPU. */
    if (r == 0 && !stopping && !res.cache_hit)
        csi_cache_maintain(p);

    pthread_mutex_lock(&p->jobs.lock);
    p->jobs.threads--;
    pthread_cond_broadcast(&p->jobs.cond);
    pthread_mutex_unlock(&p->jobs.lock);
    return NULL;
}

static void gc_once(csi_plugin *p)
{
    bool ran = false;
    cache_gc_result res = {0};
    mv_error err = MV_ERROR_INIT;
    if (cache_gc_if_needed(p->cache, &ran, &res, &err) < 0) {
        mv_log("warn", "gc_failed", "cache", p->cache_dir, "error", err.msg);
    } else if (ran) {
        char before[32], after[32], trees[32];
        snprintf(before, sizeof(before), "%llu", (unsigned long long)res.bytes_before);
        snprintf(after, sizeof(after), "%llu", (unsigned long long)res.bytes_after);
        snprintf(trees, sizeof(trees), "%zu", res.trees_removed);
        mv_log(res.target_reached ? "info" : "warn", "gc", "bytes_before", before, "bytes_after",
               after, "trees_removed", trees, "target_reached",
               res.target_reached ? "true" : "false");
    }
    csi_metrics_update_cache(p->metrics, p->cache);
}

void csi_cache_maintain(csi_plugin *p)
{
    if (!p->cache)
        return;
    /* One collection at a time; a request arriving during one gets a
     * further pass, since what it pulled may not have been counted. */
    pthread_mutex_lock(&p->gc.lock);
    if (p->gc.running) {
        p->gc.again = true;
        pthread_mutex_unlock(&p->gc.lock);
        return;
    }
    p->gc.running = true;
    do {
        p->gc.again = false;
        pthread_mutex_unlock(&p->gc.lock);
        gc_once(p);
        pthread_mutex_lock(&p->gc.lock);
    } while (p->gc.again);
    p->gc.running = false;
    pthread_mutex_unlock(&p->gc.lock);
}

/* Appends the globs of v to key, \x02 before each. */
static void key_globs(char **key, char *const *v)
{
    for (; v && *v; v++) {
        char *k = mv_xasprintf("%s\x02%s", *key, *v);
        free(*key);
        *key = k;
    }
}

/* Identifies what a job produces: the normalised reference, so that
 * "host/m" and "host/m:latest" share a pull, the filter and the index
 * selector. The credentials enter only as a digest, so one tenant's secret
 * never serves another's pull. */
static char *job_key(const cache_request *rq, const char *creds_id)
{
    static const char *const policies[] = {"IfNotPresent", "Always", "Never"};
    const char *policy = (unsigned)rq->policy < 3 ? policies[rq->policy] : "?";
    /* The fields cannot hold NUL, so NUL separates them unambiguously;
     * written as \x01 (fields) and \x02 (globs) to keep the key a C string. */
    char *key = mv_xasprintf("%s\x01%s\x01%s\x01%s", rq->reference, policy,
                             rq->subpath ? rq->subpath : "", creds_id ? creds_id : "");
    char *k = mv_xasprintf("%s\x01include", key);
    free(key);
    key_globs(&k, rq->include);
    key = mv_xasprintf("%s\x01exclude", k);
    free(k);
    key_globs(&key, rq->exclude);
    k = mv_xasprintf("%s\x01kinds", key);
    free(key);
    key_globs(&k, rq->kinds);
    /* Two selectors on one index reference pick different manifests. Last,
     * so an annotation value with any byte in it stays unambiguous. */
    _cleanup_free_ char *sel = oci_index_selector_string(&rq->select);
    key = k;
    k = mv_xasprintf("%s\x01select\x01%s", key, sel);
    free(key);
    return k;
}

int csi_job_get(csi_plugin *p, cache_request **rq, cache_request **probe, const char *creds_id,
                csi_job **out, bool *joined, mv_error *err)
{
    _cleanup_(cache_request_freep) cache_request *req = MV_STEAL(*rq);
    _cleanup_(cache_request_freep) cache_request *preq = probe ? MV_STEAL(*probe) : NULL;
    _cleanup_free_ char *key = job_key(req, creds_id);

    pthread_mutex_lock(&p->jobs.lock);
    if (p->jobs.stopping) {
        pthread_mutex_unlock(&p->jobs.lock);
        return mv_error_set(err, -ECANCELED, "the plugin is shutting down");
    }
    for (csi_job *j = p->jobs.running; j; j = j->next) {
        if (strcmp(j->key, key) == 0) {
            j->refs++;
            pthread_mutex_unlock(&p->jobs.lock);
            *out = j;
            *joined = true;
            return 0;
        }
    }

    csi_job *j = mv_xcalloc(1, sizeof(*j));
    j->key = MV_STEAL(key);
    j->refs = 2; /* the thread's and the caller's */
    j->plugin = p;
    j->reference = mv_xstrdup(req->reference);
    j->rq = MV_STEAL(req);
    j->probe = MV_STEAL(preq);
    atomic_init(&j->blobs_started, 0);
    atomic_init(&j->blobs_done, 0);
    atomic_init(&j->pulling, false);
    atomic_init(&j->bytes_total, 0);
    atomic_init(&j->bytes_done, 0);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, CSI_JOB_STACK);
    pthread_t t;
    int r = pthread_create(&t, &attr, job_main, j);
    pthread_attr_destroy(&attr);
    if (r != 0) {
        pthread_mutex_unlock(&p->jobs.lock);
        int rc = mv_error_errno(err, -r, "start pull of %s", j->reference);
        job_free(j);
        return rc;
    }
    j->next = p->jobs.running;
    p->jobs.running = j;
    p->jobs.threads++;
    pthread_mutex_unlock(&p->jobs.lock);
    *out = j;
    *joined = false;
    return 0;
}

bool csi_job_wait(csi_job *j, int64_t deadline_ns, bool until_pulling)
{
    struct timespec ts = {.tv_sec = deadline_ns / 1000000000, .tv_nsec = deadline_ns % 1000000000};
    csi_plugin *p = j->plugin;
    pthread_mutex_lock(&p->jobs.lock);
    while (!j->done && !(until_pulling && atomic_load(&j->pulling))) {
        if (pthread_cond_timedwait(&p->jobs.cond, &p->jobs.lock, &ts) == ETIMEDOUT)
            break;
    }
    bool done = j->done;
    pthread_mutex_unlock(&p->jobs.lock);
    return done;
}

int csi_job_result(csi_job *j, const cache_pull_result **res, const mv_error **err)
{
    /* done is set once and the outcome is never written after it. */
    *res = &j->res;
    *err = &j->err;
    return j->result;
}

void csi_job_progress(csi_job *j, unsigned *blobs_done, unsigned *blobs_started)
{
    *blobs_done = atomic_load(&j->blobs_done);
    *blobs_started = atomic_load(&j->blobs_started);
}

bool csi_job_bytes(csi_job *j, uint64_t *done, uint64_t *total)
{
    bool pulling = atomic_load(&j->pulling);
    *done = atomic_load(&j->bytes_done);
    *total = atomic_load(&j->bytes_total);
    if (*done > *total)
        *done = *total;
    return pulling;
}

bool csi_job_event_due(csi_job *j, const char *pod, int64_t now_ns, bool *first, int64_t *next_ns)
{
    csi_plugin *p = j->plugin;
    pthread_mutex_lock(&p->jobs.lock);
    struct job_pod *e = NULL;
    for (size_t i = 0; i < j->n_pods && !e; i++)
        if (strcmp(j->pods[i].key, pod) == 0)
            e = &j->pods[i];
    *first = e == NULL;
    bool due = !e || now_ns - e->last_ns >= CSI_PULLING_EVENT_INTERVAL_NS;
    if (!e && due) {
        j->pods = mv_xrealloc(j->pods, (j->n_pods + 1) * sizeof(*j->pods));
        e = &j->pods[j->n_pods++];
        e->key = mv_xstrdup(pod);
    }
    if (due)
        e->last_ns = now_ns;
    *next_ns = e->last_ns + CSI_PULLING_EVENT_INTERVAL_NS;
    pthread_mutex_unlock(&p->jobs.lock);
    return due;
}

void csi_job_release(csi_job *j)
{
    if (!j)
        return;
    csi_plugin *p = j->plugin;
    pthread_mutex_lock(&p->jobs.lock);
    job_unref_locked(j);
    pthread_cond_broadcast(&p->jobs.cond); /* the job may wait for its waiters */
    pthread_mutex_unlock(&p->jobs.lock);
}

int csi_jobs_shutdown(csi_plugin *p, int secs)
{
    int64_t deadline = csi_now_ns() + (int64_t)secs * 1000000000;
    struct timespec ts = {.tv_sec = deadline / 1000000000, .tv_nsec = deadline % 1000000000};
    pthread_mutex_lock(&p->jobs.lock);
    p->jobs.stopping = true;
    for (csi_job *j = p->jobs.running; j; j = j->next)
        j->cancel = 1;
    pthread_cond_broadcast(&p->jobs.cond);
    while (p->jobs.threads > 0) {
        if (pthread_cond_timedwait(&p->jobs.cond, &p->jobs.lock, &ts) == ETIMEDOUT) {
            char n[16];
            snprintf(n, sizeof(n), "%d", p->jobs.threads);
            mv_log("warn", "pulls_still_running", "count", n);
            break;
        }
    }
    int left = p->jobs.threads;
    pthread_mutex_unlock(&p->jobs.lock);
    return left;
}
