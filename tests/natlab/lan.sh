#!/usr/bin/env bash
# The LAN lab (issue 12, scenario 4): hosts on one Ethernet segment, for LAN discovery. Built
# and torn down as root; nothing leaves the machine (the namespaces have no link to the host's
# network, and the segment is private, 10.9.0.0/24).
#
#        l1 10.9.0.1    l2 10.9.0.2    l3 10.9.0.3    l4 10.9.0.4     (eth0 in each)
#             |              |              |              |
#        +----+--------------+--------------+--------------+----+
#        |        br0 (in namespace "lan"), multicast_snooping 0 |
#        +-------------------------------------------------------+
#
# No host has a default route: a multicast or broadcast send must name its interface
# (IP_MULTICAST_IF / the directed broadcast 10.9.0.255), as on a LAN without a router.
# multicast_snooping 0 makes the bridge flood multicast to every port, so no IGMP querier is
# needed. IPv6 is off, as in lab.sh.
#
# Usage (PREFIX names the namespaces, PREFIX-lan, PREFIX-l1, ...; use a unique one such as
# p2pn<pid>):
#   lan.sh up PREFIX [N]          builds the segment with hosts l1..lN (N 2..8, default 4);
#                                 removes LAN labs left by processes that no longer run
#   lan.sh down PREFIX            kills the lab's processes, deletes its namespaces
#   lan.sh exec PREFIX HOST CMD...   runs CMD in HOST's namespace (lan, l1, l2, ...)
#   lan.sh hosts PREFIX           the lab's host names, one a line
set -Eeuo pipefail

die() { echo "lan.sh: $*" >&2; exit 2; }

ns() { echo "$PREFIX-$1"; }
in_ns() { local h=$1; shift; ip netns exec "$(ns "$h")" "$@"; }

# Every namespace of this lab that exists (the bridge's and the hosts').
existing() {
    ip netns list | awk '{print $1}' | grep -E "^$PREFIX-(lan|l[0-9]+)\$" || true
}

down() {
    local name pid
    for name in $(existing); do
        for pid in $(ip netns pids "$name" 2>/dev/null || true); do
            kill -9 "$pid" 2>/dev/null || true
        done
        ip netns del "$name" 2>/dev/null || true
    done
}

# LAN labs named p2pn<pid>-... whose process is gone were left by a run that was killed.
remove_stale() {
    local name pid
    for name in $(ip netns list | awk '{print $1}' | grep -E '^p2pn[0-9]+-' || true); do
        pid=${name#p2pn}
        pid=${pid%%-*}
        if ! kill -0 "$pid" 2>/dev/null; then
            PREFIX=p2pn$pid down
        fi
    done
}

up() { # [n]
    local n=${1:-4} i h
    [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 2 ] && [ "$n" -le 8 ] || die "N must be 2..8"
    remove_stale
    down
    trap 'down' ERR
    ip netns add "$(ns lan)"
    in_ns lan ip link set lo up
    in_ns lan ip link add br0 type bridge
    # flood multicast to every port: no IGMP querier on this segment
    in_ns lan ip link set br0 type bridge mcast_snooping 0
    in_ns lan ip link set br0 up
    for i in $(seq 1 "$n"); do
        h=l$i
        ip netns add "$(ns "$h")"
        in_ns "$h" ip link set lo up
        in_ns "$h" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
        in_ns "$h" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
        ip -n "$(ns lan)" link add "v$h" type veth peer name eth0 netns "$(ns "$h")"
        in_ns lan ip link set "v$h" master br0
        in_ns lan ip link set "v$h" up
        in_ns "$h" ip addr add "10.9.0.$i/24" brd 10.9.0.255 dev eth0
        in_ns "$h" ip link set eth0 up
    done
    [ "$(in_ns lan cat /sys/class/net/br0/bridge/multicast_snooping)" = 0 ] ||
        die "could not turn multicast snooping off on br0"
    trap - ERR
}

[ "$(id -u)" = 0 ] || die "must run as root"
cmd=${1:-}
PREFIX=${2:-}
[[ $PREFIX =~ ^[A-Za-z0-9_]+$ ]] || die "usage: lan.sh up|down|exec|hosts PREFIX ..."
shift 2
case $cmd in
    up) up "$@" ;;
    down) down ;;
    hosts) existing | sed "s/^$PREFIX-//" | grep -v '^lan$' | sort ;;
    exec)
        h=${1:-}
        shift
        [[ $h =~ ^(lan|l[0-9]+)$ ]] && [ -e "/run/netns/$(ns "$h")" ] || die "unknown host '$h'"
        in_ns "$h" "$@"
        ;;
    *) die "unknown command '$cmd'" ;;
esac
