#!/usr/bin/env bash
# Checks rockspec/p2pnet-scm-1.rockspec against the tree:
# - it builds p2pnet.core from exactly the C files the Makefile builds: every csrc/p2p_*.c
#   (the core), csrc/driver/*.c and csrc/lua/*.c (the binding). A file added to csrc/ but not
#   to the rockspec would build with make and break `luarocks install`;
# - every other file it names (the Lua modules, the bin/ command line) exists, so that
#   `luarocks make` cannot fail on a missing file;
# - it installs docs/ and examples/ (build.copy_directories), and both exist;
# - the release rockspec, rockspec/p2pnet-<version>-1.rockspec with <version> the
#   P2P_VERSION_STRING of csrc/p2pnet.h, is exactly what rockspec/versioned.lua makes of the
#   scm one (only `version` and the source tag differ): `make rockspec` rewrites it.
set -u
cd "$(dirname "$0")/.."
spec=rockspec/p2pnet-scm-1.rockspec
LUA=${LUA:-lua5.4}
rc=0
listed=$(grep -o '"csrc/[A-Za-z0-9_/]*\.c"' "$spec" | tr -d '"' | sort)
present=$( (ls csrc/p2p_*.c csrc/driver/*.c csrc/lua/*.c 2>/dev/null) | sort)
if [ "$listed" = "$present" ]; then
    echo "rockspec lists the $(echo "$listed" | grep -c .) C sources in csrc/"
else
    echo "rockspec and csrc/ disagree:" >&2
    diff <(echo "$listed") <(echo "$present") | sed -n 's/^< /  only in the rockspec: /p; s/^> /  only in csrc\/:        /p' >&2
    rc=1
fi
others=$(grep -oE '"(lua|bin)/[A-Za-z0-9_./-]+"' "$spec" | tr -d '"' | sort -u)
if ! echo "$others" | grep -qx 'bin/p2pnet'; then
    echo "rockspec does not install bin/p2pnet (build.install.bin)" >&2
    rc=1
fi
for f in $others; do
    if [ -f "$f" ]; then
        echo "rockspec installs $f"
    else
        echo "rockspec names $f, which does not exist" >&2
        rc=1
    fi
done
for d in docs examples; do
    if ! grep -qE "^ *copy_directories = \{.*\"$d\"" "$spec"; then
        echo "rockspec does not install $d/ (build.copy_directories)" >&2
        rc=1
    elif [ ! -d "$d" ]; then
        echo "rockspec installs $d/, which does not exist" >&2
        rc=1
    else
        echo "rockspec installs $d/"
    fi
done
version=$(sed -n 's/^#define P2P_VERSION_STRING "\(.*\)"$/\1/p' csrc/p2pnet.h)
release=rockspec/p2pnet-$version-1.rockspec
if [ -z "$version" ]; then
    echo "no P2P_VERSION_STRING in csrc/p2pnet.h" >&2
    rc=1
elif [ ! -f "$release" ]; then
    echo "$release is missing (make rockspec)" >&2
    rc=1
elif ! want=$("$LUA" rockspec/versioned.lua "$version" < "$spec"); then
    echo "rockspec/versioned.lua failed on $spec" >&2
    rc=1
elif [ "$want" != "$(cat "$release")" ]; then
    echo "$release differs from $spec beyond version and tag (make rockspec):" >&2
    diff <(echo "$want") "$release" | sed 's/^/  /' >&2
    rc=1
else
    echo "$release matches $spec (version $version, tag v$version)"
fi
for other in rockspec/p2pnet-*.rockspec; do
    case "$other" in "$spec" | "$release") ;; *)
        echo "$other is neither the scm nor the $version rockspec (remove it)" >&2
        rc=1 ;;
    esac
done
exit "$rc"
