/*
 * p2p_handshake.c - INIT, RESP and FIN (docs/PROTOCOL.md section 2.1): the
 * Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b handshake, the mac1 check that keeps a keyed node
 * silent and DH-free towards strangers, the identity payload that binds the Noise static key
 * to the Ed25519 id, and admission (expected id, allow, deny, on_request).
 */
#include "p2p_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INIT_PAYLOAD 56
#define ID_PAYLOAD_MIN 97
#define RESP_MIN (12 + 32 + 48 + ID_PAYLOAD_MIN + 16 + P2P_MAC_LEN)
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
    uint8_t ed_pk[32];
    uint8_t flags;
    uint64_t instance;
    uint32_t max_message, window;
    int has_observed;
    p2p_addr observed;
    uint8_t nadv;
    p2p_addr adv[P2P_MEMBER_ADDRS];
} id_payload;

static void mac1(const p2p_host *h, const uint8_t *buf, size_t len, uint8_t out[P2P_MAC_LEN])
{
    p2p_blake2b(out, P2P_MAC_LEN, h->mac_key, 32, buf, len, NULL, 0);
}

static int mac1_ok(const p2p_host *h, const uint8_t *buf, size_t len)
{
    uint8_t want[P2P_MAC_LEN];
    mac1(h, buf, len - P2P_MAC_LEN, want);
    return p2p_memcmp_ct(want, buf + len - P2P_MAC_LEN, P2P_MAC_LEN) == 0;
}

static uint32_t own_window(const p2p_host *h)
{
    return (h->max_message > P2P_MESH_RECORD_MAX ? h->max_message : P2P_MESH_RECORD_MAX) + 65536u;
}

/* The identity payload; FIN (with_addrs) also lists the addresses this node advertises, so
 * that the responder (typically a mediator) can pass them on in introductions. */
static size_t write_payload(const p2p_host *h, const p2p_addr *observed, uint8_t flags,
                            int with_addrs, uint8_t *out, size_t cap)
{
    p2p_wr w;
    p2p_wr_init(&w, out, cap);
    p2p_wr_u8(&w, 1);
    p2p_wr_bytes(&w, h->ident.ed_pk, 32);
    p2p_wr_bytes(&w, h->ident.binding_sig, 64);
    if (observed->family == P2P_AF_INET4 || observed->family == P2P_AF_INET6) {
        p2p_wr_u8(&w, EXT_OBSERVED);     /* not over a relay: that path has no address */
        p2p_wr_u16(&w, observed->family == P2P_AF_INET4 ? 7 : 19);
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
    p2p_wr_u8(&w, (uint8_t)(flags | (h->mesh.member ? FLAG_MESH : 0)));
    p2p_wr_u8(&w, EXT_INSTANCE);
    p2p_wr_u16(&w, 8);
    p2p_wr_u64(&w, h->instance);
    if (with_addrs && h->mesh.naddr) {
        size_t n = 1;
        for (size_t i = 0; i < h->mesh.naddr; i++)
            n += h->mesh.addrs[i].family == P2P_AF_INET4 ? 7 : 19;
        p2p_wr_u8(&w, EXT_ADDRS);
        p2p_wr_u16(&w, (uint16_t)n);
        p2p_wr_u8(&w, (uint8_t)h->mesh.naddr);
        for (size_t i = 0; i < h->mesh.naddr; i++) p2p_wr_addr(&w, &h->mesh.addrs[i]);
    }
    return w.bad ? 0 : (size_t)(w.p - out);
}

/* Decodes and verifies an identity payload against the static key Noise authenticated. */
static int read_payload(const uint8_t *buf, size_t len, const uint8_t rs[32], id_payload *out)
{
    p2p_rd r;
    p2p_rd_init(&r, buf, len);
    memset(out, 0, sizeof *out);
    out->max_message = P2P_DEFAULT_MAX_MESSAGE;
    out->window = 1u << 20;
    if (p2p_rd_u8(&r) != 1) return P2P_ERR_INVALID;
    const uint8_t *pk = p2p_rd_bytes(&r, 32);
    const uint8_t *sig = p2p_rd_bytes(&r, 64);
    if (r.bad) return P2P_ERR_INVALID;
    memcpy(out->ed_pk, pk, 32);
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
            if (type == EXT_MAX_MESSAGE) out->max_message = x; else out->window = x;
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
    uint8_t signed_msg[sizeof binding_label - 1 + 32];
    memcpy(signed_msg, binding_label, sizeof binding_label - 1);
    memcpy(signed_msg + sizeof binding_label - 1, rs, 32);
    if (p2p_verify(sig, signed_msg, sizeof signed_msg, pk)) return P2P_ERR_CRYPTO;
    uint8_t x[32];
    if (p2p_ed_to_x_public(x, pk) || p2p_memcmp_ct(x, rs, 32)) return P2P_ERR_CRYPTO;
    return 0;
}

/* Takes what the peer's verified identity payload says about it. */
static void adopt_payload(p2p_peer *p, const id_payload *idp)
{
    memcpy(p->id, idp->ed_pk, 32);
    p->has_id = 1;
    p->peer_max_message = idp->max_message;
    p->peer_window = idp->window;
    p->peer_max = idp->window;
    p->peer_mesh = (idp->flags & FLAG_MESH) != 0;
    p->has_observed = idp->has_observed;
    p->observed = idp->observed;
    p->instance = idp->instance;
    p->nadv = idp->nadv;
    memcpy(p->adv, idp->adv, sizeof p->adv);
}

static p2p_hs *hs_new(const p2p_host *h, int initiator, uint64_t now)
{
    p2p_hs *hs = calloc(1, sizeof *hs);
    if (!hs) return NULL;
    if (p2p_noise_init(&hs->noise, P2P_NOISE_PROTOCOL, initiator, (const uint8_t *)P2P_PROLOGUE,
                       sizeof P2P_PROLOGUE - 1, h->ident.x_sk, NULL, h->psk)) {
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

int p2p_hs_start(p2p_host *h, p2p_peer *p, uint64_t now)
{
    p->hs = hs_new(h, 1, now);
    if (!p->hs) return P2P_ERR_NOMEM;
    p2p_hs *hs = p->hs;
    uint8_t *pkt = hs->pkt;
    pkt[0] = P2P_PKT_INIT;
    pkt[1] = P2P_PROTOCOL_VERSION;
    pkt[2] = pkt[3] = 0;
    p2p_put_u32(pkt + 4, p->local_index);
    uint8_t zeros[INIT_PAYLOAD] = { 0 };
    size_t n = 0;
    if (p2p_noise_write(&hs->noise, &h->rng, zeros, sizeof zeros, pkt + 8, P2P_MAX_PACKET - 8, &n) ||
        8 + n + P2P_MAC_LEN != P2P_INIT_LEN)
        return P2P_ERR_CRYPTO;
    mac1(h, pkt, 8 + n, pkt + 8 + n);
    hs->pkt_len = P2P_INIT_LEN;
    p->state = P2P_S_INIT_SENT;
    schedule_resend(h, hs, now);
    p2p_hs_send_init(h, p);
    return 0;
}

void p2p_hs_send_init(p2p_host *h, p2p_peer *p)
{
    for (size_t i = 0; i < p->ncand; i++) p2p_host_txq_push(h, &p->cand[i], p->hs->pkt, p->hs->pkt_len);
}

static int is_candidate(const p2p_peer *p, const p2p_addr *a)
{
    for (size_t i = 0; i < p->ncand; i++)
        if (p2p_addr_equal(&p->cand[i], a)) return 1;
    return 0;
}

static int version_ok(const uint8_t *buf) { return buf[1] == P2P_PROTOCOL_VERSION && !buf[2] && !buf[3]; }

static p2p_peer *find_half_open(const p2p_host *h, const p2p_addr *from, uint32_t init_index)
{
    for (size_t i = 0; i < h->slot_hwm; i++) {
        p2p_peer *p = h->slots[i];
        if (p && p->state == P2P_S_HALF_OPEN && p->hs && p->hs->init_index == init_index &&
            p2p_addr_equal(&p->addr, from))
            return p;
    }
    return NULL;
}

void p2p_hs_on_init(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len, uint64_t now)
{
    if (len != P2P_INIT_LEN || !version_ok(buf) || !mac1_ok(h, buf, len)) {
        h->stats.dropped++;
        return;
    }
    uint32_t init_index = p2p_get_u32(buf + 4);
    p2p_peer *p = find_half_open(h, from, init_index);
    if (p) {   /* a resent INIT: answer with the same RESP */
        p2p_host_txq_push(h, from, p->hs->pkt, p->hs->pkt_len);
        return;
    }
    if (h->n_half_open >= P2P_MAX_HALF_OPEN) { h->stats.dropped++; return; }
    p = p2p_host_peer_new(h, 0, from);
    if (!p) { h->stats.dropped++; return; }
    p->hs = hs_new(h, 0, now);
    p->state = P2P_S_HALF_OPEN;
    h->n_half_open++;
    if (!p->hs) { p2p_host_peer_free(h, p); return; }
    p2p_hs *hs = p->hs;
    hs->init_index = init_index;
    p->remote_index = init_index;
    uint8_t payload[INIT_PAYLOAD + 16];
    size_t plen = 0;
    static const uint8_t zeros[INIT_PAYLOAD];
    if (p2p_noise_read(&hs->noise, buf + 8, len - 8 - P2P_MAC_LEN, payload, sizeof payload, &plen) ||
        plen != INIT_PAYLOAD || memcmp(payload, zeros, INIT_PAYLOAD) != 0) {
        h->stats.dropped++;
        p2p_host_peer_free(h, p);
        return;
    }
    uint8_t idp[160];
    size_t idlen = write_payload(h, from, 0, 0, idp, sizeof idp);
    uint8_t *pkt = hs->pkt;
    pkt[0] = P2P_PKT_RESP;
    pkt[1] = P2P_PROTOCOL_VERSION;
    pkt[2] = pkt[3] = 0;
    p2p_put_u32(pkt + 4, p->local_index);
    p2p_put_u32(pkt + 8, init_index);
    size_t n = 0;
    if (!idlen || p2p_noise_write(&hs->noise, &h->rng, idp, idlen, pkt + 12,
                                  P2P_MAX_PACKET - 12 - P2P_MAC_LEN, &n)) {
        p2p_host_peer_free(h, p);
        return;
    }
    mac1(h, pkt, 12 + n, pkt + 12 + n);
    hs->pkt_len = 12 + n + P2P_MAC_LEN;
    p2p_host_txq_push(h, from, pkt, hs->pkt_len);
}

/* Checks an authenticated id against this node's policy. Returns NULL when acceptable, or
 * the reason. */
static const char *policy(const p2p_host *h, const uint8_t id[32])
{
    if (memcmp(id, h->ident.ed_pk, 32) == 0) return "is this node itself";
    if (p2p_host_id_listed((const uint8_t (*)[32])h->deny, h->deny_count, id)) return "is denied";
    if (h->allow_count && !p2p_host_id_listed((const uint8_t (*)[32])h->allow, h->allow_count, id))
        return "is not in the allow list";
    return NULL;
}

/* Keeps one session per id. A session with a new boot instance of the peer means it
 * restarted, and a second session made from the same side is a reconnect: either replaces
 * the older one. Two sessions with the same instance made from opposite sides are a
 * simultaneous open: both nodes keep the one dialled by the lower id. Returns 1 when p
 * itself must go. */
static int one_session(p2p_host *h, p2p_peer *p)
{
    for (size_t i = 0; i < h->slot_hwm; i++) {
        p2p_peer *q = h->slots[i];
        if (!q || q == p || !q->has_id || q->state != P2P_S_CONNECTED || memcmp(q->id, p->id, 32))
            continue;
        if (q->initiator != p->initiator && q->instance == p->instance) {
            const uint8_t *p_dialer = p->initiator ? h->ident.ed_pk : p->id;
            const uint8_t *q_dialer = q->initiator ? h->ident.ed_pk : q->id;
            if (memcmp(p_dialer, q_dialer, 32) > 0) return 1;
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
    memcpy(h->superseded[k].id, p->has_id ? p->id : p->expected, 32);
    h->superseded[k].addr = p->addr;
    h->superseded[k].handle = p->handle;
    h->superseded[k].expire = now + h->timeout;
    p2p_host_peer_free(h, p);
}

/* The handle a newly joined session takes over, if one of our connects lost to it. */
static p2p_peer_handle taken_over(p2p_host *h, const p2p_peer *p, uint64_t now)
{
    for (size_t i = 0; i < 8; i++) {
        if (!h->superseded[i].handle || h->superseded[i].expire <= now) continue;
        if ((h->superseded[i].has_id && memcmp(h->superseded[i].id, p->id, 32) == 0) ||
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
    for (size_t i = 0; i < h->slot_hwm; i++) {
        p2p_peer *q = h->slots[i];
        if (!q || q == p || !q->initiator) continue;
        if (q->state != P2P_S_INIT_SENT && q->state != P2P_S_FIN_SENT) continue;
        const uint8_t *qid = q->has_id ? q->id : q->has_expected ? q->expected : NULL;
        if (qid ? memcmp(qid, p->id, 32) == 0 : p2p_addr_equal(&q->addr, &p->addr)) return q;
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
        if (n) p2p_host_txq_push(h, &p->addr, pkt, n);
        p->state = P2P_S_CLOSING;
        p2p_host_peer_free(h, p);
        return;
    }
    p->state = P2P_S_CONNECTED;
    p->last_recv = now;
    h->n_connected++;
    h->stats.handshakes++;
    p2p_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = P2P_EV_JOIN;
    p2p_peer_fill_event(p, &ev);
    ev.replaces = taken_over(h, p, now);
    p2p_host_event(h, &ev, NULL, 0);
    /* The responder's first DATA is what tells the initiator it was admitted. */
    if (!p->initiator) p->ping_needed = 1;
    p2p_path_start(h, p, now);
    p2p_host_ready(h, p);
    p2p_mesh_on_join(h, p, now);
    p2p_nat_on_join(h, p, now);
}

static void refuse(p2p_host *h, p2p_peer *p)
{
    uint8_t pkt[P2P_MAX_PACKET];
    size_t n = p2p_peer_close_packet(p, P2P_CLOSE_DENIED, pkt);
    if (n) p2p_host_txq_push(h, &p->addr, pkt, n);
    p2p_host_peer_free(h, p);
}

void p2p_hs_on_resp(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len, uint64_t now)
{
    p2p_peer *p = len >= RESP_MIN ? p2p_host_by_index(h, p2p_get_u32(buf + 8)) : NULL;
    if (!p || p->state != P2P_S_INIT_SENT || !version_ok(buf) || !is_candidate(p, from) ||
        !mac1_ok(h, buf, len)) {
        h->stats.dropped++;
        return;
    }
    /* Read into a copy: a forged RESP must not spoil the real handshake. */
    p2p_noise trial = p->hs->noise;
    uint8_t payload[P2P_MAX_PACKET];
    size_t plen = 0;
    id_payload idp;
    if (p2p_noise_read(&trial, buf + 12, len - 12 - P2P_MAC_LEN, payload, sizeof payload, &plen) ||
        read_payload(payload, plen, p2p_noise_remote_static(&trial), &idp)) {
        p2p_noise_wipe(&trial);
        h->stats.dropped++;
        return;
    }
    p->hs->noise = trial;
    p2p_noise_wipe(&trial);
    p->addr = *from;     /* the first path on which the handshake answers wins */
    p->remote_index = p2p_get_u32(buf + 4);
    adopt_payload(p, &idp);
    p->bootstrap = !p->auto_dial;
    char want[65], got[65];
    if (p->has_expected && memcmp(p->expected, p->id, 32) != 0) {
        p2p_id_to_hex(p->expected, want);
        p2p_id_to_hex(p->id, got);
        if (!p->auto_dial) p2p_host_error(h, p, "peer id mismatch: expected %s, got %s", want, got);
        p2p_host_peer_free(h, p);
        return;
    }
    const char *why = policy(h, p->id);
    if (why) {
        p2p_id_to_hex(p->id, got);
        if (!p->auto_dial) p2p_host_error(h, p, "peer %s %s", got, why);
        p2p_host_peer_free(h, p);
        return;
    }
    /* The node dialled us at the same time and that session is already up: ours is
     * redundant (on both sides: without our FIN, its half-open entry simply expires). */
    for (size_t i = 0; i < h->slot_hwm; i++) {
        p2p_peer *q = h->slots[i];
        if (q && q != p && q->state == P2P_S_CONNECTED && q->has_id && !q->initiator &&
            q->instance == p->instance && memcmp(q->id, p->id, 32) == 0) {
            p2p_hs_superseded(h, p, now);
            return;
        }
    }
    uint8_t mine[320];
    size_t mlen = write_payload(h, from, p->auto_dial ? 0 : FLAG_BOOTSTRAP, 1, mine, sizeof mine);
    p2p_hs *hs = p->hs;
    uint8_t *pkt = hs->pkt;
    pkt[0] = P2P_PKT_FIN;
    pkt[1] = P2P_PROTOCOL_VERSION;
    pkt[2] = pkt[3] = 0;
    p2p_put_u32(pkt + 4, p->remote_index);
    size_t n = 0;
    if (!mlen || p2p_noise_write(&hs->noise, &h->rng, mine, mlen, pkt + 8, P2P_MAX_PACKET - 8, &n) ||
        !p2p_noise_done(&hs->noise)) {
        p2p_host_error(h, p, "handshake failed");
        p2p_host_peer_free(h, p);
        return;
    }
    hs->pkt_len = 8 + n;
    uint8_t c1[32], c2[32];
    p2p_noise_split(&hs->noise, c1, c2);
    p2p_peer_init_session(p, c1, c2, now);
    p2p_wipe(c1, 32);
    p2p_wipe(c2, 32);
    p2p_noise_wipe(&hs->noise);
    p->state = P2P_S_FIN_SENT;
    hs->interval = P2P_HS_RESEND_US;
    hs->expire = now + h->timeout;
    schedule_resend(h, hs, now);
    p2p_host_txq_push(h, &p->addr, pkt, hs->pkt_len);
}

void p2p_hs_on_fin(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len, uint64_t now)
{
    p2p_peer *p = len >= FIN_MIN ? p2p_host_by_index(h, p2p_get_u32(buf + 4)) : NULL;
    if (p && !p->initiator && p->state == P2P_S_CONNECTED && version_ok(buf)) {
        /* Our first DATA was lost and the initiator resent FIN: tell it again. */
        p->ping_needed = 1;
        p2p_host_ready(h, p);
        return;
    }
    if (!p || p->state != P2P_S_HALF_OPEN || !version_ok(buf) || !p2p_addr_equal(from, &p->addr)) {
        h->stats.dropped++;
        return;
    }
    p2p_noise trial = p->hs->noise;
    uint8_t payload[P2P_MAX_PACKET];
    size_t plen = 0;
    id_payload idp;
    if (p2p_noise_read(&trial, buf + 8, len - 8, payload, sizeof payload, &plen) ||
        !p2p_noise_done(&trial) || read_payload(payload, plen, p2p_noise_remote_static(&trial), &idp)) {
        p2p_noise_wipe(&trial);
        h->stats.dropped++;
        return;
    }
    uint8_t c1[32], c2[32];
    p2p_noise_split(&trial, c1, c2);
    p2p_noise_wipe(&trial);
    p2p_peer_init_session(p, c2, c1, now);
    p2p_wipe(c1, 32);
    p2p_wipe(c2, 32);
    adopt_payload(p, &idp);
    p->bootstrap = (idp.flags & FLAG_BOOTSTRAP) != 0;
    if (policy(h, p->id) || h->n_connected >= h->max_peers) {
        h->stats.dropped++;
        refuse(h, p);
        return;
    }
    /* We are dialling that node too: of the two attempts, the one made by the lower id is
     * kept, as the other node decides the same way. */
    p2p_peer *mine = own_attempt(h, p);
    if (mine) {
        if (memcmp(h->ident.ed_pk, p->id, 32) < 0) {
            uint8_t pkt[P2P_MAX_PACKET];
            size_t n = p2p_peer_close_packet(p, P2P_CLOSE_DUPLICATE, pkt);
            if (n) p2p_host_txq_push(h, &p->addr, pkt, n);
            p2p_host_peer_free(h, p);
            return;
        }
        p2p_hs_superseded(h, mine, now);
    }
    if (h->request_hook) {
        p->state = P2P_S_WAIT_ADMIT;
        p2p_event ev;
        memset(&ev, 0, sizeof ev);
        ev.type = P2P_EV_REQUEST;
        p2p_peer_fill_event(p, &ev);
        p2p_host_event(h, &ev, NULL, 0);
        return;
    }
    establish(h, p, now);
}

/* Called by the session when the first authenticated DATA reaches an initiator. */
void p2p_hs_confirmed(p2p_host *h, p2p_peer *p, uint64_t now)
{
    if (h->n_connected >= h->max_peers) {
        p2p_host_error(h, p, "max_peers reached");
        p2p_host_peer_free(h, p);
        return;
    }
    establish(h, p, now);
}

int p2p_host_admit(p2p_host *h, p2p_peer_handle handle, int accept, uint64_t now)
{
    p2p_peer *p = p2p_host_peer_get(h, handle);
    if (!p || p->state != P2P_S_WAIT_ADMIT) return P2P_ERR_PEER;
    if (now > h->now) h->now = now;
    if (accept && h->n_connected < h->max_peers) establish(h, p, h->now);
    else refuse(h, p);
    return 0;
}

void p2p_hs_on_timeout(p2p_host *h, p2p_peer *p, uint64_t now)
{
    p2p_hs *hs = p->hs;
    if (now >= hs->expire) {
        if (p->initiator && !p->auto_dial) {
            char what[80];
            if (p->addr.family == P2P_AF_INET4 || p->addr.family == P2P_AF_INET6) {
                p2p_addr_format(&p->addr, what, sizeof what);
            } else {
                char hex[65];
                p2p_id_to_hex(p->expected, hex);
                snprintf(what, sizeof what, "peer %.16s", hex);
            }
            p2p_host_error(h, p, "connect to %s timed out", what);
        }
        p2p_host_peer_free(h, p);
        return;
    }
    if (!p->initiator) return;
    if (p->state == P2P_S_INIT_SENT && p->intro_state != P2P_INTRO_NONE) {
        p2p_nat_punch_timer(h, p, now);
        p = p2p_host_peer_get(h, p->handle);
        if (!p || !p->hs) return;
    }
    if (now >= hs->resend_at) {
        if (p->state == P2P_S_INIT_SENT) p2p_hs_send_init(h, p);
        else p2p_host_txq_push(h, &p->addr, hs->pkt, hs->pkt_len);
        /* While punching, both sides keep sending at a steady pace until a hole opens. */
        int punching = p->intro_state == P2P_INTRO_PUNCHING || p->intro_state == P2P_INTRO_RELAYING;
        if (punching && p->state == P2P_S_INIT_SENT) hs->interval = P2P_PUNCH_RESEND_US;
        else hs->interval *= 2;
        if (hs->interval > P2P_HS_RESEND_MAX_US) hs->interval = P2P_HS_RESEND_MAX_US;
        schedule_resend(h, hs, now);
    }
}

/* Restarts the resend timer at the punching pace (the introduction just arrived). */
void p2p_hs_punch_now(p2p_host *h, p2p_peer *p, uint64_t now)
{
    if (!p->hs) return;
    p->hs->interval = P2P_PUNCH_RESEND_US;
    schedule_resend(h, p->hs, now);
    p2p_hs_send_init(h, p);
}

uint64_t p2p_hs_deadline(const p2p_peer *p)
{
    const p2p_hs *hs = p->hs;
    uint64_t d = hs->expire;
    if (p->initiator && hs->resend_at < d) d = hs->resend_at;
    if (p->initiator && p->state == P2P_S_INIT_SENT && p->punch_until < d &&
        (p->intro_state == P2P_INTRO_LATER || p->intro_state == P2P_INTRO_PUNCHING))
        d = p->punch_until;
    return d;
}
