/* lock.c — cross-process locks: flock(2) on files in locks/. A lock file
 * may be unlinked by recovery while someone waits on it, so after taking
 * the lock we check that the path still names the inode we locked, and
 * start over if not. The kernel drops a dead process's flock, which is how
 * live work is told from stale leftovers. */
#include "cache-internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

static int locks_dir(cache *c, mv_error *err)
{
    int fd = openat(c->root_fd, CACHE_D_LOCKS, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return mv_error_errno(err, -errno, "open %s/" CACHE_D_LOCKS, c->root);
    return fd;
}

int cache_lock(cache *c, const char *name, int how, int *out, mv_error *err)
{
    _cleanup_close_ int dfd = locks_dir(c, err);
    if (dfd < 0)
        return dfd;
    _cleanup_free_ char *file = mv_xasprintf("%s.lock", name);
    for (int attempt = 0; attempt < 1000; attempt++) {
        _cleanup_close_ int fd = openat(dfd, file, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            return mv_error_errno(err, -errno, "open lock %s/" CACHE_D_LOCKS "/%s", c->root, file);
        int r;
        while ((r = flock(fd, how)) < 0 && errno == EINTR)
            ;
        if (r < 0) {
            if (errno == EWOULDBLOCK)
                return -EWOULDBLOCK;
            return mv_error_errno(err, -errno, "lock %s/" CACHE_D_LOCKS "/%s", c->root, file);
        }
        struct stat a, b;
        if (fstat(fd, &a) < 0)
            return mv_error_errno(err, -errno, "stat lock %s", file);
        if (fstatat(dfd, file, &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev) {
            *out = MV_STEAL_FD(fd);
            return 0;
        }
        /* Removed (or replaced) by a sweep while we waited: retry. */
    }
    return mv_error_set(err, -EDEADLK, "lock %s: the lock file keeps being replaced", file);
}

int cache_publishing_hold(cache *c, int *fd, mv_error *err)
{
    return cache_lock(c, "publishing", LOCK_SH, fd, err);
}

bool cache_publishing_active(cache *c)
{
    int fd = -1;
    int r = cache_lock(c, "publishing", LOCK_EX | LOCK_NB, &fd, NULL);
    if (r == 0)
        close(fd);
    return r == -EWOULDBLOCK;
}

void cache_locks_sweep(cache *c)
{
    _cleanup_close_ int dfd = locks_dir(c, NULL);
    if (dfd < 0)
        return;
    DIR *d = cache_opendir_fd(dfd);
    if (!d) {
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".lock") != 0)
            continue;
        _cleanup_close_ int fd = openat(dfd, de->d_name, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;
        /* Only a lock nobody holds can go; holding it while unlinking makes
         * waiters notice the inode change and retry. */
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            unlinkat(dfd, de->d_name, 0);
    }
    closedir(d);
}
