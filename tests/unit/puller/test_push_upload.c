/* test_push_upload.c — the pieces of puller/upload.c that need no
 * registry: the Range values registries answer upload requests with, the
 * resume record (round trip, and refusal of a record for other bytes or of
 * a damaged one), and the digest query appended to a session URL. */
#include "mvtest.h"
#include "puller-internal.h"

#include <sys/stat.h>

static const char *D1 = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
static const char *D2 = "sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9";

MV_TEST(range_headers_parse_as_bytes_received)
{
    uint64_t got = 0;
    CHECK(pull_upload_range_end("0-1234", &got));
    CHECK_INT(got, 1235);
    CHECK(pull_upload_range_end("bytes=0-0", &got));
    CHECK_INT(got, 1);
    CHECK(pull_upload_range_end("0-67108863\r", &got));
    CHECK_INT(got, 67108864);
    CHECK(!pull_upload_range_end("5-10", &got)); /* must start at 0 */
    CHECK(!pull_upload_range_end("0-", &got));
    CHECK(!pull_upload_range_end("0-12x", &got));
    CHECK(!pull_upload_range_end("", &got));
    CHECK(!pull_upload_range_end("-0-5", &got));
    CHECK(!pull_upload_range_end("0--5", &got));
    CHECK(!pull_upload_range_end(NULL, &got));
}

MV_TEST(digest_query_joins_with_the_right_separator)
{
    char *u = pull_upload_with_digest("http://r/v2/m/blobs/uploads/u1", D1);
    CHECK_STR(u, "http://r/v2/m/blobs/uploads/u1?digest=sha256:"
                 "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae");
    free(u);
    u = pull_upload_with_digest("http://r/v2/m/blobs/uploads/u1?_state=abc", D1);
    CHECK_CONTAINS(u, "?_state=abc&digest=sha256:");
    free(u);
}

MV_TEST(resume_record_round_trips_and_refuses_other_blobs)
{
    char dir[] = "/tmp/modelvol-push-upload.XXXXXX";
    if (!mkdtemp(dir))
        MV_SKIP("cannot create a temp dir");
    _cleanup_free_ char *path = mv_xasprintf("%s/rec.json", dir);
    const char *loc = "http://127.0.0.1:5000/v2/m/blobs/uploads/u1?_state=xyz";
    pull_upload_record_save(path, D1, 123456789, loc);
    struct stat st;
    CHECK_INT(stat(path, &st), 0);
    CHECK_INT(st.st_mode & 0777, 0600);
    char *got = pull_upload_record_load(path, D1, 123456789);
    CHECK_STR(got, loc);
    free(got);
    CHECK(pull_upload_record_load(path, D2, 123456789) == NULL); /* another blob */
    CHECK(pull_upload_record_load(path, D1, 123456788) == NULL); /* another size */
    CHECK(pull_upload_record_load(NULL, D1, 1) == NULL);
    /* Only http(s) URLs: a record must not steer requests elsewhere. */
    pull_upload_record_save(path, D1, 5, "file:///etc/passwd");
    CHECK(pull_upload_record_load(path, D1, 5) == NULL);
    /* Damaged records are ignored. */
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("{\"digest\":", f);
        fclose(f);
    }
    CHECK(pull_upload_record_load(path, D1, 5) == NULL);
    pull_upload_record_remove(path);
    CHECK(access(path, F_OK) < 0);
    rmdir(dir);
}

int main(void)
{
    MV_RUN(range_headers_parse_as_bytes_received);
    MV_RUN(digest_query_joins_with_the_right_separator);
    MV_RUN(resume_record_round_trips_and_refuses_other_blobs);
    MV_DONE();
}
