/*
 * Launch digest arithmetic against values computed independently, with
 * Python's hashlib from the SNP firmware ABI's PAGE_INFO layout and the
 * TDX module's MEM.PAGE.ADD / MR.EXTEND records (the script is in
 * docs/devel/launch-plan.rst).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/cutils.h"
#include "../../accel/kvm/gmem/launch-digest.h"

static char *hex(const uint8_t *d)
{
    return g_string_free(qemu_hexdump_line(NULL, d, LAUNCH_DIGEST_SIZE, 0, 0),
                         false);
}

static void assert_digest(const uint8_t *d, const char *expected)
{
    g_autofree char *got = hex(d);

    g_assert_cmpstr(got, ==, expected);
}

static uint8_t *ramp_page(void)
{
    uint8_t *p = g_malloc(LAUNCH_PAGE_SIZE);

    for (int i = 0; i < LAUNCH_PAGE_SIZE; i++) {
        p[i] = i;
    }
    return p;
}

static void test_snp_one_normal_page(void)
{
    g_autofree uint8_t *page = ramp_page();
    SnpLaunchDigest d;

    snp_launch_digest_init(&d);
    snp_launch_digest_page(&d, 0xffc00000, 1, page);
    assert_digest(d.digest, "dd2077f729b141fc30a417c61bc7bd7b0c098ee0b917eb82"
                  "94a75d3da0c78484d3913fd88132e1d78b4e533e03c111e4");
}

/* Every page type once; unmeasured types must not read their page. */
static void test_snp_every_type(void)
{
    g_autofree uint8_t *page = ramp_page();
    uint8_t vmsa[LAUNCH_PAGE_SIZE];
    SnpLaunchDigest d;

    memset(vmsa, 0x5a, sizeof(vmsa));
    snp_launch_digest_init(&d);
    snp_launch_digest_page(&d, 0xffc00000, 1, page);
    snp_launch_digest_page(&d, 0x800000, 3, NULL);
    snp_launch_digest_page(&d, 0x801000, 5, NULL);
    snp_launch_digest_page(&d, 0x802000, 6, NULL);
    snp_launch_digest_page(&d, 0x803000, 4, NULL);
    snp_launch_digest_page(&d, 0xfffffffff000ULL, 2, vmsa);
    assert_digest(d.digest, "5ed54422b00cd7254b1a4b0cddf0e145a01382afe0711a7f"
                  "ea0b794d5be3873b18e4dfa81f81d0a684ee5adfa298998f");
}

static void test_snp_measured_types(void)
{
    g_assert_true(snp_page_type_measured(1));
    g_assert_true(snp_page_type_measured(2));
    for (int t = 3; t <= 6; t++) {
        g_assert_false(snp_page_type_measured(t));
    }
}

static void test_tdx_mrtd(void)
{
    g_autofree uint8_t *page = ramp_page();
    uint8_t mrtd[LAUNCH_DIGEST_SIZE];
    TdxMrtd *m = tdx_mrtd_new();

    tdx_mrtd_page_add(m, 0xffc00000);
    tdx_mrtd_extend_page(m, 0xffc00000, page);
    tdx_mrtd_page_add(m, 0x800000);
    tdx_mrtd_finish(m, mrtd);
    assert_digest(mrtd, "ca8101522746d74fc973adecba34dc1ea06623404d20e0ca"
                  "92bdc402f2ee445565fff220eb12fb2a5f4c095b44f18038");
}

static void test_tdx_mrtd_empty(void)
{
    uint8_t mrtd[LAUNCH_DIGEST_SIZE];

    tdx_mrtd_finish(tdx_mrtd_new(), mrtd);
    assert_digest(mrtd, "38b060a751ac96384cd9327eb1b1e36a21fdb71114be0743"
                  "4c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/launch-digest/snp/one-normal-page",
                    test_snp_one_normal_page);
    g_test_add_func("/launch-digest/snp/every-type", test_snp_every_type);
    g_test_add_func("/launch-digest/snp/measured-types",
                    test_snp_measured_types);
    g_test_add_func("/launch-digest/tdx/mrtd", test_tdx_mrtd);
    g_test_add_func("/launch-digest/tdx/empty", test_tdx_mrtd_empty);
    return g_test_run();
}
