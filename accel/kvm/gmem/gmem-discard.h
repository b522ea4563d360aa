/*
 * KVM guest_memfd layer: freeing the stale side of a conversion.
 *
 * Every function here is called with the manager's lock held (the one
 * given to kvm_gmem_discard_init()).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef ACCEL_KVM_GMEM_DISCARD_H
#define ACCEL_KVM_GMEM_DISCARD_H

#include "qemu/thread.h"
#include "exec/cpu-common.h"
#include "gmem-manager.h"

void kvm_gmem_discard_init(QemuMutex *lock, KvmGmemStats *stats);

/*
 * Free the stale copy of [offset, offset + size) of @rb, the guest_memfd
 * one or the shared one, as the discard policy says; @now: at once,
 * whatever the policy (reset).
 */
void kvm_gmem_discard(RAMBlock *rb, uint64_t offset, uint64_t size,
                      bool guest_memfd, bool now);

/* The shared side of @rb is of huge pages (hugetlb). */
bool kvm_gmem_shared_side_huge(RAMBlock *rb);

/*
 * Of [offset, offset + size) of a shared side of huge pages, free the
 * whole huge pages that are private in every part now.
 */
void kvm_gmem_discard_huge(RAMBlock *rb, uint64_t offset, uint64_t size,
                           bool now);

/*
 * Before a private run of a shared side of huge pages becomes shared:
 * allocate its huge pages and clear what kept ones hold. False if the
 * pool cannot give them (the caller gives back what was allocated).
 */
bool kvm_gmem_populate_huge(RAMBlock *rb, uint64_t offset, uint64_t size);

/* The async worker is freeing part of the range, without the lock. */
bool kvm_gmem_discard_in_flight(RAMBlock *rb, uint64_t offset,
                                uint64_t size);

/*
 * Wait, the lock released, until the worker finishes the discard it is
 * doing (or spuriously: callers check again). The state may have changed
 * meanwhile, so callers look at it again.
 */
void kvm_gmem_discard_wait_for_worker(void);

/*
 * The ordering rule: every pending discard that overlaps the range is
 * done now. None may be in flight (the caller waited for those first,
 * and has held the lock since). False if one failed again.
 */
bool kvm_gmem_flush_overlapping(RAMBlock *rb, uint64_t offset,
                                uint64_t size);

/* Reset's flush of all of @rb: what cannot be freed is zeroed. */
void kvm_gmem_flush_for_reset(RAMBlock *rb, uint64_t size);

/* @rb goes away: its pending discards with it. */
void kvm_gmem_discard_forget_block(RAMBlock *rb);

/* Bytes whose discard is still pending. */
uint64_t kvm_gmem_discard_backlog(void);

#endif
