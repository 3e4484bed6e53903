/* cli_util.c — small helpers shared by modelpull and modelpush. */
#include "cli.h"

void cli_error(const char *prog, const mv_error *err)
{
    fprintf(stderr, "%s: %s\n", prog, err && err->msg[0] ? err->msg : "failed");
}
