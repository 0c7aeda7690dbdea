#!/usr/bin/env bash
# tests/check-layers-selftest.sh OBJDIR - shows that tests/check-layers.lua can fail: on a
# copy of csrc/ it plants one upward include (the path module including the hub's header), one
# sideways include (mesh including NAT's) and a read of NAT's fields from the path module, each
# of which must be reported, and checks that the untouched copy passes.
set -u
cd "$(dirname "$0")/.."
root=$PWD
objdir=$root/${1:-build/obj}
lua=${LUA:-lua5.4}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rc=0

run_on() { # label, then the expected outcome: pass or fail
    (cd "$tmp" && "$lua" "$root/tests/check-layers.lua" "$objdir") >"$tmp/out" 2>&1
    local got=$?
    if { [ "$2" = pass ] && [ $got -eq 0 ]; } || { [ "$2" = fail ] && [ $got -ne 0 ]; }; then
        echo "ok: $1"
    else
        echo "FAILED: $1 (expected the check to $2):"
        sed 's/^/  | /' "$tmp/out"
        rc=1
    fi
}

cp -r csrc "$tmp/csrc"
run_on "the tree as it is passes" pass
printf '#include <p2p_host.h>\n' >>"$tmp/csrc/p2p_path.c"
run_on "p2p_path.c including the hub's header is reported" fail
grep -q "up: p2p_path" "$tmp/out" || { echo "FAILED: no 'up: p2p_path' line"; rc=1; }
cp csrc/p2p_path.c "$tmp/csrc/p2p_path.c"
printf '#include "p2p_nat.h"\n' >>"$tmp/csrc/p2p_mesh.c"
run_on "p2p_mesh.c including NAT's header is reported" fail
grep -q "sideways: p2p_mesh -> p2p_nat" "$tmp/out" || { echo "FAILED: no sideways line"; rc=1; }
cp csrc/p2p_mesh.c "$tmp/csrc/p2p_mesh.c"
printf 'int planted(const p2p_host *h, const p2p_peer *p);\nint planted(const p2p_host *h, const p2p_peer *p) { return h->nat.relay + p->intro_state; }\n' >>"$tmp/csrc/p2p_path.c"
run_on "p2p_path.c reading NAT's state (h->nat, p->intro_state) is reported" fail
for f in nat intro_state; do
    grep -q "field: csrc/p2p_path.c:.* uses $f, which p2p_nat owns" "$tmp/out" ||
        { echo "FAILED: no field line for $f"; rc=1; }
done
exit $rc
