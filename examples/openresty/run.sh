#!/usr/bin/env bash
# Runs examples/openresty in the foreground: nginx on 127.0.0.1:8080, the p2pnet node on UDP
# 127.0.0.1:7000 (P2PNET_PORT), in a temporary prefix. Ctrl-C stops it.
#   bash examples/openresty/run.sh [-w WORKERS]
# Needs: nginx, libnginx-mod-http-lua, and p2pnet for LuaJIT (the 5.1 ABI), found in this order:
#   P2PNET_LUA_PATH / P2PNET_LUA_CPATH, when set (Lua search paths);
#   a checkout's `make BUILD=build-luajit LUA_PC=luajit module`;
#   an installed rock: `luarocks --lua-version 5.1 install p2pnet` (its default trees; for
#   another tree, set the two variables from `luarocks --lua-version 5.1 --tree T path`).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
workers=1
if [ "${1:-}" = "-w" ]; then workers=$2; fi
if [ -z "${P2PNET_LUA_CPATH:-}" ]; then
    if [ -f "$root/build-luajit/p2pnet/core.so" ]; then
        P2PNET_LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;"
        P2PNET_LUA_CPATH="$root/build-luajit/?.so;"
    elif command -v luarocks >/dev/null 2>&1; then
        P2PNET_LUA_PATH="$(luarocks --lua-version 5.1 path --lr-path);"
        P2PNET_LUA_CPATH="$(luarocks --lua-version 5.1 path --lr-cpath);"
    fi
fi
if [ -z "${P2PNET_LUA_CPATH:-}" ] || ! LUA_PATH="${P2PNET_LUA_PATH:-};;" \
        LUA_CPATH="$P2PNET_LUA_CPATH;" luajit -e 'require "p2pnet.core"' 2>/dev/null; then
    echo "p2pnet for LuaJIT not found: in a checkout, make BUILD=build-luajit LUA_PC=luajit" \
        "module; or luarocks --lua-version 5.1 install p2pnet" >&2
    exit 1
fi
export P2PNET_LUA_PATH P2PNET_LUA_CPATH
prefix=$(mktemp -d /tmp/p2pnet-openresty.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
mkdir -p "$prefix/logs" "$prefix/temp"
user=
if [ "$(id -u)" = 0 ]; then user="user root;"; fi
echo "nginx on http://127.0.0.1:8080 (prefix $prefix); try: curl 127.0.0.1:8080/info" >&2
P2PNET_ROOT=$root nginx -p "$prefix" -e "$prefix/logs/error.log" -c "$here/nginx.conf" \
    -g "daemon off; worker_processes $workers; $user"
