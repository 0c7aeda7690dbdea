/* test_attack_v6.c - verification of 2026-11-30 (issue 12): a hostile introducer against the
 * re-introduction path (p2p_nat.c on_intro -> P2P_NOTE_PROBE -> p2p_path_retry +
 * p2p_host_probe), and zoned addresses on the wire.
 *
 * A is the node under attack, M a peer of A that plays introducer: it sends OFFERs for a peer
 * B that A is connected to (A then asks M, INTRO_REQ) and answers each with an INTRO naming
 * victim addresses. Every such INTRO is "introduced again while connected": A probes at once
 * and, on a relayed session, restarts its upgrade schedule. docs/PROTOCOL.md 8.6: an address
 * that never answers receives at most 16 probes a minute (P2P_GUARD_PROBES), whatever
 * introductions name it; 8.2: at most 8 offers per introducer per 10 s.
 * The tests print the probes per INTRO and per minute.
 *
 * test_reintro_flood_pins_relay: the same flood against both ends of a relayed pair whose
 * direct path comes back: it still goes direct. test_relay_hijack_by_peer (fails): a peer that
 * is not the relay, answering its own OFFER with an INTRO with the relay flag, moves a healthy
 * relayed session onto itself (PROTOCOL 8.5's hand-over move), again and again.
 * test_zone_not_on_wire, test_linklocal_intro_not_probed: zones never on the wire; link-local
 * candidates from an introducer are never sent to. */
#include "attack.h"
#include "../csrc/p2p_wire.h"

#define SEC UINT64_C(1000000)
#define MS UINT64_C(1000)
#define NV 8 /* victim addresses in each INTRO */

/* victim k of round r: with rotate, a pool of POOL x NV addresses named in turn (each again
 * every POOL rounds), else the same NV */
#define POOL 128
static p2p_addr victim(int r, int k, int rotate)
{
    char t[48];
    int n = rotate ? (r % POOL) * NV + k : k;
    snprintf(t, sizeof t, "198.51.%d.%d:%d", 100 + (n / 250) % 100, 1 + n % 250, 5000 + k);
    return an_addr(t);
}

/* the A-B direct path is cut (both ways): their session can only be relayed */
static p2p_addr cut_a, cut_b;
static int cut_ab(anet *net, an_pkt *pkt)
{
    (void)net;
    if (p2p_addr_equal(&pkt->from, &cut_a) && p2p_addr_equal(&pkt->to, &cut_b)) return 0;
    if (p2p_addr_equal(&pkt->from, &cut_b) && p2p_addr_equal(&pkt->to, &cut_a)) return 0;
    return 1;
}

typedef struct flood_result {
    uint64_t intros;     /* INTROs M sent (each after an OFFER) */
    uint64_t taken;      /* of those, INTROs A acted on (its offer taken, so asked for) */
    uint64_t to_victims; /* A's datagrams to all victim addresses */
    uint64_t victim_max; /* the most to one victim address in any minute */
    uint64_t to_b;       /* A's datagrams to B's own address */
    uint64_t to_b_max;   /* ... the most in one minute */
    uint64_t baseline_b; /* A's datagrams to B's address in a quiet minute before */
} flood_result;

static uint64_t sent_victims(anet *net, int a, int rounds, int rotate, uint64_t *maxp)
{
    uint64_t sum = 0;
    int n = rotate ? (rounds < POOL ? rounds : POOL) : 1;
    for (int r = 0; r < n; r++)
        for (int k = 0; k < NV; k++) {
            p2p_addr v = victim(r, k, rotate);
            uint64_t x = an_pkts_to(net, a, &v);
            sum += x;
            if (maxp && x > *maxp) *maxp = x;
        }
    return sum;
}

/* M floods A with OFFER+INTRO for B every period_us for minutes minutes. */
static flood_result flood(anet *net, int a, int m, int b, int minutes, uint64_t period_us,
                          int rotate)
{
    flood_result fr;
    memset(&fr, 0, sizeof fr);
    uint64_t b0 = an_pkts_to(net, a, &net->n[b].addr);
    an_run(net, 60 * SEC);
    fr.baseline_b = an_pkts_to(net, a, &net->n[b].addr) - b0;
    int rounds_per_min = (int)(60 * SEC / period_us), r = 0;
    uint64_t prev_b = an_pkts_to(net, a, &net->n[b].addr);
    uint64_t prev_v[POOL * NV];
    int nvaddr = rotate ? POOL * NV : NV;
    memset(prev_v, 0, sizeof prev_v);
    /* a refused round is two drops (the OFFER over the cap, then the INTRO nobody asked) */
    uint64_t drop0 = an_stats(net, a).dropped_unsolicited;
    for (int min = 0; min < minutes; min++) {
        for (int i = 0; i < rounds_per_min; i++, r++) {
            uint8_t body[AN_INTRO_MAX];
            p2p_addr v[NV];
            for (int k = 0; k < NV; k++) v[k] = victim(r, k, rotate);
            an_record(net, m, a, P2P_REC_INTRO, body,
                      an_intro(body, net->n[b].id.ed_pk, 2, NULL, 0)); /* OFFER */
            an_record(net, m, a, P2P_REC_INTRO, body,
                      an_intro(body, net->n[b].id.ed_pk, 0, v, NV)); /* INTRO */
            fr.intros++;
            an_run(net, period_us);
        }
        /* this minute's figures */
        for (int j = 0; j < nvaddr; j++) {
            p2p_addr v = rotate ? victim(j / NV, j % NV, 1) : victim(0, j, 0);
            uint64_t x = an_pkts_to(net, a, &v);
            if (x - prev_v[j] > fr.victim_max) fr.victim_max = x - prev_v[j];
            prev_v[j] = x;
        }
        uint64_t nb = an_pkts_to(net, a, &net->n[b].addr);
        if (nb - prev_b > fr.to_b_max) fr.to_b_max = nb - prev_b;
        prev_b = nb;
    }
    fr.taken = fr.intros - (an_stats(net, a).dropped_unsolicited - drop0) / 2;
    fr.to_victims = sent_victims(net, a, r, rotate, NULL);
    fr.to_b = an_pkts_to(net, a, &net->n[b].addr) - b0;
    return fr;
}

static void print_fr(const char *what, const flood_result *fr, int minutes)
{
    printf("     %s: %llu OFFER+INTRO in %d min, %llu INTROs taken; A sent %llu datagrams to "
           "the victims (%.2f per INTRO taken, at most %llu to one address in a minute), %llu "
           "to B's address (at most %llu in a minute; %llu in the quiet minute before)\n",
           what, (unsigned long long)fr->intros, minutes, (unsigned long long)fr->taken,
           (unsigned long long)fr->to_victims,
           fr->taken ? (double)fr->to_victims / (double)fr->taken : 0.0,
           (unsigned long long)fr->victim_max, (unsigned long long)fr->to_b,
           (unsigned long long)fr->to_b_max, (unsigned long long)fr->baseline_b);
}

/* Nodes A, M and B (all mediators): M connected to A, A to B directly. */
static void direct_trio(anet *net, int *a, int *m, int *b)
{
    an_init(net, 10 * MS);
    p2p_config cfg;
    p2p_config_init(&cfg);
    cfg.mediator = 1;
    *a = an_add(net, &cfg);
    *m = an_add(net, &cfg);
    *b = an_add(net, &cfg);
    T_CHECK(an_connect(net, *m, *a, 2 * SEC) != 0);
    T_CHECK(an_connect(net, *a, *b, 2 * SEC) != 0);
}

/* A-B direct; M re-introduces B to A 10 times a second for 3 minutes. */
static void run_direct(int rotate)
{
    anet net;
    int a, m, b;
    direct_trio(&net, &a, &m, &b);
    flood_result fr = flood(&net, a, m, b, 3, 100 * MS, rotate);
    print_fr(rotate ? "direct A-B, fresh victims per INTRO" : "direct A-B, the same 8 victims", &fr,
             3);
    T_CHECK(fr.victim_max <= P2P_GUARD_PROBES);
    T_CHECK(fr.taken <= 3 * 48); /* 8 offers per introducer per 10 s */
    /* B's address is proven: the guard lets all through. What a re-introduction adds to it
     * must stay a few packets a minute (8 offers per 10 s: 48 INTROs a minute at most). */
    T_CHECK(fr.to_b_max <= fr.baseline_b + 48);
    T_CHECK(an_handle(&net, a, b) != 0);
    an_free(&net);
}

static void test_reintro_flood_direct_same(void)
{
    run_direct(0);
}

static void test_reintro_flood_direct_fresh(void)
{
    run_direct(1);
}

/* Nodes A, M, B and I (all mediators); the A-B direct path cut; M connected to A (and to B
 * with m_b); A reaches B by id through I, so their session is relayed. */
static void relayed_pair(anet *net, int m_b, int *a, int *m, int *b, int *i)
{
    an_init(net, 10 * MS);
    p2p_config cfg;
    p2p_config_init(&cfg);
    cfg.mediator = 1;
    *a = an_add(net, &cfg);
    *m = an_add(net, &cfg);
    *b = an_add(net, &cfg);
    *i = an_add(net, &cfg);
    cut_a = net->n[*a].addr;
    cut_b = net->n[*b].addr;
    net->filter = cut_ab;
    T_CHECK(an_connect(net, *m, *a, 2 * SEC) != 0);
    if (m_b) T_CHECK(an_connect(net, *m, *b, 2 * SEC) != 0);
    T_CHECK(an_connect(net, *a, *i, 2 * SEC) != 0);
    T_CHECK(an_connect(net, *b, *i, 2 * SEC) != 0);
    T_CHECK(p2p_host_connect_via(net->n[*a].h, net->n[*b].id.ed_pk, &net->n[*i].addr, net->now,
                                 NULL) == 0);
    for (int k = 0; k < 1500 && !(an_handle(net, *a, *b) && an_handle(net, *b, *a)); k++)
        an_run(net, 10 * MS);
}

/* A-B relayed through I (their direct path cut); M re-introduces B to A 10 times a second:
 * each INTRO restarts A's upgrade schedule (p2p_path_retry). B's address never answers A. */
static void run_relayed(int rotate)
{
    anet net;
    int a, m, b, i;
    relayed_pair(&net, 0, &a, &m, &b, &i);
    p2p_peer *p = an_session(&net, a, b);
    T_CHECK(p != NULL);
    if (!p) {
        an_free(&net);
        return;
    }
    T_EQ_INT(p->addr.family, P2P_AF_RELAY);
    flood_result fr = flood(&net, a, m, b, 3, 100 * MS, rotate);
    print_fr(rotate ? "relayed A-B, fresh victims per INTRO" : "relayed A-B, the same 8 victims",
             &fr, 3);
    T_CHECK(fr.victim_max <= P2P_GUARD_PROBES);
    T_CHECK(fr.taken <= 3 * 48);
    T_CHECK(fr.to_b_max <= P2P_GUARD_PROBES); /* B's address never answered A */
    T_CHECK(an_handle(&net, a, b) != 0);
    an_free(&net);
}

static void test_reintro_flood_relayed_same(void)
{
    run_relayed(0);
}

static void test_reintro_flood_relayed_fresh(void)
{
    run_relayed(1);
}

/* A zone never goes onto the wire: an address with a zone is written as the same bytes as the
 * one without, and one read back has none (so a peer that learns it cannot dial it). */
static void test_zone_not_on_wire(void)
{
    p2p_addr z = an_addr("[fe80::1%3]:4000"), plain = an_addr("[fe80::1]:4000");
    T_EQ_INT((int)z.zone, 3);
    uint8_t b1[32], b2[32];
    p2p_wr w1, w2;
    p2p_wr_init(&w1, b1, sizeof b1);
    p2p_wr_init(&w2, b2, sizeof b2);
    p2p_wr_addr(&w1, &z);
    p2p_wr_addr(&w2, &plain);
    T_EQ_INT((int)(w1.p - b1), (int)(w2.p - b2));
    T_EQ_MEM(b1, b2, (size_t)(w1.p - b1));
    p2p_rd r;
    p2p_rd_init(&r, b1, (size_t)(w1.p - b1));
    p2p_addr back;
    T_EQ_INT(p2p_rd_addr(&r, &back), 0);
    T_EQ_INT((int)back.zone, 0);
}

/* An introducer naming link-local candidates (no zone comes from the wire): A must never send
 * to them, with or without a zone. */
static void test_linklocal_intro_not_probed(void)
{
    anet net;
    int a, m, b;
    direct_trio(&net, &a, &m, &b);
    /* M introduces B with link-local candidates (no zone can come from the wire) */
    p2p_addr v[4] = {an_addr("[fe80::1]:5000"), an_addr("[fe80::2]:5000"),
                     an_addr("[fe80::3]:5000"), an_addr("[fe80::4]:5000")};
    for (int r = 0; r < 20; r++) {
        uint8_t body[AN_INTRO_MAX];
        an_record(&net, m, a, P2P_REC_INTRO, body, an_intro(body, net.n[b].id.ed_pk, 2, NULL, 0));
        an_record(&net, m, a, P2P_REC_INTRO, body, an_intro(body, net.n[b].id.ed_pk, 0, v, 4));
        an_run(&net, 500 * MS);
    }
    uint64_t sum = 0;
    for (int k = 0; k < 4; k++) sum += an_pkts_to(&net, a, &v[k]);
    for (int k = 0; k < 4; k++) {
        p2p_addr z = v[k];
        for (uint32_t zone = 1; zone < 4; zone++) {
            z.zone = zone;
            sum += an_pkts_to(&net, a, &z);
        }
    }
    printf("     INTROs naming fe80:: candidates: %llu datagrams to them\n",
           (unsigned long long)sum);
    T_EQ_INT((int)sum, 0);
    an_free(&net);
}

/* A-B relayed through I. A hostile peer M of A (it holds no session with B) sends OFFER for
 * B, then, once A asked, INTRO for B with the relay flag: PROTOCOL 8.5 moves an established
 * relayed session whose relay is not the introducer onto the introducer's relay at once, so
 * A's packets to B now go to M, which drops them. M does this every 1.25 s (within the offer
 * cap) while A sends B one message every 100 ms for 60 s; it measures what arrives, and how
 * much of A's traffic for B went to M. */
static int hijack_seen;
static uint64_t max_delay;
static int b_index;
static void delay_of(anet *net, int node, const p2p_event *ev)
{
    if (node != b_index || ev->type != P2P_EV_MESSAGE || ev->len != 8) return;
    uint64_t at;
    memcpy(&at, ev->data, 8);
    if (net->now - at > max_delay) max_delay = net->now - at;
}
static void run_hijack(int attack, uint64_t *delivered, uint64_t *sent, uint64_t *to_m,
                       uint64_t *moves, uint64_t *delay)
{
    anet net;
    int a, m, b, i;
    relayed_pair(&net, 0, &a, &m, &b, &i);
    T_CHECK(an_handle(&net, a, b) != 0);
    an_run(&net, 2 * SEC);
    uint64_t m0 = an_pkts_to(&net, a, &net.n[m].addr), mv0 = an_stats(&net, a).relay_handovers;
    int b_msgs0 = net.n[b].msgs;
    b_index = b;
    max_delay = 0;
    net.on_event = delay_of;
    *sent = 0;
    for (int t = 0; t < 600; t++) {
        p2p_peer_handle ph = an_handle(&net, a, b);
        uint8_t d[8];
        memcpy(d, &net.now, 8);
        if (ph && p2p_peer_send(net.n[a].h, ph, 1, d, sizeof d, 0, NULL, net.now) == 0) (*sent)++;
        if (attack && t % 12 == 0) {
            uint8_t body[AN_INTRO_MAX];
            an_record(&net, m, a, P2P_REC_INTRO, body,
                      an_intro(body, net.n[b].id.ed_pk, 2, NULL, 0));
            an_run(&net, 30 * MS); /* A asks M */
            an_record(&net, m, a, P2P_REC_INTRO, body,
                      an_intro(body, net.n[b].id.ed_pk, 1, NULL, 0));
            an_run(&net, 70 * MS);
        } else {
            an_run(&net, 100 * MS);
        }
    }
    an_run(&net, 10 * SEC);
    *delivered = (uint64_t)(net.n[b].msgs - b_msgs0);
    *to_m = an_pkts_to(&net, a, &net.n[m].addr) - m0;
    *moves = an_stats(&net, a).relay_handovers - mv0;
    *delay = max_delay;
    an_free(&net);
}

static void test_relay_hijack_by_peer(void)
{
    uint64_t d0, s0, m0, h0, d1, s1, m1, h1, l0, l1;
    run_hijack(0, &d0, &s0, &m0, &h0, &l0);
    run_hijack(1, &d1, &s1, &m1, &h1, &l1);
    hijack_seen = h1 > 0;
    printf("     A sends B a message every 100 ms for 60 s over relay I: without M %llu of %llu "
           "arrive within 10 s after (slowest %.3f s; A sent M %llu datagrams, %llu relay moves); "
           "with M re-introducing B with its own relay every 1.25 s: %llu of %llu arrive "
           "(slowest %.3f s), A sent M %llu datagrams, %llu relay moves\n",
           (unsigned long long)d0, (unsigned long long)s0, (double)l0 / 1e6, (unsigned long long)m0,
           (unsigned long long)h0, (unsigned long long)d1, (unsigned long long)s1, (double)l1 / 1e6,
           (unsigned long long)m1, (unsigned long long)h1);
    T_EQ_INT((int)d0, (int)s0);
    T_EQ_INT((int)d1, (int)s1);
    /* a peer that is not the session's relay, and that the session never lost, does not get
     * to carry it: the move is for a hand-over (a lost relay) */
    T_EQ_INT((int)h1, 0);
}

/* A-B relayed through I, their direct path cut, then restored. M (a peer of A and of B)
 * answers its own OFFERs for the other with INTROs naming victims (no relay flag) every
 * 1.25 s to both: each replaces the introduction I gave (p2p_nat_intro is one per id), so the
 * upgrade probes go to M's victims. Does the pair still go direct once the path is back?
 * Returns the seconds from the restore to both ends direct (-1: not within 120 s). */
static double run_pin(int attack)
{
    anet net;
    int a, m, b, i;
    relayed_pair(&net, 1, &a, &m, &b, &i);
    T_CHECK(an_handle(&net, a, b) != 0);
    double took = -1;
    for (int t = 0; t < 1500; t++) { /* 30 s cut, then up to 120 s restored */
        if (t == 300) net.filter = NULL;
        if (attack && t % 12 == 0) {
            uint8_t body[AN_INTRO_MAX];
            p2p_addr v[NV];
            for (int k = 0; k < NV; k++) v[k] = victim(t / 12, k, 1);
            an_record(&net, m, a, P2P_REC_INTRO, body,
                      an_intro(body, net.n[b].id.ed_pk, 2, NULL, 0));
            an_record(&net, m, b, P2P_REC_INTRO, body,
                      an_intro(body, net.n[a].id.ed_pk, 2, NULL, 0));
            an_run(&net, 30 * MS);
            an_record(&net, m, a, P2P_REC_INTRO, body, an_intro(body, net.n[b].id.ed_pk, 0, v, NV));
            an_record(&net, m, b, P2P_REC_INTRO, body, an_intro(body, net.n[a].id.ed_pk, 0, v, NV));
            an_run(&net, 70 * MS);
        } else {
            an_run(&net, 100 * MS);
        }
        p2p_peer *pa = an_session(&net, a, b), *pb = an_session(&net, b, a);
        if (t >= 300 && pa && pb && pa->addr.family == P2P_AF_INET4 &&
            pb->addr.family == P2P_AF_INET4) {
            took = (double)(t - 300) / 10.0;
            break;
        }
    }
    an_free(&net);
    return took;
}

static void test_reintro_flood_pins_relay(void)
{
    double quiet = run_pin(0), flooded = run_pin(1);
    printf("     relayed A-B, direct path restored after 30 s: both direct %.1f s after without "
           "M; with M re-introducing each to the other every 1.25 s: %.1f s (-1: not within "
           "120 s)\n",
           quiet, flooded);
    T_CHECK(quiet >= 0);
    T_CHECK(flooded >= 0);
}

int main(void)
{
    T_RUN(test_zone_not_on_wire);
    T_RUN(test_linklocal_intro_not_probed);
    T_RUN(test_reintro_flood_direct_same);
    T_RUN(test_reintro_flood_direct_fresh);
    T_RUN(test_reintro_flood_relayed_same);
    T_RUN(test_reintro_flood_relayed_fresh);
    T_RUN(test_reintro_flood_pins_relay);
    T_RUN(test_relay_hijack_by_peer);
    return t_summary("test_attack_v6");
}
