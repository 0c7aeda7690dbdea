/*
 * driver/sim.h - a deterministic simulated network on virtual time. Hosts attached to a sim
 * exchange datagrams through it with configurable latency, jitter, loss, duplication and
 * reordering, drawn from one seeded random stream: the same seed and the same calls give the
 * same run, to the microsecond.
 *
 * A host may sit behind its own NAT, modelled on Linux iptables MASQUERADE and its connection
 * tracking. The NAT owns a public IPv4 address (the one the host would have had without NAT);
 * the host gets a private address in 10.0.0.0/8. Each datagram the host sends makes or
 * refreshes a flow: (external port, remote ip:port). An inbound datagram to the public
 * address passes only when it matches a live flow exactly (address-and-port-dependent
 * filtering), so two NATed hosts that send to each other's public mapping at about the same
 * time punch a hole; the first datagram in one direction may be filtered.
 *   P2P_SIM_NAT_CONE       endpoint-independent mapping: one external port for every
 *                          destination, the host's own port (port preservation) until
 *                          p2p_sim_rebind().
 *   P2P_SIM_NAT_SYMMETRIC  endpoint-dependent mapping (MASQUERADE --random-fully): a new
 *                          external port, drawn from the sim's random stream, for every
 *                          distinct destination ip:port. A reflexive address learned from one
 *                          peer is therefore useless to any other.
 * A flow expires after P2P_SIM_NAT_IDLE_US without a datagram through it in either direction;
 * a cone NAT's next flow gets the same port again, a symmetric NAT's a new one. There is no
 * hairpinning and no routing between private networks: datagrams to 10.0.0.0/8 are lost.
 */
#ifndef P2P_SIM_H
#define P2P_SIM_H

#include <stddef.h>
#include <stdint.h>
#include "p2pnet.h"

typedef struct p2p_sim p2p_sim;

typedef struct p2p_sim_config {
    uint64_t seed;       /* 0 is a valid seed too */
    uint64_t latency_us; /* one-way base delay */
    uint64_t jitter_us;  /* uniform extra delay in [0, jitter] */
    double loss;         /* probability a datagram is dropped */
    double duplicate;    /* probability a datagram is delivered twice */
    double reorder;      /* probability a datagram is held back by extra delay */
} p2p_sim_config;

enum { P2P_SIM_NAT_NONE = 0, P2P_SIM_NAT_CONE = 1, P2P_SIM_NAT_SYMMETRIC = 2 };

/* A NAT flow (mapping + permission) with no datagram through it for this long is forgotten
 * (Linux conntrack's UDP stream timeout is 120 s, its unreplied one 30 s; 60 s sits between). */
#define P2P_SIM_NAT_IDLE_US UINT64_C(60000000)
/* Flows a NAT keeps at most: a cone NAT's permissions (remote endpoints) for its one mapping,
 * or a symmetric NAT's mappings, one permission each. When full, the least recently used flow
 * is forgotten to make room, so a NAT holds at most about 11 KiB (40 bytes a flow). */
#define P2P_SIM_NAT_MAX_FLOWS 256

/* Largest datagram the simulated path carries (Ethernet 1500 less IPv6 and UDP); larger ones
 * are lost. */
#define P2P_SIM_PATH_MTU 1452

/* Creates a sim at virtual time 0. *out is owned by the caller (p2p_sim_free()).
 * Returns 0, P2P_ERR_INVALID (a probability outside [0, 1], or latency/jitter over 2^40 us)
 * or P2P_ERR_NOMEM. cfg is copied. */
int p2p_sim_new(p2p_sim **out, const p2p_sim_config *cfg);
/* Frees the sim (not the hosts attached to it). NULL is allowed. */
void p2p_sim_free(p2p_sim *s);
/* Virtual time, microseconds; starts at 0. */
uint64_t p2p_sim_now(const p2p_sim *s);
/* A seed for a new host's p2p_config.seed, drawn from the sim's stream (never 0). */
uint64_t p2p_sim_host_seed(p2p_sim *s);
/* Attaches a host and gives it an address on the simulated network (written to *addr).
 * Each host gets its own IPv4 address, in attach order: 192.0.2.1-250, 198.51.100.1-250,
 * 203.0.113.1-250, then 198.18.0.0/15 (250 per /24); addresses are never reused. port 0
 * picks 4000 + the attach index. nat is P2P_SIM_NAT_*. Behind a NAT the address above becomes
 * the NAT's public one and the host gets the private address 10.0.0.0 + 1 + attach index, with
 * the same port; *addr is that private address (the one the host is bound to). Returns 0,
 * P2P_ERR_INVALID (unknown nat, or the host is already attached), P2P_ERR_LIMIT (128750
 * attaches) or P2P_ERR_NOMEM. The host stays owned by the caller and must outlive its
 * attachment. */
int p2p_sim_attach(p2p_sim *s, p2p_host *h, uint16_t port, int nat, p2p_addr *addr);
/* Writes the public IP of the host's NAT, port 0, into *out; for a host without NAT, its own
 * address (port included). Returns 0, or P2P_ERR_INVALID when the host is not attached. */
int p2p_sim_public_addr(const p2p_sim *s, const p2p_host *h, p2p_addr *out);
/* Reboots the host's NAT: every flow is forgotten, and the mappings made from now on get new
 * external ports (never one in use just before; a cone NAT draws its new port now), as when a
 * NAT rebinds mid-transfer. Datagrams to the old mappings are filtered. Returns 0,
 * P2P_ERR_INVALID when the host is not attached or has no NAT, or P2P_ERR_NOMEM. */
int p2p_sim_rebind(p2p_sim *s, p2p_host *h);
/* Detaches a host: datagrams to its address are dropped (counted lost) from now on; those it
 * already sent stay in flight. Its NAT, if any, is gone. Unknown hosts are ignored. */
void p2p_sim_detach(p2p_sim *s, p2p_host *h);
/* Moves the host's outgoing datagrams into the network and re-reads its next timeout. Call it
 * after every API call on an attached host (connect, send, close...): the sim caches each
 * host's deadline and otherwise looks at a host only when it feeds it. */
void p2p_sim_flush(p2p_sim *s, p2p_host *h);
/* The earliest virtual time at which anything happens (a delivery or a host timer), or
 * P2P_TIME_NEVER. */
uint64_t p2p_sim_next_time(const p2p_sim *s);
/* Advances virtual time to min(next_time, until) and does everything due then: deliveries
 * and host timers, then flushes the datagrams of every host it fed into the network. Returns
 * 1 when something happened, 0 when time simply reached `until` (it never goes backwards).
 * Events accumulate in the hosts for the caller to drain. */
int p2p_sim_step(p2p_sim *s, uint64_t until);

/* ---- test hooks: they draw no randomness, and cost nothing while unused -------------- */

/* Sees one delivered datagram copy: from and to as on the wire (public addresses, after
 * NAT translation), data borrowed for the call. It runs inside p2p_sim_step(), before the
 * receiving host gets the datagram; it must not call back into the sim or the hosts. */
typedef void (*p2p_sim_tap_fn)(void *ud, const p2p_addr *from, const p2p_addr *to,
                               const uint8_t *data, size_t len);
/* Calls tap for every copy delivered to a host from now on (lost, NAT-filtered and blocked
 * copies are not delivered); NULL removes it. One tap at a time. */
void p2p_sim_set_tap(p2p_sim *s, p2p_sim_tap_fn tap, void *ud);
/* A firewall between two hosts: while on, every datagram sent from one host's public IP (its
 * NAT's, when it has one) to the other's, in either direction, is lost (counted in `lost`)
 * as it leaves the sender's NAT, which has made or refreshed its flow by then. Copies already
 * in flight still arrive. on = 0 lifts it. Returns 0, P2P_ERR_INVALID (a host not attached,
 * or a == b) or P2P_ERR_NOMEM. */
int p2p_sim_block(p2p_sim *s, const p2p_host *a, const p2p_host *b, int on);

/* ---- access links: a bottleneck on each side of the network ------------------------- */

/* Each attached host has an access link in each direction, off until set. A datagram a host
 * sends goes through its UP link, then the network model of p2p_sim_config (NAT, latency,
 * jitter, loss, duplication, reordering), then the receiver's DOWN link, entered at the time
 * the datagram reaches it, then the receiver's NAT and the host. A link is a FIFO serialized
 * at rate_bps with a drop-tail queue, then delay_us of propagation, then loss:
 *   - a datagram occupies len + P2P_SIM_LINK_OVERHEAD bytes on the link (UDP payload plus the
 *     IPv4 and UDP headers); its serialization takes bytes * 8 / rate_bps seconds, kept in
 *     integer micro-bits, so back-to-back datagrams never drift from the exact rate, and it
 *     leaves the queue when its last bit is out, rounded up to the microsecond;
 *   - drop-tail: a datagram is dropped when the bytes not yet serialized (the rest of the one
 *     on the wire included) plus its own would exceed the queue limit;
 *   - loss is drawn as the datagram leaves the link, after delay_us: with burst_enter 0 each
 *     datagram is lost with probability `loss`; otherwise a two-state Gilbert-Elliott chain
 *     decides it: lost with probability `loss` while good and `burst_loss` while bad, then the
 *     state moves (good -> bad with burst_enter, bad -> good with burst_leave). The long-run
 *     loss rate is (leave * loss + enter * burst_loss) / (enter + leave), and a bad spell lasts
 *     1 / leave datagrams on average.
 * Randomness comes from the sim's stream, and only for the draws a link needs (probabilities
 * of 0 or 1 draw nothing), so runs without links are exactly the runs of before. */
enum { P2P_SIM_UP = 0, P2P_SIM_DOWN = 1 }; /* a host's access link: what it sends / receives */

/* Bytes a datagram occupies on a link beyond its UDP payload: IPv4 (20) and UDP (8) headers. */
#define P2P_SIM_LINK_OVERHEAD 28
/* queue_bytes 0 means one bandwidth-delay product at this round trip: rate_bps / 80 bytes... */
#define P2P_SIM_LINK_DEFAULT_QUEUE_US 100000
/* ...but never less than two full-size datagrams (2 * (1452 + 28) = 2960 bytes). */
#define P2P_SIM_LINK_MIN_QUEUE (2 * (P2P_SIM_PATH_MTU + P2P_SIM_LINK_OVERHEAD))
/* Limits p2p_sim_set_link() accepts: 1 Tbit/s and a 4 GiB queue (delay: 2^40 us, as latency). */
#define P2P_SIM_LINK_MAX_RATE UINT64_C(1000000000000)
#define P2P_SIM_LINK_MAX_QUEUE (UINT64_C(1) << 32)

typedef struct p2p_sim_link {
    uint64_t rate_bps;    /* bottleneck rate in bits per second; 0: no limit and no queue */
    uint64_t queue_bytes; /* drop-tail queue in bytes; 0: P2P_SIM_LINK_DEFAULT_QUEUE_US of the
                           * rate (rate_bps / 80), at least P2P_SIM_LINK_MIN_QUEUE */
    uint64_t delay_us;    /* one-way propagation delay added after the queue */
    double loss;          /* random loss (after the queue), probability 0-1 */
    double burst_enter;   /* Gilbert-Elliott: probability per packet of going good -> bad; 0: off */
    double burst_leave;   /* probability per packet of going bad -> good */
    double burst_loss;    /* loss probability while bad (while good, `loss` applies) */
} p2p_sim_link;

/* Sets (l != NULL) or clears (NULL) one direction of an attached host's access link; may be
 * called at any time (a rate drop mid-run), packets already queued keep their departure
 * times: the link stays busy with them, and the datagrams it takes from now on queue behind
 * them at the new rate (a cleared link or rate 0 lets new ones pass at once, so they may
 * overtake). The loss settings apply from now on, to queued datagrams too; the burst state
 * is kept (reset to good when bursts are turned off). Counters are kept across calls.
 * Returns 0 or P2P_ERR_INVALID (host not attached, dir unknown, a probability outside
 * [0, 1], or a value over the limits above) or P2P_ERR_NOMEM. */
int p2p_sim_set_link(p2p_sim *s, const p2p_host *h, int dir, const p2p_sim_link *l);
/* The link every host attached from now on gets in direction dir (NULL: none, the start).
 * Hosts already attached keep theirs. Returns 0 or P2P_ERR_INVALID, as p2p_sim_set_link(). */
int p2p_sim_set_default_link(p2p_sim *s, int dir, const p2p_sim_link *l);

typedef struct p2p_sim_link_stats {
    uint64_t packets, bytes;   /* that left the link (delivered onward); bytes with overhead */
    uint64_t queue_drops;      /* drop-tail */
    uint64_t loss_drops;       /* random or burst loss */
    uint64_t queue_peak_bytes; /* most bytes waiting, the one just taken included */
    uint64_t queue_delay_max_us, queue_delay_sum_us; /* per packet that left the link: from
                                                      * entering the queue to the start of its
                                                      * serialization */
} p2p_sim_link_stats;
/* Fills *out with the counters of one direction of an attached host's link since it was
 * attached (zeros while no link was ever set). Returns 0, or P2P_ERR_INVALID (host not
 * attached, dir unknown). */
int p2p_sim_link_stats_get(const p2p_sim *s, const p2p_host *h, int dir, p2p_sim_link_stats *out);

/* Test hook: sends a datagram as if host h had emitted it now (its NAT, links and the network
 * model apply; the receiving host gets it like any other and drops what it cannot read).
 * Lets tests drive a link with exact sizes and times. Returns 0, P2P_ERR_INVALID (h not
 * attached) or P2P_ERR_TOO_BIG (over P2P_SIM_PATH_MTU: counted in too_big, as for hosts). */
int p2p_sim_inject(p2p_sim *s, const p2p_host *h, const p2p_addr *to, const uint8_t *data,
                   size_t len);

/* ---- issue 12: the io queue on the simulator (design 12 section 1.2) --------------------
 *
 * The sim serves every host's io requests (p2p_host_next_io) and LAN datagrams
 * (p2p_host_next_lan) as the UDP driver does, on virtual time and without randomness (none of
 * this draws from the sim's stream, so runs that do not use it are exactly as before):
 *   P2P_IO_GATEWAY     answered at once: the gateway set with p2p_sim_set_gateway (its `lan`
 *                      address, port 0; local = the host's bound address), else P2P_ERR_IO.
 *   P2P_IO_TCP_OPEN    a stream to a host that listens (p2p_sim_listen_tcp) on that public
 *                      ip:port: a reliable, in-order pipe with the sim's base latency each
 *                      way (no jitter, loss or access links; TCP is never UDP-blocked). The
 *                      server's host gets p2p_host_stream_up(inbound, sid with the top bit
 *                      set, from_ip = the client's public address) one latency after the
 *                      request, the client two latencies after (SYN, SYN-ACK); nobody
 *                      listening: p2p_host_stream_down after two latencies. WebSocket and raw
 *                      are the same pipe here. A datagram to P2P_AF_STREAM sid arrives at the
 *                      other end one latency later, never before the one sent before it.
 *   P2P_IO_TCP_CLOSE   the other end gets stream_down one latency later (no answer to the
 *                      closer). Detaching a host closes its streams the same way.
 *   P2P_IO_HTTP        to the gateway's lan address: p2p_sim_gateway.http gives the reply,
 *                      answered after 2 * P2P_SIM_LAN_LATENCY_US; else P2P_ERR_IO.
 *   P2P_IO_PUNCH_OPEN  answered at once with n slots (1..255, the lowest free). A punch socket
 *                      k is its own local port: behind a NAT every (socket, remote) pair is a
 *                      flow of its own (a symmetric NAT draws a port for each; a cone NAT maps
 *                      socket k to cone port + k); without NAT its port is the host's + k.
 *                      Datagrams arriving on it reach the host with from.sock = k.
 *   P2P_IO_LAN_START   the host's LAN socket on port n (answer n = 1 interface when the host
 *                      is in a LAN domain, p2p_sim_set_lan, else 0). A LAN datagram to a
 *                      multicast group (224/4) or a broadcast address reaches every host of
 *                      the domain with a LAN socket on that port, the sender included
 *                      (multicast loop), after P2P_SIM_LAN_LATENCY_US, from the sender's bound
 *                      address with the LAN port. P2P_IO_LAN_STOP closes it.
 * Hosts of one LAN domain also reach each other's bound (private) addresses directly, after
 * P2P_SIM_LAN_LATENCY_US, without NAT, loss or UDP blocking (one switch). */

#define P2P_SIM_LAN_LATENCY_US 500

/* Sets (on = 1) or lifts a firewall that drops every UDP datagram from or to the host at its
 * router (its NAT's public side, or the host itself without NAT): nothing it sends leaves,
 * nothing sent to it arrives (counted in `udp_blocked`), as `iptables -I FORWARD -p udp -j
 * DROP` on its router. Streams, LAN traffic and the gateway are not affected. Returns 0 or
 * P2P_ERR_INVALID (not attached). */
int p2p_sim_block_udp(p2p_sim *s, const p2p_host *h, int on);
/* The external ports the host's NAT draws from (symmetric mappings and rebinds): [lo, hi],
 * at least 1024 ports (the default is 1024..65535). Returns 0 or P2P_ERR_INVALID (not attached,
 * no NAT, a range under 1024 ports). */
int p2p_sim_nat_ports(p2p_sim *s, const p2p_host *h, uint16_t lo, uint16_t hi);
/* The host accepts streams on TCP `port` of its public address (0: its UDP port); only a host
 * without NAT can be reached. port 0 with on = 0 stops listening. Returns 0 or
 * P2P_ERR_INVALID. */
int p2p_sim_listen_tcp(p2p_sim *s, const p2p_host *h, uint16_t port, int on);
/* Puts the host in LAN broadcast domain `domain` (1..65535; 0 takes it out). */
int p2p_sim_set_lan(p2p_sim *s, const p2p_host *h, uint16_t domain);

/* A home gateway on the host's LAN (driver/sim_gw.h provides one: wrap its functions, whose
 * signatures these mirror with `ud` for the gateway). lan: its LAN address (port ignored). */
typedef struct p2p_sim_gateway {
    void *ud;
    p2p_addr lan;
    /* a UDP datagram from the host to lan:5351, lan:1900 or 239.255.255.250:1900: the reply
     * and its source, or 0 */
    size_t (*udp)(void *ud, const p2p_addr *from, const p2p_addr *to, const uint8_t *in, size_t len,
                  uint64_t now, uint8_t *out, size_t cap, p2p_addr *reply_from);
    /* an HTTP request to lan:5000: the whole reply, or 0 (refused) */
    size_t (*http)(void *ud, const p2p_addr *from, const uint8_t *req, size_t len, uint64_t now,
                   uint8_t *out, size_t cap);
    /* the NAT asks: a mapping for the host's private ip:port (1 and its external port)? */
    int (*nat_out)(void *ud, const p2p_addr *priv, uint64_t now, uint16_t *eport);
    /* a mapping with this external port (1 and the private ip:port it leads to)? */
    int (*nat_in)(void *ud, uint16_t eport, uint64_t now, p2p_addr *priv);
} p2p_sim_gateway;
/* Gives the host (which should have a NAT) that gateway; NULL removes it. gw is copied; what
 * ud points to must outlive the sim or the next call. Returns 0 or P2P_ERR_INVALID. */
int p2p_sim_set_gateway(p2p_sim *s, const p2p_host *h, const p2p_sim_gateway *gw);

/* A server on the public network that is not a p2pnet host (a STUN server): datagrams to any
 * of its addresses (which must not be a host's) go to `udp`, whose answer is sent from
 * *reply_from back to the datagram's source through the network model. */
typedef struct p2p_sim_server {
    void *ud;
    p2p_addr addr[4];
    size_t naddr;
    size_t (*udp)(void *ud, const p2p_addr *from, const p2p_addr *to, const uint8_t *in, size_t len,
                  uint8_t *out, size_t cap, p2p_addr *reply_from);
} p2p_sim_server;
/* Adds a server (copied). Returns 0, P2P_ERR_INVALID or P2P_ERR_NOMEM. */
int p2p_sim_add_server(p2p_sim *s, const p2p_sim_server *srv);

typedef struct p2p_sim_stats {
    uint64_t sent;         /* datagrams the hosts emitted */
    uint64_t delivered;    /* copies handed to a host */
    uint64_t lost;         /* dropped by `loss`, addressed to nobody, to 10.0.0.0/8, blocked,
                            * or by an access link (its queue or its loss) */
    uint64_t duplicated;   /* datagrams that got a second copy */
    uint64_t reordered;    /* copies held back by extra delay */
    uint64_t in_flight;    /* copies in the network right now, access-link queues included */
    uint64_t too_big;      /* larger than P2P_SIM_PATH_MTU: never sent (not in `sent`) */
    uint64_t nat_filtered; /* copies a NAT dropped on the way in (no matching flow) */
    /* issue 12 */
    uint64_t udp_blocked;      /* datagrams dropped by p2p_sim_block_udp (also in `lost`) */
    uint64_t stream_datagrams; /* datagrams carried by streams */
    uint64_t lan_datagrams;    /* LAN datagram copies delivered */
    uint64_t io_requests;      /* io requests served */
} p2p_sim_stats;
/* Fills *out with the counters so far. */
void p2p_sim_stats_get(const p2p_sim *s, p2p_sim_stats *out);

#endif
