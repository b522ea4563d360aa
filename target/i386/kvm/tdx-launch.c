/*
 * TDX's part of the launch plan: KVM_TDX_INIT_VM, one KVM_TDX_INIT_VCPU
 * per vCPU, one KVM_TDX_INIT_MEM_REGION per TDVF section in metadata
 * order (measured when the section has MR_EXTEND), KVM_TDX_FINALIZE_VM.
 *
 * A launch builds it from the TDVF metadata that x86_firmware_configure()
 * parsed; the dry run, which has no TDX VM for that code to see, parses
 * the same firmware image here with the same parser.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/memalign.h"
#include "qemu/units.h"
#include "hw/boards.h"
#include "hw/loader.h"
#include "hw/i386/pc.h"
#include "hw/i386/x86.h"
#include "system/launch-plan.h"
#include "tdx.h"
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

bool tdx_build_launch_plan(Object *cgs, LaunchPlan *plan, Error **errp)
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
