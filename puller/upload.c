/* upload.c — the push side of the registry client: blob existence (HEAD),
 * cross-repository mount, blob upload (monolithic, or chunked with PATCH and
 * Content-Range, resumable through a record of the upload session) and
 * manifest PUT. Everything goes through pull_http_do with the push scope.
 *
 * Resume: the record holds the URL of the upload session as of the last
 * chunk the registry acknowledged, never a credential. On resume, and after
 * a transport failure mid-chunk, the session is asked where it stands
 * (GET -> Range) and the upload continues from there. A session the
 * registry no longer knows means starting the blob over. docker
 * distribution signs the offset into each session URL and drops a session
 * whose stored bytes disagree with it, which is what a PATCH cut off
 * mid-body leaves behind: against it, only an upload stopped between
 * chunks resumes; one killed mid-chunk starts over (correctly, just not
 * faster). */
#include "puller-internal.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#define PUSH_ACTIONS         "pull,push"
#define UPLOAD_DEFAULT_CHUNK (64ull << 20)
#define RESUME_RECORD_MAX    (16u << 10)

static void emit(pull_client *c, pull_event_kind kind, const char *digest, uint64_t done,
                 uint64_t total, const char *msg)
{
    if (!c->opt.on_event)
        return;
    pull_event ev = {.kind = kind, .digest = digest, .done = done, .total = total, .message = msg};
    c->opt.on_event(c->opt.event_ctx, &ev);
}

static bool transient_status(long s)
{
    return s >= 500 || s == 429 || s == 408;
}

/* Connection refused or an unknown host is the user's mistake, not weather. */
static bool transient_code(int r)
{
    return r == -ETIMEDOUT || r == -EIO || r == -ECONNRESET;
}

/* pull_http_do, repeating transport failures and 5xx/429 answers with
 * backoff (Retry-After honoured) up to the client's retry budget. Only for
 * requests that are safe to repeat as they are. */
static int http_retry(pull_client *c, const pull_http_req *req, pull_http_resp *resp,
                      const char *digest, mv_error *err)
{
    for (int attempt = 0;; attempt++) {
        mv_error e = MV_ERROR_INIT;
        int r = pull_http_do(c, req, resp, &e);
        bool again = r < 0 ? transient_code(r) : transient_status(resp->status);
        if (!again || attempt >= c->opt.max_retries) {
            if (r < 0)
                mv_error_copy(err, &e);
            return r;
        }
        char msg[MV_ERROR_MSG_MAX + 64];
        if (r < 0)
            snprintf(msg, sizeof(msg), "%s %s: %s", req->method, digest, e.msg);
        else
            snprintf(msg, sizeof(msg), "%s %s: %ld from %s", req->method, digest, resp->status,
                     resp->host);
        emit(c, PULL_EV_RETRY, digest, 0, 0, msg);
        c->stats.retries++;
        long after = r == 0 ? pull_retry_after(resp->retry_after) : -1;
        pull_http_resp_clear(resp);
        pull_backoff_sleep(c, attempt, after);
    }
}

int pull_blob_exists(pull_client *c, const char *digest, bool *exists, mv_error *err)
{
    *exists = false;
    _cleanup_free_ char *path = mv_xasprintf("blobs/%s", digest);
    pull_http_req req = {.method = "HEAD", .path = path, .actions = PUSH_ACTIONS, .follow = true};
    _cleanup_http_resp_ pull_http_resp resp = {0};
    int r = http_retry(c, &req, &resp, digest, err);
    if (r < 0)
        return mv_error_wrap(err, "blob %s", digest);
    if (resp.status == 200) {
        *exists = true;
        return 0;
    }
    if (resp.status == 404)
        return 0;
    _cleanup_free_ char *what = mv_xasprintf("HEAD blob %s", digest);
    return pull_http_status_error(&resp, err, what);
}

/* DELETE an upload session we will not use; failures do not matter, the
 * registry expires sessions itself. */
static void cancel_session(pull_client *c, const char *location)
{
    pull_http_req req = {.method = "DELETE", .path = location, .actions = PUSH_ACTIONS};
    pull_http_resp resp = {0};
    (void)pull_http_do(c, &req, &resp, NULL);
    pull_http_resp_clear(&resp);
}

int pull_blob_mount(pull_client *c, const char *digest, const char *from_repo, bool *mounted,
                    mv_error *err)
{
    *mounted = false;
    _cleanup_free_ char *path = mv_xasprintf("blobs/uploads/?mount=%s&from=%s", digest, from_repo);
    /* The token must also let us read the source, or a registry answers
     * with a plain upload session (202) and the blob is sent after all. */
    _cleanup_free_ char *from_scope = mv_xasprintf("repository:%s:pull", from_repo);
    pull_http_req req = {
        .method = "POST", .path = path, .actions = PUSH_ACTIONS, .extra_scope = from_scope};
    _cleanup_http_resp_ pull_http_resp resp = {0};
    int r = http_retry(c, &req, &resp, digest, err);
    if (r < 0)
        return mv_error_wrap(err, "mount blob %s from %s", digest, from_repo);
    if (resp.status == 201) {
        *mounted = true;
        return 0;
    }
    if (resp.status == 202) {
        if (resp.location)
            cancel_session(c, resp.location);
        return 0;
    }
    _cleanup_free_ char *what = mv_xasprintf("mount blob %s from %s", digest, from_repo);
    return pull_http_status_error(&resp, err, what);
}

/* ------------------------------------------------------------------------ */
/* Resume record                                                            */
/* ------------------------------------------------------------------------ */

char *pull_upload_record_load(const char *path, const char *digest, uint64_t size)
{
    if (!path)
        return NULL;
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char buf[RESUME_RECORD_MAX];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    cJSON *o = cJSON_Parse(buf);
    char *loc = NULL;
    cJSON *d = cJSON_GetObjectItemCaseSensitive(o, "digest");
    cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "size");
    cJSON *l = cJSON_GetObjectItemCaseSensitive(o, "location");
    if (cJSON_IsString(d) && strcmp(d->valuestring, digest) == 0 && cJSON_IsNumber(s) &&
        (uint64_t)s->valuedouble == size && cJSON_IsString(l) &&
        (strncmp(l->valuestring, "http://", 7) == 0 || strncmp(l->valuestring, "https://", 8) == 0))
        loc = mv_xstrdup(l->valuestring);
    cJSON_Delete(o);
    return loc;
}

/* Atomic replace, synced, mode 0600. A record that cannot be written costs
 * only the ability to resume, so failures are not errors. */
void pull_upload_record_save(const char *path, const char *digest, uint64_t size,
                             const char *location)
{
    if (!path)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "digest", digest);
    cJSON_AddNumberToObject(o, "size", (double)size);
    cJSON_AddStringToObject(o, "location", location);
    _cleanup_free_ char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (s)
        (void)mv_write_atomic(path, s, strlen(s), 0600, MV_WRITE_SYNC_DATA, NULL);
}

void pull_upload_record_remove(const char *path)
{
    if (path)
        unlink(path);
}

/* ------------------------------------------------------------------------ */
/* Upload                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct session {
    char *cur; /* the URL to send the next request to */
} session;

static void session_clear(session *s)
{
    free(s->cur);
    s->cur = NULL;
}

static int session_open(pull_client *c, const char *digest, session *s, mv_error *err)
{
    session_clear(s);
    pull_http_req req = {.method = "POST", .path = "blobs/uploads/", .actions = PUSH_ACTIONS};
    _cleanup_http_resp_ pull_http_resp resp = {0};
    int r = http_retry(c, &req, &resp, digest, err);
    if (r < 0)
        return mv_error_wrap(err, "open upload of blob %s", digest);
    if (resp.status != 202 || !resp.location) {
        _cleanup_free_ char *what = mv_xasprintf("open upload of blob %s", digest);
        if (resp.status == 202)
            return mv_error_set(err, -EBADMSG, "%s: 202 without a Location from %s", what,
                                resp.host);
        return pull_http_status_error(&resp, err, what);
    }
    s->cur = mv_xstrdup(resp.location);
    return 0;
}

/* "0-1234" (some registries send "bytes=0-1234"): bytes received = 1235. */
bool pull_upload_range_end(const char *v, uint64_t *received)
{
    if (!v)
        return false;
    if (strncmp(v, "bytes=", 6) == 0)
        v += 6;
    if (*v < '0' || *v > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long a = strtoull(v, &end, 10);
    if (errno || *end != '-' || a != 0)
        return false;
    const char *digits = end + 1;
    if (*digits < '0' || *digits > '9')
        return false;
    unsigned long long b = strtoull(digits, &end, 10);
    if (errno || (*end && *end != '\r' && *end != ' '))
        return false;
    *received = b + 1;
    return true;
}

/* Asks the session how many bytes it holds. -ENOENT when it is gone. */
static int session_status(pull_client *c, session *s, uint64_t size, uint64_t *offset,
                          mv_error *err)
{
    pull_http_req req = {.method = "GET", .path = s->cur, .actions = PUSH_ACTIONS};
    _cleanup_http_resp_ pull_http_resp resp = {0};
    int r = pull_http_do(c, &req, &resp, err);
    if (r < 0)
        return r;
    if (resp.status == 404 || resp.status == 400 || resp.status == 410)
        return mv_error_set(err, -ENOENT, "upload session gone (%ld)", resp.status);
    if (resp.status != 204 && resp.status != 202 && resp.status != 200)
        return pull_http_status_error(&resp, err, "upload status");
    uint64_t got = 0;
    if (resp.range && !pull_upload_range_end(resp.range, &got))
        return mv_error_set(err, -EBADMSG, "upload status: Range \"%s\" from %s", resp.range,
                            resp.host);
    if (got > size)
        return mv_error_set(err, -EBADMSG, "upload status: %llu bytes of a %llu-byte blob",
                            (unsigned long long)got, (unsigned long long)size);
    *offset = got;
    if (resp.location) {
        free(s->cur);
        s->cur = mv_xstrdup(resp.location);
    }
    return 0;
}

char *pull_upload_with_digest(const char *url, const char *digest)
{
    return mv_xasprintf("%s%cdigest=%s", url, strchr(url, '?') ? '&' : '?', digest);
}

/* The final PUT: with the remaining body [off, size) (monolithic: all). */
static int session_close(pull_client *c, session *s, int fd, uint64_t off, uint64_t size,
                         const char *digest, bool *transient, mv_error *err)
{
    *transient = false;
    if (!s->cur)
        return mv_error_set(err, -EINVAL, "upload blob %s: no upload session", digest);
    _cleanup_free_ char *url = pull_upload_with_digest(s->cur, digest);
    pull_http_req req = {.method = "PUT",
                         .path = url,
                         .actions = PUSH_ACTIONS,
                         .body = off < size ? PULL_BODY_FD : PULL_BODY_NONE,
                         .fd = fd,
                         .fd_off = off,
                         .fd_len = size - off,
                         .content_type = "application/octet-stream"};
    _cleanup_http_resp_ pull_http_resp resp = {0};
    int r = pull_http_do(c, &req, &resp, err);
    if (r < 0) {
        *transient = transient_code(r);
        return mv_error_wrap(err, "upload blob %s", digest);
    }
    if (resp.status != 201 && resp.status != 204 && resp.status != 200) {
        *transient = transient_status(resp.status);
        _cleanup_free_ char *what = mv_xasprintf("upload blob %s", digest);
        return pull_http_status_error(&resp, err, what);
    }
    if (resp.docker_content_digest && strcmp(resp.docker_content_digest, digest) != 0)
        return mv_error_set(err, -EBADMSG, "upload blob %s: registry %s stored it as %s", digest,
                            resp.host, resp.docker_content_digest);
    return 0;
}

/* POST + one PUT with the whole body. A PUT cut short leaves a session
 * holding part of the blob, which cannot be completed by repeating it: a
 * transient failure starts the blob over in a new session. */
static int upload_monolithic(pull_client *c, int fd, const char *digest, uint64_t size,
                             mv_error *err)
{
    for (int attempt = 0;; attempt++) {
        session s = {0};
        bool transient = false;
        int r = session_open(c, digest, &s, err);
        if (r == 0) {
            emit(c, PULL_EV_BLOB_START, digest, 0, size, NULL);
            r = session_close(c, &s, fd, 0, size, digest, &transient, err);
        }
        session_clear(&s);
        if (r == 0) {
            emit(c, PULL_EV_BLOB_DONE, digest, size, size, NULL);
            return 0;
        }
        if (!transient || attempt >= c->opt.max_retries)
            return r;
        emit(c, PULL_EV_RETRY, digest, 0, size, err ? err->msg : "upload failed");
        c->stats.retries++;
        pull_backoff_sleep(c, attempt, -1);
    }
}

/* The closing PUT of a chunked upload carries no body, so it can simply be
 * repeated; if an earlier attempt did land, the session is gone and the
 * blob is there. */
static int close_chunked(pull_client *c, session *s, int fd, uint64_t size, const char *digest,
                         mv_error *err)
{
    for (int attempt = 0;; attempt++) {
        bool transient = false;
        int r = session_close(c, s, fd, size, size, digest, &transient, err);
        if (r == 0)
            return 0;
        if (attempt > 0 && err && err->http_status == 404) {
            bool exists = false;
            if (pull_blob_exists(c, digest, &exists, NULL) == 0 && exists) {
                mv_error_clear(err);
                return 0;
            }
        }
        if (!transient || attempt >= c->opt.max_retries)
            return r;
        emit(c, PULL_EV_RETRY, digest, size, size, err ? err->msg : "closing PUT failed");
        c->stats.retries++;
        pull_backoff_sleep(c, attempt, -1);
    }
}

typedef enum { PATCH_OK, PATCH_REFUSED, PATCH_RETRY } patch_outcome;

/* One chunk [off, off+len). On 202 *off moves to what the registry
 * acknowledges. */
static int send_chunk(pull_client *c, session *s, int fd, uint64_t *off, uint64_t len,
                      uint64_t size, const char *digest, patch_outcome *out, mv_error *err)
{
    char cr[96];
    snprintf(cr, sizeof(cr), "Content-Range: %llu-%llu", (unsigned long long)*off,
             (unsigned long long)(*off + len - 1));
    const char *hdrs[] = {cr, NULL};
    pull_http_req req = {.method = "PATCH",
                         .path = s->cur,
                         .headers = hdrs,
                         .actions = PUSH_ACTIONS,
                         .body = PULL_BODY_FD,
                         .fd = fd,
                         .fd_off = *off,
                         .fd_len = len,
                         .content_type = "application/octet-stream"};
    _cleanup_http_resp_ pull_http_resp resp = {0};
    int r = pull_http_do(c, &req, &resp, err);
    if (r < 0) {
        if (r == -ECANCELED || r == -EACCES)
            return r;
        *out = PATCH_RETRY; /* transport: ask the session, then go on */
        return 0;
    }
    if (resp.status == 202 || resp.status == 204) {
        uint64_t got = *off + len;
        if (resp.range && !pull_upload_range_end(resp.range, &got))
            return mv_error_set(err, -EBADMSG, "upload blob %s: Range \"%s\" from %s", digest,
                                resp.range, resp.host);
        if (got > size || got <= *off)
            return mv_error_set(err, -EBADMSG,
                                "upload blob %s: registry %s acknowledged %llu bytes after "
                                "sending up to %llu",
                                digest, resp.host, (unsigned long long)got,
                                (unsigned long long)*off + len);
        *off = got;
        if (resp.location) {
            free(s->cur);
            s->cur = mv_xstrdup(resp.location);
        }
        *out = PATCH_OK;
        return 0;
    }
    if (resp.status == 416 || resp.status >= 500 || resp.status == 429) {
        *out = PATCH_RETRY;
        return 0;
    }
    if (resp.status == 405 || resp.status == 400 || resp.status == 501 || resp.status == 404 ||
        resp.status == 411 || resp.status == 413) {
        /* The message is kept for the caller; refusal itself is not yet a
         * failure (the caller may fall back to a monolithic upload). */
        _cleanup_free_ char *what = mv_xasprintf("chunked upload of blob %s", digest);
        (void)pull_http_status_error(&resp, err, what);
        *out = PATCH_REFUSED;
        return 0;
    }
    _cleanup_free_ char *what = mv_xasprintf("upload blob %s", digest);
    return pull_http_status_error(&resp, err, what);
}

static int upload_chunked(pull_client *c, int fd, const char *digest, uint64_t size, uint64_t chunk,
                          const char *record, bool *refused, mv_error *err)
{
    *refused = false;
    session s = {0};
    uint64_t off = 0;
    int r = 0;
    /* Resume a recorded session when the registry still has it. */
    s.cur = pull_upload_record_load(record, digest, size);
    if (s.cur) {
        mv_error e = MV_ERROR_INIT;
        if (session_status(c, &s, size, &off, &e) < 0) {
            char msg[MV_ERROR_MSG_MAX + 64];
            snprintf(msg, sizeof(msg), "blob %s: %s; starting over", digest, e.msg);
            emit(c, PULL_EV_RETRY, digest, 0, size, msg);
            pull_upload_record_remove(record);
            session_clear(&s);
            off = 0;
        }
    }
    if (!s.cur) {
        r = session_open(c, digest, &s, err);
        if (r < 0)
            return r;
        pull_upload_record_save(record, digest, size, s.cur);
    }
    emit(c, PULL_EV_BLOB_START, digest, off, size, NULL);
    int retries = 0, patches = 0;
    while (off < size && r == 0) {
        uint64_t len = size - off < chunk ? size - off : chunk;
        patch_outcome out = PATCH_OK;
        uint64_t before = off;
        r = send_chunk(c, &s, fd, &off, len, size, digest, &out, err);
        if (r < 0)
            break;
        /* A session that took chunks and now says 404 has expired: the
         * status query below confirms it and starts the blob over. */
        if (out == PATCH_REFUSED && patches > 0 && err && err->http_status == 404)
            out = PATCH_RETRY;
        if (out == PATCH_REFUSED) {
            if (patches == 0) {
                /* The registry does not take chunks: monolithic instead. */
                cancel_session(c, s.cur);
                pull_upload_record_remove(record);
                *refused = true;
                session_clear(&s);
                return 0;
            }
            r = err && err->code ? err->code : -EIO;
            break;
        }
        if (out == PATCH_RETRY) {
            if (++retries > c->opt.max_retries) {
                r = mv_error_set(err, -EIO, "upload blob %s: gave up at byte %llu after %d retries",
                                 digest, (unsigned long long)off, retries - 1);
                break;
            }
            emit(c, PULL_EV_RETRY, digest, off, size, "chunk failed; asking the upload session");
            pull_backoff_sleep(c, retries - 1, 0);
            mv_error e = MV_ERROR_INIT;
            int sr = session_status(c, &s, size, &off, &e);
            if (sr == -ENOENT) {
                /* Expired under us: start the blob over. */
                pull_upload_record_remove(record);
                r = session_open(c, digest, &s, err);
                if (r < 0)
                    break;
                pull_upload_record_save(record, digest, size, s.cur);
                off = 0;
                emit(c, PULL_EV_BLOB_START, digest, 0, size, NULL);
            } else if (sr < 0) {
                off = before; /* try the chunk again */
            }
            continue;
        }
        patches++;
        retries = 0;
        pull_upload_record_save(record, digest, size, s.cur);
        emit(c, PULL_EV_BLOB_PROGRESS, digest, off, size, NULL);
    }
    if (r == 0)
        r = close_chunked(c, &s, fd, size, digest, err);
    if (r == 0) {
        pull_upload_record_remove(record);
        emit(c, PULL_EV_BLOB_DONE, digest, size, size, NULL);
    } else if (r == -EBADMSG) {
        /* The registry holds bytes that do not hash right: never resume it. */
        pull_upload_record_remove(record);
    }
    session_clear(&s);
    return r;
}

int pull_blob_upload(pull_client *c, int fd, const char *digest, uint64_t size,
                     const pull_upload_opts *o, mv_error *err)
{
    int r = oci_digest_validate(digest, err);
    if (r < 0)
        return r;
    uint64_t chunk = o && o->chunk_size ? o->chunk_size : UPLOAD_DEFAULT_CHUNK;
    const char *record = o ? o->resume_path : NULL;
    if ((o && o->monolithic) || size <= chunk)
        return upload_monolithic(c, fd, digest, size, err);
    bool refused = false;
    r = upload_chunked(c, fd, digest, size, chunk, record, &refused, err);
    if (r == 0 && refused) {
        emit(c, PULL_EV_RETRY, digest, 0, size, "registry refuses chunks; uploading in one PUT");
        mv_error_clear(err);
        r = upload_monolithic(c, fd, digest, size, err);
    }
    return r;
}

int pull_manifest_put(pull_client *c, const char *tag_or_digest, const void *buf, size_t len,
                      const char *media_type, mv_error *err)
{
    _cleanup_free_ char *path = mv_xasprintf("manifests/%s", tag_or_digest);
    pull_http_req req = {.method = "PUT",
                         .path = path,
                         .actions = PUSH_ACTIONS,
                         .body = PULL_BODY_MEM,
                         .mem = buf,
                         .mem_len = len,
                         .content_type = media_type};
    _cleanup_http_resp_ pull_http_resp resp = {0};
    int r = http_retry(c, &req, &resp, tag_or_digest, err);
    if (r < 0)
        return mv_error_wrap(err, "PUT manifest %s/%s:%s", c->registry, c->repository,
                             tag_or_digest);
    if (resp.status != 201 && resp.status != 200 && resp.status != 204) {
        _cleanup_free_ char *what =
            mv_xasprintf("PUT manifest %s/%s:%s", c->registry, c->repository, tag_or_digest);
        return pull_http_status_error(&resp, err, what);
    }
    return 0;
}
