/*
 * KVM guest_memfd layer: who owns private/shared state, and how it starts.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SYSTEM_KVM_GMEM_H
#define SYSTEM_KVM_GMEM_H

#include "system/memory.h"

/*
 * The state guest_memfd-backed memory has when its memslot appears.
 * SEV-SNP and TDX launch into private memory, which is the default; a
 * confidential guest type whose guests boot from shared memory (e.g.
 * sw-protected-vm) says so from its kvm_init(), before any memslot exists.
 */
void kvm_gmem_set_initially_shared(bool shared);

/*
 * A guest_memfd-backed memslot of @size bytes at guest physical @start,
 * mapped at @host in QEMU, was just registered with KVM: give it its
 * initial attributes and record them. Exits QEMU on failure, as memslot
 * registration does.
 */
void kvm_gmem_slot_added(MemoryRegion *mr, hwaddr start, uint64_t size,
                         void *host);

#endif
