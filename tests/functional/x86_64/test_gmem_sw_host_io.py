#!/usr/bin/env python3
#
# sw-protected-vm in the nested rig: host I/O and DMA.
#
# One of the test_gmem_sw_*.py files, split by subject (issue 28); they
# share qemu_test/gmem_sw_protected.py, and run_gmem_sw_protected.py runs
# them all in one L1 boot of the rig tier (test_gmem_rig.py).
#
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import re
import time

from qemu_test import QemuSystemTest
from qemu_test.gmem_guest import (EXIT_FAILED, parse_fields, read_words,
                                  sw_protected_vm_args)
from qemu_test.gmem_sw_protected import (RIG_VCPUS, SwProtectedVmTest,
                                         legacy_blk_args, pattern_file_args,
                                         slow_disk_args)


def pattern_disk_args(path, byte=0x5a):
    """A legacy virtio-blk disk of 1 MiB that reads @byte everywhere."""
    return [*pattern_file_args(path, byte, 'pattern'),
            *legacy_blk_args('pattern')]


class HostIo(SwProtectedVmTest):
    """
    Host I/O maps only shared memory: virtio-blk DMA into pages the guest
    converts, under leases that a conversion waits for or is refused by,
    beside QEMU 10.2.2's own path.
    """

    def dma_lease(self, conversion, latency_ms, lease_timeout_ms, busy_ret):
        """
        The guest starts a virtio-blk read into a page (a disk that takes
        latency_ms per request) and asks for the page to go private while
        the read is in flight. Returns the guest's answers and the
        manager's statistics.
        """
        log = self.launch_guest(
            'dma_lease checkpoints=1 busy_ret=%d' % busy_ret,
            '-accel', 'kvm,guest-memfd-conversion=%s,'
            'guest-memfd-lease-timeout=%d' % (conversion, lease_timeout_ms),
            '-m', '128M', *slow_disk_args(latency_ms),
            *sw_protected_vm_args())
        self.checkpoint(log, 'dma_lease')
        stats = self.vm.cmd('query-guest-memfd')
        self.vm.cmd('inject-nmi')
        self.finish(log)
        self.assertEqual(log.results()['dma_lease'], ('PASS', ''))
        return parse_fields(log.info('dma_lease')[0]), stats

    def test_dma_lease_outlasts_timeout(self):
        # The read takes 2 s, the lease timeout is 100 ms: the guest is
        # told to try again (EAGAIN), the DMA lands in the shared page,
        # and the same request succeeds once the read is done.
        answers, stats = self.dma_lease('manager', 2000, 100, 11)
        self.assertEqual(answers['busy_ret'], '11')
        self.assertEqual(stats['rejected']['leased'], 1)
        self.assertEqual(stats['lease-waits'], 1)
        self.assertEqual(stats['leases'], 0)

    def test_dma_lease_waits_for_short_io(self):
        # The read takes 300 ms, the timeout is 10 s: the conversion waits
        # for the DMA to finish and then succeeds. The guest's clock says
        # whether it waited: the conversion took most of the read's time
        # (the page reads zeros either way, private or written by the
        # zero disk, so data cannot tell).
        answers, stats = self.dma_lease('manager', 300, 10000, 0)
        self.assertEqual(answers['busy_ret'], '0')
        self.assertEqual(stats['rejected']['leased'], 0)
        self.assertEqual(stats['lease-waits'], 1)
        self.assertGreater(int(answers['busy_tsc']),
                           int(answers['read_tsc']) // 2, answers)

    def test_dma_lease_legacy_baseline(self):
        # QEMU 10.2.2's own path converts the page under the device's
        # mapping at once: the conversion returns long before the 2 s read
        # is done, which then writes to a page the guest already made
        # private.
        answers, stats = self.dma_lease('legacy', 2000, 100, 0)
        self.assertEqual(answers['busy_ret'], '0')
        self.assertLess(int(answers['busy_tsc']),
                        int(answers['read_tsc']) // 10, answers)

    def dma_private(self, conversion):
        """
        The guest asks a device to write into a private page. Returns the
        guest's checkpoint fields, how many words of the disk's pattern
        QEMU's view of the page holds, and the guest's log.
        """
        self.trace_log = os.path.join(self.workdir, 'trace.log')
        log = self.boot('dma_private checkpoints=1', conversion=conversion,
                        extra=(*pattern_disk_args(os.path.join(
                                   self.workdir, 'pattern.img')),
                               '-trace', 'kvm_gmem_lease_take',
                               '-D', self.trace_log))
        fields = self.checkpoint(log, 'dma_private')
        words = read_words(self.vm, self.workdir, int(fields['gpa'], 0), 4096)
        self.assertEqual(self.vm.cmd('query-status')['status'], 'running')
        self.vm.cmd('inject-nmi')
        return fields, int((words == 0x5a5a5a5a5a5a5a5a).sum()), log

    def test_dma_into_private_page_refused(self):
        # Host I/O maps only shared memory: a read into a private page
        # fails in the device (virtio-blk marks itself broken), QEMU's
        # view of the page shows nothing of the disk's pattern, the guest
        # keeps its private data, and the page reads zeros once shared.
        # Fails if a lease is granted on private memory (the legacy
        # baseline below is that product; run once, 2026-12-04).
        fields, pattern, log = self.dma_private('manager')
        self.assertEqual((fields['completed'], pattern), ('0', 0))
        self.finish(log)
        self.assertEqual(log.results()['dma_private'], ('PASS', ''))
        trace = self.trace_log
        with open(trace) as f:
            refused = re.findall(r'kvm_gmem_lease_take pc.ram offset 0x(\w+) '
                                 r'size 0x1000: 0x0 granted', f.read())
        self.assertEqual(refused, ['%x' % int(fields['gpa'], 0)])

    def test_dma_into_private_page_legacy_baseline(self):
        # QEMU 10.2.2 maps the private page's shared side for the device:
        # the read completes, QEMU's view holds the disk's data, and the
        # guest finds it there once it shares the page again.
        fields, pattern, log = self.dma_private('legacy')
        self.assertEqual((fields['completed'], pattern), ('1', 512))
        self.finish(log, expected_exit=EXIT_FAILED)
        self.assertEqual(log.results()['dma_private'], (
            'FAIL', 'shared again (0), the page holds 512 words that are '
            'not zero'))

    def test_lease_wait_releases_the_lock(self):
        # Issue 24, defect 2: a vCPU's conversion to private waits for a DMA
        # lease (a 3 s virtio-blk read, lease timeout 10 s). It used to wait
        # holding gmem.lock, so query-guest-memfd (BQL, then gmem.lock) held
        # up the main loop, and with it the read's completion: the conversion
        # ran into its timeout ("leased", EAGAIN) and only then did the query
        # answer. Now the wait releases gmem.lock: every query answers at
        # once, and the conversion succeeds when the read is done.
        log = self.launch_guest(
            'dma_lease checkpoints=1 busy_ret=0',
            '-accel', 'kvm,guest-memfd-lease-timeout=10000',
            '-m', '128M', *slow_disk_args(3000), *sw_protected_vm_args())
        slowest, polls, during = 0.0, 0, 0
        deadline = time.monotonic() + self.timeout
        while True:
            # Not through @log: checkpoint() reads the line after.
            with open(self.debugcon, errors='replace') as f:
                if 'gmem-checkpoint: dma_lease:' in f.read():
                    break
            self.assertLess(time.monotonic(), deadline,
                            'no dma_lease checkpoint')
            t0 = time.monotonic()
            leases = self.vm.cmd('query-guest-memfd')['leases']
            slowest = max(slowest, time.monotonic() - t0)
            polls += 1
            during += leases > 0
            time.sleep(0.05)
        fields = self.checkpoint(log, 'dma_lease')
        stats = self.vm.cmd('query-guest-memfd')
        self.log.info('%d queries, %d during the read, slowest %.3f s; %s',
                      polls, during, slowest, fields)
        self.assertGreater(during, 0, 'no query while the read was in flight')
        self.assertLess(slowest, 2.0, 'query-guest-memfd waited for the lease')
        self.assertEqual(fields['busy_ret'], '0')
        self.assertEqual((stats['rejected']['leased'], stats['lease-waits']),
                         (0, 1))
        self.vm.cmd('inject-nmi')
        self.finish(log)

    def test_share_fences_only_what_changes(self):
        # Issue 24, defect 7: vCPU 0 reads from virtio-blk into a shared page
        # over and over while vCPU 1 makes the page before it private and
        # then both pages shared. The request to shared fenced its whole
        # range, the shared page under I/O too: a map of it while that
        # request ran failed, virtio marked itself broken and the guest's
        # read never completed. Now only the page that changes is fenced.
        log = self.boot('smp_online,dma_beside_share cpus=%d reads=300'
                        % RIG_VCPUS, smp=RIG_VCPUS, extra=slow_disk_args(1))
        self.finish(log)
        self.log.info('guest: %s', log.info('dma_beside_share'))
        self.assertNotIn('bogus descriptor', self.vm.get_log())
        self.assertEqual(log.results().get('dma_beside_share'), ('PASS', ''))


if __name__ == '__main__':
    QemuSystemTest.main()
