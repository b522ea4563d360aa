/*
 * The launch plan of a confidential guest: every command that populates
 * its private memory, in order, built before the first one runs.
 *
 * SEV-SNP (target/i386/sev-snp-launch.c, for sev.c) and TDX
 * (target/i386/kvm/tdx-launch.c, for tdx.c) add their operations here and
 * execute the plan through launch_plan_execute(), the only place that
 * issues their memory launch commands. The same plan yields the launch
 * measurement, so `measure-only=on` (a dry run with no KVM) prints what a
 * real launch of the same command line will measure.
 * docs/devel/launch-plan.rst has the design.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SYSTEM_LAUNCH_PLAN_H
#define SYSTEM_LAUNCH_PLAN_H

#include "qom/object.h"

typedef enum LaunchPlanType {
    LAUNCH_PLAN_SEV_SNP,
    LAUNCH_PLAN_TDX,
} LaunchPlanType;

typedef enum LaunchOpKind {
    LAUNCH_OP_SNP_UPDATE,       /* SNP_LAUNCH_UPDATE of one range */
    LAUNCH_OP_SNP_VMSA,         /* a vCPU's VMSA, added by LAUNCH_FINISH */
    LAUNCH_OP_SNP_FINISH,       /* SNP_LAUNCH_FINISH */
    LAUNCH_OP_TDX_INIT_VM,      /* KVM_TDX_INIT_VM */
    LAUNCH_OP_TDX_INIT_VCPU,    /* KVM_TDX_INIT_VCPU of one vCPU */
    LAUNCH_OP_TDX_MEM_REGION,   /* KVM_TDX_INIT_MEM_REGION of one range */
    LAUNCH_OP_TDX_FINALIZE,     /* KVM_TDX_FINALIZE_VM */
} LaunchOpKind;

typedef struct LaunchOp {
    LaunchOpKind kind;
    uint64_t gpa;               /* memory ops; the VMSA's digest GPA */
    uint64_t size;
    uint8_t page_type;          /* SNP: KVM_SEV_SNP_PAGE_TYPE_* */
    bool measure;               /* TDX: KVM_TDX_MEASURE_MEMORY_REGION */
    int cpu_index;              /* VMSA and INIT_VCPU, else -1 */
    void *src;                  /* 4 KiB aligned source of memory ops */
} LaunchOp;

typedef struct LaunchPlan LaunchPlan;

/*
 * The issuer of a plan's commands. issue() runs one operation and fails
 * with @errp set (the kernel's error in it); make_private() makes a range
 * private before a memory operation needs it. Tests give their own.
 */
typedef struct LaunchPlanBackend {
    int (*make_private)(uint64_t gpa, uint64_t size, void *opaque,
                        Error **errp);
    int (*issue)(const LaunchOp *op, void *opaque, Error **errp);
} LaunchPlanBackend;

/* make_private() of real launches: the conversion manager's launch entry. */
int launch_plan_gmem_make_private(uint64_t gpa, uint64_t size, void *opaque,
                                  Error **errp);

/*
 * Completes the plan of @cgs from the machine as built (firmware
 * metadata, vCPUs), after the operations added while the machine was
 * built; the same for a launch and a dry run.
 */
typedef bool (*LaunchPlanBuildFn)(Object *cgs, LaunchPlan *plan,
                                  Error **errp);

/* The VM's plan (one confidential guest per machine), made on first use. */
LaunchPlan *launch_plan_of(LaunchPlanType type);
LaunchPlan *launch_plan_new(LaunchPlanType type);
void launch_plan_free(LaunchPlan *plan);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LaunchPlan, launch_plan_free)

/*
 * Append an operation; memory operations must not overlap earlier ones
 * and must be 4 KiB aligned in GPA, size and source. A VMSA op's @src is
 * copied (one page).
 */
bool launch_plan_add(LaunchPlan *plan, const LaunchOp *op, Error **errp);
LaunchPlanType launch_plan_type(const LaunchPlan *plan);
unsigned launch_plan_length(const LaunchPlan *plan);
const LaunchOp *launch_plan_op(const LaunchPlan *plan, unsigned i);
/* The plan is complete: launch_plan_add() refuses from now on. */
void launch_plan_seal(LaunchPlan *plan);

/* Names for QMP, traces and errors. */
const char *launch_op_command(LaunchOpKind kind);
const char *snp_page_type_name(uint8_t page_type);
/* "snp-launch-update at 0x... +0x... (zero)"; g_free() it. */
char *launch_op_describe(const LaunchOp *op);
/* Populates guest memory (SNP_LAUNCH_UPDATE, TDX_INIT_MEM_REGION). */
bool launch_op_is_memory(const LaunchOp *op);
/* Has pages that the measurement covers: memory operations and VMSAs. */
bool launch_op_has_page(const LaunchOp *op);

/*
 * The launch digest (SNP) or MRTD (TDX) the plan yields, from the sources
 * of its measured operations (an SNP VMSA op's source is the VMSA page).
 */
void launch_plan_measure(const LaunchPlan *plan, uint8_t out[48]);

/* Issue every operation in order; see LaunchPlanBackend. */
bool launch_plan_execute(LaunchPlan *plan, const LaunchPlanBackend *be,
                         void *opaque, Error **errp);

/*
 * For sev-snp-guest and tdx-guest: the measure-only property, and the
 * function that completes their plan. Called from their class_init.
 */
void launch_plan_class_init(ObjectClass *oc, LaunchPlanType type,
                            LaunchPlanBuildFn build);

/* Whether this QEMU is a dry run (measure-only=on): no launch commands. */
bool launch_plan_dry_run(void);

/*
 * Complete the VM's plan with @cgs's build function, check that its
 * memory operations lie in guest RAM, measure it, and execute it with
 * @be. Returns false with @errp set on any failure.
 */
bool launch_plan_launch(LaunchPlanType type, Object *cgs,
                        const LaunchPlanBackend *be, void *opaque,
                        Error **errp);

#endif
