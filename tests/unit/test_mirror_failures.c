/*
 * test_mirror_failures.c - disks that fail: read errors repaired from the
 * other leg, write errors and vanished disks that fail a leg while service
 * continues, both legs gone, failures during recovery (target and source),
 * a stale disk coming back (both directions), disk replacement, damaged
 * bitmaps.
 *
 * The fault disk addresses member-disk blocks: data block b of the mirror
 * is block f.data_offset + b there.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blockdev/mirror/mirror.h"
#include "blockdev/mirror/superblock.h"
#include "blockdev/testdev/fault_disk.h"
#include "blockdev/testdev/mem_disk.h"
#include "core/base/util.h"
#include "recovery/recovery.h"
#include "tests/unit/helpers/mirror_fixture.h"

/* A mirror plus what every block should hold. */
struct world {
	struct mfix f;
	uint64_t *model;
	uint64_t seq;
};

static void world_init(struct world *w, const struct mfix_cfg *cfg)
{
	struct mfix_cfg c = { 0 };
	if (cfg)
		c = *cfg;
	c.mopts.no_cleaner = true;
	mfix_init(&w->f, &c);
	w->model = calloc(w->f.data_blocks, sizeof(uint64_t));
	w->seq = 0;
}

static void world_destroy(struct world *w)
{
	mfix_destroy(&w->f);
	free(w->model);
}

static uint64_t wwrite(struct world *w, uint64_t blk, uint64_t n)
{
	uint64_t seq = ++w->seq;
	int rc = mfix_write(&w->f, blk, n, seq, false);
	MFIX_CHECKM((rc) == (0), "write of %llu blocks at %llu: %d", (unsigned long long)n,
		     (unsigned long long)blk, rc);
	for (uint64_t i = 0; i < n; i++)
		w->model[blk + i] = seq;
	return seq;
}

/* Every block reads back as the model says (through the mirror). */
static void check_all(struct world *w, const char *when)
{
	uint8_t *buf = block_alloc(64 * BDEV_BLOCK_SIZE);
	for (uint64_t b0 = 0; b0 < w->f.data_blocks; b0 += 64) {
		uint64_t n = w->f.data_blocks - b0 < 64 ? w->f.data_blocks - b0 : 64;
		int rc = bdev_read(w->f.dev, b0, buf, n);
		MFIX_CHECKM((rc) == (0), "%s: read of blocks %llu+%llu failed: %d", when,
			     (unsigned long long)b0, (unsigned long long)n, rc);
		for (uint64_t k = 0; k < n; k++) {
			uint64_t s = 0;
			int v = mfix_check(buf + k * BDEV_BLOCK_SIZE, b0 + k, &s);
			MFIX_CHECKM(v >= 0 && s == w->model[b0 + k],
				  "%s: block %llu holds %s%llu, want %llu", when,
				  (unsigned long long)(b0 + k), v < 0 ? "garbage " : "",
				  (unsigned long long)s, (unsigned long long)w->model[b0 + k]);
		}
	}
	free(buf);
}

/* Both legs' images equal the model (mirror closed or idle). */
static void check_images(struct world *w, const char *when)
{
	uint64_t first;
	uint64_t d = mfix_compare_mem(&w->f, &first);
	MFIX_CHECKM((d) == (0), "%s: legs differ in %llu blocks (first %llu)", when, (unsigned long long)d,
		     (unsigned long long)first);
	for (uint64_t b = 0; b < w->f.data_blocks; b++) {
		uint64_t s = 0;
		int v = mfix_mem_seq(&w->f, 0, b, &s);
		MFIX_CHECKM(v >= 0 && s == w->model[b], "%s: block %llu on disk holds %llu, want %llu", when,
			  (unsigned long long)b, (unsigned long long)s, (unsigned long long)w->model[b]);
	}
}

static void populate(struct world *w, uint64_t nblocks)
{
	for (uint64_t b = 0; b < nblocks; b += 8)
		wwrite(w, b, nblocks - b < 8 ? nblocks - b : 8);
}

static void resync_ok(struct world *w, struct resync_result *res)
{
	struct cat_error err;
	cat_error_clear(&err);
	int rc = recovery_resync(w->f.m, NULL, NULL, res, &err);
	MFIX_CHECKM((rc) == (0), "recovery_resync: %d (%s)", rc, err.msg);
	MFIX_CHECK(!res->degraded);
	MFIX_CHECK((mirror_stale_chunks(w->f.m)) == (0));
	MFIX_CHECK((mirror_rebuilding_leg(w->f.m)) == (-1));
	struct mirror_status st;
	mirror_get_status(w->f.m, &st);
	MFIX_CHECK((st.leg[0].state) == (LEG_IN_SYNC));
	MFIX_CHECK((st.leg[1].state) == (LEG_IN_SYNC));
}

/* Survivor's on-disk superblock records `failed` as failed, at the
 * mirror's current event count. */
static void check_recorded_failed(struct world *w, int failed)
{
	struct mirror_status st;
	mirror_get_status(w->f.m, &st);
	struct msb sb;
	MFIX_CHECK((mfix_msb(&w->f, 1 - failed, &sb)) == (0));
	MFIX_CHECKM((sb.member_state[failed]) == (MEMBER_FAILED),
		     "survivor's superblock says disk %d is %s", failed + 1,
		     member_state_name(sb.member_state[failed]));
	MFIX_CHECK((sb.member_state[1 - failed]) == (MEMBER_IN_SYNC));
	MFIX_CHECKM((sb.events) == (st.events), "survivor's superblock at events %llu, mirror at %llu",
		     (unsigned long long)sb.events, (unsigned long long)st.events);
}

/* A block of leg `leg` that the mirror reads from that leg first (reads
 * are balanced between the legs); found by probing with one-shot faults. */
static uint64_t block_read_first_from(struct world *w, int leg)
{
	for (uint64_t cand = 3; cand < w->f.data_blocks; cand += 97) {
		uint64_t before = fault_disk_failures(w->f.fault[leg]);
		MFIX_CHECK((fault_disk_fail_read(w->f.fault[leg], w->f.data_offset + cand, -EIO, false)) == (0));
		uint64_t s;
		(void)mfix_read_seq(&w->f, cand, &s);
		fault_disk_heal(w->f.fault[leg]);
		if (fault_disk_failures(w->f.fault[leg]) > before)
			return cand;
	}
	cr_assert_fail("no block is read from leg %d first", leg);
	return 0;
}

/* --- read errors ----------------------------------------------------------- */

static void read_error_repaired(int leg)
{
	struct world w;
	world_init(&w, NULL);
	populate(&w, w.f.data_blocks);
	uint64_t b = block_read_first_from(&w, leg);
	uint64_t lo = b >= 3 ? b - 3 : 0; /* an 8-block read around it */
	struct mirror_status st0, st1;
	mirror_get_status(w.f.m, &st0);
	/* the bad sector: garbage on the platter, and the read fails once */
	memset(mfix_mem_data(&w.f, leg, b), 0xEE, BDEV_BLOCK_SIZE);
	MFIX_CHECK((fault_disk_fail_read(w.f.fault[leg], w.f.data_offset + b, -EIO, false)) == (0));
	uint8_t *buf = block_alloc(8 * BDEV_BLOCK_SIZE);
	MFIX_CHECKM((bdev_read(w.f.dev, lo, buf, 8)) == (0), "read with one bad copy failed");
	for (uint64_t i = 0; i < 8; i++) {
		uint64_t s;
		MFIX_CHECK((mfix_check(buf + i * BDEV_BLOCK_SIZE, lo + i, &s)) == (1));
		MFIX_CHECKM((s) == (w.model[lo + i]), "block %llu", (unsigned long long)(lo + i));
	}
	free(buf);
	MFIX_CHECKM((fault_disk_failures(w.f.fault[leg])) > (0), "the bad copy was never read");
	mirror_get_status(w.f.m, &st1);
	MFIX_CHECK((st1.leg[leg].read_errors) > (st0.leg[leg].read_errors));
	MFIX_CHECK((st1.leg[leg].repaired_blocks) > (st0.leg[leg].repaired_blocks));
	MFIX_CHECKM((st1.leg[leg].state) == (LEG_IN_SYNC), "a repaired read error failed the leg");
	/* the bad block was rewritten from the good copy */
	uint64_t s = 0;
	MFIX_CHECKM((mfix_mem_seq(&w.f, leg, b, &s)) == (1), "leg %d block %llu not repaired", leg,
		     (unsigned long long)b);
	MFIX_CHECK((s) == (w.model[b]));
	check_all(&w, "after repair");
	MFIX_CHECK((mfix_close(&w.f)) == (0));
	check_images(&w, "after close");
	world_destroy(&w);
}

Test(mirror_failures, read_error_leg0_repaired_from_leg1) { read_error_repaired(0); }
Test(mirror_failures, read_error_leg1_repaired_from_leg0) { read_error_repaired(1); }

Test(mirror_failures, read_error_whose_repair_fails_fails_the_leg)
{
	struct world w;
	world_init(&w, NULL);
	populate(&w, 128);
	uint64_t b = block_read_first_from(&w, 0);
	if (!w.model[b])
		wwrite(&w, b, 1);
	struct mirror_status st0, st1;
	mirror_get_status(w.f.m, &st0);
	MFIX_CHECK((fault_disk_fail_read(w.f.fault[0], w.f.data_offset + b, -EIO, true)) == (0));
	MFIX_CHECK((fault_disk_fail_write(w.f.fault[0], w.f.data_offset + b, -EIO, true)) == (0));
	uint64_t s;
	MFIX_CHECK((mfix_read_seq(&w.f, b, &s)) == (1));
	MFIX_CHECK((s) == (w.model[b]));
	mirror_get_status(w.f.m, &st1);
	MFIX_CHECKM((st1.leg[0].state) == (LEG_FAILED), "rewrite failed but leg 0 is %d", st1.leg[0].state);
	MFIX_CHECK((st1.events) > (st0.events));
	check_recorded_failed(&w, 0);
	wwrite(&w, b, 1);
	check_all(&w, "degraded");
	MFIX_CHECK((mfix_close(&w.f)) == (0));
	world_destroy(&w);
}

Test(mirror_failures, read_error_on_both_copies_is_eio)
{
	struct world w;
	world_init(&w, NULL);
	populate(&w, 64);
	for (int leg = 0; leg < 2; leg++)
		MFIX_CHECK((fault_disk_fail_read(w.f.fault[leg], w.f.data_offset + 20, -EIO, true)) == (0));
	uint64_t s;
	MFIX_CHECK((mfix_read_seq(&w.f, 20, &s)) == (-EIO));
	uint8_t *buf = block_alloc(4 * BDEV_BLOCK_SIZE);
	MFIX_CHECK((bdev_read(w.f.dev, 18, buf, 4)) == (-EIO));
	free(buf);
	/* everything else still reads */
	MFIX_CHECK((mfix_read_seq(&w.f, 19, &s)) == (1));
	MFIX_CHECK((mfix_read_seq(&w.f, 21, &s)) == (1));
	fault_disk_heal(w.f.fault[0]);
	fault_disk_heal(w.f.fault[1]);
	check_all(&w, "after healing");
	MFIX_CHECK((mfix_close(&w.f)) == (0));
	world_destroy(&w);
}

/* --- write errors ---------------------------------------------------------- */

static void write_error_fails_leg(int leg)
{
	struct world w;
	world_init(&w, NULL);
	populate(&w, 256);
	struct mirror_status st0, st1;
	mirror_get_status(w.f.m, &st0);
	MFIX_CHECK((fault_disk_fail_write(w.f.fault[leg], w.f.data_offset + 100, -EIO, true)) == (0));
	uint64_t failed_seq = wwrite(&w, 98, 4); /* acknowledged by the survivor */
	mirror_get_status(w.f.m, &st1);
	MFIX_CHECK((st1.leg[leg].state) == (LEG_FAILED));
	MFIX_CHECK((st1.leg[1 - leg].state) == (LEG_IN_SYNC));
	MFIX_CHECKM((st1.events) > (st0.events), "events not bumped by a failure");
	MFIX_CHECK((st1.leg[leg].write_errors) > (0));
	MFIX_CHECK((st1.authoritative) == (1 - leg));
	check_recorded_failed(&w, leg);
	/* service continues on the survivor */
	for (uint64_t i = 0; i < 40; i++)
		wwrite(&w, (i * 53) % w.f.data_blocks, 1 + i % 3);
	MFIX_CHECK((bdev_flush(w.f.dev)) == (0));
	check_all(&w, "degraded");
	mirror_get_status(w.f.m, &st1);
	MFIX_CHECK((st1.leg[leg].state) == (LEG_FAILED));
	/* the failed leg really missed writes */
	uint64_t s = 0;
	MFIX_CHECK(mfix_mem_seq(&w.f, leg, 100, &s) >= 0 && s != failed_seq);
	MFIX_CHECK((mfix_close(&w.f)) == (0));

	/* the disk comes back (fault gone): the survivor is authoritative */
	mfix_open_ok(&w.f);
	struct mirror_status st;
	mirror_get_status(w.f.m, &st);
	MFIX_CHECK((st.authoritative) == (1 - leg));
	MFIX_CHECK((mirror_rebuilding_leg(w.f.m)) == (leg));
	MFIX_CHECK((mirror_stale_chunks(w.f.m)) > (0));
	MFIX_CHECKM((mirror_stale_chunks(w.f.m)) < (w.f.nchunks), "bitmap should limit the resync");
	check_all(&w, "before resync");
	struct resync_result res;
	resync_ok(&w, &res);
	MFIX_CHECK((res.blocks_copied) > (0));
	check_all(&w, "after resync");
	MFIX_CHECK((mfix_close(&w.f)) == (0));
	check_images(&w, "after resync");
	world_destroy(&w);
}

Test(mirror_failures, write_error_fails_leg0) { write_error_fails_leg(0); }
Test(mirror_failures, write_error_fails_leg1) { write_error_fails_leg(1); }

Test(mirror_failures, transient_write_error_is_retried)
{
	struct world w;
	world_init(&w, NULL);
	MFIX_CHECK((fault_disk_fail_write(w.f.fault[1], w.f.data_offset + 7, -EIO, false)) == (0));
	wwrite(&w, 7, 1);
	struct mirror_status st;
	mirror_get_status(w.f.m, &st);
	MFIX_CHECKM((st.leg[1].state) == (LEG_IN_SYNC), "one failed attempt (retry succeeded) failed the leg");
	MFIX_CHECK((fault_disk_failures(w.f.fault[1])) > (0));
	uint64_t s;
	MFIX_CHECK((mfix_mem_seq(&w.f, 1, 7, &s)) == (1));
	MFIX_CHECK((s) == (w.model[7]));
	MFIX_CHECK((mfix_close(&w.f)) == (0));
	check_images(&w, "after close");
	world_destroy(&w);
}

Test(mirror_failures, admin_fail_leg)
{
	struct world w;
	world_init(&w, NULL);
	populate(&w, 64);
	struct mirror_status st0, st1;
	mirror_get_status(w.f.m, &st0);
	MFIX_CHECK((mirror_fail_leg(w.f.m, 0, "test")) == (0));
	MFIX_CHECK((mirror_fail_leg(w.f.m, 0, "test")) == (-EALREADY));
	MFIX_CHECK((mirror_fail_leg(w.f.m, 2, "test")) == (-EINVAL));
	mirror_get_status(w.f.m, &st1);
	MFIX_CHECK((st1.leg[0].state) == (LEG_FAILED));
	MFIX_CHECK((st1.events) > (st0.events));
	check_recorded_failed(&w, 0);
	uint64_t before = fault_disk_ops(w.f.fault[0]);
	wwrite(&w, 3, 2);
	check_all(&w, "degraded");
	MFIX_CHECKM((fault_disk_ops(w.f.fault[0])) == (before), "I/O still sent to a failed leg");
	MFIX_CHECK((mfix_close(&w.f)) == (0));
	world_destroy(&w);
}

/* --- vanished disk mid-workload --------------------------------------------- */

#define VT 4

struct vthread {
	struct world *w;
	int id;
	atomic_bool *stop;
	uint64_t seq;
	atomic_uint_fast64_t ops;
	int err;
};

static void *vanish_worker(void *arg)
{
	struct vthread *t = arg;
	struct world *w = t->w;
	struct prng r;
	prng_seed(&r, 77 + (uint64_t)t->id);
	uint8_t *buf = block_alloc(BDEV_BLOCK_SIZE);
	/* thread id owns blocks b with b % VT == id */
	while (!atomic_load(t->stop) && !t->err) {
		uint64_t b = prng_below(&r, w->f.data_blocks / VT) * VT + (uint64_t)t->id;
		if (prng_below(&r, 3)) {
			uint64_t seq = ((uint64_t)(t->id + 1) << 40) | ++t->seq;
			mfix_fill(buf, b, seq);
			int rc = bdev_write(w->f.dev, b, buf, 1);
			if (rc)
				t->err = rc;
			else
				w->model[b] = seq; /* only this thread touches block b */
		} else {
			int rc = bdev_read(w->f.dev, b, buf, 1);
			uint64_t s = 0;
			if (rc)
				t->err = rc;
			else if (mfix_check(buf, b, &s) < 0 || s != w->model[b])
				t->err = -EBADMSG;
		}
		if (prng_below(&r, 50) == 0 && bdev_flush(w->f.dev))
			t->err = -EIO;
		atomic_fetch_add(&t->ops, 1);
	}
	free(buf);
	return NULL;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static void vanish_mid_workload(int leg)
{
	struct world w;
	world_init(&w, NULL);
	atomic_bool stop = false;
	struct vthread t[VT];
	pthread_t th[VT];
	for (int i = 0; i < VT; i++) {
		t[i] = (struct vthread){ .w = &w, .id = i, .stop = &stop };
		MFIX_CHECK((pthread_create(&th[i], NULL, vanish_worker, &t[i])) == (0));
	}
	sleep_ms(60);
	fault_disk_vanish(w.f.fault[leg]);
	uint64_t ops_at_vanish = 0;
	for (int i = 0; i < VT; i++)
		ops_at_vanish += atomic_load(&t[i].ops);
	sleep_ms(120);
	atomic_store(&stop, true);
	uint64_t ops = 0;
	for (int i = 0; i < VT; i++) {
		pthread_join(th[i], NULL);
		MFIX_CHECKM((t[i].err) == (0), "thread %d saw error %d (a vanished leg must not fail I/O)", i,
			     t[i].err);
		ops += atomic_load(&t[i].ops);
	}
	MFIX_CHECKM((ops) > (ops_at_vanish + 100), "too little I/O after the disk vanished");
	struct mirror_status st;
	mirror_get_status(w.f.m, &st);
	MFIX_CHECK((st.leg[leg].state) == (LEG_FAILED));
	MFIX_CHECK((st.leg[1 - leg].state) == (LEG_IN_SYNC));
	check_recorded_failed(&w, leg);
	check_all(&w, "after the disk vanished");
	mfix_abandon(&w.f); /* and then the process is killed, too */
	mfix_open_ok(&w.f);
	MFIX_CHECK((mirror_rebuilding_leg(w.f.m)) == (leg));
	check_all(&w, "reassembled, before resync");
	struct resync_result res;
	resync_ok(&w, &res);
	MFIX_CHECK((mfix_close(&w.f)) == (0));
	check_images(&w, "after resync");
	world_destroy(&w);
}

Test(mirror_failures, leg0_vanishes_mid_workload) { vanish_mid_workload(0); }
Test(mirror_failures, leg1_vanishes_mid_workload) { vanish_mid_workload(1); }

/* --- both legs failed ----------------------------------------------------------- */

Test(mirror_failures, both_legs_failed_gives_eio)
{
	struct world w;
	world_init(&w, NULL);
	populate(&w, 64);
	fault_disk_vanish(w.f.fault[0]);
	wwrite(&w, 100, 2); /* on leg 1 alone */
	MFIX_CHECK((bdev_flush(w.f.dev)) == (0));
	fault_disk_vanish(w.f.fault[1]);
	MFIX_CHECK((mfix_write(&w.f, 200, 1, 999999, false)) == (-EIO));
	uint64_t s;
	MFIX_CHECK((mfix_read_seq(&w.f, 100, &s)) == (-EIO));
	MFIX_CHECK((mfix_read_seq(&w.f, 5, &s)) == (-EIO));
	MFIX_CHECK((bdev_flush(w.f.dev)) == (-EIO));
	struct mirror_status st;
	mirror_get_status(w.f.m, &st);
	MFIX_CHECK((st.leg[0].state) == (LEG_FAILED));
	MFIX_CHECK((st.leg[1].state) == (LEG_FAILED));
	MFIX_CHECK((st.authoritative) == (-1));
	MFIX_CHECKM((mfix_close(&w.f)) != (0), "close with no disk left reported success");
	/* both disks come back: leg 1 (the last one standing) has everything
	 * that was acknowledged */
	mfix_open_ok(&w.f);
	mirror_get_status(w.f.m, &st);
	MFIX_CHECK((st.authoritative) == (1));
	struct resync_result res;
	resync_ok(&w, &res);
	check_all(&w, "after both failed and came back");
	uint64_t v;
	MFIX_CHECKM((mfix_read_seq(&w.f, 200, &v)) == (0), "the refused write is there");
	MFIX_CHECK((mfix_close(&w.f)) == (0));
	check_images(&w, "after resync");
	world_destroy(&w);
}

struct bthread {
	struct bdev *dev;
	int id;
	atomic_bool *stop;
	uint64_t ok, eio, other;
};

static void *both_worker(void *arg)
{
	struct bthread *t = arg;
	uint8_t *buf = block_alloc(2 * BDEV_BLOCK_SIZE);
	struct prng r;
	prng_seed(&r, (uint64_t)t->id);
	while (!atomic_load(t->stop)) {
		uint64_t b = prng_below(&r, t->dev->nblocks - 1);
		int rc;
		switch (prng_below(&r, 3)) {
		case 0:
			mfix_fill(buf, b, 1);
			mfix_fill(buf + BDEV_BLOCK_SIZE, b + 1, 1);
			rc = bdev_write(t->dev, b, buf, 2);
			break;
		case 1: rc = bdev_read(t->dev, b, buf, 2); break;
		default: rc = bdev_flush(t->dev); break;
		}
		if (rc == 0)
			t->ok++;
		else if (rc == -EIO)
			t->eio++;
		else
			t->other++;
	}
	free(buf);
	return NULL;
}

Test(mirror_failures, both_legs_fail_under_load)
{
	struct world w;
	world_init(&w, NULL);
	atomic_bool stop = false;
	struct bthread t[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		t[i] = (struct bthread){ .dev = w.f.dev, .id = i, .stop = &stop };
		MFIX_CHECK((pthread_create(&th[i], NULL, both_worker, &t[i])) == (0));
	}
	sleep_ms(30);
	fault_disk_fail_after(w.f.fault[1], 0, -EIO);
	sleep_ms(30);
	fault_disk_vanish(w.f.fault[0]);
	sleep_ms(30);
	atomic_store(&stop, true);
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		MFIX_CHECKM((t[i].other) == (0), "thread %d: errors other than EIO", i);
		MFIX_CHECKM((t[i].eio) > (0), "thread %d never saw EIO with both disks dead", i);
	}
	struct mirror_status st;
	mirror_get_status(w.f.m, &st);
	MFIX_CHECK((st.leg[0].state) == (LEG_FAILED));
	MFIX_CHECK((st.leg[1].state) == (LEG_FAILED));
	mfix_close(&w.f);
	world_destroy(&w);
}

/* --- failures during recovery ------------------------------------------------ */

/* Leg `stale` fails; chunks [0, nch) are rewritten on the survivor alone
 * (old values v1 stay on the stale leg); close; reopen with the disk back.
 * Returns with leg `stale` REBUILDING. */
static void make_stale(struct world *w, int stale, uint64_t nch, uint64_t **old)
{
	uint64_t nb = nch * w->f.chunk_blocks;
	populate(w, nb);
	*old = malloc(nb * sizeof(uint64_t));
	memcpy(*old, w->model, nb * sizeof(uint64_t));
	MFIX_CHECK((mirror_fail_leg(w->f.m, stale, "test")) == (0));
	populate(w, nb); /* new values everywhere in those chunks */
	MFIX_CHECK((mfix_close(&w->f)) == (0));
	mfix_open_ok(&w->f);
	MFIX_CHECK((mirror_rebuilding_leg(w->f.m)) == (stale));
	MFIX_CHECK((mirror_stale_chunks(w->f.m)) == (nch));
}

Test(mirror_failures, resync_target_fails)
{
	struct world w;
	world_init(&w, NULL);
	uint64_t *old;
	make_stale(&w, 1, 30, &old);
	free(old);
	fault_disk_fail_after(w.f.fault[1], 12, -EIO);
	struct resync_result res;
	struct cat_error err;
	int rc = recovery_resync(w.f.m, NULL, NULL, &res, &err);
	MFIX_CHECKM((rc) == (0), "target failure must not fail the resync: %d (%s)", rc, err.msg);
	MFIX_CHECKM(res.degraded, "resync did not report the array degraded");
	struct mirror_status st;
	mirror_get_status(w.f.m, &st);
	MFIX_CHECK((st.leg[1].state) == (LEG_FAILED));
	MFIX_CHECK((st.leg[0].state) == (LEG_IN_SYNC));
	MFIX_CHECK((mirror_rebuilding_leg(w.f.m)) == (-1));
	check_recorded_failed(&w, 1);
	check_all(&w, "after the target failed");
	wwrite(&w, 5, 3);
	check_all(&w, "writes after the target failed");
	MFIX_CHECK((mfix_close(&w.f)) == (0));
	/* and a later resync with the disk healthy completes it */
	mfix_open_ok(&w.f);
	MFIX_CHECK((mirror_rebuilding_leg(w.f.m)) == (1));
	resync_ok(&w, &res);
	MFIX_CHECK((mfix_close(&w.f)) == (0));
	check_images(&w, "after the second resync");
	world_destroy(&w);
}

Test(mirror_failures, resync_source_fails_stale_chunks_answer_eio)
{
	struct world w;
	world_init(&w, NULL);
	uint64_t *old;
	const uint64_t nch = 30;
	make_stale(&w, 1, nch, &old);
	/* the stale leg really holds the old values */
	for (uint64_t b = 0; b < nch * w.f.chunk_blocks; b++) {
		uint64_t s = 0;
		MFIX_CHECK((mfix_mem_seq(&w.f, 1, b, &s)) == (1));
		MFIX_CHECK((s) == (old[b]));
		MFIX_CHECK((s) != (w.model[b]));
	}
	fault_disk_fail_after(w.f.fault[0], 10, -EIO);
	struct resync_result res;
	struct cat_error err;
	int rc = recovery_resync(w.f.m, NULL, NULL, &res, &err);
	MFIX_CHECKM((rc) == (-EIO), "source failure: resync returned %d (%s)", rc, err.msg);
	struct mirror_status st;
	mirror_get_status(w.f.m, &st);
	MFIX_CHECK((st.leg[0].state) == (LEG_FAILED));
	uint64_t left = mirror_stale_chunks(w.f.m);
	MFIX_CHECKM(left > 0 && left < nch, "stale chunks left: %llu (want some copied, some not)",
		  (unsigned long long)left);
	uint64_t eio_chunks = 0;
	for (uint64_t c = 0; c < nch; c++) {
		bool stale_c = false;
		for (int64_t n = mirror_next_stale_chunk(w.f.m, 0); n >= 0;
		     n = mirror_next_stale_chunk(w.f.m, (uint64_t)n + 1))
			stale_c |= (uint64_t)n == c;
		int eio = 0;
		for (uint64_t b = c * w.f.chunk_blocks; b < (c + 1) * w.f.chunk_blocks; b++) {
			uint64_t s = 0;
			rc = mfix_read_seq(&w.f, b, &s);
			MFIX_CHECKM(rc != 1 || s != old[b],
				  "block %llu of stale chunk returned STALE data (seq %llu)",
				  (unsigned long long)b, (unsigned long long)s);
			if (stale_c) {
				MFIX_CHECKM((rc) == (-EIO), "block %llu of a stale chunk: read gave %d",
					     (unsigned long long)b, rc);
				eio++;
			} else {
				MFIX_CHECKM((rc) == (1), "block %llu of a copied chunk: read gave %d",
					     (unsigned long long)b, rc);
				MFIX_CHECK((s) == (w.model[b]));
			}
		}
		eio_chunks += eio > 0;
	}
	MFIX_CHECK((eio_chunks) == (left));
	/* chunks never written read fine from the remaining leg */
	uint64_t s;
	MFIX_CHECK((mfix_read_seq(&w.f, w.f.data_blocks - 1, &s)) == (0));
	free(old);
	mfix_close(&w.f);
	world_destroy(&w);
}

/* --- a stale disk comes back --------------------------------------------------- */

static void stale_disk_returns(int failed)
{
	int good = 1 - failed;
	struct world w;
	world_init(&w, NULL);
	populate(&w, 200);
	MFIX_CHECK((bdev_flush(w.f.dev)) == (0));
	fault_disk_vanish(w.f.fault[failed]); /* pulled */
	for (uint64_t b = 0; b < 100; b += 3)
		wwrite(&w, b, 2);       /* overwrite old data, degraded */
	wwrite(&w, 300, 20);            /* and new data in other chunks */
	MFIX_CHECK((bdev_flush(w.f.dev)) == (0));
	struct mirror_status st;
	mirror_get_status(w.f.m, &st);
	MFIX_CHECK((st.leg[failed].state) == (LEG_FAILED));
	mfix_abandon(&w.f); /* killed */
	/* the failed disk really is stale */
	uint64_t s;
	MFIX_CHECK(mfix_mem_seq(&w.f, failed, 300, &s) == 0);

	/* both disks present again, no faults */
	mfix_open_ok(&w.f);
	mirror_get_status(w.f.m, &st);
	MFIX_CHECKM((st.authoritative) == (good), "disk %d (stale) chosen as authoritative", failed + 1);
	MFIX_CHECK((mirror_rebuilding_leg(w.f.m)) == (failed));
	MFIX_CHECK((st.leg[good].state) == (LEG_IN_SYNC));
	MFIX_CHECK((mirror_stale_chunks(w.f.m)) > (0));
	check_all(&w, "reassembled (reads must come from the good disk)");
	struct resync_result res;
	resync_ok(&w, &res);
	MFIX_CHECK((res.blocks_copied) > (0));
	check_all(&w, "after resync");
	uint64_t first;
	int64_t d = mfix_compare_legs(&w.f, &first);
	MFIX_CHECKM((d) == (0), "legs differ after resync (first %llu)", (unsigned long long)first);
	MFIX_CHECK((mfix_close(&w.f)) == (0));
	check_images(&w, "after close");
	mfix_open_ok(&w.f);
	MFIX_CHECK((mirror_stale_chunks(w.f.m)) == (0));
	MFIX_CHECK((mfix_close(&w.f)) == (0));
	world_destroy(&w);
}

Test(mirror_failures, stale_leg0_returns_leg1_authoritative) { stale_disk_returns(0); }
Test(mirror_failures, stale_leg1_returns_leg0_authoritative) { stale_disk_returns(1); }

/* --- replace ------------------------------------------------------------------------ */

Test(mirror_failures, replace_leg_rebuilds_everything)
{
	for (int leg = 0; leg < 2; leg++) {
		struct world w;
		world_init(&w, NULL);
		populate(&w, w.f.data_blocks);
		struct bdev *fresh = mem_disk_create(w.f.mem[leg]->nblocks, w.f.name[leg]);
		struct bdev *wrap = fault_disk_create(fresh);
		struct cat_error err;
		/* too small is refused */
		struct bdev *tiny = mem_disk_create(600, "tiny");
		MFIX_CHECK((mirror_replace_leg(w.f.m, leg, tiny, &err)) < (0));
		bdev_close(tiny);
		MFIX_CHECKM((mirror_replace_leg(w.f.m, leg, wrap, &err)) == (0), "%s", err.msg);
		bdev_close(w.f.mem[leg]); /* the old disk is gone */
		w.f.mem[leg] = fresh;
		w.f.fault[leg] = wrap;
		MFIX_CHECK((mirror_rebuilding_leg(w.f.m)) == (leg));
		MFIX_CHECK((mirror_stale_chunks(w.f.m)) == (w.f.nchunks));
		struct msb sb;
		MFIX_CHECKM((mfix_msb(&w.f, leg, &sb)) == (0), "the new disk has no superblock");
		MFIX_CHECK((memcmp(sb.uuid, w.f.sb.uuid, 16)) == (0));
		MFIX_CHECK((sb.disk_index) == ((uint32_t)leg));
		check_all(&w, "replaced, before rebuild");
		wwrite(&w, 17, 5); /* writes during the rebuild */
		struct resync_result res;
		resync_ok(&w, &res);
		MFIX_CHECK((res.chunks) == (w.f.nchunks));
		MFIX_CHECK((res.blocks_copied) >= (w.f.data_blocks - 5));
		check_all(&w, "after rebuild");
		MFIX_CHECK((mfix_close(&w.f)) == (0));
		check_images(&w, "after rebuild");
		mfix_open_ok(&w.f);
		MFIX_CHECK((mirror_stale_chunks(w.f.m)) == (0));
		check_all(&w, "reopened");
		MFIX_CHECK((mfix_close(&w.f)) == (0));
		world_destroy(&w);
	}
}

Test(mirror_failures, replace_killed_mid_rebuild_restarts_fully)
{
	struct world w;
	world_init(&w, NULL);
	populate(&w, w.f.data_blocks);
	struct bdev *fresh = mem_disk_create(w.f.mem[1]->nblocks, w.f.name[1]);
	struct cat_error err;
	MFIX_CHECKM((mirror_replace_leg(w.f.m, 1, fault_disk_create(fresh), &err)) == (0), "%s", err.msg);
	bdev_close(w.f.mem[1]);
	w.f.mem[1] = fresh;
	for (uint64_t c = 0; c < w.f.nchunks / 2; c++)
		MFIX_CHECK((mirror_resync_chunk(w.f.m, c, NULL)) == (0));
	mfix_abandon(&w.f); /* killed half-way */
	mfix_open_ok(&w.f);
	struct mirror_status st;
	mirror_get_status(w.f.m, &st);
	MFIX_CHECKM((st.authoritative) == (0), "a half-rebuilt disk became authoritative");
	MFIX_CHECK((mirror_rebuilding_leg(w.f.m)) == (1));
	MFIX_CHECKM((mirror_stale_chunks(w.f.m)) == (w.f.nchunks),
		     "a disk that was being rebuilt must be rebuilt fully");
	check_all(&w, "reassembled mid-rebuild");
	struct resync_result res;
	resync_ok(&w, &res);
	MFIX_CHECK((mfix_close(&w.f)) == (0));
	check_images(&w, "after rebuild");
	world_destroy(&w);
}

/* --- damaged bitmap ------------------------------------------------------------------ */

Test(mirror_failures, damaged_bitmap_means_full_resync)
{
	struct world w;
	world_init(&w, NULL);
	populate(&w, 64);
	mfix_abandon(&w.f); /* unclean */
	/* damage leg 0's bitmap block */
	uint8_t *p = mem_disk_block(w.f.mem[0], w.f.sb.bitmap_offset);
	p[100] ^= 0xFF; /* checksum now wrong: every chunk counts as dirty */
	mfix_open_ok(&w.f);
	MFIX_CHECKM((mirror_stale_chunks(w.f.m)) == (w.f.nchunks), "damaged bitmap trusted");
	struct resync_result res;
	resync_ok(&w, &res);
	check_all(&w, "after full resync");
	MFIX_CHECK((mfix_close(&w.f)) == (0));
	check_images(&w, "after resync");
	world_destroy(&w);
}

/* --- split brain ----------------------------------------------------------------------- */

Test(mirror_failures, split_brain_full_resync_from_higher_events)
{
	struct world w;
	world_init(&w, NULL);
	populate(&w, 64);
	fault_disk_vanish(w.f.fault[1]);
	wwrite(&w, 10, 4); /* leg 0 alone */
	MFIX_CHECK((mfix_close(&w.f)) == (0));

	/* later, leg 1 is started alone (leg 0 "missing") and written to */
	struct bdev *legs[2] = { NULL, fault_disk_create(w.f.mem[1]) };
	struct mirror_opts o = { .allow_degraded = true, .no_cleaner = true };
	struct mirror *m;
	struct cat_error err;
	MFIX_CHECKM((mirror_open(legs, &o, &m, &err)) == (0), "degraded start of leg 1: %s", err.msg);
	uint8_t *buf = block_alloc(BDEV_BLOCK_SIZE);
	for (uint64_t b = 8; b < 40; b++) {
		mfix_fill(buf, b, 1000 + b);
		MFIX_CHECK((bdev_write(mirror_bdev(m), b, buf, 1)) == (0));
	}
	free(buf);
	MFIX_CHECK((mirror_close(m)) == (0));

	struct msb s0, s1;
	MFIX_CHECK((mfix_msb(&w.f, 0, &s0)) == (0));
	MFIX_CHECK((mfix_msb(&w.f, 1, &s1)) == (0));
	MFIX_CHECK((s0.member_state[1]) != (MEMBER_IN_SYNC));
	MFIX_CHECK((s1.member_state[0]) != (MEMBER_IN_SYNC));
	int winner = s1.events > s0.events ? 1 : 0;
	struct mfix_image img;
	mfix_save(&w.f, winner, &img);

	mfix_open_ok(&w.f);
	struct mirror_status st;
	mirror_get_status(w.f.m, &st);
	MFIX_CHECK((st.authoritative) == (winner));
	MFIX_CHECKM((mirror_stale_chunks(w.f.m)) == (w.f.nchunks), "split brain must resync everything");
	struct resync_result res;
	resync_ok(&w, &res);
	MFIX_CHECK((mfix_close(&w.f)) == (0));
	uint64_t first;
	MFIX_CHECKM((mfix_compare_mem(&w.f, &first)) == (0), "legs differ at %llu", (unsigned long long)first);
	for (uint64_t b = 0; b < w.f.data_blocks; b++)
		MFIX_CHECKM((memcmp(mfix_mem_data(&w.f, 0, b),
				    img.data + (w.f.data_offset + b) * BDEV_BLOCK_SIZE, BDEV_BLOCK_SIZE)) == (0), "block %llu is not the winner's", (unsigned long long)b);
	mfix_image_free(&img);
	world_destroy(&w);
}

/* --- failure handling that itself fails ------------------------------------------ */

/* Leg `bad` fails every operation; the other leg takes data and flushes
 * but cannot record the failure (its superblock slots refuse writes). */
static void break_both_but_data(struct world *w, int bad)
{
	fault_disk_fail_after(w->f.fault[bad], 0, -EIO);
	MFIX_CHECK((fault_disk_fail_write(w->f.fault[1 - bad], 0, -EIO, true)) == (0));
	MFIX_CHECK((fault_disk_fail_write(w->f.fault[1 - bad], 1, -EIO, true)) == (0));
}

static void flush_unrecorded(int bad)
{
	/* A flush where disk 1 fails and disk 2 flushes fine, but writing
	 * disk 2's superblock (which must record disk 1 as failed) fails: no
	 * disk is left, and nothing on disk says disk 2 is the one to trust -
	 * after a restart disk 1 (which missed the flush) may well be chosen.
	 * The flush must not be acknowledged. (Found by test_mirror_powerloss:
	 * a power cut at that moment lost a flushed write.) */
	struct world w;
	world_init(&w, NULL);
	populate(&w, 32);
	break_both_but_data(&w, bad);
	int rc = bdev_flush(w.f.dev);
	struct mirror_status st;
	mirror_get_status(w.f.m, &st);
	MFIX_CHECK((st.leg[0].state) == (LEG_FAILED));
	MFIX_CHECK((st.leg[1].state) == (LEG_FAILED));
	MFIX_CHECKM((rc) == (-EIO), "disk %d failing: flush acknowledged (%d) although both disks "
		     "failed and the degraded state was never recorded", bad + 1, rc);
	mfix_close(&w.f);
	world_destroy(&w);
}

Test(mirror_failures, flush_fails_when_the_degraded_state_cannot_be_recorded_leg0) { flush_unrecorded(0); }
Test(mirror_failures, flush_fails_when_the_degraded_state_cannot_be_recorded_leg1) { flush_unrecorded(1); }

static void write_unrecorded(int bad)
{
	/* Same for a write (to an already dirty chunk, so no bitmap update
	 * comes first): disk 1 fails it, disk 2 takes it, but disk 2 cannot
	 * record disk 1's failure and is failed too. No disk is in service:
	 * the write must not be acknowledged ("a degraded write is never
	 * acknowledged before the array knows it is degraded"). */
	struct world w;
	world_init(&w, NULL);
	populate(&w, 32);
	break_both_but_data(&w, bad);
	int rc = mfix_write(&w.f, 3, 1, 777, false);
	struct mirror_status st;
	mirror_get_status(w.f.m, &st);
	MFIX_CHECK((st.leg[0].state) == (LEG_FAILED));
	MFIX_CHECK((st.leg[1].state) == (LEG_FAILED));
	MFIX_CHECKM((rc) == (-EIO), "disk %d failing: write acknowledged (%d) with both disks failed",
		     bad + 1, rc);
	mfix_close(&w.f);
	world_destroy(&w);
}

Test(mirror_failures, write_fails_when_the_degraded_state_cannot_be_recorded_leg0) { write_unrecorded(0); }
Test(mirror_failures, write_fails_when_the_degraded_state_cannot_be_recorded_leg1) { write_unrecorded(1); }

/* --- more ways back to two disks ----------------------------------------------------- */

Test(mirror_failures, replace_a_failed_leg)
{
	for (int leg = 0; leg < 2; leg++) {
		struct world w;
		world_init(&w, NULL);
		populate(&w, 300);
		fault_disk_vanish(w.f.fault[leg]);
		wwrite(&w, 50, 10); /* degraded */
		struct cat_error err;
		/* the survivor cannot be replaced: nothing to rebuild from */
		struct bdev *other = mem_disk_create(w.f.mem[0]->nblocks, "other");
		MFIX_CHECKM((mirror_replace_leg(w.f.m, 1 - leg, other, &err)) == (-EBUSY), "%s", err.msg);
		bdev_close(other);
		struct bdev *fresh = mem_disk_create(w.f.mem[leg]->nblocks, w.f.name[leg]);
		struct bdev *wrap = fault_disk_create(fresh);
		MFIX_CHECKM((mirror_replace_leg(w.f.m, leg, wrap, &err)) == (0), "%s", err.msg);
		bdev_close(w.f.mem[leg]);
		w.f.mem[leg] = fresh;
		w.f.fault[leg] = wrap;
		struct mirror_status st;
		mirror_get_status(w.f.m, &st);
		MFIX_CHECK((st.leg[leg].state) == (LEG_REBUILDING));
		MFIX_CHECK((st.authoritative) == (1 - leg));
		MFIX_CHECK((mirror_stale_chunks(w.f.m)) == (w.f.nchunks));
		struct resync_result res;
		resync_ok(&w, &res);
		check_all(&w, "after rebuilding the replaced failed disk");
		MFIX_CHECK((mfix_close(&w.f)) == (0));
		check_images(&w, "after rebuild");
		world_destroy(&w);
	}
}

Test(mirror_failures, degraded_start_then_readd)
{
	struct world w;
	world_init(&w, NULL);
	populate(&w, 200);
	MFIX_CHECK((mfix_close(&w.f)) == (0)); /* clean: bitmap empty */
	/* start on disk 1 alone */
	struct bdev *legs[2] = { fault_disk_create(w.f.mem[0]), NULL };
	struct mirror_opts o = { .allow_degraded = true, .no_cleaner = true };
	struct cat_error err;
	struct mirror *m;
	struct mirror_opts strict = { .no_cleaner = true };
	struct bdev *legs2[2] = { fault_disk_create(w.f.mem[0]), NULL };
	MFIX_CHECKM((mirror_open(legs2, &strict, &m, &err)) == (-ENODEV), "a missing disk needs allow_degraded");
	MFIX_CHECKM((mirror_open(legs, &o, &m, &err)) == (0), "%s", err.msg);
	struct mirror_status st;
	mirror_get_status(m, &st);
	MFIX_CHECK((st.leg[1].state) == (LEG_MISSING));
	MFIX_CHECK((st.authoritative) == (0));
	w.f.m = m;
	w.f.dev = mirror_bdev(m);
	wwrite(&w, 5 * w.f.chunk_blocks, 3);  /* chunk 5 */
	wwrite(&w, 9 * w.f.chunk_blocks + 15, 2); /* chunks 9 and 10 */
	check_all(&w, "degraded start");
	MFIX_CHECK((mirror_close(m)) == (0));
	w.f.m = NULL;
	w.f.dev = NULL;
	struct msb sb;
	MFIX_CHECK((mfix_msb(&w.f, 0, &sb)) == (0));
	MFIX_CHECKM((sb.member_state[1]) != (MEMBER_IN_SYNC), "the missing disk is not recorded as out of date");
	/* disk 2 is back */
	mfix_open_ok(&w.f);
	MFIX_CHECK((mirror_rebuilding_leg(w.f.m)) == (1));
	MFIX_CHECKM((mirror_stale_chunks(w.f.m)) == (3), "only the 3 chunks written while degraded are stale (%llu)",
		     (unsigned long long)mirror_stale_chunks(w.f.m));
	check_all(&w, "re-added, before resync");
	struct resync_result res;
	resync_ok(&w, &res);
	MFIX_CHECK((mfix_close(&w.f)) == (0));
	check_images(&w, "after re-add");
	world_destroy(&w);
}

Test(mirror_failures, readonly_open_of_a_stale_pair_reads_the_good_disk)
{
	struct world w;
	world_init(&w, NULL);
	uint64_t *old;
	make_stale(&w, 0, 10, &old); /* leg 0 stale, leg 1 authoritative */
	free(old);
	mfix_abandon(&w.f);
	struct mfix_image img[2];
	mfix_save(&w.f, 0, &img[0]);
	mfix_save(&w.f, 1, &img[1]);
	w.f.cfg.mopts.readonly = true;
	mfix_open_ok(&w.f);
	check_all(&w, "read-only open of a stale pair");
	mfix_close(&w.f);
	for (int leg = 0; leg < 2; leg++)
		for (uint64_t b = 0; b < img[leg].nblocks; b++)
			MFIX_CHECKM((memcmp(mem_disk_block(w.f.mem[leg], b), img[leg].data + b * BDEV_BLOCK_SIZE,
					    BDEV_BLOCK_SIZE)) == (0), "read-only open wrote leg %d block %llu", leg,
				     (unsigned long long)b);
	mfix_image_free(&img[0]);
	mfix_image_free(&img[1]);
	world_destroy(&w);
}

Test(mirror_failures, resync_interrupted_by_close_resumes)
{
	struct world w;
	world_init(&w, NULL);
	uint64_t *old;
	make_stale(&w, 1, 20, &old);
	free(old);
	for (uint64_t c = 0; c < 8; c++)
		MFIX_CHECK((mirror_resync_chunk(w.f.m, c, NULL)) == (0));
	MFIX_CHECK((mirror_stale_chunks(w.f.m)) == (12));
	wwrite(&w, 3, 4); /* writes meanwhile */
	MFIX_CHECK((mfix_close(&w.f)) == (0));
	mfix_open_ok(&w.f);
	MFIX_CHECK((mirror_rebuilding_leg(w.f.m)) == (1));
	MFIX_CHECKM((mirror_stale_chunks(w.f.m)) >= (12), "chunks not yet copied were forgotten");
	check_all(&w, "reopened mid-resync");
	struct resync_result res;
	resync_ok(&w, &res);
	MFIX_CHECK((mfix_close(&w.f)) == (0));
	check_images(&w, "after the resumed resync");
	world_destroy(&w);
}

Test(mirror_failures, flush_acknowledged_only_if_the_data_stays_readable)
{
	/* Leg 1 is being resynced (chunks 0-9 stale). A write to a stale
	 * chunk is acknowledged (the authoritative leg 0 has it); then leg 0
	 * fails the flush. Leg 1 flushed fine, but it cannot serve that chunk
	 * (not yet copied): if the flush is acknowledged anyway, the flushed
	 * data must at least be readable - otherwise the flush must fail. */
	struct world w;
	world_init(&w, NULL);
	uint64_t *old;
	make_stale(&w, 1, 10, &old);
	free(old);
	uint64_t b = 2 * w.f.chunk_blocks + 5;
	wwrite(&w, b, 1);
	fault_disk_fail_after(w.f.fault[0], 0, -EIO);
	int rc = bdev_flush(w.f.dev);
	uint64_t s = 0;
	int rr = mfix_read_seq(&w.f, b, &s);
	struct mirror_status st;
	mirror_get_status(w.f.m, &st);
	MFIX_CHECKM(st.leg[0].state == LEG_FAILED, "leg 0 state %d", st.leg[0].state);
	MFIX_CHECKM(rc != 0 || (rr == 1 && s == w.model[b]),
		    "flush returned 0, but the flushed block %llu then reads %d (seq %llu): the only "
		    "disk that holds its chunk failed during the flush", (unsigned long long)b, rr,
		    (unsigned long long)s);
	mfix_close(&w.f);
	world_destroy(&w);
}

/* --- ordering: a rebuilt disk is declared in sync only after its data is durable --- */

/* A pass-through bdev that watches one member disk: data writes since the
 * last completed flush, and the member's own state in each superblock
 * written to it. A superblock that turns the disk from "rebuilding" into
 * "in sync" while copied data is still unflushed is a violation: a power
 * cut then can keep the superblock and lose the data. */
struct order_disk {
	struct bdev b;
	struct bdev *inner;
	pthread_mutex_t lock;
	uint64_t data_offset;
	uint64_t unflushed;
	int self_state; /* -1: no superblock seen */
	bool violation;
	uint64_t violation_unflushed;
};

static int order_readv(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt)
{
	return bdev_readv(((struct order_disk *)d)->inner, blkno, iov, iovcnt);
}

static int order_writev(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt)
{
	struct order_disk *o = (struct order_disk *)d;
	uint64_t n = 0;
	for (int i = 0; i < iovcnt; i++)
		n += iov[i].iov_len / BDEV_BLOCK_SIZE;
	pthread_mutex_lock(&o->lock);
	if (blkno < MSB_SLOTS) {
		struct msb sb;
		if (msb_decode(iov[0].iov_base, &sb) == 0) {
			int self = sb.member_state[sb.disk_index & 1];
			if (self == MEMBER_IN_SYNC && o->self_state == MEMBER_REBUILDING && o->unflushed) {
				o->violation = true;
				o->violation_unflushed = o->unflushed;
			}
			o->self_state = self;
		}
	} else if (blkno >= o->data_offset) {
		o->unflushed += n;
	}
	pthread_mutex_unlock(&o->lock);
	return bdev_writev(o->inner, blkno, iov, iovcnt);
}

static int order_flush(struct bdev *d)
{
	struct order_disk *o = (struct order_disk *)d;
	pthread_mutex_lock(&o->lock);
	uint64_t before = o->unflushed;
	pthread_mutex_unlock(&o->lock);
	int rc = bdev_flush(o->inner);
	if (rc == 0) {
		pthread_mutex_lock(&o->lock);
		o->unflushed -= before; /* writes that completed before the flush began */
		pthread_mutex_unlock(&o->lock);
	}
	return rc;
}

static void order_close(struct bdev *d)
{
	(void)d; /* the test owns it and reads the verdict after the mirror is gone */
}

static const struct bdev_ops order_ops = {
	.readv = order_readv, .writev = order_writev, .flush = order_flush, .close = order_close,
};

Test(mirror_failures, rebuilt_disk_declared_in_sync_only_after_its_data_is_flushed)
{
	struct world w;
	world_init(&w, NULL);
	populate(&w, w.f.data_blocks);
	struct bdev *fresh = mem_disk_create(w.f.mem[1]->nblocks, w.f.name[1]);
	struct order_disk *o = calloc(1, sizeof(*o));
	o->b.ops = &order_ops;
	o->b.nblocks = fresh->nblocks;
	snprintf(o->b.name, sizeof(o->b.name), "%s", fresh->name);
	o->inner = fresh;
	o->data_offset = w.f.data_offset;
	o->self_state = -1;
	pthread_mutex_init(&o->lock, NULL);
	struct cat_error err;
	MFIX_CHECKM(mirror_replace_leg(w.f.m, 1, &o->b, &err) == 0, "%s", err.msg);
	bdev_close(w.f.mem[1]);
	w.f.mem[1] = fresh;
	MFIX_CHECKM(o->self_state == MEMBER_REBUILDING, "new disk's superblock state %d", o->self_state);
	struct resync_result res;
	resync_ok(&w, &res);
	MFIX_CHECK(o->self_state == MEMBER_IN_SYNC);
	MFIX_CHECKM(!o->violation,
		    "the rebuilt disk's superblock said IN_SYNC while %llu copied blocks were not yet "
		    "flushed: a power cut at that moment keeps the superblock, loses data, and the next "
		    "start sees two in-sync disks (only bitmap chunks resynced: holes stay). Flush the "
		    "target before the superblock update in mirror_resync_finish.",
		    (unsigned long long)o->violation_unflushed);
	check_all(&w, "after rebuild");
	MFIX_CHECK(mfix_close(&w.f) == 0);
	check_images(&w, "after rebuild");
	pthread_mutex_destroy(&o->lock);
	free(o);
	world_destroy(&w);
}
