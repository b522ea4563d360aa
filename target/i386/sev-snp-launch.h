/*
 * SEV-SNP launch through the launch plan: what sev.c (patch 0012) and
 * our sev-snp-launch.c and sev-snp-vmsa.c share.
 *
 * sev.c keeps the code of the commands themselves (SNP_LAUNCH_UPDATE's
 * loop, the CPUID page, the kernel hashes table, the firmware's pages)
 * and only calls in here: a page it used to queue for SNP_LAUNCH_UPDATE
 * becomes an operation of the plan, the kernel hashes table is handed
 * over when it is built, and its launch finish runs sev_snp_launch().
 * The rest (the SEV metadata walk, the VMSAs, the plan's backend) is
 * ours.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef I386_SEV_SNP_LAUNCH_H
#define I386_SEV_SNP_LAUNCH_H

#include "exec/hwaddr.h"
#include "system/launch-plan.h"
#include "system/kvm-gmem.h"

typedef struct SevSnpGuestState SevSnpGuestState;
struct kvm_sev_snp_launch_finish;

/* One SNP_LAUNCH_UPDATE, as sev_snp_launch_update() issues it. */
typedef struct SevLaunchUpdateData {
    hwaddr gpa;
    void *hva;
    size_t len;
    int type;                   /* KVM_SEV_SNP_PAGE_TYPE_* */
    int fw_error;               /* out: the firmware's code if it failed */
} SevLaunchUpdateData;

/*
 * Defined in sev.c, which patch 0012 makes them non-static for the
 * plan's backend. sev_snp_launch_update() expects the range private.
 */
int sev_ioctl(int fd, int cmd, void *data, int *error);
const char *fw_error_to_str(int code);
int sev_snp_launch_update(SevSnpGuestState *sev_snp_guest,
                          SevLaunchUpdateData *data);
int snp_launch_update_cpuid(uint32_t cpuid_addr, void *hva,
                            size_t cpuid_len, Error **errp);

/* sev-snp-launch.c */

/* Append SNP_LAUNCH_UPDATE of [@gpa, @gpa + @len) from @hva. */
bool sev_snp_plan_add_update(uint64_t gpa, void *hva, uint64_t len,
                             uint8_t page_type, Error **errp);

/*
 * The kernel hashes table (kernel-hashes=on with -kernel): @size bytes at
 * @table, to be placed at @offset in the firmware's kernel hashes page.
 * sev.c may fill @table after the call; it is read when the plan is built.
 */
void sev_snp_plan_kernel_hashes(const void *table, size_t size,
                                uint32_t offset);

/* For sev-snp-guest's class_init: measure-only and the build function. */
void sev_snp_launch_class_init(ObjectClass *oc);

/*
 * Complete, measure and execute the plan of the sev-snp-guest @cgs: its
 * SNP_LAUNCH_UPDATEs through @sev_fd, then SNP_LAUNCH_FINISH with
 * @finish. @sev_features are the VMSA features QEMU gave KVM_SEV_INIT2
 * (KVM adds SNP_ACTIVE).
 */
bool sev_snp_launch(Object *cgs, int sev_fd, uint64_t sev_features,
                    struct kvm_sev_snp_launch_finish *finish, Error **errp);

/* sev-snp-vmsa.c: the VMSA page Linux measures for @cs. */
#define SEV_SNP_VMSA_SIZE       4096
void sev_snp_build_vmsa(CPUState *cs, uint64_t sev_features, void *page);

#endif
