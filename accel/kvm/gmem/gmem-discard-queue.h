/*
 * KVM guest_memfd layer: the queue of pending discards (discard=async).
 *
 * Pure bookkeeping, no QEMU state and no locking of its own (the manager
 * holds gmem.lock), so unit tests can cover the ordering rule.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef ACCEL_KVM_GMEM_DISCARD_QUEUE_H
#define ACCEL_KVM_GMEM_DISCARD_QUEUE_H

#include "qemu/queue.h"

/* A stale copy to free: the shared side, or the guest_memfd side. */
typedef struct KvmGmemDiscard {
    void *block;                /* the RAMBlock */
    uint64_t offset;            /* in the block */
    uint64_t size;
    bool guest_memfd;
    QSIMPLEQ_ENTRY(KvmGmemDiscard) next;
} KvmGmemDiscard;

typedef struct KvmGmemDiscardQueue {
    QSIMPLEQ_HEAD(, KvmGmemDiscard) pending;    /* oldest first */
    uint64_t backlog;                           /* bytes in pending */
} KvmGmemDiscardQueue;

void kvm_gmem_discard_queue_init(KvmGmemDiscardQueue *q);

void kvm_gmem_discard_queue_push(KvmGmemDiscardQueue *q, void *block,
                                 uint64_t offset, uint64_t size,
                                 bool guest_memfd);

/* Remove and return the oldest pending discard (the caller frees it). */
KvmGmemDiscard *kvm_gmem_discard_queue_pop(KvmGmemDiscardQueue *q);

/*
 * Remove every pending discard of @block that overlaps [offset, offset +
 * size), oldest first, calling @fn on each before freeing it: the ordering
 * rule's "flush" step.
 */
void kvm_gmem_discard_queue_take_overlapping(KvmGmemDiscardQueue *q,
                                             void *block, uint64_t offset,
                                             uint64_t size,
                                             void (*fn)(KvmGmemDiscard *d,
                                                        void *opaque),
                                             void *opaque);

#endif
