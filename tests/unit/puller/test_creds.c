/* test_creds.c — docker config.json credentials: auth in base64 or
 * username/password, identitytoken, key spellings for Docker Hub, the file
 * chain, kubelet-style keys (globs, ports, paths), credential helpers (from
 * files only, never from a pod's Secret), and errors that never echo a
 * secret. Uses the puller's private
 * lookup (internal.h) to see what was parsed. */
#include "mvtest.h"
#include "puller-internal.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

static pull_creds *parse(const char *json, mv_error *err)
{
    pull_creds *c = NULL;
    pull_creds_parse(json, strlen(json), &c, err);
    return c;
}

MV_TEST(auth_base64)
{
    /* "alice:pa:ss" — the password may contain ':' */
    pull_creds *c = parse("{\"auths\":{\"127.0.0.1:5000\":{\"auth\":\"YWxpY2U6cGE6c3M=\"}}}", NULL);
    CHECK(c != NULL);
    const pull_cred *cr = pull_creds_lookup(c, "127.0.0.1:5000", "m");
    CHECK(cr != NULL);
    if (cr) {
        CHECK_STR(cr->username, "alice");
        CHECK_STR(cr->password, "pa:ss");
    }
    CHECK(pull_creds_lookup(c, "127.0.0.1:5001", "m") == NULL);
    pull_creds_free(c);
}

MV_TEST(username_password_and_identity_token)
{
    pull_creds *c = parse("{\"auths\":{\"https://reg.example.com/v2/\":{\"username\":\"u\","
                          "\"password\":\"p\"},\"ghcr.io\":{\"identitytoken\":\"tok\"}}}",
                          NULL);
    const pull_cred *cr = pull_creds_lookup(c, "reg.example.com", "m");
    CHECK(cr && cr->username && strcmp(cr->username, "u") == 0);
    cr = pull_creds_lookup(c, "ghcr.io", "m");
    CHECK(cr && cr->identity_token && strcmp(cr->identity_token, "tok") == 0);
    pull_creds_free(c);
}

MV_TEST(docker_hub_keys)
{
    pull_creds *c =
        parse("{\"auths\":{\"https://index.docker.io/v1/\":{\"auth\":\"dTpw\"}}}", NULL);
    const pull_cred *cr = pull_creds_lookup(c, "docker.io", "m");
    CHECK(cr && strcmp(cr->username, "u") == 0 && strcmp(cr->password, "p") == 0);
    CHECK(pull_creds_lookup(c, "registry-1.docker.io", "m") != NULL);
    pull_creds_free(c);
}

MV_TEST(legacy_dockercfg_shape)
{
    pull_creds *c = parse("{\"localhost:5000\":{\"auth\":\"dTpw\",\"email\":\"x@y\"}}", NULL);
    CHECK(pull_creds_lookup(c, "localhost:5000", "m") != NULL);
    pull_creds_free(c);
}

MV_TEST(errors_never_echo_secrets)
{
    mv_error err = MV_ERROR_INIT;
    pull_creds *c = parse("{\"auths\":{\"h\":{\"auth\":\"not base64 SECRETXYZ!\"}}}", &err);
    CHECK(c == NULL);
    CHECK_CONTAINS(err.msg, "\"h\"");
    CHECK(strstr(err.msg, "SECRETXYZ") == NULL);
    /* base64 of "nocolonSECRET": no separator */
    c = parse("{\"auths\":{\"h\":{\"auth\":\"bm9jb2xvblNFQ1JFVA==\"}}}", &err);
    CHECK(c == NULL);
    CHECK(strstr(err.msg, "SECRET") == NULL);
    c = parse("{not json", &err);
    CHECK(c == NULL);
    CHECK_CONTAINS(err.msg, "JSON");
    c = parse("{\"auths\":[]}", &err);
    CHECK(c == NULL);
}

MV_TEST(file_chain)
{
    char dir[] = "/tmp/modelvol-creds.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof(path), "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs("{\"auths\":{\"chain.example\":{\"username\":\"first\",\"password\":\"x\"}}}", f);
    fclose(f);
    setenv("DOCKER_CONFIG", dir, 1);
    setenv("HOME", "/nonexistent-home", 1);
    pull_creds *c = NULL;
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(pull_creds_load_default(&c, &err), 0);
    const pull_cred *cr = pull_creds_lookup(c, "chain.example", "m");
    CHECK(cr && strcmp(cr->username, "first") == 0);
    pull_creds_free(c);
    /* A broken file is an error naming the file. */
    f = fopen(path, "w");
    fputs("{broken", f);
    fclose(f);
    c = NULL;
    CHECK(pull_creds_load_default(&c, &err) < 0);
    CHECK_CONTAINS(err.msg, path);
    unlink(path);
    rmdir(dir);
}

/* Which entry answered, by its username. */
static const char *who(const pull_creds *c, const char *registry, const char *repository)
{
    const pull_cred *cr = pull_creds_lookup(c, registry, repository);
    return cr ? cr->username : "(none)";
}

MV_TEST(kubelet_globs_ports_and_paths)
{
    pull_creds *c = parse("{\"auths\":{"
                          "\"*.example.com\":{\"auth\":\"Z2xvYjox\"},"
                          "\"https://reg.example.com\":{\"auth\":\"ZXhhY3Q6Mg==\"},"
                          "\"reg.example.com/team\":{\"auth\":\"dGVhbToz\"},"
                          "\"reg.example.com/team/sub/\":{\"auth\":\"c3ViOjQ=\"},"
                          "\"*.example.com:5000\":{\"auth\":\"cG9ydDo1\"},"
                          "\"[::1]:5000\":{\"auth\":\"djY6Ng==\"}}}",
                          NULL);
    CHECK(c != NULL);
    /* A glob covers one label, no more and no fewer. */
    CHECK_STR(who(c, "a.example.com", "m"), "glob");
    CHECK_STR(who(c, "example.com", "m"), "(none)");
    CHECK_STR(who(c, "a.b.example.com", "m"), "(none)");
    /* A host without globs beats a glob; hosts ignore case. */
    CHECK_STR(who(c, "reg.example.com", "other/m"), "exact");
    CHECK_STR(who(c, "Reg.Example.COM", "other/m"), "exact");
    /* The longest path wins, matched on whole segments. */
    CHECK_STR(who(c, "reg.example.com", "team/m"), "team");
    CHECK_STR(who(c, "reg.example.com", "team"), "team");
    CHECK_STR(who(c, "reg.example.com", "teamfoo/m"), "exact");
    CHECK_STR(who(c, "reg.example.com", "team/sub/m"), "sub");
    /* Ports must be the same, none matching none. */
    CHECK_STR(who(c, "a.example.com:5000", "m"), "port");
    CHECK_STR(who(c, "a.example.com:5001", "m"), "(none)");
    CHECK_STR(who(c, "[::1]:5000", "m"), "v6");
    CHECK_STR(who(c, "[::1]", "m"), "(none)");
    pull_creds_free(c);
}

/* A directory on PATH holding docker-credential-mvt: it logs the server it
 * is asked for, answers for "helped.example" (an identity token for
 * "tok.example"), says "not found" for the rest, and fails for
 * "broken.example". */
static void make_helper(const char *dir)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/docker-credential-mvt", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    fprintf(f,
            "#!/bin/sh\n"
            "read server\n"
            "echo \"$server\" >>%s/asked\n"
            "case \"$server\" in\n"
            "helped.example) echo "
            "'{\"ServerURL\":\"x\",\"Username\":\"hu\",\"Secret\":\"HSECRET\"}' ;;\n"
            "tok.example) echo "
            "'{\"ServerURL\":\"x\",\"Username\":\"<token>\",\"Secret\":\"TSECRET\"}' ;;\n"
            "broken.example) echo 'no session: log in first'; exit 3 ;;\n"
            "*) echo 'credentials not found in native keychain'; exit 1 ;;\n"
            "esac\n",
            dir);
    fclose(f);
    chmod(path, 0755);
}

static int count_asked(const char *dir)
{
    char path[512], line[256];
    snprintf(path, sizeof(path), "%s/asked", dir);
    FILE *f = fopen(path, "r");
    int n = 0;
    while (f && fgets(line, sizeof(line), f))
        n++;
    if (f)
        fclose(f);
    return n;
}

MV_TEST(credential_helpers_from_files_only)
{
    char dir[] = "/tmp/modelvol-helper.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    make_helper(dir);
    const char *old_path = getenv("PATH");
    char *path = mv_xasprintf("%s:%s", dir, old_path ? old_path : "/usr/bin:/bin");
    setenv("PATH", path, 1);
    char cfg[600];
    snprintf(cfg, sizeof(cfg), "%s/config.json", dir);
    FILE *f = fopen(cfg, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs("{\"credHelpers\":{\"helped.example\":\"mvt\",\"tok.example\":\"mvt\","
          "\"broken.example\":\"mvt\",\"gone.example\":\"absent\"},"
          "\"auths\":{\"plain.example\":{\"auth\":\"dTpw\"},"
          "\"helped.example\":{\"auth\":\"dTpw\"}}}",
          f);
    fclose(f);
    setenv("DOCKER_CONFIG", dir, 1);
    setenv("HOME", "/nonexistent-home", 1);
    pull_creds *c = NULL;
    mv_error err = MV_ERROR_INIT;
    CHECK_INT(pull_creds_load_default(&c, &err), 0);
    pull_cred cr;
    /* A host's helper comes before its auths entry. */
    CHECK_INT(pull_creds_resolve(c, "helped.example", "m", &cr, &err), 0);
    CHECK(cr.username && strcmp(cr.username, "hu") == 0);
    CHECK(cr.password && strcmp(cr.password, "HSECRET") == 0);
    pull_cred_clear(&cr);
    CHECK(cr.username == NULL && cr.password == NULL);
    CHECK_INT(pull_creds_resolve(c, "tok.example", "m", &cr, &err), 0);
    CHECK(cr.identity_token && strcmp(cr.identity_token, "TSECRET") == 0 && !cr.username);
    pull_cred_clear(&cr);
    /* Without a helper: the auths entry, and the helper is not run. */
    int asked = count_asked(dir);
    CHECK_INT(pull_creds_resolve(c, "plain.example", "m", &cr, &err), 0);
    CHECK(cr.username && strcmp(cr.username, "u") == 0);
    pull_cred_clear(&cr);
    CHECK_INT(count_asked(dir), asked);
    /* A failing helper: one line naming helper, server and its reason. */
    CHECK(pull_creds_resolve(c, "broken.example", "m", &cr, &err) < 0);
    CHECK_CONTAINS(err.msg, "docker-credential-mvt get broken.example: exit status 3");
    CHECK_CONTAINS(err.msg, "log in first");
    CHECK(strchr(err.msg, '\n') == NULL);
    CHECK(pull_creds_resolve(c, "gone.example", "m", &cr, &err) < 0);
    CHECK_CONTAINS(err.msg, "docker-credential-absent: not found on PATH");
    pull_creds_free(c);

    /* credsStore: for hosts with neither a helper nor an entry; "not found"
     * is no credential, not an error. */
    f = fopen(cfg, "w");
    fputs("{\"credsStore\":\"mvt\",\"auths\":{\"helped.example\":{}}}", f);
    fclose(f);
    CHECK_INT(pull_creds_load_default(&c, &err), 0);
    CHECK_INT(pull_creds_resolve(c, "helped.example", "m", &cr, &err), 0);
    CHECK(cr.password && strcmp(cr.password, "HSECRET") == 0);
    pull_cred_clear(&cr);
    CHECK_INT(pull_creds_resolve(c, "other.example", "m", &cr, &err), 0);
    CHECK(!cr.username && !cr.password && !cr.identity_token);
    pull_creds_free(c);

    /* A pod's Secret may not name a program for the plugin to run. */
    asked = count_asked(dir);
    c = parse("{\"credsStore\":\"mvt\",\"credHelpers\":{\"helped.example\":\"mvt\"},"
              "\"auths\":{}}",
              &err);
    CHECK(c != NULL);
    CHECK_INT(pull_creds_resolve(c, "helped.example", "m", &cr, &err), 0);
    CHECK(!cr.username && !cr.password);
    CHECK_INT(count_asked(dir), asked);
    pull_creds_free(c);

    /* A helper name that is not a plain name is refused at load. */
    f = fopen(cfg, "w");
    fputs("{\"credHelpers\":{\"h\":\"../../bin/sh\"}}", f);
    fclose(f);
    c = NULL;
    CHECK(pull_creds_load_default(&c, &err) < 0);
    CHECK_CONTAINS(err.msg, "must name a helper");

    setenv("PATH", old_path ? old_path : "/usr/bin:/bin", 1);
    free(path);
    char rm[700];
    snprintf(rm, sizeof(rm), "rm -rf %s", dir);
    CHECK_INT(system(rm), 0);
}

int main(void)
{
    MV_RUN(auth_base64);
    MV_RUN(username_password_and_identity_token);
    MV_RUN(docker_hub_keys);
    MV_RUN(legacy_dockercfg_shape);
    MV_RUN(errors_never_echo_secrets);
    MV_RUN(file_chain);
    MV_RUN(kubelet_globs_ports_and_paths);
    MV_RUN(credential_helpers_from_files_only);
    MV_DONE();
}
