/* digest.c — content digests: validating "alg:hex" strings and hashing
 * bytes with OpenSSL EVP, in one go or as they stream in. */
#include "oci.h"

#include <openssl/evp.h>
#include <string.h>

struct oci_hasher {
    EVP_MD_CTX *ctx;
    oci_digest_alg alg;
};

static const struct {
    const char *prefix; /* including the ':' */
    size_t hex_len;
} algs[] = {
    [OCI_DIGEST_SHA256] = {"sha256:", 64},
    [OCI_DIGEST_SHA512] = {"sha512:", 128},
};

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

int oci_digest_alg_of(const char *digest, oci_digest_alg *alg, mv_error *err)
{
    if (!digest || !*digest)
        return mv_error_set(err, -EINVAL, "empty digest");
    const char *colon = strchr(digest, ':');
    if (!colon)
        return mv_error_set(err, -EINVAL, "digest \"%s\" has no algorithm (expected sha256:<hex>)",
                            MV_QUOTED(digest));
    for (size_t a = 0; a < sizeof(algs) / sizeof(algs[0]); a++) {
        size_t plen = strlen(algs[a].prefix);
        if (strncmp(digest, algs[a].prefix, plen) != 0)
            continue;
        const char *hex = digest + plen;
        size_t n = strlen(hex);
        bool ok = n == algs[a].hex_len;
        for (size_t i = 0; ok && i < n; i++)
            ok = is_lower_hex(hex[i]);
        if (!ok)
            return mv_error_set(err, -EINVAL,
                                "digest \"%s\": expected %zu lowercase hex characters after \"%s\"",
                                MV_QUOTED(digest), algs[a].hex_len, algs[a].prefix);
        if (alg)
            *alg = (oci_digest_alg)a;
        return 0;
    }
    return mv_error_set(err, -EINVAL,
                        "digest \"%s\": unsupported algorithm (only sha256 and sha512)",
                        MV_QUOTED(digest));
}

int oci_digest_validate(const char *digest, mv_error *err)
{
    return oci_digest_alg_of(digest, NULL, err);
}

const char *oci_digest_hex(const char *digest)
{
    const char *colon = digest ? strchr(digest, ':') : NULL;
    return colon ? colon + 1 : digest;
}

static const EVP_MD *evp_of(oci_digest_alg alg)
{
    return alg == OCI_DIGEST_SHA512 ? EVP_sha512() : EVP_sha256();
}

/* EVP only fails here on allocation failure or a broken OpenSSL; like the
 * x-allocators, there is nothing sensible a caller could do about it. */
static void must(int ok, const char *what)
{
    if (ok == 1)
        return;
    fprintf(stderr, "modelvol: OpenSSL %s failed\n", what);
    abort();
}

oci_hasher *oci_hasher_new(oci_digest_alg alg)
{
    oci_hasher *h = mv_xcalloc(1, sizeof(*h));
    h->alg = alg == OCI_DIGEST_SHA512 ? OCI_DIGEST_SHA512 : OCI_DIGEST_SHA256;
    h->ctx = EVP_MD_CTX_new();
    must(h->ctx != NULL, "EVP_MD_CTX_new");
    must(EVP_DigestInit_ex(h->ctx, evp_of(h->alg), NULL), "EVP_DigestInit_ex");
    return h;
}

void oci_hasher_update(oci_hasher *h, const void *buf, size_t len)
{
    if (len == 0)
        return;
    must(EVP_DigestUpdate(h->ctx, buf, len), "EVP_DigestUpdate");
}

void oci_hasher_final(oci_hasher *h, char out[OCI_DIGEST_MAX])
{
    static const char hexdig[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    must(EVP_DigestFinal_ex(h->ctx, md, &n), "EVP_DigestFinal_ex");
    size_t plen = strlen(algs[h->alg].prefix);
    memcpy(out, algs[h->alg].prefix, plen);
    for (size_t i = 0; i < n; i++) {
        out[plen + 2 * i] = hexdig[md[i] >> 4];
        out[plen + 2 * i + 1] = hexdig[md[i] & 0xf];
    }
    out[plen + 2 * (size_t)n] = '\0';
    must(EVP_DigestInit_ex(h->ctx, evp_of(h->alg), NULL), "EVP_DigestInit_ex");
}

void oci_hasher_free(oci_hasher *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void oci_digest_buf(oci_digest_alg alg, const void *buf, size_t len, char out[OCI_DIGEST_MAX])
{
    _cleanup_hasher_ oci_hasher *h = oci_hasher_new(alg);
    oci_hasher_update(h, buf, len);
    oci_hasher_final(h, out);
}
