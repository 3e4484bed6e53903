/* fuzz_www_authenticate.c — libFuzzer target for pull_challenge_parse. */
#include "puller.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = mv_xmalloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    pull_challenge ch;
    mv_error err = MV_ERROR_INIT;
    if (pull_challenge_parse(s, &ch, &err) == 0) {
        /* Parsed values are NUL-terminated strings. */
        if (ch.realm)
            (void)strlen(ch.realm);
        pull_challenge_clear(&ch);
    }
    free(s);
    return 0;
}
