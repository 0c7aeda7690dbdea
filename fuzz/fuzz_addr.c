/*
 * fuzz_addr.c - libFuzzer target for the address code: the text parser and formatter
 * (p2p_addr_parse, p2p_addr_format), the scope rule that decides where a node may send
 * (p2p_addr_scope), and the wire encoding of addresses in member records, introductions and
 * FIN extensions (p2p_rd_addr, p2p_wr_addr).
 *
 * The input is read three ways: as text (up to the first NUL), as a raw p2p_addr (whatever
 * bytes the core could hold), and as wire addresses. Checks: whatever parses formats back to
 * text that parses to the same address; formatting never writes past its buffer and reports a
 * buffer too small; scope is INVALID for port 0, no family, unspecified, multicast and mapped
 * addresses, link-local ones without a zone, and never anything but the four scopes; every
 * wire address decodes to a family the core knows, without a zone, and re-encodes to the same
 * bytes whatever zone it is given (a zone never goes on the wire).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "p2pnet.h"
#include "p2p_wire.h"
#include "fuzz_check.h"

#define TEXT_MAX 256
#define FORMAT_MAX P2P_ADDR_TEXT_MAX

static int scope_ok(const p2p_addr *a)
{
    int s = p2p_addr_scope(a);
    CHECK(s >= P2P_SCOPE_INVALID && s <= P2P_SCOPE_PUBLIC);
    if (a->port == 0 || (a->family != P2P_AF_INET4 && a->family != P2P_AF_INET6))
        CHECK(s == P2P_SCOPE_INVALID);
    if (a->family == P2P_AF_INET4 && (a->ip[0] == 0 || a->ip[0] >= 224))
        CHECK(s == P2P_SCOPE_INVALID);
    if (a->family == P2P_AF_INET6 && a->ip[0] == 0xff) CHECK(s == P2P_SCOPE_INVALID);
    if (a->family == P2P_AF_INET6 && a->ip[0] == 0xfe && (a->ip[1] & 0xc0) == 0x80 && !a->zone)
        CHECK(s == P2P_SCOPE_INVALID);
    return s;
}

/* Formats into buffers of every size up to FORMAT_MAX: a short one is refused and left
 * NUL-terminated, a long enough one gets the whole text, and no byte past cap is touched. */
static void format_all(const p2p_addr *a, char *full)
{
    char buf[FORMAT_MAX + 1];
    CHECK(p2p_addr_format(a, full, FORMAT_MAX) == 0);
    size_t n = strlen(full);
    CHECK(n > 0 && n < FORMAT_MAX);
    for (size_t cap = 1; cap <= n + 1; cap++) {
        memset(buf, 0x5a, sizeof buf);
        int rc = p2p_addr_format(a, buf, cap);
        if (cap <= n) {
            CHECK(rc == P2P_ERR_BUFFER && buf[0] == '\0');
        } else {
            CHECK(rc == 0 && strcmp(buf, full) == 0);
        }
        CHECK((unsigned char)buf[cap] == 0x5a);
    }
}

static void text(const uint8_t *data, size_t size)
{
    char s[TEXT_MAX + 1], out[FORMAT_MAX];
    size_t n = size < TEXT_MAX ? size : TEXT_MAX;
    memcpy(s, data, n);
    s[n] = '\0';
    p2p_addr a, b;
    if (p2p_addr_parse(&a, s) != 0) return;
    CHECK(a.family == P2P_AF_INET4 || a.family == P2P_AF_INET6);
    if (a.family == P2P_AF_INET4) {
        static const uint8_t zero[12];
        CHECK(memcmp(a.ip + 4, zero, 12) == 0);
    }
    if (a.zone != 0) /* only a link-local address has one */
        CHECK(a.family == P2P_AF_INET6 && a.ip[0] == 0xfe && (a.ip[1] & 0xc0) == 0x80);
    scope_ok(&a);
    format_all(&a, out);
    CHECK(p2p_addr_parse(&b, out) == 0 && p2p_addr_equal(&a, &b));
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    CHECK(p2p_addr_scope(&a) == p2p_addr_scope(&b));
}

static void raw(const uint8_t *data, size_t size)
{
    p2p_addr a;
    if (size < sizeof a) return;
    memcpy(&a, data, sizeof a);
    a.sock = 0; /* the driver's socket number is not part of the text form (issue 12) */
    /* the zone is, for a link-local address only: anywhere else it means nothing */
    if (!(a.family == P2P_AF_INET6 && a.ip[0] == 0xfe && (a.ip[1] & 0xc0) == 0x80)) a.zone = 0;
    int s = scope_ok(&a);
    char out[FORMAT_MAX];
    p2p_addr b;
    CHECK(p2p_addr_format(&a, out, sizeof out) == 0);
    CHECK(p2p_addr_equal(&a, &a));
    if (a.family == P2P_AF_INET4 || (a.family == P2P_AF_INET6 && s != P2P_SCOPE_INVALID)) {
        /* Stray bytes past an IPv4 address mean nothing: compare what equal compares. */
        CHECK(p2p_addr_parse(&b, out) == 0 && p2p_addr_equal(&a, &b));
        CHECK(p2p_addr_scope(&b) == s);
    }
}

static void wire(const uint8_t *data, size_t size)
{
    p2p_rd r;
    p2p_rd_init(&r, data, size);
    while (p2p_rd_left(&r) > 0) {
        const uint8_t *start = r.p;
        p2p_addr a;
        memset(&a, 0, sizeof a);
        int rc = p2p_rd_addr(&r, &a);
        if (rc != 0 || r.bad) break;
        CHECK(a.family == P2P_AF_INET4 || a.family == P2P_AF_INET6);
        CHECK(a.port != 0);
        CHECK(a.zone == 0); /* nothing from the network names one of our interfaces */
        scope_ok(&a);
        uint8_t buf[32];
        p2p_wr w;
        p2p_wr_init(&w, buf, sizeof buf);
        a.zone = 7; /* and none is written: the bytes are the same with it */
        p2p_wr_addr(&w, &a);
        CHECK(!w.bad);
        size_t used = (size_t)(r.p - start);
        CHECK((size_t)(w.p - buf) == used && memcmp(buf, start, used) == 0);
        char out[FORMAT_MAX];
        format_all(&a, out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    text(data, size);
    raw(data, size);
    wire(data, size);
    return 0;
}
