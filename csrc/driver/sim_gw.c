/*
 * driver/sim_gw.c - the simulated gateway and STUN server of sim_gw.h. Every request is read
 * with bounds-checked cursors; anything malformed gets no answer (or the error the real
 * daemons give, where the client must handle it).
 */
#include "sim_gw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define US 1000000ull
#define PMP_MAX_LIFETIME 86400u
#define STUN_COOKIE 0x2112A442u

typedef struct sim_map {
    uint8_t used, proto, has_nonce;
    uint8_t ip[4];
    uint16_t iport, eport;
    uint64_t expires; /* UINT64_MAX: permanent (UPnP lease 0) */
    uint8_t nonce[12];
} sim_map;

struct p2p_sim_gw {
    int kind;
    p2p_addr lan, ext;
    uint64_t epoch_start;
    sim_map maps[P2P_SIM_GW_MAX_MAPS];
    p2p_sim_gw_stats st;
};

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void addr4(p2p_addr *a, const uint8_t ip[4], uint16_t port)
{
    memset(a, 0, sizeof *a);
    a->family = P2P_AF_INET4;
    memcpy(a->ip, ip, 4);
    a->port = port;
}

p2p_sim_gw *p2p_sim_gw_new(int kind, const p2p_addr *lan, const p2p_addr *ext, uint64_t now)
{
    if (kind < P2P_SIM_GW_SILENT || kind > P2P_SIM_GW_ALL || !lan || !ext) return NULL;
    if (lan->family != P2P_AF_INET4 || ext->family != P2P_AF_INET4) return NULL;
    p2p_sim_gw *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->kind = kind;
    addr4(&g->lan, lan->ip, 0);
    addr4(&g->ext, ext->ip, 0);
    g->epoch_start = now;
    return g;
}

void p2p_sim_gw_free(p2p_sim_gw *g)
{
    free(g);
}

int p2p_sim_gw_kind(const p2p_sim_gw *g)
{
    return g->kind;
}

void p2p_sim_gw_lan(const p2p_sim_gw *g, p2p_addr *out)
{
    *out = g->lan;
}

static uint32_t epoch(const p2p_sim_gw *g, uint64_t now)
{
    return now > g->epoch_start ? (uint32_t)((now - g->epoch_start) / US) : 0;
}

static int live(const sim_map *m, uint64_t now)
{
    return m->used && (m->expires == UINT64_MAX || m->expires > now);
}

static sim_map *find_internal(p2p_sim_gw *g, const uint8_t ip[4], uint16_t iport, uint8_t proto,
                              uint64_t now)
{
    for (size_t i = 0; i < P2P_SIM_GW_MAX_MAPS; i++) {
        sim_map *m = &g->maps[i];
        if (live(m, now) && m->proto == proto && m->iport == iport && !memcmp(m->ip, ip, 4))
            return m;
    }
    return NULL;
}

static sim_map *find_external(p2p_sim_gw *g, uint16_t eport, uint8_t proto, uint64_t now)
{
    for (size_t i = 0; i < P2P_SIM_GW_MAX_MAPS; i++) {
        sim_map *m = &g->maps[i];
        if (live(m, now) && m->proto == proto && m->eport == eport) return m;
    }
    return NULL;
}

/* A free slot (expired ones are reused), or NULL when the table is full. */
static sim_map *slot(p2p_sim_gw *g, uint64_t now)
{
    for (size_t i = 0; i < P2P_SIM_GW_MAX_MAPS; i++)
        if (!live(&g->maps[i], now)) return &g->maps[i];
    return NULL;
}

/* The hint when it is free, else the next free port above it (wrapping within 1024..65535). */
static uint16_t pick_eport(p2p_sim_gw *g, uint16_t hint, uint8_t proto, uint64_t now)
{
    uint32_t p = hint >= 1024 ? hint : 1024;
    for (uint32_t n = 0; n < 64512; n++) {
        if (!find_external(g, (uint16_t)p, proto, now)) return (uint16_t)p;
        p = p == 65535 ? 1024 : p + 1;
    }
    return 0;
}

/* A fresh mapping in slot m: ip:iport over proto, seen outside at eport. */
static void map_init(sim_map *m, const uint8_t ip[4], uint16_t iport, uint8_t proto, uint16_t eport)
{
    memset(m, 0, sizeof *m);
    m->used = 1;
    m->proto = proto;
    memcpy(m->ip, ip, 4);
    m->iport = iport;
    m->eport = eport;
}

/* A new mapping for ip:iport at the hint or the next free port (PCP and NAT-PMP), or NULL
 * when the table or the ports are full. */
static sim_map *map_new(p2p_sim_gw *g, const uint8_t ip[4], uint16_t iport, uint8_t proto,
                        uint16_t hint, uint64_t now)
{
    sim_map *m = slot(g, now);
    uint16_t e = m ? pick_eport(g, hint, proto, now) : 0;
    if (!m || !e) return NULL;
    map_init(m, ip, iport, proto, e);
    return m;
}

/* ---- NAT-PMP (RFC 6886) ---------------------------------------------------------------- */

static size_t natpmp(p2p_sim_gw *g, const p2p_addr *from, const uint8_t *in, size_t len,
                     uint64_t now, uint8_t *out, size_t cap)
{
    g->st.natpmp++;
    if (len < 2 || cap < 16) return 0;
    uint8_t op = in[1];
    memset(out, 0, 16);
    out[1] = (uint8_t)(128 + (op & 0x7f));
    wr32(out + 4, epoch(g, now));
    if (op & 0x80) return 0; /* a response: never answered */
    if (op == 0) {
        if (len != 2) return 0;
        memcpy(out + 8, g->ext.ip, 4);
        return 12;
    }
    if (op != 1 && op != 2) {
        wr16(out + 2, 5); /* unsupported opcode */
        return 8;
    }
    if (len != 12) return 0;
    uint8_t proto = op == 1 ? 17 : 6;
    uint16_t iport = rd16(in + 4), hint = rd16(in + 6);
    uint32_t life = rd32(in + 8);
    wr16(out + 8, iport);
    sim_map *m = find_internal(g, from->ip, iport, proto, now);
    if (life == 0) {
        if (m) {
            m->used = 0;
            g->st.deletes++;
        }
        return 16; /* eport 0, lifetime 0 */
    }
    if (iport == 0) {
        wr16(out + 2, 2); /* refused */
        return 16;
    }
    if (life > PMP_MAX_LIFETIME) life = PMP_MAX_LIFETIME;
    if (!m && !(m = map_new(g, from->ip, iport, proto, hint, now))) {
        wr16(out + 2, 4); /* out of resources */
        return 16;
    }
    m->expires = now + (uint64_t)life * US;
    g->st.maps++;
    wr16(out + 10, m->eport);
    wr32(out + 12, life);
    return 16;
}

/* ---- PCP (RFC 6887) --------------------------------------------------------------------- */

static const uint8_t V4MAPPED[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static size_t pcp(p2p_sim_gw *g, const p2p_addr *from, const uint8_t *in, size_t len, uint64_t now,
                  uint8_t *out, size_t cap)
{
    g->st.pcp++;
    if (g->kind == P2P_SIM_GW_NATPMP) {
        /* NAT-PMP's answer to any version it does not know */
        if (cap < 8) return 0;
        memset(out, 0, 8);
        out[1] = 128;
        wr16(out + 2, 1);
        wr32(out + 4, epoch(g, now));
        return 8;
    }
    if (len < 24 || len > 1100 || len % 4 || cap < 60) return 0;
    uint8_t op = in[1];
    if (op & 0x80) return 0;
    size_t n = op == 1 && len >= 60 ? 60 : 24;
    memset(out, 0, n);
    out[0] = 2;
    out[1] = (uint8_t)(0x80 | op);
    wr32(out + 8, epoch(g, now));
    if (n == 60) memcpy(out + 24, in + 24, 36);
    uint8_t *result = out + 3;
    wr32(out + 4, 30); /* how long an error holds */
    if (op != 1) {
        *result = op == 0 ? 0 : 4; /* ANNOUNCE: ok; others: UNSUPP_OPCODE */
        if (op == 0) wr32(out + 4, 0);
        return 24;
    }
    if (len < 60) {
        *result = 3; /* MALFORMED_REQUEST */
        return 24;
    }
    if (memcmp(in + 8, V4MAPPED, 12) || memcmp(in + 20, from->ip, 4)) {
        *result = 12; /* ADDRESS_MISMATCH */
        return 60;
    }
    uint32_t life = rd32(in + 4);
    const uint8_t *nonce = in + 24;
    uint8_t proto = in[36];
    uint16_t iport = rd16(in + 40), hint = rd16(in + 42);
    if (proto != 17 && proto != 6) {
        *result = 8; /* UNSUPP_PROTOCOL */
        return 60;
    }
    if (iport == 0) {
        *result = 3;
        return 60;
    }
    sim_map *m = find_internal(g, from->ip, iport, proto, now);
    if (m && m->has_nonce && memcmp(m->nonce, nonce, 12)) {
        *result = 2; /* NOT_AUTHORIZED: someone else's mapping */
        return 60;
    }
    memcpy(out + 44, V4MAPPED, 12);
    memcpy(out + 56, g->ext.ip, 4);
    if (life == 0) {
        if (m) {
            m->used = 0;
            g->st.deletes++;
        }
        wr32(out + 4, 0);
        wr16(out + 42, 0);
        return 60;
    }
    if (life > PMP_MAX_LIFETIME) life = PMP_MAX_LIFETIME;
    if (!m && !(m = map_new(g, from->ip, iport, proto, hint, now))) {
        *result = 7; /* NO_RESOURCES */
        return 60;
    }
    m->has_nonce = 1;
    memcpy(m->nonce, nonce, 12);
    m->expires = now + (uint64_t)life * US;
    g->st.maps++;
    wr32(out + 4, life);
    wr16(out + 42, m->eport);
    return 60;
}

/* ---- SSDP ---------------------------------------------------------------------------------- */

/* Finds needle in the first len bytes of hay, ignoring ASCII case; NULL when absent. */
static const char *find_ci(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; n <= len && i <= len - n; i++) {
        size_t k = 0;
        while (k < n) {
            char a = hay[i + k], b = needle[k];
            if (a >= 'A' && a <= 'Z') a = (char)(a - 'A' + 'a');
            if (b >= 'A' && b <= 'Z') b = (char)(b - 'A' + 'a');
            if (a != b) break;
            k++;
        }
        if (k == n) return hay + i;
    }
    return NULL;
}

static size_t ip_text(const uint8_t ip[4], char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
    return n > 0 ? (size_t)n : 0;
}

static size_t ssdp(p2p_sim_gw *g, const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    g->st.ssdp++;
    const char *s = (const char *)in;
    static const char start[] = "M-SEARCH * HTTP/1.1\r\n";
    if (len < sizeof start - 1 || memcmp(s, start, sizeof start - 1)) return 0;
    if (!find_ci(s, len, "\r\nMAN: \"ssdp:discover\"")) return 0;
    const char *st = find_ci(s, len, "\r\nST:");
    if (!st) return 0;
    size_t rest = len - (size_t)(st - s);
    if (!find_ci(st, rest, "InternetGatewayDevice:") && !find_ci(st, rest, "ssdp:all") &&
        !find_ci(st, rest, "WANIPConnection:"))
        return 0;
    char ip[20];
    ip_text(g->lan.ip, ip, sizeof ip);
    int n = snprintf((char *)out, cap,
                     "HTTP/1.1 200 OK\r\n"
                     "CACHE-CONTROL: max-age=120\r\n"
                     "ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
                     "USN: uuid:e25dcf97-1eb6-4e3a-a37a-3a8f4316a8d5::urn:schemas-upnp-org:"
                     "device:InternetGatewayDevice:1\r\n"
                     "EXT:\r\n"
                     "SERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\n"
                     "LOCATION: http://%s:%u/rootDesc.xml\r\n"
                     "OPT: \"http://schemas.upnp.org/upnp/1/0/\"; ns=01\r\n"
                     "01-NLS: 1\r\n"
                     "BOOTID.UPNP.ORG: 1\r\n"
                     "CONFIGID.UPNP.ORG: 1337\r\n"
                     "\r\n",
                     ip, P2P_SIM_GW_HTTP_PORT);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

size_t p2p_sim_gw_udp(p2p_sim_gw *g, const p2p_addr *from, const p2p_addr *to, const uint8_t *in,
                      size_t len, uint64_t now, uint8_t *out, size_t cap, p2p_addr *reply_from)
{
    static const uint8_t group[4] = {239, 255, 255, 250};
    if (!g || !from || !to || !in || !out || from->family != P2P_AF_INET4) return 0;
    if (to->family != P2P_AF_INET4) return 0;
    int to_gw = !memcmp(to->ip, g->lan.ip, 4);
    size_t n = 0;
    if (to_gw && to->port == P2P_SIM_GW_PMP_PORT) {
        if (g->kind == P2P_SIM_GW_SILENT || g->kind == P2P_SIM_GW_UPNP) return 0;
        if (len >= 1 && in[0] == 0)
            n = natpmp(g, from, in, len, now, out, cap);
        else if (len >= 1 && in[0] == 2)
            n = pcp(g, from, in, len, now, out, cap);
        else if (len >= 1 && cap >= 8) { /* any other version: NAT-PMP's unsupported version */
            g->st.pcp++;
            memset(out, 0, 8);
            out[1] = 128;
            wr16(out + 2, 1);
            wr32(out + 4, epoch(g, now));
            n = 8;
        }
        if (n) addr4(reply_from, g->lan.ip, P2P_SIM_GW_PMP_PORT);
        return n;
    }
    if ((to_gw || !memcmp(to->ip, group, 4)) && to->port == P2P_SIM_GW_SSDP_PORT) {
        if (g->kind != P2P_SIM_GW_UPNP && g->kind != P2P_SIM_GW_ALL) return 0;
        n = ssdp(g, in, len, out, cap);
        if (n) addr4(reply_from, g->lan.ip, P2P_SIM_GW_SSDP_PORT);
        return n;
    }
    return 0;
}

/* ---- HTTP + SOAP (UPnP-IGD WANIPConnection) -------------------------------------------- */

static const char ROOT_DESC[] =
    "<?xml version=\"1.0\"?>\r\n"
    "<root xmlns=\"urn:schemas-upnp-org:device-1-0\" configId=\"1337\">"
    "<specVersion><major>1</major><minor>1</minor></specVersion>"
    "<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:2</deviceType>"
    "<friendlyName>sim gateway</friendlyName>"
    "<serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1"
    "</serviceType><serviceId>urn:upnp-org:serviceId:L3Forwarding1</serviceId>"
    "<controlURL>/ctl/L3F</controlURL><eventSubURL>/evt/L3F</eventSubURL>"
    "<SCPDURL>/L3F.xml</SCPDURL></service></serviceList>"
    "<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:2</deviceType>"
    "<serviceList><service><serviceType>urn:schemas-upnp-org:service:"
    "WANCommonInterfaceConfig:1</serviceType>"
    "<serviceId>urn:upnp-org:serviceId:WANCommonIFC1</serviceId>"
    "<controlURL>/ctl/CmnIfCfg</controlURL><eventSubURL>/evt/CmnIfCfg</eventSubURL>"
    "<SCPDURL>/WANCfg.xml</SCPDURL></service></serviceList>"
    "<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:2"
    "</deviceType><serviceList><service>"
    "<serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType>"
    "<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>"
    "<controlURL>/ctl/IPConn</controlURL><eventSubURL>/evt/IPConn</eventSubURL>"
    "<SCPDURL>/WANIPCn.xml</SCPDURL></service></serviceList></device></deviceList>"
    "</device></deviceList></device></root>";

static size_t http_reply(uint8_t *out, size_t cap, int status, const char *body)
{
    size_t blen = strlen(body);
    int n = snprintf((char *)out, cap,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: text/xml; charset=\"utf-8\"\r\n"
                     "Connection: close\r\n"
                     "Content-Length: %zu\r\n"
                     "Server: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\n"
                     "Ext:\r\n"
                     "\r\n",
                     status,
                     status == 200   ? "OK"
                     : status == 404 ? "Not Found"
                                     : "Internal Server Error",
                     blen);
    if (n <= 0 || (size_t)n + blen > cap) return 0;
    memcpy(out + n, body, blen);
    return (size_t)n + blen;
}

#define SOAP_HEAD                                                        \
    "<?xml version=\"1.0\"?>\r\n"                                        \
    "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" " \
    "s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>"
#define SOAP_TAIL "</s:Body></s:Envelope>\r\n"

static size_t soap_error(uint8_t *out, size_t cap, int code, const char *what)
{
    char body[800];
    snprintf(body, sizeof body,
             SOAP_HEAD "<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError"
                       "</faultstring><detail><UPnPError xmlns=\"urn:schemas-upnp-org:control-"
                       "1-0\"><errorCode>%d</errorCode><errorDescription>%s</errorDescription>"
                       "</UPnPError></detail></s:Fault>" SOAP_TAIL,
             code, what);
    return http_reply(out, cap, 500, body);
}

/* The text between <tag> and </tag> (a prefix such as "u:" is not expected on arguments)
 * into val; returns 1 when found. */
static int arg(const char *s, size_t len, const char *tag, char *val, size_t cap)
{
    char open[64];
    snprintf(open, sizeof open, "<%s>", tag);
    const char *a = find_ci(s, len, open);
    if (!a) return 0;
    a += strlen(open);
    const char *e = memchr(a, '<', len - (size_t)(a - s));
    if (!e || (size_t)(e - a) >= cap) return 0;
    memcpy(val, a, (size_t)(e - a));
    val[e - a] = 0;
    return 1;
}

static long num(const char *v)
{
    if (!*v) return -1;
    long n = 0;
    for (; *v; v++) {
        if (*v < '0' || *v > '9' || n > 1000000000L) return -1;
        n = n * 10 + (*v - '0');
    }
    return n;
}

static int parse_ip(const char *v, uint8_t ip[4])
{
    unsigned a, b, c, d;
    char tail;
    if (sscanf(v, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) != 4) return 0;
    if (a > 255 || b > 255 || c > 255 || d > 255) return 0;
    ip[0] = (uint8_t)a, ip[1] = (uint8_t)b, ip[2] = (uint8_t)c, ip[3] = (uint8_t)d;
    return 1;
}

static size_t soap(p2p_sim_gw *g, const p2p_addr *from, const char *hdr, size_t hlen,
                   const char *body, size_t blen, uint64_t now, uint8_t *out, size_t cap)
{
    const char *act = find_ci(hdr, hlen, "\r\nSOAPAction:");
    if (!act) return soap_error(out, cap, 401, "Invalid Action");
    size_t arest = hlen - (size_t)(act - hdr);
    const char *eol = find_ci(act + 2, arest - 2, "\r\n");
    size_t alen = eol ? (size_t)(eol - act) : arest;
    if (!find_ci(act, alen, "WANIPConnection:1#") && !find_ci(act, alen, "WANIPConnection:2#"))
        return soap_error(out, cap, 401, "Invalid Action");
    char v[64], ipt[20];
    if (find_ci(act, alen, "#GetExternalIPAddress\"")) {
        char b[600];
        ip_text(g->ext.ip, ipt, sizeof ipt);
        snprintf(b, sizeof b,
                 SOAP_HEAD "<u:GetExternalIPAddressResponse xmlns:u=\"urn:schemas-upnp-org:"
                           "service:WANIPConnection:2\"><NewExternalIPAddress>%s"
                           "</NewExternalIPAddress></u:GetExternalIPAddressResponse>" SOAP_TAIL,
                 ipt);
        return http_reply(out, cap, 200, b);
    }
    int add = find_ci(act, alen, "#AddPortMapping\"") != NULL;
    int del = find_ci(act, alen, "#DeletePortMapping\"") != NULL;
    if (!add && !del) return soap_error(out, cap, 401, "Invalid Action");
    long eport = arg(body, blen, "NewExternalPort", v, sizeof v) ? num(v) : -1;
    uint8_t proto = 0;
    if (arg(body, blen, "NewProtocol", v, sizeof v))
        proto = !strcmp(v, "UDP") ? 17 : !strcmp(v, "TCP") ? 6 : 0;
    if (eport <= 0 || eport > 65535 || !proto) return soap_error(out, cap, 402, "Invalid Args");
    sim_map *m = find_external(g, (uint16_t)eport, proto, now);
    if (del) {
        if (!m || memcmp(m->ip, from->ip, 4))
            return soap_error(out, cap, 714, "NoSuchEntryInArray");
        m->used = 0;
        g->st.deletes++;
        return http_reply(out, cap, 200,
                          SOAP_HEAD
                          "<u:DeletePortMappingResponse xmlns:u=\"urn:schemas-upnp-org:"
                          "service:WANIPConnection:2\"></u:DeletePortMappingResponse>" SOAP_TAIL);
    }
    long iport = arg(body, blen, "NewInternalPort", v, sizeof v) ? num(v) : -1;
    uint8_t client[4];
    if (iport <= 0 || iport > 65535 || !arg(body, blen, "NewInternalClient", v, sizeof v) ||
        !parse_ip(v, client))
        return soap_error(out, cap, 402, "Invalid Args");
    long lease = arg(body, blen, "NewLeaseDuration", v, sizeof v) ? num(v) : -1;
    if (lease < 0) return soap_error(out, cap, 402, "Invalid Args");
    if (memcmp(client, from->ip, 4)) return soap_error(out, cap, 606, "Action not authorized");
    if (eport < 1024) return soap_error(out, cap, 718, "ConflictInMappingEntry");
    if (m && (memcmp(m->ip, client, 4) || m->iport != iport))
        return soap_error(out, cap, 718, "ConflictInMappingEntry");
    if (!m) {
        sim_map *old = find_internal(g, client, (uint16_t)iport, proto, now);
        if (old) old->used = 0; /* a new external port for the same internal one */
        m = slot(g, now);
        if (!m) return soap_error(out, cap, 728, "NoPortMapsAvailable");
        map_init(m, client, (uint16_t)iport, proto, (uint16_t)eport);
    }
    m->has_nonce = 0;
    m->expires = lease == 0 ? UINT64_MAX : now + (uint64_t)lease * US;
    g->st.maps++;
    return http_reply(out, cap, 200,
                      SOAP_HEAD "<u:AddPortMappingResponse xmlns:u=\"urn:schemas-upnp-org:"
                                "service:WANIPConnection:2\"/>" SOAP_TAIL);
}

size_t p2p_sim_gw_http(p2p_sim_gw *g, const p2p_addr *from, const uint8_t *req, size_t len,
                       uint64_t now, uint8_t *out, size_t cap)
{
    if (!g || !from || !req || !out || from->family != P2P_AF_INET4) return 0;
    if (g->kind != P2P_SIM_GW_UPNP && g->kind != P2P_SIM_GW_ALL) return 0;
    g->st.http++;
    const char *s = (const char *)req;
    const char *end = find_ci(s, len, "\r\n\r\n");
    if (!end) return http_reply(out, cap, 400, "");
    size_t hlen = (size_t)(end - s) + 2;
    const char *body = end + 4;
    size_t blen = len - (size_t)(body - s);
    if (len >= 22 && !memcmp(s, "GET /rootDesc.xml HTTP/1.", 22))
        return http_reply(out, cap, 200, ROOT_DESC);
    if (len >= 25 && !memcmp(s, "POST /ctl/IPConn HTTP/1.", 24)) {
        const char *cl = find_ci(s, hlen, "\r\nContent-Length:");
        if (cl) {
            cl += 17;
            while (*cl == ' ') cl++;
            long want = 0;
            while (*cl >= '0' && *cl <= '9' && want < 100000) want = want * 10 + (*cl++ - '0');
            if ((size_t)want > blen) return 0; /* the driver gave a truncated request */
            blen = (size_t)want;
        }
        return soap(g, from, s, hlen, body, blen, now, out, cap);
    }
    return http_reply(out, cap, 404, "");
}

int p2p_sim_gw_out(const p2p_sim_gw *g, const p2p_addr *priv, uint64_t now, uint16_t *eport)
{
    if (!g || !priv || priv->family != P2P_AF_INET4) return 0;
    for (size_t i = 0; i < P2P_SIM_GW_MAX_MAPS; i++) {
        const sim_map *m = &g->maps[i];
        if (live(m, now) && m->proto == 17 && m->iport == priv->port &&
            !memcmp(m->ip, priv->ip, 4)) {
            *eport = m->eport;
            return 1;
        }
    }
    return 0;
}

int p2p_sim_gw_in(const p2p_sim_gw *g, uint16_t eport, uint64_t now, p2p_addr *priv)
{
    if (!g) return 0;
    for (size_t i = 0; i < P2P_SIM_GW_MAX_MAPS; i++) {
        const sim_map *m = &g->maps[i];
        if (live(m, now) && m->proto == 17 && m->eport == eport) {
            addr4(priv, m->ip, m->iport);
            return 1;
        }
    }
    return 0;
}

void p2p_sim_gw_reboot(p2p_sim_gw *g, uint64_t now)
{
    memset(g->maps, 0, sizeof g->maps);
    g->epoch_start = now;
}

size_t p2p_sim_gw_mappings(const p2p_sim_gw *g, uint64_t now)
{
    size_t n = 0;
    for (size_t i = 0; i < P2P_SIM_GW_MAX_MAPS; i++) n += live(&g->maps[i], now) ? 1 : 0;
    return n;
}

void p2p_sim_gw_stats_get(const p2p_sim_gw *g, p2p_sim_gw_stats *out)
{
    *out = g->st;
}

/* ---- STUN server (RFC 8489, RFC 5780) ------------------------------------------------------ */

struct p2p_sim_stun {
    p2p_addr primary, alternate;
    int has_alt;
    uint64_t answered;
};

p2p_sim_stun *p2p_sim_stun_new(const p2p_addr *primary, const p2p_addr *alternate)
{
    if (!primary || !primary->port ||
        (primary->family != P2P_AF_INET4 && primary->family != P2P_AF_INET6))
        return NULL;
    if (alternate && (alternate->family != primary->family || !alternate->port ||
                      alternate->port == primary->port || !memcmp(alternate->ip, primary->ip, 16)))
        return NULL;
    p2p_sim_stun *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->primary = *primary;
    if (alternate) {
        s->alternate = *alternate;
        s->has_alt = 1;
    }
    return s;
}

void p2p_sim_stun_free(p2p_sim_stun *s)
{
    free(s);
}

static void mix(p2p_addr *out, const p2p_addr *ipfrom, uint16_t port)
{
    *out = *ipfrom;
    out->port = port;
}

size_t p2p_sim_stun_addresses(const p2p_sim_stun *s, p2p_addr out[4])
{
    out[0] = s->primary;
    if (!s->has_alt) return 1;
    mix(&out[1], &s->primary, s->alternate.port);
    mix(&out[2], &s->alternate, s->primary.port);
    out[3] = s->alternate;
    return 4;
}

static uint32_t crc32(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return ~c;
}

/* Appends an address attribute (XOR form when xor != NULL: the 16 bytes cookie || txid). */
static size_t put_addr(uint8_t *o, uint16_t type, const p2p_addr *a, const uint8_t * xor)
{
    size_t alen = a->family == P2P_AF_INET4 ? 4 : 16;
    wr16(o, type);
    wr16(o + 2, (uint16_t)(4 + alen));
    o[4] = 0;
    o[5] = a->family == P2P_AF_INET4 ? 1 : 2;
    uint16_t port = a->port;
    if (xor) port ^= 0x2112;
    wr16(o + 6, port);
    for (size_t i = 0; i < alen; i++) o[8 + i] = (uint8_t)(a->ip[i] ^ (xor? xor[i] : 0));
    return 8 + alen;
}

size_t p2p_sim_stun_udp(p2p_sim_stun *s, const p2p_addr *from, const p2p_addr *to,
                        const uint8_t *in, size_t len, uint8_t *out, size_t cap,
                        p2p_addr *reply_from)
{
    if (!s || !from || !to || !in || !out || cap < 160) return 0;
    p2p_addr mine[4];
    size_t nmine = p2p_sim_stun_addresses(s, mine), which = nmine;
    for (size_t i = 0; i < nmine; i++)
        if (mine[i].family == to->family && mine[i].port == to->port &&
            !memcmp(mine[i].ip, to->ip, 16))
            which = i;
    if (which == nmine || from->family != s->primary.family) return 0;
    if (len < 20 || rd16(in) != 0x0001 || rd32(in + 4) != STUN_COOKIE) return 0;
    size_t mlen = rd16(in + 2);
    if (mlen % 4 || 20 + mlen != len) return 0;
    uint32_t change = 0;
    int fp = 0;
    for (size_t p = 20; p < len;) {
        if (p + 4 > len) return 0;
        uint16_t t = rd16(in + p), l = rd16(in + p + 2);
        size_t padded = (size_t)(l + 3u) & ~(size_t)3;
        if (p + 4 + padded > len) return 0;
        if (t == 0x0003) {
            if (l != 4) return 0;
            change = rd32(in + p + 4);
        } else if (t == 0x8028) {
            if (l != 4 || p + 8 != len) return 0;
            if ((crc32(in, p) ^ 0x5354554eu) != rd32(in + p + 4)) return 0;
            fp = 1;
        } else if (t < 0x8000) {
            return 0; /* an unknown comprehension-required attribute (coturn: 420) */
        }
        p += 4 + padded;
    }
    int cip = (change & 4) != 0, cport = (change & 2) != 0;
    if ((cip || cport) && !s->has_alt) return 0;
    const p2p_addr *ipsrc = &mine[which];
    p2p_addr src = mine[which];
    if (cip) {
        int on_primary_ip = !memcmp(ipsrc->ip, s->primary.ip, 16);
        src = on_primary_ip ? s->alternate : s->primary;
        src.port = mine[which].port;
    }
    if (cport) src.port = src.port == s->primary.port ? s->alternate.port : s->primary.port;
    uint8_t x[16];
    wr32(x, STUN_COOKIE);
    memcpy(x + 4, in + 8, 12);
    wr16(out, 0x0101);
    memcpy(out + 4, in + 4, 16);
    size_t o = 20;
    o += put_addr(out + o, 0x0020, from, x);
    o += put_addr(out + o, 0x0001, from, NULL);
    o += put_addr(out + o, 0x802b, &src, NULL);
    if (s->has_alt && !memcmp(src.ip, s->primary.ip, 16))
        o += put_addr(out + o, 0x802c, &s->alternate, NULL);
    if (fp) {
        wr16(out + 2, (uint16_t)(o + 8 - 20));
        wr16(out + o, 0x8028);
        wr16(out + o + 2, 4);
        wr32(out + o + 4, crc32(out, o) ^ 0x5354554eu);
        o += 8;
    } else {
        wr16(out + 2, (uint16_t)(o - 20));
    }
    *reply_from = src;
    s->answered++;
    return o;
}

uint64_t p2p_sim_stun_answered(const p2p_sim_stun *s)
{
    return s->answered;
}

/* ---- void * adapters for driver/sim.h ------------------------------------------------------ */

size_t p2p_sim_gw_udp_ud(void *ud, const p2p_addr *from, const p2p_addr *to, const uint8_t *in,
                         size_t len, uint64_t now, uint8_t *out, size_t cap, p2p_addr *reply_from)
{
    return p2p_sim_gw_udp(ud, from, to, in, len, now, out, cap, reply_from);
}

size_t p2p_sim_gw_http_ud(void *ud, const p2p_addr *from, const uint8_t *req, size_t len,
                          uint64_t now, uint8_t *out, size_t cap)
{
    return p2p_sim_gw_http(ud, from, req, len, now, out, cap);
}

int p2p_sim_gw_out_ud(void *ud, const p2p_addr *priv, uint64_t now, uint16_t *eport)
{
    return p2p_sim_gw_out(ud, priv, now, eport);
}

int p2p_sim_gw_in_ud(void *ud, uint16_t eport, uint64_t now, p2p_addr *priv)
{
    return p2p_sim_gw_in(ud, eport, now, priv);
}

size_t p2p_sim_stun_udp_ud(void *ud, const p2p_addr *from, const p2p_addr *to, const uint8_t *in,
                           size_t len, uint8_t *out, size_t cap, p2p_addr *reply_from)
{
    return p2p_sim_stun_udp(ud, from, to, in, len, out, cap, reply_from);
}
