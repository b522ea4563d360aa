/*
 * KVM guest_memfd layer: in-place guest_memfd (memory-backend-guest-memfd).
 *
 * One guest_memfd that QEMU mmaps and that starts shared serves as the
 * RAM of a VM without private memory: the guest and QEMU use the same
 * pages, and the block has no private side and no record (no
 * RamBlockAttributes), so the conversion manager leaves it alone.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <linux/kvm.h>
#include "qapi/error.h"
#include "system/kvm.h"
#include "system/kvm-gmem.h"
#include "system/ramblock.h"

#define GMEM_IN_PLACE_FLAGS \
    (GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)

/* Asked of the VM: which flags a guest_memfd may have depends on it. */
bool kvm_gmem_in_place_possible(KVMState *s)
{
    int flags = kvm_vm_check_extension(s, KVM_CAP_GUEST_MEMFD_FLAGS);

    return flags > 0 && (flags & GMEM_IN_PLACE_FLAGS) == GMEM_IN_PLACE_FLAGS;
}

int kvm_gmem_create_in_place(uint64_t size, Error **errp)
{
    int flags;

    if (!kvm_enabled()) {
        error_setg(errp, "in-place guest_memfd needs -accel kvm");
        return -1;
    }
    if (!kvm_check_extension(kvm_state, KVM_CAP_GUEST_MEMFD)) {
        error_setg(errp, "in-place guest_memfd: this kernel has no "
                   "guest_memfd (KVM_CAP_GUEST_MEMFD)");
        return -1;
    }
    if (!kvm_gmem_in_place_possible(kvm_state)) {
        flags = kvm_vm_check_extension(kvm_state, KVM_CAP_GUEST_MEMFD_FLAGS);
        error_setg(errp, "in-place guest_memfd needs GUEST_MEMFD_FLAG_MMAP "
                   "and GUEST_MEMFD_FLAG_INIT_SHARED; this kernel offers "
                   "0x%x for this VM type (Linux 6.18 or later, and a VM "
                   "without private memory)", flags < 0 ? 0 : flags);
        return -1;
    }
    return kvm_create_guest_memfd(size, GMEM_IN_PLACE_FLAGS, errp);
}

void kvm_gmem_attach_in_place(RAMBlock *rb, int fd)
{
    /*
     * No RamBlockAttributes: the block is shared for good, there is no
     * private side to track. memory_region_has_guest_memfd() is now true,
     * so kvm_set_phys_mem() registers KVM_MEM_GUEST_MEMFD slots on @fd.
     */
    rb->guest_memfd = fd;
}

void kvm_gmem_detach_in_place(RAMBlock *rb)
{
    if (rb) {
        rb->guest_memfd = -1;
    }
}
