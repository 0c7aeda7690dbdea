/* test_pathchoice.c - path choice (docs/PROTOCOL.md section 8.4, "Path choice"): a session
 * times every direct address of its peer with PATH_CHALLENGE/PATH_RESPONSE and sends on the
 * fastest, switching only for an RTT at least 20 % and 2 ms lower, at most once per 10 s.
 *
 * The simulator gives a host one address, so this test drives two hosts by hand on a tiny
 * network of its own: each host has a LAN address (10.1.0.x) and a public one, and a datagram
 * to a LAN address comes from the sender's LAN address after the LAN delay, one to a public
 * address from its public address after the public delay (as routing would). */
#include "t.h"
#include "../csrc/p2p_host.h"
#include "simnet.h"
#include "tnet.h"

#define SEC UINT64_C(1000000)
#define MS UINT64_C(1000)
#define MAXQ 4096
#define MARKER 0x5a

typedef struct pkt {
    uint64_t at;
    int to; /* host index */
    p2p_addr from, dst;
    size_t len;
    uint8_t data[P2P_MAX_PACKET_PROBED];
} pkt;

typedef struct net {
    p2p_host *h[2];
    p2p_identity id[2];
    p2p_addr lan[2], pub[2];
    uint64_t lan_delay, pub_delay; /* one way */
    uint64_t t;
    pkt *q;
    size_t nq;
    uint32_t next_in;
    int bad, joins;
} net;

static int host_of(net *n, const p2p_addr *a, int *lan)
{
    for (int i = 0; i < 2; i++) {
        if (p2p_addr_equal(a, &n->lan[i])) {
            *lan = 1;
            return i;
        }
        if (p2p_addr_equal(a, &n->pub[i])) {
            *lan = 0;
            return i;
        }
    }
    return -1;
}

static void flush(net *n, int i)
{
    p2p_addr to;
    uint8_t buf[P2P_MAX_PACKET_PROBED];
    size_t len;
    while ((len = p2p_host_next_datagram(n->h[i], &to, buf, sizeof buf)) > 0) {
        int lan, j = host_of(n, &to, &lan);
        if (j < 0 || j == i || n->nq >= MAXQ) continue;
        pkt *p = &n->q[n->nq++];
        p->at = n->t + (lan ? n->lan_delay : n->pub_delay);
        p->to = j;
        p->from = lan ? n->lan[i] : n->pub[i];
        p->dst = to;
        p->len = len;
        memcpy(p->data, buf, len);
    }
}

static void events(net *n, int i)
{
    p2p_event ev;
    while (p2p_host_next_event(n->h[i], &ev)) {
        if (ev.type == P2P_EV_JOIN) n->joins++;
        if (ev.type == P2P_EV_MESSAGE && i == 1) {
            if (ev.len < 5 || ev.data[4] != MARKER || p2p_get_u32(ev.data) != n->next_in) n->bad++;
            n->next_in++;
        }
    }
}

/* Runs the two hosts until t + us. */
static void run(net *n, uint64_t us)
{
    uint64_t end = n->t + us;
    for (;;) {
        uint64_t next = end;
        size_t k = MAXQ;
        for (size_t i = 0; i < n->nq; i++)
            if (n->q[i].at <= next) {
                next = n->q[i].at;
                k = i;
            }
        uint64_t tm[2];
        for (int i = 0; i < 2; i++) {
            tm[i] = p2p_host_next_timeout(n->h[i]);
            if (tm[i] < next) {
                next = tm[i];
                k = MAXQ;
            }
        }
        if (next > end) break;
        if (next > n->t) n->t = next;
        if (k < MAXQ) {
            pkt p = n->q[k];
            n->q[k] = n->q[--n->nq];
            p2p_host_recv(n->h[p.to], &p.from, p.data, p.len, n->t);
            events(n, p.to);
            flush(n, p.to);
        } else {
            for (int i = 0; i < 2; i++)
                if (tm[i] <= n->t) {
                    p2p_host_on_timeout(n->h[i], n->t);
                    events(n, i);
                    flush(n, i);
                }
        }
        if (next == end) break;
    }
    n->t = end;
}

static void net_start(net *n, uint64_t lan_delay, uint64_t pub_delay)
{
    memset(n, 0, sizeof *n);
    n->q = calloc(MAXQ, sizeof *n->q);
    n->lan_delay = lan_delay;
    n->pub_delay = pub_delay;
    p2p_addr_parse(&n->lan[0], "10.1.0.1:4000");
    p2p_addr_parse(&n->lan[1], "10.1.0.2:4000");
    p2p_addr_parse(&n->pub[0], "198.51.100.1:4000");
    p2p_addr_parse(&n->pub[1], "203.0.113.2:4000");
    for (int i = 0; i < 2; i++) {
        tnet_identity(&n->id[i], 0x50, (uint8_t)(i + 1));
        p2p_config c;
        p2p_config_init(&c);
        c.identity = &n->id[i];
        c.seed = (uint64_t)(21 + i);
        T_EQ_INT(p2p_host_new(&n->h[i], &c, 0), 0);
        p2p_host_add_address(n->h[i], &n->lan[i], 0);
        p2p_host_add_address(n->h[i], &n->pub[i], 0);
    }
}

static void net_stop(net *n)
{
    for (int i = 0; i < 2; i++) {
        p2p_host_free(n->h[i]);
        p2p_identity_wipe(&n->id[i]);
    }
    free(n->q);
}

static p2p_addr addr_of(net *n, int i)
{
    return simnet_info(n->h[i], n->id[1 - i].ed_pk).address;
}

static int sent;
static void send_some(net *n, int count, uint64_t gap)
{
    for (int k = 0; k < count; k++) {
        uint8_t msg[200];
        memset(msg, MARKER, sizeof msg);
        p2p_put_u32(msg, (uint32_t)sent);
        p2p_peer_handle ph = p2p_host_find(n->h[0], n->id[1].ed_pk);
        if (p2p_peer_send(n->h[0], ph, 7, msg, sizeof msg, 0, NULL, n->t) == 0) sent++;
        flush(n, 0);
        run(n, gap);
    }
}

static uint64_t changes(net *n, int i)
{
    return simnet_stats(n->h[i]).path_changes;
}

/* The two hosts (net_start), A dialling B's public address, run for `us`: they joined. */
static void pair_up(net *n, uint64_t lan_delay, uint64_t pub_delay, uint64_t us)
{
    sent = 0;
    net_start(n, lan_delay, pub_delay);
    T_EQ_INT(p2p_host_connect(n->h[0], &n->pub[1], n->id[1].ed_pk, 0, NULL), 0);
    flush(n, 0);
    run(n, us);
    T_EQ_INT(n->joins, 2);
}

/* LAN 1 ms round trip, public 20 ms: A dials B's public address, and within 2 s both send on
 * the LAN, with the messages in between all delivered once and in order. */
static void test_lan_chosen(void)
{
    net n;
    pair_up(&n, 500, 10 * MS, 200 * MS);
    p2p_addr a0 = addr_of(&n, 0);
    T_CHECK(p2p_addr_equal(&a0, &n.pub[1]));
    send_some(&n, 100, 20 * MS); /* 2 s */
    p2p_addr a = addr_of(&n, 0), b = addr_of(&n, 1);
    T_CHECK(p2p_addr_equal(&a, &n.lan[1]));
    T_CHECK(p2p_addr_equal(&b, &n.lan[0]));
    run(&n, SEC);
    T_EQ_INT(n.next_in, sent);
    T_EQ_INT(n.bad, 0);
    T_EQ_INT(sent, 100);
    printf("     LAN chosen: path changes A %llu B %llu\n", (unsigned long long)changes(&n, 0),
           (unsigned long long)changes(&n, 1));
    /* what p2p_peer_stats_get reports: both paths, with their round trips */
    p2p_peer_stats ps;
    T_EQ_INT(p2p_peer_stats_get(n.h[0], p2p_host_find(n.h[0], n.id[1].ed_pk), &ps), 0);
    T_EQ_INT(ps.path, P2P_PATH_DIRECT);
    T_EQ_INT(ps.ncands, 2);
    int lan_ok = 0, pub_ok = 0;
    for (int i = 0; i < ps.ncands; i++) {
        char txt[P2P_ADDR_TEXT_MAX];
        p2p_addr_format(&ps.cands[i].addr, txt, sizeof txt);
        printf("     candidate %s kind %d state %d rtt %llu us\n", txt, ps.cands[i].kind,
               ps.cands[i].state, (unsigned long long)ps.cands[i].rtt_us);
        if (p2p_addr_equal(&ps.cands[i].addr, &n.lan[1]))
            lan_ok = ps.cands[i].state == P2P_CAND_VALID && ps.cands[i].rtt_us < 2 * MS &&
                     ps.cands[i].kind == P2P_ADDR_LOCAL;
        if (p2p_addr_equal(&ps.cands[i].addr, &n.pub[1]))
            pub_ok = ps.cands[i].state == P2P_CAND_VALID && ps.cands[i].rtt_us >= 20 * MS &&
                     ps.cands[i].rtt_us < 25 * MS;
    }
    T_CHECK(lan_ok && pub_ok);
    /* stays there: nothing better turns up */
    uint64_t c0 = changes(&n, 0);
    send_some(&n, 50, 100 * MS);
    T_EQ_INT(changes(&n, 0), c0);
    net_stop(&n);
}

/* Hysteresis: LAN 19 ms against public 20 ms is not worth a switch (under 20 %); LAN 10 ms
 * is, at the next timing round (every 30 s); and back when the public path gets faster. */
static void test_hysteresis(void)
{
    net n;
    pair_up(&n, 9500, 10 * MS, 5 * SEC);
    p2p_addr a = addr_of(&n, 0);
    T_CHECK(p2p_addr_equal(&a, &n.pub[1]));
    n.lan_delay = 5 * MS; /* 10 ms against 20 ms: within two rounds */
    run(&n, 61 * SEC);
    a = addr_of(&n, 0);
    T_CHECK(p2p_addr_equal(&a, &n.lan[1]));
    n.pub_delay = 900; /* 1.8 ms against 10 ms: within two rounds */
    run(&n, 61 * SEC);
    a = addr_of(&n, 0);
    T_CHECK(p2p_addr_equal(&a, &n.pub[1]));
    run(&n, 90 * SEC); /* a few timing rounds: both sides' estimates settle */
    a = addr_of(&n, 0);
    T_CHECK(p2p_addr_equal(&a, &n.pub[1]));
    n.lan_delay = 800; /* 1.6 against 1.8 ms: 0.2 ms better, not 2 ms: stays */
    uint64_t c0 = changes(&n, 0);
    run(&n, 61 * SEC);
    a = addr_of(&n, 0);
    T_CHECK(p2p_addr_equal(&a, &n.pub[1]));
    T_EQ_INT(changes(&n, 0), c0);
    send_some(&n, 20, 10 * MS);
    run(&n, SEC);
    T_EQ_INT(n.next_in, sent);
    T_EQ_INT(n.bad, 0);
    net_stop(&n);
}

int main(void)
{
    p2p_init();
    T_RUN(test_lan_chosen);
    T_RUN(test_hysteresis);
    return t_summary("test_pathchoice");
}
