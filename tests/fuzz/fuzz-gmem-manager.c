/*
 * libFuzzer harness: the conversion manager's state machine
 * (accel/kvm/gmem/kvm-gmem.c and the files of gmem-state.h, compiled as
 * they are in QEMU) driven by random operation sequences: guest
 * hypercalls and memory faults with any arguments, operator conversions,
 * launch conversions, host I/O leases taken and dropped, a memslot that
 * moves, system reset, a block unplugged, and kernel calls and listeners
 * that fail. After every step it checks the manager against a model of
 * what must hold: the record equals KVM's attributes on every mapped
 * page, a refused request changed nothing (unless KVM refused to change a
 * run back, which is counted), every memory region reference is dropped,
 * no lease covers a private page, a page that changed state reads zeros
 * on its new side once its pending discards are done, and a shared side
 * of huge pages is freed only in whole huge pages that are private in
 * every part.
 *
 * What cannot exist in a fuzzing process is a stand-in, and only that:
 * KVM (the attribute ioctl, whose per-page state the stand-in keeps and
 * which fails when the input says so; Linux 7.2 changes nothing when it
 * fails), the discard calls (they zero the stand-in's copy of a side, or
 * fail), the memory map of two guest_memfd RAMBlocks, MMIO and a hole
 * (memory_region_find(), the flat view, and the listener told of its
 * changes, by which gmem-lookup.c caches), and the RamDiscardManager
 * side of RamBlockAttributes (its bitmap, kept as upstream's
 * ram_block_attributes_state_change() keeps it, with a listener that can
 * refuse to populate), and the huge page pool of block 1, whose shared
 * side is of huge pages (it can be empty). The manager's locks, queue,
 * lease table, request decoding, runs and section cache are the real
 * ones. discard=async is left out: its worker thread would make runs
 * irreproducible; the ordering rule's flush is covered through failed
 * discards, which use the same queue.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sanitizer/asan_interface.h>
#include "qapi/error.h"
#include "qemu/bitmap.h"
#include "qemu/error-report.h"
#include "qemu/rcu.h"
#include "qemu/timer.h"
#include "exec/ramlist.h"
#include "system/address-spaces.h"
#include "system/kvm.h"
#include "system/kvm-gmem.h"
#include "system/memory.h"
#include "system/ramblock.h"
#include "system/reset.h"
#include "migration/blocker.h"
#include "gmem-kernel.h"
#include "gmem-manager.h"

#define PAGE            4096ULL
#define BLOCK_PAGES     64
#define HUGE            (4 * PAGE)      /* block 1's shared side: hugetlb */
#define GPA_PAGES       512             /* the guest physical universe */
#define A_GPA           0               /* block A: GPA pages 0..63 */
#define MMIO_GPA        (128 * PAGE)    /* 16 pages of MMIO */
#define MMIO_PAGES      16

/* --- the stand-in world ------------------------------------------------ */

typedef struct Block {
    RAMBlock rb;
    RamBlockAttributes attr;
    MemoryRegion mr;
    /* The shared side, whose first word of each page the guest writes. */
    uint8_t host[BLOCK_PAGES * PAGE] __attribute__((aligned(4096)));
    /* What the private side of each page holds: 0 is "freed" (zeros). */
    uint64_t private_data[BLOCK_PAGES];
    uint64_t gpa;                   /* where it is mapped, or UINT64_MAX */
    bool live;
} Block;

static Block blocks[2];
static MemoryRegion mmio_mr, system_mr;
static int mr_refs;                 /* references taken and not dropped */
static bool kvm_private[GPA_PAGES];
static unsigned long kvm_private_beyond; /* private pages set past it */

/* Failures the input asks for: the next matching call fails. */
static struct {
    int set_attributes;             /* -errno, once */
    int discard;
    bool populate;                  /* a listener refuses */
    bool populate_shared;           /* the huge page pool is empty */
} fail;

static void (*reset_handler)(void *opaque);
static bool in_reset;               /* the guest cannot run meanwhile */
static RAMBlockNotifier *ram_notifier;

/* Leases the harness holds, dropped at the end of each input. */
static struct {
    RAMBlock *rb;
    uint64_t offset;
} held[64];
static unsigned nheld;

KvmGmemConfig kvm_gmem_config;
bool kvm_pre_fault_memory_supported;
AddressSpace address_space_memory;

bool kvm_gmem_legacy(void)
{
    return false;
}

/* Only the lease wait reads a clock; QEMU's timer code needs a main loop. */
int64_t qemu_clock_get_ns(QEMUClockType type)
{
    return get_clock_realtime();
}

MemoryRegion *get_system_memory(void)
{
    return &system_mr;
}

static Block *finalise_on_unref;    /* issue 24, defect 4 */
static void finalise(Block *b);

void memory_region_unref(MemoryRegion *mr)
{
    assert(mr_refs > 0);
    mr_refs--;
    /*
     * The block was unplugged and its backend object-del'ed while a
     * request held this reference: it is the last, and QEMU finalises
     * the region now, on this thread, freeing its RAMBlock. Not inside
     * an RCU read section: the flat view the region was found in holds
     * a reference until that ends.
     */
    if (finalise_on_unref && mr == &finalise_on_unref->mr &&
        !get_ptr_rcu_reader()->depth) {
        Block *b = finalise_on_unref;

        finalise_on_unref = NULL;
        finalise(b);
    }
}

void memory_region_ref(MemoryRegion *mr)
{
    mr_refs++;
}

/* gmem-lookup.c's: told of every change of the map, as QEMU tells it. */
static MemoryListener *map_listener;

void memory_listener_register(MemoryListener *listener, AddressSpace *filter)
{
    assert(filter == &address_space_memory && listener->commit);
    map_listener = listener;
}

static void map_changed(void)
{
    if (map_listener) {
        map_listener->commit(map_listener);
    }
}

bool memory_region_is_ram_device(MemoryRegion *mr)
{
    return false;
}

bool memory_region_has_guest_memfd(MemoryRegion *mr)
{
    return mr->ram_block && mr->ram_block->guest_memfd >= 0;
}

/* The map: A at A_GPA, MMIO, B wherever it is now, holes elsewhere. */
typedef struct Region {
    uint64_t gpa, pages;
    MemoryRegion *mr;
} Region;

static int map_regions(Region *r)
{
    int n = 0;

    if (blocks[0].live && blocks[0].gpa != UINT64_MAX) {
        r[n++] = (Region) { blocks[0].gpa, BLOCK_PAGES, &blocks[0].mr };
    }
    r[n++] = (Region) { MMIO_GPA / PAGE, MMIO_PAGES, &mmio_mr };
    if (blocks[1].live && blocks[1].gpa != UINT64_MAX) {
        r[n++] = (Region) { blocks[1].gpa, BLOCK_PAGES, &blocks[1].mr };
    }
    /* Sorted by address, as a flat view is: B moves between 64 and 384. */
    for (int i = 1; i < n; i++) {
        for (int j = i; j > 0 && r[j].gpa < r[j - 1].gpa; j--) {
            Region t = r[j];

            r[j] = r[j - 1];
            r[j - 1] = t;
        }
    }
    return n;
}

MemoryRegionSection memory_region_find(MemoryRegion *mr, hwaddr addr,
                                       uint64_t size)
{
    MemoryRegionSection s = { 0 };
    Region r[3];
    int n = map_regions(r);
    uint64_t end = size ? addr + size : addr;

    assert(mr == &system_mr);
    for (int i = 0; i < n; i++) {
        uint64_t rs = r[i].gpa * PAGE, re = rs + r[i].pages * PAGE;

        /* addr + size may wrap: the manager refuses that before. */
        if (re <= addr || (end > addr && rs >= end)) {
            continue;
        }
        s.mr = r[i].mr;
        s.offset_within_address_space = MAX(rs, addr);
        s.offset_within_region = s.offset_within_address_space - rs;
        s.size = int128_make64(MIN(re, end > addr ? end : re) -
                               s.offset_within_address_space);
        mr_refs++;
        return s;
    }
    return s;
}

void flatview_for_each_range(FlatView *fv, flatview_cb cb, void *opaque)
{
    Region r[3];
    int n = map_regions(r);

    for (int i = 0; i < n; i++) {
        if (cb(int128_make64(r[i].gpa * PAGE),
               int128_make64(r[i].pages * PAGE), r[i].mr, 0, opaque)) {
            return;
        }
    }
}

void qemu_register_reset(QEMUResetHandler *func, void *opaque)
{
    reset_handler = func;
}

void ram_block_notifier_add(RAMBlockNotifier *n)
{
    ram_notifier = n;
}

int migrate_add_blocker(Error **reasonp, Error **errp)
{
    return 0;
}

int kvm_convert_memory(hwaddr start, hwaddr size, bool to_private)
{
    abort();            /* the legacy path is not fuzzed */
}

int kvm_vcpu_ioctl(CPUState *cpu, unsigned long type, ...)
{
    abort();            /* prefault is off */
}

const char *qemu_ram_get_idstr(RAMBlock *rb)
{
    return rb->idstr;
}

/* kvm_gmem_dump_view()'s lookup: dump-guest-memory is not fuzzed. */
RAMBlock *qemu_ram_block_from_host(void *ptr, bool round_offset,
                                   ram_addr_t *offset)
{
    return NULL;
}

/* As upstream: bits change first; a refused populate leaves them set. */
int ram_block_attributes_state_change(RamBlockAttributes *attr,
                                      uint64_t offset, uint64_t size,
                                      bool to_discard)
{
    unsigned long first = offset / PAGE, n = size / PAGE;
    bool was_all_shared = find_next_zero_bit(attr->bitmap, attr->bitmap_size,
                                             first) >= first + n;

    assert(!(offset % PAGE) && !(size % PAGE) && n);
    assert(first + n <= attr->bitmap_size);
    if (to_discard) {
        bitmap_clear(attr->bitmap, first, n);
        return 0;
    }
    bitmap_set(attr->bitmap, first, n);
    if (!was_all_shared && fail.populate) {
        fail.populate = false;
        return -ENOMEM;
    }
    return 0;
}

int kvm_gmem_kernel_set_attributes(uint64_t gpa, uint64_t size,
                                   bool to_private)
{
    if (fail.set_attributes) {
        int ret = fail.set_attributes;

        fail.set_attributes = 0;
        return ret;     /* Linux reserves first: nothing changed */
    }
    assert(!(gpa % PAGE) && !(size % PAGE) && size);
    for (uint64_t p = gpa / PAGE; p < (gpa + size) / PAGE; p++) {
        if (p < GPA_PAGES) {
            kvm_private[p] = to_private;
        } else {
            kvm_private_beyond += to_private;   /* must never happen */
        }
    }
    return 0;
}

int kvm_gmem_kernel_discard(RAMBlock *rb, uint64_t offset, uint64_t size,
                            bool guest_memfd)
{
    Block *b = container_of(rb, Block, rb);

    assert(b->live);
    assert(!(offset % PAGE) && !(size % PAGE) &&
           offset + size <= BLOCK_PAGES * PAGE);
    if (fail.discard) {
        int ret = fail.discard;

        fail.discard = 0;
        return ret;
    }
    for (uint64_t p = offset / PAGE; p < (offset + size) / PAGE; p++) {
        if (guest_memfd) {
            b->private_data[p] = 0;
        } else {
            /*
             * Huge pages go whole, and only when every part is private,
             * or at reset (a stale copy the guest has not seen since).
             */
            assert(!(offset % rb->page_size) && !(size % rb->page_size));
            assert(rb->page_size == PAGE || in_reset ||
                   !test_bit(p, b->attr.bitmap));
            memset(b->host + p * PAGE, 0, PAGE);
        }
    }
    return 0;
}

int kvm_gmem_kernel_populate_shared(RAMBlock *rb, uint64_t offset,
                                    uint64_t size)
{
    Block *b = container_of(rb, Block, rb);

    assert(b->live && rb->page_size == HUGE && size);
    assert(!(offset % HUGE) && !(size % HUGE) &&
           offset + size <= BLOCK_PAGES * PAGE);
    if (fail.populate_shared) {
        fail.populate_shared = false;
        return -EFAULT;
    }
    return 0;
}

int kvm_gmem_kernel_pre_fault(CPUState *cpu, uint64_t gpa, uint64_t size)
{
    abort();
}

/* --- the model's checks -------------------------------------------------- */

static void no_block(RAMBlock *rb, const KvmGmemBlockStats *stats,
                     void *opaque)
{
}

static bool page_shared(Block *b, unsigned p)
{
    return test_bit(p, b->attr.bitmap);
}

/* The record equals KVM on every page of every mapped live block. */
static void check_record_is_kvm(void)
{
    for (int i = 0; i < 2; i++) {
        Block *b = &blocks[i];

        if (!b->live || b->gpa == UINT64_MAX) {
            continue;
        }
        for (unsigned p = 0; p < BLOCK_PAGES; p++) {
            assert(page_shared(b, p) == !kvm_private[b->gpa + p]);
        }
    }
    assert(!kvm_private_beyond);
    /* MMIO and holes are never private. */
    for (unsigned p = MMIO_GPA / PAGE; p < MMIO_GPA / PAGE + MMIO_PAGES;
         p++) {
        assert(!kvm_private[p]);
    }
}

static uint64_t stamp;

/*
 * The guest's view: it writes a fresh word in every page of a block on
 * the side that is live now; a page that changed state since must read
 * zero first, unless a discard of it failed and is still pending.
 */
static void guest_touch(Block *b, const bool *was_shared, bool pending)
{
    for (unsigned p = 0; p < BLOCK_PAGES; p++) {
        bool shared = page_shared(b, p);
        uint64_t *live = shared ? (uint64_t *)(b->host + p * PAGE)
                                : &b->private_data[p];

        if (shared != was_shared[p] && !pending) {
            assert(*live == 0);
        }
        *live = ++stamp;
    }
}

/* --- the operations ------------------------------------------------------ */

static uint64_t rd(const uint8_t **data, size_t *size, unsigned bytes)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < bytes && *size; i++, (*data)++, (*size)--) {
        v |= (uint64_t)**data << (8 * i);
    }
    return v;
}

/* A GPA of interest: in or near a block, MMIO, a hole, or anything. */
static uint64_t pick_gpa(uint64_t r)
{
    switch (r & 3) {
    case 0:
        return (r >> 2) % GPA_PAGES * PAGE;
    case 1:
        return ((r >> 2) % GPA_PAGES * PAGE) | ((r >> 12) & 0xfff);
    case 2:
        return UINT64_MAX - ((r >> 2) & 0xffff) * PAGE + 1;
    default:
        return r & ~0xfffULL;
    }
}

static uint64_t pick_size(uint64_t r)
{
    switch (r & 3) {
    case 0:
        return (1 + (r >> 2) % 80) * PAGE;
    case 1:
        return (r >> 2) % (GPA_PAGES * PAGE);
    case 2:
        return UINT64_MAX - ((r >> 2) & 0xffff) * PAGE + 1;
    default:
        return r;
    }
}

static void snapshot(bool (*shared)[BLOCK_PAGES])
{
    for (int i = 0; i < 2; i++) {
        for (unsigned p = 0; p < BLOCK_PAGES; p++) {
            shared[i][p] = blocks[i].live && page_shared(&blocks[i], p);
        }
    }
}

/* One request of any kind; a refused one must change nothing. */
static void request(unsigned kind, uint64_t a, uint64_t b, uint64_t c)
{
    bool before[2][BLOCK_PAGES];
    KvmGmemStats s0, s1;
    uint64_t gpa = pick_gpa(a), size = pick_size(b);
    bool to_private = c & 1, refused;

    snapshot(before);
    kvm_gmem_read_stats(&s0, no_block, NULL);
    switch (kind) {
    case 0: {
        int64_t ret = kvm_gmem_map_gpa_range(NULL, gpa, size / PAGE ?: 1,
                                             c >> 1);

        assert(ret == 0 || ret == EINVAL || ret == EAGAIN);
        refused = ret != 0;
        break;
    }
    case 1:
        refused = kvm_gmem_memory_fault(gpa, size, to_private) != 0;
        break;
    case 2:
        refused = kvm_gmem_convert_request(gpa, size, to_private, "qmp");
        break;
    default: {
        Error *err = NULL;

        /* A launch that keeps sources always frees them afterwards. */
        refused = kvm_gmem_launch_private(gpa, size, c & 2, &err) != 0;
        error_free(err);
        if (c & 2) {
            kvm_gmem_launch_discard_shared(gpa, size);
        }
        break;
    }
    }
    kvm_gmem_read_stats(&s1, no_block, NULL);
    assert(mr_refs == 0);
    if (refused && s1.rollback_failures == s0.rollback_failures) {
        bool after[2][BLOCK_PAGES];

        snapshot(after);
        for (int i = 0; i < 2; i++) {
            /* Unless the request's last reference finalised the block. */
            assert(!blocks[i].live ||
                   !memcmp(before[i], after[i], sizeof(before[i])));
        }
    }
    for (int i = 0; i < 2; i++) {
        if (blocks[i].live) {
            guest_touch(&blocks[i], before[i], s1.discard_backlog);
        }
    }
}

static void lease(uint64_t a, uint64_t b)
{
    Block *blk = &blocks[a & 1];
    uint64_t offset = (a >> 1) % BLOCK_PAGES * PAGE;
    uint64_t size = 1 + b % ((BLOCK_PAGES * PAGE) - offset);
    uint64_t granted;

    if (!blk->live) {
        return;
    }
    granted = kvm_gmem_lease_take(&blk->rb, offset, size);
    assert(granted <= size);
    /* Only shared pages are leased. */
    for (uint64_t p = offset / PAGE; p < DIV_ROUND_UP(offset + granted, PAGE);
         p++) {
        assert(page_shared(blk, p));
    }
    /* The page after a short grant is private (nothing is fenced now). */
    if (granted < size) {
        assert(!page_shared(blk, (offset + granted) / PAGE));
    }
    if (granted && (b & 0x100)) {
        kvm_gmem_lease_drop(&blk->rb, offset);
    } else if (granted && nheld < ARRAY_SIZE(held)) {
        held[nheld].rb = &blk->rb;
        held[nheld++].offset = offset;
    } else if (granted) {
        kvm_gmem_lease_drop(&blk->rb, offset);
    }
}

static void move_b(uint64_t a)
{
    Block *b = &blocks[1];
    uint64_t to = 64 + (a % 6) * 64;        /* 64, 128 (MMIO!), ... 384 */

    if (!b->live || to == MMIO_GPA / PAGE) {
        return;
    }
    /*
     * The old slot goes: KVM keeps its attributes at the old GPAs. A
     * memslot whose attributes cannot be set ends QEMU, as registering
     * one does: no failures here.
     */
    memset(&fail, 0, sizeof(fail));
    b->gpa = to;
    map_changed();
    kvm_gmem_slot_added(&b->mr, to * PAGE, BLOCK_PAGES * PAGE, b->host);
}

static void unplug(uint64_t a)
{
    Block *b = &blocks[a & 1];

    if (!b->live || !ram_notifier) {
        return;
    }
    finalise(b);
    ASAN_POISON_MEMORY_REGION(b->attr.bitmap,
                              BITS_TO_LONGS(BLOCK_PAGES) * sizeof(long));
}

/*
 * The block's region is finalised: out of the map first, then freed, as
 * QEMU does it; freed, as far as the manager may know, so any later use
 * of its RAMBlock is a report.
 */
static void finalise(Block *b)
{
    /*
     * A DMA mapping holds a reference to the block's memory region, so
     * the block is freed only after the unmaps: drop our leases first.
     */
    for (unsigned i = 0; i < nheld; i++) {
        if (held[i].rb == &b->rb) {
            kvm_gmem_lease_drop(held[i].rb, held[i].offset);
            held[i--] = held[--nheld];
        }
    }
    b->gpa = UINT64_MAX;
    map_changed();
    ram_notifier->ram_block_removed(ram_notifier, b->host,
                                    BLOCK_PAGES * PAGE, BLOCK_PAGES * PAGE);
    b->live = false;
    ASAN_POISON_MEMORY_REGION(&b->rb, sizeof(b->rb));
}

static void setup(void)
{
    static unsigned long bitmaps[2][BITS_TO_LONGS(BLOCK_PAGES)];

    memset(kvm_private, 0, sizeof(kvm_private));
    kvm_private_beyond = 0;
    mr_refs = 0;
    finalise_on_unref = NULL;
    memset(&fail, 0, sizeof(fail));
    mmio_mr = (MemoryRegion) { 0 };
    for (int i = 0; i < 2; i++) {
        Block *b = &blocks[i];

        ASAN_UNPOISON_MEMORY_REGION(&b->rb, sizeof(b->rb));
        ASAN_UNPOISON_MEMORY_REGION(bitmaps[i], sizeof(bitmaps[i]));
        memset(b, 0, offsetof(Block, host));
        memset(b->host, 0, sizeof(b->host));
        memset(b->private_data, 0, sizeof(b->private_data));
        b->rb.host = b->host;
        b->rb.guest_memfd = 100 + i;
        b->rb.page_size = i ? HUGE : PAGE;
        b->rb.used_length = b->rb.max_length = BLOCK_PAGES * PAGE;
        snprintf(b->rb.idstr, sizeof(b->rb.idstr), "block%d", i);
        b->rb.attributes = &b->attr;
        b->attr.ram_block = &b->rb;
        b->attr.bitmap_size = BLOCK_PAGES;
        b->attr.bitmap = bitmaps[i];
        bitmap_zero(b->attr.bitmap, BLOCK_PAGES);
        b->mr.ram = true;
        b->mr.ram_block = &b->rb;
        b->live = true;
        b->gpa = i ? 256 : A_GPA;
    }
    map_changed();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool booted;

    /*
     * The manager's state lives for the process, as in QEMU: every input
     * is a new "boot" of the same manager, starting from a reset, with
     * the blocks it knows replugged. That also fuzzes reset.
     */
    kvm_gmem_config = (KvmGmemConfig) {
        .discard = GUEST_MEMFD_DISCARD_SYNC,
        .lease_timeout_ms = 0,
        .hugetlb_discard = true,
    };
    if (booted && ram_notifier) {
        for (int i = 0; i < 2; i++) {
            if (blocks[i].live) {
                ram_notifier->ram_block_removed(ram_notifier,
                                                blocks[i].host,
                                                BLOCK_PAGES * PAGE,
                                                BLOCK_PAGES * PAGE);
            }
        }
    }
    setup();
    kvm_gmem_set_initially_shared(true);
    for (int i = 0; i < 2; i++) {
        kvm_gmem_slot_added(&blocks[i].mr, blocks[i].gpa * PAGE,
                            BLOCK_PAGES * PAGE, blocks[i].host);
    }
    booted = true;
    check_record_is_kvm();

    while (size) {
        unsigned op = rd(&data, &size, 1);
        uint64_t a = rd(&data, &size, 8), b = rd(&data, &size, 8);
        uint64_t c = rd(&data, &size, 2);

        /* Kernel and listener failures for the next calls. */
        if (op & 0x80) {
            static const int errs[] = { -ENOMEM, -EFAULT, -EINVAL, -EIO };

            fail.set_attributes = (op & 0x40) ? errs[c >> 14] : 0;
            fail.discard = (op & 0x20) ? errs[(c >> 12) & 3] : 0;
            fail.populate = op & 0x10;
            fail.populate_shared = c & 0x100;
        }
        switch (op & 0xf) {
        case 0 ... 8:
            request(op & 3, a, b, c);
            break;
        case 9:
        case 10:
            lease(a, b);
            break;
        case 11:
            move_b(a);
            break;
        case 12:
            unplug(a);
            break;
        case 14:
            /*
             * Block a is unplugged and its backend deleted while the
             * manager holds a reference to its region: the next one it
             * drops is the last, and finalises it (a DMA mapping holds a
             * reference too, so the leases on it end first).
             */
            if (blocks[a & 1].live && ram_notifier) {
                finalise_on_unref = &blocks[a & 1];
            }
            break;
        case 13:
            if (reset_handler) {
                bool may_refuse = fail.set_attributes || fail.populate ||
                                  fail.populate_shared;

                in_reset = true;
                reset_handler(NULL);
                in_reset = false;
                assert(mr_refs == 0);
                /*
                 * Reset brings every live page back to shared, unless KVM
                 * or a listener refused: then the record keeps what KVM
                 * kept (checked below with every step).
                 */
                for (int i = 0; i < 2 && !may_refuse; i++) {
                    for (unsigned p = 0; blocks[i].live && p < BLOCK_PAGES;
                         p++) {
                        assert(page_shared(&blocks[i], p));
                    }
                }
            }
            break;
        default: {
            KvmGmemStats s;

            kvm_gmem_read_stats(&s, no_block, NULL);
            break;
        }
        }
        memset(&fail, 0, sizeof(fail));
        check_record_is_kvm();
    }
    while (nheld) {
        nheld--;
        kvm_gmem_lease_drop(held[nheld].rb, held[nheld].offset);
    }
    return 0;
}
