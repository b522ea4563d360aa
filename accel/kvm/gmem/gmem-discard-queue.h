/*
 * KVM guest_memfd layer: the queue of pending discards.
 *
 * Stale copies not freed yet: those discard=async leaves to its worker,
 * and those whose discard failed (any policy), which wait to be retried.
 * Pure bookkeeping, no QEMU state and no locking of its own (the manager
 * holds gmem.lock), so unit tests and the fuzzer can cover the ordering
 * rule.
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
    bool failed;                /* tried and failed: only a flush retries */
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

/*
 * Remove and return the oldest pending discard not marked failed (the
 * caller frees it, or gives it back with ..._requeue_failed()).
 */
KvmGmemDiscard *kvm_gmem_discard_queue_pop(KvmGmemDiscardQueue *q);

/* Queue @d again, at the tail, marked failed. */
void kvm_gmem_discard_queue_requeue_failed(KvmGmemDiscardQueue *q,
                                           KvmGmemDiscard *d);

/*
 * The ordering rule's "flush" step: every pending discard of @block that
 * overlaps [offset, offset + size), failed or not, oldest first, is given
 * to @fn. Those @fn did (it returns true) leave the queue; the others stay,
 * marked failed, and the call returns false.
 */
bool kvm_gmem_discard_queue_take_overlapping(KvmGmemDiscardQueue *q,
                                             void *block, uint64_t offset,
                                             uint64_t size,
                                             bool (*fn)(KvmGmemDiscard *d,
                                                        void *opaque),
                                             void *opaque);

/* Forget every pending discard of @block (it is going away). */
void kvm_gmem_discard_queue_drop_block(KvmGmemDiscardQueue *q, void *block);

#endif
