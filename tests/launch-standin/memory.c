/*
 * What QEMU really told KVM about guest memory: its memslots (with or
 * without a guest_memfd) and every KVM_SET_MEMORY_ATTRIBUTES that KVM
 * accepted; and which pages a launch command already populated. The
 * populate rules of snp.c and tdx.c check against this record.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <sys/uio.h>
#include <unistd.h>
#include "standin.h"

typedef struct Memslot {
    uint32_t slot;
    uint64_t gfn, npages;
    bool gmem;
} Memslot;

typedef struct Range {
    uint64_t start, end;        /* GPAs, [start, end) */
} Range;

static GArray *memslots;        /* Memslot */
static GArray *private_ranges;  /* Range, disjoint */
static GHashTable *populated;   /* GFNs */

void standin_memslot_set(const struct kvm_userspace_memory_region2 *r);
void standin_attributes_set(const struct kvm_memory_attributes *a);

void standin_memslot_set(const struct kvm_userspace_memory_region2 *r)
{
    Memslot s = {
        .slot = r->slot,
        .gfn = r->guest_phys_addr / STANDIN_PAGE_SIZE,
        .npages = r->memory_size / STANDIN_PAGE_SIZE,
        .gmem = r->flags & KVM_MEM_GUEST_MEMFD,
    };

    if (r->slot >> 16) {
        return;                 /* SMM's address space: never populated */
    }
    if (!memslots) {
        memslots = g_array_new(false, false, sizeof(Memslot));
    }
    for (unsigned i = 0; i < memslots->len; i++) {
        if (g_array_index(memslots, Memslot, i).slot == r->slot) {
            g_array_remove_index(memslots, i);
            break;
        }
    }
    if (s.npages) {
        g_array_append_val(memslots, s);
    }
}

/* KVM_SET_MEMORY_ATTRIBUTES as kvm_vm_set_mem_attributes() applied it. */
void standin_attributes_set(const struct kvm_memory_attributes *a)
{
    uint64_t start = a->address, end = a->address + a->size;
    GArray *next = g_array_new(false, false, sizeof(Range));

    for (unsigned i = 0; private_ranges && i < private_ranges->len; i++) {
        Range r = g_array_index(private_ranges, Range, i);
        Range before = { r.start, MIN(r.end, start) };
        Range after = { MAX(r.start, end), r.end };

        if (r.end <= start || r.start >= end) {
            g_array_append_val(next, r);
            continue;
        }
        if (before.start < before.end) {
            g_array_append_val(next, before);
        }
        if (after.start < after.end) {
            g_array_append_val(next, after);
        }
    }
    if (a->attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE) {
        Range n = { start, end };

        g_array_append_val(next, n);
    }
    if (private_ranges) {
        g_array_free(private_ranges, true);
    }
    private_ranges = next;
}

static bool gpa_private(uint64_t gpa)
{
    for (unsigned i = 0; private_ranges && i < private_ranges->len; i++) {
        Range r = g_array_index(private_ranges, Range, i);

        if (gpa >= r.start && gpa < r.end) {
            return true;
        }
    }
    return false;
}

int standin_gmem_page_check(uint64_t gfn, uint64_t *slot_end)
{
    for (unsigned i = 0; memslots && i < memslots->len; i++) {
        Memslot s = g_array_index(memslots, Memslot, i);

        if (gfn >= s.gfn && gfn < s.gfn + s.npages) {
            *slot_end = s.gfn + s.npages;
            if (!s.gmem) {
                return -EINVAL;         /* kvm_slot_has_gmem() */
            }
            /* __kvm_gmem_populate(): kvm_range_has_memory_attributes() */
            return gpa_private(gfn * STANDIN_PAGE_SIZE) ? 0 : -EINVAL;
        }
    }
    *slot_end = gfn;
    return -EINVAL;                     /* gfn_to_memslot() found none */
}

bool standin_mark_populated(uint64_t gfn)
{
    if (!populated) {
        populated = g_hash_table_new(g_direct_hash, g_direct_equal);
    }
    return g_hash_table_add(populated, GSIZE_TO_POINTER(gfn));
}

/* get_user_pages_fast()/copy_from_user(): an unmapped source is EFAULT. */
int standin_read_user(uint64_t uaddr, void *buf, size_t len)
{
    struct iovec local = { buf, len };
    struct iovec remote = { (void *)(uintptr_t)uaddr, len };

    return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) ==
           (ssize_t)len ? 0 : -EFAULT;
}

int standin_write_user(uint64_t uaddr, const void *buf, size_t len)
{
    struct iovec local = { (void *)buf, len };
    struct iovec remote = { (void *)(uintptr_t)uaddr, len };

    return process_vm_writev(getpid(), &local, 1, &remote, 1, 0) ==
           (ssize_t)len ? 0 : -EFAULT;
}
