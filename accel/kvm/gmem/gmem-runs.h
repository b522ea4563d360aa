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

#endif
