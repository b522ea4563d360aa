/*
 * The physical limit of a private/shared conversion on this kernel: the
 * KVM work the conversion paths of QEMU do, issued directly. One
 * conversion to private is KVM_SET_MEMORY_ATTRIBUTES(PRIVATE) plus
 * discarding the shared copy (MADV_DONTNEED on anonymous memory, as
 * QEMU's ram_block_discard_range() does); one to shared is
 * KVM_SET_MEMORY_ATTRIBUTES(0) plus fallocate(PUNCH_HOLE) on the
 * guest_memfd.
 *
 * So that the calls cost what they cost in a running VM, a vCPU runs
 * between conversions as the guest of convert_bench does: it exits to
 * ask for each one (a port write here, a hypercall there) and, with
 * "touch", writes a word in every page of the chunk in its new state,
 * so that KVM maps it and the next conversion has that mapping to zap.
 * "idle" runs no vCPU at all.
 *
 * Usage: gmem-convert-bare CHUNK_BYTES ROUND_TRIPS [vcpu|touch|idle]
 *        [thp]   (the shared side madvise(MADV_HUGEPAGE)d, as QEMU's RAM)
 * Prints: "bare chunk=N conversions=N seconds=S per_second=R
 *          set_attributes_us=U discard_shared_us=U discard_private_us=U
 *          guest_us=U"
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define WINDOW (64ULL << 20)
#define SLOT_GPA (1ULL << 30)
#define CODE_SIZE (64ULL << 10)
#define MAILBOX 0x1000          /* in the code slot: u32 gpa, u32 bytes */
#define EXIT_PORT 0x10

/*
 * The guest, 32-bit protected mode without paging, at GPA 0:
 *   again: mov ebx, [MAILBOX]; mov ecx, [MAILBOX + 4]; test ecx, ecx
 *          jz ask
 *   touch: mov dword [ebx], 1; add ebx, 4096; sub ecx, 4096; jnz touch
 *   ask:   out EXIT_PORT, al; jmp again
 */
static const uint8_t guest_code[] = {
    0x8b, 0x1d, 0x00, 0x10, 0x00, 0x00,
    0x8b, 0x0d, 0x04, 0x10, 0x00, 0x00,
    0x85, 0xc9,
    0x74, 0x14,
    0xc7, 0x03, 0x01, 0x00, 0x00, 0x00,
    0x81, 0xc3, 0x00, 0x10, 0x00, 0x00,
    0x81, 0xe9, 0x00, 0x10, 0x00, 0x00,
    0x75, 0xec,
    0xe6, EXIT_PORT,
    0xeb, 0xd8,
};

static void die(const char *what)
{
    fprintf(stderr, "gmem-convert-bare: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void set_attributes(int vm, uint64_t gpa, uint64_t size, uint64_t a)
{
    struct kvm_memory_attributes attr = {
        .address = gpa, .size = size, .attributes = a,
    };

    if (ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, &attr)) {
        die("KVM_SET_MEMORY_ATTRIBUTES");
    }
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *map_anon(uint64_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED) {
        die("mmap");
    }
    return p;
}

static void set_slot(int vm, uint32_t id, uint64_t gpa, uint64_t size,
                     void *host, int gfd)
{
    struct kvm_userspace_memory_region2 slot = {
        .slot = id,
        .flags = gfd >= 0 ? KVM_MEM_GUEST_MEMFD : 0,
        .guest_phys_addr = gpa,
        .memory_size = size,
        .userspace_addr = (uintptr_t)host,
        .guest_memfd = gfd >= 0 ? gfd : 0,
    };

    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &slot)) {
        die("KVM_SET_USER_MEMORY_REGION2");
    }
}

/* A vCPU in flat 32-bit protected mode at guest_code. */
static int make_vcpu(int kvm, int vm, struct kvm_run **run)
{
    struct kvm_segment code = {
        .base = 0, .limit = 0xffffffff, .selector = 8, .type = 0xb,
        .present = 1, .s = 1, .db = 1, .g = 1,
    };
    struct kvm_segment data = code;
    struct kvm_sregs sregs;
    struct kvm_regs regs = { .rip = 0, .rflags = 2 };
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);

    if (vcpu < 0 || run_size < 0) {
        die("KVM_CREATE_VCPU");
    }
    *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (*run == MAP_FAILED) {
        die("mmap(vcpu)");
    }
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs)) {
        die("KVM_GET_SREGS");
    }
    data.type = 3;
    data.selector = 16;
    sregs.cs = code;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    sregs.cr0 |= 1;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) ||
        ioctl(vcpu, KVM_SET_REGS, &regs)) {
        die("KVM_SET_SREGS");
    }
    return vcpu;
}

/* Let the guest touch [gpa, gpa + bytes) and ask for the next conversion. */
static void guest_turn(int vcpu, struct kvm_run *run, uint32_t *mailbox,
                       uint64_t gpa, uint64_t bytes)
{
    mailbox[0] = gpa;
    mailbox[1] = bytes;
    if (ioctl(vcpu, KVM_RUN, 0)) {
        die("KVM_RUN");
    }
    if (run->exit_reason != KVM_EXIT_IO || run->io.port != EXIT_PORT) {
        fprintf(stderr, "gmem-convert-bare: unexpected exit %u\n",
                run->exit_reason);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    uint64_t chunk = argc > 1 ? strtoull(argv[1], NULL, 0) : 4096;
    uint64_t rounds = argc > 2 ? strtoull(argv[2], NULL, 0) : 1000;
    const char *mode = argc > 3 ? argv[3] : "vcpu";
    int thp = argc > 4 && !strcmp(argv[4], "thp");
    int known_mode = !strcmp(mode, "vcpu") || !strcmp(mode, "touch") ||
                     !strcmp(mode, "idle");
    int use_vcpu = strcmp(mode, "idle") != 0;
    uint64_t touch = !strcmp(mode, "touch") ? chunk : 0;
    struct kvm_create_guest_memfd gmem = { .size = WINDOW };
    struct kvm_run *run = NULL;
    int kvm, vm, gfd, vcpu = -1;
    uint8_t *shared, *code;
    uint32_t *mailbox;
    double t0, t1, attr_s = 0, shared_s = 0, private_s = 0, guest_s = 0;

    if (!chunk || chunk % 4096 || WINDOW % chunk || !known_mode) {
        fprintf(stderr, "usage: gmem-convert-bare CHUNK ROUNDS "
                "[vcpu|touch|idle] [thp]; CHUNK a multiple of 4 KiB "
                "dividing 64 MiB\n");
        return 2;
    }
    kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        die("/dev/kvm");
    }
    vm = ioctl(kvm, KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM);
    if (vm < 0) {
        die("KVM_CREATE_VM(KVM_X86_SW_PROTECTED_VM)");
    }
    gfd = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &gmem);
    if (gfd < 0) {
        die("KVM_CREATE_GUEST_MEMFD");
    }
    shared = map_anon(WINDOW);
    if (thp && madvise(shared, WINDOW, MADV_HUGEPAGE)) {
        die("madvise(MADV_HUGEPAGE)");
    }
    set_slot(vm, 0, SLOT_GPA, WINDOW, shared, gfd);
    code = map_anon(CODE_SIZE);
    memcpy(code, guest_code, sizeof(guest_code));
    mailbox = (uint32_t *)(code + MAILBOX);
    set_slot(vm, 1, 0, CODE_SIZE, code, -1);
    if (use_vcpu) {
        vcpu = make_vcpu(kvm, vm, &run);
    }
    /* Touch the shared side once, as a running guest would have. */
    memset(shared, 1, WINDOW);

    t0 = now();
    for (uint64_t i = 0; i < rounds; i++) {
        uint64_t off = (i * chunk) % WINDOW;
        double a = now(), b, c, d, e, f;

        set_attributes(vm, SLOT_GPA + off, chunk,
                       KVM_MEMORY_ATTRIBUTE_PRIVATE);
        b = now();
        if (madvise(shared + off, chunk, MADV_DONTNEED)) {
            die("madvise(MADV_DONTNEED)");
        }
        c = now();
        if (use_vcpu) {
            guest_turn(vcpu, run, mailbox, SLOT_GPA + off, touch);
        }
        d = now();
        set_attributes(vm, SLOT_GPA + off, chunk, 0);
        e = now();
        if (fallocate(gfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
                      chunk)) {
            die("fallocate(PUNCH_HOLE)");
        }
        f = now();
        if (use_vcpu) {
            guest_turn(vcpu, run, mailbox, SLOT_GPA + off, touch);
        }
        /* Each kind of call on its own, as query-guest-memfd counts. */
        attr_s += (b - a) + (e - d);
        shared_s += c - b;
        private_s += f - e;
        guest_s += (d - c) + (now() - f);
    }
    t1 = now();
    printf("bare chunk=%llu conversions=%llu seconds=%.6f per_second=%.1f "
           "set_attributes_us=%.2f discard_shared_us=%.2f "
           "discard_private_us=%.2f guest_us=%.2f\n",
           (unsigned long long)chunk, (unsigned long long)(2 * rounds),
           t1 - t0, 2 * rounds / (t1 - t0), attr_s * 1e6 / (2 * rounds),
           shared_s * 1e6 / rounds, private_s * 1e6 / rounds,
           guest_s * 1e6 / (2 * rounds));
    return 0;
}
