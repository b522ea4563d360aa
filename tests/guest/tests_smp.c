/*
 * Test guest: several vCPUs at once. cpus=N on the command line says how
 * many the VM has (-smp N).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "hypercall.h"

/* Written by every CPU in smp_run(), read by the BSP afterwards. */
static volatile uint64_t seen[MAX_CPUS];

static void say_here(int cpu, void *arg)
{
    seen[cpu] = (uint64_t)(uintptr_t)arg + cpu;
}

GUEST_TEST_EXPLICIT(smp_online, "bring cpus= vCPUs online and run code on "
                    "each")
{
    int n;
    enum test_result r = smp_start_test_cpus(&n);

    if (r) {
        return r;
    }
    smp_run(say_here, (void *)0x1000);
    for (int i = 0; i < n; i++) {
        if (seen[i] != 0x1000 + (uint64_t)i) {
            return test_fail("cpu %d did not run", i);
        }
    }
    test_info("cpus=%d", n);
    return TEST_PASS;
}

/* What one CPU did in convert_smp; failures are counted, not fatal. */
static struct {
    uint64_t conversions;
    uint64_t failures;
    uint64_t data_errors;
    long first_ret;
} smp_result[MAX_CPUS];

/*
 * Each CPU owns a disjoint 4 MiB window and cycles its 4 KiB and 2 MiB
 * chunks through private and shared, writing and checking its own data
 * in each state, while the others do the same.
 */
static void convert_own_window(int cpu, void *arg)
{
    uint64_t base = (uint64_t)(uintptr_t)arg + (uint64_t)cpu * 4 * MiB;
    uint64_t rounds = arg_u64("rounds", 8);

    for (uint64_t i = 0; i < rounds; i++) {
        uint64_t chunk = (i & 1) ? 2 * MiB : 4 * KiB;
        uint64_t gpa = base + ((i & 1) ? 2 * MiB : (i % 256) * 4 * KiB);
        long ret = convert_private(gpa, chunk);

        smp_result[cpu].conversions++;
        if (!ret) {
            for (uint64_t a = gpa; a < gpa + chunk; a += 512) {
                write_word(a, cpu_word(a, cpu, i));
            }
            for (uint64_t a = gpa; a < gpa + chunk; a += 512) {
                smp_result[cpu].data_errors +=
                    read_word(a) != cpu_word(a, cpu, i);
            }
            ret = convert_shared(gpa, chunk);
            smp_result[cpu].conversions++;
        }
        if (ret) {
            if (!smp_result[cpu].failures++) {
                smp_result[cpu].first_ret = ret;
            }
        }
    }
}

GUEST_TEST_EXPLICIT(convert_smp, "cpus= vCPUs convert disjoint windows at "
                    "once, each checking its own data (rounds=)")
{
    int n;
    uint64_t base, total = 0;
    enum test_result res = smp_start_test_cpus(&n);

    if (res) {
        return res;
    }
    base = window_base((uint64_t)n * 4 * MiB);
    if (!base) {
        return test_fail("not enough free RAM for %d windows of 4 MiB", n);
    }
    smp_run(convert_own_window, (void *)(uintptr_t)base);
    for (int i = 0; i < n; i++) {
        total += smp_result[i].conversions;
        if (smp_result[i].failures || smp_result[i].data_errors) {
            return test_fail("cpu %d: %lu failed conversions (first %ld), "
                             "%lu data errors", i, smp_result[i].failures,
                             smp_result[i].first_ret,
                             smp_result[i].data_errors);
        }
    }
    test_info("cpus=%d conversions=%lu", n, total);
    return TEST_PASS;
}

static struct {
    uint64_t ok;
    uint64_t failed;
    long first_ret;
} race_result[MAX_CPUS];

/*
 * Every CPU converts the same 2 MiB range, in 4 KiB pages and whole, in
 * both directions, as fast as it can: requests overlap all the time. The
 * data is anyone's; what must hold is that every valid request succeeds
 * and the host's record ends consistent.
 */
static void convert_same_range(int cpu, void *arg)
{
    uint64_t base = (uint64_t)(uintptr_t)arg;
    uint64_t rounds = arg_u64("rounds", 32);

    for (uint64_t i = 0; i < rounds; i++) {
        uint64_t page = base + ((i * 7 + cpu * 131) % 512) * 4 * KiB;
        long ret;

        switch ((i + cpu) % 4) {
        case 0:
            ret = convert_private(base, 2 * MiB);
            break;
        case 1:
            ret = convert_shared(page, 4 * KiB);
            break;
        case 2:
            ret = convert_private(page, 4 * KiB);
            break;
        default:
            ret = convert_shared(base, 2 * MiB);
            break;
        }
        if (ret) {
            if (!race_result[cpu].failed++) {
                race_result[cpu].first_ret = ret;
            }
        } else {
            race_result[cpu].ok++;
        }
    }
}

GUEST_TEST_EXPLICIT(convert_race, "cpus= vCPUs convert one overlapping "
                    "2 MiB range at once (rounds=), then it is made shared")
{
    int n;
    uint64_t base, ok = 0;
    enum test_result res = smp_start_test_cpus(&n);
    long ret;

    if (res) {
        return res;
    }
    base = window_base(2 * MiB);
    if (!base) {
        return test_fail("no free RAM window of 2 MiB");
    }
    smp_run(convert_same_range, (void *)(uintptr_t)base);
    for (int i = 0; i < n; i++) {
        ok += race_result[i].ok;
        if (race_result[i].failed) {
            return test_fail("cpu %d: %lu requests failed (first %ld)", i,
                             race_result[i].failed, race_result[i].first_ret);
        }
    }
    ret = convert_shared(base, 2 * MiB);
    if (ret) {
        return test_fail("final conversion to shared returned %ld", ret);
    }
    test_info("cpus=%d requests=%lu base=0x%lx", n, ok + 1, base);
    return TEST_PASS;
}

/*
 * convert_storm: every CPU sends random KVM_HC_MAP_GPA_RANGE requests,
 * good and bad, and knows the answer each must get. Good ones convert
 * pages of the CPU's own window, whose data it checks after every
 * request (zeros on a page that changed state, its last word otherwise).
 * Bad ones aim anywhere a guest can: past RAM, MMIO, ROM, ranges that
 * wrap past 2^64 or whose size does, reserved bits, hints that do not
 * fit; those to private must change nothing. The host sends its own
 * random requests over QMP meanwhile, to a window of its own.
 */
#define STORM_WIN_PAGES     1024            /* 4 MiB per CPU */

static struct {
    uint64_t ram_end;               /* above it, nothing is RAM (< 4 GiB) */
    uint64_t base;                  /* CPU windows, then the host's */
} storm_map;

/*
 * Per CPU. The first words are the request in flight (its number, then
 * its three arguments), so that the host can read, after a guest reset,
 * what each CPU was doing (the ready checkpoint gives their address).
 */
static struct {
    uint64_t in_flight[4];
    uint64_t requests, converted, refused, unexpected, data_errors;
    long first_ret, first_want;
    uint64_t first_gpa, first_npages, first_attrs;
    uint8_t is_private[STORM_WIN_PAGES];
    uint64_t last[STORM_WIN_PAGES];
} storm_cpu[MAX_CPUS];

static long storm_request(int cpu, uint64_t gpa, uint64_t npages,
                          uint64_t attrs)
{
    volatile uint64_t *f = storm_cpu[cpu].in_flight;

    f[1] = gpa;
    f[2] = npages;
    f[3] = attrs;
    f[0] = storm_cpu[cpu].requests + 1;
    return map_gpa_range(gpa, npages, attrs);
}

#define ANSWER_ANY_OF_0_22  1000        /* "0 or EINVAL", either is right */

static void storm_check(int cpu, long ret, long want, uint64_t gpa,
                        uint64_t npages, uint64_t attrs)
{
    bool ok = want == ANSWER_ANY_OF_0_22 ? (ret == 0 || ret == 22)
                                         : ret == want;

    storm_cpu[cpu].requests++;
    storm_cpu[cpu].refused += ret != 0;
    if (!ok && !storm_cpu[cpu].unexpected++) {
        storm_cpu[cpu].first_ret = ret;
        storm_cpu[cpu].first_want = want;
        storm_cpu[cpu].first_gpa = gpa;
        storm_cpu[cpu].first_npages = npages;
        storm_cpu[cpu].first_attrs = attrs;
    }
}

/* A request to the CPU's own window, with the answer it must get. */
static void storm_own(int cpu, uint64_t *rng)
{
    uint64_t win = storm_map.base + (uint64_t)cpu * STORM_WIN_PAGES * 4096;
    uint64_t r = xorshift64(rng), first, n, attrs, gpa;
    bool to_private = r & 1, big = (r >> 1) % 8 == 0;
    long want = 0, ret;

    if (big) {      /* a whole aligned 2 MiB page, hinted or not */
        first = ((r >> 4) % (STORM_WIN_PAGES / 512)) * 512;
        n = 512;
    } else {
        n = 1 + (r >> 4) % 32;
        first = (r >> 12) % (STORM_WIN_PAGES - n + 1);
    }
    gpa = win + first * 4096;
    attrs = to_private ? KVM_MAP_GPA_RANGE_ENCRYPTED : 0;
    switch ((r >> 32) % 16) {
    case 0:         /* a reserved hint value */
        attrs |= 3 + (r >> 40) % 13;
        want = 22;
        break;
    case 1:         /* reserved attribute bits */
        attrs |= (1ULL << (5 + (r >> 40) % 59));
        want = 22;
        break;
    case 2:         /* a 2 MiB hint */
        attrs |= KVM_MAP_GPA_RANGE_PAGE_SZ_2M;
        want = big ? 0 : 22;
        break;
    case 3:         /* a 1 GiB hint never fits a window */
        attrs |= KVM_MAP_GPA_RANGE_PAGE_SZ_1G;
        want = 22;
        break;
    default:
        break;
    }
    ret = storm_request(cpu, gpa, n, attrs);
    storm_check(cpu, ret, want, gpa, n, attrs);
    for (uint64_t p = first; p < first + n; p++) {
        uint64_t a = win + p * 4096, expect = storm_cpu[cpu].last[p];

        if (!ret && storm_cpu[cpu].is_private[p] != to_private) {
            storm_cpu[cpu].is_private[p] = to_private;
            storm_cpu[cpu].converted++;
            expect = 0;
        }
        storm_cpu[cpu].data_errors += read_word(a) != expect;
        storm_cpu[cpu].last[p] = cpu_word(a, cpu, storm_cpu[cpu].requests);
        write_word(a, storm_cpu[cpu].last[p]);
    }
}

/* A request no guest should make; to private, it must change nothing. */
static void storm_bad(int cpu, uint64_t *rng)
{
    /* Above the end of RAM: IOAPIC, HPET, LAPIC, MMCONFIG, BIOS ROM. */
    static const uint64_t mmio[] = {
        0xfec00000, 0xfed00000, 0xfee00000, 0xb0000000, 0xfffc0000,
    };
    uint64_t r = xorshift64(rng), gpa, n, attrs;
    bool to_private = r & 1;
    long want;

    attrs = to_private ? KVM_MAP_GPA_RANGE_ENCRYPTED : 0;
    n = 1 + (r >> 8) % 1024;
    switch ((r >> 1) % 6) {
    case 0:         /* past RAM */
        gpa = ALIGN_UP(storm_map.ram_end, 4096) +
              ((r >> 20) % (1ULL << 34)) * 4096;
        want = to_private ? 22 : ANSWER_ANY_OF_0_22;
        break;
    case 1:         /* MMIO, ROM */
        gpa = mmio[(r >> 20) % (sizeof(mmio) / sizeof(mmio[0]))];
        want = to_private ? 22 : ANSWER_ANY_OF_0_22;
        break;
    case 2:         /* gfn + npages wraps: KVM refuses it itself */
        gpa = ((r >> 20) % (1ULL << 40)) * 4096;
        n = UINT64_MAX - (r >> 24) % 1024;
        /* Unless it does not quite wrap: then the size overflows. */
        want = (gpa >> 12) + n <= (gpa >> 12) ? -KVM_EINVAL : 22;
        break;
    case 3:         /* the size in bytes wraps, the page count does not */
        gpa = storm_map.ram_end + ((r >> 20) % 1024) * 4096;
        n = (UINT64_MAX >> 12) + 1 + (r >> 40) % 1024;
        want = 22;
        break;
    case 4:         /* unaligned, or no pages */
        gpa = storm_map.base + 1 + (r >> 20) % 4095;
        n = (r >> 40) & 1 ? 0 : n;
        want = -KVM_EINVAL;
        break;
    default:        /* from the window to past the end of RAM */
        gpa = storm_map.base + (uint64_t)cpu * STORM_WIN_PAGES * 4096;
        n = (storm_map.ram_end - gpa) / 4096 + 1 + (r >> 20) % 4096;
        if (!to_private) {
            /* Shared would be fine, and other CPUs' pages: no. */
            gpa = ALIGN_UP(storm_map.ram_end, 2 * MiB);
        }
        want = to_private ? 22 : ANSWER_ANY_OF_0_22;
        break;
    }
    if ((r >> 50) % 4 == 0) {       /* reserved bits on top */
        attrs |= 1ULL << (5 + (r >> 52) % 59);
        if (want != -KVM_EINVAL) {
            want = 22;
        }
    }
    storm_check(cpu, storm_request(cpu, gpa, n, attrs), want, gpa, n,
                attrs);
}

static void storm_run(int cpu, void *arg)
{
    uint64_t rounds = arg_u64("rounds", 25000);
    uint64_t rng = 0x9e3779b97f4a7c15ULL * (cpu + 1) ^ arg_u64("seed", 0);
    uint64_t win = storm_map.base + (uint64_t)cpu * STORM_WIN_PAGES * 4096;

    (void)arg;
    for (uint64_t p = 0; p < STORM_WIN_PAGES; p++) {
        storm_cpu[cpu].is_private[p] = 0;
        storm_cpu[cpu].last[p] = cpu_word(win + p * 4096, cpu, 0);
        write_word(win + p * 4096, storm_cpu[cpu].last[p]);
    }
    for (uint64_t i = 0; i < rounds; i++) {
        if (xorshift64(&rng) % 4) {
            storm_own(cpu, &rng);
        } else {
            storm_bad(cpu, &rng);
        }
    }
}

GUEST_TEST_EXPLICIT(convert_storm, "cpus= vCPUs send rounds= random "
                    "conversion requests each, good and bad, checking every "
                    "answer and their windows' data; the host converts its "
                    "own window over QMP meanwhile (checkpoints=1)")
{
    struct ram_range r[16];
    int ranges = test_ram_ranges(r, 16), n;
    uint64_t requests = 0, converted = 0, refused = 0, nprivate = 0;
    enum test_result res = smp_start_test_cpus(&n);

    if (res) {
        return res;
    }
    storm_map.ram_end = 0;
    for (int i = 0; i < ranges; i++) {
        if (r[i].end > storm_map.ram_end) {
            storm_map.ram_end = r[i].end;
        }
    }
    /* The firmware's tables sit above the free RAM, still below 4 GiB. */
    storm_map.ram_end = ALIGN_UP(storm_map.ram_end, 2 * MiB);
    storm_map.base = window_base((uint64_t)(n + 1) * STORM_WIN_PAGES * 4096);
    if (!storm_map.base || storm_map.ram_end > 0xb0000000) {
        return test_fail("no room for %d windows below the PCI hole", n + 1);
    }
    test_checkpoint("phase=ready host_window=0x%lx host_size=0x%x "
                    "ram_end=0x%lx cpu_state=0x%lx cpu_state_size=0x%lx",
                    storm_map.base + (uint64_t)n * STORM_WIN_PAGES * 4096,
                    STORM_WIN_PAGES * 4096, storm_map.ram_end,
                    (uint64_t)(uintptr_t)storm_cpu, sizeof(storm_cpu[0]));
    smp_run(storm_run, NULL);
    for (int i = 0; i < n; i++) {
        requests += storm_cpu[i].requests;
        converted += storm_cpu[i].converted;
        refused += storm_cpu[i].refused;
        for (int p = 0; p < STORM_WIN_PAGES; p++) {
            nprivate += storm_cpu[i].is_private[p];
        }
        if (storm_cpu[i].unexpected || storm_cpu[i].data_errors) {
            return test_fail("cpu %d: %lu unexpected answers (first %ld, "
                             "not %ld, to 0x%lx npages 0x%lx attrs 0x%lx), "
                             "%lu data errors", i, storm_cpu[i].unexpected,
                             storm_cpu[i].first_ret, storm_cpu[i].first_want,
                             storm_cpu[i].first_gpa,
                             storm_cpu[i].first_npages,
                             storm_cpu[i].first_attrs,
                             storm_cpu[i].data_errors);
        }
    }
    test_info("cpus=%d requests=%lu converted_pages=%lu refused=%lu "
              "private=%lu", n, requests, converted, refused, nprivate);
    return TEST_PASS;
}

/*
 * pam_convert (issue 24): CPU 0 rewrites q35's PAM0 between DRAM and
 * PCI/ROM, so that every write makes QEMU delete and re-add the memslot
 * of the RAM from 0xf0000 on (the range merges with the RAM above 1 MiB
 * when it is DRAM): a memory commit that inhibits KVM ioctls and adds a
 * guest_memfd slot. CPU 1 meanwhile makes the 4 KiB pages of a window
 * private and shared again, checking every answer and the data of each
 * page in each state. The other CPUs, if any, wait. With one CPU, the
 * toggles come first, then one round of conversions.
 */
#define PAM_BDF         0x00            /* 0:0.0, the MCH */
#define PAM_REG         0x90            /* PAM0 in its low byte */
#define PAM0_DRAM_RW    0x30            /* 0xf0000-0xfffff: RAM */
#define PAM0_PCI        0x00            /* 0xf0000-0xfffff: PCI (BIOS ROM) */
#define PAM_WIN_PAGES   64

static struct {
    volatile bool done;             /* CPU 0 made all its toggles */
    uint64_t base;
    uint64_t toggles;
    uint64_t conversions, failures, data_errors;
    long first_ret;
    uint64_t first_gpa;
} pam;

static void pam_toggle(void)
{
    uint64_t toggles = arg_u64("toggles", 2000);
    uint32_t saved = pci_read32(PAM_BDF, PAM_REG);

    for (uint64_t i = 0; i < toggles; i++) {
        pci_write32(PAM_BDF, PAM_REG, (saved & ~0xffu) |
                    (i & 1 ? PAM0_PCI : PAM0_DRAM_RW));
        pam.toggles++;
        if (pam.toggles % 100 == 0) {
            test_info("toggles=%lu conversions=%lu", pam.toggles,
                      __atomic_load_n(&pam.conversions, __ATOMIC_RELAXED));
        }
    }
    pci_write32(PAM_BDF, PAM_REG, saved);
    __atomic_store_n(&pam.done, true, __ATOMIC_RELEASE);
}

static void pam_answer(long ret, uint64_t gpa)
{
    __atomic_add_fetch(&pam.conversions, 1, __ATOMIC_RELAXED);
    if (ret && !pam.failures++) {
        pam.first_ret = ret;
        pam.first_gpa = gpa;
    }
}

static void pam_convert_pages(void)
{
    uint64_t round = 0;

    /* At least one round, so that a short toggle loop still converts. */
    do {
        for (uint64_t p = 0; p < PAM_WIN_PAGES; p++) {
            uint64_t gpa = pam.base + p * 4096, word = cpu_word(gpa, 1, round);
            long ret = convert_private(gpa, 4096);

            pam_answer(ret, gpa);
            if (ret) {
                continue;
            }
            /* A page that changed state reads zeros (discard=sync). */
            pam.data_errors += read_word(gpa) != 0;
            write_word(gpa, word);
            pam.data_errors += read_word(gpa) != word;
            ret = convert_shared(gpa, 4096);
            pam_answer(ret, gpa);
            if (!ret) {
                pam.data_errors += read_word(gpa) != 0;
            }
        }
        round++;
    } while (!__atomic_load_n(&pam.done, __ATOMIC_ACQUIRE));
}

static void pam_run(int cpu, void *arg)
{
    int n = (int)(uintptr_t)arg;

    if (cpu == 0) {
        pam_toggle();
    }
    if (cpu == 1 || (cpu == 0 && n == 1)) {
        pam_convert_pages();
    }
}

GUEST_TEST_EXPLICIT(pam_convert, "CPU 0 toggles q35's PAM0 between DRAM and "
                    "ROM (toggles=) while CPU 1 converts 4 KiB pages to and "
                    "fro, checking every answer and its data (cpus=1: CPU 0 "
                    "converts one round after its toggles)")
{
    int n;
    enum test_result res = smp_start_test_cpus(&n);

    if (res) {
        return res;
    }
    pam.base = window_base(PAM_WIN_PAGES * 4096);
    if (!pam.base) {
        return test_fail("no free RAM window of %d pages", PAM_WIN_PAGES);
    }
    for (uint64_t p = 0; p < PAM_WIN_PAGES; p++) {
        write_word(pam.base + p * 4096, 0);
    }
    smp_run(pam_run, (void *)(uintptr_t)n);
    test_info("toggles=%lu conversions=%lu failures=%lu data_errors=%lu "
              "pam=0x%x", pam.toggles, pam.conversions, pam.failures,
              pam.data_errors, pci_read32(PAM_BDF, PAM_REG));
    if (pam.failures || pam.data_errors) {
        return test_fail("%lu failed conversions (first %ld at 0x%lx), %lu "
                         "data errors", pam.failures, pam.first_ret,
                         pam.first_gpa, pam.data_errors);
    }
    return TEST_PASS;
}
