/*
 * p2p_probe.c - the STUN client (RFC 8489 Binding, RFC 5780 mapping behaviour). Interface stub (issue 12): the module lands with its work package.
 */
#include "p2p_probe.h"

int p2p_probe_init(p2p_host *h, const p2p_config *cfg, uint64_t now)
{
    (void)h;
    (void)cfg;
    (void)now;
    return 0;
}

void p2p_probe_free(p2p_host *h)
{
    (void)h;
}

int p2p_probe_on_datagram(p2p_host *h, const p2p_addr *from, const uint8_t *b, size_t len,
                          uint64_t now)
{
    (void)h;
    (void)from;
    (void)b;
    (void)len;
    (void)now;
    return 0;
}

void p2p_probe_on_io(p2p_host *h, const p2p_io_result *r, uint64_t now)
{
    (void)h;
    (void)r;
    (void)now;
}

uint64_t p2p_probe_deadline(const p2p_host *h)
{
    (void)h;
    return P2P_TIME_NEVER;
}

void p2p_probe_timer(p2p_host *h, uint64_t now)
{
    (void)h;
    (void)now;
}

void p2p_probe_network_changed(p2p_host *h, uint64_t now)
{
    (void)h;
    (void)now;
}

void p2p_probe_close(p2p_host *h, uint64_t now)
{
    (void)h;
    (void)now;
}
