/* saver.c — keeps resume records and writeback off the event loop: one
 * thread per pull_blobs call, fed snapshots of each blob's written bytes
 * (completed ranges and the written prefixes of ranges in flight).
 *
 * Records: written light (temp + rename, no sync) on the first snapshot,
 * then at most once per interval. The loop used to fdatasync the
 * partial file for every record, and ext4 held up its pwrites to that file
 * for most of each flush, even with the sync on another thread; all the
 * connections stalled. A light record survives a killed process; what a
 * power loss takes, the digest catches (download.c fetches such a blob
 * again from zero).
 *
 * Writeback: each completed range goes to the disk at once with
 * sync_file_range(SYNC_FILE_RANGE_WRITE), which does not wait, so the disk
 * works alongside the network and the cache's final fsync finds little
 * left to do.
 *
 * Flushes: after every FLUSH_BYTES handed to writeback, the thread fsyncs
 * the directory of the records. That commits the journal and flushes the
 * disk's volatile write cache, without waiting for the pages still being
 * written (an fdatasync of the partial file would, and stall the loop's
 * pwrites to it). Left to grow, the write cache was flushed all at once by
 * the final fsync, and on the 2-core VM it slowed writeback and the reads
 * that shared the disk: a 1 GiB pull from a registry on the same disk took
 * 2.59 s without the flushes and 2.07-2.17 s with them (medians of 5). */
#include "puller-internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

typedef struct saver_slot {
    const char *path; /* owned by the caller; valid until the slot closes */
    const char *digest;
    int fd;
    uint64_t size;
    pull_rangeset snap; /* the latest ranges handed over */
    bool dirty;         /* snap is newer than the record */
    bool kick;          /* snap has ranges not yet handed to writeback */
    bool open;
    bool busy; /* the thread is saving it now */
    uint64_t last_save;
    uint64_t kicked; /* bytes handed to writeback so far */
} saver_slot;

struct pull_saver {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    saver_slot *slots;
    size_t n;
    uint64_t interval_ms;
    uint64_t unflushed; /* bytes handed to writeback since the last flush */
    bool stop;
};

#define FLUSH_BYTES (64ULL << 20)

static void rangeset_copy(pull_rangeset *dst, const pull_rangeset *src)
{
    dst->iv = mv_xrealloc(dst->iv, (src->n ? src->n : 1) * sizeof(*dst->iv));
    if (src->n)
        memcpy(dst->iv, src->iv, src->n * sizeof(*src->iv));
    dst->n = src->n;
}

/* Picks the next slot that is due, or says when one will be (0: none). */
static ssize_t due_slot(pull_saver *s, uint64_t now, uint64_t *wake)
{
    *wake = 0;
    for (size_t i = 0; i < s->n; i++) {
        saver_slot *sl = &s->slots[i];
        if (sl->open && sl->kick)
            return (ssize_t)i;
        if (!sl->open || !sl->dirty)
            continue;
        uint64_t at = sl->last_save + s->interval_ms;
        if (at <= now)
            return (ssize_t)i;
        if (!*wake || at < *wake)
            *wake = at;
    }
    return -1;
}

static uint64_t rangeset_bytes(const pull_rangeset *r)
{
    uint64_t n = 0;
    for (size_t k = 0; k < r->n; k++)
        n += r->iv[k][1] - r->iv[k][0];
    return n;
}

/* Only a hint, like the writeback it follows: errors show up in the fsyncs
 * that count. */
static void flush_disk(const char *record_path)
{
    const char *slash = strrchr(record_path, '/');
    _cleanup_free_ char *dir =
        slash ? mv_xasprintf("%.*s", (int)(slash - record_path), record_path) : mv_xstrdup(".");
    _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0)
        fsync(dfd);
}

static void *saver_main(void *arg)
{
    pull_saver *s = arg;
    pull_rangeset snap = {0};
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        uint64_t wake;
        ssize_t i = due_slot(s, pull_now_ms(), &wake);
        if (i < 0) {
            if (!wake) {
                pthread_cond_wait(&s->cv, &s->mu);
            } else {
                struct timespec ts = {.tv_sec = (time_t)(wake / 1000),
                                      .tv_nsec = (long)(wake % 1000) * 1000000L};
                pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            }
            continue;
        }
        saver_slot *sl = &s->slots[i];
        rangeset_copy(&snap, &sl->snap);
        bool kick = sl->kick;
        sl->kick = false;
        if (!kick)
            sl->dirty = false;
        sl->busy = true;
        const char *path = sl->path, *digest = sl->digest;
        int fd = sl->fd;
        uint64_t size = sl->size;
        bool flush = false;
        if (kick) {
            uint64_t done = rangeset_bytes(&snap);
            if (done > sl->kicked) {
                s->unflushed += done - sl->kicked;
                sl->kicked = done;
            }
            flush = s->unflushed >= FLUSH_BYTES;
            if (flush)
                s->unflushed = 0;
        }
        pthread_mutex_unlock(&s->mu);
        int rc = 0;
        if (kick) {
            /* Pages already clean or under writeback are skipped, so the
             * whole set can go each time. Only a hint: errors show up in
             * the fsyncs that count. */
            for (size_t k = 0; k < snap.n; k++)
                sync_file_range(fd, (off_t)snap.iv[k][0], (off_t)(snap.iv[k][1] - snap.iv[k][0]),
                                SYNC_FILE_RANGE_WRITE);
            if (flush)
                flush_disk(path);
        } else {
            mv_error e = MV_ERROR_INIT;
            /* A record that cannot be written only costs a later resume. */
            rc = pull_rangestate_save(path, fd, digest, size, &snap, false, &e);
        }
        pthread_mutex_lock(&s->mu);
        sl = &s->slots[i];
        sl->busy = false;
        if (!kick)
            sl->last_save = pull_now_ms();
        if (rc < 0)
            sl->dirty = true;
        pthread_cond_broadcast(&s->cv);
    }
    /* Stopping: what was handed over to a slot still open is written now,
     * not dropped. (pull_blobs closes its slots first; this is for a caller
     * that does not.) */
    for (size_t i = 0; i < s->n; i++) {
        saver_slot *sl = &s->slots[i];
        if (!sl->open || !sl->dirty)
            continue;
        mv_error e = MV_ERROR_INIT;
        pull_rangestate_save(sl->path, sl->fd, sl->digest, sl->size, &sl->snap, false, &e);
        sl->dirty = false;
    }
    pthread_mutex_unlock(&s->mu);
    pull_rangeset_clear(&snap);
    return NULL;
}

pull_saver *pull_saver_start(uint64_t interval_ms)
{
    pull_saver *s = mv_xcalloc(1, sizeof(*s));
    s->interval_ms = interval_ms;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&s->thread, NULL, saver_main, s) != 0) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return NULL;
    }
    return s;
}

int pull_saver_add(pull_saver *s, const char *path, int fd, const char *digest, uint64_t size)
{
    pthread_mutex_lock(&s->mu);
    s->slots = mv_xrealloc(s->slots, (s->n + 1) * sizeof(*s->slots));
    saver_slot *sl = &s->slots[s->n];
    memset(sl, 0, sizeof(*sl));
    sl->path = path;
    sl->fd = fd;
    sl->digest = digest;
    sl->size = size;
    sl->open = true;
    sl->last_save = 0; /* the first completed range is recorded at once */
    int slot = (int)s->n++;
    pthread_mutex_unlock(&s->mu);
    return slot;
}

void pull_saver_update(pull_saver *s, int slot, const pull_rangeset *written, bool writeback)
{
    pthread_mutex_lock(&s->mu);
    saver_slot *sl = &s->slots[slot];
    if (sl->open) {
        rangeset_copy(&sl->snap, written);
        sl->dirty = true;
        sl->kick = sl->kick || writeback;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

void pull_saver_close(pull_saver *s, int slot)
{
    pthread_mutex_lock(&s->mu);
    saver_slot *sl = &s->slots[slot];
    while (sl->busy) {
        pthread_cond_wait(&s->cv, &s->mu);
        sl = &s->slots[slot];
    }
    sl->open = false;
    sl->dirty = sl->kick = false;
    pull_rangeset_clear(&sl->snap);
    pthread_mutex_unlock(&s->mu);
}

void pull_saver_stop(pull_saver *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    for (size_t i = 0; i < s->n; i++)
        pull_rangeset_clear(&s->slots[i].snap);
    free(s->slots);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
