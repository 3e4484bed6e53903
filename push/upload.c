/* upload.c — gets a pack's blobs into the registry: a pool of
 * workers, each with its own registry client (clients are single-threaded),
 * takes blobs in order; a blob the registry already has is skipped, one the
 * --from repository has is mounted, anything else is streamed from its file
 * with a resume record in the state directory. The manifest goes last, once
 * per tag. */
#include "push-internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

typedef struct pool {
    const push_pack *pack;
    const push_upload_opts *o;
    atomic_size_t next;
    atomic_bool stop;
    pthread_mutex_t lock; /* guards the fields below */
    int result;
    mv_error err;
    push_upload_stats st;
} pool;

/* Test-only fault injection: MODELVOL_TEST_PUSH_KILL_AFTER_CHUNKS=N makes the
 * process SIGKILL itself right after the Nth acknowledged chunk, so a test
 * can interrupt an upload exactly between chunks (a kill -9 at a random
 * moment lands mid-chunk, which docker distribution cannot resume). */
static long kill_after_chunks;
static atomic_long chunks_acked;

typedef struct worker {
    pool *pl;
    const push_blob *cur;
    uint64_t baseline; /* bytes of cur the registry had at the last event */
    uint64_t sent;
} worker;

/* The record of one (registry, repository, blob): the name is a hash so
 * that no path from the reference reaches the file system. */
static char *resume_path(const push_upload_opts *o, const char *digest)
{
    if (!o->state_dir)
        return NULL;
    _cleanup_free_ char *key =
        mv_xasprintf("%s/%s@%s", o->ref->registry, o->ref->repository, digest);
    char h[OCI_DIGEST_MAX];
    oci_digest_buf(OCI_DIGEST_SHA256, key, strlen(key), h);
    return mv_xasprintf("%s/%s.json", o->state_dir, oci_digest_hex(h));
}

static void report(const push_upload_opts *o, mv_progress_kind kind, const push_blob *b,
                   uint64_t done, const char *message)
{
    mv_progress_update u = {.kind = kind,
                            .digest = b->digest,
                            .label = b->label,
                            .message = message,
                            .done = done,
                            .total = b->size};
    mv_progress_report(o->progress, &u);
}

static void on_event(void *ctx, const pull_event *ev)
{
    worker *w = ctx;
    if (!w->cur)
        return;
    const push_blob *b = w->cur;
    switch (ev->kind) {
    case PULL_EV_BLOB_START:
        w->baseline = ev->done;
        report(w->pl->o, MV_PROGRESS_START, b, ev->done, NULL);
        break;
    case PULL_EV_BLOB_PROGRESS:
        if (kill_after_chunks > 0 && atomic_fetch_add(&chunks_acked, 1) + 1 >= kill_after_chunks)
            raise(SIGKILL);
        /* fall through */
    case PULL_EV_BLOB_DONE:
        if (ev->done > w->baseline)
            w->sent += ev->done - w->baseline;
        w->baseline = ev->done;
        report(w->pl->o, ev->kind == PULL_EV_BLOB_DONE ? MV_PROGRESS_DONE : MV_PROGRESS_STEP, b,
               ev->done, NULL);
        break;
    case PULL_EV_RETRY:
        report(w->pl->o, MV_PROGRESS_RETRY, b, 0, ev->message);
        break;
    default:
        break;
    }
}

/* An fd holding the blob's bytes from offset 0. */
static int blob_fd(const push_blob *b, bool *owned, mv_error *err)
{
    *owned = true;
    if (b->fd >= 0) {
        *owned = false;
        return b->fd;
    }
    if (b->path) {
        /* The registry checks the digest; NOFOLLOW keeps the walk's vetting. */
        int fd = open(b->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
        if (fd < 0)
            return mv_error_errno(err, -errno, "%s", b->label);
        return fd;
    }
    int fd = memfd_create("modelpush-blob", MFD_CLOEXEC);
    if (fd < 0)
        return mv_error_errno(err, -errno, "%s: memfd", b->label);
    size_t off = 0;
    while (off < b->size) {
        ssize_t n = write(fd, b->mem + off, b->size - off);
        if (n < 0) {
            int e = errno;
            close(fd);
            return mv_error_errno(err, -e, "%s: memfd", b->label);
        }
        off += (size_t)n;
    }
    return fd;
}

static int push_one(worker *w, pull_client *c, const push_blob *b, mv_error *err)
{
    pool *pl = w->pl;
    const push_upload_opts *o = pl->o;
    bool exists = false;
    int r = pull_blob_exists(c, b->digest, &exists, err);
    if (r < 0)
        return r;
    if (exists) {
        report(o, MV_PROGRESS_SKIP, b, b->size, NULL);
        pthread_mutex_lock(&pl->lock);
        pl->st.skipped++;
        pthread_mutex_unlock(&pl->lock);
        return 0;
    }
    if (o->from_repo) {
        bool mounted = false;
        r = pull_blob_mount(c, b->digest, o->from_repo, &mounted, err);
        if (r < 0)
            return r;
        if (mounted) {
            report(o, MV_PROGRESS_MOUNT, b, b->size, NULL);
            pthread_mutex_lock(&pl->lock);
            pl->st.mounted++;
            pthread_mutex_unlock(&pl->lock);
            return 0;
        }
    }
    bool owned;
    int fd = blob_fd(b, &owned, err);
    if (fd < 0)
        return fd;
    _cleanup_free_ char *rp = resume_path(o, b->digest);
    pull_upload_opts uo = {
        .chunk_size = o->chunk_size ? o->chunk_size : PUSH_DEFAULT_CHUNK,
        .monolithic = o->monolithic,
        .resume_path = rp,
    };
    w->cur = b;
    w->baseline = 0;
    w->sent = 0;
    r = pull_blob_upload(c, fd, b->digest, b->size, &uo, err);
    w->cur = NULL;
    if (owned)
        close(fd);
    pthread_mutex_lock(&pl->lock);
    pl->st.bytes_sent += w->sent;
    if (r == 0)
        pl->st.uploaded++;
    pthread_mutex_unlock(&pl->lock);
    return r;
}

static void fail(pool *pl, int r, const mv_error *e)
{
    pthread_mutex_lock(&pl->lock);
    if (pl->result == 0) {
        pl->result = r;
        mv_error_copy(&pl->err, e);
    }
    pthread_mutex_unlock(&pl->lock);
    atomic_store(&pl->stop, true);
    if (pl->o->cancel)
        *pl->o->cancel = 1;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    pool *pl = w->pl;
    pull_options po = pl->o->pull;
    po.cancel = pl->o->cancel;
    po.on_event = on_event;
    po.event_ctx = w;
    _cleanup_pull_client_ pull_client *c = NULL;
    mv_error e = MV_ERROR_INIT;
    int r = pull_client_new(pl->o->ref, &po, &c, &e);
    if (r < 0) {
        fail(pl, r, &e);
        return NULL;
    }
    while (!atomic_load(&pl->stop)) {
        size_t i = atomic_fetch_add(&pl->next, 1);
        if (i >= pl->pack->n_blobs)
            break;
        const push_blob *b = &pl->pack->blobs[i];
        r = push_one(w, c, b, &e);
        if (r < 0) {
            mv_error_wrap(&e, "%s", b->label);
            fail(pl, r, &e);
        }
    }
    return NULL;
}

int push_upload_blobs(const push_pack *p, const push_upload_opts *o, push_upload_stats *st,
                      mv_error *err)
{
    if (o->state_dir) {
        int r = mv_mkdir_p(o->state_dir, 0700, err);
        if (r < 0)
            return mv_error_wrap(err, "state directory %s", o->state_dir);
    }
    const char *k = getenv("MODELVOL_TEST_PUSH_KILL_AFTER_CHUNKS");
    kill_after_chunks = k ? strtol(k, NULL, 10) : 0;
    pool pl = {.pack = p, .o = o};
    atomic_init(&pl.next, 0);
    atomic_init(&pl.stop, false);
    pthread_mutex_init(&pl.lock, NULL);
    int jobs = o->jobs > 0 ? o->jobs : PUSH_DEFAULT_JOBS;
    if ((size_t)jobs > p->n_blobs)
        jobs = (int)p->n_blobs;
    if (jobs < 1)
        jobs = 1;
    _cleanup_free_ worker *ws = mv_xcalloc((size_t)jobs, sizeof(*ws));
    _cleanup_free_ pthread_t *th = mv_xcalloc((size_t)jobs, sizeof(*th));
    int started = 0;
    for (int i = 0; i < jobs; i++) {
        ws[i].pl = &pl;
        if (i > 0 && pthread_create(&th[i], NULL, worker_main, &ws[i]) != 0)
            break;
        started = i + 1;
    }
    worker_main(&ws[0]);
    for (int i = 1; i < started; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&pl.lock);
    if (st)
        *st = pl.st;
    if (pl.result < 0) {
        mv_error_copy(err, &pl.err);
        return pl.result;
    }
    return 0;
}

int push_upload_manifest(const push_pack *p, const push_upload_opts *o, const char *const *tags,
                         mv_error *err)
{
    _cleanup_pull_client_ pull_client *c = NULL;
    int r = pull_client_new(o->ref, &o->pull, &c, err);
    if (r < 0)
        return r;
    const char *mt = p->manifest.media_type;
    if (!tags || !tags[0])
        return pull_manifest_put(c, p->manifest_digest, p->manifest_json, p->manifest_len, mt, err);
    for (size_t i = 0; tags[i]; i++) {
        r = pull_manifest_put(c, tags[i], p->manifest_json, p->manifest_len, mt, err);
        if (r < 0)
            return mv_error_wrap(err, "tag %s", tags[i]);
    }
    return 0;
}
