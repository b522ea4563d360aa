/*
 * KVM guest_memfd layer: the kernel calls of a conversion, their retry
 * policy, and fault injection for tests.
 *
 * EINTR and EAGAIN mean "nothing happened, try again" for each of these
 * calls (a signal, or a resource busy for a moment): they are retried a
 * few times. Anything else is the caller's to answer. An injected fault
 * fails a call before it reaches the kernel, so it changed nothing; it
 * can be armed only with -accel kvm,x-guest-memfd-fault-injection=on.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/ioctl.h>
#include <linux/kvm.h>
#include "qapi/error.h"
#include "qapi/qapi-commands-guest-memfd.h"
#include "qemu/atomic.h"
#include "qemu/lockable.h"
#include "qemu/madvise.h"
#include "qemu/thread.h"
#include "qemu/timer.h"
#include "system/kvm.h"
#include "system/kvm_int.h"
#include "system/ramblock.h"
#include "gmem-kernel.h"
#include "gmem-manager.h"
#include "trace.h"

/* Attempts of a call that keeps failing with EINTR or EAGAIN. */
#define GMEM_KERNEL_ATTEMPTS 8

static struct {
    QemuMutex lock;
    GuestMemfdKernelCall call;
    int error;                  /* positive errno */
    uint32_t skip;              /* calls let through before failing */
    uint32_t count;             /* calls still to fail; 0: disarmed */
} inject;

/* Updated without a lock: pre-faults run outside the manager's lock. */
static KvmGmemKernelStats gmem_kernel_stats[GUEST_MEMFD_KERNEL_CALL__MAX];

static void gmem_kernel_account(GuestMemfdKernelCall call, int64_t t0,
                                int ret)
{
    KvmGmemKernelStats *s = &gmem_kernel_stats[call];

    qatomic_add(&s->calls, 1);
    qatomic_add(&s->ns, get_clock() - t0);
    if (ret) {
        qatomic_add(&s->failures, 1);
    }
}

void kvm_gmem_kernel_read_stats(GuestMemfdKernelCall call,
                                KvmGmemKernelStats *stats)
{
    stats->calls = qatomic_read(&gmem_kernel_stats[call].calls);
    stats->failures = qatomic_read(&gmem_kernel_stats[call].failures);
    stats->ns = qatomic_read(&gmem_kernel_stats[call].ns);
}

static void __attribute__((constructor)) gmem_kernel_init(void)
{
    qemu_mutex_init(&inject.lock);
}

void qmp_x_guest_memfd_inject_fault(GuestMemfdKernelCall call,
                                    GuestMemfdFaultErrno error,
                                    bool has_skip, uint32_t skip,
                                    bool has_count, uint32_t count,
                                    Error **errp)
{
    static const int errnos[GUEST_MEMFD_FAULT_ERRNO__MAX] = {
        [GUEST_MEMFD_FAULT_ERRNO_EINTR] = EINTR,
        [GUEST_MEMFD_FAULT_ERRNO_EAGAIN] = EAGAIN,
        [GUEST_MEMFD_FAULT_ERRNO_ENOMEM] = ENOMEM,
        [GUEST_MEMFD_FAULT_ERRNO_EFAULT] = EFAULT,
    };

    /* A test tool: any QMP client could otherwise fail a VM's requests. */
    if (!kvm_gmem_config.fault_injection) {
        error_setg(errp, "x-guest-memfd-inject-fault is disabled: it is for "
                   "tests, enable it with -accel "
                   "kvm,x-guest-memfd-fault-injection=on");
        return;
    }
    QEMU_LOCK_GUARD(&inject.lock);
    inject.call = call;
    inject.error = errnos[error];
    inject.skip = has_skip ? skip : 0;
    qatomic_set(&inject.count, has_count ? count : 1);
}

/* -errno if this call is to fail, else 0. */
static int gmem_injected(GuestMemfdKernelCall call)
{
    /* Disarmed, the usual case: no lock on the conversion path. */
    if (!qatomic_read(&inject.count)) {
        return 0;
    }
    QEMU_LOCK_GUARD(&inject.lock);
    if (!inject.count || inject.call != call) {
        return 0;
    }
    if (inject.skip) {
        inject.skip--;
        return 0;
    }
    qatomic_set(&inject.count, inject.count - 1);
    trace_kvm_gmem_fault_injected(GuestMemfdKernelCall_str(call),
                                  inject.error);
    return -inject.error;
}

static bool gmem_retry(int ret, int *attempts)
{
    return (ret == -EINTR || ret == -EAGAIN) &&
           ++*attempts < GMEM_KERNEL_ATTEMPTS;
}

/*
 * KVM_SET_MEMORY_ATTRIBUTES straight on the VM fd, not through
 * kvm_vm_ioctl(): off the BQL, its accel_ioctl_begin() waits while
 * kvm_region_commit() inhibits ioctls, and the manager calls this with
 * gmem.lock held, which that commit then waits for in
 * kvm_gmem_slot_added(): a deadlock (issue 24). The inhibit exists so
 * that nothing sees a memslot missing between its deletion and its
 * re-addition; this call does not look at memslots for its result.
 * Linux keeps memory attributes per GFN in the VM's xarray, apart from
 * memslots, and serialises this call with memslot updates on slots_lock:
 * a slot created after it reads the new attributes when it is set up, a
 * slot present during it is updated by it. And every memslot that maps a
 * block with a private side takes the record's state in
 * kvm_gmem_slot_added(), under gmem.lock, so a conversion that runs
 * while a commit has a slot out is in the record before that slot is
 * back, and KVM ends equal to the record either way.
 */
static int gmem_set_attributes_ioctl(uint64_t gpa, uint64_t size,
                                     bool to_private)
{
    struct kvm_memory_attributes attrs = {
        .address = gpa,
        .size = size,
        .attributes = to_private ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
    };

    return ioctl(kvm_state->vmfd, KVM_SET_MEMORY_ATTRIBUTES, &attrs) ?
           -errno : 0;
}

int kvm_gmem_kernel_set_attributes(uint64_t gpa, uint64_t size,
                                   bool to_private)
{
    int attempts = 0, ret;

    do {
        int64_t t0 = get_clock();

        ret = gmem_injected(GUEST_MEMFD_KERNEL_CALL_SET_ATTRIBUTES);
        if (!ret) {
            ret = gmem_set_attributes_ioctl(gpa, size, to_private);
        }
        gmem_kernel_account(GUEST_MEMFD_KERNEL_CALL_SET_ATTRIBUTES, t0, ret);
    } while (gmem_retry(ret, &attempts));
    return ret;
}

int kvm_gmem_kernel_discard(RAMBlock *rb, uint64_t offset, uint64_t size,
                            bool guest_memfd)
{
    int attempts = 0, ret;

    GuestMemfdKernelCall call = guest_memfd ?
                                GUEST_MEMFD_KERNEL_CALL_DISCARD_PRIVATE :
                                GUEST_MEMFD_KERNEL_CALL_DISCARD_SHARED;

    do {
        int64_t t0 = get_clock();

        ret = gmem_injected(call);
        if (!ret) {
            ret = guest_memfd ?
                  ram_block_discard_guest_memfd_range(rb, offset, size) :
                  ram_block_discard_range(rb, offset, size);
        }
        gmem_kernel_account(call, t0, ret);
    } while (gmem_retry(ret, &attempts));
    return ret;
}

int kvm_gmem_kernel_populate_shared(RAMBlock *rb, uint64_t offset,
                                    uint64_t size)
{
    int attempts = 0, ret;

    do {
        int64_t t0 = get_clock();

        ret = gmem_injected(GUEST_MEMFD_KERNEL_CALL_POPULATE_SHARED);
        if (!ret && qemu_madvise(rb->host + offset, size,
                                 QEMU_MADV_POPULATE_WRITE)) {
            ret = -errno;
        }
        gmem_kernel_account(GUEST_MEMFD_KERNEL_CALL_POPULATE_SHARED, t0,
                            ret);
    } while (gmem_retry(ret, &attempts));
    return ret;
}

int kvm_gmem_kernel_pre_fault(CPUState *cpu, uint64_t gpa, uint64_t size)
{
    struct kvm_pre_fault_memory mem = { .gpa = gpa, .size = size };
    int attempts = 0, ret = 0;

    while (mem.size) {
        int64_t t0 = get_clock();

        ret = gmem_injected(GUEST_MEMFD_KERNEL_CALL_PRE_FAULT);
        if (!ret) {
            /* KVM advances gpa and shrinks size as it goes. */
            ret = kvm_vcpu_ioctl(cpu, KVM_PRE_FAULT_MEMORY, &mem);
        }
        gmem_kernel_account(GUEST_MEMFD_KERNEL_CALL_PRE_FAULT, t0, ret);
        if (ret && !gmem_retry(ret, &attempts)) {
            break;
        }
    }
    return ret;
}
