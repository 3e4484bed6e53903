/* modelpull_prewarm.c — `modelpull prewarm`: keeps a node's cache warm with
 * the models named in a list file. The pass itself (pull and pin each
 * reference, drop the pins the list no longer wants) is
 * cache_prewarm_reconcile; this file reads the options, follows the file
 * with --watch, turns signals into stop requests and logs in logfmt, like
 * the node plugin beside which it runs as a DaemonSet. With --watch the file
 * is re-read whenever its directory changes, which is how a mounted
 * ConfigMap (a swapped ..data symlink) is updated. */
#include "cli.h"

#include <getopt.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>

/* A list that changed settles before it is read: editors and the kubelet
 * touch the directory several times for one update. */
#define PW_SETTLE_MS  200
#define PW_SETTLE_MAX 25
/* Under --watch, failed references are retried this often (--retry) even
 * when the list does not change, so a registry outage heals on its own. */
#define PW_RETRY_SECONDS     60
#define PW_RETRY_SECONDS_MAX 86400

typedef struct pw_ctx {
    const char *list_path;
    int retry_ms;
    cache *cache;
    cache_prewarm_opts opts;
    int sigfd;
    bool stopping;
} pw_ctx;

static void pw_list_clearp(cache_prewarm_list *l)
{
    cache_prewarm_list_clear(l);
}

/* Drains pending signals; a stop request sets ctx->stopping. */
static bool pw_read_signals(void *ud)
{
    pw_ctx *ctx = ud;
    struct signalfd_siginfo si;
    while (read(ctx->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (!ctx->stopping) {
            ctx->stopping = true;
            mv_log("info", "stopping", "signal", sigabbrev_np((int)si.ssi_signo));
        }
    }
    return ctx->stopping;
}

static void pw_report(const cache_prewarm_event *ev, void *ud)
{
    (void)ud;
    char bytes[24];
    switch (ev->kind) {
    case CACHE_PREWARM_PINNED:
        snprintf(bytes, sizeof(bytes), "%llu", (unsigned long long)ev->result->bytes_downloaded);
        mv_log("info", "pinned", "reference", ev->reference, "tree", ev->tree_id,
               "downloaded_bytes", bytes, "cache_hit", ev->result->cache_hit ? "true" : "false");
        break;
    case CACHE_PREWARM_PULL_FAILED:
        mv_log("warn", "pull_failed", "reference", ev->reference, "error", ev->error->msg);
        break;
    case CACHE_PREWARM_UNPINNED:
        mv_log("info", "unpinned", "reference", ev->reference, "tree", ev->tree_id, "reason",
               ev->reason);
        break;
    case CACHE_PREWARM_UNPIN_FAILED:
        mv_log("warn", "unpin_failed", "reference", ev->reference, "tree", ev->tree_id, "error",
               ev->error->msg);
        break;
    }
}

/* Loads the list; its invalid lines are logged, each with its line number. */
static int pw_load(const pw_ctx *ctx, cache_prewarm_list *l, mv_error *err)
{
    int r = cache_prewarm_list_load(ctx->list_path, l, err);
    for (size_t i = 0; r == 0 && i < l->n_bad; i++) {
        char line[16];
        snprintf(line, sizeof(line), "%d", l->bad[i].line);
        mv_log("warn", "invalid_reference", "list", ctx->list_path, "line", line, "error",
               l->bad[i].error);
    }
    return r;
}

/* One full pass. Returns the number of failures: invalid lines, references
 * not pinned, and one for stale pins that could not all be dropped. */
static int pw_apply(pw_ctx *ctx, const cache_prewarm_list *l)
{
    _cleanup_free_ cache_prewarm_result *res = mv_xcalloc(l->n ? l->n : 1, sizeof(*res));
    mv_error err = MV_ERROR_INIT;
    int r = cache_prewarm_reconcile(ctx->cache, &ctx->opts, l->v, l->n, res, &err);
    int failed = (int)l->n_bad;
    for (size_t i = 0; i < l->n; i++)
        failed += res[i].error.code != 0;
    if (ctx->stopping)
        return failed;
    if (r < 0) {
        mv_log("warn", "reconcile_failed", "error", err.msg);
        failed++;
    }
    char refs[24], fails[24];
    snprintf(refs, sizeof(refs), "%zu", l->n);
    snprintf(fails, sizeof(fails), "%d", failed);
    mv_log("info", "cycle_done", "references", refs, "failed", fails);
    return failed;
}

/* Drains inotify events until the directory has been quiet for
 * PW_SETTLE_MS (bounded). Returns -1 when the watched directory is gone. */
static int pw_settle(pw_ctx *ctx, int ifd)
{
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (int round = 0; round < PW_SETTLE_MAX; round++) {
        bool gone = false, any = false;
        ssize_t n;
        while ((n = read(ifd, buf, sizeof(buf))) > 0) {
            any = true;
            for (char *p = buf; p < buf + n;) {
                const struct inotify_event *ev = (const struct inotify_event *)p;
                if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF))
                    gone = true;
                p += sizeof(*ev) + ev->len;
            }
        }
        if (gone)
            return -1;
        if (!any && round > 0)
            return 0;
        struct pollfd pfd[2] = {{.fd = ifd, .events = POLLIN},
                                {.fd = ctx->sigfd, .events = POLLIN}};
        if (poll(pfd, 2, PW_SETTLE_MS) > 0 && (pfd[1].revents & POLLIN))
            pw_read_signals(ctx);
        if (ctx->stopping)
            return 0;
    }
    return 0;
}

static int pw_watch(pw_ctx *ctx, cache_prewarm_list *cur, int ifd, int failed)
{
    for (;;) {
        struct pollfd pfd[2] = {{.fd = ctx->sigfd, .events = POLLIN},
                                {.fd = ifd, .events = POLLIN}};
        /* Retry pulls that failed; an invalid line needs an edit instead. */
        bool retry = failed > (int)cur->n_bad;
        int pr = poll(pfd, 2, retry ? ctx->retry_ms : -1);
        if (pr < 0 && errno != EINTR) {
            mv_log("error", "poll_failed", "error", strerror(errno));
            return 1;
        }
        if (pfd[0].revents & POLLIN)
            pw_read_signals(ctx);
        if (ctx->stopping)
            return 0;
        bool changed = pr > 0 && (pfd[1].revents & POLLIN);
        if (changed && pw_settle(ctx, ifd) < 0) {
            mv_log("error", "list_directory_gone", "list", ctx->list_path);
            return 1;
        }
        if (ctx->stopping)
            return 0;
        if (!changed && !retry)
            continue;
        _cleanup_(pw_list_clearp) cache_prewarm_list next = {0};
        mv_error err = MV_ERROR_INIT;
        if (pw_load(ctx, &next, &err) < 0) {
            /* A ConfigMap swap is atomic, an editor's may not be: keep the
             * current state and wait for the next change. */
            mv_log("warn", "list_unreadable", "list", ctx->list_path, "error", err.msg, "pins",
                   "kept");
            continue;
        }
        if (!retry && cache_prewarm_list_equal(cur, &next))
            continue;
        char refs[24];
        snprintf(refs, sizeof(refs), "%zu", next.n);
        mv_log("info", changed ? "reloading" : "retrying", "list", ctx->list_path, "references",
               refs);
        cache_prewarm_list_clear(cur);
        *cur = next;
        next = (cache_prewarm_list){0};
        failed = pw_apply(ctx, cur);
        if (ctx->stopping)
            return 0;
    }
}

static void pw_usage(FILE *f)
{
    fprintf(f,
            "usage: modelpull [--cache DIR] [--config FILE] prewarm -f FILE [--parallel N] "
            "[--watch] [--retry SECS] [--policy P] [--plain-http]\n\n"
            "Pulls every model reference listed in FILE (one per line, '#' comments)\n"
            "into the cache and pins it with owner \"prewarm:<reference>\"; pins of\n"
            "references no longer listed are dropped. Logs one logfmt line per event\n"
            "on stderr.\n\n"
            "  -f, --file FILE        the list of references (required)\n"
            "  -j, --parallel N       pulls at a time (default 2, at most %d)\n"
            "  -w, --watch            keep running; re-read FILE when its directory\n"
            "                         changes (a mounted ConfigMap), retry failures,\n"
            "                         and exit 0 on SIGTERM\n"
            "      --retry SECS       with --watch, retry failed pulls this often\n"
            "                         (default %d)\n"
            "      --policy P         IfNotPresent (default: a cached tag is not\n"
            "                         re-resolved), Always (re-resolve tags on every\n"
            "                         pass) or Never; also --pull-policy\n"
            "      --plain-http       use plain HTTP for every registry\n"
            "  -h, --help             show this help\n\n"
            "Exit status: 0 when every reference is pinned, 1 when any failed, 2 on\n"
            "usage errors.\n",
            CACHE_PREWARM_MAX_PARALLEL, PW_RETRY_SECONDS);
}

static int pw_parse_int(const char *flag, const char *s, int min, int max, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < min || v > max) {
        fprintf(stderr, "modelpull: prewarm: %s \"%s\": want %d..%d\n", flag, s, min, max);
        return -EINVAL;
    }
    *out = (int)v;
    return 0;
}

/* Parses the options into ctx; returns -1 to go on, or the exit code. */
static int pw_args(pw_ctx *ctx, bool *watch, int argc, char **argv)
{
    static const struct option opts[] = {
        {"file", required_argument, NULL, 'f'},
        {"parallel", required_argument, NULL, 'j'},
        {"watch", no_argument, NULL, 'w'},
        {"plain-http", no_argument, NULL, 'P'},
        {"policy", required_argument, NULL, 'p'},
        {"pull-policy", required_argument, NULL, 'p'}, /* as in volumeAttributes */
        {"retry", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch, secs = 0;
    mv_error perr = MV_ERROR_INIT;
    while ((ch = getopt_long(argc, argv, "f:j:wh", opts, NULL)) != -1) {
        switch (ch) {
        case 'f':
            ctx->list_path = optarg;
            break;
        case 'j':
            if (pw_parse_int("--parallel", optarg, 1, CACHE_PREWARM_MAX_PARALLEL,
                             &ctx->opts.parallel) < 0)
                return 2;
            break;
        case 'r':
            if (pw_parse_int("--retry", optarg, 1, PW_RETRY_SECONDS_MAX, &secs) < 0)
                return 2;
            ctx->retry_ms = secs * 1000;
            break;
        case 'w':
            *watch = true;
            break;
        case 'P':
            ctx->opts.pull.pull.plain_http = true;
            break;
        case 'p':
            if (cache_pull_policy_parse(optarg, &ctx->opts.pull.policy, &perr) < 0) {
                fprintf(stderr,
                        "modelpull: prewarm: --policy \"%s\": want IfNotPresent, "
                        "Always or Never\n",
                        optarg);
                return 2;
            }
            break;
        case 'h':
            pw_usage(stdout);
            return 0;
        default:
            pw_usage(stderr);
            return 2;
        }
    }
    if (!ctx->list_path || optind != argc) {
        fprintf(stderr, "modelpull: prewarm: %s; run 'modelpull prewarm --help'\n",
                ctx->list_path ? "unexpected argument" : "-f FILE is required");
        return 2;
    }
    return -1;
}

static int prewarm_main(const cli_global *g, int argc, char **argv)
{
    pw_ctx ctx = {.retry_ms = PW_RETRY_SECONDS * 1000,
                  .sigfd = -1,
                  .opts = {.pull.policy = CACHE_PULL_IF_NOT_PRESENT,
                           .default_creds = true,
                           .parallel = 2,
                           .stop = pw_read_signals}};
    ctx.opts.ud = &ctx;
    ctx.opts.report = pw_report;
    bool watch = false;
    int rc = pw_args(&ctx, &watch, argc, argv);
    if (rc >= 0)
        return rc;

    mv_error err = MV_ERROR_INIT;
    _cleanup_(pw_list_clearp) cache_prewarm_list list = {0};
    _cleanup_(pull_config_freep) pull_config *config = NULL;
    _cleanup_cache_ cache *c = NULL;
    if (pw_load(&ctx, &list, &err) < 0) {
        mv_log("error", "list_unreadable", "list", ctx.list_path, "error", err.msg);
        return 1;
    }
    if (pull_config_load(g->config_path, g->config_named, &config, &err) < 0 ||
        cache_open(g->cache_dir, NULL, &c, &err) < 0) {
        mv_log("error", "start_failed", "cache", g->cache_dir, "error", err.msg);
        return 1;
    }
    ctx.cache = c;
    ctx.opts.pull.pull.config = config;

    /* Signals arrive through a signalfd so a stop request is seen between
     * any two steps, never in the middle of one. */
    sigset_t mask, oldmask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, &oldmask);
    _cleanup_close_ int sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    _cleanup_close_ int ifd = -1;
    ctx.sigfd = ctx.opts.stop_fd = sigfd;
    rc = 0;
    if (sigfd < 0) {
        mv_log("error", "signalfd_failed", "error", strerror(errno));
        rc = 1;
    } else if (watch) {
        /* Watch the directory, not the file: a ConfigMap update replaces the
         * ..data symlink the file points through. Set up before the first
         * pass so a change made during it is not missed. */
        _cleanup_free_ char *dircopy = mv_xstrdup(ctx.list_path);
        const char *dir = dirname(dircopy);
        ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (ifd < 0 || inotify_add_watch(ifd, dir,
                                         IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE |
                                             IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF) < 0) {
            mv_log("error", "watch_failed", "directory", dir, "error", strerror(errno));
            rc = 1;
        }
    }
    if (rc == 0) {
        int failed = pw_apply(&ctx, &list);
        if (watch && !ctx.stopping)
            rc = pw_watch(&ctx, &list, ifd, failed);
        else if (ctx.stopping)
            rc = watch ? 0 : 1;
        else
            rc = failed ? 1 : 0;
    }
    sigprocmask(SIG_SETMASK, &oldmask, NULL);
    return rc;
}

CLI_VERB("prewarm", "pull and pin the models listed in a file; --watch follows changes",
         prewarm_main)
