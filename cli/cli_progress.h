/* cli_progress.h — progress display for pull events, shared by modelpull and
 * modelpush: a one-line bar with bytes, rate and ETA on a terminal, or JSON
 * lines (--progress=json) for machines. Pass cli_progress_event as
 * pull_options.on_event with the cli_progress as event_ctx. */
#ifndef MODELVOL_CLI_PROGRESS_H
#define MODELVOL_CLI_PROGRESS_H

#include "puller.h"

typedef enum {
    CLI_PROGRESS_AUTO = 0, /* bar when out is a terminal, else nothing */
    CLI_PROGRESS_BAR,
    CLI_PROGRESS_JSON,
    CLI_PROGRESS_NONE,
} cli_progress_mode;

typedef struct cli_progress cli_progress;

/* "auto", "bar" (or "tty"), "json", "none". */
int cli_progress_mode_parse(const char *s, cli_progress_mode *out, mv_error *err);
/* out: where to draw (stderr for the bar; JSON lines may go to stdout). */
cli_progress *cli_progress_new(cli_progress_mode mode, FILE *out);
/* A pull_event_fn: ctx is the cli_progress. */
void cli_progress_event(void *ctx, const pull_event *ev);
/* Draws the final state (and ends the bar's line). */
void cli_progress_finish(cli_progress *p);
void cli_progress_free(cli_progress *p);

#endif
