#!/bin/sh
# make bench: run tests/bench/gmem_bench.py inside the nested rig, then
# tests/bench/launch_bench.py (the launch measurement dry run) on the host.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${QEMU_GMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qemu-gmem}
export QEMU_GMEM_CACHE="$cache"
# qemu_test needs a build root to import; L1's /tmp is writable.
export QEMU_BUILD_ROOT=/tmp/gmem-bench-build
"$repo/tests/rig/setup.sh" -q
# RIG_VFIO: an assigned device for row 6.
RIG_VFIO=1 "$repo/tests/rig/run.sh" /usr/bin/env \
    PYTHONPATH="$cache/src/python:$cache/src/tests/functional" \
    /usr/bin/python3 "$cache/src/tests/bench/gmem_bench.py"
echo
exec "$repo/tests/bench/launch_bench.py" "$cache/build/qemu-system-x86_64" \
    "$("$repo/build-aux/fetch-firmware.sh")"
