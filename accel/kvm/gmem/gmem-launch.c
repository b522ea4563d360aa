/*
 * KVM guest_memfd layer: the launch's entry points into the manager.
 *
 * The SEV-SNP and TDX launch plan (launch.c, docs/devel/launch-plan.rst)
 * calls these around its memory commands: a range goes private before
 * the command that needs it (kvm_gmem_launch_private()), the discards
 * pending over it are done before the plan is measured
 * (kvm_gmem_launch_settle()), and the shared copies that served as
 * sources are freed once the plan ran (kvm_gmem_launch_discard_shared()).
 * kvm-gmem.c has the record's invariants and the lock order. Here, under
 * gmem.lock:
 *  - a range made private with keep_shared keeps its shared copy, the
 *    command's source, until kvm_gmem_launch_discard_shared(); launch
 *    conversions go through the request's steps but are not counted as
 *    requests;
 *  - once settled, no discard is pending over a launch range, nor being
 *    done by the async worker: what the measurement hashes is what the
 *    command reads;
 *  - once the plan ran, the shared copy of every private page of its
 *    ranges is freed, and the stale rest of each transparent huge page
 *    extent around them that is private as a whole, so that khugepaged
 *    cannot collapse the freed sources back in.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/lockable.h"
#include "system/kvm.h"
#include "system/kvm-gmem.h"
#include "system/ramblock.h"
#include "gmem-discard.h"
#include "gmem-request.h"
#include "gmem-runs.h"
#include "gmem-state.h"
#include "trace.h"

int kvm_gmem_launch_private(uint64_t gpa, uint64_t size, bool keep_shared,
                            Error **errp)
{
    GMEM_UNREF_AFTER_UNLOCK();
    KvmGmemReject r;

    WITH_QEMU_LOCK_GUARD(&gmem.lock) {
        r = kvm_gmem_convert_locked(gpa, size, true, keep_shared ?
                                    GMEM_CONVERT_LAUNCH :
                                    GMEM_CONVERT_REQUEST);
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
            kvm_gmem_collect(gpa, size, true, pieces)) {
            kvm_gmem_unref_pieces(pieces);
            return 0;
        }
        if (!kvm_gmem_pieces_in_flight(pieces)) {
            break;
        }
        kvm_gmem_unref_pieces(pieces);
        kvm_gmem_discard_wait_for_worker();
    }
    for (guint i = 0; i < pieces->len; i++) {
        KvmGmemPiece *p = &g_array_index(pieces, KvmGmemPiece, i);

        settled &= kvm_gmem_flush_overlapping(p->rb, p->offset, p->size);
    }
    kvm_gmem_unref_pieces(pieces);
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
            !kvm_gmem_collect(gpa, size, true, pieces);
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
    kvm_gmem_unref_pieces(pieces);
}
