/*
 * Launch measurements as the security processors compute them: the
 * SEV-SNP launch digest and the TDX MRTD, extended one page at a time.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef KVM_GMEM_LAUNCH_DIGEST_H
#define KVM_GMEM_LAUNCH_DIGEST_H

#define LAUNCH_DIGEST_SIZE 48           /* SHA-384 */
#define LAUNCH_PAGE_SIZE   4096

/*
 * SEV-SNP (SNP firmware ABI, PAGE_INFO): for every page that
 * SNP_LAUNCH_UPDATE (or LAUNCH_FINISH, for the VMSAs) adds, in order,
 * digest = SHA-384(PAGE_INFO), where PAGE_INFO holds the previous digest,
 * the SHA-384 of the page for measured types (zeros otherwise), the page
 * type and the GPA. Page types are the KVM_SEV_SNP_PAGE_TYPE_* values.
 */
typedef struct SnpLaunchDigest {
    uint8_t digest[LAUNCH_DIGEST_SIZE];
} SnpLaunchDigest;

void snp_launch_digest_init(SnpLaunchDigest *d);

/* Whether the firmware hashes a page of @page_type into the digest. */
bool snp_page_type_measured(uint8_t page_type);

/*
 * Extend @d by one 4 KiB page at @gpa. @page must hold LAUNCH_PAGE_SIZE
 * bytes when the type is measured and is ignored otherwise.
 */
void snp_launch_digest_page(SnpLaunchDigest *d, uint64_t gpa,
                            uint8_t page_type, const void *page);

/*
 * TDX (TDX module ABI): TDH.MEM.PAGE.ADD extends MRTD by a 128-byte
 * record "MEM.PAGE.ADD" || GPA; TDH.MR.EXTEND, per 256-byte chunk, by
 * "MR.EXTEND" || GPA followed by the chunk. MRTD is the SHA-384 of all
 * records at TDH.MR.FINALIZE.
 */
typedef struct TdxMrtd TdxMrtd;

TdxMrtd *tdx_mrtd_new(void);
void tdx_mrtd_page_add(TdxMrtd *m, uint64_t gpa);
/* The 16 MR.EXTEND records of the 4 KiB @page at @gpa. */
void tdx_mrtd_extend_page(TdxMrtd *m, uint64_t gpa, const void *page);
/* Writes the MRTD to @out and frees @m. */
void tdx_mrtd_finish(TdxMrtd *m, uint8_t out[LAUNCH_DIGEST_SIZE]);

#endif
