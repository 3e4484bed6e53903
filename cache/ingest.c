/* ingest.c — the only way a blob becomes visible in blobs/: write a file
 * on the same file system, check it, fsync it, rename it into place
 * without replacing, and fsync the directory. A blob that exists already
 * counts as success (two writers of the same content both win). */
#include "cache-internal.h"

#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

static int blob_hex(const char *digest, const char **hex, mv_error *err)
{
    int r = oci_digest_validate(digest, err);
    if (r < 0)
        return r;
    if (strncmp(digest, "sha256:", 7) != 0)
        return mv_error_set(err, -ENOTSUP, "blob %s: only sha256 digests are stored", digest);
    *hex = oci_digest_hex(digest);
    return 0;
}

bool cache_blob_exists(cache *c, const char *digest)
{
    const char *hex = NULL;
    if (blob_hex(digest, &hex, NULL) < 0)
        return false;
    _cleanup_free_ char *p = mv_xasprintf(CACHE_D_BLOBS "/%s", hex);
    return faccessat(c->root_fd, p, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

static int open_dir(cache *c, const char *dir, mv_error *err)
{
    int fd = openat(c->root_fd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return mv_error_errno(err, -errno, "open %s/%s", c->root, dir);
    return fd;
}

int cache_ingest_buf(cache *c, const char *digest, const void *buf, size_t len, mv_error *err)
{
    const char *hex = NULL;
    int r = blob_hex(digest, &hex, err);
    if (r < 0)
        return r;
    char got[OCI_DIGEST_MAX];
    oci_digest_buf(OCI_DIGEST_SHA256, buf, len, got);
    if (strcmp(got, digest) != 0)
        return mv_error_set(err, -EBADMSG, "blob %s: content hashes to %s", digest, got);
    if (cache_blob_exists(c, digest))
        return 0;
    /* A shared lock per digest keeps recovery in other processes away from
     * our temp file while still letting writers of the same blob overlap. */
    _cleanup_free_ char *lock = mv_xasprintf("ibuf-%s", hex);
    _cleanup_close_ int lfd = -1;
    r = cache_lock(c, lock, LOCK_SH, &lfd, err);
    if (r < 0)
        return r;
    static unsigned counter;
    _cleanup_free_ char *tmp =
        mv_xasprintf("%s.%d.%u", lock, (int)getpid(), __atomic_add_fetch(&counter, 1, 0));
    _cleanup_close_ int tfd = open_dir(c, CACHE_D_TMP, err);
    if (tfd < 0)
        return tfd;
    _cleanup_close_ int bfd = open_dir(c, CACHE_D_BLOBS, err);
    if (bfd < 0)
        return bfd;
    r = mv_write_atomic_at(tfd, tmp, bfd, hex, buf, len, 0444, MV_WRITE_NOREPLACE | MV_WRITE_SYNC,
                           err);
    if (r < 0)
        return mv_error_wrap(err, "store blob %s", digest);
    return 0;
}

int cache_ingest_open(cache *c, const char *digest, int *fd, char **state_path, mv_error *err)
{
    const char *hex = NULL;
    int r = blob_hex(digest, &hex, err);
    if (r < 0)
        return r;
    _cleanup_close_ int dfd = open_dir(c, CACHE_D_INGEST, err);
    if (dfd < 0)
        return dfd;
    _cleanup_free_ char *name = mv_xasprintf("%s.partial", hex);
    int f = openat(dfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (f < 0)
        return mv_error_errno(err, -errno, "open %s/" CACHE_D_INGEST "/%s", c->root, name);
    *fd = f;
    *state_path = mv_xasprintf("%s/" CACHE_D_INGEST "/%s.state", c->root, hex);
    return 0;
}

int cache_ingest_commit(cache *c, const oci_descriptor *d, int fd, mv_error *err)
{
    const char *hex = NULL;
    int r = blob_hex(d->digest, &hex, err);
    if (r < 0)
        return r;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return mv_error_errno(err, -errno, "blob %s: stat partial file", d->digest);
    if (st.st_size != d->size) {
        /* Unusable: the next attempt must start from nothing, not resume. */
        _cleanup_free_ char *partial = mv_xasprintf(CACHE_D_INGEST "/%s.partial", hex);
        unlinkat(c->root_fd, partial, 0);
        return mv_error_set(err, -EBADMSG, "blob %s: %lld bytes downloaded, manifest says %lld",
                            d->digest, (long long)st.st_size, (long long)d->size);
    }
    if (fchmod(fd, 0444) < 0)
        return mv_error_errno(err, -errno, "blob %s: chmod", d->digest);
    if (fsync(fd) < 0)
        return mv_error_errno(err, -errno, "blob %s: fsync", d->digest);
    _cleanup_close_ int ifd = open_dir(c, CACHE_D_INGEST, err);
    if (ifd < 0)
        return ifd;
    _cleanup_close_ int bfd = open_dir(c, CACHE_D_BLOBS, err);
    if (bfd < 0)
        return bfd;
    _cleanup_free_ char *partial = mv_xasprintf("%s.partial", hex);
    _cleanup_free_ char *state = mv_xasprintf("%s.state", hex);
    unlinkat(ifd, state, 0);
    r = mv_rename_noreplace(ifd, partial, bfd, hex);
    if (r == -EEXIST) {
        unlinkat(ifd, partial, 0);
        return 0;
    }
    if (r < 0)
        return mv_error_errno(err, r, "blob %s: rename into " CACHE_D_BLOBS, d->digest);
    if (fsync(bfd) < 0)
        return mv_error_errno(err, -errno, "blob %s: fsync " CACHE_D_BLOBS, d->digest);
    return 0;
}

int cache_blob_read(cache *c, const char *digest, size_t max, char **out, size_t *len,
                    mv_error *err)
{
    const char *hex = NULL;
    int r = blob_hex(digest, &hex, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *p = mv_xasprintf(CACHE_D_BLOBS "/%s", hex);
    _cleanup_free_ char *buf = NULL;
    size_t n = 0;
    r = mv_read_file_at(c->root_fd, p, max, &buf, &n, err);
    if (r < 0)
        return mv_error_wrap(err, "blob %s", digest);
    char got[OCI_DIGEST_MAX];
    oci_digest_buf(OCI_DIGEST_SHA256, buf, n, got);
    if (strcmp(got, digest) != 0)
        return mv_error_set(err, -EBADMSG,
                            "blob %s in the cache is corrupt (hashes to %s); run modelpull verify",
                            digest, got);
    *out = MV_STEAL(buf);
    if (len)
        *len = n;
    return 0;
}

int cache_blob_check(cache *c, const char *hex, bool *ok, uint64_t *size, mv_error *err)
{
    _cleanup_free_ char *p = mv_xasprintf(CACHE_D_BLOBS "/%s", hex);
    _cleanup_close_ int fd = openat(c->root_fd, p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return mv_error_errno(err, -errno, "open %s/%s", c->root, p);
    _cleanup_hasher_ oci_hasher *h = oci_hasher_new(OCI_DIGEST_SHA256);
    enum { BUF = 1 << 20 };
    _cleanup_free_ char *buf = mv_xmalloc(BUF);
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return mv_error_errno(err, -errno, "read %s/%s", c->root, p);
        if (n == 0)
            break;
        oci_hasher_update(h, buf, (size_t)n);
        total += (uint64_t)n;
    }
    char got[OCI_DIGEST_MAX];
    oci_hasher_final(h, got);
    *ok = strcmp(got + strlen("sha256:"), hex) == 0;
    if (size)
        *size = total;
    return 0;
}
