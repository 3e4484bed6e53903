/* prewarm.c — pre-warming, the step behind `modelpull prewarm`: parses a
 * list of references, pulls and pins each with owner "prewarm:<reference>",
 * and drops the prewarm pins the list no longer wants.
 *
 * Each pull runs in its own child process with its own cache handle: a pull
 * is long, may be cancelled, and must not share libcurl or cache state with
 * the others, and the caller stays free to answer a stop request at once.
 * A child reports through a pipe, whose end of file also says it exited, so
 * the caller's signal handling (SIGCHLD) is none of this file's business. */
#include "cache-internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* The list                                                                 */
/* ------------------------------------------------------------------------ */

void cache_prewarm_list_clear(cache_prewarm_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].reference);
        cache_request_free(l->v[i].rq);
    }
    for (size_t i = 0; i < l->n_bad; i++)
        free(l->bad[i].error);
    free(l->v);
    free(l->bad);
    *l = (cache_prewarm_list){0};
}

static bool list_has(const cache_prewarm_list *l, const char *ref)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].reference, ref) == 0)
            return true;
    return false;
}

bool cache_prewarm_list_equal(const cache_prewarm_list *a, const cache_prewarm_list *b)
{
    if (a->n != b->n || a->n_bad != b->n_bad)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i].reference, b->v[i].reference) != 0)
            return false;
    return true;
}

/* The fields a list line may carry after its reference, each "key=value",
 * and where each goes in the request: the one place that says which keys
 * a line accepts. */
static const struct {
    const char *key;
    size_t offset; /* of a const char * in cache_request_args */
} line_fields[] = {
    {"artifactType", offsetof(cache_request_args, artifact_type)},
    {"platform", offsetof(cache_request_args, platform)},
    {"annotation", offsetof(cache_request_args, annotation)},
    {"kinds", offsetof(cache_request_args, kinds_csv)},
};

/* The words of a line, split at blanks, set into a: the reference, then
 * its fields. name is the line as one text, for messages. */
static int parse_line(char *line, const char *name, cache_request_args *a, mv_error *perr)
{
    enum { N_FIELDS = sizeof(line_fields) / sizeof(line_fields[0]) };
    bool seen[N_FIELDS] = {0};
    char *save = NULL;
    a->reference = strtok_r(line, " \t", &save);
    for (char *w = strtok_r(NULL, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
        char *eq = strchr(w, '=');
        if (!eq)
            return mv_error_set(perr, -EINVAL,
                                "\"%s\" is not one reference: \"%s\" is not a key=value field",
                                MV_QUOTED(name), MV_QUOTED(w));
        size_t i = 0;
        while (i < N_FIELDS && (strlen(line_fields[i].key) != (size_t)(eq - w) ||
                                strncmp(w, line_fields[i].key, (size_t)(eq - w)) != 0))
            i++;
        if (i == N_FIELDS) {
            *eq = '\0';
            char known[128] = "";
            for (size_t k = 0; k < N_FIELDS; k++)
                snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s",
                         k ? ", " : "", line_fields[k].key);
            return mv_error_set(perr, -EINVAL, "\"%s\": unknown field \"%s\" (known: %s)",
                                MV_QUOTED(name), MV_QUOTED(w), known);
        }
        if (seen[i])
            return mv_error_set(perr, -EINVAL, "\"%s\": field %s given twice", MV_QUOTED(name),
                                line_fields[i].key);
        seen[i] = true;
        *(const char **)(void *)((char *)a + line_fields[i].offset) = eq + 1;
    }
    return 0;
}

/* References and fields never contain '#', so a comment and the blanks
 * around them can be cut before they are parsed. An entry is named by its
 * words joined by one blank: the pin owner, so the same reference with
 * other fields is another entry with a pin of its own. */
int cache_prewarm_list_parse(const char *text, cache_prewarm_list *out, mv_error *err)
{
    _cleanup_free_ char *copy = mv_xstrdup(text);
    _cleanup_(cache_prewarm_list_clearp) cache_prewarm_list l = {0};
    int lineno = 0;
    char *next = NULL;
    /* strtok_r would merge empty lines and break line numbers. */
    for (char *line = copy; line; line = next) {
        lineno++;
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        line += strspn(line, " \t\r");
        size_t len = strlen(line);
        while (len > 0 && strchr(" \t\r", line[len - 1]))
            line[--len] = '\0';
        if (len == 0)
            continue;
        _cleanup_free_ char *name = NULL;
        for (const char *w = line; *w;) {
            size_t n = strcspn(w, " \t");
            char *t = mv_xasprintf("%s%s%.*s", name ? name : "", name ? " " : "", (int)n, w);
            free(name);
            name = t;
            w += n;
            w += strspn(w, " \t");
        }
        if (list_has(&l, name))
            continue;
        _cleanup_cache_request_ cache_request *rq = NULL;
        mv_error perr = MV_ERROR_INIT;
        cache_request_args args = {0};
        if (parse_line(line, name, &args, &perr) < 0 ||
            cache_request_parse(&args, &rq, &perr) < 0) {
            l.bad = mv_xrealloc(l.bad, (l.n_bad + 1) * sizeof(*l.bad));
            l.bad[l.n_bad++] = (cache_prewarm_bad_line){lineno, mv_xstrdup(perr.msg)};
            continue;
        }
        if (l.n >= CACHE_PREWARM_MAX_ENTRIES)
            return mv_error_set(err, -E2BIG, "more than %d references", CACHE_PREWARM_MAX_ENTRIES);
        l.v = mv_xrealloc(l.v, (l.n + 1) * sizeof(*l.v));
        l.v[l.n++] = (cache_prewarm_entry){MV_STEAL(name), lineno, MV_STEAL(rq)};
    }
    *out = l;
    l = (cache_prewarm_list){0};
    return 0;
}

int cache_prewarm_list_load(const char *path, cache_prewarm_list *out, mv_error *err)
{
    _cleanup_free_ char *text = NULL;
    /* Through symlinks: a mounted ConfigMap's file is one (into ..data). */
    int r = mv_read_file(path, CACHE_PREWARM_MAX_LIST_BYTES, &text, NULL, err);
    if (r < 0)
        return mv_error_wrap(err, "list");
    r = cache_prewarm_list_parse(text, out, err);
    if (r < 0)
        return mv_error_wrap(err, "list %s", path);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* One entry, in a child process                                            */
/* ------------------------------------------------------------------------ */

static volatile sig_atomic_t child_cancel;

static void child_on_term(int sig)
{
    (void)sig;
    child_cancel = 1;
}

/* The one call of cache_pull. GC (the plugin's, or modelpull gc) may remove
 * a tree between the pull that built it and the pin that protects it;
 * cache_pin then answers -ENOENT, and pulling again rebuilds the tree from
 * what is left. */
static int pull_and_pin(cache *c, const char *ref, const cache_request *rq,
                        cache_prewarm_result *out, mv_error *err)
{
    _cleanup_free_ char *owner = mv_xasprintf(CACHE_PREWARM_OWNER_PREFIX "%s", ref);
    cache_pull_result res = {0};
    for (int attempt = 0;; attempt++) {
        cache_pull_result_clear(&res);
        int r = cache_pull(c, rq, &res, err);
        if (r == 0)
            r = cache_pin(c, res.tree_id, owner, err);
        if (r == -ENOENT && attempt < 2) {
            mv_error_clear(err);
            continue;
        }
        if (r == 0) {
            snprintf(out->tree_id, sizeof(out->tree_id), "%s", res.tree_id);
            out->bytes_downloaded = res.bytes_downloaded;
            out->cache_hit = res.cache_hit;
        }
        cache_pull_result_clear(&res);
        return r;
    }
}

/* This child's share of CACHE_PREWARM_YIELD_CONNECTIONS: the pass runs
 * o->parallel children at once. */
static int yield_share;

/* The budget's outside limit: the yield share while the plugin publishes,
 * else none. */
static int yield_limit(void *ud)
{
    return cache_publishing_active(ud) ? yield_share : 0;
}

/* Runs in the child: pulls and pins, then writes its result whole to wfd
 * (one write of less than PIPE_BUF: the parent reads it in one piece). */
static int child_run(const char *root, const cache_prewarm_opts *o, const cache_prewarm_entry *e,
                     int wfd)
{
    struct sigaction sa = {.sa_handler = child_on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigaddset(&term, SIGINT);
    sigprocmask(SIG_UNBLOCK, &term, NULL);

    cache_prewarm_result res = {0};
    _cleanup_cache_ cache *c = NULL;
    _cleanup_pull_creds_ pull_creds *creds = NULL;
    cache_registry now = {0};
    /* This process's copy of the request: the parent's stays as it was. */
    cache_request *rq = e->rq;
    rq->policy = o->policy;
    rq->pull = o->pull;
    rq->pull.cancel = (const volatile int *)&child_cancel;
    rq->registry = o->registry;
    int r = 0;
    if (o->default_creds) {
        /* The registry configuration as the pass has it, the credentials
         * as they are now. */
        r = pull_creds_load_default(&creds, &res.error);
        now = (cache_registry){o->registry ? o->registry->config : NULL, creds};
        rq->registry = &now;
    }
    if (r == 0)
        r = cache_open(root, NULL, &c, &res.error);
    _cleanup_pull_budget_ pull_budget *budget = NULL;
    if (r == 0)
        r = pull_budget_new(0, &budget, &res.error);
    if (r == 0) {
        /* Yield to the plugin's publishes through the cache directory. */
        yield_share = CACHE_PREWARM_YIELD_CONNECTIONS / o->parallel;
        if (yield_share < 1)
            yield_share = 1;
        pull_budget_set_limit(budget, yield_limit, c);
        rq->pull.budget = budget;
        rq->pull.priority = PULL_PRIORITY_BACKGROUND;
        r = pull_and_pin(c, e->reference, rq, &res, &res.error);
    }
    if (r < 0 && !res.error.msg[0])
        mv_error_set(&res.error, r, "failed");
    _Static_assert(sizeof(res) < PIPE_BUF, "a result is written in one piece");
    ssize_t w = write(wfd, &res, sizeof(res));
    (void)w; /* a short report reads as "no report" */
    return r < 0 ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* A pass: the children, then the stale pins                                */
/* ------------------------------------------------------------------------ */

typedef struct pw_job {
    size_t entry;
    pid_t pid; /* 0: free slot */
    int rfd;
    cache_prewarm_result buf;
    size_t len;
} pw_job;

typedef struct pw_pass {
    cache *c;
    const cache_prewarm_opts *o;
    const cache_prewarm_entry *v;
    cache_prewarm_result *res;
    pw_job *jobs;
    int slots;
    int running;
} pw_pass;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void report(const pw_pass *p, const cache_prewarm_event *ev)
{
    if (p->o->report)
        p->o->report(ev, p->o->ud);
}

static int spawn(pw_pass *p, pw_job *job, mv_error *err)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return mv_error_errno(err, -errno, "pipe");
    /* The child inherits stdio buffers: flush them so nothing prints twice. */
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        int e = -errno;
        close(fds[0]);
        close(fds[1]);
        return mv_error_errno(err, e, "fork");
    }
    if (pid == 0) {
        close(fds[0]);
        if (p->o->stop_fd >= 0)
            close(p->o->stop_fd);
        int rc = child_run(cache_root(p->c), p->o, &p->v[job->entry], fds[1]);
        /* exit, not _exit: leak checking and stdio flushing run in the child. */
        exit(rc);
    }
    close(fds[1]);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    job->pid = pid;
    job->rfd = fds[0];
    job->len = 0;
    return 0;
}

/* The child has closed its pipe (it is exiting): reaps it and records its
 * result, or why there is none. */
static void finish(pw_pass *p, pw_job *job)
{
    int st = 0;
    pid_t r;
    while ((r = waitpid(job->pid, &st, 0)) < 0 && errno == EINTR)
        ;
    close(job->rfd);
    job->rfd = -1;
    job->pid = 0;
    p->running--;
    const char *ref = p->v[job->entry].reference;
    cache_prewarm_result *res = &p->res[job->entry];
    if (r > 0 && WIFEXITED(st) && job->len == sizeof(job->buf)) {
        *res = job->buf;
        res->tree_id[sizeof(res->tree_id) - 1] = '\0';
        res->error.msg[sizeof(res->error.msg) - 1] = '\0';
        if (WEXITSTATUS(st) != 0 && res->error.code == 0)
            mv_error_set(&res->error, -EIO, "pull process failed");
    } else if (r > 0 && WIFSIGNALED(st)) {
        mv_error_set(&res->error, -EINTR, "pull process killed by signal %d", WTERMSIG(st));
    } else {
        mv_error_set(&res->error, -EIO, "pull process failed without a report");
    }
    bool ok = res->error.code == 0;
    report(p, &(cache_prewarm_event){.kind = ok ? CACHE_PREWARM_PINNED : CACHE_PREWARM_PULL_FAILED,
                                     .reference = ref,
                                     .tree_id = ok ? res->tree_id : NULL,
                                     .result = res,
                                     .error = ok ? NULL : &res->error});
}

/* Reads what the child wrote; at end of file, finishes the job. */
static void drain(pw_pass *p, pw_job *job)
{
    for (;;) {
        char *dst = (char *)&job->buf + job->len;
        size_t room = sizeof(job->buf) - job->len;
        char spill[256];
        ssize_t n = room ? read(job->rfd, dst, room) : read(job->rfd, spill, sizeof(spill));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0)
            break;
        if (room)
            job->len += (size_t)n;
    }
    finish(p, job);
}

static void signal_all(pw_pass *p, int sig)
{
    for (int j = 0; j < p->slots; j++)
        if (p->jobs[j].pid)
            kill(p->jobs[j].pid, sig);
}

/* Runs every entry, at most o->parallel at a time. Returns true when a stop
 * request cut the pass short; the running pulls are then cancelled (SIGTERM,
 * then SIGKILL after the grace period) and reaped. */
static bool run_pulls(pw_pass *p, size_t n)
{
    bool stopping = false;
    size_t next = 0;
    long long kill_at = 0;
    _cleanup_free_ struct pollfd *pfd = mv_xcalloc((size_t)p->slots + 1, sizeof(*pfd));
    _cleanup_free_ int *slot_of = mv_xcalloc((size_t)p->slots + 1, sizeof(*slot_of));
    for (;;) {
        for (int j = 0; j < p->slots && !stopping && next < n; j++) {
            if (p->jobs[j].pid)
                continue;
            p->jobs[j].entry = next++;
            mv_error *e = &p->res[p->jobs[j].entry].error;
            if (spawn(p, &p->jobs[j], e) < 0) {
                report(p, &(cache_prewarm_event){.kind = CACHE_PREWARM_PULL_FAILED,
                                                 .reference = p->v[p->jobs[j].entry].reference,
                                                 .result = &p->res[p->jobs[j].entry],
                                                 .error = e});
                continue;
            }
            p->running++;
        }
        if (p->running == 0)
            break;
        nfds_t k = 0;
        pfd[k++] = (struct pollfd){.fd = p->o->stop_fd, .events = POLLIN};
        for (int j = 0; j < p->slots; j++) {
            if (!p->jobs[j].pid)
                continue;
            slot_of[k] = j;
            pfd[k++] = (struct pollfd){.fd = p->jobs[j].rfd, .events = POLLIN};
        }
        int timeout = -1;
        if (kill_at) {
            long long left = kill_at - now_ms();
            timeout = left > 0 ? (int)left : 0;
        }
        if (poll(pfd, k, timeout) < 0 && errno != EINTR)
            break;
        /* The callback drains the fd, so it runs whenever it is readable. */
        if ((pfd[0].revents & POLLIN) && p->o->stop(p->o->ud) && !stopping) {
            stopping = true;
            signal_all(p, SIGTERM);
            kill_at = now_ms() + CACHE_PREWARM_STOP_GRACE_MS;
        } else if (kill_at && now_ms() >= kill_at) {
            signal_all(p, SIGKILL);
            kill_at = 0;
        }
        for (nfds_t i = 1; i < k; i++)
            if (pfd[i].revents)
                drain(p, &p->jobs[slot_of[i]]);
    }
    return stopping;
}

/* Why the prewarm pin of tree for ref must go, or NULL to keep it. */
static const char *stale_reason(const pw_pass *p, size_t n, const char *ref, const char *tree_id)
{
    for (size_t k = 0; k < n; k++) {
        if (strcmp(p->v[k].reference, ref) != 0)
            continue;
        const cache_prewarm_result *r = &p->res[k];
        if (r->error.code != 0 || strcmp(r->tree_id, tree_id) == 0)
            return NULL; /* a failure keeps what it had */
        return "tag-moved";
    }
    return "removed-from-list";
}

/* Returns true when every stale pin is gone; each failure is reported. */
static bool drop_stale(pw_pass *p, size_t n)
{
    cache_pin_info *pins = NULL;
    size_t npins = 0;
    mv_error err = MV_ERROR_INIT;
    if (cache_pins_list(p->c, CACHE_PREWARM_OWNER_PREFIX, &pins, &npins, &err) < 0) {
        mv_error_wrap(&err, "list prewarm pins");
        report(p, &(cache_prewarm_event){.kind = CACHE_PREWARM_UNPIN_FAILED, .error = &err});
        return false;
    }
    bool all = true;
    for (size_t i = 0; i < npins; i++) {
        const char *ref = pins[i].owner + strlen(CACHE_PREWARM_OWNER_PREFIX);
        const char *why = stale_reason(p, n, ref, pins[i].tree_id);
        if (!why)
            continue;
        mv_error_clear(&err);
        bool ok = cache_unpin(p->c, pins[i].tree_id, pins[i].owner, &err) == 0;
        all = all && ok;
        report(p, &(cache_prewarm_event){.kind = ok ? CACHE_PREWARM_UNPINNED
                                                    : CACHE_PREWARM_UNPIN_FAILED,
                                         .reference = ref,
                                         .tree_id = pins[i].tree_id,
                                         .reason = why,
                                         .error = ok ? NULL : &err});
    }
    cache_pins_free(pins, npins);
    return all;
}

int cache_prewarm_reconcile(cache *c, const cache_prewarm_opts *o, const cache_prewarm_list *list,
                            cache_prewarm_result *res, mv_error *err)
{
    if (o->parallel < 1 || o->parallel > CACHE_PREWARM_MAX_PARALLEL)
        return mv_error_set(err, -EINVAL, "prewarm: parallel %d: want 1..%d", o->parallel,
                            CACHE_PREWARM_MAX_PARALLEL);
    if (o->stop_fd >= 0 && !o->stop)
        return mv_error_set(err, -EINVAL, "prewarm: a stop fd needs a stop callback");
    _cleanup_free_ cache_prewarm_result *own = NULL;
    if (!res) {
        own = mv_xcalloc(list->n ? list->n : 1, sizeof(*res));
        res = own;
    }
    /* What a stop leaves unstarted stays failed: it keeps its old pins. */
    for (size_t i = 0; i < list->n; i++) {
        res[i] = (cache_prewarm_result){.error = MV_ERROR_INIT};
        mv_error_set(&res[i].error, -ECANCELED, "not started: stopping");
    }
    _cleanup_free_ pw_job *jobs = mv_xcalloc((size_t)o->parallel, sizeof(*jobs));
    pw_pass p = {.c = c, .o = o, .v = list->v, .res = res, .jobs = jobs, .slots = o->parallel};
    for (size_t i = 0; i < list->n_bad; i++) {
        mv_error bad = MV_ERROR_INIT;
        mv_error_set(&bad, -EINVAL, "%s", list->bad[i].error);
        report(&p, &(cache_prewarm_event){.kind = CACHE_PREWARM_INVALID_LINE,
                                          .line = list->bad[i].line,
                                          .error = &bad});
    }
    if (run_pulls(&p, list->n))
        return mv_error_set(err, -ECANCELED, "prewarm: stopped");
    int failed = (int)list->n_bad;
    for (size_t i = 0; i < list->n; i++)
        failed += res[i].error.code != 0;
    failed += !drop_stale(&p, list->n);
    report(&p, &(cache_prewarm_event){
                   .kind = CACHE_PREWARM_DONE, .references = list->n, .failed = failed});
    return failed;
}
