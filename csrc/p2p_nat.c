/*
 * p2p_nat.c - introductions, hole punching and the relay (docs/PROTOCOL.md section 8).
 *
 * Introductions: a node A that wants a node B it cannot reach asks a node I that holds
 * sessions with both (a mediator, or any mutual mesh member) with INTRO_REQ. Nobody acts on
 * an introduction it did not ask for, so I first offers it to B (an INTRO with the offer flag,
 * naming A, without addresses); B, when its policy accepts, asks I for A in turn. Once both
 * have asked, I sends each side an INTRO naming the other, with the other's candidate
 * addresses: where I sees it, and what it advertised. Both then send INIT to every candidate
 * at a steady, jittered pace, so each side's NAT opens towards the other while the other's
 * packets arrive; the first path on which a handshake completes wins, and the
 * simultaneous-open rule keeps one session. An INTRO that nobody asked for is dropped.
 *
 * Relay: when punching has not worked for P2P_PUNCH_US, the path through I joins the
 * candidates. Packets for that path travel inside RELAY frames of the A-I session; I checks
 * that it introduced the pair, applies its rate limit, and passes them on inside RELAYED
 * frames of the I-B session. What it carries is the A-B session's own packets, sealed with
 * keys I never has: I sees ciphertext only.
 */
#include "p2p_nat.h"
#include "p2p_guard.h"
#include "p2p_peer.h"

#include <stdlib.h>
#include <string.h>

#define FLAG_RELAY 1
#define FLAG_OFFER 2 /* an offer: the named node asks to be introduced (no candidates) */
enum { FAIL_UNKNOWN = 1, FAIL_SELF = 2, FAIL_BUSY = 3 };

/* Relay hand-over (docs/PROTOCOL.md section 8.5): an established relayed session whose relay
 * went away (relay_lost) or whose relayed path stalled asks other introducers, one at a time,
 * for a new introduction: handover_asks made so far, the next due at handover_at (0: no
 * hand-over running), handover_via asked last. */
#define HANDOVER_MAX_ASKS 4                  /* introducers asked per loss */
#define HANDOVER_NEXT_US 2000000             /* the next one after this without an answer */
#define HANDOVER_RESET_US UINT64_C(30000000) /* a loss this old is over: count asks anew */

int p2p_nat_init(p2p_host *h, const p2p_config *cfg)
{
    p2p_nat *n = &h->nat;
    memset(n, 0, sizeof *n);
    n->relay = !cfg->no_relay;
    n->max_pairs = cfg->relay_sessions ? cfg->relay_sessions : P2P_DEFAULT_RELAY_SESSIONS;
    n->rate = cfg->relay_rate ? cfg->relay_rate : P2P_DEFAULT_RELAY_RATE;
    n->tokens = n->rate;
    n->refill_at = h->now;
    return 0;
}

void p2p_nat_free(p2p_host *h)
{
    free(h->nat.pairs);
    h->nat.pairs = NULL;
    h->nat.npairs = 0;
}

static p2p_peer *connected_id(const p2p_host *h, const uint8_t id[P2P_ID_LEN])
{
    p2p_peer_handle ph = p2p_find_connected(h, id);
    return ph ? p2p_lookup(h, ph) : NULL;
}

/* Our handshake attempt towards an id, or NULL. */
static p2p_peer *attempt_for(const p2p_host *h, const uint8_t id[P2P_ID_LEN])
{
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *q = h->peers.slots[i];
        if (q && q->initiator && (q->hs || q->dial_due) && q->has_expected &&
            memcmp(q->expected, id, P2P_ID_LEN) == 0 &&
            (q->state == P2P_S_INIT_SENT || q->state == P2P_S_FIN_SENT))
            return q;
    }
    return NULL;
}

/* ---- records ---------------------------------------------------------------------------- */

void p2p_nat_send_intro(p2p_host *h, p2p_peer *to, const p2p_peer *about, const p2p_addr *c,
                        uint8_t n, int relay_ok)
{
    uint8_t body[P2P_ID_LEN + 4 + 1 + 1 + (P2P_CANDIDATES - 1) * 19];
    p2p_wr w;
    p2p_wr_init(&w, body, sizeof body);
    p2p_wr_bytes(&w, about->id, P2P_ID_LEN);
    p2p_wr_u32(&w, about->local_index);
    p2p_wr_u8(&w, relay_ok ? FLAG_RELAY : 0);
    p2p_wr_u8(&w, n);
    for (uint8_t i = 0; i < n; i++) p2p_wr_addr(&w, &c[i]);
    if (!w.bad) p2p_peer_append(h, to, P2P_REC_INTRO, body, (size_t)(w.p - body));
}

static p2p_relay_pair *pair_find(p2p_host *h, p2p_peer_handle a, p2p_peer_handle b)
{
    for (size_t i = 0; i < h->nat.npairs; i++) {
        p2p_relay_pair *x = &h->nat.pairs[i];
        if ((x->a == a && x->b == b) || (x->a == b && x->b == a)) return x;
    }
    return NULL;
}

/* Makes room for one more relayed pair: pairs idle too long go first. Returns the pair, or
 * NULL when the relay carries its maximum. */
static p2p_relay_pair *pair_add(p2p_host *h, p2p_peer_handle a, p2p_peer_handle b, uint64_t now)
{
    p2p_nat *n = &h->nat;
    p2p_relay_pair *x = pair_find(h, a, b);
    if (x) return x;
    for (size_t i = 0; i < n->npairs;) {
        if (n->pairs[i].last_used + P2P_RELAY_IDLE_US < now)
            n->pairs[i] = n->pairs[--n->npairs];
        else
            i++;
    }
    if (n->npairs >= n->max_pairs) return NULL;
    if (!n->pairs) {
        n->pairs = malloc(n->max_pairs * sizeof *n->pairs);
        if (!n->pairs) return NULL;
    }
    x = &n->pairs[n->npairs++];
    x->a = a;
    x->b = b;
    x->last_used = now;
    return x;
}

static void send_fail(p2p_host *h, p2p_peer *p, const uint8_t id[P2P_ID_LEN], uint8_t code)
{
    uint8_t fail[P2P_ID_LEN + 1];
    memcpy(fail, id, P2P_ID_LEN);
    fail[P2P_ID_LEN] = code;
    p2p_peer_append(h, p, P2P_REC_INTRO_FAIL, fail, sizeof fail);
}

/* An offer to `to`: `about` asks to be introduced to it. No addresses: nothing to act on. */
static void send_offer(p2p_host *h, p2p_peer *to, const p2p_peer *about)
{
    uint8_t body[P2P_ID_LEN + 4 + 1 + 1];
    memcpy(body, about->id, P2P_ID_LEN);
    p2p_put_u32(body + P2P_ID_LEN, 0);
    body[36] = FLAG_OFFER;
    body[37] = 0;
    p2p_peer_append(h, to, P2P_REC_INTRO, body, sizeof body);
}

/* Both p and q asked: the introduction proper. */
static void introduce(p2p_host *h, p2p_peer *p, p2p_peer *q, uint64_t now)
{
    /* Relaying is offered only between two direct sessions of ours, and within the caps. */
    int relay_ok = h->nat.relay && p->addr.family != P2P_AF_RELAY &&
                   q->addr.family != P2P_AF_RELAY && pair_add(h, p->handle, q->handle, now);
    /* The host adds where each may be reached (the mesh knows their member records) and calls
     * p2p_nat_send_intro both ways. */
    p2p_notice note;
    memset(&note, 0, sizeof note);
    note.kind = P2P_NOTE_INTRODUCE;
    note.peer = p->handle;
    note.other = q->handle;
    note.relay_ok = (uint8_t)relay_ok;
    p2p_notify(h, &note);
    h->stats.introductions++;
}

static p2p_intro_pending *pending_find(p2p_host *h, p2p_peer_handle asker, p2p_peer_handle target,
                                       uint64_t now)
{
    for (size_t i = 0; i < P2P_PENDING; i++) {
        p2p_intro_pending *x = &h->nat.pending[i];
        if (x->expire > now && x->asker == asker && x->target == target) return x;
    }
    return NULL;
}

/* Room for a request of `asker`: an expired entry, within the per-asker cap. NULL when the
 * asker holds its share or the table is full; nothing is evicted early. */
static p2p_intro_pending *pending_add(p2p_host *h, p2p_peer_handle asker, uint64_t now)
{
    p2p_intro_pending *slot = NULL;
    size_t mine = 0;
    for (size_t i = 0; i < P2P_PENDING; i++) {
        p2p_intro_pending *x = &h->nat.pending[i];
        if (x->expire <= now) {
            if (!slot) slot = x;
        } else if (x->asker == asker) {
            mine++;
        }
    }
    return mine < P2P_PENDING_PER_ASKER ? slot : NULL;
}

static int on_intro_req(p2p_host *h, p2p_peer *p, const uint8_t *body, size_t len, uint64_t now)
{
    if (len != P2P_ID_LEN) return -1;
    p2p_peer *q = connected_id(h, body);
    uint8_t code = !q ? FAIL_UNKNOWN : q == p ? FAIL_SELF : 0;
    if (memcmp(body, h->ident.ed_pk, P2P_ID_LEN) == 0) code = FAIL_SELF;
    if (code) {
        send_fail(h, p, body, code);
        return 0;
    }
    /* The other side asked first (it was offered this introduction, or wanted it itself):
     * both have asked now. */
    p2p_intro_pending *x = pending_find(h, q->handle, p->handle, now);
    if (x) {
        x->expire = 0;
        introduce(h, p, q, now);
        return 0;
    }
    if (pending_find(h, p->handle, q->handle, now)) return 0; /* offered already */
    x = pending_add(h, p->handle, now);
    if (!x) {
        send_fail(h, p, body, FAIL_BUSY);
        return 0;
    }
    x->asker = p->handle;
    x->target = q->handle;
    x->expire = now + P2P_PENDING_US;
    send_offer(h, q, p);
    return 0;
}

static p2p_intro *intro_slot(p2p_host *h, const uint8_t id[P2P_ID_LEN], uint64_t now)
{
    p2p_intro *free_slot = NULL, *oldest = &h->nat.intros[0];
    for (size_t i = 0; i < P2P_INTROS; i++) {
        p2p_intro *x = &h->nat.intros[i];
        if (x->expire > now && memcmp(x->id, id, P2P_ID_LEN) == 0) return x;
        if (x->expire <= now && !free_slot) free_slot = x;
        if (x->expire < oldest->expire) oldest = x;
    }
    return free_slot ? free_slot : oldest;
}

const p2p_intro *p2p_nat_intro(const p2p_host *h, const uint8_t id[P2P_ID_LEN], uint64_t now)
{
    for (size_t i = 0; i < P2P_INTROS; i++) {
        const p2p_intro *x = &h->nat.intros[i];
        if (x->expire > now && memcmp(x->id, id, P2P_ID_LEN) == 0) return x;
    }
    return NULL;
}

/* Remembers that we asked `via` for an introduction to `id`. A full table forgets the ask
 * that expires first: only this node fills it. */
static void ask_add(p2p_host *h, const uint8_t id[P2P_ID_LEN], p2p_peer_handle via, uint64_t now)
{
    p2p_ask *slot = &h->nat.asks[0];
    for (size_t i = 0; i < P2P_ASKS; i++) {
        p2p_ask *x = &h->nat.asks[i];
        if (x->expire > now && x->via == via && memcmp(x->id, id, P2P_ID_LEN) == 0) {
            slot = x;
            break;
        }
        if (x->expire < slot->expire) slot = x;
    }
    memcpy(slot->id, id, P2P_ID_LEN);
    slot->via = via;
    slot->expire = now + (h->timeout > P2P_ASK_US ? h->timeout : P2P_ASK_US);
}

/* 1 when we asked `via` for `id` and have not had the answer yet; the ask is used up. */
static int ask_take(p2p_host *h, const uint8_t id[P2P_ID_LEN], p2p_peer_handle via, uint64_t now)
{
    for (size_t i = 0; i < P2P_ASKS; i++) {
        p2p_ask *x = &h->nat.asks[i];
        if (x->expire > now && x->via == via && memcmp(x->id, id, P2P_ID_LEN) == 0) {
            x->expire = 0;
            return 1;
        }
    }
    return 0;
}

static void ask(p2p_host *h, p2p_peer *via, const uint8_t id[P2P_ID_LEN], uint64_t now)
{
    ask_add(h, id, via->handle, now);
    p2p_peer_append(h, via, P2P_REC_INTRO_REQ, id, P2P_ID_LEN);
}

/* 1 when another attempt made from an offer of introducer `via` would pass the caps: one
 * introducer cannot take the room that other introducers' offers need. */
static int offer_room(const p2p_host *h, p2p_peer_handle via)
{
    size_t all = 0, mine = 0;
    for (size_t i = 0; i < h->peers.hwm; i++) {
        const p2p_peer *q = h->peers.slots[i];
        if (!q || !q->from_offer || (!q->hs && !q->dial_due)) continue;
        all++;
        mine += q->introducer == via;
    }
    return all < P2P_OFFER_ATTEMPTS && mine < P2P_OFFER_ATTEMPTS_VIA;
}

/* The introducer v offers an introduction to `id`, which asked for us. We accept by asking v
 * for `id` in turn, when our policy allows it, v has not offered too many lately, and not too
 * many attempts made from offers are running. */
static void on_offer(p2p_host *h, p2p_peer *v, const uint8_t id[P2P_ID_LEN], uint64_t now)
{
    if (p2p_policy(h, id) || v->addr.family == P2P_AF_RELAY) {
        h->stats.dropped_unsolicited++;
        return;
    }
    if (now - v->offers_since >= P2P_OFFERS_WINDOW_US || !v->offers_since) {
        v->offers_since = now ? now : 1;
        v->offers = 0;
    }
    if (v->offers >= P2P_OFFERS_PER_VIA) {
        h->stats.dropped_unsolicited++;
        return;
    }
    p2p_peer *p = connected_id(h, id);
    if (p) { /* a re-introduction: the peer lost its path to us */
        v->offers++;
        ask(h, v, id, now);
        return;
    }
    p = attempt_for(h, id);
    if (p) {
        /* Our own attempt: it takes this introducer unless it is being introduced already. */
        if (p->state != P2P_S_INIT_SENT || p->intro_state == P2P_INTRO_PUNCHING ||
            p->intro_state == P2P_INTRO_RELAYING ||
            (p->intro_state == P2P_INTRO_ASKED && p->introducer == v->handle))
            return;
    } else {
        int rc;
        if (!offer_room(h, v->handle)) {
            h->stats.dropped_unsolicited++;
            return;
        }
        /* It has no candidates until the INTRO: it sends nothing before. */
        p = p2p_attempt_new(h, NULL, 0, id, NULL, &rc);
        if (!p) return;
        p->auto_dial = 1;
        p->from_offer = 1;
    }
    v->offers++;
    p->introducer = v->handle;
    p->intro_state = P2P_INTRO_ASKED;
    ask(h, v, id, now);
}

p2p_addr p2p_nat_relay_addr(uint32_t relay_index, uint32_t channel)
{
    p2p_addr a;
    memset(&a, 0, sizeof a);
    a.family = P2P_AF_RELAY;
    p2p_put_u32(a.ip, relay_index);
    p2p_put_u32(a.ip + 4, channel);
    return a;
}

/* The session that relays a relayed session's packets, when it is up. */
static p2p_peer *relay_of(const p2p_host *h, const p2p_peer *p)
{
    if (p->addr.family != P2P_AF_RELAY) return NULL;
    p2p_peer *r = p2p_lookup_index(h, p2p_get_u32(p->addr.ip));
    return r && r->state == P2P_S_CONNECTED ? r : NULL;
}

/* An INTRO with the relay flag for an established relayed session in a hand-over, from the
 * introducer it asked: the session moves to the relay v offers at once. A relayed path is
 * proven as soon as the session with its relay is (section 8.5); the move changes the address
 * only, so nothing is lost or repeated. The upgrade probes go on (the path's schedule is the
 * session's). */
static void handover_move(p2p_host *h, p2p_peer *q, p2p_peer *v, uint32_t channel)
{
    p2p_peer *old = relay_of(h, q);
    if (old == v || v->addr.family == P2P_AF_RELAY) return;
    q->addr = p2p_nat_relay_addr(v->local_index, channel);
    q->relay_lost = 0;
    q->handover_at = 0;
    q->handover_asks = 0;
    q->handover_via = 0;
    h->stats.path_changes++;
    h->stats.relay_handovers++;
    p2p_ready(h, q);
}

static int relay_attempt(p2p_host *h, p2p_peer *p, uint64_t now);

static int on_intro(p2p_host *h, p2p_peer *v, const uint8_t *body, size_t len, uint64_t now)
{
    p2p_rd r;
    p2p_rd_init(&r, body, len);
    const uint8_t *id = p2p_rd_bytes(&r, P2P_ID_LEN);
    uint32_t channel = p2p_rd_u32(&r);
    uint8_t flags = p2p_rd_u8(&r);
    uint8_t n = p2p_rd_u8(&r);
    if (r.bad || n > P2P_CANDIDATES - 1) return -1;
    p2p_addr c[P2P_CANDIDATES - 1];
    for (uint8_t i = 0; i < n; i++)
        if (p2p_rd_addr(&r, &c[i])) return -1;
    if (p2p_rd_left(&r)) return -1;
    if (flags & FLAG_OFFER) {
        if (n || (flags & FLAG_RELAY)) return -1;
        on_offer(h, v, id, now);
        return 0;
    }
    /* Only an introduction this node asked this introducer for is acted on: an INTRO is
     * an instruction to send packets, and nobody else may give it. */
    if (!ask_take(h, id, v->handle, now)) {
        h->stats.dropped_unsolicited++;
        return 0;
    }
    /* Nobody makes this node punch towards itself or a node its policy refuses. */
    if (p2p_policy(h, id)) return 0;
    /* The candidates were learned from the network: only those this node may send to. */
    uint8_t kept = 0;
    for (uint8_t i = 0; i < n; i++)
        if (p2p_may_send_learned(h, &c[i])) c[kept++] = c[i];
    n = kept;
    p2p_intro *in = intro_slot(h, id, now);
    memcpy(in->id, id, P2P_ID_LEN);
    in->via = v->handle;
    in->channel = channel;
    in->relay_ok = (flags & FLAG_RELAY) != 0;
    in->ncand = n;
    memcpy(in->cand, c, n * sizeof *c);
    in->expire = now + P2P_INTRO_TTL_US;
    p2p_peer *q = connected_id(h, id);
    if (q) {
        /* Introduced again while connected: one of us moved, or a relay is being replaced.
         * Probe where it may be now (a relayed session also upgrades with these later). */
        /* It moves to v's relay only when it is itself in a hand-over and asked v: any peer
         * can have an offer of ours accepted and answer it with a relayed INTRO, which must
         * not pull a healthy session onto that peer. The other side follows the first packet
         * that comes through the new relay (section 8.5). */
        if (q->addr.family == P2P_AF_RELAY && (flags & FLAG_RELAY) && q->handover_at &&
            (q->relay_lost || q->stalled) && q->handover_via == v->handle)
            handover_move(h, q, v, channel);
        /* Both sides got this INTRO at about the same time: probing now punches both NATs at
         * once (a relayed session then goes direct without waiting for its upgrade timer). */
        p2p_notify_peer(h, P2P_NOTE_PROBE, q);
        return 0;
    }
    p2p_peer *p = attempt_for(h, id);
    if (!p) {
        /* We asked (an offer we accepted, whose attempt has ended since): punch too. */
        int rc;
        if (!offer_room(h, v->handle)) return 0;
        p = p2p_attempt_new(h, NULL, 0, id, NULL, &rc);
        if (!p) return 0;
        p->auto_dial = 1;
        p->from_offer = 1;
    }
    if (p->state != P2P_S_INIT_SENT) return 0;
    p->introducer = v->handle;
    /* Our UDP gets no answers (we reach the introducer over a stream): INITs to the
     * candidates would be lost at our own router, yet count against their probe allowance,
     * which the upgrade to a direct path needs once UDP is back. The relay at once; the
     * candidates stay in the introduction for the upgrade probes. */
    if (p2p_nat_udp_silent(h, now) && relay_attempt(h, p, now)) return 0;
    for (uint8_t i = 0; i < n; i++) p2p_cand_add(p->cand, &p->ncand, P2P_CANDIDATES - 1, &c[i]);
    p->intro_state = P2P_INTRO_PUNCHING;
    p->punch_until = now + P2P_PUNCH_US;
    p2p_punch(h, p);
    return 0;
}

static int on_intro_fail(p2p_host *h, p2p_peer *v, const uint8_t *body, size_t len, uint64_t now)
{
    if (len != P2P_ID_LEN + 1) return -1;
    p2p_peer *c = connected_id(h, body);
    if (c && c->handover_at && c->handover_via == v->handle) {
        c->handover_at = now; /* this one cannot: ask the next at once */
        p2p_nat_reintroduce(h, c, now);
        return 0;
    }
    p2p_peer *p = attempt_for(h, body);
    if (!p || p->introducer != v->handle || p->intro_state != P2P_INTRO_ASKED) return 0;
    if (p->auto_dial) { /* a mesh dial: it goes on trying directly */
        p->intro_state = P2P_INTRO_NONE;
        return 0;
    }
    char hex[P2P_ID_HEX_LEN + 1], via[P2P_ADDR_TEXT_MAX];
    p2p_id_to_hex(body, hex);
    p2p_addr_format(&v->addr, via, sizeof via);
    p2p_error(h, p,
              body[P2P_ID_LEN] == FAIL_SELF   ? "peer %s is the introducer %s itself"
              : body[P2P_ID_LEN] == FAIL_BUSY ? "peer %s: introducer %s is busy"
                                              : "peer %s is not registered at %s",
              hex, via);
    p2p_kill(h, p);
    return 0;
}

int p2p_nat_on_record(p2p_host *h, p2p_peer *p, uint8_t kind, const uint8_t *body, size_t len,
                      uint64_t now)
{
    switch (kind) {
    case P2P_REC_INTRO_REQ: return on_intro_req(h, p, body, len, now);
    case P2P_REC_INTRO: return on_intro(h, p, body, len, now);
    case P2P_REC_INTRO_FAIL: return on_intro_fail(h, p, body, len, now);
    case P2P_REC_PUNCH: return p2p_nat_on_punch(h, p, body, len, now);
    default: return -1;
    }
}

/* ---- asking for an introduction --------------------------------------------------------- */

/* A session to ask for an introduction: `via` when it is up, else (for mesh dials) any
 * other mesh member. */
static p2p_peer *any_member(const p2p_host *h, const uint8_t target[P2P_ID_LEN])
{
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *q = h->peers.slots[i];
        if (q && q->state == P2P_S_CONNECTED && q->peer_mesh && q->addr.family != P2P_AF_RELAY &&
            !(q->has_id && memcmp(q->id, target, P2P_ID_LEN) == 0))
            return q;
    }
    return NULL;
}

static p2p_peer *pick_introducer(const p2p_host *h, const p2p_peer *p)
{
    p2p_peer *v = p2p_lookup(h, p->introducer);
    if (v && v->state == P2P_S_CONNECTED && v->addr.family != P2P_AF_RELAY) return v;
    return p->auto_dial ? any_member(h, p->expected) : NULL;
}

static void nat_request(p2p_host *h, p2p_peer *p, uint64_t now)
{
    p2p_peer *v = pick_introducer(h, p);
    if (!v) {
        p->intro_state = P2P_INTRO_NONE;
        return;
    }
    p->introducer = v->handle;
    p->intro_state = P2P_INTRO_ASKED;
    ask(h, v, p->expected, now);
}

int p2p_nat_connect_via(p2p_host *h, const uint8_t id[P2P_ID_LEN], const p2p_addr *via,
                        p2p_peer_handle *out)
{
    p2p_peer *p = connected_id(h, id);
    if (!p) p = attempt_for(h, id);
    if (p) {
        if (out) *out = p->handle;
        return 0;
    }
    /* The session with the introducer: the one we hold, or a new one. */
    p2p_peer *v = NULL;
    for (size_t i = 0; i < h->peers.hwm && !v; i++) {
        p2p_peer *q = h->peers.slots[i];
        /* (a session that came up over the TCP fallback is the one with its udp_home) */
        if (q &&
            (p2p_addr_equal(&q->addr, via) || (q->has_udp_home && q->addr.family == P2P_AF_STREAM &&
                                               p2p_addr_equal(&q->udp_home, via))) &&
            (q->state == P2P_S_CONNECTED || (q->initiator && (q->hs || q->dial_due))))
            v = q;
    }
    int rc;
    if (!v) {
        v = p2p_attempt_new(h, via, 1, NULL, NULL, &rc);
        if (!v) return rc;
        v->auto_dial = 1;   /* its failure is reported on the attempt that needs it */
        v->app_dialled = 1; /* the application named it: not a probe (section 8.6) */
    }
    p = p2p_attempt_new(h, NULL, 0, id, NULL, &rc);
    if (!p) return rc;
    p->introducer = v->handle;
    p->intro_state = P2P_INTRO_WAIT_VIA;
    if (v->state == P2P_S_CONNECTED) nat_request(h, p, h->now);
    if (out) *out = p->handle;
    return 0;
}

/* The k-th introducer to ask for a hand-over of relayed session p: the mediators this node
 * holds direct sessions with first (the application's), then its direct mesh members; never
 * the peer itself, nor the relay being replaced. */
static p2p_peer *handover_introducer(const p2p_host *h, const p2p_peer *p, unsigned k)
{
    uint32_t old = p2p_get_u32(p->addr.ip);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < h->peers.hwm; i++) {
            p2p_peer *q = h->peers.slots[i];
            if (!q || q == p || q->state != P2P_S_CONNECTED || q->addr.family == P2P_AF_RELAY ||
                q->local_index == old || !q->has_id || q->peer_mesh != pass ||
                memcmp(q->id, p->id, P2P_ID_LEN) == 0)
                continue;
            if (!k--) return q;
        }
    }
    return NULL;
}

/* Relay hand-over: asks the next introducer for relayed session p, when one is due. */
static void handover_ask(p2p_host *h, p2p_peer *p, uint64_t now)
{
    if (!p->relay_lost && !p->stalled) { /* acknowledged again: over */
        p->handover_at = 0;
        return;
    }
    if (!p->handover_at || p->handover_at + HANDOVER_RESET_US < now) {
        p->handover_asks = 0;
        p->handover_at = now ? now : 1;
    }
    if (now < p->handover_at || p->handover_asks >= HANDOVER_MAX_ASKS) return;
    p2p_peer *v = handover_introducer(h, p, p->handover_asks);
    p->handover_asks++; /* an ask, or a turn without anyone to ask: both count */
    p->handover_at = now + HANDOVER_NEXT_US;
    if (!v) return;
    p->handover_via = v->handle;
    ask(h, v, p->id, now);
}

void p2p_nat_reintroduce(p2p_host *h, p2p_peer *p, uint64_t now)
{
    if (p->addr.family == P2P_AF_RELAY) {
        handover_ask(h, p, now);
        return;
    }
    const p2p_intro *in = p2p_nat_intro(h, p->id, now);
    p2p_peer *v = in ? p2p_lookup(h, in->via) : NULL;
    if (!v || v->state != P2P_S_CONNECTED || v == p) v = any_member(h, p->id);
    if (v) ask(h, v, p->id, now);
}

void p2p_nat_on_dial(p2p_peer *p)
{
    /* Not when an offer or an introduction for it came first: that is further along. */
    if (p->ask_at && p->intro_state == P2P_INTRO_NONE) {
        p->intro_state = P2P_INTRO_LATER;
        p->punch_until = p->ask_at;
    }
}

uint64_t p2p_nat_deadline(const p2p_peer *p)
{
    /* An established relayed session in a hand-over: the next ask. */
    if (p->state == P2P_S_CONNECTED && p->handover_at && p->handover_asks < HANDOVER_MAX_ASKS &&
        p->addr.family == P2P_AF_RELAY)
        return p->handover_at;
    if (p->initiator && p->state == P2P_S_INIT_SENT &&
        (p->intro_state == P2P_INTRO_LATER || p->intro_state == P2P_INTRO_PUNCHING))
        return p->punch_until;
    return P2P_TIME_NEVER;
}

int p2p_nat_udp_silent(const p2p_host *h, uint64_t now)
{
    if (p2p_udp_heard(h, now)) return 0;
    int stream = 0;
    for (size_t i = 0; i < h->peers.hwm; i++) {
        const p2p_peer *q = h->peers.slots[i];
        if (!q || q->state != P2P_S_CONNECTED) continue;
        if ((q->addr.family == P2P_AF_INET4 || q->addr.family == P2P_AF_INET6) && q->path_ok)
            return 0;
        if (q->addr.family == P2P_AF_STREAM && q->has_udp_home) stream = 1;
    }
    return stream;
}

/* Punching has had its time (or cannot work: our UDP is silent): the path through the
 * introducer joins the attempt's candidates, when the introduction allows relaying. Returns 1
 * when it did. */
static int relay_attempt(p2p_host *h, p2p_peer *p, uint64_t now)
{
    p->intro_state = P2P_INTRO_RELAYING;
    const p2p_intro *in = p2p_nat_intro(h, p->expected, now);
    if (!in || !in->relay_ok) return 0;
    const p2p_peer *v = p2p_lookup(h, in->via);
    if (!v || v->state != P2P_S_CONNECTED) return 0;
    p2p_addr path = p2p_nat_relay_addr(v->local_index, in->channel);
    p2p_cand_add(p->cand, &p->ncand, P2P_CANDIDATES, &path);
    p2p_punch(h, p);
    return 1;
}

void p2p_nat_punch_timer(p2p_host *h, p2p_peer *p, uint64_t now)
{
    if (p->state == P2P_S_CONNECTED) {
        if (p->handover_at && p->addr.family == P2P_AF_RELAY) handover_ask(h, p, now);
        return;
    }
    if (now < p->punch_until) return;
    if (p->intro_state == P2P_INTRO_LATER) {
        nat_request(h, p, now);
    } else if (p->intro_state == P2P_INTRO_PUNCHING) {
        relay_attempt(h, p, now);
    }
}

static void send_info(p2p_host *h, p2p_peer *p);

void p2p_nat_on_join(p2p_host *h, p2p_peer *p, uint64_t now)
{
    /* A relayed session: tell the peer our NAT's mapping (PUNCH INFO), for a birthday round. */
    if (p->addr.family == P2P_AF_RELAY && p->state == P2P_S_CONNECTED && !h->punch_off) {
        p->strategy = P2P_STRATEGY_RELAY;
        send_info(h, p);
    } else if (p->addr.family == P2P_AF_RELAY) {
        p->strategy = P2P_STRATEGY_RELAY;
    } else if (p->intro_state == P2P_INTRO_PUNCHING || p->intro_state == P2P_INTRO_RELAYING) {
        p->strategy = P2P_STRATEGY_PUNCH;
    }
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *q = h->peers.slots[i];
        if (q && q != p && q->introducer == p->handle && q->intro_state == P2P_INTRO_WAIT_VIA)
            nat_request(h, q, now);
    }
}

void p2p_nat_on_end(p2p_host *h, p2p_peer *p)
{
    p2p_nat *n = &h->nat;
    for (size_t i = 0; i < n->npairs;) {
        if (n->pairs[i].a == p->handle || n->pairs[i].b == p->handle)
            n->pairs[i] = n->pairs[--n->npairs];
        else
            i++;
    }
    for (size_t i = 0; i < P2P_PENDING; i++)
        if (n->pending[i].asker == p->handle || n->pending[i].target == p->handle)
            n->pending[i].expire = 0;
    /* A session that ran on a punch socket (birthday): the socket goes with it. */
    if (p->addr.sock) {
        p2p_io io;
        memset(&io, 0, sizeof io);
        io.kind = P2P_IO_PUNCH_CLOSE;
        io.addr.sock = p->addr.sock;
        p2p_io_push(h, &io, NULL, 0);
    }
    /* Sessions it relayed lost their relay: each asks another introducer (hand-over). */
    for (size_t i = 0; p->state != P2P_S_INIT_SENT && i < h->peers.hwm; i++) {
        p2p_peer *q = h->peers.slots[i];
        if (q && q != p && q->state == P2P_S_CONNECTED && q->addr.family == P2P_AF_RELAY &&
            p2p_get_u32(q->addr.ip) == p->local_index) {
            q->relay_lost = 1;
            handover_ask(h, q, h->now);
        }
    }
    /* Attempts that were waiting for this introducer fail with it. */
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *q = h->peers.slots[i];
        if (!q || q == p || q->introducer != p->handle || q->state == P2P_S_CONNECTED) continue;
        if (q->intro_state == P2P_INTRO_WAIT_VIA || q->intro_state == P2P_INTRO_ASKED) {
            if (q->auto_dial) {
                q->intro_state = P2P_INTRO_NONE;
                continue;
            }
            char via[P2P_ADDR_TEXT_MAX];
            p2p_addr_format(&p->addr, via, sizeof via);
            p2p_error(h, q,
                      p->state == P2P_S_CONNECTED || p->state == P2P_S_CLOSING
                          ? "introducer %s left before the introduction"
                          : "introducer %s unreachable",
                      via);
            p2p_kill(h, q);
        }
    }
}

/* ---- birthday punching: the PUNCH record (docs/PROTOCOL.md section 8.3) -------------------- */

enum { PUNCH_INFO = 1, PUNCH_READY = 2, PUNCH_DONE = 3 };

static uint16_t get_u16(const uint8_t *b)
{
    return (uint16_t)(b[0] | b[1] << 8);
}

static int easy(uint8_t mapping)
{
    return mapping == P2P_MAPPING_NONE || mapping == P2P_MAPPING_INDEPENDENT;
}

/* INFO: our NAT's mapping, on a relayed session (PROTOCOL.md 8.3 step 1). */
static void send_info(p2p_host *h, p2p_peer *p)
{
    uint8_t b[4] = {PUNCH_INFO, h->mapping, 0, 0};
    for (size_t i = 0; i < h->naddr; i++)
        if (h->addr_kind[i] == P2P_ADDR_MAPPED) b[2] |= 1; /* a port mapping */
    p2p_peer_append(h, p, P2P_REC_PUNCH, b, sizeof b);
}

/* Both mappings known on a relayed session: who opens sockets (H, the dependent side) and who
 * sprays (E), or why neither does. The round goes only to the address an introducer vouched
 * for (the first candidate of the peer's INTRO, where the introducer's session with it runs),
 * never to a port below 1024. Path runs the round (p2p_path_spray_timer). */
static void decide(p2p_host *h, p2p_peer *p, uint64_t now)
{
    uint8_t mine = h->mapping, theirs = p->peer_mapping;
    p->bday_role = P2P_BDAY_NONE;
    if (p->addr.family != P2P_AF_RELAY) return;
    if (mine == P2P_MAPPING_UNKNOWN || theirs == P2P_MAPPING_UNKNOWN ||
        (mine == P2P_MAPPING_DEPENDENT && theirs == P2P_MAPPING_DEPENDENT)) {
        p->strategy = P2P_STRATEGY_RELAY;
        return;
    }
    if (easy(mine) && easy(theirs)) {
        p->strategy = P2P_STRATEGY_PUNCH; /* punching should have worked: a firewall */
        return;
    }
    const p2p_intro *in = p2p_nat_intro(h, p->id, now);
    if (h->punch_off || !in || !in->ncand || in->cand[0].port < 1024) {
        p->strategy = P2P_STRATEGY_RELAY;
        return;
    }
    p->strategy = P2P_STRATEGY_BIRTHDAY;
    p->bday_to = in->cand[0];
    p->bday_to.sock = 0;
    p->bday_role = mine == P2P_MAPPING_DEPENDENT ? P2P_BDAY_HARD : P2P_BDAY_EASY;
    p->bday_ready = 0;
    p2p_ready(h, p); /* its path timer starts the round */
}

int p2p_nat_on_punch(p2p_host *h, p2p_peer *p, const uint8_t *body, size_t len, uint64_t now)
{
    if (len < 1) return -1;
    switch (body[0]) {
    case PUNCH_INFO:
        if (len != 4 || body[1] > P2P_MAPPING_DEPENDENT || (body[2] & ~1u) || body[3]) return -1;
        p->peer_mapping = body[1];
        if (p->addr.family == P2P_AF_RELAY) decide(h, p, now);
        return 0;
    case PUNCH_READY: {
        if (len != 12 || body[1]) return -1;
        uint16_t n = get_u16(body + 2), lo = get_u16(body + 8), hi = get_u16(body + 10);
        if (!n || n > P2P_OPENER_SOCKETS || lo < 1024 || hi < lo) return -1;
        /* Only the easy side sprays, and only when the INFOs said so: a READY otherwise is
         * not acted on. */
        if (p->bday_role != P2P_BDAY_EASY || p->addr.family != P2P_AF_RELAY) {
            h->stats.dropped_unsolicited++;
            return 0;
        }
        p->bday_n = n;
        p->bday_round = p2p_get_u32(body + 4);
        p->bday_lo = lo;
        p->bday_hi = hi;
        p->bday_ready = 1;
        p2p_ready(h, p);
        return 0;
    }
    case PUNCH_DONE:
        if (len != 6 || body[1] > 2) return -1;
        /* H: E gave up (or hit, and its next packet moves us): path closes the sockets when
         * the round ends. */
        if (p->bday_role == P2P_BDAY_HARD && p2p_get_u32(body + 2) == p->bday_round && body[1])
            p->bday_ready = 2;
        return 0;
    default: return -1;
    }
}

void p2p_nat_on_upgraded(p2p_host *h, p2p_peer *m, uint64_t now)
{
    /* Our sessions relayed by m were introduced while m knew us by a stream address only, so
     * their peers hold no UDP address of ours: m introduces us again, with the UDP address it
     * sees now, and both sides' upgrade probes can find a direct path. */
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *q = h->peers.slots[i];
        if (q && q != m && q->state == P2P_S_CONNECTED && q->has_id &&
            q->addr.family == P2P_AF_RELAY && p2p_get_u32(q->addr.ip) == m->local_index)
            ask(h, m, q->id, now);
    }
}

void p2p_nat_on_mapping(p2p_host *h, uint64_t now)
{
    (void)now;
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *q = h->peers.slots[i];
        if (q && q->state == P2P_S_CONNECTED && q->addr.family == P2P_AF_RELAY) {
            send_info(h, q);
            if (q->peer_mapping != P2P_MAPPING_UNKNOWN) decide(h, q, now);
        }
    }
}

/* ---- relaying --------------------------------------------------------------------------- */

size_t p2p_nat_relay_room(const p2p_host *h, const p2p_addr *path, size_t cap)
{
    const p2p_peer *r = p2p_lookup_index(h, p2p_get_u32(path->ip));
    if (!r || r->state != P2P_S_CONNECTED) return 0;
    /* Relayed packets are at most P2P_MAX_PACKET inside, whatever either hop has probed, so
     * the relay can pass on what it receives; wrapped, that is 1275 bytes on each hop. */
    size_t room = cap > P2P_RELAY_OVERHEAD + 2 ? cap - P2P_RELAY_OVERHEAD - 2 : 0;
    return room < P2P_MAX_PACKET ? room : P2P_MAX_PACKET;
}

/* Seals one RELAY or RELAYED frame into a packet of session r. */
static size_t seal_relay(p2p_peer *r, uint8_t type, uint32_t channel, const uint8_t *data,
                         size_t len, uint8_t *out, size_t cap, uint64_t now)
{
    uint8_t pt[P2P_PLAINTEXT_MAX];
    p2p_wr w;
    if (len > P2P_MAX_PACKET) return 0;
    p2p_wr_init(&w, pt,
                cap < P2P_MAX_PACKET_PROBED ? cap - P2P_DATA_HEADER - P2P_TAG_LEN
                                            : P2P_PLAINTEXT_MAX);
    p2p_wr_u8(&w, type);
    p2p_wr_u32(&w, channel);
    p2p_wr_varint(&w, len);
    p2p_wr_bytes(&w, data, len);
    if (w.bad) return 0;
    return p2p_peer_seal_extra(r, pt, (size_t)(w.p - pt), out, now);
}

size_t p2p_nat_wrap(p2p_host *h, const p2p_addr *path, const uint8_t *dgram, size_t len,
                    uint8_t *out, size_t cap, p2p_addr *to, p2p_peer **relay)
{
    p2p_peer *r = p2p_lookup_index(h, p2p_get_u32(path->ip));
    if (!r || r->state != P2P_S_CONNECTED || r->addr.family == P2P_AF_RELAY) return 0;
    size_t n =
        seal_relay(r, P2P_FRAME_RELAY, p2p_get_u32(path->ip + 4), dgram, len, out, cap, h->now);
    if (n) {
        *to = r->addr;
        *relay = r;
    }
    return n;
}

size_t p2p_nat_on_relay(p2p_host *h, p2p_peer *p, uint32_t channel, const uint8_t *data, size_t len,
                        uint64_t now, p2p_peer **to)
{
    p2p_nat *n = &h->nat;
    p2p_peer *q = p2p_lookup_index(h, channel);
    p2p_relay_pair *x =
        q && q->state == P2P_S_CONNECTED ? pair_find(h, p->handle, q->handle) : NULL;
    /* One datagram relayed per packet received: a packet stuffed with RELAY frames is not
     * multiplied (the relay never sends more packets on than it received). */
    if (!n->relay || !x || !p2p_guard_relay_once(h)) {
        h->stats.relay_dropped++;
        return 0;
    }
    /* One token bucket for all pairs: at most `rate` bytes a second, in bursts of a second,
     * counting what each packet costs on the wire, not only what it carries. */
    size_t cost = len + P2P_RELAY_OVERHEAD;
    uint64_t add = (now - n->refill_at) * n->rate / 1000000u;
    if (add) {
        n->tokens = n->tokens + add > n->rate ? n->rate : n->tokens + add;
        n->refill_at = now;
    }
    if (n->tokens < cost) {
        h->stats.relay_dropped++;
        return 0;
    }
    uint8_t pkt[P2P_MAX_PACKET_PROBED];
    size_t m = seal_relay(q, P2P_FRAME_RELAYED, p->local_index, data, len, pkt, sizeof pkt, now);
    if (!m) {
        h->stats.relay_dropped++;
        return 0;
    }
    n->tokens -= cost;
    x->last_used = now;
    p2p_tx_push(h, &q->addr, pkt, m);
    h->stats.relayed_packets++;
    h->stats.relayed_bytes += len;
    *to = q;
    return m;
}
