/*
 * Unit tests: the queue of pending discards and the ordering rule's flush
 * (accel/kvm/gmem/gmem-discard-queue.c). The blocks are plain addresses:
 * the queue only compares them.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "../../accel/kvm/gmem/gmem-discard-queue.h"

static char block1, block2;

typedef struct Flushed {
    int n;
    KvmGmemDiscard seen[8];
} Flushed;

static bool record(KvmGmemDiscard *d, void *opaque)
{
    Flushed *f = opaque;

    g_assert_cmpint(f->n, <, 8);
    f->seen[f->n++] = *d;
    return true;
}

/* A discard of guest_memfd sides fails; the others are done. */
static bool fail_guest_memfd(KvmGmemDiscard *d, void *opaque)
{
    record(d, opaque);
    return !d->guest_memfd;
}

static void push_four(KvmGmemDiscardQueue *q)
{
    kvm_gmem_discard_queue_init(q);
    kvm_gmem_discard_queue_push(q, &block1, 0, 4 * KiB, false);
    kvm_gmem_discard_queue_push(q, &block1, 8 * KiB, 4 * KiB, true);
    kvm_gmem_discard_queue_push(q, &block2, 0, 4 * KiB, false);
    kvm_gmem_discard_queue_push(q, &block1, 2 * MiB, 2 * MiB, true);
}

static void test_fifo_and_backlog(void)
{
    KvmGmemDiscardQueue q;
    KvmGmemDiscard *d;
    const uint64_t sizes[] = { 4 * KiB, 4 * KiB, 4 * KiB, 2 * MiB };

    push_four(&q);
    g_assert_cmpuint(q.backlog, ==, 12 * KiB + 2 * MiB);
    for (int i = 0; i < 4; i++) {
        uint64_t before = q.backlog;

        d = kvm_gmem_discard_queue_pop(&q);
        g_assert_nonnull(d);
        g_assert_cmpuint(d->size, ==, sizes[i]);
        g_assert_cmpuint(q.backlog, ==, before - sizes[i]);
        g_free(d);
    }
    g_assert_null(kvm_gmem_discard_queue_pop(&q));
    g_assert_cmpuint(q.backlog, ==, 0);
}

static void test_flush_takes_overlapping_oldest_first(void)
{
    KvmGmemDiscardQueue q;
    Flushed f = { 0 };
    KvmGmemDiscard *d;

    push_four(&q);
    /* [0, 12 KiB) of block1 covers the first two, not block2's. */
    kvm_gmem_discard_queue_take_overlapping(&q, &block1, 0, 12 * KiB,
                                            record, &f);
    g_assert_cmpint(f.n, ==, 2);
    g_assert_cmpuint(f.seen[0].offset, ==, 0);
    g_assert_false(f.seen[0].guest_memfd);
    g_assert_cmpuint(f.seen[1].offset, ==, 8 * KiB);
    g_assert_true(f.seen[1].guest_memfd);
    g_assert_cmpuint(q.backlog, ==, 4 * KiB + 2 * MiB);

    /* What is left keeps its order. */
    d = kvm_gmem_discard_queue_pop(&q);
    g_assert_true(d->block == &block2);
    g_free(d);
    d = kvm_gmem_discard_queue_pop(&q);
    g_assert_cmpuint(d->offset, ==, 2 * MiB);
    g_free(d);
    g_assert_null(kvm_gmem_discard_queue_pop(&q));
}

static void test_flush_boundaries(void)
{
    KvmGmemDiscardQueue q;
    Flushed f = { 0 };

    push_four(&q);
    /* The gap [4 KiB, 8 KiB) touches neither neighbour. */
    kvm_gmem_discard_queue_take_overlapping(&q, &block1, 4 * KiB, 4 * KiB,
                                            record, &f);
    g_assert_cmpint(f.n, ==, 0);
    /* One byte into a range is an overlap; the end is exclusive. */
    kvm_gmem_discard_queue_take_overlapping(&q, &block1, 2 * MiB - 4 * KiB,
                                            4 * KiB, record, &f);
    g_assert_cmpint(f.n, ==, 0);
    kvm_gmem_discard_queue_take_overlapping(&q, &block1, 4 * MiB - 4 * KiB,
                                            4 * KiB, record, &f);
    g_assert_cmpint(f.n, ==, 1);
    g_assert_cmpuint(f.seen[0].offset, ==, 2 * MiB);
    /* Another block with the same offsets is left alone. */
    kvm_gmem_discard_queue_take_overlapping(&q, &block2, 8 * KiB, 4 * KiB,
                                            record, &f);
    g_assert_cmpint(f.n, ==, 1);
    g_assert_cmpuint(q.backlog, ==, 12 * KiB);
    while (q.backlog) {
        g_free(kvm_gmem_discard_queue_pop(&q));
    }
}

/*
 * A failed discard stays queued, marked failed: the worker's pop passes
 * it by, and every flush of its range tries it again until it is done.
 */
static void test_failed_discard_stays_pending(void)
{
    KvmGmemDiscardQueue q;
    Flushed f = { 0 };
    KvmGmemDiscard *d;

    push_four(&q);
    g_assert_false(kvm_gmem_discard_queue_take_overlapping(
                       &q, &block1, 0, 4 * MiB, fail_guest_memfd, &f));
    g_assert_cmpint(f.n, ==, 3);
    /* Left: block1's two guest_memfd discards (failed), block2's. */
    g_assert_cmpuint(q.backlog, ==, 8 * KiB + 2 * MiB);
    d = kvm_gmem_discard_queue_pop(&q);
    g_assert_true(d->block == &block2);
    g_free(d);
    g_assert_null(kvm_gmem_discard_queue_pop(&q));
    g_assert_cmpuint(q.backlog, ==, 4 * KiB + 2 * MiB);

    /* The worker gives one back after failing it, at the tail. */
    kvm_gmem_discard_queue_push(&q, &block2, 0, 4 * KiB, true);
    d = kvm_gmem_discard_queue_pop(&q);
    kvm_gmem_discard_queue_requeue_failed(&q, d);
    g_assert_null(kvm_gmem_discard_queue_pop(&q));
    g_assert_cmpuint(q.backlog, ==, 8 * KiB + 2 * MiB);

    /* A flush that succeeds takes failed ones too. */
    f.n = 0;
    g_assert_true(kvm_gmem_discard_queue_take_overlapping(
                      &q, &block1, 0, 4 * MiB, record, &f));
    g_assert_cmpint(f.n, ==, 2);
    g_assert_cmpuint(q.backlog, ==, 4 * KiB);
    kvm_gmem_discard_queue_drop_block(&q, &block2);
    g_assert_cmpuint(q.backlog, ==, 0);
    g_assert_true(QSIMPLEQ_EMPTY(&q.pending));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/kvm-gmem/discard-queue/fifo-and-backlog",
                    test_fifo_and_backlog);
    g_test_add_func("/kvm-gmem/discard-queue/flush-overlapping",
                    test_flush_takes_overlapping_oldest_first);
    g_test_add_func("/kvm-gmem/discard-queue/flush-boundaries",
                    test_flush_boundaries);
    g_test_add_func("/kvm-gmem/discard-queue/failed-stays-pending",
                    test_failed_discard_stays_pending);
    return g_test_run();
}
