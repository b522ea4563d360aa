/*
 * Test guest: what conversions cost as guests grow (make bench rows 11-13).
 * Explicit tests, like the other conversion tests: they need a VM with
 * private memory. They convert without touching the memory they convert,
 * so they may work past the identity map (16 GiB): a 64 GiB guest's RAM
 * is mostly above it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "hypercall.h"

/*
 * What a confidential guest does at boot, at any size: make free RAM
 * private in step= bytes (default 2 MiB; 4096 for the lazy-accept and
 * SWIOTLB pattern), over all of the memory map's RAM above the guest
 * image (not clipped to the identity map), at most size= bytes (0: all).
 * Checkpoints around the loop let the host time it and count its calls.
 */
GUEST_TEST_EXPLICIT(accept_range, "make free RAM private in step= bytes "
                    "(default 2 MiB), at most size= bytes (default all, "
                    "past the identity map too); checkpoints around")
{
    struct ram_range r[16];
    int n = test_ram_ranges_all(r, 16);
    uint64_t step = arg_u64("step", 2 * MiB);
    uint64_t left = arg_u64("size", 0) ? arg_u64("size", 0) : UINT64_MAX;
    uint64_t bytes = 0, requests = 0, t0;

    if (step != 4 * KiB && step != 2 * MiB) {
        return test_fail("step must be 4096 or 2 MiB");
    }
    test_checkpoint("phase=start step=%lu", step);
    t0 = rdtsc();
    for (int i = 0; i < n && left; i++) {
        uint64_t start = ALIGN_UP(r[i].start, 2 * MiB);
        uint64_t end = ALIGN_DOWN(r[i].end, 2 * MiB);

        for (uint64_t gpa = start; gpa < end && left >= step; gpa += step) {
            long ret = convert_private(gpa, step);

            if (ret) {
                return test_fail("at 0x%lx: %ld", gpa, ret);
            }
            bytes += step;
            left -= step;
            requests++;
        }
    }
    test_info("accepted=%lu requests=%lu tsc=%lu", bytes, requests,
              rdtsc() - t0);
    test_checkpoint("phase=end accepted=%lu", bytes);
    return TEST_PASS;
}

#define PAM_BDF         0x00            /* 0:0.0, q35's MCH */
#define PAM_REG         0x90            /* PAM0 in its low byte */
#define PAM0_MASK       0x30            /* 0xf0000-0xfffff: 0 PCI, 3 RAM */

/* One conversion of @size at @gpa to private, in TSC ticks. */
static uint64_t timed_private(uint64_t gpa, uint64_t size, long *ret)
{
    uint64_t t0 = rdtsc();

    *ret = convert_private(gpa, size);
    return rdtsc() - t0;
}

/*
 * Fragmentation: over size= bytes (default 1 GiB) at the window base,
 * make every other 4 KiB page private (frag=1, the default; frag=0 leaves
 * the window shared, the unfragmented guest to compare with): pages 0, 2,
 * 4, ... private, so 1 GiB becomes 262,144 runs. Then, each timed on its
 * own: n4k= (64) conversions of one 4 KiB page to private, shared pages
 * of the window's first half (each joins two private runs); n2m= (8)
 * conversions of 2 MiB to private over the window's last 2 MiB pages
 * (each 256 runs of one shared page), and as many just past the window
 * (beside the fragments). Then a memslot change: PAM0 flipped and put
 * back (q35 deletes and re-adds the low RAM memslot, which holds the
 * window, each time). Checkpoints: start, fragmented, converted, slot.
 */
GUEST_TEST_EXPLICIT(fragment, "every other 4 KiB page private over size= "
                    "(frag=0: none), then timed 4 KiB and 2 MiB conversions "
                    "and a memslot change; checkpoints between")
{
    uint64_t size = arg_u64("size", 1 * GiB);
    uint64_t n4k = arg_u64("n4k", 64), n2m = arg_u64("n2m", 8);
    bool frag = arg_u64("frag", 1);
    uint64_t pages = size / (4 * KiB), base, t0, tsc_frag;
    uint64_t tsc4k = 0, tsc2m_over = 0, tsc2m_beside = 0, tsc_slot[2];
    uint32_t pam;
    long ret;

    if (!size || size % (2 * MiB) || !n4k || !n2m ||
        n2m * 2 * MiB > size / 2 || n4k > pages / 4) {
        return test_fail("size must be 2 MiB pages, n2m at most half of "
                         "it, n4k at most a quarter of its pages");
    }
    base = window_base(size + n2m * 2 * MiB);
    if (!base) {
        return test_fail("no free RAM window of %lu bytes",
                         size + n2m * 2 * MiB);
    }
    test_checkpoint("phase=start base=0x%lx size=0x%lx frag=%d", base, size,
                    frag);
    t0 = rdtsc();
    for (uint64_t p = 0; frag && p < pages; p += 2) {
        ret = convert_private(base + p * 4 * KiB, 4 * KiB);
        if (ret) {
            return test_fail("fragmenting at 0x%lx: %ld",
                             base + p * 4 * KiB, ret);
        }
    }
    tsc_frag = rdtsc() - t0;
    test_checkpoint("phase=fragmented requests=%lu tsc=%lu",
                    frag ? pages / 2 : 0, tsc_frag);

    for (uint64_t k = 0; k < n4k; k++) {
        uint64_t page = 2 * (k * (pages / 4 / n4k)) + 1;

        tsc4k += timed_private(base + page * 4 * KiB, 4 * KiB, &ret);
        if (ret) {
            return test_fail("4 KiB at 0x%lx: %ld", base + page * 4 * KiB,
                             ret);
        }
    }
    for (uint64_t k = 0; k < n2m; k++) {
        uint64_t over = base + size - (k + 1) * 2 * MiB;
        uint64_t beside = base + size + k * 2 * MiB;

        tsc2m_over += timed_private(over, 2 * MiB, &ret);
        if (ret) {
            return test_fail("2 MiB at 0x%lx: %ld", over, ret);
        }
        tsc2m_beside += timed_private(beside, 2 * MiB, &ret);
        if (ret) {
            return test_fail("2 MiB at 0x%lx: %ld", beside, ret);
        }
    }
    test_checkpoint("phase=converted n4k=%lu tsc4k=%lu n2m=%lu "
                    "tsc2m_over=%lu tsc2m_beside=%lu", n4k, tsc4k, n2m,
                    tsc2m_over, tsc2m_beside);

    pam = pci_read32(PAM_BDF, PAM_REG);
    t0 = rdtsc();
    pci_write32(PAM_BDF, PAM_REG, pam ^ PAM0_MASK);
    tsc_slot[0] = rdtsc() - t0;
    t0 = rdtsc();
    pci_write32(PAM_BDF, PAM_REG, pam);
    tsc_slot[1] = rdtsc() - t0;
    test_checkpoint("phase=slot pam=0x%x tsc_slot=%lu,%lu", pam, tsc_slot[0],
                    tsc_slot[1]);
    return TEST_PASS;
}
