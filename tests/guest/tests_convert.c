/*
 * Test guest: private/shared conversions through KVM_HC_MAP_GPA_RANGE.
 * These need a VM with private memory (sw-protected-vm, SEV-SNP, TDX), so
 * "all" leaves them out: a hypercall hangs on a KVM that does not exit for
 * it (this box's host KVM). Run them by name in the nested rig.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "hypercall.h"

uint64_t window_base(uint64_t need)
{
    struct ram_range r[16];
    int n = test_ram_ranges(r, 16);
    uint64_t base = arg_u64("base", 0);

    if (base) {
        return base;
    }
    for (int i = 0; i < n; i++) {
        uint64_t start = ALIGN_UP(r[i].start, 2 * MiB);

        if (start + need <= r[i].end) {
            return start;
        }
    }
    return 0;
}

static uint64_t secret_word(uint64_t gpa)
{
    return gpa ^ 0x5ec2e75ec2e75ec2ULL ^ arg_u64("seed", 0);
}

static uint64_t shared_word(uint64_t gpa)
{
    return ~gpa ^ 0x54a2ed54a2ed54a2ULL ^ arg_u64("seed", 0);
}

/* Every word of a range: the data rules look at all of them. */
static void fill(uint64_t base, uint64_t size, uint64_t (*word)(uint64_t))
{
    fill_words(base, size, 8, word);
}

static uint64_t count_matching(uint64_t base, uint64_t size,
                               uint64_t (*word)(uint64_t))
{
    return count_words(base, size, 8, word);
}

static uint64_t count_zero(uint64_t base, uint64_t size)
{
    return count_words(base, size, 8, NULL);
}

/* What a range holds, for the data-rules report. */
static const char *describe(uint64_t base, uint64_t size)
{
    uint64_t words = size / 8;

    if (count_zero(base, size) == words) {
        return "zeros";
    }
    if (count_matching(base, size, secret_word) == words) {
        return "secret";
    }
    if (count_matching(base, size, shared_word) == words) {
        return "shared-pattern";
    }
    return "mixed";
}

GUEST_TEST_EXPLICIT(convert_secret, "convert a range private, write a "
                    "secret, let the host look (checkpoints=1), convert back "
                    "and report what each side sees")
{
    uint64_t size = arg_u64("size", 2 * MiB);
    uint64_t base = window_base(size);
    long ret;
    const char *seen;

    if (!base) {
        return test_fail("no free RAM window of %lu bytes", size);
    }
    fill(base, size, shared_word);

    ret = convert_private(base, size);
    if (ret) {
        return test_fail("to private: map_gpa_range returned %ld", ret);
    }
    seen = describe(base, size);
    test_info("private view after conversion: %s", seen);
    fill(base, size, secret_word);
    if (count_matching(base, size, secret_word) != size / 8) {
        return test_fail("secret did not read back while private");
    }
    test_checkpoint("phase=private base=0x%lx size=0x%lx", base, size);

    ret = convert_shared(base, size);
    if (ret) {
        return test_fail("to shared: map_gpa_range returned %ld", ret);
    }
    seen = describe(base, size);
    test_info("shared view after converting back: %s", seen);
    if (count_matching(base, size, secret_word)) {
        return test_fail("the secret is visible in the shared view");
    }
    test_checkpoint("phase=shared base=0x%lx size=0x%lx", base, size);
    return TEST_PASS;
}

/*
 * rounds=N round trips of chunk bytes each (4 KiB and 2 MiB by default),
 * checking in each state that the guest's own data reads back.
 */
static enum test_result roundtrip(uint64_t chunk, uint64_t rounds)
{
    uint64_t window = 8 * MiB > chunk * 4 ? 8 * MiB : chunk * 4;
    uint64_t base = window_base(window), t0, cycles = 0;
    long ret;

    if (!base) {
        return test_fail("no free RAM window of %lu bytes", window);
    }
    for (uint64_t i = 0; i < rounds; i++) {
        uint64_t gpa = base + (i * chunk) % window;

        t0 = rdtsc();
        ret = convert_private(gpa, chunk);
        cycles += rdtsc() - t0;
        if (ret) {
            return test_fail("round %lu: to private at 0x%lx returned %ld",
                             i, gpa, ret);
        }
        fill(gpa, chunk, secret_word);
        if (count_matching(gpa, chunk, secret_word) != chunk / 8) {
            return test_fail("round %lu: private data lost at 0x%lx", i, gpa);
        }
        t0 = rdtsc();
        ret = convert_shared(gpa, chunk);
        cycles += rdtsc() - t0;
        if (ret) {
            return test_fail("round %lu: to shared at 0x%lx returned %ld",
                             i, gpa, ret);
        }
        if (count_matching(gpa, chunk, secret_word)) {
            return test_fail("round %lu: secret visible after sharing 0x%lx",
                             i, gpa);
        }
        fill(gpa, chunk, shared_word);
        if (count_matching(gpa, chunk, shared_word) != chunk / 8) {
            return test_fail("round %lu: shared data lost at 0x%lx", i, gpa);
        }
    }
    test_info("chunk=%lu conversions=%lu tsc_per_conversion=%lu", chunk,
              2 * rounds, cycles / (2 * rounds));
    return TEST_PASS;
}

GUEST_TEST_EXPLICIT(convert_roundtrip_4k, "private/shared round trips of "
                    "4 KiB pages")
{
    return roundtrip(4 * KiB, arg_u64("rounds", 16));
}

GUEST_TEST_EXPLICIT(convert_roundtrip_2m, "private/shared round trips of "
                    "2 MiB pages")
{
    return roundtrip(2 * MiB, arg_u64("rounds", 4));
}

/*
 * One bad request, named by case=; prints what the host answered. Whether
 * the VM survives it is the host's finding, so this test always passes if
 * it gets an answer at all.
 */
GUEST_TEST_EXPLICIT(convert_bad, "issue one bad MAP_GPA_RANGE request "
                    "(case=unaligned|zero|overflow|beyond_ram|mmio|"
                    "reserved_attrs|hint_mismatch) and report the answer")
{
    uint64_t base = window_base(4 * MiB);
    uint64_t c = arg_u64("case", 0);
    static const char *const names[] = {
        "unaligned", "zero", "overflow", "beyond_ram", "mmio",
        "reserved_attrs", "hint_mismatch",
    };
    uint64_t gpa = base, npages = 1, attrs = KVM_MAP_GPA_RANGE_ENCRYPTED;
    long ret;

    if (c >= sizeof(names) / sizeof(names[0])) {
        return test_fail("case must be 0..%lu",
                         sizeof(names) / sizeof(names[0]) - 1);
    }
    switch (c) {
    case 0:                     /* unaligned */
        gpa = base + 0x800;
        break;
    case 1:                     /* zero pages */
        npages = 0;
        break;
    case 2:                     /* wraps 2^64 */
        gpa = ~0xfffULL;
        npages = 2;
        break;
    case 3:                     /* past RAM */
        gpa = 1ULL << 40;
        break;
    case 4:                     /* IOAPIC */
        gpa = 0xfec00000;
        break;
    case 5:                     /* reserved bit */
        attrs |= 1ULL << 20;
        break;
    case 6:                     /* 4K with 2M */
        attrs |= KVM_MAP_GPA_RANGE_PAGE_SZ_2M;
        break;
    }
    ret = map_gpa_range(gpa, npages, attrs);
    test_info("case=%s gpa=0x%lx npages=%lu attrs=0x%lx ret=%ld",
              names[c], gpa, npages, attrs, ret);
    test_checkpoint("answered");
    return TEST_PASS;
}

static uint64_t own_address(uint64_t gpa)
{
    return gpa;
}

/* One word of each page of [gpa, gpa + size), if @touch. */
static void touch_pages(uint64_t gpa, uint64_t size, bool touch)
{
    if (touch) {
        fill_words(gpa, size, 4 * KiB, own_address);
    }
}

/* What each CPU of convert_bench does, and how its loop ended. */
static struct {
    uint64_t base, window, chunk, count;
    bool touch;
    struct {
        long ret;
        uint64_t gpa;
    } result[MAX_CPUS];
} bench;

/* CPU @cpu's round trips in its own part of the window (@arg: CPUs). */
static void bench_loop(int cpu, void *arg)
{
    uint64_t part = bench.window / (uintptr_t)arg;
    uint64_t base = bench.base + cpu * part;

    for (uint64_t i = 0; i < bench.count; i++) {
        uint64_t gpa = base + (i * bench.chunk) % part;
        long ret = convert_private(gpa, bench.chunk);

        if (!ret) {
            touch_pages(gpa, bench.chunk, bench.touch);
            ret = convert_shared(gpa, bench.chunk);
        }
        if (ret) {
            bench.result[cpu].ret = ret;
            bench.result[cpu].gpa = gpa;
            return;
        }
        touch_pages(gpa, bench.chunk, bench.touch);
    }
}

/*
 * Conversions only, for timing: count=N private+shared round trips of
 * chunk=BYTES on each of cpus=N vCPUs (default 1), each cycling through
 * its own part of a 64 MiB window, touching no data; with touch=1, a word
 * of each page after each conversion, so that KVM maps it in its new
 * state (a guest uses what it converts). With checkpoints=1 it stops
 * before and after, so the host can time the loop with its own clock.
 */
GUEST_TEST_EXPLICIT(convert_bench, "time count= round trips of chunk= bytes "
                    "on each of cpus= vCPUs (touch=1: write each page after "
                    "each conversion); checkpoints around the loop")
{
    uint64_t t0;
    int n = 1;

    bench.chunk = arg_u64("chunk", 4 * KiB);
    bench.count = arg_u64("count", 256);
    bench.touch = arg_u64("touch", 0);
    bench.window = 64 * MiB;
    bench.base = window_base(bench.window);
    if (!bench.base) {
        return test_fail("no free RAM window of %lu bytes", bench.window);
    }
    if (arg_u64("cpus", 1) > 1 && smp_start_test_cpus(&n)) {
        return TEST_FAIL;
    }
    if (!bench.chunk || bench.chunk % (4 * KiB) ||
        (bench.window / n) % bench.chunk) {
        return test_fail("chunk must be a multiple of 4 KiB dividing "
                         "64 MiB / cpus");
    }
    test_checkpoint("phase=start chunk=%lu count=%lu cpus=%d", bench.chunk,
                    bench.count, n);
    t0 = rdtsc();
    smp_run(bench_loop, (void *)(uintptr_t)n);
    for (int cpu = 0; cpu < n; cpu++) {
        if (bench.result[cpu].ret) {
            return test_fail("cpu %d at 0x%lx: %ld", cpu,
                             bench.result[cpu].gpa, bench.result[cpu].ret);
        }
    }
    test_info("chunk=%lu conversions=%lu cpus=%d tsc=%lu", bench.chunk,
              2 * bench.count * n, n, rdtsc() - t0);
    test_checkpoint("phase=end");
    return TEST_PASS;
}

/*
 * One conversion the host asks for: gpa=, size= (default: 2 MiB at the
 * window base), private=1|0. Writes the secret pattern when the range is
 * private, so the host can look for it; reports how many words of the
 * fresh private range were not zero (nonzero=), which is data that
 * outlived an earlier state or boot.
 */
GUEST_TEST_EXPLICIT(convert_range, "convert gpa= size= to private=1 (or 0) "
                    "and leave it so; private ranges get the secret pattern")
{
    uint64_t size = arg_u64("size", 2 * MiB);
    uint64_t gpa = arg_u64("gpa", 0) ? arg_u64("gpa", 0) : window_base(size);
    bool to_private = arg_u64("private", 1);
    long ret = to_private ? convert_private(gpa, size)
                          : convert_shared(gpa, size);

    uint64_t nonzero = 0;

    if (!ret && to_private) {
        nonzero = size / 8 - count_zero(gpa, size);
    }
    test_info("gpa=0x%lx size=0x%lx private=%d ret=%ld nonzero=%lu", gpa,
              size, to_private, ret, nonzero);
    if (ret) {
        return test_fail("map_gpa_range returned %ld", ret);
    }
    if (to_private) {
        fill(gpa, size, secret_word);
    }
    return TEST_PASS;
}

/*
 * What a confidential guest does at boot: accept (make private) all of
 * its free RAM in 2 MiB steps. Checkpoints around the loop let the host
 * time it.
 */
GUEST_TEST_EXPLICIT(accept_all, "make all free RAM private in 2 MiB steps, "
                    "with checkpoints around the loop")
{
    struct ram_range r[16];
    int n = test_ram_ranges(r, 16);
    uint64_t bytes = 0;

    test_checkpoint("phase=start");
    for (int i = 0; i < n; i++) {
        uint64_t start = ALIGN_UP(r[i].start, 2 * MiB);
        uint64_t end = ALIGN_DOWN(r[i].end, 2 * MiB);

        for (uint64_t gpa = start; gpa < end; gpa += 2 * MiB) {
            long ret = convert_private(gpa, 2 * MiB);

            if (ret) {
                return test_fail("at 0x%lx: %ld", gpa, ret);
            }
            bytes += 2 * MiB;
        }
    }
    test_info("accepted=%lu", bytes);
    test_checkpoint("phase=end");
    return TEST_PASS;
}

/*
 * A memslot that comes back elsewhere: ivshmem-plain's BAR 2 (RAM from a
 * memory backend, so guest_memfd in a confidential VM) is made private
 * and filled, then moved to to= (default 12 GiB) with memory decoding off
 * and on again. The pages must still be private with the data in them:
 * the record of the block, not the new address, decides their state.
 */
GUEST_TEST_EXPLICIT(bar_remap, "make ivshmem's BAR 2 private, fill it, move "
                    "the BAR to to= and check the private data followed")
{
    int devfn = pci_find(0x1af4, 0x1110);
    uint64_t size = arg_u64("size", 2 * MiB);
    uint64_t to = arg_u64("to", 12 * GiB);
    uint64_t from, moved;
    uint32_t cmd;
    long ret;

    if (devfn < 0) {
        return test_fail("no ivshmem device");
    }
    from = (pci_read32(devfn, PCI_BAR0 + 8) & ~0xfull) |
           (uint64_t)pci_read32(devfn, PCI_BAR0 + 12) << 32;
    cmd = pci_read32(devfn, PCI_COMMAND);
    if (!from || !(cmd & PCI_COMMAND_MEMORY)) {
        return test_fail("BAR 2 is not mapped (0x%lx, command 0x%x)", from,
                         cmd);
    }
    ret = convert_private(from, size);
    if (ret) {
        return test_fail("to private at 0x%lx returned %ld", from, ret);
    }
    fill(from, size, secret_word);

    pci_write32(devfn, PCI_COMMAND, cmd & ~PCI_COMMAND_MEMORY);
    pci_write32(devfn, PCI_BAR0 + 8, (uint32_t)to |
                (pci_read32(devfn, PCI_BAR0 + 8) & 0xf));
    pci_write32(devfn, PCI_BAR0 + 12, to >> 32);
    pci_write32(devfn, PCI_COMMAND, cmd);

    /* The secret was written for the old GPAs: compare word by word. */
    moved = 0;
    for (uint64_t off = 0; off < size; off += 8) {
        moved += read_word(to + off) == secret_word(from + off);
    }
    test_info("from=0x%lx to=0x%lx size=0x%lx moved=%lu", from, to, size,
              moved);
    if (moved != size / 8) {
        return test_fail("%lu of %lu private words followed the BAR", moved,
                         size / 8);
    }
    ret = convert_shared(to, size);
    if (ret) {
        return test_fail("to shared at 0x%lx returned %ld", to, ret);
    }
    if (count_zero(to, size) != size / 8) {
        return test_fail("shared again, the BAR does not read zeros");
    }
    return TEST_PASS;
}

/*
 * What a memslot change costs the rest of the guest: touch mb= MiB of free
 * RAM, one word every stride= bytes (with private=1, its first half made
 * private first), turn memory decoding of ivshmem's BAR 2 off and on (KVM
 * deletes the BAR's memslot and adds it back: a slot unrelated to the
 * window), then read the words again and check them. The host reads KVM's
 * fault counters at the checkpoints before the toggle and after the
 * re-touch. Needs no hypercall unless private=1.
 */
static uint64_t retouch_word(uint64_t gpa, uint64_t private_end)
{
    return gpa < private_end ? secret_word(gpa) : shared_word(gpa);
}

GUEST_TEST_EXPLICIT(slot_retouch, "touch mb= MiB, delete and re-add "
                    "ivshmem's BAR 2 memslot, re-touch and check the MiB "
                    "(private=1: half of them private); checkpoints around")
{
    int devfn = pci_find(0x1af4, 0x1110);
    uint64_t size = arg_u64("mb", 64) * MiB;
    uint64_t stride = arg_u64("stride", 8);
    uint64_t base = window_base(size);
    uint64_t half = arg_u64("private", 0) ? size / 2 : 0;
    uint64_t good = 0;
    uint32_t cmd;
    long ret;

    if (devfn < 0) {
        return test_fail("no ivshmem device");
    }
    if (!size || !base) {
        return test_fail("no free RAM window of %lu bytes", size);
    }
    if (stride < 8 || stride > 4096 || (stride & (stride - 1))) {
        return test_fail("stride must be a power of two from 8 to 4096");
    }
    cmd = pci_read32(devfn, PCI_COMMAND);
    if (!(cmd & PCI_COMMAND_MEMORY)) {
        return test_fail("ivshmem's memory decoding is off");
    }
    if (half) {
        ret = convert_private(base, half);
        if (ret) {
            return test_fail("to private at 0x%lx returned %ld", base, ret);
        }
    }
    for (uint64_t a = base; a < base + size; a += stride) {
        write_word(a, retouch_word(a, base + half));
    }
    test_checkpoint("phase=touched base=0x%lx size=0x%lx private=0x%lx",
                    base, size, half);

    pci_write32(devfn, PCI_COMMAND, cmd & ~PCI_COMMAND_MEMORY);
    pci_write32(devfn, PCI_COMMAND, cmd);
    for (uint64_t a = base; a < base + size; a += stride) {
        good += read_word(a) == retouch_word(a, base + half);
    }
    test_checkpoint("phase=retouched");

    test_info("base=0x%lx size=0x%lx private=0x%lx words=%lu good=%lu", base,
              size, half, size / stride, good);
    if (good != size / stride) {
        return test_fail("%lu of %lu words changed across the memslot "
                         "change", size / stride - good, size / stride);
    }
    if (half) {
        ret = convert_shared(base, half);
        if (ret) {
            return test_fail("to shared at 0x%lx returned %ld", base, ret);
        }
    }
    return TEST_PASS;
}

/*
 * One random request of 1 to 16 pages, either way, in the window of
 * @pages pages at @base: which pages and which way in *@first, *@n and
 * *@to_private; returns the host's answer.
 */
static long convert_random_run(uint64_t base, uint64_t pages, uint64_t *rng,
                               uint64_t *first, uint64_t *n,
                               bool *to_private)
{
    uint64_t gpa;

    *n = 1 + xorshift64(rng) % 16;
    *first = xorshift64(rng) % (pages - *n + 1);
    *to_private = xorshift64(rng) & 1;
    gpa = base + *first * 4 * KiB;
    return *to_private ? convert_private(gpa, *n * 4 * KiB)
                       : convert_shared(gpa, *n * 4 * KiB);
}

/*
 * rounds= random conversions (1 to 16 pages, either way) in a 4 MiB
 * window, then the secret word in the first word of every page, written
 * in the page's current state. The host reads the window through QEMU's
 * mapping, where the words show on exactly the pages KVM treats as
 * shared, and compares that with the manager's record; private= is how
 * many pages the guest itself left private.
 */
GUEST_TEST_EXPLICIT(convert_sweep, "random conversions in a 4 MiB window, "
                    "then a word per page for the host's record-vs-KVM "
                    "sweep (checkpoints=1)")
{
    enum { SWEEP_PAGES = 1024 };
    static uint8_t is_private[SWEEP_PAGES];
    const uint64_t size = SWEEP_PAGES * 4 * KiB;
    uint64_t base = window_base(size), nprivate = 0;
    uint64_t rng = 0x9e3779b97f4a7c15ULL ^ arg_u64("seed", 0);
    uint64_t rounds = arg_u64("rounds", 256);

    if (!base) {
        return test_fail("no free RAM window of %lu bytes", size);
    }
    memset(is_private, 0, sizeof(is_private));
    for (uint64_t i = 0; i < rounds; i++) {
        uint64_t first, n;
        bool to_private;
        long ret = convert_random_run(base, SWEEP_PAGES, &rng, &first, &n,
                                      &to_private);

        if (ret) {
            return test_fail("round %lu: 0x%lx +%lu pages returned %ld", i,
                             base + first * 4 * KiB, n, ret);
        }
        memset(is_private + first, to_private, n);
    }
    for (uint64_t p = 0; p < SWEEP_PAGES; p++) {
        write_word(base + p * 4 * KiB, secret_word(base + p * 4 * KiB));
        nprivate += is_private[p];
    }
    test_info("gpa=0x%lx size=0x%lx private=%lu", base, size, nprivate);
    test_checkpoint("phase=marked");
    return TEST_PASS;
}

/*
 * Random conversions of 1 to 16 pages in a 1 MiB window while the host
 * makes the manager's kernel calls fail now and then
 * (x-guest-memfd-inject-fault). A request either succeeds or is refused
 * (EINVAL, EAGAIN) and then changed nothing; in both cases every page of
 * it must hold what the guest can expect: zeros on a page that just
 * changed state (its new side was freed when it last became stale, even
 * if that discard had failed at first), and the page's last word
 * otherwise. private= is how many pages the guest left private, for the
 * host's sweep.
 */
/* Set by an NMI (main.c); rounds=0 runs until the host sends one. */
extern volatile uint8_t nmi_seen;

GUEST_TEST_EXPLICIT(convert_faults, "random conversions in a 1 MiB window "
                    "that tolerate refused requests and check each page's "
                    "data after every request (rounds=, 0: until an NMI)")
{
    enum { FAULT_PAGES = 256 };
    static uint8_t is_private[FAULT_PAGES];
    static uint64_t last[FAULT_PAGES];      /* word of the live side */
    const uint64_t size = FAULT_PAGES * 4 * KiB;
    uint64_t base = window_base(size), rounds = arg_u64("rounds", 2000);
    uint64_t rng = 0x2545f4914f6cdd1dULL ^ arg_u64("seed", 0);
    uint64_t refused = 0, nprivate = 0, bad = 0;
    long first_bad_ret = 0;

    if (!base) {
        return test_fail("no free RAM window of %lu bytes", size);
    }
    memset(is_private, 0, sizeof(is_private));
    for (uint64_t p = 0; p < FAULT_PAGES; p++) {
        last[p] = cpu_word(base + p * 4096, 0, 0);
        write_word(base + p * 4096, last[p]);
    }
    nmi_seen = 0;
    for (uint64_t i = 1; rounds ? i <= rounds : !nmi_seen; i++) {
        uint64_t first, n;
        bool to_private;
        long ret = convert_random_run(base, FAULT_PAGES, &rng, &first, &n,
                                      &to_private);

        if (ret && ret != 22 && ret != 11) {
            return test_fail("round %lu: 0x%lx +%lu pages answered %ld", i,
                             base + first * 4 * KiB, n, ret);
        }
        refused += ret != 0;
        for (uint64_t p = first; p < first + n; p++) {
            uint64_t a = base + p * 4096, want;

            if (!ret && is_private[p] != to_private) {
                /* The other side is live now, and was freed. */
                is_private[p] = to_private;
                want = 0;
            } else {
                want = last[p];
            }
            if (read_word(a) != want && !bad++) {
                first_bad_ret = ret;
                test_info("round %lu: page 0x%lx (%s, request %s) holds "
                          "0x%lx, not 0x%lx", i, a,
                          is_private[p] ? "private" : "shared",
                          ret ? "refused" : "done", read_word(a), want);
            }
            last[p] = cpu_word(a, 0, i);
            write_word(a, last[p]);
        }
    }
    if (!rounds) {
        nmi_seen = 0;       /* that NMI ended the rounds, not a checkpoint */
    }
    for (uint64_t p = 0; p < FAULT_PAGES; p++) {
        nprivate += is_private[p];
    }
    test_info("gpa=0x%lx size=0x%lx refused=%lu private=%lu data_errors=%lu",
              base, size, refused, nprivate, bad);
    if (bad) {
        return test_fail("%lu pages held the wrong data (first after a "
                         "request answered %ld)", bad, first_bad_ret);
    }
    return TEST_PASS;
}
