#!/usr/bin/env bash
# tests/win/run.sh SCRIPT [ARGS...] - runs a Lua script with the Windows build (`make windows`:
# lua.exe, lua54.dll and p2pnet/core.dll in $WIN_BUILD/run) under wine, as root or not, with
# no display. The wine prefix lives in $WIN_BUILD/wineprefix (made on the first run, kept);
# the script gets a scratch directory (Windows path) as its first argument, removed after;
# with WIN_SCRATCH=0 it gets only ARGS (for bin/p2pnet: WIN_SCRATCH=0 run.sh bin/p2pnet id F).
# Relative paths in ARGS are relative to the current directory, as on Linux.
# Prints the seconds the run took; exits with the script's status.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WIN_BUILD=${WIN_BUILD:-build-win}
case $WIN_BUILD in /*) ;; *) WIN_BUILD=$ROOT/$WIN_BUILD ;; esac
RUN=$WIN_BUILD/run
script=$1
shift
case $script in /*) ;; *) script=$ROOT/$script ;; esac
for f in lua.exe lua54.dll p2pnet/core.dll; do
    [ -f "$RUN/$f" ] || { echo "run.sh: $RUN/$f is missing (make windows)" >&2; exit 1; }
done
WINE=${WINE:-$(command -v wine64 || command -v wine || echo /usr/lib/wine/wine64)}
WINESERVER=${WINESERVER:-$(command -v wineserver || echo /usr/lib/wine/wineserver)}

export WINEPREFIX=$WIN_BUILD/wineprefix WINEARCH=win64 WINEDEBUG=-all
# No Mono or Gecko install prompts; no window system at all.
export WINEDLLOVERRIDES="mscoree,mshtml=;winex11.drv,winewayland.drv="
unset DISPLAY WAYLAND_DISPLAY
mkdir -p "$WINEPREFIX"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/p2pnet-win.XXXXXX")
cleanup() {
    # This prefix's wineserver only (it would linger a few seconds otherwise).
    "$WINESERVER" -k >/dev/null 2>&1 || true
    rm -rf "$scratch"
}
trap cleanup EXIT
# Drive Z: is the Unix root in every wine prefix.
export LUA_PATH="Z:$ROOT/lua/?.lua;Z:$ROOT/lua/?/init.lua"
export LUA_CPATH="Z:$RUN/?.dll"
unset LUA_INIT LUA_INIT_5_4 LUA_PATH_5_4 LUA_CPATH_5_4
t0=$(date +%s.%N)
rc=0
if [ "${WIN_SCRATCH:-1}" != 0 ]; then
    set -- "Z:$scratch" "$@"
fi
timeout -k 10 "${WIN_TIMEOUT:-300}" "$WINE" "$RUN/lua.exe" "Z:$script" "$@" || rc=$?
echo "run.sh: wine run took $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s, exit $rc"
exit "$rc"
