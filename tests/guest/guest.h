/*
 * Test guest: the small API a test is written against.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef GUEST_H
#define GUEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DEBUGCON_PORT     0xe9
#define DEBUG_EXIT_PORT   0xf4

#define KiB (1UL << 10)
#define MiB (1UL << 20)
#define GiB (1UL << 30)
#define ALIGN_UP(x, a)   (((x) + (a) - 1) & ~((uint64_t)(a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((uint64_t)(a) - 1))

enum test_result { TEST_PASS, TEST_FAIL, TEST_SKIP };

struct guest_test {
    const char *name;
    const char *help;
    enum test_result (*run)(void);
    bool explicit_only;         /* not part of "all" */
};

#define GUEST_TEST_DEFINE(name_, help_, explicit_)                        \
    static enum test_result name_(void);                                  \
    static const struct guest_test guest_test_##name_                     \
        __attribute__((used, section(".gtests"), aligned(8))) =           \
        { #name_, help_, name_, explicit_ };                              \
    static enum test_result name_(void)

/*
 * GUEST_TEST(name, "what it checks") { ...; return TEST_PASS; }
 * registers a test that the command line can select by name; "all" runs
 * it too. GUEST_TEST_EXPLICIT tests run only when named.
 */
#define GUEST_TEST(name_, help_) GUEST_TEST_DEFINE(name_, help_, false)
#define GUEST_TEST_EXPLICIT(name_, help_) GUEST_TEST_DEFINE(name_, help_, true)

/* Record why the running test failed (or is skipped) and return that. */
enum test_result test_fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
enum test_result test_skip(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* A "gmem-info: <test>: ..." line: measurements, context for a human. */
void test_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * Print "gmem-checkpoint: <test>: ..." and halt until the host injects an
 * NMI, so the host can inspect guest state at a known point. Returns at
 * once unless the command line has checkpoints=1.
 */
void test_checkpoint(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* Command-line arguments: key=value words after the test list. */
uint64_t arg_u64(const char *key, uint64_t def);
bool arg_present(const char *key);

/* Guest RAM as the firmware's memory map describes it. */
struct ram_range {
    uint64_t start, end;   /* [start, end) */
};
/*
 * Usable RAM that tests may overwrite: e820 RAM above the guest image,
 * clipped to the identity map. Returns the number of ranges.
 */
int test_ram_ranges(struct ram_range *out, int max);
/*
 * The same, not clipped to the identity map: RAM a test may convert but
 * must not touch past identity_map_limit() (a guest of more than about
 * 14 GiB has RAM there: q35 puts all but 2 GiB of it above 4 GiB).
 */
int test_ram_ranges_all(struct ram_range *out, int max);
uint64_t identity_map_limit(void);

/*
 * Several vCPUs: smp_start(n) brings n - 1 application processors online
 * (returns how many CPUs run in all); smp_run(fn, arg) runs fn(cpu, arg)
 * on every online CPU at once, the BSP as cpu 0, and returns when all
 * are done.
 */
#define MAX_CPUS 16
int smp_start(int cpus);
/*
 * For SMP tests: bring up as many CPUs as cpus= says (default 2); fails
 * the test unless all came online. *n gets the number online.
 */
enum test_result smp_start_test_cpus(int *n);

/*
 * The word @cpu writes at @gpa in round @round: no two CPUs or rounds
 * write the same one, so a word from the wrong writer shows.
 */
static inline uint64_t cpu_word(uint64_t gpa, int cpu, uint64_t round)
{
    return gpa * 0x9e3779b97f4a7c15ULL ^ ((uint64_t)cpu << 56) ^ round;
}
void smp_run(void (*fn)(int cpu, void *arg), void *arg);

/*
 * One 64-bit word of guest RAM at @gpa (identity-mapped). The accesses
 * are volatile so that every word a test writes is really stored and
 * every word it checks is really loaded: the host or another vCPU can
 * change guest memory between the two, and the compiler must not fold
 * a write and its read-back together.
 */
static inline void write_word(uint64_t gpa, uint64_t v)
{
    /* Volatile: the store must reach guest RAM. */
    *(volatile uint64_t *)gpa = v;
}
static inline uint64_t read_word(uint64_t gpa)
{
    /* Volatile: the load must come from guest RAM. */
    return *(volatile uint64_t *)gpa;
}

/* Write word(a) at each @stride bytes a of [base, base + size). */
void fill_words(uint64_t base, uint64_t size, uint64_t stride,
                uint64_t (*word)(uint64_t));

/*
 * Of the words at each @stride bytes a of [base, base + size), how many
 * equal word(a), or zero if @word is NULL.
 */
uint64_t count_words(uint64_t base, uint64_t size, uint64_t stride,
                     uint64_t (*word)(uint64_t));

/* Compiler barrier; full fence for memory another agent reads. */
static inline void barrier(void)
{
    asm volatile("" : : : "memory");
}
static inline void mb(void)
{
    asm volatile("mfence" : : : "memory");
}

/* Port I/O and output. */
static inline void outb(uint16_t port, uint8_t v)
{
    asm volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outl(uint16_t port, uint32_t v)
{
    asm volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline void outw(uint16_t port, uint16_t v)
{
    asm volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint16_t inw(uint16_t port)
{
    uint16_t v;
    asm volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint32_t inl(uint16_t port)
{
    uint32_t v;
    asm volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
/* xorshift64: a small deterministic generator; *state must not be 0. */
static inline uint64_t xorshift64(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* PCI configuration space, mechanism #1, bus 0. */
#define PCI_CONFIG_ADDR     0xcf8
#define PCI_CONFIG_DATA     0xcfc
#define PCI_COMMAND         0x04
#define PCI_COMMAND_IO      0x1
#define PCI_COMMAND_MEMORY  0x2
#define PCI_COMMAND_MASTER  0x4
#define PCI_BAR0            0x10

static inline uint32_t pci_read32(uint8_t bus_dev_fn, int offset)
{
    outl(PCI_CONFIG_ADDR, 0x80000000u | (bus_dev_fn << 8) | (offset & 0xfc));
    return inl(PCI_CONFIG_DATA);
}
static inline void pci_write32(uint8_t bus_dev_fn, int offset, uint32_t v)
{
    outl(PCI_CONFIG_ADDR, 0x80000000u | (bus_dev_fn << 8) | (offset & 0xfc));
    outl(PCI_CONFIG_DATA, v);
}
/* The bus_dev_fn of the first function with this vendor:device, or -1. */
static inline int pci_find(uint16_t vendor, uint16_t device)
{
    for (int devfn = 0; devfn < 256; devfn += 8) {
        if (pci_read32(devfn, 0) == (vendor | ((uint32_t)device << 16))) {
            return devfn;
        }
    }
    return -1;
}

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    asm volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                 : "a"(leaf), "c"(sub));
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *memset(void *s, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);
uint64_t parse_u64(const char *s, const char **end);

/* Exit QEMU through isa-debug-exit: QEMU's status is (code << 1) | 1. */
void __attribute__((noreturn)) guest_exit(uint32_t code);

/*
 * Harness internals, not for tests: symbols of guest.ld and entry.S, and
 * the functions that main.c and smp.c share with each other and entry.S.
 */
extern const struct guest_test __gtests_start[], __gtests_end[];
extern char __image_end[], trap_stubs[];
extern char wait_nmi_window[], wait_nmi_hlt[];
extern char ap_trampoline[], ap_trampoline_end[];
struct trap_frame;
void wait_for_nmi(void);
void idt_init(void);
void idt_load(void);
void trap(struct trap_frame *f);
void guest_main(uint32_t start_info_pa);
void ap_main(int index);

#endif
