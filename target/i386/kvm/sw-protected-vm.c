/*
 * KVM_X86_SW_PROTECTED_VM confidential guest support
 *
 * A KVM VM type (Linux CONFIG_KVM_SW_PROTECTED_VM) with private memory and
 * no memory encryption: private pages live in guest_memfd and the host
 * cannot map them, but nothing is measured or attested. It drives the same
 * userspace paths as SEV-SNP and TDX (guest_memfd for every RAMBlock,
 * KVM_SET_MEMORY_ATTRIBUTES, KVM_EXIT_MEMORY_FAULT, KVM_HC_MAP_GPA_RANGE)
 * without special hardware.
 *
 * Memory starts shared, so -kernel, option ROMs and firmware load as usual;
 * the guest converts what it wants private.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <linux/kvm_para.h>
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qom/object_interfaces.h"
#include "system/kvm.h"
#include "system/kvm_int.h"
#include "system/kvm-gmem.h"
#include "confidential-guest.h"
#include "sw-protected-vm.h"
#include "kvm_i386.h"
#include "hw/i386/x86.h"
#include "trace.h"

OBJECT_DECLARE_SIMPLE_TYPE(SwProtectedVm, SW_PROTECTED_VM)

struct SwProtectedVm {
    X86ConfidentialGuest parent_obj;
    Error *migration_blocker;
};

static int sw_protected_vm_kvm_type(X86ConfidentialGuest *cg)
{
    /*
     * kvm_get_vm_type() would only say "not supported"; name what the
     * kernel is missing instead.
     */
    if (!kvm_is_vm_type_supported(KVM_X86_SW_PROTECTED_VM)) {
        error_report("sw-protected-vm: KVM does not offer VM type "
                     "KVM_X86_SW_PROTECTED_VM; it needs a host kernel built "
                     "with CONFIG_KVM_SW_PROTECTED_VM=y and the TDP MMU "
                     "(kvm.tdp_mmu=Y)");
        exit(1);
    }
    return KVM_X86_SW_PROTECTED_VM;
}

static int sw_protected_vm_kvm_init(ConfidentialGuestSupport *cgs,
                                    Error **errp)
{
    KVMState *s = KVM_STATE(current_accel());
    X86MachineState *x86ms = X86_MACHINE(qdev_get_machine());
    int attrs = kvm_vm_check_extension(s, KVM_CAP_MEMORY_ATTRIBUTES);

    /*
     * SMRAM is an alias of low RAM at a second address, and one
     * guest_memfd range cannot back two memslots.
     */
    if (x86ms->smm == ON_OFF_AUTO_ON) {
        error_setg(errp, "sw-protected-vm: SMM is not supported: its SMRAM "
                   "aliases would map guest_memfd twice (use smm=off)");
        return -1;
    }
    x86ms->smm = ON_OFF_AUTO_OFF;

    if (!(attrs & KVM_MEMORY_ATTRIBUTE_PRIVATE)) {
        error_setg(errp, "sw-protected-vm: KVM offers no private memory "
                   "attribute (KVM_CAP_MEMORY_ATTRIBUTES = 0x%x); it needs "
                   "CONFIG_KVM_SW_PROTECTED_VM=y", attrs);
        return -1;
    }
    if (!kvm_check_extension(s, KVM_CAP_GUEST_MEMFD)) {
        error_setg(errp, "sw-protected-vm: KVM has no guest_memfd "
                   "(CONFIG_KVM_GUEST_MEMFD)");
        return -1;
    }
    /* The guest asks for conversions with KVM_HC_MAP_GPA_RANGE. */
    if (!kvm_enable_hypercall(BIT_ULL(KVM_HC_MAP_GPA_RANGE))) {
        error_setg(errp, "sw-protected-vm: KVM cannot exit to userspace on "
                   "KVM_HC_MAP_GPA_RANGE (KVM_CAP_EXIT_HYPERCALL)");
        return -1;
    }
    if (kvm_gmem_block_migration(&SW_PROTECTED_VM(cgs)->migration_blocker,
                                 "sw-protected-vm", errp) < 0) {
        return -1;
    }
    /* The guest boots from shared memory and converts what it wants. */
    kvm_gmem_set_initially_shared(true);
    trace_sw_protected_vm_kvm_init(attrs);
    cgs->ready = true;
    return 0;
}

static void sw_protected_vm_instance_init(Object *obj)
{
    ConfidentialGuestSupport *cgs = CONFIDENTIAL_GUEST_SUPPORT(obj);

    /* Every guest RAMBlock gets a guest_memfd for its private side. */
    cgs->require_guest_memfd = true;
}

static void sw_protected_vm_class_init(ObjectClass *oc, const void *data)
{
    ConfidentialGuestSupportClass *klass = CONFIDENTIAL_GUEST_SUPPORT_CLASS(oc);
    X86ConfidentialGuestClass *x86_klass = X86_CONFIDENTIAL_GUEST_CLASS(oc);

    klass->kvm_init = sw_protected_vm_kvm_init;
    x86_klass->kvm_type = sw_protected_vm_kvm_type;
}

static const TypeInfo sw_protected_vm_info = {
    .parent = TYPE_X86_CONFIDENTIAL_GUEST,
    .name = TYPE_SW_PROTECTED_VM,
    .instance_size = sizeof(SwProtectedVm),
    .instance_init = sw_protected_vm_instance_init,
    .class_init = sw_protected_vm_class_init,
    .interfaces = (const InterfaceInfo[]) {
        { TYPE_USER_CREATABLE },
        { }
    },
};

static void sw_protected_vm_register_types(void)
{
    type_register_static(&sw_protected_vm_info);
}

type_init(sw_protected_vm_register_types)
