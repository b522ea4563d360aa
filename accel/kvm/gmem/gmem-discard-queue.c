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

static void gmem_discard_dequeue(KvmGmemDiscardQueue *q, KvmGmemDiscard *d)
{
    QSIMPLEQ_REMOVE(&q->pending, d, KvmGmemDiscard, next);
    q->backlog -= d->size;
    g_free(d);
}

void kvm_gmem_discard_queue_push(KvmGmemDiscardQueue *q, void *block,
                                 uint64_t offset, uint64_t size,
                                 bool guest_memfd, int64_t now_ns)
{
    KvmGmemDiscard *d = QSIMPLEQ_LAST(&q->pending, KvmGmemDiscard, next);

    if (d && d->block == block && d->guest_memfd == guest_memfd &&
        !d->failed && !d->in_flight &&
        offset <= d->offset + d->size && d->offset <= offset + size) {
        /* Overlapping or adjacent: one discard of the union. */
        uint64_t start = MIN(d->offset, offset);
        uint64_t end = MAX(d->offset + d->size, offset + size);

        q->backlog += end - start - d->size;
        d->offset = start;
        d->size = end - start;
        return;
    }
    d = g_new(KvmGmemDiscard, 1);
    *d = (KvmGmemDiscard) {
        .block = block, .offset = offset, .size = size,
        .guest_memfd = guest_memfd, .queued_ns = now_ns,
    };
    QSIMPLEQ_INSERT_TAIL(&q->pending, d, next);
    q->backlog += size;
}

/* The oldest discard the worker may take: neither failed nor in flight. */
static KvmGmemDiscard *gmem_discard_takeable(KvmGmemDiscardQueue *q)
{
    KvmGmemDiscard *d;

    QSIMPLEQ_FOREACH(d, &q->pending, next) {
        if (!d->failed && !d->in_flight) {
            return d;
        }
    }
    return NULL;
}

int64_t kvm_gmem_discard_queue_oldest(KvmGmemDiscardQueue *q)
{
    KvmGmemDiscard *d = gmem_discard_takeable(q);

    return d ? d->queued_ns : -1;
}

KvmGmemDiscard *kvm_gmem_discard_queue_pop(KvmGmemDiscardQueue *q)
{
    KvmGmemDiscard *d = gmem_discard_takeable(q);

    if (d) {
        d->in_flight = true;
    }
    return d;
}

void kvm_gmem_discard_queue_finish(KvmGmemDiscardQueue *q, KvmGmemDiscard *d,
                                   bool done)
{
    assert(d->in_flight);
    d->in_flight = false;
    if (done || !d->block) {
        gmem_discard_dequeue(q, d);
    } else {
        d->failed = true;
    }
}

bool kvm_gmem_discard_queue_busy(KvmGmemDiscardQueue *q, void *block,
                                 uint64_t offset, uint64_t size)
{
    KvmGmemDiscard *d;

    QSIMPLEQ_FOREACH(d, &q->pending, next) {
        if (d->in_flight && d->block == block &&
            ranges_overlap(d->offset, d->size, offset, size)) {
            return true;
        }
    }
    return false;
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
        assert(!d->in_flight);
        if (!fn(d, opaque)) {
            d->failed = true;
            all_done = false;
            continue;
        }
        gmem_discard_dequeue(q, d);
    }
    return all_done;
}

void kvm_gmem_discard_queue_drop_block(KvmGmemDiscardQueue *q, void *block)
{
    KvmGmemDiscard *d, *tmp;

    QSIMPLEQ_FOREACH_SAFE(d, &q->pending, next, tmp) {
        if (d->block != block) {
            continue;
        }
        if (d->in_flight) {
            d->block = NULL;    /* its finish frees it */
        } else {
            gmem_discard_dequeue(q, d);
        }
    }
}
