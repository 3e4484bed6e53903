/* cli_progress.c — turns pull events into a terminal progress bar (bytes,
 * rate, ETA, redrawn at most 10 times a second) or JSON lines. It keeps a
 * small table of blobs to sum progress over several concurrent downloads. */
#include "cli_progress.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#define REDRAW_MS 100

typedef struct blob_row {
    char digest[OCI_DIGEST_MAX];
    uint64_t done;
    uint64_t total;
    bool finished;
} blob_row;

struct cli_progress {
    cli_progress_mode mode;
    FILE *out;
    blob_row *rows;
    size_t n;
    uint64_t start_ms;
    uint64_t last_draw_ms;
    uint64_t first_done; /* bytes present when the first event came (resumed) */
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

int cli_progress_mode_parse(const char *s, cli_progress_mode *out, mv_error *err)
{
    if (strcmp(s, "auto") == 0)
        *out = CLI_PROGRESS_AUTO;
    else if (strcmp(s, "bar") == 0 || strcmp(s, "tty") == 0)
        *out = CLI_PROGRESS_BAR;
    else if (strcmp(s, "json") == 0)
        *out = CLI_PROGRESS_JSON;
    else if (strcmp(s, "none") == 0)
        *out = CLI_PROGRESS_NONE;
    else
        return mv_error_set(err, -EINVAL, "--progress \"%s\": expected auto, bar, json or none", s);
    return 0;
}

cli_progress *cli_progress_new(cli_progress_mode mode, FILE *out)
{
    cli_progress *p = mv_xcalloc(1, sizeof(*p));
    if (mode == CLI_PROGRESS_AUTO)
        mode = isatty(fileno(out)) ? CLI_PROGRESS_BAR : CLI_PROGRESS_NONE;
    p->mode = mode;
    p->out = out;
    p->start_ms = now_ms();
    p->win_ms = p->start_ms;
    return p;
}

void cli_progress_free(cli_progress *p)
{
    if (!p)
        return;
    free(p->rows);
    free(p);
}

static blob_row *row_for(cli_progress *p, const char *digest)
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

static void emit_json(cli_progress *p, const pull_event *ev)
{
    static const char *const kinds[] = {"",          "manifest", "blob_start", "blob_progress",
                                        "blob_done", "retry"};
    const char *k =
        ev->kind >= PULL_EV_MANIFEST && ev->kind <= PULL_EV_RETRY ? kinds[ev->kind] : "unknown";
    fprintf(p->out, "{\"event\":\"%s\"", k);
    if (ev->digest) {
        fputs(",\"digest\":", p->out);
        json_string(p->out, ev->digest);
    }
    fprintf(p->out, ",\"done\":%llu,\"total\":%llu,\"elapsed_ms\":%llu",
            (unsigned long long)ev->done, (unsigned long long)ev->total,
            (unsigned long long)(now_ms() - p->start_ms));
    if (ev->message) {
        fputs(",\"message\":", p->out);
        json_string(p->out, ev->message);
    }
    fputs("}\n", p->out);
    fflush(p->out);
}

static void draw_bar(cli_progress *p, bool final)
{
    uint64_t done = 0, total = 0;
    size_t finished = 0;
    for (size_t i = 0; i < p->n; i++) {
        done += p->rows[i].done;
        total += p->rows[i].total;
        finished += p->rows[i].finished;
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
            finished, p->n);
    if (final)
        fputc('\n', p->out);
    fflush(p->out);
    p->drew = true;
}

void cli_progress_event(void *ctx, const pull_event *ev)
{
    cli_progress *p = ctx;
    if (!p || p->mode == CLI_PROGRESS_NONE)
        return;
    if (ev->digest && ev->kind != PULL_EV_MANIFEST && ev->kind != PULL_EV_RETRY) {
        blob_row *r = row_for(p, ev->digest);
        if (ev->kind == PULL_EV_BLOB_START && r->done == 0)
            p->first_done += ev->done;
        r->done = ev->done;
        r->total = ev->total;
        if (ev->kind == PULL_EV_BLOB_DONE) {
            r->done = ev->total;
            r->finished = true;
        }
    }
    if (p->mode == CLI_PROGRESS_JSON) {
        emit_json(p, ev);
        return;
    }
    if (ev->kind == PULL_EV_RETRY && ev->message) {
        /* Retries are worth a line of their own above the bar. */
        fprintf(p->out, "%s%s\n", p->drew ? "\r\033[K" : "", ev->message);
        p->drew = false;
    }
    uint64_t now = now_ms();
    if (now - p->last_draw_ms >= REDRAW_MS || ev->kind == PULL_EV_BLOB_DONE) {
        p->last_draw_ms = now;
        draw_bar(p, false);
    }
}

void cli_progress_finish(cli_progress *p)
{
    if (!p)
        return;
    if (p->mode == CLI_PROGRESS_BAR && p->n)
        draw_bar(p, true);
}
