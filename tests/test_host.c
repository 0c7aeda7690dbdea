/* test_host.c - the sans-IO core end to end: two hosts wired through an in-memory link that
 * the test controls (loss, reordering, tampering), on a virtual clock. */
#include "t.h"
#include "../csrc/p2pnet.h"
#include "../csrc/p2p_crypto.h"
#include "simnet.h"

#include <stdlib.h>

#define QCAP 65536
typedef struct pkt {
    int to;
    uint64_t at;
    size_t len;
    uint8_t data[P2P_MAX_PACKET];
} pkt;
typedef struct net {
    p2p_host *h[3];
    p2p_addr addr[3];
    int n;
    pkt *q;
    size_t qn;
    uint64_t now;
    p2p_rng rng;
    unsigned loss_pct, reorder_pct, flip_pct;
    uint64_t delay;
    /* what the hosts reported */
    int joins[3], leaves[3], errors[3], leave_reason[3];
    char last_error[3][256];
    uint64_t msgs[3], next_expect[3], bad_order[3], replies[3], reply_status[3];
    uint64_t datagrams[3];
    int auto_reply;
} net;

static int addr_index(net *n, const p2p_addr *a)
{
    for (int i = 0; i < n->n; i++)
        if (p2p_addr_equal(&n->addr[i], a)) return i;
    return -1;
}

static void drain(net *n, int i)
{
    p2p_addr to;
    uint8_t buf[P2P_MAX_PACKET];
    size_t len;
    while ((len = p2p_host_next_datagram(n->h[i], &to, buf, sizeof buf)) > 0) {
        int dst = addr_index(n, &to);
        if (dst < 0 || n->qn >= QCAP) continue;
        if (p2p_rng_below(&n->rng, 100) < n->loss_pct) continue;
        pkt *p = &n->q[n->qn++];
        p->to = dst;
        p->at =
            n->now + n->delay + (p2p_rng_below(&n->rng, 100) < n->reorder_pct ? n->delay * 3 : 0);
        p->len = len;
        memcpy(p->data, buf, len);
        if (p2p_rng_below(&n->rng, 100) < n->flip_pct)
            p->data[p2p_rng_below(&n->rng, (uint32_t)len)] ^= 0x40;
    }
    p2p_event ev;
    while (p2p_host_next_event(n->h[i], &ev)) {
        switch (ev.type) {
        case P2P_EV_JOIN: n->joins[i]++; break;
        case P2P_EV_LEAVE:
            n->leaves[i]++;
            n->leave_reason[i] = ev.reason;
            break;
        case P2P_EV_ERROR:
            n->errors[i]++;
            snprintf(n->last_error[i], sizeof n->last_error[i], "%.*s", (int)ev.len,
                     (const char *)ev.data);
            break;
        case P2P_EV_MESSAGE: {
            n->msgs[i]++;
            uint64_t v = 0;
            if (ev.len >= 8) memcpy(&v, ev.data, 8);
            if (v != n->next_expect[i]) n->bad_order[i]++;
            n->next_expect[i] = v + 1;
            /* the body is v repeated as a pattern: check it byte-exact */
            for (size_t k = 8; k < ev.len; k++)
                if (ev.data[k] != (uint8_t)(v + k)) {
                    n->bad_order[i]++;
                    break;
                }
            if (ev.want_reply) {
                if (n->auto_reply == 2)
                    p2p_peer_reply(n->h[i], ev.peer, ev.seq, P2P_REPLY_ERROR,
                                   (const uint8_t *)"boom", 4, n->now);
                else
                    p2p_peer_reply(n->h[i], ev.peer, ev.seq, P2P_REPLY_DATA, ev.data,
                                   ev.len < 8 ? ev.len : 8, n->now);
            }
            break;
        }
        case P2P_EV_REPLY:
            n->replies[i]++;
            n->reply_status[i] = (uint64_t)ev.status;
            break;
        case P2P_EV_DATAGRAM: n->datagrams[i]++; break;
        default: break;
        }
    }
    /* replies queue datagrams too */
    while ((len = p2p_host_next_datagram(n->h[i], &to, buf, sizeof buf)) > 0) {
        int dst = addr_index(n, &to);
        if (dst < 0 || n->qn >= QCAP) continue;
        if (p2p_rng_below(&n->rng, 100) < n->loss_pct) continue;
        pkt *p = &n->q[n->qn++];
        p->to = dst;
        p->at = n->now + n->delay;
        p->len = len;
        memcpy(p->data, buf, len);
    }
}

/* Advances virtual time to `until`, delivering packets and firing timers in order. */
static void run(net *n, uint64_t until)
{
    for (;;) {
        uint64_t next = until;
        for (size_t k = 0; k < n->qn; k++)
            if (n->q[k].at < next) next = n->q[k].at;
        for (int i = 0; i < n->n; i++) {
            uint64_t t = p2p_host_next_timeout(n->h[i]);
            if (t < next) next = t;
        }
        if (next > until) break;
        if (next > n->now) n->now = next;
        for (size_t k = 0; k < n->qn;) {
            if (n->q[k].at <= n->now) {
                pkt p = n->q[k];
                n->q[k] = n->q[--n->qn];
                p2p_host_recv(n->h[p.to], &n->addr[1 - p.to], p.data, p.len, n->now);
            } else
                k++;
        }
        for (int i = 0; i < n->n; i++) {
            if (p2p_host_next_timeout(n->h[i]) <= n->now) p2p_host_on_timeout(n->h[i], n->now);
            drain(n, i);
        }
        if (next == until) break;
    }
    n->now = until;
}

static p2p_host *mkhost(const char *netkey, uint64_t seed, uint32_t timeout_s)
{
    p2p_config c;
    p2p_config_init(&c);
    c.timeout_us = (uint64_t)timeout_s * 1000000;
    if (netkey) {
        c.network_key = (const uint8_t *)netkey;
        c.network_key_len = strlen(netkey);
    }
    return simnet_fresh_host(&c, seed);
}

static net *mknet(const char *k0, const char *k1, uint64_t seed)
{
    net *n = calloc(1, sizeof *n);
    n->q = malloc(QCAP * sizeof *n->q);
    p2p_rng_init(&n->rng, seed);
    n->n = 2;
    n->delay = 10000;
    n->h[0] = mkhost(k0, seed * 3 + 1, 10);
    n->h[1] = mkhost(k1, seed * 3 + 2, 10);
    p2p_addr_parse(&n->addr[0], "192.0.2.1:4000");
    p2p_addr_parse(&n->addr[1], "192.0.2.2:4000");
    return n;
}

static void freenet(net *n)
{
    for (int i = 0; i < n->n; i++) p2p_host_free(n->h[i]);
    free(n->q);
    free(n);
}

static p2p_peer_handle connect01(net *n, const uint8_t *expect)
{
    p2p_peer_handle ph = 0;
    T_EQ_INT(p2p_host_connect(n->h[0], &n->addr[1], expect, n->now, &ph), 0);
    drain(n, 0);
    run(n, n->now + 3000000);
    return ph;
}

static size_t make_msg(uint8_t *buf, uint64_t v, size_t len)
{
    memcpy(buf, &v, 8);
    for (size_t k = 8; k < len; k++) buf[k] = (uint8_t)(v + k);
    return len;
}

static void test_handshake_and_messages(void)
{
    net *n = mknet(NULL, NULL, 1);
    p2p_peer_handle ph = connect01(n, NULL);
    T_EQ_INT(n->joins[0], 1);
    T_EQ_INT(n->joins[1], 1);
    p2p_peer_info info;
    T_EQ_INT(p2p_host_peer_info(n->h[0], ph, &info), 0);
    T_EQ_INT(info.state, P2P_PEER_CONNECTED);
    T_EQ_MEM(info.id, p2p_host_id(n->h[1]), P2P_ID_LEN);
    static uint8_t buf[300000];
    for (uint64_t v = 0; v < 200; v++) {
        size_t len = make_msg(buf, v, 8 + (v * 7919) % sizeof buf / 4);
        T_EQ_INT(p2p_peer_send(n->h[0], ph, 7, buf, len, v % 3 == 0, NULL, n->now), 0);
    }
    drain(n, 0);
    run(n, n->now + 20000000);
    T_EQ_INT(n->msgs[1], 200);
    T_EQ_INT(n->bad_order[1], 0);
    T_EQ_INT(n->replies[0], 67);
    freenet(n);
}

static void test_loss_and_reorder(void)
{
    net *n = mknet("k", "k", 2);
    n->loss_pct = 20;
    n->reorder_pct = 10;
    p2p_peer_handle ph = connect01(n, NULL);
    T_EQ_INT(n->joins[0], 1);
    static uint8_t buf[5000];
    for (uint64_t v = 0; v < 1000; v++) {
        size_t len = make_msg(buf, v, 8 + (v * 31) % 3000);
        T_EQ_INT(p2p_peer_send(n->h[0], ph, 1, buf, len, 0, NULL, n->now), 0);
    }
    drain(n, 0);
    run(n, n->now + 60000000);
    T_EQ_INT(n->msgs[1], 1000);
    T_EQ_INT(n->bad_order[1], 0);
    p2p_stats st;
    p2p_host_stats(n->h[0], &st);
    T_CHECK(st.retransmits > 0);
    freenet(n);
}

static void test_tampering_is_dropped(void)
{
    net *n = mknet(NULL, NULL, 3);
    n->flip_pct = 10;
    p2p_peer_handle ph = connect01(n, NULL);
    run(n, n->now + 5000000);
    T_EQ_INT(n->joins[0], 1);
    static uint8_t buf[2000];
    for (uint64_t v = 0; v < 300; v++)
        p2p_peer_send(n->h[0], ph, 1, buf, make_msg(buf, v, 1500), 0, NULL, n->now);
    drain(n, 0);
    run(n, n->now + 30000000);
    T_EQ_INT(n->msgs[1], 300);
    T_EQ_INT(n->bad_order[1], 0);
    p2p_stats st;
    p2p_host_stats(n->h[1], &st);
    T_CHECK(st.dropped > 0);
    freenet(n);
}

static void test_network_key_mismatch_is_silent(void)
{
    net *n = mknet("alpha", "beta", 4);
    connect01(n, NULL);
    run(n, n->now + 15000000);
    T_EQ_INT(n->joins[0], 0);
    T_EQ_INT(n->joins[1], 0);
    p2p_stats st;
    p2p_host_stats(n->h[1], &st);
    T_EQ_INT(st.packets_sent, 0);
    T_CHECK(st.dropped > 0);
    T_EQ_INT(n->errors[0], 1); /* connect timed out */
    freenet(n);
}

static void test_expected_id_mismatch(void)
{
    net *n = mknet(NULL, NULL, 5);
    uint8_t wrong[P2P_ID_LEN];
    memset(wrong, 0xab, P2P_ID_LEN);
    connect01(n, wrong);
    T_EQ_INT(n->joins[0], 0);
    T_EQ_INT(n->joins[1], 0);
    T_EQ_INT(n->errors[0], 1);
    T_CHECK(strstr(n->last_error[0], "mismatch") != NULL);
    freenet(n);
}

static void test_close_and_timeout(void)
{
    net *n = mknet(NULL, NULL, 6);
    connect01(n, NULL);
    p2p_host_close(n->h[0], n->now);
    drain(n, 0);
    run(n, n->now + 1000000);
    T_EQ_INT(n->leaves[1], 1);
    T_EQ_INT(n->leave_reason[1], P2P_LEAVE_CLOSED);

    net *m = mknet(NULL, NULL, 7);
    connect01(m, NULL);
    m->loss_pct = 100; /* the link dies */
    run(m, m->now + 12000000);
    T_EQ_INT(m->leaves[0], 1);
    T_EQ_INT(m->leave_reason[0], P2P_LEAVE_TIMEOUT);
    T_EQ_INT(m->leaves[1], 1);
    freenet(n);
    freenet(m);
}

static void test_remote_error_and_datagrams(void)
{
    net *n = mknet(NULL, NULL, 8);
    n->auto_reply = 2;
    p2p_peer_handle ph = connect01(n, NULL);
    uint8_t buf[16];
    p2p_peer_send(n->h[0], ph, 1, buf, make_msg(buf, 0, 16), 1, NULL, n->now);
    p2p_peer_send_datagram(n->h[0], ph, 3, buf, 16, n->now);
    static uint8_t big[P2P_MAX_DATAGRAM + 1];
    T_EQ_INT(p2p_peer_send_datagram(n->h[0], ph, 3, big, sizeof big, n->now), P2P_ERR_TOO_BIG);
    T_EQ_INT(p2p_peer_send_datagram(n->h[0], ph, 3, big, P2P_MAX_DATAGRAM, n->now), 0);
    drain(n, 0);
    run(n, n->now + 1000000);
    T_EQ_INT(n->replies[0], 1);
    T_EQ_INT(n->reply_status[0], P2P_REPLY_ERROR);
    T_EQ_INT(n->datagrams[1], 2);
    freenet(n);
}

static void test_garbage(void)
{
    net *n = mknet(NULL, NULL, 9);
    connect01(n, NULL);
    uint8_t buf[P2P_MAX_PACKET + 10];
    for (int i = 0; i < 5000; i++) {
        size_t len = p2p_rng_below(&n->rng, sizeof buf);
        p2p_rng_bytes(&n->rng, buf, len);
        if (len) buf[0] = (uint8_t)(1 + i % 4);
        p2p_host_recv(n->h[1], &n->addr[0], buf, len, n->now);
    }
    p2p_stats st;
    p2p_host_stats(n->h[1], &st);
    T_CHECK(st.dropped >= 4900);
    T_EQ_INT(st.peers, 1);
    freenet(n);
}

int main(void)
{
    p2p_init();
    T_RUN(test_handshake_and_messages);
    T_RUN(test_loss_and_reorder);
    T_RUN(test_tampering_is_dropped);
    T_RUN(test_network_key_mismatch_is_silent);
    T_RUN(test_expected_id_mismatch);
    T_RUN(test_close_and_timeout);
    T_RUN(test_remote_error_and_datagrams);
    T_RUN(test_garbage);
    return t_summary("host");
}
