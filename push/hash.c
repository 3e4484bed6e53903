/* hash.c — the digests of a pack's files: workers take files in turn and
 * read each once, checking that it is still the inode the walk vetted and
 * that it did not change while being read. */
#include "push-internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------------ */
/* Hashing (parallel over files, each read once)                            */
/* ------------------------------------------------------------------------ */

typedef struct hash_job {
    push_file *files;
    size_t n;
    atomic_size_t next;
    int *results;
    mv_error *errs;
} hash_job;

/* Opens the file the walk vetted: the last component must not have turned
 * into a symlink since, and it must still be the same inode (a directory
 * swapped for a symlink to elsewhere would change it). */
int push_open_vetted(const push_file *f, mv_error *err)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ELOOP)
            return mv_error_set(err, -EINVAL, "%s: became a symlink while being packed", f->rel);
        return mv_error_errno(err, -errno, "%s", f->rel);
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || (uint64_t)st.st_dev != f->dev || (uint64_t)st.st_ino != f->ino) {
        close(fd);
        return mv_error_set(err, -EINVAL, "%s: replaced while being packed", f->rel);
    }
    return fd;
}

static int hash_one(push_file *f, char *buf, mv_error *err)
{
    _cleanup_close_ int fd = push_open_vetted(f, err);
    if (fd < 0)
        return fd;
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    _cleanup_hasher_ oci_hasher *h = oci_hasher_new(OCI_DIGEST_SHA256);
    uint64_t total = 0;
    for (;;) {
        ssize_t got = read(fd, buf, PUSH_READ_BUF);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return mv_error_errno(err, -errno, "%s: read", f->rel);
        }
        if (got == 0)
            break;
        oci_hasher_update(h, buf, (size_t)got);
        total += (uint64_t)got;
    }
    struct stat st;
    if (total != f->size || fstat(fd, &st) < 0 || st.st_ctim.tv_sec != f->ctime_s ||
        st.st_ctim.tv_nsec != f->ctime_ns)
        return mv_error_set(err, -EBADMSG, "%s: changed while being read (%llu bytes, then %llu)",
                            f->rel, (unsigned long long)f->size, (unsigned long long)total);
    oci_hasher_final(h, f->digest);
    return 0;
}

static void *hash_worker(void *arg)
{
    hash_job *j = arg;
    _cleanup_free_ char *buf = mv_xmalloc(PUSH_READ_BUF);
    for (;;) {
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n)
            break;
        if (j->files[i].in_tar || j->files[i].cached)
            continue;
        j->results[i] = hash_one(&j->files[i], buf, &j->errs[i]);
    }
    return NULL;
}

int push_hash_files(push_file *files, size_t n, int jobs, mv_error *err)
{
    hash_job j = {.files = files, .n = n};
    atomic_init(&j.next, 0);
    _cleanup_free_ int *results = mv_xcalloc(n ? n : 1, sizeof(int));
    _cleanup_free_ mv_error *errs = mv_xcalloc(n ? n : 1, sizeof(mv_error));
    j.results = results;
    j.errs = errs;
    if (jobs < 1)
        jobs = PUSH_DEFAULT_JOBS;
    if ((size_t)jobs > n)
        jobs = n ? (int)n : 1;
    pthread_t th[64];
    if (jobs > 64)
        jobs = 64;
    int started = 0;
    for (int i = 1; i < jobs; i++) {
        if (pthread_create(&th[started], NULL, hash_worker, &j) != 0)
            break;
        started++;
    }
    hash_worker(&j);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    /* Report the first failure in path order, whichever thread saw it. */
    for (size_t i = 0; i < n; i++)
        if (results[i] < 0) {
            mv_error_copy(err, &errs[i]);
            return results[i];
        }
    return 0;
}
