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

/* One memory fault at @now_ms: whether the guest runs again, and when. */
static bool fault(KvmGmemFaultRetry *s, uint64_t gpa, KvmGmemReject r,
                  int64_t now_ms, uint32_t limit_ms, uint32_t *delay_ms)
{
    return kvm_gmem_fault_retry(s, gpa, 4096, true, r, now_ms, limit_ms,
                                delay_ms);
}

/*
 * Issue 24, defect 6: a memory fault whose conversion is refused for a
 * reason that may pass re-enters the guest, later each time, until the
 * limit; then, and on any other refusal, the VM stops.
 */
static void test_fault_retry(void)
{
    static const uint32_t delays[] = { 0, 1, 2, 4, 8, 16, 32, 64, 64 };
    KvmGmemFaultRetry s = { 0 };
    uint32_t delay = 99;
    int64_t t = 1000;

    /* Converted: the guest runs on. */
    g_assert_true(fault(&s, 0x1000, KVM_GMEM_OK, t, 10000, &delay));
    g_assert_cmpuint(delay, ==, 0);
    /* Leased or no memory: again and again, waiting longer each time. */
    for (unsigned i = 0; i < ARRAY_SIZE(delays); i++) {
        g_assert_true(fault(&s, 0x1000, i & 1 ? KVM_GMEM_REJECT_NO_MEMORY :
                            KVM_GMEM_REJECT_LEASED, t + i * 100, 10000,
                            &delay));
        g_assert_cmpuint(delay, ==, delays[i]);
        g_assert_cmpuint(s.refusals, ==, i + 1);
    }
    /* Until the limit after the first refusal: then it stops. */
    g_assert_true(fault(&s, 0x1000, KVM_GMEM_REJECT_LEASED, t + 9999, 10000,
                        &delay));
    g_assert_false(fault(&s, 0x1000, KVM_GMEM_REJECT_LEASED, t + 10000,
                         10000, &delay));
    g_assert_cmpuint(s.refusals, ==, ARRAY_SIZE(delays) + 2);
    g_assert_cmpint(s.first_ms, ==, t);
    s.refusals = 0;                     /* the caller's part */

    /* Another fault, or a success, starts the count again. */
    t += 20000;
    g_assert_true(fault(&s, 0x1000, KVM_GMEM_REJECT_LEASED, t, 1000, &delay));
    g_assert_true(fault(&s, 0x1000, KVM_GMEM_REJECT_LEASED, t + 900, 1000,
                        &delay));
    g_assert_cmpuint(delay, ==, 1);
    g_assert_true(fault(&s, 0x2000, KVM_GMEM_REJECT_LEASED, t + 950, 1000,
                        &delay));
    g_assert_cmpuint(delay, ==, 0);
    g_assert_true(fault(&s, 0x2000, KVM_GMEM_REJECT_LEASED, t + 1900, 1000,
                        &delay));
    g_assert_true(fault(&s, 0x2000, KVM_GMEM_OK, t + 1950, 1000, &delay));
    g_assert_true(fault(&s, 0x2000, KVM_GMEM_REJECT_LEASED, t + 2900, 1000,
                        &delay));
    g_assert_cmpuint(delay, ==, 0);

    /* Refusals that will not pass stop at once, as does a limit of 0. */
    for (int r = KVM_GMEM_REJECT_EMPTY; r < KVM_GMEM_REJECT__MAX; r++) {
        KvmGmemFaultRetry fresh = { 0 };
        bool passes = r == KVM_GMEM_REJECT_LEASED ||
                      r == KVM_GMEM_REJECT_NO_MEMORY;

        g_assert_true(fault(&fresh, 0x1000, r, t, 10000, &delay) == passes);
        g_assert_false(fault(&fresh, 0x3000, r, t, 0, &delay));
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
    g_test_add_func("/kvm-gmem/request/fault-retry", test_fault_retry);
    return g_test_run();
}
