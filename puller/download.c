/* download.c — pull_blobs: many blobs at once on one curl multi event loop.
 * A blob at or above the threshold is split into ranges fetched over
 * separate HTTP/1.1 connections and written with pwrite into the caller's
 * fd; smaller blobs are one stream. The URL is resolved once per blob (a
 * registry redirect is followed by hand, so the Authorization header stays
 * with the registry) and every range goes to the final URL. Ranges retry on
 * their own with backoff; the bytes written so far (completed ranges and
 * the written prefix of each range in flight) are recorded for resume, and a
 * resumed range asks for its first missing byte; the in-order hasher
 * (hashq.c) verifies the digest as the prefix fills. */
#include "puller-internal.h"

#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_ACTIVE_JOBS 32
#define MAX_RESOLVES    4
/* A light record (saver.c) costs a write and a rename: keep it close behind
 * the download, so a killed pull fetches little again. */
#define SAVE_INTERVAL_MS 200
/* How often the written prefixes of ranges in flight are handed to the
 * saver (a completed range goes at once). Well under SAVE_INTERVAL_MS, so
 * the record the saver writes is at most this much older than the disk. */
#define PROGRESS_INTERVAL_MS 50
/* A blob fetched as one stream (below the range threshold, or from a
 * server that ignores Range) keeps a record too from this size on: at
 * 2 MiB/s even a 16 MiB stream takes 8 s. Below it a record's write costs
 * more than fetching the blob again. */
#define STREAM_RECORD_MIN (1u << 20)
#define EVENT_INTERVAL_MS 200
/* How often a pull that waits for the node's budget asks again. */
#define WAIT_POLL_MS   50
#define ERROR_BODY_MAX (64u << 10)
/* libcurl hands the write callback at most 16 KiB (CURL_MAX_WRITE_SIZE) at
 * a time: a 1 GiB blob was 65,606 pwrites. Gathered to 64 KiB per transfer,
 * a 1 GiB pull from a registry on loopback went from 2.30 s to 1.86 s
 * (medians of 5, 2-core VM, where syscalls are dear). 256 KiB and 1 MiB were
 * slower than 64 KiB there, not faster. */
#define WRITE_GATHER (64u << 10)

typedef enum { R_PENDING = 0, R_ACTIVE, R_DONE } range_state;

typedef struct dl_range {
    uint64_t start, end; /* [start, end) */
    uint64_t got;        /* bytes written from start */
    int attempts;
    range_state state;
    uint64_t not_before; /* monotonic ms: backoff */
} dl_range;

typedef struct dl_job {
    pull_blob_job *job;
    oci_digest_alg alg;
    uint64_t size;
    bool started, finished;
    bool ranged;    /* Range requests per chunk; false: one stream */
    bool restarted; /* a resumed download failed its digest: fetched again */
    dl_range *r;
    size_t nr;
    size_t front;        /* first range not done */
    uint64_t contiguous; /* [0, contiguous) written */
    char *url;           /* final URL */
    char *url_host;      /* its host:port, what the node's budget counts */
    size_t ep;           /* endpoint that resolved it */
    bool url_is_registry;
    bool from_mirror;
    bool no_mirrors;
    bool need_resolve;
    int resolves;         /* resolutions since the last completed range */
    int resolve_attempts; /* transient failures of the current resolution */
    uint64_t resolve_at;  /* monotonic ms: next resolution attempt */
    long last_status;     /* last refusal that asked for a new resolution */
    char last_host[256];
    int inflight;
    unsigned plan; /* bumped when ranges are rebuilt or the job ends */
    pull_hashq *hq;
    pull_rangeset done;    /* completed ranges */
    pull_rangeset written; /* scratch: done plus the prefixes of ranges in flight */
    bool dirty;            /* bytes were written since the last save or handover */
    bool completed;        /* a range completed since then: start its writeback */
    uint64_t last_handover;
    bool handed;   /* the saver holds ranges it may not have written yet */
    int save_slot; /* in x->saver, or -1 */
    pull_saver *saver;
    uint64_t last_save;
    uint64_t last_event;
} dl_job;

typedef struct dl_xfer {
    struct dl_xfer *prev, *next;
    pull_client *c;
    dl_job *j;
    size_t ri;     /* index of its range in j->r */
    unsigned plan; /* j->plan when started */
    dl_range *r;   /* valid while plan == j->plan */
    CURL *h;
    struct curl_slist *hdrs;
    uint64_t req_start; /* first byte asked for */
    uint64_t skip;      /* bytes of the body to drop (a 200 answer to a Range) */
    bool checked;       /* status and Content-Range looked at */
    bool writing;       /* body is blob bytes */
    bool range_ignored; /* 200 to a Range request in ranged mode */
    long status;
    size_t discarded;
    char *content_range;
    char *retry_after;
    int fatal; /* negative code: end the job */
    char fatal_msg[256];
    char *buf;     /* body bytes not yet written: they follow r->got */
    size_t blen;   /* < WRITE_GATHER */
    char *host;    /* the budget slot it holds (its job's url_host then), or NULL */
    bool no_reuse; /* CURLOPT_FORBID_REUSE set */
} dl_xfer;

typedef struct dl_ctx {
    pull_client *c;
    dl_job *jobs;
    size_t n;
    int inflight;
    char *scope;
    dl_xfer *xfers;    /* live transfers */
    pull_saver *saver; /* started with the first ranged blob */
    int allowed;       /* connections the node's budget lets this pull hold now */
    /* Budget slots held for connections a finished transfer left idle in
     * curl's cache, by host: the next range to that host reuses the
     * connection and the slot, and another pull cannot take the slot while
     * the socket is still open. */
    struct {
        char *host;
        int n;
    } spare[4];
    int spares;
} dl_ctx;

static void emit(pull_client *c, pull_event_kind kind, dl_job *j, const char *msg)
{
    if (!c->opt.on_event)
        return;
    pull_event ev = {.kind = kind,
                     .digest = j->job->desc->digest,
                     .done = j->job->resumed + j->job->downloaded,
                     .total = j->size,
                     .message = msg};
    if (ev.done > ev.total)
        ev.done = ev.total;
    c->opt.on_event(c->opt.event_ctx, &ev);
}

static void job_fail(dl_job *j, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Stops the saver writing j's record: before the record is removed,
 * rewritten here, or abandoned. */
static void detach_saver(dl_job *j)
{
    if (j->save_slot >= 0)
        pull_saver_close(j->saver, j->save_slot);
    j->save_slot = -1;
    if (j->handed)
        j->dirty = true;
    j->handed = false;
}

/* Removes j's resume record for good (a failed unlink leaves a stale record,
 * which the digest check makes harmless). */
static void forget_record(dl_job *j)
{
    detach_saver(j);
    j->dirty = false;
    if (j->job->state_path)
        unlink(j->job->state_path);
}

/* Whether j keeps a resume record. */
static bool keeps_record(const dl_job *j)
{
    return j->job->state_path && (j->ranged || j->size >= STREAM_RECORD_MIN);
}

/* Joins j to the saver thread, which keeps its resume record. */
static void attach_saver(dl_ctx *x, dl_job *j)
{
    if (!keeps_record(j))
        return;
    if (!x->saver)
        x->saver = pull_saver_start(SAVE_INTERVAL_MS);
    if (x->saver) {
        j->saver = x->saver;
        j->save_slot =
            pull_saver_add(x->saver, j->job->state_path, j->job->fd, j->job->desc->digest, j->size);
    }
}

/* The bytes of j known written: the completed ranges and the written prefix
 * of every other range. Bytes still gathered in a transfer's buffer are not
 * in r->got, so they are not claimed. Into j->written. */
static const pull_rangeset *job_written(dl_job *j)
{
    pull_rangeset *w = &j->written;
    w->n = 0;
    for (size_t k = 0; k < j->done.n; k++)
        pull_rangeset_add(w, j->done.iv[k][0], j->done.iv[k][1]);
    for (size_t i = j->front; i < j->nr; i++) {
        const dl_range *r = &j->r[i];
        if (r->state != R_DONE && r->got > 0)
            pull_rangeset_add(w, r->start, r->start + r->got);
    }
    return w;
}

/* Records j's written bytes for resume: handed to the saver thread in the
 * normal course (at once when a range completed, else at most every
 * PROGRESS_INTERVAL_MS), written here when forced (the pull is ending) or
 * when no saver thread could start. */
static void save_state(dl_job *j, bool force)
{
    if (force)
        detach_saver(j);
    if (!keeps_record(j) || !j->dirty)
        return;
    uint64_t now = pull_now_ms();
    if (j->save_slot >= 0) {
        if (!j->completed && now - j->last_handover < PROGRESS_INTERVAL_MS)
            return;
        pull_saver_update(j->saver, j->save_slot, job_written(j), j->completed);
        j->dirty = j->completed = false;
        j->handed = true;
        j->last_handover = now;
        return;
    }
    if (!force && now - j->last_save < SAVE_INTERVAL_MS)
        return;
    mv_error e = MV_ERROR_INIT;
    /* A record that cannot be written only costs a later resume. */
    if (pull_rangestate_save(j->job->state_path, j->job->fd, j->job->desc->digest, j->size,
                             job_written(j), true, &e) == 0)
        j->dirty = j->completed = false;
    j->last_save = now;
}

static bool xfer_current(const dl_xfer *t)
{
    return !t->j->finished && t->plan == t->j->plan;
}

static bool spare_take(dl_ctx *x, const char *host)
{
    for (size_t i = 0; i < 4; i++) {
        if (x->spare[i].n > 0 && strcmp(x->spare[i].host, host) == 0) {
            x->spare[i].n--;
            x->spares--;
            return true;
        }
    }
    return false;
}

/* Keeps t's slot for the idle connection it leaves; false when there is no
 * row for its host (the slot is given back then). */
static bool spare_put(dl_ctx *x, const char *host)
{
    for (size_t i = 0; i < 4; i++) {
        if (x->spare[i].host && strcmp(x->spare[i].host, host) == 0) {
            x->spare[i].n++;
            x->spares++;
            return true;
        }
    }
    for (size_t i = 0; i < 4; i++) {
        if (x->spare[i].n == 0) {
            free(x->spare[i].host);
            x->spare[i].host = mv_xstrdup(host);
            x->spare[i].n = 1;
            x->spares++;
            return true;
        }
    }
    return false;
}

/* Gives back every spare slot (of host, or all when NULL) and closes the
 * idle connections they stood for: with none in flight, by a new multi
 * handle; else they are marked for closing as the pull goes on. */
static void spares_give(dl_ctx *x, const char *host)
{
    bool gave = false;
    for (size_t i = 0; i < 4; i++) {
        if (x->spare[i].n == 0 || (host && strcmp(x->spare[i].host, host) != 0))
            continue;
        for (; x->spare[i].n > 0; x->spare[i].n--, x->spares--)
            pull_budget_give(x->c->tenant, x->spare[i].host);
        gave = true;
    }
    if (gave && x->inflight == 0)
        pull_client_reset_multi(x->c);
}

static void xfer_free_keep(dl_ctx *x, dl_xfer *t, bool keep)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        x->xfers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    curl_multi_remove_handle(x->c->multi, t->h);
    curl_easy_cleanup(t->h);
    curl_slist_free_all(t->hdrs);
    free(t->buf);
    free(t->content_range);
    free(t->retry_after);
    if (t->host) {
        /* A connection curl may keep: its slot stays with it. */
        if (!keep || t->no_reuse || !spare_put(x, t->host))
            pull_budget_give(x->c->tenant, t->host);
        free(t->host);
    }
    t->j->inflight--;
    x->inflight--;
    free(t);
}

/* A transfer stopped before its end: curl closes its connection. */
static void xfer_free(dl_ctx *x, dl_xfer *t)
{
    xfer_free_keep(x, t, false);
}

/* Stops every transfer of j (a fatal error or a change of plan): they are
 * freed by the next sweep. */
static void abort_job_xfers(dl_job *j)
{
    for (size_t i = 0; i < j->nr; i++)
        if (j->r[i].state == R_ACTIVE)
            j->r[i].state = R_PENDING;
    j->plan++;
}

static void job_fail(dl_job *j, int code, const char *fmt, ...)
{
    if (j->finished)
        return;
    va_list ap;
    va_start(ap, fmt);
    char msg[MV_ERROR_MSG_MAX];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    mv_error_set(&j->job->err, code, "%s", msg);
    j->job->result = code;
    j->finished = true;
    abort_job_xfers(j);
    pull_hashq_abort(j->hq);
    j->hq = NULL;
    if (code == -EBADMSG && j->job->state_path) {
        /* Nothing of this attempt can be trusted: start clean next time. */
        forget_record(j);
    } else {
        save_state(j, true);
    }
}

static void advance_contiguous(dl_job *j)
{
    while (j->front < j->nr && j->r[j->front].state == R_DONE)
        j->front++;
    uint64_t c = j->front < j->nr ? j->r[j->front].start + j->r[j->front].got : j->size;
    if (c > j->contiguous) {
        j->contiguous = c;
        if (j->hq)
            pull_hashq_advance(j->hq, c);
    }
}

static void build_ranges(pull_client *c, dl_job *j, const pull_rangeset *have)
{
    j->plan++;
    free(j->r);
    j->r = NULL;
    j->nr = 0;
    j->front = 0;
    if (!j->ranged) {
        j->r = mv_xcalloc(1, sizeof(*j->r));
        j->r[0].start = 0;
        j->r[0].end = j->size;
        /* One stream resumes where the written prefix ends. */
        j->r[0].got = have ? pull_rangeset_prefix(have, 0, j->size) : j->contiguous;
        j->nr = 1;
        if (j->r[0].got >= j->size)
            j->r[0].state = R_DONE;
        return;
    }
    uint64_t chunk = c->opt.chunk_size;
    j->nr = (size_t)((j->size + chunk - 1) / chunk);
    j->r = mv_xcalloc(j->nr, sizeof(*j->r));
    for (size_t i = 0; i < j->nr; i++) {
        dl_range *r = &j->r[i];
        r->start = (uint64_t)i * chunk;
        r->end = r->start + chunk > j->size ? j->size : r->start + chunk;
        /* A range resumes at its first missing byte; bytes a record holds
         * past a gap (another chunk size wrote it) are fetched again. */
        r->got = have ? pull_rangeset_prefix(have, r->start, r->end) : 0;
        if (r->got == r->end - r->start)
            r->state = R_DONE;
    }
}

static void set_url(dl_job *j, const char *url)
{
    free(j->url);
    free(j->url_host);
    j->url = mv_xstrdup(url);
    j->url_host = pull_url_hostport(url);
    if (!j->url_host)
        j->url_host = mv_xstrdup("?");
}

/* Finds the URL ranges go to: GET with Range: bytes=0-0 without following
 * redirects. A 3xx names storage; 206 means the registry serves ranges
 * itself; 200 means it ignores Range, so the blob is one stream. */
static int resolve(dl_ctx *x, dl_job *j)
{
    pull_client *c = x->c;
    const char *digest = j->job->desc->digest;
    if (++j->resolves > MAX_RESOLVES) {
        /* Fresh URLs and tokens keep being refused without progress. */
        job_fail(j, j->last_status == 403 ? -EPERM : -EACCES,
                 "blob %s: %ld from %s after refreshing credentials", digest, j->last_status,
                 j->last_host[0] ? j->last_host : c->registry);
        j->job->err.http_status = (int)j->last_status;
        return j->job->result;
    }
    _cleanup_free_ char *path = mv_xasprintf("blobs/%s", digest);
    const char *hdrs[] = {"Range: bytes=0-0", NULL};
    pull_http_req req = {.method = "GET",
                         .path = path,
                         .headers = hdrs,
                         .use_mirrors = !j->no_mirrors,
                         .follow = false,
                         .body_max = 1};
    pull_http_resp resp;
    mv_error e = MV_ERROR_INIT;
    int rc = pull_http_do(c, &req, &resp, &e);
    long s = rc == 0 ? resp.status : 0;
    if (rc == 0 && (s == 301 || s == 302 || s == 303 || s == 307 || s == 308) && resp.location) {
        set_url(j, resp.location);
        j->ep = resp.endpoint;
        j->url_is_registry = j->url_host && strcmp(j->url_host, c->ep[resp.endpoint].hostport) == 0;
        j->from_mirror = c->ep[resp.endpoint].is_mirror;
        j->resolve_attempts = 0;
        pull_http_resp_clear(&resp);
        return 0;
    }
    if (rc == 0 && (s == 200 || s == 206)) {
        set_url(j, resp.url);
        j->ep = resp.endpoint;
        j->url_is_registry = true;
        j->from_mirror = c->ep[resp.endpoint].is_mirror;
        j->resolve_attempts = 0;
        if (s == 200 && j->ranged) {
            j->ranged = false;
            build_ranges(c, j, NULL);
        }
        pull_http_resp_clear(&resp);
        return 0;
    }
    bool transient = rc < 0 ? (rc == -EIO || rc == -ETIMEDOUT || rc == -ECONNREFUSED)
                            : (s >= 500 || s == 429 || s == 408);
    if (!transient || ++j->resolve_attempts > c->opt.max_retries) {
        int code;
        if (rc < 0) {
            code = rc;
            job_fail(j, code, "blob %s: %s", digest, e.msg);
        } else {
            mv_error se = MV_ERROR_INIT;
            code = pull_http_status_error(&resp, &se, "");
            job_fail(j, code, "blob %s%s", digest, se.msg);
            j->job->err.http_status = (int)s;
        }
        pull_http_resp_clear(&resp);
        return code;
    }
    /* Try again later from the event loop, so the other transfers keep
     * flowing meanwhile; a transient failure is no refusal. */
    j->resolves--;
    long wait = rc == 0 ? pull_retry_after(resp.retry_after) : 0;
    uint64_t ms = pull_backoff_ms(j->resolve_attempts - 1, wait);
    j->need_resolve = true;
    j->resolve_at = pull_now_ms() + ms;
    char msg[MV_ERROR_MSG_MAX + 160];
    if (rc < 0)
        snprintf(msg, sizeof(msg), "blob %s: %s; retry %d/%d in %.1f s", digest, e.msg,
                 j->resolve_attempts, c->opt.max_retries, (double)ms / 1000.0);
    else
        snprintf(msg, sizeof(msg), "blob %s: %ld from %s; retry %d/%d in %.1f s", digest, s,
                 resp.host, j->resolve_attempts, c->opt.max_retries, (double)ms / 1000.0);
    c->stats.retries++;
    emit(c, PULL_EV_RETRY, j, msg);
    pull_http_resp_clear(&resp);
    return -EAGAIN;
}

static int start_job(dl_ctx *x, dl_job *j)
{
    pull_client *c = x->c;
    pull_blob_job *bj = j->job;
    const char *digest = bj->desc->digest;
    j->started = true;
    j->last_save = pull_now_ms();
    if (bj->desc->size < 0) {
        job_fail(j, -EINVAL, "blob %s: negative size", digest);
        return -EINVAL;
    }
    j->size = (uint64_t)bj->desc->size;
    mv_error e = MV_ERROR_INIT;
    if (oci_digest_alg_of(digest, &j->alg, &e) < 0) {
        job_fail(j, -EINVAL, "blob %s: %s", digest, e.msg);
        return -EINVAL;
    }
    j->ranged = j->size >= c->opt.range_threshold && j->size > c->opt.chunk_size;
    if (ftruncate(bj->fd, (off_t)j->size) < 0) {
        int en = errno;
        job_fail(j, -en, "blob %s: sizing the partial file: %s", digest, strerror(en));
        return -en;
    }
    /* Reserve the space up front so a full disk fails now, not after the
     * download. fallocate(2) rather than posix_fallocate(3): where the file
     * system cannot, glibc would emulate it by writing every block. */
    int frc = j->size && fallocate(bj->fd, 0, 0, (off_t)j->size) < 0 ? errno : 0;
    if (frc == ENOSPC || frc == EDQUOT) {
        char sz[32];
        job_fail(j, -ENOSPC, "blob %s: no space left for %s", digest,
                 mv_format_size(j->size, sz, sizeof(sz)));
        return -ENOSPC;
    }
    pull_rangeset have = {0};
    if (keeps_record(j))
        pull_rangestate_load(bj->state_path, digest, j->size, &have, NULL);
    attach_saver(x, j);
    build_ranges(c, j, &have);
    pull_rangeset_clear(&have);
    for (size_t i = 0; i < j->nr; i++) {
        bj->resumed += j->r[i].got;
        if (j->r[i].state == R_DONE)
            pull_rangeset_add(&j->done, j->r[i].start, j->r[i].end);
    }
    if (pull_hashq_start(bj->fd, j->alg, &j->hq, &e) < 0) {
        job_fail(j, e.code, "blob %s: %s", digest, e.msg);
        return e.code;
    }
    advance_contiguous(j);
    emit(c, PULL_EV_BLOB_START, j, NULL);
    if (j->size > 0 && j->contiguous < j->size) {
        int rc = resolve(x, j);
        if (rc < 0 && rc != -EAGAIN)
            return rc;
    }
    return 0;
}

/* A resumed blob whose digest does not match: the record claimed bytes the
 * partial file does not hold (a power loss after a light save, or a file
 * changed underneath). Start again from zero, once. */
static void restart_clean(dl_ctx *x, dl_job *j, const char *got)
{
    const char *digest = j->job->desc->digest;
    forget_record(j);
    j->restarted = true;
    j->job->resumed = 0;
    j->contiguous = 0;
    pull_rangeset_clear(&j->done);
    build_ranges(x->c, j, NULL);
    mv_error e = MV_ERROR_INIT;
    if (pull_hashq_start(j->job->fd, j->alg, &j->hq, &e) < 0) {
        job_fail(j, e.code, "blob %s: %s", digest, e.msg);
        return;
    }
    attach_saver(x, j);
    char msg[MV_ERROR_MSG_MAX];
    snprintf(msg, sizeof(msg), "blob %s: resumed bytes do not verify (got %s); fetching it again",
             digest, got);
    x->c->stats.retries++;
    emit(x->c, PULL_EV_RETRY, j, msg);
}

static void finish_job(dl_ctx *x, dl_job *j)
{
    pull_client *c = x->c;
    const char *digest = j->job->desc->digest;
    char got[OCI_DIGEST_MAX];
    mv_error e = MV_ERROR_INIT;
    pull_hashq *hq = j->hq;
    j->hq = NULL;
    if (pull_hashq_finish(hq, j->size, got, &e) < 0) {
        job_fail(j, e.code, "blob %s: %s", digest, e.msg);
        return;
    }
    if (strcmp(got, digest) != 0 && j->job->resumed > 0 && !j->restarted) {
        restart_clean(x, j, got);
        return;
    }
    if (strcmp(got, digest) != 0) {
        _cleanup_free_ char *hp = j->url ? pull_url_hostport(j->url) : NULL;
        job_fail(j, -EBADMSG, "blob %s: digest mismatch from %s: got %s", digest,
                 hp ? hp : c->registry, got);
        return;
    }
    /* The bytes are verified. The caller makes the blob visible only once
     * pull_blobs returns, which may be seconds of other blobs later: until
     * then the record claims the whole blob, so a kill in between costs a
     * re-hash, not the download. Removed when pull_blobs ends. */
    j->finished = true;
    j->job->result = 0;
    if (keeps_record(j)) {
        pull_rangeset_clear(&j->done);
        pull_rangeset_add(&j->done, 0, j->size);
        j->dirty = j->completed = true;
        save_state(j, false);
    }
    emit(c, PULL_EV_BLOB_DONE, j, NULL);
    if (j->job->on_verified)
        j->job->on_verified(j->job->ud, j->job);
}

static size_t xfer_header(char *buf, size_t size, size_t nmemb, void *ud)
{
    dl_xfer *t = ud;
    size_t len = size * nmemb;
    if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        free(t->content_range);
        free(t->retry_after);
        t->content_range = t->retry_after = NULL;
        return len;
    }
    const char *colon = memchr(buf, ':', len);
    if (!colon)
        return len;
    size_t nlen = (size_t)(colon - buf);
    const char *v = colon + 1, *end = buf + len;
    while (v < end && *v == ' ')
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    if (nlen == 13 && strncasecmp(buf, "content-range", 13) == 0) {
        free(t->content_range);
        t->content_range = mv_xstrndup(v, (size_t)(end - v));
    } else if (nlen == 11 && strncasecmp(buf, "retry-after", 11) == 0) {
        free(t->retry_after);
        t->retry_after = mv_xstrndup(v, (size_t)(end - v));
    }
    return len;
}

/* Looks at the status before the first body byte: decides whether the body
 * is blob bytes, and checks Content-Range against what was asked. */
static bool xfer_check(dl_xfer *t)
{
    dl_job *j = t->j;
    dl_range *r = t->r;
    curl_easy_getinfo(t->h, CURLINFO_RESPONSE_CODE, &t->status);
    t->checked = true;
    bool asked_range = j->ranged || t->req_start > 0;
    if (t->status == 206) {
        unsigned long long a, b;
        char total[32];
        uint64_t want_end = r->end - 1;
        if (!t->content_range ||
            sscanf(t->content_range, "bytes %llu-%llu/%31s", &a, &b, total) != 3 ||
            a != t->req_start || b != want_end ||
            (strcmp(total, "*") != 0 && strtoull(total, NULL, 10) != j->size)) {
            snprintf(t->fatal_msg, sizeof(t->fatal_msg),
                     "Content-Range \"%s\" does not match bytes %llu-%llu/%llu",
                     t->content_range ? t->content_range : "(none)",
                     (unsigned long long)t->req_start, (unsigned long long)want_end,
                     (unsigned long long)j->size);
            return false;
        }
        t->writing = true;
        return true;
    }
    if (t->status == 200) {
        if (j->ranged) {
            t->range_ignored = true;
            return false;
        }
        /* One stream resumed at req_start: the whole body comes; drop what
         * is already written. */
        t->skip = asked_range ? t->req_start : 0;
        if (!asked_range && t->req_start == 0)
            t->skip = 0;
        t->writing = true;
        return true;
    }
    t->writing = false;
    return true;
}

/* Writes what t has gathered at the end of its range's bytes so far. Bytes
 * count as received (for progress, the hasher and a retry's Range) only
 * once written. */
static int xfer_flush(dl_xfer *t)
{
    dl_range *r = t->r;
    dl_job *j = t->j;
    const char *p = t->buf;
    size_t n = t->blen;
    uint64_t off = r->start + r->got;
    t->blen = 0;
    while (n > 0) {
        ssize_t w = pwrite(j->job->fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int en = w < 0 ? errno : EIO;
            t->fatal = -en;
            snprintf(t->fatal_msg, sizeof(t->fatal_msg), "writing the partial file: %s",
                     en == ENOSPC ? "no space left on device" : strerror(en));
            return -en;
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
        r->got += (uint64_t)w;
        j->dirty = true;
        j->job->downloaded += (uint64_t)w;
        if (j->from_mirror)
            t->c->stats.bytes_mirror += (uint64_t)w;
        else
            t->c->stats.bytes_origin += (uint64_t)w;
    }
    if (t->ri == j->front)
        advance_contiguous(j);
    return 0;
}

static size_t xfer_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    dl_xfer *t = ud;
    size_t len = size * nmemb;
    if (!t->checked && !xfer_check(t))
        return 0;
    if (!t->writing) {
        t->discarded += len;
        return t->discarded > ERROR_BODY_MAX ? 0 : len;
    }
    const char *p = ptr;
    size_t n = len;
    if (t->skip) {
        size_t s = t->skip < n ? (size_t)t->skip : n;
        t->skip -= s;
        p += s;
        n -= s;
    }
    dl_range *r = t->r;
    uint64_t off = r->start + r->got + t->blen;
    if (n > r->end - off) {
        snprintf(t->fatal_msg, sizeof(t->fatal_msg), "server sent more than the %llu bytes asked",
                 (unsigned long long)(r->end - t->req_start));
        t->fatal = -EBADMSG;
        return 0;
    }
    if (n && !t->buf)
        t->buf = mv_xmalloc(WRITE_GATHER);
    while (n > 0) {
        size_t k = WRITE_GATHER - t->blen < n ? WRITE_GATHER - t->blen : n;
        memcpy(t->buf + t->blen, p, k);
        t->blen += k;
        p += k;
        n -= k;
        if (t->blen == WRITE_GATHER && xfer_flush(t) < 0)
            return 0;
    }
    return len;
}

/* Starts range r: -EAGAIN when the node's budget has no slot for it now. */
static int start_xfer(dl_ctx *x, dl_job *j, dl_range *r)
{
    pull_client *c = x->c;
    if (c->tenant && (x->inflight >= x->allowed ||
                      (!spare_take(x, j->url_host) && !pull_budget_take(c->tenant, j->url_host))))
        return -EAGAIN;
    dl_xfer *t = mv_xcalloc(1, sizeof(*t));
    if (c->tenant)
        t->host = mv_xstrdup(j->url_host);
    t->c = c;
    t->j = j;
    t->r = r;
    t->ri = (size_t)(r - j->r);
    t->plan = j->plan;
    t->h = curl_easy_init();
    if (!t->h) {
        if (t->host)
            pull_budget_give(c->tenant, t->host);
        free(t->host);
        free(t);
        return -ENOMEM;
    }
    pull_curl_setup(c, t->h, j->url);
    t->req_start = r->start + r->got;
    char range[96];
    if (j->ranged || t->req_start > 0) {
        snprintf(range, sizeof(range), "Range: bytes=%llu-%llu", (unsigned long long)t->req_start,
                 (unsigned long long)(r->end - 1));
        t->hdrs = curl_slist_append(t->hdrs, range);
    }
    if (j->url_is_registry) {
        char *auth = pull_auth_header(c, j->ep, x->scope);
        if (auth) {
            t->hdrs = curl_slist_append(t->hdrs, auth);
            explicit_bzero(auth, strlen(auth));
            free(auth);
        }
    }
    curl_easy_setopt(t->h, CURLOPT_HTTPHEADER, t->hdrs);
    curl_easy_setopt(t->h, CURLOPT_HEADERFUNCTION, xfer_header);
    curl_easy_setopt(t->h, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(t->h, CURLOPT_WRITEFUNCTION, xfer_write);
    curl_easy_setopt(t->h, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->h, CURLOPT_PRIVATE, t);
    if (curl_multi_add_handle(c->multi, t->h) != CURLM_OK) {
        curl_easy_cleanup(t->h);
        curl_slist_free_all(t->hdrs);
        if (t->host)
            pull_budget_give(c->tenant, t->host);
        free(t->host);
        free(t);
        return -EIO;
    }
    r->state = R_ACTIVE;
    t->next = x->xfers;
    if (x->xfers)
        x->xfers->prev = t;
    x->xfers = t;
    j->inflight++;
    x->inflight++;
    c->stats.requests++;
    return 0;
}

/* A transient failure of range r: back off, or give up after max_retries. */
static void range_retry(dl_ctx *x, dl_job *j, dl_range *r, const char *why, long min_wait)
{
    pull_client *c = x->c;
    r->state = R_PENDING;
    if (++r->attempts > c->opt.max_retries) {
        if (j->from_mirror && !j->no_mirrors) {
            /* The mirror keeps failing: go to the origin instead. */
            j->no_mirrors = true;
            j->need_resolve = true;
            j->resolves = 0;
            for (size_t i = 0; i < j->nr; i++)
                j->r[i].attempts = 0;
            return;
        }
        job_fail(j, -EIO, "blob %s: %s (gave up after %d retries)", j->job->desc->digest, why,
                 c->opt.max_retries);
        return;
    }
    uint64_t ms = pull_backoff_ms(r->attempts - 1, min_wait);
    r->not_before = pull_now_ms() + ms;
    c->stats.retries++;
    char msg[512];
    snprintf(msg, sizeof(msg), "blob %s: %s; retry %d/%d in %.1f s", j->job->desc->digest, why,
             r->attempts, c->opt.max_retries, (double)ms / 1000.0);
    emit(c, PULL_EV_RETRY, j, msg);
}

static void switch_to_stream(dl_ctx *x, dl_job *j)
{
    /* The server ignores Range: one stream from the contiguous prefix. The
     * other ranges' transfers are dropped by the sweep. */
    for (size_t i = 0; i < j->nr; i++)
        j->r[i].state = R_PENDING;
    detach_saver(j);
    j->ranged = false;
    pull_rangeset_clear(&j->done);
    if (j->contiguous)
        pull_rangeset_add(&j->done, 0, j->contiguous);
    build_ranges(x->c, j, NULL);
    /* A new slot: the stream's record is its written prefix. */
    attach_saver(x, j);
    j->dirty = true;
}

static void xfer_done(dl_ctx *x, dl_xfer *t, CURLcode cc)
{
    pull_client *c = x->c;
    dl_job *j = t->j;
    dl_range *r = t->r;
    const char *digest = j->job->desc->digest;
    if (!xfer_current(t) || r->state != R_ACTIVE)
        return; /* a leftover of an aborted plan */
    /* What arrived before the end, even an early one, is kept. */
    if (t->blen && !t->fatal)
        xfer_flush(t);
    if (!t->checked)
        curl_easy_getinfo(t->h, CURLINFO_RESPONSE_CODE, &t->status);
    _cleanup_free_ char *hp = pull_url_hostport(j->url);
    const char *host = hp ? hp : "?";
    if (t->range_ignored) {
        switch_to_stream(x, j);
        return;
    }
    if (t->fatal) {
        job_fail(j, t->fatal, "blob %s: %s", digest, t->fatal_msg);
        return;
    }
    if (t->fatal_msg[0]) {
        /* A Content-Range that does not match: a broken server or proxy. */
        char why[400];
        snprintf(why, sizeof(why), "%s from %s", t->fatal_msg, host);
        range_retry(x, j, r, why, 0);
        return;
    }
    long s = t->status;
    /* A refusal is judged by its status even when its body was cut short. */
    bool refused = t->checked && !t->writing && s >= 300;
    if (!refused && cc == CURLE_OK && (s == 200 || s == 206)) {
        if (r->got == r->end - r->start) {
            r->state = R_DONE;
            pull_rangeset_add(&j->done, r->start, r->end);
            j->dirty = j->completed = true;
            r->attempts = 0;
            j->resolves = 0;
            advance_contiguous(j);
            save_state(j, false);
            return;
        }
        range_retry(x, j, r, "response ended early", 0);
        return;
    }
    if (!refused && cc != CURLE_OK) {
        char why[300];
        snprintf(why, sizeof(why), "%s from %s", curl_easy_strerror(cc), host);
        range_retry(x, j, r, why, 0);
        return;
    }
    r->state = R_PENDING;
    j->last_status = s;
    snprintf(j->last_host, sizeof(j->last_host), "%s", host);
    if ((s == 401 || s == 403) && !j->url_is_registry) {
        /* The signed storage URL expired: ask the registry again. */
        j->need_resolve = true;
        return;
    }
    if (s == 401 || (s >= 300 && s < 400)) {
        if (s == 401)
            pull_auth_forget(c, j->ep, x->scope);
        j->need_resolve = true;
        return;
    }
    if (s >= 500 || s == 429 || s == 408) {
        char why[300];
        snprintf(why, sizeof(why), "%ld from %s", s, host);
        range_retry(x, j, r, why, pull_retry_after(t->retry_after));
        return;
    }
    int code = s == 404 ? -ENOENT : s == 403 ? -EPERM : -EINVAL;
    job_fail(j, code, "blob %s: %ld from %s", digest, s, host);
    j->job->err.http_status = (int)s;
}

/* Removes transfers whose job failed or whose plan changed. */
static void drop_orphans(dl_ctx *x)
{
    for (dl_xfer *t = x->xfers, *next; t; t = next) {
        next = t->next;
        if (!xfer_current(t) || t->r->state != R_ACTIVE)
            xfer_free(x, t);
    }
}

static dl_range *next_range(dl_job *j, uint64_t now, uint64_t *wake)
{
    for (size_t i = j->front; i < j->nr; i++) {
        dl_range *r = &j->r[i];
        if (r->state != R_PENDING)
            continue;
        if (r->not_before > now) {
            if (!*wake || r->not_before < *wake)
                *wake = r->not_before;
            continue;
        }
        return r;
    }
    return NULL;
}

static bool job_complete(const dl_job *j)
{
    for (size_t i = 0; i < j->nr; i++)
        if (j->r[i].state != R_DONE)
            return false;
    return true;
}

/* Ranges of started jobs that could go now, by their job's host; and the
 * connections the pull could use now: those in flight and those ranges,
 * plus a guess for the jobs not started yet. */
static int want_now(const dl_ctx *x)
{
    int want = x->inflight;
    for (size_t i = 0; i < x->n && want < x->c->opt.connections; i++) {
        const dl_job *j = &x->jobs[i];
        if (j->finished)
            continue;
        if (!j->started) {
            want++;
            continue;
        }
        if (j->need_resolve || !j->url || (!j->ranged && j->inflight > 0))
            continue;
        for (size_t k = j->front; k < j->nr; k++)
            want += j->r[k].state == R_PENDING;
    }
    return want < x->c->opt.connections ? want : x->c->opt.connections;
}

static int pending_on(const dl_ctx *x, const char *host)
{
    int n = 0;
    for (size_t i = 0; i < x->n; i++) {
        const dl_job *j = &x->jobs[i];
        if (!j->started || j->finished || j->need_resolve || !j->url_host ||
            strcmp(j->url_host, host) != 0 || (!j->ranged && j->inflight > 0))
            continue;
        for (size_t k = j->front; k < j->nr; k++)
            n += j->r[k].state == R_PENDING;
    }
    return n;
}

/* Stops transfer t to hand its connection back: what it wrote stays, and
 * its range goes on from there when a slot is free again. */
static void cut_xfer(dl_ctx *x, dl_xfer *t)
{
    if (xfer_current(t) && t->r->state == R_ACTIVE) {
        if (t->blen && !t->fatal)
            xfer_flush(t);
        t->r->state = R_PENDING;
    }
    xfer_free(x, t);
}

/* Asks the node's budget how many connections this pull may hold, and
 * gives back what it holds above that: first those on a host where an
 * earlier pull waits for a slot, then the newest. A transfer
 * no waiting range will follow on its host closes its connection when it
 * ends, so an idle socket does not hold a slot the budget gave away. */
static void budget_pass(dl_ctx *x)
{
    pull_client *c = x->c;
    x->allowed =
        pull_budget_tick(c->tenant, c->stats.bytes_origin + c->stats.bytes_mirror, want_now(x));
    if (x->spares && x->inflight + x->spares > x->allowed)
        spares_give(x, NULL);
    for (size_t i = 0; i < 4; i++)
        if (x->spare[i].n > 0 && pending_on(x, x->spare[i].host) == 0)
            spares_give(x, x->spare[i].host);
    while (x->inflight > x->allowed && x->xfers) {
        dl_xfer *cut = x->xfers;
        for (dl_xfer *t = x->xfers; t; t = t->next) {
            if (t->host && pull_budget_yields(c->tenant, t->host)) {
                cut = t;
                break;
            }
        }
        cut_xfer(x, cut);
    }
    /* Once per host: the transfers that may still be followed on it. */
    for (dl_xfer *t = x->xfers; t; t = t->next) {
        if (t->no_reuse || !t->host)
            continue;
        bool seen = false;
        for (dl_xfer *u = x->xfers; u != t && !seen; u = u->next)
            seen = u->host && !u->no_reuse && strcmp(u->host, t->host) == 0;
        if (seen)
            continue;
        int on_host = 0;
        for (dl_xfer *u = t; u; u = u->next)
            on_host += u->host && !u->no_reuse && strcmp(u->host, t->host) == 0;
        int excess = on_host - pending_on(x, t->host);
        for (dl_xfer *u = t; u && excess > 0; u = u->next) {
            if (!u->host || u->no_reuse || strcmp(u->host, t->host) != 0)
                continue;
            curl_easy_setopt(u->h, CURLOPT_FORBID_REUSE, 1L);
            u->no_reuse = true;
            excess--;
        }
    }
}

int pull_blobs(pull_client *c, pull_blob_job *jobs, size_t n, mv_error *err)
{
    dl_ctx x = {.c = c, .n = n};
    x.jobs = mv_xcalloc(n ? n : 1, sizeof(*x.jobs));
    x.scope = pull_scope(c, "pull");
    for (size_t i = 0; i < n; i++) {
        x.jobs[i].job = &jobs[i];
        x.jobs[i].save_slot = -1;
        jobs[i].result = 0;
        jobs[i].downloaded = jobs[i].resumed = 0;
        mv_error_clear(&jobs[i].err);
    }
    int max_active = c->opt.connections < MAX_ACTIVE_JOBS ? c->opt.connections : MAX_ACTIVE_JOBS;
    bool cancelled = false;

    for (;;) {
        if (c->opt.cancel && *c->opt.cancel) {
            cancelled = true;
            break;
        }
        uint64_t now = pull_now_ms();
        uint64_t wake = 0;
        /* Start jobs while connections would otherwise idle. */
        int active = 0, pending = 0;
        for (size_t i = 0; i < n; i++) {
            dl_job *j = &x.jobs[i];
            if (j->started && !j->finished) {
                active++;
                for (size_t k = j->front; k < j->nr; k++)
                    pending += j->r[k].state == R_PENDING;
            }
        }
        for (size_t i = 0; i < n; i++) {
            dl_job *j = &x.jobs[i];
            if (j->started)
                continue;
            if (active >= max_active && pending >= c->opt.connections - x.inflight)
                break;
            if (active >= MAX_ACTIVE_JOBS)
                break;
            start_job(&x, j);
            if (!j->finished) {
                active++;
                for (size_t k = j->front; k < j->nr; k++)
                    pending += j->r[k].state == R_PENDING;
            }
        }
        drop_orphans(&x);
        bool waiting = false;
        if (c->tenant)
            budget_pass(&x);
        /* Finish jobs whose ranges are all in; resolve again where asked. */
        bool all_done = true, progressed = false;
        for (size_t i = 0; i < n; i++) {
            dl_job *j = &x.jobs[i];
            if (j->started && !j->finished && j->inflight == 0 && job_complete(j)) {
                /* Its connections are free for the next job now. */
                finish_job(&x, j);
                progressed = true;
            }
            all_done = all_done && j->finished;
            if (!j->started || j->finished)
                continue;
            if (j->need_resolve && j->inflight == 0) {
                if (j->resolve_at > now) {
                    if (!wake || j->resolve_at < wake)
                        wake = j->resolve_at;
                    continue;
                }
                j->need_resolve = false;
                resolve(&x, j);
            }
        }
        if (all_done)
            break;
        /* Fill free connections, earliest job first. */
        for (size_t i = 0; i < n && x.inflight < c->opt.connections; i++) {
            dl_job *j = &x.jobs[i];
            if (!j->started || j->finished || j->need_resolve || !j->url)
                continue;
            if (!j->ranged && j->inflight > 0)
                continue;
            dl_range *r;
            while (x.inflight < c->opt.connections && (r = next_range(j, now, &wake))) {
                int rc = start_xfer(&x, j, r);
                if (rc == -EAGAIN) {
                    waiting = true;
                    break;
                }
                if (rc < 0) {
                    job_fail(j, -ENOMEM, "blob %s: cannot start a transfer", j->job->desc->digest);
                    break;
                }
                if (!j->ranged)
                    break;
            }
        }
        int running = 0;
        curl_multi_perform(c->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(c->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            progressed = true;
            dl_xfer *t = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
            CURLcode cc = m->data.result;
            xfer_done(&x, t, cc);
            if (xfer_current(t) && t->r->state == R_ACTIVE)
                t->r->state = R_PENDING;
            xfer_free_keep(&x, t, cc == CURLE_OK);
        }
        for (size_t i = 0; i < n; i++) {
            dl_job *j = &x.jobs[i];
            if (!j->started || j->finished)
                continue;
            /* A range completed within the last interval is recorded now. */
            save_state(j, false);
            if (now - j->last_event >= EVENT_INTERVAL_MS) {
                j->last_event = now;
                emit(c, PULL_EV_BLOB_PROGRESS, j, NULL);
            }
        }
        /* A transfer or a job just ended: its connection is free for the
         * next range now, so go round at once instead of waiting on the
         * others (or, with nothing in flight, sleeping). */
        int timeout = progressed ? 0 : waiting ? WAIT_POLL_MS : 200;
        if (wake) {
            uint64_t nn = pull_now_ms();
            int d = wake > nn ? (int)(wake - nn) : 0;
            if (d < timeout)
                timeout = d;
        }
        if (x.inflight > 0 && timeout > 0)
            curl_multi_poll(c->multi, NULL, 0, timeout, NULL);
        else if (timeout > 0) {
            struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)timeout * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    /* Cancelled: what transfers still gather is written, so the records
     * below keep it. */
    for (dl_xfer *t = x.xfers; t; t = t->next)
        if (t->blen && !t->fatal && xfer_current(t) && t->r->state == R_ACTIVE)
            xfer_flush(t);
    while (x.xfers)
        xfer_free(&x, x.xfers);
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        dl_job *j = &x.jobs[i];
        if (cancelled && !j->finished) {
            job_fail(j, -ECANCELED, "blob %s: cancelled", j->job->desc->digest);
        }
        pull_hashq_abort(j->hq);
        j->hq = NULL;
        if (j->finished && j->job->result == 0)
            forget_record(j); /* the contract: removed on success */
        else
            save_state(j, true);
        if (j->job->result < 0 && !first) {
            first = j->job->result;
            mv_error_copy(err, &j->job->err);
        }
        free(j->r);
        free(j->url);
        free(j->url_host);
        pull_rangeset_clear(&j->done);
        pull_rangeset_clear(&j->written);
    }
    pull_saver_stop(x.saver);
    if (c->tenant) {
        spares_give(&x, NULL);
        for (size_t i = 0; i < 4; i++)
            free(x.spare[i].host);
        pull_budget_tick(c->tenant, c->stats.bytes_origin + c->stats.bytes_mirror, 0);
        /* Idle connections would hold sockets the budget has given away. */
        pull_client_reset_multi(c);
    }
    free(x.jobs);
    free(x.scope);
    return first;
}
