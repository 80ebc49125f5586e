/* spin.elf: prints SPIN, then spins forever (interrupts off, no halt): for --timeout (exit 5). */
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
3:	jmp 3b

	.section .rodata
msg:	.asciz "SPIN\n"

	.section .note.GNU-stack, "", @progbits
