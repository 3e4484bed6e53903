/* fuzz_csi_request.c — libFuzzer target for the CSI request handlers: the
 * first byte picks the method, the rest is the protobuf-c request body,
 * decoded and handled exactly as a gRPC call would be. Mounting is switched
 * off (csi_set_dry_run) and the plugin has no cache, so every path up to
 * the pull (argument checks, references, policies, filters, secrets) runs
 * and nothing touches the machine. */
#include <string.h>

#include "csi.h"

static const char *const methods[] = {
    "/csi.v1.Identity/GetPluginInfo",   "/csi.v1.Identity/GetPluginCapabilities",
    "/csi.v1.Identity/Probe",           "/csi.v1.Node/NodeGetInfo",
    "/csi.v1.Node/NodeGetCapabilities", "/csi.v1.Node/NodeGetVolumeStats",
    "/csi.v1.Node/NodePublishVolume",   "/csi.v1.Node/NodeUnpublishVolume",
    "/csi.v1.Node/NodeStageVolume",     "/csi.v1.Controller/CreateVolume",
};

static csi_plugin plugin = {
    .node_id = "fuzz-node",
    .cache_dir = "/nonexistent/modelvol-fuzz",
    .publish_timeout = 1,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        csi_set_dry_run(true);
        mv_log_set_quiet(true);
        /* Not ready: publish and unpublish stop after their checks. */
        csi_plugin_init(&plugin);
        init = true;
    }
    if (size < 1)
        return 0;
    const char *method = methods[data[0] % (sizeof(methods) / sizeof(methods[0]))];
    csi_call call = {.plugin = &plugin};
    csi_status st = {.code = CSI_OK};
    csi_reply reply = {0};
    csi_code code = csi_dispatch(&call, method, data + 1, size - 1, &reply, &st);
    if (code == CSI_OK && !reply.buf)
        __builtin_trap();
    if (code != CSI_OK && (reply.buf || !st.msg[0]))
        __builtin_trap(); /* every refusal carries a message */
    csi_reply_clear(&reply);
    return 0;
}
