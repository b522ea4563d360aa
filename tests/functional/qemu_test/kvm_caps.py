# What this machine's /dev/kvm offers, read with KVM_CHECK_EXTENSION.
# Imports nothing of qemu_test, so that scripts outside the functional
# tests (tests/libvirt) can load it by path.
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
KVM_CAP_GUEST_MEMFD_FLAGS = 244
GUEST_MEMFD_FLAG_MMAP = 1 << 0
GUEST_MEMFD_FLAG_INIT_SHARED = 1 << 1


def kvm_in_place_guest_memfd():
    """Whether a default VM here can use memory-backend-guest-memfd."""
    try:
        kvm = os.open('/dev/kvm', os.O_RDWR)
    except OSError:
        return False
    try:
        vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
    except OSError:
        os.close(kvm)
        return False
    try:
        flags = fcntl.ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS)
    finally:
        os.close(vm)
        os.close(kvm)
    want = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED
    return flags > 0 and flags & want == want
