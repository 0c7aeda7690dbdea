/*
 * driver/stream.h - stream paths for the UDP driver (design 12 §3.5): p2pnet datagrams over a
 * TCP connection, either raw ("p2pt" preamble, then each datagram as u16 big-endian length ||
 * bytes, the framing of RFC 4571 §2) or as one binary WebSocket message each (RFC 6455, client
 * and server). Used by driver/udp.c only (and by the tests and the fuzzer).
 *
 * Two halves:
 *   - a pure connection state machine (p2p_tstream): bytes from the socket go in
 *     (p2p_tstream_input), datagrams come out (p2p_tstream_next); datagrams go in
 *     (p2p_tstream_send), bytes for the socket come out (p2p_tstream_out / p2p_tstream_wrote).
 *     No system call, no clock: the fuzzer drives it directly.
 *   - socket helpers (POSIX only; on Windows they answer -1): non-blocking connect, listen,
 *     accept, each with TCP_NODELAY and a 256 KiB send buffer.
 * Plus SHA-1 (FIPS 180-4) and base64 (RFC 4648 §4), which the WebSocket handshake needs.
 *
 * Limits: a datagram is 1..P2P_MAX_PACKET (1232) bytes; a longer frame closes the connection
 * (WebSocket close 1009). Unread input is kept up to P2P_STREAM_IN_CAP (64 KiB): the reader
 * reads no more than p2p_tstream_in_room() allows, so TCP flow control pushes back. Output is
 * buffered up to P2P_STREAM_OUT_CAP (256 KiB); a datagram that does not fit is dropped and
 * counted (the session above sees a loss and its congestion control slows down), never queued
 * for seconds behind TCP's head-of-line blocking.
 */
#ifndef P2P_STREAM_H
#define P2P_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include "p2pnet.h"

#define P2P_STREAM_IN_CAP (64 * 1024)
#define P2P_STREAM_OUT_CAP (256 * 1024)
/* The HTTP upgrade request or response, headers included, is at most this long. */
#define P2P_STREAM_HTTP_MAX 4096
/* The raw mode's preamble: "p2pt". */
#define P2P_STREAM_MAGIC "p2pt"
#define P2P_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define P2P_WS_PROTOCOL "p2pnet"

enum { P2P_STREAM_CLIENT = 0, P2P_STREAM_SERVER = 1 };
enum {
    P2P_STREAM_MODE_UNKNOWN = 0, /* server: first bytes not seen yet */
    P2P_STREAM_MODE_RAW = 1,     /* "p2pt" + u16 length frames */
    P2P_STREAM_MODE_WS = 2       /* WebSocket */
};
enum {
    P2P_STREAM_HANDSHAKE = 0, /* waiting for the preamble / the HTTP upgrade */
    P2P_STREAM_OPEN = 1,      /* datagrams flow */
    P2P_STREAM_CLOSING = 2,   /* no more input is read; flush the output, then close */
    P2P_STREAM_CLOSED = 3     /* done: close the socket (the output may still be flushed) */
};

/* WebSocket close codes (RFC 6455 §7.4.1) this code sends. */
enum {
    P2P_WS_NORMAL = 1000,
    P2P_WS_PROTOCOL_ERROR = 1002,
    P2P_WS_UNSUPPORTED = 1003,
    P2P_WS_TOO_BIG = 1009
};

typedef struct p2p_tstream_stats {
    uint64_t rx_datagrams, tx_datagrams;
    uint64_t dropped; /* datagrams (and control frames) dropped for lack of output room */
    uint64_t pings;   /* pings answered */
} p2p_tstream_stats;

typedef struct p2p_tstream {
    int role, mode, state;
    int open_reported; /* p2p_tstream_opened() said 1 once */
    int close_sent;    /* a WebSocket close frame is queued */
    int error;         /* the WebSocket close code (or 1 for a raw-mode error) of a failure */
    const char *why;   /* a readable reason for the failure or close, static text */
    char accept[29];   /* client: the Sec-WebSocket-Accept expected */
    char path[128];    /* server: the WebSocket path accepted ("" = any) */
    uint64_t rng;      /* masking keys (client) */
    uint8_t *in;       /* unread input, in[0..in_len) */
    size_t in_len, in_alloc;
    uint8_t *out; /* unwritten output, out[out_off..out_len) */
    size_t out_off, out_len, out_alloc;
    p2p_tstream_stats stats;
} p2p_tstream;

/* ---- SHA-1 and base64 ---------------------------------------------------------------- */
void p2p_sha1(const uint8_t *data, size_t len, uint8_t out[20]);
/* Writes the base64 text of in (with '=' padding) and a NUL into out. Returns the text's
 * length, or 0 when cap is too small (4 * ((n + 2) / 3) + 1 always suffices). */
size_t p2p_base64(const uint8_t *in, size_t n, char *out, size_t cap);
/* Decodes standard base64 with padding. Returns the byte count, or -1 (bad text, too long). */
long p2p_base64_decode(const char *in, size_t n, uint8_t *out, size_t cap);
/* out = base64(SHA-1(key || GUID)), 28 characters and a NUL (RFC 6455 §4.2.2 item 5.4). */
void p2p_ws_accept(const char *key, size_t keylen, char out[29]);

/* ---- the connection state machine ---------------------------------------------------- */

/* A client. ws = 0: raw mode ("p2pt" is queued and the stream is open at once). ws = 1:
 * the HTTP upgrade request for host/path is queued with key16 as the Sec-WebSocket-Key (16
 * random bytes); the stream opens on a valid 101 answer. seed feeds the masking keys.
 * Returns 0, P2P_ERR_INVALID (host or path too long or with CR/LF) or P2P_ERR_NOMEM. */
int p2p_tstream_client(p2p_tstream *s, int ws, const char *host, const char *path,
                       const uint8_t key16[16], uint64_t seed);
/* A server connection; ws_path is the WebSocket path it accepts (NULL or "" = any). The
 * client's first bytes choose raw or WebSocket. */
int p2p_tstream_server(p2p_tstream *s, const char *ws_path);
/* Frees the buffers. */
void p2p_tstream_free(p2p_tstream *s);

/* How many bytes the reader may take from the socket now (0 when the input is full or no
 * more input is wanted). */
size_t p2p_tstream_in_room(const p2p_tstream *s);
/* Bytes read from the socket. More than p2p_tstream_in_room() is refused (-1, nothing taken).
 * Returns 0, or -1 once the stream is failed or closing (the bytes are ignored). */
int p2p_tstream_input(p2p_tstream *s, const uint8_t *b, size_t n);
/* The next datagram received, copied into buf (cap >= P2P_MAX_PACKET): its length, or 0 when
 * no complete one is waiting. Also does the handshake, answers pings and closes, and fails
 * the stream on a protocol violation (state CLOSING, `error` and `why` set, a close frame
 * queued where the protocol has one). */
size_t p2p_tstream_next(p2p_tstream *s, uint8_t *buf, size_t cap);
/* 1 exactly once: the first time the stream is open (handshake complete). */
int p2p_tstream_opened(p2p_tstream *s);
/* Frames one datagram for the peer. Returns 0, P2P_ERR_TOO_BIG (0 or over P2P_MAX_PACKET
 * bytes), P2P_ERR_PEER (not open) or P2P_ERR_FULL (no room: dropped and counted). */
int p2p_tstream_send(p2p_tstream *s, const uint8_t *d, size_t n);
/* Starts a clean close: a WebSocket close frame with `code` is queued; no more input. */
void p2p_tstream_close(p2p_tstream *s, int code);
/* The bytes waiting to be written (*n of them; NULL when none). */
const uint8_t *p2p_tstream_out(const p2p_tstream *s, size_t *n);
/* n of those bytes were written. */
void p2p_tstream_wrote(p2p_tstream *s, size_t n);
/* 1 when the socket should be closed now: failed or closing, and the output is written. */
int p2p_tstream_done(const p2p_tstream *s);

/* ---- sockets (POSIX) ------------------------------------------------------------------ */
/* A non-blocking TCP connect to `to` (IPv4/IPv6), TCP_NODELAY, SO_SNDBUF 256 KiB. Returns
 * the descriptor (the connect completes when it becomes writable: p2p_tstream_connected), or
 * -1. */
int p2p_tstream_connect(const p2p_addr *to);
/* After writability: 0 when the connect succeeded, else the errno it failed with. */
int p2p_tstream_connected(int fd);
/* A non-blocking listening TCP socket on host (NULL/"": any IPv4; "::" dual-stack) : port,
 * SO_REUSEADDR. Returns the descriptor or -1. */
int p2p_tstream_listen(const p2p_addr *bind_addr, int backlog);
/* Accepts one connection (non-blocking, TCP_NODELAY, SO_SNDBUF 256 KiB): the descriptor and
 * the peer's address in *from, or -1 (nothing waiting, or an error). */
int p2p_tstream_accept(int lfd, p2p_addr *from);
/* Reads what the stream has room for (once it is closing: reads and drops). Returns bytes
 * read (> 0), 0 when nothing was waiting, or -1 when the peer closed or the socket failed. */
long p2p_tstream_read(p2p_tstream *s, int fd);
/* Writes what waits. Returns 0, or -1 when the socket failed. */
int p2p_tstream_write(p2p_tstream *s, int fd);

#endif
