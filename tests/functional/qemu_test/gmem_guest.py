# Host side of the gmem test guest (tests/guest): how to boot it, read its
# debugcon protocol, and check its RAM patterns through QMP.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import glob
import os
import subprocess
import sys
import time

from .kvm_caps import (KVM_X86_SW_PROTECTED_VM,  # noqa: F401 (re-export)
                       kvm_in_place_guest_memfd, kvm_vm_types)
from .testcase import QemuSystemTest

# isa-debug-exit turns the guest's exit code c into QEMU status (c << 1) | 1.
EXIT_PASSED = 1
EXIT_FAILED = 3
EXIT_GUEST_ERROR = 5

PATTERN_SEED_BASE = 0x9e3779b97f4a7c15


def guest_kernel():
    """Path of the built test guest, or None when it was not built."""
    path = os.environ.get('QEMU_GMEM_TEST_GUEST')
    if path and os.path.exists(path):
        return path
    return None


def guest_args(kernel, debugcon_path, command_line, reboot=False):
    """
    QEMU arguments that boot the test guest with its two ports. Unless
    @reboot, a reset ends QEMU (-no-reboot), QMP system_reset included.
    """
    return ['-kernel', kernel, '-append', command_line,
            '-name', 'gmem-guest,debug-threads=on',     # for stuck_report()
            '-debugcon', 'file:' + debugcon_path,
            '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04',
            '-display', 'none', '-vga', 'none', '-nodefaults'] + \
        ([] if reboot else ['-no-reboot'])


def pattern_seed(seed_arg=0):
    return PATTERN_SEED_BASE ^ seed_arg


def parse_fields(text):
    """'a=1 ranges=0x1-0x2,0x3-0x4' -> {'a': '1', 'ranges': '...'}"""
    fields = {}
    for word in text.split():
        key, sep, value = word.partition('=')
        if sep:
            fields[key] = value
    return fields


def parse_ranges(text):
    ranges = []
    for item in text.split(','):
        start, end = item.split('-')
        ranges.append((int(start, 0), int(end, 0)))
    return ranges


class GuestLog:
    """Incremental reader of the guest's debugcon output file."""

    def __init__(self, path):
        self.path = path
        self.lines = []
        self._offset = 0
        self._partial = b''
        self._cursor = 0

    def poll(self):
        try:
            with open(self.path, 'rb') as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b'\n')
        new = [line.decode('utf-8', 'replace') for line in complete]
        self.lines.extend(new)
        return new

    def wait_for(self, prefix, vm, timeout=60):
        """Return the first new line that starts with prefix."""
        deadline = time.monotonic() + timeout
        seen = len(self.lines)
        while True:
            self.poll()
            for line in self.lines[seen:]:
                if line.startswith(prefix):
                    return line
            seen = len(self.lines)
            if not vm.is_running():
                self.poll()
                for line in self.lines[seen:]:
                    if line.startswith(prefix):
                        return line
                raise AssertionError('guest exited before "%s"; output:\n%s'
                                     % (prefix, '\n'.join(self.lines)))
            if time.monotonic() > deadline:
                raise AssertionError(
                    'no "%s" from the guest in %ds; output:\n%s'
                    % (prefix, timeout, '\n'.join(self.lines)))
            time.sleep(0.02)

    def expect(self, prefix, vm, timeout=60):
        """
        Like wait_for(), but reading on from the line after the last one
        expect() returned, so lines that arrived together are not missed.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            for i in range(self._cursor, len(self.lines)):
                if self.lines[i].startswith(prefix):
                    self._cursor = i + 1
                    return self.lines[i]
            if not vm.is_running() or time.monotonic() > deadline:
                raise AssertionError('no "%s" from the guest; output:\n%s'
                                     % (prefix, '\n'.join(self.lines)))
            time.sleep(0.02)

    def results(self):
        """{test name: (PASS|FAIL|SKIP, reason)} from gmem-test lines."""
        results = {}
        for line in self.lines:
            if line.startswith('gmem-test: '):
                name, _, rest = line[len('gmem-test: '):].partition(': ')
                status, _, reason = rest.partition(' ')
                results[name] = (status, reason)
        return results

    def info(self, test):
        prefix = 'gmem-info: %s: ' % test
        return [line[len(prefix):] for line in self.lines
                if line.startswith(prefix)]


def check_pattern(vm, scratch_dir, seed, ranges, stride=8, chunk=64 << 20):
    """
    Read guest RAM through QMP pmemsave and compare the guest's pattern
    words (gpa ^ seed, one every stride bytes) with what QEMU sees.
    Returns (bytes checked, bad words, address of the first bad word or
    None).
    """
    import numpy

    path = os.path.join(scratch_dir, 'pmemsave.bin')
    checked = bad = 0
    first_bad = None
    for start, end in ranges:
        for addr in range(start, end, chunk):
            size = min(chunk, end - addr)
            vm.cmd('pmemsave', val=addr, size=size, filename=path)
            data = numpy.fromfile(path, dtype='<u8')
            if data.size * 8 != size:
                raise AssertionError('pmemsave returned %d bytes for %d'
                                     % (data.size * 8, size))
            data = data[::stride // 8]
            expect = numpy.arange(addr, addr + size, stride,
                                  dtype=numpy.uint64)
            expect ^= numpy.uint64(seed)
            mismatch = numpy.flatnonzero(data != expect)
            if mismatch.size and first_bad is None:
                first_bad = addr + int(mismatch[0]) * stride
            bad += int(mismatch.size)
            checked += size
    os.unlink(path)
    return checked, bad, first_bad


def sw_protected_vm_args(cgs_id='cgs0'):
    return ['-object', 'sw-protected-vm,id=' + cgs_id,
            '-machine', 'confidential-guest-support=' + cgs_id]


def secret_word(gpa, seed=0):
    """tests/guest/tests_convert.c: secret_word()"""
    return gpa ^ 0x5ec2e75ec2e75ec2 ^ seed


def read_words(vm, scratch_dir, gpa, size):
    """Guest RAM as QEMU sees it, as a numpy array of 8-byte words."""
    import numpy

    path = os.path.join(scratch_dir, 'pmemsave.bin')
    vm.cmd('pmemsave', val=gpa, size=size, filename=path)
    data = numpy.fromfile(path, dtype='<u8')
    os.unlink(path)
    return data


def count_secret_words(vm, scratch_dir, gpa, size, seed=0):
    """How many words of [gpa, gpa + size) QEMU reads as the guest secret."""
    import numpy

    data = read_words(vm, scratch_dir, gpa, size)
    secret = numpy.arange(gpa, gpa + size, 8, dtype=numpy.uint64)
    secret ^= numpy.uint64(secret_word(0, seed))
    return int(numpy.count_nonzero(data == secret))


def meminfo():
    """/proc/meminfo as {field: its number (kB, or pages)}."""
    fields = {}
    with open('/proc/meminfo') as f:
        for line in f:
            key, _, value = line.partition(':')
            fields[key] = int(value.split()[0])
    return fields


def set_hugetlb_pool(pages):
    """Ask for @pages 2 MiB pages; the kernel keeps those in use."""
    with open('/proc/sys/vm/nr_hugepages', 'w') as f:
        f.write('%d\n' % pages)


def ivshmem_args(size='2M'):
    """An ivshmem-plain device: its BAR 2 is a RAM memslot of its own."""
    return ('-object', 'memory-backend-memfd,id=shm,size=%s' % size,
            '-device', 'ivshmem-plain,memdev=shm')


def vfio_edu():
    """The PCI address of an edu bound to vfio-pci (RIG_VFIO=1), or None."""
    root = '/sys/bus/pci/devices'
    for bdf in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        d = os.path.join(root, bdf)
        try:
            with open(os.path.join(d, 'vendor')) as f:
                vendor = f.read().strip()
            with open(os.path.join(d, 'device')) as f:
                device = f.read().strip()
            driver = os.path.basename(os.readlink(os.path.join(d, 'driver')))
        except OSError:
            continue
        if (vendor, device, driver) == ('0x1234', '0x11e8', 'vfio-pci'):
            return bdf
    return None


VFIO_IOMMU_GET_INFO = 0x3b70          # _IO(';', 100 + 12)
VFIO_IOMMU_INFO_CAPS = 1 << 1
VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3
SYS_PIDFD_GETFD = 438


def type1_dma_avail(pid):
    """
    How many more mappings the type1 IOMMU container of VFIO process @pid
    takes (VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL): it rises by one for each
    4 KiB page VFIO unmaps. Asked on a copy of the process's container
    fd (pidfd_getfd), so it is the kernel's own count.
    """
    import ctypes
    import fcntl
    import struct

    fds = [int(n) for n in os.listdir('/proc/%d/fd' % pid)
           if os.readlink('/proc/%d/fd/%s' % (pid, n)) == '/dev/vfio/vfio']
    if len(fds) != 1:
        raise RuntimeError('%d VFIO containers in process %d' % (len(fds),
                                                                 pid))
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, fds[0], 0)
        if fd < 0:
            raise OSError(ctypes.get_errno(), 'pidfd_getfd')
    finally:
        os.close(pidfd)
    try:
        buf = bytearray(4096)
        struct.pack_into('<II', buf, 0, len(buf), 0)
        fcntl.ioctl(fd, VFIO_IOMMU_GET_INFO, buf)
    finally:
        os.close(fd)
    flags, = struct.unpack_from('<I', buf, 4)
    off, = struct.unpack_from('<I', buf, 16) if flags & VFIO_IOMMU_INFO_CAPS \
        else (0,)
    while off:
        cap, _, nxt = struct.unpack_from('<HHI', buf, off)
        if cap == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL:
            return struct.unpack_from('<I', buf, off + 8)[0]
        off = nxt
    raise RuntimeError('the container reports no DMA_AVAIL capability')


def vcpu_faults(vm):
    """KVM's page faults (pf_taken) summed over the vCPUs (query-stats)."""
    total = 0
    for vcpu in vm.cmd('query-stats', target='vcpu', providers=[
            {'provider': 'kvm', 'names': ['pf_taken']}]):
        for stat in vcpu['stats']:
            total += stat['value']
    return total


def slot_retouch_args(policy, mib, confidential):
    """
    QEMU arguments for the guest's slot_retouch under memslot-zap=@policy:
    512 MiB of memfd RAM (4 KiB pages), the ivshmem whose memslot goes
    away, @mib MiB re-touched; half of them private if @confidential.
    """
    return ('-accel', 'kvm,memslot-zap=' + policy, '-m', '512M',
            '-object', 'memory-backend-memfd,id=ram0,size=512M',
            '-machine', 'memory-backend=ram0', *ivshmem_args(),
            *(sw_protected_vm_args() if confidential else ())), \
        'slot_retouch checkpoints=1 stride=4096 mb=%d private=%d' % (
            mib, confidential)


def slot_retouch(vm, log, timeout):
    """
    The host's side of the guest's slot_retouch: at its first checkpoint
    read KVM's fault count and let the guest delete and re-add the ivshmem
    slot and re-touch its window; at the second read the count again.
    Returns (faults taken between them, seconds, the guest's fields at the
    first checkpoint). The guest stays at its second checkpoint.
    """
    line = log.wait_for('gmem-checkpoint: slot_retouch: phase=touched',
                        vm, timeout=timeout)
    fields = parse_fields(line.split(': ', 2)[2])
    before = vcpu_faults(vm)
    t0 = time.monotonic()
    vm.cmd('inject-nmi')
    log.wait_for('gmem-checkpoint: slot_retouch: phase=retouched', vm,
                 timeout=timeout)
    seconds = time.monotonic() - t0
    return vcpu_faults(vm) - before, seconds, fields


def stuck_report(pid):
    """Where each thread of process @pid waits, and the kernel's last words."""
    lines = []
    for task in sorted(glob.glob('/proc/%d/task/*' % pid)):
        try:
            with open(task + '/stat') as f:
                comm, stat = f.read().rsplit(')', 1)
            with open(task + '/syscall') as f:
                syscall = f.read().split()
            with open(task + '/stack') as f:
                stack = f.read().split()[1::2][:8]
        except OSError as e:
            lines.append('%s: %s' % (task, e.strerror))
            continue
        # Its state, the system call it is in (16: ioctl, KVM_RUN for a
        # vCPU; 202: futex, a lock) and its user pc, and its kernel stack.
        lines.append('thread %s (%s) %s syscall %s pc %s: %s' % (
            os.path.basename(task), comm.split('(', 1)[1], stat.split()[0],
            syscall[0], syscall[-1], ' < '.join(stack) or '-'))
    dmesg = subprocess.run(['dmesg'], capture_output=True, text=True,
                           check=False).stdout.splitlines()
    return '\n'.join(lines + ['dmesg:'] + dmesg[-30:])


def vcpu_places(vm):
    """Each vCPU of running @vm: its instruction pointer, CR0, HLT."""
    regs = vm.cmd('human-monitor-command', command_line='info registers -a')
    return '; '.join('CPU#' + ' '.join(
        cpu.split()[:1] + [w for w in cpu.split()
                           if w.startswith(('EIP=', 'RIP=', 'CR0=', 'HLT='))])
        for cpu in regs.split('CPU#')[1:])


class GmemGuestTest(QemuSystemTest):
    """A functional test that boots the gmem test guest on q35."""

    timeout = 180

    def setUp(self):
        super().setUp()
        self.kernel = guest_kernel()
        if self.kernel is None:
            self.skipTest('test guest not built (QEMU_GMEM_TEST_GUEST unset)')
        self.set_machine('q35')

    def tearDown(self):
        # A failed test shows where its QEMU's threads were (in KVM_RUN,
        # waiting for a lock...), where its guest was, and what the kernel
        # said; a report that cannot be had must not keep the VMs up.
        result = getattr(getattr(self, '_outcome', None), 'result', None)
        failed = getattr(result, 'failures', []) + getattr(result, 'errors',
                                                           [])
        try:
            if any(test is self for test, _ in failed):
                self.report_failure()
        finally:
            super().tearDown()

    def report_failure(self):
        for vm in self._vms.values():
            if vm.is_running():
                report = stuck_report(vm.get_pid())
                print('# QEMU at the failure:\n#   ' +
                      report.replace('\n', '\n#   '), file=sys.stderr)
                # Its vCPUs take the kick: the monitor answered the test.
                print('# its CPUs: ' + vcpu_places(vm), file=sys.stderr)
        try:
            with open(self.debugcon, errors='replace') as f:
                out = f.read().splitlines()[-10:]
            print('# the guest\'s last lines:\n#   ' + '\n#   '.join(out),
                  file=sys.stderr)
        except (AttributeError, OSError):
            pass

    # The guest prints its first line within seconds of QEMU's start.
    # Once in a few hundred boots in the nested rig, the firmware never
    # gets to it (SeaBIOS's vCPU found at f000:ff53 in real mode after
    # 600 s, QEMU healthy: tests/rig/README.md); such a QEMU is started
    # once more, and the log says so.
    BOOT_TIMEOUT = 60

    def launch_guest(self, command_line, *qemu_args, reboot=False):
        """Start QEMU with @qemu_args and the guest; return its GuestLog."""
        self.debugcon = os.path.join(self.workdir, 'debugcon.log')
        self.vm.add_args(*qemu_args, *guest_args(self.kernel, self.debugcon,
                                                 command_line, reboot))
        self.vm.launch()
        if not self.guest_started():
            print('# the firmware did not reach the guest in %d s, %s; '
                  'starting QEMU once more'
                  % (self.BOOT_TIMEOUT, vcpu_places(self.vm)),
                  file=sys.stderr)
            self.vm.shutdown()
            self.vm.launch()
        return GuestLog(self.debugcon)

    def guest_started(self):
        """False if a running guest printed nothing in BOOT_TIMEOUT s."""
        if '-S' in self.vm.args:
            return True             # it runs when the test says so
        deadline = time.monotonic() + self.BOOT_TIMEOUT
        while not os.path.exists(self.debugcon) or \
                os.path.getsize(self.debugcon) == 0:
            if not self.vm.is_running() or time.monotonic() > deadline:
                return not self.vm.is_running()
            time.sleep(0.05)
        return True

    def checkpoint(self, log, test):
        """Wait for the guest's next checkpoint of @test; its fields."""
        line = log.wait_for('gmem-checkpoint: %s:' % test, self.vm,
                            timeout=self.timeout)
        return parse_fields(line.split(': ', 2)[2])

    def checkpoint_or_stop(self, log, test):
        """
        Wait for the guest's next checkpoint of @test, or for the VM to
        stop running (a path that stops it instead of answering the
        guest). Returns (its fields or None, the VM's run state then).
        """
        prefix = 'gmem-checkpoint: %s:' % test
        seen = len(log.lines)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            log.poll()
            for line in log.lines[seen:]:
                if line.startswith(prefix):
                    return (parse_fields(line.split(': ', 2)[2]),
                            self.vm.cmd('query-status')['status'])
            seen = len(log.lines)
            status = self.vm.cmd('query-status')['status']
            if status != 'running':
                return None, status
            time.sleep(0.1)
        self.fail('no "%s" and no stop in %ds' % (prefix, self.timeout))

    def finish(self, log, expected_exit=EXIT_PASSED):
        """Wait for QEMU to end and check the guest's exit status."""
        pid = self.vm.get_pid()
        try:
            self.vm.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            # Not even SIGKILL ended it: it is stuck in the kernel.
            self.fail('QEMU did not end in %d s, nor 60 s after SIGKILL:\n%s'
                      % (self.timeout, stuck_report(pid)))
        log.poll()
        self.assertEqual(self.vm.exitcode(), expected_exit,
                         'guest output:\n' + '\n'.join(log.lines))
