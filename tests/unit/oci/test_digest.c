/* test_digest.c — digest validation (good, malformed, hostile) and the
 * EVP hasher against published SHA-2 known answers. */
#include "oci.h"
#include "mvtest.h"

#define EMPTY256 "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define ABC256   "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define ABC512                                                                                     \
    "sha512:"                                                                                      \
    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c"       \
    "23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
#define EMPTY512                                                                                   \
    "sha512:"                                                                                      \
    "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318"       \
    "d2877eec2f63b931bd47417a81a538327af927da3e"

MV_TEST(valid_digests_are_accepted)
{
    mv_error e = MV_ERROR_INIT;
    oci_digest_alg alg = OCI_DIGEST_SHA512;
    CHECK_INT(oci_digest_validate(EMPTY256, &e), 0);
    CHECK_INT(oci_digest_alg_of(ABC256, &alg, &e), 0);
    CHECK_INT(alg, OCI_DIGEST_SHA256);
    CHECK_INT(oci_digest_alg_of(ABC512, &alg, &e), 0);
    CHECK_INT(alg, OCI_DIGEST_SHA512);
    CHECK_STR(oci_digest_hex(ABC256),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

MV_TEST(malformed_digests_are_rejected_naming_the_digest)
{
    static const char *bad[] = {
        "",
        "sha256",
        "sha256:",
        /* uppercase hex */
        "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
        /* 63 and 65 characters */
        "sha256:a7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0",
        /* non-hex */
        "sha256:zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        /* sha512 length under sha256 and the reverse */
        ("sha256:"
         "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c"
         "23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"),
        "sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "md5:900150983cd24fb0d6963f7d28e17f72",
        "SHA256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "sha256+b64:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        " sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mv_error e = MV_ERROR_INIT;
        CHECK_INT(oci_digest_validate(bad[i], &e), -EINVAL);
        CHECK_INT(e.code, -EINVAL);
        CHECK(strstr(e.msg, "digest") != NULL);
        CHECK(strchr(e.msg, '\n') == NULL);
    }
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(oci_digest_validate("md5:900150983cd24fb0d6963f7d28e17f72", &e), -EINVAL);
    CHECK_CONTAINS(e.msg, "digest \"md5:900150983cd24fb0d6963f7d28e17f72\"");
    CHECK_CONTAINS(e.msg, "unsupported algorithm");
    CHECK_INT(oci_digest_validate(NULL, &e), -EINVAL);
}

MV_TEST(very_long_digest_is_truncated_in_the_message)
{
    char big[10000];
    memcpy(big, "sha256:", 7);
    memset(big + 7, 'a', sizeof(big) - 8);
    big[sizeof(big) - 1] = '\0';
    mv_error e = MV_ERROR_INIT;
    CHECK_INT(oci_digest_validate(big, &e), -EINVAL);
    CHECK(strlen(e.msg) < 300);
    CHECK_CONTAINS(e.msg, "...");
}

MV_TEST(known_answers_one_shot)
{
    char out[OCI_DIGEST_MAX];
    oci_digest_buf(OCI_DIGEST_SHA256, "", 0, out);
    CHECK_STR(out, EMPTY256);
    oci_digest_buf(OCI_DIGEST_SHA256, "abc", 3, out);
    CHECK_STR(out, ABC256);
    oci_digest_buf(OCI_DIGEST_SHA512, "abc", 3, out);
    CHECK_STR(out, ABC512);
    oci_digest_buf(OCI_DIGEST_SHA512, "", 0, out);
    CHECK_STR(out, EMPTY512);
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    oci_digest_buf(OCI_DIGEST_SHA256, two, strlen(two), out);
    CHECK_STR(out, "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK_INT(oci_digest_validate(out, NULL), 0);
}

MV_TEST(streaming_matches_one_shot_and_resets)
{
    /* FIPS 180-2's million 'a', fed in uneven pieces. */
    _cleanup_hasher_ oci_hasher *h = oci_hasher_new(OCI_DIGEST_SHA256);
    char chunk[7777];
    memset(chunk, 'a', sizeof(chunk));
    size_t left = 1000000;
    while (left) {
        size_t n = left < sizeof(chunk) ? left : sizeof(chunk);
        oci_hasher_update(h, chunk, n);
        left -= n;
    }
    char out[OCI_DIGEST_MAX];
    oci_hasher_final(h, out);
    CHECK_STR(out, "sha256:cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* final resets: the next digest starts from nothing. */
    oci_hasher_update(h, "a", 1);
    oci_hasher_update(h, "bc", 2);
    oci_hasher_update(h, NULL, 0);
    oci_hasher_final(h, out);
    CHECK_STR(out, ABC256);
    oci_hasher_final(h, out);
    CHECK_STR(out, EMPTY256);
}

MV_TEST(sha512_streaming)
{
    _cleanup_hasher_ oci_hasher *h = oci_hasher_new(OCI_DIGEST_SHA512);
    oci_hasher_update(h, "ab", 2);
    oci_hasher_update(h, "c", 1);
    char out[OCI_DIGEST_MAX];
    oci_hasher_final(h, out);
    CHECK_STR(out, ABC512);
    CHECK_INT(strlen(out), OCI_DIGEST_MAX - 1);
}

int main(void)
{
    MV_RUN(valid_digests_are_accepted);
    MV_RUN(malformed_digests_are_rejected_naming_the_digest);
    MV_RUN(very_long_digest_is_truncated_in_the_message);
    MV_RUN(known_answers_one_shot);
    MV_RUN(streaming_matches_one_shot_and_resets);
    MV_RUN(sha512_streaming);
    MV_DONE();
}
