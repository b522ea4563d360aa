/*
 * KVM guest_memfd layer: runs of blocks in the RamBlockAttributes bitmap.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bitops.h"
#include "gmem-runs.h"

bool kvm_gmem_next_run(const unsigned long *shared, unsigned long *bit,
                       unsigned long end, bool to_private,
                       unsigned long *run_start, unsigned long *run_end)
{
    /* Going private, the blocks to change are the shared ones (bit set). */
    unsigned long first = to_private ? find_next_bit(shared, end, *bit) :
                                       find_next_zero_bit(shared, end, *bit);

    if (first >= end) {
        *bit = end;
        return false;
    }
    *run_start = first;
    *run_end = to_private ? find_next_zero_bit(shared, end, first) :
                            find_next_bit(shared, end, first);
    *bit = *run_end;
    return true;
}

unsigned long kvm_gmem_state_run_end(const unsigned long *shared,
                                     unsigned long bit, unsigned long end,
                                     bool *is_shared)
{
    *is_shared = test_bit(bit, shared);
    return *is_shared ? find_next_zero_bit(shared, end, bit) :
                        find_next_bit(shared, end, bit);
}

bool kvm_gmem_group_private(const unsigned long *shared, unsigned long nbits,
                            unsigned long g, unsigned long group)
{
    return g + group <= nbits &&
           find_next_bit(shared, g + group, g) >= g + group;
}

bool kvm_gmem_next_private_groups(const unsigned long *shared,
                                  unsigned long nbits, unsigned long *bit,
                                  unsigned long end, unsigned long group,
                                  unsigned long *run_start,
                                  unsigned long *run_end)
{
    /* A last group cut short by the end of the bitmap is never whole. */
    const unsigned long groups_end = MIN(QEMU_ALIGN_UP(end, group),
                                         QEMU_ALIGN_DOWN(nbits, group));
    unsigned long g = QEMU_ALIGN_DOWN(*bit, group);

    while (g < groups_end &&
           !kvm_gmem_group_private(shared, nbits, g, group)) {
        g += group;
    }
    if (g >= groups_end) {
        *bit = end;
        return false;
    }
    *run_start = g;
    while (g < groups_end && kvm_gmem_group_private(shared, nbits, g, group)) {
        g += group;
    }
    *run_end = g;
    *bit = g;
    return true;
}
