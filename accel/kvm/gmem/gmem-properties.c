/*
 * KVM guest_memfd layer: its -accel kvm properties.
 *
 * They configure the conversion manager and are fixed once the
 * accelerator is initialised, as KVM's own properties are: the manager
 * reads them without a lock, and a policy changed under running
 * conversions (the discard worker, leases) would break their rules.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-visit-guest-memfd.h"
#include "qapi/visitor.h"
#include "qom/object.h"
#include "system/kvm_int.h"
#include "system/kvm-gmem.h"
#include "gmem-manager.h"

KvmGmemConfig kvm_gmem_config = {
    .lease_timeout_ms = 100,
    .fault_timeout_ms = 10000,
    .hugetlb_discard = true,
    .memslot_zap = KVM_MEMSLOT_ZAP_AUTO,
};

static bool gmem_may_set(Object *obj, Error **errp)
{
    if (KVM_STATE(obj)->fd != -1) {
        error_setg(errp, "Cannot set properties after the accelerator has "
                   "been initialized");
        return false;
    }
    return true;
}

static bool gmem_get_prefault(Object *obj, Error **errp)
{
    return kvm_gmem_config.prefault;
}

static void gmem_set_prefault(Object *obj, bool value, Error **errp)
{
    if (gmem_may_set(obj, errp)) {
        kvm_gmem_config.prefault = value;
    }
}

static void gmem_get_lease_timeout(Object *obj, Visitor *v, const char *name,
                                   void *opaque, Error **errp)
{
    visit_type_uint32(v, name, &kvm_gmem_config.lease_timeout_ms, errp);
}

static void gmem_set_lease_timeout(Object *obj, Visitor *v, const char *name,
                                   void *opaque, Error **errp)
{
    uint32_t value;

    if (gmem_may_set(obj, errp) && visit_type_uint32(v, name, &value, errp)) {
        kvm_gmem_config.lease_timeout_ms = value;
    }
}

static void gmem_get_fault_timeout(Object *obj, Visitor *v, const char *name,
                                   void *opaque, Error **errp)
{
    visit_type_uint32(v, name, &kvm_gmem_config.fault_timeout_ms, errp);
}

static void gmem_set_fault_timeout(Object *obj, Visitor *v, const char *name,
                                   void *opaque, Error **errp)
{
    uint32_t value;

    if (gmem_may_set(obj, errp) && visit_type_uint32(v, name, &value, errp)) {
        kvm_gmem_config.fault_timeout_ms = value;
    }
}

static bool gmem_get_hugetlb_discard(Object *obj, Error **errp)
{
    return kvm_gmem_config.hugetlb_discard;
}

static void gmem_set_hugetlb_discard(Object *obj, bool value, Error **errp)
{
    if (gmem_may_set(obj, errp)) {
        kvm_gmem_config.hugetlb_discard = value;
    }
}

static bool gmem_get_fault_injection(Object *obj, Error **errp)
{
    return kvm_gmem_config.fault_injection;
}

static void gmem_set_fault_injection(Object *obj, bool value, Error **errp)
{
    if (gmem_may_set(obj, errp)) {
        kvm_gmem_config.fault_injection = value;
    }
}

static int gmem_get_conversion(Object *obj, Error **errp)
{
    return kvm_gmem_config.conversion;
}

static void gmem_set_conversion(Object *obj, int value, Error **errp)
{
    if (gmem_may_set(obj, errp)) {
        kvm_gmem_config.conversion = value;
    }
}

static int gmem_get_discard(Object *obj, Error **errp)
{
    return kvm_gmem_config.discard;
}

static void gmem_set_discard(Object *obj, int value, Error **errp)
{
    if (gmem_may_set(obj, errp)) {
        kvm_gmem_config.discard = value;
    }
}

static int gmem_get_memslot_zap(Object *obj, Error **errp)
{
    return kvm_gmem_config.memslot_zap;
}

static void gmem_set_memslot_zap(Object *obj, int value, Error **errp)
{
    if (gmem_may_set(obj, errp)) {
        kvm_gmem_config.memslot_zap = value;
    }
}

bool kvm_gmem_legacy(void)
{
    return kvm_gmem_config.conversion == GUEST_MEMFD_CONVERSION_LEGACY;
}

void kvm_gmem_accel_class_init(ObjectClass *oc)
{
    object_class_property_add_enum(oc, "guest-memfd-conversion",
                                   "GuestMemfdConversion",
                                   &GuestMemfdConversion_lookup,
                                   gmem_get_conversion, gmem_set_conversion);
    object_class_property_set_description(oc, "guest-memfd-conversion",
        "Who handles private/shared conversions of guest_memfd memory: "
        "'manager' (default: validated, errors answered to the guest) or "
        "'legacy' (QEMU 10.2's kvm_convert_memory(); a bad request stops "
        "the VM)");
    object_class_property_add_enum(oc, "guest-memfd-discard",
                                   "GuestMemfdDiscard",
                                   &GuestMemfdDiscard_lookup,
                                   gmem_get_discard, gmem_set_discard);
    object_class_property_set_description(oc, "guest-memfd-discard",
        "What a conversion does with the side that became stale: 'sync' "
        "(default: free it before answering), 'async' (free it from a "
        "worker thread about 1 ms later, unless the range converts again "
        "first) or 'none' (keep it; uses up to twice the memory)");
    object_class_property_add_bool(oc, "guest-memfd-hugetlb-discard",
                                   gmem_get_hugetlb_discard,
                                   gmem_set_hugetlb_discard);
    object_class_property_set_description(oc, "guest-memfd-hugetlb-discard",
        "Whether a shared side of huge pages (hugetlbfs, memfd with "
        "hugetlb=on) gives back a huge page once all of it is private, and "
        "takes it from the pool again, or refuses, when part of it goes "
        "shared (default on); off keeps every huge page, as QEMU 10.2 does, "
        "at up to twice the memory");
    object_class_property_add_bool(oc, "guest-memfd-prefault",
                                   gmem_get_prefault, gmem_set_prefault);
    object_class_property_set_description(oc, "guest-memfd-prefault",
        "Map a range into the guest (KVM_PRE_FAULT_MEMORY) right after a "
        "hypercall converts it, as QEMU 10.2 does; off by default: the "
        "guest's first touch maps a page anyway, and pages it never "
        "touches then cost no memory");
    object_class_property_add(oc, "guest-memfd-lease-timeout", "uint32",
                              gmem_get_lease_timeout, gmem_set_lease_timeout,
                              NULL, NULL);
    object_class_property_set_description(oc, "guest-memfd-lease-timeout",
        "Milliseconds a conversion to private waits for host I/O (device "
        "DMA) on the range to finish before it answers the guest EAGAIN "
        "(default 100)");
    object_class_property_add(oc, "guest-memfd-fault-timeout", "uint32",
                              gmem_get_fault_timeout, gmem_set_fault_timeout,
                              NULL, NULL);
    object_class_property_set_description(oc, "guest-memfd-fault-timeout",
        "Milliseconds a memory-fault exit whose conversion is refused for a "
        "reason that may pass (host I/O on the range, no huge page in the "
        "pool) is retried, the guest entered again to fault again, before "
        "the VM stops with an internal error naming the reason (default "
        "10000; 0 stops at once)");
    object_class_property_add_bool(oc, "x-guest-memfd-fault-injection",
                                   gmem_get_fault_injection,
                                   gmem_set_fault_injection);
    object_class_property_set_description(oc,
        "x-guest-memfd-fault-injection",
        "For tests only: let the QMP command x-guest-memfd-inject-fault "
        "make the conversion manager's kernel calls fail (default off: "
        "the command is refused, so no QMP client can make a running VM's "
        "conversions fail)");
    object_class_property_add_enum(oc, "memslot-zap", "KvmMemslotZap",
                                   &KvmMemslotZap_lookup,
                                   gmem_get_memslot_zap,
                                   gmem_set_memslot_zap);
    object_class_property_set_description(oc, "memslot-zap",
        "What KVM invalidates when a memslot is deleted or moved: 'all' "
        "(KVM's default: every mapping of the VM, which the guest then "
        "re-faults), 'targeted' (only the slot's own) or 'auto' (default: "
        "targeted unless the machine has a VFIO device). Confidential VM "
        "types are always targeted");
}
