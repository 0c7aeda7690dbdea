/* test_attack_nat.c - introductions, relays, paths and the egress guard under attack (issue 8
 * rows 1, 2 (packets), 3, 8 and 9; docs/PROTOCOL.md sections 8.2 and 8.6).
 *
 * A malicious peer M holds an honest session with the node under attack and abuses it: INTROs
 * nobody asked for, offers answered with introductions to a victim, member records pointing
 * at a victim, packets stuffed with PATH_CHALLENGE or RELAY frames. Victims are addresses of
 * no host. Each test asserts what reached the victims and that an honest introduction still
 * works while the attack runs. */
#include "attack.h"

#define VICTIM "203.0.113.9"
#define NVICTIM 8

static p2p_addr victim(int i)
{
    char text[40];
    snprintf(text, sizeof text, VICTIM ":%d", 53 + i);
    return an_addr(text);
}

/* Addresses a node on a public network never sends to when it learned them. */
static const char *non_public[] = {"127.0.0.1:4000", "224.0.0.251:5353", "255.255.255.255:9",
                                   "10.1.2.3:4000",  "[::1]:4000",       "[ff02::1]:4000",
                                   "0.1.2.3:4000",   "192.168.1.1:4000"};

static uint64_t to_victims(anet *net, int node, uint64_t *pkts_max)
{
    uint64_t sum = 0;
    *pkts_max = 0;
    for (int i = 0; i < NVICTIM; i++) {
        p2p_addr v = victim(i);
        sum += an_sent_to(net, node, &v);
        if (an_pkts_to(net, node, &v) > *pkts_max) *pkts_max = an_pkts_to(net, node, &v);
    }
    return sum;
}

static void throwaway_id(uint8_t id[P2P_ID_LEN], int i)
{
    memset(id, 0x5a, P2P_ID_LEN);
    id[0] = (uint8_t)i;
    id[1] = (uint8_t)(i >> 8);
}

static size_t slots_used(const p2p_host *h)
{
    size_t n = 0;
    for (size_t i = 0; i < h->peers.hwm; i++) n += h->peers.slots[i] != NULL;
    return n;
}

/* The honest side: c asks introducer i for an introduction to a; 1 when both report the
 * session within 5 s. */
static int honest_intro(anet *net, int c, int a, int i)
{
    if (p2p_host_connect_via(net->n[c].h, net->n[a].id.ed_pk, &net->n[i].addr, net->now, NULL))
        return 0;
    for (int k = 0; k < 500; k++) {
        an_run(net, 10000);
        if (an_handle(net, c, a) && an_handle(net, a, c)) return 1;
    }
    return 0;
}

/* A the target, M the attacker (connected to A), I an honest introducer that A holds a
 * session with, C an honest node that will ask I for A. */
typedef struct cast {
    int a, m, i, c;
} cast;

static cast setup(anet *net)
{
    cast x;
    an_init(net, 10000);
    p2p_config cfg;
    p2p_config_init(&cfg);
    cfg.mediator = 1; /* mediators: no mesh dials muddy the tallies */
    x.a = an_add(net, &cfg);
    x.m = an_add(net, &cfg);
    x.i = an_add(net, &cfg);
    x.c = an_add(net, &cfg);
    T_CHECK(an_connect(net, x.m, x.a, 2000000) != 0);
    T_CHECK(an_connect(net, x.a, x.i, 2000000) != 0);
    T_CHECK(an_connect(net, x.c, x.i, 2000000) != 0);
    return x;
}

/* Row 1: 50 INTROs nobody asked for, each naming a new id and 8 addresses at a victim. It
 * was 20,224 datagrams, 2.6 MB, in 12 s (539x). Now nothing: an INTRO is acted on only while
 * the receiver has asked that peer for it. */
static void test_unsolicited_intros_reflect_nothing(void)
{
    anet net;
    cast x = setup(&net);
    p2p_addr v[NVICTIM];
    for (int i = 0; i < NVICTIM; i++) v[i] = victim(i);
    uint64_t attack = 0;
    for (int k = 0; k < 50; k++) {
        uint8_t id[P2P_ID_LEN], body[AN_INTRO_MAX];
        throwaway_id(id, k);
        size_t n = an_intro(body, id, 0, v, NVICTIM);
        attack += n;
        T_EQ_INT(an_record(&net, x.m, x.a, P2P_REC_INTRO, body, n), 0);
    }
    size_t slots = slots_used(net.n[x.a].h);
    an_run(&net, 1000000);
    T_CHECK(honest_intro(&net, x.c, x.a, x.i));
    an_run(&net, 11000000);
    uint64_t pmax;
    uint64_t sent = to_victims(&net, x.a, &pmax);
    printf("     50 unsolicited INTROs (%llu bytes): %llu bytes to the victim, %llu dropped\n",
           (unsigned long long)attack, (unsigned long long)sent,
           (unsigned long long)an_stats(&net, x.a).dropped_unsolicited);
    T_EQ_INT(sent, 0);
    T_EQ_INT(an_sent_to_strangers(&net, x.a), 0);
    T_CHECK(an_stats(&net, x.a).dropped_unsolicited >= 50);
    T_CHECK(slots_used(net.n[x.a].h) <= slots + 1); /* the honest session only */
    an_free(&net);
}

/* Row 3: 300 INTROs took every peer slot (288/288). Unsolicited, they take none; offers take
 * at most P2P_OFFER_ATTEMPTS, and an introduction the attacker then sends for them is held to
 * the guard's probe allowance per victim address. */
static void test_intro_flood_takes_no_slots(void)
{
    anet net;
    cast x = setup(&net);
    size_t slots = slots_used(net.n[x.a].h);
    for (int k = 0; k < 300; k++) {
        uint8_t id[P2P_ID_LEN], body[AN_INTRO_MAX];
        throwaway_id(id, k);
        T_EQ_INT(an_record(&net, x.m, x.a, P2P_REC_INTRO, body, an_intro(body, id, 0, NULL, 0)), 0);
    }
    an_run(&net, 500000);
    T_EQ_INT(slots_used(net.n[x.a].h), slots);
    T_CHECK(an_stats(&net, x.a).dropped_unsolicited >= 300);

    /* Offers (the flag of section 8.2), each followed at once by the INTRO that the offer
     * would solicit, naming 8 victim addresses. */
    p2p_addr v[NVICTIM];
    for (int i = 0; i < NVICTIM; i++) v[i] = victim(i);
    for (int k = 0; k < 300; k++) {
        uint8_t id[P2P_ID_LEN], body[AN_INTRO_MAX];
        throwaway_id(id, 1000 + k);
        T_EQ_INT(an_record(&net, x.m, x.a, P2P_REC_INTRO, body, an_intro(body, id, 2, NULL, 0)), 0);
        T_EQ_INT(an_record(&net, x.m, x.a, P2P_REC_INTRO, body, an_intro(body, id, 0, v, NVICTIM)),
                 0);
    }
    an_run(&net, 200000);
    size_t after = slots_used(net.n[x.a].h);
    T_CHECK(after <= slots + P2P_OFFER_ATTEMPTS_VIA);
    /* an honest node still connects directly, and through an introducer */
    int d = an_add(&net, NULL);
    T_CHECK(an_connect(&net, d, x.a, 2000000) != 0);
    T_CHECK(honest_intro(&net, x.c, x.a, x.i));
    an_run(&net, 10000000);
    uint64_t pmax;
    uint64_t sent = to_victims(&net, x.a, &pmax);
    printf("     300 offers: %zu attempts; %llu bytes to 8 victim addresses, at most %llu packets "
           "each\n",
           after - slots, (unsigned long long)sent, (unsigned long long)pmax);
    T_CHECK(pmax <= P2P_GUARD_PROBES);
    T_CHECK(sent <= (uint64_t)NVICTIM * P2P_GUARD_PROBES * P2P_INIT_LEN);
    an_free(&net);
}

/* Appends { u16 length, member record } for throwaway member k (signed by its own key) with
 * the n addresses in v. Returns the bytes written. */
static size_t member_record(uint8_t *out, int k, const p2p_addr *v, uint8_t n)
{
    static const char label[] = "p2pnet/1 member";
    uint8_t seed[P2P_SEED_LEN];
    memset(seed, 0x3c, sizeof seed);
    seed[0] = (uint8_t)k;
    p2p_identity id;
    p2p_identity_from_seed(&id, seed);
    uint8_t msg[sizeof label - 1 + P2P_MEMBER_REC_MAX];
    memcpy(msg, label, sizeof label - 1);
    uint8_t *rec = msg + sizeof label - 1;
    p2p_wr w;
    p2p_wr_init(&w, rec, P2P_MEMBER_REC_MAX);
    p2p_wr_u8(&w, 1);
    p2p_wr_bytes(&w, id.ed_pk, P2P_ID_LEN);
    p2p_wr_u64(&w, 1);
    p2p_wr_u64(&w, 0);
    p2p_wr_u8(&w, n);
    for (uint8_t i = 0; i < n; i++) p2p_wr_addr(&w, &v[i]);
    size_t rlen = (size_t)(w.p - rec);
    p2p_sign(rec + rlen, msg, sizeof label - 1 + rlen, id.ed_sk);
    rlen += 64;
    p2p_wr lw;
    p2p_wr_init(&lw, out, 2);
    p2p_wr_u16(&lw, (uint16_t)rlen);
    memcpy(out + 2, rec, rlen);
    return 2 + rlen;
}

/* Row 2 (packets): one MEMBERS record naming 100 throwaway ids, all at one victim address.
 * It was about 90x towards the victim over 40 s. Every dial of those ids is a probe to an
 * address that never answers: P2P_GUARD_PROBES packets a minute, whatever the number of ids. */
static void test_member_records_at_victim(void)
{
    anet net;
    an_init(&net, 10000);
    int a = an_add(&net, NULL), m = an_add(&net, NULL);
    p2p_config med;
    p2p_config_init(&med);
    med.mediator = 1;
    int i = an_add(&net, &med), c = an_add(&net, &med);
    T_CHECK(an_connect(&net, m, a, 2000000) != 0);
    T_CHECK(an_connect(&net, a, i, 2000000) != 0);
    T_CHECK(an_connect(&net, c, i, 2000000) != 0);
    p2p_addr v = victim(0);
    static uint8_t body[100 * 160];
    size_t blen = 0;
    for (int k = 0; k < 100; k++) blen += member_record(body + blen, k, &v, 1);
    T_EQ_INT(an_record(&net, m, a, P2P_REC_MEMBERS, body, blen), 0);
    an_run(&net, 2000000);
    T_CHECK(honest_intro(&net, c, a, i));
    an_run(&net, 38000000);
    printf("     100 member records at one victim: %llu packets, %llu bytes in 40 s\n",
           (unsigned long long)an_pkts_to(&net, a, &v),
           (unsigned long long)an_sent_to(&net, a, &v));
    T_CHECK(an_pkts_to(&net, a, &v) <= P2P_GUARD_PROBES);
    T_CHECK(an_stats(&net, a).dropped_amplification > 0);
    an_free(&net);
}

/* Row 8: one packet with 100 PATH_CHALLENGE frames from a forged source. It was 133 packets
 * back (4.4x). Now one answer, within 3x. */
static void test_challenge_stuffing(void)
{
    anet net;
    cast x = setup(&net);
    uint8_t pt[100 * 9];
    for (int k = 0; k < 100; k++) {
        pt[9 * k] = P2P_FRAME_PATH_CHALLENGE;
        p2p_put_u64(pt + 9 * k + 1, 0x1000u + (uint64_t)k);
    }
    p2p_addr v = victim(0);
    size_t len = an_frames(&net, x.m, x.a, pt, sizeof pt, &v);
    T_CHECK(len > 0);
    an_run(&net, 5000000);
    uint64_t sent = an_sent_to(&net, x.a, &v), got = an_recv_from(&net, x.a, &v);
    printf("     100 challenges in one %zu-byte packet: %llu bytes in %llu packets back (%.2fx)\n",
           len, (unsigned long long)sent, (unsigned long long)an_pkts_to(&net, x.a, &v),
           got ? (double)sent / (double)got : 0.0);
    T_CHECK(an_pkts_to(&net, x.a, &v) <= 1);
    T_CHECK(sent <= 3 * got);
    T_CHECK(honest_intro(&net, x.c, x.a, x.i));
    an_free(&net);
}

/* Row 9: one packet with 100 RELAY frames for a registered pair. It was 171 packets passed
 * on; now at most one per packet received. */
static void test_relay_stuffing(void)
{
    anet net;
    an_init(&net, 10000);
    p2p_config cfg;
    p2p_config_init(&cfg);
    cfg.mediator = 1;
    int m = an_add(&net, &cfg), i = an_add(&net, &cfg), b = an_add(&net, &cfg);
    int c = an_add(&net, &cfg);
    T_CHECK(an_connect(&net, m, i, 2000000) != 0);
    T_CHECK(an_connect(&net, b, i, 2000000) != 0);
    T_CHECK(an_connect(&net, c, i, 2000000) != 0);
    T_CHECK(honest_intro(&net, m, b, i)); /* registers the pair (M, B) at I */
    p2p_peer *ib = an_session(&net, i, b);
    T_CHECK(ib != NULL);
    if (!ib) {
        an_free(&net);
        return;
    }
    uint32_t channel = ib->local_index;
    uint8_t pt[100 * 7];
    for (int k = 0; k < 100; k++) {
        pt[7 * k] = P2P_FRAME_RELAY;
        p2p_put_u32(pt + 7 * k + 1, channel);
        pt[7 * k + 5] = 1;
        pt[7 * k + 6] = (uint8_t)k;
    }
    uint64_t before = an_stats(&net, i).relayed_packets;
    T_CHECK(an_frames(&net, m, i, pt, sizeof pt, NULL) > 0);
    an_run(&net, 100000);
    uint64_t relayed = an_stats(&net, i).relayed_packets - before;
    printf("     100 RELAY frames in one packet: %llu relayed\n", (unsigned long long)relayed);
    T_CHECK(relayed <= 1);
    T_CHECK(honest_intro(&net, c, b, i));
    an_free(&net);
}

/* Learned addresses that are loopback, multicast, broadcast, unspecified-like or private are
 * never sent to by a node on a public network, however they were learned. */
static void test_learned_addresses_filtered(void)
{
    anet net;
    cast x = setup(&net);
    p2p_addr c[8];
    for (int k = 0; k < 8; k++) c[k] = an_addr(non_public[k]);
    uint8_t id[P2P_ID_LEN], body[AN_INTRO_MAX];
    throwaway_id(id, 77);
    T_EQ_INT(an_record(&net, x.m, x.a, P2P_REC_INTRO, body, an_intro(body, id, 2, NULL, 0)), 0);
    T_EQ_INT(an_record(&net, x.m, x.a, P2P_REC_INTRO, body, an_intro(body, id, 0, c, 8)), 0);
    an_run(&net, 6000000);
    uint64_t sent = 0;
    for (int k = 0; k < 8; k++) sent += an_sent_to(&net, x.a, &c[k]);
    printf("     INTRO with 8 non-public addresses: %llu bytes sent to them\n",
           (unsigned long long)sent);
    T_EQ_INT(sent, 0);
    T_EQ_INT(an_sent_to_strangers(&net, x.a), 0);
    T_CHECK(honest_intro(&net, x.c, x.a, x.i));
    an_free(&net);
}

/* The same addresses in a member record: the mesh dials the member, and sends nothing there. */
static void test_member_addresses_filtered(void)
{
    anet net;
    an_init(&net, 10000);
    int a = an_add(&net, NULL), m = an_add(&net, NULL);
    T_CHECK(an_connect(&net, m, a, 2000000) != 0);
    p2p_addr c[8];
    for (int k = 0; k < 8; k++) c[k] = an_addr(non_public[k]);
    uint8_t body[2 + P2P_MEMBER_REC_MAX];
    size_t blen = member_record(body, 5, c, 8);
    T_EQ_INT(an_record(&net, m, a, P2P_REC_MEMBERS, body, blen), 0);
    an_run(&net, 20000000);
    T_CHECK(an_stats(&net, a).members >= 2); /* the record was taken */
    uint64_t sent = 0;
    for (int k = 0; k < 8; k++) sent += an_sent_to(&net, a, &c[k]);
    printf("     member record with 8 non-public addresses: %llu bytes sent to them\n",
           (unsigned long long)sent);
    T_EQ_INT(sent, 0);
    an_free(&net);
}

/* Upgrade probes go to the addresses a peer advertised: a peer that advertises a victim gets
 * it at most P2P_GUARD_PROBES challenges a minute, however often the session probes, and
 * non-public advertised addresses none. */
static void test_upgrade_probes_capped(void)
{
    anet net;
    cast x = setup(&net);
    p2p_peer *p = an_session(&net, x.a, x.m);
    T_CHECK(p != NULL);
    if (!p) {
        an_free(&net);
        return;
    }
    p2p_addr v = victim(0), lo = an_addr(non_public[0]), mc = an_addr(non_public[1]);
    p->nadv = 3;
    p->adv[0] = v;
    p->adv[1] = lo;
    p->adv[2] = mc;
    for (int k = 0; k < 200; k++) {
        p = an_session(&net, x.a, x.m);
        if (!p) break;
        p2p_host_probe(net.n[x.a].h, p, net.now);
        an_run(&net, 100000);
    }
    printf("     200 upgrade probes in 20 s: %llu packets to an advertised victim\n",
           (unsigned long long)an_pkts_to(&net, x.a, &v));
    T_CHECK(an_pkts_to(&net, x.a, &v) <= P2P_GUARD_PROBES);
    T_EQ_INT(an_sent_to(&net, x.a, &lo) + an_sent_to(&net, x.a, &mc), 0);
    T_CHECK(honest_intro(&net, x.c, x.a, x.i));
    an_free(&net);
}

/* The ledger is fixed: an attacker who makes the node probe more addresses than it holds
 * cannot push a victim's entry out and reset its allowance. */
static void test_ledger_cycling(void)
{
    anet net;
    an_init(&net, 10000);
    int a = an_add(&net, NULL);
    p2p_host *h = net.n[a].h;
    p2p_addr v = victim(0);
    int sent = 0;
    for (int k = 0; k < 3 * P2P_GUARD_PROBES; k++) sent += p2p_guard_probe(h, &v, 0);
    T_EQ_INT(sent, P2P_GUARD_PROBES);
    /* touch many other addresses, from many sources */
    for (int k = 0; k < 4 * P2P_GUARD_ENTRIES; k++) {
        p2p_addr o = an_addr("198.51.100.1:1");
        o.ip[2] = (uint8_t)(k >> 8);
        o.ip[3] = (uint8_t)k;
        o.port = (uint16_t)(1 + (k & 0xff));
        uint8_t junk[64] = {0};
        p2p_host_recv(h, &o, junk, sizeof junk, net.now);
        p2p_guard_probe(h, &o, (p2p_peer_handle)(1 + k / 8));
    }
    T_EQ_INT(p2p_guard_probe(h, &v, 0), 0);
    net.now += P2P_GUARD_WINDOW_US;
    p2p_host_on_timeout(h, net.now);
    T_EQ_INT(p2p_guard_probe(h, &v, 0), 1); /* a new window */
    an_free(&net);
}

int main(void)
{
    T_RUN(test_unsolicited_intros_reflect_nothing);
    T_RUN(test_intro_flood_takes_no_slots);
    T_RUN(test_member_records_at_victim);
    T_RUN(test_challenge_stuffing);
    T_RUN(test_relay_stuffing);
    T_RUN(test_learned_addresses_filtered);
    T_RUN(test_member_addresses_filtered);
    T_RUN(test_upgrade_probes_capped);
    T_RUN(test_ledger_cycling);
    return t_summary("test_attack_nat");
}
