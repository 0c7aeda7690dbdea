#!/usr/bin/env bash
# Measures examples/openresty: /send latency (waiting on the receipt of a peer in another
# process, on 127.0.0.1) and the idle CPU of the nginx workers, for the waker and for timer
# driving. Prints one block per mode. Not part of `make test` (it takes about a minute).
#   bash examples/openresty/measure.sh [N] [waker]      (waker: only the waker)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
n=${1:-300}
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;" LUA_CPATH="$root/build/?.so;;"
free_port() { lua5.4 -e 'local s=require"socket"; local u=assert(s.bind("127.0.0.1",0)); local _, p = u:getsockname(); print(p); u:close()'; }
prefix=$(mktemp -d /tmp/p2pnet-ngx-measure.XXXXXX)
peer_pid=; ngx_pid=
cleanup() {
    set +e
    if [ -n "$ngx_pid" ]; then kill "$ngx_pid" 2>/dev/null; wait "$ngx_pid" 2>/dev/null; fi
    if [ -n "$peer_pid" ]; then kill "$peer_pid" 2>/dev/null; wait "$peer_pid" 2>/dev/null; fi
    rm -rf "$prefix"
}
trap cleanup EXIT
mkdir -p "$prefix/logs" "$prefix/temp"
pport=$(free_port)
lua5.4 "$here/peer.lua" "$pport" > "$prefix/peer.out" 2>/dev/null &
peer_pid=$!
for _ in $(seq 50); do grep -q READY "$prefix/peer.out" 2>/dev/null && break; sleep 0.1; done
peer=$(awk '{print $2}' "$prefix/peer.out")
hport=$(free_port)
sed "s/listen 127.0.0.1:8080;/listen 127.0.0.1:$hport;/" "$here/nginx.conf" > "$prefix/nginx.conf"
user=; [ "$(id -u)" = 0 ] && user="user root;"
cpu_ticks() { # utime + stime of the workers
    local t=0
    for p in $(pgrep -P "$ngx_pid"); do t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat))); done
    echo $t
}
run() { # mode interval label
    P2PNET_ROOT=$root P2PNET_PORT=$(free_port) P2PNET_MODE=$1 P2PNET_INTERVAL=$2 \
        nginx -p "$prefix" -e "$prefix/logs/error.log" -c "$prefix/nginx.conf" \
        -g "daemon off; worker_processes 2; $user" &
    ngx_pid=$!
    for _ in $(seq 50); do curl -sf "127.0.0.1:$hport/info" >/dev/null && break; sleep 0.1; done
    curl -sf "127.0.0.1:$hport/connect?target=127.0.0.1:$pport" >/dev/null
    echo "== $3"
    lua5.4 "$here/bench.lua" 127.0.0.1 "$hport" "$peer" "$n" 0
    lua5.4 "$here/bench.lua" 127.0.0.1 "$hport" "$peer" "$n" 1
    sleep 2
    local t0 t1 hz; hz=$(getconf CLK_TCK)
    t0=$(cpu_ticks); sleep 10; t1=$(cpu_ticks)
    echo "idle CPU of 2 workers over 10 s: $(( (t1 - t0) * 1000 / hz )) ms ($(awk "BEGIN{printf \"%.2f\", ($t1-$t0)/$hz/10*100}")%)"
    kill "$ngx_pid"; wait "$ngx_pid" 2>/dev/null || true; ngx_pid=
}
run waker 0.01 "waker (wake-up thread + cosocket, timeout = next_timeout)"
[ "${2:-}" = waker ] && exit 0
run timer 0.001 "timer, 1 ms"
run timer 0.01 "timer, 10 ms"
run timer 0.05 "timer, 50 ms"
