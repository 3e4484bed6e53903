/* test_rangestate.c — the puller's resume record: interval merging, where a
 * partly written range resumes, an atomic save that round-trips (version 2,
 * intervals ending mid-range), version 1 records still loading, and records
 * that belong to another blob, another version or are damaged being ignored
 * rather than trusted. */
#include "mvtest.h"
#include "puller-internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>

static const char *D1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
static const char *D2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

MV_TEST(merge)
{
    pull_rangeset s = {0};
    pull_rangeset_add(&s, 20, 30);
    pull_rangeset_add(&s, 0, 10);
    pull_rangeset_add(&s, 10, 20);
    pull_rangeset_add(&s, 50, 60);
    pull_rangeset_add(&s, 55, 58);
    pull_rangeset_add(&s, 5, 5);
    CHECK_INT(s.n, 2);
    CHECK_INT(s.iv[0][0], 0);
    CHECK_INT(s.iv[0][1], 30);
    CHECK_INT(s.iv[1][0], 50);
    CHECK_INT(s.iv[1][1], 60);
    CHECK(pull_rangeset_covers(&s, 0, 30));
    CHECK(pull_rangeset_covers(&s, 52, 60));
    CHECK(!pull_rangeset_covers(&s, 25, 51));
    CHECK(!pull_rangeset_covers(&s, 30, 31));
    pull_rangeset_clear(&s);
    CHECK_INT(s.n, 0);
}

MV_TEST(save_load)
{
    char dir[] = "/tmp/modelvol-rs.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char data[300], state[300];
    snprintf(data, sizeof(data), "%s/data", dir);
    snprintf(state, sizeof(state), "%s/state", dir);
    int fd = open(data, O_RDWR | O_CREAT, 0600);
    CHECK(fd >= 0);
    pull_rangeset s = {0};
    pull_rangeset_add(&s, 0, 4096);
    pull_rangeset_add(&s, 8192, 10000);
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(pull_rangestate_save(state, fd, D1, 10000, &s, true, &err), 0);
    pull_rangeset got = {0};
    CHECK_INT(pull_rangestate_load(state, D1, 10000, &got, &err), 0);
    CHECK_INT(got.n, 2);
    CHECK(pull_rangeset_covers(&got, 8192, 10000));
    pull_rangeset_clear(&got);
    /* Another blob, or the same digest with another size: ignored. */
    CHECK_INT(pull_rangestate_load(state, D2, 10000, &got, &err), 0);
    CHECK_INT(got.n, 0);
    CHECK_INT(pull_rangestate_load(state, D1, 9999, &got, &err), 0);
    CHECK_INT(got.n, 0);
    /* Damage: an interval past the end, or garbage, makes it all untrusted. */
    FILE *f = fopen(state, "a");
    fputs("9000 20000\n", f);
    fclose(f);
    CHECK_INT(pull_rangestate_load(state, D1, 10000, &got, &err), 0);
    CHECK_INT(got.n, 0);
    f = fopen(state, "w");
    fputs("modelvol-ranges 1\ndigest x\n", f);
    fclose(f);
    CHECK_INT(pull_rangestate_load(state, D1, 10000, &got, &err), 0);
    CHECK_INT(got.n, 0);
    /* Missing: empty, not an error. */
    CHECK_INT(pull_rangestate_load("/nonexistent/state", D1, 10000, &got, &err), 0);
    CHECK_INT(got.n, 0);
    /* No temp file of a save is left beside the record. */
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    for (struct dirent *e; d && (e = readdir(d));)
        CHECK(strncmp(e->d_name, "state.", 6) != 0);
    if (d)
        closedir(d);
    pull_rangeset_clear(&s);
    close(fd);
    unlink(state);
    unlink(data);
    rmdir(dir);
}

/* A range resumes at its first missing byte: the prefix of [start, end) the
 * set holds without a gap, whatever lies past the gap. */
MV_TEST(partial_prefix)
{
    pull_rangeset s = {0};
    pull_rangeset_add(&s, 0, 100);   /* range 0 [0,100) complete */
    pull_rangeset_add(&s, 100, 130); /* range 1 [100,200): 30 bytes in */
    pull_rangeset_add(&s, 200, 201); /* range 2: one byte */
    pull_rangeset_add(&s, 350, 400); /* range 3 [300,400): bytes past a gap */
    CHECK_INT(s.n, 3);
    CHECK_INT(pull_rangeset_prefix(&s, 0, 100), 100);
    CHECK_INT(pull_rangeset_prefix(&s, 100, 200), 30);
    CHECK_INT(pull_rangeset_prefix(&s, 200, 300), 1);
    CHECK_INT(pull_rangeset_prefix(&s, 300, 400), 0);
    CHECK_INT(pull_rangeset_prefix(&s, 360, 370), 10); /* capped at end */
    CHECK_INT(pull_rangeset_prefix(&s, 130, 200), 0);  /* the gap itself */
    CHECK(!pull_rangeset_covers(&s, 100, 200));
    pull_rangeset empty = {0};
    CHECK_INT(pull_rangeset_prefix(&empty, 0, 100), 0);
    pull_rangeset_clear(&s);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

MV_TEST(versions)
{
    char dir[] = "/tmp/modelvol-rsv.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char data[300], state[300];
    snprintf(data, sizeof(data), "%s/data", dir);
    snprintf(state, sizeof(state), "%s/state", dir);
    int fd = open(data, O_RDWR | O_CREAT, 0600);
    CHECK(fd >= 0);
    mv_error err = MV_ERROR_INIT;
    /* Written: version 2, partial intervals exactly as given. */
    pull_rangeset s = {0};
    pull_rangeset_add(&s, 0, 4096);
    pull_rangeset_add(&s, 4096, 5000);
    pull_rangeset_add(&s, 8192, 8193);
    CHECK_INT(pull_rangestate_save(state, fd, D1, 10000, &s, false, &err), 0);
    char want[512];
    snprintf(want, sizeof(want), "modelvol-ranges 2\ndigest %s\nsize 10000\n0 5000\n8192 8193\n",
             D1);
    const char *text = read_all(state);
    CHECK(text && strcmp(text, want) == 0);
    pull_rangeset got = {0};
    CHECK_INT(pull_rangestate_load(state, D1, 10000, &got, &err), 0);
    CHECK_INT(got.n, 2);
    CHECK_INT(pull_rangeset_prefix(&got, 4096, 8192), 904);
    CHECK_INT(pull_rangeset_prefix(&got, 8192, 10000), 1);
    pull_rangeset_clear(&got);
    /* A version 1 record (whole ranges) from an older build still loads. */
    FILE *f = fopen(state, "w");
    fprintf(f, "modelvol-ranges 1\ndigest %s\nsize 10000\n0 4096\n8192 10000\n", D1);
    fclose(f);
    CHECK_INT(pull_rangestate_load(state, D1, 10000, &got, &err), 0);
    CHECK_INT(got.n, 2);
    CHECK(pull_rangeset_covers(&got, 0, 4096));
    CHECK(pull_rangeset_covers(&got, 8192, 10000));
    pull_rangeset_clear(&got);
    /* A version this build does not know is not trusted. */
    f = fopen(state, "w");
    fprintf(f, "modelvol-ranges 3\ndigest %s\nsize 10000\n0 4096\n", D1);
    fclose(f);
    CHECK_INT(pull_rangestate_load(state, D1, 10000, &got, &err), 0);
    CHECK_INT(got.n, 0);
    pull_rangeset_clear(&s);
    close(fd);
    unlink(state);
    unlink(data);
    rmdir(dir);
}

int main(void)
{
    MV_RUN(merge);
    MV_RUN(partial_prefix);
    MV_RUN(save_load);
    MV_RUN(versions);
    MV_DONE();
}
