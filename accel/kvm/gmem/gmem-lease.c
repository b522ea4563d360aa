/*
 * KVM guest_memfd layer: leases of host I/O on shared guest memory.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/range.h"
#include "gmem-lease.h"

typedef struct KvmGmemLease {
    const void *block;          /* the key: block and start offset */
    uint64_t offset;
    uint64_t size;              /* the longest mapping from this start */
    unsigned refs;
} KvmGmemLease;

static guint lease_hash(gconstpointer key)
{
    const KvmGmemLease *k = key;

    return g_direct_hash(k->block) ^ g_int64_hash(&k->offset);
}

static gboolean lease_equal(gconstpointer a, gconstpointer b)
{
    const KvmGmemLease *x = a, *y = b;

    return x->block == y->block && x->offset == y->offset;
}

void kvm_gmem_leases_init(KvmGmemLeases *l)
{
    /* Keys are the values themselves: each entry is one allocation. */
    l->by_start = g_hash_table_new_full(lease_hash, lease_equal, NULL,
                                        g_free);
    l->active = 0;
}

void kvm_gmem_leases_destroy(KvmGmemLeases *l)
{
    g_hash_table_destroy(l->by_start);
    l->by_start = NULL;
    l->active = 0;
}

void kvm_gmem_leases_take(KvmGmemLeases *l, const void *block,
                          uint64_t offset, uint64_t size)
{
    KvmGmemLease key = { .block = block, .offset = offset };
    KvmGmemLease *lease = g_hash_table_lookup(l->by_start, &key);

    if (!lease) {
        lease = g_new(KvmGmemLease, 1);
        *lease = (KvmGmemLease) { .block = block, .offset = offset };
        g_hash_table_add(l->by_start, lease);
    }
    lease->size = MAX(lease->size, size);
    lease->refs++;
    l->active++;
}

bool kvm_gmem_leases_drop(KvmGmemLeases *l, const void *block,
                          uint64_t offset)
{
    KvmGmemLease key = { .block = block, .offset = offset };
    KvmGmemLease *lease = g_hash_table_lookup(l->by_start, &key);

    if (!lease) {
        return false;
    }
    l->active--;
    if (!--lease->refs) {
        g_hash_table_remove(l->by_start, lease);
    }
    return true;
}

bool kvm_gmem_leases_overlap(KvmGmemLeases *l, const void *block,
                             uint64_t offset, uint64_t size)
{
    GHashTableIter iter;
    KvmGmemLease *lease;

    if (!l->active) {
        return false;
    }
    g_hash_table_iter_init(&iter, l->by_start);
    while (g_hash_table_iter_next(&iter, (gpointer *)&lease, NULL)) {
        if (lease->block == block &&
            ranges_overlap(lease->offset, lease->size, offset, size)) {
            return true;
        }
    }
    return false;
}
