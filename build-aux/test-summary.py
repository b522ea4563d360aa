#!/usr/bin/python3
"""Count test cases in a meson testlog.json and print the summary line.

TAP tests count each "ok"/"not ok" line (SKIP directives as skipped);
a test that produced no TAP result, or whose process failed beyond its
TAP lines (crash, timeout), counts as one failure more, and the last
lines of its output are shown. Further arguments name plain TAP files
counted the same way (the fuzz harnesses, upstream's suites), each as
one failure if it holds no result.
"""
import json
import re
import sys

# Lines of a failed test's output shown under its "failed:" line.
TAIL = 12

TAP = re.compile(r'^(ok|not ok)\b[^#]*(#\s*(SKIP|TODO)\b(.*))?', re.I)


def main(path, *tap_paths):
    passed = failed = skipped = 0
    try:
        f = open(path)
    except FileNotFoundError:
        print('no test log: the test runner did not run')
        print('0 passed, 1 failed')
        return 1
    with f:
        for line in f:
            test = json.loads(line)
            counted = failed_here = 0
            for out in (test.get('stdout') or '').splitlines():
                m = TAP.match(out)
                if not m:
                    continue
                counted += 1
                if m.group(3) and m.group(3).upper() == 'SKIP':
                    skipped += 1
                    print('skipped: %s: %s' % (test['name'],
                                               out.split('#', 1)[1].strip()))
                elif m.group(1) == 'ok':
                    passed += 1
                else:
                    failed += 1
                    failed_here += 1
            result = test.get('result')
            if result == 'SKIP' and not counted:
                skipped += 1
                print('skipped: %s' % test['name'])
            elif result not in ('OK', 'SKIP', 'EXPECTEDFAIL') and not failed_here:
                failed += 1
                print('failed: %s (%s)' % (test['name'], result))
                # Why, where a log's tail is all one gets to see (CI).
                for out in (test.get('stdout') or '').splitlines()[-TAIL:]:
                    print('  | ' + out[:200])
            elif result == 'OK' and not counted:
                passed += 1
    for tap_path in tap_paths:
        p, f, s = count_tap(tap_path)
        passed += p
        failed += f
        skipped += s
    print('%d passed, %d failed, %d skipped' % (passed, failed, skipped))
    return 1 if failed else 0


def count_tap(path):
    """(passed, failed, skipped) of a plain TAP file; none is a failure."""
    passed = failed = skipped = 0
    try:
        with open(path) as f:
            for line in f:
                m = TAP.match(line)
                if not m:
                    continue
                if m.group(3) and m.group(3).upper() == 'SKIP':
                    skipped += 1
                elif m.group(1) == 'ok':
                    passed += 1
                else:
                    failed += 1
                    print('failed: %s' % line.strip())
    except FileNotFoundError:
        pass
    if not passed + failed + skipped:
        print('failed: %s has no results' % path)
        failed = 1
    return passed, failed, skipped


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]))
