/*
 * KVM guest_memfd layer: the kernel calls of a conversion.
 *
 * Every call the manager makes to change or free guest memory goes
 * through here, which retries what the kernel says may be retried and
 * returns the rest as -errno for the manager to answer
 * (docs/devel/kvm-gmem.rst has the table). For tests, the calls can be
 * made to fail on request (x-guest-memfd-inject-fault), since the rig's
 * kernel has no fault injection of its own.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef ACCEL_KVM_GMEM_KERNEL_H
#define ACCEL_KVM_GMEM_KERNEL_H

#include "exec/cpu-common.h"
#include "qapi/qapi-types-guest-memfd.h"

/* KVM_SET_MEMORY_ATTRIBUTES: all or nothing (Linux reserves first). */
int kvm_gmem_kernel_set_attributes(uint64_t gpa, uint64_t size,
                                   bool to_private);

/*
 * Free [offset, offset + size) of @rb: its guest_memfd side, or its
 * shared side. 0, or -errno with nothing known of what was freed.
 */
int kvm_gmem_kernel_discard(RAMBlock *rb, uint64_t offset, uint64_t size,
                            bool guest_memfd);

/*
 * Allocate the shared side of [offset, offset + size) of @rb (huge pages:
 * whole ones), so that the guest's touch finds it; -errno (-EFAULT or
 * -ENOMEM) when the pool cannot give it, with part of it maybe allocated.
 */
int kvm_gmem_kernel_populate_shared(RAMBlock *rb, uint64_t offset,
                                    uint64_t size);

/* KVM_PRE_FAULT_MEMORY over the range, as far as KVM goes. */
int kvm_gmem_kernel_pre_fault(CPUState *cpu, uint64_t gpa, uint64_t size);

/* What the calls of one kind cost since the VM started. */
typedef struct KvmGmemKernelStats {
    uint64_t calls;             /* each attempt */
    uint64_t failures;
    uint64_t ns;
} KvmGmemKernelStats;

void kvm_gmem_kernel_read_stats(GuestMemfdKernelCall call,
                                KvmGmemKernelStats *stats);

#endif
