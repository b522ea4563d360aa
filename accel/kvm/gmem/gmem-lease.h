/*
 * KVM guest_memfd layer: leases of host I/O on shared guest memory.
 *
 * While host code (a device's DMA through address_space_map()) has a
 * range of guest RAM mapped, it holds a lease on it; a conversion to
 * private waits for the leases it overlaps to end. This file is the
 * bookkeeping only, with no locking of its own (the manager's lease lock
 * covers it), so unit tests can cover it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef ACCEL_KVM_GMEM_LEASE_H
#define ACCEL_KVM_GMEM_LEASE_H

typedef struct KvmGmemLeases {
    /* (block, offset) -> KvmGmemLease: one entry per mapped start */
    GHashTable *by_start;
    uint64_t active;            /* leases held, counting repeats */
} KvmGmemLeases;

void kvm_gmem_leases_init(KvmGmemLeases *l);
void kvm_gmem_leases_destroy(KvmGmemLeases *l);

/*
 * [offset, offset + size) of @block was mapped. Mapping the same start
 * again counts as another lease; the entry then covers the longest size.
 */
void kvm_gmem_leases_take(KvmGmemLeases *l, const void *block,
                          uint64_t offset, uint64_t size);

/*
 * The mapping that started at @offset of @block ended. Returns false if no
 * lease starts there (an unmap the table never saw mapped).
 */
bool kvm_gmem_leases_drop(KvmGmemLeases *l, const void *block,
                          uint64_t offset);

/* Whether any lease on @block overlaps [offset, offset + size). */
bool kvm_gmem_leases_overlap(KvmGmemLeases *l, const void *block,
                             uint64_t offset, uint64_t size);

#endif
