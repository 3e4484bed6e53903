/* tags.c — the tag cache: which manifest a reference resolved to last
 * time, so an IfNotPresent (or Never) use of a cached tag needs no
 * registry round trip. One small JSON record per reference in tags/. */
#include "cache-internal.h"

#include <cJSON.h>
#include <string.h>
#include <time.h>

static void tag_name(const char *reference, char out[65])
{
    cache_hash_hex(reference, strlen(reference), out);
}

int cache_tag_get(cache *c, const char *reference, char manifest_digest[OCI_DIGEST_MAX],
                  char resolved_digest[OCI_DIGEST_MAX], mv_error *err)
{
    char name[65];
    tag_name(reference, name);
    _cleanup_free_ char *path = mv_xasprintf(CACHE_D_TAGS "/%s", name);
    _cleanup_free_ char *buf = NULL;
    mv_error sub = MV_ERROR_INIT;
    int r = mv_read_file_at(c->root_fd, path, (size_t)64 * 1024, &buf, NULL, &sub);
    if (r == -ENOENT)
        return mv_error_set(err, -ENOENT, "reference %s is not in the tag cache", reference);
    if (r < 0) {
        mv_error_copy(err, &sub);
        return r;
    }
    cJSON *j = cJSON_Parse(buf);
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(j, "reference");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "manifest");
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(j, "resolved");
    r = 0;
    if (!cJSON_IsString(ref) || strcmp(ref->valuestring, reference) != 0 || !cJSON_IsString(m) ||
        oci_digest_validate(m->valuestring, NULL) < 0)
        r = mv_error_set(err, -ENOENT, "reference %s: tag cache record %s/%s is unreadable",
                         reference, c->root, path);
    if (r == 0) {
        snprintf(manifest_digest, OCI_DIGEST_MAX, "%s", m->valuestring);
        if (resolved_digest)
            snprintf(resolved_digest, OCI_DIGEST_MAX, "%s",
                     cJSON_IsString(res) ? res->valuestring : m->valuestring);
    }
    cJSON_Delete(j);
    return r;
}

int cache_tag_put(cache *c, const char *reference, const char *manifest_digest,
                  const char *resolved_digest, mv_error *err)
{
    char name[65];
    tag_name(reference, name);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "reference", reference);
    cJSON_AddStringToObject(j, "manifest", manifest_digest);
    cJSON_AddStringToObject(j, "resolved", resolved_digest ? resolved_digest : manifest_digest);
    cJSON_AddNumberToObject(j, "time", (double)time(NULL));
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s)
        return mv_error_set(err, -ENOMEM, "encode tag record");
    int r = cache_put_record(c, CACHE_D_TAGS, name, s, true, err);
    free(s);
    return r;
}

int cache_tag_remove(cache *c, const char *reference, mv_error *err)
{
    char name[65];
    tag_name(reference, name);
    _cleanup_free_ char *path = mv_xasprintf(CACHE_D_TAGS "/%s", name);
    if (unlinkat(c->root_fd, path, 0) < 0 && errno != ENOENT)
        return mv_error_errno(err, -errno, "remove %s/%s", c->root, path);
    return 0;
}
