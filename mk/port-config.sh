#!/bin/sh
# mk/port-config.sh OUT CC PROBES [CFLAGS...] - writes the UDP driver's feature switches
# (HAVE_*, see csrc/driver/udp_sys.h) to OUT, each found by compiling (and for functions,
# linking) a tiny program with CC. PROBES=0 writes the Linux extensions as absent (the batched
# calls, ppoll, SOCK_NONBLOCK, offload, IP_MTU_DISCOVER): the plain POSIX path the BSDs and
# macOS get, to test that path on Linux. What those systems have too (getifaddrs, IP_DONTFRAG)
# is still probed. OUT changes only when
# its contents do, so the driver is rebuilt only then.
out=$1 cc=$2 probes=$3
shift 3
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
body="/* Written by mk/port-config.sh ($cc, probes $probes); see csrc/driver/udp_sys.h. */"

# probe NAME compile|link linux|posix HEADERS... -- CODE CFLAGS...
probe() {
    name=$1 how=$2 kind=$3
    shift 3
    : >"$tmp/p.c"
    echo '#define _GNU_SOURCE' >>"$tmp/p.c"
    while [ "$1" != -- ]; do echo "#include <$1>" >>"$tmp/p.c"; shift; done
    shift
    printf 'int main(void)\n{\n%s\n}\n' "$1" >>"$tmp/p.c"
    shift
    v=0
    if [ "$probes" != 0 ] || [ "$kind" = posix ]; then
        if [ "$how" = link ]; then
            $cc "$@" -o "$tmp/p" "$tmp/p.c" >/dev/null 2>&1 && v=1
        else
            $cc "$@" -c -o "$tmp/p.o" "$tmp/p.c" >/dev/null 2>&1 && v=1
        fi
    fi
    body="$body
#define $name $v"
}

probe HAVE_RECVMMSG link linux sys/socket.h stddef.h -- \
    'struct mmsghdr m[2]; return recvmmsg(0, m, 2, MSG_DONTWAIT, NULL);' "$@"
probe HAVE_SENDMMSG link linux sys/socket.h -- 'struct mmsghdr m[2]; return sendmmsg(0, m, 2, 0);' "$@"
probe HAVE_PPOLL link linux poll.h stddef.h -- 'struct pollfd p; return ppoll(&p, 1, NULL, NULL);' "$@"
probe HAVE_SOCK_NONBLOCK compile linux sys/socket.h -- \
    'return socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);' "$@"
probe HAVE_UDP_SEGMENT compile linux netinet/in.h netinet/udp.h -- 'return UDP_SEGMENT;' "$@"
probe HAVE_UDP_GRO compile linux netinet/in.h netinet/udp.h -- 'return UDP_GRO;' "$@"
probe HAVE_IP_MTU_DISCOVER compile linux netinet/in.h -- 'return IP_MTU_DISCOVER + IP_PMTUDISC_PROBE;' "$@"
probe HAVE_EPOLL link linux sys/epoll.h stddef.h -- \
    'struct epoll_event e[1]; int fd = epoll_create1(EPOLL_CLOEXEC); return epoll_wait(fd, e, 1, 0);' "$@"
probe HAVE_IP_DONTFRAG compile posix netinet/in.h -- 'return IP_DONTFRAG;' "$@"
probe HAVE_GETIFADDRS link posix sys/types.h ifaddrs.h stddef.h -- \
    'struct ifaddrs *l = NULL; if (getifaddrs(&l) == 0) freeifaddrs(l); return 0;' "$@"

printf '%s\n' "$body" >"$tmp/config.h"
mkdir -p "$(dirname "$out")"
if ! cmp -s "$tmp/config.h" "$out" 2>/dev/null; then cp "$tmp/config.h" "$out"; fi
