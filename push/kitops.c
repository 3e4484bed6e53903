/* kitops.c — --format kitops: the model directory as a KitOps ModelKit,
 * the way `kit init` would describe it in a Kitfile and `kit pack` would
 * pack it: one kitops tar layer per file (model, model parts, code,
 * datasets, docs, in that order) and the Kitfile, with each layer's digest
 * and diffId, as the JSON config.
 *
 * Sources (kitops-ml/kitops): pkg/lib/constants/mediatype/kitops.go (media
 * types), pkg/lib/filesystem/local-storage.go (saveKitfileLayers: layer
 * order; saveConfig: the Kitfile as config; createManifest),
 * pkg/lib/filesystem/tar.go (tar entries, headers, filepath annotation),
 * pkg/lib/filesystem/util.go (fillDescAnnotations), pkg/artifact/kitfile.go
 * (the Kitfile's JSON fields and their order), pkg/lib/kitfile/generate/
 * generate.go (which file is the model, which are parts).
 *
 * modelpush's kinds map onto Kitfile sections: weights are the model and
 * its parts, config files are model parts too (kit init adds metadata files
 * to the model), or datasets when there is no weight file (kit init does
 * the same); docs, code and datasets keep their section. */
#include "push-internal.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <strings.h>

typedef enum { KIT_MODEL = 0, KIT_MODELPART, KIT_CODE, KIT_DATASET, KIT_DOCS, KIT_N } kit_section;

/* The <type> in application/vnd.kitops.modelkit.<type>.v1.tar[+zstd]. */
static const char *const kit_section_type[KIT_N] = {"model", "modelpart", "code", "dataset",
                                                    "docs"};

typedef struct kit_layer {
    push_file *file;
    kit_section section;
    char digest[OCI_DIGEST_MAX];
    char diff_id[OCI_DIGEST_MAX];
} kit_layer;

/* kit init skips a Kitfile in the directory: it describes the pack, it is
 * not packed (generate.go, constants.DefaultKitfileNames). */
static bool is_kitfile(const char *rel)
{
    return strcmp(rel, "Kitfile") == 0 || strcmp(rel, "kitfile") == 0 ||
           strcmp(rel, ".kitfile") == 0;
}

/* Go's strings.TrimSuffix(path, filepath.Ext(name)): the model's name. */
static char *name_without_ext(const char *rel)
{
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    const char *dot = strrchr(base, '.');
    size_t n = dot ? (size_t)(dot - rel) : strlen(rel);
    return mv_xstrndup(rel, n);
}

/* generate.go addModelToKitfile: one weight file is the model; of several,
 * the largest is the model when it is more than 1.5 times the average
 * (the others are parts), else the first is, without a name. Returns the
 * model's index in files, or -1 without weights; *named says whether the
 * Kitfile names the model. */
static ssize_t pick_model(const push_pack *p, bool *named)
{
    size_t n = 0;
    uint64_t total = 0, largest = 0;
    ssize_t first = -1, big = -1;
    for (size_t i = 0; i < p->n_files; i++) {
        const push_file *f = &p->files[i];
        if (f->kind != MODEL_KIND_WEIGHT || is_kitfile(f->rel))
            continue;
        if (first < 0)
            first = (ssize_t)i;
        if (f->size > largest || big < 0) {
            largest = f->size;
            big = (ssize_t)i;
        }
        total += f->size;
        n++;
    }
    *named = false;
    if (n == 0)
        return -1;
    uint64_t avg = total / n;
    if (n == 1 || largest > avg + avg / 2) {
        *named = true;
        return big;
    }
    return first;
}

static void add_section(kit_layer *l, size_t *n, push_pack *p, model_kind kind, kit_section s,
                        ssize_t skip)
{
    for (size_t i = 0; i < p->n_files; i++) {
        push_file *f = &p->files[i];
        if (f->kind == kind && (ssize_t)i != skip && !is_kitfile(f->rel))
            l[(*n)++] = (kit_layer){.file = f, .section = s};
    }
}

/* The entry's path, its LayerInfo (inline in Go: digest, diffId after the
 * entry's own fields) and, for README and LICENSE files, the description
 * kit init gives them. */
static cJSON *kit_entry(const kit_layer *l, const char *name)
{
    cJSON *o = cJSON_CreateObject();
    if (name)
        cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "path", l->file->rel);
    if (l->section == KIT_DOCS) {
        const char *base = strrchr(l->file->rel, '/');
        base = base ? base + 1 : l->file->rel;
        if (strncasecmp(base, "readme", 6) == 0)
            cJSON_AddStringToObject(o, "description", "Readme file");
        else if (strncasecmp(base, "license", 7) == 0)
            cJSON_AddStringToObject(o, "description", "License file");
    }
    return o;
}

static void kit_layer_info(cJSON *o, const kit_layer *l)
{
    cJSON_AddStringToObject(o, "digest", l->digest);
    cJSON_AddStringToObject(o, "diffId", l->diff_id);
}

/* Go's encoding/json escapes <, > and & inside strings; they occur nowhere
 * else in JSON, so the whole text can be rewritten. */
static char *go_json_escape(const char *s)
{
    size_t n = 0;
    for (const char *c = s; *c; c++)
        n += (*c == '<' || *c == '>' || *c == '&') ? 6 : 1;
    char *out = mv_xmalloc(n + 1), *w = out;
    for (const char *c = s; *c; c++) {
        if (*c == '<' || *c == '>' || *c == '&')
            w += sprintf(w, "\\u%04x", (unsigned)*c);
        else
            *w++ = *c;
    }
    *w = '\0';
    return out;
}

/* json.Marshal(KitFile): manifestVersion, package (a struct: always
 * present, {} when empty), model {name, path, parts, digest, diffId},
 * code, datasets, docs; empty sections left out. */
static char *kitfile_json(const push_pack_opts *o, const kit_layer *l, size_t n,
                          const char *model_name)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "manifestVersion", "1.0.0"); /* kit init's */
    cJSON *pkg = cJSON_AddObjectToObject(root, "package");
    if (o->spec.name)
        cJSON_AddStringToObject(pkg, "name", o->spec.name);
    if (o->spec.version)
        cJSON_AddStringToObject(pkg, "version", o->spec.version);
    cJSON *model = NULL, *parts = NULL, *sections[KIT_N] = {0};
    const char *keys[KIT_N] = {NULL, NULL, "code", "datasets", "docs"};
    for (size_t i = 0; i < n; i++) {
        if (l[i].section == KIT_MODEL) {
            model = kit_entry(&l[i], model_name);
            continue;
        }
        cJSON *e = kit_entry(&l[i], NULL);
        kit_layer_info(e, &l[i]);
        if (l[i].section == KIT_MODELPART) {
            if (!model) /* parts without a model cannot happen: see pick_model */
                model = cJSON_CreateObject();
            if (!parts)
                parts = cJSON_AddArrayToObject(model, "parts");
            cJSON_AddItemToArray(parts, e);
            continue;
        }
        if (!sections[l[i].section])
            sections[l[i].section] = cJSON_CreateArray();
        cJSON_AddItemToArray(sections[l[i].section], e);
    }
    if (model) {
        for (size_t i = 0; i < n; i++)
            if (l[i].section == KIT_MODEL)
                kit_layer_info(model, &l[i]);
        cJSON_AddItemToObject(root, "model", model);
    }
    for (int s = KIT_CODE; s < KIT_N; s++)
        if (sections[s])
            cJSON_AddItemToObject(root, keys[s], sections[s]);
    char *raw = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    char *out = go_json_escape(raw);
    cJSON_free(raw);
    return out;
}

int push_pack_kitops(push_pack *p, const push_pack_opts *o, mv_error *err)
{
    bool named = false;
    ssize_t model = pick_model(p, &named);
    _cleanup_free_ kit_layer *l = mv_xcalloc(p->n_files + 1, sizeof(*l));
    size_t n = 0;
    if (model >= 0)
        l[n++] = (kit_layer){.file = &p->files[model], .section = KIT_MODEL};
    add_section(l, &n, p, MODEL_KIND_WEIGHT, KIT_MODELPART, model);
    if (model >= 0)
        add_section(l, &n, p, MODEL_KIND_WEIGHT_CONFIG, KIT_MODELPART, -1);
    add_section(l, &n, p, MODEL_KIND_CODE, KIT_CODE, -1);
    add_section(l, &n, p, MODEL_KIND_DATASET, KIT_DATASET, -1);
    if (model < 0)
        add_section(l, &n, p, MODEL_KIND_WEIGHT_CONFIG, KIT_DATASET, -1);
    add_section(l, &n, p, MODEL_KIND_DOC, KIT_DOCS, -1);
    if (n == 0)
        return mv_error_set(err, -ENOENT, "no files to pack besides the Kitfile");

    for (size_t i = 0; i < n; i++) {
        push_file *f = l[i].file;
        f->in_tar = true;
        push_blob tb = {.fd = -1};
        int r = push_build_kit_tar(f, o, &tb, l[i].diff_id, err);
        if (r < 0)
            return mv_error_wrap(err, "kitops %s layer", kit_section_type[l[i].section]);
        snprintf(l[i].digest, sizeof(l[i].digest), "%s", tb.digest);
        oci_descriptor *d = push_layer_add(p);
        d->digest = mv_xstrdup(tb.digest);
        d->size = (int64_t)tb.size;
        d->media_type = mv_xasprintf("application/vnd.kitops.modelkit.%s.v1.tar%s",
                                     kit_section_type[l[i].section], o->spec.zstd ? "+zstd" : "");
        /* fillDescAnnotations(desc, path, nil): the Kitfile path only. */
        push_annos_add(d, MODEL_ANNO_FILEPATH, f->rel);
        push_blob *b = push_blob_add(p, tb.digest);
        if (b) {
            b->label = mv_xasprintf("%s (kitops %s layer)", f->rel, kit_section_type[l[i].section]);
            b->fd = tb.fd;
            b->size = tb.size;
        } else {
            close(tb.fd);
        }
        p->n_hashed++;
    }
    _cleanup_free_ char *model_name = named ? name_without_ext(l[0].file->rel) : NULL;
    p->config_json = kitfile_json(o, l, n, model_name);
    return 0;
}
