#!/usr/bin/env python3
#
# memory-backend-guest-memfd: guest RAM is one guest_memfd, mmap'ed by QEMU
# and bound to the guest's memslots on the same fd. Runs on the host's KVM
# where it has guest_memfd, and always in the nested rig (test_gmem_rig.py).
#
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import re
import subprocess

from qemu_test import QemuSystemTest
from qemu_test.gmem_guest import (GmemGuestTest, check_pattern,
                                  kvm_in_place_guest_memfd, parse_fields,
                                  parse_ranges)

MiB = 1 << 20

# The tests that ask nothing of KVM's guest_memfd: they run on any KVM.
WITHOUT_GUEST_MEMFD = ('test_plain_ram_baseline', 'test_share_off_is_refused',
                       'test_needs_kvm')


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
        # The host's /dev/kvm varies between machines; the rig tier runs
        # this file in L1, whose KVM has it, and may not skip
        # (tests/allowed-skips allows this skip on the host only).
        if (self._testMethodName not in WITHOUT_GUEST_MEMFD and
                not kvm_in_place_guest_memfd()):
            self.skipTest('host KVM has no in-place guest_memfd (a type-0 VM '
                          'without GUEST_MEMFD_FLAG_MMAP|INIT_SHARED)')

    def memslots(self):
        """(flags, gpa, size, guest_memfd) of every memslot update traced."""
        with open(self.trace_log) as f:
            slots = re.findall(r'flags=0x(\w+) gpa=0x(\w+) size=0x(\w+) '
                               r'ua=0x\w+ guest_memfd=(-?\d+)', f.read())
        return [(int(flags, 16), int(gpa, 16), int(size, 16), int(fd))
                for flags, gpa, size, fd in slots]

    def touch_all_ram(self, backend_args, mem_mib=256):
        """
        Boot, let the guest write one word in every page of its free RAM,
        check those words from QEMU's side; return the QEMU process's
        (anonymous, guest_memfd) resident bytes after that check.

        Measured after QEMU has read every page: where KVM maps a
        guest_memfd page for the guest without QEMU's page tables (Linux
        7.2 does), only QEMU's own reads make it resident in QEMU's
        mapping, and those found the guest's words, so they read the one
        copy the guest wrote.
        """
        self.trace_log = os.path.join(self.workdir, 'trace.log')
        log = self.launch_guest('ram_pattern checkpoints=1 stride=4096',
                                '-accel', 'kvm', '-m', '%dM' % mem_mib,
                                '-trace', 'kvm_set_user_memory',
                                '-D', self.trace_log, *backend_args)
        line = log.wait_for('gmem-checkpoint: ram_pattern:', self.vm,
                            self.timeout)
        fields = parse_fields(line.split(': ', 2)[2])
        checked, bad, first = check_pattern(
            self.vm, self.workdir, int(fields['seed'], 0),
            parse_ranges(fields['ranges']), 4096)
        self.assertEqual(bad, 0, 'first bad word at %s' % first)
        self.assertGreater(checked, (mem_mib - 8) * MiB)
        memory = process_memory(self.vm.get_pid())
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
        ram = [s for s in self.memslots() if s[2] >= 64 * MiB]
        self.assertTrue(ram, 'no RAM memslot in the trace')
        for flags, gpa, size, fd in ram:
            self.assertTrue(flags & 4, 'slot at 0x%x' % gpa)
            self.assertGreaterEqual(fd, 0)

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
        # QEMU reads all of it first, as touch_all_ram() says why.
        path = os.path.join(self.workdir, 'ram.bin')
        self.vm.cmd('pmemsave', val=0, size=mem_mib * MiB, filename=path)
        os.unlink(path)
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

    def test_migration_is_refused(self):
        # KVM refuses to log dirty pages of guest_memfd memslots; QEMU
        # 10.2.2 aborts when migration turns dirty logging on (seen here:
        # KVM_SET_USER_MEMORY_REGION2 flags=0x5 -> EINVAL, then abort).
        # The backend blocks migration instead: the command fails with the
        # reason and the guest runs on with its data intact.
        log = self.launch_guest('ram_pattern checkpoints=1 stride=4096',
                                '-accel', 'kvm', '-m', '128M', '-object',
                                'memory-backend-guest-memfd,id=m0,size=128M',
                                '-machine', 'memory-backend=m0,smm=off')
        line = log.wait_for('gmem-checkpoint: ram_pattern:', self.vm,
                            self.timeout)
        resp = self.vm.qmp('migrate', uri='exec:cat > /dev/null')
        self.assertIn('cannot log dirty pages of guest_memfd memory',
                      resp['error']['desc'])
        self.assertEqual(self.vm.cmd('query-status')['status'], 'running')
        fields = parse_fields(line.split(': ', 2)[2])
        checked, bad, first = check_pattern(
            self.vm, self.workdir, int(fields['seed'], 0),
            parse_ranges(fields['ranges']), 4096)
        self.assertEqual(bad, 0, 'first bad word at %s' % first)
        self.vm.cmd('inject-nmi')
        self.finish(log)

    def test_only_migratable_refuses_backend(self):
        err = self.qemu_error('-accel', 'kvm', '-only-migratable', '-object',
                              'memory-backend-guest-memfd,id=m0,size=64M',
                              '-machine', 'memory-backend=m0,smm=off')
        self.assertIn('cannot be migrated', err)

    def guest_memfd_slots(self):
        """(gpa, size) of the KVM_MEM_GUEST_MEMFD memslots in the trace."""
        return {(gpa, size) for flags, gpa, size, fd in self.memslots()
                if flags & 4 and size}

    def test_numa_nodes_and_pc_dimm(self):
        # Two NUMA nodes and a cold-plugged pc-dimm, each on its own
        # guest_memfd backend: the guest's writes to node RAM and to the
        # DIMM (at the start of device memory, 4 GiB here) read back
        # through QEMU, and every one of them is a guest_memfd memslot.
        self.trace_log = os.path.join(self.workdir, 'trace.log')
        dimm = 0x100000000
        log = self.launch_guest(
            'ram_pattern,ram_fill checkpoints=1 stride=4096 gpa=0x%x '
            'size=0x%x' % (dimm, 64 * MiB),
            '-accel', 'kvm', '-m', '128M,slots=2,maxmem=1G',
            '-machine', 'smm=off',
            '-object', 'memory-backend-guest-memfd,id=n0,size=64M',
            '-object', 'memory-backend-guest-memfd,id=n1,size=64M',
            '-numa', 'node,nodeid=0,memdev=n0',
            '-numa', 'node,nodeid=1,memdev=n1',
            '-object', 'memory-backend-guest-memfd,id=d0,size=64M',
            '-device', 'pc-dimm,id=dimm0,memdev=d0,node=1',
            '-trace', 'kvm_set_user_memory', '-D', self.trace_log)
        for test in ('ram_pattern', 'ram_fill'):
            line = log.wait_for('gmem-checkpoint: %s:' % test, self.vm,
                                self.timeout)
            fields = parse_fields(line.split(': ', 2)[2])
            checked, bad, first = check_pattern(
                self.vm, self.workdir, int(fields['seed'], 0),
                parse_ranges(fields['ranges']), 4096)
            self.assertEqual(bad, 0, '%s: first bad word at %s' % (test, first))
            self.assertGreaterEqual(checked, 60 * MiB)
            self.vm.cmd('inject-nmi')
        self.finish(log)
        slots = self.guest_memfd_slots()
        self.assertIn((dimm, 64 * MiB), slots)
        # Node 0 is [0, 64 MiB), node 1 the next 64 MiB: both in slots.
        covered = sum(size for gpa, size in slots if gpa < dimm)
        self.assertGreaterEqual(covered, 127 * MiB)

    def test_prealloc_and_host_policy(self):
        # prealloc=on allocates the whole guest_memfd before the guest
        # runs; policy=bind,host-nodes=0 binds the mapping (guest_memfd
        # has NUMA mempolicy since Linux 6.18) and the pages land on node 0.
        self.vm.add_args('-accel', 'kvm', '-m', '128M', '-S',
                         '-object', 'memory-backend-guest-memfd,id=m0,'
                         'size=128M,prealloc=on,policy=bind,host-nodes=0',
                         '-machine', 'memory-backend=m0,smm=off',
                         '-nodefaults', '-display', 'none')
        self.vm.launch()
        anon, gmem = process_memory(self.vm.get_pid())
        self.assertEqual(gmem, 128 * MiB)
        with open('/proc/%d/numa_maps' % self.vm.get_pid()) as f:
            maps = [l for l in f if 'kvm-gmem' in l]
        self.assertEqual(len(maps), 1, maps)
        self.assertIn(' bind:0 ', maps[0])
        self.assertIn(' N0=%d ' % (128 * MiB // 4096), maps[0] + ' ')
        self.vm.shutdown()

    def test_no_prealloc_allocates_on_touch(self):
        # The baseline of the test above: without prealloc, a guest that
        # has not run has allocated next to nothing.
        self.vm.add_args('-accel', 'kvm', '-m', '128M', '-S',
                         '-object', 'memory-backend-guest-memfd,id=m0,'
                         'size=128M', '-machine', 'memory-backend=m0,smm=off',
                         '-nodefaults', '-display', 'none')
        self.vm.launch()
        anon, gmem = process_memory(self.vm.get_pid())
        self.assertLess(gmem, 8 * MiB)
        self.vm.shutdown()

    def qemu_error(self, *args):
        proc = subprocess.run([self.qemu_bin, '-M', 'q35', '-nodefaults',
                               '-display', 'none', '-m', '64M', *args],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        return proc.stderr

    def test_convert_has_no_private_side(self):
        # In-place RAM has no private side: the operator's conversions get
        # a defined answer, whatever the range (QEMU used to crash here).
        self.set_machine('q35')
        self.vm.add_args('-accel', 'kvm', '-S', '-display', 'none',
                         '-m', '128M', '-object',
                         'memory-backend-guest-memfd,id=m0,size=128M',
                         '-machine', 'memory-backend=m0,smm=off')
        self.vm.launch()
        to_private = [(4096, 8192, 'not-guest-memfd'),
                      (0, 128 * MiB, 'not-guest-memfd'),
                      (0xfee00000, 4096, 'not-guest-memfd'),      # MMIO
                      (0xfffff000, 4096, 'not-guest-memfd'),      # ROM
                      (0x100000000, 4096, 'not-guest-memfd'),     # no RAM
                      (0xfffffffffffff000, 8192, 'overflow'),
                      (4097, 4096, 'unaligned')]
        for gpa, size, why in to_private:
            r = self.vm.qmp('guest-memfd-convert', gpa=gpa, size=size,
                            private=True)
            self.assertIn(why, r['error']['desc'],
                          'private 0x%x +0x%x' % (gpa, size))
        # Making shared what is shared anyway is a no-op that succeeds.
        self.vm.cmd('guest-memfd-convert', gpa=4096, size=8192,
                    private=False)
        info = self.vm.cmd('query-guest-memfd', ranges=True)
        self.assertEqual(info['blocks'], [])
        self.assertEqual(info['rejected']['not-guest-memfd'], 5)
        self.vm.cmd('human-monitor-command', command_line='info guest-memfd')
        self.assertEqual(self.vm.cmd('query-status')['status'], 'prelaunch')
        self.vm.shutdown()

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
