/* simnet.h - what the C tests that play a host's driver by hand repeat (tnet.h has the helpers
 * for hosts on the simulator): addresses from text, a queue of datagrams delivered after a
 * delay with the loop that runs one host against it, the host's advertised address of a kind,
 * two hosts joined by a stream the test carries, and marker messages between sim nodes. */
#ifndef P2P_SIMNET_H
#define P2P_SIMNET_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../csrc/p2p_wire.h"
#include "../csrc/p2pnet.h"
#include "driver/sim.h"

/* ---- addresses --------------------------------------------------------------------------- */

/* The address a literal in a test spells (zeroed first); a literal that does not parse is a
 * bug in the test, and stops it. */
static inline p2p_addr simnet_addr(const char *text)
{
    p2p_addr a;
    memset(&a, 0, sizeof a);
    if (p2p_addr_parse(&a, text) != 0) abort();
    return a;
}

static inline void simnet_ip4(p2p_addr *a, int b0, int b1, int b2, int b3, uint16_t port)
{
    memset(a, 0, sizeof *a);
    a->family = P2P_AF_INET4;
    a->ip[0] = (uint8_t)b0, a->ip[1] = (uint8_t)b1, a->ip[2] = (uint8_t)b2, a->ip[3] = (uint8_t)b3;
    a->port = port;
}

/* The address a host sees datagrams of stream sid come from (and sends them to). */
static inline p2p_addr simnet_stream_addr(uint32_t sid)
{
    p2p_addr a;
    memset(&a, 0, sizeof a);
    a.family = P2P_AF_STREAM;
    p2p_put_u32(a.ip, sid);
    return a;
}

/* The first of h's advertised addresses of kind (P2P_ADDR_*) into *out; 1 when there is one. */
static inline int simnet_own_addr(p2p_host *h, int kind, p2p_addr *out)
{
    p2p_addr a[16];
    int k[16];
    size_t c = p2p_host_addresses(h, a, k, 16);
    for (size_t i = 0; i < c && i < 16; i++)
        if (k[i] == kind) {
            *out = a[i];
            return 1;
        }
    return 0;
}

/* A host with a throwaway identity (random, wiped once the host holds its keys) and `seed`,
 * on the settings c (the caller's: identity and seed are set here); NULL when p2p_host_new
 * fails. */
static inline p2p_host *simnet_fresh_host(p2p_config *c, uint64_t seed)
{
    p2p_identity id;
    p2p_identity_generate(&id);
    c->identity = &id;
    c->seed = seed;
    p2p_host *h = NULL;
    p2p_host_new(&h, c, 0);
    p2p_identity_wipe(&id);
    c->identity = NULL;
    return h;
}

/* ---- one host, driven by hand -------------------------------------------------------------- */

/* Datagrams on their way to the host; what does not fit is lost. */
typedef struct simnet_pending {
    uint64_t at;
    p2p_addr from;
    uint8_t buf[1500];
    size_t len;
} simnet_pending;

typedef struct simnet_queue {
    simnet_pending q[32];
    size_t nq;
} simnet_queue;

/* Queues b (copied) from `from` for delivery at `at`; dropped when the queue is full or b too
 * long. */
static inline void simnet_later(simnet_queue *w, uint64_t at, const p2p_addr *from,
                                const uint8_t *b, size_t len)
{
    if (w->nq == sizeof w->q / sizeof w->q[0] || len > sizeof w->q[0].buf) return;
    simnet_pending *p = &w->q[w->nq++];
    p->at = at;
    p->from = *from;
    memcpy(p->buf, b, len);
    p->len = len;
}

/* The test's driver for one host: io answers a request (it must call p2p_host_io_done or
 * leave the request unanswered), datagram carries what the host sends. */
typedef struct simnet_driver {
    void (*io)(void *ctx, const p2p_io *io);
    void (*datagram)(void *ctx, const p2p_addr *to, const uint8_t *buf, size_t len);
    void *ctx;
} simnet_driver;

/* Takes every output of h until there is none (the driver rule): io requests and datagrams go
 * to d, events are dropped. */
static inline void simnet_drain(p2p_host *h, const simnet_driver *d)
{
    uint8_t buf[P2P_MAX_PACKET_PROBED];
    p2p_addr to;
    size_t len;
    p2p_event ev;
    p2p_io io;
    for (int progress = 1; progress;) {
        progress = 0;
        while (p2p_host_next_io(h, &io)) {
            progress = 1;
            d->io(d->ctx, &io);
        }
        while ((len = p2p_host_next_datagram(h, &to, buf, sizeof buf)) > 0) {
            progress = 1;
            d->datagram(d->ctx, &to, buf, len);
        }
        while (p2p_host_next_event(h, &ev)) progress = 1;
    }
}

/* Runs h and the queue w until virtual time `until` (*now ends there): each datagram arrives
 * at its time, the host's timers fire at theirs, and d takes every output after each input. */
static inline void simnet_run(p2p_host *h, simnet_queue *w, uint64_t *now, uint64_t until,
                              const simnet_driver *d)
{
    simnet_drain(h, d);
    for (;;) {
        uint64_t t = p2p_host_next_timeout(h);
        for (size_t i = 0; i < w->nq; i++)
            if (w->q[i].at < t) t = w->q[i].at;
        if (t > until) break;
        if (t > *now) *now = t;
        for (size_t i = 0; i < w->nq;) {
            if (w->q[i].at <= *now) {
                simnet_pending p = w->q[i];
                w->q[i] = w->q[--w->nq];
                p2p_host_recv(h, &p.from, p.buf, p.len, *now);
                simnet_drain(h, d);
            } else {
                i++;
            }
        }
        if (p2p_host_next_timeout(h) <= *now) p2p_host_on_timeout(h, *now);
        simnet_drain(h, d);
    }
    *now = until;
}

/* ---- two hosts joined by a stream the test carries ------------------------------------------ */

/* A dials B's UDP endpoint baddr; when its fallback asks for a TCP stream (P2P_IO_TCP_OPEN),
 * the test brings it up on both sides: A's stream is the id A chose, B's is bsid, inbound
 * from aip. Counts: joins on both sides, B's numbered messages (checked to arrive in order),
 * A's replies. */
typedef struct simnet_pair {
    p2p_host *a, *b;
    p2p_addr baddr, aip;
    uint32_t sid, bsid;
    int joins, msgs, replies, order_bad;
    uint64_t next;
} simnet_pair;

/* Takes both hosts' io requests, bringing the stream up on A's first TCP_OPEN (which must be
 * to baddr). */
static inline void simnet_pair_io(simnet_pair *p, uint64_t now)
{
    p2p_io io;
    while (p2p_host_next_io(p->a, &io)) {
        if (io.kind != P2P_IO_TCP_OPEN || p->sid) continue;
        p->sid = io.id;
        T_CHECK(p2p_addr_equal(&io.addr, &p->baddr));
        T_EQ_INT(p2p_host_stream_up(p->b, p->bsid, &p->aip, 1, now), 0);
        T_EQ_INT(p2p_host_stream_up(p->a, p->sid, &p->baddr, 0, now), 0);
    }
    while (p2p_host_next_io(p->b, &io)) {
    }
}

/* Takes both hosts' events: B answers every message (its first 8 bytes number it) with an
 * empty reply. */
static inline void simnet_pair_events(simnet_pair *p, uint64_t now)
{
    p2p_event ev;
    while (p2p_host_next_event(p->a, &ev)) {
        if (ev.type == P2P_EV_JOIN) p->joins++;
        if (ev.type == P2P_EV_REPLY) p->replies++;
    }
    while (p2p_host_next_event(p->b, &ev)) {
        if (ev.type == P2P_EV_JOIN) p->joins++;
        if (ev.type == P2P_EV_MESSAGE) {
            uint64_t v;
            memcpy(&v, ev.data, 8);
            if (v != p->next) p->order_bad++;
            p->next = v + 1;
            p->msgs++;
            p2p_peer_reply(p->b, ev.peer, ev.seq, P2P_REPLY_NIL, NULL, 0, now);
        }
    }
}

/* Sends A's message number v (len bytes of 0x33 after the number) with a receipt. */
static inline void simnet_pair_send(simnet_pair *p, p2p_peer_handle pa, uint64_t v, size_t len,
                                    uint64_t now)
{
    uint8_t m[256];
    if (len > sizeof m) len = sizeof m;
    memset(m, 0x33, len);
    memcpy(m, &v, 8);
    T_EQ_INT(p2p_peer_send(p->a, pa, 1, m, len, 1, NULL, now), 0);
}

/* ---- marker messages between sim nodes --------------------------------------------------- */

/* The simulator of the NAT tests: seed, every datagram 10 ms +- 3 ms on its way; the caller
 * adds faults. */
static inline void simnet_sim_config(p2p_sim_config *c, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->seed = seed;
    c->latency_us = 10000;
    c->jitter_us = 3000;
}

/* Every message of type 7 carries a marker and its index (u32 after the marker); the receiver
 * checks they arrive in order and once, and echoes the whole message back as the reply. */
typedef struct simnet_msgs {
    uint32_t next_in; /* messages received */
    int msg_bad;
    int nreplies, reply_bad; /* replies to this node's messages, in arrival order */
} simnet_msgs;

/* Takes a MESSAGE or REPLY event of host h (any other is left alone) at `now`; on a sim s (NULL:
 * the test carries the datagrams) h is flushed after it replies. reply_seq (room for max) gets
 * the sequence numbers of the replies. */
static inline void simnet_on_msg(p2p_sim *s, p2p_host *h, const p2p_event *ev, simnet_msgs *m,
                                 const uint8_t *marker, size_t marker_len, uint64_t *reply_seq,
                                 int max, uint64_t now)
{
    uint8_t copy[2048];
    if (ev->type == P2P_EV_MESSAGE) {
        if (ev->broadcast || ev->msg_type != 7) return;
        if (ev->len < marker_len + 4 || p2p_get_u32(ev->data + marker_len) != m->next_in)
            m->msg_bad++;
        m->next_in++;
        if (ev->want_reply) {
            size_t len = ev->len < sizeof copy ? ev->len : sizeof copy;
            memcpy(copy, ev->data, len);
            T_EQ_INT(p2p_peer_reply(h, ev->peer, ev->seq, P2P_REPLY_DATA, copy, len, now), 0);
            if (s) p2p_sim_flush(s, h);
        }
    } else if (ev->type == P2P_EV_REPLY) {
        if (ev->status != P2P_REPLY_DATA || ev->len < marker_len + 4 ||
            memcmp(ev->data, marker, marker_len) != 0)
            m->reply_bad++;
        if (m->nreplies < max) reply_seq[m->nreplies++] = ev->seq;
    }
}

/* Sends message number `index` (len bytes: the marker, the index, then 0xab filler) from h to
 * the peer `to` with a receipt; *seq gets its sequence number. Returns p2p_peer_send's code. */
static inline int simnet_send_marked(p2p_sim *s, p2p_host *h, const uint8_t *to,
                                     const uint8_t *marker, size_t marker_len, uint32_t index,
                                     size_t len, uint64_t *seq)
{
    uint8_t msg[2048];
    if (len > sizeof msg) return -1;
    memset(msg, 0xab, len);
    memcpy(msg, marker, marker_len);
    p2p_put_u32(msg + marker_len, index);
    int rc = p2p_peer_send(h, p2p_host_find(h, to), 7, msg, len, 1, seq, p2p_sim_now(s));
    p2p_sim_flush(s, h);
    return rc;
}

/* A stream of `sent` messages (seq: their sequence numbers) from a node that counts its
 * replies in `from` (their sequence numbers in reply_seq) to one that counts them in `to`:
 * every message got exactly one reply, in the order sent, and arrived once, in order. */
static inline void simnet_msgs_check(int sent, const uint64_t *seq, const simnet_msgs *from,
                                     const uint64_t *reply_seq, const simnet_msgs *to, int want)
{
    T_EQ_INT(sent, want);
    T_EQ_INT(from->nreplies, want);
    T_EQ_INT(from->reply_bad, 0);
    T_EQ_INT(to->msg_bad, 0);
    T_EQ_INT(to->next_in, want);
    int order = 0;
    for (int i = 0; i < from->nreplies && i < sent; i++) order += reply_seq[i] == seq[i];
    T_EQ_INT(order, want);
}

/* h's view of the peer `pk` (zeroed when there is none). */
static inline p2p_peer_info simnet_info(p2p_host *h, const uint8_t *pk)
{
    p2p_peer_info info;
    memset(&info, 0, sizeof info);
    p2p_host_peer_info(h, p2p_host_find(h, pk), &info);
    return info;
}

/* 1 when h holds a connected session with the peer `pk`. */
static inline int simnet_connected(p2p_host *h, const uint8_t *pk)
{
    p2p_peer_handle ph = p2p_host_find(h, pk);
    p2p_peer_info info;
    return ph && p2p_host_peer_info(h, ph, &info) == 0 && info.state == P2P_PEER_CONNECTED;
}

static inline p2p_stats simnet_stats(p2p_host *h)
{
    p2p_stats st;
    p2p_host_stats(h, &st);
    return st;
}

#endif
