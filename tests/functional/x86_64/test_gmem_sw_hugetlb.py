#!/usr/bin/env python3
#
# sw-protected-vm in the nested rig: a shared side of hugetlb pages, and
# QEMU's own reads of private memory.
#
# One of the test_gmem_sw_*.py files, split by subject (issue 28); they
# share qemu_test/gmem_sw_protected.py, and run_gmem_sw_protected.py runs
# them all in one L1 boot of the rig tier (test_gmem_rig.py).
#
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import struct
import time

from qemu_test import QemuSystemTest
from qemu_test.gmem_guest import (count_secret_words, meminfo, read_words,
                                  set_hugetlb_pool, sw_protected_vm_args)
from qemu_test.gmem_sw_protected import (RigGuestTest, legacy_blk_args,
                                         pattern_file_args)


def hugetlb_pool():
    """L1's pool of 2 MiB pages: (free, reserved) from /proc/meminfo."""
    fields = meminfo()
    return fields['HugePages_Free'], fields['HugePages_Rsvd']


def elf_range(elf, gpa, size):
    """
    The bytes an ELF core dump (dump-guest-memory, paging=false) has of
    guest physical [gpa, gpa + size), zeros where it has none, and how
    many it has. A guest_memfd block's private ranges are not in it: the
    dump takes the populated (shared) parts of a RamDiscardManager's
    memory only.
    """
    if elf[4] == 2:     # ELFCLASS64
        phoff, = struct.unpack_from('<Q', elf, 0x20)
        phentsize, phnum = struct.unpack_from('<HH', elf, 0x36)
        phdr = '<I4xQ8xQQ'
    else:
        phoff, = struct.unpack_from('<I', elf, 0x1c)
        phentsize, phnum = struct.unpack_from('<HH', elf, 0x2a)
        phdr = '<II4xII'
    out, covered = bytearray(size), 0
    for i in range(phnum):
        kind, off, paddr, filesz = struct.unpack_from(
            phdr, elf, phoff + i * phentsize)
        lo, hi = max(paddr, gpa), min(paddr + filesz, gpa + size)
        if kind == 1 and lo < hi:       # PT_LOAD
            out[lo - gpa:hi - gpa] = elf[off + lo - paddr:off + hi - paddr]
            covered += hi - lo
    return bytes(out), covered


class HugetlbSharedSide(RigGuestTest):
    """
    A sw-protected-vm guest whose RAM's shared side is of 2 MiB huge
    pages (memory-backend-memfd,hugetlb=on), watched through L1's pool:
    the huge pages the guest makes private go back to it, a huge page
    private in part is kept, and sharing with the pool empty is refused
    with EAGAIN, not a SIGBUS. QEMU 10.2.2 (and
    guest-memfd-hugetlb-discard=off) keep every huge page.
    """

    POOL = 96           # 192 MiB for a 128 MiB guest

    def setUp(self):
        super().setUp()
        if not os.path.exists('/proc/sys/vm/nr_hugepages'):
            self.skipTest('no hugetlbfs here')
        set_hugetlb_pool(self.POOL)
        if hugetlb_pool()[0] < 64:
            self.skipTest('L1 cannot reserve 64 huge pages')

    def tearDown(self):
        super().tearDown()
        set_hugetlb_pool(0)

    def boot_huge(self, command_line, accel='', extra=()):
        return self.launch_guest(
            command_line, '-accel', 'kvm' + accel, '-m', '128M',
            '-object', 'memory-backend-memfd,id=ram0,size=128M,hugetlb=on,'
            'hugetlbsize=2M', '-machine', 'memory-backend=ram0', *extra,
            *sw_protected_vm_args())

    def pool_at(self, log, phase):
        """
        At the guest's checkpoint @phase, once discard=async's worker has
        caught up: (its fields, free pages).
        """
        fields = self.checkpoint(log, 'huge_accept')
        self.assertEqual(fields['phase'], phase)
        self.wait_backlog_drained(30)
        return fields, hugetlb_pool()[0]

    def accept_and_watch(self, accel, drain=False, keep=False):
        """
        The guest's huge_accept, with the pool's free pages read at each
        checkpoint. Returns ({phase: free pages}, the accepted bytes, the
        guest's page, the checkpoint fields of the drain phases).
        """
        log = self.boot_huge('huge_accept checkpoints=1 drain=%d keep=%d'
                             % (drain, keep), accel)
        free, seen = {}, {}
        for phase in ('touched', 'accepted', 'shared_again', 'partial',
                      'whole'):
            seen[phase], free[phase] = self.pool_at(log, phase)
            self.vm.cmd('inject-nmi')
        accepted = int(seen['accepted']['accepted'])
        page = int(seen['accepted']['page'], 0)
        # One run of huge pages, [page, page + accepted).
        self.assertEqual(int(seen['accepted']['end'], 0), page + accepted)
        if drain:
            self.pool_at(log, 'drain')
            set_hugetlb_pool(0)
            free['drained'] = hugetlb_pool()[0] - hugetlb_pool()[1]
            self.vm.cmd('inject-nmi')
            seen['refused'], _ = self.pool_at(log, 'refused')
            seen['refused']['status'] = self.vm.cmd('query-status')['status']
            seen['refused']['stats'] = self.vm.cmd('query-guest-memfd')
            set_hugetlb_pool(self.POOL)
            self.vm.cmd('inject-nmi')
            self.pool_at(log, 'retried')
            # QEMU's side of the huge pages still private: no secret,
            # zeros (a read faults fresh huge pages in: the pool counts
            # are done). The first and the last are shared now. If a
            # conversion to private left KVM's attribute shared, the
            # guest's own check fails first (run once, 2026-12-04).
            private = (page + (2 << 20), accepted - 2 * (2 << 20))
            seen['qemu_side'] = [
                count_secret_words(self.vm, self.workdir, *private),
                int(read_words(self.vm, self.workdir, *private).any())]
            self.vm.cmd('inject-nmi')
        self.finish(log)
        self.assertEqual(log.results()['huge_accept'], ('PASS', ''))
        self.log.info('hugetlb (%s): pool %s, accepted %d', accel or 'on',
                      free, accepted)
        return free, accepted, page, seen

    def test_private_huge_pages_go_back_to_the_pool(self):
        self.pool_rules(*self.accept_and_watch('', drain=True))

    def test_private_huge_pages_go_back_async(self):
        # The worker frees them: the same rules once it has caught up.
        self.pool_rules(*self.accept_and_watch(',guest-memfd-discard=async',
                                               drain=True))

    def pool_rules(self, free, accepted, _page, seen):
        self.assertGreaterEqual(accepted, 64 << 20)
        # Every accepted huge page went back; the one shared again came
        # back from the pool, and went back only with its last 4 KiB.
        self.assertEqual(free['accepted'] - free['touched'],
                         accepted // (2 << 20))
        self.assertEqual(free['accepted'] - free['shared_again'], 1)
        self.assertEqual(free['partial'], free['shared_again'])
        self.assertEqual(free['whole'], free['accepted'])
        # The pool empty: the guest is told to try again (EAGAIN), the
        # page stays private with its data, QEMU runs on.
        refused = seen['refused']
        self.assertEqual(free['drained'], 0)
        self.assertEqual((refused['ret'], refused['intact'],
                          refused['status']), ('11', '512', 'running'))
        self.assertEqual(refused['stats']['rejected']['no-memory'], 1)
        self.assertEqual(refused['stats']['hugetlb-populate-failures'], 1)
        # The accepted pages, the page once whole again, and once more
        # after the refused share (given back, whether or not allocated).
        self.assertEqual(refused['stats']['hugetlb-freed'],
                         accepted + 2 * (2 << 20))
        self.assertEqual(seen['qemu_side'], [0, 0])

    def test_private_huge_pages_kept_when_off(self):
        # Every huge page stays, and a page shared again shows what it
        # held while shared before (the guest checks): stale, not secret.
        free, accepted, _, _ = self.accept_and_watch(
            ',guest-memfd-hugetlb-discard=off', keep=True)
        self.assertGreaterEqual(accepted, 64 << 20)
        self.assertEqual(len(set(free.values())), 1, free)

    def test_private_huge_pages_kept_legacy_baseline(self):
        free, accepted, _, _ = self.accept_and_watch(
            ',guest-memfd-conversion=legacy', keep=True)
        self.assertGreaterEqual(accepted, 64 << 20)
        self.assertEqual(len(set(free.values())), 1, free)

    def qemu_ended(self, doing, e):
        """Fail with QEMU's exit status (a SIGBUS is -7) and @e."""
        for _ in range(50):
            if self.vm.exitcode() is not None:
                break
            time.sleep(0.1)
        self.fail('QEMU ended (exit status %s) %s: %r' %
                  (self.vm.exitcode(), doing, e))

    def dumped(self, gpa, size, fmt):
        """
        dump-guest-memory in @fmt; for ELF, what the dump has of guest
        physical [gpa, gpa + size), zeros where it has nothing.
        """
        path = os.path.join(self.workdir, 'dump.' + fmt)
        self.vm.cmd('dump-guest-memory', paging=False, format=fmt,
                    protocol='file:' + path)
        if fmt != 'elf':
            return None
        with open(path, 'rb') as f:
            elf = f.read()
        os.unlink(path)
        return elf_range(elf, gpa, size)[0]

    def own_reads(self, private, dump=True):
        """
        pmemsave, HMP xp and with @dump dump-guest-memory (ELF and kdump)
        of @private (gpa, size) as QEMU sees them: (the words, xp's words,
        the ELF dump's bytes, zeros where it has none). Fails, with
        QEMU's exit status, if QEMU ended doing it (a SIGBUS is -7).
        """
        try:
            data = read_words(self.vm, self.workdir, *private)
            xp = self.vm.cmd('human-monitor-command',
                             command_line='xp /8gx 0x%x' % private[0])
            if dump:
                self.dumped(*private, 'kdump-zlib')
                dump = self.dumped(*private, 'elf')
        except Exception as e:      # the monitor's connection is gone
            self.qemu_ended('reading private memory', e)
        words = [int(w, 16) for line in xp.splitlines() if ':' in line
                 for w in line.split(':', 1)[1].split()]
        return data, words, dump

    def test_own_reads_of_freed_huge_pages(self):
        """
        Issue 24, defect 10: with the private huge pages given back and
        the pool empty, QEMU's own reads of the private range (pmemsave,
        HMP xp) give zeros and QEMU runs on; they used to fault the freed
        huge pages back in, and with none to give QEMU died of SIGBUS
        (exit status -7, run once with 10.2.2 + patches 0001-0017,
        2026-12-04). Nothing is taken from the pool either.
        """
        log = self.boot_huge('huge_accept checkpoints=1 drain=1 keep=0')
        for phase in ('touched', 'accepted', 'shared_again', 'partial',
                      'whole', 'drain'):
            fields, _ = self.pool_at(log, phase)
            if phase == 'accepted':
                accepted = int(fields['accepted'])
                page = int(fields['page'], 0)
            if phase != 'drain':
                self.vm.cmd('inject-nmi')
        set_hugetlb_pool(0)
        self.vm.cmd('inject-nmi')
        self.pool_at(log, 'refused')
        self.assertEqual(hugetlb_pool()[0] - hugetlb_pool()[1], 0)
        private = (page + (2 << 20), accepted - 2 * (2 << 20))
        data, xp, dump = self.own_reads(private)
        self.assertEqual(len(data) * 8, private[1])
        self.assertFalse(data.any(), 'private huge pages read non-zero')
        self.assertEqual(xp, [0] * 8)
        self.assertEqual(dump.count(0), private[1], 'dumped non-zero')
        self.assertEqual(self.vm.cmd('query-status')['status'], 'running')
        self.assertEqual(hugetlb_pool()[0] - hugetlb_pool()[1], 0)
        set_hugetlb_pool(self.POOL)
        self.vm.cmd('inject-nmi')
        self.pool_at(log, 'retried')
        self.vm.cmd('inject-nmi')
        self.finish(log)
        self.assertEqual(log.results()['huge_accept'], ('PASS', ''))

    def test_own_reads_of_private_memory_allocate_nothing(self):
        """
        Issue 24, defect 10, on ordinary (memfd, not hugetlb) backing:
        pmemsave of 32 MiB the guest made private reads zeros and does not
        fault the discarded shared side back in: QEMU's RssShmem grows by
        less than 4 MiB. Before the fix it grew by the whole range (run
        once with 10.2.2 + patches 0001-0017, 2026-12-04).
        """
        size = 32 << 20
        log = self.launch_guest(
            'convert_secret checkpoints=1 size=%d' % size, '-accel', 'kvm',
            '-m', '128M', '-object',
            'memory-backend-memfd,id=ram0,size=128M',
            '-machine', 'memory-backend=ram0', *sw_protected_vm_args())
        fields = self.checkpoint(log, 'convert_secret')
        self.assertEqual(fields['phase'], 'private')
        private = (int(fields['base'], 0), int(fields['size'], 0))
        self.assertEqual(private[1], size)
        self.wait_backlog_drained()

        def rss_shmem():
            with open('/proc/%d/status' % self.vm.get_pid()) as f:
                return [int(line.split()[1]) << 10 for line in f
                        if line.startswith('RssShmem:')][0]

        before = rss_shmem()
        data, xp, _ = self.own_reads(private, dump=False)
        grown = rss_shmem() - before
        # After the count: a dump reads the shared pages, faulting them in.
        dump = self.own_reads(private)[2]
        self.log.info('RssShmem grew by %d bytes reading %d private',
                      grown, size)
        self.assertFalse(data.any())
        self.assertEqual(xp, [0] * 8)
        self.assertEqual(dump.count(0), size, 'dumped non-zero')
        self.assertLess(grown, 4 << 20)
        self.vm.cmd('inject-nmi')
        self.checkpoint(log, 'convert_secret')
        self.vm.cmd('inject-nmi')
        self.finish(log)
        self.assertEqual(log.results()['convert_secret'], ('PASS', ''))

    def test_dump_beside_a_conversion(self):
        """
        Issue 24, defect 10: a detached dump-guest-memory that the host's
        guest-memfd-convert overtakes. The dump lists the shared ranges
        when it starts; 16 MiB of them then go private (their huge pages
        back to the pool) and the pool is emptied while the dump is
        blocked writing to a pipe. Once let on, it writes zeros for those
        pages and completes. Before the fix it wrote them from the host
        mapping: with the pool empty the kernel could not fault the freed
        huge pages in for write() and the dump failed (run 2026-12-05,
        10.2.2 + patches 0001-0019); had the pool had pages, it would have
        taken them.
        """
        log = self.boot_huge('huge_accept checkpoints=1')
        self.assertEqual(self.checkpoint(log, 'huge_accept')['phase'],
                         'touched')
        fifo = os.path.join(self.workdir, 'dump.fifo')
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.vm.cmd('dump-guest-memory', paging=False, detach=True,
                    protocol='file:' + fifo)
        os.set_blocking(reader, True)
        elf = bytearray(os.read(reader, 1 << 20))
        gpa, size = 0x6000000, 16 << 20
        self.vm.cmd('guest-memfd-convert', gpa=gpa, size=size, private=True)
        self.wait_backlog_drained(30)
        set_hugetlb_pool(0)
        self.assertEqual(hugetlb_pool()[0] - hugetlb_pool()[1], 0)
        try:
            while True:
                chunk = os.read(reader, 1 << 20)
                if not chunk:
                    break
                elf += chunk
            self.assertEqual(self.vm.cmd('query-dump')['status'],
                             'completed')
        except Exception as e:
            self.qemu_ended('dumping memory made private meanwhile', e)
        os.close(reader)
        data, covered = elf_range(bytes(elf), gpa, size)
        self.assertEqual(covered, size, 'the range was private at the start')
        self.assertEqual(data.count(0), size, 'dumped non-zero')
        for _ in range(50):         # the dump's end resumes the VM
            if self.vm.cmd('query-status')['status'] == 'running':
                break
            time.sleep(0.1)
        self.assertEqual(self.vm.cmd('query-status')['status'], 'running')
        set_hugetlb_pool(self.POOL)
        self.vm.shutdown()

    def test_virtio_ring_in_freed_huge_pages(self):
        """
        Issue 24, defect 10: a virtio-blk queue whose rings the guest made
        private (their huge page back in the pool), kicked with the pool
        empty. QEMU reads the private rings as zeros: the device sees no
        request (it calls the queue broken), QEMU runs on, and once the
        rings are shared again a reset device reads. Before the fix QEMU
        read the rings through its host mapping (the MemoryRegionCache
        pointer virtio keeps) and died of SIGBUS at the kick.
        """
        disk = pattern_file_args(os.path.join(self.workdir, 'disk.img'),
                                 0x5a, 'disk')
        log = self.boot_huge('huge_ring checkpoints=1',
                             extra=(*disk, *legacy_blk_args('disk')))
        fields = self.checkpoint(log, 'huge_ring')
        self.assertEqual(fields['phase'], 'private')
        self.wait_backlog_drained(30)
        set_hugetlb_pool(0)
        self.assertEqual(hugetlb_pool()[0] - hugetlb_pool()[1], 0)
        self.vm.cmd('inject-nmi')
        try:
            fields = self.checkpoint(log, 'huge_ring')
        except AssertionError as e:
            self.qemu_ended('at the kick of private rings', e)
        self.assertEqual(fields, {'phase': 'kicked', 'completed': '0'})
        self.assertEqual(self.vm.cmd('query-status')['status'], 'running')
        self.assertEqual(hugetlb_pool()[0] - hugetlb_pool()[1], 0)
        set_hugetlb_pool(self.POOL)
        self.vm.cmd('inject-nmi')
        self.finish(log)
        self.assertEqual(log.results()['huge_ring'], ('PASS', ''))


if __name__ == '__main__':
    QemuSystemTest.main()
