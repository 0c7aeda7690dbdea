/*
 * p2p_portmap.c - port mapping: PCP (RFC 6887), NAT-PMP (RFC 6886) and UPnP-IGD with the default gateway. Interface stub (issue 12): the module lands with its work package.
 */
#include "p2p_portmap.h"

int p2p_portmap_init(p2p_host *h, const p2p_config *cfg, uint64_t now)
{
    (void)h;
    (void)cfg;
    (void)now;
    return 0;
}

void p2p_portmap_free(p2p_host *h)
{
    (void)h;
}

int p2p_portmap_on_datagram(p2p_host *h, const p2p_addr *from, const uint8_t *b, size_t len,
                            uint64_t now)
{
    (void)h;
    (void)from;
    (void)b;
    (void)len;
    (void)now;
    return 0;
}

void p2p_portmap_on_io(p2p_host *h, const p2p_io_result *r, uint64_t now)
{
    (void)h;
    (void)r;
    (void)now;
}

uint64_t p2p_portmap_deadline(const p2p_host *h)
{
    (void)h;
    return P2P_TIME_NEVER;
}

void p2p_portmap_timer(p2p_host *h, uint64_t now)
{
    (void)h;
    (void)now;
}

void p2p_portmap_network_changed(p2p_host *h, uint64_t now)
{
    (void)h;
    (void)now;
}

void p2p_portmap_close(p2p_host *h, uint64_t now)
{
    (void)h;
    (void)now;
}

void p2p_portmap_info(const p2p_host *h, p2p_nat_info *out)
{
    (void)h;
    out->portmap = P2P_PORTMAP_OFF;
}
