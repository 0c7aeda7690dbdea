/* test_transfer.c - streaming transfers (docs/PROTOCOL.md section 4.2) between real hosts on
 * the attack harness's virtual network: content arrives exactly once and byte-exact, the
 * sender's unacknowledged bytes stay under the window, cancel and refusal from either side,
 * resume, the integrity check, session loss; and a hostile sender's records (ids never opened,
 * offsets that do not follow, more bytes than announced, oversized chunks and metadata, too
 * many transfers at once) end the session or are refused, with memory bounded. */
#include "attack.h"

#include "../csrc/p2p_transfer.h"

enum { SENDER, RECEIVER };

/* Byte k of the test content. */
static uint8_t content_at(uint64_t k)
{
    return (uint8_t)(k * 131 + (k >> 9) * 7 + 3);
}

/* What one side's application does and saw. */
typedef struct app {
    /* receiver: what to do with an offer: accept from `resume` (absorbing a prefix, wrong
     * when `bad_prefix`), or refuse */
    int refuse, ignore, bad_prefix;
    uint64_t resume;
    uint64_t cancel_at; /* cancel once this many bytes are through (0: never) */
    /* sender */
    uint64_t size; /* bytes to send */
    int unknown;   /* do not announce the size */
    uint32_t xfer;
    /* both */
    int offers, wants, ends, status, data_events, bad_bytes, out_of_order;
    uint64_t got, next, max_unacked, total_seen;
    char reason[300];
} app;

static app apps[2];

static void write_until_full(anet *net, int i, const p2p_event *ev)
{
    app *a = &apps[i];
    p2p_host *h = net->n[i].h;
    if (!a->size) return; /* the test writes itself */
    if (ev->offset > 0 && a->next < ev->offset) {
        /* resumed: the receiver has [0, offset); the hash needs it too */
        uint8_t buf[4096];
        for (uint64_t k = 0; k < ev->offset; k += sizeof buf) {
            size_t n = ev->offset - k < sizeof buf ? (size_t)(ev->offset - k) : sizeof buf;
            for (size_t j = 0; j < n; j++) buf[j] = content_at(k + j);
            T_EQ_INT(p2p_host_transfer_absorb(h, a->xfer, buf, n), 0);
        }
        a->next = ev->offset;
    }
    static uint8_t chunk[P2P_TRANSFER_CHUNK];
    while (a->next < a->size) {
        if (a->cancel_at && a->next >= a->cancel_at) {
            T_EQ_INT(p2p_host_transfer_cancel(h, a->xfer, "sender gave up", net->now), 0);
            return;
        }
        size_t n = a->size - a->next < sizeof chunk ? (size_t)(a->size - a->next) : sizeof chunk;
        for (size_t j = 0; j < n; j++) chunk[j] = content_at(a->next + j);
        int rc = p2p_host_transfer_write(h, a->xfer, chunk, n, net->now);
        if (rc == P2P_ERR_FULL) return;
        T_EQ_INT(rc, 0);
        if (rc) return;
        a->next += n;
        p2p_peer *p = an_session(net, i, !i);
        if (p && p2p_peer_unacked(p, 0) > a->max_unacked) a->max_unacked = p2p_peer_unacked(p, 0);
    }
    T_EQ_INT(p2p_host_transfer_finish(h, a->xfer, net->now), 0);
}

static void on_event(anet *net, int i, const p2p_event *ev)
{
    app *a = &apps[i];
    p2p_host *h = net->n[i].h;
    switch (ev->type) {
    case P2P_EV_TRANSFER_OFFER: {
        a->offers++;
        a->xfer = ev->transfer;
        a->total_seen = ev->total;
        snprintf(a->reason, sizeof a->reason, "%.*s", (int)ev->len, (const char *)ev->data);
        if (a->ignore) break;
        if (a->refuse) {
            T_EQ_INT(p2p_host_transfer_cancel(h, ev->transfer, "refused", net->now), 0);
            break;
        }
        for (uint64_t k = 0; k < a->resume; k++) {
            uint8_t b = (uint8_t)(content_at(k) ^ (a->bad_prefix && k == a->resume / 2));
            T_EQ_INT(p2p_host_transfer_absorb(h, ev->transfer, &b, 1), 0);
        }
        a->next = a->resume;
        T_EQ_INT(p2p_host_transfer_accept(h, ev->transfer, a->resume, net->now), 0);
        break;
    }
    case P2P_EV_TRANSFER_WANT:
        a->wants++;
        T_EQ_INT(ev->transfer, a->xfer);
        write_until_full(net, i, ev);
        break;
    case P2P_EV_TRANSFER_DATA:
        a->data_events++;
        if (ev->offset != a->next) a->out_of_order++;
        for (size_t j = 0; j < ev->len; j++)
            if (ev->data[j] != content_at(ev->offset + j)) a->bad_bytes++;
        a->got += ev->len;
        a->next = ev->offset + ev->len;
        if (a->cancel_at && a->got >= a->cancel_at)
            T_EQ_INT(p2p_host_transfer_cancel(h, ev->transfer, "receiver gave up", net->now), 0);
        break;
    case P2P_EV_TRANSFER_END:
        a->ends++;
        a->status = ev->status;
        snprintf(a->reason, sizeof a->reason, "%.*s", (int)ev->len, (const char *)ev->data);
        break;
    default: break;
    }
}

/* Two connected hosts with the apps reset; the sender's app offers size bytes. */
static void setup(anet *net, uint64_t size, int unknown)
{
    memset(apps, 0, sizeof apps);
    an_init(net, 10000);
    an_add(net, NULL);
    an_add(net, NULL);
    net->on_event = on_event;
    T_CHECK(an_connect(net, SENDER, RECEIVER, 2000000) != 0);
    apps[SENDER].size = size;
    apps[SENDER].unknown = unknown;
}

static void offer(anet *net, const char *meta)
{
    p2p_host *h = net->n[SENDER].h;
    T_EQ_INT(p2p_host_transfer_open(h, an_handle(net, SENDER, RECEIVER), 0,
                                    apps[SENDER].unknown ? P2P_TRANSFER_UNKNOWN : apps[SENDER].size,
                                    (const uint8_t *)meta, strlen(meta), &apps[SENDER].xfer,
                                    net->now),
             0);
    an_flush(net, SENDER);
}

/* 8 MiB, twice the window: exactly once, in order, byte-exact; the sender never holds more
 * than the window and a chunk unacknowledged; memory comes back (but for the lane's state). */
static void test_transfer_roundtrip(void)
{
    anet net;
    setup(&net, 8u << 20, 0);
    uint64_t mem0 = an_stats(&net, RECEIVER).memory;
    offer(&net, "photo.jpg");
    an_run(&net, 20000000);
    app *s = &apps[SENDER], *r = &apps[RECEIVER];
    T_EQ_INT(r->offers, 1);
    T_CHECK(strcmp(r->reason, "") == 0 || r->ends == 1);
    T_EQ_INT(r->total_seen, 8u << 20);
    T_EQ_INT(r->got, 8u << 20);
    T_EQ_INT(r->bad_bytes, 0);
    T_EQ_INT(r->out_of_order, 0);
    T_EQ_INT(r->ends, 1);
    T_EQ_INT(r->status, P2P_TRANSFER_DONE);
    T_EQ_INT(s->ends, 1);
    T_EQ_INT(s->status, P2P_TRANSFER_DONE);
    /* back-pressure: more than one WANT (the window refilled), and never more than the
     * window plus one record unacknowledged */
    T_CHECK(s->wants >= 2);
    T_CHECK(s->max_unacked <= P2P_TRANSFER_WINDOW);
    T_CHECK(an_stats(&net, SENDER).memory_peak < P2P_TRANSFER_WINDOW + (1u << 20));
    /* The transfer's lane keeps its state until the session ends: at most the lane table, the
     * lane and the smallest send ring (4 KiB, for the receiver's ACCEPT and DONE); and the node
     * keeps a few spare bodies of the chunks' size. Nothing that grew with the 8 MiB. */
    T_CHECK(an_stats(&net, RECEIVER).memory <=
            mem0 + sizeof(p2p_lanes) + sizeof(p2p_lane) + 4096 + P2P_SPARES * P2P_TRANSFER_CHUNK);
    printf("     8 MiB: %d WANTs, %d DATA events, max unacked %llu, sender peak %llu\n", s->wants,
           r->data_events, (unsigned long long)s->max_unacked,
           (unsigned long long)an_stats(&net, SENDER).memory_peak);
    an_free(&net);
}

/* A size not announced: END makes it known; the offer's meta reaches the receiver. */
static void test_transfer_unknown_size(void)
{
    anet net;
    setup(&net, 100000, 1);
    offer(&net, "stream");
    an_run(&net, 3000000);
    T_EQ_INT(apps[RECEIVER].total_seen, P2P_TRANSFER_UNKNOWN);
    T_EQ_INT(apps[RECEIVER].got, 100000);
    T_EQ_INT(apps[RECEIVER].status, P2P_TRANSFER_DONE);
    T_EQ_INT(apps[SENDER].status, P2P_TRANSFER_DONE);
    an_free(&net);
}

static void test_transfer_refused(void)
{
    anet net;
    setup(&net, 100000, 0);
    apps[RECEIVER].refuse = 1;
    offer(&net, "unwanted");
    an_run(&net, 2000000);
    T_EQ_INT(apps[RECEIVER].offers, 1);
    T_EQ_INT(apps[RECEIVER].status, P2P_TRANSFER_CANCELLED);
    T_EQ_INT(apps[SENDER].ends, 1);
    T_EQ_INT(apps[SENDER].wants, 0);
    T_EQ_INT(apps[SENDER].status, P2P_TRANSFER_PEER_CANCEL);
    T_CHECK(strcmp(apps[SENDER].reason, "refused") == 0);
    an_free(&net);
}

/* Cancel mid-way from one side: both sides end, the session lives, and a new transfer works. */
static void cancel_from(int side)
{
    anet net;
    setup(&net, 4u << 20, 0);
    apps[side].cancel_at = 1u << 20;
    offer(&net, "x");
    an_run(&net, 5000000);
    int other = !side;
    T_EQ_INT(apps[side].ends, 1);
    T_EQ_INT(apps[side].status, P2P_TRANSFER_CANCELLED);
    T_EQ_INT(apps[other].ends, 1);
    T_EQ_INT(apps[other].status, P2P_TRANSFER_PEER_CANCEL);
    T_CHECK(strcmp(apps[other].reason, side ? "receiver gave up" : "sender gave up") == 0);
    T_CHECK(apps[RECEIVER].got < (4u << 20));
    T_EQ_INT(apps[RECEIVER].bad_bytes, 0);
    /* the session is fine: another transfer goes through */
    T_CHECK(an_handle(&net, SENDER, RECEIVER) != 0);
    memset(apps, 0, sizeof apps);
    apps[SENDER].size = 50000;
    offer(&net, "again");
    an_run(&net, 2000000);
    T_EQ_INT(apps[RECEIVER].got, 50000);
    T_EQ_INT(apps[SENDER].status, P2P_TRANSFER_DONE);
    T_EQ_INT(net.n[SENDER].leaves + net.n[RECEIVER].leaves, 0);
    an_free(&net);
}

static void test_transfer_cancel_by_sender(void)
{
    cancel_from(SENDER);
}

static void test_transfer_cancel_by_receiver(void)
{
    cancel_from(RECEIVER);
}

/* The receiver has the first 300000 bytes: only the rest travels, and the whole is checked. */
static void test_transfer_resume(void)
{
    anet net;
    setup(&net, 1000000, 0);
    apps[RECEIVER].resume = 300000;
    offer(&net, "partial");
    an_run(&net, 3000000);
    T_EQ_INT(apps[RECEIVER].got, 700000);
    T_EQ_INT(apps[RECEIVER].bad_bytes, 0);
    T_EQ_INT(apps[RECEIVER].status, P2P_TRANSFER_DONE);
    T_EQ_INT(apps[SENDER].status, P2P_TRANSFER_DONE);
    an_free(&net);
}

/* A prefix with one wrong byte: the whole-content hash differs, and both sides learn it. */
static void test_transfer_integrity_failure(void)
{
    anet net;
    setup(&net, 1000000, 0);
    apps[RECEIVER].resume = 300000;
    apps[RECEIVER].bad_prefix = 1;
    offer(&net, "partial");
    an_run(&net, 3000000);
    T_EQ_INT(apps[RECEIVER].got, 700000);
    T_EQ_INT(apps[RECEIVER].status, P2P_TRANSFER_INTEGRITY);
    T_EQ_INT(apps[SENDER].status, P2P_TRANSFER_INTEGRITY);
    T_EQ_INT(net.n[SENDER].leaves + net.n[RECEIVER].leaves, 0);
    an_free(&net);
}

/* The session ends mid-way: both sides' transfers end as lost, and nothing is left held. */
static void test_transfer_session_lost(void)
{
    anet net;
    setup(&net, 8u << 20, 0);
    uint64_t mem0 = an_stats(&net, SENDER).memory;
    offer(&net, "x");
    an_run(&net, 200000);
    T_CHECK(apps[RECEIVER].got > 0);
    T_EQ_INT(p2p_peer_disconnect(net.n[SENDER].h, an_handle(&net, SENDER, RECEIVER), net.now), 0);
    an_run(&net, 1000000);
    T_EQ_INT(apps[SENDER].ends, 1);
    T_EQ_INT(apps[SENDER].status, P2P_TRANSFER_LOST);
    T_EQ_INT(apps[RECEIVER].ends, 1);
    T_EQ_INT(apps[RECEIVER].status, P2P_TRANSFER_LOST);
    p2p_transfer_info info;
    T_EQ_INT(p2p_host_transfer_info(net.n[SENDER].h, apps[SENDER].xfer, &info), P2P_ERR_PEER);
    T_CHECK(an_stats(&net, SENDER).memory <= mem0);
    an_free(&net);
}

/* Misuse of the API is refused without effect. */
static void test_transfer_api_checks(void)
{
    anet net;
    setup(&net, 10, 0);
    p2p_host *h = net.n[SENDER].h;
    p2p_peer_handle ph = an_handle(&net, SENDER, RECEIVER);
    uint32_t t;
    uint8_t meta[P2P_TRANSFER_META_MAX + 1] = {0};
    T_EQ_INT(p2p_host_transfer_open(h, 999, 0, 10, NULL, 0, &t, net.now), P2P_ERR_PEER);
    T_EQ_INT(p2p_host_transfer_open(h, ph, 0, 10, meta, sizeof meta, &t, net.now), P2P_ERR_INVALID);
    offer(&net, "");
    t = apps[SENDER].xfer;
    /* not accepted yet */
    T_EQ_INT(p2p_host_transfer_write(h, t, meta, 1, net.now), P2P_ERR_INVALID);
    T_EQ_INT(p2p_host_transfer_finish(h, t, net.now), P2P_ERR_INVALID);
    apps[SENDER].size = 0; /* the app writes nothing when WANT comes */
    an_run(&net, 100000);
    T_EQ_INT(apps[SENDER].wants, 1);
    T_EQ_INT(p2p_host_transfer_write(h, t, meta, 11, net.now), P2P_ERR_TOO_BIG);
    T_EQ_INT(p2p_host_transfer_write(h, t, meta, 0, net.now), P2P_ERR_INVALID);
    T_EQ_INT(p2p_host_transfer_finish(h, t, net.now), P2P_ERR_INVALID); /* 10 bytes missing */
    T_EQ_INT(p2p_host_transfer_write(h, t, meta, 10, net.now), 0);
    T_EQ_INT(p2p_host_transfer_write(h, t, meta, 1, net.now), P2P_ERR_TOO_BIG);
    T_EQ_INT(p2p_host_transfer_absorb(h, t, meta, 1), P2P_ERR_INVALID);
    T_EQ_INT(p2p_host_transfer_finish(h, t, net.now), 0);
    T_EQ_INT(p2p_host_transfer_absorb(h, t, meta, 1), P2P_ERR_INVALID); /* after the end */
    T_EQ_INT(p2p_host_transfer_write(h, t, meta, 1, net.now), P2P_ERR_INVALID);
    T_EQ_INT(p2p_host_transfer_accept(h, t, 0, net.now), P2P_ERR_PEER); /* not incoming */
    an_free(&net);
}

/* ---- a hostile sender ---------------------------------------------------------------------- */

enum { VICTIM = 0, ATTACKER = 1 };

/* The victim's answers never reach the attacker's host (which would end the session on STOPs
 * for ids it never opened): the test reads the victim's side. */
static int mute_victim(anet *net, an_pkt *pkt)
{
    return !(p2p_addr_equal(&pkt->from, &net->n[VICTIM].addr) &&
             p2p_addr_equal(&pkt->to, &net->n[ATTACKER].addr));
}

static void hostile_setup(anet *net)
{
    memset(apps, 0, sizeof apps);
    an_init(net, 5000);
    an_add(net, NULL);
    an_add(net, NULL);
    net->on_event = on_event;
    T_CHECK(an_connect(net, ATTACKER, VICTIM, 2000000) != 0);
    an_run(net, 200000);
    net->filter = mute_victim;
}

/* A TRANSFER record body: op, id, then the given fields. */
static size_t body(uint8_t *b, size_t cap, uint8_t op, uint64_t id, const uint8_t *rest, size_t n)
{
    p2p_wr w;
    p2p_wr_init(&w, b, cap);
    p2p_wr_u8(&w, op);
    p2p_wr_varint(&w, id);
    p2p_wr_bytes(&w, rest, n);
    return (size_t)(w.p - b);
}

/* An OPEN of id with a total (UNKNOWN: none) and meta_len bytes of metadata. */
static void open_rec(anet *net, uint64_t id, uint64_t total, size_t meta_len)
{
    static uint8_t b[4096], f[2048];
    p2p_wr w;
    p2p_wr_init(&w, f, sizeof f);
    p2p_wr_u8(&w, total == P2P_TRANSFER_UNKNOWN ? 0 : P2P_XOPEN_SIZED);
    if (total != P2P_TRANSFER_UNKNOWN) p2p_wr_varint(&w, total);
    p2p_wr_varint(&w, meta_len);
    for (size_t i = 0; i < meta_len; i++) p2p_wr_u8(&w, 'm');
    an_record(net, ATTACKER, VICTIM, P2P_REC_TRANSFER, b,
              body(b, sizeof b, P2P_XOP_OPEN, id, f, (size_t)(w.p - f)));
}

static void data_rec(anet *net, uint64_t id, uint64_t off, size_t n)
{
    static uint8_t b[P2P_TRANSFER_CHUNK + 64], f[P2P_TRANSFER_CHUNK + 16];
    p2p_wr w;
    p2p_wr_init(&w, f, sizeof f);
    p2p_wr_varint(&w, off);
    for (size_t i = 0; i < n; i++) p2p_wr_u8(&w, content_at(off + i));
    an_record(net, ATTACKER, VICTIM, P2P_REC_TRANSFER, b,
              body(b, sizeof b, P2P_XOP_DATA, id, f, (size_t)(w.p - f)));
}

/* Runs the network and says whether the victim ended its session with the attacker for a
 * protocol error. */
static int victim_ended(anet *net)
{
    an_run(net, 300000);
    return an_handle(net, VICTIM, ATTACKER) == 0 && net->n[VICTIM].leaves == 1;
}

static void test_hostile_unknown_id(void)
{
    anet net;
    hostile_setup(&net);
    data_rec(&net, 7, 0, 100); /* never opened */
    T_CHECK(victim_ended(&net));
    T_EQ_INT(apps[VICTIM].data_events, 0);
    an_free(&net);
}

static void test_hostile_data_before_accept(void)
{
    anet net;
    hostile_setup(&net);
    apps[VICTIM].ignore = 1; /* the offer waits for the application's answer */
    open_rec(&net, 1, 1000, 4);
    an_run(&net, 100000);
    T_EQ_INT(apps[VICTIM].offers, 1);
    data_rec(&net, 1, 0, 100); /* DATA before ACCEPT */
    T_CHECK(victim_ended(&net));
    T_EQ_INT(apps[VICTIM].data_events, 0);
    T_EQ_INT(apps[VICTIM].status, P2P_TRANSFER_LOST);
    an_free(&net);
}

static void test_hostile_gap(void)
{
    anet net;
    hostile_setup(&net);
    open_rec(&net, 1, 1000, 0);
    an_run(&net, 100000);
    data_rec(&net, 1, 0, 100);
    data_rec(&net, 1, 200, 100); /* 100..200 skipped */
    T_CHECK(victim_ended(&net));
    T_EQ_INT(apps[VICTIM].got, 100);
    an_free(&net);
}

static void test_hostile_oversize(void)
{
    anet net;
    hostile_setup(&net);
    open_rec(&net, 1, 1000, 0);
    an_run(&net, 100000);
    data_rec(&net, 1, 0, 900);
    data_rec(&net, 1, 900, 101); /* one past the total */
    T_CHECK(victim_ended(&net));
    T_EQ_INT(apps[VICTIM].got, 900);
    an_free(&net);
}

static void test_hostile_big_chunk(void)
{
    anet net;
    hostile_setup(&net);
    /* a record this large needs the victim's acknowledgements: the attacker opens the transfer
     * through its API, so that its host knows the id the victim answers about */
    net.filter = NULL;
    uint32_t t;
    T_EQ_INT(p2p_host_transfer_open(net.n[ATTACKER].h, an_handle(&net, ATTACKER, VICTIM), 0,
                                    P2P_TRANSFER_UNKNOWN, NULL, 0, &t, net.now),
             0);
    apps[ATTACKER].xfer = t;
    an_run(&net, 100000);
    T_EQ_INT(apps[VICTIM].offers, 1);
    data_rec(&net, t, 0, P2P_TRANSFER_CHUNK + 1);
    T_CHECK(victim_ended(&net));
    T_EQ_INT(apps[VICTIM].got, 0);
    an_free(&net);
}

static void test_hostile_meta_and_reused_id(void)
{
    anet net;
    hostile_setup(&net);
    open_rec(&net, 1, 10, P2P_TRANSFER_META_MAX + 1);
    T_CHECK(victim_ended(&net));
    T_EQ_INT(apps[VICTIM].offers, 0);
    an_free(&net);
    hostile_setup(&net);
    apps[VICTIM].refuse = 1;
    open_rec(&net, 5, 10, 3);
    an_run(&net, 100000);
    T_EQ_INT(apps[VICTIM].offers, 1);
    /* late records of the refused transfer are dropped quietly */
    data_rec(&net, 5, 0, 10);
    an_run(&net, 100000);
    T_CHECK(an_handle(&net, VICTIM, ATTACKER) != 0);
    open_rec(&net, 5, 10, 3); /* ids only grow */
    T_CHECK(victim_ended(&net));
    an_free(&net);
}

/* 40 offers at once: 16 are held (each a small fixed cost), 24 refused with a STOP, and the
 * session stays up. */
static void test_hostile_transfer_cap(void)
{
    anet net;
    hostile_setup(&net);
    apps[VICTIM].ignore = 1; /* the victim's app does not answer: offers pile up */
    uint64_t mem0 = an_stats(&net, VICTIM).memory;
    for (uint64_t id = 1; id <= 40; id++) open_rec(&net, id, 1u << 30, 100);
    an_run(&net, 300000);
    p2p_peer *v = an_session(&net, VICTIM, ATTACKER);
    T_CHECK(v != NULL);
    if (v) T_EQ_INT(v->xfer_in, P2P_TRANSFER_PER_PEER);
    T_EQ_INT(an_stats(&net, VICTIM).transfers_refused, 40 - P2P_TRANSFER_PER_PEER);
    /* each offer held costs its state, not its announced gigabyte */
    uint64_t held = an_stats(&net, VICTIM).memory - mem0;
    printf("     16 offers held: %llu bytes\n", (unsigned long long)held);
    T_CHECK(held <= P2P_TRANSFER_PER_PEER * 1024u + 65536u);
    an_free(&net);
}

/* Any byte string as a TRANSFER record body: never a crash (the fuzz target does more). */
static void test_hostile_garbage_ops(void)
{
    static const uint8_t bad[][6] = {
        {0x00, 0x01},             /* op 0 */
        {0x08, 0x01},             /* op past DONE */
        {0x02, 0x00, 0x00, 'x'},  /* id 0 */
        {0x05, 0x09, 0x00},       /* ACCEPT of an id never given out */
        {0x07, 0x01, 0xff},       /* DONE with trailing bytes */
        {0x01, 0x01, 0x02, 0x00}, /* OPEN with unknown flags */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        anet net;
        hostile_setup(&net);
        size_t n = i == 0 || i == 1 ? 2 : i == 2 ? 4 : i == 3 ? 3 : i == 4 ? 3 : 4;
        an_record(&net, ATTACKER, VICTIM, P2P_REC_TRANSFER, bad[i], n);
        T_CHECK(victim_ended(&net));
        an_free(&net);
    }
}

int main(void)
{
    T_RUN(test_transfer_roundtrip);
    T_RUN(test_transfer_unknown_size);
    T_RUN(test_transfer_refused);
    T_RUN(test_transfer_cancel_by_sender);
    T_RUN(test_transfer_cancel_by_receiver);
    T_RUN(test_transfer_resume);
    T_RUN(test_transfer_integrity_failure);
    T_RUN(test_transfer_session_lost);
    T_RUN(test_transfer_api_checks);
    T_RUN(test_hostile_unknown_id);
    T_RUN(test_hostile_data_before_accept);
    T_RUN(test_hostile_gap);
    T_RUN(test_hostile_oversize);
    T_RUN(test_hostile_big_chunk);
    T_RUN(test_hostile_meta_and_reused_id);
    T_RUN(test_hostile_transfer_cap);
    T_RUN(test_hostile_garbage_ops);
    return t_summary("transfer");
}
