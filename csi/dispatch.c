/* dispatch.c — from request bytes to a handler and back: the CSI method
 * table, protobuf-c decoding and encoding, and the mapping of modelvol
 * error codes to gRPC status codes. Knows nothing about gRPC transport. */
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "csi.h"

int64_t csi_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

csi_code csi_status_set(csi_status *st, csi_code code, const char *fmt, ...)
{
    st->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->msg, sizeof(st->msg), fmt, ap);
    va_end(ap);
    return code;
}

csi_code csi_code_from_errno(int code)
{
    switch (code) {
    case 0:
        return CSI_OK;
    case -EINVAL:
        return CSI_INVALID_ARGUMENT;
    case -ENOENT:
        return CSI_NOT_FOUND;
    case -EACCES:
        return CSI_UNAUTHENTICATED;
    case -EPERM:
        return CSI_PERMISSION_DENIED;
    case -ENOSPC:
    case -EDQUOT:
        return CSI_RESOURCE_EXHAUSTED;
    case -ECANCELED:
        return CSI_ABORTED;
    case -ENOTSUP: /* an artifact we cannot lay out: a media type, a digest algorithm */
    case -EPROTO:
        /* A registry we cannot trust (unknown CA) or that answers in a way
         * we cannot use: retrying changes nothing until the configuration
         * or the registry does. */
        return CSI_FAILED_PRECONDITION;
    case -ETIMEDOUT:
    case -ECONNREFUSED:
    case -ECONNRESET:
    case -EHOSTUNREACH:
    case -ENETUNREACH:
    case -EAGAIN:
    case -EIO:
        /* Transport trouble: the kubelet's retry may well succeed. */
        return CSI_UNAVAILABLE;
    default:
        return CSI_INTERNAL;
    }
}

csi_code csi_fail(csi_status *st, const mv_error *err, csi_fail_kind kind, const char *fmt, ...)
{
    csi_code code = kind == CSI_FAIL_NODE      ? CSI_INTERNAL
                    : kind == CSI_FAIL_REQUEST ? CSI_INVALID_ARGUMENT
                                               : csi_code_from_errno(err->code);
    if (code == CSI_OK) /* a failure must never answer OK */
        code = CSI_INTERNAL;
    const char *msg = err->msg[0] ? err->msg : "unknown error";
    if (!fmt)
        return csi_status_set(st, code, "%s", msg);
    char ctx[MV_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof(ctx), fmt, ap);
    va_end(ap);
    return csi_status_set(st, code, "%s: %s", ctx, msg);
}

static const char *const code_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

static const char *const code_labels[] = {
    "ok",
    "cancelled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
};

const char *csi_code_name(csi_code code)
{
    if ((unsigned)code < sizeof(code_names) / sizeof(code_names[0]))
        return code_names[code];
    return "UNKNOWN";
}

const char *csi_code_label(csi_code code)
{
    if ((unsigned)code < sizeof(code_labels) / sizeof(code_labels[0]))
        return code_labels[code];
    return "unknown";
}

void csi_reply_pack(csi_reply *reply, const ProtobufCMessage *msg)
{
    csi_reply_clear(reply);
    reply->len = protobuf_c_message_get_packed_size(msg);
    /* One spare byte: an empty message still gets a real allocation. */
    reply->buf = mv_xmalloc(reply->len + 1);
    protobuf_c_message_pack(msg, reply->buf);
}

void csi_reply_clear(csi_reply *reply)
{
    free(reply->buf);
    reply->buf = NULL;
    reply->len = 0;
}

typedef struct csi_method {
    const char *name;
    const ProtobufCMessageDescriptor *request;
    csi_handler_fn fn; /* NULL: declared by the spec, not offered by us */
} csi_method;

static const csi_method methods[] = {
    {"/csi.v1.Identity/GetPluginInfo", &csi__v1__get_plugin_info_request__descriptor,
     csi_identity_get_plugin_info},
    {"/csi.v1.Identity/GetPluginCapabilities",
     &csi__v1__get_plugin_capabilities_request__descriptor, csi_identity_get_plugin_capabilities},
    {"/csi.v1.Identity/Probe", &csi__v1__probe_request__descriptor, csi_identity_probe},
    {"/csi.v1.Node/NodeGetInfo", &csi__v1__node_get_info_request__descriptor, csi_node_get_info},
    {"/csi.v1.Node/NodeGetCapabilities", &csi__v1__node_get_capabilities_request__descriptor,
     csi_node_get_capabilities},
    {"/csi.v1.Node/NodeGetVolumeStats", &csi__v1__node_get_volume_stats_request__descriptor,
     csi_node_get_volume_stats},
    {"/csi.v1.Node/NodePublishVolume", &csi__v1__node_publish_volume_request__descriptor,
     csi_node_publish},
    {"/csi.v1.Node/NodeUnpublishVolume", &csi__v1__node_unpublish_volume_request__descriptor,
     csi_node_unpublish},
    /* The kubelet's plugin watcher, on the registration socket (register.c). */
    {"/pluginregistration.Registration/GetInfo", &pluginregistration__info_request__descriptor,
     csi_register_get_info},
    {"/pluginregistration.Registration/NotifyRegistrationStatus",
     &pluginregistration__registration_status__descriptor, csi_register_notify},
    /* We advertise neither STAGE_UNSTAGE_VOLUME nor EXPAND_VOLUME. */
    {"/csi.v1.Node/NodeStageVolume", &csi__v1__node_stage_volume_request__descriptor, NULL},
    {"/csi.v1.Node/NodeUnstageVolume", &csi__v1__node_unstage_volume_request__descriptor, NULL},
    {"/csi.v1.Node/NodeExpandVolume", &csi__v1__node_expand_volume_request__descriptor, NULL},
};

csi_code csi_dispatch(csi_call *call, const char *method, const uint8_t *req, size_t len,
                      csi_reply *reply, csi_status *st)
{
    const csi_method *m = NULL;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (strcmp(methods[i].name, method) == 0)
            m = &methods[i];
    if (!m || !m->fn)
        return csi_status_set(st, CSI_UNIMPLEMENTED, "method %s is not implemented by %s", method,
                              CSI_PLUGIN_NAME);
    if (len > (size_t)CSI_MAX_REQUEST_BYTES)
        return csi_status_set(st, CSI_INVALID_ARGUMENT, "%s: request of %zu bytes is too large",
                              method, len);

    ProtobufCMessage *msg = protobuf_c_message_unpack(m->request, NULL, len, req);
    if (!msg)
        return csi_status_set(st, CSI_INVALID_ARGUMENT, "%s: request is not a valid %s message",
                              method, m->request->name);
    st->code = CSI_OK;
    st->logged = false;
    st->msg[0] = '\0';
    csi_code code = m->fn(call, msg, reply, st);
    protobuf_c_message_free_unpacked(msg, NULL);
    if (code != CSI_OK)
        csi_reply_clear(reply);
    else if (!reply->buf)
        code = csi_status_set(st, CSI_INTERNAL, "%s: handler produced no response", method);
    st->code = code;
    return code;
}
