/* index.c — choosing one entry of an image index: by platform for images,
 * by artifactType for artifacts. */
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
            snprintf(item, sizeof(item), "%s/%s%s%s", MV_QUOTED(p->os),
                     MV_QUOTED(p->architecture), p->variant ? "/" : "",
                     p->variant ? MV_QUOTED(p->variant) : "");
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
