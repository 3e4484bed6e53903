/* test_budget.c — the node's pull scheduler (puller/budget.c) on a clock the
 * test moves: the first pull gets what it can use and the next waits; a
 * probe that adds no throughput is dropped and the next pull waits again; a
 * probe that does add is kept and the pulls run side by side; a publish goes
 * before background work that joined earlier; the host cap holds whatever
 * the allowances say, and its slots go in arrival order; an outside limit
 * caps everything; the stats count waits, probes and connections per host. */
#include "mvtest.h"
#include "puller-internal.h"

static uint64_t fake_now = 1000;
static uint64_t fake_clock(void)
{
    return fake_now;
}

static pull_budget *budget(int per_host)
{
    pull_budget *b = NULL;
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(pull_budget_new(per_host, &b, &err), 0);
    pull_budget_set_clock(b, fake_clock);
    return b;
}

/* Takes up to n slots on host; returns how many it got. */
static int take(pull_tenant *t, const char *host, int n)
{
    int got = 0;
    while (got < n && pull_budget_take(t, host))
        got++;
    return got;
}

/* A link of fixed capacity: each window the tenants' byte counters grow by
 * their share of rate_total (by connections held), or by per_conn each
 * when the link is not full. */
typedef struct sim {
    pull_tenant *t[4];
    int held[4];
    uint64_t bytes[4];
    int n;
} sim;

static void sim_window(sim *s, double link, double per_conn, int want)
{
    int total = 0;
    for (int i = 0; i < s->n; i++)
        total += s->held[i];
    double each = total ? link / total : 0;
    if (each > per_conn)
        each = per_conn;
    fake_now += 500;
    for (int i = 0; i < s->n; i++) {
        s->bytes[i] += (uint64_t)(each * s->held[i] * 0.5);
        int a = pull_budget_tick(s->t[i], s->bytes[i], want);
        while (s->held[i] > a) {
            pull_budget_give(s->t[i], "storage:443");
            s->held[i]--;
        }
        s->held[i] += take(s->t[i], "storage:443", a - s->held[i]);
    }
}

/* Two pulls that each use up to max connections, arrived in order. */
static sim sim_start(pull_budget *b, int max)
{
    sim s = {.n = 2};
    for (int i = 0; i < s.n; i++)
        s.t[i] = pull_budget_join(b, PULL_PRIORITY_PUBLISH, max);
    return s;
}

static void sim_end(sim *s, pull_budget *b)
{
    for (int i = 0; i < s->n; i++) {
        for (; s->held[i] > 0; s->held[i]--)
            pull_budget_give(s->t[i], "storage:443");
        pull_budget_leave(s->t[i]);
    }
    pull_budget_free(b);
}

MV_TEST(first_gets_all_next_waits)
{
    pull_budget *b = budget(64);
    pull_tenant *a = pull_budget_join(b, PULL_PRIORITY_PUBLISH, 16);
    pull_tenant *c = pull_budget_join(b, PULL_PRIORITY_PUBLISH, 16);
    CHECK_INT(pull_budget_tick(a, 0, 16), 16);
    CHECK_INT(pull_budget_tick(c, 0, 16), 0);
    CHECK_INT(take(a, "r:5000", 20), 16);
    CHECK(!pull_budget_take(c, "r:5000"));
    pull_budget_stats st;
    pull_budget_stats_read(b, &st);
    CHECK_INT(st.running, 1);
    CHECK_INT(st.queued, 1);
    /* The first ends: the next gets everything at once. */
    for (int i = 0; i < 16; i++)
        pull_budget_give(a, "r:5000");
    pull_budget_leave(a);
    fake_now += 10;
    CHECK_INT(pull_budget_tick(c, 0, 16), 16);
    CHECK_INT(take(c, "r:5000", 16), 16);
    pull_budget_stats_read(b, &st);
    CHECK_INT(st.waits, 1);
    CHECK(st.wait_seconds_sum > 0.009 && st.wait_seconds_sum < 0.011);
    for (int i = 0; i < 16; i++)
        pull_budget_give(c, "r:5000");
    pull_budget_leave(c);
    pull_budget_free(b);
}

MV_TEST(probe_on_full_link_is_dropped)
{
    pull_budget *b = budget(64);
    sim s = sim_start(b, 16);
    /* 200 MB/s link, 50 MB/s per connection: 16 connections fill it. */
    for (int w = 0; w < 6; w++)
        sim_window(&s, 200e6, 50e6, 16);
    pull_budget_stats st;
    pull_budget_stats_read(b, &st);
    CHECK(st.probes_dropped >= 1);
    CHECK_INT(st.probes_kept, 0);
    /* Held back after the failed probe: the second holds nothing. */
    CHECK_INT(s.held[0], 16);
    CHECK_INT(s.held[1], 0);
    CHECK_INT(st.target, 16);
    sim_end(&s, b);
}

MV_TEST(probe_that_adds_throughput_is_kept)
{
    pull_budget *b = budget(64);
    sim s = sim_start(b, 4);
    /* Storage caps each connection at 10 MB/s on a 1 GB/s link: the first
     * pull's 4 connections leave most of the link idle. */
    for (int w = 0; w < 8; w++)
        sim_window(&s, 1e9, 10e6, 4);
    pull_budget_stats st;
    pull_budget_stats_read(b, &st);
    CHECK(st.probes_kept >= 1);
    CHECK_INT(s.held[0], 4);
    CHECK(s.held[1] >= 2);
    CHECK_INT(st.running, 2);
    sim_end(&s, b);
}

MV_TEST(publish_goes_before_background)
{
    pull_budget *b = budget(64);
    pull_tenant *bg = pull_budget_join(b, PULL_PRIORITY_BACKGROUND, 16);
    CHECK_INT(pull_budget_tick(bg, 0, 16), 16);
    CHECK_INT(take(bg, "r:5000", 16), 16);
    pull_tenant *pub = pull_budget_join(b, PULL_PRIORITY_PUBLISH, 16);
    CHECK_INT(pull_budget_tick(pub, 0, 16), 16);
    /* The background pull must give its connections back. */
    CHECK_INT(pull_budget_tick(bg, 0, 16), 0);
    for (int i = 0; i < 16; i++)
        pull_budget_give(bg, "r:5000");
    CHECK_INT(take(pub, "r:5000", 16), 16);
    for (int i = 0; i < 16; i++)
        pull_budget_give(pub, "r:5000");
    pull_budget_leave(pub);
    pull_budget_leave(bg);
    pull_budget_free(b);
}

MV_TEST(host_cap_holds)
{
    pull_budget *b = budget(4);
    pull_tenant *a = pull_budget_join(b, PULL_PRIORITY_PUBLISH, 16);
    CHECK_INT(pull_budget_tick(a, 0, 16), 16);
    CHECK_INT(take(a, "storage:443", 16), 4);
    /* Another host has its own cap. */
    CHECK_INT(take(a, "r:5000", 16), 4);
    pull_budget_stats st;
    pull_budget_stats_read(b, &st);
    CHECK_INT(st.per_host, 4);
    CHECK_INT(st.n_hosts, 2);
    CHECK_INT(st.hosts[0].in_use + st.hosts[1].in_use, 8);
    for (int i = 0; i < 4; i++) {
        pull_budget_give(a, "storage:443");
        pull_budget_give(a, "r:5000");
    }
    pull_budget_stats_read(b, &st);
    CHECK_INT(st.hosts[0].in_use + st.hosts[1].in_use, 0);
    pull_budget_leave(a);
    pull_budget_free(b);
}

MV_TEST(host_slots_go_in_order)
{
    pull_budget *b = budget(4);
    pull_tenant *a = pull_budget_join(b, PULL_PRIORITY_PUBLISH, 16);
    pull_tenant *c = pull_budget_join(b, PULL_PRIORITY_PUBLISH, 16);
    /* The first used the whole host; between blobs it wants one, and the
     * later pull opens 3 beside it. */
    CHECK_INT(pull_budget_tick(a, 0, 16), 16);
    CHECK_INT(take(a, "storage:443", 16), 4);
    for (int i = 0; i < 3; i++)
        pull_budget_give(a, "storage:443");
    CHECK_INT(pull_budget_tick(a, 0, 1), 16);
    CHECK(pull_budget_tick(c, 0, 5) >= 3);
    CHECK_INT(take(c, "storage:443", 3), 3);
    CHECK_INT(take(c, "r:5000", 1), 1);
    CHECK(!pull_budget_yields(c, "storage:443"));
    /* The first now wants 4 and the host is full: it is the host's waiter. */
    CHECK_INT(pull_budget_tick(a, 0, 4), 16);
    CHECK(!pull_budget_take(a, "storage:443"));
    /* The later one gives back its slots there, and only there... */
    CHECK(pull_budget_yields(c, "storage:443"));
    CHECK(!pull_budget_yields(c, "r:5000"));
    CHECK_INT(pull_budget_tick(c, 0, 5), 1);
    for (int i = 0; i < 3; i++)
        pull_budget_give(c, "storage:443");
    /* ...takes none there while the first waits, even with slots free... */
    CHECK_INT(pull_budget_tick(c, 0, 5) > 1, 1);
    CHECK(!pull_budget_take(c, "storage:443"));
    CHECK(!pull_budget_yields(c, "storage:443"));
    /* ...and the first gets the whole host. */
    CHECK_INT(take(a, "storage:443", 4), 3);
    CHECK_INT(pull_budget_tick(a, 0, 4), 16);
    CHECK(!pull_budget_take(c, "storage:443"));
    /* Once the first has what it wants, the later one may take again. */
    pull_budget_give(a, "storage:443");
    CHECK_INT(pull_budget_tick(a, 0, 3), 16);
    CHECK(pull_budget_tick(c, 0, 5) >= 1);
    CHECK(pull_budget_take(c, "storage:443"));
    pull_budget_give(c, "storage:443");
    pull_budget_give(c, "r:5000");
    for (int i = 0; i < 3; i++)
        pull_budget_give(a, "storage:443");
    pull_budget_leave(a);
    pull_budget_leave(c);
    pull_budget_free(b);
}

static int limit_value;
static int limit_fn(void *ud)
{
    (void)ud;
    return limit_value;
}

MV_TEST(outside_limit_caps_all)
{
    pull_budget *b = budget(64);
    pull_budget_set_limit(b, limit_fn, NULL);
    limit_value = 4;
    pull_tenant *a = pull_budget_join(b, PULL_PRIORITY_BACKGROUND, 16);
    CHECK_INT(pull_budget_tick(a, 0, 16), 4);
    /* Asked again after 250 ms: the limit is lifted. */
    limit_value = 0;
    fake_now += 100;
    CHECK_INT(pull_budget_tick(a, 0, 16), 4);
    fake_now += 200;
    CHECK_INT(pull_budget_tick(a, 0, 16), 16);
    pull_budget_leave(a);
    pull_budget_free(b);
}

MV_TEST(bad_per_host_refused)
{
    pull_budget *b = NULL;
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(pull_budget_new(PULL_BUDGET_PER_HOST_MAX + 1, &b, &err), -EINVAL);
    CHECK(strstr(err.msg, "connections per host") != NULL);
    CHECK_INT(pull_budget_new(0, &b, &err), 0);
    CHECK_INT(pull_budget_per_host(b), PULL_BUDGET_PER_HOST_DEFAULT);
    pull_budget_free(b);
}

int main(void)
{
    MV_RUN(first_gets_all_next_waits);
    MV_RUN(probe_on_full_link_is_dropped);
    MV_RUN(probe_that_adds_throughput_is_kept);
    MV_RUN(publish_goes_before_background);
    MV_RUN(host_cap_holds);
    MV_RUN(host_slots_go_in_order);
    MV_RUN(outside_limit_caps_all);
    MV_RUN(bad_per_host_refused);
    MV_DONE();
}
