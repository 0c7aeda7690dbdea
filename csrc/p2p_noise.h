/*
 * p2p_noise.h - a Noise Protocol Framework handshake (revision 34) for the
 * 25519 / ChaChaPoly / BLAKE2b suite. It interprets any pattern named in the test vectors
 * (fundamental, psk and deferred), so the vector test can run every one of them; p2pnet
 * itself uses Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b.
 */
#ifndef P2P_NOISE_H
#define P2P_NOISE_H

#include <stddef.h>
#include <stdint.h>
#include "p2p_crypto.h"

#define P2P_NOISE_MAX_MSGS 4
#define P2P_NOISE_MAX_TOKENS 8

typedef struct p2p_noise_cipher {
    uint8_t k[P2P_KEY_LEN];
    uint64_t n;
    int has_key;
} p2p_noise_cipher;

typedef struct p2p_noise {
    /* pattern, compiled from the protocol name */
    uint8_t msgs[P2P_NOISE_MAX_MSGS][P2P_NOISE_MAX_TOKENS];
    uint8_t msg_count;
    uint8_t step; /* index of the next message to write or read */
    uint8_t initiator;
    uint8_t has_psk;
    /* symmetric state */
    uint8_t ck[P2P_HASH_LEN];
    uint8_t h[P2P_HASH_LEN];
    p2p_noise_cipher cs;
    /* keys */
    uint8_t s[P2P_DH_LEN], s_pub[P2P_DH_LEN]; /* local static */
    uint8_t e[P2P_DH_LEN], e_pub[P2P_DH_LEN]; /* local ephemeral */
    uint8_t rs[P2P_DH_LEN], re[P2P_DH_LEN];   /* remote static / ephemeral public */
    uint8_t has_s, has_e, has_rs, has_re, e_preset;
    uint8_t psk[P2P_KEY_LEN];
    uint32_t dh_ops; /* X25519 operations done (fixed-base ones too): work accounting */
} p2p_noise;

/* Starts a handshake for protocol_name (e.g. "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b").
 * s: local static private key or NULL; rs: remote static public key known in advance or NULL;
 * psk: P2P_KEY_LEN bytes or NULL (required when the pattern has a psk token).
 * Returns 0, or P2P_ERR_INVALID for an unknown pattern or a missing required key. */
int p2p_noise_init(p2p_noise *hs, const char *protocol_name, int initiator, const uint8_t *prologue,
                   size_t prologue_len, const uint8_t *s, const uint8_t *rs, const uint8_t *psk);
/* Uses e as the ephemeral private key instead of drawing one from rng (tests, simulator). */
void p2p_noise_set_ephemeral(p2p_noise *hs, const uint8_t e[P2P_DH_LEN]);
/* Writes the next handshake message with payload into out (cap bytes). rng supplies the
 * ephemeral key unless one was set. Returns 0, P2P_ERR_BUFFER or P2P_ERR_INVALID (not our
 * turn / handshake done). */
int p2p_noise_write(p2p_noise *hs, p2p_rng *rng, const uint8_t *payload, size_t plen, uint8_t *out,
                    size_t cap, size_t *outlen);
/* Reads the next handshake message; the payload goes to payload (cap bytes). Returns 0,
 * P2P_ERR_CRYPTO (authentication failed, bad DH), P2P_ERR_INVALID (malformed/too short or
 * not our turn) or P2P_ERR_BUFFER. On error the state must be discarded. */
int p2p_noise_read(p2p_noise *hs, const uint8_t *msg, size_t len, uint8_t *payload, size_t cap,
                   size_t *plen);
/* 1 when every handshake message has been processed. */
int p2p_noise_done(const p2p_noise *hs);
/* After the handshake: the two transport keys from Split(). c1 encrypts initiator ->
 * responder, c2 responder -> initiator. */
void p2p_noise_split(const p2p_noise *hs, uint8_t c1[P2P_KEY_LEN], uint8_t c2[P2P_KEY_LEN]);
/* The handshake hash (P2P_HASH_LEN bytes). */
const uint8_t *p2p_noise_hash(const p2p_noise *hs);
/* The remote static public key, or NULL if not known yet. */
const uint8_t *p2p_noise_remote_static(const p2p_noise *hs);
/* Wipes every secret. */
void p2p_noise_wipe(p2p_noise *hs);

/* Noise transport encryption with a CipherState (used only by the vector test: the session
 * layer uses explicit packet-number nonces through p2p_aead_*). */
void p2p_noise_transport_keys(const p2p_noise *hs, p2p_noise_cipher *c1, p2p_noise_cipher *c2);

#endif
