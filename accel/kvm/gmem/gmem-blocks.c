/*
 * KVM guest_memfd layer: the lifetimes of what the record covers.
 *
 * A RAMBlock with a private side (RamBlockAttributes) enters gmem.blocks
 * when a memslot first maps it (kvm_gmem_slot_added() in gmem-slots.c)
 * and leaves it when it is freed (the RAMBlock notifier);
 * RamDiscardListeners (VFIO) come and go on it. Also here: the migration
 * blocker of a VM with guest_memfd memory (kvm_gmem_block_migration()).
 * kvm-gmem.c has the record's invariants and the lock order. Here, under
 * gmem.lock:
 *  - a block gets its initial state once, for all of it, on first
 *    sight: private for SEV-SNP and TDX (RamBlockAttributes starts so),
 *    shared for guests that boot from shared memory (sw-protected-vm);
 *  - gmem.blocks holds only live RAMBlocks with a private side: a block
 *    leaves it when it is freed, and so does everything kept of it: its
 *    pending discards, unsettled runs, fences and synced GPA ranges;
 *  - a RamDiscardListener is added (with its replay) and removed (with
 *    its discard) under gmem.lock, under which conversions walk the
 *    listeners and tell them, so it sees every change or none (issue
 *    24, defect 3).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qemu/lockable.h"
#include "exec/ramlist.h"
#include "migration/blocker.h"
#include "system/kvm.h"
#include "system/kvm-gmem.h"
#include "system/ramblock.h"
#include "system/reset.h"
#include "gmem-discard.h"
#include "gmem-state.h"

/* Bytes of @rb that its RamBlockAttributes bitmap covers. */
uint64_t kvm_gmem_block_bytes(RAMBlock *rb)
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
KvmGmemBlock *kvm_gmem_block(RAMBlock *rb)
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

/* A RAMBlock goes away (hot-unplug): forget it and its pending work. */
static void gmem_ram_block_removed(RAMBlockNotifier *n, void *host,
                                   size_t size, size_t max_size)
{
    KvmGmemBlock *b, *next;

    QEMU_LOCK_GUARD(&gmem.lock);
    QLIST_FOREACH_SAFE(b, &gmem.blocks, next, next) {
        if (b->rb->host == host) {
            kvm_gmem_discard_forget_block(b->rb);
            kvm_gmem_unsettled_forget(0, 0, b->rb);
            kvm_gmem_fence_forget_block(b->rb);
            kvm_gmem_synced_forget_offsets(b->rb, 0, UINT64_MAX, 0, true);
            QLIST_REMOVE(b, next);
            g_free(b);
        }
    }
}

static RAMBlockNotifier gmem_ram_notifier = {
    .ram_block_removed = gmem_ram_block_removed,
};

/* From kvm_gmem_slot_added(), under gmem.lock. */
void kvm_gmem_block_seen(RAMBlock *rb)
{
    if (!gmem.hooks_registered) {
        Error *err = NULL;

        qemu_register_reset(kvm_gmem_reset, NULL);
        ram_block_notifier_add(&gmem_ram_notifier);
        gmem.hooks_registered = true;
        /*
         * Every VM with guest_memfd memory, not only those whose objects
         * add a blocker (sw-protected-vm, the in-place backend): TDX adds
         * none and SEV-SNP only at launch, and a background snapshot,
         * which logs no dirty pages, would read private pages through
         * their stale host mapping.
         */
        if (kvm_gmem_block_migration(&gmem.migration_blocker,
                                     "guest_memfd memory", &err) < 0) {
            warn_report_err(err);
        }
    }
    if (!gmem_block_find(rb)) {
        /*
         * First sight of the block: its initial state, for all of it.
         * RamBlockAttributes starts all private (SEV-SNP, TDX). If a
         * listener (VFIO) cannot map the block, the bits are set all the
         * same, as KVM's are then (kvm_gmem_slot_added()): the device
         * lacks those mappings, and QEMU says so and runs on (it used to
         * exit).
         */
        kvm_gmem_block(rb);
        if (gmem.initially_shared &&
            ram_block_attributes_state_change(rb->attributes, 0,
                                              kvm_gmem_block_bytes(rb),
                                              false)) {
            error_report("guest_memfd: a listener cannot map %s",
                         qemu_ram_get_idstr(rb));
        }
    }
}

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
