/* main.c — the modelvol-csi executable: flags, the plugin's configuration,
 * start-up (metrics, cache recovery in the background so Probe can answer
 * "not ready" meanwhile) and the gRPC server until SIGTERM. */
#include <getopt.h>
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
            "  --connections N         connections per pull (default 16)\n"
            "  --version               print the version and exit\n"
            "  -h, --help              this help\n",
            CACHE_DEFAULT_ROOT, PULL_DEFAULT_CONFIG, CSI_DEFAULT_METRICS_ADDR,
            CSI_DEFAULT_PUBLISH_TIMEOUT);
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

static int parse_uint(const char *flag, const char *s, unsigned long lo, unsigned long hi,
                      unsigned long *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || !*s || *end || v < lo || v > hi || s[0] == '-')
        return fail("%s \"%s\": expected a number from %lu to %lu", flag, s, lo, hi);
    *out = v;
    return 0;
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

enum {
    OPT_ENDPOINT = 256,
    OPT_NODE_ID,
    OPT_CACHE,
    OPT_CONFIG,
    OPT_METRICS,
    OPT_TIMEOUT,
    OPT_MAX_SIZE,
    OPT_HIGH,
    OPT_LOW,
    OPT_CONNECTIONS,
    OPT_VERSION,
};

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"endpoint", required_argument, NULL, OPT_ENDPOINT},
        {"node-id", required_argument, NULL, OPT_NODE_ID},
        {"cache", required_argument, NULL, OPT_CACHE},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"metrics-addr", required_argument, NULL, OPT_METRICS},
        {"publish-timeout", required_argument, NULL, OPT_TIMEOUT},
        {"max-size", required_argument, NULL, OPT_MAX_SIZE},
        {"high-watermark", required_argument, NULL, OPT_HIGH},
        {"low-watermark", required_argument, NULL, OPT_LOW},
        {"connections", required_argument, NULL, OPT_CONNECTIONS},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *endpoint = NULL, *node_id = NULL, *cache_dir = CACHE_DEFAULT_ROOT;
    const char *config_path = PULL_DEFAULT_CONFIG, *metrics_addr = CSI_DEFAULT_METRICS_ADDR;
    bool config_named = false;
    csi_plugin p = {.publish_timeout = CSI_DEFAULT_PUBLISH_TIMEOUT};
    unsigned long v = 0; /* fail() is variadic: analyzers cannot see it returns 2 */
    mv_error err = MV_ERROR_INIT;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_ENDPOINT:
            endpoint = optarg;
            break;
        case OPT_NODE_ID:
            node_id = optarg;
            break;
        case OPT_CACHE:
            cache_dir = optarg;
            break;
        case OPT_CONFIG:
            config_path = optarg;
            config_named = true;
            break;
        case OPT_METRICS:
            metrics_addr = optarg;
            break;
        case OPT_TIMEOUT:
            if (parse_uint("--publish-timeout", optarg, 1, 86400, &v))
                return 2;
            p.publish_timeout = (unsigned)v;
            break;
        case OPT_MAX_SIZE:
            if (mv_parse_size(optarg, &p.cache_opts.max_size, &err) < 0)
                return fail("--max-size: %s", err.msg);
            break;
        case OPT_HIGH:
            if (parse_uint("--high-watermark", optarg, 1, 100, &v))
                return 2;
            p.cache_opts.high_watermark_pct = (int)v;
            break;
        case OPT_LOW:
            if (parse_uint("--low-watermark", optarg, 1, 100, &v))
                return 2;
            p.cache_opts.low_watermark_pct = (int)v;
            break;
        case OPT_CONNECTIONS:
            if (parse_uint("--connections", optarg, 1, 256, &v))
                return 2;
            p.connections = (int)v;
            break;
        case OPT_VERSION:
            printf("modelvol-csi %s\n", MV_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc)
        return fail("unexpected argument \"%s\" (see --help)", argv[optind]);
    if (!endpoint)
        return fail("--endpoint is required, e.g. --endpoint unix:///csi/csi.sock");
    if (!node_id || !*node_id)
        return fail("--node-id is required (the Kubernetes node name)");
    if (p.cache_opts.high_watermark_pct && p.cache_opts.low_watermark_pct &&
        p.cache_opts.low_watermark_pct >= p.cache_opts.high_watermark_pct)
        return fail("--low-watermark must be below --high-watermark");

    _cleanup_(pull_config_freep) pull_config *config = NULL;
    if (pull_config_load(config_path, config_named, &config, &err) < 0)
        return fail("%s", err.msg);
    _cleanup_(pull_creds_freep) pull_creds *creds = NULL;
    if (pull_creds_load_default(&creds, &err) < 0) {
        mv_log("warn", "default_credentials_unavailable", "error", err.msg);
        creds = NULL;
    }

    p.node_id = node_id;
    p.cache_dir = cache_dir;
    _cleanup_free_ char *state_dir = mv_xasprintf("%s/%s", cache_dir, CSI_STATE_SUBDIR);
    p.state_dir = state_dir;
    p.config = config;
    p.default_creds = creds;
    atomic_init(&p.ready, false);
    for (size_t i = 0; i < CSI_TARGET_LOCKS; i++)
        pthread_mutex_init(&p.target_locks[i], NULL);

    /* Every thread (gRPC's included) inherits this mask; only the server's
     * stop thread takes the signals, with sigwait. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (strcmp(metrics_addr, "off") != 0 && csi_metrics_start(metrics_addr, &p, &err) < 0)
        return fail("%s", err.msg);
    mv_log("info", "starting", "version", MV_VERSION, "node_id", node_id, "cache", cache_dir,
            "metrics", metrics_addr);

    pthread_t rt;
    if (pthread_create(&rt, NULL, recover_thread, &p) != 0)
        return fail("cannot start the recovery thread");

    int r = csi_server_run(&p, endpoint, &stop, &err);
    if (r < 0)
        mv_log("error", "server_failed", "endpoint", endpoint, "error", err.msg);

    /* Waits for cache_open: it is bounded by the cache's own recovery. */
    pthread_join(rt, NULL);
    int left = csi_jobs_shutdown(30);
    csi_metrics_stop();
    if (left == 0 && p.cache)
        cache_close(p.cache);
    for (size_t i = 0; i < CSI_TARGET_LOCKS; i++)
        pthread_mutex_destroy(&p.target_locks[i]);
    return r < 0 ? 1 : 0;
}
