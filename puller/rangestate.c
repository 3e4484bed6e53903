/* rangestate.c — the resume record of one blob: which byte intervals of the
 * partial file are known written, as a text file replaced atomically
 * (mv_write_atomic). A durable save first syncs the data, then the record, so it
 * never claims bytes a crash could lose; a light one (saver.c, while bytes
 * are still arriving) only writes and renames. That survives the process
 * being killed; after a power loss it may claim bytes the disk never got,
 * which the end-to-end digest catches (download.c then fetches the blob
 * again from zero).
 *
 *   modelvol-ranges 2
 *   digest sha256:…
 *   size 1073741824
 *   0 16777216
 *   33554432 41943040
 *
 * Version 1 held only whole ranges (chunk-aligned intervals). Version 2 also
 * holds the written prefix of a range still in flight, so an interval may end
 * anywhere; the loader reads both (the lines are alike), and a build that
 * knows only version 1 ignores a version 2 record instead of trusting
 * intervals it was not written for. */
#include "puller-internal.h"

#include <string.h>

#define STATE_MAX_BYTES (1 << 20)

void pull_rangeset_add(pull_rangeset *s, uint64_t start, uint64_t end)
{
    if (end <= start)
        return;
    /* Insert, then merge neighbours; sets are small (one entry per hole). */
    size_t i = 0;
    while (i < s->n && s->iv[i][0] < start)
        i++;
    s->iv = mv_xrealloc(s->iv, (s->n + 1) * sizeof(*s->iv));
    memmove(&s->iv[i + 1], &s->iv[i], (s->n - i) * sizeof(*s->iv));
    s->iv[i][0] = start;
    s->iv[i][1] = end;
    s->n++;
    size_t w = 0;
    for (size_t r = 1; r < s->n; r++) {
        if (s->iv[r][0] <= s->iv[w][1]) {
            if (s->iv[r][1] > s->iv[w][1])
                s->iv[w][1] = s->iv[r][1];
        } else {
            w++;
            s->iv[w][0] = s->iv[r][0];
            s->iv[w][1] = s->iv[r][1];
        }
    }
    s->n = w + 1;
}

bool pull_rangeset_covers(const pull_rangeset *s, uint64_t start, uint64_t end)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->iv[i][0] <= start && s->iv[i][1] >= end)
            return true;
    return end <= start;
}

uint64_t pull_rangeset_prefix(const pull_rangeset *s, uint64_t start, uint64_t end)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->iv[i][0] <= start && s->iv[i][1] > start)
            return (s->iv[i][1] < end ? s->iv[i][1] : end) - start;
    return 0;
}

void pull_rangeset_clear(pull_rangeset *s)
{
    free(s->iv);
    s->iv = NULL;
    s->n = 0;
}

int pull_rangestate_load(const char *path, const char *digest, uint64_t size, pull_rangeset *out,
                         mv_error *err)
{
    (void)err;
    memset(out, 0, sizeof(*out));
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char line[256];
    if (!fgets(line, sizeof(line), f) ||
        (strcmp(line, "modelvol-ranges 1\n") != 0 && strcmp(line, "modelvol-ranges 2\n") != 0))
        return 0;
    char d[OCI_DIGEST_MAX + 1];
    unsigned long long sz;
    if (!fgets(line, sizeof(line), f) || sscanf(line, "digest %136s", d) != 1 ||
        strcmp(d, digest) != 0)
        return 0;
    if (!fgets(line, sizeof(line), f) || sscanf(line, "size %llu", &sz) != 1 || sz != size)
        return 0;
    size_t lines = 0;
    while (fgets(line, sizeof(line), f) && lines++ < 100000) {
        unsigned long long a, b;
        char extra;
        if (sscanf(line, "%llu %llu%c", &a, &b, &extra) != 3 || extra != '\n' || a >= b ||
            b > size) {
            /* A damaged record: trust none of it. */
            pull_rangeset_clear(out);
            return 0;
        }
        pull_rangeset_add(out, a, b);
    }
    return 0;
}

int pull_rangestate_save(const char *path, int data_fd, const char *digest, uint64_t size,
                         const pull_rangeset *s, bool durable, mv_error *err)
{
    if (durable && fdatasync(data_fd) < 0)
        return mv_error_errno(err, -errno, "syncing the partial file of blob %s", digest);
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return mv_error_errno(err, -errno, "resume record %s", path);
    fprintf(f, "modelvol-ranges 2\ndigest %s\nsize %llu\n", digest, (unsigned long long)size);
    for (size_t i = 0; i < s->n; i++)
        fprintf(f, "%llu %llu\n", (unsigned long long)s->iv[i][0], (unsigned long long)s->iv[i][1]);
    if (fclose(f) != 0)
        return mv_error_errno(err, -errno, "resume record %s", path);
    int r = mv_write_atomic(path, text, len, 0600, durable ? MV_WRITE_SYNC_DATA : 0, err);
    if (r < 0)
        return mv_error_wrap(err, "resume record");
    return 0;
}
