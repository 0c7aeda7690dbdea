/*
 * p2p_path.c - the address a session sends to (docs/PROTOCOL.md section 8.4).
 *
 * Sessions are found by index, so a peer whose address changes (a NAT rebinding, a new
 * network) keeps its session: an authenticated, newest packet that is not a mere probe moves
 * the session to its source address. Until the new address answers a PATH_CHALLENGE, at most
 * three times the bytes received from it are sent to it, so a forged source address cannot
 * turn a node into an amplifier; if it never answers, the session goes back to the last
 * address that did.
 *
 * A relayed session also probes the peer's direct candidates now and then; a PATH_RESPONSE
 * that comes back from one of them proves a direct path, and the session moves there. The
 * session itself (keys, stream, packet numbers) is the same on every path, so moving loses
 * and repeats nothing.
 */
#include "p2p_path.h"
#include "p2p_guard.h"
#include "p2p_peer.h"

#include <stdlib.h>
#include <string.h>

#define PATH_PACKET (9 + P2P_DATA_HEADER + P2P_TAG_LEN)

/* Path choice (docs/PROTOCOL.md section 8.4): a direct session times its peer's other direct
 * addresses this long after it starts (or moves), then every P2P_UPGRADE_MAX_US while two or
 * more answer; it switches to one whose RTT is lower by PCT percent and US microseconds, at
 * most once per SWITCH. */
#define P2P_PATH_FIRST_ROUND_US 1000000
#define P2P_PATH_SWITCH_US 10000000
#define P2P_PATH_BETTER_PCT 20
#define P2P_PATH_BETTER_US 2000

static void send_path_frame(p2p_host *h, p2p_peer *p, uint8_t type, uint64_t data,
                            const p2p_addr *to, uint64_t now)
{
    uint8_t pt[9], pkt[PATH_PACKET];
    pt[0] = type;
    p2p_put_u64(pt + 1, data);
    size_t n = p2p_peer_seal_extra(p, pt, sizeof pt, pkt, now);
    if (n) p2p_tx_push(h, to, pkt, n);
}

static uint64_t fresh_data(p2p_host *h)
{
    uint64_t x = 0;
    while (!x) p2p_rng_bytes(&h->rng, &x, sizeof x);
    return x;
}

static int spray_hit(p2p_host *h, p2p_peer *p, const p2p_addr *from, uint64_t data, uint64_t now);
static void punch_adopt(p2p_host *h, p2p_peer *p, uint8_t sock);

static void schedule_upgrade(p2p_peer *p, uint64_t now)
{
    p->upgrade_gap = P2P_UPGRADE_FIRST_US;
    p->upgrade_at = now + p->upgrade_gap;
}

/* ---- path choice: every direct address tried, with its RTT ------------------------------- */

static int direct(const p2p_addr *a)
{
    return a->family == P2P_AF_INET4 || a->family == P2P_AF_INET6;
}

static p2p_path_cand *cand_find(p2p_peer *p, const p2p_addr *a)
{
    for (uint8_t i = 0; i < p->npcand; i++)
        if (p2p_addr_equal(&p->pcand[i].addr, a)) return &p->pcand[i];
    return NULL;
}

/* It answered once: a timing round in flight (PROBING) keeps that. */
static int valid(const p2p_path_cand *c)
{
    return c->state == P2P_CAND_VALID || (c->state == P2P_CAND_PROBING && c->rtt_us);
}

/* The entry of direct address a, made when missing: a full table gives up the entry of an
 * address that never answered (or else the slowest one), never the session's own. */
static p2p_path_cand *cand_add(p2p_peer *p, const p2p_addr *a)
{
    p2p_path_cand *c = cand_find(p, a);
    if (c || !direct(a)) return c;
    if (p->npcand < P2P_PATH_CANDS) {
        c = &p->pcand[p->npcand++];
    } else {
        for (uint8_t i = 0; i < p->npcand; i++) {
            p2p_path_cand *x = &p->pcand[i];
            if (p2p_addr_equal(&x->addr, &p->addr)) continue;
            if (!c || (valid(c) && (!valid(x) || x->rtt_us > c->rtt_us))) c = x;
        }
        if (!c) return NULL;
    }
    memset(c, 0, sizeof *c);
    c->addr = *a;
    /* what it is, as far as its address tells: the peer's LAN, or where a NAT shows it */
    c->kind = p2p_addr_scope(a) == P2P_SCOPE_PUBLIC ? P2P_ADDR_REFLEXIVE : P2P_ADDR_LOCAL;
    c->state = P2P_CAND_UNTRIED;
    return c;
}

/* The challenge data of a timing round: 32 random bits, then the low 32 bits of the time it
 * went out (every challenge of the round carries the same), so that an answer gives its RTT
 * without a table of send times. The answer is authenticated by the session's keys, so the
 * data need not be secret from anyone but an off-path guesser. */
static uint64_t round_data(p2p_host *h, uint64_t now)
{
    uint32_t r = 0;
    while (!r) p2p_rng_bytes(&h->rng, &r, sizeof r);
    return (uint64_t)r << 32 | (uint32_t)now;
}

/* An answer from c's address to this round's challenge: an RTT sample. Samples are rare (one
 * per round), so each weighs half: a path that got faster wins within a round or two, and one
 * odd sample alone seldom crosses the hysteresis. */
static void cand_sample(p2p_path_cand *c, uint64_t data, uint64_t now)
{
    uint64_t rtt = (uint32_t)((uint32_t)now - (uint32_t)data);
    if (!rtt) rtt = 1;
    c->rtt_us = c->rtt_us ? (c->rtt_us + rtt) / 2 : rtt;
    c->state = P2P_CAND_VALID;
}

void p2p_path_start(p2p_host *h, p2p_peer *p, uint64_t now)
{
    (void)h;
    p->path_ok = 1; /* the handshake went both ways on it */
    p->has_prev = 0;
    p->chal_at = P2P_TIME_NEVER;
    p->upgrade_at = P2P_TIME_NEVER;
    p->npcand = 0;
    p->path_switch_at = 0;
    if (!direct(&p->addr)) {
        /* relayed, or on a stream: look for a direct UDP path on the upgrade schedule */
        schedule_upgrade(p, now);
    } else {
        p2p_path_cand *c = cand_add(p, &p->addr);
        if (c) c->state = P2P_CAND_VALID;
        /* Another direct address may be faster (a LAN, IPv6): they are timed once soon. For a
         * direct session upgrade_at is the next timing round. */
        p->upgrade_at = now + P2P_PATH_FIRST_ROUND_US;
    }
}

/* Bytes that may go to the session's address now: all of them once it is proven, else at
 * most 3 x what came from it, less what was sent. */
static size_t budget(const p2p_peer *p, size_t want)
{
    if (p->path_ok) return want;
    uint64_t allowed = P2P_AMPLIFICATION * p->amp_recv;
    allowed = allowed > p->amp_sent ? allowed - p->amp_sent : 0;
    return allowed < want ? (size_t)allowed : want;
}

static void challenge(p2p_host *h, p2p_peer *p, uint64_t now)
{
    uint64_t wait = (uint64_t)P2P_CHALLENGE_US << p->chal_tries;
    p->chal_tries++;
    p->chal_at = now + wait;
    /* A challenge is within the anti-amplification budget too: one that does not fit now is
     * skipped, and the next try may fit once the peer has sent more from there. */
    if (budget(p, PATH_PACKET) < PATH_PACKET) return;
    p2p_path_sent(p, PATH_PACKET);
    send_path_frame(h, p, P2P_FRAME_PATH_CHALLENGE, p->chal_data, &p->addr, now);
}

static void move_to(p2p_host *h, p2p_peer *p, const p2p_addr *to, int proven, uint64_t now)
{
    if (p->path_ok && direct(&p->addr)) {
        p->prev = p->addr;
        p->has_prev = 1;
    }
    /* a relayed session that followed its peer to another relay (a hand-over, section 8.5) */
    if (p->addr.family == P2P_AF_RELAY && to->family == P2P_AF_RELAY) h->stats.relay_handovers++;
    p->addr = *to;
    h->stats.path_changes++;
    if (to->sock) punch_adopt(h, p, to->sock);
    p2p_path_cand *c = proven ? cand_add(p, to) : NULL;
    if (c && !valid(c)) c->state = P2P_CAND_VALID;
    p->chal_at = P2P_TIME_NEVER;
    /* A relayed path is as good as the authenticated session to the relay; a stream, as the
     * TCP connection (its handshake proved the return route). */
    p->path_ok = proven || !direct(to);
    if (!direct(to))
        schedule_upgrade(p, now);
    else /* a new direct path: the others are timed against it soon */
        p->upgrade_at = now + P2P_PATH_FIRST_ROUND_US;
    if (!p->path_ok) {
        p->amp_recv = 0;
        p->amp_sent = 0;
        p->chal_data = fresh_data(h);
        p->chal_tries = 0;
        challenge(h, p, now);
    }
    p2p_ready(h, p);
}

void p2p_path_on_packet(p2p_host *h, p2p_peer *p, const p2p_addr *from, size_t len, int probing,
                        int newest, uint64_t now)
{
    if (p2p_addr_equal(from, &p->addr)) {
        if (!p->path_ok) {
            p->amp_recv += len;
            p2p_ready(h, p); /* the budget grew */
        }
        return;
    }
    /* A probe, or a late packet, says nothing about where the peer is now. */
    if (probing || !newest) return;
    /* issue 12: a session that moved off a stream onto a proven UDP path stays there while
     * UDP works (an authenticated datagram within P2P_FALLBACK_AFTER_US): the peer's packets
     * still in the stream's pipe (sent before it followed) would only move it back, and the
     * next challenge forth again, each move a re-introduction (section 8.8). Once UDP has gone
     * silent, the peer's packets over the stream bring the session back to it. */
    if (from->family == P2P_AF_STREAM && direct(&p->addr) && p->path_ok && p2p_udp_heard(h, now))
        return;
    const p2p_path_cand *c = cand_find(p, from);
    int back = (p->has_prev && p2p_addr_equal(from, &p->prev)) || (c && valid(c));
    move_to(h, p, from, back, now);
    if (!p->path_ok) p->amp_recv = len;
}

void p2p_path_on_challenge(p2p_host *h, p2p_peer *p, const p2p_addr *from, uint64_t data,
                           uint64_t now)
{
    /* One response per received packet, however many challenges it holds: a packet stuffed
     * with them from a forged source must not be multiplied. The guard keeps the answer within
     * 3 x what came from that address besides. Answered on the path it came by: that is what
     * proves the path to the prober. */
    if (!p2p_guard_answer_once(h)) return;
    send_path_frame(h, p, P2P_FRAME_PATH_RESPONSE, data, from, now);
}

/* Among the validated direct addresses, the one with the lowest smoothed RTT, when it beats the
 * current one by at least P2P_PATH_BETTER_PCT percent and P2P_PATH_BETTER_US, and the last
 * switch is P2P_PATH_SWITCH_US old (hysteresis: two paths of about the same RTT do not make
 * the session flap). A switch is a move to a proven address: nothing is lost. */
static void choose(p2p_host *h, p2p_peer *p, uint64_t now)
{
    const p2p_path_cand *cur = cand_find(p, &p->addr), *best = NULL;
    if (!cur || !cur->rtt_us || !p->path_ok) return;
    for (uint8_t i = 0; i < p->npcand; i++) {
        const p2p_path_cand *x = &p->pcand[i];
        if (valid(x) && x->rtt_us && (!best || x->rtt_us < best->rtt_us)) best = x;
    }
    if (!best || best == cur) return;
    if (best->rtt_us * 100 > cur->rtt_us * (100 - P2P_PATH_BETTER_PCT) ||
        cur->rtt_us - best->rtt_us < P2P_PATH_BETTER_US)
        return;
    if (p->path_switch_at && now - p->path_switch_at < P2P_PATH_SWITCH_US) return;
    p->path_switch_at = now;
    p2p_addr to = best->addr;
    move_to(h, p, &to, 1, now);
}

void p2p_path_on_response(p2p_host *h, p2p_peer *p, const p2p_addr *from, uint64_t data,
                          uint64_t now)
{
    if (!p->path_ok && p->chal_data && data == p->chal_data && p2p_addr_equal(from, &p->addr)) {
        p->path_ok = 1;
        p->chal_at = P2P_TIME_NEVER;
        p2p_ready(h, p);
        return;
    }
    if (spray_hit(h, p, from, data, now)) return;
    if (p->upgrade_data && data == p->upgrade_data && direct(from)) {
        p2p_path_cand *c = cand_find(p, from);
        if (!c || c->state != P2P_CAND_PROBING) return; /* not asked, or answered already */
        cand_sample(c, data, now);
        p->stalled = 0;
        if (p2p_addr_equal(from, &p->addr)) {
            p->path_ok = 1;
        } else if (!direct(&p->addr)) {
            move_to(h, p, from, 1, now); /* a direct path answered: take it */
            return;
        } else if (p->upgrade_at == P2P_TIME_NEVER) {
            /* a second direct path answered: they are timed again every P2P_UPGRADE_MAX_US */
            p->upgrade_at = now + P2P_UPGRADE_MAX_US;
        }
        choose(h, p, now);
    }
}

/* ---- birthday punching: punch sockets (H) and the spray (E), docs/PROTOCOL.md section 8.3 -- */

#define BDAY_SOCKETS 255        /* punch sockets H asks for */
#define BDAY_RATE_US 5000       /* E: one probe every 5 ms (200 a second) ... */
#define BDAY_PROBES 1024        /* ... at most this many ... */
#define BDAY_SPRAY_US 6000000   /* ... for at most this long */
#define BDAY_LATE_US 1000000    /* answers still taken this long after the last */
#define BDAY_OPENER2_US 3000000 /* H: the second opener from each socket */
#define BDAY_ROUND_US 12000000  /* H: the sockets of a round without a hit close */
#define BDAY_PORT_LO 1024       /* H's NAT port range when it knows no better */
#define BDAY_PORT_HI 65535

/* One round at a time per node (h->punch, one allocation, freed with the host). */
struct p2p_punch {
    p2p_peer_handle peer; /* the session of the round; 0: none */
    uint8_t role;         /* P2P_BDAY_* */
    uint8_t state;        /* H: 1 sockets asked, 2 openers out; E: 1 spraying, 2 over */
    uint32_t round;
    uint64_t next_at, end_at; /* H: second opener, close; E: next probe, end of the spray */
    uint16_t nsocks, hit;     /* H: the sockets we got; the one a probe hit (0: none) */
    uint8_t socks[BDAY_SOCKETS];
    p2p_addr target; /* E: H's IP; its port is the one not to spray (known) */
    uint8_t key[32]; /* E: the round's key for the probes' challenge data */
    uint32_t lo, range, mul, add, idx, sent;
};

static struct p2p_punch *punch_of(const p2p_host *h, const p2p_peer *p)
{
    return h->punch && h->punch->peer == p->handle ? h->punch : NULL;
}

/* E's challenge data for the probe to port q: BLAKE2b-64 keyed by the round's key over
 * round || q, so an answer from H_ip:q is checked by recomputing it (nothing stored per
 * probe). */
static uint64_t spray_data(const struct p2p_punch *x, uint16_t q)
{
    uint8_t in[6], out[16];
    p2p_put_u32(in, x->round);
    in[4] = (uint8_t)q;
    in[5] = (uint8_t)(q >> 8);
    p2p_blake2b(out, sizeof out, x->key, sizeof x->key, in, sizeof in, NULL, 0);
    uint64_t d = 0;
    memcpy(&d, out, sizeof d);
    return d ? d : 1;
}

/* Asks the driver to close the round's punch sockets but `keep` (0: all, in one request).
 * Returns 1 when every request is queued; the io queue is bounded, so what does not fit now
 * goes at the next timer (the driver drains the queue after every input). */
static int punch_close(p2p_host *h, struct p2p_punch *x, uint8_t keep)
{
    p2p_io io;
    memset(&io, 0, sizeof io);
    io.kind = P2P_IO_PUNCH_CLOSE;
    if (!keep) { /* sock 0: all of them */
        if (x->nsocks && p2p_io_push(h, &io, NULL, 0)) return 0;
        x->nsocks = 0;
        return 1;
    }
    while (x->nsocks) {
        uint8_t s = x->socks[x->nsocks - 1];
        if (s != keep) {
            io.addr.sock = s;
            if (p2p_io_push(h, &io, NULL, 0)) return 0;
        }
        x->nsocks--;
    }
    return 1;
}

/* The round ends: E stops spraying (result: PUNCH DONE's code), H closes its sockets (but the
 * one a probe hit). */
static void punch_end(p2p_host *h, p2p_peer *p, struct p2p_punch *x, uint8_t result)
{
    if (x->role == P2P_BDAY_EASY) {
        p2p_guard_spray_end(h);
        if (p) {
            uint8_t b[6] = {3, result, 0, 0, 0, 0};
            p2p_put_u32(b + 2, x->round);
            p2p_peer_append(h, p, P2P_REC_PUNCH, b, sizeof b);
        }
    } else if (!punch_close(h, x, x->hit)) {
        x->state = 3; /* closing: the rest at the next timer */
        x->next_at = h->now + 1000;
        if (p) {
            p->bday_role = P2P_BDAY_NONE;
            p2p_ready(h, p); /* its deadline changed */
        }
        return;
    }
    if (p) p->bday_role = P2P_BDAY_NONE;
    memset(x, 0, sizeof *x);
}

/* A round whose session is gone is over. Returns the node's round slot when it is free. */
static struct p2p_punch *punch_slot(p2p_host *h)
{
    if (!h->punch) {
        h->punch = calloc(1, sizeof *h->punch);
        return h->punch;
    }
    struct p2p_punch *x = h->punch;
    if (x->peer) {
        p2p_peer *q = p2p_lookup(h, x->peer);
        if (q && q->state == P2P_S_CONNECTED) return NULL;
        if (x->state == 3) x->hit = 0; /* its session is gone: close them all */
        punch_end(h, NULL, x, 2);
        if (x->peer) return NULL;
    }
    return x;
}

static uint32_t gcd(uint32_t a, uint32_t b)
{
    while (b) {
        uint32_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static void start_round(p2p_host *h, p2p_peer *p, uint64_t now)
{
    struct p2p_punch *x = punch_slot(h);
    if (!x) return; /* another round runs: this one waits for it */
    if (p->bday_role == P2P_BDAY_HARD) {
        /* H: sockets, each of which sends openers to E's vouched address */
        if (p2p_guard_opener_begin(h, &p->bday_to, BDAY_SOCKETS, now)) {
            p->bday_role = P2P_BDAY_NONE;
            p->strategy = P2P_STRATEGY_RELAY;
            return;
        }
        memset(x, 0, sizeof *x);
        x->peer = p->handle;
        x->role = P2P_BDAY_HARD;
        p2p_rng_bytes(&h->rng, &x->round, sizeof x->round);
        p->bday_round = x->round;
        p2p_io io;
        memset(&io, 0, sizeof io);
        io.kind = P2P_IO_PUNCH_OPEN;
        io.id = x->round;
        io.n = BDAY_SOCKETS;
        if (p2p_io_push(h, &io, NULL, 0)) {
            memset(x, 0, sizeof *x);
            p->bday_role = P2P_BDAY_NONE;
            return;
        }
        x->state = 1;
        x->end_at = now + BDAY_ROUND_US;
        x->next_at = P2P_TIME_NEVER;
        h->stats.punch_rounds++;
        return;
    }
    /* E: READY came: spray H's vouched IP, at most once per IP per 10 minutes (guard) */
    p2p_addr ip = p->bday_to;
    ip.port = 0;
    if (p2p_guard_spray_begin(h, &ip, now)) {
        uint8_t b[6] = {3, 2, 0, 0, 0, 0};
        p2p_put_u32(b + 2, p->bday_round);
        p2p_peer_append(h, p, P2P_REC_PUNCH, b, sizeof b);
        p->bday_role = P2P_BDAY_NONE;
        p->strategy = P2P_STRATEGY_RELAY;
        return;
    }
    memset(x, 0, sizeof *x);
    x->peer = p->handle;
    x->role = P2P_BDAY_EASY;
    x->state = 1;
    x->round = p->bday_round;
    x->target = p->bday_to;
    p2p_rng_bytes(&h->rng, x->key, sizeof x->key);
    /* ports without repetition: q = lo + (mul * i + add) mod range, mul coprime with range */
    x->lo = p->bday_lo;
    x->range = (uint32_t)p->bday_hi - p->bday_lo + 1;
    do {
        p2p_rng_bytes(&h->rng, &x->mul, sizeof x->mul);
        x->mul = x->mul % x->range;
    } while (x->range > 1 && (!x->mul || gcd(x->mul, x->range) != 1));
    p2p_rng_bytes(&h->rng, &x->add, sizeof x->add);
    x->add %= x->range;
    x->next_at = now;
    x->end_at = now + BDAY_SPRAY_US;
    /* the node's punch_rounds and punch_probes of a spray are counted by the guard
     * (p2p_guard_spray_begin, and each probe it lets through) */
}

/* H: each punch socket sends an opener (a PATH_CHALLENGE of this session, fresh data) to E. */
static void send_openers(p2p_host *h, p2p_peer *p, struct p2p_punch *x, uint64_t now)
{
    for (uint16_t i = 0; i < x->nsocks; i++) {
        p2p_addr to = p->bday_to;
        to.sock = x->socks[i];
        send_path_frame(h, p, P2P_FRAME_PATH_CHALLENGE, fresh_data(h), &to, now);
    }
}

void p2p_path_on_io(p2p_host *h, const p2p_io_result *r, uint64_t now)
{
    struct p2p_punch *x = h->punch;
    if (r->kind != P2P_IO_PUNCH_OPEN || !x || x->role != P2P_BDAY_HARD || x->state != 1 ||
        r->id != x->round)
        return;
    p2p_peer *p = p2p_lookup(h, x->peer);
    uint16_t n = r->status ? 0 : r->n > BDAY_SOCKETS ? BDAY_SOCKETS : r->n;
    memcpy(x->socks, r->socks, n);
    x->nsocks = n;
    if (!p || p->state != P2P_S_CONNECTED || !n) {
        punch_end(h, p, x, 2);
        return;
    }
    send_openers(h, p, x, now);
    /* READY: the openers are out, E may spray */
    uint8_t b[12] = {2, 0};
    b[2] = (uint8_t)n;
    b[3] = (uint8_t)(n >> 8);
    p2p_put_u32(b + 4, x->round);
    b[8] = (uint8_t)BDAY_PORT_LO;
    b[9] = (uint8_t)(BDAY_PORT_LO >> 8);
    b[10] = (uint8_t)BDAY_PORT_HI;
    b[11] = (uint8_t)(BDAY_PORT_HI >> 8);
    p2p_peer_append(h, p, P2P_REC_PUNCH, b, sizeof b);
    x->state = 2;
    x->next_at = now + BDAY_OPENER2_US;
    p2p_ready(h, p);
}

uint64_t p2p_path_spray_deadline(const p2p_peer *p)
{
    const p2p_host *h = p->host;
    const struct p2p_punch *x = punch_of(h, p);
    if (!x) {
        /* a round to start: H at once, E once READY came */
        if (p->state == P2P_S_CONNECTED && p->addr.family == P2P_AF_RELAY &&
            (p->bday_role == P2P_BDAY_HARD || (p->bday_role == P2P_BDAY_EASY && p->bday_ready)) &&
            (!h->punch || !h->punch->peer))
            return h->now;
        return P2P_TIME_NEVER;
    }
    if (x->state == 3) return x->next_at; /* sockets still to close */
    uint64_t d = x->end_at + (x->role == P2P_BDAY_EASY ? BDAY_LATE_US : 0);
    if (x->hit || (x->role == P2P_BDAY_EASY && x->state != 1)) return d;
    return x->next_at < d ? x->next_at : d;
}

void p2p_path_spray_timer(p2p_host *h, p2p_peer *p, uint64_t now)
{
    struct p2p_punch *x = punch_of(h, p);
    if (!x) {
        if (p2p_path_spray_deadline(p) <= now) start_round(h, p, now);
        x = punch_of(h, p);
        if (!x) return;
    }
    if (x->role == P2P_BDAY_HARD) {
        if (x->state == 3) {
            if (punch_close(h, x, x->hit))
                memset(x, 0, sizeof *x);
            else
                x->next_at = now + 1000;
            return;
        }
        if (x->state == 2 && x->next_at <= now) {
            x->next_at = P2P_TIME_NEVER;
            if (!x->hit && p->bday_ready != 2) send_openers(h, p, x, now);
        }
        if (x->end_at <= now || (p->bday_ready == 2 && !x->hit)) punch_end(h, p, x, 1);
        return;
    }
    /* E: the paced spray */
    while (x->state == 1 && x->next_at <= now) {
        if (x->sent >= BDAY_PROBES || now >= x->end_at || x->idx >= x->range) {
            x->state = 2;
            break;
        }
        uint16_t q = (uint16_t)(x->lo + ((uint64_t)x->mul * x->idx + x->add) % x->range);
        x->idx++;
        if (q < 1024 || q == x->target.port) continue; /* the port the introducer sees */
        p2p_addr to = x->target;
        to.port = q;
        to.sock = 0;
        send_path_frame(h, p, P2P_FRAME_PATH_CHALLENGE, spray_data(x, q), &to, now);
        x->sent++;
        p->punch_probes++;
        x->next_at += BDAY_RATE_US;
    }
    if (x->state == 2 && now >= x->end_at + BDAY_LATE_US) punch_end(h, p, x, 1);
}

/* E: a PATH_RESPONSE from H's IP that answers a spray probe: the path to it works both ways.
 * Returns 1 when it was one (the session moved there). */
static int spray_hit(p2p_host *h, p2p_peer *p, const p2p_addr *from, uint64_t data, uint64_t now)
{
    struct p2p_punch *x = punch_of(h, p);
    if (!x || x->role != P2P_BDAY_EASY || x->hit || from->sock ||
        from->family != x->target.family ||
        memcmp(from->ip, x->target.ip, from->family == P2P_AF_INET4 ? 4 : 16) != 0 ||
        data != spray_data(x, from->port))
        return 0;
    x->hit = 1;
    h->stats.punch_hits++;
    p->stalled = 0;
    move_to(h, p, from, 1, now);
    punch_end(h, p, x, 0);
    return 1;
}

/* H: the session moved onto punch socket `sock` (E's packets came through it). */
static void punch_adopt(p2p_host *h, p2p_peer *p, uint8_t sock)
{
    struct p2p_punch *x = punch_of(h, p);
    if (!x || x->role != P2P_BDAY_HARD || x->hit) return;
    x->hit = sock;
    h->stats.punch_hits++;
    punch_end(h, p, x, 0); /* closes the others, keeps this one */
}

size_t p2p_path_room(const p2p_peer *p, size_t cap)
{
    size_t room = budget(p, cap);
    return room < P2P_MAX_PACKET ? 0 : room; /* wait for the peer to prove its address */
}

void p2p_path_sent(p2p_peer *p, size_t n)
{
    if (!p->path_ok) p->amp_sent += n;
}

uint64_t p2p_path_deadline(const p2p_peer *p)
{
    uint64_t d = p->chal_at < p->upgrade_at ? p->chal_at : p->upgrade_at;
    uint64_t s = p->bday_role || punch_of(p->host, p) ? p2p_path_spray_deadline(p) : P2P_TIME_NEVER;
    return s < d ? s : d;
}

/* Sends a challenge to every direct address the peer may have (gathered by the host: those an
 * introducer gave, those it advertised in its handshake, and those in its member record). All
 * of them were learned from the network, so each is a probe the guard must allow (section
 * 8.6): at most P2P_GUARD_PROBES a minute to an address that never answered. */
void p2p_path_probe(p2p_host *h, p2p_peer *p, const p2p_addr *c, const p2p_peer_handle *src,
                    size_t n, uint64_t now)
{
    p->upgrade_data = round_data(h, now);
    /* the last round's silent ones failed; the answered ones stay valid */
    for (uint8_t i = 0; i < p->npcand; i++)
        if (p->pcand[i].state == P2P_CAND_PROBING)
            p->pcand[i].state = p->pcand[i].rtt_us ? P2P_CAND_VALID : P2P_CAND_FAILED;
    size_t sent = 0;
    /* A session on a stream keeps the UDP address it was dialled at (design 4.3): that first.
     * The application gave it (the mediator it connected to): it is not a learned address,
     * but it goes through the guard's probe allowance all the same. */
    if (p->addr.family == P2P_AF_STREAM && p->has_udp_home && direct(&p->udp_home) &&
        p2p_guard_probe(h, &p->udp_home, p->handle)) {
        p2p_path_cand *x = cand_add(p, &p->udp_home);
        if (x) x->state = P2P_CAND_PROBING;
        send_path_frame(h, p, P2P_FRAME_PATH_CHALLENGE, p->upgrade_data, &p->udp_home, now);
        sent++;
    }
    for (size_t i = 0; i < n; i++) {
        if (p2p_addr_equal(&c[i], &p->addr) || !direct(&c[i])) continue;
        if (p->addr.family == P2P_AF_STREAM && p->has_udp_home &&
            p2p_addr_equal(&c[i], &p->udp_home))
            continue;
        if (!p2p_guard_probe(h, &c[i], src[i])) continue;
        p2p_path_cand *x = cand_add(p, &c[i]);
        if (x) x->state = P2P_CAND_PROBING;
        send_path_frame(h, p, P2P_FRAME_PATH_CHALLENGE, p->upgrade_data, &c[i], now);
        sent++;
    }
    /* A direct session times its own path in the same round, so that the RTTs compare. */
    if (sent && direct(&p->addr) && p->path_ok) {
        p2p_path_cand *x = cand_add(p, &p->addr);
        if (x) x->state = P2P_CAND_PROBING;
        send_path_frame(h, p, P2P_FRAME_PATH_CHALLENGE, p->upgrade_data, &p->addr, now);
    }
}

void p2p_path_retry(p2p_peer *p, uint64_t now)
{
    if (!direct(&p->addr)) schedule_upgrade(p, now);
}

int p2p_path_on_timeout(p2p_host *h, p2p_peer *p, uint64_t now)
{
    int r = 0;
    if ((p->bday_role || punch_of(h, p)) && p2p_path_spray_deadline(p) <= now)
        p2p_path_spray_timer(h, p, now);
    if (p->chal_at <= now) {
        if (p->chal_tries < P2P_CHALLENGE_TRIES) {
            challenge(h, p, now);
        } else {
            p->chal_at = P2P_TIME_NEVER;
            if (p->has_prev) { /* it never answered there: go back */
                p->addr = p->prev;
                p->path_ok = 1;
                p->has_prev = 0;
                h->stats.path_changes++;
            }
        }
    }
    if (p->upgrade_at <= now) {
        r = P2P_PATH_PROBE;
        if (!direct(&p->addr)) {
            /* relayed or on a stream: 1, 2, 4, 8, 16 s, then every 30 s */
            p->upgrade_gap *= 2;
            if (p->upgrade_gap > P2P_UPGRADE_MAX_US) p->upgrade_gap = P2P_UPGRADE_MAX_US;
            p->upgrade_at = now + p->upgrade_gap;
        } else {
            /* direct: a timing round; again in P2P_UPGRADE_MAX_US while two paths answer */
            uint8_t ok = 0;
            for (uint8_t i = 0; i < p->npcand; i++) ok += valid(&p->pcand[i]);
            p->upgrade_at = ok > 1 ? now + P2P_UPGRADE_MAX_US : P2P_TIME_NEVER;
        }
    }
    return r;
}

int p2p_path_stalled(p2p_peer *p)
{
    /* Nothing acknowledged for three probe timeouts on a direct path: the peer may have
     * moved behind a NAT that now filters us (both ends NATed, one rebound). An introducer is
     * asked to tell both sides where the other is now; both then probe. */
    if (p->addr.family == P2P_AF_RELAY) {
        /* A relayed path that stalls: the relay may be gone. NAT asks other introducers for
         * a new relay at its own pace (relay hand-over), so every stalled timeout is passed
         * on. */
        p->stalled = 1;
        return 1;
    }
    if (p->stalled) return 0;
    p->stalled = 1;
    return 1;
}
