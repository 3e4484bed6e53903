/* fuzz_tar_extract.c — libFuzzer target for safe tar-layer extraction.
 * Whatever the input (tar, gzip, zstd or garbage), extraction into a temp
 * root must write nothing next to it, and when it succeeds the root holds
 * only directories, regular files without setuid/setgid/write bits, and
 * symlinks that stay inside. */
#include "cache-internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static char *base;

static void check_tree(int dirfd, int depth)
{
    ASSERT(depth < 300);
    DIR *d = cache_opendir_fd(dirfd);
    ASSERT(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        ASSERT(!strchr(de->d_name, '\n'));
        struct stat st;
        ASSERT(fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0);
        ASSERT(S_ISDIR(st.st_mode) || S_ISREG(st.st_mode) || S_ISLNK(st.st_mode));
        if (S_ISREG(st.st_mode))
            ASSERT(!(st.st_mode & (S_ISUID | S_ISGID | 0222)));
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            ASSERT(sub >= 0);
            check_tree(sub, depth + 1);
            close(sub);
        }
    }
    closedir(d);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ASSERT(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void remove_base(void)
{
    if (base)
        cache_rm_rf_at(AT_FDCWD, base, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!base) {
        char tmpl[] = "/tmp/mv-fuzz-tar.XXXXXX";
        ASSERT(mkdtemp(tmpl));
        base = mv_xstrdup(tmpl);
        atexit(remove_base);
        _cleanup_free_ char *sentinel = mv_xasprintf("%s/outside", base);
        ASSERT(mkdir(sentinel, 0755) == 0);
    }
    if (size < 1)
        return 0;
    /* The first byte picks image-layer semantics for absolute symlinks. */
    bool allow_abs = data[0] & 1;
    data++;
    size--;

    int src = memfd_create("layer", MFD_CLOEXEC);
    ASSERT(src >= 0);
    ASSERT(size == 0 || write(src, data, size) == (ssize_t)size);
    lseek(src, 0, SEEK_SET);
    _cleanup_free_ char *rootp = mv_xasprintf("%s/root", base);
    ASSERT(mkdir(rootp, 0755) == 0);
    int root = open(rootp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT(root >= 0);

    cache_extract_limits lim = {
        .max_entries = 5000, .max_bytes = 8u << 20, .allow_absolute_symlinks = allow_abs};
    mv_error err = MV_ERROR_INIT;
    int r = cache_extract_tar(src, root, "fuzz", &lim, NULL, NULL, &err);
    if (r < 0)
        ASSERT(err.msg[0] && strstr(err.msg, "fuzz"));
    else
        ASSERT(cache_check_symlinks(root, "fuzz", allow_abs, NULL) == 0);
    check_tree(root, 0);
    _cleanup_free_ char *sentinel = mv_xasprintf("%s/outside", base);
    ASSERT(count_entries(sentinel) == 0);
    ASSERT(count_entries(base) == 2);
    close(root);
    close(src);
    ASSERT(cache_rm_rf_at(AT_FDCWD, rootp, NULL) == 0);
    return 0;
}
