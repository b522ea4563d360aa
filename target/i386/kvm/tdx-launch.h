/*
 * TDX launch through the launch plan: what tdx.c (patch 0013) and our
 * tdx-launch.c share. tdx.c keeps KVM_TDX_INIT_VM, the TD HOB and the
 * TDVF's memory, and calls in here for the commands that populate and
 * finalize the TD.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef I386_TDX_LAUNCH_H
#define I386_TDX_LAUNCH_H

#include "system/launch-plan.h"
#include "tdx.h"

/* Defined in tdx.c, which patch 0013 makes them non-static. */
int tdx_vm_ioctl(int cmd_id, __u32 flags, void *data, Error **errp);
int tdx_vcpu_ioctl(CPUState *cpu, int cmd_id, __u32 flags,
                   void *data, Error **errp);

/* For tdx-guest's class_init: measure-only and the build function. */
void tdx_launch_class_init(ObjectClass *oc);

/*
 * Complete, measure and execute the plan of @tdx, whose TDVF sections
 * have their sources and whose TD HOB is built: KVM_TDX_INIT_VCPU of
 * every vCPU, KVM_TDX_INIT_MEM_REGION of every section, then
 * KVM_TDX_FINALIZE_VM.
 */
bool tdx_launch(TdxGuest *tdx, Error **errp);

#endif
