/* mounts.c — the kernel side of publishing: read-only bind mounts of model
 * trees onto target paths, unmounting them, and reading
 * /proc/self/mountinfo. A dry-run switch keeps every syscall that changes
 * the mount table or the target away from the kernel. */
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "csi.h"

static atomic_bool dry_run;

void csi_set_dry_run(bool on)
{
    atomic_store(&dry_run, on);
}

bool csi_dry_run(void)
{
    return atomic_load(&dry_run);
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape_octal(char *s)
{
    char *w = s;
    for (char *r = s; *r;) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 4;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
}

/* Finds the last (topmost) mountinfo line whose mount point is target and
 * returns its mount options (field 6) when options is non-NULL. */
static int find_mount(const char *target, bool *found, char **options, mv_error *err)
{
    _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return mv_error_errno(err, -errno, "open /proc/self/mountinfo");
    _cleanup_free_ char *line = NULL;
    size_t cap = 0;
    *found = false;
    while (getline(&line, &cap, f) > 0) {
        /* id parent major:minor root mount-point options ... */
        char *save = NULL;
        char *field = strtok_r(line, " ", &save);
        for (int i = 0; field && i < 4; i++)
            field = strtok_r(NULL, " ", &save);
        if (!field)
            continue;
        unescape_octal(field);
        if (strcmp(field, target) != 0)
            continue;
        *found = true;
        char *opts = strtok_r(NULL, " ", &save);
        if (options) {
            free(*options);
            *options = mv_xstrdup(opts ? opts : "");
        }
    }
    return 0;
}

int csi_is_mounted(const char *target, bool *out, mv_error *err)
{
    return find_mount(target, out, NULL, err);
}

int csi_mount_options(const char *target, char **out, mv_error *err)
{
    bool found = false;
    *out = NULL;
    int r = find_mount(target, &found, out, err);
    if (r < 0)
        return r;
    if (!found)
        return mv_error_set(err, -ENOENT, "%s is not mounted", target);
    return 0;
}

int csi_mount_ro_bind(const char *src, const char *target, mv_error *err)
{
    if (csi_dry_run())
        return 0;
    if (mkdir(target, 0750) < 0 && errno != EEXIST)
        return mv_error_errno(err, -errno, "create target %s", target);
    if (mount(src, target, NULL, MS_BIND | MS_REC, NULL) < 0)
        return mv_error_errno(err, -errno, "bind mount %s on %s", src, target);
    /* A bind mount ignores flags on its first call; read-only, nosuid and
     * nodev take effect only on the remount. */
    if (mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) <
        0) {
        int saved = -errno;
        if (umount2(target, UMOUNT_NOFOLLOW) < 0)
            umount2(target, MNT_DETACH);
        return mv_error_errno(err, saved, "remount %s read-only", target);
    }
    return 0;
}

int csi_unmount(const char *target, mv_error *err)
{
    if (csi_dry_run())
        return 0;
    /* Bounded: a target never holds more than a few stacked mounts. */
    for (int i = 0; i < 16; i++) {
        bool mounted = false;
        int r = csi_is_mounted(target, &mounted, err);
        if (r < 0)
            return r;
        if (!mounted)
            return 0;
        if (umount2(target, UMOUNT_NOFOLLOW) < 0) {
            if (errno == EINVAL || errno == ENOENT)
                return 0;
            return mv_error_errno(err, -errno, "unmount %s", target);
        }
    }
    return mv_error_set(err, -EBUSY, "unmount %s: still mounted after 16 unmounts", target);
}
