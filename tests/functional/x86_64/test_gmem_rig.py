#!/usr/bin/env python3
#
# Runs the tests that need KVM_X86_SW_PROTECTED_VM (test_gmem_sw_protected)
# inside the nested rig (tests/rig) and relays their TAP output, so each of
# them is a test case of this one.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import subprocess
import sys
import time

# Meson's timeout of this test (patches/0001): the rig gets this much less
# (room for two more boots, tests/rig/run.sh), so that when it runs out, the
# results so far still reach meson.
MESON_TIMEOUT = 2700
MARGIN = 300


# A rig that failed before its first result is run again if this much
# of the time is gone at most (a whole run takes 4-6 min here).
RETRY_WITHIN = 900


def relay(cmd, env, start, again=False):
    """
    Run @cmd, passing its TAP on as it comes, each result followed by how
    long its test took; (exit status, how many results it gave). @again:
    a second run, whose TAP version line would be out of place.
    """
    results = 0
    last = time.monotonic()
    sys.stdout.flush()
    with subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, text=True,
                          errors='replace') as proc:
        for line in proc.stdout:
            if again and line.startswith('TAP version'):
                continue
            sys.stdout.write(line)
            if line.startswith(('ok ', 'not ok ')):
                now = time.monotonic()
                print('# %.1f s (%.0f s in all)' % (now - last, now - start))
                last = now
                results += 1
            sys.stdout.flush()
    return proc.returncode, results


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.normpath(os.path.join(here, '..', '..', '..'))
    unavailable = os.environ.get('QEMU_GMEM_RIG_UNAVAILABLE')
    if unavailable:
        print('1..0 # SKIP nested rig unavailable: ' + unavailable)
        return 0
    env = dict(os.environ)
    # L1 sees the host read-only; its /tmp is its own tmpfs.
    env['QEMU_BUILD_ROOT'] = '/tmp/gmem-rig-build'
    # Room for the 4-vCPU storm (test_gmem_sw_protected.STORM_VCPUS).
    env.setdefault('RIG_SMP', '4')
    # An edu behind an IOMMU, bound to vfio-pci, for DeviceAssignment.
    env.setdefault('RIG_VFIO', '1')
    env.setdefault('RIG_TIMEOUT', str(MESON_TIMEOUT - MARGIN))
    pythonpath = os.path.join(src, 'python') + ':' + os.path.dirname(here)
    cmd = [os.path.join(src, 'tests', 'rig', 'run.sh'),
           '/usr/bin/env', 'PYTHONPATH=' + pythonpath, '/usr/bin/python3',
           '-u', os.path.join(here, 'test_gmem_sw_protected.py')]
    start = time.monotonic()
    status, results = relay(cmd, env, start)
    if status and not results and time.monotonic() - start < RETRY_WITHIN:
        # Nothing ran: the rig itself failed. Once more, as a user would.
        print('# the rig ended with status %d before any result; '
              'running it once more' % status)
        env['RIG_TIMEOUT'] = str(int(MESON_TIMEOUT - MARGIN -
                                     (time.monotonic() - start)))
        status, results = relay(cmd, env, start, again=True)
    if status == 124:
        print('Bail out! the rig ran out of time (RIG_TIMEOUT=%s s)'
              % env['RIG_TIMEOUT'])
    elif status == 125:
        print('Bail out! the nested rig failed to start (tests/rig/run.sh '
              'exit 125)')
    return status


if __name__ == '__main__':
    sys.exit(main())
