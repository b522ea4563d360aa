#!/bin/sh
# The rig's other L1 kernel (README.md, "Kernels"): a small complete kernel
# built from Debian's linux-source with one compiler, KVM and
# KVM_SW_PROTECTED_VM built in, for runs that Debian's kernel with rebuilt
# kvm modules does not survive. Needs setup.sh's downloads. About 20 min on
# 2 cores the first time, cached in $CACHE/rig/full/ afterwards.
#   build-kernel.sh [-q]    -q: print nothing when already built
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${QEMU_GMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qemu-gmem}
rig=$cache/rig
full=$rig/full

# Bump when the kernel's configuration or build below changes; the
# initramfs follows init.sh on its own (it takes a second).
kernel_recipe=1

"$here/setup.sh" -q
read -r kver debver < "$rig/version"
series=$(echo "$debver" | sed 's/^\([0-9]*\.[0-9]*\).*/\1/')
want="$debver recipe $kernel_recipe"
want_initrd=$(sha256sum < "$here/init.sh" | cut -d' ' -f1)
kernel_ready() {
    [ "$(cat "$full/stamp" 2> /dev/null)" = "$want" ] && [ -s "$full/vmlinuz" ]
}
initrd_ready() {
    [ "$(cat "$full/initrd.stamp" 2> /dev/null)" = "$want_initrd" ] &&
    [ -s "$full/initrd.cpio.gz" ]
}
if kernel_ready && initrd_ready; then
    [ "${1:-}" = -q ] || echo "rig: full kernel up to date (linux-source $debver)"
    exit 0
fi
mkdir -p "$full"
exec 9> "$full/.lock"
flock 9

t0=$(date +%s)
log=$full/build.log
: > "$log"
step() { echo "rig: full kernel: $* (at $(($(date +%s) - t0)) s)"; }
die() {
    echo "rig: full kernel: $*" >&2
    tail -n 20 "$log" >&2
    exit 1
}

work=$full/work
rm -rf "$work"
mkdir -p "$work"
if ! kernel_ready; then
    step "unpacking linux-source-$debver"
    dpkg-deb --fsys-tarfile "$(ls "$rig/debs/linux-source-${series}_"*.deb)" |
        tar -xO "./usr/src/linux-source-$series.tar.xz" | xz -dc | tar -x -C "$work"
    src=$work/linux-source-$series
    [ -f "$src/arch/x86/kvm/x86.c" ] || die "linux-source-$series has no arch/x86/kvm"

    # defconfig and kvm_guest.config give a virtio guest; on top: what init.sh
    # and the rig's tests use, everything built in so that no module loads.
    (cd "$src" && make -s defconfig kvm_guest.config) >> "$log" 2>&1 || die "defconfig failed"
    (cd "$src" && scripts/config \
        -e EXPERT -e KVM -e KVM_AMD -d KVM_INTEL -e KVM_SW_PROTECTED_VM \
        -e NET_9P -e NET_9P_VIRTIO -e 9P_FS -e 9P_FS_POSIX_ACL \
        -e DEVTMPFS -e TMPFS -e HUGETLBFS -e MEMFD_CREATE -e USERFAULTFD \
        -e VFIO -e VFIO_PCI -e VFIO_IOMMU_TYPE1 -e IOMMU_SUPPORT \
        -e INTEL_IOMMU -e AMD_IOMMU -e OVERLAY_FS -e CGROUPS -e CGROUP_BPF \
        -d DEBUG_INFO -d DEBUG_INFO_DWARF5 -d DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT \
        -e DEBUG_INFO_NONE -d WERROR -d MODULE_SIG -d SYSTEM_TRUSTED_KEYRING \
        --set-str LOCALVERSION "-rig" --set-str SYSTEM_TRUSTED_KEYS "" \
        --set-str SYSTEM_REVOCATION_KEYS "") >> "$log" 2>&1 || die "scripts/config failed"
    (cd "$src" && make -s olddefconfig) >> "$log" 2>&1 || die "olddefconfig failed"
    grep -q '^CONFIG_KVM_SW_PROTECTED_VM=y' "$src/.config" ||
        die "CONFIG_KVM_SW_PROTECTED_VM did not stay set"
    step "configured; building bzImage (about 20 min on 2 cores)"
    (cd "$src" && make -j"$(nproc)" bzImage) >> "$log" 2>&1 || die "kernel build failed"
    cp "$src/.config" "$full/config"
    mv "$src/arch/x86/boot/bzImage" "$full/vmlinuz"
    echo "$want" > "$full/stamp"
    rm -rf "$src"
fi

# The same /init, with no modules to load.
ir=$work/initramfs
mkdir -p "$ir/bin" "$ir/sbin" "$ir/dev" "$ir/proc" "$ir/sys" "$ir/lib/modules" "$ir/host" "$ir/ctl"
dpkg-deb -x "$(ls "$rig/debs"/busybox-static_*.deb | head -n 1)" "$work/bb"
cp "$work/bb/usr/bin/busybox" "$ir/bin/busybox"
for a in $("$ir/bin/busybox" --list); do
    [ "$a" = busybox ] || ln -s busybox "$ir/bin/$a"
done
: > "$ir/lib/modules/order"
cp "$here/init.sh" "$ir/init"
chmod 755 "$ir/init"
(cd "$ir" && find . | LC_ALL=C sort | "$ir/bin/busybox" cpio -o -H newc -R 0:0 2> /dev/null) |
    gzip -6 > "$full/initrd.cpio.gz"
rm -rf "$work"
echo "$want_initrd" > "$full/initrd.stamp"
step "done: kernel $(du -k "$full/vmlinuz" | cut -f1) KiB"
