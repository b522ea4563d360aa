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

/*
 * KVM_HC_MAP_GPA_RANGE from @cpu: convert, or refuse with a reason.
 * Returns what the guest gets in RAX (run->hypercall.ret): 0 or -KVM_E*.
 * Never stops the VM.
 */
int64_t kvm_gmem_map_gpa_range(CPUState *cpu, uint64_t gpa, uint64_t npages,
                               uint64_t attrs);

/*
 * KVM_EXIT_MEMORY_FAULT: the guest touched @gpa..+@size with the other
 * attribute. Returns 0, or < 0 when the access cannot be made to work,
 * which stops the VM (there is no way to answer the guest).
 */
int kvm_gmem_memory_fault(uint64_t gpa, uint64_t size, bool to_private);

/* Whether upstream's conversion path was selected (-accel kvm,...). */
bool kvm_gmem_legacy(void);

/* Adds the layer's properties to the KVM accelerator class. */
void kvm_gmem_accel_class_init(ObjectClass *oc);

#endif
