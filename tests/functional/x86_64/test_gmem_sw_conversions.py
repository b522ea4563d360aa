#!/usr/bin/env python3
#
# sw-protected-vm in the nested rig: conversions.
#
# One of the test_gmem_sw_*.py files, split by subject (issue 28); they
# share qemu_test/gmem_sw_protected.py, and run_gmem_sw_protected.py runs
# them all in one L1 boot of the rig tier (test_gmem_rig.py).
#
# SPDX-License-Identifier: GPL-2.0-or-later

import subprocess

from qemu_test import QemuSystemTest
from qemu_test.gmem_guest import (count_secret_words, parse_fields,
                                  read_words, secret_word,
                                  sw_protected_vm_args)
from qemu_test.gmem_sw_protected import RIG_VCPUS, SwProtectedVmTest


class Conversions(SwProtectedVmTest):
    """
    The guest's KVM_HC_MAP_GPA_RANGE requests and QMP's guest-memfd-convert:
    KVM's attributes, the manager's record and the data of both sides
    (round trips, racing vCPUs, ranges over two RAMBlocks), the secret and
    data rules under each discard policy, and what a confidential guest
    refuses (in-place backing, migration).
    """

    def test_in_place_backend_refused(self):
        # Confidential guests use split backing until the kernel offers
        # in-place conversion (INIT_SHARED for this VM type).
        proc = subprocess.run([self.qemu_bin, '-M', 'q35', '-accel', 'kvm',
                               '-nodefaults', '-display', 'none', '-m', '64M',
                               *sw_protected_vm_args(), '-object',
                               'memory-backend-guest-memfd,id=m0,size=64M',
                               '-machine', 'memory-backend=m0,smm=off'],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn('in-place guest_memfd is not available for '
                      'confidential guests yet', proc.stderr)

    def test_in_place_backend_needs_smm_off(self):
        # This KVM has SMM, unlike the host's: the SMM address space would
        # map the guest_memfd a second time.
        proc = subprocess.run([self.qemu_bin, '-M', 'q35', '-accel', 'kvm',
                               '-nodefaults', '-display', 'none', '-m', '64M',
                               '-object',
                               'memory-backend-guest-memfd,id=m0,size=64M',
                               '-machine', 'memory-backend=m0'],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn('needs -machine smm=off', proc.stderr)

    def test_migration_is_refused(self):
        # Dirty logging of guest_memfd memslots is refused by KVM; without
        # the blocker, migrate would stop the VM.
        log = self.boot('hold checkpoints=1')
        self.checkpoint(log, 'hold')
        resp = self.vm.qmp('migrate', uri='exec:cat > /dev/null')
        self.assertIn('cannot log dirty pages of guest_memfd memory',
                      resp['error']['desc'])
        self.assertEqual(self.vm.cmd('query-status')['status'], 'running')
        self.vm.cmd('inject-nmi')
        self.finish(log)

    def test_type1_vm_boots(self):
        log = self.boot('ram_map')
        self.finish(log)
        self.assertEqual(log.results()['ram_map'], ('PASS', ''))

    def check_listed_ranges(self, base, size, private):
        """
        query-guest-memfd's per-range listing of pc.ram (which maps guest
        physical 0 at offset 0 here): exactly [base, base + size) is
        private when @private, nothing otherwise.
        """
        blocks = self.vm.cmd('query-guest-memfd', ranges=True)['blocks']
        ram = [b for b in blocks if b['id'] == 'pc.ram'][0]
        self.assertFalse(ram['ranges-truncated'])
        runs = ram['ranges']
        self.assertEqual(sum(r['size'] for r in runs), ram['size'])
        self.assertEqual([(r['offset'], r['size']) for r in runs
                          if r['private']],
                         [(base, size)] if private else [])
        self.assertEqual(ram['private'], size if private else 0)

    def secret_and_data_rules(self, discard):
        """
        The guest fills a range, makes it private, writes a secret there,
        makes it shared again. QEMU's view never holds a word of the
        secret, and reads zeros in both states. With split backing the
        secret can reach QEMU's view only if KVM still treats the range
        as shared.

        Fails if the product (each run once, 2026-12-04): leaves KVM's
        attribute shared on a conversion to private (the secret check,
        at phase=private); does not free the stale shared copy when a
        range goes private (the zeros check, at phase=private).
        """
        log = self.boot('convert_secret checkpoints=1', discard=discard)
        for phase in ('private', 'shared'):
            fields = self.checkpoint(log, 'convert_secret')
            self.assertEqual(fields['phase'], phase)
            base, size = int(fields['base'], 0), int(fields['size'], 0)
            self.assertEqual(count_secret_words(self.vm, self.workdir,
                                                base, size), 0)
            self.check_listed_ranges(base, size, phase == 'private')
            # Data rule: QEMU's mapping of a range the guest made private
            # reads zeros (the shared side was discarded), and still does
            # after the guest shares it again (the private side is dropped);
            # with async discard, once the worker has caught up.
            self.wait_backlog_drained()
            data = read_words(self.vm, self.workdir, base, size)
            self.assertFalse(data.any(), 'QEMU sees non-zero data in %s '
                             'range 0x%x' % (phase, base))
            self.vm.cmd('inject-nmi')
        self.finish(log)
        self.assertEqual(log.results()['convert_secret'], ('PASS', ''))
        self.assertEqual(log.info('convert_secret'), [
            'private view after conversion: zeros',
            'shared view after converting back: zeros'])

    def test_secret_never_visible_to_qemu(self):
        self.secret_and_data_rules('sync')

    def test_async_discard_secret_and_data_rules(self):
        self.secret_and_data_rules('async')

    def test_async_discard_under_load(self):
        # Round trips check each state's data right after converting, and
        # vCPUs race on one range: a late discard would show as lost data
        # or a failed request.
        log = self.boot('convert_roundtrip_4k,convert_roundtrip_2m,'
                        'convert_smp,convert_race,hold cpus=%d rounds=16 '
                        'checkpoints=1' % RIG_VCPUS, smp=RIG_VCPUS,
                        discard='async')
        self.checkpoint(log, 'hold')
        self.wait_backlog_drained()
        stats = self.vm.cmd('query-guest-memfd')
        self.vm.cmd('inject-nmi')
        self.finish(log)
        for test in ('convert_roundtrip_4k', 'convert_roundtrip_2m',
                     'convert_smp', 'convert_race'):
            self.assertEqual(log.results()[test], ('PASS', ''), test)
        self.assertEqual(stats['discard'], 'async')
        self.assertEqual(sum(stats['rejected'].values()), 0)

    def test_roundtrips(self):
        log = self.boot('convert_roundtrip_4k,convert_roundtrip_2m,hold '
                        'rounds=8 checkpoints=1')
        self.checkpoint(log, 'hold')
        stats = self.vm.cmd('query-guest-memfd')
        self.vm.cmd('inject-nmi')
        self.finish(log)
        self.assertEqual(log.results(), {
            'convert_roundtrip_4k': ('PASS', ''),
            'convert_roundtrip_2m': ('PASS', ''),
            'hold': ('PASS', '')})
        ram = [b for b in stats['blocks'] if b['id'] == 'pc.ram'][0]
        self.assertEqual(ram['conversions-to-private'], 16)
        self.assertEqual(ram['conversions-to-shared'], 16)
        self.assertEqual(ram['bytes-to-private'], 8 * (4096 + 2 * 1024 * 1024))
        self.assertEqual(ram['bytes-to-shared'], ram['bytes-to-private'])
        self.assertEqual(ram['private'], 0)
        self.assertEqual(ram['shared'], ram['size'])
        self.assertEqual(stats['requests'], 32)
        self.assertEqual(sum(stats['rejected'].values()), 0)

    def test_record_matches_kvm_after_random_conversions(self):
        # The sweep: after random conversions the guest writes a word in
        # every page; QEMU's mapping shows it on exactly the pages KVM
        # treats as shared, which must be the pages the record calls
        # shared (and the guest's own count of private pages must agree).
        log = self.boot('convert_sweep,hold rounds=400 checkpoints=1')
        self.checkpoint(log, 'convert_sweep')
        info = parse_fields(log.info('convert_sweep')[0])
        base, size = int(info['gpa'], 0), int(info['size'], 0)
        words = read_words(self.vm, self.workdir, base, size)
        kvm_shared = [int(words[p * 512]) == secret_word(base + p * 4096)
                      for p in range(size // 4096)]
        ram = [b for b in self.vm.cmd('query-guest-memfd', ranges=True)
               ['blocks'] if b['id'] == 'pc.ram'][0]
        self.assertFalse(ram['ranges-truncated'])
        record_shared = []
        for p in range(size // 4096):
            gpa = base + p * 4096       # pc.ram maps GPA 0 at offset 0
            run = [r for r in ram['ranges']
                   if r['offset'] <= gpa < r['offset'] + r['size']][0]
            record_shared.append(not run['private'])
        self.assertEqual(kvm_shared, record_shared)
        private = int(info['private'])
        self.assertEqual(record_shared.count(False), private)
        self.assertTrue(0 < private < size // 4096, private)
        self.vm.cmd('inject-nmi')
        self.checkpoint(log, 'hold')
        self.vm.cmd('inject-nmi')
        self.finish(log)
        self.assertEqual(log.results()['convert_sweep'], ('PASS', ''))

    def test_vcpus_race_on_one_range(self):
        log = self.boot('convert_race,hold cpus=%d rounds=64 checkpoints=1'
                        % RIG_VCPUS, smp=RIG_VCPUS)
        self.checkpoint(log, 'hold')
        ram = self.pc_ram()
        stats = self.vm.cmd('query-guest-memfd')
        self.vm.cmd('inject-nmi')
        self.finish(log)
        self.assertEqual(log.results()['convert_race'], ('PASS', ''))
        # Every request was valid; the last one left the range shared.
        self.assertEqual(sum(stats['rejected'].values()), 0)
        self.assertEqual(stats['requests'], RIG_VCPUS * 64 + 1)
        self.assertEqual(ram['private'], 0)

    def test_range_spanning_two_ramblocks(self):
        # Two NUMA nodes, two RAMBlocks, adjacent in guest physical memory.
        numa = ['-object', 'memory-backend-ram,id=m0,size=64M',
                '-object', 'memory-backend-ram,id=m1,size=64M',
                '-numa', 'node,memdev=m0', '-numa', 'node,memdev=m1']
        # The secret check fails if a conversion to private leaves KVM's
        # attribute shared (run once, 2026-12-04).
        boundary = 64 << 20
        log = self.boot('convert_range,hold checkpoints=1 gpa=0x%x size=0x4000'
                        % (boundary - 0x2000), extra=numa)
        self.checkpoint(log, 'hold')
        blocks = {b['id']: b for b in
                  self.vm.cmd('query-guest-memfd')['blocks']}
        self.assertEqual(blocks['m0']['private'], 0x2000)
        self.assertEqual(blocks['m1']['private'], 0x2000)
        self.assertEqual(count_secret_words(self.vm, self.workdir,
                                            boundary - 0x2000, 0x4000), 0)
        self.vm.cmd('inject-nmi')
        self.finish(log)
        self.assertEqual(log.results()['convert_range'], ('PASS', ''))

    def test_qmp_convert(self):
        log = self.boot('hold checkpoints=1')
        self.checkpoint(log, 'hold')
        self.vm.cmd('guest-memfd-convert', gpa=4 << 20, size=2 << 20,
                    private=True)
        self.assertEqual(self.pc_ram()['private'], 2 << 20)
        self.vm.cmd('guest-memfd-convert', gpa=5 << 20, size=4096,
                    private=False)
        self.assertEqual(self.pc_ram()['private'], (2 << 20) - 4096)
        resp = self.vm.qmp('guest-memfd-convert', gpa=0xfec00000,
                           size=4096, private=True)
        self.assertEqual(resp['error']['desc'], 'cannot make 0xfec00000 '
                         '+0x1000 private: not-guest-memfd')
        resp = self.vm.qmp('guest-memfd-convert', gpa=4096 + 1, size=4096,
                           private=True)
        self.assertIn('unaligned', resp['error']['desc'])
        self.vm.cmd('inject-nmi')
        self.finish(log)

    def vcpus_convert_disjoint_ranges(self, cpus, conversion):
        # The guest checks its data; the sweep checks that the record
        # (upstream's too, on the legacy path) ends equal to KVM's view.
        log = self.boot('smp_online,convert_smp,sweep_mark cpus=%d '
                        'rounds=16 checkpoints=1' % cpus, smp=cpus,
                        conversion=conversion)
        self.assertEqual(self.sweep(log), 0)
        stats = self.vm.cmd('query-guest-memfd')
        self.vm.cmd('inject-nmi')
        self.finish(log)
        self.assertEqual(log.results(), {'smp_online': ('PASS', ''),
                                         'convert_smp': ('PASS', ''),
                                         'sweep_mark': ('PASS', '')})
        return stats

    def test_vcpus_convert_disjoint_ranges(self):
        # Each vCPU made 16 requests each way; the manager saw all of them.
        stats = self.vcpus_convert_disjoint_ranges(RIG_VCPUS, 'manager')
        ram = [b for b in stats['blocks'] if b['id'] == 'pc.ram'][0]
        self.assertEqual(stats['requests'], 32 * RIG_VCPUS)
        self.assertEqual(sum(stats['rejected'].values()), 0)
        self.assertEqual(ram['conversions-to-private'], 16 * RIG_VCPUS)
        self.assertEqual(ram['conversions-to-shared'], 16 * RIG_VCPUS)
        self.assertEqual(ram['private'], 0)

    def test_two_vcpus_legacy_baseline(self):
        # Upstream's path converts too, and keeps its record (the same
        # RamBlockAttributes bitmap) equal to KVM: the sweep says so.
        self.vcpus_convert_disjoint_ranges(2, 'legacy')


if __name__ == '__main__':
    QemuSystemTest.main()
