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
/* The socket's descriptor, for external event loops; owned by the driver. */
int p2p_udp_fd(const p2p_udp *u);
/* The address actually bound. */
void p2p_udp_local(const p2p_udp *u, p2p_addr *out);
/* The local addresses peers may reach this socket at: the bound address when it is a
 * specific one, else the address of every interface that is up (not loopback, not IPv6
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
} p2p_udp_stats;
/* Fills *out with the driver's counters. */
void p2p_udp_stats_get(const p2p_udp *u, p2p_udp_stats *out);

#endif
