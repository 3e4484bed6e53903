/* budget.c — the node's pull scheduler: one connection budget that every
 * pull of a process draws from. Pulls (tenants) are ordered by priority,
 * then arrival. The first that wants connections gets all it can use; the
 * others share what the measured throughput says is worth opening beside
 * it. Whether more connections add throughput is found by probing: open a
 * few more for the next pull, measure a window, keep them only if the node
 * got faster by a good part of what that many connections carry. A link the
 * first pull already fills so makes the pulls run one after another, and
 * storage that caps each connection lets them run side by side. Each host
 * is also capped at a fixed number of connections, whatever the probe says,
 * and its slots go in the same order: a pull that the cap turns away is
 * that host's waiter, later pulls take no slot there and give back what
 * they hold there until it has what it wants. */
#include "puller-internal.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>

/* Throughput is measured over windows this long: long enough to smooth
 * TCP's ramp and 16 KiB writes, short enough that a probe costs little. */
#define WINDOW_MS 500
/* How often an outside limit (the prewarm's yield) is asked again. */
#define LIMIT_CHECK_MS 250
/* After a probe that did not pay, wait this long before the next, doubling
 * up to HOLD_MAX_MS while probes keep failing. */
#define HOLD_MIN_MS 2000
#define HOLD_MAX_MS 30000
/* A probe is kept when the node's rate grew by at least this share of what
 * the connections it added carry at the per-connection rate before it. */
#define KEEP_SHARE 0.5

typedef enum { PROBE_STEADY = 0, PROBE_RAMP, PROBE_MEASURE } probe_state;

struct pull_tenant {
    pull_budget *b;
    pull_tenant *next; /* in b->tenants, by (priority, seq) */
    int priority;
    uint64_t seq;
    int max;       /* the most connections it ever uses (its own option) */
    int want;      /* connections it could use now */
    int held;      /* slots taken and not given back */
    int allowance; /* slots it may hold now */
    uint64_t bytes;
    bool waited; /* it has been counted as waiting for its first slot */
    bool served; /* it got its first slot */
    uint64_t joined_ms;
    int held_on[PULL_BUDGET_HOSTS_MAX]; /* of held, per row of b->hosts */
};

typedef struct budget_host {
    char name[256];
    int in_use;
    /* The earliest tenant the cap turned away that may still take more;
     * NULL for none. */
    pull_tenant *waiter;
} budget_host;

struct pull_budget {
    pthread_mutex_t mu;
    int per_host;
    budget_host hosts[PULL_BUDGET_HOSTS_MAX];
    size_t n_hosts;
    pull_tenant *tenants;
    uint64_t seq;
    uint64_t (*clock)(void);

    /* the probe */
    int target; /* connections the pulls together may hold */
    probe_state state;
    int step;
    int base_target, base_held;
    double base_rate;
    uint64_t hold_ms, hold_until;

    /* the current window */
    uint64_t win_start;
    uint64_t win_bytes;  /* total bytes at its start */
    uint64_t bytes_left; /* bytes of tenants that have left */
    double rate;         /* bytes per second of the last whole window */

    /* an outside limit on all connections, 0 for none */
    pull_budget_limit_fn limit_fn;
    void *limit_ud;
    int limit;
    uint64_t limit_at;

    /* stats */
    uint64_t waits;
    double wait_seconds;
    uint64_t kept, dropped;
};

int pull_budget_new(int per_host, pull_budget **out, mv_error *err)
{
    if (per_host == 0)
        per_host = PULL_BUDGET_PER_HOST_DEFAULT;
    if (per_host < 1 || per_host > PULL_BUDGET_PER_HOST_MAX)
        return mv_error_set(err, -EINVAL, "pull budget: %d connections per host: expected 1 to %d",
                            per_host, PULL_BUDGET_PER_HOST_MAX);
    pull_budget *b = mv_xcalloc(1, sizeof(*b));
    pthread_mutex_init(&b->mu, NULL);
    b->per_host = per_host;
    b->clock = pull_now_ms;
    *out = b;
    return 0;
}

void pull_budget_free(pull_budget *b)
{
    if (!b)
        return;
    pthread_mutex_destroy(&b->mu);
    free(b);
}

void pull_budget_set_limit(pull_budget *b, pull_budget_limit_fn fn, void *ud)
{
    pthread_mutex_lock(&b->mu);
    b->limit_fn = fn;
    b->limit_ud = ud;
    b->limit_at = 0;
    pthread_mutex_unlock(&b->mu);
}

void pull_budget_set_clock(pull_budget *b, uint64_t (*clock)(void))
{
    b->clock = clock ? clock : pull_now_ms;
}

int pull_budget_per_host(const pull_budget *b)
{
    return b->per_host;
}

/* ------------------------------------------------------------------------ */
/* Sharing out: under b->mu                                                 */
/* ------------------------------------------------------------------------ */

static int imin(int a, int b)
{
    return a < b ? a : b;
}

/* Whether a goes before b: by priority, then arrival. */
static bool earlier(const pull_tenant *a, const pull_tenant *b)
{
    return a->priority < b->priority || (a->priority == b->priority && a->seq < b->seq);
}

/* Whether an earlier tenant waits for a slot on host row h. */
static bool behind_waiter(const budget_host *h, const pull_tenant *t)
{
    return h->waiter && h->waiter != t && earlier(h->waiter, t);
}

static uint64_t total_bytes(const pull_budget *b)
{
    uint64_t s = b->bytes_left;
    for (const pull_tenant *t = b->tenants; t; t = t->next)
        s += t->bytes;
    return s;
}

static int total_held(const pull_budget *b)
{
    int s = 0;
    for (const pull_tenant *t = b->tenants; t; t = t->next)
        s += t->held;
    return s;
}

/* The first tenant that wants connections; whether others want some, and
 * whether one of them wants more than it is allowed (someone a probe could
 * serve). */
static pull_tenant *head(const pull_budget *b, bool *others, bool *starved)
{
    pull_tenant *h = NULL;
    *others = *starved = false;
    for (pull_tenant *t = b->tenants; t; t = t->next) {
        if (t->want <= 0)
            continue;
        if (!h) {
            h = t;
            continue;
        }
        *others = true;
        if (t->want > t->allowance)
            *starved = true;
    }
    return h;
}

/* Gives each tenant its allowance: the head what it can use, the rest in
 * order what is left of the target, all within the outside limit. */
static void share_out(pull_budget *b)
{
    bool others, starved;
    pull_tenant *h = head(b, &others, &starved);
    int cap = b->limit > 0 ? b->limit : INT_MAX;
    int head_use = h ? imin(h->want, cap) : 0;
    if (b->target < head_use)
        b->target = head_use;
    int left = b->target - head_use;
    for (pull_tenant *t = b->tenants; t; t = t->next) {
        if (t == h) {
            /* What it may grow to, so a blob between two others does not
             * give its connections away for one loop. */
            t->allowance = imin(t->max, cap);
        } else {
            t->allowance = imin(imin(t->want, left), cap - head_use);
            if (t->allowance < 0)
                t->allowance = 0;
            left -= t->allowance;
        }
    }
    /* A waiter that holds what it may or wants stops waiting; a tenant
     * behind one gives back its slots on that host. */
    for (size_t i = 0; i < b->n_hosts; i++) {
        pull_tenant *w = b->hosts[i].waiter;
        if (w && (w->held >= w->allowance || w->want <= w->held))
            b->hosts[i].waiter = NULL;
    }
    for (pull_tenant *t = b->tenants; t; t = t->next) {
        int yield = 0;
        for (size_t i = 0; i < b->n_hosts; i++)
            if (behind_waiter(&b->hosts[i], t))
                yield += t->held_on[i];
        if (yield && t->allowance > t->held - yield)
            t->allowance = t->held - yield > 0 ? t->held - yield : 0;
    }
}

static void probe_end(pull_budget *b, bool keep, uint64_t now)
{
    if (keep) {
        b->kept++;
        b->step = b->step > 1 ? b->step / 2 : 1;
        b->hold_ms = 0;
        b->hold_until = 0;
    } else {
        b->dropped++;
        b->target = b->base_target;
        b->step = 0;
        b->hold_ms = b->hold_ms ? b->hold_ms * 2 : HOLD_MIN_MS;
        if (b->hold_ms > HOLD_MAX_MS)
            b->hold_ms = HOLD_MAX_MS;
        b->hold_until = now + b->hold_ms;
    }
    b->state = PROBE_STEADY;
}

/* At the end of each window: measures, and moves the probe on. */
static void window_end(pull_budget *b, uint64_t now)
{
    uint64_t bytes = total_bytes(b);
    double secs = (double)(now - b->win_start) / 1000.0;
    b->rate = secs > 0 ? (double)(bytes - b->win_bytes) / secs : 0;
    b->win_start = now;
    b->win_bytes = bytes;
    int held = total_held(b);
    bool others, starved;
    pull_tenant *h = head(b, &others, &starved);
    if (!h || !others) {
        /* One pull, or none: nothing to probe for. A new queue starts
         * from what the head uses. */
        if (b->state != PROBE_STEADY)
            b->state = PROBE_STEADY;
        b->target = h ? imin(h->want, b->limit > 0 ? b->limit : INT_MAX) : 0;
        b->step = 0;
        return;
    }
    switch (b->state) {
    case PROBE_STEADY:
        if (!starved || now < b->hold_until || held == 0 || b->rate <= 0)
            return;
        if (b->limit > 0 && held >= b->limit)
            return;
        b->base_rate = b->rate;
        b->base_held = held;
        b->base_target = b->target;
        if (!b->step)
            b->step = held / 4 > 2 ? held / 4 : 2;
        b->target += b->step;
        b->state = PROBE_RAMP;
        return;
    case PROBE_RAMP:
        /* The new connections were opening during this window: judge the
         * next one. */
        b->state = PROBE_MEASURE;
        return;
    case PROBE_MEASURE: {
        int gained = held - b->base_held;
        if (gained <= 0) {
            /* The others could not use them (resolving, between blobs):
             * no verdict; try again later. */
            b->target = b->base_target;
            b->state = PROBE_STEADY;
            return;
        }
        double per_conn = b->base_rate / (b->base_held > 0 ? b->base_held : 1);
        probe_end(b, b->rate >= b->base_rate + KEEP_SHARE * per_conn * gained, now);
        return;
    }
    }
}

static void refresh_limit(pull_budget *b, uint64_t now)
{
    if (!b->limit_fn || now - b->limit_at < LIMIT_CHECK_MS)
        return;
    b->limit_at = now;
    b->limit = b->limit_fn(b->limit_ud);
}

/* ------------------------------------------------------------------------ */
/* Tenants (download.c)                                                     */
/* ------------------------------------------------------------------------ */

pull_tenant *pull_budget_join(pull_budget *b, int priority, int max)
{
    pull_tenant *t = mv_xcalloc(1, sizeof(*t));
    t->b = b;
    t->priority = priority;
    t->max = max > 0 ? max : 1;
    pthread_mutex_lock(&b->mu);
    t->seq = b->seq++;
    t->joined_ms = b->clock();
    pull_tenant **pp = &b->tenants;
    while (*pp && (*pp)->priority <= priority)
        pp = &(*pp)->next;
    t->next = *pp;
    *pp = t;
    if (!b->win_start) {
        b->win_start = t->joined_ms;
        b->win_bytes = total_bytes(b);
    }
    refresh_limit(b, t->joined_ms);
    share_out(b);
    pthread_mutex_unlock(&b->mu);
    return t;
}

void pull_budget_leave(pull_tenant *t)
{
    if (!t)
        return;
    pull_budget *b = t->b;
    pthread_mutex_lock(&b->mu);
    for (pull_tenant **pp = &b->tenants; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    b->bytes_left += t->bytes;
    for (size_t i = 0; i < b->n_hosts; i++)
        if (b->hosts[i].waiter == t)
            b->hosts[i].waiter = NULL;
    if (!b->tenants) {
        /* Idle: the next pull starts a fresh measurement. */
        b->win_start = 0;
        b->rate = 0;
        b->state = PROBE_STEADY;
        b->target = 0;
        b->step = 0;
        b->hold_ms = b->hold_until = 0;
    }
    share_out(b);
    pthread_mutex_unlock(&b->mu);
    free(t);
}

int pull_budget_tick(pull_tenant *t, uint64_t bytes, int want)
{
    pull_budget *b = t->b;
    pthread_mutex_lock(&b->mu);
    uint64_t now = b->clock();
    t->bytes = bytes;
    t->want = want < 0 ? 0 : imin(want, t->max);
    refresh_limit(b, now);
    if (!b->win_start) {
        b->win_start = now;
        b->win_bytes = total_bytes(b);
    } else if (now - b->win_start >= WINDOW_MS) {
        window_end(b, now);
    }
    share_out(b);
    if (t->want > 0 && t->allowance == 0 && !t->served)
        t->waited = true;
    int a = t->allowance;
    pthread_mutex_unlock(&b->mu);
    return a;
}

static budget_host *host_of(pull_budget *b, const char *host)
{
    for (size_t i = 0; i < b->n_hosts; i++)
        if (strcmp(b->hosts[i].name, host) == 0)
            return &b->hosts[i];
    /* A free row: a host no connection uses any more is forgotten. */
    for (size_t i = 0; i < b->n_hosts; i++) {
        if (b->hosts[i].in_use == 0 && !b->hosts[i].waiter) {
            snprintf(b->hosts[i].name, sizeof(b->hosts[i].name), "%s", host);
            return &b->hosts[i];
        }
    }
    if (b->n_hosts == PULL_BUDGET_HOSTS_MAX)
        return NULL;
    budget_host *h = &b->hosts[b->n_hosts++];
    snprintf(h->name, sizeof(h->name), "%s", host);
    return h;
}

bool pull_budget_take(pull_tenant *t, const char *host)
{
    pull_budget *b = t->b;
    pthread_mutex_lock(&b->mu);
    bool ok = false;
    budget_host *h = t->held < t->allowance ? host_of(b, host) : NULL;
    bool behind = h && behind_waiter(h, t);
    bool full = !h || behind || h->in_use >= b->per_host;
    /* Waiting is wanting a slot and not getting one, whichever cap said no. */
    if (!t->served && full)
        t->waited = true;
    if (h && !behind && h->in_use >= b->per_host && (!h->waiter || earlier(t, h->waiter)))
        h->waiter = t;
    if (!full) {
        h->in_use++;
        t->held++;
        t->held_on[h - b->hosts]++;
        ok = true;
        if (!t->served) {
            t->served = true;
            if (t->waited) {
                b->waits++;
                b->wait_seconds += (double)(b->clock() - t->joined_ms) / 1000.0;
            }
        }
    }
    pthread_mutex_unlock(&b->mu);
    return ok;
}

void pull_budget_give(pull_tenant *t, const char *host)
{
    pull_budget *b = t->b;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->n_hosts; i++) {
        if (strcmp(b->hosts[i].name, host) == 0 && b->hosts[i].in_use > 0) {
            b->hosts[i].in_use--;
            if (t->held_on[i] > 0)
                t->held_on[i]--;
            break;
        }
    }
    if (t->held > 0)
        t->held--;
    pthread_mutex_unlock(&b->mu);
}

bool pull_budget_yields(pull_tenant *t, const char *host)
{
    pull_budget *b = t->b;
    pthread_mutex_lock(&b->mu);
    bool y = false;
    for (size_t i = 0; i < b->n_hosts && !y; i++)
        y = strcmp(b->hosts[i].name, host) == 0 && t->held_on[i] > 0 &&
            behind_waiter(&b->hosts[i], t);
    pthread_mutex_unlock(&b->mu);
    return y;
}

/* ------------------------------------------------------------------------ */
/* Stats (metrics)                                                          */
/* ------------------------------------------------------------------------ */

void pull_budget_stats_read(pull_budget *b, pull_budget_stats *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&b->mu);
    for (const pull_tenant *t = b->tenants; t; t = t->next) {
        if (t->held > 0)
            out->running++;
        else if (t->want > 0)
            out->queued++;
    }
    out->throughput = out->running ? b->rate : 0;
    out->target = b->target;
    out->limit = b->limit;
    out->per_host = b->per_host;
    out->waits = b->waits;
    out->wait_seconds_sum = b->wait_seconds;
    out->probes_kept = b->kept;
    out->probes_dropped = b->dropped;
    for (size_t i = 0; i < b->n_hosts; i++) {
        snprintf(out->hosts[out->n_hosts].host, sizeof(out->hosts[0].host), "%s", b->hosts[i].name);
        out->hosts[out->n_hosts++].in_use = b->hosts[i].in_use;
    }
    pthread_mutex_unlock(&b->mu);
}
