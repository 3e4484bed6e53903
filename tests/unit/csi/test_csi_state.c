/* test_csi_state.c — the CSI plugin's pieces that need neither gRPC nor
 * root: durable publish records (escaping, atomic replace, listing that
 * skips damage and clears dead temp files, old records without the
 * selector), the errno-to-gRPC mapping, the dispatcher's answers for
 * unknown methods and undecodable bodies, strict volume attributes and
 * Probe after a failed recovery.
 * (Tree usage is the cache's: tests/unit/cache/test_cache_store.c.) */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "csi.h"
#include "mvtest.h"

static char *tmpdir(void)
{
    char tmpl[] = "/tmp/test_csi_state.XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? mv_xstrdup(d) : NULL;
}

static void rm_rf(const char *dir)
{
    _cleanup_free_ char *cmd = mv_xasprintf("rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

static void write_file(const char *path, const char *body)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(body, f);
        fclose(f);
    }
}

MV_TEST(record_roundtrip_with_odd_characters)
{
    _cleanup_free_ char *dir = tmpdir();
    CHECK(dir != NULL);
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(csi_state_init(dir, &err), 0);
    csi_record r = {
        .target = (char *)"/var/lib/kubelet/pods/x/volumes/a b\n%41=c",
        .volume_id = (char *)"vol-1",
        .reference = (char *)"registry.example.com/models/llama:v1",
        .policy = (char *)"IfNotPresent",
        .include = (char *)"*.json, *.safetensors",
        .exclude = (char *)"",
        .subpath = (char *)"weights",
        .tree_id = (char *)"sha256:0123",
        .tree_path = (char *)"/cache/trees/0123/root",
    };
    CHECK_INT(csi_state_save(dir, &r, &err), 0);
    _cleanup_record_ csi_record *got = NULL;
    CHECK_INT(csi_state_load(dir, r.target, &got, &err), 0);
    if (got) {
        CHECK_STR(got->target, r.target);
        CHECK_STR(got->include, r.include);
        CHECK_STR(got->exclude, "");
        CHECK_STR(got->subpath, "weights");
        CHECK_STR(got->tree_path, r.tree_path);
    }
    /* Saving again replaces, never duplicates. */
    r.volume_id = (char *)"vol-2";
    CHECK_INT(csi_state_save(dir, &r, &err), 0);
    csi_record **all = NULL;
    size_t n = 0;
    CHECK_INT(csi_state_list(dir, &all, &n, &err), 0);
    CHECK_INT(n, 1);
    if (n == 1)
        CHECK_STR(all[0]->volume_id, "vol-2");
    for (size_t i = 0; i < n; i++)
        csi_record_free(all[i]);
    free(all);

    CHECK_INT(csi_state_remove(dir, r.target, &err), 0);
    CHECK_INT(csi_state_remove(dir, r.target, &err), 0); /* twice is fine */
    csi_record *none = NULL;
    CHECK_INT(csi_state_load(dir, r.target, &none, &err), -ENOENT);
    CHECK(none == NULL);
    rm_rf(dir);
}

MV_TEST(list_skips_damage_and_clears_temp_files)
{
    _cleanup_free_ char *dir = tmpdir();
    mv_error err = MV_ERROR_INIT;
    mv_log_set_quiet(true);
    csi_record r = {.target = (char *)"/t/ok",
                    .reference = (char *)"r/m:v1",
                    .tree_id = (char *)"sha256:aa",
                    .tree_path = (char *)"/c/aa"};
    CHECK_INT(csi_state_save(dir, &r, &err), 0);
    _cleanup_free_ char *bad = mv_xasprintf("%s/broken.rec", dir);
    write_file(bad, "target=/t/broken\nno equals sign here\n");
    _cleanup_free_ char *partial = mv_xasprintf("%s/deadbeef.rec", dir);
    write_file(partial, "target=/t/partial\n"); /* no tree: incomplete */
    _cleanup_free_ char *tmp = mv_xasprintf("%s/abc.rec.tmp.1.2", dir);
    write_file(tmp, "target=/t/tmp\n");

    csi_record **all = NULL;
    size_t n = 0;
    CHECK_INT(csi_state_list(dir, &all, &n, &err), 0);
    CHECK_INT(n, 1);
    if (n == 1)
        CHECK_STR(all[0]->target, "/t/ok");
    for (size_t i = 0; i < n; i++)
        csi_record_free(all[i]);
    free(all);
    CHECK(access(tmp, F_OK) < 0);
    rm_rf(dir);
}

MV_TEST(errno_maps_to_grpc_codes)
{
    CHECK_INT(csi_code_from_errno(0), CSI_OK);
    CHECK_INT(csi_code_from_errno(-EINVAL), CSI_INVALID_ARGUMENT);
    CHECK_INT(csi_code_from_errno(-ENOENT), CSI_NOT_FOUND);
    CHECK_INT(csi_code_from_errno(-EACCES), CSI_UNAUTHENTICATED);
    CHECK_INT(csi_code_from_errno(-EPERM), CSI_PERMISSION_DENIED);
    CHECK_INT(csi_code_from_errno(-ENOSPC), CSI_RESOURCE_EXHAUSTED);
    CHECK_INT(csi_code_from_errno(-ECONNREFUSED), CSI_UNAVAILABLE);
    CHECK_INT(csi_code_from_errno(-EBADMSG), CSI_INTERNAL);
    CHECK_INT(csi_code_from_errno(-EPROTO), CSI_FAILED_PRECONDITION);
    CHECK_STR(csi_code_name(CSI_UNAUTHENTICATED), "UNAUTHENTICATED");
    CHECK_STR(csi_code_label(CSI_RESOURCE_EXHAUSTED), "resource_exhausted");
}

/* Calls on one target share a lock; kubelet paths, which differ only in
 * the pod UID, spread over the stripes so that other targets do not wait. */
MV_TEST(target_locks_stable_and_spread)
{
    static csi_plugin p;
    char a[256], b[256];
    bool used[CSI_TARGET_LOCKS] = {false};
    size_t distinct = 0;
    for (int i = 0; i < 200; i++) {
        snprintf(a, sizeof(a),
                 "/var/lib/kubelet/pods/6d1f%04x-0a1b-4c2d-8e3f-%012d/volumes/"
                 "kubernetes.io~csi/model/mount",
                 i, i);
        memcpy(b, a, sizeof(a));
        pthread_mutex_t *l = csi_target_lock(&p, a);
        CHECK(l == csi_target_lock(&p, b));
        size_t k = (size_t)(l - p.target_locks);
        CHECK(k < CSI_TARGET_LOCKS);
        if (k < CSI_TARGET_LOCKS && !used[k]) {
            used[k] = true;
            distinct++;
        }
    }
    /* 200 paths over 64 stripes: a uniform hash leaves about one empty. */
    CHECK(distinct >= 56);
}

MV_TEST(dispatch_unknown_and_garbage)
{
    static csi_plugin p = {.node_id = "unit-node", .publish_timeout = 1};
    csi_plugin_init(&p);
    csi_set_dry_run(true);
    csi_call call = {.plugin = &p};
    csi_status st = {.code = CSI_OK};
    csi_reply reply = {0};
    CHECK_INT(csi_dispatch(&call, "/csi.v1.Controller/CreateVolume", NULL, 0, &reply, &st),
              CSI_UNIMPLEMENTED);
    CHECK(strstr(st.msg, "CreateVolume") != NULL);
    CHECK(reply.buf == NULL);
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff};
    CHECK_INT(
        csi_dispatch(&call, "/csi.v1.Node/NodeGetInfo", garbage, sizeof(garbage), &reply, &st),
        CSI_INVALID_ARGUMENT);
    CHECK_INT(csi_dispatch(&call, "/csi.v1.Node/NodeGetInfo", NULL, 0, &reply, &st), CSI_OK);
    Csi__V1__NodeGetInfoResponse *info =
        csi__v1__node_get_info_response__unpack(NULL, reply.len, reply.buf);
    CHECK(info != NULL);
    if (info)
        CHECK_STR(info->node_id, "unit-node");
    csi__v1__node_get_info_response__free_unpacked(info, NULL);
    csi_reply_clear(&reply);
}

/* Records keep kinds and the index selector; a record written before they
 * were recorded still loads, with them NULL (not recorded), not "". */
MV_TEST(record_keeps_kinds_and_selector_and_old_records_load)
{
    _cleanup_free_ char *dir = tmpdir();
    CHECK(dir != NULL);
    mv_error err = MV_ERROR_INIT;
    csi_record r = {
        .target = (char *)"/t/sel",
        .volume_id = (char *)"vol-1",
        .reference = (char *)"r.example/m:v1",
        .policy = (char *)"IfNotPresent",
        .include = (char *)"",
        .exclude = (char *)"",
        .subpath = (char *)"",
        .tree_id = (char *)"sha256:aa",
        .tree_path = (char *)"/c/aa",
        .kinds = (char *)"weights,config",
        .artifact_type = (char *)"application/vnd.example+json",
        .platform = (char *)"linux/arm64",
        .annotation = (char *)"org.example.quant=q4",
    };
    CHECK_INT(csi_state_save(dir, &r, &err), 0);
    _cleanup_record_ csi_record *got = NULL;
    CHECK_INT(csi_state_load(dir, r.target, &got, &err), 0);
    if (got) {
        CHECK_STR(got->kinds, r.kinds);
        CHECK_STR(got->artifact_type, r.artifact_type);
        CHECK_STR(got->platform, r.platform);
        CHECK_STR(got->annotation, r.annotation);
    }

    /* The same target as an older plugin wrote it. */
    csi_record **all = NULL;
    size_t n = 0;
    CHECK_INT(csi_state_list(dir, &all, &n, &err), 0);
    for (size_t i = 0; i < n; i++)
        csi_record_free(all[i]);
    free(all);
    DIR *d = opendir(dir);
    struct dirent *e;
    _cleanup_free_ char *file = NULL;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".rec"))
            file = mv_xasprintf("%s/%s", dir, e->d_name);
    if (d)
        closedir(d);
    CHECK(file != NULL);
    if (file)
        write_file(file, "# modelvol-csi publish record v1\ntarget=/t/sel\nvolume_id=vol-1\n"
                         "reference=r.example/m:v1\npolicy=IfNotPresent\ninclude=\nexclude=\n"
                         "path=\ntree_id=sha256:aa\ntree_path=/c/aa\n");
    _cleanup_record_ csi_record *old = NULL;
    CHECK_INT(csi_state_load(dir, r.target, &old, &err), 0);
    if (old) {
        CHECK_STR(old->volume_id, "vol-1");
        CHECK(old->kinds == NULL && old->artifact_type == NULL && old->platform == NULL &&
              old->annotation == NULL);
    }
    rm_rf(dir);
}

/* A NodePublishVolume request for the dispatcher, packed. */
static uint8_t *publish_bytes(const char *target, const char *const *kv, size_t nkv, int mode,
                              bool access_type, size_t *len)
{
    Csi__V1__VolumeCapability__MountVolume mnt = CSI__V1__VOLUME_CAPABILITY__MOUNT_VOLUME__INIT;
    Csi__V1__VolumeCapability__AccessMode am = CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__INIT;
    am.mode = mode;
    Csi__V1__VolumeCapability cap = CSI__V1__VOLUME_CAPABILITY__INIT;
    if (access_type) {
        cap.access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT;
        cap.mount = &mnt;
    }
    cap.access_mode = &am;
    Csi__V1__NodePublishVolumeRequest__VolumeContextEntry ent[8];
    Csi__V1__NodePublishVolumeRequest__VolumeContextEntry *ents[8];
    for (size_t i = 0; i < nkv && i < 8; i++) {
        Csi__V1__NodePublishVolumeRequest__VolumeContextEntry e =
            CSI__V1__NODE_PUBLISH_VOLUME_REQUEST__VOLUME_CONTEXT_ENTRY__INIT;
        e.key = (char *)kv[2 * i];
        e.value = (char *)kv[2 * i + 1];
        ent[i] = e;
        ents[i] = &ent[i];
    }
    Csi__V1__NodePublishVolumeRequest req = CSI__V1__NODE_PUBLISH_VOLUME_REQUEST__INIT;
    req.volume_id = (char *)"vol-1";
    req.target_path = (char *)target;
    req.volume_capability = &cap;
    req.readonly = true;
    req.n_volume_context = nkv;
    req.volume_context = ents;
    *len = csi__v1__node_publish_volume_request__get_packed_size(&req);
    uint8_t *buf = mv_xmalloc(*len + 1);
    csi__v1__node_publish_volume_request__pack(&req, buf);
    return buf;
}

static csi_code publish_code(csi_call *call, const char *const *kv, size_t nkv, int mode,
                             bool access_type, csi_status *st)
{
    size_t len = 0;
    _cleanup_free_ uint8_t *buf = publish_bytes("/t/target", kv, nkv, mode, access_type, &len);
    csi_reply reply = {0};
    csi_code c = csi_dispatch(call, "/csi.v1.Node/NodePublishVolume", buf, len, &reply, st);
    csi_reply_clear(&reply);
    return c;
}

/* Volume attributes outside csi.storage.k8s.io/ must be known: a typo is
 * refused, naming the key and listing the known ones, before anything else
 * happens (the plugin here is not ready: a request that passes the checks
 * answers UNAVAILABLE). */
MV_TEST(unknown_volume_attributes_are_refused)
{
    static csi_plugin p = {.node_id = "unit-node", .publish_timeout = 1};
    csi_plugin_init(&p);
    csi_set_dry_run(true);
    mv_log_set_quiet(true);
    csi_call call = {.plugin = &p};
    csi_status st = {.code = CSI_OK};
    const int ro = CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_READER_ONLY;

    const char *typo[] = {"reference", "r.example/m:v1", "pullpolicy", "Always"};
    CHECK_INT(publish_code(&call, typo, 2, ro, true, &st), CSI_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "unknown key \"pullpolicy\"");
    CHECK_CONTAINS(st.msg, "did you mean pullPolicy?");
    CHECK_CONTAINS(st.msg, "reference, pullPolicy, include, exclude, kinds, path, artifactType, "
                           "platform, annotation");

    const char *plural[] = {"reference", "r.example/m:v1", "includes", "*.json"};
    CHECK_INT(publish_code(&call, plural, 2, ro, true, &st), CSI_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "unknown key \"includes\"");

    const char *all[] = {"reference",
                         "r.example/m:v1",
                         "pullPolicy",
                         "Always",
                         "include",
                         "*.json",
                         "kinds",
                         "weights",
                         "artifactType",
                         "application/x",
                         "platform",
                         "linux/amd64",
                         "csi.storage.k8s.io/pod.name",
                         "p"};
    CHECK_INT(publish_code(&call, all, 7, ro, true, &st), CSI_UNAVAILABLE);

    /* The capability's REQUIRED parts. */
    const char *ok[] = {"reference", "r.example/m:v1"};
    CHECK_INT(publish_code(&call, ok, 1, ro, false, &st), CSI_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "access_type is missing");
    CHECK_INT(publish_code(&call, ok, 1, 0, true, &st), CSI_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "not a known access mode");
    CHECK_INT(publish_code(&call, ok, 1, 99, true, &st), CSI_INVALID_ARGUMENT);
}

/* Probe: recovering is healthy (ready=false); failed recovery is "Plugin
 * not healthy", FAILED_PRECONDITION, with the reason. */
MV_TEST(probe_after_failed_recovery)
{
    /* A regular file where the cache directory should be: cache_open
     * fails whoever runs the test (root would create a missing path). */
    _cleanup_free_ char *dir = tmpdir();
    CHECK(dir != NULL);
    if (!dir)
        return;
    _cleanup_free_ char *cache_file = mv_xasprintf("%s/not-a-directory", dir);
    write_file(cache_file, "x");
    static csi_plugin p = {.node_id = "unit-node"};
    p.cache_dir = cache_file;
    csi_plugin_init(&p);
    mv_log_set_quiet(true);
    csi_call call = {.plugin = &p};
    csi_status st = {.code = CSI_OK};
    csi_reply reply = {0};
    CHECK_INT(csi_dispatch(&call, "/csi.v1.Identity/Probe", NULL, 0, &reply, &st), CSI_OK);
    csi_reply_clear(&reply);
    mv_error err = MV_ERROR_INIT;
    p.state_dir = mv_xasprintf("%s/csi", cache_file);
    CHECK(csi_recover(&p, &err) < 0);
    CHECK_INT(csi_dispatch(&call, "/csi.v1.Identity/Probe", NULL, 0, &reply, &st),
              CSI_FAILED_PRECONDITION);
    CHECK_CONTAINS(st.msg, cache_file);
    CHECK(reply.buf == NULL);
    free(p.state_dir);
    rm_rf(dir);
}

int main(void)
{
    MV_RUN(record_roundtrip_with_odd_characters);
    MV_RUN(list_skips_damage_and_clears_temp_files);
    MV_RUN(errno_maps_to_grpc_codes);
    MV_RUN(target_locks_stable_and_spread);
    MV_RUN(dispatch_unknown_and_garbage);
    MV_RUN(record_keeps_kinds_and_selector_and_old_records_load);
    MV_RUN(unknown_volume_attributes_are_refused);
    MV_RUN(probe_after_failed_recovery);
    MV_DONE();
}
