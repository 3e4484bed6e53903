/* manifest.c — OCI and Docker schema 2 manifests and indexes: parsing
 * untrusted JSON into oci_manifest with every field type-checked, and
 * emitting the canonical compact JSON modelpush uploads. */
#include "oci.h"

#include <cJSON.h>
#include <math.h>
#include <string.h>

/* 2^63 as a double: the first value that is not an int64. */
#define INT64_LIMIT_D 9223372036854775808.0

static void cjson_deletep(cJSON **j)
{
    cJSON_Delete(*j);
    *j = NULL;
}
#define _cleanup_json_ _cleanup_(cjson_deletep)

/* ---- freeing ------------------------------------------------------------- */

static void annotations_free(oci_annotation *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(a[i].key);
        free(a[i].value);
    }
    free(a);
}

static void descriptor_clear(oci_descriptor *d)
{
    free(d->media_type);
    free(d->digest);
    free(d->artifact_type);
    annotations_free(d->annotations, d->n_annotations);
    if (d->platform) {
        free(d->platform->architecture);
        free(d->platform->os);
        free(d->platform->variant);
        free(d->platform->os_version);
        free(d->platform);
    }
    for (size_t i = 0; i < d->n_urls; i++)
        free(d->urls[i]);
    free(d->urls);
    free(d->data);
    *d = (oci_descriptor){0};
}

static void descriptors_free(oci_descriptor *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        descriptor_clear(&d[i]);
    free(d);
}

void oci_manifest_free(oci_manifest *m)
{
    if (!m)
        return;
    free(m->media_type);
    free(m->artifact_type);
    descriptor_clear(&m->config);
    descriptors_free(m->layers, m->n_layers);
    descriptors_free(m->manifests, m->n_manifests);
    if (m->subject) {
        descriptor_clear(m->subject);
        free(m->subject);
    }
    annotations_free(m->annotations, m->n_annotations);
    free(m);
}

const char *oci_annotation_get(const oci_annotation *a, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].key && strcmp(a[i].key, key) == 0)
            return a[i].value;
    return NULL;
}

/* ---- parsing ------------------------------------------------------------ */

/* An optional string member: absent is fine, anything but a string is not.
 * Empty strings count as absent-but-wrong where a value is required. */
static int get_string(const cJSON *obj, const char *key, const char *where, bool required,
                      char **out, mv_error *err)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!j) {
        if (required)
            return mv_error_set(err, -EINVAL, "%s: %s is missing", where, key);
        return 0;
    }
    if (!cJSON_IsString(j) || !j->valuestring)
        return mv_error_set(err, -EINVAL, "%s: %s is not a string", where, key);
    if (required && !*j->valuestring)
        return mv_error_set(err, -EINVAL, "%s: %s is empty", where, key);
    *out = mv_xstrdup(j->valuestring);
    return 0;
}

static int cmp_key(const void *a, const void *b)
{
    const oci_annotation *x = *(const oci_annotation *const *)a;
    const oci_annotation *y = *(const oci_annotation *const *)b;
    return strcmp(x->key, y->key);
}

/* Duplicate keys make the document mean different things to different
 * parsers; refuse rather than pick one. Sorted, so a hostile map of a
 * million keys costs n log n, not n^2. */
static int check_duplicate_keys(const oci_annotation *a, size_t n, const char *where, mv_error *err)
{
    if (n < 2)
        return 0;
    _cleanup_free_ const oci_annotation **sorted = mv_xcalloc(n, sizeof(const oci_annotation *));
    for (size_t i = 0; i < n; i++)
        sorted[i] = &a[i];
    qsort(sorted, n, sizeof(const oci_annotation *), cmp_key);
    for (size_t i = 1; i < n; i++)
        if (strcmp(sorted[i - 1]->key, sorted[i]->key) == 0)
            return mv_error_set(err, -EINVAL, "%s: annotation \"%s\" appears twice", where,
                                MV_QUOTED(sorted[i]->key));
    return 0;
}

static int parse_annotations(const cJSON *obj, const char *where, oci_annotation **out, size_t *n,
                             mv_error *err)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, "annotations");
    if (!j || cJSON_IsNull(j))
        return 0;
    if (!cJSON_IsObject(j))
        return mv_error_set(err, -EINVAL, "%s: annotations is not an object", where);
    size_t count = (size_t)cJSON_GetArraySize(j);
    if (count == 0)
        return 0;
    oci_annotation *a = mv_xcalloc(count, sizeof(*a));
    size_t i = 0;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, j)
    {
        const char *key = kv->string ? kv->string : "";
        if (!cJSON_IsString(kv) || !kv->valuestring) {
            annotations_free(a, i);
            return mv_error_set(err, -EINVAL, "%s: annotation \"%s\" is not a string", where,
                                MV_QUOTED(key));
        }
        a[i].key = mv_xstrdup(key);
        a[i].value = mv_xstrdup(kv->valuestring);
        i++;
    }
    int r = check_duplicate_keys(a, i, where, err);
    if (r < 0) {
        annotations_free(a, i);
        return r;
    }
    *out = a;
    *n = i;
    return 0;
}

static int parse_size(const cJSON *obj, const char *where, int64_t *out, mv_error *err)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, "size");
    if (!j)
        return mv_error_set(err, -EINVAL, "%s: size is missing", where);
    if (!cJSON_IsNumber(j))
        return mv_error_set(err, -EINVAL, "%s: size is not a number", where);
    double v = j->valuedouble;
    /* cJSON keeps numbers as doubles: an integer above 2^53 arrives rounded,
     * but anything at or past 2^63 is certainly outside int64. */
    if (!isfinite(v) || v >= INT64_LIMIT_D)
        return mv_error_set(err, -EINVAL, "%s: size %g is out of range", where, v);
    if (v < 0)
        return mv_error_set(err, -EINVAL, "%s: size %g is negative", where, v);
    if (v != (double)(int64_t)v) /* in range now, so the cast is defined */
        return mv_error_set(err, -EINVAL, "%s: size %g is not a whole number", where, v);
    *out = (int64_t)v;
    return 0;
}

static int parse_platform(const cJSON *obj, const char *where, oci_platform **out, mv_error *err)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, "platform");
    if (!j || cJSON_IsNull(j))
        return 0;
    if (!cJSON_IsObject(j))
        return mv_error_set(err, -EINVAL, "%s: platform is not an object", where);
    oci_platform *p = mv_xcalloc(1, sizeof(*p));
    char pw[96];
    snprintf(pw, sizeof(pw), "%s.platform", where);
    int r = get_string(j, "architecture", pw, true, &p->architecture, err);
    if (r >= 0)
        r = get_string(j, "os", pw, true, &p->os, err);
    if (r >= 0)
        r = get_string(j, "variant", pw, false, &p->variant, err);
    if (r >= 0)
        r = get_string(j, "os.version", pw, false, &p->os_version, err);
    *out = p; /* the caller's descriptor_clear frees it on error too */
    return r;
}

static int parse_urls(const cJSON *obj, const char *where, oci_descriptor *d, mv_error *err)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, "urls");
    if (!j || cJSON_IsNull(j))
        return 0;
    if (!cJSON_IsArray(j))
        return mv_error_set(err, -EINVAL, "%s: urls is not an array", where);
    size_t count = (size_t)cJSON_GetArraySize(j);
    if (count == 0)
        return 0;
    d->urls = mv_xcalloc(count, sizeof(char *));
    const cJSON *u;
    cJSON_ArrayForEach(u, j)
    {
        if (!cJSON_IsString(u) || !u->valuestring)
            return mv_error_set(err, -EINVAL, "%s: urls[%zu] is not a string", where, d->n_urls);
        d->urls[d->n_urls++] = mv_xstrdup(u->valuestring);
    }
    return 0;
}

/* Standard base64 with padding, as the OCI spec requires for "data". */
static bool is_base64(const char *s)
{
    size_t n = strlen(s);
    if (n % 4 != 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '+' || c == '/';
        /* '=' only as the last one or two characters. */
        bool pad = c == '=' && (i == n - 1 || (i == n - 2 && s[n - 1] == '='));
        if (!alpha && !pad)
            return false;
    }
    return true;
}

/* Fills d from obj; on failure d holds whatever was parsed, for the caller
 * to clear. */
static int parse_descriptor(const cJSON *obj, const char *where, oci_descriptor *d, mv_error *err)
{
    if (!cJSON_IsObject(obj))
        return mv_error_set(err, -EINVAL, "%s is not an object", where);
    int r = get_string(obj, "mediaType", where, true, &d->media_type, err);
    if (r < 0)
        return r;
    r = get_string(obj, "digest", where, true, &d->digest, err);
    if (r < 0)
        return r;
    r = oci_digest_validate(d->digest, err);
    if (r < 0) {
        mv_error_wrap(err, "%s", where);
        return r; /* err may be NULL, and wrap then knows no code */
    }
    r = parse_size(obj, where, &d->size, err);
    if (r < 0)
        return r;
    r = get_string(obj, "artifactType", where, false, &d->artifact_type, err);
    if (r < 0)
        return r;
    r = parse_annotations(obj, where, &d->annotations, &d->n_annotations, err);
    if (r < 0)
        return r;
    r = parse_platform(obj, where, &d->platform, err);
    if (r < 0)
        return r;
    r = parse_urls(obj, where, d, err);
    if (r < 0)
        return r;
    r = get_string(obj, "data", where, false, &d->data, err);
    if (r < 0)
        return r;
    if (d->data && !is_base64(d->data))
        return mv_error_set(err, -EINVAL, "%s: data is not base64", where);
    return 0;
}

static int parse_descriptor_array(const cJSON *doc, const char *key, bool required,
                                  oci_descriptor **out, size_t *n, mv_error *err)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(doc, key);
    if (!j) {
        if (required)
            return mv_error_set(err, -EINVAL, "%s is missing", key);
        return 0;
    }
    if (!cJSON_IsArray(j))
        return mv_error_set(err, -EINVAL, "%s is not an array", key);
    size_t count = (size_t)cJSON_GetArraySize(j);
    if (count > OCI_MANIFEST_MAX_LAYERS)
        return mv_error_set(err, -EBADMSG, "%s has %zu entries, over the limit of %d", key, count,
                            OCI_MANIFEST_MAX_LAYERS);
    if (count == 0)
        return 0;
    oci_descriptor *d = mv_xcalloc(count, sizeof(*d));
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, j)
    {
        char where[64];
        snprintf(where, sizeof(where), "%s[%zu]", key, i);
        int r = parse_descriptor(e, where, &d[i], err);
        i++; /* counted even on failure, so its partial fields are freed */
        if (r < 0) {
            descriptors_free(d, i);
            return r;
        }
    }
    *out = d;
    *n = i;
    return 0;
}

/* What a lexical pass over the raw bytes tells us before cJSON runs. */
struct json_scan {
    bool nul;      /* a NUL byte or a \u0000 escape inside a string */
    bool unclosed; /* input ends inside a string, object or array */
};

/* cJSON decodes "\u0000" and passes raw NUL bytes into strings, which then
 * silently end early: "a\u0000/../../x" would read as "a". Such a document
 * is refused instead of letting a value mean two things. The same pass
 * tells a truncated download from a malformed document, which cJSON's error
 * position cannot. */
static struct json_scan scan_json(const char *buf, size_t len)
{
    struct json_scan s = {0};
    bool in_str = false;
    size_t depth = 0;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (c == '\0') {
            s.nul = true;
            return s;
        }
        if (!in_str) {
            if (c == '"')
                in_str = true;
            else if (c == '{' || c == '[')
                depth++;
            else if ((c == '}' || c == ']') && depth > 0)
                depth--;
            continue;
        }
        if (c == '"') {
            in_str = false;
        } else if (c == '\\' && i + 1 < len) {
            if (buf[i + 1] == 'u' && i + 5 < len && memcmp(buf + i + 2, "0000", 4) == 0) {
                s.nul = true;
                return s;
            }
            i++; /* skip the escaped character, which may be a quote */
        }
    }
    s.unclosed = in_str || depth > 0;
    return s;
}

static bool is_schema1_type(const char *mt)
{
    return mt && (strcmp(mt, DOCKER_MT_V1) == 0 || strcmp(mt, DOCKER_MT_V1_SIGNED) == 0);
}

/* The four types we parse, mapped to their kind; 0 for anything else. */
static oci_manifest_kind kind_of_type(const char *mt, size_t n)
{
    static const struct {
        const char *type;
        oci_manifest_kind kind;
    } types[] = {
        {OCI_MT_MANIFEST, OCI_KIND_MANIFEST},
        {OCI_MT_INDEX, OCI_KIND_INDEX},
        {DOCKER_MT_MANIFEST, OCI_KIND_DOCKER_MANIFEST},
        {DOCKER_MT_LIST, OCI_KIND_DOCKER_LIST},
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strlen(types[i].type) == n && strncmp(mt, types[i].type, n) == 0)
            return types[i].kind;
    return 0;
}

static const char *type_of_kind(oci_manifest_kind k)
{
    switch (k) {
    case OCI_KIND_INDEX:
        return OCI_MT_INDEX;
    case OCI_KIND_DOCKER_MANIFEST:
        return DOCKER_MT_MANIFEST;
    case OCI_KIND_DOCKER_LIST:
        return DOCKER_MT_LIST;
    case OCI_KIND_MANIFEST:
    default:
        return OCI_MT_MANIFEST;
    }
}

static int parse_json(const void *buf, size_t len, cJSON **out, mv_error *err)
{
    if (len == 0)
        return mv_error_set(err, -EINVAL, "manifest is empty");
    if (len > (size_t)OCI_MANIFEST_MAX_BYTES)
        return mv_error_set(err, -EBADMSG, "manifest is %zu bytes, over the limit of %d", len,
                            OCI_MANIFEST_MAX_BYTES);
    struct json_scan scan = scan_json(buf, len);
    if (scan.nul)
        return mv_error_set(err, -EINVAL, "manifest contains a NUL character");
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(buf, len, &end, false);
    size_t pos = end ? (size_t)(end - (const char *)buf) : 0;
    if (!doc) {
        if (scan.unclosed)
            return mv_error_set(err, -EINVAL, "manifest JSON is truncated (%zu bytes)", len);
        return mv_error_set(err, -EINVAL, "manifest is not valid JSON (error at byte %zu of %zu)",
                            pos, len);
    }
    for (; pos < len; pos++) {
        char c = ((const char *)buf)[pos];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            cJSON_Delete(doc);
            return mv_error_set(err, -EINVAL, "manifest has trailing data at byte %zu of %zu", pos,
                                len);
        }
    }
    *out = doc;
    return 0;
}

/* Picks the kind: the document's mediaType, else a known Content-Type, else
 * the shape. Rejects schema 1 whichever way it announces itself. */
static int decide_kind(const cJSON *doc, const char *content_type, oci_manifest *m, mv_error *err)
{
    const cJSON *sv = cJSON_GetObjectItemCaseSensitive(doc, "schemaVersion");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(doc, "mediaType");
    size_t ct_len = content_type ? strcspn(content_type, "; \t") : 0;
    _cleanup_free_ char *ct = content_type ? mv_xstrndup(content_type, ct_len) : NULL;

    if ((cJSON_IsNumber(sv) && sv->valuedouble == 1) ||
        (cJSON_IsString(mt) && is_schema1_type(mt->valuestring)) || (!mt && is_schema1_type(ct)))
        return mv_error_set(err, -EINVAL,
                            "schema 1 manifests are unsupported (push the image again with a "
                            "current client)");
    if (!sv)
        return mv_error_set(err, -EINVAL, "schemaVersion is missing");
    if (!cJSON_IsNumber(sv))
        return mv_error_set(err, -EINVAL, "schemaVersion is not a number");
    if (sv->valuedouble != 2)
        return mv_error_set(err, -EINVAL, "schemaVersion %g is unsupported (expected 2)",
                            sv->valuedouble);

    if (mt) {
        if (!cJSON_IsString(mt) || !mt->valuestring)
            return mv_error_set(err, -EINVAL, "mediaType is not a string");
        m->kind = kind_of_type(mt->valuestring, strlen(mt->valuestring));
        if (!m->kind)
            return mv_error_set(err, -EINVAL, "manifest media type \"%s\" is unsupported",
                                MV_QUOTED(mt->valuestring));
    } else if (ct && kind_of_type(ct, ct_len)) {
        m->kind = kind_of_type(ct, ct_len);
    } else if (cJSON_GetObjectItemCaseSensitive(doc, "manifests")) {
        m->kind = OCI_KIND_INDEX;
    } else {
        m->kind = OCI_KIND_MANIFEST;
    }
    m->media_type = mv_xstrdup(type_of_kind(m->kind));
    return 0;
}

int oci_manifest_parse(const void *buf, size_t len, const char *content_type, oci_manifest **out,
                       mv_error *err)
{
    *out = NULL;
    _cleanup_json_ cJSON *doc = NULL;
    int r = parse_json(buf, len, &doc, err);
    if (r < 0)
        return r;
    if (!cJSON_IsObject(doc))
        return mv_error_set(err, -EINVAL, "manifest is not a JSON object");

    _cleanup_manifest_ oci_manifest *m = mv_xcalloc(1, sizeof(*m));
    r = decide_kind(doc, content_type, m, err);
    if (r < 0)
        return r;
    r = get_string(doc, "artifactType", "manifest", false, &m->artifact_type, err);
    if (r < 0)
        return r;

    if (oci_manifest_is_index(m)) {
        r = parse_descriptor_array(doc, "manifests", true, &m->manifests, &m->n_manifests, err);
        if (r < 0)
            return r;
    } else {
        const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(doc, "config");
        if (!cfg)
            return mv_error_set(err, -EINVAL, "config is missing");
        m->has_config = true;
        r = parse_descriptor(cfg, "config", &m->config, err);
        if (r < 0)
            return r;
        /* OCI 1.1 allows an artifact with no layers; Docker always has some,
         * but an empty list is still well-formed. */
        r = parse_descriptor_array(doc, "layers", m->kind == OCI_KIND_DOCKER_MANIFEST, &m->layers,
                                   &m->n_layers, err);
        if (r < 0)
            return r;
    }

    const cJSON *subj = cJSON_GetObjectItemCaseSensitive(doc, "subject");
    if (subj && !cJSON_IsNull(subj)) {
        m->subject = mv_xcalloc(1, sizeof(*m->subject));
        r = parse_descriptor(subj, "subject", m->subject, err);
        if (r < 0)
            return r;
    }
    r = parse_annotations(doc, "manifest", &m->annotations, &m->n_annotations, err);
    if (r < 0)
        return r;
    *out = MV_STEAL(m);
    return 0;
}

/* ---- emitting ----------------------------------------------------------- */

static int cmp_annotation(const void *a, const void *b)
{
    const oci_annotation *x = *(const oci_annotation *const *)a;
    const oci_annotation *y = *(const oci_annotation *const *)b;
    int c = strcmp(x->key, y->key);
    return c ? c : strcmp(x->value ? x->value : "", y->value ? y->value : "");
}

/* Annotations in sorted key order, so equal maps always serialise alike. */
static void add_annotations(cJSON *obj, const oci_annotation *a, size_t n)
{
    if (n == 0)
        return;
    /* A hand-built list may hold holes (NULL keys); they are not written. */
    _cleanup_free_ const oci_annotation **sorted = mv_xcalloc(n, sizeof(const oci_annotation *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (a[i].key)
            sorted[k++] = &a[i];
    if (k == 0)
        return;
    qsort(sorted, k, sizeof(const oci_annotation *), cmp_annotation);
    cJSON *j = cJSON_AddObjectToObject(obj, "annotations");
    for (size_t i = 0; i < k; i++)
        cJSON_AddStringToObject(j, sorted[i]->key, sorted[i]->value ? sorted[i]->value : "");
}

static void add_string(cJSON *obj, const char *key, const char *v)
{
    if (v)
        cJSON_AddStringToObject(obj, key, v);
}

static cJSON *descriptor_json(const oci_descriptor *d)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "mediaType", d->media_type ? d->media_type : "");
    cJSON_AddStringToObject(j, "digest", d->digest ? d->digest : "");
    /* Raw, so sizes past 2^53 print exactly instead of as doubles. */
    char size[24];
    snprintf(size, sizeof(size), "%lld", (long long)(d->size < 0 ? 0 : d->size));
    cJSON_AddRawToObject(j, "size", size);
    if (d->n_urls > 0) {
        cJSON *u = cJSON_AddArrayToObject(j, "urls");
        for (size_t i = 0; i < d->n_urls; i++)
            cJSON_AddItemToArray(u, cJSON_CreateString(d->urls[i] ? d->urls[i] : ""));
    }
    add_annotations(j, d->annotations, d->n_annotations);
    add_string(j, "data", d->data);
    if (d->platform) {
        cJSON *p = cJSON_AddObjectToObject(j, "platform");
        cJSON_AddStringToObject(p, "architecture",
                                d->platform->architecture ? d->platform->architecture : "");
        cJSON_AddStringToObject(p, "os", d->platform->os ? d->platform->os : "");
        add_string(p, "os.version", d->platform->os_version);
        add_string(p, "variant", d->platform->variant);
    }
    add_string(j, "artifactType", d->artifact_type);
    return j;
}

char *oci_manifest_emit(const oci_manifest *m, size_t *len)
{
    _cleanup_json_ cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "schemaVersion", 2);
    cJSON_AddStringToObject(j, "mediaType", m->media_type ? m->media_type : type_of_kind(m->kind));
    add_string(j, "artifactType", m->artifact_type);
    if (oci_manifest_is_index(m)) {
        cJSON *a = cJSON_AddArrayToObject(j, "manifests");
        for (size_t i = 0; i < m->n_manifests; i++)
            cJSON_AddItemToArray(a, descriptor_json(&m->manifests[i]));
    } else {
        if (m->has_config)
            cJSON_AddItemToObject(j, "config", descriptor_json(&m->config));
        cJSON *a = cJSON_AddArrayToObject(j, "layers");
        for (size_t i = 0; i < m->n_layers; i++)
            cJSON_AddItemToArray(a, descriptor_json(&m->layers[i]));
    }
    if (m->subject)
        cJSON_AddItemToObject(j, "subject", descriptor_json(m->subject));
    add_annotations(j, m->annotations, m->n_annotations);

    char *s = cJSON_PrintUnformatted(j);
    if (!s) {
        fprintf(stderr, "modelvol: out of memory serialising a manifest\n");
        abort();
    }
    /* cJSON allocates with its hooks (malloc by default); hand back memory
     * the caller can free() without knowing about cJSON. */
    char *out = mv_xstrdup(s);
    cJSON_free(s);
    if (len)
        *len = strlen(out);
    return out;
}
