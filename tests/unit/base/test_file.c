/* test_file.c — base's file mechanisms: the atomic writer (nothing partial
 * visible, replace and no-replace, a failure leaves no temp file), the
 * small-file reader, mkdir -p, and the walker with its inode set. */
#include "mv.h"
#include "mvtest.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

static char *tmpdir(void)
{
    char tmpl[] = "/tmp/mv-test-file.XXXXXX";
    char *d = mkdtemp(tmpl);
    if (!d) {
        perror("mkdtemp");
        exit(1);
    }
    return mv_xstrdup(d);
}

static void rm_rf(const char *path)
{
    char *cmd = mv_xasprintf("rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", path);
    free(cmd);
}

static char *slurp(const char *path)
{
    char *buf = NULL;
    mv_error e = MV_ERROR_INIT;
    if (mv_read_file_at(AT_FDCWD, path, 1 << 20, &buf, NULL, &e) < 0)
        return NULL;
    return buf;
}

/* Names in dir other than . and .., counted. */
static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    if (d)
        closedir(d);
    return n;
}

MV_TEST(atomic_write_replaces_and_leaves_no_temp)
{
    _cleanup_free_ char *d = tmpdir();
    _cleanup_free_ char *p = mv_xasprintf("%s/record", d);
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(mv_write_atomic(p, "one\n", 4, 0600, 0, &e), 0);
    _cleanup_free_ char *a = slurp(p);
    CHECK_STR(a, "one\n");
    CHECK_INT(mv_write_atomic(p, "two\n", 4, 0640, MV_WRITE_SYNC, &e), 0);
    _cleanup_free_ char *b = slurp(p);
    CHECK_STR(b, "two\n");
    CHECK_INT(mv_write_atomic(p, "three\n", 6, 0640, MV_WRITE_SYNC_DATA, &e), 0);
    _cleanup_free_ char *c = slurp(p);
    CHECK_STR(c, "three\n");
    struct stat st;
    CHECK_INT(stat(p, &st), 0);
    CHECK_INT(st.st_mode & 0777, 0640);
    CHECK_INT(entries(d), 1); /* no temp file beside it */
    rm_rf(d);
}

MV_TEST(atomic_write_noreplace_keeps_the_first)
{
    _cleanup_free_ char *d = tmpdir();
    _cleanup_close_ int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(mv_write_atomic_at(dfd, "t1", dfd, "blob", "first", 5, 0444, MV_WRITE_NOREPLACE, &e),
              0);
    /* The same name again: an existing object wins and counts as done. */
    CHECK_INT(mv_write_atomic_at(dfd, "t2", dfd, "blob", "second", 6, 0444, MV_WRITE_NOREPLACE, &e),
              0);
    _cleanup_free_ char *p = mv_xasprintf("%s/blob", d);
    _cleanup_free_ char *got = slurp(p);
    CHECK_STR(got, "first");
    CHECK_INT(entries(d), 1);
    CHECK_INT(mv_rename_noreplace(dfd, "blob", dfd, "blob"), -EEXIST);
    rm_rf(d);
}

MV_TEST(atomic_write_failure_names_the_file_and_cleans_up)
{
    _cleanup_free_ char *d = tmpdir();
    /* The destination is a non-empty directory: the rename fails. */
    _cleanup_free_ char *dst = mv_xasprintf("%s/taken", d);
    _cleanup_free_ char *inside = mv_xasprintf("%s/taken/x", d);
    CHECK_INT(mkdir(dst, 0755), 0);
    CHECK_INT(close(open(inside, O_WRONLY | O_CREAT, 0600)), 0);
    mv_error e = MV_ERROR_INIT;
    CHECK(mv_write_atomic(dst, "x", 1, 0600, 0, &e) < 0);
    CHECK(strstr(e.msg, "taken") != NULL);
    CHECK_INT(entries(d), 1); /* only "taken": the temp file is gone */
    /* A missing directory is named too. */
    _cleanup_free_ char *nodir = mv_xasprintf("%s/no/such/file", d);
    mv_error_clear(&e);
    CHECK_INT(mv_write_atomic(nodir, "x", 1, 0600, 0, &e), -ENOENT);
    CHECK(strstr(e.msg, nodir) != NULL);
    rm_rf(d);
}

MV_TEST(read_file_refuses_symlinks_and_big_files)
{
    _cleanup_free_ char *d = tmpdir();
    _cleanup_free_ char *p = mv_xasprintf("%s/f", d);
    _cleanup_free_ char *l = mv_xasprintf("%s/link", d);
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(mv_write_atomic(p, "0123456789", 10, 0600, 0, &e), 0);
    CHECK_INT(symlink(p, l), 0);
    char *buf = NULL;
    size_t len = 0;
    CHECK_INT(mv_read_file_at(AT_FDCWD, p, 10, &buf, &len, &e), 0);
    CHECK(len == 10 && buf && buf[10] == '\0');
    free(buf);
    buf = NULL;
    CHECK_INT(mv_read_file_at(AT_FDCWD, p, 9, &buf, &len, &e), -EFBIG);
    CHECK(buf == NULL);
    CHECK_INT(mv_read_file_at(AT_FDCWD, l, 100, &buf, &len, &e), -ELOOP);
    CHECK_INT(mv_read_file_at(AT_FDCWD, d, 100, &buf, &len, &e), -EINVAL);
    rm_rf(d);
}

MV_TEST(mkdir_p_creates_and_accepts_existing)
{
    _cleanup_free_ char *d = tmpdir();
    _cleanup_free_ char *deep = mv_xasprintf("%s/a/b/c", d);
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(mv_mkdir_p(deep, 0700, &e), 0);
    CHECK_INT(mv_mkdir_p(deep, 0700, &e), 0);
    struct stat st;
    CHECK_INT(stat(deep, &st), 0);
    CHECK(S_ISDIR(st.st_mode));
    CHECK_INT(st.st_mode & 0777, 0700);
    _cleanup_free_ char *file = mv_xasprintf("%s/a/file", d);
    CHECK_INT(mv_write_atomic(file, "", 0, 0600, 0, &e), 0);
    _cleanup_free_ char *under = mv_xasprintf("%s/a/file/x", d);
    CHECK_INT(mv_mkdir_p(under, 0700, &e), -ENOTDIR);
    rm_rf(d);
}

typedef struct seen {
    int files, dirs, links, repeats;
    bool saw_inside_symlink;
} seen;

static int count(const mv_walk_entry *w, void *ud, mv_error *err)
{
    (void)err;
    seen *s = ud;
    if (strstr(w->path, "sym/"))
        s->saw_inside_symlink = true;
    if (S_ISDIR(w->st->st_mode))
        s->dirs++;
    else if (S_ISLNK(w->st->st_mode))
        s->links++;
    else if (w->first_link)
        s->files++;
    else
        s->repeats++;
    if (S_ISDIR(w->st->st_mode) && strcmp(w->name, "skipme") == 0)
        return MV_WALK_SKIP;
    return 0;
}

MV_TEST(walker_counts_hard_links_once_and_never_follows_symlinks)
{
    _cleanup_free_ char *d = tmpdir();
    _cleanup_free_ char *cmd = mv_xasprintf(
        "cd '%s' && mkdir -p t/a/b t/skipme && head -c 10000 /dev/zero >t/a/f1 && "
        "ln t/a/f1 t/a/b/f1-again && ln t/a/f1 t/f1-third && echo x >t/skipme/hidden && "
        "ln -s /etc t/sym && echo y >t/a/b/f2",
        d);
    CHECK_INT(system(cmd), 0);
    _cleanup_close_ int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    seen s = {0};
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(mv_walk_at(dfd, "t", 16, count, &s, &e), 0);
    CHECK_INT(s.dirs, 4);    /* t, a, b, skipme (reported, not entered) */
    CHECK_INT(s.files, 2);   /* f1 once, f2 */
    CHECK_INT(s.repeats, 2); /* f1's other two links */
    CHECK_INT(s.links, 1);
    CHECK(!s.saw_inside_symlink);

    /* Disk use across two roots that share an inode counts it once. */
    uint64_t both = 0, one = 0;
    const char *const roots[] = {"t/a", "t", "missing", NULL};
    CHECK_INT(mv_du_at(dfd, roots, &both, &e), 0);
    const char *const just_t[] = {"t", NULL};
    CHECK_INT(mv_du_at(dfd, just_t, &one, &e), 0);
    CHECK(one > 0 && both == one);

    /* Too deep: -ELOOP naming where. */
    mv_error_clear(&e);
    CHECK_INT(mv_walk_at(dfd, "t", 1, count, &s, &e), -ELOOP);
    CHECK(strstr(e.msg, "deeper than 1") != NULL);
    /* A missing root is an error of its own. */
    CHECK_INT(mv_walk_at(dfd, "missing", 16, count, &s, &e), -ENOENT);
    rm_rf(d);
}

int main(void)
{
    MV_RUN(atomic_write_replaces_and_leaves_no_temp);
    MV_RUN(atomic_write_noreplace_keeps_the_first);
    MV_RUN(atomic_write_failure_names_the_file_and_cleans_up);
    MV_RUN(read_file_refuses_symlinks_and_big_files);
    MV_RUN(mkdir_p_creates_and_accepts_existing);
    MV_RUN(walker_counts_hard_links_once_and_never_follows_symlinks);
    MV_DONE();
}
