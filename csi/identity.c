/* identity.c — the CSI Identity service: who we are (name and version),
 * what we offer (a node-only plugin: no controller service), and whether we
 * are ready (only once cache recovery has finished) or broken (recovery
 * failed). */
#include "csi.h"

csi_code csi_identity_get_plugin_info(csi_call *call, const ProtobufCMessage *req, csi_reply *reply,
                                      csi_status *st)
{
    (void)call;
    (void)req;
    (void)st;
    Csi__V1__GetPluginInfoResponse resp = CSI__V1__GET_PLUGIN_INFO_RESPONSE__INIT;
    resp.name = (char *)CSI_PLUGIN_NAME;
    resp.vendor_version = (char *)MV_VERSION;
    csi_reply_pack(reply, &resp.base);
    return CSI_OK;
}

csi_code csi_identity_get_plugin_capabilities(csi_call *call, const ProtobufCMessage *req,
                                              csi_reply *reply, csi_status *st)
{
    (void)call;
    (void)req;
    (void)st;
    /* Node-only, and every node can serve every model: nothing to announce,
     * so the kubelet never looks for a controller. */
    Csi__V1__GetPluginCapabilitiesResponse resp = CSI__V1__GET_PLUGIN_CAPABILITIES_RESPONSE__INIT;
    csi_reply_pack(reply, &resp.base);
    return CSI_OK;
}

csi_code csi_identity_probe(csi_call *call, const ProtobufCMessage *req, csi_reply *reply,
                            csi_status *st)
{
    (void)req;
    /* Still recovering is healthy and answers ready=false; a failed
     * recovery needs a restart, which the spec's Probe Errors table says
     * is "Plugin not healthy": FAILED_PRECONDITION. */
    const csi_plugin *p = call->plugin;
    if (atomic_load(&p->failed))
        return csi_status_set(st, CSI_FAILED_PRECONDITION,
                              "%s is not healthy: cache recovery failed (%s); fix the cause and "
                              "restart the plugin",
                              CSI_PLUGIN_NAME, p->failure);
    Csi__V1__BoolValue ready = CSI__V1__BOOL_VALUE__INIT;
    ready.value = atomic_load(&call->plugin->ready);
    Csi__V1__ProbeResponse resp = CSI__V1__PROBE_RESPONSE__INIT;
    resp.ready = &ready;
    csi_reply_pack(reply, &resp.base);
    return CSI_OK;
}
