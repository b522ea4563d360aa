/*
 * The VMSA page that Linux measures for each vCPU of a SEV-SNP guest
 * inside SNP_LAUNCH_FINISH, for the launch plan's measurement.
 *
 * Invariant: the page equals what the kernel builds from the vCPU state
 * QEMU hands it; nothing else here. It is a model of the kernel (Linux
 * 7.2, arch/x86/kvm/svm): KVM takes QEMU's vCPU state through
 * KVM_SET_SREGS/REGS/XSAVE/XCRS/MSRS, svm_set_cr0() clears CD and NW
 * (KVM_X86_QUIRK_CD_NW_CLEARED, never disabled by QEMU), svm_set_cr4()
 * adds the host's CR4.MCE, svm_set_efer() adds EFER.SVME, and
 * sev_es_sync_vmsa() copies the VMCB save area, the GPRs, XCR0, PKRU,
 * XSS, DR6, the SEV features and the x87/SSE state of the guest FPU into
 * the page. docs/system/i386/launch-measurement.rst lists what this
 * assumes of the host.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "hw/core/cpu.h"
#include "cpu.h"
#include "sev.h"
#include "sev-snp-launch.h"

/* KVM's guest FPU before QEMU's XSAVE (fpstate_init_fxstate()). */
#define FPU_INIT_FCW            0x37f
#define FPU_INIT_MXCSR          0x1f80

/* svm_set_segment(): the VMCB attribute of QEMU's segment flags. */
static void snp_vmsa_seg(struct vmcb_seg *vs, const SegmentCache *sc,
                         bool descriptor)
{
    vs->base = sc->base;
    vs->limit = sc->limit;
    if (descriptor) {
        vs->selector = sc->selector;
        vs->attrib = ((sc->flags >> 8) & 0xff) | ((sc->flags >> 12) & 0xf00);
    }
    /* GDTR and IDTR: KVM sets only base and limit (svm_set_gdt/idt). */
}

void sev_snp_build_vmsa(CPUState *cs, uint64_t sev_features, void *page)
{
    const CPUX86State *env = &X86_CPU(cs)->env;
    struct sev_es_save_area *v = page;

    QEMU_BUILD_BUG_ON(sizeof(*v) > SEV_SNP_VMSA_SIZE);
    memset(page, 0, SEV_SNP_VMSA_SIZE);

    snp_vmsa_seg(&v->es, &env->segs[R_ES], true);
    snp_vmsa_seg(&v->cs, &env->segs[R_CS], true);
    snp_vmsa_seg(&v->ss, &env->segs[R_SS], true);
    snp_vmsa_seg(&v->ds, &env->segs[R_DS], true);
    snp_vmsa_seg(&v->fs, &env->segs[R_FS], true);
    snp_vmsa_seg(&v->gs, &env->segs[R_GS], true);
    snp_vmsa_seg(&v->gdtr, &env->gdt, false);
    snp_vmsa_seg(&v->ldtr, &env->ldt, true);
    snp_vmsa_seg(&v->idtr, &env->idt, false);
    snp_vmsa_seg(&v->tr, &env->tr, true);
    v->cpl = (env->segs[R_SS].flags >> DESC_DPL_SHIFT) & 3;

    v->efer = env->efer | MSR_EFER_SVME;
    v->cr0 = env->cr[0] & ~(uint64_t)(CR0_CD_MASK | CR0_NW_MASK);
    v->cr3 = env->cr[3];
    /* Every host that runs SNP guests has CR4.MCE set. */
    v->cr4 = env->cr[4] | CR4_MCE_MASK;
    v->dr6 = env->dr[6];
    v->dr7 = env->dr[7];
    v->rflags = env->eflags | 0x2;
    v->rip = env->eip;
    v->g_pat = env->pat;

    v->rax = env->regs[R_EAX];
    v->rbx = env->regs[R_EBX];
    v->rcx = env->regs[R_ECX];
    v->rdx = env->regs[R_EDX];
    v->rsp = env->regs[R_ESP];
    v->rbp = env->regs[R_EBP];
    v->rsi = env->regs[R_ESI];
    v->rdi = env->regs[R_EDI];
    v->r8 = env->regs[8];
    v->r9 = env->regs[9];
    v->r10 = env->regs[10];
    v->r11 = env->regs[11];
    v->r12 = env->regs[12];
    v->r13 = env->regs[13];
    v->r14 = env->regs[14];
    v->r15 = env->regs[15];

    v->xcr0 = env->xcr0;
    v->pkru = env->pkru;
    v->xss = env->xss;
    v->sev_features = sev_features;

    /*
     * KVM copies only the XSAVE components QEMU marks present; at reset
     * QEMU's xstate_bv is 0 and KVM's initial FPU state stays.
     */
    v->x87_fcw = (env->xstate_bv & XSTATE_FP_MASK) ? env->fpuc
                                                    : FPU_INIT_FCW;
    v->mxcsr = (env->xstate_bv & (XSTATE_SSE_MASK | XSTATE_YMM_MASK)) ?
               env->mxcsr : FPU_INIT_MXCSR;
}
