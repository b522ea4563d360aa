#!/bin/sh
# QEMU's own meson suites on our build, beside a pristine 10.2.2 built with
# the same configuration: make check-upstream.
#
#   check-upstream.sh            SUITES (default "unit qtest-x86_64") on
#                                both builds, side by side; fails on a
#                                regression (fails on ours, passes on
#                                pristine)
#   check-upstream.sh --bounded TAP
#                                make check's part: the unit suite and the
#                                qtests that exercise what our patches touch
#                                (QMP schema, HMP, QOM, device models), on
#                                our build only; one TAP line per test to
#                                TAP. Fails if any fails.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/build-aux/upstream.pin"
cache=${QEMU_GMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qemu-gmem}
bld=$cache/build
pristine=$cache/pristine
export CCACHE_DIR=${CCACHE_DIR:-$cache/ccache}
meson=$bld/pyvenv/bin/meson

# Run @suites (and, if given, only the tests named in @only) in @build;
# the results land in meson-logs/upstream.json there.
run_suites() {
    build=$1 suites=$2 only=${3:-}
    set --
    for s in $suites; do
        set -- "$@" --suite "$s"
    done
    if [ -n "$only" ]; then
        # shellcheck disable=SC2046
        set -- $(for t in $only; do echo "$t"; done)
    fi
    rm -f "$build/meson-logs/upstream.json"
    # meson builds what the tests need first; that is the long part.
    "$meson" test -C "$build" --logbase upstream --num-processes 2 \
        --print-errorlogs "$@" > "$build/meson-logs/upstream.out" 2>&1 || true
}

# "name result" per test of a run.
results() {
    python3 -c '
import json, sys
for line in open(sys.argv[1]):
    t = json.loads(line)
    print(t["name"].replace(" ", ""), t["result"])
' "$1/meson-logs/upstream.json" 2>/dev/null | LC_ALL=C sort
}

if [ "${1:-}" = --bounded ]; then
    tap=$2
    # Upstream's tests that see our delta: the QMP schema and monitor
    # (qmp-cmd-test, qmp-test, test-hmp), QOM and the machine's devices
    # (qom-test, device-introspect-test), RAM (numa-test, ivshmem-test:
    # DMA through address_space_map() and its lease), and the unit
    # suite, which includes the QAPI and util code we link against.
    qtests="qmp-cmd-test qmp-test test-hmp qom-test device-introspect-test
            numa-test ivshmem-test"
    echo "check-upstream: building and running the unit suite and" \
         $qtests "(log: $bld/meson-logs/upstream.out)"
    only=$("$meson" test -C "$bld" --list --suite unit 2>/dev/null |
           sed 's|^.* / ||')
    for q in $qtests; do
        only="$only qtest-x86_64/$q"
    done
    run_suites "$bld" "unit qtest-x86_64" "$only"
    # The plan is what was asked for: a test that gave no result shows.
    echo "1..$(echo $only | wc -w)" > "$tap"
    results "$bld" | awk '{ if ($2 == "OK" || $2 == "SKIP" ||
                              $2 == "EXPECTEDFAIL")
                               print "ok " NR " upstream " $1 ($2 == "SKIP" ? " # SKIP" : "");
                           else { print "not ok " NR " upstream " $1 " (" $2 ")"; bad = 1 } }
                         END { exit bad }' >> "$tap" || {
        grep '^not ok' "$tap"
        exit 1
    }
    grep -q '^ok' "$tap" || { echo "check-upstream: no results" >&2; exit 1; }
    echo "check-upstream: $(grep -c '^ok' "$tap") of $(grep -c '^ok\|^not ok' "$tap") passed"
    exit 0
fi

suites=${SUITES:-unit qtest-x86_64}

# The pristine tree: the same tarball and Debian patches, none of ours.
stamp=$(cat "$repo/build-aux/upstream.pin" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$pristine/src/.pristine-stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "check-upstream: unpacking pristine $version"
    "$repo/build-aux/unpack-upstream.sh" "$pristine/src"
    echo "$stamp" > "$pristine/src/.pristine-stamp"
fi
"$repo/build-aux/configure-qemu.sh" "$pristine/src" "$pristine/build"
echo "check-upstream: building pristine qemu-system-x86_64 (cold: ~10 min)"
ninja -C "$pristine/build" qemu-system-x86_64 > "$pristine/ninja.log" 2>&1 || {
    tail -n 20 "$pristine/ninja.log" >&2
    exit 1
}

for side in ours pristine; do
    case $side in
    ours) b=$bld ;;
    *) b=$pristine/build ;;
    esac
    echo "check-upstream: $side: building and running $suites" \
         "(log: $b/meson-logs/upstream.out)"
    run_suites "$b" "$suites"
    results "$b" > "$cache/upstream-$side.txt"
done

python3 - "$cache/upstream-ours.txt" "$cache/upstream-pristine.txt" <<'PY'
import sys

def load(path):
    return dict(line.split() for line in open(path) if line.strip())

ours, pristine = load(sys.argv[1]), load(sys.argv[2])
good = ('OK', 'SKIP', 'EXPECTEDFAIL')
names = sorted(set(ours) | set(pristine))
regressions = [n for n in names
               if ours.get(n, 'MISSING') not in good
               and pristine.get(n, 'MISSING') in good]
print('%-44s %-10s %s' % ('test', 'ours', 'pristine'))
for n in names:
    o, p = ours.get(n, 'MISSING'), pristine.get(n, 'MISSING')
    if o != p or o not in good:
        note = ('regression' if n in regressions else
                'fails on both: environment' if o not in good else
                'ours only')
        print('%-44s %-10s %-10s %s' % (n, o, p, note))
for side, res in (('ours', ours), ('pristine', pristine)):
    print('check-upstream: %s: %d of %d passed, %d skipped' % (
        side, sum(r == 'OK' for r in res.values()), len(res),
        sum(r == 'SKIP' for r in res.values())))
print('check-upstream: %d regressions' % len(regressions))
sys.exit(1 if regressions else 0)
PY
