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

/* Watermarks are percentages of the cache's file system in use. */
#define CACHE_WATERMARK_MIN 1
#define CACHE_WATERMARK_MAX 100

typedef struct cache_options {
    uint64_t max_size;      /* GC target in bytes; 0 = unlimited */
    int high_watermark_pct; /* disk use that triggers automatic GC; 0 = 90 */
    int low_watermark_pct;  /* GC stops below this disk use; 0 = 80 */
} cache_options;

/* Opens (creating if needed) the cache at root, and recovers: stale temp
 * files and stale locks left by killed processes are cleaned up. */
int cache_open(const char *root, const cache_options *o, cache **out, mv_error *err);
void cache_close(cache *c);

/* A pod waits on a pull (locks/publishing.lock, shared): held by the
 * plugin for each pull a publish waits on, so that pre-warm work in
 * another process, sharing the cache directory, yields to it. *fd is the
 * hold; close it to let go. */
int cache_publishing_hold(cache *c, int *fd, mv_error *err);
/* Whether some process holds cache_publishing_hold now. */
bool cache_publishing_active(cache *c);
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

/* ------------------------------------------------------------------------ */
/* The registry context and credentials, for the front ends                  */
/* ------------------------------------------------------------------------ */

#define CACHE_DEFAULT_CONFIG PULL_DEFAULT_CONFIG

/* The registry configuration and the node's default credentials, loaded
 * once at start (pull_context_load; config_path NULL = the default). With
 * CACHE_REGISTRY_CREDS_OPTIONAL, unreadable default credentials are logged
 * and the context goes on anonymous. */
typedef pull_context cache_registry;
#define CACHE_REGISTRY_CREDS_OPTIONAL PULL_CONTEXT_CREDS_OPTIONAL
int cache_registry_load(const char *config_path, bool config_named, unsigned flags,
                        cache_registry **out, mv_error *err);
void cache_registry_free(cache_registry *reg);
MV_DEFINE_FREEP(cache_registry, cache_registry_freep, cache_registry_free)

/* Credentials from a docker config held in memory, e.g. a pod's
 * .dockerconfigjson secret (pull_creds_parse: only "auths" is read). */
typedef pull_creds cache_creds;
int cache_creds_parse(const char *json, size_t len, cache_creds **out, mv_error *err);
void cache_creds_free(cache_creds *creds);
MV_DEFINE_FREEP(cache_creds, cache_creds_freep, cache_creds_free)

/* The connection budget: one limit and one parse for every front end. */
#define CACHE_CONNECTIONS_MIN     PULL_CONNECTIONS_MIN
#define CACHE_CONNECTIONS_MAX     PULL_CONNECTIONS_MAX
#define CACHE_CONNECTIONS_DEFAULT PULL_CONNECTIONS_DEFAULT
int cache_connections_parse(const char *what, const char *s, int *out, mv_error *err);

/* What a pull reports while it runs (pull_event, from the puller). */
typedef pull_event cache_pull_event;
#define CACHE_EV_BLOB_START PULL_EV_BLOB_START
#define CACHE_EV_BLOB_DONE  PULL_EV_BLOB_DONE
#define CACHE_EV_RETRY      PULL_EV_RETRY

/* ------------------------------------------------------------------------ */
/* A pull request: parsed once at the boundary, then passed on              */
/* ------------------------------------------------------------------------ */

/* What a front end was asked for, as text. */
typedef struct cache_request_args {
    const char *reference; /* required */
    cache_pull_policy policy;
    /* Comma-separated globs, blanks around each trimmed, empty ones
     * dropped (volume attributes); NULL or "" for none. */
    const char *include_csv;
    const char *exclude_csv;
    /* Or lists taken glob by glob (repeated flags), after the CSV ones;
     * NULL-terminated, may be NULL. */
    const char *const *include;
    const char *const *exclude;
    const char *subpath; /* present only this directory; NULL or "" = the whole model */
    /* The kind filter: words "weights", "config", "docs", "code",
     * "datasets" (oci_kind_parse), as a CSV (volume attribute `kinds`)
     * and/or a NULL-terminated list (repeated --kind); none = every kind. */
    const char *kinds_csv;
    const char *const *kinds;
    /* How errors name the inputs to the user: reference_what prefixes a bad
     * reference's message (NULL: none, it already reads 'reference "x": ...'),
     * subpath_what a bad subpath's (NULL: "subpath"), kinds_what a bad
     * kind word's (NULL: "kinds"). */
    const char *reference_what;
    const char *subpath_what;
    const char *kinds_what;
    /* Choosing in an index (NULL or "" = not asked for): an artifactType,
     * a platform "os/arch[/variant]", an annotation "key=value". */
    const char *artifact_type;
    const char *platform;
    const char *annotation;
    /* What prefixes a bad one's message (NULL: none; it already reads
     * 'platform "x": ...'). */
    const char *select_what;
} cache_request_args;

/* One pull, parsed and normalised. cache_request_parse fills the parsed
 * part; the caller then sets the registry, credentials and options. */
typedef struct cache_request {
    oci_ref *ref;    /* owned */
    char *reference; /* oci_ref_string(ref), owned: the one spelling of the model
                        (tag cache, messages, keys); "x" and "x:latest" agree */
    cache_pull_policy policy;
    char **include; /* NULL-terminated, owned; NULL = every file */
    char **exclude; /* NULL-terminated, owned; NULL = nothing excluded */
    char *subpath;  /* normalised, owned; NULL = the whole model */
    /* The kind filter: the words, each once in model_kind order
     * (NULL-terminated, owned; NULL = every kind), and the same as a mask
     * of 1u << model_kind. A layer whose kind is MODEL_KIND_NONE is kept
     * only when there is no kind filter. */
    char **kinds;
    unsigned kinds_mask;
    /* Owned; empty = today's rules (the model, else this node's platform). */
    oci_index_selector select;

    const cache_registry *registry; /* config and default credentials; may be NULL */
    cache_creds *creds;             /* owned; replaces the registry's default credentials (a pod's
                                       secret); NULL = the registry's */
    /* connections, chunk_size, plain_http, events, cancel. Its config and
     * creds are ignored: they come from registry and creds above. */
    pull_options pull;
} cache_request;

/* Parses a->reference, splits the globs, normalises the subpath, parses the
 * index selector. Errors name the bad input: 'reference "Foo/bar": ...',
 * 'subpath: path "../x" contains ".."', 'platform "linux": not
 * os/arch[/variant]' (see reference_what, subpath_what, select_what). */
int cache_request_parse(const cache_request_args *a, cache_request **out, mv_error *err);
void cache_request_free(cache_request *rq);
MV_DEFINE_FREEP(cache_request, cache_request_freep, cache_request_free)
#define _cleanup_cache_request_ _cleanup_(cache_request_freep)

typedef struct cache_pull_result {
    char *tree_path;              /* the directory to mount; caller frees */
    char tree_id[OCI_DIGEST_MAX]; /* identifies (manifest digest, filter) */
    char manifest_digest[OCI_DIGEST_MAX];
    uint64_t bytes_downloaded; /* network bytes this call */
    uint64_t bytes_from_mirror;
    bool cache_hit; /* the tree existed already */
    /* Layers the layout plan skipped while other files were laid out
     * (filtered-out layers are not counted). Known when this call built
     * the tree; 0 on a cache hit. skipped lists the first few as
     * "sha256:...: <media type>: <reason>", "; "-separated, truncated. */
    size_t n_skipped;
    char skipped[512];
} cache_pull_result;
void cache_pull_result_clear(cache_pull_result *r);

/* Resolves rq's reference (tag cache for IfNotPresent and Never), fetches
 * what is missing, ingests, unpacks and builds the tree. Safe to call from
 * many processes at once: each blob, layer and tree is produced once. */
int cache_pull(cache *c, const cache_request *rq, cache_pull_result *out, mv_error *err);

/* What a model would lay out, without fetching any layer blob: the
 * manifest (chosen from an index as cache_pull does) and its config are
 * fetched and stored, and the layout plan made. modelpull inspect. */
typedef struct cache_inspection {
    char manifest_digest[OCI_DIGEST_MAX];
    char index_digest[OCI_DIGEST_MAX]; /* "" when the reference named a manifest */
    oci_manifest *manifest;            /* owned */
    oci_layout_plan *plan;             /* owned; plan->layers[i].index into manifest->layers */
    /* The bytes of the distinct layer blobs a pull of the request places,
     * after its include, exclude and kinds: what a cold pull downloads. */
    uint64_t bytes_selected;
} cache_inspection;
int cache_inspect(cache *c, const cache_request *rq, cache_inspection *out, mv_error *err);
void cache_inspection_clear(cache_inspection *in);

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
    char *filter;  /* "include=a,b exclude=c kinds=w subpath=d", "" when none */
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

/* ------------------------------------------------------------------------ */
/* Pre-warming: modelpull prewarm (prewarm.c)                               */
/* ------------------------------------------------------------------------ */

/* Pins of pre-warmed models are owned by "prewarm:<reference>", the
 * reference as written in the list. */
#define CACHE_PREWARM_OWNER_PREFIX   "prewarm:"
#define CACHE_PREWARM_MAX_LIST_BYTES ((size_t)1024 * 1024)
#define CACHE_PREWARM_MAX_ENTRIES    4096
#define CACHE_PREWARM_MAX_PARALLEL   64
/* Connections a prewarm pass keeps, all its pulls together, while the
 * plugin publishes: the rest of the node's link is the waiting pod's. */
#define CACHE_PREWARM_YIELD_CONNECTIONS 4
/* After a stop request, running pulls get this long to cancel before they
 * are killed. */
#define CACHE_PREWARM_STOP_GRACE_MS 10000

typedef struct cache_prewarm_entry {
    char *reference;   /* as written in the list, its words joined by one blank (the
                          reference, then any fields): the pin owner is built from it */
    int line;          /* 1-based */
    cache_request *rq; /* the reference parsed once; a pass sets its options */
} cache_prewarm_entry;

typedef struct cache_prewarm_bad_line {
    int line;
    char *error; /* why it is not one valid reference */
} cache_prewarm_bad_line;

typedef struct cache_prewarm_list {
    cache_prewarm_entry *v; /* in list order, each reference once */
    size_t n;
    cache_prewarm_bad_line *bad; /* lines that are not valid references */
    size_t n_bad;
} cache_prewarm_list;

/* Parses a pre-warm list: one reference per line, '#' starts a comment,
 * surrounding blanks, CR line ends, blank lines and duplicates are ignored.
 * After the reference a line may carry blank-separated key=value fields
 * (artifactType, platform, annotation: the index selector); an unknown key
 * makes the line bad.
 * A line that is not one valid reference goes into bad (the run must fail)
 * without stopping the valid ones. -E2BIG over CACHE_PREWARM_MAX_ENTRIES. */
int cache_prewarm_list_parse(const char *text, cache_prewarm_list *out, mv_error *err);
/* Reads the list file at path (through symlinks: a mounted ConfigMap is
 * one) and parses it; errors name the file. */
int cache_prewarm_list_load(const char *path, cache_prewarm_list *out, mv_error *err);
/* Same references in the same order, and as many bad lines. */
bool cache_prewarm_list_equal(const cache_prewarm_list *a, const cache_prewarm_list *b);
void cache_prewarm_list_clear(cache_prewarm_list *l);
static inline void cache_prewarm_list_clearp(cache_prewarm_list *l)
{
    cache_prewarm_list_clear(l);
}

/* The outcome of one entry in a pass. */
typedef struct cache_prewarm_result {
    mv_error error; /* error.code 0: pulled and pinned; -ECANCELED: not run (stopped) */
    char tree_id[OCI_DIGEST_MAX];
    uint64_t bytes_downloaded;
    bool cache_hit;
} cache_prewarm_result;

typedef enum {
    CACHE_PREWARM_INVALID_LINE, /* a line of the list is not a reference: line, error */
    CACHE_PREWARM_PINNED,       /* an entry was pulled and pinned: tree_id, result */
    CACHE_PREWARM_PULL_FAILED,  /* an entry was not: result, error */
    CACHE_PREWARM_UNPINNED,     /* a stale pin was dropped: tree_id, reason */
    /* a stale pin could not be dropped: tree_id, reason, error; without a
     * reference, the prewarm pins could not be listed */
    CACHE_PREWARM_UNPIN_FAILED,
    CACHE_PREWARM_DONE, /* the pass ran to its end: references, failed */
} cache_prewarm_event_kind;

/* What a pass has to say, as it happens. Fields a kind does not name are
 * NULL or 0. */
typedef struct cache_prewarm_event {
    cache_prewarm_event_kind kind;
    const char *reference;
    int line;
    const char *tree_id;
    const cache_prewarm_result *result;
    const char *reason; /* "removed-from-list" or "tag-moved" */
    const mv_error *error;
    size_t references; /* entries in the list */
    int failed;        /* as cache_prewarm_reconcile returns */
} cache_prewarm_event;

typedef struct cache_prewarm_opts {
    /* How each entry is pulled: its request gets this policy and these
     * options (.cancel is the pass's own). */
    cache_pull_policy policy;
    pull_options pull;
    /* The registry configuration; with default_creds, each pull loads the
     * default credentials (DOCKER_CONFIG) itself, so a changed Secret is
     * seen by the next pull; otherwise registry's. */
    const cache_registry *registry;
    bool default_creds;
    int parallel; /* pulls at a time, 1..CACHE_PREWARM_MAX_PARALLEL */
    /* Stop requests: when stop_fd (-1: none) turns readable, stop(ud) is
     * called; it drains the fd and returns true once a stop is requested. */
    int stop_fd;
    bool (*stop)(void *ud);
    void (*report)(const cache_prewarm_event *ev, void *ud); /* may be NULL */
    void *ud;
} cache_prewarm_opts;

/* One pre-warm pass over list: reports its invalid lines, pulls and pins
 * each entry (owner "prewarm:<reference>"), each pull in a child process
 * with its own cache handle on cache_root(c), filling res[i] (res may be
 * NULL) and reporting as it goes; then drops the prewarm pins the list no
 * longer wants: a reference that left the list, or the old tree of a
 * reference whose tag now resolves elsewhere. A reference that failed
 * keeps what it had pinned: an outage must not make a warm node cold.
 * Returns the number of failures (0 when every entry is pinned): invalid
 * lines, entries not pinned, and one when stale pins could not all be
 * dropped; -ECANCELED when a stop request cut the pass short (running
 * pulls are cancelled, then killed after CACHE_PREWARM_STOP_GRACE_MS; no
 * pin is dropped); -EINVAL for bad options. */
int cache_prewarm_reconcile(cache *c, const cache_prewarm_opts *o, const cache_prewarm_list *list,
                            cache_prewarm_result *res, mv_error *err);

#endif
