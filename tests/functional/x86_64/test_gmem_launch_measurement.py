#!/usr/bin/env python3
#
# The launch plan's dry run (measure-only=on): QEMU builds the machine and
# the SEV-SNP or TDX launch plan without KVM and prints the measurement.
# Debian's own firmware (build-aux/fetch-firmware.sh) against measurements
# computed by independent tools; broken firmware and impossible
# configurations against clear errors.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import base64
import json
import os
import struct
import subprocess
import uuid

from qemu_test import QemuSystemTest

SNP_FW = 'OVMF.amdsev.fd'
TDX_FW = 'OVMF.inteltdx.ms.fd'
SNP = 'sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,measure-only=on'
TDX = 'tdx-guest,id=tdx0,measure-only=on'

# ../shared/launch-vectors.md: sev-snp-measure 0.0.13 and an independent
# implementation of the TDX module's rules.
V1 = ('d74bd3ea40b240c3228edc5177ce6193561ebff633dbd0be'
      '76d6c143b876d65102425c0e2e8a930857c48daa5eacda58')
V2 = ('c995d6122aacbc0434128f0c63783f03b7caec3f8f429294'
      '8522a00c0395ff126f1633d8346a20aa85f8dd3bd8739a38')
T1 = ('a7a1f751abc454f9cbab198ca8d2edb2821935df525c7418'
      '2b5e776cb0929e8c59aefecce725b0d08a5e9d3d3183bd08')

# virtee/sev-snp-measure (git 8f2b337), run by hand on the same firmware:
#   sev-snp-measure.py --mode snp --vcpus N --vcpu-type MODEL --ovmf FW
#       [--kernel bz.img [--initrd initrd.img] --append CMDLINE]
# with bz.img and initrd.img as synthetic_bzimage() and synthetic_initrd()
# write them.
SNP_ROME_2 = ('d58b370dc10b968d4500dd971c4829b87e8ba1101565a454'
              '67aa52ef904b31fc431b42041135e0ad1dad9bdd08e287f9')
SNP_GENOA_3 = ('45fcf75f878072a0ccdce359c1753cd670dfe36bf1ca418c'
               'cbdc001e12f543dbb3e39b678e80fbe3eff2d3091a20d68a')
SNP_V4_1_KERNEL = ('fcf28fdcc8b3454c05e84c0e4b883fc2860130ea240ef72d'
                   '04cfb97d2d9a333ae53c4cfc24ffa07477c8b82dda3a3d58')
SNP_MILAN_2_KERNEL_INITRD = ('3d09d1119bae89c57fa6b9d038d6d77106edb43b3118c5aa'
                             '08254afffde19618a8105ec9ba0720b1ebaab608a8b559ff')

OVMF_TABLE_FOOTER = uuid.UUID('96b582de-1fb2-45f7-baea-a366c55a082d')
SEV_METADATA_GUID = uuid.UUID('dc886566-984a-4798-a75e-5585a7bf67cc')
TDX_METADATA_GUID = uuid.UUID('e47a6535-984a-4798-865e-4685a7bf8ec2')


def synthetic_bzimage(path):
    """A bzImage header (boot protocol 2.15) and 12 KiB of pattern."""
    setup = bytearray(512 * 5)
    setup[0x1f1] = 4                                    # setup_sects
    struct.pack_into('<H', setup, 0x1fe, 0xaa55)
    setup[0x202:0x206] = b'HdrS'
    struct.pack_into('<H', setup, 0x206, 0x020f)
    setup[0x211] = 0x01                                 # LOADED_HIGH
    struct.pack_into('<I', setup, 0x22c, 0x7fffffff)    # initrd_addr_max
    struct.pack_into('<I', setup, 0x238, 2048)          # cmdline_size
    kernel = bytes((i * 7 + 3) & 0xff for i in range(12288))
    with open(path, 'wb') as f:
        f.write(bytes(setup) + kernel)


def synthetic_initrd(path):
    with open(path, 'wb') as f:
        f.write(bytes((i * 13) & 0xff for i in range(3000)))


def ovmf_table_entry(image, guid):
    """Offset of the data of @guid's entry in OVMF's GUID table."""
    footer = len(image) - 0x20 - 18
    assert uuid.UUID(bytes_le=bytes(image[footer + 2:footer + 18])) == \
        OVMF_TABLE_FOOTER
    end = footer + 18 - struct.unpack_from('<H', image, footer)[0]
    pos = footer
    while pos > end:
        entry_guid = uuid.UUID(bytes_le=bytes(image[pos - 16:pos]))
        size = struct.unpack_from('<H', image, pos - 18)[0]
        if entry_guid == guid:
            return pos - size
        pos -= size
    raise KeyError(guid)


def metadata_offset(image, guid, signature):
    """Offset of the SEV ("ASEV") or TDVF metadata block in @image."""
    data = ovmf_table_entry(image, guid)
    offset = len(image) - struct.unpack_from('<I', image, data)[0]
    assert image[offset:offset + 4] == signature
    return offset


class LaunchMeasurement(QemuSystemTest):

    def setUp(self):
        super().setUp()
        if os.environ.get('QEMU_GMEM_FIRMWARE_ERROR'):
            self.fail(os.environ['QEMU_GMEM_FIRMWARE_ERROR'])
        self.fw_dir = os.environ.get('QEMU_GMEM_FIRMWARE_DIR')
        if not self.fw_dir:
            self.skipTest('QEMU_GMEM_FIRMWARE_DIR is not set: run through '
                          'make check, which fetches Debian\'s ovmf-amdsev '
                          'and ovmf-inteltdx')

    def dry_run(self, fw, cgs, *args, machine='q35'):
        """Run the dry run; (exit code, stdout, stderr without warnings)."""
        cgs_id = cgs.split('id=')[1].split(',')[0]
        fw = fw if os.path.isabs(fw) else os.path.join(self.fw_dir, fw)
        cmd = [self.qemu_bin, '-bios', fw, '-machine',
               '%s,confidential-guest-support=%s' % (machine, cgs_id),
               '-object', cgs, '-display', 'none', *args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                           check=False)
        err = '\n'.join(line for line in p.stderr.splitlines()
                        if 'warning: TCG doesn' not in line)
        self.log.info('%s: exit %d\n%s', ' '.join(cmd), p.returncode, err)
        return p.returncode, p.stdout, err

    def measure(self, fw, cgs, *args):
        code, out, err = self.dry_run(fw, cgs, *args)
        self.assertEqual(code, 0, err)
        result = json.loads(out)
        self.assertEqual(set(result),
                         {'type', 'measurement', 'launched', 'operations'})
        self.assertFalse(result['launched'])
        return result

    def assert_refused(self, fw, cgs, *args, message):
        """A clear error and exit status 1: no abort, no crash."""
        code, _, err = self.dry_run(fw, cgs, *args)
        self.assertEqual(code, 1, err)
        self.assertIn(message, err)

    def broken_firmware(self, fw, edit):
        """A copy of @fw with @edit(bytearray) applied."""
        with open(os.path.join(self.fw_dir, fw), 'rb') as f:
            image = bytearray(f.read())
        edit(image)
        path = os.path.join(self.workdir, 'broken-' + fw)
        with open(path, 'wb') as f:
            f.write(image)
        return path

    def firmware_without(self, fw, guid, signature):
        """A copy of @fw whose metadata block @signature is clobbered."""
        def clobber(image):
            off = metadata_offset(image, guid, signature)
            image[off:off + 4] = b'XXXX'
        return self.broken_firmware(fw, clobber)

    # The vectors of ../shared/launch-vectors.md, byte for byte.

    def test_snp_v1(self):
        r = self.measure(SNP_FW, SNP, '-cpu', 'EPYC-v4', '-smp', '1')
        self.assertEqual(r['type'], 'sev-snp')
        self.assertEqual(r['measurement'], V1)

    def test_snp_v2(self):
        r = self.measure(SNP_FW, SNP, '-cpu', 'EPYC-Milan', '-smp', '4')
        self.assertEqual(r['measurement'], V2)

    def test_tdx_t1(self):
        r = self.measure(TDX_FW, TDX, '-smp', '1')
        self.assertEqual(r['type'], 'tdx')
        self.assertEqual(r['measurement'], T1)

    # Beyond the listed vectors: other CPU models, vCPU counts, kernels.

    def test_snp_other_cpu_models(self):
        r = self.measure(SNP_FW, SNP, '-cpu', 'EPYC-Rome', '-smp', '2')
        self.assertEqual(r['measurement'], SNP_ROME_2)
        r = self.measure(SNP_FW, SNP, '-cpu', 'EPYC-Genoa', '-smp', '3')
        self.assertEqual(r['measurement'], SNP_GENOA_3)

    def test_snp_kernel_hashes(self):
        kernel = os.path.join(self.workdir, 'bz.img')
        initrd = os.path.join(self.workdir, 'initrd.img')
        synthetic_bzimage(kernel)
        synthetic_initrd(initrd)
        hashes = SNP + ',kernel-hashes=on'
        r = self.measure(SNP_FW, hashes, '-cpu', 'EPYC-v4', '-smp', '1',
                         '-kernel', kernel, '-append', 'console=ttyS0')
        self.assertEqual(r['measurement'], SNP_V4_1_KERNEL)
        r = self.measure(SNP_FW, hashes, '-cpu', 'EPYC-Milan', '-smp', '2',
                         '-kernel', kernel, '-initrd', initrd,
                         '-append', 'root=/dev/vda quiet')
        self.assertEqual(r['measurement'], SNP_MILAN_2_KERNEL_INITRD)
        # Without kernel-hashes the kernel is not measured at all.
        r = self.measure(SNP_FW, SNP, '-cpu', 'EPYC-v4', '-smp', '1',
                         '-kernel', kernel, '-append', 'console=ttyS0')
        self.assertEqual(r['measurement'], V1)

    def test_snp_plan(self):
        ops = self.measure(SNP_FW, SNP, '-cpu', 'EPYC-v4', '-smp', '3',
                           '-m', '1G')['operations']
        size = os.path.getsize(os.path.join(self.fw_dir, SNP_FW))
        self.assertEqual(ops[0], {'command': 'snp-launch-update',
                                  'gpa': (1 << 32) - size, 'size': size,
                                  'page-type': 'normal'})
        types = [o.get('page-type') for o in ops]
        for t in ('zero', 'secrets', 'cpuid'):
            self.assertIn(t, types)
        vmsas = [o for o in ops if o['command'] == 'snp-launch-update-vmsa']
        self.assertEqual([o['cpu-index'] for o in vmsas], [0, 1, 2])
        self.assertTrue(all(o['gpa'] == 0xfffffffff000 for o in vmsas))
        self.assertEqual(ops[-1], {'command': 'snp-launch-finish'})
        updates = [o for o in ops if o['command'] == 'snp-launch-update']
        self.assertEqual(ops, updates + vmsas + [ops[-1]])
        for o in updates:
            self.assertEqual(o['gpa'] % 4096, 0)
            self.assertEqual(o['size'] % 4096, 0)

    def test_plan_trace(self):
        code, _, err = self.dry_run(SNP_FW, SNP, '-cpu', 'EPYC-v4',
                                    '-trace', 'launch_plan_*')
        self.assertEqual(code, 0, err)
        self.assertIn('launch_plan_complete sev-snp plan of 10 operations',
                      err)
        self.assertIn('launch_plan_op 0: snp-launch-update at 0xffc00000 '
                      '+0x400000 (normal)', err)
        self.assertIn('launch_plan_op 8: snp-launch-update-vmsa of vCPU 0',
                      err)

    def test_tdx_plan(self):
        r = self.measure(TDX_FW, TDX, '-smp', '4', '-m', '2G')
        # MRTD covers the firmware only: not vCPUs, not RAM size.
        self.assertEqual(r['measurement'], T1)
        ops = r['operations']
        self.assertEqual(ops[0], {'command': 'tdx-init-vm'})
        self.assertEqual([o.get('cpu-index') for o in ops[1:5]],
                         [0, 1, 2, 3])
        self.assertEqual(ops[-1], {'command': 'tdx-finalize-vm'})
        regions = [o for o in ops if o['command'] == 'tdx-init-mem-region']
        self.assertEqual(len(ops), 1 + 4 + len(regions) + 1)
        self.assertEqual([(o['gpa'], o['size'], o['measured'])
                          for o in regions],
                         [(0xffc84000, 0x37c000, True),
                          (0xffc00000, 0x84000, False),
                          (0x810000, 0x10000, False),
                          (0x80b000, 0x2000, False),
                          (0x809000, 0x2000, False),
                          (0x800000, 0x6000, False)])

    # Bad inputs: each a clear error, exit status 1, never an abort.

    def libvirt_sev_snp(self, firmware):
        """
        The command line Debian's libvirt 11.3 generates for
        <launchSecurity type='sev-snp' authorKey='yes' vcek='no'> (its
        tests/qemuxmlconfdata/launch-security-sev-snp.x86_64-latest.args,
        devices and sockets left out), with measure-only added and
        -accel kvm left out: the dry run. Returns (exit code, stdout,
        stderr).
        """
        b64 = lambda data: base64.b64encode(data).decode()
        snp = {'qom-type': 'sev-snp-guest', 'id': 'lsec0', 'cbitpos': 47,
               'reduced-phys-bits': 1, 'policy': 196608,
               'guest-visible-workarounds': b64(b'libvirtlibvirtli'),
               'id-block': b64((b'libvirt' * 14)[:96]),
               'id-auth': b64((b'libvirt' * 600)[:4096]),
               'host-data': b64((b'libvirt' * 5)[:32]),
               'author-key-enabled': True, 'vcek-disabled': True,
               'measure-only': True}
        machine = ('pc-q35-8.2,usb=off,dump-guest-core=off,'
                   'memory-backend=pc.ram,confidential-guest-support=lsec0,'
                   'acpi=on')
        cmd = [self.qemu_bin, *firmware(os.path.join(self.fw_dir, SNP_FW)),
               '-machine', machine, '-cpu', 'qemu64', '-m', 'size=219136k',
               '-object', '{"qom-type":"memory-backend-ram","id":"pc.ram",'
               '"size":224395264}', '-overcommit', 'mem-lock=off',
               '-smp', '1,sockets=1,cores=1,threads=1', '-display', 'none',
               '-no-user-config', '-nodefaults', '-object', json.dumps(snp)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                           check=False)
        return p.returncode, p.stdout, p.stderr

    def test_libvirt_sev_snp_rom(self):
        # <loader type='rom'>: libvirt passes -bios, and the dry run
        # measures libvirt's own command line.
        code, out, err = self.libvirt_sev_snp(lambda fw: ['-bios', fw])
        self.assertEqual(code, 0, err)
        result = json.loads(out)
        self.assertEqual(result['type'], 'sev-snp')
        self.assertEqual(len(result['measurement']), 96)
        self.assertEqual(result['operations'][0]['gpa'], 0xffc00000)
        self.assertEqual(result['operations'][-1]['command'],
                         'snp-launch-finish')

    def test_libvirt_sev_snp_pflash_refused(self):
        # <loader stateless='yes'>: libvirt maps the firmware as pflash,
        # which is not guest_memfd RAM; SNP_LAUNCH_UPDATE could not take it
        # (nor can an SNP VM have KVM's read-only memslots), and the plan
        # says so before anything runs.
        def pflash(fw):
            return ['-blockdev', json.dumps({
                        'driver': 'file', 'filename': fw,
                        'node-name': 'libvirt-pflash0-storage',
                        'auto-read-only': True, 'discard': 'unmap'}),
                    '-blockdev', '{"node-name":"libvirt-pflash0-format",'
                    '"read-only":true,"driver":"raw",'
                    '"file":"libvirt-pflash0-storage"}',
                    '-machine', 'pflash0=libvirt-pflash0-format']
        code, out, err = self.libvirt_sev_snp(pflash)
        self.assertEqual(code, 1, err)
        self.assertIn('launch operation 0, snp-launch-update at 0xffc00000 '
                      '+0x400000 (normal): not all of it is guest RAM', err)

    def test_snp_firmware_without_metadata(self):
        self.assert_refused(
            '/usr/share/seabios/bios-256k.bin', SNP,
            message='failed to locate and/or save reset vector')
        self.assert_refused(
            self.firmware_without(SNP_FW, SEV_METADATA_GUID, b'ASEV'), SNP,
            message='the firmware has no SEV metadata')

    def test_tdx_firmware_without_tdvf(self):
        self.assert_refused('/usr/share/seabios/bios-256k.bin', TDX,
                            message='the firmware has no valid TDVF metadata')
        self.assert_refused(
            self.firmware_without(TDX_FW, TDX_METADATA_GUID, b'TDVF'), TDX,
            message='the firmware has no valid TDVF metadata')

    def test_snp_kernel_hashes_without_kernel(self):
        self.assert_refused(SNP_FW, SNP + ',kernel-hashes=on',
                            message='kernel-hashes=on needs -kernel')

    def test_snp_kernel_hashes_without_hashes_page(self):
        kernel = os.path.join(self.workdir, 'bz.img')
        synthetic_bzimage(kernel)

        def no_hashes_page(image):
            off = metadata_offset(image, SEV_METADATA_GUID, b'ASEV')
            count = struct.unpack_from('<I', image, off + 12)[0]
            for i in range(count):
                desc = off + 16 + 12 * i
                if struct.unpack_from('<I', image, desc + 8)[0] == 0x10:
                    struct.pack_into('<I', image, desc + 8, 1)
        fw = self.broken_firmware(SNP_FW, no_hashes_page)
        self.assert_refused(fw, SNP + ',kernel-hashes=on', '-kernel', kernel,
                            message='has no kernel hashes page')

    def tdvf_section(self, index, address):
        """TDX firmware whose TDVF section @index moves to @address."""
        def move(image):
            off = metadata_offset(image, TDX_METADATA_GUID, b'TDVF')
            struct.pack_into('<Q', image, off + 16 + 32 * index + 8, address)
        return self.broken_firmware(TDX_FW, move)

    def test_tdx_overlapping_sections(self):
        # TEMP_MEM 0x810000 +0x10000 moved onto TEMP_MEM 0x80b000 +0x2000.
        self.assert_refused(self.tdvf_section(2, 0x80a000), TDX,
                            message='overlaps operation')

    def test_tdx_section_outside_ram(self):
        self.assert_refused(self.tdvf_section(2, 0x7f000000), TDX,
                            '-m', '512M', message='not all of it is guest RAM')

    def test_snp_overlapping_sections(self):
        def overlap(image):
            off = metadata_offset(image, SEV_METADATA_GUID, b'ASEV')
            first = struct.unpack_from('<I', image, off + 16)[0]
            struct.pack_into('<I', image, off + 16 + 12, first + 0x1000)
        self.assert_refused(self.broken_firmware(SNP_FW, overlap), SNP,
                            message='overlaps operation 1')

    def test_snp_section_outside_ram(self):
        def move(image):
            off = metadata_offset(image, SEV_METADATA_GUID, b'ASEV')
            struct.pack_into('<I', image, off + 16, 0x7f000000)
        self.assert_refused(self.broken_firmware(SNP_FW, move), SNP,
                            '-m', '512M', message='Failed to get HVA')

    def test_dry_run_of_another_object(self):
        # measure-only on an object the machine does not use.
        p = subprocess.run([self.qemu_bin, '-machine', 'q35', '-display',
                            'none', '-object', SNP], capture_output=True,
                           text=True, timeout=60, check=False)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("is not the machine's confidential-guest-support",
                      p.stderr)

    def test_vcpu_hotplug_refused(self):
        self.assert_refused(SNP_FW, SNP, '-smp', '1,maxcpus=2',
                            message='maxcpus (2) must equal')
        self.assert_refused(TDX_FW, TDX, '-smp', '2,maxcpus=4',
                            message='maxcpus (4) must equal')


class LaunchMeasurementMonitor(QemuSystemTest):
    """query-launch-measurement where there is no plan."""

    def test_no_plan(self):
        self.set_machine('q35')
        self.vm.add_args('-S', '-display', 'none')
        self.vm.launch()
        schema = self.vm.qmp('query-qmp-schema')['return']
        self.assertIn('query-launch-measurement',
                      [e['name'] for e in schema if e['meta-type'] ==
                       'command'])
        r = self.vm.qmp('query-launch-measurement')
        self.assertEqual(r['error']['class'], 'GenericError')
        self.assertIn('not a SEV-SNP or TDX guest', r['error']['desc'])
        out = self.vm.cmd('human-monitor-command',
                          command_line='info launch-measurement')
        self.assertIn('no launch plan', out)
        # A dry run is chosen on the command line, never on a running VM.
        r = self.vm.qmp('object-add', {'qom-type': 'sev-snp-guest',
                                       'id': 'late', 'cbitpos': 51,
                                       'reduced-phys-bits': 1,
                                       'measure-only': True})
        self.assertIn('only on the command line', r['error']['desc'])
        self.assertEqual(self.vm.cmd('query-status')['status'], 'prelaunch')
        self.vm.shutdown()


if __name__ == '__main__':
    QemuSystemTest.main()
