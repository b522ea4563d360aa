/*
 * libFuzzer harness: random sequences of pushes, flushes (the ordering
 * rule's take-overlapping step, where some discards fail), pops and
 * requeues of failed discards on the pending-discard queue, checked after
 * every step against a plain array model: order, the backlog, that a
 * flush takes exactly what overlaps its range and keeps what failed, and
 * that a pop never returns a failed discard.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/range.h"
#include "gmem-discard-queue.h"

#define MAX_MODEL 256

typedef struct Entry {
    uintptr_t block;
    uint64_t offset, size;
    bool failed;
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

    assert((uintptr_t)d->block == f->range.block);
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
        assert(i < model_len);
        assert((uintptr_t)d->block == model[i].block &&
               d->offset == model[i].offset && d->size == model[i].size &&
               d->failed == model[i].failed);
        backlog += d->size;
        i++;
    }
    assert(i == model_len && backlog == q->backlog);
}

static void flush(KvmGmemDiscardQueue *q, const Flush *f)
{
    unsigned kept = 0, expect = 0;
    bool all_done = true;

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

static void pop(KvmGmemDiscardQueue *q, bool requeue)
{
    KvmGmemDiscard *d = kvm_gmem_discard_queue_pop(q);
    unsigned j = 0;

    while (j < model_len && model[j].failed) {
        j++;
    }
    assert(!d == (j == model_len));
    if (!d) {
        return;
    }
    assert(!d->failed && (uintptr_t)d->block == model[j].block &&
           d->offset == model[j].offset);
    memmove(model + j, model + j + 1, (model_len - j - 1) * sizeof(*model));
    model_len--;
    if (requeue) {
        kvm_gmem_discard_queue_requeue_failed(q, d);
        model[model_len++] = (Entry) {
            .block = (uintptr_t)d->block, .offset = d->offset,
            .size = d->size, .failed = true,
        };
    } else {
        g_free(d);
    }
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
        };
        Flush f = { .range = e, .fail_seed = data[i + 2] };

        switch (data[i + 3] % 5) {
        case 0:
        case 1:
            if (model_len < MAX_MODEL) {
                kvm_gmem_discard_queue_push(&q, (void *)e.block, e.offset,
                                            e.size, data[i + 3] & 8);
                model[model_len++] = e;
            }
            break;
        case 2:
            flush(&q, &f);
            break;
        case 3: {
            unsigned kept = 0;

            kvm_gmem_discard_queue_drop_block(&q, (void *)e.block);
            for (unsigned j = 0; j < model_len; j++) {
                if (model[j].block != e.block) {
                    model[kept++] = model[j];
                }
            }
            model_len = kept;
            break;
        }
        default:
            pop(&q, data[i + 3] & 0x10);
            break;
        }
        check(&q);
    }
    kvm_gmem_discard_queue_drop_block(&q, (void *)1);
    kvm_gmem_discard_queue_drop_block(&q, (void *)2);
    kvm_gmem_discard_queue_drop_block(&q, (void *)3);
    kvm_gmem_discard_queue_drop_block(&q, (void *)4);
    assert(QSIMPLEQ_EMPTY(&q.pending) && !q.backlog);
    return 0;
}
