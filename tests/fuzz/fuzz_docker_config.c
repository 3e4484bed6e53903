/* fuzz_docker_config.c — libFuzzer target for pull_creds_parse (docker
 * config.json / .dockerconfigjson content). */
#include "puller.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pull_creds *c = NULL;
    mv_error err = MV_ERROR_INIT;
    if (pull_creds_parse((const char *)data, size, &c, &err) == 0)
        pull_creds_free(c);
    return 0;
}
