/*
 * KVM guest_memfd layer: the conversion manager's state, and the calls
 * between the manager's files.
 *
 * The manager is kvm-gmem.c (the record, its invariants, the lock order
 * and the request pipeline), gmem-blocks.c, gmem-slots.c, gmem-convert.c,
 * gmem-host-io.c, gmem-reset.c and gmem-launch.c; each opens with the
 * invariants it keeps. Only they (and the fuzz and TSan harnesses)
 * include this; the rest of the layer sees gmem-manager.h.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef ACCEL_KVM_GMEM_STATE_H
#define ACCEL_KVM_GMEM_STATE_H

#include "qemu/queue.h"
#include "qemu/thread.h"
#include "system/memory.h"
#include "gmem-lease.h"
#include "gmem-manager.h"

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

/*
 * Everything but the lease part is under lock; the file named beside a
 * field is the one that keeps its invariants.
 */
typedef struct KvmGmemState {
    QemuMutex lock;
    bool initially_shared;      /* gmem-blocks.c */
    KvmGmemStats stats;         /* backlog and leases: filled when read */
    QLIST_HEAD(, KvmGmemBlock) blocks;  /* gmem-blocks.c */
    bool hooks_registered;      /* reset handler, RAMBlock notifier */
    Error *migration_blocker;   /* gmem-blocks.c */
    /*
     * The request in progress (kvm-gmem.c, gmem-convert.c): kept, so that
     * a request allocates nothing.
     */
    GArray *pieces;             /* KvmGmemPiece */
    GArray *runs;               /* KvmGmemRun */
    /*
     * KvmGmemSlot (gmem-slots.c): runs of memslots whose attributes KVM
     * refused when the slot was added, so that QEMU does not know them
     * (see kvm_gmem_slot_added()); retried until KVM takes the record's.
     */
    GArray *unsettled;
    /*
     * KvmGmemSlot (gmem-slots.c): GPA ranges whose KVM attributes are the
     * record of the block they map there, whether a memslot maps them now
     * or not: KVM keeps attributes by GPA, across memslot changes. A
     * memslot that comes back where one of these is takes no calls (a q35
     * PAM flip re-adds the low RAM slot; fragmented, that was a call per
     * run).
     */
    GArray *synced;

    /* Host I/O on shared memory, under lease_lock (gmem-host-io.c). */
    QemuMutex lease_lock;
    QemuCond lease_cond;        /* a lease ended or a fence was lifted */
    KvmGmemLeases leases;
    GArray *fences;             /* KvmGmemFenced */
    uint64_t lease_waits;
} KvmGmemState;

extern KvmGmemState gmem;

/* --- kvm-gmem.c: the request pipeline ----------------------------------- */

/*
 * Regions a holder of gmem.lock looked up, to unreference once it has
 * released the lock: add one, and drop them all (without gmem.lock).
 */
void kvm_gmem_unref_later_add(MemoryRegion *mr);
void kvm_gmem_unref_later_drop(void);
void kvm_gmem_unref_later_cleanup(char *unused);

/*
 * Before a lock guard of gmem.lock, in a function that takes it: the
 * references are dropped when the function returns, after the guard's
 * unlock (cleanups run in reverse order of declaration).
 */
#define GMEM_UNREF_AFTER_UNLOCK() \
    char gmem_unref_after_unlock \
        __attribute__((cleanup(kvm_gmem_unref_later_cleanup), unused))

/*
 * Split [gpa, gpa + size) at memory section boundaries into @pieces, of
 * blocks with a private side, and check that the request may proceed.
 */
KvmGmemReject kvm_gmem_collect(uint64_t gpa, uint64_t size, bool to_private,
                               GArray *pieces);

/* The pieces go; their region references once gmem.lock is released. */
void kvm_gmem_unref_pieces(GArray *pieces);

/* The async worker is freeing part of @pieces. */
bool kvm_gmem_pieces_in_flight(GArray *pieces);

/* A whole request, gmem.lock held: validate, wait, fence, convert. */
KvmGmemReject kvm_gmem_convert_locked(uint64_t gpa, uint64_t size,
                                      bool to_private,
                                      KvmGmemConvertMode mode);

/* --- gmem-blocks.c: lifetimes -------------------------------------------- */

/* Bytes of @rb that its RamBlockAttributes bitmap covers. */
uint64_t kvm_gmem_block_bytes(RAMBlock *rb);

/* @rb's entry in gmem.blocks, made on first use. */
KvmGmemBlock *kvm_gmem_block(RAMBlock *rb);

/*
 * A memslot maps @rb, which has a private side: the reset handler and
 * the RAMBlock notifier on the first call, and on first sight of @rb its
 * entry and its initial state, for all of it.
 */
void kvm_gmem_block_seen(RAMBlock *rb);

/* --- gmem-slots.c: memslots ---------------------------------------------- */

/* KVM's attributes of @slot's GPAs are the record's. */
void kvm_gmem_synced_add(const KvmGmemSlot *slot);

/* The record of every block changes (reset): nothing is known synced. */
void kvm_gmem_synced_forget_all(void);

/*
 * @rb's record of [offset, offset + size) changed, and KVM's attributes
 * with it only where it is mapped at @delta (GPA minus offset), or
 * nowhere (@all): what was known of its other GPAs goes.
 */
void kvm_gmem_synced_forget_offsets(RAMBlock *rb, uint64_t offset,
                                    uint64_t size, uint64_t delta, bool all);

/*
 * Retry the unsettled runs. False if one that overlaps [gpa, gpa + size)
 * (size 0: none) is still unsettled.
 */
bool kvm_gmem_settle(uint64_t gpa, uint64_t size);

/* Forget the unsettled runs that overlap [gpa, gpa + size), or of @rb. */
void kvm_gmem_unsettled_forget(uint64_t gpa, uint64_t size, RAMBlock *rb);

/* --- gmem-convert.c: a request's runs ------------------------------------ */

/* The runs of @pieces not in the target state yet, into @runs. */
void kvm_gmem_collect_runs(GArray *pieces, bool to_private, GArray *runs);

/*
 * Convert the @runs of @pieces, validated and fenced: every run changes,
 * or, if one cannot, the runs changed before it change back.
 */
KvmGmemReject kvm_gmem_convert_pieces(GArray *pieces, GArray *runs,
                                      bool to_private,
                                      KvmGmemConvertMode mode);

/* --- gmem-host-io.c: the fence and leases -------------------------------- */

/*
 * Before the @runs of @pieces change state: fence them against new
 * leases for @owner; going private, *@wait says whether to wait for
 * leases on them (kvm_gmem_lease_wait()) and look again, until
 * *@deadline (set at the first wait), or fail with "leased".
 */
KvmGmemReject kvm_gmem_fence(const void *owner, GArray *pieces,
                             GArray *runs, bool to_private,
                             int64_t *deadline, bool *wait);

/*
 * Wait until the leases on @owner's fences end, or @deadline, with
 * gmem.lock released; the caller looks at the state again.
 */
void kvm_gmem_lease_wait(const void *owner, int64_t deadline);

/* Lift @owner's fences. */
void kvm_gmem_unfence(const void *owner);

/* The fences of a request waiting for leases on @rb, which goes away. */
void kvm_gmem_fence_forget_block(RAMBlock *rb);

/* --- gmem-reset.c -------------------------------------------------------- */

/* System reset (a reset handler): back to the state the machine began in. */
void kvm_gmem_reset(void *opaque);

#endif
