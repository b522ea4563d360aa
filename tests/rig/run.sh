#!/bin/sh
# Run a host command inside the rig's L1 (see README.md): a Debian kernel
# under QEMU TCG whose KVM offers KVM_X86_SW_PROTECTED_VM. The host's root is
# L1's root, read-only; /tmp and /run are L1-local tmpfs; the scratch dir
# ($RIG_SCRATCH, default a fresh temporary dir removed afterwards) is
# writable and mounted at its own path and at /tmp/rig-scratch.
#
#   run.sh CMD [ARGS...]   CMD's stdout+stderr on stdout, CMD's exit status
#   run.sh --probe         run kvm-probe (exit 0: type-1 VMs work in L1)
#
# Exit 125: the rig itself failed (set-up, boot, module load), with the
# reason on stderr; 124: RIG_TIMEOUT (seconds) ran out. Passed into L1: the
# cwd (else /), and every variable named QEMU_*, RIG_* or GMEM_*.
# RIG_QEMU picks the L0 emulator (default: Debian's qemu-system-x86_64),
# RIG_QEMU_ARGS adds to its command line (e.g. -d cpu_reset -D FILE);
# RIG_APPEND adds to L1's kernel command line (e.g. loglevel=7); RIG_MEM
# and RIG_SMP size L1 (default 4G, 2). RIG_KERNEL=full boots the small
# complete kernel of build-kernel.sh instead of Debian's (built first if
# needed, about 20 min). RIG_VFIO=1 gives L1 an emulated Intel IOMMU and
# QEMU's edu device (a DMA engine), bound to vfio-pci for assignment.
# RIG_BOOT_TIMEOUT (default 120) bounds L1's boot: one that has not
# started the command by then is tried again, up to three boots in all.
# RIG_TCG_THREAD=single|multi picks L0's TCG threading (-accel
# tcg,thread=...); unset, QEMU's default (multi).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${QEMU_GMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qemu-gmem}
rig=$cache/rig

if [ $# -eq 0 ]; then
    sed -n '2,/^set -eu/{/^set/d;s/^# \{0,1\}//;p}' "$0" >&2
    exit 125
fi
"$here/setup.sh" -q >&2 || { echo "run.sh: rig set-up failed" >&2; exit 125; }
[ "$1" = --probe ] && set -- "$rig/kvm-probe"
kernel=$rig/vmlinuz initrd=$rig/initrd.cpio.gz
case "${RIG_KERNEL:-debian}" in
    debian) ;;
    full) "$here/build-kernel.sh" -q >&2 ||
              { echo "run.sh: building the full kernel failed" >&2; exit 125; }
          kernel=$rig/full/vmlinuz initrd=$rig/full/initrd.cpio.gz ;;
    *) echo "run.sh: RIG_KERNEL is debian or full, not $RIG_KERNEL" >&2; exit 125 ;;
esac
machine=pc vfio_args= vfio_append=
if [ -n "${RIG_VFIO:-}" ]; then
    # The IOMMU first: it must exist before the devices behind it.
    machine=q35
    vfio_args="-device intel-iommu,intremap=on -device edu"
    vfio_append="intel_iommu=on iommu=pt"
fi

ctl=$(mktemp -d "${TMPDIR:-/tmp}/rig-ctl.XXXXXX")
made_scratch=
if [ -n "${RIG_SCRATCH:-}" ]; then
    mkdir -p "$RIG_SCRATCH"
    RIG_SCRATCH=$(cd "$RIG_SCRATCH" && pwd -P)
else
    RIG_SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/rig-scratch.XXXXXX")
    made_scratch=1
fi
export RIG_SCRATCH
cleanup() {
    rm -rf "$ctl"
    [ -z "$made_scratch" ] || rm -rf "$RIG_SCRATCH"
}
trap cleanup EXIT
# Stopped from outside (^C, the rig tier's watchdog): L0 goes too, and
# L1's console is kept.
qpid=
stop() {
    [ -z "$qpid" ] || kill "$qpid" 2> /dev/null || :
    cp "$ctl/console.log" "$rig/last-console.log" 2> /dev/null || :
    exit "$1"
}
trap 'stop 130' INT
trap 'stop 143' TERM

# The command as a sh script: environment, cwd, argv.
quote() { # one word, single-quoted for sh
    q=$(printf '%sx' "$1" | sed "s/'/'\\\\''/g")
    printf "'%s'" "${q%x}"
}
{
    for name in $(env | sed -n 's/^\(\(QEMU\|RIG\|GMEM\)_[A-Za-z0-9_]*\)=.*/\1/p' | sort -u); do
        eval "[ -n \"\${$name+set}\" ]" || continue
        value= && eval "value=\$$name"
        printf 'export %s=%s\n' "$name" "$(quote "$value")"
    done
    printf 'cd %s 2>/dev/null || cd /\n' "$(quote "$(pwd -P)")"
    printf 'exec'
    for a in "$@"; do
        printf ' %s' "$(quote "$a")"
    done
    printf '\n'
} > "$ctl/cmd.sh"
printf '%s\n' "$RIG_SCRATCH" > "$ctl/scratch-path"

opt_path() { printf '%s' "$1" | sed 's/,/,,/g'; } # QEMU option syntax
share="security_model=none,multidevs=remap"
timeout=
[ -z "${RIG_TIMEOUT:-}" ] || timeout="timeout -k 10 $RIG_TIMEOUT"
rm -f "$rig/last-console.log"
# L1 boots in 8-20 s; once in a while it hangs in early boot (at full CPU,
# nothing on the console). A boot that has not started the command in
# RIG_BOOT_TIMEOUT seconds is killed and tried again (its console is kept
# as hung-console.N.log).
boot_timeout=${RIG_BOOT_TIMEOUT:-120}
for attempt in 1 2 3; do
    set +e
    # L1's kernel console goes to a file; the command's output is ttyS1 =
    # stdout.
    # shellcheck disable=SC2086
    $timeout "${RIG_QEMU:-qemu-system-x86_64}" -machine $machine \
        -accel "tcg${RIG_TCG_THREAD:+,thread=$RIG_TCG_THREAD}" -cpu max \
        -m "${RIG_MEM:-4G}" -smp "${RIG_SMP:-2}" $vfio_args \
        -nodefaults -no-user-config -display none -no-reboot \
        -kernel "$kernel" -initrd "$initrd" \
        -append "console=ttyS0 panic=-1 quiet loglevel=4 $vfio_append ${RIG_APPEND:-}" \
        -chardev file,id=con,path="$(opt_path "$ctl/console.log")" -serial chardev:con \
        -chardev stdio,id=out,signal=off -serial chardev:out \
        -virtfs "local,path=/,mount_tag=hostroot,readonly=on,$share" \
        -virtfs "local,path=$(opt_path "$ctl"),mount_tag=rigctl,$share" \
        -virtfs "local,path=$(opt_path "$RIG_SCRATCH"),mount_tag=rigscratch,$share" \
        ${RIG_QEMU_ARGS:-} < /dev/null 2> "$ctl/qemu.log" &
    qpid=$!
    waited=0 hung=
    while kill -0 $qpid 2> /dev/null && [ ! -e "$ctl/started" ]; do
        if [ $waited -ge "$boot_timeout" ]; then
            hung=1
            kill $qpid
            break
        fi
        sleep 1
        waited=$((waited + 1))
    done
    wait $qpid
    qrc=$?
    set -e
    [ -n "$hung" ] && [ $attempt != 3 ] || break
    echo "run.sh: L1 did not start the command in $boot_timeout s; booting it again" >&2
    cp "$ctl/console.log" "$rig/hung-console.$attempt.log" 2> /dev/null || :
    rm -f "$ctl/console.log" "$ctl/failed"
done
cp "$ctl/console.log" "$rig/last-console.log" 2> /dev/null || :

if [ -s "$ctl/status" ]; then
    exit "$(cat "$ctl/status")"
fi
if [ -n "$timeout" ] && [ $qrc -eq 124 ]; then
    echo "run.sh: RIG_TIMEOUT ($RIG_TIMEOUT s) ran out" >&2
    exit 124
elif [ -n "$hung" ]; then
    echo "run.sh: L1 did not start the command in $boot_timeout s, three times" >&2
elif [ -s "$ctl/failed" ]; then
    echo "run.sh: L1 set-up failed: $(cat "$ctl/failed")" >&2
elif [ $qrc -ne 0 ]; then
    echo "run.sh: ${RIG_QEMU:-qemu-system-x86_64} exited with status $qrc:" >&2
    tail -n 5 "$ctl/qemu.log" >&2
elif [ -e "$ctl/started" ]; then
    echo "run.sh: L1 stopped before the command finished" >&2
else
    echo "run.sh: L1 did not get to run the command" >&2
fi
if [ -s "$ctl/console.log" ]; then
    echo "run.sh: last lines of L1's console ($rig/last-console.log):" >&2
    tail -n 10 "$ctl/console.log" >&2
fi
exit 125
