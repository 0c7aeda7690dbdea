#!/usr/bin/env bash
# bench/link.sh - p2pnet, ENet and kernel TCP (cubic and bbr) on a real kernel link
# (make bench-link; make bench runs it after the loopback table).
#
# Two network namespaces joined by a veth pair. Each end's egress is shaped by tc tbf to
# LINK_RATE with a queue of LINK_QUEUE bytes, and each end drops arriving packets at random
# with iptables -m statistic (both directions, so data and acknowledgements are lost alike).
# Per loss rate and contender, bench/bench_link.c counts the goodput of 16 KiB reliable
# messages at the receiver over LINK_SECONDS, the sender keeping up to 4 MiB unacknowledged;
# then it times 2000 reliable 1 KiB messages through each of LINK_BURST_LOSS random losses, and
# through reordering: 10% of packets held back by up to 10 ms, on bench/linkemu.c (a user-space
# link on 127.0.0.1 at the same rate and RTT: no kernel qdisc here reorders).
#
# Delay: this kernel has no netem and no fq or etf qdisc (nothing that honours a packet's
# earliest departure time, so a tc BPF program setting skb->tstamp has no effect). Instead
# every packet arriving at either end goes to a netfilter queue (iptables NFQUEUE, after the
# tbf bottleneck, before the random drop) and stays in the kernel until bench/link_delay.c
# gives the verdict LINK_RTT_MS / 2 after it arrived, in arrival order. With LINK_RTT_MS=0, or
# when the queue cannot be bound, the link has no added delay (the veth's RTT, tens of
# microseconds, plus what waits in the tbf queue) and the table says so. The tbf queue is one
# bandwidth-delay product of the path (of a 40 ms path without delay), the issue's harness's
# drop-tail queue. Exact delay is also the simulator's (p2pnet.sim).
#
# Needs root (namespaces, tc, iptables); skips with a message otherwise. Everything runs in
# the two namespaces, which are removed on exit, failure or interrupt. Traffic never leaves
# them: the veth pair is all they have.
#
# Environment: BUILD (default build), LINK_RATE (default 100mbit), LINK_RTT_MS (default 40),
# LINK_QUEUE (bytes, default one BDP: rate x RTT, or x 40 ms without delay), LINK_LOSSES (percent, default "0 0.5 2 5"), LINK_SECONDS (per point, default 5),
# LINK_ONLY (subset of: p2pnet enet tcp-cubic tcp-bbr), LINK_BURST (messages, default 2000),
# LINK_BURST_LOSS (percents, default "10 30"), LINK_BURST_LIMIT (seconds, default 60),
# LINK_REORDER (percent of packets held back, default 10; 0: no reordering row),
# LINK_KEEP_RESULTS (a file to copy the raw RESULT lines to), BENCH_VERBOSE (p2pnet's RTT and
# retransmissions per run on stderr).
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/bench/bench_link
DELAY_BIN=$PWD/$BUILD/bench/link_delay
RATE=${LINK_RATE:-100mbit}
RTT_MS=${LINK_RTT_MS:-40}
# tc's rate in bits per second (100mbit, 10Mbit, 500kbit...), for the bandwidth-delay product.
RATE_BPS=$(awk -v r="$RATE" 'BEGIN {
    v = r + 0; u = tolower(substr(r, length(v "") + 1))
    if (u ~ /^g/) v *= 1e9; else if (u ~ /^m/) v *= 1e6; else if (u ~ /^k/) v *= 1e3
    print v }')
QUEUE=${LINK_QUEUE:-$(awk -v b="$RATE_BPS" -v t="$RTT_MS" 'BEGIN { if (t <= 0) t = 40; printf "%d", b / 8 * t / 1000 }')}
LOSSES=${LINK_LOSSES:-0 0.5 2 5}
SECONDS_PER=${LINK_SECONDS:-5}
ONLY=${LINK_ONLY:-p2pnet enet tcp-cubic tcp-bbr}
BURST=${LINK_BURST:-2000}
BURST_LOSS=${LINK_BURST_LOSS:-10 30}
BURST_LIMIT=${LINK_BURST_LIMIT:-60}
REORDER=${LINK_REORDER:-10}
EMU_BIN=$PWD/$BUILD/bench/linkemu
# tbf lets this many bytes through at line rate before shaping: about ten full packets.
TBF_BURST=16kb
NS_A=p2pl$$a # the sender (client)
NS_B=p2pl$$b # the receiver (server)
IP_A=10.211.0.1
IP_B=10.211.0.2
PORT=4811

skip() {
    echo "bench-link: skipped: $*" >&2
    exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, tc, iptables)"
for tool in ip tc iptables; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool is missing (make deps)"
done
for b in "$BIN" "$DELAY_BIN"; do
    [ -x "$b" ] || { echo "bench-link: $b is missing (make bench-build)" >&2; exit 1; }
done

TMP=$(mktemp -d)
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    ip netns pids "$NS_A" 2>/dev/null | xargs -r kill 2>/dev/null
    ip netns pids "$NS_B" 2>/dev/null | xargs -r kill 2>/dev/null
    ip netns del "$NS_A" 2>/dev/null
    ip netns del "$NS_B" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_a() { ip netns exec "$NS_A" "$@"; }
in_b() { ip netns exec "$NS_B" "$@"; }

setup() {
    ip netns add "$NS_A" && ip netns add "$NS_B" &&
        ip link add "${NS_A}v" type veth peer name "${NS_B}v" &&
        ip link set "${NS_A}v" netns "$NS_A" && ip link set "${NS_B}v" netns "$NS_B" &&
        ip -n "$NS_A" addr add "$IP_A/24" dev "${NS_A}v" &&
        ip -n "$NS_B" addr add "$IP_B/24" dev "${NS_B}v" &&
        ip -n "$NS_A" link set lo up && ip -n "$NS_B" link set lo up &&
        ip -n "$NS_A" link set "${NS_A}v" up && ip -n "$NS_B" link set "${NS_B}v" up &&
        in_a tc qdisc add dev "${NS_A}v" root tbf rate "$RATE" burst "$TBF_BURST" limit "$QUEUE" &&
        in_b tc qdisc add dev "${NS_B}v" root tbf rate "$RATE" burst "$TBF_BURST" limit "$QUEUE"
}
setup 2>"$TMP/setup.err" || {
    sed 's/^/  | /' "$TMP/setup.err" >&2
    skip "could not build the namespaces and the link (see above)"
}

# The delay: a link_delay in each namespace holds what arrives for half the RTT.
# wait_for FILE WORD TRIES [PID]: waits up to TRIES x 50 ms for WORD in FILE (a program's
# "ready" line), giving up early when PID has exited. Succeeds when WORD is there.
wait_for() {
    local file=$1 word=$2 tries=$3 pid=${4:-}
    for _ in $(seq 1 "$tries"); do
        grep -q "$word" "$file" && return 0
        [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && break
        sleep 0.05
    done
    grep -q "$word" "$file"
}

DELAY_NOTE="no added delay"
add_delay() {
    local ns half
    half=$(awk -v t="$RTT_MS" 'BEGIN { print t / 2 }')
    for ns in "$NS_A" "$NS_B"; do
        ip netns exec "$ns" "$DELAY_BIN" 0 "$half" >"$TMP/delay.$ns" 2>"$TMP/delay.$ns.err" &
        wait_for "$TMP/delay.$ns" READY 50 || return 1
        ip netns exec "$ns" iptables -t mangle -A PREROUTING -i "${ns}v" -j NFQUEUE --queue-num 0 ||
            return 1
    done
}
if awk -v t="$RTT_MS" 'BEGIN { exit !(t > 0) }'; then
    if add_delay; then
        DELAY_NOTE="$RTT_MS ms RTT added (NFQUEUE, link_delay.c)"
    else
        echo "bench-link: could not add the delay; running without:" >&2
        sed 's/^/  | /' "$TMP"/delay.*.err >&2
        for ns in "$NS_A" "$NS_B"; do ip netns exec "$ns" iptables -t mangle -F 2>/dev/null; done
        ip netns pids "$NS_A" | xargs -r kill 2>/dev/null
        ip netns pids "$NS_B" | xargs -r kill 2>/dev/null
    fi
fi

# set_loss PERCENT: random drops of arriving packets at both ends.
set_loss() {
    local p
    p=$(awk -v l="$1" 'BEGIN { printf "%.4f", l / 100 }')
    for ns in "$NS_A" "$NS_B"; do
        ip netns exec "$ns" iptables -F INPUT
        if [ "$p" != "0.0000" ]; then
            ip netns exec "$ns" iptables -A INPUT -m statistic --mode random --probability "$p" -j DROP
        fi
    done
}

# run_point NAME SERVER_SECONDS CLIENT_ARGS...: one server in B, one client in A; the server's
# and the client's RESULT lines go to $TMP/results.
run_point() {
    local name=$1 secs=$2; shift 2
    local out=$TMP/server.out rc=0
    : >"$out"
    in_b timeout 90 "$BIN" "$name" server "$IP_B" "$PORT" "$secs" >"$out" 2>"$TMP/server.err" &
    local spid=$!
    wait_for "$out" READY 100 "$spid"
    in_a timeout 90 "$BIN" "$name" "$@" >"$TMP/client.out" 2>"$TMP/client.err" || rc=$?
    # A bulk server ends by itself when its window is over; a burst server when the client quits.
    for _ in $(seq 1 60); do
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    grep -h RESULT "$out" "$TMP/client.out" | sed "s/^/$LOSS_TAG /" >>"$TMP/results"
    [ -n "${BENCH_VERBOSE:-}" ] && sed "s/^/  [$LOSS_TAG%] /" "$TMP/client.err" >&2
    if [ "$rc" -ne 0 ] || ! grep -q RESULT "$out" "$TMP/client.out"; then
        FAILED="$FAILED $name"
        echo "bench-link: $name ($*) failed (exit $rc):" >&2
        sed 's/^/  | /' "$TMP/client.err" "$TMP/server.err" >&2
    fi
    PORT=$((PORT + 1))
}

: >"$TMP/results"
FAILED=""
echo "bench-link: $RATE, $DELAY_NOTE, queue $QUEUE bytes, loss ${LOSSES// /% }%, ${SECONDS_PER} s per point ..." >&2
for loss in $LOSSES; do
    set_loss "$loss"
    LOSS_TAG="LOSS $loss"
    for name in $ONLY; do
        echo "bench-link: $name at $loss% loss" >&2
        run_point "$name" "$SECONDS_PER" bulk "$IP_B" "$PORT" "$(awk -v s="$SECONDS_PER" 'BEGIN { print s + 2 }')"
    done
done
for bloss in $BURST_LOSS; do
    set_loss "$bloss"
    LOSS_TAG="BURST $bloss"
    for name in p2pnet enet; do
        case " $ONLY " in *" $name "*) ;; *) continue ;; esac
        echo "bench-link: $name, $BURST x 1 KiB through $bloss% loss" >&2
        run_point "$name" 0 burst "$IP_B" "$PORT" "$BURST" "$BURST_LIMIT"
    done
done
set_loss 0

# Reordering: the same burst through linkemu on the host's loopback (rate, RTT and queue as
# above; REORDER% of packets get up to 10 ms more delay).
emu_burst() { # NAME
    local name=$1 eport out=$TMP/emu.out spid epid rc=0
    "$BIN" "$name" server 127.0.0.1 "$PORT" 0 >"$TMP/server.out" 2>"$TMP/server.err" &
    spid=$!
    wait_for "$TMP/server.out" READY 100 "$spid"
    : >"$out"
    "$EMU_BIN" 0 "$PORT" rate="$RATE_BPS" delay="$(awk -v t="$RTT_MS" 'BEGIN { print t / 2 }')" \
        queue="$QUEUE" reorder="$(awk -v r="$REORDER" 'BEGIN { print r / 100 }')" reorder_max=10 \
        >"$out" 2>"$TMP/emu.err" &
    epid=$!
    wait_for "$out" PORT 100 "$epid"
    eport=$(awk '/^PORT/ { print $2 }' "$out")
    timeout 90 "$BIN" "$name" burst 127.0.0.1 "$eport" "$BURST" "$BURST_LIMIT" \
        >"$TMP/client.out" 2>"$TMP/client.err" || rc=$?
    kill "$epid" "$spid" 2>/dev/null
    wait "$epid" "$spid" 2>/dev/null
    grep -h RESULT "$TMP/server.out" "$TMP/client.out" | sed "s/^/REORDER $REORDER /" >>"$TMP/results"
    if [ "$rc" -ne 0 ] || ! grep -q RESULT "$TMP/client.out"; then
        FAILED="$FAILED $name-reorder"
        echo "bench-link: $name through reordering failed (exit $rc):" >&2
        sed 's/^/  | /' "$TMP/client.err" "$TMP/server.err" "$TMP/emu.err" >&2
    fi
    PORT=$((PORT + 1))
}
if [ "$REORDER" != 0 ] && [ -x "$EMU_BIN" ]; then
    for name in p2pnet enet; do
        case " $ONLY " in *" $name "*) ;; *) continue ;; esac
        echo "bench-link: $name, $BURST x 1 KiB through $REORDER% reordering (linkemu)" >&2
        emu_burst "$name"
    done
fi

echo
QUEUE_MS=$(awk -v q="$QUEUE" -v b="$RATE_BPS" 'BEGIN { printf "%.0f", q * 8 / b * 1000 }')
echo "Real-kernel link: two network namespaces joined by veth; at each end tbf $RATE with a"
echo "$QUEUE-byte drop-tail queue (up to $QUEUE_MS ms when full); $DELAY_NOTE;"
echo "iptables random loss on arrival (both directions). Goodput of 16 KiB reliable messages at"
echo "the receiver over $SECONDS_PER s, the sender keeping 4 MiB unacknowledged."
echo
awk -v only="$ONLY" -v losses="$LOSSES" '
# LOSS <percent> RESULT <contender> goodput <bytes> <seconds>
# LOSS <percent> RESULT <contender> burst <count> <seconds or -1> <acknowledged>
$1 == "LOSS" && $5 == "goodput" { gp[$2, $4] = $6 * 8 / $7 / 1e6 }
($1 == "BURST" || $1 == "REORDER") && $5 == "burst" {
    k = $1 " " $2; if (!(k in seen)) { seen[k] = 1; rows[++nrows] = k }
    bn[k, $4] = $6; bt[k, $4] = $7; ba[k, $4] = $8; count = $6
}
function cell(v) { return v == "" ? "-" : sprintf("%.1f", v) }
function pct(v, base) { return (v == "" || base == "" || base == 0) ? "" : sprintf(" (%d%%)", 100 * v / base + 0.5) }
function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("x%.2f", a / b) }
END {
    nc = split(only, cols, " "); nl = split(losses, ls, " ")
    printf "%-8s", "loss"
    for (c = 1; c <= nc; c++) printf " %20s", cols[c] " Mbit/s"
    printf " %14s %14s\n", "p2pnet/ENet", "p2pnet/cubic"
    for (l = 1; l <= nl; l++) {
        printf "%-8s", ls[l] "%"
        for (c = 1; c <= nc; c++) {
            v = gp[ls[l], cols[c]]
            printf " %20s", cell(v) (l > 1 ? pct(v, gp[ls[1], cols[c]]) : "")
        }
        printf " %14s %14s\n", ratio(gp[ls[l], "p2pnet"], gp[ls[l], "enet"]),
               ratio(gp[ls[l], "p2pnet"], gp[ls[l], "tcp-cubic"])
    }
    printf "(%%) is the share of the same contender'"'"'s goodput at %s%% loss.\n", ls[1]
    if (nrows > 0) {
        printf "\n%d reliable 1 KiB messages queued at once, until the last is acknowledged:\n", count
        printf "%-34s %24s %24s %14s\n", "impairment", "p2pnet", "ENet", "p2pnet / ENet"
        for (r = 1; r <= nrows; r++) {
            k = rows[r]; split(k, kk, " ")
            what = kk[1] == "BURST" ? kk[2] "% random loss (kernel link)" : kk[2] "% reordered by <= 10 ms (linkemu)"
            printf "%-34s", what
            for (i = 1; i <= 2; i++) {
                n = i == 1 ? "p2pnet" : "enet"
                if (!((k, n) in bn)) { printf " %24s", "-"; continue }
                printf " %24s", bt[k, n] < 0 ? sprintf("did not finish (%d/%d)", ba[k, n], bn[k, n]) : sprintf("%.2f s", bt[k, n])
            }
            p = bt[k, "p2pnet"]; e = bt[k, "enet"]
            printf " %14s\n", (p > 0 && e > 0) ? sprintf("x%.2f", p / e) : (p > 0 && e < 0 && ((k, "enet") in bn)) ? "ENet unfinished" : "-"
        }
    }
}' "$TMP/results"
[ -n "${LINK_KEEP_RESULTS:-}" ] && cp "$TMP/results" "$LINK_KEEP_RESULTS"
if [ -n "$FAILED" ]; then
    echo "bench-link: failed:$FAILED" >&2
    exit 1
fi
exit 0
