#!/usr/bin/env python3
#
# Runs the tests that need what the host's KVM may lack inside the nested
# rig (tests/rig): KVM_X86_SW_PROTECTED_VM (the test_gmem_sw_*.py files,
# together through run_gmem_sw_protected.py, and the SEV-SNP and TDX
# launch on it through the launch stand-in, test_gmem_launch_e2e) and
# in-place guest_memfd (test_gmem_inplace), each in an L1 boot of its own,
# and relays their TAP output, so each of them is a test case of this one.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import queue
import re
import subprocess
import sys
import threading
import time

# Meson's timeout of this test (patches/0001): the rig gets this much less
# (room for two more boots, tests/rig/run.sh), so that when it runs out, the
# results so far still reach meson.
MESON_TIMEOUT = 2700
MARGIN = 300


# The L1 boots, in this order (the in-place tests are short): a test
# file (or run_gmem_sw_protected.py, which runs the sw-protected-vm test
# files, split by subject, as one), its arguments, and what the boot sets
# besides. Every boot runs L0 on single-threaded TCG, where the nested
# SVM holds (tests/rig/README.md).
RUNS = (
    ('test_gmem_inplace.py', (), {}),
    ('run_gmem_sw_protected.py', (), {}),
    # TDX needs a guest physical address width of 48 or 52, which QEMU
    # caps at L1's MAXPHYADDR (tests/launch-standin/README.md).
    ('test_gmem_launch_e2e.py', (),
     {'RIG_QEMU_ARGS': '-cpu max,phys-bits=48'}),
    # The 4-vCPU storms (issue 26): DMA beside conversions, and the
    # bounded random storm, 10,000 guest requests, 3-10 min and silent
    # for up to its own limit of 1,000 s; make check-storm runs 100,000.
    ('test_gmem_sw_storms.py', ('-k', 'test_dma_storm',
                                '-k', 'test_random_requests_storm'),
     {'QEMU_GMEM_RIG_STORM': '1', 'QEMU_GMEM_STORM_REQUESTS': '10000',
      'QEMU_GMEM_RIG_SILENCE': '1500'}),
)

# Runs that can go on after a given test in a new boot
# (QEMU_GMEM_RIG_AFTER), and list their tests (--list).
RESUMABLE = ('run_gmem_sw_protected.py',)

# A boot that prints nothing for this long (seconds; a run may set its
# own) is stuck: a test ends within 11 min even when it fails (its own
# 10-min limit, then a minute for SIGKILL).
SILENCE = 900

# A rig that failed before its first result is run again if this much
# of the time is gone at most (a whole run takes 4-6 min here).
RETRY_WITHIN = 900


def silence_of(env):
    """A run's silence limit, in seconds."""
    return int(env.get('QEMU_GMEM_RIG_SILENCE', SILENCE))


class Relay:
    """
    One TAP stream of several runs in the rig: each run's results
    renumbered, each followed by how long its test took, and one plan at
    the end. A run that ends short of its own plan gets a failed result
    for what is missing.
    """

    def __init__(self, console):
        self.start = time.monotonic()
        self.results = 0
        self.restarts = 0           # guests whose firmware stalled
        self.console = console
        print('TAP version 13')

    def result(self, line):
        """Pass on one result line of a run, renumbered; False if failed."""
        m = re.match(r'^(ok|not ok)\s+\d*\s*(.*)', line)
        self.results += 1
        print('%s %d %s' % (m.group(1), self.results, m.group(2).rstrip()))
        return m.group(1) == 'ok'

    def fail(self, what):
        self.result('not ok %s' % what)

    def show_console(self, why):
        """L1's kernel console, last lines: what the rig saw of @why."""
        try:
            with open(self.console, errors='replace') as f:
                tail = f.read().splitlines()[-25:]
        except OSError:
            return
        print('# %s; last lines of L1\'s console (%s):' % (why, self.console))
        for line in tail:
            print('#   ' + line)

    def run(self, cmd, env, script):
        """
        Run @cmd, passing its TAP on as it comes; (exit status, names of
        its results in order, failed results, its own plan or None).
        When it prints nothing for SILENCE seconds (or
        QEMU_GMEM_RIG_SILENCE in @env) it is stopped, and the exit status
        is None.
        """
        names, failed, plan = [], 0, None
        silence = silence_of(env)
        last = time.monotonic()
        sys.stdout.flush()
        with subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, text=True,
                              errors='replace') as proc:
            lines = queue.Queue()

            def read():
                for line in proc.stdout:
                    lines.put(line)
                lines.put(None)
            threading.Thread(target=read, daemon=True).start()
            while True:
                try:
                    line = lines.get(timeout=silence)
                except queue.Empty:
                    print('# %s: nothing for %d s; stopping the rig'
                          % (script, silence))
                    proc.terminate()
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                    return None, names, failed, plan
                if line is None:
                    break
                m = re.match(r'^1\.\.(\d+)', line)
                if m:
                    plan = int(m.group(1))
                elif line.startswith(('ok ', 'not ok ')):
                    failed += not self.result(line)
                    names.append(re.sub(r'^(not )?ok\s+\d*\s*|\s*#.*$', '',
                                        line.strip()))
                    now = time.monotonic()
                    print('# %s: %.1f s (%.0f s in all)' %
                          (script, now - last, now - self.start))
                    last = now
                elif not line.startswith('TAP version'):
                    self.restarts += 'firmware did not reach the guest' in line
                    sys.stdout.write(line)
                sys.stdout.flush()
        return proc.returncode, names, failed, plan


def list_tests(cmd, env):
    """
    The ids of a resumable run's tests, in order, listed on the host;
    None (no resuming) if they cannot be listed.
    """
    out = subprocess.run(cmd[1:] + ['--list'], env=env, capture_output=True,
                         text=True, check=False)
    if out.returncode:
        print('# listing the tests failed, no resuming: ' +
              ' | '.join(out.stderr.strip().splitlines()[-3:]))
        return None
    return out.stdout.split()


def run_boots(relay, cmd, env, script):
    """
    Run one entry of RUNS, and for a resumable one, go on after a test
    that stopped its boot in a new boot; the exit status of the last.
    """
    todo = list_tests(cmd, env) if script in RESUMABLE else None
    first = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        left = int(MESON_TIMEOUT - MARGIN - (time.monotonic() - relay.start))
        if left < 120:
            relay.fail('%s: not run, %d s of the rig tier\'s time left'
                       % (script, left))
            return 1
        env['RIG_TIMEOUT'] = str(left)
        rc, names, failed, plan = relay.run(cmd, env, script)
        if todo is not None:
            del todo[:len(names)]
        if rc is None or rc == 124:
            why = ('stopped after %d s without output' % silence_of(env)
                   if rc is None else
                   'the rig ran out of time (RIG_TIMEOUT=%s s)'
                   % env['RIG_TIMEOUT'])
            relay.show_console('%s: %s' % (script, why))
            if not todo:
                relay.fail('%s: %s' % (script, why))
                return 1
            # The test it was in fails; the rest go on in a new boot.
            relay.fail('%s: in %s, %s' % (todo[0], script, why))
            env['QEMU_GMEM_RIG_AFTER'] = todo.pop(0)
            if todo:
                continue
            return 1
        if rc == 125 and not names and attempt == 1 and \
                time.monotonic() - first < RETRY_WITHIN:
            # Nothing ran: the rig itself failed. Once more, as a user would.
            print('# %s: the rig ended with status %d before any result; '
                  'running it once more' % (script, rc))
            continue
        if rc == 125:
            relay.show_console('%s: the rig failed' % script)
            relay.fail('%s: the nested rig failed to start (tests/rig/run.sh '
                       'exit 125)' % script)
        elif plan is None:
            relay.fail('%s: no plan line, exit status %d' % (script, rc))
        elif len(names) < plan:
            relay.fail('%s: %d of its %d results missing' %
                       (script, plan - len(names), plan))
        elif rc and not failed:
            relay.fail('%s: exit status %d after all its results passed'
                       % (script, rc))
        return rc


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.normpath(os.path.join(here, '..', '..', '..'))
    cache = os.environ.get('QEMU_GMEM_CACHE') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or
        os.path.expanduser('~/.cache'), 'qemu-gmem')
    relay = Relay(os.path.join(cache, 'rig', 'last-console.log'))
    unavailable = os.environ.get('QEMU_GMEM_RIG_UNAVAILABLE')
    if unavailable:
        # Not a skip: this tier must run wherever make check runs.
        relay.fail('nested rig set-up: ' + unavailable)
        print('1..%d' % relay.results)
        return 1
    env = dict(os.environ)
    # L1 sees the host read-only; its /tmp is its own tmpfs.
    env['QEMU_BUILD_ROOT'] = '/tmp/gmem-rig-build'
    # Room for the 4-vCPU storms (qemu_test/gmem_sw_protected.STORM_VCPUS).
    env.setdefault('RIG_SMP', '4')
    env.setdefault('RIG_TCG_THREAD', 'single')
    # An edu behind an IOMMU, bound to vfio-pci, for DeviceAssignment.
    env.setdefault('RIG_VFIO', '1')
    pythonpath = os.path.join(src, 'python') + ':' + os.path.dirname(here)
    status = 0
    for script, args, extra in RUNS:
        cmd = [os.path.join(src, 'tests', 'rig', 'run.sh'),
               '/usr/bin/env', 'PYTHONPATH=' + pythonpath, '/usr/bin/python3',
               '-u', os.path.join(here, script), *args]
        rc = run_boots(relay, cmd, dict(env, **extra), script)
        status = status or rc
    print('# QEMU started once more where the firmware did not reach the '
          'guest: %d time(s) (qemu_test/gmem_guest.py)' % relay.restarts)
    print('1..%d' % relay.results)
    return 1 if status else 0


if __name__ == '__main__':
    sys.exit(main())
