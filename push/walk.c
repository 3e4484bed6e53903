/* walk.c — finds the files of a model directory: depth-first in byte
 * order, following a symlink only when it resolves inside the directory,
 * refusing loops, FIFOs, sockets and devices, and skipping .git and what
 * --exclude names without entering it. It records each file's identity
 * (inode, size, times) for the hashing and the hash cache.
 *
 * Not base's mv_walk_at: that walker never follows a symlink, and the
 * packer must follow the ones that stay inside DIR (a model's
 * snapshot/blob links), with a stack of directories to refuse cycles. */
#include "push-internal.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#define WALK_DEPTH     64
#define PUSH_MAX_FILES OCI_MANIFEST_MAX_LAYERS

/* ------------------------------------------------------------------------ */
/* Walk                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct walker {
    const push_pack_opts *o;
    char *root; /* realpath of DIR */
    size_t root_len;
    push_file *files;
    size_t n, cap;
    struct {
        dev_t dev;
        ino_t ino;
    } stack[WALK_DEPTH];
    size_t depth;
} walker;

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool inside_root(const walker *w, const char *real)
{
    return strncmp(real, w->root, w->root_len) == 0 &&
           (real[w->root_len] == '/' || (w->root_len == 1 && w->root[0] == '/'));
}

static const char *ftype_name(mode_t m)
{
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISSOCK(m))
        return "a socket";
    if (S_ISCHR(m) || S_ISBLK(m))
        return "a device";
    return "not a regular file";
}

static int walk_dir(walker *w, const char *abs, const char *rel, mv_error *err);

static int walk_entry(walker *w, const char *abs, const char *rel, mv_error *err)
{
    struct stat st;
    if (lstat(abs, &st) < 0)
        return mv_error_errno(err, -errno, "%s", rel);
    _cleanup_free_ char *real = NULL;
    if (S_ISLNK(st.st_mode)) {
        real = realpath(abs, NULL);
        if (!real) {
            if (errno == ENOENT || errno == ELOOP)
                return mv_error_set(err, -EINVAL, "%s: symlink is dangling or loops", rel);
            return mv_error_errno(err, -errno, "%s: resolve symlink", rel);
        }
        if (strcmp(real, w->root) == 0)
            return mv_error_set(err, -EINVAL, "%s: symlink points back at the model directory",
                                rel);
        if (!inside_root(w, real))
            return mv_error_set(err, -EINVAL,
                                "%s: symlink points outside the model directory (to %s); "
                                "copy the file in instead",
                                rel, real);
        if (stat(real, &st) < 0)
            return mv_error_errno(err, -errno, "%s", rel);
    }
    const char *open_path = real ? real : abs;
    if (S_ISDIR(st.st_mode)) {
        for (size_t i = 0; i < w->depth; i++)
            if (w->stack[i].dev == st.st_dev && w->stack[i].ino == st.st_ino)
                return mv_error_set(err, -EINVAL, "%s: symlink makes a directory loop", rel);
        if (w->depth >= WALK_DEPTH)
            return mv_error_set(err, -EINVAL, "%s: directories nested deeper than %d", rel,
                                WALK_DEPTH);
        w->stack[w->depth].dev = st.st_dev;
        w->stack[w->depth].ino = st.st_ino;
        w->depth++;
        int r = walk_dir(w, open_path, rel, err);
        w->depth--;
        return r;
    }
    if (!S_ISREG(st.st_mode))
        return mv_error_set(err, -EINVAL, "%s: %s, only regular files can be pushed", rel,
                            ftype_name(st.st_mode));
    if (w->n >= PUSH_MAX_FILES)
        return mv_error_set(err, -EINVAL, "more than %d files; use --tar to group small files",
                            PUSH_MAX_FILES);
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 64;
        w->files = mv_xrealloc(w->files, w->cap * sizeof(*w->files));
    }
    push_file *f = &w->files[w->n++];
    memset(f, 0, sizeof(*f));
    f->rel = mv_xstrdup(rel);
    f->path = mv_xstrdup(open_path);
    f->size = (uint64_t)st.st_size;
    f->dev = (uint64_t)st.st_dev;
    f->ino = (uint64_t)st.st_ino;
    f->mtime_s = st.st_mtim.tv_sec;
    f->mtime_ns = st.st_mtim.tv_nsec;
    f->ctime_s = st.st_ctim.tv_sec;
    f->ctime_ns = st.st_ctim.tv_nsec;
    /* Only the execute bit survives: umask and checkout differences must
     * not change the digest. */
    f->mode = (st.st_mode & 0111) ? 0755 : 0644;
    return 0;
}

static int walk_dir(walker *w, const char *abs, const char *rel, mv_error *err)
{
    DIR *d = opendir(abs);
    if (!d)
        return mv_error_errno(err, -errno, "%s", rel[0] ? rel : abs);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        /* A git checkout of a model repo: the history is not the model. */
        if (strcmp(de->d_name, ".git") == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            names = mv_xrealloc(names, cap * sizeof(*names));
        }
        names[n++] = mv_xstrdup(de->d_name);
    }
    int rd_errno = errno;
    closedir(d);
    int r = 0;
    if (rd_errno)
        r = mv_error_errno(err, -rd_errno, "%s: read directory", rel[0] ? rel : abs);
    if (names)
        qsort(names, n, sizeof(*names), name_cmp);
    for (size_t i = 0; i < n && r == 0; i++) {
        _cleanup_free_ char *cabs = mv_xasprintf("%s/%s", abs, names[i]);
        _cleanup_free_ char *crel =
            rel[0] ? mv_xasprintf("%s/%s", rel, names[i]) : mv_xstrdup(names[i]);
        if (!push_excluded(crel, w->o))
            r = walk_entry(w, cabs, crel, err);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return r;
}

static int file_cmp(const void *a, const void *b)
{
    return strcmp(((const push_file *)a)->rel, ((const push_file *)b)->rel);
}

int push_walk(const char *dir, const push_pack_opts *o, push_file **files, size_t *n, mv_error *err)
{
    *files = NULL;
    *n = 0;
    walker w = {.o = o};
    w.root = realpath(dir, NULL);
    if (!w.root)
        return mv_error_errno(err, -errno, "model directory %s", dir);
    w.root_len = strlen(w.root);
    struct stat st;
    int r;
    if (stat(w.root, &st) < 0)
        r = mv_error_errno(err, -errno, "model directory %s", dir);
    else if (!S_ISDIR(st.st_mode))
        r = mv_error_set(err, -ENOTDIR, "model directory %s: not a directory", dir);
    else {
        w.stack[0].dev = st.st_dev;
        w.stack[0].ino = st.st_ino;
        w.depth = 1;
        r = walk_dir(&w, w.root, "", err);
    }
    *files = w.files;
    *n = w.n;
    free(w.root);
    if (r < 0)
        return mv_error_wrap(err, "model directory %s", dir);
    if (w.n)
        qsort(w.files, w.n, sizeof(*w.files), file_cmp);
    return 0;
}
