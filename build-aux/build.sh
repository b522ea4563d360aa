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
# The linker rewrites its output in place: a QEMU still running from it
# (a test, a guest in the rig, which reads it through 9p) would crash on
# the new text. One it will relink moves aside first, keeping its inode.
if ninja -C "$bld" -n qemu-system-x86_64 "$@" |
        grep -q 'Linking target qemu-system-x86_64$'; then
    mv -f "$bld/qemu-system-x86_64" "$bld/qemu-system-x86_64.old" 2>/dev/null ||
        true
fi
ninja -C "$bld" qemu-system-x86_64 "$@"

# As in an upstream checkout: build/qemu-system-x86_64 in the clone.
[ -L "$repo/build" ] || [ ! -e "$repo/build" ] || {
    echo "build: $repo/build exists and is not our link; leaving it" >&2
    exit 0
}
ln -sfn "$bld" "$repo/build"
