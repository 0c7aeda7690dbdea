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
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#endif

#include "driver/udp.h"

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

struct p2p_udp {
    p2p_sock fd;
    int family; /* AF_INET or AF_INET6 */
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

int p2p_udp_features(void)
{
    return (USE_GSO ? P2P_UDP_GSO : 0) | (USE_GRO ? P2P_UDP_GRO : 0) |
           (HAVE_SENDMMSG && HAVE_RECVMMSG ? P2P_UDP_MMSG : 0) |
           (HAVE_IP_MTU_DISCOVER ? P2P_UDP_PMTU_PROBE : 0) | (HAS_DONTFRAG ? P2P_UDP_DONTFRAG : 0);
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
    sock_close(u->fd);
    free(u);
}

int p2p_udp_fd(const p2p_udp *u)
{
    /* A Winsock SOCKET is a handle, and handles fit in 32 bits (Windows keeps them so for
     * 32-bit interoperation). */
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
        out[0] = *b; /* bound to one address: that is the only one */
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

int p2p_udp_flush(p2p_udp *u, p2p_host *h)
{
    struct out_dgram *d;
    p2p_addr to;
    size_t len;
    int host_empty, r;

    for (;;) {
        host_empty = 0;
        while (u->out_n < BATCH) {
            d = &u->out[u->out_n];
            len = p2p_host_next_datagram(h, &to, d->buf, sizeof d->buf);
            if (len == 0) {
                host_empty = 1;
                break;
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
    struct pollfd pfd;

    pfd.fd = u->fd;
    pfd.events = POLLIN | (want_write ? POLLOUT : 0);
    pfd.revents = 0;
#if HAVE_PPOLL
    {
        struct timespec ts;

        /* Past ~68 years is forever; ppoll needs a NULL timeout for that. */
        if (wait >= (uint64_t)INT_MAX * 1000000u) return ppoll(&pfd, 1, NULL, NULL);
        ts.tv_sec = (time_t)(wait / 1000000u);
        ts.tv_nsec = (long)(wait % 1000000u) * 1000;
        return ppoll(&pfd, 1, &ts, NULL);
    }
#else
    /* poll counts milliseconds: round up, so a wait for a timer never ends just before it is
     * due (which would spin until it is). */
    if (wait >= (uint64_t)INT_MAX * 1000u) return poll(&pfd, 1, -1);
    return poll(&pfd, 1, (int)((wait + 999u) / 1000u));
#endif
#endif
}

int p2p_udp_pump(p2p_udp *u, p2p_host *h, uint64_t timeout_us)
{
    uint64_t now, next, wait = timeout_us;
    int n, r;

    now = p2p_udp_now();
    next = p2p_host_next_timeout(h);
    if (next != P2P_TIME_NEVER) wait = next <= now ? 0 : (next - now < wait ? next - now : wait);
    if (wait > 0) {
        r = wait_socket(u, u->out_n > 0, wait);
        /* EINTR: a signal for the application; do the rest of the turn and return. */
        if (r < 0 && sock_error() != EINTR) return P2P_ERR_IO;
    }
    n = read_waiting(u, h);
    if (n < 0) return n;
    now = p2p_udp_now();
    if (p2p_host_next_timeout(h) <= now) (void)p2p_host_on_timeout(h, now);
    if (p2p_udp_flush(u, h) != 0) return P2P_ERR_IO;
    return n;
}
