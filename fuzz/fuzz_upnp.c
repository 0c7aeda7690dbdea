/*
 * fuzz_upnp.c - libFuzzer target for the UPnP-IGD text codecs (csrc/p2p_upnp.c): the SSDP
 * reply (LOCATION), the URL split, the rootDesc control-URL scanner and the SOAP/HTTP reply
 * parser, all fed the same bytes, whatever a device on the LAN could send.
 *
 * Checks: every copied value is NUL-terminated within its buffer and holds no byte that could
 * break out of a header line or markup (CR, LF, space, quote, angle bracket); what the scanner
 * returns makes a well-formed request of exactly seven header lines; status codes are three
 * digits; an external address is IPv4 or unset.
 */
#include <stdint.h>
#include <string.h>

#include "p2pnet.h"
#include "p2p_upnp.h"
#include "fuzz_check.h"

static int clean(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n >= cap) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '<' || c == '>') return 0;
    }
    return 1;
}

static size_t count(const uint8_t *b, size_t n, const char *needle)
{
    size_t k = strlen(needle), c = 0;
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(b + i, needle, k) == 0) c++;
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char url[256], path[128], svc[128], upath[128];
    if (p2p_ssdp_location(data, size, url, sizeof url) == 0) {
        CHECK(clean(url, sizeof url));
        p2p_addr a;
        if (p2p_upnp_url(url, &a, upath, sizeof upath) == 0) {
            CHECK(a.family == P2P_AF_INET4 || a.family == P2P_AF_INET6);
            CHECK(clean(upath, sizeof upath) && upath[0] == '/');
        }
    }
    if (p2p_upnp_control((const char *)data, size, path, sizeof path, svc, sizeof svc) == 0) {
        CHECK(clean(path, sizeof path) && path[0] == '/');
        CHECK(clean(svc, sizeof svc));
        uint8_t req[2048];
        p2p_addr client;
        memset(&client, 0, sizeof client);
        client.family = P2P_AF_INET4;
        client.ip[0] = 10;
        for (int action = P2P_UPNP_ADD; action <= P2P_UPNP_GET_IP; action++) {
            size_t n = p2p_upnp_request(req, sizeof req, action, svc, "10.0.1.1:5000", path, 40000,
                                        40000, &client, 3600);
            CHECK(n > 0);
            CHECK(count(req, n, "\r\n") == 7);
            CHECK(count(req, n, "\r\n\r\n") == 1);
        }
        size_t n = p2p_upnp_request(req, sizeof req, P2P_UPNP_DESCRIBE, NULL, "10.0.1.1:5000", path,
                                    0, 0, NULL, 0);
        CHECK(n > 0 && count(req, n, "\r\n") == 4 && count(req, n, "\r\n\r\n") == 1);
    }
    int http = -1, err = -1;
    p2p_addr ip;
    if (p2p_upnp_reply(data, size, &http, &err, &ip) == 0) {
        CHECK(http >= 0 && http <= 999);
        CHECK(err >= 0 && err <= 99999);
        CHECK(ip.family == 0 || (ip.family == P2P_AF_INET4 && ip.port == 0));
    } else {
        CHECK(http == 0 && err == 0 && ip.family == 0);
    }
    return 0;
}
