#!/usr/bin/env bash
# bench/run.sh - runs every contender on 127.0.0.1 and prints one table (make bench).
# Each contender's server runs pinned to CPU 1 and its client to CPU 0, so all get the same
# two cores. See bench/bench_common.h for what is measured and how.
#
# Then the mesh figures: bench/bench_mesh.c on the simulator (two rows at a time, one per
# core) and bench/bench_mesh_real.lua with real processes, printed as a second table.
#
# Figures move from run to run (other work on the machine can only slow a run down), so every
# contender runs BENCH_ROUNDS times (default 3), the rounds interleaved (enet, tcp, p2pnet, lua,
# luajit, then again), and the table shows each figure's best over the rounds: the highest
# throughput, the lowest RTT and memory. The same rule for every contender.
#
# Environment: BUILD (build dir, default build), LUA (default lua5.4), BENCH_SECONDS (per
# throughput run, default 2), BENCH_RTT_COUNT (default 5000), BENCH_SESSIONS (default 200),
# BENCH_ROUNDS (default 3),
# BENCH_ONLY (space-separated subset of: enet tcp p2pnet lua luajit mesh meshreal),
# BENCH_MESH_ROWS (simulator rows as N:LOSS_PERCENT, default "10:0 50:0 200:0 200:5"),
# BENCH_MESH_REAL_N (processes in the loopback mesh, default 30).
# P2P_UDP_OFFLOAD=0 runs p2pnet without UDP segmentation offload (GSO/GRO), to compare.
# BENCH_SIZES (e.g. "65536") runs only those throughput sizes (C contenders), for profiling.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD:-build}
LUA=${LUA:-lua5.4}
SESSIONS=${BENCH_SESSIONS:-200}
ONLY=${BENCH_ONLY:-enet tcp p2pnet lua luajit mesh meshreal}
# The LuaJIT column: the same bench/bench_lua.lua under luajit, with the module built for it.
LUAJIT=${LUAJIT:-luajit}
LUAJIT_BUILD=${LUAJIT_BUILD:-build-luajit}
MESH_ROWS=${BENCH_MESH_ROWS:-10:0 50:0 200:0 200:5}
MESH_REAL_N=${BENCH_MESH_REAL_N:-30}
export BENCH_SECONDS=${BENCH_SECONDS:-2}
export BENCH_RTT_COUNT=${BENCH_RTT_COUNT:-5000}
ROUNDS=${BENCH_ROUNDS:-3}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
RESULTS=$TMP/results
MESH_RESULTS=$TMP/mesh-results
: >"$RESULTS"
: >"$MESH_RESULTS"
failed=()

if [ "$(nproc)" -ge 2 ] && taskset -c 1 true 2>/dev/null; then
    PIN_SERVER="taskset -c 1"
    PIN_CLIENT="taskset -c 0"
else
    echo "bench: fewer than 2 usable CPUs; running unpinned" >&2
    PIN_SERVER=""
    PIN_CLIENT=""
fi

lua_env() { # [build dir]
    echo "LUA_PATH=$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;" "LUA_CPATH=$ROOT/${1:-$BUILD}/?.so;;"
}

# run_contender NAME command...: the command takes "server" or "client PORT".
run_contender() {
    local name=$1; shift
    case " $ONLY " in *" $name "*) ;; *) return 0 ;; esac
    echo "bench: $name ..." >&2
    local out=$TMP/$name.server err=$TMP/$name.err
    # shellcheck disable=SC2086
    $PIN_SERVER timeout 300 "$@" server >"$out" 2>"$err" &
    local spid=$! port="" i
    for i in $(seq 1 100); do
        port=$(awk '/^PORT /{print $2; exit}' "$out")
        [ -n "$port" ] && break
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        echo "bench: $name: the server did not start:" >&2
        sed 's/^/  | /' "$err" >&2
        kill "$spid" 2>/dev/null
        wait "$spid" 2>/dev/null
        failed+=("$name")
        return 0
    fi
    # shellcheck disable=SC2086
    local rc=0
    $PIN_CLIENT timeout 300 "$@" client "$port" >>"$RESULTS" 2>"$TMP/$name.cerr" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "bench: $name: the client failed (exit $rc$([ "$rc" -gt 128 ] && echo ", signal $((rc - 128))")):" >&2
        sed 's/^/  | /' "$TMP/$name.cerr" >&2
        failed+=("$name")
    fi
    for i in $(seq 1 50); do
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
}

run_mem() { # name command...
    local name=$1; shift
    case " $ONLY " in *" $name "*) ;; *) return 0 ;; esac
    echo "bench: $name memory per session ($SESSIONS sessions) ..." >&2
    # shellcheck disable=SC2086
    local rc=0
    $PIN_CLIENT timeout 120 "$@" mem "$SESSIONS" >>"$RESULTS" 2>"$TMP/$name.merr" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "bench: $name: memory measurement failed (exit $rc):" >&2
        sed 's/^/  | /' "$TMP/$name.merr" >&2
        failed+=("$name-mem")
    fi
}

have() { # binary name
    case " $ONLY " in *" $2 "*) ;; *) return 1 ;; esac
    if [ -x "$1" ]; then return 0; fi
    echo "bench: $1 is missing (make bench-build)" >&2
    failed+=("$2")
    return 1
}

luajit_ok=0
case " $ONLY " in *" luajit "*)
    if command -v "$LUAJIT" >/dev/null 2>&1; then
        echo "bench: building the module for LuaJIT ($LUAJIT_BUILD) ..." >&2
        if make -s BUILD="$LUAJIT_BUILD" LUA_PC=luajit module >"$TMP/luajit.build" 2>&1; then
            luajit_ok=1
        else
            echo "bench: luajit: the module did not build:" >&2
            sed 's/^/  | /' "$TMP/luajit.build" >&2
            failed+=("luajit")
        fi
    else
        echo "bench: $LUAJIT is missing: no LuaJIT column" >&2
        failed+=("luajit")
    fi ;;
esac
for round in $(seq 1 "$ROUNDS"); do
    echo "bench: round $round of $ROUNDS" >&2
    have "$BUILD/bench/bench_enet" enet && run_contender enet "$BUILD/bench/bench_enet"
    have "$BUILD/bench/bench_tcp" tcp && run_contender tcp "$BUILD/bench/bench_tcp"
    have "$BUILD/bench/bench_p2pnet" p2pnet && run_contender p2pnet "$BUILD/bench/bench_p2pnet"
    # shellcheck disable=SC2046
    have "$BUILD/p2pnet/core.so" lua && run_contender lua env $(lua_env) "$LUA" bench/bench_lua.lua
    # shellcheck disable=SC2046
    [ "$luajit_ok" = 1 ] &&
        run_contender luajit env $(lua_env "$LUAJIT_BUILD") "$LUAJIT" bench/bench_lua.lua
done
# a contender that failed in several rounds is named once
mapfile -t failed < <(printf '%s\n' "${failed[@]}" | awk 'NF && !seen[$0]++')
[ -x "$BUILD/bench/bench_enet" ] && run_mem enet "$BUILD/bench/bench_enet"
[ -x "$BUILD/bench/bench_p2pnet" ] && run_mem p2pnet "$BUILD/bench/bench_p2pnet"

if [ -s "$RESULTS" ]; then
    echo
    echo "p2pnet benchmark, 127.0.0.1, server on CPU 1 and client on CPU 0;" \
         "each figure the best of $ROUNDS interleaved rounds of every contender;" \
         "throughput: ${BENCH_SECONDS} s per size, at most 256 messages / 4 MiB unacknowledged;" \
         "RTT: ${BENCH_RTT_COUNT} round trips of 64 B; memory: heap per idle session of a hub" \
         "(slope between $((SESSIONS / 2)) and $SESSIONS sessions; p2pnet hosts as mediators, so no mesh)."
    echo "(x N) is the ratio to ENet: higher is better for throughput, lower for RTT and memory."
    echo
    awk '
function fmt(v,    s, out) {
    if (v == "") return "-"
    if (v < 100 && v != int(v)) return sprintf("%.2f", v)
    s = sprintf("%.0f", v); out = ""
    while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
    return s out
}
function cell(row, c,    v, e) {
    v = val[row, c]; e = val[row, "enet"]
    if (v == "") return "n/a"
    if (c == "enet" || e == "" || e == 0) return fmt(v)
    return sprintf("%s (x%.2f)", fmt(v), v / e)
}
# Every round adds a sample; the table keeps the best: the highest throughput, the lowest
# time or memory.
function add(row, c, v,    higher) {
    v += 0
    higher = row ~ /\/s$/
    if (!((row, c) in val) || (higher ? v > val[row, c] : v < val[row, c])) val[row, c] = v
}
$1 == "RESULT" && $3 == "tput" {
    name = ($4 == 64 ? "64 B" : ($4 == 1024 ? "1 KiB" : ($4 == 65536 ? "64 KiB" : $4 " B")))
    add(name " msgs/s", $2, $5); add(name " MB/s", $2, $6)
}
$1 == "RESULT" && $3 == "rtt" { add("RTT p50 (us)", $2, $4); add("RTT p99 (us)", $2, $5) }
$1 == "RESULT" && $3 == "mem" { add("bytes/idle session", $2, $4) }
END {
    split("64 B msgs/s|64 B MB/s|1 KiB msgs/s|1 KiB MB/s|64 KiB msgs/s|64 KiB MB/s|RTT p50 (us)|RTT p99 (us)|bytes/idle session", rows, "|")
    split("enet tcp p2pnet lua luajit", cols, " ")
    split("ENet|TCP_NODELAY|p2pnet (C)|p2pnet (Lua)|p2pnet (LuaJIT)", heads, "|")
    printf "%-20s", ""
    for (c = 1; c <= 5; c++) printf " %22s", heads[c]
    printf "\n"
    for (r = 1; r <= 9; r++) {
        printf "%-20s", rows[r]
        for (c = 1; c <= 5; c++) printf " %22s", cell(rows[r], cols[c])
        printf "\n"
    }
}' "$RESULTS"
fi

# ---- mesh ----------------------------------------------------------------------------------

# run_mesh_rows ROW...: simulator rows one after another, results appended to $MESH_RESULTS.
run_mesh_rows() {
    local row rc
    for row in "$@"; do
        rc=0
        timeout 300 "$BUILD/bench/bench_mesh" "${row%%:*}" "${row#*:}" >>"$TMP/mesh.$row.out" \
            2>"$TMP/mesh.$row.err" || rc=$?
        if [ "$rc" -ne 0 ]; then
            echo "bench: mesh $row failed (exit $rc):" >&2
            sed 's/^/  | /' "$TMP/mesh.$row.err" >&2
            echo "$row" >>"$TMP/mesh.failed"
        fi
    done
}

case " $ONLY " in *" mesh "*) run_mesh=1 ;; *) run_mesh=0 ;; esac
case " $ONLY " in *" meshreal "*) run_real=1 ;; *) run_real=0 ;; esac
if [ "$run_mesh" = 1 ] && have "$BUILD/bench/bench_mesh" mesh; then
    echo "bench: mesh on the simulator ($MESH_ROWS) ..." >&2
    # The rows alternate between two sequential lanes, largest first so the lanes balance: the
    # 200-node rows take most of the time and land on different cores.
    read -r -a rows <<<"$(for r in $MESH_ROWS; do echo "${r%%:*} $r"; done | sort -rn | awk '{print $2}' | tr '\n' ' ')"
    lane0=() lane1=()
    for i in "${!rows[@]}"; do
        if [ $((i % 2)) -eq 0 ]; then lane0+=("${rows[$i]}"); else lane1+=("${rows[$i]}"); fi
    done
    run_mesh_rows "${lane0[@]}" &
    lane_pid=$!
    [ ${#lane1[@]} -gt 0 ] && run_mesh_rows "${lane1[@]}"
    wait "$lane_pid"
    [ -s "$TMP/mesh.failed" ] && failed+=("mesh")
    for r in $MESH_ROWS; do cat "$TMP/mesh.$r.out" 2>/dev/null; done >>"$MESH_RESULTS"
fi
if [ "$run_real" = 1 ] && have "$BUILD/p2pnet/core.so" meshreal; then
    echo "bench: mesh of $MESH_REAL_N processes on 127.0.0.1 ..." >&2
    rc=0
    # shellcheck disable=SC2046
    TMPDIR=$TMP timeout -k 5 100 env $(lua_env) "$LUA" bench/bench_mesh_real.lua "$MESH_REAL_N" \
        >>"$MESH_RESULTS" 2>"$TMP/meshreal.err" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "bench: meshreal failed (exit $rc):" >&2
        sed 's/^/  | /' "$TMP/meshreal.err" >&2
        failed+=("meshreal")
    fi
fi

if [ -s "$MESH_RESULTS" ]; then
    echo
    echo "Mesh on the simulator: 5 ms latency + 0-2 ms jitter; a node joins every 20 ms of virtual"
    echo "time through a random earlier member. Fixed seeds: every figure but CPU repeats exactly."
    echo "  converged: virtual seconds from the last join until every node holds N-1 sessions"
    echo "             (checked every 50 ms)"
    echo "  idle:      what each node sends per second over 30 virtual seconds without application"
    echo "             traffic (after 2 s to settle), per node and per peer (flat per peer = O(N)"
    echo "             per node)"
    echo "  broadcast: virtual time until all N-1 others delivered one broadcast"
    echo "  CPU:       seconds of CPU the whole run took"
    echo
    awk '
function group(v,    s, out) {
    s = sprintf("%.0f", v); out = ""
    while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
    return s out
}
BEGIN {
    printf "%6s %5s %14s %14s %12s %10s %12s %16s %8s\n", "nodes", "loss", "converged (s)",
           "idle B/s/node", "pkts/s/node", "B/s/peer", "pkts/s/peer", "broadcast (ms)", "CPU (s)"
}
$1 == "RESULT" && $2 == "mesh" {
    n = $3
    conv = $5 < 0 ? "no" : sprintf("%.2f", $5)
    bc = $10 < 0 ? sprintf("no (%d/%d)", $11, n - 1) : sprintf("%.1f", $10)
    if ($12 > 0) bc = bc " dups:" $12
    note = $13 < n ? sprintf("  (only %d of %d full after idle)", $13, n) : ""
    printf "%6d %4s%% %14s %14s %12.1f %10.1f %12.2f %16s %8.1f%s\n", n, $4, conv, group($6), $7,
           $8, $9, bc, $14, note
}
$1 == "RESULT" && $2 == "meshreal" { real[++nreal] = $0 }
END {
    for (i = 1; i <= nreal; i++) {
        split(real[i], f, " ")
        printf "\n%d real processes on 127.0.0.1, each knowing only the first node'"'"'s address: ", f[3]
        if (f[4] < 0) printf "no full mesh (%d of %d nodes full)\n", f[5], f[3]
        else printf "full mesh in %.2f s (wall clock from spawning the processes)\n", f[4]
    }
}' "$MESH_RESULTS"
fi

if [ ${#failed[@]} -gt 0 ]; then
    echo
    echo "bench: failed: ${failed[*]}" >&2
    exit 1
fi
