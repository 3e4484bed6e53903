/* facts.c — what the config says about the weights: their format (by
 * bytes), and from safetensors headers the parameter count and precision.
 * Informative only: anything odd leaves a fact out rather than failing. */
#include "push-internal.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <string.h>

#define SAFETENSORS_HEADER_MAX (64u << 20)

/* ------------------------------------------------------------------------ */
/* Model facts: format, parameter count, precision                          */
/* ------------------------------------------------------------------------ */

typedef struct model_facts {
    uint64_t params;
    bool params_known;
    char dtype[16]; /* safetensors dtype if uniform, "mixed", or "" */
    uint64_t fmt_bytes[8];
} model_facts;

enum { FMT_SAFETENSORS, FMT_GGUF, FMT_PYTORCH, FMT_ONNX, FMT_KERAS, FMT_FLAX, FMT_TFLITE, FMT_N };
static const char *const fmt_label[FMT_N] = {"safetensors", "gguf", "pytorch", "onnx",
                                             "keras",       "flax", "tflite"};

static int weight_format(const char *rel)
{
    static const struct {
        const char *glob;
        int fmt;
    } t[] = {
        {"*.safetensors", FMT_SAFETENSORS},
        {"*.gguf", FMT_GGUF},
        {"*.bin", FMT_PYTORCH},
        {"*.pt", FMT_PYTORCH},
        {"*.pth", FMT_PYTORCH},
        {"*.ckpt", FMT_PYTORCH},
        {"*.onnx", FMT_ONNX},
        {"*.h5", FMT_KERAS},
        {"*.keras", FMT_KERAS},
        {"*.msgpack", FMT_FLAX},
        {"*.tflite", FMT_TFLITE},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (fnmatch(t[i].glob, rel, 0) == 0)
            return t[i].fmt;
    return -1;
}

/* Adds the tensors of a safetensors header: 8 bytes little-endian length,
 * then JSON {"name": {"dtype", "shape", "data_offsets"}, "__metadata__"}.
 * Anything odd leaves the facts alone: they are informative only. */
static void safetensors_facts(const push_file *f, model_facts *mf, bool *ok)
{
    _cleanup_close_ int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    unsigned char lenbuf[8];
    if (fd < 0 || pread(fd, lenbuf, 8, 0) != 8) {
        *ok = false;
        return;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | lenbuf[i];
    if (hlen == 0 || hlen > SAFETENSORS_HEADER_MAX || hlen > f->size - 8) {
        *ok = false;
        return;
    }
    _cleanup_free_ char *hdr = mv_xmalloc(hlen + 1);
    if (pread(fd, hdr, hlen, 8) != (ssize_t)hlen) {
        *ok = false;
        return;
    }
    cJSON *root = cJSON_ParseWithLength(hdr, hlen);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        *ok = false;
        return;
    }
    cJSON *t;
    cJSON_ArrayForEach(t, root)
    {
        if (t->string && strcmp(t->string, "__metadata__") == 0)
            continue;
        cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
        cJSON *dtype = cJSON_GetObjectItemCaseSensitive(t, "dtype");
        if (!cJSON_IsArray(shape)) {
            *ok = false;
            continue;
        }
        uint64_t n = 1;
        cJSON *d;
        cJSON_ArrayForEach(d, shape)
        {
            if (!cJSON_IsNumber(d) || d->valuedouble < 0) {
                *ok = false;
                break;
            }
            n *= (uint64_t)d->valuedouble;
        }
        mf->params += n;
        if (cJSON_IsString(dtype) && strlen(dtype->valuestring) < sizeof(mf->dtype)) {
            if (!mf->dtype[0])
                snprintf(mf->dtype, sizeof(mf->dtype), "%s", dtype->valuestring);
            else if (strcmp(mf->dtype, dtype->valuestring) != 0)
                snprintf(mf->dtype, sizeof(mf->dtype), "mixed");
        }
    }
    cJSON_Delete(root);
}

/* "6.7B", "8B", "125M", "12K"; the ModelPack paramSize notation. NULL
 * below a thousand, which the notation cannot say. */
char *push_format_params(uint64_t n)
{
    if (n < 1000)
        return NULL;
    static const struct {
        double scale;
        char letter;
    } s[] = {{1e15, 'Q'}, {1e12, 'T'}, {1e9, 'B'}, {1e6, 'M'}, {1e3, 'K'}};
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
        if ((double)n >= s[i].scale || i + 1 == sizeof(s) / sizeof(s[0])) {
            double v = (double)n / s[i].scale;
            char buf[32];
            snprintf(buf, sizeof(buf), "%.1f", v);
            size_t len = strlen(buf);
            if (len > 2 && strcmp(buf + len - 2, ".0") == 0)
                buf[len - 2] = '\0';
            return mv_xasprintf("%s%c", buf, s[i].letter);
        }
    }
    return NULL;
}

static const char *precision_of(const char *dtype)
{
    static const struct {
        const char *st, *mp;
    } t[] = {{"BF16", "bf16"},   {"F16", "fp16"},    {"F32", "fp32"},
             {"F64", "fp64"},    {"I8", "int8"},     {"U8", "uint8"},
             {"F8_E4M3", "fp8"}, {"F8_E5M2", "fp8"}, {"mixed", "mixed"}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strcmp(dtype, t[i].st) == 0)
            return t[i].mp;
    return NULL;
}

void push_gather_facts(push_pack *p)
{
    model_facts mf = {0};
    bool st_ok = true, any_st = false;
    for (size_t i = 0; i < p->n_files; i++) {
        push_file *f = &p->files[i];
        if (f->kind != MODEL_KIND_WEIGHT)
            continue;
        int fmt = weight_format(f->rel);
        if (fmt < 0)
            continue;
        mf.fmt_bytes[fmt] += f->size;
        if (fmt == FMT_SAFETENSORS) {
            any_st = true;
            safetensors_facts(f, &mf, &st_ok);
        }
    }
    int best = -1;
    for (int i = 0; i < FMT_N; i++)
        if (mf.fmt_bytes[i] && (best < 0 || mf.fmt_bytes[i] > mf.fmt_bytes[best]))
            best = i;
    if (best >= 0)
        p->format = mv_xstrdup(fmt_label[best]);
    /* Only a count covering every weight file is worth publishing. */
    if (best == FMT_SAFETENSORS && any_st && st_ok && mf.params > 0) {
        bool only_st = true;
        for (int i = 0; i < FMT_N; i++)
            if (i != FMT_SAFETENSORS && mf.fmt_bytes[i])
                only_st = false;
        if (only_st) {
            p->param_size = push_format_params(mf.params);
            const char *prec = precision_of(mf.dtype);
            if (prec)
                p->precision = mv_xstrdup(prec);
        }
    }
}
