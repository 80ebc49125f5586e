/* triple-fault.elf: load an empty IDT (limit 0) and raise an exception: #UD -> #GP -> #DF -> triple
 * fault (KVM shutdown exit; the monitor must exit 3, or 4 when the instruction emulator gives up
 * first). ud2 rather than int $0x80: KVM's emulator on a PVM host cannot emulate INT n (exit 4). */
	.section .text.head, "ax"
	.code64
	.globl _start
_start:
	lea msg(%rip), %rsi
1:	lodsb
	test %al, %al
	jz 3f
	mov %al, %bl
	mov $0x3fd, %dx
2:	inb %dx, %al
	test $0x20, %al
	jz 2b
	mov %bl, %al
	mov $0x3f8, %dx
	outb %al, %dx
	jmp 1b
3:	lidt idtr(%rip)
	ud2
4:	hlt
	jmp 4b

	.section .rodata
msg:	.asciz "TRIPLE-FAULT now\n"
	.balign 8
idtr:	.word 0
	.quad 0

	.section .note.GNU-stack, "", @progbits
