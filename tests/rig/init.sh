#!/bin/sh
# /init of the rig's L1 initramfs (busybox sh). Loads the modules listed in
# /lib/modules/order, mounts the host's root read-only at /host, and runs
# the command that run.sh left in the control share, chrooted into /host.
#
# Channels: ttyS0 is the kernel console (a log file on the host), ttyS1 is
# the command's stdout+stderr (run.sh's stdout). The control share (9p tag
# rigctl) holds cmd.sh, scratch-path, and receives started and status.
PATH=/sbin:/bin
export PATH

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

say() { echo "rig-init: $*" > /dev/ttyS0; }
fail() {
    say "FAIL: $*"
    [ -d /ctl/. ] && echo "$*" > /ctl/failed 2>/dev/null
    sync
    poweroff -f
}

while read -r m; do
    insmod "/lib/modules/$m.ko" || fail "insmod $m failed"
done < /lib/modules/order
[ -c /dev/kvm ] || fail "no /dev/kvm after loading kvm-amd"

# RIG_VFIO=1 (run.sh): QEMU's edu devices go to vfio-pci, for assignment.
for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x11e8 ] || continue
    echo vfio-pci > "$d/driver_override" &&
    echo "${d##*/}" > /sys/bus/pci/drivers_probe &&
    [ -e "$d/iommu_group" ] && [ "$(basename "$(readlink "$d/driver")")" = vfio-pci ] ||
        fail "cannot bind edu ${d##*/} to vfio-pci"
    say "edu ${d##*/} bound to vfio-pci, IOMMU group $(basename "$(readlink "$d/iommu_group")")"
done

p9='trans=virtio,version=9p2000.L,msize=262144'
mkdir -p /ctl /host
mount -t 9p -o "$p9" rigctl /ctl || fail "cannot mount the control share"
mount -t 9p -o "$p9,ro,cache=loose" hostroot /host || fail "cannot mount the host root"
mount -t proc proc /host/proc &&
mount -t sysfs sysfs /host/sys &&
mount -t devtmpfs devtmpfs /host/dev &&
mkdir -p /host/dev/pts /host/dev/shm &&
mount -t devpts devpts /host/dev/pts &&
mount -t tmpfs -o mode=1777 tmpfs /host/dev/shm &&
mount -t tmpfs -o mode=1777 tmpfs /host/tmp &&
mount -t tmpfs -o mode=755 tmpfs /host/run || fail "cannot mount proc/sys/dev/tmp/run in /host"

# The scratch share: at /tmp/rig-scratch and at its host path.
mkdir -p /host/tmp/rig-scratch
mount -t 9p -o "$p9" rigscratch /host/tmp/rig-scratch || fail "cannot mount the scratch share"
scratch=$(cat /ctl/scratch-path)
case "$scratch" in
    /tmp/rig-scratch|'') ;;
    /*) mkdir -p "/host$scratch" 2>/dev/null
        mount --bind /host/tmp/rig-scratch "/host$scratch" ||
            say "scratch not visible at $scratch (only at /tmp/rig-scratch)" ;;
esac

# The command's channel: raw, so that "\n" stays "\n". The command writes
# into a pipe, not the tty, as it would under run.sh on the host.
stty -F /dev/ttyS1 raw -echo
: > /ctl/started
mkdir -p /host/run/rig
cp /ctl/cmd.sh /host/run/rig/cmd.sh || fail "cannot copy cmd.sh"
(
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/tmp TERM=dumb USER=root LOGNAME=root SHELL=/bin/sh \
        chroot /host /bin/sh /run/rig/cmd.sh < /dev/null 2>&1
    echo $? > /ctl/status
) | cat > /dev/ttyS1
sync
poweroff -f
