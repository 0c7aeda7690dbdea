#!/usr/bin/env bash
# make rock: packs the source rock of the release, p2pnet-<version>-1.src.rock, into DIR
# (default: the current directory), with `luarocks pack` on rockspec/p2pnet-<version>-1.rockspec.
#
# That rockspec's source is the release tag (v<version>) of the project's git repository, and
# `luarocks pack` clones it. So that the rock can be made and tested offline, from the tree as
# it is now, this script makes a git repository of the working tree (tracked files and new
# ones that .gitignore does not exclude), tags it, and has git fetch the rockspec's URL from
# there (GIT_CONFIG_* url.<local>.insteadOf): the rock is what luarocks would pack from that
# tag, with the tree's content.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-.}" && cd "${1:-.}" && pwd)
version=$(sed -n 's/^#define P2P_VERSION_STRING "\(.*\)"$/\1/p' "$root/csrc/p2pnet.h")
spec=$root/rockspec/p2pnet-$version-1.rockspec
[ -f "$spec" ] || { echo "pack: $spec is missing (make rockspec writes it)" >&2; exit 1; }
url=$(sed -n 's/^ *url = "git+\(.*\)",$/\1/p' "$spec")
tag=$(sed -n 's/^ *tag = "\(.*\)",$/\1/p' "$spec")
if [ -z "$url" ] || [ "$tag" != "v$version" ]; then
    echo "pack: $spec has no git+ url and tag v$version" >&2
    exit 1
fi
tmp=$(mktemp -d /tmp/p2pnet-pack.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/repo"
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
    # Files deleted in the working tree but still in the index are skipped.
    (cd "$root" && git ls-files -z --cached --others --exclude-standard |
        tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -C "$tmp/repo" -xf -
else
    # Not a checkout (an unpacked archive): the tree without build products.
    (cd "$root" && tar --exclude=./.git --exclude='./build' --exclude='./build-*' \
        --exclude='*.o' --exclude='*.so' --exclude='*.a' --exclude='*.d' --exclude='*.rock' \
        -cf - .) | tar -C "$tmp/repo" -xf -
fi
(
    cd "$tmp/repo"
    git init -q
    git add -A
    git -c user.name=p2pnet -c user.email=p2pnet@localhost commit -qm "p2pnet $version"
    git tag "$tag"
)
cd "$out"
rm -f "p2pnet-$version-1.src.rock"
GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0="url.file://$tmp/repo.insteadOf" GIT_CONFIG_VALUE_0="$url" \
    http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 \
    luarocks pack "$spec"
test -f "p2pnet-$version-1.src.rock"
echo "$out/p2pnet-$version-1.src.rock"
