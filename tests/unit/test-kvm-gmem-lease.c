/*
 * Unit tests: the lease table of host I/O on shared guest memory
 * (accel/kvm/gmem/gmem-lease.c). The blocks are plain addresses: the
 * table only compares them.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "../../accel/kvm/gmem/gmem-lease.h"

static char block1, block2;

static void test_overlap_edges(void)
{
    KvmGmemLeases l;

    kvm_gmem_leases_init(&l);
    g_assert_false(kvm_gmem_leases_overlap(&l, &block1, 0, 1 * GiB));
    kvm_gmem_leases_take(&l, &block1, 64 * KiB, 8 * KiB);

    /* Touching ranges do not overlap; one shared byte does. */
    g_assert_false(kvm_gmem_leases_overlap(&l, &block1, 0, 64 * KiB));
    g_assert_false(kvm_gmem_leases_overlap(&l, &block1, 72 * KiB, 4 * KiB));
    g_assert_true(kvm_gmem_leases_overlap(&l, &block1, 0, 64 * KiB + 1));
    g_assert_true(kvm_gmem_leases_overlap(&l, &block1, 72 * KiB - 1, 1));
    g_assert_true(kvm_gmem_leases_overlap(&l, &block1, 66 * KiB, 1));
    g_assert_true(kvm_gmem_leases_overlap(&l, &block1, 0, 1 * GiB));
    /* Another block's same offsets are free. */
    g_assert_false(kvm_gmem_leases_overlap(&l, &block2, 0, 1 * GiB));
    kvm_gmem_leases_destroy(&l);
}

static void test_take_drop(void)
{
    KvmGmemLeases l;

    kvm_gmem_leases_init(&l);
    kvm_gmem_leases_take(&l, &block1, 0, 4 * KiB);
    kvm_gmem_leases_take(&l, &block2, 0, 4 * KiB);
    g_assert_cmpuint(l.active, ==, 2);
    g_assert_true(kvm_gmem_leases_drop(&l, &block1, 0));
    g_assert_false(kvm_gmem_leases_overlap(&l, &block1, 0, 4 * KiB));
    g_assert_true(kvm_gmem_leases_overlap(&l, &block2, 0, 4 * KiB));
    g_assert_true(kvm_gmem_leases_drop(&l, &block2, 0));
    g_assert_cmpuint(l.active, ==, 0);
    kvm_gmem_leases_destroy(&l);
}

/* Two devices map the same buffer: it stays leased until both unmap. */
static void test_repeated_start(void)
{
    KvmGmemLeases l;

    kvm_gmem_leases_init(&l);
    kvm_gmem_leases_take(&l, &block1, 1 * MiB, 4 * KiB);
    kvm_gmem_leases_take(&l, &block1, 1 * MiB, 64 * KiB);
    g_assert_cmpuint(l.active, ==, 2);
    /* The entry covers the longer mapping. */
    g_assert_true(kvm_gmem_leases_overlap(&l, &block1, 1 * MiB + 32 * KiB,
                                          4 * KiB));
    g_assert_true(kvm_gmem_leases_drop(&l, &block1, 1 * MiB));
    g_assert_true(kvm_gmem_leases_overlap(&l, &block1, 1 * MiB, 4 * KiB));
    g_assert_true(kvm_gmem_leases_drop(&l, &block1, 1 * MiB));
    g_assert_false(kvm_gmem_leases_overlap(&l, &block1, 0, 1 * GiB));
    kvm_gmem_leases_destroy(&l);
}

/* An unmap the table never saw mapped changes nothing. */
static void test_unknown_drop(void)
{
    KvmGmemLeases l;

    kvm_gmem_leases_init(&l);
    kvm_gmem_leases_take(&l, &block1, 8 * KiB, 4 * KiB);
    g_assert_false(kvm_gmem_leases_drop(&l, &block1, 4 * KiB));
    g_assert_false(kvm_gmem_leases_drop(&l, &block2, 8 * KiB));
    g_assert_cmpuint(l.active, ==, 1);
    g_assert_true(kvm_gmem_leases_overlap(&l, &block1, 8 * KiB, 4 * KiB));
    kvm_gmem_leases_destroy(&l);
}

/* Many leases, dropped in another order than taken. */
static void test_many(void)
{
    KvmGmemLeases l;
    const int n = 1000;

    kvm_gmem_leases_init(&l);
    for (int i = 0; i < n; i++) {
        kvm_gmem_leases_take(&l, &block1, i * 8 * KiB, 4 * KiB);
    }
    g_assert_cmpuint(l.active, ==, n);
    for (int i = 0; i < n; i += 2) {
        g_assert_true(kvm_gmem_leases_drop(&l, &block1, i * 8 * KiB));
    }
    for (int i = 0; i < n; i++) {
        /* The odd leases remain; the gaps between leases stay free. */
        g_assert_cmpint(kvm_gmem_leases_overlap(&l, &block1, i * 8 * KiB,
                                                4 * KiB), ==, i & 1);
        g_assert_false(kvm_gmem_leases_overlap(&l, &block1,
                                               i * 8 * KiB + 4 * KiB,
                                               4 * KiB));
    }
    for (int i = n - 1; i > 0; i -= 2) {
        g_assert_true(kvm_gmem_leases_drop(&l, &block1, i * 8 * KiB));
    }
    g_assert_cmpuint(l.active, ==, 0);
    g_assert_cmpuint(g_hash_table_size(l.by_start), ==, 0);
    kvm_gmem_leases_destroy(&l);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/kvm-gmem/lease/overlap-edges", test_overlap_edges);
    g_test_add_func("/kvm-gmem/lease/take-drop", test_take_drop);
    g_test_add_func("/kvm-gmem/lease/repeated-start", test_repeated_start);
    g_test_add_func("/kvm-gmem/lease/unknown-drop", test_unknown_drop);
    g_test_add_func("/kvm-gmem/lease/many", test_many);
    return g_test_run();
}
