/*
 * KVM guest_memfd layer: freeing the stale side of a conversion.
 *
 * After a run changes state, the copy on its other side is stale: the
 * shared copy of a run that went private, the guest_memfd copy of one
 * that went shared. This frees it as guest-memfd-discard says (now, from
 * the async worker, or not at all), in whole huge pages for a shared
 * side of hugetlb, and keeps what could not be freed pending. The
 * manager (kvm-gmem.c and the files of gmem-state.h) calls in with its
 * lock held; gmem-convert.c's invariants say what the ordering rule
 * guarantees. Here:
 *  - a pending discard, queued or failed, is done before its range
 *    changes state again (kvm_gmem_flush_overlapping());
 *  - the worker frees without the lock; the discard it works on stays
 *    queued, in flight, and a flush that overlaps it waits for it;
 *  - a stale copy reset cannot free is zeroed, never left to a later
 *    retry that would free the next boot's data.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/rcu.h"
#include "qemu/thread.h"
#include "qemu/timer.h"
#include "system/ramblock.h"
#include "gmem-discard.h"
#include "gmem-discard-queue.h"
#include "gmem-kernel.h"
#include "gmem-runs.h"
#include "trace.h"

static struct {
    QemuMutex *lock;            /* the manager's, held by every caller */
    KvmGmemStats *stats;        /* the manager's, under that lock */
    /* Stale copies not freed yet: discard=async's, and failed ones. */
    KvmGmemDiscardQueue pending;
    QemuCond pending_cond;      /* pending became non-empty */
    QemuCond in_flight_cond;    /* the worker finished a discard */
    bool worker_idle;           /* waits for a push, not for a deadline */
    bool worker_started;
} discard;

void kvm_gmem_discard_init(QemuMutex *lock, KvmGmemStats *stats)
{
    discard.lock = lock;
    discard.stats = stats;
    kvm_gmem_discard_queue_init(&discard.pending);
    qemu_cond_init(&discard.pending_cond);
    qemu_cond_init(&discard.in_flight_cond);
}

uint64_t kvm_gmem_discard_backlog(void)
{
    return discard.pending.backlog;
}

void kvm_gmem_discard_forget_block(RAMBlock *rb)
{
    kvm_gmem_discard_queue_drop_block(&discard.pending, rb);
}

/* Count a discard done. A failed one: false. */
static bool gmem_discard_account(RAMBlock *rb, uint64_t offset, uint64_t size,
                                 bool guest_memfd, int ret)
{
    if (!ret && !guest_memfd && rb->page_size > qemu_real_host_page_size()) {
        discard.stats->huge_freed += size;
    }
    if (ret) {
        discard.stats->discard_failures++;
        trace_kvm_gmem_discard_failed(qemu_ram_get_idstr(rb), offset, size,
                                      ret);
    }
    return !ret;
}

/* Free a stale copy now. A discard that fails is counted: false. */
static bool gmem_discard_now(RAMBlock *rb, uint64_t offset, uint64_t size,
                             bool guest_memfd)
{
    trace_kvm_gmem_discard(qemu_ram_get_idstr(rb), offset, size,
                           guest_memfd ? "guest_memfd" : "shared");
    return gmem_discard_account(rb, offset, size, guest_memfd,
                                kvm_gmem_kernel_discard(rb, offset, size,
                                                        guest_memfd));
}

/* A discard that failed waits, pending, for the next flush of its range. */
static void gmem_discard_failed(RAMBlock *rb, uint64_t offset, uint64_t size,
                                bool guest_memfd)
{
    KvmGmemDiscard *d = g_new0(KvmGmemDiscard, 1);

    *d = (KvmGmemDiscard) {
        .block = rb, .offset = offset, .size = size,
        .guest_memfd = guest_memfd,
    };
    kvm_gmem_discard_queue_requeue_failed(&discard.pending, d);
}

/*
 * How long a queued discard waits before the async worker takes it. A
 * range the guest converts back at once (SEV-SNP bounce buffers go to
 * and fro) has its stale copy freed by that conversion's flush, on the
 * vCPU, as discard=sync would: a worker racing for it would add only a
 * wake-up and a wait to the vCPU's path. What the guest leaves as it is
 * (memory accepted at boot) is freed off the vCPU's path.
 */
#define GMEM_DISCARD_DELAY_MS 1

/*
 * discard=async: frees queued stale ranges off the vCPU threads, oldest
 * first once they have waited GMEM_DISCARD_DELAY_MS, without the lock,
 * so that conversions go on meanwhile. The discard it works on stays
 * queued, in flight, and a conversion that overlaps it waits for it
 * before it starts (kvm_gmem_discard_in_flight()): the ordering rule
 * holds. Its RCU read section
 * keeps the block's memory and guest_memfd alive if the block is removed
 * meanwhile (RAMBlocks are freed after a grace period). One that fails is
 * left to a flush.
 */
static void *gmem_discard_worker(void *opaque)
{
    rcu_register_thread();
    qemu_mutex_lock(discard.lock);
    for (;;) {
        int64_t oldest = kvm_gmem_discard_queue_oldest(&discard.pending);
        int64_t wait_ns = oldest + GMEM_DISCARD_DELAY_MS * SCALE_MS -
                          get_clock();
        KvmGmemDiscard *d;
        RAMBlock *rb;
        int ret;

        if (oldest < 0) {
            discard.worker_idle = true;    /* the next push wakes it */
            qemu_cond_wait(&discard.pending_cond, discard.lock);
            discard.worker_idle = false;
            continue;
        }
        if (wait_ns > 0) {
            qemu_cond_timedwait(&discard.pending_cond, discard.lock,
                                DIV_ROUND_UP(wait_ns, SCALE_MS));
            continue;
        }
        d = kvm_gmem_discard_queue_pop(&discard.pending);
        rb = d->block;
        trace_kvm_gmem_discard(qemu_ram_get_idstr(rb), d->offset, d->size,
                               d->guest_memfd ? "guest_memfd" : "shared");
        rcu_read_lock();
        qemu_mutex_unlock(discard.lock);
        ret = kvm_gmem_kernel_discard(rb, d->offset, d->size, d->guest_memfd);
        rcu_read_unlock();
        qemu_mutex_lock(discard.lock);
        /* A block removed meanwhile was cut loose: d->block is NULL. */
        if (d->block) {
            gmem_discard_account(rb, d->offset, d->size, d->guest_memfd,
                                 ret);
        }
        kvm_gmem_discard_queue_finish(&discard.pending, d, !ret);
        qemu_cond_broadcast(&discard.in_flight_cond);
    }
    return NULL;
}

bool kvm_gmem_discard_in_flight(RAMBlock *rb, uint64_t offset,
                                uint64_t size)
{
    return kvm_gmem_discard_queue_busy(&discard.pending, rb, offset, size);
}

void kvm_gmem_discard_wait_for_worker(void)
{
    qemu_cond_wait(&discard.in_flight_cond, discard.lock);
}

/* Free a stale copy as the policy says; @now overrides it (reset). */
static void gmem_discard_as_policy(RAMBlock *rb, uint64_t offset,
                                   uint64_t size, bool guest_memfd, bool now)
{
    GuestMemfdDiscard policy = now ? GUEST_MEMFD_DISCARD_SYNC :
                                     kvm_gmem_config.discard;
    int64_t t0;

    switch (policy) {
    case GUEST_MEMFD_DISCARD_SYNC:
        t0 = get_clock();
        if (!gmem_discard_now(rb, offset, size, guest_memfd)) {
            gmem_discard_failed(rb, offset, size, guest_memfd);
        }
        discard.stats->kernel_ns += get_clock() - t0;
        return;
    case GUEST_MEMFD_DISCARD_NONE:
        return;
    default:
        break;
    }
    if (!discard.worker_started) {
        QemuThread thread;

        qemu_thread_create(&thread, "gmem-discard", gmem_discard_worker,
                           NULL, QEMU_THREAD_DETACHED);
        discard.worker_started = true;
    }
    kvm_gmem_discard_queue_push(&discard.pending, rb, offset, size, guest_memfd,
                                get_clock());
    if (discard.worker_idle) {
        qemu_cond_signal(&discard.pending_cond);
    }
}

/* The shared side of @rb is of huge pages (hugetlb). */
bool kvm_gmem_shared_side_huge(RAMBlock *rb)
{
    return rb->page_size > qemu_real_host_page_size();
}

/*
 * Of a stale shared range of huge pages, free the whole huge pages that
 * are private now; one that is private only in part is kept, and freed
 * by the conversion of its last part. The queued or failed discard of a
 * huge page covers all of it, so the ordering rule flushes it before any
 * part of it changes again.
 */
void kvm_gmem_discard_huge(RAMBlock *rb, uint64_t offset, uint64_t size,
                           bool now)
{
    const uint64_t bs = qemu_real_host_page_size();
    RamBlockAttributes *attr = rb->attributes;
    unsigned long bit = offset / bs, first, last;
    const unsigned long end = DIV_ROUND_UP(offset + size, bs);

    if (!kvm_gmem_config.hugetlb_discard) {
        return;     /* kept, as QEMU 10.2 does */
    }
    while (kvm_gmem_next_private_groups(attr->bitmap, attr->bitmap_size,
                                        &bit, end, rb->page_size / bs,
                                        &first, &last)) {
        gmem_discard_as_policy(rb, first * bs, (last - first) * bs, false,
                               now);
    }
}

/* Free a stale copy: the guest_memfd's, or the shared one. */
void kvm_gmem_discard(RAMBlock *rb, uint64_t offset, uint64_t size,
                      bool guest_memfd, bool now)
{
    if (!guest_memfd && kvm_gmem_shared_side_huge(rb)) {
        kvm_gmem_discard_huge(rb, offset, size, now);
    } else {
        gmem_discard_as_policy(rb, offset, size, guest_memfd, now);
    }
}

/*
 * Of a private run going shared, the parts in huge pages that were kept
 * (private in part only) still hold what they held when last shared:
 * zero them, as a discard would have. Wholly private huge pages were
 * freed, and come back zeroed.
 */
static void gmem_zero_kept_huge(RAMBlock *rb, uint64_t offset, uint64_t size)
{
    const uint64_t bs = qemu_real_host_page_size();
    RamBlockAttributes *attr = rb->attributes;
    uint64_t end = offset + size;

    for (uint64_t hp = QEMU_ALIGN_DOWN(offset, rb->page_size); hp < end;
         hp += rb->page_size) {
        uint64_t from = MAX(hp, offset), to = MIN(hp + rb->page_size, end);

        if (!kvm_gmem_group_private(attr->bitmap, attr->bitmap_size, hp / bs,
                                    rb->page_size / bs)) {
            memset((uint8_t *)rb->host + from, 0, to - from);
        }
    }
}

/*
 * Before a private run of a shared side of huge pages becomes shared:
 * allocate its huge pages, so that the guest's touch cannot find the pool
 * empty, and clear what kept ones hold. False if the pool cannot give
 * them; the run stays private, and kvm_gmem_convert_pieces() gives back
 * what was allocated.
 */
bool kvm_gmem_populate_huge(RAMBlock *rb, uint64_t offset, uint64_t size)
{
    uint64_t start = QEMU_ALIGN_DOWN(offset, rb->page_size);
    uint64_t end = QEMU_ALIGN_UP(offset + size, rb->page_size);
    int ret;

    if (!kvm_gmem_shared_side_huge(rb) || !kvm_gmem_config.hugetlb_discard) {
        return true;
    }
    ret = kvm_gmem_kernel_populate_shared(rb, start, end - start);
    if (!ret) {
        if (kvm_gmem_config.discard != GUEST_MEMFD_DISCARD_NONE) {
            gmem_zero_kept_huge(rb, offset, size);
        }
        return true;
    }
    trace_kvm_gmem_kernel_failed("populate-shared", start, end - start, ret);
    discard.stats->huge_populate_failures++;
    return false;
}

static bool gmem_flush_one(KvmGmemDiscard *d, void *opaque)
{
    trace_kvm_gmem_discard_flush(qemu_ram_get_idstr(d->block), d->offset,
                                 d->size);
    return gmem_discard_now(d->block, d->offset, d->size, d->guest_memfd);
}

/* Reset's flush: a shared copy that cannot be freed is zeroed in place. */
static bool gmem_flush_one_or_zero(KvmGmemDiscard *d, void *opaque)
{
    if (gmem_flush_one(d, opaque)) {
        return true;
    }
    if (d->guest_memfd) {
        return false;   /* retried before the range can go private again */
    }
    memset((uint8_t *)((RAMBlock *)d->block)->host + d->offset, 0, d->size);
    return true;
}

/*
 * The ordering rule: before [offset, offset + size) of @rb changes state,
 * every pending discard that overlaps it is done now. A discard queued for
 * an earlier state can then never land after the guest has put data in
 * the range's new state, and a stale copy is gone before its side can be
 * the live one again. False if one of them failed again.
 */
bool kvm_gmem_flush_overlapping(RAMBlock *rb, uint64_t offset,
                                uint64_t size)
{
    return kvm_gmem_discard_queue_take_overlapping(&discard.pending, rb, offset,
                                                   size, gmem_flush_one,
                                                   NULL);
}

/*
 * Reset: every pending discard of @rb is done now; a shared copy that
 * still cannot be freed is zeroed (its range is shared from now on, and
 * a retry later would free what the next boot wrote there). Reset runs
 * under the BQL with the vCPUs stopped, so while the wait for the worker
 * releases the lock, nothing but the worker runs.
 */
void kvm_gmem_flush_for_reset(RAMBlock *rb, uint64_t size)
{
    while (kvm_gmem_discard_in_flight(rb, 0, size)) {
        kvm_gmem_discard_wait_for_worker();
    }
    kvm_gmem_discard_queue_take_overlapping(&discard.pending, rb, 0, size,
                                            gmem_flush_one_or_zero, NULL);
}
