#!/bin/sh
# Run the fork's tests (every meson test whose name contains "gmem", or
# those that match $1: unit tests, functional tests, the nested rig tier;
# the whole suite adds the house limits, fuzz, TSan, upstream and libvirt)
# and end with "N passed, N failed, N skipped", counted per TAP test case,
# after a line per tier. A skip that tests/allowed-skips does not list, a
# tier that did not run and a short TAP plan are failures
# (build-aux/test-summary.py). Exits non-zero when anything failed.
set -u
filter=${1:-gmem}
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${QEMU_GMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qemu-gmem}
bld=$cache/build
export QEMU_GMEM_TEST_GUEST="$cache/guest/gmem-guest.elf"
# Debian's SEV-SNP and TDX firmware for the launch measurement tests.
if fw=$("$repo/build-aux/fetch-firmware.sh"); then
    export QEMU_GMEM_FIRMWARE_DIR="$fw"
else
    export QEMU_GMEM_FIRMWARE_ERROR="build-aux/fetch-firmware.sh failed"
fi

# "--list" prints "project:suites / name".
tests=$(meson test -C "$bld" --list 2>/dev/null | sed -n 's|^.* / \(.*gmem.*\)$|\1|p' |
        grep -e "$filter")
if [ -z "$tests" ]; then
    echo "check: no gmem tests registered in $bld" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
# The rig tier needs a kernel built from Debian's packages; set it up
# before the clock of its meson test starts. If that fails, the tier fails
# with the reason (tests/allowed-skips has no skip for it).
rig=$cache/rig
rig_needed=
echo "$tests" | grep -q gmem_rig && rig_needed=1
[ "$filter" = gmem ] && rig_needed=1     # the libvirt tier's rig part
if [ -n "$rig_needed" ]; then
    case "$cache/" in
    /tmp/*)
        # L1 mounts its own tmpfs on /tmp: it could not see the build.
        QEMU_GMEM_RIG_UNAVAILABLE="the cache $cache is under /tmp, which the rig's L1 replaces with its own tmpfs; set QEMU_GMEM_CACHE elsewhere"
        export QEMU_GMEM_RIG_UNAVAILABLE
        echo "check: $QEMU_GMEM_RIG_UNAVAILABLE" >&2
        ;;
    esac
fi
if [ -n "$rig_needed" ] && [ -z "${QEMU_GMEM_RIG_UNAVAILABLE:-}" ]; then
    [ -s "$rig/stamp" ] ||
        echo "check: setting up the nested rig (first time: 1-2 min, log: $cache/rig-setup.log)"
    # Its step lines, with their times, on the terminal; the rest in the log.
    { "$repo/tests/rig/setup.sh"; echo $? > "$cache/rig-setup.status"; } 2>&1 |
        tee "$cache/rig-setup.log" | grep --line-buffered '^rig: ' | grep -v 'up to date' || :
    if [ "$(cat "$cache/rig-setup.status")" != 0 ]; then
        tail -n 5 "$cache/rig-setup.log" >&2
        QEMU_GMEM_RIG_UNAVAILABLE="tests/rig/setup.sh failed ($(tail -n 1 "$cache/rig-setup.log")), see $cache/rig-setup.log"
        export QEMU_GMEM_RIG_UNAVAILABLE
        echo "check: $QEMU_GMEM_RIG_UNAVAILABLE" >&2
    fi
fi

# What this machine's KVM offers, and L1's: it decides where tests run.
facts=$repo/tests/functional/qemu_test/kvm_caps.py
echo "check: the host's /dev/kvm (it varies between machines of this kind):"
python3 "$facts" | sed 's/^kvm-facts: /check:   host: /'
host_in_place=no
PYTHONPATH=$(dirname "$facts") python3 -c 'import sys, kvm_caps
sys.exit(not kvm_caps.kvm_in_place_guest_memfd())' && host_in_place=yes
if [ -n "$rig_needed" ] && [ -z "${QEMU_GMEM_RIG_UNAVAILABLE:-}" ]; then
    echo "check: the rig's L1 ($(cut -d' ' -f1 "$rig/version"), KVM rebuilt with KVM_SW_PROTECTED_VM):"
    RIG_TIMEOUT=300 "$repo/tests/rig/run.sh" /usr/bin/python3 "$facts" 2>&1 |
        sed -n 's/^kvm-facts: /check:   L1: /p'
fi
where=" (the host's KVM lacks it: in the rig only)"
[ "$host_in_place" = yes ] && where=" (and in the rig)"
echo "check: where each tier runs:"
echo "check:   house (the source tree's sizes), unit, fuzz, tsan, upstream: on the host"
echo "check:   host: the test guest on the host's KVM and TCG; in-place guest_memfd: $host_in_place$where"
echo "check:   rig: sw-protected-vm, in-place guest_memfd, device assignment, in L1"
echo "check:   libvirt-host: the plain domain; the in-place one: $host_in_place"
echo "check:   libvirt-rig: the in-place and sw-protected-vm domains under L1's libvirtd"

# tap_tier NAME WHAT CMD...: in the whole suite, run CMD (a TAP producer)
# into $cache/NAME-check.tap, showing what is not a result line.
tap_tier() {
    tap=$cache/$1-check.tap
    rm -f "$tap"
    [ "$filter" = gmem ] || return 0
    echo "check: $2"
    shift 2
    "$@" | tee "$tap" | grep -v '^ok\|^not ok\|^1\.\.'
}
# The house limits first: they need nothing built and take milliseconds.
tap_tier house "house limits (build-aux/house.py)" \
    "$repo/build-aux/house.py" --tap

rm -f "$bld/meson-logs/testlog.json"
# shellcheck disable=SC2086
meson test -C "$bld" --print-errorlogs --num-processes 1 $tests
status=$?
# The fuzz harnesses and the TSan harness, briefly (make fuzz, make tsan:
# long).
tap_tier fuzz "fuzz harnesses, ${FUZZ_CHECK_TIME:-5} s each" \
    env FUZZ_TIME="${FUZZ_CHECK_TIME:-5}" "$repo/build-aux/fuzz.sh" --tap
tap_tier tsan "TSan harness, ${TSAN_CHECK_TIME:-15} s" \
    env TSAN_TIME="${TSAN_CHECK_TIME:-15}" "$repo/build-aux/tsan.sh" --tap
# And upstream's own suites, a bounded part (make check-upstream: all).
upstream_tap=$cache/upstream-check.tap
rm -f "$upstream_tap"
if [ "$filter" = gmem ]; then
    "$repo/build-aux/check-upstream.sh" --bounded "$upstream_tap" || true
fi
# And the libvirt tier (make check-libvirt).
libvirt_tap=$cache/libvirt-check.tap
rm -f "$libvirt_tap"
if [ "$filter" = gmem ]; then
    echo "check: libvirt tier"
    "$repo/tests/libvirt/check_libvirt.py" > "$libvirt_tap" 2>&1 || true
    grep -v '^ok\|^1\.\.' "$libvirt_tap" || :
fi
if [ "$filter" = gmem ]; then
    "$repo/build-aux/test-summary.py" "$bld/meson-logs/testlog.json" \
        house="$cache/house-check.tap" \
        fuzz="$cache/fuzz-check.tap" tsan="$cache/tsan-check.tap" \
        upstream="$upstream_tap" \
        libvirt="$libvirt_tap" ||
        status=1
else
    "$repo/build-aux/test-summary.py" "$bld/meson-logs/testlog.json" ||
        status=1
fi
exit $status
