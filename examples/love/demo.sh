#!/usr/bin/env bash
# Two headless players of examples/love on 127.0.0.1: alice hosts, bob joins; both walk, say
# hello, check that they saw each other's moves and chat, and print what they saw and the
# frame cost of poll(0). Needs the LuaJIT module: make BUILD=build-luajit LUA_PC=luajit module
# (or `make love-demo`, which builds it and runs this). FRAMES=n plays longer (default 300).
set -u
cd "$(dirname "$0")/../.."
FRAMES=${FRAMES:-300}
tmp=$(mktemp -d /tmp/p2pnet-love-demo.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
# busted's and the user's LUA_PATH/LUA_CPATH may name a Lua 5.4 build: LÖVE is LuaJIT
run() { env -u LUA_PATH -u LUA_CPATH P2PNET_LOVE_HEADLESS=1 love examples/love "$@"; }

run --bot --host 0 --bind 127.0.0.1 --name alice --frames "$FRAMES" >"$tmp/alice" 2>&1 &
pids+=($!)
alice=$!
addr=
for _ in $(seq 100); do
    addr=$(sed -n 's/^LISTEN //p' "$tmp/alice")
    [ -n "$addr" ] && break
    sleep 0.1
done
if [ -z "$addr" ]; then
    echo "alice did not start:" >&2
    cat "$tmp/alice" >&2
    exit 1
fi
run --bot --join "$addr" --bind 127.0.0.1 --name bob --frames "$FRAMES" >"$tmp/bob" 2>&1 &
pids+=($!)
bob=$!
rc=0
wait "$alice" || rc=1
wait "$bob" || rc=1
pids=() # both have exited: nothing left to stop
for who in alice bob; do
    echo "== $who"
    grep -E '^(ID|LISTEN|SELF|SEEN|POLL|FRAMES|RESULT)' "$tmp/$who"
done
exit $rc
