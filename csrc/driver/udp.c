/*
 * driver/udp.c - the UDP driver: the only file in p2pnet that makes network system calls or
 * reads the clock (with driver/udp_win.c, its Winsock calls, on Windows).
 *
 * One non-blocking socket. Datagrams move in batches (recvmmsg/sendmmsg) between the socket
 * and a sans-IO p2p_host. An IPv6 socket is dual-stack: IPv4 peers appear to the host as
 * P2P_AF_INET4 and are mapped to ::ffff:a.b.c.d on the way out, so the host never sees a
 * v4-mapped address.
 *
 * Back-pressure: when the kernel's send buffer is full, the datagrams already taken from the
 * host wait in `out` (one batch at most) and the host keeps everything else. Nothing the host
 * handed over is dropped for lack of buffer space.
 *
 * Segmentation offload, where the kernel has it (Linux 4.18+ for UDP_SEGMENT, 5.0+ for
 * UDP_GRO): a run of queued datagrams to one destination, all of one length (the last may be
 * shorter), goes to the kernel as one sendmmsg entry with a UDP_SEGMENT control message, so it
 * crosses the stack as one buffer and the kernel (or the NIC) cuts it into the same datagrams.
 * On receive, UDP_GRO lets the kernel hand over several datagrams of one sender as one buffer,
 * cut up again here by the gso_size it reports. Either way the host sees exactly the datagrams,
 * in exactly the order, it would see without offload. Support is checked when the socket
 * opens; a send the kernel refuses as a whole is retried one datagram at a time (so a datagram
 * too big for the path still fails alone, as it would without offload), and EIO, which means
 * the device or the path cannot segment, turns GSO off for the socket.
 */
/*
 * Portability (docs/PORTING.md): every optional feature is a HAVE_* switch from
 * driver/udp_sys.h, probed at build time by mk/port.mk. Without recvmmsg/sendmmsg the driver
 * moves one datagram per recvfrom/sendto call and has no offload; without IP_MTU_DISCOVER it
 * sets IP_DONTFRAG where that exists (the BSDs, macOS), else nothing (the kernel may then
 * fragment an oversized probe instead of refusing it, and PMTU discovery learns less);
 * without ppoll it waits with poll. Windows (udp_win.c) takes the same plain path through
 * Winsock.
 */
#define _GNU_SOURCE /* recvmmsg, sendmmsg, ppoll */

#include "driver/udp_sys.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#if HAVE_GETIFADDRS
#include <ifaddrs.h>
#include <net/if.h>
#endif
#include <dirent.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#if HAVE_EPOLL
#include <sys/epoll.h>
#endif
#endif
#include <sodium.h>

#include "driver/udp.h"
#include "driver/stream.h"
#include "p2p_stun.h"

/* Socket options known to this system's headers, unless the probe said otherwise. */
#if HAVE_UDP_SEGMENT < 0
#undef HAVE_UDP_SEGMENT
#ifdef UDP_SEGMENT
#define HAVE_UDP_SEGMENT 1
#else
#define HAVE_UDP_SEGMENT 0
#endif
#endif
#if HAVE_UDP_GRO < 0
#undef HAVE_UDP_GRO
#ifdef UDP_GRO
#define HAVE_UDP_GRO 1
#else
#define HAVE_UDP_GRO 0
#endif
#endif
#if HAVE_IP_MTU_DISCOVER < 0
#undef HAVE_IP_MTU_DISCOVER
#if defined(IP_MTU_DISCOVER) && defined(IP_PMTUDISC_PROBE)
#define HAVE_IP_MTU_DISCOVER 1
#else
#define HAVE_IP_MTU_DISCOVER 0
#endif
#endif
#if HAVE_IP_DONTFRAG < 0
#undef HAVE_IP_DONTFRAG
#ifdef IP_DONTFRAG
#define HAVE_IP_DONTFRAG 1
#else
#define HAVE_IP_DONTFRAG 0
#endif
#endif
/* Offload needs the batched calls: a segmented send is one sendmmsg entry, a coalesced
 * receive one recvmmsg entry. */
#define USE_GSO (HAVE_SENDMMSG && HAVE_UDP_SEGMENT)
#define USE_GRO (HAVE_RECVMMSG && HAVE_UDP_GRO)
#if !defined(_WIN32) && HAVE_EPOLL
#define USE_EPOLL 1
#else
#define USE_EPOLL 0
#endif
#ifdef _WIN32
#define HAS_DONTFRAG 1 /* IP_DONTFRAGMENT, set by p2p_sys_socket */
#else
#define HAS_DONTFRAG HAVE_IP_DONTFRAG
#endif

#ifdef _WIN32
#define sock_error() p2p_sys_error()
#define sock_strerror(e) p2p_sys_strerror(e)
#define sock_close(s) p2p_sys_close(s)
#else
#define sock_error() errno
#define sock_strerror(e) strerror(e)
#define sock_close(s) close(s)
#endif

#define BATCH 32
/* Larger than any valid datagram, so an oversized one arrives whole (or flagged truncated)
 * and the host can see it is too long and drop it. */
#define RECV_BUF (P2P_MAX_PACKET_PROBED + 256)
/* Bound on datagrams read per pump, so a flood cannot starve timers and sends. */
#define MAX_RECV_DGRAMS 1024
#define SOCKET_BUFFER (4 * 1024 * 1024)

#ifndef SOL_UDP
#define SOL_UDP IPPROTO_UDP
#endif
/* The most datagrams one UDP_SEGMENT send may carry (UDP_MAX_SEGMENTS; newer kernels allow
 * more, none fewer). */
#define GSO_MAX_SEGMENTS 64
/* The most bytes of payload one UDP_SEGMENT send may carry: an IPv4 packet's 65535 bytes less
 * its 20-byte header and the 8-byte UDP header (IPv6 allows more; one bound for both). */
#define GSO_MAX_BYTES (65535 - 20 - 8)
/* A coalesced (GRO) buffer holds at most one IP packet's worth of payload. */
#define GRO_BUF 65536
/* Buffers per recvmmsg while GRO is on; each may hold many datagrams. */
#define GRO_BATCH 16
/* One receive area serves both layouts: BATCH buffers of RECV_BUF, or GRO_BATCH of GRO_BUF. */
#define IN_ARENA (GRO_BATCH * GRO_BUF > BATCH * RECV_BUF ? GRO_BATCH * GRO_BUF : BATCH * RECV_BUF)
/* Set to "0" in the environment, P2P_UDP_OFFLOAD turns GSO and GRO off for sockets opened
 * afterwards (to compare, or to work around a broken driver). */
#define OFFLOAD_ENV "P2P_UDP_OFFLOAD"

#if HAVE_SENDMMSG || HAVE_RECVMMSG
/* Room for one control message carrying an int (UDP_GRO) or a uint16 (UDP_SEGMENT). */
union ctrl {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
};
#endif

struct out_dgram {
    struct sockaddr_storage sa;
    socklen_t salen;
    size_t len;
    uint8_t buf[P2P_MAX_PACKET_PROBED];
};

struct p2p_udp_extra;

struct p2p_udp {
    p2p_sock fd;
    struct p2p_udp_extra *x; /* issue 12: the io queue's sockets */
    int family;              /* AF_INET or AF_INET6 */
    p2p_addr local;
    p2p_udp_stats stats;
    int gso; /* 1 while runs of datagrams go out as one UDP_SEGMENT send */
    int gro; /* 1 while UDP_GRO is on: a received buffer may hold several datagrams */

    struct out_dgram out[BATCH];
    size_t out_n;
#if HAVE_SENDMMSG
    struct mmsghdr out_msg[BATCH];
    struct iovec out_iov[BATCH]; /* out_iov[i] is out[i]: a run's entries are adjacent */
    union ctrl out_ctrl[BATCH];  /* the UDP_SEGMENT message of out_msg[i] */
    size_t out_count[BATCH];     /* datagrams carried by out_msg[i] */
#endif

    uint8_t in_arena[IN_ARENA];
    struct sockaddr_storage in_sa[BATCH];
#if HAVE_RECVMMSG
    struct mmsghdr in_msg[BATCH];
    struct iovec in_iov[BATCH];
    union ctrl in_ctrl[BATCH];
#endif
};

static struct p2p_udp_extra *extra_new(void);
static int extra_fd(const p2p_udp *u);
static int extra_init(p2p_udp *u);
static void extra_free(p2p_udp *u);
#ifndef _WIN32
static int extra_open(const p2p_udp *u);
#endif
static uint64_t extra_deadline(const p2p_udp *u);
static void extra_service(p2p_udp *u, p2p_host *h, int waited);
static void extra_write(p2p_udp *u);
static int drain_io(p2p_udp *u, p2p_host *h);

int p2p_udp_features(void)
{
    return (USE_GSO ? P2P_UDP_GSO : 0) | (USE_GRO ? P2P_UDP_GRO : 0) |
           (HAVE_SENDMMSG && HAVE_RECVMMSG ? P2P_UDP_MMSG : 0) |
           (HAVE_IP_MTU_DISCOVER ? P2P_UDP_PMTU_PROBE : 0) | (HAS_DONTFRAG ? P2P_UDP_DONTFRAG : 0) |
           (USE_EPOLL ? P2P_UDP_EPOLL : 0);
}

#ifdef _WIN32
uint64_t p2p_udp_now(void)
{
    static LARGE_INTEGER freq; /* fixed at boot; a racing first call writes the same value */
    LARGE_INTEGER c;
    uint64_t sec, rem;

    if (freq.QuadPart == 0) QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&c);
    sec = (uint64_t)c.QuadPart / (uint64_t)freq.QuadPart;
    rem = (uint64_t)c.QuadPart % (uint64_t)freq.QuadPart;
    return sec * 1000000u + rem * 1000000u / (uint64_t)freq.QuadPart;
}

uint64_t p2p_udp_unix_now(void)
{
    FILETIME ft;
    uint64_t t;

    GetSystemTimeAsFileTime(&ft); /* 100 ns units since 1601 */
    t = ((uint64_t)ft.dwHighDateTime << 32) | ft.dwLowDateTime;
    return t / 10u - 11644473600000000ull;
}
#else
uint64_t p2p_udp_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t p2p_udp_unix_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
#endif

/* ---- address conversion --------------------------------------------------------------- */

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Returns 0, or -1 for a family p2p_addr cannot hold. The copies keep alignment right
 * whatever buffer the kernel or getaddrinfo filled. */
static int addr_from_sockaddr(p2p_addr *out, const void *sa)
{
    p2p_sa_family family;
    struct sockaddr_in s4;
    struct sockaddr_in6 s6;
    const uint8_t *ip;

    memcpy(&family, (const uint8_t *)sa + offsetof(struct sockaddr, sa_family), sizeof family);
    memset(out, 0, sizeof *out);
    if (family == AF_INET) {
        memcpy(&s4, sa, sizeof s4);
        out->family = P2P_AF_INET4;
        memcpy(out->ip, &s4.sin_addr, 4);
        out->port = ntohs(s4.sin_port);
        return 0;
    }
    if (family == AF_INET6) {
        memcpy(&s6, sa, sizeof s6);
        ip = (const uint8_t *)&s6.sin6_addr;
        if (memcmp(ip, v4_mapped_prefix, sizeof v4_mapped_prefix) == 0) {
            out->family = P2P_AF_INET4;
            memcpy(out->ip, ip + 12, 4);
        } else {
            out->family = P2P_AF_INET6;
            memcpy(out->ip, ip, 16);
            /* a link-local source: the interface it is on (the kernel sets it) */
            if (ip[0] == 0xfe && (ip[1] & 0xc0) == 0x80) out->zone = (uint32_t)s6.sin6_scope_id;
        }
        out->port = ntohs(s6.sin6_port);
        return 0;
    }
    return -1;
}

/* The destination as the socket's family needs it. Returns its length, or 0 when a socket
 * of that family cannot reach it (IPv6 from an IPv4 socket). */
static socklen_t addr_to_sockaddr(int family, const p2p_addr *a, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        if (a->family != P2P_AF_INET4) return 0;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, a->ip, 4);
        s4->sin_port = htons(a->port);
        return sizeof *s4;
    }
    if (family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        uint8_t *ip = (uint8_t *)&s6->sin6_addr;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(a->port);
        if (a->family == P2P_AF_INET4) {
            memcpy(ip, v4_mapped_prefix, sizeof v4_mapped_prefix);
            memcpy(ip + 12, a->ip, 4);
        } else if (a->family == P2P_AF_INET6) {
            memcpy(ip, a->ip, 16);
            s6->sin6_scope_id = a->zone; /* link-local: out of that interface */
        } else {
            return 0;
        }
        return sizeof *s6;
    }
    return 0;
}

/* ---- open / close --------------------------------------------------------------------- */

#ifdef __GNUC__
static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#endif

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0) return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The longest bind host accepted: more than any numeric address (an IPv6 one is at most 45). */
#define BIND_HOST_MAX 60

/* The bind address: numeric IPv4, numeric IPv6 (brackets optional), "localhost" or NULL.
 * Goes through p2p_addr_parse so bind addresses are exactly as strict as peer addresses. */
static int parse_bind_host(const char *host, uint16_t port, p2p_addr *out)
{
    char text[BIND_HOST_MAX + sizeof "[]:0"];
    size_t n;
    int r;

    if (host == NULL || host[0] == '\0')
        host = "0.0.0.0";
    else if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    n = strlen(host);
    if (n > BIND_HOST_MAX) return P2P_ERR_ADDRESS;
    if (host[0] == '[')
        snprintf(text, sizeof text, "%s:0", host);
    else if (strchr(host, ':') != NULL)
        snprintf(text, sizeof text, "[%s]:0", host);
    else
        snprintf(text, sizeof text, "%s:0", host);
    r = p2p_addr_parse(out, text);
    if (r != 0) return P2P_ERR_ADDRESS;
    out->port = port;
    return 0;
}

/* A non-blocking socket that is not inherited by child processes. */
static p2p_sock open_socket(int family)
{
#ifdef _WIN32
    return p2p_sys_socket(family);
#elif HAVE_SOCK_NONBLOCK
    return socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
#else
    int fd = socket(family, SOCK_DGRAM, IPPROTO_UDP), fl, e;

    if (fd < 0) return fd;
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
#endif
}

/* Never let IP fragment our datagrams: path MTU discovery probes larger sizes itself, and a
 * probe that does not fit must fail (locally with EMSGSIZE, or by loss on the way). Linux:
 * IP_MTU_DISCOVER in probe mode (DF set, the cached path MTU not applied); the BSDs and
 * macOS: IP_DONTFRAG; IPv6 never fragments in transit, and IPV6_DONTFRAG stops the local
 * stack from doing it. Where none exists the system's default applies. Best effort. */
static void set_dont_fragment(p2p_sock fd, int family)
{
    int on = 1;

    (void)fd;
    (void)family;
    (void)on;
#if HAVE_IP_MTU_DISCOVER
    {
        int probe = IP_PMTUDISC_PROBE;
        (void)setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &probe, sizeof probe);
#if defined(IPV6_MTU_DISCOVER) && defined(IPV6_PMTUDISC_PROBE)
        if (family == AF_INET6) {
            int probe6 = IPV6_PMTUDISC_PROBE;
            (void)setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &probe6, sizeof probe6);
        }
#endif
    }
#elif HAVE_IP_DONTFRAG
    /* On a dual-stack socket the IPv4 option may be refused: the IPv6 one below covers it
     * where the system applies it to mapped traffic. */
    (void)setsockopt(fd, IPPROTO_IP, IP_DONTFRAG, &on, sizeof on);
#endif
#if defined(IPV6_DONTFRAG) && !defined(_WIN32)
    if (family == AF_INET6) (void)setsockopt(fd, IPPROTO_IPV6, IPV6_DONTFRAG, &on, sizeof on);
#endif
}

int p2p_udp_open(p2p_udp **out, const char *host, uint16_t port, char *err, size_t errlen)
{
    p2p_udp *u;
    p2p_addr bind_addr;
    struct sockaddr_storage ss;
    socklen_t sslen;
    char where[P2P_ADDR_TEXT_MAX];
    int family, off = 0, size = SOCKET_BUFFER, e;

    *out = NULL;
    if (err != NULL && errlen > 0) err[0] = '\0';
#ifdef _WIN32
    if (p2p_sys_init(err, errlen) != 0) return P2P_ERR_IO;
#endif
    if (parse_bind_host(host, port, &bind_addr) != 0) {
        set_err(err, errlen, "bad bind address \"%s\"", host);
        return P2P_ERR_ADDRESS;
    }
    family = bind_addr.family == P2P_AF_INET4 ? AF_INET : AF_INET6;
    u = calloc(1, sizeof *u);
    if (u == NULL) {
        set_err(err, errlen, "%s", p2p_strerror(P2P_ERR_NOMEM));
        return P2P_ERR_NOMEM;
    }
    u->family = family;
    u->fd = open_socket(family);
    if (u->fd == P2P_SOCK_INVALID) {
        e = sock_error();
        set_err(err, errlen, "socket: %s", sock_strerror(e));
        free(u);
        return P2P_ERR_IO;
    }
    /* "::" must also take IPv4 peers, whatever the system default for V6ONLY is. */
    if (family == AF_INET6)
        (void)setsockopt(u->fd, IPPROTO_IPV6, IPV6_V6ONLY, (const void *)&off, sizeof off);
    /* Best effort: the kernel caps these at net.core.[rw]mem_max. Large buffers absorb
     * bursts between two pumps. */
    (void)setsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, (const void *)&size, sizeof size);
    (void)setsockopt(u->fd, SOL_SOCKET, SO_SNDBUF, (const void *)&size, sizeof size);
    set_dont_fragment(u->fd, family);

    sslen = addr_to_sockaddr(family, &bind_addr, &ss);
    if (bind(u->fd, (struct sockaddr *)&ss, sslen) != 0) {
        e = sock_error();
        p2p_addr_format(&bind_addr, where, sizeof where);
        set_err(err, errlen, "bind %s: %s", where, sock_strerror(e));
        sock_close(u->fd);
        free(u);
        return P2P_ERR_IO;
    }
    {
        const char *env = getenv(OFFLOAD_ENV);
        if (env == NULL || strcmp(env, "0") != 0) (void)p2p_udp_set_offload(u, 1, 1);
    }
    sslen = sizeof ss;
    if (getsockname(u->fd, (struct sockaddr *)&ss, &sslen) != 0 ||
        addr_from_sockaddr(&u->local, &ss) != 0) {
        e = sock_error();
        set_err(err, errlen, "getsockname: %s", sock_strerror(e));
        sock_close(u->fd);
        free(u);
        return P2P_ERR_IO;
    }
    u->x = extra_new();
    if (u->x == NULL || extra_init(u) != 0) {
        set_err(err, errlen, "epoll: %s", sock_strerror(sock_error()));
        p2p_udp_close(u);
        return P2P_ERR_IO;
    }
    *out = u;
    return 0;
}

int p2p_udp_set_offload(p2p_udp *u, int gso, int gro)
{
#if USE_GSO
    {
        int v = 0;
        socklen_t vlen = sizeof v;

        /* A kernel without UDP_SEGMENT does not know the option at all (ENOPROTOOPT). */
        u->gso = gso && getsockopt(u->fd, SOL_UDP, UDP_SEGMENT, &v, &vlen) == 0;
    }
#else
    (void)gso;
    u->gso = 0;
#endif
#if USE_GRO
    {
        int v = gro != 0;

        if (setsockopt(u->fd, SOL_UDP, UDP_GRO, &v, sizeof v) == 0)
            u->gro = v;
        else
            u->gro = 0; /* unknown to this kernel: it never coalesces for us */
    }
#else
    (void)gro;
    u->gro = 0;
#endif
    return (u->gso ? P2P_UDP_GSO : 0) | (u->gro ? P2P_UDP_GRO : 0);
}

void p2p_udp_close(p2p_udp *u)
{
    if (u == NULL) return;
    if (u->x != NULL) {
        extra_free(u);
        free(u->x);
    }
    sock_close(u->fd);
    free(u);
}

int p2p_udp_fd(const p2p_udp *u)
{
    if (extra_fd(u) >= 0) return extra_fd(u);
    /* A Winsock SOCKET is a handle, and handles fit in 32 bits (Windows keeps them so for
     * 32-bit interoperation). */
    return (int)u->fd;
}

int p2p_udp_socket(const p2p_udp *u)
{
    return (int)u->fd;
}

void p2p_udp_local(const p2p_udp *u, p2p_addr *out)
{
    *out = u->local;
}

size_t p2p_udp_local_addrs(const p2p_udp *u, p2p_addr *out, size_t cap)
{
    static const uint8_t zero[16];
    const p2p_addr *b = &u->local;
    if (cap == 0) return 0;
    if (memcmp(b->ip, zero, b->family == P2P_AF_INET4 ? 4 : 16) != 0) {
        /* bound to one address: that is the only one, unless it is link-local: its zone
         * means nothing to other nodes, so it is no candidate (the LAN still finds it) */
        if (b->zone != 0) return 0;
        out[0] = *b;
        return 1;
    }
#ifdef _WIN32
    return p2p_sys_local_addrs(b->family == P2P_AF_INET6, b->port, out, cap);
#elif !HAVE_GETIFADDRS
    return 0;
#else
    struct ifaddrs *list = NULL, *i;
    size_t n = 0;
    if (getifaddrs(&list) != 0) return 0;
    for (i = list; i != NULL && n < cap; i = i->ifa_next) {
        p2p_addr a;
        memset(&a, 0, sizeof a);
        if (i->ifa_addr == NULL || !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
            continue;
        if (i->ifa_addr->sa_family == AF_INET) {
            const struct sockaddr_in *v4 = (const struct sockaddr_in *)(const void *)i->ifa_addr;
            a.family = P2P_AF_INET4;
            memcpy(a.ip, &v4->sin_addr, 4);
        } else if (i->ifa_addr->sa_family == AF_INET6 && b->family == P2P_AF_INET6) {
            const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)(const void *)i->ifa_addr;
            /* Link-local addresses need a scope that a candidate cannot carry. */
            if (v6->sin6_addr.s6_addr[0] == 0xfe && (v6->sin6_addr.s6_addr[1] & 0xc0) == 0x80)
                continue;
            a.family = P2P_AF_INET6;
            memcpy(a.ip, &v6->sin6_addr, 16);
        } else {
            continue;
        }
        a.port = b->port;
        out[n++] = a;
    }
    freeifaddrs(list);
    return n;
#endif
}

void p2p_udp_stats_get(const p2p_udp *u, p2p_udp_stats *out)
{
    *out = u->stats;
    out->pending = u->out_n;
}

/* ---- resolve -------------------------------------------------------------------------- */

int p2p_udp_resolve(const p2p_udp *u, const char *text, p2p_addr *out)
{
    char host[256], serv[8];
    const char *colon, *label;
    struct addrinfo hints, *res, *ai, *pick4 = NULL, *pick6 = NULL;
    p2p_addr a;
    uint16_t port;
    size_t n;
    int v6_ok = u == NULL || u->family == AF_INET6;

    if (text == NULL) return P2P_ERR_ADDRESS;
#ifdef _WIN32
    if (p2p_sys_init(NULL, 0) != 0) return P2P_ERR_ADDRESS; /* getaddrinfo needs Winsock */
#endif
    if (p2p_addr_parse(&a, text) == 0) {
        if (a.family == P2P_AF_INET6 && !v6_ok) return P2P_ERR_ADDRESS;
        *out = a;
        return 0;
    }
    /* Bracketed text can only be a numeric IPv6 address, and that already failed. */
    if (text[0] == '[') return P2P_ERR_ADDRESS;
    colon = strrchr(text, ':');
    if (colon == NULL || colon == text) return P2P_ERR_ADDRESS;
    n = (size_t)(colon - text);
    if (n >= sizeof host || p2p_addr_parse_port(colon + 1, &port) != 0) return P2P_ERR_ADDRESS;
    memcpy(host, text, n);
    host[n] = '\0';
    if (strchr(host, ':') != NULL)
        return P2P_ERR_ADDRESS; /* an unbracketed IPv6 address: the port is ambiguous */
    /* A name's last label is never numeric. Without this check getaddrinfo would accept the
     * loose inet_aton forms ("127.1", "0x7f.0.0.1", octal "010.0.0.1") that
     * p2p_addr_parse refused on purpose. */
    label = strrchr(host, '.');
    label = label != NULL ? label + 1 : host;
    if (label[0] >= '0' && label[0] <= '9') return P2P_ERR_ADDRESS;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(serv, sizeof serv, "%u", (unsigned)port);
    if (getaddrinfo(host, serv, &hints, &res) != 0) return P2P_ERR_ADDRESS;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET && pick4 == NULL)
            pick4 = ai;
        else if (ai->ai_family == AF_INET6 && pick6 == NULL)
            pick6 = ai;
    }
    /* IPv4 first even on a dual-stack socket: the default bind address is IPv4-only, so a
     * name with both kinds of address is more often reachable over IPv4. */
    ai = pick4 != NULL ? pick4 : (v6_ok ? pick6 : NULL);
    if (ai == NULL || addr_from_sockaddr(&a, ai->ai_addr) != 0) {
        freeaddrinfo(res);
        return P2P_ERR_ADDRESS;
    }
    freeaddrinfo(res);
    *out = a;
    return 0;
}

/* ---- sending -------------------------------------------------------------------------- */

/* Errors that concern the socket itself rather than one datagram. */
static int is_fatal_errno(int e)
{
    return e == EBADF || e == ENOTSOCK || e == EFAULT || e == EOPNOTSUPP;
}

/* What a failed send of the datagram at *off means: 1 when the socket buffer is full (stop;
 * the rest stays queued), P2P_ERR_IO when the socket is unusable, or 0 when the error is that
 * datagram's own (unreachable, refused, too big, no buffer): it is dropped and *off passes
 * it. */
static int send_failed(p2p_udp *u, int e, size_t *off)
{
    if (e == EAGAIN || e == EWOULDBLOCK) {
        u->stats.blocked++;
        return 1;
    }
    if (is_fatal_errno(e)) return P2P_ERR_IO;
    u->stats.send_errors++;
    (*off)++;
    return 0;
}

/* The first `off` queued datagrams are gone (sent or dropped). */
static void out_consumed(p2p_udp *u, size_t off)
{
    if (off == 0) return;
    memmove(&u->out[0], &u->out[off], (u->out_n - off) * sizeof u->out[0]);
    u->out_n -= off;
}

#if HAVE_SENDMMSG
/* How many queued datagrams from out[first] on can go as one UDP_SEGMENT send: same
 * destination and the same length, except that the last may be shorter, within the kernel's
 * limits on segments and bytes. 1 when GSO is off. */
static size_t gso_run(const p2p_udp *u, size_t first)
{
    const struct out_dgram *d0 = &u->out[first], *d;
    size_t n = 1, bytes = d0->len;

    if (!u->gso) return 1;
    while (first + n < u->out_n && n < GSO_MAX_SEGMENTS) {
        d = &u->out[first + n];
        if (d->len > d0->len || bytes + d->len > GSO_MAX_BYTES || d->salen != d0->salen ||
            memcmp(&d->sa, &d0->sa, d0->salen) != 0)
            break;
        bytes += d->len;
        n++;
        if (d->len < d0->len) break; /* only the last segment may be shorter */
    }
    return n;
}

/* Fills out_msg with the queued datagrams from out[off] on, a run per entry; the datagrams
 * before single_end go one per entry. Returns the number of entries. */
static unsigned build_sends(p2p_udp *u, size_t off, size_t single_end)
{
    size_t i = off, k, n;
    unsigned m = 0;
    struct msghdr *mh;
    struct cmsghdr *cm;
    uint16_t seg;

    while (i < u->out_n) {
        n = i < single_end ? 1 : gso_run(u, i);
        memset(&u->out_msg[m], 0, sizeof u->out_msg[m]);
        for (k = i; k < i + n; k++) {
            u->out_iov[k].iov_base = u->out[k].buf;
            u->out_iov[k].iov_len = u->out[k].len;
        }
        mh = &u->out_msg[m].msg_hdr;
        mh->msg_name = &u->out[i].sa;
        mh->msg_namelen = u->out[i].salen;
        mh->msg_iov = &u->out_iov[i];
        mh->msg_iovlen = n;
#if USE_GSO
        if (n > 1) {
            /* The kernel cuts the entry's bytes into segments of this size. */
            seg = (uint16_t)u->out[i].len;
            mh->msg_control = u->out_ctrl[m].buf;
            mh->msg_controllen = CMSG_SPACE(sizeof seg);
            cm = CMSG_FIRSTHDR(mh);
            cm->cmsg_level = SOL_UDP;
            cm->cmsg_type = UDP_SEGMENT;
            cm->cmsg_len = CMSG_LEN(sizeof seg);
            memcpy(CMSG_DATA(cm), &seg, sizeof seg);
        }
#else
        (void)cm;
        (void)seg;
#endif
        u->out_count[m] = n;
        m++;
        i += n;
    }
    return m;
}

/* Sends the queued datagrams. Returns 0 when all went out, 1 when the socket buffer is full
 * (the rest stays queued), or P2P_ERR_IO. */
static int send_queued(p2p_udp *u)
{
    size_t off = 0, single_end = 0;
    unsigned m;
    int i, r, e, ret = 0;

    while (off < u->out_n) {
        m = build_sends(u, off, single_end);
        r = sendmmsg(u->fd, u->out_msg, m, 0);
        if (r > 0) {
            for (i = 0; i < r; i++) {
                off += u->out_count[i];
                u->stats.sent += u->out_count[i];
                if (u->out_count[i] > 1) u->stats.gso_sends++;
            }
            continue;
        }
        e = r == 0 ? EAGAIN : errno;
        if (e == EINTR) continue;
        if (u->out_count[0] > 1 && e != EAGAIN && e != EWOULDBLOCK) {
            /* The kernel refused the run as a whole: send its datagrams one by one, so each
             * meets the fate it would meet without offload (a probe too big for the path
             * fails alone). EIO: the device or the path (e.g. IPsec) cannot segment at all. */
            if (e == EIO || e == EOPNOTSUPP || e == ENOPROTOOPT) {
                u->gso = 0;
                u->stats.gso_failures++;
            }
            single_end = off + u->out_count[0];
            continue;
        }
        /* sendmmsg reports a datagram's own error only when it is first in the batch. */
        if ((ret = send_failed(u, e, &off)) != 0) break;
    }
    out_consumed(u, off);
    return ret;
}
#else /* !HAVE_SENDMMSG */
/* The same, one sendto per datagram. */
static int send_queued(p2p_udp *u)
{
    size_t off = 0;
    const struct out_dgram *d;
    long r;
    int e, ret = 0;

    while (off < u->out_n) {
        d = &u->out[off];
#ifdef _WIN32
        r = p2p_sys_sendto(u->fd, d->buf, d->len, &d->sa, (int)d->salen);
#else
        r = (long)sendto(u->fd, d->buf, d->len, 0, (const struct sockaddr *)&d->sa, d->salen);
#endif
        if (r >= 0) {
            u->stats.sent++;
            off++;
            continue;
        }
        e = sock_error();
        if (e == EINTR) continue;
        if ((ret = send_failed(u, e, &off)) != 0) break;
    }
    out_consumed(u, off);
    return ret;
}
#endif /* HAVE_SENDMMSG */

/* Sends the host's datagrams: out of the UDP socket in batches, and one by one over streams
 * and punch sockets. */
static int flush_datagrams(p2p_udp *u, p2p_host *h)
{
    struct out_dgram *d;
    p2p_addr to;
    size_t len;
    int host_empty, r;

    for (;;) {
        host_empty = 0;
        while (u->out_n < BATCH) {
            d = &u->out[u->out_n];
            memset(&to, 0, sizeof to);
            len = p2p_host_next_datagram(h, &to, d->buf, sizeof d->buf);
            if (len == 0) {
                host_empty = 1;
                break;
            }
            if (to.family == P2P_AF_STREAM || to.sock != 0) {
                if (len <= sizeof d->buf) (void)p2p_udp_send(u, &to, d->buf, len);
                continue;
            }
            d->salen = addr_to_sockaddr(u->family, &to, &d->sa);
            if (len > sizeof d->buf || d->salen == 0) {
                u->stats.send_errors++;
                continue;
            }
            d->len = len;
            u->out_n++;
        }
        if (u->out_n == 0) return 0;
        r = send_queued(u);
        if (r < 0) return r;
        if (r == 1 || host_empty) return 0;
    }
}

int p2p_udp_flush(p2p_udp *u, p2p_host *h)
{
    int r, k;

    /* io requests and LAN datagrams first (their answers may queue datagrams), then the
     * datagrams, until the host has nothing more of either */
    for (k = 0; k < 64; k++) {
        int did = drain_io(u, h);
        r = flush_datagrams(u, h);
        if (r < 0) return r;
        if (!did) break;
    }
    extra_write(u);
    return 0;
}

/* ---- receiving ------------------------------------------------------------------------ */

#if USE_GRO
/* The segment size of a coalesced (GRO) buffer, or 0 when the buffer is one datagram. */
static size_t gro_size(const struct msghdr *mh)
{
    const struct cmsghdr *cm;
    int v;

    for (cm = CMSG_FIRSTHDR(mh); cm != NULL;
         cm = CMSG_NXTHDR((struct msghdr *)mh, (struct cmsghdr *)cm)) {
        if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
            memcpy(&v, CMSG_DATA(cm), sizeof v);
            return v > 0 ? (size_t)v : 0;
        }
    }
    return 0;
}
#endif

/* Passes one received buffer to the host: one datagram, or with seg > 0 the datagrams of a
 * coalesced buffer, seg bytes each (the last may be shorter), in the order they were sent.
 * Returns the number of datagrams. */
static int deliver(p2p_udp *u, p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len,
                   size_t seg, uint64_t now)
{
    size_t pos = 0, n;
    int count = 0;

    if (seg == 0 || seg > len) seg = len;
    do {
        n = len - pos < seg ? len - pos : seg;
        /* A truncated datagram is longer than RECV_BUF: passing its first RECV_BUF bytes
         * still shows the host it is oversized, so it is dropped and counted there. */
        if (n > P2P_MAX_PACKET_PROBED) u->stats.oversized++;
        u->stats.received++;
        count++;
        (void)p2p_host_recv(h, from, buf + pos, n, now);
        pos += n;
    } while (pos < len);
    if (count > 1) u->stats.gro_receives++;
    return count;
}

#if HAVE_RECVMMSG
/* Reads waiting datagrams into the host, about MAX_RECV_DGRAMS at most (a batch may go a
 * little past it). Returns how many it read, or P2P_ERR_IO. */
static int read_waiting(p2p_udp *u, p2p_host *h)
{
    int r, i, count = 0, want;
    size_t bufsize;
    p2p_addr from;
    uint64_t now;

    while (count < MAX_RECV_DGRAMS) {
        /* With GRO a buffer must take a whole coalesced run; without, a datagram. The
         * setting is read per batch: it may change between calls. */
        want = u->gro ? GRO_BATCH : BATCH;
        bufsize = u->gro ? GRO_BUF : RECV_BUF;
        for (i = 0; i < want; i++) {
            memset(&u->in_msg[i], 0, sizeof u->in_msg[i]);
            u->in_iov[i].iov_base = u->in_arena + (size_t)i * bufsize;
            u->in_iov[i].iov_len = bufsize;
            u->in_msg[i].msg_hdr.msg_name = &u->in_sa[i];
            u->in_msg[i].msg_hdr.msg_namelen = sizeof u->in_sa[i];
            u->in_msg[i].msg_hdr.msg_iov = &u->in_iov[i];
            u->in_msg[i].msg_hdr.msg_iovlen = 1;
#if USE_GRO
            if (u->gro) {
                u->in_msg[i].msg_hdr.msg_control = u->in_ctrl[i].buf;
                u->in_msg[i].msg_hdr.msg_controllen = sizeof u->in_ctrl[i].buf;
            }
#endif
        }
        r = recvmmsg(u->fd, u->in_msg, (unsigned)want, MSG_DONTWAIT, NULL);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (is_fatal_errno(errno) || errno == EINVAL || errno == ENOMEM) return P2P_ERR_IO;
            /* A pending socket error (an ICMP error for something we sent): reading it
             * cleared it, so go on. */
            u->stats.recv_errors++;
            continue;
        }
        now = p2p_udp_now();
        for (i = 0; i < r; i++) {
            if (addr_from_sockaddr(&from, &u->in_sa[i]) != 0) continue;
#if USE_GRO
            count += deliver(u, h, &from, u->in_iov[i].iov_base, u->in_msg[i].msg_len,
                             u->gro ? gro_size(&u->in_msg[i].msg_hdr) : 0, now);
#else
            count += deliver(u, h, &from, u->in_iov[i].iov_base, u->in_msg[i].msg_len, 0, now);
#endif
        }
        if (r < want) break;
        /* Answer (acks, handshake replies) between batches rather than after the flood. */
        if (p2p_udp_flush(u, h) != 0) return P2P_ERR_IO;
    }
    return count;
}
#else /* !HAVE_RECVMMSG */
/* The same, one recvfrom per datagram, answering after every BATCH of them. */
static int read_waiting(p2p_udp *u, p2p_host *h)
{
    int count = 0, reads = 0, e;
    long r;
    p2p_addr from;

    while (reads < MAX_RECV_DGRAMS) {
        socklen_t salen = (socklen_t)sizeof u->in_sa[0];
        memset(&u->in_sa[0], 0, sizeof u->in_sa[0]);
#ifdef _WIN32
        {
            int wlen = (int)salen;
            r = p2p_sys_recvfrom(u->fd, u->in_arena, RECV_BUF, &u->in_sa[0], &wlen);
        }
#else
        r = (long)recvfrom(u->fd, u->in_arena, RECV_BUF, 0, (struct sockaddr *)&u->in_sa[0],
                           &salen);
#endif
        if (r < 0) {
            e = sock_error();
            if (e == EINTR) continue;
            if (e == EAGAIN || e == EWOULDBLOCK) break;
            if (is_fatal_errno(e) || e == EINVAL || e == ENOMEM) return P2P_ERR_IO;
            /* A pending socket error (an ICMP error for something we sent): reading it
             * cleared it, so go on. */
            u->stats.recv_errors++;
            reads++;
            continue;
        }
        reads++;
        if (addr_from_sockaddr(&from, &u->in_sa[0]) == 0)
            count += deliver(u, h, &from, u->in_arena, (size_t)r, 0, p2p_udp_now());
        /* Answer (acks, handshake replies) between batches rather than after the flood. */
        if (reads % BATCH == 0 && p2p_udp_flush(u, h) != 0) return P2P_ERR_IO;
    }
    return count;
}
#endif /* HAVE_RECVMMSG */

/* ---- issue 12: the io queue's sockets ---------------------------------------------------
 *
 * Everything here is POSIX (Windows answers every request with P2P_ERR_IO, see the #else
 * branch). Each extra socket has a tag (its kind and slot) that epoll hands back, or that the
 * poll() fallback rebuilds every turn. */

#define MAX_STREAMS 256            /* inbound and outbound together */
#define STREAMS_PER_IP 8           /* inbound from one (non-loopback) IP */
#define STREAM_OPEN_US 10000000u   /* preamble / upgrade / connect must finish within 10 s */
#define LISTEN_PAUSE_US 100000u    /* accept() failed for want of descriptors: wait this long */
#define STREAM_CLOSING_US 2000000u /* a closing stream's last bytes: 2 s to go out */
#define MAX_HTTP 4
#define HTTP_REPLY_MAX 16384
#define HTTP_TIMEOUT_US 2000000u
#define GATEWAY_POLL_US 60000000u
#define EXTRA_TICK_US 20000u /* the service tick without epoll */
#define LAN_IFACES 16
#define STUN_RATE_ALL 1000 /* answers a second */
#define STUN_RATE_IP 10
#define STUN_BUCKETS 256

enum { TAG_MAIN = 0, TAG_PUNCH, TAG_LAN, TAG_STUN, TAG_LISTEN, TAG_STREAM, TAG_HTTP };
#define TAG(kind, slot) (((uint64_t)(kind) << 32) | (uint32_t)(slot))

#ifndef _WIN32
struct ustream {
    int fd; /* -1: slot free */
    uint32_t sid;
    int inbound, connecting, up;
    int want_out;      /* EPOLLOUT registered */
    int closing_timed; /* the stream is closing and its deadline says until when */
    p2p_addr peer;
    uint64_t deadline; /* until open; 0 once up */
    p2p_tstream st;
};

struct uhttp {
    int fd; /* -1: slot free */
    uint32_t id;
    int connecting, want_out;
    uint8_t *req, *rep;
    size_t req_len, req_off, rep_len;
    uint64_t deadline;
};

struct lan_iface {
    struct in_addr addr, bcast;
    int has_bcast;
};

/* The IPv6 beacon group, ff02::7032:706e ("p2pn" in its last 32 bits): link-local scope. */
static const uint8_t lan_group6[16] = {0xff, 2, 0, 0, 0,    0,    0,    0,
                                       0,    0, 0, 0, 0x70, 0x32, 0x70, 0x6e};

struct bucket {
    uint64_t t; /* last refill */
    double tokens;
};
#endif

struct p2p_udp_extra {
    p2p_udp_hooks hooks;
#ifndef _WIN32
    int epfd;     /* -1 without epoll */
    int main_out; /* the UDP socket's EPOLLOUT interest (unused: ppoll watches it) */
    int punch[P2P_IO_PUNCH_MAX + 1]; /* [1..255]; -1 free */
    int npunch;
    int lan_fd;
    uint16_t lan_port;
    struct lan_iface ifs[LAN_IFACES];
    int nifs;
    int lan6_fd;                   /* the IPv6 LAN socket (a node bound to IPv6), or -1 */
    unsigned int ifs6[LAN_IFACES]; /* interface indexes of the IPv6 ones, nifs6 of them */
    int nifs6;
    int stun_fd;
    struct bucket stun_all, stun_ip[STUN_BUCKETS];
    int listen_fd;
    uint16_t listen_port;
    uint64_t listen_paused; /* out of descriptors: accept() again at this time (0: not paused) */
    char ws_path[128];
    uint32_t next_sid;
    struct ustream *streams; /* MAX_STREAMS slots, allocated on first use */
    int nstreams;
    struct uhttp http[MAX_HTTP];
    int gw_asked, gw_known;
    uint64_t gw_poll; /* GATEWAY_POLL_US, or P2P_UDP_GATEWAY_POLL_MS (tests) */
    p2p_addr gw, gw_local;
    uint64_t gw_next;
#endif
};

static struct p2p_udp_extra *extra_new(void)
{
    return calloc(1, sizeof(struct p2p_udp_extra));
}

/* The epoll descriptor, or -1. */
static int extra_fd(const p2p_udp *u)
{
#if !defined(_WIN32) && HAVE_EPOLL
    return u->x->epfd;
#else
    (void)u;
    return -1;
#endif
}

static void hook_io(p2p_udp *u, const p2p_io_result *r)
{
    if (u->x->hooks.io_done != NULL) u->x->hooks.io_done(u->x->hooks.ud, r);
}

void p2p_udp_set_hooks(p2p_udp *u, const p2p_udp_hooks *hooks)
{
    if (hooks != NULL)
        u->x->hooks = *hooks;
    else
        memset(&u->x->hooks, 0, sizeof u->x->hooks);
}

static void io_answer(p2p_udp *u, p2p_host *h, p2p_io_result *r)
{
    hook_io(u, r);
    (void)p2p_host_io_done(h, r, p2p_udp_now());
}

static void io_fail(p2p_udp *u, p2p_host *h, const p2p_io *req)
{
    p2p_io_result r;
    memset(&r, 0, sizeof r);
    r.kind = req->kind;
    r.id = req->id;
    r.status = P2P_ERR_IO;
    io_answer(u, h, &r);
}

#ifdef _WIN32
/* ---- Windows: none of the extra sockets ---- */
static int extra_init(p2p_udp *u)
{
    (void)u;
    return 0;
}
static void extra_free(p2p_udp *u)
{
    (void)u;
}
static uint64_t extra_deadline(const p2p_udp *u)
{
    (void)u;
    return P2P_TIME_NEVER;
}
static void extra_service(p2p_udp *u, p2p_host *h, int waited)
{
    (void)u;
    (void)h;
    (void)waited;
}
static void extra_write(p2p_udp *u)
{
    (void)u;
}
static int http_pending(const p2p_udp *u)
{
    (void)u;
    return 0;
}
void p2p_udp_io(p2p_udp *u, p2p_host *h, const p2p_io *req)
{
    if (req->kind == P2P_IO_TCP_OPEN) {
        if (u->x->hooks.stream != NULL) u->x->hooks.stream(u->x->hooks.ud, req->id, 0, 0, NULL);
        (void)p2p_host_stream_down(h, req->id, p2p_udp_now());
        return;
    }
    if (req->kind == P2P_IO_TCP_CLOSE || req->kind == P2P_IO_PUNCH_CLOSE ||
        req->kind == P2P_IO_LAN_STOP)
        return;
    io_fail(u, h, req);
}
int p2p_udp_send(p2p_udp *u, const p2p_addr *to, const uint8_t *buf, size_t len)
{
    (void)u;
    (void)to;
    (void)buf;
    (void)len;
    return P2P_ERR_PEER;
}
int p2p_udp_lan_send(p2p_udp *u, const p2p_addr *to, const uint8_t *buf, size_t len)
{
    (void)u;
    (void)to;
    (void)buf;
    (void)len;
    return 0;
}
int p2p_udp_listen_tcp(p2p_udp *u, uint16_t port, const char *ws_path, char *err, size_t errlen)
{
    (void)u;
    (void)port;
    (void)ws_path;
    set_err(err, errlen, "streams are not supported on this system");
    return P2P_ERR_IO;
}
uint16_t p2p_udp_tcp_port(const p2p_udp *u)
{
    (void)u;
    return 0;
}
int p2p_udp_stun_server(p2p_udp *u, uint16_t port, char *err, size_t errlen)
{
    (void)u;
    (void)port;
    set_err(err, errlen, "the STUN responder is not supported on this system");
    return P2P_ERR_IO;
}
int p2p_udp_gateway(const p2p_udp *u, p2p_addr *gw, p2p_addr *local)
{
    (void)u;
    (void)gw;
    (void)local;
    return P2P_ERR_IO;
}
#else
/* ---- POSIX ---- */

static void stream_addr(uint32_t sid, p2p_addr *a)
{
    memset(a, 0, sizeof *a);
    a->family = P2P_AF_STREAM;
    a->ip[0] = (uint8_t)sid;
    a->ip[1] = (uint8_t)(sid >> 8);
    a->ip[2] = (uint8_t)(sid >> 16);
    a->ip[3] = (uint8_t)(sid >> 24);
}

static uint32_t stream_sid(const p2p_addr *a)
{
    return (uint32_t)a->ip[0] | (uint32_t)a->ip[1] << 8 | (uint32_t)a->ip[2] << 16 |
           (uint32_t)a->ip[3] << 24;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) return -1;
    return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* Adds, changes (EPOLLOUT on or off) or removes a socket of the epoll set, when there is one.
 * op: 0 add, 1 modify, 2 delete. */
static void ep_ctl(p2p_udp *u, int op, int fd, uint64_t tag, int out)
{
#if HAVE_EPOLL
    static const int ops[3] = {EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL};
    struct epoll_event ev;
    if (u->x->epfd < 0) return;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | (out ? EPOLLOUT : 0);
    ev.data.u64 = tag;
    (void)epoll_ctl(u->x->epfd, ops[op], fd, &ev);
#else
    (void)u;
    (void)op;
    (void)fd;
    (void)tag;
    (void)out;
#endif
}

#define ep_add(u, fd, tag, out) ep_ctl((u), 0, (fd), (tag), (out))
#define ep_mod(u, fd, tag, out) ep_ctl((u), 1, (fd), (tag), (out))
#define ep_del(u, fd) ep_ctl((u), 2, (fd), 0, 0)

/* Closing a descriptor removes it from every epoll set. */
static void xclose(int *fd)
{
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static int extra_init(p2p_udp *u)
{
    struct p2p_udp_extra *x = u->x;
    int i;

    x->epfd = -1;
    x->lan_fd = x->lan6_fd = x->stun_fd = x->listen_fd = -1;
    for (i = 0; i <= P2P_IO_PUNCH_MAX; i++) x->punch[i] = -1;
    for (i = 0; i < MAX_HTTP; i++) x->http[i].fd = -1;
    x->next_sid = 1;
    x->gw_poll = GATEWAY_POLL_US;
    if (getenv("P2P_UDP_GATEWAY_POLL_MS") != NULL)
        x->gw_poll = (uint64_t)strtoul(getenv("P2P_UDP_GATEWAY_POLL_MS"), NULL, 10) * 1000u;
#if HAVE_EPOLL
    if (getenv("P2P_UDP_EPOLL") == NULL || strcmp(getenv("P2P_UDP_EPOLL"), "0") != 0) {
        x->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (x->epfd < 0) return -1;
        ep_add(u, u->fd, TAG(TAG_MAIN, 0), 0);
    }
#endif
    return 0;
}

static void stream_free_slot(p2p_udp *u, struct ustream *s)
{
    xclose(&s->fd);
    p2p_tstream_free(&s->st);
    u->x->nstreams--;
    u->stats.streams = (uint64_t)u->x->nstreams;
}

static void http_free_slot(struct uhttp *t)
{
    xclose(&t->fd);
    free(t->req);
    free(t->rep);
    t->req = t->rep = NULL;
}

static void extra_free(p2p_udp *u)
{
    struct p2p_udp_extra *x = u->x;
    int i;

    for (i = 1; i <= P2P_IO_PUNCH_MAX; i++) xclose(&x->punch[i]);
    xclose(&x->lan_fd);
    xclose(&x->lan6_fd);
    xclose(&x->stun_fd);
    xclose(&x->listen_fd);
    if (x->streams != NULL) {
        for (i = 0; i < MAX_STREAMS; i++)
            if (x->streams[i].fd >= 0) stream_free_slot(u, &x->streams[i]);
        free(x->streams);
    }
    for (i = 0; i < MAX_HTTP; i++)
        if (x->http[i].fd >= 0) http_free_slot(&x->http[i]);
    xclose(&x->epfd);
}

/* Whether any socket besides the UDP one is open. */
static int extra_open(const p2p_udp *u)
{
    const struct p2p_udp_extra *x = u->x;
    int i;
    if (x->npunch > 0 || x->lan_fd >= 0 || x->lan6_fd >= 0 || x->stun_fd >= 0 ||
        x->listen_fd >= 0 || x->nstreams > 0)
        return 1;
    for (i = 0; i < MAX_HTTP; i++)
        if (x->http[i].fd >= 0) return 1;
    return 0;
}

static uint64_t extra_deadline(const p2p_udp *u)
{
    const struct p2p_udp_extra *x = u->x;
    uint64_t d = P2P_TIME_NEVER;
    int i;

    if (x->gw_asked && x->gw_next < d) d = x->gw_next;
    if (x->listen_paused && x->listen_paused < d) d = x->listen_paused;
    for (i = 0; i < MAX_HTTP; i++)
        if (x->http[i].fd >= 0 && x->http[i].deadline < d) d = x->http[i].deadline;
    if (x->streams != NULL)
        for (i = 0; i < MAX_STREAMS; i++)
            if (x->streams[i].fd >= 0 && x->streams[i].deadline != 0 && x->streams[i].deadline < d)
                d = x->streams[i].deadline;
    if (x->epfd < 0 && extra_open(u)) {
        uint64_t tick = p2p_udp_now() + EXTRA_TICK_US;
        if (tick < d) d = tick;
    }
    return d;
}

/* ---- gateway ---- */

int p2p_udp_gateway(const p2p_udp *u, p2p_addr *gw, p2p_addr *local)
{
#ifdef __linux__
    /* Test suites that run on a real machine set this: their nodes must not talk to the
     * machine's gateway (the NAT lab's namespaces clear it). */
    const char *none = getenv("P2P_UDP_NO_GATEWAY");
    if (none != NULL && none[0] != 0 && strcmp(none, "0") != 0) return P2P_ERR_IO;
    FILE *f = fopen("/proc/net/route", "r");
    char line[512], ifname[64];
    unsigned long dest, gate, flags, mask;
    int found = 0, fd;
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    uint32_t g;

    if (f == NULL) return P2P_ERR_IO;
    memset(gw, 0, sizeof *gw);
    while (fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "%63s %lx %lx %lx %*s %*s %*s %lx", ifname, &dest, &gate, &flags, &mask) !=
            5)
            continue;
        /* default route (0/0) through a gateway (RTF_UP | RTF_GATEWAY) */
        if (dest != 0 || mask != 0 || (flags & 3) != 3 || gate == 0) continue;
        g = (uint32_t)gate; /* the kernel prints the raw __be32: its bytes are in order */
        gw->family = P2P_AF_INET4;
        memcpy(gw->ip, &g, 4);
        found = 1;
        break;
    }
    fclose(f);
    if (!found) return P2P_ERR_IO;
    /* our source address towards it: what a connected UDP socket is bound to */
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return P2P_ERR_IO;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    memcpy(&sa.sin_addr, gw->ip, 4);
    sa.sin_port = htons(5351);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        close(fd);
        return P2P_ERR_IO;
    }
    close(fd);
    memset(local, 0, sizeof *local);
    local->family = P2P_AF_INET4;
    memcpy(local->ip, &sa.sin_addr, 4);
    local->port = u->local.port;
    /* The node's socket must be able to send from that address: bound to it, or to the
     * wildcard (0.0.0.0, or :: with IPv4 mapped). A node bound to 127.0.0.1 or to another
     * interface has no gateway to ask. */
    {
        static const uint8_t zero[16];
        int wild = memcmp(u->local.ip, zero, u->local.family == P2P_AF_INET4 ? 4 : 16) == 0;
        if (!wild && !(u->local.family == P2P_AF_INET4 && memcmp(u->local.ip, local->ip, 4) == 0))
            return P2P_ERR_IO;
    }
    return 0;
#else
    /* BSD (sysctl NET_RT_FLAGS) and macOS are not done yet: port mapping stays off there. */
    (void)u;
    (void)gw;
    (void)local;
    return P2P_ERR_IO;
#endif
}

static void gateway_request(p2p_udp *u, p2p_host *h, const p2p_io *req)
{
    struct p2p_udp_extra *x = u->x;
    p2p_io_result r;

    memset(&r, 0, sizeof r);
    r.kind = req->kind;
    r.id = req->id;
    x->gw_asked = 1;
    x->gw_next = p2p_udp_now() + x->gw_poll;
    x->gw_known = p2p_udp_gateway(u, &r.addr, &r.local) == 0;
    if (x->gw_known) {
        x->gw = r.addr;
        x->gw_local = r.local;
    } else {
        r.status = P2P_ERR_IO;
    }
    io_answer(u, h, &r);
}

/* Every 60 s once the host asked: a different gateway or source address is a new network. */
static void gateway_check(p2p_udp *u, p2p_host *h, uint64_t now)
{
    struct p2p_udp_extra *x = u->x;
    p2p_addr gw, local;
    int known;

    if (!x->gw_asked || now < x->gw_next) return;
    x->gw_next = now + x->gw_poll;
    known = p2p_udp_gateway(u, &gw, &local) == 0;
    if (known == x->gw_known &&
        (!known || (p2p_addr_equal(&gw, &x->gw) && p2p_addr_equal(&local, &x->gw_local))))
        return;
    x->gw_known = known;
    if (known) {
        x->gw = gw;
        x->gw_local = local;
    }
    u->stats.gateway_changes++;
    p2p_host_network_changed(h, now);
}

/* ---- streams ---- */

static struct ustream *stream_slot(p2p_udp *u)
{
    struct p2p_udp_extra *x = u->x;
    int i;

    if (x->streams == NULL) {
        x->streams = calloc(MAX_STREAMS, sizeof *x->streams);
        if (x->streams == NULL) return NULL;
        for (i = 0; i < MAX_STREAMS; i++) x->streams[i].fd = -1;
    }
    for (i = 0; i < MAX_STREAMS; i++)
        if (x->streams[i].fd < 0) return &x->streams[i];
    return NULL;
}

static struct ustream *stream_find(p2p_udp *u, uint32_t sid)
{
    struct p2p_udp_extra *x = u->x;
    int i;
    if (x->streams == NULL) return NULL;
    for (i = 0; i < MAX_STREAMS; i++)
        if (x->streams[i].fd >= 0 && x->streams[i].sid == sid) return &x->streams[i];
    return NULL;
}

static uint64_t stream_tag(const p2p_udp *u, const struct ustream *s)
{
    return TAG(TAG_STREAM, (uint32_t)(s - u->x->streams));
}

/* Registers interest in writability exactly while there is something to write. */
static void stream_interest(p2p_udp *u, struct ustream *s)
{
    size_t n;
    int want = s->connecting || p2p_tstream_out(&s->st, &n) != NULL;
    /* a closing stream gets 2 s to write its last bytes (a close frame, an HTTP refusal) */
    if (s->st.state >= P2P_STREAM_CLOSING && !s->closing_timed) {
        s->closing_timed = 1;
        s->deadline = p2p_udp_now() + STREAM_CLOSING_US;
    }
    if (want != s->want_out) {
        s->want_out = want;
        ep_mod(u, s->fd, stream_tag(u, s), want);
    }
}

/* The stream is gone: tell the host (when it knew of it or waited for it), free the slot. */
static void stream_gone(p2p_udp *u, p2p_host *h, struct ustream *s)
{
    int tell = s->up || !s->inbound;
    uint32_t sid = s->sid;

    stream_free_slot(u, s);
    if (!tell) return;
    if (u->x->hooks.stream != NULL) u->x->hooks.stream(u->x->hooks.ud, sid, 0, 0, NULL);
    if (h != NULL) (void)p2p_host_stream_down(h, sid, p2p_udp_now());
}

static void rand_bytes(uint8_t *b, size_t n)
{
    randombytes_buf(b, n);
}

static void tcp_open(p2p_udp *u, p2p_host *h, const p2p_io *req)
{
    struct ustream *s = stream_find(u, req->id) == NULL ? stream_slot(u) : NULL;
    uint8_t key[16];
    uint64_t seed;
    int fd;

    if (s == NULL || (fd = p2p_tstream_connect(&req->addr)) < 0) {
        if (u->x->hooks.stream != NULL) u->x->hooks.stream(u->x->hooks.ud, req->id, 0, 0, NULL);
        (void)p2p_host_stream_down(h, req->id, p2p_udp_now());
        return;
    }
    rand_bytes(key, sizeof key);
    rand_bytes((uint8_t *)&seed, sizeof seed);
    memset(s, 0, sizeof *s);
    if (p2p_tstream_client(&s->st, req->ws, req->host, req->path[0] ? req->path : "/p2pnet", key,
                           seed) != 0) {
        p2p_tstream_free(&s->st);
        close(fd);
        s->fd = -1;
        if (u->x->hooks.stream != NULL) u->x->hooks.stream(u->x->hooks.ud, req->id, 0, 0, NULL);
        (void)p2p_host_stream_down(h, req->id, p2p_udp_now());
        return;
    }
    s->fd = fd;
    s->sid = req->id;
    s->connecting = 1;
    s->want_out = 1;
    s->peer = req->addr;
    s->peer.sock = 0;
    s->deadline = p2p_udp_now() + STREAM_OPEN_US;
    u->x->nstreams++;
    u->stats.streams = (uint64_t)u->x->nstreams;
    ep_add(u, fd, stream_tag(u, s), 1);
}

static int is_loopback(const p2p_addr *a)
{
    static const uint8_t lo6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return (a->family == P2P_AF_INET4 && a->ip[0] == 127) ||
           (a->family == P2P_AF_INET6 && memcmp(a->ip, lo6, 16) == 0);
}

static int same_ip(const p2p_addr *a, const p2p_addr *b)
{
    return a->family == b->family && memcmp(a->ip, b->ip, a->family == P2P_AF_INET4 ? 4 : 16) == 0;
}

/* The table is full: the oldest inbound stream that has not finished its preamble or upgrade
 * makes room for a newcomer, so silent connections cannot hold every slot (each gets at least
 * a while: STREAM_OPEN_US / MAX_STREAMS of the newest are never taken). NULL when every
 * stream is open. */
static struct ustream *stream_evict(p2p_udp *u)
{
    struct p2p_udp_extra *x = u->x;
    struct ustream *old = NULL;
    int i;

    if (x->streams == NULL) return NULL;
    for (i = 0; i < MAX_STREAMS; i++) {
        struct ustream *s = &x->streams[i];
        if (s->fd < 0 || !s->inbound || s->up || s->deadline == 0) continue;
        if (old == NULL || s->deadline < old->deadline) old = s;
    }
    if (old == NULL) return NULL;
    stream_free_slot(u, old); /* the host never heard of it */
    u->stats.streams_refused++;
    return old;
}

static void accept_streams(p2p_udp *u)
{
    struct p2p_udp_extra *x = u->x;
    p2p_addr from;
    struct ustream *s;
    int fd, i, k, same;

    for (k = 0; k < 16; k++) {
        fd = p2p_tstream_accept(x->listen_fd, &from);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* Out of descriptors: the connection stays in the backlog and the listening
                 * socket stays readable. Stop watching it for a while instead of spinning. */
                x->listen_paused = p2p_udp_now() + LISTEN_PAUSE_US;
                ep_del(u, x->listen_fd);
                u->stats.streams_refused++;
            }
            return;
        }
        same = 0;
        if (!is_loopback(&from) && x->streams != NULL)
            for (i = 0; i < MAX_STREAMS; i++)
                if (x->streams[i].fd >= 0 && x->streams[i].inbound &&
                    same_ip(&x->streams[i].peer, &from))
                    same++;
        s = same < STREAMS_PER_IP ? stream_slot(u) : NULL;
        if (s == NULL && same < STREAMS_PER_IP) s = stream_evict(u);
        if (s == NULL) {
            u->stats.streams_refused++;
            close(fd);
            continue;
        }
        memset(s, 0, sizeof *s);
        (void)p2p_tstream_server(&s->st, x->ws_path);
        s->fd = fd;
        s->inbound = 1;
        /* inbound ids have the top bit set: they never collide with the host's */
        do {
            s->sid = 0x80000000u | x->next_sid++;
            if (x->next_sid >= 0x80000000u) x->next_sid = 1;
        } while (stream_find(u, s->sid) != s);
        s->peer = from;
        s->deadline = p2p_udp_now() + STREAM_OPEN_US;
        x->nstreams++;
        u->stats.streams = (uint64_t)x->nstreams;
        u->stats.streams_accepted++;
        ep_add(u, fd, stream_tag(u, s), 0);
    }
}

/* Reads what the stream has, hands its datagrams to the host, reports it up/down. */
static void stream_readable(p2p_udp *u, p2p_host *h, struct ustream *s)
{
    uint8_t buf[P2P_MAX_PACKET];
    p2p_addr from;
    size_t n;
    long r;
    int rounds = 0, rc;

    if (s->connecting) return;
    stream_addr(s->sid, &from);
    do {
        r = p2p_tstream_read(&s->st, s->fd);
        for (;;) {
            n = p2p_tstream_next(&s->st, buf, sizeof buf);
            /* the handshake completes inside next(), before the first datagram comes out:
             * the host hears of the stream before it gets a datagram on it */
            if (p2p_tstream_opened(&s->st)) {
                /* inbound 2: a client that upgraded to a WebSocket (peer.path "ws") */
                rc = p2p_host_stream_up(h, s->sid, &s->peer,
                                        s->inbound ? (s->st.mode == P2P_STREAM_MODE_WS ? 2 : 1) : 0,
                                        p2p_udp_now());
                if (rc != 0) {
                    if (s->inbound) u->stats.streams_refused++;
                    if (!s->inbound) (void)p2p_host_stream_down(h, s->sid, p2p_udp_now());
                    stream_free_slot(u, s);
                    return;
                }
                s->up = 1;
                s->deadline = 0;
                u->stats.streams_up++;
                if (u->x->hooks.stream != NULL)
                    u->x->hooks.stream(u->x->hooks.ud, s->sid, 1, s->inbound, &s->peer);
            }
            if (n == 0) break;
            u->stats.received++;
            if (u->x->hooks.recv != NULL) u->x->hooks.recv(u->x->hooks.ud, &from, buf, n, 0);
            (void)p2p_host_recv(h, &from, buf, n, p2p_udp_now());
        }
    } while (r > 0 && ++rounds < 8);
    (void)p2p_tstream_write(&s->st, s->fd); /* pongs, the 101, close frames */
    if (r < 0 || p2p_tstream_done(&s->st)) {
        stream_gone(u, h, s);
        return;
    }
    stream_interest(u, s);
}

static void stream_writable(p2p_udp *u, p2p_host *h, struct ustream *s)
{
    if (s->connecting) {
        if (p2p_tstream_connected(s->fd) != 0) {
            stream_gone(u, h, s);
            return;
        }
        s->connecting = 0;
        if (p2p_tstream_opened(&s->st)) {
            /* raw mode is open at once */
            if (p2p_host_stream_up(h, s->sid, &s->peer, 0, p2p_udp_now()) != 0) {
                (void)p2p_host_stream_down(h, s->sid, p2p_udp_now());
                stream_free_slot(u, s);
                return;
            }
            s->up = 1;
            s->deadline = 0;
            u->stats.streams_up++;
            if (u->x->hooks.stream != NULL)
                u->x->hooks.stream(u->x->hooks.ud, s->sid, 1, 0, &s->peer);
        }
    }
    if (p2p_tstream_write(&s->st, s->fd) != 0 || p2p_tstream_done(&s->st)) {
        stream_gone(u, h, s);
        return;
    }
    stream_interest(u, s);
}

static void tcp_close(p2p_udp *u, const p2p_io *req)
{
    struct ustream *s = stream_find(u, req->id);
    if (s == NULL) return;
    p2p_tstream_close(&s->st, P2P_WS_NORMAL);
    (void)p2p_tstream_write(&s->st, s->fd);
    stream_free_slot(u, s); /* the host asked: no stream_down */
}

int p2p_udp_listen_tcp(p2p_udp *u, uint16_t port, const char *ws_path, char *err, size_t errlen)
{
    struct p2p_udp_extra *x = u->x;
    p2p_addr a = u->local;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    p2p_addr got;

    if (x->listen_fd >= 0) return P2P_ERR_INVALID;
    if (ws_path == NULL) ws_path = "/p2pnet";
    if (ws_path[0] != '/' || strlen(ws_path) >= sizeof x->ws_path) return P2P_ERR_INVALID;
    a.port = port != 0 ? port : u->local.port;
    a.sock = 0;
    x->listen_fd = p2p_tstream_listen(&a, 64);
    if (x->listen_fd < 0) {
        set_err(err, errlen, "TCP listen on port %u: %s", (unsigned)a.port, strerror(errno));
        return P2P_ERR_IO;
    }
    if (getsockname(x->listen_fd, (struct sockaddr *)&ss, &sl) == 0 &&
        addr_from_sockaddr(&got, &ss) == 0)
        x->listen_port = got.port;
    strcpy(x->ws_path, ws_path);
    ep_add(u, x->listen_fd, TAG(TAG_LISTEN, 0), 0);
    return 0;
}

uint16_t p2p_udp_tcp_port(const p2p_udp *u)
{
    return u->x->listen_fd >= 0 ? u->x->listen_port : 0;
}

/* ---- HTTP one-shot ---- */

static void http_done(p2p_udp *u, p2p_host *h, struct uhttp *t, int ok)
{
    p2p_io_result r;
    memset(&r, 0, sizeof r);
    r.kind = P2P_IO_HTTP;
    r.id = t->id;
    r.status = ok ? 0 : P2P_ERR_IO;
    if (ok) {
        r.data = t->rep;
        r.len = t->rep_len;
    }
    io_answer(u, h, &r);
    http_free_slot(t);
}

/* The reply is complete when the head is there and Content-Length bytes of body follow
 * (without Content-Length: at EOF). Returns 1 when complete. */
static int http_complete(const struct uhttp *t)
{
    const uint8_t *e;
    const char *cl;
    size_t head, i;
    unsigned long len;

    e = memmem(t->rep, t->rep_len, "\r\n\r\n", 4);
    if (e == NULL) return 0;
    head = (size_t)(e - t->rep) + 4;
    for (i = 0; i + 15 < head; i++) {
        cl = (const char *)t->rep + i;
        if ((i == 0 || cl[-1] == '\n') && strncasecmp(cl, "content-length:", 15) == 0) {
            len = strtoul(cl + 15, NULL, 10);
            return t->rep_len >= head + len;
        }
    }
    return 0;
}

/* HTTP requests still in flight (a UPnP delete queued at close, for one). */
static int http_pending(const p2p_udp *u)
{
    int i, n = 0;
    for (i = 0; i < MAX_HTTP; i++) n += u->x->http[i].fd >= 0;
    return n;
}

static void http_request(p2p_udp *u, p2p_host *h, const p2p_io *req)
{
    struct uhttp *t = NULL;
    int i, fd;

    for (i = 0; i < MAX_HTTP && t == NULL; i++)
        if (u->x->http[i].fd < 0) t = &u->x->http[i];
    if (t == NULL || req->data == NULL || req->len == 0 || req->len > HTTP_REPLY_MAX ||
        (fd = p2p_tstream_connect(&req->addr)) < 0) {
        io_fail(u, h, req);
        return;
    }
    memset(t, 0, sizeof *t);
    t->req = malloc(req->len);
    t->rep = malloc(HTTP_REPLY_MAX);
    if (t->req == NULL || t->rep == NULL) {
        free(t->req);
        free(t->rep);
        t->req = t->rep = NULL;
        close(fd);
        t->fd = -1;
        io_fail(u, h, req);
        return;
    }
    memcpy(t->req, req->data, req->len);
    t->req_len = req->len;
    t->fd = fd;
    t->id = req->id;
    t->connecting = 1;
    t->want_out = 1;
    t->deadline = p2p_udp_now() + HTTP_TIMEOUT_US;
    u->stats.http_requests++;
    ep_add(u, fd, TAG(TAG_HTTP, (uint32_t)(t - u->x->http)), 1);
}

static void http_event(p2p_udp *u, p2p_host *h, struct uhttp *t, int readable, int writable)
{
    ssize_t r;

    if (t->connecting && (writable || readable)) {
        if (p2p_tstream_connected(t->fd) != 0) {
            http_done(u, h, t, 0);
            return;
        }
        t->connecting = 0;
    }
    while (!t->connecting && t->req_off < t->req_len) {
        r = send(t->fd, t->req + t->req_off, t->req_len - t->req_off, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
            http_done(u, h, t, 0);
            return;
        }
        t->req_off += (size_t)r;
    }
    if (t->want_out && t->req_off == t->req_len) {
        t->want_out = 0;
        ep_mod(u, t->fd, TAG(TAG_HTTP, (uint32_t)(t - u->x->http)), 0);
    }
    if (!t->connecting && readable) {
        for (;;) {
            if (t->rep_len == HTTP_REPLY_MAX) {
                http_done(u, h, t, http_complete(t));
                return;
            }
            r = recv(t->fd, t->rep + t->rep_len, HTTP_REPLY_MAX - t->rep_len, 0);
            if (r == 0) {
                http_done(u, h, t, memmem(t->rep, t->rep_len, "\r\n\r\n", 4) != NULL);
                return;
            }
            if (r < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
                http_done(u, h, t, 0);
                return;
            }
            t->rep_len += (size_t)r;
            if (http_complete(t)) {
                http_done(u, h, t, 1);
                return;
            }
        }
    }
}

/* ---- punch sockets ---- */

/* How many more descriptors we may take: (soft limit - open - 64) / 2 (design 12 R3). */
static int fd_budget(void)
{
    struct rlimit rl;
    int open_fds = 0;
#ifdef __linux__
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    if (d != NULL) {
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.') open_fds++;
        closedir(d);
    }
#else
    open_fds = 64;
#endif
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1000000) rl.rlim_cur = 1000000;
    if ((long)rl.rlim_cur - open_fds - 64 <= 0) return 0;
    return (int)(((long)rl.rlim_cur - open_fds - 64) / 2);
}

static void punch_open(p2p_udp *u, p2p_host *h, const p2p_io *req)
{
    struct p2p_udp_extra *x = u->x;
    p2p_io_result r;
    p2p_addr b = u->local;
    struct sockaddr_storage ss;
    socklen_t sl;
    int want = req->n, budget = fd_budget(), slot, fd;

    memset(&r, 0, sizeof r);
    r.kind = req->kind;
    r.id = req->id;
    if (want > P2P_IO_PUNCH_MAX) want = P2P_IO_PUNCH_MAX;
    if (want > budget) want = budget;
    b.port = 0;
    b.sock = 0;
    sl = addr_to_sockaddr(u->family, &b, &ss);
    for (slot = 1; slot <= P2P_IO_PUNCH_MAX && r.n < want; slot++) {
        if (x->punch[slot] >= 0) continue;
        fd = (int)open_socket(u->family);
        if (fd < 0) break;
        if (u->family == AF_INET6) {
            int off = 0;
            (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
        }
        if (bind(fd, (struct sockaddr *)&ss, sl) != 0) {
            close(fd);
            break;
        }
        x->punch[slot] = fd;
        x->npunch++;
        r.socks[r.n++] = (uint8_t)slot;
        ep_add(u, fd, TAG(TAG_PUNCH, (uint32_t)slot), 0);
    }
    u->stats.punch_sockets = (uint64_t)x->npunch;
    if (r.n == 0) r.status = P2P_ERR_IO;
    io_answer(u, h, &r);
}

static void punch_close(p2p_udp *u, int slot)
{
    struct p2p_udp_extra *x = u->x;
    int i;
    for (i = 1; i <= P2P_IO_PUNCH_MAX; i++) {
        if ((slot != 0 && i != slot) || x->punch[i] < 0) continue;
        xclose(&x->punch[i]);
        x->npunch--;
    }
    u->stats.punch_sockets = (uint64_t)x->npunch;
}

static void punch_readable(p2p_udp *u, p2p_host *h, int slot)
{
    uint8_t buf[RECV_BUF];
    struct sockaddr_storage ss;
    socklen_t sl;
    p2p_addr from;
    ssize_t r;
    int k;

    for (k = 0; k < 64; k++) {
        sl = sizeof ss;
        r = recvfrom(u->x->punch[slot], buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&ss, &sl);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            u->stats.recv_errors++; /* an ICMP error for something sent: cleared, go on */
            continue;
        }
        if (addr_from_sockaddr(&from, &ss) != 0) continue;
        from.sock = (uint8_t)slot;
        u->stats.received++;
        if ((size_t)r > P2P_MAX_PACKET_PROBED) u->stats.oversized++;
        if (u->x->hooks.recv != NULL) u->x->hooks.recv(u->x->hooks.ud, &from, buf, (size_t)r, 0);
        (void)p2p_host_recv(h, &from, buf, (size_t)r, p2p_udp_now());
    }
}

/* ---- LAN socket (design 12 section 4.4) ---- */

static void lan_ifaces(struct p2p_udp_extra *x)
{
    struct ifaddrs *list = NULL, *i;
    int k;
    x->nifs = x->nifs6 = 0;
#if HAVE_GETIFADDRS
    if (getifaddrs(&list) != 0) return;
    for (i = list; i != NULL; i = i->ifa_next) {
        if (i->ifa_addr == NULL || !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK) ||
            !(i->ifa_flags & IFF_MULTICAST))
            continue;
        if (i->ifa_addr->sa_family == AF_INET6) {
            /* an interface with any IPv6 address (every one has a link-local one): once */
            unsigned int ix = if_nametoindex(i->ifa_name);
            if (ix == 0 || x->nifs6 == LAN_IFACES) continue;
            for (k = 0; k < x->nifs6 && x->ifs6[k] != ix; k++) continue;
            if (k == x->nifs6) x->ifs6[x->nifs6++] = ix;
            continue;
        }
        if (i->ifa_addr->sa_family != AF_INET || x->nifs == LAN_IFACES) continue;
        struct lan_iface *f = &x->ifs[x->nifs++];
        memset(f, 0, sizeof *f);
        f->addr = ((const struct sockaddr_in *)(const void *)i->ifa_addr)->sin_addr;
        if ((i->ifa_flags & IFF_BROADCAST) && i->ifa_broadaddr != NULL &&
            i->ifa_broadaddr->sa_family == AF_INET) {
            f->bcast = ((const struct sockaddr_in *)(const void *)i->ifa_broadaddr)->sin_addr;
            f->has_bcast = 1;
        }
    }
    freeifaddrs(list);
#else
    (void)list;
    (void)i;
    (void)k;
#endif
}

/* The IPv4 LAN socket on port: 239.255.112.112 joined on every IPv4 interface. -1 on
 * failure. */
static int lan_open4(struct p2p_udp_extra *x, uint16_t port)
{
    struct sockaddr_in sa;
    struct ip_mreq mr;
    int fd, one = 1, ttl = 1, k;
    unsigned char loop = 1, mttl = 1;

    fd = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    if (fd < 0) return -1;
    if (set_nonblock(fd) != 0) goto fail;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
#ifdef SO_REUSEPORT
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
#endif
    (void)setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one);
    (void)setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop);
    (void)setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &mttl, sizeof mttl);
    (void)setsockopt(fd, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) goto fail;
    for (k = 0; k < x->nifs; k++) {
        memset(&mr, 0, sizeof mr);
        mr.imr_multiaddr.s_addr = htonl(0xEFFF7070u); /* 239.255.112.112 */
        mr.imr_interface = x->ifs[k].addr;
        (void)setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof mr);
    }
    return fd;
fail:
    close(fd);
    return -1;
}

/* The IPv6 LAN socket on port (IPv6 only: the IPv4 socket has the rest): ff02::7032:706e
 * joined on every IPv6 interface by index, hop limit 1 for what it sends. -1 on failure. */
static int lan_open6(struct p2p_udp_extra *x, uint16_t port)
{
    struct sockaddr_in6 sa;
    struct ipv6_mreq mr;
    int fd, one = 1, hops = 1, k;
    unsigned int loop = 1;

    fd = socket(AF_INET6, SOCK_DGRAM, IPPROTO_UDP);
    if (fd < 0) return -1;
    if (set_nonblock(fd) != 0) goto fail;
    (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
#ifdef SO_REUSEPORT
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
#endif
    (void)setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &loop, sizeof loop);
    (void)setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof hops);
    (void)setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof hops);
    memset(&sa, 0, sizeof sa);
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(port);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) goto fail;
    for (k = 0; k < x->nifs6; k++) {
        memset(&mr, 0, sizeof mr);
        memcpy(&mr.ipv6mr_multiaddr, lan_group6, 16);
        mr.ipv6mr_interface = x->ifs6[k];
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &mr, sizeof mr);
    }
    return fd;
fail:
    close(fd);
    return -1;
}

/* Opens the LAN sockets: IPv4 always, IPv6 too when the node's socket is bound to IPv6 (only
 * then can it answer a dial to its IPv6 address). Answers with n: the interfaces found, and
 * local: the node's bound address (its family tells the core whether to beacon over IPv6). */
static void lan_start(p2p_udp *u, p2p_host *h, const p2p_io *req)
{
    struct p2p_udp_extra *x = u->x;
    uint16_t port = req->n != 0 ? req->n : P2P_LAN_PORT;
    p2p_io_result r;

    memset(&r, 0, sizeof r);
    r.kind = req->kind;
    r.id = req->id;
    r.local = u->local;
    if (x->lan_fd >= 0 || x->lan6_fd >= 0) {
        r.n = (uint16_t)(x->nifs + x->nifs6);
        io_answer(u, h, &r);
        return;
    }
    /* A node bound to loopback is not on any LAN: it must not beacon on the real one. */
    if (is_loopback(&u->local)) goto fail;
    lan_ifaces(x);
    x->lan_fd = lan_open4(x, port);
    if (u->local.family == P2P_AF_INET6) x->lan6_fd = lan_open6(x, port);
    if (x->lan_fd < 0 && x->lan6_fd < 0) goto fail;
    x->lan_port = port;
    if (x->lan_fd >= 0) ep_add(u, x->lan_fd, TAG(TAG_LAN, 0), 0);
    if (x->lan6_fd >= 0) ep_add(u, x->lan6_fd, TAG(TAG_LAN, 1), 0);
    r.n = (uint16_t)((x->lan_fd >= 0 ? x->nifs : 0) + (x->lan6_fd >= 0 ? x->nifs6 : 0));
    io_answer(u, h, &r);
    return;
fail:
    x->nifs = x->nifs6 = 0;
    r.status = P2P_ERR_IO;
    io_answer(u, h, &r);
}

static void lan_stop(struct p2p_udp_extra *x)
{
    xclose(&x->lan_fd);
    xclose(&x->lan6_fd);
    x->nifs = x->nifs6 = 0;
}

/* Reads what waits on a LAN socket (fd: the IPv4 or the IPv6 one). An IPv6 link-local source
 * comes with its zone (sin6_scope_id: the interface it came in on). */
static void lan_readable(p2p_udp *u, p2p_host *h, int fd)
{
    uint8_t buf[2048];
    struct sockaddr_storage ss;
    socklen_t sl;
    p2p_addr from;
    ssize_t r;
    int k;

    for (k = 0; k < 64; k++) {
        sl = sizeof ss;
        r = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&ss, &sl);
        if (r < 0) {
            if (errno == EINTR) continue;
            return;
        }
        if (addr_from_sockaddr(&from, &ss) != 0) continue;
        u->stats.lan_received++;
        if (u->x->hooks.recv != NULL) u->x->hooks.recv(u->x->hooks.ud, &from, buf, (size_t)r, 1);
        (void)p2p_host_recv_lan(h, &from, buf, (size_t)r, p2p_udp_now());
    }
}

/* An IPv6 datagram out of the IPv6 LAN socket: to a multicast group, once per IPv6 interface
 * (IPV6_MULTICAST_IF, and the index as the group's zone); else as addressed (a link-local
 * address with its zone). to->sock > 0 picks IPv6 interface number to->sock only. */
static int lan_send6(p2p_udp *u, const p2p_addr *to, const uint8_t *buf, size_t len)
{
    struct p2p_udp_extra *x = u->x;
    struct sockaddr_storage ss;
    struct sockaddr_in6 *sa = (struct sockaddr_in6 *)&ss;
    socklen_t sl;
    int k, n = 0;

    if (x->lan6_fd < 0 || (sl = addr_to_sockaddr(AF_INET6, to, &ss)) == 0) return 0;
    if (to->ip[0] != 0xff) {
        if (sendto(x->lan6_fd, buf, len, 0, (struct sockaddr *)&ss, sl) >= 0) n++;
        return n;
    }
    for (k = 0; k < x->nifs6; k++) {
        unsigned int ix = x->ifs6[k];
        if (to->sock != 0 && k + 1 != to->sock) continue;
        (void)setsockopt(x->lan6_fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ix, sizeof ix);
        sa->sin6_scope_id = ix;
        if (sendto(x->lan6_fd, buf, len, 0, (struct sockaddr *)&ss, sl) >= 0) n++;
    }
    return n;
}

/* One datagram out of the LAN socket: to a multicast group, once per interface
 * (IP_MULTICAST_IF); to 255.255.255.255, to each interface's directed broadcast; else as
 * addressed. IPv6 goes out of the IPv6 socket (lan_send6). to->sock > 0 picks interface
 * number to->sock only. */
int p2p_udp_lan_send(p2p_udp *u, const p2p_addr *to, const uint8_t *buf, size_t len)
{
    struct p2p_udp_extra *x = u->x;
    struct sockaddr_in sa;
    uint64_t before = u->stats.lan_sent;
    int k;

    if (to->family == P2P_AF_INET6) {
        k = lan_send6(u, to, buf, len);
        u->stats.lan_sent += (uint64_t)k;
        return k;
    }
    if (x->lan_fd < 0 || to->family != P2P_AF_INET4) return 0;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(to->port);
    memcpy(&sa.sin_addr, to->ip, 4);
    if (to->ip[0] >= 224 && to->ip[0] <= 239) {
        for (k = 0; k < x->nifs; k++) {
            if (to->sock != 0 && k + 1 != to->sock) continue;
            (void)setsockopt(x->lan_fd, IPPROTO_IP, IP_MULTICAST_IF, &x->ifs[k].addr,
                             sizeof x->ifs[k].addr);
            if (sendto(x->lan_fd, buf, len, 0, (struct sockaddr *)&sa, sizeof sa) >= 0)
                u->stats.lan_sent++;
        }
    } else if (to->ip[0] == 255 && to->ip[1] == 255 && to->ip[2] == 255 && to->ip[3] == 255) {
        for (k = 0; k < x->nifs; k++) {
            if ((to->sock != 0 && k + 1 != to->sock) || !x->ifs[k].has_bcast) continue;
            sa.sin_addr = x->ifs[k].bcast;
            if (sendto(x->lan_fd, buf, len, 0, (struct sockaddr *)&sa, sizeof sa) >= 0)
                u->stats.lan_sent++;
        }
    } else if (sendto(x->lan_fd, buf, len, 0, (struct sockaddr *)&sa, sizeof sa) >= 0) {
        u->stats.lan_sent++;
    }
    return (int)(u->stats.lan_sent - before);
}

/* ---- STUN responder ---- */

int p2p_udp_stun_server(p2p_udp *u, uint16_t port, char *err, size_t errlen)
{
    struct p2p_udp_extra *x = u->x;
    p2p_addr a = u->local;
    struct sockaddr_storage ss;
    socklen_t sl;
    int fd, off = 0;

    if (x->stun_fd >= 0) return P2P_ERR_INVALID;
    a.port = port;
    a.sock = 0;
    fd = (int)open_socket(u->family);
    if (fd < 0) {
        set_err(err, errlen, "socket: %s", strerror(errno));
        return P2P_ERR_IO;
    }
    if (u->family == AF_INET6) (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    sl = addr_to_sockaddr(u->family, &a, &ss);
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0) {
        set_err(err, errlen, "STUN bind port %u: %s", (unsigned)port, strerror(errno));
        close(fd);
        return P2P_ERR_IO;
    }
    x->stun_fd = fd;
    ep_add(u, fd, TAG(TAG_STUN, 0), 0);
    return 0;
}

/* Token bucket: rate a second, burst = rate. Returns 1 when a token was taken. */
static int bucket_take(struct bucket *b, double rate, uint64_t now)
{
    if (b->t == 0) {
        b->tokens = rate;
    } else {
        b->tokens += (double)(now - b->t) * rate / 1e6;
        if (b->tokens > rate) b->tokens = rate;
    }
    b->t = now;
    if (b->tokens < 1.0) return 0;
    b->tokens -= 1.0;
    return 1;
}

static void stun_readable(p2p_udp *u)
{
    struct p2p_udp_extra *x = u->x;
    uint8_t in[1500], out[1500];
    struct sockaddr_storage ss;
    socklen_t sl;
    p2p_addr from;
    ssize_t r;
    size_t n;
    uint32_t hh;
    uint64_t now;
    int k, i;

    for (k = 0; k < 64; k++) {
        sl = sizeof ss;
        r = recvfrom(x->stun_fd, in, sizeof in, MSG_DONTWAIT, (struct sockaddr *)&ss, &sl);
        if (r < 0) {
            if (errno == EINTR) continue;
            return;
        }
        if (addr_from_sockaddr(&from, &ss) != 0 || r < 20) continue;
        now = p2p_udp_now();
        hh = 2166136261u;
        for (i = 0; i < (from.family == P2P_AF_INET4 ? 4 : 16); i++)
            hh = (hh ^ from.ip[i]) * 16777619u;
        if (!bucket_take(&x->stun_ip[hh % STUN_BUCKETS], STUN_RATE_IP, now) ||
            !bucket_take(&x->stun_all, STUN_RATE_ALL, now)) {
            u->stats.stun_limited++;
            continue;
        }
        n = p2p_stun_answer(in, (size_t)r, &from, out, sizeof out);
        if (n == 0 || n > 3 * (size_t)r) continue;
        if (sendto(x->stun_fd, out, n, 0, (struct sockaddr *)&ss, sl) >= 0)
            u->stats.stun_answered++;
    }
}

/* ---- sending to extra sockets ---- */

int p2p_udp_send(p2p_udp *u, const p2p_addr *to, const uint8_t *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    int fd;

    if (to->family == P2P_AF_STREAM) {
        struct ustream *s = stream_find(u, stream_sid(to));
        int r;
        if (s == NULL || !s->up) return P2P_ERR_PEER;
        r = p2p_tstream_send(&s->st, buf, len);
        if (r == P2P_ERR_FULL) u->stats.stream_dropped++;
        if (r != 0) return r;
        u->stats.sent++;
        return 0;
    }
    if (to->sock == 0) {
        fd = u->fd;
    } else {
        fd = u->x->punch[to->sock];
        if (fd < 0) return P2P_ERR_PEER;
    }
    sl = addr_to_sockaddr(u->family, to, &ss);
    if (sl == 0) return P2P_ERR_PEER;
    if (sendto(fd, buf, len, 0, (struct sockaddr *)&ss, sl) < 0) {
        u->stats.send_errors++;
        return P2P_ERR_IO;
    }
    u->stats.sent++;
    return 0;
}

/* Writes every stream with output waiting (after datagrams were queued on them). */
static void extra_write(p2p_udp *u)
{
    struct p2p_udp_extra *x = u->x;
    size_t n;
    int i;

    if (x->streams == NULL || x->nstreams == 0) return;
    for (i = 0; i < MAX_STREAMS; i++) {
        struct ustream *s = &x->streams[i];
        if (s->fd < 0 || s->connecting || p2p_tstream_out(&s->st, &n) == NULL) continue;
        if (p2p_tstream_write(&s->st, s->fd) != 0) {
            /* failed: the next readable/writable event reports it down */
            if (!s->want_out) {
                s->want_out = 1;
                ep_mod(u, s->fd, stream_tag(u, s), 1);
            }
            continue;
        }
        stream_interest(u, s);
    }
}

void p2p_udp_io(p2p_udp *u, p2p_host *h, const p2p_io *req)
{
    switch (req->kind) {
    case P2P_IO_GATEWAY: gateway_request(u, h, req); break;
    case P2P_IO_TCP_OPEN: tcp_open(u, h, req); break;
    case P2P_IO_TCP_CLOSE: tcp_close(u, req); break;
    case P2P_IO_HTTP: http_request(u, h, req); break;
    case P2P_IO_PUNCH_OPEN: punch_open(u, h, req); break;
    case P2P_IO_PUNCH_CLOSE: punch_close(u, req->addr.sock); break;
    case P2P_IO_LAN_START: lan_start(u, h, req); break;
    case P2P_IO_LAN_STOP: lan_stop(u->x); break;
    default: io_fail(u, h, req); break;
    }
}

/* One event on a tagged socket. */
static void extra_event(p2p_udp *u, p2p_host *h, uint64_t tag, int rd, int wr)
{
    struct p2p_udp_extra *x = u->x;
    uint32_t kind = (uint32_t)(tag >> 32), slot = (uint32_t)tag;

    switch (kind) {
    case TAG_PUNCH:
        if (slot >= 1 && slot <= P2P_IO_PUNCH_MAX && x->punch[slot] >= 0 && rd)
            punch_readable(u, h, (int)slot);
        break;
    case TAG_LAN:
        if (slot == 0 && x->lan_fd >= 0 && rd) lan_readable(u, h, x->lan_fd);
        if (slot == 1 && x->lan6_fd >= 0 && rd) lan_readable(u, h, x->lan6_fd);
        break;
    case TAG_STUN:
        if (x->stun_fd >= 0 && rd) stun_readable(u);
        break;
    case TAG_LISTEN:
        if (x->listen_fd >= 0 && rd) accept_streams(u);
        break;
    case TAG_STREAM:
        if (x->streams != NULL && slot < MAX_STREAMS && x->streams[slot].fd >= 0) {
            struct ustream *s = &x->streams[slot];
            if (wr || (s->connecting && rd)) stream_writable(u, h, s);
            if (s->fd >= 0 && rd) stream_readable(u, h, s);
        }
        break;
    case TAG_HTTP:
        if (slot < MAX_HTTP && x->http[slot].fd >= 0) http_event(u, h, &x->http[slot], rd, wr);
        break;
    default: break;
    }
}

/* Timeouts: streams that did not open in time, HTTP requests past 2 s, the gateway check. */
static void extra_timers(p2p_udp *u, p2p_host *h)
{
    struct p2p_udp_extra *x = u->x;
    uint64_t now = p2p_udp_now();
    int i;

    for (i = 0; i < MAX_HTTP; i++)
        if (x->http[i].fd >= 0 && now >= x->http[i].deadline) http_done(u, h, &x->http[i], 0);
    if (x->streams != NULL)
        for (i = 0; i < MAX_STREAMS; i++)
            if (x->streams[i].fd >= 0 && x->streams[i].deadline != 0 &&
                now >= x->streams[i].deadline)
                stream_gone(u, h, &x->streams[i]);
    if (x->listen_paused && now >= x->listen_paused && x->listen_fd >= 0) {
        x->listen_paused = 0;
        ep_add(u, x->listen_fd, TAG(TAG_LISTEN, 0), 0);
    }
    gateway_check(u, h, now);
}

/* Services every extra socket that is ready (without waiting). */
static void extra_service(p2p_udp *u, p2p_host *h, int waited)
{
    struct p2p_udp_extra *x = u->x;
    int i, n;

    (void)waited;
#if HAVE_EPOLL
    if (x->epfd >= 0) {
        struct epoll_event ev[64];
        if (!extra_open(u)) { /* only the UDP socket: nothing to ask epoll (no system call) */
            extra_timers(u, h);
            return;
        }
        int rounds = 0;
        do {
            n = epoll_wait(x->epfd, ev, 64, 0);
            for (i = 0; i < n; i++) {
                uint32_t e = ev[i].events;
                if ((uint32_t)(ev[i].data.u64 >> 32) == TAG_MAIN) continue;
                extra_event(u, h, ev[i].data.u64, (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0,
                            (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0);
            }
        } while (n == 64 && ++rounds < 8);
        extra_timers(u, h);
        return;
    }
#endif
    if (extra_open(u)) {
        /* poll() over every extra socket */
        struct pollfd pf[1 + P2P_IO_PUNCH_MAX + 4 + MAX_STREAMS + MAX_HTTP];
        uint64_t tags[sizeof pf / sizeof pf[0]];
        int m = 0;
#define ADD(fdv, tagv, outv)                                     \
    do {                                                         \
        pf[m].fd = (fdv);                                        \
        pf[m].events = (short)(POLLIN | ((outv) ? POLLOUT : 0)); \
        pf[m].revents = 0;                                       \
        tags[m++] = (tagv);                                      \
    } while (0)
        for (i = 1; i <= P2P_IO_PUNCH_MAX; i++)
            if (x->punch[i] >= 0) ADD(x->punch[i], TAG(TAG_PUNCH, i), 0);
        if (x->lan_fd >= 0) ADD(x->lan_fd, TAG(TAG_LAN, 0), 0);
        if (x->lan6_fd >= 0) ADD(x->lan6_fd, TAG(TAG_LAN, 1), 0);
        if (x->stun_fd >= 0) ADD(x->stun_fd, TAG(TAG_STUN, 0), 0);
        if (x->listen_fd >= 0 && !x->listen_paused) ADD(x->listen_fd, TAG(TAG_LISTEN, 0), 0);
        if (x->streams != NULL)
            for (i = 0; i < MAX_STREAMS; i++)
                if (x->streams[i].fd >= 0)
                    ADD(x->streams[i].fd, TAG(TAG_STREAM, i), x->streams[i].want_out);
        for (i = 0; i < MAX_HTTP; i++)
            if (x->http[i].fd >= 0) ADD(x->http[i].fd, TAG(TAG_HTTP, i), x->http[i].want_out);
#undef ADD
        n = poll(pf, (nfds_t)m, 0);
        for (i = 0; n > 0 && i < m; i++)
            if (pf[i].revents != 0)
                extra_event(u, h, tags[i], (pf[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0,
                            (pf[i].revents & (POLLOUT | POLLERR | POLLHUP)) != 0);
    }
    extra_timers(u, h);
}
#endif /* _WIN32 */

/* Drains the host's io requests and LAN datagrams. Returns 1 when it did anything. */
static int drain_io(p2p_udp *u, p2p_host *h)
{
    p2p_io req;
    p2p_addr to;
    uint8_t buf[2048];
    size_t n;
    int did = 0, k;

    for (k = 0; k < 1024; k++) {
        int any = 0;
        memset(&req, 0, sizeof req);
        if (p2p_host_next_io(h, &req) == 1) {
            p2p_udp_io(u, h, &req);
            any = did = 1;
        }
        memset(&to, 0, sizeof to);
        if ((n = p2p_host_next_lan(h, &to, buf, sizeof buf)) > 0) {
            (void)p2p_udp_lan_send(u, &to, buf, n);
            any = did = 1;
        }
        if (!any) break;
    }
    return did;
}

uint64_t p2p_udp_next_timeout(const p2p_udp *u, const p2p_host *h)
{
    uint64_t a = p2p_host_next_timeout(h), b = extra_deadline(u);
    return a < b ? a : b;
}

/* ---- the loop ------------------------------------------------------------------------- */

/* Waits up to wait_us (> 0) for the socket to become readable, or writable when
 * want_write. Returns >= 0, or -1 with the error in sock_error(). */
static int wait_socket(p2p_udp *u, int want_write, uint64_t wait)
{
#ifdef _WIN32
    /* Past ~68 years is forever. */
    return p2p_sys_wait(u->fd, want_write,
                        wait >= (uint64_t)INT_MAX * 1000000u ? UINT64_MAX : wait);
#else
    struct pollfd pfd[2];
    nfds_t n = 1;

    pfd[0].fd = u->fd;
    pfd[0].events = POLLIN | (want_write ? POLLOUT : 0);
    pfd[0].revents = 0;
#if HAVE_EPOLL
    /* The epoll set holds the other sockets: it is readable when one of them is ready. */
    if (u->x->epfd >= 0 && extra_open(u)) {
        pfd[1].fd = u->x->epfd;
        pfd[1].events = POLLIN;
        pfd[1].revents = 0;
        n = 2;
    }
#endif
#if HAVE_PPOLL
    {
        struct timespec ts;

        /* Past ~68 years is forever; ppoll needs a NULL timeout for that. */
        if (wait >= (uint64_t)INT_MAX * 1000000u) return ppoll(pfd, n, NULL, NULL);
        ts.tv_sec = (time_t)(wait / 1000000u);
        ts.tv_nsec = (long)(wait % 1000000u) * 1000;
        return ppoll(pfd, n, &ts, NULL);
    }
#else
    /* poll counts milliseconds: round up, so a wait for a timer never ends just before it is
     * due (which would spin until it is). */
    if (wait >= (uint64_t)INT_MAX * 1000u) return poll(pfd, n, -1);
    return poll(pfd, n, (int)((wait + 999u) / 1000u));
#endif
#endif
}

int p2p_udp_settle(p2p_udp *u, p2p_host *h, uint64_t max_us)
{
    uint64_t end = p2p_udp_now() + max_us, now;
    int rc = p2p_udp_flush(u, h);
    while (rc >= 0 && http_pending(u) && (now = p2p_udp_now()) < end) {
        uint64_t wait = end - now < 10000 ? end - now : 10000;
        rc = p2p_udp_pump(u, h, wait);
    }
    return rc < 0 ? rc : 0;
}

int p2p_udp_pump(p2p_udp *u, p2p_host *h, uint64_t timeout_us)
{
    uint64_t now, next, wait = timeout_us;
    int n, r;

    now = p2p_udp_now();
    next = p2p_udp_next_timeout(u, h);
    if (next != P2P_TIME_NEVER) wait = next <= now ? 0 : (next - now < wait ? next - now : wait);
    if (wait > 0) {
        r = wait_socket(u, u->out_n > 0, wait);
        /* EINTR: a signal for the application; do the rest of the turn and return. */
        if (r < 0 && sock_error() != EINTR) return P2P_ERR_IO;
    }
    n = read_waiting(u, h);
    if (n < 0) return n;
    extra_service(u, h, wait > 0);
    now = p2p_udp_now();
    if (p2p_host_next_timeout(h) <= now) (void)p2p_host_on_timeout(h, now);
    if (p2p_udp_flush(u, h) != 0) return P2P_ERR_IO;
    return n;
}
