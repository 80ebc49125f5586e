/* garbage.elf: a valid ELF whose entry point is a block of bytes that decode to no instruction
 * (0xff 0xff: FF /7 is undefined). The monitor must exit non-zero (3 or 4), quickly. */
	.section .text.head, "ax"
	.globl _start
_start:
	.fill 4096, 1, 0xff

	.section .note.GNU-stack, "", @progbits
