/*
 * Test guest: boot information, command line, test runner, traps.
 *
 * Command line (-append): the names of the tests to run, separated by
 * commas or spaces ("all" runs every test), then key=value arguments.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "guest.h"

#define HVM_START_MAGIC 0x336ec578
#define E820_RAM 1

struct hvm_start_info {
    uint32_t magic;
    uint32_t version;
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;
    uint64_t rsdp_paddr;
    uint64_t memmap_paddr;          /* version >= 1 */
    uint32_t memmap_entries;
    uint32_t reserved;
};

struct hvm_memmap_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
    uint32_t reserved;
};

struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error_code;
    uint64_t rip, cs, rflags, rsp, ss;
};

/* Set by trap() on an NMI, polled and cleared by entry.S wait_for_nmi. */
volatile uint8_t nmi_seen;

static const struct hvm_start_info *start_info;
static char cmdline[1024];
/* Copies: low memory is reused (e.g. for the AP trampoline). */
static struct hvm_memmap_entry memmap[64];
static uint32_t memmap_entries;
static const struct guest_test *current_test;
static char result_reason[256];

#define IDENTITY_MAP_LIMIT (16 * GiB)   /* entry.S: IDENTITY_MAP_GIB */

uint64_t identity_map_limit(void)
{
    return IDENTITY_MAP_LIMIT;
}

/* Gate descriptors for the 22 architectural vectors; 16-byte stubs. */
static struct {
    uint16_t offset_lo, selector;
    uint8_t ist, type;
    uint16_t offset_mid;
    uint32_t offset_hi, zero;
} __attribute__((packed)) idt[22];

void idt_load(void)
{
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) desc = { sizeof(idt) - 1, (uintptr_t)idt };

    asm volatile("lidt %0" : : "m"(desc));
}

void idt_init(void)
{
    for (int v = 0; v < 22; v++) {
        uint64_t handler = (uintptr_t)trap_stubs + 16 * v;

        idt[v].offset_lo = handler;
        idt[v].selector = 0x08;
        idt[v].type = 0x8e;             /* present, 64-bit interrupt gate */
        idt[v].offset_mid = handler >> 16;
        idt[v].offset_hi = handler >> 32;
    }
    idt_load();
}

void trap(struct trap_frame *f)
{
    uint64_t cr2;

    if (f->vector == 2) {
        nmi_seen = 1;
        if (f->rip >= (uintptr_t)wait_nmi_window &&
            f->rip <= (uintptr_t)wait_nmi_hlt) {
            f->rip = (uintptr_t)wait_nmi_hlt + 1;   /* hlt is one byte */
        }
        return;
    }
    asm volatile("mov %%cr2, %0" : "=r"(cr2));
    printf("gmem-test: %s: FAIL exception %lu error=0x%lx rip=0x%lx "
           "cr2=0x%lx\n", current_test ? current_test->name : "(boot)",
           f->vector, f->error_code, f->rip, cr2);
    printf("gmem-guest: done 0 passed, 1 failed, 0 skipped\n");
    guest_exit(2);
}

static enum test_result set_reason(enum test_result r, const char *fmt,
                                   va_list ap)
{
    vsnprintf(result_reason, sizeof(result_reason), fmt, ap);
    return r;
}

enum test_result test_fail(const char *fmt, ...)
{
    va_list ap;
    enum test_result r;

    va_start(ap, fmt);
    r = set_reason(TEST_FAIL, fmt, ap);
    va_end(ap);
    return r;
}

enum test_result test_skip(const char *fmt, ...)
{
    va_list ap;
    enum test_result r;

    va_start(ap, fmt);
    r = set_reason(TEST_SKIP, fmt, ap);
    va_end(ap);
    return r;
}

void test_info(const char *fmt, ...)
{
    char line[384];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    printf("gmem-info: %s: %s\n", current_test->name, line);
}

void test_checkpoint(const char *fmt, ...)
{
    char line[384];
    va_list ap;

    if (!arg_u64("checkpoints", 0)) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    printf("gmem-checkpoint: %s: %s\n", current_test->name, line);
    wait_for_nmi();
}

/* Words of the command line: separated by spaces (and commas in lists). */
static const char *find_arg(const char *key)
{
    size_t klen = strlen(key);

    for (const char *p = cmdline; *p;) {
        while (*p == ' ') {
            p++;
        }
        if (!strncmp(p, key, klen) && p[klen] == '=') {
            return p + klen + 1;
        }
        while (*p && *p != ' ') {
            p++;
        }
    }
    return NULL;
}

bool arg_present(const char *key)
{
    return find_arg(key) != NULL;
}

uint64_t arg_u64(const char *key, uint64_t def)
{
    const char *v = find_arg(key);

    return v ? parse_u64(v, NULL) : def;
}

static int ram_ranges(struct ram_range *out, int max, uint64_t limit)
{
    const struct hvm_memmap_entry *map = memmap;
    uint64_t floor = ALIGN_UP((uintptr_t)__image_end, 2 * MiB);
    int n = 0;

    for (uint32_t i = 0; i < memmap_entries && n < max; i++) {
        uint64_t start = map[i].addr, end = map[i].addr + map[i].size;

        if (map[i].type != E820_RAM) {
            continue;
        }
        start = start < floor ? floor : start;
        end = end > limit ? limit : end;
        if (start < end) {
            out[n].start = start;
            out[n].end = end;
            n++;
        }
    }
    return n;
}

int test_ram_ranges(struct ram_range *out, int max)
{
    return ram_ranges(out, max, IDENTITY_MAP_LIMIT);
}

int test_ram_ranges_all(struct ram_range *out, int max)
{
    return ram_ranges(out, max, UINT64_MAX);
}

static uint64_t ram_total(void)
{
    uint64_t total = 0;

    for (uint32_t i = 0; i < memmap_entries; i++) {
        if (memmap[i].type == E820_RAM) {
            total += memmap[i].size;
        }
    }
    return total;
}

static const struct guest_test *find_test(const char *name, size_t len)
{
    for (const struct guest_test *t = __gtests_start; t < __gtests_end; t++) {
        if (strlen(t->name) == len && !strncmp(t->name, name, len)) {
            return t;
        }
    }
    return NULL;
}

static void run_one(const struct guest_test *t, int counts[3])
{
    static const char *const names[] = { "PASS", "FAIL", "SKIP" };
    enum test_result r;

    current_test = t;
    result_reason[0] = '\0';
    r = t->run();
    counts[r]++;
    printf("gmem-test: %s: %s%s%s\n", t->name, names[r],
           result_reason[0] ? " " : "", result_reason);
    current_test = NULL;
}

static void list_tests(void)
{
    for (const struct guest_test *t = __gtests_start; t < __gtests_end; t++) {
        printf("gmem-guest: test %s: %s\n", t->name, t->help);
    }
}

void guest_main(uint32_t start_info_pa)
{
    int counts[3] = { 0, 0, 0 };
    const char *p;
    char vendor[13];
    uint32_t r[4];

    start_info = (const void *)(uintptr_t)start_info_pa;
    if (start_info->magic != HVM_START_MAGIC) {
        printf("gmem-guest: bad PVH start info magic 0x%x\n",
               start_info->magic);
        guest_exit(2);
    }
    if (start_info->cmdline_paddr) {
        const char *c = (const char *)(uintptr_t)start_info->cmdline_paddr;
        size_t n = strlen(c);

        n = n < sizeof(cmdline) - 1 ? n : sizeof(cmdline) - 1;
        memcpy(cmdline, c, n);
        cmdline[n] = '\0';
    }
    if (start_info->version >= 1) {
        memmap_entries = start_info->memmap_entries;
        if (memmap_entries > sizeof(memmap) / sizeof(memmap[0])) {
            memmap_entries = sizeof(memmap) / sizeof(memmap[0]);
        }
        memcpy(memmap, (const void *)(uintptr_t)start_info->memmap_paddr,
               memmap_entries * sizeof(memmap[0]));
    }

    cpuid(0x40000000, 0, r);
    memcpy(vendor, &r[1], 4);
    memcpy(vendor + 4, &r[2], 4);
    memcpy(vendor + 8, &r[3], 4);
    vendor[12] = '\0';
    printf("gmem-guest: start protocol=1 ram=%lu hypervisor=%s "
           "cmdline=\"%s\"\n",
           ram_total(), vendor[0] ? vendor : "none", cmdline);

    /* The test list is the first word; names separated by commas. */
    p = cmdline;
    while (*p == ' ') {
        p++;
    }
    if (!*p || !strncmp(p, "list", 4)) {
        list_tests();
        printf("gmem-guest: done 0 passed, 0 failed, 0 skipped\n");
        guest_exit(0);
    }
    if (!strncmp(p, "all", 3) && (p[3] == ' ' || !p[3])) {
        for (const struct guest_test *t = __gtests_start; t < __gtests_end;
             t++) {
            if (!t->explicit_only) {
                run_one(t, counts);
            }
        }
    } else {
        while (*p && *p != ' ') {
            size_t len = 0;
            const struct guest_test *t;

            while (p[len] && p[len] != ',' && p[len] != ' ') {
                len++;
            }
            t = find_test(p, len);
            if (!t) {
                char name[64];

                len = len < sizeof(name) - 1 ? len : sizeof(name) - 1;
                memcpy(name, p, len);
                name[len] = '\0';
                printf("gmem-guest: unknown test '%s'\n", name);
                printf("gmem-guest: done 0 passed, 1 failed, 0 skipped\n");
                guest_exit(2);
            }
            run_one(t, counts);
            p += len;
            if (*p == ',') {
                p++;
            }
        }
    }
    printf("gmem-guest: done %d passed, %d failed, %d skipped\n",
           counts[TEST_PASS], counts[TEST_FAIL], counts[TEST_SKIP]);
    guest_exit(counts[TEST_FAIL] ? 1 : 0);
}
