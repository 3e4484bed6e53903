/* push-internal.h — shared by libpush's own files (and its unit tests)
 * only: the pack (files walked and hashed, blobs, config and manifest), the
 * steps that build it, and the upload of a pack. */
#ifndef MODELVOL_PUSH_INTERNAL_H
#define MODELVOL_PUSH_INTERNAL_H

#include "push.h"

#include <archive.h>

#define PUSH_MT_OCTET    "application/octet-stream"
#define OCI_ANNO_CREATED "org.opencontainers.image.created"
/* KitOps: kitops-ml/kitops pkg/lib/constants/mediatype/kitops.go (config
 * and layer types), .../mediatype/artifacttype.go (artifactType),
 * pkg/lib/constants/consts.go (annotation). */
#define PUSH_KIT_MT_CONFIG     "application/vnd.kitops.modelkit.config.v1+json"
#define PUSH_KIT_ARTIFACT_TYPE "application/vnd.kitops.modelkit.manifest.v1+json"
#define PUSH_KIT_ANNO_CLI      "ml.kitops.modelkit.cli-version"
/* One read buffer per hashing or tar worker. */
#define PUSH_READ_BUF (1u << 20)

MV_DEFINE_FREEP(struct archive, archive_freep, archive_write_free)

typedef struct push_pack_opts {
    push_pack_spec spec;    /* created is always set here; name NULL = omitted */
    const char *tmpdir;     /* where tar layers are staged; NULL = $TMPDIR or /tmp */
    int jobs;               /* files hashed in parallel; 0 = PUSH_DEFAULT_JOBS */
    const char *hash_cache; /* file of digests by (path, inode, size, mtime,
                             * ctime) from earlier runs; NULL = hash all */
    int64_t now;            /* the clock for the cache's racy-file rule; 0 = time() */
} push_pack_opts;

/* One file found under DIR. */
typedef struct push_file {
    char *rel;  /* path inside DIR, '/'-separated */
    char *path; /* what to open: DIR-relative path resolved through symlinks */
    model_kind kind;
    bool guessed; /* the kind came from the catch-all rule */
    uint64_t size;
    unsigned mode; /* 0644 or 0755 */
    char digest[OCI_DIGEST_MAX];
    bool in_tar;
    bool cached; /* digest from the hash cache: not read */
    /* Identity for the hash cache: any write changes ctime. */
    uint64_t dev, ino;
    int64_t mtime_s, mtime_ns, ctime_s, ctime_ns;
} push_file;

/* One blob to upload (a layer or the config), unique by digest. */
typedef struct push_blob {
    char *label; /* for messages: the file path, "tar layer weight", "config" */
    char *path;  /* the file holding the bytes, or NULL */
    int fd;      /* or an open unlinked staging file (tar layers), or -1 */
    char *mem;   /* or the bytes themselves (config, small) */
    char digest[OCI_DIGEST_MAX];
    uint64_t size;
} push_blob;

typedef struct push_pack {
    push_file *files;
    size_t n_files;
    push_blob *blobs;
    size_t n_blobs;
    oci_manifest manifest; /* the descriptors, owned by the pack */
    char *config_json;
    char *manifest_json;
    size_t manifest_len;
    char manifest_digest[OCI_DIGEST_MAX];
    char *format;     /* config.format, or NULL */
    char *param_size; /* config.paramSize, or NULL */
    char *precision;  /* config.precision, or NULL */
    size_t n_hashed;  /* files read to hash them */
    size_t n_cached;  /* files whose digest came from the hash cache */
} push_pack;

/* ------------------------------------------------------------------------ */
/* Packing (pack.c and the steps it calls)                                  */
/* ------------------------------------------------------------------------ */

/* Walks dir, classifies, hashes and builds the config and manifest. */
int push_pack_dir(const char *dir, const push_pack_opts *o, push_pack **out, mv_error *err);
void push_pack_free(push_pack *p);
MV_DEFINE_FREEP(push_pack, push_pack_freep, push_pack_free)

/* pack.c: a new layer descriptor and a new blob (NULL when the pack holds
 * that digest already: upload once), and an annotation on a descriptor. */
oci_descriptor *push_layer_add(push_pack *p);
push_blob *push_blob_add(push_pack *p, const char *digest);
void push_annos_add(oci_descriptor *d, const char *k, const char *v);

/* kitops.c: --format kitops: the layers (one tar per file) and the
 * Kitfile config of a ModelKit, from the classified files. */
int push_pack_kitops(push_pack *p, const push_pack_opts *o, mv_error *err);

/* walk.c: the regular files under dir in byte order of their path,
 * through symlinks that stay inside; .git and --exclude matches are not
 * entered. *files is set (for the caller to free) even on failure. */
int push_walk(const char *dir, const push_pack_opts *o, push_file **files, size_t *n,
              mv_error *err);
/* classify.c: whether --exclude leaves rel out. */
bool push_excluded(const char *rel, const push_pack_opts *o);

/* hash.c: opens the file the walk vetted, refusing one that became a
 * symlink or another inode since. Returns the fd. */
int push_open_vetted(const push_file *f, mv_error *err);
/* Hashes every file not in a tar and not cached, jobs in parallel; the
 * first failure in path order is reported. */
int push_hash_files(push_file *files, size_t n, int jobs, mv_error *err);

/* hashcache.c: digests of unchanged files from the cache file, and the
 * cache rewritten with this run's files. Failures only cost hashing. */
void push_hashcache_apply(const char *cache_path, push_file *files, size_t n);
void push_hashcache_store(const char *cache_path, const push_file *files, size_t n, int64_t now);

/* facts.c: config.format, paramSize and precision from the weight files. */
void push_gather_facts(push_pack *p);
/* "6.7B", "8B", "125M", "12K": ModelPack's paramSize notation; NULL below
 * a thousand. Caller frees. */
char *push_format_params(uint64_t n);

/* tar.c: files[idx[0..n)] as one deterministic tar (zstd with o->zstd) in
 * an unlinked staging file: fills the blob (fd, digest, size) and the
 * diffId of the uncompressed tar. */
int push_build_tar(push_file *files, const size_t *idx, size_t n, const push_pack_opts *o,
                   push_blob *b, char diff_id[OCI_DIGEST_MAX], mv_error *err);
/* The same for one file as `kit pack` tars it: its parent directories
 * first, owner 1000:0, mtime 0, no user or group names (kitops.c). */
int push_build_kit_tar(push_file *f, const push_pack_opts *o, push_blob *b,
                       char diff_id[OCI_DIGEST_MAX], mv_error *err);

/* ------------------------------------------------------------------------ */
/* Upload (upload.c)                                                        */
/* ------------------------------------------------------------------------ */

typedef struct push_upload_opts {
    const oci_ref *ref;
    pull_options pull;   /* config, creds, plain_http */
    int jobs;            /* blobs in parallel; 0 = PUSH_DEFAULT_JOBS */
    uint64_t chunk_size; /* 0 = PUSH_DEFAULT_CHUNK */
    bool monolithic;
    const char *from_repo; /* cross-repository mount source; may be NULL */
    const char *state_dir; /* resume records; NULL = no resume */
    mv_progress *progress;
    /* Set by a signal, or by the pool on the first failure so that the
     * other workers' transfers stop too (their sessions stay recorded). */
    volatile int *cancel;
} push_upload_opts;

typedef struct push_upload_stats {
    uint64_t bytes_sent; /* blob bytes sent this run */
    size_t uploaded;
    size_t skipped;
    size_t mounted;
} push_upload_stats;

/* Uploads every blob of the pack that the registry lacks. */
int push_upload_blobs(const push_pack *p, const push_upload_opts *o, push_upload_stats *st,
                      mv_error *err);
/* PUTs the manifest under each of tags (NULL-terminated), or by digest
 * when tags is empty. */
int push_upload_manifest(const push_pack *p, const push_upload_opts *o, const char *const *tags,
                         mv_error *err);

#endif
