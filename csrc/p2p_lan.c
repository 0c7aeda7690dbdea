/*
 * p2p_lan.c - LAN discovery: signed beacons on a multicast group and the broadcast address. Interface stub (issue 12): the module lands with its work package.
 */
#include "p2p_lan.h"

int p2p_lan_init(p2p_host *h, const p2p_config *cfg, uint64_t now)
{
    (void)h;
    (void)cfg;
    (void)now;
    return 0;
}

void p2p_lan_free(p2p_host *h)
{
    (void)h;
}

int p2p_lan_on_datagram(p2p_host *h, const p2p_addr *from, const uint8_t *b, size_t len,
                        uint64_t now)
{
    (void)h;
    (void)from;
    (void)b;
    (void)len;
    (void)now;
    return 0;
}

void p2p_lan_on_io(p2p_host *h, const p2p_io_result *r, uint64_t now)
{
    (void)h;
    (void)r;
    (void)now;
}

uint64_t p2p_lan_deadline(const p2p_host *h)
{
    (void)h;
    return P2P_TIME_NEVER;
}

void p2p_lan_timer(p2p_host *h, uint64_t now)
{
    (void)h;
    (void)now;
}

void p2p_lan_network_changed(p2p_host *h, uint64_t now)
{
    (void)h;
    (void)now;
}

void p2p_lan_close(p2p_host *h, uint64_t now)
{
    (void)h;
    (void)now;
}

size_t p2p_lan_peers(const p2p_host *h, p2p_lan_peer *out, size_t cap)
{
    (void)h;
    (void)out;
    (void)cap;
    return 0;
}
