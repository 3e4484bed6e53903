/* gc.c — what is in the cache and how to make room: listing trees,
 * removing a model, garbage collection (unreferenced blobs and layers,
 * then unpinned trees least recently used first) and disk-use figures.
 * Everything that removes holds the GC lock exclusively, so no pull is
 * linking what we delete. */
#include "cache-internal.h"

#include <cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

typedef struct tree_meta {
    char hex[65];
    char tree_id[OCI_DIGEST_MAX];
    char manifest[OCI_DIGEST_MAX];
    char index[OCI_DIGEST_MAX];
    char *reference;
    char *filter;
    char **blobs;
    size_t n_blobs;
    char **layers;
    size_t n_layers;
    uint64_t size;
    time_t last_use;
    size_t n_pins;
    char *pin_owner; /* one of the owners, for messages */
} tree_meta;

static void meta_clear(tree_meta *t)
{
    free(t->reference);
    free(t->filter);
    for (size_t i = 0; i < t->n_blobs; i++)
        free(t->blobs[i]);
    free(t->blobs);
    for (size_t i = 0; i < t->n_layers; i++)
        free(t->layers[i]);
    free(t->layers);
    free(t->pin_owner);
}

static void metas_free(tree_meta *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        meta_clear(&t[i]);
    free(t);
}

static char **json_strv(const cJSON *a, size_t *n)
{
    *n = 0;
    if (!cJSON_IsArray(a))
        return NULL;
    char **v = mv_xcalloc((size_t)cJSON_GetArraySize(a) + 1, sizeof(*v));
    const cJSON *it;
    cJSON_ArrayForEach(it, a)
    {
        if (cJSON_IsString(it))
            v[(*n)++] = mv_xstrdup(it->valuestring);
    }
    return v;
}

/* "include=a,b exclude=c subpath=d" for listings. */
static char *filter_string(const cJSON *j)
{
    char *s = mv_xstrdup("");
    static const char *const keys[] = {"include", "exclude", "kinds", "subpath"};
    for (size_t k = 0; k < 4; k++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, keys[k]);
        char *val = NULL;
        if (cJSON_IsString(a)) {
            val = mv_xstrdup(a->valuestring);
        } else if (cJSON_IsArray(a) && cJSON_GetArraySize(a) > 0) {
            val = mv_xstrdup("");
            const cJSON *it;
            cJSON_ArrayForEach(it, a)
            {
                if (!cJSON_IsString(it))
                    continue;
                char *n = mv_xasprintf("%s%s%s", val, *val ? "," : "", it->valuestring);
                free(val);
                val = n;
            }
        }
        if (!val)
            continue;
        char *n = mv_xasprintf("%s%s%s=%s", s, *s ? " " : "", keys[k], val);
        free(s);
        free(val);
        s = n;
    }
    return s;
}

static bool load_meta(cache *c, const char *hex, tree_meta *t)
{
    memset(t, 0, sizeof(*t));
    _cleanup_free_ char *p = mv_xasprintf(CACHE_D_TREES "/%s/meta.json", hex);
    _cleanup_free_ char *buf = NULL;
    if (mv_read_file_at(c->root_fd, p, (size_t)16 * 1024 * 1024, &buf, NULL, NULL) < 0)
        return false;
    cJSON *j = cJSON_Parse(buf);
    const cJSON *tree = cJSON_GetObjectItemCaseSensitive(j, "tree");
    const cJSON *man = cJSON_GetObjectItemCaseSensitive(j, "manifest");
    if (!cJSON_IsString(tree) || !cJSON_IsString(man)) {
        cJSON_Delete(j);
        return false;
    }
    snprintf(t->hex, sizeof(t->hex), "%s", hex);
    snprintf(t->tree_id, sizeof(t->tree_id), "%s", tree->valuestring);
    snprintf(t->manifest, sizeof(t->manifest), "%s", man->valuestring);
    const cJSON *idx = cJSON_GetObjectItemCaseSensitive(j, "index");
    if (cJSON_IsString(idx))
        snprintf(t->index, sizeof(t->index), "%s", idx->valuestring);
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(j, "reference");
    if (cJSON_IsString(ref))
        t->reference = mv_xstrdup(ref->valuestring);
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(j, "size");
    if (cJSON_IsNumber(size))
        t->size = (uint64_t)size->valuedouble;
    t->blobs = json_strv(cJSON_GetObjectItemCaseSensitive(j, "blobs"), &t->n_blobs);
    t->layers = json_strv(cJSON_GetObjectItemCaseSensitive(j, "layers"), &t->n_layers);
    t->filter = filter_string(j);
    cJSON_Delete(j);
    _cleanup_free_ char *lu = mv_xasprintf(CACHE_D_TREES "/%s/lastuse", hex);
    struct stat st;
    if (fstatat(c->root_fd, lu, &st, AT_SYMLINK_NOFOLLOW) == 0)
        t->last_use = st.st_mtim.tv_sec;
    return true;
}

static int cmp_lru(const void *a, const void *b)
{
    const tree_meta *x = a, *y = b;
    if (x->last_use != y->last_use)
        return x->last_use < y->last_use ? -1 : 1;
    return strcmp(x->hex, y->hex);
}

/* Every readable tree, least recently used first, with its pin count. */
static int load_trees(cache *c, tree_meta **out, size_t *n, mv_error *err)
{
    *out = NULL;
    *n = 0;
    _cleanup_close_ int dfd =
        openat(c->root_fd, CACHE_D_TREES, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return mv_error_errno(err, -errno, "open %s/" CACHE_D_TREES, c->root);
    DIR *d = cache_opendir_fd(dfd);
    if (!d)
        return mv_error_errno(err, -errno, "read %s/" CACHE_D_TREES, c->root);
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strlen(de->d_name) != 64)
            continue;
        tree_meta t;
        if (!load_meta(c, de->d_name, &t))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *out = mv_xrealloc(*out, cap * sizeof(**out));
        }
        (*out)[(*n)++] = t;
    }
    closedir(d);
    cache_pin_info *pins = NULL;
    size_t np = 0;
    int r = cache_pins_list(c, NULL, &pins, &np, err);
    if (r < 0) {
        metas_free(*out, *n);
        *out = NULL;
        *n = 0;
        return r;
    }
    for (size_t i = 0; i < np; i++)
        for (size_t k = 0; k < *n; k++)
            if (strcmp((*out)[k].tree_id, pins[i].tree_id) == 0) {
                (*out)[k].n_pins++;
                if (!(*out)[k].pin_owner)
                    (*out)[k].pin_owner = mv_xstrdup(pins[i].owner);
            }
    cache_pins_free(pins, np);
    if (*n)
        qsort(*out, *n, sizeof(**out), cmp_lru);
    return 0;
}

/* ---- listing ---------------------------------------------------------------- */

int cache_list(cache *c, cache_entry **out, size_t *n, mv_error *err)
{
    tree_meta *t = NULL;
    size_t nt = 0;
    int r = load_trees(c, &t, &nt, err);
    if (r < 0)
        return r;
    cache_entry *e = mv_xcalloc(nt ? nt : 1, sizeof(*e));
    for (size_t i = 0; i < nt; i++) {
        snprintf(e[i].tree_id, sizeof(e[i].tree_id), "%s", t[i].tree_id);
        snprintf(e[i].manifest_digest, sizeof(e[i].manifest_digest), "%s", t[i].manifest);
        e[i].reference = t[i].reference ? mv_xstrdup(t[i].reference) : NULL;
        e[i].tree_path = cache_tree_path_of(c, t[i].tree_id);
        e[i].filter = mv_xstrdup(t[i].filter ? t[i].filter : "");
        e[i].size = t[i].size;
        e[i].last_use = t[i].last_use;
        e[i].n_pins = t[i].n_pins;
    }
    metas_free(t, nt);
    *out = e;
    *n = nt;
    return 0;
}

void cache_entries_free(cache_entry *e, size_t n)
{
    for (size_t i = 0; e && i < n; i++) {
        free(e[i].reference);
        free(e[i].tree_path);
        free(e[i].filter);
    }
    free(e);
}

int cache_tree_lookup(cache *c, const char *tree_id, char **path, mv_error *err)
{
    if (!tree_id || oci_digest_validate(tree_id, NULL) < 0 || strncmp(tree_id, "sha256:", 7) != 0)
        return mv_error_set(err, -EINVAL, "bad tree id \"%s\"", tree_id ? tree_id : "");
    if (!cache_tree_exists(c, tree_id))
        return mv_error_set(err, -ENOENT, "tree %s is not in the cache %s", tree_id, c->root);
    *path = cache_tree_path_of(c, tree_id);
    return 0;
}

/* ---- removal ---------------------------------------------------------------- */

/* Moves trees/<hex> out of sight first, so a crash mid-removal leaves only
 * a tmp/ entry recovery deletes, never a half tree. */
static int remove_tree(cache *c, const char *hex, mv_error *err)
{
    _cleanup_free_ char *name = mv_xasprintf("rmtree-%s", hex);
    _cleanup_close_ int lfd = -1;
    int r = cache_lock(c, name, LOCK_EX, &lfd, err);
    if (r < 0)
        return r;
    _cleanup_close_ int tmpfd =
        openat(c->root_fd, CACHE_D_TMP, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (tmpfd < 0)
        return mv_error_errno(err, -errno, "open %s/" CACHE_D_TMP, c->root);
    r = cache_rm_rf_at(tmpfd, name, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *src = mv_xasprintf(CACHE_D_TREES "/%s", hex);
    if (renameat(c->root_fd, src, tmpfd, name) < 0) {
        if (errno == ENOENT)
            return 0;
        return mv_error_errno(err, -errno, "remove tree %s", hex);
    }
    mv_fsync_dir_at(c->root_fd, CACHE_D_TREES, NULL);
    return cache_rm_rf_at(tmpfd, name, err);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool in_sorted(char **v, size_t n, const char *s)
{
    return n && bsearch(&s, v, n, sizeof(*v), cmp_str) != NULL;
}

int cache_sweep_unreferenced(cache *c, bool partials, size_t *blobs, size_t *layers,
                             uint64_t *bytes, mv_error *err)
{
    tree_meta *t = NULL;
    size_t nt = 0;
    int r = load_trees(c, &t, &nt, err);
    if (r < 0)
        return r;
    size_t nb = 0, nl = 0, cb = 0, cl = 0;
    char **rb = NULL, **rl = NULL;
    for (size_t i = 0; i < nt; i++) {
        for (size_t k = 0; k < t[i].n_blobs; k++) {
            if (nb == cb)
                rb = mv_xrealloc(rb, (cb = cb ? cb * 2 : 64) * sizeof(*rb));
            rb[nb++] = mv_xstrdup(oci_digest_hex(t[i].blobs[k]));
        }
        for (size_t k = 0; k < t[i].n_layers; k++) {
            if (nl == cl)
                rl = mv_xrealloc(rl, (cl = cl ? cl * 2 : 64) * sizeof(*rl));
            rl[nl++] = mv_xstrdup(oci_digest_hex(t[i].layers[k]));
        }
    }
    metas_free(t, nt);
    if (nb)
        qsort(rb, nb, sizeof(*rb), cmp_str);
    if (nl)
        qsort(rl, nl, sizeof(*rl), cmp_str);

    static const char *const dirs[] = {CACHE_D_LAYERS, CACHE_D_BLOBS, CACHE_D_INGEST};
    for (size_t k = 0; k < (partials ? 3u : 2u) && r == 0; k++) {
        _cleanup_close_ int dfd =
            openat(c->root_fd, dirs[k], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *d = dfd >= 0 ? cache_opendir_fd(dfd) : NULL;
        if (!d) {
            r = mv_error_errno(err, -errno, "read %s/%s", c->root, dirs[k]);
            break;
        }
        struct dirent *de;
        while (r == 0 && (de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            uint64_t sz = 0;
            if (k == 0) {
                if (in_sorted(rl, nl, de->d_name))
                    continue;
                const char *one[] = {de->d_name, NULL};
                mv_du_at(dfd, one, &sz, NULL);
                r = cache_rm_rf_at(dfd, de->d_name, err);
                if (r == 0 && layers)
                    (*layers)++;
            } else if (k == 1) {
                if (in_sorted(rb, nb, de->d_name))
                    continue;
                struct stat st;
                if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_nlink == 1)
                    sz = (uint64_t)st.st_blocks * 512;
                if (unlinkat(dfd, de->d_name, 0) < 0 && errno != ENOENT)
                    r = mv_error_errno(err, -errno, "remove blob %s", de->d_name);
                else if (blobs)
                    (*blobs)++;
            } else {
                /* Partial downloads nobody is working on. */
                char hex[65];
                snprintf(hex, sizeof(hex), "%.*s", (int)strcspn(de->d_name, "."), de->d_name);
                _cleanup_free_ char *lock = mv_xasprintf("blob-%s", hex);
                _cleanup_close_ int lfd = -1;
                if (cache_lock(c, lock, LOCK_EX | LOCK_NB, &lfd, NULL) < 0)
                    continue;
                struct stat st;
                if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                    sz = (uint64_t)st.st_blocks * 512;
                unlinkat(dfd, de->d_name, 0);
            }
            if (bytes && r == 0)
                *bytes += sz;
        }
        closedir(d);
    }
    for (size_t i = 0; i < nb; i++)
        free(rb[i]);
    for (size_t i = 0; i < nl; i++)
        free(rl[i]);
    free(rb);
    free(rl);
    if (r == 0) {
        mv_fsync_dir_at(c->root_fd, CACHE_D_BLOBS, NULL);
        mv_fsync_dir_at(c->root_fd, CACHE_D_LAYERS, NULL);
    }
    return r;
}

int cache_remove(cache *c, const char *reference, size_t *trees_removed, mv_error *err)
{
    if (trees_removed)
        *trees_removed = 0;
    _cleanup_ref_ oci_ref *ref = NULL;
    int r = oci_ref_parse(reference, &ref, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *refstr = oci_ref_string(ref);
    char digest[OCI_DIGEST_MAX] = "";
    if (ref->digest)
        snprintf(digest, sizeof(digest), "%s", ref->digest);
    else
        cache_tag_get(c, refstr, digest, NULL, NULL);

    _cleanup_close_ int gfd = -1;
    r = cache_lock(c, CACHE_LOCK_GC, LOCK_EX, &gfd, err);
    if (r < 0)
        return r;
    tree_meta *t = NULL;
    size_t nt = 0;
    r = load_trees(c, &t, &nt, err);
    if (r < 0)
        return r;
    size_t matched = 0;
    bool *hit = mv_xcalloc(nt ? nt : 1, sizeof(*hit));
    for (size_t i = 0; i < nt && r == 0; i++) {
        hit[i] =
            (t[i].reference && strcmp(t[i].reference, refstr) == 0) ||
            (digest[0] && (strcmp(t[i].manifest, digest) == 0 || strcmp(t[i].index, digest) == 0));
        if (hit[i] && t[i].n_pins)
            r = mv_error_set(err, -EBUSY, "remove %s: tree %s is pinned by %s", refstr,
                             t[i].tree_id, t[i].pin_owner);
        matched += hit[i];
    }
    for (size_t i = 0; r == 0 && i < nt; i++) {
        if (!hit[i])
            continue;
        r = remove_tree(c, t[i].hex, err);
        if (r == 0 && trees_removed)
            (*trees_removed)++;
    }
    free(hit);
    metas_free(t, nt);
    if (r < 0)
        return r;
    if (!ref->digest)
        cache_tag_remove(c, refstr, NULL);
    if (!matched)
        return mv_error_set(err, -ENOENT, "remove %s: not in the cache", refstr);
    /* Resumable downloads of other models are not this model's to drop. */
    return cache_sweep_unreferenced(c, false, NULL, NULL, NULL, err);
}

/* ---- GC ------------------------------------------------------------------------ */

int cache_usage(cache *c, uint64_t *cache_bytes, int *disk_pct, mv_error *err)
{
    if (cache_bytes) {
        /* quarantine/ is left out: it is kept for a human to look at. */
        static const char *const parts[] = {CACHE_D_BLOBS,  CACHE_D_LAYERS, CACHE_D_TREES,
                                            CACHE_D_INGEST, CACHE_D_TMP,    NULL};
        int r = mv_du_at(c->root_fd, parts, cache_bytes, err);
        if (r < 0)
            return mv_error_wrap(err, "disk use of %s", c->root);
    }
    if (disk_pct) {
        struct statvfs sv;
        if (fstatvfs(c->root_fd, &sv) < 0)
            return mv_error_errno(err, -errno, "statvfs %s", c->root);
        uint64_t used = (uint64_t)(sv.f_blocks - sv.f_bfree);
        uint64_t avail = used + (uint64_t)sv.f_bavail;
        *disk_pct = avail ? (int)((used * 100 + avail - 1) / avail) : 0;
    }
    return 0;
}

typedef struct gc_target {
    uint64_t max_size;
    int low_pct;
} gc_target;

static bool target_met(cache *c, const gc_target *t, uint64_t bytes)
{
    if (t->max_size)
        return bytes <= t->max_size;
    int pct = 0;
    if (cache_usage(c, NULL, &pct, NULL) < 0)
        return true;
    return pct <= t->low_pct;
}

int cache_gc(cache *c, const cache_gc_opts *o, cache_gc_result *res, mv_error *err)
{
    cache_gc_result local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof(*res));
    gc_target tg = {
        .max_size = o && o->max_size ? o->max_size : c->opts.max_size,
        .low_pct = o && o->low_watermark_pct   ? o->low_watermark_pct
                   : c->opts.low_watermark_pct ? c->opts.low_watermark_pct
                                               : 80,
    };
    _cleanup_close_ int gfd = -1;
    int r = cache_lock(c, CACHE_LOCK_GC, LOCK_EX, &gfd, err);
    if (r < 0)
        return r;
    /* A long-lived process (the plugin) opened the cache long ago: collect
     * what crashed pulls left since. */
    cache_recover(c);
    uint64_t bytes = 0;
    r = cache_usage(c, &bytes, NULL, err);
    if (r < 0)
        return r;
    res->bytes_before = bytes;
    if (!target_met(c, &tg, bytes)) {
        uint64_t freed = 0;
        r = cache_sweep_unreferenced(c, true, &res->blobs_removed, &res->layers_removed, &freed,
                                     err);
        if (r < 0)
            return r;
        bytes = bytes > freed ? bytes - freed : 0;
    }
    tree_meta *t = NULL;
    size_t nt = 0;
    if (!target_met(c, &tg, bytes)) {
        r = load_trees(c, &t, &nt, err);
        if (r < 0)
            return r;
    }
    time_t newest = o && o->min_age_seconds ? time(NULL) - o->min_age_seconds : 0;
    for (size_t i = 0; i < nt && r == 0 && !target_met(c, &tg, bytes); i++) {
        if (t[i].n_pins || (newest && t[i].last_use > newest))
            continue;
        r = remove_tree(c, t[i].hex, err);
        if (r < 0)
            break;
        res->trees_removed++;
        uint64_t freed = 0;
        r = cache_sweep_unreferenced(c, true, &res->blobs_removed, &res->layers_removed, &freed,
                                     err);
        bytes = bytes > freed ? bytes - freed : 0;
    }
    metas_free(t, nt);
    if (r < 0)
        return mv_error_wrap(err, "gc %s", c->root);
    r = cache_usage(c, &res->bytes_after, NULL, err);
    if (r < 0)
        return r;
    res->target_reached = target_met(c, &tg, res->bytes_after);
    return 0;
}

int cache_gc_if_needed(cache *c, bool *ran, cache_gc_result *res, mv_error *err)
{
    *ran = false;
    int high = c->opts.high_watermark_pct ? c->opts.high_watermark_pct : 90;
    int pct = 0;
    uint64_t bytes = 0;
    int r = cache_usage(c, c->opts.max_size ? &bytes : NULL, &pct, err);
    if (r < 0)
        return r;
    if (pct < high && (!c->opts.max_size || bytes <= c->opts.max_size))
        return 0;
    *ran = true;
    cache_gc_opts o = {.min_age_seconds = CACHE_GC_AUTO_MIN_AGE};
    return cache_gc(c, &o, res, err);
}
