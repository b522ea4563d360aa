#!/usr/bin/env python3
#
# The gmem test guest on real QEMU: its protocol, and guest RAM checked both
# from inside the guest and from QEMU's side through QMP.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import subprocess

from qemu_test import QemuSystemTest
from qemu_test.gmem_guest import (EXIT_FAILED, EXIT_GUEST_ERROR, EXIT_PASSED,
                                  GmemGuestTest, check_pattern, parse_fields,
                                  parse_ranges)


class GmemGuest(GmemGuestTest):

    def boot(self, command_line, accel, mem='512M'):
        self.require_accelerator(accel)
        return self.launch_guest(command_line, '-accel', accel, '-m', mem)

    def ram_pattern_checked_by_qmp(self, accel, mem, stride):
        log = self.boot('ram_map,ram_pattern,ram_inversions checkpoints=1 '
                        'stride=%d' % stride, accel, mem)
        line = log.wait_for('gmem-checkpoint: ram_pattern:', self.vm)
        fields = parse_fields(line.split(': ', 2)[2])
        seed, ranges = int(fields['seed'], 0), parse_ranges(fields['ranges'])
        self.assertEqual(int(fields['stride']), stride)
        checked, bad, first = check_pattern(self.vm, self.workdir, seed,
                                            ranges, stride)
        self.assertEqual(bad, 0, 'first bad word at %s' % first)
        # The free RAM the guest reported is most of what the machine has.
        self.assertGreater(checked, int(mem[:-1]) * (1 << 20) * 3 // 4)
        self.vm.cmd('inject-nmi')
        self.finish(log, EXIT_PASSED)
        self.assertEqual(log.results(),
                         {'ram_map': ('PASS', ''), 'ram_pattern': ('PASS', ''),
                          'ram_inversions': ('PASS', '')})

    # This box's /dev/kvm executes guest code about a thousand times slower
    # than TCG, so under KVM the guest writes one word per page: every page
    # is still touched and checked, from both sides.
    def test_ram_pattern_kvm(self):
        self.ram_pattern_checked_by_qmp('kvm', '512M', 4096)

    def test_ram_pattern_tcg(self):
        self.ram_pattern_checked_by_qmp('tcg', '512M', 8)

    def test_qmp_check_sees_a_wrong_pattern(self):
        """The host-side checker must report words that do not match."""
        log = self.boot('ram_pattern checkpoints=1 seed=7 stride=4096',
                        'kvm', '128M')
        line = log.wait_for('gmem-checkpoint: ram_pattern:', self.vm)
        fields = parse_fields(line.split(': ', 2)[2])
        ranges = parse_ranges(fields['ranges'])
        wrong_seed = int(fields['seed'], 0) ^ 1
        checked, bad, first = check_pattern(self.vm, self.workdir, wrong_seed,
                                            ranges, 4096)
        self.assertEqual(bad, checked // 4096)
        self.assertEqual(first, ranges[0][0])
        self.vm.cmd('inject-nmi')
        self.finish(log, EXIT_PASSED)

    def test_failure_and_skip_reach_the_host(self):
        log = self.boot('selftest_skip,selftest_fail value=9', 'kvm', '64M')
        self.finish(log, EXIT_FAILED)
        self.assertEqual(log.results(), {
            'selftest_skip': ('SKIP', 'skipping on purpose'),
            'selftest_fail': ('FAIL', 'failing on purpose (value=9)')})
        self.assertIn('gmem-guest: done 0 passed, 1 failed, 1 skipped',
                      log.lines)

    def test_exception_is_reported(self):
        log = self.boot('selftest_fault', 'kvm', '64M')
        self.finish(log, EXIT_GUEST_ERROR)
        status, reason = log.results()['selftest_fault']
        self.assertEqual(status, 'FAIL')
        self.assertRegex(reason, r'^exception 14 ')

    def test_unknown_test_name(self):
        log = self.boot('no_such_test', 'kvm', '64M')
        self.finish(log, EXIT_GUEST_ERROR)
        self.assertIn("gmem-guest: unknown test 'no_such_test'", log.lines)

    def test_list(self):
        log = self.boot('list', 'kvm', '64M')
        self.finish(log, EXIT_PASSED)
        listed = [l.split()[2].rstrip(':') for l in log.lines
                  if l.startswith('gmem-guest: test ')]
        self.assertIn('ram_pattern', listed)
        self.assertIn('selftest_fail', listed)


class GuestMemfdInterfaces(QemuSystemTest):
    """The gmem layer's QMP, HMP and accelerator properties, no guest."""

    def setUp(self):
        super().setUp()
        self.set_machine('q35')
        self.require_accelerator('kvm')

    def test_schema_hmp_and_properties(self):
        self.vm.add_args('-accel', 'kvm,guest-memfd-discard=async,'
                         'guest-memfd-conversion=legacy', '-S',
                         '-display', 'none', '-nodefaults')
        self.vm.launch()
        schema = self.vm.cmd('query-qmp-schema')
        commands = {e['name'] for e in schema if e['meta-type'] == 'command'}
        self.assertIn('query-guest-memfd', commands)
        self.assertIn('guest-memfd-convert', commands)
        enums = {e['name']: e for e in schema if e['meta-type'] == 'enum'}
        types = [e['name'] for e in schema if e['meta-type'] == 'object']
        self.assertTrue(any('sw-protected-vm' in e.get('values', [])
                            for e in enums.values()))
        self.assertTrue(types)
        info = self.vm.cmd('query-guest-memfd')
        self.assertEqual((info['conversion'], info['discard']),
                         ('legacy', 'async'))
        self.assertEqual(info['blocks'], [])      # no guest_memfd memory
        self.assertEqual((info['leases'], info['lease-waits'],
                          info['kernel-ns'], info['rejected']['leased']),
                         (0, 0, 0, 0))
        props = {p['name']: p for p in self.vm.cmd('qom-list-properties',
                                                    typename='kvm-accel')}
        for name in ('guest-memfd-conversion', 'guest-memfd-discard',
                     'guest-memfd-prefault', 'guest-memfd-lease-timeout',
                     'memslot-zap'):
            self.assertIn(name, props)
            self.assertTrue(props[name].get('description'), name)
        hmp = self.vm.cmd('human-monitor-command',
                          **{'command-line': 'info guest-memfd'})
        self.assertTrue(hmp.startswith('conversion: legacy, discard: async,'),
                        hmp)
        resp = self.vm.qmp('guest-memfd-convert', gpa=0, size=4096,
                           private=True)
        self.assertIn('needs the conversion manager', resp['error']['desc'])


class MemslotZap(QemuSystemTest):
    """
    -accel kvm,memslot-zap= on this box's KVM (an ordinary VM, whose
    kernel offers KVM_X86_QUIRK_SLOT_ZAP_ALL): what each policy asks of
    the kernel and reports. This KVM counts no page faults in pf_taken,
    so what the policies cost is measured in the nested rig
    (test_gmem_sw_lifetimes.MemslotZapFaults).
    """

    def setUp(self):
        super().setUp()
        self.set_machine('q35')
        self.require_accelerator('kvm')

    def zap_info(self, policy):
        self.vm.add_args('-accel', 'kvm,memslot-zap=%s' % policy,
                         '-display', 'none', '-nodefaults')
        self.vm.launch()
        info = self.vm.cmd('query-guest-memfd')['memslot-zap']
        hmp = self.vm.cmd('human-monitor-command',
                          **{'command-line': 'info guest-memfd'})
        self.vm.shutdown()
        self._vms.clear()
        return info, [line for line in hmp.splitlines()
                      if line.startswith('memslot-zap: ')]

    def test_policies(self):
        for policy, disabled, reason in (
                ('all', False, 'memslot-zap=all'),
                ('targeted', True, 'memslot-zap=targeted'),
                ('auto', True, 'auto: no VFIO device')):
            info, hmp = self.zap_info(policy)
            self.assertEqual(info, {
                'policy': policy, 'quirk-supported': True,
                'quirk-disabled': disabled, 'zaps-all': not disabled,
                'reason': reason}, policy)
            self.assertEqual(hmp, [
                'memslot-zap: %s, a memslot change zaps %s (%s); '
                'KVM_X86_QUIRK_SLOT_ZAP_ALL %s' % (
                    policy, 'only the slot' if disabled else 'the whole VM',
                    reason, 'disabled' if disabled else 'in place')])

    def test_bad_values_refused(self):
        for value in ('bogus', '', 'ALL', 'target'):
            proc = subprocess.run(
                [self.qemu_bin, '-M', 'q35', '-accel',
                 'kvm,memslot-zap=' + value, '-nodefaults', '-display',
                 'none', '-S'], capture_output=True, text=True, timeout=60,
                stdin=subprocess.DEVNULL)
            self.assertEqual(proc.returncode, 1, (value, proc.stderr))
            self.assertIn("Parameter 'memslot-zap' does not accept value",
                          proc.stderr)


if __name__ == '__main__':
    QemuSystemTest.main()
