/*
 * KVM guest_memfd layer: the conversion manager.
 *
 * The only code that changes whether guest memory is private or shared.
 * Inputs: memory-fault exits, KVM_HC_MAP_GPA_RANGE hypercalls (SEV-SNP
 * page-state changes and TDX MapGPA arrive this way), the initial state
 * of new memslots and SEV-SNP launch, guest-memfd-convert (QMP), and
 * system reset. docs/devel/kvm-gmem.rst has the design.
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
 *    before any state changes, so a rejected request changes nothing;
 *  - RamDiscardManager listeners (VFIO) drop a range before it becomes
 *    private and get it back only once it is shared again.
 *
 * Under gmem.lease_lock (taken after gmem.lock, never before):
 *  - no range goes private while host I/O holds a lease on it: a
 *    conversion fences its ranges, waits (bounded) for the leases on them
 *    to end and fails with "leased" if they do not; new leases on a fenced
 *    range wait until the conversion is done.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <linux/kvm.h>
#include "qapi/error.h"
#include "qapi/qapi-commands-guest-memfd.h"
#include "qapi/visitor.h"
#include "monitor/hmp.h"
#include "monitor/monitor.h"
#include "qemu/error-report.h"
#include "qemu/bitops.h"
#include "qemu/thread.h"
#include "qemu/timer.h"
#include "qemu/lockable.h"
#include "qemu/rcu.h"
#include "qemu/range.h"
#include "qom/object.h"
#include "exec/ramlist.h"
#include "exec/target_page.h"
#include "migration/blocker.h"
#include "system/address-spaces.h"
#include "system/kvm.h"
#include "system/kvm-gmem.h"
#include "system/ramblock.h"
#include "system/reset.h"
#include "gmem-discard-queue.h"
#include "gmem-lease.h"
#include "gmem-request.h"
#include "gmem-runs.h"
#include "trace.h"

/* One guest_memfd-backed RAMBlock and what happened to it. */
typedef struct KvmGmemBlock {
    RAMBlock *rb;
    uint64_t conversions_to_private;
    uint64_t conversions_to_shared;
    uint64_t bytes_to_private;
    uint64_t bytes_to_shared;
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

static struct {
    QemuMutex lock;
    bool initially_shared;
    GuestMemfdConversion conversion;
    GuestMemfdDiscard discard;
    bool prefault;              /* map converted ranges before the guest */
    uint64_t requests;
    uint64_t busy_ns;           /* time spent converting, all requests */
    uint64_t kernel_ns;         /* of which in attribute and discard calls */
    uint64_t failures[KVM_GMEM_REJECT__MAX];
    QLIST_HEAD(, KvmGmemBlock) blocks;     /* blocks with a private side */
    bool hooks_registered;      /* reset handler, RAMBlock notifier */

    /* discard=async: stale ranges not freed yet. */
    KvmGmemDiscardQueue pending;
    QemuCond pending_cond;      /* pending became non-empty */
    bool worker_started;

    /* Host I/O on shared memory; see the lease invariant above. */
    QemuMutex lease_lock;
    QemuCond lease_cond;        /* a lease ended or a fence was lifted */
    KvmGmemLeases leases;
    GArray *fence;              /* KvmGmemPiece going private, or NULL */
    uint32_t lease_timeout_ms;
    uint64_t lease_waits;       /* conversions that waited for leases */
} gmem = {
    .lease_timeout_ms = 100,
};

static void __attribute__((constructor)) kvm_gmem_init_lock(void)
{
    qemu_mutex_init(&gmem.lock);
    qemu_cond_init(&gmem.pending_cond);
    kvm_gmem_discard_queue_init(&gmem.pending);
    qemu_mutex_init(&gmem.lease_lock);
    qemu_cond_init(&gmem.lease_cond);
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

bool kvm_gmem_legacy(void)
{
    return gmem.conversion == GUEST_MEMFD_CONVERSION_LEGACY;
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

/* Make KVM's attributes of a memslot follow the bitmap, run by run. */
static int gmem_apply_bitmap(const KvmGmemSlot *slot)
{
    RamBlockAttributes *attr = slot->rb->attributes;
    const uint64_t bs = qemu_real_host_page_size();
    unsigned long bit = slot->offset / bs;
    const unsigned long end = (slot->offset + slot->size) / bs;

    while (bit < end) {
        bool shared;
        unsigned long next = kvm_gmem_state_run_end(attr->bitmap, bit, end,
                                                    &shared);
        uint64_t gpa = slot->gpa + bit * bs - slot->offset;
        uint64_t size = (next - bit) * bs;
        int ret = shared ? kvm_set_memory_attributes_shared(gpa, size)
                         : kvm_set_memory_attributes_private(gpa, size);

        if (ret) {
            return ret;
        }
        bit = next;
    }
    return 0;
}

static KvmGmemReject gmem_convert_locked(uint64_t gpa, uint64_t size,
                                         bool to_private, bool keep_stale);
static void gmem_flush_overlapping(RAMBlock *rb, uint64_t offset,
                                   uint64_t size);
static void gmem_discard_now(RAMBlock *rb, uint64_t offset, uint64_t size,
                             bool guest_memfd);

static void gmem_drop_discard(KvmGmemDiscard *d, void *opaque)
{
    /* The block is going away: nothing left to free. */
}

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
    KvmGmemBlock *b;

    if (!gmem.initially_shared) {
        return;
    }
    /* What is mapped now, not what was mapped once. */
    WITH_RCU_READ_LOCK_GUARD() {
        flatview_for_each_range(address_space_to_flatview(
                                    &address_space_memory),
                                gmem_mapped_range, mapped);
    }
    QEMU_LOCK_GUARD(&gmem.lock);
    for (guint i = 0; i < mapped->len; i++) {
        KvmGmemSlot *m = &g_array_index(mapped, KvmGmemSlot, i);
        KvmGmemReject r = gmem_convert_locked(m->gpa, m->size, false, false);

        trace_kvm_gmem_reset(m->gpa, m->size, kvm_gmem_reject_name(r));
    }
    /*
     * Every block, mapped or not, starts the next boot shared, and
     * whatever the discard policy without this boot's private data: the
     * next boot may make a range private again and must find zeros.
     */
    QLIST_FOREACH(b, &gmem.blocks, next) {
        uint64_t size = gmem_block_bytes(b->rb);

        gmem_flush_overlapping(b->rb, 0, size);
        gmem_discard_now(b->rb, 0, size, true);
        ram_block_attributes_state_change(b->rb->attributes, 0, size, false);
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
            kvm_gmem_discard_queue_take_overlapping(&gmem.pending, b->rb, 0,
                                                    UINT64_MAX,
                                                    gmem_drop_discard, NULL);
            QLIST_REMOVE(b, next);
            g_free(b);
        }
    }
}

static RAMBlockNotifier gmem_ram_notifier = {
    .ram_block_removed = gmem_ram_block_removed,
};

#define GMEM_IN_PLACE_FLAGS \
    (GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)

/* Asked of the VM: which flags a guest_memfd may have depends on it. */
bool kvm_gmem_in_place_possible(KVMState *s)
{
    int flags = kvm_vm_check_extension(s, KVM_CAP_GUEST_MEMFD_FLAGS);

    return flags > 0 && (flags & GMEM_IN_PLACE_FLAGS) == GMEM_IN_PLACE_FLAGS;
}

int kvm_gmem_create_in_place(uint64_t size, Error **errp)
{
    int flags;

    if (!kvm_enabled()) {
        error_setg(errp, "in-place guest_memfd needs -accel kvm");
        return -1;
    }
    if (!kvm_check_extension(kvm_state, KVM_CAP_GUEST_MEMFD)) {
        error_setg(errp, "in-place guest_memfd: this kernel has no "
                   "guest_memfd (KVM_CAP_GUEST_MEMFD)");
        return -1;
    }
    if (!kvm_gmem_in_place_possible(kvm_state)) {
        flags = kvm_vm_check_extension(kvm_state, KVM_CAP_GUEST_MEMFD_FLAGS);
        error_setg(errp, "in-place guest_memfd needs GUEST_MEMFD_FLAG_MMAP "
                   "and GUEST_MEMFD_FLAG_INIT_SHARED; this kernel offers "
                   "0x%x for this VM type (Linux 6.18 or later, and a VM "
                   "without private memory)", flags < 0 ? 0 : flags);
        return -1;
    }
    return kvm_create_guest_memfd(size, GMEM_IN_PLACE_FLAGS, errp);
}

void kvm_gmem_attach_in_place(RAMBlock *rb, int fd)
{
    /*
     * No RamBlockAttributes: the block is shared for good, there is no
     * private side to track. memory_region_has_guest_memfd() is now true,
     * so kvm_set_phys_mem() registers KVM_MEM_GUEST_MEMFD slots on @fd.
     */
    rb->guest_memfd = fd;
}

void kvm_gmem_detach_in_place(RAMBlock *rb)
{
    if (rb) {
        rb->guest_memfd = -1;
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
    int ret = 0;

    if (!slot.rb->attributes) {
        return;     /* in place, no private side: nothing to record */
    }
    QEMU_LOCK_GUARD(&gmem.lock);
    if (!gmem.hooks_registered) {
        qemu_register_reset(gmem_reset, NULL);
        ram_block_notifier_add(&gmem_ram_notifier);
        gmem.hooks_registered = true;
    }
    if (!gmem_block_find(slot.rb)) {
        /*
         * First sight of the block: its initial state, for all of it.
         * RamBlockAttributes starts all private (SEV-SNP, TDX).
         */
        gmem_block(slot.rb);
        if (gmem.initially_shared) {
            ret = ram_block_attributes_state_change(slot.rb->attributes, 0,
                                                    gmem_block_bytes(slot.rb),
                                                    false);
        }
    }
    /*
     * KVM's attributes of the slot's GPAs follow the record, however the
     * block is laid out now (a slot can come back elsewhere, or in part).
     */
    trace_kvm_gmem_slot_added(start, size, slot.offset);
    if (!ret) {
        ret = gmem_apply_bitmap(&slot);
    }
    if (ret) {
        error_report("guest_memfd slot at 0x%" HWADDR_PRIx " +0x%" PRIx64
                     ": cannot set its attributes: %s", start, size,
                     strerror(-ret));
        exit(1);
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
        MemoryRegionSection s = memory_region_find(get_system_memory(), addr,
                                                   left);
        uint64_t start, len;

        if (!s.mr) {
            /* Nothing at all in what is left. */
            return to_private ? KVM_GMEM_REJECT_NOT_GMEM : KVM_GMEM_OK;
        }
        start = s.offset_within_address_space;
        len = int128_get64(s.size);
        if (start > addr && to_private) {
            memory_region_unref(s.mr);
            return KVM_GMEM_REJECT_NOT_GMEM;       /* a hole first */
        }
        if (memory_region_has_guest_memfd(s.mr) &&
            !s.mr->ram_block->attributes) {
            /* In place: no private side, and shared for good. */
            memory_region_unref(s.mr);
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

            memory_region_unref(s.mr);
            if (to_private || !mmio) {
                return KVM_GMEM_REJECT_NOT_GMEM;
            }
        }
        left -= start + len - addr;
        addr = start + len;
    }
    return KVM_GMEM_OK;
}

static void gmem_discard_now(RAMBlock *rb, uint64_t offset, uint64_t size,
                             bool guest_memfd)
{
    trace_kvm_gmem_discard(qemu_ram_get_idstr(rb), offset, size,
                           guest_memfd ? "guest_memfd" : "shared");
    if (guest_memfd) {
        ram_block_discard_guest_memfd_range(rb, offset, size);
    } else if (rb->page_size == qemu_real_host_page_size()) {
        /* Hugetlb backing is preallocated and kept, as upstream does. */
        ram_block_discard_range(rb, offset, size);
    }
}

/*
 * discard=async: frees queued stale ranges off the vCPU threads, oldest
 * first. It holds gmem.lock for one discard at a time, so a conversion
 * never sees a discard half done.
 */
static void *gmem_discard_worker(void *opaque)
{
    QEMU_LOCK_GUARD(&gmem.lock);
    for (;;) {
        KvmGmemDiscard *d;

        while (!(d = kvm_gmem_discard_queue_pop(&gmem.pending))) {
            qemu_cond_wait(&gmem.pending_cond, &gmem.lock);
        }
        gmem_discard_now(d->block, d->offset, d->size, d->guest_memfd);
        g_free(d);
        /* Let waiting conversions in between discards. */
        qemu_mutex_unlock(&gmem.lock);
        qemu_mutex_lock(&gmem.lock);
    }
    return NULL;
}

static void gmem_discard(RAMBlock *rb, uint64_t offset, uint64_t size,
                         bool guest_memfd)
{
    switch (gmem.discard) {
    case GUEST_MEMFD_DISCARD_SYNC:
        gmem_discard_now(rb, offset, size, guest_memfd);
        return;
    case GUEST_MEMFD_DISCARD_NONE:
        return;
    default:
        break;
    }
    if (!gmem.worker_started) {
        QemuThread thread;

        qemu_thread_create(&thread, "gmem-discard", gmem_discard_worker,
                           NULL, QEMU_THREAD_DETACHED);
        gmem.worker_started = true;
    }
    kvm_gmem_discard_queue_push(&gmem.pending, rb, offset, size, guest_memfd);
    qemu_cond_signal(&gmem.pending_cond);
}

static void gmem_flush_one(KvmGmemDiscard *d, void *opaque)
{
    trace_kvm_gmem_discard_flush(qemu_ram_get_idstr(d->block), d->offset,
                                 d->size);
    gmem_discard_now(d->block, d->offset, d->size, d->guest_memfd);
}

/*
 * The ordering rule: before [offset, offset + size) of @rb changes state,
 * every pending discard that overlaps it is done now. A discard queued for
 * an earlier state can then never land after the guest has put data in
 * the range's new state.
 */
static void gmem_flush_overlapping(RAMBlock *rb, uint64_t offset,
                                   uint64_t size)
{
    kvm_gmem_discard_queue_take_overlapping(&gmem.pending, rb, offset, size,
                                            gmem_flush_one, NULL);
}

/* Change one run of blocks whose state all differs from the target. */
static KvmGmemReject gmem_convert_run(KvmGmemPiece *p, uint64_t offset,
                                      uint64_t size, bool to_private,
                                      bool keep_stale)
{
    RamBlockAttributes *attr = p->rb->attributes;
    uint64_t gpa = p->gpa + (offset - p->offset);
    int64_t t0;
    int ret;

    trace_kvm_gmem_convert_run(gpa, size, to_private ? "private" : "shared");
    gmem_flush_overlapping(p->rb, offset, size);
    if (to_private) {
        /* Listeners drop the range while QEMU may still map it. */
        ram_block_attributes_state_change(attr, offset, size, true);
    }
    t0 = get_clock();
    ret = to_private ? kvm_set_memory_attributes_private(gpa, size)
                     : kvm_set_memory_attributes_shared(gpa, size);
    if (!ret && !keep_stale) {
        /* The stale side: the shared copy, or the guest_memfd's. */
        gmem_discard(p->rb, offset, size, !to_private);
    }
    gmem.kernel_ns += get_clock() - t0;
    if (ret) {
        if (to_private) {
            /* Still shared: the listeners get the range back. */
            ram_block_attributes_state_change(attr, offset, size, false);
        }
        return KVM_GMEM_REJECT_KVM;
    }
    if (!to_private) {
        ram_block_attributes_state_change(attr, offset, size, false);
    }
    return KVM_GMEM_OK;
}

/*
 * Convert the blocks of @p that are not in the target state yet, one
 * maximal run at a time; returns the bytes converted via @converted.
 */
static KvmGmemReject gmem_convert_piece(KvmGmemPiece *p, bool to_private,
                                        bool keep_stale, uint64_t *converted)
{
    const uint64_t bs = qemu_real_host_page_size();
    unsigned long bit = p->offset / bs, first, last;
    const unsigned long end = (p->offset + p->size) / bs;

    while (kvm_gmem_next_run(p->rb->attributes->bitmap, &bit, end,
                             to_private, &first, &last)) {
        KvmGmemReject r = gmem_convert_run(p, first * bs, (last - first) * bs,
                                           to_private, keep_stale);

        if (r) {
            return r;
        }
        *converted += (last - first) * bs;
    }
    return KVM_GMEM_OK;
}

static bool gmem_pieces_leased(GArray *pieces)
{
    for (guint i = 0; i < pieces->len; i++) {
        KvmGmemPiece *p = &g_array_index(pieces, KvmGmemPiece, i);

        if (kvm_gmem_leases_overlap(&gmem.leases, p->rb, p->offset,
                                    p->size)) {
            return true;
        }
    }
    return false;
}

/*
 * Before @pieces go private: fence them against new leases and wait, at
 * most lease_timeout_ms, for the leases on them to end. On success the
 * fence stays up until gmem_unfence().
 */
static KvmGmemReject gmem_fence(GArray *pieces)
{
    int64_t start = qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
    int64_t waited = -1;

    QEMU_LOCK_GUARD(&gmem.lease_lock);
    gmem.fence = pieces;
    while (gmem_pieces_leased(pieces)) {
        waited = qemu_clock_get_ms(QEMU_CLOCK_REALTIME) - start;
        if (waited >= gmem.lease_timeout_ms) {
            gmem.lease_waits++;
            gmem.fence = NULL;
            qemu_cond_broadcast(&gmem.lease_cond);
            trace_kvm_gmem_lease_wait("leased", waited);
            return KVM_GMEM_REJECT_LEASED;
        }
        /* The wait takes an int: a long timeout waits in several parts. */
        qemu_cond_timedwait(&gmem.lease_cond, &gmem.lease_lock,
                            MIN(gmem.lease_timeout_ms - waited, INT_MAX));
    }
    if (waited >= 0) {
        gmem.lease_waits++;
        trace_kvm_gmem_lease_wait("ok",
                                  qemu_clock_get_ms(QEMU_CLOCK_REALTIME) -
                                  start);
    }
    return KVM_GMEM_OK;
}

static void gmem_unfence(void)
{
    QEMU_LOCK_GUARD(&gmem.lease_lock);
    gmem.fence = NULL;
    qemu_cond_broadcast(&gmem.lease_cond);
}

static bool gmem_fenced(RAMBlock *rb, uint64_t offset, uint64_t size)
{
    if (!gmem.fence) {
        return false;
    }
    for (guint i = 0; i < gmem.fence->len; i++) {
        KvmGmemPiece *p = &g_array_index(gmem.fence, KvmGmemPiece, i);

        if (p->rb == rb && ranges_overlap(p->offset, p->size, offset, size)) {
            return true;
        }
    }
    return false;
}

void kvm_gmem_lease_take(RAMBlock *rb, uint64_t offset, uint64_t size)
{
    if (!rb->attributes || kvm_gmem_legacy()) {
        return;     /* no private side, or upstream's path: no leases */
    }
    QEMU_LOCK_GUARD(&gmem.lease_lock);
    while (gmem_fenced(rb, offset, size)) {
        /* A conversion is changing this range; it does not wait on us. */
        qemu_cond_wait(&gmem.lease_cond, &gmem.lease_lock);
    }
    kvm_gmem_leases_take(&gmem.leases, rb, offset, size);
    trace_kvm_gmem_lease_take(qemu_ram_get_idstr(rb), offset, size);
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

static KvmGmemReject gmem_convert_locked(uint64_t gpa, uint64_t size,
                                         bool to_private, bool keep_stale)
{
    g_autoptr(GArray) pieces = g_array_new(false, false,
                                           sizeof(KvmGmemPiece));
    bool fenced = false;
    KvmGmemReject r;

    r = kvm_gmem_check_range(gpa, size, qemu_real_host_page_size());
    if (!r) {
        r = gmem_collect(gpa, size, to_private, pieces);
    }
    if (!r && to_private) {
        r = gmem_fence(pieces);
        fenced = !r;
    }
    for (guint i = 0; i < pieces->len; i++) {
        KvmGmemPiece *p = &g_array_index(pieces, KvmGmemPiece, i);
        uint64_t converted = 0;

        if (!r) {
            KvmGmemBlock *b = gmem_block(p->rb);

            r = gmem_convert_piece(p, to_private, keep_stale, &converted);
            if (converted) {
                if (to_private) {
                    b->conversions_to_private++;
                    b->bytes_to_private += converted;
                } else {
                    b->conversions_to_shared++;
                    b->bytes_to_shared += converted;
                }
            }
        }
        memory_region_unref(p->mr);
    }
    if (fenced) {
        gmem_unfence();
    }
    return r;
}

/* Count a request from a guest or the operator, and how it ended. */
static void gmem_account_locked(KvmGmemReject r, int64_t busy_ns)
{
    gmem.requests++;
    gmem.failures[r]++;
    gmem.busy_ns += busy_ns;
}

static KvmGmemReject gmem_convert(uint64_t gpa, uint64_t size,
                                  bool to_private, const char *source)
{
    KvmGmemReject r;

    WITH_QEMU_LOCK_GUARD(&gmem.lock) {
        int64_t t0 = get_clock();

        r = gmem_convert_locked(gpa, size, to_private, false);
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
    KvmGmemReject r;

    WITH_QEMU_LOCK_GUARD(&gmem.lock) {
        r = gmem_convert_locked(gpa, size, true, keep_shared);
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

void kvm_gmem_launch_discard_shared(uint64_t gpa, uint64_t size)
{
    g_autoptr(GArray) pieces = g_array_new(false, false,
                                           sizeof(KvmGmemPiece));
    const uint64_t bs = qemu_real_host_page_size();

    bool whole;

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
            gmem_discard(p->rb, first * bs, (last - first) * bs, false);
        }
        memory_region_unref(p->mr);     /* collected pieces hold a ref */
    }
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
    r = gmem_convert(range.gpa, range.size, range.to_private, "hypercall");
    if (!r && gmem.prefault && kvm_pre_fault_memory_supported) {
        struct kvm_pre_fault_memory mem = {
            .gpa = range.gpa,
            .size = range.size,
        };

        /* Opportunistic: a failure only means a later fault maps it. */
        while (mem.size && !kvm_vcpu_ioctl(cpu, KVM_PRE_FAULT_MEMORY, &mem)) {
            /* KVM advances gpa and shrinks size as it goes. */
        }
    }
    return kvm_gmem_reject_to_guest(r);
}

int kvm_gmem_memory_fault(uint64_t gpa, uint64_t size, bool to_private)
{
    KvmGmemReject r;

    if (kvm_gmem_legacy()) {
        return kvm_convert_memory(gpa, size, to_private);
    }
    r = gmem_convert(gpa, size, to_private, "memory-fault");
    if (r) {
        /* KVM would fault again forever; nothing to answer the guest. */
        error_report("guest_memfd: memory fault at 0x%" PRIx64 " +0x%" PRIx64
                     " cannot be made %s: %s", gpa, size,
                     to_private ? "private" : "shared",
                     kvm_gmem_reject_name(r));
        return -EFAULT;
    }
    return 0;
}

void qmp_guest_memfd_convert(uint64_t gpa, uint64_t size, bool private,
                             Error **errp)
{
    KvmGmemReject r;

    if (kvm_gmem_legacy()) {
        error_setg(errp, "guest-memfd-convert needs the conversion manager "
                   "(-accel kvm,guest-memfd-conversion=manager)");
        return;
    }
    r = gmem_convert(gpa, size, private, "qmp");
    if (r) {
        error_setg(errp, "cannot make 0x%" PRIx64 " +0x%" PRIx64 " %s: %s",
                   gpa, size, private ? "private" : "shared",
                   kvm_gmem_reject_name(r));
    }
}

#define GMEM_MAX_LISTED_RANGES 1024

/* The runs of equal state of @attr, at most GMEM_MAX_LISTED_RANGES. */
static void gmem_list_ranges(RamBlockAttributes *attr,
                             GuestMemfdBlockInfo *bi)
{
    const uint64_t bs = qemu_real_host_page_size();
    const unsigned long end = attr->bitmap_size;
    GuestMemfdRangeList **tail = &bi->ranges;
    unsigned long bit = 0, listed = 0;

    bi->has_ranges = true;
    bi->has_ranges_truncated = true;
    while (bit < end) {
        bool shared;
        unsigned long next = kvm_gmem_state_run_end(attr->bitmap, bit, end,
                                                    &shared);
        GuestMemfdRange *r;

        if (listed++ == GMEM_MAX_LISTED_RANGES) {
            bi->ranges_truncated = true;
            return;
        }
        r = g_new(GuestMemfdRange, 1);
        r->offset = (uint64_t)bit * bs;
        r->size = (uint64_t)(next - bit) * bs;
        r->q_private = !shared;
        QAPI_LIST_APPEND(tail, r);
        bit = next;
    }
}

GuestMemfdInfo *qmp_query_guest_memfd(bool has_ranges, bool ranges,
                                      Error **errp)
{
    GuestMemfdInfo *info = g_new0(GuestMemfdInfo, 1);
    GuestMemfdBlockInfoList **tail = &info->blocks;
    const uint64_t bs = qemu_real_host_page_size();
    KvmGmemBlock *b;

    QEMU_LOCK_GUARD(&gmem.lock);
    info->conversion = gmem.conversion;
    info->discard = gmem.discard;
    info->requests = gmem.requests;
    info->busy_ns = gmem.busy_ns;
    info->kernel_ns = gmem.kernel_ns;
    info->rejected = g_new0(GuestMemfdRejects, 1);
    info->rejected->empty = gmem.failures[KVM_GMEM_REJECT_EMPTY];
    info->rejected->unaligned = gmem.failures[KVM_GMEM_REJECT_UNALIGNED];
    info->rejected->overflow = gmem.failures[KVM_GMEM_REJECT_OVERFLOW];
    info->rejected->reserved_bits = gmem.failures[KVM_GMEM_REJECT_RESERVED];
    info->rejected->page_size_hint = gmem.failures[KVM_GMEM_REJECT_HINT];
    info->rejected->not_guest_memfd = gmem.failures[KVM_GMEM_REJECT_NOT_GMEM];
    info->rejected->kvm = gmem.failures[KVM_GMEM_REJECT_KVM];
    info->rejected->leased = gmem.failures[KVM_GMEM_REJECT_LEASED];
    info->discard_backlog = gmem.pending.backlog;
    WITH_QEMU_LOCK_GUARD(&gmem.lease_lock) {
        info->leases = gmem.leases.active;
        info->lease_waits = gmem.lease_waits;
    }

    QLIST_FOREACH(b, &gmem.blocks, next) {
        GuestMemfdBlockInfo *bi = g_new0(GuestMemfdBlockInfo, 1);
        RamBlockAttributes *attr = b->rb->attributes;
        uint64_t shared = bitmap_count_one(attr->bitmap, attr->bitmap_size);

        bi->id = g_strdup(qemu_ram_get_idstr(b->rb));
        bi->size = gmem_block_bytes(b->rb);
        bi->shared = shared * bs;
        bi->q_private = bi->size - bi->shared;
        bi->conversions_to_private = b->conversions_to_private;
        bi->conversions_to_shared = b->conversions_to_shared;
        bi->bytes_to_private = b->bytes_to_private;
        bi->bytes_to_shared = b->bytes_to_shared;
        if (ranges) {
            gmem_list_ranges(attr, bi);
        }
        QAPI_LIST_APPEND(tail, bi);
    }
    return info;
}

void hmp_info_guest_memfd(Monitor *mon, const QDict *qdict)
{
    g_autoptr(GuestMemfdInfo) info = NULL;
    Error *err = NULL;
    GuestMemfdBlockInfoList *l;
    GuestMemfdRejects *r;

    info = qmp_query_guest_memfd(false, false, &err);
    if (hmp_handle_error(mon, err)) {
        return;
    }
    r = info->rejected;
    monitor_printf(mon, "conversion: %s, discard: %s, requests: %" PRIu64
                   " (%" PRIu64 " us converting, %" PRIu64 " us of it in the "
                   "kernel), discard backlog: %" PRIu64 " bytes\n",
                   GuestMemfdConversion_str(info->conversion),
                   GuestMemfdDiscard_str(info->discard), info->requests,
                   info->busy_ns / 1000, info->kernel_ns / 1000,
                   info->discard_backlog);
    monitor_printf(mon, "host I/O leases: %" PRIu64 " held, %" PRIu64
                   " conversions waited for one\n", info->leases,
                   info->lease_waits);
    monitor_printf(mon, "rejected: empty %" PRIu64 ", unaligned %" PRIu64
                   ", overflow %" PRIu64 ", reserved-bits %" PRIu64
                   ", page-size-hint %" PRIu64 ", not-guest-memfd %" PRIu64
                   ", kvm %" PRIu64 ", leased %" PRIu64 "\n", r->empty,
                   r->unaligned, r->overflow, r->reserved_bits,
                   r->page_size_hint, r->not_guest_memfd, r->kvm, r->leased);
    for (l = info->blocks; l; l = l->next) {
        GuestMemfdBlockInfo *b = l->value;

        monitor_printf(mon, "%s: size %" PRIu64 ", private %" PRIu64
                       ", shared %" PRIu64 "; to private %" PRIu64
                       " times (%" PRIu64 " bytes), to shared %" PRIu64
                       " times (%" PRIu64 " bytes)\n", b->id, b->size,
                       b->q_private, b->shared, b->conversions_to_private,
                       b->bytes_to_private, b->conversions_to_shared,
                       b->bytes_to_shared);
    }
}

static bool gmem_get_prefault(Object *obj, Error **errp)
{
    return gmem.prefault;
}

static void gmem_set_prefault(Object *obj, bool value, Error **errp)
{
    gmem.prefault = value;
}

static void gmem_get_lease_timeout(Object *obj, Visitor *v, const char *name,
                                   void *opaque, Error **errp)
{
    visit_type_uint32(v, name, &gmem.lease_timeout_ms, errp);
}

static void gmem_set_lease_timeout(Object *obj, Visitor *v, const char *name,
                                   void *opaque, Error **errp)
{
    uint32_t value;

    if (visit_type_uint32(v, name, &value, errp)) {
        gmem.lease_timeout_ms = value;
    }
}

static int gmem_get_conversion(Object *obj, Error **errp)
{
    return gmem.conversion;
}

static void gmem_set_conversion(Object *obj, int value, Error **errp)
{
    gmem.conversion = value;
}

static int gmem_get_discard(Object *obj, Error **errp)
{
    return gmem.discard;
}

static void gmem_set_discard(Object *obj, int value, Error **errp)
{
    gmem.discard = value;
}

void kvm_gmem_accel_class_init(ObjectClass *oc)
{
    object_class_property_add_enum(oc, "guest-memfd-conversion",
                                   "GuestMemfdConversion",
                                   &GuestMemfdConversion_lookup,
                                   gmem_get_conversion, gmem_set_conversion);
    object_class_property_set_description(oc, "guest-memfd-conversion",
        "Who handles private/shared conversions of guest_memfd memory: "
        "'manager' (default: validated, errors answered to the guest) or "
        "'legacy' (QEMU 10.2's kvm_convert_memory(); a bad request stops "
        "the VM)");
    object_class_property_add_enum(oc, "guest-memfd-discard",
                                   "GuestMemfdDiscard",
                                   &GuestMemfdDiscard_lookup,
                                   gmem_get_discard, gmem_set_discard);
    object_class_property_set_description(oc, "guest-memfd-discard",
        "What a conversion does with the side that became stale: 'sync' "
        "(default: free it before answering), 'async' (free it from a "
        "worker thread, soon after) or 'none' (keep it; uses up to twice "
        "the memory)");
    object_class_property_add_bool(oc, "guest-memfd-prefault",
                                   gmem_get_prefault, gmem_set_prefault);
    object_class_property_set_description(oc, "guest-memfd-prefault",
        "Map a range into the guest (KVM_PRE_FAULT_MEMORY) right after a "
        "hypercall converts it, as QEMU 10.2 does; off by default: the "
        "guest's first touch maps a page anyway, and pages it never "
        "touches then cost no memory");
    object_class_property_add(oc, "guest-memfd-lease-timeout", "uint32",
                              gmem_get_lease_timeout, gmem_set_lease_timeout,
                              NULL, NULL);
    object_class_property_set_description(oc, "guest-memfd-lease-timeout",
        "Milliseconds a conversion to private waits for host I/O (device "
        "DMA) on the range to finish before it answers the guest EAGAIN "
        "(default 100)");
}
