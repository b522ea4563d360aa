/*
 * KVM guest_memfd layer: system reset.
 *
 * Memory goes back to the state the machine started with, for guests
 * that boot from shared memory (sw-protected-vm); SEV-SNP and TDX guests
 * are relaunched, not reset, and are left to upstream's code. kvm-gmem.c
 * has the record's invariants and the lock order. Here, under gmem.lock:
 *  - what is mapped at the reset goes back to shared through the
 *    ordinary conversion steps; not every memslot ever added, whose GPAs
 *    may be other memory now. A pending discard that fails again, or an
 *    unsettled run, does not hold reset up;
 *  - every block's record, mapped or not, becomes shared, and its private
 *    side is freed whatever the discard policy: the next boot finds zeros
 *    where it makes a range private again (a discard that fails stays
 *    pending, and is retried before then);
 *  - a stale shared copy whose discard still fails is zeroed in place,
 *    not left pending: a later discard would free what the next boot
 *    wrote there;
 *  - where KVM or a listener refused to make a mapped range shared, the
 *    record keeps the state KVM kept, and QEMU reports it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bitmap.h"
#include "qemu/error-report.h"
#include "qemu/lockable.h"
#include "qemu/rcu.h"
#include "system/address-spaces.h"
#include "system/ramblock.h"
#include "gmem-discard.h"
#include "gmem-lookup.h"
#include "gmem-request.h"
#include "gmem-state.h"
#include "trace.h"

/* flatview_for_each_range(): collect guest_memfd RAM with a private side. */
static bool gmem_mapped_range(Int128 start, Int128 len,
                              const MemoryRegion *mr, hwaddr offset_in_region,
                              void *opaque)
{
    if (mr->ram_block && mr->ram_block->attributes) {
        KvmGmemSlot range = {
            .rb = mr->ram_block,
            .gpa = int128_get64(start),
            .offset = offset_in_region,
            .size = int128_get64(len),
        };

        g_array_append_val((GArray *)opaque, range);
    }
    return false;
}

/*
 * System reset: memory goes back to the state the machine started with,
 * through the ordinary conversion steps. Only for guests that boot from
 * shared memory; SEV-SNP and TDX guests are relaunched, not reset.
 */
void kvm_gmem_reset(void *opaque)
{
    g_autoptr(GArray) mapped = g_array_new(false, false,
                                           sizeof(KvmGmemSlot));
    g_autoptr(GArray) stuck = g_array_new(false, false, sizeof(KvmGmemSlot));
    const uint64_t bs = qemu_real_host_page_size();
    KvmGmemBlock *b;

    /* The first reset is before the first guest request. */
    kvm_gmem_lookup_init();
    if (!gmem.initially_shared) {
        return;
    }
    /* What is mapped now, not what was mapped once. */
    WITH_RCU_READ_LOCK_GUARD() {
        flatview_for_each_range(address_space_to_flatview(
                                    &address_space_memory),
                                gmem_mapped_range, mapped);
    }
    GMEM_UNREF_AFTER_UNLOCK();
    QEMU_LOCK_GUARD(&gmem.lock);
    /* The record of every block changes below, mapped or not. */
    kvm_gmem_synced_forget_all();
    for (guint i = 0; i < mapped->len; i++) {
        KvmGmemSlot *m = &g_array_index(mapped, KvmGmemSlot, i);
        KvmGmemReject r = kvm_gmem_convert_locked(m->gpa, m->size, false,
                                                  GMEM_CONVERT_RESET);

        trace_kvm_gmem_reset(m->gpa, m->size, kvm_gmem_reject_name(r));
        if (r) {
            error_report("guest_memfd: reset cannot make 0x%" PRIx64 " +0x%"
                         PRIx64 " shared: %s", m->gpa, m->size,
                         kvm_gmem_reject_name(r));
            g_array_append_val(stuck, *m);
        } else {
            /* KVM has it shared, as the record will have. */
            kvm_gmem_synced_add(m);
        }
    }
    /*
     * Every block, mapped or not, starts the next boot shared, and
     * whatever the discard policy without this boot's private data: the
     * next boot may make a range private again and must find zeros (a
     * discard that fails stays pending, and is retried before then).
     * A stale shared copy that still cannot be freed is zeroed instead:
     * its range is shared now, and a discard later would free what the
     * next boot wrote there. Where KVM refused to make a mapped range
     * shared, the record keeps what KVM kept; its private pages are freed
     * all the same.
     */
    QLIST_FOREACH(b, &gmem.blocks, next) {
        RamBlockAttributes *attr = b->rb->attributes;
        uint64_t size = kvm_gmem_block_bytes(b->rb);
        g_autofree unsigned long *kept = NULL;

        kvm_gmem_flush_for_reset(b->rb, size);
        kvm_gmem_discard(b->rb, 0, size, true, true);
        if (stuck->len) {
            kept = bitmap_new(attr->bitmap_size);
            bitmap_copy(kept, attr->bitmap, attr->bitmap_size);
        }
        ram_block_attributes_state_change(attr, 0, size, false);
        for (guint i = 0; i < stuck->len; i++) {
            KvmGmemSlot *m = &g_array_index(stuck, KvmGmemSlot, i);

            for (uint64_t o = m->offset; m->rb == b->rb &&
                 o < m->offset + m->size; o += bs) {
                if (!test_bit(o / bs, kept)) {
                    ram_block_attributes_state_change(attr, o, bs, true);
                }
            }
        }
    }
}
