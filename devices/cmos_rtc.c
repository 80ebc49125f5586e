/*
 * CMOS RTC (MC146818) at ports 0x70/0x71: the host's UTC time in BCD, 24-hour mode, and never
 * "update in progress", so a guest reading the clock never waits. Writes to the clock are ignored;
 * the rest of the 128 bytes is plain CMOS RAM.
 */
#include "vmm/vm.h"

#include <stdlib.h>
#include <time.h>

#define CMOS_INDEX_PORT 0x70
#define CMOS_SIZE 128

enum {
	RTC_SECONDS = 0x00, RTC_MINUTES = 0x02, RTC_HOURS = 0x04, RTC_WEEKDAY = 0x06, RTC_DAY = 0x07,
	RTC_MONTH = 0x08, RTC_YEAR = 0x09, RTC_REG_A = 0x0a, RTC_REG_B = 0x0b, RTC_REG_C = 0x0c,
	RTC_REG_D = 0x0d, RTC_CENTURY = 0x32,
};

struct cmos {
	pthread_mutex_t lock;
	uint8_t index;
	uint8_t ram[CMOS_SIZE];
};

static uint8_t bcd(int v)
{
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static uint8_t cmos_read(struct cmos *c, uint8_t reg)
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	switch (reg) {
	case RTC_SECONDS: return bcd(tm.tm_sec > 59 ? 59 : tm.tm_sec);
	case RTC_MINUTES: return bcd(tm.tm_min);
	case RTC_HOURS: return bcd(tm.tm_hour);
	case RTC_WEEKDAY: return bcd(tm.tm_wday + 1);
	case RTC_DAY: return bcd(tm.tm_mday);
	case RTC_MONTH: return bcd(tm.tm_mon + 1);
	case RTC_YEAR: return bcd(tm.tm_year % 100);
	case RTC_CENTURY: return bcd((tm.tm_year + 1900) / 100);
	case RTC_REG_A: return 0x26;  /* 32.768 kHz base, 1024 Hz rate, UIP clear */
	case RTC_REG_B: return 0x02;  /* 24-hour, BCD, no interrupts */
	case RTC_REG_C: return 0x00;  /* no interrupt flags */
	case RTC_REG_D: return 0x80;  /* valid RAM and time */
	default: return c->ram[reg];
	}
}

static void cmos_access(void *dev, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct cmos *c = dev;
	(void)len;
	pthread_mutex_lock(&c->lock);
	if (offset == 0) {
		if (is_write)
			c->index = data[0] & 0x7f; /* bit 7 is the NMI mask */
		else
			data[0] = 0xff;
	} else if (is_write) {
		if (c->index > RTC_REG_D && c->index != RTC_CENTURY)
			c->ram[c->index] = data[0];
	} else {
		data[0] = cmos_read(c, c->index);
	}
	pthread_mutex_unlock(&c->lock);
}

static int cmos_create(struct vm *vm, void **state, struct error *err)
{
	struct cmos *c = calloc(1, sizeof(*c));
	if (!c)
		return error_set(err, "out of memory");
	*state = c;
	pthread_mutex_init(&c->lock, NULL);
	return bus_register(&vm->pio, CMOS_INDEX_PORT, 2, cmos_access, c, "cmos rtc", err);
}

static void cmos_destroy(void *state)
{
	struct cmos *c = state;
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static const struct device_desc cmos_rtc = {
	.name = "cmos-rtc",
	.create = cmos_create,
	.destroy = cmos_destroy,
};
DEVICE_REGISTER(cmos_rtc);
