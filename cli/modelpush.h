/* modelpush.h — shared by modelpush's own files only: the packed model
 * (files walked and hashed, layers, config and manifest, all decided before
 * any network traffic), the upload of a pack, and the progress display.
 *
 * Packing reads every file at most once, to hash it (or to stream it into
 * a tar layer); the hash cache lets an unchanged file go unread. Upload
 * streams a file a second time, and only when the registry does not
 * already hold its digest: the PUT that completes an upload must name the
 * digest, so hashing cannot ride along with the first upload of a blob the
 * registry has never seen. */
#ifndef MODELVOL_MODELPUSH_H
#define MODELVOL_MODELPUSH_H

#include "puller.h"

#include <pthread.h>

#define PUSH_PROG "modelpush"

#define PUSH_DEFAULT_JOBS       4
#define PUSH_DEFAULT_CHUNK      (64ull << 20)
#define PUSH_DEFAULT_TAR_MAX    (16ull << 20)
#define PUSH_ORAS_ARTIFACT_TYPE "application/vnd.unknown.artifact.v1"
#define PUSH_MT_OCTET           "application/octet-stream"
#define MODEL_ANNO_UNTESTED     "org.cncf.model.file.mediatype.untested"
#define OCI_ANNO_CREATED        "org.opencontainers.image.created"

typedef enum { PUSH_FORMAT_MODELPACK = 0, PUSH_FORMAT_ORAS } push_format;

/* A user glob forcing files into a kind (--weight, --config, ...). */
typedef struct push_rule {
    const char *glob;
    model_kind kind;
} push_rule;

typedef struct push_pack_opts {
    push_format format;
    const char *artifact_type; /* ORAS only; NULL = PUSH_ORAS_ARTIFACT_TYPE */
    bool tar;                  /* small files go into one tar layer per kind */
    bool zstd;                 /* ... compressed with zstd */
    uint64_t tar_max;          /* "small": at most this many bytes; 0 = default */
    const push_rule *rules;    /* checked in order before the defaults */
    size_t n_rules;
    const char *const *excludes; /* files (or directories) left out */
    size_t n_excludes;
    int64_t created;        /* seconds since the epoch, for createdAt and mtimes */
    const char *name;       /* descriptor.name; NULL = omitted */
    const char *version;    /* descriptor.version; NULL = omitted */
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

/* The kind a path gets: the first matching rule, else the defaults.
 * *guessed is set when only the catch-all rule matched. */
model_kind push_classify(const char *rel, const push_rule *rules, size_t n_rules, bool *guessed);

/* Walks dir, classifies, hashes and builds the config and manifest. */
int push_pack_dir(const char *dir, const push_pack_opts *o, push_pack **out, mv_error *err);
void push_pack_free(push_pack *p);
static inline void push_pack_freep(push_pack **p)
{
    push_pack_free(*p);
    *p = NULL;
}

/* RFC 3339 UTC ("2024-05-01T12:00:00Z") into buf (at least 32 bytes). */
const char *push_time_rfc3339(int64_t t, char *buf, size_t len);
/* Parses --created: RFC 3339 UTC or plain seconds since the epoch. */
int push_parse_time(const char *s, int64_t *out, mv_error *err);

/* ------------------------------------------------------------------------ */
/* Progress (modelpush_progress.c)                                          */
/* ------------------------------------------------------------------------ */

typedef enum {
    PUSH_PROGRESS_AUTO = 0,
    PUSH_PROGRESS_NONE,
    PUSH_PROGRESS_TTY,
    PUSH_PROGRESS_JSON
} push_progress_mode;

typedef struct push_progress push_progress;
push_progress *push_progress_new(push_progress_mode mode, uint64_t total_bytes, size_t n_blobs);
/* event: "skip", "mount", "start", "progress", "done" for blob (digest,
 * label); done/total are byte counts of that blob. Thread-safe. */
void push_progress_blob(push_progress *p, const char *event, const char *digest, const char *label,
                        uint64_t done, uint64_t total);
/* A transient failure being retried or a fallback taken, for blob digest. */
void push_progress_retry(push_progress *p, const char *digest, const char *label,
                         const char *message);
/* One-shot events: "packed", "manifest", "summary" with a preformatted
 * JSON object body (without braces) for --progress=json, and text for TTY. */
void push_progress_note(push_progress *p, const char *event, const char *json_fields,
                        const char *text);
void push_progress_free(push_progress *p);

/* ------------------------------------------------------------------------ */
/* Upload (modelpush_upload.c)                                              */
/* ------------------------------------------------------------------------ */

typedef struct push_upload_opts {
    const oci_ref *ref;
    pull_options pull;   /* config, creds, plain_http */
    int jobs;            /* blobs in parallel; 0 = PUSH_DEFAULT_JOBS */
    uint64_t chunk_size; /* 0 = PUSH_DEFAULT_CHUNK */
    bool monolithic;
    const char *from_repo; /* cross-repository mount source; may be NULL */
    const char *state_dir; /* resume records; NULL = no resume */
    push_progress *progress;
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

/* The default resume-record directory: $XDG_STATE_HOME/modelvol/push, else
 * ~/.cache/modelvol/push. Caller frees. */
char *push_default_state_dir(void);
/* mkdir -p with mode 0700. */
int push_mkdir_p(const char *path, mv_error *err);

#endif
