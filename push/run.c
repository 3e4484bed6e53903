/* run.c — one push from start to end: checks the request, settles the
 * defaults (tags, createdAt, name, the state directory with its resume
 * records and hash cache), packs the directory, then uploads the blobs and
 * PUTs the manifest under every tag, reporting a summary either way. */
#include "push-internal.h"

#include <string.h>
#include <time.h>

int push_request_check(const push_request *rq, mv_error *err)
{
    if (rq->pack.format == PUSH_FORMAT_ORAS && rq->pack.tar)
        return mv_error_set(
            err, -EINVAL,
            "--tar packs ModelPack layers; --format oras keeps every file a raw blob");
    if (rq->pack.format == PUSH_FORMAT_KITOPS && (rq->pack.tar || rq->pack.tar_max))
        return mv_error_set(
            err, -EINVAL,
            "--tar packs ModelPack layers; --format kitops makes one tar layer per file already");
    /* Every kitops layer is a tar: --zstd needs no --tar there. */
    if ((rq->pack.zstd || rq->pack.tar_max) && !rq->pack.tar &&
        rq->pack.format != PUSH_FORMAT_KITOPS)
        return mv_error_set(err, -EINVAL, "--zstd and --tar-max apply to --tar layers; add --tar");
    if (rq->pack.artifact_type && rq->pack.format != PUSH_FORMAT_ORAS)
        return mv_error_set(
            err, -EINVAL,
            "--artifact-type applies to --format oras; ModelPack's and KitOps' are fixed");
    return 0;
}

bool push_tag_valid(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > OCI_TAG_MAX)
        return false;
    if (!(t[0] == '_' || (t[0] >= '0' && t[0] <= '9') || (t[0] >= 'a' && t[0] <= 'z') ||
          (t[0] >= 'A' && t[0] <= 'Z')))
        return false;
    for (const char *p = t; *p; p++)
        if (!(*p == '_' || *p == '.' || *p == '-' || (*p >= '0' && *p <= '9') ||
              (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return false;
    return true;
}

char *push_default_state_dir(void)
{
    const char *xdg = getenv("XDG_STATE_HOME");
    if (xdg && xdg[0] == '/')
        return mv_xasprintf("%s/modelvol/push", xdg);
    const char *home = getenv("HOME");
    if (home && home[0] == '/')
        return mv_xasprintf("%s/.cache/modelvol/push", home);
    return NULL;
}

void push_result_clear(push_result *res)
{
    if (!res)
        return;
    free(res->ref);
    free(res->manifest_json);
    memset(res, 0, sizeof(*res));
}

static void add_tag(const char ***tags, size_t *n, const char *t)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*tags)[i], t) == 0)
            return;
    *tags = mv_xrealloc(*tags, (*n + 2) * sizeof(**tags));
    (*tags)[(*n)++] = t;
    (*tags)[*n] = NULL;
}

/* --from names a repository on REF's registry; a full name with the same
 * registry is accepted too. Returns the repository part. */
static int from_repo(const char *from, const oci_ref *ref, const char **out, mv_error *err)
{
    size_t rl = strlen(ref->registry);
    if (strncmp(from, ref->registry, rl) == 0 && from[rl] == '/')
        from += rl + 1;
    bool ok = from[0] != '\0';
    for (const char *c = from; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' ||
              *c == '-' || *c == '/'))
            ok = false;
    if (!ok)
        return mv_error_set(err, -EINVAL, "--from %s: not a repository on %s (e.g. models/base)",
                            from, ref->registry);
    *out = from;
    return 0;
}

static int default_created(int64_t *out, mv_error *err)
{
    const char *sde = getenv("SOURCE_DATE_EPOCH");
    if (sde && *sde) {
        if (push_parse_time(sde, out, err) < 0)
            return mv_error_wrap(err, "SOURCE_DATE_EPOCH");
        return 0;
    }
    *out = (int64_t)time(NULL);
    return 0;
}

/* The state directory, or NULL for none: a default location we cannot
 * use costs resume and the cache, not the push; one the user named must
 * work. */
static int state_dir_for(const push_request *rq, bool resume, char **out, mv_error *err)
{
    *out = NULL;
    if (!resume && rq->no_hash_cache)
        return 0;
    _cleanup_free_ char *dir = rq->state_dir ? mv_xstrdup(rq->state_dir) : push_default_state_dir();
    if (dir && mv_mkdir_p(dir, 0700, err) < 0) {
        if (rq->state_dir)
            return mv_error_wrap(err, "state directory %s", dir);
        mv_error_clear(err);
        return 0;
    }
    *out = MV_STEAL(dir);
    return 0;
}

static void report_packed(mv_progress *prog, const push_pack *p, uint64_t total)
{
    char packed[256];
    snprintf(packed, sizeof(packed),
             "\"files\":%zu,\"files_hashed\":%zu,\"files_cached\":%zu,\"blobs\":%zu,"
             "\"bytes\":%llu,\"manifest\":\"%s\"",
             p->n_files, p->n_hashed, p->n_cached, p->n_blobs, (unsigned long long)total,
             p->manifest_digest);
    mv_progress_note(prog, "packed", packed, NULL);
}

static void report_summary(mv_progress *prog, const push_upload_stats *st, bool ok)
{
    char fields[256], text[256], sz[32];
    snprintf(fields, sizeof(fields),
             "\"bytes_uploaded\":%llu,\"blobs_uploaded\":%zu,\"blobs_skipped\":%zu,"
             "\"blobs_mounted\":%zu,\"ok\":%s",
             (unsigned long long)st->bytes_sent, st->uploaded, st->skipped, st->mounted,
             ok ? "true" : "false");
    snprintf(text, sizeof(text), "uploaded %zu blobs (%s), %zu already present, %zu mounted",
             st->uploaded, mv_format_size(st->bytes_sent, sz, sizeof(sz)), st->skipped,
             st->mounted);
    mv_progress_finish(prog);
    mv_progress_note(prog, "summary", fields, text);
}

/* Uploads the pack's blobs, then the manifest under every tag. */
static int upload(const push_request *rq, const oci_ref *ref, const push_pack *p, const char *from,
                  const char *state_dir, const char *const *tags, mv_error *err)
{
    _cleanup_pull_context_ pull_context *reg = NULL;
    int r = pull_context_load(rq->registry_config, rq->registry_config != NULL, 0, &reg, err);
    if (r < 0)
        return r;
    if (rq->on_upload)
        rq->on_upload(rq->ctx);
    uint64_t total = 0;
    for (size_t i = 0; i < p->n_blobs; i++)
        total += p->blobs[i].size;
    mv_progress_expect(rq->progress, total, p->n_blobs);
    report_packed(rq->progress, p, total);
    push_upload_opts uo = {
        .ref = ref,
        .pull = {.config = reg->config,
                 .creds = reg->creds,
                 .plain_http = rq->plain_http,
                 .max_retries = rq->retries,
                 .cancel = rq->cancel},
        .jobs = rq->jobs,
        .chunk_size = rq->chunk_size,
        .monolithic = rq->monolithic,
        .from_repo = from,
        .state_dir = state_dir,
        .progress = rq->progress,
        .cancel = rq->cancel,
    };
    push_upload_stats st = {0};
    r = push_upload_blobs(p, &uo, &st, err);
    if (r == 0)
        r = push_upload_manifest(p, &uo, tags, err);
    report_summary(rq->progress, &st, r == 0);
    if (r < 0)
        return mv_error_wrap(err, "push %s", rq->ref);
    return 0;
}

int push_run(const push_request *rq, push_result *res, mv_error *err)
{
    memset(res, 0, sizeof(*res));
    int r = push_request_check(rq, err);
    if (r < 0)
        return r;
    _cleanup_ref_ oci_ref *ref = NULL;
    r = oci_ref_parse(rq->ref, &ref, err);
    if (r < 0)
        return r;
    if (ref->digest)
        return mv_error_set(err, -EINVAL, "reference %s: a push target names a tag, not a digest",
                            rq->ref);
    const char *from = NULL;
    if (rq->from && (r = from_repo(rq->from, ref, &from, err)) < 0)
        return r;
    /* REF's own tag first: it is the one the result names. */
    _cleanup_free_ const char **tags = NULL;
    size_t n_tags = 0;
    add_tag(&tags, &n_tags, ref->tag ? ref->tag : "latest");
    for (size_t i = 0; i < rq->n_tags; i++)
        add_tag(&tags, &n_tags, rq->tags[i]);

    push_pack_opts po = {.spec = rq->pack, .jobs = rq->jobs};
    if (!rq->pack.created_set && (r = default_created(&po.spec.created, err)) < 0)
        return r;
    const char *base = strrchr(ref->repository, '/');
    if (!po.spec.name && po.spec.format != PUSH_FORMAT_ORAS)
        po.spec.name = base ? base + 1 : ref->repository;

    /* Resume records and the hash cache live in the state directory. */
    bool resume = !rq->no_resume && !rq->dry_run;
    _cleanup_free_ char *state_dir = NULL;
    r = state_dir_for(rq, resume, &state_dir, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *hash_cache =
        state_dir && !rq->no_hash_cache ? mv_xasprintf("%s/hashes", state_dir) : NULL;
    po.hash_cache = hash_cache;

    _cleanup_(push_pack_freep) push_pack *p = NULL;
    r = push_pack_dir(rq->dir, &po, &p, err);
    if (r < 0)
        return r;
    if (!rq->dry_run) {
        r = upload(rq, ref, p, from, resume ? state_dir : NULL, tags, err);
        if (r < 0)
            return r;
    }
    res->ref = oci_ref_string(ref);
    snprintf(res->manifest_digest, sizeof(res->manifest_digest), "%s", p->manifest_digest);
    res->manifest_json = MV_STEAL(p->manifest_json);
    res->manifest_len = p->manifest_len;
    return 0;
}
