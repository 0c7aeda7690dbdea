/* test_crypto.c - p2p_crypto against known answers computed independently (Python's hmac,
 * hashlib and the `cryptography` package), plus AEAD tamper detection and rng behaviour. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "p2p_crypto.h"
#include "p2pnet.h"
#include "t.h"

static const uint8_t FOX[] = "The quick brown fox jumps over the lazy dog";

static void test_hmac_blake2b_known_answers(void)
{
    uint8_t out[P2P_HASH_LEN], key[200];
    size_t i;

    p2p_hmac_blake2b(out, (const uint8_t *)"key", 3, FOX, sizeof FOX - 1, NULL, 0);
    T_EQ_HEX(out, "92294f92c0dfb9b00ec9ae8bd94d7e7d8a036b885a499f149dfe2fd2199394aa"
                  "af6b8894a1730cccb2cd050f9bcf5062a38b51b0dab33207f8ef35ae2c9df51b");
    /* The message is in1 || in2; a 64-byte key. */
    for (i = 0; i < 64; i++) key[i] = (uint8_t)i;
    p2p_hmac_blake2b(out, key, 64, (const uint8_t *)"p2pnet", 6, (const uint8_t *)"|tail", 5);
    T_EQ_HEX(out, "cb083a62edf0851b1aadd1fb8b940034b95fc799cbee7bd4e4d44ce1386c42cd"
                  "51f0bd5568c1c183d243a396acf85494300dec791be0b76cc8cce63d9eee039f");
    /* Empty key and message. */
    p2p_hmac_blake2b(out, NULL, 0, NULL, 0, NULL, 0);
    T_EQ_HEX(out, "198cd2006f66ff83fbbd913f78aca2251caf4f19fe9475aade8cf2091b99a684"
                  "66775177424f58286886cbae8229644cec747237d4b721735485e17372fdf59c");
    /* A key longer than the block is hashed first (RFC 2104). */
    memset(key, 0xaa, sizeof key);
    p2p_hmac_blake2b(out, key, sizeof key, (const uint8_t *)"long key", 8, NULL, 0);
    T_EQ_HEX(out, "a03073512cc1853379ca044ee6743f2752ce2202d46ed2e8e904e72b620801ad"
                  "bf4e3d27d8af39fc77f27c0cebef90dd94521c8b180a34dd6364d474d529b572");
}

static void test_hkdf_known_answer(void)
{
    uint8_t ck[P2P_HASH_LEN], ikm[P2P_KEY_LEN], o1[P2P_HASH_LEN], o2[P2P_HASH_LEN],
        o3[P2P_HASH_LEN];
    uint8_t p1[P2P_HASH_LEN], p2[P2P_HASH_LEN];
    size_t i;

    for (i = 0; i < sizeof ck; i++) ck[i] = (uint8_t)(i * 3);
    for (i = 0; i < sizeof ikm; i++) ikm[i] = (uint8_t)i;
    p2p_hkdf(ck, ikm, sizeof ikm, o1, o2, o3);
    T_EQ_HEX(o1, "b3c64387ec53fa2bd03f9db7c1a3f9cf0d731fa01ed15fa7527dc7f91d95613a"
                 "0160973379c696d76c3d1cb7f431028df03eb409f33131fd1ce7e96f282b6e85");
    T_EQ_HEX(o2, "a8a7319ac84e9582e303f90b9076d388f7e91a2498486549cce3b643847e4bea"
                 "1c6887e32bd08cca3cc29be81d6070bc0b20fa6a773990b641fe2f619e06cd2a");
    T_EQ_HEX(o3, "d8830163610c4400a42fc51b6f4c17422eb92defe3e529889ba9856dee1fc87b"
                 "27048ffe9b975e6ad9228abc5235c0d4930fba06e0c8abbdd599862a827ccbef");
    /* Two outputs are the first two of three. */
    p2p_hkdf(ck, ikm, sizeof ikm, p1, p2, NULL);
    T_EQ_MEM(p1, o1, sizeof o1);
    T_EQ_MEM(p2, o2, sizeof o2);
}

static void test_hashes_known_answers(void)
{
    uint8_t out[P2P_HASH_LEN], key[P2P_KEY_LEN];
    size_t i;

    p2p_hash(out, NULL, 0, NULL, 0);
    T_EQ_HEX(out, "786a02f742015903c6c6fd852552d272912f4740e15847618a86e217f71f5419"
                  "d25e1031afee585313896444934eb04b903a685b1448b755d56f701afe9be2ce");
    /* H32 as the protocol derives the network psk: label || key, unkeyed. */
    p2p_blake2b(out, 32, NULL, 0, (const uint8_t *)"p2pnet/1 network key", 20,
                (const uint8_t *)"secret", 6);
    T_EQ_HEX(out, "45cff4f74a813cf3f5de179d059b91c86dd49c20bfbf3f61af0188c66d75a967");
    /* Keyed BLAKE2b-128, as mac1 uses it. */
    for (i = 0; i < sizeof key; i++) key[i] = (uint8_t)i;
    p2p_blake2b(out, 16, key, sizeof key, (const uint8_t *)"abc", 3, (const uint8_t *)"def", 3);
    T_EQ_HEX(out, "9354937c2934ef80443588f91cfe4c6c");
}

static void test_aead_known_answer_and_tamper(void)
{
    uint8_t key[P2P_KEY_LEN], ct[64], pt[64], buf[64];
    static const char msg[] = "hello p2pnet";
    const size_t n = sizeof msg - 1;
    const uint64_t nonce = 0x0102030405060708ull;
    size_t i;

    for (i = 0; i < sizeof key; i++) key[i] = (uint8_t)i;
    p2p_aead_seal(ct, key, nonce, (const uint8_t *)"ad", 2, (const uint8_t *)msg, n);
    /* Nonce layout: 4 zero bytes || little-endian counter. */
    T_EQ_HEX(ct, "982cc188c4199a2a14c54fb8fcc7f638d646901e963558cae30630af");
    T_EQ_INT(p2p_aead_open(pt, key, nonce, (const uint8_t *)"ad", 2, ct, n + 16), 0);
    T_EQ_MEM(pt, msg, n);

    /* Every single-bit change in the ciphertext or tag is refused, and out is zeroed. */
    for (i = 0; i < (n + 16) * 8; i++) {
        memcpy(buf, ct, n + 16);
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
        memset(pt, 0x55, sizeof pt);
        T_EQ_INT(p2p_aead_open(pt, key, nonce, (const uint8_t *)"ad", 2, buf, n + 16),
                 P2P_ERR_CRYPTO);
        T_CHECK(pt[0] == 0 && pt[n - 1] == 0);
    }
    /* Wrong nonce, wrong ad, wrong key, too short. */
    T_EQ_INT(p2p_aead_open(pt, key, nonce + 1, (const uint8_t *)"ad", 2, ct, n + 16),
             P2P_ERR_CRYPTO);
    T_EQ_INT(p2p_aead_open(pt, key, nonce, (const uint8_t *)"aD", 2, ct, n + 16), P2P_ERR_CRYPTO);
    key[0] ^= 1;
    T_EQ_INT(p2p_aead_open(pt, key, nonce, (const uint8_t *)"ad", 2, ct, n + 16), P2P_ERR_CRYPTO);
    key[0] ^= 1;
    T_EQ_INT(p2p_aead_open(pt, key, nonce, NULL, 0, ct, 15), P2P_ERR_CRYPTO);

    /* In place both ways. */
    memcpy(buf, msg, n);
    p2p_aead_seal(buf, key, nonce, (const uint8_t *)"ad", 2, buf, n);
    T_EQ_MEM(buf, ct, n + 16);
    T_EQ_INT(p2p_aead_open(buf, key, nonce, (const uint8_t *)"ad", 2, buf, n + 16), 0);
    T_EQ_MEM(buf, msg, n);
    /* Empty plaintext: just a tag. */
    p2p_aead_seal(buf, key, 0, NULL, 0, NULL, 0);
    T_EQ_INT(p2p_aead_open(pt, key, 0, NULL, 0, buf, 16), 0);
}

static void test_dh(void)
{
    uint8_t a[P2P_DH_LEN], b[P2P_DH_LEN], pa[P2P_DH_LEN], pb[P2P_DH_LEN], s1[P2P_DH_LEN],
        s2[P2P_DH_LEN], zero[P2P_DH_LEN] = {0};

    memset(a, 0x41, sizeof a);
    memset(b, 0x42, sizeof b);
    p2p_dh_public(pa, a);
    p2p_dh_public(pb, b);
    T_EQ_INT(p2p_dh(s1, a, pb), 0);
    T_EQ_INT(p2p_dh(s2, b, pa), 0);
    T_EQ_MEM(s1, s2, P2P_DH_LEN);
    T_CHECK(memcmp(s1, zero, P2P_DH_LEN) != 0);
    /* Low-order points give an all-zero secret: refused. */
    T_EQ_INT(p2p_dh(s1, a, zero), P2P_ERR_CRYPTO);
    {
        uint8_t one[P2P_DH_LEN] = {1};
        T_EQ_INT(p2p_dh(s1, a, one), P2P_ERR_CRYPTO);
    }
}

static void test_sign_and_convert(void)
{
    uint8_t seed[P2P_SEED_LEN], pk[P2P_ED_PK_LEN], sk[P2P_ED_SK_LEN], sig[P2P_SIG_LEN],
        xs[P2P_DH_LEN], xp[P2P_DH_LEN], xp2[P2P_DH_LEN];

    memset(seed, 7, sizeof seed);
    T_EQ_INT(p2p_ed_keypair_from_seed(pk, sk, seed), 0);
    p2p_sign(sig, (const uint8_t *)"msg", 3, sk);
    T_EQ_INT(p2p_verify(sig, (const uint8_t *)"msg", 3, pk), 0);
    T_EQ_INT(p2p_verify(sig, (const uint8_t *)"msG", 3, pk), P2P_ERR_CRYPTO);
    sig[10] ^= 4;
    T_EQ_INT(p2p_verify(sig, (const uint8_t *)"msg", 3, pk), P2P_ERR_CRYPTO);
    /* The converted secret and public keys belong together. */
    T_EQ_INT(p2p_ed_sk_to_x(xs, sk), 0);
    T_EQ_INT(p2p_ed_to_x_public(xp, pk), 0);
    p2p_dh_public(xp2, xs);
    T_EQ_MEM(xp, xp2, P2P_DH_LEN);
}

static void test_memcmp_and_wipe(void)
{
    uint8_t a[8] = {1, 2, 3, 4, 5, 6, 7, 8}, b[8];

    memcpy(b, a, sizeof a);
    T_EQ_INT(p2p_memcmp_ct(a, b, sizeof a), 0);
    b[7] ^= 1;
    T_CHECK(p2p_memcmp_ct(a, b, sizeof a) != 0);
    p2p_wipe(a, sizeof a);
    T_EQ_INT(a[0] | a[3] | a[7], 0);
}

static void test_rng_seeded_is_deterministic(void)
{
    p2p_rng r1, r2, r3;
    uint8_t x[100], y[100], z[100];
    int i;

    p2p_rng_init(&r1, 42);
    p2p_rng_init(&r2, 42);
    p2p_rng_init(&r3, 43);
    for (i = 0; i < 3; i++) {
        p2p_rng_bytes(&r1, x, sizeof x);
        p2p_rng_bytes(&r2, y, sizeof y);
        p2p_rng_bytes(&r3, z, sizeof z);
        T_EQ_MEM(x, y, sizeof x);
        T_CHECK(memcmp(x, z, sizeof x) != 0);
    }
    /* Successive draws differ. */
    p2p_rng_bytes(&r1, y, sizeof y);
    T_CHECK(memcmp(x, y, sizeof x) != 0);
    p2p_rng_bytes(&r2, z, sizeof z);
    T_EQ_MEM(y, z, sizeof y);
    T_EQ_INT(p2p_rng_u32(&r1), p2p_rng_u32(&r2));
}

static void test_rng_u32_and_below(void)
{
    p2p_rng a, b, sys;
    uint32_t counts[6] = {0};
    int i, same = 1;

    p2p_rng_init(&a, 9);
    p2p_rng_init(&b, 9);
    for (i = 0; i < 20; i++) same &= p2p_rng_u32(&a) == p2p_rng_u32(&b);
    T_CHECK(same);
    for (i = 0; i < 6000; i++) {
        uint32_t v = p2p_rng_below(&a, 6);
        T_CHECK(v < 6);
        if (v < 6) counts[v]++;
    }
    for (i = 0; i < 6; i++) T_CHECK(counts[i] > 800 && counts[i] < 1200);
    T_EQ_INT(p2p_rng_below(&a, 1), 0);
    /* Unseeded: system randomness, two draws of 32 bytes do not collide. */
    {
        uint8_t x[32], y[32];
        p2p_rng_init(&sys, 0);
        p2p_rng_bytes(&sys, x, sizeof x);
        p2p_rng_bytes(&sys, y, sizeof y);
        T_CHECK(memcmp(x, y, sizeof x) != 0);
    }
}

int main(void)
{
    if (p2p_crypto_init() != 0) return 1;
    T_RUN(test_hmac_blake2b_known_answers);
    T_RUN(test_hkdf_known_answer);
    T_RUN(test_hashes_known_answers);
    T_RUN(test_aead_known_answer_and_tamper);
    T_RUN(test_dh);
    T_RUN(test_sign_and_convert);
    T_RUN(test_memcmp_and_wipe);
    T_RUN(test_rng_seeded_is_deterministic);
    T_RUN(test_rng_u32_and_below);
    return t_summary("crypto");
}
