/* test_verify10.c - issue 10 verification: attacks on congestion control, lanes and transfers
 * (docs/PROTOCOL.md sections 3, 4.2, 4.4, 5). Each test states what must hold; the ones that
 * failed on main at f4aa4b9 say so. */
#include "attack.h"

#include "../csrc/p2p_transfer.h"
#include "../csrc/p2p_wire.h"

enum { HONEST, LIAR };

/* A bottleneck of BOTTLENECK_BPS from host 0 to host 1, without a queue: what does not fit a
 * 10 ms token bucket is dropped. */
#define BOTTLENECK_BPS 10000000u
#define BUCKET_US 10000u
static uint64_t bucket_at, bucket_bytes;

static int bottleneck(anet *net, an_pkt *pkt)
{
    if (!p2p_addr_equal(&pkt->from, &net->n[0].addr)) return 1;
    if (net->now >= bucket_at + BUCKET_US) {
        bucket_at = net->now - net->now % BUCKET_US;
        bucket_bytes = 0;
    }
    uint64_t cap = (uint64_t)BOTTLENECK_BPS / 8 * BUCKET_US / 1000000;
    if (bucket_bytes + pkt->len > cap) return 0;
    bucket_bytes += pkt->len;
    return 1;
}

/* Keeps host 0's lane-0 queue to host 1 full of 16 KiB messages. */
static void keep_full(anet *net)
{
    static uint8_t msg[16384];
    p2p_peer_handle ph = an_handle(net, 0, 1);
    while (ph && p2p_peer_send(net->n[0].h, ph, 1, msg, sizeof msg, 0, NULL, net->now) == 0) {
    }
    an_flush(net, 0);
}

/* Host 0 sends bulk to host 1 through the bottleneck for 3 s (50 ms RTT). With `lie`, host 1
 * also acknowledges, every millisecond, every packet host 0 has sent so far, before it
 * arrived or although the bottleneck dropped it (an optimistic ACK). Returns the bytes host 0
 * sent; *bw gets its bandwidth estimate at the end (bytes/s), *alive whether the session
 * still stands. */
static uint64_t bulk_run(int lie, uint64_t *bw, int *alive)
{
    anet net;
    an_init(&net, 25000);
    int a = an_add(&net, NULL), b = an_add(&net, NULL);
    T_CHECK(an_connect(&net, a, b, 2000000) != 0);
    net.filter = bottleneck;
    bucket_at = bucket_bytes = 0;
    uint64_t sent0 = an_sent_to(&net, a, &net.n[b].addr);
    for (int ms = 0; ms < 3000; ms++) {
        keep_full(&net);
        an_run(&net, 1000);
        p2p_peer *pa = an_session(&net, a, b);
        if (!pa) break; /* caught: the session ended */
        if (!lie || !an_session(&net, b, a) || pa->rec.next_pn < 2) continue;
        uint8_t pt[64];
        p2p_wr w;
        p2p_wr_init(&w, pt, sizeof pt);
        p2p_ack_range r = {pa->rec.base_pn, pa->rec.next_pn - 1};
        p2p_frame_put_ack(&w, 0, &r, 1);
        an_frames(&net, b, a, pt, (size_t)(w.p - pt), NULL);
    }
    uint64_t sent = an_sent_to(&net, a, &net.n[b].addr) - sent0;
    p2p_peer *pa = an_session(&net, a, b);
    *alive = pa != NULL;
    *bw = pa ? p2p_cc_bandwidth(&pa->rec.cc) : 0;
    an_free(&net);
    return sent;
}

/* An ACK that claims packets the receiver never got (sent, but not yet arrived, or dropped by
 * the bottleneck) must not make the sender send far more than the path carries: an
 * authenticated peer could otherwise aim a BBR sender at a link it shares with others (RFC
 * 9000 section 21.4 skips packet numbers so that such an ACK is caught). Failed on f4aa4b9:
 * the liar made its peer send many times the honest volume, and its bandwidth estimate many
 * times the bottleneck. */
static void test_optimistic_ack(void)
{
    uint64_t bw_h, bw_l;
    int alive_h, alive_l;
    uint64_t honest = bulk_run(0, &bw_h, &alive_h);
    uint64_t liar = bulk_run(1, &bw_l, &alive_l);
    printf("     3 s through %u bit/s: honest receiver %llu B sent (bw estimate %llu B/s), "
           "optimistic acker %llu B sent (bw %llu B/s, session %s)\n",
           BOTTLENECK_BPS, (unsigned long long)honest, (unsigned long long)bw_h,
           (unsigned long long)liar, (unsigned long long)bw_l, alive_l ? "up" : "ended");
    T_CHECK(alive_h);
    T_CHECK(honest > 0);
    /* caught (the session ends), or held to the honest volume with some slack */
    T_CHECK(!alive_l || liar <= 2 * honest);
}

/* Drops what host 1 sends from its own address: the attacker speaks only from the spoofed one. */
static int silence_1(anet *net, an_pkt *pkt)
{
    return !p2p_addr_equal(&pkt->from, &net->n[1].addr);
}

/* The attacker moves its session to a victim's address (authenticated packets from a spoofed
 * source) and, from there, acknowledges every packet its peer sent, so that BBR sees an
 * unlimited path, while the peer has a bulk stream and sequenced datagrams queued. The victim
 * must get at most 3 times the bytes that came from its address (section 8.6). */
static void test_amplification_with_lying_acks(void)
{
    anet net;
    an_init(&net, 10000);
    int a = an_add(&net, NULL), b = an_add(&net, NULL);
    T_CHECK(an_connect(&net, a, b, 2000000) != 0);
    p2p_addr victim = an_addr("198.51.100.7:9000");
    net.filter = silence_1;
    for (int ms = 0; ms < 2000; ms++) {
        keep_full(&net);
        p2p_peer_handle ph = an_handle(&net, a, b);
        static const uint8_t d[1000];
        if (ph) (void)p2p_peer_send_sequenced(net.n[a].h, ph, 3, 1, d, sizeof d, net.now);
        an_run(&net, 1000);
        p2p_peer *pa = an_session(&net, a, b);
        if (!pa || !an_session(&net, b, a)) break;
        uint8_t pt[64];
        p2p_wr w;
        p2p_wr_init(&w, pt, sizeof pt);
        p2p_ack_range r = {pa->rec.base_pn, pa->rec.next_pn - 1};
        p2p_frame_put_ack(&w, 0, &r, 1);
        p2p_wr_u8(&w, P2P_FRAME_PING);
        an_frames(&net, b, a, pt, (size_t)(w.p - pt), &victim);
    }
    uint64_t out = an_sent_to(&net, a, &victim), in = an_recv_from(&net, a, &victim);
    printf("     2 s of lying ACKs from a spoofed address: %llu B to it for %llu B from it\n",
           (unsigned long long)out, (unsigned long long)in);
    T_CHECK(in > 0);
    T_CHECK(out <= 3 * in);
    an_free(&net);
}

/* ---- transfers and lanes from a hostile peer ---------------------------------------------- */

static int offers, data_events, ends;
static uint64_t data_bytes;

/* The victim (host 0) accepts every offer from the start and counts what it gets. */
static void accept_all(anet *net, int i, const p2p_event *ev)
{
    if (i != 0) return;
    if (ev->type == P2P_EV_TRANSFER_OFFER) {
        offers++;
        T_EQ_INT(p2p_host_transfer_accept(net->n[0].h, ev->transfer, 0, net->now), 0);
    } else if (ev->type == P2P_EV_TRANSFER_DATA) {
        data_events++;
        data_bytes += ev->len;
    } else if (ev->type == P2P_EV_TRANSFER_END) {
        ends++;
    }
}

/* The victim's answers (ACCEPT for ids the attacker's host never opened) do not reach the
 * attacker's host, which would end the session over them. */
static int mute_0(anet *net, an_pkt *pkt)
{
    return !p2p_addr_equal(&pkt->from, &net->n[0].addr);
}

/* Host 1 appends a TRANSFER record (op, id, fields) to lane `lane` of its session with 0. */
static void xrec(anet *net, uint8_t lane, uint8_t op, uint64_t id, const uint8_t *f, size_t n)
{
    uint8_t b[256];
    p2p_wr w;
    p2p_wr_init(&w, b, sizeof b);
    p2p_wr_u8(&w, op);
    p2p_wr_varint(&w, id);
    p2p_wr_bytes(&w, f, n);
    p2p_peer *p = an_session(net, 1, 0);
    T_CHECK(p != NULL);
    if (!p) return;
    /* the attacker's host would refuse some of these: the stream takes any record */
    (void)p2p_peer_append_lane(net->n[1].h, p, lane, P2P_REC_TRANSFER, b, (size_t)(w.p - b));
    an_flush(net, 1);
}

/* A transfer's records on a lane other than its OPEN's, or on the control lane, end the
 * session (section 4.2); on its own lane they are delivered. */
static void test_transfer_lane_rules(void)
{
    static const struct {
        uint8_t open_lane, data_lane;
        int ends_session;
    } cases[] = {{3, 3, 0}, {3, 4, 1}, {0, 254, 1}, {P2P_LANE_CONTROL, P2P_LANE_CONTROL, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        anet net;
        an_init(&net, 5000);
        int v = an_add(&net, NULL), att = an_add(&net, NULL);
        T_CHECK(an_connect(&net, att, v, 2000000) != 0);
        offers = data_events = ends = 0;
        data_bytes = 0;
        net.on_event = accept_all;
        net.filter = mute_0;
        uint8_t open_f[] = {P2P_XOPEN_SIZED, 50, 0}; /* total 50, no metadata */
        xrec(&net, cases[k].open_lane, P2P_XOP_OPEN, 1, open_f, sizeof open_f);
        an_run(&net, 100000);
        uint8_t data_f[11] = {0}; /* offset 0, 10 bytes */
        if (an_session(&net, att, v)) {
            xrec(&net, cases[k].data_lane, P2P_XOP_DATA, 1, data_f, sizeof data_f);
            an_run(&net, 100000);
        }
        int ended = an_handle(&net, v, att) == 0;
        if (ended != cases[k].ends_session)
            printf("     OPEN on lane %u, DATA on lane %u: session %s, %d offers, %d data\n",
                   cases[k].open_lane, cases[k].data_lane, ended ? "ended" : "up", offers,
                   data_events);
        T_EQ_INT(ended, cases[k].ends_session);
        if (!cases[k].ends_session) T_EQ_INT((int)data_bytes, 10);
        an_free(&net);
    }
}

/* ---- receipts owed on many lanes ------------------------------------------------------------ */

/* What session v holds in receipt ranges (owed and awaited) over all its lanes: memory the
 * budgets do not see. */
static uint64_t receipt_bytes(const p2p_peer *v)
{
    uint64_t n = (v->l0.owed.cap + v->l0.awaiting.cap) * sizeof(p2p_range);
    if (v->lanes)
        for (unsigned i = 1; i < v->lanes->n; i++) {
            const p2p_lane *l = v->lanes->slot[v->lanes->ids[i]];
            n += (l->owed.cap + l->awaiting.cap) * sizeof(p2p_range);
        }
    return n;
}

#define RECEIPT_LANES 16

/* A peer sends, on 16 lanes, MESSAGE_RECEIPTs that the application does not answer yet
 * (alternating with plain messages, so that each owed receipt is a range of its own). Section
 * 4.1 says memory never grows past a budget, and section 4.4 that a peer naming lanes makes
 * the node hold at most the lanes' state more; but the owed ranges are uncharged and capped
 * per lane (4096 x 16 bytes each), so the 255 lanes hold 16 MiB per session outside both
 * budgets. Here 16 lanes against a 256 KiB peer budget: failed on f4aa4b9 (1 MiB of ranges
 * beside 15 KiB charged). */
static void test_owed_receipts_many_lanes(void)
{
    anet net;
    an_init(&net, 5000);
    p2p_config cv;
    p2p_config_init(&cv);
    cv.peer_memory = 256 * 1024;
    int v = an_add(&net, &cv), att = an_add(&net, NULL);
    T_CHECK(an_connect(&net, att, v, 2000000) != 0);
    p2p_peer *pa = an_session(&net, att, v);
    T_CHECK(pa != NULL);
    if (!pa) {
        an_free(&net);
        return;
    }
    /* Once the victim holds P2P_RECEIPT_RANGES ranges in all, it answers further receipts at
     * once with an error REPLY, which this raw attacker never awaited: its own side then ends
     * the session (a reply to nothing). Either way the victim's ranges stay bounded: checked
     * after every lane while the session lives. */
    uint64_t most = 0;
    unsigned lanes_sent = 0;
    for (unsigned lane = 0; lane < RECEIPT_LANES; lane++) {
        pa = an_session(&net, att, v);
        if (!pa) break;
        for (unsigned k = 0; k < 2 * P2P_RECEIPT_RANGES; k++)
            (void)p2p_peer_append_lane(net.n[att].h, pa, (uint8_t)lane,
                                       k % 2 ? P2P_REC_MESSAGE : P2P_REC_MESSAGE_RECEIPT, NULL, 0);
        lanes_sent++;
        an_run(&net, 200000);
        p2p_peer *pv = an_session(&net, v, att);
        if (!pv) break;
        uint64_t held = pv->mem + receipt_bytes(pv);
        if (held > most) most = held;
        T_CHECK(held <= cv.peer_memory);
    }
    printf("     %u lanes of unanswered receipts: %d requests delivered, the session held at most "
           "%llu B with its reply ranges (budget %llu)\n",
           lanes_sent, net.n[v].msgs, (unsigned long long)most, (unsigned long long)cv.peer_memory);
    T_CHECK(lanes_sent >= 2 && most > 0);
    an_free(&net);
}

/* ---- hostile lane frames at random --------------------------------------------------------- */

static uint64_t rnd_state = 0x9e3779b97f4a7c15u;
static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

/* Frames of the lane kinds with random lanes, offsets, sequence numbers and lengths, and
 * stream bytes that are valid MESSAGE records (or, one time in 16, anything): the victim never
 * crashes (the sanitizer build checks), holds at most its peer budget for the session, and
 * an honest peer still joins. Sessions that end for a protocol error are dialled again. */
static void test_random_lane_frames(void)
{
    anet net;
    an_init(&net, 2000);
    p2p_config cv;
    p2p_config_init(&cv);
    cv.peer_memory = 512 * 1024;
    int v = an_add(&net, &cv), att = an_add(&net, NULL), honest = an_add(&net, NULL);
    T_CHECK(an_connect(&net, att, v, 2000000) != 0);
    uint64_t most = 0, next_off[P2P_LANE_SLOTS] = {0};
    int reconnects = 0;
    for (int i = 0; i < 1500; i++) {
        if (!an_session(&net, att, v) || !an_session(&net, v, att)) {
            an_run(&net, 200000);
            if (!an_connect(&net, att, v, 2000000)) break;
            reconnects++;
            memset(next_off, 0, sizeof next_off);
        }
        uint8_t pt[1100];
        p2p_wr w;
        p2p_wr_init(&w, pt, sizeof pt);
        for (int f = 0; f < 3; f++) {
            uint64_t r = rnd();
            uint8_t lane = (uint8_t)(r >> 8);
            uint64_t off = (r >> 16) % 4 == 0 ? rnd() % (1u << 22) : (rnd() % 8192);
            switch (r % 4) {
            case 0:
            case 1: {
                /* a run of stream bytes: records, or garbage */
                uint8_t body[300];
                size_t n = 0;
                int garbage = (rnd() % 16) == 0;
                while (n + 8 < sizeof body) {
                    if (garbage) {
                        body[n++] = (uint8_t)rnd();
                        continue;
                    }
                    size_t len = rnd() % 20;
                    body[n++] = P2P_REC_MESSAGE;
                    body[n++] = 0;
                    body[n++] = 1;
                    body[n++] = (uint8_t)len;
                    for (size_t k = 0; k < len && n < sizeof body; k++) body[n++] = 'r';
                    if (n >= sizeof body - 8) break;
                }
                /* mostly in order on a few lanes, so that records are parsed */
                if ((r >> 40) % 4) {
                    lane = (uint8_t)(1 + (r >> 44) % 8);
                    off = next_off[lane];
                    next_off[lane] += n;
                }
                if (lane == 0) lane = 1;
                p2p_frame_put_lane_header(&w, lane, off, n);
                p2p_wr_bytes(&w, body, n);
                break;
            }
            case 2:
                if (lane == 0) lane = 7;
                p2p_wr_u8(&w, P2P_FRAME_MAX_STREAM_LANE);
                p2p_wr_u8(&w, lane);
                p2p_wr_varint(&w, rnd() % P2P_VARINT_MAX);
                break;
            default: {
                static const uint8_t d[40];
                if (lane == P2P_LANE_CONTROL) lane = 3;
                p2p_frame_put_datagram_seq(&w, lane, rnd() % (1u << 20), 1, d, rnd() % sizeof d);
                break;
            }
            }
        }
        if (w.bad) continue;
        an_frames(&net, att, v, pt, (size_t)(w.p - pt), NULL);
        if (i % 50 == 0) an_run(&net, 5000);
        p2p_peer *pv = an_session(&net, v, att);
        if (pv && pv->mem > most) most = pv->mem;
    }
    an_run(&net, 500000);
    printf("     %d messages, %d datagrams delivered\n", net.n[v].msgs, net.n[v].datagrams);
    printf("     1500 packets of random lane frames: %d reconnects, session held at most %llu B "
           "(budget %llu)\n",
           reconnects, (unsigned long long)most, (unsigned long long)cv.peer_memory);
    T_CHECK(most <= cv.peer_memory);
    T_CHECK(an_connect(&net, honest, v, 2000000) != 0);
    an_free(&net);
}

/* Random TRANSFER records (ops, ids, offsets, lengths, totals, lanes, the control lane among
 * them) against a victim that accepts every offer: no sanitizer report, no event for bytes
 * out of order, memory within the budget. Sessions ended for a protocol error are dialled
 * again. */
static void test_random_transfer_records(void)
{
    anet net;
    an_init(&net, 2000);
    p2p_config cv;
    p2p_config_init(&cv);
    cv.peer_memory = 512 * 1024;
    int v = an_add(&net, &cv), att = an_add(&net, NULL);
    T_CHECK(an_connect(&net, att, v, 2000000) != 0);
    offers = data_events = ends = 0;
    data_bytes = 0;
    net.on_event = accept_all;
    net.filter = mute_0;
    int reconnects = 0;
    uint64_t most = 0, next_id = 1, off = 0;
    int i;
    for (i = 0; i < 600; i++) {
        if (!an_session(&net, att, v) || !an_session(&net, v, att)) {
            net.filter = NULL;
            an_run(&net, 200000);
            if (!an_connect(&net, att, v, 2000000)) break;
            net.filter = mute_0;
            reconnects++;
            next_id = 1;
            off = 0;
        }
        uint64_t r = rnd();
        uint8_t f[600];
        p2p_wr w;
        p2p_wr_init(&w, f, sizeof f);
        uint8_t op = (uint8_t)(r % 10 < 3 ? P2P_XOP_OPEN : r % 10 < 8 ? P2P_XOP_DATA : 1 + r % 8);
        uint64_t id = op == P2P_XOP_OPEN ? next_id++ : 1 + (r >> 8) % (next_id + 1);
        uint8_t lane = (r >> 16) % 16 == 0 ? P2P_LANE_CONTROL : (uint8_t)((r >> 20) % 2);
        switch (op) {
        case P2P_XOP_OPEN:
            p2p_wr_u8(&w, (r >> 24) % 3 ? P2P_XOPEN_SIZED : 0);
            if ((r >> 24) % 3) p2p_wr_varint(&w, rnd() % 100000);
            p2p_wr_varint(&w, 2);
            p2p_wr_bytes(&w, (const uint8_t *)"mm", 2);
            off = 0;
            break;
        case P2P_XOP_DATA: {
            size_t n = rnd() % 500;
            p2p_wr_varint(&w, (r >> 28) % 8 ? off : rnd() % 1000);
            for (size_t k = 0; k < n; k++) p2p_wr_u8(&w, (uint8_t)k);
            off += n;
            break;
        }
        case P2P_XOP_END:
            p2p_wr_varint(&w, (r >> 28) % 2 ? off : rnd() % 1000);
            for (int k = 0; k < P2P_TRANSFER_HASH_LEN; k++) p2p_wr_u8(&w, (uint8_t)rnd());
            break;
        default:
            for (size_t k = 0, n = rnd() % 40; k < n; k++) p2p_wr_u8(&w, (uint8_t)rnd());
            break;
        }
        xrec(&net, lane, op, id, f, (size_t)(w.p - f));
        if (i % 20 == 0) an_run(&net, 20000);
        p2p_peer *pv = an_session(&net, v, att);
        if (pv && pv->mem > most) most = pv->mem;
    }
    an_run(&net, 300000);
    T_EQ_INT(i, 600);
    printf("     600 random TRANSFER records: %d offers, %d data events (%llu B), %d ends, %d "
           "reconnects, session held at most %llu B\n",
           offers, data_events, (unsigned long long)data_bytes, ends, reconnects,
           (unsigned long long)most);
    T_CHECK(most <= cv.peer_memory);
    an_free(&net);
}

int main(void)
{
    T_RUN(test_optimistic_ack);
    T_RUN(test_amplification_with_lying_acks);
    T_RUN(test_transfer_lane_rules);
    T_RUN(test_owed_receipts_many_lanes);
    T_RUN(test_random_lane_frames);
    T_RUN(test_random_transfer_records);
    return t_summary("test_verify10");
}
