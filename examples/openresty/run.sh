#!/usr/bin/env bash
# Runs examples/openresty in the foreground: nginx on 127.0.0.1:8080, the p2pnet node on UDP
# 127.0.0.1:7000 (P2PNET_PORT), in a temporary prefix. Ctrl-C stops it.
#   bash examples/openresty/run.sh [-w WORKERS]
# Needs: nginx, libnginx-mod-http-lua, and `make BUILD=build-luajit LUA_PC=luajit module`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
workers=1
if [ "${1:-}" = "-w" ]; then workers=$2; fi
if [ ! -f "$root/build-luajit/p2pnet/core.so" ]; then
    echo "build the LuaJIT module first: make BUILD=build-luajit LUA_PC=luajit module" >&2
    exit 1
fi
prefix=$(mktemp -d /tmp/p2pnet-openresty.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
mkdir -p "$prefix/logs" "$prefix/temp"
user=
if [ "$(id -u)" = 0 ]; then user="user root;"; fi
echo "nginx on http://127.0.0.1:8080 (prefix $prefix); try: curl 127.0.0.1:8080/info" >&2
P2PNET_ROOT=$root nginx -p "$prefix" -e "$prefix/logs/error.log" -c "$here/nginx.conf" \
    -g "daemon off; worker_processes $workers; $user"
