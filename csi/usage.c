/* usage.c — disk usage of a directory tree for NodeGetVolumeStats and the
 * cache-size metric. Model trees are hard links into the blob store, so
 * each inode counts once. Walks with openat, never follows symlinks, never
 * changes the working directory (calls run on many threads). */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "csi.h"

#define USAGE_MAX_DEPTH 64

/* Open-addressing set of (dev, ino) for inodes with several links. */
typedef struct ino_set {
    uint64_t *keys; /* 0 = empty */
    size_t cap;
    size_t n;
} ino_set;

static uint64_t ino_key(const struct stat *s)
{
    uint64_t k = ((uint64_t)s->st_dev * 0x9e3779b97f4a7c15ULL) ^ (uint64_t)s->st_ino;
    return k ? k : 1;
}

/* True when the key was new. */
static bool ino_set_add(ino_set *set, uint64_t key)
{
    if (set->n * 2 >= set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 256;
        uint64_t *keys = mv_xcalloc(cap, sizeof(*keys));
        for (size_t i = 0; i < set->cap; i++) {
            if (!set->keys[i])
                continue;
            size_t j = set->keys[i] & (cap - 1);
            while (keys[j])
                j = (j + 1) & (cap - 1);
            keys[j] = set->keys[i];
        }
        free(set->keys);
        set->keys = keys;
        set->cap = cap;
    }
    size_t j = key & (set->cap - 1);
    while (set->keys[j]) {
        if (set->keys[j] == key)
            return false;
        j = (j + 1) & (set->cap - 1);
    }
    set->keys[j] = key;
    set->n++;
    return true;
}

typedef struct usage_walk {
    ino_set seen;
    uint64_t bytes;
    uint64_t inodes;
} usage_walk;

static void count(usage_walk *w, const struct stat *s)
{
    if (s->st_nlink > 1 && !S_ISDIR(s->st_mode) && !ino_set_add(&w->seen, ino_key(s)))
        return;
    w->inodes++;
    if (S_ISREG(s->st_mode))
        w->bytes += (uint64_t)s->st_size;
}

static int walk_dir(usage_walk *w, int dfd, const char *path, int depth, mv_error *err)
{
    if (depth > USAGE_MAX_DEPTH)
        return mv_error_set(err, -ELOOP, "%s: deeper than %d levels", path, USAGE_MAX_DEPTH);
    DIR *d = fdopendir(dfd);
    if (!d) {
        int saved = -errno;
        close(dfd);
        return mv_error_errno(err, saved, "read directory %s", path);
    }
    int r = 0;
    struct dirent *e;
    while (r == 0 && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        struct stat s;
        if (fstatat(dirfd(d), e->d_name, &s, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue; /* removed while we walked */
            r = mv_error_errno(err, -errno, "stat %s/%s", path, e->d_name);
            break;
        }
        count(w, &s);
        if (!S_ISDIR(s.st_mode))
            continue;
        int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
            if (errno == ENOENT)
                continue;
            r = mv_error_errno(err, -errno, "open %s/%s", path, e->d_name);
            break;
        }
        _cleanup_free_ char *subpath = mv_xasprintf("%s/%s", path, e->d_name);
        r = walk_dir(w, sub, subpath, depth + 1, err);
    }
    closedir(d);
    return r;
}

int csi_tree_usage(const char *path, uint64_t *bytes, uint64_t *inodes, mv_error *err)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return mv_error_errno(err, -errno, "open %s", path);
    struct stat s;
    if (fstat(fd, &s) < 0) {
        int saved = -errno;
        close(fd);
        return mv_error_errno(err, saved, "stat %s", path);
    }
    usage_walk w = {0};
    count(&w, &s);
    int r = walk_dir(&w, fd, path, 0, err);
    free(w.seen.keys);
    if (r < 0)
        return r;
    *bytes = w.bytes;
    *inodes = w.inodes;
    return 0;
}
