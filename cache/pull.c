/* pull.c — cache_pull: resolve a parsed request's reference (through the tag cache when the
 * policy allows), fetch what the cache lacks, ingest it, extract tar
 * layers and build the model tree. Lock order, which keeps several
 * processes deadlock-free: GC (shared) -> tree -> blobs (only tried, never
 * waited on while holding another blob lock) -> layer. */
#include "cache-internal.h"

#include <cJSON.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>

typedef struct pull_ctx {
    cache *c;
    const cache_request *rq;
    const oci_ref *ref;
    const char *refstr;
    pull_options po; /* rq->pull with the registry's config and the credentials */
    pull_client *client;
    mv_error *err;
} pull_ctx;

static int need_client(pull_ctx *p, const char *what)
{
    if (p->client)
        return 0;
    if (p->rq->policy == CACHE_PULL_NEVER)
        return mv_error_set(p->err, -ENOENT, "%s is not in the cache and the pull policy is Never",
                            what);
    return pull_client_new(p->ref, &p->po, &p->client, p->err);
}

/* A manifest or index by digest: from the store, else from the registry
 * (verified by the puller, re-verified by the ingest). */
static int load_manifest(pull_ctx *p, const char *digest, oci_manifest **m)
{
    _cleanup_free_ char *buf = NULL;
    _cleanup_free_ char *ct = NULL;
    size_t len = 0;
    if (cache_blob_exists(p->c, digest)) {
        int r = cache_blob_read(p->c, digest, (size_t)OCI_MANIFEST_MAX_BYTES, &buf, &len, p->err);
        if (r < 0)
            return r;
    } else {
        _cleanup_free_ char *what = mv_xasprintf("manifest %s", digest);
        int r = need_client(p, what);
        if (r < 0)
            return r;
        char got[OCI_DIGEST_MAX];
        void *vbuf = NULL;
        r = pull_fetch_manifest(p->client, digest, &vbuf, &len, &ct, got, p->err);
        buf = vbuf;
        if (r < 0)
            return r;
        r = cache_ingest_buf(p->c, digest, buf, len, p->err);
        if (r < 0)
            return r;
    }
    int r = oci_manifest_parse(buf, len, ct, m, p->err);
    if (r < 0)
        return mv_error_wrap(p->err, "manifest %s", digest);
    return 0;
}

static const char *host_arch(void)
{
    static struct utsname u;
    if (uname(&u) < 0)
        return "amd64";
    if (strcmp(u.machine, "x86_64") == 0)
        return "amd64";
    if (strcmp(u.machine, "aarch64") == 0)
        return "arm64";
    if (strncmp(u.machine, "arm", 3) == 0)
        return "arm";
    return u.machine;
}

/* How deep indexes may nest before we call it a loop or an abuse. */
#define INDEX_DEPTH_MAX 4

static void chain_push(char ***v, size_t *n, const char *s)
{
    *v = mv_xrealloc(*v, (*n + 2) * sizeof(**v));
    (*v)[(*n)++] = mv_xstrdup(s);
    (*v)[*n] = NULL;
}

static char *chain_text(char *const *v)
{
    char *s = mv_xstrdup("");
    for (; v && *v; v++) {
        char *t = mv_xasprintf("%s%s%s", s, *s ? " -> " : "", *v);
        free(s);
        s = t;
    }
    return s;
}

/* From the document at top down to one manifest: at each index, the
 * request's selector (or today's rules: the model, else this node's
 * platform) picks one entry, which may be an index again. On entry *m is
 * the top document; on return the manifest, whose digest is in
 * manifest_digest, and *chain the index digests walked, outermost first
 * (NULL when top is a manifest). */
static int resolve_index(pull_ctx *p, const char *top, oci_manifest **m,
                         char manifest_digest[OCI_DIGEST_MAX], char ***chain)
{
    char cur[OCI_DIGEST_MAX];
    snprintf(cur, sizeof(cur), "%s", top);
    size_t n = 0;
    *chain = NULL;
    while (oci_manifest_is_index(*m)) {
        chain_push(chain, &n, cur);
        if (n > INDEX_DEPTH_MAX) {
            _cleanup_free_ char *t = chain_text(*chain);
            return mv_error_set(p->err, -ELOOP, "indexes nested deeper than %d: %s",
                                INDEX_DEPTH_MAX, t);
        }
        const oci_descriptor *d = NULL;
        int r = oci_index_select(*m, &p->rq->select, "linux", host_arch(), &d, p->err);
        if (r < 0)
            return mv_error_wrap(p->err, "index %s", cur);
        char next[OCI_DIGEST_MAX];
        snprintf(next, sizeof(next), "%s", d->digest);
        oci_manifest_free(*m);
        *m = NULL;
        r = load_manifest(p, next, m);
        if (r < 0)
            return r;
        snprintf(cur, sizeof(cur), "%s", next);
    }
    snprintf(manifest_digest, OCI_DIGEST_MAX, "%s", cur);
    return 0;
}

/* ---- config: diff_ids ---------------------------------------------------- */

static char **config_diff_ids(const char *buf, size_t len, size_t *n)
{
    *n = 0;
    cJSON *j = cJSON_ParseWithLength(buf, len);
    if (!j)
        return NULL;
    const cJSON *arr =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "rootfs"), "diff_ids");
    if (!cJSON_IsArray(arr))
        arr = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "modelfs"),
                                               "diffIds");
    char **v = NULL;
    if (cJSON_IsArray(arr)) {
        size_t cnt = (size_t)cJSON_GetArraySize(arr);
        v = mv_xcalloc(cnt + 1, sizeof(*v));
        const cJSON *it;
        cJSON_ArrayForEach(it, arr)
        {
            v[*n] = mv_xstrdup(cJSON_IsString(it) ? it->valuestring : "");
            (*n)++;
        }
    }
    cJSON_Delete(j);
    return v;
}

/* The config blob (stored or fetched): its bytes for the layout plan and
 * its diff_ids for extraction. */
static int load_config(pull_ctx *p, const oci_manifest *m, char **cfg, size_t *cfg_len,
                       char ***diff_ids, size_t *n)
{
    *cfg = NULL;
    *cfg_len = 0;
    *diff_ids = NULL;
    *n = 0;
    if (!m->has_config || !m->config.digest)
        return 0;
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    if (cache_blob_exists(p->c, m->config.digest)) {
        int r = cache_blob_read(p->c, m->config.digest, (size_t)OCI_MANIFEST_MAX_BYTES, &buf, &len,
                                p->err);
        if (r < 0)
            return r;
    } else {
        _cleanup_free_ char *what = mv_xasprintf("config %s", m->config.digest);
        int r = need_client(p, what);
        if (r < 0)
            return r;
        void *vbuf = NULL;
        r = pull_fetch_small_blob(p->client, &m->config, &vbuf, &len, p->err);
        buf = vbuf;
        if (r < 0)
            return r;
        r = cache_ingest_buf(p->c, m->config.digest, buf, len, p->err);
        if (r < 0)
            return r;
    }
    *diff_ids = config_diff_ids(buf, len, n);
    *cfg_len = len;
    *cfg = MV_STEAL(buf);
    return 0;
}

/* ---- downloads ------------------------------------------------------------ */

typedef struct fetch_slot {
    const oci_descriptor *d;
    int lock_fd;
    int fd;
    char *state_path;
    cache *c;
    bool committed; /* visible, lock released (commit_early) */
    int commit_rc;
    mv_error commit_err;
} fetch_slot;

/* pull_blob_job.on_verified: the blob is visible and its lock free while
 * the round's other blobs still download. */
static void commit_early(void *ud, pull_blob_job *job)
{
    fetch_slot *s = ud;
    s->committed = true;
    s->commit_rc = cache_ingest_commit(s->c, s->d, job->fd, &s->commit_err);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    s->lock_fd = -1;
}

static void slots_release(fetch_slot *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i].fd >= 0)
            close(s[i].fd);
        if (s[i].lock_fd >= 0)
            close(s[i].lock_fd);
        free(s[i].state_path);
    }
    free(s);
}

/* One round: take every free blob lock, download those blobs with one
 * pull_blobs call, ingest them; then wait for the blobs other processes
 * are fetching. Returns how many blobs are still missing. */
static int fetch_round(pull_ctx *p, const oci_descriptor **missing, size_t n, uint64_t *downloaded,
                       size_t *still_missing)
{
    fetch_slot *slots = mv_xcalloc(n ? n : 1, sizeof(*slots));
    size_t ns = 0;
    const oci_descriptor **busy = mv_xcalloc(n ? n : 1, sizeof(const oci_descriptor *));
    size_t nb = 0;
    int r = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        const oci_descriptor *d = missing[i];
        _cleanup_free_ char *lock = mv_xasprintf("blob-%s", oci_digest_hex(d->digest));
        int lfd = -1;
        int lr = cache_lock(p->c, lock, LOCK_EX | LOCK_NB, &lfd, p->err);
        if (lr == -EWOULDBLOCK) {
            busy[nb++] = d;
            continue;
        }
        if (lr < 0) {
            r = lr;
            break;
        }
        if (cache_blob_exists(p->c, d->digest)) {
            close(lfd);
            continue;
        }
        slots[ns] = (fetch_slot){.d = d, .lock_fd = lfd, .fd = -1, .c = p->c};
        r = cache_ingest_open(p->c, d->digest, &slots[ns].fd, &slots[ns].state_path, p->err);
        ns++;
    }
    if (r == 0 && ns > 0) {
        _cleanup_free_ char *what = mv_xasprintf("blob %s", slots[0].d->digest);
        r = need_client(p, what);
    }
    if (r == 0 && ns > 0) {
        pull_blob_job *jobs = mv_xcalloc(ns, sizeof(*jobs));
        for (size_t i = 0; i < ns; i++)
            jobs[i] = (pull_blob_job){.desc = slots[i].d,
                                      .fd = slots[i].fd,
                                      .state_path = slots[i].state_path,
                                      .on_verified = commit_early,
                                      .ud = &slots[i]};
        int pr = pull_blobs(p->client, jobs, ns, p->err);
        /* Keep whatever did arrive even when another blob failed: the next
         * pull then only needs the rest. */
        for (size_t i = 0; i < ns; i++) {
            *downloaded += jobs[i].downloaded;
            if (jobs[i].result < 0)
                continue;
            mv_error cerr = MV_ERROR_INIT;
            int cr;
            if (slots[i].committed) {
                cr = slots[i].commit_rc;
                mv_error_copy(&cerr, &slots[i].commit_err);
            } else {
                cr = cache_ingest_commit(p->c, slots[i].d, slots[i].fd, &cerr);
            }
            if (cr < 0 && pr == 0) {
                mv_error_copy(p->err, &cerr);
                pr = cr;
            }
        }
        free(jobs);
        r = pr;
    }
    slots_release(slots, ns);
    if (r < 0) {
        free(busy);
        return r;
    }
    /* Others are fetching these: wait for each in turn, holding no other
     * blob lock, then look again. */
    for (size_t i = 0; i < nb; i++) {
        _cleanup_free_ char *lock = mv_xasprintf("blob-%s", oci_digest_hex(busy[i]->digest));
        _cleanup_close_ int lfd = -1;
        r = cache_lock(p->c, lock, LOCK_EX, &lfd, p->err);
        if (r < 0)
            break;
    }
    *still_missing = 0;
    for (size_t i = 0; i < n; i++)
        if (!cache_blob_exists(p->c, missing[i]->digest))
            missing[(*still_missing)++] = missing[i];
    free(busy);
    return r;
}

/* Refuses, before any download starts, blobs that cannot fit in the free
 * space of the cache's filesystem: otherwise the first blobs would be
 * fetched only for a later one to fail. Space already allocated to a
 * partial file (a resumable download) counts as available to it. */
static int check_space(pull_ctx *p, const oci_descriptor **missing, size_t n)
{
    uint64_t need = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t size = missing[i]->size > 0 ? (uint64_t)missing[i]->size : 0;
        _cleanup_free_ char *partial =
            mv_xasprintf(CACHE_D_INGEST "/%s.partial", oci_digest_hex(missing[i]->digest));
        struct stat st;
        uint64_t have = 0;
        if (fstatat(p->c->root_fd, partial, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            have = (uint64_t)st.st_blocks * 512;
        need += size > have ? size - have : 0;
    }
    struct statvfs sv;
    if (need == 0 || fstatvfs(p->c->root_fd, &sv) < 0)
        return 0;
    uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    if (need <= avail)
        return 0;
    char a[32], b[32];
    return mv_error_set(
        p->err, -ENOSPC, "no space left on device: %zu blob(s) need %s, %s has %s free", n,
        mv_format_size(need, a, sizeof(a)), p->c->root, mv_format_size(avail, b, sizeof(b)));
}

static int fetch_missing(pull_ctx *p, const oci_manifest *m, const oci_layout_plan *plan,
                         const bool *keep, uint64_t *downloaded)
{
    const oci_descriptor **missing =
        mv_xcalloc(m->n_layers ? m->n_layers : 1, sizeof(const oci_descriptor *));
    size_t n = 0;
    int r = 0;
    for (size_t i = 0; i < plan->n_layers; i++) {
        const oci_descriptor *d = &m->layers[plan->layers[i].index];
        if (!keep[i] || cache_blob_exists(p->c, d->digest))
            continue;
        bool dup = false;
        for (size_t k = 0; k < n && !dup; k++)
            dup = strcmp(missing[k]->digest, d->digest) == 0;
        if (!dup)
            missing[n++] = d;
    }
    if (r == 0)
        r = check_space(p, missing, n);
    /* Each round either downloads a blob or waits for its owner; a blob an
     * owner failed to fetch is ours to fetch in the next round. */
    for (int round = 0; r == 0 && n > 0; round++) {
        if (round == 8) {
            r = mv_error_set(p->err, -EIO, "blob %s: still missing after 8 attempts",
                             missing[0]->digest);
            break;
        }
        r = fetch_round(p, missing, n, downloaded, &n);
    }
    free(missing);
    return r;
}

/* ---- cache_pull -------------------------------------------------------------- */

/* The puller stops on cancel by itself; extraction and tree building
 * check between steps. */
static bool cancelled(const cache_request *rq)
{
    return rq->pull.cancel && *rq->pull.cancel;
}

static void hit(cache *c, const char *tree_id, const char *manifest_digest, cache_pull_result *out)
{
    _cleanup_free_ char *lu = mv_xasprintf(CACHE_D_TREES "/%s/lastuse", oci_digest_hex(tree_id));
    cache_touch_at(c->root_fd, lu, NULL);
    out->tree_path = cache_tree_path_of(c, tree_id);
    snprintf(out->tree_id, sizeof(out->tree_id), "%s", tree_id);
    snprintf(out->manifest_digest, sizeof(out->manifest_digest), "%s", manifest_digest);
    out->cache_hit = true;
}

/* The layers the plan skipped while it laid out others, for the front
 * ends to log and count. */
static void note_skips(const oci_manifest *m, const oci_layout_plan *plan, cache_pull_result *out)
{
    size_t used = 0;
    for (size_t i = 0; i < plan->n_layers; i++) {
        const oci_layer_plan *lp = &plan->layers[i];
        if (lp->place != OCI_PLACE_SKIP)
            continue;
        const oci_descriptor *d = &m->layers[lp->index];
        out->n_skipped++;
        if (used >= sizeof(out->skipped) - 1)
            continue;
        int k = snprintf(out->skipped + used, sizeof(out->skipped) - used, "%s%s: %s: %s",
                         used ? "; " : "", d->digest, d->media_type,
                         lp->skip_reason ? lp->skip_reason : "skipped");
        used = k < 0 || used + (size_t)k >= sizeof(out->skipped) ? sizeof(out->skipped) - 1
                                                                 : used + (size_t)k;
    }
}

/* The config (for its diff_ids, and for the families that need it) and the
 * layout plan of manifest m, decided once for a pull or an inspection. */
static int plan_manifest(pull_ctx *p, const oci_manifest *m, const char *digest,
                         oci_layout_plan **plan, char ***diff_ids, size_t *n_diff)
{
    _cleanup_free_ char *cfg = NULL;
    size_t cfg_len = 0;
    int r = load_config(p, m, &cfg, &cfg_len, diff_ids, n_diff);
    if (r < 0)
        return r;
    r = oci_layout_plan_make(m, cfg, cfg_len, plan, p->err);
    if (r < 0)
        return mv_error_wrap(p->err, "manifest %s", digest);
    return 0;
}

/* The manifest the reference names: its tag asked of the registry unless
 * resolved already holds a digest (the reference's, or the tag record's),
 * then through any indexes (resolve_index). */
static int fetch_and_resolve(pull_ctx *p, char resolved[OCI_DIGEST_MAX], oci_manifest **m,
                             char manifest_digest[OCI_DIGEST_MAX], char ***chain)
{
    if (!resolved[0]) {
        int r = need_client(p, "the tag");
        if (r < 0)
            return r;
        _cleanup_free_ char *ct = NULL;
        _cleanup_free_ char *buf = NULL;
        void *vbuf = NULL;
        size_t len = 0;
        r = pull_fetch_manifest(p->client, p->ref->tag, &vbuf, &len, &ct, resolved, p->err);
        buf = vbuf;
        if (r < 0)
            return r;
        r = cache_ingest_buf(p->c, resolved, buf, len, p->err);
        if (r < 0)
            return r;
    }
    int r = load_manifest(p, resolved, m);
    if (r < 0)
        return r;
    return resolve_index(p, resolved, m, manifest_digest, chain);
}

static int do_pull(pull_ctx *p, cache_pull_result *out)
{
    cache *c = p->c;
    const cache_request *rq = p->rq;
    const char *const *include = (const char *const *)rq->include;
    const char *const *exclude = (const char *const *)rq->exclude;
    const char *const *kinds = (const char *const *)rq->kinds;
    const char *subpath = rq->subpath;
    char manifest_digest[OCI_DIGEST_MAX] = "";
    char resolved[OCI_DIGEST_MAX] = "";
    char tree_id[OCI_DIGEST_MAX];
    _cleanup_manifest_ oci_manifest *m = NULL;
    bool tag_known = false;

    if (p->ref->digest) {
        snprintf(resolved, sizeof(resolved), "%s", p->ref->digest);
    } else if (rq->policy != CACHE_PULL_ALWAYS) {
        mv_error sub = MV_ERROR_INIT;
        tag_known = cache_tag_get(c, p->refstr, manifest_digest, resolved, &sub) == 0;
        /* Behind an index the manifest depends on the selector, so the
         * record's one is only taken for a plain manifest; an index is
         * walked again below, from the store. */
        if (tag_known) {
            cache_tree_id(manifest_digest, include, exclude, kinds, subpath, tree_id);
            if (strcmp(manifest_digest, resolved) == 0 && cache_tree_exists(c, tree_id)) {
                hit(c, tree_id, manifest_digest, out);
                return 0;
            }
        } else if (rq->policy == CACHE_PULL_NEVER) {
            return mv_error_set(p->err, -ENOENT,
                                "not in the cache and the pull policy is Never (pull it first)");
        }
    }
    _cleanup_strv_ char **index_chain = NULL;
    int r = fetch_and_resolve(p, resolved, &m, manifest_digest, &index_chain);
    if (r < 0)
        return r;
    const char *index_digest = index_chain ? resolved : NULL;
    if (p->ref->tag && !p->ref->digest && !tag_known) {
        r = cache_tag_put(c, p->refstr, manifest_digest, resolved, p->err);
        if (r < 0)
            return r;
    }

    cache_tree_id(manifest_digest, include, exclude, kinds, subpath, tree_id);
    if (cache_tree_exists(c, tree_id)) {
        hit(c, tree_id, manifest_digest, out);
        return 0;
    }
    _cleanup_free_ char *tlock = mv_xasprintf("tree-%s", oci_digest_hex(tree_id));
    _cleanup_close_ int tfd = -1;
    r = cache_lock(c, tlock, LOCK_EX, &tfd, p->err);
    if (r < 0)
        return r;
    if (cache_tree_exists(c, tree_id)) {
        hit(c, tree_id, manifest_digest, out);
        return 0; /* another process built it while we waited */
    }

    _cleanup_strv_ char **diff_ids = NULL;
    size_t n_diff = 0;
    /* The layout is decided once, here; everything below executes it. */
    _cleanup_layout_plan_ oci_layout_plan *plan = NULL;
    r = plan_manifest(p, m, manifest_digest, &plan, &diff_ids, &n_diff);
    if (r < 0)
        return r;
    _cleanup_free_ bool *keep = mv_xcalloc(plan->n_layers ? plan->n_layers : 1, sizeof(*keep));
    r = cache_plan_select(m, plan, include, exclude, rq->kinds_mask, keep, p->err);
    if (r < 0)
        return r;
    _cleanup_free_ char *filter = cache_filter_describe(include, exclude, kinds, subpath);
    r = cache_plan_check(manifest_digest, m, plan, keep, filter, p->err);
    if (r < 0)
        return r;
    r = fetch_missing(p, m, plan, keep, &out->bytes_downloaded);
    if (r < 0)
        return r;

    for (size_t i = 0; i < plan->n_layers; i++) {
        const oci_layer_plan *lp = &plan->layers[i];
        if (!keep[i] || lp->place != OCI_PLACE_UNPACK)
            continue;
        if (cancelled(rq))
            return mv_error_set(p->err, -ECANCELED, "cancelled");
        /* The uncompressed tar's digest, when something vouches for it:
         * an image's diff_id, or ORAS's io.deis.oras.content.digest. */
        const char *want = lp->unpacked_digest;
        if (!want && n_diff == m->n_layers && diff_ids[lp->index][0])
            want = diff_ids[lp->index];
        r = cache_layer_ensure(c, &m->layers[lp->index], want, p->err);
        if (r < 0)
            return r;
    }
    if (cancelled(rq))
        return mv_error_set(p->err, -ECANCELED, "cancelled");
    cache_tree_spec spec = {
        .tree_id = tree_id,
        .reference = p->refstr,
        .manifest_digest = manifest_digest,
        .index_digest = index_digest,
        .index_chain = (const char *const *)index_chain,
        .manifest = m,
        .plan = plan,
        .keep = keep,
        .include = include,
        .exclude = exclude,
        .kinds = kinds,
        .subpath = subpath,
    };
    r = cache_tree_build(c, &spec, p->err);
    if (r < 0)
        return r;
    note_skips(m, plan, out);
    out->tree_path = cache_tree_path_of(c, tree_id);
    snprintf(out->tree_id, sizeof(out->tree_id), "%s", tree_id);
    snprintf(out->manifest_digest, sizeof(out->manifest_digest), "%s", manifest_digest);
    return 0;
}

/* A pull's or an inspection's context: the request's options, with the
 * registry's config and the pod's credentials, else the node's. */
static pull_ctx ctx_of(cache *c, const cache_request *rq, mv_error *err)
{
    pull_ctx p = {.c = c, .rq = rq, .ref = rq->ref, .refstr = rq->reference, .err = err};
    p.po = rq->pull;
    p.po.config = rq->registry ? rq->registry->config : NULL;
    p.po.creds = rq->creds ? rq->creds : rq->registry ? rq->registry->creds : NULL;
    return p;
}

int cache_pull(cache *c, const cache_request *rq, cache_pull_result *out, mv_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!rq || !rq->ref || !rq->reference)
        return mv_error_set(err, -EINVAL, "pull: no parsed request (cache_request_parse)");
    pull_ctx p = ctx_of(c, rq, err);
    _cleanup_close_ int gfd = -1;
    int r = cache_lock(c, CACHE_LOCK_GC, LOCK_SH, &gfd, err);
    if (r < 0)
        return r;
    r = do_pull(&p, out);
    if (p.client) {
        pull_stats st;
        pull_client_stats(p.client, &st);
        out->bytes_from_mirror = st.bytes_mirror;
        pull_client_free(p.client);
    }
    if (r < 0) {
        cache_pull_result_clear(out);
        return mv_error_wrap(err, "pull %s", rq->reference);
    }
    return 0;
}

/* ---- cache_inspect -------------------------------------------------------- */

static int do_inspect(pull_ctx *p, cache_inspection *out)
{
    char resolved[OCI_DIGEST_MAX] = "";
    int r;
    if (p->ref->digest) {
        snprintf(resolved, sizeof(resolved), "%s", p->ref->digest);
    } else if (p->rq->policy == CACHE_PULL_NEVER) {
        mv_error sub = MV_ERROR_INIT;
        char md[OCI_DIGEST_MAX];
        if (cache_tag_get(p->c, p->refstr, md, resolved, &sub) < 0)
            return mv_error_set(p->err, -ENOENT,
                                "not in the cache and the pull policy is Never (pull it first)");
    }
    _cleanup_manifest_ oci_manifest *m = NULL;
    _cleanup_strv_ char **chain = NULL;
    r = fetch_and_resolve(p, resolved, &m, out->manifest_digest, &chain);
    if (r < 0)
        return r;
    if (chain)
        snprintf(out->index_digest, sizeof(out->index_digest), "%s", chain[0]);
    _cleanup_strv_ char **diff_ids = NULL;
    size_t n_diff = 0;
    r = plan_manifest(p, m, out->manifest_digest, &out->plan, &diff_ids, &n_diff);
    if (r < 0)
        return r;
    const oci_layout_plan *plan = out->plan;
    _cleanup_free_ bool *keep = mv_xcalloc(plan->n_layers ? plan->n_layers : 1, sizeof(*keep));
    r = cache_plan_select(m, plan, (const char *const *)p->rq->include,
                          (const char *const *)p->rq->exclude, p->rq->kinds_mask, keep, p->err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < plan->n_layers; i++) {
        const oci_descriptor *d = &m->layers[plan->layers[i].index];
        if (!keep[i] || d->size <= 0)
            continue;
        /* A blob laid out twice is fetched once. */
        bool dup = false;
        for (size_t k = 0; k < i && !dup; k++)
            dup = keep[k] && strcmp(m->layers[plan->layers[k].index].digest, d->digest) == 0;
        if (!dup)
            out->bytes_selected += (uint64_t)d->size;
    }
    out->manifest = MV_STEAL(m);
    return 0;
}

int cache_inspect(cache *c, const cache_request *rq, cache_inspection *out, mv_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!rq || !rq->ref || !rq->reference)
        return mv_error_set(err, -EINVAL, "inspect: no parsed request (cache_request_parse)");
    pull_ctx p = ctx_of(c, rq, err);
    int r = do_inspect(&p, out);
    pull_client_free(p.client);
    if (r < 0) {
        cache_inspection_clear(out);
        return mv_error_wrap(err, "inspect %s", rq->reference);
    }
    return 0;
}

void cache_inspection_clear(cache_inspection *in)
{
    if (!in)
        return;
    oci_layout_plan_free(in->plan);
    oci_manifest_free(in->manifest);
    memset(in, 0, sizeof(*in));
}
