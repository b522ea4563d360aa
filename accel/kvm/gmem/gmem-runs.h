/*
 * KVM guest_memfd layer: runs of blocks in the RamBlockAttributes bitmap.
 *
 * Pure functions over the bitmap (bit set = shared), so unit tests can
 * cover the manager's "skip what is already in the target state" step and
 * its walks over runs of equal state.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef ACCEL_KVM_GMEM_RUNS_H
#define ACCEL_KVM_GMEM_RUNS_H

/*
 * The next maximal run [*run_start, *run_end) of blocks in [*bit, end)
 * that are not in the target state yet; *bit moves past it. Returns false
 * when every block left is in the target state.
 */
bool kvm_gmem_next_run(const unsigned long *shared, unsigned long *bit,
                       unsigned long end, bool to_private,
                       unsigned long *run_start, unsigned long *run_end);

/*
 * The end of the run of blocks in [bit, end) that are in the state of
 * block @bit, which *is_shared reports; @bit must be below @end.
 */
unsigned long kvm_gmem_state_run_end(const unsigned long *shared,
                                     unsigned long bit, unsigned long end,
                                     bool *is_shared);

/*
 * The group of @group blocks from block @g (a multiple of @group) lies
 * wholly in the bitmap of @nbits blocks and every block of it is private.
 */
bool kvm_gmem_group_private(const unsigned long *shared, unsigned long nbits,
                            unsigned long g, unsigned long group);

/*
 * The next maximal run [*run_start, *run_end) of whole, aligned groups of
 * @group blocks that are all private, among the groups that overlap
 * [*bit, end) in a bitmap of @nbits blocks; *bit moves past it. Returns
 * false when there is none. A group is a huge page of a hugetlb shared
 * side: only whole ones can be freed.
 */
bool kvm_gmem_next_private_groups(const unsigned long *shared,
                                  unsigned long nbits, unsigned long *bit,
                                  unsigned long end, unsigned long group,
                                  unsigned long *run_start,
                                  unsigned long *run_end);

#endif
