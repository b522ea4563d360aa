/*
 * TDX's side of the launch plan: its build function (KVM_TDX_INIT_VM, one
 * KVM_TDX_INIT_VCPU per vCPU, one KVM_TDX_INIT_MEM_REGION per TDVF
 * section in metadata order, measured when the section has MR_EXTEND,
 * KVM_TDX_FINALIZE_VM) and its backend, which issues them through
 * tdx.c's ioctl helpers.
 *
 * Invariants:
 *  - a launch and a dry run build the same plan with the same code; a
 *    launch from the TDVF metadata that x86_firmware_configure() parsed,
 *    the dry run, which has no TDX VM for that code to see, from the same
 *    firmware image parsed here with the same parser;
 *  - only the plan's executor issues the commands, through
 *    tdx_launch_issue(), each range made private first; KVM_TDX_INIT_VM
 *    is issued by tdx.c when the first vCPU is created, as KVM requires,
 *    and the plan only checks that it was.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <linux/kvm.h>
#include "qapi/error.h"
#include "qemu/memalign.h"
#include "qemu/units.h"
#include "hw/boards.h"
#include "hw/loader.h"
#include "hw/i386/pc.h"
#include "hw/i386/x86.h"
#include "tdx-launch.h"

/* Dry run: the TDVF of the firmware image, with sources as a launch has. */
static bool tdx_dry_run_parse_tdvf(TdxFirmware *fw, Error **errp)
{
    X86MachineState *x86ms = X86_MACHINE(qdev_get_machine());
    uint64_t size = memory_region_size(&x86ms->bios);
    /* Without a TDX VM the image is an ordinary ROM below 4 GiB. */
    void *rom = size ? rom_ptr(4 * GiB - size, size) : NULL;
    uint8_t *image;
    TdxFirmwareEntry *e;

    if (!rom) {
        error_setg(errp, "TDX: no firmware image (-bios) to launch");
        return false;
    }
    /* A launch reads it from guest RAM, which is page aligned. */
    image = qemu_memalign(qemu_real_host_page_size(), size);
    memcpy(image, rom, size);
    /* As x86_firmware_configure() does for a TDX VM. */
    pc_system_parse_ovmf_flash(image, size);
    if (tdvf_parse_metadata(fw, image, size)) {
        error_setg(errp, "TDX: the firmware has no valid TDVF metadata");
        return false;
    }
    for_each_tdx_fw_entry(fw, e) {
        if (e->type == TDVF_SECTION_TYPE_BFV ||
            e->type == TDVF_SECTION_TYPE_CFV) {
            if ((uint64_t)e->data_offset + e->size > size) {
                error_setg(errp, "TDX: TDVF section at 0x%" PRIx64 " +0x%"
                           PRIx64 " reads past the end of the firmware image",
                           e->address, e->size);
                return false;
            }
            e->mem_ptr = image + e->data_offset;
        } else {
            /* TD HOB and temporary memory: zeros, and not measured. */
            e->mem_ptr = qemu_memalign(qemu_real_host_page_size(), e->size);
            memset(e->mem_ptr, 0, e->size);
        }
    }
    return true;
}

/* The whole plan, once the machine is built; a dry run's too. */
static bool tdx_build_launch_plan(Object *cgs, LaunchPlan *plan,
                                  Error **errp)
{
    TdxFirmware *fw = &TDX_GUEST(cgs)->tdvf;
    MachineState *ms = MACHINE(qdev_get_machine());
    LaunchOp op = { .kind = LAUNCH_OP_TDX_INIT_VM, .cpu_index = -1 };
    TdxFirmwareEntry *e;
    CPUState *cs;

    if (launch_plan_dry_run() && !tdx_dry_run_parse_tdvf(fw, errp)) {
        return false;
    }
    if (ms->smp.max_cpus != ms->smp.cpus) {
        error_setg(errp, "TDX initializes every vCPU at launch and cannot "
                   "add vCPUs later: -smp maxcpus (%u) must equal the vCPU "
                   "count (%u)", ms->smp.max_cpus, ms->smp.cpus);
        return false;
    }
    /* Issued when the first vCPU was created, as KVM requires. */
    if (!launch_plan_add(plan, &op, errp)) {
        return false;
    }
    CPU_FOREACH(cs) {
        op = (LaunchOp) {
            .kind = LAUNCH_OP_TDX_INIT_VCPU,
            .cpu_index = cs->cpu_index,
        };
        if (!launch_plan_add(plan, &op, errp)) {
            return false;
        }
    }
    for_each_tdx_fw_entry(fw, e) {
        op = (LaunchOp) {
            .kind = LAUNCH_OP_TDX_MEM_REGION,
            .gpa = e->address,
            .size = e->size,
            .measure = e->attributes & TDVF_SECTION_ATTRIBUTES_MR_EXTEND,
            .cpu_index = -1,
            .src = e->mem_ptr,
        };
        if (!launch_plan_add(plan, &op, errp)) {
            return false;
        }
    }
    op = (LaunchOp) { .kind = LAUNCH_OP_TDX_FINALIZE, .cpu_index = -1 };
    return launch_plan_add(plan, &op, errp);
}

void tdx_launch_class_init(ObjectClass *oc)
{
    launch_plan_class_init(oc, LAUNCH_PLAN_TDX, tdx_build_launch_plan);
}

/* KVM_TDX_INIT_VCPU's argument: the GPA of the TD HOB. */
static int tdx_launch_init_vcpu(TdxGuest *tdx, int cpu_index, Error **errp)
{
    TdxFirmwareEntry *e;

    for_each_tdx_fw_entry(&tdx->tdvf, e) {
        if (e->type == TDVF_SECTION_TYPE_TD_HOB) {
            return tdx_vcpu_ioctl(qemu_get_cpu(cpu_index), KVM_TDX_INIT_VCPU,
                                  0, (void *)(uintptr_t)e->address, errp);
        }
    }
    error_setg(errp, "TDVF metadata doesn't specify TD_HOB location.");
    return -1;
}

/*
 * Issued again while the kernel answers EAGAIN or EINTR (a signal: Linux
 * copies its progress back into the region), as upstream's loop did.
 */
static int tdx_launch_init_mem_region(const LaunchOp *op, Error **errp)
{
    struct kvm_tdx_init_mem_region region = {
        .source_addr = (uintptr_t)op->src,
        .gpa = op->gpa,
        .nr_pages = op->size >> 12,
    };
    Error *local_err = NULL;
    int r;

    do {
        error_free(local_err);
        local_err = NULL;
        r = tdx_vcpu_ioctl(first_cpu, KVM_TDX_INIT_MEM_REGION,
                           op->measure ? KVM_TDX_MEASURE_MEMORY_REGION : 0,
                           &region, &local_err);
    } while (r == -EAGAIN || r == -EINTR);
    error_propagate(errp, local_err);
    return r;
}

/*
 * TDX_OPERAND_BUSY is EBUSY, with the TD left as it was
 * (tdx_td_finalize()): retried, a bounded number of times.
 */
static int tdx_launch_finalize(Error **errp)
{
    Error *local_err = NULL;
    int r;

    for (int tries = 100; tries; tries--) {
        error_free(local_err);
        local_err = NULL;
        r = tdx_vm_ioctl(KVM_TDX_FINALIZE_VM, 0, NULL, &local_err);
        if (r != -EBUSY) {
            break;
        }
        g_usleep(1000);
    }
    error_propagate(errp, local_err);
    return r;
}

/* Issue one operation of the plan (the backend's issue()). */
static int tdx_launch_issue(const LaunchOp *op, void *opaque, Error **errp)
{
    TdxGuest *tdx = opaque;

    switch (op->kind) {
    case LAUNCH_OP_TDX_INIT_VM:
        /* Done by tdx_pre_create_vcpu(): KVM needs it before any vCPU. */
        if (!tdx->initialized) {
            error_setg(errp, "KVM_TDX_INIT_VM was not issued");
            return -1;
        }
        return 0;
    case LAUNCH_OP_TDX_INIT_VCPU:
        return tdx_launch_init_vcpu(tdx, op->cpu_index, errp);
    case LAUNCH_OP_TDX_MEM_REGION:
        return tdx_launch_init_mem_region(op, errp);
    case LAUNCH_OP_TDX_FINALIZE:
        return tdx_launch_finalize(errp);
    default:
        error_setg(errp, "not a TDX launch command");
        return -1;
    }
}

bool tdx_launch(TdxGuest *tdx, Error **errp)
{
    static const LaunchPlanBackend backend = {
        .make_private = launch_plan_gmem_make_private,
        .issue = tdx_launch_issue,
    };

    return launch_plan_launch(LAUNCH_PLAN_TDX, OBJECT(tdx), &backend, tdx,
                              errp);
}
