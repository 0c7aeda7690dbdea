/* attack.h - the attacker harness of the adversarial tests (tests/test_attack_*.c).
 *
 * An in-memory network of real hosts on a virtual clock. Any host can play the attacker: it
 * completes honest handshakes, then abuses its sessions through the core's internals (any
 * record on the stream, any frames sealed with the session's keys, from any source address it
 * claims), replays what it captured, and injects raw datagrams from forged sources. Addresses
 * that belong to no host are victims: what the hosts send there is tallied and lost.
 *
 * Every test asserts figures from the tallies (bytes a host sent to an address against bytes
 * it received from it), from p2p_stats (memory held, work counters, drops by kind), and that
 * an honest peer can still join while the attack runs.
 */
#ifndef P2P_ATTACK_H
#define P2P_ATTACK_H

#include "t.h"
#include "../csrc/p2p_host.h"

#include <stdlib.h>
#include <string.h>

#define AN_MAX 32
#define AN_QCAP (1u << 17)
#define AN_TALLY 8192
#define AN_CAPTURE 64
#define AN_EPOCH_US UINT64_C(1800000000000000)

typedef struct an_pkt {
    p2p_addr from, to;
    uint64_t at;
    size_t len;
    uint8_t *data;
} an_pkt;

/* Traffic between host `node` and address `peer`. */
typedef struct an_tally {
    int node;
    p2p_addr peer;
    uint64_t sent_bytes, sent_pkts, recv_bytes, recv_pkts;
} an_tally;

typedef struct an_node {
    p2p_host *h;
    p2p_identity id;
    p2p_addr addr;
    int joins, leaves, errors, msgs, broadcasts, datagrams, replies, requests;
    char err[256];
} an_node;

struct anet;
typedef void (*an_event_fn)(struct anet *net, int node, const p2p_event *ev);
/* Returns 0 to lose the datagram on the way (loss, blackholes, firewalls). It may change the
 * datagram's bytes (corruption, within len) or its addresses. */
typedef int (*an_filter_fn)(struct anet *net, an_pkt *pkt);

typedef struct anet {
    an_node n[AN_MAX];
    int nn;
    /* a host's public address as others see it, when set (a NAT that rebinds): its datagrams
     * leave from `nat`, and datagrams to `nat` reach it */
    int has_nat[AN_MAX];
    p2p_addr nat[AN_MAX];
    an_pkt *q; /* FIFO ring: one latency for all, so delivery is in order */
    size_t qhead, qlen;
    uint64_t now, latency;
    uint64_t lost; /* datagrams to addresses of no host, or filtered */
    an_tally t[AN_TALLY];
    size_t nt;
    an_event_fn on_event; /* called for every event after the counters; may be NULL */
    an_filter_fn filter;
    void *ud;
    /* capture: packets of type cap_type sent by host cap_node (-1: off) */
    int cap_node;
    uint8_t cap_type;
    int ncap;
    size_t cap_len[AN_CAPTURE];
    p2p_addr cap_to[AN_CAPTURE];
    uint8_t cap[AN_CAPTURE][P2P_MAX_PACKET];
} anet;

static inline p2p_addr an_addr(const char *text)
{
    p2p_addr a;
    memset(&a, 0, sizeof a);
    if (p2p_addr_parse(&a, text)) {
        fprintf(stderr, "bad address %s\n", text);
        abort();
    }
    return a;
}

static inline void an_init(anet *net, uint64_t latency_us)
{
    memset(net, 0, sizeof *net);
    net->q = calloc(AN_QCAP, sizeof *net->q);
    net->latency = latency_us;
    net->cap_node = -1;
    if (!net->q) abort();
}

static inline void an_free(anet *net)
{
    for (size_t i = 0; i < net->qlen; i++) free(net->q[(net->qhead + i) % AN_QCAP].data);
    free(net->q);
    for (int i = 0; i < net->nn; i++) p2p_host_free(net->n[i].h);
    memset(net, 0, sizeof *net);
}

static inline an_tally *an_tally_of(anet *net, int node, const p2p_addr *peer)
{
    for (size_t i = 0; i < net->nt; i++)
        if (net->t[i].node == node && p2p_addr_equal(&net->t[i].peer, peer)) return &net->t[i];
    if (net->nt == AN_TALLY) {
        fprintf(stderr, "attack.h: tally table full\n");
        abort();
    }
    an_tally *t = &net->t[net->nt++];
    memset(t, 0, sizeof *t);
    t->node = node;
    t->peer = *peer;
    return t;
}

/* Bytes / packets host `node` sent to `a`, and received from it. */
static inline uint64_t an_sent_to(anet *net, int node, const p2p_addr *a)
{
    return an_tally_of(net, node, a)->sent_bytes;
}
static inline uint64_t an_pkts_to(anet *net, int node, const p2p_addr *a)
{
    return an_tally_of(net, node, a)->sent_pkts;
}
static inline uint64_t an_recv_from(anet *net, int node, const p2p_addr *a)
{
    return an_tally_of(net, node, a)->recv_bytes;
}

/* Bytes host `node` sent to addresses that belong to no host of the network. */
static inline uint64_t an_sent_to_strangers(anet *net, int node)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < net->nt; i++) {
        if (net->t[i].node != node) continue;
        int host = 0;
        for (int k = 0; k < net->nn && !host; k++)
            host = p2p_addr_equal(&net->n[k].addr, &net->t[i].peer);
        if (!host) sum += net->t[i].sent_bytes;
    }
    return sum;
}

static inline int an_node_of(const anet *net, const p2p_addr *a)
{
    for (int i = 0; i < net->nn; i++)
        if (net->has_nat[i] ? p2p_addr_equal(&net->nat[i], a) : p2p_addr_equal(&net->n[i].addr, a))
            return i;
    return -1;
}

/* From now on host i is seen at `pub` (a new port, or a new address): a NAT rebinding. */
static inline void an_rebind(anet *net, int i, const p2p_addr *pub)
{
    net->has_nat[i] = 1;
    net->nat[i] = *pub;
}

static inline p2p_stats an_stats(const anet *net, int i)
{
    p2p_stats s;
    p2p_host_stats(net->n[i].h, &s);
    return s;
}

static inline void an_events(anet *net, int i)
{
    an_node *x = &net->n[i];
    p2p_event ev;
    while (x->h && p2p_host_next_event(x->h, &ev)) {
        switch (ev.type) {
        case P2P_EV_JOIN: x->joins++; break;
        case P2P_EV_LEAVE: x->leaves++; break;
        case P2P_EV_ERROR:
            x->errors++;
            snprintf(x->err, sizeof x->err, "%.*s", (int)ev.len, (const char *)ev.data);
            break;
        case P2P_EV_MESSAGE:
            if (ev.broadcast)
                x->broadcasts++;
            else
                x->msgs++;
            break;
        case P2P_EV_REPLY: x->replies++; break;
        case P2P_EV_DATAGRAM: x->datagrams++; break;
        case P2P_EV_REQUEST: x->requests++; break;
        default: break;
        }
        if (net->on_event) net->on_event(net, i, &ev);
    }
}

/* Moves host i's datagrams into the network (tallied) and hands its events out. */
static inline void an_flush(anet *net, int i)
{
    an_node *x = &net->n[i];
    static uint8_t buf[P2P_MAX_PACKET_PROBED];
    for (int round = 0; round < 2 && x->h; round++) {
        p2p_addr to;
        size_t len;
        while ((len = p2p_host_next_datagram(x->h, &to, buf, sizeof buf)) > 0) {
            an_tally *t = an_tally_of(net, i, &to);
            t->sent_bytes += len;
            t->sent_pkts++;
            if (net->cap_node == i && buf[0] == net->cap_type && len <= P2P_MAX_PACKET) {
                int k = net->ncap < AN_CAPTURE ? net->ncap++ : AN_CAPTURE - 1;
                memcpy(net->cap[k], buf, len);
                net->cap_len[k] = len;
                net->cap_to[k] = to;
            }
            if (net->qlen == AN_QCAP) {
                net->lost++;
                continue;
            }
            an_pkt *p = &net->q[(net->qhead + net->qlen) % AN_QCAP];
            p->from = net->has_nat[i] ? net->nat[i] : x->addr;
            p->to = to;
            p->at = net->now + net->latency;
            p->len = len;
            p->data = malloc(len);
            if (!p->data) abort();
            memcpy(p->data, buf, len);
            net->qlen++;
        }
        an_events(net, i); /* handlers may queue more datagrams: a second round */
    }
}

static inline void an_flush_all(anet *net)
{
    for (int i = 0; i < net->nn; i++) an_flush(net, i);
}

/* A host with a deterministic identity and randomness, at 192.0.2.(10 + index):4000.
 * base (may be NULL) gives the other settings. Returns its index. */
static inline int an_add(anet *net, const p2p_config *base)
{
    int i = net->nn;
    if (i == AN_MAX) abort();
    an_node *x = &net->n[i];
    memset(x, 0, sizeof *x);
    uint8_t seed[P2P_SEED_LEN];
    memset(seed, 0xa7, sizeof seed);
    seed[0] = (uint8_t)(i + 1);
    p2p_identity_from_seed(&x->id, seed);
    p2p_config c;
    if (base)
        c = *base;
    else
        p2p_config_init(&c);
    c.identity = &x->id;
    if (!c.seed) c.seed = 0x5eed0000u + (uint64_t)i;
    if (!c.unix_us) c.unix_us = AN_EPOCH_US + net->now;
    if (p2p_host_new(&x->h, &c, net->now)) {
        fprintf(stderr, "attack.h: p2p_host_new\n");
        abort();
    }
    char text[32];
    snprintf(text, sizeof text, "192.0.2.%d:4000", 10 + i);
    x->addr = an_addr(text);
    p2p_host_add_address(x->h, &x->addr, net->now);
    net->nn++;
    return i;
}

/* Delivers a datagram to host `to` now, as if it came from `from` (tallied). */
static inline void an_inject(anet *net, int to, const p2p_addr *from, const uint8_t *d, size_t len)
{
    an_tally *t = an_tally_of(net, to, from);
    t->recv_bytes += len;
    t->recv_pkts++;
    p2p_host_recv(net->n[to].h, from, d, len, net->now);
    an_flush(net, to);
}

/* Runs the network for us microseconds of virtual time. */
static inline void an_run(anet *net, uint64_t us)
{
    uint64_t end = net->now + us;
    an_flush_all(net);
    for (;;) {
        uint64_t next = end;
        if (net->qlen && net->q[net->qhead].at < next) next = net->q[net->qhead].at;
        for (int i = 0; i < net->nn; i++) {
            uint64_t d = net->n[i].h ? p2p_host_next_timeout(net->n[i].h) : P2P_TIME_NEVER;
            if (d < next) next = d;
        }
        if (next > net->now) net->now = next;
        while (net->qlen && net->q[net->qhead].at <= net->now) {
            an_pkt p = net->q[net->qhead];
            net->qhead = (net->qhead + 1) % AN_QCAP;
            net->qlen--;
            int dst = an_node_of(net, &p.to);
            if (dst < 0 || !net->n[dst].h || (net->filter && !net->filter(net, &p))) {
                net->lost++;
            } else {
                an_tally *t = an_tally_of(net, dst, &p.from);
                t->recv_bytes += p.len;
                t->recv_pkts++;
                p2p_host_recv(net->n[dst].h, &p.from, p.data, p.len, net->now);
                an_flush(net, dst);
            }
            free(p.data);
        }
        for (int i = 0; i < net->nn; i++) {
            if (!net->n[i].h || p2p_host_next_timeout(net->n[i].h) > net->now) continue;
            p2p_host_on_timeout(net->n[i].h, net->now);
            an_flush(net, i);
        }
        if (net->now >= end) break;
    }
    an_flush_all(net);
}

/* Host a's handle for its connected session with host b, or 0. */
static inline p2p_peer_handle an_handle(anet *net, int a, int b)
{
    return p2p_host_find(net->n[a].h, net->n[b].id.ed_pk);
}

/* Host a dials host b (pinning its id) and the network runs until both report the session,
 * or for at most limit_us. Returns a's handle, or 0. */
static inline p2p_peer_handle an_connect(anet *net, int a, int b, uint64_t limit_us)
{
    p2p_peer_handle ph = 0;
    if (p2p_host_connect(net->n[a].h, &net->n[b].addr, net->n[b].id.ed_pk, net->now, &ph)) return 0;
    uint64_t end = net->now + limit_us;
    while (net->now < end) {
        an_run(net, 10000);
        if (an_handle(net, a, b) && an_handle(net, b, a)) return an_handle(net, a, b);
    }
    return 0;
}

/* Host a's session with host b, as the core holds it (the attacker's lever). */
static inline p2p_peer *an_session(anet *net, int a, int b)
{
    return p2p_lookup(net->n[a].h, an_handle(net, a, b));
}

/* Host a appends any stream record to its session with b; it goes out with the next run. */
static inline int an_record(anet *net, int a, int b, uint8_t kind, const void *body, size_t len)
{
    p2p_peer *p = an_session(net, a, b);
    if (!p) return P2P_ERR_PEER;
    int rc = p2p_peer_append(net->n[a].h, p, kind, (const uint8_t *)body, len);
    an_flush(net, a);
    return rc;
}

/* Host a seals frames (plaintext pt) with its session keys for b and delivers the packet to b
 * at once, from the address `from` claims (NULL: a's own). Returns the packet's length. */
static inline size_t an_frames(anet *net, int a, int b, const uint8_t *pt, size_t ptlen,
                               const p2p_addr *from)
{
    p2p_peer *p = an_session(net, a, b);
    if (!p || ptlen + P2P_DATA_HEADER + P2P_TAG_LEN > P2P_MAX_PACKET_PROBED) return 0;
    static uint8_t pkt[P2P_MAX_PACKET_PROBED];
    size_t n = p2p_peer_seal_extra(p, pt, ptlen, pkt, net->now);
    if (!n) return 0;
    an_inject(net, b, from ? from : &net->n[a].addr, pkt, n);
    return n;
}

/* Starts capturing the packets of one type (P2P_PKT_*) that host `node` sends. */
static inline void an_capture(anet *net, int node, uint8_t type)
{
    net->cap_node = node;
    net->cap_type = type;
    net->ncap = 0;
}

/* ---- forged handshakes --------------------------------------------------------------------- */

/* Where INIT's MACs and its padding payload sit (docs/PROTOCOL.md section 2.1). */
#define INIT_MAC1 (P2P_INIT_LEN - 2 * P2P_MAC_LEN)
#define INIT_MAC2 (P2P_INIT_LEN - P2P_MAC_LEN)
#define INIT_PAYLOAD (INIT_MAC1 - 8 - P2P_DH_LEN - P2P_TAG_LEN)

/* A fresh, valid INIT for host h, as anyone can make one when h has no network key (its mac1
 * key and psk are public knowledge then): a new ephemeral key drawn from rng, mac2 zero. */
static inline void an_forge_init(const p2p_host *h, p2p_rng *rng, uint32_t index,
                                 uint8_t out[P2P_INIT_LEN])
{
    uint8_t s[P2P_DH_LEN], zeros[INIT_PAYLOAD] = {0};
    p2p_rng_bytes(rng, s, sizeof s);
    p2p_noise n;
    if (p2p_noise_init(&n, P2P_NOISE_PROTOCOL, 1, (const uint8_t *)P2P_PROLOGUE,
                       sizeof P2P_PROLOGUE - 1, s, NULL, h->psk))
        abort();
    out[0] = P2P_PKT_INIT;
    out[1] = P2P_PROTOCOL_VERSION;
    out[2] = out[3] = 0;
    p2p_put_u32(out + 4, index);
    size_t len = 0;
    if (p2p_noise_write(&n, rng, zeros, sizeof zeros, out + 8, INIT_MAC1 - 8, &len) ||
        len != INIT_MAC1 - 8)
        abort();
    p2p_blake2b(out + INIT_MAC1, P2P_MAC_LEN, h->mac_key, P2P_KEY_LEN, out, INIT_MAC1, NULL, 0);
    memset(out + INIT_MAC2, 0, P2P_MAC_LEN);
    p2p_noise_wipe(&n);
}

/* ---- what the mesh tests forge ------------------------------------------------------------ */

/* Our clock as every host of the network sees it (an_add gives each unix_us = EPOCH + now). */
static inline uint64_t an_wall(const anet *net)
{
    return AN_EPOCH_US + net->now;
}

/* A broadcast envelope: origin id, u64 seq, u8 type 7, u8 flags 0, the data, the signature. */
#define AN_BCAST_HEADER (P2P_ID_LEN + 8 + 1 + 1)

/* A broadcast envelope signed by id (bad_sig: signed by nobody). Returns its length. */
static inline size_t an_make_bcast(uint8_t *env, const p2p_identity *id, uint64_t seq,
                                   const void *data, size_t len, int bad_sig)
{
    static const char label[] = "p2pnet/1 broadcast";
    static uint8_t msg[sizeof label + 70000];
    memcpy(env, id->ed_pk, P2P_ID_LEN);
    p2p_put_u64(env + P2P_ID_LEN, seq);
    env[P2P_ID_LEN + 8] = 7;
    env[P2P_ID_LEN + 9] = 0;
    memcpy(env + AN_BCAST_HEADER, data, len);
    memcpy(msg, label, sizeof label - 1);
    memcpy(msg + sizeof label - 1, env, AN_BCAST_HEADER + len);
    if (bad_sig)
        memset(env + AN_BCAST_HEADER + len, 0x55, P2P_SIG_LEN);
    else
        p2p_sign(env + AN_BCAST_HEADER + len, msg, sizeof label - 1 + AN_BCAST_HEADER + len,
                 id->ed_sk);
    return AN_BCAST_HEADER + len + P2P_SIG_LEN;
}

/* Appends one { u16 length, member record } signed by id to w. */
static inline void an_put_member(p2p_wr *w, const p2p_identity *id, uint64_t seq, uint64_t expires,
                                 const p2p_addr *addrs, int n)
{
    static const char label[] = "p2pnet/1 member";
    uint8_t body[P2P_MEMBER_REC_MAX], msg[sizeof label + P2P_MEMBER_REC_MAX];
    p2p_wr r;
    p2p_wr_init(&r, body, sizeof body - P2P_SIG_LEN);
    p2p_wr_u8(&r, 1);
    p2p_wr_bytes(&r, id->ed_pk, P2P_ID_LEN);
    p2p_wr_u64(&r, seq);
    p2p_wr_u64(&r, expires);
    p2p_wr_u8(&r, (uint8_t)n);
    for (int i = 0; i < n; i++) p2p_wr_addr(&r, &addrs[i]);
    size_t blen = (size_t)(r.p - body);
    memcpy(msg, label, sizeof label - 1);
    memcpy(msg + sizeof label - 1, body, blen);
    p2p_sign(body + blen, msg, sizeof label - 1 + blen, id->ed_sk);
    p2p_wr_u16(w, (uint16_t)(blen + P2P_SIG_LEN));
    p2p_wr_bytes(w, body, blen + P2P_SIG_LEN);
}

/* 1 when host h lists a among the addresses it advertises. */
static inline int an_advertises(const p2p_host *h, const p2p_addr *a)
{
    p2p_addr list[P2P_MEMBER_ADDRS];
    size_t n = p2p_host_addresses(h, list, NULL, P2P_MEMBER_ADDRS);
    for (size_t i = 0; i < n && i < P2P_MEMBER_ADDRS; i++)
        if (p2p_addr_equal(&list[i], a)) return 1;
    return 0;
}

/* An INTRO record's body (docs/PROTOCOL.md section 8.2): the id, channel 0x77, flags (bit 0
 * relay, bit 1 offer) and n candidates. AN_INTRO_MAX bytes always suffice for 8. */
#define AN_INTRO_MAX (38 + 19 * 8)
static inline size_t an_intro(uint8_t out[AN_INTRO_MAX], const uint8_t id[P2P_ID_LEN],
                              uint8_t flags, const p2p_addr *c, uint8_t n)
{
    p2p_wr w;
    p2p_wr_init(&w, out, AN_INTRO_MAX);
    p2p_wr_bytes(&w, id, P2P_ID_LEN);
    p2p_wr_u32(&w, 0x77);
    p2p_wr_u8(&w, flags);
    p2p_wr_u8(&w, n);
    for (uint8_t i = 0; i < n; i++) p2p_wr_addr(&w, &c[i]);
    return (size_t)(w.p - out);
}

#endif
