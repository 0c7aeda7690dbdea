/*
 * p2p_lan.c - LAN discovery beacons (design12 section 4.4): the codec, the receive checks in
 * order of cost, the replay cache, the rate and dial limits, the beacon schedule, and the
 * module glue to the host.
 */
#include <stdlib.h>
#include <string.h>

#include "p2p_lan.h"

#define MAGIC "p2pb"
#define VERSION 1
#define HDR 32 /* magic, version, flags, reserved, nonce: the AD */
#define PT_LEN (P2P_ID_LEN + 2 + 8 + P2P_SIG_LEN) /* 106 */
#define SIG_CTX "p2pnet/1 beacon"

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

void p2p_lan_key(uint8_t key[P2P_KEY_LEN], const uint8_t psk[P2P_KEY_LEN])
{
    static const char label[] = "p2pnet/1 lan";
    p2p_blake2b(key, P2P_KEY_LEN, NULL, 0, (const uint8_t *)label, sizeof label - 1, psk,
                P2P_KEY_LEN);
}

/* The message the signature covers: "p2pnet/1 beacon" || id || port || time. */
static size_t sig_msg(uint8_t *m, const uint8_t part[42])
{
    memcpy(m, SIG_CTX, sizeof SIG_CTX - 1);
    memcpy(m + sizeof SIG_CTX - 1, part, 42);
    return sizeof SIG_CTX - 1 + 42;
}

void p2p_lan_seal(uint8_t out[P2P_LAN_BEACON_LEN], const uint8_t key[P2P_KEY_LEN],
                  const uint8_t nonce[P2P_XNONCE_LEN], const uint8_t id[P2P_ID_LEN],
                  const uint8_t sk[P2P_ED_SK_LEN], uint16_t port, uint64_t unix_us)
{
    uint8_t pt[PT_LEN], m[64];
    memcpy(out, MAGIC, 4);
    out[4] = VERSION;
    out[5] = 0;
    out[6] = out[7] = 0;
    memcpy(out + 8, nonce, P2P_XNONCE_LEN);
    memcpy(pt, id, P2P_ID_LEN);
    put_le16(pt + 32, port);
    put_le64(pt + 34, unix_us);
    p2p_sign(pt + 42, m, sig_msg(m, pt), sk);
    p2p_xaead_seal(out + HDR, key, out + 8, out, HDR, pt, PT_LEN);
    p2p_wipe(pt, sizeof pt);
}

int p2p_lan_open(const uint8_t *b, size_t len, const uint8_t key[P2P_KEY_LEN], p2p_lan_beacon *bc)
{
    uint8_t pt[PT_LEN];
    memset(bc, 0, sizeof *bc);
    if (b == NULL || len != P2P_LAN_BEACON_LEN || memcmp(b, MAGIC, 4) != 0 || b[4] != VERSION)
        return -1;
    if (p2p_xaead_open(pt, key, b + 8, b, HDR, b + HDR, len - HDR) != 0) return -1;
    memcpy(bc->id, pt, P2P_ID_LEN);
    bc->port = le16(pt + 32);
    bc->unix_us = le64(pt + 34);
    memcpy(bc->sig, pt + 42, P2P_SIG_LEN);
    memcpy(bc->signed_part, pt, 42);
    p2p_wipe(pt, sizeof pt);
    return 0;
}

int p2p_lan_verify(const p2p_lan_beacon *bc)
{
    uint8_t m[64];
    return p2p_verify(bc->sig, m, sig_msg(m, bc->signed_part), bc->id) == 0 ? 0 : -1;
}

/* ---- state ------------------------------------------------------------------------------ */

void p2p_lan_state_init(p2p_lan_state *l, const uint8_t psk[P2P_KEY_LEN], uint64_t unix_us,
                        uint64_t now)
{
    memset(l, 0, sizeof *l);
    p2p_lan_key(l->key, psk);
    l->unix_base = unix_us;
    l->mono_base = now;
    l->next_beacon = now;
}

static uint64_t wall(const p2p_lan_state *l, uint64_t now)
{
    if (l->unix_base == 0) return 0;
    return l->unix_base + (now >= l->mono_base ? now - l->mono_base : 0);
}

/* Replays. Each id's newest accepted beacon time is remembered (P2P_LAN_REPLAY ids; when full,
 * the one accepted longest ago is forgotten), and a beacon not newer than it is a replay: so a
 * beacon replayed later, from anywhere, is refused for as long as its id is remembered. To make
 * the node forget an id within the +-600 s window an attacker must get 1024 other ids' beacons
 * verified, which the verification cap (8 a second) stretches over 2 minutes, and what a replay
 * can make the node do is bounded by the dial limits. 0: not seen; 1: a replay; 2: the same
 * beacon within P2P_LAN_DUP_US (its other copy: group and broadcast). */
static int replayed(const p2p_lan_state *l, const p2p_lan_beacon *bc, uint64_t now)
{
    for (uint32_t i = 0; i < l->replay_n; i++) {
        if (memcmp(l->replay[i].id, bc->id, P2P_ID_LEN) != 0) continue;
        if (bc->unix_us == l->replay[i].unix_us && now - l->replay[i].at < P2P_LAN_DUP_US) return 2;
        return bc->unix_us <= l->replay[i].unix_us ? 1 : 0;
    }
    return 0;
}

static void remember(p2p_lan_state *l, const p2p_lan_beacon *bc, uint64_t now)
{
    uint32_t slot = l->replay_n;
    for (uint32_t i = 0; i < l->replay_n; i++)
        if (memcmp(l->replay[i].id, bc->id, P2P_ID_LEN) == 0) {
            slot = i;
            break;
        }
    if (slot == P2P_LAN_REPLAY) { /* full: the id accepted longest ago goes */
        slot = 0;
        for (uint32_t i = 1; i < l->replay_n; i++)
            if (l->replay[i].at < l->replay[slot].at) slot = i;
    }
    if (slot == l->replay_n) l->replay_n++;
    memcpy(l->replay[slot].id, bc->id, P2P_ID_LEN);
    l->replay[slot].unix_us = bc->unix_us;
    l->replay[slot].at = now;
}

static void ip_only(p2p_addr *ip, const p2p_addr *from)
{
    memset(ip, 0, sizeof *ip);
    ip->family = from->family;
    memcpy(ip->ip, from->ip, sizeof ip->ip);
    ip->zone = from->family == P2P_AF_INET6 ? from->zone : 0; /* link-local: its interface */
}

/* The signature-check caps: at most 8 a second in all, one per source IP per 2 s. Takes a
 * check when there is one: returns 1, else 0. */
static int take_check(p2p_lan_state *l, const p2p_addr *from, uint64_t now)
{
    p2p_addr ip;
    ip_only(&ip, from);
    size_t slot = 0;
    for (size_t i = 0; i < P2P_LAN_SOURCES; i++) {
        if (l->sources[i].at != 0 && p2p_addr_equal(&l->sources[i].ip, &ip)) {
            if (now - l->sources[i].at < P2P_LAN_SOURCE_GAP_US) return 0;
            slot = i;
            goto found;
        }
        if (l->sources[i].at < l->sources[slot].at) slot = i;
    }
found:
    if (l->verify_window == 0 || now - l->verify_window >= 1000000) {
        l->verify_window = now ? now : 1;
        l->verify_n = 0;
    }
    if (l->verify_n >= P2P_LAN_VERIFY_PER_S) return 0;
    l->verify_n++;
    l->sources[slot].ip = ip;
    l->sources[slot].at = now ? now : 1;
    return 1;
}

static void record_peer(p2p_lan_state *l, const p2p_lan_beacon *bc, const p2p_addr *at,
                        uint64_t now)
{
    size_t slot = l->npeers;
    for (size_t i = 0; i < l->npeers; i++)
        if (memcmp(l->peers[i].id, bc->id, P2P_ID_LEN) == 0) {
            slot = i;
            break;
        }
    if (slot == P2P_LAN_PEERS) { /* full: the one heard longest ago goes */
        slot = 0;
        for (size_t i = 1; i < l->npeers; i++)
            if (l->peers[i].last < l->peers[slot].last) slot = i;
    }
    if (slot == l->npeers) l->npeers++;
    memcpy(l->peers[slot].id, bc->id, P2P_ID_LEN);
    l->peers[slot].addr = *at;
    l->peers[slot].last = now;
}

/* The dial limits: one per id per 60 s, 16 a minute in all. Takes a dial: 1, else 0. */
static int take_dial(p2p_lan_state *l, const uint8_t id[P2P_ID_LEN], uint64_t now)
{
    size_t slot = 0;
    for (size_t i = 0; i < P2P_LAN_DIALLED; i++) {
        if (l->dialled[i].at != 0 && memcmp(l->dialled[i].id, id, P2P_ID_LEN) == 0) {
            if (now - l->dialled[i].at < P2P_LAN_DIAL_GAP_US) return 0;
            slot = i;
            goto found;
        }
        if (l->dialled[i].at < l->dialled[slot].at) slot = i;
    }
found:
    if (l->dial_n == P2P_LAN_DIALS_PER_MIN && now - l->dial_times[l->dial_head] < 60000000ull)
        return 0;
    l->dial_times[l->dial_head] = now;
    l->dial_head = (l->dial_head + 1) % P2P_LAN_DIALS_PER_MIN;
    if (l->dial_n < P2P_LAN_DIALS_PER_MIN) l->dial_n++;
    memcpy(l->dialled[slot].id, id, P2P_ID_LEN);
    l->dialled[slot].at = now ? now : 1;
    return 1;
}

int p2p_lan_state_recv(p2p_lan_state *l, const p2p_lan_ctx *c, const p2p_addr *from,
                       const uint8_t *b, size_t len, uint64_t now, p2p_addr *dial_to,
                       uint8_t dial_id[P2P_ID_LEN])
{
    p2p_lan_beacon bc;
    int rc;
    l->received++;
    if (b == NULL || len != P2P_LAN_BEACON_LEN || memcmp(b, MAGIC, 4) != 0 || b[4] != VERSION) {
        rc = P2P_LAN_BAD;
        goto drop;
    }
    /* Only from the LAN: a beacon routed from elsewhere is ignored; so is one from an IPv6
     * source when the node's socket cannot send to IPv6 (bound to IPv4). */
    int scope = p2p_addr_scope(from);
    if ((scope != P2P_SCOPE_PRIVATE && scope != P2P_SCOPE_LOOPBACK) ||
        (from->family == P2P_AF_INET6 && !c->v6)) {
        rc = P2P_LAN_BAD;
        goto drop;
    }
    if (p2p_lan_open(b, len, l->key, &bc) != 0) {
        rc = P2P_LAN_NOKEY;
        goto drop;
    }
    uint64_t ours = wall(l, now);
    if (ours != 0 && (bc.unix_us + P2P_LAN_SKEW_US < ours || bc.unix_us > ours + P2P_LAN_SKEW_US)) {
        rc = P2P_LAN_STALE;
        goto drop;
    }
    int seen = replayed(l, &bc, now);
    if (seen == 2) return P2P_LAN_DUPLICATE;
    if (seen) {
        rc = P2P_LAN_REPLAYED;
        goto drop;
    }
    if (c->self_id && memcmp(bc.id, c->self_id, P2P_ID_LEN) == 0)
        return P2P_LAN_SELF; /* our own, looped back by the group: not a drop */
    if (bc.port < 1024 || (c->refused && c->refused(c->ud, bc.id))) { /* never a service port */
        rc = P2P_LAN_REFUSED;
        goto drop;
    }
    if (!take_check(l, from, now)) {
        rc = P2P_LAN_RATE;
        goto drop;
    }
    if (p2p_lan_verify(&bc) != 0) {
        rc = P2P_LAN_FORGED;
        goto drop;
    }
    l->verified++;
    remember(l, &bc, now);
    p2p_addr at;
    ip_only(&at, from);
    at.port = bc.port;
    record_peer(l, &bc, &at, now);
    /* An IPv6 link-local source keeps its zone (the scope check took none without one): the
     * dial goes out of the interface the beacon came in on. */
    if (!c->dial || (c->has_session && c->has_session(c->ud, bc.id)) || !take_dial(l, bc.id, now))
        return P2P_LAN_HEARD;
    l->dials++;
    if (dial_to) *dial_to = at;
    if (dial_id) memcpy(dial_id, bc.id, P2P_ID_LEN);
    return P2P_LAN_DIAL;
drop:
    l->dropped++;
    return rc;
}

uint64_t p2p_lan_state_deadline(const p2p_lan_state *l)
{
    return l->next_beacon;
}

int p2p_lan_state_timer(p2p_lan_state *l, uint64_t now, p2p_rng *rng, const uint8_t id[P2P_ID_LEN],
                        const uint8_t sk[P2P_ED_SK_LEN], uint16_t port,
                        uint8_t out[P2P_LAN_BEACON_LEN])
{
    if (now < l->next_beacon) return 0;
    if (port == 0) { /* the driver has not told us our address yet */
        l->next_beacon = now + 1000000;
        return 0;
    }
    uint8_t nonce[P2P_XNONCE_LEN];
    p2p_rng_bytes(rng, nonce, sizeof nonce);
    p2p_lan_seal(out, l->key, nonce, id, sk, port, wall(l, now));
    l->beacons++;
    l->sent++;
    if (l->change_pending) {
        l->change_pending = 0;
        l->last_change = now ? now : 1;
    }
    if (l->beacons == 1)
        l->next_beacon = now + 1000000;
    else if (l->beacons == 2)
        l->next_beacon = now + 2000000;
    else
        l->next_beacon =
            now + P2P_LAN_PERIOD_MIN_US + p2p_rng_below(rng, (uint32_t)P2P_LAN_PERIOD_SPAN_US + 1);
    return 1;
}

void p2p_lan_state_changed(p2p_lan_state *l, uint64_t now)
{
    uint64_t at = now;
    if (l->last_change != 0 && now - l->last_change < P2P_LAN_CHANGE_GAP_US)
        at = l->last_change + P2P_LAN_CHANGE_GAP_US;
    l->change_pending = 1;
    if (at < l->next_beacon) l->next_beacon = at;
}

size_t p2p_lan_state_peers(const p2p_lan_state *l, uint64_t now, p2p_lan_peer *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < l->npeers; i++) {
        if (now - l->peers[i].last >= P2P_LAN_PEER_TTL_US) continue;
        if (n < max && out) out[n] = l->peers[i];
        n++;
    }
    return n;
}

/* ---- the module ------------------------------------------------------------------------- */

struct p2p_lan {
    p2p_lan_state s;
    uint16_t port;  /* the LAN socket's port (discover_port) */
    int on;         /* beacons go out: started, not refused by the driver, not closed */
    p2p_addr bound; /* the node's UDP socket's bound address (LAN_START's answer); family 0:
                     * not told (the simulator) */
};

static int lan_refused(void *ud, const uint8_t id[P2P_ID_LEN])
{
    return p2p_policy((const p2p_host *)ud, id) != NULL;
}

/* A session with id, connected or being made (as the hub's lan_dial checks). */
static int lan_has_session(void *ud, const uint8_t id[P2P_ID_LEN])
{
    const p2p_host *h = ud;
    for (size_t i = 0; i < h->peers.hwm; i++) {
        const p2p_peer *q = h->peers.slots[i];
        if (!q || q->state == P2P_S_CLOSING) continue;
        if ((q->has_id && memcmp(q->id, id, P2P_ID_LEN) == 0) ||
            (q->has_expected && memcmp(q->expected, id, P2P_ID_LEN) == 0))
            return 1;
    }
    return 0;
}

int p2p_lan_init(p2p_host *h, const p2p_config *cfg, uint64_t now)
{
    h->lan = NULL;
    if (!cfg->lan_discovery) return 0;
    struct p2p_lan *l = calloc(1, sizeof *l);
    if (!l) return P2P_ERR_NOMEM;
    p2p_lan_state_init(&l->s, h->psk, cfg->unix_us, now);
    l->port = cfg->lan_port ? cfg->lan_port : P2P_LAN_PORT;
    l->on = 1;
    h->lan = l;
    p2p_io io;
    memset(&io, 0, sizeof io);
    io.kind = P2P_IO_LAN_START;
    io.id = p2p_io_id(h);
    io.n = l->port;
    if (p2p_io_push(h, &io, NULL, 0) != 0) l->on = 0;
    return 0;
}

void p2p_lan_free(p2p_host *h)
{
    if (!h->lan) return;
    p2p_wipe(h->lan, sizeof *h->lan);
    free(h->lan);
    h->lan = NULL;
}

static uint16_t own_port(const p2p_host *h, int *has_v6);

int p2p_lan_on_datagram(p2p_host *h, const p2p_addr *from, const uint8_t *b, size_t len,
                        uint64_t now)
{
    struct p2p_lan *l = h->lan;
    if (!l) return 0;
    int v6;
    (void)own_port(h, &v6);
    p2p_lan_ctx c = {h->ident.ed_pk, h->member, lan_refused, lan_has_session, h, v6};
    p2p_notice n;
    memset(&n, 0, sizeof n);
    int rc = p2p_lan_state_recv(&l->s, &c, from, b, len, now, &n.addr, n.id);
    if (rc == P2P_LAN_SELF || rc == P2P_LAN_DUPLICATE) return 1;
    if (rc < 0) {
        h->stats.lan_dropped++;
        return 1;
    }
    h->stats.lan_received++;
    if (rc == P2P_LAN_DIAL && !h->closed) {
        n.kind = P2P_NOTE_LAN_DIAL;
        p2p_notify(h, &n);
    }
    return 1;
}

void p2p_lan_on_io(p2p_host *h, const p2p_io_result *r, uint64_t now)
{
    (void)now;
    if (!h->lan || r->kind != P2P_IO_LAN_START) return;
    if (r->status != 0) {
        h->lan->on = 0; /* no LAN socket: no beacons */
        return;
    }
    if (r->local.family == P2P_AF_INET4 || r->local.family == P2P_AF_INET6)
        h->lan->bound = r->local;
}

uint64_t p2p_lan_deadline(const p2p_host *h)
{
    if (!h->lan || !h->lan->on) return P2P_TIME_NEVER;
    return p2p_lan_state_deadline(&h->lan->s);
}

/* The node's UDP port, from the local addresses the driver gave, else from the bound address
 * LAN_START's answer told (0: none yet). *has_v6: the node can be reached over IPv6 (an IPv6
 * address of its own, or a socket bound to IPv6: "::" takes both families). */
static uint16_t own_port(const p2p_host *h, int *has_v6)
{
    const struct p2p_lan *l = h->lan;
    uint16_t port = 0;
    *has_v6 = l && l->bound.family == P2P_AF_INET6;
    for (size_t i = 0; i < h->naddr; i++) {
        if (h->addr_kind[i] != P2P_ADDR_LOCAL) continue;
        if (!port) port = h->addrs[i].port;
        if (h->addrs[i].family == P2P_AF_INET6) *has_v6 = 1;
    }
    if (!port && l) port = l->bound.port;
    return port;
}

static void lan_send(p2p_host *h, const char *group, uint16_t port, const uint8_t *b)
{
    p2p_addr to;
    memset(&to, 0, sizeof to);
    if (p2p_addr_parse(&to, group) != 0) return;
    to.port = port;
    to.sock = 0; /* every interface */
    (void)p2p_lan_tx_push(h, &to, b, P2P_LAN_BEACON_LEN);
}

void p2p_lan_timer(p2p_host *h, uint64_t now)
{
    struct p2p_lan *l = h->lan;
    if (!l || !l->on || h->closed) return;
    int v6;
    uint16_t port = own_port(h, &v6);
    uint8_t b[P2P_LAN_BEACON_LEN];
    if (!p2p_lan_state_timer(&l->s, now, &h->rng, h->ident.ed_pk, h->ident.ed_sk, port, b)) return;
    lan_send(h, "239.255.112.112:1", l->port, b);
    lan_send(h, "255.255.255.255:1", l->port, b);
    if (v6) lan_send(h, "[ff02::7032:706e]:1", l->port, b);
}

void p2p_lan_network_changed(p2p_host *h, uint64_t now)
{
    if (h->lan && h->lan->on) p2p_lan_state_changed(&h->lan->s, now);
}

void p2p_lan_close(p2p_host *h, uint64_t now)
{
    (void)now;
    struct p2p_lan *l = h->lan;
    if (!l || !l->on) return;
    l->on = 0;
    p2p_io io;
    memset(&io, 0, sizeof io);
    io.kind = P2P_IO_LAN_STOP;
    io.id = p2p_io_id(h);
    io.n = l->port;
    (void)p2p_io_push(h, &io, NULL, 0);
}

size_t p2p_lan_peers(const p2p_host *h, p2p_lan_peer *out, size_t cap)
{
    if (!h->lan) return 0;
    return p2p_lan_state_peers(&h->lan->s, h->now, out, cap);
}
