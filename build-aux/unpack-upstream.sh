#!/bin/sh
# unpack-upstream.sh DEST: the pinned upstream tree in DEST (made anew):
# the tarball and the Debian patches it needs to configure, none of ours.
# assemble.sh lays patches/ over it; check-upstream.sh builds it pristine.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/upstream.pin"
dest=$1
dl=$("$here/fetch-upstream.sh")
rm -rf "$dest"
mkdir -p "$dest"
tar -xJf "$dl/$orig" -C "$dest" --strip-components=1
tar -xJf "$dl/$debian" -C "$dest" debian/patches
for p in $debian_patches; do
    patch -d "$dest" -p1 -s -F0 < "$dest/debian/patches/$p"
done
rm -rf "$dest/debian"
