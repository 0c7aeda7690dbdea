/*
 * p2p_crypto.c - the primitives p2pnet takes from libsodium 1.0.18, and the two it has to
 * build itself: HMAC-BLAKE2b (libsodium only has BLAKE2b's keyed mode, which is a different
 * function and does not reproduce the Noise vectors) and the Noise HKDF on top of it.
 */
#include <sodium.h>
#include <string.h>

#include "p2p_crypto.h"
#include "p2pnet.h"

#define HMAC_BLOCK 128 /* BLAKE2b's block size, as RFC 2104 requires */

int p2p_crypto_init(void)
{
    /* sodium_init() returns 1 when already initialised: that is success too. */
    return sodium_init() < 0 ? P2P_ERR_CRYPTO : 0;
}

void p2p_random_bytes(void *buf, size_t n)
{
    (void)p2p_crypto_init();
    randombytes_buf(buf, n);
}

void p2p_hash(uint8_t out[P2P_HASH_LEN], const uint8_t *in1, size_t n1,
              const uint8_t *in2, size_t n2)
{
    p2p_blake2b(out, P2P_HASH_LEN, NULL, 0, in1, n1, in2, n2);
}

void p2p_blake2b(uint8_t *out, size_t outlen, const uint8_t *key, size_t keylen,
                 const uint8_t *in1, size_t n1, const uint8_t *in2, size_t n2)
{
    crypto_generichash_state st;

    crypto_generichash_init(&st, key, key ? keylen : 0, outlen);
    if (n1)
        crypto_generichash_update(&st, in1, n1);
    if (n2)
        crypto_generichash_update(&st, in2, n2);
    crypto_generichash_final(&st, out, outlen);
    sodium_memzero(&st, sizeof st);
}

void p2p_hmac_blake2b(uint8_t out[P2P_HASH_LEN], const uint8_t *key, size_t keylen,
                      const uint8_t *in1, size_t n1, const uint8_t *in2, size_t n2)
{
    uint8_t k[HMAC_BLOCK], pad[HMAC_BLOCK], inner[P2P_HASH_LEN];
    crypto_generichash_state st;
    size_t i;

    memset(k, 0, sizeof k);
    if (keylen > HMAC_BLOCK)
        p2p_hash(k, key, keylen, NULL, 0); /* RFC 2104: long keys are hashed first */
    else if (keylen)
        memcpy(k, key, keylen);

    for (i = 0; i < HMAC_BLOCK; i++)
        pad[i] = k[i] ^ 0x36;
    crypto_generichash_init(&st, NULL, 0, P2P_HASH_LEN);
    crypto_generichash_update(&st, pad, HMAC_BLOCK);
    if (n1)
        crypto_generichash_update(&st, in1, n1);
    if (n2)
        crypto_generichash_update(&st, in2, n2);
    crypto_generichash_final(&st, inner, P2P_HASH_LEN);

    for (i = 0; i < HMAC_BLOCK; i++)
        pad[i] = k[i] ^ 0x5c;
    crypto_generichash_init(&st, NULL, 0, P2P_HASH_LEN);
    crypto_generichash_update(&st, pad, HMAC_BLOCK);
    crypto_generichash_update(&st, inner, P2P_HASH_LEN);
    crypto_generichash_final(&st, out, P2P_HASH_LEN);

    sodium_memzero(k, sizeof k);
    sodium_memzero(pad, sizeof pad);
    sodium_memzero(inner, sizeof inner);
    sodium_memzero(&st, sizeof st);
}

void p2p_hkdf(const uint8_t ck[P2P_HASH_LEN], const uint8_t *ikm, size_t ikmlen,
              uint8_t out1[P2P_HASH_LEN], uint8_t out2[P2P_HASH_LEN],
              uint8_t out3[P2P_HASH_LEN])
{
    uint8_t temp[P2P_HASH_LEN];
    static const uint8_t one = 0x01, two = 0x02, three = 0x03;

    p2p_hmac_blake2b(temp, ck, P2P_HASH_LEN, ikm, ikmlen, NULL, 0);
    p2p_hmac_blake2b(out1, temp, P2P_HASH_LEN, &one, 1, NULL, 0);
    p2p_hmac_blake2b(out2, temp, P2P_HASH_LEN, out1, P2P_HASH_LEN, &two, 1);
    if (out3)
        p2p_hmac_blake2b(out3, temp, P2P_HASH_LEN, out2, P2P_HASH_LEN, &three, 1);
    sodium_memzero(temp, sizeof temp);
}

static void aead_nonce(uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES], uint64_t n)
{
    int i;

    memset(nonce, 0, 4);
    for (i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(n >> (8 * i));
}

void p2p_aead_seal(uint8_t *out, const uint8_t key[P2P_KEY_LEN], uint64_t n,
                   const uint8_t *ad, size_t adlen, const uint8_t *pt, size_t ptlen)
{
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];

    aead_nonce(nonce, n);
    crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, pt, ptlen, ad, adlen, NULL, nonce,
                                              key);
}

int p2p_aead_open(uint8_t *out, const uint8_t key[P2P_KEY_LEN], uint64_t n,
                  const uint8_t *ad, size_t adlen, const uint8_t *ct, size_t ctlen)
{
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];

    if (ctlen < P2P_TAG_LEN)
        return P2P_ERR_CRYPTO;
    aead_nonce(nonce, n);
    if (crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, ct, ctlen, ad, adlen, nonce,
                                                  key) != 0) {
        /* Never leave unauthenticated plaintext (or a half-decrypted buffer) behind. */
        memset(out, 0, ctlen - P2P_TAG_LEN);
        return P2P_ERR_CRYPTO;
    }
    return 0;
}

int p2p_dh(uint8_t out[32], const uint8_t sk[32], const uint8_t pk[32])
{
    static const uint8_t zero[32];

    /* libsodium already refuses an all-zero result; the explicit check keeps the contract
     * independent of how it was built. */
    if (crypto_scalarmult(out, sk, pk) != 0 || sodium_memcmp(out, zero, 32) == 0) {
        sodium_memzero(out, 32);
        return P2P_ERR_CRYPTO;
    }
    return 0;
}

void p2p_dh_public(uint8_t pk[32], const uint8_t sk[32])
{
    crypto_scalarmult_base(pk, sk);
}

void p2p_sign(uint8_t sig[64], const uint8_t *msg, size_t len, const uint8_t sk[64])
{
    crypto_sign_detached(sig, NULL, msg, len, sk);
}

int p2p_verify(const uint8_t sig[64], const uint8_t *msg, size_t len, const uint8_t pk[32])
{
    return crypto_sign_verify_detached(sig, msg, len, pk) == 0 ? 0 : P2P_ERR_CRYPTO;
}

int p2p_ed_to_x_public(uint8_t x_pk[32], const uint8_t ed_pk[32])
{
    return crypto_sign_ed25519_pk_to_curve25519(x_pk, ed_pk) == 0 ? 0 : P2P_ERR_CRYPTO;
}

int p2p_ed_keypair_from_seed(uint8_t pk[32], uint8_t sk[64], const uint8_t seed[32])
{
    if (p2p_crypto_init() != 0)
        return P2P_ERR_CRYPTO;
    return crypto_sign_seed_keypair(pk, sk, seed) == 0 ? 0 : P2P_ERR_CRYPTO;
}

int p2p_ed_sk_to_x(uint8_t x_sk[32], const uint8_t ed_sk[64])
{
    return crypto_sign_ed25519_sk_to_curve25519(x_sk, ed_sk) == 0 ? 0 : P2P_ERR_CRYPTO;
}

int p2p_memcmp_ct(const void *a, const void *b, size_t n)
{
    return sodium_memcmp(a, b, n) == 0 ? 0 : 1;
}

void p2p_wipe(void *p, size_t n)
{
    sodium_memzero(p, n);
}

/* ---- random source -------------------------------------------------------------------- */

void p2p_rng_init(p2p_rng *r, uint64_t seed)
{
    static const char label[] = "p2pnet/1 rng";
    uint8_t le[8];
    int i;

    (void)p2p_crypto_init();
    memset(r, 0, sizeof *r);
    r->seed = seed;
    if (seed == 0)
        return;
    for (i = 0; i < 8; i++)
        le[i] = (uint8_t)(seed >> (8 * i));
    p2p_blake2b(r->key, sizeof r->key, NULL, 0, (const uint8_t *)label, sizeof label - 1, le,
                sizeof le);
}

void p2p_rng_bytes(p2p_rng *r, void *buf, size_t n)
{
    static const uint8_t nonce[crypto_stream_chacha20_NONCEBYTES];
    uint64_t blocks;

    if (n == 0)
        return;
    if (r->seed == 0) {
        randombytes_buf(buf, n);
        return;
    }
    /* The original ChaCha20 has a 64-bit block counter, so the stream never wraps. Each call
     * starts on a fresh block: the output depends only on the seed and the call sequence. */
    memset(buf, 0, n);
    crypto_stream_chacha20_xor_ic(buf, buf, n, nonce, r->counter, r->key);
    blocks = ((uint64_t)n + 63) / 64;
    r->counter += blocks;
}

uint32_t p2p_rng_u32(p2p_rng *r)
{
    uint8_t b[4];

    p2p_rng_bytes(r, b, sizeof b);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

uint32_t p2p_rng_below(p2p_rng *r, uint32_t bound)
{
    /* Values below 2^32 mod bound would be over-represented: redraw them. */
    uint32_t threshold, x;

    if (bound <= 1)
        return 0;
    threshold = (uint32_t)(-bound) % bound;
    do {
        x = p2p_rng_u32(r);
    } while (x < threshold);
    return x % bound;
}
