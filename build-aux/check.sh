#!/bin/sh
# Run the fork's tests (every meson test whose name contains "gmem": unit
# tests and functional tests) and end with "N passed, N failed, N skipped",
# counted per TAP test case. Exits non-zero when anything failed.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${QEMU_GMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qemu-gmem}
bld=$cache/build
export QEMU_GMEM_TEST_GUEST="$cache/guest/gmem-guest.elf"

# "--list" prints "project:suites / name".
tests=$(meson test -C "$bld" --list 2>/dev/null | sed -n 's|^.* / \(.*gmem.*\)$|\1|p')
if [ -z "$tests" ]; then
    echo "check: no gmem tests registered in $bld" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
rm -f "$bld/meson-logs/testlog.json"
# shellcheck disable=SC2086
meson test -C "$bld" --print-errorlogs --num-processes 1 $tests
status=$?
"$repo/build-aux/test-summary.py" "$bld/meson-logs/testlog.json" || status=1
exit $status
