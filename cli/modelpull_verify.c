/* modelpull_verify.c — `modelpull verify`: re-hash every blob in the node
 * cache and compare every extracted layer with its blob; corrupt blobs are
 * quarantined, corrupt layers removed, and the exit status is then 1. */
#include "cli.h"

static int verify_main(const cli_global *g, int argc, char **argv)
{
    int arc = cli_simple_args(argc, argv, "usage: modelpull [--cache DIR] verify", 0, 0);
    if (arc >= 0)
        return arc;
    mv_error err = MV_ERROR_INIT;
    _cleanup_cache_ cache *c = NULL;
    cache_verify_result res;
    if (cache_open(g->cache_dir, NULL, &c, &err) < 0 || cache_verify(c, &res, &err) < 0) {
        cli_error("modelpull", &err);
        return 1;
    }
    char size[32];
    for (size_t i = 0; i < res.corrupt; i++)
        fprintf(stderr, "modelpull: blob %s is corrupt: moved to %s/quarantine\n",
                res.quarantined[i], cache_root(c));
    for (size_t i = 0; i < res.layers_corrupt; i++)
        fprintf(stderr, "modelpull: extracted layer %s no longer matches its blob: removed\n",
                res.bad_layers[i]);
    printf("verify: %zu blobs (%s) and %zu layers checked, %zu corrupt, %zu trees removed\n",
           res.blobs_checked, mv_format_size(res.bytes_checked, size, sizeof(size)),
           res.layers_checked, res.corrupt + res.layers_corrupt, res.trees_removed);
    int rc = res.corrupt || res.layers_corrupt ? 1 : 0;
    cache_verify_result_clear(&res);
    return rc;
}

CLI_VERB("verify", "re-hash the node cache and quarantine corrupt blobs", verify_main)
