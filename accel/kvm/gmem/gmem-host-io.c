/*
 * KVM guest_memfd layer: host I/O on guest RAM, and the fence that keeps
 * it off memory being converted.
 *
 * A device maps guest RAM (address_space_map(), patch 0010) under a
 * lease, kvm_gmem_lease_take() to kvm_gmem_lease_drop() (the table is
 * gmem-lease.c); QEMU copies guest RAM for itself (patch 0018) under a
 * lease held for the copy; a conversion fences the runs it changes
 * against new leases (kvm_gmem_fence()). kvm-gmem.c has the record's
 * invariants and the lock order. Here, under gmem.lease_lock (taken
 * after gmem.lock, never before):
 *  - a range's bits in the bitmap change only while a conversion fences
 *    it (reset's return to shared excepted), and a conversion fences only
 *    the runs it changes: host I/O goes on using the pages of a request
 *    that are in the target state already (issue 24, defect 7);
 *  - host I/O leases only shared, unfenced memory, and never waits: a
 *    mapping stops short of the first private or fenced page (it is taken
 *    inside address_space_map()'s RCU read section);
 *  - no range goes private while host I/O holds a lease on it: a
 *    conversion to private waits (bounded, without gmem.lock, its ranges
 *    fenced) for the leases on them to end and fails with "leased" if
 *    they do not;
 *  - QEMU's own copies of guest RAM (flatview_read_continue() and
 *    flatview_write_continue(), the ld/st family and virtio's rings,
 *    address_space_write_rom(), dump-guest-memory: patch 0018 and
 *    kvm_gmem_dump_view()) touch only shared, unfenced pages, each run
 *    under a lease for the copy, taken and dropped like a mapping's, the
 *    copy made with the lock released; a private or fenced page reads as
 *    zeros and is not written (issue 24, defect 10).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bitops.h"
#include "qemu/lockable.h"
#include "qemu/range.h"
#include "qemu/timer.h"
#include "system/kvm.h"
#include "system/kvm-gmem.h"
#include "system/ramblock.h"
#include "gmem-state.h"
#include "trace.h"

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
 * the wait, which kvm_gmem_lease_wait() does without gmem.lock.
 * Otherwise the fence stays up until kvm_gmem_unfence(), or, with
 * "leased", is lifted.
 */
KvmGmemReject kvm_gmem_fence(const void *owner, GArray *pieces,
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
void kvm_gmem_lease_wait(const void *owner, int64_t deadline)
{
    qemu_mutex_unlock(&gmem.lock);
    kvm_gmem_unref_later_drop();
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

void kvm_gmem_unfence(const void *owner)
{
    QEMU_LOCK_GUARD(&gmem.lease_lock);
    gmem_fence_drop(owner);
}

/* The fences of a request waiting for leases on @rb, which goes away. */
void kvm_gmem_fence_forget_block(RAMBlock *rb)
{
    QEMU_LOCK_GUARD(&gmem.lease_lock);
    for (guint i = 0; i < gmem.fences->len; i++) {
        if (g_array_index(gmem.fences, KvmGmemFenced, i).rb == rb) {
            g_array_remove_index_fast(gmem.fences, i--);
        }
    }
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
        /*
         * From the next page: reset sets bits without a fence, and a
         * search from @first that found it set by now would end the run
         * before @offset, a length that wraps.
         */
        bit = find_next_bit(attr->bitmap, last, first + 1);
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

void *kvm_gmem_dump_view(void *host, size_t len)
{
    static uint8_t *copy;
    static size_t copy_size;
    ram_addr_t offset;
    RAMBlock *rb;

    RCU_READ_LOCK_GUARD();
    rb = qemu_ram_block_from_host(host, false, &offset);
    if (!rb || !rb->attributes) {
        return host;
    }
    assert(offset + len <= rb->used_length);    /* within one GuestPhysBlock */
    if (copy_size < len) {
        copy = g_realloc(copy, len);
        copy_size = len;
    }
    kvm_gmem_host_read(rb, offset, copy, host, len);
    return copy;
}
