/*
 * kvm-probe: does this machine's /dev/kvm give software-protected VMs
 * (KVM_X86_SW_PROTECTED_VM) with private guest memory?
 *
 * Prints what KVM offers, then creates a type-1 VM with a guest_memfd-backed
 * memslot and flips it to private. Exits 0 only if all of that works.
 * Built by tests/rig/setup.sh against Debian sid's linux-libc-dev headers.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/kvm.h>

#define MEM_SIZE 0x10000

static int failed;

static void check(int ok, const char *what, int err)
{
    if (ok) {
        printf("kvm-probe: %s: ok\n", what);
    } else {
        printf("kvm-probe: %s: FAILED (%s)\n", what, strerror(err));
        failed = 1;
    }
}

/* KVM_CHECK_EXTENSION; bitmask answers are printed in hex with bit names. */
static int cap(int fd, const char *name, long cap, const char *const *bits)
{
    int v = ioctl(fd, KVM_CHECK_EXTENSION, cap);

    if (!bits || v <= 0) {
        printf("kvm-probe: %s = %d\n", name, v);
        return v;
    }
    printf("kvm-probe: %s = 0x%x (", name, v);
    for (int i = 0, n = 0; i < 32; i++) {
        if (v & (1u << i)) {
            printf("%s%s", n++ ? " " : "", bits[i] ? bits[i] : "?");
        }
    }
    printf(")\n");
    return v;
}

static const char *const vm_types[32] = {
    [KVM_X86_DEFAULT_VM] = "DEFAULT_VM",
    [KVM_X86_SW_PROTECTED_VM] = "SW_PROTECTED_VM",
    [KVM_X86_SEV_VM] = "SEV_VM", [KVM_X86_SEV_ES_VM] = "SEV_ES_VM",
    [KVM_X86_SNP_VM] = "SNP_VM", [KVM_X86_TDX_VM] = "TDX_VM",
};
static const char *const mem_attrs[32] = { [3] = "PRIVATE" };
static const char *const gmem_flags[32] = { [0] = "MMAP", [1] = "INIT_SHARED" };
static const char *const hypercalls[32] = { [12] = "MAP_GPA_RANGE" };

int main(void)
{
    int kvm, vm, gmem, types, attrs;
    void *shared;

    setvbuf(stdout, NULL, _IOLBF, 0);
    kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        printf("kvm-probe: /dev/kvm: %s\n", strerror(errno));
        return 1;
    }
    printf("kvm-probe: KVM_GET_API_VERSION = %d\n",
           ioctl(kvm, KVM_GET_API_VERSION, 0));
    types = cap(kvm, "KVM_CAP_VM_TYPES", KVM_CAP_VM_TYPES, vm_types);

    vm = ioctl(kvm, KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM);
    check(vm >= 0, "KVM_CREATE_VM(KVM_X86_SW_PROTECTED_VM)", errno);
    if (vm < 0) {
        printf("kvm-probe: FAIL: no type-1 VM (VM_TYPES 0x%x lacks bit 1)\n",
               types < 0 ? 0 : types);
        return 1;
    }

    /* Asked on the VM: the answers depend on the VM type. */
    attrs = cap(vm, "KVM_CAP_MEMORY_ATTRIBUTES", KVM_CAP_MEMORY_ATTRIBUTES,
                mem_attrs);
    if (attrs < 0 || !(attrs & KVM_MEMORY_ATTRIBUTE_PRIVATE)) {
        printf("kvm-probe: KVM_MEMORY_ATTRIBUTE_PRIVATE not offered\n");
        failed = 1;
    }
    if (cap(vm, "KVM_CAP_GUEST_MEMFD", KVM_CAP_GUEST_MEMFD, NULL) <= 0) {
        failed = 1;
    }
#ifdef KVM_CAP_GUEST_MEMFD_FLAGS
    cap(vm, "KVM_CAP_GUEST_MEMFD_FLAGS", KVM_CAP_GUEST_MEMFD_FLAGS, gmem_flags);
#endif
    cap(vm, "KVM_CAP_PRE_FAULT_MEMORY", KVM_CAP_PRE_FAULT_MEMORY, NULL);
    if (cap(vm, "KVM_CAP_USER_MEMORY2", KVM_CAP_USER_MEMORY2, NULL) <= 0) {
        failed = 1;
    }
    cap(vm, "KVM_CAP_EXIT_HYPERCALL", KVM_CAP_EXIT_HYPERCALL, hypercalls);

    /*
     * A 64 KiB slot at GPA 0 with both backings: mmap (shared),
     * guest_memfd (private).
     */
    struct kvm_create_guest_memfd cg = { .size = MEM_SIZE };
    gmem = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &cg);
    check(gmem >= 0, "KVM_CREATE_GUEST_MEMFD(64 KiB)", errno);

    shared = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (gmem >= 0 && shared != MAP_FAILED) {
        struct kvm_userspace_memory_region2 r = {
            .slot = 0,
            .flags = KVM_MEM_GUEST_MEMFD,
            .guest_phys_addr = 0,
            .memory_size = MEM_SIZE,
            .userspace_addr = (uintptr_t)shared,
            .guest_memfd = (uint32_t)gmem,
            .guest_memfd_offset = 0,
        };
        int ret = ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r);
        check(ret == 0, "KVM_SET_USER_MEMORY_REGION2(KVM_MEM_GUEST_MEMFD)",
              errno);

        struct kvm_memory_attributes a = {
            .address = 0,
            .size = MEM_SIZE,
            .attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE,
        };
        ret = ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, &a);
        check(ret == 0, "KVM_SET_MEMORY_ATTRIBUTES(PRIVATE)", errno);
    } else {
        failed = 1;
    }

    printf("kvm-probe: %s\n", failed
           ? "FAIL: type-1 VM created but private memory does not work"
           : "PASS: type-1 VM with guest_memfd and private memory attributes");
    return failed;
}
