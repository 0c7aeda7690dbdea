/*
 * p2p_lan.h - LAN discovery (design12 section 4.4, docs/PROTOCOL.md section 8.9): sealed
 * beacons on the LAN socket, and the decisions they lead to. A beacon tells nodes holding the
 * same network key that a node (id) listens at the beacon's source IP and a UDP port; a node
 * with another key, or none, learns nothing but that something is there.
 *
 * Two parts. The beacon codec and the receive/send logic work on a p2p_lan_state of their own
 * (no host: the unit test drives them directly). The module functions (p2p_lan_init ...) glue
 * them to the host: the hub hands LAN datagrams to p2p_lan_on_datagram, the module queues
 * beacons with p2p_lan_tx_push and asks the hub to dial with a P2P_NOTE_LAN_DIAL notice.
 */
#ifndef P2P_LAN_H
#define P2P_LAN_H

#include <stddef.h>
#include <stdint.h>

#include "p2p_state.h"
#include "p2p_crypto.h"

#define P2P_LAN_BEACON_LEN 154
#define P2P_LAN_PORT 44344                /* discover_port's default */
#define P2P_LAN_SKEW_US 600000000ull      /* +-600 s between wall clocks */
#define P2P_LAN_DUP_US 5000000ull         /* copies of one beacon within 5 s are not drops */
#define P2P_LAN_REPLAY 1024               /* ids remembered with the newest beacon time each */
#define P2P_LAN_VERIFY_PER_S 8            /* Ed25519 checks a second, all sources */
#define P2P_LAN_SOURCE_GAP_US 2000000ull  /* one check per source IP per 2 s */
#define P2P_LAN_DIAL_GAP_US 60000000ull   /* one dial per id per 60 s */
#define P2P_LAN_DIALS_PER_MIN 16          /* LAN dials a minute in all */
#define P2P_LAN_PERIOD_MIN_US 31000000ull /* then every 31..34 s */
#define P2P_LAN_PERIOD_SPAN_US 3000000ull
#define P2P_LAN_CHANGE_GAP_US 10000000ull /* network change: at most one beacon per 10 s */
#define P2P_LAN_PEERS 64                  /* node:lan_peers() entries kept */
#define P2P_LAN_PEER_TTL_US 120000000ull  /* forgotten after 120 s without a beacon */
#define P2P_LAN_SOURCES 24
#define P2P_LAN_DIALLED 32

/* ---- the beacon ------------------------------------------------------------------------ */

/* The beacon key: H32("p2pnet/1 lan" || psk), psk the stretched network key (32 zero bytes
 * without one). */
void p2p_lan_key(uint8_t key[P2P_KEY_LEN], const uint8_t psk[P2P_KEY_LEN]);

/* Writes a beacon (154 bytes): "p2pb", version 1, flags 0, u16 0, the 24-byte nonce, then
 * sealed under key with bytes 0..31 as associated data: id, u16 port, u64 unix_us (both
 * little-endian, as all p2pnet fields), and sk's Ed25519 signature over "p2pnet/1 beacon" ||
 * those 42 bytes. */
void p2p_lan_seal(uint8_t out[P2P_LAN_BEACON_LEN], const uint8_t key[P2P_KEY_LEN],
                  const uint8_t nonce[P2P_XNONCE_LEN], const uint8_t id[P2P_ID_LEN],
                  const uint8_t sk[P2P_ED_SK_LEN], uint16_t port, uint64_t unix_us);

/* What an opened beacon says, and the plaintext the signature covers. */
typedef struct p2p_lan_beacon {
    uint8_t id[P2P_ID_LEN];
    uint16_t port;
    uint64_t unix_us;
    uint8_t sig[P2P_SIG_LEN];
    uint8_t signed_part[42];
} p2p_lan_beacon;

/* Checks length, magic, version and the AEAD tag, and reads the plaintext into *bc.
 * Returns 0 or -1 (nothing learned: *bc is zeroed). The signature is not checked. */
int p2p_lan_open(const uint8_t *b, size_t len, const uint8_t key[P2P_KEY_LEN], p2p_lan_beacon *bc);
/* The Ed25519 check of an opened beacon: 0 or -1. */
int p2p_lan_verify(const p2p_lan_beacon *bc);

/* ---- receive and send logic ------------------------------------------------------------ */

/* What happened to a beacon; the receive function returns one of these. */
enum {
    P2P_LAN_DIAL = 2,      /* valid, and a dial is due: *dial_to, dial_id filled */
    P2P_LAN_HEARD = 1,     /* valid, recorded; no dial (limits, session, mediator) */
    P2P_LAN_BAD = -1,      /* length, magic, version, source scope */
    P2P_LAN_NOKEY = -2,    /* the tag failed: another network key, or noise */
    P2P_LAN_STALE = -3,    /* time outside +-600 s */
    P2P_LAN_REPLAYED = -4, /* (id, time) seen before */
    P2P_LAN_REFUSED = -5,  /* our own id, or refused by allow/deny */
    P2P_LAN_RATE = -6,     /* over the signature-check caps */
    P2P_LAN_FORGED = -7,   /* the signature failed */
    P2P_LAN_SELF = -8,     /* our own beacon (the group loops it back): not counted */
    P2P_LAN_DUPLICATE = -9 /* another copy (group, broadcast) of a beacon accepted in the last
                            * P2P_LAN_DUP_US: not counted either */
};

/* Questions the receive function asks of its owner (the host, or a test). */
typedef struct p2p_lan_ctx {
    const uint8_t *self_id;
    int dial; /* nonzero: a mesh member, which dials; 0: a mediator, which only records */
    /* nonzero when id may not join (policy: deny, allow) */
    int (*refused)(void *ud, const uint8_t id[P2P_ID_LEN]);
    /* nonzero when a session with id exists (connected or being made) */
    int (*has_session)(void *ud, const uint8_t id[P2P_ID_LEN]);
    void *ud;
    /* nonzero when the node's UDP socket can send to IPv6 (bound to an IPv6 address, "::"
     * taking both families); 0: IPv6 beacons are dropped, their sources being out of reach */
    int v6;
} p2p_lan_ctx;

typedef struct p2p_lan_state {
    uint8_t key[P2P_KEY_LEN];
    uint64_t unix_base, mono_base; /* wall clock = unix_base + (now - mono_base); 0: unknown */
    /* sending */
    uint64_t next_beacon; /* UINT64_MAX: none */
    uint32_t beacons;     /* sent since start */
    uint64_t last_change; /* last beacon made for a network change; 0: none */
    int change_pending;
    /* receiving */
    struct {
        uint8_t id[P2P_ID_LEN];
        uint64_t unix_us;
        uint64_t at; /* when it was accepted (monotonic) */
    } replay[P2P_LAN_REPLAY];
    uint32_t replay_head, replay_n;
    uint64_t verify_window;
    uint32_t verify_n;
    struct {
        p2p_addr ip; /* port 0 */
        uint64_t at;
    } sources[P2P_LAN_SOURCES];
    struct {
        uint8_t id[P2P_ID_LEN];
        uint64_t at;
    } dialled[P2P_LAN_DIALLED];
    uint64_t dial_times[P2P_LAN_DIALS_PER_MIN]; /* ring of the last 16 dials */
    uint32_t dial_head, dial_n;
    p2p_lan_peer peers[P2P_LAN_PEERS];
    size_t npeers;
    /* counters */
    uint64_t sent, received, dropped, verified, dials;
} p2p_lan_state;

/* Starts the state: beacon key from psk, wall clock unix_us at monotonic now (unix_us 0:
 * unknown, beacons then carry 0 and the time check is skipped), first beacon due at now. */
void p2p_lan_state_init(p2p_lan_state *l, const uint8_t psk[P2P_KEY_LEN], uint64_t unix_us,
                        uint64_t now);
/* Runs the receive checks on one datagram from the LAN socket (design12 section 4.4, in order
 * of cost: length and magic, source scope and family, tag, time, replay, policy, rate,
 * signature), records a valid beacon, and decides whether to dial it. An IPv6 link-local
 * source is dialled with its zone (from->zone, the interface it came in on); one without a
 * zone has scope INVALID and is dropped. Returns a P2P_LAN_* value. */
int p2p_lan_state_recv(p2p_lan_state *l, const p2p_lan_ctx *c, const p2p_addr *from,
                       const uint8_t *b, size_t len, uint64_t now, p2p_addr *dial_to,
                       uint8_t dial_id[P2P_ID_LEN]);
/* When the next beacon is due (UINT64_MAX: never). */
uint64_t p2p_lan_state_deadline(const p2p_lan_state *l);
/* When a beacon is due at now: seals one for (id, sk, port) with a nonce from rng into out,
 * schedules the next (1 s, 2 s, then 31..34 s) and returns 1; else 0. port 0 (not known
 * yet): nothing is sent and the beacon waits 1 s. */
int p2p_lan_state_timer(p2p_lan_state *l, uint64_t now, p2p_rng *rng, const uint8_t id[P2P_ID_LEN],
                        const uint8_t sk[P2P_ED_SK_LEN], uint16_t port,
                        uint8_t out[P2P_LAN_BEACON_LEN]);
/* The network changed: one beacon at once, unless one was made for a change in the last 10 s
 * (then at the end of those 10 s). */
void p2p_lan_state_changed(p2p_lan_state *l, uint64_t now);
/* Copies up to max peers heard in the last P2P_LAN_PEER_TTL_US into out (p2p_lan_peer of
 * p2pnet.h: last = when heard); returns how many there are (may be more than max). */
size_t p2p_lan_state_peers(const p2p_lan_state *l, uint64_t now, p2p_lan_peer *out, size_t max);

/* ---- the module (called by the hub; state in h->lan) ------------------------------------ */

/* Starts LAN discovery when cfg->lan_discovery is set: asks the driver for the LAN socket
 * (P2P_IO_LAN_START on cfg->lan_port) and schedules the first beacon. h->lan stays NULL when
 * it is off. Returns 0 or P2P_ERR_NOMEM. */
int p2p_lan_init(p2p_host *h, const p2p_config *cfg, uint64_t now);
void p2p_lan_free(p2p_host *h);
/* A datagram from the LAN socket: the receive checks; a valid beacon is recorded
 * (p2p_lan_peers) and, on a mesh member, may raise P2P_NOTE_LAN_DIAL. Counts lan_received
 * (valid) and lan_dropped (failed a check). Returns 1 when it was taken (LAN discovery on). */
int p2p_lan_on_datagram(p2p_host *h, const p2p_addr *from, const uint8_t *b, size_t len,
                        uint64_t now);
/* The driver's answer to P2P_IO_LAN_START: status P2P_ERR_IO stops the beacons. r->local,
 * when the driver fills it, is the node's UDP socket's bound address: its family says whether
 * IPv6 beacons go out and IPv6 sources are dialled, its port is the beacons' port until the
 * node has an address of its own (a node bound to "[::]:0" on a link with link-local
 * addresses only has none). */
void p2p_lan_on_io(p2p_host *h, const p2p_io_result *r, uint64_t now);
/* When p2p_lan_timer is next due, or P2P_TIME_NEVER. */
uint64_t p2p_lan_deadline(const p2p_host *h);
/* Sends the beacon that is due: to 239.255.112.112 and 255.255.255.255 (the driver sends the
 * latter to each interface's directed broadcast), and to ff02::7032:706e (the driver sends it
 * out of each IPv6 interface) when the node can be reached over IPv6 (it has an IPv6 address,
 * or its socket is bound to one), all on the LAN port with sock 0 (every interface). */
void p2p_lan_timer(p2p_host *h, uint64_t now);
/* The driver saw the network change: one beacon at once (at most one per 10 s). */
void p2p_lan_network_changed(p2p_host *h, uint64_t now);
/* The host is closing: no more beacons; the driver closes the LAN socket (P2P_IO_LAN_STOP). */
void p2p_lan_close(p2p_host *h, uint64_t now);
/* The nodes heard in valid beacons in the last 120 s: up to cap into out; returns how many
 * there are. */
size_t p2p_lan_peers(const p2p_host *h, p2p_lan_peer *out, size_t cap);

#endif
