/*
 * KVM guest_memfd layer: the queue of pending discards.
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
    KvmGmemDiscard *d;

    QSIMPLEQ_FOREACH(d, &q->pending, next) {
        if (!d->failed) {
            QSIMPLEQ_REMOVE(&q->pending, d, KvmGmemDiscard, next);
            q->backlog -= d->size;
            return d;
        }
    }
    return NULL;
}

void kvm_gmem_discard_queue_requeue_failed(KvmGmemDiscardQueue *q,
                                           KvmGmemDiscard *d)
{
    d->failed = true;
    QSIMPLEQ_INSERT_TAIL(&q->pending, d, next);
    q->backlog += d->size;
}

bool kvm_gmem_discard_queue_take_overlapping(KvmGmemDiscardQueue *q,
                                             void *block, uint64_t offset,
                                             uint64_t size,
                                             bool (*fn)(KvmGmemDiscard *d,
                                                        void *opaque),
                                             void *opaque)
{
    KvmGmemDiscard *d, *tmp;
    bool all_done = true;

    QSIMPLEQ_FOREACH_SAFE(d, &q->pending, next, tmp) {
        if (d->block != block ||
            !ranges_overlap(d->offset, d->size, offset, size)) {
            continue;
        }
        if (!fn(d, opaque)) {
            d->failed = true;
            all_done = false;
            continue;
        }
        QSIMPLEQ_REMOVE(&q->pending, d, KvmGmemDiscard, next);
        q->backlog -= d->size;
        g_free(d);
    }
    return all_done;
}

void kvm_gmem_discard_queue_drop_block(KvmGmemDiscardQueue *q, void *block)
{
    KvmGmemDiscard *d, *tmp;

    QSIMPLEQ_FOREACH_SAFE(d, &q->pending, next, tmp) {
        if (d->block == block) {
            QSIMPLEQ_REMOVE(&q->pending, d, KvmGmemDiscard, next);
            q->backlog -= d->size;
            g_free(d);
        }
    }
}
