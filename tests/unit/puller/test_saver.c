/* test_saver.c — the resume-record writer thread (puller/saver.c): ranges
 * handed over reach the record without the caller writing anything, the
 * first one at once; stopping writes what an open slot still holds; a
 * closed slot is never written again, so its record can be removed safely;
 * slots of several blobs are kept apart; progress handed over without
 * writeback (a range still in flight) is recorded all the same. */
#include "mvtest.h"
#include "puller-internal.h"

#include <fcntl.h>
#include <string.h>
#include <time.h>

static const char *D1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
static const char *D2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/* Loads path until it covers [0, upto) or 5 s pass (the thread writes it
 * on its own schedule); returns whether it did. */
static bool record_reaches(const char *path, const char *digest, uint64_t size, uint64_t upto)
{
    uint64_t deadline = pull_now_ms() + 5000;
    for (;;) {
        pull_rangeset got = {0};
        pull_rangestate_load(path, digest, size, &got, NULL);
        bool ok = pull_rangeset_covers(&got, 0, upto);
        pull_rangeset_clear(&got);
        if (ok)
            return true;
        if (pull_now_ms() > deadline)
            return false;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 5000000}; /* polling period */
        nanosleep(&ts, NULL);
    }
}

MV_TEST(records_follow_and_stop_at_close)
{
    char dir[] = "/tmp/modelvol-saver.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char data1[300], state1[300], data2[300], state2[300];
    snprintf(data1, sizeof(data1), "%s/d1", dir);
    snprintf(state1, sizeof(state1), "%s/d1.state", dir);
    snprintf(data2, sizeof(data2), "%s/d2", dir);
    snprintf(state2, sizeof(state2), "%s/d2.state", dir);
    int fd1 = open(data1, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    int fd2 = open(data2, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    CHECK(fd1 >= 0 && fd2 >= 0);
    CHECK_INT(ftruncate(fd1, 1000), 0);
    CHECK_INT(ftruncate(fd2, 2000), 0);

    /* A long interval: only the first save may come at once. */
    pull_saver *s = pull_saver_start(60000);
    CHECK(s != NULL);
    if (!s)
        return;
    int a = pull_saver_add(s, state1, fd1, D1, 1000);
    int b = pull_saver_add(s, state2, fd2, D2, 2000);
    pull_rangeset r1 = {0}, r2 = {0};
    pull_rangeset_add(&r1, 0, 100);
    pull_rangeset_add(&r2, 0, 700);
    pull_saver_update(s, a, &r1, true);
    pull_saver_update(s, b, &r2, true);
    CHECK(record_reaches(state1, D1, 1000, 100));
    CHECK(record_reaches(state2, D2, 2000, 700));
    /* Each record names its own blob: the other's digest finds nothing. */
    pull_rangeset other = {0};
    pull_rangestate_load(state1, D2, 2000, &other, NULL);
    CHECK_INT(other.n, 0);

    /* Closed: a later update is ignored and the removed record stays
     * removed, even though stopping writes what open slots hold: b's
     * newer ranges, held back by the interval, are written then. */
    pull_saver_close(s, a);
    CHECK_INT(unlink(state1), 0);
    pull_rangeset_add(&r1, 100, 500);
    pull_saver_update(s, a, &r1, true);
    pull_rangeset_add(&r2, 700, 1500);
    pull_saver_update(s, b, &r2, true);
    pull_saver_stop(s);
    CHECK(access(state1, F_OK) != 0);
    pull_rangeset got = {0};
    pull_rangestate_load(state2, D2, 2000, &got, NULL);
    CHECK(pull_rangeset_covers(&got, 0, 1500));
    pull_rangeset_clear(&got);

    pull_rangeset_clear(&r1);
    pull_rangeset_clear(&r2);
    close(fd1);
    close(fd2);
    unlink(state2);
    unlink(data1);
    unlink(data2);
    rmdir(dir);
}

/* The written prefix of a range in flight (writeback false) reaches the
 * record, first at once and then within the interval, byte-exact. */
MV_TEST(progress_is_recorded)
{
    char dir[] = "/tmp/modelvol-saverp.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char data[300], state[300];
    snprintf(data, sizeof(data), "%s/d", dir);
    snprintf(state, sizeof(state), "%s/d.state", dir);
    int fd = open(data, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    CHECK_INT(ftruncate(fd, 1000), 0);
    pull_saver *s = pull_saver_start(20);
    CHECK(s != NULL);
    if (!s)
        return;
    int a = pull_saver_add(s, state, fd, D1, 1000);
    pull_rangeset r = {0};
    pull_rangeset_add(&r, 0, 37);
    pull_saver_update(s, a, &r, false);
    CHECK(record_reaches(state, D1, 1000, 37));
    pull_rangeset_add(&r, 37, 91);
    pull_rangeset_add(&r, 500, 613);
    pull_saver_update(s, a, &r, false);
    CHECK(record_reaches(state, D1, 1000, 91));
    pull_rangeset got = {0};
    pull_rangestate_load(state, D1, 1000, &got, NULL);
    CHECK_INT(pull_rangeset_prefix(&got, 0, 500), 91);
    CHECK_INT(pull_rangeset_prefix(&got, 500, 1000), 113);
    pull_rangeset_clear(&got);
    pull_saver_close(s, a);
    pull_saver_stop(s);
    pull_rangeset_clear(&r);
    close(fd);
    unlink(state);
    unlink(data);
    rmdir(dir);
}

int main(void)
{
    MV_RUN(records_follow_and_stop_at_close);
    MV_RUN(progress_is_recorded);
    MV_DONE();
}
