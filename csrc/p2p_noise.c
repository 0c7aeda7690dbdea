/*
 * p2p_noise.c - a Noise (revision 34) HandshakeState for 25519 / ChaChaPoly / BLAKE2b.
 *
 * The handshake pattern is compiled from the protocol name into hs->msgs: one token string
 * per message, messages alternating initiator -> responder -> initiator. Pre-messages are
 * not stored: they are mixed into h once, in p2p_noise_init().
 */
#include <sodium.h>
#include <string.h>

#include "p2p_noise.h"
#include "p2pnet.h"

enum { T_END = 0, T_E, T_S, T_EE, T_ES, T_SE, T_SS, T_PSK };

/* A handshake pattern in the spec's notation: pre-message flags and token strings with
 * messages separated by '|' and tokens by ','. Written out here rather than parsed from the
 * spec's layout so that the table reads like the spec's own listing. */
typedef struct pattern {
    const char *name;
    uint8_t pre_init_s; /* -> s ... : the responder knows the initiator's static in advance */
    uint8_t pre_resp_s; /* <- s ... : the initiator knows the responder's static in advance */
    const char *msgs;
} pattern;

static const pattern patterns[] = {
    /* one-way (7.4) */
    {"N", 0, 1, "e,es"},
    {"K", 1, 1, "e,es,ss"},
    {"X", 0, 1, "e,es,s,ss"},
    /* fundamental interactive (7.5) */
    {"NN", 0, 0, "e|e,ee"},
    {"NK", 0, 1, "e,es|e,ee"},
    {"NX", 0, 0, "e|e,ee,s,es"},
    {"XN", 0, 0, "e|e,ee|s,se"},
    {"XK", 0, 1, "e,es|e,ee|s,se"},
    {"XX", 0, 0, "e|e,ee,s,es|s,se"},
    {"KN", 1, 0, "e|e,ee,se"},
    {"KK", 1, 1, "e,es,ss|e,ee,se"},
    {"KX", 1, 0, "e|e,ee,se,s,es"},
    {"IN", 0, 0, "e,s|e,ee,se"},
    {"IK", 0, 1, "e,es,s,ss|e,ee,se"},
    {"IX", 0, 0, "e,s|e,ee,se,s,es"},
    /* deferred (18.1) */
    {"NK1", 0, 1, "e|e,ee,es"},
    {"NX1", 0, 0, "e|e,ee,s|es"},
    {"X1N", 0, 0, "e|e,ee|s|se"},
    {"X1K", 0, 1, "e,es|e,ee|s|se"},
    {"XK1", 0, 1, "e|e,ee,es|s,se"},
    {"X1K1", 0, 1, "e|e,ee,es|s|se"},
    {"X1X", 0, 0, "e|e,ee,s,es|s|se"},
    {"XX1", 0, 0, "e|e,ee,s|es,s,se"},
    {"X1X1", 0, 0, "e|e,ee,s|es,s|se"},
    {"K1N", 1, 0, "e|e,ee|se"},
    {"K1K", 1, 1, "e,es|e,ee|se"},
    {"KK1", 1, 1, "e|e,ee,se,es"},
    {"K1K1", 1, 1, "e|e,ee,es|se"},
    {"K1X", 1, 0, "e|e,ee,s,es|se"},
    {"KX1", 1, 0, "e|e,ee,se,s|es"},
    {"K1X1", 1, 0, "e|e,ee,s|se,es"},
    {"I1N", 0, 0, "e,s|e,ee|se"},
    {"I1K", 0, 1, "e,es,s|e,ee|se"},
    {"IK1", 0, 1, "e,s|e,ee,se,es"},
    {"I1K1", 0, 1, "e,s|e,ee,es|se"},
    {"I1X", 0, 0, "e,s|e,ee,s,es|se"},
    {"IX1", 0, 0, "e,s|e,ee,se,s|es"},
    {"I1X1", 0, 0, "e,s|e,ee,s|se,es"},
};

static const char suite_suffix[] = "_25519_ChaChaPoly_BLAKE2b";

static int token_of(const char *t, size_t n)
{
    static const struct {
        const char *s;
        int tok;
    } names[] = {
        {"e", T_E}, {"s", T_S}, {"ee", T_EE}, {"es", T_ES}, {"se", T_SE}, {"ss", T_SS},
    };
    size_t i;

    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i].s) == n && memcmp(names[i].s, t, n) == 0) return names[i].tok;
    return T_END;
}

/* Fills hs->msgs from a table entry. Returns 0 or P2P_ERR_INVALID. */
static int compile_pattern(p2p_noise *hs, const pattern *p)
{
    const char *c = p->msgs;
    size_t m = 0, t = 0;

    memset(hs->msgs, 0, sizeof hs->msgs);
    for (;;) {
        size_t n = strcspn(c, ",|");
        int tok = token_of(c, n);

        if (tok == T_END || t >= P2P_NOISE_MAX_TOKENS - 1) return P2P_ERR_INVALID;
        hs->msgs[m][t++] = (uint8_t)tok;
        c += n;
        if (*c == '\0') break;
        if (*c == '|') {
            if (++m >= P2P_NOISE_MAX_MSGS) return P2P_ERR_INVALID;
            t = 0;
        }
        c++;
    }
    hs->msg_count = (uint8_t)(m + 1);
    return 0;
}

static size_t msg_len(const uint8_t *msg)
{
    size_t n = 0;

    while (n < P2P_NOISE_MAX_TOKENS && msg[n] != T_END) n++;
    return n;
}

/* Applies one "pskN" modifier: psk0 goes first in message 0, pskN last in message N-1. */
static int add_psk(p2p_noise *hs, unsigned n)
{
    uint8_t *msg;
    size_t len;

    if (n > hs->msg_count) return P2P_ERR_INVALID;
    msg = hs->msgs[n == 0 ? 0 : n - 1];
    len = msg_len(msg);
    if (len >= P2P_NOISE_MAX_TOKENS - 1) return P2P_ERR_INVALID;
    if (n == 0) {
        memmove(msg + 1, msg, len);
        msg[0] = T_PSK;
    } else {
        msg[len] = T_PSK;
    }
    hs->has_psk = 1;
    return 0;
}

/* Parses "Noise_<PATTERN><mods>_25519_ChaChaPoly_BLAKE2b" into hs->msgs and the pre-message
 * flags. Returns 0 or P2P_ERR_INVALID. */
static int parse_name(p2p_noise *hs, const char *name, int *pre_init_s, int *pre_resp_s)
{
    size_t len = strlen(name), plen, base, i;
    const char *p;
    const pattern *pat = NULL;
    size_t sl = sizeof suite_suffix - 1;

    if (len < 6 + sl || memcmp(name, "Noise_", 6) != 0 ||
        strcmp(name + len - sl, suite_suffix) != 0)
        return P2P_ERR_INVALID;
    p = name + 6;
    plen = len - 6 - sl;
    /* The base pattern is made of upper-case letters and the deferral digit 1. */
    for (base = 0; base < plen && ((p[base] >= 'A' && p[base] <= 'Z') || p[base] == '1'); base++)
        ;
    for (i = 0; i < sizeof patterns / sizeof patterns[0]; i++) {
        if (strlen(patterns[i].name) == base && memcmp(patterns[i].name, p, base) == 0) {
            pat = &patterns[i];
            break;
        }
    }
    if (!pat || compile_pattern(hs, pat) != 0) return P2P_ERR_INVALID;
    *pre_init_s = pat->pre_init_s;
    *pre_resp_s = pat->pre_resp_s;

    /* Modifiers: "psk<digits>" joined by '+'. */
    i = base;
    while (i < plen) {
        unsigned n = 0;
        size_t digits = 0;

        if (plen - i < 4 || memcmp(p + i, "psk", 3) != 0) return P2P_ERR_INVALID;
        i += 3;
        while (i < plen && p[i] >= '0' && p[i] <= '9' && digits < 2) {
            n = n * 10 + (unsigned)(p[i] - '0');
            i++;
            digits++;
        }
        if (digits == 0 || add_psk(hs, n) != 0) return P2P_ERR_INVALID;
        if (i < plen) {
            if (p[i] != '+' || i + 1 == plen) return P2P_ERR_INVALID;
            i++;
        }
    }
    return 0;
}

/* ---- SymmetricState ------------------------------------------------------------------- */

static void mix_hash(p2p_noise *hs, const uint8_t *data, size_t len)
{
    p2p_hash(hs->h, hs->h, P2P_HASH_LEN, data, len);
}

static void mix_key(p2p_noise *hs, const uint8_t *ikm, size_t len)
{
    uint8_t ck[P2P_HASH_LEN], k[P2P_HASH_LEN];

    p2p_hkdf(hs->ck, ikm, len, ck, k, NULL);
    memcpy(hs->ck, ck, P2P_HASH_LEN);
    memcpy(hs->cs.k, k, P2P_KEY_LEN); /* HASHLEN 64: the key is its first bytes */
    hs->cs.n = 0;
    hs->cs.has_key = 1;
    sodium_memzero(ck, sizeof ck);
    sodium_memzero(k, sizeof k);
}

static void mix_key_and_hash(p2p_noise *hs, const uint8_t *ikm, size_t len)
{
    uint8_t ck[P2P_HASH_LEN], th[P2P_HASH_LEN], k[P2P_HASH_LEN];

    p2p_hkdf(hs->ck, ikm, len, ck, th, k);
    memcpy(hs->ck, ck, P2P_HASH_LEN);
    mix_hash(hs, th, P2P_HASH_LEN);
    memcpy(hs->cs.k, k, P2P_KEY_LEN);
    hs->cs.n = 0;
    hs->cs.has_key = 1;
    sodium_memzero(ck, sizeof ck);
    sodium_memzero(th, sizeof th);
    sodium_memzero(k, sizeof k);
}

/* EncryptAndHash into out (len + 16 bytes when keyed). out and pt may not overlap. */
static size_t encrypt_and_hash(p2p_noise *hs, uint8_t *out, const uint8_t *pt, size_t len)
{
    size_t outlen = len;

    if (hs->cs.has_key) {
        p2p_aead_seal(out, hs->cs.k, hs->cs.n++, hs->h, P2P_HASH_LEN, pt, len);
        outlen += P2P_TAG_LEN;
    } else if (len) {
        memmove(out, pt, len);
    }
    mix_hash(hs, out, outlen);
    return outlen;
}

/* DecryptAndHash of ct (len bytes) into out. Returns 0 or P2P_ERR_CRYPTO. */
static int decrypt_and_hash(p2p_noise *hs, uint8_t *out, const uint8_t *ct, size_t len)
{
    uint8_t h[P2P_HASH_LEN];

    /* h must absorb the ciphertext, which decrypting in place would destroy. */
    p2p_hash(h, hs->h, P2P_HASH_LEN, ct, len);
    if (hs->cs.has_key) {
        if (p2p_aead_open(out, hs->cs.k, hs->cs.n, hs->h, P2P_HASH_LEN, ct, len) != 0)
            return P2P_ERR_CRYPTO;
        hs->cs.n++;
    } else if (len) {
        memmove(out, ct, len);
    }
    memcpy(hs->h, h, P2P_HASH_LEN);
    return 0;
}

/* ---- HandshakeState ------------------------------------------------------------------- */

int p2p_noise_init(p2p_noise *hs, const char *protocol_name, int initiator, const uint8_t *prologue,
                   size_t prologue_len, const uint8_t *s, const uint8_t *rs, const uint8_t *psk)
{
    int pre_init_s = 0, pre_resp_s = 0, need_init_s, need_resp_s;
    size_t len, m, t;

    if (p2p_crypto_init() != 0) return P2P_ERR_CRYPTO;
    memset(hs, 0, sizeof *hs);
    if (!protocol_name || parse_name(hs, protocol_name, &pre_init_s, &pre_resp_s) != 0)
        goto invalid;
    hs->initiator = initiator ? 1 : 0;

    /* Whose static key does the pattern use? */
    need_init_s = pre_init_s;
    need_resp_s = pre_resp_s;
    for (m = 0; m < hs->msg_count; m++) {
        for (t = 0; t < P2P_NOISE_MAX_TOKENS && hs->msgs[m][t] != T_END; t++) {
            uint8_t tok = hs->msgs[m][t];
            if (tok == T_S && m % 2 == 0) need_init_s = 1;
            if (tok == T_S && m % 2 == 1) need_resp_s = 1;
            if (tok == T_SE || tok == T_SS) need_init_s = 1;
            if (tok == T_ES || tok == T_SS) need_resp_s = 1;
        }
    }
    if ((hs->initiator ? need_init_s : need_resp_s) && !s) goto invalid;
    if ((hs->initiator ? pre_resp_s : pre_init_s) && !rs) goto invalid;
    if (hs->has_psk && !psk) goto invalid;

    if (s) {
        memcpy(hs->s, s, P2P_DH_LEN);
        p2p_dh_public(hs->s_pub, hs->s);
        hs->dh_ops++;
        hs->has_s = 1;
    }
    if (rs && (hs->initiator ? pre_resp_s : pre_init_s)) {
        memcpy(hs->rs, rs, P2P_DH_LEN);
        hs->has_rs = 1;
    }
    if (psk && hs->has_psk) memcpy(hs->psk, psk, P2P_KEY_LEN);

    len = strlen(protocol_name);
    if (len <= P2P_HASH_LEN)
        memcpy(hs->h, protocol_name, len); /* the rest stays zero */
    else
        p2p_hash(hs->h, (const uint8_t *)protocol_name, len, NULL, 0);
    memcpy(hs->ck, hs->h, P2P_HASH_LEN);
    mix_hash(hs, prologue, prologue ? prologue_len : 0);

    /* Pre-messages: the initiator's first, then the responder's. */
    if (pre_init_s) mix_hash(hs, hs->initiator ? hs->s_pub : hs->rs, P2P_DH_LEN);
    if (pre_resp_s) mix_hash(hs, hs->initiator ? hs->rs : hs->s_pub, P2P_DH_LEN);
    return 0;

invalid:
    p2p_noise_wipe(hs);
    return P2P_ERR_INVALID;
}

void p2p_noise_set_ephemeral(p2p_noise *hs, const uint8_t e[P2P_DH_LEN])
{
    memcpy(hs->e, e, P2P_DH_LEN);
    p2p_dh_public(hs->e_pub, hs->e);
    hs->dh_ops++;
    hs->e_preset = 1;
}

/* The DH for token tok from this side's point of view, mixed into the key.
 * Returns 0, P2P_ERR_INVALID (a key is missing) or P2P_ERR_CRYPTO (low-order point). */
static int mix_dh(p2p_noise *hs, uint8_t tok)
{
    const uint8_t *priv, *pub;
    int have, rc;
    uint8_t out[P2P_DH_LEN];
    int local_e = 0; /* 1: our ephemeral, 0: our static */
    int remote_e = 0;

    switch (tok) {
    case T_EE:
        local_e = 1;
        remote_e = 1;
        break;
    case T_ES:
        local_e = hs->initiator;
        remote_e = !hs->initiator;
        break;
    case T_SE:
        local_e = !hs->initiator;
        remote_e = hs->initiator;
        break;
    case T_SS:
        local_e = 0;
        remote_e = 0;
        break;
    default: return P2P_ERR_INVALID;
    }
    priv = local_e ? hs->e : hs->s;
    pub = remote_e ? hs->re : hs->rs;
    have = (local_e ? hs->has_e : hs->has_s) && (remote_e ? hs->has_re : hs->has_rs);
    if (!have) return P2P_ERR_INVALID;
    rc = p2p_dh(out, priv, pub);
    hs->dh_ops++;
    if (rc == 0) mix_key(hs, out, P2P_DH_LEN);
    sodium_memzero(out, sizeof out);
    return rc;
}

static int my_turn(const p2p_noise *hs)
{
    return (hs->step % 2 == 0) == (hs->initiator == 1);
}

/* Runs the tokens of one handshake message, everything but its payload, from *pos on. With
 * out set it writes the message (rng supplies the ephemeral unless one was preset); otherwise
 * it reads one from in (len bytes). Writer and reader share this loop so that both sides mix
 * the same things in the same order. Returns 0, P2P_ERR_INVALID (a key is missing, the
 * message is short) or P2P_ERR_CRYPTO. */
static int run_tokens(p2p_noise *hs, const uint8_t *msg, p2p_rng *rng, uint8_t *out,
                      const uint8_t *in, size_t len, size_t *pos)
{
    size_t t;
    int rc;

    for (t = 0; t < P2P_NOISE_MAX_TOKENS && msg[t] != T_END; t++) {
        switch (msg[t]) {
        case T_E: {
            const uint8_t *e = out ? hs->e_pub : hs->re;

            if (out) {
                if (!hs->e_preset) {
                    if (!rng) return P2P_ERR_INVALID;
                    p2p_rng_bytes(rng, hs->e, P2P_DH_LEN);
                    p2p_dh_public(hs->e_pub, hs->e);
                    hs->dh_ops++;
                }
                hs->has_e = 1;
                memcpy(out + *pos, hs->e_pub, P2P_DH_LEN);
            } else {
                if (len - *pos < P2P_DH_LEN) return P2P_ERR_INVALID;
                memcpy(hs->re, in + *pos, P2P_DH_LEN);
                hs->has_re = 1;
            }
            *pos += P2P_DH_LEN;
            mix_hash(hs, e, P2P_DH_LEN);
            if (hs->has_psk) mix_key(hs, e, P2P_DH_LEN);
            break;
        }
        case T_S:
            if (out) {
                if (!hs->has_s) return P2P_ERR_INVALID;
                *pos += encrypt_and_hash(hs, out + *pos, hs->s_pub, P2P_DH_LEN);
            } else {
                size_t n = P2P_DH_LEN + (hs->cs.has_key ? P2P_TAG_LEN : 0);
                uint8_t tmp[P2P_DH_LEN + P2P_TAG_LEN];

                if (len - *pos < n) return P2P_ERR_INVALID;
                if (decrypt_and_hash(hs, tmp, in + *pos, n) != 0) return P2P_ERR_CRYPTO;
                memcpy(hs->rs, tmp, P2P_DH_LEN);
                hs->has_rs = 1;
                *pos += n;
            }
            break;
        case T_PSK: mix_key_and_hash(hs, hs->psk, P2P_KEY_LEN); break;
        default:
            rc = mix_dh(hs, msg[t]);
            if (rc != 0) return rc;
        }
    }
    return 0;
}

int p2p_noise_write(p2p_noise *hs, p2p_rng *rng, const uint8_t *payload, size_t plen, uint8_t *out,
                    size_t cap, size_t *outlen)
{
    const uint8_t *msg;
    size_t pos = 0, need = 0, t;
    int rc;

    *outlen = 0;
    if (hs->step >= hs->msg_count || !my_turn(hs)) return P2P_ERR_INVALID;
    msg = hs->msgs[hs->step];

    /* Check the size first so that a short buffer leaves the state untouched. */
    {
        int keyed = hs->cs.has_key;
        for (t = 0; t < P2P_NOISE_MAX_TOKENS && msg[t] != T_END; t++) {
            if (msg[t] == T_E) {
                need += P2P_DH_LEN;
                keyed |= hs->has_psk; /* psk mode: e also does MixKey */
            } else if (msg[t] == T_S)
                need += P2P_DH_LEN + (keyed ? P2P_TAG_LEN : 0);
            else
                keyed = 1; /* every DH and psk token sets a key */
        }
        need += plen + (keyed ? P2P_TAG_LEN : 0);
        if (need > cap) return P2P_ERR_BUFFER;
    }

    rc = run_tokens(hs, msg, rng, out, NULL, 0, &pos);
    if (rc != 0) return rc;
    pos += encrypt_and_hash(hs, out + pos, payload, plen);
    hs->step++;
    *outlen = pos;
    return 0;
}

int p2p_noise_read(p2p_noise *hs, const uint8_t *in, size_t len, uint8_t *payload, size_t cap,
                   size_t *plen)
{
    const uint8_t *msg;
    size_t pos = 0, rest;
    int rc;

    *plen = 0;
    if (hs->step >= hs->msg_count || my_turn(hs)) return P2P_ERR_INVALID;
    msg = hs->msgs[hs->step];

    rc = run_tokens(hs, msg, NULL, NULL, in, len, &pos);
    if (rc != 0) return rc;

    rest = len - pos;
    if (hs->cs.has_key) {
        if (rest < P2P_TAG_LEN) return P2P_ERR_INVALID;
        if (rest - P2P_TAG_LEN > cap) return P2P_ERR_BUFFER;
    } else if (rest > cap) {
        return P2P_ERR_BUFFER;
    }
    if (decrypt_and_hash(hs, payload, in + pos, rest) != 0) return P2P_ERR_CRYPTO;
    *plen = hs->cs.has_key ? rest - P2P_TAG_LEN : rest;
    hs->step++;
    return 0;
}

int p2p_noise_done(const p2p_noise *hs)
{
    return hs->msg_count > 0 && hs->step >= hs->msg_count;
}

void p2p_noise_split(const p2p_noise *hs, uint8_t c1[P2P_KEY_LEN], uint8_t c2[P2P_KEY_LEN])
{
    uint8_t k1[P2P_HASH_LEN], k2[P2P_HASH_LEN];

    p2p_hkdf(hs->ck, NULL, 0, k1, k2, NULL);
    memcpy(c1, k1, P2P_KEY_LEN);
    memcpy(c2, k2, P2P_KEY_LEN);
    sodium_memzero(k1, sizeof k1);
    sodium_memzero(k2, sizeof k2);
}

void p2p_noise_transport_keys(const p2p_noise *hs, p2p_noise_cipher *c1, p2p_noise_cipher *c2)
{
    memset(c1, 0, sizeof *c1);
    memset(c2, 0, sizeof *c2);
    p2p_noise_split(hs, c1->k, c2->k);
    c1->has_key = 1;
    c2->has_key = 1;
}

const uint8_t *p2p_noise_hash(const p2p_noise *hs)
{
    return hs->h;
}

const uint8_t *p2p_noise_remote_static(const p2p_noise *hs)
{
    return hs->has_rs ? hs->rs : NULL;
}

void p2p_noise_wipe(p2p_noise *hs)
{
    sodium_memzero(hs, sizeof *hs);
}
