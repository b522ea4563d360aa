#!/bin/sh
# make check-storm: the random-request storm (test_random_requests_storm,
# 4 vCPUs, 100,000 guest requests beside the host's QMP requests, then the
# record-versus-KVM sweep) in the nested rig, with L0 on single-threaded
# TCG: under multi-threaded TCG the nested SVM loses state under 4 busy
# vCPUs (tests/rig/README.md). make check runs the same storm with 10,000
# requests. Long: 1.5 to 3 hours on 2 cores. RIG_KERNEL=full runs it on the rig's
# complete kernel (built first, about 25 min); RIG_TCG_THREAD=multi on
# multi-threaded TCG, to compare.
# Its logs stay in $CACHE/storm/logs, also when the time runs out.
# Ends with "N passed, N failed"; exits non-zero when the storm failed.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${QEMU_GMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qemu-gmem}
src=$cache/src
out=$cache/storm

case "$cache/" in
/tmp/*)
    echo "check-storm: the cache $cache is under /tmp, which the rig's L1" \
         "replaces with its own tmpfs; set QEMU_GMEM_CACHE elsewhere" >&2
    echo "0 passed, 1 failed"
    exit 1 ;;
esac
if [ "${RIG_KERNEL:-debian}" = full ]; then
    "$repo/tests/rig/build-kernel.sh" || { echo "0 passed, 1 failed"; exit 1; }
fi

rm -rf "$out"
mkdir -p "$out"
limit=${RIG_TIMEOUT:-10800}
echo "check-storm: the storm in the rig (over an hour, at most $limit s;" \
     "L1 kernel ${RIG_KERNEL:-debian}, TCG ${RIG_TCG_THREAD:-single}-threaded; log: $out/tap.log)"
# The test's files live in L1's /tmp (reading a log that L2's QEMU is
# writing through the 9p share fails), copied to $out at the end.
RIG_KERNEL=${RIG_KERNEL:-debian} RIG_TCG_THREAD=${RIG_TCG_THREAD:-single} \
RIG_SMP=${RIG_SMP:-4} RIG_SCRATCH=$out RIG_TIMEOUT=$limit \
QEMU_GMEM_RIG_STORM=1 QEMU_GMEM_STORM_REQUESTS=${QEMU_GMEM_STORM_REQUESTS:-100000} \
    "$repo/tests/rig/run.sh" /usr/bin/env \
    PYTHONPATH="$src/python:$src/tests/functional" \
    QEMU_TEST_QEMU_BINARY="$cache/build/qemu-system-x86_64" \
    QEMU_BUILD_ROOT=/tmp/gmem-storm \
    QEMU_GMEM_TEST_GUEST="$cache/guest/gmem-guest.elf" \
    /bin/sh -c 'timeout -k 10 "$3" /usr/bin/python3 -u "$1" \
                    -k test_random_requests_storm
                status=$?
                cp -r /tmp/gmem-storm/tests/functional "$2/logs"
                exit $status' storm \
    "$src/tests/functional/x86_64/test_gmem_sw_storms.py" "$out" \
    $((limit - 180)) \
    > "$out/tap.log" 2>&1
status=$?
cat "$out/tap.log"
passed=$(grep -c '^ok ' "$out/tap.log")
failed=$(grep -c '^not ok ' "$out/tap.log")
if [ "$status" != 0 ] && [ "$failed" = 0 ]; then
    failed=1        # the rig or the test died before its result
fi
# The test's own log (QEMU's, the storm's report on a reset) is kept.
echo "check-storm: logs in $out/logs"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
