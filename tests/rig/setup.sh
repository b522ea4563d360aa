#!/bin/sh
# Set up the nested rig (see README.md): a Debian sid kernel for L1, booted
# by QEMU TCG, whose kvm.ko/kvm-amd.ko are rebuilt with
# CONFIG_KVM_SW_PROTECTED_VM, plus an initramfs and a KVM probe.
# Everything comes from Debian packages and lands in $CACHE/rig/. Idempotent:
# once set up, a rerun only compares a stamp. RIG_REFRESH=1 resolves the
# sid kernel again (sid keeps only its current one).
#   setup.sh [-q]    -q: print nothing when already set up
# QEMU_GMEM_RIG_BREAK=1 makes it fail at once, as a set-up that cannot
# work here would: make check must then fail with the reason.
set -eu
if [ -n "${QEMU_GMEM_RIG_BREAK:-}" ]; then
    echo "rig: set-up failed on purpose (QEMU_GMEM_RIG_BREAK=$QEMU_GMEM_RIG_BREAK)" >&2
    exit 1
fi
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${QEMU_GMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qemu-gmem}
rig=$cache/rig
flavour=amd64
# Wanted in L1, loaded with their dependencies first.
# vfio-pci and its IOMMU backend: the device-assignment tests (RIG_VFIO=1).
modules_wanted="9pnet_virtio 9p kvm-amd vfio_iommu_type1 vfio-pci"
# Bump when the kvm module build below changes in a way the stamp of the
# scripts would not catch on its own.
kvm_recipe=1

sig=$(cat "$here/setup.sh" "$here/init.sh" "$here/kvm-probe.c" | sha256sum | cut -d' ' -f1)
ready() {
    [ -z "${RIG_REFRESH:-}" ] && [ -s "$rig/version" ] &&
    [ "$(cat "$rig/stamp" 2> /dev/null)" = "$(cat "$rig/version") $sig" ] &&
    [ -s "$rig/vmlinuz" ] && [ -s "$rig/initrd.cpio.gz" ] && [ -x "$rig/kvm-probe" ] &&
    [ -s "$rig/include/x86_64-linux-gnu/asm/kvm.h" ] &&
    command -v qemu-system-x86_64 > /dev/null
}
up_to_date() {
    [ "$1" = -q ] || echo "rig: up to date (L1 kernel $(cut -d' ' -f1 "$rig/version"))"
    exit 0
}
ready && up_to_date "${1:-}"
# One set-up at a time (run.sh calls this too); the winner's work may be
# all that the others need.
mkdir -p "$rig"
exec 9> "$rig/.lock"
flock 9
ready && up_to_date "${1:-}"

# --- Host tools (nothing of the rig itself is installed on the host) -------
t0=$(date +%s)
"$repo/build-aux/apt-setup.sh"
export DEBIAN_FRONTEND=noninteractive
apt_install() {
    apt-get install -y -qq --no-install-recommends "$@" > /dev/null
}
# Module build (kbuild host tools, objtool), probe, initramfs.
apt_install build-essential bison flex bc libelf-dev libssl-dev kmod xz-utils zstd
# L0: TCG with SVM+NPT emulation good enough for a nested KVM.
# -t resolves its dependencies (seabios, qemu-system-common) from
# backports too, without downgrading a newer one already installed.
apt_install -t bookworm-backports qemu-system-x86

log=$rig/setup.log
: > "$log"
step() { echo "rig: $* (at $(($(date +%s) - t0)) s)"; }
die() {
    echo "rig: $*" >&2
    [ -s "$log" ] && { echo "rig: last lines of $log:" >&2; tail -n 20 "$log" >&2; }
    exit 1
}

# --- One sid kernel version for every package --------------------------------
# "kver debver", e.g. "7.2.13+deb14-amd64 7.2.13-1", from sid's meta package.
resolve() {
    apt-cache show "linux-image-$flavour/sid" 2> /dev/null |
        sed -n 's/^Depends: //p' | head -n 1 | tr ',' '\n' |
        sed -n "s/^ *linux-image-\([^ ]*-$flavour\) (= \([^)]*\)).*/\1 \2/p"
}
if [ -n "${RIG_REFRESH:-}" ] || [ ! -s "$rig/version" ]; then
    v=$(resolve)
    [ -n "$v" ] || die "cannot find linux-image-$flavour in sid (apt-get update?)"
    if [ "$v" != "$(cat "$rig/version" 2> /dev/null)" ]; then
        rm -rf "$rig/debs" "$rig/modules"
        echo "$v" > "$rig/version"
    fi
fi
read -r kver debver < "$rig/version"
abi=${kver%-"$flavour"}
series=$(echo "$debver" | sed 's/^\([0-9]*\.[0-9]*\).*/\1/')
step "L1 kernel $kver (Debian $debver)"

# --- Downloads (apt-get download: the mirror is apt's) -----------------------
debs=$rig/debs
mkdir -p "$debs"
get() { # package version
    ls "$debs/$1_$2_"*.deb > /dev/null 2>&1 && return 0
    (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root "$1=$2") >> "$log" 2>&1
}
for p in "linux-binary-$kver" "linux-modules-$kver" "linux-headers-$kver" \
         "linux-headers-$abi-common" "linux-kbuild-$abi" "linux-source-$series"; do
    get "$p" "$debver" || die "cannot download $p=$debver from sid; sid has probably moved on: rerun with RIG_REFRESH=1"
done
# UAPI headers for the probe: the same version if sid has it, else sid's.
if ! get linux-libc-dev "$debver" && ! ls "$debs"/linux-libc-dev_*.deb > /dev/null 2>&1; then
    (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root linux-libc-dev/sid) >> "$log" 2>&1 ||
        die "cannot download linux-libc-dev from sid"
fi
if ! ls "$debs"/busybox-static_*.deb > /dev/null 2>&1; then
    (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root busybox-static/sid) >> "$log" 2>&1 ||
        die "cannot download busybox-static from sid"
fi
step "packages downloaded"

work=$rig/work
rm -rf "$work"
mkdir -p "$work/root"
x() { dpkg-deb -x "$(ls "$debs/$1"_*.deb | head -n 1)" "$work/root"; }
x "linux-binary-$kver"
x "linux-modules-$kver"
x linux-libc-dev
x busybox-static
mods=$work/root/usr/lib/modules/$kver
[ -s "$mods/vmlinuz" ] || die "linux-binary-$kver has no usr/lib/modules/$kver/vmlinuz"

# --- kvm.ko and kvm-amd.ko with CONFIG_KVM_SW_PROTECTED_VM -------------------
# Built against Debian's headers, so the vermagic and the config are Debian's.
# sid's kbuild host tools need a newer glibc than bookworm's: modpost and
# objtool come from linux-source instead, built with the host gcc.
if [ "$(cat "$rig/modules/.kvm" 2> /dev/null)" != "$kver $kvm_recipe" ]; then
    step "rebuilding kvm modules (about a minute)"
    x "linux-headers-$kver"
    x "linux-headers-$abi-common"
    x "linux-kbuild-$abi"
    src=$work/linux-source-$series
    dpkg-deb --fsys-tarfile "$(ls "$debs/linux-source-${series}_"*.deb)" |
        tar -xO "./usr/src/linux-source-$series.tar.xz" | xz -dc | tar -x -C "$work"
    [ -f "$src/arch/x86/kvm/x86.c" ] || die "linux-source-$series has no arch/x86/kvm"
    hdr=$work/root/usr/src/linux-headers-$kver
    common=$work/root/usr/src/linux-headers-$abi-common
    kbuild=$work/root/usr/lib/linux-kbuild-$abi

    cp "$hdr/.config" "$src/.config"
    (make -C "$src" -s olddefconfig && make -C "$src" -s -j2 modules_prepare) >> "$log" 2>&1 ||
        die "building kbuild host tools from linux-source failed"
    cp "$src/scripts/mod/modpost" "$kbuild/scripts/mod/modpost.real-lsb-64"
    cp "$src/tools/objtool/objtool" "$kbuild/tools/objtool/objtool.real-x86"

    # The headers' Makefile names /usr/src paths; point it at this tree.
    printf 'KBUILD_OUTPUT=%s\ninclude %s/Makefile\n' "$hdr" "$common" > "$hdr/Makefile"
    # KVM's Makefile includes $(srctree)/virt/kvm/Makefile.kvm and its own
    # headers from $(srctree)/arch/x86/kvm: build it inside the headers tree.
    mkdir -p "$common/arch/x86" "$common/virt"
    cp -a "$src/arch/x86/kvm" "$common/arch/x86/kvm"
    cp -a "$src/virt/kvm" "$common/virt/kvm"
    # gcc 12 lacks -fmin-function-alignment, bookworm's pahole is older than
    # the kernel's (no BTF then), and kvm-intel is not needed.
    make -C "$hdr" -j2 M="$common/arch/x86/kvm" CC=gcc \
        KCFLAGS=-DCONFIG_KVM_SW_PROTECTED_VM=1 \
        CONFIG_CC_HAS_MIN_FUNCTION_ALIGNMENT= CONFIG_DEBUG_INFO_BTF_MODULES= \
        CONFIG_KVM_INTEL= modules >> "$log" 2>&1 ||
        die "kvm module build failed. A fallback is a small complete kernel built from linux-source-$series with KVM_SW_PROTECTED_VM=y (see shared/rig.md); setup.sh does not do that yet"
    for m in kvm kvm-amd; do
        [ "$(modinfo -F vermagic "$common/arch/x86/kvm/$m.ko")" = \
          "$(modinfo -F vermagic "$mods/kernel/arch/x86/kvm/$m.ko.xz")" ] ||
            die "$m.ko: vermagic differs from Debian's"
    done

    rm -rf "$rig/modules"
    mkdir -p "$rig/modules.tmp"
    for m in kvm kvm-amd; do
        strip --strip-debug -o "$rig/modules.tmp/$m.ko" "$common/arch/x86/kvm/$m.ko"
    done
    echo "$kver $kvm_recipe" > "$rig/modules.tmp/.kvm"
    mv "$rig/modules.tmp" "$rig/modules"
    step "kvm modules built"
fi

# --- Debian's other modules, in dependency order -----------------------------
order=
module_file() { # name: its .ko* in linux-modules (names mix - and _)
    find "$mods/kernel" \( -name "$1.ko*" -o -name "$(echo "$1" | tr _ -).ko*" \
        -o -name "$(echo "$1" | tr - _).ko*" \) | head -n 1 | grep . ||
        die "module $1 not in linux-modules-$kver"
}
add_module() { # name: its dependencies first (sh has no locals: no state kept across the recursion)
    case " $order " in *" $1 "*) return 0 ;; esac
    for d in $(modinfo -F depends "$(module_file "$1")" | tr ',' ' '); do
        add_module "$d"
    done
    order="$order $1"
    case "$1" in
        kvm|kvm-amd) return 0 ;; # ours
    esac
    f=$(module_file "$1")
    case "$f" in
        *.xz) xz -dc "$f" > "$rig/modules/$1.ko" ;;
        *.zst) zstd -qdc "$f" > "$rig/modules/$1.ko" ;;
        *) cp "$f" "$rig/modules/$1.ko" ;;
    esac
}
for m in $modules_wanted; do
    add_module "$m"
done
echo "$order" | tr ' ' '\n' | sed '/^$/d' > "$rig/modules/order"
cp "$mods/vmlinuz" "$rig/vmlinuz"
step "modules:$order"

# --- Initramfs: busybox-static, the modules, /init ---------------------------
ir=$work/initramfs
mkdir -p "$ir/bin" "$ir/sbin" "$ir/dev" "$ir/proc" "$ir/sys" "$ir/lib/modules" "$ir/host" "$ir/ctl"
cp "$work/root/usr/bin/busybox" "$ir/bin/busybox"
for a in $("$ir/bin/busybox" --list); do
    [ "$a" = busybox ] || ln -s busybox "$ir/bin/$a"
done
cp "$rig/modules/"*.ko "$rig/modules/order" "$ir/lib/modules/"
cp "$here/init.sh" "$ir/init"
chmod 755 "$ir/init"
(cd "$ir" && find . | LC_ALL=C sort | "$ir/bin/busybox" cpio -o -H newc -R 0:0 2> /dev/null) |
    gzip -6 > "$rig/initrd.cpio.gz.tmp"
mv "$rig/initrd.cpio.gz.tmp" "$rig/initrd.cpio.gz"
step "initramfs $(du -k "$rig/initrd.cpio.gz" | cut -f1) KiB"

# --- The probe, static, against sid's UAPI headers ---------------------------
inc=$work/root/usr/include
gcc -static -O2 -Wall -Wextra -I "$inc/x86_64-linux-gnu" -I "$inc" \
    -o "$rig/kvm-probe.tmp" "$here/kvm-probe.c" >> "$log" 2>&1 || die "building kvm-probe failed"
mv "$rig/kvm-probe.tmp" "$rig/kvm-probe"
# The same headers for what is built against them later (make bench),
# dereferenced: the arch headers link into usr/lib/linux/uapi.
rm -rf "$rig/include"
cp -RL "$inc" "$rig/include"

rm -rf "$work"
echo "$kver $debver $sig" > "$rig/stamp"
echo "rig: set up in $(($(date +%s) - t0)) s: L1 kernel $kver, cache $rig"
