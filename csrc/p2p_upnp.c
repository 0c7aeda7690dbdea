/*
 * p2p_upnp.c - UPnP-IGD text codec. Interface stub (issue 12).
 */
#include "p2p_upnp.h"

size_t p2p_ssdp_msearch(uint8_t *out, size_t cap)
{
    (void)out;
    (void)cap;
    return 0;
}

int p2p_ssdp_location(const uint8_t *b, size_t len, char *url, size_t cap)
{
    (void)b;
    (void)len;
    (void)url;
    (void)cap;
    return -1;
}

int p2p_upnp_control(const char *xml, size_t len, char *path, size_t pcap, char *svc, size_t scap)
{
    (void)xml;
    (void)len;
    (void)path;
    (void)pcap;
    (void)svc;
    (void)scap;
    return -1;
}

size_t p2p_upnp_request(uint8_t *out, size_t cap, int action, const char *svc, const char *host,
                        const char *path, uint16_t eport, uint16_t iport, const p2p_addr *client,
                        uint32_t lease)
{
    (void)out;
    (void)cap;
    (void)action;
    (void)svc;
    (void)host;
    (void)path;
    (void)eport;
    (void)iport;
    (void)client;
    (void)lease;
    return 0;
}

int p2p_upnp_reply(const uint8_t *b, size_t len, int *http, int *upnp_err, p2p_addr *ext_ip)
{
    (void)b;
    (void)len;
    (void)http;
    (void)upnp_err;
    (void)ext_ip;
    return -1;
}

int p2p_upnp_url(const char *url, p2p_addr *addr, char *path, size_t pcap)
{
    (void)url;
    (void)addr;
    (void)path;
    (void)pcap;
    return -1;
}
