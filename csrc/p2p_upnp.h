/*
 * p2p_upnp.h - the UPnP-IGD text codecs (UPnP Device Architecture 1.1, IGD:1/IGD:2
 * WANIPConnection): the SSDP M-SEARCH and its reply's LOCATION, the http:// URL split, a tag
 * scanner that finds the WAN connection service's control URL in rootDesc.xml, the SOAP
 * requests AddPortMapping / DeletePortMapping / GetExternalIPAddress, and their replies.
 * Base layer: pure functions over borrowed text; no XML parser, no allocation.
 *
 * Every string written into a request is checked first (no CR, LF, quote or angle bracket),
 * so a hostile rootDesc cannot inject headers or markup into what we send.
 */
#ifndef P2P_UPNP_H
#define P2P_UPNP_H

#include <stddef.h>
#include <stdint.h>

#include "p2pnet.h"

#define P2P_SSDP_PORT 1900
#define P2P_SSDP_MSEARCH_LEN 137
#define P2P_UPNP_REPLY_MAX 16384 /* the driver reads at most this much of an HTTP reply */

/* Writes the M-SEARCH for InternetGatewayDevice:1 (137 bytes, design12 section 3.4).
 * Returns its length or 0 when cap is short. */
size_t p2p_ssdp_msearch(uint8_t *out, size_t cap);

/* When b is an SSDP reply ("HTTP/1.1 200", any case) with a LOCATION header, copies its value
 * (visible ASCII only, at most cap - 1 bytes) NUL-terminated into url and returns 0; else -1
 * (url then ""). The caller checks that the URL names the gateway. */
int p2p_ssdp_location(const uint8_t *b, size_t len, char *url, size_t cap);

/* Splits "http://a.b.c.d[:port][/path]" or "http://[v6][:port][/path]" (numeric hosts only;
 * port 80 when absent) into addr and path (NUL-terminated, "/" when absent, at most pcap - 1
 * bytes). Returns 0 or -1 (other schemes, names, bad ports, unsafe characters, too long). */
int p2p_upnp_url(const char *url, p2p_addr *addr, char *path, size_t pcap);

/* Scans a device description (rootDesc.xml, or the whole HTTP reply carrying it) for the
 * <service> whose <serviceType> is urn:schemas-upnp-org:service:WANIPConnection:N (first
 * choice) or WANPPPConnection:N, and copies its <controlURL> path (an absolute URL is cut to
 * its path) into path and the service type into svc, both NUL-terminated. Returns 0, or -1
 * when there is none or a value is unsafe or too long. */
int p2p_upnp_control(const char *xml, size_t len, char *path, size_t pcap, char *svc, size_t scap);

enum { P2P_UPNP_ADD = 1, P2P_UPNP_DELETE = 2, P2P_UPNP_GET_IP = 3, P2P_UPNP_DESCRIBE = 4 };

/* Writes a complete HTTP/1.1 request for action on host ("a.b.c.d:port", the Host header):
 * DESCRIBE is the GET of path (the device description; svc, ports, client unused and may be
 * NULL); the others are SOAP POSTs (headers + body, "Connection: close") to service svc at
 * path. ADD maps UDP eport ->
 * client:iport for lease seconds (0: permanent) with description "p2pnet"; DELETE removes
 * UDP eport; GET_IP asks for the external address (eport, iport, client, lease unused; client
 * may be NULL then). Returns the length, or 0 when cap is short, an argument is unsafe, or
 * client is not IPv4 for ADD. */
size_t p2p_upnp_request(uint8_t *out, size_t cap, int action, const char *svc, const char *host,
                        const char *path, uint16_t eport, uint16_t iport, const p2p_addr *client,
                        uint32_t lease);

/* Writes "GET path HTTP/1.1" with Host and "Connection: close" (the rootDesc fetch).
 * Returns the length or 0 (cap short, unsafe host or path). */
size_t p2p_upnp_get(uint8_t *out, size_t cap, const char *host, const char *path);

/* Reads an HTTP reply: *http = the status code; *upnp_err = the SOAP fault's <errorCode>
 * (e.g. 718 ConflictInMappingEntry, 725 OnlyPermanentLeasesSupported), 0 without one;
 * ext_ip = <NewExternalIPAddress> as IPv4 with port 0, family 0 without one. Any of the
 * three pointers may be NULL. Returns 0, or -1 when b does not start with an HTTP/1.x status
 * line. */
int p2p_upnp_reply(const uint8_t *b, size_t len, int *http, int *upnp_err, p2p_addr *ext_ip);

#endif
