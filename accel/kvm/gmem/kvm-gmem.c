/*
 * KVM guest_memfd layer: initial private/shared state of guest memory.
 *
 * Invariant: for every guest_memfd-backed RAMBlock, the RamBlockAttributes
 * bitmap (set = shared) matches the KVM memory attributes of the guest
 * physical ranges that map it, from the moment its memslot exists.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "system/kvm.h"
#include "system/kvm-gmem.h"
#include "system/ramblock.h"
#include "trace.h"

static bool gmem_initially_shared;

void kvm_gmem_set_initially_shared(bool shared)
{
    gmem_initially_shared = shared;
}

void kvm_gmem_slot_added(MemoryRegion *mr, hwaddr start, uint64_t size,
                         void *host)
{
    RAMBlock *rb = mr->ram_block;
    uint64_t offset = (uint8_t *)host - rb->host;
    int ret;

    trace_kvm_gmem_slot_added(start, size, offset,
                              gmem_initially_shared ? "shared" : "private");
    if (gmem_initially_shared) {
        /* KVM attributes start at 0 (shared): only the bitmap learns it. */
        ret = ram_block_attributes_state_change(rb->attributes, offset, size,
                                                false);
    } else {
        /* RamBlockAttributes starts all private: only KVM learns it. */
        ret = kvm_set_memory_attributes_private(start, size);
    }
    if (ret) {
        error_report("guest_memfd slot at 0x%" HWADDR_PRIx " +0x%" PRIx64
                     ": cannot set its initial %s state: %s", start, size,
                     gmem_initially_shared ? "shared" : "private",
                     strerror(-ret));
        exit(1);
    }
}
