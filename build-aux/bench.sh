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
# The bare-ioctl harness, static for L1, against sid's UAPI headers.
bare=$cache/rig/gmem-convert-bare bare_src=$repo/tests/bench/gmem-convert-bare.c
if [ ! "$bare" -nt "$bare_src" ]; then
    inc=$cache/rig/include
    gcc -static -O2 -Wall -Wextra -I "$inc/x86_64-linux-gnu" -I "$inc" \
        -o "$bare.tmp" "$bare_src"
    mv "$bare.tmp" "$bare"
fi
# Row 9: the kernel's own conversion test, from the rig's linux-source
# (tools/testing/selftests/kvm), against the same headers.
kst=$cache/rig/selftests/private_mem_conversions_test
if [ ! -x "$kst" ]; then
    echo "bench: building the kernel's private_mem_conversions_test (1-2 min)"
    ksrc=$cache/rig/ksrc
    rm -rf "$ksrc"
    mkdir -p "$ksrc/usr" "$(dirname "$kst")"
    dpkg-deb --fsys-tarfile "$(ls "$cache"/rig/debs/linux-source-*.deb | head -n 1)" |
        tar -xO --wildcards './usr/src/linux-source-*.tar.xz' | xz -dc |
        tar -x -C "$ksrc" --strip-components=1 --wildcards \
            --no-wildcards-match-slash 'linux-source-*/tools' \
            'linux-source-*/include' 'linux-source-*/arch/x86/include' \
            'linux-source-*/scripts' 'linux-source-*/Makefile'
    # The selftests take UAPI headers from usr/include, asm/ included.
    cp -RL "$cache/rig/include" "$ksrc/usr/include"
    cp -R "$ksrc/usr/include/x86_64-linux-gnu/asm" "$ksrc/usr/include/asm"
    d=$ksrc/tools/testing/selftests/kvm
    # OUTPUT: kselftest's lib.mk sets it only at MAKELEVEL 0 (not under
    # make bench); -r: a built-in %: %.c would link the test without its
    # library.
    make -r -C "$d" -j"$(nproc)" OUTPUT="$d" \
        "$d/x86/private_mem_conversions_test" \
        > "$cache/rig/selftests.log" 2>&1 &&
        cp "$d/x86/private_mem_conversions_test" "$kst" ||
        echo "bench: building it failed, see $cache/rig/selftests.log"
    rm -rf "$ksrc"
fi
# The chart's plotter.
command -v gnuplot > /dev/null || {
    "$repo/build-aux/apt-setup.sh"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends gnuplot-nox > /dev/null
}
# RIG_VFIO: an assigned device for row 6; RIG_SMP: 4 vCPUs for row 8;
# RIG_MEM: rows 11-13 boot guests of up to 64 GiB, mostly untouched, but
# QEMU 10.2.2's path allocates all it accepts (row 12 caps it at 2 GiB).
# The results for the chart land in the scratch dir, which L1 can write.
out=$cache/bench
mkdir -p "$out"
rm -f "$out/gmem-bench.json"
# The BENCH_* knobs (tests/bench/gmem_bench.py) go in by name: run.sh
# passes only QEMU_*, RIG_* and GMEM_* into L1.
# shellcheck disable=SC2046
RIG_VFIO=1 RIG_SMP=4 RIG_MEM=${RIG_MEM:-6G} RIG_HOST_CORES=$(nproc) \
    RIG_SCRATCH=$out "$repo/tests/rig/run.sh" /usr/bin/env \
    PYTHONPATH="$cache/src/python:$cache/src/tests/functional" \
    $(env | grep '^BENCH_[A-Z0-9_]*=[0-9A-Za-z,._/-]*$') \
    BENCH_RESULTS="$out/gmem-bench.json" \
    /usr/bin/python3 "$cache/src/tests/bench/gmem_bench.py"
[ ! -s "$out/gmem-bench.json" ] ||
    "$repo/tests/bench/gmem_chart.py" "$out/gmem-bench.json" "$out/gmem-bench.png"
# Row 8 again with L0 on single-threaded TCG, the setting under which the
# rig's nested SVM holds under 4 busy vCPUs (tests/rig/README.md): so that
# its scaling is not read off a rig that can lose state.
case ",${BENCH_ROWS:-8}," in
*,8,*)
    # shellcheck disable=SC2046
    RIG_TCG_THREAD=single RIG_SMP=4 RIG_HOST_CORES=$(nproc) RIG_SCRATCH=$out \
        "$repo/tests/rig/run.sh" /usr/bin/env \
        PYTHONPATH="$cache/src/python:$cache/src/tests/functional" \
        $(env | grep '^BENCH_[A-Z0-9_]*=[0-9A-Za-z,._/-]*$' | grep -v '^BENCH_ROWS=') \
        BENCH_ROWS=8 BENCH_RESULTS="$out/gmem-bench-single.json" \
        /usr/bin/python3 "$cache/src/tests/bench/gmem_bench.py" ;;
esac
echo
exec "$repo/tests/bench/launch_bench.py" "$cache/build/qemu-system-x86_64" \
    "$("$repo/build-aux/fetch-firmware.sh")"
