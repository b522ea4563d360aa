/*
 * The physical limit of a private/shared conversion on this kernel: the
 * KVM work the conversion paths of QEMU do, issued directly. One
 * conversion to private is KVM_SET_MEMORY_ATTRIBUTES(PRIVATE) plus
 * discarding the shared copy (MADV_DONTNEED on anonymous memory, as
 * QEMU's ram_block_discard_range() does); one to shared is
 * KVM_SET_MEMORY_ATTRIBUTES(0) plus fallocate(PUNCH_HOLE) on the
 * guest_memfd. No vCPU runs: this is the floor under any VMM.
 *
 * Usage: gmem-convert-bare CHUNK_BYTES ROUND_TRIPS
 * Prints: "bare chunk=N conversions=N seconds=S per_second=R"
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

int main(int argc, char **argv)
{
    uint64_t chunk = argc > 1 ? strtoull(argv[1], NULL, 0) : 4096;
    uint64_t rounds = argc > 2 ? strtoull(argv[2], NULL, 0) : 1000;
    struct kvm_create_guest_memfd gmem = { .size = WINDOW };
    struct kvm_userspace_memory_region2 slot = { 0 };
    int kvm, vm, gfd;
    uint8_t *shared;
    double t0, t1, attr_s = 0, shared_s = 0, private_s = 0;

    if (!chunk || chunk % 4096 || WINDOW % chunk) {
        fprintf(stderr, "chunk must be a multiple of 4 KiB dividing 64 MiB\n");
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
    shared = mmap(NULL, WINDOW, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        die("mmap");
    }
    slot.slot = 0;
    slot.flags = KVM_MEM_GUEST_MEMFD;
    slot.guest_phys_addr = SLOT_GPA;
    slot.memory_size = WINDOW;
    slot.userspace_addr = (uintptr_t)shared;
    slot.guest_memfd = gfd;
    slot.guest_memfd_offset = 0;
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &slot)) {
        die("KVM_SET_USER_MEMORY_REGION2");
    }
    /* Touch the shared side once, as a running guest would have. */
    memset(shared, 1, WINDOW);

    t0 = now();
    for (uint64_t i = 0; i < rounds; i++) {
        uint64_t off = (i * chunk) % WINDOW;
        double a = now(), b, c, d;

        set_attributes(vm, SLOT_GPA + off, chunk,
                       KVM_MEMORY_ATTRIBUTE_PRIVATE);
        b = now();
        if (madvise(shared + off, chunk, MADV_DONTNEED)) {
            die("madvise(MADV_DONTNEED)");
        }
        c = now();
        set_attributes(vm, SLOT_GPA + off, chunk, 0);
        d = now();
        if (fallocate(gfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
                      chunk)) {
            die("fallocate(PUNCH_HOLE)");
        }
        /* Each kind of call on its own, as query-guest-memfd counts. */
        attr_s += (b - a) + (d - c);
        shared_s += c - b;
        private_s += now() - d;
    }
    t1 = now();
    printf("bare chunk=%llu conversions=%llu seconds=%.6f per_second=%.1f "
           "set_attributes_us=%.2f discard_shared_us=%.2f "
           "discard_private_us=%.2f\n",
           (unsigned long long)chunk, (unsigned long long)(2 * rounds),
           t1 - t0, 2 * rounds / (t1 - t0), attr_s * 1e6 / (2 * rounds),
           shared_s * 1e6 / rounds, private_s * 1e6 / rounds);
    return 0;
}
