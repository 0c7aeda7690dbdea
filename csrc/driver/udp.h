/*
 * driver/udp.h - the UDP driver: the only code in p2pnet that makes network system calls or
 * reads the clock. It owns one non-blocking socket and moves datagrams between it and a
 * p2p_host with recvmmsg/sendmmsg batches, using UDP segmentation offload (GSO on send, GRO
 * on receive) where the kernel has it; elsewhere one datagram per recvfrom/sendto call (other
 * POSIX systems; Windows through Winsock, driver/udp_win.c). docs/PORTING.md has the details.
 */
#ifndef P2P_UDP_H
#define P2P_UDP_H

#include <stddef.h>
#include <stdint.h>
#include "p2pnet.h"

typedef struct p2p_udp p2p_udp;

/* Monotonic time in microseconds (CLOCK_MONOTONIC). */
uint64_t p2p_udp_now(void);
/* Wall-clock time in microseconds since 1970 (CLOCK_REALTIME), for p2p_config.unix_us. */
uint64_t p2p_udp_unix_now(void);

/* Opens a non-blocking UDP socket bound to host:port. host is a numeric IPv4/IPv6 address,
 * "localhost", or NULL for "0.0.0.0"; "::" gives a dual-stack socket. port 0 picks a free
 * one. Returns 0, P2P_ERR_ADDRESS (host does not parse) or P2P_ERR_IO (bind failed, e.g. the
 * port is in use); err (errlen bytes) receives a readable reason. */
int p2p_udp_open(p2p_udp **out, const char *host, uint16_t port, char *err, size_t errlen);
/* Offload flags, as p2p_udp_set_offload returns them. */
#define P2P_UDP_GSO 1 /* runs of equal-size datagrams to one address go as one UDP_SEGMENT send */
#define P2P_UDP_GRO 2 /* the kernel may hand over several datagrams as one buffer (UDP_GRO) */

/* Features of this build of the driver (p2p_udp_features); the build-time probes in
 * mk/port.mk decide them. */
#define P2P_UDP_MMSG 4       /* datagrams move in batches (recvmmsg/sendmmsg) */
#define P2P_UDP_PMTU_PROBE 8 /* IP_MTU_DISCOVER in probe mode: DF set, the PMTU cache ignored */
#define P2P_UDP_DONTFRAG 16  /* IP_DONTFRAG (BSD, macOS) or IP_DONTFRAGMENT (Windows) */
#define P2P_UDP_EPOLL 32     /* p2p_udp_fd() is an epoll set of all the driver's sockets */
/* Returns the P2P_UDP_* flags compiled in: P2P_UDP_GSO / P2P_UDP_GRO when offload can be used
 * (a socket still needs the kernel's support, see p2p_udp_set_offload), and the others. */
int p2p_udp_features(void);

/* Turns segmentation offload on (1) or off (0), send and receive side separately; a socket
 * opens with both on where the kernel has them, unless the environment variable
 * P2P_UDP_OFFLOAD is "0". The host sees the same datagrams in the same order either way.
 * Returns the P2P_UDP_* flags now in effect (what was asked for and the kernel supports). GSO
 * also turns itself off when the kernel refuses a segmented send with EIO. Meant for right
 * after p2p_udp_open: buffers the kernel coalesced before GRO was turned off arrive cut short
 * and are dropped as oversized (the peer's reliable layer resends what they carried). */
int p2p_udp_set_offload(p2p_udp *u, int gso, int gro);
/* Closes the socket and frees the driver. NULL is allowed. */
void p2p_udp_close(p2p_udp *u);
/* The descriptor to watch for readability, for external event loops; owned by the driver.
 * On Linux an epoll descriptor holding all of the driver's sockets, elsewhere the UDP socket
 * (see "issue 12" below). */
int p2p_udp_fd(const p2p_udp *u);
/* The UDP socket itself (p2p_udp_fd() may be an epoll set holding it). */
int p2p_udp_socket(const p2p_udp *u);
/* The address actually bound. */
void p2p_udp_local(const p2p_udp *u, p2p_addr *out);
/* The local addresses peers may reach this socket at: the bound address when it is a
 * specific one (none when it is an IPv6 link-local one: its zone means nothing to other
 * nodes), else the address of every interface that is up (not loopback, not IPv6
 * link-local; IPv6 only on an IPv6 socket), each with the bound port. Writes up to cap into
 * out and returns how many it wrote. */
size_t p2p_udp_local_addrs(const p2p_udp *u, p2p_addr *out, size_t cap);

/* Resolves "host:port" / "[v6]:port" where host may also be "localhost" or a name
 * (getaddrinfo). The family is matched to the socket when possible: IPv4 results are
 * preferred, IPv6 ones are taken only on an IPv6 socket. u may be NULL (any family).
 * Returns 0 or P2P_ERR_ADDRESS (bad text, unknown name, or only IPv6 for an IPv4 socket). */
int p2p_udp_resolve(const p2p_udp *u, const char *text, p2p_addr *out);

/* One turn of the loop: waits up to timeout_us (0 = do not wait; it never waits past the
 * host's next timeout) for the socket to become readable (or writable while datagrams wait
 * in the driver), reads the datagrams that are waiting into the host (about 1024 per call at
 * most: with GRO the last buffer read may carry a few dozen more,
 * so a flood cannot starve timers; a signal ends the wait early), runs due timers, and sends
 * everything the host has to send. Returns the number of datagrams received, or
 * P2P_ERR_IO. */
int p2p_udp_pump(p2p_udp *u, p2p_host *h, uint64_t timeout_us);
/* Sends everything the host has to send now (after API calls such as send or connect).
 * When the socket buffer is full, up to one batch of datagrams waits inside the driver and
 * the rest stays in the host; the next pump or flush retries (pump then also waits for the
 * socket to become writable). Returns 0 or P2P_ERR_IO. */
int p2p_udp_flush(p2p_udp *u, p2p_host *h);
/* After p2p_host_close(): sends what the host still queued and waits, at most max_us, for the
 * requests it asked for at close to finish (a UPnP DeletePortMapping is an HTTP request to the
 * gateway). Returns 0 or P2P_ERR_IO. */
int p2p_udp_settle(p2p_udp *u, p2p_host *h, uint64_t max_us);

/* ---- issue 12: the io queue (design 12 section 1.2) ---------------------------------------
 *
 * Besides the node's UDP socket the driver holds, on demand: TCP and WebSocket streams
 * (P2P_IO_TCP_OPEN, and a TCP listener: p2p_udp_listen_tcp), one-shot HTTP requests
 * (P2P_IO_HTTP), up to 255 punch sockets (P2P_IO_PUNCH_OPEN), the LAN discovery socket
 * (P2P_IO_LAN_START) and a STUN responder socket (p2p_udp_stun_server). p2p_udp_pump and
 * p2p_udp_flush serve all of them: they drain p2p_host_next_io, p2p_host_next_lan and
 * p2p_host_next_datagram until all report nothing (the host's events are the caller's).
 *
 * On Linux p2p_udp_fd() is an epoll descriptor holding every one of these sockets, readable
 * when any of them is (POSIX poll/select and event loops can watch it like a socket). Without
 * epoll it is the UDP socket, and p2p_udp_next_timeout() is at most 20 ms away while another
 * socket is open, so a loop that watches only fd() still services them. On Windows streams,
 * punch sockets, the LAN socket, HTTP and the gateway answer P2P_ERR_IO (docs/PORTING.md). */

/* Defined when the driver has the io queue below (for bindings built against older ones). */
#define P2P_UDP_IO_QUEUE 1

/* Listens on TCP port (same bind address as the UDP socket; 0: the UDP socket's port) for
 * stream clients: raw "p2pt" framing or WebSocket on ws_path (NULL: "/p2pnet"). Caps: 256
 * streams, 8 per source IP (loopback sources excepted: a local reverse proxy carries many),
 * 10 s for a client to finish its preamble or upgrade. Returns 0, P2P_ERR_INVALID (already
 * listening, bad path) or P2P_ERR_IO (err says why). */
int p2p_udp_listen_tcp(p2p_udp *u, uint16_t port, const char *ws_path, char *err, size_t errlen);
/* The TCP port listened on, or 0. */
uint16_t p2p_udp_tcp_port(const p2p_udp *u);
/* Opens a STUN responder on UDP port (same bind address): Binding requests get the pure
 * p2p_stun_answer(), at most 1000 answers a second in all and 10 a second per source IP.
 * Returns 0, P2P_ERR_INVALID (already open) or P2P_ERR_IO. */
int p2p_udp_stun_server(p2p_udp *u, uint16_t port, char *err, size_t errlen);
/* The default IPv4 gateway (port 0) and this host's source address towards it (port: the UDP
 * socket's), from the routing table (/proc/net/route on Linux). Returns 0, or P2P_ERR_IO when
 * there is none or the system is not supported. */
int p2p_udp_gateway(const p2p_udp *u, p2p_addr *gw, p2p_addr *local);
/* When the driver next needs to run (a connect or HTTP timeout, the 60 s gateway check, the
 * 20 ms service tick without epoll), combined with the host's next timeout: what an event
 * loop should wait for instead of p2p_host_next_timeout(). */
uint64_t p2p_udp_next_timeout(const p2p_udp *u, const p2p_host *h);
/* Carries out one io request now (p2p_udp_pump/flush call it for every request the host
 * queues; tests may call it directly). The answer goes to p2p_host_io_done / stream_up /
 * stream_down as the request kind says. */
void p2p_udp_io(p2p_udp *u, p2p_host *h, const p2p_io *req);
/* Sends one datagram as the host would have: out of punch socket to->sock, over stream
 * to->family == P2P_AF_STREAM, or out of the UDP socket. Returns 0, P2P_ERR_PEER (no such
 * stream or socket), P2P_ERR_FULL (a stream's buffer is full: dropped) or P2P_ERR_IO. */
int p2p_udp_send(p2p_udp *u, const p2p_addr *to, const uint8_t *buf, size_t len);

/* Sends one datagram out of the LAN socket (what p2p_host_next_lan hands the driver): to a
 * multicast group once per interface, to 255.255.255.255 to each interface's directed
 * broadcast, else as addressed; to->sock > 0 picks that interface only (1-based, in the
 * order LAN_START counted them, IPv4 and IPv6 interfaces counted apart). IPv6 (the group
 * ff02::7032:706e, or a link-local address with its zone) goes out of the IPv6 LAN socket,
 * which only a node bound to an IPv6 address has (LAN_START opens it; hop limit 1); without
 * it nothing is sent. Returns the number of datagrams sent. */
int p2p_udp_lan_send(p2p_udp *u, const p2p_addr *to, const uint8_t *buf, size_t len);

/* Test hooks: they see what the driver hands the host. */
typedef struct p2p_udp_hooks {
    void *ud;
    void (*io_done)(void *ud, const p2p_io_result *r);
    void (*stream)(void *ud, uint32_t sid, int up, int inbound, const p2p_addr *peer);
    void (*recv)(void *ud, const p2p_addr *from, const uint8_t *buf, size_t len, int lan);
} p2p_udp_hooks;
void p2p_udp_set_hooks(p2p_udp *u, const p2p_udp_hooks *hooks);

typedef struct p2p_udp_stats {
    uint64_t sent, received; /* datagrams handed to / taken from the kernel */
    uint64_t send_errors;    /* datagrams dropped on a per-datagram error (unreachable,
                              * refused, no route, wrong family for the socket) */
    uint64_t recv_errors;    /* errors reported by recvmmsg (e.g. ICMP refused), skipped */
    uint64_t oversized;      /* received datagrams over P2P_MAX_PACKET (the host drops them) */
    uint64_t blocked;        /* times the socket buffer was full */
    uint64_t pending;        /* datagrams waiting in the driver right now */
    uint64_t gso_sends;      /* sends that carried several datagrams (UDP_SEGMENT) */
    uint64_t gso_failures;   /* segmented sends refused with EIO: GSO is off since */
    uint64_t gro_receives;   /* received buffers that held several datagrams (UDP_GRO) */
    /* issue 12 */
    uint64_t streams;                           /* streams open now (both ways) */
    uint64_t streams_accepted, streams_refused; /* inbound: taken, refused (caps, host) */
    uint64_t streams_up;             /* streams that opened (handshake done) and the host took */
    uint64_t stream_dropped;         /* datagrams dropped: a stream's output buffer was full */
    uint64_t punch_sockets;          /* punch sockets open now */
    uint64_t lan_sent, lan_received; /* datagrams on the LAN socket */
    uint64_t stun_answered, stun_limited; /* STUN responder: answers, requests over the rate */
    uint64_t http_requests;               /* one-shot HTTP requests carried out */
    uint64_t gateway_changes;             /* network changes reported to the host */
} p2p_udp_stats;
/* Fills *out with the driver's counters. */
void p2p_udp_stats_get(const p2p_udp *u, p2p_udp_stats *out);

#endif
