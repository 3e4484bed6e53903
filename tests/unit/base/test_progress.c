/* test_progress.c — the progress display of both CLIs (base/progress.c):
 * JSON lines carry every event with escaped strings; the bar sums
 * concurrent blobs and ends its line; mode names parse. The events are a
 * download as modelpull reports it, under modelpull's JSON event names. */
#include "mv.h"
#include "mvtest.h"

#include <string.h>

static char *run_events(mv_progress_mode mode)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    mv_progress *p = mv_progress_new(mode, f);
    const char *a = "sha256:aaaa", *b = "sha256:bbbb";
    mv_progress_update evs[] = {
        {.kind = MV_PROGRESS_START, .name = "blob_start", .digest = a, .done = 0, .total = 100},
        {.kind = MV_PROGRESS_START, .name = "blob_start", .digest = b, .done = 50, .total = 200},
        {.kind = MV_PROGRESS_STEP, .name = "blob_progress", .digest = a, .done = 60, .total = 100},
        {.kind = MV_PROGRESS_RETRY, .digest = b, .message = "500 from \"h\"\n"},
        {.kind = MV_PROGRESS_DONE, .name = "blob_done", .digest = a, .done = 100, .total = 100},
        {.kind = MV_PROGRESS_DONE, .name = "blob_done", .digest = b, .done = 200, .total = 200},
    };
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        mv_progress_report(p, &evs[i]);
    mv_progress_finish(p);
    mv_progress_free(p);
    fclose(f);
    return buf;
}

MV_TEST(json_lines)
{
    char *out = run_events(MV_PROGRESS_JSON);
    int lines = 0;
    for (char *q = out; *q; q++)
        lines += *q == '\n';
    CHECK_INT(lines, 6);
    CHECK_CONTAINS(out, "{\"event\":\"blob_start\",\"digest\":\"sha256:aaaa\",\"done\":0,"
                        "\"total\":100");
    CHECK_CONTAINS(out, "\"event\":\"retry\"");
    CHECK_CONTAINS(out, "\"message\":\"500 from \\\"h\\\"\\u000a\"");
    CHECK_CONTAINS(out, "{\"event\":\"blob_done\",\"digest\":\"sha256:bbbb\",\"done\":200");
    free(out);
}

MV_TEST(bar_sums_blobs)
{
    char *out = run_events(MV_PROGRESS_BAR);
    CHECK_CONTAINS(out, "300 B / 300 B");
    CHECK_CONTAINS(out, "2/2 blobs");
    CHECK_CONTAINS(out, "500 from");
    size_t n = strlen(out);
    CHECK(n > 0 && out[n - 1] == '\n');
    free(out);
}

MV_TEST(none_is_silent)
{
    char *out = run_events(MV_PROGRESS_NONE);
    CHECK_STR(out, "");
    free(out);
}

MV_TEST(mode_names)
{
    mv_progress_mode m;
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(mv_progress_mode_parse("json", &m, &err), 0);
    CHECK_INT(m, MV_PROGRESS_JSON);
    CHECK_INT(mv_progress_mode_parse("tty", &m, &err), 0);
    CHECK_INT(m, MV_PROGRESS_BAR);
    CHECK(mv_progress_mode_parse("fancy", &m, &err) == -EINVAL);
    CHECK_CONTAINS(err.msg, "fancy");
}

int main(void)
{
    MV_RUN(json_lines);
    MV_RUN(bar_sums_blobs);
    MV_RUN(none_is_silent);
    MV_RUN(mode_names);
    MV_DONE();
}
