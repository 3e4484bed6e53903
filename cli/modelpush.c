/* modelpush.c — main() of modelpush: parses `modelpush [options] DIR REF`
 * into a push_request, runs it (libpush packs, uploads and PUTs the
 * manifest) and prints REF@digest as the last line on stdout. Errors are
 * one line on stderr and a non-zero exit (130 when interrupted). */
#include "push.h"

#include <getopt.h>
#include <signal.h>
#include <string.h>

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
               "  --format FMT         modelpack (default), oras (empty config, raw blobs\n"
               "                       titled with their path) or kitops (a KitOps ModelKit:\n"
               "                       Kitfile config, one tar layer per file; --zstd applies)\n"
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
               "  --progress MODE      auto (bar on a TTY), bar (or tty), json (lines), none;\n"
               "                       all on stderr\n"
               "  --plain-http         talk HTTP to a non-loopback registry\n"
               "  --registry-config F  registry configuration (default " PULL_DEFAULT_CONFIG ")\n"
               "  --dry-run            pack and print the manifest; push nothing\n"
               "  --version, --help\n");
}

/* The repeatable flags, each array sized for every argument being one. */
typedef struct push_args {
    push_rule *rules;
    size_t n_rules;
    const char **tags;
    size_t n_tags;
    const char **excludes;
    size_t n_excludes;
} push_args;

/* getopt values of --weight, --config, ...: RULE plus the kind. */
#define RULE 0x100

static int parse_args(int argc, char **argv, push_request *rq, push_args *a,
                      mv_progress_mode *pmode, mv_error *err)
{
    static const struct option opts[] = {
        {"weight", required_argument, NULL, RULE + MODEL_KIND_WEIGHT},
        {"config", required_argument, NULL, RULE + MODEL_KIND_WEIGHT_CONFIG},
        {"doc", required_argument, NULL, RULE + MODEL_KIND_DOC},
        {"code", required_argument, NULL, RULE + MODEL_KIND_CODE},
        {"dataset", required_argument, NULL, RULE + MODEL_KIND_DATASET},
        {"tar", no_argument, NULL, 't'},
        {"zstd", no_argument, NULL, 'z'},
        {"tar-max", required_argument, NULL, 'M'},
        {"format", required_argument, NULL, 'f'},
        {"artifact-type", required_argument, NULL, 'a'},
        {"created", required_argument, NULL, 'c'},
        {"name", required_argument, NULL, 'n'},
        {"model-version", required_argument, NULL, 'v'},
        {"tag", required_argument, NULL, 'T'},
        {"from", required_argument, NULL, 'F'},
        {"jobs", required_argument, NULL, 'j'},
        {"chunk-size", required_argument, NULL, 'k'},
        {"monolithic", no_argument, NULL, 'm'},
        {"state-dir", required_argument, NULL, 's'},
        {"no-resume", no_argument, NULL, 'R'},
        {"progress", required_argument, NULL, 'p'},
        {"plain-http", no_argument, NULL, 'P'},
        {"registry-config", required_argument, NULL, 'r'},
        {"dry-run", no_argument, NULL, 'd'},
        {"retries", required_argument, NULL, 'y'},
        {"no-hash-cache", no_argument, NULL, 'H'},
        {"exclude", required_argument, NULL, 'x'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    a->rules = mv_xcalloc((size_t)argc, sizeof(*a->rules));
    a->tags = mv_xcalloc((size_t)argc, sizeof(*a->tags));
    a->excludes = mv_xcalloc((size_t)argc, sizeof(*a->excludes));
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int r = 0;
        switch (ch) {
        case RULE + MODEL_KIND_WEIGHT:
        case RULE + MODEL_KIND_WEIGHT_CONFIG:
        case RULE + MODEL_KIND_DOC:
        case RULE + MODEL_KIND_CODE:
        case RULE + MODEL_KIND_DATASET:
            a->rules[a->n_rules++] = (push_rule){optarg, (model_kind)(ch - RULE)};
            break;
        case 't':
            rq->pack.tar = true;
            break;
        case 'z':
            rq->pack.zstd = true;
            break;
        case 'M':
            r = mv_parse_size(optarg, &rq->pack.tar_max, err);
            if (r == 0 && rq->pack.tar_max == 0)
                r = mv_error_set(err, -EINVAL, "--tar-max must be more than 0");
            break;
        case 'f':
            if (strcmp(optarg, "modelpack") == 0)
                rq->pack.format = PUSH_FORMAT_MODELPACK;
            else if (strcmp(optarg, "oras") == 0)
                rq->pack.format = PUSH_FORMAT_ORAS;
            else if (strcmp(optarg, "kitops") == 0)
                rq->pack.format = PUSH_FORMAT_KITOPS;
            else
                r = mv_error_set(err, -EINVAL, "--format %s: expected modelpack, oras or kitops",
                                 optarg);
            break;
        case 'a':
            rq->pack.artifact_type = optarg;
            break;
        case 'c':
            r = push_parse_time(optarg, &rq->pack.created, err);
            rq->pack.created_set = true;
            break;
        case 'n':
            rq->pack.name = optarg;
            break;
        case 'v':
            rq->pack.version = optarg;
            break;
        case 'T':
            if (!push_tag_valid(optarg))
                r = mv_error_set(err, -EINVAL, "--tag %s: not a valid tag", optarg);
            else
                a->tags[a->n_tags++] = optarg;
            break;
        case 'F':
            rq->from = optarg;
            break;
        case 'j':
            r = mv_parse_int("--jobs", optarg, 1, 64, &rq->jobs, err);
            break;
        case 'k':
            r = mv_parse_size(optarg, &rq->chunk_size, err);
            if (r == 0 && rq->chunk_size < 4096)
                r = mv_error_set(err, -EINVAL, "--chunk-size %s: at least 4096 bytes", optarg);
            break;
        case 'm':
            rq->monolithic = true;
            break;
        case 's':
            rq->state_dir = optarg;
            break;
        case 'R':
            rq->no_resume = true;
            break;
        case 'p':
            r = mv_progress_mode_parse(optarg, pmode, err);
            break;
        case 'P':
            rq->plain_http = true;
            break;
        case 'r':
            rq->registry_config = optarg;
            break;
        case 'd':
            rq->dry_run = true;
            break;
        case 'x':
            a->excludes[a->n_excludes++] = optarg;
            break;
        case 'H':
            rq->no_hash_cache = true;
            break;
        case 'y':
            /* The client reads 0 as "its default", so 1 is the least. */
            r = mv_parse_int("--retries", optarg, 1, 100, &rq->retries, err);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case 'V':
            printf("modelpush %s\n", MV_VERSION);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
        if (r < 0)
            return r;
    }
    int r = push_request_check(rq, err);
    if (r < 0)
        return r;
    if (argc - optind != 2) {
        usage(stderr);
        exit(2);
    }
    rq->dir = argv[optind];
    rq->ref = argv[optind + 1];
    rq->pack.rules = a->rules;
    rq->pack.n_rules = a->n_rules;
    rq->tags = a->tags;
    rq->n_tags = a->n_tags;
    rq->pack.excludes = a->excludes;
    rq->pack.n_excludes = a->n_excludes;
    return 0;
}

/* Set by SIGINT/SIGTERM once the upload starts: transfers stop within half
 * a second, and upload sessions stay recorded so the next run resumes
 * them. While packing, the default action still ends the process. */
static volatile int push_cancel;

static void on_signal(int sig)
{
    (void)sig;
    push_cancel = 1;
}

static void install_signals(void *ctx)
{
    (void)ctx;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int main(int argc, char **argv)
{
    push_request rq = {.cancel = &push_cancel, .on_upload = install_signals};
    push_args a = {0};
    push_result res = {0};
    mv_progress_mode pmode = MV_PROGRESS_AUTO;
    mv_error err = MV_ERROR_INIT;
    int r = parse_args(argc, argv, &rq, &a, &pmode, &err);
    if (r == 0) {
        rq.progress = mv_progress_new(pmode, stderr);
        r = push_run(&rq, &res, &err);
        mv_progress_free(rq.progress);
    }
    if (r == 0) {
        if (rq.dry_run) {
            fwrite(res.manifest_json, 1, res.manifest_len, stdout);
            printf("\n");
        }
        printf("%s@%s\n", res.ref, res.manifest_digest);
        fflush(stdout);
    }
    push_result_clear(&res);
    free(a.rules);
    free(a.tags);
    free(a.excludes);
    if (r < 0) {
        fprintf(stderr, "modelpush: %s\n", err.msg[0] ? err.msg : "failed");
        return r == -ECANCELED ? 130 : 1;
    }
    return 0;
}
