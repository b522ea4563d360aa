/*
 * Unit tests: the runs a conversion changes (accel/kvm/gmem/gmem-runs.c),
 * against a bit-by-bit model of the state.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bitmap.h"
#include "../../accel/kvm/gmem/gmem-runs.h"

#define BLOCKS 300      /* not a multiple of the word size */

typedef struct Run {
    unsigned long start, end;
} Run;

static int collect(const unsigned long *shared, unsigned long start,
                   unsigned long end, bool to_private, Run *runs, int max)
{
    unsigned long bit = start;
    int n = 0;
    Run r;

    while (kvm_gmem_next_run(shared, &bit, end, to_private, &r.start,
                             &r.end)) {
        g_assert_cmpint(n, <, max);
        runs[n++] = r;
    }
    g_assert_cmpuint(bit, ==, end);
    return n;
}

static void test_all_shared_to_private(void)
{
    DECLARE_BITMAP(shared, BLOCKS);
    Run runs[4];

    bitmap_fill(shared, BLOCKS);
    g_assert_cmpint(collect(shared, 10, 200, true, runs, 4), ==, 1);
    g_assert_cmpuint(runs[0].start, ==, 10);
    g_assert_cmpuint(runs[0].end, ==, 200);
    /* Already shared: nothing to make shared. */
    g_assert_cmpint(collect(shared, 0, BLOCKS, false, runs, 4), ==, 0);
}

static void test_holes_are_skipped(void)
{
    DECLARE_BITMAP(shared, BLOCKS);
    Run runs[4];

    bitmap_zero(shared, BLOCKS);
    bitmap_set(shared, 5, 10);          /* shared: [5, 15) */
    bitmap_set(shared, 63, 3);          /* shared: [63, 66), across a word */
    g_assert_cmpint(collect(shared, 0, BLOCKS, true, runs, 4), ==, 2);
    g_assert_cmpuint(runs[0].start, ==, 5);
    g_assert_cmpuint(runs[0].end, ==, 15);
    g_assert_cmpuint(runs[1].start, ==, 63);
    g_assert_cmpuint(runs[1].end, ==, 66);
    /* The request's bounds cut runs. */
    g_assert_cmpint(collect(shared, 7, 64, true, runs, 4), ==, 2);
    g_assert_cmpuint(runs[0].start, ==, 7);
    g_assert_cmpuint(runs[1].end, ==, 64);
    /* Going shared, the private blocks between them are the runs. */
    g_assert_cmpint(collect(shared, 0, 70, false, runs, 4), ==, 3);
    g_assert_cmpuint(runs[0].start, ==, 0);
    g_assert_cmpuint(runs[0].end, ==, 5);
    g_assert_cmpuint(runs[1].start, ==, 15);
    g_assert_cmpuint(runs[1].end, ==, 63);
    g_assert_cmpuint(runs[2].start, ==, 66);
    g_assert_cmpuint(runs[2].end, ==, 70);
}

static void test_empty_range(void)
{
    DECLARE_BITMAP(shared, BLOCKS);
    Run runs[1];

    bitmap_fill(shared, BLOCKS);
    g_assert_cmpint(collect(shared, 40, 40, true, runs, 1), ==, 0);
}

/*
 * Random states and requests: the runs are disjoint, ordered, maximal,
 * cover exactly the blocks not in the target state, and applying them
 * leaves the whole range in it.
 */
static void test_model(void)
{
    GRand *rand = g_rand_new_with_seed(0x6d656d);

    for (int iter = 0; iter < 2000; iter++) {
        DECLARE_BITMAP(shared, BLOCKS);
        bool model[BLOCKS];
        unsigned long start = g_rand_int_range(rand, 0, BLOCKS);
        unsigned long end = g_rand_int_range(rand, start, BLOCKS + 1);
        bool to_private = g_rand_boolean(rand);
        Run runs[BLOCKS];
        int n, covered = 0, differing = 0;

        bitmap_zero(shared, BLOCKS);
        for (int b = 0; b < BLOCKS; b++) {
            /* Runs of a random length, so both long and short ones. */
            model[b] = b && g_rand_int_range(rand, 0, 8) ? model[b - 1]
                                                         : g_rand_boolean(rand);
            if (model[b]) {
                set_bit(b, shared);
            }
        }
        for (unsigned long b = start; b < end; b++) {
            differing += model[b] == to_private;
        }
        n = collect(shared, start, end, to_private, runs, BLOCKS);
        for (int i = 0; i < n; i++) {
            g_assert_cmpuint(runs[i].start, <, runs[i].end);
            g_assert_cmpuint(runs[i].start, >=, start);
            g_assert_cmpuint(runs[i].end, <=, end);
            if (i) {
                /* Maximal: a block in the target state between runs. */
                g_assert_cmpuint(runs[i].start, >, runs[i - 1].end);
            }
            if (runs[i].start > start) {
                g_assert(model[runs[i].start - 1] != to_private);
            }
            if (runs[i].end < end) {
                g_assert(model[runs[i].end] != to_private);
            }
            for (unsigned long b = runs[i].start; b < runs[i].end; b++) {
                g_assert(model[b] == to_private);   /* shared iff to_private */
                model[b] = !to_private;
                covered++;
            }
        }
        g_assert_cmpint(covered, ==, differing);
        for (unsigned long b = start; b < end; b++) {
            g_assert(model[b] == !to_private);
        }
    }
    g_rand_free(rand);
}

/*
 * Runs of equal state (the walk of query-guest-memfd's listing and of a
 * memslot coming back): uniform, maximal, and together the whole range.
 */
static void test_state_runs(void)
{
    GRand *rand = g_rand_new_with_seed(0x72756e);

    for (int iter = 0; iter < 500; iter++) {
        DECLARE_BITMAP(shared, BLOCKS);
        unsigned long start = g_rand_int_range(rand, 0, BLOCKS);
        unsigned long end = g_rand_int_range(rand, start + 1, BLOCKS + 1);
        unsigned long bit = start;

        bitmap_zero(shared, BLOCKS);
        for (int b = 0; b < BLOCKS; b++) {
            if (g_rand_int_range(rand, 0, 8) ? b && test_bit(b - 1, shared)
                                             : g_rand_boolean(rand)) {
                set_bit(b, shared);
            }
        }
        while (bit < end) {
            bool is_shared;
            unsigned long next = kvm_gmem_state_run_end(shared, bit, end,
                                                        &is_shared);

            g_assert_cmpuint(next, >, bit);
            g_assert_cmpuint(next, <=, end);
            for (unsigned long b = bit; b < next; b++) {
                g_assert_cmpint(test_bit(b, shared), ==, is_shared);
            }
            if (next < end) {
                g_assert_cmpint(test_bit(next, shared), !=, is_shared);
            }
            bit = next;
        }
    }
    g_rand_free(rand);
}

/*
 * Whole private groups (huge pages of a hugetlb shared side): exactly the
 * groups that overlap the range, lie wholly in the bitmap and have every
 * block private, in maximal runs.
 */
static void test_private_groups(void)
{
    GRand *rand = g_rand_new_with_seed(0x687567);
    static const unsigned long groups[] = { 1, 2, 8, 64, 128 };

    for (int iter = 0; iter < 2000; iter++) {
        DECLARE_BITMAP(shared, BLOCKS);
        unsigned long group = groups[g_rand_int_range(rand, 0, 5)];
        unsigned long start = g_rand_int_range(rand, 0, BLOCKS);
        unsigned long end = g_rand_int_range(rand, start + 1, BLOCKS + 1);
        unsigned long bit = start, first, last;
        long prev_end = -1;
        bool freed[BLOCKS] = { false };

        bitmap_zero(shared, BLOCKS);
        for (int b = 0; b < BLOCKS; b++) {
            /* Mostly private, so that whole groups occur. */
            if (!g_rand_int_range(rand, 0, 1 + 4 * group)) {
                set_bit(b, shared);
            }
        }
        while (kvm_gmem_next_private_groups(shared, BLOCKS, &bit, end, group,
                                            &first, &last)) {
            g_assert_cmpuint(first, <, last);
            g_assert_cmpuint(first % group, ==, 0);
            g_assert_cmpuint(last % group, ==, 0);
            /* Maximal: a group that is not whole lies in between. */
            g_assert_cmpint((long)first, >, prev_end);
            for (unsigned long b = first; b < last; b++) {
                freed[b] = true;
            }
            prev_end = last;
        }
        for (unsigned long g = 0; g + group <= BLOCKS; g += group) {
            bool overlaps = g < end && g + group > start;
            bool whole = find_next_bit(shared, g + group, g) >= g + group;

            for (unsigned long b = g; b < g + group; b++) {
                g_assert_cmpint(freed[b], ==, overlaps && whole);
            }
        }
        for (unsigned long b = BLOCKS / group * group; b < BLOCKS; b++) {
            g_assert_false(freed[b]);       /* a group cut short */
        }
    }
    g_rand_free(rand);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/kvm-gmem/runs/all-shared-to-private",
                    test_all_shared_to_private);
    g_test_add_func("/kvm-gmem/runs/holes-are-skipped",
                    test_holes_are_skipped);
    g_test_add_func("/kvm-gmem/runs/empty-range", test_empty_range);
    g_test_add_func("/kvm-gmem/runs/model", test_model);
    g_test_add_func("/kvm-gmem/runs/state-runs", test_state_runs);
    g_test_add_func("/kvm-gmem/runs/private-groups", test_private_groups);
    return g_test_run();
}
