/* fuzz_registry_config.c — libFuzzer target for pull_config_parse, and a
 * client built from the result (mirror URL handling), without any I/O. */
#include "puller.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pull_config *cfg = NULL;
    mv_error err = MV_ERROR_INIT;
    if (pull_config_parse((const char *)data, size, &cfg, &err) < 0)
        return 0;
    oci_ref ref = {.registry = "127.0.0.1:5000",
                   .api_host = "127.0.0.1:5000",
                   .repository = "models/x",
                   .tag = "v1"};
    pull_options o = {.config = cfg};
    pull_client *c = NULL;
    if (pull_client_new(&ref, &o, &c, &err) == 0)
        pull_client_free(c);
    pull_config_free(cfg);
    return 0;
}
