/*
 * TDX as Linux 7.2 (arch/x86/kvm/vmx/tdx.c) and the TDX module would
 * answer QEMU's KVM_MEMORY_ENCRYPT_OP: KVM_TDX_CAPABILITIES, INIT_VM,
 * GET_CPUID, INIT_VCPU, INIT_MEM_REGION and FINALIZE_VM, with the
 * kernel's checks. MRTD is computed as the TDX module does
 * (TDH.MEM.PAGE.ADD and TDH.MR.EXTEND records, SHA-384) from the source
 * bytes of each INIT_MEM_REGION at the moment of the call.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include "standin.h"

#define TDX_EXTENDMR_CHUNKSIZE  256
#define KVM_MAX_CPUID_ENTRIES   256     /* arch/x86/include/asm/kvm_host.h */
/* tdx_get_supported_attrs(): DEBUG, SEPT_VE_DISABLE, PKS, PERFMON */
#define TDX_SUPPORTED_ATTRS     (1ULL << 0 | 1ULL << 28 | 1ULL << 30 | \
                                 1ULL << 63)
/* tdx_get_supported_xfam(): x87, SSE, AVX, AVX-512, PT, PKRU, CET, AMX */
#define TDX_SUPPORTED_XFAM      0x61be7ULL
/* The CPUID leaves a TDX module lets the VMM configure (all bits here). */
static const uint32_t tdx_config_leaves[][2] = {
    { 0x1, 0 }, { 0x7, 0 }, { 0xd, 0 }, { 0xd, 1 }, { 0x80000001, 0 },
    { 0x80000008, 0 },
};

typedef enum TdState {
    TD_STATE_UNINITIALIZED,
    TD_STATE_INITIALIZED,
    TD_STATE_RUNNABLE,
} TdState;

static struct {
    TdState state;
    GChecksum *mrtd;
    struct kvm_cpuid2 *cpuid;   /* what INIT_VM gave the TD */
    unsigned pages;
} td;

bool tdx_vm_initialized(void)
{
    return td.state != TD_STATE_UNINITIALIZED;
}

static int tdx_capabilities(struct kvm_tdx_cmd *cmd)
{
    unsigned n = G_N_ELEMENTS(tdx_config_leaves);
    size_t size = sizeof(struct kvm_tdx_capabilities) +
                  n * sizeof(struct kvm_cpuid_entry2);
    g_autofree struct kvm_tdx_capabilities *caps = g_malloc0(size);
    uint32_t nent;

    /* tdx_get_capabilities() */
    if (cmd->flags) {
        return -EINVAL;
    }
    if (standin_read_user(cmd->data +
                          offsetof(struct kvm_tdx_capabilities, cpuid.nent),
                          &nent, sizeof(nent))) {
        return -EFAULT;
    }
    if (nent < n) {
        return -E2BIG;
    }
    caps->supported_attrs = TDX_SUPPORTED_ATTRS;
    caps->supported_xfam = TDX_SUPPORTED_XFAM;
    caps->cpuid.nent = n;
    for (unsigned i = 0; i < n; i++) {
        caps->cpuid.entries[i] = (struct kvm_cpuid_entry2) {
            .function = tdx_config_leaves[i][0],
            .index = tdx_config_leaves[i][1],
            .flags = tdx_config_leaves[i][0] == 0xd ?
                     KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0,
            .eax = ~0u, .ebx = ~0u, .ecx = ~0u, .edx = ~0u,
        };
    }
    return standin_write_user(cmd->data, caps, size);
}

static int tdx_init_vm(struct kvm_tdx_cmd *cmd)
{
    struct kvm_tdx_init_vm init;
    uint64_t hw_error = 0;
    uint32_t nent;
    size_t size;
    int guest_pa = 0, ret;

    /* tdx_td_init() */
    if (td.state != TD_STATE_UNINITIALIZED || cmd->flags) {
        return standin_refuse("KVM_TDX_INIT_VM", -EINVAL, "tdx_td_init(): "
                              "initialized once, no flags");
    }
    if (standin_read_user(cmd->data, &init, sizeof(init))) {
        return -EFAULT;
    }
    nent = init.cpuid.nent;
    if (nent > KVM_MAX_CPUID_ENTRIES) {
        return -E2BIG;
    }
    size = nent * sizeof(struct kvm_cpuid_entry2);
    td.cpuid = g_malloc0(sizeof(*td.cpuid) + size);
    if (standin_read_user(cmd->data + sizeof(init), td.cpuid->entries,
                          size)) {
        return -EFAULT;
    }
    td.cpuid->nent = nent;
    for (unsigned i = 0; i < G_N_ELEMENTS(init.reserved); i++) {
        if (init.reserved[i]) {
            return standin_refuse("KVM_TDX_INIT_VM", -EINVAL,
                                  "tdx_td_init(): reserved bytes");
        }
    }
    /* setup_tdparams() */
    if (init.attributes & ~TDX_SUPPORTED_ATTRS ||
        init.xfam & ~TDX_SUPPORTED_XFAM) {
        return standin_refuse("KVM_TDX_INIT_VM", -EINVAL,
                              "setup_tdparams(): attributes or XFAM");
    }
    /* setup_tdparams_eptp_controls(): GPAW from CPUID 0x80000008 */
    for (unsigned i = 0; i < nent; i++) {
        if (td.cpuid->entries[i].function == 0x80000008) {
            guest_pa = (td.cpuid->entries[i].eax >> 16) & 0xff;
        }
    }
    if (guest_pa != 48 && guest_pa != 52) {
        return standin_refuse("KVM_TDX_INIT_VM", -EINVAL,
                              "setup_tdparams_eptp_controls(): CPUID "
                              "0x80000008 EAX[23:16] is not 48 or 52");
    }
    /*
     * __tdx_td_init(): TDH.MNG.CREATE without entropy is EAGAIN (to be
     * retried), TDH.MNG.INIT's TDX_OPERAND_INVALID is EINVAL with the
     * SEAMCALL status in hw_error, other SEAMCALL errors EIO; the TD stays
     * uninitialised.
     */
    ret = standin_injected("tdx-init-vm", &hw_error);
    if (ret) {
        cmd->hw_error = hw_error;
        g_clear_pointer(&td.cpuid, g_free);
        return ret;
    }
    td.state = TD_STATE_INITIALIZED;
    td.mrtd = g_checksum_new(G_CHECKSUM_SHA384);
    standin_report("{\"event\": \"tdx-init-vm\", \"attributes\": %" PRIu64
                   ", \"xfam\": %" PRIu64 ", \"cpuid-entries\": %u}",
                   (uint64_t)init.attributes, (uint64_t)init.xfam, nent);
    return 0;
}

static int tdx_finalize(struct kvm_tdx_cmd *cmd)
{
    uint8_t mrtd[STANDIN_DIGEST_SIZE];
    gsize len = sizeof(mrtd);
    g_autofree char *hex = NULL;
    uint64_t hw_error = 0;
    int ret;

    /* tdx_td_finalize() */
    if (td.state != TD_STATE_INITIALIZED) {
        return standin_refuse("KVM_TDX_FINALIZE_VM", -EINVAL,
                              "tdx_td_finalize(): not initialized, or "
                              "finalized already");
    }
    ret = standin_injected("tdx-finalize-vm", &hw_error);
    if (ret) {
        cmd->hw_error = hw_error;
        return ret;
    }
    td.state = TD_STATE_RUNNABLE;
    g_checksum_get_digest(td.mrtd, mrtd, &len);
    hex = standin_hex(mrtd, sizeof(mrtd));
    standin_report("{\"event\": \"measurement\", \"type\": \"tdx\", "
                   "\"measurement\": \"%s\", \"pages\": %u, \"vcpus\": %u}",
                   hex, td.pages, standin.nr_vcpus);
    return 0;
}

long tdx_vm_encrypt_op(void *arg)
{
    struct kvm_tdx_cmd cmd;
    int ret;

    /* tdx_get_cmd(): userspace never sets hw_error */
    if (standin_read_user((uintptr_t)arg, &cmd, sizeof(cmd))) {
        return -EFAULT;
    }
    if (cmd.hw_error) {
        return -EINVAL;
    }
    switch (cmd.id) {
    case KVM_TDX_CAPABILITIES:
        return tdx_capabilities(&cmd);
    case KVM_TDX_INIT_VM:
        ret = tdx_init_vm(&cmd);
        break;
    case KVM_TDX_FINALIZE_VM:
        ret = tdx_finalize(&cmd);
        break;
    default:
        return standin_refuse("KVM_MEMORY_ENCRYPT_OP", -EINVAL,
                              "tdx_vm_ioctl(): not a VM command");
    }
    if (standin_write_user((uintptr_t)arg, &cmd, sizeof(cmd))) {
        return -EFAULT;
    }
    return ret;
}

/* The TDX module's 128-byte record: the operation's name, the GPA. */
static void mrtd_record(const char *op, uint64_t gpa)
{
    uint8_t rec[128] = { 0 };

    memcpy(rec, op, strlen(op));
    memcpy(rec + 16, &gpa, sizeof(gpa));
    g_checksum_update(td.mrtd, rec, sizeof(rec));
}

static int tdx_init_mem_region(StandinVcpu *vcpu, struct kvm_tdx_cmd *cmd)
{
    struct kvm_tdx_init_mem_region r;
    g_autofree uint8_t *page = g_malloc(STANDIN_PAGE_SIZE);
    uint64_t slot_end, hw_error = 0, before_signal = UINT64_MAX;
    int ret = 0;

    /* tdx_vcpu_init_mem_region() */
    if (!vcpu->tdx_initialized) {
        return standin_refuse("KVM_TDX_INIT_MEM_REGION", -EINVAL,
                              "tdx_vcpu_init_mem_region(): the vCPU is not "
                              "initialized (KVM_TDX_INIT_VCPU)");
    }
    if (cmd->flags & ~KVM_TDX_MEASURE_MEMORY_REGION) {
        return standin_refuse("KVM_TDX_INIT_MEM_REGION", -EINVAL,
                              "tdx_vcpu_init_mem_region(): flags");
    }
    if (standin_read_user(cmd->data, &r, sizeof(r))) {
        return -EFAULT;
    }
    /* 4-level EPT: GPA bit 47 is the shared bit (vt_is_tdx_private_gpa()) */
    if (r.source_addr % STANDIN_PAGE_SIZE || r.gpa % STANDIN_PAGE_SIZE ||
        !r.nr_pages || r.gpa + (r.nr_pages << 12) <= r.gpa ||
        (r.gpa & (1ULL << 47)) ||
        ((r.gpa + (r.nr_pages << 12) - 1) & (1ULL << 47))) {
        return standin_refuse("KVM_TDX_INIT_MEM_REGION", -EINVAL,
                              "tdx_vcpu_init_mem_region(): alignment, "
                              "size, wrap or a shared GPA");
    }
    ret = standin_injected("tdx-init-mem-region", &hw_error);
    if (ret == -EINTR) {
        /* signal_pending() is checked before each page: half gets done. */
        before_signal = r.nr_pages / 2;
        ret = 0;
    } else if (ret) {
        return ret;
    }
    standin_report("{\"event\": \"tdx-region\", \"gpa\": %" PRIu64
                   ", \"uaddr\": %" PRIu64 ", \"pages\": %" PRIu64
                   ", \"measured\": %s}", (uint64_t)r.gpa,
                   (uint64_t)r.source_addr, (uint64_t)r.nr_pages,
                   cmd->flags & KVM_TDX_MEASURE_MEMORY_REGION ? "true" :
                   "false");
    /* The sources as they are once any discard in flight is done. */
    standin_discards_settle();
    while (r.nr_pages) {
        if (!before_signal--) {
            ret = -EINTR;
            break;
        }
        /* kvm_gmem_populate() of one page, tdx_gmem_post_populate() */
        if (standin_read_user(r.source_addr, page, STANDIN_PAGE_SIZE)) {
            ret = standin_refuse("KVM_TDX_INIT_MEM_REGION", -EFAULT,
                                 "kvm_gmem_populate(): the source");
            break;
        }
        if (standin_gmem_page_check(r.gpa / STANDIN_PAGE_SIZE, &slot_end)) {
            ret = standin_refuse("KVM_TDX_INIT_MEM_REGION", -EINVAL,
                                 "__kvm_gmem_populate(): the GFN is not "
                                 "private in KVM, or its memslot has no "
                                 "guest_memfd");
            break;
        }
        if (!standin_mark_populated(r.gpa / STANDIN_PAGE_SIZE)) {
            ret = standin_refuse("KVM_TDX_INIT_MEM_REGION", -EIO,
                                 "tdx_gmem_post_populate(): "
                                 "TDH.MEM.PAGE.ADD of a page added before");
            break;
        }
        mrtd_record("MEM.PAGE.ADD", r.gpa);
        if (cmd->flags & KVM_TDX_MEASURE_MEMORY_REGION) {
            for (unsigned c = 0; c < STANDIN_PAGE_SIZE;
                 c += TDX_EXTENDMR_CHUNKSIZE) {
                mrtd_record("MR.EXTEND", r.gpa + c);
                g_checksum_update(td.mrtd, page + c, TDX_EXTENDMR_CHUNKSIZE);
            }
        }
        td.pages++;
        r.source_addr += STANDIN_PAGE_SIZE;
        r.gpa += STANDIN_PAGE_SIZE;
        r.nr_pages--;
    }
    /* The progress goes back to userspace whatever happened. */
    if (standin_write_user(cmd->data, &r, sizeof(r))) {
        return -EFAULT;
    }
    return ret;
}

static int tdx_get_cpuid(struct kvm_tdx_cmd *cmd)
{
    uint32_t nent;

    /* tdx_vcpu_get_cpuid(): the TD's CPUID, as INIT_VM configured it */
    if (standin_read_user(cmd->data, &nent, sizeof(nent))) {
        return -EFAULT;
    }
    if (nent < td.cpuid->nent) {
        standin_write_user(cmd->data, &td.cpuid->nent, sizeof(nent));
        return -E2BIG;
    }
    return standin_write_user(cmd->data, td.cpuid, sizeof(*td.cpuid) +
                              td.cpuid->nent *
                              sizeof(struct kvm_cpuid_entry2));
}

long tdx_vcpu_encrypt_op(StandinVcpu *vcpu, void *arg)
{
    struct kvm_tdx_cmd cmd;
    uint64_t hw_error = 0;
    int ret;

    if (standin_read_user((uintptr_t)arg, &cmd, sizeof(cmd))) {
        return -EFAULT;
    }
    if (cmd.hw_error) {
        return -EINVAL;
    }
    /* tdx_vcpu_unlocked_ioctl(), tdx_vcpu_ioctl(): not after FINALIZE */
    if (td.state != TD_STATE_INITIALIZED) {
        return standin_refuse("KVM_MEMORY_ENCRYPT_OP", -EINVAL,
                              "tdx_vcpu_unlocked_ioctl(): the TD is not "
                              "initialized, or finalized");
    }
    switch (cmd.id) {
    case KVM_TDX_INIT_VCPU:
        /* tdx_vcpu_init() */
        if (cmd.flags || vcpu->tdx_initialized) {
            return standin_refuse("KVM_TDX_INIT_VCPU", -EINVAL,
                                  "tdx_vcpu_init(): flags, or initialized "
                                  "before");
        }
        /* tdx_td_vcpu_init(): ENOMEM, or EIO for a SEAMCALL error */
        ret = standin_injected("tdx-init-vcpu", &hw_error);
        if (ret) {
            return ret;
        }
        vcpu->tdx_initialized = true;
        standin_report("{\"event\": \"tdx-init-vcpu\", \"vcpu\": %lu, "
                       "\"hob\": %" PRIu64 "}", vcpu->id,
                       (uint64_t)cmd.data);
        return 0;
    case KVM_TDX_INIT_MEM_REGION:
        /*
         * tdx_vcpu_unlocked_ioctl() does not copy the command back: QEMU
         * never sees a vCPU command's hw_error.
         */
        return tdx_init_mem_region(vcpu, &cmd);
    case KVM_TDX_GET_CPUID:
        return tdx_get_cpuid(&cmd);
    default:
        return standin_refuse("KVM_MEMORY_ENCRYPT_OP", -EINVAL,
                              "tdx_vcpu_unlocked_ioctl(): not a vCPU "
                              "command");
    }
}
