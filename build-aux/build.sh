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

# The product: x86_64 system emulation with KVM and TCG, the devices a q35
# or microvm guest and the tests use, trace backend "log".
config="--python=/usr/bin/python3 --target-list=x86_64-softmmu
 --without-default-features --enable-kvm --enable-tcg
 --enable-slirp --enable-virtfs --enable-attr --enable-cap-ng
 --enable-pixman --enable-fdt=system --enable-numa --enable-linux-aio
 --enable-trace-backends=log --disable-docs --disable-install-blobs
 --disable-download --disable-rust --disable-werror
 --firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu"
# Apart because they hold spaces. configure names the compilers for meson,
# so meson uses ccache only when they say so.
cc_opt='--cc=ccache cc'
cxx_opt='--cxx=ccache c++'
sig=$(echo "$config $cc_opt $cxx_opt" | sha256sum | cut -d' ' -f1)

if [ ! -f "$bld/build.ninja" ] || [ "$(cat "$bld/.fork-config" 2>/dev/null)" != "$sig" ]; then
    rm -rf "$bld"
    mkdir -p "$bld"
    # shellcheck disable=SC2086
    (cd "$bld" && "$src/configure" "$cc_opt" "$cxx_opt" $config) > "$cache/configure.log" 2>&1 || {
        tail -n 30 "$cache/configure.log" >&2
        echo "build: configure failed, full log in $cache/configure.log" >&2
        exit 1
    }
    echo "$sig" > "$bld/.fork-config"
fi

ninja -C "$bld" qemu-system-x86_64 "$@"

# A binary in the build tree looks for firmware under qemu-bundle/ plus the
# configured firmware path; the +ds tarball ships none, Debian's seabios
# and qemu-system-data packages do.
for dir in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu; do
    mkdir -p "$bld/qemu-bundle$(dirname "$dir")"
    ln -sfn "$dir" "$bld/qemu-bundle$dir"
done

# As in an upstream checkout: build/qemu-system-x86_64 in the clone.
[ -L "$repo/build" ] || [ ! -e "$repo/build" ] || {
    echo "build: $repo/build exists and is not our link; leaving it" >&2
    exit 0
}
ln -sfn "$bld" "$repo/build"
