/* test_path.c — raw-layer file paths: normalisation, every traversal and
 * malformed form rejected, and the annotation precedence. */
#include "oci.h"
#include "mvtest.h"

static void expect_norm(const char *in, const char *want)
{
    mv_error e = MV_ERROR_INIT;
    _cleanup_free_ char *out = NULL;
    int r = oci_path_normalize(in, &out, &e);
    if (r != 0)
        fprintf(stderr, "normalize \"%s\": %s\n", in, e.msg);
    CHECK_INT(r, 0);
    CHECK_STR(out, want);
}

static void expect_bad(const char *in, const char *needle)
{
    mv_error e = MV_ERROR_INIT;
    char *out = (char *)1;
    CHECK_INT(oci_path_normalize(in, &out, &e), -EINVAL);
    CHECK(out == NULL);
    CHECK_CONTAINS(e.msg, needle);
}

MV_TEST(normalises)
{
    expect_norm("a//b/./c", "a/b/c");
    expect_norm("model.safetensors", "model.safetensors");
    expect_norm("./config.json", "config.json");
    expect_norm("dir/", "dir");
    expect_norm("a/b/c///", "a/b/c");
    expect_norm(".hidden/..x/x..", ".hidden/..x/x..");
    expect_norm("...", "...");
    expect_norm("a/./././b", "a/b");
}

MV_TEST(rejects_unsafe_paths)
{
    expect_bad(NULL, "empty path");
    expect_bad("", "empty path");
    expect_bad("/etc/passwd", "path \"/etc/passwd\" is absolute");
    expect_bad("//x", "is absolute");
    expect_bad("..", "contains \"..\"");
    expect_bad("../x", "contains \"..\"");
    expect_bad("a/../../x", "contains \"..\"");
    expect_bad("a/..", "contains \"..\"");
    expect_bad("a/b/../c", "contains \"..\"");
    expect_bad(".", "names no file");
    expect_bad("./", "names no file");
    expect_bad("./././/", "names no file");
    char comp[300];
    memset(comp, 'c', 256);
    comp[256] = '\0';
    expect_bad(comp, "component of 256 bytes");
    char *huge = malloc(5000);
    for (int i = 0; i < 4998; i += 2)
        memcpy(huge + i, "a/", 2);
    huge[4998] = 'a';
    huge[4999] = '\0';
    expect_bad(huge, "over the limit of 4095");
    free(huge);
}

static oci_descriptor layer_with(oci_annotation *a, size_t n)
{
    return (oci_descriptor){
        .media_type = "application/vnd.cncf.model.weight.v1.raw",
        .digest = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        .size = 3,
        .annotations = a,
        .n_annotations = n,
    };
}

MV_TEST(annotation_precedence)
{
    oci_annotation all[] = {
        {MODEL_ANNO_FILEPATH_CNAI, "cnai/path"},
        {OCI_ANNO_TITLE, "title.bin"},
        {MODEL_ANNO_FILEPATH, "weights//model.safetensors"},
    };
    mv_error e = MV_ERROR_INIT;
    char *out = NULL;
    oci_descriptor d = layer_with(all, 3);
    CHECK_INT(oci_layer_filepath(&d, &out, &e), 0);
    CHECK_STR(out, "weights/model.safetensors");
    free(out);
    d = layer_with(all, 2);
    CHECK_INT(oci_layer_filepath(&d, &out, &e), 0);
    CHECK_STR(out, "title.bin");
    free(out);
    d = layer_with(all, 1);
    CHECK_INT(oci_layer_filepath(&d, &out, &e), 0);
    CHECK_STR(out, "cnai/path");
    free(out);
}

MV_TEST(missing_and_unsafe_annotations)
{
    mv_error e = MV_ERROR_INIT;
    char *out = NULL;
    oci_annotation other[] = {{"org.example.x", "y"}};
    oci_descriptor d = layer_with(other, 1);
    CHECK_INT(oci_layer_filepath(&d, &out, &e), -ENOENT);
    CHECK(out == NULL);
    CHECK_STR(e.msg, "no file path annotation (org.cncf.model.filepath, "
                     "org.opencontainers.image.title or org.cnai.model.filepath)");

    /* The first present annotation decides, even when a later one is safe. */
    oci_annotation evil[] = {
        {OCI_ANNO_TITLE, "ok.bin"},
        {MODEL_ANNO_FILEPATH, "../../etc/cron.d/x"},
    };
    d = layer_with(evil, 2);
    CHECK_INT(oci_layer_filepath(&d, &out, &e), -EINVAL);
    CHECK(out == NULL);
    CHECK_STR(e.msg, "annotation org.cncf.model.filepath: path \"../../etc/cron.d/x\" "
                     "contains \"..\"");
    /* Without an mv_error the code is still the real one. */
    CHECK_INT(oci_layer_filepath(&d, &out, NULL), -EINVAL);
    oci_annotation abs[] = {{OCI_ANNO_TITLE, "/root/.ssh/authorized_keys"}};
    d = layer_with(abs, 1);
    CHECK_INT(oci_layer_filepath(&d, &out, &e), -EINVAL);
    CHECK_CONTAINS(e.msg, "is absolute");
    oci_annotation empty[] = {{MODEL_ANNO_FILEPATH, ""}};
    d = layer_with(empty, 1);
    CHECK_INT(oci_layer_filepath(&d, &out, &e), -EINVAL);
    CHECK_CONTAINS(e.msg, "empty path");
}

int main(void)
{
    MV_RUN(normalises);
    MV_RUN(rejects_unsafe_paths);
    MV_RUN(annotation_precedence);
    MV_RUN(missing_and_unsafe_annotations);
    MV_DONE();
}
