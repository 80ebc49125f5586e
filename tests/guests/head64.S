/* Entry of the 64-bit test guest (check64.elf and the payload of check.bzImage), the application
 * processors' 64-bit entry, and the real-mode AP trampoline that the BSP copies to TRAMP_BASE. */
#include "guest.h"

	.section .text.head, "ax"
	/* Offset 0 of the image: a bzImage's 32-bit entry (code32_start). The monitor must enter the
	 * 64-bit protocol at offset 0x200, so reaching this is a bug: fault loudly. */
	.code32
	.globl startup_32
startup_32:
	ud2
	.code64

	.org 0x200
	.globl _start
_start:
	/* Record the entry state before touching anything (the stack is the monitor's at 0x8ff0). */
	mov %rsi, entry_rsi(%rip)
	mov %rsp, entry_rsp(%rip)
	movw %cs, entry_cs(%rip)
	movw %ds, entry_ds(%rip)
	movw %es, entry_es(%rip)
	movw %ss, entry_ss(%rip)
	sgdt entry_gdtr(%rip)
	lea _start(%rip), %rax
	mov %rax, entry_rip(%rip)
	pushfq
	popq entry_rflags(%rip)

	/* The loader must hand over a zeroed .bss (p_memsz beyond p_filesz, or a bzImage's init_size). */
	cld
	xor %eax, %eax
	lea __bss_start(%rip), %rdi
	lea __bss_end(%rip), %rcx
	sub %rdi, %rcx
	shr $3, %rcx
	repe scasq
	setnz %al
	mov %rax, entry_bss_dirty(%rip)
	lea -8(%rdi), %rax
	mov %rax, entry_bss_dirty_at(%rip)

	lea bsp_stack_top(%rip), %rsp
	call main64
1:	cli
	hlt
	jmp 1b

/* Application processors arrive here in long mode from the trampoline. */
	.globl ap_entry64
ap_entry64:
	mov $1, %eax
	lock xadd %eax, ap_ticket(%rip)
	cmp $MAX_APS, %eax
	jae 2f
	mov %eax, %edi
	lea ap_stacks(%rip), %rsp
	lea 1(%rdi), %rax
	shl $AP_STACK_SHIFT, %rax
	add %rax, %rsp
	call ap_main
2:	cli
	hlt
	jmp 2b

/* Real-mode trampoline: copied to TRAMP_BASE; SIPI vector TRAMP_BASE >> 12. Position independent
 * except for TRAMP_BASE itself. Real mode -> 32-bit protected mode -> long mode (CR3 = 0x9000, the
 * monitor's identity map) -> ap_entry64. No stack is used before ap_entry64 picks one. */
	.section .text.tramp, "ax"
	.code16
	.globl tramp_start, tramp_end, tramp_efer
tramp_start:
	cli
	cld
	mov %cs, %ax
	mov %ax, %ds
	lgdtl (tramp_gdtr - tramp_start)
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmpl $0x08, $(TRAMP_BASE + tramp_pm32 - tramp_start)

	.code32
tramp_pm32:
	mov $0x18, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov %ax, %fs
	mov %ax, %gs
	mov $0x20, %eax			/* CR4.PAE */
	mov %eax, %cr4
	mov $0x9000, %eax		/* the monitor's PML4 */
	mov %eax, %cr3
	mov $0xc0000080, %ecx		/* EFER: LME (+ NXE when the BSP has it) */
	mov (TRAMP_BASE + tramp_efer - tramp_start), %eax
	xor %edx, %edx
	wrmsr
	mov $0x80050033, %eax		/* PG WP AM NE ET MP PE: what the BSP got */
	mov %eax, %cr0
	ljmp $0x10, $(TRAMP_BASE + tramp_lm64 - tramp_start)

	.code64
tramp_lm64:
	movabs $ap_entry64, %rax
	jmp *%rax

	.balign 8
tramp_gdt:
	.quad 0
	.quad 0x00cf9a000000ffff	/* 0x08: 32-bit code */
	.quad 0x00af9a000000ffff	/* 0x10: 64-bit code */
	.quad 0x00cf92000000ffff	/* 0x18: data */
tramp_gdtr:
	.word tramp_gdtr - tramp_gdt - 1
	.long TRAMP_BASE + tramp_gdt - tramp_start
	.balign 4
tramp_efer:
	.long 0x100
tramp_end:

	.data
	.balign 8
	.globl entry_rsi, entry_rsp, entry_rflags, entry_rip, entry_cs, entry_ds, entry_es, entry_ss
	.globl entry_gdtr, entry_bss_dirty, entry_bss_dirty_at
entry_rsi:		.quad 0
entry_rsp:		.quad 0
entry_rflags:		.quad 0
entry_rip:		.quad 0
entry_bss_dirty:	.quad 0
entry_bss_dirty_at:	.quad 0
entry_cs:		.word 0
entry_ds:		.word 0
entry_es:		.word 0
entry_ss:		.word 0
	.balign 8
entry_gdtr:		.space 16

	.bss
	.balign 16
	.globl ap_ticket
ap_ticket:	.long 0
	.balign 16
bsp_stack:	.space 16384
bsp_stack_top:

	/* Outside the zero-checked .bss range (see guest64.ld). */
	.section .apstack, "aw", @nobits
	.balign 16
ap_stacks:	.space MAX_APS << AP_STACK_SHIFT

	.section .note.GNU-stack, "", @progbits
