/* modelpush.c — main() of modelpush: parses `modelpush [options] DIR REF`,
 * packs DIR (modelpush_pack.c), uploads what the registry lacks
 * (modelpush_upload.c), PUTs the manifest and prints REF@digest as the last
 * line on stdout. Errors are one line on stderr and a non-zero exit. */
#include "cli.h"
#include "modelpush.h"

#include <getopt.h>
#include <signal.h>
#include <string.h>
#include <time.h>

enum {
    OPT_WEIGHT = 256,
    OPT_CONFIG,
    OPT_DOC,
    OPT_CODE,
    OPT_DATASET,
    OPT_TAR,
    OPT_ZSTD,
    OPT_TAR_MAX,
    OPT_FORMAT,
    OPT_ARTIFACT_TYPE,
    OPT_CREATED,
    OPT_NAME,
    OPT_MODEL_VERSION,
    OPT_TAG,
    OPT_FROM,
    OPT_JOBS,
    OPT_CHUNK,
    OPT_MONOLITHIC,
    OPT_STATE_DIR,
    OPT_NO_RESUME,
    OPT_PROGRESS,
    OPT_PLAIN_HTTP,
    OPT_REGISTRY_CONFIG,
    OPT_DRY_RUN,
    OPT_RETRIES,
    OPT_NO_HASH_CACHE,
    OPT_EXCLUDE,
    OPT_VERSION,
};

static void usage(FILE *f)
{
    fprintf(f, "usage: modelpush [options] DIR REF\n\n"
               "Packs the model directory DIR as a ModelPack artifact and pushes it to REF\n"
               "(registry/repository[:tag]). The last line on stdout is REF@sha256:...\n\n"
               "packing:\n"
               "  --weight GLOB        files matching GLOB are weights (repeatable; likewise:)\n"
               "  --config GLOB        ... weight configuration (config.json, tokenizer, ...)\n"
               "  --doc GLOB           ... documentation\n"
               "  --code GLOB          ... code\n"
               "  --dataset GLOB       ... datasets\n"
               "                       A GLOB without '/' also matches base names. Rules are\n"
               "                       tried in order before the defaults; unknown files are\n"
               "                       weights marked " MODEL_ANNO_UNTESTED ".\n"
               "  --exclude GLOB       leave out matching files and directories (repeatable)\n"
               "  --tar                pack files up to --tar-max into one tar layer per kind\n"
               "                       (default: one raw layer per file)\n"
               "  --tar-max SIZE       size limit for --tar (default 16M)\n"
               "  --zstd               compress tar layers with zstd\n"
               "  --format FMT         modelpack (default) or oras (empty config, raw blobs\n"
               "                       titled with their path)\n"
               "  --artifact-type T    artifactType for --format oras\n"
               "                       (default " PUSH_ORAS_ARTIFACT_TYPE ")\n"
               "  --name NAME          descriptor.name (default: the repository's last part)\n"
               "  --model-version V    descriptor.version\n"
               "  --created TIME       createdAt and file mtimes: RFC 3339 UTC or epoch seconds.\n"
               "                       Default $SOURCE_DATE_EPOCH, else the current time: the\n"
               "                       manifest digest is reproducible only with one of them.\n"
               "  Directories named .git are skipped; symlinks are followed only when they\n"
               "  resolve inside DIR.\n\n"
               "upload:\n"
               "  --tag TAG            also tag the manifest TAG (repeatable)\n"
               "  --from REPO          mount blobs from repository REPO on the same registry\n"
               "  --jobs N             files hashed and blobs uploaded in parallel (default 4)\n"
               "  --chunk-size SIZE    PATCH chunk size (default 64M)\n"
               "  --monolithic         upload each blob with a single PUT\n"
               "  --state-dir DIR      resume records and the hash cache (default\n"
               "                       $XDG_STATE_HOME/modelvol/push,\n"
               "                       else ~/.cache/modelvol/push); they hold no secrets\n"
               "  --no-resume          keep no resume records\n"
               "  --no-hash-cache      hash every file, even when the state directory holds\n"
               "                       its digest for the same inode, size, mtime and ctime\n"
               "  --retries N          retries of a transient failure (5xx, 429, timeouts)\n"
               "                       per request (default 6)\n"
               "  --progress MODE      auto (bar on a TTY), tty, json (lines on stderr), none\n"
               "  --plain-http         talk HTTP to a non-loopback registry\n"
               "  --registry-config F  registry configuration (default " PULL_DEFAULT_CONFIG ")\n"
               "  --dry-run            pack and print the manifest; push nothing\n"
               "  --version, --help\n");
}

typedef struct push_args {
    push_pack_opts pack;
    push_rule *rules;
    size_t n_rules;
    const char **tags; /* NULL-terminated, REF's tag first */
    size_t n_tags;
    const char *from;
    int jobs;
    uint64_t chunk;
    bool monolithic;
    const char *state_dir;
    bool no_resume;
    push_progress_mode progress;
    bool plain_http;
    const char *registry_config;
    bool dry_run;
    bool created_set;
    int retries;
    bool no_hash_cache;
    const char **excludes;
    size_t n_excludes;
} push_args;

static void add_rule(push_args *a, const char *glob, model_kind k)
{
    a->rules = mv_xrealloc(a->rules, (a->n_rules + 1) * sizeof(*a->rules));
    a->rules[a->n_rules].glob = glob;
    a->rules[a->n_rules].kind = k;
    a->n_rules++;
}

static void add_tag(push_args *a, const char *t)
{
    for (size_t i = 0; i < a->n_tags; i++)
        if (strcmp(a->tags[i], t) == 0)
            return;
    a->tags = mv_xrealloc(a->tags, (a->n_tags + 2) * sizeof(*a->tags));
    a->tags[a->n_tags++] = t;
    a->tags[a->n_tags] = NULL;
}

static bool valid_tag(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > OCI_TAG_MAX)
        return false;
    if (!(t[0] == '_' || (t[0] >= '0' && t[0] <= '9') || (t[0] >= 'a' && t[0] <= 'z') ||
          (t[0] >= 'A' && t[0] <= 'Z')))
        return false;
    for (const char *p = t; *p; p++)
        if (!(*p == '_' || *p == '.' || *p == '-' || (*p >= '0' && *p <= '9') ||
              (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return false;
    return true;
}

static int parse_args(int argc, char **argv, push_args *a, mv_error *err)
{
    static const struct option opts[] = {
        {"weight", required_argument, NULL, OPT_WEIGHT},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"doc", required_argument, NULL, OPT_DOC},
        {"code", required_argument, NULL, OPT_CODE},
        {"dataset", required_argument, NULL, OPT_DATASET},
        {"tar", no_argument, NULL, OPT_TAR},
        {"zstd", no_argument, NULL, OPT_ZSTD},
        {"tar-max", required_argument, NULL, OPT_TAR_MAX},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"artifact-type", required_argument, NULL, OPT_ARTIFACT_TYPE},
        {"created", required_argument, NULL, OPT_CREATED},
        {"name", required_argument, NULL, OPT_NAME},
        {"model-version", required_argument, NULL, OPT_MODEL_VERSION},
        {"tag", required_argument, NULL, OPT_TAG},
        {"from", required_argument, NULL, OPT_FROM},
        {"jobs", required_argument, NULL, OPT_JOBS},
        {"chunk-size", required_argument, NULL, OPT_CHUNK},
        {"monolithic", no_argument, NULL, OPT_MONOLITHIC},
        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
        {"no-resume", no_argument, NULL, OPT_NO_RESUME},
        {"progress", required_argument, NULL, OPT_PROGRESS},
        {"plain-http", no_argument, NULL, OPT_PLAIN_HTTP},
        {"registry-config", required_argument, NULL, OPT_REGISTRY_CONFIG},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"retries", required_argument, NULL, OPT_RETRIES},
        {"no-hash-cache", no_argument, NULL, OPT_NO_HASH_CACHE},
        {"exclude", required_argument, NULL, OPT_EXCLUDE},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int r = 0;
        switch (ch) {
        case OPT_WEIGHT:
            add_rule(a, optarg, MODEL_KIND_WEIGHT);
            break;
        case OPT_CONFIG:
            add_rule(a, optarg, MODEL_KIND_WEIGHT_CONFIG);
            break;
        case OPT_DOC:
            add_rule(a, optarg, MODEL_KIND_DOC);
            break;
        case OPT_CODE:
            add_rule(a, optarg, MODEL_KIND_CODE);
            break;
        case OPT_DATASET:
            add_rule(a, optarg, MODEL_KIND_DATASET);
            break;
        case OPT_TAR:
            a->pack.tar = true;
            break;
        case OPT_ZSTD:
            a->pack.zstd = true;
            break;
        case OPT_TAR_MAX:
            r = mv_parse_size(optarg, &a->pack.tar_max, err);
            if (r == 0 && a->pack.tar_max == 0)
                r = mv_error_set(err, -EINVAL, "--tar-max must be more than 0");
            break;
        case OPT_FORMAT:
            if (strcmp(optarg, "modelpack") == 0)
                a->pack.format = PUSH_FORMAT_MODELPACK;
            else if (strcmp(optarg, "oras") == 0)
                a->pack.format = PUSH_FORMAT_ORAS;
            else
                r = mv_error_set(err, -EINVAL, "--format %s: expected modelpack or oras", optarg);
            break;
        case OPT_ARTIFACT_TYPE:
            a->pack.artifact_type = optarg;
            break;
        case OPT_CREATED:
            r = push_parse_time(optarg, &a->pack.created, err);
            a->created_set = true;
            break;
        case OPT_NAME:
            a->pack.name = optarg;
            break;
        case OPT_MODEL_VERSION:
            a->pack.version = optarg;
            break;
        case OPT_TAG:
            if (!valid_tag(optarg))
                r = mv_error_set(err, -EINVAL, "--tag %s: not a valid tag", optarg);
            else
                add_tag(a, optarg);
            break;
        case OPT_FROM:
            a->from = optarg;
            break;
        case OPT_JOBS: {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 64)
                r = mv_error_set(err, -EINVAL, "--jobs %s: expected 1 to 64", optarg);
            a->jobs = (int)v;
            break;
        }
        case OPT_CHUNK:
            r = mv_parse_size(optarg, &a->chunk, err);
            if (r == 0 && a->chunk < 4096)
                r = mv_error_set(err, -EINVAL, "--chunk-size %s: at least 4096 bytes", optarg);
            break;
        case OPT_MONOLITHIC:
            a->monolithic = true;
            break;
        case OPT_STATE_DIR:
            a->state_dir = optarg;
            break;
        case OPT_NO_RESUME:
            a->no_resume = true;
            break;
        case OPT_PROGRESS:
            if (strcmp(optarg, "auto") == 0)
                a->progress = PUSH_PROGRESS_AUTO;
            else if (strcmp(optarg, "tty") == 0)
                a->progress = PUSH_PROGRESS_TTY;
            else if (strcmp(optarg, "json") == 0)
                a->progress = PUSH_PROGRESS_JSON;
            else if (strcmp(optarg, "none") == 0)
                a->progress = PUSH_PROGRESS_NONE;
            else
                r = mv_error_set(err, -EINVAL, "--progress %s: expected auto, tty, json or none",
                                 optarg);
            break;
        case OPT_PLAIN_HTTP:
            a->plain_http = true;
            break;
        case OPT_REGISTRY_CONFIG:
            a->registry_config = optarg;
            break;
        case OPT_DRY_RUN:
            a->dry_run = true;
            break;
        case OPT_EXCLUDE:
            a->excludes = mv_xrealloc(a->excludes, (a->n_excludes + 1) * sizeof(*a->excludes));
            a->excludes[a->n_excludes++] = optarg;
            break;
        case OPT_NO_HASH_CACHE:
            a->no_hash_cache = true;
            break;
        case OPT_RETRIES: {
            char *end;
            long v = strtol(optarg, &end, 10);
            /* The client reads 0 as "its default", so 1 is the least. */
            if (*end || v < 1 || v > 100)
                r = mv_error_set(err, -EINVAL, "--retries %s: expected 1 to 100", optarg);
            a->retries = (int)v;
            break;
        }
        case 'h':
            usage(stdout);
            exit(0);
        case OPT_VERSION:
            printf("modelpush %s\n", MV_VERSION);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
        if (r < 0)
            return r;
    }
    if (a->pack.format == PUSH_FORMAT_ORAS && a->pack.tar)
        return mv_error_set(
            err, -EINVAL,
            "--tar packs ModelPack layers; --format oras keeps every file a raw blob");
    if ((a->pack.zstd || a->pack.tar_max) && !a->pack.tar)
        return mv_error_set(err, -EINVAL, "--zstd and --tar-max apply to --tar layers; add --tar");
    if (a->pack.artifact_type && a->pack.format != PUSH_FORMAT_ORAS)
        return mv_error_set(err, -EINVAL,
                            "--artifact-type applies to --format oras; ModelPack's is fixed");
    if (argc - optind != 2) {
        usage(stderr);
        exit(2);
    }
    return 0;
}

static int64_t default_created(mv_error *err, bool *ok)
{
    const char *sde = getenv("SOURCE_DATE_EPOCH");
    *ok = true;
    if (sde && *sde) {
        int64_t t;
        if (push_parse_time(sde, &t, err) < 0) {
            mv_error_wrap(err, "SOURCE_DATE_EPOCH");
            *ok = false;
            return 0;
        }
        return t;
    }
    return (int64_t)time(NULL);
}

/* Set by SIGINT/SIGTERM: transfers stop within half a second, and upload
 * sessions stay recorded so the next run resumes them. */
static volatile int push_cancel;

static void on_signal(int sig)
{
    (void)sig;
    push_cancel = 1;
}

static void install_signals(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int run(push_args *a, const char *dir, const char *refstr, mv_error *err)
{
    _cleanup_ref_ oci_ref *ref = NULL;
    int r = oci_ref_parse(refstr, &ref, err);
    if (r < 0)
        return r;
    if (ref->digest)
        return mv_error_set(err, -EINVAL, "reference %s: a push target names a tag, not a digest",
                            refstr);
    /* --from names a repository on REF's registry; a full name with the
     * same registry is accepted too. */
    if (a->from) {
        size_t rl = strlen(ref->registry);
        if (strncmp(a->from, ref->registry, rl) == 0 && a->from[rl] == '/')
            a->from += rl + 1;
        bool ok = a->from[0] != '\0';
        for (const char *c = a->from; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' ||
                  *c == '-' || *c == '/'))
                ok = false;
        if (!ok)
            return mv_error_set(err, -EINVAL,
                                "--from %s: not a repository on %s (e.g. models/base)", a->from,
                                ref->registry);
    }
    /* REF's own tag first: it is the one the result line names. */
    _cleanup_free_ const char **extra = a->tags;
    size_t n_extra = a->n_tags;
    a->tags = NULL;
    a->n_tags = 0;
    add_tag(a, ref->tag ? ref->tag : "latest");
    for (size_t i = 0; i < n_extra; i++)
        add_tag(a, extra[i]);

    if (!a->created_set) {
        bool ok;
        a->pack.created = default_created(err, &ok);
        if (!ok)
            return err->code;
    }
    const char *base = strrchr(ref->repository, '/');
    if (!a->pack.name && a->pack.format == PUSH_FORMAT_MODELPACK)
        a->pack.name = base ? base + 1 : ref->repository;
    a->pack.rules = a->rules;
    a->pack.n_rules = a->n_rules;
    a->pack.excludes = a->excludes;
    a->pack.n_excludes = a->n_excludes;
    a->pack.jobs = a->jobs;

    /* Resume records and the hash cache live in the state directory. */
    _cleanup_free_ char *state_dir = NULL;
    bool resume = !a->no_resume && !a->dry_run;
    if (resume || !a->no_hash_cache)
        state_dir = a->state_dir ? mv_xstrdup(a->state_dir) : push_default_state_dir();
    if (state_dir && push_mkdir_p(state_dir, err) < 0) {
        /* A default location we cannot use costs resume and the cache, not
         * the push; a directory the user named must work. */
        if (a->state_dir)
            return err->code;
        mv_error_clear(err);
        free(state_dir);
        state_dir = NULL;
    }
    _cleanup_free_ char *hash_cache =
        state_dir && !a->no_hash_cache ? mv_xasprintf("%s/hashes", state_dir) : NULL;
    a->pack.hash_cache = hash_cache;

    _cleanup_(push_pack_freep) push_pack *p = NULL;
    r = push_pack_dir(dir, &a->pack, &p, err);
    if (r < 0)
        return r;
    uint64_t total = 0;
    for (size_t i = 0; i < p->n_blobs; i++)
        total += p->blobs[i].size;
    if (a->dry_run) {
        fwrite(p->manifest_json, 1, p->manifest_len, stdout);
        printf("\n");
    } else {
        _cleanup_(pull_config_freep) pull_config *cfg = NULL;
        _cleanup_(pull_creds_freep) pull_creds *creds = NULL;
        r = pull_config_load(a->registry_config ? a->registry_config : PULL_DEFAULT_CONFIG,
                             a->registry_config != NULL, &cfg, err);
        if (r < 0)
            return r;
        r = pull_creds_load_default(&creds, err);
        if (r < 0)
            return r;
        install_signals();
        push_progress *prog = push_progress_new(a->progress, total, p->n_blobs);
        char packed[256];
        snprintf(packed, sizeof(packed),
                 "\"files\":%zu,\"files_hashed\":%zu,\"files_cached\":%zu,\"blobs\":%zu,"
                 "\"bytes\":%llu,\"manifest\":\"%s\"",
                 p->n_files, p->n_hashed, p->n_cached, p->n_blobs, (unsigned long long)total,
                 p->manifest_digest);
        push_progress_note(prog, "packed", packed, NULL);
        push_upload_opts uo = {
            .ref = ref,
            .pull = {.config = cfg,
                     .creds = creds,
                     .plain_http = a->plain_http,
                     .max_retries = a->retries,
                     .cancel = &push_cancel},
            .jobs = a->jobs,
            .chunk_size = a->chunk,
            .monolithic = a->monolithic,
            .from_repo = a->from,
            .state_dir = resume ? state_dir : NULL,
            .progress = prog,
            .cancel = &push_cancel,
        };
        push_upload_stats st = {0};
        r = push_upload_blobs(p, &uo, &st, err);
        if (r == 0)
            r = push_upload_manifest(p, &uo, a->tags, err);
        char fields[256], text[256], sz[32];
        snprintf(fields, sizeof(fields),
                 "\"bytes_uploaded\":%llu,\"blobs_uploaded\":%zu,\"blobs_skipped\":%zu,"
                 "\"blobs_mounted\":%zu,\"ok\":%s",
                 (unsigned long long)st.bytes_sent, st.uploaded, st.skipped, st.mounted,
                 r == 0 ? "true" : "false");
        snprintf(text, sizeof(text), "uploaded %zu blobs (%s), %zu already present, %zu mounted",
                 st.uploaded, mv_format_size(st.bytes_sent, sz, sizeof(sz)), st.skipped,
                 st.mounted);
        push_progress_note(prog, "summary", fields, text);
        push_progress_free(prog);
        if (r < 0)
            return mv_error_wrap(err, "push %s", refstr);
    }
    _cleanup_free_ char *canon = oci_ref_string(ref);
    printf("%s@%s\n", canon, p->manifest_digest);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    push_args a = {.progress = PUSH_PROGRESS_AUTO};
    mv_error err = MV_ERROR_INIT;
    int r = parse_args(argc, argv, &a, &err);
    if (r == 0)
        r = run(&a, argv[optind], argv[optind + 1], &err);
    free(a.rules);
    free(a.tags);
    free(a.excludes);
    if (r < 0) {
        cli_error(PUSH_PROG, &err);
        return r == -ECANCELED ? 130 : 1;
    }
    return 0;
}
