/* manifest.c — the API ping, and fetching manifests and small blobs
 * (configs) into memory,
 * verified: a manifest against the digest asked for or Docker-Content-Digest,
 * a blob against its descriptor. Transient failures are retried with
 * backoff; bodies are size-limited while they are read. */
#include "puller-internal.h"

#include <sys/mman.h>

#include <string.h>

static bool transient_status(long s)
{
    return s >= 500 || s == 429 || s == 408;
}

static void emit_retry(pull_client *c, const char *digest, const char *msg)
{
    c->stats.retries++;
    if (c->opt.on_event) {
        pull_event ev = {.kind = PULL_EV_RETRY, .digest = digest, .message = msg};
        c->opt.on_event(c->opt.event_ctx, &ev);
    }
}

/* GET with retries for transport errors, 5xx and 429. */
static int get_retrying(pull_client *c, const pull_http_req *req, const char *what,
                        pull_http_resp *resp, mv_error *err)
{
    for (int attempt = 0;; attempt++) {
        int rc = pull_http_do(c, req, resp, err);
        bool transient;
        long min_wait = 0;
        if (rc < 0)
            transient = rc == -EIO || rc == -ETIMEDOUT || rc == -ECONNREFUSED;
        else
            transient = transient_status(resp->status);
        if (!transient || attempt >= c->opt.max_retries) {
            if (rc < 0) {
                pull_http_resp_clear(resp);
                return mv_error_wrap(err, "%s", what);
            }
            return 0;
        }
        char msg[MV_ERROR_MSG_MAX + 64];
        if (rc < 0) {
            snprintf(msg, sizeof(msg), "%s: %s", what, err ? err->msg : "transport error");
        } else {
            snprintf(msg, sizeof(msg), "%s: %ld from %s", what, resp->status, resp->host);
            min_wait = pull_retry_after(resp->retry_after);
        }
        emit_retry(c, NULL, msg);
        pull_http_resp_clear(resp);
        pull_backoff_sleep(c, attempt, min_wait);
        if (c->opt.cancel && *c->opt.cancel)
            return mv_error_set(err, -ECANCELED, "%s: cancelled", what);
    }
}

int pull_ping(pull_client *c, mv_error *err)
{
    _cleanup_free_ char *what = mv_xasprintf("ping %s", c->ref_api_host);
    pull_http_req req = {.method = "GET", .path = "/v2/"};
    pull_http_resp resp;
    int rc = get_retrying(c, &req, what, &resp, err);
    if (rc < 0)
        return rc;
    if (resp.status != 200) {
        rc = pull_http_status_error(&resp, err, what);
        if (resp.status == 404)
            mv_error_wrap(err, "not an OCI registry");
    }
    pull_http_resp_clear(&resp);
    return rc;
}

/* One attempt, from the mirrors then the origin or from the origin only.
 * *mirror tells whether a mirror gave the answer. */
static int fetch_manifest(pull_client *c, const char *tag_or_digest, bool use_mirrors, void **buf,
                          size_t *len, char **content_type, char digest_out[OCI_DIGEST_MAX],
                          bool *mirror, mv_error *err)
{
    *mirror = false;
    *buf = NULL;
    *len = 0;
    *content_type = NULL;
    bool by_digest = strchr(tag_or_digest, ':') != NULL;
    oci_digest_alg alg = OCI_DIGEST_SHA256;
    if (by_digest) {
        int rc = oci_digest_alg_of(tag_or_digest, &alg, err);
        if (rc < 0)
            return mv_error_wrap(err, "manifest %s:%s", c->refname, tag_or_digest);
    }
    _cleanup_free_ char *what =
        mv_xasprintf("manifest %s%s%s", c->refname, by_digest ? "@" : ":", tag_or_digest);
    _cleanup_free_ char *path = mv_xasprintf("manifests/%s", tag_or_digest);
    _cleanup_free_ char *accept = mv_xasprintf("Accept: %s", oci_manifest_accept());
    const char *hdrs[] = {accept, NULL};
    pull_http_req req = {
        .method = "GET",
        .path = path,
        .headers = hdrs,
        .use_mirrors = use_mirrors,
        .follow = true,
        .body_max = (size_t)OCI_MANIFEST_MAX_BYTES,
        .body_exact = true,
    };
    pull_http_resp resp;
    int rc = get_retrying(c, &req, what, &resp, err);
    if (rc < 0)
        return rc;
    if (resp.status != 200) {
        rc = pull_http_status_error(&resp, err, what);
        pull_http_resp_clear(&resp);
        return rc;
    }
    *mirror = c->ep[resp.endpoint].is_mirror;
    char got[OCI_DIGEST_MAX];
    const char *want = by_digest ? tag_or_digest : NULL;
    if (!want && resp.docker_content_digest) {
        if (oci_digest_validate(resp.docker_content_digest, NULL) < 0 ||
            oci_digest_alg_of(resp.docker_content_digest, &alg, NULL) < 0) {
            rc = mv_error_set(err, -EBADMSG, "%s: invalid Docker-Content-Digest from %s", what,
                              resp.host);
            pull_http_resp_clear(&resp);
            return rc;
        }
        want = resp.docker_content_digest;
    }
    oci_digest_buf(alg, resp.body ? resp.body : "", resp.body_len, got);
    if (want && strcmp(got, want) != 0) {
        rc = mv_error_set(err, -EBADMSG, "%s: digest mismatch from %s: got %s, want %s", what,
                          resp.host, got, want);
        pull_http_resp_clear(&resp);
        return rc;
    }
    if (resp.content_type) {
        size_t n = strcspn(resp.content_type, ";");
        while (n && resp.content_type[n - 1] == ' ')
            n--;
        *content_type = mv_xstrndup(resp.content_type, n);
    }
    memcpy(digest_out, got, OCI_DIGEST_MAX);
    *len = resp.body_len;
    *buf = resp.body ? MV_STEAL(resp.body) : mv_xstrdup("");
    if (c->opt.on_event) {
        pull_event ev = {
            .kind = PULL_EV_MANIFEST, .digest = digest_out, .total = *len, .done = *len};
        c->opt.on_event(c->opt.event_ctx, &ev);
    }
    pull_http_resp_clear(&resp);
    return 0;
}

int pull_fetch_manifest(pull_client *c, const char *tag_or_digest, void **buf, size_t *len,
                        char **content_type, char digest_out[OCI_DIGEST_MAX], mv_error *err)
{
    bool mirror;
    int rc =
        fetch_manifest(c, tag_or_digest, true, buf, len, content_type, digest_out, &mirror, err);
    if (rc != -EBADMSG || !mirror)
        return rc;
    /* A mirror handed out bytes that do not verify: ask the origin. */
    emit_retry(c, NULL, err ? err->msg : "manifest from a mirror does not verify");
    return fetch_manifest(c, tag_or_digest, false, buf, len, content_type, digest_out, &mirror,
                          err);
}

/* With the node's budget, a small blob goes through pull_blobs, so its
 * connection (to blob storage, after the registry's redirect) is one the
 * budget counts and waits for like any other. */
static int fetch_budgeted(pull_client *c, const oci_descriptor *d, const char *what, void **buf,
                          size_t *len, mv_error *err)
{
    _cleanup_close_ int fd = memfd_create("modelvol-small-blob", MFD_CLOEXEC);
    if (fd < 0)
        return mv_error_errno(err, -errno, "%s: memfd_create", what);
    pull_blob_job job = {.desc = d, .fd = fd};
    int rc = pull_blobs(c, &job, 1, err);
    if (rc < 0)
        return rc;
    size_t n = (size_t)d->size;
    _cleanup_free_ char *b = mv_xmalloc(n + 1);
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, b + got, n - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return mv_error_errno(err, r < 0 ? -errno : -EIO, "%s: reading it back", what);
        got += (size_t)r;
    }
    b[n] = '\0';
    *len = n;
    *buf = MV_STEAL(b);
    return 0;
}

int pull_fetch_small_blob(pull_client *c, const oci_descriptor *d, void **buf, size_t *len,
                          mv_error *err)
{
    *buf = NULL;
    *len = 0;
    _cleanup_free_ char *what = mv_xasprintf("blob %s", d->digest);
    oci_digest_alg alg;
    int rc = oci_digest_alg_of(d->digest, &alg, err);
    if (rc < 0)
        return mv_error_wrap(err, "%s", what);
    if (d->size > (int64_t)OCI_MANIFEST_MAX_BYTES)
        return mv_error_set(err, -EFBIG, "%s: %llu bytes is too large to read into memory", what,
                            (unsigned long long)d->size);
    if (d->size < 0)
        return mv_error_set(err, -EINVAL, "%s: negative size", what);
    if (c->tenant)
        return fetch_budgeted(c, d, what, buf, len, err);
    _cleanup_free_ char *path = mv_xasprintf("blobs/%s", d->digest);
    pull_http_req req = {
        .method = "GET",
        .path = path,
        .use_mirrors = true,
        .follow = true,
        .body_max = d->size ? (size_t)d->size : 1,
        .body_exact = true,
    };
    pull_http_resp resp;
    rc = get_retrying(c, &req, what, &resp, err);
    if (rc < 0)
        return rc == -EBADMSG ? mv_error_wrap(err, "size %llu", (unsigned long long)d->size) : rc;
    if (resp.status != 200) {
        rc = pull_http_status_error(&resp, err, what);
        pull_http_resp_clear(&resp);
        return rc;
    }
    char got[OCI_DIGEST_MAX];
    oci_digest_buf(alg, resp.body ? resp.body : "", resp.body_len, got);
    if ((int64_t)resp.body_len != d->size || strcmp(got, d->digest) != 0) {
        rc = mv_error_set(err, -EBADMSG, "%s: digest mismatch from %s: got %s (%zu bytes)", what,
                          resp.host, got, resp.body_len);
        pull_http_resp_clear(&resp);
        return rc;
    }
    *len = resp.body_len;
    *buf = resp.body ? MV_STEAL(resp.body) : mv_xstrdup("");
    if (c->ep[resp.endpoint].is_mirror)
        c->stats.bytes_mirror += *len;
    else
        c->stats.bytes_origin += *len;
    pull_http_resp_clear(&resp);
    return 0;
}
