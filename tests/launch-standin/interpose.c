/*
 * The process boundary: open() and ioctl() of QEMU, interposed with
 * LD_PRELOAD. Everything passes to the real kernel except what no
 * machine here has: /dev/sev, KVM_MEMORY_ENCRYPT_OP of SEV-SNP and TDX
 * VMs, and the answers that make QEMU create one (the VM types, the SEV
 * device attributes). An SNP or TDX VM is created as a real
 * KVM_X86_SW_PROTECTED_VM, so its memslots, guest_memfd and memory
 * attributes are KVM's own.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "standin.h"

#define EXPORT __attribute__((visibility("default")))

/* Linux 7.2's attribute, newer than the tree's headers. */
#ifndef KVM_X86_SNP_POLICY_BITS
#define KVM_X86_SNP_POLICY_BITS     1
#endif

Standin standin = { .kvm_fd = -1, .sev_fd = -1, .vm_fd = -1 };
static GMutex lock;

long standin_real_ioctl(int fd, unsigned long req, void *arg)
{
    return syscall(SYS_ioctl, fd, req, arg);
}

static int real_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    return syscall(SYS_openat, dirfd, path, flags, mode);
}

static int standin_open(int dirfd, const char *path, int flags, mode_t mode)
{
    int fd;

    if (path && !strcmp(path, "/dev/sev")) {
        /* No PSP here: a descriptor that stands for it (snp.c answers). */
        fd = real_openat(AT_FDCWD, "/dev/null", O_RDWR | (flags & O_CLOEXEC),
                         0);
        if (fd >= 0) {
            standin.sev_fd = fd;
        }
        return fd;
    }
    fd = real_openat(dirfd, path, flags, mode);
    if (fd >= 0 && path && !strcmp(path, "/dev/kvm")) {
        standin.kvm_fd = fd;
    }
    return fd;
}

static mode_t open_mode(int flags, va_list ap)
{
    return (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
}

EXPORT int open(const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return standin_open(AT_FDCWD, path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return standin_open(AT_FDCWD, path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return standin_open(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return standin_open(dirfd, path, flags, mode);
}

static long fail(long err)
{
    errno = -err;
    return -1;
}

/* The stand-in's answers are the kernel's: 0 or more, or -errno. */
static long answer(long r)
{
    return r < 0 ? fail(r) : r;
}

static StandinVcpu *vcpu_of(int fd)
{
    for (unsigned i = 0; i < standin.nr_vcpus; i++) {
        if (standin.vcpus[i].fd == fd) {
            return &standin.vcpus[i];
        }
    }
    return NULL;
}

/* KVM_CAP_VM_TYPES (kvm_vm_ioctl_check_extension()): an SNP and TDX host. */
static long check_extension(int fd, unsigned long req, void *arg)
{
    long r = standin_real_ioctl(fd, req, arg);

    if ((long)arg == KVM_CAP_VM_TYPES && r >= 0) {
        r |= 1 << KVM_X86_SNP_VM | 1 << KVM_X86_TDX_VM;
    }
    return r;
}

/* sev_dev_get_attr(): the SEV group of /dev/kvm's attributes. */
static long device_attr(int fd, unsigned long req, void *arg)
{
    struct kvm_device_attr *attr = arg;
    uint64_t val;

    if (attr->group != KVM_X86_GRP_SEV) {
        return standin_real_ioctl(fd, req, arg);
    }
    switch (attr->attr) {
    case KVM_X86_SEV_VMSA_FEATURES:
        val = snp_supported_vmsa_features();
        break;
    case KVM_X86_SNP_POLICY_BITS:
        val = snp_supported_policy_bits();
        break;
    default:
        return fail(-ENXIO);
    }
    if (req == KVM_HAS_DEVICE_ATTR) {
        return 0;
    }
    if (standin_write_user(attr->addr, &val, sizeof(val))) {
        return fail(-EFAULT);
    }
    return 0;
}

static long create_vm(int fd, unsigned long type)
{
    StandinVmType plays = type == KVM_X86_SNP_VM ? STANDIN_VM_SNP :
                          type == KVM_X86_TDX_VM ? STANDIN_VM_TDX :
                          STANDIN_VM_REAL;
    long r;

    if (plays == STANDIN_VM_REAL) {
        return standin_real_ioctl(fd, KVM_CREATE_VM, (void *)type);
    }
    r = standin_real_ioctl(fd, KVM_CREATE_VM,
                           (void *)(unsigned long)KVM_X86_SW_PROTECTED_VM);
    if (r >= 0) {
        standin.vm_fd = r;
        standin.type = plays;
        standin.nr_vcpus = 0;
        standin_report("{\"event\": \"create-vm\", \"type\": \"%s\", "
                       "\"real-type\": %d}",
                       plays == STANDIN_VM_SNP ? "sev-snp" : "tdx",
                       KVM_X86_SW_PROTECTED_VM);
    }
    return r;
}

static long create_vcpu(int fd, unsigned long id)
{
    long r;

    /* tdx_vcpu_create(): a TD's vCPUs come after KVM_TDX_INIT_VM. */
    if (standin.type == STANDIN_VM_TDX && !tdx_vm_initialized()) {
        return fail(standin_refuse("KVM_CREATE_VCPU", -EIO,
                                   "tdx_vcpu_create(): the TD is not "
                                   "initialized (KVM_TDX_INIT_VM)"));
    }
    if (standin.nr_vcpus == STANDIN_MAX_VCPUS) {
        return fail(-E2BIG);
    }
    r = standin_real_ioctl(fd, KVM_CREATE_VCPU, (void *)id);
    if (r >= 0) {
        standin.vcpus[standin.nr_vcpus++] = (StandinVcpu) {
            .fd = r, .id = id,
        };
    }
    return r;
}

void standin_memslot_set(const struct kvm_userspace_memory_region2 *r);
void standin_attributes_set(const struct kvm_memory_attributes *a);

static long vm_ioctl(int fd, unsigned long req, void *arg)
{
    long r;

    switch (req) {
    case KVM_CHECK_EXTENSION:
        return check_extension(fd, req, arg);
    case KVM_CREATE_VCPU:
        return create_vcpu(fd, (unsigned long)arg);
    case KVM_MEMORY_ENCRYPT_OP:
        return answer(standin.type == STANDIN_VM_SNP ?
                      snp_vm_encrypt_op(arg) : tdx_vm_encrypt_op(arg));
    case KVM_SET_USER_MEMORY_REGION2:
        r = standin_real_ioctl(fd, req, arg);
        if (!r) {
            standin_memslot_set(arg);
        }
        return r;
    case KVM_SET_USER_MEMORY_REGION: {
        const struct kvm_userspace_memory_region *m = arg;
        struct kvm_userspace_memory_region2 m2 = {
            .slot = m->slot, .flags = m->flags,
            .guest_phys_addr = m->guest_phys_addr,
            .memory_size = m->memory_size,
            .userspace_addr = m->userspace_addr,
        };

        r = standin_real_ioctl(fd, req, arg);
        if (!r) {
            standin_memslot_set(&m2);
        }
        return r;
    }
    case KVM_SET_MEMORY_ATTRIBUTES:
        r = standin_real_ioctl(fd, req, arg);
        if (!r) {
            standin_attributes_set(arg);
        }
        return r;
    default:
        return standin_real_ioctl(fd, req, arg);
    }
}

EXPORT int ioctl(int fd, unsigned long req, ...)
{
    StandinVcpu *vcpu;
    va_list ap;
    void *arg;
    long r;

    va_start(ap, req);
    arg = va_arg(ap, void *);
    va_end(ap);

    /* The vCPUs' hot path, and every descriptor that is not ours. */
    if (req == KVM_RUN || fd < 0 ||
        (fd != standin.kvm_fd && fd != standin.sev_fd &&
         fd != standin.vm_fd && req != KVM_MEMORY_ENCRYPT_OP)) {
        return standin_real_ioctl(fd, req, arg);
    }

    g_mutex_lock(&lock);
    if (fd == standin.sev_fd) {
        r = answer(snp_sev_device_ioctl(req, arg));
    } else if (fd == standin.kvm_fd && req == KVM_CREATE_VM) {
        r = create_vm(fd, (unsigned long)arg);
    } else if (fd == standin.kvm_fd && req == KVM_CHECK_EXTENSION) {
        r = check_extension(fd, req, arg);
    } else if (fd == standin.kvm_fd && (req == KVM_GET_DEVICE_ATTR ||
                                        req == KVM_HAS_DEVICE_ATTR)) {
        r = device_attr(fd, req, arg);
    } else if (fd == standin.vm_fd && standin.type != STANDIN_VM_REAL) {
        r = vm_ioctl(fd, req, arg);
    } else if (req == KVM_MEMORY_ENCRYPT_OP &&
               standin.type == STANDIN_VM_TDX && (vcpu = vcpu_of(fd))) {
        r = answer(tdx_vcpu_encrypt_op(vcpu, arg));
    } else {
        r = standin_real_ioctl(fd, req, arg);
    }
    g_mutex_unlock(&lock);
    return r;
}
