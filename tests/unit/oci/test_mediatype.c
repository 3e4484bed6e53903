/* test_mediatype.c — the layer media type classifier over every OCI,
 * Docker and ModelPack spelling, the ModelPack name table, and the
 * manifest Accept list. */
#include "oci.h"
#include "mvtest.h"

static const struct {
    const char *mt;
    oci_layer_family family;
    oci_layer_format format;
    model_kind kind;
    bool nondist, cnai;
} cases[] = {
    {OCI_MT_LAYER_TAR, OCI_FAMILY_OCI, OCI_FMT_TAR, MODEL_KIND_NONE, false, false},
    {OCI_MT_LAYER_GZIP, OCI_FAMILY_OCI, OCI_FMT_TAR_GZIP, MODEL_KIND_NONE, false, false},
    {OCI_MT_LAYER_ZSTD, OCI_FAMILY_OCI, OCI_FMT_TAR_ZSTD, MODEL_KIND_NONE, false, false},
    {OCI_MT_LAYER_ND_TAR, OCI_FAMILY_OCI, OCI_FMT_TAR, MODEL_KIND_NONE, true, false},
    {OCI_MT_LAYER_ND_GZIP, OCI_FAMILY_OCI, OCI_FMT_TAR_GZIP, MODEL_KIND_NONE, true, false},
    {OCI_MT_LAYER_ND_ZSTD, OCI_FAMILY_OCI, OCI_FMT_TAR_ZSTD, MODEL_KIND_NONE, true, false},
    /* A compression we cannot unpack stays OCI, format unknown: never a raw file. */
    {"application/vnd.oci.image.layer.v1.tar+lz4", OCI_FAMILY_OCI, OCI_FMT_UNKNOWN, MODEL_KIND_NONE,
     false, false},
    {DOCKER_MT_LAYER_GZIP, OCI_FAMILY_DOCKER, OCI_FMT_TAR_GZIP, MODEL_KIND_NONE, false, false},
    {DOCKER_MT_LAYER_FOREIGN, OCI_FAMILY_DOCKER, OCI_FMT_TAR_GZIP, MODEL_KIND_NONE, true, false},
    {"application/vnd.docker.image.rootfs.diff.tar", OCI_FAMILY_DOCKER, OCI_FMT_UNKNOWN,
     MODEL_KIND_NONE, false, false},
    {"application/vnd.cncf.model.weight.v1.raw", OCI_FAMILY_MODELPACK, OCI_FMT_RAW,
     MODEL_KIND_WEIGHT, false, false},
    {"application/vnd.cncf.model.weight.v1.tar", OCI_FAMILY_MODELPACK, OCI_FMT_TAR,
     MODEL_KIND_WEIGHT, false, false},
    {"application/vnd.cncf.model.weight.config.v1.tar+gzip", OCI_FAMILY_MODELPACK, OCI_FMT_TAR_GZIP,
     MODEL_KIND_WEIGHT_CONFIG, false, false},
    {"application/vnd.cncf.model.doc.v1.tar+zstd", OCI_FAMILY_MODELPACK, OCI_FMT_TAR_ZSTD,
     MODEL_KIND_DOC, false, false},
    {"application/vnd.cncf.model.code.v1.raw", OCI_FAMILY_MODELPACK, OCI_FMT_RAW, MODEL_KIND_CODE,
     false, false},
    {"application/vnd.cncf.model.dataset.v1.tar", OCI_FAMILY_MODELPACK, OCI_FMT_TAR,
     MODEL_KIND_DATASET, false, false},
    {"application/vnd.cnai.model.weight.v1.raw", OCI_FAMILY_MODELPACK, OCI_FMT_RAW,
     MODEL_KIND_WEIGHT, false, true},
    {"application/vnd.cnai.model.weight.config.v1.raw", OCI_FAMILY_MODELPACK, OCI_FMT_RAW,
     MODEL_KIND_WEIGHT_CONFIG, false, true},
    {"application/vnd.cnai.model.dataset.v1.tar+zstd", OCI_FAMILY_MODELPACK, OCI_FMT_TAR_ZSTD,
     MODEL_KIND_DATASET, false, true},
    {"application/vnd.cncf.model.weight.v1.tar; foo=bar", OCI_FAMILY_MODELPACK, OCI_FMT_TAR,
     MODEL_KIND_WEIGHT, false, false},
    /* ModelPack prefix with an unknown kind or format: still ModelPack, not raw. */
    {"application/vnd.cncf.model.weights.v1.raw", OCI_FAMILY_MODELPACK, OCI_FMT_UNKNOWN,
     MODEL_KIND_NONE, false, false},
    {"application/vnd.cncf.model.weight.v1.zip", OCI_FAMILY_MODELPACK, OCI_FMT_UNKNOWN,
     MODEL_KIND_WEIGHT, false, false},
    {MODEL_MT_CONFIG, OCI_FAMILY_MODELPACK, OCI_FMT_UNKNOWN, MODEL_KIND_NONE, false, false},
    {"application/octet-stream", OCI_FAMILY_ORAS, OCI_FMT_RAW, MODEL_KIND_NONE, false, false},
    {"application/vnd.example.thing", OCI_FAMILY_ORAS, OCI_FMT_RAW, MODEL_KIND_NONE, false, false},
};

MV_TEST(classifies_every_known_spelling)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        oci_media_class c;
        CHECK(oci_media_classify(cases[i].mt, &c));
        if (c.family != cases[i].family || c.format != cases[i].format || c.kind != cases[i].kind ||
            c.nondistributable != cases[i].nondist || c.legacy_cnai != cases[i].cnai) {
            fprintf(stderr, "misclassified %s: family %d format %d kind %d nd %d cnai %d\n",
                    cases[i].mt, c.family, c.format, c.kind, c.nondistributable, c.legacy_cnai);
            CHECK(0);
        }
    }
}

MV_TEST(empty_or_null_is_not_classified)
{
    oci_media_class c = {.family = OCI_FAMILY_OCI};
    CHECK(!oci_media_classify(NULL, &c));
    CHECK_INT(c.family, OCI_FAMILY_UNKNOWN);
    CHECK(!oci_media_classify("", &c));
    /* Absurdly long types still classify, as raw. */
    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CHECK(oci_media_classify(big, &c));
    CHECK_INT(c.family, OCI_FAMILY_ORAS);
}

MV_TEST(model_media_type_round_trips_through_classify)
{
    int n = 0;
    for (int k = MODEL_KIND_WEIGHT; k <= MODEL_KIND_DATASET; k++) {
        for (int f = OCI_FMT_RAW; f <= OCI_FMT_TAR_ZSTD; f++) {
            const char *mt = model_media_type((model_kind)k, (oci_layer_format)f);
            CHECK(mt != NULL);
            if (!mt)
                continue;
            n++;
            CHECK(strncmp(mt, "application/vnd.cncf.model.", 27) == 0);
            oci_media_class c;
            CHECK(oci_media_classify(mt, &c));
            CHECK_INT(c.family, OCI_FAMILY_MODELPACK);
            CHECK_INT(c.kind, k);
            CHECK_INT(c.format, f);
            CHECK(!c.legacy_cnai);
        }
    }
    CHECK_INT(n, 20);
    CHECK_STR(model_media_type(MODEL_KIND_WEIGHT_CONFIG, OCI_FMT_TAR_GZIP),
              "application/vnd.cncf.model.weight.config.v1.tar+gzip");
    CHECK(model_media_type(MODEL_KIND_NONE, OCI_FMT_RAW) == NULL);
    CHECK(model_media_type(MODEL_KIND_WEIGHT, OCI_FMT_UNKNOWN) == NULL);
    CHECK(model_media_type((model_kind)99, OCI_FMT_RAW) == NULL);
}

MV_TEST(kind_names)
{
    CHECK_STR(model_kind_name(MODEL_KIND_WEIGHT), "weight");
    CHECK_STR(model_kind_name(MODEL_KIND_WEIGHT_CONFIG), "weight.config");
    CHECK_STR(model_kind_name(MODEL_KIND_DOC), "doc");
    CHECK_STR(model_kind_name(MODEL_KIND_CODE), "code");
    CHECK_STR(model_kind_name(MODEL_KIND_DATASET), "dataset");
    CHECK(model_kind_name(MODEL_KIND_NONE) == NULL);
    CHECK(model_kind_name((model_kind)42) == NULL);
}

MV_TEST(accept_lists_all_four_manifest_types)
{
    const char *a = oci_manifest_accept();
    CHECK_CONTAINS(a, OCI_MT_MANIFEST);
    CHECK_CONTAINS(a, OCI_MT_INDEX);
    CHECK_CONTAINS(a, DOCKER_MT_MANIFEST);
    CHECK_CONTAINS(a, DOCKER_MT_LIST);
    CHECK(strstr(a, "v1+prettyjws") == NULL);
    int commas = 0;
    for (const char *p = a; *p; p++)
        commas += *p == ',';
    CHECK_INT(commas, 3);
}

int main(void)
{
    MV_RUN(classifies_every_known_spelling);
    MV_RUN(empty_or_null_is_not_classified);
    MV_RUN(model_media_type_round_trips_through_classify);
    MV_RUN(kind_names);
    MV_RUN(accept_lists_all_four_manifest_types);
    MV_DONE();
}
