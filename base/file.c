/* file.c — the file mechanisms every module shares: the one atomic writer
 * (temp file, optional fsync, rename), the no-replace rename, the small-file
 * reader and mkdir -p. Policy (modes, fsync or not) is the caller's. */
#include "mv.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/fs.h>

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int mv_rename_noreplace(int olddirfd, const char *oldname, int newdirfd, const char *newname)
{
    if (syscall(SYS_renameat2, olddirfd, oldname, newdirfd, newname, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -errno;
    /* File systems without RENAME_NOREPLACE: link(2) refuses to replace. */
    if (linkat(olddirfd, oldname, newdirfd, newname, 0) < 0)
        return -errno;
    unlinkat(olddirfd, oldname, 0);
    return 0;
}

int mv_write_atomic_at(int tmpdirfd, const char *tmpname, int dstdirfd, const char *dstname,
                       const void *buf, size_t len, mode_t mode, unsigned flags, mv_error *err)
{
    bool sync_data = flags & (MV_WRITE_SYNC | MV_WRITE_SYNC_DATA);
    bool sync_dir = flags & MV_WRITE_SYNC;
    unlinkat(tmpdirfd, tmpname, 0);
    _cleanup_close_ int fd =
        openat(tmpdirfd, tmpname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return mv_error_errno(err, -errno, "create \"%s\"", tmpname);
    int r = write_all(fd, buf, len);
    if (r == 0 && fchmod(fd, mode) < 0)
        r = -errno;
    if (r == 0 && sync_data && fsync(fd) < 0)
        r = -errno;
    if (r < 0) {
        unlinkat(tmpdirfd, tmpname, 0);
        return mv_error_errno(err, r, "write \"%s\"", dstname);
    }
    if (flags & MV_WRITE_NOREPLACE)
        r = mv_rename_noreplace(tmpdirfd, tmpname, dstdirfd, dstname);
    else
        r = renameat(tmpdirfd, tmpname, dstdirfd, dstname) == 0 ? 0 : -errno;
    if (r == -EEXIST) {
        unlinkat(tmpdirfd, tmpname, 0);
        return 0;
    }
    if (r < 0) {
        unlinkat(tmpdirfd, tmpname, 0);
        return mv_error_errno(err, r, "rename into \"%s\"", dstname);
    }
    if (sync_dir && fsync(dstdirfd) < 0)
        return mv_error_errno(err, -errno, "fsync directory of \"%s\"", dstname);
    return 0;
}

int mv_write_atomic(const char *path, const void *buf, size_t len, mode_t mode, unsigned flags,
                    mv_error *err)
{
    const char *slash = strrchr(path, '/');
    _cleanup_free_ char *dir = slash ? mv_xstrndup(path, (size_t)(slash - path)) : NULL;
    const char *name = slash ? slash + 1 : path;
    _cleanup_close_ int dfd =
        open(dir ? (dir[0] ? dir : "/") : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return mv_error_errno(err, -errno, "open directory of %s", path);
    _cleanup_free_ char *tmp =
        mv_xasprintf("%s.tmp.%d.%lx", name, getpid(), (unsigned long)pthread_self());
    int r = mv_write_atomic_at(dfd, tmp, dfd, name, buf, len, mode, flags, err);
    if (r < 0)
        return mv_error_wrap(err, "%s", path);
    return 0;
}

int mv_fsync_dir_at(int dirfd, const char *path, mv_error *err)
{
    _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return mv_error_errno(err, -errno, "open directory \"%s\"", path);
    if (fsync(fd) < 0)
        return mv_error_errno(err, -errno, "fsync directory \"%s\"", path);
    return 0;
}

/* Reads all of fd, a regular file of at most max bytes, NUL-terminated. */
static int read_fd(int fd, const char *path, size_t max, char **out, size_t *len, mv_error *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return mv_error_errno(err, -errno, "stat \"%s\"", path);
    if (!S_ISREG(st.st_mode))
        return mv_error_set(err, -EINVAL, "\"%s\" is not a regular file", path);
    if ((uint64_t)st.st_size > max)
        return mv_error_set(err, -EFBIG, "\"%s\" is larger than %zu bytes", path, max);
    size_t n = (size_t)st.st_size;
    _cleanup_free_ char *buf = mv_xmalloc(n + 1);
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return mv_error_errno(err, -errno, "read \"%s\"", path);
        if (k == 0)
            break;
        got += (size_t)k;
    }
    buf[got] = '\0';
    *out = MV_STEAL(buf);
    if (len)
        *len = got;
    return 0;
}

int mv_read_file_at(int dirfd, const char *path, size_t max, char **out, size_t *len, mv_error *err)
{
    _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return mv_error_errno(err, -errno, "open \"%s\"", path);
    return read_fd(fd, path, max, out, len, err);
}

int mv_read_file(const char *path, size_t max, char **out, size_t *len, mv_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mv_error_errno(err, -errno, "open \"%s\"", path);
    return read_fd(fd, path, max, out, len, err);
}

int mv_mkdir_p(const char *path, mode_t mode, mv_error *err)
{
    _cleanup_free_ char *p = mv_xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST)
            return mv_error_errno(err, -errno, "create directory %s", p);
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return mv_error_errno(err, -errno, "create directory %s", p);
    return 0;
}
