/*
 * KVM guest_memfd layer: the conversion manager.
 *
 * The only code that changes whether guest memory is private or shared.
 * Inputs: memory-fault exits, KVM_HC_MAP_GPA_RANGE hypercalls (SEV-SNP
 * page-state changes and TDX MapGPA arrive this way), the initial state
 * of new memslots and SEV-SNP launch, guest-memfd-convert (QMP), and
 * system reset. docs/devel/kvm-gmem.rst has the design.
 *
 * This file keeps the record, its invariants and the lock order, and the
 * request pipeline's top level: validate and collect, wait, fence,
 * convert, count. The state (gmem-state.h) is shared by the manager's
 * files, each of which opens with the invariants it keeps:
 *  - gmem-blocks.c: blocks with a private side, from a memslot's first
 *    sight of them to their unplug, and the listeners added to them;
 *  - gmem-slots.c: memslots take the record's state (the synced GPA
 *    ranges, unsettled runs);
 *  - gmem-convert.c: a request's runs change, or change back, and their
 *    stale side is freed;
 *  - gmem-host-io.c: the fence, host I/O leases and QEMU's own copies of
 *    guest RAM;
 *  - gmem-reset.c: system reset;
 *  - gmem-launch.c: the SEV-SNP and TDX launch's entry points.
 * gmem-monitor.c reports what they own, gmem-kernel.c makes their kernel
 * calls, gmem-discard.c frees the stale side (now, from its worker, or in
 * whole huge pages) and gmem-lookup.c finds the memory under a request.
 *
 * The record's invariants, under gmem.lock:
 *  - the RamBlockAttributes bitmap is the record of the state: KVM's
 *    attributes are made to follow it, never the other way round;
 *  - for every guest_memfd-backed RAMBlock, its RamBlockAttributes bitmap
 *    (bit set = shared) equals the KVM memory attributes of the guest
 *    physical ranges that map it, outside a conversion in progress,
 *    whatever the layout: a block gets its initial state once
 *    (gmem-blocks.c), and every memslot of it, new or back elsewhere,
 *    takes the bitmap's state (gmem-slots.c);
 *  - a request is validated in full (every byte must be guest_memfd RAM
 *    with a private side, or MMIO or in-place RAM being made shared)
 *    before any state changes, and a rejected request changes nothing:
 *    the runs it changed before the failure are changed back
 *    (gmem-convert.c). Only if KVM refuses to change one back does that
 *    run keep the new state, and then the record follows KVM (counted as
 *    a rollback failure);
 *  - a request holds gmem.lock from its first look at the state to its
 *    end. The two waits that release it come before that look, which
 *    starts again after them: for a discard the async worker is doing in
 *    the request's range, and for host I/O leases on a range going
 *    private.
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
 *  - the wait for host I/O to drop its leases (kvm_gmem_lease_wait(), on
 *    gmem.lease_cond, bounded by lease-timeout) releases gmem.lock: the
 *    I/O may need the BQL to end, and a commit must not stall that long;
 *  - the wait for the async worker releases gmem.lock; the worker takes
 *    it only to pick a discard and frees without it.
 * Outside gmem.lock: KVM_PRE_FAULT_MEMORY through kvm_vcpu_ioctl(),
 * which may wait for an inhibit, holding nothing a commit needs; and
 * memory_region_unref() of the regions a holder looked up, which it
 * drops once it released the lock (kvm_gmem_unref_later_drop()): the
 * last reference finalises an unplugged region, and the removal of its
 * RAMBlock takes gmem.lock (issue 24, defect 4).
 * gmem.lease_lock is taken alone by lease takers (inside RCU read
 * sections, with or without the BQL), which never wait under it. No
 * cycle: the commit waits for gmem.lock holding the outer locks, and a
 * holder of gmem.lock waits for nothing outer, only for the kernel.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "qemu/lockable.h"
#include "qemu/timer.h"
#include "system/kvm.h"
#include "system/kvm-gmem.h"
#include "system/ramblock.h"
#include "gmem-discard.h"
#include "gmem-kernel.h"
#include "gmem-lookup.h"
#include "gmem-request.h"
#include "gmem-state.h"
#include "trace.h"

KvmGmemState gmem;

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

/*
 * Regions a holder of gmem.lock looked up, to unreference once it has
 * released the lock: the last reference to an unplugged region finalises
 * it, and gmem_ram_block_removed() (gmem-blocks.c) then takes gmem.lock
 * (issue 24, defect 4). Per thread, as holding the lock is.
 */
static __thread GPtrArray *gmem_unref_later;

void kvm_gmem_unref_later_add(MemoryRegion *mr)
{
    if (!gmem_unref_later) {
        gmem_unref_later = g_ptr_array_new();
    }
    g_ptr_array_add(gmem_unref_later, mr);
}

/* Without gmem.lock: drop what kvm_gmem_unref_later_add() kept. */
void kvm_gmem_unref_later_drop(void)
{
    for (guint i = 0; gmem_unref_later && i < gmem_unref_later->len; i++) {
        memory_region_unref(g_ptr_array_index(gmem_unref_later, i));
    }
    if (gmem_unref_later) {
        g_ptr_array_set_size(gmem_unref_later, 0);
    }
}

void kvm_gmem_unref_later_cleanup(char *unused)
{
    kvm_gmem_unref_later_drop();
}

/*
 * Split [gpa, gpa + size) at memory section boundaries into @pieces and
 * check that the request may proceed: making private needs guest_memfd RAM
 * with a private side everywhere; making shared may also cover MMIO,
 * holes and in-place guest_memfd RAM, which stay as they are (TDX firmware
 * shares its MMIO ranges this way). Pieces are only of blocks with a
 * private side (RamBlockAttributes).
 */
KvmGmemReject kvm_gmem_collect(uint64_t gpa, uint64_t size,
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
            kvm_gmem_unref_later_add(s.mr);
            return KVM_GMEM_REJECT_NOT_GMEM;       /* a hole first */
        }
        if (memory_region_has_guest_memfd(s.mr) &&
            !s.mr->ram_block->attributes) {
            /* In place: no private side, and shared for good. */
            kvm_gmem_unref_later_add(s.mr);
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

            kvm_gmem_unref_later_add(s.mr);
            if (to_private || !mmio) {
                return KVM_GMEM_REJECT_NOT_GMEM;
            }
        }
        left -= start + len - addr;
        addr = start + len;
    }
    return KVM_GMEM_OK;
}

/*
 * The pieces go; their region references once gmem.lock is released
 * (kvm_gmem_unref_later_drop()).
 */
void kvm_gmem_unref_pieces(GArray *pieces)
{
    for (guint i = 0; i < pieces->len; i++) {
        kvm_gmem_unref_later_add(g_array_index(pieces, KvmGmemPiece, i).mr);
    }
    g_array_set_size(pieces, 0);
}

/* The async worker is freeing part of @pieces. */
bool kvm_gmem_pieces_in_flight(GArray *pieces)
{
    for (guint i = 0; i < pieces->len; i++) {
        KvmGmemPiece *p = &g_array_index(pieces, KvmGmemPiece, i);

        if (kvm_gmem_discard_in_flight(p->rb, p->offset, p->size)) {
            return true;
        }
    }
    return false;
}

KvmGmemReject kvm_gmem_convert_locked(uint64_t gpa, uint64_t size,
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
        if (!r && gmem.unsettled->len && !kvm_gmem_settle(gpa, size) &&
            mode != GMEM_CONVERT_RESET) {
            r = KVM_GMEM_REJECT_KVM;
        }
        if (!r) {
            r = kvm_gmem_collect(gpa, size, to_private, pieces);
        }
        if (!r && kvm_gmem_pieces_in_flight(pieces)) {
            kvm_gmem_unref_pieces(pieces);
            kvm_gmem_discard_wait_for_worker();
            continue;
        }
        if (!r) {
            kvm_gmem_collect_runs(pieces, to_private, gmem.runs);
            r = kvm_gmem_fence(&deadline, pieces, gmem.runs, to_private,
                               &deadline, &wait);
        }
        if (r || !wait) {
            break;
        }
        kvm_gmem_unref_pieces(pieces);
        kvm_gmem_lease_wait(&deadline, deadline);
    }
    if (!r) {
        r = kvm_gmem_convert_pieces(pieces, gmem.runs, to_private, mode);
    }
    kvm_gmem_unfence(&deadline);
    if (deadline >= 0) {
        WITH_QEMU_LOCK_GUARD(&gmem.lease_lock) {
            gmem.lease_waits++;
        }
        trace_kvm_gmem_lease_wait(kvm_gmem_reject_name(r),
                                  qemu_clock_get_ms(QEMU_CLOCK_REALTIME) -
                                  deadline + kvm_gmem_config.lease_timeout_ms);
    }
    kvm_gmem_unref_pieces(pieces);
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

        r = kvm_gmem_convert_locked(gpa, size, to_private,
                                    GMEM_CONVERT_REQUEST);
        gmem_account_locked(r, get_clock() - t0);
    }
    trace_kvm_gmem_convert(source, gpa, size,
                           to_private ? "private" : "shared",
                           kvm_gmem_reject_name(r));
    return r;
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
