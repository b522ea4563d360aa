/*
 * Test guest: DMA by an assigned device (edu through vfio-pci, the rig's
 * RIG_VFIO=1) across private/shared conversions. The device's DMA goes
 * through the host IOMMU, which QEMU keeps mapping exactly the shared
 * memory: a private page must be out of its reach both ways.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "edu.h"
#include "hypercall.h"

#define PAGE 4096

static uint64_t vfio_secret(uint64_t gpa)
{
    return gpa ^ 0x5ec2e75ec2e7f10cULL;
}

static uint64_t vfio_pattern(uint64_t gpa, uint64_t round)
{
    return (gpa * 0x9e3779b97f4a7c15ULL) ^ (round << 48) ^ 0xd3a;
}

static void fill_page(uint64_t gpa, uint64_t round, bool secret)
{
    for (uint64_t a = gpa; a < gpa + PAGE; a += 8) {
        write_word(a, secret ? vfio_secret(a) : vfio_pattern(a, round));
    }
}

/* Words of the page at @gpa equal to the page at @like's words. */
static unsigned page_matches(uint64_t gpa, uint64_t like, uint64_t round,
                             bool secret)
{
    unsigned n = 0;

    for (uint64_t off = 0; off < PAGE; off += 8) {
        uint64_t w = secret ? vfio_secret(like + off)
                            : vfio_pattern(like + off, round);

        n += read_word(gpa + off) == w;
    }
    return n;
}

static unsigned page_zeros(uint64_t gpa)
{
    unsigned n = 0;

    for (uint64_t a = gpa; a < gpa + PAGE; a += 8) {
        n += !read_word(a);
    }
    return n;
}

/* RAM page @from to the device's buffer, then the buffer to page @to. */
static bool dma_copy(struct edu *edu, uint64_t from, uint64_t to)
{
    return edu_dma(edu, from, 0, PAGE, false) &&
           edu_dma(edu, to, 0, PAGE, true);
}

/*
 * One shared page copied by the device; then a private page, which the
 * device must neither read (the copy it makes of it holds no word of the
 * secret) nor write (the guest still reads its secret); then the page
 * shared again, which the device reaches again. The checkpoints before,
 * during and after the private phase let the host count the IOMMU's
 * mappings and look at QEMU's side of the private page.
 */
GUEST_TEST_EXPLICIT(vfio_dma, "DMA by the assigned edu to shared pages, to "
                    "a private page (must not reach it) and to it shared "
                    "again (checkpoints=1: before, at (after the read, then "
                    "the write) and after the private phase)")
{
    struct edu edu;
    uint64_t base = window_base(2 * MiB);
    uint64_t src = base, dst = base + PAGE, priv = base + 2 * PAGE;
    unsigned copied, leaked, intact, zeros, reached;
    long ret;

    if (!edu_init(&edu)) {
        return test_fail("no edu device (vendor 1234, device 11e8)");
    }
    if (!base) {
        return test_fail("no free RAM window");
    }

    fill_page(src, 1, false);
    fill_page(dst, 0, true);
    if (!dma_copy(&edu, src, dst)) {
        return test_fail("DMA between shared pages did not finish");
    }
    copied = page_matches(dst, src, 1, false);
    test_checkpoint("phase=shared private_gpa=0x%lx", priv);

    ret = convert_private(priv, PAGE);
    if (ret) {
        return test_fail("to private at 0x%lx returned %ld", priv, ret);
    }
    fill_page(priv, 0, true);
    /* The device reads the private page into dst... */
    if (!dma_copy(&edu, priv, dst)) {
        return test_fail("DMA from the private page did not finish");
    }
    leaked = page_matches(dst, priv, 0, true);
    /*
     * The host waits here for the IOMMU's report of the read: an emulated
     * IOMMU drops a fault that comes while the last is still unhandled.
     */
    test_checkpoint("phase=private_read private_gpa=0x%lx", priv);
    /* ...and writes the shared pattern into it. */
    fill_page(src, 2, false);
    if (!dma_copy(&edu, src, priv)) {
        return test_fail("DMA to the private page did not finish");
    }
    intact = page_matches(priv, priv, 0, true);
    test_checkpoint("phase=private private_gpa=0x%lx src_gpa=0x%lx",
                    priv, src);

    ret = convert_shared(priv, PAGE);
    if (ret) {
        return test_fail("to shared at 0x%lx returned %ld", priv, ret);
    }
    zeros = page_zeros(priv);
    if (!edu_dma(&edu, priv, 0, PAGE, true)) {
        return test_fail("DMA to the page shared again did not finish");
    }
    reached = page_matches(priv, src, 2, false);
    test_checkpoint("phase=shared_again");

    test_info("private_gpa=0x%lx copied=%u leaked=%u intact=%u "
              "zeros_after_sharing=%u reached_again=%u", priv, copied, leaked,
              intact, zeros, reached);
    if (copied != PAGE / 8) {
        return test_fail("shared DMA copied %u of %u words", copied, PAGE / 8);
    }
    if (leaked) {
        return test_fail("the device read %u words of the private page",
                         leaked);
    }
    if (intact != PAGE / 8) {
        return test_fail("the device changed %u words of the private page",
                         PAGE / 8 - intact);
    }
    if (zeros != PAGE / 8) {
        return test_fail("shared again, the page holds %u non-zero words",
                         PAGE / 8 - zeros);
    }
    if (reached != PAGE / 8) {
        return test_fail("shared again, DMA wrote %u of %u words", reached,
                         PAGE / 8);
    }
    return TEST_PASS;
}

/*
 * vfio_storm: CPU 1 converts random pages of a 16-page window as fast as
 * it can, writing the secret into every page it makes private and
 * checking it is still there before making it shared again; CPU 0 has the
 * device read random window pages (the copy must hold no secret) and
 * write a pattern into them, rounds= times. Data rules: a private page
 * keeps its secret, a page just shared reads zeros or the device's
 * pattern, never the secret. The host checks QEMU's side at the end.
 */
#define STORM_PAGES 16

static struct {
    uint64_t base, check, pattern;      /* window, CPU 0's two pages */
    struct edu edu;
    /* Volatile: the other CPU writes them while this one polls. */
    volatile uint8_t is_private[STORM_PAGES];
    /* Volatile: set by CPU 0, polled by CPU 1. */
    volatile bool done;
    uint64_t dmas, leaks, dma_timeouts;
    uint64_t conversions, failures, data_errors;
    long first_ret;
} vstorm;

static void vfio_storm_cpu(int cpu, void *arg __attribute__((unused)))
{
    uint64_t rng = 0x9e3779b97f4a7c15ULL * (cpu + 1);
    uint64_t rounds = arg_u64("rounds", 32);

    if (cpu == 0) {
        for (uint64_t i = 0; i < rounds; i++) {
            uint64_t page = vstorm.base +
                            xorshift64(&rng) % STORM_PAGES * PAGE;

            if (!dma_copy(&vstorm.edu, page, vstorm.check) ||
                !dma_copy(&vstorm.edu, vstorm.pattern, page)) {
                vstorm.dma_timeouts++;
                break;
            }
            vstorm.leaks += page_matches(vstorm.check, page, 0, true);
            vstorm.dmas += 4;
        }
        vstorm.done = true;
        return;
    }
    if (cpu != 1) {
        return;
    }
    while (!vstorm.done) {
        unsigned i = xorshift64(&rng) % STORM_PAGES;
        uint64_t page = vstorm.base + i * PAGE;
        long ret;

        if (!vstorm.is_private[i]) {
            ret = convert_private(page, PAGE);
            if (!ret) {
                fill_page(page, 0, true);
                vstorm.is_private[i] = 1;
            }
        } else {
            vstorm.data_errors +=
                page_matches(page, page, 0, true) != PAGE / 8;
            ret = convert_shared(page, PAGE);
            if (!ret) {
                vstorm.is_private[i] = 0;
                vstorm.data_errors += page_matches(page, page, 0, true) != 0;
            }
        }
        if (ret && !vstorm.failures++) {
            vstorm.first_ret = ret;
        }
        vstorm.conversions += !ret;
    }
}

GUEST_TEST_EXPLICIT(vfio_storm, "cpus=2: CPU 1 converts a window at random "
                    "while CPU 0 has the assigned edu read and write it "
                    "(rounds=); checkpoints=1: at the end, for the host")
{
    int n, nprivate = 0;
    unsigned mask = 0;
    enum test_result res = smp_start_test_cpus(&n);

    if (res) {
        return res;
    }
    if (n < 2) {
        return test_fail("needs cpus=2");
    }
    if (!edu_init(&vstorm.edu)) {
        return test_fail("no edu device (vendor 1234, device 11e8)");
    }
    vstorm.base = window_base(2 * MiB);
    if (!vstorm.base) {
        return test_fail("no free RAM window");
    }
    vstorm.check = vstorm.base + STORM_PAGES * PAGE;
    vstorm.pattern = vstorm.check + PAGE;
    fill_page(vstorm.pattern, 3, false);
    smp_run(vfio_storm_cpu, NULL);
    for (int i = 0; i < STORM_PAGES; i++) {
        nprivate += vstorm.is_private[i];
        mask |= (unsigned)vstorm.is_private[i] << i;
    }
    test_checkpoint("phase=end base=0x%lx pages=%d private_mask=0x%x "
                    "pattern_gpa=0x%lx", vstorm.base, STORM_PAGES, mask,
                    vstorm.pattern);
    test_info("dmas=%lu leaks=%lu conversions=%lu failures=%lu "
              "data_errors=%lu private=%d", vstorm.dmas, vstorm.leaks,
              vstorm.conversions, vstorm.failures, vstorm.data_errors,
              nprivate);
    if (vstorm.dma_timeouts) {
        return test_fail("a DMA did not finish");
    }
    if (vstorm.leaks || vstorm.data_errors || vstorm.failures) {
        return test_fail("%lu secret words read by the device, %lu data "
                         "errors, %lu failed conversions (first %ld)",
                         vstorm.leaks, vstorm.data_errors, vstorm.failures,
                         vstorm.first_ret);
    }
    return TEST_PASS;
}

/*
 * A listener that cannot map: the host makes VFIO's next pin fail (at the
 * first checkpoint it lowers QEMU's locked-memory limit), so sharing the
 * private page cannot give the device a mapping for it. The conversion
 * must be refused and the page stay private with its data; once the host
 * lifts the limit (second checkpoint), sharing works and the device
 * reaches the page.
 */
GUEST_TEST_EXPLICIT(vfio_refusal, "share a private page while the host "
                    "makes VFIO's mapping fail: refused, page unchanged; "
                    "then again (checkpoints=1)")
{
    struct edu edu;
    uint64_t base = window_base(2 * MiB);
    uint64_t src = base, priv = base + PAGE;
    long refused, ret;
    unsigned intact, zeros, reached;

    if (!edu_init(&edu)) {
        return test_fail("no edu device (vendor 1234, device 11e8)");
    }
    if (!base) {
        return test_fail("no free RAM window");
    }
    ret = convert_private(priv, PAGE);
    if (ret) {
        return test_fail("to private at 0x%lx returned %ld", priv, ret);
    }
    fill_page(priv, 0, true);
    test_checkpoint("phase=private private_gpa=0x%lx", priv);

    refused = convert_shared(priv, PAGE);
    intact = page_matches(priv, priv, 0, true);
    test_checkpoint("phase=refused ret=%ld intact=%u", refused, intact);

    ret = convert_shared(priv, PAGE);
    if (ret) {
        return test_fail("to shared at 0x%lx returned %ld after the host "
                         "lifted the limit", priv, ret);
    }
    zeros = page_zeros(priv);
    fill_page(src, 4, false);
    if (!dma_copy(&edu, src, priv)) {
        return test_fail("DMA to the page shared again did not finish");
    }
    reached = page_matches(priv, src, 4, false);
    test_info("private_gpa=0x%lx refused_ret=%ld intact=%u zeros=%u "
              "reached=%u", priv, refused, intact, zeros, reached);
    if (refused != 22 || intact != PAGE / 8) {
        return test_fail("sharing without a mapping returned %ld, %u words "
                         "intact", refused, intact);
    }
    if (zeros != PAGE / 8 || reached != PAGE / 8) {
        return test_fail("shared at last: %u zero words, DMA wrote %u",
                         zeros, reached);
    }
    return TEST_PASS;
}
