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
    kvm_gmem_discard_queue_push(q, &block1, 0, 4 * KiB, false, 0);
    kvm_gmem_discard_queue_push(q, &block1, 8 * KiB, 4 * KiB, true, 0);
    kvm_gmem_discard_queue_push(q, &block2, 0, 4 * KiB, false, 0);
    kvm_gmem_discard_queue_push(q, &block1, 2 * MiB, 2 * MiB, true, 0);
}

/* The worker's turn: take the oldest, finish it as @done says. */
static KvmGmemDiscard pop_finish(KvmGmemDiscardQueue *q, bool done)
{
    KvmGmemDiscard *d = kvm_gmem_discard_queue_pop(q), copy;

    g_assert_nonnull(d);
    g_assert_true(d->in_flight);
    copy = *d;
    kvm_gmem_discard_queue_finish(q, d, done);
    return copy;
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
        /* In flight it is still pending. */
        g_assert_cmpuint(q.backlog, ==, before);
        kvm_gmem_discard_queue_finish(&q, d, true);
        g_assert_cmpuint(q.backlog, ==, before - sizes[i]);
    }
    g_assert_null(kvm_gmem_discard_queue_pop(&q));
    g_assert_cmpuint(q.backlog, ==, 0);
}

static void test_flush_takes_overlapping_oldest_first(void)
{
    KvmGmemDiscardQueue q;
    Flushed f = { 0 };

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
    g_assert_true(pop_finish(&q, true).block == &block2);
    g_assert_cmpuint(pop_finish(&q, true).offset, ==, 2 * MiB);
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
        pop_finish(&q, true);
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
    g_assert_true(pop_finish(&q, true).block == &block2);
    g_assert_null(kvm_gmem_discard_queue_pop(&q));
    g_assert_cmpuint(q.backlog, ==, 4 * KiB + 2 * MiB);

    /* One the worker fails stays, marked failed, where it was. */
    kvm_gmem_discard_queue_push(&q, &block2, 0, 4 * KiB, true, 0);
    pop_finish(&q, false);
    g_assert_null(kvm_gmem_discard_queue_pop(&q));
    g_assert_cmpuint(q.backlog, ==, 8 * KiB + 2 * MiB);

    /* A sync discard that failed is queued as failed. */
    d = g_new0(KvmGmemDiscard, 1);
    *d = (KvmGmemDiscard) { .block = &block2, .offset = 64 * KiB,
                            .size = 4 * KiB };
    kvm_gmem_discard_queue_requeue_failed(&q, d);
    g_assert_null(kvm_gmem_discard_queue_pop(&q));
    g_assert_cmpuint(q.backlog, ==, 12 * KiB + 2 * MiB);

    /* A flush that succeeds takes failed ones too. */
    f.n = 0;
    g_assert_true(kvm_gmem_discard_queue_take_overlapping(
                      &q, &block1, 0, 4 * MiB, record, &f));
    g_assert_cmpint(f.n, ==, 2);
    g_assert_cmpuint(q.backlog, ==, 8 * KiB);       /* block2's two */
    kvm_gmem_discard_queue_drop_block(&q, &block2);
    g_assert_cmpuint(q.backlog, ==, 0);
    g_assert_true(QSIMPLEQ_EMPTY(&q.pending));
}

/*
 * A push next to or over the newest discard of the same side extends it;
 * one of the other side, of another block, with a gap, or after a failed
 * or in-flight one, is a discard of its own.
 */
static void test_push_coalesces_with_newest(void)
{
    KvmGmemDiscardQueue q;
    KvmGmemDiscard d;

    kvm_gmem_discard_queue_init(&q);
    kvm_gmem_discard_queue_push(&q, &block1, 8 * KiB, 4 * KiB, false, 0);
    kvm_gmem_discard_queue_push(&q, &block1, 12 * KiB, 4 * KiB, false, 0);
    kvm_gmem_discard_queue_push(&q, &block1, 4 * KiB, 4 * KiB, false, 0);
    kvm_gmem_discard_queue_push(&q, &block1, 6 * KiB, 16 * KiB, false, 0);
    g_assert_cmpuint(q.backlog, ==, 18 * KiB);
    kvm_gmem_discard_queue_push(&q, &block1, 22 * KiB, 4 * KiB, true, 0);
    kvm_gmem_discard_queue_push(&q, &block2, 26 * KiB, 4 * KiB, true, 0);
    kvm_gmem_discard_queue_push(&q, &block2, 34 * KiB, 4 * KiB, true, 0);
    g_assert_cmpuint(q.backlog, ==, 30 * KiB);
    d = pop_finish(&q, true);
    g_assert_cmpuint(d.offset, ==, 4 * KiB);
    g_assert_cmpuint(d.size, ==, 18 * KiB);
    g_assert_false(d.guest_memfd);
    g_assert_cmpuint(pop_finish(&q, true).offset, ==, 22 * KiB);
    g_assert_cmpuint(pop_finish(&q, true).offset, ==, 26 * KiB);
    /* In flight: a push next to it is queued on its own. */
    g_assert_nonnull(kvm_gmem_discard_queue_pop(&q));
    kvm_gmem_discard_queue_push(&q, &block2, 38 * KiB, 4 * KiB, true, 0);
    g_assert_cmpuint(q.backlog, ==, 8 * KiB);
    kvm_gmem_discard_queue_drop_block(&q, &block2);
    g_assert_false(QSIMPLEQ_EMPTY(&q.pending));
    g_assert_cmpuint(q.backlog, ==, 4 * KiB);
    kvm_gmem_discard_queue_finish(&q, QSIMPLEQ_FIRST(&q.pending), false);
    g_assert_true(QSIMPLEQ_EMPTY(&q.pending));
}

/*
 * In flight, a discard is busy for the ranges it overlaps; if its block
 * goes away meanwhile it is cut loose, and its finish frees it.
 */
static void test_in_flight_busy_and_dropped(void)
{
    KvmGmemDiscardQueue q;
    KvmGmemDiscard *d, *next;

    push_four(&q);
    g_assert_false(kvm_gmem_discard_queue_busy(&q, &block1, 0, 4 * KiB));
    d = kvm_gmem_discard_queue_pop(&q);
    g_assert_true(kvm_gmem_discard_queue_busy(&q, &block1, 0, 4 * KiB));
    g_assert_true(kvm_gmem_discard_queue_busy(&q, &block1, 4 * KiB - 1, 1));
    g_assert_false(kvm_gmem_discard_queue_busy(&q, &block1, 4 * KiB,
                                               4 * KiB));
    g_assert_false(kvm_gmem_discard_queue_busy(&q, &block2, 0, 4 * KiB));
    /* The next pop passes it by. */
    next = kvm_gmem_discard_queue_pop(&q);
    g_assert_cmpuint(next->offset, ==, 8 * KiB);
    kvm_gmem_discard_queue_drop_block(&q, &block1);
    g_assert_null(d->block);
    g_assert_false(kvm_gmem_discard_queue_busy(&q, &block1, 0, 4 * KiB));
    g_assert_cmpuint(q.backlog, ==, 12 * KiB);
    kvm_gmem_discard_queue_finish(&q, d, false);
    g_assert_cmpuint(q.backlog, ==, 8 * KiB);
    kvm_gmem_discard_queue_drop_block(&q, &block2);
    g_assert_cmpuint(q.backlog, ==, 4 * KiB);
    kvm_gmem_discard_queue_finish(&q, next, true);
    g_assert_true(QSIMPLEQ_EMPTY(&q.pending) && !q.backlog);
}

/*
 * The worker's clock: the oldest discard it may take, by the time it was
 * first queued (an extension keeps it); failed and in-flight ones do not
 * count.
 */
static void test_oldest_takeable(void)
{
    KvmGmemDiscardQueue q;
    KvmGmemDiscard *d;

    kvm_gmem_discard_queue_init(&q);
    g_assert_cmpint(kvm_gmem_discard_queue_oldest(&q), ==, -1);
    kvm_gmem_discard_queue_push(&q, &block1, 0, 4 * KiB, false, 100);
    kvm_gmem_discard_queue_push(&q, &block1, 4 * KiB, 4 * KiB, false, 200);
    kvm_gmem_discard_queue_push(&q, &block2, 0, 4 * KiB, false, 300);
    g_assert_cmpint(kvm_gmem_discard_queue_oldest(&q), ==, 100);
    d = kvm_gmem_discard_queue_pop(&q);
    g_assert_cmpuint(d->size, ==, 8 * KiB);
    g_assert_cmpint(kvm_gmem_discard_queue_oldest(&q), ==, 300);
    kvm_gmem_discard_queue_finish(&q, d, false);
    g_assert_cmpint(kvm_gmem_discard_queue_oldest(&q), ==, 300);
    pop_finish(&q, true);
    g_assert_cmpint(kvm_gmem_discard_queue_oldest(&q), ==, -1);
    kvm_gmem_discard_queue_drop_block(&q, &block1);
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
    g_test_add_func("/kvm-gmem/discard-queue/push-coalesces",
                    test_push_coalesces_with_newest);
    g_test_add_func("/kvm-gmem/discard-queue/in-flight",
                    test_in_flight_busy_and_dropped);
    g_test_add_func("/kvm-gmem/discard-queue/oldest-takeable",
                    test_oldest_takeable);
    return g_test_run();
}
