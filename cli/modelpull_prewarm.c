/* modelpull_prewarm.c — `modelpull prewarm`: keeps a node's cache warm with
 * the models named in a list file. Each reference is pulled and pinned with
 * owner "prewarm:<reference>"; pins whose reference left the list are
 * dropped. With --watch the file is re-read whenever its directory changes,
 * which is how a mounted ConfigMap (a swapped ..data symlink) is updated.
 *
 * Each pull runs in its own child process with its own cache handle: a pull
 * is long, may be cancelled, and must not share libcurl or cache state with
 * the others, and the parent stays free to answer SIGTERM at once. */
#include "cli.h"

#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#define PW_OWNER_PREFIX   "prewarm:"
#define PW_MAX_FILE_BYTES (1024 * 1024)
#define PW_MAX_ENTRIES    4096
#define PW_MAX_PARALLEL   64
#define PW_STOP_GRACE_MS  10000
/* A list that changed settles before it is read: editors and the kubelet
 * touch the directory several times for one update. */
#define PW_SETTLE_MS  200
#define PW_SETTLE_MAX 25
/* Under --watch, failed references are retried this often (--retry) even
 * when the list does not change, so a registry outage heals on its own. */
#define PW_RETRY_SECONDS     60
#define PW_RETRY_SECONDS_MAX 86400

typedef struct pw_entry {
    char *ref; /* as written in the file: the pin owner is built from it */
    bool ok;   /* pulled and pinned in the last cycle */
    char tree_id[OCI_DIGEST_MAX];
} pw_entry;

typedef struct pw_list {
    pw_entry *v;
    size_t n;
    int invalid; /* lines that are not valid references */
} pw_list;

typedef struct pw_ctx {
    const cli_global *g;
    const char *list_path;
    int parallel;
    bool plain_http;
    cache_pull_policy policy;
    int retry_ms;
    pull_config *config;
    cache *cache;
    int sigfd;
    sigset_t oldmask;
    bool stopping;
} pw_ctx;

typedef struct pw_job {
    pw_entry *e;
    pid_t pid;
    int rfd;
    char buf[MV_ERROR_MSG_MAX + 256];
    size_t len;
} pw_job;

static volatile sig_atomic_t pw_child_cancel;

static void pw_list_clear(pw_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].ref);
    free(l->v);
    *l = (pw_list){0};
}

static void pw_list_clearp(pw_list *l)
{
    pw_list_clear(l);
}

static bool pw_list_has(const pw_list *l, const char *ref)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].ref, ref) == 0)
            return true;
    return false;
}

static bool pw_list_same(const pw_list *a, const pw_list *b)
{
    if (a->n != b->n || a->invalid != b->invalid)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i].ref, b->v[i].ref) != 0)
            return false;
    return true;
}

static long long pw_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int pw_read_file(const char *path, char **out, mv_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mv_error_errno(err, -errno, "list %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return mv_error_errno(err, -errno, "list %s", path);
    if (!S_ISREG(st.st_mode))
        return mv_error_set(err, -EINVAL, "list %s: not a regular file", path);
    if (st.st_size > (off_t)PW_MAX_FILE_BYTES)
        return mv_error_set(err, -EFBIG, "list %s: larger than %d bytes", path, PW_MAX_FILE_BYTES);
    _cleanup_free_ char *buf = mv_xmalloc((size_t)st.st_size + 1);
    size_t len = 0;
    while (len < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return mv_error_errno(err, -errno, "list %s", path);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    *out = MV_STEAL(buf);
    return 0;
}

/* One reference per line; '#' starts a comment (references never contain
 * one); blank lines and duplicates are ignored. Invalid references are
 * reported with their line number and counted, so the run fails, but they
 * do not stop the valid ones from being warmed. */
static int pw_list_load(const char *path, pw_list *out, mv_error *err)
{
    _cleanup_free_ char *text = NULL;
    int r = pw_read_file(path, &text, err);
    if (r < 0)
        return r;
    _cleanup_(pw_list_clearp) pw_list l = {0};
    int lineno = 0;
    char *save = NULL;
    /* strtok_r would merge empty lines and break line numbers. */
    for (char *line = text; line; line = save) {
        lineno++;
        save = strchr(line, '\n');
        if (save)
            *save++ = '\0';
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        line += strspn(line, " \t\r");
        size_t len = strlen(line);
        while (len > 0 && strchr(" \t\r", line[len - 1]))
            line[--len] = '\0';
        if (len == 0 || pw_list_has(&l, line))
            continue;
        _cleanup_ref_ oci_ref *ref = NULL;
        mv_error perr = MV_ERROR_INIT;
        if (strpbrk(line, " \t") || oci_ref_parse(line, &ref, &perr) < 0) {
            if (!perr.msg[0])
                mv_error_set(&perr, -EINVAL, "\"%s\" is not one reference", line);
            fprintf(stderr, "modelpull: prewarm: %s:%d: %s\n", path, lineno, perr.msg);
            l.invalid++;
            continue;
        }
        if (l.n >= PW_MAX_ENTRIES)
            return mv_error_set(err, -E2BIG, "list %s: more than %d references", path,
                                PW_MAX_ENTRIES);
        l.v = mv_xrealloc(l.v, (l.n + 1) * sizeof(*l.v));
        l.v[l.n++] = (pw_entry){.ref = mv_xstrdup(line)};
    }
    *out = l;
    l = (pw_list){0};
    return 0;
}

static void pw_on_term(int sig)
{
    (void)sig;
    pw_child_cancel = 1;
}

/* GC (the plugin's, or modelpull gc) may remove a tree between the pull
 * that built it and the pin that protects it; cache_pin then answers
 * -ENOENT, and pulling again rebuilds the tree from what is left. */
static int pw_pull_and_pin(cache *c, const char *ref, const cache_request *rq,
                           cache_pull_result *res, mv_error *err)
{
    _cleanup_free_ char *owner = mv_xasprintf(PW_OWNER_PREFIX "%s", ref);
    for (int attempt = 0;; attempt++) {
        cache_pull_result_clear(res);
        int r = cache_pull(c, rq, res, err);
        if (r < 0)
            return r;
        r = cache_pin(c, res->tree_id, owner, err);
        if (r != -ENOENT || attempt == 2)
            return r;
        mv_error_clear(err);
    }
}

/* Runs in the child: pull, pin, report one line on wfd. */
static int pw_child(const pw_ctx *ctx, const char *ref, int wfd)
{
    sigprocmask(SIG_SETMASK, &ctx->oldmask, NULL);
    struct sigaction sa = {.sa_handler = pw_on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    mv_error err = MV_ERROR_INIT;
    _cleanup_cache_ cache *c = NULL;
    pull_creds *creds = NULL;
    cache_pull_result res = {0};
    int r = pull_creds_load_default(&creds, &err);
    if (r == 0)
        r = cache_open(ctx->g->cache_dir, NULL, &c, &err);
    _cleanup_cache_request_ cache_request *rq = NULL;
    if (r == 0)
        r = cache_request_parse(&(cache_request_args){.reference = ref, .policy = ctx->policy}, &rq,
                                &err);
    pull_context reg = {.config = ctx->config, .creds = creds};
    if (r == 0) {
        rq->registry = &reg;
        rq->pull.plain_http = ctx->plain_http;
        rq->pull.cancel = (const volatile int *)&pw_child_cancel;
        r = pw_pull_and_pin(c, ref, rq, &res, &err);
    }
    if (r == 0) {
        dprintf(wfd, "ok %s %llu %d\n", res.tree_id, (unsigned long long)res.bytes_downloaded,
                res.cache_hit ? 1 : 0);
    } else {
        for (char *p = err.msg; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        dprintf(wfd, "err %s\n", err.msg[0] ? err.msg : "failed");
    }
    cache_pull_result_clear(&res);
    pull_creds_free(creds);
    return r < 0 ? 1 : 0;
}

static int pw_spawn(pw_ctx *ctx, pw_job *job, mv_error *err)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return mv_error_errno(err, -errno, "pipe");
    /* The child inherits stdio buffers: flush them so nothing prints twice. */
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        int e = -errno;
        close(p[0]);
        close(p[1]);
        return mv_error_errno(err, e, "fork");
    }
    if (pid == 0) {
        close(p[0]);
        close(ctx->sigfd);
        int rc = pw_child(ctx, job->e->ref, p[1]);
        /* exit, not _exit: leak checking and stdio flushing run in the child. */
        exit(rc);
    }
    close(p[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    job->pid = pid;
    job->rfd = p[0];
    job->len = 0;
    return 0;
}

static void pw_job_drain(pw_job *job)
{
    while (job->len < sizeof(job->buf) - 1) {
        ssize_t n = read(job->rfd, job->buf + job->len, sizeof(job->buf) - 1 - job->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        job->len += (size_t)n;
    }
    job->buf[job->len] = '\0';
}

/* Returns true when the child has exited; records the outcome in the entry. */
static bool pw_job_reap(pw_job *job, int *failed)
{
    int st;
    pid_t r = waitpid(job->pid, &st, WNOHANG);
    if (r == 0 || (r < 0 && errno == EINTR))
        return false;
    pw_job_drain(job);
    close(job->rfd);
    job->rfd = -1;
    job->pid = 0;
    pw_entry *e = job->e;
    char tree[OCI_DIGEST_MAX];
    unsigned long long downloaded = 0;
    int hit = 0;
    if (r > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
        sscanf(job->buf, "ok %135s %llu %d", tree, &downloaded, &hit) == 3) {
        e->ok = true;
        snprintf(e->tree_id, sizeof(e->tree_id), "%s", tree);
        printf("modelpull prewarm: pinned reference=%s tree=%s downloaded_bytes=%llu "
               "cache_hit=%s\n",
               e->ref, e->tree_id, downloaded, hit ? "true" : "false");
        return true;
    }
    (*failed)++;
    char *nl = strchr(job->buf, '\n');
    if (nl)
        *nl = '\0';
    if (strncmp(job->buf, "err ", 4) == 0 && strstr(job->buf + 4, e->ref))
        fprintf(stderr, "modelpull: prewarm: %s\n", job->buf + 4); /* it names the reference */
    else if (strncmp(job->buf, "err ", 4) == 0)
        fprintf(stderr, "modelpull: prewarm %s: %s\n", e->ref, job->buf + 4);
    else if (r > 0 && WIFSIGNALED(st))
        fprintf(stderr, "modelpull: prewarm %s: pull process killed by signal %d\n", e->ref,
                WTERMSIG(st));
    else
        fprintf(stderr, "modelpull: prewarm %s: pull process failed without a report\n", e->ref);
    return true;
}

/* Reads pending signals; a stop request sets ctx->stopping. Returns true if
 * a stop was newly requested. */
static bool pw_read_signals(pw_ctx *ctx)
{
    bool newly = false;
    struct signalfd_siginfo si;
    while (read(ctx->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if ((si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) && !ctx->stopping) {
            ctx->stopping = true;
            newly = true;
            printf("modelpull prewarm: stopping on signal %u\n", si.ssi_signo);
        }
    }
    return newly;
}

/* Pulls and pins every entry, at most ctx->parallel at a time. Returns the
 * number of references that failed. On a stop request the running pulls are
 * cancelled (SIGTERM, then SIGKILL after a grace period) and reaped. */
static int pw_cycle(pw_ctx *ctx, pw_list *l)
{
    int failed = 0;
    pw_job *jobs = mv_xcalloc((size_t)ctx->parallel, sizeof(*jobs));
    size_t next = 0;
    int running = 0;
    long long kill_at = 0;
    for (size_t i = 0; i < l->n; i++)
        l->v[i].ok = false;
    for (;;) {
        for (int j = 0; j < ctx->parallel && !ctx->stopping && next < l->n; j++) {
            if (jobs[j].pid)
                continue;
            mv_error err = MV_ERROR_INIT;
            jobs[j].e = &l->v[next++];
            if (pw_spawn(ctx, &jobs[j], &err) < 0) {
                fprintf(stderr, "modelpull: prewarm %s: %s\n", jobs[j].e->ref, err.msg);
                failed++;
                continue;
            }
            running++;
        }
        if (running == 0)
            break;
        int timeout = -1;
        if (kill_at) {
            long long left = kill_at - pw_now_ms();
            timeout = left > 0 ? (int)left : 0;
        }
        struct pollfd pfd = {.fd = ctx->sigfd, .events = POLLIN};
        int pr = poll(&pfd, 1, timeout);
        if (pr < 0 && errno != EINTR)
            break;
        if (pw_read_signals(ctx)) {
            for (int j = 0; j < ctx->parallel; j++)
                if (jobs[j].pid)
                    kill(jobs[j].pid, SIGTERM);
            kill_at = pw_now_ms() + PW_STOP_GRACE_MS;
        } else if (kill_at && pw_now_ms() >= kill_at) {
            for (int j = 0; j < ctx->parallel; j++)
                if (jobs[j].pid)
                    kill(jobs[j].pid, SIGKILL);
            kill_at = 0;
        }
        for (int j = 0; j < ctx->parallel; j++)
            if (jobs[j].pid && pw_job_reap(&jobs[j], &failed))
                running--;
    }
    /* Entries never started because of a stop count as failed. */
    failed += (int)(l->n - next);
    free(jobs);
    return failed;
}

/* Drops prewarm pins whose reference has left the list, and the previous
 * tree of a reference whose tag now resolves elsewhere. A reference that
 * failed this cycle keeps whatever it had: a registry outage must not make
 * a warm node cold. */
static int pw_unpin_stale(pw_ctx *ctx, const pw_list *l, const cache_pin_info *pins, size_t n,
                          mv_error *err)
{
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        int r;
        const char *ref = pins[i].owner + strlen(PW_OWNER_PREFIX);
        const pw_entry *e = NULL;
        for (size_t k = 0; k < l->n && !e; k++)
            if (strcmp(l->v[k].ref, ref) == 0)
                e = &l->v[k];
        if (e && (!e->ok || strcmp(e->tree_id, pins[i].tree_id) == 0))
            continue;
        mv_error uerr = MV_ERROR_INIT;
        r = cache_unpin(ctx->cache, pins[i].tree_id, pins[i].owner, &uerr);
        if (r < 0) {
            fprintf(stderr, "modelpull: prewarm %s: unpin %s: %s\n", ref, pins[i].tree_id,
                    uerr.msg);
            if (!first)
                first = r;
            continue;
        }
        printf("modelpull prewarm: unpinned reference=%s tree=%s reason=%s\n", ref, pins[i].tree_id,
               e ? "tag-moved" : "removed-from-list");
    }
    if (first)
        return mv_error_set(err, first, "could not drop every stale prewarm pin");
    return 0;
}

/* Lists the prewarm pins and drops the stale ones. */
static int pw_reconcile(pw_ctx *ctx, const pw_list *l, mv_error *err)
{
    cache_pin_info *pins = NULL;
    size_t n = 0;
    int r = cache_pins_list(ctx->cache, PW_OWNER_PREFIX, &pins, &n, err);
    if (r < 0)
        return mv_error_wrap(err, "list prewarm pins");
    r = pw_unpin_stale(ctx, l, pins, n, err);
    cache_pins_free(pins, n);
    return r;
}

/* One full pass: pull and pin the list, then drop stale pins. Returns the
 * number of failures (invalid lines, failed pulls, failed unpins). */
static int pw_apply(pw_ctx *ctx, pw_list *l)
{
    int failed = pw_cycle(ctx, l) + l->invalid;
    if (ctx->stopping)
        return failed;
    mv_error err = MV_ERROR_INIT;
    if (pw_reconcile(ctx, l, &err) < 0) {
        fprintf(stderr, "modelpull: prewarm: %s\n", err.msg);
        failed++;
    }
    printf("modelpull prewarm: cycle done references=%zu failed=%d\n", l->n, failed);
    fflush(stdout);
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

static int pw_watch(pw_ctx *ctx, pw_list *cur, int ifd, int failed)
{
    for (;;) {
        struct pollfd pfd[2] = {{.fd = ctx->sigfd, .events = POLLIN},
                                {.fd = ifd, .events = POLLIN}};
        /* Retry pulls that failed; an invalid line needs an edit instead. */
        bool retry = failed > cur->invalid;
        int pr = poll(pfd, 2, retry ? ctx->retry_ms : -1);
        if (pr < 0 && errno != EINTR) {
            fprintf(stderr, "modelpull: prewarm: poll: %s\n", strerror(errno));
            return 1;
        }
        if (pfd[0].revents & POLLIN)
            pw_read_signals(ctx);
        if (ctx->stopping)
            return 0;
        bool changed = pr > 0 && (pfd[1].revents & POLLIN);
        if (changed && pw_settle(ctx, ifd) < 0) {
            fprintf(stderr, "modelpull: prewarm: the directory of %s went away; exiting\n",
                    ctx->list_path);
            return 1;
        }
        if (ctx->stopping)
            return 0;
        if (!changed && !retry)
            continue;
        _cleanup_(pw_list_clearp) pw_list next = {0};
        mv_error err = MV_ERROR_INIT;
        if (pw_list_load(ctx->list_path, &next, &err) < 0) {
            /* A ConfigMap swap is atomic, an editor's may not be: keep the
             * current state and wait for the next change. */
            fprintf(stderr, "modelpull: prewarm: %s; keeping the current pins\n", err.msg);
            continue;
        }
        if (!retry && pw_list_same(cur, &next))
            continue;
        printf("modelpull prewarm: %s list=%s references=%zu\n", changed ? "reloading" : "retrying",
               ctx->list_path, next.n);
        pw_list_clear(cur);
        *cur = next;
        next = (pw_list){0};
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
            "references no longer listed are dropped.\n\n"
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
            PW_MAX_PARALLEL, PW_RETRY_SECONDS);
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

static int prewarm_main(const cli_global *g, int argc, char **argv)
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
    pw_ctx ctx = {.g = g,
                  .parallel = 2,
                  .sigfd = -1,
                  .policy = CACHE_PULL_IF_NOT_PRESENT,
                  .retry_ms = PW_RETRY_SECONDS * 1000};
    bool watch = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "f:j:wh", opts, NULL)) != -1) {
        switch (ch) {
        case 'f':
            ctx.list_path = optarg;
            break;
        case 'j':
            if (pw_parse_int("--parallel", optarg, 1, PW_MAX_PARALLEL, &ctx.parallel) < 0)
                return 2;
            break;
        case 'r': {
            int secs = 0;
            if (pw_parse_int("--retry", optarg, 1, PW_RETRY_SECONDS_MAX, &secs) < 0)
                return 2;
            ctx.retry_ms = secs * 1000;
            break;
        }
        case 'w':
            watch = true;
            break;
        case 'P':
            ctx.plain_http = true;
            break;
        case 'p': {
            mv_error perr = MV_ERROR_INIT;
            if (cache_pull_policy_parse(optarg, &ctx.policy, &perr) < 0) {
                fprintf(stderr,
                        "modelpull: prewarm: --policy \"%s\": want IfNotPresent, "
                        "Always or Never\n",
                        optarg);
                return 2;
            }
            break;
        }
        case 'h':
            pw_usage(stdout);
            return 0;
        default:
            pw_usage(stderr);
            return 2;
        }
    }
    if (!ctx.list_path || optind != argc) {
        fprintf(stderr, "modelpull: prewarm: %s; run 'modelpull prewarm --help'\n",
                ctx.list_path ? "unexpected argument" : "-f FILE is required");
        return 2;
    }

    mv_error err = MV_ERROR_INIT;
    _cleanup_(pw_list_clearp) pw_list list = {0};
    if (pw_list_load(ctx.list_path, &list, &err) < 0) {
        cli_error("modelpull", &err);
        return 1;
    }
    if (pull_config_load(g->config_path, g->config_named, &ctx.config, &err) < 0) {
        cli_error("modelpull", &err);
        return 1;
    }
    _cleanup_cache_ cache *c = NULL;
    if (cache_open(g->cache_dir, NULL, &c, &err) < 0) {
        pull_config_free(ctx.config);
        cli_error("modelpull", &err);
        return 1;
    }
    ctx.cache = c;

    /* Signals arrive through a signalfd so a stop request is seen between
     * any two steps, never in the middle of one. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, &ctx.oldmask);
    ctx.sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    _cleanup_close_ int ifd = -1;
    int rc = 0;
    if (ctx.sigfd < 0) {
        fprintf(stderr, "modelpull: prewarm: signalfd: %s\n", strerror(errno));
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
            fprintf(stderr, "modelpull: prewarm: watch %s: %s\n", dir, strerror(errno));
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
    if (ctx.sigfd >= 0)
        close(ctx.sigfd);
    sigprocmask(SIG_SETMASK, &ctx.oldmask, NULL);
    pull_config_free(ctx.config);
    return rc;
}

CLI_VERB("prewarm", "pull and pin the models listed in a file; --watch follows changes",
         prewarm_main)
