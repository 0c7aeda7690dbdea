/*
 * driver/udp_sys.h - what the UDP driver (udp.c) needs from the operating system, and which
 * optional features it may use. Internal to the driver.
 *
 * The features come from $(BUILD)/config.h when make probed them (mk/port.mk defines
 * P2P_HAVE_CONFIG_H), else from the defaults below, which hold for the build without make
 * (the rockspec): Linux gets the batched system calls and segmentation offload, every other
 * system the plain POSIX path, and socket options are used when their macros exist.
 *
 * POSIX systems get their system calls straight from the C library (udp.c); Windows gets them
 * through the functions declared at the end, which udp_win.c implements with Winsock 2.
 */
#ifndef P2P_UDP_SYS_H
#define P2P_UDP_SYS_H

#ifdef P2P_HAVE_CONFIG_H
#include "config.h"
#endif

#ifdef _WIN32
/* ---- Windows (Vista or later: WSAPoll, inet_pton) ----------------------------------------- */
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0601
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#include <errno.h>
#include <stdint.h>

#include "p2pnet.h"

typedef SOCKET p2p_sock;
typedef ADDRESS_FAMILY p2p_sa_family;
#define P2P_SOCK_INVALID INVALID_SOCKET

/* Nothing Linux-only exists there. */
#undef HAVE_RECVMMSG
#undef HAVE_SENDMMSG
#undef HAVE_PPOLL
#undef HAVE_SOCK_NONBLOCK
#undef HAVE_UDP_SEGMENT
#undef HAVE_UDP_GRO
#undef HAVE_IP_MTU_DISCOVER
#undef HAVE_IP_DONTFRAG
#undef HAVE_GETIFADDRS
#undef HAVE_EPOLL
#define HAVE_EPOLL 0
#define HAVE_RECVMMSG 0
#define HAVE_SENDMMSG 0
#define HAVE_PPOLL 0
#define HAVE_SOCK_NONBLOCK 0
#define HAVE_UDP_SEGMENT 0
#define HAVE_UDP_GRO 0
#define HAVE_IP_MTU_DISCOVER 0
/* IP_DONTFRAGMENT and IPV6_DONTFRAG are set by p2p_sys_socket. */
#define HAVE_IP_DONTFRAG 0
#define HAVE_GETIFADDRS 0

/* errno-style codes the driver tests; Winsock errors are mapped to these (p2p_sys_error). */
#ifndef EWOULDBLOCK
#define EWOULDBLOCK EAGAIN
#endif

/* Starts Winsock once per process (WSAStartup). Returns 0 or -1 with a reason in err. */
int p2p_sys_init(char *err, size_t errlen);
/* A non-blocking, non-inherited UDP socket of the family, with ICMP "port unreachable" and
 * "TTL expired" no longer reported as errors on later receives (SIO_UDP_CONNRESET,
 * SIO_UDP_NETRESET) and don't-fragment on. P2P_SOCK_INVALID on failure (p2p_sys_error). */
p2p_sock p2p_sys_socket(int family);
void p2p_sys_close(p2p_sock s);
/* The last socket error as an errno value (EAGAIN, EINTR, EMSGSIZE, ECONNRESET, ...). */
int p2p_sys_error(void);
/* A readable text for an errno value or a Winsock error. */
const char *p2p_sys_strerror(int e);
long p2p_sys_sendto(p2p_sock s, const void *buf, size_t len, const void *sa, int salen);
/* Like recvfrom; a datagram longer than len comes back cut to len (WSAEMSGSIZE), as on
 * POSIX. */
long p2p_sys_recvfrom(p2p_sock s, void *buf, size_t len, void *sa, int *salen);
/* Waits up to wait_us (rounded up to whole milliseconds; UINT64_MAX forever) until s is
 * readable, or writable when want_write. Returns >= 0, or -1 on failure. */
int p2p_sys_wait(p2p_sock s, int want_write, uint64_t wait_us);
/* The addresses of the interfaces that are up (not loopback), IPv4 and when v6 also IPv6
 * (no link-local), each with port; up to cap of them. */
size_t p2p_sys_local_addrs(int v6, uint16_t port, p2p_addr *out, size_t cap);

#else
/* ---- POSIX -------------------------------------------------------------------------------- */
#include <sys/socket.h>
#include <sys/types.h>

typedef int p2p_sock;
typedef sa_family_t p2p_sa_family;
#define P2P_SOCK_INVALID (-1)

/* Defaults when no probe ran. */
#ifndef HAVE_RECVMMSG
#ifdef __linux__
#define HAVE_RECVMMSG 1
#else
#define HAVE_RECVMMSG 0
#endif
#endif
#ifndef HAVE_SENDMMSG
#ifdef __linux__
#define HAVE_SENDMMSG 1
#else
#define HAVE_SENDMMSG 0
#endif
#endif
#ifndef HAVE_PPOLL
#ifdef __linux__
#define HAVE_PPOLL 1
#else
#define HAVE_PPOLL 0
#endif
#endif
#ifndef HAVE_SOCK_NONBLOCK
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
#define HAVE_SOCK_NONBLOCK 1
#else
#define HAVE_SOCK_NONBLOCK 0
#endif
#endif
#ifndef HAVE_GETIFADDRS
#define HAVE_GETIFADDRS 1 /* Linux, the BSDs, macOS, illumos */
#endif
/* issue 12: node:fd() is an epoll set of all the driver's sockets (Linux). */
#ifndef HAVE_EPOLL
#ifdef __linux__
#define HAVE_EPOLL 1
#else
#define HAVE_EPOLL 0
#endif
#endif
/* The socket options are macros: their headers (netinet/in.h, netinet/udp.h) decide. */
#ifndef HAVE_UDP_SEGMENT
#define HAVE_UDP_SEGMENT (-1)
#endif
#ifndef HAVE_UDP_GRO
#define HAVE_UDP_GRO (-1)
#endif
#ifndef HAVE_IP_MTU_DISCOVER
#define HAVE_IP_MTU_DISCOVER (-1)
#endif
#ifndef HAVE_IP_DONTFRAG
#define HAVE_IP_DONTFRAG (-1)
#endif

#endif /* _WIN32 */
#endif
