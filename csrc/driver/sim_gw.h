/*
 * driver/sim_gw.h - a simulated home gateway's port-mapping services and a simulated STUN
 * server, for the deterministic simulator (driver/sim.c) and the C tests. Pure: no clock, no
 * socket, no randomness; time comes in as `now` (microseconds, the sim's virtual time). They
 * are written from the RFCs and the lab captures of design12 section 8.3 independently of the
 * core's codecs (p2p_pmp, p2p_upnp, p2p_stun), so the tests compare two implementations.
 *
 * Gateway (p2p_sim_gw): the LAN side of a NAT router, at address `lan` (port ignored), whose
 * public address is `ext`. Depending on its kind it answers, like miniupnpd 2.3 does:
 *   UDP lan:5351  PCP MAP (RFC 6887: version 2, 60-byte request) and NAT-PMP (RFC 6886:
 *                 external address, map UDP/TCP, delete with lifetime 0)
 *   UDP lan:1900  SSDP M-SEARCH (unicast to the gateway, or to 239.255.255.250:1900) with
 *                 "HTTP/1.1 200 OK" and LOCATION: http://LAN:5000/rootDesc.xml
 *   TCP lan:5000  HTTP: GET /rootDesc.xml (WANIPConnection:2, controlURL /ctl/IPConn), POST
 *                 /ctl/IPConn with SOAPAction AddPortMapping, DeletePortMapping,
 *                 GetExternalIPAddress (service type :1 or :2)
 * kinds:
 *   P2P_SIM_GW_SILENT   answers nothing (a router without port mapping; the packet bound test)
 *   P2P_SIM_GW_PCP      PCP and NAT-PMP, no UPnP (miniupnpd with enable_upnp=no)
 *   P2P_SIM_GW_NATPMP   NAT-PMP only: a PCP request gets NAT-PMP's 8-byte "unsupported
 *                       version" reply (00 80 0001 + u32 epoch: RFC 6886 section 3.5 with
 *                       its erratum 3618; RFC 6887 section 9), as an old AirPort does
 *   P2P_SIM_GW_UPNP     UPnP-IGD only (port 5351 silent)
 *   P2P_SIM_GW_ALL      all three (miniupnpd's default)
 * A mapping is (internal ip:port -> external port, protocol UDP, expiry). Requests are
 * accepted only from the LAN (any private address the caller hands in). PCP's client-IP
 * field must equal the packet's source IP (else ADDRESS_MISMATCH, 12), as in miniupnpd.
 * The suggested external port is granted when free, else the next free one above it.
 * Lifetime is capped at 86400 s (PCP/PMP) and granted as asked; UPnP lease 0 = permanent.
 *
 * How the simulator uses it (engineer P3, driver/sim.c):
 *   - a host behind a NAT with a gateway asks P2P_IO_GATEWAY: answer addr = the gateway's
 *     `lan` address (port 0), local = the host's private address;
 *   - a datagram from that host to lan:5351, lan:1900 or 239.255.255.250:1900 goes to
 *     p2p_sim_gw_udp() instead of the network (after the host's UP link, if any); a reply
 *     (return > 0) is delivered to the host from `*reply_from` after the sim's latency;
 *   - P2P_IO_HTTP to lan:5000: p2p_sim_gw_http() gives the reply bytes; 0 means the TCP
 *     connection was refused (status P2P_ERR_IO);
 *   - the NAT consults the mappings: p2p_sim_gw_out() for an outbound datagram from a private
 *     ip:port (a mapped port leaves with that external port, to every destination:
 *     endpoint-independent mapping, as miniupnpd's MINIUPNPD-POSTROUTING --to-ports does),
 *     p2p_sim_gw_in() for an inbound datagram to the NAT's public ip:port (a mapping lets
 *     anyone in: endpoint-independent filtering, as miniupnpd's DNAT does);
 *   - p2p_sim_gw_reboot() when the test reboots the router: mappings gone, epoch back to 0.
 *
 * STUN server (p2p_sim_stun): like coturn --stun-only with two -L addresses and
 * --alt-listening-port: it listens on primary ip1:p1 and, when an alternate is given, on
 * ip1:p2, ip2:p1, ip2:p2. A Binding request (RFC 8489, with or without FINGERPRINT) to any of
 * them is answered from that same address with XOR-MAPPED-ADDRESS, MAPPED-ADDRESS,
 * RESPONSE-ORIGIN, OTHER-ADDRESS (ip2:p2; only when an alternate exists and only in answers
 * from ip1, as coturn) and FINGERPRINT when the request had one. CHANGE-REQUEST (RFC 5780) is
 * honoured: the answer comes from the changed ip and/or port (the sim must send it from
 * *reply_from). Anything else gets no answer.
 */
#ifndef P2P_SIM_GW_H
#define P2P_SIM_GW_H

#include <stddef.h>
#include <stdint.h>
#include "p2pnet.h"

enum {
    P2P_SIM_GW_SILENT = 0,
    P2P_SIM_GW_PCP = 1,
    P2P_SIM_GW_NATPMP = 2,
    P2P_SIM_GW_UPNP = 3,
    P2P_SIM_GW_ALL = 4,
};

/* Ports the gateway serves. */
#define P2P_SIM_GW_PMP_PORT 5351
#define P2P_SIM_GW_SSDP_PORT 1900
#define P2P_SIM_GW_HTTP_PORT 5000
/* Mappings a gateway holds at most; more requests get NO_RESOURCES / 728. */
#define P2P_SIM_GW_MAX_MAPS 64

typedef struct p2p_sim_gw p2p_sim_gw;

typedef struct p2p_sim_gw_stats {
    uint64_t pcp, natpmp, ssdp, http; /* requests received (well-formed or not) */
    uint64_t maps, deletes;           /* mappings made (renewals too) and deleted */
} p2p_sim_gw_stats;

/* A gateway of `kind` with LAN address `lan` and public address `ext` (IPv4, ports ignored),
 * started at `now` (its PCP/NAT-PMP epoch counts seconds from there). NULL on bad arguments or
 * no memory. */
p2p_sim_gw *p2p_sim_gw_new(int kind, const p2p_addr *lan, const p2p_addr *ext, uint64_t now);
void p2p_sim_gw_free(p2p_sim_gw *g); /* NULL allowed */
int p2p_sim_gw_kind(const p2p_sim_gw *g);
/* The gateway's LAN address (port 0): the P2P_IO_GATEWAY answer. */
void p2p_sim_gw_lan(const p2p_sim_gw *g, p2p_addr *out);

/* A UDP datagram from the LAN host `from` to the gateway's `to` (lan:5351, lan:1900 or
 * 239.255.255.250:1900). Writes the answer into out and its source into *reply_from and
 * returns its length, or 0 for no answer (silent kinds, malformed or unknown requests). */
size_t p2p_sim_gw_udp(p2p_sim_gw *g, const p2p_addr *from, const p2p_addr *to, const uint8_t *in,
                      size_t len, uint64_t now, uint8_t *out, size_t cap, p2p_addr *reply_from);
/* One HTTP request from `from` to lan:5000 (the bytes of P2P_IO_HTTP). Writes the whole reply
 * (status line, headers, body) into out and returns its length; 0: connection refused (no
 * UPnP) or cap too small. */
size_t p2p_sim_gw_http(p2p_sim_gw *g, const p2p_addr *from, const uint8_t *req, size_t len,
                       uint64_t now, uint8_t *out, size_t cap);

/* NAT hooks. Outbound: when a live mapping has internal address `priv` (ip and port), writes
 * its external port into *eport and returns 1; else 0 (the NAT maps as usual). Inbound: when
 * a live mapping has external port `eport`, writes its internal ip:port into *priv and
 * returns 1; else 0 (the NAT filters as usual). */
int p2p_sim_gw_out(const p2p_sim_gw *g, const p2p_addr *priv, uint64_t now, uint16_t *eport);
int p2p_sim_gw_in(const p2p_sim_gw *g, uint16_t eport, uint64_t now, p2p_addr *priv);

/* The router reboots: every mapping is forgotten and the epoch starts again from `now`. */
void p2p_sim_gw_reboot(p2p_sim_gw *g, uint64_t now);
/* Live mappings now (for tests). */
size_t p2p_sim_gw_mappings(const p2p_sim_gw *g, uint64_t now);
void p2p_sim_gw_stats_get(const p2p_sim_gw *g, p2p_sim_gw_stats *out);

/* ---- STUN server ---------------------------------------------------------------------- */

typedef struct p2p_sim_stun p2p_sim_stun;

/* A STUN server on `primary` (ip1:p1) and, when `alternate` is not NULL, ip1:p2, ip2:p1,
 * ip2:p2 with alternate = ip2:p2 (ip2 != ip1, p2 != p1). NULL on bad arguments or no memory. */
p2p_sim_stun *p2p_sim_stun_new(const p2p_addr *primary, const p2p_addr *alternate);
void p2p_sim_stun_free(p2p_sim_stun *s); /* NULL allowed */
/* The addresses it listens on (1 or 4) into out[4]; returns how many. */
size_t p2p_sim_stun_addresses(const p2p_sim_stun *s, p2p_addr out[4]);
/* A datagram from `from` (as the server sees it: after NAT) to `to` (one of its addresses).
 * Writes the answer into out and the address it must come from into *reply_from; returns its
 * length or 0 (no answer). */
size_t p2p_sim_stun_udp(p2p_sim_stun *s, const p2p_addr *from, const p2p_addr *to,
                        const uint8_t *in, size_t len, uint8_t *out, size_t cap,
                        p2p_addr *reply_from);
/* Binding requests answered so far. */
uint64_t p2p_sim_stun_answered(const p2p_sim_stun *s);

/* ---- the same with `void *ud` first, for the simulator's p2p_sim_gateway and p2p_sim_server
 * (driver/sim.h): set ud to the p2p_sim_gw / p2p_sim_stun ------------------------------ */
size_t p2p_sim_gw_udp_ud(void *ud, const p2p_addr *from, const p2p_addr *to, const uint8_t *in,
                         size_t len, uint64_t now, uint8_t *out, size_t cap, p2p_addr *reply_from);
size_t p2p_sim_gw_http_ud(void *ud, const p2p_addr *from, const uint8_t *req, size_t len,
                          uint64_t now, uint8_t *out, size_t cap);
int p2p_sim_gw_out_ud(void *ud, const p2p_addr *priv, uint64_t now, uint16_t *eport);
int p2p_sim_gw_in_ud(void *ud, uint16_t eport, uint64_t now, p2p_addr *priv);
size_t p2p_sim_stun_udp_ud(void *ud, const p2p_addr *from, const p2p_addr *to, const uint8_t *in,
                           size_t len, uint8_t *out, size_t cap, p2p_addr *reply_from);

#endif
