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
/* Keys the kubelet adds (pod.name, ephemeral, serviceAccount.tokens, ...):
 * never ours to refuse. */
#define CTX_K8S_PREFIX "csi.storage.k8s.io/"
#define CTX_EPHEMERAL  CTX_K8S_PREFIX "ephemeral"
/* Choosing in an index. */
#define CTX_ARTIFACT_TYPE "artifactType"
#define CTX_PLATFORM      "platform"
#define CTX_ANNOTATION    "annotation"

/* The volume attributes a publish reads, in the order docs/usage.md lists
 * them: the one list that both checks a volume_context and names the known
 * keys when it refuses one. */
static const char *const known_attrs[] = {
    CTX_REFERENCE, CTX_POLICY,        CTX_INCLUDE,  CTX_EXCLUDE,    CTX_KINDS,
    CTX_PATH,      CTX_ARTIFACT_TYPE, CTX_PLATFORM, CTX_ANNOTATION,
};
#define N_KNOWN_ATTRS (sizeof(known_attrs) / sizeof(known_attrs[0]))

/* Until recovery has run the handlers that need the cache answer
 * UNAVAILABLE; the message says whether it is still running or failed. */
static csi_code not_ready(const csi_plugin *p, csi_status *st)
{
    if (atomic_load(&p->failed))
        return csi_status_set(st, CSI_UNAVAILABLE,
                              "%s cannot serve volumes: cache recovery failed (%s); fix the cause "
                              "and restart the plugin",
                              CSI_PLUGIN_NAME, p->failure);
    return csi_status_set(st, CSI_UNAVAILABLE,
                          "%s is still recovering its cache; the kubelet will retry",
                          CSI_PLUGIN_NAME);
}

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
    /* The spec makes one of block and mount REQUIRED. */
    if (cap->access_type_case != CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK &&
        cap->access_type_case != CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT)
        return csi_status_set(st, CSI_INVALID_ARGUMENT,
                              "volume_capability.access_type is missing: it must be mount "
                              "(volumeMode: Filesystem)");
    if (cap->access_type_case == CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK)
        return csi_status_set(st, CSI_INVALID_ARGUMENT,
                              "block volumes are not supported: %s serves models as read-only "
                              "filesystems (use volumeMode: Filesystem)",
                              CSI_PLUGIN_NAME);
    if (!cap->access_mode)
        return csi_status_set(st, CSI_INVALID_ARGUMENT, "volume_capability.access_mode is missing");
    int mode = cap->access_mode->mode;
    if (mode == CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__UNKNOWN ||
        !protobuf_c_enum_descriptor_get_value(
            &csi__v1__volume_capability__access_mode__mode__descriptor, mode))
        return csi_status_set(st, CSI_INVALID_ARGUMENT,
                              "volume_capability.access_mode.mode %d is not a known access mode",
                              mode);
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
    const char *kinds;
    const char *artifact_type; /* the index selector */
    const char *platform;
    const char *annotation;
    char *subpath;        /* normalised, "" for the whole model */
    cache_request *rq;    /* with the pod's secret, if any; handed to the job */
    cache_request *probe; /* rq's model with policy Never and no secret: sizes it (jobs.c) */
    char creds_id[OCI_DIGEST_MAX];
    char pulled[MV_ERROR_MSG_MAX]; /* the Pulled event's message (events.c) */
} publish_args;

static void publish_args_clear(publish_args *a)
{
    free(a->subpath);
    cache_request_free(a->rq);
    cache_request_free(a->probe);
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

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

/* A key outside csi.storage.k8s.io/ that is not in known_attrs would be
 * dropped silently ("pullpolicy: Always", "includes: *.json"): refused, with
 * the key named, the known keys listed and, for a case slip, the one meant. */
static csi_code check_attr_keys(Csi__V1__NodePublishVolumeRequest__VolumeContextEntry **v, size_t n,
                                csi_status *st)
{
    for (size_t i = 0; i < n; i++) {
        const char *key = v[i]->key ? v[i]->key : "";
        if (strncmp(key, CTX_K8S_PREFIX, strlen(CTX_K8S_PREFIX)) == 0)
            continue;
        const char *meant = NULL;
        bool known = false;
        for (size_t k = 0; k < N_KNOWN_ATTRS && !known; k++) {
            known = strcmp(key, known_attrs[k]) == 0;
            if (!meant && strcasecmp(key, known_attrs[k]) == 0)
                meant = known_attrs[k];
        }
        if (known)
            continue;
        char list[256] = "";
        for (size_t k = 0; k < N_KNOWN_ATTRS; k++) {
            size_t len = strlen(list);
            snprintf(list + len, sizeof(list) - len, "%s%s", k ? ", " : "", known_attrs[k]);
        }
        char hint[64] = "";
        if (meant)
            snprintf(hint, sizeof(hint), " (did you mean %s?)", meant);
        return csi_status_set(st, CSI_INVALID_ARGUMENT,
                              "volumeAttributes: unknown key \"%s\"%s; known keys: %s, and any "
                              "key under " CTX_K8S_PREFIX,
                              MV_QUOTED(key), hint, list);
    }
    return CSI_OK;
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
    if ((c = check_attr_keys(ctx, n, st)) != CSI_OK)
        return c;
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
    a->kinds = or_empty(ctx_get(ctx, n, CTX_KINDS));
    args.kinds_csv = a->kinds;
    args.kinds_what = "volumeAttributes.kinds";
    const char *path = ctx_get(ctx, n, CTX_PATH);
    if (path && *path && strcmp(path, "/") != 0 && strcmp(path, ".") != 0) {
        while (*path == '/')
            path++; /* "/weights" means the model's weights directory */
        if (!*path) /* "//": not the root spelled as "/" */
            return csi_status_set(st, CSI_INVALID_ARGUMENT, "volumeAttributes.path: empty path");
        args.subpath = path;
    }
    a->artifact_type = or_empty(ctx_get(ctx, n, CTX_ARTIFACT_TYPE));
    a->platform = or_empty(ctx_get(ctx, n, CTX_PLATFORM));
    a->annotation = or_empty(ctx_get(ctx, n, CTX_ANNOTATION));
    args.artifact_type = a->artifact_type;
    args.platform = a->platform;
    args.annotation = a->annotation;
    args.select_what = "volumeAttributes";
    if (cache_request_parse(&args, &a->rq, &err) < 0)
        return csi_fail(st, &err, CSI_FAIL_REQUEST, NULL);
    a->reference = ref;
    a->subpath = mv_xstrdup(a->rq->subpath ? a->rq->subpath : "");
    /* Never: the store alone, which holds the manifest by the time the
     * pull's first blob starts. Parsed as rq was, so it cannot fail. */
    args.policy = CACHE_PULL_NEVER;
    if (cache_request_parse(&args, &a->probe, &err) < 0)
        mv_error_clear(&err);

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

/* What a republish to a recorded target is compared on: every volume
 * attribute that changes what the target shows. The capability and the
 * readonly flag are not: every capability a publish accepts gets the same
 * read-only mount, which is compatible with each of them, and for a
 * compatible republish the spec says OK. A field an older plugin did not
 * record (NULL) is not compared: its record cannot say.
 *
 * Under the target's lock: the target already has a record. The same
 * model with the same attributes is a repeat; anything else is
 * ALREADY_EXISTS, naming the first attribute that differs. */
static csi_code check_repeat(const csi_record *r, const publish_args *a, csi_status *st)
{
    if (strcmp(r->reference, a->reference) != 0)
        return csi_status_set(st, CSI_ALREADY_EXISTS,
                              "target %s already holds %s (volume %s), not %s", a->target,
                              r->reference, r->volume_id, a->reference);
    const struct {
        const char *name; /* as the user spells it */
        const char *recorded, *asked;
    } f[] = {
        {"volume_id", r->volume_id, a->volume_id},
        {CTX_POLICY, r->policy, a->policy_name},
        {CTX_INCLUDE, r->include, a->include},
        {CTX_EXCLUDE, r->exclude, a->exclude},
        {CTX_KINDS, r->kinds, a->kinds},
        {CTX_PATH, r->subpath, a->subpath},
        {CTX_ARTIFACT_TYPE, r->artifact_type, a->artifact_type},
        {CTX_PLATFORM, r->platform, a->platform},
        {CTX_ANNOTATION, r->annotation, a->annotation},
    };
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        if (!f[i].recorded || strcmp(f[i].recorded, f[i].asked) == 0)
            continue;
        return csi_status_set(st, CSI_ALREADY_EXISTS,
                              "target %s already holds %s published with %s \"%s\", not \"%s\"; "
                              "unpublish it first",
                              a->target, r->reference, f[i].name, MV_QUOTED(f[i].recorded),
                              MV_QUOTED(f[i].asked));
    }
    return CSI_OK;
}

/* Under the target's lock: the target already has a record. Mounted and matching is
 * an idempotent repeat; a record whose mount vanished is mounted again. */
static csi_code publish_existing(const csi_record *r, const publish_args *a, csi_status *st)
{
    csi_code c = check_repeat(r, a, st);
    if (c != CSI_OK)
        return c;
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
        .kinds = (char *)a->kinds,
        .subpath = a->subpath,
        .artifact_type = (char *)a->artifact_type,
        .platform = (char *)a->platform,
        .annotation = (char *)a->annotation,
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

#define GB(b) ((double)(b) / 1e9)

/* Waits for the pull like csi_job_wait, posting the pod's Pulling events
 * meanwhile: one when the pull turns out to download, then its progress at
 * most every CSI_PULLING_EVENT_INTERVAL_NS. Each waiting pod gets its own,
 * from the job's own byte counts. True when the pull ended. */
static bool wait_reporting(csi_plugin *p, csi_job *job, const csi_pod *pod, const char *ref,
                           int64_t deadline)
{
    if (!p->events || !pod->ns || !pod->name || !*pod->ns || !*pod->name)
        return csi_job_wait(job, deadline, false);
    _cleanup_free_ char *key = mv_xasprintf("%s/%s", pod->ns, pod->name);
    for (;;) {
        uint64_t done = 0, total = 0;
        bool pulling = csi_job_bytes(job, &done, &total);
        int64_t wake = deadline;
        if (pulling) {
            bool first = false;
            int64_t next = 0;
            if (csi_job_event_due(job, key, csi_now_ns(), &first, &next)) {
                if (first)
                    csi_events_post(p, pod, false, "Pulling", "Pulling model %s (%.1f GB)", ref,
                                    GB(total));
                else
                    csi_events_post(p, pod, false, "Pulling",
                                    "Pulling model %s: %.1f of %.1f GB (%.0f%%)", ref, GB(done),
                                    GB(total), total ? 100.0 * (double)done / (double)total : 0.0);
            }
            if (next < wake)
                wake = next;
        }
        bool ended = csi_job_wait(job, wake, !pulling);
        if (ended) {
            /* A pull quicker than this thread still announces itself first. */
            bool first = false;
            int64_t next = 0;
            if (csi_job_bytes(job, &done, &total) &&
                csi_job_event_due(job, key, csi_now_ns(), &first, &next) && first)
                csi_events_post(p, pod, false, "Pulling", "Pulling model %s (%.1f GB)", ref,
                                GB(total));
            return true;
        }
        if (csi_now_ns() >= deadline)
            return false;
    }
}

static csi_code do_publish(csi_call *call, publish_args *a, const csi_pod *pod, csi_status *st)
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
    if (csi_job_get(p, &a->rq, &a->probe, a->creds_id, &job, &joined, &err) < 0)
        return csi_fail(st, &err, CSI_FAIL_MAPPED, "pull %s", a->reference);
    if (joined)
        mv_log("info", "pull_joined", "reference", a->reference, "target", a->target);

    if (!wait_reporting(p, job, pod, a->reference, publish_deadline(call))) {
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
        uint64_t total = 0, inodes = 0;
        mv_error e2 = MV_ERROR_INIT;
        if (cache_tree_usage(p->cache, res->tree_id, &total, &inodes, &e2) < 0)
            total = 0;
        uint64_t cached = total > res->bytes_downloaded ? total - res->bytes_downloaded : 0;
        snprintf(a->pulled, sizeof(a->pulled),
                 "Pulled model %s in %.1f s (%.1f GB fetched, %.1f "
                 "GB from cache)",
                 a->reference, (double)(csi_now_ns() - t0) / 1e9, GB(res->bytes_downloaded),
                 GB(cached));
    }
    csi_job_release(job);
    return c;
}

csi_code csi_node_publish(csi_call *call, const ProtobufCMessage *msg, csi_reply *reply,
                          csi_status *st)
{
    const Csi__V1__NodePublishVolumeRequest *req = (const void *)msg;
    publish_args a = {0};
    csi_pod pod = {
        .ns = ctx_get(req->volume_context, req->n_volume_context, CTX_K8S_PREFIX "pod.namespace"),
        .name = ctx_get(req->volume_context, req->n_volume_context, CTX_K8S_PREFIX "pod.name"),
        .uid = ctx_get(req->volume_context, req->n_volume_context, CTX_K8S_PREFIX "pod.uid")};
    csi_code c = parse_publish(req, &a, st);
    if (c == CSI_OK && !atomic_load(&call->plugin->ready))
        c = not_ready(call->plugin, st);
    if (c == CSI_OK)
        c = do_publish(call, &a, &pod, st);
    if (c == CSI_OK) {
        Csi__V1__NodePublishVolumeResponse resp = CSI__V1__NODE_PUBLISH_VOLUME_RESPONSE__INIT;
        csi_reply_pack(reply, &resp.base);
    } else {
        mv_log(c == CSI_INTERNAL ? "error" : "warn", "publish_failed", "target", req->target_path,
               "volume_id", req->volume_id, "code", csi_code_name(c), "error", st->msg);
        st->logged = true;
    }
    if (c != CSI_OK)
        csi_events_post(call->plugin, &pod, true, "PullFailed", "%s", st->msg);
    else if (a.pulled[0])
        csi_events_post(call->plugin, &pod, false, "Pulled", "%s", a.pulled);
    csi_metrics_publish(call->plugin->metrics, c);
    publish_args_clear(&a);
    return c;
}

/* ---- unpublish -------------------------------------------------------------- */

/* The part of an unpublish that holds the target's lock. *rec is the
 * target's record, or NULL when it was never published here. */
static csi_code unpublish_locked(csi_plugin *p, const char *target, const char *volume_id,
                                 csi_record **rec, csi_status *st)
{
    mv_error err = MV_ERROR_INIT;
    int r = p->state_dir ? csi_state_load(p->state_dir, target, rec, &err) : -ENOENT;
    if (r < 0 && r != -ENOENT)
        return csi_fail(st, &err, CSI_FAIL_NODE, "unpublish %s", target);
    /* The target holds another volume: this one does not exist there
     * (spec.md, NodeUnpublishVolume Errors), and the other stays mounted. */
    if (*rec && strcmp((*rec)->volume_id, volume_id) != 0 && (*rec)->volume_id[0])
        return csi_status_set(st, CSI_NOT_FOUND,
                              "volume %s is not published at %s (it holds volume %s); nothing "
                              "was unmounted",
                              volume_id, target, (*rec)->volume_id);
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
        return not_ready(p, st);
    const char *target = req->target_path;
    pthread_mutex_t *lock = csi_target_lock(p, target);
    _cleanup_record_ csi_record *rec = NULL;
    pthread_mutex_lock(lock);
    c = unpublish_locked(p, target, req->volume_id, &rec, st);
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
    /* Only a missing path is INVALID_ARGUMENT. Any other path, relative
     * ones included, either is where this volume was published or is
     * "volume does not exist on volume_path": NOT_FOUND (spec.md,
     * NodeGetVolumeStats Errors; csi-sanity asks with "some/path"). A
     * record is looked up by a digest of the path, so no path is unsafe. */
    if (!req->volume_path || !*req->volume_path)
        return csi_status_set(st, CSI_INVALID_ARGUMENT, "volume_path is missing");
    /* The usage comes from the cache, which recovery opens. */
    if (!atomic_load(&p->ready))
        return not_ready(p, st);
    mv_error err = MV_ERROR_INIT;
    _cleanup_record_ csi_record *rec = NULL;
    pthread_mutex_t *lock = csi_target_lock(p, req->volume_path);
    pthread_mutex_lock(lock);
    int r = p->state_dir ? csi_state_load(p->state_dir, req->volume_path, &rec, &err) : -ENOENT;
    pthread_mutex_unlock(lock);
    if (r == -ENOENT || (r == 0 && strcmp(rec->volume_id, req->volume_id) != 0))
        return csi_status_set(st, CSI_NOT_FOUND, "volume %s is not published at %s", req->volume_id,
                              MV_QUOTED(req->volume_path));
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
