/* progress.c — the one progress display of modelpull and modelpush: blob
 * updates become a terminal bar (bytes, rate, ETA, redrawn at most 10 times
 * a second) or JSON lines. It keeps a small table of blobs to sum progress
 * over concurrent transfers; a lock serialises the workers reporting. */
#include "mv.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#define REDRAW_MS  100
#define DIGEST_MAX 136

typedef struct blob_row {
    char digest[DIGEST_MAX];
    uint64_t done;
    uint64_t total;
    bool finished;
} blob_row;

struct mv_progress {
    mv_progress_mode mode;
    FILE *out;
    pthread_mutex_t lock; /* guards everything below */
    blob_row *rows;
    size_t n;
    bool expected; /* the job's size came from mv_progress_expect */
    uint64_t expect_bytes;
    size_t expect_blobs;
    uint64_t start_ms;
    uint64_t last_draw_ms;
    /* Bytes that were not transferred by us: resumed, skipped, mounted. */
    uint64_t first_done;
    bool drew;
    /* Rate over a sliding window so a stall shows. */
    uint64_t win_ms;
    uint64_t win_bytes;
    double rate;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int mv_progress_mode_parse(const char *s, mv_progress_mode *out, mv_error *err)
{
    if (strcmp(s, "auto") == 0)
        *out = MV_PROGRESS_AUTO;
    else if (strcmp(s, "bar") == 0 || strcmp(s, "tty") == 0)
        *out = MV_PROGRESS_BAR;
    else if (strcmp(s, "json") == 0)
        *out = MV_PROGRESS_JSON;
    else if (strcmp(s, "none") == 0)
        *out = MV_PROGRESS_NONE;
    else
        return mv_error_set(err, -EINVAL, "--progress \"%s\": expected auto, bar, json or none", s);
    return 0;
}

mv_progress *mv_progress_new(mv_progress_mode mode, FILE *out)
{
    mv_progress *p = mv_xcalloc(1, sizeof(*p));
    if (mode == MV_PROGRESS_AUTO)
        mode = isatty(fileno(out)) ? MV_PROGRESS_BAR : MV_PROGRESS_NONE;
    p->mode = mode;
    p->out = out;
    pthread_mutex_init(&p->lock, NULL);
    p->start_ms = now_ms();
    p->win_ms = p->start_ms;
    return p;
}

void mv_progress_expect(mv_progress *p, uint64_t bytes, size_t blobs)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->expected = true;
    p->expect_bytes = bytes;
    p->expect_blobs = blobs;
    pthread_mutex_unlock(&p->lock);
}

void mv_progress_free(mv_progress *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->lock);
    free(p->rows);
    free(p);
}

static blob_row *row_for(mv_progress *p, const char *digest)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->rows[i].digest, digest) == 0)
            return &p->rows[i];
    p->rows = mv_xrealloc(p->rows, (p->n + 1) * sizeof(*p->rows));
    blob_row *r = &p->rows[p->n++];
    memset(r, 0, sizeof(*r));
    snprintf(r->digest, sizeof(r->digest), "%s", digest);
    return r;
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static const char *kind_name(mv_progress_kind k)
{
    static const char *const names[] = {"start", "progress", "done", "skip",
                                        "mount", "retry",    "info"};
    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "unknown";
}

static void emit_json(mv_progress *p, const mv_progress_update *u)
{
    fputs("{\"event\":", p->out);
    json_string(p->out, u->name ? u->name : kind_name(u->kind));
    if (u->digest) {
        fputs(",\"digest\":", p->out);
        json_string(p->out, u->digest);
    }
    if (u->label) {
        fputs(",\"file\":", p->out);
        json_string(p->out, u->label);
    }
    fprintf(p->out, ",\"done\":%llu,\"total\":%llu,\"elapsed_ms\":%llu",
            (unsigned long long)u->done, (unsigned long long)u->total,
            (unsigned long long)(now_ms() - p->start_ms));
    if (u->message) {
        fputs(",\"message\":", p->out);
        json_string(p->out, u->message);
    }
    fputs("}\n", p->out);
    fflush(p->out);
}

static void draw_bar(mv_progress *p, bool final)
{
    uint64_t done = 0, total = 0;
    size_t finished = 0;
    for (size_t i = 0; i < p->n; i++) {
        done += p->rows[i].done;
        total += p->rows[i].total;
        finished += p->rows[i].finished;
    }
    size_t blobs = p->n;
    if (p->expected) {
        total = p->expect_bytes;
        blobs = p->expect_blobs;
    }
    uint64_t now = now_ms();
    if (now - p->win_ms >= 1000 || final) {
        uint64_t dt = now - p->win_ms;
        uint64_t db = done >= p->win_bytes ? done - p->win_bytes : 0;
        double inst = dt ? (double)db * 1000.0 / (double)dt : 0;
        p->rate = p->rate == 0 ? inst : 0.5 * p->rate + 0.5 * inst;
        p->win_ms = now;
        p->win_bytes = done;
    }
    if (final) {
        /* The rate counts bytes moved, not bytes found already there. */
        uint64_t el = now - p->start_ms;
        uint64_t net = done >= p->first_done ? done - p->first_done : 0;
        p->rate = el ? (double)net * 1000.0 / (double)el : 0;
    }
    const int width = 30;
    int fill = total ? (int)((double)done / (double)total * width) : 0;
    if (fill > width)
        fill = width;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '-';
    bar[width] = '\0';
    char a[32], b[32], r[32];
    mv_format_size(done, a, sizeof(a));
    mv_format_size(total, b, sizeof(b));
    mv_format_size((uint64_t)p->rate, r, sizeof(r));
    char eta[32] = "--";
    if (p->rate > 1 && total > done) {
        uint64_t s = (uint64_t)((double)(total - done) / p->rate);
        snprintf(eta, sizeof(eta), "%llu:%02llu", (unsigned long long)(s / 60),
                 (unsigned long long)(s % 60));
    } else if (total && done >= total) {
        snprintf(eta, sizeof(eta), "0:00");
    }
    fprintf(p->out, "\r\033[K[%s] %s / %s  %s/s  ETA %s  %zu/%zu blobs", bar, a, b, r, eta,
            finished, blobs);
    if (final)
        fputc('\n', p->out);
    fflush(p->out);
    p->drew = !final;
}

/* Folds one update into the blob table. */
static void account(mv_progress *p, const mv_progress_update *u)
{
    if (!u->digest || u->kind == MV_PROGRESS_RETRY || u->kind == MV_PROGRESS_INFO)
        return;
    blob_row *r = row_for(p, u->digest);
    switch (u->kind) {
    case MV_PROGRESS_START:
        if (r->done == 0)
            p->first_done += u->done;
        r->done = u->done;
        r->total = u->total;
        break;
    case MV_PROGRESS_STEP:
        r->done = u->done;
        r->total = u->total;
        break;
    case MV_PROGRESS_SKIP:
    case MV_PROGRESS_MOUNT:
        if (u->total > r->done)
            p->first_done += u->total - r->done;
        /* fall through */
    default:
        r->done = u->total;
        r->total = u->total;
        r->finished = true;
        break;
    }
}

void mv_progress_report(mv_progress *p, const mv_progress_update *u)
{
    if (!p || p->mode == MV_PROGRESS_NONE)
        return;
    pthread_mutex_lock(&p->lock);
    account(p, u);
    if (p->mode == MV_PROGRESS_JSON) {
        emit_json(p, u);
    } else if (u->kind != MV_PROGRESS_INFO) {
        if (u->kind == MV_PROGRESS_RETRY && u->message) {
            /* Retries are worth a line of their own above the bar. */
            fprintf(p->out, "%s%s\n", p->drew ? "\r\033[K" : "", u->message);
            p->drew = false;
        }
        bool finished = u->kind == MV_PROGRESS_DONE || u->kind == MV_PROGRESS_SKIP ||
                        u->kind == MV_PROGRESS_MOUNT;
        uint64_t now = now_ms();
        if (now - p->last_draw_ms >= REDRAW_MS || finished) {
            p->last_draw_ms = now;
            draw_bar(p, false);
        }
    }
    pthread_mutex_unlock(&p->lock);
}

void mv_progress_note(mv_progress *p, const char *event, const char *json_fields, const char *text)
{
    if (!p || p->mode == MV_PROGRESS_NONE)
        return;
    pthread_mutex_lock(&p->lock);
    if (p->mode == MV_PROGRESS_JSON) {
        fputs("{\"event\":", p->out);
        json_string(p->out, event);
        fprintf(p->out, "%s%s}\n", json_fields && *json_fields ? "," : "",
                json_fields ? json_fields : "");
        fflush(p->out);
    } else if (text) {
        /* The bar keeps its last state on the line above. */
        fprintf(p->out, "%s%s\n", p->drew ? "\n" : "", text);
        fflush(p->out);
        p->drew = false;
    }
    pthread_mutex_unlock(&p->lock);
}

void mv_progress_finish(mv_progress *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    if (p->mode == MV_PROGRESS_BAR && p->n)
        draw_bar(p, true);
    pthread_mutex_unlock(&p->lock);
}
