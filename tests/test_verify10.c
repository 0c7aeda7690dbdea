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
        if (!lie || !pa || !an_session(&net, b, a) || pa->rec.next_pn < 2) continue;
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

int main(void)
{
    T_RUN(test_optimistic_ack);
    T_RUN(test_amplification_with_lying_acks);
    return t_summary("test_verify10");
}
