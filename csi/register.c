/* register.c — self-registration with the kubelet's plugin watcher, so
 * the node DaemonSet needs no node-driver-registrar sidecar: where the
 * registration socket goes, and the two calls of pluginregistration v1
 * (proto/pluginregistration.proto) the kubelet makes on it. server.c
 * listens on the socket with the same gRPC server as the CSI services.
 *
 * The protocol, from the kubelet's side (kubernetes/kubernetes):
 * - pkg/kubelet/pluginmanager/operationexecutor/operation_generator.go
 *   (GenerateRegisterPluginFunc): on a new socket under plugins_registry/
 *   the kubelet dials it, calls GetInfo with a 1 s timeout, hands type,
 *   name, endpoint and versions to the handler for the type ("CSIPlugin"),
 *   and then calls NotifyRegistrationStatus with the verdict. An empty
 *   endpoint means the registration socket itself.
 * - pkg/volume/csi/csi_plugin.go (RegistrationHandler.ValidatePlugin,
 *   RegisterPlugin, highestSupportedVersion): a CSI driver must list at
 *   least one version, the highest with major version 1 is taken (2.x is
 *   skipped, none left is a refusal), and the endpoint is stored under the
 *   driver name and dialled as a unix socket path for every CSI call, the
 *   first being NodeGetInfo. Removing the socket deregisters the driver.
 * node-driver-registrar (kubernetes-csi/node-driver-registrar,
 * cmd/csi-node-driver-registrar/node_register.go) serves the same service
 * on <registration dir>/<driver>-reg.sock with the CSI socket's host path
 * (--kubelet-registration-path) as the endpoint; we do the same. */
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "csi.h"

/* The CSI version the plugin speaks (proto/csi.proto is CSI v1). */
#define CSI_SPEC_VERSION "1.0.0"

int csi_register_setup(csi_plugin *p, bool on, const char *dir, const char *kubelet_path,
                       const char *endpoint, mv_error *err)
{
    atomic_store(&p->reg.status, CSI_REG_OFF);
    if (!on) {
        mv_log("info", "self_registration_off", "reason", "--self-register=false");
        return 0;
    }
    bool named = dir != NULL;
    if (!named)
        dir = CSI_DEFAULT_REGISTRATION_DIR;
    struct stat s;
    if (stat(dir, &s) < 0 || !S_ISDIR(s.st_mode)) {
        int e = errno ? -errno : -ENOTDIR;
        if (named)
            return mv_error_errno(err, e, "--kubelet-registration-dir %s", dir);
        /* A machine without a kubelet (a benchmark, a developer's box):
         * serve CSI alone rather than refuse to start. */
        mv_log("warn", "self_registration_off", "reason", "no kubelet plugin watcher directory",
               "dir", dir);
        return 0;
    }
    if (!kubelet_path) {
        const char *prefix = "unix://";
        kubelet_path =
            strncmp(endpoint, prefix, strlen(prefix)) == 0 ? endpoint + strlen(prefix) : endpoint;
    }
    if (kubelet_path[0] != '/')
        return mv_error_set(err, -EINVAL,
                            "--kubelet-registration-path \"%s\" must be an absolute path: the CSI "
                            "socket as the kubelet sees it",
                            kubelet_path);
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    _cleanup_free_ char *sock = mv_xasprintf("%.*s/%s-reg.sock", (int)dl, dir, CSI_PLUGIN_NAME);
    struct sockaddr_un sun;
    if (strlen(sock) >= sizeof(sun.sun_path))
        return mv_error_set(err, -ENAMETOOLONG,
                            "registration socket %s is longer than a unix socket path may be (%zu "
                            "bytes)",
                            sock, sizeof(sun.sun_path) - 1);
    p->reg.socket = MV_STEAL(sock);
    p->reg.endpoint = mv_xstrdup(kubelet_path);
    atomic_store(&p->reg.status, CSI_REG_WAITING);
    return 0;
}

void csi_register_clear(csi_plugin *p)
{
    free(p->reg.socket);
    free(p->reg.endpoint);
    p->reg.socket = p->reg.endpoint = NULL;
}

static csi_code refuse_when_off(csi_status *st)
{
    return csi_status_set(st, CSI_UNIMPLEMENTED,
                          "%s is not registering itself with the kubelet (self-registration is "
                          "off)",
                          CSI_PLUGIN_NAME);
}

csi_code csi_register_get_info(csi_call *call, const ProtobufCMessage *req, csi_reply *reply,
                               csi_status *st)
{
    (void)req;
    csi_plugin *p = call->plugin;
    if (!p->reg.socket)
        return refuse_when_off(st);
    char *versions[] = {(char *)CSI_SPEC_VERSION};
    Pluginregistration__PluginInfo info = PLUGINREGISTRATION__PLUGIN_INFO__INIT;
    info.type = (char *)"CSIPlugin";
    info.name = (char *)CSI_PLUGIN_NAME;
    info.endpoint = p->reg.endpoint;
    info.n_supported_versions = 1;
    info.supported_versions = versions;
    mv_log("info", "registration_info", "driver", CSI_PLUGIN_NAME, "endpoint", p->reg.endpoint,
           "versions", CSI_SPEC_VERSION);
    csi_reply_pack(reply, &info.base);
    return CSI_OK;
}

csi_code csi_register_notify(csi_call *call, const ProtobufCMessage *req, csi_reply *reply,
                             csi_status *st)
{
    csi_plugin *p = call->plugin;
    if (!p->reg.socket)
        return refuse_when_off(st);
    const Pluginregistration__RegistrationStatus *rs =
        (const Pluginregistration__RegistrationStatus *)req;
    if (rs->plugin_registered) {
        atomic_store(&p->reg.status, CSI_REG_REGISTERED);
        mv_log("info", "registration_status", "registered", "true", "driver", CSI_PLUGIN_NAME,
               "endpoint", p->reg.endpoint);
    } else {
        /* Pods on this node cannot mount models until this is fixed; the
         * plugin keeps serving the volumes it already published. */
        atomic_store(&p->reg.status, CSI_REG_REFUSED);
        mv_log("error", "registration_status", "registered", "false", "driver", CSI_PLUGIN_NAME,
               "endpoint", p->reg.endpoint, "error",
               rs->error && rs->error[0] ? rs->error : "the kubelet gave no reason");
    }
    Pluginregistration__RegistrationStatusResponse resp =
        PLUGINREGISTRATION__REGISTRATION_STATUS_RESPONSE__INIT;
    csi_reply_pack(reply, &resp.base);
    return CSI_OK;
}

char *csi_register_metrics(const csi_plugin *p)
{
    if (!p->reg.socket)
        return mv_xstrdup("");
    return mv_xasprintf(
        "# HELP modelvol_kubelet_registered 1 once the kubelet's plugin watcher has registered "
        "the plugin; 0 while it has not or after it refused (see the registration_status log).\n"
        "# TYPE modelvol_kubelet_registered gauge\n"
        "modelvol_kubelet_registered %d\n",
        atomic_load(&p->reg.status) == CSI_REG_REGISTERED ? 1 : 0);
}
