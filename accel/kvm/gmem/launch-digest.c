/*
 * Launch measurements: SEV-SNP launch digest and TDX MRTD arithmetic.
 *
 * Pure functions of the pages and their order; launch-plan.c feeds them
 * the plan, and tests/unit/test-launch-digest.c checks them against
 * values computed independently.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "launch-digest.h"

/* SNP firmware ABI, "PAGE_INFO Structure". */
#define SNP_PAGE_INFO_SIZE      0x70
#define SNP_PAGE_TYPE_NORMAL    1
#define SNP_PAGE_TYPE_VMSA      2

typedef struct QEMU_PACKED SnpPageInfo {
    uint8_t digest_cur[LAUNCH_DIGEST_SIZE];
    uint8_t contents[LAUNCH_DIGEST_SIZE];
    uint16_t length;
    uint8_t page_type;
    uint8_t imi_page;
    uint8_t vmpl3_perms;
    uint8_t vmpl2_perms;
    uint8_t vmpl1_perms;
    uint8_t reserved;
    uint64_t gpa;
} SnpPageInfo;

QEMU_BUILD_BUG_ON(sizeof(SnpPageInfo) != SNP_PAGE_INFO_SIZE);

static void sha384(const void *data, size_t len,
                   uint8_t out[LAUNCH_DIGEST_SIZE])
{
    g_autoptr(GChecksum) c = g_checksum_new(G_CHECKSUM_SHA384);
    gsize out_len = LAUNCH_DIGEST_SIZE;

    g_checksum_update(c, data, len);
    g_checksum_get_digest(c, out, &out_len);
    g_assert(out_len == LAUNCH_DIGEST_SIZE);
}

void snp_launch_digest_init(SnpLaunchDigest *d)
{
    memset(d->digest, 0, sizeof(d->digest));
}

bool snp_page_type_measured(uint8_t page_type)
{
    /* Zero, unmeasured, secrets and CPUID pages contribute zeros. */
    return page_type == SNP_PAGE_TYPE_NORMAL ||
           page_type == SNP_PAGE_TYPE_VMSA;
}

void snp_launch_digest_page(SnpLaunchDigest *d, uint64_t gpa,
                            uint8_t page_type, const void *page)
{
    SnpPageInfo info = {
        .length = cpu_to_le16(SNP_PAGE_INFO_SIZE),
        .page_type = page_type,
        .gpa = cpu_to_le64(gpa),
    };

    memcpy(info.digest_cur, d->digest, sizeof(info.digest_cur));
    if (snp_page_type_measured(page_type)) {
        sha384(page, LAUNCH_PAGE_SIZE, info.contents);
    }
    sha384(&info, sizeof(info), d->digest);
}

/* TDX module ABI: the records TDH.MEM.PAGE.ADD and TDH.MR.EXTEND hash. */
#define TDX_RECORD_SIZE     128
#define TDX_EXTEND_CHUNK    256

struct TdxMrtd {
    GChecksum *sha;
};

TdxMrtd *tdx_mrtd_new(void)
{
    TdxMrtd *m = g_new(TdxMrtd, 1);

    m->sha = g_checksum_new(G_CHECKSUM_SHA384);
    return m;
}

static void tdx_mrtd_record(TdxMrtd *m, const char *what, uint64_t gpa)
{
    uint8_t rec[TDX_RECORD_SIZE] = { 0 };

    memcpy(rec, what, strlen(what));
    stq_le_p(rec + 16, gpa);
    g_checksum_update(m->sha, rec, sizeof(rec));
}

void tdx_mrtd_page_add(TdxMrtd *m, uint64_t gpa)
{
    tdx_mrtd_record(m, "MEM.PAGE.ADD", gpa);
}

void tdx_mrtd_extend_page(TdxMrtd *m, uint64_t gpa, const void *page)
{
    for (unsigned off = 0; off < LAUNCH_PAGE_SIZE; off += TDX_EXTEND_CHUNK) {
        tdx_mrtd_record(m, "MR.EXTEND", gpa + off);
        g_checksum_update(m->sha, (const guchar *)page + off,
                          TDX_EXTEND_CHUNK);
    }
}

void tdx_mrtd_finish(TdxMrtd *m, uint8_t out[LAUNCH_DIGEST_SIZE])
{
    gsize len = LAUNCH_DIGEST_SIZE;

    g_checksum_get_digest(m->sha, out, &len);
    g_assert(len == LAUNCH_DIGEST_SIZE);
    g_checksum_free(m->sha);
    g_free(m);
}
