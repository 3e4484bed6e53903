/* mv.h — the whole public API of libbase: modelvol's conventions that are
 * not about OCI. The error chain, allocation that aborts, cleanup
 * attributes, quoting untrusted text, sizes and numbers, the logfmt logger,
 * the file-system mechanisms every module shares: one atomic writer, one
 * small-file reader, mkdir -p, one directory walker with an inode set; and
 * the progress display both CLIs share. No OCI and no I/O policy live
 * here: callers choose fsync and modes. */
#ifndef MODELVOL_MV_H
#define MODELVOL_MV_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define MV_VERSION "0.1.0"

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/* Functions that can fail return 0 or a negative errno-style code and fill an
 * mv_error. The message is a chain: each caller that adds context prefixes
 * "what I was doing: " so the user reads one line, outermost first, e.g.
 * "pull ghcr.io/x/y:v1: blob sha256:ab…: 416 from storage".
 *
 * Codes carry meaning the CSI layer maps to gRPC status codes:
 *   -EINVAL  bad input (reference, manifest, argument)
 *   -ENOENT  not found (manifest/blob 404, missing file)
 *   -EACCES  authentication failed (401 after refresh)
 *   -EPERM   authorised but denied (403)
 *   -ENOSPC  disk full
 *   -EBADMSG digest or size mismatch, hostile content
 *   -ETIMEDOUT, -ECONNREFUSED, -EIO  transport failures
 *   -ECANCELED  cancelled by the caller
 * The message never contains a credential or a token. */
#define MV_ERROR_MSG_MAX 1024

typedef struct mv_error {
    int code;                   /* 0 or a negative errno-style code */
    int http_status;            /* last HTTP status involved, 0 if none */
    char msg[MV_ERROR_MSG_MAX]; /* "outer: inner: cause" */
} mv_error;

#define MV_ERROR_INIT                                                                              \
    {                                                                                              \
        0, 0,                                                                                      \
        {                                                                                          \
            0                                                                                      \
        }                                                                                          \
    }

/* Sets the error (replacing any previous one) and returns code, which must
 * be negative. err may be NULL. */
int mv_error_set(mv_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* As mv_error_set, with ": strerror(-code)" appended. */
int mv_error_errno(mv_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes context onto the existing message ("ctx: old") and returns the
 * existing code. A message that would overflow keeps its outermost part. */
int mv_error_wrap(mv_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mv_error_clear(mv_error *err);
/* Copies src into dst (either may be NULL). */
void mv_error_copy(mv_error *dst, const mv_error *src);

/* ------------------------------------------------------------------------ */
/* Cleanup attributes                                                       */
/* ------------------------------------------------------------------------ */

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void mv_freep(void *p)
{
    free(*(void **)p);
    *(void **)p = NULL;
}
static inline void mv_closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
    *fd = -1;
}
static inline void mv_fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
    *f = NULL;
}
static inline void mv_strvfreep(char ***v)
{
    if (*v) {
        for (char **p = *v; *p; p++)
            free(*p);
        free(*v);
    }
    *v = NULL;
}

/* Defines name(type **p), the cleanup helper of a type whose free function
 * takes the pointer and accepts NULL. One line beside the type, so no file
 * writes its own. */
#define MV_DEFINE_FREEP(type, name, freefn)                                                        \
    static inline void name(type **p)                                                              \
    {                                                                                              \
        freefn(*p);                                                                                \
        *p = NULL;                                                                                 \
    }

#define _cleanup_free_   _cleanup_(mv_freep)
#define _cleanup_close_  _cleanup_(mv_closep)
#define _cleanup_fclose_ _cleanup_(mv_fclosep)
#define _cleanup_strv_   _cleanup_(mv_strvfreep)

/* Hands ownership on: returns the value and clears the variable so its
 * cleanup does nothing. */
#define MV_STEAL(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) _mv_tmp = (p);                                                               \
        (p) = (__typeof__(p))0;                                                                    \
        _mv_tmp;                                                                                   \
    })
#define MV_STEAL_FD(fd)                                                                            \
    ({                                                                                             \
        int _mv_tmp = (fd);                                                                        \
        (fd) = -1;                                                                                 \
        _mv_tmp;                                                                                   \
    })

/* Allocation failure is not recoverable in a daemon that must not lie about
 * its state; these abort with a message instead of returning NULL. */
void *mv_xmalloc(size_t n);
void *mv_xcalloc(size_t n, size_t m);
void *mv_xrealloc(void *p, size_t n);
char *mv_xstrdup(const char *s);
char *mv_xstrndup(const char *s, size_t n);
char *mv_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ------------------------------------------------------------------------ */
/* Quoting untrusted text into one-line messages (quote.c)                  */
/* ------------------------------------------------------------------------ */

/* Longest piece of untrusted input quoted in an error message. Messages must
 * stay one readable line, whatever a registry or a user throws at us. */
#define MV_QUOTE_MAX 80

/* Copies s into buf for an error message: non-printable bytes and '"' become
 * '?', and input longer than MV_QUOTE_MAX is cut with "...". Returns buf. */
const char *mv_quote(const char *s, char *buf, size_t len);

/* Declares a buffer and quotes s into it, for use in one format call. */
#define MV_QUOTED(s) mv_quote((s), (char[MV_QUOTE_MAX + 4]){0}, MV_QUOTE_MAX + 4)

/* ------------------------------------------------------------------------ */
/* Sizes and numbers (size.c)                                               */
/* ------------------------------------------------------------------------ */

/* Size strings for CLI flags: "64M", "1.5GiB", "16k", "4096". Units are
 * binary (K = KiB = KB = 1024), case-insensitive; a fraction needs a unit
 * and rounds down to a byte. -EINVAL for garbage or over UINT64_MAX. */
int mv_parse_size(const char *s, uint64_t *out, mv_error *err);
/* A whole decimal number in [min, max], for flags and settings: no sign,
 * no blanks, no trailing text. -EINVAL with '<what> "<s>": expected a
 * number from <min> to <max>'. */
int mv_parse_uint(const char *what, const char *s, uint64_t min, uint64_t max, uint64_t *out,
                  mv_error *err);
/* The same into an int, for 0 <= min <= max <= INT_MAX. */
int mv_parse_int(const char *what, const char *s, int min, int max, int *out, mv_error *err);
/* Formats bytes as "1.5 GiB" into buf. */
const char *mv_format_size(uint64_t bytes, char *buf, size_t len);

/* ------------------------------------------------------------------------ */
/* The logger (log.c)                                                       */
/* ------------------------------------------------------------------------ */

/* One logfmt line on stderr, written with a single write so concurrent lines
 * never interleave: ts=... level=... event=... key=value ...; the variadic
 * part is pairs of (const char *key, const char *value), values quoted when
 * needed; a NULL value skips its pair. Never pass a secret. */
void mv_log_pairs(const char *level, const char *event, ...);
#define mv_log(level, event, ...) mv_log_pairs(level, event, ##__VA_ARGS__, (const char *)NULL)
/* Silences logs below "warn" (fuzz targets). */
void mv_log_set_quiet(bool quiet);

/* ------------------------------------------------------------------------ */
/* Files (file.c)                                                           */
/* ------------------------------------------------------------------------ */

/* Flags of the atomic writer. */
enum {
    /* An existing destination wins and counts as success (content-addressed
     * names: two writers of the same object both succeed). */
    MV_WRITE_NOREPLACE = 1u << 0,
    /* fsync the file before the rename and its directory after: the new
     * content survives a power loss. Without it the write survives a killed
     * process but not a power loss. */
    MV_WRITE_SYNC = 1u << 1,
    /* fsync the file before the rename only: after a power loss the name
     * holds the old content or the new, never a torn file, but the rename
     * may be lost. For caches and records a rerun can redo. */
    MV_WRITE_SYNC_DATA = 1u << 2,
};

/* The one atomic writer: buf goes into tmpname under tmpdirfd (replacing a
 * stale one), gets mode, and is renamed to dstname under dstdirfd. Nothing
 * half-written is ever visible under dstname; a failure removes the temp
 * file. Errors name dstname. */
int mv_write_atomic_at(int tmpdirfd, const char *tmpname, int dstdirfd, const char *dstname,
                       const void *buf, size_t len, mode_t mode, unsigned flags, mv_error *err);
/* The same with the temp file beside path, named "<path>.tmp.<pid>.<tid>" so
 * concurrent writers of one path never share it. */
int mv_write_atomic(const char *path, const void *buf, size_t len, mode_t mode, unsigned flags,
                    mv_error *err);
/* rename(2) that never replaces: -EEXIST when newname exists. Falls back to
 * link+unlink on file systems without RENAME_NOREPLACE. */
int mv_rename_noreplace(int olddirfd, const char *oldname, int newdirfd, const char *newname);
int mv_fsync_dir_at(int dirfd, const char *path, mv_error *err);
/* Reads a regular file (never through a symlink) of at most max bytes,
 * NUL-terminated; *len (may be NULL) gets its length. -EFBIG when larger. */
int mv_read_file_at(int dirfd, const char *path, size_t max, char **out, size_t *len,
                    mv_error *err);
/* The same for a file a user names (a config, a list, credentials):
 * through symlinks, as a mounted ConfigMap's or Secret's files are. */
int mv_read_file(const char *path, size_t max, char **out, size_t *len, mv_error *err);
/* mkdir -p: what it creates gets mode; existing directories are fine. */
int mv_mkdir_p(const char *path, mode_t mode, mv_error *err);

/* ------------------------------------------------------------------------ */
/* The directory walker (walk.c)                                            */
/* ------------------------------------------------------------------------ */

typedef struct mv_walk_entry {
    int dirfd;             /* the directory that holds the entry */
    const char *name;      /* its name there; the root's own name for the root */
    const char *path;      /* relative to the root: "" for the root, "a/b" below */
    int depth;             /* 0 for the root */
    const struct stat *st; /* lstat: a symlink is reported, never followed */
    /* false when this (dev, ino) was already visited through another link:
     * hard links count once. Directories are always first. */
    bool first_link;
} mv_walk_entry;

/* Returned by a callback for a directory: do not descend into it. */
#define MV_WALK_SKIP 1
/* Called for every entry, parents before children; a negative return stops
 * the walk and is returned. */
typedef int (*mv_walk_fn)(const mv_walk_entry *e, void *ud, mv_error *err);

/* The one directory walker: depth-first from path under dirfd, with openat
 * only (never the working directory: callers run on many threads), never
 * through a symlink, an entry removed during the walk skipped, and a tree
 * deeper than max_depth an -ELOOP error. A missing root is -ENOENT. */
int mv_walk_at(int dirfd, const char *path, int max_depth, mv_walk_fn fn, void *ud, mv_error *err);
/* Disk use (st_blocks) of the trees at paths (NULL-terminated; missing ones
 * count 0), each inode once however many links it has. */
int mv_du_at(int dirfd, const char *const *paths, uint64_t *bytes, mv_error *err);

/* ------------------------------------------------------------------------ */
/* Progress display (progress.c)                                            */
/* ------------------------------------------------------------------------ */

/* What modelpull and modelpush show while blobs move, both with
 * --progress MODE on stderr (stdout is for the result line): a one-line bar
 * with bytes, rate, ETA and blobs, redrawn at most ten times a second, or
 * one JSON object per line for machines. Thread-safe: upload and download
 * workers report from their own threads. */
typedef enum {
    MV_PROGRESS_AUTO = 0, /* the bar when out is a terminal, else nothing */
    MV_PROGRESS_BAR,
    MV_PROGRESS_JSON,
    MV_PROGRESS_NONE,
} mv_progress_mode;

/* What happened to a blob. */
typedef enum {
    MV_PROGRESS_START, /* a transfer begins; done: bytes already there (resumed) */
    MV_PROGRESS_STEP,  /* done of total bytes so far */
    MV_PROGRESS_DONE,  /* finished */
    MV_PROGRESS_SKIP,  /* already at the destination: nothing to send */
    MV_PROGRESS_MOUNT, /* mounted from another repository: nothing to send */
    MV_PROGRESS_RETRY, /* a transient failure retried or a fallback taken: message */
    MV_PROGRESS_INFO,  /* no bytes to count (a manifest fetched): JSON only */
} mv_progress_kind;

typedef struct mv_progress_update {
    mv_progress_kind kind;
    /* The JSON "event"; NULL means the kind's own name: start, progress,
     * done, skip, mount, retry, info. */
    const char *name;
    const char *digest;  /* the blob, or NULL */
    const char *label;   /* JSON "file": a path, "config", ...; or NULL */
    const char *message; /* RETRY: what happened; or NULL */
    uint64_t done, total;
} mv_progress_update;

typedef struct mv_progress mv_progress;

/* "auto", "bar" (also spelled "tty"), "json" or "none". */
int mv_progress_mode_parse(const char *s, mv_progress_mode *out, mv_error *err);
/* out: where to draw or write the lines (the CLIs use stderr). */
mv_progress *mv_progress_new(mv_progress_mode mode, FILE *out);
/* The whole job, when it is known up front (a push): the bar shows it
 * instead of the sum of the blobs reported so far. */
void mv_progress_expect(mv_progress *p, uint64_t bytes, size_t blobs);
/* A JSON line: {"event","digest","file","done","total","elapsed_ms",
 * "message"}, the optional ones only when set. p may be NULL. */
void mv_progress_report(mv_progress *p, const mv_progress_update *u);
/* A one-off: for JSON {"event":event,<json_fields>} (preformatted fields,
 * without braces); on the bar, text on a line of its own (NULL: nothing). */
void mv_progress_note(mv_progress *p, const char *event, const char *json_fields, const char *text);
/* Draws the bar's final state and ends its line. */
void mv_progress_finish(mv_progress *p);
void mv_progress_free(mv_progress *p);
MV_DEFINE_FREEP(mv_progress, mv_progress_freep, mv_progress_free)

#endif
