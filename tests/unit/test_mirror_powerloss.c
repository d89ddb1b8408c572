/*
 * test_mirror_powerloss.c - power cuts enumerated over many crash points.
 *
 * Each leg is mem disk <- crash disk <- fault disk; both crash disks share
 * one crash_clock (they lose power at the same instant) but have their own
 * seeds, so each loses a different random subset of its unflushed blocks.
 * A workload of random writes (1-4 blocks, sometimes split over two
 * iovecs), reads, flushes and bitmap cleaning runs on 1 to 3 threads until
 * the clock, armed at a random operation count (also inside mirror_open),
 * cuts the power. Then, like a restarted daemon: mirror_abandon, a new
 * mirror on the two backing mem disks (the post-crash images),
 * recovery_resync, and the checks:
 *   - resync succeeds, nothing stale, both legs in sync and byte-identical
 *     over the data area;
 *   - every block holds a whole value that was written to it (or zeros);
 *   - durability: a block holds no value that was already overwritten
 *     before the last completed flush (of that power-on period) began, so
 *     every write acknowledged before a completed flush is present, or a
 *     later one; unflushed writes may be lost at each power cut;
 *   - reads during the workload never returned garbage or a value already
 *     overwritten before the read began, and before the power cut every
 *     request succeeded (also while a leg was failing).
 *
 * Variants: single thread; three threads; a leg failing (EIO on every
 * operation, or vanishing) at a random point before the crash; the
 * recovery itself crashed at a random point and then run again; a second
 * phase where recovery_resync runs beside the workload (as in a daemon
 * that serves while it resyncs) and the power is cut again, also after a
 * leg failure in the first phase, and after replacing a disk by a blank
 * one (the full rebuild crashed).
 *
 * Crash points: CATAMARAN_CRASH_POINTS (default 1400) spread over the
 * variants; CATAMARAN_CRASH_SEED changes the base seed. A failure message
 * names the variant, point and seed; CATAMARAN_CRASH_ONLY=<point> reruns
 * just that point (same CATAMARAN_CRASH_POINTS and _SEED) for debugging.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blockdev/mirror/mirror.h"
#include "blockdev/testdev/crash_disk.h"
#include "blockdev/testdev/fault_disk.h"
#include "blockdev/testdev/mem_disk.h"
#include "core/base/util.h"
#include "recovery/recovery.h"
#include "tests/unit/helpers/mirror_fixture.h"

#define DISK_BLOCKS 640u /* 2.5 MiB per leg */
#define CHUNK 16u
#define HOT_BLOCKS 48u   /* most writes land in the first 3 chunks */
#define MAX_THREADS 4
#define MAX_N 4

enum fail_mode { FAIL_NONE, FAIL_EIO, FAIL_VANISH };

struct variant {
	const char *name;
	int threads;
	int ops;              /* per thread */
	bool cleaner;         /* thread 0 sometimes waits 1 ms and runs mirror_clean */
	bool leg_failure;     /* a leg fails at a random point */
	bool crash_recovery;  /* the first recovery is crashed too */
	unsigned share;       /* of the crash points */
	bool resync_under_load; /* second phase: resync beside the workload, crashed */
	bool replace;           /* ... after replacing a disk by a blank one */
};

/* Epoch: which power-on period an operation ran in (0: the first
 * workload, 1: the resync-under-load phase). */
#define MAX_EPOCHS 2

struct wrec {
	int epoch;
	uint64_t blk, seq, start, end;
	uint32_t n;
	int rc;
};

struct rrec {
	int epoch;
	uint64_t blk, start, end;
	uint64_t got[MAX_N];
	int8_t verdict[MAX_N];
	uint32_t n;
};

struct frec {
	int epoch;
	uint64_t start, end;
	int rc;
};

struct run;

struct pthr {
	struct run *run;
	int id;
	struct prng r;
	struct wrec *w;
	size_t nw;
	struct rrec *rd;
	size_t nr;
	struct frec *fl;
	size_t nf;
	char err[256]; /* first problem seen on this thread */
};

struct run {
	const struct variant *v;
	int fail_leg, fail_at_op; /* thread 0 makes the leg fail at that op */
	enum fail_mode fail_mode;
	long long fail_after;
	bool fail_triggered;      /* before the power cut */
	int epoch;
	uint64_t flushcut[MAX_EPOCHS]; /* latest start of a completed flush */
	int replaced;             /* leg replaced in phase 2, -1: none */
	struct mfix *f;
	atomic_uint_fast64_t ticks;
	atomic_uint_fast64_t seqctr;
	struct wrec **by_seq; /* seq -> record */
	size_t seq_cap;
	struct pthr th[MAX_THREADS];
};

/* What the crash points covered (reported per variant). */
static struct {
	unsigned open_crashed, failed_before_crash, recovery_crashed, replace_refused;
	uint64_t durable_checked, copied, stale_chunks, acked_writes;
} stats;

static uint64_t tick(struct run *r) { return atomic_fetch_add(&r->ticks, 1) + 1; }

static void thr_fail(struct pthr *t, const char *fmt, ...)
{
	if (t->err[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->err, sizeof(t->err), fmt, ap);
	va_end(ap);
}

static bool crashed(struct run *r) { return atomic_load(&r->f->clock.crashed); }

static void *workload(void *arg)
{
	struct pthr *t = arg;
	struct run *run = t->run;
	struct mfix *f = run->f;
	uint8_t *buf = block_alloc(MAX_N * BDEV_BLOCK_SIZE);
	for (int i = 0; i < run->v->ops && !crashed(run); i++) {
		if (t->id == 0 && run->fail_leg >= 0 && i == run->fail_at_op) {
			if (run->fail_mode == FAIL_VANISH)
				fault_disk_vanish(f->fault[run->fail_leg]);
			else
				fault_disk_fail_after(f->fault[run->fail_leg], run->fail_after, -EIO);
			run->fail_triggered = !crashed(run);
		}
		unsigned x = (unsigned)prng_below(&t->r, 100);
		if (x < 62) {
			uint32_t n = 1 + (uint32_t)prng_below(&t->r, MAX_N);
			uint64_t span = prng_below(&t->r, 10) < 7 ? HOT_BLOCKS : f->data_blocks;
			uint64_t blk = prng_below(&t->r, span - n + 1);
			uint64_t seq = atomic_fetch_add(&run->seqctr, 1) + 1;
			struct wrec *w = &t->w[t->nw++];
			*w = (struct wrec){ .epoch = run->epoch, .blk = blk, .seq = seq, .n = n };
			run->by_seq[seq] = w;
			for (uint32_t k = 0; k < n; k++)
				mfix_fill(buf + k * BDEV_BLOCK_SIZE, blk + k, seq);
			uint32_t split = n > 1 && prng_below(&t->r, 2) ? 1 + (uint32_t)prng_below(&t->r, n - 1) : n;
			struct iovec iov[2] = { { buf, split * BDEV_BLOCK_SIZE },
						{ buf + split * BDEV_BLOCK_SIZE, (n - split) * BDEV_BLOCK_SIZE } };
			w->start = tick(run);
			w->rc = bdev_writev(f->dev, blk, iov, split < n ? 2 : 1);
			w->end = tick(run);
			if (w->rc && !crashed(run))
				thr_fail(t, "write of %u blocks at %llu failed with %d before the power cut",
					 n, (unsigned long long)blk, w->rc);
		} else if (x < 78) {
			struct frec *fr = &t->fl[t->nf++];
			fr->epoch = run->epoch;
			fr->start = tick(run);
			fr->rc = bdev_flush(f->dev);
			fr->end = tick(run);
			if (fr->rc && !crashed(run))
				thr_fail(t, "flush failed with %d before the power cut", fr->rc);
		} else if (x < 96 || !run->v->cleaner || t->id != 0) {
			uint32_t n = 1 + (uint32_t)prng_below(&t->r, MAX_N);
			uint64_t span = prng_below(&t->r, 10) < 7 ? HOT_BLOCKS : f->data_blocks;
			uint64_t blk = prng_below(&t->r, span - n + 1);
			struct rrec *rr = &t->rd[t->nr];
			*rr = (struct rrec){ .epoch = run->epoch, .blk = blk, .n = n };
			rr->start = tick(run);
			int rc = bdev_read(f->dev, blk, buf, n);
			rr->end = tick(run);
			if (rc) {
				if (!crashed(run))
					thr_fail(t, "read of %u blocks at %llu failed with %d before the power cut",
						 n, (unsigned long long)blk, rc);
				continue;
			}
			for (uint32_t k = 0; k < n; k++)
				rr->verdict[k] = (int8_t)mfix_check(buf + k * BDEV_BLOCK_SIZE, blk + k, &rr->got[k]);
			t->nr++;
		} else {
			struct timespec ts = { 0, 1100000 };
			nanosleep(&ts, NULL);
			int64_t c = mirror_clean(f->m);
			if (c < 0 && !crashed(run))
				thr_fail(t, "mirror_clean failed with %lld before the power cut", (long long)c);
		}
	}
	free(buf);
	return NULL;
}

/* For an observer at tick `at` in epoch `epoch`: per block, the largest
 * start tick of a completed write to it that ended before `at` and is
 * still there for the observer: from the same epoch, or made durable by a
 * flush completed in its own epoch (a power cut may drop anything else). A
 * value whose write ended before that start is overwritten, as far as the
 * observer may see (0 = no such write). */
static void supersede_marks(struct run *run, uint64_t at, int epoch, uint64_t *mark,
			    uint64_t nblocks)
{
	memset(mark, 0, nblocks * sizeof(uint64_t));
	for (int t = 0; t < run->v->threads; t++)
		for (size_t i = 0; i < run->th[t].nw; i++) {
			const struct wrec *w = &run->th[t].w[i];
			if (w->rc || w->end >= at)
				continue;
			if (w->epoch != epoch && w->end >= run->flushcut[w->epoch])
				continue;
			for (uint32_t k = 0; k < w->n; k++)
				if (w->start > mark[w->blk + k])
					mark[w->blk + k] = w->start;
		}
}

static void compute_flushcuts(struct run *run)
{
	memset(run->flushcut, 0, sizeof(run->flushcut));
	for (int t = 0; t < run->v->threads; t++)
		for (size_t i = 0; i < run->th[t].nf; i++) {
			const struct frec *fr = &run->th[t].fl[i];
			if (fr->rc == 0 && fr->start > run->flushcut[fr->epoch])
				run->flushcut[fr->epoch] = fr->start;
		}
}

/* Is value `seq` (0 = zeros) an acceptable content of block b for an
 * observer after the point whose supersede mark is `mark`? */
static const char *judge(struct run *run, uint64_t b, int verdict, uint64_t seq, uint64_t mark,
			 uint64_t before)
{
	static _Thread_local char why[200];
	if (verdict < 0)
		return "garbage or a torn block (a value never written)";
	if (verdict == 0)
		return mark ? "zeros, but a write to it had completed" : NULL;
	uint64_t total = atomic_load(&run->seqctr);
	if (seq > total || !run->by_seq[seq])
		return "a value never written";
	const struct wrec *w = run->by_seq[seq];
	if (b < w->blk || b >= w->blk + w->n)
		return "a value written to another block";
	if (before && w->start >= before)
		return "a value from a write that had not started yet";
	/* (a write that failed in a power cut ended, at the latest, when it
	 * returned: nothing of it may reappear after a later completed write) */
	if (w->end < mark) {
		snprintf(why, sizeof(why),
			 "value %llu (write ended at tick %llu) although a later write to the block "
			 "(started at %llu) had completed",
			 (unsigned long long)seq, (unsigned long long)w->end, (unsigned long long)mark);
		return why;
	}
	return NULL;
}

/* On a failure: every write touching block b, and every flush (stderr). */
static void dump_history(struct run *run, uint64_t b)
{
	fprintf(stderr, "history of block %llu (flush cuts per epoch: %llu %llu):\n",
		(unsigned long long)b, (unsigned long long)run->flushcut[0],
		(unsigned long long)run->flushcut[1]);
	for (int t = 0; t < run->v->threads; t++) {
		for (size_t i = 0; i < run->th[t].nw; i++) {
			const struct wrec *w = &run->th[t].w[i];
			if (b >= w->blk && b < w->blk + w->n)
				fprintf(stderr, "  thread %d epoch %d write seq %llu blocks %llu+%u ticks [%llu,%llu] rc %d\n",
					t, w->epoch, (unsigned long long)w->seq, (unsigned long long)w->blk, w->n,
					(unsigned long long)w->start, (unsigned long long)w->end, w->rc);
		}
		for (size_t i = 0; i < run->th[t].nf; i++) {
			const struct frec *fr = &run->th[t].fl[i];
			fprintf(stderr, "  thread %d epoch %d flush ticks [%llu,%llu] rc %d\n", t, fr->epoch,
				(unsigned long long)fr->start, (unsigned long long)fr->end, fr->rc);
		}
	}
}

struct point {
	const struct variant *v;
	int index;
	uint64_t seed;
	long long arm;        /* crash after this many crash-disk operations */
	int fail_leg;         /* -1: none */
	enum fail_mode fail_mode;
	int fail_at_op;       /* thread 0's operation index */
	long long fail_after; /* EIO mode: operations that still succeed */
	bool crash_recovery;    /* crash the first recovery ... */
	double recovery_frac;   /* ... this far into it (0..1) */
	long long arm_recovery; /* the operation count that came out of it */
	long long arm2;         /* resync-under-load phase: crash point */
};

#define PT_FMT "%s point %d (seed %#llx, arm %lld, fail leg %d mode %d at op %d after %lld, recovery arm %lld, phase-2 arm %lld)"
#define PT_ARGS(p) (p)->v->name, (p)->index, (unsigned long long)(p)->seed, (p)->arm, (p)->fail_leg, \
		   (int)(p)->fail_mode, (p)->fail_at_op, (p)->fail_after, (p)->arm_recovery, (p)->arm2

static long long ops_counted(struct mfix *f)
{
	long long n = 0;
	for (int i = 0; i < 2; i++)
		if (f->fault[i])
			n += (long long)fault_disk_ops(f->fault[i]);
	return n;
}

/* Open + resync over fresh crash disks on f's mem disks, with the clock
 * armed at p->arm_recovery (0: not armed); the power is cut at the end in
 * any case. Returns the crash-disk operations made. */
static long long crash_recovery(struct mfix *f, const struct point *p)
{
	struct cat_error err;
	f->cfg.crash = true;
	f->cfg.crash_seed[0] = p->seed * 2 + 101;
	f->cfg.crash_seed[1] = p->seed * 2 + 102;
	crash_clock_init(&f->clock);
	mfix_wrap(f);
	if (p->arm_recovery > 0)
		crash_clock_arm(&f->clock, p->arm_recovery);
	struct bdev *legs[2] = { f->fault[0], f->fault[1] };
	struct mirror_opts mo = { .no_cleaner = true };
	long long used = 0;
	if (mirror_open(legs, &mo, &f->m, &err) == 0) {
		f->dev = mirror_bdev(f->m);
		struct resync_result res;
		int rc = recovery_resync(f->m, NULL, NULL, &res, &err);
		if (p->arm_recovery == 0)
			MFIX_CHECKM((rc) == (0), PT_FMT ": uncrashed recovery failed: %d (%s)", PT_ARGS(p), rc,
				     err.msg);
		used = ops_counted(f);
	} else {
		MFIX_CHECKM(p->arm_recovery > 0, PT_FMT ": uncrashed reassembly failed: %s", PT_ARGS(p),
			  err.msg);
		f->m = NULL;
		f->fault[0] = f->fault[1] = NULL;
	}
	crash_disk_crash(f->crash[0]);
	crash_disk_crash(f->crash[1]);
	mfix_abandon(f);
	f->cfg.crash = false;
	return used;
}

/* Operations an uncrashed recovery makes from the current images
 * (measured on them, then the images are put back). */
static long long recovery_ops(struct mfix *f, const struct point *p)
{
	struct mfix_image img[2];
	mfix_save(f, 0, &img[0]);
	mfix_save(f, 1, &img[1]);
	struct point q = *p;
	q.arm_recovery = 0;
	long long n = crash_recovery(f, &q);
	mfix_restore(f, 0, &img[0]);
	mfix_restore(f, 1, &img[1]);
	mfix_image_free(&img[0]);
	mfix_image_free(&img[1]);
	return n;
}

struct resync_arg {
	struct mirror *m;
	int rc;
};

static void *resync_thread(void *arg)
{
	struct resync_arg *a = arg;
	struct resync_result res;
	struct cat_error err;
	a->rc = recovery_resync(a->m, NULL, NULL, &res, &err);
	return NULL;
}

/* Phase 2: reassemble over fresh crash disks, run recovery_resync and the
 * workload side by side, cut the power at p->arm2. */
static void resync_under_load(struct mfix *f, struct run *run, const struct point *p)
{
	struct cat_error err;
	f->cfg.crash = true;
	f->cfg.crash_seed[0] = p->seed * 2 + 201;
	f->cfg.crash_seed[1] = p->seed * 2 + 202;
	crash_clock_init(&f->clock);
	mfix_wrap(f);
	crash_clock_arm(&f->clock, p->arm2);
	run->fail_leg = -1;
	run->epoch = 1;
	struct bdev *legs[2] = { f->fault[0], f->fault[1] };
	struct mirror_opts mo = { .no_cleaner = true, .clean_delay_ms = 1 };
	struct bdev *old_mem = NULL, *old_crash = NULL;
	if (mirror_open(legs, &mo, &f->m, &err) == 0) {
		f->dev = mirror_bdev(f->m);
		if (p->v->replace) {
			/* a blank disk replaces the stale one (or any, if none) */
			int leg = mirror_rebuilding_leg(f->m);
			if (leg < 0)
				leg = (int)(p->seed & 1);
			struct bdev *nmem = mem_disk_create(f->mem[leg]->nblocks, f->name[leg]);
			struct bdev *ncrash = crash_disk_create(nmem, &f->clock, p->seed * 2 + 301, 50);
			struct bdev *nfault = fault_disk_create(ncrash);
			int rc = mirror_replace_leg(f->m, leg, nfault, &err);
			MFIX_CHECKM(rc == 0 || crashed(run), PT_FMT ": mirror_replace_leg failed before the power cut: %d (%s)",
				  PT_ARGS(p), rc, err.msg);
			/* Refusals before the swap (the power already gone: the
			 * other disk failed at open) leave newdev with us; a
			 * failure writing the new metadata does not. */
			bool taken = rc != -EINVAL && rc != -EROFS && rc != -ENOSPC && rc != -EBUSY;
			if (taken) {
				old_mem = f->mem[leg];
				old_crash = f->crash[leg];
				f->mem[leg] = nmem;
				f->crash[leg] = ncrash;
				f->fault[leg] = nfault;
				run->replaced = leg;
			} else {
				bdev_close(nfault);
				bdev_close(ncrash);
				bdev_close(nmem);
			}
		}
		struct resync_arg ra = { .m = f->m };
		pthread_t rt, tid[MAX_THREADS];
		MFIX_CHECK((pthread_create(&rt, NULL, resync_thread, &ra)) == (0));
		for (int t = 0; t < p->v->threads; t++)
			MFIX_CHECK((pthread_create(&tid[t], NULL, workload, &run->th[t])) == (0));
		for (int t = 0; t < p->v->threads; t++)
			pthread_join(tid[t], NULL);
		pthread_join(rt, NULL);
		MFIX_CHECKM(ra.rc == 0 || crashed(run), PT_FMT ": resync under load failed before the power cut: %d",
			  PT_ARGS(p), ra.rc);
	} else {
		MFIX_CHECKM(crashed(run), PT_FMT ": phase 2 reassembly failed before the power cut: %s",
			  PT_ARGS(p), err.msg);
		f->m = NULL;
		f->fault[0] = f->fault[1] = NULL;
	}
	crash_disk_crash(f->crash[0]);
	crash_disk_crash(f->crash[1]);
	mfix_abandon(f);
	if (old_crash) {
		crash_disk_crash(old_crash);
		bdev_close(old_crash);
		bdev_close(old_mem);
	}
	f->cfg.crash = false;
}

/* Every block (read through the mirror) and every read the workload made
 * against the model. */
static void check_contents(struct mfix *f, struct run *run, const struct point *p)
{
	int rc;
	/* what survived every power cut: per epoch, the writes completed
	 * before the last completed flush began */
	compute_flushcuts(run);
	uint64_t *mark = malloc(f->data_blocks * sizeof(uint64_t));
	supersede_marks(run, UINT64_MAX, MAX_EPOCHS, mark, f->data_blocks);
	for (uint64_t b = 0; b < f->data_blocks; b++)
		stats.durable_checked += mark[b] != 0;
	for (int t = 0; t < p->v->threads; t++)
		for (size_t i = 0; i < run->th[t].nw; i++)
			stats.acked_writes += run->th[t].w[i].rc == 0;
	uint8_t *buf = block_alloc(64 * BDEV_BLOCK_SIZE);
	for (uint64_t b0 = 0; b0 < f->data_blocks; b0 += 64) {
		uint64_t n = f->data_blocks - b0 < 64 ? f->data_blocks - b0 : 64;
		rc = bdev_read(f->dev, b0, buf, n);
		MFIX_CHECKM((rc) == (0), PT_FMT ": read after recovery failed: %d", PT_ARGS(p), rc);
		for (uint64_t k = 0; k < n; k++) {
			uint64_t seq = 0;
			int vd = mfix_check(buf + k * BDEV_BLOCK_SIZE, b0 + k, &seq);
			const char *why = judge(run, b0 + k, vd, seq, mark[b0 + k], 0);
			if (why)
				dump_history(run, b0 + k);
			MFIX_CHECKM(!(why), PT_FMT ": after recovery block %llu holds %s", PT_ARGS(p),
				       (unsigned long long)(b0 + k), why);
		}
	}
	free(buf);
	/* reads during the workload */
	for (int t = 0; t < p->v->threads; t++)
		for (size_t i = 0; i < run->th[t].nr; i++) {
			const struct rrec *rr = &run->th[t].rd[i];
			supersede_marks(run, rr->start, rr->epoch, mark, f->data_blocks);
			for (uint32_t k = 0; k < rr->n; k++) {
				const char *why = judge(run, rr->blk + k, rr->verdict[k], rr->got[k],
							mark[rr->blk + k], rr->end);
				if (why)
					dump_history(run, rr->blk + k);
				MFIX_CHECKM(!(why), PT_FMT ": a read during the workload of block %llu "
					       "returned %s", PT_ARGS(p), (unsigned long long)(rr->blk + k), why);
			}
		}
	free(mark);
}

/* Debugging aid (CATAMARAN_CRASH_TRACE=1): both superblocks and the
 * blocks of each image that already break the model, before recovery. */
static void trace_images(struct mfix *f, struct run *run)
{
	compute_flushcuts(run);
	uint64_t *mark = malloc(f->data_blocks * sizeof(uint64_t));
	supersede_marks(run, UINT64_MAX, MAX_EPOCHS, mark, f->data_blocks);
	for (int leg = 0; leg < 2; leg++) {
		struct msb sb;
		int rc = mfix_msb(f, leg, &sb);
		fprintf(stderr, "trace: leg %d superblock rc %d events %llu states %d/%d clean %d\n", leg, rc,
			(unsigned long long)sb.events, sb.member_state[0], sb.member_state[1], sb.clean);
		int shown = 0;
		for (uint64_t b = 0; b < f->data_blocks && shown < 8; b++) {
			uint64_t seq = 0;
			int vd = mfix_mem_seq(f, leg, b, &seq);
			const char *why = judge(run, b, vd, seq, mark[b], 0);
			if (why) {
				fprintf(stderr, "trace: leg %d block %llu: %s\n", leg, (unsigned long long)b, why);
				shown++;
			}
		}
	}
	free(mark);
}

/* Run one crash point; returns the crash-disk operations the run made
 * (the calibration run uses it). */
static long long run_point(const struct point *p, bool verify)
{
	struct mfix f;
	struct mfix_cfg c = { 0 };
	c.disk_blocks[0] = c.disk_blocks[1] = DISK_BLOCKS;
	c.chunk_blocks = CHUNK;
	c.crash = true;
	c.crash_seed[0] = p->seed * 2 + 1;
	c.crash_seed[1] = p->seed * 2 + 2;
	c.mopts.no_cleaner = true;
	c.mopts.clean_delay_ms = 1;
	c.no_open = true;
	mfix_init(&f, &c);

	struct run *run = calloc(1, sizeof(*run));
	run->v = p->v;
	run->f = &f;
	run->fail_leg = p->fail_leg;
	run->fail_mode = p->fail_mode;
	run->fail_at_op = p->fail_at_op;
	run->fail_after = p->fail_after;
	run->replaced = -1;
	run->seq_cap = 2 * (size_t)p->v->threads * (size_t)p->v->ops + 2;
	run->by_seq = calloc(run->seq_cap, sizeof(*run->by_seq));
	for (int t = 0; t < p->v->threads; t++) {
		struct pthr *th = &run->th[t];
		th->run = run;
		th->id = t;
		prng_seed(&th->r, p->seed * 131 + (uint64_t)t);
		th->w = calloc(2 * (size_t)p->v->ops, sizeof(struct wrec));
		th->rd = calloc(2 * (size_t)p->v->ops, sizeof(struct rrec));
		th->fl = calloc(2 * (size_t)p->v->ops, sizeof(struct frec));
	}

	/* --- run until the power cut --- */
	crash_clock_init(&f.clock);
	f.cfg.crash = true;
	mfix_wrap(&f);
	if (p->arm > 0)
		crash_clock_arm(&f.clock, p->arm);
	struct bdev *legs[2] = { f.fault[0], f.fault[1] };
	struct cat_error err;
	long long used = 0;
	int orc = mirror_open(legs, &f.cfg.mopts, &f.m, &err);
	if (orc == 0) {
		f.dev = mirror_bdev(f.m);
		pthread_t tid[MAX_THREADS];
		for (int t = 0; t < p->v->threads; t++)
			MFIX_CHECK((pthread_create(&tid[t], NULL, workload, &run->th[t])) == (0));
		for (int t = 0; t < p->v->threads; t++)
			pthread_join(tid[t], NULL);
		used = ops_counted(&f);
		if (run->fail_triggered)
			stats.failed_before_crash++;
	} else {
		f.m = NULL;
		f.fault[0] = f.fault[1] = NULL; /* mirror_open closed them */
		stats.open_crashed++;
		MFIX_CHECKM(verify && crashed(run), PT_FMT ": mirror_open failed before the power cut: %d (%s)",
			  PT_ARGS(p), orc, err.msg);
	}
	for (int t = 0; t < p->v->threads; t++)
		MFIX_CHECKM(!run->th[t].err[0], PT_FMT ": thread %d: %s", PT_ARGS(p), t, run->th[t].err);
	/* power cut (if the armed point was not reached, it happens now) */
	crash_disk_crash(f.crash[0]);
	crash_disk_crash(f.crash[1]);
	mfix_abandon(&f);

	/* --- a crashed recovery first? --- */
	struct point q = *p;
	if (p->crash_recovery && verify) {
		long long n = recovery_ops(&f, &q);
		q.arm_recovery = 1 + (long long)(p->recovery_frac * (double)n);
		crash_recovery(&f, &q);
		if (q.arm_recovery <= n)
			stats.recovery_crashed++;
		p = &q; /* messages show the arm used */
	}

	/* --- resync under load, crashed --- */
	if (p->v->resync_under_load && verify) {
		resync_under_load(&f, run, p);
		for (int t = 0; t < p->v->threads; t++)
			MFIX_CHECKM(!run->th[t].err[0], PT_FMT ": phase 2 thread %d: %s", PT_ARGS(p), t,
				  run->th[t].err);
	}

	if (!verify) {
		/* calibration only */
		goto done;
	}

	if (getenv("CATAMARAN_CRASH_TRACE"))
		trace_images(&f, run);

	/* --- recovery: a fresh mirror on the post-crash images --- */
	f.cfg.crash = false;
	f.cfg.mopts = (struct mirror_opts){ .no_cleaner = true };
	int rc = mfix_open(&f, &err);
	if (rc && run->replaced >= 0) {
		/* The power went while the blank disk was getting its
		 * superblock: it is no member yet. Refusing it is right; the
		 * old disk alone must then hold everything. */
		int r = run->replaced;
		struct msb nsb;
		MFIX_CHECKM((mfix_msb(&f, r, &nsb)) != (0),
			      PT_FMT ": reassembly failed although the new disk has a superblock: %d (%s)",
			      PT_ARGS(p), rc, err.msg);
		MFIX_CHECKM((strstr(err.msg, f.name[r])) != (NULL), PT_FMT ": message does not name the new disk: %s",
			      PT_ARGS(p), err.msg);
		stats.replace_refused++;
		f.cfg.mopts.allow_degraded = true;
		mfix_wrap(&f);
		bdev_close(f.fault[r]);
		f.fault[r] = NULL;
		struct bdev *legs[2] = { f.fault[0], f.fault[1] };
		rc = mirror_open(legs, &f.cfg.mopts, &f.m, &err);
		MFIX_CHECKM((rc) == (0), PT_FMT ": degraded start on the old disk failed: %d (%s)", PT_ARGS(p), rc,
			     err.msg);
		f.dev = mirror_bdev(f.m);
		check_contents(&f, run, p);
		mfix_close(&f);
		goto done;
	}
	MFIX_CHECKM((rc) == (0), PT_FMT ": reassembly after the crash failed: %d (%s)", PT_ARGS(p), rc, err.msg);
	struct resync_result res;
	stats.stale_chunks += mirror_stale_chunks(f.m);
	rc = recovery_resync(f.m, NULL, NULL, &res, &err);
	stats.copied += res.blocks_copied;
	MFIX_CHECKM((rc) == (0), PT_FMT ": recovery_resync: %d (%s)", PT_ARGS(p), rc, err.msg);
	MFIX_CHECKM(!res.degraded, PT_FMT ": resync ended degraded", PT_ARGS(p));
	MFIX_CHECKM((mirror_stale_chunks(f.m)) == (0), PT_FMT ": stale chunks left", PT_ARGS(p));
	struct mirror_status st;
	mirror_get_status(f.m, &st);
	MFIX_CHECKM(st.leg[0].state == LEG_IN_SYNC && st.leg[1].state == LEG_IN_SYNC,
		  PT_FMT ": legs not in sync after recovery (%d, %d)", PT_ARGS(p), st.leg[0].state,
		  st.leg[1].state);

	check_contents(&f, run, p);
	MFIX_CHECKM((mfix_close(&f)) == (0), PT_FMT ": close after recovery", PT_ARGS(p));
	uint64_t first;
	uint64_t d = mfix_compare_mem(&f, &first);
	MFIX_CHECKM((d) == (0), PT_FMT ": legs differ in %llu blocks after recovery (first %llu)", PT_ARGS(p),
		     (unsigned long long)d, (unsigned long long)first);
	/* a clean close after recovery needs no resync */
	mfix_open_ok(&f);
	MFIX_CHECKM((mirror_stale_chunks(f.m)) == (0), PT_FMT ": stale chunks after a clean close",
		     PT_ARGS(p));
	mfix_close(&f);

done:
	for (int t = 0; t < p->v->threads; t++) {
		free(run->th[t].w);
		free(run->th[t].rd);
		free(run->th[t].fl);
	}
	free(run->by_seq);
	free(run);
	mfix_destroy(&f);
	return used;
}

static unsigned total_points(void)
{
	const char *e = getenv("CATAMARAN_CRASH_POINTS");
	long v = e ? strtol(e, NULL, 0) : 0;
	return v > 0 ? (unsigned)v : 1400u;
}

static uint64_t base_seed(void)
{
	const char *e = getenv("CATAMARAN_CRASH_SEED");
	return e ? strtoull(e, NULL, 0) : 0xC4A5Bull;
}

static void run_variant(const struct variant *v)
{
	mfix_quiet();
	unsigned npoints = total_points() * v->share / 1400u;
	if (npoints < 1)
		npoints = 1;
	/* calibration: an uncrashed run's operation count */
	struct point cal = { .v = v, .index = -1, .seed = base_seed() ^ 0x5555, .fail_leg = -1 };
	long long est = run_point(&cal, false);
	MFIX_CHECKM((est) > (10), "calibration made only %lld operations", est);
	struct prng r;
	prng_seed(&r, base_seed() ^ (uint64_t)v->share ^ ((uint64_t)v->threads << 20) ^
			      (uint64_t)(uintptr_t)v->name[0]);
	uint64_t t0 = now_ns();
	memset(&stats, 0, sizeof(stats));
	for (unsigned i = 0; i < npoints; i++) {
		struct point p = { .v = v, .index = (int)i, .fail_leg = -1 };
		p.seed = base_seed() * 1000003u + i * 7919u + (uint64_t)v->share;
		/* stratified over the whole run, open included */
		p.arm = 1 + (long long)((uint64_t)est * i / npoints) +
			(long long)prng_below(&r, (uint64_t)est / npoints + 1);
		if (v->leg_failure) {
			p.fail_leg = (int)(i & 1);
			p.fail_mode = (i & 2) ? FAIL_VANISH : FAIL_EIO;
			p.fail_at_op = (int)prng_below(&r, (uint64_t)v->ops / 2 + 1);
			p.fail_after = (long long)prng_below(&r, 6);
		}
		if (v->resync_under_load)
			p.arm2 = 1 + (long long)prng_below(&r, (uint64_t)est + 40);
		if (v->crash_recovery) {
			p.crash_recovery = true;
			p.recovery_frac = (double)prng_below(&r, 1000) / 1000.0;
		}
		const char *only = getenv("CATAMARAN_CRASH_ONLY");
		if (only && strtol(only, NULL, 0) != (long)i)
			continue;
		run_point(&p, true);
	}
	cr_log_info("%s: %u crash points in %.1f s (calibrated %lld ops): %u in open, %u after a "
		    "leg failed, %u in recovery; %llu acked writes, %llu durable blocks checked, "
		    "%llu stale chunks, %llu blocks copied by resync, %u blank disks refused",
		    v->name, npoints, (double)(now_ns() - t0) / 1e9, est, stats.open_crashed,
		    stats.failed_before_crash, stats.recovery_crashed,
		    (unsigned long long)stats.acked_writes, (unsigned long long)stats.durable_checked,
		    (unsigned long long)stats.stale_chunks, (unsigned long long)stats.copied,
		    stats.replace_refused);
}

static const struct variant V_SINGLE = { "single-thread", 1, 160, true, false, false, 400, false, false };
static const struct variant V_MULTI = { "three-threads", 3, 70, false, false, false, 250, false, false };
static const struct variant V_FAIL = { "leg-failure", 1, 160, true, true, false, 200, false, false };
static const struct variant V_FAIL_MT = { "leg-failure-mt", 2, 90, true, true, false, 50, false, false };
static const struct variant V_RECOV = { "crashed-recovery", 1, 160, false, false, true, 150, false, false };
static const struct variant V_LOAD = { "resync-under-load", 2, 90, true, false, false, 150, true, false };
static const struct variant V_LOAD_FAIL = { "resync-under-load-after-failure", 1, 120, true, true, false, 100, true, false };
static const struct variant V_REPLACE = { "rebuild-under-load", 2, 90, true, false, false, 100, true, true };

Test(mirror_powerloss, single_thread, .timeout = 600) { run_variant(&V_SINGLE); }
Test(mirror_powerloss, three_threads, .timeout = 600) { run_variant(&V_MULTI); }
Test(mirror_powerloss, leg_failure, .timeout = 600) { run_variant(&V_FAIL); }
Test(mirror_powerloss, leg_failure_threads, .timeout = 600) { run_variant(&V_FAIL_MT); }
Test(mirror_powerloss, crash_during_recovery, .timeout = 600) { run_variant(&V_RECOV); }
Test(mirror_powerloss, crash_during_resync_under_load, .timeout = 600) { run_variant(&V_LOAD); }
Test(mirror_powerloss, crash_during_resync_after_leg_failure, .timeout = 600) { run_variant(&V_LOAD_FAIL); }
Test(mirror_powerloss, crash_during_rebuild_of_replaced_disk, .timeout = 600) { run_variant(&V_REPLACE); }
