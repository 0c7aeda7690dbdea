#!/usr/bin/env bash
# Checks that rockspec/p2pnet-scm-1.rockspec builds p2pnet.core from exactly the C files the
# Makefile builds: csrc/lp2pnet.c and every csrc/p2p_*.c. A file added to csrc/ but not to
# the rockspec would build with make and break `luarocks install`.
set -u
cd "$(dirname "$0")/.."
spec=rockspec/p2pnet-scm-1.rockspec
listed=$(grep -o '"csrc/[A-Za-z0-9_]*\.c"' "$spec" | tr -d '"' | sort)
present=$( (ls csrc/p2p_*.c csrc/lp2pnet.c 2>/dev/null) | sort)
if [ "$listed" = "$present" ]; then
    echo "rockspec lists the $(echo "$listed" | grep -c .) C sources in csrc/"
    exit 0
fi
echo "rockspec and csrc/ disagree:" >&2
diff <(echo "$listed") <(echo "$present") | sed -n 's/^< /  only in the rockspec: /p; s/^> /  only in csrc\/:        /p' >&2
exit 1
