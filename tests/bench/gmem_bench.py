#!/usr/bin/env python3
#
# make bench: conversions per second, side by side, in one run inside the
# nested rig (real KVM_X86_SW_PROTECTED_VM):
#   bare     - gmem-convert-bare: the KVM work alone (the physical limit)
#   legacy   - the test guest through QEMU 10.2.2's conversion path
#   manager  - the test guest through the conversion manager
# Guest-driven rows are timed by the host between two checkpoints around
# the guest's conversion loop, so they include the hypercall exit and
# re-entry of every request: everything a guest pays.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import subprocess
import sys
import tempfile
import time

from qemu.machine import QEMUMachine
from qemu_test.gmem_guest import (EXIT_PASSED, GuestLog, guest_args,
                                  sw_protected_vm_args)

CHUNKS = [(4096, int(os.environ.get('BENCH_ROUNDS_4K', '500'))),
          (2 << 20, int(os.environ.get('BENCH_ROUNDS_2M', '100')))]


def bare(tool, chunk, rounds):
    out = subprocess.run([tool, str(chunk), str(rounds)], check=True,
                         capture_output=True, text=True).stdout
    fields = dict(w.split('=') for w in out.split()[1:])
    return float(fields['per_second'])


def guest_driven(qemu, kernel, conversion, chunk, rounds, tmp):
    debugcon = os.path.join(tmp, 'debugcon-%s-%d.log' % (conversion, chunk))
    vm = QEMUMachine(qemu, base_temp_dir=tmp)
    vm.set_machine('q35')
    vm.add_args('-accel', 'kvm,guest-memfd-conversion=' + conversion,
                '-m', '256M', *sw_protected_vm_args(),
                *guest_args(kernel, debugcon,
                            'convert_bench chunk=%d count=%d checkpoints=1'
                            % (chunk, rounds)))
    vm.launch()
    try:
        log = GuestLog(debugcon)
        log.wait_for('gmem-checkpoint: convert_bench: phase=start', vm, 300)
        t0 = time.monotonic()
        vm.cmd('inject-nmi')
        log.wait_for('gmem-checkpoint: convert_bench: phase=end', vm, 600)
        seconds = time.monotonic() - t0
        vm.cmd('inject-nmi')
        vm.wait(timeout=60)
    finally:
        vm.shutdown()
    if vm.exitcode() != EXIT_PASSED:
        raise RuntimeError('%s chunk=%d: guest failed:\n%s'
                           % (conversion, chunk, '\n'.join(log.lines)))
    return 2 * rounds / seconds


def main():
    cache = os.environ['QEMU_GMEM_CACHE']
    qemu = os.path.join(cache, 'build', 'qemu-system-x86_64')
    kernel = os.path.join(cache, 'guest', 'gmem-guest.elf')
    tool = os.path.join(cache, 'rig', 'gmem-convert-bare')
    print('gmem bench: private/shared conversions per second, nested rig '
          '(KVM_X86_SW_PROTECTED_VM under TCG), one round trip = 2 '
          'conversions')
    print('%-8s %12s %12s %12s %14s %14s' % (
        'chunk', 'bare', 'legacy', 'manager', 'manager/bare',
        'manager/legacy'))
    with tempfile.TemporaryDirectory(prefix='gmem-bench-') as tmp:
        for chunk, rounds in CHUNKS:
            b = bare(tool, chunk, rounds * 4)
            leg = guest_driven(qemu, kernel, 'legacy', chunk, rounds, tmp)
            man = guest_driven(qemu, kernel, 'manager', chunk, rounds, tmp)
            print('%-8s %12.1f %12.1f %12.1f %14.4f %14.3f' % (
                '4KiB' if chunk == 4096 else '2MiB', b, leg, man, man / b,
                man / leg))
            sys.stdout.flush()
    print('bare: KVM_SET_MEMORY_ATTRIBUTES plus discarding the stale side, '
          'no vCPU; legacy and manager: the test guest\'s '
          'KVM_HC_MAP_GPA_RANGE loop, each conversion a guest exit to QEMU')
    return 0


if __name__ == '__main__':
    sys.exit(main())
