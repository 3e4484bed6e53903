/* test_csi_state.c — the CSI plugin's pieces that need neither gRPC nor
 * root: durable publish records (escaping, atomic replace, listing that
 * skips damage and clears dead temp files), the errno-to-gRPC mapping,
 * and the dispatcher's answers for unknown methods and undecodable bodies.
 * (Tree usage is the cache's: tests/unit/cache/test_cache_store.c.) */
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

int main(void)
{
    MV_RUN(record_roundtrip_with_odd_characters);
    MV_RUN(list_skips_damage_and_clears_temp_files);
    MV_RUN(errno_maps_to_grpc_codes);
    MV_RUN(target_locks_stable_and_spread);
    MV_RUN(dispatch_unknown_and_garbage);
    MV_DONE();
}
