/* test_addr.c - p2p_addr_parse / p2p_addr_format / p2p_addr_equal. */
#include <stdint.h>
#include <string.h>

#include "p2pnet.h"
#include "t.h"

static void test_parse_ipv4(void)
{
    p2p_addr a;
    static const uint8_t zero12[12];

    T_EQ_INT(p2p_addr_parse(&a, "1.2.3.4:5"), 0);
    T_EQ_INT(a.family, P2P_AF_INET4);
    T_EQ_INT(a.ip[0], 1);
    T_EQ_INT(a.ip[1], 2);
    T_EQ_INT(a.ip[2], 3);
    T_EQ_INT(a.ip[3], 4);
    T_EQ_INT(a.port, 5);
    T_EQ_MEM(a.ip + 4, zero12, 12);

    T_EQ_INT(p2p_addr_parse(&a, "255.255.255.255:65535"), 0);
    T_EQ_INT(a.ip[0], 255);
    T_EQ_INT(a.ip[3], 255);
    T_EQ_INT(a.port, 65535);

    T_EQ_INT(p2p_addr_parse(&a, "0.0.0.0:0"), 0);
    T_EQ_INT(a.family, P2P_AF_INET4);
    T_EQ_INT(a.port, 0);
    T_EQ_INT(a.ip[0], 0);

    T_EQ_INT(p2p_addr_parse(&a, "127.0.0.1:7000"), 0);
    T_EQ_INT(a.ip[0], 127);
    T_EQ_INT(a.ip[3], 1);
    T_EQ_INT(a.port, 7000);

    T_EQ_INT(p2p_addr_parse(&a, "10.200.0.99:1"), 0);
    T_EQ_INT(a.ip[1], 200);
    T_EQ_INT(a.ip[3], 99);
}

static void test_parse_ipv6(void)
{
    p2p_addr a;
    uint8_t loop[16] = {0};
    uint8_t doc[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};

    loop[15] = 1;
    T_EQ_INT(p2p_addr_parse(&a, "[::1]:5"), 0);
    T_EQ_INT(a.family, P2P_AF_INET6);
    T_EQ_MEM(a.ip, loop, 16);
    T_EQ_INT(a.port, 5);

    T_EQ_INT(p2p_addr_parse(&a, "[2001:db8::1]:65535"), 0);
    T_EQ_INT(a.family, P2P_AF_INET6);
    T_EQ_MEM(a.ip, doc, 16);
    T_EQ_INT(a.port, 65535);

    T_EQ_INT(p2p_addr_parse(&a, "[2001:DB8:0:0:0:0:0:1]:80"), 0);
    T_EQ_MEM(a.ip, doc, 16);

    T_EQ_INT(p2p_addr_parse(&a, "[::]:0"), 0);
    T_EQ_INT(a.family, P2P_AF_INET6);
    T_EQ_INT(a.port, 0);

    /* The longest text form inet_pton takes: 45 characters. */
    T_EQ_INT(p2p_addr_parse(&a, "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:1"), 0);
    T_EQ_INT(a.family, P2P_AF_INET6);
    T_EQ_INT(a.ip[0], 0xff);
    T_EQ_INT(a.ip[15], 0xff);
}

static void test_parse_v4_mapped(void)
{
    p2p_addr a, b;
    static const uint8_t zero12[12];

    T_EQ_INT(p2p_addr_parse(&a, "[::ffff:1.2.3.4]:5"), 0);
    T_EQ_INT(a.family, P2P_AF_INET4);
    T_EQ_INT(a.ip[0], 1);
    T_EQ_INT(a.ip[3], 4);
    T_EQ_MEM(a.ip + 4, zero12, 12);
    T_EQ_INT(a.port, 5);
    T_EQ_INT(p2p_addr_parse(&b, "1.2.3.4:5"), 0);
    T_CHECK(p2p_addr_equal(&a, &b));

    /* The same mapped address in hex groups. */
    T_EQ_INT(p2p_addr_parse(&a, "[::ffff:102:304]:5"), 0);
    T_EQ_INT(a.family, P2P_AF_INET4);
    T_CHECK(p2p_addr_equal(&a, &b));

    /* Only the ::ffff:0:0/96 prefix is IPv4: ::1.2.3.4 (deprecated "compatible") is not. */
    T_EQ_INT(p2p_addr_parse(&a, "[::1.2.3.4]:5"), 0);
    T_EQ_INT(a.family, P2P_AF_INET6);
    T_EQ_INT(p2p_addr_parse(&a, "[::fffe:1.2.3.4]:5"), 0);
    T_EQ_INT(a.family, P2P_AF_INET6);
}

static void test_parse_rejects(void)
{
    static const char *bad[] = {
        "",
        ":",
        ":5",
        "1.2.3.4",
        "1.2.3.4:",
        "1.2.3.4:x",
        "1.2.3.4:65536",
        "1.2.3.4:99999",
        "1.2.3.4:100000",
        "1.2.3.4:-1",
        "1.2.3.4:+5",
        "1.2.3.4: 5",
        "1.2.3.4:5 ",
        " 1.2.3.4:5",
        "1.2.3.4:5:6",
        "1.2.3.4::5",
        "1.2.3:5",
        "1.2.3.4.5:5",
        "1.2.3.256:5",
        "256.1.1.1:5",
        "1.2.3.1000:5",
        "01.2.3.4:5",
        "1.2.3.04:5",
        "1.2.3.4:05",
        "1.2.3.4:00",
        "1..3.4:5",
        ".1.2.3:5",
        "1.2.3.:5",
        "1.2.3.4.:5",
        "0x1.2.3.4:5",
        "a.b.c.d:5",
        "1.2.3.4/24:5",
        "localhost:5",
        "example.com:80",
        "::1:5",
        "::1",
        "[::1]",
        "[::1]:",
        "[::1]5",
        "[::1]:5x",
        "[::1]:65536",
        "[::1]]:5",
        "[[::1]:5",
        "[]:5",
        "[::1:5",
        "::1]:5",
        "[1.2.3.4]:5",
        "[::g]:5",
        "[fe80::1%lo]:5", /* zone names: only a number (no system call to resolve one) */
        "[fe80::1%]:5",
        "[fe80::1%0]:5",
        "[fe80::1%03]:5",
        "[fe80::1%4294967296]:5",
        "[fe80::1%99999999999]:5",
        "[fe80::1%3x]:5",
        "[fe80::1%3%4]:5",
        "[fe80::1%-3]:5",
        "[fe80::1%+3]:5",
        "[fe80::1% 3]:5",
        "[%3]:5",
        "[fe80::1]%3:5",
        "[2001:db8::1%3]:5", /* a zone only on a link-local address */
        "[::1%1]:5",
        "[ff02::1%3]:5",
        "[::ffff:1.2.3.4%3]:5",
        "[fec0::1%3]:5",
        "[1:2:3:4:5:6:7:8:9]:5",
        "[:::1]:5",
        "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2550]:1",
        "[0000000000000000000000000000000000000000000001]:1",
        "1.2.3.4:5\n",
    };
    size_t i;
    p2p_addr a;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&a, 0xab, sizeof a);
        if (p2p_addr_parse(&a, bad[i]) != P2P_ERR_ADDRESS) {
            fprintf(stderr, "  accepted bad address \"%s\"\n", bad[i]);
            T_CHECK(0);
        }
        /* A failed parse leaves *out untouched. */
        T_EQ_INT(a.family, 0xab);
    }
    T_EQ_INT(p2p_addr_parse(&a, NULL), P2P_ERR_ADDRESS);
    T_EQ_INT(p2p_addr_parse(NULL, "1.2.3.4:5"), P2P_ERR_ADDRESS);
}

static void test_parse_embedded_nul(void)
{
    /* Bytes after a NUL are invisible to a C-string parser; what precedes must be whole. */
    static const char text[] = "1.2.3.4:5\0garbage";
    p2p_addr a;

    T_EQ_INT(p2p_addr_parse(&a, text), 0);
    T_EQ_INT(a.port, 5);
}

static void check_roundtrip(const char *in, const char *want)
{
    p2p_addr a, b;
    char buf[64];

    T_EQ_INT(p2p_addr_parse(&a, in), 0);
    T_EQ_INT(p2p_addr_format(&a, buf, sizeof buf), 0);
    if (strcmp(buf, want) != 0) {
        fprintf(stderr, "  format(parse(\"%s\")) = \"%s\", want \"%s\"\n", in, buf, want);
        T_CHECK(0);
    }
    T_EQ_INT(p2p_addr_parse(&b, buf), 0);
    T_CHECK(p2p_addr_equal(&a, &b));
}

static void test_format(void)
{
    check_roundtrip("1.2.3.4:5", "1.2.3.4:5");
    check_roundtrip("255.255.255.255:65535", "255.255.255.255:65535");
    check_roundtrip("0.0.0.0:0", "0.0.0.0:0");
    check_roundtrip("[::1]:7000", "[::1]:7000");
    check_roundtrip("[::]:0", "[::]:0");
    check_roundtrip("[2001:DB8:0:0:0:0:0:1]:80", "[2001:db8::1]:80");
    check_roundtrip("[::ffff:127.0.0.1]:9", "127.0.0.1:9");
    check_roundtrip("[2001:db8:0:1:1:1:1:1]:1", "[2001:db8:0:1:1:1:1:1]:1");
    check_roundtrip("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
    /* issue 12: link-local addresses with their zone (interface index) */
    check_roundtrip("[fe80::1%3]:5", "[fe80::1%3]:5");
    check_roundtrip("[FE80::A%12]:44344", "[fe80::a%12]:44344");
    check_roundtrip("[febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535",
                    "[febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535");
    check_roundtrip("[fe80::1]:5", "[fe80::1]:5");
}

/* The zone: parsed into a.zone, compared, printed; scope INVALID without one (no socket can
 * send to a link-local address without its interface), PRIVATE with one. */
static void test_zone(void)
{
    p2p_addr a, b;
    char buf[P2P_ADDR_TEXT_MAX];

    T_EQ_INT(p2p_addr_parse(&a, "[fe80::1%3]:5"), 0);
    T_EQ_INT(a.family, P2P_AF_INET6);
    T_EQ_INT(a.zone, 3);
    T_EQ_INT(a.port, 5);
    T_EQ_INT(p2p_addr_parse(&b, "[fe80::1%4]:5"), 0);
    T_CHECK(!p2p_addr_equal(&a, &b));
    T_EQ_INT(p2p_addr_parse(&b, "[fe80::1]:5"), 0);
    T_EQ_INT(b.zone, 0);
    T_CHECK(!p2p_addr_equal(&a, &b));
    T_EQ_INT(p2p_addr_parse(&b, "[fe80:0::1%3]:5"), 0);
    T_CHECK(p2p_addr_equal(&a, &b));
    T_EQ_INT(p2p_addr_scope(&a), P2P_SCOPE_PRIVATE);
    a.zone = 0;
    T_EQ_INT(p2p_addr_scope(&a), P2P_SCOPE_INVALID);
    T_EQ_INT(p2p_addr_parse(&b, "[fd00::1]:5"), 0);
    T_EQ_INT(p2p_addr_scope(&b), P2P_SCOPE_PRIVATE);
    /* the largest text still fits P2P_ADDR_TEXT_MAX */
    T_EQ_INT(p2p_addr_parse(&a, "[fe80:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535"), 0);
    T_EQ_INT(p2p_addr_format(&a, buf, sizeof buf), 0);
    T_CHECK(strlen(buf) < sizeof buf);
    /* a zone is never printed for an address that cannot have one (set by hand) */
    T_EQ_INT(p2p_addr_parse(&a, "1.2.3.4:5"), 0);
    a.zone = 9;
    T_EQ_INT(p2p_addr_format(&a, buf, sizeof buf), 0);
    T_CHECK(strcmp(buf, "1.2.3.4:5") == 0);
}

static void test_format_buffer(void)
{
    p2p_addr a;
    char buf[64];
    size_t need = strlen("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535") + 1;

    T_EQ_INT(p2p_addr_parse(&a, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), 0);
    T_EQ_INT(p2p_addr_format(&a, buf, need), 0);
    memset(buf, 'x', sizeof buf);
    T_EQ_INT(p2p_addr_format(&a, buf, need - 1), P2P_ERR_BUFFER);
    T_EQ_INT(buf[0], '\0');
    T_EQ_INT(p2p_addr_format(&a, buf, 0), P2P_ERR_BUFFER);

    T_EQ_INT(p2p_addr_parse(&a, "1.2.3.4:5"), 0);
    T_EQ_INT(p2p_addr_format(&a, buf, 10), 0);
    T_CHECK(strcmp(buf, "1.2.3.4:5") == 0);
    T_EQ_INT(p2p_addr_format(&a, buf, 9), P2P_ERR_BUFFER);

    memset(&a, 0, sizeof a);
    T_EQ_INT(p2p_addr_format(&a, buf, sizeof buf), 0);
    T_CHECK(strlen(buf) > 0);
}

static void test_equal(void)
{
    p2p_addr a, b;

    T_EQ_INT(p2p_addr_parse(&a, "1.2.3.4:5"), 0);
    T_EQ_INT(p2p_addr_parse(&b, "1.2.3.4:5"), 0);
    T_CHECK(p2p_addr_equal(&a, &b));
    /* Bytes past the IPv4 address do not matter. */
    b.ip[10] = 7;
    T_CHECK(p2p_addr_equal(&a, &b));
    T_EQ_INT(p2p_addr_parse(&b, "1.2.3.4:6"), 0);
    T_CHECK(!p2p_addr_equal(&a, &b));
    T_EQ_INT(p2p_addr_parse(&b, "1.2.3.5:5"), 0);
    T_CHECK(!p2p_addr_equal(&a, &b));
    T_EQ_INT(p2p_addr_parse(&b, "[::1.2.3.4]:5"), 0);
    T_CHECK(!p2p_addr_equal(&a, &b));

    T_EQ_INT(p2p_addr_parse(&a, "[2001:db8::1]:5"), 0);
    T_EQ_INT(p2p_addr_parse(&b, "[2001:db8:0::1]:5"), 0);
    T_CHECK(p2p_addr_equal(&a, &b));
    T_EQ_INT(p2p_addr_parse(&b, "[2001:db8::2]:5"), 0);
    T_CHECK(!p2p_addr_equal(&a, &b));
    T_EQ_INT(p2p_addr_parse(&b, "[3001:db8::1]:5"), 0);
    T_CHECK(!p2p_addr_equal(&a, &b));
}

int main(void)
{
    T_RUN(test_parse_ipv4);
    T_RUN(test_parse_ipv6);
    T_RUN(test_parse_v4_mapped);
    T_RUN(test_parse_rejects);
    T_RUN(test_parse_embedded_nul);
    T_RUN(test_format);
    T_RUN(test_format_buffer);
    T_RUN(test_equal);
    T_RUN(test_zone);
    return t_summary("test_addr");
}
