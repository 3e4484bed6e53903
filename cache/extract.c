/* extract.c — safe extraction of tar layers (plain, gzip, zstd) with
 * libarchive, once per layer digest into layers/sha256/<hex>.
 *
 * Two libarchive readers form one pass: the outer one only decompresses
 * (raw format) and feeds the inner tar reader through a callback that
 * hashes the uncompressed stream, so the diff_id is checked without
 * decompressing twice. Files are written by us, not archive_write_disk:
 * every path is walked component by component with O_NOFOLLOW, so a
 * symlink planted by an earlier entry can never redirect a write. */
#include "cache-internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#define READ_BLOCK ((size_t)256 * 1024)

typedef struct extract_ctx {
    struct archive *outer;
    oci_hasher *hasher;
    /* READ_BLOCK bytes from the heap. Not a __thread array: the loader
     * zeroes every thread's TLS block at its creation, and the CSI plugin
     * starts a thread per call. */
    char *block;
    char outer_error[256];
    bool outer_failed;
} extract_ctx;

static la_ssize_t inner_read(struct archive *a, void *opaque, const void **buf)
{
    (void)a;
    extract_ctx *x = opaque;
    la_ssize_t n = archive_read_data(x->outer, x->block, READ_BLOCK);
    if (n < 0) {
        x->outer_failed = true;
        snprintf(x->outer_error, sizeof(x->outer_error), "%s",
                 archive_error_string(x->outer) ? archive_error_string(x->outer)
                                                : "decompression failed");
        archive_set_error(a, EINVAL, "%s", x->outer_error);
        return -1;
    }
    oci_hasher_update(x->hasher, x->block, (size_t)n);
    *buf = x->block;
    return n;
}

MV_DEFINE_FREEP(struct archive, archive_freep, archive_read_free)
#define _cleanup_archive_ _cleanup_(archive_freep)

/* Splits a tar entry name into normalised components joined by "/".
 * Rejects absolute names, "..", and control characters that would make
 * file names lie in logs. Empty result means the root itself. */
static int entry_path(const char *name, const char *layer, char **out, mv_error *err)
{
    if (!name)
        return mv_error_set(err, -EBADMSG, "layer %s: entry without a name", layer);
    if (strlen(name) > 4096)
        return mv_error_set(err, -EBADMSG, "layer %s: entry name longer than 4096 bytes", layer);
    if (name[0] == '/')
        return mv_error_set(err, -EBADMSG, "layer %s: entry \"%s\" has an absolute path", layer,
                            name);
    if (strpbrk(name, "\n\r"))
        return mv_error_set(err, -EBADMSG, "layer %s: entry name contains a newline", layer);
    _cleanup_free_ char *copy = mv_xstrdup(name);
    /* The joined components never outgrow the name they came from. */
    _cleanup_free_ char *res = mv_xmalloc(strlen(name) + 1);
    size_t len = 0;
    char *save = NULL;
    for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0)
            continue;
        if (strcmp(c, "..") == 0)
            return mv_error_set(err, -EBADMSG, "layer %s: entry \"%s\" contains \"..\"", layer,
                                name);
        if (len)
            res[len++] = '/';
        size_t cl = strlen(c);
        memcpy(res + len, c, cl);
        len += cl;
    }
    res[len] = '\0';
    *out = MV_STEAL(res);
    return 0;
}

/* Lexical check of a symlink target from the directory holding the link.
 * The full check, following links, runs once the layer is complete. */
static bool symlink_target_ok(const char *dir, const char *target, bool allow_abs)
{
    int depth = 0;
    if (target[0] == '/') {
        if (!allow_abs)
            return false;
    } else if (dir[0]) {
        depth = 1;
        for (const char *p = dir; *p; p++)
            depth += *p == '/';
    }
    _cleanup_free_ char *copy = mv_xstrdup(target);
    char *save = NULL;
    for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0)
            continue;
        if (strcmp(c, "..") == 0) {
            if (--depth < 0)
                return false;
        } else {
            depth++;
        }
    }
    return true;
}

static void split_parent(const char *path, char **parent, const char **base)
{
    const char *slash = strrchr(path, '/');
    if (slash) {
        *parent = mv_xstrndup(path, (size_t)(slash - path));
        *base = slash + 1;
    } else {
        *parent = mv_xstrdup("");
        *base = path;
    }
}

/* Makes room for a new non-directory entry at dirfd/base: later entries
 * replace earlier files, never directories. */
static int clear_for_file(int dirfd, const char *base, const char *layer, const char *name,
                          mv_error *err)
{
    struct stat st;
    if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0
                               : mv_error_errno(err, -errno, "layer %s: entry \"%s\"", layer, name);
    if (S_ISDIR(st.st_mode))
        return mv_error_set(err, -EBADMSG, "layer %s: entry \"%s\" would replace a directory",
                            layer, name);
    if (unlinkat(dirfd, base, 0) < 0)
        return mv_error_errno(err, -errno, "layer %s: entry \"%s\": replace", layer, name);
    return 0;
}

static int write_file(struct archive *a, int dirfd, const char *base, struct archive_entry *e,
                      const char *layer, const char *name, uint64_t *total, uint64_t max,
                      mv_error *err)
{
    int r = clear_for_file(dirfd, base, layer, name, err);
    if (r < 0)
        return r;
    int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
    if (size < 0 || *total + (uint64_t)size > max)
        return mv_error_set(err, -EFBIG,
                            "layer %s: entry \"%s\" expands beyond the limit of %llu bytes "
                            "(decompression bomb?)",
                            layer, name, (unsigned long long)max);
    /* Created read-only: the fd still writes, but an entry cut short by a
     * bad layer is never left writable, even in the doomed temp dir. */
    _cleanup_close_ int fd =
        openat(dirfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400);
    if (fd < 0)
        return mv_error_errno(err, -errno, "layer %s: entry \"%s\": create", layer, name);
    for (;;) {
        const void *buf;
        size_t n;
        la_int64_t off;
        int ar = archive_read_data_block(a, &buf, &n, &off);
        if (ar == ARCHIVE_EOF)
            break;
        if (ar < ARCHIVE_WARN)
            return mv_error_set(err, -EBADMSG, "layer %s: entry \"%s\": %s", layer, name,
                                archive_error_string(a) ? archive_error_string(a) : "read failed");
        if (off < 0 || (uint64_t)off + n > (uint64_t)size || *total + n > max)
            return mv_error_set(err, -EFBIG,
                                "layer %s: entry \"%s\" expands beyond its size or the limit of "
                                "%llu bytes (decompression bomb?)",
                                layer, name, (unsigned long long)max);
        const char *p = buf;
        while (n > 0) {
            ssize_t w = pwrite(fd, p, n, off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return mv_error_errno(err, -errno, "layer %s: entry \"%s\": write", layer, name);
            p += w;
            n -= (size_t)w;
            off += w;
            *total += (uint64_t)w;
        }
    }
    if (size > 0 && ftruncate(fd, size) < 0)
        return mv_error_errno(err, -errno, "layer %s: entry \"%s\": truncate", layer, name);
    /* Read-only for everyone (trees are mounted read-only), no setuid,
     * setgid or sticky bit; exec bits are kept. */
    mode_t mode = (archive_entry_perm(e) & 0555) | 0444;
    if (fchmod(fd, mode) < 0)
        return mv_error_errno(err, -errno, "layer %s: entry \"%s\": chmod", layer, name);
    return 0;
}

static int make_hardlink(int rootfd, int dirfd, const char *base, const char *link,
                         const char *layer, const char *name, mv_error *err)
{
    _cleanup_free_ char *target = NULL;
    int r = entry_path(link, layer, &target, err);
    if (r < 0 || !target) /* entry_path sets target whenever it returns 0 */
        return mv_error_wrap(err, "hardlink \"%s\"", name);
    if (!target[0])
        return mv_error_set(err, -EBADMSG, "layer %s: hardlink \"%s\" points at the root", layer,
                            name);
    _cleanup_free_ char *tparent = NULL;
    const char *tbase;
    split_parent(target, &tparent, &tbase);
    _cleanup_close_ int tfd = -1;
    mv_error sub = MV_ERROR_INIT;
    if (cache_open_dir_nofollow(rootfd, tparent, false, &tfd, &sub) < 0)
        return mv_error_set(err, -EBADMSG,
                            "layer %s: hardlink \"%s\" -> \"%s\": target is not in the layer",
                            layer, name, link);
    struct stat st;
    if (fstatat(tfd, tbase, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
        return mv_error_set(err, -EBADMSG,
                            "layer %s: hardlink \"%s\" -> \"%s\": target is not a regular file "
                            "earlier in the layer",
                            layer, name, link);
    r = clear_for_file(dirfd, base, layer, name, err);
    if (r < 0)
        return r;
    if (linkat(tfd, tbase, dirfd, base, 0) < 0)
        return mv_error_errno(err, -errno, "layer %s: hardlink \"%s\"", layer, name);
    return 0;
}

static const char *type_name(mode_t t)
{
    switch (t) {
    case AE_IFCHR:
        return "character device";
    case AE_IFBLK:
        return "block device";
    case AE_IFIFO:
        return "fifo";
    case AE_IFSOCK:
        return "socket";
    default:
        return "unsupported entry type";
    }
}

static int extract_entry(struct archive *a, struct archive_entry *e, int rootfd, const char *layer,
                         const cache_extract_limits *lim, uint64_t *total, mv_error *err)
{
    const char *raw = archive_entry_pathname(e);
    _cleanup_free_ char *path = NULL;
    int r = entry_path(raw, layer, &path, err);
    if (r < 0)
        return r;
    if (!path) /* entry_path sets it whenever it returns 0 */
        return mv_error_set(err, -EBADMSG, "layer %s: entry has no path", layer);
    mode_t type = archive_entry_filetype(e);
    const char *hardlink = archive_entry_hardlink(e);
    if (!path[0]) {
        if (type == AE_IFDIR && !hardlink)
            return 0; /* "./" itself */
        return mv_error_set(err, -EBADMSG, "layer %s: entry \"%s\" names the layer root", layer,
                            raw);
    }
    if (!hardlink && type != AE_IFDIR && type != AE_IFREG && type != AE_IFLNK)
        return mv_error_set(err, -EBADMSG, "layer %s: entry \"%s\" is a %s", layer, raw,
                            type_name(type));

    _cleanup_free_ char *parent = NULL;
    const char *base;
    split_parent(path, &parent, &base);
    _cleanup_close_ int dfd = -1;
    r = cache_open_dir_nofollow(rootfd, parent, true, &dfd, err);
    if (r < 0)
        return mv_error_wrap(err, "layer %s: entry \"%s\"", layer, raw);

    if (hardlink)
        return make_hardlink(rootfd, dfd, base, hardlink, layer, raw, err);
    switch (type) {
    case AE_IFDIR: {
        struct stat st;
        if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            if (S_ISDIR(st.st_mode))
                return 0;
            if (unlinkat(dfd, base, 0) < 0)
                return mv_error_errno(err, -errno, "layer %s: entry \"%s\"", layer, raw);
        }
        if (mkdirat(dfd, base, 0755) < 0)
            return mv_error_errno(err, -errno, "layer %s: entry \"%s\": mkdir", layer, raw);
        return 0;
    }
    case AE_IFREG:
        return write_file(a, dfd, base, e, layer, raw, total, lim->max_bytes, err);
    case AE_IFLNK: {
        const char *target = archive_entry_symlink(e);
        if (!target || !*target || strpbrk(target, "\n\r"))
            return mv_error_set(err, -EBADMSG, "layer %s: symlink \"%s\" has a bad target", layer,
                                raw);
        if (!symlink_target_ok(parent, target, lim->allow_absolute_symlinks))
            return mv_error_set(err, -EBADMSG,
                                "layer %s: symlink \"%s\" -> \"%s\" escapes the layer root", layer,
                                raw, target);
        r = clear_for_file(dfd, base, layer, raw, err);
        if (r < 0)
            return r;
        if (symlinkat(target, dfd, base) < 0)
            return mv_error_errno(err, -errno, "layer %s: symlink \"%s\"", layer, raw);
        return 0;
    }
    }
    return mv_error_set(err, -EBADMSG, "layer %s: entry \"%s\" has an unsupported type", layer,
                        raw);
}

int cache_extract_tar(int src_fd, int rootfd, const char *layer, const cache_extract_limits *lim,
                      const char *expected_diff_id, char diff_id_out[OCI_DIGEST_MAX], mv_error *err)
{
    cache_extract_limits l = lim ? *lim : (cache_extract_limits){0};
    if (!l.max_entries)
        l.max_entries = CACHE_EXTRACT_MAX_ENTRIES;
    if (!l.max_bytes)
        l.max_bytes = CACHE_EXTRACT_MAX_BYTES;

    _cleanup_archive_ struct archive *outer = archive_read_new();
    _cleanup_archive_ struct archive *inner = archive_read_new();
    _cleanup_hasher_ oci_hasher *h = oci_hasher_new(OCI_DIGEST_SHA256);
    if (!outer || !inner || !h)
        return mv_error_set(err, -ENOMEM, "layer %s: out of memory", layer);
    archive_read_support_filter_gzip(outer);
    archive_read_support_filter_zstd(outer);
    archive_read_support_format_raw(outer);
    if (archive_read_open_fd(outer, src_fd, READ_BLOCK) != ARCHIVE_OK)
        return mv_error_set(err, -EBADMSG, "layer %s: %s", layer, archive_error_string(outer));
    struct archive_entry *e;
    int ar = archive_read_next_header(outer, &e);
    if (ar == ARCHIVE_EOF)
        return mv_error_set(err, -EBADMSG, "layer %s: empty layer blob", layer);
    if (ar < ARCHIVE_WARN)
        return mv_error_set(err, -EBADMSG, "layer %s: %s", layer, archive_error_string(outer));

    _cleanup_free_ char *block = mv_xmalloc(READ_BLOCK);
    extract_ctx x = {.outer = outer, .hasher = h, .block = block};
    archive_read_support_format_tar(inner);
    if (archive_read_open(inner, &x, NULL, inner_read, NULL) != ARCHIVE_OK)
        return mv_error_set(err, -EBADMSG, "layer %s: not a tar archive: %s", layer,
                            x.outer_failed ? x.outer_error : archive_error_string(inner));
    uint64_t entries = 0, total = 0;
    while ((ar = archive_read_next_header(inner, &e)) == ARCHIVE_OK || ar == ARCHIVE_WARN) {
        if (++entries > l.max_entries)
            return mv_error_set(err, -EFBIG,
                                "layer %s: more than %llu entries (decompression bomb?)", layer,
                                (unsigned long long)l.max_entries);
        int r = extract_entry(inner, e, rootfd, layer, &l, &total, err);
        if (r < 0)
            return r;
    }
    if (ar != ARCHIVE_EOF)
        return mv_error_set(err, -EBADMSG, "layer %s: bad tar data: %s", layer,
                            x.outer_failed                ? x.outer_error
                            : archive_error_string(inner) ? archive_error_string(inner)
                                                          : "read failed");
    /* The tar reader stops at the end-of-archive blocks; the diff_id covers
     * the whole uncompressed stream, padding included. */
    la_ssize_t n;
    while ((n = archive_read_data(outer, block, READ_BLOCK)) > 0)
        oci_hasher_update(h, block, (size_t)n);
    if (n < 0)
        return mv_error_set(err, -EBADMSG, "layer %s: %s", layer, archive_error_string(outer));
    char diff_id[OCI_DIGEST_MAX];
    oci_hasher_final(h, diff_id);
    if (expected_diff_id && strcmp(diff_id, expected_diff_id) != 0)
        return mv_error_set(err, -EBADMSG, "layer %s: uncompressed content is %s, config says %s",
                            layer, diff_id, expected_diff_id);
    if (diff_id_out)
        snprintf(diff_id_out, OCI_DIGEST_MAX, "%s", diff_id);
    return cache_check_symlinks(rootfd, layer, l.allow_absolute_symlinks, err);
}

/* ---- symlink containment ------------------------------------------------ */

typedef struct comps {
    char **v;
    size_t n, cap;
} comps;

static void comps_push(comps *c, const char *s)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->v = mv_xrealloc(c->v, c->cap * sizeof(*c->v));
    }
    c->v[c->n++] = mv_xstrdup(s);
}

static void comps_pop(comps *c)
{
    free(c->v[--c->n]);
}

static void comps_clear(comps *c)
{
    while (c->n)
        comps_pop(c);
}

static char *comps_join(const comps *c)
{
    size_t len = 2;
    for (size_t i = 0; i < c->n; i++)
        len += strlen(c->v[i]) + 1;
    char *s = mv_xmalloc(len);
    if (!c->n) {
        memcpy(s, ".", 2);
        return s;
    }
    size_t o = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (i)
            s[o++] = '/';
        size_t l = strlen(c->v[i]);
        memcpy(s + o, c->v[i], l);
        o += l;
    }
    s[o] = '\0';
    return s;
}

/* Resolves target from position st inside the root, following symlinks
 * found in the root. -EXDEV when the walk leaves the root. */
static int resolve_in_root(int rootfd, comps *st, const char *target, int *hops, bool allow_abs)
{
    if (target[0] == '/') {
        if (!allow_abs)
            return -EXDEV;
        comps_clear(st);
    }
    _cleanup_free_ char *copy = mv_xstrdup(target);
    char *save = NULL;
    for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0)
            continue;
        if (strcmp(c, "..") == 0) {
            if (!st->n)
                return -EXDEV;
            comps_pop(st);
            continue;
        }
        comps_push(st, c);
        _cleanup_free_ char *p = comps_join(st);
        struct stat sb;
        if (fstatat(rootfd, p, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISLNK(sb.st_mode))
            continue;
        if (++*hops > 40)
            return -ELOOP;
        char buf[4096];
        ssize_t n = readlinkat(rootfd, p, buf, sizeof(buf) - 1);
        if (n < 0)
            return -errno;
        buf[n] = '\0';
        comps_pop(st);
        int r = resolve_in_root(rootfd, st, buf, hops, allow_abs);
        if (r < 0)
            return r;
    }
    return 0;
}

typedef struct symlink_check {
    int rootfd;
    const char *what;
    bool allow_abs;
} symlink_check;

static int check_entry(const mv_walk_entry *e, void *ud, mv_error *err)
{
    const symlink_check *k = ud;
    if (!S_ISLNK(e->st->st_mode))
        return 0;
    char buf[4096];
    ssize_t n = readlinkat(e->dirfd, e->name, buf, sizeof(buf) - 1);
    if (n < 0)
        return 0;
    buf[n] = '\0';
    /* The link resolves from the directory that holds it. */
    comps st = {0};
    _cleanup_free_ char *copy = mv_xstrdup(e->path);
    char *slash = strrchr(copy, '/');
    char *save = NULL;
    if (slash) {
        *slash = '\0';
        for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save))
            comps_push(&st, c);
    }
    int hops = 0;
    int rr = resolve_in_root(k->rootfd, &st, buf, &hops, k->allow_abs);
    comps_clear(&st);
    free(st.v);
    if (rr < 0)
        return mv_error_set(err, -EBADMSG, "%s: symlink \"%s\" -> \"%s\" %s", k->what, e->path, buf,
                            rr == -ELOOP ? "loops" : "escapes the root");
    return 0;
}

int cache_check_symlinks(int rootfd, const char *what, bool allow_absolute, mv_error *err)
{
    symlink_check k = {rootfd, what, allow_absolute};
    /* Directories nest at most 256 deep below the root's children. */
    int r = mv_walk_at(rootfd, ".", 258, check_entry, &k, err);
    if (r == -ELOOP)
        return mv_error_set(err, -ELOOP, "%s: directories nested deeper than 256", what);
    if (r == -EBADMSG)
        return r;
    if (r < 0)
        return mv_error_wrap(err, "%s: read directory", what);
    return 0;
}

/* ---- re-checking an extracted layer ------------------------------------------ */

/* Compares the regular file at rootfd/path with the entry's data. */
/* mine: READ_BLOCK bytes of scratch space. */
static bool same_file(struct archive *a, struct archive_entry *e, int rootfd, const char *path,
                      char *mine)
{
    _cleanup_free_ char *parent = NULL;
    const char *base;
    split_parent(path, &parent, &base);
    _cleanup_close_ int dfd = -1;
    if (cache_open_dir_nofollow(rootfd, parent, false, &dfd, NULL) < 0)
        return false;
    _cleanup_close_ int fd = openat(dfd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size != archive_entry_size(e))
        return false;
    for (;;) {
        const void *buf;
        size_t n;
        la_int64_t off;
        int ar = archive_read_data_block(a, &buf, &n, &off);
        if (ar == ARCHIVE_EOF)
            return true;
        if (ar < ARCHIVE_WARN)
            return false;
        for (size_t done = 0; done < n;) {
            size_t want = n - done < READ_BLOCK ? n - done : READ_BLOCK;
            ssize_t k = pread(fd, mine, want, off + (off_t)done);
            if (k <= 0 || memcmp(mine, (const char *)buf + done, (size_t)k) != 0)
                return false;
            done += (size_t)k;
        }
    }
}

int cache_layer_compare(int src_fd, int rootfd, const char *layer, char **bad, mv_error *err)
{
    *bad = NULL;
    _cleanup_archive_ struct archive *a = archive_read_new();
    if (!a)
        return mv_error_set(err, -ENOMEM, "layer %s: out of memory", layer);
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_fd(a, src_fd, READ_BLOCK) != ARCHIVE_OK)
        return mv_error_set(err, -EBADMSG, "layer %s: %s", layer, archive_error_string(a));
    _cleanup_free_ char *mine = mv_xmalloc(READ_BLOCK);
    /* A path written twice in one layer counts by its last entry. */
    char **mismatch = NULL;
    size_t nm = 0;
    struct archive_entry *e;
    int ar;
    while ((ar = archive_read_next_header(a, &e)) == ARCHIVE_OK || ar == ARCHIVE_WARN) {
        if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e))
            continue;
        _cleanup_free_ char *path = NULL;
        if (entry_path(archive_entry_pathname(e), layer, &path, NULL) < 0 || !path[0])
            continue;
        bool same = same_file(a, e, rootfd, path, mine);
        size_t i = 0;
        while (i < nm && strcmp(mismatch[i], path) != 0)
            i++;
        if (!same && i == nm) {
            mismatch = mv_xrealloc(mismatch, (nm + 1) * sizeof(*mismatch));
            mismatch[nm++] = MV_STEAL(path);
        } else if (same && i < nm) {
            free(mismatch[i]);
            mismatch[i] = mismatch[--nm];
        }
    }
    int r = 0;
    if (ar != ARCHIVE_EOF)
        r = mv_error_set(err, -EBADMSG, "layer %s: %s", layer,
                         archive_error_string(a) ? archive_error_string(a) : "read failed");
    if (nm)
        *bad = MV_STEAL(mismatch[0]);
    for (size_t i = 0; i < nm; i++)
        free(mismatch[i]);
    free(mismatch);
    return r;
}

/* ---- layers/sha256/<hex> ---------------------------------------------------- */

int cache_layer_ensure(cache *c, const oci_descriptor *d, const char *expected_diff_id,
                       mv_error *err)
{
    const char *hex = oci_digest_hex(d->digest);
    _cleanup_free_ char *dst = mv_xasprintf(CACHE_D_LAYERS "/%s", hex);
    if (faccessat(c->root_fd, dst, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return 0;
    _cleanup_free_ char *lock = mv_xasprintf("layer-%s", hex);
    _cleanup_close_ int lfd = -1;
    int r = cache_lock(c, lock, LOCK_EX, &lfd, err);
    if (r < 0)
        return r;
    if (faccessat(c->root_fd, dst, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return 0; /* another process extracted it while we waited */

    _cleanup_close_ int tmpfd =
        openat(c->root_fd, CACHE_D_TMP, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (tmpfd < 0)
        return mv_error_errno(err, -errno, "open %s/" CACHE_D_TMP, c->root);
    r = cache_rm_rf_at(tmpfd, lock, err);
    if (r < 0)
        return r;
    if (mkdirat(tmpfd, lock, 0755) < 0)
        return mv_error_errno(err, -errno, "layer %s: create work directory", d->digest);
    _cleanup_close_ int wfd = openat(tmpfd, lock, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    _cleanup_free_ char *blob = mv_xasprintf(CACHE_D_BLOBS "/%s", hex);
    _cleanup_close_ int src = openat(c->root_fd, blob, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (wfd < 0 || src < 0) {
        r = mv_error_errno(err, -errno, "layer %s: open", d->digest);
        cache_rm_rf_at(tmpfd, lock, NULL);
        return r;
    }
    oci_media_class mc = {0};
    oci_media_classify(d->media_type, &mc);
    /* Real layers (weights, code, OS files) expand a few times at most; a
     * bomb expands a thousandfold. The floor keeps small layers of zeros
     * legal. */
    uint64_t by_ratio = (uint64_t)d->size * CACHE_EXTRACT_MAX_RATIO;
    cache_extract_limits lim = {
        .allow_absolute_symlinks = mc.family == OCI_FAMILY_OCI || mc.family == OCI_FAMILY_DOCKER,
        .max_bytes = by_ratio > CACHE_EXTRACT_RATIO_FLOOR ? by_ratio : CACHE_EXTRACT_RATIO_FLOOR,
    };
    if (lim.max_bytes > CACHE_EXTRACT_MAX_BYTES)
        lim.max_bytes = CACHE_EXTRACT_MAX_BYTES;
    r = cache_extract_tar(src, wfd, d->digest, &lim, expected_diff_id, NULL, err);
    if (r == 0 && syncfs(wfd) < 0)
        r = mv_error_errno(err, -errno, "layer %s: sync", d->digest);
    if (r == 0) {
        int rr = cache_rename_dir_noreplace(tmpfd, lock, c->root_fd, dst);
        if (rr < 0 && rr != -EEXIST && rr != -ENOTEMPTY)
            r = mv_error_errno(err, rr, "layer %s: rename into " CACHE_D_LAYERS, d->digest);
    }
    cache_rm_rf_at(tmpfd, lock, NULL);
    if (r < 0)
        return r;
    return mv_fsync_dir_at(c->root_fd, CACHE_D_LAYERS, err);
}
