/*
 * The launch stand-in: what its parts share. README.md says what it
 * answers and why; each rule names the Linux 7.2 function it follows.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef LAUNCH_STANDIN_H
#define LAUNCH_STANDIN_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <glib.h>
#include <linux/kvm.h>
#include <linux/psp-sev.h>

#define STANDIN_PAGE_SIZE   4096ULL
#define STANDIN_DIGEST_SIZE 48
#define STANDIN_MAX_VCPUS   64

/* The VM types the stand-in plays; the real VM is KVM_X86_SW_PROTECTED_VM. */
typedef enum StandinVmType {
    STANDIN_VM_REAL,            /* not ours: everything passes through */
    STANDIN_VM_SNP,
    STANDIN_VM_TDX,
} StandinVmType;

typedef struct StandinVcpu {
    int fd;
    unsigned long id;
    bool tdx_initialized;       /* KVM_TDX_INIT_VCPU done */
} StandinVcpu;

typedef struct Standin {
    int kvm_fd;                 /* /dev/kvm */
    int sev_fd;                 /* our /dev/sev (a /dev/null descriptor) */
    int vm_fd;
    StandinVmType type;
    StandinVcpu vcpus[STANDIN_MAX_VCPUS];   /* in creation order */
    unsigned nr_vcpus;
} Standin;

extern Standin standin;

/* The kernel's own ioctl, for everything the stand-in does not answer. */
long standin_real_ioctl(int fd, unsigned long req, void *arg);

/* Copy @len bytes at @uaddr of this process; -EFAULT where unmapped. */
int standin_read_user(uint64_t uaddr, void *buf, size_t len);
int standin_write_user(uint64_t uaddr, const void *buf, size_t len);

/*
 * kvm_gmem_populate()'s per-page checks on the memory QEMU really set up:
 * the GFN lies in a memslot with a guest_memfd (kvm_slot_has_gmem()) and
 * KVM holds it private (kvm_range_has_memory_attributes()). Returns 0 or
 * -EINVAL; *slot_end gets the first GFN past the memslot.
 */
int standin_gmem_page_check(uint64_t gfn, uint64_t *slot_end);
/* Mark a GFN populated; false if it already was. */
bool standin_mark_populated(uint64_t gfn);

/* One JSON object per line to $GMEM_LAUNCH_STANDIN_REPORT. */
void standin_report(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
/* A rule refused a command: on stderr and in the report. */
int standin_refuse(const char *command, int err, const char *rule);
char *standin_hex(const void *buf, size_t len);

/*
 * $GMEM_LAUNCH_STANDIN_FAIL=command:nth:errno[:fw_error]: the nth call
 * (from 1) of @command fails with -errno and that firmware/hardware code;
 * "nth+" fails the nth call and every later one. Returns 0, or the
 * negative errno to fail with.
 */
int standin_injected(const char *command, uint64_t *fw_error);

/*
 * Wait until no discard of QEMU's async worker that the stand-in holds
 * back ($GMEM_LAUNCH_STANDIN_DISCARD_DELAY_MS, discard.c) is in flight.
 */
void standin_discards_settle(void);

/* SEV-SNP: /dev/sev and KVM_MEMORY_ENCRYPT_OP on the VM (snp.c). */
long snp_sev_device_ioctl(unsigned long req, void *arg);
long snp_vm_encrypt_op(void *arg);
uint64_t snp_supported_vmsa_features(void);
uint64_t snp_supported_policy_bits(void);

/* The VMSA Linux builds from a vCPU's registers (vmsa.c). */
int snp_build_vmsa(int vcpu_fd, uint64_t sev_features, uint8_t *page);

/* TDX: KVM_MEMORY_ENCRYPT_OP on the VM and on a vCPU (tdx.c). */
long tdx_vm_encrypt_op(void *arg);
long tdx_vcpu_encrypt_op(StandinVcpu *vcpu, void *arg);
/* kvm_tdx->state: vCPUs may be created only once INIT_VM is done. */
bool tdx_vm_initialized(void);

#endif
