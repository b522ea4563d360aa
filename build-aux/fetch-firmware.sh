#!/bin/sh
# Debian's confidential-guest firmware for the launch measurement tests:
# ovmf-amdsev (OVMF.amdsev.fd, SEV-SNP) and ovmf-inteltdx
# (OVMF.inteltdx.ms.fd, TDX) from sid, unpacked into the cache with
# dpkg -x (the host's firmware set does not change) and checked against
# the pins below. Prints the directory that holds the .fd files.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${QEMU_GMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qemu-gmem}
version=2026.08+ds-2
dir=$cache/firmware/ovmf-$version
fd=$dir/usr/share/ovmf

pins="OVMF.amdsev.fd 3e4fd0b3fe3b2dbe481c3d9e99418a034174f26cbe1f55aa212b0f18c12d2d6f
OVMF.inteltdx.ms.fd a265075b4147a096109e501e76196df1ec8a18659c26f7401492c597ec88f312"

verified() {
    echo "$pins" | while read -r f sum; do
        [ "$(sha256sum "$fd/$f" 2>/dev/null | cut -d' ' -f1)" = "$sum" ] ||
            { echo "$f"; break; }
    done
}

if [ -n "$(verified)" ]; then
    "$here/apt-setup.sh"
    dl=$cache/downloads/firmware
    rm -rf "$dl" "$dir"
    mkdir -p "$dl" "$dir"
    echo "fetch-firmware: ovmf-amdsev and ovmf-inteltdx $version from sid" >&2
    (cd "$dl" && apt-get download -qq "ovmf-amdsev=$version" \
         "ovmf-inteltdx=$version" >&2)
    for deb in "$dl"/*.deb; do
        dpkg -x "$deb" "$dir"
    done
    bad=$(verified)
    if [ -n "$bad" ]; then
        echo "fetch-firmware: $bad does not match its pin in $0" >&2
        exit 1
    fi
fi
echo "$fd"
