/* credhelper.c — runs a docker credential helper, as docker does for
 * "credHelpers" and "credsStore": `docker-credential-<name> get` from PATH,
 * the server on stdin, JSON {"Username", "Secret"} on stdout. A helper that
 * hangs is killed after HELPER_TIMEOUT_MS; its output is wiped once read. */
#include "puller-internal.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>

#define HELPER_TIMEOUT_MS 30000
#define HELPER_OUT_MAX    (64 << 10)

extern char **environ;

bool pull_credhelper_name_ok(const char *name)
{
    if (!name || !*name || strlen(name) > 64 || name[0] == '.' || name[0] == '-')
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return false;
    return true;
}

static void close_pair(int p[2])
{
    for (int i = 0; i < 2; i++)
        if (p[i] >= 0) {
            close(p[i]);
            p[i] = -1;
        }
}

/* The server on stdin: tiny, so one write into the empty pipe. A helper
 * that exits without reading must not kill us with SIGPIPE. */
static void send_server(int fd, const char *server)
{
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    _cleanup_free_ char *line = mv_xasprintf("%s\n", server);
    ssize_t w;
    do
        w = write(fd, line, strlen(line));
    while (w < 0 && errno == EINTR);
    if (w < 0 && errno == EPIPE) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Reads stdout until EOF or the deadline; -ETIMEDOUT when it passed. */
static int read_output(int fd, char *buf, size_t cap, size_t *len)
{
    uint64_t deadline = pull_now_ms() + HELPER_TIMEOUT_MS;
    *len = 0;
    for (;;) {
        uint64_t now = pull_now_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)(deadline - now));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            return -errno;
        if (pr == 0)
            return -ETIMEDOUT;
        char scratch[4096];
        bool full = *len >= cap;
        ssize_t r = read(fd, full ? scratch : buf + *len, full ? sizeof(scratch) : cap - *len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return 0;
        if (full)
            explicit_bzero(scratch, sizeof(scratch));
        else
            *len += (size_t)r;
    }
}

static void wipe_json_strings(cJSON *j)
{
    for (cJSON *e = j ? j->child : NULL; e; e = e->next)
        if (cJSON_IsString(e) && e->valuestring)
            explicit_bzero(e->valuestring, strlen(e->valuestring));
}

/* The first line of a failing helper's message, printable characters only,
 * for the error: helpers print why on stdout. */
static void first_line(const char *out, size_t len, char *dst, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len && out[i] != '\n' && n + 1 < cap; i++)
        if (out[i] >= 0x20 && out[i] < 0x7f)
            dst[n++] = out[i];
    dst[n] = '\0';
}

int pull_credhelper_get(const char *helper, const char *server, pull_cred *out, mv_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!pull_credhelper_name_ok(helper))
        return mv_error_set(err, -EINVAL, "credential helper \"%s\": not a valid helper name",
                            helper);
    _cleanup_free_ char *prog = mv_xasprintf("docker-credential-%s", helper);
    int in[2] = {-1, -1}, outp[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(outp, O_CLOEXEC) < 0) {
        int e = -errno;
        close_pair(in);
        return mv_error_errno(err, e, "%s: pipe", prog);
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    char *argv[] = {prog, "get", NULL};
    pid_t pid;
    int sr = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(outp[1]);
    in[0] = outp[1] = -1;
    if (sr != 0) {
        close_pair(in);
        close_pair(outp);
        return mv_error_set(err, -sr, "%s: %s", prog,
                            sr == ENOENT ? "not found on PATH" : strerror(sr));
    }
    send_server(in[1], server);
    close_pair(in);
    char *buf = mv_xmalloc(HELPER_OUT_MAX + 1);
    size_t len = 0;
    int rr = read_output(outp[0], buf, HELPER_OUT_MAX, &len);
    close_pair(outp);
    if (rr < 0)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    buf[len] = '\0';
    int rc = 0;
    if (rr < 0) {
        rc = mv_error_errno(err, rr, "%s get %s", prog, server);
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (strstr(buf, "credentials not found") == NULL) {
            char why[200];
            first_line(buf, len, why, sizeof(why));
            rc = mv_error_set(err, -EACCES, "%s get %s: exit status %d%s%s", prog, server,
                              WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
                              why[0] ? ": " : "", why);
        }
    } else {
        cJSON *j = cJSON_ParseWithLength(buf, len);
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "Username");
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "Secret");
        if (!cJSON_IsObject(j) || !cJSON_IsString(s)) {
            rc = mv_error_set(err, -EINVAL, "%s get %s: output is not the helper protocol's JSON",
                              prog, server);
        } else if (s->valuestring[0]) {
            const char *user = cJSON_IsString(u) ? u->valuestring : "";
            /* docker's convention: an identity token comes as user "<token>". */
            if (strcmp(user, "<token>") == 0) {
                out->identity_token = mv_xstrdup(s->valuestring);
            } else {
                out->username = mv_xstrdup(user);
                out->password = mv_xstrdup(s->valuestring);
            }
        }
        wipe_json_strings(j);
        cJSON_Delete(j);
    }
    explicit_bzero(buf, len);
    free(buf);
    return rc;
}
