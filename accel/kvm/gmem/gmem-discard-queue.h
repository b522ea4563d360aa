/*
 * KVM guest_memfd layer: the queue of pending discards.
 *
 * Stale copies not freed yet: those discard=async leaves to its worker,
 * and those whose discard failed (any policy), which wait to be retried.
 * Pure bookkeeping, no QEMU state and no locking of its own (the manager
 * holds gmem.lock), so unit tests and the fuzzer can cover the ordering
 * rule.
 *
 * A discard the worker has taken stays queued, "in flight", while the
 * worker frees it without the manager's lock: a flush that overlaps it
 * must wait for it to finish (kvm_gmem_discard_queue_busy()). A push
 * next to or over the newest queued discard of the same side, neither
 * failed nor in flight, extends it: one call frees both.
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
    bool in_flight;             /* taken by the worker, not finished */
    int64_t queued_ns;          /* when first queued (a clock of the caller) */
    QSIMPLEQ_ENTRY(KvmGmemDiscard) next;
} KvmGmemDiscard;

typedef struct KvmGmemDiscardQueue {
    QSIMPLEQ_HEAD(, KvmGmemDiscard) pending;    /* oldest first */
    uint64_t backlog;                           /* bytes in pending */
} KvmGmemDiscardQueue;

void kvm_gmem_discard_queue_init(KvmGmemDiscardQueue *q);

/* Queue a discard at @now_ns (or extend the newest: it keeps its time). */
void kvm_gmem_discard_queue_push(KvmGmemDiscardQueue *q, void *block,
                                 uint64_t offset, uint64_t size,
                                 bool guest_memfd, int64_t now_ns);

/*
 * When the oldest discard that kvm_gmem_discard_queue_pop() would return
 * was queued, or -1 if there is none.
 */
int64_t kvm_gmem_discard_queue_oldest(KvmGmemDiscardQueue *q);

/*
 * The oldest pending discard neither failed nor in flight, marked in
 * flight: it stays queued until kvm_gmem_discard_queue_finish().
 */
KvmGmemDiscard *kvm_gmem_discard_queue_pop(KvmGmemDiscardQueue *q);

/*
 * The worker is done with @d: freed if @done or if its block went away
 * meanwhile (d->block is NULL), else kept, marked failed, for a flush.
 */
void kvm_gmem_discard_queue_finish(KvmGmemDiscardQueue *q, KvmGmemDiscard *d,
                                   bool done);

/* True if a discard in flight overlaps [offset, offset + size) of @block. */
bool kvm_gmem_discard_queue_busy(KvmGmemDiscardQueue *q, void *block,
                                 uint64_t offset, uint64_t size);

/* Queue @d, which is not queued, at the tail, marked failed. */
void kvm_gmem_discard_queue_requeue_failed(KvmGmemDiscardQueue *q,
                                           KvmGmemDiscard *d);

/*
 * The ordering rule's "flush" step: every pending discard of @block that
 * overlaps [offset, offset + size), failed or not, oldest first, is given
 * to @fn. Those @fn did (it returns true) leave the queue; the others stay,
 * marked failed, and the call returns false. None of them may be in
 * flight: the caller waits for those first.
 */
bool kvm_gmem_discard_queue_take_overlapping(KvmGmemDiscardQueue *q,
                                             void *block, uint64_t offset,
                                             uint64_t size,
                                             bool (*fn)(KvmGmemDiscard *d,
                                                        void *opaque),
                                             void *opaque);

/*
 * Forget every pending discard of @block (it is going away); one in
 * flight is only cut loose from it, and freed when finished.
 */
void kvm_gmem_discard_queue_drop_block(KvmGmemDiscardQueue *q, void *block);

#endif
