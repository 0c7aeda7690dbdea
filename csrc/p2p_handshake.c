/*
 * p2p_handshake.c - INIT, RESP, FIN and COOKIE (docs/PROTOCOL.md section 2.1): the
 * Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b handshake, the mac1 check that keeps a keyed node
 * silent and DH-free towards strangers, the identity payload that binds the Noise static key
 * to the Ed25519 id, and admission (expected id, allow, deny, on_request).
 *
 * What a responder does for an INIT is bounded before it does any Diffie-Hellman: a repeated
 * INIT gets the RESP it already made; a replayed one (its ephemeral key was seen) gets
 * nothing; under load an INIT without a valid mac2 gets a COOKIE and leaves no state; one
 * source IP holds at most P2P_HALF_OPEN_PER_IP half-open handshakes, the node max_half_open.
 */
#include "p2p_handshake.h"
#include "p2p_peer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* INIT: header (8), e (P2P_KEY_LEN), sealed zero payload (INIT_PAYLOAD + 16), mac1, mac2 */
#define INIT_MAC1 (P2P_INIT_LEN - 2 * P2P_MAC_LEN)
#define INIT_MAC2 (P2P_INIT_LEN - P2P_MAC_LEN)
#define INIT_PAYLOAD (INIT_MAC1 - 8 - P2P_KEY_LEN - P2P_TAG_LEN)
/* COOKIE: header (8), nonce (24), sealed cookie (16 + 16) */
#define COOKIE_PKT_LEN (8 + P2P_XNONCE_LEN + P2P_COOKIE_LEN + P2P_TAG_LEN)
#define ID_PAYLOAD_MIN 97
#define RESP_MIN (12 + P2P_KEY_LEN + 48 + ID_PAYLOAD_MIN + 16 + P2P_MAC_LEN)
#define FIN_MIN (8 + 48 + ID_PAYLOAD_MIN + 16)
#define EXT_OBSERVED 1
#define EXT_MAX_MESSAGE 2
#define EXT_WINDOW 3
#define EXT_FLAGS 4
#define EXT_INSTANCE 5
#define EXT_ADDRS 6
#define FLAG_MESH 1
#define FLAG_BOOTSTRAP 2

static const char binding_label[] = "p2pnet/1 static";

typedef struct id_payload {
    uint8_t ed_pk[P2P_ID_LEN];
    uint8_t flags;
    uint64_t instance;
    uint32_t max_message, window;
    int has_observed;
    p2p_addr observed;
    uint8_t nadv;
    p2p_addr adv[P2P_MEMBER_ADDRS];
} id_payload;

/* The first 8 bytes of every handshake packet: type, version, two zero bytes, an index. */
static void put_head(uint8_t *pkt, uint8_t type, uint32_t index)
{
    pkt[0] = type;
    pkt[1] = P2P_PROTOCOL_VERSION;
    pkt[2] = pkt[3] = 0;
    p2p_put_u32(pkt + 4, index);
}

static void mac1(const p2p_host *h, const uint8_t *buf, size_t len, uint8_t out[P2P_MAC_LEN])
{
    p2p_blake2b(out, P2P_MAC_LEN, h->mac_key, P2P_KEY_LEN, buf, len, NULL, 0);
}

/* mac1 in the last 16 bytes of buf[0..len) */
static int mac1_ok(const p2p_host *h, const uint8_t *buf, size_t len)
{
    uint8_t want[P2P_MAC_LEN];
    mac1(h, buf, len - P2P_MAC_LEN, want);
    return p2p_memcmp_ct(want, buf + len - P2P_MAC_LEN, P2P_MAC_LEN) == 0;
}

/* ---- keys and limits -------------------------------------------------------------------- */

int p2p_hs_init(p2p_host *h, const p2p_config *cfg)
{
    h->max_half_open = cfg->max_half_open ? cfg->max_half_open : P2P_MAX_HALF_OPEN;
    if (h->max_half_open > P2P_HALF_OPEN_LIMIT) return P2P_ERR_INVALID;
    h->cookie_threshold = cfg->cookie_threshold ? cfg->cookie_threshold : h->max_half_open / 8;
    if (!h->cookie_threshold) h->cookie_threshold = 1;
    if (h->cookie_threshold > h->max_half_open) return P2P_ERR_INVALID;
    if (cfg->network_key && cfg->network_key_len) {
        int rc = p2p_network_psk(h->psk, cfg->network_key, cfg->network_key_len);
        if (rc) return rc;
    }
    static const char mac_label[] = "p2pnet/1 mac1";
    p2p_blake2b(h->mac_key, P2P_KEY_LEN, NULL, 0, (const uint8_t *)mac_label, sizeof mac_label - 1,
                h->psk, P2P_KEY_LEN);
    static const char cookie_label[] = "p2pnet/1 cookie";
    p2p_blake2b(h->cookie_key, P2P_KEY_LEN, NULL, 0, (const uint8_t *)cookie_label,
                sizeof cookie_label - 1, h->psk, P2P_KEY_LEN);
    return 0;
}

/* The secrets only the responder side needs, drawn when first needed (the host's random
 * source is not running yet when p2p_hs_init is called). */
static void hs_keys(p2p_host *h, uint64_t now)
{
    if (h->hs_keyed) return;
    h->hs_keyed = 1;
    p2p_rng_bytes(&h->rng, h->replay_key, sizeof h->replay_key);
    p2p_rng_bytes(&h->rng, h->cookie_secret, sizeof h->cookie_secret);
    h->cookie_rotated = now;
    h->replay_at = now;
}

/* ---- load, cookies and mac2 ------------------------------------------------------------- */

/* stats.under_load is derived from the same test when stats are read (p2p_host_stats). */
static int under_load(const p2p_host *h)
{
    return h->n_half_open >= h->cookie_threshold;
}

/* An address as bytes for the cookie MAC: family, IP (4 or 16 bytes), port. */
static size_t addr_bytes(const p2p_addr *a, uint8_t out[19])
{
    size_t n = a->family == P2P_AF_INET4 ? 4 : 16;
    out[0] = a->family;
    memcpy(out + 1, a->ip, n);
    out[1 + n] = (uint8_t)(a->port & 0xff);
    out[2 + n] = (uint8_t)(a->port >> 8);
    return 3 + n;
}

static void cookie_for(const uint8_t secret[P2P_KEY_LEN], const p2p_addr *a,
                       uint8_t out[P2P_COOKIE_LEN])
{
    uint8_t ab[19];
    size_t n = addr_bytes(a, ab);
    p2p_blake2b(out, P2P_COOKIE_LEN, secret, P2P_KEY_LEN, ab, n, NULL, 0);
}

static void rotate_cookie_secret(p2p_host *h, uint64_t now)
{
    if (now - h->cookie_rotated < P2P_COOKIE_ROTATE_US) return;
    /* A secret older than two periods is no use as the previous one either. */
    if (now - h->cookie_rotated < 2 * (uint64_t)P2P_COOKIE_ROTATE_US)
        memcpy(h->cookie_secret[1], h->cookie_secret[0], P2P_ID_LEN);
    else
        p2p_rng_bytes(&h->rng, h->cookie_secret[1], P2P_KEY_LEN);
    p2p_rng_bytes(&h->rng, h->cookie_secret[0], P2P_KEY_LEN);
    h->cookie_rotated = now;
}

static void mac2(const uint8_t cookie[P2P_COOKIE_LEN], const uint8_t *init,
                 uint8_t out[P2P_MAC_LEN])
{
    p2p_blake2b(out, P2P_MAC_LEN, cookie, P2P_COOKIE_LEN, init, INIT_MAC2, NULL, 0);
}

/* The INIT carries a mac2 made with the cookie for its source, under the current or the
 * previous secret. */
static int mac2_ok(p2p_host *h, const p2p_addr *from, const uint8_t *init)
{
    for (int i = 0; i < 2; i++) {
        uint8_t cookie[P2P_COOKIE_LEN], want[P2P_MAC_LEN];
        cookie_for(h->cookie_secret[i], from, cookie);
        mac2(cookie, init, want);
        p2p_wipe(cookie, sizeof cookie);
        if (p2p_memcmp_ct(want, init + INIT_MAC2, P2P_MAC_LEN) == 0) return 1;
    }
    return 0;
}

/* The COOKIE reply: no state, never larger than the INIT it answers. */
static void send_cookie(p2p_host *h, const p2p_addr *from, const uint8_t *init)
{
    uint8_t pkt[COOKIE_PKT_LEN], cookie[P2P_COOKIE_LEN];
    put_head(pkt, P2P_PKT_COOKIE, p2p_get_u32(init + 4)); /* the INIT's sender_index */
    p2p_rng_bytes(&h->rng, pkt + 8, P2P_XNONCE_LEN);
    cookie_for(h->cookie_secret[0], from, cookie);
    p2p_xaead_seal(pkt + 8 + P2P_XNONCE_LEN, h->cookie_key, pkt + 8, init + INIT_MAC1, P2P_MAC_LEN,
                   cookie, sizeof cookie);
    p2p_wipe(cookie, sizeof cookie);
    h->stats.cookies_sent++;
    p2p_tx_push(h, from, pkt, sizeof pkt);
}

/* The initiator's cookie for an address, when it holds one that is still fresh. */
static p2p_hs_cookie *cookie_held(p2p_host *h, const p2p_addr *a, uint64_t now)
{
    for (size_t i = 0; i < P2P_HS_COOKIES; i++) {
        p2p_hs_cookie *c = &h->hs_cookies[i];
        if (c->at && now - c->at < P2P_COOKIE_ROTATE_US && p2p_addr_equal(&c->addr, a)) return c;
    }
    return NULL;
}

/* ---- the replay cache of INIT ephemeral keys -------------------------------------------- */

/* Two generations of an open-addressing set of 64-bit keyed fingerprints; a key counts as
 * seen while it is in either. A generation is retired after P2P_REPLAY_GEN_MAX inserts (so
 * the sets stay at most half full) or after P2P_COOKIE_ROTATE_US. */
static uint64_t replay_fp(const p2p_host *h, const uint8_t e[P2P_KEY_LEN])
{
    uint8_t d[8];
    p2p_blake2b(d, sizeof d, h->replay_key, sizeof h->replay_key, e, P2P_KEY_LEN, NULL, 0);
    uint64_t fp = p2p_get_u64(d);
    return fp ? fp : 1; /* 0 marks an empty slot */
}

static int replay_in(const uint64_t *set, uint64_t fp)
{
    for (size_t i = 0, k = fp % P2P_REPLAY_SLOTS; i < P2P_REPLAY_SLOTS;
         i++, k = (k + 1) % P2P_REPLAY_SLOTS) {
        if (set[k] == fp) return 1;
        if (!set[k]) return 0;
    }
    return 0;
}

static int replay_seen(const p2p_host *h, uint64_t fp)
{
    return replay_in(h->replay_set[0], fp) || replay_in(h->replay_set[1], fp);
}

static void replay_add(p2p_host *h, uint64_t fp, uint64_t now)
{
    if (h->replay_n >= P2P_REPLAY_GEN_MAX || now - h->replay_at >= P2P_COOKIE_ROTATE_US) {
        memcpy(h->replay_set[1], h->replay_set[0], sizeof h->replay_set[0]);
        memset(h->replay_set[0], 0, sizeof h->replay_set[0]);
        h->replay_n = 0;
        h->replay_at = now;
    }
    size_t k = fp % P2P_REPLAY_SLOTS;
    while (h->replay_set[0][k]) k = (k + 1) % P2P_REPLAY_SLOTS;
    h->replay_set[0][k] = fp;
    h->replay_n++;
}

static uint32_t own_window(const p2p_host *h)
{
    return (h->max_message > P2P_MESH_RECORD_MAX ? h->max_message : P2P_MESH_RECORD_MAX) + 65536u;
}

/* The identity payload; FIN (with_addrs) also lists the addresses this node advertises, so
 * that the responder (typically a mediator) can pass them on in introductions. */
/* An address's size on the wire (p2p_wr_addr). */
static uint16_t wire_len(const p2p_addr *a)
{
    return a->family == P2P_AF_INET4 ? P2P_ADDR4_WIRE_LEN : P2P_ADDR6_WIRE_LEN;
}

static size_t write_payload(const p2p_host *h, const p2p_addr *observed, uint8_t flags,
                            int with_addrs, uint8_t *out, size_t cap)
{
    p2p_wr w;
    p2p_wr_init(&w, out, cap);
    p2p_wr_u8(&w, 1);
    p2p_wr_bytes(&w, h->ident.ed_pk, P2P_ID_LEN);
    p2p_wr_bytes(&w, h->ident.binding_sig, P2P_SIG_LEN);
    /* Not over a relay (that path has no address), nor a link-local source with its zone:
     * the zone is this host's interface, and the address means nothing without it. */
    if (observed->family == P2P_AF_INET4 ||
        (observed->family == P2P_AF_INET6 && observed->zone == 0)) {
        p2p_wr_u8(&w, EXT_OBSERVED);
        p2p_wr_u16(&w, wire_len(observed));
        p2p_wr_addr(&w, observed);
    }
    p2p_wr_u8(&w, EXT_MAX_MESSAGE);
    p2p_wr_u16(&w, 4);
    p2p_wr_u32(&w, h->max_message);
    p2p_wr_u8(&w, EXT_WINDOW);
    p2p_wr_u16(&w, 4);
    p2p_wr_u32(&w, own_window(h));
    p2p_wr_u8(&w, EXT_FLAGS);
    p2p_wr_u16(&w, 1);
    p2p_wr_u8(&w, (uint8_t)(flags | (h->member ? FLAG_MESH : 0)));
    p2p_wr_u8(&w, EXT_INSTANCE);
    p2p_wr_u16(&w, 8);
    p2p_wr_u64(&w, h->instance);
    if (with_addrs && h->naddr) {
        size_t n = 1;
        for (size_t i = 0; i < h->naddr; i++) n += wire_len(&h->addrs[i]);
        p2p_wr_u8(&w, EXT_ADDRS);
        p2p_wr_u16(&w, (uint16_t)n);
        p2p_wr_u8(&w, (uint8_t)h->naddr);
        for (size_t i = 0; i < h->naddr; i++) p2p_wr_addr(&w, &h->addrs[i]);
    }
    return w.bad ? 0 : (size_t)(w.p - out);
}

/* Noise reads and writes with their X25519 operations counted in stats.work_dh. */
static int nz_read(p2p_host *h, p2p_noise *n, const uint8_t *msg, size_t len, uint8_t *payload,
                   size_t cap, size_t *plen)
{
    uint32_t before = n->dh_ops;
    int rc = p2p_noise_read(n, msg, len, payload, cap, plen);
    h->stats.work_dh += n->dh_ops - before;
    return rc;
}

static int nz_write(p2p_host *h, p2p_noise *n, const uint8_t *payload, size_t plen, uint8_t *out,
                    size_t cap, size_t *outlen)
{
    uint32_t before = n->dh_ops;
    int rc = p2p_noise_write(n, &h->rng, payload, plen, out, cap, outlen);
    h->stats.work_dh += n->dh_ops - before;
    return rc;
}

/* Decodes and verifies an identity payload against the static key Noise authenticated. */
static int read_payload(p2p_host *h, const uint8_t *buf, size_t len, const uint8_t rs[P2P_KEY_LEN],
                        id_payload *out)
{
    p2p_rd r;
    p2p_rd_init(&r, buf, len);
    memset(out, 0, sizeof *out);
    out->max_message = P2P_DEFAULT_MAX_MESSAGE;
    out->window = 1u << 20;
    if (p2p_rd_u8(&r) != 1) return P2P_ERR_INVALID;
    const uint8_t *pk = p2p_rd_bytes(&r, P2P_ID_LEN);
    const uint8_t *sig = p2p_rd_bytes(&r, P2P_SIG_LEN);
    if (r.bad) return P2P_ERR_INVALID;
    memcpy(out->ed_pk, pk, P2P_ID_LEN);
    while (p2p_rd_left(&r)) {
        uint8_t type = p2p_rd_u8(&r);
        uint16_t n = p2p_rd_u16(&r);
        const uint8_t *v = p2p_rd_bytes(&r, n);
        if (r.bad) return P2P_ERR_INVALID;
        p2p_rd e;
        p2p_rd_init(&e, v, n);
        if (type == EXT_OBSERVED) {
            uint8_t fam = p2p_rd_u8(&e);
            size_t alen = fam == 4 ? 4 : fam == 6 ? 16 : 0;
            const uint8_t *ip = alen ? p2p_rd_bytes(&e, alen) : NULL;
            uint16_t port = p2p_rd_u16(&e);
            if (!ip || e.bad || p2p_rd_left(&e)) return P2P_ERR_INVALID;
            out->has_observed = 1;
            out->observed.family = fam;
            memcpy(out->observed.ip, ip, alen);
            out->observed.port = port;
        } else if (type == EXT_MAX_MESSAGE || type == EXT_WINDOW) {
            uint32_t x = p2p_rd_u32(&e);
            if (e.bad || p2p_rd_left(&e) || x == 0) return P2P_ERR_INVALID;
            if (type == EXT_MAX_MESSAGE)
                out->max_message = x;
            else
                out->window = x;
        } else if (type == EXT_FLAGS) {
            out->flags = p2p_rd_u8(&e);
            if (e.bad) return P2P_ERR_INVALID;
        } else if (type == EXT_INSTANCE) {
            out->instance = p2p_rd_u64(&e);
            if (e.bad || p2p_rd_left(&e)) return P2P_ERR_INVALID;
        } else if (type == EXT_ADDRS) {
            uint8_t k = p2p_rd_u8(&e);
            if (e.bad || k > P2P_MEMBER_ADDRS) return P2P_ERR_INVALID;
            for (uint8_t i = 0; i < k; i++)
                if (p2p_rd_addr(&e, &out->adv[i])) return P2P_ERR_INVALID;
            if (p2p_rd_left(&e)) return P2P_ERR_INVALID;
            out->nadv = k;
        }
    }
    uint8_t signed_msg[sizeof binding_label - 1 + P2P_KEY_LEN];
    memcpy(signed_msg, binding_label, sizeof binding_label - 1);
    memcpy(signed_msg + sizeof binding_label - 1, rs, P2P_ID_LEN);
    h->stats.work_verify++;
    if (p2p_verify(sig, signed_msg, sizeof signed_msg, pk)) return P2P_ERR_CRYPTO;
    uint8_t x[P2P_KEY_LEN];
    if (p2p_ed_to_x_public(x, pk) || p2p_memcmp_ct(x, rs, P2P_KEY_LEN)) return P2P_ERR_CRYPTO;
    return 0;
}

/* Reads a RESP or FIN into a copy of the handshake state (a forged packet must not spoil the
 * real handshake) and verifies the identity payload. Returns 0 with *trial and *idp filled; else
 * the copy is wiped and the packet counted as dropped. */
static int trial_read(p2p_host *h, const p2p_peer *p, const uint8_t *msg, size_t len, int last,
                      p2p_noise *trial, id_payload *idp)
{
    *trial = p->hs->noise;
    uint8_t payload[P2P_MAX_PACKET];
    size_t plen = 0;
    if (nz_read(h, trial, msg, len, payload, sizeof payload, &plen) ||
        (last && !p2p_noise_done(trial)) ||
        read_payload(h, payload, plen, p2p_noise_remote_static(trial), idp)) {
        p2p_noise_wipe(trial);
        h->stats.dropped++;
        return -1;
    }
    return 0;
}

/* Takes what the peer's verified identity payload says about it. */
static void adopt_payload(p2p_peer *p, const id_payload *idp)
{
    memcpy(p->id, idp->ed_pk, P2P_ID_LEN);
    p->has_id = 1;
    p->peer_max_message = idp->max_message;
    p->peer_window = idp->window;
    p->l0.peer_max = idp->window;
    p->peer_mesh = (idp->flags & FLAG_MESH) != 0;
    p->has_observed = idp->has_observed;
    p->observed = idp->observed;
    p->instance = idp->instance;
    p->nadv = idp->nadv;
    memcpy(p->adv, idp->adv, sizeof p->adv);
}

static p2p_hs *hs_new(p2p_host *h, int initiator, uint64_t now)
{
    p2p_hs *hs = calloc(1, sizeof *hs);
    if (!hs) return NULL;
    int rc =
        p2p_noise_init(&hs->noise, P2P_NOISE_PROTOCOL, initiator, (const uint8_t *)P2P_PROLOGUE,
                       sizeof P2P_PROLOGUE - 1, h->ident.x_sk, NULL, h->psk);
    h->stats.work_dh += hs->noise.dh_ops;
    if (rc) {
        free(hs);
        return NULL;
    }
    hs->interval = P2P_HS_RESEND_US;
    hs->expire = now + h->timeout;
    return hs;
}

void p2p_hs_free(p2p_peer *p)
{
    if (!p->hs) return;
    p2p_noise_wipe(&p->hs->noise);
    p2p_wipe(p->hs, sizeof *p->hs);
    free(p->hs);
    p->hs = NULL;
}

/* The next resend time: the interval with +-25% jitter, so peers that started together do
 * not keep colliding. */
static void schedule_resend(p2p_host *h, p2p_hs *hs, uint64_t now)
{
    uint64_t quarter = hs->interval / 4;
    uint64_t jitter = quarter ? p2p_rng_below(&h->rng, (uint32_t)(2 * quarter + 1)) : 0;
    hs->resend_at = now + hs->interval - quarter + jitter;
}

static void send_init(p2p_host *h, p2p_peer *p);

int p2p_hs_start(p2p_host *h, p2p_peer *p, uint64_t now)
{
    p->hs = hs_new(h, 1, now);
    if (!p->hs) return P2P_ERR_NOMEM;
    p2p_hs *hs = p->hs;
    uint8_t *pkt = hs->pkt;
    put_head(pkt, P2P_PKT_INIT, p->local_index);
    uint8_t zeros[INIT_PAYLOAD] = {0};
    size_t n = 0;
    if (nz_write(h, &hs->noise, zeros, sizeof zeros, pkt + 8, P2P_MAX_PACKET - 8, &n) ||
        8 + n != INIT_MAC1)
        return P2P_ERR_CRYPTO;
    mac1(h, pkt, INIT_MAC1, pkt + INIT_MAC1);
    memset(pkt + INIT_MAC2, 0, P2P_MAC_LEN); /* mac2 is added per address, with a cookie */
    hs->pkt_len = P2P_INIT_LEN;
    p->state = P2P_S_INIT_SENT;
    p->dial_due = 0;
    schedule_resend(h, hs, now);
    /* An attempt that is to punch sends when it does (p2p_hs_punch_now). */
    if (!p->punch_due) send_init(h, p);
    return 0;
}

/* The INIT to one address: with mac2 when a COOKIE from there said it is needed. */
static void send_init_to(p2p_host *h, p2p_peer *p, const p2p_addr *to)
{
    const p2p_hs_cookie *c = cookie_held(h, to, h->now);
    if (!c) {
        p2p_tx_push(h, to, p->hs->pkt, p->hs->pkt_len);
        return;
    }
    uint8_t pkt[P2P_INIT_LEN];
    memcpy(pkt, p->hs->pkt, P2P_INIT_LEN);
    mac2(c->cookie, pkt, pkt + INIT_MAC2);
    p2p_tx_push(h, to, pkt, sizeof pkt);
}

static void send_init(p2p_host *h, p2p_peer *p)
{
    /* issue 10 (congestion control): the first INIT starts the handshake's round trip */
    if (!p->hs->rtt_sends++) p->hs->rtt_from = h->now;
    for (size_t i = 0; i < p->ncand; i++) send_init_to(h, p, &p->cand[i]);
}

static int is_candidate(const p2p_peer *p, const p2p_addr *a)
{
    for (size_t i = 0; i < p->ncand; i++)
        if (p2p_addr_equal(&p->cand[i], a)) return 1;
    return 0;
}

/* Strikes an address from an attempt's candidates. */
static void drop_candidate(p2p_peer *p, const p2p_addr *a)
{
    size_t k = 0;
    for (size_t i = 0; i < p->ncand; i++)
        if (!p2p_addr_equal(&p->cand[i], a)) p->cand[k++] = p->cand[i];
    p->ncand = (uint8_t)k;
    if (k && p2p_addr_equal(&p->addr, a)) p->addr = p->cand[0];
}

static int version_ok(const uint8_t *buf)
{
    return buf[1] == P2P_PROTOCOL_VERSION && !buf[2] && !buf[3];
}

/* The half-open handshake that an INIT repeats (same source, index and ephemeral key), and
 * how many half-open handshakes the INIT's source holds: its IPv4 address, its IPv6 /64 (one
 * subscriber's usual allocation), or the session its relayed path goes through. Not the
 * channel: the peer at the other end of that session picks the channel of every RELAYED
 * frame it sends, so one peer could otherwise be any number of sources. */
static p2p_peer *find_half_open(const p2p_host *h, const p2p_addr *from, uint32_t init_index,
                                uint64_t fp, size_t *same_ip)
{
    size_t ip_len = from->family == P2P_AF_INET4   ? 4
                    : from->family == P2P_AF_INET6 ? 8
                                                   : 4; /* relay index */
    *same_ip = 0;
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *p = h->peers.slots[i];
        if (!p || (p->state != P2P_S_HALF_OPEN && p->state != P2P_S_WAIT_ADMIT)) continue;
        if (p->addr.family == from->family && memcmp(p->addr.ip, from->ip, ip_len) == 0)
            (*same_ip)++;
        if (p->state == P2P_S_HALF_OPEN && p->hs && p->hs->init_index == init_index &&
            p->hs->init_fp == fp && p2p_addr_equal(&p->addr, from))
            return p;
    }
    return NULL;
}

void p2p_hs_on_init(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len, uint64_t now)
{
    /* The cheap checks come first; Diffie-Hellman only for an INIT that passes them all. */
    if (len != P2P_INIT_LEN || !version_ok(buf) || !mac1_ok(h, buf, INIT_MAC2)) {
        h->stats.dropped++;
        return;
    }
    hs_keys(h, now);
    uint32_t init_index = p2p_get_u32(buf + 4);
    uint64_t fp = replay_fp(h, buf + 8);
    size_t same_ip = 0;
    p2p_peer *p = find_half_open(h, from, init_index, fp, &same_ip);
    if (p) {                /* a resent INIT: answer with the same RESP */
        p->hs->rtt_sends++; /* issue 10: which RESP the FIN answers is unknown now */
        p2p_tx_push(h, from, p->hs->pkt, p->hs->pkt_len);
        return;
    }
    if (replay_seen(h, fp)) { /* its handshake ran already, from this source or another */
        h->stats.dropped++;
        h->stats.dropped_replay++;
        return;
    }
    if (under_load(h)) {
        rotate_cookie_secret(h, now);
        if (!mac2_ok(h, from, buf)) {
            send_cookie(h, from, buf);
            return;
        }
    }
    if (same_ip >= P2P_HALF_OPEN_PER_IP || h->n_half_open >= h->max_half_open) {
        h->stats.dropped++;
        h->stats.dropped_half_open++;
        return;
    }
    p = p2p_peer_new(h, 0, from);
    if (!p) {
        h->stats.dropped++;
        return;
    }
    replay_add(h, fp, now);
    p->hs = hs_new(h, 0, now);
    p->state = P2P_S_HALF_OPEN;
    h->n_half_open++;
    if (!p->hs) {
        p2p_kill(h, p);
        return;
    }
    p2p_hs *hs = p->hs;
    hs->init_index = init_index;
    hs->init_fp = fp;
    p->remote_index = init_index;
    uint8_t payload[INIT_PAYLOAD + 16];
    size_t plen = 0;
    static const uint8_t zeros[INIT_PAYLOAD];
    if (nz_read(h, &hs->noise, buf + 8, INIT_MAC1 - 8, payload, sizeof payload, &plen) ||
        plen != INIT_PAYLOAD || memcmp(payload, zeros, INIT_PAYLOAD) != 0) {
        h->stats.dropped++;
        p2p_kill(h, p);
        return;
    }
    uint8_t idp[160];
    size_t idlen = write_payload(h, from, 0, 0, idp, sizeof idp);
    uint8_t *pkt = hs->pkt;
    put_head(pkt, P2P_PKT_RESP, p->local_index);
    p2p_put_u32(pkt + 8, init_index);
    size_t n = 0;
    /* RESP is at most twice the INIT that asked for it: a spoofed INIT amplifies less. */
    if (!idlen ||
        nz_write(h, &hs->noise, idp, idlen, pkt + 12, 2 * P2P_INIT_LEN - 12 - P2P_MAC_LEN, &n)) {
        p2p_kill(h, p);
        return;
    }
    mac1(h, pkt, 12 + n, pkt + 12 + n);
    hs->pkt_len = 12 + n + P2P_MAC_LEN;
    p2p_tx_push(h, from, pkt, hs->pkt_len);
    /* issue 10 (congestion control): RESP starts the responder's round trip */
    hs->rtt_from = now;
    hs->rtt_sends = 1;
}

void p2p_hs_on_cookie(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len,
                      uint64_t now)
{
    p2p_peer *p = len == COOKIE_PKT_LEN ? p2p_lookup_index(h, p2p_get_u32(buf + 4)) : NULL;
    uint8_t cookie[P2P_COOKIE_LEN];
    if (!p || !p->initiator || p->state != P2P_S_INIT_SENT || !p->hs || !version_ok(buf) ||
        !is_candidate(p, from) ||
        p2p_xaead_open(cookie, h->cookie_key, buf + 8, p->hs->pkt + INIT_MAC1, P2P_MAC_LEN,
                       buf + 8 + P2P_XNONCE_LEN, P2P_COOKIE_LEN + P2P_TAG_LEN)) {
        h->stats.dropped++;
        return;
    }
    p2p_hs_cookie *c = cookie_held(h, from, now);
    int had = c != NULL;
    if (!c) { /* the oldest (or an empty) entry makes room */
        c = &h->hs_cookies[0];
        for (size_t i = 1; i < P2P_HS_COOKIES; i++)
            if (h->hs_cookies[i].at < c->at) c = &h->hs_cookies[i];
    }
    c->addr = *from;
    c->at = now ? now : 1;
    memcpy(c->cookie, cookie, P2P_COOKIE_LEN);
    p2p_wipe(cookie, sizeof cookie);
    /* The first cookie from an address makes the INIT go there again at once; later ones
     * only replace it, so COOKIEs never make an initiator send more than its schedule. */
    if (!had) p->hs->rtt_sends++; /* issue 10: a second INIT makes the RTT ambiguous */
    if (!had) send_init_to(h, p, from);
}

/* Keeps one session per id. A session with a new boot instance of the peer means it
 * restarted, and a second session made from the same side is a reconnect: either replaces
 * the older one. Two sessions with the same instance made from opposite sides are a
 * simultaneous open: both nodes keep the one dialled by the lower id. Returns 1 when p
 * itself must go. */
static int one_session(p2p_host *h, p2p_peer *p)
{
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *q = h->peers.slots[i];
        if (!q || q == p || !q->has_id || q->state != P2P_S_CONNECTED ||
            memcmp(q->id, p->id, P2P_ID_LEN))
            continue;
        if (q->initiator != p->initiator && q->instance == p->instance) {
            const uint8_t *p_dialer = p->initiator ? h->ident.ed_pk : p->id;
            const uint8_t *q_dialer = q->initiator ? h->ident.ed_pk : q->id;
            if (memcmp(p_dialer, q_dialer, P2P_ID_LEN) > 0) return 1;
        }
        p2p_peer_end(h, q, P2P_LEAVE_CLOSED, 0, P2P_CLOSE_CLOSED);
    }
    return 0;
}

/* Drops our own connect attempt p quietly because a session the other node dialled at the
 * same time wins; the winner's JOIN will name p's handle. */
void p2p_hs_superseded(p2p_host *h, p2p_peer *p, uint64_t now)
{
    size_t k = 0;
    for (size_t i = 0; i < 8; i++)
        if (h->superseded[i].expire < h->superseded[k].expire) k = i;
    h->superseded[k].has_id = p->has_id || p->has_expected;
    memcpy(h->superseded[k].id, p->has_id ? p->id : p->expected, P2P_ID_LEN);
    h->superseded[k].addr = p->addr;
    h->superseded[k].handle = p->handle;
    h->superseded[k].expire = now + h->timeout;
    p2p_kill(h, p);
}

/* The handle a newly joined session takes over, if one of our connects lost to it. */
static p2p_peer_handle taken_over(p2p_host *h, const p2p_peer *p, uint64_t now)
{
    for (size_t i = 0; i < 8; i++) {
        if (!h->superseded[i].handle || h->superseded[i].expire <= now) continue;
        if ((h->superseded[i].has_id && memcmp(h->superseded[i].id, p->id, P2P_ID_LEN) == 0) ||
            (!h->superseded[i].has_id && p2p_addr_equal(&h->superseded[i].addr, &p->addr))) {
            p2p_peer_handle old = h->superseded[i].handle;
            h->superseded[i].handle = 0;
            return old;
        }
    }
    return 0;
}

/* Our own attempt (not yet established) to reach the node that p comes from: matched by
 * id when we know or expect one, else by address. */
static p2p_peer *own_attempt(const p2p_host *h, const p2p_peer *p)
{
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *q = h->peers.slots[i];
        if (!q || q == p || !q->initiator) continue;
        if (q->state != P2P_S_INIT_SENT && q->state != P2P_S_FIN_SENT) continue;
        const uint8_t *qid = q->has_id ? q->id : q->has_expected ? q->expected : NULL;
        if (qid ? memcmp(qid, p->id, P2P_ID_LEN) == 0 : p2p_addr_equal(&q->addr, &p->addr))
            return q;
    }
    return NULL;
}

static void establish(p2p_host *h, p2p_peer *p, uint64_t now)
{
    if (p->state == P2P_S_WAIT_ADMIT || p->state == P2P_S_HALF_OPEN) h->n_half_open--;
    p2p_hs_free(p);
    if (one_session(h, p)) {
        uint8_t pkt[P2P_MAX_PACKET];
        size_t n = p2p_peer_close_packet(p, P2P_CLOSE_DUPLICATE, pkt);
        if (n) p2p_tx_push(h, &p->addr, pkt, n);
        p->state = P2P_S_CLOSING;
        p2p_kill(h, p);
        return;
    }
    p->state = P2P_S_CONNECTED;
    p->last_recv = now;
    h->n_connected++;
    h->stats.handshakes++;
    p2p_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = P2P_EV_JOIN;
    p2p_fill_event(p, &ev);
    ev.replaces = taken_over(h, p, now);
    p2p_event_push(h, &ev, NULL, 0);
    /* The responder's first DATA is what tells the initiator it was admitted. */
    if (!p->initiator) p->ping_needed = 1;
    p2p_ready(h, p);
    /* The host starts its path, mesh and NAT parts. */
    p2p_notify_peer(h, P2P_NOTE_JOINED, p);
}

static void refuse(p2p_host *h, p2p_peer *p)
{
    uint8_t pkt[P2P_MAX_PACKET];
    size_t n = p2p_peer_close_packet(p, P2P_CLOSE_DENIED, pkt);
    if (n) p2p_tx_push(h, &p->addr, pkt, n);
    p2p_kill(h, p);
}

void p2p_hs_on_resp(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len, uint64_t now)
{
    p2p_peer *p = len >= RESP_MIN ? p2p_lookup_index(h, p2p_get_u32(buf + 8)) : NULL;
    if (!p || p->state != P2P_S_INIT_SENT || !version_ok(buf) || !is_candidate(p, from) ||
        !mac1_ok(h, buf, len)) {
        h->stats.dropped++;
        return;
    }
    p2p_noise trial;
    id_payload idp;
    if (trial_read(h, p, buf + 12, len - 12 - P2P_MAC_LEN, 0, &trial, &idp)) return;
    /* The id is checked before anything is taken from the payload. A candidate that answers
     * for another node (or one this node refuses) is struck from the attempt, which goes on
     * with the others; only when none is left does the attempt fail. */
    int mismatch = p->has_expected && memcmp(p->expected, idp.ed_pk, P2P_ID_LEN) != 0;
    const char *why = mismatch ? NULL : p2p_policy(h, idp.ed_pk);
    if (mismatch || why) {
        p2p_noise_wipe(&trial);
        h->stats.dropped++;
        if (p->ncand > 1) {
            drop_candidate(p, from);
            return;
        }
        p->addr = *from;
        memcpy(p->id, idp.ed_pk, P2P_ID_LEN);
        p->has_id = 1;
        char want[P2P_ID_HEX_LEN + 1], got[P2P_ID_HEX_LEN + 1];
        p2p_id_to_hex(idp.ed_pk, got);
        if (mismatch) {
            p2p_id_to_hex(p->expected, want);
            if (!p->auto_dial) p2p_error(h, p, "peer id mismatch: expected %s, got %s", want, got);
        } else if (!p->auto_dial) {
            p2p_error(h, p, "peer %s %s", got, why);
        }
        p2p_kill(h, p);
        return;
    }
    p->hs->noise = trial;
    p2p_noise_wipe(&trial);
    p->addr = *from; /* the first path on which the handshake answers wins */
    p->remote_index = p2p_get_u32(buf + 4);
    adopt_payload(p, &idp);
    p->bootstrap = !p->auto_dial;
    /* The node dialled us at the same time and that session is already up: ours is
     * redundant (on both sides: without our FIN, its half-open entry simply expires). */
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *q = h->peers.slots[i];
        if (q && q != p && q->state == P2P_S_CONNECTED && q->has_id && !q->initiator &&
            q->instance == p->instance && memcmp(q->id, p->id, P2P_ID_LEN) == 0) {
            p2p_hs_superseded(h, p, now);
            return;
        }
    }
    uint8_t mine[320];
    size_t mlen = write_payload(h, from, p->auto_dial ? 0 : FLAG_BOOTSTRAP, 1, mine, sizeof mine);
    p2p_hs *hs = p->hs;
    uint8_t *pkt = hs->pkt;
    put_head(pkt, P2P_PKT_FIN, p->remote_index);
    size_t n = 0;
    if (!mlen || nz_write(h, &hs->noise, mine, mlen, pkt + 8, P2P_MAX_PACKET - 8, &n) ||
        !p2p_noise_done(&hs->noise)) {
        p2p_error(h, p, "handshake failed");
        p2p_kill(h, p);
        return;
    }
    hs->pkt_len = 8 + n;
    uint8_t c1[P2P_KEY_LEN], c2[P2P_KEY_LEN];
    p2p_noise_split(&hs->noise, c1, c2);
    p2p_peer_init_session(p, c1, c2, now);
    /* issue 10 (congestion control): INIT to RESP is the session's first RTT sample (Karn:
     * only when one INIT went out) */
    if (hs->rtt_sends == 1) p2p_recovery_rtt_sample(&p->rec, now - hs->rtt_from);
    p2p_wipe(c1, P2P_KEY_LEN);
    p2p_wipe(c2, P2P_KEY_LEN);
    p2p_noise_wipe(&hs->noise);
    p->state = P2P_S_FIN_SENT;
    hs->interval = P2P_HS_RESEND_US;
    hs->expire = now + h->timeout;
    schedule_resend(h, hs, now);
    p2p_tx_push(h, &p->addr, pkt, hs->pkt_len);
}

void p2p_hs_on_fin(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len, uint64_t now)
{
    p2p_peer *p = len >= FIN_MIN ? p2p_lookup_index(h, p2p_get_u32(buf + 4)) : NULL;
    if (p && !p->initiator && p->state == P2P_S_CONNECTED && version_ok(buf)) {
        /* Our first DATA was lost and the initiator resent FIN: tell it again. */
        p->ping_needed = 1;
        p2p_ready(h, p);
        return;
    }
    if (!p || p->state != P2P_S_HALF_OPEN || !version_ok(buf) || !p2p_addr_equal(from, &p->addr)) {
        h->stats.dropped++;
        return;
    }
    p2p_noise trial;
    id_payload idp;
    if (trial_read(h, p, buf + 8, len - 8, 1, &trial, &idp)) return;
    uint8_t c1[P2P_KEY_LEN], c2[P2P_KEY_LEN];
    p2p_noise_split(&trial, c1, c2);
    p2p_noise_wipe(&trial);
    p2p_peer_init_session(p, c2, c1, now);
    /* issue 10 (congestion control): RESP to FIN is the responder's first RTT sample */
    if (p->hs->rtt_sends == 1) p2p_recovery_rtt_sample(&p->rec, now - p->hs->rtt_from);
    p2p_wipe(c1, P2P_KEY_LEN);
    p2p_wipe(c2, P2P_KEY_LEN);
    adopt_payload(p, &idp);
    p->bootstrap = (idp.flags & FLAG_BOOTSTRAP) != 0;
    if (p2p_policy(h, p->id) || h->n_connected >= h->max_peers) {
        h->stats.dropped++;
        refuse(h, p);
        return;
    }
    /* We are dialling that node too: of the two attempts, the one made by the lower id is
     * kept, as the other node decides the same way. */
    p2p_peer *mine = own_attempt(h, p);
    if (mine) {
        if (memcmp(h->ident.ed_pk, p->id, P2P_ID_LEN) < 0) {
            uint8_t pkt[P2P_MAX_PACKET];
            size_t n = p2p_peer_close_packet(p, P2P_CLOSE_DUPLICATE, pkt);
            if (n) p2p_tx_push(h, &p->addr, pkt, n);
            p2p_kill(h, p);
            return;
        }
        p2p_hs_superseded(h, mine, now);
    }
    if (h->request_hook) {
        p->state = P2P_S_WAIT_ADMIT;
        p2p_event ev;
        memset(&ev, 0, sizeof ev);
        ev.type = P2P_EV_REQUEST;
        p2p_fill_event(p, &ev);
        p2p_event_push(h, &ev, NULL, 0);
        return;
    }
    establish(h, p, now);
}

/* Called by the session when the first authenticated DATA reaches an initiator. */
void p2p_hs_confirmed(p2p_host *h, p2p_peer *p, uint64_t now)
{
    if (h->n_connected >= h->max_peers) {
        p2p_error(h, p, "max_peers reached");
        p2p_kill(h, p);
        return;
    }
    establish(h, p, now);
}

int p2p_hs_admit(p2p_host *h, p2p_peer *p, int accept, uint64_t now)
{
    if (!p || p->state != P2P_S_WAIT_ADMIT) return P2P_ERR_PEER;
    if (accept && h->n_connected < h->max_peers)
        establish(h, p, now);
    else
        refuse(h, p);
    return 0;
}

int p2p_hs_expired(p2p_host *h, p2p_peer *p, uint64_t now)
{
    if (now >= p->hs->expire) {
        if (p->initiator && !p->auto_dial) {
            char what[80];
            if (p->addr.family == P2P_AF_INET4 || p->addr.family == P2P_AF_INET6) {
                p2p_addr_format(&p->addr, what, sizeof what);
            } else {
                char hex[P2P_ID_HEX_LEN + 1];
                p2p_id_to_hex(p->expected, hex);
                snprintf(what, sizeof what, "peer %.16s", hex);
            }
            p2p_error(h, p, "connect to %s timed out", what);
        }
        p2p_kill(h, p);
        return 1;
    }
    return 0;
}

void p2p_hs_resend(p2p_host *h, p2p_peer *p, uint64_t now)
{
    p2p_hs *hs = p->hs;
    if (!p->initiator) return;
    if (now >= hs->resend_at) {
        if (p->state == P2P_S_INIT_SENT)
            send_init(h, p);
        else
            p2p_tx_push(h, &p->addr, hs->pkt, hs->pkt_len);
        /* While punching, both sides keep sending at a steady pace until a hole opens. */
        if (hs->punching && p->state == P2P_S_INIT_SENT)
            hs->interval = P2P_PUNCH_RESEND_US;
        else
            hs->interval *= 2;
        if (hs->interval > P2P_HS_RESEND_MAX_US) hs->interval = P2P_HS_RESEND_MAX_US;
        schedule_resend(h, hs, now);
    }
}

/* Restarts the resend timer at the punching pace (the introduction just arrived). */
void p2p_hs_punch_now(p2p_host *h, p2p_peer *p, uint64_t now)
{
    p->punch_due = 0;
    if (!p->hs) return;
    p->hs->punching = 1;
    p->hs->interval = P2P_PUNCH_RESEND_US;
    schedule_resend(h, p->hs, now);
    send_init(h, p);
}

uint64_t p2p_hs_deadline(const p2p_peer *p)
{
    const p2p_hs *hs = p->hs;
    uint64_t d = hs->expire;
    if (p->initiator && hs->resend_at < d) d = hs->resend_at;
    return d;
}
