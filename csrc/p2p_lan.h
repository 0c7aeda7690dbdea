/*
 * p2p_lan.h - LAN discovery: signed beacons on a multicast group and the broadcast address (modules layer; issue 12).
 *
 * The hub calls these; the module keeps its state in h->lan (its own struct).
 */
#ifndef P2P_LAN_H
#define P2P_LAN_H

#include "p2p_state.h"

/* Sets the module up from the configuration (h->lan may stay NULL when it is off).
 * Returns 0 or P2P_ERR_NOMEM. */
int p2p_lan_init(p2p_host *h, const p2p_config *cfg, uint64_t now);
void p2p_lan_free(p2p_host *h);
/* A datagram the hub's demux gave the module (docs/PROTOCOL.md section 8.7). Returns 1 when it
 * was the module's (taken), 0 when not. */
int p2p_lan_on_datagram(p2p_host *h, const p2p_addr *from, const uint8_t *b, size_t len,
                        uint64_t now);
/* The driver's answer to one of the module's requests (p2p_io_push). */
void p2p_lan_on_io(p2p_host *h, const p2p_io_result *r, uint64_t now);
/* When p2p_lan_timer is next due, or P2P_TIME_NEVER. */
uint64_t p2p_lan_deadline(const p2p_host *h);
void p2p_lan_timer(p2p_host *h, uint64_t now);
/* The driver saw the network change: start again. */
void p2p_lan_network_changed(p2p_host *h, uint64_t now);
/* The host is closing: say goodbye (delete mappings, ...), queue nothing after. */
void p2p_lan_close(p2p_host *h, uint64_t now);
/* The nodes heard in valid beacons: up to cap into out; returns how many there are. */
size_t p2p_lan_peers(const p2p_host *h, p2p_lan_peer *out, size_t cap);

#endif
