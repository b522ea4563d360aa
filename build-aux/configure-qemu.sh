#!/bin/sh
# configure-qemu.sh SRC BLD: configure a QEMU tree SRC in BLD with this
# branch's configuration (again only when that changed), and lay the
# firmware links a binary in BLD looks for. Used for our build and for the
# pristine one that make check-upstream compares it with.
set -eu
src=$1
bld=$2
cache=${QEMU_GMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qemu-gmem}
export CCACHE_DIR=${CCACHE_DIR:-$cache/ccache}

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
    log=$bld.configure.log
    echo "configure: $(basename "$bld") (about a minute; log: $log)"
    # shellcheck disable=SC2086
    (cd "$bld" && "$src/configure" "$cc_opt" "$cxx_opt" $config) > "$log" 2>&1 || {
        tail -n 30 "$log" >&2
        echo "configure: failed, full log in $log" >&2
        exit 1
    }
    echo "$sig" > "$bld/.fork-config"
fi

# A binary in the build tree looks for firmware under qemu-bundle/ plus the
# configured firmware path; the +ds tarball ships none, Debian's seabios
# and qemu-system-data packages do.
for dir in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu; do
    mkdir -p "$bld/qemu-bundle$(dirname "$dir")"
    ln -sfn "$dir" "$bld/qemu-bundle$dir"
done
