# What this machine's /dev/kvm offers, read with KVM_CHECK_EXTENSION.
# Imports nothing of qemu_test, so that scripts outside the functional
# tests (tests/libvirt) can load it by path. Run as a script, it prints
# per VM type offered what make check reports at its start (on the host,
# and in the rig's L1).
#
# SPDX-License-Identifier: GPL-2.0-or-later

import fcntl
import os

KVM_CHECK_EXTENSION = 0xae03
KVM_CAP_VM_TYPES = 235
KVM_X86_SW_PROTECTED_VM = 1


def kvm_vm_types():
    """Bit mask of the VM types /dev/kvm offers (0 if none can be read)."""
    try:
        fd = os.open('/dev/kvm', os.O_RDWR)
    except OSError:
        return 0
    try:
        return max(fcntl.ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES), 0)
    finally:
        os.close(fd)


KVM_CREATE_VM = 0xae01
KVM_CAP_MEMORY_ATTRIBUTES = 233
KVM_CAP_GUEST_MEMFD = 234
KVM_CAP_GUEST_MEMFD_FLAGS = 244
GUEST_MEMFD_FLAG_MMAP = 1 << 0
GUEST_MEMFD_FLAG_INIT_SHARED = 1 << 1


def vm_caps(kvm, vm_type):
    """(guest_memfd, its flags, memory attributes) of a VM of @vm_type."""
    vm = fcntl.ioctl(kvm, KVM_CREATE_VM, vm_type)
    try:
        return [max(fcntl.ioctl(vm, KVM_CHECK_EXTENSION, c), 0)
                for c in (KVM_CAP_GUEST_MEMFD, KVM_CAP_GUEST_MEMFD_FLAGS,
                          KVM_CAP_MEMORY_ATTRIBUTES)]
    finally:
        os.close(vm)


def kvm_in_place_guest_memfd():
    """Whether a default VM here can use memory-backend-guest-memfd."""
    try:
        kvm = os.open('/dev/kvm', os.O_RDWR)
    except OSError:
        return False
    try:
        flags = vm_caps(kvm, 0)[1]
    except OSError:
        return False
    finally:
        os.close(kvm)
    want = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED
    return flags & want == want


VM_TYPE_NAMES = {0: 'DEFAULT_VM', 1: 'SW_PROTECTED_VM', 2: 'SEV_VM',
                 3: 'SEV_ES_VM', 4: 'SNP_VM', 5: 'TDX_VM'}


def bits(value, names):
    """A bit mask as '0x3 (A B)'."""
    value = max(value, 0)
    return '0x%x (%s)' % (value, ' '.join(
        names.get(i, '?') for i in range(32) if value >> i & 1))


def facts():
    """A line per VM type offered: guest_memfd, its flags, attributes."""
    try:
        kvm = os.open('/dev/kvm', os.O_RDWR)
    except OSError as e:
        return ['/dev/kvm: %s' % e.strerror]
    try:
        types = fcntl.ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES)
        types = types if types > 0 else 1      # before VM_TYPES existed
        lines = ['VM types %s' % bits(types, VM_TYPE_NAMES)]
        for t in range(32):
            if not types >> t & 1:
                continue
            try:
                cap = vm_caps(kvm, t)
            except OSError as e:
                lines.append('type %d: cannot create: %s' % (t, e.strerror))
                continue
            lines.append('type %d (%s): guest_memfd %s, flags %s, memory '
                         'attributes %s' % (
                             t, VM_TYPE_NAMES.get(t, '?'),
                             'yes' if cap[0] else 'no',
                             bits(cap[1], {0: 'MMAP', 1: 'INIT_SHARED'}),
                             bits(cap[2], {3: 'PRIVATE'})))
        return lines
    finally:
        os.close(kvm)


if __name__ == '__main__':
    for line in facts():
        print('kvm-facts: ' + line)
