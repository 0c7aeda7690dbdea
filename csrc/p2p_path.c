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

void p2p_path_start(p2p_host *h, p2p_peer *p, uint64_t now)
{
    (void)h;
    p->path_ok = 1; /* the handshake went both ways on it */
    p->has_prev = 0;
    p->chal_at = P2P_TIME_NEVER;
    p->upgrade_at = P2P_TIME_NEVER;
    if (p->addr.family == P2P_AF_RELAY) schedule_upgrade(p, now);
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
    if (p->path_ok && p->addr.family != P2P_AF_RELAY) {
        p->prev = p->addr;
        p->has_prev = 1;
    }
    p->addr = *to;
    h->stats.path_changes++;
    p->upgrade_at = P2P_TIME_NEVER;
    p->chal_at = P2P_TIME_NEVER;
    /* A relayed path is as good as the authenticated session to the relay. */
    p->path_ok = proven || to->family == P2P_AF_RELAY;
    if (to->family == P2P_AF_RELAY) schedule_upgrade(p, now);
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
    int back = p->has_prev && p2p_addr_equal(from, &p->prev);
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

void p2p_path_on_response(p2p_host *h, p2p_peer *p, const p2p_addr *from, uint64_t data,
                          uint64_t now)
{
    if (!p->path_ok && p->chal_data && data == p->chal_data && p2p_addr_equal(from, &p->addr)) {
        p->path_ok = 1;
        p->chal_at = P2P_TIME_NEVER;
        p2p_ready(h, p);
        return;
    }
    if (p->upgrade_data && data == p->upgrade_data && from->family != P2P_AF_RELAY) {
        p->upgrade_data = 0;
        p->stalled = 0;
        if (p2p_addr_equal(from, &p->addr)) {
            p->path_ok = 1;
            return;
        }
        move_to(h, p, from, 1, now); /* a direct path answered: take it */
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
    p->upgrade_data = fresh_data(h);
    for (size_t i = 0; i < n; i++)
        if (p2p_guard_probe(h, &c[i], src[i]))
            send_path_frame(h, p, P2P_FRAME_PATH_CHALLENGE, p->upgrade_data, &c[i], now);
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
        if (p->addr.family == P2P_AF_RELAY) {
            r = P2P_PATH_PROBE;
            p->upgrade_gap *= 2;
            if (p->upgrade_gap > P2P_UPGRADE_MAX_US) p->upgrade_gap = P2P_UPGRADE_MAX_US;
            p->upgrade_at = now + p->upgrade_gap;
        } else {
            p->upgrade_at = P2P_TIME_NEVER;
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
