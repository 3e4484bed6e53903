/* fsutil.c — file-system primitives of the cache: no-follow directory
 * opens, recursive removal and touching. The atomic writer, the reader and
 * the walker are base's (mv.h).
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
