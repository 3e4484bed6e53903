/* mvfetch.c — test-only driver of libpuller without the cache:
 *   mvfetch [opts] ping REF
 *       GET /v2/ (scheme and auth), prints "ok"
 *   mvfetch [opts] manifest REF
 *       prints the manifest digest, its content type and the manifest
 *   mvfetch [opts] small REF DIGEST SIZE
 *       fetches a small blob (a config) into memory, prints its length
 *   mvfetch [opts] blob REF DIGEST SIZE OUTFILE STATEFILE
 *       downloads one blob into OUTFILE through pull_blobs, printing
 *       "downloaded N", "resumed N", "origin N", "mirror N"
 *   mvfetch [opts] blobs REF OUTDIR DIGEST:SIZE...
 *       downloads several blobs concurrently (one pull_blobs call) into
 *       OUTDIR/<hex>
 * Options: --config F, --plain-http, --connections N, --chunk-size S,
 * --threshold S, --stall SECS, --retries N, --progress json|none.
 * Credentials come from the docker config.json chain. */
#include "puller.h"

#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <string.h>

static volatile int cancel_flag;

static void on_signal(int sig)
{
    (void)sig;
    cancel_flag = 1;
}

static void json_event(void *ctx, const pull_event *ev)
{
    (void)ctx;
    static const char *names[] = {"", "manifest", "start", "progress", "done", "retry"};
    const char *k = ev->kind >= 1 && ev->kind <= 5 ? names[ev->kind] : "?";
    fprintf(stderr, "{\"event\":\"%s\",\"digest\":\"%s\",\"done\":%llu,\"total\":%llu%s%s%s}\n", k,
            ev->digest ? ev->digest : "", (unsigned long long)ev->done,
            (unsigned long long)ev->total, ev->message ? ",\"message\":\"" : "",
            ev->message ? "see-stderr" : "", ev->message ? "\"" : "");
    if (ev->message)
        fprintf(stderr, "retry: %s\n", ev->message);
}

static void usage(void)
{
    fprintf(stderr, "usage: mvfetch [--config F] [--plain-http] [--connections N] "
                    "[--chunk-size S] [--threshold S] [--stall SECS] [--retries N] "
                    "[--progress json|none]\n"
                    "       ping REF | manifest REF | small REF DIGEST SIZE | blob REF DIGEST SIZE "
                    "OUTFILE STATEFILE |\n"
                    "       blobs REF OUTDIR DIGEST:SIZE...\n");
}

static int fail(const char *what, const mv_error *err)
{
    fprintf(stderr, "mvfetch: %s%s%s\n", what, what[0] ? ": " : "", err->msg);
    return 1;
}

static int run(pull_options *o, int argc, char **argv)
{
    mv_error err = MV_ERROR_INIT;
    const char *verb = argv[optind];
    _cleanup_ref_ oci_ref *ref = NULL;
    if (oci_ref_parse(argv[optind + 1], &ref, &err) < 0)
        return fail("", &err);
    _cleanup_pull_client_ pull_client *c = NULL;
    if (pull_client_new(ref, o, &c, &err) < 0)
        return fail("", &err);
    if (strcmp(verb, "ping") == 0 && optind + 2 == argc) {
        if (pull_ping(c, &err) < 0)
            return fail("", &err);
        printf("ok\n");
        return 0;
    }
    if (strcmp(verb, "small") == 0 && optind + 4 == argc) {
        oci_descriptor d = {0};
        d.digest = argv[optind + 2];
        d.size = strtoll(argv[optind + 3], NULL, 10);
        _cleanup_free_ void *buf = NULL;
        size_t len;
        if (pull_fetch_small_blob(c, &d, &buf, &len, &err) < 0)
            return fail("", &err);
        printf("%zu\n", len);
        return 0;
    }
    if (strcmp(verb, "manifest") == 0 && optind + 2 == argc) {
        _cleanup_free_ void *buf = NULL;
        _cleanup_free_ char *ct = NULL;
        size_t len;
        char digest[OCI_DIGEST_MAX];
        const char *which = ref->digest ? ref->digest : ref->tag;
        if (pull_fetch_manifest(c, which, &buf, &len, &ct, digest, &err) < 0)
            return fail("", &err);
        printf("%s\n%s\n", digest, ct ? ct : "");
        fwrite(buf, 1, len, stdout);
        printf("\n");
        return 0;
    }
    if (strcmp(verb, "blob") == 0 && optind + 6 == argc) {
        oci_descriptor d = {0};
        d.digest = argv[optind + 2];
        d.size = strtoll(argv[optind + 3], NULL, 10);
        _cleanup_close_ int fd = open(argv[optind + 4], O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            perror(argv[optind + 4]);
            return 1;
        }
        pull_blob_job job = {.desc = &d, .fd = fd, .state_path = argv[optind + 5]};
        int r = pull_blobs(c, &job, 1, &err);
        printf("downloaded %llu\nresumed %llu\n", (unsigned long long)job.downloaded,
               (unsigned long long)job.resumed);
        pull_stats st;
        pull_client_stats(c, &st);
        printf("origin %llu\nmirror %llu\nretries %llu\n", (unsigned long long)st.bytes_origin,
               (unsigned long long)st.bytes_mirror, (unsigned long long)st.retries);
        fflush(stdout);
        if (r < 0) {
            fail("", &err);
            return r == -ECANCELED ? 130 : 1;
        }
        return 0;
    }
    if (strcmp(verb, "blobs") == 0 && optind + 4 <= argc) {
        /* blobs REF OUTDIR DIGEST:SIZE...: all in one pull_blobs call. */
        const char *dir = argv[optind + 2];
        size_t n = (size_t)(argc - optind - 3);
        _cleanup_free_ oci_descriptor *ds = mv_xcalloc(n, sizeof(*ds));
        _cleanup_free_ pull_blob_job *jobs = mv_xcalloc(n, sizeof(*jobs));
        for (size_t i = 0; i < n; i++) {
            char *arg = argv[optind + 3 + (int)i];
            char *colon = strrchr(arg, ':');
            if (!colon || colon == arg) {
                usage();
                return 2;
            }
            *colon = '\0';
            ds[i].digest = arg;
            ds[i].size = strtoll(colon + 1, NULL, 10);
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", dir, oci_digest_hex(arg));
            jobs[i].desc = &ds[i];
            jobs[i].fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
            if (jobs[i].fd < 0) {
                perror(path);
                return 1;
            }
            jobs[i].state_path = NULL;
        }
        int r = pull_blobs(c, jobs, n, &err);
        uint64_t down = 0;
        for (size_t i = 0; i < n; i++) {
            down += jobs[i].downloaded;
            close(jobs[i].fd);
        }
        printf("downloaded %llu\n", (unsigned long long)down);
        if (r < 0)
            return fail("", &err);
        return 0;
    }
    usage();
    return 2;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'f'},
        {"plain-http", no_argument, NULL, 'p'},
        {"connections", required_argument, NULL, 'n'},
        {"chunk-size", required_argument, NULL, 'c'},
        {"threshold", required_argument, NULL, 't'},
        {"stall", required_argument, NULL, 's'},
        {"retries", required_argument, NULL, 'r'},
        {"progress", required_argument, NULL, 'P'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL;
    pull_options o = {0};
    mv_error err = MV_ERROR_INIT;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'f':
            config_path = optarg;
            break;
        case 'p':
            o.plain_http = true;
            break;
        case 'n':
            o.connections = atoi(optarg);
            break;
        case 'c':
            if (mv_parse_size(optarg, &o.chunk_size, &err) < 0)
                return fail("--chunk-size", &err);
            break;
        case 't':
            if (mv_parse_size(optarg, &o.range_threshold, &err) < 0)
                return fail("--threshold", &err);
            break;
        case 's':
            o.stall_seconds = atoi(optarg);
            break;
        case 'r':
            o.max_retries = atoi(optarg);
            break;
        case 'P':
            if (strcmp(optarg, "json") == 0)
                o.on_event = json_event;
            break;
        default:
            usage();
            return 2;
        }
    }
    if (optind + 2 > argc) {
        usage();
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    o.cancel = &cancel_flag;
    pull_config *cfg = NULL;
    if (pull_config_load(config_path ? config_path : PULL_DEFAULT_CONFIG, config_path != NULL, &cfg,
                         &err) < 0)
        return fail("", &err);
    pull_creds *creds = NULL;
    if (pull_creds_load_default(&creds, &err) < 0) {
        pull_config_free(cfg);
        return fail("", &err);
    }
    o.config = cfg;
    o.creds = creds;
    int rc = run(&o, argc, argv);
    pull_creds_free(creds);
    pull_config_free(cfg);
    return rc;
}
