#!/bin/sh
# make fuzz: build the gmem layer's libFuzzer harnesses (tests/fuzz/) with
# Debian's clang 14 under ASan and UBSan, run each for FUZZ_TIME seconds
# (default 60) on its corpus in the cache, and print per harness its
# executions, executions per second and findings, then
# "fuzz: N execs, N findings". With --tap, also TAP lines for make check.
# Exits non-zero on any finding or a harness that does not build.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${QEMU_GMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qemu-gmem}
src=$cache/src
bld=$cache/build
out=$cache/fuzz
time=${FUZZ_TIME:-60}
tap=${1:-}

rt=/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux
if [ ! -e "$rt/libclang_rt.fuzzer-x86_64.a" ] ||
   [ ! -e "$rt/libclang_rt.asan-x86_64.a" ]; then
    "$repo/build-aux/apt-setup.sh"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends clang-14 libfuzzer-14-dev \
        libclang-rt-14-dev >/dev/null
fi
mkdir -p "$out"
cflags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
 -std=gnu11 -D_GNU_SOURCE -I$bld -I$src/include -I$src/accel/kvm/gmem
 -iquote $bld -iquote $src/include $(pkg-config --cflags glib-2.0)"
libs="$(pkg-config --libs glib-2.0)"

# The conversion manager (kvm-gmem.c and the files of gmem-state.h) is
# compiled as QEMU compiles it: its include paths and defines, read from
# the build's compile_commands.json.
manager_flags=$("$repo/build-aux/compile-flags.py" "$bld/compile_commands.json" \
                accel/kvm/gmem/kvm-gmem.c)

# harness: the gmem files it tests (+ libqemuutil for error and memalign;
# +target: compiled with the manager's flags, in the build directory)
harnesses="request:gmem-request.c
discard-queue:gmem-discard-queue.c
launch-plan:launch-plan.c,launch-digest.c,util
manager:kvm-gmem.c,gmem-blocks.c,gmem-slots.c,gmem-convert.c,gmem-host-io.c,gmem-reset.c,gmem-launch.c,gmem-discard.c,gmem-discard-queue.c,gmem-lease.c,gmem-lookup.c,gmem-request.c,gmem-runs.c,trace,util,target"

execs_total=0 findings_total=0 unbuilt=0 n=0
# The plan first: a harness that drops out leaves a short plan.
[ "$tap" != --tap ] || echo "1..$(echo "$harnesses" | wc -l)"
for h in $harnesses; do
    name=${h%%:*}
    files=$(echo "${h#*:}" | tr ',' ' ')
    objs="" util="" extra=""
    for f in $files; do
        case $f in
        util) util="$bld/libqemuutil.a" ;;
        trace) objs="$objs $bld/trace/trace-accel_kvm_gmem.c" ;;
        target) extra=$manager_flags ;;
        *) objs="$objs $src/accel/kvm/gmem/$f" ;;
        esac
    done
    bin=$out/fuzz-gmem-$name
    n=$((n + 1))
    rm -f "$bin"
    # A harness that does not build is a failure; the others still run.
    # shellcheck disable=SC2086
    if ! (cd "$bld" && eval clang-14 $cflags $extra -o "$bin" \
          "$src/tests/fuzz/fuzz-gmem-$name.c" $objs $util $libs -lm) \
          > "$out/fuzz-gmem-$name.build.log" 2>&1; then
        echo "fuzz-gmem-$name: does not build (log: $out/fuzz-gmem-$name.build.log)"
        grep -m 3 'error' "$out/fuzz-gmem-$name.build.log" || :
        [ "$tap" != --tap ] || echo "not ok $n fuzz-gmem-$name: does not build"
        unbuilt=$((unbuilt + 1))
        continue
    fi
    corpus=$out/corpus-$name
    mkdir -p "$corpus"
    log=$out/fuzz-gmem-$name.log
    status=0
    (cd "$out" && "$bin" -max_total_time="$time" -print_final_stats=1 \
        -timeout=10 "$corpus" > "$log" 2>&1) || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    findings=0
    [ "$status" = 0 ] || findings=1
    printf 'fuzz-gmem-%s: %s execs, %s execs/s, %s findings\n' "$name" \
        "${execs:-0}" "${rate:-0}" "$findings"
    if [ "$findings" != 0 ]; then
        grep -E 'ERROR|SUMMARY|assert|Assertion|runtime error' "$log" | head -n 5
        echo "  log: $log; reproducer: crash-* in $out"
    fi
    if [ "$tap" = --tap ]; then
        [ "$findings" = 0 ] && echo "ok $n fuzz-gmem-$name" ||
            echo "not ok $n fuzz-gmem-$name"
    fi
    execs_total=$((execs_total + ${execs:-0}))
    findings_total=$((findings_total + findings))
done
unbuilt_note=
[ "$unbuilt" = 0 ] || unbuilt_note=", $unbuilt that did not build"
echo "fuzz: $execs_total execs, $findings_total findings$unbuilt_note"
[ "$findings_total" = 0 ] && [ "$unbuilt" = 0 ]
