/* state.c — what the daemon remembers across its own restarts: one record
 * per published target under <cache>/csi/ saying which tree it holds and
 * with which arguments, replaced atomically (mv_write_atomic), and the
 * start-up recovery that reconciles those records and the pins with the
 * mounts the kernel really has.
 *
 * Records and pins describe mounts, and mounts do not survive a reboot:
 * after a power loss recovery finds nothing mounted and drops whatever
 * records and pins remain. So they need to survive a killed daemon only,
 * which the page cache does, and are not fsynced; four fsyncs per publish
 * were most of its cost under load. */
#include <dirent.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>

#include "csi.h"

#define RECORD_SUFFIX    ".rec"
#define RECORD_MAX_BYTES (64 * 1024)

void csi_record_free(csi_record *r)
{
    if (!r)
        return;
    free(r->target);
    free(r->volume_id);
    free(r->reference);
    free(r->policy);
    free(r->include);
    free(r->exclude);
    free(r->subpath);
    free(r->tree_id);
    free(r->tree_path);
    free(r->kinds);
    free(r->artifact_type);
    free(r->platform);
    free(r->annotation);
    free(r);
}

int csi_state_init(const char *dir, mv_error *err)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return mv_error_errno(err, -errno, "create state directory %s", dir);
    return 0;
}

/* Records are named by a digest of the target: any path, fixed length. */
static char *record_path(const char *dir, const char *target)
{
    char digest[OCI_DIGEST_MAX];
    oci_digest_buf(OCI_DIGEST_SHA256, target, strlen(target), digest);
    return mv_xasprintf("%s/%s%s", dir, oci_digest_hex(digest), RECORD_SUFFIX);
}

/* The record's fields and their keys on disk: the one list the writer and
 * the reader share. */
static const struct {
    const char *key;
    size_t offset; /* of a char * in csi_record */
} record_fields[] = {
    {"target", offsetof(csi_record, target)},
    {"volume_id", offsetof(csi_record, volume_id)},
    {"reference", offsetof(csi_record, reference)},
    {"policy", offsetof(csi_record, policy)},
    {"include", offsetof(csi_record, include)},
    {"exclude", offsetof(csi_record, exclude)},
    {"path", offsetof(csi_record, subpath)},
    {"tree_id", offsetof(csi_record, tree_id)},
    {"tree_path", offsetof(csi_record, tree_path)},
    {"kinds", offsetof(csi_record, kinds)},
    {"artifact_type", offsetof(csi_record, artifact_type)},
    {"platform", offsetof(csi_record, platform)},
    {"annotation", offsetof(csi_record, annotation)},
};
#define N_RECORD_FIELDS (sizeof(record_fields) / sizeof(record_fields[0]))

static char **field_of(csi_record *r, size_t i)
{
    return (char **)((char *)r + record_fields[i].offset);
}

/* Values are one line each: '%' and control characters are %XX-escaped. */
static void put_field(FILE *f, const char *key, const char *value)
{
    fprintf(f, "%s=", key);
    for (const unsigned char *p = (const unsigned char *)(value ? value : ""); *p; p++) {
        if (*p == '%' || *p < ' ' || *p == 0x7f)
            fprintf(f, "%%%02X", *p);
        else
            fputc(*p, f);
    }
    fputc('\n', f);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static char *unescape(const char *s)
{
    char *out = mv_xmalloc(strlen(s) + 1);
    char *w = out;
    for (const char *p = s; *p; p++) {
        int hi, lo;
        if (*p == '%' && (hi = hexval(p[1])) >= 0 && (lo = hexval(p[2])) >= 0) {
            *w++ = (char)(hi * 16 + lo);
            p += 2;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    return out;
}

int csi_state_save(const char *dir, const csi_record *r, mv_error *err)
{
    _cleanup_free_ char *path = record_path(dir, r->target);
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return mv_error_errno(err, -errno, "write record %s", path);
    fputs("# modelvol-csi publish record v1\n", f);
    for (size_t i = 0; i < N_RECORD_FIELDS; i++)
        put_field(f, record_fields[i].key, *field_of((csi_record *)r, i));
    if (fclose(f) != 0)
        return mv_error_errno(err, -errno, "write record %s", path);
    /* No MV_WRITE_SYNC: records need to survive a killed daemon only (see
     * the top of this file). */
    int rc = mv_write_atomic(path, text, len, 0600, 0, err);
    if (rc < 0)
        return mv_error_wrap(err, "save record");
    return 0;
}

static int parse_record(const char *file, csi_record **out, mv_error *err)
{
    _cleanup_fclose_ FILE *f = fopen(file, "re");
    if (!f)
        return mv_error_errno(err, -errno, "open record %s", file);
    _cleanup_record_ csi_record *rec = mv_xcalloc(1, sizeof(*rec));
    csi_record *r = rec;
    if (!r) /* mv_xcalloc aborts instead; this is for the analyzers */
        return mv_error_set(err, -ENOMEM, "record %s", file);
    _cleanup_free_ char *line = NULL;
    size_t cap = 0, total = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        total += (size_t)n;
        if (total > (size_t)RECORD_MAX_BYTES)
            return mv_error_set(err, -EBADMSG, "record %s is larger than %d bytes", file,
                                RECORD_MAX_BYTES);
        if (line[n - 1] == '\n')
            line[n - 1] = '\0';
        if (line[0] == '#' || !line[0])
            continue;
        char *eq = strchr(line, '=');
        if (!eq)
            return mv_error_set(err, -EBADMSG, "record %s: line without '='", file);
        *eq = '\0';
        char **slot = NULL;
        for (size_t i = 0; i < N_RECORD_FIELDS && !slot; i++)
            if (strcmp(line, record_fields[i].key) == 0)
                slot = field_of(r, i);
        if (!slot)
            continue; /* a newer writer's field */
        free(*slot);
        *slot = unescape(eq + 1);
    }
    if (!r->target || !r->tree_id || !r->tree_path || !r->reference)
        return mv_error_set(err, -EBADMSG, "record %s is incomplete", file);
    /* Fields every record has had: absent means empty. The selector's and
     * kinds stay NULL when absent (see csi_record). */
    char **opt[] = {&r->volume_id, &r->policy, &r->include, &r->exclude, &r->subpath};
    for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++)
        if (!*opt[i])
            *opt[i] = mv_xstrdup("");
    *out = MV_STEAL(rec);
    return 0;
}

int csi_state_load(const char *dir, const char *target, csi_record **out, mv_error *err)
{
    _cleanup_free_ char *path = record_path(dir, target);
    if (access(path, F_OK) < 0) {
        if (errno == ENOENT)
            return mv_error_set(err, -ENOENT, "no record for %s", target);
        return mv_error_errno(err, -errno, "record %s", path);
    }
    _cleanup_record_ csi_record *r = NULL;
    int rc = parse_record(path, &r, err);
    if (rc < 0)
        return rc;
    if (!r)
        return mv_error_set(err, -EBADMSG, "record %s is empty", path);
    if (strcmp(r->target, target) != 0)
        return mv_error_set(err, -EBADMSG, "record %s names %s, not %s", path, r->target, target);
    *out = MV_STEAL(r);
    return 0;
}

int csi_state_remove(const char *dir, const char *target, mv_error *err)
{
    _cleanup_free_ char *path = record_path(dir, target);
    if (unlink(path) < 0 && errno != ENOENT)
        return mv_error_errno(err, -errno, "remove record %s", path);
    return 0;
}

int csi_state_list(const char *dir, csi_record ***out, size_t *n, mv_error *err)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return mv_error_errno(err, -errno, "read state directory %s", dir);
    }
    csi_record **v = NULL;
    size_t count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        size_t slen = strlen(RECORD_SUFFIX);
        if (len <= slen || strcmp(e->d_name + len - slen, RECORD_SUFFIX) != 0) {
            if (strstr(e->d_name, RECORD_SUFFIX ".tmp.")) {
                /* A save that died before its rename. */
                unlinkat(dirfd(d), e->d_name, 0);
            }
            continue;
        }
        _cleanup_free_ char *path = mv_xasprintf("%s/%s", dir, e->d_name);
        mv_error perr = MV_ERROR_INIT;
        csi_record *r = NULL;
        if (parse_record(path, &r, &perr) < 0) {
            mv_log("warn", "record_skipped", "file", path, "error", perr.msg);
            continue;
        }
        v = mv_xrealloc(v, (count + 1) * sizeof(csi_record *));
        v[count++] = r;
    }
    closedir(d);
    *out = v;
    *n = count;
    return 0;
}

/* A crash between pinning and writing the record leaves a pin no record
 * explains; it would keep its tree from GC forever. */
static size_t drop_orphan_pins(csi_plugin *p)
{
    cache_pin_info *pins = NULL;
    size_t n = 0, dropped = 0;
    mv_error e = MV_ERROR_INIT;
    if (cache_pins_list(p->cache, CSI_PIN_PREFIX, &pins, &n, &e) < 0) {
        mv_log("warn", "pin_list_failed", "cache", p->cache_dir, "error", e.msg);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        const char *target = pins[i].owner + strlen(CSI_PIN_PREFIX);
        _cleanup_record_ csi_record *rec = NULL;
        if (csi_state_load(p->state_dir, target, &rec, &e) != -ENOENT)
            continue;
        if (cache_unpin_volatile(p->cache, pins[i].tree_id, pins[i].owner, &e) < 0) {
            mv_log("warn", "unpin_failed", "target", target, "error", e.msg);
            continue;
        }
        mv_log("info", "volume_dropped", "target", target, "tree", pins[i].tree_id, "reason",
               "pin without a record");
        dropped++;
    }
    cache_pins_free(pins, n);
    return dropped;
}

static int recover(csi_plugin *p, mv_error *err);

int csi_recover(csi_plugin *p, mv_error *err)
{
    int r = recover(p, err);
    if (r < 0) {
        snprintf(p->failure, sizeof(p->failure), "%s", err->msg[0] ? err->msg : "unknown error");
        atomic_store(&p->failed, true);
    }
    return r;
}

static int recover(csi_plugin *p, mv_error *err)
{
    int64_t t0 = csi_now_ns();
    int r = cache_open(p->cache_dir, &p->cache_opts, &p->cache, err);
    if (r < 0)
        return mv_error_wrap(err, "open cache %s", p->cache_dir);
    r = csi_state_init(p->state_dir, err);
    if (r < 0)
        return r;

    csi_record **recs = NULL;
    size_t n = 0;
    r = csi_state_list(p->state_dir, &recs, &n, err);
    if (r < 0)
        return r;
    size_t kept = 0, dropped = 0;
    for (size_t i = 0; i < n; i++) {
        csi_record *rec = recs[i];
        if (!rec)
            continue;
        mv_error e = MV_ERROR_INIT;
        bool mounted = false;
        if (csi_is_mounted(rec->target, &mounted, &e) < 0) {
            mv_log("warn", "reconcile_failed", "target", rec->target, "error", e.msg);
            csi_record_free(rec);
            continue;
        }
        _cleanup_free_ char *owner = mv_xasprintf(CSI_PIN_PREFIX "%s", rec->target);
        if (mounted) {
            /* Re-pinning repairs a pin lost with a crash between the
             * record and the pin. */
            if (cache_pin_volatile(p->cache, rec->tree_id, owner, &e) < 0)
                mv_log("warn", "repin_failed", "target", rec->target, "tree", rec->tree_id, "error",
                       e.msg);
            mv_log("info", "volume_restored", "target", rec->target, "reference", rec->reference,
                   "tree", rec->tree_id);
            kept++;
        } else {
            /* The mount is gone (reboot, or a crash mid-publish): the
             * kubelet will publish again if it still wants the volume. */
            if (cache_unpin_volatile(p->cache, rec->tree_id, owner, &e) < 0 && e.code != -ENOENT)
                mv_log("warn", "unpin_failed", "target", rec->target, "error", e.msg);
            mv_error_clear(&e);
            if (csi_state_remove(p->state_dir, rec->target, &e) < 0)
                mv_log("warn", "record_remove_failed", "target", rec->target, "error", e.msg);
            mv_log("info", "volume_dropped", "target", rec->target, "reference", rec->reference,
                   "reason", "not mounted");
            dropped++;
        }
        csi_record_free(rec);
    }
    free(recs);
    dropped += drop_orphan_pins(p);

    char ms[32], k[32], d[32];
    snprintf(ms, sizeof(ms), "%lld", (long long)((csi_now_ns() - t0) / 1000000));
    snprintf(k, sizeof(k), "%zu", kept);
    snprintf(d, sizeof(d), "%zu", dropped);
    mv_log("info", "recovered", "cache", p->cache_dir, "volumes_kept", k, "volumes_dropped", d,
           "ms", ms);
    atomic_store(&p->ready, true);
    return 0;
}
