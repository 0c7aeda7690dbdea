/*
 * p2p_addr.c - numeric UDP endpoints: parse, format, compare.
 *
 * Parsing is strict on purpose: an address typed by a user or read from a config file either
 * means exactly one endpoint or is rejected, so "1.2.3.4:5 " or "01.2.3.4:5" never silently
 * turn into something else. IPv4 is parsed here by hand (no octal or shortened forms);
 * IPv6 text goes through inet_pton, which is a pure library function (no system call); a
 * link-local address's zone is taken as a number only, since turning "eth0" into an
 * interface index would be a system call.
 */
#ifdef _WIN32
#include <ws2tcpip.h> /* inet_pton, inet_ntop (ws2_32, Vista and later) */
#else
#include <arpa/inet.h>
#endif
#include <stdio.h>
#include <string.h>

#include "p2pnet.h"

/* The longest IPv6 text inet_pton can accept: eight groups with an embedded dotted quad. */
#define V6_TEXT_MAX 45
/* "65535" */
#define PORT_DIGITS_MAX 5
/* "4294967295": an interface index (a zone) */
#define ZONE_DIGITS_MAX 10
/* A dotted-quad octet: at most "255". */
#define OCTET_DIGITS_MAX 3

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Reads one decimal number of 1..maxdigits digits at *pp, without leading zeros (except a
 * lone "0"), and advances *pp past it. Returns the value or -1. */
static long parse_decimal(const char **pp, int maxdigits)
{
    const char *p = *pp;
    long v = 0;
    int n = 0;

    if (!is_digit(*p)) return -1;
    if (p[0] == '0' && is_digit(p[1])) return -1;
    while (is_digit(*p)) {
        if (++n > maxdigits) return -1;
        v = v * 10 + (*p - '0');
        p++;
    }
    *pp = p;
    return v;
}

int p2p_addr_parse_port(const char *text, uint16_t *port)
{
    const char *p = text;
    long v;

    if (text == NULL) return P2P_ERR_ADDRESS;
    v = parse_decimal(&p, PORT_DIGITS_MAX);
    if (v < 0 || v > UINT16_MAX || *p != '\0') return P2P_ERR_ADDRESS;
    *port = (uint16_t)v;
    return 0;
}

/* Reads ":port" at p; the port must end the text. */
static int parse_port_suffix(const char *p, uint16_t *port)
{
    if (*p != ':') return -1;
    return p2p_addr_parse_port(p + 1, port) == 0 ? 0 : -1;
}

/* Reads exactly four dot-separated octets at *pp. */
static int parse_ipv4(const char **pp, uint8_t ip[4])
{
    const char *p = *pp;
    long v;
    int i;

    for (i = 0; i < 4; i++) {
        if (i > 0) {
            if (*p != '.') return -1;
            p++;
        }
        v = parse_decimal(&p, OCTET_DIGITS_MAX);
        if (v < 0 || v > 255) return -1;
        ip[i] = (uint8_t)v;
    }
    *pp = p;
    return 0;
}

/* fe80::/10, the only addresses that carry a zone. */
static int is_link_local(const p2p_addr *a)
{
    return a->family == P2P_AF_INET6 && a->ip[0] == 0xfe && (a->ip[1] & 0xc0) == 0x80;
}

static int is_v4_mapped(const uint8_t ip[16])
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    return memcmp(ip, prefix, sizeof prefix) == 0;
}

int p2p_addr_parse(p2p_addr *out, const char *text)
{
    p2p_addr a;
    const char *p, *close, *pct;
    char v6[V6_TEXT_MAX + 1];
    size_t n;
    long long zone = 0;

    if (out == NULL || text == NULL) return P2P_ERR_ADDRESS;
    memset(&a, 0, sizeof a);
    p = text;
    if (*p == '[') {
        p++;
        close = strchr(p, ']');
        if (close == NULL) return P2P_ERR_ADDRESS;
        pct = memchr(p, '%', (size_t)(close - p));
        n = (size_t)((pct != NULL ? pct : close) - p);
        if (n == 0 || n > V6_TEXT_MAX) return P2P_ERR_ADDRESS;
        memcpy(v6, p, n);
        v6[n] = '\0';
        if (pct != NULL) { /* "%zone": a decimal interface index, all of it up to ']' */
            const char *z = pct + 1;
            const char *q = z;
            if (!is_digit(*q) || *q == '0') return P2P_ERR_ADDRESS;
            while (q < close && is_digit(*q)) {
                if (q - z >= ZONE_DIGITS_MAX) return P2P_ERR_ADDRESS;
                zone = zone * 10 + (*q - '0');
                q++;
            }
            if (q != close || zone > (long long)UINT32_MAX) return P2P_ERR_ADDRESS;
        }
        if (inet_pton(AF_INET6, v6, a.ip) != 1) return P2P_ERR_ADDRESS;
        if (parse_port_suffix(close + 1, &a.port) != 0) return P2P_ERR_ADDRESS;
        if (is_v4_mapped(a.ip)) {
            memmove(a.ip, a.ip + 12, 4);
            memset(a.ip + 4, 0, 12);
            a.family = P2P_AF_INET4;
        } else {
            a.family = P2P_AF_INET6;
        }
        /* A zone only where it means something: a link-local address. */
        if (zone != 0 && !is_link_local(&a)) return P2P_ERR_ADDRESS;
        a.zone = (uint32_t)zone;
    } else {
        if (parse_ipv4(&p, a.ip) != 0 || parse_port_suffix(p, &a.port) != 0) return P2P_ERR_ADDRESS;
        a.family = P2P_AF_INET4;
    }
    *out = a;
    return 0;
}

int p2p_addr_format(const p2p_addr *a, char *buf, size_t cap)
{
    char tmp[P2P_ADDR_TEXT_MAX];
    char v6[INET6_ADDRSTRLEN];
    int n;

    if (buf == NULL || cap == 0) return P2P_ERR_BUFFER;
    if (a == NULL) {
        n = snprintf(tmp, sizeof tmp, "(none)");
    } else if (a->family == P2P_AF_INET4) {
        n = snprintf(tmp, sizeof tmp, "%u.%u.%u.%u:%u", a->ip[0], a->ip[1], a->ip[2], a->ip[3],
                     (unsigned)a->port);
    } else if (a->family == P2P_AF_INET6) {
        if (inet_ntop(AF_INET6, a->ip, v6, sizeof v6) == NULL) return P2P_ERR_BUFFER;
        if (a->zone != 0 && is_link_local(a))
            n = snprintf(tmp, sizeof tmp, "[%s%%%lu]:%u", v6, (unsigned long)a->zone,
                         (unsigned)a->port);
        else
            n = snprintf(tmp, sizeof tmp, "[%s]:%u", v6, (unsigned)a->port);
    } else if (a->family == P2P_AF_RELAY) {
        n = snprintf(tmp, sizeof tmp, "(relay)");
    } else {
        /* Formatting feeds logs and error messages; an unset address should still print. */
        n = snprintf(tmp, sizeof tmp, "(none)");
    }
    if (n < 0 || (size_t)n >= cap) {
        buf[0] = '\0';
        return P2P_ERR_BUFFER;
    }
    memcpy(buf, tmp, (size_t)n + 1);
    return 0;
}

int p2p_addr_equal(const p2p_addr *a, const p2p_addr *b)
{
    if (a->family != b->family || a->port != b->port || a->sock != b->sock) return 0;
    if (a->family == P2P_AF_INET4) return memcmp(a->ip, b->ip, 4) == 0;
    if (a->family == P2P_AF_INET6) return a->zone == b->zone && memcmp(a->ip, b->ip, 16) == 0;
    if (a->family == P2P_AF_RELAY) return memcmp(a->ip, b->ip, 8) == 0;
    if (a->family == P2P_AF_STREAM) return memcmp(a->ip, b->ip, 4) == 0;
    return 1; /* two unset addresses: only family and port mean anything */
}

int p2p_addr_scope(const p2p_addr *a)
{
    static const uint8_t zero[16];
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const uint8_t *ip = a->ip;

    if (a->port == 0) return P2P_SCOPE_INVALID;
    if (a->family == P2P_AF_INET4) {
        if (ip[0] == 0 || ip[0] >= 224) /* 0/8, multicast, reserved, broadcast */
            return P2P_SCOPE_INVALID;
        if (ip[0] == 127) return P2P_SCOPE_LOOPBACK;
        if (ip[0] == 10 || (ip[0] == 172 && (ip[1] & 0xf0) == 16) ||
            (ip[0] == 192 && ip[1] == 168) || (ip[0] == 100 && (ip[1] & 0xc0) == 64) ||
            (ip[0] == 169 && ip[1] == 254))
            return P2P_SCOPE_PRIVATE;
        return P2P_SCOPE_PUBLIC;
    }
    if (a->family != P2P_AF_INET6) return P2P_SCOPE_INVALID;
    if (memcmp(ip, zero, 16) == 0 || ip[0] == 0xff || memcmp(ip, mapped, 12) == 0)
        return P2P_SCOPE_INVALID;
    if (memcmp(ip, zero, 15) == 0 && ip[15] == 1) return P2P_SCOPE_LOOPBACK;
    /* link-local: only with the interface it is on; without one no socket can send to it
     * (so an fe80:: address learned from the network, which never carries a zone, is never
     * dialled, advertised or taken as our own) */
    if (is_link_local(a)) return a->zone != 0 ? P2P_SCOPE_PRIVATE : P2P_SCOPE_INVALID;
    if ((ip[0] & 0xfe) == 0xfc) return P2P_SCOPE_PRIVATE;
    return P2P_SCOPE_PUBLIC;
}
