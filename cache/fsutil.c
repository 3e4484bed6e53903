/* fsutil.c — file-system primitives of the cache: no-follow directory
 * walks, recursive removal, durable atomic writes and no-replace renames.
 * Everything works relative to directory fds so that no path is ever
 * re-resolved through a symlink. */
#include "cache-internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

int cache_open_dir_nofollow(int dirfd, const char *path, bool create, int *out, mv_error *err)
{
    _cleanup_free_ char *copy = mv_xstrdup(path);
    _cleanup_close_ int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return mv_error_errno(err, -errno, "dup directory fd");
    char *save = NULL;
    for (char *comp = strtok_r(copy, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
        if (strcmp(comp, ".") == 0)
            continue;
        if (strcmp(comp, "..") == 0)
            return mv_error_set(err, -EINVAL, "path \"%s\" contains \"..\"", path);
        int next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && create) {
            if (mkdirat(fd, comp, 0755) < 0 && errno != EEXIST)
                return mv_error_errno(err, -errno, "mkdir \"%s\" in \"%s\"", comp, path);
            next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (next < 0) {
            int e = errno == ELOOP ? ENOTDIR : errno;
            return mv_error_errno(err, -e, "open directory \"%s\" (component \"%s\")", path, comp);
        }
        close(fd);
        fd = next;
    }
    *out = MV_STEAL_FD(fd);
    return 0;
}

DIR *cache_opendir_fd(int fd)
{
    int d2 = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (d2 < 0)
        return NULL;
    DIR *d = fdopendir(d2);
    if (!d) {
        int e = errno;
        close(d2);
        errno = e;
        return NULL;
    }
    rewinddir(d);
    return d;
}

int cache_rename_dir_noreplace(int olddirfd, const char *oldname, int newdirfd, const char *newname)
{
    if (syscall(SYS_renameat2, olddirfd, oldname, newdirfd, newname, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -errno;
    /* Without RENAME_NOREPLACE, rename(2) still refuses a non-empty target. */
    return renameat(olddirfd, oldname, newdirfd, newname) == 0 ? 0 : -errno;
}

static int rm_contents(int fd, mv_error *err);

int cache_rm_rf_at(int dirfd, const char *name, mv_error *err)
{
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM && errno != ENOTEMPTY)
        return mv_error_errno(err, -errno, "remove \"%s\"", name);
    _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return mv_error_errno(err, -errno, "open \"%s\" for removal", name);
    }
    /* The directory may be read-only (an extracted layer); removal needs w. */
    fchmod(fd, 0700);
    int r = rm_contents(fd, err);
    if (r < 0)
        return mv_error_wrap(err, "remove \"%s\"", name);
    if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return mv_error_errno(err, -errno, "remove directory \"%s\"", name);
    return 0;
}

static int rm_contents(int fd, mv_error *err)
{
    DIR *d = cache_opendir_fd(fd);
    if (!d)
        return mv_error_errno(err, -errno, "read directory");
    int r = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        r = cache_rm_rf_at(fd, de->d_name, err);
        if (r < 0)
            break;
    }
    closedir(d);
    return r;
}

int cache_fsync_dir_at(int dirfd, const char *path, mv_error *err)
{
    _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return mv_error_errno(err, -errno, "open directory \"%s\"", path);
    if (fsync(fd) < 0)
        return mv_error_errno(err, -errno, "fsync directory \"%s\"", path);
    return 0;
}

int cache_rename_noreplace(int olddirfd, const char *oldname, int newdirfd, const char *newname)
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

int cache_write_atomic(int tmpdirfd, const char *tmpname, int dstdirfd, const char *dstname,
                       const void *buf, size_t len, mode_t mode, bool replace, bool sync,
                       mv_error *err)
{
    unlinkat(tmpdirfd, tmpname, 0);
    _cleanup_close_ int fd =
        openat(tmpdirfd, tmpname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return mv_error_errno(err, -errno, "create \"%s\"", tmpname);
    int r = write_all(fd, buf, len);
    if (r == 0 && fchmod(fd, mode) < 0)
        r = -errno;
    if (r == 0 && sync && fsync(fd) < 0)
        r = -errno;
    if (r < 0) {
        unlinkat(tmpdirfd, tmpname, 0);
        return mv_error_errno(err, r, "write \"%s\"", dstname);
    }
    if (replace)
        r = renameat(tmpdirfd, tmpname, dstdirfd, dstname) == 0 ? 0 : -errno;
    else
        r = cache_rename_noreplace(tmpdirfd, tmpname, dstdirfd, dstname);
    if (r == -EEXIST) {
        unlinkat(tmpdirfd, tmpname, 0);
        return 0;
    }
    if (r < 0) {
        unlinkat(tmpdirfd, tmpname, 0);
        return mv_error_errno(err, r, "rename into \"%s\"", dstname);
    }
    if (sync && fsync(dstdirfd) < 0)
        return mv_error_errno(err, -errno, "fsync directory of \"%s\"", dstname);
    return 0;
}

int cache_read_file_at(int dirfd, const char *path, size_t max, char **out, size_t *len,
                       mv_error *err)
{
    _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return mv_error_errno(err, -errno, "open \"%s\"", path);
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

int cache_touch_at(int dirfd, const char *path, mv_error *err)
{
    if (utimensat(dirfd, path, NULL, AT_SYMLINK_NOFOLLOW) == 0)
        return 0;
    if (errno != ENOENT)
        return mv_error_errno(err, -errno, "touch \"%s\"", path);
    _cleanup_close_ int fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return mv_error_errno(err, -errno, "create \"%s\"", path);
    return 0;
}

/* A small open-addressing set of (dev, ino) so each inode counts once. */
typedef struct inode_set {
    struct {
        dev_t dev;
        ino_t ino;
        bool used;
    } * slots;
    size_t cap, n;
} inode_set;

static bool inode_set_add(inode_set *s, dev_t dev, ino_t ino)
{
    if ((s->n + 1) * 2 > s->cap) {
        inode_set old = *s;
        s->cap = old.cap ? old.cap * 2 : 256;
        s->slots = mv_xcalloc(s->cap, sizeof(*s->slots));
        s->n = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.slots[i].used)
                inode_set_add(s, old.slots[i].dev, old.slots[i].ino);
        free(old.slots);
    }
    size_t h = ((size_t)ino * 11400714819323198485ull ^ (size_t)dev) & (s->cap - 1);
    while (s->slots[h].used) {
        if (s->slots[h].ino == ino && s->slots[h].dev == dev)
            return false;
        h = (h + 1) & (s->cap - 1);
    }
    s->slots[h].used = true;
    s->slots[h].dev = dev;
    s->slots[h].ino = ino;
    s->n++;
    return true;
}

static int du_walk(int parent, const char *name, inode_set *seen, uint64_t *bytes, int depth,
                   mv_error *err)
{
    struct stat st;
    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return 0;
        return mv_error_errno(err, -errno, "stat \"%s\"", name);
    }
    if (!S_ISDIR(st.st_mode)) {
        if (inode_set_add(seen, st.st_dev, st.st_ino))
            *bytes += (uint64_t)st.st_blocks * 512;
        return 0;
    }
    if (depth > 256)
        return mv_error_set(err, -ELOOP, "directory tree deeper than 256 at \"%s\"", name);
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : mv_error_errno(err, -errno, "open \"%s\"", name);
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return mv_error_errno(err, -e, "read directory \"%s\"", name);
    }
    int r = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        r = du_walk(dirfd(d), de->d_name, seen, bytes, depth + 1, err);
        if (r < 0)
            break;
    }
    closedir(d);
    return r;
}

int cache_du_at(int dirfd, const char *const *paths, uint64_t *bytes, mv_error *err)
{
    inode_set seen = {0};
    *bytes = 0;
    int r = 0;
    for (size_t i = 0; paths[i] && r == 0; i++)
        r = du_walk(dirfd, paths[i], &seen, bytes, 0, err);
    free(seen.slots);
    return r;
}
