/* modelpull.c — main() of modelpull: global options, then dispatch to the
 * verb named on the command line (pull, ls, rm, gc, verify, prewarm). */
#include "cli.h"

#include <getopt.h>
#include <string.h>

static cli_verb *verbs;

void cli_register_verb(cli_verb *v)
{
    /* Keep the list sorted so --help is stable whatever the link order. */
    cli_verb **p = &verbs;
    while (*p && strcmp((*p)->name, v->name) < 0)
        p = &(*p)->next;
    v->next = *p;
    *p = v;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: modelpull [--cache DIR] [--config FILE] VERB [ARGS...]\n\n"
               "global options:\n"
               "  --cache DIR     node cache directory (default " CACHE_DEFAULT_ROOT ")\n"
               "  --config FILE   registry configuration (default " CACHE_DEFAULT_CONFIG ")\n"
               "  --version       print the version\n\n"
               "verbs:\n");
    for (cli_verb *v = verbs; v; v = v->next)
        fprintf(f, "  %-10s %s\n", v->name, v->summary);
    fprintf(f, "\nRun 'modelpull VERB --help' for a verb's options.\n");
}

int main(int argc, char **argv)
{
    cli_global g = {.cache_dir = CACHE_DEFAULT_ROOT, .config_path = CACHE_DEFAULT_CONFIG};
    static const struct option opts[] = {
        {"cache", required_argument, NULL, 'c'},
        {"config", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    /* "+" stops at the first non-option: the verb parses its own flags. */
    while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            g.cache_dir = optarg;
            break;
        case 'f':
            g.config_path = optarg;
            g.config_named = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("modelpull %s\n", MV_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    int vi = optind;
    const char *name = argv[vi];
    for (cli_verb *v = verbs; v; v = v->next) {
        if (strcmp(v->name, name) == 0) {
            /* glibc: optind = 0 re-initialises getopt for the verb's argv. */
            optind = 0;
            return v->fn(&g, argc - vi, argv + vi);
        }
    }
    fprintf(stderr, "modelpull: unknown verb \"%s\"; run 'modelpull --help'\n", name);
    return 2;
}
