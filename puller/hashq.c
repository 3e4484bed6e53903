/* hashq.c — the in-order hasher: a thread per blob that reads the file back
 * with pread over the contiguous prefix the downloader has written so far
 * and feeds it to SHA-256, so hashing overlaps the network. Memory is one
 * fixed buffer whatever the blob size. */
#include "puller-internal.h"

#include <pthread.h>
#include <string.h>

#define HASHQ_BUF (256u << 10)

struct pull_hashq {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fd;
    oci_hasher *h;
    uint64_t avail;  /* [0, avail) is written */
    uint64_t hashed; /* [0, hashed) is hashed */
    uint64_t target; /* finish: hash up to here, then stop */
    bool finishing;
    bool stop;
    int error; /* negative errno from pread */
    char *buf;
};

static void *hashq_main(void *arg)
{
    pull_hashq *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->stop && q->error == 0 && q->hashed >= q->avail &&
               !(q->finishing && q->hashed >= q->target))
            pthread_cond_wait(&q->cv, &q->mu);
        if (q->stop || q->error || (q->finishing && q->hashed >= q->target))
            break;
        uint64_t from = q->hashed, to = q->avail;
        pthread_mutex_unlock(&q->mu);
        int error = 0;
        while (from < to) {
            size_t want = to - from > HASHQ_BUF ? HASHQ_BUF : (size_t)(to - from);
            ssize_t r = pread(q->fd, q->buf, want, (off_t)from);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                error = r < 0 ? -errno : -EIO;
                break;
            }
            oci_hasher_update(q->h, q->buf, (size_t)r);
            from += (uint64_t)r;
        }
        pthread_mutex_lock(&q->mu);
        q->hashed = from;
        q->error = error;
        pthread_cond_broadcast(&q->cv);
    }
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

int pull_hashq_start(int fd, oci_digest_alg alg, pull_hashq **out, mv_error *err)
{
    pull_hashq *q = mv_xcalloc(1, sizeof(*q));
    q->fd = fd;
    q->h = oci_hasher_new(alg);
    q->buf = mv_xmalloc(HASHQ_BUF);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    int rc = pthread_create(&q->thread, NULL, hashq_main, q);
    if (rc != 0) {
        oci_hasher_free(q->h);
        free(q->buf);
        free(q);
        return mv_error_errno(err, -rc, "starting the hasher thread");
    }
    *out = q;
    return 0;
}

void pull_hashq_advance(pull_hashq *q, uint64_t upto)
{
    pthread_mutex_lock(&q->mu);
    if (upto > q->avail) {
        q->avail = upto;
        pthread_cond_broadcast(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
}

static void hashq_free(pull_hashq *q)
{
    pthread_join(q->thread, NULL);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    oci_hasher_free(q->h);
    free(q->buf);
    free(q);
}

int pull_hashq_finish(pull_hashq *q, uint64_t upto, char out[OCI_DIGEST_MAX], mv_error *err)
{
    pthread_mutex_lock(&q->mu);
    if (upto > q->avail)
        q->avail = upto;
    q->target = upto;
    q->finishing = true;
    pthread_cond_broadcast(&q->cv);
    while (q->error == 0 && q->hashed < upto)
        pthread_cond_wait(&q->cv, &q->mu);
    int error = q->error;
    pthread_mutex_unlock(&q->mu);
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    int rc = 0;
    if (error)
        rc = mv_error_errno(err, error, "reading the partial file back to hash it");
    else
        oci_hasher_final(q->h, out);
    hashq_free(q);
    return rc;
}

void pull_hashq_abort(pull_hashq *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    hashq_free(q);
}
