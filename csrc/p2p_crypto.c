/*
 * p2p_crypto.c - the primitives p2pnet takes from libsodium 1.0.18, and the two it has to
 * build itself: HMAC-BLAKE2b (libsodium only has BLAKE2b's keyed mode, which is a different
 * function and does not reproduce the Noise vectors) and the Noise HKDF on top of it.
 */
#ifdef _WIN32
/* A slim reader/writer lock: no winpthread DLL to ship beside the module. */
#include <windows.h>
typedef SRWLOCK pthread_mutex_t;
#define PTHREAD_MUTEX_INITIALIZER SRWLOCK_INIT
#define pthread_mutex_lock(m) AcquireSRWLockExclusive(m)
#define pthread_mutex_unlock(m) ReleaseSRWLockExclusive(m)
#else
#include <pthread.h>
#endif
#include <sodium.h>
#include <string.h>

#include "p2p_crypto.h"
#include "p2pnet.h"

/* The ChaCha20 block: the unit its counter advances by. */
#define CHACHA20_BLOCK_LEN 64

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

void p2p_hash(uint8_t out[P2P_HASH_LEN], const uint8_t *in1, size_t n1, const uint8_t *in2,
              size_t n2)
{
    p2p_blake2b(out, P2P_HASH_LEN, NULL, 0, in1, n1, in2, n2);
}

void p2p_blake2b(uint8_t *out, size_t outlen, const uint8_t *key, size_t keylen, const uint8_t *in1,
                 size_t n1, const uint8_t *in2, size_t n2)
{
    crypto_generichash_state st;

    crypto_generichash_init(&st, key, key ? keylen : 0, outlen);
    if (n1) crypto_generichash_update(&st, in1, n1);
    if (n2) crypto_generichash_update(&st, in2, n2);
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

    for (i = 0; i < HMAC_BLOCK; i++) pad[i] = k[i] ^ 0x36;
    crypto_generichash_init(&st, NULL, 0, P2P_HASH_LEN);
    crypto_generichash_update(&st, pad, HMAC_BLOCK);
    if (n1) crypto_generichash_update(&st, in1, n1);
    if (n2) crypto_generichash_update(&st, in2, n2);
    crypto_generichash_final(&st, inner, P2P_HASH_LEN);

    for (i = 0; i < HMAC_BLOCK; i++) pad[i] = k[i] ^ 0x5c;
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
              uint8_t out1[P2P_HASH_LEN], uint8_t out2[P2P_HASH_LEN], uint8_t out3[P2P_HASH_LEN])
{
    uint8_t temp[P2P_HASH_LEN];
    static const uint8_t one = 0x01, two = 0x02, three = 0x03;

    p2p_hmac_blake2b(temp, ck, P2P_HASH_LEN, ikm, ikmlen, NULL, 0);
    p2p_hmac_blake2b(out1, temp, P2P_HASH_LEN, &one, 1, NULL, 0);
    p2p_hmac_blake2b(out2, temp, P2P_HASH_LEN, out1, P2P_HASH_LEN, &two, 1);
    if (out3) p2p_hmac_blake2b(out3, temp, P2P_HASH_LEN, out2, P2P_HASH_LEN, &three, 1);
    sodium_memzero(temp, sizeof temp);
}

static void aead_nonce(uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES], uint64_t n)
{
    int i;

    memset(nonce, 0, 4);
    for (i = 0; i < 8; i++) nonce[4 + i] = (uint8_t)(n >> (8 * i));
}

void p2p_aead_seal(uint8_t *out, const uint8_t key[P2P_KEY_LEN], uint64_t n, const uint8_t *ad,
                   size_t adlen, const uint8_t *pt, size_t ptlen)
{
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];

    aead_nonce(nonce, n);
    crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, pt, ptlen, ad, adlen, NULL, nonce, key);
}

int p2p_aead_open(uint8_t *out, const uint8_t key[P2P_KEY_LEN], uint64_t n, const uint8_t *ad,
                  size_t adlen, const uint8_t *ct, size_t ctlen)
{
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];

    if (ctlen < P2P_TAG_LEN) return P2P_ERR_CRYPTO;
    aead_nonce(nonce, n);
    if (crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, ct, ctlen, ad, adlen, nonce,
                                                  key) != 0) {
        /* Never leave unauthenticated plaintext (or a half-decrypted buffer) behind. */
        memset(out, 0, ctlen - P2P_TAG_LEN);
        return P2P_ERR_CRYPTO;
    }
    return 0;
}

void p2p_xaead_seal(uint8_t *out, const uint8_t key[P2P_KEY_LEN],
                    const uint8_t nonce[P2P_XNONCE_LEN], const uint8_t *ad, size_t adlen,
                    const uint8_t *pt, size_t ptlen)
{
    crypto_aead_xchacha20poly1305_ietf_encrypt(out, NULL, pt, ptlen, ad, adlen, NULL, nonce, key);
}

int p2p_xaead_open(uint8_t *out, const uint8_t key[P2P_KEY_LEN],
                   const uint8_t nonce[P2P_XNONCE_LEN], const uint8_t *ad, size_t adlen,
                   const uint8_t *ct, size_t ctlen)
{
    if (ctlen < P2P_TAG_LEN) return P2P_ERR_CRYPTO;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, NULL, NULL, ct, ctlen, ad, adlen, nonce,
                                                   key) != 0) {
        memset(out, 0, ctlen - P2P_TAG_LEN);
        return P2P_ERR_CRYPTO;
    }
    return 0;
}

/* ---- network key ---------------------------------------------------------------------- */

#define PSK_CACHE 4

/* Entries are found by a keyed hash of the network key, under a key drawn once per process,
 * so the table holds nothing an offline guesser could test candidates against quickly. */
static pthread_mutex_t psk_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    int used;
    uint64_t last;
    uint8_t tag[P2P_KEY_LEN];
    uint8_t psk[P2P_KEY_LEN];
} psk_cache[PSK_CACHE];
static uint8_t psk_tag_key[P2P_KEY_LEN];
static int psk_tag_keyed;
static uint64_t psk_clock, psk_derivations;

int p2p_network_psk(uint8_t psk[P2P_KEY_LEN], const uint8_t *key, size_t len)
{
    static const uint8_t salt[] = P2P_NETKEY_SALT;
    uint8_t tag[P2P_KEY_LEN];
    int rc = 0, i, victim = 0;

    _Static_assert(sizeof salt - 1 == crypto_pwhash_SALTBYTES, "the salt is 16 bytes");
    if (p2p_crypto_init() != 0) return P2P_ERR_CRYPTO;
    pthread_mutex_lock(&psk_lock);
    if (!psk_tag_keyed) {
        randombytes_buf(psk_tag_key, sizeof psk_tag_key);
        psk_tag_keyed = 1;
    }
    p2p_blake2b(tag, sizeof tag, psk_tag_key, sizeof psk_tag_key, key, len, NULL, 0);
    psk_clock++;
    for (i = 0; i < PSK_CACHE; i++) {
        if (psk_cache[i].used && sodium_memcmp(psk_cache[i].tag, tag, sizeof tag) == 0) {
            memcpy(psk, psk_cache[i].psk, P2P_KEY_LEN);
            psk_cache[i].last = psk_clock;
            goto out;
        }
        if (!psk_cache[i].used || psk_cache[i].last < psk_cache[victim].last) victim = i;
        if (!psk_cache[i].used) break;
    }
    /* Held across the derivation: two threads asking for the same key derive it once. */
    if (crypto_pwhash(psk, P2P_KEY_LEN, (const char *)key, len, salt, P2P_NETKEY_OPSLIMIT,
                      P2P_NETKEY_MEMLIMIT, crypto_pwhash_ALG_ARGON2ID13) != 0) {
        sodium_memzero(psk, P2P_KEY_LEN);
        rc = P2P_ERR_NOMEM;
        goto out;
    }
    psk_derivations++;
    psk_cache[victim].used = 1;
    psk_cache[victim].last = psk_clock;
    memcpy(psk_cache[victim].tag, tag, sizeof tag);
    memcpy(psk_cache[victim].psk, psk, P2P_KEY_LEN);
out:
    pthread_mutex_unlock(&psk_lock);
    sodium_memzero(tag, sizeof tag);
    return rc;
}

uint64_t p2p_network_psk_derivations(void)
{
    uint64_t n;

    pthread_mutex_lock(&psk_lock);
    n = psk_derivations;
    pthread_mutex_unlock(&psk_lock);
    return n;
}

int p2p_dh(uint8_t out[P2P_DH_LEN], const uint8_t sk[P2P_DH_LEN], const uint8_t pk[P2P_DH_LEN])
{
    static const uint8_t zero[P2P_DH_LEN];

    /* libsodium already refuses an all-zero result; the explicit check keeps the contract
     * independent of how it was built. */
    if (crypto_scalarmult(out, sk, pk) != 0 || sodium_memcmp(out, zero, P2P_DH_LEN) == 0) {
        sodium_memzero(out, P2P_DH_LEN);
        return P2P_ERR_CRYPTO;
    }
    return 0;
}

void p2p_dh_public(uint8_t pk[P2P_DH_LEN], const uint8_t sk[P2P_DH_LEN])
{
    crypto_scalarmult_base(pk, sk);
}

void p2p_sign(uint8_t sig[P2P_SIG_LEN], const uint8_t *msg, size_t len,
              const uint8_t sk[P2P_ED_SK_LEN])
{
    crypto_sign_detached(sig, NULL, msg, len, sk);
}

int p2p_verify(const uint8_t sig[P2P_SIG_LEN], const uint8_t *msg, size_t len,
               const uint8_t pk[P2P_ED_PK_LEN])
{
    return crypto_sign_verify_detached(sig, msg, len, pk) == 0 ? 0 : P2P_ERR_CRYPTO;
}

int p2p_ed_to_x_public(uint8_t x_pk[P2P_DH_LEN], const uint8_t ed_pk[P2P_ED_PK_LEN])
{
    return crypto_sign_ed25519_pk_to_curve25519(x_pk, ed_pk) == 0 ? 0 : P2P_ERR_CRYPTO;
}

int p2p_ed_keypair_from_seed(uint8_t pk[P2P_ED_PK_LEN], uint8_t sk[P2P_ED_SK_LEN],
                             const uint8_t seed[P2P_SEED_LEN])
{
    if (p2p_crypto_init() != 0) return P2P_ERR_CRYPTO;
    return crypto_sign_seed_keypair(pk, sk, seed) == 0 ? 0 : P2P_ERR_CRYPTO;
}

int p2p_ed_sk_to_x(uint8_t x_sk[P2P_DH_LEN], const uint8_t ed_sk[P2P_ED_SK_LEN])
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
    if (seed == 0) return;
    for (i = 0; i < 8; i++) le[i] = (uint8_t)(seed >> (8 * i));
    p2p_blake2b(r->key, sizeof r->key, NULL, 0, (const uint8_t *)label, sizeof label - 1, le,
                sizeof le);
}

void p2p_rng_bytes(p2p_rng *r, void *buf, size_t n)
{
    static const uint8_t nonce[crypto_stream_chacha20_NONCEBYTES];
    uint64_t blocks;

    if (n == 0) return;
    if (r->seed == 0) {
        randombytes_buf(buf, n);
        return;
    }
    /* The original ChaCha20 has a 64-bit block counter, so the stream never wraps. Each call
     * starts on a fresh block: the output depends only on the seed and the call sequence. */
    memset(buf, 0, n);
    crypto_stream_chacha20_xor_ic(buf, buf, n, nonce, r->counter, r->key);
    blocks = ((uint64_t)n + CHACHA20_BLOCK_LEN - 1) / CHACHA20_BLOCK_LEN;
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

    if (bound <= 1) return 0;
    threshold = (uint32_t)(-bound) % bound;
    do {
        x = p2p_rng_u32(r);
    } while (x < threshold);
    return x % bound;
}

/* ---- transfers: streaming BLAKE2b --------------------------------------------------------- */

_Static_assert(sizeof(crypto_generichash_state) <= P2P_HASH_STREAM_SIZE,
               "p2p_hash_stream is too small for libsodium's state");

void p2p_hash_stream_init(p2p_hash_stream *s, size_t outlen)
{
    crypto_generichash_init((crypto_generichash_state *)(void *)s->opaque, NULL, 0, outlen);
}

void p2p_hash_stream_update(p2p_hash_stream *s, const uint8_t *in, size_t n)
{
    if (n) crypto_generichash_update((crypto_generichash_state *)(void *)s->opaque, in, n);
}

void p2p_hash_stream_final(p2p_hash_stream *s, uint8_t *out, size_t outlen)
{
    crypto_generichash_final((crypto_generichash_state *)(void *)s->opaque, out, outlen);
    sodium_memzero(s, sizeof *s);
}
