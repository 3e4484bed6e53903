/* tree.c — model trees: one directory per (manifest digest, filter,
 * subpath), made of hard links to blobs (raw layers) and to extracted
 * files (tar layers, flattened in order with OCI whiteouts). A tree is
 * built in tmp/ and renamed into trees/ complete, with a meta.json that
 * records what it links so GC knows what is still referenced, and its size
 * and usage (bytes and inodes, each hard-linked inode once) so nobody walks
 * an immutable tree again to ask. */
#include "cache-internal.h"

#include <cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <string.h>
#include <sys/stat.h>

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void add_sorted(oci_hasher *h, char tag, const char *const *globs)
{
    size_t n = 0;
    while (globs && globs[n])
        n++;
    if (!n)
        return;
    const char **v = mv_xcalloc(n, sizeof(*v));
    memcpy(v, globs, n * sizeof(*v));
    qsort(v, n, sizeof(*v), cmp_str);
    for (size_t i = 0; i < n; i++) {
        char pre[3] = {tag, ':', 0};
        oci_hasher_update(h, pre, 2);
        oci_hasher_update(h, v[i], strlen(v[i]) + 1);
    }
    free(v);
}

void cache_tree_id(const char *manifest_digest, const char *const *include,
                   const char *const *exclude, const char *const *kinds, const char *subpath,
                   char out[OCI_DIGEST_MAX])
{
    _cleanup_hasher_ oci_hasher *h = oci_hasher_new(OCI_DIGEST_SHA256);
    /* v2: trees laid out by the layout plan (issue 14). A v1 tree of an
     * ORAS, KitOps or Docker Model Runner artifact could be empty or
     * wrong; a new id makes every pull build its tree again (links only:
     * blobs and extracted layers are shared). */
    static const char ver[] = "modelvol-tree-v2";
    oci_hasher_update(h, ver, sizeof(ver));
    oci_hasher_update(h, manifest_digest, strlen(manifest_digest) + 1);
    add_sorted(h, 'i', include);
    add_sorted(h, 'e', exclude);
    add_sorted(h, 'k', kinds);
    if (subpath) {
        oci_hasher_update(h, "s:", 2);
        oci_hasher_update(h, subpath, strlen(subpath) + 1);
    }
    oci_hasher_final(h, out);
}

static bool glob_match(const char *glob, const char *path)
{
    const char *base = strrchr(path, '/');
    return fnmatch(glob, path, 0) == 0 || (base && fnmatch(glob, base + 1, 0) == 0);
}

bool cache_filter_match(const char *path, const char *const *include, const char *const *exclude)
{
    if (include && include[0]) {
        bool any = false;
        for (size_t i = 0; include[i] && !any; i++)
            any = glob_match(include[i], path);
        if (!any)
            return false;
    }
    for (size_t i = 0; exclude && exclude[i]; i++)
        if (glob_match(exclude[i], path))
            return false;
    return true;
}

static char *join_csv(const char *const *v)
{
    char *s = mv_xstrdup("");
    for (size_t i = 0; v && v[i]; i++) {
        char *n = mv_xasprintf("%s%s%s", s, i ? "," : "", v[i]);
        free(s);
        s = n;
    }
    return s;
}

char *cache_filter_describe(const char *const *include, const char *const *exclude,
                            const char *const *kinds, const char *subpath)
{
    const char *names[] = {"include", "exclude", "kinds"};
    const char *const *lists[] = {include, exclude, kinds};
    char *s = mv_xstrdup("");
    for (size_t k = 0; k < 3; k++) {
        if (!lists[k] || !lists[k][0])
            continue;
        _cleanup_free_ char *v = join_csv(lists[k]);
        char *n = mv_xasprintf("%s%s%s \"%s\"", s, *s ? " " : "", names[k], v);
        free(s);
        s = n;
    }
    if (subpath) {
        char *n = mv_xasprintf("%s%ssubpath \"%s\"", s, *s ? " " : "", subpath);
        free(s);
        s = n;
    }
    return s;
}

int cache_plan_select(const oci_manifest *m, const oci_layout_plan *plan,
                      const char *const *include, const char *const *exclude, unsigned kinds_mask,
                      bool *keep, mv_error *err)
{
    for (size_t i = 0; i < plan->n_layers; i++) {
        const oci_layer_plan *lp = &plan->layers[i];
        const oci_descriptor *d = &m->layers[lp->index];
        keep[i] = false;
        if (lp->place == OCI_PLACE_SKIP)
            continue;
        if (kinds_mask &&
            (lp->kind == MODEL_KIND_NONE || !(kinds_mask & (1u << (unsigned)lp->kind))))
            continue;
        /* A file, or a tar unpacked into a directory of its own: filtered
         * by that path. */
        if (lp->place == OCI_PLACE_FILE || (lp->path && lp->path[0])) {
            keep[i] = cache_filter_match(lp->path, include, exclude);
        } else {
            /* A tar at the root: filtered by the directory it says it fills
             * when it names one (a ModelPack directory layer), as the plan
             * read it. */
            keep[i] = !lp->declared_path || cache_filter_match(lp->declared_path, include, exclude);
        }
        if (keep[i] && strncmp(d->digest, "sha256:", 7) != 0)
            return mv_error_set(err, -ENOTSUP, "layer %s: only sha256 digests are supported",
                                d->digest);
    }
    return 0;
}

int cache_plan_check(const char *manifest_digest, const oci_manifest *m,
                     const oci_layout_plan *plan, const bool *keep, const char *filter,
                     mv_error *err)
{
    size_t placed = 0, kept = 0;
    for (size_t i = 0; i < plan->n_layers; i++) {
        placed += plan->layers[i].place != OCI_PLACE_SKIP;
        kept += keep[i];
    }
    if (plan->n_layers > 0 && placed == 0) {
        /* Each media type once, with why it was skipped. */
        char *types = mv_xstrdup("");
        for (size_t i = 0; i < plan->n_layers; i++) {
            const oci_layer_plan *lp = &plan->layers[i];
            const char *mt = m->layers[lp->index].media_type;
            bool seen = false;
            for (size_t k = 0; k < i && !seen; k++)
                seen = strcmp(m->layers[plan->layers[k].index].media_type, mt) == 0;
            if (seen)
                continue;
            char *n = mv_xasprintf("%s%s%s (%s)", types, *types ? ", " : "", mt,
                                   lp->skip_reason ? lp->skip_reason : "unknown");
            free(types);
            types = n;
        }
        int r = mv_error_set(err, -EPROTO,
                             "manifest %s (%s) lays out no file: nothing places media type %s",
                             manifest_digest, oci_artifact_family_name(plan->family), types);
        free(types);
        return r;
    }
    if (placed > 0 && kept == 0)
        return mv_error_set(err, -EINVAL, "%s matches no file of %s",
                            filter && *filter ? filter : "the filter", manifest_digest);
    return 0;
}

char *cache_tree_path_of(cache *c, const char *tree_id)
{
    return mv_xasprintf("%s/" CACHE_D_TREES "/%s/root", c->root, oci_digest_hex(tree_id));
}

bool cache_tree_exists(cache *c, const char *tree_id)
{
    _cleanup_free_ char *p = mv_xasprintf(CACHE_D_TREES "/%s", oci_digest_hex(tree_id));
    return faccessat(c->root_fd, p, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

/* ---- flattening ------------------------------------------------------------ */

static int remove_existing(int tfd, const char *name, mv_error *err)
{
    return cache_rm_rf_at(tfd, name, err);
}

static bool whiteout_name_ok(const char *x)
{
    return x[0] && strcmp(x, ".") != 0 && strcmp(x, "..") != 0 && !strchr(x, '/');
}

static int merge_dir(int lfd, int tfd, const char *where, bool whiteouts, const char *layer,
                     int depth, mv_error *err)
{
    if (depth > 256)
        return mv_error_set(err, -ELOOP, "layer %s: directories nested deeper than 256", layer);
    DIR *d = cache_opendir_fd(lfd);
    if (!d) {
        return mv_error_errno(err, -errno, "layer %s: read directory \"%s\"", layer, where);
    }
    size_t n = 0, cap = 0;
    char **names = NULL;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            names = mv_xrealloc(names, cap * sizeof(*names));
        }
        names[n++] = mv_xstrdup(de->d_name);
    }
    closedir(d);
    if (n > 1) /* qsort(NULL, 0, …) is undefined: an empty directory has no array */
        qsort(names, n, sizeof(*names), cmp_str);

    int r = 0;
    /* Whiteouts hide what lower layers put here, never this layer's own
     * entries, so they are applied before anything of this layer is added. */
    if (whiteouts) {
        for (size_t i = 0; i < n && r == 0; i++) {
            if (strcmp(names[i], ".wh..wh..opq") != 0)
                continue;
            DIR *td = cache_opendir_fd(tfd);
            if (!td) {
                r = mv_error_errno(err, -errno, "layer %s: opaque \"%s\"", layer, where);
                break;
            }
            struct dirent *te;
            while (r == 0 && (te = readdir(td)))
                if (strcmp(te->d_name, ".") != 0 && strcmp(te->d_name, "..") != 0)
                    r = remove_existing(tfd, te->d_name, err);
            closedir(td);
        }
        for (size_t i = 0; i < n && r == 0; i++) {
            if (strncmp(names[i], ".wh.", 4) != 0 || strcmp(names[i], ".wh..wh..opq") == 0)
                continue;
            const char *x = names[i] + 4;
            if (!whiteout_name_ok(x)) {
                r = mv_error_set(err, -EBADMSG, "layer %s: bad whiteout \"%s/%s\"", layer, where,
                                 names[i]);
                break;
            }
            r = remove_existing(tfd, x, err);
        }
    }
    for (size_t i = 0; i < n && r == 0; i++) {
        const char *nm = names[i];
        if (whiteouts && strncmp(nm, ".wh.", 4) == 0)
            continue;
        struct stat ls, ts;
        if (fstatat(lfd, nm, &ls, AT_SYMLINK_NOFOLLOW) < 0) {
            r = mv_error_errno(err, -errno, "layer %s: stat \"%s/%s\"", layer, where, nm);
            break;
        }
        bool exists = fstatat(tfd, nm, &ts, AT_SYMLINK_NOFOLLOW) == 0;
        if (S_ISDIR(ls.st_mode)) {
            if (exists && !S_ISDIR(ts.st_mode)) {
                r = remove_existing(tfd, nm, err);
                exists = false;
            }
            if (r == 0 && !exists && mkdirat(tfd, nm, 0755) < 0)
                r = mv_error_errno(err, -errno, "tree: mkdir \"%s/%s\"", where, nm);
            if (r < 0)
                break;
            _cleanup_close_ int sl =
                openat(lfd, nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            _cleanup_close_ int st =
                openat(tfd, nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sl < 0 || st < 0) {
                r = mv_error_errno(err, -errno, "tree: open \"%s/%s\"", where, nm);
                break;
            }
            _cleanup_free_ char *sub = mv_xasprintf("%s/%s", where, nm);
            r = merge_dir(sl, st, sub, whiteouts, layer, depth + 1, err);
            continue;
        }
        if (exists)
            r = remove_existing(tfd, nm, err);
        if (r < 0)
            break;
        if (S_ISREG(ls.st_mode)) {
            if (linkat(lfd, nm, tfd, nm, 0) < 0)
                r = mv_error_errno(err, -errno, "tree: link \"%s/%s\" from layer %s", where, nm,
                                   layer);
        } else if (S_ISLNK(ls.st_mode)) {
            char buf[4096];
            ssize_t k = readlinkat(lfd, nm, buf, sizeof(buf) - 1);
            if (k < 0) {
                r = mv_error_errno(err, -errno, "layer %s: readlink \"%s/%s\"", layer, where, nm);
                break;
            }
            buf[k] = '\0';
            if (symlinkat(buf, tfd, nm) < 0)
                r = mv_error_errno(err, -errno, "tree: symlink \"%s/%s\"", where, nm);
        } else {
            r = mv_error_set(err, -EBADMSG, "layer %s: \"%s/%s\" is not a file, dir or symlink",
                             layer, where, nm);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return r;
}

int cache_tree_merge_layer(int layerfd, int treefd, bool whiteouts, const char *layer,
                           mv_error *err)
{
    return merge_dir(layerfd, treefd, ".", whiteouts, layer, 0, err);
}

/* ---- building -------------------------------------------------------------- */

/* An executable file cannot be the blob itself: the blob's inode is shared
 * by every tree that links it, and chmod on it would make the file
 * executable in trees that asked for 0444 (and touch the verified store).
 * So it gets its own 0555 copy; such files are small scripts and code, the
 * weights stay zero-copy. */
static int copy_executable(int blobfd, int pfd, const char *base, const char *path, mv_error *err)
{
    struct stat st;
    if (fstat(blobfd, &st) < 0)
        return mv_error_errno(err, -errno, "tree: stat blob of \"%s\"", path);
    _cleanup_close_ int out =
        openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0555);
    if (out < 0) {
        if (errno == EEXIST)
            return mv_error_set(err, -EBADMSG, "tree: two layers present the file \"%s\"", path);
        return mv_error_errno(err, -errno, "tree: create \"%s\"", path);
    }
    off_t left = st.st_size;
    while (left > 0) {
        ssize_t k = copy_file_range(blobfd, NULL, out, NULL, (size_t)left, 0);
        if (k <= 0)
            return mv_error_errno(err, k < 0 ? -errno : -EIO, "tree: copy \"%s\"", path);
        left -= k;
    }
    if (fchmod(out, 0555) < 0)
        return mv_error_errno(err, -errno, "tree: chmod \"%s\"", path);
    /* A blob is durable before the tree links it; a copy must be too,
     * before the tree is renamed into view. */
    if (fsync(out) < 0)
        return mv_error_errno(err, -errno, "tree: fsync \"%s\"", path);
    return 0;
}

static int link_raw(cache *c, int fullfd, const oci_descriptor *d, const char *path,
                    bool executable, mv_error *err)
{
    _cleanup_free_ char *parent = NULL;
    const char *slash = strrchr(path, '/');
    parent = slash ? mv_xstrndup(path, (size_t)(slash - path)) : mv_xstrdup("");
    const char *base = slash ? slash + 1 : path;
    _cleanup_close_ int pfd = -1;
    int r = cache_open_dir_nofollow(fullfd, parent, true, &pfd, err);
    if (r < 0)
        return mv_error_wrap(err, "tree: file \"%s\"", path);
    _cleanup_free_ char *blob = mv_xasprintf(CACHE_D_BLOBS "/%s", oci_digest_hex(d->digest));
    if (executable) {
        _cleanup_close_ int bfd = openat(c->root_fd, blob, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (bfd < 0)
            return mv_error_errno(err, -errno, "tree: open blob %s", d->digest);
        return copy_executable(bfd, pfd, base, path, err);
    }
    if (linkat(c->root_fd, blob, pfd, base, 0) < 0) {
        if (errno == EEXIST)
            return mv_error_set(err, -EBADMSG, "tree: two layers present the file \"%s\"", path);
        return mv_error_errno(err, -errno, "tree: link \"%s\" to blob %s", path, d->digest);
    }
    return 0;
}

static int measure_one(const mv_walk_entry *e, void *ud, mv_error *err)
{
    (void)err;
    cache_tree_size *m = ud;
    bool reg = S_ISREG(e->st->st_mode);
    if (reg) {
        m->size += (uint64_t)e->st->st_size;
        m->files++;
    }
    if (S_ISDIR(e->st->st_mode) && e->depth > m->depth)
        m->depth = e->depth;
    if (!e->first_link)
        return 0;
    m->inodes++;
    if (reg)
        m->bytes += (uint64_t)e->st->st_size;
    return 0;
}

int cache_tree_measure_at(int dirfd, const char *path, int max_depth, cache_tree_size *out,
                          mv_error *err)
{
    memset(out, 0, sizeof(*out));
    return mv_walk_at(dirfd, path, max_depth, measure_one, out, err);
}

static cJSON *str_array(const char *const *v)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; v && v[i]; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
    return a;
}

static int build_in(cache *c, const cache_tree_spec *s, int wfd, cJSON *blobs, cJSON *layers,
                    mv_error *err)
{
    const oci_manifest *m = s->manifest;
    if (mkdirat(wfd, "full", 0755) < 0)
        return mv_error_errno(err, -errno, "tree: create work directory");
    _cleanup_close_ int fullfd = openat(wfd, "full", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fullfd < 0)
        return mv_error_errno(err, -errno, "tree: open work directory");
    const oci_layout_plan *plan = s->plan;
    for (size_t i = 0; i < plan->n_layers; i++) {
        const oci_layer_plan *lp = &plan->layers[i];
        const oci_descriptor *d = &m->layers[lp->index];
        if (!s->keep[i])
            continue;
        if (lp->place == OCI_PLACE_FILE) {
            int r = link_raw(c, fullfd, d, lp->path, lp->executable, err);
            if (r < 0)
                return r;
            cJSON_AddItemToArray(blobs, cJSON_CreateString(d->digest));
            continue;
        }
        _cleanup_free_ char *ldir = mv_xasprintf(CACHE_D_LAYERS "/%s", oci_digest_hex(d->digest));
        _cleanup_close_ int lfd =
            openat(c->root_fd, ldir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (lfd < 0)
            return mv_error_errno(err, -errno, "layer %s: open extracted layer", d->digest);
        _cleanup_close_ int underfd = -1;
        int r = cache_open_dir_nofollow(fullfd, lp->path ? lp->path : "", true, &underfd, err);
        if (r < 0)
            return mv_error_wrap(err, "layer %s: unpack into \"%s\"", d->digest,
                                 lp->path ? lp->path : "");
        r = cache_tree_merge_layer(lfd, underfd, lp->whiteouts, d->digest, err);
        if (r < 0)
            return r;
        cJSON_AddItemToArray(blobs, cJSON_CreateString(d->digest));
        cJSON_AddItemToArray(layers, cJSON_CreateString(d->digest));
    }

    const char *sp = s->subpath ? s->subpath : plan->default_subpath;
    if (sp) {
        _cleanup_free_ char *norm = NULL;
        int r = oci_path_normalize(sp, &norm, err);
        if (r < 0)
            return mv_error_wrap(err, "subpath");
        const char *slash = strrchr(norm, '/');
        _cleanup_free_ char *parent =
            slash ? mv_xstrndup(norm, (size_t)(slash - norm)) : mv_xstrdup("");
        const char *base = slash ? slash + 1 : norm;
        _cleanup_close_ int pfd = -1;
        mv_error sub = MV_ERROR_INIT;
        struct stat st;
        if (cache_open_dir_nofollow(fullfd, parent, false, &pfd, &sub) < 0 ||
            fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
            return mv_error_set(err, -ENOENT, "subpath \"%s\" is not a directory in the model%s",
                                norm, s->subpath ? "" : " (modelcar images keep files in /models)");
        if (renameat(pfd, base, wfd, "root") < 0)
            return mv_error_errno(err, -errno, "tree: present subpath \"%s\"", norm);
        int r2 = cache_rm_rf_at(wfd, "full", err);
        if (r2 < 0)
            return r2;
    } else if (renameat(wfd, "full", wfd, "root") < 0) {
        return mv_error_errno(err, -errno, "tree: rename work directory");
    }
    _cleanup_close_ int rootfd = openat(wfd, "root", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return mv_error_errno(err, -errno, "tree: open root");
    int r = cache_check_symlinks(rootfd, "tree", false, err);
    if (r < 0)
        return mv_error_wrap(err, "model %s", s->reference ? s->reference : s->manifest_digest);
    fchmod(rootfd, 0755);
    /* The merge refuses directories nested deeper than 256, so this walk
     * never stops early. */
    cache_tree_size size;
    r = cache_tree_measure_at(wfd, "root", CACHE_TREE_MAX_DEPTH, &size, err);
    if (r < 0)
        return mv_error_wrap(err, "tree: measure");
    /* Never a silent empty volume: the plan placed layers, but what they
     * held (or what the subpath or globs left of it) is no file at all. */
    if (size.files == 0) {
        _cleanup_free_ char *f =
            cache_filter_describe(s->include, s->exclude, s->kinds, s->subpath);
        if (*f)
            return mv_error_set(err, -EINVAL, "%s matches no file of %s", f, s->manifest_digest);
        return mv_error_set(err, -EPROTO, "manifest %s (%s) lays out no file: its layers hold none",
                            s->manifest_digest, oci_artifact_family_name(plan->family));
    }

    cJSON_AddItemToArray(blobs, cJSON_CreateString(s->manifest_digest));
    if (m->has_config)
        cJSON_AddItemToArray(blobs, cJSON_CreateString(m->config.digest));
    if (s->index_digest)
        cJSON_AddItemToArray(blobs, cJSON_CreateString(s->index_digest));
    for (const char *const *ix = s->index_chain; ix && *ix; ix++)
        if (!s->index_digest || strcmp(*ix, s->index_digest) != 0)
            cJSON_AddItemToArray(blobs, cJSON_CreateString(*ix));
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddNumberToObject(meta, "version", 1);
    cJSON_AddStringToObject(meta, "tree", s->tree_id);
    if (s->reference)
        cJSON_AddStringToObject(meta, "reference", s->reference);
    cJSON_AddStringToObject(meta, "manifest", s->manifest_digest);
    if (s->index_digest)
        cJSON_AddStringToObject(meta, "index", s->index_digest);
    if (s->index_chain && s->index_chain[0] && s->index_chain[1])
        cJSON_AddItemToObject(meta, "indexes", str_array(s->index_chain));
    cJSON_AddItemToObject(meta, "include", str_array(s->include));
    cJSON_AddItemToObject(meta, "exclude", str_array(s->exclude));
    if (s->kinds && s->kinds[0])
        cJSON_AddItemToObject(meta, "kinds", str_array(s->kinds));
    if (s->subpath)
        cJSON_AddStringToObject(meta, "subpath", s->subpath);
    cJSON_AddNumberToObject(meta, "size", (double)size.size);
    /* What NodeGetVolumeStats reports, so it never walks a tree: trees are
     * immutable. A tree nested deeper than usage is measured to records
     * none, and asking for its usage fails, as it always did. */
    if (size.depth <= CACHE_USAGE_MAX_DEPTH) {
        cJSON *usage = cJSON_AddObjectToObject(meta, "usage");
        cJSON_AddNumberToObject(usage, "bytes", (double)size.bytes);
        cJSON_AddNumberToObject(usage, "inodes", (double)size.inodes);
    }
    cJSON_AddNumberToObject(meta, "created", (double)time(NULL));
    cJSON_AddItemReferenceToObject(meta, "blobs", blobs);
    cJSON_AddItemReferenceToObject(meta, "layers", layers);
    char *json = cJSON_PrintUnformatted(meta);
    cJSON_Delete(meta);
    if (!json)
        return mv_error_set(err, -ENOMEM, "tree: encode meta.json");
    _cleanup_close_ int fd =
        openat(wfd, "meta.json", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, json, strlen(json)) != (ssize_t)strlen(json) || fsync(fd) < 0)
        r = mv_error_errno(err, errno ? -errno : -EIO, "tree: write meta.json");
    free(json);
    if (r < 0)
        return r;
    return cache_touch_at(wfd, "lastuse", err);
}

int cache_tree_usage(cache *c, const char *tree_id, uint64_t *bytes, uint64_t *inodes,
                     mv_error *err)
{
    if (!tree_id || oci_digest_validate(tree_id, NULL) < 0 || strncmp(tree_id, "sha256:", 7) != 0)
        return mv_error_set(err, -EINVAL, "bad tree id \"%s\"", tree_id ? tree_id : "");
    const char *hex = oci_digest_hex(tree_id);
    _cleanup_free_ char *mp = mv_xasprintf(CACHE_D_TREES "/%s/meta.json", hex);
    _cleanup_free_ char *buf = NULL;
    if (mv_read_file_at(c->root_fd, mp, (size_t)16 * 1024 * 1024, &buf, NULL, NULL) == 0) {
        cJSON *meta = cJSON_Parse(buf);
        const cJSON *usage = cJSON_GetObjectItemCaseSensitive(meta, "usage");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(usage, "bytes");
        const cJSON *i = cJSON_GetObjectItemCaseSensitive(usage, "inodes");
        bool recorded = cJSON_IsNumber(b) && cJSON_IsNumber(i);
        if (recorded) {
            *bytes = (uint64_t)b->valuedouble;
            *inodes = (uint64_t)i->valuedouble;
        }
        cJSON_Delete(meta);
        if (recorded)
            return 0;
    }
    /* A tree built before usage was recorded: measure it (each time: it is
     * the rare case, and trees/ is not ours to rewrite under a reader). */
    _cleanup_free_ char *root = mv_xasprintf(CACHE_D_TREES "/%s/root", hex);
    cache_tree_size size;
    int r = cache_tree_measure_at(c->root_fd, root, CACHE_USAGE_MAX_DEPTH + 1, &size, err);
    if (r == -ENOENT)
        return mv_error_set(err, -ENOENT, "tree %s is not in the cache %s", tree_id, c->root);
    if (r < 0)
        return mv_error_wrap(err, "tree %s", tree_id);
    *bytes = size.bytes;
    *inodes = size.inodes;
    return 0;
}

int cache_tree_build(cache *c, const cache_tree_spec *s, mv_error *err)
{
    const char *hex = oci_digest_hex(s->tree_id);
    _cleanup_free_ char *work = mv_xasprintf("tree-%s", hex);
    _cleanup_close_ int tmpfd =
        openat(c->root_fd, CACHE_D_TMP, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (tmpfd < 0)
        return mv_error_errno(err, -errno, "open %s/" CACHE_D_TMP, c->root);
    int r = cache_rm_rf_at(tmpfd, work, err);
    if (r < 0)
        return r;
    if (mkdirat(tmpfd, work, 0755) < 0)
        return mv_error_errno(err, -errno, "tree %s: create work directory", s->tree_id);
    _cleanup_close_ int wfd = openat(tmpfd, work, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (wfd < 0)
        return mv_error_errno(err, -errno, "tree %s: open work directory", s->tree_id);
    cJSON *blobs = cJSON_CreateArray(), *layers = cJSON_CreateArray();
    r = build_in(c, s, wfd, blobs, layers, err);
    cJSON_Delete(blobs);
    cJSON_Delete(layers);
    /* No syncfs here: a tree is links and directories, which the journal
     * orders before the rename; its only data, meta.json, is fsynced. */
    _cleanup_free_ char *dst = mv_xasprintf(CACHE_D_TREES "/%s", hex);
    if (r == 0) {
        int rr = cache_rename_dir_noreplace(tmpfd, work, c->root_fd, dst);
        if (rr < 0 && rr != -EEXIST && rr != -ENOTEMPTY)
            r = mv_error_errno(err, rr, "tree %s: rename into " CACHE_D_TREES, s->tree_id);
    }
    cache_rm_rf_at(tmpfd, work, NULL);
    if (r < 0)
        return r;
    return mv_fsync_dir_at(c->root_fd, CACHE_D_TREES, err);
}
