/*
 * SEV-SNP's part of the launch plan (sev-snp-launch.c).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef I386_SEV_SNP_LAUNCH_H
#define I386_SEV_SNP_LAUNCH_H

/* Append SNP_LAUNCH_UPDATE of [@gpa, @gpa + @len) from @hva. */
bool sev_snp_plan_add_update(uint64_t gpa, void *hva, uint64_t len,
                             uint8_t page_type, Error **errp);

/*
 * Append every vCPU's VMSA, as Linux builds it from the vCPU's state and
 * @sev_features, then SNP_LAUNCH_FINISH: the end of the plan.
 */
bool sev_snp_plan_add_vmsas(uint64_t sev_features, Error **errp);

/* The 4 KiB VMSA page Linux measures for @cs. */
void sev_snp_build_vmsa(CPUState *cs, uint64_t sev_features, void *page);

#endif
