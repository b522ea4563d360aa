/*
 * KVM guest_memfd layer: stubs for builds without KVM.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-guest-memfd.h"
#include "qapi/qapi-commands-launch-measurement.h"
#include "monitor/hmp.h"
#include "monitor/monitor.h"
#include "system/kvm-gmem.h"

GuestMemfdInfo *qmp_query_guest_memfd(bool has_ranges, bool ranges,
                                      Error **errp)
{
    error_setg(errp, "guest_memfd needs KVM, which this QEMU was built "
               "without");
    return NULL;
}

void qmp_guest_memfd_convert(uint64_t gpa, uint64_t size, bool private,
                             Error **errp)
{
    error_setg(errp, "guest_memfd needs KVM, which this QEMU was built "
               "without");
}

void hmp_info_guest_memfd(Monitor *mon, const QDict *qdict)
{
    monitor_printf(mon, "guest_memfd needs KVM, which this QEMU was built "
                   "without\n");
}

uint64_t kvm_gmem_lease_take(RAMBlock *rb, uint64_t offset, uint64_t size)
{
    return size;
}

void kvm_gmem_host_read(RAMBlock *rb, uint64_t offset, void *buf,
                        const void *host, uint64_t len)
{
    memcpy(buf, host, len);
}

void kvm_gmem_host_write(RAMBlock *rb, uint64_t offset, void *host,
                         const void *buf, uint64_t len)
{
    memmove(host, buf, len);
}

void kvm_gmem_listener_change_begin(void)
{
}

void kvm_gmem_listener_change_end(void)
{
}

void qmp_x_guest_memfd_inject_fault(GuestMemfdKernelCall call,
                                    GuestMemfdFaultErrno error,
                                    bool has_skip, uint32_t skip,
                                    bool has_count, uint32_t count,
                                    Error **errp)
{
    error_setg(errp, "guest_memfd needs KVM, which this QEMU was built "
               "without");
}

void kvm_gmem_lease_drop(RAMBlock *rb, uint64_t offset)
{
}

LaunchMeasurement *qmp_query_launch_measurement(Error **errp)
{
    error_setg(errp, "SEV-SNP and TDX launch needs KVM, which this QEMU was "
               "built without");
    return NULL;
}

void hmp_info_launch_measurement(Monitor *mon, const QDict *qdict)
{
    monitor_printf(mon, "SEV-SNP and TDX launch needs KVM, which this QEMU "
                   "was built without\n");
}

void *kvm_gmem_dump_view(void *host, size_t len)
{
    return host;
}
