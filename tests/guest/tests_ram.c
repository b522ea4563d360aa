/*
 * Test guest: RAM tests that need nothing but memory.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "guest.h"

#define MAX_RANGES 16

/*
 * The pattern word at guest physical address @gpa: the address itself,
 * mixed with a seed so that a stale copy from another run never matches.
 * tests/functional checks the same function from QEMU's side.
 */
static inline uint64_t pattern_word(uint64_t gpa, uint64_t seed)
{
    return gpa ^ seed;
}

static uint64_t pattern_seed(void)
{
    return 0x9e3779b97f4a7c15ULL ^ arg_u64("seed", 0);
}

/*
 * Bytes between pattern words: 8 (every word) by default. A larger power of
 * two up to 4096 still touches every page but writes fewer words, for
 * accelerators that execute guest code slowly.
 */
static uint64_t pattern_stride(void)
{
    uint64_t stride = arg_u64("stride", 8);

    if (stride < 8 || stride > 4096 || (stride & (stride - 1))) {
        return 0;
    }
    return stride;
}

static uint64_t fill_ranges(struct ram_range *r, int n, uint64_t seed,
                            uint64_t invert, uint64_t stride)
{
    uint64_t bytes = 0;

    for (int i = 0; i < n; i++) {
        for (uint64_t a = r[i].start; a < r[i].end; a += stride) {
            write_word(a, pattern_word(a, seed) ^ invert);
        }
        bytes += r[i].end - r[i].start;
    }
    return bytes;
}

/* Returns the number of mismatching words; reports the first. */
static uint64_t check_ranges(struct ram_range *r, int n, uint64_t seed,
                             uint64_t invert, uint64_t stride,
                             uint64_t *first_bad)
{
    uint64_t bad = 0;

    for (int i = 0; i < n; i++) {
        for (uint64_t a = r[i].start; a < r[i].end; a += stride) {
            if (read_word(a) != (pattern_word(a, seed) ^ invert)) {
                if (!bad++) {
                    *first_bad = a;
                }
            }
        }
    }
    return bad;
}

static void format_ranges(char *buf, size_t size, struct ram_range *r, int n)
{
    size_t len = 0;

    buf[0] = '\0';
    for (int i = 0; i < n && len < size; i++) {
        len += snprintf(buf + len, size - len, "%s0x%lx-0x%lx",
                        i ? "," : "", r[i].start, r[i].end);
    }
}

GUEST_TEST(ram_pattern, "write an address pattern over all free RAM, "
           "read it back, let the host check it (checkpoints=1)")
{
    struct ram_range r[MAX_RANGES];
    int n = test_ram_ranges(r, MAX_RANGES);
    uint64_t seed = pattern_seed(), stride = pattern_stride();
    uint64_t bytes, bad, first = 0;
    char ranges[256];

    if (!n) {
        return test_fail("no usable RAM in the memory map");
    }
    if (!stride) {
        return test_fail("stride must be a power of two from 8 to 4096");
    }
    bytes = fill_ranges(r, n, seed, 0, stride);
    bad = check_ranges(r, n, seed, 0, stride, &first);
    if (bad) {
        return test_fail("%lu bad words, first at 0x%lx", bad, first);
    }
    format_ranges(ranges, sizeof(ranges), r, n);
    test_info("wrote and verified %lu MiB, one word every %lu bytes",
              bytes / MiB, stride);
    test_checkpoint("seed=0x%lx stride=%lu ranges=%s", seed, stride, ranges);
    return TEST_PASS;
}

GUEST_TEST(ram_inversions, "moving inversions: pattern, complement, pattern "
           "again over all free RAM (finds aliasing and lost writes)")
{
    struct ram_range r[MAX_RANGES];
    int n = test_ram_ranges(r, MAX_RANGES);
    uint64_t seed = pattern_seed() ^ 0x5555aaaa5555aaaaULL, bad, first = 0;
    uint64_t stride = pattern_stride();
    static const uint64_t passes[] = { 0, ~0ULL, 0 };

    if (!n) {
        return test_fail("no usable RAM in the memory map");
    }
    if (!stride) {
        return test_fail("stride must be a power of two from 8 to 4096");
    }
    for (unsigned p = 0; p < sizeof(passes) / sizeof(passes[0]); p++) {
        fill_ranges(r, n, seed, passes[p], stride);
        bad = check_ranges(r, n, seed, passes[p], stride, &first);
        if (bad) {
            return test_fail("pass %u: %lu bad words, first at 0x%lx",
                             p, bad, first);
        }
    }
    return TEST_PASS;
}

GUEST_TEST(ram_map, "report the firmware memory map the guest booted with")
{
    struct ram_range r[MAX_RANGES];
    int n = test_ram_ranges(r, MAX_RANGES);
    char ranges[256];

    format_ranges(ranges, sizeof(ranges), r, n);
    test_info("free ram ranges %s", ranges);
    return n ? TEST_PASS : test_fail("no usable RAM in the memory map");
}

GUEST_TEST_EXPLICIT(ram_fill, "write the pattern over gpa= size= (RAM the "
                    "memory map does not list, e.g. a pc-dimm), read it "
                    "back, let the host check it (checkpoints=1)")
{
    struct ram_range r = {
        .start = arg_u64("gpa", 0),
        .end = arg_u64("gpa", 0) + arg_u64("size", 0),
    };
    uint64_t seed = pattern_seed(), stride = pattern_stride();
    uint64_t bad, first = 0;

    if (!stride) {
        return test_fail("stride must be a power of two from 8 to 4096");
    }
    if (r.start >= r.end || (r.start | r.end) % 8 ||
        r.end > identity_map_limit()) {
        return test_fail("gpa= size= must give an aligned range below 0x%lx",
                         identity_map_limit());
    }
    fill_ranges(&r, 1, seed, 0, stride);
    bad = check_ranges(&r, 1, seed, 0, stride, &first);
    if (bad) {
        return test_fail("%lu bad words, first at 0x%lx", bad, first);
    }
    test_checkpoint("seed=0x%lx stride=%lu ranges=0x%lx-0x%lx", seed, stride,
                    r.start, r.end);
    return TEST_PASS;
}

/* The word sweep_mark writes at @gpa in its @n-th call of a boot. */
static uint64_t sweep_word(uint64_t gpa, uint64_t n)
{
    return gpa ^ 0x5ec2e75ec2e75ec2ULL ^ (n * 0x100000001b3ULL);
}

GUEST_TEST_EXPLICIT(sweep_mark, "write a word in every free page, in "
                    "whatever state it is, for the host's record-vs-KVM "
                    "sweep (checkpoints=1)")
{
    static uint64_t calls;
    struct ram_range r[MAX_RANGES];
    int n = test_ram_ranges(r, MAX_RANGES);
    uint64_t pages = 0;
    char ranges[256];

    if (!n) {
        return test_fail("no usable RAM in the memory map");
    }
    calls++;
    for (int i = 0; i < n; i++) {
        for (uint64_t a = ALIGN_UP(r[i].start, 4096); a + 4096 <= r[i].end;
             a += 4096) {
            write_word(a, sweep_word(a, calls));
            pages++;
        }
    }
    format_ranges(ranges, sizeof(ranges), r, n);
    test_checkpoint("sweep=%lu pages=%lu ranges=%s", calls, pages, ranges);
    return TEST_PASS;
}
