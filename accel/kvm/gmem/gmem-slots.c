/*
 * KVM guest_memfd layer: memslots take the record's state.
 *
 * KVM keeps memory attributes by GPA, apart from memslots. A memslot that
 * maps a block with a private side, the first one or one that comes back
 * elsewhere or in part (a PCI BAR moved, a PAM or SMRAM region toggled),
 * must find there the attributes the block's record has. kvm-gmem.c has
 * the record's invariants and the lock order. Here, under gmem.lock:
 *  - every memslot of such a block, when it is added, gets KVM
 *    attributes from the record, run by run, after any conversion that
 *    ran while it was out;
 *  - gmem.synced lists GPA ranges whose KVM attributes are known to be
 *    the record of the block they map there: a memslot that comes back
 *    over one takes no calls. Whatever changes either side (a conversion,
 *    a memslot added over them, reset, an unplug) drops what it makes
 *    untrue; upstream's conversions (guest-memfd-conversion=legacy)
 *    tell nobody, so with them nothing is known synced;
 *  - a run whose attributes KVM refused when its memslot was added is in
 *    gmem.unsettled, as QEMU cannot read back what KVM kept: it is
 *    retried with every later memslot and before every request, and a
 *    request that overlaps it is refused ("kvm") until KVM takes the
 *    record's; it goes once KVM took them, once its GPAs map something
 *    else, or once a newer memslot over them decides them.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "qemu/lockable.h"
#include "qemu/range.h"
#include "system/kvm.h"
#include "system/kvm-gmem.h"
#include "system/ramblock.h"
#include "gmem-kernel.h"
#include "gmem-lookup.h"
#include "gmem-runs.h"
#include "gmem-state.h"
#include "trace.h"

/* GPA minus offset: which part of its block a GPA range maps where. */
static uint64_t gmem_slot_delta(const KvmGmemSlot *slot)
{
    return slot->gpa - slot->offset;
}

/*
 * KVM's attributes of [gpa, gpa + size) change to what @rb records for
 * the offsets it maps there (@delta: GPA minus offset): what was known of
 * them for anything else mapped there goes.
 */
static void gmem_synced_forget_gpa(uint64_t gpa, uint64_t size, RAMBlock *rb,
                                   uint64_t delta)
{
    for (guint i = 0; i < gmem.synced->len; i++) {
        KvmGmemSlot *e = &g_array_index(gmem.synced, KvmGmemSlot, i);

        if (ranges_overlap(e->gpa, e->size, gpa, size) &&
            (e->rb != rb || gmem_slot_delta(e) != delta)) {
            g_array_remove_index_fast(gmem.synced, i--);
        }
    }
}

/*
 * @rb's record of [offset, offset + size) changed, and KVM's attributes
 * with it only where it is mapped at @delta (GPA minus offset), or
 * nowhere (@all): what was known of its other GPAs goes.
 */
void kvm_gmem_synced_forget_offsets(RAMBlock *rb, uint64_t offset,
                                    uint64_t size, uint64_t delta,
                                    bool all)
{
    for (guint i = 0; i < gmem.synced->len; i++) {
        KvmGmemSlot *e = &g_array_index(gmem.synced, KvmGmemSlot, i);

        if (e->rb == rb && ranges_overlap(e->offset, e->size, offset, size) &&
            (all || gmem_slot_delta(e) != delta)) {
            g_array_remove_index_fast(gmem.synced, i--);
        }
    }
}

/*
 * KVM's attributes of @slot's GPAs are known to be the record's. Not
 * with upstream's conversions (kvm_convert_memory()), which change both
 * without telling this file.
 */
static bool gmem_synced(const KvmGmemSlot *slot)
{
    if (kvm_gmem_legacy()) {
        return false;
    }
    for (guint i = 0; i < gmem.synced->len; i++) {
        KvmGmemSlot *e = &g_array_index(gmem.synced, KvmGmemSlot, i);

        if (e->rb == slot->rb && gmem_slot_delta(e) == gmem_slot_delta(slot) &&
            e->gpa <= slot->gpa &&
            slot->gpa + slot->size <= e->gpa + e->size) {
            return true;
        }
    }
    return false;
}

void kvm_gmem_synced_add(const KvmGmemSlot *slot)
{
    /* A VM has a few dozen memslots; past that, forget and start again. */
    if (gmem.synced->len >= 256) {
        g_array_set_size(gmem.synced, 0);
    }
    g_array_append_val(gmem.synced, *slot);
}

void kvm_gmem_synced_forget_all(void)
{
    g_array_set_size(gmem.synced, 0);
}

/*
 * Make KVM's attributes of a memslot follow the bitmap, run by run. Each
 * call is all or nothing, so a run KVM refuses keeps the attributes its
 * GPAs had; with @unsettled it is added to gmem.unsettled, and the other
 * runs are still set. Returns the first error.
 */
static int gmem_apply_bitmap(const KvmGmemSlot *slot, bool unsettled)
{
    RamBlockAttributes *attr = slot->rb->attributes;
    const uint64_t bs = qemu_real_host_page_size();
    unsigned long bit = slot->offset / bs;
    const unsigned long end = (slot->offset + slot->size) / bs;
    int first = 0;

    gmem_synced_forget_gpa(slot->gpa, slot->size, slot->rb,
                           gmem_slot_delta(slot));
    while (bit < end) {
        bool shared;
        unsigned long next = kvm_gmem_state_run_end(attr->bitmap, bit, end,
                                                    &shared);
        KvmGmemSlot run = {
            .rb = slot->rb,
            .gpa = slot->gpa + bit * bs - slot->offset,
            .offset = bit * bs,
            .size = (next - bit) * bs,
        };
        int ret = kvm_gmem_kernel_set_attributes(run.gpa, run.size, !shared);

        if (ret) {
            trace_kvm_gmem_kernel_failed("set-attributes", run.gpa, run.size,
                                         ret);
            if (!unsettled) {
                return ret;
            }
            g_array_append_val(gmem.unsettled, run);
            first = first ?: ret;
        }
        bit = next;
    }
    return first;
}

/* @u's GPAs still map its block at its offset (a memslot may lag). */
static bool gmem_unsettled_mapped(const KvmGmemSlot *u)
{
    MemoryRegionSection s = kvm_gmem_lookup(u->gpa, u->size);
    bool same;

    if (!s.mr) {
        return false;
    }
    same = s.mr->ram_block == u->rb &&
           s.offset_within_address_space == u->gpa &&
           s.offset_within_region == u->offset &&
           int128_get64(s.size) == u->size;
    kvm_gmem_unref_later_add(s.mr);
    return same;
}

/*
 * Retry the unsettled runs: each is dropped once KVM took the record's
 * state, or once its GPAs map something else (whatever maps them now got
 * the attributes it records when its memslot was added). False if one
 * that overlaps [gpa, gpa + size) (size 0: none) is still unsettled.
 */
bool kvm_gmem_settle(uint64_t gpa, uint64_t size)
{
    bool settled = true;

    for (guint i = 0; i < gmem.unsettled->len; i++) {
        KvmGmemSlot u = g_array_index(gmem.unsettled, KvmGmemSlot, i);

        if (gmem_unsettled_mapped(&u) && gmem_apply_bitmap(&u, false)) {
            settled &= !size || !ranges_overlap(u.gpa, u.size, gpa, size);
            continue;
        }
        trace_kvm_gmem_slot_settled(u.gpa, u.size);
        g_array_remove_index_fast(gmem.unsettled, i--);
    }
    return settled;
}

/* Forget the unsettled runs that overlap [gpa, gpa + size), or of @rb. */
void kvm_gmem_unsettled_forget(uint64_t gpa, uint64_t size, RAMBlock *rb)
{
    for (guint i = 0; i < gmem.unsettled->len; i++) {
        KvmGmemSlot *u = &g_array_index(gmem.unsettled, KvmGmemSlot, i);

        if (u->rb == rb ||
            (size && ranges_overlap(u->gpa, u->size, gpa, size))) {
            g_array_remove_index_fast(gmem.unsettled, i--);
        }
    }
}

void kvm_gmem_slot_added(MemoryRegion *mr, hwaddr start, uint64_t size,
                         void *host)
{
    KvmGmemSlot slot = {
        .rb = mr->ram_block,
        .gpa = start,
        .offset = (uint8_t *)host - mr->ram_block->host,
        .size = size,
    };
    guint unsettled;
    int ret;

    if (!slot.rb->attributes) {
        return;     /* in place, no private side: nothing to record */
    }
    GMEM_UNREF_AFTER_UNLOCK();
    QEMU_LOCK_GUARD(&gmem.lock);
    kvm_gmem_block_seen(slot.rb);
    /*
     * KVM's attributes of the slot's GPAs follow the record, however the
     * block is laid out now (a slot can come back elsewhere, or in part):
     * this slot decides its GPAs, so older unsettled runs there go. A run
     * KVM refuses keeps whatever attributes its GPAs had before, which
     * QEMU cannot read back (KVM has no call for it) and need not be the
     * record's if the slot moved. It stays unsettled: retried with every
     * later slot and before every conversion, and a conversion that
     * overlaps it is refused ("kvm") until KVM takes it. No exit: a
     * guest's PAM or BAR write adds slots. Where KVM has the record's
     * attributes already (the slot is back where it was), nothing to do.
     */
    trace_kvm_gmem_slot_added(start, size, slot.offset);
    kvm_gmem_unsettled_forget(slot.gpa, slot.size, NULL);
    kvm_gmem_settle(0, 0);
    if (gmem_synced(&slot)) {
        trace_kvm_gmem_slot_synced(start, size);
        return;
    }
    unsettled = gmem.unsettled->len;
    ret = gmem_apply_bitmap(&slot, true);
    if (!ret) {
        kvm_gmem_synced_add(&slot);
    } else {
        gmem.stats.slot_attribute_failures += gmem.unsettled->len - unsettled;
        error_report_once("guest_memfd slot at 0x%" HWADDR_PRIx " +0x%" PRIx64
                          ": KVM refused its attributes (%s); retried before "
                          "each conversion", start, size, strerror(-ret));
    }
}
