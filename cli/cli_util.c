/* cli_util.c — small helpers shared by modelpull and modelpush. */
#include "cli.h"

#include <getopt.h>

void cli_error(const char *prog, const mv_error *err)
{
    fprintf(stderr, "%s: %s\n", prog, err && err->msg[0] ? err->msg : "failed");
}

int cli_simple_args(int argc, char **argv, const char *usage, int min_pos, int max_pos)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (ch == 'h') {
            printf("%s\n", usage);
            return 0;
        }
        fprintf(stderr, "%s\n", usage);
        return 2;
    }
    int npos = argc - optind;
    if (npos < min_pos || (max_pos >= 0 && npos > max_pos)) {
        fprintf(stderr, "%s\n", usage);
        return 2;
    }
    return -1;
}

bool cli_selector_arg(int ch, const char *arg, cache_request_args *a)
{
    switch (ch) {
    case CLI_OPT_ARTIFACT_TYPE:
        a->artifact_type = arg;
        return true;
    case CLI_OPT_PLATFORM:
        a->platform = arg;
        return true;
    case CLI_OPT_ANNOTATION:
        a->annotation = arg;
        return true;
    default:
        return false;
    }
}
