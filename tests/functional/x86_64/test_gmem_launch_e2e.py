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

from test_gmem_launch_measurement import V1, V2, T1

SNP_FW = 'OVMF.amdsev.fd'
TDX_FW = 'OVMF.inteltdx.ms.fd'
SNP_CGS = 'sev-snp-guest,id=sev0,cbitpos=%d,reduced-phys-bits=1'
TDX_CGS = 'tdx-guest,id=tdx0'

KVM_CHECK_EXTENSION = 0xae03
KVM_CAP_VM_TYPES = 235
KVM_X86_SW_PROTECTED_VM = 1
PAGE = 4096


def page_present(pagemap, addr):
    """Whether the page at @addr of the process is resident (pagemap)."""
    pagemap.seek(addr // PAGE * 8)
    return bool(struct.unpack('<Q', pagemap.read(8))[0] & (1 << 63))


class LaunchEndToEnd(QemuSystemTest):

    timeout = 900

    def setUp(self):
        super().setUp()
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
        with open('/dev/kvm') as kvm:
            types = fcntl.ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES)
        if not types & (1 << KVM_X86_SW_PROTECTED_VM):
            self.fail('this KVM has no KVM_X86_SW_PROTECTED_VM: the test '
                      'runs in the nested rig (test_gmem_rig.py)')
        self.launches = 0

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
                            *args], capture_output=True, text=True,
                           timeout=300, env=run_env, check=False)
        self.log.info('%s: exit %d\n%s', ' '.join(args), p.returncode,
                      p.stderr)
        return p.returncode, p.stdout, p.stderr

    def dry_run(self, fw, cgs, *args):
        code, out, err = self.run_qemu(
            '-bios', self.fw(fw), '-machine',
            'q35,confidential-guest-support=%s' % cgs.split('id=')[1]
            .split(',')[0], '-object', cgs + ',measure-only=on', *args,
            standin=False)
        self.assertEqual(code, 0, err)
        return json.loads(out)['measurement']

    def launch(self, fw, cgs, *args, env=None):
        """
        Launch through the stand-in and return (vm, its
        query-launch-measurement, the stand-in's report). SEV-SNP
        launches when the VM first runs, TDX when the machine is built.
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
                    '-object', cgs, '-accel', 'kvm', '-m', '512M',
                    '-display', 'none', '-S', *args)
        vm.launch()
        if 'sev-snp' in cgs:
            vm.cmd('cont')
        info = vm.cmd('query-launch-measurement')
        self.assertTrue(info['launched'])
        with open(report) as f:
            events = [json.loads(line) for line in f]
        return vm, info, events

    def measured(self, events):
        m = [e for e in events if e['event'] == 'measurement']
        self.assertEqual(len(m), 1, 'one measurement in the report')
        return m[0]

    def assert_launch_private(self, vm, info):
        """query-guest-memfd: every page the plan populated is private."""
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
        ops = [o for o in info['operations']
               if o['command'] in ('snp-launch-update',
                                   'tdx-init-mem-region')]
        self.assertTrue(ops)
        for o in ops:
            missing = [hex(a) for a in range(o['gpa'], o['gpa'] + o['size'],
                                             PAGE) if a not in private]
            self.assertEqual(missing, [], 'not private after launch: %s' % o)

    def assert_sources_freed(self, vm, sources):
        """
        The shared copies that served as sources: none of their pages is
        resident in QEMU any more, read from the process's pagemap.
        """
        deadline = time.monotonic() + 30
        while vm.cmd('query-guest-memfd')['discard-backlog']:
            self.assertLess(time.monotonic(), deadline, 'discard backlog')
            time.sleep(0.05)
        self.assertTrue(sources)
        with open('/proc/%d/pagemap' % vm.get_pid(), 'rb') as pagemap:
            resident = [hex(a) for a in sources if page_present(pagemap, a)]
        self.assertEqual(resident, [], 'source pages still resident')

    def check_snp(self, cbitpos, vector, *args):
        cgs = SNP_CGS % cbitpos
        vm, info, events = self.launch(SNP_FW, cgs, *args)
        standin = self.measured(events)
        self.assertEqual(standin['type'], 'sev-snp')
        self.assertEqual(standin['measurement'], info['measurement'])
        self.assertEqual(info['measurement'],
                         self.dry_run(SNP_FW, SNP_CGS % 51, *args))
        if vector:
            self.assertEqual(info['measurement'], vector)
        vcpus = int(args[args.index('-smp') + 1])
        self.assertEqual(standin['vcpus'], vcpus)
        self.assertEqual(len([e for e in events if e['event'] == 'vmsa']),
                         vcpus)
        self.assert_launch_private(vm, info)
        self.assert_sources_freed(vm, [e['uaddr'] for e in events
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
            e['uaddr'] + i * PAGE for e in events
            if e['event'] == 'tdx-region' for i in range(e['pages'])])
        vm.shutdown()

    def test_tdx_retry(self):
        """
        KVM_TDX_INIT_MEM_REGION failing with EAGAIN (the TDX module busy):
        QEMU issues it again and MRTD is unchanged.
        """
        vm, info, events = self.launch(
            TDX_FW, TDX_CGS, '-cpu', 'host', '-smp', '2',
            env={'GMEM_LAUNCH_STANDIN_FAIL': 'tdx-init-mem-region:3:EAGAIN'})
        self.assertTrue([e for e in events if e['event'] == 'injected'])
        self.assertEqual(self.measured(events)['measurement'], T1)
        self.assertEqual(info['measurement'], T1)
        vm.shutdown()


if __name__ == '__main__':
    QemuSystemTest.main()
