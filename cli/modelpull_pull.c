/* modelpull_pull.c — `modelpull pull`: pull a model into the node cache
 * and print the path of its tree as the last line on stdout. */
#include "cli.h"

#include <getopt.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: modelpull [--cache DIR] [--config FILE] pull [OPTIONS] REF\n\n"
            "  --connections N       total parallel connections, %d to %d (default %d)\n"
            "  --chunk-size SIZE     range size for large blobs (default 16M)\n"
            "  --plain-http          talk plain HTTP to this registry\n"
            "  --include GLOB        only files matching GLOB (repeatable)\n"
            "  --exclude GLOB        skip files matching GLOB (repeatable)\n"
            "  --kind WORD           only files of this kind: weights, config, docs, code,\n"
            "                        datasets (repeatable)\n"
            "  --subpath PATH        present only this directory of the model\n"
            "  --policy POLICY       IfNotPresent (default), Always or Never\n" CLI_SELECTOR_HELP
            "  --progress=MODE       auto, bar (or tty), json or none; on stderr\n",
            CACHE_CONNECTIONS_MIN, CACHE_CONNECTIONS_MAX, CACHE_CONNECTIONS_DEFAULT);
}

/* Pull events as progress updates, under the JSON event names modelpull
 * has always printed. */
static void on_pull_event(void *ctx, const pull_event *ev)
{
    static const struct {
        mv_progress_kind kind;
        const char *name;
    } map[] = {
        [PULL_EV_MANIFEST] = {MV_PROGRESS_INFO, "manifest"},
        [PULL_EV_BLOB_START] = {MV_PROGRESS_START, "blob_start"},
        [PULL_EV_BLOB_PROGRESS] = {MV_PROGRESS_STEP, "blob_progress"},
        [PULL_EV_BLOB_DONE] = {MV_PROGRESS_DONE, "blob_done"},
        [PULL_EV_RETRY] = {MV_PROGRESS_RETRY, "retry"},
    };
    if ((unsigned)ev->kind >= sizeof(map) / sizeof(map[0]) || !map[ev->kind].name)
        return;
    mv_progress_update u = {.kind = map[ev->kind].kind,
                            .name = map[ev->kind].name,
                            .digest = ev->digest,
                            .message = ev->message,
                            .done = ev->done,
                            .total = ev->total};
    mv_progress_report(ctx, &u);
}

static void strv_push(char ***v, size_t *n, const char *s)
{
    *v = mv_xrealloc(*v, (*n + 2) * sizeof(**v));
    (*v)[(*n)++] = mv_xstrdup(s);
    (*v)[*n] = NULL;
}

/* Long-only options, numbered clear of any short letter. */
static int pull_main(const cli_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"connections", required_argument, NULL, 'n'},
        {"chunk-size", required_argument, NULL, 'k'},
        {"plain-http", no_argument, NULL, 'p'},
        {"include", required_argument, NULL, 'i'},
        {"exclude", required_argument, NULL, 'x'},
        {"subpath", required_argument, NULL, 's'},
        {"kind", required_argument, NULL, 'K'},
        {"policy", required_argument, NULL, 'P'},
        {"progress", required_argument, NULL, 'g'},
        CLI_SELECTOR_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    mv_error err = MV_ERROR_INIT;
    cache_request_args args = {0};
    pull_options po = {0};
    _cleanup_strv_ char **include = NULL;
    _cleanup_strv_ char **exclude = NULL;
    _cleanup_strv_ char **kinds = NULL;
    size_t ni = 0, nx = 0, nk = 0;
    mv_progress_mode pmode = MV_PROGRESS_AUTO;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'n':
            if (cache_connections_parse("--connections", optarg, &po.connections, &err) < 0) {
                cli_error("modelpull", &err);
                return 2;
            }
            break;
        case 'k':
            if (mv_parse_size(optarg, &po.chunk_size, &err) < 0 || !po.chunk_size) {
                if (!err.msg[0])
                    mv_error_set(&err, -EINVAL, "--chunk-size must be above 0");
                mv_error_wrap(&err, "--chunk-size");
                cli_error("modelpull", &err);
                return 2;
            }
            break;
        case 'p':
            po.plain_http = true;
            break;
        case 'i':
            strv_push(&include, &ni, optarg);
            break;
        case 'x':
            strv_push(&exclude, &nx, optarg);
            break;
        case 's':
            args.subpath = optarg;
            break;
        case 'K':
            strv_push(&kinds, &nk, optarg);
            break;
        case 'P':
            if (cache_pull_policy_parse(optarg, &args.policy, &err) < 0) {
                cli_error("modelpull", &err);
                return 2;
            }
            break;
        case 'g':
            if (mv_progress_mode_parse(optarg, &pmode, &err) < 0) {
                cli_error("modelpull", &err);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            if (cli_selector_arg(ch, optarg, &args))
                break;
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    args.reference = argv[optind];
    args.include = (const char *const *)include;
    args.exclude = (const char *const *)exclude;
    args.kinds = (const char *const *)kinds;
    args.subpath_what = "--subpath";
    args.kinds_what = "--kind";
    _cleanup_cache_request_ cache_request *rq = NULL;
    if (cache_request_parse(&args, &rq, &err) < 0) {
        cli_error("modelpull", &err);
        return 1;
    }
    _cleanup_(cache_registry_freep) cache_registry *reg = NULL;
    if (cache_registry_load(g->config_path, g->config_named, 0, &reg, &err) < 0) {
        cli_error("modelpull", &err);
        return 1;
    }
    rq->registry = reg;
    rq->pull = po;
    mv_progress *prog = mv_progress_new(pmode, stderr);
    rq->pull.on_event = on_pull_event;
    rq->pull.event_ctx = prog;

    int rc = 1;
    _cleanup_cache_ cache *c = NULL;
    cache_pull_result res = {0};
    if (cache_open(g->cache_dir, NULL, &c, &err) == 0 && cache_pull(c, rq, &res, &err) == 0)
        rc = 0;
    mv_progress_finish(prog);
    mv_progress_free(prog);
    if (rc != 0) {
        cli_error("modelpull", &err);
        return rc;
    }
    /* Files were laid out, but some layers were not: say so (stderr, the
     * tree path stays the last line on stdout). */
    if (res.n_skipped > 0)
        fprintf(stderr, "modelpull: %zu layer(s) skipped: %s\n", res.n_skipped, res.skipped);
    printf("%s\n", res.tree_path);
    cache_pull_result_clear(&res);
    return 0;
}

CLI_VERB("pull", "pull a model into the node cache and print its tree path", pull_main)
