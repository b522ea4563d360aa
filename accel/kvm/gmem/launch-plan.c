/*
 * The launch plan: the ordered launch commands of a SEV-SNP or TDX guest,
 * their executor, and the measurement they yield. Plain data and two
 * loops, so tests/unit/test-kvm-gmem-launch-plan.c runs them against a
 * stand-in for the kernel; launch.c holds the VM's plan.
 *
 * Invariants:
 *  - the plan is complete before its first command is issued, and
 *    launch_plan_execute() is the only issuer of memory launch commands;
 *  - memory operations are 4 KiB aligned (GPA, size, source; Linux 7.0+
 *    refuses unaligned sources), do not wrap, and never overlap each
 *    other: a page is populated once;
 *  - before a memory operation is issued, the backend has made its range
 *    private (through the conversion manager: kvm_gmem_populate() needs
 *    the PRIVATE attribute), so the manager's record equals KVM's after
 *    launch;
 *  - the measurement is computed from the plan alone.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/memalign.h"
#include "qemu/range.h"
#include "system/launch-plan.h"
#include "launch-digest.h"

struct LaunchPlan {
    LaunchPlanType type;
    GArray *ops;                /* LaunchOp, in issue order */
    GPtrArray *pages;           /* page copies the plan owns (VMSAs) */
    bool sealed;                /* complete: no more operations */
};

const char *launch_op_command(LaunchOpKind kind)
{
    static const char *const name[] = {
        [LAUNCH_OP_SNP_UPDATE] = "snp-launch-update",
        [LAUNCH_OP_SNP_VMSA] = "snp-launch-update-vmsa",
        [LAUNCH_OP_SNP_FINISH] = "snp-launch-finish",
        [LAUNCH_OP_TDX_INIT_VM] = "tdx-init-vm",
        [LAUNCH_OP_TDX_INIT_VCPU] = "tdx-init-vcpu",
        [LAUNCH_OP_TDX_MEM_REGION] = "tdx-init-mem-region",
        [LAUNCH_OP_TDX_FINALIZE] = "tdx-finalize-vm",
    };

    return name[kind];
}

/* KVM_SEV_SNP_PAGE_TYPE_* */
const char *snp_page_type_name(uint8_t type)
{
    static const char *const name[] = {
        [1] = "normal", [2] = "vmsa", [3] = "zero", [4] = "unmeasured",
        [5] = "secrets", [6] = "cpuid",
    };

    return type < ARRAY_SIZE(name) && name[type] ? name[type] : "invalid";
}

bool launch_op_is_memory(const LaunchOp *op)
{
    return op->kind == LAUNCH_OP_SNP_UPDATE ||
           op->kind == LAUNCH_OP_TDX_MEM_REGION;
}

bool launch_op_has_page(const LaunchOp *op)
{
    return launch_op_is_memory(op) || op->kind == LAUNCH_OP_SNP_VMSA;
}

/* "snp-launch-update at 0x... +0x... (zero)", for errors. */
char *launch_op_describe(const LaunchOp *op)
{
    const char *cmd = launch_op_command(op->kind);

    if (op->kind == LAUNCH_OP_SNP_UPDATE) {
        return g_strdup_printf("%s at 0x%" PRIx64 " +0x%" PRIx64 " (%s)", cmd,
                               op->gpa, op->size,
                               snp_page_type_name(op->page_type));
    }
    if (op->kind == LAUNCH_OP_TDX_MEM_REGION) {
        return g_strdup_printf("%s at 0x%" PRIx64 " +0x%" PRIx64 " (%s)", cmd,
                               op->gpa, op->size,
                               op->measure ? "measured" : "not measured");
    }
    if (op->cpu_index >= 0) {
        return g_strdup_printf("%s of vCPU %d", cmd, op->cpu_index);
    }
    return g_strdup(cmd);
}

LaunchPlan *launch_plan_new(LaunchPlanType type)
{
    LaunchPlan *plan = g_new0(LaunchPlan, 1);

    plan->type = type;
    plan->ops = g_array_new(false, false, sizeof(LaunchOp));
    plan->pages = g_ptr_array_new_with_free_func(qemu_vfree);
    return plan;
}

void launch_plan_free(LaunchPlan *plan)
{
    if (plan) {
        g_array_free(plan->ops, true);
        g_ptr_array_free(plan->pages, true);
        g_free(plan);
    }
}

LaunchPlanType launch_plan_type(const LaunchPlan *plan)
{
    return plan->type;
}

void launch_plan_seal(LaunchPlan *plan)
{
    plan->sealed = true;
}

unsigned launch_plan_length(const LaunchPlan *plan)
{
    return plan->ops->len;
}

const LaunchOp *launch_plan_op(const LaunchPlan *plan, unsigned i)
{
    return &g_array_index(plan->ops, LaunchOp, i);
}

bool launch_plan_add(LaunchPlan *plan, const LaunchOp *op, Error **errp)
{
    g_autofree char *what = launch_op_describe(op);
    LaunchOp copy = *op;

    if (plan->sealed) {
        error_setg(errp, "launch plan: %s added after the plan was complete",
                   what);
        return false;
    }
    if (op->kind == LAUNCH_OP_SNP_VMSA) {
        /* The caller's VMSA is built on its stack: the plan keeps a copy. */
        copy.src = qemu_memalign(LAUNCH_PAGE_SIZE, LAUNCH_PAGE_SIZE);
        memcpy(copy.src, op->src, LAUNCH_PAGE_SIZE);
        copy.size = LAUNCH_PAGE_SIZE;
        g_ptr_array_add(plan->pages, copy.src);
    }
    if (launch_op_is_memory(op)) {
        if (!op->size || !QEMU_IS_ALIGNED(op->gpa | op->size,
                                          LAUNCH_PAGE_SIZE)) {
            error_setg(errp, "launch plan: %s is not a whole number of "
                       "4 KiB pages", what);
            return false;
        }
        if (op->gpa + op->size < op->gpa) {
            error_setg(errp, "launch plan: %s wraps past the end of the "
                       "address space", what);
            return false;
        }
        if (!op->src || !QEMU_PTR_IS_ALIGNED(op->src, LAUNCH_PAGE_SIZE)) {
            error_setg(errp, "launch plan: %s has no 4 KiB aligned source "
                       "(the kernel refuses others)", what);
            return false;
        }
        for (guint i = 0; i < plan->ops->len; i++) {
            const LaunchOp *o = launch_plan_op(plan, i);

            if (launch_op_is_memory(o) &&
                ranges_overlap(o->gpa, o->size, op->gpa, op->size)) {
                g_autofree char *other = launch_op_describe(o);

                error_setg(errp, "launch plan: %s overlaps operation %u, "
                           "%s", what, i, other);
                return false;
            }
        }
    }
    g_array_append_val(plan->ops, copy);
    return true;
}

void launch_plan_measure(const LaunchPlan *plan, uint8_t out[48])
{
    SnpLaunchDigest snp;
    TdxMrtd *mrtd = NULL;

    if (plan->type == LAUNCH_PLAN_SEV_SNP) {
        snp_launch_digest_init(&snp);
    } else {
        mrtd = tdx_mrtd_new();
    }
    for (guint i = 0; i < plan->ops->len; i++) {
        const LaunchOp *op = launch_plan_op(plan, i);

        if (!launch_op_has_page(op)) {
            continue;
        }
        for (uint64_t off = 0; off < op->size; off += LAUNCH_PAGE_SIZE) {
            const uint8_t *page = (const uint8_t *)op->src + off;

            if (plan->type == LAUNCH_PLAN_SEV_SNP) {
                uint8_t type = op->kind == LAUNCH_OP_SNP_VMSA ?
                               2 /* KVM_SEV_SNP_PAGE_TYPE_VMSA */ :
                               op->page_type;

                snp_launch_digest_page(&snp, op->gpa + off, type, page);
            } else {
                tdx_mrtd_page_add(mrtd, op->gpa + off);
                if (op->measure) {
                    tdx_mrtd_extend_page(mrtd, op->gpa + off, page);
                }
            }
        }
    }
    if (plan->type == LAUNCH_PLAN_SEV_SNP) {
        memcpy(out, snp.digest, LAUNCH_DIGEST_SIZE);
    } else {
        tdx_mrtd_finish(mrtd, out);
    }
}

bool launch_plan_execute(LaunchPlan *plan, const LaunchPlanBackend *be,
                         void *opaque, Error **errp)
{
    for (guint i = 0; i < plan->ops->len; i++) {
        const LaunchOp *op = launch_plan_op(plan, i);
        Error *err = NULL;

        if ((launch_op_is_memory(op) &&
             be->make_private(op->gpa, op->size, opaque, &err) < 0) ||
            be->issue(op, opaque, &err) < 0) {
            g_autofree char *what = launch_op_describe(op);

            if (!err) {
                error_setg(&err, "failed");     /* a backend said nothing */
            }
            error_propagate_prepend(errp, err, "launch operation %u, %s: ",
                                    i, what);
            return false;
        }
    }
    return true;
}

