#!/usr/bin/env bash
# The NAT lab: network namespaces joined by veth links, built and torn down as root. Nothing
# leaves the machine: the namespaces have no link to the host's network, and every address
# is private (10/8), a documentation range (RFC 5737) or, in the upnp mode, 11.0.1.0/24 and
# 11.0.2.0/24, which exist only inside the namespaces (nothing is routed to the real 11/8).
#
#        A 10.0.1.2                                                     B 10.0.2.2
#          | lan 10.0.1.1                                   lan 10.0.2.1 |
#        NATA  wan 198.51.100.2 ---- 198.51.100.1   203.0.113.1 ---- 203.0.113.2 wan  NATB
#              (upnp: 11.0.1.2       11.0.1.1)      (11.0.2.1        11.0.2.2)
#                                         \             /
#                                             PUB (router)
#                                         /      |      \
#   MED 192.0.2.2, 192.0.2.3 ---- 192.0.2.1      |     192.0.2.17 ---- 192.0.2.18 GEN
#                                           192.0.2.33
#                                                |
#                                           192.0.2.34 MED2
#
# A and B are private hosts, each behind its own NAT router. MED (a mediator; its second
# address 192.0.2.3 serves coturn's RFC 5780 alternate address), MED2 (a second mediator,
# for relay hand-over) and GEN (a "genesis" mesh member) are public hosts. PUB routes between
# the public networks only: it has no route to 10/8, so private addresses are unreachable
# from outside their NAT.
#
# The NAT routers masquerade what leaves their WAN. "cone": plain MASQUERADE, which keeps the
# source port when it is free (the same mapping whatever the destination); "symmetric":
# MASQUERADE --random-fully, a new random port for every destination; "ports LO-HI":
# MASQUERADE into that port range (to change an existing mapping). Inbound, they forward
# only replies (ESTABLISHED,RELATED) and drop unsolicited UDP in INPUT: a packet accepted in
# INPUT would leave a conntrack entry behind even with nothing listening, and that entry
# would then stop MASQUERADE from keeping the source port of a later outgoing flow to the
# same peer, which is the flow hole punching opens. The rules live in chains of their own
# (LAB-POST in nat POSTROUTING, LAB-FWD in FORWARD, LAB-IN in INPUT, LAB-BLOCK first in
# FORWARD), so that changing them leaves miniupnpd's chains alone.
#
# Modes of `up`:
#   cone, symmetric   both NATs of that kind
#   mixed             NATA symmetric, NATB cone; coturn on MED
#   upnp              both NATs symmetric, WANs 11.0.1.2/24 and 11.0.2.2/24 (miniupnpd
#                     refuses reserved WAN addresses), every rule on both routers written
#                     with iptables-legacy (miniupnpd-iptables uses the legacy tables), and
#                     miniupnpd (tests/natlab/miniupnpd.conf: NAT-PMP, PCP, UPnP-IGD on the
#                     router's LAN side); with MINIUPNPD=0 in the environment the same
#                     topology without miniupnpd. coturn on MED.
#
# coturn (turnserver --stun-only) listens on 192.0.2.2 and 192.0.2.3, ports 3478 and 3479
# (UDP), so its answers from 192.0.2.2:3478 carry OTHER-ADDRESS 192.0.2.3:3479 (RFC 5780).
#
# Usage (PREFIX names the lab's namespaces, PREFIX-a, PREFIX-nata, ...; use a unique one,
# such as p2pl<pid>):
#   lab.sh up PREFIX [MODE]               builds the lab (MODE above, default cone); removes
#                                         labs left by processes that no longer run
#   lab.sh nat PREFIX a|b MODE            MODE: cone, symmetric or ports LO-HI; flushes the
#                                         router's conntrack table, so the mapping changes
#   lab.sh flush PREFIX a|b               flushes the router's conntrack table
#   lab.sh conntrack PREFIX a|b [ARGS]    conntrack -L ARGS on the router
#   lab.sh udp PREFIX a|b block|unblock   block: the router drops all UDP it would forward
#                                         between its LAN and WAN (both ways; TCP passes);
#                                         unblock: lets it pass again; both forget the UDP
#                                         conntrack entries (TCP connections live on)
#   lab.sh coturn PREFIX start|stop       starts or stops coturn on MED (any mode)
#   lab.sh upnpd PREFIX a|b start|stop [upnp-only]
#                                         starts or stops miniupnpd on a router (upnp mode
#                                         only); stop also removes every mapping it made;
#                                         upnp-only: without NAT-PMP and PCP
#   lab.sh mode PREFIX                    prints the mode the lab was built in
#   lab.sh down PREFIX                    kills the lab's processes, deletes its namespaces
#   lab.sh exec PREFIX HOST CMD...        runs CMD in HOST's namespace (a b nata natb pub
#                                         med med2 gen)
# The lab keeps its state (mode, daemon configs and logs) in /tmp/p2pnet-lab/PREFIX.
set -Eeuo pipefail

HOSTS="a b nata natb pub med med2 gen"
STATE_ROOT=/tmp/p2pnet-lab

die() { echo "lab.sh: $*" >&2; exit 2; }

ns() { echo "$PREFIX-$1"; }
in_ns() { local h=$1; shift; ip netns exec "$(ns "$h")" "$@"; }
# Starts a daemon (miniupnpd, coturn) in host's network namespace, in the background, output
# to LOG. The subshell drops `up`'s ERR trap and execs the daemon: a subshell still waiting
# for it would run the trap, which tears the whole lab down, when the daemon is killed.
daemon() { # host log cmd...
    local h=$1 log=$2
    shift 2
    (
        trap - ERR
        exec nsenter --net="/run/netns/$(ns "$h")" setsid "$@"
    ) </dev/null >>"$log" 2>&1 &
}
state() { echo "$STATE_ROOT/$PREFIX"; }
mode_of() { cat "$(state)/mode" 2>/dev/null || echo cone; }

# iptables for a host: the legacy one on the upnp mode's routers, the default one elsewhere.
ipt() { # host args...
    local h=$1; shift
    if [ "$(mode_of)" = upnp ] && [[ $h == nat? ]]; then
        in_ns "$h" iptables-legacy -w "$@"
    else
        in_ns "$h" iptables -w "$@"
    fi
}

# A veth pair between two namespaces, each end named and addressed there.
link() { # host1 if1 addr1/len host2 if2 addr2/len
    ip -n "$(ns "$1")" link add "$2" type veth peer name "$5" netns "$(ns "$4")"
    ip -n "$(ns "$1")" addr add "$3" dev "$2"
    ip -n "$(ns "$4")" addr add "$6" dev "$5"
    ip -n "$(ns "$1")" link set "$2" up
    ip -n "$(ns "$4")" link set "$5" up
}

# The router's own chains, hooked once into the built-in ones.
nat_chains() { # host
    local h=$1
    ipt "$h" -t nat -N LAB-POST
    ipt "$h" -t nat -A POSTROUTING -o wan -j LAB-POST
    ipt "$h" -P FORWARD DROP
    ipt "$h" -N LAB-BLOCK
    ipt "$h" -A FORWARD -j LAB-BLOCK
    ipt "$h" -N LAB-FWD
    ipt "$h" -A FORWARD -j LAB-FWD
    ipt "$h" -N LAB-IN
    ipt "$h" -A INPUT -j LAB-IN
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
    ipt "$h" -t nat -F LAB-POST
    ipt "$h" -t nat -A LAB-POST "${masq[@]}"
    ipt "$h" -F LAB-FWD
    ipt "$h" -A LAB-FWD -i lan -o wan -j ACCEPT
    ipt "$h" -A LAB-FWD -i wan -o lan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    ipt "$h" -F LAB-IN
    ipt "$h" -A LAB-IN -i wan -p udp -j DROP
}

flush() { # host
    # conntrack exits 1 when the table was already empty
    in_ns "$1" conntrack -F >/dev/null 2>&1 || true
}

flush_udp() { # host: the UDP entries only
    in_ns "$1" conntrack -D -p udp >/dev/null 2>&1 || true
}

# The ids of the processes named COMM (as in /proc/PID/comm) in host's namespace.
ns_pids() { # host comm
    local pid
    for pid in $(ip netns pids "$(ns "$1")" 2>/dev/null || true); do
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] && echo "$pid"
    done
    return 0
}

# Waits until `host` has a UDP socket bound to ADDR:PORT (as ss prints it); TCP with
# SS_FLAGS=-Hltn.
wait_udp() { # host addr:port what
    local _
    for _ in $(seq 100); do
        in_ns "$1" ss "${SS_FLAGS:--Hlun}" 2>/dev/null | grep -qF " $2 " && return 0
        sleep 0.1
    done
    die "$3 is not listening on $2 (log: $(state)/$3.log)"
}

coturn_start() {
    local d; d=$(state)
    [ -n "$(ns_pids med turnserver)" ] && return 0
    daemon med "$d/coturn.log" turnserver -n --stun-only --no-auth -L 192.0.2.2 -L 192.0.2.3 \
        -p 3478 --alt-listening-port 3479 --no-tcp --no-tls --no-dtls --no-cli \
        --no-software-attribute -f --pidfile "$d/turn.pid" --no-stdout-log \
        --log-file "$d/turn.log" --simple-log --db "$d/turndb"
    wait_udp med 192.0.2.2:3478 coturn
    wait_udp med 192.0.2.3:3479 coturn
}

coturn_stop() {
    local pid
    for pid in $(ns_pids med turnserver); do kill -9 "$pid" 2>/dev/null || true; done
    rm -f "$(state)/turn.pid"
}

upnpd_start() { # router [upnp-only]
    local h=$1 d lan _ natpmp=yes
    [ "${2:-}" = upnp-only ] && natpmp=no
    d=$(state)
    [ "$(mode_of)" = upnp ] || die "miniupnpd runs in the upnp mode only"
    [ -n "$(ns_pids "$h" miniupnpd)" ] && return 0
    case $h in nata) lan=10.0.1.0/24 ;; natb) lan=10.0.2.0/24 ;; esac
    mkdir -p "$d/legacybin" "$d/$h"
    ln -sf /usr/sbin/iptables-legacy "$d/legacybin/iptables"
    # its chains exist before it starts (a second start finds them and cleans them)
    in_ns "$h" env PATH="$d/legacybin:$PATH" /etc/miniupnpd/iptables_init.sh -i wan \
        >>"$d/miniupnpd-$h.log" 2>&1
    sed -e "s#@LAN@#$lan#" -e "s#@DIR@#$d/$h#" -e "s#@NATPMP@#$natpmp#" \
        -e "s#@UUID@#e25dcf97-1eb6-4e3a-a37a-3a8f4316a8d$([ "$h" = nata ] && echo 5 || echo 6)#" \
        "$(dirname "$0")/miniupnpd.conf" >"$d/$h/miniupnpd.conf"
    daemon "$h" "$d/miniupnpd-$h.log" miniupnpd -f "$d/$h/miniupnpd.conf" -d \
        -P "$d/$h/miniupnpd.pid"
    if [ "$natpmp" = no ]; then
        SS_FLAGS=-Hltn wait_udp "$h" "*%lan:5000" "miniupnpd-$h"
        return 0
    fi
    wait_udp "$h" "${lan%.0/24}.1:5351" "miniupnpd-$h"
    # it answers NAT-PMP from its LAN (lab pitfall R4 of design12: check before any scenario)
    for _ in $(seq 30); do
        in_ns "$([ "$h" = nata ] && echo a || echo b)" natpmpc -g "${lan%.0/24}.1" 2>/dev/null \
            | grep -q "Public IP address : 11\." && return 0
        sleep 0.2
    done
    die "miniupnpd on $h does not answer NAT-PMP (log: $d/miniupnpd-$h.log)"
}

upnpd_stop() { # router
    local h=$1 pid pids
    pids=$(ns_pids "$h" miniupnpd)
    if [ -n "$pids" ]; then
        for pid in $pids; do kill -9 "$pid" 2>/dev/null || true; done
        rm -f "$(state)/$h/upnp.leases" "$(state)/$h/miniupnpd.pid"
        # the mappings it made stay in its chains: empty them
        local t
        for t in "nat MINIUPNPD" "nat MINIUPNPD-POSTROUTING" "mangle MINIUPNPD" \
                 "filter MINIUPNPD"; do
            set -- $t # two words: table chain
            ipt "$h" -t "$1" -F "$2" 2>/dev/null || true
        done
        flush "$h"
    fi
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
    rm -rf "$(state)"
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
    local mode=${1:-cone} h wa wb pa pb
    case $mode in cone|symmetric|mixed|upnp) ;; *) die "unknown lab mode '$mode'" ;; esac
    remove_stale
    down
    trap 'down' ERR
    mkdir -p "$(state)"
    echo "$mode" >"$(state)/mode"
    for h in $HOSTS; do
        ip netns add "$(ns "$h")"
        in_ns "$h" ip link set lo up
        in_ns "$h" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
        in_ns "$h" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
    done
    if [ "$mode" = upnp ]; then
        pa=11.0.1.1 wa=11.0.1.2 pb=11.0.2.1 wb=11.0.2.2
    else
        pa=198.51.100.1 wa=198.51.100.2 pb=203.0.113.1 wb=203.0.113.2
    fi
    link pub med 192.0.2.1/28 med eth0 192.0.2.2/28
    ip -n "$(ns med)" addr add 192.0.2.3/28 dev eth0
    link pub gen 192.0.2.17/28 gen eth0 192.0.2.18/28
    link pub med2 192.0.2.33/28 med2 eth0 192.0.2.34/28
    link pub nata "$pa/24" nata wan "$wa/24"
    link pub natb "$pb/24" natb wan "$wb/24"
    link nata lan 10.0.1.1/24 a eth0 10.0.1.2/24
    link natb lan 10.0.2.1/24 b eth0 10.0.2.2/24
    in_ns med ip route add default via 192.0.2.1
    in_ns gen ip route add default via 192.0.2.17
    in_ns med2 ip route add default via 192.0.2.33
    in_ns nata ip route add default via "$pa"
    in_ns natb ip route add default via "$pb"
    in_ns a ip route add default via 10.0.1.1
    in_ns b ip route add default via 10.0.2.1
    for h in pub nata natb; do
        in_ns "$h" sysctl -qw net.ipv4.ip_forward=1
    done
    nat_chains nata
    nat_chains natb
    case $mode in
        cone|symmetric) nat_rules nata "$mode"; nat_rules natb "$mode" ;;
        mixed) nat_rules nata symmetric; nat_rules natb cone ;;
        upnp) nat_rules nata symmetric; nat_rules natb symmetric ;;
    esac
    if [ "$mode" = upnp ] || [ "$mode" = mixed ]; then
        coturn_start
    fi
    if [ "$mode" = upnp ] && [ "${MINIUPNPD:-1}" != 0 ]; then
        upnpd_start nata
        upnpd_start natb
    fi
    trap - ERR
}

side() { # a|b -> the router's host name
    case ${1:-} in a) echo nata ;; b) echo natb ;; *) die "side must be a or b" ;; esac
}

udp_block() { # router block|unblock
    case ${2:-} in
        block)
            ipt "$1" -F LAB-BLOCK
            ipt "$1" -A LAB-BLOCK -i lan -o wan -p udp -j DROP
            ipt "$1" -A LAB-BLOCK -i wan -o lan -p udp -j DROP
            flush_udp "$1" ;;
        # only UDP entries: flushing TCP ones would make MASQUERADE pick a new source port
        # for a running TCP connection's next packet, which kills it (engineer P3's finding)
        unblock) ipt "$1" -F LAB-BLOCK; flush_udp "$1"; sleep 0.2; flush_udp "$1" ;;
        *) die "udp needs block or unblock" ;;
    esac
}

[ "$(id -u)" = 0 ] || die "must run as root"
cmd=${1:-}
PREFIX=${2:-}
[[ $PREFIX =~ ^[A-Za-z0-9_]+$ ]] || die "usage: lab.sh up|nat|flush|conntrack|udp|coturn|upnpd|mode|down|exec PREFIX ..."
shift 2
case $cmd in
    up) up "$@" ;;
    down) down ;;
    # A packet in flight through the router during the first flush can re-create the old
    # mapping; the second flush, once the new rules are certainly in force, removes it.
    nat) r=$(side "${1:-}"); nat_rules "$r" "${2:-}" "${3:-}"; flush "$r"; sleep 0.2; flush "$r" ;;
    flush) flush "$(side "${1:-}")" ;;
    conntrack) r=$(side "${1:-}"); shift; in_ns "$r" conntrack -L "$@" ;;
    udp) udp_block "$(side "${1:-}")" "${2:-}" ;;
    coturn)
        case ${1:-} in start) coturn_start ;; stop) coturn_stop ;;
            *) die "coturn needs start or stop" ;; esac ;;
    upnpd)
        r=$(side "${1:-}")
        case ${2:-} in start) upnpd_start "$r" "${3:-}" ;; stop) upnpd_stop "$r" ;;
            *) die "upnpd needs start or stop" ;; esac ;;
    mode) mode_of ;;
    exec) h=${1:-}; shift; [[ " $HOSTS " == *" $h "* ]] || die "unknown host '$h'"; in_ns "$h" "$@" ;;
    *) die "unknown command '$cmd'" ;;
esac
