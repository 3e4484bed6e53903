/* push.h — the whole public API of libpush: pushing a model directory to
 * an OCI registry as a ModelPack (or plain ORAS) artifact. One call,
 * push_run, packs the directory (walk, classify, hash, tar layers, config,
 * manifest: all decided before any network traffic), uploads the blobs the
 * registry lacks and PUTs the manifest; modelpush is a thin main over it.
 *
 * Packing reads every file at most once, to hash it (or to stream it into
 * a tar layer); the hash cache lets an unchanged file go unread. Upload
 * streams a file a second time, and only when the registry does not
 * already hold its digest: the PUT that completes an upload must name the
 * digest, so hashing cannot ride along with the first upload of a blob the
 * registry has never seen. */
#ifndef MODELVOL_PUSH_H
#define MODELVOL_PUSH_H

#include "puller.h"

#define PUSH_DEFAULT_JOBS       4
#define PUSH_DEFAULT_CHUNK      (64ull << 20)
#define PUSH_DEFAULT_TAR_MAX    (16ull << 20)
#define PUSH_ORAS_ARTIFACT_TYPE "application/vnd.unknown.artifact.v1"
#define MODEL_ANNO_UNTESTED     "org.cncf.model.file.mediatype.untested"

/* MODELPACK: vnd.cncf.model.* layers; ORAS: an empty config and titled raw
 * blobs; KITOPS: a KitOps ModelKit (Kitfile config, one kitops tar layer
 * per file), as `kit pack` writes one (kitops.c). */
typedef enum { PUSH_FORMAT_MODELPACK = 0, PUSH_FORMAT_ORAS, PUSH_FORMAT_KITOPS } push_format;

/* A user glob forcing files into a kind (--weight, --config, ...). */
typedef struct push_rule {
    const char *glob;
    model_kind kind;
} push_rule;

/* What to pack and how: the choices a user makes, shared by a push and by
 * the packer alone. Zero means the default everywhere. */
typedef struct push_pack_spec {
    push_format format;
    const char *artifact_type; /* ORAS only; NULL = PUSH_ORAS_ARTIFACT_TYPE */
    bool tar;                  /* small files go into one tar layer per kind */
    bool zstd;                 /* ... compressed with zstd (kitops: every layer) */
    uint64_t tar_max;          /* "small": at most this many bytes; 0 = default */
    const push_rule *rules;    /* checked in order before the defaults */
    size_t n_rules;
    const char *const *excludes; /* files (or directories) left out */
    size_t n_excludes;
    bool created_set;    /* created is given; else $SOURCE_DATE_EPOCH, else now */
    int64_t created;     /* seconds since the epoch, for createdAt and mtimes */
    const char *name;    /* descriptor.name; NULL = the repository's last part */
    const char *version; /* descriptor.version; NULL = omitted */
} push_pack_spec;

/* One push: the model directory, the target, and how to pack and upload.
 * Zero means the default everywhere. */
typedef struct push_request {
    const char *dir; /* the model directory */
    const char *ref; /* registry/repository[:tag]; a digest is refused */
    push_pack_spec pack;

    /* Upload. */
    const char *const *tags; /* also tag the manifest with these */
    size_t n_tags;
    const char *from;    /* cross-repository mount source on REF's registry */
    int jobs;            /* files hashed and blobs uploaded in parallel */
    uint64_t chunk_size; /* PATCH chunk size */
    bool monolithic;     /* each blob in one PUT */
    /* Resume records and the hash cache; NULL = push_default_state_dir(),
     * where a failure costs resume and the cache rather than the push. */
    const char *state_dir;
    bool no_resume;
    bool no_hash_cache;
    int retries; /* per request; 0 = the client's default */
    bool plain_http;
    const char *registry_config; /* NULL = PULL_DEFAULT_CONFIG, which may be missing */
    bool dry_run;                /* pack only: the result holds the manifest */

    mv_progress *progress; /* may be NULL */
    /* Set by a signal: transfers stop within half a second, and upload
     * sessions stay recorded so the next run resumes them. */
    volatile int *cancel;
    /* Called once, when packing is done and the upload starts (not on a
     * dry run): modelpush arms its SIGINT handler there, so that an
     * interrupt while packing still ends the process at once. */
    void (*on_upload)(void *ctx);
    void *ctx;
} push_request;

typedef struct push_result {
    char *ref;                            /* canonical registry/repository:tag */
    char manifest_digest[OCI_DIGEST_MAX]; /* what the registry now holds */
    char *manifest_json;                  /* the manifest bytes */
    size_t manifest_len;
} push_result;

/* Packs rq->dir and, unless a dry run, pushes it to rq->ref. */
int push_run(const push_request *rq, push_result *res, mv_error *err);
void push_result_clear(push_result *res);

/* The checks on a request that need no file or network, named after
 * modelpush's flags: combinations that cannot work. */
int push_request_check(const push_request *rq, mv_error *err);
/* An OCI tag: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}. */
bool push_tag_valid(const char *tag);
/* --created and SOURCE_DATE_EPOCH: RFC 3339 UTC or plain seconds since
 * the epoch. */
int push_parse_time(const char *s, int64_t *out, mv_error *err);
/* RFC 3339 UTC ("2024-05-01T12:00:00Z") into buf (at least 32 bytes). */
const char *push_time_rfc3339(int64_t t, char *buf, size_t len);
/* The kind a path gets: the first matching rule, else the defaults.
 * *guessed is set when only the catch-all rule matched. */
model_kind push_classify(const char *rel, const push_rule *rules, size_t n_rules, bool *guessed);
/* The default state directory: $XDG_STATE_HOME/modelvol/push, else
 * ~/.cache/modelvol/push; NULL when neither is set. Caller frees. */
char *push_default_state_dir(void);

#endif
