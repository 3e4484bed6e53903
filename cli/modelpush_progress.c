/* modelpush_progress.c — what the user sees while a push runs: a one-line
 * bar redrawn on a TTY (stderr), or JSON lines on stderr for machines
 * (--progress=json). Upload workers report from their own threads, so every
 * entry point takes the lock. stdout stays reserved for the result line. */
#include "modelpush.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <time.h>

struct push_progress {
    push_progress_mode mode;
    pthread_mutex_t lock;
    uint64_t total; /* bytes of all blobs */
    uint64_t done;  /* bytes known present (skipped, mounted or sent) */
    size_t n_blobs;
    size_t blobs_done;
    struct timespec start;
    uint64_t start_done; /* bytes already present when the clock started */
    struct timespec last_draw;
    bool drawn;
    /* Per-blob last reported byte count, so "progress" adds deltas. */
    struct {
        char digest[OCI_DIGEST_MAX];
        uint64_t done;
    } * seen;
    size_t n_seen;
};

push_progress *push_progress_new(push_progress_mode mode, uint64_t total_bytes, size_t n_blobs)
{
    if (mode == PUSH_PROGRESS_AUTO)
        mode = isatty(STDERR_FILENO) ? PUSH_PROGRESS_TTY : PUSH_PROGRESS_NONE;
    push_progress *p = mv_xcalloc(1, sizeof(*p));
    p->mode = mode;
    p->total = total_bytes;
    p->n_blobs = n_blobs;
    p->seen = mv_xcalloc(n_blobs ? n_blobs : 1, sizeof(*p->seen));
    clock_gettime(CLOCK_MONOTONIC, &p->start);
    pthread_mutex_init(&p->lock, NULL);
    return p;
}

void push_progress_free(push_progress *p)
{
    if (!p)
        return;
    if (p->mode == PUSH_PROGRESS_TTY && p->drawn)
        fputc('\n', stderr);
    pthread_mutex_destroy(&p->lock);
    free(p->seen);
    free(p);
}

static uint64_t *seen_slot(push_progress *p, const char *digest)
{
    for (size_t i = 0; i < p->n_seen; i++)
        if (strcmp(p->seen[i].digest, digest) == 0)
            return &p->seen[i].done;
    if (p->n_seen == p->n_blobs)
        return NULL;
    snprintf(p->seen[p->n_seen].digest, OCI_DIGEST_MAX, "%s", digest);
    return &p->seen[p->n_seen++].done;
}

static void draw(push_progress *p, bool force)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms =
        (now.tv_sec - p->last_draw.tv_sec) * 1000 + (now.tv_nsec - p->last_draw.tv_nsec) / 1000000;
    if (!force && p->drawn && ms < 100)
        return;
    p->last_draw = now;
    p->drawn = true;
    char a[32], b[32];
    int width = 30;
    int fill = p->total ? (int)((double)p->done / (double)p->total * width) : width;
    if (fill > width)
        fill = width;
    char bar[64];
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, '.', (size_t)(width - fill));
    bar[width] = '\0';
    /* The rate counts bytes sent, not blobs found already present. */
    double secs =
        (double)(now.tv_sec - p->start.tv_sec) + (double)(now.tv_nsec - p->start.tv_nsec) / 1e9;
    char r[32];
    uint64_t sent = p->done - p->start_done;
    mv_format_size(secs > 0.2 ? (uint64_t)((double)sent / secs) : 0, r, sizeof(r));
    fprintf(stderr, "\r[%s] %s / %s  %s/s  %zu/%zu blobs ", bar,
            mv_format_size(p->done, a, sizeof(a)), mv_format_size(p->total, b, sizeof(b)), r,
            p->blobs_done, p->n_blobs);
    fflush(stderr);
}

void push_progress_blob(push_progress *p, const char *event, const char *digest, const char *label,
                        uint64_t done, uint64_t total)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    uint64_t *slot = seen_slot(p, digest);
    bool finished =
        strcmp(event, "done") == 0 || strcmp(event, "skip") == 0 || strcmp(event, "mount") == 0;
    uint64_t now_done = finished ? total : done;
    if (slot && now_done > *slot) {
        p->done += now_done - *slot;
        /* Skipped, mounted and resumed bytes were never sent by us. */
        if (strcmp(event, "progress") != 0 && strcmp(event, "done") != 0)
            p->start_done += now_done - *slot;
        *slot = now_done;
    }
    if (finished)
        p->blobs_done++;
    if (p->mode == PUSH_PROGRESS_JSON) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "event", event);
        cJSON_AddStringToObject(o, "digest", digest);
        cJSON_AddStringToObject(o, "file", label ? label : "");
        cJSON_AddNumberToObject(o, "done", (double)done);
        cJSON_AddNumberToObject(o, "total", (double)total);
        char *s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        fprintf(stderr, "%s\n", s);
        fflush(stderr);
        free(s);
    } else if (p->mode == PUSH_PROGRESS_TTY) {
        draw(p, finished);
    }
    pthread_mutex_unlock(&p->lock);
}

void push_progress_note(push_progress *p, const char *event, const char *json_fields,
                        const char *text)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    if (p->mode == PUSH_PROGRESS_JSON) {
        fprintf(stderr, "{\"event\":\"%s\"%s%s}\n", event, json_fields && *json_fields ? "," : "",
                json_fields ? json_fields : "");
        fflush(stderr);
    } else if (p->mode == PUSH_PROGRESS_TTY && text) {
        if (p->drawn)
            fputc('\n', stderr);
        p->drawn = false;
        fprintf(stderr, "%s\n", text);
    }
    pthread_mutex_unlock(&p->lock);
}

void push_progress_retry(push_progress *p, const char *digest, const char *label,
                         const char *message)
{
    if (!p || p->mode != PUSH_PROGRESS_JSON)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event", "retry");
    cJSON_AddStringToObject(o, "digest", digest ? digest : "");
    cJSON_AddStringToObject(o, "file", label ? label : "");
    cJSON_AddStringToObject(o, "message", message ? message : "");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    pthread_mutex_lock(&p->lock);
    fprintf(stderr, "%s\n", s);
    fflush(stderr);
    pthread_mutex_unlock(&p->lock);
    free(s);
}
