/* events.c — Kubernetes Events on the pods the plugin publishes for
 * (CSIDriver podInfoOnMount), so `kubectl describe pod` shows the pull:
 * core/v1 Events POSTed to the API server with the pod's service account
 * token, by one worker thread from a bounded queue, so an API server that
 * is slow or gone never delays or fails a publish: what cannot be sent is
 * dropped and counted (modelvol_events_failed_total). The token is read
 * for every request (it rotates) and never logged. csi/ talks to the
 * Kubernetes API here only, and never to a registry. */
#include <curl/curl.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "csi.h"

#define QUEUE_MAX 64

typedef struct event {
    char *ns, *pod, *uid, *reason, *type, *message;
} event;

struct csi_events {
    char *api; /* https://host:port */
    char *token_file, *ca_file, *node;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    event queue[QUEUE_MAX];
    size_t head, len;
    bool stopping;
    pthread_t worker;
    uint64_t sent, failed;
};

static void event_clear(event *e)
{
    free(e->ns);
    free(e->pod);
    free(e->uid);
    free(e->reason);
    free(e->type);
    free(e->message);
    memset(e, 0, sizeof(*e));
}

static size_t discard(char *ptr, size_t size, size_t n, void *ud)
{
    (void)ptr;
    (void)ud;
    return size * n;
}

static char *read_token(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char buf[16384];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = '\0';
    char *out = n ? mv_xstrdup(buf) : NULL;
    explicit_bzero(buf, sizeof(buf));
    return out;
}

static char *event_json(const csi_events *ev, const event *e)
{
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* A name of our own per event: <pod>.<ns since epoch in hex>. */
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    _cleanup_free_ char *name =
        mv_xasprintf("%.200s.%llx", e->pod,
                     (unsigned long long)t.tv_sec * 1000000000ull + (unsigned long long)t.tv_nsec);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "apiVersion", "v1");
    cJSON_AddStringToObject(o, "kind", "Event");
    cJSON *meta = cJSON_AddObjectToObject(o, "metadata");
    cJSON_AddStringToObject(meta, "name", name);
    cJSON_AddStringToObject(meta, "namespace", e->ns);
    cJSON *io = cJSON_AddObjectToObject(o, "involvedObject");
    cJSON_AddStringToObject(io, "apiVersion", "v1");
    cJSON_AddStringToObject(io, "kind", "Pod");
    cJSON_AddStringToObject(io, "namespace", e->ns);
    cJSON_AddStringToObject(io, "name", e->pod);
    if (e->uid)
        cJSON_AddStringToObject(io, "uid", e->uid);
    cJSON_AddStringToObject(o, "reason", e->reason);
    cJSON_AddStringToObject(o, "message", e->message);
    cJSON_AddStringToObject(o, "type", e->type);
    cJSON *src = cJSON_AddObjectToObject(o, "source");
    cJSON_AddStringToObject(src, "component", "modelvol-csi");
    cJSON_AddStringToObject(src, "host", ev->node);
    cJSON_AddStringToObject(o, "firstTimestamp", ts);
    cJSON_AddStringToObject(o, "lastTimestamp", ts);
    cJSON_AddNumberToObject(o, "count", 1);
    char *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

/* One POST; 0 when the API server answered 2xx. */
static int send_event(csi_events *ev, const event *e, char *why, size_t why_len)
{
    char *token = read_token(ev->token_file);
    if (!token) {
        snprintf(why, why_len, "no service account token in %s", ev->token_file);
        return -1;
    }
    char *body = event_json(ev, e);
    _cleanup_free_ char *url = mv_xasprintf("%s/api/v1/namespaces/%s/events", ev->api, e->ns);
    _cleanup_free_ char *auth = mv_xasprintf("Authorization: Bearer %s", token);
    explicit_bzero(token, strlen(token));
    free(token);
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(NULL, auth);
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_CAINFO, ev->ca_file);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    explicit_bzero(auth, strlen(auth));
    cJSON_free(body);
    if (rc != CURLE_OK) {
        snprintf(why, why_len, "%s", curl_easy_strerror(rc));
        return -1;
    }
    if (status < 200 || status >= 300) {
        snprintf(why, why_len, "HTTP %ld from the API server", status);
        return -1;
    }
    return 0;
}

static void *worker(void *arg)
{
    csi_events *ev = arg;
    pthread_mutex_lock(&ev->lock);
    for (;;) {
        while (ev->len == 0 && !ev->stopping)
            pthread_cond_wait(&ev->cond, &ev->lock);
        if (ev->len == 0)
            break;
        event e = ev->queue[ev->head];
        memset(&ev->queue[ev->head], 0, sizeof(e));
        ev->head = (ev->head + 1) % QUEUE_MAX;
        ev->len--;
        pthread_mutex_unlock(&ev->lock);
        char why[256] = "";
        int r = send_event(ev, &e, why, sizeof(why));
        if (r < 0)
            mv_log("warn", "event_failed", "pod", e.pod, "namespace", e.ns, "reason", e.reason,
                   "error", why);
        event_clear(&e);
        pthread_mutex_lock(&ev->lock);
        if (r < 0)
            ev->failed++;
        else
            ev->sent++;
    }
    pthread_mutex_unlock(&ev->lock);
    return NULL;
}

int csi_events_start(csi_plugin *p, const char *api, const char *token_file, const char *ca_file,
                     mv_error *err)
{
    _cleanup_free_ char *from_env = NULL;
    if (!api) {
        const char *host = getenv("KUBERNETES_SERVICE_HOST");
        const char *port = getenv("KUBERNETES_SERVICE_PORT");
        if (!host || !*host) {
            mv_log("info", "events_off", "reason", "not in a cluster (no KUBERNETES_SERVICE_HOST)");
            return 0;
        }
        from_env = strchr(host, ':') ? mv_xasprintf("https://[%s]:%s", host, port ? port : "443")
                                     : mv_xasprintf("https://%s:%s", host, port ? port : "443");
        api = from_env;
    }
    if (strcmp(api, "off") == 0)
        return 0;
    if (strncmp(api, "https://", 8) != 0)
        return mv_error_set(err, -EINVAL, "--kube-api-url \"%s\" must be https://HOST:PORT", api);
    csi_events *ev = mv_xcalloc(1, sizeof(*ev));
    ev->api = mv_xstrdup(api);
    size_t l = strlen(ev->api);
    while (l > 8 && ev->api[l - 1] == '/')
        ev->api[--l] = '\0';
    ev->token_file = mv_xstrdup(token_file);
    ev->ca_file = mv_xstrdup(ca_file);
    ev->node = mv_xstrdup(p->node_id ? p->node_id : "");
    pthread_mutex_init(&ev->lock, NULL);
    pthread_cond_init(&ev->cond, NULL);
    if (pthread_create(&ev->worker, NULL, worker, ev) != 0) {
        csi_events *tmp = ev;
        free(tmp->api);
        free(tmp->token_file);
        free(tmp->ca_file);
        free(tmp->node);
        free(tmp);
        return mv_error_set(err, -EAGAIN, "start the events thread");
    }
    p->events = ev;
    mv_log("info", "events_on", "api", ev->api);
    return 0;
}

void csi_events_stop(csi_plugin *p)
{
    csi_events *ev = p->events;
    if (!ev)
        return;
    pthread_mutex_lock(&ev->lock);
    ev->stopping = true;
    pthread_cond_broadcast(&ev->cond);
    pthread_mutex_unlock(&ev->lock);
    pthread_join(ev->worker, NULL);
    pthread_cond_destroy(&ev->cond);
    pthread_mutex_destroy(&ev->lock);
    free(ev->api);
    free(ev->token_file);
    free(ev->ca_file);
    free(ev->node);
    free(ev);
    p->events = NULL;
}

void csi_events_post(csi_plugin *p, const csi_pod *pod, bool warning, const char *reason,
                     const char *fmt, ...)
{
    csi_events *ev = p->events;
    if (!ev || !pod->ns || !pod->name || !*pod->ns || !*pod->name)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    if (!msg)
        return;
    pthread_mutex_lock(&ev->lock);
    if (ev->len == QUEUE_MAX || ev->stopping) {
        ev->failed++; /* dropped: the API server does not keep up */
        pthread_mutex_unlock(&ev->lock);
        free(msg);
        return;
    }
    event *e = &ev->queue[(ev->head + ev->len) % QUEUE_MAX];
    e->ns = mv_xstrdup(pod->ns);
    e->pod = mv_xstrdup(pod->name);
    e->uid = pod->uid && *pod->uid ? mv_xstrdup(pod->uid) : NULL;
    e->reason = mv_xstrdup(reason);
    e->type = mv_xstrdup(warning ? "Warning" : "Normal");
    e->message = msg;
    ev->len++;
    pthread_cond_signal(&ev->cond);
    pthread_mutex_unlock(&ev->lock);
}

char *csi_events_metrics(csi_plugin *p)
{
    csi_events *ev = p->events;
    if (!ev)
        return mv_xstrdup("");
    pthread_mutex_lock(&ev->lock);
    uint64_t sent = ev->sent, failed = ev->failed;
    pthread_mutex_unlock(&ev->lock);
    return mv_xasprintf("# HELP modelvol_events_total Pod events the API server accepted.\n"
                        "# TYPE modelvol_events_total counter\n"
                        "modelvol_events_total %llu\n"
                        "# HELP modelvol_events_failed_total Pod events not delivered (API server "
                        "unreachable or refusing, or the queue full); mounts are unaffected.\n"
                        "# TYPE modelvol_events_failed_total counter\n"
                        "modelvol_events_failed_total %llu\n",
                        (unsigned long long)sent, (unsigned long long)failed);
}
