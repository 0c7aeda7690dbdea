#!/usr/bin/env bash
# Checks rockspec/p2pnet-scm-1.rockspec against the tree:
# - it builds p2pnet.core from exactly the C files the Makefile builds: every csrc/p2p_*.c
#   (the core), csrc/driver/*.c and csrc/lua/*.c (the binding). A file added to csrc/ but not
#   to the rockspec would build with make and break `luarocks install`;
# - every other file it names (the Lua modules, the bin/ command line) exists, so that
#   `luarocks make` cannot fail on a missing file.
set -u
cd "$(dirname "$0")/.."
spec=rockspec/p2pnet-scm-1.rockspec
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
exit "$rc"
