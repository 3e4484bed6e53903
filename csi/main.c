/* main.c — the modelvol-csi executable: flags, the plugin's configuration,
 * start-up (metrics, self-registration's socket, cache recovery in the
 * background so Probe can answer "not ready" meanwhile) and the gRPC
 * server until SIGTERM. */
#include <getopt.h>
#include <stddef.h>
#include <stdarg.h>
#include <string.h>

#include "csi.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: modelvol-csi --endpoint unix:///csi/csi.sock --node-id NAME [options]\n"
            "\n"
            "The modelvol CSI node plugin: publishes OCI model artifacts as read-only volumes.\n"
            "\n"
            "  --endpoint URL          gRPC endpoint, unix:///path/csi.sock (required)\n"
            "  --node-id NAME          this node's name, returned by NodeGetInfo (required)\n"
            "  --cache DIR             node cache directory (default %s)\n"
            "  --config FILE           registry config: mirrors, TLS, plain HTTP (default %s)\n"
            "  --metrics-addr ADDR     Prometheus /metrics and /healthz on ADDR (default %s);\n"
            "                          \"off\" disables\n"
            "  --publish-timeout SECS  how long a publish waits for its pull before answering\n"
            "                          DEADLINE_EXCEEDED; the pull continues (default %d)\n"
            "  --max-size SIZE         cache size GC aims for, e.g. 200G (default unlimited)\n"
            "  --high-watermark PCT    disk use that starts automatic GC (default 90)\n"
            "  --low-watermark PCT     disk use where GC stops (default 80)\n"
            "  --connections N         connections per pull, %d to %d (default %d)\n"
            "  --connections-per-host N\n"
            "                          the node's connections to one registry or storage\n"
            "                          host, all pulls together, 1 to %d (default %d)\n"
            "  --self-register BOOL    serve the kubelet's plugin registration socket, so no\n"
            "                          node-driver-registrar is needed (default true)\n"
            "  --kubelet-registration-dir DIR\n"
            "                          the kubelet's plugin watcher directory; the socket is\n"
            "                          DIR/%s-reg.sock (default %s; when that is\n"
            "                          missing, no self-registration)\n"
            "  --kubelet-registration-path PATH\n"
            "                          the CSI socket as the kubelet sees it, told to the\n"
            "                          kubelet (default: the --endpoint path)\n"
            "  --kube-api-url URL      API server for pod events, https://HOST:PORT, or \"off\"\n"
            "                          (default: in-cluster KUBERNETES_SERVICE_HOST/PORT)\n"
            "  --kube-token-file FILE  service account token (default %s)\n"
            "  --kube-ca-file FILE     API server CA (default %s)\n"
            "  --version               print the version and exit\n"
            "  -h, --help              this help\n",
            CACHE_DEFAULT_ROOT, CACHE_DEFAULT_CONFIG, CSI_DEFAULT_METRICS_ADDR,
            CSI_DEFAULT_PUBLISH_TIMEOUT, CACHE_CONNECTIONS_MIN, CACHE_CONNECTIONS_MAX,
            CACHE_CONNECTIONS_DEFAULT, PULL_BUDGET_PER_HOST_MAX, PULL_BUDGET_PER_HOST_DEFAULT,
            CSI_PLUGIN_NAME, CSI_DEFAULT_REGISTRATION_DIR, CSI_DEFAULT_KUBE_TOKEN,
            CSI_DEFAULT_KUBE_CA);
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("modelvol-csi: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

static void *recover_thread(void *arg)
{
    csi_plugin *p = arg;
    mv_error err = MV_ERROR_INIT;
    if (csi_recover(p, &err) < 0) {
        /* Probe stays not-ready and the kubelet's liveness probe restarts
         * us; the reason is in the log. */
        mv_log("error", "recovery_failed", "cache", p->cache_dir, "error", err.msg);
        return NULL;
    }
    csi_cache_maintain(p);
    return NULL;
}

/* The flags, once: name, where the value goes, and how it is checked. */
typedef struct csi_flags {
    const char *endpoint, *node_id, *cache_dir, *config_path, *metrics_addr;
    bool config_named;
    bool self_register;
    const char *reg_dir, *reg_path; /* NULL: the defaults (register.c) */
    const char *kube_api, *kube_token, *kube_ca;
} csi_flags;

typedef enum {
    F_STR,      /* const char * in csi_flags */
    F_CONFIG,   /* the same, and the user named it */
    F_UNSIGNED, /* unsigned in csi_plugin, from lo to hi */
    F_INT,      /* int in csi_plugin, from lo to hi */
    F_SIZE,     /* uint64_t in csi_plugin, a size ("200G") */
    F_CONNECTIONS,
    F_BOOL, /* bool in csi_flags: true or false */
    F_VERSION,
    F_HELP,
} flag_kind;

typedef struct flag_def {
    const char *name;
    flag_kind kind;
    size_t off;      /* where the value goes (see flag_kind) */
    uint64_t lo, hi; /* F_UNSIGNED, F_INT */
} flag_def;

/* clang-format off */
#define FLAG_STR(n, field)               {n, F_STR, offsetof(csi_flags, field), 0, 0}
#define FLAG_NUM(n, kind, field, lo, hi) {n, kind, offsetof(csi_plugin, field), lo, hi}

static const flag_def flag_defs[] = {
    FLAG_STR("endpoint", endpoint),
    FLAG_STR("node-id", node_id),
    FLAG_STR("cache", cache_dir),
    {"config", F_CONFIG, offsetof(csi_flags, config_path), 0, 0},
    FLAG_STR("metrics-addr", metrics_addr),
    FLAG_NUM("publish-timeout", F_UNSIGNED, publish_timeout, 1, 86400),
    FLAG_NUM("max-size", F_SIZE, cache_opts.max_size, 0, 0),
    FLAG_NUM("high-watermark", F_INT, cache_opts.high_watermark_pct, CACHE_WATERMARK_MIN,
             CACHE_WATERMARK_MAX),
    FLAG_NUM("low-watermark", F_INT, cache_opts.low_watermark_pct, CACHE_WATERMARK_MIN,
             CACHE_WATERMARK_MAX),
    FLAG_NUM("connections", F_CONNECTIONS, connections, 0, 0),
    FLAG_NUM("connections-per-host", F_INT, connections_per_host, 1, PULL_BUDGET_PER_HOST_MAX),
    {"self-register", F_BOOL, offsetof(csi_flags, self_register), 0, 0},
    FLAG_STR("kubelet-registration-dir", reg_dir),
    FLAG_STR("kubelet-registration-path", reg_path),
    FLAG_STR("kube-api-url", kube_api),
    FLAG_STR("kube-token-file", kube_token),
    FLAG_STR("kube-ca-file", kube_ca),
    {"version", F_VERSION, 0, 0, 0},
    {"help", F_HELP, 0, 0, 0},
};
/* clang-format on */
#define N_FLAGS (sizeof(flag_defs) / sizeof(flag_defs[0]))

/* Stores one flag's value. Returns -1 to go on, else the exit code. */
static int apply_flag(const flag_def *d, const char *arg, csi_flags *f, csi_plugin *p)
{
    char *fb = (char *)f, *pb = (char *)p;
    mv_error err = MV_ERROR_INIT;
    uint64_t v = 0;
    switch (d->kind) {
    case F_CONFIG:
        f->config_named = true;
        *(const char **)(fb + d->off) = arg;
        return -1;
    case F_STR:
        *(const char **)(fb + d->off) = arg;
        return -1;
    case F_UNSIGNED:
    case F_INT: {
        char flag[32];
        snprintf(flag, sizeof(flag), "--%s", d->name);
        if (mv_parse_uint(flag, arg, d->lo, d->hi, &v, &err) < 0)
            return fail("%s", err.msg);
        if (d->kind == F_UNSIGNED)
            *(unsigned *)(pb + d->off) = (unsigned)v;
        else
            *(int *)(pb + d->off) = (int)v;
        return -1;
    }
    case F_SIZE:
        if (mv_parse_size(arg, (uint64_t *)(pb + d->off), &err) < 0)
            return fail("--%s: %s", d->name, err.msg);
        return -1;
    case F_CONNECTIONS:
        if (cache_connections_parse("--connections", arg, (int *)(pb + d->off), &err) < 0)
            return fail("%s", err.msg);
        return -1;
    case F_BOOL:
        if (strcmp(arg, "true") != 0 && strcmp(arg, "false") != 0)
            return fail("--%s: \"%s\" is neither true nor false", d->name, arg);
        *(bool *)(fb + d->off) = strcmp(arg, "true") == 0;
        return -1;
    case F_VERSION:
        printf("modelvol-csi %s\n", MV_VERSION);
        return 0;
    case F_HELP:
        usage(stdout);
        return 0;
    }
    return 2;
}

/* Fills f and p from argv. Returns -1 to go on, else the exit code. */
static int parse_flags(int argc, char **argv, csi_flags *f, csi_plugin *p)
{
    struct option opts[N_FLAGS + 1];
    for (size_t i = 0; i < N_FLAGS; i++)
        opts[i] = (struct option){flag_defs[i].name,
                                  flag_defs[i].kind >= F_VERSION ? no_argument : required_argument,
                                  NULL, (int)(256 + i)};
    opts[N_FLAGS] = (struct option){NULL, 0, NULL, 0};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h')
            c = 256 + (int)N_FLAGS - 1;
        if (c < 256 || c >= 256 + (int)N_FLAGS) {
            usage(stderr);
            return 2;
        }
        int rc = apply_flag(&flag_defs[c - 256], optarg, f, p);
        if (rc >= 0)
            return rc;
    }
    if (optind < argc)
        return fail("unexpected argument \"%s\" (see --help)", argv[optind]);
    if (!f->endpoint)
        return fail("--endpoint is required, e.g. --endpoint unix:///csi/csi.sock");
    if (!f->node_id || !*f->node_id)
        return fail("--node-id is required (the Kubernetes node name)");
    if (p->cache_opts.high_watermark_pct && p->cache_opts.low_watermark_pct &&
        p->cache_opts.low_watermark_pct >= p->cache_opts.high_watermark_pct)
        return fail("--low-watermark must be below --high-watermark");
    return -1;
}

int main(int argc, char **argv)
{
    csi_flags f = {.cache_dir = CACHE_DEFAULT_ROOT,
                   .config_path = CACHE_DEFAULT_CONFIG,
                   .metrics_addr = CSI_DEFAULT_METRICS_ADDR,
                   .self_register = true,
                   .kube_token = CSI_DEFAULT_KUBE_TOKEN,
                   .kube_ca = CSI_DEFAULT_KUBE_CA};
    csi_plugin p = {.publish_timeout = CSI_DEFAULT_PUBLISH_TIMEOUT};
    int rc = parse_flags(argc, argv, &f, &p);
    if (rc >= 0)
        return rc;

    mv_error err = MV_ERROR_INIT;
    _cleanup_(cache_registry_freep) cache_registry *registry = NULL;
    if (cache_registry_load(f.config_path, f.config_named, CACHE_REGISTRY_CREDS_OPTIONAL, &registry,
                            &err) < 0)
        return fail("%s", err.msg);

    p.node_id = f.node_id;
    p.cache_dir = f.cache_dir;
    _cleanup_free_ char *state_dir = mv_xasprintf("%s/%s", f.cache_dir, CSI_STATE_SUBDIR);
    p.state_dir = state_dir;
    p.registry = registry;
    /* Before csi_plugin_init: a refusal here has nothing to tear down. */
    if (csi_register_setup(&p, f.self_register, f.reg_dir, f.reg_path, f.endpoint, &err) < 0)
        return fail("%s", err.msg);
    csi_plugin_init(&p);
    if (pull_budget_new(p.connections_per_host, &p.budget, &err) < 0)
        return fail("%s", err.msg);

    /* Every thread (gRPC's included) inherits this mask; only the server's
     * stop thread takes the signals, with sigwait. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (strcmp(f.metrics_addr, "off") != 0 && csi_metrics_start(&p, f.metrics_addr, &err) < 0)
        return fail("%s", err.msg);
    mv_log("info", "starting", "version", MV_VERSION, "node_id", f.node_id, "cache", f.cache_dir,
           "metrics", f.metrics_addr);

    if (csi_events_start(&p, f.kube_api, f.kube_token, f.kube_ca, &err) < 0)
        return fail("%s", err.msg);

    pthread_t rt;
    if (pthread_create(&rt, NULL, recover_thread, &p) != 0)
        return fail("cannot start the recovery thread");

    int r = csi_server_run(&p, f.endpoint, &stop, &err);
    if (r < 0)
        mv_log("error", "server_failed", "endpoint", f.endpoint, "error", err.msg);

    /* Waits for cache_open: it is bounded by the cache's own recovery. */
    pthread_join(rt, NULL);
    int left = csi_jobs_shutdown(&p, 30);
    csi_metrics_stop(&p);
    csi_events_stop(&p);
    csi_register_clear(&p);
    /* A pull still running after the grace period keeps its cache and its
     * plugin: the process exits around it. */
    if (left == 0) {
        if (p.cache)
            cache_close(p.cache);
        csi_plugin_destroy(&p);
    }
    return r < 0 ? 1 : 0;
}
