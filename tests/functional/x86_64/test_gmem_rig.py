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
    pythonpath = os.path.join(src, 'python') + ':' + os.path.dirname(here)
    cmd = [os.path.join(src, 'tests', 'rig', 'run.sh'),
           '/usr/bin/env', 'PYTHONPATH=' + pythonpath, '/usr/bin/python3',
           os.path.join(here, 'test_gmem_sw_protected.py')]
    sys.stdout.flush()
    status = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL).returncode
    if status == 125:
        print('Bail out! the nested rig failed to start (tests/rig/run.sh '
              'exit 125)')
    return status


if __name__ == '__main__':
    sys.exit(main())
