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
    p->addr = *to;
    h->stats.path_changes++;
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
    return p->chal_at < p->upgrade_at ? p->chal_at : p->upgrade_at;
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

int p2p_path_on_timeout(p2p_host *h, p2p_peer *p, uint64_t now)
{
    int r = 0;
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
