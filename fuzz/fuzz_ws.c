/*
 * fuzz_ws.c - libFuzzer target for the stream paths' parsers (driver/stream.c): the HTTP
 * upgrade request (server) and response (client) parsers, the WebSocket frame decoder (both
 * roles) and the raw "p2pt" framing, fed in arbitrary split reads.
 *
 * Input: byte 0 picks the case (bits 0-1: server / WebSocket client / WebSocket client already
 * upgraded with a valid 101 / raw client; bit 2: the server accepts any path), byte 1 the read
 * size (1..256; reads are cut there), the rest is what the peer sends.
 * Checks: a datagram is 1..1232 bytes and only comes out of an open stream; the input never
 * holds more than 64 KiB, the output never more than 256 KiB; nothing comes out once the
 * stream is closing; a server in raw mode got "p2pt" first; the first two datagrams delivered,
 * sent again through a fresh client/server pair of the same mode, arrive unchanged.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p2pnet.h"
#include "driver/stream.h"
#include "fuzz_check.h"

static const uint8_t key16[16] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};

/* Sends d through a fresh pair in mode ws and checks it arrives unchanged. */
static void roundtrip(int ws, const uint8_t *d, size_t n)
{
    p2p_tstream c, s;
    uint8_t got[P2P_MAX_PACKET];
    const uint8_t *p;
    size_t k;

    CHECK(p2p_tstream_client(&c, ws, "h", "/p2pnet", key16, 3) == 0);
    CHECK(p2p_tstream_server(&s, "/p2pnet") == 0);
    p = p2p_tstream_out(&c, &k);
    CHECK(p2p_tstream_input(&s, p, k) == 0);
    p2p_tstream_wrote(&c, k);
    CHECK(p2p_tstream_next(&s, got, sizeof got) == 0);
    if ((p = p2p_tstream_out(&s, &k)) != NULL) {
        CHECK(p2p_tstream_input(&c, p, k) == 0);
        p2p_tstream_wrote(&s, k);
    }
    CHECK(p2p_tstream_next(&c, got, sizeof got) == 0);
    CHECK(c.state == P2P_STREAM_OPEN && s.state == P2P_STREAM_OPEN);
    CHECK(p2p_tstream_send(&c, d, n) == 0);
    p = p2p_tstream_out(&c, &k);
    CHECK(p2p_tstream_input(&s, p, k) == 0);
    CHECK(p2p_tstream_next(&s, got, sizeof got) == n);
    CHECK(memcmp(got, d, n) == 0);
    p2p_tstream_free(&c);
    p2p_tstream_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    p2p_tstream s;
    uint8_t got[P2P_MAX_PACKET];
    size_t chunk, pos = 0, n, k;
    int kind, ws, trips = 0;

    if (size < 2) return 0;
    kind = data[0] & 3;
    chunk = (size_t)data[1] + 1;
    data += 2;
    size -= 2;
    if (kind == 0) {
        CHECK(p2p_tstream_server(&s, (data[-2] & 4) ? NULL : "/p2pnet") == 0);
    } else {
        CHECK(p2p_tstream_client(&s, kind != 3, "host", "/p2pnet", key16, 5) == 0);
        if (kind == 2) {
            char resp[200];
            int m = snprintf(resp, sizeof resp,
                             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                             s.accept);
            CHECK(p2p_tstream_input(&s, (const uint8_t *)resp, (size_t)m) == 0);
            CHECK(p2p_tstream_next(&s, got, sizeof got) == 0);
            CHECK(s.state == P2P_STREAM_OPEN);
        }
    }
    ws = s.mode == P2P_STREAM_MODE_WS;
    while (pos < size) {
        size_t room = p2p_tstream_in_room(&s);
        k = size - pos < chunk ? size - pos : chunk;
        if (room == 0) break;
        if (k > room) k = room;
        if (p2p_tstream_input(&s, data + pos, k) != 0) break;
        pos += k;
        CHECK(s.in_len <= P2P_STREAM_IN_CAP);
        while ((n = p2p_tstream_next(&s, got, sizeof got)) > 0) {
            CHECK(n <= P2P_MAX_PACKET);
            CHECK(s.state == P2P_STREAM_OPEN);
            if (kind == 0 && s.mode == P2P_STREAM_MODE_RAW)
                CHECK(size >= 4 && memcmp(data, P2P_STREAM_MAGIC, 4) == 0);
            ws = s.mode == P2P_STREAM_MODE_WS;
            if (trips++ < 2) roundtrip(ws, got, n); /* a fresh pair is costly: two per input */
            /* answer through the stream itself: the output stays within its cap */
            (void)p2p_tstream_send(&s, got, n);
        }
        CHECK(s.out_len - s.out_off <= P2P_STREAM_OUT_CAP);
        if (s.state >= P2P_STREAM_CLOSING) {
            CHECK(p2p_tstream_next(&s, got, sizeof got) == 0);
            CHECK(p2p_tstream_send(&s, got, 1) == P2P_ERR_PEER);
            break;
        }
        /* drain the output now and then, as a socket would */
        if ((pos / chunk) % 3 == 0) {
            const uint8_t *p = p2p_tstream_out(&s, &k);
            if (p != NULL) p2p_tstream_wrote(&s, k);
        }
    }
    p2p_tstream_free(&s);
    return 0;
}
