/* request.c — the boundary of a pull: a front end's text (reference, globs,
 * subpath, index selector) parsed once into a cache_request, and the
 * registry context and credentials re-exported so front ends above the
 * cache need no other library. */
#include "cache-internal.h"

#include <string.h>

/* "a, b,,c" appended to v as {"a", "b", "c"}. */
static void split_csv(const char *s, char ***v, size_t *n)
{
    for (const char *p = s; p && *p;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (b > a) {
            *v = mv_xrealloc(*v, (*n + 2) * sizeof(**v));
            (*v)[(*n)++] = mv_xstrndup(a, (size_t)(b - a));
            (*v)[*n] = NULL;
        }
        p = *end ? end + 1 : end;
    }
}

/* The CSV's globs, then the list's; NULL when there are none. */
static char **globs_of(const char *csv, const char *const *list)
{
    char **v = NULL;
    size_t n = 0;
    split_csv(csv, &v, &n);
    for (; list && *list; list++) {
        v = mv_xrealloc(v, (n + 2) * sizeof(*v));
        v[n++] = mv_xstrdup(*list);
        v[n] = NULL;
    }
    return v;
}

int cache_request_parse(const cache_request_args *a, cache_request **out, mv_error *err)
{
    *out = NULL;
    if (!a->reference)
        return mv_error_set(err, -EINVAL, "no model reference");
    if ((unsigned)a->policy > CACHE_PULL_NEVER)
        return mv_error_set(err, -EINVAL, "pull policy %d is not IfNotPresent, Always or Never",
                            (int)a->policy);
    _cleanup_(cache_request_freep) cache_request *rq = mv_xcalloc(1, sizeof(*rq));
    int r = oci_ref_parse(a->reference, &rq->ref, err);
    if (r < 0)
        return a->reference_what ? mv_error_wrap(err, "%s", a->reference_what) : r;
    rq->reference = oci_ref_string(rq->ref);
    rq->policy = a->policy;
    rq->include = globs_of(a->include_csv, a->include);
    rq->exclude = globs_of(a->exclude_csv, a->exclude);
    _cleanup_strv_ char **words = globs_of(a->kinds_csv, a->kinds);
    for (size_t i = 0; words && words[i]; i++) {
        model_kind k = MODEL_KIND_NONE;
        r = oci_kind_parse(words[i], &k, err);
        if (r < 0)
            return mv_error_wrap(err, "%s", a->kinds_what ? a->kinds_what : "kinds");
        rq->kinds_mask |= 1u << k;
    }
    /* One spelling per filter, in a fixed order: the tree id and the
     * listings see the same words however the user ordered them. */
    size_t nk = 0;
    for (unsigned k = 0; k < 32; k++) {
        if (!(rq->kinds_mask & (1u << k)))
            continue;
        rq->kinds = mv_xrealloc(rq->kinds, (nk + 2) * sizeof(*rq->kinds));
        rq->kinds[nk++] = mv_xstrdup(oci_kind_filter_name((model_kind)k));
        rq->kinds[nk] = NULL;
    }
    if (a->subpath && *a->subpath) {
        r = oci_path_normalize(a->subpath, &rq->subpath, err);
        if (r < 0)
            return mv_error_wrap(err, "%s", a->subpath_what ? a->subpath_what : "subpath");
    }
    r = oci_index_selector_parse(a->artifact_type, a->platform, a->annotation, &rq->select, err);
    if (r < 0)
        return a->select_what ? mv_error_wrap(err, "%s", a->select_what) : r;
    *out = MV_STEAL(rq);
    return 0;
}

void cache_request_free(cache_request *rq)
{
    if (!rq)
        return;
    oci_ref_free(rq->ref);
    free(rq->reference);
    mv_strvfreep(&rq->include);
    mv_strvfreep(&rq->exclude);
    mv_strvfreep(&rq->kinds);
    free(rq->subpath);
    oci_index_selector_clear(&rq->select);
    pull_creds_free(rq->creds);
    free(rq);
}

/* ---- re-exports for the front ends ---------------------------------------- */

int cache_registry_load(const char *config_path, bool config_named, unsigned flags,
                        cache_registry **out, mv_error *err)
{
    return pull_context_load(config_path, config_named, flags, out, err);
}

void cache_registry_free(cache_registry *reg)
{
    pull_context_free(reg);
}

int cache_creds_parse(const char *json, size_t len, cache_creds **out, mv_error *err)
{
    return pull_creds_parse(json, len, out, err);
}

void cache_creds_free(cache_creds *creds)
{
    pull_creds_free(creds);
}

int cache_connections_parse(const char *what, const char *s, int *out, mv_error *err)
{
    return pull_connections_parse(what, s, out, err);
}
