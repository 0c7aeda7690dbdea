/* test_interop.c - interop-style scenarios on the in-memory network of tests/attack.h: two
 * honest hosts exchange reliable messages both ways through a network that loses, corrupts,
 * blackholes and rebinds (a NAT that changes the port or the address of one side mid-transfer).
 * Each scenario ends with every message delivered exactly once, in order, intact, on the one
 * session the hosts started with (no LEAVE, no second JOIN), and prints how long it took in
 * virtual time. The network's randomness is a fixed-seed generator: every run is the same. */
#include "attack.h"

#define IO_LATENCY_US 20000 /* one way: 40 ms round trip */
#define IO_PATH_MTU \
    1472 /* the UDP payload an Ethernet path carries over IPv4:
          * larger datagrams (MTU probes) are lost */
#define IO_MSGS \
    300 /* messages each way (IO_MSGS_LONG under loss and damage,
         * for enough losses to matter) */
#define IO_MSGS_LONG 1000
#define IO_MAX_BODY 3000 /* sizes 1 .. IO_MAX_BODY: one to three packets */
#define IO_LIMIT_US UINT64_C(600000000)
#define IO_STEP_US 10000
#define IO_BLACKHOLE_US 5000000
#define IO_TIMEOUT_US 8000000 /* the hosts' idle timeout: above the blackhole */
/* The handshake scenario's attempts may take this long: at 30% loss an INIT and its RESP both
 * get through with p = 0.49 per try, and the tries back off to one every 2 s, so 20 s leaves
 * a chance of about 1 in 3000 that an attempt fails, where 10 s would leave 1 in 100. */
#define IO_HS_TIMEOUT_US 20000000

typedef struct io_side {
    uint32_t next; /* the index expected next */
    uint32_t dups, out_of_order, damaged;
    uint32_t session; /* ev.session of the first message */
    int has_session, wrong_session;
} io_side;

typedef struct io_net {
    uint64_t rng;
    unsigned loss_pm, corrupt_pm;   /* per mille of datagrams lost / damaged */
    uint64_t hole_from, hole_until; /* everything is lost in [from, until) */
    uint64_t lost, corrupted;
    uint32_t msgs; /* messages each way */
    io_side side[2];
} io_net;

static uint64_t io_rand(io_net *s)
{
    /* xorshift64*: good enough to decide losses, and the same on every run */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * UINT64_C(2685821657736338717);
}

static int io_filter(anet *net, an_pkt *pkt)
{
    io_net *s = net->ud;
    if (pkt->len > IO_PATH_MTU) return 0;
    if (net->now >= s->hole_from && net->now < s->hole_until) {
        s->lost++;
        return 0;
    }
    if (s->loss_pm && io_rand(s) % 1000 < s->loss_pm) {
        s->lost++;
        return 0;
    }
    if (s->corrupt_pm && pkt->len && io_rand(s) % 1000 < s->corrupt_pm) {
        uint64_t r = io_rand(s);
        pkt->data[r % pkt->len] ^= (uint8_t)(1u << ((r >> 32) % 8));
        s->corrupted++;
    }
    return 1;
}

static size_t io_body_len(uint32_t i)
{
    return 1 + (i * 7919u) % IO_MAX_BODY;
}

static void io_fill(uint8_t *b, uint32_t i, size_t len)
{
    for (size_t j = 0; j < len; j++) b[j] = (uint8_t)(i * 31u + j * 7u);
    if (len >= 4) p2p_put_u32(b, i);
}

static void io_event(anet *net, int node, const p2p_event *ev)
{
    io_net *s = net->ud;
    if (ev->type != P2P_EV_MESSAGE || ev->broadcast || node > 1) return;
    io_side *x = &s->side[node];
    if (!x->has_session) {
        x->has_session = 1;
        x->session = ev->session;
    } else if (ev->session != x->session) {
        x->wrong_session++;
    }
    /* which message: the type carries the index (bodies of 1..3 bytes cannot) */
    uint32_t i = ev->msg_type;
    uint8_t want[IO_MAX_BODY];
    size_t len = io_body_len(i);
    io_fill(want, i, len);
    if (ev->len != len || memcmp(ev->data, want, len) != 0) x->damaged++;
    if (i < x->next)
        x->dups++;
    else if (i > x->next)
        x->out_of_order++;
    if (i >= x->next) x->next = i + 1;
}

static void io_setup(anet *net, io_net *s, uint64_t seed, uint64_t timeout_us)
{
    memset(s, 0, sizeof *s);
    s->rng = seed;
    s->hole_from = s->hole_until = P2P_TIME_NEVER;
    s->msgs = IO_MSGS;
    an_init(net, IO_LATENCY_US);
    net->ud = s;
    net->filter = io_filter;
    net->on_event = io_event;
    p2p_config c;
    p2p_config_init(&c);
    c.timeout_us = timeout_us;
    an_add(net, &c);
    an_add(net, &c);
}

/* Queues s->msgs messages each way (indexes from `first`). */
static void io_send_all(anet *net, io_net *s, uint32_t first)
{
    static uint8_t b[IO_MAX_BODY];
    for (int from = 0; from < 2; from++) {
        p2p_peer_handle ph = an_handle(net, from, 1 - from);
        T_CHECK(ph != 0);
        for (uint32_t i = first; i < first + s->msgs; i++) {
            size_t len = io_body_len(i);
            io_fill(b, i, len);
            int rc = p2p_peer_send(net->n[from].h, ph, (uint16_t)i, b, len, 0, NULL, net->now);
            T_EQ_INT(rc, 0);
        }
    }
    an_flush_all(net);
}

typedef void (*io_midway_fn)(anet *net, io_net *s);

/* Runs until both sides hold every message up to `last` (exclusive), calling midway once when
 * the first side is half way. Returns the virtual time it took. */
static uint64_t io_transfer(anet *net, io_net *s, uint32_t first, io_midway_fn midway)
{
    uint64_t start = net->now;
    uint32_t last = first + s->msgs;
    int fired = midway == NULL;
    io_send_all(net, s, first);
    while (net->now - start < IO_LIMIT_US && (s->side[0].next < last || s->side[1].next < last)) {
        an_run(net, IO_STEP_US);
        if (!fired &&
            (s->side[0].next >= first + s->msgs / 2 || s->side[1].next >= first + s->msgs / 2)) {
            fired = 1;
            midway(net, s);
        }
    }
    T_CHECK(fired);
    return net->now - start;
}

/* What every scenario must end with: all delivered once, in order, intact, one session. */
static void io_check(anet *net, io_net *s, uint32_t last, const char *what, uint64_t took)
{
    for (int i = 0; i < 2; i++) {
        io_side *x = &s->side[i];
        T_EQ_INT(x->next, last);
        T_EQ_INT(x->dups, 0);
        T_EQ_INT(x->out_of_order, 0);
        T_EQ_INT(x->damaged, 0);
        T_EQ_INT(x->wrong_session, 0);
        T_EQ_INT(net->n[i].joins, 1);
        T_EQ_INT(net->n[i].leaves, 0);
        T_EQ_INT(net->n[i].errors, 0);
        T_EQ_INT(net->n[i].msgs, (int)last);
    }
    if (!what) return;
    printf("     %s: %u messages (%u each way) in %.2f s of virtual time; %llu datagrams lost, "
           "%llu damaged\n",
           what, 2 * last, last, (double)took / 1e6, (unsigned long long)net->lost,
           (unsigned long long)s->corrupted);
}

static void io_connect(anet *net)
{
    p2p_peer_handle ph = an_connect(net, 0, 1, 30000000);
    T_CHECK(ph != 0);
}

/* ---- the scenarios ---------------------------------------------------------------------- */

/* 30% of datagrams lost while the handshake runs, for 20 different loss patterns: every one
 * establishes a session within the hosts' timeout, which then carries messages. */
static void test_handshake_30_percent_loss(void)
{
    uint64_t worst = 0, sum = 0, lost = 0;
    const int runs = 20;
    for (int k = 0; k < runs; k++) {
        anet net;
        io_net s;
        io_setup(&net, &s, UINT64_C(0x9e3779b97f4a7c15) * (uint64_t)(k + 1), IO_HS_TIMEOUT_US);
        s.loss_pm = 300;
        uint64_t t0 = net.now;
        p2p_peer_handle ph = an_connect(&net, 0, 1, IO_HS_TIMEOUT_US);
        T_CHECK(ph != 0);
        uint64_t took = net.now - t0;
        if (took > worst) worst = took;
        sum += took;
        lost += net.lost;
        s.loss_pm = 0;
        if (ph) {
            uint64_t t = io_transfer(&net, &s, 0, NULL);
            io_check(&net, &s, s.msgs, k == 0 ? "after a handshake under 30% loss" : NULL, t);
        }
        an_free(&net);
    }
    printf("     handshake under 30%% loss: %d of %d sessions, %.2f s on average, %.2f s at "
           "most (virtual); %llu datagrams lost\n",
           runs, runs, (double)sum / runs / 1e6, (double)worst / 1e6, (unsigned long long)lost);
}

static void transfer_with_loss(unsigned pm, const char *what)
{
    anet net;
    io_net s;
    io_setup(&net, &s, 0x5eed + pm, IO_TIMEOUT_US);
    io_connect(&net);
    s.msgs = IO_MSGS_LONG;
    s.loss_pm = pm;
    uint64_t took = io_transfer(&net, &s, 0, NULL);
    io_check(&net, &s, s.msgs, what, took);
    T_CHECK(s.lost > 0);
    an_free(&net);
}

static void test_transfer_10_percent_loss(void)
{
    transfer_with_loss(100, "10% loss");
}
static void test_transfer_30_percent_loss(void)
{
    transfer_with_loss(300, "30% loss");
}

/* 1% of datagrams get one bit flipped: the AEAD (or the header checks) drop them, and the
 * stream resends what they carried. */
static void test_transfer_1_percent_corrupted(void)
{
    anet net;
    io_net s;
    io_setup(&net, &s, 0xc0ffee, IO_TIMEOUT_US);
    io_connect(&net);
    p2p_stats before0 = an_stats(&net, 0), before1 = an_stats(&net, 1);
    s.msgs = IO_MSGS_LONG;
    s.corrupt_pm = 10;
    uint64_t took = io_transfer(&net, &s, 0, NULL);
    io_check(&net, &s, s.msgs, "1% of datagrams corrupted", took);
    T_CHECK(s.corrupted > 0);
    p2p_stats after0 = an_stats(&net, 0), after1 = an_stats(&net, 1);
    /* the damaged datagrams were dropped, not taken */
    T_CHECK(after0.dropped + after1.dropped - before0.dropped - before1.dropped > 0);
    an_free(&net);
}

static void start_blackhole(anet *net, io_net *s)
{
    s->hole_from = net->now;
    s->hole_until = net->now + IO_BLACKHOLE_US;
}

/* Nothing gets through for 5 s in mid-transfer; the timeout (8 s) is above it: the session
 * survives and the transfer completes. */
static void test_blackhole_5s_mid_transfer(void)
{
    anet net;
    io_net s;
    io_setup(&net, &s, 0xb1ac, IO_TIMEOUT_US);
    io_connect(&net);
    uint64_t took = io_transfer(&net, &s, 0, start_blackhole);
    T_CHECK(s.hole_until != P2P_TIME_NEVER && net.now > s.hole_until);
    T_CHECK(took > IO_BLACKHOLE_US);
    io_check(&net, &s, s.msgs, "5 s blackhole in mid-transfer", took);
    T_CHECK(s.lost > 0);
    an_free(&net);
}

static void rebind_port(anet *net, io_net *s)
{
    (void)s;
    p2p_addr pub = net->n[0].addr;
    pub.port = 40123;
    an_rebind(net, 0, &pub);
}

static void rebind_address(anet *net, io_net *s)
{
    (void)s;
    p2p_addr pub = an_addr("198.51.100.77:4000");
    an_rebind(net, 1, &pub);
}

/* Host 0's NAT gives it a new port in mid-transfer: its packets come from there and packets
 * to its old port are lost. The session follows it (validated, within 3x until proven). */
static void test_nat_rebinding_port_mid_transfer(void)
{
    anet net;
    io_net s;
    io_setup(&net, &s, 0x9047, IO_TIMEOUT_US);
    io_connect(&net);
    p2p_stats before = an_stats(&net, 1);
    uint64_t took = io_transfer(&net, &s, 0, rebind_port);
    io_check(&net, &s, s.msgs, "NAT rebinding of the port in mid-transfer", took);
    p2p_stats after = an_stats(&net, 1);
    T_CHECK(after.path_changes > before.path_changes);
    p2p_peer_info info;
    T_EQ_INT(p2p_host_peer_info(net.n[1].h, an_handle(&net, 1, 0), &info), 0);
    T_EQ_INT(info.address.port, 40123);
    an_free(&net);
}

/* Host 1's NAT moves it to another public address in mid-transfer. */
static void test_nat_rebinding_address_mid_transfer(void)
{
    anet net;
    io_net s;
    io_setup(&net, &s, 0xadd4, IO_TIMEOUT_US);
    io_connect(&net);
    p2p_stats before = an_stats(&net, 0);
    uint64_t took = io_transfer(&net, &s, 0, rebind_address);
    io_check(&net, &s, s.msgs, "NAT rebinding of the address in mid-transfer", took);
    p2p_stats after = an_stats(&net, 0);
    T_CHECK(after.path_changes > before.path_changes);
    p2p_peer_info info;
    T_EQ_INT(p2p_host_peer_info(net.n[0].h, an_handle(&net, 0, 1), &info), 0);
    p2p_addr want = an_addr("198.51.100.77:4000");
    T_CHECK(p2p_addr_equal(&info.address, &want));
    an_free(&net);
}

int main(void)
{
    T_RUN(test_handshake_30_percent_loss);
    T_RUN(test_transfer_10_percent_loss);
    T_RUN(test_transfer_30_percent_loss);
    T_RUN(test_transfer_1_percent_corrupted);
    T_RUN(test_blackhole_5s_mid_transfer);
    T_RUN(test_nat_rebinding_port_mid_transfer);
    T_RUN(test_nat_rebinding_address_mid_transfer);
    return t_summary("test_interop");
}
