/* modelpull_inspect.c — `modelpull inspect`: what a model would lay out,
 * from its manifest and config alone (no layer blob is fetched): the family
 * detected and, per layer, its path, size, kind, action and media type, as
 * text or as one JSON document. */
#include "cli.h"

#include <cJSON.h>
#include <getopt.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: modelpull [--cache DIR] [--config FILE] inspect [OPTIONS] REF\n\n"
               "  --json                one JSON document instead of text\n"
               "  --plain-http          talk plain HTTP to this registry\n"
               "  --policy POLICY       IfNotPresent (default: ask the registry), Always or\n"
               "                        Never (only what the cache holds)\n" CLI_SELECTOR_HELP);
}

static const char *kind_word(model_kind k)
{
    return k == MODEL_KIND_NONE ? NULL : oci_kind_filter_name(k);
}

/* "file", "unpack into DIR" ("/" for the root) or "skip: why". */
static char *action_text(const oci_layer_plan *lp)
{
    switch (lp->place) {
    case OCI_PLACE_FILE:
        return mv_xstrdup(lp->executable ? "file (executable)" : "file");
    case OCI_PLACE_UNPACK:
        return mv_xasprintf("unpack into %s%s", lp->path && *lp->path ? "" : "/",
                            lp->path ? lp->path : "");
    default:
        return mv_xasprintf("skip: %s", lp->skip_reason ? lp->skip_reason : "unknown");
    }
}

static const char *place_name(oci_placement p)
{
    return p == OCI_PLACE_FILE ? "file" : p == OCI_PLACE_UNPACK ? "unpack" : "skip";
}

static void print_json(const char *reference, const cache_inspection *in)
{
    const oci_manifest *m = in->manifest;
    const oci_layout_plan *plan = in->plan;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "reference", reference);
    cJSON_AddStringToObject(j, "manifest", in->manifest_digest);
    if (in->index_digest[0])
        cJSON_AddStringToObject(j, "index", in->index_digest);
    cJSON_AddStringToObject(j, "family", oci_artifact_family_name(plan->family));
    if (m->artifact_type)
        cJSON_AddStringToObject(j, "artifactType", m->artifact_type);
    if (m->has_config && m->config.media_type)
        cJSON_AddStringToObject(j, "configMediaType", m->config.media_type);
    if (plan->default_subpath)
        cJSON_AddStringToObject(j, "defaultSubpath", plan->default_subpath);
    cJSON *layers = cJSON_AddArrayToObject(j, "layers");
    for (size_t i = 0; i < plan->n_layers; i++) {
        const oci_layer_plan *lp = &plan->layers[i];
        const oci_descriptor *d = &m->layers[lp->index];
        cJSON *l = cJSON_CreateObject();
        cJSON_AddNumberToObject(l, "index", (double)lp->index);
        cJSON_AddStringToObject(l, "digest", d->digest);
        cJSON_AddNumberToObject(l, "size", (double)d->size);
        cJSON_AddStringToObject(l, "mediaType", d->media_type);
        cJSON_AddStringToObject(l, "action", place_name(lp->place));
        if (lp->path)
            cJSON_AddStringToObject(l, "path", lp->path);
        if (kind_word(lp->kind))
            cJSON_AddStringToObject(l, "kind", kind_word(lp->kind));
        else
            cJSON_AddNullToObject(l, "kind");
        if (lp->place == OCI_PLACE_FILE)
            cJSON_AddBoolToObject(l, "executable", lp->executable);
        if (lp->unpacked_digest)
            cJSON_AddStringToObject(l, "unpackedDigest", lp->unpacked_digest);
        if (lp->skip_reason)
            cJSON_AddStringToObject(l, "skipReason", lp->skip_reason);
        cJSON_AddItemToArray(layers, l);
    }
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    printf("%s\n", s ? s : "{}");
    free(s);
}

static void print_text(const char *reference, const cache_inspection *in)
{
    const oci_manifest *m = in->manifest;
    const oci_layout_plan *plan = in->plan;
    printf("reference: %s\n", reference);
    if (in->index_digest[0])
        printf("index:     %s\n", in->index_digest);
    printf("manifest:  %s\n", in->manifest_digest);
    printf("family:    %s\n", oci_artifact_family_name(plan->family));
    if (m->artifact_type)
        printf("artifact:  %s\n", m->artifact_type);
    if (m->has_config && m->config.media_type)
        printf("config:    %s\n", m->config.media_type);
    if (plan->default_subpath)
        printf("subpath:   %s (by default)\n", plan->default_subpath);
    /* Columns as wide as their longest entry; the action last: a skip's
     * reason is as long as it needs to be. */
    int wpath = 4, wtype = 10;
    for (size_t i = 0; i < plan->n_layers; i++) {
        const oci_layer_plan *lp = &plan->layers[i];
        const char *path = lp->place == OCI_PLACE_FILE ? lp->path : "-";
        int lpath = (int)strlen(path), ltype = (int)strlen(m->layers[lp->index].media_type);
        wpath = lpath > wpath ? lpath : wpath;
        wtype = ltype > wtype ? ltype : wtype;
    }
    printf("\n%-*s %10s %-9s %-*s %s\n", wpath, "PATH", "SIZE", "KIND", wtype, "MEDIA TYPE",
           "ACTION");
    for (size_t i = 0; i < plan->n_layers; i++) {
        const oci_layer_plan *lp = &plan->layers[i];
        const oci_descriptor *d = &m->layers[lp->index];
        char size[32];
        _cleanup_free_ char *act = action_text(lp);
        const char *path = lp->place == OCI_PLACE_FILE ? lp->path : "-";
        printf("%-*s %10s %-9s %-*s %s\n", wpath, path,
               mv_format_size((uint64_t)d->size, size, sizeof(size)),
               kind_word(lp->kind) ? kind_word(lp->kind) : "-", wtype, d->media_type, act);
    }
}

static int inspect_main(const cli_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},         {"plain-http", no_argument, NULL, 'p'},
        {"policy", required_argument, NULL, 'P'}, CLI_SELECTOR_OPTIONS,
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    mv_error err = MV_ERROR_INIT;
    cache_request_args args = {0};
    bool json = false, plain_http = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'j':
            json = true;
            break;
        case 'p':
            plain_http = true;
            break;
        case 'P':
            if (cache_pull_policy_parse(optarg, &args.policy, &err) < 0) {
                cli_error("modelpull", &err);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            if (cli_selector_arg(ch, optarg, &args))
                break;
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    args.reference = argv[optind];
    _cleanup_cache_request_ cache_request *rq = NULL;
    if (cache_request_parse(&args, &rq, &err) < 0) {
        cli_error("modelpull", &err);
        return 1;
    }
    _cleanup_(cache_registry_freep) cache_registry *reg = NULL;
    if (cache_registry_load(g->config_path, g->config_named, 0, &reg, &err) < 0) {
        cli_error("modelpull", &err);
        return 1;
    }
    rq->registry = reg;
    rq->pull.plain_http = plain_http;
    _cleanup_cache_ cache *c = NULL;
    cache_inspection in = {0};
    if (cache_open(g->cache_dir, NULL, &c, &err) < 0 || cache_inspect(c, rq, &in, &err) < 0) {
        cli_error("modelpull", &err);
        return 1;
    }
    if (json)
        print_json(rq->reference, &in);
    else
        print_text(rq->reference, &in);
    cache_inspection_clear(&in);
    return 0;
}

CLI_VERB("inspect", "show what a model lays out, fetching no layer blob", inspect_main)
