/*
 * p2p_crypto.h - the primitives p2pnet builds from libsodium: HMAC-BLAKE2b and the Noise HKDF,
 * ChaCha20-Poly1305-IETF with a 64-bit counter nonce, X25519, keyed MACs, hashing and a
 * random source that can be made deterministic for the simulator.
 *
 * p2p_crypto.c and p2p_noise.c are the only files that include <sodium.h>.
 */
#ifndef P2P_CRYPTO_H
#define P2P_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "p2pnet.h" /* the key sizes: P2P_DH_LEN, P2P_SIG_LEN, ... */

#define P2P_KEY_LEN 32
#define P2P_HASH_LEN 64 /* BLAKE2b-512 */
#define P2P_TAG_LEN 16
#define P2P_MAC_LEN 16

/* HMAC (RFC 2104) over unkeyed BLAKE2b-512 with a 128-byte block. The message is the
 * concatenation in1 || in2 (either may be empty/NULL). keylen <= 128. */
void p2p_hmac_blake2b(uint8_t out[P2P_HASH_LEN], const uint8_t *key, size_t keylen,
                      const uint8_t *in1, size_t n1, const uint8_t *in2, size_t n2);

/* Noise HKDF(chaining_key, ikm, n) with n = 2 or 3 outputs of 64 bytes. out3 may be NULL
 * when n == 2. */
void p2p_hkdf(const uint8_t ck[P2P_HASH_LEN], const uint8_t *ikm, size_t ikmlen,
              uint8_t out1[P2P_HASH_LEN], uint8_t out2[P2P_HASH_LEN], uint8_t out3[P2P_HASH_LEN]);

/* BLAKE2b-512 of in1 || in2. */
void p2p_hash(uint8_t out[P2P_HASH_LEN], const uint8_t *in1, size_t n1, const uint8_t *in2,
              size_t n2);
/* BLAKE2b with outlen bytes of output (16..64) of in1 || in2, keyed when key != NULL
 * (keylen 16..64). */
void p2p_blake2b(uint8_t *out, size_t outlen, const uint8_t *key, size_t keylen, const uint8_t *in1,
                 size_t n1, const uint8_t *in2, size_t n2);

/* ChaCha20-Poly1305-IETF, nonce = 4 zero bytes || n as u64 little-endian.
 * seal writes ptlen + 16 bytes to out; out may equal pt (in-place). */
void p2p_aead_seal(uint8_t *out, const uint8_t key[P2P_KEY_LEN], uint64_t n, const uint8_t *ad,
                   size_t adlen, const uint8_t *pt, size_t ptlen);
/* open writes ctlen - 16 bytes to out; out may equal ct. Returns 0, or P2P_ERR_CRYPTO when
 * the tag does not verify (out is then zeroed) or ctlen < 16. */
int p2p_aead_open(uint8_t *out, const uint8_t key[P2P_KEY_LEN], uint64_t n, const uint8_t *ad,
                  size_t adlen, const uint8_t *ct, size_t ctlen);

/* X25519. Returns 0, or P2P_ERR_CRYPTO for a low-order public key (all-zero output). */
int p2p_dh(uint8_t out[P2P_DH_LEN], const uint8_t sk[P2P_DH_LEN], const uint8_t pk[P2P_DH_LEN]);
void p2p_dh_public(uint8_t pk[P2P_DH_LEN], const uint8_t sk[P2P_DH_LEN]);

/* Ed25519 detached signatures. verify returns 0 or P2P_ERR_CRYPTO. */
void p2p_sign(uint8_t sig[P2P_SIG_LEN], const uint8_t *msg, size_t len,
              const uint8_t sk[P2P_ED_SK_LEN]);
int p2p_verify(const uint8_t sig[P2P_SIG_LEN], const uint8_t *msg, size_t len,
               const uint8_t pk[P2P_ED_PK_LEN]);
/* The X25519 public key that corresponds to an Ed25519 public key.
 * Returns 0 or P2P_ERR_CRYPTO (not a valid point). */
int p2p_ed_to_x_public(uint8_t x_pk[P2P_DH_LEN], const uint8_t ed_pk[P2P_ED_PK_LEN]);

/* The Ed25519 key pair for a 32-byte seed: pk (32 bytes) and sk (64 bytes, seed || pk).
 * Returns 0 or P2P_ERR_CRYPTO. */
int p2p_ed_keypair_from_seed(uint8_t pk[P2P_ED_PK_LEN], uint8_t sk[P2P_ED_SK_LEN],
                             const uint8_t seed[P2P_SEED_LEN]);
/* The X25519 private key that corresponds to an Ed25519 secret key (64 bytes).
 * Returns 0 or P2P_ERR_CRYPTO. */
int p2p_ed_sk_to_x(uint8_t x_sk[P2P_DH_LEN], const uint8_t ed_sk[P2P_ED_SK_LEN]);

/* XChaCha20-Poly1305-IETF with a random 24-byte nonce (COOKIE replies, which have no counter).
 * seal writes ptlen + 16 bytes to out; open returns 0 or P2P_ERR_CRYPTO (out zeroed). */
#define P2P_XNONCE_LEN 24
void p2p_xaead_seal(uint8_t *out, const uint8_t key[P2P_KEY_LEN],
                    const uint8_t nonce[P2P_XNONCE_LEN], const uint8_t *ad, size_t adlen,
                    const uint8_t *pt, size_t ptlen);
int p2p_xaead_open(uint8_t *out, const uint8_t key[P2P_KEY_LEN],
                   const uint8_t nonce[P2P_XNONCE_LEN], const uint8_t *ad, size_t adlen,
                   const uint8_t *ct, size_t ctlen);

/* The network key stretched into the 32-byte psk (docs/PROTOCOL.md section 1): Argon2id
 * version 1.3 with the protocol's fixed salt and cost, so that an offline guess costs what
 * the parameters say. The last few keys are remembered process-wide (under a mutex), so
 * hosts made with the same key, by the hundred in tests, pay for it once. Returns 0,
 * P2P_ERR_NOMEM (the 64 MiB of Argon2 memory could not be had) or P2P_ERR_CRYPTO. */
#define P2P_NETKEY_SALT "p2pnet/1 network" /* 16 bytes, no NUL */
#define P2P_NETKEY_OPSLIMIT 2u             /* libsodium's INTERACTIVE values, fixed here */
#define P2P_NETKEY_MEMLIMIT (64u * 1024u * 1024u)
int p2p_network_psk(uint8_t psk[P2P_KEY_LEN], const uint8_t *key, size_t len);
/* How many Argon2id derivations this process ran (cache misses), for tests. */
uint64_t p2p_network_psk_derivations(void);

/* Initialises libsodium; idempotent and thread-safe. Returns 0 or P2P_ERR_CRYPTO. */
int p2p_crypto_init(void);
/* n bytes of system randomness (never deterministic). */
void p2p_random_bytes(void *buf, size_t n);

/* Constant-time comparison: 0 when equal. */
int p2p_memcmp_ct(const void *a, const void *b, size_t n);
void p2p_wipe(void *p, size_t n);

/* A random source. Seeded (seed != 0): a ChaCha20 keystream keyed from the seed, so the
 * simulator is deterministic. Unseeded: libsodium's system randomness. */
typedef struct p2p_rng {
    uint64_t seed;    /* 0: system randomness */
    uint64_t counter; /* blocks used so far (seeded only) */
    uint8_t key[P2P_KEY_LEN];
} p2p_rng;

void p2p_rng_init(p2p_rng *r, uint64_t seed);
void p2p_rng_bytes(p2p_rng *r, void *buf, size_t n);
uint32_t p2p_rng_u32(p2p_rng *r);
/* Uniform in [0, bound) without modulo bias; bound > 0. */
uint32_t p2p_rng_below(p2p_rng *r, uint32_t bound);

/* transfers: a BLAKE2b hash computed over data given in pieces (libsodium's
 * crypto_generichash state, kept opaque here so that no other file includes sodium.h). */
#define P2P_HASH_STREAM_SIZE 384
typedef struct p2p_hash_stream {
    _Alignas(64) uint8_t opaque[P2P_HASH_STREAM_SIZE];
} p2p_hash_stream;
/* Starts an unkeyed hash of outlen bytes (16..64). */
void p2p_hash_stream_init(p2p_hash_stream *s, size_t outlen);
void p2p_hash_stream_update(p2p_hash_stream *s, const uint8_t *in, size_t n);
/* Writes the outlen bytes given to init and wipes the state. */
void p2p_hash_stream_final(p2p_hash_stream *s, uint8_t *out, size_t outlen);

#endif
