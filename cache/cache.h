/* cache.h — the whole public API of libcache: the node's content-addressed
 * store. Verified atomic ingest of blobs, tar-layer extraction, model trees
 * built from hard links, pins, GC and the tag cache. The cache alone decides
 * what becomes visible; several processes share one cache directory. */
#ifndef MODELVOL_CACHE_H
#define MODELVOL_CACHE_H

#include "puller.h"

#include <time.h>

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
    char *tree_path;              /* the directory to mount; caller frees */
    char tree_id[OCI_DIGEST_MAX]; /* identifies (manifest digest, filter) */
    char manifest_digest[OCI_DIGEST_MAX];
    uint64_t bytes_downloaded; /* network bytes this call */
    uint64_t bytes_from_mirror;
    bool cache_hit; /* the tree existed already */
} cache_pull_result;
void cache_pull_result_clear(cache_pull_result *r);

/* Resolves reference (tag cache for IfNotPresent and Never), fetches what is
 * missing, ingests, unpacks and builds the tree. Safe to call from many
 * processes at once: each blob, layer and tree is produced once. */
int cache_pull(cache *c, const char *reference, const cache_pull_opts *o, cache_pull_result *out,
               mv_error *err);

/* Pins are records keyed by owner (e.g. "csi:<target>" or
 * "prewarm:<reference>"). GC never removes pinned trees nor what they link.
 * cache_pin and cache_unpin are durable: fsynced before they return. */
int cache_pin(cache *c, const char *tree_id, const char *owner, mv_error *err);
int cache_unpin(cache *c, const char *tree_id, const char *owner, mv_error *err);
/* The same, atomic but not fsynced, for a pin that stands for a mount.
 * Mounts do not outlive the kernel, and their owner rebuilds such pins from
 * the mount table when it starts (the CSI plugin does), so the pin only has
 * to survive a killed process, for which the page cache is enough. The
 * fsyncs were most of what a publish cost under load. */
int cache_pin_volatile(cache *c, const char *tree_id, const char *owner, mv_error *err);
int cache_unpin_volatile(cache *c, const char *tree_id, const char *owner, mv_error *err);

/* ------------------------------------------------------------------------ */
/* Inspection and maintenance: modelpull ls/rm/gc/verify, prewarm, the CSI   */
/* ------------------------------------------------------------------------ */

/* The directory of a tree by id; -ENOENT when it is not in the cache. */
int cache_tree_lookup(cache *c, const char *tree_id, char **path, mv_error *err);
/* A tree's usage as recorded when it was built: apparent bytes of its
 * regular files and its inodes (the root included), each hard-linked inode
 * once. Trees built before it was recorded are measured. -ENOENT when the
 * tree is not in the cache. */
int cache_tree_usage(cache *c, const char *tree_id, uint64_t *bytes, uint64_t *inodes,
                     mv_error *err);

typedef struct cache_pin_info {
    char tree_id[OCI_DIGEST_MAX];
    char *owner;
} cache_pin_info;
/* Pins whose owner starts with owner_prefix (NULL or "" lists all). */
int cache_pins_list(cache *c, const char *owner_prefix, cache_pin_info **out, size_t *n,
                    mv_error *err);
void cache_pins_free(cache_pin_info *p, size_t n);

typedef struct cache_entry {
    char tree_id[OCI_DIGEST_MAX];
    char manifest_digest[OCI_DIGEST_MAX];
    char *reference; /* as first pulled; NULL if unknown */
    char *tree_path;
    char *filter;  /* "include=a,b exclude=c subpath=d", "" when none */
    uint64_t size; /* bytes of the model's files */
    time_t last_use;
    size_t n_pins;
} cache_entry;
/* Every model tree, least recently used first. */
int cache_list(cache *c, cache_entry **out, size_t *n, mv_error *err);
void cache_entries_free(cache_entry *e, size_t n);

/* Removes the trees of reference (matched by the reference they were pulled
 * as, or by manifest digest), its tag record, then every blob and layer no
 * tree references. -EBUSY naming the owner if a tree is pinned; -ENOENT if
 * nothing matches. */
int cache_remove(cache *c, const char *reference, size_t *trees_removed, mv_error *err);

typedef struct cache_gc_opts {
    uint64_t max_size;     /* target: cache at most this; 0 = cache_options.max_size */
    int low_watermark_pct; /* target when no max_size: disk use at most this; 0 = options */
    int min_age_seconds;   /* keep trees used more recently than this: covers the moment
                              between another process's cache_pull and its cache_pin */
} cache_gc_opts;

typedef struct cache_gc_result {
    uint64_t bytes_before; /* cache disk use, each inode once */
    uint64_t bytes_after;
    size_t trees_removed;
    size_t layers_removed;
    size_t blobs_removed;
    bool target_reached; /* false when only pinned data is left */
} cache_gc_result;

/* Removes unreferenced blobs and layers, then unpinned trees least recently
 * used first (each followed by what only it referenced) until the target is
 * met. Waits for running pulls; pulls wait for it. */
int cache_gc(cache *c, const cache_gc_opts *o, cache_gc_result *res, mv_error *err);
/* For the plugin: when disk use is at or above the high watermark, or the
 * cache is above cache_options.max_size, runs cache_gc down to the low
 * watermark (or max_size), sparing trees used in the last
 * CACHE_GC_AUTO_MIN_AGE seconds. *ran says whether it ran. */
#define CACHE_GC_AUTO_MIN_AGE 60
int cache_gc_if_needed(cache *c, bool *ran, cache_gc_result *res, mv_error *err);
/* Disk use of the cache (each inode once) and of its file system. */
int cache_usage(cache *c, uint64_t *cache_bytes, int *disk_pct, mv_error *err);

typedef struct cache_verify_result {
    size_t blobs_checked;
    uint64_t bytes_checked;
    size_t corrupt;     /* blobs moved to quarantine/ */
    char **quarantined; /* their digests, corrupt entries */
    size_t layers_checked;
    size_t layers_corrupt; /* extracted layers that no longer match their blob: removed */
    char **bad_layers;     /* "sha256:...: \"path\"", layers_corrupt entries */
    size_t trees_removed;  /* unpinned trees that linked corrupt data */
} cache_verify_result;
/* Re-hashes every blob, and compares every extracted layer with its
 * (verified) blob. Corrupt blobs move to quarantine/; corrupt layers and
 * the unpinned trees built from either are removed, so the next pull
 * fetches and rebuilds them. */
int cache_verify(cache *c, cache_verify_result *res, mv_error *err);
void cache_verify_result_clear(cache_verify_result *r);

#endif
