/* hashcache.c — the hash cache in the state directory: a file whose path,
 * inode, size, mtime and ctime match an earlier run keeps its digest and
 * is not read again. */
#include "push-internal.h"

#include <string.h>

/* ------------------------------------------------------------------------ */
/* Hash cache                                                               */
/* ------------------------------------------------------------------------ */

/* One line per file: "<digest> <dev> <ino> <size> <mtime s> <ns> <ctime s>
 * <ns> <path>". Like git's index: a file whose inode, size, mtime and
 * ctime are unchanged has unchanged bytes (a write always moves ctime, and
 * ctime cannot be set back). A damaged cache only costs re-hashing; a
 * digest it gets wrong would still be refused by the registry on upload. */
typedef struct cache_entry {
    char *path;
    char digest[OCI_DIGEST_MAX];
    uint64_t dev, ino, size;
    int64_t ms, mns, cs, cns;
} cache_entry;

static int centry_cmp(const void *a, const void *b)
{
    return strcmp(((const cache_entry *)a)->path, ((const cache_entry *)b)->path);
}

void push_hashcache_apply(const char *cache_path, push_file *files, size_t n)
{
    _cleanup_fclose_ FILE *f = fopen(cache_path, "re");
    if (!f)
        return;
    cache_entry *e = NULL;
    size_t ne = 0, cap = 0;
    char *line = NULL;
    size_t llen = 0;
    while (getline(&line, &llen, f) > 0) {
        cache_entry c = {0};
        char dig[OCI_DIGEST_MAX];
        int pos = 0;
        unsigned long long dev, ino, size;
        long long ms, mns, cs, cns;
        if (sscanf(line, "%135s %llu %llu %llu %lld %lld %lld %lld %n", dig, &dev, &ino, &size, &ms,
                   &mns, &cs, &cns, &pos) != 8 ||
            pos <= 0 || oci_digest_validate(dig, NULL) < 0)
            continue;
        char *p = line + pos;
        p[strcspn(p, "\n")] = '\0';
        if (!*p)
            continue;
        memcpy(c.digest, dig, sizeof(c.digest));
        c.path = mv_xstrdup(p);
        c.dev = dev;
        c.ino = ino;
        c.size = size;
        c.ms = ms;
        c.mns = mns;
        c.cs = cs;
        c.cns = cns;
        if (ne == cap) {
            cap = cap ? cap * 2 : 64;
            e = mv_xrealloc(e, cap * sizeof(*e));
        }
        e[ne++] = c;
    }
    free(line);
    if (ne)
        qsort(e, ne, sizeof(*e), centry_cmp);
    for (size_t i = 0; i < n; i++) {
        push_file *pf = &files[i];
        if (pf->in_tar || ne == 0)
            continue;
        cache_entry key = {.path = pf->path};
        cache_entry *hit = bsearch(&key, e, ne, sizeof(*e), centry_cmp);
        if (hit && hit->dev == pf->dev && hit->ino == pf->ino && hit->size == pf->size &&
            hit->ms == pf->mtime_s && hit->mns == pf->mtime_ns && hit->cs == pf->ctime_s &&
            hit->cns == pf->ctime_ns) {
            snprintf(pf->digest, sizeof(pf->digest), "%s", hit->digest);
            pf->cached = true;
        }
    }
    for (size_t i = 0; i < ne; i++)
        free(e[i].path);
    free(e);
}

/* Rewrites the cache with this run's files, atomically. A file changed
 * within the last two seconds is left out: a write in the same clock tick
 * as our read could leave its times unchanged ("racily clean" in git). */
void push_hashcache_store(const char *cache_path, const push_file *files, size_t n, int64_t now)
{
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return;
    for (size_t i = 0; i < n; i++) {
        const push_file *pf = &files[i];
        if (pf->in_tar || !pf->digest[0] || strchr(pf->path, '\n') || pf->ctime_s >= now - 2 ||
            pf->mtime_s >= now - 2)
            continue;
        fprintf(f, "%s %llu %llu %llu %lld %lld %lld %lld %s\n", pf->digest,
                (unsigned long long)pf->dev, (unsigned long long)pf->ino,
                (unsigned long long)pf->size, (long long)pf->mtime_s, (long long)pf->mtime_ns,
                (long long)pf->ctime_s, (long long)pf->ctime_ns, pf->path);
    }
    if (fclose(f) != 0)
        return;
    mv_error err = MV_ERROR_INIT;
    (void)mv_write_atomic(cache_path, buf, len, 0600, MV_WRITE_SYNC_DATA, &err);
}
