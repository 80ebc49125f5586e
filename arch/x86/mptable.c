#include "arch/x86/mptable.h"
#include "arch/x86/layout.h"

#include <stddef.h>
#include <string.h>

#define MP_ENTRY_PROCESSOR 0
#define MP_ENTRY_BUS 1
#define MP_ENTRY_IOAPIC 2
#define MP_ENTRY_IOINT 3
#define MP_ENTRY_LOCALINT 4
#define MP_INT 0
#define MP_NMI 1
#define MP_EXTINT 3
#define MP_APIC_VERSION 0x14
#define MP_IOAPIC_VERSION 0x11
#define MP_IOAPIC_PINS 24

struct __attribute__((packed)) mpf_intel {
	char signature[4];
	uint32_t physptr;
	uint8_t length;
	uint8_t specification;
	uint8_t checksum;
	uint8_t feature[5];
};

struct __attribute__((packed)) mpc_table {
	char signature[4];
	uint16_t length;
	uint8_t spec;
	uint8_t checksum;
	char oem[8];
	char productid[12];
	uint32_t oemptr;
	uint16_t oemsize;
	uint16_t oemcount;
	uint32_t lapic;
	uint32_t reserved;
};

struct __attribute__((packed)) mpc_cpu {
	uint8_t type, apicid, apicver, cpuflag;
	uint32_t cpufeature, featureflag;
	uint32_t reserved[2];
};

struct __attribute__((packed)) mpc_bus {
	uint8_t type, busid;
	char bustype[6];
};

struct __attribute__((packed)) mpc_ioapic {
	uint8_t type, apicid, apicver, flags;
	uint32_t apicaddr;
};

struct __attribute__((packed)) mpc_intsrc {
	uint8_t type, irqtype;
	uint16_t irqflag;
	uint8_t srcbus, srcbusirq, dstapic, dstirq;
};

static uint8_t checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + p[i]);
	return (uint8_t)(0 - sum);
}

int mptable_write(const struct guest_mem *mem, uint64_t gpa, unsigned nr_cpus, struct error *err)
{
	/* ISA IRQ 0 (the PIT) reaches IOAPIC pin 2 in KVM's default routing. The PIC's ExtINT goes to
	 * LINT0 only: an ExtINT entry on IOAPIC pin 0 makes Linux warn that the hardware disagrees. */
	unsigned nr_ints = MP_IOAPIC_PINS - 1;
	size_t table_len = sizeof(struct mpc_table) + nr_cpus * sizeof(struct mpc_cpu) + sizeof(struct mpc_bus) +
			   sizeof(struct mpc_ioapic) + (nr_ints + 2) * sizeof(struct mpc_intsrc);
	uint64_t table_gpa = gpa + sizeof(struct mpf_intel);
	uint8_t *fp = guest_mem_ptr(mem, gpa, sizeof(struct mpf_intel) + table_len);
	if (!fp)
		return error_set(err, "the MP table (%zu bytes at 0x%llx) does not fit in guest RAM", table_len,
				 (unsigned long long)gpa);
	memset(fp, 0, sizeof(struct mpf_intel) + table_len);
	uint8_t *t = fp + sizeof(struct mpf_intel);
	uint8_t *p = t + sizeof(struct mpc_table);
	uint8_t ioapic_id = (uint8_t)nr_cpus; /* distinct from every LAPIC ID */
	uint16_t count = 0;

	for (unsigned i = 0; i < nr_cpus; i++) {
		struct mpc_cpu c = { .type = MP_ENTRY_PROCESSOR, .apicid = (uint8_t)i, .apicver = MP_APIC_VERSION,
				     .cpuflag = (uint8_t)(1 | (i == 0 ? 2 : 0)), /* enabled, BSP */
				     .cpufeature = 0x600, .featureflag = 0x201 /* FPU, APIC */ };
		memcpy(p, &c, sizeof(c));
		p += sizeof(c);
		count++;
	}
	struct mpc_bus bus = { .type = MP_ENTRY_BUS, .busid = 0 };
	memcpy(bus.bustype, "ISA   ", 6);
	memcpy(p, &bus, sizeof(bus));
	p += sizeof(bus);
	count++;
	struct mpc_ioapic io = { .type = MP_ENTRY_IOAPIC, .apicid = ioapic_id, .apicver = MP_IOAPIC_VERSION,
				 .flags = 1, .apicaddr = (uint32_t)X86_IOAPIC_ADDR };
	memcpy(p, &io, sizeof(io));
	p += sizeof(io);
	count++;
	/* Every pin, so virtio-mmio devices can use 16-23 too (as ISA-style edge interrupts). */
	for (unsigned irq = 0; irq < MP_IOAPIC_PINS; irq++) {
		if (irq == 2)
			continue; /* the cascade; pin 2 carries ISA IRQ 0 */
		struct mpc_intsrc in = { .type = MP_ENTRY_IOINT, .irqtype = MP_INT, .srcbus = 0,
					 .srcbusirq = (uint8_t)irq, .dstapic = ioapic_id,
					 .dstirq = (uint8_t)(irq == 0 ? 2 : irq) };
		memcpy(p, &in, sizeof(in));
		p += sizeof(in);
		count++;
	}
	struct mpc_intsrc lint0 = { .type = MP_ENTRY_LOCALINT, .irqtype = MP_EXTINT, .dstapic = 0xff, .dstirq = 0 };
	struct mpc_intsrc lint1 = { .type = MP_ENTRY_LOCALINT, .irqtype = MP_NMI, .dstapic = 0xff, .dstirq = 1 };
	memcpy(p, &lint0, sizeof(lint0));
	p += sizeof(lint0);
	memcpy(p, &lint1, sizeof(lint1));
	p += sizeof(lint1);
	count += 2;

	struct mpc_table h = { .length = (uint16_t)(p - t), .spec = 4, .oemcount = count,
			       .lapic = (uint32_t)X86_LAPIC_ADDR };
	memcpy(h.signature, "PCMP", 4);
	memcpy(h.oem, "KVMBOX  ", 8);
	memcpy(h.productid, "MICROVM     ", 12);
	memcpy(t, &h, sizeof(h));
	t[offsetof(struct mpc_table, checksum)] = checksum(t, h.length);

	struct mpf_intel f = { .physptr = (uint32_t)table_gpa, .length = 1, .specification = 4 };
	memcpy(f.signature, "_MP_", 4);
	memcpy(fp, &f, sizeof(f));
	fp[offsetof(struct mpf_intel, checksum)] = checksum(fp, sizeof(f));
	return 0;
}
