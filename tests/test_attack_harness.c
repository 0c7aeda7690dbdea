/* test_attack_harness.c - the attacker harness itself (tests/attack.h): honest hosts join
 * through it, a forged source is tallied, and sealed frames reach the victim's session. */
#include "attack.h"

static void test_hosts_join_and_talk(void)
{
    anet net;
    an_init(&net, 10000);
    int a = an_add(&net, NULL), b = an_add(&net, NULL);
    p2p_peer_handle ph = an_connect(&net, a, b, 2000000);
    T_CHECK(ph != 0);
    T_EQ_INT(net.n[a].joins, 1);
    T_EQ_INT(net.n[b].joins, 1);
    T_EQ_INT(p2p_peer_send(net.n[a].h, ph, 1, (const uint8_t *)"hi", 2, 0, NULL, net.now), 0);
    an_run(&net, 100000);
    T_EQ_INT(net.n[b].msgs, 1);
    /* the attacker's lever: a PING sealed with a's keys, claimed to come from a stranger */
    p2p_addr victim = an_addr("203.0.113.9:53");
    uint8_t ping[1] = {P2P_FRAME_PING};
    T_CHECK(an_frames(&net, a, b, ping, 1, &victim) > 0);
    T_CHECK(an_recv_from(&net, b, &victim) > 0);
    an_run(&net, 3000000);
    /* b moved the session to the forged address, and sent it at most 3x what came from it */
    T_CHECK(an_sent_to(&net, b, &victim) <= 3 * an_recv_from(&net, b, &victim));
    T_CHECK(an_sent_to_strangers(&net, b) == an_sent_to(&net, b, &victim));
    an_free(&net);
}

int main(void)
{
    T_RUN(test_hosts_join_and_talk);
    return t_summary("test_attack_harness");
}
