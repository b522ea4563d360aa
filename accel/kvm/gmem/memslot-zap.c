/*
 * KVM guest_memfd layer: what KVM zaps when a memslot goes away.
 *
 * When a memslot is deleted or moved, KVM zaps every SPTE of an ordinary
 * VM (KVM_X86_DEFAULT_VM), and the guest re-faults all of its memory;
 * with KVM_X86_QUIRK_SLOT_ZAP_ALL disabled, only the slot's own. Other VM
 * types (SEV-SNP, TDX, sw-protected-vm) always get the latter
 * (kvm_arch_flush_shadow_memslot() in Linux). The quirk stays KVM's
 * default because zapping only the slot broke an assigned GPU in 2019,
 * never explained; so auto disables it only for machines without VFIO
 * devices.
 *
 * Invariants: the policy is fixed once the accelerator is initialised;
 * the choice is made once, at kvm_init() for all and targeted, when the
 * machine is complete for auto (cold-plugged devices exist then), and
 * never undone (the kernel cannot re-enable a quirk): a VFIO device that
 * arrives in a VM zapping only the slot gets a warning, nothing more.
 * zap_state.zaps_all always says what KVM does on the next slot
 * deletion.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qemu/notify.h"
#include "hw/qdev-core.h"
#include "system/system.h"
#include "system/kvm_int.h"
#include "system/kvm-memslot-zap.h"
#include "gmem-manager.h"
#include "trace.h"

/* The VFIO PCI devices: vfio-pci, vfio-user-pci (hw/vfio/types.h). */
#define VFIO_PCI_DEVICE_TYPE "vfio-pci-device"

static struct {
    bool initialised;
    KVMState *kvm;
    bool quirk_supported;
    bool quirk_disabled;
    bool zaps_all;
    char *reason;
    Notifier machine_done;
    DeviceListener vfio_arrival;
} zap_state;

static void zap_decided(bool zaps_all, char *reason)
{
    zap_state.zaps_all = zaps_all;
    g_free(zap_state.reason);
    zap_state.reason = reason;
    trace_kvm_memslot_zap(KvmMemslotZap_str(kvm_gmem_config.memslot_zap),
                          zaps_all, reason);
}

/* A VFIO device realized while KVM zaps only the slot: say so, once each. */
static void zap_vfio_arrived(DeviceListener *listener, DeviceState *dev)
{
    const char *name;

    if (!object_dynamic_cast(OBJECT(dev), VFIO_PCI_DEVICE_TYPE)) {
        return;
    }
    name = object_get_canonical_path_component(OBJECT(dev));
    warn_report("memslot-zap=%s: VFIO device %s in a VM whose memslot "
                "changes zap only the slot's mappings (zapping all of them, "
                "KVM's default, cannot be restored)",
                KvmMemslotZap_str(kvm_gmem_config.memslot_zap), name);
    zap_decided(false, g_strdup_printf("%s; VFIO device %s added since",
                                       zap_state.reason, name));
}

static int zap_disable_quirk(void)
{
    int ret = kvm_vm_enable_cap(zap_state.kvm, KVM_CAP_DISABLE_QUIRKS2, 0,
                                KVM_X86_QUIRK_SLOT_ZAP_ALL);

    zap_state.quirk_disabled = !ret;
    if (zap_state.quirk_disabled) {
        zap_state.vfio_arrival.realize = zap_vfio_arrived;
        device_listener_register(&zap_state.vfio_arrival);
    }
    return ret;
}

static int zap_find_vfio(Object *obj, void *opaque)
{
    const char **found = opaque;

    if (object_dynamic_cast(obj, VFIO_PCI_DEVICE_TYPE)) {
        *found = object_get_canonical_path_component(obj);
        return 1;
    }
    return 0;
}

/* auto: the machine's cold-plugged devices exist now. */
static void zap_auto_decide(Notifier *n, void *unused)
{
    const char *vfio = NULL;
    int ret;

    object_child_foreach_recursive(OBJECT(qdev_get_machine()),
                                   zap_find_vfio, &vfio);
    if (vfio) {
        zap_decided(true, g_strdup_printf("auto: VFIO device %s assigned",
                                          vfio));
        return;
    }
    ret = zap_disable_quirk();
    if (ret) {
        warn_report("memslot-zap=auto: KVM refused to disable "
                    "KVM_X86_QUIRK_SLOT_ZAP_ALL (%s); every memslot change "
                    "zaps the whole VM", strerror(-ret));
        zap_decided(true, g_strdup_printf("auto: KVM refused to disable the "
                                          "quirk: %s", strerror(-ret)));
        return;
    }
    zap_decided(false, g_strdup("auto: no VFIO device"));
}

bool kvm_memslot_zap_init(KVMState *s, int vm_type, Error **errp)
{
    int quirks = kvm_vm_check_extension(s, KVM_CAP_DISABLE_QUIRKS2);
    int ret;

    zap_state.initialised = true;
    zap_state.kvm = s;
    zap_state.quirk_supported = quirks > 0 &&
                                (quirks & KVM_X86_QUIRK_SLOT_ZAP_ALL);

    if (vm_type != KVM_X86_DEFAULT_VM) {
        /* KVM never zaps the whole VM for these; there is nothing to do. */
        zap_decided(false, g_strdup_printf("VM type %d: KVM zaps only the "
                                           "slot", vm_type));
        return true;
    }
    switch (kvm_gmem_config.memslot_zap) {
    case KVM_MEMSLOT_ZAP_ALL:
        zap_decided(true, g_strdup("memslot-zap=all"));
        return true;
    case KVM_MEMSLOT_ZAP_TARGETED:
        if (!zap_state.quirk_supported) {
            error_setg(errp, "memslot-zap=targeted: this kernel cannot limit "
                       "memslot zapping to the slot (KVM_CAP_DISABLE_QUIRKS2 "
                       "lacks KVM_X86_QUIRK_SLOT_ZAP_ALL)");
            return false;
        }
        ret = zap_disable_quirk();
        if (ret) {
            error_setg_errno(errp, -ret, "memslot-zap=targeted: cannot "
                             "disable KVM_X86_QUIRK_SLOT_ZAP_ALL");
            return false;
        }
        zap_decided(false, g_strdup("memslot-zap=targeted"));
        return true;
    default:
        if (!zap_state.quirk_supported) {
            zap_decided(true, g_strdup("auto: the kernel cannot zap only "
                                       "the slot"));
            return true;
        }
        /* Until the machine is complete, KVM's default holds. */
        zap_decided(true, g_strdup("auto: not decided yet"));
        zap_state.machine_done.notify = zap_auto_decide;
        qemu_add_machine_init_done_notifier(&zap_state.machine_done);
        return true;
    }
}

KvmMemslotZapInfo *kvm_memslot_zap_query(void)
{
    KvmMemslotZapInfo *info;

    if (!zap_state.initialised) {
        return NULL;
    }
    info = g_new0(KvmMemslotZapInfo, 1);
    info->policy = kvm_gmem_config.memslot_zap;
    info->quirk_supported = zap_state.quirk_supported;
    info->quirk_disabled = zap_state.quirk_disabled;
    info->zaps_all = zap_state.zaps_all;
    info->reason = g_strdup(zap_state.reason);
    return info;
}
