/*
 * Unit tests: decoding of KVM_HC_MAP_GPA_RANGE requests
 * (accel/kvm/gmem/gmem-request.c). No KVM is involved: the code under test
 * is pure.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "../../accel/kvm/gmem/gmem-request.h"

#define ENC     (1ULL << 4)
#define HINT_2M 1ULL
#define HINT_1G 2ULL

static KvmGmemReject decode(uint64_t gpa, uint64_t npages, uint64_t attrs,
                            KvmGmemRange *range)
{
    KvmGmemRange unused;

    return kvm_gmem_decode_map_gpa_range(gpa, npages, attrs,
                                         range ? range : &unused);
}

static void test_valid(void)
{
    KvmGmemRange r = { 0 };

    g_assert_cmpint(decode(0x200000, 1, ENC, &r), ==, KVM_GMEM_OK);
    g_assert_cmphex(r.gpa, ==, 0x200000);
    g_assert_cmphex(r.size, ==, 4 * KiB);
    g_assert_true(r.to_private);

    g_assert_cmpint(decode(0x400000, 512, HINT_2M, &r), ==, KVM_GMEM_OK);
    g_assert_cmphex(r.size, ==, 2 * MiB);
    g_assert_false(r.to_private);

    /* A 4K hint allows any 4 KiB-aligned range, as TDX MapGPA sends. */
    g_assert_cmpint(decode(0x1000, 1023, ENC, &r), ==, KVM_GMEM_OK);
    g_assert_cmphex(r.size, ==, 1023 * 4 * KiB);

    g_assert_cmpint(decode(GiB, 262144, ENC | HINT_1G, &r), ==, KVM_GMEM_OK);
    g_assert_cmphex(r.size, ==, GiB);

    /* The last page below 2^64 is a valid range; the memory map decides. */
    g_assert_cmpint(decode(UINT64_MAX - 0xfff, 1, 0, &r), ==, KVM_GMEM_OK);
}

static void test_empty(void)
{
    g_assert_cmpint(decode(0x200000, 0, ENC, NULL), ==, KVM_GMEM_REJECT_EMPTY);
}

static void test_unaligned(void)
{
    g_assert_cmpint(decode(0x200800, 1, ENC, NULL), ==,
                    KVM_GMEM_REJECT_UNALIGNED);
    g_assert_cmpint(decode(0x200001, 1, 0, NULL), ==,
                    KVM_GMEM_REJECT_UNALIGNED);
}

static void test_overflow(void)
{
    /* gpa + size wraps. */
    g_assert_cmpint(decode(UINT64_MAX - 0xfff, 2, ENC, NULL), ==,
                    KVM_GMEM_REJECT_OVERFLOW);
    /* npages * 4 KiB itself does not fit in 64 bits. */
    g_assert_cmpint(decode(0, 1ULL << 52, ENC, NULL), ==,
                    KVM_GMEM_REJECT_OVERFLOW);
    g_assert_cmpint(decode(0x1000, UINT64_MAX, 0, NULL), ==,
                    KVM_GMEM_REJECT_OVERFLOW);
    /* The largest npages that fits, at gpa 0, is still fine. */
    g_assert_cmpint(decode(0, UINT64_MAX >> 12, 0, NULL), ==,
                    KVM_GMEM_OK);
}

static void test_reserved(void)
{
    g_assert_cmpint(decode(0x200000, 1, ENC | (1ULL << 5), NULL), ==,
                    KVM_GMEM_REJECT_RESERVED);
    g_assert_cmpint(decode(0x200000, 1, 1ULL << 63, NULL), ==,
                    KVM_GMEM_REJECT_RESERVED);
    /* Page-size hints 3..15 are reserved. */
    for (uint64_t hint = 3; hint < 16; hint++) {
        g_assert_cmpint(decode(0, 262144, hint, NULL), ==,
                        KVM_GMEM_REJECT_RESERVED);
    }
}

static void test_hint_mismatch(void)
{
    /* 2M hint on a 4 KiB range, on an unaligned 2 MiB range, on 3 MiB. */
    g_assert_cmpint(decode(0x200000, 1, ENC | HINT_2M, NULL), ==,
                    KVM_GMEM_REJECT_HINT);
    g_assert_cmpint(decode(0x201000, 512, ENC | HINT_2M, NULL), ==,
                    KVM_GMEM_REJECT_HINT);
    g_assert_cmpint(decode(0x200000, 768, HINT_2M, NULL), ==,
                    KVM_GMEM_REJECT_HINT);
    g_assert_cmpint(decode(0x200000, 262144, HINT_1G, NULL), ==,
                    KVM_GMEM_REJECT_HINT);
}

static void test_check_range_host_pages(void)
{
    /* Other sources (memory faults, QMP) are checked at host page size. */
    g_assert_cmpint(kvm_gmem_check_range(0x10000, 0x10000, 64 * KiB), ==,
                    KVM_GMEM_OK);
    g_assert_cmpint(kvm_gmem_check_range(0x1000, 0x10000, 64 * KiB), ==,
                    KVM_GMEM_REJECT_UNALIGNED);
    g_assert_cmpint(kvm_gmem_check_range(0, 0, 4 * KiB), ==,
                    KVM_GMEM_REJECT_EMPTY);
    g_assert_cmpint(kvm_gmem_check_range(-8192ULL, 16384, 4 * KiB), ==,
                    KVM_GMEM_REJECT_OVERFLOW);
    g_assert_cmpint(kvm_gmem_check_range(-8192ULL, 8192, 4 * KiB), ==,
                    KVM_GMEM_OK);
}

/*
 * KVM takes only 0, EINVAL and EAGAIN (positive) from userspace as the
 * answer to KVM_HC_MAP_GPA_RANGE; for SEV-SNP and TDX guests anything
 * else fails KVM_RUN (Linux's kvm_is_valid_map_gpa_range_ret()).
 */
static void test_guest_answers(void)
{
    g_assert_cmpint(kvm_gmem_reject_to_guest(KVM_GMEM_OK), ==, 0);
    for (int r = KVM_GMEM_REJECT_EMPTY; r <= KVM_GMEM_REJECT_KVM; r++) {
        g_assert_cmpint(kvm_gmem_reject_to_guest(r), ==, EINVAL);
    }
    g_assert_cmpint(kvm_gmem_reject_to_guest(KVM_GMEM_REJECT_LEASED), ==,
                    EAGAIN);
    for (int r = 0; r < KVM_GMEM_REJECT__MAX; r++) {
        int64_t ret = kvm_gmem_reject_to_guest(r);

        g_assert_true(ret == 0 || ret == EINVAL || ret == EAGAIN);
        g_assert_nonnull(kvm_gmem_reject_name(r));
        g_assert_cmpstr(kvm_gmem_reject_name(r), !=, "?");
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/kvm-gmem/request/valid", test_valid);
    g_test_add_func("/kvm-gmem/request/empty", test_empty);
    g_test_add_func("/kvm-gmem/request/unaligned", test_unaligned);
    g_test_add_func("/kvm-gmem/request/overflow", test_overflow);
    g_test_add_func("/kvm-gmem/request/reserved", test_reserved);
    g_test_add_func("/kvm-gmem/request/hint-mismatch", test_hint_mismatch);
    g_test_add_func("/kvm-gmem/request/host-pages",
                    test_check_range_host_pages);
    g_test_add_func("/kvm-gmem/request/guest-answers", test_guest_answers);
    return g_test_run();
}
