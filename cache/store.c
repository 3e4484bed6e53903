/* store.c — opening a cache directory: creating the layout, and recovery
 * of what killed processes left behind (work-in-progress directories in
 * tmp/, partial downloads nobody can resume, and lock files). */
#include "cache-internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

static const char *const layout[] = {
    "blobs",     CACHE_D_BLOBS, "layers",     CACHE_D_LAYERS, CACHE_D_TREES,      CACHE_D_INGEST,
    CACHE_D_TMP, CACHE_D_TAGS,  CACHE_D_PINS, CACHE_D_LOCKS,  CACHE_D_QUARANTINE,
};

/* Every tmp/ entry is named after the lock that guards it: "<lock>" or
 * "<lock>.<suffix>". If the lock is free, its owner is gone. */
static void sweep_tmp(cache *c)
{
    _cleanup_close_ int dfd =
        openat(c->root_fd, CACHE_D_TMP, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return;
    DIR *d = cache_opendir_fd(dfd);
    if (!d) {
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        _cleanup_free_ char *lock = mv_xstrdup(de->d_name);
        char *dot = strchr(lock, '.');
        if (dot)
            *dot = '\0';
        _cleanup_close_ int lfd = -1;
        if (cache_lock(c, lock, LOCK_EX | LOCK_NB, &lfd, NULL) < 0)
            continue;
        cache_rm_rf_at(dfd, de->d_name, NULL);
    }
    closedir(d);
}

/* ingest/<hex>.partial with a .state sidecar is kept for resume; a partial
 * without one, or a sidecar without its partial, is garbage once nobody
 * holds the blob lock. */
static void sweep_ingest(cache *c)
{
    _cleanup_close_ int dfd =
        openat(c->root_fd, CACHE_D_INGEST, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return;
    DIR *d = cache_opendir_fd(dfd);
    if (!d) {
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char hex[129];
        const char *dot = strchr(de->d_name, '.');
        size_t hl = dot ? (size_t)(dot - de->d_name) : strlen(de->d_name);
        if (hl == 0 || hl >= sizeof(hex)) {
            unlinkat(dfd, de->d_name, 0);
            continue;
        }
        memcpy(hex, de->d_name, hl);
        hex[hl] = '\0';
        _cleanup_free_ char *lock = mv_xasprintf("blob-%s", hex);
        _cleanup_close_ int lfd = -1;
        if (cache_lock(c, lock, LOCK_EX | LOCK_NB, &lfd, NULL) < 0)
            continue;
        _cleanup_free_ char *partial = mv_xasprintf("%s.partial", hex);
        _cleanup_free_ char *state = mv_xasprintf("%s.state", hex);
        bool has_partial = faccessat(dfd, partial, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
        bool has_state = faccessat(dfd, state, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
        _cleanup_free_ char *blob = mv_xasprintf(CACHE_D_BLOBS "/%s", hex);
        bool stored = faccessat(c->root_fd, blob, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
        if (stored || !has_partial || !has_state) {
            unlinkat(dfd, partial, 0);
            unlinkat(dfd, state, 0);
        }
        if (strcmp(de->d_name, partial) != 0 && strcmp(de->d_name, state) != 0)
            unlinkat(dfd, de->d_name, 0);
    }
    closedir(d);
}

int cache_open(const char *root, const cache_options *o, cache **out, mv_error *err)
{
    if (!root || !*root)
        return mv_error_set(err, -EINVAL, "cache directory is empty");
    int r = mv_mkdir_p(root, 0755, err);
    if (r < 0)
        return mv_error_wrap(err, "cache %s", root);
    _cleanup_close_ int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return mv_error_errno(err, -errno, "open cache directory %s", root);
    for (size_t i = 0; i < sizeof(layout) / sizeof(layout[0]); i++) {
        if (mkdirat(fd, layout[i], 0755) < 0 && errno != EEXIST)
            return mv_error_errno(err, -errno, "create %s/%s", root, layout[i]);
        struct stat st;
        if (fstatat(fd, layout[i], &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
            return mv_error_set(err, -ENOTDIR, "%s/%s is not a directory", root, layout[i]);
    }
    fsync(fd);

    cache *c = mv_xcalloc(1, sizeof(*c));
    c->root = mv_xstrdup(root);
    c->root_fd = MV_STEAL_FD(fd);
    if (o)
        c->opts = *o;
    cache_recover(c);
    *out = c;
    return 0;
}

void cache_recover(cache *c)
{
    sweep_tmp(c);
    sweep_ingest(c);
    cache_locks_sweep(c);
}

void cache_close(cache *c)
{
    if (!c)
        return;
    if (c->root_fd >= 0)
        close(c->root_fd);
    free(c->root);
    free(c);
}

const char *cache_root(const cache *c)
{
    return c->root;
}

int cache_pull_policy_parse(const char *s, cache_pull_policy *out, mv_error *err)
{
    if (s && strcmp(s, "IfNotPresent") == 0)
        *out = CACHE_PULL_IF_NOT_PRESENT;
    else if (s && strcmp(s, "Always") == 0)
        *out = CACHE_PULL_ALWAYS;
    else if (s && strcmp(s, "Never") == 0)
        *out = CACHE_PULL_NEVER;
    else
        return mv_error_set(
            err, -EINVAL, "pull policy \"%s\": expected IfNotPresent, Always or Never", s ? s : "");
    return 0;
}

void cache_pull_result_clear(cache_pull_result *r)
{
    if (!r)
        return;
    free(r->tree_path);
    memset(r, 0, sizeof(*r));
}

void cache_hash_hex(const char *s, size_t len, char out[65])
{
    char d[OCI_DIGEST_MAX];
    oci_digest_buf(OCI_DIGEST_SHA256, s, len, d);
    memcpy(out, d + strlen("sha256:"), 64);
    out[64] = '\0';
}

int cache_put_record(cache *c, const char *dir, const char *name, const char *content, bool sync,
                     mv_error *err)
{
    /* Held shared: concurrent writers each use their own temp file, and
     * recovery elsewhere leaves them alone. One lock for every record, not
     * one per name: a pin's name is new each time, and creating a lock file
     * per pin was a tenth of a publish under load. */
    const char *lock = "put";
    _cleanup_close_ int lfd = -1;
    int r = cache_lock(c, lock, LOCK_SH, &lfd, err);
    if (r < 0)
        return r;
    static unsigned counter;
    _cleanup_free_ char *tmp =
        mv_xasprintf("%s.%d.%u", lock, (int)getpid(), __atomic_add_fetch(&counter, 1, 0));
    _cleanup_close_ int tfd =
        openat(c->root_fd, CACHE_D_TMP, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    _cleanup_close_ int dfd =
        openat(c->root_fd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (tfd < 0 || dfd < 0)
        return mv_error_errno(err, -errno, "open %s/%s", c->root, tfd < 0 ? CACHE_D_TMP : dir);
    r = mv_write_atomic_at(tfd, tmp, dfd, name, content, strlen(content), 0644,
                           sync ? MV_WRITE_SYNC : 0, err);
    if (r < 0)
        return mv_error_wrap(err, "%s/%s/%s", c->root, dir, name);
    return 0;
}
