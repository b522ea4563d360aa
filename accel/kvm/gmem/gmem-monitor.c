/*
 * KVM guest_memfd layer: QMP and HMP.
 *
 * query-guest-memfd and info guest-memfd read the manager's state and
 * statistics in one consistent reading; guest-memfd-convert hands the
 * operator's request to the manager like a guest's.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-guest-memfd.h"
#include "monitor/hmp.h"
#include "monitor/monitor.h"
#include "qemu/bitops.h"
#include "system/kvm.h"
#include "system/kvm-gmem.h"
#include "system/kvm-memslot-zap.h"
#include "system/ramblock.h"
#include "gmem-kernel.h"
#include "gmem-manager.h"
#include "gmem-runs.h"

#define GMEM_MAX_LISTED_RANGES 1024

void qmp_guest_memfd_convert(uint64_t gpa, uint64_t size, bool private,
                             Error **errp)
{
    KvmGmemReject r;

    if (kvm_gmem_legacy()) {
        error_setg(errp, "guest-memfd-convert needs the conversion manager "
                   "(-accel kvm,guest-memfd-conversion=manager)");
        return;
    }
    r = kvm_gmem_convert_request(gpa, size, private, "qmp");
    if (r) {
        error_setg(errp, "cannot make 0x%" PRIx64 " +0x%" PRIx64 " %s: %s",
                   gpa, size, private ? "private" : "shared",
                   kvm_gmem_reject_name(r));
    }
}

/* The runs of equal state of @attr, at most GMEM_MAX_LISTED_RANGES. */
static void gmem_list_ranges(RamBlockAttributes *attr,
                             GuestMemfdBlockInfo *bi)
{
    const uint64_t bs = qemu_real_host_page_size();
    const unsigned long end = attr->bitmap_size;
    GuestMemfdRangeList **tail = &bi->ranges;
    unsigned long bit = 0, listed = 0;

    bi->has_ranges = true;
    bi->has_ranges_truncated = true;
    while (bit < end) {
        bool shared;
        unsigned long next = kvm_gmem_state_run_end(attr->bitmap, bit, end,
                                                    &shared);
        GuestMemfdRange *r;

        if (listed++ == GMEM_MAX_LISTED_RANGES) {
            bi->ranges_truncated = true;
            return;
        }
        r = g_new(GuestMemfdRange, 1);
        r->offset = (uint64_t)bit * bs;
        r->size = (uint64_t)(next - bit) * bs;
        r->q_private = !shared;
        QAPI_LIST_APPEND(tail, r);
        bit = next;
    }
}

typedef struct GmemQuery {
    GuestMemfdBlockInfoList **tail;
    bool ranges;
} GmemQuery;

static void gmem_query_block(RAMBlock *rb, const KvmGmemBlockStats *stats,
                             void *opaque)
{
    GmemQuery *q = opaque;
    GuestMemfdBlockInfo *bi = g_new0(GuestMemfdBlockInfo, 1);
    RamBlockAttributes *attr = rb->attributes;
    const uint64_t bs = qemu_real_host_page_size();

    bi->id = g_strdup(qemu_ram_get_idstr(rb));
    bi->size = (uint64_t)attr->bitmap_size * bs;
    bi->shared = bitmap_count_one(attr->bitmap, attr->bitmap_size) * bs;
    bi->q_private = bi->size - bi->shared;
    bi->conversions_to_private = stats->conversions_to_private;
    bi->conversions_to_shared = stats->conversions_to_shared;
    bi->bytes_to_private = stats->bytes_to_private;
    bi->bytes_to_shared = stats->bytes_to_shared;
    if (q->ranges) {
        gmem_list_ranges(attr, bi);
    }
    QAPI_LIST_APPEND(q->tail, bi);
}

GuestMemfdInfo *qmp_query_guest_memfd(bool has_ranges, bool ranges,
                                      Error **errp)
{
    GuestMemfdInfo *info = g_new0(GuestMemfdInfo, 1);
    GmemQuery q = { .tail = &info->blocks, .ranges = ranges };
    GuestMemfdRejects *rej = g_new0(GuestMemfdRejects, 1);
    KvmGmemStats s;

    kvm_gmem_read_stats(&s, gmem_query_block, &q);
    info->conversion = kvm_gmem_config.conversion;
    info->discard = kvm_gmem_config.discard;
    info->requests = s.requests;
    info->busy_ns = s.busy_ns;
    info->kernel_ns = s.kernel_ns;
    rej->empty = s.failures[KVM_GMEM_REJECT_EMPTY];
    rej->unaligned = s.failures[KVM_GMEM_REJECT_UNALIGNED];
    rej->overflow = s.failures[KVM_GMEM_REJECT_OVERFLOW];
    rej->reserved_bits = s.failures[KVM_GMEM_REJECT_RESERVED];
    rej->page_size_hint = s.failures[KVM_GMEM_REJECT_HINT];
    rej->not_guest_memfd = s.failures[KVM_GMEM_REJECT_NOT_GMEM];
    rej->kvm = s.failures[KVM_GMEM_REJECT_KVM];
    rej->leased = s.failures[KVM_GMEM_REJECT_LEASED];
    rej->listener = s.failures[KVM_GMEM_REJECT_LISTENER];
    rej->discard = s.failures[KVM_GMEM_REJECT_DISCARD];
    rej->no_memory = s.failures[KVM_GMEM_REJECT_NO_MEMORY];
    info->rejected = rej;
    info->discard_backlog = s.discard_backlog;
    info->discard_failures = s.discard_failures;
    info->rollback_failures = s.rollback_failures;
    info->leases = s.leases;
    info->lease_waits = s.lease_waits;
    info->hugetlb_discard = kvm_gmem_config.hugetlb_discard;
    info->hugetlb_freed = s.huge_freed;
    info->hugetlb_populate_failures = s.huge_populate_failures;
    for (int call = GUEST_MEMFD_KERNEL_CALL__MAX - 1; call >= 0; call--) {
        GuestMemfdKernelCallStats *c = g_new0(GuestMemfdKernelCallStats, 1);
        KvmGmemKernelStats k;

        kvm_gmem_kernel_read_stats(call, &k);
        *c = (GuestMemfdKernelCallStats) {
            .call = call, .calls = k.calls, .failures = k.failures,
            .ns = k.ns,
        };
        QAPI_LIST_PREPEND(info->kernel_calls, c);
    }
    info->memslot_zap = kvm_memslot_zap_query();
    return info;
}

void hmp_info_guest_memfd(Monitor *mon, const QDict *qdict)
{
    g_autoptr(GuestMemfdInfo) info = NULL;
    Error *err = NULL;
    GuestMemfdBlockInfoList *l;
    GuestMemfdRejects *r;

    info = qmp_query_guest_memfd(false, false, &err);
    if (hmp_handle_error(mon, err)) {
        return;
    }
    r = info->rejected;
    monitor_printf(mon, "conversion: %s, discard: %s, requests: %" PRIu64
                   " (%" PRIu64 " us converting, %" PRIu64 " us of it in the "
                   "kernel), discard backlog: %" PRIu64 " bytes\n",
                   GuestMemfdConversion_str(info->conversion),
                   GuestMemfdDiscard_str(info->discard), info->requests,
                   info->busy_ns / 1000, info->kernel_ns / 1000,
                   info->discard_backlog);
    monitor_printf(mon, "host I/O leases: %" PRIu64 " held, %" PRIu64
                   " conversions waited for one\n", info->leases,
                   info->lease_waits);
    monitor_printf(mon, "kernel failures: %" PRIu64 " discards to retry, %"
                   PRIu64 " runs not rolled back\n", info->discard_failures,
                   info->rollback_failures);
    monitor_printf(mon, "huge pages: %s, %" PRIu64 " bytes given back, "
                   "%" PRIu64 " times none to take\n",
                   info->hugetlb_discard ? "given back once private" : "kept",
                   info->hugetlb_freed, info->hugetlb_populate_failures);
    monitor_printf(mon, "rejected: empty %" PRIu64 ", unaligned %" PRIu64
                   ", overflow %" PRIu64 ", reserved-bits %" PRIu64
                   ", page-size-hint %" PRIu64 ", not-guest-memfd %" PRIu64
                   ", kvm %" PRIu64 ", leased %" PRIu64 ", listener %" PRIu64
                   ", discard %" PRIu64 ", no-memory %" PRIu64 "\n",
                   r->empty, r->unaligned, r->overflow, r->reserved_bits,
                   r->page_size_hint, r->not_guest_memfd, r->kvm, r->leased,
                   r->listener, r->discard, r->no_memory);
    if (info->memslot_zap) {
        KvmMemslotZapInfo *z = info->memslot_zap;

        monitor_printf(mon, "memslot-zap: %s, a memslot change zaps %s (%s);"
                       " KVM_X86_QUIRK_SLOT_ZAP_ALL %s\n",
                       KvmMemslotZap_str(z->policy),
                       z->zaps_all ? "the whole VM" : "only the slot",
                       z->reason,
                       z->quirk_disabled ? "disabled" :
                       z->quirk_supported ? "in place" :
                       "in place (the kernel cannot disable it)");
    }
    monitor_printf(mon, "kernel calls:");
    for (GuestMemfdKernelCallStatsList *k = info->kernel_calls; k;
         k = k->next) {
        GuestMemfdKernelCallStats *c = k->value;

        monitor_printf(mon, " %s %" PRIu64 " (%" PRIu64 " failed, %" PRIu64
                       " us)%s", GuestMemfdKernelCall_str(c->call), c->calls,
                       c->failures, c->ns / 1000, k->next ? "," : "\n");
    }
    for (l = info->blocks; l; l = l->next) {
        GuestMemfdBlockInfo *b = l->value;

        monitor_printf(mon, "%s: size %" PRIu64 ", private %" PRIu64
                       ", shared %" PRIu64 "; to private %" PRIu64
                       " times (%" PRIu64 " bytes), to shared %" PRIu64
                       " times (%" PRIu64 " bytes)\n", b->id, b->size,
                       b->q_private, b->shared, b->conversions_to_private,
                       b->bytes_to_private, b->conversions_to_shared,
                       b->bytes_to_shared);
    }
}
