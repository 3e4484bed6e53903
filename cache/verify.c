/* verify.c — cache_verify: re-hash every stored blob. A corrupt blob moves
 * to quarantine/ (kept for inspection, out of every lookup), and the
 * unpinned trees and the extracted layer built from it are removed, so the
 * next pull fetches and rebuilds them. */
#include "cache-internal.h"

#include <cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

/* Whether trees/<hex>/meta.json lists digest among its blobs. */
static bool tree_links(cache *c, const char *hex, const char *digest, bool *pinned)
{
    _cleanup_free_ char *p = mv_xasprintf(CACHE_D_TREES "/%s/meta.json", hex);
    _cleanup_free_ char *buf = NULL;
    if (mv_read_file_at(c->root_fd, p, (size_t)16 * 1024 * 1024, &buf, NULL, NULL) < 0)
        return false;
    cJSON *j = cJSON_Parse(buf);
    bool found = false;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "blobs"))
    {
        if (cJSON_IsString(it) && strcmp(it->valuestring, digest) == 0)
            found = true;
    }
    if (found) {
        const cJSON *tree = cJSON_GetObjectItemCaseSensitive(j, "tree");
        cache_pin_info *pins = NULL;
        size_t np = 0;
        *pinned = false;
        if (cJSON_IsString(tree) && cache_pins_list(c, NULL, &pins, &np, NULL) == 0)
            for (size_t i = 0; i < np; i++)
                *pinned |= strcmp(pins[i].tree_id, tree->valuestring) == 0;
        cache_pins_free(pins, np);
    }
    cJSON_Delete(j);
    return found;
}

/* Removes the unpinned trees that link digest (a blob or a layer). */
static int drop_trees(cache *c, const char *digest, cache_verify_result *res, mv_error *err)
{
    _cleanup_close_ int tfd =
        openat(c->root_fd, CACHE_D_TREES, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = tfd >= 0 ? cache_opendir_fd(tfd) : NULL;
    if (!d)
        return mv_error_errno(err, -errno, "read %s/" CACHE_D_TREES, c->root);
    struct dirent *de;
    int r = 0;
    while (r == 0 && (de = readdir(d))) {
        bool pinned = false;
        if (strlen(de->d_name) != 64 || !tree_links(c, de->d_name, digest, &pinned) || pinned)
            continue;
        _cleanup_free_ char *name = mv_xasprintf("rmtree-%s", de->d_name);
        _cleanup_close_ int tmpfd =
            openat(c->root_fd, CACHE_D_TMP, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (tmpfd >= 0 && renameat(tfd, de->d_name, tmpfd, name) == 0) {
            cache_rm_rf_at(tmpfd, name, NULL);
            res->trees_removed++;
        }
    }
    closedir(d);
    return r;
}

static int quarantine(cache *c, const char *hex, cache_verify_result *res, mv_error *err)
{
    _cleanup_free_ char *digest = mv_xasprintf("sha256:%s", hex);
    _cleanup_free_ char *src = mv_xasprintf(CACHE_D_BLOBS "/%s", hex);
    _cleanup_free_ char *dst =
        mv_xasprintf(CACHE_D_QUARANTINE "/%s.%lld", hex, (long long)time(NULL));
    if (renameat(c->root_fd, src, c->root_fd, dst) < 0 && errno != ENOENT)
        return mv_error_errno(err, -errno, "quarantine blob %s", digest);
    int r = drop_trees(c, digest, res, err);
    _cleanup_free_ char *layer = mv_xasprintf(CACHE_D_LAYERS "/%s", hex);
    cache_rm_rf_at(c->root_fd, layer, NULL);
    res->quarantined = mv_xrealloc(res->quarantined, (res->corrupt + 1) * sizeof(char *));
    res->quarantined[res->corrupt++] = mv_xstrdup(digest);
    return r;
}

/* Each extracted layer against its blob, which was just verified. A layer
 * without its blob cannot be checked and is garbage for GC. */
static int verify_layers(cache *c, cache_verify_result *res, mv_error *err)
{
    _cleanup_close_ int lfd =
        openat(c->root_fd, CACHE_D_LAYERS, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = lfd >= 0 ? cache_opendir_fd(lfd) : NULL;
    if (!d)
        return mv_error_errno(err, -errno, "read %s/" CACHE_D_LAYERS, c->root);
    int r = 0;
    struct dirent *de;
    while (r == 0 && (de = readdir(d))) {
        if (strlen(de->d_name) != 64)
            continue;
        _cleanup_free_ char *blob = mv_xasprintf(CACHE_D_BLOBS "/%s", de->d_name);
        _cleanup_close_ int src = openat(c->root_fd, blob, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_close_ int root =
            openat(lfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (src < 0 || root < 0)
            continue;
        _cleanup_free_ char *digest = mv_xasprintf("sha256:%s", de->d_name);
        _cleanup_free_ char *bad = NULL;
        mv_error sub = MV_ERROR_INIT;
        int cr = cache_layer_compare(src, root, digest, &bad, &sub);
        res->layers_checked++;
        if (cr == 0 && !bad)
            continue;
        res->bad_layers = mv_xrealloc(res->bad_layers, (res->layers_corrupt + 1) * sizeof(char *));
        res->bad_layers[res->layers_corrupt++] =
            bad ? mv_xasprintf("%s: \"%s\"", digest, bad) : mv_xstrdup(sub.msg);
        r = drop_trees(c, digest, res, err);
        if (r == 0)
            r = cache_rm_rf_at(lfd, de->d_name, err);
    }
    closedir(d);
    return r;
}

int cache_verify(cache *c, cache_verify_result *res, mv_error *err)
{
    memset(res, 0, sizeof(*res));
    /* Exclusive: nothing links a blob while we judge and move it. */
    _cleanup_close_ int gfd = -1;
    int r = cache_lock(c, CACHE_LOCK_GC, LOCK_EX, &gfd, err);
    if (r < 0)
        return r;
    _cleanup_close_ int bfd =
        openat(c->root_fd, CACHE_D_BLOBS, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = bfd >= 0 ? cache_opendir_fd(bfd) : NULL;
    if (!d)
        return mv_error_errno(err, -errno, "read %s/" CACHE_D_BLOBS, c->root);
    struct dirent *de;
    while (r == 0 && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        bool ok = false;
        uint64_t size = 0;
        r = cache_blob_check(c, de->d_name, &ok, &size, err);
        if (r < 0)
            break;
        res->blobs_checked++;
        res->bytes_checked += size;
        if (!ok)
            r = quarantine(c, de->d_name, res, err);
    }
    closedir(d);
    if (r == 0)
        r = verify_layers(c, res, err);
    return r;
}

void cache_verify_result_clear(cache_verify_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->corrupt; i++)
        free(r->quarantined[i]);
    free(r->quarantined);
    for (size_t i = 0; i < r->layers_corrupt; i++)
        free(r->bad_layers[i]);
    free(r->bad_layers);
    memset(r, 0, sizeof(*r));
}
