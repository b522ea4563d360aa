/*
 * KVM guest_memfd layer: the conversion manager.
 *
 * The only code that changes whether guest memory is private or shared.
 * Inputs: memory-fault exits, KVM_HC_MAP_GPA_RANGE hypercalls (SEV-SNP
 * page-state changes and TDX MapGPA arrive this way), the initial state
 * of new memslots and SEV-SNP launch, guest-memfd-convert (QMP), and
 * system reset. docs/devel/kvm-gmem.rst has the design; gmem-monitor.c
 * reports what this file owns, gmem-kernel.c makes its kernel calls,
 * gmem-discard.c frees the stale side (now, from its worker, or in whole
 * huge pages) and gmem-lookup.c finds the memory under a request.
 *
 * Invariants, under gmem.lock:
 *  - the RamBlockAttributes bitmap is the record of the state: KVM's
 *    attributes are made to follow it, never the other way round;
 *  - for every guest_memfd-backed RAMBlock, its RamBlockAttributes bitmap
 *    (bit set = shared) equals the KVM memory attributes of the guest
 *    physical ranges that map it, outside a conversion in progress,
 *    whatever the layout: a block gets its initial state once, and every
 *    memslot of it, new or back elsewhere, takes the bitmap's state;
 *  - gmem.blocks holds only live RAMBlocks with a private side: a block
 *    leaves it, with its pending discards, when it is freed;
 *  - a request is validated in full (every byte must be guest_memfd RAM
 *    with a private side, or MMIO or in-place RAM being made shared)
 *    before any state changes, and a rejected request changes nothing:
 *    the runs it changed before the failure are changed back. Only if
 *    KVM refuses to change one back does that run keep the new state,
 *    and then the record follows KVM (counted as a rollback failure);
 *  - a range never changes state while a discard of it is pending: the
 *    pending discards it overlaps are done first, and if one fails again
 *    the request is refused. A failed discard stays pending, so a stale
 *    copy is freed before its side can become the live one again;
 *  - a request holds gmem.lock from its first look at the state to its
 *    end. The two waits that release it come before that look, which
 *    starts again after them: for a discard the async worker is doing in
 *    the request's range, and for host I/O leases on a range going
 *    private;
 *  - RamDiscardManager listeners (VFIO) drop a range before it becomes
 *    private and get it back only once it is shared again; a range a
 *    listener cannot map does not become shared. A listener is added
 *    (with its replay) and removed (with its discard) under gmem.lock
 *    too, so it sees every change or none (issue 24, defect 3);
 *  - a shared side of huge pages (hugetlb) is freed in whole huge pages
 *    only, each once every part of it is private (the bitmap says which),
 *    and a range of it becomes shared only once its huge pages are
 *    allocated again: a touch of a page the pool could not give would be
 *    a SIGBUS that ends QEMU, so the request is refused instead.
 *
 * Under gmem.lease_lock (taken after gmem.lock, never before):
 *  - a range's bits in the bitmap change only while a conversion fences
 *    it (reset's return to shared excepted);
 *  - host I/O leases only shared, unfenced memory, and never waits: a
 *    mapping stops short of the first private or fenced page (it is taken
 *    inside address_space_map()'s RCU read section);
 *  - no range goes private while host I/O holds a lease on it: a
 *    conversion to private waits (bounded, without gmem.lock, its ranges
 *    fenced) for the leases on them to end and fails with "leased" if
 *    they do not.
 *  - QEMU's own copies of guest RAM (flatview_read_continue() and
 *    flatview_write_continue(), patch 0018) touch only shared, unfenced
 *    pages, each run under a lease for the copy, taken and dropped like
 *    a mapping's, the copy made with the lock released; a private or
 *    fenced page reads as zeros and is not written (issue 24, defect 10).
 *
 * Lock order, outer first: BQL, KVM's slots lock, the ioctl inhibit,
 * gmem.lock, gmem.lease_lock; RCU read sections nest inside any of them.
 * A memory commit (kvm_region_commit()) holds the BQL and the slots lock,
 * and inhibits ioctls when one transaction removes a range and adds an
 * overlapping one (a q35 PAM or SMRAM change, a BAR moved), before it
 * takes gmem.lock in kvm_gmem_slot_added(). vCPU threads convert without
 * the BQL. So the rule: under gmem.lock nothing waits for the BQL, the
 * slots lock or the end of an inhibit, and every other wait there ends on
 * its own. What is called under gmem.lock, and what it may wait for:
 *  - KVM_SET_MEMORY_ATTRIBUTES: on the VM fd itself, not through
 *    kvm_vm_ioctl(), whose accel_ioctl_begin() waits out an inhibit
 *    (gmem-kernel.c says why that is safe). In Linux it takes the VM's
 *    slots_lock, which a memslot ioctl holds only for its own call;
 *  - discards: fallocate(PUNCH_HOLE) on guest_memfd (the file's
 *    invalidate lock, KVM's mmu_lock), madvise(MADV_DONTNEED) or
 *    fallocate on the shared side (the mm's lock), MADV_POPULATE_WRITE
 *    of a huge-page shared side (page faults in QEMU's own mapping; no
 *    userfaultfd, migration is blocked): kernel locks only;
 *  - RamDiscardListeners (VFIO): VFIO_IOMMU_(UN)MAP_DMA or
 *    IOMMU_IOAS_(UN)MAP on the container's fd: kernel locks only, no
 *    inhibit, no BQL. The same calls are made from a listener's
 *    registration (replay) and removal, which take gmem.lock under the
 *    BQL (kvm_gmem_listener_change_begin());
 *  - the wait for host I/O to drop its leases (gmem_lease_wait(), on
 *    gmem.lease_cond, bounded by lease-timeout) releases gmem.lock: the
 *    I/O may need the BQL to end, and a commit must not stall that long;
 *  - the wait for the async worker releases gmem.lock; the worker takes
 *    it only to pick a discard and frees without it.
 * Outside gmem.lock: KVM_PRE_FAULT_MEMORY through kvm_vcpu_ioctl(),
 * which may wait for an inhibit, holding nothing a commit needs; and
 * memory_region_unref() of the regions a holder looked up, which it
 * drops once it released the lock (gmem_unref_later_drop()): the last
 * reference finalises an unplugged region, and the removal of its
 * RAMBlock takes gmem.lock (issue 24, defect 4).
 * gmem.lease_lock is taken alone by lease takers (inside RCU read
 * sections, with or without the BQL), which never wait under it. No
 * cycle: the commit waits for gmem.lock holding the outer locks, and a
 * holder of gmem.lock waits for nothing outer, only for the kernel.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qemu/bitmap.h"
#include "qemu/thread.h"
#include "qemu/timer.h"
#include "qemu/lockable.h"
#include "qemu/rcu.h"
#include "qemu/range.h"
#include "exec/ramlist.h"
#include "migration/blocker.h"
#include "system/address-spaces.h"
#include "system/kvm.h"
#include "system/kvm-gmem.h"
#include "system/ramblock.h"
#include "system/reset.h"
#include "gmem-discard.h"
#include "gmem-kernel.h"
#include "gmem-lease.h"
#include "gmem-lookup.h"
#include "gmem-manager.h"
#include "gmem-request.h"
#include "gmem-runs.h"
#include "trace.h"

/* One guest_memfd-backed RAMBlock and what happened to it. */
typedef struct KvmGmemBlock {
    RAMBlock *rb;
    KvmGmemBlockStats stats;
    QLIST_ENTRY(KvmGmemBlock) next;
} KvmGmemBlock;

/* A guest_memfd-backed memslot as KVM knows it. */
typedef struct KvmGmemSlot {
    RAMBlock *rb;
    uint64_t gpa;
    uint64_t offset;            /* in rb */
    uint64_t size;
} KvmGmemSlot;

/* A part of a request that lies in one RAMBlock. */
typedef struct KvmGmemPiece {
    RAMBlock *rb;
    MemoryRegion *mr;           /* referenced until the request is done */
    uint64_t gpa;
    uint64_t offset;            /* in rb */
    uint64_t size;
} KvmGmemPiece;

/*
 * A range new host I/O leases stop short of, and whose request put it up:
 * a conversion fences what it changes while it changes it, and a
 * conversion to private fences what it waits for while it waits.
 */
typedef struct KvmGmemFenced {
    const void *owner;
    RAMBlock *rb;
    uint64_t offset;            /* in rb */
    uint64_t size;
} KvmGmemFenced;

/* Who converts, which decides two steps. */
typedef enum KvmGmemConvertMode {
    GMEM_CONVERT_REQUEST,       /* guest or operator: all the rules */
    GMEM_CONVERT_LAUNCH,        /* keeps the shared copy: the source */
    GMEM_CONVERT_RESET,         /* a stale copy it cannot free waits */
} KvmGmemConvertMode;

/* A maximal run of pages of one piece that are not in the target state. */
typedef struct KvmGmemRun {
    guint piece;                /* index in the request's pieces */
    uint64_t offset;            /* in the piece's block */
    uint64_t size;
    bool done;                  /* KVM's attributes are the target's */
} KvmGmemRun;

static struct {
    QemuMutex lock;
    bool initially_shared;
    KvmGmemStats stats;         /* backlog and leases: filled when read */
    QLIST_HEAD(, KvmGmemBlock) blocks;     /* blocks with a private side */
    bool hooks_registered;      /* reset handler, RAMBlock notifier */
    /* The request in progress: kept, so that a request allocates nothing. */
    GArray *pieces;             /* KvmGmemPiece */
    GArray *runs;               /* KvmGmemRun */
    /*
     * KvmGmemSlot: runs of memslots whose attributes KVM refused when the
     * slot was added, so that QEMU does not know them (see
     * kvm_gmem_slot_added()); retried until KVM takes the record's.
     */
    GArray *unsettled;
    /*
     * KvmGmemSlot: GPA ranges whose KVM attributes are the record of the
     * block they map there, whether a memslot maps them now or not: KVM
     * keeps attributes by GPA, across memslot changes. A memslot that
     * comes back where one of these is takes no calls (a q35 PAM flip
     * re-adds the low RAM slot; fragmented, that was a call per run).
     */
    GArray *synced;

    /* Host I/O on shared memory; see the lease invariants above. */
    QemuMutex lease_lock;
    QemuCond lease_cond;        /* a lease ended or a fence was lifted */
    KvmGmemLeases leases;
    GArray *fences;             /* KvmGmemFenced */
    uint64_t lease_waits;
} gmem;

static void __attribute__((constructor)) kvm_gmem_init_lock(void)
{
    qemu_mutex_init(&gmem.lock);
    gmem.pieces = g_array_new(false, false, sizeof(KvmGmemPiece));
    gmem.runs = g_array_new(false, false, sizeof(KvmGmemRun));
    gmem.unsettled = g_array_new(false, false, sizeof(KvmGmemSlot));
    gmem.synced = g_array_new(false, false, sizeof(KvmGmemSlot));
    kvm_gmem_discard_init(&gmem.lock, &gmem.stats);
    qemu_mutex_init(&gmem.lease_lock);
    qemu_cond_init(&gmem.lease_cond);
    gmem.fences = g_array_new(false, false, sizeof(KvmGmemFenced));
    kvm_gmem_leases_init(&gmem.leases);
}

void kvm_gmem_set_initially_shared(bool shared)
{
    gmem.initially_shared = shared;
}

int kvm_gmem_block_migration(Error **blocker, const char *owner,
                             Error **errp)
{
    /*
     * Migration logs dirty pages of all RAM, and KVM refuses
     * KVM_MEM_LOG_DIRTY_PAGES on guest_memfd memslots (Linux 7.2 still):
     * QEMU 10.2 stops the VM when migration turns logging on.
     */
    error_setg(blocker, "%s: KVM cannot log dirty pages of guest_memfd "
               "memory, so the VM cannot be migrated", owner);
    return migrate_add_blocker(blocker, errp);
}

/* Bytes of @rb that its RamBlockAttributes bitmap covers. */
static uint64_t gmem_block_bytes(RAMBlock *rb)
{
    return (uint64_t)rb->attributes->bitmap_size * qemu_real_host_page_size();
}

static KvmGmemBlock *gmem_block_find(RAMBlock *rb)
{
    KvmGmemBlock *b;

    QLIST_FOREACH(b, &gmem.blocks, next) {
        if (b->rb == rb) {
            return b;
        }
    }
    return NULL;
}

/* The block's entry, made on first use. */
static KvmGmemBlock *gmem_block(RAMBlock *rb)
{
    KvmGmemBlock *b = gmem_block_find(rb);

    if (b) {
        return b;
    }
    b = g_new0(KvmGmemBlock, 1);
    b->rb = rb;
    QLIST_INSERT_HEAD(&gmem.blocks, b, next);
    return b;
}

void kvm_gmem_read_stats(KvmGmemStats *stats, KvmGmemBlockFn *fn,
                         void *opaque)
{
    KvmGmemBlock *b;

    QEMU_LOCK_GUARD(&gmem.lock);
    *stats = gmem.stats;
    stats->discard_backlog = kvm_gmem_discard_backlog();
    WITH_QEMU_LOCK_GUARD(&gmem.lease_lock) {
        stats->leases = gmem.leases.active;
        stats->lease_waits = gmem.lease_waits;
    }
    QLIST_FOREACH(b, &gmem.blocks, next) {
        fn(b->rb, &b->stats, opaque);
    }
}

/* GPA minus offset: which part of its block a GPA range maps where. */
static uint64_t gmem_slot_delta(const KvmGmemSlot *slot)
{
    return slot->gpa - slot->offset;
}

/*
 * KVM's attributes of [gpa, gpa + size) change to what @rb records for
 * the offsets it maps there (@delta: GPA minus offset): what was known of
 * them for anything else mapped there goes. @rb NULL: for anything.
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
static void gmem_synced_forget_offsets(RAMBlock *rb, uint64_t offset,
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
    for (guint i = 0; !kvm_gmem_legacy() && i < gmem.synced->len; i++) {
        KvmGmemSlot *e = &g_array_index(gmem.synced, KvmGmemSlot, i);

        if (e->rb == slot->rb && gmem_slot_delta(e) == gmem_slot_delta(slot) &&
            e->gpa <= slot->gpa &&
            slot->gpa + slot->size <= e->gpa + e->size) {
            return true;
        }
    }
    return false;
}

static void gmem_synced_add(const KvmGmemSlot *slot)
{
    /* A VM has a few dozen memslots; past that, forget and start again. */
    if (gmem.synced->len >= 256) {
        g_array_set_size(gmem.synced, 0);
    }
    g_array_append_val(gmem.synced, *slot);
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

/*
 * Regions a holder of gmem.lock looked up, to unreference once it has
 * released the lock: the last reference to an unplugged region finalises
 * it, and gmem_ram_block_removed() then takes gmem.lock (issue 24,
 * defect 4). Per thread, as holding the lock is.
 */
static __thread GPtrArray *gmem_unref_later;

static void gmem_unref_later_add(MemoryRegion *mr)
{
    if (!gmem_unref_later) {
        gmem_unref_later = g_ptr_array_new();
    }
    g_ptr_array_add(gmem_unref_later, mr);
}

/* Without gmem.lock: drop the references gmem_unref_later_add() kept. */
static void gmem_unref_later_drop(void)
{
    for (guint i = 0; gmem_unref_later && i < gmem_unref_later->len; i++) {
        memory_region_unref(g_ptr_array_index(gmem_unref_later, i));
    }
    if (gmem_unref_later) {
        g_ptr_array_set_size(gmem_unref_later, 0);
    }
}

static void gmem_unref_later_cleanup(char *unused)
{
    gmem_unref_later_drop();
}

/*
 * Before a lock guard of gmem.lock, in a function that takes it: the
 * references are dropped when the function returns, after the guard's
 * unlock (cleanups run in reverse order of declaration).
 */
#define GMEM_UNREF_AFTER_UNLOCK() \
    char gmem_unref_after_unlock \
        __attribute__((cleanup(gmem_unref_later_cleanup), unused))

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
    gmem_unref_later_add(s.mr);
    return same;
}

/*
 * Retry the unsettled runs: each is dropped once KVM took the record's
 * state, or once its GPAs map something else (whatever maps them now got
 * the attributes it records when its memslot was added). False if one
 * that overlaps [gpa, gpa + size) (size 0: none) is still unsettled.
 */
static bool gmem_settle(uint64_t gpa, uint64_t size)
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
static void gmem_unsettled_forget(uint64_t gpa, uint64_t size, RAMBlock *rb)
{
    for (guint i = 0; i < gmem.unsettled->len; i++) {
        KvmGmemSlot *u = &g_array_index(gmem.unsettled, KvmGmemSlot, i);

        if (u->rb == rb ||
            (size && ranges_overlap(u->gpa, u->size, gpa, size))) {
            g_array_remove_index_fast(gmem.unsettled, i--);
        }
    }
}

static KvmGmemReject gmem_convert_locked(uint64_t gpa, uint64_t size,
                                         bool to_private,
                                         KvmGmemConvertMode mode);

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
static void gmem_reset(void *opaque)
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
    g_array_set_size(gmem.synced, 0);
    for (guint i = 0; i < mapped->len; i++) {
        KvmGmemSlot *m = &g_array_index(mapped, KvmGmemSlot, i);
        KvmGmemReject r = gmem_convert_locked(m->gpa, m->size, false,
                                              GMEM_CONVERT_RESET);

        trace_kvm_gmem_reset(m->gpa, m->size, kvm_gmem_reject_name(r));
        if (r) {
            error_report("guest_memfd: reset cannot make 0x%" PRIx64 " +0x%"
                         PRIx64 " shared: %s", m->gpa, m->size,
                         kvm_gmem_reject_name(r));
            g_array_append_val(stuck, *m);
        } else {
            /* KVM has it shared, as the record will have. */
            gmem_synced_add(m);
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
        uint64_t size = gmem_block_bytes(b->rb);
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

/* The fences of a request waiting for leases on @rb, which goes away. */
static void gmem_fence_forget_block(RAMBlock *rb)
{
    QEMU_LOCK_GUARD(&gmem.lease_lock);
    for (guint i = 0; i < gmem.fences->len; i++) {
        if (g_array_index(gmem.fences, KvmGmemFenced, i).rb == rb) {
            g_array_remove_index_fast(gmem.fences, i--);
        }
    }
}

/* A RAMBlock goes away (hot-unplug): forget it and its pending work. */
static void gmem_ram_block_removed(RAMBlockNotifier *n, void *host,
                                   size_t size, size_t max_size)
{
    KvmGmemBlock *b, *next;

    QEMU_LOCK_GUARD(&gmem.lock);
    QLIST_FOREACH_SAFE(b, &gmem.blocks, next, next) {
        if (b->rb->host == host) {
            kvm_gmem_discard_forget_block(b->rb);
            gmem_unsettled_forget(0, 0, b->rb);
            gmem_fence_forget_block(b->rb);
            gmem_synced_forget_offsets(b->rb, 0, UINT64_MAX, 0, true);
            QLIST_REMOVE(b, next);
            g_free(b);
        }
    }
}

static RAMBlockNotifier gmem_ram_notifier = {
    .ram_block_removed = gmem_ram_block_removed,
};

/*
 * system/ram-block-attributes.c adds and removes a RamDiscardListener
 * (VFIO's, from its memory listener, under the BQL) between these two:
 * the listener list and the bitmap its replay reads are the ones
 * conversions walk and change under gmem.lock. The lock order allows it
 * (BQL before gmem.lock), and what the holder does meanwhile, the
 * listener's DMA map or unmap calls, waits for no QEMU lock.
 */
void kvm_gmem_listener_change_begin(void)
{
    qemu_mutex_lock(&gmem.lock);
}

void kvm_gmem_listener_change_end(void)
{
    qemu_mutex_unlock(&gmem.lock);
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
    if (!gmem.hooks_registered) {
        qemu_register_reset(gmem_reset, NULL);
        ram_block_notifier_add(&gmem_ram_notifier);
        gmem.hooks_registered = true;
    }
    if (!gmem_block_find(slot.rb)) {
        /*
         * First sight of the block: its initial state, for all of it.
         * RamBlockAttributes starts all private (SEV-SNP, TDX). If a
         * listener (VFIO) cannot map the block, the bits are set all the
         * same, as KVM's are below: the device lacks those mappings, and
         * QEMU says so and runs on (it used to exit).
         */
        gmem_block(slot.rb);
        if (gmem.initially_shared &&
            ram_block_attributes_state_change(slot.rb->attributes, 0,
                                              gmem_block_bytes(slot.rb),
                                              false)) {
            error_report("guest_memfd: a listener cannot map %s",
                         qemu_ram_get_idstr(slot.rb));
        }
    }
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
    gmem_unsettled_forget(slot.gpa, slot.size, NULL);
    gmem_settle(0, 0);
    if (gmem_synced(&slot)) {
        trace_kvm_gmem_slot_synced(start, size);
        return;
    }
    unsettled = gmem.unsettled->len;
    ret = gmem_apply_bitmap(&slot, true);
    if (!ret) {
        gmem_synced_add(&slot);
    } else {
        gmem.stats.slot_attribute_failures += gmem.unsettled->len - unsettled;
        error_report_once("guest_memfd slot at 0x%" HWADDR_PRIx " +0x%" PRIx64
                          ": KVM refused its attributes (%s); retried before "
                          "each conversion", start, size, strerror(-ret));
    }
}

/*
 * Split [gpa, gpa + size) at memory section boundaries into @pieces and
 * check that the request may proceed: making private needs guest_memfd RAM
 * with a private side everywhere; making shared may also cover MMIO,
 * holes and in-place guest_memfd RAM, which stay as they are (TDX firmware
 * shares its MMIO ranges this way). Pieces are only of blocks with a
 * private side (RamBlockAttributes).
 */
static KvmGmemReject gmem_collect(uint64_t gpa, uint64_t size,
                                  bool to_private, GArray *pieces)
{
    uint64_t addr = gpa, left = size;

    while (left) {
        MemoryRegionSection s = kvm_gmem_lookup(addr, left);
        uint64_t start, len;

        if (!s.mr) {
            /* Nothing at all in what is left. */
            return to_private ? KVM_GMEM_REJECT_NOT_GMEM : KVM_GMEM_OK;
        }
        start = s.offset_within_address_space;
        len = int128_get64(s.size);
        if (start > addr && to_private) {
            gmem_unref_later_add(s.mr);
            return KVM_GMEM_REJECT_NOT_GMEM;       /* a hole first */
        }
        if (memory_region_has_guest_memfd(s.mr) &&
            !s.mr->ram_block->attributes) {
            /* In place: no private side, and shared for good. */
            gmem_unref_later_add(s.mr);
            if (to_private) {
                return KVM_GMEM_REJECT_NOT_GMEM;
            }
        } else if (memory_region_has_guest_memfd(s.mr)) {
            /*
             * Sections are of leaf regions, never aliases, and a RAM
             * region maps its block from offset 0.
             */
            KvmGmemPiece p = {
                .rb = s.mr->ram_block,
                .mr = s.mr,
                .gpa = start,
                .offset = s.offset_within_region,
                .size = len,
            };

            g_array_append_val(pieces, p);
        } else {
            bool mmio = !memory_region_is_ram(s.mr) &&
                        !memory_region_is_ram_device(s.mr) &&
                        !memory_region_is_rom(s.mr) &&
                        !memory_region_is_romd(s.mr);

            gmem_unref_later_add(s.mr);
            if (to_private || !mmio) {
                return KVM_GMEM_REJECT_NOT_GMEM;
            }
        }
        left -= start + len - addr;
        addr = start + len;
    }
    return KVM_GMEM_OK;
}

static uint64_t gmem_run_gpa(const KvmGmemPiece *p, const KvmGmemRun *run)
{
    return p->gpa + (run->offset - p->offset);
}

/*
 * After KVM made @runs shared: the record follows, run by run. A run a
 * listener (VFIO) cannot map does not become shared, and neither do the
 * runs after it: KVM makes them private again. If KVM refuses that, a
 * run stays shared (run->done), in KVM and in the record.
 */
static KvmGmemReject gmem_runs_shared(const KvmGmemPiece *p, KvmGmemRun *runs,
                                      guint n)
{
    RamBlockAttributes *attr = p->rb->attributes;
    KvmGmemReject r = KVM_GMEM_OK;

    for (guint i = 0; i < n; i++) {
        KvmGmemRun *run = &runs[i];

        if (!r && !ram_block_attributes_state_change(attr, run->offset,
                                                      run->size, false)) {
            continue;
        }
        if (!r) {
            /* Back to private in the record, for the listeners' sake. */
            ram_block_attributes_state_change(attr, run->offset, run->size,
                                              true);
            r = KVM_GMEM_REJECT_LISTENER;
        }
        if (kvm_gmem_kernel_set_attributes(gmem_run_gpa(p, run), run->size,
                                           true)) {
            ram_block_attributes_state_change(attr, run->offset, run->size,
                                              false);
        } else {
            run->done = false;
        }
    }
    return r;
}

/*
 * Move @n runs of one piece to the target state: the record, KVM's
 * attributes, and the listeners. KVM changes in one call over the span
 * the runs cover, the pages between them included: they are in the
 * target state already, and setting an attribute a page has changes
 * nothing. The call is all or nothing (kvm_vm_set_mem_attributes()
 * reserves its entries first), so a fragmented range costs one call, not
 * one per run. The record changes run by run: listeners must see only
 * what changes. If this fails, the runs are left as they were, with
 * run->done false; except that KVM may refuse to undo a step, and then a
 * run keeps the new state (run->done true), and so does the record.
 */
static KvmGmemReject gmem_runs_change(const KvmGmemPiece *p, KvmGmemRun *runs,
                                      guint n, bool to_private)
{
    RamBlockAttributes *attr = p->rb->attributes;
    uint64_t gpa = gmem_run_gpa(p, &runs[0]);
    uint64_t size = runs[n - 1].offset + runs[n - 1].size - runs[0].offset;
    int64_t t0;
    guint i;
    int ret;

    trace_kvm_gmem_convert_run(gpa, size, to_private ? "private" : "shared");
    for (i = 0; i < n; i++) {
        if (!to_private &&
            !kvm_gmem_populate_huge(p->rb, runs[i].offset, runs[i].size)) {
            return KVM_GMEM_REJECT_NO_MEMORY;
        }
        if (to_private) {
            /* Listeners drop the range while QEMU may still map it. */
            ram_block_attributes_state_change(attr, runs[i].offset,
                                              runs[i].size, true);
        }
    }
    t0 = get_clock();
    ret = kvm_gmem_kernel_set_attributes(gpa, size, to_private);
    gmem.stats.kernel_ns += get_clock() - t0;
    if (ret) {
        trace_kvm_gmem_kernel_failed("set-attributes", gpa, size, ret);
        for (i = 0; to_private && i < n; i++) {
            if (ram_block_attributes_state_change(attr, runs[i].offset,
                                                  runs[i].size, false)) {
                /* Shared, as KVM says, but a listener lost its mapping. */
                gmem.stats.rollback_failures++;
            }
        }
        return KVM_GMEM_REJECT_KVM;
    }
    gmem_synced_forget_offsets(p->rb, runs[0].offset, size,
                               gpa - runs[0].offset, false);
    for (i = 0; i < n; i++) {
        runs[i].done = true;
    }
    return to_private ? KVM_GMEM_OK : gmem_runs_shared(p, runs, n);
}

/* The runs of @pieces not in the target state yet, into @runs. */
static void gmem_collect_runs(GArray *pieces, bool to_private, GArray *runs)
{
    const uint64_t bs = qemu_real_host_page_size();

    g_array_set_size(runs, 0);

    for (guint i = 0; i < pieces->len; i++) {
        KvmGmemPiece *p = &g_array_index(pieces, KvmGmemPiece, i);
        unsigned long bit = p->offset / bs, first, last;
        const unsigned long end = (p->offset + p->size) / bs;

        while (kvm_gmem_next_run(p->rb->attributes->bitmap, &bit, end,
                                 to_private, &first, &last)) {
            KvmGmemRun run = {
                .piece = i,
                .offset = first * bs,
                .size = (last - first) * bs,
            };

            g_array_append_val(runs, run);
        }
    }
}

/* The runs of the piece @runs[@i] is in, from there: how many. */
static guint gmem_piece_runs(GArray *runs, guint i)
{
    guint n = 1;

    while (i + n < runs->len &&
           g_array_index(runs, KvmGmemRun, i + n).piece ==
           g_array_index(runs, KvmGmemRun, i).piece) {
        n++;
    }
    return n;
}

/* Free the stale side of what @n runs of @p changed, and count them. */
static void gmem_runs_done(const KvmGmemPiece *p, KvmGmemRun *runs, guint n,
                           bool to_private, KvmGmemConvertMode mode)
{
    KvmGmemBlockStats *st = &gmem_block(p->rb)->stats;
    uint64_t end = runs[n - 1].offset + runs[n - 1].size;
    bool all = true, any = false;

    for (guint i = 0; i < n; i++) {
        KvmGmemRun *run = &runs[i];

        all &= run->done;
        any |= run->done;
        if (!run->done) {
            if (!to_private && kvm_gmem_shared_side_huge(p->rb)) {
                /* Private still: what kvm_gmem_populate_huge() allocated. */
                kvm_gmem_discard_huge(p->rb, run->offset, run->size, true);
            }
            continue;
        }
        if (to_private) {
            st->bytes_to_private += run->size;
        } else {
            st->bytes_to_shared += run->size;
        }
    }
    /* A request counts once per piece it converted part of. */
    st->conversions_to_private += to_private && any;
    st->conversions_to_shared += !to_private && any;
    if (mode == GMEM_CONVERT_LAUNCH) {
        return;     /* the shared copy is the launch's source */
    }
    /*
     * The stale side: the shared copy, or the guest_memfd's. Between the
     * runs the pages were in the target state already, so their copy on
     * that side is stale too: one discard over the span, unless discards
     * are pending, which may be of those pages (a queued one is done
     * before its range changes, and the worker may be freeing one now).
     */
    if (all && !kvm_gmem_discard_backlog()) {
        kvm_gmem_discard(p->rb, runs[0].offset, end - runs[0].offset,
                         !to_private, false);
        return;
    }
    for (guint i = 0; i < n; i++) {
        if (runs[i].done) {
            kvm_gmem_discard(p->rb, runs[i].offset, runs[i].size,
                             !to_private, false);
        }
    }
}

/*
 * Convert the @runs of @pieces, validated and fenced: every run changes,
 * or, if one cannot, the runs changed before it change back. Stale copies
 * are freed only once every run has changed, so that undoing loses no
 * data.
 */
static KvmGmemReject gmem_convert_pieces(GArray *pieces, GArray *runs,
                                         bool to_private,
                                         KvmGmemConvertMode mode)
{
    KvmGmemReject r = KVM_GMEM_OK;
    guint i, n;

    for (i = 0; i < runs->len; i++) {
        KvmGmemRun *run = &g_array_index(runs, KvmGmemRun, i);
        KvmGmemPiece *p = &g_array_index(pieces, KvmGmemPiece, run->piece);

        if (!kvm_gmem_flush_overlapping(p->rb, run->offset, run->size) &&
            mode != GMEM_CONVERT_RESET) {
            return KVM_GMEM_REJECT_DISCARD;     /* nothing changed yet */
        }
    }
    for (i = 0; i < runs->len && !r; i += n) {
        KvmGmemRun *run = &g_array_index(runs, KvmGmemRun, i);

        n = gmem_piece_runs(runs, i);
        r = gmem_runs_change(&g_array_index(pieces, KvmGmemPiece, run->piece),
                             run, n, to_private);
    }
    for (i = runs->len; r && i--;) {
        KvmGmemRun *run = &g_array_index(runs, KvmGmemRun, i);
        KvmGmemRun back = { run->piece, run->offset, run->size, false };

        if (run->done) {
            gmem_runs_change(&g_array_index(pieces, KvmGmemPiece, run->piece),
                             &back, 1, !to_private);
            run->done = !back.done;
            gmem.stats.rollback_failures += run->done;
        }
    }
    for (i = 0; i < runs->len; i += n) {
        KvmGmemRun *run = &g_array_index(runs, KvmGmemRun, i);

        n = gmem_piece_runs(runs, i);
        gmem_runs_done(&g_array_index(pieces, KvmGmemPiece, run->piece), run,
                       n, to_private, mode);
    }
    return r;
}

/*
 * Fence the @runs of @pieces for @owner, and only those: the pages of a
 * request already in the target state do not change, and host I/O may go
 * on using them (issue 24, defect 7). Under gmem.lease_lock.
 */
static void gmem_fence_add(const void *owner, GArray *pieces, GArray *runs)
{
    for (guint i = 0; i < runs->len; i++) {
        KvmGmemRun *run = &g_array_index(runs, KvmGmemRun, i);
        KvmGmemFenced f = {
            owner, g_array_index(pieces, KvmGmemPiece, run->piece).rb,
            run->offset, run->size,
        };

        g_array_append_val(gmem.fences, f);
    }
}

/* Lift @owner's fences. Under gmem.lease_lock. */
static void gmem_fence_drop(const void *owner)
{
    for (guint i = 0; i < gmem.fences->len; i++) {
        if (g_array_index(gmem.fences, KvmGmemFenced, i).owner == owner) {
            g_array_remove_index_fast(gmem.fences, i--);
        }
    }
}

/* Host I/O holds a lease on a range @owner fenced. */
static bool gmem_fence_leased(const void *owner)
{
    for (guint i = 0; i < gmem.fences->len; i++) {
        KvmGmemFenced *f = &g_array_index(gmem.fences, KvmGmemFenced, i);

        if (f->owner == owner &&
            kvm_gmem_leases_overlap(&gmem.leases, f->rb, f->offset,
                                    f->size)) {
            return true;
        }
    }
    return false;
}

/*
 * Before the @runs of @pieces change state: fence them against new leases
 * for @owner. If they go private and host I/O holds leases on them, the
 * request waits for those to end, until *@deadline (ms, set at its first
 * wait, lease_timeout_ms on): *@wait is set, and the fence stays up for
 * the wait, which gmem_lease_wait() does without gmem.lock. Otherwise the
 * fence stays up until gmem_unfence(), or, with "leased", is lifted.
 */
static KvmGmemReject gmem_fence(const void *owner, GArray *pieces,
                                GArray *runs, bool to_private,
                                int64_t *deadline, bool *wait)
{
    int64_t now;

    *wait = false;
    QEMU_LOCK_GUARD(&gmem.lease_lock);
    gmem_fence_drop(owner);
    gmem_fence_add(owner, pieces, runs);
    if (!to_private || !gmem_fence_leased(owner)) {
        return KVM_GMEM_OK;
    }
    now = qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
    if (*deadline < 0) {
        *deadline = now + kvm_gmem_config.lease_timeout_ms;
    }
    if (now >= *deadline) {
        gmem_fence_drop(owner);
        return KVM_GMEM_REJECT_LEASED;
    }
    *wait = true;
    return KVM_GMEM_OK;
}

/*
 * Wait until the leases on @owner's fences end, or @deadline: with
 * gmem.lock released, so that a memory commit, a query or reset does not
 * wait as long, and neither does the I/O that would end the leases if it
 * needs one of those (issue 24, defect 2). The caller looks at the state
 * again.
 */
static void gmem_lease_wait(const void *owner, int64_t deadline)
{
    qemu_mutex_unlock(&gmem.lock);
    gmem_unref_later_drop();
    WITH_QEMU_LOCK_GUARD(&gmem.lease_lock) {
        while (gmem_fence_leased(owner)) {
            int64_t left = deadline - qemu_clock_get_ms(QEMU_CLOCK_REALTIME);

            if (left <= 0) {
                break;
            }
            /* The wait takes an int: a long one waits in several parts. */
            qemu_cond_timedwait(&gmem.lease_cond, &gmem.lease_lock,
                                MIN(left, INT_MAX));
        }
    }
    qemu_mutex_lock(&gmem.lock);
}

static void gmem_unfence(const void *owner)
{
    QEMU_LOCK_GUARD(&gmem.lease_lock);
    gmem_fence_drop(owner);
}

/*
 * How much of [offset, offset + size) of @rb host I/O may map: up to the
 * first page that is fenced or private. Called under gmem.lease_lock, so
 * the bits it reads do not change under it.
 */
static uint64_t gmem_leasable(RAMBlock *rb, uint64_t offset, uint64_t size)
{
    const uint64_t bs = qemu_real_host_page_size();
    RamBlockAttributes *attr = rb->attributes;
    uint64_t end = offset + size;
    unsigned long first = offset / bs, last, bit;

    for (guint i = 0; i < gmem.fences->len; i++) {
        KvmGmemFenced *f = &g_array_index(gmem.fences, KvmGmemFenced, i);

        if (f->rb == rb && ranges_overlap(f->offset, f->size, offset,
                                          end - offset)) {
            end = MAX(f->offset, offset);
        }
    }
    last = MIN(DIV_ROUND_UP(end, bs), attr->bitmap_size);
    bit = find_next_zero_bit(attr->bitmap, last, first);
    if (bit < last) {
        end = MIN(end, MAX((uint64_t)bit * bs, offset));
    }
    return end - offset;
}

uint64_t kvm_gmem_lease_take(RAMBlock *rb, uint64_t offset, uint64_t size)
{
    uint64_t granted;

    if (!rb->attributes || kvm_gmem_legacy()) {
        return size;    /* no private side, or upstream's path: no leases */
    }
    QEMU_LOCK_GUARD(&gmem.lease_lock);
    granted = gmem_leasable(rb, offset, size);
    if (granted) {
        kvm_gmem_leases_take(&gmem.leases, rb, offset, granted);
    }
    trace_kvm_gmem_lease_take(qemu_ram_get_idstr(rb), offset, size, granted);
    return granted;
}

void kvm_gmem_lease_drop(RAMBlock *rb, uint64_t offset)
{
    if (!rb->attributes || kvm_gmem_legacy()) {
        return;
    }
    QEMU_LOCK_GUARD(&gmem.lease_lock);
    if (kvm_gmem_leases_drop(&gmem.leases, rb, offset)) {
        trace_kvm_gmem_lease_drop(qemu_ram_get_idstr(rb), offset);
        qemu_cond_broadcast(&gmem.lease_cond);
    }
}

/*
 * QEMU's own access to @len bytes at @offset of @rb: how many from
 * @offset it may make, *@shared true, under a lease it must drop; or how
 * many it must not touch, *@shared false: a run of private pages, or one
 * page being converted. Never waits; taken inside the caller's RCU read
 * section, like kvm_gmem_lease_take().
 */
static uint64_t gmem_host_run(RAMBlock *rb, uint64_t offset, uint64_t len,
                              bool *shared)
{
    const uint64_t bs = qemu_real_host_page_size();
    RamBlockAttributes *attr = rb->attributes;
    uint64_t end = offset + len;
    unsigned long first = offset / bs, last, bit;

    QEMU_LOCK_GUARD(&gmem.lease_lock);
    *shared = true;
    len = gmem_leasable(rb, offset, len);
    if (len) {
        kvm_gmem_leases_take(&gmem.leases, rb, offset, len);
        return len;
    }
    *shared = false;
    last = MIN(DIV_ROUND_UP(end, bs), attr->bitmap_size);
    if (first < last && !test_bit(first, attr->bitmap)) {
        bit = find_next_bit(attr->bitmap, last, first);
        end = MIN(end, (uint64_t)bit * bs);
    } else {
        end = MIN(end, (uint64_t)(first + 1) * bs);   /* fenced */
    }
    return end - offset;
}

/* Copy @len bytes from @src to @dst, the guest's side being @rb's @offset. */
static void gmem_host_access(RAMBlock *rb, uint64_t offset, uint8_t *dst,
                             const uint8_t *src, uint64_t len, bool is_write)
{
    uint64_t n;
    bool shared;

    if (kvm_gmem_legacy()) {
        memmove(dst, src, len);     /* upstream's path: no leases */
        return;
    }
    for (; len; len -= n, offset += n, dst += n, src += n) {
        n = gmem_host_run(rb, offset, len, &shared);
        if (shared) {
            memmove(dst, src, n);
            kvm_gmem_lease_drop(rb, offset);
            continue;
        }
        trace_kvm_gmem_host_access_private(qemu_ram_get_idstr(rb), offset, n,
                                           is_write);
        if (!is_write) {
            memset(dst, 0, n);
        }
    }
}

void kvm_gmem_host_read(RAMBlock *rb, uint64_t offset, void *buf,
                        const void *host, uint64_t len)
{
    gmem_host_access(rb, offset, buf, host, len, false);
}

void kvm_gmem_host_write(RAMBlock *rb, uint64_t offset, void *host,
                         const void *buf, uint64_t len)
{
    gmem_host_access(rb, offset, host, buf, len, true);
}

/*
 * The pieces go; their region references once gmem.lock is released
 * (gmem_unref_later_drop()).
 */
static void gmem_unref_pieces(GArray *pieces)
{
    for (guint i = 0; i < pieces->len; i++) {
        gmem_unref_later_add(g_array_index(pieces, KvmGmemPiece, i).mr);
    }
    g_array_set_size(pieces, 0);
}

/* The async worker is freeing part of @pieces. */
static bool gmem_pieces_in_flight(GArray *pieces)
{
    for (guint i = 0; i < pieces->len; i++) {
        KvmGmemPiece *p = &g_array_index(pieces, KvmGmemPiece, i);

        if (kvm_gmem_discard_in_flight(p->rb, p->offset, p->size)) {
            return true;
        }
    }
    return false;
}

static KvmGmemReject gmem_convert_locked(uint64_t gpa, uint64_t size,
                                         bool to_private,
                                         KvmGmemConvertMode mode)
{
    GArray *pieces = gmem.pieces;
    int64_t deadline = -1;      /* of the lease wait, once there is one */
    bool wait;
    KvmGmemReject r;

    /*
     * Two waits release the lock: for a discard the async worker is doing
     * without gmem.lock in the range, and for host I/O leases on a range
     * going private. Nothing of this request is kept meanwhile but its
     * fence (the pieces array is shared, another request may run), and
     * everything is looked at again after. From there on the lock is held
     * to the end: the worker takes no discard without it.
     */
    for (;;) {
        r = kvm_gmem_check_range(gpa, size, qemu_real_host_page_size());
        /* Reset goes on: the runs stay unsettled, retried later. */
        if (!r && gmem.unsettled->len && !gmem_settle(gpa, size) &&
            mode != GMEM_CONVERT_RESET) {
            r = KVM_GMEM_REJECT_KVM;
        }
        if (!r) {
            r = gmem_collect(gpa, size, to_private, pieces);
        }
        if (!r && gmem_pieces_in_flight(pieces)) {
            gmem_unref_pieces(pieces);
            kvm_gmem_discard_wait_for_worker();
            continue;
        }
        if (!r) {
            gmem_collect_runs(pieces, to_private, gmem.runs);
            r = gmem_fence(&deadline, pieces, gmem.runs, to_private,
                           &deadline, &wait);
        }
        if (r || !wait) {
            break;
        }
        gmem_unref_pieces(pieces);
        gmem_lease_wait(&deadline, deadline);
    }
    if (!r) {
        r = gmem_convert_pieces(pieces, gmem.runs, to_private, mode);
    }
    gmem_unfence(&deadline);
    if (deadline >= 0) {
        WITH_QEMU_LOCK_GUARD(&gmem.lease_lock) {
            gmem.lease_waits++;
        }
        trace_kvm_gmem_lease_wait(kvm_gmem_reject_name(r),
                                  qemu_clock_get_ms(QEMU_CLOCK_REALTIME) -
                                  deadline + kvm_gmem_config.lease_timeout_ms);
    }
    gmem_unref_pieces(pieces);
    return r;
}

/* Count a request from a guest or the operator, and how it ended. */
static void gmem_account_locked(KvmGmemReject r, int64_t busy_ns)
{
    gmem.stats.requests++;
    gmem.stats.failures[r]++;
    gmem.stats.busy_ns += busy_ns;
}

KvmGmemReject kvm_gmem_convert_request(uint64_t gpa, uint64_t size,
                                       bool to_private, const char *source)
{
    GMEM_UNREF_AFTER_UNLOCK();
    KvmGmemReject r;

    WITH_QEMU_LOCK_GUARD(&gmem.lock) {
        int64_t t0 = get_clock();

        r = gmem_convert_locked(gpa, size, to_private, GMEM_CONVERT_REQUEST);
        gmem_account_locked(r, get_clock() - t0);
    }
    trace_kvm_gmem_convert(source, gpa, size,
                           to_private ? "private" : "shared",
                           kvm_gmem_reject_name(r));
    return r;
}

int kvm_gmem_launch_private(uint64_t gpa, uint64_t size, bool keep_shared,
                            Error **errp)
{
    GMEM_UNREF_AFTER_UNLOCK();
    KvmGmemReject r;

    WITH_QEMU_LOCK_GUARD(&gmem.lock) {
        r = gmem_convert_locked(gpa, size, true, keep_shared ?
                                GMEM_CONVERT_LAUNCH : GMEM_CONVERT_REQUEST);
    }
    trace_kvm_gmem_convert("launch", gpa, size, "private",
                           kvm_gmem_reject_name(r));
    if (r) {
        error_setg(errp, "cannot make launch memory 0x%" PRIx64 " +0x%" PRIx64
                   " private: %s", gpa, size, kvm_gmem_reject_name(r));
        return -1;
    }
    return 0;
}

int kvm_gmem_launch_settle(uint64_t gpa, uint64_t size, Error **errp)
{
    GMEM_UNREF_AFTER_UNLOCK();
    GArray *pieces = gmem.pieces;
    bool settled = true;

    QEMU_LOCK_GUARD(&gmem.lock);
    for (;;) {
        /* Else the launch command refuses the range; nothing to settle. */
        if (kvm_gmem_check_range(gpa, size, qemu_real_host_page_size()) ||
            gmem_collect(gpa, size, true, pieces)) {
            gmem_unref_pieces(pieces);
            return 0;
        }
        if (!gmem_pieces_in_flight(pieces)) {
            break;
        }
        gmem_unref_pieces(pieces);
        kvm_gmem_discard_wait_for_worker();
    }
    for (guint i = 0; i < pieces->len; i++) {
        KvmGmemPiece *p = &g_array_index(pieces, KvmGmemPiece, i);

        settled &= kvm_gmem_flush_overlapping(p->rb, p->offset, p->size);
    }
    gmem_unref_pieces(pieces);
    if (!settled) {
        error_setg(errp, "launch memory 0x%" PRIx64 " +0x%" PRIx64 ": a "
                   "pending discard over it cannot be done", gpa, size);
        return -1;
    }
    return 0;
}

/*
 * The launch wrote sources into the shared side (the CPUID page, a kernel
 * hashes page), and the first write into a transparent huge page extent
 * of it faulted in the whole extent (QEMU asks for THP on guest RAM). The
 * rest of that extent, private and stale, then stays resident, and
 * khugepaged collapses an extent with any page present into a huge page
 * again (max_ptes_none, 511 by default): the freed sources come back,
 * zeroed, seconds later. Of the extents that overlap the sources
 * [@offset, @offset + @size) of @rb, free the stale rest of every one
 * that is private as a whole, so that none of its pages is left for
 * khugepaged to collapse. A hugetlb shared side is freed in whole huge
 * pages already (kvm_gmem_discard_huge()).
 */
static void gmem_launch_discard_thp_extents(RAMBlock *rb, uint64_t offset,
                                            uint64_t size)
{
    const uint64_t bs = qemu_real_host_page_size();
    /* RAM is aligned to it so that THP can back it. */
    const unsigned long group = QEMU_VMALLOC_ALIGN / bs;
    const unsigned long start = offset / bs, end = (offset + size) / bs;
    RamBlockAttributes *attr = rb->attributes;
    unsigned long bit = start, first, last;

    if (group <= 1 || kvm_gmem_shared_side_huge(rb)) {
        return;
    }
    while (kvm_gmem_next_private_groups(attr->bitmap, attr->bitmap_size,
                                        &bit, end, group, &first, &last)) {
        /* The sources themselves were freed by the caller. */
        if (first < start) {
            kvm_gmem_discard(rb, first * bs, (MIN(last, start) - first) * bs,
                             false, false);
        }
        if (last > end) {
            kvm_gmem_discard(rb, MAX(first, end) * bs,
                             (last - MAX(first, end)) * bs, false, false);
        }
    }
}

void kvm_gmem_launch_discard_shared(uint64_t gpa, uint64_t size)
{
    g_autoptr(GArray) pieces = g_array_new(false, false,
                                           sizeof(KvmGmemPiece));
    const uint64_t bs = qemu_real_host_page_size();
    bool whole;

    GMEM_UNREF_AFTER_UNLOCK();
    QEMU_LOCK_GUARD(&gmem.lock);
    /* Else the launch command already refused this range: free nothing. */
    whole = !kvm_gmem_check_range(gpa, size, bs) &&
            !gmem_collect(gpa, size, true, pieces);
    for (guint i = 0; i < pieces->len; i++) {
        KvmGmemPiece *p = &g_array_index(pieces, KvmGmemPiece, i);
        unsigned long bit = p->offset / bs, first, last;
        const unsigned long end = (p->offset + p->size) / bs;

        /* Runs not shared, i.e. private: their shared copy is stale. */
        while (whole && kvm_gmem_next_run(p->rb->attributes->bitmap, &bit,
                                          end, false, &first, &last)) {
            kvm_gmem_discard(p->rb, first * bs, (last - first) * bs, false,
                             false);
        }
        if (whole) {
            gmem_launch_discard_thp_extents(p->rb, p->offset, p->size);
        }
    }
    gmem_unref_pieces(pieces);
}

int64_t kvm_gmem_map_gpa_range(CPUState *cpu, uint64_t gpa, uint64_t npages,
                               uint64_t attrs)
{
    KvmGmemRange range;
    KvmGmemReject r;

    r = kvm_gmem_decode_map_gpa_range(gpa, npages, attrs, &range);
    if (r) {
        WITH_QEMU_LOCK_GUARD(&gmem.lock) {
            gmem_account_locked(r, 0);
        }
        trace_kvm_gmem_hypercall_reject(gpa, npages, attrs,
                                        kvm_gmem_reject_name(r));
        return kvm_gmem_reject_to_guest(r);
    }
    r = kvm_gmem_convert_request(range.gpa, range.size, range.to_private,
                                 "hypercall");
    if (!r && kvm_gmem_config.prefault && kvm_pre_fault_memory_supported) {
        /* Opportunistic: a failure only means a later fault maps it. */
        int ret = kvm_gmem_kernel_pre_fault(cpu, range.gpa, range.size);

        if (ret) {
            trace_kvm_gmem_kernel_failed("pre-fault", range.gpa, range.size,
                                         ret);
        }
    }
    return kvm_gmem_reject_to_guest(r);
}

int kvm_gmem_memory_fault(uint64_t gpa, uint64_t size, bool to_private)
{
    /* A vCPU thread runs one vCPU: its fault, refused, comes back to it. */
    static __thread KvmGmemFaultRetry retry;
    uint32_t delay_ms;
    KvmGmemReject r;
    int64_t now;

    if (kvm_gmem_legacy()) {
        return kvm_convert_memory(gpa, size, to_private);
    }
    r = kvm_gmem_convert_request(gpa, size, to_private, "memory-fault");
    now = qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
    /* Nothing to answer the guest: enter it again, or stop the VM. */
    if (kvm_gmem_fault_retry(&retry, gpa, size, to_private, r, now,
                             kvm_gmem_config.fault_timeout_ms, &delay_ms)) {
        if (r) {
            trace_kvm_gmem_fault_retry(gpa, size, kvm_gmem_reject_name(r),
                                       retry.refusals, delay_ms);
            /* Holding no lock: a pause waits for this at most. */
            g_usleep(delay_ms * 1000);
        }
        return 0;
    }
    if (kvm_gmem_reject_to_guest(r) == kvm_gmem_reject_to_guest(
            KVM_GMEM_REJECT_LEASED)) {
        error_report("guest_memfd: memory fault at 0x%" PRIx64 " +0x%"
                     PRIx64 " cannot be made %s: %s, still after %u "
                     "attempts in %" PRId64 " ms (guest-memfd-fault-timeout);"
                     " stopping the VM", gpa, size,
                     to_private ? "private" : "shared",
                     kvm_gmem_reject_name(r), retry.refusals,
                     now - retry.first_ms);
    } else {
        error_report("guest_memfd: memory fault at 0x%" PRIx64 " +0x%"
                     PRIx64 " cannot be made %s: %s; stopping the VM", gpa,
                     size, to_private ? "private" : "shared",
                     kvm_gmem_reject_name(r));
    }
    retry.refusals = 0;
    return -EFAULT;
}
