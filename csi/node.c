/* node.c — the CSI Node service: NodeGetInfo, NodeGetCapabilities,
 * NodeGetVolumeStats, and publishing a model as a read-only volume
 * (NodePublishVolume: validate, join the shared pull, pin, record, bind
 * mount) and taking it away again (NodeUnpublishVolume). Every refusal is
 * one sentence a user can act on from `kubectl describe pod`. */
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "csi.h"

#define CTX_REFERENCE "reference"
#define CTX_POLICY    "pullPolicy"
#define CTX_INCLUDE   "include"
#define CTX_EXCLUDE   "exclude"
#define CTX_KINDS     "kinds"
#define CTX_PATH      "path"
#define CTX_EPHEMERAL "csi.storage.k8s.io/ephemeral"
/* Choosing in an index. */
#define CTX_ARTIFACT_TYPE "artifactType"
#define CTX_PLATFORM      "platform"
#define CTX_ANNOTATION    "annotation"

csi_code csi_node_get_info(csi_call *call, const ProtobufCMessage *req, csi_reply *reply,
                           csi_status *st)
{
    (void)req;
    (void)st;
    Csi__V1__NodeGetInfoResponse resp = CSI__V1__NODE_GET_INFO_RESPONSE__INIT;
    resp.node_id = (char *)call->plugin->node_id;
    csi_reply_pack(reply, &resp.base);
    return CSI_OK;
}

csi_code csi_node_get_capabilities(csi_call *call, const ProtobufCMessage *req, csi_reply *reply,
                                   csi_status *st)
{
    (void)call;
    (void)req;
    (void)st;
    Csi__V1__NodeServiceCapability__RPC rpc = CSI__V1__NODE_SERVICE_CAPABILITY__RPC__INIT;
    rpc.type = CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__GET_VOLUME_STATS;
    Csi__V1__NodeServiceCapability cap = CSI__V1__NODE_SERVICE_CAPABILITY__INIT;
    cap.type_case = CSI__V1__NODE_SERVICE_CAPABILITY__TYPE_RPC;
    cap.rpc = &rpc;
    Csi__V1__NodeServiceCapability *caps[] = {&cap};
    Csi__V1__NodeGetCapabilitiesResponse resp = CSI__V1__NODE_GET_CAPABILITIES_RESPONSE__INIT;
    resp.n_capabilities = 1;
    resp.capabilities = caps;
    csi_reply_pack(reply, &resp.base);
    return CSI_OK;
}

pthread_mutex_t *csi_target_lock(csi_plugin *p, const char *target)
{
    /* FNV-1a: paths differ mostly in their pod UID, anywhere in the string. */
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *c = (const unsigned char *)target; *c; c++)
        h = (h ^ *c) * 1099511628211ull;
    return &p->target_locks[h % CSI_TARGET_LOCKS];
}

/* ---- argument checks ------------------------------------------------------ */

static csi_code check_volume_id(const char *id, csi_status *st)
{
    if (!id || !*id)
        return csi_status_set(st, CSI_INVALID_ARGUMENT, "volume_id is missing");
    if (strlen(id) > 4096)
        return csi_status_set(st, CSI_INVALID_ARGUMENT, "volume_id is longer than 4096 bytes");
    return CSI_OK;
}

/* The kubelet hands absolute, clean paths; anything else is refused rather
 * than mounted somewhere unexpected. */
static csi_code check_path(const char *what, const char *path, csi_status *st)
{
    if (!path || !*path)
        return csi_status_set(st, CSI_INVALID_ARGUMENT, "%s is missing", what);
    if (path[0] != '/')
        return csi_status_set(st, CSI_INVALID_ARGUMENT, "%s \"%.256s\" is not an absolute path",
                              what, path);
    if (strlen(path) >= PATH_MAX)
        return csi_status_set(st, CSI_INVALID_ARGUMENT, "%s is longer than %d bytes", what,
                              PATH_MAX - 1);
    if (strcmp(path, "/") == 0)
        return csi_status_set(st, CSI_INVALID_ARGUMENT, "%s must not be /", what);
    for (const char *p = path; *p; p++) {
        if (*p == '\n')
            return csi_status_set(st, CSI_INVALID_ARGUMENT, "%s contains a newline", what);
        if (*p != '/')
            continue;
        if (p[1] == '/')
            return csi_status_set(st, CSI_INVALID_ARGUMENT, "%s \"%.256s\" contains //", what,
                                  path);
        if (p[1] == '.' && (p[2] == '/' || p[2] == '\0' || (p[2] == '.' && (p[3] == '/' || !p[3]))))
            return csi_status_set(st, CSI_INVALID_ARGUMENT,
                                  "%s \"%.256s\" contains . or .. components", what, path);
    }
    if (path[strlen(path) - 1] == '/')
        return csi_status_set(st, CSI_INVALID_ARGUMENT, "%s \"%.256s\" ends with /", what, path);
    return CSI_OK;
}

static const char *mode_name(int mode)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
        &csi__v1__volume_capability__access_mode__mode__descriptor, mode);
    return v ? v->name : "UNKNOWN";
}

static csi_code check_capability(const Csi__V1__VolumeCapability *cap, bool readonly,
                                 csi_status *st)
{
    if (!cap)
        return csi_status_set(st, CSI_INVALID_ARGUMENT, "volume_capability is missing");
    if (cap->access_type_case == CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK)
        return csi_status_set(st, CSI_INVALID_ARGUMENT,
                              "block volumes are not supported: %s serves models as read-only "
                              "filesystems (use volumeMode: Filesystem)",
                              CSI_PLUGIN_NAME);
    if (!cap->access_mode)
        return csi_status_set(st, CSI_INVALID_ARGUMENT, "volume_capability.access_mode is missing");
    int mode = cap->access_mode->mode;
    bool ro_mode = mode == CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_READER_ONLY ||
                   mode == CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_READER_ONLY;
    if (!ro_mode && !readonly)
        return csi_status_set(st, CSI_INVALID_ARGUMENT,
                              "access mode %s would allow writes: models are read-only; set "
                              "readOnly: true on the volume or use ReadOnlyMany",
                              mode_name(mode));
    return CSI_OK;
}

/* ---- publish ---------------------------------------------------------------- */

/* Everything a publish was asked for, parsed and checked. The strings are
 * kept as given for the target's record; rq is what the pull gets. */
typedef struct publish_args {
    const char *volume_id;
    const char *target;
    const char *reference;
    const char *policy_name;
    const char *include;
    const char *exclude;
    char *subpath;     /* normalised, "" for the whole model */
    cache_request *rq; /* with the pod's secret, if any; handed to the job */
    char creds_id[OCI_DIGEST_MAX];
} publish_args;

static void publish_args_clear(publish_args *a)
{
    free(a->subpath);
    cache_request_free(a->rq);
    memset(a, 0, sizeof(*a));
}

static const char *ctx_get(Csi__V1__NodePublishVolumeRequest__VolumeContextEntry **v, size_t n,
                           const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (v[i]->key && strcmp(v[i]->key, key) == 0)
            return v[i]->value ? v[i]->value : "";
    return NULL;
}

static csi_code parse_publish(const Csi__V1__NodePublishVolumeRequest *req, publish_args *a,
                              csi_status *st)
{
    csi_code c;
    if ((c = check_volume_id(req->volume_id, st)) != CSI_OK)
        return c;
    if ((c = check_path("target_path", req->target_path, st)) != CSI_OK)
        return c;
    if ((c = check_capability(req->volume_capability, req->readonly, st)) != CSI_OK)
        return c;
    a->volume_id = req->volume_id;
    a->target = req->target_path;

    Csi__V1__NodePublishVolumeRequest__VolumeContextEntry **ctx = req->volume_context;
    size_t n = req->n_volume_context;
    const char *ref = ctx_get(ctx, n, CTX_REFERENCE);
    if (ref && !*ref)
        return csi_status_set(st, CSI_INVALID_ARGUMENT,
                              "volumeAttributes.reference is empty: name the model, e.g. "
                              "registry.example.com/models/llama:v1");
    if (!ref) {
        const char *eph = ctx_get(ctx, n, CTX_EPHEMERAL);
        if (eph && strcmp(eph, "true") == 0)
            return csi_status_set(st, CSI_INVALID_ARGUMENT,
                                  "volumeAttributes.reference is missing: an inline volume must "
                                  "name the model, e.g. registry.example.com/models/llama:v1");
        /* A pre-provisioned PV: its volumeHandle is the reference. */
        ref = req->volume_id;
    }
    mv_error err = MV_ERROR_INIT;
    cache_request_args args = {
        .reference = ref,
        .reference_what = ref == req->volume_id ? "volume_id is not a model reference" : NULL,
        .subpath_what = "volumeAttributes.path",
    };
    a->policy_name = ctx_get(ctx, n, CTX_POLICY);
    if (!a->policy_name || !*a->policy_name)
        a->policy_name = "IfNotPresent";
    if (cache_pull_policy_parse(a->policy_name, &args.policy, &err) < 0)
        return csi_status_set(st, CSI_INVALID_ARGUMENT,
                              "volumeAttributes.pullPolicy \"%.64s\" is not IfNotPresent, Always "
                              "or Never",
                              a->policy_name);
    a->include = ctx_get(ctx, n, CTX_INCLUDE);
    a->exclude = ctx_get(ctx, n, CTX_EXCLUDE);
    if (!a->include)
        a->include = "";
    if (!a->exclude)
        a->exclude = "";
    args.include_csv = a->include;
    args.exclude_csv = a->exclude;
    args.kinds_csv = ctx_get(ctx, n, CTX_KINDS);
    args.kinds_what = "volumeAttributes.kinds";
    const char *path = ctx_get(ctx, n, CTX_PATH);
    if (path && *path && strcmp(path, "/") != 0 && strcmp(path, ".") != 0) {
        while (*path == '/')
            path++; /* "/weights" means the model's weights directory */
        if (!*path) /* "//": not the root spelled as "/" */
            return csi_status_set(st, CSI_INVALID_ARGUMENT, "volumeAttributes.path: empty path");
        args.subpath = path;
    }
    args.artifact_type = ctx_get(ctx, n, CTX_ARTIFACT_TYPE);
    args.platform = ctx_get(ctx, n, CTX_PLATFORM);
    args.annotation = ctx_get(ctx, n, CTX_ANNOTATION);
    args.select_what = "volumeAttributes";
    if (cache_request_parse(&args, &a->rq, &err) < 0)
        return csi_fail(st, &err, CSI_FAIL_REQUEST, NULL);
    a->reference = ref;
    a->subpath = mv_xstrdup(a->rq->subpath ? a->rq->subpath : "");

    for (size_t i = 0; i < req->n_secrets; i++) {
        const Csi__V1__NodePublishVolumeRequest__SecretsEntry *s = req->secrets[i];
        if (!s->key || strcmp(s->key, CSI_SECRET_DOCKERCONFIGJSON) != 0)
            continue;
        const char *v = s->value ? s->value : "";
        /* A map key sent twice: the last one wins, as in protobuf maps. */
        cache_creds_free(a->rq->creds);
        a->rq->creds = NULL;
        if (cache_creds_parse(v, strlen(v), &a->rq->creds, &err) < 0)
            return csi_fail(st, &err, CSI_FAIL_REQUEST,
                            "nodePublishSecretRef: key %s is not a docker config",
                            CSI_SECRET_DOCKERCONFIGJSON);
        /* Only a digest of the secret is kept, to tell pulls apart. */
        oci_digest_buf(OCI_DIGEST_SHA256, v, strlen(v), a->creds_id);
    }
    return CSI_OK;
}

/* Same volume, same model, same filters: a repeat of an earlier publish. */
static bool record_matches(const csi_record *r, const publish_args *a)
{
    return strcmp(r->volume_id, a->volume_id) == 0 && strcmp(r->reference, a->reference) == 0 &&
           strcmp(r->policy, a->policy_name) == 0 && strcmp(r->include, a->include) == 0 &&
           strcmp(r->exclude, a->exclude) == 0 && strcmp(r->subpath, a->subpath) == 0;
}

static csi_code already_exists(const csi_record *r, const publish_args *a, csi_status *st)
{
    if (strcmp(r->reference, a->reference) != 0)
        return csi_status_set(st, CSI_ALREADY_EXISTS,
                              "target %s already holds %s (volume %s), not %s", a->target,
                              r->reference, r->volume_id, a->reference);
    return csi_status_set(st, CSI_ALREADY_EXISTS,
                          "target %s already holds %s published with other arguments (volume %s, "
                          "pullPolicy %s, include \"%s\", exclude \"%s\", path \"%s\")",
                          a->target, r->reference, r->volume_id, r->policy, r->include, r->exclude,
                          r->subpath);
}

/* Under the target's lock: the target already has a record. Mounted and matching is
 * an idempotent repeat; a record whose mount vanished is mounted again. */
static csi_code publish_existing(const csi_record *r, const publish_args *a, csi_status *st)
{
    if (!record_matches(r, a))
        return already_exists(r, a, st);
    mv_error err = MV_ERROR_INIT;
    bool mounted = false;
    if (csi_is_mounted(a->target, &mounted, &err) < 0)
        return csi_fail(st, &err, CSI_FAIL_NODE, NULL);
    if (mounted || csi_dry_run())
        return CSI_OK;
    if (csi_mount_ro_bind(r->tree_path, a->target, &err) < 0)
        return csi_fail(st, &err, CSI_FAIL_NODE, "publish %s", a->reference);
    return CSI_OK;
}

/* Under the target's lock: pin, record, mount; undone in reverse on failure. */
static csi_code publish_new(csi_plugin *p, const publish_args *a, const cache_pull_result *res,
                            csi_status *st)
{
    mv_error err = MV_ERROR_INIT;
    _cleanup_free_ char *owner = mv_xasprintf(CSI_PIN_PREFIX "%s", a->target);
    if (cache_pin_volatile(p->cache, res->tree_id, owner, &err) < 0) {
        /* -ENOENT: GC took the tree between pull and pin; a retry pulls it
         * again. */
        if (err.code == -ENOENT)
            err.code = -ECANCELED; /* answers ABORTED */
        return csi_fail(st, &err, CSI_FAIL_MAPPED, "publish %s", a->reference);
    }
    csi_record rec = {
        .target = (char *)a->target,
        .volume_id = (char *)a->volume_id,
        .reference = (char *)a->reference,
        .policy = (char *)a->policy_name,
        .include = (char *)a->include,
        .exclude = (char *)a->exclude,
        .subpath = a->subpath,
        .tree_id = (char *)res->tree_id,
        .tree_path = res->tree_path,
    };
    /* Record before mount: a crash in between leaves a record the restart
     * reconciles away, never a mount nobody knows about. */
    if (p->state_dir && csi_state_save(p->state_dir, &rec, &err) < 0) {
        mv_error e2 = MV_ERROR_INIT;
        cache_unpin_volatile(p->cache, res->tree_id, owner, &e2);
        return csi_fail(st, &err, CSI_FAIL_MAPPED, "publish %s", a->reference);
    }
    if (csi_mount_ro_bind(res->tree_path, a->target, &err) < 0) {
        mv_error e2 = MV_ERROR_INIT;
        if (p->state_dir)
            csi_state_remove(p->state_dir, a->target, &e2);
        cache_unpin_volatile(p->cache, res->tree_id, owner, &e2);
        return csi_fail(st, &err, CSI_FAIL_NODE, "publish %s", a->reference);
    }
    return CSI_OK;
}

static int64_t publish_deadline(const csi_call *call)
{
    int64_t budget = csi_now_ns() + (int64_t)call->plugin->publish_timeout * 1000000000;
    /* Answer a little before the caller gives up, so it reads our reason. */
    if (call->deadline_ns > 0 && call->deadline_ns - 200000000 < budget)
        return call->deadline_ns - 200000000;
    return budget;
}

/* Milliseconds since t0 (csi_now_ns), for the log. */
static void ms_since(int64_t t0, char out[32])
{
    snprintf(out, 32, "%.3f", (double)(csi_now_ns() - t0) / 1e6);
}

static csi_code do_publish(csi_call *call, publish_args *a, csi_status *st)
{
    if (!a->reference) /* parse_publish sets it whenever it returns CSI_OK */
        return csi_status_set(st, CSI_INTERNAL, "publish %s: no model reference", a->target);
    csi_plugin *p = call->plugin;
    mv_error err = MV_ERROR_INIT;
    int64_t t0 = csi_now_ns();
    pthread_mutex_t *lock = csi_target_lock(p, a->target);

    pthread_mutex_lock(lock);
    _cleanup_record_ csi_record *rec = NULL;
    int r = p->state_dir ? csi_state_load(p->state_dir, a->target, &rec, &err) : -ENOENT;
    if (r == 0) {
        csi_code c = publish_existing(rec, a, st);
        pthread_mutex_unlock(lock);
        return c;
    }
    pthread_mutex_unlock(lock);
    if (r != -ENOENT)
        return csi_fail(st, &err, CSI_FAIL_NODE, NULL);

    csi_job *job = NULL;
    bool joined = false;
    /* The job owns the request, and with it the secret, from here on. */
    if (csi_job_get(p, &a->rq, a->creds_id, &job, &joined, &err) < 0)
        return csi_fail(st, &err, CSI_FAIL_MAPPED, "pull %s", a->reference);
    if (joined)
        mv_log("info", "pull_joined", "reference", a->reference, "target", a->target);

    if (!csi_job_wait(job, publish_deadline(call))) {
        unsigned done = 0, started = 0;
        csi_job_progress(job, &done, &started);
        csi_job_release(job);
        char progress[64] = "";
        if (started)
            snprintf(progress, sizeof(progress), " (%u of %u downloads finished)", done, started);
        return csi_status_set(st, CSI_DEADLINE_EXCEEDED,
                              "pulling %s is still in progress%s; it continues in the background "
                              "and the next retry picks it up",
                              a->reference, progress);
    }
    const cache_pull_result *res = NULL;
    const mv_error *perr = NULL;
    r = csi_job_result(job, &res, &perr);
    if (r < 0) {
        mv_error e = *perr;
        if (!e.code)
            e.code = r;
        /* The cache's message already reads "pull <reference>: ...". */
        csi_code c = csi_fail(st, &e, CSI_FAIL_MAPPED, NULL);
        csi_job_release(job);
        return c;
    }

    pthread_mutex_lock(lock);
    csi_code c;
    csi_record_free(MV_STEAL(rec));
    /* Another call may have published this target while we waited. */
    r = p->state_dir ? csi_state_load(p->state_dir, a->target, &rec, &err) : -ENOENT;
    if (r == 0)
        c = publish_existing(rec, a, st);
    else if (r != -ENOENT)
        c = csi_fail(st, &err, CSI_FAIL_NODE, NULL);
    else
        c = publish_new(p, a, res, st);
    pthread_mutex_unlock(lock);
    if (c == CSI_OK) {
        char ms[32];
        ms_since(t0, ms);
        mv_log("info", "published", "target", a->target, "reference", a->reference, "tree",
               res->tree_id, "volume_id", a->volume_id, "ms", ms);
    }
    csi_job_release(job);
    return c;
}

csi_code csi_node_publish(csi_call *call, const ProtobufCMessage *msg, csi_reply *reply,
                          csi_status *st)
{
    const Csi__V1__NodePublishVolumeRequest *req = (const void *)msg;
    publish_args a = {0};
    csi_code c = parse_publish(req, &a, st);
    if (c == CSI_OK && !atomic_load(&call->plugin->ready))
        c = csi_status_set(st, CSI_UNAVAILABLE,
                           "%s is still recovering its cache; the kubelet will retry",
                           CSI_PLUGIN_NAME);
    if (c == CSI_OK)
        c = do_publish(call, &a, st);
    if (c == CSI_OK) {
        Csi__V1__NodePublishVolumeResponse resp = CSI__V1__NODE_PUBLISH_VOLUME_RESPONSE__INIT;
        csi_reply_pack(reply, &resp.base);
    } else {
        mv_log(c == CSI_INTERNAL ? "error" : "warn", "publish_failed", "target", req->target_path,
               "volume_id", req->volume_id, "code", csi_code_name(c), "error", st->msg);
        st->logged = true;
    }
    csi_metrics_publish(call->plugin->metrics, c);
    publish_args_clear(&a);
    return c;
}

/* ---- unpublish -------------------------------------------------------------- */

/* The part of an unpublish that holds the target's lock. *rec is the
 * target's record, or NULL when it was never published here. */
static csi_code unpublish_locked(csi_plugin *p, const char *target, csi_record **rec,
                                 csi_status *st)
{
    mv_error err = MV_ERROR_INIT;
    int r = p->state_dir ? csi_state_load(p->state_dir, target, rec, &err) : -ENOENT;
    if (r < 0 && r != -ENOENT)
        return csi_fail(st, &err, CSI_FAIL_NODE, "unpublish %s", target);
    if (csi_unmount(target, &err) < 0)
        return csi_fail(st, &err, CSI_FAIL_NODE, "unpublish %s", target);
    if (!csi_dry_run() && rmdir(target) < 0 && errno != ENOENT) {
        int e = errno;
        if (*rec || e != ENOTEMPTY) {
            mv_error_errno(&err, -e, "unpublish: remove %s", target);
            return csi_fail(st, &err, CSI_FAIL_NODE, NULL);
        }
        /* Not ours and not empty: leave it alone. */
        mv_log("warn", "unpublish_left_directory", "target", target, "reason",
               "not empty and never published here");
    }
    if (!*rec)
        return CSI_OK;
    _cleanup_free_ char *owner = mv_xasprintf(CSI_PIN_PREFIX "%s", target);
    if (cache_unpin_volatile(p->cache, (*rec)->tree_id, owner, &err) < 0 && err.code != -ENOENT)
        return csi_fail(st, &err, CSI_FAIL_NODE, "unpublish %s", target);
    if (csi_state_remove(p->state_dir, target, &err) < 0)
        return csi_fail(st, &err, CSI_FAIL_NODE, "unpublish %s", target);
    return CSI_OK;
}

csi_code csi_node_unpublish(csi_call *call, const ProtobufCMessage *msg, csi_reply *reply,
                            csi_status *st)
{
    const Csi__V1__NodeUnpublishVolumeRequest *req = (const void *)msg;
    csi_plugin *p = call->plugin;
    csi_code c;
    if ((c = check_volume_id(req->volume_id, st)) != CSI_OK)
        return c;
    if ((c = check_path("target_path", req->target_path, st)) != CSI_OK)
        return c;
    if (!atomic_load(&p->ready))
        return csi_status_set(st, CSI_UNAVAILABLE,
                              "%s is still recovering its cache; the kubelet will retry",
                              CSI_PLUGIN_NAME);
    const char *target = req->target_path;
    pthread_mutex_t *lock = csi_target_lock(p, target);
    _cleanup_record_ csi_record *rec = NULL;
    pthread_mutex_lock(lock);
    c = unpublish_locked(p, target, &rec, st);
    pthread_mutex_unlock(lock);
    if (c != CSI_OK)
        return c;
    mv_log("info", "unpublished", "target", target, "volume_id", req->volume_id, "reference",
           rec ? rec->reference : NULL, "known", rec ? "true" : "false");
    Csi__V1__NodeUnpublishVolumeResponse resp = CSI__V1__NODE_UNPUBLISH_VOLUME_RESPONSE__INIT;
    csi_reply_pack(reply, &resp.base);
    return CSI_OK;
}

/* ---- stats ------------------------------------------------------------------ */

csi_code csi_node_get_volume_stats(csi_call *call, const ProtobufCMessage *msg, csi_reply *reply,
                                   csi_status *st)
{
    const Csi__V1__NodeGetVolumeStatsRequest *req = (const void *)msg;
    csi_plugin *p = call->plugin;
    csi_code c;
    if ((c = check_volume_id(req->volume_id, st)) != CSI_OK)
        return c;
    if ((c = check_path("volume_path", req->volume_path, st)) != CSI_OK)
        return c;
    /* The usage comes from the cache, which recovery opens. */
    if (!atomic_load(&p->ready))
        return csi_status_set(st, CSI_UNAVAILABLE,
                              "%s is still recovering its cache; the kubelet will retry",
                              CSI_PLUGIN_NAME);
    mv_error err = MV_ERROR_INIT;
    _cleanup_record_ csi_record *rec = NULL;
    pthread_mutex_t *lock = csi_target_lock(p, req->volume_path);
    pthread_mutex_lock(lock);
    int r = p->state_dir ? csi_state_load(p->state_dir, req->volume_path, &rec, &err) : -ENOENT;
    pthread_mutex_unlock(lock);
    if (r == -ENOENT || (r == 0 && strcmp(rec->volume_id, req->volume_id) != 0))
        return csi_status_set(st, CSI_NOT_FOUND, "volume %s is not published at %s", req->volume_id,
                              req->volume_path);
    if (r < 0)
        return csi_fail(st, &err, CSI_FAIL_NODE, NULL);

    /* The tree is immutable and is what the target shows: the cache
     * recorded its usage when it built it. */
    uint64_t bytes = 0, inodes = 0;
    if (cache_tree_usage(p->cache, rec->tree_id, &bytes, &inodes, &err) < 0)
        return csi_fail(st, &err, CSI_FAIL_NODE, "volume stats for %s", req->volume_path);
    Csi__V1__VolumeUsage ub = CSI__V1__VOLUME_USAGE__INIT;
    ub.unit = CSI__V1__VOLUME_USAGE__UNIT__BYTES;
    ub.total = ub.used = (int64_t)bytes;
    Csi__V1__VolumeUsage ui = CSI__V1__VOLUME_USAGE__INIT;
    ui.unit = CSI__V1__VOLUME_USAGE__UNIT__INODES;
    ui.total = ui.used = (int64_t)inodes;
    Csi__V1__VolumeUsage *usage[] = {&ub, &ui};
    Csi__V1__NodeGetVolumeStatsResponse resp = CSI__V1__NODE_GET_VOLUME_STATS_RESPONSE__INIT;
    resp.n_usage = 2;
    resp.usage = usage;
    csi_reply_pack(reply, &resp.base);
    return CSI_OK;
}
