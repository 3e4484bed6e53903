/* cachetest.h — helpers for the cache unit tests: temp directories,
 * tar layers built in memory with libarchive (hostile ones included), and
 * blobs stored straight into a cache so trees can be built without a
 * registry. */
#ifndef MODELVOL_CACHETEST_H
#define MODELVOL_CACHETEST_H

#include "cache-internal.h"
#include "mvtest.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

typedef struct ct_entry {
    const char *path;
    mode_t type; /* AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFCHR, AE_IFIFO; 0 = hardlink */
    const char *data_or_link;
    mode_t perm;
    size_t zeros; /* AE_IFREG: this many zero bytes instead of data */
} ct_entry;

typedef enum { CT_PLAIN, CT_GZIP, CT_ZSTD } ct_compress;

typedef struct ct_buf {
    char *data;
    size_t len;
} ct_buf;

/* Builds a pax tar of entries (n of them) in memory. */
static inline ct_buf ct_tar(const ct_entry *e, size_t n, ct_compress comp)
{
    size_t cap = 64 << 20;
    ct_buf b = {mv_xmalloc(cap), 0};
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    if (comp == CT_GZIP)
        archive_write_add_filter_gzip(a);
    else if (comp == CT_ZSTD)
        archive_write_add_filter_zstd(a);
    archive_write_open_memory(a, b.data, cap, &b.len);
    static char zeros[1 << 16];
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *ae = archive_entry_new();
        archive_entry_set_pathname(ae, e[i].path);
        archive_entry_set_perm(ae, e[i].perm ? e[i].perm : 0644);
        if (e[i].type == 0) {
            archive_entry_set_filetype(ae, AE_IFREG);
            archive_entry_set_hardlink(ae, e[i].data_or_link);
            archive_entry_set_size(ae, 0);
        } else {
            archive_entry_set_filetype(ae, e[i].type);
        }
        size_t size = 0;
        if (e[i].type == AE_IFREG)
            size = e[i].zeros ? e[i].zeros : (e[i].data_or_link ? strlen(e[i].data_or_link) : 0);
        if (e[i].type == AE_IFLNK)
            archive_entry_set_symlink(ae, e[i].data_or_link);
        if (e[i].type == AE_IFCHR)
            archive_entry_set_rdev(ae, 0x0103);
        if (e[i].type == AE_IFREG)
            archive_entry_set_size(ae, (la_int64_t)size);
        archive_write_header(a, ae);
        if (e[i].type == AE_IFREG && e[i].zeros) {
            for (size_t left = e[i].zeros; left;) {
                size_t k = left < sizeof(zeros) ? left : sizeof(zeros);
                archive_write_data(a, zeros, k);
                left -= k;
            }
        } else if (e[i].type == AE_IFREG && size) {
            archive_write_data(a, e[i].data_or_link, size);
        }
        archive_entry_free(ae);
    }
    archive_write_close(a);
    archive_write_free(a);
    return b;
}

static inline char *ct_tmpdir(void)
{
    char tmpl[] = "/tmp/mvtest-cache.XXXXXX";
    char *d = mkdtemp(tmpl);
    if (!d) {
        perror("mkdtemp");
        exit(1);
    }
    return mv_xstrdup(d);
}

static inline void ct_rmtree(const char *path)
{
    cache_rm_rf_at(AT_FDCWD, path, NULL);
}

/* Number of entries in a directory (0 if missing). */
static inline int ct_count(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

static inline bool ct_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static inline char *ct_read(const char *path)
{
    char *buf = NULL;
    size_t n = 0;
    if (mv_read_file_at(AT_FDCWD, path, 64 << 20, &buf, &n, NULL) < 0)
        return NULL;
    return buf;
}

/* Stores data as a blob; digest gets its digest. */
static inline void ct_blob(cache *c, const void *data, size_t len, char digest[OCI_DIGEST_MAX])
{
    oci_digest_buf(OCI_DIGEST_SHA256, data, len, digest);
    mv_error e = MV_ERROR_INIT;
    int r = cache_ingest_buf(c, digest, data, len, &e);
    if (r < 0)
        fprintf(stderr, "ingest: %s\n", e.msg);
    CHECK_INT(r, 0);
}

#endif
