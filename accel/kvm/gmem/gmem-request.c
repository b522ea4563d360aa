/*
 * KVM guest_memfd layer: decoding of guest conversion requests.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "gmem-request.h"

/*
 * The only answers KVM takes from userspace for KVM_HC_MAP_GPA_RANGE
 * (Documentation/virt/kvm/api.rst, KVM_CAP_EXIT_HYPERCALL), positive:
 * SEV-SNP and TDX translate them into their own status codes and fail
 * KVM_RUN on anything else; a plain hypercall gets them in RAX as is.
 */
#define MAP_GPA_RANGE_EINVAL    22
#define MAP_GPA_RANGE_EAGAIN    11

/* KVM_HC_MAP_GPA_RANGE attributes (Documentation/virt/kvm/x86/hypercalls) */
#define MAP_GPA_RANGE_PAGE_SZ_MASK  0xfULL
#define MAP_GPA_RANGE_PAGE_SZ_4K    0
#define MAP_GPA_RANGE_PAGE_SZ_2M    1
#define MAP_GPA_RANGE_PAGE_SZ_1G    2
#define MAP_GPA_RANGE_ENCRYPTED     (1ULL << 4)

static const char *const reject_names[KVM_GMEM_REJECT__MAX] = {
    [KVM_GMEM_OK] = "ok",
    [KVM_GMEM_REJECT_EMPTY] = "empty",
    [KVM_GMEM_REJECT_UNALIGNED] = "unaligned",
    [KVM_GMEM_REJECT_OVERFLOW] = "overflow",
    [KVM_GMEM_REJECT_RESERVED] = "reserved-bits",
    [KVM_GMEM_REJECT_HINT] = "page-size-hint",
    [KVM_GMEM_REJECT_NOT_GMEM] = "not-guest-memfd",
    [KVM_GMEM_REJECT_KVM] = "kvm",
    [KVM_GMEM_REJECT_LEASED] = "leased",
    [KVM_GMEM_REJECT_LISTENER] = "listener",
    [KVM_GMEM_REJECT_DISCARD] = "discard",
    [KVM_GMEM_REJECT_NO_MEMORY] = "no-memory",
};

const char *kvm_gmem_reject_name(KvmGmemReject reject)
{
    return reject < KVM_GMEM_REJECT__MAX ? reject_names[reject] : "?";
}

int64_t kvm_gmem_reject_to_guest(KvmGmemReject reject)
{
    switch (reject) {
    case KVM_GMEM_OK:
        return 0;
    case KVM_GMEM_REJECT_LEASED:
    case KVM_GMEM_REJECT_NO_MEMORY:     /* the pool may refill */
        return MAP_GPA_RANGE_EAGAIN;    /* TDX: TDVMCALL_STATUS_RETRY */
    default:
        return MAP_GPA_RANGE_EINVAL;
    }
}

bool kvm_gmem_fault_retry(KvmGmemFaultRetry *s, uint64_t gpa, uint64_t size,
                          bool to_private, KvmGmemReject reject,
                          int64_t now_ms, uint32_t limit_ms,
                          uint32_t *delay_ms)
{
    bool same = s->refusals && s->gpa == gpa && s->size == size &&
                s->to_private == to_private;

    *delay_ms = 0;
    if (reject == KVM_GMEM_OK) {
        s->refusals = 0;
        return true;
    }
    if (!same) {
        *s = (KvmGmemFaultRetry) { gpa, size, to_private, 0, now_ms };
    }
    s->refusals++;
    if (kvm_gmem_reject_to_guest(reject) != MAP_GPA_RANGE_EAGAIN ||
        now_ms - s->first_ms >= limit_ms) {
        return false;
    }
    if (s->refusals > 1) {
        *delay_ms = MIN(1u << MIN(s->refusals - 2, 6),
                        KVM_GMEM_FAULT_RETRY_MAX_DELAY_MS);
    }
    return true;
}

KvmGmemReject kvm_gmem_check_range(uint64_t gpa, uint64_t size,
                                   uint64_t page_size)
{
    if (!size) {
        return KVM_GMEM_REJECT_EMPTY;
    }
    if ((gpa | size) & (page_size - 1)) {
        return KVM_GMEM_REJECT_UNALIGNED;
    }
    /* The last byte must not wrap; a range may end exactly at 2^64. */
    if (size - 1 > UINT64_MAX - gpa) {
        return KVM_GMEM_REJECT_OVERFLOW;
    }
    return KVM_GMEM_OK;
}

KvmGmemReject kvm_gmem_decode_map_gpa_range(uint64_t gpa, uint64_t npages,
                                            uint64_t attrs,
                                            KvmGmemRange *range)
{
    uint64_t hint = attrs & MAP_GPA_RANGE_PAGE_SZ_MASK;
    uint64_t hint_size, size;
    KvmGmemReject reject;

    if (!npages) {
        return KVM_GMEM_REJECT_EMPTY;
    }
    /* npages * 4 KiB must itself fit in 64 bits. */
    if (npages > UINT64_MAX / KVM_GMEM_HC_PAGE_SIZE) {
        return KVM_GMEM_REJECT_OVERFLOW;
    }
    size = npages * KVM_GMEM_HC_PAGE_SIZE;
    reject = kvm_gmem_check_range(gpa, size, KVM_GMEM_HC_PAGE_SIZE);
    if (reject) {
        return reject;
    }
    if (attrs & ~(MAP_GPA_RANGE_PAGE_SZ_MASK | MAP_GPA_RANGE_ENCRYPTED)) {
        return KVM_GMEM_REJECT_RESERVED;
    }
    switch (hint) {
    case MAP_GPA_RANGE_PAGE_SZ_4K:
        hint_size = 4 * KiB;
        break;
    case MAP_GPA_RANGE_PAGE_SZ_2M:
        hint_size = 2 * MiB;
        break;
    case MAP_GPA_RANGE_PAGE_SZ_1G:
        hint_size = 1 * GiB;
        break;
    default:
        return KVM_GMEM_REJECT_RESERVED;
    }
    /* A large-page hint promises whole, aligned large pages. */
    if ((gpa | size) & (hint_size - 1)) {
        return KVM_GMEM_REJECT_HINT;
    }
    range->gpa = gpa;
    range->size = size;
    range->to_private = attrs & MAP_GPA_RANGE_ENCRYPTED;
    return KVM_GMEM_OK;
}
