#!/bin/sh
# make install / make uninstall, as upstream QEMU's: PREFIX (default
# /usr/local) and DESTDIR.
#
# QEMU's own meson install does the work, into a staging directory under
# the build's configured prefix; QEMU is relocatable (it finds its data
# relative to the binary), so the staged tree is then copied to
# DESTDIR/PREFIX. Firmware stays where Debian's packages put it: the
# build's firmware path is absolute (/usr/share/qemu, /usr/share/seabios,
# /usr/lib/ipxe/qemu), readable by any user, libvirt's libvirt-qemu
# included. The list of installed files is kept beside the data, for
# make uninstall.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${QEMU_GMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qemu-gmem}
bld=$cache/build
prefix=${PREFIX:-/usr/local}
destdir=${DESTDIR:-}
root=$destdir$prefix
manifest=$root/share/qemu-gmem/installed-files

case "${1:-install}" in
install)
    echo "install: building what QEMU installs"
    ninja -C "$bld" > "$cache/install-ninja.log" 2>&1 || {
        tail -n 20 "$cache/install-ninja.log" >&2
        exit 1
    }
    stage=$cache/install-stage
    rm -rf "$stage"
    "$bld/pyvenv/bin/meson" install -C "$bld" --no-rebuild --quiet \
        --destdir "$stage" > "$cache/install.log" 2>&1 || {
        tail -n 20 "$cache/install.log" >&2
        exit 1
    }
    configured=$("$bld/pyvenv/bin/python3" -c '
import json, sys
for o in json.load(open(sys.argv[1])):
    if o["name"] == "prefix":
        print(o["value"])
' "$bld/meson-info/intro-buildoptions.json")
    # The manifest: "f PATH" per file, "d PATH" per directory this made.
    mkdir -p "$stage$configured/share/qemu-gmem"
    : > "$stage$configured/share/qemu-gmem/installed-files"
    (cd "$stage$configured" &&
     find . -mindepth 1 -type d | sed 's|^\./||' | LC_ALL=C sort |
     while read -r d; do
         [ -d "$root/$d" ] || echo "d $d"
     done
     find . ! -type d | sed 's|^\./|f |' | LC_ALL=C sort) > "$cache/installed-files"
    mkdir -p "$root"
    cp -a "$stage$configured/." "$root/"
    mv "$cache/installed-files" "$manifest"
    rm -rf "$stage"
    # The tree must be usable by users other than root (libvirt-qemu).
    chmod -R a+rX "$root/bin/qemu-system-x86_64" "$root/share/qemu"
    echo "install: $(grep -c '^f ' "$manifest") files under $root" \
         "(binary: $root/bin/qemu-system-x86_64)"
    ;;
uninstall)
    if [ ! -f "$manifest" ]; then
        echo "uninstall: nothing installed under $root ($manifest missing)" >&2
        exit 1
    fi
    list=$(cat "$manifest")
    n=$(printf '%s\n' "$list" | grep -c '^f ' || :)
    printf '%s\n' "$list" | sed -n 's/^f //p' | while read -r f; do
        rm -f "$root/$f"
    done
    # Then the directories it made, deepest first, if nothing else is in.
    printf '%s\n' "$list" | sed -n 's/^d //p' | LC_ALL=C sort -r |
    while read -r d; do
        rmdir "$root/$d" 2>/dev/null || :
    done
    echo "uninstall: $n files removed from $root"
    ;;
*)
    echo "usage: $0 install|uninstall" >&2
    exit 2
    ;;
esac
