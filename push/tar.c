/* tar.c — tar layers: small files of one kind as one deterministic tar
 * (path order, owner 0:0, fixed mtime, pax only where ustar cannot say
 * it), or one file as kit pack tars it; optionally zstd-compressed,
 * streamed to an unlinked staging file while the tar and the stored bytes
 * are hashed. */
#include "push-internal.h"

#include <archive_entry.h>
#include <fcntl.h>
#include <string.h>
#include <zstd.h>

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

/* How the entries' headers read: modelpush's own tars (owner 0:0, mtime
 * --created) or kit pack's. */
typedef struct tar_style {
    int64_t uid;
    int64_t mtime;
    bool parents; /* a directory entry for each parent of the file first */
} tar_style;

/* One entry's header in the style st asks for (owner, mtime). */
static int tar_header(struct archive *a, const char *path, mode_t type, mode_t perm, uint64_t size,
                      const tar_style *st, mv_error *err)
{
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, perm);
    archive_entry_set_size(e, (la_int64_t)size);
    archive_entry_set_uid(e, st->uid);
    archive_entry_set_gid(e, 0);
    archive_entry_set_mtime(e, st->mtime, 0);
    int ar = archive_write_header(a, e);
    archive_entry_free(e);
    if (ar != ARCHIVE_OK)
        return mv_error_set(err, -EIO, "%s: tar header: %s", path, archive_error_string(a));
    return 0;
}

/* kit pack walks the context directory and writes a header for every
 * directory on the way down to the layer's path (kitops-ml/kitops
 * pkg/lib/filesystem/tar.go writeLayerToTar: sameDirTree keeps the
 * ancestors). libarchive ends a directory's name with '/', Go's tar does
 * not: both extract the same. The walk already made every mode 0644 or
 * 0755, so directories are 0755. */
static int tar_add_parents(struct archive *a, const char *rel, const tar_style *st, mv_error *err)
{
    _cleanup_free_ char *dir = mv_xstrdup(rel);
    for (char *s = strchr(dir, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        int r = tar_header(a, dir, AE_IFDIR, 0755, 0, st, err);
        if (r < 0)
            return r;
        *s = '/';
    }
    return 0;
}

static int tar_add_file(struct archive *a, const push_file *f, char *buf, const tar_style *st,
                        mv_error *err)
{
    if (st->parents) {
        int r = tar_add_parents(a, f->rel, st, err);
        if (r < 0)
            return r;
    }
    _cleanup_close_ int fd = push_open_vetted(f, err);
    if (fd < 0)
        return fd;
    int r = tar_header(a, f->rel, AE_IFREG, f->mode, f->size, st, err);
    if (r < 0)
        return r;
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

/* Writes files[idx[0..n)] as one tar (entries in path order, headers as
 * st says) into a staging file; fills the blob and the diffId. */
static int build_tar(push_file *files, const size_t *idx, size_t n, const push_pack_opts *o,
                     const tar_style *st, push_blob *b, char diff_id[OCI_DIGEST_MAX], mv_error *err)
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
    if (o->spec.zstd) {
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
            r = tar_add_file(a, &files[idx[i]], buf, st, err);
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

int push_build_tar(push_file *files, const size_t *idx, size_t n, const push_pack_opts *o,
                   push_blob *b, char diff_id[OCI_DIGEST_MAX], mv_error *err)
{
    const tar_style st = {.uid = 0, .mtime = o->spec.created};
    return build_tar(files, idx, n, o, &st, b, diff_id, err);
}

/* kit pack's headers: uid 1000, gid 0, no user or group name, and the
 * zero time, which Go's tar writes as mtime 0 (kitops-ml/kitops
 * pkg/lib/filesystem/tar.go sanitizeTarHeader). */
int push_build_kit_tar(push_file *f, const push_pack_opts *o, push_blob *b,
                       char diff_id[OCI_DIGEST_MAX], mv_error *err)
{
    const tar_style st = {.uid = 1000, .mtime = 0, .parents = true};
    const size_t idx = 0;
    return build_tar(f, &idx, 1, o, &st, b, diff_id, err);
}
