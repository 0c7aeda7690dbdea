/*
 * driver/stream.c - stream paths: raw TCP framing and WebSocket (RFC 6455) for p2pnet
 * datagrams, SHA-1 and base64 for the WebSocket handshake. See driver/stream.h.
 */
#define _GNU_SOURCE

#include "driver/stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>
#endif

/* ---- SHA-1 (FIPS 180-4 §6.1) --------------------------------------------------------- */

static uint32_t rol32(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const uint8_t *p)
{
    uint32_t w[80], a, b, c, d, e, f, k, t;
    int i;

    for (i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (i = 16; i < 80; i++) w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (i = 0; i < 80; i++) {
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDC;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6;
        }
        t = rol32(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

void p2p_sha1(const uint8_t *data, size_t len, uint8_t out[20])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    uint8_t last[128];
    size_t full = len & ~(size_t)63, rest = len - full, tail, i;
    uint64_t bits = (uint64_t)len * 8;

    for (i = 0; i < full; i += 64) sha1_block(h, data + i);
    memset(last, 0, sizeof last);
    if (rest > 0) memcpy(last, data + full, rest);
    last[rest] = 0x80;
    tail = rest + 1 + 8 <= 64 ? 64 : 128;
    for (i = 0; i < 8; i++) last[tail - 1 - i] = (uint8_t)(bits >> (8 * i));
    sha1_block(h, last);
    if (tail == 128) sha1_block(h, last + 64);
    for (i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

/* ---- base64 (RFC 4648 §4) ------------------------------------------------------------ */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t p2p_base64(const uint8_t *in, size_t n, char *out, size_t cap)
{
    size_t i, o = 0;
    uint32_t v;

    if (cap < 4 * ((n + 2) / 3) + 1) return 0;
    for (i = 0; i + 2 < n; i += 3) {
        v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
        out[o++] = b64[v & 63];
    }
    if (n - i == 1) {
        v = (uint32_t)in[i] << 16;
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

static int b64_value(char c)
{
    const char *p;
    if (c == '\0') return -1;
    p = strchr(b64, c);
    return p == NULL ? -1 : (int)(p - b64);
}

long p2p_base64_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    size_t i, o = 0, pad = 0;
    uint32_t v;
    int k, d;

    if (n % 4 != 0) return -1;
    for (i = 0; i < n; i += 4) {
        v = 0;
        for (k = 0; k < 4; k++) {
            if (in[i + k] == '=' && i + 4 == n && k >= 2) {
                /* '=' only at the end, and "x=y=" is not padding */
                if (k == 2 && in[i + 3] != '=') return -1;
                pad++;
                d = 0;
            } else {
                if (pad > 0) return -1;
                d = b64_value(in[i + k]);
                if (d < 0) return -1;
            }
            v = v << 6 | (uint32_t)d;
        }
        if (o + 3 - pad > cap) return -1;
        out[o++] = (uint8_t)(v >> 16);
        if (pad < 2) out[o++] = (uint8_t)(v >> 8);
        if (pad < 1) out[o++] = (uint8_t)v;
    }
    return (long)o;
}

void p2p_ws_accept(const char *key, size_t keylen, char out[29])
{
    uint8_t buf[128 + sizeof P2P_WS_GUID], digest[20];
    size_t g = sizeof P2P_WS_GUID - 1;

    if (keylen > 128) keylen = 128;
    memcpy(buf, key, keylen);
    memcpy(buf + keylen, P2P_WS_GUID, g);
    p2p_sha1(buf, keylen + g, digest);
    (void)p2p_base64(digest, sizeof digest, out, 29);
}

/* ---- buffers ------------------------------------------------------------------------- */

static int grow(uint8_t **buf, size_t *alloc, size_t need, size_t cap)
{
    size_t n = *alloc ? *alloc : 2048;
    uint8_t *p;

    if (need <= *alloc) return 0;
    if (need > cap) return -1;
    while (n < need) n *= 2;
    if (n > cap) n = cap;
    p = realloc(*buf, n);
    if (p == NULL) return -1;
    *buf = p;
    *alloc = n;
    return 0;
}

/* Room for n more output bytes (compacting first); 0 or -1. */
static int out_reserve(p2p_tstream *s, size_t n)
{
    if (s->out_off > 0 && (s->out_off == s->out_len || s->out_len + n > s->out_alloc)) {
        memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
        s->out_len -= s->out_off;
        s->out_off = 0;
    }
    return grow(&s->out, &s->out_alloc, s->out_len + n, P2P_STREAM_OUT_CAP);
}

static int out_put(p2p_tstream *s, const void *b, size_t n)
{
    if (out_reserve(s, n) != 0) return -1;
    memcpy(s->out + s->out_len, b, n);
    s->out_len += n;
    return 0;
}

static void in_consume(p2p_tstream *s, size_t n)
{
    memmove(s->in, s->in + n, s->in_len - n);
    s->in_len -= n;
}

static uint32_t next_rand(p2p_tstream *s)
{
    /* xorshift64*: masking keys need only be unpredictable to web content, which cannot
     * see them (RFC 6455 §10.3); the seed comes from the system's random source. */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (uint32_t)((s->rng * UINT64_C(2685821657736338717)) >> 32);
}

/* ---- frames -------------------------------------------------------------------------- */

/* Queues a WebSocket frame (client: masked). Returns 0 or -1 (no room). */
static int ws_frame(p2p_tstream *s, int opcode, const uint8_t *d, size_t n)
{
    uint8_t hdr[14], key[4];
    size_t h = 0, i;
    int mask = s->role == P2P_STREAM_CLIENT;

    hdr[h++] = (uint8_t)(0x80 | opcode);
    if (n <= 125) {
        hdr[h++] = (uint8_t)((mask ? 0x80 : 0) | n);
    } else {
        hdr[h++] = (uint8_t)((mask ? 0x80 : 0) | 126);
        hdr[h++] = (uint8_t)(n >> 8);
        hdr[h++] = (uint8_t)n;
    }
    if (mask) {
        uint32_t r = next_rand(s);
        memcpy(key, &r, 4);
        memcpy(hdr + h, key, 4);
        h += 4;
    }
    if (out_reserve(s, h + n) != 0) return -1;
    memcpy(s->out + s->out_len, hdr, h);
    memcpy(s->out + s->out_len + h, d, n);
    if (mask)
        for (i = 0; i < n; i++) s->out[s->out_len + h + i] ^= key[i & 3];
    s->out_len += h + n;
    return 0;
}

static void fail(p2p_tstream *s, int code, const char *why)
{
    int was_open = s->state == P2P_STREAM_OPEN;

    if (s->state >= P2P_STREAM_CLOSING) return;
    s->error = code;
    s->why = why;
    s->state = P2P_STREAM_CLOSING;
    /* A close frame only on an open WebSocket (not during the HTTP upgrade). */
    if (was_open && s->mode == P2P_STREAM_MODE_WS && code >= 1000 && !s->close_sent) {
        uint8_t b[2] = {(uint8_t)(code >> 8), (uint8_t)code};
        s->close_sent = 1;
        if (ws_frame(s, 0x8, b, 2) != 0) s->stats.dropped++;
    }
}

/* ---- HTTP upgrade -------------------------------------------------------------------- */

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Case-insensitive prefix test of n bytes. */
static int starts_ci(const char *s, size_t n, const char *pre)
{
    size_t i, m = strlen(pre);
    if (n < m) return 0;
    for (i = 0; i < m; i++)
        if (lower((unsigned char)s[i]) != lower((unsigned char)pre[i])) return 0;
    return 1;
}

/* Does the comma-separated token list v[0..n) hold tok (case-insensitive)? */
static int has_token(const char *v, size_t n, const char *tok)
{
    size_t i = 0, a, b, m = strlen(tok);
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
        a = i;
        while (i < n && v[i] != ',') i++;
        b = i;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t')) b--;
        if (b - a == m && starts_ci(v + a, m, tok)) return 1;
    }
    return 0;
}

/* The end of the HTTP head (index after "\r\n\r\n"), 0 when not there yet, or -1 when the
 * head is longer than P2P_STREAM_HTTP_MAX. */
static long head_end(const p2p_tstream *s)
{
    size_t i, lim = s->in_len < P2P_STREAM_HTTP_MAX ? s->in_len : P2P_STREAM_HTTP_MAX;
    for (i = 3; i < lim; i++)
        if (s->in[i - 3] == '\r' && s->in[i - 2] == '\n' && s->in[i - 1] == '\r' &&
            s->in[i] == '\n')
            return (long)i + 1;
    return s->in_len >= P2P_STREAM_HTTP_MAX ? -1 : 0;
}

struct head {
    const char *first; /* the request or status line */
    size_t first_len;
    int upgrade, connection, version13, protocol_ok, has_protocol;
    const char *key, *accept;
    size_t key_len, accept_len;
};

/* Reads the header lines of text[0..n) (n includes the final CRLFCRLF). Returns 0 or -1. */
static int parse_head(const char *text, size_t n, struct head *h)
{
    size_t i = 0, e, c, v;

    memset(h, 0, sizeof *h);
    while (i < n) {
        e = i;
        while (e + 1 < n && !(text[e] == '\r' && text[e + 1] == '\n')) e++;
        if (e + 1 >= n) return -1;
        if (e == i) break; /* the empty line */
        for (c = i; c < e; c++)
            if (text[c] == '\0' || text[c] == '\n' || text[c] == '\r') return -1;
        if (h->first == NULL) {
            h->first = text + i;
            h->first_len = e - i;
        } else {
            for (c = i; c < e && text[c] != ':'; c++) {
            }
            if (c == e) return -1;
            for (v = c + 1; v < e && (text[v] == ' ' || text[v] == '\t'); v++) {
            }
            {
                const char *name = text + i, *val = text + v;
                size_t nl = c - i, vl = e - v;
                while (vl > 0 && (val[vl - 1] == ' ' || val[vl - 1] == '\t')) vl--;
#define IS(hn) (nl == sizeof hn - 1 && starts_ci(name, nl, hn))
                if (IS("upgrade"))
                    h->upgrade = has_token(val, vl, "websocket");
                else if (IS("connection"))
                    h->connection = has_token(val, vl, "upgrade");
                else if (IS("sec-websocket-version"))
                    h->version13 = vl == 2 && val[0] == '1' && val[1] == '3';
                else if (IS("sec-websocket-key"))
                    h->key = val, h->key_len = vl;
                else if (IS("sec-websocket-accept"))
                    h->accept = val, h->accept_len = vl;
                else if (IS("sec-websocket-protocol")) {
                    h->has_protocol = 1;
                    h->protocol_ok = has_token(val, vl, P2P_WS_PROTOCOL);
                }
#undef IS
            }
        }
        i = e + 2;
    }
    return h->first == NULL ? -1 : 0;
}

static void http_refuse(p2p_tstream *s, const char *status, const char *why)
{
    char b[160];
    int n = snprintf(b, sizeof b, "HTTP/1.1 %s\r\nConnection: close\r\nContent-Length: 0\r\n%s\r\n",
                     status, strncmp(status, "426", 3) == 0 ? "Sec-WebSocket-Version: 13\r\n" : "");
    (void)out_put(s, b, (size_t)n);
    s->error = 1;
    s->why = why;
    s->state = P2P_STREAM_CLOSING;
}

/* Server: the upgrade request in in[0..end). */
static void server_upgrade(p2p_tstream *s, size_t end)
{
    struct head h;
    const char *sp, *path;
    size_t plen;
    uint8_t key[32];
    char accept[29], b[256];
    int n;

    if (parse_head((const char *)s->in, end, &h) != 0 || h.first_len < 14 ||
        memcmp(h.first, "GET ", 4) != 0 || memcmp(h.first + h.first_len - 9, " HTTP/1.1", 9) != 0) {
        http_refuse(s, "400 Bad Request", "bad HTTP request");
        return;
    }
    path = h.first + 4;
    sp = memchr(path, ' ', h.first_len - 4);
    plen = (size_t)(sp - path);
    if (s->path[0] != '\0' && (plen != strlen(s->path) || memcmp(path, s->path, plen) != 0)) {
        http_refuse(s, "404 Not Found", "WebSocket path not served");
        return;
    }
    if (!h.upgrade || !h.connection || h.key == NULL) {
        http_refuse(s, "400 Bad Request", "not a WebSocket upgrade");
        return;
    }
    if (!h.version13) {
        http_refuse(s, "426 Upgrade Required", "WebSocket version not 13");
        return;
    }
    if (h.key_len != 24 || p2p_base64_decode(h.key, 24, key, sizeof key) != 16) {
        http_refuse(s, "400 Bad Request", "bad Sec-WebSocket-Key");
        return;
    }
    if (h.has_protocol && !h.protocol_ok) {
        http_refuse(s, "400 Bad Request", "WebSocket subprotocol not p2pnet");
        return;
    }
    p2p_ws_accept(h.key, h.key_len, accept);
    n = snprintf(b, sizeof b,
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
                 "Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n",
                 accept, h.has_protocol ? "Sec-WebSocket-Protocol: " P2P_WS_PROTOCOL "\r\n" : "");
    if (out_put(s, b, (size_t)n) != 0) {
        fail(s, 1, "out of memory");
        return;
    }
    in_consume(s, end);
    s->state = P2P_STREAM_OPEN;
}

/* Client: the upgrade response in in[0..end). */
static void client_upgrade(p2p_tstream *s, size_t end)
{
    struct head h;

    if (parse_head((const char *)s->in, end, &h) != 0 || h.first_len < 12 ||
        memcmp(h.first, "HTTP/1.1 101", 12) != 0) {
        fail(s, 1, "WebSocket upgrade refused");
        return;
    }
    if (!h.upgrade || !h.connection || h.accept_len != 28 || memcmp(h.accept, s->accept, 28) != 0) {
        fail(s, 1, "bad WebSocket upgrade response");
        return;
    }
    if (h.has_protocol && !h.protocol_ok) {
        fail(s, 1, "WebSocket subprotocol not p2pnet");
        return;
    }
    in_consume(s, end);
    s->state = P2P_STREAM_OPEN;
}

static void handshake(p2p_tstream *s)
{
    long end;

    if (s->role == P2P_STREAM_SERVER && s->mode == P2P_STREAM_MODE_UNKNOWN) {
        size_t m = s->in_len < 4 ? s->in_len : 4;
        if (memcmp(s->in, P2P_STREAM_MAGIC, m) == 0) {
            if (s->in_len < 4) return;
            s->mode = P2P_STREAM_MODE_RAW;
            in_consume(s, 4);
            s->state = P2P_STREAM_OPEN;
            return;
        }
        if (memcmp(s->in, "GET ", m) == 0) {
            if (s->in_len < 4) return;
            s->mode = P2P_STREAM_MODE_WS;
        } else {
            fail(s, 1, "neither p2pt nor GET");
            return;
        }
    }
    end = head_end(s);
    if (end < 0) {
        if (s->role == P2P_STREAM_SERVER)
            http_refuse(s, "431 Request Header Fields Too Large", "HTTP head too long");
        else
            fail(s, 1, "HTTP head too long");
        return;
    }
    if (end == 0) return;
    if (s->role == P2P_STREAM_SERVER)
        server_upgrade(s, (size_t)end);
    else
        client_upgrade(s, (size_t)end);
}

/* One raw frame. Returns its datagram length, 0 when incomplete, or -1 (failed). */
static long raw_next(p2p_tstream *s, uint8_t *buf, size_t cap)
{
    size_t n;

    if (s->in_len < 2) return 0;
    n = (size_t)s->in[0] << 8 | s->in[1];
    if (n == 0 || n > P2P_MAX_PACKET || n > cap) {
        fail(s, 1, n == 0 ? "empty raw frame" : "raw frame too long");
        return -1;
    }
    if (s->in_len < 2 + n) return 0;
    memcpy(buf, s->in + 2, n);
    in_consume(s, 2 + n);
    return (long)n;
}

/* One WebSocket frame. Returns a datagram length (> 0), 0 when incomplete, -1 (failed) or
 * -2 (a control frame or empty message was handled: look again). */
static long ws_next(p2p_tstream *s, uint8_t *buf, size_t cap)
{
    size_t h = 2, n, i;
    uint8_t b0, b1, key[4] = {0, 0, 0, 0};
    int opcode, masked;

    if (s->in_len < 2) return 0;
    b0 = s->in[0];
    b1 = s->in[1];
    opcode = b0 & 0x0f;
    masked = (b1 & 0x80) != 0;
    if (b0 & 0x70) {
        fail(s, P2P_WS_PROTOCOL_ERROR, "WebSocket RSV bits set (no extension agreed)");
        return -1;
    }
    if (opcode == 0x0 || opcode == 0x1) {
        fail(s, P2P_WS_UNSUPPORTED, "WebSocket text or fragmented message");
        return -1;
    }
    if (opcode != 0x2 && opcode != 0x8 && opcode != 0x9 && opcode != 0xA) {
        fail(s, P2P_WS_PROTOCOL_ERROR, "unknown WebSocket opcode");
        return -1;
    }
    if (!(b0 & 0x80)) {
        fail(s, opcode == 0x2 ? P2P_WS_UNSUPPORTED : P2P_WS_PROTOCOL_ERROR,
             "fragmented WebSocket message");
        return -1;
    }
    if (masked != (s->role == P2P_STREAM_SERVER)) {
        fail(s, P2P_WS_PROTOCOL_ERROR,
             masked ? "masked frame from the server" : "unmasked frame from the client");
        return -1;
    }
    n = b1 & 0x7f;
    if (opcode >= 0x8 && n > 125) {
        fail(s, P2P_WS_PROTOCOL_ERROR, "control frame over 125 bytes");
        return -1;
    }
    if (n == 126) {
        if (s->in_len < 4) return 0;
        n = (size_t)s->in[2] << 8 | s->in[3];
        h = 4;
        if (n < 126) {
            fail(s, P2P_WS_PROTOCOL_ERROR, "WebSocket length not minimal");
            return -1;
        }
    } else if (n == 127) {
        /* Every 64-bit length is over 65535, so over P2P_MAX_PACKET. */
        fail(s, P2P_WS_TOO_BIG, "WebSocket frame too long");
        return -1;
    }
    if (n > P2P_MAX_PACKET || (opcode == 0x2 && n > cap)) {
        fail(s, P2P_WS_TOO_BIG, "WebSocket frame too long");
        return -1;
    }
    if (masked) {
        if (s->in_len < h + 4) return 0;
        memcpy(key, s->in + h, 4);
        h += 4;
    }
    if (s->in_len < h + n) return 0;
    for (i = 0; i < n; i++) s->in[h + i] ^= key[i & 3];
    switch (opcode) {
    case 0x2:
        memcpy(buf, s->in + h, n);
        in_consume(s, h + n);
        return n > 0 ? (long)n : -2;
    case 0x9: /* ping: pong with the same bytes */
        if (ws_frame(s, 0xA, s->in + h, n) != 0)
            s->stats.dropped++;
        else
            s->stats.pings++;
        in_consume(s, h + n);
        return -2;
    case 0xA: in_consume(s, h + n); return -2;
    default: /* close: echo the code, then done */
        if (n == 1) {
            fail(s, P2P_WS_PROTOCOL_ERROR, "close frame of 1 byte");
            return -1;
        }
        if (!s->close_sent) {
            s->close_sent = 1;
            if (ws_frame(s, 0x8, s->in + h, n >= 2 ? 2 : 0) != 0) s->stats.dropped++;
        }
        s->error = n >= 2 ? (int)((unsigned)s->in[h] << 8 | s->in[h + 1]) : P2P_WS_NORMAL;
        s->why = "closed by the peer";
        s->state = P2P_STREAM_CLOSING;
        in_consume(s, h + n);
        return -1;
    }
}

/* ---- the state machine --------------------------------------------------------------- */

static void init_common(p2p_tstream *s, int role)
{
    memset(s, 0, sizeof *s);
    s->role = role;
    s->state = P2P_STREAM_HANDSHAKE;
}

static int text_ok(const char *t, size_t max)
{
    size_t n = strlen(t), i;
    if (n >= max) return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)t[i] < 0x21 || t[i] == 0x7f) return 0;
    return 1;
}

int p2p_tstream_client(p2p_tstream *s, int ws, const char *host, const char *path,
                       const uint8_t key16[16], uint64_t seed)
{
    char key[25], b[700];
    int n;

    init_common(s, P2P_STREAM_CLIENT);
    s->rng = seed | 1;
    if (!ws) {
        s->mode = P2P_STREAM_MODE_RAW;
        s->state = P2P_STREAM_OPEN;
        return out_put(s, P2P_STREAM_MAGIC, 4) == 0 ? 0 : P2P_ERR_NOMEM;
    }
    if (host == NULL || path == NULL || !text_ok(host, 256) || !text_ok(path, 128) ||
        path[0] != '/')
        return P2P_ERR_INVALID;
    s->mode = P2P_STREAM_MODE_WS;
    (void)p2p_base64(key16, 16, key, sizeof key);
    p2p_ws_accept(key, 24, s->accept);
    n = snprintf(b, sizeof b,
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Protocol: " P2P_WS_PROTOCOL "\r\n\r\n",
                 path, host, key);
    return out_put(s, b, (size_t)n) == 0 ? 0 : P2P_ERR_NOMEM;
}

int p2p_tstream_server(p2p_tstream *s, const char *ws_path)
{
    init_common(s, P2P_STREAM_SERVER);
    if (ws_path != NULL) {
        if (strlen(ws_path) >= sizeof s->path) return P2P_ERR_INVALID;
        strcpy(s->path, ws_path);
    }
    return 0;
}

void p2p_tstream_free(p2p_tstream *s)
{
    free(s->in);
    free(s->out);
    s->in = s->out = NULL;
    s->in_len = s->in_alloc = s->out_off = s->out_len = s->out_alloc = 0;
}

size_t p2p_tstream_in_room(const p2p_tstream *s)
{
    if (s->state >= P2P_STREAM_CLOSING) return 0;
    return P2P_STREAM_IN_CAP - s->in_len;
}

int p2p_tstream_input(p2p_tstream *s, const uint8_t *b, size_t n)
{
    if (s->state >= P2P_STREAM_CLOSING) return -1;
    if (n > P2P_STREAM_IN_CAP - s->in_len) return -1;
    if (n == 0) return 0;
    if (grow(&s->in, &s->in_alloc, s->in_len + n, P2P_STREAM_IN_CAP) != 0) {
        fail(s, 1, "out of memory");
        return -1;
    }
    memcpy(s->in + s->in_len, b, n);
    s->in_len += n;
    return 0;
}

size_t p2p_tstream_next(p2p_tstream *s, uint8_t *buf, size_t cap)
{
    long r;

    for (;;) {
        if (s->state == P2P_STREAM_HANDSHAKE) {
            handshake(s);
            if (s->state != P2P_STREAM_OPEN) return 0;
        }
        if (s->state != P2P_STREAM_OPEN) return 0;
        r = s->mode == P2P_STREAM_MODE_RAW ? raw_next(s, buf, cap) : ws_next(s, buf, cap);
        if (r == -2) continue;
        if (r <= 0) return 0;
        s->stats.rx_datagrams++;
        return (size_t)r;
    }
}

int p2p_tstream_opened(p2p_tstream *s)
{
    if (s->state != P2P_STREAM_OPEN || s->open_reported) return 0;
    s->open_reported = 1;
    return 1;
}

int p2p_tstream_send(p2p_tstream *s, const uint8_t *d, size_t n)
{
    uint8_t hdr[2];

    if (n == 0 || n > P2P_MAX_PACKET) return P2P_ERR_TOO_BIG;
    if (s->state != P2P_STREAM_OPEN) return P2P_ERR_PEER;
    if (s->mode == P2P_STREAM_MODE_RAW) {
        hdr[0] = (uint8_t)(n >> 8);
        hdr[1] = (uint8_t)n;
        if (out_reserve(s, 2 + n) != 0) {
            s->stats.dropped++;
            return P2P_ERR_FULL;
        }
        memcpy(s->out + s->out_len, hdr, 2);
        memcpy(s->out + s->out_len + 2, d, n);
        s->out_len += 2 + n;
    } else if (ws_frame(s, 0x2, d, n) != 0) {
        s->stats.dropped++;
        return P2P_ERR_FULL;
    }
    s->stats.tx_datagrams++;
    return 0;
}

void p2p_tstream_close(p2p_tstream *s, int code)
{
    if (s->state >= P2P_STREAM_CLOSING) return;
    if (s->mode == P2P_STREAM_MODE_WS && s->state == P2P_STREAM_OPEN && !s->close_sent) {
        uint8_t b[2] = {(uint8_t)(code >> 8), (uint8_t)code};
        s->close_sent = 1;
        if (ws_frame(s, 0x8, b, 2) != 0) s->stats.dropped++;
    }
    s->why = "closed";
    s->state = P2P_STREAM_CLOSING;
}

const uint8_t *p2p_tstream_out(const p2p_tstream *s, size_t *n)
{
    *n = s->out_len - s->out_off;
    return *n > 0 ? s->out + s->out_off : NULL;
}

void p2p_tstream_wrote(p2p_tstream *s, size_t n)
{
    if (n > s->out_len - s->out_off) n = s->out_len - s->out_off;
    s->out_off += n;
    if (s->out_off == s->out_len) s->out_off = s->out_len = 0;
}

int p2p_tstream_done(const p2p_tstream *s)
{
    return s->state >= P2P_STREAM_CLOSING && s->out_len == s->out_off;
}

/* ---- sockets ------------------------------------------------------------------------- */

#ifdef _WIN32
int p2p_tstream_connect(const p2p_addr *to)
{
    (void)to;
    return -1;
}
int p2p_tstream_connected(int fd)
{
    (void)fd;
    return -1;
}
int p2p_tstream_listen(const p2p_addr *bind_addr, int backlog)
{
    (void)bind_addr;
    (void)backlog;
    return -1;
}
int p2p_tstream_accept(int lfd, p2p_addr *from)
{
    (void)lfd;
    (void)from;
    return -1;
}
long p2p_tstream_read(p2p_tstream *s, int fd)
{
    (void)s;
    (void)fd;
    return -1;
}
int p2p_tstream_write(p2p_tstream *s, int fd)
{
    (void)s;
    (void)fd;
    return -1;
}
#else
static socklen_t to_sa(const p2p_addr *a, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (a->family == P2P_AF_INET4) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, a->ip, 4);
        s4->sin_port = htons(a->port);
        return sizeof *s4;
    }
    if (a->family == P2P_AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, a->ip, 16);
        s6->sin6_port = htons(a->port);
        s6->sin6_scope_id = a->zone; /* link-local: out of that interface */
        return sizeof *s6;
    }
    return 0;
}

static void from_sa(const struct sockaddr_storage *ss, p2p_addr *a)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(a, 0, sizeof *a);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        a->family = P2P_AF_INET4;
        memcpy(a->ip, &s4->sin_addr, 4);
        a->port = ntohs(s4->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        const uint8_t *ip = (const uint8_t *)&s6->sin6_addr;
        if (memcmp(ip, mapped, 12) == 0) {
            a->family = P2P_AF_INET4;
            memcpy(a->ip, ip + 12, 4);
        } else {
            a->family = P2P_AF_INET6;
            memcpy(a->ip, ip, 16);
            if (ip[0] == 0xfe && (ip[1] & 0xc0) == 0x80) a->zone = (uint32_t)s6->sin6_scope_id;
        }
        a->port = ntohs(s6->sin6_port);
    }
}

static int tune(int fd)
{
    int one = 1, size = P2P_STREAM_OUT_CAP, fl;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
#ifdef SO_NOSIGPIPE
    (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) return -1;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) return -1;
    return 0;
}

int p2p_tstream_connect(const p2p_addr *to)
{
    struct sockaddr_storage ss;
    socklen_t n = to_sa(to, &ss);
    int fd;

    if (n == 0 || to->port == 0) return -1;
    fd = socket(ss.ss_family, SOCK_STREAM, IPPROTO_TCP);
    if (fd < 0) return -1;
    if (tune(fd) != 0) {
        close(fd);
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&ss, n) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

int p2p_tstream_connected(int fd)
{
    int e = 0;
    socklen_t n = sizeof e;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &n) != 0) return errno;
    return e;
}

int p2p_tstream_listen(const p2p_addr *bind_addr, int backlog)
{
    struct sockaddr_storage ss;
    socklen_t n = to_sa(bind_addr, &ss);
    int fd, one = 1, off = 0;

    if (n == 0) return -1;
    fd = socket(ss.ss_family, SOCK_STREAM, IPPROTO_TCP);
    if (fd < 0) return -1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6) (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    if (bind(fd, (struct sockaddr *)&ss, n) != 0 || listen(fd, backlog) != 0 || tune(fd) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int p2p_tstream_accept(int lfd, p2p_addr *from)
{
    struct sockaddr_storage ss;
    socklen_t n = sizeof ss;
    int fd = accept(lfd, (struct sockaddr *)&ss, &n);

    if (fd < 0) return -1;
    if (tune(fd) != 0) {
        close(fd);
        return -1;
    }
    from_sa(&ss, from);
    return fd;
}

long p2p_tstream_read(p2p_tstream *s, int fd)
{
    uint8_t buf[16384];
    size_t room = p2p_tstream_in_room(s);
    ssize_t r;

    if (s->state >= P2P_STREAM_CLOSING) {
        /* closing: what still comes is read and dropped, so a level-triggered poll does not
         * report the socket readable forever while our last bytes go out */
        r = recv(fd, buf, sizeof buf, 0);
        if (r == 0) return -1;
        if (r < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
        return (long)r;
    }
    if (room == 0) return 0;
    if (room > sizeof buf) room = sizeof buf;
    r = recv(fd, buf, room, 0);
    if (r == 0) return -1;
    if (r < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    if (p2p_tstream_input(s, buf, (size_t)r) != 0) return -1;
    return (long)r;
}

int p2p_tstream_write(p2p_tstream *s, int fd)
{
    const uint8_t *p;
    size_t n;
    ssize_t r;

    while ((p = p2p_tstream_out(s, &n)) != NULL) {
#ifdef MSG_NOSIGNAL
        r = send(fd, p, n, MSG_NOSIGNAL);
#else
        r = send(fd, p, n, 0);
#endif
        if (r < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
        p2p_tstream_wrote(s, (size_t)r);
    }
    return 0;
}
#endif
