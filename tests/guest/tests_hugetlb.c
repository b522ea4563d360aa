/*
 * Test guest: RAM whose shared side is of huge pages (hugetlb). The host
 * watches the huge page pool at each checkpoint (HugetlbSharedSide in
 * tests/functional/x86_64/test_gmem_sw_hugetlb.py). Needs a VM with
 * private memory: run it by name in the nested rig.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "hypercall.h"
#include "virtio.h"

#define HUGE_PAGE (2 * MiB)

/* tests_convert.c's secret pattern, which the host looks for. */
static uint64_t huge_secret(uint64_t gpa)
{
    return gpa ^ 0x5ec2e75ec2e75ec2ULL;
}

static uint64_t huge_shared(uint64_t gpa)
{
    return ~gpa ^ 0x4a6e5ba4e3a6e5bbULL;
}

/* One word per 4 KiB page: enough to fault every page in, and to check. */
static void huge_fill(uint64_t base, uint64_t size, uint64_t (*word)(uint64_t))
{
    fill_words(base, size, 4096, word);
}

/* Pages of [base, base + size) whose word is not word(gpa) (or zero). */
static uint64_t huge_wrong(uint64_t base, uint64_t size,
                           uint64_t (*word)(uint64_t))
{
    return size / 4096 - count_words(base, size, 4096, word);
}

/*
 * touched: every free page written while shared. accepted: every whole
 * free huge page made private (2 MiB steps), each read zero and given the
 * secret. Then one of them (page=) goes shared again (reading zeros, or
 * with keep=1 what it held while shared before: the shared huge page was
 * kept), back to private in 4 KiB steps (partial: all but the last),
 * whole. Then the last accepted huge page goes shared and 4 KiB of it
 * private and back (zeros, or with keep=1 the old data). With drain=1,
 * the host
 * empties the pool and the guest asks to share that page (refused), then
 * the host refills it and the guest asks again (retried).
 */
GUEST_TEST_EXPLICIT(huge_accept, "accept all free RAM in huge pages, then "
                    "convert one back and forth in 4 KiB steps (keep=1: "
                    "shared huge pages are kept; drain=1: "
                    "and share it while the host has emptied the pool); "
                    "checkpoints between")
{
    struct ram_range r[16];
    int n = test_ram_ranges(r, 16);
    uint64_t touched = 0, accepted = 0, page = 0, end_gpa = 0, wrong = 0;
    uint64_t last;
    long ret;

    for (int i = 0; i < n; i++) {
        uint64_t start = ALIGN_UP(r[i].start, 4096);
        uint64_t end = ALIGN_DOWN(r[i].end, 4096);

        huge_fill(start, end - start, huge_shared);
        touched += end - start;
    }
    test_checkpoint("phase=touched bytes=%lu", touched);

    for (int i = 0; i < n; i++) {
        uint64_t start = ALIGN_UP(r[i].start, HUGE_PAGE);
        uint64_t end = ALIGN_DOWN(r[i].end, HUGE_PAGE);

        for (uint64_t gpa = start; gpa < end; gpa += HUGE_PAGE) {
            ret = convert_private(gpa, HUGE_PAGE);
            if (ret) {
                return test_fail("accept 0x%lx: %ld", gpa, ret);
            }
            wrong += huge_wrong(gpa, HUGE_PAGE, NULL);
            huge_fill(gpa, HUGE_PAGE, huge_secret);
            accepted += HUGE_PAGE;
            page = page ? page : gpa;
            end_gpa = gpa + HUGE_PAGE;
        }
    }
    if (!page) {
        return test_fail("no whole free huge page");
    }
    test_checkpoint("phase=accepted accepted=%lu page=0x%lx end=0x%lx",
                    accepted, page, end_gpa);

    ret = convert_shared(page, HUGE_PAGE);
    if (ret) {
        return test_fail("share 0x%lx: %ld", page, ret);
    }
    wrong += huge_wrong(page, HUGE_PAGE,
                        arg_u64("keep", 0) ? huge_shared : NULL);
    huge_fill(page, HUGE_PAGE, huge_shared);
    test_checkpoint("phase=shared_again");

    for (uint64_t gpa = page; gpa < page + HUGE_PAGE; gpa += 4096) {
        if (gpa == page + HUGE_PAGE - 4096) {
            test_checkpoint("phase=partial");
        }
        ret = convert_private(gpa, 4096);
        if (ret) {
            return test_fail("4 KiB to private at 0x%lx: %ld", gpa, ret);
        }
        wrong += huge_wrong(gpa, 4096, NULL);
        huge_fill(gpa, 4096, huge_secret);
    }
    test_checkpoint("phase=whole");

    /*
     * The last accepted huge page shared, then 4 KiB of it private and
     * shared again: its huge page is kept meanwhile, and the 4 KiB must
     * read zero all the same, not what it held when shared before.
     */
    last = end_gpa - HUGE_PAGE;
    ret = convert_shared(last, HUGE_PAGE);
    if (!ret) {
        huge_fill(last, HUGE_PAGE, huge_shared);
        ret = convert_private(last, 4096);
    }
    if (!ret) {
        wrong += huge_wrong(last, 4096, NULL);
        huge_fill(last, 4096, huge_secret);
        ret = convert_shared(last, 4096);
    }
    if (ret) {
        return test_fail("4 KiB round trip in 0x%lx: %ld", last, ret);
    }
    wrong += huge_wrong(last, 4096, arg_u64("keep", 0) ? huge_shared : NULL);

    if (arg_u64("drain", 0)) {
        test_checkpoint("phase=drain");
        ret = convert_shared(page, HUGE_PAGE);
        /* Refused, it stays private with the guest's data. */
        test_checkpoint("phase=refused ret=%ld intact=%lu", ret,
                        HUGE_PAGE / 4096 -
                        huge_wrong(page, HUGE_PAGE, huge_secret));
        ret = convert_shared(page, HUGE_PAGE);
        if (ret) {
            return test_fail("share 0x%lx with the pool refilled: %ld", page,
                             ret);
        }
        wrong += huge_wrong(page, HUGE_PAGE, NULL);
        huge_fill(page, HUGE_PAGE, huge_shared);
        wrong += huge_wrong(page, HUGE_PAGE, huge_shared);
        test_checkpoint("phase=retried");
    }
    test_info("touched=%lu accepted=%lu page=0x%lx wrong=%lu", touched,
              accepted, page, wrong);
    if (wrong) {
        return test_fail("%lu pages did not read zero after a conversion, or "
                         "lost what the guest wrote", wrong);
    }
    return TEST_PASS;
}

/*
 * A virtio-blk queue whose rings fill a huge page of their own, its
 * requests' buffers in the next one. A read through the rings while they
 * are shared; then the rings' huge page goes private (given back to the
 * pool) and, once the host has emptied the pool, the guest resets the
 * device, sets the queue up again in the private rings, queues a read and
 * kicks. The device must not see the request: QEMU reads the rings'
 * private pages as zeros, an empty queue (before issue 24's fix it read
 * them through its host mapping, faulting the freed huge page back in:
 * SIGBUS with the pool empty). Then the rings are shared again and, the
 * device reset, a read completes.
 */
GUEST_TEST_EXPLICIT(huge_ring, "a virtio-blk queue in a huge page made "
                    "private, kicked while the host's pool is empty, then "
                    "shared again and reset (-device virtio-blk-pci,"
                    "disable-legacy=off,ioeventfd=off; checkpoints=1)")
{
    uint64_t ring = window_base(2 * HUGE_PAGE);
    uint64_t buf = ring + HUGE_PAGE, meta = buf + 4096;
    struct virtio_dev dev;
    struct virtq q;
    enum test_result res;
    bool completed;
    long ret;
    int id;

    if (!ring) {
        return test_fail("no free RAM for the rings");
    }
    res = blk_open_at(&dev, &q, (void *)ring);
    if (res) {
        return res;
    }
    id = blk_read_start(&dev, &q, buf, meta);
    if (id < 0 || !virtq_wait(&q, id, 1ULL << 30) || blk_status(meta)) {
        return test_fail("a read through shared rings failed");
    }

    ret = convert_private(ring, HUGE_PAGE);
    if (ret) {
        return test_fail("rings to private: %ld", ret);
    }
    test_checkpoint("phase=private ring=0x%lx", ring);
    /* The rings read zeros now: set them up again, in private memory. */
    if (blk_open_at(&dev, &q, (void *)ring)) {
        return test_fail("cannot set up the queue in private memory");
    }
    id = blk_read_start(&dev, &q, buf, meta);
    completed = virtq_wait(&q, id, 1ULL << 24);
    test_checkpoint("phase=kicked completed=%d", completed);
    if (completed) {
        return test_fail("the device read the request from private rings");
    }

    ret = convert_shared(ring, HUGE_PAGE);
    if (ret) {
        return test_fail("rings to shared: %ld", ret);
    }
    if (blk_open_at(&dev, &q, (void *)ring)) {
        return test_fail("cannot set up the queue again");
    }
    id = blk_read_start(&dev, &q, buf, meta);
    if (id < 0 || !virtq_wait(&q, id, 1ULL << 30) || blk_status(meta)) {
        return test_fail("a read after the reset failed");
    }
    return TEST_PASS;
}
