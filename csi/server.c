/* server.c — gRPC plumbing on gRPC C core: listen on the unix socket (and
 * on the kubelet registration socket, register.c),
 * accept calls on one completion queue, and serve each call on its own
 * thread with its own queue, so a publish that waits minutes for a pull
 * never delays Probe, NodeGetInfo or another volume. The bytes go to
 * csi_dispatch; this file never looks inside a message. */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "csi.h"

#define MAX_CALLS   256
#define UNIX_PREFIX "unix://"

typedef struct server_call {
    csi_plugin *plugin;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array request_md;
    grpc_completion_queue *cq; /* pluck queue bound to this call */
} server_call;

static server_call *server_call_new(csi_plugin *p)
{
    server_call *c = mv_xcalloc(1, sizeof(*c));
    c->plugin = p;
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->request_md);
    c->cq = grpc_completion_queue_create_for_pluck(NULL);
    return c;
}

static void server_call_free(server_call *c)
{
    if (c->call)
        grpc_call_unref(c->call);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->request_md);
    grpc_completion_queue_shutdown(c->cq);
    grpc_event ev = grpc_completion_queue_pluck(c->cq, c, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    (void)ev; /* GRPC_QUEUE_SHUTDOWN: nothing was left pending */
    grpc_completion_queue_destroy(c->cq);
    free(c);
}

/* Runs one batch and waits for it on the call's own queue. */
static bool run_batch(server_call *c, const grpc_op *ops, size_t n)
{
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, c, NULL);
    if (e != GRPC_CALL_OK)
        return false;
    grpc_event ev = grpc_completion_queue_pluck(c->cq, c, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

/* Slices are not NUL-terminated, so no strndup (which may look past n). */
static char *slice_strdup(grpc_slice s)
{
    size_t n = GRPC_SLICE_LENGTH(s);
    char *out = mv_xmalloc(n + 1);
    memcpy(out, GRPC_SLICE_START_PTR(s), n);
    out[n] = '\0';
    return out;
}

static void serve_call(server_call *c)
{
    grpc_byte_buffer *request = NULL;
    grpc_op ops[3];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_RECV_MESSAGE;
    ops[1].data.recv_message.recv_message = &request;
    if (!run_batch(c, ops, 2))
        return; /* the client went away */

    _cleanup_free_ char *method = slice_strdup(c->details.method);
    csi_call call = {.plugin = c->plugin};
    gpr_timespec deadline = gpr_convert_clock_type(c->details.deadline, GPR_CLOCK_MONOTONIC);
    if (gpr_time_cmp(deadline, gpr_inf_future(GPR_CLOCK_MONOTONIC)) != 0) {
        gpr_timespec left = gpr_time_sub(deadline, gpr_now(GPR_CLOCK_MONOTONIC));
        int64_t left_ns = (int64_t)left.tv_sec * 1000000000 + left.tv_nsec;
        call.deadline_ns = csi_now_ns() + (left_ns > 0 ? left_ns : 0);
        if (call.deadline_ns == 0)
            call.deadline_ns = 1;
    }

    csi_status st = {.code = CSI_OK};
    csi_reply reply = {0};
    if (!request) {
        csi_status_set(&st, CSI_INVALID_ARGUMENT, "%s: no request message", method);
    } else {
        grpc_byte_buffer_reader reader;
        if (!grpc_byte_buffer_reader_init(&reader, request)) {
            csi_status_set(&st, CSI_INVALID_ARGUMENT, "%s: unreadable request", method);
        } else {
            grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
            grpc_byte_buffer_reader_destroy(&reader);
            csi_dispatch(&call, method, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all), &reply,
                         &st);
            grpc_slice_unref(all);
        }
        grpc_byte_buffer_destroy(request);
    }
    if (st.code != CSI_OK && !st.logged)
        mv_log(st.code == CSI_INTERNAL ? "error" : "warn", "call_failed", "method", method, "code",
               csi_code_name(st.code), "error", st.msg);

    grpc_byte_buffer *response = NULL;
    grpc_slice details = grpc_slice_from_copied_string(st.code == CSI_OK ? "" : st.msg);
    int cancelled = 0;
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    if (st.code == CSI_OK) {
        grpc_slice body = grpc_slice_from_copied_buffer((const char *)reply.buf, reply.len);
        response = grpc_raw_byte_buffer_create(&body, 1);
        grpc_slice_unref(body);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = response;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)st.code;
    ops[n++].data.send_status_from_server.status_details = &details;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &cancelled;
    run_batch(c, ops, n);
    if (response)
        grpc_byte_buffer_destroy(response);
    grpc_slice_unref(details);
    csi_reply_clear(&reply);
}

static void *call_thread(void *arg)
{
    server_call *c = arg;
    csi_plugin *p = c->plugin;
    serve_call(c);
    server_call_free(c);
    pthread_mutex_lock(&p->calls.lock);
    p->calls.running--;
    pthread_cond_broadcast(&p->calls.cond);
    pthread_mutex_unlock(&p->calls.lock);
    return NULL;
}

/* Bounds the threads: the accept loop waits while MAX_CALLS run. */
static void wait_call_slot(csi_plugin *p)
{
    pthread_mutex_lock(&p->calls.lock);
    while (p->calls.running >= MAX_CALLS)
        pthread_cond_wait(&p->calls.cond, &p->calls.lock);
    pthread_mutex_unlock(&p->calls.lock);
}

static bool start_call_thread(server_call *c)
{
    csi_plugin *p = c->plugin;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, CSI_CALL_STACK);
    pthread_mutex_lock(&p->calls.lock);
    p->calls.running++;
    pthread_mutex_unlock(&p->calls.lock);
    pthread_t t;
    int r = pthread_create(&t, &attr, call_thread, c);
    pthread_attr_destroy(&attr);
    if (r != 0) {
        pthread_mutex_lock(&p->calls.lock);
        p->calls.running--;
        pthread_mutex_unlock(&p->calls.lock);
        return false;
    }
    return true;
}

/* Posts the next request_call, bound to a fresh per-call queue. */
static void post_request(grpc_server *server, grpc_completion_queue *cq, csi_plugin *p)
{
    server_call *c = server_call_new(p);
    if (grpc_server_request_call(server, &c->call, &c->details, &c->request_md, c->cq, cq, c) !=
        GRPC_CALL_OK) {
        mv_log("error", "request_call_failed");
        server_call_free(c);
    }
}

/* ---- stopping ------------------------------------------------------------ */

typedef struct stopper {
    csi_plugin *plugin;
    grpc_server *server;
    grpc_completion_queue *cq;
    const sigset_t *signals;
    int shutdown_tag;
} stopper;

static void *stop_thread(void *arg)
{
    stopper *s = arg;
    csi_plugin *p = s->plugin;
    int sig = 0;
    while (sigwait(s->signals, &sig) != 0)
        ;
    mv_log("info", "stopping", "signal", sigabbrev_np(sig));
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
    /* Publishes waiting for pulls answer ABORTED once their pull stops;
     * give every call a moment to send its answer before cutting what is
     * left. */
    csi_jobs_shutdown(p, 30);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&p->calls.lock);
    while (p->calls.running > 0)
        if (pthread_cond_timedwait(&p->calls.cond, &p->calls.lock, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&p->calls.lock);
    grpc_server_cancel_all_calls(s->server);
    return NULL;
}

/* ---- the server --------------------------------------------------------- */

/* what: "endpoint" or "registration socket", for the messages. */
static int prepare_socket(const char *what, const char *endpoint, char **path_out, mv_error *err)
{
    if (strncmp(endpoint, UNIX_PREFIX, strlen(UNIX_PREFIX)) != 0)
        return mv_error_set(err, -EINVAL, "%s \"%s\" is not a unix socket (unix:///path/csi.sock)",
                            what, endpoint);
    const char *path = endpoint + strlen(UNIX_PREFIX);
    if (path[0] != '/')
        return mv_error_set(err, -EINVAL, "%s \"%s\": the socket path must be absolute", what,
                            endpoint);
    /* gRPC only says "no address added": name the real reason here. */
    _cleanup_free_ char *dir = mv_xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[slash == dir ? 1 : 0] = '\0';
    struct stat s;
    if (stat(dir, &s) < 0)
        return mv_error_errno(err, -errno, "%s %s: socket directory %s", what, endpoint, dir);
    if (lstat(path, &s) == 0) {
        if (!S_ISSOCK(s.st_mode))
            return mv_error_set(err, -EEXIST, "%s %s exists and is not a socket", what, path);
        /* Left by a previous run that was killed: ours to replace. */
        if (unlink(path) < 0)
            return mv_error_errno(err, -errno, "remove stale socket %s", path);
        mv_log("info", "stale_socket_removed", "path", path);
    }
    *path_out = mv_xstrdup(path);
    return 0;
}

static bool add_port(grpc_server *server, const char *uri)
{
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(server, uri, creds);
    grpc_server_credentials_release(creds);
    return port != 0;
}

static void remove_socket(const char *path)
{
    if (path && unlink(path) < 0 && errno != ENOENT)
        mv_log("warn", "socket_remove_failed", "path", path, "error", strerror(errno));
}

int csi_server_run(csi_plugin *p, const char *endpoint, const sigset_t *stop_signals, mv_error *err)
{
    _cleanup_free_ char *sock_path = NULL, *reg_uri = NULL, *reg_path = NULL;
    int r = prepare_socket("endpoint", endpoint, &sock_path, err);
    if (r < 0)
        return r;
    if (p->reg.socket) {
        /* The kubelet's Registration goes on a second port of this server:
         * one process, one set of call threads, no sidecar. */
        reg_uri = mv_xasprintf("unix://%s", p->reg.socket);
        r = prepare_socket("registration socket", reg_uri, &reg_path, err);
        if (r < 0)
            return r;
    }

    grpc_init();
    grpc_arg args[] = {
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = CSI_MAX_REQUEST_BYTES},
    };
    grpc_channel_args chargs = {.num_args = 1, .args = args};
    grpc_server *server = grpc_server_create(&chargs, NULL);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(server, cq, NULL);
    /* The CSI socket first: by the time the kubelet sees the registration
     * socket appear, the endpoint it will dial exists. */
    const char *failed = !add_port(server, endpoint)             ? endpoint
                         : reg_uri && !add_port(server, reg_uri) ? reg_uri
                                                                 : NULL;
    if (failed) {
        grpc_server_destroy(server);
        grpc_completion_queue_shutdown(cq);
        while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(cq);
        grpc_shutdown();
        remove_socket(failed == reg_uri ? sock_path : NULL);
        return mv_error_set(err, -EADDRNOTAVAIL, "listen on %s failed", failed);
    }
    grpc_server_start(server);
    mv_log("info", "listening", "endpoint", endpoint, "node_id", p->node_id);
    if (reg_path)
        mv_log("info", "registration_listening", "socket", reg_path, "kubelet_endpoint",
               p->reg.endpoint);

    stopper s = {.plugin = p, .server = server, .cq = cq, .signals = stop_signals};
    pthread_t stop_tid;
    bool have_stopper = pthread_create(&stop_tid, NULL, stop_thread, &s) == 0;
    if (!have_stopper) {
        r = mv_error_set(err, -EAGAIN, "start the signal thread");
        grpc_server_shutdown_and_notify(server, cq, &s.shutdown_tag);
    }

    /* One outstanding request_call; every arrival gets a thread and a new
     * request is posted before the next wait. */
    post_request(server, cq, p);
    bool stopping = false;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        if (ev.tag == &s.shutdown_tag) {
            stopping = true;
            grpc_completion_queue_shutdown(cq);
            continue;
        }
        server_call *c = ev.tag;
        if (!ev.success || stopping) {
            server_call_free(c); /* the request posted before shutdown */
            continue;
        }
        wait_call_slot(p);
        if (!start_call_thread(c)) {
            mv_log("error", "call_thread_failed", "error", "pthread_create failed");
            server_call_free(c);
        }
        post_request(server, cq, p);
    }

    /* The shutdown tag came after the stopper cancelled every call. */
    if (have_stopper)
        pthread_join(stop_tid, NULL);

    /* Every call thread answers (or sees its call cancelled) and ends. */
    pthread_mutex_lock(&p->calls.lock);
    while (p->calls.running > 0)
        pthread_cond_wait(&p->calls.cond, &p->calls.lock);
    pthread_mutex_unlock(&p->calls.lock);

    grpc_server_destroy(server);
    grpc_completion_queue_destroy(cq);
    grpc_shutdown();
    /* The registration socket first: its removal is how the kubelet learns
     * that the driver is gone. */
    remove_socket(reg_path);
    remove_socket(sock_path);
    mv_log("info", "stopped", "endpoint", endpoint);
    return r;
}
