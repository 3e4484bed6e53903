/* modelpull_gc.c — `modelpull gc [--max-size SIZE] [--low-watermark PCT]`:
 * garbage-collect the node cache down to a size or a disk-use target. */
#include "cli.h"

#include <getopt.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: modelpull [--cache DIR] gc [--max-size SIZE] [--low-watermark PCT]\n\n"
               "  --max-size SIZE       shrink the cache to at most SIZE (e.g. 50G)\n"
               "  --low-watermark PCT   else shrink until the disk is at most PCT%% full "
               "(default 80)\n");
}

static int gc_main(const cli_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"max-size", required_argument, NULL, 'm'},
        {"low-watermark", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    cache_gc_opts o = {0};
    mv_error err = MV_ERROR_INIT;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm':
            if (mv_parse_size(optarg, &o.max_size, &err) < 0) {
                mv_error_wrap(&err, "--max-size");
                cli_error("modelpull", &err);
                return 2;
            }
            if (!o.max_size)
                o.max_size = 1; /* "0": remove everything that is not pinned */
            break;
        case 'l': {
            uint64_t v = 0;
            if (mv_parse_uint("--low-watermark", optarg, CACHE_WATERMARK_MIN, CACHE_WATERMARK_MAX,
                              &v, &err) < 0) {
                cli_error("modelpull", &err);
                return 2;
            }
            o.low_watermark_pct = (int)v;
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    _cleanup_cache_ cache *c = NULL;
    cache_gc_result res;
    if (cache_open(g->cache_dir, NULL, &c, &err) < 0 || cache_gc(c, &o, &res, &err) < 0) {
        cli_error("modelpull", &err);
        return 1;
    }
    char before[32], after[32];
    printf("gc: %s -> %s; removed %zu trees, %zu layers, %zu blobs%s\n",
           mv_format_size(res.bytes_before, before, sizeof(before)),
           mv_format_size(res.bytes_after, after, sizeof(after)), res.trees_removed,
           res.layers_removed, res.blobs_removed,
           res.target_reached ? "" : "; target not reached (the rest is pinned)");
    return 0;
}

CLI_VERB("gc", "garbage-collect the node cache", gc_main)
