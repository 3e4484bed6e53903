/* modelpull_rm.c — `modelpull rm REF...`: remove models from the node
 * cache, with every blob and layer no other model uses. A pinned model (in
 * use by a pod or the pre-warm list) is refused. */
#include "cli.h"

static int rm_main(const cli_global *g, int argc, char **argv)
{
    int arc = cli_simple_args(argc, argv, "usage: modelpull [--cache DIR] rm REF...", 1, -1);
    if (arc >= 0)
        return arc;
    mv_error err = MV_ERROR_INIT;
    _cleanup_cache_ cache *c = NULL;
    if (cache_open(g->cache_dir, NULL, &c, &err) < 0) {
        cli_error("modelpull", &err);
        return 1;
    }
    int rc = 0;
    for (int i = optind; i < argc; i++) {
        size_t n = 0;
        if (cache_remove(c, argv[i], &n, &err) < 0) {
            cli_error("modelpull", &err);
            rc = 1;
            continue;
        }
        printf("removed %s (%zu tree%s)\n", argv[i], n, n == 1 ? "" : "s");
    }
    return rc;
}

CLI_VERB("rm", "remove models from the node cache", rm_main)
