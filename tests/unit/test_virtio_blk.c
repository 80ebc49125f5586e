/*
 * virtio-blk: the real device model (devices/virtio_blk.c on vmm/virtio_mmio.c) driven through the
 * in-process driver of tests/harness/virtio_driver.h, against a 1 MiB image file in a temporary folder.
 *
 * Built only into $(BUILD)/unit/kvmbox-unit-virtio (tests/harness/harness.mk defines KVMBOX_UNIT_VIRTIO):
 * tests/unit/unit.mk's kvmbox-unit compiles this file too but gets an empty object, since it does not
 * link the device model.
 */
#ifdef KVMBOX_UNIT_VIRTIO
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/harness/virtio_driver.h"
#include "tests/unit/unit.h"

UNIT_SUITE(virtio_blk);

#define DISK_BYTES (1 * MiB)
#define DISK_SECTORS (DISK_BYTES / 512)
#define ALL_BLK_FEATURES                                                                              \
	((1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_FLUSH) |  \
	 (1ull << VIRTIO_BLK_F_MQ) | (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES))
#define RING_FEATURES ((1ull << VD_F_VERSION_1) | (1ull << VD_F_EVENT_IDX) | (1ull << VD_F_INDIRECT_DESC))

static char path[64];
static int disk_fd = -1;
static struct vd *vd;
static struct error err;

/* The image: byte i of sector s is (s * 7 + i) & 0xff. */
static uint8_t pattern(uint64_t off)
{
	return (uint8_t)((off / 512) * 7 + off % 512);
}

static void setup(void)
{
	snprintf(path, sizeof(path), "/tmp/kvmbox-vblk-XXXXXX");
	disk_fd = mkstemp(path);
	cr_assert_geq(disk_fd, 0);
	uint8_t *buf = malloc(DISK_BYTES);
	for (uint64_t i = 0; i < DISK_BYTES; i++)
		buf[i] = pattern(i);
	cr_assert_eq(pwrite(disk_fd, buf, DISK_BYTES, 0), (ssize_t)DISK_BYTES);
	free(buf);
	vd = NULL;
	err.msg[0] = '\0';
}

static void teardown(void)
{
	vd_destroy(vd);
	vd = NULL;
	if (disk_fd >= 0)
		close(disk_fd);
	disk_fd = -1;
	unlink(path);
}

/* A device on the test image with options (",readonly", ",serial=X"...), cpus queues. */
static void create(const char *options, unsigned cpus)
{
	char spec[128];
	snprintf(spec, sizeof(spec), "%s%s", path, options);
	struct vd_opts o = { .cpus = cpus, .ram_bytes = 16 * MiB, .log_level = LOG_ERROR };
	vd = vd_create(spec, &o, &err);
	cr_assert_not_null(vd, "%s", err.msg);
}

static void start(uint64_t features, uint16_t qsize)
{
	cr_assert_eq(vd_start(vd, features, 1, qsize), 0, "device set-up failed, status 0x%x", vd_status(vd));
}

static void create_started(const char *options)
{
	create(options, 1);
	start(RING_FEATURES | ALL_BLK_FEATURES, 16);
}

/* One request on queue 0, waited for. */
static struct vd_done io(uint32_t type, uint64_t sector, const struct vd_seg *segs, unsigned n, bool in)
{
	cr_assert_geq(vd_queue_req(vd, 0, type, sector, segs, n, in, 42), 0, "no free descriptors");
	vd_kick(vd, 0);
	cr_assert_eq(vd_wait_used(vd, 0, 1, 5000), 1, "no completion (status 0x%x)", vd_status(vd));
	struct vd_done d;
	cr_assert_eq(vd_reap(vd, 0, &d, 1), 1);
	cr_assert_eq(d.user, 42, "used id %u is not the head submitted", d.head);
	return d;
}

static struct vd_done io1(uint32_t type, uint64_t sector, uint64_t gpa, uint32_t len, bool in)
{
	struct vd_seg s = { gpa, len };
	return io(type, sector, &s, len ? 1 : 0, in);
}

static uint8_t *ram(uint64_t gpa, uint64_t len)
{
	uint8_t *p = vd_ptr(vd, gpa, len);
	cr_assert_not_null(p);
	return p;
}

/* Pumps the event loop until nothing happens for quiet_ms. */
static void pump_quiet(int quiet_ms)
{
	while (vd_pump(vd, quiet_ms) > 0)
		;
}

/* ---- Feature negotiation ---- */

Test(virtio_blk, offers_features, .init = setup, .fini = teardown)
{
	create("", 1);
	cr_assert_eq(vd_read32(vd, VD_REG_MAGIC), 0x74726976);
	cr_assert_eq(vd_read32(vd, VD_REG_VERSION), 2);
	cr_assert_eq(vd_read32(vd, VD_REG_DEVICE_ID), 2);
	uint64_t f = vd_device_features(vd);
	cr_assert_eq(f, RING_FEATURES | ALL_BLK_FEATURES, "offered 0x%llx", (unsigned long long)f);
	cr_assert_str_eq(vd->vm.cmdline_extra, "virtio_mmio.device=4K@0xd0001000:5");
}

Test(virtio_blk, readonly_offers_ro, .init = setup, .fini = teardown)
{
	create(",readonly", 1);
	uint64_t f = vd_device_features(vd);
	cr_assert(f & (1ull << VIRTIO_BLK_F_RO));
	cr_assert_not(f & (1ull << VIRTIO_BLK_F_DISCARD));
	cr_assert_not(f & (1ull << VIRTIO_BLK_F_WRITE_ZEROES));
}

Test(virtio_blk, version_1_required, .init = setup, .fini = teardown)
{
	create("", 1);
	cr_assert_eq(vd_negotiate(vd, ALL_BLK_FEATURES), -1);
	cr_assert_not(vd_status(vd) & VD_STATUS_FEATURES_OK);
	cr_assert_eq(vd_negotiate(vd, 1ull << VD_F_VERSION_1), 0);
	cr_assert(vd_status(vd) & VD_STATUS_FEATURES_OK);
}

Test(virtio_blk, unknown_feature_refused, .init = setup, .fini = teardown)
{
	create("", 1);
	/* VIRTIO_BLK_F_SCSI (7) and bit 40 are not offered. */
	cr_assert_eq(vd_negotiate(vd, (1ull << VD_F_VERSION_1) | (1ull << 7)), -1);
	cr_assert_not(vd_status(vd) & VD_STATUS_FEATURES_OK);
	cr_assert_eq(vd_negotiate(vd, (1ull << VD_F_VERSION_1) | (1ull << 40)), -1);
	cr_assert_not(vd_status(vd) & VD_STATUS_FEATURES_OK);
	/* RO is not offered for a writable disk. */
	cr_assert_eq(vd_negotiate(vd, (1ull << VD_F_VERSION_1) | (1ull << VIRTIO_BLK_F_RO)), -1);
}

Test(virtio_blk, features_frozen_after_features_ok, .init = setup, .fini = teardown)
{
	create("", 1);
	cr_assert_eq(vd_negotiate(vd, 1ull << VD_F_VERSION_1), 0);
	/* A later write of an unknown bit is ignored: the device keeps FEATURES_OK. */
	vd_write32(vd, VD_REG_DRIVER_FEATURES_SEL, 0);
	vd_write32(vd, VD_REG_DRIVER_FEATURES, 1u << 7);
	vd_write32(vd, VD_REG_STATUS, vd_status(vd));
	cr_assert(vd_status(vd) & VD_STATUS_FEATURES_OK);
}

Test(virtio_blk, queue_before_features_ok_needs_reset, .init = setup, .fini = teardown)
{
	create("", 1);
	vd_reset(vd);
	vd_write32(vd, VD_REG_STATUS, VD_STATUS_ACKNOWLEDGE | VD_STATUS_DRIVER);
	cr_assert_eq(vd_setup_queue(vd, 0, 16), -1);
	cr_assert(vd_status(vd) & VD_STATUS_NEEDS_RESET);
	start((1ull << VD_F_VERSION_1), 16); /* a reset clears it */
	cr_assert_not(vd_status(vd) & VD_STATUS_NEEDS_RESET);
}

/* ---- Config space ---- */

Test(virtio_blk, config_space, .init = setup, .fini = teardown)
{
	create("", 3);
	uint64_t cap;
	uint32_t seg_max, blk_size;
	uint16_t nq;
	vd_config_read(vd, VIRTIO_BLK_CFG_CAPACITY, &cap, 8);
	vd_config_read(vd, VIRTIO_BLK_CFG_SEG_MAX, &seg_max, 4);
	vd_config_read(vd, VIRTIO_BLK_CFG_BLK_SIZE, &blk_size, 4);
	vd_config_read(vd, VIRTIO_BLK_CFG_NUM_QUEUES, &nq, 2);
	cr_assert_eq(cap, DISK_SECTORS);
	cr_assert_eq(seg_max, 126);
	cr_assert_eq(blk_size, 512);
	cr_assert_eq(nq, 3);
	/* Byte-wide reads see the same bytes; past the config space reads are zero. */
	uint8_t b[8];
	for (unsigned i = 0; i < 8; i++)
		vd_config_read(vd, VIRTIO_BLK_CFG_CAPACITY + i, &b[i], 1);
	cr_assert_eq(get64(b), DISK_SECTORS);
	uint32_t past = 0xffffffff;
	vd_config_read(vd, 0x400, &past, 4);
	cr_assert_eq(past, 0);
	/* num_queues queues exist, the next one does not. */
	vd_write32(vd, VD_REG_QUEUE_SEL, 2);
	cr_assert_eq(vd_read32(vd, VD_REG_QUEUE_NUM_MAX), 128);
	vd_write32(vd, VD_REG_QUEUE_SEL, 3);
	cr_assert_eq(vd_read32(vd, VD_REG_QUEUE_NUM_MAX), 0);
}

/* ---- Data path ---- */

Test(virtio_blk, out_in_round_trip, .init = setup, .fini = teardown)
{
	create_started("");
	uint64_t a = vd_alloc(vd, 4096, 4096), b = vd_alloc(vd, 4096, 4096);
	for (unsigned i = 0; i < 4096; i++) {
		ram(a, 4096)[i] = (uint8_t)(i * 13 + 1);
		ram(b, 4096)[i] = (uint8_t)(i * 17 + 5);
	}
	/* 8 KiB at sector 16 from two segments of 4 KiB; the second given first in guest RAM order. */
	struct vd_seg w[2] = { { b, 4096 }, { a, 4096 } };
	struct vd_done d = io(VIRTIO_BLK_T_OUT, 16, w, 2, false);
	cr_assert_eq(d.status, VIRTIO_BLK_S_OK);
	cr_assert_eq(d.len, 1, "an OUT request writes only its status byte");
	uint8_t file[8192];
	cr_assert_eq(pread(disk_fd, file, sizeof(file), 16 * 512), (ssize_t)sizeof(file));
	cr_assert_arr_eq(file, ram(b, 4096), 4096);
	cr_assert_arr_eq(file + 4096, ram(a, 4096), 4096);
	/* Read it back in three segments of 1 KiB, 3 KiB, 4 KiB. */
	uint64_t r = vd_alloc(vd, 8192, 4096);
	struct vd_seg rs[3] = { { r, 1024 }, { r + 1024, 3072 }, { r + 4096, 4096 } };
	d = io(VIRTIO_BLK_T_IN, 16, rs, 3, true);
	cr_assert_eq(d.status, VIRTIO_BLK_S_OK);
	cr_assert_eq(d.len, 8192 + 1);
	cr_assert_arr_eq(ram(r, 8192), file, 8192);
	/* Untouched sectors keep the pattern. */
	d = io1(VIRTIO_BLK_T_IN, 15, r, 512, true);
	cr_assert_eq(d.status, VIRTIO_BLK_S_OK);
	for (unsigned i = 0; i < 512; i++)
		cr_assert_eq(ram(r, 512)[i], pattern(15 * 512 + i));
}

Test(virtio_blk, direct_round_trip, .init = setup, .fini = teardown)
{
	create(",direct", 1);
	start((1ull << VD_F_VERSION_1) | ALL_BLK_FEATURES, 16);
	uint64_t a = vd_alloc(vd, 4096, 4096);
	memset(ram(a, 4096), 0x5a, 4096);
	cr_assert_eq(io1(VIRTIO_BLK_T_OUT, 8, a, 4096, false).status, VIRTIO_BLK_S_OK);
	memset(ram(a, 4096), 0, 4096);
	cr_assert_eq(io1(VIRTIO_BLK_T_IN, 8, a, 4096, true).status, VIRTIO_BLK_S_OK);
	for (unsigned i = 0; i < 4096; i++)
		cr_assert_eq(ram(a, 4096)[i], 0x5a);
}

Test(virtio_blk, last_sector_and_past_the_end, .init = setup, .fini = teardown)
{
	create_started("");
	uint64_t a = vd_alloc(vd, 8192, 4096);
	cr_assert_eq(io1(VIRTIO_BLK_T_IN, DISK_SECTORS - 1, a, 512, true).status, VIRTIO_BLK_S_OK);
	cr_assert_eq(ram(a, 1)[0], pattern(DISK_BYTES - 512));
	/* At the end, straddling it, far beyond it, and a sector that overflows when scaled to bytes. */
	cr_assert_eq(io1(VIRTIO_BLK_T_IN, DISK_SECTORS, a, 512, true).status, VIRTIO_BLK_S_IOERR);
	cr_assert_eq(io1(VIRTIO_BLK_T_IN, DISK_SECTORS - 1, a, 1024, true).status, VIRTIO_BLK_S_IOERR);
	cr_assert_eq(io1(VIRTIO_BLK_T_OUT, DISK_SECTORS - 1, a, 1024, false).status, VIRTIO_BLK_S_IOERR);
	cr_assert_eq(io1(VIRTIO_BLK_T_IN, UINT64_MAX / 512 + 1, a, 512, true).status, VIRTIO_BLK_S_IOERR);
	cr_assert_eq(io1(VIRTIO_BLK_T_IN, UINT64_MAX, a, 512, true).status, VIRTIO_BLK_S_IOERR);
	struct stat st;
	cr_assert_eq(fstat(disk_fd, &st), 0);
	cr_assert_eq(st.st_size, (off_t)DISK_BYTES, "the image grew");
}

Test(virtio_blk, unaligned_length_ioerr, .init = setup, .fini = teardown)
{
	create_started("");
	uint64_t a = vd_alloc(vd, 4096, 4096);
	cr_assert_eq(io1(VIRTIO_BLK_T_IN, 0, a, 1000, true).status, VIRTIO_BLK_S_IOERR);
	cr_assert_eq(io1(VIRTIO_BLK_T_OUT, 0, a, 513, false).status, VIRTIO_BLK_S_IOERR);
	uint8_t file[1024];
	cr_assert_eq(pread(disk_fd, file, sizeof(file), 0), (ssize_t)sizeof(file));
	for (unsigned i = 0; i < sizeof(file); i++)
		cr_assert_eq(file[i], pattern(i), "byte %u changed by a refused write", i);
}

Test(virtio_blk, zero_length_ok, .init = setup, .fini = teardown)
{
	create_started("");
	struct vd_done d = io(VIRTIO_BLK_T_IN, 0, NULL, 0, true);
	cr_assert_eq(d.status, VIRTIO_BLK_S_OK);
	cr_assert_eq(d.len, 1);
}

Test(virtio_blk, flush_ok, .init = setup, .fini = teardown)
{
	create_started("");
	cr_assert_eq(io(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, true).status, VIRTIO_BLK_S_OK);
}

Test(virtio_blk, get_id_serial, .init = setup, .fini = teardown)
{
	create_started(",serial=abc-123");
	uint64_t a = vd_alloc(vd, 20, 4);
	memset(ram(a, 20), 0xee, 20);
	struct vd_done d = io1(VIRTIO_BLK_T_GET_ID, 0, a, 20, true);
	cr_assert_eq(d.status, VIRTIO_BLK_S_OK);
	cr_assert_eq(d.len, 21);
	uint8_t want[20] = "abc-123";
	cr_assert_arr_eq(ram(a, 20), want, 20);
}

Test(virtio_blk, get_id_default_and_short_buffer, .init = setup, .fini = teardown)
{
	create_started("");
	uint64_t a = vd_alloc(vd, 20, 4);
	memset(ram(a, 20), 0xee, 20);
	struct vd_done d = io1(VIRTIO_BLK_T_GET_ID, 0, a, 6, true);
	cr_assert_eq(d.status, VIRTIO_BLK_S_OK);
	cr_assert_eq(d.len, 7);
	cr_assert_arr_eq(ram(a, 6), "kvmbox", 6);
	cr_assert_eq(ram(a, 20)[6], 0xee, "wrote past the buffer");
}

Test(virtio_blk, unknown_type_unsupp, .init = setup, .fini = teardown)
{
	create_started("");
	uint64_t a = vd_alloc(vd, 512, 512);
	cr_assert_eq(io1(99, 0, a, 512, true).status, VIRTIO_BLK_S_UNSUPP);
	cr_assert_eq(io1(0x80000000u, 0, a, 512, false).status, VIRTIO_BLK_S_UNSUPP);
}

Test(virtio_blk, readonly_write_ioerr, .init = setup, .fini = teardown)
{
	create(",readonly", 1);
	start((1ull << VD_F_VERSION_1) | (1ull << VIRTIO_BLK_F_RO) | (1ull << VIRTIO_BLK_F_FLUSH), 16);
	uint64_t a = vd_alloc(vd, 512, 512);
	memset(ram(a, 512), 0x11, 512);
	cr_assert_eq(io1(VIRTIO_BLK_T_OUT, 0, a, 512, false).status, VIRTIO_BLK_S_IOERR);
	uint8_t seg[16] = { 0 };
	put32(seg + 8, 8); /* sector 0, 8 sectors */
	memcpy(ram(a, 16), seg, 16);
	cr_assert_neq(io1(VIRTIO_BLK_T_DISCARD, 0, a, 16, false).status, VIRTIO_BLK_S_OK);
	cr_assert_neq(io1(VIRTIO_BLK_T_WRITE_ZEROES, 0, a, 16, false).status, VIRTIO_BLK_S_OK);
	cr_assert_eq(io1(VIRTIO_BLK_T_IN, 0, a, 512, true).status, VIRTIO_BLK_S_OK);
	cr_assert_eq(ram(a, 1)[1], pattern(1));
	uint8_t b;
	cr_assert_eq(pread(disk_fd, &b, 1, 0), 1);
	cr_assert_eq(b, pattern(0));
}

static void discard_segment(uint64_t gpa, uint64_t sector, uint32_t nr, uint32_t flags)
{
	uint8_t *p = ram(gpa, 16);
	put64(p, sector);
	put32(p + 8, nr);
	put32(p + 12, flags);
}

static void assert_file_zero(uint64_t off, uint64_t len, bool zero)
{
	uint8_t *buf = malloc(len);
	cr_assert_eq(pread(disk_fd, buf, len, (off_t)off), (ssize_t)len);
	for (uint64_t i = 0; i < len; i++)
		cr_assert_eq(buf[i], zero ? 0 : pattern(off + i), "byte 0x%llx", (unsigned long long)(off + i));
	free(buf);
}

Test(virtio_blk, discard_punches, .init = setup, .fini = teardown)
{
	create_started("");
	uint64_t a = vd_alloc(vd, 16, 16);
	struct stat before, after;
	fsync(disk_fd);
	cr_assert_eq(fstat(disk_fd, &before), 0);
	discard_segment(a, 64, 256, 0); /* 128 KiB at 32 KiB */
	cr_assert_eq(io1(VIRTIO_BLK_T_DISCARD, 0, a, 16, false).status, VIRTIO_BLK_S_OK);
	assert_file_zero(64 * 512, 256 * 512, true);
	assert_file_zero(63 * 512, 512, false);
	assert_file_zero(320 * 512, 512, false);
	cr_assert_eq(fstat(disk_fd, &after), 0);
	cr_assert_eq(after.st_size, (off_t)DISK_BYTES);
	cr_assert_lt(after.st_blocks, before.st_blocks, "no blocks were freed (%lld -> %lld)",
		     (long long)before.st_blocks, (long long)after.st_blocks);
	/* Past the end: refused, the file keeps its size. */
	discard_segment(a, DISK_SECTORS - 8, 16, 0);
	cr_assert_eq(io1(VIRTIO_BLK_T_DISCARD, 0, a, 16, false).status, VIRTIO_BLK_S_IOERR);
	cr_assert_eq(fstat(disk_fd, &after), 0);
	cr_assert_eq(after.st_size, (off_t)DISK_BYTES);
}

Test(virtio_blk, write_zeroes_zeroes, .init = setup, .fini = teardown)
{
	create_started("");
	uint64_t a = vd_alloc(vd, 16, 16);
	discard_segment(a, 3, 5, 0);
	cr_assert_eq(io1(VIRTIO_BLK_T_WRITE_ZEROES, 0, a, 16, false).status, VIRTIO_BLK_S_OK);
	assert_file_zero(3 * 512, 5 * 512, true);
	assert_file_zero(2 * 512, 512, false);
	assert_file_zero(8 * 512, 512, false);
	/* With UNMAP: zeroes too. */
	discard_segment(a, 100, 100, 1);
	cr_assert_eq(io1(VIRTIO_BLK_T_WRITE_ZEROES, 0, a, 16, false).status, VIRTIO_BLK_S_OK);
	assert_file_zero(100 * 512, 100 * 512, true);
	assert_file_zero(200 * 512, 512, false);
	/* A segment of the wrong size is refused. */
	struct vd_seg s = { a, 8 };
	cr_assert_eq(io(VIRTIO_BLK_T_WRITE_ZEROES, 0, &s, 1, false).status, VIRTIO_BLK_S_IOERR);
}

/* ---- Malformed chains, reset ---- */

Test(virtio_blk, malformed_chain_needs_reset_then_recovers, .init = setup, .fini = teardown)
{
	create_started("");
	/* A chain whose buffer lies outside guest RAM. */
	vd_put_desc(vd, 0, 0, 1ull << 40, 16, 0, 0);
	vd_publish(vd, 0, 0);
	vd_notify(vd, 0);
	pump_quiet(20);
	cr_assert(vd_status(vd) & VD_STATUS_NEEDS_RESET);
	cr_assert_eq(vd_used_pending(vd, 0), 0);
	cr_assert(vd_irq_ack(vd) & 2, "no configuration-change interrupt for NEEDS_RESET");
	/* Further notifications are ignored until the reset. */
	uint64_t a = vd_alloc(vd, 512, 512);
	vd_publish(vd, 0, 1);
	vd_notify(vd, 0);
	pump_quiet(20);
	cr_assert_eq(vd_used_pending(vd, 0), 0);
	/* Reset and start over: works again. */
	start((1ull << VD_F_VERSION_1) | ALL_BLK_FEATURES, 16);
	cr_assert_not(vd_status(vd) & VD_STATUS_NEEDS_RESET);
	cr_assert_eq(io1(VIRTIO_BLK_T_IN, 0, a, 512, true).status, VIRTIO_BLK_S_OK);
	cr_assert_eq(ram(a, 512)[5], pattern(5));
}

Test(virtio_blk, chain_without_status_byte_needs_reset, .init = setup, .fini = teardown)
{
	create_started("");
	uint64_t h = vd_alloc(vd, 16, 16), a = vd_alloc(vd, 512, 512);
	put32(ram(h, 16), VIRTIO_BLK_T_OUT);
	vd_put_desc(vd, 0, 0, h, 16, VD_DESC_F_NEXT, 1);
	vd_put_desc(vd, 0, 1, a, 512, 0, 0);
	vd_publish(vd, 0, 0);
	vd_notify(vd, 0);
	pump_quiet(20);
	cr_assert(vd_status(vd) & VD_STATUS_NEEDS_RESET);
	cr_assert_eq(vd_used_pending(vd, 0), 0);
}

Test(virtio_blk, short_header_ioerr, .init = setup, .fini = teardown)
{
	create_started("");
	uint64_t h = vd_alloc(vd, 16, 16), s = vd_alloc(vd, 1, 1);
	vd_put_desc(vd, 0, 0, h, 8, VD_DESC_F_NEXT, 1);
	vd_put_desc(vd, 0, 1, s, 1, VD_DESC_F_WRITE, 0);
	vd_publish(vd, 0, 0);
	vd_notify(vd, 0);
	cr_assert_eq(vd_wait_used(vd, 0, 1, 2000), 1);
	cr_assert_eq(ram(s, 1)[0], VIRTIO_BLK_S_IOERR);
	cr_assert_not(vd_status(vd) & VD_STATUS_NEEDS_RESET);
}

Test(virtio_blk, reset_with_io_in_flight, .init = setup, .fini = teardown)
{
	create_started("");
	uint64_t a = vd_alloc(vd, 65536, 4096);
	struct vd_seg s = { a, 65536 };
	for (unsigned i = 0; i < 4; i++)
		cr_assert_geq(vd_queue_req(vd, 0, i == 3 ? VIRTIO_BLK_T_FLUSH : VIRTIO_BLK_T_IN, 0, &s, i == 3 ? 0 : 1,
					   true, i), 0);
	vd_notify(vd, 0);
	/* One turn of the loop: the notification only, the requests are submitted, none completed. */
	cr_assert_eq(vd_pump(vd, 1000), 1);
	cr_assert_eq(vd_used_pending(vd, 0), 0);
	uint64_t old_used = vd->q[0].used;
	/* Reset and new rings elsewhere, with used->idx and the first entries poisoned to see any write. */
	start((1ull << VD_F_VERSION_1) | ALL_BLK_FEATURES, 16);
	uint64_t new_used = vd->q[0].used;
	cr_assert_neq(old_used, new_used);
	uint8_t before_old[64], before_new[64];
	memcpy(before_old, ram(old_used, 64), 64);
	memcpy(before_new, ram(new_used, 64), 64);
	pump_quiet(50);
	cr_assert_arr_eq(ram(old_used, 64), before_old, 64, "the old used ring was written after the reset");
	cr_assert_arr_eq(ram(new_used, 64), before_new, 64, "a request from before the reset completed in the new ring");
	/* The device works on the new rings. */
	cr_assert_eq(io1(VIRTIO_BLK_T_IN, 1, a, 512, true).status, VIRTIO_BLK_S_OK);
	cr_assert_eq(ram(a, 512)[0], pattern(512));
}

/*
 * QueueReady = 0 with I/O in flight, then the queue enabled again on new rings without a device reset:
 * the old request completes into the NEW used ring (head from the old ring, reset_count unchanged).
 */
Test(virtio_blk, queue_disable_with_io_in_flight, .init = setup, .fini = teardown)
{
	create_started("");
	uint64_t a = vd_alloc(vd, 65536, 4096);
	struct vd_seg s = { a, 65536 };
	cr_assert_geq(vd_queue_req(vd, 0, VIRTIO_BLK_T_IN, 0, &s, 1, true, 1), 0);
	vd_notify(vd, 0);
	cr_assert_eq(vd_pump(vd, 1000), 1);
	cr_assert_eq(vd_used_pending(vd, 0), 0);
	vd_write32(vd, VD_REG_QUEUE_SEL, 0);
	vd_write32(vd, VD_REG_QUEUE_READY, 0);
	cr_assert_eq(vd_read32(vd, VD_REG_QUEUE_READY), 0);
	cr_assert_eq(vd_setup_queue(vd, 0, 16), 0); /* new rings, same device session */
	pump_quiet(50);
	cr_assert_eq(vd_used_pending(vd, 0), 0, "a request of the disabled queue completed in the new ring");
}

/* ---- Interrupts and notifications ---- */

static void batch_of_reads(unsigned n, uint64_t buf)
{
	for (unsigned i = 0; i < n; i++) {
		struct vd_seg s = { buf + 4096ull * i, 4096 };
		cr_assert_geq(vd_queue_req(vd, 0, VIRTIO_BLK_T_IN, 8ull * i, &s, 1, true, i), 0);
	}
}

Test(virtio_blk, event_idx_one_interrupt_per_batch, .init = setup, .fini = teardown)
{
	create_started("");
	cr_assert(vd->features & (1ull << VD_F_EVENT_IDX));
	uint64_t buf = vd_alloc(vd, 8 * 4096, 4096);
	struct vd_done d[8];
	for (unsigned round = 1; round <= 3; round++) {
		batch_of_reads(5, buf);
		cr_assert(vd_kick(vd, 0), "round %u: the device did not ask for a notification", round);
		cr_assert_eq(vd_wait_used(vd, 0, 5, 5000), 5);
		pump_quiet(20);
		cr_assert_eq(vd_interrupts(vd), round, "round %u: %llu interrupts", round,
			     (unsigned long long)vd_interrupts(vd));
		cr_assert_eq(vd_reap(vd, 0, d, 8), 5);
		for (unsigned i = 0; i < 5; i++)
			cr_assert_eq(d[i].status, VIRTIO_BLK_S_OK);
	}
	/* used_event is at the end of round 3: the next batch interrupts once ... */
	batch_of_reads(3, buf);
	vd_kick(vd, 0);
	cr_assert_eq(vd_wait_used(vd, 0, 3, 5000), 3);
	pump_quiet(20);
	cr_assert_eq(vd_interrupts(vd), 4);
	/* ... and without reaping (used_event stays behind), a further batch raises none. */
	batch_of_reads(2, buf + 3 * 4096);
	vd_kick(vd, 0);
	cr_assert_eq(vd_wait_used(vd, 0, 5, 5000), 5);
	pump_quiet(20);
	cr_assert_eq(vd_interrupts(vd), 4, "interrupted although used_event was already passed");
}

Test(virtio_blk, event_idx_notification_suppression, .init = setup, .fini = teardown)
{
	create_started("");
	uint64_t buf = vd_alloc(vd, 8 * 4096, 4096);
	batch_of_reads(2, buf);
	cr_assert(vd_kick(vd, 0));
	cr_assert_eq(vd_wait_used(vd, 0, 2, 5000), 2);
	/* The device went idle with avail_event = 2: the next request must be notified. */
	batch_of_reads(1, buf);
	cr_assert(vd_kick(vd, 0));
	cr_assert_eq(vd_wait_used(vd, 0, 3, 5000), 3);
}

Test(virtio_blk, no_event_idx_no_interrupt_flag, .init = setup, .fini = teardown)
{
	create("", 1);
	start((1ull << VD_F_VERSION_1), 16);
	uint64_t buf = vd_alloc(vd, 8 * 4096, 4096);
	batch_of_reads(4, buf);
	vd_kick(vd, 0);
	cr_assert_eq(vd_wait_used(vd, 0, 4, 5000), 4);
	pump_quiet(20);
	uint64_t n = vd_interrupts(vd);
	cr_assert_geq(n, 1);
	cr_assert_leq(n, 4);
	cr_assert(vd_irq_ack(vd) & 1);
	struct vd_done d[4];
	cr_assert_eq(vd_reap(vd, 0, d, 4), 4);
	/* VIRTQ_AVAIL_F_NO_INTERRUPT: none. */
	*(uint16_t *)ram(vd->q[0].avail, 2) = 1;
	batch_of_reads(4, buf);
	vd_kick(vd, 0);
	cr_assert_eq(vd_wait_used(vd, 0, 4, 5000), 4);
	pump_quiet(20);
	cr_assert_eq(vd_interrupts(vd), n);
}

Test(virtio_blk, full_queue_many_segments, .init = setup, .fini = teardown)
{
	create("", 2);
	start((1ull << VD_F_VERSION_1) | ALL_BLK_FEATURES, 128);
	cr_assert_eq(vd->nr_queues, 1);
	/* A request with seg_max (126) data segments of 512 bytes: 128 descriptors, the whole ring. */
	uint64_t buf = vd_alloc(vd, 126 * 512, 4096);
	struct vd_seg s[126];
	for (unsigned i = 0; i < 126; i++)
		s[i] = (struct vd_seg){ buf + 512ull * i, 512 };
	struct vd_done d = io(VIRTIO_BLK_T_IN, 0, s, 126, true);
	cr_assert_eq(d.status, VIRTIO_BLK_S_OK);
	for (unsigned i = 0; i < 126 * 512; i += 511)
		cr_assert_eq(ram(buf, 126 * 512)[i], pattern(i));
	/* 42 requests of 1 segment at once (chains of 3 descriptors: 126 of the 128). */
	uint64_t many = vd_alloc(vd, 42 * 512, 512);
	for (unsigned i = 0; i < 42; i++) {
		struct vd_seg one = { many + 512ull * i, 512 };
		cr_assert_geq(vd_queue_req(vd, 0, VIRTIO_BLK_T_IN, i, &one, 1, true, i), 0);
	}
	vd_kick(vd, 0);
	cr_assert_eq(vd_wait_used(vd, 0, 42, 5000), 42);
	struct vd_done all[42];
	cr_assert_eq(vd_reap(vd, 0, all, 42), 42);
	for (unsigned i = 0; i < 42; i++) {
		cr_assert_eq(all[i].status, VIRTIO_BLK_S_OK);
		cr_assert_eq(ram(many + 512ull * all[i].user, 1)[0], pattern(512ull * all[i].user));
	}
}

Test(virtio_blk, second_queue, .init = setup, .fini = teardown)
{
	create("", 2);
	cr_assert_eq(vd_start(vd, (1ull << VD_F_VERSION_1) | ALL_BLK_FEATURES, 2, 16), 0);
	uint64_t a = vd_alloc(vd, 512, 512);
	struct vd_seg s = { a, 512 };
	cr_assert_geq(vd_queue_req(vd, 1, VIRTIO_BLK_T_IN, 2, &s, 1, true, 7), 0);
	vd_kick(vd, 1);
	cr_assert_eq(vd_wait_used(vd, 1, 1, 5000), 1);
	struct vd_done d;
	cr_assert_eq(vd_reap(vd, 1, &d, 1), 1);
	cr_assert_eq(d.status, VIRTIO_BLK_S_OK);
	cr_assert_eq(d.user, 7);
	cr_assert_eq(ram(a, 1)[0], pattern(1024));
	cr_assert_eq(vd_used_pending(vd, 0), 0);
}
#endif
