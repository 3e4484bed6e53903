/* test_layout.c — the layout planner: for each family a manifest written the
 * way its tool writes it (each fact cited), parsed with oci_manifest_parse
 * and planned; today's ModelPack and modelcar plans unchanged; every hostile
 * or contradictory manifest refused with one line naming the layer. */
#include "oci.h"
#include "mvtest.h"

#define H1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define H2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define H3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"
#define H4 "sha256:4444444444444444444444444444444444444444444444444444444444444444"
#define H5 "sha256:5555555555555555555555555555555555555555555555555555555555555555"
#define H6 "sha256:6666666666666666666666666666666666666666666666666666666666666666"
#define H7 "sha256:7777777777777777777777777777777777777777777777777777777777777777"
/* The OCI empty descriptor's digest ("{}"), as oras-go writes it. */
#define EMPTY_DIGEST "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

#define LAYER(mt, dg, annos) "{\"mediaType\":\"" mt "\",\"digest\":\"" dg "\",\"size\":10" annos "}"
#define ANNOS(kv)            ",\"annotations\":{" kv "}"
#define KV(k, v)             "\"" k "\":\"" v "\""

static oci_manifest *parse(const char *json)
{
    mv_error e = MV_ERROR_INIT;
    oci_manifest *m = NULL;
    int r = oci_manifest_parse(json, strlen(json), NULL, &m, &e);
    if (r < 0)
        fprintf(stderr, "parse: %s\n%s\n", e.msg, json);
    CHECK_INT(r, 0);
    return m;
}

static oci_layout_plan *plan_ok(const char *json, const char *config)
{
    _cleanup_manifest_ oci_manifest *m = parse(json);
    if (!m)
        return NULL;
    mv_error e = MV_ERROR_INIT;
    oci_layout_plan *p = NULL;
    int r = oci_layout_plan_make(m, config, config ? strlen(config) : 0, &p, &e);
    if (r < 0)
        fprintf(stderr, "plan: %s\n", e.msg);
    CHECK_INT(r, 0);
    if (p)
        CHECK_INT(p->n_layers, m->n_layers);
    return p;
}

/* The plan fails with code, one line naming needle (and the layer). */
static void plan_bad(const char *json, int code, const char *layer, const char *needle)
{
    _cleanup_manifest_ oci_manifest *m = parse(json);
    if (!m)
        return;
    mv_error e = MV_ERROR_INIT;
    oci_layout_plan *p = (oci_layout_plan *)1;
    CHECK_INT(oci_layout_plan_make(m, NULL, 0, &p, &e), code);
    CHECK(p == NULL);
    if (getenv("MVT_VERBOSE"))
        printf("  %s\n", e.msg);
    CHECK_CONTAINS(e.msg, layer);
    CHECK_CONTAINS(e.msg, needle);
    CHECK(!strchr(e.msg, '\n'));
}

static void check_file(const oci_layout_plan *p, size_t i, const char *path, model_kind kind)
{
    if (!p || i >= p->n_layers) {
        CHECK(false);
        return;
    }
    const oci_layer_plan *l = &p->layers[i];
    CHECK_INT(l->index, i);
    CHECK_INT(l->place, OCI_PLACE_FILE);
    CHECK_INT(l->format, OCI_FMT_RAW);
    CHECK_STR(l->path, path);
    CHECK_INT(l->kind, kind);
    CHECK(!l->whiteouts && !l->skip_reason && !l->unpacked_digest);
}

static void check_unpack(const oci_layout_plan *p, size_t i, oci_layer_format fmt,
                         const char *declared, model_kind kind)
{
    if (!p || i >= p->n_layers) {
        CHECK(false);
        return;
    }
    const oci_layer_plan *l = &p->layers[i];
    CHECK_INT(l->index, i);
    CHECK_INT(l->place, OCI_PLACE_UNPACK);
    CHECK_INT(l->format, fmt);
    CHECK_STR(l->path, "");
    if (declared)
        CHECK_STR(l->declared_path, declared);
    else
        CHECK(l->declared_path == NULL);
    CHECK_INT(l->kind, kind);
    CHECK(!l->executable && !l->skip_reason);
}

static void check_skip(const oci_layout_plan *p, size_t i, const char *why)
{
    if (!p || i >= p->n_layers) {
        CHECK(false);
        return;
    }
    CHECK_INT(p->layers[i].place, OCI_PLACE_SKIP);
    CHECK(p->layers[i].path == NULL);
    CHECK_CONTAINS(p->layers[i].skip_reason, why);
}

/* ---- ModelPack ------------------------------------------------------------- */

/* As modelpush writes it today (push/pack.c): raw layers carry
 * org.cncf.model.filepath, the title and the file metadata; the manifest's
 * artifactType and config are ModelPack's (model-spec mediatype.go). */
static const char MODELPACK[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
    "\"artifactType\":\"application/vnd.cncf.model.manifest.v1+json\","
    "\"config\":{\"mediaType\":\"application/vnd.cncf.model.config.v1+json\",\"digest\":\"" H7 "\","
    "\"s"
    "ize"
    "\":"
    "300"
    "},"
    "\"l"
    "aye"
    "rs"
    "\":"
    "[" LAYER("application/vnd.cncf.model.weight.v1.raw", H1, ANNOS(KV("org.cncf.model.filepath", "model.safetensors") "," KV("org.opencontainers.image.title", "model.safetensors") "," KV("org.cncf.model.file.metadata+json", "{\\\"name\\\":\\\"model.safetensors\\\",\\\"mode\\\":420}"))) "," LAYER(
        "application/vnd.cncf.model.weight.config.v1.raw", H2,
        ANNOS(KV(
            "org.cncf.model.filepath",
            "cfg/./config.json"))) "," LAYER("application/vnd.cncf.model.code.v1.raw", H3,
                                             ANNOS(KV("org.cncf.model.filepath", "run.sh") "," KV(
                                                 "org.cncf.model.file.metadata+json",
                                                 "{\\\"name\\\":\\\"run.sh\\\",\\\"mode\\\":493,"
                                                 "\\\"uid\\\":0}"))) "," LAYER("application/"
                                                                               "vnd.cncf.model."
                                                                               "doc.v1.raw",
                                                                               H4,
                                                                               ANNOS(KV(
                                                                                   "org.cncf."
                                                                                   "model."
                                                                                   "filepath",
                                                                                   "README."
                                                                                   "md") "," KV("or"
                                                                                                "g."
                                                                                                "cn"
                                                                                                "cf"
                                                                                                ".m"
                                                                                                "od"
                                                                                                "el"
                                                                                                ".f"
                                                                                                "il"
                                                                                                "e."
                                                                                                "me"
                                                                                                "ta"
                                                                                                "da"
                                                                                                "ta"
                                                                                                "+j"
                                                                                                "so"
                                                                                                "n",
                                                                                                "{"
                                                                                                "\\"
                                                                                                "\""
                                                                                                "mo"
                                                                                                "de"
                                                                                                "\\"
                                                                                                "\""
                                                                                                ":2"
                                                                                                "54"
                                                                                                "1"
                                                                                                "}"))) "," LAYER("application/vnd.cncf.model.code.v1.tar+gzip",
                                                                                                                 H5,
                                                                                                                 ANNOS(KV(
                                                                                                                     "org.cncf.model.filepath",
                                                                                                                     "src"))) "," LAYER("application/vnd.cncf.model.dataset.v1.tar+zstd",
                                                                                                                                        H6,
                                                                                                                                        "") "]}";

MV_TEST(modelpack_as_today)
{
    _cleanup_layout_plan_ oci_layout_plan *p = plan_ok(MODELPACK, NULL);
    if (!p)
        return;
    CHECK_INT(p->family, OCI_ARTIFACT_MODELPACK);
    CHECK_STR(oci_artifact_family_name(p->family), "modelpack");
    CHECK(p->default_subpath == NULL);
    check_file(p, 0, "model.safetensors", MODEL_KIND_WEIGHT);
    check_file(p, 1, "cfg/config.json", MODEL_KIND_WEIGHT_CONFIG);
    check_file(p, 2, "run.sh", MODEL_KIND_CODE);
    check_file(p, 3, "README.md", MODEL_KIND_DOC);
    check_unpack(p, 4, OCI_FMT_TAR_GZIP, "src", MODEL_KIND_CODE);
    check_unpack(p, 5, OCI_FMT_TAR_ZSTD, NULL, MODEL_KIND_DATASET);
    /* Only a code file keeps its x bit (0755); 0644 does not, and a doc's
     * setuid 04755 (2541) is not code: never executable. */
    CHECK(!p->layers[0].executable);
    CHECK(p->layers[2].executable);
    CHECK(!p->layers[3].executable);
    CHECK(!p->layers[4].whiteouts);
}

/* modctl still writes vnd.cnai.model.* and org.cnai.model.filepath; a raw
 * layer with no path presents nothing, as today. */
MV_TEST(modelpack_cnai_and_unnamed_raw)
{
    static const char J[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"artifactType\":\"application/vnd.cnai.model.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/vnd.cnai.model.config.v1+json\",\"digest\":\"" H7
        "\",\"size\":3},\"layers\":[" LAYER(
            "application/vnd.cnai.model.weight.v1.raw", H1,
            ANNOS(KV("org.cnai.model.filepath",
                     "w.bin"))) "," LAYER("application/vnd.cnai.model.weight.v1.raw", H2,
                                          "") "," LAYER("application/vnd.cnai.model.doc.v1.tar", H3,
                                                        ANNOS(KV("org.cnai.model.filepath",
                                                                 "./"))) "]}";
    _cleanup_layout_plan_ oci_layout_plan *p = plan_ok(J, NULL);
    if (!p)
        return;
    CHECK_INT(p->family, OCI_ARTIFACT_MODELPACK);
    check_file(p, 0, "w.bin", MODEL_KIND_WEIGHT);
    check_skip(p, 1, "without a file path");
    check_unpack(p, 2, OCI_FMT_TAR, NULL, MODEL_KIND_DOC);
}

/* ---- container images (modelcars) ------------------------------------------ */

MV_TEST(modelcar_images_as_today)
{
    /* docker build's Docker v2 manifest, and an OCI one (podman/buildah). */
    static const char DOCKER[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/"
        "vnd.docker.distribution.manifest.v2+json\","
        "\"config\":{\"mediaType\":\"application/"
        "vnd.docker.container.image.v1+json\",\"digest\":\"" H7
        "\",\"size\":1000},\"layers\":[" LAYER(
            "application/vnd.docker.image.rootfs.diff.tar.gzip", H1,
            "") "," LAYER("application/vnd.docker.image.rootfs.diff.tar.gzip", H2, "") "]}";
    static const char OCI[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" H7
        "\",\"size\":1000},\"layers\":[" LAYER(
            "application/vnd.oci.image.layer.v1.tar", H1,
            "") "," LAYER("application/vnd.oci.image.layer.v1.tar+zstd", H2,
                          "") "," LAYER("application/"
                                        "vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                                        H3, "") "]}";
    const char *docs[] = {DOCKER, OCI};
    const oci_layer_format fmts[][3] = {
        {OCI_FMT_TAR_GZIP, OCI_FMT_TAR_GZIP},
        {OCI_FMT_TAR, OCI_FMT_TAR_ZSTD, OCI_FMT_TAR_GZIP},
    };
    for (size_t d = 0; d < 2; d++) {
        _cleanup_layout_plan_ oci_layout_plan *p = plan_ok(docs[d], NULL);
        if (!p)
            continue;
        CHECK_INT(p->family, OCI_ARTIFACT_IMAGE);
        CHECK_STR(p->default_subpath, "models");
        for (size_t i = 0; i < p->n_layers; i++) {
            check_unpack(p, i, fmts[d][i], NULL, MODEL_KIND_NONE);
            CHECK(p->layers[i].whiteouts);
        }
    }
}

/* ---- ORAS -------------------------------------------------------------------- */

/* `oras push REF hello.txt weights/` (oras 1.2, oras-go v2 content/file):
 * artifactType application/vnd.unknown.artifact.v1, the empty config; a
 * file is application/vnd.oci.image.layer.v1.tar holding the raw bytes,
 * titled; a directory is tar+gzip, titled, with the unpack flag and the
 * uncompressed tar's digest. */
static const char ORAS[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
    "\"artifactType\":\"application/vnd.unknown.artifact.v1\","
    "\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\"" EMPTY_DIGEST
    "\",\"size\":2,\"data\":\"e30=\"},\"layers\":[" LAYER(
        "application/vnd.oci.image.layer.v1.tar", H1,
        ANNOS(KV("org.opencontainers.image.title",
                 "hello.txt"))) "," LAYER("application/vnd.oci.image.layer.v1.tar+gzip", H2,
                                          ANNOS(KV("io.deis.oras.content.digest", H3) "," KV(
                                              "io.deis.oras.content.unpack",
                                              "true") "," KV("org.opencontainers.image.title",
                                                             "weights"))) "],"
                                                                          "\"annotations\":{\"org."
                                                                          "opencontainers.image."
                                                                          "created\":\"2026-01-"
                                                                          "01T00:00:00Z\"}}";

MV_TEST(oras_files_and_directories)
{
    _cleanup_layout_plan_ oci_layout_plan *p = plan_ok(ORAS, NULL);
    if (!p)
        return;
    CHECK_INT(p->family, OCI_ARTIFACT_ORAS);
    CHECK_STR(oci_artifact_family_name(p->family), "oras");
    CHECK(p->default_subpath == NULL);
    /* The tar media type does not make it a tar: the title makes it a file. */
    check_file(p, 0, "hello.txt", MODEL_KIND_NONE);
    check_unpack(p, 1, OCI_FMT_TAR_GZIP, "weights", MODEL_KIND_NONE);
    if (p->n_layers == 2) {
        CHECK_STR(p->layers[1].unpacked_digest, H3);
        CHECK(p->layers[1].confined);
        CHECK(!p->layers[1].whiteouts);
    }
}

/* Older oras (image-spec 1.0 manifests) has no artifactType and an unknown
 * config type; a custom type and an untitled layer. oras-go gzips every
 * directory whatever the type says, so a ".tar" type still unpacks gzip. */
MV_TEST(oras_legacy_config_custom_types_untitled)
{
    static const char J[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/"
        "vnd.unknown.config.v1+json\",\"digest\":\"" EMPTY_DIGEST
        "\",\"size\":2},\"layers\":[" LAYER("application/vnd.example.model", H1, ANNOS(KV("org.opencontainers.image.title", "m/model.bin"))) "," LAYER(
            "application/vnd.example.data", H2,
            "") "," LAYER("application/vnd.example.dir.tar", H3,
                          ANNOS(KV("io.deis.oras.content.unpack", "true") "," KV(
                              "org.opencontainers.image.title",
                              "data"))) "," LAYER("application/vnd.example.dir+zstd", H4,
                                                  ANNOS(KV("io.deis.oras.content.unpack", "true") "," KV(
                                                      "org.opencontainers.image.title",
                                                      "more"))) "," LAYER("application/"
                                                                          "vnd.oci.image.layer.v1."
                                                                          "tar+gzip",
                                                                          H5,
                                                                          ANNOS(KV(
                                                                              "io.deis.oras."
                                                                              "content.unpack",
                                                                              "false") "," KV("org."
                                                                                              "open"
                                                                                              "cont"
                                                                                              "aine"
                                                                                              "rs."
                                                                                              "imag"
                                                                                              "e."
                                                                                              "titl"
                                                                                              "e",
                                                                                              "arch"
                                                                                              "ive."
                                                                                              "tg"
                                                                                              "z"))) "]}";
    _cleanup_layout_plan_ oci_layout_plan *p = plan_ok(J, NULL);
    if (!p)
        return;
    CHECK_INT(p->family, OCI_ARTIFACT_ORAS);
    check_file(p, 0, "m/model.bin", MODEL_KIND_NONE);
    check_skip(p, 1, "untitled ORAS layer");
    check_unpack(p, 2, OCI_FMT_TAR_GZIP, "data", MODEL_KIND_NONE);
    check_unpack(p, 3, OCI_FMT_TAR_ZSTD, "more", MODEL_KIND_NONE);
    check_file(p, 4, "archive.tgz", MODEL_KIND_NONE);
    if (p->n_layers == 5)
        CHECK(p->layers[2].unpacked_digest == NULL);
}

/* An image config with titled image layers is what `oras push --config
 * c.json:application/vnd.oci.image.config.v1+json f.txt` makes: no builder
 * titles layers, so it is ORAS, not a modelcar. */
MV_TEST(titled_layers_under_an_image_config_are_oras_files)
{
    static const char J[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" H7
        "\",\"size\":20},\"layers\":[" LAYER(
            "application/vnd.oci.image.layer.v1.tar", H1,
            ANNOS(KV("org.opencontainers.image.title", "f.txt"))) "]}";
    _cleanup_layout_plan_ oci_layout_plan *p = plan_ok(J, NULL);
    if (!p)
        return;
    CHECK_INT(p->family, OCI_ARTIFACT_ORAS);
    CHECK(p->default_subpath == NULL);
    check_file(p, 0, "f.txt", MODEL_KIND_NONE);
}

/* ---- KitOps ------------------------------------------------------------------- */

/* `kit pack` (kitops-ml/kitops): artifactType and config from
 * constants/mediatype/{artifacttype,kitops}.go; tar layers carry
 * org.cncf.model.filepath = the Kitfile path, "." for the whole context
 * (filesystem/tar.go, util.go fillDescAnnotations); a raw layer carries
 * the file metadata too (filesystem/raw.go). */
static const char KITOPS[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
    "\"artifactType\":\"application/vnd.kitops.modelkit.manifest.v1+json\","
    "\"config\":{\"mediaType\":\"application/vnd.kitops.modelkit.config.v1+json\",\"digest\":\"" H7
    "\",\"size\":500},\"layers\":[" LAYER("application/vnd.kitops.modelkit.model.v1.tar+gzip", H1, ANNOS(KV("org.cncf.model.filepath", "models/tiny.gguf"))) "," LAYER(
        "application/vnd.kitops.modelkit.modelpart.v1.tar", H2,
        ANNOS(KV(
            "org.cncf.model.filepath",
            "models/lora"))) "," LAYER("application/vnd.kitops.modelkit.dataset.v1.tar+zstd", H3,
                                       ANNOS(KV(
                                           "org.cncf.model.filepath",
                                           "data"))) "," LAYER("application/"
                                                               "vnd.kitops.modelkit.code.v1.tar+"
                                                               "gzip",
                                                               H4,
                                                               ANNOS(KV(
                                                                   "org.cncf.model.filepath",
                                                                   "."))) "," LAYER("application/"
                                                                                    "vnd.kitops."
                                                                                    "modelkit.docs."
                                                                                    "v1.tar+gzip",
                                                                                    H5,
                                                                                    ANNOS(KV(
                                                                                        "org.cncf."
                                                                                        "model."
                                                                                        "filepath",
                                                                                        "README."
                                                                                        "md"))) "," LAYER("application/vnd.kitops.modelkit.code.v1.raw",
                                                                                                          H6,
                                                                                                          ANNOS(KV("org.cncf.model.file.metadata+json", "{\\\"name\\\":\\\"serve.py\\\",\\\"mode\\\":493,\\\"typeflag\\\":0}") "," KV(
                                                                                                              "org.cncf.model.filepath",
                                                                                                              "bin/serve.py"))) "]}";

MV_TEST(kitops_modelkit)
{
    _cleanup_layout_plan_ oci_layout_plan *p = plan_ok(KITOPS, NULL);
    if (!p)
        return;
    CHECK_INT(p->family, OCI_ARTIFACT_KITOPS);
    CHECK_STR(oci_artifact_family_name(p->family), "kitops");
    check_unpack(p, 0, OCI_FMT_TAR_GZIP, "models/tiny.gguf", MODEL_KIND_WEIGHT);
    check_unpack(p, 1, OCI_FMT_TAR, "models/lora", MODEL_KIND_WEIGHT);
    check_unpack(p, 2, OCI_FMT_TAR_ZSTD, "data", MODEL_KIND_DATASET);
    check_unpack(p, 3, OCI_FMT_TAR_GZIP, NULL, MODEL_KIND_CODE);
    check_unpack(p, 4, OCI_FMT_TAR_GZIP, "README.md", MODEL_KIND_DOC);
    check_file(p, 5, "bin/serve.py", MODEL_KIND_CODE);
    if (p->n_layers == 6)
        CHECK(p->layers[5].executable);
}

/* Older kit: no artifactType, the config type alone says ModelKit. And a
 * ModelKit packed as ModelPack (kit pack --use-model-pack) is ModelPack. */
MV_TEST(kitops_by_config_and_as_modelpack)
{
    static const char OLD[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/"
        "vnd.kitops.modelkit.config.v1+json\",\"digest\":\"" H7
        "\",\"size\":5},\"layers\":[" LAYER("application/vnd.kitops.modelkit.model.v1.tar+gzip", H1,
                                            ANNOS(KV("org.cncf.model.filepath", "m.gguf"))) "]}";
    static const char MP[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"artifactType\":\"application/vnd.cncf.model.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/vnd.cncf.model.config.v1+json\",\"digest\":\"" H7
        "\",\"size\":5},\"layers\":[" LAYER("application/vnd.cncf.model.weight.v1.tar", H1,
                                            ANNOS(KV("org.cncf.model.filepath", "m.gguf"))) "]}";
    _cleanup_layout_plan_ oci_layout_plan *p = plan_ok(OLD, NULL);
    if (p) {
        CHECK_INT(p->family, OCI_ARTIFACT_KITOPS);
        check_unpack(p, 0, OCI_FMT_TAR_GZIP, "m.gguf", MODEL_KIND_WEIGHT);
    }
    _cleanup_layout_plan_ oci_layout_plan *q = plan_ok(MP, NULL);
    if (q) {
        CHECK_INT(q->family, OCI_ARTIFACT_MODELPACK);
        check_unpack(q, 0, OCI_FMT_TAR, "m.gguf", MODEL_KIND_WEIGHT);
    }
}

/* kit pack leaves a path another Kitfile layer packs out of a layer's tar
 * (filesystem/tar.go, ignore.Matches), so a raw doc inside the model
 * directory is no conflict; only an ORAS directory is filled alone. */
MV_TEST(kitops_file_inside_a_layer_directory)
{
    static const char J[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"artifactType\":\"application/vnd.kitops.modelkit.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/"
        "vnd.kitops.modelkit.config.v1+json\",\"digest\":\"" H7 "\",\"size\":5},\"layers\":[" LAYER(
            "application/vnd.kitops.modelkit.model.v1.tar", H1,
            ANNOS(KV("org.cncf.model.filepath",
                     "models"))) "," LAYER("application/vnd.kitops.modelkit.docs.v1.raw", H2,
                                           ANNOS(KV("org.cncf.model.filepath",
                                                    "models/README.md"))) "]}";
    _cleanup_layout_plan_ oci_layout_plan *p = plan_ok(J, NULL);
    if (!p)
        return;
    check_unpack(p, 0, OCI_FMT_TAR, "models", MODEL_KIND_WEIGHT);
    check_file(p, 1, "models/README.md", MODEL_KIND_DOC);
    CHECK(!p->layers[0].confined);
    /* The same file as the tar's own path is still two layers at one path. */
    static const char SAME[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/"
        "vnd.kitops.modelkit.config.v1+json\",\"digest\":\"" H7 "\",\"size\":5},\"layers\":[" LAYER(
            "application/vnd.kitops.modelkit.model.v1.tar", H1,
            ANNOS(KV("org.cncf.model.filepath",
                     "m.gguf"))) "," LAYER("application/vnd.kitops.modelkit.model.v1.raw", H2,
                                           ANNOS(KV("org.cncf.model.filepath", "m.gguf"))) "]}";
    plan_bad(SAME, -EINVAL, "layer 1 (" H2 ")", "is the path layer 0 (" H1 ") unpacks into");
}

/* ---- Docker Model Runner ------------------------------------------------------ */

/* `docker model package` before filepath annotations (config v0.1): layer
 * types from pkg/distribution/types/config.go, no names. The names are
 * those bundle/unpack.go gives: model-%05d-of-%05d.gguf for shards in layer
 * order, model.mmproj, template.jinja; the vLLM config tar and dir tars are
 * extracted into the model directory, our root. */
static const char DMR_V01[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
    "\"config\":{\"mediaType\":\"application/"
    "vnd.docker.ai.model.config.v0.1+json\",\"digest\":\"" H7
    "\",\"size\":400},\"layers\":[" LAYER("application/vnd.docker.ai.gguf.v3", H1, "") "," LAYER(
        "application/vnd.docker.ai.gguf.v3", H2,
        "") "," LAYER("application/vnd.docker.ai.license", H3,
                      "") "," LAYER("application/vnd.docker.ai.mmproj", H4,
                                    "") "," LAYER("application/vnd.docker.ai.chat.template.jinja",
                                                  H5,
                                                  "") "," LAYER("application/vnd.docker.ai.license",
                                                                H6, "") "]}";

MV_TEST(dmr_legacy_names)
{
    static const char CONFIG[] = "{\"config\":{\"format\":\"gguf\",\"quantization\":\"Q4_K_M\"},"
                                 "\"descriptor\":{},\"rootfs\":{\"type\":\"rootfs\"}}";
    _cleanup_layout_plan_ oci_layout_plan *p = plan_ok(DMR_V01, CONFIG);
    if (!p)
        return;
    CHECK_INT(p->family, OCI_ARTIFACT_DMR);
    CHECK_STR(oci_artifact_family_name(p->family), "docker-model-runner");
    check_file(p, 0, "model-00001-of-00002.gguf", MODEL_KIND_WEIGHT);
    check_file(p, 1, "model-00002-of-00002.gguf", MODEL_KIND_WEIGHT);
    check_file(p, 2, "LICENSE", MODEL_KIND_DOC);
    check_file(p, 3, "model.mmproj", MODEL_KIND_WEIGHT);
    check_file(p, 4, "template.jinja", MODEL_KIND_WEIGHT_CONFIG);
    check_file(p, 5, "LICENSE-2", MODEL_KIND_DOC);
}

/* `docker model package --safetensors-dir` sends each non-weight file as
 * application/vnd.docker.ai.model.file, named by org.cncf.model.filepath
 * (docker/model-runner types/config.go). */
MV_TEST(dmr_model_file_layers)
{
    // clang-format off
    static const char M[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/vnd.docker.ai.model.config.v0.2+json\","
        "\"digest\":\"" H7 "\",\"size\":4},\"layers\":["
        LAYER("application/vnd.docker.ai.safetensors", H1,
              ANNOS(KV("org.cncf.model.filepath", "model.safetensors"))) ","
        LAYER("application/vnd.docker.ai.model.file", H2,
              ANNOS(KV("org.cncf.model.filepath", "text_encoder/config.json"))) ","
        LAYER("application/vnd.docker.ai.model.file", H3, "") "]}";
    // clang-format on
    _cleanup_layout_plan_ oci_layout_plan *p = plan_ok(M, NULL);
    if (!p)
        return;
    check_file(p, 0, "model.safetensors", MODEL_KIND_WEIGHT);
    check_file(p, 1, "text_encoder/config.json", MODEL_KIND_WEIGHT_CONFIG);
    check_skip(p, 2, "without org.cncf.model.filepath");
}

MV_TEST(dmr_single_gguf_safetensors_and_tars)
{
    static const char ONE[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/"
        "vnd.docker.ai.model.config.v0.1+json\",\"digest\":\"" H7
        "\",\"size\":4},\"layers\":[" LAYER("application/vnd.docker.ai.gguf.v3", H1, "") "," LAYER(
            "application/vnd.docker.ai.mmproj", H2,
            "") "," LAYER("application/vnd.docker.ai.mmproj", H3, "") "]}";
    _cleanup_layout_plan_ oci_layout_plan *p = plan_ok(ONE, NULL);
    if (p) {
        check_file(p, 0, "model.gguf", MODEL_KIND_WEIGHT);
        check_file(p, 1, "model.mmproj", MODEL_KIND_WEIGHT);
        check_skip(p, 2, "only the first unnamed projector");
    }
    /* config v0.2 (nested directories): safetensors named by
     * org.cncf.model.filepath, with the vLLM config tar and a dir tar. */
    static const char V02[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/"
        "vnd.docker.ai.model.config.v0.2+json\",\"digest\":\"" H7
        "\",\"size\":4},\"layers\":[" LAYER("application/vnd.docker.ai.safetensors", H1, ANNOS(KV("org.cncf.model.filepath", "text_encoder/model.safetensors"))) "," LAYER(
            "application/vnd.docker.ai.safetensors", H2,
            ANNOS(KV(
                "org.cncf.model.filepath",
                "unet/model.safetensors"))) "," LAYER("application/vnd.docker.ai.vllm.config.tar",
                                                      H3,
                                                      "") "," LAYER("application/"
                                                                    "vnd.docker.ai.dir.tar",
                                                                    H4,
                                                                    ANNOS(KV(
                                                                        "org.cncf.model.filepath",
                                                                        "tokenizer"))) "," LAYER("a"
                                                                                                 "p"
                                                                                                 "p"
                                                                                                 "l"
                                                                                                 "i"
                                                                                                 "c"
                                                                                                 "a"
                                                                                                 "t"
                                                                                                 "i"
                                                                                                 "o"
                                                                                                 "n"
                                                                                                 "/"
                                                                                                 "v"
                                                                                                 "n"
                                                                                                 "d"
                                                                                                 "."
                                                                                                 "d"
                                                                                                 "o"
                                                                                                 "c"
                                                                                                 "k"
                                                                                                 "e"
                                                                                                 "r"
                                                                                                 "."
                                                                                                 "a"
                                                                                                 "i"
                                                                                                 "."
                                                                                                 "d"
                                                                                                 "d"
                                                                                                 "u"
                                                                                                 "f",
                                                                                                 H5,
                                                                                                 "") "]}";
    _cleanup_layout_plan_ oci_layout_plan *q = plan_ok(V02, NULL);
    if (q) {
        CHECK_INT(q->family, OCI_ARTIFACT_DMR);
        check_file(q, 0, "text_encoder/model.safetensors", MODEL_KIND_WEIGHT);
        check_file(q, 1, "unet/model.safetensors", MODEL_KIND_WEIGHT);
        check_unpack(q, 2, OCI_FMT_TAR, NULL, MODEL_KIND_WEIGHT_CONFIG);
        check_unpack(q, 3, OCI_FMT_TAR, "tokenizer", MODEL_KIND_WEIGHT_CONFIG);
        /* bundle/unpack.go: the blob's file name, its digest's hex in the
         * store (store/blobs.go), plus ".dduf". */
        check_file(q, 4, "5555555555555555555555555555555555555555555555555555555555555555.dduf",
                   MODEL_KIND_WEIGHT);
    }
    /* Unnamed safetensors: model.safetensors, or shards. */
    static const char ST[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/"
        "vnd.docker.ai.model.config.v0.1+json\",\"digest\":\"" H7
        "\",\"size\":4},\"layers\":[" LAYER("application/vnd.docker.ai.safetensors", H1, "") "]}";
    _cleanup_layout_plan_ oci_layout_plan *r = plan_ok(ST, NULL);
    if (r)
        check_file(r, 0, "model.safetensors", MODEL_KIND_WEIGHT);
}

/* ---- Ollama --------------------------------------------------------------------- */

/* `ollama push` (server/images.go PushModel): a Docker v2 manifest, the
 * Docker image config type, vnd.ollama.image.* layers with no names. */
static const char OLLAMA[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\","
    "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"digest\":\"" H7
    "\",\"size\":485},\"layers\":[" LAYER("application/vnd.ollama.image.model", H1, "") "," LAYER(
        "application/vnd.ollama.image.template", H2,
        "") "," LAYER("application/vnd.ollama.image.license", H3,
                      "") "," LAYER("application/vnd.ollama.image.license", H4,
                                    "") "," LAYER("application/vnd.ollama.image.params", H5,
                                                  "") "," LAYER("application/"
                                                                "vnd.ollama.image.projector",
                                                                H6, "") "]}";

MV_TEST(ollama_names)
{
    _cleanup_layout_plan_ oci_layout_plan *p = plan_ok(OLLAMA, NULL);
    if (!p)
        return;
    CHECK_INT(p->family, OCI_ARTIFACT_OLLAMA);
    CHECK_STR(oci_artifact_family_name(p->family), "ollama");
    CHECK(p->default_subpath == NULL);
    check_file(p, 0, "model.gguf", MODEL_KIND_WEIGHT);
    check_file(p, 1, "template.tmpl", MODEL_KIND_WEIGHT_CONFIG);
    check_file(p, 2, "LICENSE", MODEL_KIND_DOC);
    check_file(p, 3, "LICENSE-2", MODEL_KIND_DOC);
    check_file(p, 4, "params.json", MODEL_KIND_WEIGHT_CONFIG);
    check_file(p, 5, "projector.gguf", MODEL_KIND_WEIGHT);
}

/* The rest of GetModel's switch: system, messages, adapters, drafts, the
 * template's old name "prompt" (the last of one field wins), split model
 * layers, and the ignored embed layer. */
MV_TEST(ollama_every_layer_type)
{
    static const char J[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/"
        "vnd.docker.distribution.manifest.v2+json\","
        "\"config\":{\"mediaType\":\"application/"
        "vnd.docker.container.image.v1+json\",\"digest\":\"" H7
        "\",\"size\":485},\"layers\":[" LAYER("application/vnd.ollama.image.model", H1, "") "," LAYER("application/vnd.ollama.image.model", H2, "") "," LAYER(
            "application/vnd.ollama.image.prompt", H3,
            "") "," LAYER("application/vnd.ollama.image.template", H4,
                          "") "," LAYER("application/vnd.ollama.image.system", H5,
                                        "") "," LAYER("application/vnd.ollama.image.messages", H6,
                                                      "") "," LAYER("application/"
                                                                    "vnd.ollama.image.adapter",
                                                                    H1,
                                                                    "") "," LAYER("application/"
                                                                                  "vnd.ollama."
                                                                                  "image.adapter",
                                                                                  H2,
                                                                                  "") "," LAYER("ap"
                                                                                                "pl"
                                                                                                "ic"
                                                                                                "at"
                                                                                                "io"
                                                                                                "n/"
                                                                                                "vn"
                                                                                                "d."
                                                                                                "ol"
                                                                                                "la"
                                                                                                "ma"
                                                                                                ".i"
                                                                                                "ma"
                                                                                                "ge"
                                                                                                ".d"
                                                                                                "ra"
                                                                                                "f"
                                                                                                "t",
                                                                                                H3,
                                                                                                "") "," LAYER("application/vnd.ollama.image.embed",
                                                                                                              H4,
                                                                                                              "") "," LAYER("application/vnd.ollama.image.projector",
                                                                                                                            H5,
                                                                                                                            "") "," LAYER("application/vnd.ollama.image.projector",
                                                                                                                                          H6,
                                                                                                                                          "") "]}";
    _cleanup_layout_plan_ oci_layout_plan *p = plan_ok(J, NULL);
    if (!p)
        return;
    check_file(p, 0, "model-00001-of-00002.gguf", MODEL_KIND_WEIGHT);
    check_file(p, 1, "model-00002-of-00002.gguf", MODEL_KIND_WEIGHT);
    check_skip(p, 2, "superseded");
    check_file(p, 3, "template.tmpl", MODEL_KIND_WEIGHT_CONFIG);
    check_file(p, 4, "system.txt", MODEL_KIND_WEIGHT_CONFIG);
    check_file(p, 5, "messages.json", MODEL_KIND_WEIGHT_CONFIG);
    check_file(p, 6, "adapter.gguf", MODEL_KIND_WEIGHT);
    check_file(p, 7, "adapter-2.gguf", MODEL_KIND_WEIGHT);
    check_file(p, 8, "draft.gguf", MODEL_KIND_WEIGHT);
    check_skip(p, 9, "embed");
    check_file(p, 10, "projector.gguf", MODEL_KIND_WEIGHT);
    check_file(p, 11, "projector-2.gguf", MODEL_KIND_WEIGHT);
}

/* ---- the rest ------------------------------------------------------------------ */

MV_TEST(an_index_or_no_layers)
{
    static const char IDX[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
        "\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"digest\":\"" H1 "\",\"size\":10}]}";
    _cleanup_manifest_ oci_manifest *m = parse(IDX);
    mv_error e = MV_ERROR_INIT;
    oci_layout_plan *p = NULL;
    if (m) {
        CHECK_INT(oci_layout_plan_make(m, NULL, 0, &p, &e), -EINVAL);
        CHECK_CONTAINS(e.msg, "index");
    }
    static const char NONE[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"artifactType\":\"application/vnd.example.sbom\","
        "\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\"" EMPTY_DIGEST
        "\",\"size\":2},\"layers\":[]}";
    _cleanup_layout_plan_ oci_layout_plan *q = plan_ok(NONE, NULL);
    if (q) {
        CHECK_INT(q->family, OCI_ARTIFACT_ORAS);
        CHECK_INT(q->n_layers, 0);
    }
}

MV_TEST(kind_words)
{
    static const struct {
        const char *word;
        model_kind kind;
    } words[] = {{"weights", MODEL_KIND_WEIGHT},
                 {"config", MODEL_KIND_WEIGHT_CONFIG},
                 {"docs", MODEL_KIND_DOC},
                 {"code", MODEL_KIND_CODE},
                 {"datasets", MODEL_KIND_DATASET}};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        mv_error e = MV_ERROR_INIT;
        model_kind k = MODEL_KIND_NONE;
        CHECK_INT(oci_kind_parse(words[i].word, &k, &e), 0);
        CHECK_INT(k, words[i].kind);
        CHECK_STR(oci_kind_filter_name(words[i].kind), words[i].word);
    }
    const char *bad[] = {"weight", "Weights", "", "none", "weights,docs"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mv_error e = MV_ERROR_INIT;
        model_kind k = MODEL_KIND_NONE;
        CHECK_INT(oci_kind_parse(bad[i], &k, &e), -EINVAL);
        CHECK_CONTAINS(e.msg, "is not one of weights, config, docs, code, datasets");
    }
    CHECK(oci_kind_filter_name(MODEL_KIND_NONE) == NULL);
    CHECK(oci_kind_filter_name((model_kind)99) == NULL);
    CHECK_STR(oci_artifact_family_name(OCI_ARTIFACT_UNKNOWN), "unknown");
}

/* ---- hostile and contradictory manifests -------------------------------------- */

#define ORAS_HEAD                                                                                  \
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","           \
    "\"artifactType\":\"application/vnd.unknown.artifact.v1\","                                    \
    "\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\"" EMPTY_DIGEST   \
    "\",\"size\":2},\"layers\":["
#define TITLED(mt, dg, t) LAYER(mt, dg, ANNOS(KV("org.opencontainers.image.title", t)))
#define UNPACKED(mt, dg, t)                                                                        \
    LAYER(mt, dg,                                                                                  \
          ANNOS(KV("org.opencontainers.image.title", t) "," KV("io.deis.oras.content.unpack",      \
                                                               "true")))
#define FILE_MT "application/vnd.oci.image.layer.v1.tar"
#define DIR_MT  "application/vnd.oci.image.layer.v1.tar+gzip"

MV_TEST(paths_that_leave_the_tree)
{
    plan_bad(ORAS_HEAD TITLED(FILE_MT, H1, "ok.txt") "," TITLED(FILE_MT, H2, "../etc/passwd") "]}",
             -EINVAL, "layer 1 (" H2 ")", "contains \"..\"");
    plan_bad(ORAS_HEAD TITLED(FILE_MT, H1, "a/../../x") "]}", -EINVAL, "layer 0 (" H1 ")",
             "contains \"..\"");
    plan_bad(ORAS_HEAD TITLED(FILE_MT, H1, "/etc/passwd") "]}", -EINVAL, "layer 0 (" H1 ")",
             "is absolute");
    /* The same in a directory's title, and in ModelPack and DMR names. */
    plan_bad(ORAS_HEAD UNPACKED(DIR_MT, H3, "../w") "]}", -EINVAL, "layer 0 (" H3 ")",
             "contains \"..\"");
    plan_bad(
        "{\"schemaVersion\":2,\"artifactType\":\"application/vnd.cncf.model.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/vnd.cncf.model.config.v1+json\",\"digest\":\"" H7
        "\",\"size\":3},\"layers\":[" LAYER("application/vnd.cncf.model.weight.v1.raw", H4,
                                            ANNOS(KV("org.cncf.model.filepath", "/abs"))) "]}",
        -EINVAL, "layer 0 (" H4 ")", "is absolute");
    plan_bad("{\"schemaVersion\":2,"
             "\"config\":{\"mediaType\":\"application/vnd.docker.ai.model.config.v0.2+json\","
             "\"digest\":\"" H7 "\",\"size\":3},\"layers\":[" LAYER(
                 "application/vnd.docker.ai.safetensors", H5,
                 ANNOS(KV("org.cncf.model.filepath", "x/../../y"))) "]}",
             -EINVAL, "layer 0 (" H5 ")", "contains \"..\"");
}

MV_TEST(two_layers_one_path)
{
    plan_bad(ORAS_HEAD TITLED(FILE_MT, H1, "model.bin") "," TITLED(FILE_MT, H2, "x") "," TITLED(
                 FILE_MT, H3, "./model.bin") "]}",
             -EINVAL, "layer 2 (" H3 ")", "file path \"model.bin\" is also layer 0's (" H1 ")");
    /* A legacy DMR name colliding with a named layer. */
    plan_bad("{\"schemaVersion\":2,"
             "\"config\":{\"mediaType\":\"application/vnd.docker.ai.model.config.v0.1+json\","
             "\"digest\":\"" H7 "\",\"size\":3},\"layers\":[" LAYER(
                 "application/vnd.docker.ai.gguf.v3", H1,
                 "") "," LAYER("application/vnd.docker.ai.license", H2,
                               ANNOS(KV("org.cncf.model.filepath", "model.gguf"))) "]}",
             -EINVAL, "layer 1 (" H2 ")", "is also layer 0's");
}

MV_TEST(a_file_where_a_directory_is)
{
    /* A title naming the directory an unpacked tar fills, either order. */
    plan_bad(ORAS_HEAD UNPACKED(DIR_MT, H1, "weights") "," TITLED(FILE_MT, H2, "weights") "]}",
             -EINVAL, "layer 1 (" H2 ")", "is the directory layer 0 (" H1 ") unpacks into");
    plan_bad(ORAS_HEAD TITLED(FILE_MT, H2, "weights") "," UNPACKED(DIR_MT, H1, "weights/") "]}",
             -EINVAL, "layer 0 (" H2 ")", "is the directory layer 1 (" H1 ") unpacks into");
    /* A file inside it. */
    plan_bad(
        ORAS_HEAD UNPACKED(DIR_MT, H1, "weights") "," TITLED(FILE_MT, H2, "weights/a/b.bin") "]}",
        -EINVAL, "layer 1 (" H2 ")", "is inside the directory layer 0 (" H1 ") unpacks into");
    /* A file that would have to be a directory for another file. */
    plan_bad(ORAS_HEAD TITLED(FILE_MT, H1, "a/b/c") "," TITLED(FILE_MT, H2, "a/b") "]}", -EINVAL,
             "layer 1 (" H2 ")", "is a directory in layer 0's path \"a/b/c\"");
    /* A directory inside a file's path, too. */
    plan_bad(ORAS_HEAD TITLED(FILE_MT, H1, "w") "," UNPACKED(DIR_MT, H2, "w/sub") "]}", -EINVAL,
             "layer 0 (" H1 ")", "is a directory in layer 1's path \"w/sub\"");
    /* Two tars filling one directory, or nested ones, are fine. */
    _cleanup_layout_plan_ oci_layout_plan *p =
        plan_ok(ORAS_HEAD UNPACKED(DIR_MT, H1, "w") "," UNPACKED(DIR_MT, H2, "w") "," UNPACKED(
                    DIR_MT, H3, "w/x") "," TITLED(FILE_MT, H4, "wx") "]}",
                NULL);
    CHECK(p != NULL);
}

MV_TEST(unpack_flag_on_a_blob_that_is_not_a_tar)
{
    const char *types[] = {"application/vnd.cncf.model.weight.v1.raw",
                           "application/vnd.docker.ai.gguf.v3",
                           "application/octet-stream",
                           "application/vnd.ollama.image.model",
                           "application/vnd.example+json",
                           "text/plain"};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        char json[2048];
        snprintf(json, sizeof(json),
                 ORAS_HEAD TITLED(FILE_MT, H1, "a") ","
                                                    "{\"mediaType\":\"%s\",\"digest\":\"" H2
                                                    "\",\"size\":1,\"annotations\":{"
                                                    "\"io.deis.oras.content.unpack\":\"true\","
                                                    "\"org.cncf.model.filepath\":\"w\",\"org."
                                                    "opencontainers.image.title\":\"w\"}}]}",
                 types[i]);
        plan_bad(json, -EINVAL, "layer 1 (" H2 ")",
                 "io.deis.oras.content.unpack=true on media type");
        plan_bad(json, -EINVAL, types[i], "which is not a tar");
    }
    /* A bad digest to check the tar against. */
    plan_bad(ORAS_HEAD LAYER(DIR_MT, H1,
                             ANNOS(KV("org.opencontainers.image.title", "w") "," KV(
                                 "io.deis.oras.content.unpack",
                                 "true") "," KV("io.deis.oras.content.digest", "sha256:xyz"))) "]}",
             -EINVAL, "layer 0 (" H1 ")", "io.deis.oras.content.digest");
}

MV_TEST(unknown_formats_of_known_families)
{
    plan_bad(
        "{\"schemaVersion\":2,\"artifactType\":\"application/vnd.cncf.model.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/vnd.cncf.model.config.v1+json\",\"digest\":\"" H7
        "\",\"size\":3},\"layers\":[" LAYER("application/vnd.cncf.model.weight.v1.tar+lz4", H1,
                                            "") "]}",
        -ENOTSUP, "layer 0 (" H1 ")", "application/vnd.cncf.model.weight.v1.tar+lz4");
    plan_bad("{\"schemaVersion\":2,\"config\":{\"mediaType\":"
             "\"application/vnd.kitops.modelkit.config.v1+json\",\"digest\":\"" H7
             "\",\"size\":3},\"layers\":[" LAYER("application/vnd.kitops.modelkit.prompts.v1.tar",
                                                 H2, "") "]}",
             -ENOTSUP, "layer 0 (" H2 ")", "application/vnd.kitops.modelkit.prompts.v1.tar");
    /* A compressed raw KitOps file cannot be presented zero-copy. */
    plan_bad("{\"schemaVersion\":2,\"config\":{\"mediaType\":"
             "\"application/vnd.kitops.modelkit.config.v1+json\",\"digest\":\"" H7
             "\",\"size\":3},\"layers\":[" LAYER(
                 "application/vnd.kitops.modelkit.model.v1.raw+gzip", H2, "") "]}",
             -ENOTSUP, "layer 0 (" H2 ")", "unsupported KitOps media type");
    plan_bad("{\"schemaVersion\":2,\"config\":{\"mediaType\":"
             "\"application/vnd.docker.ai.model.config.v0.1+json\",\"digest\":\"" H7
             "\",\"size\":3},\"layers\":[" LAYER("application/vnd.docker.ai.onnx", H3, "") "]}",
             -ENOTSUP, "layer 0 (" H3 ")", "application/vnd.docker.ai.onnx");
    plan_bad(
        "{\"schemaVersion\":2,\"config\":{\"mediaType\":"
        "\"application/vnd.docker.container.image.v1+json\",\"digest\":\"" H7
        "\",\"size\":3},\"layers\":[" LAYER("application/vnd.ollama.image.model", H1, "") "," LAYER(
            "application/vnd.ollama.image.tensor; name=w; dtype=BF16", H4, "") "]}",
        -ENOTSUP, "layer 1 (" H4 ")", "unsupported Ollama media type");
    plan_bad("{\"schemaVersion\":2,\"config\":{\"mediaType\":"
             "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" H7
             "\",\"size\":3},\"layers\":[" LAYER("application/vnd.oci.image.layer.v1.tar+lz4", H5,
                                                 "") "]}",
             -ENOTSUP, "layer 0 (" H5 ")", "application/vnd.oci.image.layer.v1.tar+lz4");
}

int main(void)
{
    MV_RUN(modelpack_as_today);
    MV_RUN(modelpack_cnai_and_unnamed_raw);
    MV_RUN(modelcar_images_as_today);
    MV_RUN(oras_files_and_directories);
    MV_RUN(oras_legacy_config_custom_types_untitled);
    MV_RUN(titled_layers_under_an_image_config_are_oras_files);
    MV_RUN(kitops_modelkit);
    MV_RUN(kitops_by_config_and_as_modelpack);
    MV_RUN(kitops_file_inside_a_layer_directory);
    MV_RUN(dmr_legacy_names);
    MV_RUN(dmr_single_gguf_safetensors_and_tars);
    MV_RUN(dmr_model_file_layers);
    MV_RUN(ollama_names);
    MV_RUN(ollama_every_layer_type);
    MV_RUN(an_index_or_no_layers);
    MV_RUN(kind_words);
    MV_RUN(paths_that_leave_the_tree);
    MV_RUN(two_layers_one_path);
    MV_RUN(a_file_where_a_directory_is);
    MV_RUN(unpack_flag_on_a_blob_that_is_not_a_tar);
    MV_RUN(unknown_formats_of_known_families);
    MV_DONE();
}
