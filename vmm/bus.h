/*
 * The I/O bus: a vCPU exit (port I/O or MMIO) is routed to the device that registered the address.
 * Ranges are registered before any vCPU runs and never change afterwards, so lookups take no lock;
 * each device locks its own state.
 */
#ifndef KVMBOX_BUS_H
#define KVMBOX_BUS_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/error.h"

#define BUS_MAX_RANGES 64

/* offset is relative to the range's base; data holds len (1..8) bytes, little-endian. */
typedef void (*bus_access_fn)(void *dev, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

struct bus_range {
	uint64_t base;
	uint64_t len;
	bus_access_fn access;
	void *dev;
	const char *name;
};

struct bus {
	const char *name; /* "port" or "mmio", for messages */
	struct bus_range ranges[BUS_MAX_RANGES];
	int nr_ranges;
};

int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_access_fn access, void *dev,
		 const char *name, struct error *err);

/* Returns false when nothing is registered there: reads then see all-ones, writes are dropped. */
bool bus_access(const struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write);

#endif
