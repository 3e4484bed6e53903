/* modelpull_prewarm.c — `modelpull prewarm`: keeps a node's cache warm with
 * the models a list file names. A pass is cache_prewarm_reconcile; this file
 * reads options, re-reads the list when its directory changes (--watch: a
 * mounted ConfigMap), turns signals into stop requests and logs in logfmt. */
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
    int retry_s; /* --retry */
    cache *cache;
    cache_prewarm_opts opts; /* .stop_fd: a signalfd for SIGTERM and SIGINT */
    bool stopping;
} pw_ctx;

/* Drains pending signals; a stop request sets ctx->stopping. */
static bool pw_read_signals(void *ud)
{
    pw_ctx *ctx = ud;
    struct signalfd_siginfo si;
    while (read(ctx->opts.stop_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (!ctx->stopping) {
            ctx->stopping = true;
            mv_log("info", "stopping", "signal", sigabbrev_np((int)si.ssi_signo));
        }
    }
    return ctx->stopping;
}

/* One log line per event of a pass; the fields an event does not have are
 * NULL, which mv_log leaves out. */
static void pw_report(const cache_prewarm_event *ev, void *ud)
{
    const pw_ctx *ctx = ud;
    static const char *const events[] = {"invalid_reference", "pinned",       "pull_failed",
                                         "unpinned",          "unpin_failed", "cycle_done"};
    bool pinned = ev->kind == CACHE_PREWARM_PINNED, done = ev->kind == CACHE_PREWARM_DONE;
    char bytes[24], line[16], refs[24], failed[16];
    snprintf(bytes, sizeof(bytes), "%llu",
             pinned ? (unsigned long long)ev->result->bytes_downloaded : 0ULL);
    snprintf(line, sizeof(line), "%d", ev->line);
    snprintf(refs, sizeof(refs), "%zu", ev->references);
    snprintf(failed, sizeof(failed), "%d", ev->failed);
    mv_log(ev->error ? "warn" : "info", events[ev->kind], "list", ev->line ? ctx->list_path : NULL,
           "line", ev->line ? line : NULL, "reference", ev->reference, "tree", ev->tree_id,
           "downloaded_bytes", pinned ? bytes : NULL, "cache_hit",
           pinned ? (ev->result->cache_hit ? "true" : "false") : NULL, "reason", ev->reason,
           "references", done ? refs : NULL, "failed", done ? failed : NULL, "error",
           ev->error ? ev->error->msg : NULL);
}

/* One full pass; returns the number of failures. */
static int pw_apply(pw_ctx *ctx, const cache_prewarm_list *l)
{
    mv_error err = MV_ERROR_INIT;
    int failed = cache_prewarm_reconcile(ctx->cache, &ctx->opts, l, NULL, &err);
    if (failed < 0 && !ctx->stopping)
        mv_log("error", "pass_failed", "error", err.msg);
    return failed < 0 ? (int)(l->n + l->n_bad) : failed;
}

/* Drains pending inotify events; -1 when the watched directory is gone. */
static int pw_drain_inotify(int ifd)
{
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;
    while ((n = read(ifd, buf, sizeof(buf))) > 0) {
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF))
                return -1;
            p += sizeof(*ev) + ev->len;
        }
    }
    return 0;
}

/* Waits for a change of the list's directory (re-read once it has been
 * quiet for PW_SETTLE_MS, or after PW_SETTLE_MAX events), for a retry of
 * failed pulls, or for a stop. Returns the exit code. */
static int pw_watch(pw_ctx *ctx, cache_prewarm_list *cur, int ifd, int failed)
{
    int settling = 0; /* batches of events since the list was last read */
    for (;;) {
        /* Retry pulls that failed; an invalid line needs an edit instead. */
        bool retry = failed > (int)cur->n_bad;
        int timeout = settling ? PW_SETTLE_MS : retry ? ctx->retry_s * 1000 : -1;
        struct pollfd pfd[2] = {{.fd = ctx->opts.stop_fd, .events = POLLIN},
                                {.fd = ifd, .events = POLLIN}};
        int pr = poll(pfd, 2, timeout);
        if (pr < 0 && errno != EINTR) {
            mv_log("error", "poll_failed", "error", strerror(errno));
            return 1;
        }
        if ((pfd[0].revents & POLLIN) && pw_read_signals(ctx))
            return 0;
        if (pr > 0 && (pfd[1].revents & POLLIN)) {
            if (pw_drain_inotify(ifd) < 0) {
                mv_log("error", "list_directory_gone", "list", ctx->list_path);
                return 1;
            }
            if (++settling < PW_SETTLE_MAX)
                continue;
        } else if (pr != 0) {
            continue;
        }
        bool changed = settling > 0;
        settling = 0;
        _cleanup_(cache_prewarm_list_clearp) cache_prewarm_list next = {0};
        mv_error err = MV_ERROR_INIT;
        if (cache_prewarm_list_load(ctx->list_path, &next, &err) < 0) {
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
            "into the cache and pins it as \"prewarm:<reference>\"; pins of references\n"
            "no longer listed are dropped. One logfmt line per event on stderr.\n\n"
            "  -f, --file FILE        the list of references (required)\n"
            "  -j, --parallel N       pulls at a time (default 2, at most %d)\n"
            "  -w, --watch            keep running: re-read FILE when its directory changes\n"
            "                         (a mounted ConfigMap), retry failures, exit 0 on SIGTERM\n"
            "      --retry SECS       with --watch, retry failed pulls this often (default %d)\n"
            "      --policy P         IfNotPresent (default), Always (re-resolve tags each\n"
            "                         pass) or Never; also spelled --pull-policy\n"
            "      --plain-http       use plain HTTP for every registry\n"
            "  -h, --help             show this help\n\n"
            "Exit status: 0 all pinned, 1 any failed, 2 usage error.\n",
            CACHE_PREWARM_MAX_PARALLEL, PW_RETRY_SECONDS);
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
    int ch;
    mv_error perr = MV_ERROR_INIT;
    while ((ch = getopt_long(argc, argv, "f:j:wh", opts, NULL)) != -1) {
        switch (ch) {
        case 'f':
            ctx->list_path = optarg;
            break;
        case 'j':
        case 'r':
            if (ch == 'j' ? mv_parse_int("--parallel", optarg, 1, CACHE_PREWARM_MAX_PARALLEL,
                                         &ctx->opts.parallel, &perr) < 0
                          : mv_parse_int("--retry", optarg, 1, PW_RETRY_SECONDS_MAX, &ctx->retry_s,
                                         &perr) < 0) {
                fprintf(stderr, "modelpull: prewarm: %s\n", perr.msg);
                return 2;
            }
            break;
        case 'w':
            *watch = true;
            break;
        case 'P':
            ctx->opts.pull.plain_http = true;
            break;
        case 'p':
            if (cache_pull_policy_parse(optarg, &ctx->opts.policy, &perr) < 0) {
                fprintf(stderr, "modelpull: prewarm: --policy: %s\n", perr.msg);
                return 2;
            }
            break;
        default:
            pw_usage(ch == 'h' ? stdout : stderr);
            return ch == 'h' ? 0 : 2;
        }
    }
    if (!ctx->list_path || optind != argc) {
        fprintf(stderr, "modelpull: prewarm: %s; run 'modelpull prewarm --help'\n",
                ctx->list_path ? "unexpected argument" : "-f FILE is required");
        return 2;
    }
    return -1;
}

/* Watch the directory, not the file: a ConfigMap update replaces the ..data
 * symlink the file points through. */
static int pw_watch_open(const char *list_path)
{
    _cleanup_free_ char *dircopy = mv_xstrdup(list_path);
    const char *dir = dirname(dircopy);
    _cleanup_close_ int ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (ifd < 0 || inotify_add_watch(ifd, dir,
                                     IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE |
                                         IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF) < 0) {
        mv_log("error", "watch_failed", "directory", dir, "error", strerror(errno));
        return -1;
    }
    return MV_STEAL_FD(ifd);
}

static int prewarm_main(const cli_global *g, int argc, char **argv)
{
    pw_ctx ctx = {.retry_s = PW_RETRY_SECONDS,
                  .opts = {.policy = CACHE_PULL_IF_NOT_PRESENT,
                           .default_creds = true,
                           .parallel = 2,
                           .stop = pw_read_signals,
                           .report = pw_report}};
    ctx.opts.ud = &ctx;
    bool watch = false;
    int rc = pw_args(&ctx, &watch, argc, argv);
    if (rc >= 0)
        return rc;

    mv_error err = MV_ERROR_INIT;
    _cleanup_(cache_prewarm_list_clearp) cache_prewarm_list list = {0};
    _cleanup_(cache_registry_freep) cache_registry *reg = NULL;
    _cleanup_cache_ cache *c = NULL;
    /* Each pull reloads the default credentials (default_creds): the ones
     * loaded here are only the start's, and may be missing. */
    if (cache_prewarm_list_load(ctx.list_path, &list, &err) < 0 ||
        cache_registry_load(g->config_path, g->config_named, CACHE_REGISTRY_CREDS_OPTIONAL, &reg,
                            &err) < 0 ||
        cache_open(g->cache_dir, NULL, &c, &err) < 0) {
        mv_log("error", "start_failed", "list", ctx.list_path, "cache", g->cache_dir, "error",
               err.msg);
        return 1;
    }
    ctx.cache = c;
    ctx.opts.registry = reg;

    /* Signals arrive through a signalfd so a stop request is seen between
     * any two steps, never in the middle of one. */
    sigset_t mask, oldmask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, &oldmask);
    _cleanup_close_ int sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    /* Watching starts before the first pass: a change during it is seen. */
    _cleanup_close_ int ifd = watch && sigfd >= 0 ? pw_watch_open(ctx.list_path) : -1;
    ctx.opts.stop_fd = sigfd;
    if (sigfd < 0)
        mv_log("error", "signalfd_failed", "error", strerror(errno));
    rc = 1;
    if (sigfd >= 0 && (!watch || ifd >= 0)) {
        int failed = pw_apply(&ctx, &list);
        /* A stopped single pass did not finish: it failed. */
        if (ctx.stopping)
            rc = !watch;
        else
            rc = watch ? pw_watch(&ctx, &list, ifd, failed) : failed != 0;
    }
    sigprocmask(SIG_SETMASK, &oldmask, NULL);
    return rc;
}

CLI_VERB("prewarm", "pull and pin the models listed in a file; --watch follows changes",
         prewarm_main)
