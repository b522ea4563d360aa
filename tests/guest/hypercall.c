/*
 * Test guest: KVM hypercalls.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "hypercall.h"

static long hypercall_vmcall(uint64_t nr, uint64_t a0, uint64_t a1,
                             uint64_t a2)
{
    long ret;

    asm volatile("vmcall" : "=a"(ret)
                 : "a"(nr), "b"(a0), "c"(a1), "d"(a2) : "memory");
    return ret;
}

static long hypercall_vmmcall(uint64_t nr, uint64_t a0, uint64_t a1,
                              uint64_t a2)
{
    long ret;

    asm volatile("vmmcall" : "=a"(ret)
                 : "a"(nr), "b"(a0), "c"(a1), "d"(a2) : "memory");
    return ret;
}

/*
 * KVM emulates either instruction on either vendor, but the native one
 * does not need the #UD round trip.
 */
long kvm_hypercall3(uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2)
{
    static int amd = -1;

    if (amd < 0) {
        uint32_t r[4];

        cpuid(0, 0, r);
        amd = r[1] == 0x68747541;       /* "Auth"enticAMD */
    }
    return amd ? hypercall_vmmcall(nr, a0, a1, a2)
               : hypercall_vmcall(nr, a0, a1, a2);
}
