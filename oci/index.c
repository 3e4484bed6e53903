/* index.c — choosing one entry of an image index: by platform for images,
 * by artifactType for artifacts, or by what a user's selector asks for. */
#include "oci.h"

#include <string.h>

/* Enough of the index to tell the user what was there, on one line. */
#define LIST_MAX 512

static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* uname(2) spellings for the GOARCH names indexes use. */
static const char *norm_arch(const char *arch)
{
    if (str_eq(arch, "x86_64") || str_eq(arch, "x86-64"))
        return "amd64";
    if (str_eq(arch, "aarch64"))
        return "arm64";
    return arch;
}

/* On arm64, "v8" is the only variant there is, so indexes write it or leave
 * it out interchangeably. */
static bool variant_equivalent(const char *arch, const char *a, const char *b)
{
    if (str_eq(a, b) || (!a && !b))
        return true;
    return str_eq(arch, "arm64") && (!a || str_eq(a, "v8")) && (!b || str_eq(b, "v8"));
}

/* 0: no match; higher is a better match. */
static int platform_score(const oci_platform *p, const char *os, const char *arch,
                          const char *variant)
{
    if (!p || !str_eq(p->os, os) || !str_eq(norm_arch(p->architecture), arch))
        return 0;
    if (variant) {
        if (str_eq(p->variant, variant))
            return 3;
        return variant_equivalent(arch, p->variant, variant) ? 2 : 0;
    }
    /* Any variant will do; prefer the plain build, then arm64's v8. */
    if (!p->variant)
        return 3;
    return variant_equivalent(arch, p->variant, NULL) ? 2 : 1;
}

static void list_append(char *buf, size_t *o, const char *item)
{
    if (*o >= LIST_MAX - 1)
        return;
    int n = snprintf(buf + *o, LIST_MAX - *o, "%s%s", *o ? ", " : "", item);
    if (n < 0 || (size_t)n >= LIST_MAX - *o) {
        /* Mark the cut so nobody mistakes the list for complete. */
        snprintf(buf + LIST_MAX - 5, 5, "...");
        *o = LIST_MAX - 1;
        return;
    }
    *o += (size_t)n;
}

static int require_index(const oci_manifest *idx, mv_error *err)
{
    if (!oci_manifest_is_index(idx))
        return mv_error_set(err, -EINVAL, "%s is not an index",
                            idx->media_type ? idx->media_type : "manifest");
    return 0;
}

int oci_index_select_platform(const oci_manifest *idx, const char *os, const char *arch,
                              const char *variant, const oci_descriptor **out, mv_error *err)
{
    *out = NULL;
    int r = require_index(idx, err);
    if (r < 0)
        return r;
    os = os ? os : "linux";
    arch = arch ? norm_arch(arch) : "amd64";
    int best = 0;
    for (size_t i = 0; i < idx->n_manifests; i++) {
        int s = platform_score(idx->manifests[i].platform, os, arch, variant);
        if (s > best) {
            best = s;
            *out = &idx->manifests[i];
        }
    }
    if (*out)
        return 0;

    char list[LIST_MAX] = "";
    size_t o = 0;
    for (size_t i = 0; i < idx->n_manifests; i++) {
        const oci_platform *p = idx->manifests[i].platform;
        char item[128];
        if (!p)
            snprintf(item, sizeof(item), "(no platform)");
        else
            snprintf(item, sizeof(item), "%s/%s%s%s", MV_QUOTED(p->os), MV_QUOTED(p->architecture),
                     p->variant ? "/" : "", p->variant ? MV_QUOTED(p->variant) : "");
        list_append(list, &o, item);
    }
    return mv_error_set(err, -ENOENT, "no manifest for %s/%s%s%s in index (it has: %s)", os, arch,
                        variant ? "/" : "", variant ? variant : "", o ? list : "no entries");
}

int oci_index_select_artifact(const oci_manifest *idx, const char *artifact_type,
                              const oci_descriptor **out, mv_error *err)
{
    *out = NULL;
    int r = require_index(idx, err);
    if (r < 0)
        return r;
    if (!artifact_type || !*artifact_type)
        return mv_error_set(err, -EINVAL, "no artifact type given");
    for (size_t i = 0; i < idx->n_manifests; i++) {
        if (str_eq(idx->manifests[i].artifact_type, artifact_type)) {
            *out = &idx->manifests[i];
            return 0;
        }
    }
    char list[LIST_MAX] = "";
    size_t o = 0;
    for (size_t i = 0; i < idx->n_manifests; i++) {
        const char *t = idx->manifests[i].artifact_type;
        list_append(list, &o, t ? MV_QUOTED(t) : "(no artifactType)");
    }
    return mv_error_set(err, -ENOENT, "no manifest with artifactType %s in index (it has: %s)",
                        artifact_type, o ? list : "no entries");
}

/* ---- selectors -------------------------------------------------------------- */

/* Selector fields are short words; a cap keeps hostile input out of
 * messages and keys. */
#define SEL_FIELD_MAX 255

static bool word_ok(const char *a, size_t n)
{
    if (n == 0 || n > SEL_FIELD_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)a[i] <= ' ' || a[i] == '/' || a[i] == 0x7f)
            return false;
    return true;
}

int oci_platform_parse(const char *s, oci_platform *p, mv_error *err)
{
    memset(p, 0, sizeof(*p));
    if (!s || !*s)
        return mv_error_set(err, -EINVAL, "platform: empty (want os/arch[/variant])");
    const char *parts[3] = {0};
    size_t lens[3] = {0};
    size_t n = 0;
    for (const char *a = s;; n++) {
        const char *slash = strchr(a, '/');
        if (n == 3)
            return mv_error_set(err, -EINVAL, "platform \"%s\": not os/arch[/variant]",
                                MV_QUOTED(s));
        parts[n] = a;
        lens[n] = slash ? (size_t)(slash - a) : strlen(a);
        if (!word_ok(parts[n], lens[n]))
            return mv_error_set(err, -EINVAL, "platform \"%s\": not os/arch[/variant]",
                                MV_QUOTED(s));
        if (!slash) {
            n++;
            break;
        }
        a = slash + 1;
    }
    if (n < 2)
        return mv_error_set(err, -EINVAL, "platform \"%s\": not os/arch[/variant]", MV_QUOTED(s));
    p->os = mv_xstrndup(parts[0], lens[0]);
    _cleanup_free_ char *arch = mv_xstrndup(parts[1], lens[1]);
    p->architecture = mv_xstrdup(norm_arch(arch));
    if (n == 3)
        p->variant = mv_xstrndup(parts[2], lens[2]);
    return 0;
}

int oci_annotation_selector_parse(const char *s, char **key, char **value, mv_error *err)
{
    *key = *value = NULL;
    const char *eq = s ? strchr(s, '=') : NULL;
    if (!eq || eq == s)
        return mv_error_set(err, -EINVAL, "annotation \"%s\": not key=value",
                            MV_QUOTED(s ? s : ""));
    size_t kn = (size_t)(eq - s);
    if (kn > SEL_FIELD_MAX || strlen(eq + 1) > 4096)
        return mv_error_set(err, -EINVAL, "annotation \"%s\": too long", MV_QUOTED(s));
    for (size_t i = 0; i < kn; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
            return mv_error_set(err, -EINVAL,
                                "annotation \"%s\": the key has a blank or control "
                                "character",
                                MV_QUOTED(s));
    *key = mv_xstrndup(s, kn);
    *value = mv_xstrdup(eq + 1);
    return 0;
}

void oci_index_selector_clear(oci_index_selector *sel)
{
    if (!sel)
        return;
    free(sel->artifact_type);
    free(sel->platform.os);
    free(sel->platform.architecture);
    free(sel->platform.variant);
    free(sel->platform.os_version);
    free(sel->annotation_key);
    free(sel->annotation_value);
    memset(sel, 0, sizeof(*sel));
}

int oci_index_selector_parse(const char *artifact_type, const char *platform,
                             const char *annotation, oci_index_selector *sel, mv_error *err)
{
    memset(sel, 0, sizeof(*sel));
    oci_index_selector s = {0};
    if (artifact_type && *artifact_type) {
        size_t n = strlen(artifact_type);
        bool ok = n <= SEL_FIELD_MAX;
        for (size_t i = 0; ok && i < n; i++)
            ok = (unsigned char)artifact_type[i] > ' ' && artifact_type[i] != 0x7f;
        if (!ok)
            return mv_error_set(err, -EINVAL, "artifactType \"%s\": not a media type",
                                MV_QUOTED(artifact_type));
        s.artifact_type = mv_xstrdup(artifact_type);
    }
    if (platform && *platform) {
        int r = oci_platform_parse(platform, &s.platform, err);
        if (r < 0) {
            oci_index_selector_clear(&s);
            return r;
        }
    }
    if (annotation && *annotation) {
        int r =
            oci_annotation_selector_parse(annotation, &s.annotation_key, &s.annotation_value, err);
        if (r < 0) {
            oci_index_selector_clear(&s);
            return r;
        }
    }
    *sel = s;
    return 0;
}

bool oci_index_selector_empty(const oci_index_selector *sel)
{
    return !sel || (!sel->artifact_type && !sel->platform.os && !sel->annotation_key);
}

static char *platform_text(const oci_platform *p)
{
    if (!p)
        return mv_xstrdup("(no platform)");
    return mv_xasprintf("%s/%s%s%s", p->os ? MV_QUOTED(p->os) : "?",
                        p->architecture ? MV_QUOTED(p->architecture) : "?", p->variant ? "/" : "",
                        p->variant ? MV_QUOTED(p->variant) : "");
}

char *oci_index_selector_string(const oci_index_selector *sel)
{
    char *s = mv_xstrdup("");
    if (oci_index_selector_empty(sel))
        return s;
    if (sel->artifact_type) {
        char *t = mv_xasprintf("artifactType=%s", sel->artifact_type);
        free(s);
        s = t;
    }
    if (sel->platform.os) {
        _cleanup_free_ char *pt = platform_text(&sel->platform);
        char *t = mv_xasprintf("%s%splatform=%s", s, *s ? " " : "", pt);
        free(s);
        s = t;
    }
    if (sel->annotation_key) {
        char *t = mv_xasprintf("%s%sannotation=%s=%s", s, *s ? " " : "", sel->annotation_key,
                               sel->annotation_value);
        free(s);
        s = t;
    }
    return s;
}

bool oci_descriptor_is_index(const oci_descriptor *d)
{
    return d && (str_eq(d->media_type, OCI_MT_INDEX) || str_eq(d->media_type, DOCKER_MT_LIST));
}

/* 0: ruled out; else the platform score (1 when the selector asks no
 * platform or the nested index carries none). */
static int selector_score(const oci_descriptor *d, const oci_index_selector *sel)
{
    bool nested = oci_descriptor_is_index(d);
    if (sel->artifact_type && !str_eq(d->artifact_type, sel->artifact_type) &&
        !(nested && !d->artifact_type))
        return 0;
    if (sel->annotation_key) {
        const char *v = oci_annotation_get(d->annotations, d->n_annotations, sel->annotation_key);
        if (!str_eq(v, sel->annotation_value) && !(nested && !v))
            return 0;
    }
    if (!sel->platform.os || (nested && !d->platform))
        return 1;
    return platform_score(d->platform, sel->platform.os, sel->platform.architecture,
                          sel->platform.variant);
}

/* One candidate for a message: digest (artifactType, platform, annotations). */
static char *candidate_text(const oci_descriptor *d)
{
    _cleanup_free_ char *pt = platform_text(d->platform);
    char *annos = mv_xstrdup("");
    for (size_t i = 0; i < d->n_annotations; i++) {
        char *t =
            mv_xasprintf("%s%s%s=\"%s\"", annos, i ? " " : "", MV_QUOTED(d->annotations[i].key),
                         MV_QUOTED(d->annotations[i].value));
        free(annos);
        annos = t;
    }
    char *s = mv_xasprintf("%s (artifactType %s, platform %s, annotations {%s})", d->digest,
                           d->artifact_type ? MV_QUOTED(d->artifact_type) : "none",
                           d->platform ? pt : "none", annos);
    free(annos);
    return s;
}

static int several(const oci_manifest *idx, const bool *hit, size_t n_hit,
                   const oci_index_selector *sel, mv_error *err)
{
    char list[MV_ERROR_MSG_MAX] = "";
    size_t o = 0;
    for (size_t i = 0; i < idx->n_manifests; i++) {
        if (!hit[i])
            continue;
        _cleanup_free_ char *c = candidate_text(&idx->manifests[i]);
        int n = snprintf(list + o, sizeof(list) - o, "%s%s", o ? "; " : "", c);
        if (n < 0 || (size_t)n >= sizeof(list) - o) {
            snprintf(list + sizeof(list) - 5, 5, "...");
            break;
        }
        o += (size_t)n;
    }
    _cleanup_free_ char *what = oci_index_selector_string(sel);
    return mv_error_set(err, -EINVAL,
                        "%zu manifests in the index match %s, choose one with artifactType, "
                        "platform or annotation: %s",
                        n_hit, what, list);
}

static int none(const oci_manifest *idx, const oci_index_selector *sel, mv_error *err)
{
    char list[MV_ERROR_MSG_MAX] = "";
    size_t o = 0;
    for (size_t i = 0; i < idx->n_manifests; i++) {
        _cleanup_free_ char *c = candidate_text(&idx->manifests[i]);
        int n = snprintf(list + o, sizeof(list) - o, "%s%s", o ? "; " : "", c);
        if (n < 0 || (size_t)n >= sizeof(list) - o) {
            snprintf(list + sizeof(list) - 5, 5, "...");
            break;
        }
        o += (size_t)n;
    }
    _cleanup_free_ char *what = oci_index_selector_string(sel);
    return mv_error_set(err, -ENOENT, "no manifest in the index matches %s (it has: %s)", what,
                        o ? list : "no entries");
}

/* Today's rules: the model, else this node's platform, else an index that
 * only wraps another index. */
static int select_default(const oci_manifest *idx, const char *host_os, const char *host_arch,
                          const oci_descriptor **out, mv_error *err)
{
    if (oci_index_select_artifact(idx, MODEL_ARTIFACT_TYPE, out, NULL) == 0 ||
        oci_index_select_artifact(idx, MODEL_ARTIFACT_TYPE_CNAI, out, NULL) == 0)
        return 0;
    int r = oci_index_select_platform(idx, host_os, host_arch, NULL, out, err);
    if (r != -ENOENT)
        return r;
    const oci_descriptor *only = NULL;
    size_t n = 0;
    for (size_t i = 0; i < idx->n_manifests; i++)
        if (oci_descriptor_is_index(&idx->manifests[i])) {
            only = &idx->manifests[i];
            n++;
        }
    if (n != 1 || idx->n_manifests != 1)
        return r;
    *out = only;
    return 0;
}

int oci_index_select(const oci_manifest *idx, const oci_index_selector *sel, const char *host_os,
                     const char *host_arch, const oci_descriptor **out, mv_error *err)
{
    *out = NULL;
    int r = require_index(idx, err);
    if (r < 0)
        return r;
    if (oci_index_selector_empty(sel))
        return select_default(idx, host_os, host_arch, out, err);
    _cleanup_free_ int *score = mv_xcalloc(idx->n_manifests + 1, sizeof(*score));
    int best = 0;
    for (size_t i = 0; i < idx->n_manifests; i++) {
        score[i] = selector_score(&idx->manifests[i], sel);
        if (score[i] > best)
            best = score[i];
    }
    if (best == 0)
        return none(idx, sel, err);
    _cleanup_free_ bool *hit = mv_xcalloc(idx->n_manifests + 1, sizeof(*hit));
    size_t n_hit = 0;
    for (size_t i = 0; i < idx->n_manifests; i++) {
        /* A nested index without a platform stays a candidate next to the
         * best platform match: which one was meant is the user's call. */
        const oci_descriptor *d = &idx->manifests[i];
        bool keep = score[i] == best || (score[i] > 0 && sel->platform.os &&
                                         oci_descriptor_is_index(d) && !d->platform);
        if (keep) {
            hit[i] = true;
            n_hit++;
            *out = d;
        }
    }
    if (n_hit == 1)
        return 0;
    *out = NULL;
    return several(idx, hit, n_hit, sel, err);
}
