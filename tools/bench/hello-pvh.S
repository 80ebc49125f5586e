/* hello-pvh.elf: the smallest guest that boots under both kvmbox-vmm and QEMU's microvm through the PVH
 * entry (used by tools/bench/boot to time a VMM's whole lifecycle). 32-bit protected mode, paging off:
 * write "hello\n" to COM1 (port 0x3f8), reset through the i8042 (0xfe -> port 0x64), and if the VM is
 * still running, triple-fault (an IDT with a zero limit, then int3/ud2). */

	/* XEN_ELFNOTE_PHYS32_ENTRY (18). The descriptor is 8 bytes, as in Linux's vmlinux: QEMU reads a
	 * 64-bit value from the note of an ELF64 kernel. */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4			/* namesz: "Xen\0" */
	.long 8			/* descsz */
	.long 18		/* type */
	.asciz "Xen"
	.quad pvh_start

	.text
	.code32
	.globl pvh_start
pvh_start:
	cld
	mov $msg, %esi
	mov $msg_len, %ecx
	mov $0x3f8, %dx
	rep outsb
	mov $0xfe, %al		/* i8042: pulse the reset line */
	outb %al, $0x64
	lidt null_idt		/* still here: no IDT, so the next exception triple-faults */
	xor %ecx, %ecx		/* #DE, which KVM's emulator can deliver (it cannot do int3) */
	div %ecx
	ud2
1:	hlt
	jmp 1b

	.section .rodata
msg:	.ascii "hello\n"
	.set msg_len, . - msg
	.balign 8
null_idt:
	.word 0			/* limit */
	.long 0			/* base */

	.section .note.GNU-stack, "", @progbits
