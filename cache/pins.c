/* pins.c — pin records: one file per (tree, owner) in pins/, named
 * <tree hex>-<sha256(owner) hex> and holding both, so pins of one tree
 * never contend and a crash never leaves half a record. GC reads them to
 * know what it must keep. Durable pins are fsynced; volatile ones (a mount's)
 * are not, see cache.h. */
#include "cache-internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>

static int check_args(const char *tree_id, const char *owner, mv_error *err)
{
    if (!tree_id || strncmp(tree_id, "sha256:", 7) != 0 || oci_digest_validate(tree_id, NULL) < 0)
        return mv_error_set(err, -EINVAL, "pin: bad tree id \"%s\"", tree_id ? tree_id : "");
    if (!owner || !*owner || strpbrk(owner, "\n\r") || strlen(owner) > 4096)
        return mv_error_set(err, -EINVAL, "pin: owner must be one non-empty line");
    return 0;
}

static char *pin_name(const char *tree_id, const char *owner)
{
    char oh[65];
    cache_hash_hex(owner, strlen(owner), oh);
    return mv_xasprintf("%s-%s", oci_digest_hex(tree_id), oh);
}

static int pin(cache *c, const char *tree_id, const char *owner, bool sync, mv_error *err)
{
    int r = check_args(tree_id, owner, err);
    if (r < 0)
        return r;
    /* Shared GC lock: GC cannot remove the tree between our check and the
     * record reaching the disk. */
    _cleanup_close_ int gfd = -1;
    r = cache_lock(c, CACHE_LOCK_GC, LOCK_SH, &gfd, err);
    if (r < 0)
        return r;
    if (!cache_tree_exists(c, tree_id))
        return mv_error_set(err, -ENOENT, "pin %s: tree is not in the cache %s", tree_id, c->root);
    _cleanup_free_ char *name = pin_name(tree_id, owner);
    _cleanup_free_ char *body = mv_xasprintf("%s\n%s\n", tree_id, owner);
    r = cache_put_record(c, CACHE_D_PINS, name, body, sync, err);
    if (r < 0)
        return mv_error_wrap(err, "pin %s for %s", tree_id, owner);
    return 0;
}

static int unpin(cache *c, const char *tree_id, const char *owner, bool sync, mv_error *err)
{
    int r = check_args(tree_id, owner, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *name = pin_name(tree_id, owner);
    _cleanup_free_ char *path = mv_xasprintf(CACHE_D_PINS "/%s", name);
    if (unlinkat(c->root_fd, path, 0) < 0) {
        if (errno == ENOENT)
            return 0; /* unpinning twice is fine: NodeUnpublish is idempotent */
        return mv_error_errno(err, -errno, "unpin %s for %s", tree_id, owner);
    }
    return sync ? mv_fsync_dir_at(c->root_fd, CACHE_D_PINS, err) : 0;
}

int cache_pin(cache *c, const char *tree_id, const char *owner, mv_error *err)
{
    return pin(c, tree_id, owner, true, err);
}

int cache_unpin(cache *c, const char *tree_id, const char *owner, mv_error *err)
{
    return unpin(c, tree_id, owner, true, err);
}

int cache_pin_volatile(cache *c, const char *tree_id, const char *owner, mv_error *err)
{
    return pin(c, tree_id, owner, false, err);
}

int cache_unpin_volatile(cache *c, const char *tree_id, const char *owner, mv_error *err)
{
    return unpin(c, tree_id, owner, false, err);
}

/* Parses one record; false for anything that is not a pin. */
static bool read_pin(int dfd, const char *name, char tree[OCI_DIGEST_MAX], char **owner)
{
    _cleanup_free_ char *buf = NULL;
    if (mv_read_file_at(dfd, name, 8192, &buf, NULL, NULL) < 0)
        return false;
    char *nl = strchr(buf, '\n');
    if (!nl)
        return false;
    *nl = '\0';
    char *o = nl + 1;
    char *end = strchr(o, '\n');
    if (!end)
        return false;
    *end = '\0';
    if (oci_digest_validate(buf, NULL) < 0 || !*o)
        return false;
    snprintf(tree, OCI_DIGEST_MAX, "%s", buf);
    *owner = mv_xstrdup(o);
    return true;
}

int cache_pins_list(cache *c, const char *owner_prefix, cache_pin_info **out, size_t *n,
                    mv_error *err)
{
    *out = NULL;
    *n = 0;
    _cleanup_close_ int dfd =
        openat(c->root_fd, CACHE_D_PINS, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return mv_error_errno(err, -errno, "open %s/" CACHE_D_PINS, c->root);
    DIR *d = cache_opendir_fd(dfd);
    if (!d)
        return mv_error_errno(err, -errno, "read %s/" CACHE_D_PINS, c->root);
    size_t cap = 0;
    struct dirent *de;
    size_t plen = owner_prefix ? strlen(owner_prefix) : 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char tree[OCI_DIGEST_MAX];
        char *owner = NULL;
        if (!read_pin(dfd, de->d_name, tree, &owner))
            continue;
        if (plen && strncmp(owner, owner_prefix, plen) != 0) {
            free(owner);
            continue;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *out = mv_xrealloc(*out, cap * sizeof(**out));
        }
        memcpy((*out)[*n].tree_id, tree, sizeof(tree));
        (*out)[*n].owner = owner;
        (*n)++;
    }
    closedir(d);
    return 0;
}

void cache_pins_free(cache_pin_info *p, size_t n)
{
    for (size_t i = 0; p && i < n; i++)
        free(p[i].owner);
    free(p);
}
