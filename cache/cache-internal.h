/* cache-internal.h — what the files of libcache share but nobody else
 * should call: the cache struct, the on-disk layout, file helpers, the
 * cross-process lock protocol, ingest, safe tar extraction and tree
 * building. Tests and the fuzz target include it to reach the pieces that
 * need no network. */
#ifndef MODELVOL_CACHE_INTERNAL_H
#define MODELVOL_CACHE_INTERNAL_H

#include "cache.h"

#include <dirent.h>
#include <sys/types.h>
#include <time.h>

/* Layout, relative to the cache root:
 *   blobs/sha256/<hex>      verified blobs (manifests, configs, layers), 0444
 *   layers/sha256/<hex>/    tar layers extracted once per layer digest
 *   trees/<hex>/root/       a model tree (what is mounted); <hex> of the tree id
 *   trees/<hex>/meta.json   what the tree was built from, what it links
 *   trees/<hex>/lastuse     its mtime is the tree's last use
 *   ingest/<hex>.partial    a blob being downloaded (+ <hex>.state for resume)
 *   tmp/<lock>[.x]          work in progress, guarded by locks/<lock>.lock
 *   tags/<hex>              tag cache: reference -> manifest digest
 *   pins/<tree>-<owner>     one durable pin record per (tree, owner)
 *   locks/<name>.lock       flock(2) files
 *   quarantine/             corrupt blobs moved aside by verify */
#define CACHE_D_BLOBS      "blobs/sha256"
#define CACHE_D_LAYERS     "layers/sha256"
#define CACHE_D_TREES      "trees"
#define CACHE_D_INGEST     "ingest"
#define CACHE_D_TMP        "tmp"
#define CACHE_D_TAGS       "tags"
#define CACHE_D_PINS       "pins"
#define CACHE_D_LOCKS      "locks"
#define CACHE_D_QUARANTINE "quarantine"

/* The lock every reader/writer of trees holds shared and GC holds
 * exclusively, so GC never removes what a pull is about to link. */
#define CACHE_LOCK_GC "gc"

struct cache {
    char *root;
    int root_fd;
    cache_options opts;
};

/* ---- files (fsutil.c) ---------------------------------------------------- */

/* openat of a directory below dirfd without following symlinks anywhere on
 * the way; path is relative and already normalised. */
int cache_open_dir_nofollow(int dirfd, const char *path, bool create, int *out, mv_error *err);
/* opendir on a duplicate of fd, rewound (a dup shares the file offset, so
 * a second listing of the same fd would otherwise come back empty). */
DIR *cache_opendir_fd(int fd);
/* Renames a directory without replacing: 0, or -errno (no message). */
int cache_rename_dir_noreplace(int olddirfd, const char *oldname, int newdirfd,
                               const char *newname);
/* Recursively removes dirfd/name (file or tree); ENOENT is success. */
int cache_rm_rf_at(int dirfd, const char *name, mv_error *err);
/* Sets path's mtime to now, creating the file if needed. */
int cache_touch_at(int dirfd, const char *path, mv_error *err);

/* ---- locks (lock.c) ------------------------------------------------------ */

/* Takes locks/<name>.lock with flock(how), how = LOCK_SH or LOCK_EX,
 * optionally | LOCK_NB (then -EWOULDBLOCK when busy). *fd gets the lock;
 * closing it releases. Safe against concurrent stale-lock removal. */
int cache_lock(cache *c, const char *name, int how, int *fd, mv_error *err);
/* Removes lock files nobody holds (recovery). */
void cache_locks_sweep(cache *c);

/* ---- blobs (ingest.c) ---------------------------------------------------- */

/* "blobs/sha256/<hex>" etc. are addressed by hex; these validate first. */
bool cache_blob_exists(cache *c, const char *digest);
/* Stores an in-memory blob after checking its digest. */
int cache_ingest_buf(cache *c, const char *digest, const void *buf, size_t len, mv_error *err);
/* Opens (creating) ingest/<hex>.partial for the puller. Caller holds the
 * blob lock. state_path gets the absolute sidecar path (caller frees). */
int cache_ingest_open(cache *c, const char *digest, int *fd, char **state_path, mv_error *err);
/* After the puller reported success on fd: checks the size, makes the file
 * read-only, fsyncs and renames it into blobs/. EEXIST is success. */
int cache_ingest_commit(cache *c, const oci_descriptor *d, int fd, mv_error *err);
/* Reads a stored blob (at most max bytes). */
int cache_blob_read(cache *c, const char *digest, size_t max, char **out, size_t *len,
                    mv_error *err);
/* Re-hashes a stored blob; *ok says whether it matches its name. */
int cache_blob_check(cache *c, const char *hex, bool *ok, uint64_t *size, mv_error *err);

/* ---- safe tar extraction (extract.c) ------------------------------------- */

typedef struct cache_extract_limits {
    uint64_t max_entries;         /* 0 = CACHE_EXTRACT_MAX_ENTRIES */
    uint64_t max_bytes;           /* expanded bytes; 0 = CACHE_EXTRACT_MAX_BYTES */
    bool allow_absolute_symlinks; /* image layers: "/x" means <layer root>/x */
} cache_extract_limits;

#define CACHE_EXTRACT_MAX_ENTRIES 1000000ULL
#define CACHE_EXTRACT_MAX_BYTES   (1ULL << 40) /* 1 TiB */
/* cache_layer_ensure: a layer may expand to 200x its compressed size, or
 * 8 GiB, whichever is more. */
#define CACHE_EXTRACT_MAX_RATIO   200ULL
#define CACHE_EXTRACT_RATIO_FLOOR (8ULL << 30)

/* Extracts the (possibly gzip or zstd compressed) tar read from src_fd into
 * the empty directory rootfd. Rejects absolute paths, "..", names with a
 * newline, links escaping the root, devices and fifos; strips setuid,
 * setgid and write bits; enforces the limits. Never follows a symlink while
 * writing. diff_id_out (may be NULL) gets the digest of the uncompressed
 * tar; when expected_diff_id is non-NULL a mismatch is -EBADMSG. layer names
 * the layer in errors. On failure the caller removes rootfd's contents. */
int cache_extract_tar(int src_fd, int rootfd, const char *layer, const cache_extract_limits *lim,
                      const char *expected_diff_id, char diff_id_out[OCI_DIGEST_MAX],
                      mv_error *err);

/* Walks the tree at rootfd and checks that every symlink resolves inside
 * it (following links inside the tree, at most 40 hops). */
int cache_check_symlinks(int rootfd, const char *what, bool allow_absolute, mv_error *err);

/* Re-reads the layer tar from src_fd and compares every regular file with
 * the extracted copy under rootfd; *bad gets the first path that differs
 * (or is missing), NULL when all match. */
int cache_layer_compare(int src_fd, int rootfd, const char *layer, char **bad, mv_error *err);

/* Extracts blob digest into layers/sha256/<hex> once (locked), unless it is
 * there already. */
int cache_layer_ensure(cache *c, const oci_descriptor *d, const char *expected_diff_id,
                       mv_error *err);

/* ---- trees (tree.c) ------------------------------------------------------ */

/* Model-tree identity: sha256 over the manifest digest, filters (globs and
 * kind words), subpath. */
void cache_tree_id(const char *manifest_digest, const char *const *include,
                   const char *const *exclude, const char *const *kinds, const char *subpath,
                   char out[OCI_DIGEST_MAX]);
/* Whether a layer's file path passes the include/exclude globs. */
bool cache_filter_match(const char *path, const char *const *include, const char *const *exclude);

/* The filters of a request as a user wrote them, for messages:
 * 'include "a,b" exclude "c" kinds "weights" subpath "x"'; "" for none. */
char *cache_filter_describe(const char *const *include, const char *const *exclude,
                            const char *const *kinds, const char *subpath);

/* Which layers of plan the filters keep (keep[i] per plan layer): SKIP
 * never; FILE when its path passes include/exclude and its kind the kind
 * filter; UNPACK by kind and, when it has a path (its directory, else its
 * file-path annotation), by that path. kinds_mask 0 = no kind filter; a
 * MODEL_KIND_NONE layer fails any kind filter. -ENOTSUP for a kept layer
 * whose digest is not sha256. */
int cache_plan_select(const oci_manifest *m, const oci_layout_plan *plan,
                      const char *const *include, const char *const *exclude, unsigned kinds_mask,
                      bool *keep, mv_error *err);

/* Before anything is fetched: a plan that lays out nothing is -EPROTO
 * naming the manifest and each media type nothing could place; filters
 * that keep nothing the plan lays out are -EINVAL naming the filter. */
int cache_plan_check(const char *manifest_digest, const oci_manifest *m,
                     const oci_layout_plan *plan, const bool *keep, const char *filter,
                     mv_error *err);

typedef struct cache_tree_spec {
    const char *tree_id;
    const char *reference;
    const char *manifest_digest;
    const char *index_digest; /* may be NULL */
    /* Every index walked to the manifest, outermost first; may be NULL. */
    const char *const *index_chain;
    const oci_manifest *manifest;
    const oci_layout_plan *plan; /* what each layer lays out, decided once */
    const bool *keep;            /* per plan layer: whether the filters keep it */
    const char *const *include;
    const char *const *exclude;
    const char *const *kinds;
    const char *subpath; /* as the user gave it; NULL for the plan's default */
} cache_tree_spec;

/* Builds trees/<hex> from blobs and layers that are all present (the
 * caller holds the tree lock). */
int cache_tree_build(cache *c, const cache_tree_spec *s, mv_error *err);
bool cache_tree_exists(cache *c, const char *tree_id);
char *cache_tree_path_of(cache *c, const char *tree_id);
/* Directory nesting a tree may have (the merge refuses deeper), and the
 * nesting up to which its usage is measured (deeper: stats fail). */
#define CACHE_TREE_MAX_DEPTH  257
#define CACHE_USAGE_MAX_DEPTH 64
/* What a tree holds, measured with mv_walk_at. */
typedef struct cache_tree_size {
    uint64_t size;   /* apparent bytes of regular files, every link counted */
    uint64_t bytes;  /* apparent bytes of regular files, each inode once */
    uint64_t inodes; /* entries (the root included), each inode once */
    uint64_t files;  /* regular files, every link counted */
    int depth;       /* deepest directory, the root being 0 */
} cache_tree_size;
/* Measures the tree at dirfd/path, never following a symlink; -ELOOP when
 * it nests directories deeper than max_depth. */
int cache_tree_measure_at(int dirfd, const char *path, int max_depth, cache_tree_size *out,
                          mv_error *err);
/* Flattens one extracted layer into the tree at treefd. whiteouts applies
 * OCI whiteouts (.wh.<name>, .wh..wh..opq). */
int cache_tree_merge_layer(int layerfd, int treefd, bool whiteouts, const char *layer,
                           mv_error *err);

/* ---- tags (tags.c) ------------------------------------------------------- */

int cache_tag_get(cache *c, const char *reference, char manifest_digest[OCI_DIGEST_MAX],
                  char resolved_digest[OCI_DIGEST_MAX], mv_error *err);
int cache_tag_put(cache *c, const char *reference, const char *manifest_digest,
                  const char *resolved_digest, mv_error *err);
int cache_tag_remove(cache *c, const char *reference, mv_error *err);

/* ---- misc ---------------------------------------------------------------- */

/* Removes what killed processes left: tmp/ work whose lock is free, stale
 * partial downloads, unheld lock files. Runs in cache_open and before GC. */
void cache_recover(cache *c);

/* Writes (replacing) a small record dir/name via tmp/; durably with sync. */
int cache_put_record(cache *c, const char *dir, const char *name, const char *content, bool sync,
                     mv_error *err);

/* Lowercase hex of sha256(s). out has at least 65 bytes. */
void cache_hash_hex(const char *s, size_t len, char out[65]);
/* Removes blobs and layers no tree references, and with partials also
 * downloads nobody is resuming (caller holds the GC lock exclusively).
 * Adds to the counters when non-NULL. */
int cache_sweep_unreferenced(cache *c, bool partials, size_t *blobs, size_t *layers,
                             uint64_t *bytes, mv_error *err);

#endif
