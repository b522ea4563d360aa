/*
 * KVM guest_memfd layer: the memory section under a guest physical range.
 *
 * Every request asks which sections lie under it, and a guest's requests
 * mostly fall, one after the other, in the same big RAM section.
 * memory_region_find() walks the memory map each time (the address
 * space, a binary search of the flat view, the region's owner): in the
 * nested rig, 6.7 us of the manager's own 18 us per 4 KiB conversion.
 * This keeps the last section found, from its start to the end of its
 * flat range, and answers from it while the map is unchanged:
 *
 *  - the memory listener counts changes of the map twice: in its begin,
 *    before the new flat view is in place, and in its commit, after;
 *    an answer from before the count moved is as good as
 *    memory_region_find() run just before the change, which is what any
 *    lookup racing with a change gets, and one cached in between (from
 *    the old view or the new) is dropped by the second count;
 *  - no reference is kept between requests (that would hold back the
 *    finalization of an unplugged region); the region taken from the
 *    cache is referenced inside an RCU read section, in which the flat
 *    view that still maps it cannot be freed.
 *
 * Why the cached region, which holds no reference of its own, is alive
 * when it is referenced (issue 24, defect 5). A region the map drops
 * lives on through the reference of the old flat view. That reference
 * goes in flatview_destroy(), an RCU callback queued by
 * address_space_set_flatview() once the new view is in place, so after
 * the begin count. A lookup that answers from the cache read the count
 * unchanged inside its read section, so before the begin count: its
 * section began before the callback was queued, hence before the grace
 * period the callback waits for, and that grace period waits for the
 * section to end. So the old view, and the region it references, outlive
 * the section, and the reference taken in it keeps the region alive
 * after. (Counting only at commit, as this file once did, left a window:
 * QEMU's RCU thread may finish that grace period while the commit is
 * still running, take the BQL right after it, and free the view and the
 * region; a lookup that read the count before the commit and was delayed
 * past that would reference a freed region.) The counter is a sequential
 * consistent read-modify-write, and a read section that misses a store
 * made before a grace period began is one that began before it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/atomic.h"
#include "qemu/rcu.h"
#include "system/address-spaces.h"
#include "gmem-lookup.h"

static bool gmem_listening;     /* until then, no answer from the cache */
static uint64_t gmem_map_changes;

static struct {
    uint64_t map_changes;       /* of the map this was found in */
    bool valid;
    MemoryRegion *mr;           /* not referenced */
    hwaddr start, end;          /* [start, end): one flat range, or part */
    hwaddr offset_within_region;        /* of start */
    bool readonly, nonvolatile;
} last;

/* The map changes (begin) or has changed (commit). */
static void gmem_lookup_commit(MemoryListener *listener)
{
    qatomic_inc(&gmem_map_changes);
}

static MemoryListener gmem_lookup_listener = {
    .name = "kvm-gmem-lookup",
    .begin = gmem_lookup_commit,        /* before the old view is retired */
    .commit = gmem_lookup_commit,
};

void kvm_gmem_lookup_init(void)
{
    if (!qatomic_read(&gmem_listening)) {
        memory_listener_register(&gmem_lookup_listener,
                                 &address_space_memory);
        qatomic_set(&gmem_listening, true);
    }
}

MemoryRegionSection kvm_gmem_lookup(hwaddr addr, uint64_t size)
{
    MemoryRegionSection s;
    uint64_t skipped, len;

    assert(size && addr + size - 1 >= addr);
    WITH_RCU_READ_LOCK_GUARD() {
        if (last.valid && qatomic_read(&gmem_listening) &&
            last.map_changes == qatomic_read(&gmem_map_changes) &&
            addr >= last.start && addr < last.end) {
            s = (MemoryRegionSection) {
                .mr = last.mr,
                .offset_within_region = last.offset_within_region +
                                        (addr - last.start),
                .size = int128_make64(MIN(size, last.end - addr)),
                .offset_within_address_space = addr,
                .readonly = last.readonly,
                .nonvolatile = last.nonvolatile,
            };
            memory_region_ref(s.mr);
            return s;
        }
    }
    /* What lies from @addr on, to the end of its flat range. */
    last.valid = false;
    last.map_changes = qatomic_read(&gmem_map_changes);
    /*
     * One read section over the find and the unreference of what lies
     * beyond the range: the flat view it was found in holds a reference
     * until the section ends, so this one is never the last (callers
     * hold gmem.lock, which finalising a region would take again).
     */
    WITH_RCU_READ_LOCK_GUARD() {
        s = memory_region_find(get_system_memory(), addr,
                               UINT64_MAX - addr);
        if (!s.mr) {
            return s;
        }
        len = int128_get64(s.size);
        last = (typeof(last)) {
            .map_changes = last.map_changes,
            .valid = len > 0,
            .mr = s.mr,
            .start = s.offset_within_address_space,
            .end = s.offset_within_address_space + len,
            .offset_within_region = s.offset_within_region,
            .readonly = s.readonly,
            .nonvolatile = s.nonvolatile,
        };
        /* The answer for [addr, addr + size): that, clipped, or nothing. */
        skipped = s.offset_within_address_space - addr;
        if (skipped >= size) {
            memory_region_unref(s.mr);
            return (MemoryRegionSection) { .mr = NULL };
        }
    }
    s.size = int128_make64(MIN(len, size - skipped));
    s.fv = NULL;
    return s;
}
