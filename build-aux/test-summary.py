#!/usr/bin/python3
"""
make check's verdict: count the test cases of every tier, per tier and in
all, and end with "N passed, N failed, N skipped".

  test-summary.py TESTLOG.json [TIER=TAPFILE ...]

TESTLOG.json is meson's log of the gmem tests; each of its tests belongs to
the unit, host or rig tier by name. Each TIER=TAPFILE names a plain TAP
file (house=..., fuzz=..., tsan=..., upstream=..., libvirt=...; the
libvirt file holds the host and the rig tier, told apart by "in the rig"
in a test's name).

What counts as a failure, besides "not ok":
  - a skip that tests/allowed-skips does not allow for its tier;
  - a TAP producer without its plan ("1..N"), or with fewer or more
    results than its plan, or a "Bail out!";
  - a meson test that failed beyond its TAP lines (crash, timeout) or
    produced no result;
  - a tier with no results at all; when TAP files are given (the whole
    make check), a tier that did not run.
Exits 1 if anything failed.
"""
import json
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALLOWED = os.path.join(REPO, 'tests', 'allowed-skips')

# Lines of a failed test's output shown under its "failed:" line.
TAIL = 12

TIERS = ('house', 'unit', 'host', 'rig', 'fuzz', 'tsan', 'upstream',
         'libvirt-host', 'libvirt-rig')

RESULT = re.compile(r'^(ok|not ok)\b\s*(\d+)?\s*([^#]*)(#\s*(\w+)\b\s*(.*))?')
PLAN = re.compile(r'^1\.\.(\d+)\s*(#\s*SKIP\b\s*(.*))?', re.I)


def load_allowed(path=ALLOWED):
    """[(tier, test regex, reason regex)] of tests/allowed-skips."""
    allowed = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            tier, test, reason, _why = [p.strip() for p in
                                        line.split(' | ', 3)]
            allowed.append((tier, re.compile(test), re.compile(reason)))
    return allowed


class Tally:
    """Test cases of one tier."""

    def __init__(self):
        self.passed = self.failed = self.skipped = 0
        self.producers = 0


class Summary:

    def __init__(self, allowed):
        self.allowed = allowed
        self.tiers = {t: Tally() for t in TIERS}
        self.failures = []

    def fail(self, tier, what, tail=()):
        self.tiers[tier].failed += 1
        self.failures.append('[%s] %s' % (tier, what))
        print('failed: [%s] %s' % (tier, what))
        for out in list(tail)[-TAIL:]:
            print('  | ' + out[:200])

    def skip(self, tier, name, reason):
        for t, test, why in self.allowed:
            if t == tier and test.search(name) and why.search(reason):
                self.tiers[tier].skipped += 1
                print('skipped: [%s] %s: %s' % (tier, name, reason))
                return
        self.fail(tier, '%s: skipped, and tests/allowed-skips does not '
                  'allow it: %s' % (name, reason or '(no reason given)'))

    def tap(self, tier_of, producer, lines):
        """
        Count the TAP @lines of @producer; @tier_of(name) gives a test's
        tier. Returns how many results were counted, how many of them
        failed, and the first problem with the stream as a whole (no
        plan, short plan, bail out), or None.
        """
        plan = None
        counted = failed = 0
        problem = None
        for line in lines:
            m = PLAN.match(line)
            if m and m.group(2):
                # "1..0 # SKIP why": the whole producer skipped.
                self.skip(tier_of(producer), producer, m.group(3) or '')
                return 1, 0, None
            if m:
                plan = int(m.group(1))
                continue
            if line.startswith('Bail out!'):
                problem = problem or line.strip()
                continue
            m = RESULT.match(line)
            if not m:
                continue
            counted += 1
            name = '%s: %s' % (producer, m.group(3).strip())
            tier = tier_of(name)
            directive = (m.group(5) or '').upper()
            if directive == 'SKIP':
                self.skip(tier, name, m.group(6).strip())
            elif m.group(1) == 'ok':
                self.tiers[tier].passed += 1
            elif directive == 'TODO':
                self.tiers[tier].passed += 1
            else:
                self.fail(tier, name)
                failed += 1
        if plan is None and counted:
            problem = problem or 'no plan line (1..N)'
        elif plan is not None and plan != counted:
            problem = problem or 'plan 1..%d, but %d results' % (plan, counted)
        return counted, failed, problem

    def meson_log(self, path):
        try:
            f = open(path)
        except FileNotFoundError:
            self.fail('unit', 'no meson test log: the test runner did not run')
            return
        with f:
            for line in f:
                test = json.loads(line)
                name = test['name']
                tier = ('rig' if 'gmem_rig' in name else
                        'host' if 'func-x86_64' in name else 'unit')
                self.tiers[tier].producers += 1
                out = (test.get('stdout') or '').splitlines()
                counted, failed, problem = self.tap(lambda n: tier, name, out)
                result = test.get('result')
                if problem:
                    self.fail(tier, '%s: %s' % (name, problem), out)
                elif result not in ('OK', 'SKIP', 'EXPECTEDFAIL') and \
                        not failed:
                    # Failed beyond its TAP lines: a crash, a timeout.
                    self.fail(tier, '%s (%s)' % (name, result), out)
                elif not counted:
                    if result == 'SKIP':
                        self.skip(tier, name, 'meson SKIP, no reason given')
                    else:
                        self.tiers[tier].passed += 1

    def tap_file(self, tier, path):
        def tier_of(name):
            if tier == 'libvirt':
                return 'libvirt-rig' if 'in the rig' in name else \
                    'libvirt-host'
            return tier
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            lines = []
        for t in ('libvirt-host', 'libvirt-rig') if tier == 'libvirt' \
                else (tier,):
            self.tiers[t].producers += 1
        counted, _, problem = self.tap(tier_of, os.path.basename(path),
                                       lines)
        if not counted:
            self.fail(tier_of(''), '%s: no results (the tier did not run)'
                      % path, lines)
        elif problem:
            self.fail(tier_of(''), '%s: %s' % (path, problem), lines)

    def report(self, every_tier):
        for name in TIERS:
            t = self.tiers[name]
            if every_tier and not t.producers:
                t.producers = 1
                self.fail(name, 'the tier did not run')
            elif t.producers and not t.passed + t.failed + t.skipped:
                self.fail(name, 'the tier has no results')
        # Again at the end, where a log cut to its last lines keeps them.
        for what in self.failures:
            print('FAILED: ' + what[:300])
        print('per tier:          ran  passed  failed  skipped')
        total = Tally()
        for name in TIERS:
            t = self.tiers[name]
            if not t.producers:
                continue
            print('  %-14s %6d  %6d  %6d  %7d' % (
                name, t.passed + t.failed + t.skipped, t.passed, t.failed,
                t.skipped))
            total.passed += t.passed
            total.failed += t.failed
            total.skipped += t.skipped
        print('%d passed, %d failed, %d skipped'
              % (total.passed, total.failed, total.skipped))
        return 1 if total.failed else 0


def main(testlog, *taps):
    summary = Summary(load_allowed())
    summary.meson_log(testlog)
    for arg in taps:
        tier, path = arg.split('=', 1)
        summary.tap_file(tier, path)
    # With TAP files it is the whole make check: every tier must be there.
    return summary.report(every_tier=bool(taps))


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]))
