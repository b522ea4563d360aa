#!/usr/bin/env python3
#
# SEV-SNP and TDX launches run end to end in a real QEMU process, in the
# nested rig (tests/rig): sev.c and tdx.c with the launch plan, a real
# KVM_X86_SW_PROTECTED_VM with guest_memfd memslots and memory
# attributes, the discard of the shared copies, query-launch-measurement
# on the launched VM. Only what no machine here has is answered by the
# launch stand-in (tests/launch-standin, LD_PRELOAD): /dev/sev, the
# SNP/TDX commands of KVM_MEMORY_ENCRYPT_OP and the VM-type answers. It
# enforces Linux 7.2's rules and measures what QEMU really handed it, so
# for each command line: the stand-in's measurement == QEMU's
# query-launch-measurement == the dry run (measure-only=on) == the
# independent vectors (../shared/launch-vectors.md).
#
# Run by test_gmem_rig.py inside L1; it needs a KVM with
# KVM_X86_SW_PROTECTED_VM and fails without one.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import base64
import fcntl
import json
import os
import re
import struct
import subprocess
import time

from qemu.machine import QEMUMachine
from qemu_test import QemuSystemTest

from test_gmem_launch_measurement import (V1, V2, T1, SNP_V4_1_KERNEL,
                                          SNP_MILAN_2_KERNEL_INITRD,
                                          synthetic_bzimage, synthetic_initrd)

SNP_FW = 'OVMF.amdsev.fd'
TDX_FW = 'OVMF.inteltdx.ms.fd'
SNP_CGS = 'sev-snp-guest,id=sev0,cbitpos=%d,reduced-phys-bits=1'
TDX_CGS = 'tdx-guest,id=tdx0'

KVM_CHECK_EXTENSION = 0xae03
KVM_CAP_VM_TYPES = 235
KVM_X86_SW_PROTECTED_VM = 1
PAGE = 4096
TDX_OPERAND_BUSY = 0x8000020000000000
TDX_OPERAND_INVALID = 0xC000010000000000


def page_present(pagemap, addr):
    """Whether the page at @addr of the process is resident (pagemap)."""
    pagemap.seek(addr // PAGE * 8)
    return bool(struct.unpack('<Q', pagemap.read(8))[0] & (1 << 63))


class LaunchEndToEnd(QemuSystemTest):

    timeout = 900

    def setUp(self):
        super().setUp()
        self.find_launch_inputs()
        with open('/dev/kvm') as kvm:
            types = fcntl.ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES)
        if not types & (1 << KVM_X86_SW_PROTECTED_VM):
            self.fail('this KVM has no KVM_X86_SW_PROTECTED_VM: the test '
                      'runs in the nested rig (test_gmem_rig.py)')
        self.launches = 0
        # Every QEMU of this test carries it, so that none can be missed.
        self.marker = 'gmem-e2e-%d' % os.getpid()

    def tearDown(self):
        super().tearDown()
        self.assert_no_qemu_left()

    def qemu_alive(self):
        """The QEMU processes of this test that are still there."""
        alive = []
        for pid in filter(str.isdigit, os.listdir('/proc')):
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as f:
                    cmdline = f.read().split(b'\0')
                with open('/proc/%s/stat' % pid) as f:
                    zombie = f.read().rsplit(')', 1)[1].split()[0] == 'Z'
            except OSError:
                continue
            if not zombie and any(self.marker.encode() in a
                                  for a in cmdline):
                alive.append(int(pid))
        return alive

    def assert_no_qemu_left(self):
        deadline = time.monotonic() + 10
        while self.qemu_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.qemu_alive(), [], 'QEMU left running')

    def fw(self, name):
        return os.path.join(self.fw_dir, name)

    def host_cbitpos(self):
        """
        QEMU compares cbitpos with the host CPU's CPUID 0x8000001F, an
        instruction that nothing at the process boundary can answer; L1's
        CPU is not SEV-capable. QEMU's refusal names the value the host
        has, and the launches use it: cbitpos enters only the guest's
        CPUID page, which SEV-SNP does not measure (test_cbitpos_unmeasured).
        """
        code, _, err = self.run_qemu(
            '-bios', self.fw(SNP_FW), '-machine',
            'q35,confidential-guest-support=sev0', '-object',
            SNP_CGS % 51, '-accel', 'kvm', '-S')
        m = re.search(r"cbitpos check failed, host '(\d+)' requested '51'",
                      err)
        if code == 1 and m:
            return int(m.group(1))
        self.assertEqual(code, 0, err)   # a host whose C-bit is 51
        return 51

    def run_qemu(self, *args, env=None, standin=True):
        """QEMU to its end, no QMP: (exit status, stdout, stderr)."""
        run_env = dict(os.environ, **(env or {}))
        if standin:
            run_env['LD_PRELOAD'] = self.standin
        p = subprocess.run([self.qemu_bin, '-display', 'none', '-m', '512M',
                            '-name', self.marker, *args],
                           capture_output=True, text=True,
                           timeout=300, env=run_env, check=False)
        self.log.info('%s: exit %d\n%s', ' '.join(args), p.returncode,
                      p.stderr)
        return p.returncode, p.stdout, p.stderr

    def dry_run(self, fw, cgs, *args):
        return self.dry_run_info(fw, cgs, *args)['measurement']

    def dry_run_info(self, fw, cgs, *args):
        code, out, err = self.run_qemu(
            '-bios', self.fw(fw), '-machine',
            'q35,confidential-guest-support=%s' % cgs.split('id=')[1]
            .split(',')[0], '-object', cgs + ',measure-only=on', *args,
            standin=False)
        self.assertEqual(code, 0, err)
        return json.loads(out)

    def launch(self, fw, cgs, *args, env=None, accel='kvm',
               before_cont=None, may_refuse=False):
        """
        Launch through the stand-in and return (vm, its
        query-launch-measurement, the stand-in's report). SEV-SNP
        launches when the VM first runs, TDX when the machine is built.
        @before_cont(vm, report path) runs between -S and cont; with
        @may_refuse, a QEMU that exits at cont gives None for the query.
        """
        self.launches += 1
        report = os.path.join(self.workdir, 'standin-%d.jsonl' %
                              self.launches)
        wrapper = ['/usr/bin/env', 'LD_PRELOAD=' + self.standin,
                   'GMEM_LAUNCH_STANDIN_REPORT=' + report]
        wrapper += ['%s=%s' % kv for kv in (env or {}).items()]
        name = 'launch-%d' % self.launches
        vm = QEMUMachine(self.qemu_bin, name=name, wrapper=wrapper,
                         base_temp_dir=self.workdir,
                         log_dir=self.log_file())
        self._vms[name] = vm
        cgs_id = cgs.split('id=')[1].split(',')[0]
        vm.add_args('-bios', self.fw(fw), '-machine',
                    'q35,confidential-guest-support=%s' % cgs_id,
                    '-object', cgs, '-accel', accel, '-m', '512M',
                    '-display', 'none', '-S', '-name',
                    self.marker + ',debug-threads=on', *args)
        vm.launch()
        if before_cont:
            before_cont(vm, report)
        try:
            if 'sev-snp' in cgs:
                vm.cmd('cont')
            info = vm.cmd('query-launch-measurement')
        except Exception:       # pylint: disable=broad-except
            if not may_refuse:
                raise
            vm.wait()
            info = None
        if info:
            self.assertTrue(info['launched'])
        return vm, info, self.report(report)

    @staticmethod
    def report(path):
        with open(path) as f:
            return [json.loads(line) for line in f]

    def find_launch_inputs(self):
        """Debian's SEV-SNP/TDX firmware and the stand-in, or fail."""
        self.fw_dir = os.environ.get('QEMU_GMEM_FIRMWARE_DIR')
        if not self.fw_dir:
            self.fail('QEMU_GMEM_FIRMWARE_DIR is not set: make check '
                      'fetches Debian\'s ovmf-amdsev and ovmf-inteltdx')
        cache = os.environ.get('QEMU_GMEM_CACHE',
                               os.path.expanduser('~/.cache/qemu-gmem'))
        self.standin = os.environ.get(
            'QEMU_GMEM_LAUNCH_STANDIN',
            os.path.join(cache, 'launch-standin', 'launch-standin.so'))
        if not os.path.exists(self.standin):
            self.fail('no launch stand-in at %s: make build builds it' %
                      self.standin)

    def measured(self, events):
        m = [e for e in events if e['event'] == 'measurement']
        self.assertEqual(len(m), 1, 'one measurement in the report')
        return m[0]

    def private_gpas(self, vm):
        """Guest physical pages of pc.bios and pc.ram private in the record."""
        blocks = vm.cmd('query-guest-memfd', ranges=True)['blocks']
        private = set()
        for b in blocks:
            self.assertFalse(b['ranges-truncated'])
            # pc.bios ends at 4 GiB; pc.ram starts at 0 (-m 512M).
            base = 2**32 - b['size'] if b['id'] == 'pc.bios' else 0
            for r in b['ranges']:
                if r['private'] and b['id'] in ('pc.bios', 'pc.ram'):
                    private.update(range(base + r['offset'],
                                         base + r['offset'] + r['size'],
                                         PAGE))
        return private

    def assert_launch_private(self, vm, info):
        """query-guest-memfd: every page the plan populated is private."""
        private = self.private_gpas(vm)
        ops = [o for o in info['operations']
               if o['command'] in ('snp-launch-update',
                                   'tdx-init-mem-region')]
        self.assertTrue(ops)
        for o in ops:
            missing = [hex(a) for a in range(o['gpa'], o['gpa'] + o['size'],
                                             PAGE) if a not in private]
            self.assertEqual(missing, [], 'not private after launch: %s' % o)

    def assert_sources_freed(self, vm, pages):
        """
        The shared copies that served as sources (@pages: (gpa, uaddr)):
        none of their pages is resident in QEMU any more, read from the
        process's pagemap. The guest runs after the launch and may make
        a launch page shared again (OVMF shares its GHCB pages), which
        brings its shared side back legitimately: only pages private in
        the record both before and after the pagemap is read count, and
        those must be nearly all of them.
        """
        deadline = time.monotonic() + 30
        while vm.cmd('query-guest-memfd')['discard-backlog']:
            self.assertLess(time.monotonic(), deadline, 'discard backlog')
            time.sleep(0.05)
        self.assertTrue(pages)
        before = self.private_gpas(vm)
        with open('/proc/%d/pagemap' % vm.get_pid(), 'rb') as pagemap:
            present = {gpa for gpa, uaddr in pages
                       if page_present(pagemap, uaddr)}
        still = before & self.private_gpas(vm)
        checked = [gpa for gpa, _ in pages if gpa in still]
        self.assertGreaterEqual(len(checked), len(pages) * 9 // 10,
                                'the guest shared most launch pages again')
        self.assertEqual([hex(g) for g in checked if g in present], [],
                         'source pages still resident')

    def check_snp(self, cbitpos, vector, *args, extra=''):
        cgs = SNP_CGS % cbitpos + extra
        vm, info, events = self.launch(SNP_FW, cgs, *args)
        standin = self.measured(events)
        self.assertEqual(standin['type'], 'sev-snp')
        self.assertEqual(standin['measurement'], info['measurement'])
        self.assertEqual(info['measurement'],
                         self.dry_run(SNP_FW, SNP_CGS % 51 + extra, *args))
        if vector:
            self.assertEqual(info['measurement'], vector)
        vcpus = int(args[args.index('-smp') + 1])
        self.assertEqual(standin['vcpus'], vcpus)
        self.assertEqual(len([e for e in events if e['event'] == 'vmsa']),
                         vcpus)
        self.assert_launch_private(vm, info)
        self.assert_sources_freed(vm, [(e['gpa'], e['uaddr']) for e in events
                                       if e['event'] == 'snp-page' and
                                       e['uaddr']])
        vm.shutdown()
        return events

    def test_snp_vectors(self):
        """V1 and V2: EPYC-v4 with 1 vCPU, EPYC-Milan with 4."""
        cbitpos = self.host_cbitpos()
        self.check_snp(cbitpos, V1, '-cpu', 'EPYC-v4', '-smp', '1')
        self.check_snp(cbitpos, V2, '-cpu', 'EPYC-Milan', '-smp', '4')

    def test_snp_more_models(self):
        """Other CPU models and vCPU counts: stand-in == QEMU == dry run."""
        cbitpos = self.host_cbitpos()
        self.check_snp(cbitpos, None, '-cpu', 'EPYC-Rome', '-smp', '2')

    def test_snp_reset_before_cont(self):
        """
        A system_reset between -S and the first run (issue 25, item 5)
        rewrites the firmware's shared copy and asks the manager to reset
        the record, before the launch hashes anything: the launch still
        measures what the commands read, and that is V1, the dry run's.
        Fails if the reset freed or changed the launch's sources.
        """
        cbitpos = self.host_cbitpos()
        args = ('-cpu', 'EPYC-v4', '-smp', '1')

        def reset(vm, report):
            vm.cmd('system_reset')
            vm.event_wait('RESET', timeout=60)

        vm, info, events = self.launch(SNP_FW, SNP_CGS % cbitpos, *args,
                                       before_cont=reset)
        self.assertEqual(self.measured(events)['measurement'],
                         info['measurement'])
        self.assertEqual(info['measurement'], V1)
        self.assert_launch_private(vm, info)
        vm.shutdown()

    def test_snp_kernel_hashes(self):
        """
        kernel-hashes=on with -kernel, -initrd and -append: the hashes
        page is populated as a normal page, and stand-in == QEMU == dry
        run == sev-snp-measure's value.
        """
        cbitpos = self.host_cbitpos()
        kernel = os.path.join(self.workdir, 'bz.img')
        initrd = os.path.join(self.workdir, 'initrd.img')
        synthetic_bzimage(kernel)
        synthetic_initrd(initrd)
        plain = self.dry_run_info(SNP_FW, SNP_CGS % 51, '-cpu', 'EPYC-v4',
                                  '-smp', '1')['operations']
        for vector, args in (
                (SNP_V4_1_KERNEL, ('-cpu', 'EPYC-v4', '-smp', '1',
                                   '-kernel', kernel,
                                   '-append', 'console=ttyS0')),
                (SNP_MILAN_2_KERNEL_INITRD, ('-cpu', 'EPYC-Milan', '-smp',
                                             '2', '-kernel', kernel,
                                             '-initrd', initrd, '-append',
                                             'root=/dev/vda quiet'))):
            events = self.check_snp(cbitpos, vector, *args,
                                    extra=',kernel-hashes=on')
            # The page that is a zero page without the hashes.
            hashes = [o['gpa'] for o in plain
                      if o.get('page-type') == 'zero' and
                      [e for e in events if e['event'] == 'snp-page' and
                       e['gpa'] == o['gpa'] and e['type'] == 1]]
            self.assertEqual(len(hashes), 1, 'one kernel hashes page')

    def check_tdx(self, *args, env=None):
        vm, info, events = self.launch(TDX_FW, TDX_CGS, '-cpu', 'host',
                                       *args, env=env)
        vcpus = int(args[args.index('-smp') + 1])
        standin = self.measured(events)
        self.assertEqual(standin['type'], 'tdx')
        self.assertEqual(standin['vcpus'], vcpus)
        self.assertEqual(len([e for e in events
                              if e['event'] == 'tdx-init-vcpu']), vcpus)
        self.assertEqual(standin['measurement'], info['measurement'])
        self.assertEqual(info['measurement'],
                         self.dry_run(TDX_FW, TDX_CGS, *args))
        self.assertEqual(info['measurement'], T1)
        return vm, info, events

    def test_tdx_vcpu_counts(self):
        """
        MRTD does not depend on -smp or -m: 3 vCPUs and 1 GiB launch with
        T1. (A TD takes no named CPU model at launch, so -cpu host.)
        """
        vm, _, _ = self.check_tdx('-smp', '3', '-m', '1G')
        vm.shutdown()

    def test_cbitpos_unmeasured(self):
        """The C-bit position changes nothing that SEV-SNP measures."""
        args = ('-cpu', 'EPYC-v4', '-smp', '1')
        self.assertEqual(self.dry_run(SNP_FW, SNP_CGS % 51, *args),
                         self.dry_run(SNP_FW, SNP_CGS % 8, *args))

    def test_snp_finish_data(self):
        """
        host-data and an ID block reach SNP_LAUNCH_FINISH; an ID block
        whose digest is not the launch digest is refused by the firmware
        (BAD_MEASUREMENT), and QEMU exits naming the command and the code.
        """
        cbitpos = self.host_cbitpos()
        host_data = bytes(range(32))

        def id_block(digest):
            return base64.b64encode(
                bytes.fromhex(digest) + bytes(32) +
                struct.pack('<IIQ', 1, 0, 0x30000)).decode()
        cgs = (SNP_CGS % cbitpos + ',host-data=%s,id-block=%s,id-auth=%s' %
               (base64.b64encode(host_data).decode(), id_block(V1),
                base64.b64encode(bytes(4096)).decode()))
        vm, info, events = self.launch(SNP_FW, cgs, '-cpu', 'EPYC-v4',
                                       '-smp', '1')
        standin = self.measured(events)
        self.assertEqual(standin['measurement'], V1)
        self.assertEqual(info['measurement'], V1)
        self.assertEqual(standin['host-data'], host_data.hex())
        self.assertEqual(standin['id-block-en'], 1)
        vm.shutdown()

        bad = cgs.replace(id_block(V1), id_block(V2))
        code, _, err = self.run_qemu(
            '-bios', self.fw(SNP_FW), '-machine',
            'q35,confidential-guest-support=sev0', '-object', bad,
            '-cpu', 'EPYC-v4', '-smp', '1', '-accel', 'kvm')
        self.assertEqual(code, 1, err)
        self.assertIn('SNP_LAUNCH_FINISH', err)
        self.assertIn('firmware error 11', err)

    def test_snp_update_fails(self):
        """
        SNP_LAUNCH_UPDATE failing with EIO and a firmware code: QEMU exits
        with status 1 and a message naming the command, GPA, size and
        page type, and the firmware's code; it does not crash.
        """
        cbitpos = self.host_cbitpos()
        code, _, err = self.run_qemu(
            '-bios', self.fw(SNP_FW), '-machine',
            'q35,confidential-guest-support=sev0', '-object',
            SNP_CGS % cbitpos, '-cpu', 'EPYC-v4', '-smp', '1', '-accel',
            'kvm', env={'GMEM_LAUNCH_STANDIN_FAIL':
                        'snp-launch-update:2:EIO:0x16'})
        self.assertEqual(code, 1, err)
        self.assertIn('snp-launch-update at 0x800000', err)
        self.assertIn('(zero)', err)
        self.assertRegex(err, r'fw_error=22|firmware error 22')

    def test_tdx_vector(self):
        """
        T1. A TD refuses a named CPU model at launch (MRTD does not depend
        on it): -cpu host. L1 runs with phys-bits=48 (test_gmem_rig.py)
        so that KVM's GuestPhysAddrSize is what KVM_TDX_INIT_VM accepts.
        """
        vm, info, events = self.launch(TDX_FW, TDX_CGS, '-cpu', 'host',
                                       '-smp', '1')
        standin = self.measured(events)
        self.assertEqual(standin['type'], 'tdx')
        self.assertEqual(standin['measurement'], info['measurement'])
        self.assertEqual(info['measurement'], self.dry_run(TDX_FW, TDX_CGS,
                                                           '-smp', '1'))
        self.assertEqual(info['measurement'], T1)
        self.assert_launch_private(vm, info)
        self.assert_sources_freed(vm, [
            (e['gpa'] + i * PAGE, e['uaddr'] + i * PAGE) for e in events
            if e['event'] == 'tdx-region' for i in range(e['pages'])])
        # tdx-guest adds no migration blocker: the gmem layer's does.
        resp = vm.qmp('migrate', uri='exec:cat > /dev/null')
        self.assertIn('guest_memfd memory: KVM cannot log', str(resp))
        vm.shutdown()

    def test_tdx_retries(self):
        """
        The failures Linux 7.2 means to be retried, each once: INIT_VM's
        EAGAIN (TDH.MNG.CREATE without entropy, __tdx_td_init()),
        INIT_MEM_REGION's EINTR after part of the region (a signal;
        tdx_vcpu_init_mem_region() copies the progress back) and EAGAIN,
        FINALIZE_VM's EBUSY (TDX_OPERAND_BUSY, tdx_td_finalize()). QEMU
        issues each again, and MRTD is unchanged.
        """
        fail = ('tdx-init-vm:1:EAGAIN,tdx-init-mem-region:1:EINTR,'
                'tdx-init-mem-region:3:EAGAIN,'
                'tdx-finalize-vm:1:EBUSY:%#x' % TDX_OPERAND_BUSY)
        vm, info, events = self.check_tdx(
            '-smp', '2', env={'GMEM_LAUNCH_STANDIN_FAIL': fail})
        injected = [(e['command'], e['errno']) for e in events
                    if e['event'] == 'injected']
        self.assertEqual(injected, [('tdx-init-vm', 11),
                                    ('tdx-init-mem-region', 4),
                                    ('tdx-init-mem-region', 11),
                                    ('tdx-finalize-vm', 16)])
        self.assertEqual([e for e in events if e['event'] == 'refused'], [])
        self.assert_launch_private(vm, info)
        vm.shutdown()

    def check_failures(self, fw, cgs, args, cases):
        """
        Each (failure, what QEMU's message must name): QEMU exits with
        status 1 (no signal, no hang) and a message naming the command
        and the errno; the stand-in injected it.
        """
        for fail, names in cases:
            with self.subTest(fail=fail):
                report = os.path.join(self.workdir, 'fail-%s.jsonl' %
                                      fail.replace(':', '-'))
                code, _, err = self.run_qemu(
                    '-bios', self.fw(fw), '-machine',
                    'q35,confidential-guest-support=%s' %
                    cgs.split('id=')[1].split(',')[0], '-object', cgs,
                    *args, '-accel', 'kvm',
                    env={'GMEM_LAUNCH_STANDIN_FAIL': fail,
                         'GMEM_LAUNCH_STANDIN_REPORT': report})
                self.assertEqual(code, 1, err)
                injected = [e for e in self.report(report)
                            if e['event'] == 'injected']
                self.assertTrue(injected, err)
                self.assertEqual(injected[0]['command'], fail.split(':')[0])
                for name in names:
                    self.assertIn(name, err)
                errno = injected[-1]['errno']
                self.assertTrue(os.strerror(errno) in err or
                                'ret=-%d ' % errno in err, err)
                self.assertEqual(self.qemu_alive(), [])

    @staticmethod
    def describe(op):
        """As launch_op_describe() names a memory operation."""
        kind = ('%s' % op['page-type'] if 'page-type' in op else
                'measured' if op['measured'] else 'not measured')
        return '%s at %#x +%#x (%s)' % (op['command'], op['gpa'],
                                        op['size'], kind)

    def test_snp_commands_fail(self):
        """
        KVM_SEV_INIT2, SNP_LAUNCH_START, SNP_LAUNCH_UPDATE and
        SNP_LAUNCH_FINISH failing as Linux 7.2's sev.c can make them:
        EFAULT (copy_from_user), EINVAL (the checks), EIO with the
        firmware's code in the command's error field (the PSP's answer;
        kvm_gmem_populate() failing is EIO too), and EBUSY, EBADF, ENOTTY
        where the function has them. None is retried (7.2 documents no
        retry for them). The update names its GPA, size and page type.
        """
        cbitpos = self.host_cbitpos()
        args = ('-cpu', 'EPYC-v4', '-smp', '1')
        ops = [o for o in self.dry_run_info(SNP_FW, SNP_CGS % 51,
                                            *args)['operations']
               if o['command'] == 'snp-launch-update']
        update = self.describe(ops[1])     # the second call
        self.check_failures(SNP_FW, SNP_CGS % cbitpos, args, [
            ('sev-init2:1:EINVAL', ['KVM_SEV_INIT2', 'fw_error=0']),
            ('sev-init2:1:EFAULT', ['KVM_SEV_INIT2']),
            ('sev-init2:1:EBUSY', ['KVM_SEV_INIT2']),
            ('sev-init2:1:EIO:1', ['KVM_SEV_INIT2', 'fw_error=1']),
            ('snp-launch-start:1:EINVAL', ['SNP_LAUNCH_START']),
            ('snp-launch-start:1:EFAULT', ['SNP_LAUNCH_START']),
            ('snp-launch-start:1:EBADF', ['SNP_LAUNCH_START']),
            ('snp-launch-start:1:ENOTTY', ['SNP_LAUNCH_START']),
            ('snp-launch-start:1:EIO:7', ['SNP_LAUNCH_START',
                                          'fw_error=7']),
            ('snp-launch-update:2:EINVAL', ['SNP_LAUNCH_UPDATE', update,
                                            'firmware error 0']),
            ('snp-launch-update:2:EFAULT', ['SNP_LAUNCH_UPDATE', update]),
            ('snp-launch-update:2:EIO:0x16', ['SNP_LAUNCH_UPDATE', update,
                                              'firmware error 22']),
            ('snp-launch-finish:1:EINVAL', ['SNP_LAUNCH_FINISH']),
            ('snp-launch-finish:1:EFAULT', ['SNP_LAUNCH_FINISH']),
            ('snp-launch-finish:1:EBUSY', ['SNP_LAUNCH_FINISH']),
            ('snp-launch-finish:1:EIO:3', ['SNP_LAUNCH_FINISH',
                                           'firmware error 3']),
        ])

    def test_tdx_commands_fail(self):
        """
        KVM_TDX_INIT_VM, INIT_VCPU, INIT_MEM_REGION and FINALIZE_VM failing
        as Linux 7.2's tdx.c can make them: EFAULT, EINVAL (INIT_VM's
        TDX_OPERAND_INVALID in hw_error), EIO (a SEAMCALL error), E2BIG,
        ENOMEM; and the retried ones when they do not stop (INIT_VM's
        EAGAIN, FINALIZE_VM's EBUSY): QEMU gives up and exits. The
        region names its GPA, size and whether it is measured; vCPU
        commands have no hw_error (tdx_vcpu_unlocked_ioctl() does not
        copy the command back).
        """
        args = ('-cpu', 'host', '-smp', '2')
        ops = [o for o in self.dry_run_info(TDX_FW, TDX_CGS,
                                            '-smp', '2')['operations']
               if o['command'] == 'tdx-init-mem-region']
        region = self.describe(ops[1])
        self.check_failures(TDX_FW, TDX_CGS, args, [
            ('tdx-init-vm:1:EINVAL:%#x' % TDX_OPERAND_INVALID,
             ['KVM_TDX_INIT_VM', 'hw_errors: %#x' % TDX_OPERAND_INVALID]),
            ('tdx-init-vm:1:EFAULT', ['KVM_TDX_INIT_VM']),
            ('tdx-init-vm:1:E2BIG', ['KVM_TDX_INIT_VM']),
            ('tdx-init-vm:1:EIO', ['KVM_TDX_INIT_VM']),
            ('tdx-init-vm:1+:EAGAIN', ['KVM_TDX_INIT_VM', 'entropy']),
            ('tdx-init-vcpu:2:EINVAL', ['KVM_TDX_INIT_VCPU',
                                        'tdx-init-vcpu of vCPU 1']),
            ('tdx-init-vcpu:1:ENOMEM', ['KVM_TDX_INIT_VCPU',
                                        'tdx-init-vcpu of vCPU 0']),
            ('tdx-init-vcpu:1:EIO', ['KVM_TDX_INIT_VCPU']),
            ('tdx-init-mem-region:2:EINVAL', ['KVM_TDX_INIT_MEM_REGION',
                                              region]),
            ('tdx-init-mem-region:2:EFAULT', ['KVM_TDX_INIT_MEM_REGION',
                                              region]),
            ('tdx-init-mem-region:2:EIO', ['KVM_TDX_INIT_MEM_REGION',
                                           region]),
            ('tdx-finalize-vm:1:EINVAL', ['KVM_TDX_FINALIZE_VM']),
            ('tdx-finalize-vm:1:EIO:0xc000060000000000',
             ['KVM_TDX_FINALIZE_VM', 'hw_errors: 0xc000060000000000']),
            ('tdx-finalize-vm:1+:EBUSY:%#x' % TDX_OPERAND_BUSY,
             ['KVM_TDX_FINALIZE_VM', 'hw_errors: %#x' % TDX_OPERAND_BUSY]),
        ])


if __name__ == '__main__':
    QemuSystemTest.main()
