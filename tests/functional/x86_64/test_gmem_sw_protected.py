#!/usr/bin/env python3
#
# sw-protected-vm on a KVM that offers KVM_X86_SW_PROTECTED_VM (the nested
# rig, tests/rig): the test guest converts memory with KVM_HC_MAP_GPA_RANGE
# and QEMU's view of private memory is checked through QMP.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import time

from qemu_test import QemuSystemTest
from qemu_test.gmem_guest import (EXIT_PASSED, KVM_X86_SW_PROTECTED_VM,
                                  GuestLog, count_secret_words, guest_args,
                                  guest_kernel, kvm_vm_types, parse_fields,
                                  read_words, sw_protected_vm_args)


class SwProtectedVm(QemuSystemTest):

    timeout = 600

    def setUp(self):
        super().setUp()
        self.kernel = guest_kernel()
        if self.kernel is None:
            self.skipTest('test guest not built (QEMU_GMEM_TEST_GUEST unset)')
        if not kvm_vm_types() & (1 << KVM_X86_SW_PROTECTED_VM):
            self.skipTest('KVM offers no KVM_X86_SW_PROTECTED_VM here '
                          '(run in the nested rig: make check-rig)')
        self.set_machine('q35')
        self.require_accelerator('kvm')

    def boot(self, command_line, mem='128M', smp=1):
        self.debugcon = os.path.join(self.workdir, 'debugcon.log')
        self.vm.add_args('-accel', 'kvm', '-m', mem, '-smp', str(smp),
                         *sw_protected_vm_args(),
                         *guest_args(self.kernel, self.debugcon, command_line))
        self.vm.launch()
        return GuestLog(self.debugcon)

    def finish(self, log, expected_exit=EXIT_PASSED):
        self.vm.wait(timeout=self.timeout)
        log.poll()
        self.assertEqual(self.vm.exitcode(), expected_exit,
                         'guest output:\n' + '\n'.join(log.lines))

    def checkpoint(self, log, test):
        line = log.wait_for('gmem-checkpoint: %s:' % test, self.vm,
                            timeout=self.timeout)
        return parse_fields(line.split(': ', 2)[2])

    def test_type1_vm_boots(self):
        log = self.boot('ram_map')
        self.finish(log)
        self.assertEqual(log.results()['ram_map'], ('PASS', ''))

    def test_secret_never_visible_to_qemu(self):
        log = self.boot('convert_secret checkpoints=1')
        for phase in ('private', 'shared'):
            fields = self.checkpoint(log, 'convert_secret')
            self.assertEqual(fields['phase'], phase)
            base, size = int(fields['base'], 0), int(fields['size'], 0)
            self.assertEqual(count_secret_words(self.vm, self.workdir,
                                                base, size), 0)
            # Data rule: QEMU's mapping of a range the guest made private
            # reads zeros (the shared side was discarded), and still does
            # after the guest shares it again (the private side is dropped).
            data = read_words(self.vm, self.workdir, base, size)
            self.assertFalse(data.any(), 'QEMU sees non-zero data in %s '
                             'range 0x%x' % (phase, base))
            self.vm.cmd('inject-nmi')
        self.finish(log)
        self.assertEqual(log.results()['convert_secret'], ('PASS', ''))
        self.assertEqual(log.info('convert_secret'), [
            'private view after conversion: zeros',
            'shared view after converting back: zeros'])

    def test_roundtrips(self):
        log = self.boot('convert_roundtrip_4k,convert_roundtrip_2m '
                        'rounds=8')
        self.finish(log)
        self.assertEqual(log.results(), {
            'convert_roundtrip_4k': ('PASS', ''),
            'convert_roundtrip_2m': ('PASS', '')})

    def bad_request(self, case):
        """
        Run one convert_bad case; return (the guest's answer or None if it
        got none, the VM's run state once the request was handled).
        """
        log = self.boot('convert_bad case=%d checkpoints=1' % case)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            log.poll()
            if any(l.startswith('gmem-checkpoint: convert_bad:')
                   for l in log.lines):
                # The guest got its answer and waits for an NMI.
                status = self.vm.cmd('query-status')['status']
                self.vm.cmd('inject-nmi')
                self.finish(log)
                return parse_fields(log.info('convert_bad')[0]), status
            status = self.vm.cmd('query-status')['status']
            if status != 'running':
                return None, status
            time.sleep(0.1)
        self.fail('no answer and no stop in %ds' % self.timeout)

    # Upstream's path (kvm_convert_memory) as of QEMU 10.2.2: the baseline
    # that the conversion manager improves on. KVM itself answers requests
    # it can reject without userspace (-KVM_EINVAL = -22); everything else
    # reaches QEMU, which either converts, ignoring what it does not check,
    # or stops the whole VM.

    def test_bad_unaligned_rejected_by_kvm(self):
        answer, status = self.bad_request(0)
        self.assertEqual((answer['ret'], status), ('-22', 'running'))

    def test_bad_zero_pages_rejected_by_kvm(self):
        answer, status = self.bad_request(1)
        self.assertEqual((answer['ret'], status), ('-22', 'running'))

    def test_bad_overflow_rejected_by_kvm(self):
        answer, status = self.bad_request(2)
        self.assertEqual((answer['ret'], status), ('-22', 'running'))

    def test_bad_beyond_ram_stops_vm(self):
        answer, status = self.bad_request(3)
        self.assertEqual((answer, status), (None, 'internal-error'))

    def test_bad_mmio_stops_vm(self):
        answer, status = self.bad_request(4)
        self.assertEqual((answer, status), (None, 'internal-error'))

    def test_bad_reserved_attrs_accepted(self):
        answer, status = self.bad_request(5)
        self.assertEqual((answer['ret'], status), ('0', 'running'))

    def test_bad_hint_mismatch_accepted(self):
        answer, status = self.bad_request(6)
        self.assertEqual((answer['ret'], status), ('0', 'running'))


if __name__ == '__main__':
    QemuSystemTest.main()
