#!/usr/bin/env python3
#
# memory-backend-guest-memfd on this box's KVM: guest RAM is one guest_memfd,
# mmap'ed by QEMU and bound to the guest's memslots on the same fd.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import re
import subprocess

from qemu_test import QemuSystemTest
from qemu_test.gmem_guest import (GmemGuestTest, check_pattern, parse_fields,
                                  parse_ranges)

MiB = 1 << 20


def process_memory(pid):
    """(anonymous resident bytes, resident bytes of guest_memfd mappings)"""
    with open('/proc/%d/status' % pid) as f:
        anon = int(re.search(r'^RssAnon:\s+(\d+) kB', f.read(), re.M)[1])
    gmem = 0
    with open('/proc/%d/smaps' % pid) as f:
        in_gmem = False
        for line in f:
            if re.match(r'^[0-9a-f]+-[0-9a-f]+ ', line):
                in_gmem = 'kvm-gmem' in line
            elif in_gmem and line.startswith('Rss:'):
                gmem += int(line.split()[1])
    return anon * 1024, gmem * 1024


class GuestMemfdInPlace(GmemGuestTest):

    def setUp(self):
        super().setUp()
        self.require_accelerator('kvm')

    def touch_all_ram(self, backend_args, mem_mib=256):
        """
        Boot, let the guest write one word in every page of its free RAM,
        check those words from QEMU's side; return the QEMU process's
        (anonymous, guest_memfd) resident bytes at that point.
        """
        self.trace_log = os.path.join(self.workdir, 'trace.log')
        log = self.launch_guest('ram_pattern checkpoints=1 stride=4096',
                                '-accel', 'kvm', '-m', '%dM' % mem_mib,
                                '-trace', 'kvm_set_user_memory',
                                '-D', self.trace_log, *backend_args)
        line = log.wait_for('gmem-checkpoint: ram_pattern:', self.vm,
                            self.timeout)
        memory = process_memory(self.vm.get_pid())
        fields = parse_fields(line.split(': ', 2)[2])
        checked, bad, first = check_pattern(
            self.vm, self.workdir, int(fields['seed'], 0),
            parse_ranges(fields['ranges']), 4096)
        self.assertEqual(bad, 0, 'first bad word at %s' % first)
        self.assertGreater(checked, (mem_mib - 8) * MiB)
        self.vm.cmd('inject-nmi')
        self.finish(log)
        return memory

    def test_one_copy(self):
        anon, gmem = self.touch_all_ram([
            '-object', 'memory-backend-guest-memfd,id=m0,size=256M',
            '-machine', 'memory-backend=m0,smm=off'])
        # The guest's 256 MiB exist once, in the guest_memfd that QEMU
        # maps; QEMU's anonymous memory holds no copy of them.
        self.assertGreater(gmem, 240 * MiB)
        self.assertLess(anon, 64 * MiB)
        # The guest's RAM slots are guest_memfd slots (KVM_MEM_GUEST_MEMFD).
        with open(self.trace_log) as f:
            slots = re.findall(r'flags=0x(\w+) gpa=0x(\w+) size=0x(\w+) '
                               r'ua=0x\w+ guest_memfd=(-?\d+)', f.read())
        ram = [s for s in slots if int(s[2], 16) >= 64 * MiB]
        self.assertTrue(ram, 'no RAM memslot in the trace')
        for flags, gpa, size, fd in ram:
            self.assertTrue(int(flags, 16) & 4, 'slot at 0x%s' % gpa)
            self.assertGreaterEqual(int(fd), 0)

    def test_plain_ram_baseline(self):
        # The same guest on ordinary RAM: the copy is anonymous memory.
        anon, gmem = self.touch_all_ram([])
        self.assertEqual(gmem, 0)
        self.assertGreater(anon, 240 * MiB)

    def balloon(self, backend_args, mem_mib=256, balloon_mib=64):
        """
        Boot the guest with a legacy virtio-balloon, let it tag every
        page, take @balloon_mib back through the balloon; return the
        (anonymous, guest_memfd) resident bytes before and after.
        """
        log = self.launch_guest('balloon checkpoints=1',
                                '-accel', 'kvm', '-m', '%dM' % mem_mib,
                                '-device', 'virtio-balloon-pci,'
                                'disable-legacy=off,disable-modern=on',
                                *backend_args)
        log.expect('gmem-checkpoint: balloon: touched', self.vm, self.timeout)
        before = process_memory(self.vm.get_pid())
        self.vm.cmd('balloon', value=(mem_mib - balloon_mib) * MiB)
        self.vm.cmd('inject-nmi')
        line = log.expect('gmem-checkpoint: balloon: inflated', self.vm,
                          self.timeout)
        after = process_memory(self.vm.get_pid())
        fields = parse_fields(line.split(': ', 2)[2])
        self.assertEqual(int(fields['pages']), balloon_mib * MiB // 4096)
        self.assertEqual(int(fields['kept_bad']), 0)
        self.assertEqual(self.vm.cmd('query-balloon')['actual'],
                         (mem_mib - balloon_mib) * MiB)
        self.vm.cmd('inject-nmi')
        self.finish(log)
        self.log.info('balloon %d MiB: anon %d -> %d MiB, guest_memfd %d -> '
                      '%d MiB', balloon_mib, before[0] // MiB,
                      after[0] // MiB, before[1] // MiB, after[1] // MiB)
        return before, after

    def test_balloon_frees_guest_memfd(self):
        # Inflating punches the pages out of the guest_memfd: the mapping's
        # resident memory drops by what the guest gave back.
        before, after = self.balloon([
            '-object', 'memory-backend-guest-memfd,id=m0,size=256M',
            '-machine', 'memory-backend=m0,smm=off'])
        self.assertGreater(before[1], 240 * MiB)
        self.assertGreaterEqual(before[1] - after[1], 60 * MiB)
        self.assertLess(after[0], 64 * MiB)

    def qemu_error(self, *args):
        proc = subprocess.run([self.qemu_bin, '-M', 'q35', '-nodefaults',
                               '-display', 'none', '-m', '64M', *args],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        return proc.stderr

    def test_share_off_is_refused(self):
        err = self.qemu_error('-accel', 'kvm', '-object',
                              'memory-backend-guest-memfd,id=m0,size=64M,'
                              'share=off', '-machine',
                              'memory-backend=m0,smm=off')
        self.assertIn('memory-backend-guest-memfd is always shared', err)

    def test_needs_kvm(self):
        err = self.qemu_error('-accel', 'tcg', '-object',
                              'memory-backend-guest-memfd,id=m0,size=64M',
                              '-machine', 'memory-backend=m0,smm=off')
        self.assertIn('in-place guest_memfd needs -accel kvm', err)


if __name__ == '__main__':
    QemuSystemTest.main()
