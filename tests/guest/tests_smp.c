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
