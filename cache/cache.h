/* cache.h — the whole public API of libcache: the node's content-addressed
 * store. Verified atomic ingest of blobs, tar-layer extraction, model trees
 * built from hard links, pins, GC and the tag cache. The cache alone decides
 * what becomes visible; several processes share one cache directory. */
#ifndef MODELVOL_CACHE_H
#define MODELVOL_CACHE_H

#include "puller.h"

#define CACHE_DEFAULT_ROOT "/var/lib/modelvol"

typedef struct cache cache;

typedef struct cache_options {
    uint64_t max_size;      /* GC target in bytes; 0 = unlimited */
    int high_watermark_pct; /* disk use that triggers automatic GC; 0 = 90 */
    int low_watermark_pct;  /* GC stops below this disk use; 0 = 80 */
} cache_options;

/* Opens (creating if needed) the cache at root, and recovers: stale temp
 * files and stale locks left by killed processes are cleaned up. */
int cache_open(const char *root, const cache_options *o, cache **out, mv_error *err);
void cache_close(cache *c);
static inline void cache_closep(cache **c)
{
    cache_close(*c);
    *c = NULL;
}
#define _cleanup_cache_ _cleanup_(cache_closep)
const char *cache_root(const cache *c);

typedef enum {
    CACHE_PULL_IF_NOT_PRESENT = 0,
    CACHE_PULL_ALWAYS,
    CACHE_PULL_NEVER,
} cache_pull_policy;

/* Parses "IfNotPresent", "Always", "Never". */
int cache_pull_policy_parse(const char *s, cache_pull_policy *out, mv_error *err);

typedef struct cache_pull_opts {
    pull_options pull;
    cache_pull_policy policy;
    const char *const *include; /* NULL-terminated globs, may be NULL */
    const char *const *exclude; /* NULL-terminated globs, may be NULL */
    const char *subpath;        /* present only this subdirectory; may be NULL */
} cache_pull_opts;

typedef struct cache_pull_result {
    char *tree_path;                    /* the directory to mount; caller frees */
    char tree_id[OCI_DIGEST_MAX];       /* identifies (manifest digest, filter) */
    char manifest_digest[OCI_DIGEST_MAX];
    uint64_t bytes_downloaded;          /* network bytes this call */
    uint64_t bytes_from_mirror;
    bool cache_hit;                     /* the tree existed already */
} cache_pull_result;
void cache_pull_result_clear(cache_pull_result *r);

/* Resolves reference (tag cache for IfNotPresent and Never), fetches what is
 * missing, ingests, unpacks and builds the tree. Safe to call from many
 * processes at once: each blob, layer and tree is produced once. */
int cache_pull(cache *c, const char *reference, const cache_pull_opts *o, cache_pull_result *out,
               mv_error *err);

/* Pins are durable records, keyed by owner (e.g. "csi:<target>" or
 * "prewarm:<reference>"). GC never removes pinned trees nor what they link. */
int cache_pin(cache *c, const char *tree_id, const char *owner, mv_error *err);
int cache_unpin(cache *c, const char *tree_id, const char *owner, mv_error *err);

#endif
