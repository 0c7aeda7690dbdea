/*
 * p2p_transfer.h - streaming transfers (docs/PROTOCOL.md section 4.2): byte sequences of any
 * size sent through a session's stream as TRANSFER records, with back-pressure, progress,
 * cancel from either side and a BLAKE2b-256 check of the whole content.
 *
 * A module of its own (the "modules" layer): it uses the session's stream (p2p_peer_append,
 * p2p_peer_unacked) and the shared state, and never calls the host. The host hands it the
 * TRANSFER records a session received whole (p2p_transfer_on_record), tells it when a session
 * ends (p2p_transfer_on_end), lets it look for transfers that have room again after input
 * (p2p_transfer_poll), and wraps the calls below as the public p2p_host_transfer_* API.
 *
 * h->xfers and a session's xfer_* fields belong to this module (and the hub).
 */
#ifndef P2P_TRANSFER_H
#define P2P_TRANSFER_H

#include "p2p_state.h"

/* Record body ops (the first byte of a TRANSFER record's body). */
enum {
    P2P_XOP_OPEN = 0x01,   /* sender -> receiver: id, flags, [total], meta */
    P2P_XOP_DATA = 0x02,   /* sender -> receiver: id, offset, bytes */
    P2P_XOP_END = 0x03,    /* sender -> receiver: id, length, BLAKE2b-256 */
    P2P_XOP_CANCEL = 0x04, /* sender -> receiver: id, reason */
    P2P_XOP_ACCEPT = 0x05, /* receiver -> sender: id, offset */
    P2P_XOP_STOP = 0x06,   /* receiver -> sender: id, code, reason */
    P2P_XOP_DONE = 0x07    /* receiver -> sender: id */
};
/* OPEN flags. */
#define P2P_XOPEN_SIZED 0x01 /* a total follows */
/* STOP codes. */
enum { P2P_XSTOP_CANCEL = 0, P2P_XSTOP_INTEGRITY = 1 };

/* The API behind p2p_host_transfer_* (p2pnet.h says what each returns). */
int p2p_transfer_open(p2p_host *h, p2p_peer_handle peer, int lane, uint64_t total,
                      const uint8_t *meta, size_t len, uint32_t *out);
int p2p_transfer_write(p2p_host *h, uint32_t t, const uint8_t *data, size_t len);
int p2p_transfer_absorb(p2p_host *h, uint32_t t, const uint8_t *data, size_t len);
int p2p_transfer_finish(p2p_host *h, uint32_t t);
int p2p_transfer_accept(p2p_host *h, uint32_t t, uint64_t offset);
int p2p_transfer_cancel(p2p_host *h, uint32_t t, const char *reason);
int p2p_transfer_get_info(const p2p_host *h, uint32_t t, p2p_transfer_info *info);

/* A TRANSFER record that session p received whole (body borrowed for the call). Returns 0, or
 * -1 when the record breaks the protocol (the host then ends the session). A record that is
 * only unwelcome (over the per-peer cap or the budget) is refused with a STOP, not an error. */
int p2p_transfer_on_record(p2p_host *h, p2p_peer *p, int lane, const uint8_t *body, size_t len);
/* Session p ended: each of its transfers ends with P2P_TRANSFER_LOST and is freed. */
void p2p_transfer_on_end(p2p_host *h, p2p_peer *p);
/* After input: a WANT event for each outgoing transfer that found no room and has it now. */
void p2p_transfer_poll(p2p_host *h);
/* Frees every transfer without events (the host is being freed). */
void p2p_transfer_free(p2p_host *h);

#endif
