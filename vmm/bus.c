#include "vmm/bus.h"

#include <string.h>

int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_access_fn access, void *dev,
		 const char *name, struct error *err)
{
	if (len == 0 || base + len < base)
		return error_set(err, "%s: bad %s range 0x%llx+0x%llx", name, bus->name,
				 (unsigned long long)base, (unsigned long long)len);
	for (int i = 0; i < bus->nr_ranges; i++) {
		const struct bus_range *r = &bus->ranges[i];
		if (base < r->base + r->len && r->base < base + len)
			return error_set(err, "%s: %s range 0x%llx+0x%llx overlaps %s", name, bus->name,
					 (unsigned long long)base, (unsigned long long)len, r->name);
	}
	if (bus->nr_ranges == BUS_MAX_RANGES)
		return error_set(err, "%s: the %s bus is full (%d ranges)", name, bus->name, BUS_MAX_RANGES);
	bus->ranges[bus->nr_ranges++] = (struct bus_range){ base, len, access, dev, name };
	return 0;
}

bool bus_access(const struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
	for (int i = 0; i < bus->nr_ranges; i++) {
		const struct bus_range *r = &bus->ranges[i];
		if (addr >= r->base && addr - r->base < r->len) {
			r->access(r->dev, addr - r->base, data, len, is_write);
			return true;
		}
	}
	if (!is_write)
		memset(data, 0xff, len);
	return false;
}
