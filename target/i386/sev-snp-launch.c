/*
 * SEV-SNP's side of the launch plan: its build function (the pages sev.c
 * added while the machine was built, then the firmware's SEV metadata
 * sections, a VMSA per vCPU and SNP_LAUNCH_FINISH) and its backend, which
 * issues the plan's commands through sev.c's own code.
 *
 * Invariants:
 *  - the plan holds, in order: the pages sev.c added (the firmware, IGVM
 *    pages), the SEV metadata sections in table order, the VMSAs in vCPU
 *    creation order, SNP_LAUNCH_FINISH;
 *  - a launch and a dry run build the same plan with the same code; the
 *    dry run skips only what needs KVM and is not measured (the contents
 *    of the CPUID page);
 *  - only the plan's executor issues the commands, through
 *    snp_launch_issue(), each range made private first; the VMSAs are not
 *    issued: Linux adds them inside SNP_LAUNCH_FINISH.
 *
 * The metadata walk is upstream's snp_populate_metadata_pages() (sev.c),
 * moved here, with errors instead of asserts and exits.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <linux/kvm.h>
#include "qapi/error.h"
#include "hw/boards.h"
#include "hw/core/cpu.h"
#include "hw/i386/pc.h"
#include "hw/i386/x86.h"
#include "monitor/monitor.h"
#include "system/memory.h"
#include "cpu.h"
#include "sev.h"
#include "sev-snp-launch.h"
#include "trace.h"

/* The GPA the digest records for every VMSA (Linux: INITIAL_VMSA_GPA). */
#define SNP_VMSA_DIGEST_GPA     0xfffffffff000ULL

/* What sev.c handed over before the plan is built. */
static struct {
    const void *hashes;         /* the kernel hashes table, or NULL */
    size_t hashes_size;
    uint32_t hashes_offset;     /* its offset in the hashes page */
    uint64_t sev_features;      /* given to KVM_SEV_INIT2; 0 in a dry run */
} snp;

/* The launch being executed: how the backend reaches the firmware. */
typedef struct SnpLaunch {
    Object *cgs;
    SevSnpGuestState *sev_snp;
    int sev_fd;
    struct kvm_sev_snp_launch_finish *finish;
} SnpLaunch;

bool sev_snp_plan_add_update(uint64_t gpa, void *hva, uint64_t len,
                             uint8_t page_type, Error **errp)
{
    LaunchOp op = {
        .kind = LAUNCH_OP_SNP_UPDATE,
        .gpa = gpa,
        .size = len,
        .page_type = page_type,
        .cpu_index = -1,
        .src = hva,
    };

    return launch_plan_add(launch_plan_of(LAUNCH_PLAN_SEV_SNP), &op, errp);
}

void sev_snp_plan_kernel_hashes(const void *table, size_t size,
                                uint32_t offset)
{
    snp.hashes = table;
    snp.hashes_size = size;
    snp.hashes_offset = offset;
}

/* KVM_SEV_SNP_PAGE_TYPE_* of a SEV metadata section. */
static uint8_t snp_metadata_page_type(uint32_t desc_type)
{
    switch (desc_type) {
    case SEV_DESC_TYPE_SNP_SECRETS:
        return KVM_SEV_SNP_PAGE_TYPE_SECRETS;
    case SEV_DESC_TYPE_CPUID:
        return KVM_SEV_SNP_PAGE_TYPE_CPUID;
    default:
        /* SNP_SEC_MEM: unmeasured, prevalidated memory, as a zero page */
        return KVM_SEV_SNP_PAGE_TYPE_ZERO;
    }
}

/*
 * The kernel hashes section: with kernel-hashes=on, a page that is zero
 * but for the table, measured as a normal page; otherwise a zero page.
 */
static bool snp_plan_add_kernel_hashes(Object *cgs,
                                       const OvmfSevMetadataDesc *d,
                                       uint8_t *hva, Error **errp)
{
    uint8_t type = KVM_SEV_SNP_PAGE_TYPE_ZERO;

    if (object_property_get_bool(cgs, "kernel-hashes", &error_abort)) {
        if (!snp.hashes) {
            error_setg(errp, "SEV-SNP: kernel-hashes=on needs -kernel with "
                       "a bzImage: there is nothing to hash");
            return false;
        }
        if (snp.hashes_offset + snp.hashes_size > d->len) {
            error_setg(errp, "SEV-SNP: the firmware's kernel hashes page at "
                       "0x%x +0x%x cannot hold the hashes at offset 0x%x",
                       d->base, d->len, snp.hashes_offset);
            return false;
        }
        memset(hva, 0, d->len);
        memcpy(hva + snp.hashes_offset, snp.hashes, snp.hashes_size);
        type = KVM_SEV_SNP_PAGE_TYPE_NORMAL;
    }
    return sev_snp_plan_add_update(d->base, hva, d->len, type, errp);
}

/* One SEV metadata section. */
static bool snp_plan_add_section(Object *cgs, const OvmfSevMetadataDesc *d,
                                 Error **errp)
{
    uint8_t type = snp_metadata_page_type(d->type);
    MemoryRegion *mr;
    void *hva = gpa2hva(&mr, d->base, d->len, errp);

    if (!hva) {
        error_prepend(errp, "SEV-SNP: Failed to get HVA for GPA 0x%x sz "
                      "0x%x: ", d->base, d->len);
        return false;
    }
    memory_region_unref(mr);    /* guest RAM, there as long as the VM */
    if (d->type == SEV_DESC_TYPE_SNP_KERNEL_HASHES) {
        return snp_plan_add_kernel_hashes(cgs, d, hva, errp);
    }
    if (type == KVM_SEV_SNP_PAGE_TYPE_CPUID && !launch_plan_dry_run()) {
        /* sev.c fills the page from KVM's CPUID and adds it. */
        return !snp_launch_update_cpuid(d->base, hva, d->len, errp);
    }
    /* The dry run's CPUID page too: SNP does not measure its contents. */
    return sev_snp_plan_add_update(d->base, hva, d->len, type, errp);
}

/*
 * The firmware's SEV metadata sections, which the hypervisor populates
 * before the launch finishes: the secrets and CPUID pages among them.
 */
static bool snp_plan_add_metadata(Object *cgs, Error **errp)
{
    OvmfSevMetadata *metadata = pc_system_get_ovmf_sev_metadata_ptr();
    bool hashes_placed = false;

    if (!metadata) {
        error_setg(errp, "SEV-SNP: the firmware has no SEV metadata "
                   "(OVMF's SEV metadata GUID), so its launch pages "
                   "are unknown");
        return false;
    }
    for (uint32_t i = 0; i < metadata->num_desc; i++) {
        const OvmfSevMetadataDesc *d = &metadata->descs[i];

        if (!snp_plan_add_section(cgs, d, errp)) {
            return false;
        }
        hashes_placed |= d->type == SEV_DESC_TYPE_SNP_KERNEL_HASHES;
    }
    if (snp.hashes && !hashes_placed) {
        error_setg(errp, "SEV-SNP: kernel-hashes=on, but the firmware's SEV "
                   "metadata has no kernel hashes page");
        return false;
    }
    return true;
}

/*
 * Every vCPU's VMSA, as Linux builds it from the vCPU's state and
 * @sev_features, then SNP_LAUNCH_FINISH: the end of the plan.
 */
static bool snp_plan_add_vmsas(LaunchPlan *plan, uint64_t sev_features,
                               Error **errp)
{
    MachineState *ms = MACHINE(qdev_get_machine());
    g_autofree void *page = g_malloc(SEV_SNP_VMSA_SIZE);
    LaunchOp finish = {
        .kind = LAUNCH_OP_SNP_FINISH,
        .cpu_index = -1,
    };
    CPUState *cs;

    if (ms->smp.max_cpus != ms->smp.cpus) {
        error_setg(errp, "SEV-SNP measures one VMSA per vCPU at launch and "
                   "cannot add vCPUs later: -smp maxcpus (%u) must equal "
                   "the vCPU count (%u)", ms->smp.max_cpus, ms->smp.cpus);
        return false;
    }
    /* Linux measures them in vCPU creation order, which is cpu_index. */
    CPU_FOREACH(cs) {
        LaunchOp op = {
            .kind = LAUNCH_OP_SNP_VMSA,
            .gpa = SNP_VMSA_DIGEST_GPA,
            .size = SEV_SNP_VMSA_SIZE,
            .cpu_index = cs->cpu_index,
            .src = page,
        };

        sev_snp_build_vmsa(cs, sev_features, page);
        if (!launch_plan_add(plan, &op, errp)) {
            return false;
        }
    }
    return launch_plan_add(plan, &finish, errp);
}

/* The rest of the plan, once the machine is built; a dry run's too. */
static bool snp_build_launch_plan(Object *cgs, LaunchPlan *plan,
                                  Error **errp)
{
    bool igvm = X86_MACHINE(qdev_get_machine())->igvm;

    if (igvm && launch_plan_dry_run()) {
        /* sev.c adds an IGVM file's pages only while it launches. */
        error_setg(errp, "measure-only=on cannot measure an IGVM launch");
        return false;
    }
    /* An IGVM file populates the metadata pages itself. */
    if (!igvm && !snp_plan_add_metadata(cgs, errp)) {
        return false;
    }
    /* KVM adds SNP_ACTIVE to the features QEMU passes with INIT2. */
    return snp_plan_add_vmsas(plan, SVM_SEV_FEAT_SNP_ACTIVE |
                              snp.sev_features, errp);
}

void sev_snp_launch_class_init(ObjectClass *oc)
{
    launch_plan_class_init(oc, LAUNCH_PLAN_SEV_SNP, snp_build_launch_plan);
}

/* Upstream's trace of SNP_LAUNCH_FINISH, from the object's properties. */
static void snp_trace_launch_finish(Object *cgs)
{
    if (trace_event_get_state_backends(TRACE_KVM_SEV_SNP_LAUNCH_FINISH)) {
        g_autofree char *id_block = object_property_get_str(cgs, "id-block",
                                                            NULL);
        g_autofree char *id_auth = object_property_get_str(cgs, "id-auth",
                                                           NULL);
        g_autofree char *host_data = object_property_get_str(cgs,
                                                             "host-data",
                                                             NULL);

        trace_kvm_sev_snp_launch_finish(id_block, id_auth, host_data);
    }
}

/* Issue one operation of the plan (the backend's issue()). */
static int snp_launch_issue(const LaunchOp *op, void *opaque, Error **errp)
{
    SnpLaunch *l = opaque;
    SevLaunchUpdateData data = {
        .gpa = op->gpa, .hva = op->src, .len = op->size,
        .type = op->page_type,
    };
    const char *cmd = "SNP_LAUNCH_UPDATE";
    int ret, fw_error = 0;

    switch (op->kind) {
    case LAUNCH_OP_SNP_UPDATE:
        ret = sev_snp_launch_update(l->sev_snp, &data);
        fw_error = data.fw_error;
        break;
    case LAUNCH_OP_SNP_VMSA:
        return 0;       /* the kernel adds it inside SNP_LAUNCH_FINISH */
    case LAUNCH_OP_SNP_FINISH:
        cmd = "SNP_LAUNCH_FINISH";
        snp_trace_launch_finish(l->cgs);
        ret = sev_ioctl(l->sev_fd, KVM_SEV_SNP_LAUNCH_FINISH, l->finish,
                        &fw_error);
        break;
    default:
        error_setg(errp, "not a SEV-SNP launch command");
        return -1;
    }
    if (ret) {
        error_setg(errp, "%s failed: %s, firmware error %d '%s'", cmd,
                   strerror(ret < 0 ? -ret : EIO), fw_error,
                   fw_error_to_str(fw_error));
        return -1;
    }
    return 0;
}

bool sev_snp_launch(Object *cgs, int sev_fd, uint64_t sev_features,
                    struct kvm_sev_snp_launch_finish *finish, Error **errp)
{
    static const LaunchPlanBackend backend = {
        .make_private = launch_plan_gmem_make_private,
        .issue = snp_launch_issue,
    };
    SnpLaunch l = {
        .cgs = cgs,
        .sev_snp = OBJECT_CHECK(SevSnpGuestState, cgs, TYPE_SEV_SNP_GUEST),
        .sev_fd = sev_fd,
        .finish = finish,
    };

    snp.sev_features = sev_features;
    return launch_plan_launch(LAUNCH_PLAN_SEV_SNP, cgs, &backend, &l, errp);
}
