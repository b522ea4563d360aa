/*
 * KVM guest_memfd layer: the memory section under a guest physical range.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef ACCEL_KVM_GMEM_LOOKUP_H
#define ACCEL_KVM_GMEM_LOOKUP_H

#include "system/memory.h"

/*
 * Count memory map changes from now on, and answer from the cache from
 * then on: under the BQL, outside a memory transaction (a memory
 * listener cannot be registered from inside one); idempotent.
 */
void kvm_gmem_lookup_init(void);

/*
 * memory_region_find(get_system_memory(), addr, size) for a non-empty
 * range that does not wrap: the same answer (but no flat view: .fv is
 * NULL) and the same reference on the section's region. Callers are
 * serialized (the manager's lock).
 */
MemoryRegionSection kvm_gmem_lookup(hwaddr addr, uint64_t size);

#endif
