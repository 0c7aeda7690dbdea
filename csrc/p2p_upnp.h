/*
 * p2p_upnp.h - UPnP-IGD text: the SSDP search and its reply, the device description's control
 * URL, and the SOAP calls of WANIPConnection. A pure codec (base layer). docs/PROTOCOL.md
 * section 8.7.
 */
#ifndef P2P_UPNP_H
#define P2P_UPNP_H

#include "p2pnet.h"

#define P2P_SSDP_PORT 1900
#define P2P_UPNP_REPLY_MAX 16384

/* The M-SEARCH for an InternetGatewayDevice. Returns its length or 0. */
size_t p2p_ssdp_msearch(uint8_t *out, size_t cap);
/* The LOCATION URL of an SSDP "HTTP/1.1 200" reply into url (NUL-terminated). Returns 0 or
 * -1. */
int p2p_ssdp_location(const uint8_t *b, size_t len, char *url, size_t cap);
/* From a device description: the control URL's path and the service type of the first
 * WANIPConnection (1 or 2) or WANPPPConnection service. Returns 0 or -1. */
int p2p_upnp_control(const char *xml, size_t len, char *path, size_t pcap, char *svc, size_t scap);
enum { P2P_UPNP_ADD = 1, P2P_UPNP_DELETE = 2, P2P_UPNP_GET_IP = 3, P2P_UPNP_DESCRIBE = 4 };
/* A whole HTTP request: DESCRIBE is the GET of path; the others are SOAP POSTs to path for
 * service svc (AddPortMapping of UDP eport -> client:iport for lease seconds,
 * DeletePortMapping of eport, GetExternalIPAddress). host: the Host header ("ip:port").
 * Returns its length, or 0 when cap is too small. */
size_t p2p_upnp_request(uint8_t *out, size_t cap, int action, const char *svc, const char *host,
                        const char *path, uint16_t eport, uint16_t iport, const p2p_addr *client,
                        uint32_t lease);
/* Reads an HTTP reply: the status (*http), the UPnP error code of a SOAP fault (*upnp_err, 0
 * none), and for GetExternalIPAddress the address (*ext_ip, may be NULL). Returns 0 or -1. */
int p2p_upnp_reply(const uint8_t *b, size_t len, int *http, int *upnp_err, p2p_addr *ext_ip);
/* Splits "http://a.b.c.d:port/path" (numeric IPv4 only) into addr and path. Returns 0 or -1. */
int p2p_upnp_url(const char *url, p2p_addr *addr, char *path, size_t pcap);

#endif
