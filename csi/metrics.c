/* metrics.c — what the daemon counts and how Prometheus reads it: pulls by
 * result, bytes by source (origin or mirror), cache hits, a pull-duration
 * histogram, the cache's size and publishes by result, rendered as the
 * Prometheus text format on /metrics by libmicrohttpd, plus /healthz. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <string.h>

#include "csi.h"

#define N_CODES 17

static const double duration_buckets[] = {1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600};
#define N_BUCKETS (sizeof(duration_buckets) / sizeof(duration_buckets[0]))

struct csi_metrics {
    pthread_mutex_t lock;
    uint64_t pulls[N_CODES];
    uint64_t publishes[N_CODES];
    uint64_t bytes_origin;
    uint64_t bytes_mirror;
    uint64_t cache_hits;
    uint64_t layers_skipped;
    uint64_t duration_bucket[N_BUCKETS]; /* non-cumulative; summed on render */
    uint64_t duration_count;
    double duration_sum;
    uint64_t cache_bytes;
    int disk_pct;
    bool cache_bytes_known;
    struct MHD_Daemon *mhd;
};

csi_metrics *csi_metrics_new(void)
{
    csi_metrics *m = mv_xcalloc(1, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

void csi_metrics_free(csi_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static unsigned code_index(csi_code c)
{
    return (unsigned)c < N_CODES ? (unsigned)c : CSI_UNKNOWN;
}

void csi_metrics_layers_skipped(csi_metrics *m, size_t n)
{
    pthread_mutex_lock(&m->lock);
    m->layers_skipped += n;
    pthread_mutex_unlock(&m->lock);
}

void csi_metrics_pull(csi_metrics *m, csi_code result, double seconds, uint64_t bytes_origin,
                      uint64_t bytes_mirror, bool cache_hit)
{
    pthread_mutex_lock(&m->lock);
    m->pulls[code_index(result)]++;
    m->bytes_origin += bytes_origin;
    m->bytes_mirror += bytes_mirror;
    if (cache_hit)
        m->cache_hits++;
    size_t i = 0;
    while (i < N_BUCKETS && seconds > duration_buckets[i])
        i++;
    if (i < N_BUCKETS)
        m->duration_bucket[i]++;
    m->duration_count++;
    m->duration_sum += seconds;
    pthread_mutex_unlock(&m->lock);
}

void csi_metrics_publish(csi_metrics *m, csi_code result)
{
    pthread_mutex_lock(&m->lock);
    m->publishes[code_index(result)]++;
    pthread_mutex_unlock(&m->lock);
}

void csi_metrics_update_cache(csi_metrics *m, cache *c)
{
    uint64_t bytes = 0;
    int pct = 0;
    mv_error err = MV_ERROR_INIT;
    if (!c || cache_usage(c, &bytes, &pct, &err) < 0)
        return;
    pthread_mutex_lock(&m->lock);
    m->cache_bytes = bytes;
    m->disk_pct = pct;
    m->cache_bytes_known = true;
    pthread_mutex_unlock(&m->lock);
}

typedef struct sbuf {
    char *s;
    size_t len, cap;
} sbuf;

static void __attribute__((format(printf, 2, 3))) sb_printf(sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)(n > 0 ? n : 0) + 256;
        b->s = mv_xrealloc(b->s, b->cap);
    }
}

/* The node's pull scheduler (puller/budget.c). */
static void render_budget(sbuf *b, pull_budget *budget)
{
    if (!budget)
        return;
    pull_budget_stats st;
    pull_budget_stats_read(budget, &st);
    sb_printf(b,
              "# HELP modelvol_pull_queue_length Pulls waiting for their first connection.\n"
              "# TYPE modelvol_pull_queue_length gauge\n"
              "modelvol_pull_queue_length %d\n"
              "# HELP modelvol_pulls_running Pulls holding connections.\n"
              "# TYPE modelvol_pulls_running gauge\n"
              "modelvol_pulls_running %d\n"
              "# HELP modelvol_pull_throughput_bytes_per_second The node's pull rate over the "
              "last window.\n"
              "# TYPE modelvol_pull_throughput_bytes_per_second gauge\n"
              "modelvol_pull_throughput_bytes_per_second %.0f\n"
              "# HELP modelvol_pull_connections_target Connections the scheduler lets all pulls "
              "hold together.\n"
              "# TYPE modelvol_pull_connections_target gauge\n"
              "modelvol_pull_connections_target %d\n"
              "# HELP modelvol_pull_wait_seconds Time pulls waited for their first connection.\n"
              "# TYPE modelvol_pull_wait_seconds summary\n"
              "modelvol_pull_wait_seconds_sum %.3f\n"
              "modelvol_pull_wait_seconds_count %llu\n"
              "# HELP modelvol_pull_probes_total Throughput probes for more connections, by "
              "outcome.\n"
              "# TYPE modelvol_pull_probes_total counter\n"
              "modelvol_pull_probes_total{outcome=\"kept\"} %llu\n"
              "modelvol_pull_probes_total{outcome=\"dropped\"} %llu\n"
              "# HELP modelvol_pull_connections_in_use Connections open to each host, of "
              "--connections-per-host (%d).\n"
              "# TYPE modelvol_pull_connections_in_use gauge\n",
              st.queued, st.running, st.throughput, st.target, st.wait_seconds_sum,
              (unsigned long long)st.waits, (unsigned long long)st.probes_kept,
              (unsigned long long)st.probes_dropped, st.per_host);
    for (size_t i = 0; i < st.n_hosts; i++)
        if (!strpbrk(st.hosts[i].host, "\"\\\n")) /* a label value needs no escape */
            sb_printf(b, "modelvol_pull_connections_in_use{host=\"%s\"} %d\n", st.hosts[i].host,
                      st.hosts[i].in_use);
}

char *csi_metrics_render(csi_plugin *p)
{
    csi_metrics *m = p->metrics;
    sbuf b = {mv_xmalloc(4096), 0, 4096};
    b.s[0] = '\0';
    pthread_mutex_lock(&m->lock);
    sb_printf(&b, "# HELP modelvol_pulls_total Model pulls run by the plugin, by result.\n"
                  "# TYPE modelvol_pulls_total counter\n");
    sb_printf(&b, "modelvol_pulls_total{result=\"ok\"} %llu\n", (unsigned long long)m->pulls[0]);
    for (unsigned i = 1; i < N_CODES; i++)
        if (m->pulls[i])
            sb_printf(&b, "modelvol_pulls_total{result=\"%s\"} %llu\n", csi_code_label(i),
                      (unsigned long long)m->pulls[i]);
    sb_printf(&b,
              "# HELP modelvol_pull_bytes_total Blob bytes downloaded, by source.\n"
              "# TYPE modelvol_pull_bytes_total counter\n"
              "modelvol_pull_bytes_total{source=\"origin\"} %llu\n"
              "modelvol_pull_bytes_total{source=\"mirror\"} %llu\n",
              (unsigned long long)m->bytes_origin, (unsigned long long)m->bytes_mirror);
    sb_printf(&b,
              "# HELP modelvol_cache_hits_total Pulls answered by a tree already in the cache.\n"
              "# TYPE modelvol_cache_hits_total counter\n"
              "modelvol_cache_hits_total %llu\n",
              (unsigned long long)m->cache_hits);
    sb_printf(&b,
              "# HELP modelvol_layers_skipped_total Manifest layers a pull's layout plan skipped "
              "while it laid out others (see the layer_skipped log).\n"
              "# TYPE modelvol_layers_skipped_total counter\n"
              "modelvol_layers_skipped_total %llu\n",
              (unsigned long long)m->layers_skipped);
    sb_printf(&b, "# HELP modelvol_pull_duration_seconds Time from pull start to tree ready.\n"
                  "# TYPE modelvol_pull_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (size_t i = 0; i < N_BUCKETS; i++) {
        cum += m->duration_bucket[i];
        sb_printf(&b, "modelvol_pull_duration_seconds_bucket{le=\"%g\"} %llu\n",
                  duration_buckets[i], (unsigned long long)cum);
    }
    sb_printf(&b,
              "modelvol_pull_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
              "modelvol_pull_duration_seconds_sum %.3f\n"
              "modelvol_pull_duration_seconds_count %llu\n",
              (unsigned long long)m->duration_count, m->duration_sum,
              (unsigned long long)m->duration_count);
    if (m->cache_bytes_known)
        sb_printf(&b,
                  "# HELP modelvol_cache_bytes Bytes held in the node cache (hard links once).\n"
                  "# TYPE modelvol_cache_bytes gauge\n"
                  "modelvol_cache_bytes %llu\n"
                  "# HELP modelvol_cache_disk_used_percent Use of the cache's file system.\n"
                  "# TYPE modelvol_cache_disk_used_percent gauge\n"
                  "modelvol_cache_disk_used_percent %d\n",
                  (unsigned long long)m->cache_bytes, m->disk_pct);
    sb_printf(&b, "# HELP modelvol_publishes_total NodePublishVolume calls, by result.\n"
                  "# TYPE modelvol_publishes_total counter\n");
    sb_printf(&b, "modelvol_publishes_total{result=\"ok\"} %llu\n",
              (unsigned long long)m->publishes[0]);
    for (unsigned i = 1; i < N_CODES; i++)
        if (m->publishes[i])
            sb_printf(&b, "modelvol_publishes_total{result=\"%s\"} %llu\n", csi_code_label(i),
                      (unsigned long long)m->publishes[i]);
    pthread_mutex_unlock(&m->lock);
    render_budget(&b, p->budget);
    bool ready = atomic_load(&p->ready);
    sb_printf(&b,
              "# HELP modelvol_ready 1 once cache recovery has finished.\n"
              "# TYPE modelvol_ready gauge\n"
              "modelvol_ready %d\n",
              ready ? 1 : 0);
    _cleanup_free_ char *reg = csi_register_metrics(p);
    _cleanup_free_ char *events = csi_events_metrics(p);
    sb_printf(&b, "%s%s", reg, events);
    return b.s;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    csi_plugin *p = cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    unsigned status = MHD_HTTP_OK;
    char *body;
    const char *type = "text/plain; charset=utf-8";
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
        body = mv_xstrdup("method not allowed\n");
    } else if (strcmp(url, "/metrics") == 0) {
        body = csi_metrics_render(p);
        type = "text/plain; version=0.0.4; charset=utf-8";
    } else if (strcmp(url, "/healthz") == 0) {
        bool ready = atomic_load(&p->ready);
        status = ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
        body = mv_xstrdup(ready ? "ok\n" : "starting: cache recovery in progress\n");
    } else {
        status = MHD_HTTP_NOT_FOUND;
        body = mv_xstrdup("not found: try /metrics or /healthz\n");
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", type);
    enum MHD_Result r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

/* "127.0.0.1:9808", "[::1]:9808" or ":9808" (all IPv4 interfaces). */
static int parse_addr(const char *addr, struct sockaddr_storage *ss, unsigned *flags, mv_error *err)
{
    memset(ss, 0, sizeof(*ss)); /* never left unset, even on the error paths */
    const char *colon = strrchr(addr, ':');
    if (!colon || !colon[1])
        return mv_error_set(err, -EINVAL, "metrics address \"%s\" has no :port", addr);
    char *end = NULL;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || *end || port == 0 || port > 65535)
        return mv_error_set(err, -EINVAL, "metrics address \"%s\": bad port", addr);
    _cleanup_free_ char *host = mv_xstrndup(addr, (size_t)(colon - addr));
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
            return mv_error_set(err, -EINVAL, "metrics address \"%s\": bad IPv6 address", addr);
        *flags |= MHD_USE_IPv6;
        return 0;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    if (!*host) {
        s4->sin_addr.s_addr = htonl(INADDR_ANY);
        return 0;
    }
    if (strcmp(host, "localhost") == 0)
        return inet_pton(AF_INET, "127.0.0.1", &s4->sin_addr) == 1 ? 0 : -EINVAL;
    if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
        return mv_error_set(err, -EINVAL, "metrics address \"%s\": bad IPv4 address", addr);
    return 0;
}

int csi_metrics_start(csi_plugin *p, const char *addr, mv_error *err)
{
    struct sockaddr_storage ss;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    int r = parse_addr(addr, &ss, &flags, err);
    if (r < 0)
        return r;
    uint16_t port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    p->metrics->mhd =
        MHD_start_daemon(flags, port, NULL, NULL, answer, p, MHD_OPTION_SOCK_ADDR,
                         (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (!p->metrics->mhd)
        return mv_error_set(err, -EADDRINUSE, "metrics: cannot listen on %s", addr);
    return 0;
}

void csi_metrics_stop(csi_plugin *p)
{
    if (p->metrics->mhd)
        MHD_stop_daemon(p->metrics->mhd);
    p->metrics->mhd = NULL;
}
