/*
 * driver/udp_win.c - the Windows side of the UDP driver: the Winsock 2 calls and the clocks
 * that udp.c uses through driver/udp_sys.h. Elsewhere this file is empty.
 *
 * Winsock differs from POSIX sockets where it matters here:
 * - it must be started (WSAStartup) before any socket or name call: p2p_sys_init, once;
 * - a UDP socket reports an ICMP "port unreachable" for an earlier send as WSAECONNRESET on a
 *   later receive, and a "TTL expired" as WSAENETRESET: both are turned off per socket
 *   (SIO_UDP_CONNRESET, SIO_UDP_NETRESET), as Linux does not report them on unconnected
 *   sockets either;
 * - a datagram longer than the buffer fails with WSAEMSGSIZE instead of arriving cut short:
 *   it is passed on cut short, so the host drops it as oversized, as on POSIX;
 * - errors are WSAGetLastError() codes: they are mapped to the errno values udp.c tests;
 * - sockets are not inherited by child processes (WSA_FLAG_NO_HANDLE_INHERIT) and become
 *   non-blocking with ioctlsocket(FIONBIO); WSAPoll waits, in milliseconds (rounded up).
 * The clocks (QueryPerformanceCounter, GetSystemTimeAsFileTime) are in udp.c.
 */
#ifdef _WIN32

#include "driver/udp_sys.h"

#include <iphlpapi.h>
#include <mstcpip.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <windows.h>

#include "p2pnet.h"

#ifndef SIO_UDP_CONNRESET
#define SIO_UDP_CONNRESET _WSAIOW(IOC_VENDOR, 12)
#endif
#ifndef SIO_UDP_NETRESET
#define SIO_UDP_NETRESET _WSAIOW(IOC_VENDOR, 15)
#endif
#ifndef WSA_FLAG_NO_HANDLE_INHERIT
#define WSA_FLAG_NO_HANDLE_INHERIT 0x80
#endif
#ifndef IP_DONTFRAGMENT
#define IP_DONTFRAGMENT 14
#endif
#ifndef IPV6_DONTFRAG
#define IPV6_DONTFRAG 14
#endif

/* ---- Winsock -------------------------------------------------------------------------- */

static INIT_ONCE wsa_once = INIT_ONCE_STATIC_INIT;
static int wsa_error;

static BOOL CALLBACK wsa_start(PINIT_ONCE once, PVOID param, PVOID *ctx)
{
    WSADATA data;

    (void)once;
    (void)param;
    (void)ctx;
    wsa_error = WSAStartup(MAKEWORD(2, 2), &data);
    return TRUE;
}

int p2p_sys_init(char *err, size_t errlen)
{
    InitOnceExecuteOnce(&wsa_once, wsa_start, NULL, NULL);
    if (wsa_error == 0) return 0;
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "WSAStartup: %s", p2p_sys_strerror(wsa_error));
    return -1;
}

static int map_error(int w)
{
    switch (w) {
    case WSAEWOULDBLOCK: return EWOULDBLOCK;
    case WSAEINTR: return EINTR;
    case WSAEMSGSIZE: return EMSGSIZE;
    case WSAECONNRESET: return ECONNRESET;
    case WSAENETRESET: return ENETRESET;
    case WSAECONNREFUSED: return ECONNREFUSED;
    case WSAEHOSTUNREACH: return EHOSTUNREACH;
    case WSAENETUNREACH: return ENETUNREACH;
    case WSAENOBUFS: return ENOBUFS;
    case WSAEADDRINUSE: return EADDRINUSE;
    case WSAEADDRNOTAVAIL: return EADDRNOTAVAIL;
    case WSAEAFNOSUPPORT: return EAFNOSUPPORT;
    case WSAEINVAL: return EINVAL;
    case WSAEFAULT: return EFAULT;
    case WSAENOTSOCK: return ENOTSOCK;
    case WSAEBADF: return EBADF;
    case WSAEOPNOTSUPP: return EOPNOTSUPP;
    case WSAEACCES: return EACCES;
    default: return w; /* stays a WSA code (10000 and up): fatal to nothing, counted */
    }
}

int p2p_sys_error(void)
{
    return map_error(WSAGetLastError());
}

const char *p2p_sys_strerror(int e)
{
    static __thread char buf[160];
    DWORD n;

    switch (e) { /* the mapped codes' texts, as POSIX systems word them */
    case EWOULDBLOCK: return "Resource temporarily unavailable";
    case EADDRINUSE: return "Address already in use";
    case EADDRNOTAVAIL: return "Cannot assign requested address";
    case EAFNOSUPPORT: return "Address family not supported by protocol";
    case EACCES: return "Permission denied";
    case EINVAL: return "Invalid argument";
    default: break;
    }
    if (e < WSABASEERR) return strerror(e);
    n = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, (DWORD)e,
                       0, buf, sizeof buf, NULL);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == '.')) buf[--n] = 0;
    if (n == 0) snprintf(buf, sizeof buf, "Winsock error %d", e);
    return buf;
}

p2p_sock p2p_sys_socket(int family)
{
    SOCKET s;
    u_long nb = 1;
    BOOL off = FALSE;
    DWORD on = 1, got = 0;
    int e;

    s = WSASocketW(family, SOCK_DGRAM, IPPROTO_UDP, NULL, 0, WSA_FLAG_NO_HANDLE_INHERIT);
    /* Before Windows 7 SP1 the flag is unknown (WSAEINVAL): then without it. */
    if (s == INVALID_SOCKET && WSAGetLastError() == WSAEINVAL)
        s = WSASocketW(family, SOCK_DGRAM, IPPROTO_UDP, NULL, 0, 0);
    if (s == INVALID_SOCKET) return s;
    if (ioctlsocket(s, FIONBIO, &nb) != 0) {
        e = WSAGetLastError();
        closesocket(s);
        WSASetLastError(e);
        return INVALID_SOCKET;
    }
    /* Best effort: without them a refused send shows up as a receive error (counted). */
    (void)WSAIoctl(s, SIO_UDP_CONNRESET, &off, sizeof off, NULL, 0, &got, NULL, NULL);
    (void)WSAIoctl(s, SIO_UDP_NETRESET, &off, sizeof off, NULL, 0, &got, NULL, NULL);
    /* No other socket may bind this one's port with SO_REUSEADDR and take its traffic. */
    (void)setsockopt(s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, (const char *)&on, sizeof on);
    /* Don't fragment: see set_dont_fragment in udp.c. */
    (void)setsockopt(s, IPPROTO_IP, IP_DONTFRAGMENT, (const char *)&on, sizeof on);
    if (family == AF_INET6)
        (void)setsockopt(s, IPPROTO_IPV6, IPV6_DONTFRAG, (const char *)&on, sizeof on);
    return s;
}

void p2p_sys_close(p2p_sock s)
{
    closesocket(s);
}

long p2p_sys_sendto(p2p_sock s, const void *buf, size_t len, const void *sa, int salen)
{
    return sendto(s, (const char *)buf, (int)len, 0, (const struct sockaddr *)sa, salen);
}

long p2p_sys_recvfrom(p2p_sock s, void *buf, size_t len, void *sa, int *salen)
{
    int r = recvfrom(s, (char *)buf, (int)len, 0, (struct sockaddr *)sa, salen);

    if (r == SOCKET_ERROR && WSAGetLastError() == WSAEMSGSIZE) return (long)len;
    return r;
}

int p2p_sys_wait(p2p_sock s, int want_write, uint64_t wait_us)
{
    WSAPOLLFD p;
    int ms;

    p.fd = s;
    p.events = POLLRDNORM | (want_write ? POLLWRNORM : 0);
    p.revents = 0;
    if (wait_us == UINT64_MAX)
        ms = -1;
    else if (wait_us >= (uint64_t)INT_MAX * 1000u)
        ms = INT_MAX;
    else
        ms = (int)((wait_us + 999u) / 1000u);
    return WSAPoll(&p, 1, ms) == SOCKET_ERROR ? -1 : 0;
}

size_t p2p_sys_local_addrs(int v6, uint16_t port, p2p_addr *out, size_t cap)
{
    ULONG size = 16 * 1024, flags = GAA_FLAG_SKIP_ANYCAST | GAA_FLAG_SKIP_MULTICAST |
                                    GAA_FLAG_SKIP_DNS_SERVER | GAA_FLAG_SKIP_FRIENDLY_NAME;
    IP_ADAPTER_ADDRESSES *list = NULL, *ad;
    IP_ADAPTER_UNICAST_ADDRESS *ua;
    ULONG r = ERROR_BUFFER_OVERFLOW;
    size_t n = 0;
    int tries;

    for (tries = 0; tries < 3 && r == ERROR_BUFFER_OVERFLOW; tries++) {
        free(list);
        list = malloc(size);
        if (list == NULL) return 0;
        r = GetAdaptersAddresses(v6 ? AF_UNSPEC : AF_INET, flags, NULL, list, &size);
    }
    if (r != NO_ERROR) {
        free(list);
        return 0;
    }
    for (ad = list; ad != NULL && n < cap; ad = ad->Next) {
        if (ad->OperStatus != IfOperStatusUp || ad->IfType == IF_TYPE_SOFTWARE_LOOPBACK) continue;
        for (ua = ad->FirstUnicastAddress; ua != NULL && n < cap; ua = ua->Next) {
            const struct sockaddr *sa = ua->Address.lpSockaddr;
            p2p_addr a;

            memset(&a, 0, sizeof a);
            if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
                a.family = P2P_AF_INET4;
                memcpy(a.ip, &s4->sin_addr, 4);
            } else if (sa->sa_family == AF_INET6 && v6) {
                const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
                const uint8_t *ip = (const uint8_t *)&s6->sin6_addr;
                if (ip[0] == 0xfe && (ip[1] & 0xc0) == 0x80) continue; /* link-local */
                a.family = P2P_AF_INET6;
                memcpy(a.ip, ip, 16);
            } else {
                continue;
            }
            a.port = port;
            out[n++] = a;
        }
    }
    free(list);
    return n;
}

#else
/* ISO C wants at least one declaration in a file. */
typedef int p2p_udp_win_unused;
#endif
