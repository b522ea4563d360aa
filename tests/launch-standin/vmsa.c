/*
 * The VMSA Linux 7.2 measures for a vCPU in SNP_LAUNCH_FINISH, built from
 * the registers QEMU really gave that vCPU in KVM. The rig's KVM keeps
 * them in an ordinary SVM VMCB, read back through KVM_GET_SREGS, REGS,
 * DEBUGREGS, XCRS, FPU, XSAVE2 and MSRS; this file applies what the
 * kernel does between those and the page:
 *
 * - sev_es_sync_vmsa() (arch/x86/kvm/svm/sev.c) copies the VMCB save area
 *   and then the GPRs, RIP, XCR0, PKRU, XSS, DR6, the SEV features and
 *   (for every VM type but KVM_X86_DEFAULT_VM) the guest FPU's x87, SSE
 *   and AVX state; it refuses a DR7 other than DR7_FIXED_1.
 * - The VMCB save area holds what svm.c's setters made of QEMU's state:
 *   svm_set_segment() packs the attributes, svm_set_cr0() clears CD and
 *   NW (KVM_X86_QUIRK_CD_NW_CLEARED, applicable on SVM), svm_set_cr4()
 *   adds the host's CR4.MCE (set on every SNP host), svm_set_efer() adds
 *   EFER.SVME, svm_set_gdt()/svm_set_idt() set only base and limit,
 *   svm_set_msr() the PAT, SYSCALL, SYSENTER, KERNEL_GS_BASE and DEBUGCTL
 *   fields; CR2 is written only by svm_vcpu_run(), and the vCPU has not
 *   run.
 * - svm_get_segment() synthesizes G from the limit and sets the accessed
 *   and TSS-busy type bits; for every reset state QEMU gives (G clear,
 *   limits below 1 MiB, accessed data segments, a busy TSS) reading back
 *   is exact, and the stand-in checks the G bit so that a state where it
 *   would not be fails loudly instead of measuring something else.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <string.h>
#include "standin.h"

/* struct vmcb_seg and struct sev_es_save_area, arch/x86/include/asm/svm.h */
struct vmsa_seg {
    uint16_t selector;
    uint16_t attrib;
    uint32_t limit;
    uint64_t base;
} __attribute__((packed));

struct vmsa {
    struct vmsa_seg es, cs, ss, ds, fs, gs, gdtr, ldtr, idtr, tr;
    uint64_t pl0_ssp, pl1_ssp, pl2_ssp, pl3_ssp, u_cet;
    uint8_t reserved_0xc8[2];
    uint8_t vmpl, cpl;
    uint8_t reserved_0xcc[4];
    uint64_t efer;
    uint8_t reserved_0xd8[104];
    uint64_t xss, cr4, cr3, cr0, dr7, dr6, rflags, rip;
    uint64_t dr0, dr1, dr2, dr3, dr0_mask, dr1_mask, dr2_mask, dr3_mask;
    uint8_t reserved_0x1c0[24];
    uint64_t rsp, s_cet, ssp, isst_addr, rax, star, lstar, cstar, sfmask;
    uint64_t kernel_gs_base, sysenter_cs, sysenter_esp, sysenter_eip, cr2;
    uint8_t reserved_0x248[32];
    uint64_t g_pat, dbgctl, br_from, br_to, last_excp_from, last_excp_to;
    uint8_t reserved_0x298[80];
    uint32_t pkru, tsc_aux;
    uint64_t tsc_scale, tsc_offset;
    uint8_t reserved_0x300[8];
    uint64_t rcx, rdx, rbx, reserved_0x320, rbp, rsi, rdi;
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint8_t reserved_0x380[16];
    uint64_t exit_info_1, exit_info_2, exit_int_info, nrip, sev_features;
    uint64_t vintr_ctrl, exit_code, virtual_tom, tlb_id, pcpu_id, event_inj;
    uint64_t xcr0;
    uint8_t reserved_0x3f0[16];
    uint64_t x87_dp;
    uint32_t mxcsr;
    uint16_t x87_ftw, x87_fsw, x87_fcw, x87_fop, x87_ds, x87_cs;
    uint64_t x87_rip;
    uint8_t fpreg_x87[80], fpreg_xmm[256], fpreg_ymm[256];
} __attribute__((packed));

_Static_assert(offsetof(struct vmsa, cpl) == 0xcb, "sev_es_save_area");
_Static_assert(offsetof(struct vmsa, cr4) == 0x148, "sev_es_save_area");
_Static_assert(offsetof(struct vmsa, g_pat) == 0x268, "sev_es_save_area");
_Static_assert(offsetof(struct vmsa, pkru) == 0x2e8, "sev_es_save_area");
_Static_assert(offsetof(struct vmsa, sev_features) == 0x3b0,
               "sev_es_save_area");
_Static_assert(offsetof(struct vmsa, xcr0) == 0x3e8, "sev_es_save_area");
_Static_assert(sizeof(struct vmsa) == 0x670, "sev_es_save_area");

#define X86_CR0_NW          (1ULL << 29)
#define X86_CR0_CD          (1ULL << 30)
#define X86_CR4_MCE         (1ULL << 6)
#define EFER_SVME           (1ULL << 12)
#define DR7_FIXED_1         0x400ULL
#define XFEATURE_MASK_YMM   (1ULL << 2)
#define XFEATURE_MASK_PKRU  (1ULL << 9)
/* The standard (uncompacted) XSAVE layout of KVM_GET_XSAVE2 */
#define XSAVE_MXCSR_OFFSET  24
#define XSAVE_HDR_OFFSET    512
#define XSAVE_YMM_OFFSET    576
#define XSAVE_PKRU_OFFSET   2688

/* svm_set_segment() */
static void vmsa_seg(struct vmsa_seg *v, const struct kvm_segment *s)
{
    v->base = s->base;
    v->limit = s->limit;
    v->selector = s->selector;
    v->attrib = (s->type & 0xf) | (s->s & 1) << 4 | (s->dpl & 3) << 5 |
                ((s->present & 1) && !s->unusable) << 7 | (s->avl & 1) << 8 |
                (s->l & 1) << 9 | (s->db & 1) << 10 | (s->g & 1) << 11;
}

static uint64_t vcpu_msr(int fd, uint32_t index)
{
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e;
    } m = { .hdr.nmsrs = 1, .e.index = index };

    /* An MSR the vCPU does not have is 0 in its VMCB too. */
    return standin_real_ioctl(fd, KVM_GET_MSRS, &m) == 1 ? m.e.data : 0;
}

static int vcpu_get(int fd, unsigned long req, void *arg, const char *what)
{
    if (standin_real_ioctl(fd, req, arg) < 0) {
        return standin_refuse("SNP_LAUNCH_FINISH", -errno, what);
    }
    return 0;
}

int snp_build_vmsa(int vcpu_fd, uint64_t sev_features, uint8_t *page)
{
    struct vmsa *v = (struct vmsa *)page;
    struct kvm_sregs sregs;
    struct kvm_regs regs;
    struct kvm_debugregs dbg;
    struct kvm_xcrs xcrs;
    struct kvm_fpu fpu = { 0 };
    const struct kvm_segment *segs[] = {
        &sregs.es, &sregs.cs, &sregs.ss, &sregs.ds, &sregs.fs, &sregs.gs,
    };
    struct vmsa_seg *vsegs[] = { &v->es, &v->cs, &v->ss, &v->ds, &v->fs,
                                 &v->gs };
    long xsave_size = standin_real_ioctl(standin.vm_fd, KVM_CHECK_EXTENSION,
                                         (void *)KVM_CAP_XSAVE2);
    g_autofree uint8_t *xsave = g_malloc0(MAX(xsave_size, 4096));
    uint64_t xstate_bv;

    if (vcpu_get(vcpu_fd, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS") ||
        vcpu_get(vcpu_fd, KVM_GET_REGS, &regs, "KVM_GET_REGS") ||
        vcpu_get(vcpu_fd, KVM_GET_DEBUGREGS, &dbg, "KVM_GET_DEBUGREGS") ||
        vcpu_get(vcpu_fd, KVM_GET_XCRS, &xcrs, "KVM_GET_XCRS") ||
        vcpu_get(vcpu_fd, KVM_GET_FPU, &fpu, "KVM_GET_FPU") ||
        vcpu_get(vcpu_fd, KVM_GET_XSAVE2, xsave, "KVM_GET_XSAVE2")) {
        return -EIO;
    }
    if (dbg.dr7 & ~DR7_FIXED_1) {
        return standin_refuse("SNP_LAUNCH_FINISH", -EINVAL,
                              "sev_es_sync_vmsa(): DR7 has breakpoints");
    }
    memset(page, 0, STANDIN_PAGE_SIZE);

    for (unsigned i = 0; i < G_N_ELEMENTS(segs); i++) {
        if (segs[i]->g != (segs[i]->limit > 0xfffff)) {
            return standin_refuse("SNP_LAUNCH_FINISH", -EIO,
                                  "stand-in: svm_get_segment()'s G bit "
                                  "hides the VMCB's");
        }
        vmsa_seg(vsegs[i], segs[i]);
    }
    vmsa_seg(&v->ldtr, &sregs.ldt);
    vmsa_seg(&v->tr, &sregs.tr);
    v->gdtr.base = sregs.gdt.base;
    v->gdtr.limit = sregs.gdt.limit;
    v->idtr.base = sregs.idt.base;
    v->idtr.limit = sregs.idt.limit;
    v->cpl = sregs.ss.dpl & 3;

    v->efer = sregs.efer | EFER_SVME;
    v->cr0 = sregs.cr0 & ~(X86_CR0_CD | X86_CR0_NW);
    v->cr3 = sregs.cr3;
    v->cr4 = sregs.cr4 | X86_CR4_MCE;
    v->dr6 = dbg.dr6;
    v->dr7 = dbg.dr7;
    v->rflags = regs.rflags;
    v->rip = regs.rip;

    v->g_pat = vcpu_msr(vcpu_fd, 0x277);                /* IA32_CR_PAT */
    v->dbgctl = vcpu_msr(vcpu_fd, 0x1d9);               /* DEBUGCTL */
    v->star = vcpu_msr(vcpu_fd, 0xc0000081);
    v->lstar = vcpu_msr(vcpu_fd, 0xc0000082);
    v->cstar = vcpu_msr(vcpu_fd, 0xc0000083);
    v->sfmask = vcpu_msr(vcpu_fd, 0xc0000084);
    v->kernel_gs_base = vcpu_msr(vcpu_fd, 0xc0000102);
    v->sysenter_cs = vcpu_msr(vcpu_fd, 0x174);
    v->sysenter_esp = (uint32_t)vcpu_msr(vcpu_fd, 0x175);
    v->sysenter_eip = (uint32_t)vcpu_msr(vcpu_fd, 0x176);

    /* sev_es_sync_vmsa() from here on */
    v->rax = regs.rax;
    v->rbx = regs.rbx;
    v->rcx = regs.rcx;
    v->rdx = regs.rdx;
    v->rsp = regs.rsp;
    v->rbp = regs.rbp;
    v->rsi = regs.rsi;
    v->rdi = regs.rdi;
    v->r8 = regs.r8;
    v->r9 = regs.r9;
    v->r10 = regs.r10;
    v->r11 = regs.r11;
    v->r12 = regs.r12;
    v->r13 = regs.r13;
    v->r14 = regs.r14;
    v->r15 = regs.r15;

    v->xcr0 = 1;                /* KVM's reset value, if none was set */
    for (unsigned i = 0; i < xcrs.nr_xcrs; i++) {
        if (xcrs.xcrs[i].xcr == 0) {
            v->xcr0 = xcrs.xcrs[i].value;
        }
    }
    memcpy(&xstate_bv, xsave + XSAVE_HDR_OFFSET, sizeof(xstate_bv));
    if (xstate_bv & XFEATURE_MASK_PKRU) {
        memcpy(&v->pkru, xsave + XSAVE_PKRU_OFFSET, sizeof(v->pkru));
    }
    v->xss = vcpu_msr(vcpu_fd, 0xda0);                  /* IA32_XSS */
    v->sev_features = sev_features;

    v->x87_dp = fpu.last_dp;
    /*
     * kvm_arch_vcpu_ioctl_get_fpu() leaves MXCSR out; KVM_GET_XSAVE2's
     * legacy area has it from the same buffer (copy_xstate_to_uabi_buf()).
     */
    memcpy(&v->mxcsr, xsave + XSAVE_MXCSR_OFFSET, sizeof(v->mxcsr));
    v->x87_ftw = fpu.ftwx;
    v->x87_fsw = fpu.fsw;
    v->x87_fcw = fpu.fcw;
    v->x87_fop = fpu.last_opcode;
    v->x87_rip = fpu.last_ip;
    for (unsigned i = 0; i < 8; i++) {
        /* bytes 0-7 of each register, then bytes 8-9 of each */
        memcpy(v->fpreg_x87 + i * 8, fpu.fpr[i], 8);
        v->fpreg_x87[64 + i * 2] = fpu.fpr[i][8];
        v->fpreg_x87[64 + i * 2 + 1] = fpu.fpr[i][9];
    }
    memcpy(v->fpreg_xmm, fpu.xmm, sizeof(v->fpreg_xmm));
    /* get_xsave_addr(XFEATURE_YMM) is NULL for a component in init state */
    if (xstate_bv & XFEATURE_MASK_YMM) {
        memcpy(v->fpreg_ymm, xsave + XSAVE_YMM_OFFSET, sizeof(v->fpreg_ymm));
    }
    return 0;
}
