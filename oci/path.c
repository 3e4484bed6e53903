/* path.c — the file path a raw layer presents inside a model tree, taken
 * from its annotations and made safe: relative, no "..", normalised. */
#include "oci.h"

#include <string.h>

/* Linux limits; a longer path would fail later, in the cache, with a worse
 * message. */
#define PATH_LEN_MAX       4095
#define PATH_COMPONENT_MAX 255

int oci_path_normalize(const char *path, char **out, mv_error *err)
{
    *out = NULL;
    if (!path || !*path)
        return mv_error_set(err, -EINVAL, "empty path");
    size_t len = strlen(path);
    if (len > PATH_LEN_MAX)
        return mv_error_set(err, -EINVAL, "path \"%s\" is %zu bytes, over the limit of %d",
                            MV_QUOTED(path), len, PATH_LEN_MAX);
    if (path[0] == '/')
        return mv_error_set(err, -EINVAL, "path \"%s\" is absolute", MV_QUOTED(path));

    _cleanup_free_ char *buf = mv_xmalloc(len + 1);
    size_t o = 0;
    const char *c = path;
    while (*c) {
        size_t n = strcspn(c, "/");
        if (n == 2 && c[0] == '.' && c[1] == '.')
            return mv_error_set(err, -EINVAL, "path \"%s\" contains \"..\"", MV_QUOTED(path));
        if (n > PATH_COMPONENT_MAX)
            return mv_error_set(err, -EINVAL,
                                "path \"%s\" has a component of %zu bytes, over the limit of %d",
                                MV_QUOTED(path), n, PATH_COMPONENT_MAX);
        if (n > 0 && !(n == 1 && c[0] == '.')) {
            if (o > 0)
                buf[o++] = '/';
            memcpy(buf + o, c, n);
            o += n;
        }
        c += n;
        if (*c == '/')
            c++;
    }
    if (o == 0)
        return mv_error_set(err, -EINVAL, "path \"%s\" names no file", MV_QUOTED(path));
    buf[o] = '\0';
    *out = MV_STEAL(buf);
    return 0;
}

int oci_layer_filepath(const oci_descriptor *d, char **out, mv_error *err)
{
    static const char *const keys[] = {MODEL_ANNO_FILEPATH, OCI_ANNO_TITLE,
                                       MODEL_ANNO_FILEPATH_CNAI};
    *out = NULL;
    /* Callers prefix the layer digest; the message names the annotation. */
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *v = oci_annotation_get(d->annotations, d->n_annotations, keys[i]);
        if (!v)
            continue;
        int r = oci_path_normalize(v, out, err);
        if (r < 0) {
            mv_error_wrap(err, "annotation %s", keys[i]);
            return r; /* err may be NULL, and wrap then knows no code */
        }
        return 0;
    }
    return mv_error_set(err, -ENOENT,
                        "no file path annotation (" MODEL_ANNO_FILEPATH ", " OCI_ANNO_TITLE
                        " or " MODEL_ANNO_FILEPATH_CNAI ")");
}
