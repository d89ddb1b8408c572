/*
 * test_mirror_basic.c - the mirror as one disk: read-after-write, vectored
 * I/O, ranges, both legs written, flush durability, clean/unclean reopen,
 * the write-intent bitmap, superblock slots, format and assembly checks.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blockdev/mirror/mirror.h"
#include "blockdev/mirror/superblock.h"
#include "blockdev/testdev/crash_disk.h"
#include "blockdev/testdev/fault_disk.h"
#include "blockdev/testdev/mem_disk.h"
#include "core/base/util.h"
#include "recovery/recovery.h"
#include "tests/unit/helpers/mirror_fixture.h"

static struct mfix_cfg base_cfg(void)
{
	struct mfix_cfg c = { 0 };
	c.mopts.no_cleaner = true;
	return c;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static void expect_seq(struct mfix *f, uint64_t blk, uint64_t want)
{
	uint64_t seq = 0;
	int rc = mfix_read_seq(f, blk, &seq);
	if (want == 0) {
		MFIX_CHECKM((rc) == (0), "block %llu: expected zeros, got rc %d seq %llu",
			     (unsigned long long)blk, rc, (unsigned long long)seq);
	} else {
		MFIX_CHECKM((rc) == (1), "block %llu: read rc %d (want payload seq %llu)",
			     (unsigned long long)blk, rc, (unsigned long long)want);
		MFIX_CHECKM((seq) == (want), "block %llu: seq %llu, want %llu", (unsigned long long)blk,
			     (unsigned long long)seq, (unsigned long long)want);
	}
}

Test(mirror_basic, read_after_write)
{
	struct mfix f;
	struct mfix_cfg c = base_cfg();
	mfix_init(&f, &c);
	uint64_t last = f.data_blocks - 1;

	expect_seq(&f, 0, 0); /* fresh array reads zeros */
	expect_seq(&f, last, 0);
	MFIX_CHECK((mfix_write(&f, 0, 1, 11, false)) == (0));
	MFIX_CHECK((mfix_write(&f, last, 1, 12, false)) == (0));
	MFIX_CHECK((mfix_write(&f, 100, 8, 13, false)) == (0)); /* crosses chunks 6 and 7 */
	MFIX_CHECK((mfix_write(&f, 40, 40, 14, false)) == (0)); /* spans 3+ chunks */
	expect_seq(&f, 0, 11);
	expect_seq(&f, last, 12);
	for (uint64_t b = 40; b < 80; b++)
		expect_seq(&f, b, 14);
	for (uint64_t b = 100; b < 108; b++)
		expect_seq(&f, b, 13);
	expect_seq(&f, 1, 0);
	expect_seq(&f, 108, 0);

	/* overwrite part of a range */
	MFIX_CHECK((mfix_write(&f, 102, 2, 15, false)) == (0));
	expect_seq(&f, 101, 13);
	expect_seq(&f, 102, 15);
	expect_seq(&f, 103, 15);
	expect_seq(&f, 104, 13);

	/* a multi-block read returns exactly what was written */
	uint8_t *buf = block_alloc(8 * BDEV_BLOCK_SIZE);
	MFIX_CHECK((bdev_read(f.dev, 100, buf, 8)) == (0));
	for (int i = 0; i < 8; i++) {
		uint64_t s;
		MFIX_CHECK((mfix_check(buf + i * BDEV_BLOCK_SIZE, 100 + (uint64_t)i, &s)) == (1));
		MFIX_CHECK((s) == ((i == 2 || i == 3) ? 15u : 13u));
	}
	free(buf);
	MFIX_CHECK((mfix_close(&f)) == (0));
	mfix_destroy(&f);
}

Test(mirror_basic, vectored_multi_iov)
{
	struct mfix f;
	struct mfix_cfg c = base_cfg();
	mfix_init(&f, &c);

	/* write 6 blocks from three separate buffers of 1, 2 and 3 blocks */
	uint8_t *a = block_alloc(BDEV_BLOCK_SIZE), *b = block_alloc(2 * BDEV_BLOCK_SIZE),
		*cc = block_alloc(3 * BDEV_BLOCK_SIZE);
	uint64_t base = 13; /* crosses the chunk boundary at 16 */
	mfix_fill(a, base + 0, 21);
	mfix_fill(b, base + 1, 22);
	mfix_fill(b + BDEV_BLOCK_SIZE, base + 2, 23);
	for (int i = 0; i < 3; i++)
		mfix_fill(cc + i * BDEV_BLOCK_SIZE, base + 3 + (uint64_t)i, 24 + (uint64_t)i);
	struct iovec wiov[3] = { { a, BDEV_BLOCK_SIZE }, { b, 2 * BDEV_BLOCK_SIZE },
				 { cc, 3 * BDEV_BLOCK_SIZE } };
	MFIX_CHECK((bdev_writev(f.dev, base, wiov, 3)) == (0));

	/* read them back split differently: 4 + 2 */
	uint8_t *r1 = block_alloc(4 * BDEV_BLOCK_SIZE), *r2 = block_alloc(2 * BDEV_BLOCK_SIZE);
	memset(r1, 0xAA, 4 * BDEV_BLOCK_SIZE);
	memset(r2, 0xAA, 2 * BDEV_BLOCK_SIZE);
	struct iovec riov[2] = { { r1, 4 * BDEV_BLOCK_SIZE }, { r2, 2 * BDEV_BLOCK_SIZE } };
	MFIX_CHECK((bdev_readv(f.dev, base, riov, 2)) == (0));
	for (int i = 0; i < 6; i++) {
		uint8_t *p = i < 4 ? r1 + i * BDEV_BLOCK_SIZE : r2 + (i - 4) * BDEV_BLOCK_SIZE;
		uint64_t s;
		MFIX_CHECKM((mfix_check(p, base + (uint64_t)i, &s)) == (1), "block %d", i);
		MFIX_CHECKM((s) == (21u + (uint64_t)i), "block %d seq %llu", i, (unsigned long long)s);
	}
	/* both legs got every block */
	for (int leg = 0; leg < 2; leg++)
		for (int i = 0; i < 6; i++) {
			uint64_t s;
			MFIX_CHECK((mfix_mem_seq(&f, leg, base + (uint64_t)i, &s)) == (1));
			MFIX_CHECK((s) == (21u + (uint64_t)i));
		}
	/* many iovecs of one block each */
	MFIX_CHECK((mfix_write(&f, 200, 40, 99, true)) == (0));
	for (uint64_t blk = 200; blk < 240; blk++)
		expect_seq(&f, blk, 99);
	free(a);
	free(b);
	free(cc);
	free(r1);
	free(r2);
	MFIX_CHECK((mfix_close(&f)) == (0));
	mfix_destroy(&f);
}

Test(mirror_basic, ranges_and_shapes)
{
	struct mfix f;
	struct mfix_cfg c = base_cfg();
	mfix_init(&f, &c);
	uint64_t n = f.data_blocks;
	uint8_t *buf = block_alloc(4 * BDEV_BLOCK_SIZE);
	memset(buf, 0x5A, 4 * BDEV_BLOCK_SIZE);

	MFIX_CHECK((bdev_write(f.dev, n, buf, 1)) == (-ERANGE));
	MFIX_CHECK((bdev_read(f.dev, n, buf, 1)) == (-ERANGE));
	MFIX_CHECK((bdev_write(f.dev, n - 1, buf, 2)) == (-ERANGE));
	MFIX_CHECK((bdev_read(f.dev, n - 3, buf, 4)) == (-ERANGE));
	MFIX_CHECK((bdev_write(f.dev, UINT64_MAX, buf, 1)) == (-ERANGE));
	MFIX_CHECK((bdev_write(f.dev, n - 4, buf, 4)) == (0));
	MFIX_CHECK((bdev_read(f.dev, n - 4, buf, 4)) == (0));
	/* bad shapes */
	struct iovec odd = { buf, 100 };
	MFIX_CHECK((bdev_writev(f.dev, 0, &odd, 1)) == (-EINVAL));
	struct iovec unaligned = { buf + 512, BDEV_BLOCK_SIZE };
	MFIX_CHECK((bdev_readv(f.dev, 0, &unaligned, 1)) == (-EINVAL));

	/* the refused writes touched nothing: nothing past the data area, and
	 * block 0 is still zero on both legs */
	for (int leg = 0; leg < 2; leg++) {
		uint64_t s = 1;
		MFIX_CHECK((mfix_mem_seq(&f, leg, 0, &s)) == (0));
		for (uint64_t b = f.data_offset + n; b < f.mem[leg]->nblocks; b++) {
			const uint8_t *p = mem_disk_block(f.mem[leg], b);
			for (int i = 0; i < (int)BDEV_BLOCK_SIZE; i++)
				MFIX_CHECKM((p[i]) == (0), "leg %d block %llu past the data area written", leg,
					     (unsigned long long)b);
		}
	}
	free(buf);
	MFIX_CHECK((mfix_close(&f)) == (0));
	mfix_destroy(&f);
}

Test(mirror_basic, both_legs_receive_writes)
{
	struct mfix f;
	struct mfix_cfg c = base_cfg();
	mfix_init(&f, &c);
	struct prng r;
	prng_seed(&r, 42);
	uint64_t *model = calloc(f.data_blocks, sizeof(uint64_t));
	for (uint64_t seq = 1; seq <= 300; seq++) {
		uint64_t n = 1 + prng_below(&r, 6);
		uint64_t blk = prng_below(&r, f.data_blocks - n + 1);
		MFIX_CHECK((mfix_write(&f, blk, n, seq, prng_below(&r, 2))) == (0));
		for (uint64_t i = 0; i < n; i++)
			model[blk + i] = seq;
	}
	MFIX_CHECK((bdev_flush(f.dev)) == (0));
	/* via mirror_read_leg while open, then via the images */
	uint64_t first;
	int64_t d = mfix_compare_legs(&f, &first);
	MFIX_CHECKM((d) == (0), "legs differ in %lld blocks (first %llu)", (long long)d,
		     (unsigned long long)first);
	uint8_t *buf = block_alloc(BDEV_BLOCK_SIZE);
	for (int leg = 0; leg < 2; leg++)
		for (uint64_t b = 0; b < f.data_blocks; b++) {
			MFIX_CHECK((mirror_read_leg(f.m, leg, b, buf, 1)) == (0));
			uint64_t s = 0;
			int v = mfix_check(buf, b, &s);
			MFIX_CHECKM((v) == (model[b] ? 1 : 0), "leg %d block %llu: check %d", leg,
				     (unsigned long long)b, v);
			MFIX_CHECK((s) == (model[b]));
		}
	free(buf);
	MFIX_CHECK((mfix_close(&f)) == (0));
	MFIX_CHECKM((mfix_compare_mem(&f, &first)) == (0), "mem images differ (first %llu)",
		     (unsigned long long)first);
	for (uint64_t b = 0; b < f.data_blocks; b++) {
		uint64_t s = 0;
		MFIX_CHECK((mfix_mem_seq(&f, 0, b, &s)) >= (0));
		MFIX_CHECKM((s) == (model[b]), "block %llu on disk: %llu want %llu", (unsigned long long)b,
			     (unsigned long long)s, (unsigned long long)model[b]);
	}
	free(model);
	mfix_destroy(&f);
}

Test(mirror_basic, flush_makes_writes_durable_on_both_legs)
{
	struct mfix f;
	struct mfix_cfg c = base_cfg();
	c.crash = true;
	c.crash_seed[0] = 1;
	c.crash_seed[1] = 2;
	c.lose_unflushed = true;
	mfix_init(&f, &c);

	for (uint64_t i = 0; i < 20; i++)
		MFIX_CHECK((mfix_write(&f, i * 7, 1, 100 + i, false)) == (0));
	MFIX_CHECKM((crash_disk_unflushed(f.crash[0])) > (0), "writes should sit in the cache");
	MFIX_CHECKM((crash_disk_unflushed(f.crash[1])) > (0), "writes should sit in the cache");
	struct mirror_status st0, st1;
	mirror_get_status(f.m, &st0);
	MFIX_CHECK((bdev_flush(f.dev)) == (0));
	mirror_get_status(f.m, &st1);
	MFIX_CHECK((st1.flushes) == (st0.flushes + 1));
	MFIX_CHECKM((crash_disk_unflushed(f.crash[0])) == (0), "flush left leg 0 volatile");
	MFIX_CHECKM((crash_disk_unflushed(f.crash[1])) == (0), "flush left leg 1 volatile");
	/* unflushed writes after that are lost (keep 0%) */
	MFIX_CHECK((mfix_write(&f, 500, 1, 999, false)) == (0));
	crash_disk_crash(f.crash[0]);
	crash_disk_crash(f.crash[1]);
	mfix_abandon(&f);
	for (int leg = 0; leg < 2; leg++) {
		for (uint64_t i = 0; i < 20; i++) {
			uint64_t s = 0;
			MFIX_CHECKM((mfix_mem_seq(&f, leg, i * 7, &s)) == (1), "leg %d block %llu lost", leg,
				     (unsigned long long)(i * 7));
			MFIX_CHECK((s) == (100 + i));
		}
		MFIX_CHECK((mfix_mem_seq(&f, leg, 500, NULL)) == (0));
	}
	/* and the array comes back with everything flushed */
	f.cfg.crash = false;
	mfix_open_ok(&f);
	struct resync_result res;
	struct cat_error err;
	MFIX_CHECKM((recovery_resync(f.m, NULL, NULL, &res, &err)) == (0), "%s", err.msg);
	for (uint64_t i = 0; i < 20; i++)
		expect_seq(&f, i * 7, 100 + i);
	MFIX_CHECK((mfix_close(&f)) == (0));
	mfix_destroy(&f);
}

Test(mirror_basic, clean_reopen_needs_no_resync)
{
	struct mfix f;
	struct mfix_cfg c = base_cfg();
	mfix_init(&f, &c);
	for (uint64_t i = 0; i < 30; i++)
		MFIX_CHECK((mfix_write(&f, i * 31 % f.data_blocks, 1, 1 + i, false)) == (0));
	struct mirror_status st;
	mirror_get_status(f.m, &st);
	MFIX_CHECK((st.dirty_chunks) > (0));
	MFIX_CHECK((mfix_close(&f)) == (0));
	for (int leg = 0; leg < 2; leg++) {
		struct msb sb;
		MFIX_CHECK((mfix_msb(&f, leg, &sb)) == (0));
		MFIX_CHECKM(sb.clean, "leg %d superblock not marked clean after close", leg);
		MFIX_CHECK((sb.member_state[0]) == (MEMBER_IN_SYNC));
		MFIX_CHECK((sb.member_state[1]) == (MEMBER_IN_SYNC));
		for (uint64_t ch = 0; ch < f.nchunks; ch++)
			MFIX_CHECKM(!mfix_disk_bit(&f, leg, ch), "leg %d chunk %llu still dirty after close",
				  leg, (unsigned long long)ch);
	}
	mfix_open_ok(&f);
	MFIX_CHECK((mirror_stale_chunks(f.m)) == (0));
	MFIX_CHECK((mirror_rebuilding_leg(f.m)) == (-1));
	mirror_get_status(f.m, &st);
	MFIX_CHECK((st.stale_chunks) == (0));
	MFIX_CHECK((st.dirty_chunks) == (0));
	MFIX_CHECK((st.leg[0].state) == (LEG_IN_SYNC));
	MFIX_CHECK((st.leg[1].state) == (LEG_IN_SYNC));
	MFIX_CHECK((st.data_blocks) == (f.data_blocks));
	MFIX_CHECK((st.chunk_blocks) == (f.chunk_blocks));
	MFIX_CHECK((st.nchunks) == (f.nchunks));
	MFIX_CHECK((memcmp(st.uuid, f.sb.uuid, 16)) == (0));
	for (uint64_t i = 0; i < 30; i++)
		expect_seq(&f, i * 31 % f.data_blocks, 1 + i);
	struct resync_result res;
	struct cat_error err;
	MFIX_CHECK((recovery_resync(f.m, NULL, NULL, &res, &err)) == (0));
	MFIX_CHECK((res.blocks_copied) == (0));
	MFIX_CHECK((res.chunks) == (0));
	MFIX_CHECK((mfix_close(&f)) == (0));
	mfix_destroy(&f);
}

Test(mirror_basic, unclean_reopen_resyncs_only_dirty_chunks)
{
	struct mfix f;
	struct mfix_cfg c = base_cfg();
	mfix_init(&f, &c);
	MFIX_CHECK((f.nchunks) > (8));
	uint64_t cb = f.chunk_blocks;
	MFIX_CHECK((mfix_write(&f, 3 * cb + 1, 2, 5, false)) == (0));
	MFIX_CHECK((mfix_write(&f, 7 * cb, 1, 6, false)) == (0));
	MFIX_CHECK((bdev_flush(f.dev)) == (0));
	for (int leg = 0; leg < 2; leg++) {
		MFIX_CHECKM(mfix_disk_bit(&f, leg, 3), "leg %d: bit of chunk 3 not on disk", leg);
		MFIX_CHECKM(mfix_disk_bit(&f, leg, 7), "leg %d: bit of chunk 7 not on disk", leg);
		MFIX_CHECK(!mfix_disk_bit(&f, leg, 4));
	}
	mfix_abandon(&f); /* process killed */
	for (int leg = 0; leg < 2; leg++) {
		struct msb sb;
		MFIX_CHECK((mfix_msb(&f, leg, &sb)) == (0));
		MFIX_CHECKM(!sb.clean, "leg %d: superblock says clean while the array was open", leg);
	}
	mfix_open_ok(&f);
	MFIX_CHECKM((mirror_stale_chunks(f.m)) == (2), "stale %llu, want exactly the 2 dirty chunks",
		     (unsigned long long)mirror_stale_chunks(f.m));
	MFIX_CHECK((mirror_next_stale_chunk(f.m, 0)) == (3));
	MFIX_CHECK((mirror_next_stale_chunk(f.m, 4)) == (7));
	MFIX_CHECK((mirror_next_stale_chunk(f.m, 8)) == (-1));
	expect_seq(&f, 3 * cb + 1, 5);
	expect_seq(&f, 7 * cb, 6);
	struct resync_result res;
	struct cat_error err;
	MFIX_CHECKM((recovery_resync(f.m, NULL, NULL, &res, &err)) == (0), "%s", err.msg);
	MFIX_CHECK((res.chunks) == (2));
	MFIX_CHECK((res.blocks_copied) == (0)); /* legs were identical: compare before copy */
	MFIX_CHECK(!res.degraded);
	MFIX_CHECK((mirror_stale_chunks(f.m)) == (0));
	MFIX_CHECK((mirror_rebuilding_leg(f.m)) == (-1));
	MFIX_CHECK((mfix_close(&f)) == (0));
	mfix_destroy(&f);
}

Test(mirror_basic, bitmap_dirty_then_cleaned_when_idle)
{
	struct mfix f;
	struct mfix_cfg c = base_cfg();
	c.mopts.clean_delay_ms = 400;
	mfix_init(&f, &c);
	uint64_t cb = f.chunk_blocks;
	struct mirror_status st;
	mirror_get_status(f.m, &st);
	MFIX_CHECK((st.dirty_chunks) == (0));

	MFIX_CHECK((mfix_write(&f, 5 * cb + 3, 1, 1, false)) == (0));
	mirror_get_status(f.m, &st);
	MFIX_CHECK((st.dirty_chunks) == (1));
	/* rule 1: the bit is on both disks before the write is acknowledged */
	for (int leg = 0; leg < 2; leg++) {
		MFIX_CHECKM(mfix_disk_bit(&f, leg, 5), "leg %d: chunk 5 not dirty on disk", leg);
		for (uint64_t ch = 0; ch < f.nchunks; ch++)
			if (ch != 5)
				MFIX_CHECKM(!mfix_disk_bit(&f, leg, ch), "leg %d chunk %llu dirty", leg,
					  (unsigned long long)ch);
	}
	/* not idle long enough yet */
	MFIX_CHECK((mirror_clean(f.m)) == (0));
	mirror_get_status(f.m, &st);
	MFIX_CHECK((st.dirty_chunks) == (1));
	sleep_ms(600);
	MFIX_CHECK((mirror_clean(f.m)) == (1));
	mirror_get_status(f.m, &st);
	MFIX_CHECK((st.dirty_chunks) == (0));
	for (int leg = 0; leg < 2; leg++)
		MFIX_CHECKM(!mfix_disk_bit(&f, leg, 5), "leg %d: cleared bit not written", leg);
	expect_seq(&f, 5 * cb + 3, 1);

	/* a new write to the clean chunk sets the bit again */
	MFIX_CHECK((mfix_write(&f, 5 * cb, 2, 2, false)) == (0));
	mirror_get_status(f.m, &st);
	MFIX_CHECK((st.dirty_chunks) == (1));
	MFIX_CHECK(mfix_disk_bit(&f, 0, 5) && mfix_disk_bit(&f, 1, 5));
	/* a write spanning two chunks dirties both */
	MFIX_CHECK((mfix_write(&f, 9 * cb - 1, 2, 3, false)) == (0));
	mirror_get_status(f.m, &st);
	MFIX_CHECK((st.dirty_chunks) == (3));
	MFIX_CHECK(mfix_disk_bit(&f, 0, 8) && mfix_disk_bit(&f, 1, 9));
	/* and a killed process finds exactly those chunks to resync */
	mfix_abandon(&f);
	mfix_open_ok(&f);
	MFIX_CHECK((mirror_stale_chunks(f.m)) == (3));
	MFIX_CHECK((mfix_close(&f)) == (0));
	mfix_destroy(&f);
}

Test(mirror_basic, bitmap_cleaner_thread)
{
	struct mfix f;
	struct mfix_cfg c = base_cfg();
	c.mopts.no_cleaner = false;
	c.mopts.clean_delay_ms = 20;
	mfix_init(&f, &c);
	MFIX_CHECK((mfix_write(&f, 0, 64, 1, false)) == (0));
	struct mirror_status st;
	uint64_t t0 = now_ns();
	do {
		sleep_ms(20);
		mirror_get_status(f.m, &st);
	} while (st.dirty_chunks && now_ns() - t0 < 5000000000ull);
	MFIX_CHECKM((st.dirty_chunks) == (0), "cleaner thread did not clear idle chunks in 5 s");
	for (int leg = 0; leg < 2; leg++)
		for (uint64_t ch = 0; ch < 4; ch++)
			MFIX_CHECK(!mfix_disk_bit(&f, leg, ch));
	MFIX_CHECK((mfix_close(&f)) == (0));
	mfix_destroy(&f);
}

Test(mirror_basic, bitmap_kept_while_degraded)
{
	struct mfix f;
	struct mfix_cfg c = base_cfg();
	c.mopts.clean_delay_ms = 10;
	mfix_init(&f, &c);
	MFIX_CHECK((mirror_fail_leg(f.m, 1, "test")) == (0));
	MFIX_CHECK((mfix_write(&f, 2 * f.chunk_blocks, 1, 1, false)) == (0));
	sleep_ms(50);
	MFIX_CHECKM((mirror_clean(f.m)) == (0), "rule 3: nothing may be cleared while degraded");
	struct mirror_status st;
	mirror_get_status(f.m, &st);
	MFIX_CHECK((st.dirty_chunks) == (1));
	MFIX_CHECK((st.leg[1].state) == (LEG_FAILED));
	MFIX_CHECK(mfix_disk_bit(&f, 0, 2));
	MFIX_CHECK((mfix_close(&f)) == (0));
	/* even after a clean close the survivor keeps the bit for the re-add */
	MFIX_CHECKM(mfix_disk_bit(&f, 0, 2), "clean close of a degraded array cleared the bitmap");
	mfix_destroy(&f);
}

Test(mirror_basic, status_counters)
{
	struct mfix f;
	struct mfix_cfg c = base_cfg();
	mfix_init(&f, &c);
	struct mirror_status a, b;
	mirror_get_status(f.m, &a);
	MFIX_CHECK((mirror_from_bdev(f.dev)) == (f.m));
	MFIX_CHECK(!(mirror_from_bdev(f.mem[0])));
	MFIX_CHECK((mfix_write(&f, 1, 1, 1, false)) == (0));
	MFIX_CHECK((mfix_write(&f, 2, 3, 2, false)) == (0));
	expect_seq(&f, 1, 1);
	MFIX_CHECK((bdev_flush(f.dev)) == (0));
	mirror_get_status(f.m, &b);
	MFIX_CHECK((b.writes - a.writes) == (2));
	MFIX_CHECK((b.reads - a.reads) == (1));
	MFIX_CHECK((b.flushes - a.flushes) == (1));
	MFIX_CHECK((b.authoritative == 0 || b.authoritative == 1) == (1));
	MFIX_CHECK(!b.readonly);
	MFIX_CHECKM((strstr(b.leg[0].name, f.name[0])) != (NULL), "leg 0 name '%s'", b.leg[0].name);
	MFIX_CHECKM((strstr(b.leg[1].name, f.name[1])) != (NULL), "leg 1 name '%s'", b.leg[1].name);
	MFIX_CHECK((mfix_close(&f)) == (0));
	mfix_destroy(&f);
}

Test(mirror_basic, readonly_writes_nothing)
{
	struct mfix f;
	struct mfix_cfg c = base_cfg();
	mfix_init(&f, &c);
	MFIX_CHECK((mfix_write(&f, 10, 1, 7, false)) == (0));
	mfix_abandon(&f); /* unclean: a read-write open would resync */
	struct mfix_image img[2];
	mfix_save(&f, 0, &img[0]);
	mfix_save(&f, 1, &img[1]);
	f.cfg.mopts.readonly = true;
	mfix_open_ok(&f);
	expect_seq(&f, 10, 7);
	MFIX_CHECK((mfix_write(&f, 11, 1, 8, false)) == (-EROFS));
	struct mirror_status st;
	mirror_get_status(f.m, &st);
	MFIX_CHECK(st.readonly);
	mfix_close(&f);
	for (int leg = 0; leg < 2; leg++)
		for (uint64_t b = 0; b < img[leg].nblocks; b++)
			MFIX_CHECKM((memcmp(mem_disk_block(f.mem[leg], b),
					    img[leg].data + b * BDEV_BLOCK_SIZE, BDEV_BLOCK_SIZE)) == (0), "read-only open wrote block %llu of leg %d",
				     (unsigned long long)b, leg);
	mfix_image_free(&img[0]);
	mfix_image_free(&img[1]);
	mfix_destroy(&f);
}

/* --- superblock slots ---------------------------------------------------- */

static void corrupt_block(struct bdev *mem, uint64_t blk)
{
	uint8_t *p = mem_disk_block(mem, blk);
	p[2000] ^= 0x41;
	p[3000] ^= 0x13;
}

/* Leave both slots of both disks valid: the current superblock (events E,
 * clean) and a copy with events E+1 in the other slot. Returns E. */
static uint64_t two_generations(struct mfix *f)
{
	uint64_t e = 0;
	for (int leg = 0; leg < 2; leg++) {
		struct msb sb;
		MFIX_CHECK((mfix_msb(f, leg, &sb)) == (0));
		if (leg == 0)
			e = sb.events;
		MFIX_CHECKM((sb.events) == (e), "legs disagree on events after a clean close");
		MFIX_CHECK(sb.clean);
		sb.events = e + 1;
		MFIX_CHECK((msb_write(f->mem[leg], &sb)) == (0));
		int se[2];
		struct msb back;
		MFIX_CHECK((msb_read(f->mem[leg], &back, se)) == (0));
		MFIX_CHECK((se[0]) == (0));
		MFIX_CHECK((se[1]) == (0));
		MFIX_CHECK((back.events) == (e + 1));
	}
	return e;
}

static void populate(struct mfix *f, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		MFIX_CHECK((mfix_write(f, (i * 37) % f->data_blocks, 1, 1 + i, false)) == (0));
}

static void check_populated(struct mfix *f, uint64_t n)
{
	/* later writes to the same block win */
	uint64_t *want = calloc(f->data_blocks, sizeof(uint64_t));
	for (uint64_t i = 0; i < n; i++)
		want[(i * 37) % f->data_blocks] = 1 + i;
	for (uint64_t b = 0; b < f->data_blocks; b++)
		if (want[b] || b % 50 == 0)
			expect_seq(f, b, want[b]);
	free(want);
}

Test(mirror_basic, superblock_newest_slot_corrupt_on_both)
{
	struct mfix f;
	struct mfix_cfg c = base_cfg();
	mfix_init(&f, &c);
	populate(&f, 50);
	MFIX_CHECK((mfix_close(&f)) == (0));
	uint64_t e = two_generations(&f);
	for (int leg = 0; leg < 2; leg++) {
		corrupt_block(f.mem[leg], (e + 1) % 2);
		struct msb sb;
		int se[2];
		MFIX_CHECK((msb_read(f.mem[leg], &sb, se)) == (0));
		MFIX_CHECK((sb.events) == (e));
		MFIX_CHECK((se[(e + 1) % 2]) == (-EUCLEAN));
		MFIX_CHECK((se[e % 2]) == (0));
	}
	mfix_open_ok(&f);
	MFIX_CHECKM((mirror_stale_chunks(f.m)) == (0), "opened from the older clean slot: no resync");
	check_populated(&f, 50);
	MFIX_CHECK((mfix_close(&f)) == (0));
	mfix_destroy(&f);
}

Test(mirror_basic, superblock_older_slot_corrupt_on_both)
{
	struct mfix f;
	struct mfix_cfg c = base_cfg();
	mfix_init(&f, &c);
	populate(&f, 50);
	MFIX_CHECK((mfix_close(&f)) == (0));
	uint64_t e = two_generations(&f);
	for (int leg = 0; leg < 2; leg++)
		corrupt_block(f.mem[leg], e % 2);
	mfix_open_ok(&f);
	MFIX_CHECK((mirror_stale_chunks(f.m)) == (0));
	struct mirror_status st;
	mirror_get_status(f.m, &st);
	MFIX_CHECK((st.events) >= (e + 1));
	check_populated(&f, 50);
	MFIX_CHECK((mfix_close(&f)) == (0));
	mfix_destroy(&f);
}

Test(mirror_basic, superblock_newest_slot_corrupt_on_one_disk)
{
	for (int bad = 0; bad < 2; bad++) {
		struct mfix f;
		struct mfix_cfg c = base_cfg();
		mfix_init(&f, &c);
		populate(&f, 50);
		MFIX_CHECK((mfix_close(&f)) == (0));
		uint64_t e = two_generations(&f);
		corrupt_block(f.mem[bad], (e + 1) % 2);
		mfix_open_ok(&f);
		check_populated(&f, 50);
		struct resync_result res;
		struct cat_error err;
		MFIX_CHECKM((recovery_resync(f.m, NULL, NULL, &res, &err)) == (0), "%s", err.msg);
		struct mirror_status st;
		mirror_get_status(f.m, &st);
		MFIX_CHECK((st.leg[0].state) == (LEG_IN_SYNC));
		MFIX_CHECK((st.leg[1].state) == (LEG_IN_SYNC));
		check_populated(&f, 50);
		MFIX_CHECK((mfix_close(&f)) == (0));
		uint64_t first;
		MFIX_CHECKM((mfix_compare_mem(&f, &first)) == (0), "bad=%d: legs differ at %llu", bad,
			     (unsigned long long)first);
		/* both superblocks are whole again and agree */
		struct msb a, b;
		MFIX_CHECK((mfix_msb(&f, 0, &a)) == (0));
		MFIX_CHECK((mfix_msb(&f, 1, &b)) == (0));
		MFIX_CHECK((a.events) == (b.events));
		MFIX_CHECK(a.clean && b.clean);
		mfix_destroy(&f);
	}
}

Test(mirror_basic, superblock_both_slots_corrupt_refused)
{
	for (int bad = 0; bad < 2; bad++) {
		struct mfix f;
		struct mfix_cfg c = base_cfg();
		mfix_init(&f, &c);
		populate(&f, 10);
		MFIX_CHECK((mfix_close(&f)) == (0));
		two_generations(&f);
		corrupt_block(f.mem[bad], 0);
		corrupt_block(f.mem[bad], 1);
		struct msb sb;
		int se[2];
		MFIX_CHECK((msb_read(f.mem[bad], &sb, se)) == (-EUCLEAN));
		struct cat_error err;
		int rc = mfix_open(&f, &err);
		MFIX_CHECKM((rc) == (-EUCLEAN), "bad=%d: open gave %d (%s)", bad, rc, err.msg);
		MFIX_CHECK((err.code) == (-EUCLEAN));
		MFIX_CHECKM((strstr(err.msg, f.name[bad])) != (NULL),
			      "error message does not name the disk %s: '%s'", f.name[bad], err.msg);
		MFIX_CHECK(!(f.m));
		mfix_destroy(&f);
	}
}

/* --- format and assembly checks ------------------------------------------ */

Test(mirror_basic, format_refuses_existing_without_force)
{
	struct mfix f;
	struct mfix_cfg c = base_cfg();
	c.no_open = true;
	mfix_init(&f, &c);
	struct mirror_format_opts fo = { .chunk_blocks = 16 };
	struct cat_error err;
	cat_error_clear(&err);
	MFIX_CHECK((mirror_format(f.mem, &fo, &err)) == (-EEXIST));
	MFIX_CHECK((err.code) == (-EEXIST));
	MFIX_CHECK((err.msg[0]) != (0));
	/* one Catamaran disk beside a blank one is refused as well */
	struct bdev *blank = mem_disk_create(MFIX_DEFAULT_BLOCKS, "blank");
	struct bdev *mixed[2] = { blank, f.mem[1] };
	MFIX_CHECK((mirror_format(mixed, &fo, &err)) == (-EEXIST));
	MFIX_CHECKM((strstr(err.msg, f.name[1])) != (NULL), "message '%s' does not name %s", err.msg,
		      f.name[1]);
	bdev_close(blank);
	/* the refused format left the array intact */
	struct msb sb;
	MFIX_CHECK((mfix_msb(&f, 0, &sb)) == (0));
	MFIX_CHECK((memcmp(sb.uuid, f.sb.uuid, 16)) == (0));
	/* force: a new array */
	fo.force = true;
	MFIX_CHECKM((mirror_format(f.mem, &fo, &err)) == (0), "%s", err.msg);
	MFIX_CHECK((mfix_msb(&f, 0, &sb)) == (0));
	MFIX_CHECKM((memcmp(sb.uuid, f.sb.uuid, 16)) != (0), "forced format kept the old UUID");
	mfix_open_ok(&f);
	MFIX_CHECK((mfix_close(&f)) == (0));
	mfix_destroy(&f);
}

static int open_pair(struct bdev *a, struct bdev *b, struct cat_error *err, struct mirror **m)
{
	struct bdev *legs[2] = { fault_disk_create(a), fault_disk_create(b) };
	struct mirror_opts o = { .no_cleaner = true };
	cat_error_clear(err);
	*m = NULL;
	return mirror_open(legs, &o, m, err);
}

static bool names_a_disk(const char *msg, const char *n0, const char *n1)
{
	return strstr(msg, n0) || strstr(msg, n1);
}

Test(mirror_basic, uuid_mismatch_refused)
{
	struct mfix a, b;
	struct mfix_cfg c = base_cfg();
	c.no_open = true;
	mfix_init(&a, &c);
	mfix_init(&b, &c);
	struct cat_error err;
	struct mirror *m;
	int rc = open_pair(a.mem[0], b.mem[1], &err, &m);
	MFIX_CHECKM((rc) < (0), "legs of two different arrays were assembled");
	MFIX_CHECK((err.code) == (rc));
	MFIX_CHECKM(names_a_disk(err.msg, a.name[0], b.name[1]), "message '%s'", err.msg);
	MFIX_CHECK(!(m));
	/* the same disk twice (a cloned disk 0) is not a mirror either */
	rc = open_pair(a.mem[0], a.mem[0], &err, &m);
	MFIX_CHECKM((rc) < (0), "disk 0 assembled as both legs");
	if (rc == 0)
		mirror_abandon(m);
	mfix_destroy(&a);
	mfix_destroy(&b);
}

Test(mirror_basic, shrunk_disk_refused)
{
	struct mfix f;
	struct mfix_cfg c = base_cfg();
	c.no_open = true;
	mfix_init(&f, &c);
	uint64_t small_n = f.mem[1]->nblocks - 256;
	struct bdev *small = mem_disk_create(small_n, "shrunk");
	for (uint64_t b = 0; b < small_n; b++)
		memcpy(mem_disk_block(small, b), mem_disk_block(f.mem[1], b), BDEV_BLOCK_SIZE);
	struct cat_error err;
	struct mirror *m;
	int rc = open_pair(f.mem[0], small, &err, &m);
	MFIX_CHECKM((rc) < (0), "a disk smaller than its superblock says was accepted");
	MFIX_CHECKM((strstr(err.msg, "shrunk")) != (NULL), "message '%s' does not name the disk",
		      err.msg);
	bdev_close(small);
	mfix_destroy(&f);
}

Test(mirror_basic, geometry_mismatch_refused)
{
	for (int variant = 0; variant < 2; variant++) {
		struct mfix f;
		struct mfix_cfg c = base_cfg();
		c.no_open = true;
		mfix_init(&f, &c);
		struct msb sb;
		MFIX_CHECK((mfix_msb(&f, 1, &sb)) == (0));
		if (variant == 0) {
			sb.chunk_blocks *= 2; /* same size, other bitmap granularity */
		} else {
			sb.data_blocks -= sb.chunk_blocks; /* other size */
			sb.disk_blocks -= sb.chunk_blocks;
		}
		MFIX_CHECK((msb_write(f.mem[1], &sb)) == (0));
		/* the other slot must not offer the true geometry */
		memset(mem_disk_block(f.mem[1], (sb.events + 1) % 2), 0, BDEV_BLOCK_SIZE);
		struct cat_error err;
		struct mirror *m;
		int rc = open_pair(f.mem[0], f.mem[1], &err, &m);
		MFIX_CHECKM((rc) < (0), "variant %d: legs with different geometry assembled", variant);
		MFIX_CHECKM(names_a_disk(err.msg, f.name[0], f.name[1]), "message '%s'", err.msg);
		mfix_destroy(&f);
	}
}

Test(mirror_basic, unequal_disks_span_the_smaller)
{
	struct mfix f;
	struct mfix_cfg c = base_cfg();
	c.disk_blocks[0] = 1536;
	c.disk_blocks[1] = 1024;
	mfix_init(&f, &c);
	struct msb a, b, ref;
	MFIX_CHECK((mfix_msb(&f, 0, &a)) == (0));
	MFIX_CHECK((mfix_msb(&f, 1, &b)) == (0));
	MFIX_CHECK((msb_geometry(&ref, 1024, 16)) == (0));
	MFIX_CHECK((a.data_blocks) == (ref.data_blocks));
	MFIX_CHECK((b.data_blocks) == (ref.data_blocks));
	MFIX_CHECK((f.dev->nblocks) == (ref.data_blocks));
	MFIX_CHECK(msb_same_geometry(&a, &b));
	MFIX_CHECK((mfix_write(&f, f.data_blocks - 1, 1, 3, false)) == (0));
	expect_seq(&f, f.data_blocks - 1, 3);
	MFIX_CHECK((mfix_mem_seq(&f, 1, f.data_blocks - 1, NULL)) == (1));
	MFIX_CHECK((mfix_close(&f)) == (0));
	mfix_destroy(&f);
}

Test(mirror_basic, too_small_disk_refused)
{
	struct bdev *legs[2] = { mem_disk_create(256, "tiny0"), mem_disk_create(256, "tiny1") };
	struct mirror_format_opts fo = { .chunk_blocks = 16 };
	struct cat_error err;
	cat_error_clear(&err);
	MFIX_CHECK((mirror_format(legs, &fo, &err)) == (-EINVAL));
	fo.chunk_blocks = 24; /* not a power of two */
	struct bdev *ok[2] = { mem_disk_create(1024, "ok0"), mem_disk_create(1024, "ok1") };
	MFIX_CHECK((mirror_format(ok, &fo, &err)) == (-EINVAL));
	for (int i = 0; i < 2; i++) {
		bdev_close(legs[i]);
		bdev_close(ok[i]);
	}
}

Test(mirror_basic, default_format_syncs_disk2_fully)
{
	struct mfix f;
	struct mfix_cfg c = base_cfg();
	c.initial_sync = true;
	mfix_init(&f, &c);
	MFIX_CHECK((mirror_rebuilding_leg(f.m)) == (1));
	MFIX_CHECK((mirror_stale_chunks(f.m)) == (f.nchunks));
	MFIX_CHECK((mfix_write(&f, 5, 3, 1, false)) == (0));
	expect_seq(&f, 6, 1);
	struct resync_result res;
	struct cat_error err;
	MFIX_CHECKM((recovery_resync(f.m, NULL, NULL, &res, &err)) == (0), "%s", err.msg);
	MFIX_CHECK((res.chunks) == (f.nchunks));
	MFIX_CHECK((mirror_stale_chunks(f.m)) == (0));
	MFIX_CHECK((mirror_rebuilding_leg(f.m)) == (-1));
	MFIX_CHECK((mfix_close(&f)) == (0));
	uint64_t first;
	MFIX_CHECK((mfix_compare_mem(&f, &first)) == (0));
	mfix_open_ok(&f);
	MFIX_CHECK((mirror_stale_chunks(f.m)) == (0));
	expect_seq(&f, 7, 1);
	MFIX_CHECK((mfix_close(&f)) == (0));
	mfix_destroy(&f);
}
