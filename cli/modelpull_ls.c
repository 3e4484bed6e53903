/* modelpull_ls.c — `modelpull ls`: one line per model tree in the cache,
 * least recently used first: reference, manifest digest, size, last use,
 * pins, and the tree id. */
#include "cli.h"

#include <string.h>
#include <time.h>

static int ls_main(const cli_global *g, int argc, char **argv)
{
    int arc = cli_simple_args(argc, argv, "usage: modelpull [--cache DIR] ls", 0, 0);
    if (arc >= 0)
        return arc;
    mv_error err = MV_ERROR_INIT;
    _cleanup_cache_ cache *c = NULL;
    cache_entry *e = NULL;
    size_t n = 0;
    if (cache_open(g->cache_dir, NULL, &c, &err) < 0 || cache_list(c, &e, &n, &err) < 0) {
        cli_error("modelpull", &err);
        return 1;
    }
    printf("%-50s %-20s %10s %-20s %-7s %s\n", "REFERENCE", "DIGEST", "SIZE", "LAST USE", "PINNED",
           "FILTER");
    for (size_t i = 0; i < n; i++) {
        char size[32], when[32] = "-";
        struct tm tm;
        if (e[i].last_use && localtime_r(&e[i].last_use, &tm))
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
        char pinned[32];
        snprintf(pinned, sizeof(pinned), "%s", e[i].n_pins ? "yes" : "no");
        if (e[i].n_pins > 1)
            snprintf(pinned, sizeof(pinned), "yes(%zu)", e[i].n_pins);
        /* sha256: + 12 hex is enough to tell models apart on one node. */
        printf("%-50s %-.19s %10s %-20s %-7s %s\n", e[i].reference ? e[i].reference : "-",
               e[i].manifest_digest, mv_format_size(e[i].size, size, sizeof(size)), when, pinned,
               e[i].filter[0] ? e[i].filter : "-");
    }
    cache_entries_free(e, n);
    return 0;
}

CLI_VERB("ls", "list the models in the node cache", ls_main)
