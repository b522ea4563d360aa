/*
 * Test guest entry: PVH 32-bit protected mode -> long mode, identity map,
 * IDT. Stays tiny on purpose; everything else is C.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define IDENTITY_MAP_GIB 16           /* 2 MiB pages over the first 16 GiB */
#define STACK_SIZE 65536

/* Flat data segments for long mode: selector 0x10 of gdt, null fs/gs. */
.macro LOAD_DATA_SEGMENTS
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
.endm

    /* QEMU's -kernel loader finds the 32-bit entry point in this note. */
    .section .note.pvh, "a"
    .balign 4
    .long 4                           /* namesz */
    .long 8                           /* descsz */
    .long XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .quad pvh_entry

    .section .text.entry, "ax"
    .code32
    .globl pvh_entry
pvh_entry:
    /* PVH: flat 32-bit segments, paging off, %ebx = hvm_start_info. */
    cli
    movl %ebx, pvh_start_info
    movl $boot_stack_top, %esp

    /* PML4[0] -> PDPT; PDPT[i] -> PD i; PDs map 2 MiB pages 1:1. */
    movl $pdpt, %eax
    orl $3, %eax
    movl %eax, pml4

    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $12, %eax
    addl $pds, %eax
    orl $3, %eax
    movl %eax, pdpt(, %ecx, 8)
    incl %ecx
    cmpl $IDENTITY_MAP_GIB, %ecx
    jb 1b

    xorl %ecx, %ecx                   /* ecx = 2 MiB page index */
2:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax                   /* present, writable, 2 MiB */
    movl %eax, pds(, %ecx, 8)
    movl %ecx, %eax
    shrl $11, %eax                    /* bits 32+ of the address */
    movl %eax, pds + 4(, %ecx, 8)
    incl %ecx
    cmpl $(IDENTITY_MAP_GIB * 512), %ecx
    jb 2b

    movl %cr4, %eax
    orl $(1 << 5), %eax               /* PAE */
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx            /* EFER.LME */
    rdmsr
    orl $(1 << 8), %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax             /* PG | PE */
    movl %eax, %cr0

    lgdt gdt_descriptor
    ljmp $0x08, $long_mode

    .code64
long_mode:
    LOAD_DATA_SEGMENTS
    movq $boot_stack_top, %rsp
    call idt_init
    movl pvh_start_info(%rip), %edi
    call guest_main
3:  cli
    hlt
    jmp 3b

/*
 * Exception and NMI stubs: push a dummy error code where the CPU pushes
 * none, then the vector, then save the general registers for trap().
 */
.macro TRAP_STUB vec, has_error
    .balign 16
    .if \has_error == 0
    pushq $0
    .endif
    pushq $\vec
    jmp trap_common
.endm

    .balign 16
    .globl trap_stubs
trap_stubs:
    TRAP_STUB 0, 0
    TRAP_STUB 1, 0
    TRAP_STUB 2, 0
    TRAP_STUB 3, 0
    TRAP_STUB 4, 0
    TRAP_STUB 5, 0
    TRAP_STUB 6, 0
    TRAP_STUB 7, 0
    TRAP_STUB 8, 1
    TRAP_STUB 9, 0
    TRAP_STUB 10, 1
    TRAP_STUB 11, 1
    TRAP_STUB 12, 1
    TRAP_STUB 13, 1
    TRAP_STUB 14, 1
    TRAP_STUB 15, 0
    TRAP_STUB 16, 0
    TRAP_STUB 17, 1
    TRAP_STUB 18, 0
    TRAP_STUB 19, 0
    TRAP_STUB 20, 0
    TRAP_STUB 21, 1

trap_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    call trap
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp                    /* vector, error code */
    iretq

/*
 * Halt until the host injects an NMI (QMP inject-nmi). trap() moves an NMI
 * that lands between the flag test and the hlt past the hlt, so a wake-up
 * can never be lost.
 */
    .globl wait_for_nmi, wait_nmi_window, wait_nmi_hlt
wait_for_nmi:
1:  cmpb $0, nmi_seen(%rip)
wait_nmi_window:
    jne 2f
wait_nmi_hlt:
    hlt
    jmp 1b
2:  movb $0, nmi_seen(%rip)
    ret

/*
 * Application processors: the BSP copies ap_trampoline to AP_TRAMPOLINE
 * (below 1 MiB, page aligned) and sends INIT-SIPI-SIPI. Each AP goes from
 * real mode straight to long mode on the BSP's page tables and GDT, takes
 * the next stack and calls ap_main(index).
 */
    .code16
    .globl ap_trampoline, ap_trampoline_end
ap_trampoline:
    cli
    movw %cs, %ax
    movw %ax, %ds
    lgdtl ap_gdtr - ap_trampoline
    movl %cr4, %eax
    orl $(1 << 5), %eax
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx
    rdmsr
    orl $(1 << 8), %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax
    movl %eax, %cr0
    ljmpl $0x08, $ap_long_mode
    .balign 4
ap_gdtr:
    .word gdt_end - gdt - 1
    .long gdt
ap_trampoline_end:

    .code64
ap_long_mode:
    LOAD_DATA_SEGMENTS
    movl $1, %edi
    lock xaddl %edi, ap_next_index(%rip)  /* edi = 1, 2, ... */
    movq %rdi, %rsp
    shlq $14, %rsp                        /* AP_STACK_SIZE */
    addq $ap_stacks, %rsp
    call ap_main
4:  cli
    hlt
    jmp 4b

    .section .rodata
    .balign 8
gdt:
    .quad 0
    .quad 0x00af9a000000ffff          /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff          /* 0x10: data */
gdt_end:
gdt_descriptor:
    .word gdt_end - gdt - 1
    .quad gdt

    .data
    .globl pvh_start_info
pvh_start_info:
    .long 0
    .globl ap_next_index
ap_next_index:
    .long 1

    .bss
    .balign 4096
pml4:
    .skip 4096
pdpt:
    .skip 4096
pds:
    .skip 4096 * IDENTITY_MAP_GIB
    .balign 16
boot_stack:
    .skip STACK_SIZE
boot_stack_top:
    /* AP i (1..MAX_CPUS-1) uses [ap_stacks + (i-1)*16K, ap_stacks + i*16K) */
    .balign 16
    .globl ap_stacks
ap_stacks:
    .skip 16384 * 15
