# Freestanding test guests (tests/guests/): `make guests` builds them into $(BUILD)/guests/.
#   check64.elf       64-bit Linux boot protocol entry: checks the monitor's contract from inside
#   check.bzImage     the same checks packaged as a bzImage (plus the copied setup header)
#   check-pvh.elf     PVH entry (32-bit code in an ELF64 container with the Xen PHYS32_ENTRY note)
#   triple-fault.elf  empty IDT + int $0x80: the monitor must exit 3 (or 4)
#   garbage.elf       entry point is undecodable bytes: the monitor must exit 3 or 4
#   spin.elf          prints SPIN and spins forever: --timeout must end it (exit 5)
#   blk.elf           64-bit: a polling virtio 1.x driver that drives the first virtio-blk disk
# Only Debian's gcc/binutils and python3 are used. Included by the top-level Makefile (BUILD, CC).
BUILD ?= build
CC ?= gcc

GUEST_SRC := tests/guests
GUEST_OUT := $(BUILD)/guests
GUEST_BZ_SETUP_SECTS := 3

GUEST_CFLAGS := -std=gnu11 -O2 -g -ffreestanding -fno-builtin -fno-pic -fno-pie -fno-stack-protector \
	-fno-asynchronous-unwind-tables -fno-unwind-tables -fcf-protection=none \
	-fno-tree-loop-distribute-patterns -mno-sse -mno-mmx -mno-red-zone -mgeneral-regs-only \
	-Wall -Wextra -Werror -MMD -MP -I$(GUEST_SRC)
GUEST_LDFLAGS := -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-z,noexecstack -Wl,-z,max-page-size=4096
GUEST_M64 := -m64 -mcmodel=small
GUEST_M32 := -m32 -march=i686

GUEST_TARGETS := $(addprefix $(GUEST_OUT)/,check64.elf check.bzImage check-pvh.elf triple-fault.elf \
	garbage.elf spin.elf blk.elf)

guests: $(GUEST_TARGETS)

# Objects: obj64/ for the 64-bit guests, obj32/ for the PVH guest.
$(GUEST_OUT)/obj64/%.o: $(GUEST_SRC)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_M64) $(GUEST_CFLAGS) -c $< -o $@
$(GUEST_OUT)/obj64/%.o: $(GUEST_SRC)/%.S
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_M64) $(GUEST_CFLAGS) -c $< -o $@
$(GUEST_OUT)/obj64/check64-bz.o: $(GUEST_SRC)/check64.c
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_M64) $(GUEST_CFLAGS) -DBZIMAGE -DBZ_SETUP_SECTS=$(GUEST_BZ_SETUP_SECTS) -c $< -o $@
$(GUEST_OUT)/obj32/%.o: $(GUEST_SRC)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_M32) $(GUEST_CFLAGS) -c $< -o $@
$(GUEST_OUT)/obj32/%.o: $(GUEST_SRC)/%.S
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_M32) $(GUEST_CFLAGS) -c $< -o $@

# Link a 64-bit guest at 1 MiB with the linker script among its prerequisites, then sanity-check the
# ELF (elfcheck.py).
define guest64_link
	$(CC) $(GUEST_M64) $(GUEST_LDFLAGS) -T $(filter %.ld,$^) -o $@.tmp $(filter %.o,$^)
	python3 $(GUEST_SRC)/elfcheck.py $@.tmp
	mv $@.tmp $@
endef

$(GUEST_OUT)/check64.elf: $(addprefix $(GUEST_OUT)/obj64/,head64.o check64.o lib.o) $(GUEST_SRC)/guest64.ld \
		$(GUEST_SRC)/elfcheck.py
	$(guest64_link)
$(GUEST_OUT)/blk.elf: $(addprefix $(GUEST_OUT)/obj64/,head64.o blk.o lib.o) $(GUEST_SRC)/guest64.ld \
		$(GUEST_SRC)/elfcheck.py
	$(guest64_link)
$(GUEST_OUT)/triple-fault.elf: $(GUEST_OUT)/obj64/triple-fault.o $(GUEST_SRC)/tiny64.ld $(GUEST_SRC)/elfcheck.py
	$(guest64_link)
$(GUEST_OUT)/garbage.elf: $(GUEST_OUT)/obj64/garbage.o $(GUEST_SRC)/tiny64.ld $(GUEST_SRC)/elfcheck.py
	$(guest64_link)
$(GUEST_OUT)/spin.elf: $(GUEST_OUT)/obj64/spin.o $(GUEST_SRC)/tiny64.ld $(GUEST_SRC)/elfcheck.py
	$(guest64_link)

# bzImage: the payload is linked like check64.elf (64-bit entry at 0x100200 = load address + 0x200),
# flattened with objcopy and prefixed with a setup area by mkbzimage.py.
$(GUEST_OUT)/check-bz-payload.elf: $(addprefix $(GUEST_OUT)/obj64/,head64.o check64-bz.o lib.o) \
		$(GUEST_SRC)/guest64.ld $(GUEST_SRC)/elfcheck.py
	$(guest64_link)
$(GUEST_OUT)/check.bzImage: $(GUEST_OUT)/check-bz-payload.elf $(GUEST_SRC)/mkbzimage.py
	objcopy -O binary $< $@.bin
	python3 $(GUEST_SRC)/mkbzimage.py $< $@.bin $(GUEST_BZ_SETUP_SECTS) $@.tmp
	rm -f $@.bin
	mv $@.tmp $@

# PVH: link the 32-bit code as elf32-i386, wrap it in ELF64 (the monitor loads x86_64 ELFs), check
# that the PT_NOTE with the Xen PHYS32_ENTRY note and the PT_LOADs at >= 1 MiB survived.
$(GUEST_OUT)/check-pvh.elf: $(addprefix $(GUEST_OUT)/obj32/,head-pvh.o check-pvh.o lib.o) \
		$(GUEST_SRC)/guest32.ld $(GUEST_SRC)/elfcheck.py
	$(CC) $(GUEST_M32) $(GUEST_LDFLAGS) -T $(GUEST_SRC)/guest32.ld -o $@.32 $(filter %.o,$^)
	objcopy -O elf64-x86-64 $@.32 $@.tmp
	python3 $(GUEST_SRC)/elfcheck.py --pvh $@.tmp
	rm -f $@.32
	mv $@.tmp $@

.PHONY: guests
