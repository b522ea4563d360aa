# The base of the sw-protected-vm tests (tests/functional/x86_64/
# test_gmem_sw_*.py, one file for each subject; run_gmem_sw_protected.py
# runs them all in one L1 boot of the rig tier): sw-protected-vm on a KVM
# that offers KVM_X86_SW_PROTECTED_VM (the nested rig, tests/rig), where
# the test guest converts memory with KVM_HC_MAP_GPA_RANGE and QEMU's
# view of private memory is checked through QMP.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import time

from .gmem_guest import (KVM_X86_SW_PROTECTED_VM, GmemGuestTest,
                         kvm_vm_types, parse_fields, parse_ranges,
                         read_words, sw_protected_vm_args)


# vCPUs of the SMP conversion tests. With 4 L2 vCPUs on a 2-CPU L1, L1's
# rebuilt KVM was seen to fail under load (once an L2 QEMU died, once L1
# panicked: "corrupted stack end detected inside scheduler"); the rig's L1
# now has 4 CPUs (test_gmem_rig.py) and the storm runs 4 vCPUs on them,
# the other SMP tests keep 2.
RIG_VCPUS = 2
STORM_VCPUS = 4

# What a test that arms x-guest-memfd-inject-fault adds to -accel kvm
# (issue 24, defect 9: the command is refused without it).
FAULT_INJECTION = ',x-guest-memfd-fault-injection=on'


def legacy_blk_args(node):
    """
    A legacy virtio-blk device on the block node @node, for the test
    guest's driver. ioeventfd=off: the kick maps the buffer before it
    returns. iommu_platform=off: a confidential guest turns it on for
    virtio devices, and legacy virtio cannot have it.
    """
    return ['-device', 'virtio-blk-pci,drive=%s,disable-legacy=off,'
            'disable-modern=on,ioeventfd=off,iommu_platform=off' % node]


def pattern_file_args(path, byte, node):
    """A block node @node: a file of 1 MiB at @path of @byte everywhere."""
    with open(path, 'wb') as f:
        f.write(bytes([byte]) * 1048576)
    return ['-blockdev', 'driver=file,filename=%s,node-name=%s' % (path, node)]


def slow_disk_args(latency_ms):
    """
    A legacy virtio-blk disk that reads zeros and takes @latency_ms per
    request, so a read stays in flight. null-co writes the zeros when a
    request starts, then sleeps.
    """
    return ['-blockdev', 'null-co,node-name=slow,size=1048576,'
            'read-zeroes=on,latency-ns=%d' % (latency_ms * 1000000),
            *legacy_blk_args('slow')]


def sweep_word(gpa, n):
    """tests/guest/tests_ram.c: sweep_word(), of an int or a numpy array."""
    key = 0x5ec2e75ec2e75ec2 ^ ((n * 0x100000001b3) % (1 << 64))
    if isinstance(gpa, int):
        return gpa ^ key
    import numpy

    return gpa ^ numpy.uint64(key)


class RigGuestTest(GmemGuestTest):
    """A test of the guest on a KVM with KVM_X86_SW_PROTECTED_VM (the rig)."""

    timeout = 600

    def setUp(self):
        super().setUp()
        if not kvm_vm_types() & (1 << KVM_X86_SW_PROTECTED_VM):
            self.skipTest('KVM offers no KVM_X86_SW_PROTECTED_VM here '
                          '(run in the nested rig: make check-rig)')
        self.require_accelerator('kvm')

    def wait_backlog_drained(self, seconds=10):
        deadline = time.monotonic() + seconds
        while self.vm.cmd('query-guest-memfd')['discard-backlog']:
            self.assertLess(time.monotonic(), deadline,
                            'discard backlog not freed in %ds' % seconds)
            time.sleep(0.05)


class SwProtectedVmTest(RigGuestTest):
    """
    A sw-protected-vm guest, converting through the conversion manager or
    QEMU 10.2.2's own path, and the record-versus-KVM sweep: what the test
    classes of test_gmem_sw_*.py share.
    """

    def boot(self, command_line, mem='128M', smp=1, conversion='manager',
             reboot=False, extra=(), discard='sync', accel=''):
        return self.launch_guest(
            command_line, '-accel', 'kvm,guest-memfd-conversion=%s,'
            'guest-memfd-discard=%s%s' % (conversion, discard, accel),
            '-m', mem, '-smp', str(smp), *extra, *sw_protected_vm_args(),
            reboot=reboot)

    def sweep(self, log, private_reads_zero=True, blocks=('pc.ram',)):
        """
        The record-versus-KVM sweep, at the guest's sweep_mark checkpoint:
        the guest wrote a word in every free page, whatever its state;
        QEMU's mapping shows it on exactly the pages KVM treats as shared,
        which must be the pages the manager's record calls shared; and
        with @private_reads_zero, on a private page it shows zero (the
        shared copy was freed). Returns the number of free pages that are
        private; the guest stays halted at its checkpoint. @blocks: the
        RAMBlocks of the RAM below 4 GiB, in guest physical order from 0
        (NUMA nodes' memdevs), pc.ram unless the test made others.
        """
        import numpy

        fields = self.checkpoint(log, 'sweep_mark')
        n = int(fields['sweep'])
        listed = {b['id']: b for b in self.vm.cmd(
            'query-guest-memfd', ranges=True)['blocks']}
        parts = []
        for name in blocks:
            ram = listed[name]
            self.assertFalse(ram['ranges-truncated'])
            part = numpy.zeros(ram['size'] // 4096, dtype=bool)
            for r in ram['ranges']:
                if r['private']:
                    part[r['offset'] // 4096:
                         (r['offset'] + r['size']) // 4096] = True
            parts.append(part)
        record_private = numpy.concatenate(parts)
        private, pages, disagree = 0, 0, []
        chunk = 16 << 20
        for start, end in parse_ranges(fields['ranges']):
            start, end = -(-start // 4096) * 4096, end // 4096 * 4096
            # The blocks map guest physical 0 on, below 4 GiB.
            self.assertLessEqual(end, len(record_private) * 4096)
            for lo in range(start, end, chunk):
                hi = min(lo + chunk, end)
                firsts = read_words(self.vm, self.workdir, lo, hi - lo)[::512]
                gpas = numpy.arange(lo, hi, 4096, dtype=numpy.uint64)
                kvm_private = firsts != sweep_word(gpas, n)
                record = record_private[lo // 4096:hi // 4096]
                for i in numpy.nonzero(kvm_private != record)[0][:8]:
                    disagree.append('0x%x: KVM %s, record %s' % (
                        lo + int(i) * 4096,
                        'private' if kvm_private[i] else 'shared',
                        'private' if record[i] else 'shared'))
                if private_reads_zero:
                    for i in numpy.nonzero(record & (firsts != 0))[0][:8]:
                        disagree.append('0x%x: private, QEMU reads 0x%x' % (
                            lo + int(i) * 4096, int(firsts[i])))
                private += int(record.sum())
                pages += hi - lo >> 12
        self.assertEqual(pages, int(fields['pages']))
        self.assertEqual(disagree, [], 'the record and KVM disagree')
        return private

    def finish_after_sweep(self, log, test):
        """
        After sweep(): the guest goes on past its sweep_mark and its last
        hold checkpoint and exits; @test must have passed. Returns that
        test's info fields.
        """
        self.vm.cmd('inject-nmi')
        self.checkpoint(log, 'hold')
        self.vm.cmd('inject-nmi')
        self.finish(log)
        self.assertEqual(log.results()[test], ('PASS', ''))
        return parse_fields(log.info(test)[0])

    def pc_ram(self):
        stats = self.vm.cmd('query-guest-memfd')
        return [b for b in stats['blocks'] if b['id'] == 'pc.ram'][0]
