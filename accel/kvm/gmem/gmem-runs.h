/*
 * KVM guest_memfd layer: which blocks a conversion changes.
 *
 * A pure function over the RamBlockAttributes bitmap (bit set = shared),
 * so unit tests can cover the "skip what is already in the target state"
 * step of the manager.
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

#endif
