/*
 * p2p_upnp.c - SSDP, the rootDesc tag scanner and the SOAP requests and replies of UPnP-IGD.
 * Text is read with explicit lengths (never assumed NUL-terminated) and only short values are
 * copied out, each checked for characters that could change the meaning of what we send.
 */
#include <stdio.h>
#include <string.h>

#include "p2p_upnp.h"

static const char MSEARCH[] = "M-SEARCH * HTTP/1.1\r\n"
                              "HOST: 239.255.255.250:1900\r\n"
                              "MAN: \"ssdp:discover\"\r\n"
                              "MX: 1\r\n"
                              "ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
                              "\r\n";

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* 1 when b[0..n) starts with the text s, ignoring ASCII case. */
static int starts_ci(const char *b, size_t n, const char *s)
{
    size_t k = strlen(s);
    if (n < k) return 0;
    for (size_t i = 0; i < k; i++)
        if (lower((unsigned char)b[i]) != lower((unsigned char)s[i])) return 0;
    return 1;
}

/* Characters that may go into a header or a markup value we write: visible ASCII but no
 * quote, backslash or angle bracket (space, CR, LF are outside the range). */
static int safe_char(int c)
{
    return c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '<' && c != '>';
}

static int safe_text(const char *s, size_t n)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (!safe_char((unsigned char)s[i])) return 0;
    return 1;
}

/* Copies n bytes of s into out (cap bytes) NUL-terminated; -1 when they do not fit. */
static int copy_out(char *out, size_t cap, const char *s, size_t n)
{
    if (out == NULL || cap == 0 || n >= cap) return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

size_t p2p_ssdp_msearch(uint8_t *out, size_t cap)
{
    size_t n = sizeof MSEARCH - 1;
    if (out == NULL || cap < n) return 0;
    memcpy(out, MSEARCH, n);
    return n;
}

int p2p_ssdp_location(const uint8_t *b, size_t len, char *url, size_t cap)
{
    const char *s = (const char *)b;
    if (url != NULL && cap > 0) url[0] = '\0';
    if (b == NULL || !starts_ci(s, len, "HTTP/1.1 200")) return -1;
    size_t i = 0;
    while (i < len) {
        size_t e = i;
        while (e < len && s[e] != '\n') e++;
        size_t le = e; /* the line is s[i..le) without CR/LF */
        if (le > i && s[le - 1] == '\r') le--;
        if (le == i) break; /* the empty line ends the headers */
        if (starts_ci(s + i, le - i, "LOCATION:")) {
            size_t v = i + 9;
            while (v < le && (s[v] == ' ' || s[v] == '\t')) v++;
            size_t ve = le;
            while (ve > v && (s[ve - 1] == ' ' || s[ve - 1] == '\t')) ve--;
            if (!safe_text(s + v, ve - v)) return -1;
            return copy_out(url, cap, s + v, ve - v);
        }
        i = e + 1;
    }
    return -1;
}

/* Numeric IPv4 "a.b.c.d" over exactly s[0..n). */
static int parse_ipv4(const char *s, size_t n, uint8_t ip[4])
{
    size_t i = 0;
    for (int k = 0; k < 4; k++) {
        unsigned v = 0, digits = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && digits < 4) {
            v = v * 10 + (unsigned)(s[i] - '0');
            i++;
            digits++;
        }
        if (digits == 0 || digits > 3 || v > 255) return -1;
        ip[k] = (uint8_t)v;
        if (k < 3) {
            if (i >= n || s[i] != '.') return -1;
            i++;
        }
    }
    return i == n ? 0 : -1;
}

int p2p_upnp_url(const char *url, p2p_addr *addr, char *path, size_t pcap)
{
    char hostport[80];
    if (url == NULL || addr == NULL) return -1;
    size_t n = strlen(url);
    if (!starts_ci(url, n, "http://")) return -1;
    const char *h = url + 7;
    size_t hl = strcspn(h, "/");
    const char *p = h + hl;
    if (hl == 0 || hl >= sizeof hostport - 6) return -1;
    if (*p != '\0' && !safe_text(p, strlen(p))) return -1;
    /* p2p_addr_parse wants a port: add ":80" when the authority has none. */
    const char *colon = NULL;
    if (h[0] == '[') {
        const char *close = memchr(h, ']', hl);
        if (close == NULL) return -1;
        if ((size_t)(close - h) + 1 < hl) {
            if (close[1] != ':') return -1;
            colon = close + 1;
        }
    } else {
        colon = memchr(h, ':', hl);
    }
    if (colon != NULL) {
        memcpy(hostport, h, hl);
        hostport[hl] = '\0';
    } else {
        memcpy(hostport, h, hl);
        memcpy(hostport + hl, ":80", 4);
    }
    p2p_addr a;
    if (p2p_addr_parse(&a, hostport) != 0) return -1;
    if (*p == '\0') {
        if (copy_out(path, pcap, "/", 1) != 0) return -1;
    } else if (copy_out(path, pcap, p, strlen(p)) != 0) {
        return -1;
    }
    *addr = a;
    return 0;
}

/* ---- the tag scanner ------------------------------------------------------------------ */

/* One markup tag: its local name (any "prefix:" dropped), whether it closes, and where the
 * text after it starts. */
typedef struct tag {
    const char *name;
    size_t nlen;
    int close;
    size_t after;
} tag;

/* Finds the next element tag at or after *pos in s[0..n); skips <? ?>, <! > and comments
 * (crudely: to the next '>'). Returns 1 with *t filled and *pos past the tag, 0 at the end. */
static int next_tag(const char *s, size_t n, size_t *pos, tag *t)
{
    size_t i = *pos;
    for (;;) {
        while (i < n && s[i] != '<') i++;
        if (i >= n) return 0;
        size_t j = i + 1;
        const char *gt = memchr(s + j, '>', n - j);
        if (gt == NULL) return 0;
        size_t end = (size_t)(gt - s);
        if (j < n && (s[j] == '?' || s[j] == '!')) {
            i = end + 1;
            continue;
        }
        t->close = 0;
        if (j < end && s[j] == '/') {
            t->close = 1;
            j++;
        }
        size_t k = j;
        while (k < end && s[k] != ' ' && s[k] != '\t' && s[k] != '\r' && s[k] != '\n' &&
               s[k] != '/')
            k++;
        const char *c = NULL;
        for (size_t q = j; q < k; q++)
            if (s[q] == ':') c = s + q;
        t->name = c != NULL ? c + 1 : s + j;
        t->nlen = (size_t)(s + k - t->name);
        t->after = end + 1;
        *pos = end + 1;
        return 1;
    }
}

static int tag_is(const tag *t, const char *name)
{
    return t->nlen == strlen(name) && memcmp(t->name, name, t->nlen) == 0;
}

/* The text of an element from t->after to the next '<', without surrounding white space. */
static void tag_text(const char *s, size_t n, const tag *t, const char **v, size_t *vl)
{
    size_t a = t->after, e = a;
    while (e < n && s[e] != '<') e++;
    while (a < e && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r' || s[a] == '\n')) a++;
    while (e > a && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r' || s[e - 1] == '\n'))
        e--;
    *v = s + a;
    *vl = e - a;
}

static int service_rank(const char *v, size_t vl)
{
    static const char ip[] = "urn:schemas-upnp-org:service:WANIPConnection:";
    static const char ppp[] = "urn:schemas-upnp-org:service:WANPPPConnection:";
    if (vl > sizeof ip - 1 && memcmp(v, ip, sizeof ip - 1) == 0) return 2;
    if (vl > sizeof ppp - 1 && memcmp(v, ppp, sizeof ppp - 1) == 0) return 1;
    return 0;
}

static int svc_char_ok(const char *v, size_t vl)
{
    for (size_t i = 0; i < vl; i++) {
        char c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == ':' || c == '-' || c == '.'))
            return 0;
    }
    return vl > 0;
}

int p2p_upnp_control(const char *xml, size_t len, char *path, size_t pcap, char *svc, size_t scap)
{
    const char *type = NULL, *ctrl = NULL, *best_type = NULL, *best_ctrl = NULL;
    size_t tl = 0, cl = 0, best_tl = 0, best_cl = 0;
    int in_service = 0, best = 0;
    size_t pos = 0;
    tag t;
    if (xml == NULL) return -1;
    while (next_tag(xml, len, &pos, &t)) {
        if (tag_is(&t, "service")) {
            if (!t.close) {
                in_service = 1;
                type = ctrl = NULL;
            } else if (in_service) {
                in_service = 0;
                int r = type != NULL && ctrl != NULL ? service_rank(type, tl) : 0;
                if (r > best) {
                    best = r;
                    best_type = type;
                    best_tl = tl;
                    best_ctrl = ctrl;
                    best_cl = cl;
                }
            }
        } else if (in_service && !t.close && tag_is(&t, "serviceType")) {
            tag_text(xml, len, &t, &type, &tl);
        } else if (in_service && !t.close && tag_is(&t, "controlURL")) {
            tag_text(xml, len, &t, &ctrl, &cl);
        }
    }
    if (best == 0 || !svc_char_ok(best_type, best_tl)) return -1;
    /* An absolute control URL: keep its path (the request goes to LOCATION's host anyway). */
    if (starts_ci(best_ctrl, best_cl, "http://")) {
        const char *p = memchr(best_ctrl + 7, '/', best_cl - 7);
        if (p == NULL) return -1;
        best_cl -= (size_t)(p - best_ctrl);
        best_ctrl = p;
    }
    if (best_cl == 0 || best_ctrl[0] != '/' || !safe_text(best_ctrl, best_cl)) return -1;
    if (copy_out(path, pcap, best_ctrl, best_cl) != 0) return -1;
    if (copy_out(svc, scap, best_type, best_tl) != 0) return -1;
    return 0;
}

/* ---- SOAP ------------------------------------------------------------------------------ */

static int safe_arg(const char *s)
{
    return s != NULL && strlen(s) < 256 && safe_text(s, strlen(s));
}

size_t p2p_upnp_request(uint8_t *out, size_t cap, int action, const char *svc, const char *host,
                        const char *path, uint16_t eport, uint16_t iport, const p2p_addr *client,
                        uint32_t lease)
{
    char body[1024], args[512];
    const char *name;
    int n;
    if (action == P2P_UPNP_DESCRIBE) return p2p_upnp_get(out, cap, host, path);
    if (out == NULL || !safe_arg(host) || !safe_arg(path) || !safe_arg(svc) || path[0] != '/')
        return 0;
    if (!svc_char_ok(svc, strlen(svc))) return 0;
    switch (action) {
    case P2P_UPNP_ADD:
        if (client == NULL || client->family != P2P_AF_INET4) return 0;
        name = "AddPortMapping";
        n = snprintf(args, sizeof args,
                     "<NewRemoteHost></NewRemoteHost><NewExternalPort>%u</NewExternalPort>"
                     "<NewProtocol>UDP</NewProtocol><NewInternalPort>%u</NewInternalPort>"
                     "<NewInternalClient>%u.%u.%u.%u</NewInternalClient>"
                     "<NewEnabled>1</NewEnabled>"
                     "<NewPortMappingDescription>p2pnet</NewPortMappingDescription>"
                     "<NewLeaseDuration>%lu</NewLeaseDuration>",
                     (unsigned)eport, (unsigned)iport, client->ip[0], client->ip[1], client->ip[2],
                     client->ip[3], (unsigned long)lease);
        break;
    case P2P_UPNP_DELETE:
        name = "DeletePortMapping";
        n = snprintf(args, sizeof args,
                     "<NewRemoteHost></NewRemoteHost><NewExternalPort>%u</NewExternalPort>"
                     "<NewProtocol>UDP</NewProtocol>",
                     (unsigned)eport);
        break;
    case P2P_UPNP_GET_IP:
        name = "GetExternalIPAddress";
        args[0] = '\0';
        n = 0;
        break;
    default: return 0;
    }
    if (n < 0 || (size_t)n >= sizeof args) return 0;
    n = snprintf(body, sizeof body,
                 "<?xml version=\"1.0\"?><s:Envelope "
                 "xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" "
                 "s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>"
                 "<u:%s xmlns:u=\"%s\">%s</u:%s></s:Body></s:Envelope>",
                 name, svc, args, name);
    if (n < 0 || (size_t)n >= sizeof body) return 0;
    size_t blen = (size_t)n;
    n = snprintf((char *)out, cap,
                 "POST %s HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "Content-Type: text/xml; charset=\"utf-8\"\r\n"
                 "SOAPAction: \"%s#%s\"\r\n"
                 "Content-Length: %zu\r\n"
                 "Connection: close\r\n"
                 "\r\n",
                 path, host, svc, name, blen);
    if (n < 0 || (size_t)n + blen > cap) return 0;
    memcpy(out + n, body, blen);
    return (size_t)n + blen;
}

size_t p2p_upnp_get(uint8_t *out, size_t cap, const char *host, const char *path)
{
    if (out == NULL || !safe_arg(host) || !safe_arg(path) || path[0] != '/') return 0;
    int n = snprintf((char *)out, cap, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                     path, host);
    if (n < 0 || (size_t)n >= cap) return 0;
    return (size_t)n;
}

int p2p_upnp_reply(const uint8_t *b, size_t len, int *http, int *upnp_err, p2p_addr *ext_ip)
{
    const char *s = (const char *)b;
    if (http != NULL) *http = 0;
    if (upnp_err != NULL) *upnp_err = 0;
    if (ext_ip != NULL) memset(ext_ip, 0, sizeof *ext_ip);
    /* "HTTP/1.x NNN" */
    if (b == NULL || len < 12 || !starts_ci(s, len, "HTTP/1.") || s[7] < '0' || s[7] > '9' ||
        s[8] != ' ')
        return -1;
    int code = 0;
    for (int i = 9; i < 12; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        code = code * 10 + (s[i] - '0');
    }
    if (len > 12 && s[12] != ' ' && s[12] != '\r' && s[12] != '\n') return -1;
    if (http != NULL) *http = code;
    size_t pos = 0;
    tag t;
    int have_err = 0, have_ip = 0;
    while (next_tag(s, len, &pos, &t)) {
        if (t.close) continue;
        const char *v;
        size_t vl;
        if (!have_err && tag_is(&t, "errorCode")) {
            tag_text(s, len, &t, &v, &vl);
            int e = 0;
            size_t i;
            for (i = 0; i < vl && i < 5 && v[i] >= '0' && v[i] <= '9'; i++)
                e = e * 10 + (v[i] - '0');
            if (i == vl && vl > 0) {
                have_err = 1;
                if (upnp_err != NULL) *upnp_err = e;
            }
        } else if (!have_ip && tag_is(&t, "NewExternalIPAddress")) {
            tag_text(s, len, &t, &v, &vl);
            uint8_t ip[4];
            if (parse_ipv4(v, vl, ip) == 0) {
                have_ip = 1;
                if (ext_ip != NULL) {
                    ext_ip->family = P2P_AF_INET4;
                    memcpy(ext_ip->ip, ip, 4);
                }
            }
        }
    }
    return 0;
}
