/*
 * libFuzzer harness: random sequences of pushes, flushes (the ordering
 * rule's take-overlapping step) and pops on the async discard queue,
 * checked after every step against a plain array model: FIFO order, the
 * backlog, and that a flush leaves nothing overlapping its range and
 * takes nothing else.
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
} Entry;

static Entry model[MAX_MODEL];
static unsigned model_len;
static unsigned taken;

static void take(KvmGmemDiscard *d, void *opaque)
{
    const Entry *range = opaque;

    assert((uintptr_t)d->block == range->block);
    assert(ranges_overlap(d->offset, d->size, range->offset, range->size));
    taken++;
}

static void check(KvmGmemDiscardQueue *q)
{
    KvmGmemDiscard *d;
    uint64_t backlog = 0;
    unsigned i = 0;

    QSIMPLEQ_FOREACH(d, &q->pending, next) {
        assert(i < model_len);
        assert((uintptr_t)d->block == model[i].block &&
               d->offset == model[i].offset && d->size == model[i].size);
        backlog += d->size;
        i++;
    }
    assert(i == model_len && backlog == q->backlog);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    KvmGmemDiscardQueue q;
    KvmGmemDiscard *d;

    kvm_gmem_discard_queue_init(&q);
    model_len = 0;
    for (size_t i = 0; i + 4 <= size; i += 4) {
        Entry e = {
            .block = 1 + (data[i] & 3),
            .offset = (uint64_t)(data[i + 1] & 0x3f) << 12,
            .size = (uint64_t)(1 + (data[i + 2] & 0xf)) << 12,
        };

        switch (data[i + 3] % 3) {
        case 0:
            if (model_len < MAX_MODEL) {
                kvm_gmem_discard_queue_push(&q, (void *)e.block, e.offset,
                                            e.size, data[i + 3] & 4);
                model[model_len++] = e;
            }
            break;
        case 1: {
            unsigned kept = 0, expect = 0;

            for (unsigned j = 0; j < model_len; j++) {
                if (model[j].block == e.block &&
                    ranges_overlap(model[j].offset, model[j].size, e.offset,
                                   e.size)) {
                    expect++;
                } else {
                    model[kept++] = model[j];
                }
            }
            taken = 0;
            kvm_gmem_discard_queue_take_overlapping(&q, (void *)e.block,
                                                    e.offset, e.size, take,
                                                    &e);
            assert(taken == expect);
            model_len = kept;
            break;
        }
        default:
            d = kvm_gmem_discard_queue_pop(&q);
            assert(!d == !model_len);
            if (d) {
                assert((uintptr_t)d->block == model[0].block &&
                       d->offset == model[0].offset);
                memmove(model, model + 1, --model_len * sizeof(model[0]));
                g_free(d);
            }
            break;
        }
        check(&q);
    }
    while ((d = kvm_gmem_discard_queue_pop(&q))) {
        g_free(d);
    }
    return 0;
}
