/*
 * libFuzzer harness: random sequences of pushes, flushes (the ordering
 * rule's take-overlapping step, where some discards fail), the worker's
 * pops and finishes, and block removals on the pending-discard queue,
 * checked after every step against a plain array model: order, the
 * backlog, coalescing with the newest discard, that a flush takes exactly
 * what overlaps its range and keeps what failed, that a range a discard
 * in flight overlaps is busy, and that a pop never returns a failed or
 * in-flight discard.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/range.h"
#include "gmem-discard-queue.h"

#define MAX_MODEL 256
#define MAX_FLYING 4

typedef struct Entry {
    uintptr_t block;            /* 0: cut loose from a removed block */
    uint64_t offset, size;
    bool guest_memfd;
    bool failed;
    KvmGmemDiscard *flying;     /* in flight: the queue's entry */
} Entry;

static Entry model[MAX_MODEL];
static unsigned model_len;
static unsigned taken;

typedef struct Flush {
    Entry range;
    uint8_t fail_seed;          /* which discards fail: see fails() */
} Flush;

static bool fails(uint64_t offset, uint8_t seed)
{
    return (seed & 0x80) && (((offset >> 12) ^ seed) & 1);
}

static bool take(KvmGmemDiscard *d, void *opaque)
{
    const Flush *f = opaque;

    assert((uintptr_t)d->block == f->range.block && !d->in_flight);
    assert(ranges_overlap(d->offset, d->size, f->range.offset,
                          f->range.size));
    taken++;
    return !fails(d->offset, f->fail_seed);
}

static void check(KvmGmemDiscardQueue *q)
{
    KvmGmemDiscard *d;
    uint64_t backlog = 0;
    unsigned i = 0;

    QSIMPLEQ_FOREACH(d, &q->pending, next) {
        const Entry *m = &model[i];

        assert(i < model_len);
        assert((uintptr_t)d->block == m->block && d->offset == m->offset &&
               d->size == m->size && d->guest_memfd == m->guest_memfd &&
               d->failed == m->failed && d->in_flight == !!m->flying);
        assert(!m->flying || m->flying == d);
        backlog += d->size;
        i++;
    }
    assert(i == model_len && backlog == q->backlog);
}

static void push(KvmGmemDiscardQueue *q, const Entry *e)
{
    Entry *t = model_len ? &model[model_len - 1] : NULL;

    kvm_gmem_discard_queue_push(q, (void *)e->block, e->offset, e->size,
                                e->guest_memfd, 0);
    if (t && t->block == e->block && t->guest_memfd == e->guest_memfd &&
        !t->failed && !t->flying && e->offset <= t->offset + t->size &&
        t->offset <= e->offset + e->size) {
        uint64_t end = MAX(t->offset + t->size, e->offset + e->size);

        t->offset = MIN(t->offset, e->offset);
        t->size = end - t->offset;
    } else {
        model[model_len++] = *e;
    }
}

static void flush(KvmGmemDiscardQueue *q, const Flush *f)
{
    unsigned kept = 0, expect = 0;
    bool all_done = true, busy = false;

    for (unsigned j = 0; j < model_len; j++) {
        busy |= model[j].flying && model[j].block == f->range.block &&
                ranges_overlap(model[j].offset, model[j].size,
                               f->range.offset, f->range.size);
    }
    assert(kvm_gmem_discard_queue_busy(q, (void *)f->range.block,
                                       f->range.offset, f->range.size) ==
           busy);
    if (busy) {
        return;                 /* the manager waits for the worker */
    }
    for (unsigned j = 0; j < model_len; j++) {
        Entry *m = &model[j];

        if (m->block == f->range.block &&
            ranges_overlap(m->offset, m->size, f->range.offset,
                           f->range.size)) {
            expect++;
            if (!fails(m->offset, f->fail_seed)) {
                continue;
            }
            m->failed = true;
            all_done = false;
        }
        model[kept++] = *m;
    }
    taken = 0;
    assert(kvm_gmem_discard_queue_take_overlapping(
               q, (void *)f->range.block, f->range.offset, f->range.size,
               take, (void *)f) == all_done);
    assert(taken == expect);
    model_len = kept;
}

static void pop(KvmGmemDiscardQueue *q, unsigned flying)
{
    KvmGmemDiscard *d = kvm_gmem_discard_queue_pop(q);
    unsigned j = 0;

    while (j < model_len && (model[j].failed || model[j].flying)) {
        j++;
    }
    assert(!d == (j == model_len));
    if (d) {
        assert(d->in_flight && (uintptr_t)d->block == model[j].block &&
               d->offset == model[j].offset);
        model[j].flying = d;
        assert(flying < MAX_FLYING);
    }
}

/* The worker finishes the oldest discard it has in flight. */
static void finish(KvmGmemDiscardQueue *q, bool done)
{
    unsigned j = 0;

    while (j < model_len && !model[j].flying) {
        j++;
    }
    if (j == model_len) {
        return;
    }
    kvm_gmem_discard_queue_finish(q, model[j].flying, done);
    if (done || !model[j].block) {
        memmove(model + j, model + j + 1,
                (model_len - j - 1) * sizeof(*model));
        model_len--;
    } else {
        model[j].flying = NULL;
        model[j].failed = true;
    }
}

static void drop(KvmGmemDiscardQueue *q, uintptr_t block)
{
    unsigned kept = 0;

    kvm_gmem_discard_queue_drop_block(q, (void *)block);
    for (unsigned j = 0; j < model_len; j++) {
        if (model[j].block == block && model[j].flying) {
            model[j].block = 0;
        }
        if (model[j].block != block) {
            model[kept++] = model[j];
        }
    }
    model_len = kept;
}

static unsigned count_flying(void)
{
    unsigned n = 0;

    for (unsigned j = 0; j < model_len; j++) {
        n += !!model[j].flying;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    KvmGmemDiscardQueue q;

    kvm_gmem_discard_queue_init(&q);
    model_len = 0;
    for (size_t i = 0; i + 4 <= size; i += 4) {
        Entry e = {
            .block = 1 + (data[i] & 3),
            .offset = (uint64_t)(data[i + 1] & 0x3f) << 12,
            .size = (uint64_t)(1 + (data[i + 2] & 0xf)) << 12,
            .guest_memfd = data[i + 3] & 8,
        };
        Flush f = { .range = e, .fail_seed = data[i + 2] };

        switch (data[i + 3] % 6) {
        case 0:
        case 1:
            if (model_len < MAX_MODEL) {
                push(&q, &e);
            }
            break;
        case 2:
            flush(&q, &f);
            break;
        case 3:
            drop(&q, e.block);
            break;
        case 4:
            if (count_flying() < MAX_FLYING) {
                pop(&q, count_flying());
            }
            break;
        default:
            finish(&q, data[i + 3] & 0x10);
            break;
        }
        check(&q);
    }
    while (count_flying()) {
        finish(&q, true);
    }
    for (uintptr_t b = 1; b <= 4; b++) {
        drop(&q, b);
    }
    check(&q);
    assert(QSIMPLEQ_EMPTY(&q.pending) && !q.backlog);
    return 0;
}
