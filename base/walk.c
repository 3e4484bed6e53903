/* walk.c — the one directory walker: depth-first over directory fds, never
 * through a symlink, with a set of (dev, ino) so a file with several hard
 * links is reported as first seen once. Disk use is built on it. */
#include "mv.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

typedef struct inode_set {
    uint64_t *keys; /* 0 = empty */
    size_t cap, n;
} inode_set;

static uint64_t inode_key(const struct stat *s)
{
    uint64_t k = ((uint64_t)s->st_dev * 0x9e3779b97f4a7c15ULL) ^ (uint64_t)s->st_ino;
    return k ? k : 1;
}

/* True when the key was new. */
static bool inode_set_add(inode_set *set, uint64_t key)
{
    if ((set->n + 1) * 2 > set->cap) {
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

typedef struct walk {
    inode_set seen;
    /* Every file goes into the set, not only those with several links:
     * roots that overlap must not count a file twice. */
    bool every_inode;
    int max_depth;
    mv_walk_fn fn;
    void *ud;
} walk;

static int visit(walk *w, int parent, const char *name, const char *path, int depth, mv_error *err);

static int walk_children(walk *w, int dfd, const char *path, int depth, mv_error *err)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        int saved = -errno;
        close(dfd);
        return mv_error_errno(err, saved, "read directory \"%s\"", path);
    }
    int r = 0;
    struct dirent *de;
    while (r >= 0 && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        _cleanup_free_ char *sub =
            path[0] ? mv_xasprintf("%s/%s", path, de->d_name) : mv_xstrdup(de->d_name);
        r = visit(w, dirfd(d), de->d_name, sub, depth + 1, err);
    }
    closedir(d);
    return r < 0 ? r : 0;
}

static int visit(walk *w, int parent, const char *name, const char *path, int depth, mv_error *err)
{
    struct stat st;
    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT && depth > 0)
            return 0; /* removed while we walked */
        return mv_error_errno(err, -errno, "stat \"%s\"", path[0] ? path : name);
    }
    bool dir = S_ISDIR(st.st_mode);
    bool first =
        dir || (st.st_nlink < 2 && !w->every_inode) || inode_set_add(&w->seen, inode_key(&st));
    mv_walk_entry e = {parent, name, path, depth, &st, first};
    int r = w->fn(&e, w->ud, err);
    if (r < 0 || !dir || r == MV_WALK_SKIP)
        return r < 0 ? r : 0;
    if (depth >= w->max_depth)
        return mv_error_set(err, -ELOOP, "directory tree deeper than %d at \"%s\"", w->max_depth,
                            path[0] ? path : name);
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT && depth > 0)
            return 0;
        return mv_error_errno(err, -errno, "open \"%s\"", path[0] ? path : name);
    }
    return walk_children(w, fd, path, depth, err);
}

int mv_walk_at(int dirfd, const char *path, int max_depth, mv_walk_fn fn, void *ud, mv_error *err)
{
    walk w = {{0}, false, max_depth, fn, ud};
    int r = visit(&w, dirfd, path, "", 0, err);
    free(w.seen.keys);
    return r;
}

static int du_one(const mv_walk_entry *e, void *ud, mv_error *err)
{
    (void)err;
    if (e->first_link && !S_ISDIR(e->st->st_mode))
        *(uint64_t *)ud += (uint64_t)e->st->st_blocks * 512;
    return 0;
}

int mv_du_at(int dirfd, const char *const *paths, uint64_t *bytes, mv_error *err)
{
    /* One inode set across all paths: trees hard-link into the others. */
    walk w = {{0}, true, 256, du_one, bytes};
    *bytes = 0;
    int r = 0;
    for (size_t i = 0; paths[i] && r >= 0; i++) {
        struct stat st;
        if (fstatat(dirfd, paths[i], &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
            continue;
        r = visit(&w, dirfd, paths[i], "", 0, err);
    }
    free(w.seen.keys);
    return r < 0 ? r : 0;
}
