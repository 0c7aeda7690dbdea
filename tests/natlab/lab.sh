#!/usr/bin/env bash
# The NAT lab: network namespaces joined by veth links, built and torn down as root. Nothing
# leaves the machine: the namespaces have no link to the host's network, and every address
# is private (10/8) or a documentation range (RFC 5737).
#
#        A 10.0.1.2                                                     B 10.0.2.2
#          | lan 10.0.1.1                                   lan 10.0.2.1 |
#        NATA  wan 198.51.100.2 ---- 198.51.100.1   203.0.113.1 ---- 203.0.113.2 wan  NATB
#                                         \             /
#                                             PUB (router)
#                                         /             \
#              MED 192.0.2.2 ---- 192.0.2.1        192.0.2.17 ---- 192.0.2.18 GEN
#
# A and B are private hosts, each behind its own NAT router. MED (a mediator) and GEN (a
# "genesis" mesh member) are public hosts. PUB routes between the public networks only: it
# has no route to 10/8, so private addresses are unreachable from outside their NAT.
#
# The NAT routers masquerade what leaves their WAN. "cone": plain MASQUERADE, which keeps the
# source port when it is free (the same mapping whatever the destination); "symmetric":
# MASQUERADE --random-fully, a new random port for every destination; "ports LO-HI":
# MASQUERADE into that port range (to change an existing mapping). Inbound, they forward
# only replies (ESTABLISHED,RELATED) and drop unsolicited UDP in INPUT: a packet accepted in
# INPUT would leave a conntrack entry behind even with nothing listening, and that entry
# would then stop MASQUERADE from keeping the source port of a later outgoing flow to the
# same peer, which is the flow hole punching opens.
#
# Usage (PREFIX names the lab's namespaces, PREFIX-a, PREFIX-nata, ...; use a unique one,
# such as p2pl<pid>):
#   lab.sh up PREFIX [cone|symmetric]     builds the lab (both NATs of that kind); removes
#                                         labs left by processes that no longer run
#   lab.sh nat PREFIX a|b MODE            MODE: cone, symmetric or ports LO-HI; flushes the
#                                         router's conntrack table, so the mapping changes
#   lab.sh flush PREFIX a|b               flushes the router's conntrack table
#   lab.sh conntrack PREFIX a|b [ARGS]    conntrack -L ARGS on the router
#   lab.sh down PREFIX                    kills the lab's processes, deletes its namespaces
#   lab.sh exec PREFIX HOST CMD...        runs CMD in HOST's namespace (a b nata natb pub
#                                         med gen)
set -Eeuo pipefail

HOSTS="a b nata natb pub med gen"

die() { echo "lab.sh: $*" >&2; exit 2; }

ns() { echo "$PREFIX-$1"; }
in_ns() { local h=$1; shift; ip netns exec "$(ns "$h")" "$@"; }

# A veth pair between two namespaces, each end named and addressed there.
link() { # host1 if1 addr1/len host2 if2 addr2/len
    ip -n "$(ns "$1")" link add "$2" type veth peer name "$5" netns "$(ns "$4")"
    ip -n "$(ns "$1")" addr add "$3" dev "$2"
    ip -n "$(ns "$4")" addr add "$6" dev "$5"
    ip -n "$(ns "$1")" link set "$2" up
    ip -n "$(ns "$4")" link set "$5" up
}

# The NAT router's rules for MODE; replaces any earlier ones.
nat_rules() { # host mode [ports]
    local h=$1 mode=$2 masq
    case $mode in
        cone) masq=(-j MASQUERADE) ;;
        symmetric) masq=(-j MASQUERADE --random-fully) ;;
        ports) [[ ${3:-} =~ ^[0-9]+-[0-9]+$ ]] || die "ports needs LO-HI"
               masq=(-p udp -j MASQUERADE --to-ports "$3") ;;
        *) die "unknown NAT mode '$mode'" ;;
    esac
    in_ns "$h" iptables -w -t nat -F POSTROUTING
    in_ns "$h" iptables -w -t nat -A POSTROUTING -o wan "${masq[@]}"
    in_ns "$h" iptables -w -F FORWARD
    in_ns "$h" iptables -w -P FORWARD DROP
    in_ns "$h" iptables -w -A FORWARD -i lan -o wan -j ACCEPT
    in_ns "$h" iptables -w -A FORWARD -i wan -o lan -m conntrack --ctstate ESTABLISHED,RELATED \
        -j ACCEPT
    in_ns "$h" iptables -w -F INPUT
    in_ns "$h" iptables -w -A INPUT -i wan -p udp -j DROP
}

flush() { # host
    # conntrack exits 1 when the table was already empty
    in_ns "$1" conntrack -F >/dev/null 2>&1 || true
}

down() {
    local h pid
    for h in $HOSTS; do
        [ -e "/run/netns/$(ns "$h")" ] || continue
        for pid in $(ip netns pids "$(ns "$h")" 2>/dev/null || true); do
            kill -9 "$pid" 2>/dev/null || true
        done
        ip netns del "$(ns "$h")" 2>/dev/null || true
    done
}

# Labs named p2pl<pid>-... whose process is gone were left by a run that was killed.
remove_stale() {
    local name pid
    for name in $(ip netns list | awk '{print $1}' | grep -E '^p2pl[0-9]+-' || true); do
        pid=${name#p2pl}
        pid=${pid%%-*}
        if ! kill -0 "$pid" 2>/dev/null; then
            PREFIX=p2pl$pid down
        fi
    done
}

up() { # mode
    local mode=${1:-cone} h
    remove_stale
    down
    trap 'down' ERR
    for h in $HOSTS; do
        ip netns add "$(ns "$h")"
        in_ns "$h" ip link set lo up
        in_ns "$h" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
        in_ns "$h" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
    done
    link pub med 192.0.2.1/28 med eth0 192.0.2.2/28
    link pub gen 192.0.2.17/28 gen eth0 192.0.2.18/28
    link pub nata 198.51.100.1/24 nata wan 198.51.100.2/24
    link pub natb 203.0.113.1/24 natb wan 203.0.113.2/24
    link nata lan 10.0.1.1/24 a eth0 10.0.1.2/24
    link natb lan 10.0.2.1/24 b eth0 10.0.2.2/24
    in_ns med ip route add default via 192.0.2.1
    in_ns gen ip route add default via 192.0.2.17
    in_ns nata ip route add default via 198.51.100.1
    in_ns natb ip route add default via 203.0.113.1
    in_ns a ip route add default via 10.0.1.1
    in_ns b ip route add default via 10.0.2.1
    for h in pub nata natb; do
        in_ns "$h" sysctl -qw net.ipv4.ip_forward=1
    done
    nat_rules nata "$mode"
    nat_rules natb "$mode"
    trap - ERR
}

side() { # a|b -> the router's host name
    case ${1:-} in a) echo nata ;; b) echo natb ;; *) die "side must be a or b" ;; esac
}

[ "$(id -u)" = 0 ] || die "must run as root"
cmd=${1:-}
PREFIX=${2:-}
[[ $PREFIX =~ ^[A-Za-z0-9_]+$ ]] || die "usage: lab.sh up|nat|flush|conntrack|down|exec PREFIX ..."
shift 2
case $cmd in
    up) up "$@" ;;
    down) down ;;
    # A packet in flight through the router during the first flush can re-create the old
    # mapping; the second flush, once the new rules are certainly in force, removes it.
    nat) r=$(side "${1:-}"); nat_rules "$r" "${2:-}" "${3:-}"; flush "$r"; sleep 0.2; flush "$r" ;;
    flush) flush "$(side "${1:-}")" ;;
    conntrack) r=$(side "${1:-}"); shift; in_ns "$r" conntrack -L "$@" ;;
    exec) h=${1:-}; shift; [[ " $HOSTS " == *" $h "* ]] || die "unknown host '$h'"; in_ns "$h" "$@" ;;
    *) die "unknown command '$cmd'" ;;
esac
