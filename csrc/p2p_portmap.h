/*
 * p2p_portmap.h - port mapping with the default gateway: PCP (RFC 6887), NAT-PMP (RFC 6886)
 * and UPnP-IGD (modules layer; issue 12, docs/PROTOCOL.md section 8.7).
 *
 * Per network (restarted by p2p_host_network_changed): ask the driver for the default gateway
 * (P2P_IO_GATEWAY; none: nothing is ever sent), then PCP MAP to gateway:5351 (tries at 0, 0.5,
 * 1.5 s), NAT-PMP when the gateway answers PCP with NAT-PMP's "unsupported version" (0, 0.25,
 * 0.75 s), then SSDP M-SEARCH to gateway:1900 (0 and 1 s) and 239.255.255.250:1900 (2 s), and
 * UPnP over HTTP (P2P_IO_HTTP) when a LOCATION on the gateway answers. A silent gateway gets
 * 6 datagrams in all, then nothing until the network changes. A granted mapping is renewed at
 * half its lifetime, becomes the node's "mapped" address (P2P_ADDR_MAPPED, when PUBLIC) and
 * says "independent" mapping (P2P_MAPSRC_PORTMAP); it is deleted at close.
 *
 * Nothing a peer says changes what is sent to the gateway: packets go only to the gateway the
 * driver read from the route table, and only its replies (gateway:5351, gateway:1900, HTTP
 * from a LOCATION on the gateway's IP) are read.
 *
 * The hub calls these; the module keeps its state in h->portmap (its own struct).
 */
#ifndef P2P_PORTMAP_H
#define P2P_PORTMAP_H

#include "p2p_state.h"

/* Tunables (design12 section 4.1). */
#define P2P_PORTMAP_LIFETIME 7200u                /* seconds asked of PCP / NAT-PMP */
#define P2P_PORTMAP_LEASE 3600u                   /* seconds asked of UPnP */
#define P2P_PORTMAP_IO_WAIT_US UINT64_C(10000000) /* a driver that never answers: give up */

/* Sets the module up from the configuration (h->portmap stays NULL when it is off).
 * Returns 0 or P2P_ERR_NOMEM. */
int p2p_portmap_init(p2p_host *h, const p2p_config *cfg, uint64_t now);
void p2p_portmap_free(p2p_host *h);
/* A datagram the hub's demux gave the module (from port 5351 or 1900). Returns 1 when it was
 * the module's (from the gateway, taken), 0 when not. */
int p2p_portmap_on_datagram(p2p_host *h, const p2p_addr *from, const uint8_t *b, size_t len,
                            uint64_t now);
/* The driver's answer to one of the module's requests (GATEWAY, HTTP); others are ignored. */
void p2p_portmap_on_io(p2p_host *h, const p2p_io_result *r, uint64_t now);
/* When p2p_portmap_timer is next due, or P2P_TIME_NEVER. */
uint64_t p2p_portmap_deadline(const p2p_host *h);
void p2p_portmap_timer(p2p_host *h, uint64_t now);
/* The driver saw the network change: delete the old mapping (one try) and start again. */
void p2p_portmap_network_changed(p2p_host *h, uint64_t now);
/* The host is closing: delete the mapping (one datagram or one HTTP request, not awaited). */
void p2p_portmap_close(p2p_host *h, uint64_t now);
/* Fills the gateway and port-mapping fields of *out (has_gateway, gateway, portmap,
 * has_mapped, mapped, mapped_expires). */
void p2p_portmap_info(const p2p_host *h, p2p_nat_info *out);

#endif
