/* classify.c — which ModelPack kind a file is: the user's --weight/--config/
 * ... globs in order, then the built-in names and extensions; and which
 * paths --exclude leaves out. Globs are matched the same way for both. */
#include "push-internal.h"

#include <fnmatch.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Classification                                                           */
/* ------------------------------------------------------------------------ */

typedef struct default_rule {
    const char *glob;
    model_kind kind;
} default_rule;

/* Checked in order against the base name; the first match wins. Names
 * come before extensions so that vocab.txt is a tokenizer file, not a doc,
 * and pytorch_model.bin.index.json is configuration, not weights. */
static const default_rule defaults[] = {
    {"config.json", MODEL_KIND_WEIGHT_CONFIG},
    {"generation_config.json", MODEL_KIND_WEIGHT_CONFIG},
    {"tokenizer*", MODEL_KIND_WEIGHT_CONFIG},
    {"*.tiktoken", MODEL_KIND_WEIGHT_CONFIG},
    {"vocab*", MODEL_KIND_WEIGHT_CONFIG},
    {"merges.txt", MODEL_KIND_WEIGHT_CONFIG},
    {"special_tokens_map.json", MODEL_KIND_WEIGHT_CONFIG},
    {"preprocessor_config.json", MODEL_KIND_WEIGHT_CONFIG},
    {"added_tokens.json", MODEL_KIND_WEIGHT_CONFIG},
    {"*.safetensors", MODEL_KIND_WEIGHT},
    {"*.bin", MODEL_KIND_WEIGHT},
    {"*.gguf", MODEL_KIND_WEIGHT},
    {"*.ggml", MODEL_KIND_WEIGHT},
    {"*.pt", MODEL_KIND_WEIGHT},
    {"*.pth", MODEL_KIND_WEIGHT},
    {"*.ckpt", MODEL_KIND_WEIGHT},
    {"*.onnx", MODEL_KIND_WEIGHT},
    {"*.h5", MODEL_KIND_WEIGHT},
    {"*.keras", MODEL_KIND_WEIGHT},
    {"*.tflite", MODEL_KIND_WEIGHT},
    {"*.msgpack", MODEL_KIND_WEIGHT},
    {"*.npz", MODEL_KIND_WEIGHT},
    {"*.md", MODEL_KIND_DOC},
    {"LICENSE*", MODEL_KIND_DOC},
    {"LICENCE*", MODEL_KIND_DOC},
    {"NOTICE*", MODEL_KIND_DOC},
    {"COPYING*", MODEL_KIND_DOC},
    {"README*", MODEL_KIND_DOC},
    {"USE_POLICY*", MODEL_KIND_DOC},
    {"*.txt", MODEL_KIND_DOC},
    {"*.rst", MODEL_KIND_DOC},
    {"*.pdf", MODEL_KIND_DOC},
    {"*.png", MODEL_KIND_DOC},
    {"*.jpg", MODEL_KIND_DOC},
    {"*.jpeg", MODEL_KIND_DOC},
    {"*.gif", MODEL_KIND_DOC},
    {"*.svg", MODEL_KIND_DOC},
    {".gitattributes", MODEL_KIND_DOC},
    {"*.py", MODEL_KIND_CODE},
    {"*.sh", MODEL_KIND_CODE},
    {"*.ipynb", MODEL_KIND_CODE},
    {"*.js", MODEL_KIND_CODE},
    {"*.c", MODEL_KIND_CODE},
    {"*.cc", MODEL_KIND_CODE},
    {"*.cpp", MODEL_KIND_CODE},
    {"*.cu", MODEL_KIND_CODE},
    {"*.h", MODEL_KIND_CODE},
    {"*.parquet", MODEL_KIND_DATASET},
    {"*.jsonl", MODEL_KIND_DATASET},
    {"*.csv", MODEL_KIND_DATASET},
    {"*.tsv", MODEL_KIND_DATASET},
    {"*.arrow", MODEL_KIND_DATASET},
    /* Remaining structured text is configuration of some sort
     * (model.safetensors.index.json, chat templates, adapter configs). */
    {"*.json", MODEL_KIND_WEIGHT_CONFIG},
    {"*.yaml", MODEL_KIND_WEIGHT_CONFIG},
    {"*.yml", MODEL_KIND_WEIGHT_CONFIG},
    {"*.toml", MODEL_KIND_WEIGHT_CONFIG},
    {"*.jinja", MODEL_KIND_WEIGHT_CONFIG},
    {"*.model", MODEL_KIND_WEIGHT_CONFIG}, /* sentencepiece */
};

/* A glob with a '/' is matched against the whole path, one without
 * against the base name too, so "--doc '*.txt'" means any directory. */
static bool glob_matches(const char *glob, const char *rel)
{
    if (fnmatch(glob, rel, FNM_PATHNAME) == 0)
        return true;
    if (strchr(glob, '/'))
        return false;
    const char *base = strrchr(rel, '/');
    return fnmatch(glob, base ? base + 1 : rel, 0) == 0;
}

/* --exclude: checked on every path the walk meets, so an excluded
 * directory is never entered (nothing in it is vetted or read). */
bool push_excluded(const char *rel, const push_pack_opts *o)
{
    for (size_t i = 0; o && i < o->spec.n_excludes; i++)
        if (glob_matches(o->spec.excludes[i], rel))
            return true;
    return false;
}

model_kind push_classify(const char *rel, const push_rule *rules, size_t n_rules, bool *guessed)
{
    if (guessed)
        *guessed = false;
    for (size_t i = 0; i < n_rules; i++)
        if (glob_matches(rules[i].glob, rel))
            return rules[i].kind;
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        if (fnmatch(defaults[i].glob, base, 0) == 0)
            return defaults[i].kind;
    /* An unknown file in a model directory is most likely model payload
     * (TF checkpoints, numpy arrays, custom formats); the layer says the
     * kind was guessed (MODEL_ANNO_UNTESTED). */
    if (guessed)
        *guessed = true;
    return MODEL_KIND_WEIGHT;
}
