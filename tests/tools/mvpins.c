/* mvpins.c — test driver: prints the pins of a cache, one "TREE OWNER" line
 * each, so tests can observe exactly which owner pins which tree.
 *   mvpins CACHE_DIR [OWNER_PREFIX] */
#include <string.h>

#include "cache.h"

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: mvpins CACHE_DIR [OWNER_PREFIX]\n");
        return 2;
    }
    mv_error err = MV_ERROR_INIT;
    _cleanup_cache_ cache *c = NULL;
    if (cache_open(argv[1], NULL, &c, &err) < 0) {
        fprintf(stderr, "mvpins: %s\n", err.msg);
        return 1;
    }
    cache_pin_info *pins = NULL;
    size_t n = 0;
    if (cache_pins_list(c, argc == 3 ? argv[2] : NULL, &pins, &n, &err) < 0) {
        fprintf(stderr, "mvpins: %s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        printf("%s %s\n", pins[i].tree_id, pins[i].owner);
    cache_pins_free(pins, n);
    return 0;
}
