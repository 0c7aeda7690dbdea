/* test_cc.c - congestion control on the simulator's bottleneck links (virtual time, so every
 * figure is exact for its seed): link utilization, goodput under random loss, the queueing
 * delay a flow adds, two flows sharing a bottleneck, a rate drop mid-run, and 2000 small
 * messages through heavy loss and reordering; for BBR (the default) and NewReno. Each test
 * prints what it measured. Unit tests of the controller itself come first. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver/sim.h"
#include "p2p_cc.h"
#include "p2p_reliable.h"
#include "p2p_state.h" /* the trace reads the controller's state */
#include "p2pnet.h"
#include "t.h"
#include "tnet.h"

#define MSG_TYPE 7
#define MBIT 1000000u
#define MS 1000u
#define SEC 1000000u

/* ---- unit tests of the controller -------------------------------------------------------- */

/* A path of `bw` bytes/us and `rtt` us fed to a controller round by round: each round the
 * sender sends what the window and the pacer let it (an app-limited one at most 20 packets),
 * delivered at most at the path's rate (the rest waits in a queue, which lengthens the RTT);
 * one ACK per packet, and lost_pct of every 100 packets declared lost. */
typedef struct fake_path {
    p2p_cc cc;
    uint64_t now, delivered, rtt;
    double bw;
} fake_path;

static void fake_rounds(fake_path *f, int rounds, unsigned lost_pct, int app_limited)
{
    const uint32_t mss = 1200;
    for (int r = 0; r < rounds; r++) {
        double pace = p2p_cc_pacing_rate(&f->cc, f->rtt) * (double)f->rtt;
        uint64_t cwnd = p2p_cc_window(&f->cc);
        uint64_t send = cwnd < (uint64_t)pace ? cwnd : (uint64_t)pace;
        if (app_limited && send > 20u * mss) send = 20u * mss;
        unsigned pkts = (unsigned)(send / mss);
        if (!pkts) pkts = 1;
        double sent_rate = (double)pkts * mss / (double)f->rtt;
        double rate = sent_rate < f->bw ? sent_rate : f->bw;
        /* what does not fit the path's rate queues: the round trip grows by its drain time */
        uint64_t rtt = f->rtt;
        if (sent_rate > f->bw)
            rtt += (uint64_t)(((double)pkts * mss - f->bw * (double)f->rtt) / f->bw);
        uint64_t prior = f->delivered;
        uint64_t step = rtt / pkts;
        for (unsigned i = 0; i < pkts; i++) {
            f->now += step;
            if (lost_pct && (i * lost_pct) % 100 + lost_pct >= 100) {
                p2p_cc_on_lost(&f->cc, mss, 1, f->now - rtt, 0, f->now);
                continue;
            }
            f->delivered += mss;
            p2p_rate_sample rs;
            memset(&rs, 0, sizeof rs);
            rs.rate = rate * (100 - lost_pct) / 100.0;
            rs.app_limited = app_limited;
            rs.prior_delivered = prior;
            rs.delivered = f->delivered;
            rs.acked = mss;
            rs.in_flight = (uint64_t)(pkts - i - 1) * mss;
            rs.rtt = rtt;
            rs.min_rtt = f->rtt;
            rs.srtt = rtt;
            p2p_cc_on_packet_acked(&f->cc, mss, f->now - rtt, rs.in_flight + mss);
            p2p_cc_on_ack(&f->cc, &rs, f->now);
        }
    }
}

static void fake_init(fake_path *f, int kind, double bw, uint64_t rtt)
{
    memset(f, 0, sizeof *f);
    f->now = 1000;
    f->bw = bw;
    f->rtt = rtt;
    p2p_cc_init(&f->cc, kind, 0, f->now);
    p2p_cc_set_mss(&f->cc, 1200);
}

static void test_bbr_model(void)
{
    /* 12.5 bytes/us = 100 Mbit/s, 40 ms: the BDP is 500 kB */
    fake_path f;
    fake_init(&f, P2P_CC_BBR, 12.5, 40000);
    T_EQ_INT(f.cc.state, P2P_BBR_STARTUP);
    fake_rounds(&f, 40, 0, 0);
    printf("  bbr model: state %d, bw %.2f B/us, min_rtt %llu, cwnd %llu\n", f.cc.state,
           f.cc.max_bw, (unsigned long long)f.cc.min_rtt, (unsigned long long)f.cc.cwnd);
    T_CHECK(f.cc.filled_pipe);
    T_EQ_INT(f.cc.state, P2P_BBR_PROBE_BW);
    T_CHECK(f.cc.max_bw > 12.0 && f.cc.max_bw <= 12.5 * 1.25);
    T_EQ_INT(f.cc.min_rtt, 40000);
    /* the window: the BDP and a headroom of 32 packets cruising, twice the BDP probing */
    T_CHECK(f.cc.cwnd >= 500000 && f.cc.cwnd <= 2 * 500000 + 32 * 1200);
    T_EQ_INT(p2p_cc_bandwidth(&f.cc) / 1000000, (uint64_t)(f.cc.max_bw));
}

static void test_bbr_random_loss_bounded(void)
{
    /* 5% random loss every round: below the loss threshold, the model stands */
    fake_path f;
    fake_init(&f, P2P_CC_BBR, 12.5, 40000);
    fake_rounds(&f, 30, 0, 0);
    double before = f.cc.max_bw;
    fake_rounds(&f, 60, 5, 0);
    printf("  5%% loss: bw %.2f -> %.2f B/us (lower bound %.2f), congested rounds %llu\n", before,
           f.cc.max_bw, f.cc.bw_lo, (unsigned long long)f.cc.congestion_events);
    T_EQ_INT(f.cc.congestion_events, 0);
    T_CHECK(p2p_cc_pacing_rate(&f.cc, 40000) >= 0.6 * before);
    /* 20% loss every round is congestion: the lower bound comes down, by at most 30% a
     * round, and the window with it */
    uint64_t cwnd = f.cc.cwnd;
    fake_rounds(&f, 3, 20, 0);
    printf("  20%% loss: %llu congested rounds, bw_lo %.2f, cwnd %llu -> %llu\n",
           (unsigned long long)f.cc.congestion_events, f.cc.bw_lo, (unsigned long long)cwnd,
           (unsigned long long)f.cc.cwnd);
    T_CHECK(f.cc.congestion_events >= 1);
    T_CHECK(f.cc.bw_lo > 0 && f.cc.bw_lo < f.cc.max_bw);
    T_CHECK(f.cc.cwnd < cwnd);
}

static void test_bbr_app_limited(void)
{
    /* app-limited samples below the estimate never lower it, however many rounds pass */
    fake_path f;
    fake_init(&f, P2P_CC_BBR, 12.5, 40000);
    fake_rounds(&f, 30, 0, 0);
    double bw = f.cc.max_bw;
    fake_rounds(&f, 50, 0, 1);
    printf("  app-limited 50 rounds: bw %.2f -> %.2f\n", bw, f.cc.max_bw);
    T_CHECK(f.cc.max_bw >= bw);
    /* the same samples not app-limited do (the filter forgets in 10 rounds) */
    fake_rounds(&f, 12, 0, 0);
    fake_init(&f, P2P_CC_BBR, 12.5, 40000);
    fake_rounds(&f, 30, 0, 0);
    f.bw = 1.0;
    fake_rounds(&f, 15, 0, 0);
    T_CHECK(f.cc.max_bw < 2.0);
}

static void test_bbr_probe_rtt(void)
{
    /* While the RTT stays near its minimum, the minimum is confirmed and there is no ProbeRTT */
    fake_path f;
    fake_init(&f, P2P_CC_BBR, 12.5, 40000);
    fake_rounds(&f, 400, 0, 0); /* 16 s */
    T_CHECK(f.now > 15 * SEC);
    T_EQ_INT(f.cc.state, P2P_BBR_PROBE_BW);
    /* The path gets longer (a route change, or a queue that never drains): within 10 s of
     * the last minimum, ProbeRTT brings the window down to 4 packets and the new minimum is
     * learnt */
    f.rtt = 60000;
    int seen = 0;
    uint64_t low = UINT64_MAX, t0 = f.now;
    for (int i = 0; i < 400 && f.now < t0 + 12 * SEC; i++) {
        fake_rounds(&f, 1, 0, 0);
        if (f.cc.state == P2P_BBR_PROBE_RTT) {
            seen = 1;
            if (f.cc.cwnd < low) low = f.cc.cwnd;
        }
    }
    printf("  ProbeRTT seen %d, window %llu, min_rtt then %llu us\n", seen, (unsigned long long)low,
           (unsigned long long)f.cc.min_rtt);
    T_CHECK(seen);
    T_EQ_INT(low, 4 * 1200);
    T_EQ_INT(f.cc.min_rtt, 60000);
    T_EQ_INT(f.cc.state, P2P_BBR_PROBE_BW);
    T_CHECK(f.cc.cwnd > 12 * 60000);
}

static void test_cc_undo(void)
{
    /* NewReno: a loss halves the window; when that loss proves spurious the halving is undone */
    p2p_cc cc;
    p2p_cc_init(&cc, P2P_CC_NEWRENO, 0, 0);
    p2p_cc_set_mss(&cc, 1200);
    cc.cwnd = 100000;
    cc.ssthresh = 200000;
    p2p_cc_on_lost(&cc, 1200, 2, 500, 0, 1000);
    T_EQ_INT(cc.cwnd, 50000);
    p2p_cc_on_spurious(&cc, 1200);
    T_EQ_INT(cc.cwnd, 50000); /* one of the two was spurious: not yet */
    p2p_cc_on_spurious(&cc, 1200);
    T_EQ_INT(cc.cwnd, 100000);
    T_CHECK(cc.ssthresh == 200000);
    T_EQ_INT(cc.undos, 1);
    /* a real loss since: no undo */
    p2p_cc_on_lost(&cc, 1200, 1, 2000, 0, 3000);
    p2p_cc_on_lost(&cc, 1200, 1, 2500, 0, 3500); /* same episode */
    p2p_cc_on_spurious(&cc, 1200);
    T_EQ_INT(cc.cwnd, 50000);

    /* BBR: a congested round's lower bound is undone when its losses were reordering */
    fake_path f;
    fake_init(&f, P2P_CC_BBR, 12.5, 40000);
    fake_rounds(&f, 30, 0, 0);
    fake_rounds(&f, 1, 20, 0);
    fake_rounds(&f, 1, 0, 0); /* the round is judged when the next one starts */
    T_CHECK(f.cc.bw_lo > 0);
    unsigned n = f.cc.ep_lost;
    T_CHECK(n > 0);
    for (unsigned i = 0; i < n; i++) p2p_cc_on_spurious(&f.cc, 1200);
    T_CHECK(f.cc.bw_lo == 0);
}

/* Reordering: a packet declared lost and then acknowledged widens both thresholds. */
static void rec_acked(void *ud, const p2p_sent *s)
{
    (void)ud;
    (void)s;
}
static void rec_lost(void *ud, const p2p_sent *s)
{
    (void)s;
    (*(int *)ud)++;
}

static void ack1(p2p_recovery *r, uint64_t lo, uint64_t hi, uint64_t now, p2p_recovery_cb *cb)
{
    p2p_frame f;
    memset(&f, 0, sizeof f);
    f.type = P2P_FRAME_ACK;
    f.u.ack.count = 1;
    f.u.ack.r[0].lo = lo;
    f.u.ack.r[0].hi = hi;
    p2p_recovery_on_ack(r, &f, now, cb);
}

static void test_reorder_adapts(void)
{
    p2p_recovery r;
    uint64_t pn, t = 1000000;
    int lost = 0;
    p2p_recovery_cb cb = {&lost, rec_acked, rec_lost};
    p2p_recovery_init(&r, t);
    p2p_recovery_set_cc(&r, P2P_CC_NEWRENO, 0, t);
    p2p_recovery_rtt_sample(&r, 40000);
    for (int i = 0; i < 20; i++) p2p_recovery_on_sent(&r, t, 1200, P2P_SENT_ELICITING, 0, 0, &pn);
    uint64_t cwnd = r.cc.cwnd;
    /* 0 arrives after 1..9: lost by the packet threshold (3), then acknowledged */
    ack1(&r, 1, 9, t + 40000, &cb);
    T_EQ_INT(lost, 1);
    T_CHECK(r.cc.cwnd < cwnd);
    ack1(&r, 0, 0, t + 41000, &cb);
    T_EQ_INT(r.spurious_losses, 1);
    T_EQ_INT(r.cc.cwnd, cwnd + 9 * 1200); /* undone: the window before the loss */
    T_EQ_INT(r.pkt_thresh, 10);           /* overtaken by 9 packets */
    T_EQ_INT(r.reo_steps, 1);             /* and the time threshold grew by min_rtt/4 */
    /* 10 is overtaken by 11..19 (9 packets): within the new threshold, not lost */
    ack1(&r, 11, 19, t + 42000, &cb);
    T_EQ_INT(lost, 1);
    p2p_recovery_free(&r);
}

/* ---- the simulator: a sender and a receiver over a bottleneck ---------------------------- */

#define MAX_SENDERS 2

typedef struct flow {
    p2p_identity id;
    p2p_host *h;
    p2p_addr addr;
    p2p_peer_handle peer; /* the sender's handle of the receiver */
    uint32_t next_send;   /* next message index */
    uint32_t limit;       /* messages to send in all (0: without end) */
    size_t msg_len;
    /* at the receiver */
    p2p_peer_handle from;
    int dialling;
    uint32_t next_recv;
    uint64_t bytes, done_at;
    int bad;
} flow;

typedef struct run {
    p2p_sim *sim;
    flow f[MAX_SENDERS];
    int nflows;
    p2p_identity rid;
    p2p_host *rx; /* the receiver, behind the bottleneck (its DOWN link) */
    p2p_addr rx_addr;
    p2p_sim_link down, up;
    int cc;
    uint64_t queued_max; /* sender keeps at most this many bytes queued */
} run;

static const tnet_msgs shape = {16, 0, 1, 31, 7}; /* only the index matters: fixed length */

static void fill_msg(uint8_t *buf, size_t len, uint32_t i)
{
    memset(buf, (int)(i * 31u), len);
    buf[0] = (uint8_t)i;
    buf[1] = (uint8_t)(i >> 8);
    buf[2] = (uint8_t)(i >> 16);
    buf[3] = (uint8_t)(i >> 24);
    (void)shape;
}

static void drain_rx(run *r)
{
    p2p_event ev;
    while (p2p_host_next_event(r->rx, &ev)) {
        if (ev.type == P2P_EV_JOIN) /* the flow dialling now */
            for (int i = 0; i < r->nflows; i++)
                if (r->f[i].dialling) {
                    r->f[i].from = ev.peer;
                    r->f[i].dialling = 0;
                }
        if (ev.type != P2P_EV_MESSAGE) continue;
        flow *f = NULL;
        for (int i = 0; i < r->nflows; i++)
            if (r->f[i].from == ev.peer) f = &r->f[i];
        if (!f || ev.len != f->msg_len || ev.len < 4) {
            if (f) f->bad++;
            continue;
        }
        uint32_t idx = tnet_msg_index(ev.data);
        if (idx != f->next_recv || ev.data[ev.len - 1] != (uint8_t)(idx * 31u)) f->bad++;
        f->next_recv = idx + 1;
        f->bytes += ev.len;
        if (f->limit && f->next_recv == f->limit) f->done_at = p2p_sim_now(r->sim);
    }
}

/* Keeps each sender's queue topped up, so that only the network limits it. */
static void feed(run *r)
{
    static uint8_t buf[16384];
    for (int i = 0; i < r->nflows; i++) {
        flow *f = &r->f[i];
        p2p_event ev;
        while (p2p_host_next_event(f->h, &ev))
            if (ev.type == P2P_EV_JOIN) f->peer = ev.peer;
        if (!f->peer) continue;
        p2p_peer_info info;
        if (p2p_host_peer_info(f->h, f->peer, &info) || info.state != P2P_PEER_CONNECTED) continue;
        uint64_t queued = info.bytes_queued;
        int sent = 0;
        while (queued < r->queued_max && (!f->limit || f->next_send < f->limit)) {
            fill_msg(buf, f->msg_len, f->next_send);
            if (p2p_peer_send(f->h, f->peer, MSG_TYPE, buf, f->msg_len, 0, NULL,
                              p2p_sim_now(r->sim)))
                break;
            f->next_send++;
            queued += f->msg_len;
            sent = 1;
        }
        if (sent) p2p_sim_flush(r->sim, f->h);
    }
}

/* CC_TRACE=1 prints each flow's state every 100 ms of virtual time (for tuning). */
static int trace = -1;
static uint64_t trace_at, trace_bytes[MAX_SENDERS];

static void trace_flows(run *r)
{
    uint64_t now = p2p_sim_now(r->sim);
    if (now < trace_at + 100 * MS) return;
    for (int i = 0; i < r->nflows; i++) {
        p2p_peer_info info;
        if (!r->f[i].peer || p2p_host_peer_info(r->f[i].h, r->f[i].peer, &info)) continue;
        const p2p_cc *cc = &p2p_lookup(r->f[i].h, r->f[i].peer)->rec.cc;
        double mbit = (double)(r->f[i].bytes - trace_bytes[i]) * 8 / (double)(now - trace_at);
        trace_bytes[i] = r->f[i].bytes;
        printf("    t %6.2f flow %d: %6.2f Mbit/s srtt %6.1f min %5.1f cwnd %8llu infl %8llu bw "
               "%6.2f lost %llu spur %llu | st %d g %.2f minrtt %.1f bwlo %.2f inlo %llu\n",
               (double)now / SEC, i, mbit, (double)info.srtt_us / MS, (double)info.min_rtt_us / MS,
               (unsigned long long)info.cwnd, (unsigned long long)info.in_flight,
               (double)info.bandwidth * 8 / MBIT, (unsigned long long)info.lost,
               (unsigned long long)info.spurious, cc->state, cc->pacing_gain,
               (double)cc->min_rtt / MS, cc->bw_lo * 8, (unsigned long long)cc->inflight_lo);
    }
    trace_at = now;
}

static void run_to(run *r, uint64_t until)
{
    if (trace < 0) trace = getenv("CC_TRACE") != NULL;
    while (p2p_sim_now(r->sim) < until) {
        p2p_sim_step(r->sim, until);
        drain_rx(r);
        feed(r);
        if (trace) trace_flows(r);
    }
}

typedef struct path {
    uint64_t rate_bps;
    uint64_t rtt_us;
    double loss;    /* random, on the bottleneck and on the ACKs' way back */
    double reorder; /* the network's: a packet held back by up to 10 ms */
} path;

/* The network's own latency, when it reorders: its reordering delay is up to twice the
 * latency plus 1 ms, so 4.5 ms of it make reordering by up to 10 ms; the rest of the round
 * trip is the links' propagation delay. */
#define REORDER_LATENCY_US 4500u

static int run_new(run *r, const path *p, int cc, int nflows, size_t msg_len, uint32_t limit,
                   uint64_t seed)
{
    memset(r, 0, sizeof *r);
    trace_at = 0;
    memset(trace_bytes, 0, sizeof trace_bytes);
    p2p_sim_config sc;
    memset(&sc, 0, sizeof sc);
    /* CC_SEED=n shifts every seed (to see how much a figure varies between runs). */
    sc.seed = seed + (getenv("CC_SEED") ? strtoull(getenv("CC_SEED"), NULL, 10) : 0);
    sc.reorder = p->reorder;
    sc.latency_us = p->reorder > 0 ? REORDER_LATENCY_US : 0;
    if (p2p_sim_new(&r->sim, &sc)) return -1;
    r->cc = cc;
    r->nflows = nflows;
    r->queued_max = 4u << 20;
    uint64_t one_way = p->rtt_us / 2 - sc.latency_us;
    /* The bottleneck: the receiver's downlink, a drop-tail queue of one BDP. */
    r->down.rate_bps = p->rate_bps;
    r->down.queue_bytes = p->rate_bps / 8 * p->rtt_us / SEC;
    r->down.delay_us = one_way;
    r->down.loss = p->loss;
    r->up.delay_us = one_way;
    r->up.loss = p->loss;
    p2p_config cfg;
    p2p_config_init(&cfg);
    cfg.congestion = cc;
    cfg.mediator = 1;
    cfg.timeout_us = 60 * SEC;
    if (tnet_identity(&r->rid, 0x51, 1) ||
        tnet_sim_host(r->sim, &cfg, &r->rid, 0, P2P_SIM_NAT_NONE, &r->rx, &r->rx_addr))
        return -1;
    if (p2p_sim_set_link(r->sim, r->rx, P2P_SIM_DOWN, &r->down) ||
        p2p_sim_set_link(r->sim, r->rx, P2P_SIM_UP, &r->up))
        return -1;
    for (int i = 0; i < nflows; i++) {
        flow *f = &r->f[i];
        f->msg_len = msg_len;
        f->limit = limit;
        p2p_config_init(&cfg);
        cfg.congestion = cc;
        cfg.mediator = 1;
        cfg.timeout_us = 60 * SEC;
        if (tnet_identity(&f->id, (uint8_t)(0x60 + i), 2) ||
            tnet_sim_host(r->sim, &cfg, &f->id, 0, P2P_SIM_NAT_NONE, &f->h, &f->addr))
            return -1;
    }
    return 0;
}

/* Flow i dials the receiver now. */
static void flow_start(run *r, int i)
{
    flow *f = &r->f[i];
    p2p_peer_handle h;
    p2p_host_connect(f->h, &r->rx_addr, NULL, p2p_sim_now(r->sim), &h);
    p2p_sim_flush(r->sim, f->h);
    /* the receiver learns the handle at JOIN */
    f->dialling = 1;
    uint64_t until = p2p_sim_now(r->sim) + 2 * SEC;
    while (!f->from && p2p_sim_now(r->sim) < until) run_to(r, p2p_sim_now(r->sim) + 1);
}

static void run_free(run *r)
{
    for (int i = 0; i < r->nflows; i++) {
        p2p_host_free(r->f[i].h);
        p2p_identity_wipe(&r->f[i].id);
    }
    p2p_host_free(r->rx);
    p2p_identity_wipe(&r->rid);
    p2p_sim_free(r->sim);
}

typedef struct window {
    uint64_t t, bytes[MAX_SENDERS];
    p2p_sim_link_stats ls;
} window;

static void mark(run *r, window *w)
{
    w->t = p2p_sim_now(r->sim);
    for (int i = 0; i < r->nflows; i++) w->bytes[i] = r->f[i].bytes;
    p2p_sim_link_stats_get(r->sim, r->rx, P2P_SIM_DOWN, &w->ls);
}

typedef struct figures {
    double goodput_mbit; /* all flows, application bytes */
    double flow_mbit[MAX_SENDERS];
    double util;          /* link bytes (with headers) / capacity */
    double qdelay_avg_ms; /* mean queueing delay of the packets that left the link */
    double qdelay_max_ms;
    uint64_t drops;
} figures;

static figures measure(const run *r, const window *a, const window *b, uint64_t rate_bps)
{
    figures g;
    memset(&g, 0, sizeof g);
    double secs = (double)(b->t - a->t) / SEC;
    for (int i = 0; i < r->nflows; i++) {
        g.flow_mbit[i] = (double)(b->bytes[i] - a->bytes[i]) * 8 / secs / MBIT;
        g.goodput_mbit += g.flow_mbit[i];
    }
    g.util = (double)(b->ls.bytes - a->ls.bytes) * 8 / secs / (double)rate_bps;
    uint64_t pk = b->ls.packets - a->ls.packets;
    g.qdelay_avg_ms =
        pk ? (double)(b->ls.queue_delay_sum_us - a->ls.queue_delay_sum_us) / pk / MS : 0;
    g.qdelay_max_ms = (double)b->ls.queue_delay_max_us / MS;
    g.drops = (b->ls.queue_drops - a->ls.queue_drops) + (b->ls.loss_drops - a->ls.loss_drops);
    return g;
}

static const char *cc_name(int cc)
{
    return cc == P2P_CC_NEWRENO ? "newreno" : "bbr";
}

/* One bulk flow of 16 KiB messages: measured from `from` to `to` seconds. */
static figures bulk(int cc, const path *p, uint64_t from, uint64_t to, uint64_t seed,
                    uint64_t *srtt)
{
    run r;
    figures g;
    memset(&g, 0, sizeof g);
    if (run_new(&r, p, cc, 1, 16384, 0, seed)) {
        T_CHECK(0);
        return g;
    }
    flow_start(&r, 0);
    run_to(&r, from);
    window a, b;
    mark(&r, &a);
    run_to(&r, to);
    mark(&r, &b);
    g = measure(&r, &a, &b, p->rate_bps);
    p2p_peer_info info;
    p2p_host_peer_info(r.f[0].h, r.f[0].peer, &info);
    if (srtt) *srtt = info.srtt_us;
    printf("  %-7s %3llu Mbit/s %3llu ms loss %4.1f%%: goodput %6.2f Mbit/s, link %5.1f%%, "
           "queue delay avg %5.1f ms max %5.1f ms, srtt %5.1f ms, cwnd %llu, bw %.1f Mbit/s, "
           "lost %llu (%llu spurious), drops %llu\n",
           cc_name(cc), (unsigned long long)(p->rate_bps / MBIT),
           (unsigned long long)(p->rtt_us / MS), p->loss * 100, g.goodput_mbit, g.util * 100,
           g.qdelay_avg_ms, g.qdelay_max_ms, (double)info.srtt_us / MS,
           (unsigned long long)info.cwnd, (double)info.bandwidth * 8 / MBIT,
           (unsigned long long)info.lost, (unsigned long long)info.spurious,
           (unsigned long long)g.drops);
    T_EQ_INT(r.f[0].bad, 0);
    run_free(&r);
    return g;
}

static const path link100 = {100u * MBIT, 40 * MS, 0, 0};

static void test_sim_utilization(void)
{
    /* 100 Mbit/s, 40 ms, no loss: the link is used, and the queue stays short */
    uint64_t srtt = 0;
    figures g = bulk(P2P_CC_BBR, &link100, 2 * SEC, 8 * SEC, 11, &srtt);
    T_CHECK(g.util >= 0.90);
    /* the delay a flow adds: mean queueing delay within a quarter of the base round trip,
     * so the round trip it sees is at most 1.25 x the link's */
    T_CHECK(g.qdelay_avg_ms <= 0.25 * 40);
    T_CHECK(srtt <= 40 * MS * 5 / 4);
}

static void test_sim_random_loss(void)
{
    path p = link100;
    figures g0 = bulk(P2P_CC_BBR, &p, 2 * SEC, 8 * SEC, 12, NULL);
    p.loss = 0.02;
    figures g2 = bulk(P2P_CC_BBR, &p, 2 * SEC, 8 * SEC, 12, NULL);
    p.loss = 0.05;
    figures g5 = bulk(P2P_CC_BBR, &p, 2 * SEC, 8 * SEC, 12, NULL);
    printf("  bbr goodput at 2%% loss: %.0f%% of 0%%; at 5%%: %.0f%%\n",
           100 * g2.goodput_mbit / g0.goodput_mbit, 100 * g5.goodput_mbit / g0.goodput_mbit);
    T_CHECK(g2.goodput_mbit >= 0.80 * g0.goodput_mbit);
    T_CHECK(g5.goodput_mbit >= 0.60 * g0.goodput_mbit);
    /* the other path: 10 Mbit/s, 100 ms */
    path slow = {10u * MBIT, 100 * MS, 0, 0};
    figures s0 = bulk(P2P_CC_BBR, &slow, 3 * SEC, 10 * SEC, 13, NULL);
    slow.loss = 0.02;
    figures s2 = bulk(P2P_CC_BBR, &slow, 3 * SEC, 10 * SEC, 13, NULL);
    printf("  bbr goodput at 10 Mbit/s, 100 ms, 2%% loss: %.0f%% of 0%%\n",
           100 * s2.goodput_mbit / s0.goodput_mbit);
    T_CHECK(s0.util >= 0.90);
    T_CHECK(s2.goodput_mbit >= 0.80 * s0.goodput_mbit);
}

static void test_sim_newreno(void)
{
    /* NewReno is still there: it fills a clean link, and random loss costs it dearly */
    path p = link100;
    figures g0 = bulk(P2P_CC_NEWRENO, &p, 2 * SEC, 8 * SEC, 12, NULL);
    p.loss = 0.02;
    figures g2 = bulk(P2P_CC_NEWRENO, &p, 2 * SEC, 8 * SEC, 12, NULL);
    printf("  newreno goodput at 2%% loss: %.0f%% of 0%%\n",
           100 * g2.goodput_mbit / g0.goodput_mbit);
    T_CHECK(g0.util >= 0.80);
    T_CHECK(g2.goodput_mbit < 0.5 * g0.goodput_mbit);
}

static void test_sim_fairness(void)
{
    /* two BBR flows through one bottleneck, the second starting 2 s after the first */
    run r;
    if (run_new(&r, &link100, P2P_CC_BBR, 2, 16384, 0, 21)) {
        T_CHECK(0);
        return;
    }
    flow_start(&r, 0);
    run_to(&r, 2 * SEC);
    flow_start(&r, 1);
    run_to(&r, 10 * SEC);
    window a, b;
    mark(&r, &a);
    run_to(&r, 20 * SEC);
    mark(&r, &b);
    figures g = measure(&r, &a, &b, link100.rate_bps);
    double fair = g.goodput_mbit / 2;
    printf("  two flows: %.2f and %.2f Mbit/s (fair share %.2f: %.0f%% and %.0f%%), link "
           "%.1f%%, queue delay avg %.1f ms\n",
           g.flow_mbit[0], g.flow_mbit[1], fair, 100 * g.flow_mbit[0] / fair,
           100 * g.flow_mbit[1] / fair, g.util * 100, g.qdelay_avg_ms);
    for (int i = 0; i < 2; i++) {
        T_CHECK(g.flow_mbit[i] >= 0.8 * fair && g.flow_mbit[i] <= 1.2 * fair);
        T_EQ_INT(r.f[i].bad, 0);
    }
    T_CHECK(g.util >= 0.85);
    run_free(&r);
}

static void test_sim_rate_drop(void)
{
    /* 100 Mbit/s, then 10 Mbit/s from 5 s on: the queue drains and the goodput follows */
    run r;
    if (run_new(&r, &link100, P2P_CC_BBR, 1, 16384, 0, 31)) {
        T_CHECK(0);
        return;
    }
    flow_start(&r, 0);
    run_to(&r, 5 * SEC);
    p2p_sim_link slow = r.down;
    slow.rate_bps = 10u * MBIT;
    p2p_sim_set_link(r.sim, r.rx, P2P_SIM_DOWN, &slow);
    window w[9];
    for (int i = 0; i < 9; i++) {
        mark(&r, &w[i]);
        run_to(&r, (5 + (uint64_t)i + 1) * SEC);
    }
    window end;
    mark(&r, &end);
    printf("  rate drop to 10 Mbit/s at 5 s; per second after it:\n");
    figures late;
    for (int i = 0; i < 9; i++) {
        figures g = measure(&r, &w[i], i + 1 < 9 ? &w[i + 1] : &end, 10u * MBIT);
        printf("    +%ds: goodput %5.2f Mbit/s, link %5.1f%%, queue delay avg %6.1f ms\n", i + 1,
               g.goodput_mbit, g.util * 100, g.qdelay_avg_ms);
    }
    late = measure(&r, &w[4], &end, 10u * MBIT);
    printf("  from +4 s to +9 s: goodput %.2f Mbit/s, link %.1f%%, queue delay avg %.1f ms\n",
           late.goodput_mbit, late.util * 100, late.qdelay_avg_ms);
    T_CHECK(late.util >= 0.85);
    T_CHECK(late.qdelay_avg_ms <= 40);
    T_EQ_INT(r.f[0].bad, 0);
    run_free(&r);
}

/* 2000 messages of 1 KiB: the virtual time they take, exactly once and in order. */
static uint64_t small_messages(int cc, const path *p, uint64_t seed, uint64_t limit)
{
    run r;
    if (run_new(&r, p, cc, 1, 1024, 2000, seed)) {
        T_CHECK(0);
        return 0;
    }
    flow_start(&r, 0);
    uint64_t t0 = p2p_sim_now(r.sim);
    while (!r.f[0].done_at && !r.f[0].bad && p2p_sim_now(r.sim) < t0 + limit)
        run_to(&r, p2p_sim_now(r.sim) + 100 * MS);
    uint64_t took = r.f[0].done_at ? r.f[0].done_at - t0 : 0;
    p2p_peer_info info;
    p2p_host_peer_info(r.f[0].h, r.f[0].peer, &info);
    printf("  %-7s 2000 x 1 KiB, loss %.0f%% reorder %.0f%%: %s %.2f s, %u received, lost "
           "%llu (%llu spurious), retransmits %llu\n",
           cc_name(cc), p->loss * 100, p->reorder * 100, took ? "done in" : "NOT DONE after",
           (double)(took ? took : limit) / SEC, r.f[0].next_recv, (unsigned long long)info.lost,
           (unsigned long long)info.spurious, (unsigned long long)info.retransmits);
    T_EQ_INT(r.f[0].bad, 0);
    T_EQ_INT(r.f[0].next_recv, 2000);
    run_free(&r);
    return took;
}

static void test_sim_small_messages(void)
{
    path p = link100;
    uint64_t clean = small_messages(P2P_CC_BBR, &p, 41, 30 * SEC);
    p.loss = 0.10;
    uint64_t lossy = small_messages(P2P_CC_BBR, &p, 42, 30 * SEC);
    p.loss = 0;
    p.reorder = 0.10;
    uint64_t reord = small_messages(P2P_CC_BBR, &p, 43, 30 * SEC);
    p.reorder = 0;
    p.loss = 0.30;
    uint64_t heavy = small_messages(P2P_CC_BBR, &p, 44, 120 * SEC);
    /* ENet took 3.6 s (10% loss) and 1.34 s (10% reordering) on the link */
    T_CHECK(clean && clean <= 1 * SEC);
    T_CHECK(lossy && lossy <= 3600 * MS);
    T_CHECK(reord && reord <= 1340 * MS);
    T_CHECK(heavy > 0);
}

static void test_sim_small_messages_newreno(void)
{
    path p = link100;
    p.loss = 0.10;
    small_messages(P2P_CC_NEWRENO, &p, 42, 60 * SEC);
    p.loss = 0;
    p.reorder = 0.10;
    small_messages(P2P_CC_NEWRENO, &p, 43, 60 * SEC);
}

/* The sender's probes during an outage of the path towards the receiver (packets that carry
 * resent stream data): how often they went, how many in pairs, and the longest gap. */
typedef struct outage {
    uint64_t last_sent, last_at, max_gap, pairs, sends; /* last_sent: bytes in flight */
} outage;

static void outage_watch(run *r, outage *o, uint64_t until, int peer_talks)
{
    uint64_t next_talk = p2p_sim_now(r->sim);
    while (p2p_sim_now(r->sim) < until) {
        uint64_t step_to = until;
        if (peer_talks && next_talk < step_to) step_to = next_talk;
        p2p_sim_step(r->sim, step_to);
        drain_rx(r);
        feed(r);
        uint64_t now = p2p_sim_now(r->sim);
        if (peer_talks && now >= next_talk) {
            /* the receiver sends a datagram now and then: the path back is alive */
            p2p_peer_send_datagram(r->rx, r->f[0].from, 1, (const uint8_t *)"x", 1, now);
            p2p_sim_flush(r->sim, r->rx);
            next_talk = now + 100 * MS;
        }
        /* a probe adds to what is in flight (ACKs do not; nothing is acknowledged) */
        p2p_peer_info info;
        p2p_host_peer_info(r->f[0].h, r->f[0].peer, &info);
        if (info.in_flight <= o->last_sent) {
            o->last_sent = info.in_flight;
            continue;
        }
        if (o->last_at && now - o->last_at > o->max_gap) o->max_gap = now - o->last_at;
        if (info.in_flight - o->last_sent >= 2 * 1000) o->pairs++;
        if (getenv("CC_TRACE"))
            printf("    probe bytes %llu at %.3f\n",
                   (unsigned long long)(info.in_flight - o->last_sent), (double)now / SEC);
        o->sends++;
        o->last_sent = info.in_flight;
        o->last_at = now;
    }
}

static void test_sim_probe_timeouts(void)
{
    /* The path towards the receiver fails for 20 s in mid-transfer. Probes go in pairs, and
     * the backoff stops near 1 s, so the path is probed again within 2 s all along. */
    run r;
    if (run_new(&r, &link100, P2P_CC_BBR, 1, 16384, 0, 61)) {
        T_CHECK(0);
        return;
    }
    flow_start(&r, 0);
    run_to(&r, 2 * SEC);
    p2p_sim_link dead = r.down;
    dead.loss = 1.0;
    p2p_sim_set_link(r.sim, r.rx, P2P_SIM_DOWN, &dead);
    run_to(&r, 3 * SEC); /* what was in flight is lost, the backoff grows */
    outage o;
    memset(&o, 0, sizeof o);
    p2p_peer_info info;
    p2p_host_peer_info(r.f[0].h, r.f[0].peer, &info);
    o.last_sent = info.in_flight;
    outage_watch(&r, &o, 20 * SEC, 0);
    printf("  outage, nothing from the peer: %llu probe times (%llu of them pairs), longest gap "
           "%.2f s\n",
           (unsigned long long)o.sends, (unsigned long long)o.pairs, (double)o.max_gap / SEC);
    T_CHECK(o.max_gap <= 2 * SEC);
    T_CHECK(o.pairs >= 8);
    T_EQ_INT(o.pairs, o.sends);
    /* The peer's packets keep arriving: every one of them restarts the backoff, and the
     * probes come at the pace of one PTO without backoff. */
    memset(&o, 0, sizeof o);
    p2p_host_peer_info(r.f[0].h, r.f[0].peer, &info);
    o.last_sent = info.in_flight;
    outage_watch(&r, &o, 22 * SEC, 1);
    printf("  outage, the peer still sending: %llu probe times in 2 s, longest gap %.2f s\n",
           (unsigned long long)o.sends, (double)o.max_gap / SEC);
    T_CHECK(o.max_gap <= 300 * MS);
    /* The path comes back: the transfer goes on within a probe's time */
    p2p_sim_set_link(r.sim, r.rx, P2P_SIM_DOWN, &r.down);
    uint64_t before = r.f[0].bytes, back = p2p_sim_now(r.sim);
    while (r.f[0].bytes == before && p2p_sim_now(r.sim) < back + 5 * SEC)
        run_to(&r, p2p_sim_now(r.sim) + 10 * MS);
    printf("  path back: data again after %.2f s\n", (double)(p2p_sim_now(r.sim) - back) / SEC);
    T_CHECK(p2p_sim_now(r.sim) - back <= 1 * SEC);
    T_EQ_INT(r.f[0].bad, 0);
    run_free(&r);
}

static void test_handshake_rtt(void)
{
    /* the dialler knows the round trip when JOIN comes: the handshake measured it */
    run r;
    if (run_new(&r, &link100, P2P_CC_BBR, 1, 1024, 1, 51)) {
        T_CHECK(0);
        return;
    }
    p2p_peer_handle h;
    p2p_host_connect(r.f[0].h, &r.rx_addr, NULL, 0, &h);
    p2p_sim_flush(r.sim, r.f[0].h);
    int joined = 0;
    uint64_t srtt = 0;
    while (!joined && p2p_sim_now(r.sim) < 2 * SEC) {
        p2p_sim_step(r.sim, 2 * SEC);
        p2p_event ev;
        while (p2p_host_next_event(r.f[0].h, &ev))
            if (ev.type == P2P_EV_JOIN) {
                joined = 1;
                p2p_peer_info info;
                p2p_host_peer_info(r.f[0].h, ev.peer, &info);
                srtt = info.srtt_us;
            }
        while (p2p_host_next_event(r.rx, &ev)) {
        }
    }
    printf("  dialler's rtt at JOIN: %.1f ms\n", (double)srtt / MS);
    T_CHECK(joined);
    T_CHECK(srtt >= 40 * MS && srtt < 45 * MS);
    run_free(&r);
}

static void test_config_congestion(void)
{
    p2p_identity id;
    p2p_host *h = NULL;
    p2p_config cfg;
    tnet_identity(&id, 0x70, 3);
    p2p_config_init(&cfg);
    cfg.identity = &id;
    cfg.seed = 1;
    cfg.congestion = 7;
    T_EQ_INT(p2p_host_new(&h, &cfg, 0), P2P_ERR_INVALID);
    cfg.congestion = P2P_CC_NEWRENO;
    T_EQ_INT(p2p_host_new(&h, &cfg, 0), 0);
    p2p_host_free(h);
    p2p_identity_wipe(&id);
}

int main(void)
{
    T_RUN(test_bbr_model);
    T_RUN(test_bbr_random_loss_bounded);
    T_RUN(test_bbr_app_limited);
    T_RUN(test_bbr_probe_rtt);
    T_RUN(test_cc_undo);
    T_RUN(test_reorder_adapts);
    T_RUN(test_config_congestion);
    T_RUN(test_handshake_rtt);
    T_RUN(test_sim_utilization);
    T_RUN(test_sim_random_loss);
    T_RUN(test_sim_newreno);
    T_RUN(test_sim_fairness);
    T_RUN(test_sim_rate_drop);
    T_RUN(test_sim_small_messages);
    T_RUN(test_sim_probe_timeouts);
    T_RUN(test_sim_small_messages_newreno);
    return t_summary("cc");
}
