#!/usr/bin/env python3
#
# sw-protected-vm in the nested rig: storms and concurrency.
#
# One of the test_gmem_sw_*.py files, split by subject (issue 28); they
# share qemu_test/gmem_sw_protected.py, and run_gmem_sw_protected.py runs
# them all in one L1 boot of the rig tier (test_gmem_rig.py).
#
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import re
import time
from unittest import skipUnless

from qemu_test import QemuSystemTest
from qemu_test.gmem_guest import (parse_fields, read_words,
                                  sw_protected_vm_args)
from qemu_test.gmem_sw_protected import (RIG_VCPUS, STORM_VCPUS,
                                         SwProtectedVmTest, legacy_blk_args,
                                         pattern_file_args)


# The host's guest-memfd-convert requests beside the storm, at least.
STORM_HOST_REQUESTS = 2000


def rig_state_lost(report):
    """
    Whether a reset report shows the rig's nested virtualization losing
    state: the test guest runs below 4 GiB, so a vCPU of it at a
    kernel-half address holds L1's state, not its own (seen under
    multi-threaded TCG, tests/rig/README.md). A rig failure, then, not
    the product's.
    """
    rips = [int(r, 16) for r in re.findall(r'RIP=([0-9a-f]{16})', report)]
    lost = [r for r in rips if r >= 0xffff800000000000]
    if lost:
        return ('rig failure: the nested virtualization lost state (an L2 '
                'vCPU at RIP %016x, a kernel address)' % lost[0])
    return 'product or guest failure'


def late_disk_args(path, iops=20):
    """
    A legacy virtio-blk disk of 1 MiB of zeros behind a throttle of @iops
    requests a second: a request waits in the throttle, mapped, and its
    data lands only at the end of the wait (unlike null-co's,
    slow_disk_args(), which land at once).
    """
    return ['-object', 'throttle-group,id=late,x-iops-total=%d' % iops,
            *pattern_file_args(path, 0, 'zeros'),
            '-blockdev', 'driver=throttle,node-name=slow,'
            'throttle-group=late,file=zeros',
            *legacy_blk_args('slow')]


class _QmpProbe:
    """A second QMP monitor, read with a timeout: a hung QEMU shows."""

    def __init__(self, path, timeout):
        import json
        import socket

        self._json = json
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile('rwb')
        self._reply()                           # the greeting
        self.cmd('qmp_capabilities')

    def _reply(self):
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError('QMP closed')
            msg = self._json.loads(line)
            if 'event' not in msg:
                return msg

    def cmd(self, name):
        self.file.write(self._json.dumps({'execute': name}).encode() + b'\n')
        self.file.flush()
        return self._reply()['return']

    def close(self):
        self.file.close()
        self.sock.close()


class Storms(SwProtectedVmTest):
    """
    vCPUs converting at once beside DMA, beside memory commits (PAM
    toggles) and beside the host's own requests. The two 4-vCPU storms
    run only in an L1 boot of their own on single-threaded TCG
    (QEMU_GMEM_RIG_STORM=1: test_gmem_rig.py, with 10,000 random
    requests; make check-storm, the random one with 100,000), where the
    nested SVM holds under four busy vCPUs (tests/rig/README.md).
    """

    @skipUnless(os.environ.get('QEMU_GMEM_RIG_STORM'),
                'the storms run in an L1 boot of their own, on '
                'single-threaded TCG (test_gmem_rig.py)')
    def test_dma_storm(self):
        # STORM_VCPUS vCPUs: one keeps virtio-blk reads in flight (each
        # waits in a throttle of 20 requests a second, its data landing at
        # the end) and asks for their buffers to go private under the DMA
        # (a 5 ms lease timeout), the others convert random ranges of
        # their own windows; everyone checks data. CPU 0's oracle holds at
        # any speed of the rig: refused, the read must land in the buffer;
        # converted, the read must have ended first, so a marker written
        # after the conversion must survive it (tests_virtio.c,
        # storm_dma()). Mutation, run 2026-12-05: gmem_fence_leased()
        # answering false (conversions ignore leases) fails it with 1,088
        # data errors on CPU 0; with null-co's disk, whose zeros land when
        # a request starts, it passed. The guest fails on any unexpected
        # answer or data error, and QEMU must keep running to the guest's
        # exit.
        #
        # A guest reset (under -no-reboot QEMU exits 0 before the guest's
        # result) fails the test; it is never booted again. Not
        # -action shutdown=pause: isa-debug-exit is a guest shutdown too,
        # and the guest's own end would pause instead of exiting.
        log = self.launch_guest(
            'dma_storm cpus=%d rounds=24' % STORM_VCPUS,
            '-accel', 'kvm,guest-memfd-lease-timeout=5',
            '-m', '128M', '-smp', str(STORM_VCPUS),
            *late_disk_args(os.path.join(self.workdir, 'zeros.img')),
            *sw_protected_vm_args())
        self.vm.wait(timeout=self.timeout)
        log.poll()
        self.assertFalse(self.vm.exitcode() == 0 and not log.results(),
                         'L2 was reset during dma_storm:\n%s'
                         % '\n'.join(log.lines))
        self.finish(log)
        self.assertEqual(log.results()['dma_storm'], ('PASS', ''))
        self.log.info('dma_storm: %s', log.info('dma_storm'))

    def storm_host_requests(self, rng, window, size, ram_end, model):
        """
        One random guest-memfd-convert of the host's: to its own window,
        which must work, or one that must be refused, with the reason.
        Returns the reason, or None.
        """
        kind = rng.randrange(6)
        private = rng.random() < 0.5
        if kind < 3:
            n = rng.randrange(1, 64)
            first = rng.randrange(size // 4096 - n + 1)
            self.vm.cmd('guest-memfd-convert', gpa=window + first * 4096,
                        size=n * 4096, private=private)
            model[first:first + n] = [private] * n
            return None
        if kind == 3:
            gpa, length, why = ram_end + rng.randrange(1 << 30) * 4096, \
                4096, 'not-guest-memfd'
            private = True          # holes may be made shared
        elif kind == 4:
            gpa, length, why = rng.randrange(2, 1 << 52) * 4096, \
                (1 << 64) - 4096, 'overflow'
        else:
            gpa, length, why = window + rng.randrange(1, 4096), 4096, \
                'unaligned'
        resp = self.vm.qmp('guest-memfd-convert', gpa=gpa, size=length,
                           private=private)
        self.assertIn(': ' + why, resp['error']['desc'], resp)
        return why

    def random_storm(self, requests):
        """
        Boot the storm (@requests guest requests in all), run the host's
        side of it until the guest is done. Returns (log, requests sent,
        refused, the host window's model, the guest's fields). A guest
        reset fails the test: it pauses the VM (-action shutdown=pause),
        so that what every CPU was asking for then, the private ranges
        and the registers are in the failure's report. The guest's own
        end (isa-debug-exit) pauses it too; the SHUTDOWN event's reason
        tells the two apart. Any other end of QEMU fails the test.
        """
        import random

        cpus = int(os.environ.get('QEMU_GMEM_STORM_VCPUS', STORM_VCPUS))
        log = self.boot('convert_storm,sweep_mark,hold cpus=%d rounds=%d '
                        'checkpoints=1' % (cpus, -(-requests // cpus)),
                        smp=cpus, extra=('-action', 'shutdown=pause'))
        state = None

        def cpu_records():
            # Each CPU's first words of storm_cpu (tests_smp.c):
            # in_flight[4], requests, converted, refused, unexpected,
            # data_errors.
            base, stride = state
            words = read_words(self.vm, self.workdir, base, cpus * stride)
            return [[int(w) for w in words[cpu * stride // 8:][:9]]
                    for cpu in range(cpus)]

        def answered():
            return [r[4] for r in cpu_records()]

        events = []

        def reset_report():
            lines = ['events: %s' % events]
            if state:
                for cpu, w in enumerate(cpu_records()):
                    lines.append('cpu %d: request %d in flight (gpa 0x%x '
                                 'npages 0x%x attrs 0x%x), %d answered, '
                                 '%d unexpected, %d data errors' %
                                 (cpu, w[0], w[1], w[2], w[3], w[4], w[7],
                                  w[8]))
            ram = [b for b in self.vm.cmd('query-guest-memfd', ranges=True)
                   ['blocks'] if b['id'] == 'pc.ram'][0]
            lines.append('private in pc.ram: %s' % ', '.join(
                '0x%x+0x%x' % (r['offset'], r['size'])
                for r in ram['ranges'] if r['private']))
            lines.append(self.vm.cmd('human-monitor-command',
                                     command_line='info registers -a'))
            return '\n'.join(lines)

        def check_not_reset():
            if self.vm.cmd('query-status')['status'] != 'shutdown':
                return
            events.extend(e for e in self.vm.get_qmp_events()
                          if e['event'] in ('SHUTDOWN', 'RESET', 'STOP'))
            reasons = [e['data']['reason'] for e in events
                       if e['event'] == 'SHUTDOWN']
            if reasons == ['guest-shutdown']:
                log.poll()
                self.fail('the guest ended during the storm:\n%s'
                          % '\n'.join(log.lines))
            report = reset_report()
            self.log.warning('convert_storm: L2 was reset:\n%s\n%s',
                             report, '\n'.join(log.lines))
            self.fail('%s: L2 was reset during the storm:\n%s' % (
                rig_state_lost(report), report))

        def died():
            if self.vm.is_running():
                check_not_reset()
            # A lost QMP connection comes just before the exit.
            for _ in range(100):
                if not self.vm.is_running():
                    break
                time.sleep(0.1)
            if self.vm.is_running():
                return False
            try:
                self.vm.wait(timeout=60)
            except Exception:       # QMP went with the process
                pass
            log.poll()
            self.fail('QEMU ended during the storm, exit code %s:\n%s\n%s'
                      % (self.vm.exitcode(), self.vm.get_log(),
                         '\n'.join(log.lines)))

        def guest_done():
            with open(self.debugcon, 'rb') as f:
                return b'gmem-test: convert_storm:' in f.read()

        try:
            fields = self.checkpoint(log, 'convert_storm')
        except AssertionError:
            died()
            raise
        state = (int(fields['cpu_state'], 0),
                 int(fields['cpu_state_size'], 0))
        window = int(fields['host_window'], 0)
        size = int(fields['host_size'], 0)
        ram_end = int(fields['ram_end'], 0)
        model = [False] * (size // 4096)
        rng = random.Random(2)
        sent = refused = 0
        self.vm.cmd('inject-nmi')
        # 4 vCPUs on the rig's 4 TCG CPUs answer about 10 requests/s each.
        # At least 10 requests/s in all: 4 vCPUs of a single-threaded
        # TCG L0 on 2 busy cores answered 18/s (87,860 in 80 min).
        limit = max(self.timeout, requests // 10)
        deadline = time.monotonic() + limit
        while not guest_done() or sent < STORM_HOST_REQUESTS:
            if time.monotonic() > deadline:
                log.poll()
                self.fail('the storm did not end in %d s (answered: %s):\n%s'
                          % (limit, answered(), '\n'.join(log.lines)))
            try:
                refused += self.storm_host_requests(rng, window, size,
                                                    ram_end, model) is not None
                if sent % 32 == 0:
                    check_not_reset()
                if sent % 2048 == 0:
                    self.log.info('storm: host sent %d, guest CPUs answered '
                                  '%s', sent, answered())
            except self.failureException:
                raise
            except Exception:
                died()
                raise
            sent += 1
            # Leave the rig's CPUs to the guest's vCPUs now and then.
            time.sleep(0.005)
        return log, sent, refused, model, fields

    @skipUnless(os.environ.get('QEMU_GMEM_RIG_STORM'),
                'the storm runs in an L1 boot of its own, on single-threaded '
                'TCG (test_gmem_rig.py; make check-storm: the long one)')
    def test_random_requests_storm(self):
        # STORM_VCPUS vCPUs send QEMU_GMEM_STORM_REQUESTS random requests
        # in all (make check: 10,000; make check-storm: 100,000), good and
        # bad (past RAM, MMIO, ROM, wrapping, reserved bits, wrong hints),
        # each checking its answer and its window's data, while the host
        # sends at least STORM_HOST_REQUESTS random guest-memfd-convert to
        # its own window and to places they must be refused. Afterwards
        # the sweep: the record equals KVM on every free page, private
        # pages read zero from QEMU's side, shared pages hold the guest's
        # last word, and the private pages are exactly those the guest
        # and the host left so. A guest reset fails it, with a report.
        requests = int(os.environ.get('QEMU_GMEM_STORM_REQUESTS', 100000))
        log, sent, refused, model, fields = self.random_storm(requests)
        private = self.sweep(log)
        stats = self.vm.cmd('query-guest-memfd')
        # The storm is over: the guest's own end may end QEMU again.
        self.vm.cmd('set-action', shutdown='poweroff')
        info = self.finish_after_sweep(log, 'convert_storm')
        self.log.info('storm: guest %s; host %d requests, %d refused; %s',
                      info, sent, refused, stats)
        self.assertGreaterEqual(int(info['requests']), requests)
        self.assertGreaterEqual(sent, STORM_HOST_REQUESTS)
        self.assertEqual(private, int(info['private']) + sum(model))
        self.assertEqual(stats['rollback-failures'], 0)

    def test_pam_toggle_beside_conversions(self):
        # Issue 24, defect 1: vCPU 0 rewrites q35's PAM0 (a memory commit that
        # inhibits KVM ioctls and adds a guest_memfd memslot) while vCPU 1
        # converts 4 KiB pages. The conversion's attribute call once waited
        # for the inhibit with gmem.lock held, and the commit for gmem.lock
        # with the BQL held: QEMU hung (QMP too) within 200 toggles. Every
        # query-status must answer within 5 s, the guest must finish with
        # every answer right, and the sweep must find record = KVM.
        import socket

        toggles = 2000
        path = os.path.join(self.socket_dir().name, 'probe.sock')
        log = self.boot('smp_online,pam_convert,sweep_mark cpus=%d toggles=%d '
                        'checkpoints=1' % (RIG_VCPUS, toggles), smp=RIG_VCPUS,
                        extra=('-qmp', 'unix:%s,server=on,wait=off' % path))
        probe = _QmpProbe(path, 5)
        polls, worst = 0, 0.0
        deadline = time.monotonic() + self.timeout
        try:
            while True:
                # Not through @log: sweep() waits for the checkpoint line.
                with open(self.debugcon, errors='replace') as f:
                    out = f.read()
                if 'gmem-checkpoint: sweep_mark:' in out:
                    break
                t0 = time.monotonic()
                try:
                    status = probe.cmd('query-status')['status']
                except socket.timeout:
                    # Slow or hung? Give the answer another minute (on the
                    # socket: its file cannot be read after a timeout).
                    probe.sock.settimeout(60)
                    try:
                        probe.sock.recv(4096)
                        late = 'one after %.0f s' % (time.monotonic() - t0)
                    except socket.timeout:
                        late = 'none in 65 s'
                    self.vm.kill()      # its own QMP would wait for ever
                    self.fail('query-status: no answer in 5 s (%s) after '
                              '%d answers; guest output:\n%s'
                              % (late, polls, out))
                worst = max(worst, time.monotonic() - t0)
                polls += 1
                self.assertEqual(status, 'running', out)
                if time.monotonic() > deadline:
                    self.vm.kill()
                    self.fail('no sweep_mark in %d s; guest output:\n%s'
                              % (self.timeout, out))
                time.sleep(0.2)
        finally:
            probe.close()
        self.log.info('%d query-status answers, slowest %.3f s', polls, worst)
        self.assertEqual(self.sweep(log), 0)
        stats = self.vm.cmd('query-guest-memfd')
        self.vm.cmd('inject-nmi')
        self.finish(log)
        self.assertEqual(log.results(), {'smp_online': ('PASS', ''),
                                         'pam_convert': ('PASS', ''),
                                         'sweep_mark': ('PASS', '')})
        info = parse_fields(log.info('pam_convert')[-1])
        self.assertEqual(int(info['toggles']), toggles)
        conversions = int(info['conversions'])
        self.assertGreater(conversions, 0)
        self.assertEqual(stats['requests'], conversions)
        self.assertEqual(sum(stats['rejected'].values()), 0)
        self.log.info('pam_convert: %s', log.info('pam_convert')[-1])


if __name__ == '__main__':
    QemuSystemTest.main()
