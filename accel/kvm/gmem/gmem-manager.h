/*
 * KVM guest_memfd layer: what the rest of the layer sees of the
 * conversion manager (kvm-gmem.c and the files of gmem-state.h), which
 * owns the state.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef ACCEL_KVM_GMEM_MANAGER_H
#define ACCEL_KVM_GMEM_MANAGER_H

#include "qapi/qapi-types-guest-memfd.h"
#include "gmem-request.h"

/* -accel kvm,guest-memfd-*= (gmem-properties.c); fixed once KVM is up. */
typedef struct KvmGmemConfig {
    GuestMemfdConversion conversion;
    GuestMemfdDiscard discard;
    bool prefault;              /* map converted ranges before the guest */
    uint32_t lease_timeout_ms;
    uint32_t fault_timeout_ms;  /* a memory fault's transient refusals */
    bool hugetlb_discard;       /* free whole private huge pages */
    KvmMemslotZap memslot_zap;  /* memslot-zap.c */
    bool fault_injection;       /* x-guest-memfd-inject-fault allowed */
} KvmGmemConfig;

extern KvmGmemConfig kvm_gmem_config;

/* What the manager has done since the VM started. */
typedef struct KvmGmemStats {
    uint64_t requests;
    uint64_t busy_ns;           /* time spent converting, all requests */
    uint64_t kernel_ns;         /* of which in attribute and discard calls */
    uint64_t failures[KVM_GMEM_REJECT__MAX];
    uint64_t discard_failures;  /* discards that failed and wait for retry */
    uint64_t rollback_failures; /* runs KVM would not change back */
    uint64_t slot_attribute_failures; /* new slots' runs KVM refused */
    uint64_t discard_backlog;   /* bytes of stale copies not freed yet */
    uint64_t leases;            /* host I/O leases held now */
    uint64_t lease_waits;       /* conversions that waited for leases */
    uint64_t huge_freed;        /* bytes of huge pages given back */
    uint64_t huge_populate_failures; /* huge pages the pool could not give */
} KvmGmemStats;

typedef struct KvmGmemBlockStats {
    uint64_t conversions_to_private;
    uint64_t conversions_to_shared;
    uint64_t bytes_to_private;
    uint64_t bytes_to_shared;
} KvmGmemBlockStats;

typedef void KvmGmemBlockFn(RAMBlock *rb, const KvmGmemBlockStats *stats,
                            void *opaque);

/*
 * One consistent reading: fill @stats, then call @fn for every block with
 * a private side, with the manager's lock held (so @fn may read the
 * block's RamBlockAttributes bitmap, and must not call the manager).
 */
void kvm_gmem_read_stats(KvmGmemStats *stats, KvmGmemBlockFn *fn,
                         void *opaque);

/* A conversion request of the operator (QMP): counted and traced. */
KvmGmemReject kvm_gmem_convert_request(uint64_t gpa, uint64_t size,
                                       bool to_private, const char *source);

#endif
