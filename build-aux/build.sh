#!/bin/sh
# Assemble the tree and build qemu-system-x86_64 incrementally in the cache.
# Extra ninja targets may be given as arguments.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${QEMU_GMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qemu-gmem}
src=$cache/src
bld=$cache/build
export CCACHE_DIR=${CCACHE_DIR:-$cache/ccache}

"$repo/build-aux/assemble.sh"

"$repo/build-aux/configure-qemu.sh" "$src" "$bld"
ninja -C "$bld" qemu-system-x86_64 "$@"

# As in an upstream checkout: build/qemu-system-x86_64 in the clone.
[ -L "$repo/build" ] || [ ! -e "$repo/build" ] || {
    echo "build: $repo/build exists and is not our link; leaving it" >&2
    exit 0
}
ln -sfn "$bld" "$repo/build"
