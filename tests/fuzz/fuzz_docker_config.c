/* fuzz_docker_config.c — libFuzzer target for pull_creds_parse (docker
 * config.json / .dockerconfigjson content) and the kubelet-style key
 * matching (globs, ports, paths) of every parsed entry. */
#include "puller.h"
#include "puller-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pull_creds *c = NULL;
    mv_error err = MV_ERROR_INIT;
    if (pull_creds_parse((const char *)data, size, &c, &err) != 0)
        return 0;
    static const char *const targets[][2] = {
        {"a.example.com", "team/model"},
        {"reg.example.com:5000", "x"},
        {"docker.io", "library/m"},
        {"[::1]:5000", "m"},
        {"127.0.0.1", NULL},
        {"A.B.C.D.E", "a/b/c"},
    };
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        pull_creds_lookup(c, targets[i][0], targets[i][1]);
        pull_cred cr;
        if (pull_creds_resolve(c, targets[i][0], targets[i][1], &cr, &err) == 0)
            pull_cred_clear(&cr);
    }
    pull_creds_free(c);
    return 0;
}
