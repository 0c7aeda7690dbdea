/* test_attack_stream.c - a peer that abuses the message stream (issue 8 rows 4, 5 and 12):
 * out-of-order pieces by the ten thousand, a record header that claims max_message and then
 * nothing, a flood of requests nobody answers, a stream window of one byte, and never an ACK.
 * Each test asserts that the victim holds at most the peer's budget for the attacker, that the
 * work done grows linearly with the attack, and that an honest peer still gets through. */
#include "attack.h"

#include <malloc.h>

enum { VICTIM, ATTACKER, HONEST };

/* The attacker's own host sends nothing to the victim over the network while the test speaks
 * for it with an_frames (which injects directly): its real stream would run into the forged
 * one. */
static int mute_attacker(anet *net, an_pkt *pkt)
{
    return !(p2p_addr_equal(&pkt->from, &net->n[ATTACKER].addr) &&
             p2p_addr_equal(&pkt->to, &net->n[VICTIM].addr));
}

/* Three hosts: the victim (with cfg), the attacker and an honest peer, the attacker connected
 * to the victim and quiet. Returns the victim's session with the attacker. */
static p2p_peer *setup(anet *net, const p2p_config *victim_cfg)
{
    an_init(net, 5000);
    an_add(net, victim_cfg);
    an_add(net, NULL);
    an_add(net, NULL);
    T_CHECK(an_connect(net, ATTACKER, VICTIM, 2000000) != 0);
    an_run(net, 500000);
    net->filter = mute_attacker;
    return an_session(net, VICTIM, ATTACKER);
}

/* Sends one packet of STREAM frames from the attacker: count pieces of piece_len bytes at
 * off, off + step, off + 2 step, ... Returns the packet length. */
static size_t send_pieces(anet *net, uint64_t off, uint64_t step, size_t count, size_t piece_len)
{
    uint8_t pt[1200], data[1200];
    memset(data, 0x5a, sizeof data);
    p2p_wr w;
    p2p_wr_init(&w, pt, sizeof pt);
    for (size_t i = 0; i < count; i++) {
        p2p_frame_put_stream_header(&w, off + i * step, piece_len);
        p2p_wr_bytes(&w, data, piece_len);
    }
    if (w.bad) abort();
    return an_frames(net, ATTACKER, VICTIM, pt, (size_t)(w.p - pt), NULL);
}

/* Sends n one-byte pieces, every other byte from first (never adjacent), 150 per packet. */
static void spray(anet *net, uint64_t first, size_t n)
{
    for (size_t i = 0; i < n; i += 150) {
        size_t k = n - i < 150 ? n - i : 150;
        send_pieces(net, first + 2 * i, 2, k, 1);
    }
}

/* The honest peer connects to the victim and a message goes each way. */
static void honest_gets_through(anet *net)
{
    net->n[HONEST].msgs = 0;
    net->n[VICTIM].msgs = 0;
    p2p_peer_handle ph = an_handle(net, HONEST, VICTIM);
    if (!ph) ph = an_connect(net, HONEST, VICTIM, 3000000);
    T_CHECK(ph != 0);
    T_EQ_INT(p2p_peer_send(net->n[HONEST].h, ph, 7, (const uint8_t *)"hello", 5, 0, NULL, net->now),
             0);
    p2p_peer_handle back = an_handle(net, VICTIM, HONEST);
    T_CHECK(back != 0);
    T_EQ_INT(p2p_peer_send(net->n[VICTIM].h, back, 7, (const uint8_t *)"hi", 2, 0, NULL, net->now),
             0);
    an_run(net, 300000);
    T_CHECK(net->n[VICTIM].msgs >= 1);
    T_CHECK(net->n[HONEST].msgs >= 1);
}

/* Row 5: 10k and 40k one-byte pieces that never touch, behind a gap that never fills. */
static uint64_t pieces_work(size_t n)
{
    anet net;
    p2p_peer *v = setup(&net, NULL);
    T_CHECK(v != NULL);
    if (!v) {
        an_free(&net);
        return 0;
    }
    uint64_t w0 = v->l0.r_pieces.work, dropped0 = an_stats(&net, VICTIM).dropped_budget;
    spray(&net, v->l0.r_base + 1, n);
    v = an_session(&net, VICTIM, ATTACKER);
    T_CHECK(v != NULL);
    uint64_t work = 0;
    if (v) {
        T_CHECK(v->l0.r_pieces.n <= P2P_PIECES_MAX);
        T_EQ_INT(v->l0.r_pieces.n, n < P2P_PIECES_MAX ? n : P2P_PIECES_MAX);
        T_CHECK(v->mem <= P2P_DEFAULT_PEER_MEMORY);
        /* what the victim holds for them: a node and a byte each, nothing like a window */
        T_CHECK(v->l0.r_pieces.held <= (uint64_t)P2P_PIECES_MAX * (sizeof(p2p_piece) + 1));
        work = v->l0.r_pieces.work - w0;
    }
    /* every piece over the cap was refused and counted */
    T_EQ_INT(an_stats(&net, VICTIM).dropped_budget - dropped0, n - P2P_PIECES_MAX);
    honest_gets_through(&net);
    an_free(&net);
    return work;
}

static void test_out_of_order_pieces_capped_and_linear(void)
{
    uint64_t w10 = pieces_work(10000), w40 = pieces_work(40000);
    printf("     work for 10k pieces %llu, for 40k %llu (%.2fx)\n", (unsigned long long)w10,
           (unsigned long long)w40, w10 ? (double)w40 / (double)w10 : 0.0);
    T_CHECK(w10 > 0);
    T_CHECK(w40 <= w10 * 45 / 10);
}

/* Pieces that arrive back to front, each just before the last: they merge into one, and a byte
 * costs the same work whatever the piece has grown to. */
static void test_adjacent_pieces_merge(void)
{
    anet net;
    p2p_peer *v = setup(&net, NULL);
    T_CHECK(v != NULL);
    if (!v) {
        an_free(&net);
        return;
    }
    uint64_t top = v->l0.r_base + 100000, w0 = v->l0.r_pieces.work;
    for (uint64_t i = 1; i <= 20000; i += 150) {
        uint8_t pt[1200];
        p2p_wr w;
        p2p_wr_init(&w, pt, sizeof pt);
        for (uint64_t k = 0; k < 150 && i + k <= 20000; k++) {
            p2p_frame_put_stream_header(&w, top - (i + k), 1);
            p2p_wr_u8(&w, 0x5a);
        }
        an_frames(&net, ATTACKER, VICTIM, pt, (size_t)(w.p - pt), NULL);
    }
    v = an_session(&net, VICTIM, ATTACKER);
    T_CHECK(v != NULL);
    if (v) {
        T_EQ_INT(v->l0.r_pieces.n, 1);
        T_EQ_INT(v->l0.r_pieces.bytes, 20000);
        /* a few tree steps per byte, not one per piece held */
        T_CHECK(v->l0.r_pieces.work - w0 <= 20000u * 8u);
        /* the buffer grows by doubling: at most twice the bytes */
        T_CHECK(v->l0.r_pieces.held <= 2u * 20000u + sizeof(p2p_piece));
    }
    an_free(&net);
}

/* Whatever the attacker sends out of order, the victim holds at most its budget for it; what
 * is over is refused (and not acknowledged). */
static void test_pieces_within_budget(void)
{
    p2p_config c;
    p2p_config_init(&c);
    c.peer_memory = 1u << 20;
    anet net;
    p2p_peer *v = setup(&net, &c);
    T_CHECK(v != NULL);
    if (!v) {
        an_free(&net);
        return;
    }
    uint64_t base = v->l0.r_base + 1;
    /* 4 MiB of 1000-byte pieces with a one-byte gap between each */
    for (size_t i = 0; i < 4200; i++) {
        send_pieces(&net, base + i * 1001, 1001, 1, 1000);
        v = an_session(&net, VICTIM, ATTACKER);
        if (!v) break;
        if (v->mem > c.peer_memory) break;
    }
    T_CHECK(v != NULL);
    if (v) {
        T_CHECK(v->mem <= c.peer_memory);
        T_CHECK(v->l0.r_pieces.bytes < c.peer_memory);
    }
    T_CHECK(an_stats(&net, VICTIM).dropped_budget > 0);
    T_CHECK(an_stats(&net, VICTIM).memory_peak <= P2P_DEFAULT_MEMORY);
    honest_gets_through(&net);
    an_free(&net);
}

/* A record header that claims max_message, then silence: nothing is allocated for the body
 * until its bytes come, and then only what they need. */
static void test_record_header_claims_max_message(void)
{
    anet net;
    p2p_peer *v = setup(&net, NULL);
    T_CHECK(v != NULL);
    if (!v) {
        an_free(&net);
        return;
    }
    uint64_t mem0 = v->mem;
    p2p_record rec = {P2P_REC_MESSAGE, 1, 0, 0, P2P_DEFAULT_MAX_MESSAGE};
    uint8_t pt[64], hdr[P2P_RECORD_HEADER_MAX];
    size_t hl = p2p_record_encode(hdr, &rec);
    p2p_wr w;
    p2p_wr_init(&w, pt, sizeof pt);
    p2p_frame_put_stream_header(&w, v->l0.r_base, hl + 10);
    p2p_wr_bytes(&w, hdr, hl);
    p2p_wr_bytes(&w, "0123456789", 10);
    T_CHECK(an_frames(&net, ATTACKER, VICTIM, pt, (size_t)(w.p - pt), NULL) > 0);
    an_run(&net, 2000000);
    v = an_session(&net, VICTIM, ATTACKER);
    T_CHECK(v != NULL);
    if (v) {
        T_CHECK(v->l0.r_in_body);
        size_t body = v->l0.r_body ? malloc_usable_size(v->l0.r_body) : 0;
        printf("     body buffer after a 16 MiB header and 10 bytes: %zu bytes\n", body);
        T_CHECK(body <= 8192);
        T_CHECK(v->mem - mem0 <= 8192);
    }
    honest_gets_through(&net);
    an_free(&net);
}

/* Whatever the attacker sends - a header that claims max_message, its body in order, pieces
 * all over the window, PINGs - the victim never holds more than its budget for it. */
static void test_whatever_it_sends(void)
{
    p2p_config c;
    p2p_config_init(&c);
    c.peer_memory = 2u << 20;
    anet net;
    p2p_peer *v = setup(&net, &c);
    T_CHECK(v != NULL);
    if (!v) {
        an_free(&net);
        return;
    }
    p2p_record rec = {P2P_REC_MESSAGE, 1, 0, 0, P2P_DEFAULT_MAX_MESSAGE};
    uint8_t pt[1200], hdr[P2P_RECORD_HEADER_MAX], junk[1100];
    memset(junk, 0x33, sizeof junk);
    size_t hl = p2p_record_encode(hdr, &rec);
    p2p_wr w;
    p2p_wr_init(&w, pt, sizeof pt);
    p2p_frame_put_stream_header(&w, v->l0.r_base, hl);
    p2p_wr_bytes(&w, hdr, hl);
    an_frames(&net, ATTACKER, VICTIM, pt, (size_t)(w.p - pt), NULL);
    uint32_t x = 2024;
    uint64_t most = 0, most_seen = 0;
    for (int i = 0; i < 20000; i++) {
        v = an_session(&net, VICTIM, ATTACKER);
        if (!v) break;
        x = x * 1103515245u + 12345u;
        unsigned kind = (x >> 16) % 10;
        x = x * 1103515245u + 12345u;
        size_t len = 1 + (x >> 8) % sizeof junk;
        uint64_t span = v->l0.r_granted - v->l0.r_base - sizeof junk;
        if (span > (4u << 20)) span = 4u << 20;
        x = x * 1103515245u + 12345u;
        uint64_t off = kind < 7 ? v->l0.r_base + 1 + ((uint64_t)x << 7) % span : v->l0.r_base;
        p2p_wr_init(&w, pt, sizeof pt);
        if (kind < 9) {
            p2p_frame_put_stream_header(&w, off, len);
            p2p_wr_bytes(&w, junk, len);
        } else {
            p2p_wr_u8(&w, P2P_FRAME_PING);
        }
        an_frames(&net, ATTACKER, VICTIM, pt, (size_t)(w.p - pt), NULL);
        if (i % 100 == 0) an_run(&net, 1000);
        v = an_session(&net, VICTIM, ATTACKER);
        if (!v) break;
        if (v->mem > most) most = v->mem;
        /* what is really allocated for the body and the pieces, whatever was charged */
        uint64_t seen =
            (v->l0.r_body ? malloc_usable_size(v->l0.r_body) : 0) + v->l0.r_pieces.bytes;
        if (seen > most_seen) most_seen = seen;
    }
    T_CHECK(v != NULL);
    printf("     most charged %.2f MiB, most held for body and pieces %.2f MiB, budget 2 MiB\n",
           (double)most / (1 << 20), (double)most_seen / (1 << 20));
    T_CHECK(most <= c.peer_memory);
    T_CHECK(most_seen <= c.peer_memory);
    p2p_stats st = an_stats(&net, VICTIM);
    T_CHECK(st.dropped_budget > 0);
    T_CHECK(st.memory_peak <= P2P_DEFAULT_MEMORY);
    honest_gets_through(&net);
    an_free(&net);
}

/* Row 12: the attacker never acknowledges anything while the victim sends it data for 60 s
 * of virtual time, and keeps the session alive with PINGs that the victim acknowledges. */
static void test_never_acks(void)
{
    anet net;
    p2p_peer *v = setup(&net, NULL);
    T_CHECK(v != NULL);
    if (!v) {
        an_free(&net);
        return;
    }
    p2p_peer_handle vh = an_handle(&net, VICTIM, ATTACKER);
    static uint8_t msg[10000];
    memset(msg, 1, sizeof msg);
    uint8_t ping[1] = {P2P_FRAME_PING};
    size_t most = 0;
    int full = 0;
    for (int ms = 0; ms < 60000; ms++) {
        an_frames(&net, ATTACKER, VICTIM, ping, 1, NULL);
        an_frames(&net, ATTACKER, VICTIM, ping, 1, NULL);
        if (ms % 10 == 0 && p2p_peer_send(net.n[VICTIM].h, vh, 1, msg, sizeof msg, 0, NULL,
                                          net.now) == P2P_ERR_FULL)
            full = 1;
        an_run(&net, 1000);
        v = an_session(&net, VICTIM, ATTACKER);
        if (!v) break;
        size_t outstanding = (size_t)(v->rec.next_pn - v->rec.base_pn);
        if (outstanding > most) most = outstanding;
        if (v->rec.cap > P2P_SENT_RECORD_MAX || v->mem > P2P_DEFAULT_PEER_MEMORY) break;
    }
    T_CHECK(v != NULL);
    if (v) {
        printf("     sent-packet record: %zu entries, %llu packets sent, most outstanding %zu\n",
               v->rec.cap, (unsigned long long)v->rec.next_pn, most);
        T_CHECK(v->rec.cap <= P2P_SENT_RECORD_MAX);
        T_CHECK(most <= P2P_SENT_RECORD_MAX);
        T_CHECK(v->mem <= P2P_DEFAULT_PEER_MEMORY);
        /* the send queue is the application's limit, and it was reached */
        T_CHECK(full);
        T_CHECK(v->l0.send_end - v->l0.sbase <= P2P_DEFAULT_SEND_QUEUE + sizeof msg + 8);
    }
    p2p_stats st = an_stats(&net, VICTIM);
    T_CHECK(st.memory <= P2P_DEFAULT_MEMORY);
    T_CHECK(st.memory_peak <= P2P_DEFAULT_MEMORY);
    honest_gets_through(&net);
    an_free(&net);
}

/* A peer that sends requests (MESSAGE_RECEIPT) between plain messages and never sees them
 * answered: the victim's set of replies owed stays within its cap, and the rest are answered
 * at once with an error. */
static void test_unanswered_requests(void)
{
    anet net;
    p2p_peer *v = setup(&net, NULL);
    net.filter = NULL; /* the attacker's real stream carries these */
    T_CHECK(v != NULL);
    if (!v) {
        an_free(&net);
        return;
    }
    p2p_peer *a = an_session(&net, ATTACKER, VICTIM);
    size_t n = 3 * P2P_RECEIPT_RANGES;
    for (size_t i = 0; i < n && a; i++) {
        /* the attacker's own books must expect the replies, or it would end the session */
        p2p_rangeset_add(&a->l0.awaiting, a->l0.records_sent, a->l0.records_sent + 1);
        p2p_peer_append(net.n[ATTACKER].h, a, P2P_REC_MESSAGE_RECEIPT, (const uint8_t *)"q", 1);
        p2p_peer_append(net.n[ATTACKER].h, a, P2P_REC_MESSAGE, (const uint8_t *)"m", 1);
        if (i % 512 == 511) {
            an_run(&net, 50000);
            a = an_session(&net, ATTACKER, VICTIM);
        }
    }
    an_run(&net, 2000000);
    v = an_session(&net, VICTIM, ATTACKER);
    T_CHECK(v != NULL);
    if (v) {
        printf("     %llu records received, %zu ranges owed\n",
               (unsigned long long)v->l0.records_recv, v->l0.owed.n);
        T_CHECK(v->l0.records_recv >= 2 * n);
        T_CHECK(v->l0.owed.n <= P2P_RECEIPT_RANGES);
        T_CHECK(v->mem <= P2P_DEFAULT_PEER_MEMORY);
    }
    /* the victim's application saw only the requests it could still answer */
    T_CHECK(net.n[VICTIM].msgs <= (int)(n + P2P_RECEIPT_RANGES));
    T_CHECK(net.n[ATTACKER].replies >= (int)(n - P2P_RECEIPT_RANGES));
    honest_gets_through(&net);
    an_free(&net);
}

/* The other side of receipts: a peer that never answers the victim's requests while it
 * receives plain messages between them splits the victim's awaited set; the set stops at its
 * cap and sends that want a reply are refused as a full queue. */
static void test_awaited_replies_capped(void)
{
    anet net;
    p2p_peer *v = setup(&net, NULL);
    net.filter = NULL;
    T_CHECK(v != NULL);
    if (!v) {
        an_free(&net);
        return;
    }
    p2p_peer_handle vh = an_handle(&net, VICTIM, ATTACKER);
    int full = 0;
    for (size_t i = 0; i < 2 * P2P_RECEIPT_RANGES; i++) {
        if (p2p_peer_send(net.n[VICTIM].h, vh, 1, (const uint8_t *)"q", 1, 1, NULL, net.now) ==
            P2P_ERR_FULL)
            full++;
        T_EQ_INT(p2p_peer_send(net.n[VICTIM].h, vh, 1, (const uint8_t *)"m", 1, 0, NULL, net.now),
                 0);
        if (i % 512 == 511) an_run(&net, 50000);
    }
    an_run(&net, 1000000);
    v = an_session(&net, VICTIM, ATTACKER);
    T_CHECK(v != NULL);
    if (v) T_CHECK(v->l0.awaiting.n <= P2P_RECEIPT_RANGES);
    T_EQ_INT(full, P2P_RECEIPT_RANGES);
    honest_gets_through(&net);
    an_free(&net);
}

/* Runs the network for us, one step per deadline of host `node`: the number of steps is how
 * often it woke (a host that spins would wake without end; the count stops at a million). */
static uint64_t run_counting(anet *net, uint64_t us, int node)
{
    uint64_t wakeups = 0, end = net->now + us;
    while (net->now < end && wakeups < 1000000) {
        uint64_t d = p2p_host_next_timeout(net->n[node].h);
        if (d >= end) {
            an_run(net, end - net->now);
            break;
        }
        an_run(net, d > net->now ? d - net->now : 1);
        wakeups++;
    }
    return wakeups;
}

/* Rows 4 and 5 of the window: the attacker grants a stream window of one byte and never more,
 * so nothing the victim queues for it can leave. The queue stops at the budget (mesh and
 * introduction records get P2P_ERR_LIMIT) and the victim does not spin. */
static void test_one_byte_window(void)
{
    p2p_config c;
    p2p_config_init(&c);
    c.peer_memory = 4u << 20;
    anet net;
    p2p_peer *v = setup(&net, &c);
    net.filter = NULL;
    T_CHECK(v != NULL);
    if (!v) {
        an_free(&net);
        return;
    }
    v->l0.peer_max = v->l0.send_next + 1; /* as if the handshake had granted one byte */
    p2p_peer_handle vh = an_handle(&net, VICTIM, ATTACKER);
    static uint8_t big[64 * 1024];
    int full = 0, limit = 0;
    for (int i = 0; i < 300 && !full; i++)
        full = p2p_peer_send(net.n[VICTIM].h, vh, 1, big, sizeof big, 0, NULL, net.now) ==
               P2P_ERR_FULL;
    for (int i = 0; i < 300 && !limit; i++)
        limit =
            p2p_peer_append(net.n[VICTIM].h, v, P2P_REC_MEMBERS, big, sizeof big) == P2P_ERR_LIMIT;
    T_CHECK(full);
    T_CHECK(limit);
    T_CHECK(v->mem <= c.peer_memory);
    uint64_t sent0 = an_pkts_to(&net, VICTIM, &net.n[ATTACKER].addr);
    uint64_t wakeups = run_counting(&net, 60000000, VICTIM);
    uint64_t sent = an_pkts_to(&net, VICTIM, &net.n[ATTACKER].addr) - sent0;
    printf("     60 s at a one-byte window: %llu wakeups, %llu packets\n",
           (unsigned long long)wakeups, (unsigned long long)sent);
    v = an_session(&net, VICTIM, ATTACKER);
    T_CHECK(v != NULL);
    if (v) T_CHECK(v->mem <= c.peer_memory);
    T_CHECK(wakeups <= 2000);
    T_CHECK(sent <= 2000);
    honest_gets_through(&net);
    an_free(&net);
}

/* The event and transmit queues of a driver that never drains stop at the node's budget. */
static void test_undrained_queues_bounded(void)
{
    p2p_config c;
    p2p_config_init(&c);
    c.memory = 2u << 20;
    p2p_identity id;
    uint8_t seed[P2P_SEED_LEN];
    memset(seed, 3, sizeof seed);
    p2p_identity_from_seed(&id, seed);
    c.identity = &id;
    c.seed = 99;
    p2p_host *h;
    T_EQ_INT(p2p_host_new(&h, &c, 1000), 0);
    p2p_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = P2P_EV_DATAGRAM;
    static uint8_t data[1000];
    int refused = 0;
    for (int i = 0; i < 10000; i++) refused += p2p_event_push(h, &ev, data, sizeof data) != 0;
    p2p_addr to = an_addr("192.0.2.99:1");
    for (int i = 0; i < 10000; i++) refused += p2p_tx_push(h, &to, data, sizeof data) != 0;
    p2p_stats st;
    p2p_host_stats(h, &st);
    T_CHECK(refused > 0);
    T_CHECK(st.memory <= c.memory);
    T_CHECK(st.memory_peak <= c.memory);
    T_EQ_INT(st.dropped_budget, (uint64_t)refused);
    /* draining gives it all back */
    while (p2p_host_next_event(h, &ev)) {
    }
    uint8_t buf[P2P_MAX_PACKET];
    while (p2p_host_next_datagram(h, &to, buf, sizeof buf)) {
    }
    p2p_host_next_event(h, &ev);
    p2p_host_stats(h, &st);
    T_EQ_INT(st.memory, 0);
    p2p_host_free(h);
}

/* No regression: a 16 MiB message each way at once arrives intact, within the budgets. */
static uint64_t sum_a, sum_b;
static int got_a, got_b;
static uint64_t fnv(const uint8_t *p, size_t n)
{
    uint64_t x = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) x = (x ^ p[i]) * 1099511628211ull;
    return x;
}
static void on_big(anet *net, int node, const p2p_event *ev)
{
    (void)net;
    if (ev->type != P2P_EV_MESSAGE || ev->msg_type != 9) return;
    if (node == VICTIM) {
        got_a++;
        sum_a = fnv(ev->data, ev->len);
    } else {
        got_b++;
        sum_b = fnv(ev->data, ev->len);
    }
}

static void test_16mib_message_both_ways(void)
{
    anet net;
    an_init(&net, 5000);
    an_add(&net, NULL);
    an_add(&net, NULL);
    p2p_peer_handle ab = an_connect(&net, ATTACKER, VICTIM, 2000000);
    p2p_peer_handle ba = an_handle(&net, VICTIM, ATTACKER);
    T_CHECK(ab && ba);
    size_t n = P2P_DEFAULT_MAX_MESSAGE;
    uint8_t *m = malloc(n);
    for (size_t i = 0; i < n; i++) m[i] = (uint8_t)(i * 2654435761u >> 13);
    uint64_t want = fnv(m, n);
    net.on_event = on_big;
    got_a = got_b = 0;
    T_EQ_INT(p2p_peer_send(net.n[ATTACKER].h, ab, 9, m, n, 0, NULL, net.now), 0);
    T_EQ_INT(p2p_peer_send(net.n[VICTIM].h, ba, 9, m, n, 0, NULL, net.now), 0);
    uint64_t most = 0;
    for (int i = 0; i < 600 && !(got_a && got_b); i++) {
        an_run(&net, 100000);
        for (int k = 0; k < 2; k++) {
            p2p_peer *p = an_session(&net, k, 1 - k);
            if (p && p->mem > most) most = p->mem;
        }
    }
    printf("     most held for one peer: %.1f MiB\n", (double)most / (1 << 20));
    T_EQ_INT(got_a, 1);
    T_EQ_INT(got_b, 1);
    T_CHECK(sum_a == want);
    T_CHECK(sum_b == want);
    T_CHECK(most <= P2P_DEFAULT_PEER_MEMORY);
    T_EQ_INT(an_stats(&net, VICTIM).dropped_budget, 0);
    T_CHECK(an_stats(&net, VICTIM).memory_peak <= P2P_DEFAULT_MEMORY);
    free(m);
    an_free(&net);
}

int main(void)
{
    T_RUN(test_out_of_order_pieces_capped_and_linear);
    T_RUN(test_adjacent_pieces_merge);
    T_RUN(test_pieces_within_budget);
    T_RUN(test_record_header_claims_max_message);
    T_RUN(test_whatever_it_sends);
    T_RUN(test_never_acks);
    T_RUN(test_unanswered_requests);
    T_RUN(test_awaited_replies_capped);
    T_RUN(test_one_byte_window);
    T_RUN(test_undrained_queues_bounded);
    T_RUN(test_16mib_message_both_ways);
    return t_summary("test_attack_stream");
}
