/* Entry of check-pvh.elf: the PVH boot ABI (32-bit protected mode, paging off, EBX = start_info). */
	/* XEN_ELFNOTE_PHYS32_ENTRY (18): the 32-bit physical entry address. */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4			/* namesz: "Xen\0" */
	.long 4			/* descsz */
	.long 18		/* type */
	.asciz "Xen"
	.balign 4
	.long pvh_start
	.balign 4

	.section .text.head, "ax"
	.code32
	.globl pvh_start
pvh_start:
	/* Record the entry state; there is no stack yet. */
	mov %ebx, entry_ebx
	mov %esp, entry_esp
	movw %cs, entry_cs
	movw %ds, entry_ds
	movw %es, entry_es
	movw %ss, entry_ss
	sgdt entry_gdtr

	/* The loader must zero .bss (p_memsz beyond p_filesz). */
	cld
	xor %eax, %eax
	mov $__bss_start, %edi
	mov $__bss_end, %ecx
	sub %edi, %ecx
	shr $2, %ecx
	repe scasl
	setnz %al
	mov %eax, entry_bss_dirty
	lea -4(%edi), %eax
	mov %eax, entry_bss_dirty_at

	mov $stack_top, %esp
	pushfl			/* scasl changed the arithmetic flags, not IF: only IF is checked */
	popl entry_eflags
	call pvh_main
1:	cli
	hlt
	jmp 1b

	.data
	.balign 4
	.globl entry_ebx, entry_esp, entry_eflags, entry_cs, entry_ds, entry_es, entry_ss, entry_gdtr
	.globl entry_bss_dirty, entry_bss_dirty_at
entry_ebx:		.long 0
entry_esp:		.long 0
entry_eflags:		.long 0
entry_bss_dirty:	.long 0
entry_bss_dirty_at:	.long 0
entry_cs:		.word 0
entry_ds:		.word 0
entry_es:		.word 0
entry_ss:		.word 0
	.balign 4
entry_gdtr:		.space 8

	.bss
	.balign 16
stack:	.space 16384
stack_top:

	.section .note.GNU-stack, "", @progbits
