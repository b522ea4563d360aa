/*
 * Test guest: KVM hypercalls (vmcall on Intel, vmmcall on AMD).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef HYPERCALL_H
#define HYPERCALL_H

#include "guest.h"

#define KVM_HC_MAP_GPA_RANGE            12
#define KVM_MAP_GPA_RANGE_PAGE_SZ_4K    0
#define KVM_MAP_GPA_RANGE_PAGE_SZ_2M    1
#define KVM_MAP_GPA_RANGE_PAGE_SZ_1G    2
#define KVM_MAP_GPA_RANGE_ENCRYPTED     (1 << 4)
#define KVM_MAP_GPA_RANGE_DECRYPTED     (0 << 4)

#define KVM_ENOSYS   1000
#define KVM_EINVAL   22

long kvm_hypercall3(uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2);

/* Ask the host to make [gpa, gpa + npages * 4 KiB) private or shared. */
static inline long map_gpa_range(uint64_t gpa, uint64_t npages,
                                 uint64_t attrs)
{
    return kvm_hypercall3(KVM_HC_MAP_GPA_RANGE, gpa, npages, attrs);
}

static inline long convert_private(uint64_t gpa, uint64_t size)
{
    return map_gpa_range(gpa, size / 4096, KVM_MAP_GPA_RANGE_ENCRYPTED |
                         (size % (2 * MiB) ? KVM_MAP_GPA_RANGE_PAGE_SZ_4K
                                           : KVM_MAP_GPA_RANGE_PAGE_SZ_2M));
}

static inline long convert_shared(uint64_t gpa, uint64_t size)
{
    return map_gpa_range(gpa, size / 4096, KVM_MAP_GPA_RANGE_DECRYPTED |
                         (size % (2 * MiB) ? KVM_MAP_GPA_RANGE_PAGE_SZ_4K
                                           : KVM_MAP_GPA_RANGE_PAGE_SZ_2M));
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;

    asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

/*
 * Where conversion tests work: base=<gpa> on the command line, else the
 * start (2 MiB aligned) of the first free RAM range with @need bytes, or 0.
 */
uint64_t window_base(uint64_t need);

#endif
