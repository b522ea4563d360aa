/*
 * KVM guest_memfd layer: the queue of pending discards (discard=async).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/range.h"
#include "gmem-discard-queue.h"

void kvm_gmem_discard_queue_init(KvmGmemDiscardQueue *q)
{
    QSIMPLEQ_INIT(&q->pending);
    q->backlog = 0;
}

void kvm_gmem_discard_queue_push(KvmGmemDiscardQueue *q, void *block,
                                 uint64_t offset, uint64_t size,
                                 bool guest_memfd)
{
    KvmGmemDiscard *d = g_new(KvmGmemDiscard, 1);

    *d = (KvmGmemDiscard) {
        .block = block, .offset = offset, .size = size,
        .guest_memfd = guest_memfd,
    };
    QSIMPLEQ_INSERT_TAIL(&q->pending, d, next);
    q->backlog += size;
}

KvmGmemDiscard *kvm_gmem_discard_queue_pop(KvmGmemDiscardQueue *q)
{
    KvmGmemDiscard *d = QSIMPLEQ_FIRST(&q->pending);

    if (d) {
        QSIMPLEQ_REMOVE_HEAD(&q->pending, next);
        q->backlog -= d->size;
    }
    return d;
}

void kvm_gmem_discard_queue_take_overlapping(KvmGmemDiscardQueue *q,
                                             void *block, uint64_t offset,
                                             uint64_t size,
                                             void (*fn)(KvmGmemDiscard *d,
                                                        void *opaque),
                                             void *opaque)
{
    KvmGmemDiscard *d, *tmp;

    QSIMPLEQ_FOREACH_SAFE(d, &q->pending, next, tmp) {
        if (d->block == block &&
            ranges_overlap(d->offset, d->size, offset, size)) {
            QSIMPLEQ_REMOVE(&q->pending, d, KvmGmemDiscard, next);
            q->backlog -= d->size;
            fn(d, opaque);
            g_free(d);
        }
    }
}
