/* cli.h — shared by the modelpull and modelpush executables: global
 * options and the verb table. Each verb lives in its own file and registers
 * itself with CLI_VERB, so adding a verb touches no other file. */
#ifndef MODELVOL_CLI_H
#define MODELVOL_CLI_H

#include "cache.h"

typedef struct cli_global {
    const char *cache_dir;   /* --cache, default CACHE_DEFAULT_ROOT */
    const char *config_path; /* --config, default CACHE_DEFAULT_CONFIG */
    bool config_named;       /* the user passed --config */
} cli_global;

/* A verb gets argv starting at the verb's own name (argv[0] == "pull"). It
 * returns the process exit code and prints its own one-line error. */
typedef int (*cli_verb_fn)(const cli_global *g, int argc, char **argv);

typedef struct cli_verb {
    const char *name;
    const char *summary; /* one line for --help */
    cli_verb_fn fn;
    struct cli_verb *next;
} cli_verb;

void cli_register_verb(cli_verb *v);

#define CLI_VERB(vname, vsummary, vfn)                                                             \
    static cli_verb cli_verb_##vfn = {vname, vsummary, vfn, NULL};                                 \
    __attribute__((constructor)) static void cli_register_##vfn(void)                              \
    {                                                                                              \
        cli_register_verb(&cli_verb_##vfn);                                                        \
    }

/* Parses the argv of a verb whose only option is --help, expecting between
 * min_pos and max_pos positional arguments (max_pos < 0: no upper bound).
 * Returns -1 to go on, with optind at the first positional argument, or the
 * exit code the verb should return (0 after --help, 2 on misuse). */
int cli_simple_args(int argc, char **argv, const char *usage, int min_pos, int max_pos);

/* The index selector flags of `pull` and `inspect`: their getopt entries,
 * their help lines, and where each value goes in the request. */
enum { CLI_OPT_ARTIFACT_TYPE = 0x100, CLI_OPT_PLATFORM, CLI_OPT_ANNOTATION };
#define CLI_SELECTOR_OPTIONS                                                                       \
    {"artifact-type", required_argument, NULL, CLI_OPT_ARTIFACT_TYPE},                             \
        {"platform", required_argument, NULL, CLI_OPT_PLATFORM},                                   \
    {                                                                                              \
        "annotation", required_argument, NULL, CLI_OPT_ANNOTATION                                  \
    }
#define CLI_SELECTOR_HELP                                                                          \
    "  --artifact-type T     in an index, the manifest of artifactType T\n"                        \
    "  --platform OS/ARCH[/VARIANT]  in an index, the manifest for this platform\n"                \
    "  --annotation K=V      in an index, the manifest annotated K=V\n"
/* Stores a selector flag's value in a; false when ch is not one. */
bool cli_selector_arg(int ch, const char *arg, cache_request_args *a);

/* Prints "modelpull: <msg>" to stderr as one line. */
void cli_error(const char *prog, const mv_error *err);

#endif
