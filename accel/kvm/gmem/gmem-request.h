/*
 * KVM guest_memfd layer: decoding of guest conversion requests.
 *
 * Pure functions with no QEMU state, so unit tests can cover every case.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef ACCEL_KVM_GMEM_REQUEST_H
#define ACCEL_KVM_GMEM_REQUEST_H

/* Why a conversion request was refused; the classes of query-guest-memfd. */
typedef enum KvmGmemReject {
    KVM_GMEM_OK,
    KVM_GMEM_REJECT_EMPTY,          /* no pages */
    KVM_GMEM_REJECT_UNALIGNED,      /* gpa or size not page aligned */
    KVM_GMEM_REJECT_OVERFLOW,       /* gpa + size wraps past 2^64 */
    KVM_GMEM_REJECT_RESERVED,       /* reserved attribute bits or hint */
    KVM_GMEM_REJECT_HINT,           /* page-size hint does not fit range */
    KVM_GMEM_REJECT_NOT_GMEM,       /* MMIO, hole or past RAM */
    KVM_GMEM_REJECT_KVM,            /* KVM refused the attribute change */
    KVM_GMEM_REJECT_LEASED,         /* host I/O kept a page going private */
    KVM_GMEM_REJECT_LISTENER,       /* a listener (VFIO) could not map it */
    KVM_GMEM_REJECT_DISCARD,        /* a stale copy could not be freed */
    KVM_GMEM_REJECT_NO_MEMORY,      /* no huge page for the shared side */
    KVM_GMEM_REJECT__MAX,
} KvmGmemReject;

/* The page unit of KVM_HC_MAP_GPA_RANGE, whatever the host page size. */
#define KVM_GMEM_HC_PAGE_SIZE 4096ULL

typedef struct KvmGmemRange {
    uint64_t gpa;
    uint64_t size;
    bool to_private;
} KvmGmemRange;

/*
 * Decode KVM_HC_MAP_GPA_RANGE arguments into @range. Checks everything
 * that does not depend on the memory map.
 */
KvmGmemReject kvm_gmem_decode_map_gpa_range(uint64_t gpa, uint64_t npages,
                                            uint64_t attrs,
                                            KvmGmemRange *range);

/* Checks of a range from any source, for a host page size @page_size. */
KvmGmemReject kvm_gmem_check_range(uint64_t gpa, uint64_t size,
                                   uint64_t page_size);

/*
 * The answer the guest gets in run->hypercall.ret: 0, EINVAL (refused) or
 * EAGAIN (busy, try again), the set KVM accepts for every VM type.
 */
int64_t kvm_gmem_reject_to_guest(KvmGmemReject reject);

/* A stable lower-case name, for QMP, HMP and traces. */
const char *kvm_gmem_reject_name(KvmGmemReject reject);

/*
 * A memory-fault exit (KVM_EXIT_MEMORY_FAULT) cannot be answered: KVM
 * only enters the guest again, which faults again. So a conversion it
 * asks for that is refused for a reason that may pass, one a hypercall
 * answers EAGAIN (leased, no-memory), is retried that way, the vCPU
 * sleeping before each re-entry a little longer than before (0, 1, 2, ...
 * up to 64 ms), until @limit_ms after the first refusal of the same fault
 * on that vCPU. Any other refusal, and one that lasts longer, stops the VM.
 */
typedef struct KvmGmemFaultRetry {
    uint64_t gpa;
    uint64_t size;
    bool to_private;
    uint32_t refusals;          /* of this fault in a row; 0: none */
    int64_t first_ms;           /* when the first of them came */
} KvmGmemFaultRetry;

#define KVM_GMEM_FAULT_RETRY_MAX_DELAY_MS 64

/*
 * The memory fault [@gpa, @gpa + @size) to @to_private got @reject at
 * @now_ms; @s is its vCPU's record. True: enter the guest again, after
 * *@delay_ms. False: stop the VM; @s still says how often and since
 * when the fault was refused, and the caller clears s->refusals.
 */
bool kvm_gmem_fault_retry(KvmGmemFaultRetry *s, uint64_t gpa, uint64_t size,
                          bool to_private, KvmGmemReject reject,
                          int64_t now_ms, uint32_t limit_ms,
                          uint32_t *delay_ms);

#endif
