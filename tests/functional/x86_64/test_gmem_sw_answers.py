#!/usr/bin/env python3
#
# sw-protected-vm in the nested rig: answers to requests that cannot be
# done.
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
from qemu_test.gmem_guest import parse_fields, read_words
from qemu_test.gmem_sw_protected import (FAULT_INJECTION,
                                         SwProtectedVmTest, sweep_word)


# tests/guest/tests_convert.c convert_bad cases, with what the guest gets
# back from the conversion manager (and the reject class query-guest-memfd
# counts, when the request reached QEMU), and what QEMU 10.2.2's own path
# (guest-memfd-conversion=legacy) does: the baseline. KVM answers requests
# it can refuse without userspace itself (-KVM_EINVAL = -22); the rest
# reach QEMU, which answers EINVAL (22, positive: the answers KVM takes
# from userspace are 0, EINVAL and EAGAIN). Legacy QEMU converts what it
# does not check, and stops the whole VM on what it cannot handle.
BAD_REQUESTS = [
    # case, name,            manager (ret, class),       legacy (ret, state)
    (0, 'unaligned',      ('-22', None),             ('-22', 'running')),
    (1, 'zero_pages',     ('-22', None),             ('-22', 'running')),
    (2, 'overflow',       ('22', 'overflow'),        (None, 'internal-error')),
    (3, 'beyond_ram',     ('22', 'not-guest-memfd'), (None, 'internal-error')),
    (4, 'mmio',           ('22', 'not-guest-memfd'), (None, 'internal-error')),
    (5, 'reserved_attrs', ('22', 'reserved-bits'),   ('0', 'running')),
    (6, 'hint_mismatch',  ('22', 'page-size-hint'),  ('0', 'running')),
]


class Answers(SwProtectedVmTest):
    """
    What the guest and the host are told when a request cannot be done:
    bad requests (BAD_REQUESTS, the manager beside QEMU 10.2.2's own path),
    and the manager's kernel calls failing under a request
    (x-guest-memfd-inject-fault, which needs its opt-in): rollback,
    bounded retries, discards left pending.
    """

    def fault_trace(self):
        self.trace_log = os.path.join(self.workdir, 'trace.log')
        return ('-trace', 'kvm_gmem_fault_injected', '-D', self.trace_log)

    def faults_injected(self):
        with open(self.trace_log) as f:
            return len(re.findall('kvm_gmem_fault_injected', f.read()))

    def listed_ranges(self):
        return [(r['offset'], r['size'], r['private'])
                for r in [b for b in self.vm.cmd('query-guest-memfd',
                                                 ranges=True)['blocks']
                          if b['id'] == 'pc.ram'][0]['ranges']]

    def set_attribute_calls(self):
        return [c['calls'] for c in self.vm.cmd('query-guest-memfd')
                ['kernel-calls'] if c['call'] == 'set-attributes'][0]

    def test_failed_request_changes_nothing(self):
        # A request over four RAMBlocks (NUMA nodes) fails in KVM part
        # way: the blocks done before are changed back. KVM's attributes
        # change in one call per block, however fragmented the block
        # (issue 27), so the blocks are what fails one by one. EINTR is
        # retried, a bounded number of times. If KVM also refuses a change
        # back, that block keeps the new state and the record follows KVM
        # (the sweep checks which).
        numa = []
        for i, size in enumerate(('64M', '2M', '2M', '60M')):
            numa += ['-object', 'memory-backend-ram,id=m%d,size=%s' %
                     (i, size), '-numa', 'node,memdev=m%d' % i]
        blocks = ('m0', 'm1', 'm2', 'm3')
        log = self.boot('hold,sweep_mark,hold checkpoints=1',
                        extra=(*self.fault_trace(), *numa),
                        accel=FAULT_INJECTION)
        self.checkpoint(log, 'hold')
        m1 = 64 << 20

        def fragment():         # pages 0, 2, 4, 6 of m1 private
            for k in range(4):
                self.vm.cmd('guest-memfd-convert', gpa=m1 + k * 8192,
                            size=4096, private=True)

        # Four runs in one block, one call.
        fragment()
        calls = self.set_attribute_calls()
        self.vm.cmd('guest-memfd-convert', gpa=m1, size=32768,
                    private=False)
        self.assertEqual(self.set_attribute_calls() - calls, 1)
        fragment()

        def private():
            return {b['id']: b['private'] for b in
                    self.vm.cmd('query-guest-memfd')['blocks']
                    if b['id'] in blocks}

        before = private()
        self.assertEqual(before, {'m0': 0, 'm1': 16384, 'm2': 0, 'm3': 0})
        refused = 'cannot make 0x3ffe000 +0x404000 private: kvm'

        def convert(**fault):
            # Two pages of m0, all of m1 and m2, two pages of m3.
            if fault:
                self.vm.cmd('x-guest-memfd-inject-fault', **fault)
            resp = self.vm.qmp('guest-memfd-convert', gpa=m1 - 8192,
                               size=(4 << 20) + 16384, private=True)
            return resp.get('error', {}).get('desc')

        # m2's attribute change fails; m1 and m0 go back.
        self.assertEqual(convert(call='set-attributes', error='enomem',
                                 skip=2), refused)
        self.assertEqual(private(), before)
        self.assertEqual(convert(call='set-attributes', error='efault'),
                         refused)
        self.assertEqual(private(), before)
        # Every attempt interrupted: refused after a bounded retry.
        self.assertEqual(convert(call='set-attributes', error='eintr',
                                 count=1000), refused)
        self.vm.cmd('x-guest-memfd-inject-fault', call='set-attributes',
                    error='eintr', count=0)
        self.assertEqual(private(), before)
        stats = self.vm.cmd('query-guest-memfd')
        self.assertEqual(stats['rollback-failures'], 0)
        # m2 fails, and so does the first change back, of m1's last run
        # (pages 7-511; the undoing goes run by run, last first, as only
        # the runs' pages changed): that run stays private, m1's other
        # runs (pages 5, 3 and 1) and m0 go back.
        self.assertEqual(convert(call='set-attributes', error='enomem',
                                 skip=2, count=2), refused)
        stats = self.vm.cmd('query-guest-memfd')
        self.assertEqual(stats['rollback-failures'], 1)
        self.assertEqual(stats['rejected']['kvm'], 4)
        self.assertEqual(private(), dict(before, m1=(512 - 3) * 4096))
        # Interrupted a few times: retried, and done.
        self.assertIsNone(convert(call='set-attributes', error='eintr',
                                  count=3))
        self.assertEqual(private(), {'m0': 8192, 'm1': 2 << 20,
                                     'm2': 2 << 20, 'm3': 8192})
        self.vm.cmd('inject-nmi')
        self.assertEqual(self.sweep(log, blocks=blocks), 2 + 512 + 512 + 2)
        self.vm.cmd('inject-nmi')
        self.checkpoint(log, 'hold')
        self.vm.cmd('inject-nmi')
        self.finish(log)
        self.assertEqual(self.faults_injected(), 1 + 1 + 8 + 2 + 3)

    def test_failed_discard_stays_pending(self):
        # A discard that fails leaves its stale copy queued; the copy is
        # freed before its side is live again, or the request is refused.
        log = self.boot('sweep_mark,hold checkpoints=1',
                        extra=self.fault_trace(), accel=FAULT_INJECTION)
        fields = self.checkpoint(log, 'sweep_mark')
        self.vm.cmd('inject-nmi')
        self.checkpoint(log, 'hold')
        gpa = 4 << 20
        mark = sweep_word(gpa, int(fields['sweep']))

        def shared_view():
            return int(read_words(self.vm, self.workdir, gpa, 4096)[0])

        def convert(private, **fault):
            if fault:
                self.vm.cmd('x-guest-memfd-inject-fault', **fault)
            resp = self.vm.qmp('guest-memfd-convert', gpa=gpa, size=4096,
                               private=private)
            return resp.get('error', {}).get('desc')

        self.assertEqual(shared_view(), mark)
        # Private; its shared copy cannot be freed, and stays pending.
        self.assertIsNone(convert(True, call='discard-shared',
                                  error='enomem'))
        stats = self.vm.cmd('query-guest-memfd')
        self.assertEqual((stats['discard-failures'],
                          stats['discard-backlog']), (1, 4096))
        # QEMU's own reads of a private page read zeros, stale copy or
        # not (issue 24, defect 10): the backlog above shows the copy.
        self.assertEqual(shared_view(), 0)
        # Back to shared needs that copy gone: it fails again, refused.
        self.assertEqual(convert(False, call='discard-shared',
                                 error='enomem'),
                         'cannot make 0x400000 +0x1000 shared: discard')
        self.assertEqual(self.pc_ram()['private'], 4096)
        # The retry works: shared, and zeros where the old copy was.
        self.assertIsNone(convert(False))
        stats = self.vm.cmd('query-guest-memfd')
        self.assertEqual((stats['discard-failures'],
                          stats['discard-backlog']), (2, 0))
        self.assertEqual(shared_view(), 0)
        # The same for the private side.
        self.assertIsNone(convert(True))
        self.assertIsNone(convert(False, call='discard-private',
                                  error='eintr', count=1000))
        self.vm.cmd('x-guest-memfd-inject-fault', call='discard-private',
                    error='eintr', count=0)
        self.assertEqual(self.vm.cmd('query-guest-memfd')['discard-backlog'],
                         4096)
        self.assertIsNone(convert(True))
        stats = self.vm.cmd('query-guest-memfd')
        self.assertEqual((stats['discard-failures'],
                          stats['discard-backlog']), (3, 0))
        self.assertEqual(self.pc_ram()['private'], 4096)
        self.vm.cmd('inject-nmi')
        self.finish(log)
        self.assertEqual(self.faults_injected(), 1 + 1 + 8)

    def test_kernel_faults_on_a_running_guest(self):
        # The host makes the manager's kernel calls fail now and then,
        # each kind with each error, while the guest converts at random
        # and checks every page's data after every request; then the
        # sweep. One failure at a time (count=1), so that a refused
        # request changed nothing and the guest's model holds; the next is
        # armed once the last has fired, and the guest converts until
        # FAULTS have fired, whatever the speed of either side.
        import random

        log = self.boot('convert_faults,sweep_mark,hold rounds=0 '
                        'checkpoints=1', accel=',guest-memfd-prefault=on' +
                        FAULT_INJECTION, extra=self.fault_trace())
        rng = random.Random(1)
        calls = ['set-attributes', 'discard-shared', 'discard-private',
                 'pre-fault']
        errors = ['eintr', 'eagain', 'enomem', 'efault']
        armed = 0

        def guest_done():
            # Read the guest's output aside: sweep() waits for a new line.
            with open(self.debugcon, 'rb') as f:
                return b'gmem-test: convert_faults:' in f.read()

        faults = 200
        deadline = time.monotonic() + self.timeout
        while self.faults_injected() < faults:
            self.assertFalse(guest_done(), 'the guest stopped converting')
            if time.monotonic() > deadline:
                # Is the guest still asking (and refused), or stuck where?
                before = self.vm.cmd('query-guest-memfd')
                time.sleep(1)
                stats = self.vm.cmd('query-guest-memfd')
                regs = self.vm.cmd('human-monitor-command',
                                   command_line='info registers')
                self.fail('%d of %d faults fired; requests %d, a second '
                          'later %d; the manager: %s; the CPU:\n%s' % (
                              self.faults_injected(), faults,
                              before['requests'], stats['requests'], stats,
                              '\n'.join(regs.splitlines()[:4])))
            if self.faults_injected() == armed:
                self.vm.cmd('x-guest-memfd-inject-fault',
                            call=calls[armed % 4], error=rng.choice(errors),
                            skip=rng.randrange(4))
                armed += 1
            time.sleep(0.02)
            self.assertEqual(self.vm.cmd('query-status')['status'],
                             'running')
        self.vm.cmd('inject-nmi')       # the guest's last round
        while not guest_done():
            time.sleep(0.1)
        self.vm.cmd('x-guest-memfd-inject-fault', call='set-attributes',
                    error='eintr', count=0)
        # Discards that failed once wait for their range's next change.
        private = self.sweep(log, private_reads_zero=False)
        stats = self.vm.cmd('query-guest-memfd')
        info = self.finish_after_sweep(log, 'convert_faults')
        self.assertEqual(int(info['private']), private)
        injected = self.faults_injected()
        self.log.info('faults: %d armed, %d injected; guest: %s; stats: %s',
                      armed, injected, info, stats)
        self.assertGreaterEqual(injected, faults)
        self.assertGreater(stats['rejected']['kvm'], 0)
        self.assertGreater(stats['discard-failures'], 0)
        self.assertEqual(int(info['refused']),
                         sum(stats['rejected'].values()))

    def test_fault_injection_needs_opt_in(self):
        # Issue 24, defect 9: x-guest-memfd-inject-fault makes a running VM's
        # conversions fail, so it is refused unless the operator started QEMU
        # with -accel kvm,x-guest-memfd-fault-injection=on (off by default).
        log = self.boot('hold checkpoints=1')
        self.checkpoint(log, 'hold')
        resp = self.vm.qmp('x-guest-memfd-inject-fault', call='set-attributes',
                           error='enomem')
        self.assertEqual(resp.get('error', {}).get('desc'),
                         'x-guest-memfd-inject-fault is disabled: it is for '
                         'tests, enable it with -accel '
                         'kvm,x-guest-memfd-fault-injection=on')
        # Nothing was armed: the next conversion goes through.
        self.vm.cmd('guest-memfd-convert', gpa=4 << 20, size=4096,
                    private=True)
        props = {p['name']: p for p in self.vm.cmd('qom-list-properties',
                                                   typename='kvm-accel')}
        self.assertIn('For tests only',
                      props['x-guest-memfd-fault-injection']['description'])
        self.vm.cmd('inject-nmi')
        self.finish(log)

    def bad_request(self, case, conversion):
        """
        Run one convert_bad case with the given conversion path; return
        (the guest's answer or None if it got none, the VM's run state once
        the request was handled).
        """
        self.trace_log = os.path.join(self.workdir, 'trace.log')
        log = self.boot('convert_bad case=%d checkpoints=1' % case,
                        conversion=conversion, extra=(
                            '-trace', 'kvm_gmem_hypercall_reject',
                            '-D', self.trace_log))
        fields, status = self.checkpoint_or_stop(log, 'convert_bad')
        if fields is None:
            return None, status
        # The guest got its answer and waits for an NMI.
        self.stats = self.vm.cmd('query-guest-memfd')
        self.vm.cmd('inject-nmi')
        self.finish(log)
        return parse_fields(log.info('convert_bad')[0])['ret'], status

    def bad_request_manager(self, name):
        """
        BAD_REQUESTS' case @name on the conversion manager: the guest's
        answer, the reject class counted, and the trace.
        """
        [(case, _, manager, _)] = [r for r in BAD_REQUESTS if r[1] == name]
        ret, status = self.bad_request(case, 'manager')
        self.assertEqual((ret, status), (manager[0], 'running'))
        rejected = self.stats['rejected']
        if manager[1]:
            self.assertEqual(rejected[manager[1]], 1)
        self.assertEqual(sum(rejected.values()), 1 if manager[1] else 0)
        # Requests refused before conversion are traced with their own
        # arguments: pages, not bytes.
        with open(self.trace_log) as f:
            traced = re.findall(r'kvm_gmem_hypercall_reject gpa 0x\w+ '
                                r'npages 0x(\w+) attrs 0x\w+: (\S+)',
                                f.read())
        decoded = manager[1] in ('overflow', 'reserved-bits',
                                 'page-size-hint')
        self.assertEqual(len(traced), 1 if decoded else 0, traced)
        if decoded:
            self.assertEqual(traced[0][1], manager[1])
            self.assertEqual(int(traced[0][0], 16), 2 if case == 2 else 1)

    def bad_request_legacy(self, name):
        """BAD_REQUESTS' case @name on QEMU 10.2.2's own path."""
        [(case, _, _, legacy)] = [r for r in BAD_REQUESTS if r[1] == name]
        self.assertEqual(self.bad_request(case, 'legacy'), legacy)

    def test_bad_unaligned_manager(self):
        self.bad_request_manager('unaligned')

    def test_bad_unaligned_legacy_baseline(self):
        self.bad_request_legacy('unaligned')

    def test_bad_zero_pages_manager(self):
        self.bad_request_manager('zero_pages')

    def test_bad_zero_pages_legacy_baseline(self):
        self.bad_request_legacy('zero_pages')

    def test_bad_overflow_manager(self):
        self.bad_request_manager('overflow')

    def test_bad_overflow_legacy_baseline(self):
        self.bad_request_legacy('overflow')

    def test_bad_beyond_ram_manager(self):
        self.bad_request_manager('beyond_ram')

    def test_bad_beyond_ram_legacy_baseline(self):
        self.bad_request_legacy('beyond_ram')

    def test_bad_mmio_manager(self):
        self.bad_request_manager('mmio')

    def test_bad_mmio_legacy_baseline(self):
        self.bad_request_legacy('mmio')

    def test_bad_reserved_attrs_manager(self):
        self.bad_request_manager('reserved_attrs')

    def test_bad_reserved_attrs_legacy_baseline(self):
        self.bad_request_legacy('reserved_attrs')

    def test_bad_hint_mismatch_manager(self):
        self.bad_request_manager('hint_mismatch')

    def test_bad_hint_mismatch_legacy_baseline(self):
        self.bad_request_legacy('hint_mismatch')


if __name__ == '__main__':
    QemuSystemTest.main()
