/* pack.c — turns a model directory into a pack: walks it (symlinks
 * only when they stay inside), classifies each file into a ModelPack kind,
 * hashes every file in one read (or streams it into a deterministic tar
 * layer), and builds the config and manifest. No network here: the same
 * directory and options always give the same manifest bytes. */
#include "push-internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zstd.h>

#define WALK_DEPTH             64
#define SAFETENSORS_HEADER_MAX (64u << 20)
#define PUSH_MAX_FILES         OCI_MANIFEST_MAX_LAYERS

/* ------------------------------------------------------------------------ */
/* Classification                                                           */
/* ------------------------------------------------------------------------ */

typedef struct default_rule {
    const char *glob;
    model_kind kind;
} default_rule;

/* Checked in order against the base name; the first match wins. Names
 * come before extensions so that vocab.txt is a tokenizer file, not a doc,
 * and pytorch_model.bin.index.json is configuration, not weights. */
static const default_rule defaults[] = {
    {"config.json", MODEL_KIND_WEIGHT_CONFIG},
    {"generation_config.json", MODEL_KIND_WEIGHT_CONFIG},
    {"tokenizer*", MODEL_KIND_WEIGHT_CONFIG},
    {"*.tiktoken", MODEL_KIND_WEIGHT_CONFIG},
    {"vocab*", MODEL_KIND_WEIGHT_CONFIG},
    {"merges.txt", MODEL_KIND_WEIGHT_CONFIG},
    {"special_tokens_map.json", MODEL_KIND_WEIGHT_CONFIG},
    {"preprocessor_config.json", MODEL_KIND_WEIGHT_CONFIG},
    {"added_tokens.json", MODEL_KIND_WEIGHT_CONFIG},
    {"*.safetensors", MODEL_KIND_WEIGHT},
    {"*.bin", MODEL_KIND_WEIGHT},
    {"*.gguf", MODEL_KIND_WEIGHT},
    {"*.ggml", MODEL_KIND_WEIGHT},
    {"*.pt", MODEL_KIND_WEIGHT},
    {"*.pth", MODEL_KIND_WEIGHT},
    {"*.ckpt", MODEL_KIND_WEIGHT},
    {"*.onnx", MODEL_KIND_WEIGHT},
    {"*.h5", MODEL_KIND_WEIGHT},
    {"*.keras", MODEL_KIND_WEIGHT},
    {"*.tflite", MODEL_KIND_WEIGHT},
    {"*.msgpack", MODEL_KIND_WEIGHT},
    {"*.npz", MODEL_KIND_WEIGHT},
    {"*.md", MODEL_KIND_DOC},
    {"LICENSE*", MODEL_KIND_DOC},
    {"LICENCE*", MODEL_KIND_DOC},
    {"NOTICE*", MODEL_KIND_DOC},
    {"COPYING*", MODEL_KIND_DOC},
    {"README*", MODEL_KIND_DOC},
    {"USE_POLICY*", MODEL_KIND_DOC},
    {"*.txt", MODEL_KIND_DOC},
    {"*.rst", MODEL_KIND_DOC},
    {"*.pdf", MODEL_KIND_DOC},
    {"*.png", MODEL_KIND_DOC},
    {"*.jpg", MODEL_KIND_DOC},
    {"*.jpeg", MODEL_KIND_DOC},
    {"*.gif", MODEL_KIND_DOC},
    {"*.svg", MODEL_KIND_DOC},
    {".gitattributes", MODEL_KIND_DOC},
    {"*.py", MODEL_KIND_CODE},
    {"*.sh", MODEL_KIND_CODE},
    {"*.ipynb", MODEL_KIND_CODE},
    {"*.js", MODEL_KIND_CODE},
    {"*.c", MODEL_KIND_CODE},
    {"*.cc", MODEL_KIND_CODE},
    {"*.cpp", MODEL_KIND_CODE},
    {"*.cu", MODEL_KIND_CODE},
    {"*.h", MODEL_KIND_CODE},
    {"*.parquet", MODEL_KIND_DATASET},
    {"*.jsonl", MODEL_KIND_DATASET},
    {"*.csv", MODEL_KIND_DATASET},
    {"*.tsv", MODEL_KIND_DATASET},
    {"*.arrow", MODEL_KIND_DATASET},
    /* Remaining structured text is configuration of some sort
     * (model.safetensors.index.json, chat templates, adapter configs). */
    {"*.json", MODEL_KIND_WEIGHT_CONFIG},
    {"*.yaml", MODEL_KIND_WEIGHT_CONFIG},
    {"*.yml", MODEL_KIND_WEIGHT_CONFIG},
    {"*.toml", MODEL_KIND_WEIGHT_CONFIG},
    {"*.jinja", MODEL_KIND_WEIGHT_CONFIG},
    {"*.model", MODEL_KIND_WEIGHT_CONFIG}, /* sentencepiece */
};

/* A glob with a '/' is matched against the whole path, one without
 * against the base name too, so "--doc '*.txt'" means any directory. */
static bool glob_matches(const char *glob, const char *rel)
{
    if (fnmatch(glob, rel, FNM_PATHNAME) == 0)
        return true;
    if (strchr(glob, '/'))
        return false;
    const char *base = strrchr(rel, '/');
    return fnmatch(glob, base ? base + 1 : rel, 0) == 0;
}

/* --exclude: checked on every path the walk meets, so an excluded
 * directory is never entered (nothing in it is vetted or read). */
static bool excluded(const char *rel, const push_pack_opts *o)
{
    for (size_t i = 0; o && i < o->n_excludes; i++)
        if (glob_matches(o->excludes[i], rel))
            return true;
    return false;
}

model_kind push_classify(const char *rel, const push_rule *rules, size_t n_rules, bool *guessed)
{
    if (guessed)
        *guessed = false;
    for (size_t i = 0; i < n_rules; i++)
        if (glob_matches(rules[i].glob, rel))
            return rules[i].kind;
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        if (fnmatch(defaults[i].glob, base, 0) == 0)
            return defaults[i].kind;
    /* An unknown file in a model directory is most likely model payload
     * (TF checkpoints, numpy arrays, custom formats); the layer says the
     * kind was guessed (MODEL_ANNO_UNTESTED). */
    if (guessed)
        *guessed = true;
    return MODEL_KIND_WEIGHT;
}

/* ------------------------------------------------------------------------ */
/* Time                                                                     */
/* ------------------------------------------------------------------------ */

const char *push_time_rfc3339(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, len, "1970-01-01T00:00:00Z");
    return buf;
}

int push_parse_time(const char *s, int64_t *out, mv_error *err)
{
    if (!s || !*s)
        return mv_error_set(err, -EINVAL, "empty time");
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno == 0 && *end == '\0' && v >= 0) {
        *out = v;
        return 0;
    }
    struct tm tm = {0};
    const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (rest && *rest == '.') /* fractional seconds: dropped */
        for (rest++; *rest >= '0' && *rest <= '9'; rest++)
            ;
    if (!rest || (strcmp(rest, "Z") != 0 && strcmp(rest, "z") != 0 && strcmp(rest, "+00:00") != 0))
        return mv_error_set(err, -EINVAL,
                            "time \"%s\" is neither seconds since the epoch nor "
                            "RFC 3339 UTC (2024-05-01T12:00:00Z)",
                            s);
    *out = (int64_t)timegm(&tm);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Walk                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct walker {
    const push_pack_opts *o;
    char *root; /* realpath of DIR */
    size_t root_len;
    push_file *files;
    size_t n, cap;
    struct {
        dev_t dev;
        ino_t ino;
    } stack[WALK_DEPTH];
    size_t depth;
} walker;

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool inside_root(const walker *w, const char *real)
{
    return strncmp(real, w->root, w->root_len) == 0 &&
           (real[w->root_len] == '/' || (w->root_len == 1 && w->root[0] == '/'));
}

static const char *ftype_name(mode_t m)
{
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISSOCK(m))
        return "a socket";
    if (S_ISCHR(m) || S_ISBLK(m))
        return "a device";
    return "not a regular file";
}

static int walk_dir(walker *w, const char *abs, const char *rel, mv_error *err);

static int walk_entry(walker *w, const char *abs, const char *rel, mv_error *err)
{
    struct stat st;
    if (lstat(abs, &st) < 0)
        return mv_error_errno(err, -errno, "%s", rel);
    _cleanup_free_ char *real = NULL;
    if (S_ISLNK(st.st_mode)) {
        real = realpath(abs, NULL);
        if (!real) {
            if (errno == ENOENT || errno == ELOOP)
                return mv_error_set(err, -EINVAL, "%s: symlink is dangling or loops", rel);
            return mv_error_errno(err, -errno, "%s: resolve symlink", rel);
        }
        if (strcmp(real, w->root) == 0)
            return mv_error_set(err, -EINVAL, "%s: symlink points back at the model directory",
                                rel);
        if (!inside_root(w, real))
            return mv_error_set(err, -EINVAL,
                                "%s: symlink points outside the model directory (to %s); "
                                "copy the file in instead",
                                rel, real);
        if (stat(real, &st) < 0)
            return mv_error_errno(err, -errno, "%s", rel);
    }
    const char *open_path = real ? real : abs;
    if (S_ISDIR(st.st_mode)) {
        for (size_t i = 0; i < w->depth; i++)
            if (w->stack[i].dev == st.st_dev && w->stack[i].ino == st.st_ino)
                return mv_error_set(err, -EINVAL, "%s: symlink makes a directory loop", rel);
        if (w->depth >= WALK_DEPTH)
            return mv_error_set(err, -EINVAL, "%s: directories nested deeper than %d", rel,
                                WALK_DEPTH);
        w->stack[w->depth].dev = st.st_dev;
        w->stack[w->depth].ino = st.st_ino;
        w->depth++;
        int r = walk_dir(w, open_path, rel, err);
        w->depth--;
        return r;
    }
    if (!S_ISREG(st.st_mode))
        return mv_error_set(err, -EINVAL, "%s: %s, only regular files can be pushed", rel,
                            ftype_name(st.st_mode));
    if (w->n >= PUSH_MAX_FILES)
        return mv_error_set(err, -EINVAL, "more than %d files; use --tar to group small files",
                            PUSH_MAX_FILES);
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 64;
        w->files = mv_xrealloc(w->files, w->cap * sizeof(*w->files));
    }
    push_file *f = &w->files[w->n++];
    memset(f, 0, sizeof(*f));
    f->rel = mv_xstrdup(rel);
    f->path = mv_xstrdup(open_path);
    f->size = (uint64_t)st.st_size;
    f->dev = (uint64_t)st.st_dev;
    f->ino = (uint64_t)st.st_ino;
    f->mtime_s = st.st_mtim.tv_sec;
    f->mtime_ns = st.st_mtim.tv_nsec;
    f->ctime_s = st.st_ctim.tv_sec;
    f->ctime_ns = st.st_ctim.tv_nsec;
    /* Only the execute bit survives: umask and checkout differences must
     * not change the digest. */
    f->mode = (st.st_mode & 0111) ? 0755 : 0644;
    return 0;
}

static int walk_dir(walker *w, const char *abs, const char *rel, mv_error *err)
{
    DIR *d = opendir(abs);
    if (!d)
        return mv_error_errno(err, -errno, "%s", rel[0] ? rel : abs);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        /* A git checkout of a model repo: the history is not the model. */
        if (strcmp(de->d_name, ".git") == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            names = mv_xrealloc(names, cap * sizeof(*names));
        }
        names[n++] = mv_xstrdup(de->d_name);
    }
    int rd_errno = errno;
    closedir(d);
    int r = 0;
    if (rd_errno)
        r = mv_error_errno(err, -rd_errno, "%s: read directory", rel[0] ? rel : abs);
    if (names)
        qsort(names, n, sizeof(*names), name_cmp);
    for (size_t i = 0; i < n && r == 0; i++) {
        _cleanup_free_ char *cabs = mv_xasprintf("%s/%s", abs, names[i]);
        _cleanup_free_ char *crel =
            rel[0] ? mv_xasprintf("%s/%s", rel, names[i]) : mv_xstrdup(names[i]);
        if (!excluded(crel, w->o))
            r = walk_entry(w, cabs, crel, err);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return r;
}

static int file_cmp(const void *a, const void *b)
{
    return strcmp(((const push_file *)a)->rel, ((const push_file *)b)->rel);
}

/* ------------------------------------------------------------------------ */
/* Hashing (parallel over files, each read once)                            */
/* ------------------------------------------------------------------------ */

typedef struct hash_job {
    push_file *files;
    size_t n;
    atomic_size_t next;
    int *results;
    mv_error *errs;
} hash_job;

/* Opens the file the walk vetted: the last component must not have turned
 * into a symlink since, and it must still be the same inode (a directory
 * swapped for a symlink to elsewhere would change it). */
static int open_vetted(const push_file *f, mv_error *err)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ELOOP)
            return mv_error_set(err, -EINVAL, "%s: became a symlink while being packed", f->rel);
        return mv_error_errno(err, -errno, "%s", f->rel);
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || (uint64_t)st.st_dev != f->dev || (uint64_t)st.st_ino != f->ino) {
        close(fd);
        return mv_error_set(err, -EINVAL, "%s: replaced while being packed", f->rel);
    }
    return fd;
}

static int hash_one(push_file *f, char *buf, mv_error *err)
{
    _cleanup_close_ int fd = open_vetted(f, err);
    if (fd < 0)
        return fd;
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    _cleanup_hasher_ oci_hasher *h = oci_hasher_new(OCI_DIGEST_SHA256);
    uint64_t total = 0;
    for (;;) {
        ssize_t got = read(fd, buf, PUSH_READ_BUF);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return mv_error_errno(err, -errno, "%s: read", f->rel);
        }
        if (got == 0)
            break;
        oci_hasher_update(h, buf, (size_t)got);
        total += (uint64_t)got;
    }
    struct stat st;
    if (total != f->size || fstat(fd, &st) < 0 || st.st_ctim.tv_sec != f->ctime_s ||
        st.st_ctim.tv_nsec != f->ctime_ns)
        return mv_error_set(err, -EBADMSG, "%s: changed while being read (%llu bytes, then %llu)",
                            f->rel, (unsigned long long)f->size, (unsigned long long)total);
    oci_hasher_final(h, f->digest);
    return 0;
}

static void *hash_worker(void *arg)
{
    hash_job *j = arg;
    _cleanup_free_ char *buf = mv_xmalloc(PUSH_READ_BUF);
    for (;;) {
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n)
            break;
        if (j->files[i].in_tar || j->files[i].cached)
            continue;
        j->results[i] = hash_one(&j->files[i], buf, &j->errs[i]);
    }
    return NULL;
}

static int hash_files(push_file *files, size_t n, int jobs, mv_error *err)
{
    hash_job j = {.files = files, .n = n};
    atomic_init(&j.next, 0);
    _cleanup_free_ int *results = mv_xcalloc(n ? n : 1, sizeof(int));
    _cleanup_free_ mv_error *errs = mv_xcalloc(n ? n : 1, sizeof(mv_error));
    j.results = results;
    j.errs = errs;
    if (jobs < 1)
        jobs = PUSH_DEFAULT_JOBS;
    if ((size_t)jobs > n)
        jobs = n ? (int)n : 1;
    pthread_t th[64];
    if (jobs > 64)
        jobs = 64;
    int started = 0;
    for (int i = 1; i < jobs; i++) {
        if (pthread_create(&th[started], NULL, hash_worker, &j) != 0)
            break;
        started++;
    }
    hash_worker(&j);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    /* Report the first failure in path order, whichever thread saw it. */
    for (size_t i = 0; i < n; i++)
        if (results[i] < 0) {
            mv_error_copy(err, &errs[i]);
            return results[i];
        }
    return 0;
}

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

static void cache_apply(const char *cache_path, push_file *files, size_t n)
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
static void cache_store(const char *cache_path, const push_file *files, size_t n, int64_t now)
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
    (void)mv_write_atomic(cache_path, buf, len, 0600, MV_WRITE_SYNC, &err);
}

/* ------------------------------------------------------------------------ */
/* Model facts: format, parameter count, precision                          */
/* ------------------------------------------------------------------------ */

typedef struct model_facts {
    uint64_t params;
    bool params_known;
    char dtype[16]; /* safetensors dtype if uniform, "mixed", or "" */
    uint64_t fmt_bytes[8];
} model_facts;

enum { FMT_SAFETENSORS, FMT_GGUF, FMT_PYTORCH, FMT_ONNX, FMT_KERAS, FMT_FLAX, FMT_TFLITE, FMT_N };
static const char *const fmt_label[FMT_N] = {"safetensors", "gguf", "pytorch", "onnx",
                                             "keras",       "flax", "tflite"};

static int weight_format(const char *rel)
{
    static const struct {
        const char *glob;
        int fmt;
    } t[] = {
        {"*.safetensors", FMT_SAFETENSORS},
        {"*.gguf", FMT_GGUF},
        {"*.bin", FMT_PYTORCH},
        {"*.pt", FMT_PYTORCH},
        {"*.pth", FMT_PYTORCH},
        {"*.ckpt", FMT_PYTORCH},
        {"*.onnx", FMT_ONNX},
        {"*.h5", FMT_KERAS},
        {"*.keras", FMT_KERAS},
        {"*.msgpack", FMT_FLAX},
        {"*.tflite", FMT_TFLITE},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (fnmatch(t[i].glob, rel, 0) == 0)
            return t[i].fmt;
    return -1;
}

/* Adds the tensors of a safetensors header: 8 bytes little-endian length,
 * then JSON {"name": {"dtype", "shape", "data_offsets"}, "__metadata__"}.
 * Anything odd leaves the facts alone: they are informative only. */
static void safetensors_facts(const push_file *f, model_facts *mf, bool *ok)
{
    _cleanup_close_ int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    unsigned char lenbuf[8];
    if (fd < 0 || pread(fd, lenbuf, 8, 0) != 8) {
        *ok = false;
        return;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | lenbuf[i];
    if (hlen == 0 || hlen > SAFETENSORS_HEADER_MAX || hlen > f->size - 8) {
        *ok = false;
        return;
    }
    _cleanup_free_ char *hdr = mv_xmalloc(hlen + 1);
    if (pread(fd, hdr, hlen, 8) != (ssize_t)hlen) {
        *ok = false;
        return;
    }
    cJSON *root = cJSON_ParseWithLength(hdr, hlen);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        *ok = false;
        return;
    }
    cJSON *t;
    cJSON_ArrayForEach(t, root)
    {
        if (t->string && strcmp(t->string, "__metadata__") == 0)
            continue;
        cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
        cJSON *dtype = cJSON_GetObjectItemCaseSensitive(t, "dtype");
        if (!cJSON_IsArray(shape)) {
            *ok = false;
            continue;
        }
        uint64_t n = 1;
        cJSON *d;
        cJSON_ArrayForEach(d, shape)
        {
            if (!cJSON_IsNumber(d) || d->valuedouble < 0) {
                *ok = false;
                break;
            }
            n *= (uint64_t)d->valuedouble;
        }
        mf->params += n;
        if (cJSON_IsString(dtype) && strlen(dtype->valuestring) < sizeof(mf->dtype)) {
            if (!mf->dtype[0])
                snprintf(mf->dtype, sizeof(mf->dtype), "%s", dtype->valuestring);
            else if (strcmp(mf->dtype, dtype->valuestring) != 0)
                snprintf(mf->dtype, sizeof(mf->dtype), "mixed");
        }
    }
    cJSON_Delete(root);
}

/* "6.7B", "8B", "125M", "12K"; the ModelPack paramSize notation. NULL
 * below a thousand, which the notation cannot say. */
char *push_format_params(uint64_t n)
{
    if (n < 1000)
        return NULL;
    static const struct {
        double scale;
        char letter;
    } s[] = {{1e15, 'Q'}, {1e12, 'T'}, {1e9, 'B'}, {1e6, 'M'}, {1e3, 'K'}};
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
        if ((double)n >= s[i].scale || i + 1 == sizeof(s) / sizeof(s[0])) {
            double v = (double)n / s[i].scale;
            char buf[32];
            snprintf(buf, sizeof(buf), "%.1f", v);
            size_t len = strlen(buf);
            if (len > 2 && strcmp(buf + len - 2, ".0") == 0)
                buf[len - 2] = '\0';
            return mv_xasprintf("%s%c", buf, s[i].letter);
        }
    }
    return NULL;
}

static const char *precision_of(const char *dtype)
{
    static const struct {
        const char *st, *mp;
    } t[] = {{"BF16", "bf16"},   {"F16", "fp16"},    {"F32", "fp32"},
             {"F64", "fp64"},    {"I8", "int8"},     {"U8", "uint8"},
             {"F8_E4M3", "fp8"}, {"F8_E5M2", "fp8"}, {"mixed", "mixed"}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strcmp(dtype, t[i].st) == 0)
            return t[i].mp;
    return NULL;
}

static void gather_facts(push_pack *p)
{
    model_facts mf = {0};
    bool st_ok = true, any_st = false;
    for (size_t i = 0; i < p->n_files; i++) {
        push_file *f = &p->files[i];
        if (f->kind != MODEL_KIND_WEIGHT)
            continue;
        int fmt = weight_format(f->rel);
        if (fmt < 0)
            continue;
        mf.fmt_bytes[fmt] += f->size;
        if (fmt == FMT_SAFETENSORS) {
            any_st = true;
            safetensors_facts(f, &mf, &st_ok);
        }
    }
    int best = -1;
    for (int i = 0; i < FMT_N; i++)
        if (mf.fmt_bytes[i] && (best < 0 || mf.fmt_bytes[i] > mf.fmt_bytes[best]))
            best = i;
    if (best >= 0)
        p->format = mv_xstrdup(fmt_label[best]);
    /* Only a count covering every weight file is worth publishing. */
    if (best == FMT_SAFETENSORS && any_st && st_ok && mf.params > 0) {
        bool only_st = true;
        for (int i = 0; i < FMT_N; i++)
            if (i != FMT_SAFETENSORS && mf.fmt_bytes[i])
                only_st = false;
        if (only_st) {
            p->param_size = push_format_params(mf.params);
            const char *prec = precision_of(mf.dtype);
            if (prec)
                p->precision = mv_xstrdup(prec);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Tar layers: deterministic, streamed to an unlinked staging file          */
/* ------------------------------------------------------------------------ */

typedef struct tar_sink {
    int fd;
    oci_hasher *diff; /* the uncompressed tar: the diffId */
    oci_hasher *blob; /* the bytes stored */
    ZSTD_CCtx *z;
    uint64_t blob_size;
    char *zbuf;
    size_t zbuf_len;
    int error; /* errno of a failed write */
} tar_sink;

static int sink_write_all(tar_sink *s, const void *buf, size_t n)
{
    const char *p = buf;
    oci_hasher_update(s->blob, buf, n);
    s->blob_size += n;
    while (n > 0) {
        ssize_t w = write(s->fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            s->error = errno;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int sink_zstd(tar_sink *s, const void *buf, size_t n, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {buf, n, 0};
    for (;;) {
        ZSTD_outBuffer out = {s->zbuf, s->zbuf_len, 0};
        size_t left = ZSTD_compressStream2(s->z, &out, &in, mode);
        if (ZSTD_isError(left)) {
            s->error = EIO;
            return -1;
        }
        if (out.pos && sink_write_all(s, s->zbuf, out.pos) < 0)
            return -1;
        if (mode == ZSTD_e_end ? left == 0 : in.pos == in.size)
            return 0;
    }
}

static la_ssize_t tar_write_cb(struct archive *a, void *ud, const void *buf, size_t n)
{
    (void)a;
    tar_sink *s = ud;
    oci_hasher_update(s->diff, buf, n);
    int r = s->z ? sink_zstd(s, buf, n, ZSTD_e_continue) : sink_write_all(s, buf, n);
    return r < 0 ? -1 : (la_ssize_t)n;
}

static int staging_fd(const char *tmpdir, mv_error *err)
{
    int fd = open(tmpdir, O_RDWR | O_TMPFILE | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    _cleanup_free_ char *tmpl = mv_xasprintf("%s/modelpush-XXXXXX", tmpdir);
    fd = mkostemp(tmpl, O_CLOEXEC);
    if (fd < 0)
        return mv_error_errno(err, -errno, "staging file in %s", tmpdir);
    unlink(tmpl);
    return fd;
}

static int tar_add_file(struct archive *a, const push_file *f, char *buf, int64_t mtime,
                        mv_error *err)
{
    _cleanup_close_ int fd = open_vetted(f, err);
    if (fd < 0)
        return fd;
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, f->rel);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, f->mode);
    archive_entry_set_size(e, (la_int64_t)f->size);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    archive_entry_set_mtime(e, mtime, 0);
    int ar = archive_write_header(a, e);
    archive_entry_free(e);
    if (ar != ARCHIVE_OK)
        return mv_error_set(err, -EIO, "%s: tar header: %s", f->rel, archive_error_string(a));
    uint64_t total = 0;
    for (;;) {
        ssize_t got = read(fd, buf, PUSH_READ_BUF);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return mv_error_errno(err, -errno, "%s: read", f->rel);
        }
        if (got == 0)
            break;
        if (total + (uint64_t)got > f->size)
            break;
        if (archive_write_data(a, buf, (size_t)got) != got)
            return mv_error_set(err, -EIO, "%s: tar data: %s", f->rel, archive_error_string(a));
        total += (uint64_t)got;
    }
    if (total != f->size)
        return mv_error_set(err, -EBADMSG, "%s: changed while being read", f->rel);
    return 0;
}

/* Writes files[idx[0..n)] as one tar (entries in path order, owner 0:0,
 * mtime fixed) into a staging file; fills the blob and the diffId. */
static int build_tar(push_file *files, const size_t *idx, size_t n, const push_pack_opts *o,
                     push_blob *b, char diff_id[OCI_DIGEST_MAX], mv_error *err)
{
    const char *tmpdir = o->tmpdir ? o->tmpdir : getenv("TMPDIR");
    if (!tmpdir || !*tmpdir)
        tmpdir = "/tmp";
    _cleanup_close_ int fd = staging_fd(tmpdir, err);
    if (fd < 0)
        return fd;
    _cleanup_hasher_ oci_hasher *dh = oci_hasher_new(OCI_DIGEST_SHA256);
    _cleanup_hasher_ oci_hasher *bh = oci_hasher_new(OCI_DIGEST_SHA256);
    tar_sink s = {.fd = fd, .diff = dh, .blob = bh};
    _cleanup_free_ char *zbuf = NULL;
    if (o->zstd) {
        s.z = ZSTD_createCCtx();
        ZSTD_CCtx_setParameter(s.z, ZSTD_c_compressionLevel, 3);
        s.zbuf_len = ZSTD_CStreamOutSize();
        zbuf = mv_xmalloc(s.zbuf_len);
        s.zbuf = zbuf;
    }
    _cleanup_free_ char *buf = mv_xmalloc(PUSH_READ_BUF);
    int r = 0;
    {
        _cleanup_(archive_freep) struct archive *a = archive_write_new();
        /* pax only where ustar cannot say it (long names): no atime, no
         * ctime, nothing that varies between runs. */
        archive_write_set_format_pax_restricted(a);
        archive_write_add_filter_none(a);
        archive_write_set_bytes_in_last_block(a, 1);
        if (archive_write_open(a, &s, NULL, tar_write_cb, NULL) != ARCHIVE_OK)
            r = mv_error_set(err, -EIO, "tar: %s", archive_error_string(a));
        for (size_t i = 0; i < n && r == 0; i++)
            r = tar_add_file(a, &files[idx[i]], buf, o->created, err);
        if (r == 0 && archive_write_close(a) != ARCHIVE_OK)
            r = mv_error_set(err, -EIO, "tar: %s",
                             s.error ? strerror(s.error) : archive_error_string(a));
    }
    if (r == 0 && s.z && sink_zstd(&s, NULL, 0, ZSTD_e_end) < 0)
        r = mv_error_set(err, -EIO, "zstd: %s", strerror(s.error));
    if (s.z)
        ZSTD_freeCCtx(s.z);
    if (r == 0 && s.error)
        r = mv_error_errno(err, -s.error, "staging tar layer in %s", tmpdir);
    if (r < 0)
        return r;
    oci_hasher_final(dh, diff_id);
    oci_hasher_final(bh, b->digest);
    b->size = s.blob_size;
    b->fd = MV_STEAL_FD(fd);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Config and manifest                                                      */
/* ------------------------------------------------------------------------ */

static void annos_add(oci_descriptor *d, const char *k, const char *v)
{
    d->annotations = mv_xrealloc(d->annotations, (d->n_annotations + 1) * sizeof(oci_annotation));
    d->annotations[d->n_annotations].key = mv_xstrdup(k);
    d->annotations[d->n_annotations].value = mv_xstrdup(v);
    d->n_annotations++;
}

static int anno_cmp(const void *a, const void *b)
{
    return strcmp(((const oci_annotation *)a)->key, ((const oci_annotation *)b)->key);
}

static void descriptor_clear(oci_descriptor *d)
{
    free(d->media_type);
    free(d->digest);
    free(d->artifact_type);
    for (size_t i = 0; i < d->n_annotations; i++) {
        free(d->annotations[i].key);
        free(d->annotations[i].value);
    }
    free(d->annotations);
    memset(d, 0, sizeof(*d));
}

static char *file_metadata_json(const push_file *f, int64_t mtime)
{
    const char *base = strrchr(f->rel, '/');
    char when[32];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", base ? base + 1 : f->rel);
    cJSON_AddNumberToObject(o, "mode", f->mode);
    cJSON_AddNumberToObject(o, "uid", 0);
    cJSON_AddNumberToObject(o, "gid", 0);
    cJSON_AddNumberToObject(o, "size", (double)f->size);
    cJSON_AddStringToObject(o, "mtime", push_time_rfc3339(mtime, when, sizeof(when)));
    cJSON_AddNumberToObject(o, "typeflag", '0'); /* tar.TypeReg, as a byte */
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static push_blob *blob_add(push_pack *p, const char *digest)
{
    for (size_t i = 0; i < p->n_blobs; i++)
        if (strcmp(p->blobs[i].digest, digest) == 0)
            return NULL; /* the same bytes twice: upload once */
    p->blobs = mv_xrealloc(p->blobs, (p->n_blobs + 1) * sizeof(*p->blobs));
    push_blob *b = &p->blobs[p->n_blobs++];
    memset(b, 0, sizeof(*b));
    b->fd = -1;
    snprintf(b->digest, sizeof(b->digest), "%s", digest);
    return b;
}

static oci_descriptor *layer_add(push_pack *p)
{
    oci_manifest *m = &p->manifest;
    m->layers = mv_xrealloc(m->layers, (m->n_layers + 1) * sizeof(*m->layers));
    oci_descriptor *d = &m->layers[m->n_layers++];
    memset(d, 0, sizeof(*d));
    return d;
}

static int add_raw_layer(push_pack *p, const push_file *f, const push_pack_opts *o)
{
    oci_descriptor *d = layer_add(p);
    d->digest = mv_xstrdup(f->digest);
    d->size = (int64_t)f->size;
    if (o->format == PUSH_FORMAT_ORAS) {
        d->media_type = mv_xstrdup(PUSH_MT_OCTET);
        annos_add(d, OCI_ANNO_TITLE, f->rel);
    } else {
        d->media_type = mv_xstrdup(model_media_type(f->kind, OCI_FMT_RAW));
        _cleanup_free_ char *meta = file_metadata_json(f, o->created);
        annos_add(d, MODEL_ANNO_FILEPATH, f->rel);
        annos_add(d, OCI_ANNO_TITLE, f->rel);
        annos_add(d, MODEL_ANNO_FILEMETA, meta);
        if (f->guessed)
            annos_add(d, MODEL_ANNO_UNTESTED, "true");
        /* Sorted keys: the bytes must not depend on insertion order. */
        qsort(d->annotations, d->n_annotations, sizeof(*d->annotations), anno_cmp);
    }
    return 0;
}

static int pack_layers(push_pack *p, const push_pack_opts *o, cJSON *diff_ids, mv_error *err)
{
    uint64_t tar_max = o->tar_max ? o->tar_max : PUSH_DEFAULT_TAR_MAX;
    if (o->tar)
        for (size_t i = 0; i < p->n_files; i++)
            p->files[i].in_tar = p->files[i].size <= tar_max;
    if (o->hash_cache)
        cache_apply(o->hash_cache, p->files, p->n_files);
    int r = hash_files(p->files, p->n_files, o->jobs, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < p->n_files; i++) {
        if (p->files[i].cached)
            p->n_cached++;
        else
            p->n_hashed++;
    }
    if (o->hash_cache)
        cache_store(o->hash_cache, p->files, p->n_files, o->now ? o->now : (int64_t)time(NULL));
    /* Raw layers in path order, then one tar per kind in kind order. */
    for (size_t i = 0; i < p->n_files; i++) {
        push_file *f = &p->files[i];
        if (f->in_tar)
            continue;
        add_raw_layer(p, f, o);
        cJSON_AddItemToArray(diff_ids, cJSON_CreateString(f->digest));
        push_blob *b = blob_add(p, f->digest);
        if (b) {
            b->label = mv_xstrdup(f->rel);
            b->path = mv_xstrdup(f->path);
            b->size = f->size;
        }
    }
    if (!o->tar)
        return 0;
    _cleanup_free_ size_t *idx = mv_xcalloc(p->n_files ? p->n_files : 1, sizeof(size_t));
    for (model_kind k = MODEL_KIND_WEIGHT; k <= MODEL_KIND_DATASET; k++) {
        size_t n = 0;
        for (size_t i = 0; i < p->n_files; i++)
            if (p->files[i].in_tar && p->files[i].kind == k)
                idx[n++] = i;
        if (n == 0)
            continue;
        push_blob tb = {.fd = -1};
        char diff_id[OCI_DIGEST_MAX];
        r = build_tar(p->files, idx, n, o, &tb, diff_id, err);
        if (r < 0)
            return mv_error_wrap(err, "tar layer for %s files", model_kind_name(k));
        oci_descriptor *d = layer_add(p);
        d->digest = mv_xstrdup(tb.digest);
        d->size = (int64_t)tb.size;
        d->media_type = mv_xstrdup(model_media_type(k, o->zstd ? OCI_FMT_TAR_ZSTD : OCI_FMT_TAR));
        cJSON_AddItemToArray(diff_ids, cJSON_CreateString(diff_id));
        push_blob *b = blob_add(p, tb.digest);
        if (b) {
            b->label = mv_xasprintf("tar layer of %s files", model_kind_name(k));
            b->fd = tb.fd;
            b->size = tb.size;
        } else {
            close(tb.fd);
        }
    }
    return 0;
}

static char *config_json(const push_pack *p, const push_pack_opts *o, cJSON *diff_ids)
{
    char when[32];
    cJSON *root = cJSON_CreateObject();
    cJSON *desc = cJSON_AddObjectToObject(root, "descriptor");
    cJSON_AddStringToObject(desc, "createdAt", push_time_rfc3339(o->created, when, sizeof(when)));
    if (o->name)
        cJSON_AddStringToObject(desc, "name", o->name);
    if (o->version)
        cJSON_AddStringToObject(desc, "version", o->version);
    cJSON *cfg = cJSON_AddObjectToObject(root, "config");
    if (p->format)
        cJSON_AddStringToObject(cfg, "format", p->format);
    if (p->param_size)
        cJSON_AddStringToObject(cfg, "paramSize", p->param_size);
    if (p->precision)
        cJSON_AddStringToObject(cfg, "precision", p->precision);
    cJSON *fs = cJSON_AddObjectToObject(root, "modelfs");
    cJSON_AddStringToObject(fs, "type", "layers");
    cJSON_AddItemToObject(fs, "diffIds", diff_ids);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static int build_manifest(push_pack *p, const push_pack_opts *o, cJSON *diff_ids, mv_error *err)
{
    oci_manifest *m = &p->manifest;
    m->kind = OCI_KIND_MANIFEST;
    m->media_type = mv_xstrdup(OCI_MT_MANIFEST);
    m->has_config = true;
    char when[32];
    push_time_rfc3339(o->created, when, sizeof(when));
    m->annotations = mv_xcalloc(1, sizeof(*m->annotations));
    m->annotations[0].key = mv_xstrdup(OCI_ANNO_CREATED);
    m->annotations[0].value = mv_xstrdup(when);
    m->n_annotations = 1;
    if (o->format == PUSH_FORMAT_ORAS) {
        cJSON_Delete(diff_ids);
        m->artifact_type =
            mv_xstrdup(o->artifact_type ? o->artifact_type : PUSH_ORAS_ARTIFACT_TYPE);
        p->config_json = mv_xstrdup("{}");
        m->config.media_type = mv_xstrdup(OCI_MT_EMPTY);
    } else {
        m->artifact_type = mv_xstrdup(MODEL_ARTIFACT_TYPE);
        p->config_json = config_json(p, o, diff_ids);
        m->config.media_type = mv_xstrdup(MODEL_MT_CONFIG);
    }
    size_t clen = strlen(p->config_json);
    char cdig[OCI_DIGEST_MAX];
    oci_digest_buf(OCI_DIGEST_SHA256, p->config_json, clen, cdig);
    m->config.digest = mv_xstrdup(cdig);
    m->config.size = (int64_t)clen;
    push_blob *b = blob_add(p, cdig);
    if (b) {
        b->label = mv_xstrdup("config");
        b->mem = mv_xstrdup(p->config_json);
        b->size = clen;
    }
    p->manifest_json = oci_manifest_emit(m, &p->manifest_len);
    if (!p->manifest_json)
        return mv_error_set(err, -EINVAL, "manifest could not be serialised");
    if (p->manifest_len > (size_t)OCI_MANIFEST_MAX_BYTES)
        return mv_error_set(err, -EINVAL, "manifest is %zu bytes, more than registries accept",
                            p->manifest_len);
    oci_digest_buf(OCI_DIGEST_SHA256, p->manifest_json, p->manifest_len, p->manifest_digest);
    return 0;
}

int push_pack_dir(const char *dir, const push_pack_opts *o, push_pack **out, mv_error *err)
{
    *out = NULL;
    /* An ORAS artifact's tar layer would be an image layer, which pullers
     * (ours included) read as a container image: files stay raw there. */
    if (o->format == PUSH_FORMAT_ORAS && o->tar)
        return mv_error_set(err, -EINVAL,
                            "--tar packs ModelPack layers; --format oras keeps "
                            "every file a raw blob");
    walker w = {.o = o};
    w.root = realpath(dir, NULL);
    if (!w.root)
        return mv_error_errno(err, -errno, "model directory %s", dir);
    w.root_len = strlen(w.root);
    _cleanup_(push_pack_freep) push_pack *p = mv_xcalloc(1, sizeof(*p));
    struct stat st;
    int r;
    if (stat(w.root, &st) < 0)
        r = mv_error_errno(err, -errno, "model directory %s", dir);
    else if (!S_ISDIR(st.st_mode))
        r = mv_error_set(err, -ENOTDIR, "model directory %s: not a directory", dir);
    else {
        w.stack[0].dev = st.st_dev;
        w.stack[0].ino = st.st_ino;
        w.depth = 1;
        r = walk_dir(&w, w.root, "", err);
    }
    p->files = w.files;
    p->n_files = w.n;
    free(w.root);
    if (r < 0)
        return mv_error_wrap(err, "model directory %s", dir);

    if (p->n_files == 0)
        return mv_error_set(err, -ENOENT, "model directory %s: no files to push", dir);
    qsort(p->files, p->n_files, sizeof(*p->files), file_cmp);
    for (size_t i = 0; i < p->n_files; i++)
        p->files[i].kind =
            push_classify(p->files[i].rel, o->rules, o->n_rules, &p->files[i].guessed);
    cJSON *diff_ids = cJSON_CreateArray();
    r = pack_layers(p, o, diff_ids, err);
    if (r < 0) {
        cJSON_Delete(diff_ids);
        return mv_error_wrap(err, "model directory %s", dir);
    }
    if (o->format == PUSH_FORMAT_MODELPACK)
        gather_facts(p);
    r = build_manifest(p, o, diff_ids, err);
    if (r < 0)
        return r;
    *out = MV_STEAL(p);
    return 0;
}

void push_pack_free(push_pack *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_files; i++) {
        free(p->files[i].rel);
        free(p->files[i].path);
    }
    free(p->files);
    for (size_t i = 0; i < p->n_blobs; i++) {
        push_blob *b = &p->blobs[i];
        free(b->label);
        free(b->path);
        free(b->mem);
        if (b->fd >= 0)
            close(b->fd);
    }
    free(p->blobs);
    oci_manifest *m = &p->manifest;
    free(m->media_type);
    free(m->artifact_type);
    descriptor_clear(&m->config);
    for (size_t i = 0; i < m->n_layers; i++)
        descriptor_clear(&m->layers[i]);
    free(m->layers);
    for (size_t i = 0; i < m->n_annotations; i++) {
        free(m->annotations[i].key);
        free(m->annotations[i].value);
    }
    free(m->annotations);
    free(p->config_json);
    free(p->manifest_json);
    free(p->format);
    free(p->param_size);
    free(p->precision);
    free(p);
}
