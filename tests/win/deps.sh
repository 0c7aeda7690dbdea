#!/usr/bin/env bash
# tests/win/deps.sh DIR - cross-builds what the Windows module needs and Debian does not
# package for mingw-w64, from Debian's own source packages, into DIR (kept between runs):
#   DIR/sodium/{include,lib/libsodium.a}   libsodium, static, --host=x86_64-w64-mingw32
#   DIR/lua/{include,lib/liblua54.dll.a}   Lua 5.4 as lua54.dll with its import library
#   DIR/lua/bin/{lua.exe,lua54.dll}        the interpreter that loads core.dll under wine
# Each part is skipped when its stamp file exists, so a second run costs nothing.
# Getting the sources needs a deb-src entry for Debian's archive: when apt has none, one is
# added (/etc/apt/sources.list.d/p2pnet-deb-src.sources, same mirror and suites as the
# binary entry) and apt-get update runs; that needs root.
set -eu
DIR=$(mkdir -p "$1" && cd "$1" && pwd)
HOST=${WIN_HOST:-x86_64-w64-mingw32}
CC=${WIN_CC:-$HOST-gcc}
JOBS=${JOBS:--j2}
SRC=$DIR/src
mkdir -p "$SRC"
# One build at a time: make test starts one in the background, and spec 34's `make windows`
# waits here for it, then finds the stamps.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$DIR/.lock"
    flock 9
fi

need_sources() {
    if apt-cache showsrc "$1" 2>/dev/null | grep -q '^Package:'; then return 0; fi
    if [ "$(id -u)" != 0 ]; then
        echo "deps.sh: apt has no deb-src entry and this is not root: cannot fetch $1" >&2
        return 1
    fi
    local list=/etc/apt/sources.list.d/p2pnet-deb-src.sources uris suites keyring
    # The mirror and suites of the first binary entry for Debian's main archive.
    uris=$(awk '/^URIs:/ && /debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    suites=$(awk -v u="$uris" '/^URIs:/ {m = ($2 == u)} m && /^Suites:/ {$1=""; print; exit}' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [ -n "$uris" ] || uris=http://deb.debian.org/debian
    [ -n "$suites" ] || suites=$(. /etc/os-release && echo "$VERSION_CODENAME")
    printf 'Types: deb-src\nURIs: %s\nSuites:%s\nComponents: main\nSigned-By: %s\n' \
        "$uris" "$suites" "$keyring" >"$list"
    echo "deps.sh: added $list ($uris$suites); apt-get update"
    apt-get update -q >/dev/null
}

fetch() { # package -> prints the unpacked directory
    local d
    d=$(ls -d "$SRC/$1"-*/ 2>/dev/null | head -n 1 || true)
    if [ -z "$d" ]; then
        need_sources "$1" >&2
        (cd "$SRC" && apt-get source -q "$1" >&2)
        d=$(ls -d "$SRC/$1"-*/ | head -n 1)
    fi
    echo "${d%/}"
}

if [ ! -f "$DIR/sodium/.done" ]; then
    t0=$SECONDS
    s=$(fetch libsodium)
    rm -rf "$DIR/sodium" "$SRC/sodium-build"
    mkdir -p "$SRC/sodium-build"
    # Debian's source is the upstream git tree: no generated configure script.
    if [ ! -x "$s/configure" ]; then
        (cd "$s" && autoreconf -fi) >"$DIR/sodium-autoreconf.log" 2>&1 ||
            { tail -n 30 "$DIR/sodium-autoreconf.log" >&2; exit 1; }
    fi
    t1=$SECONDS
    (cd "$SRC/sodium-build" &&
        "$s/configure" -q --host="$HOST" CC="$CC" --prefix="$DIR/sodium" --disable-shared \
            --enable-static --disable-dependency-tracking --disable-ssp CFLAGS="-O2") \
        >"$DIR/sodium-build.log" 2>&1 || { tail -n 30 "$DIR/sodium-build.log" >&2; exit 1; }
    t2=$SECONDS
    (cd "$SRC/sodium-build" && make -s "$JOBS" && make -s install) >>"$DIR/sodium-build.log" 2>&1 ||
        { tail -n 30 "$DIR/sodium-build.log" >&2; exit 1; }
    touch "$DIR/sodium/.done"
    echo "deps.sh: libsodium for $HOST built in $((SECONDS - t0)) s" \
        "(sources and autoreconf $((t1 - t0)) s, configure $((t2 - t1)) s, make $((SECONDS - t2)) s)"
fi

if [ ! -f "$DIR/lua/.done" ]; then
    t0=$SECONDS
    s=$(fetch lua5.4)
    rm -rf "$DIR/lua" "$SRC/lua-build"
    mkdir -p "$DIR/lua/include" "$DIR/lua/lib" "$DIR/lua/bin" "$SRC/lua-build"
    objs=()
    for f in "$s"/src/*.c; do
        case $(basename "$f") in lua.c | luac.c | onelua.c) continue ;; esac
        o=$SRC/lua-build/$(basename "$f" .c).o
        "$CC" -O2 -DLUA_BUILD_AS_DLL -DLUA_COMPAT_5_3 -c -o "$o" "$f"
        objs+=("$o")
    done
    "$CC" -shared -o "$DIR/lua/bin/lua54.dll" "${objs[@]}" \
        -Wl,--out-implib,"$DIR/lua/lib/liblua54.dll.a" -static-libgcc
    "$CC" -O2 -DLUA_BUILD_AS_DLL -DLUA_COMPAT_5_3 -o "$DIR/lua/bin/lua.exe" "$s/src/lua.c" \
        -L"$DIR/lua/lib" -llua54 -static-libgcc
    cp "$s"/src/lua.h "$s"/src/luaconf.h "$s"/src/lualib.h "$s"/src/lauxlib.h "$DIR/lua/include/"
    touch "$DIR/lua/.done"
    echo "deps.sh: Lua 5.4 for $HOST built in $((SECONDS - t0)) s"
fi
