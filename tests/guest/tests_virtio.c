/*
 * Test guest: tests that need a virtio device (tests/guest/virtio.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "hypercall.h"
#include "virtio.h"

#define MAX_RANGES 16

/* virtio-balloon: config num_pages and actual; 4 KiB page frame numbers. */
#define BALLOON_CONFIG_NUM_PAGES    0
#define BALLOON_CONFIG_ACTUAL       4
#define BALLOON_INFLATE_QUEUE       0
#define BALLOON_DEFLATE_QUEUE       1
#define BALLOON_BATCH               256

static uint32_t balloon_pfns[BALLOON_BATCH];

static inline uint64_t page_tag(uint64_t gpa)
{
    return gpa ^ 0xba11000000000000ULL;
}

/* Send [lo, hi) to the balloon queue, BALLOON_BATCH pages per request. */
static bool balloon_send(struct virtio_dev *dev, struct virtq *q,
                         uint64_t lo, uint64_t hi)
{
    uint64_t gpa = lo;

    while (gpa < hi) {
        struct virtq_buf buf = { .gpa = (uint64_t)balloon_pfns };
        int n = 0, id;

        while (n < BALLOON_BATCH && gpa < hi) {
            balloon_pfns[n++] = gpa >> 12;
            gpa += 4096;
        }
        buf.len = n * sizeof(uint32_t);
        id = virtq_submit(dev, q, &buf, 1);
        if (id < 0 || !virtq_wait(q, id, 1ULL << 32)) {
            return false;
        }
    }
    return true;
}

GUEST_TEST_EXPLICIT(balloon, "tag every free page, then give the host the "
                    "pages it asks for through virtio-balloon "
                    "(-device virtio-balloon-pci,disable-legacy=off; "
                    "checkpoints=1, the host sets the target between "
                    "them), check the rest, take them back")
{
    struct ram_range r[MAX_RANGES];
    int n = test_ram_ranges(r, MAX_RANGES);
    struct virtio_dev dev;
    struct virtq inflate, deflate;
    uint64_t want, lo, hi, bad = 0, nonzero = 0, pages = 0;

    if (!virtio_probe(&dev, VIRTIO_ID_BALLOON)) {
        return test_skip("no legacy virtio-balloon device");
    }
    if (!virtio_queue_init(&dev, &inflate, BALLOON_INFLATE_QUEUE) ||
        !virtio_queue_init(&dev, &deflate, BALLOON_DEFLATE_QUEUE)) {
        return test_fail("cannot set up the balloon's queues");
    }
    virtio_driver_ok(&dev);
    if (!n) {
        return test_fail("no usable RAM in the memory map");
    }
    for (int i = 0; i < n; i++) {
        for (uint64_t a = r[i].start; a < r[i].end; a += 4096) {
            write_word(a, page_tag(a));
            pages++;
        }
    }
    test_checkpoint("touched pages=%lu", pages);

    /* The balloon comes out of the top of the last (largest) range. */
    want = virtio_config_read32(&dev, BALLOON_CONFIG_NUM_PAGES);
    hi = ALIGN_DOWN(r[n - 1].end, 4096);
    if (!want || want * 4096 > hi - r[n - 1].start) {
        return test_fail("host asked for %lu pages, range has %lu", want,
                         (hi - r[n - 1].start) / 4096);
    }
    lo = hi - want * 4096;
    if (!balloon_send(&dev, &inflate, lo, hi)) {
        return test_fail("inflate request not completed");
    }
    virtio_config_write32(&dev, BALLOON_CONFIG_ACTUAL, want);
    for (int i = 0; i < n; i++) {
        for (uint64_t a = r[i].start; a < r[i].end; a += 4096) {
            if ((a < lo || a >= hi) && read_word(a) != page_tag(a)) {
                bad++;
            }
        }
    }
    test_checkpoint("inflated pages=%lu gpa=0x%lx-0x%lx kept_bad=%lu", want,
                    lo, hi, bad);

    /* Take the pages back; their old contents are gone. */
    if (!balloon_send(&dev, &deflate, lo, hi)) {
        return test_fail("deflate request not completed");
    }
    virtio_config_write32(&dev, BALLOON_CONFIG_ACTUAL, 0);
    for (uint64_t a = lo; a < hi; a += 4096) {
        nonzero += read_word(a) != 0;
        write_word(a, page_tag(a));
        if (read_word(a) != page_tag(a)) {
            return test_fail("page 0x%lx not writable after deflate", a);
        }
    }
    test_info("pages=%lu ballooned=%lu kept_bad=%lu returned_nonzero=%lu",
              pages, want, bad, nonzero);
    if (bad) {
        return test_fail("%lu pages outside the balloon lost their data",
                         bad);
    }
    return TEST_PASS;
}

GUEST_TEST_EXPLICIT(dma_lease, "while a virtio-blk read into a page is in "
                    "flight, ask for that page and its neighbour to go "
                    "private; once it completes, ask again (-device "
                    "virtio-blk-pci,disable-legacy=off,ioeventfd=off on a "
                    "slow zero-reading disk)")
{
    uint64_t base = window_base(2 * MiB);
    uint64_t buf = base, neighbour = base + 4096, meta = base + 8192;
    struct virtio_dev dev;
    struct virtq q;
    long busy_ret, neighbour_ret, after_ret, back_ret;
    uint64_t t0, t1, t2, nonzero = 0;
    enum test_result res;
    uint8_t status;
    int id;

    if (!base) {
        return test_fail("no free RAM for the test window");
    }
    res = blk_open(&dev, &q);
    if (res) {
        return res;
    }
    for (uint64_t a = buf; a < buf + 4096; a += 8) {
        write_word(a, page_tag(a));
    }

    /* With ioeventfd=off the device has mapped buf when the kick returns. */
    id = blk_read_start(&dev, &q, buf, meta);
    if (id < 0) {
        return test_fail("cannot queue the read");
    }
    t0 = rdtsc();
    busy_ret = convert_private(buf, 4096);
    t1 = rdtsc();
    neighbour_ret = convert_private(neighbour, 4096);
    if (!virtq_wait(&q, id, 1ULL << 36)) {
        return test_fail("the read did not complete");
    }
    t2 = rdtsc();
    status = blk_status(meta);
    for (uint64_t a = buf; a < buf + 4096; a += 8) {
        nonzero += read_word(a) != 0;
    }
    after_ret = convert_private(buf, 4096);
    back_ret = convert_shared(buf, 8192);
    test_info("busy_ret=%ld neighbour_ret=%ld after_ret=%ld back_ret=%ld "
              "status=%u nonzero_words=%lu busy_tsc=%lu read_tsc=%lu",
              busy_ret, neighbour_ret, after_ret, back_ret, status, nonzero,
              t1 - t0, t2 - t0);
    if (status != 0 || nonzero) {
        return test_fail("the read did not land (status %u, %lu words not "
                         "zero)", status, nonzero);
    }
    if (neighbour_ret || after_ret || back_ret) {
        return test_fail("a conversion without DMA in flight failed");
    }
    test_checkpoint("busy_ret=%ld", busy_ret);
    return busy_ret == (long)arg_u64("busy_ret", 11) ? TEST_PASS :
           test_fail("conversion under DMA answered %ld", busy_ret);
}

/*
 * A device asked to write into a private page: the host must not map it
 * (host I/O reaches only shared memory), so the request fails in the
 * device, the page keeps the guest's private data, and once it is shared
 * again it reads zeros, not the device's data.
 */
GUEST_TEST_EXPLICIT(dma_private, "make a page private, fill it, then start "
                    "a virtio-blk read into it; check it after, and after "
                    "sharing it again (-device virtio-blk-pci,"
                    "disable-legacy=off,ioeventfd=off on a disk that reads "
                    "a nonzero pattern; checkpoints=1)")
{
    uint64_t base = window_base(2 * MiB);
    uint64_t buf = base, meta = base + 8192;
    uint64_t lost = 0, nonzero = 0;
    struct virtio_dev dev;
    struct virtq q;
    enum test_result res;
    bool completed;
    long ret;
    int id;

    if (!base) {
        return test_fail("no free RAM for the test window");
    }
    res = blk_open(&dev, &q);
    if (res) {
        return res;
    }
    ret = convert_private(buf, 4096);
    if (ret) {
        return test_fail("cannot make the buffer private: %ld", ret);
    }
    for (uint64_t a = buf; a < buf + 4096; a += 8) {
        write_word(a, page_tag(a));
    }
    id = blk_read_start(&dev, &q, buf, meta);
    if (id < 0) {
        return test_fail("cannot queue the read");
    }
    completed = virtq_wait(&q, id, 1ULL << 28);
    for (uint64_t a = buf; a < buf + 4096; a += 8) {
        lost += read_word(a) != page_tag(a);
    }
    test_checkpoint("phase=submitted gpa=0x%lx completed=%d", buf,
                    completed);
    ret = convert_shared(buf, 4096);
    for (uint64_t a = buf; a < buf + 4096; a += 8) {
        nonzero += read_word(a) != 0;
    }
    test_info("completed=%d status=%u private_lost=%lu shared_ret=%ld "
              "shared_nonzero=%lu", completed, blk_status(meta), lost, ret,
              nonzero);
    if (lost) {
        return test_fail("%lu words of the private page changed", lost);
    }
    if (ret || nonzero) {
        return test_fail("shared again (%ld), the page holds %lu words "
                         "that are not zero", ret, nonzero);
    }
    return TEST_PASS;
}

/* What one CPU saw in dma_storm; everything but ok counts as a fault. */
static struct {
    uint64_t ok;                /* requests answered as expected */
    uint64_t unexpected;        /* an answer the rules do not allow */
    uint64_t data_errors;
    long first_ret;
    uint64_t refused_in_flight; /* CPU 0: EAGAIN while its read ran */
    uint64_t converted_after;   /* CPU 0: the read had ended first */
} storm[MAX_CPUS];

static struct {
    struct virtio_dev dev;
    struct virtq q;
    uint64_t base;              /* CPU 0's DMA buffers, then the windows */
} storm_setup;

#define STORM_BUFFERS   8
#define STORM_WINDOW    (4 * MiB)

static void storm_expect(int cpu, long ret, long want)
{
    if (ret == want) {
        storm[cpu].ok++;
    } else if (!storm[cpu].unexpected++) {
        storm[cpu].first_ret = ret;
    }
}

/*
 * CPU 0: reads from a slow zero-reading disk into its buffers, one at a
 * time, and asks for the buffer to go private while the read may still
 * be in flight (ioeventfd=off: the device has mapped the buffer when the
 * kick returns). How long the read takes against the conversion depends
 * on the machine, so the oracle is the data, not the answer:
 *  - refused (EAGAIN): the buffer stayed shared and the read lands in it;
 *  - converted: the read must have ended first. The buffer goes shared
 *    again and gets a marker; had the device still been writing (a
 *    conversion that ignored its lease), its zeros land on the marker.
 * Then the buffer must go private and back.
 */
static void storm_dma(uint64_t rounds)
{
    for (uint64_t i = 0; i < rounds; i++) {
        uint64_t buf = storm_setup.base + (i % STORM_BUFFERS) * 8 * KiB;
        uint64_t meta = buf + 4 * KiB, marker = cpu_word(buf, 0, i);
        bool refused;
        long ret;
        int id;

        for (uint64_t a = buf; a < buf + 4096; a += 64) {
            write_word(a, marker);
        }
        id = blk_read_start(&storm_setup.dev, &storm_setup.q, buf, meta);
        ret = convert_private(buf, 4096);
        refused = ret == 11;
        if (refused) {
            storm[0].ok++;
            storm[0].refused_in_flight++;
        } else {
            storm_expect(0, ret, 0);
            storm_expect(0, convert_shared(buf, 4096), 0);
            marker = ~marker;
            for (uint64_t a = buf; a < buf + 4096; a += 64) {
                write_word(a, marker);
            }
            storm[0].converted_after++;
        }
        if (id < 0 || !virtq_wait(&storm_setup.q, id, 1ULL << 36)) {
            storm[0].data_errors++;
            return;
        }
        storm[0].data_errors += blk_status(meta) != 0;
        for (uint64_t a = buf; a < buf + 4096; a += 64) {
            storm[0].data_errors += read_word(a) != (refused ? 0 : marker);
        }
        storm_expect(0, convert_private(buf, 4096), 0);
        write_word(buf, cpu_word(buf, 0, ~i));
        storm[0].data_errors += read_word(buf) != cpu_word(buf, 0, ~i);
        storm_expect(0, convert_shared(buf, 4096), 0);
    }
}

/*
 * Other CPUs: random 4 KiB to 2 MiB conversions in their own window,
 * writing and checking data in each state.
 */
static void storm_convert(int cpu, uint64_t rounds)
{
    uint64_t window = storm_setup.base + (uint64_t)cpu * STORM_WINDOW;
    uint64_t rng = 0x2545f4914f6cdd1dULL * (cpu + 1);

    for (uint64_t i = 0; i < rounds; i++) {
        uint64_t pages, gpa;
        long ret;

        pages = 1 + xorshift64(&rng) % 512;
        gpa = window + ((rng >> 16) % (512 - pages + 1)) * 4 * KiB;
        ret = convert_private(gpa, pages * 4096);
        storm_expect(cpu, ret, 0);
        for (uint64_t a = gpa; a < gpa + pages * 4096; a += 4096) {
            write_word(a, cpu_word(a, cpu, i));
        }
        for (uint64_t a = gpa; a < gpa + pages * 4096; a += 4096) {
            storm[cpu].data_errors += read_word(a) != cpu_word(a, cpu, i);
        }
        storm_expect(cpu, convert_shared(gpa, pages * 4096), 0);
        for (uint64_t a = gpa; a < gpa + pages * 4096; a += 4096) {
            write_word(a, ~cpu_word(a, cpu, i));
            storm[cpu].data_errors += read_word(a) != ~cpu_word(a, cpu, i);
        }
    }
}

static void storm_cpu(int cpu, void *arg)
{
    uint64_t rounds = arg_u64("rounds", 16);

    (void)arg;
    if (cpu == 0) {
        storm_dma(rounds);
    } else {
        storm_convert(cpu, rounds * 4);
    }
}

GUEST_TEST_EXPLICIT(dma_storm, "cpus= vCPUs: CPU 0 keeps virtio-blk reads "
                    "in flight and tries to make their buffers private, "
                    "the others convert random ranges of their own windows, "
                    "all checking data (rounds=)")
{
    uint64_t ok = 0;
    enum test_result res;
    int n;

    res = blk_open(&storm_setup.dev, &storm_setup.q);
    if (res) {
        return res;
    }
    res = smp_start_test_cpus(&n);
    if (res) {
        return res;
    }
    storm_setup.base = window_base((uint64_t)n * STORM_WINDOW);
    if (!storm_setup.base) {
        return test_fail("not enough free RAM for %d windows", n);
    }
    smp_run(storm_cpu, NULL);
    for (int i = 0; i < n; i++) {
        ok += storm[i].ok;
        if (storm[i].unexpected || storm[i].data_errors) {
            return test_fail("cpu %d: %lu unexpected answers (first %ld), "
                             "%lu data errors", i, storm[i].unexpected,
                             storm[i].first_ret, storm[i].data_errors);
        }
    }
    test_info("cpus=%d answers=%lu unexpected=0 data_errors=0 "
              "refused_in_flight=%lu converted_after=%lu", n, ok,
              storm[0].refused_in_flight, storm[0].converted_after);
    return TEST_PASS;
}

/*
 * dma_beside_share (issue 24, defect 7): CPU 0 reads from a virtio-blk
 * disk into a shared page again and again, while CPU 1 makes the page
 * before it private, then both pages shared, over and over. A request to
 * shared must fence only the page that changes: the shared page stays
 * mappable and every read lands. (Fenced whole, the device's map of the
 * shared page failed, virtio marked itself broken, and the read never
 * completed.)
 */
static struct {
    struct virtio_dev dev;
    struct virtq q;
    uint64_t base;              /* neighbour, buffer, request header */
    volatile bool done;         /* CPU 0 finished its reads */
    uint64_t reads, bad_status, stuck_at;
    uint64_t conversions, failures;
    long first_ret;
} dbs;

static void dbs_reads(void)
{
    uint64_t buf = dbs.base + 4096, meta = dbs.base + 8192;
    uint64_t reads = arg_u64("reads", 300);

    for (uint64_t i = 0; i < reads; i++) {
        int id = blk_read_start(&dbs.dev, &dbs.q, buf, meta), done;
        uint64_t t0 = rdtsc();
        uint32_t len;

        while (id < 0 || !virtq_poll(&dbs.q, &done, &len) || done != id) {
            /* About 6 s at 3 GHz; a read takes a few ms. */
            if (id < 0 || rdtsc() - t0 > (1ULL << 34)) {
                dbs.stuck_at = i + 1;
                return;
            }
            asm volatile("pause");
        }
        dbs.bad_status += blk_status(meta) != 0;
        dbs.reads++;
        if (dbs.reads % 100 == 0) {
            test_info("reads=%lu conversions=%lu", dbs.reads,
                      __atomic_load_n(&dbs.conversions, __ATOMIC_RELAXED));
        }
    }
}

static void dbs_convert(void)
{
    do {
        long ret = convert_private(dbs.base, 4096);

        if (!ret) {
            ret = convert_shared(dbs.base, 8192);
        }
        __atomic_add_fetch(&dbs.conversions, 1, __ATOMIC_RELAXED);
        if (ret && !dbs.failures++) {
            dbs.first_ret = ret;
        }
    } while (!__atomic_load_n(&dbs.done, __ATOMIC_ACQUIRE));
}

static void dbs_run(int cpu, void *arg)
{
    (void)arg;
    if (cpu == 0) {
        dbs_reads();
        __atomic_store_n(&dbs.done, true, __ATOMIC_RELEASE);
    } else if (cpu == 1) {
        dbs_convert();
    }
}

GUEST_TEST_EXPLICIT(dma_beside_share, "CPU 0 reads from virtio-blk into a "
                    "shared page (reads=) while CPU 1 makes the page before "
                    "it private and both shared again; every read must land "
                    "(cpus=2; -device virtio-blk-pci,disable-legacy=off,"
                    "ioeventfd=off)")
{
    enum test_result res;
    int n;

    res = blk_open(&dbs.dev, &dbs.q);
    if (res) {
        return res;
    }
    res = smp_start_test_cpus(&n);
    if (res) {
        return res;
    }
    if (n < 2) {
        return test_fail("needs cpus=2");
    }
    dbs.base = window_base(3 * 4096);
    if (!dbs.base) {
        return test_fail("no free RAM for the test window");
    }
    smp_run(dbs_run, NULL);
    test_info("reads=%lu bad_status=%lu stuck_at=%lu conversions=%lu "
              "failures=%lu", dbs.reads, dbs.bad_status, dbs.stuck_at,
              dbs.conversions, dbs.failures);
    if (dbs.stuck_at) {
        return test_fail("read %lu never completed (the device broke?)",
                         dbs.stuck_at);
    }
    if (dbs.bad_status || dbs.failures) {
        return test_fail("%lu reads failed, %lu conversions failed (first "
                         "%ld)", dbs.bad_status, dbs.failures, dbs.first_ret);
    }
    return TEST_PASS;
}
