/*
 * KVM guest_memfd layer: converting a request's runs.
 *
 * kvm_gmem_convert_locked() (kvm-gmem.c) validated the request, took the
 * runs of its pieces that are not in the target state yet
 * (kvm_gmem_collect_runs()) and fenced them (gmem-host-io.c); this
 * changes them: KVM's attributes, the record and the listeners, and then
 * frees the stale side. kvm-gmem.c has the record's invariants and the
 * lock order. Here, under gmem.lock:
 *  - every run changes, or none: if one cannot, the runs changed before
 *    it are changed back, newest first. A run KVM refuses to change back
 *    keeps the new state, in KVM and in the record (rollback-failures);
 *  - a range never changes state while a discard of it is pending: the
 *    pending discards it overlaps are done first, and if one fails again
 *    the request is refused. A failed discard stays pending, so a stale
 *    copy is freed before its side can become the live one again;
 *  - stale copies are freed only once every run is in its final state,
 *    so that undoing a run loses no data;
 *  - RamDiscardManager listeners (VFIO) drop a range before it becomes
 *    private and get it back only once it is shared again; a range a
 *    listener cannot map does not become shared;
 *  - a shared side of huge pages (hugetlb) is freed in whole huge pages
 *    only, each once every part of it is private (the bitmap says which),
 *    and a range of it becomes shared only once its huge pages are
 *    allocated again: a touch of a page the pool could not give would be
 *    a SIGBUS that ends QEMU, so the request is refused instead.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/timer.h"
#include "system/ramblock.h"
#include "gmem-discard.h"
#include "gmem-kernel.h"
#include "gmem-runs.h"
#include "gmem-state.h"
#include "trace.h"

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
        if (to_private) {
            /* Listeners drop the range while QEMU may still map it. */
            ram_block_attributes_state_change(attr, runs[i].offset,
                                              runs[i].size, true);
        } else if (!kvm_gmem_populate_huge(p->rb, runs[i].offset,
                                           runs[i].size)) {
            return KVM_GMEM_REJECT_NO_MEMORY;
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
    kvm_gmem_synced_forget_offsets(p->rb, runs[0].offset, size,
                                   gpa - runs[0].offset, false);
    for (i = 0; i < n; i++) {
        runs[i].done = true;
    }
    return to_private ? KVM_GMEM_OK : gmem_runs_shared(p, runs, n);
}

/* The runs of @pieces not in the target state yet, into @runs. */
void kvm_gmem_collect_runs(GArray *pieces, bool to_private, GArray *runs)
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
    KvmGmemBlockStats *st = &kvm_gmem_block(p->rb)->stats;
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
KvmGmemReject kvm_gmem_convert_pieces(GArray *pieces, GArray *runs,
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
