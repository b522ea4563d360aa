#!/bin/sh
# make tsan: build the conversion manager's concurrency harness
# (tests/tsan/tsan-gmem-manager.c) with Debian's clang 14 under
# ThreadSanitizer and run it for TSAN_TIME seconds (default 120; make
# check runs it for 15). Prints its summary, then TAP (1..N) with --tap.
# Fails on a harness that does not build, a hang (its watchdog, TSAN_HANG
# seconds without progress, default 10), any ThreadSanitizer report, or
# a failed end-of-run check.
#
# TSAN_MUTATE=defect1|lease-lock|defect3|defect10 builds the harness on a copy of
# the sources with a known bug put back, to show that the run catches it
# (the run must then fail): defect1 issues the attribute ioctl through
# kvm_vm_ioctl() (waits out an ioctl inhibit under gmem.lock: the
# watchdog), lease-lock takes leases without gmem.lease_lock, defect3
# adds and removes RamDiscardListeners without gmem.lock (TSan),
# defect10 makes QEMU's own copy of guest RAM after dropping its lease
# (the copy races a discard: TSan).
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${QEMU_GMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qemu-gmem}
src=$cache/src
bld=$cache/build
out=$cache/tsan
time=${TSAN_TIME:-120}
mutate=${TSAN_MUTATE:-}
tap=${1:-}
name=tsan-gmem-manager
ntests=5

rt=/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux
if [ ! -e "$rt/libclang_rt.tsan-x86_64.a" ]; then
    "$repo/build-aux/apt-setup.sh"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends clang-14 libclang-rt-14-dev >/dev/null
fi
work=$out/work${mutate:+-$mutate}
rm -rf "$work"
mkdir -p "$work/gmem" "$work/system" "$work/obj"

# The sources, copied so that a mutation never touches the tree.
cp "$src"/accel/kvm/gmem/*.c "$src"/accel/kvm/gmem/*.h "$work/gmem/"
cp "$src/system/ram-block-attributes.c" "$src/system/trace.h" "$work/system/"
mutated() {
    python3 - "$@" <<'PY'
import re, sys
mode, path = sys.argv[1], sys.argv[2]
s = open(path).read()
if mode == 'defect1':
    new = re.sub(r'return ioctl\(kvm_state->vmfd, KVM_SET_MEMORY_ATTRIBUTES, '
                 r'&attrs\) \?\s*-errno : 0;',
                 'return kvm_vm_ioctl(kvm_state, KVM_SET_MEMORY_ATTRIBUTES, '
                 '&attrs);', s)
elif mode == 'lease-lock':
    new = re.sub(r'(uint64_t kvm_gmem_lease_take\(.*?)\n    QEMU_LOCK_GUARD'
                 r'\(&gmem\.lease_lock\);', r'\1', s, count=1, flags=re.S)
elif mode == 'defect10':
    new = re.sub(r'( +)memmove\(dst, src, n\);\n'
                 r'( +kvm_gmem_lease_drop\(rb, offset\);\n)',
                 r'\2\1memmove(dst, src, n);\n', s, count=1)
elif mode == 'defect3':
    new = re.sub(r'\n *kvm_gmem_listener_change_(begin|end)\(\);', '', s)
if new == s:
    sys.exit('%s: mutation %s found nothing to change' % (path, mode))
open(path, 'w').write(new)
PY
}
case $mutate in
'') ;;
defect1) mutated defect1 "$work/gmem/gmem-kernel.c" ;;
lease-lock) mutated lease-lock "$work/gmem/gmem-host-io.c" ;;
defect3) mutated defect3 "$work/system/ram-block-attributes.c" ;;
defect10) mutated defect10 "$work/gmem/gmem-host-io.c" ;;
*) echo "tsan: unknown TSAN_MUTATE=$mutate" >&2; exit 2 ;;
esac

# Each file is compiled with QEMU's own include paths and defines for
# it, read from the build's compile_commands.json.
flags_of() {
    "$repo/build-aux/compile-flags.py" "$bld/compile_commands.json" "$1"
}
cflags="-g -O1 -fsanitize=thread -fno-omit-frame-pointer -std=gnu11
 -D_GNU_SOURCE -Wno-unused-command-line-argument"

# file to compile : the file whose flags it takes
units="$work/gmem/kvm-gmem.c:accel/kvm/gmem/kvm-gmem.c
$work/gmem/gmem-blocks.c:accel/kvm/gmem/gmem-blocks.c
$work/gmem/gmem-slots.c:accel/kvm/gmem/gmem-slots.c
$work/gmem/gmem-convert.c:accel/kvm/gmem/gmem-convert.c
$work/gmem/gmem-host-io.c:accel/kvm/gmem/gmem-host-io.c
$work/gmem/gmem-reset.c:accel/kvm/gmem/gmem-reset.c
$work/gmem/gmem-launch.c:accel/kvm/gmem/gmem-launch.c
$work/gmem/gmem-discard.c:accel/kvm/gmem/gmem-discard.c
$work/gmem/gmem-discard-queue.c:accel/kvm/gmem/gmem-discard-queue.c
$work/gmem/gmem-kernel.c:accel/kvm/gmem/gmem-kernel.c
$work/gmem/gmem-lease.c:accel/kvm/gmem/gmem-lease.c
$work/gmem/gmem-lookup.c:accel/kvm/gmem/gmem-lookup.c
$work/gmem/gmem-request.c:accel/kvm/gmem/gmem-request.c
$work/gmem/gmem-runs.c:accel/kvm/gmem/gmem-runs.c
$bld/trace/trace-accel_kvm_gmem.c:accel/kvm/gmem/kvm-gmem.c
$work/system/ram-block-attributes.c:system/ram-block-attributes.c
$bld/trace/trace-system.c:system/ram-block-attributes.c
$src/accel/accel-blocker.c:accel/accel-blocker.c
$src/util/rcu.c:util/rcu.c
$src/util/event.c:util/event.c
$src/util/lockcnt.c:util/lockcnt.c
$src/tests/tsan/$name.c:accel/kvm/gmem/kvm-gmem.c"

log=$out/$name${mutate:+-$mutate}.build.log
bin=$work/$name
built=yes
: > "$log"
for u in $units; do
    file=${u%%:*}
    o=$work/obj/$(basename "$file" .c).o
    f=$(flags_of "${u#*:}") || { built=no; break; }
    # The gmem files and the harness, which includes gmem-state.h, find
    # the (maybe mutated) copies first.
    inc=
    case $file in "$work"/gmem/*|*/$name.c) inc=-I$work/gmem ;; esac
    # shellcheck disable=SC2086
    if ! (cd "$bld" && eval clang-14 $cflags $inc $f -c \
          -o "$o" "$file") >> "$log" 2>&1; then
        built=no
        break
    fi
done
if [ "$built" = yes ]; then
    # QOM (RamBlockAttributes is an object) and the rest of libqemuutil
    # as QEMU built them, uninstrumented; pthread calls are intercepted.
    # shellcheck disable=SC2046
    (cd "$bld" && clang-14 -fsanitize=thread -o "$bin" "$work"/obj/*.o \
        libqom.a.p/qom_object.c.o libqom.a.p/qom_container.c.o \
        libqom.a.p/qom_qom-qobject.c.o libqom.a.p/qom_object_interfaces.c.o \
        libqemuutil.a $(pkg-config --libs glib-2.0 gmodule-2.0) -lnuma -lm) >> "$log" 2>&1 ||
        built=no
fi

[ "$tap" != --tap ] || echo "1..$ntests"
if [ "$built" != yes ]; then
    echo "$name: does not build (log: $log)"
    grep -m 5 'error' "$log" || :
    if [ "$tap" = --tap ]; then
        echo "not ok 1 $name builds"
        for i in 2 3 4 5; do
            echo "not ok $i $name: not run, it does not build"
        done
    fi
    exit 1
fi

runlog=$out/$name${mutate:+-$mutate}.log
status=0
# The harness's own watchdog cannot see a hang after it (a mutation's
# corrupted heap once hung pthread_join() at exit): bound the whole run.
TSAN_OPTIONS="halt_on_error=0 exitcode=66 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
    timeout -k 10 $((time + 120)) "$bin" "$time" > "$runlog" 2>&1 ||
    status=$?
reports=$(grep -c '^WARNING: ThreadSanitizer' "$runlog" || :)
hang=no
grep -q 'HANG:' "$runlog" && hang=yes
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    echo "HANG: the harness did not end within $((time + 120)) s" >> "$runlog"
    hang=yes
fi
checks=no
grep -q '^checks: ok' "$runlog" && checks=yes
defect4=$(sed -n 's/^defect4: \([0-9]*\) .*/\1/p' "$runlog")

grep '^tsan-gmem-manager: [0-9]' "$runlog" || :
if [ "$hang" = yes ]; then
    sed -n '/HANG:/,$p' "$runlog" | grep -v '^WARNING\|^====' | head -n 60
fi
if [ "$reports" != 0 ]; then
    echo "$name: $reports ThreadSanitizer reports; the first:"
    sed -n '/^WARNING: ThreadSanitizer/,/^SUMMARY/p' "$runlog" | head -n 40
fi
grep '^FAIL' "$runlog" || :
if [ "$hang" = no ] && [ "$checks" = no ] && [ "$status" != 0 ] &&
   [ "$status" != 66 ]; then
    echo "$name: exited with $status before its checks:"
    grep -v '^ *#\|^====\|^WARNING' "$runlog" | tail -n 15
fi
echo "$name: log $runlog"

fail=0
ok() {
    if [ "$2" = yes ]; then
        [ "$tap" != --tap ] || echo "ok $1 $name: $3"
    else
        [ "$tap" != --tap ] || echo "not ok $1 $name: $3"
        fail=1
    fi
}
no_report=no
[ "$reports" = 0 ] && no_report=yes
no_hang=no
[ "$hang" = no ] && [ -n "$defect4" ] && no_hang=yes
ok 1 yes "builds with clang 14 -fsanitize=thread${mutate:+ (mutation $mutate)}"
ok 2 "$no_hang" "no hang in $time s (watchdog ${TSAN_HANG:-10} s)"
ok 3 "$no_report" "no ThreadSanitizer report"
ok 4 "$checks" "record = KVM, no lease left, the VFIO listener maps only shared memory"
# Issue 24, defect 4: no region's last reference is dropped under
# gmem.lock (finalisation would take it again on the same thread).
[ "${defect4:-1}" = 0 ] && ok5=yes || ok5=no
ok 5 "$ok5" "no region finalised under gmem.lock (defect 4: ${defect4:-?} times)"
[ "$fail" = 0 ]
