/*
 * Test guest: application processors.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "guest.h"

#define AP_TRAMPOLINE   0x8000          /* SIPI vector 0x08 */
#define LAPIC_BASE      0xfee00000UL
#define LAPIC_ICR_LO    0x300
#define LAPIC_ICR_HI    0x310
#define ICR_ALL_BUT_SELF (3 << 18)
#define ICR_INIT        (5 << 8)
#define ICR_STARTUP     (6 << 8)
#define ICR_ASSERT      (1 << 14)
#define ICR_PENDING     (1 << 12)

/* Per-CPU work: fn set by the BSP, cleared by the CPU when done. */
static struct {
    void (*volatile fn)(int cpu, void *arg);    /* polled by the CPU */
    void *volatile arg;         /* written by the BSP before fn */
} work[MAX_CPUS];
/* Incremented by each AP as it comes up, read by the BSP. */
static volatile int cpus_online = 1;

static void lapic_write(uint32_t reg, uint32_t v)
{
    *(volatile uint32_t *)(LAPIC_BASE + reg) = v;   /* MMIO */
}

static uint32_t lapic_read(uint32_t reg)
{
    return *(volatile uint32_t *)(LAPIC_BASE + reg);    /* MMIO */
}

static void lapic_ipi(uint32_t icr)
{
    lapic_write(LAPIC_ICR_HI, 0);
    lapic_write(LAPIC_ICR_LO, icr);
    while (lapic_read(LAPIC_ICR_LO) & ICR_PENDING) {
        asm volatile("pause");
    }
}

void ap_main(int index)
{
    idt_load();
    __atomic_add_fetch(&cpus_online, 1, __ATOMIC_RELEASE);
    for (;;) {
        void (*fn)(int, void *) = __atomic_load_n(&work[index].fn,
                                                  __ATOMIC_ACQUIRE);

        if (fn) {
            fn(index, work[index].arg);
            __atomic_store_n(&work[index].fn, NULL, __ATOMIC_RELEASE);
        }
        asm volatile("pause");
    }
}

int smp_start(int cpus)
{
    uint64_t spins;

    if (cpus > MAX_CPUS) {
        cpus = MAX_CPUS;
    }
    if (cpus_online >= cpus) {
        return cpus_online;
    }
    memcpy((void *)AP_TRAMPOLINE, ap_trampoline,
           ap_trampoline_end - ap_trampoline);
    lapic_ipi(ICR_ALL_BUT_SELF | ICR_INIT | ICR_ASSERT);
    lapic_ipi(ICR_ALL_BUT_SELF | ICR_STARTUP | (AP_TRAMPOLINE >> 12));
    lapic_ipi(ICR_ALL_BUT_SELF | ICR_STARTUP | (AP_TRAMPOLINE >> 12));
    for (spins = 0; spins < 200000000ULL; spins++) {
        if (__atomic_load_n(&cpus_online, __ATOMIC_ACQUIRE) >= cpus) {
            break;
        }
        asm volatile("pause");
    }
    return cpus_online;
}

enum test_result smp_start_test_cpus(int *n)
{
    int want = arg_u64("cpus", 2);

    *n = smp_start(want);
    if (*n != want) {
        return test_fail("%d of %d CPUs came online", *n, want);
    }
    return TEST_PASS;
}

void smp_run(void (*fn)(int cpu, void *arg), void *arg)
{
    int n = cpus_online;

    for (int i = 1; i < n; i++) {
        work[i].arg = arg;
        __atomic_store_n(&work[i].fn, fn, __ATOMIC_RELEASE);
    }
    fn(0, arg);
    for (int i = 1; i < n; i++) {
        while (__atomic_load_n(&work[i].fn, __ATOMIC_ACQUIRE)) {
            asm volatile("pause");
        }
    }
}
