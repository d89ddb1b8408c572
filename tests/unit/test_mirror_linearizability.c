/*
 * test_mirror_linearizability.c - concurrent reads and writes of a few
 * blocks through the mirror are linearizable (DESIGN.md section 1).
 *
 * Every operation records a start and an end tick from one global atomic
 * counter (start taken before the call, end after it returns), so
 * "a.end < b.start" means a really finished before b began. Every write
 * stores a unique self-describing value, so each read names the write it
 * saw. Each block's history is then checked for linearizability with the
 * zone test described at check_history(); reads must return whole payloads
 * of the right block (or zeros), never data from a write that had not yet
 * started. A final read of every block after the run joins the history.
 *
 * Variants: mem disks; mem disks with the bitmap cleaner racing (1 ms
 * delay); a leg failing in the middle; a leg replaced and rebuilt by
 * recovery_resync while the workload runs; two io_uring disks on /tmp
 * files (fewer operations).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blockdev/disk/uring_disk.h"
#include "blockdev/mirror/mirror.h"
#include "blockdev/testdev/fault_disk.h"
#include "blockdev/testdev/mem_disk.h"
#include "core/base/util.h"
#include "recovery/recovery.h"
#include "tests/unit/helpers/mirror_fixture.h"

#define NBLK 4
#define MAX_THREADS 16

enum { OP_READ, OP_WRITE };

struct op {
	uint64_t start, end;
	uint64_t got[2]; /* read: seq per block (0 = zeros); write: unused */
	int8_t verdict[2];
	uint8_t kind, idx, n; /* idx: first of the NBLK blocks */
	int rc;
};

struct worker {
	int id;
	struct bdev *dev;
	uint64_t base;
	struct op *ops;
	size_t nops, cap;
	uint64_t seed;
};

static atomic_uint_fast64_t ticks;
static atomic_bool stop_flag;

static uint64_t tick(void) { return atomic_fetch_add(&ticks, 1) + 1; }

static uint64_t seq_of(int tid, size_t opidx) { return ((uint64_t)(tid + 1) << 32) | (opidx + 1); }

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct prng r;
	prng_seed(&r, w->seed);
	uint8_t *buf = block_alloc(2 * BDEV_BLOCK_SIZE);
	MFIX_CHECK(buf);
	while (!atomic_load(&stop_flag) && w->nops < w->cap) {
		struct op *o = &w->ops[w->nops];
		memset(o, 0, sizeof(*o));
		o->kind = prng_below(&r, 2) ? OP_WRITE : OP_READ;
		o->idx = (uint8_t)prng_below(&r, NBLK);
		o->n = (o->idx + 1 < NBLK && prng_below(&r, 4) == 0) ? 2 : 1;
		uint64_t blk = w->base + o->idx;
		if (o->kind == OP_WRITE) {
			uint64_t s = seq_of(w->id, w->nops);
			for (int i = 0; i < o->n; i++)
				mfix_fill(buf + i * BDEV_BLOCK_SIZE, blk + (uint64_t)i, s);
			struct iovec iov[2] = { { buf, BDEV_BLOCK_SIZE },
						{ buf + BDEV_BLOCK_SIZE, BDEV_BLOCK_SIZE } };
			o->start = tick();
			o->rc = o->n == 2 && prng_below(&r, 2) ? bdev_writev(w->dev, blk, iov, 2)
							       : bdev_write(w->dev, blk, buf, o->n);
			o->end = tick();
		} else {
			o->start = tick();
			o->rc = bdev_read(w->dev, blk, buf, o->n);
			o->end = tick();
			if (o->rc == 0)
				for (int i = 0; i < o->n; i++)
					o->verdict[i] = (int8_t)mfix_check(buf + i * BDEV_BLOCK_SIZE,
									   blk + (uint64_t)i, &o->got[i]);
		}
		w->nops++;
	}
	free(buf);
	return NULL;
}

/*
 * The check (Gibbons & Korach; Golab, Li & Shah, "Analyzing consistency
 * properties for fun and profit", PODC 2011): for a register whose writes
 * store unique values, group each write with the reads that returned its
 * value (a cluster; the initial zeros are a virtual write at tick 0). With
 * f = the earliest end and s = the latest start in the cluster, the cluster
 * has a forward zone [f, s] when f < s, else a backward zone [s, f]. The
 * history is linearizable iff every read's write started before the read
 * ended, no two forward zones overlap, and no backward zone lies inside a
 * forward zone. (Comparing end ticks of writes alone is not enough: a
 * writer can be preempted between releasing the stripe lock and taking its
 * end tick, so end order need not be lock order.)
 */
struct zone {
	uint64_t f, s, seq;
};

static int cmp_zone(const void *a, const void *b)
{
	const struct zone *x = a, *y = b;
	return x->f < y->f ? -1 : x->f > y->f;
}

struct lin_result {
	uint64_t reads, writes, failed;
};

/* Per-op cluster bounds live beside the ops (one per block of a write). */
struct cluster {
	uint64_t f, s;
};

#define MUST(cond, ...)                                              \
	do {                                                         \
		if (!(cond)) {                                       \
			snprintf(why, whylen, __VA_ARGS__);          \
			goto out;                                    \
		}                                                    \
	} while (0)

/* Returns true when the history is linearizable; else why says how not. */
static bool check_history(struct worker *ws, int nthreads, struct bdev *dev, uint64_t base,
			  struct lin_result *res, char *why, size_t whylen)
{
	bool ok = false;
	struct cluster *cl[MAX_THREADS] = { 0 };
	struct zone *fw = NULL, *bw = NULL;
	memset(res, 0, sizeof(*res));
	/* final reads, after every worker stopped, join the history */
	struct op fin[NBLK];
	uint8_t *buf = block_alloc(BDEV_BLOCK_SIZE);
	for (int b = 0; b < NBLK; b++) {
		memset(&fin[b], 0, sizeof(fin[b]));
		fin[b].kind = OP_READ;
		fin[b].idx = (uint8_t)b;
		fin[b].n = 1;
		fin[b].start = tick();
		fin[b].rc = bdev_read(dev, base + (uint64_t)b, buf, 1);
		fin[b].end = tick();
		if (fin[b].rc == 0)
			fin[b].verdict[0] = (int8_t)mfix_check(buf, base + (uint64_t)b, &fin[b].got[0]);
	}
	free(buf);

	for (int t = 0; t < nthreads; t++) {
		cl[t] = malloc((ws[t].nops + 1) * 2 * sizeof(struct cluster));
		MFIX_CHECK(cl[t]);
		for (size_t k = 0; k < ws[t].nops; k++) {
			struct op *o = &ws[t].ops[k];
			if (o->kind != OP_WRITE)
				continue;
			res->writes++;
			MUST(o->rc == 0, "write %d/%zu failed: %d", t, k, o->rc);
			for (int i = 0; i < 2; i++)
				cl[t][2 * k + (size_t)i] = (struct cluster){ o->end, o->start };
		}
	}
	struct cluster init[NBLK];
	for (int b = 0; b < NBLK; b++)
		init[b] = (struct cluster){ 0, 0 };

	for (int t = 0; t <= nthreads; t++) {
		size_t nops = t < nthreads ? ws[t].nops : NBLK;
		for (size_t k = 0; k < nops; k++) {
			struct op *o = t < nthreads ? &ws[t].ops[k] : &fin[k];
			if (o->kind != OP_READ)
				continue;
			res->reads++;
			MUST(o->rc == 0, "read %d/%zu of block %d failed: %d", t, k, o->idx, o->rc);
			for (int i = 0; i < o->n; i++) {
				int b = o->idx + i;
				uint64_t v = o->got[i];
				MUST(o->verdict[i] != -1,
					      "read [%llu,%llu] of block %d returned garbage or a torn block",
					      (unsigned long long)o->start, (unsigned long long)o->end, b);
				struct cluster *c;
				if (o->verdict[i] == 0) {
					c = &init[b];
				} else {
					int wt = (int)(v >> 32) - 1;
					size_t wk = (size_t)(v & 0xffffffffu) - 1;
					MUST(wt >= 0 && wt < nthreads && wk < ws[wt].nops,
						  "read of block %d returned unknown value %#llx", b,
						  (unsigned long long)v);
					const struct op *W = &ws[wt].ops[wk];
					MUST(W->kind == OP_WRITE && W->idx <= b && b < W->idx + W->n,
						  "read of block %d returned value %#llx of another block", b,
						  (unsigned long long)v);
					MUST(W->start < o->end,
						     "read [%llu,%llu] of block %d returned write %#llx that "
						     "started only at %llu (from the future)",
						     (unsigned long long)o->start, (unsigned long long)o->end, b,
						     (unsigned long long)v, (unsigned long long)W->start);
					c = &cl[wt][2 * wk + (size_t)(b - W->idx)];
				}
				if (o->end < c->f)
					c->f = o->end;
				if (o->start > c->s)
					c->s = o->start;
			}
		}
	}

	for (int b = 0; b < NBLK; b++) {
		size_t cap = 1;
		for (int t = 0; t < nthreads; t++)
			cap += ws[t].nops;
		fw = malloc(cap * sizeof(struct zone));
		bw = malloc(cap * sizeof(struct zone));
		size_t nf = 0, nb = 0;
		for (int t = 0; t <= nthreads; t++) {
			size_t nops = t < nthreads ? ws[t].nops : 1;
			for (size_t k = 0; k < nops; k++) {
				struct cluster c;
				uint64_t seq;
				if (t == nthreads) {
					c = init[b];
					seq = 0;
				} else {
					struct op *o = &ws[t].ops[k];
					if (o->kind != OP_WRITE || o->idx > b || b >= o->idx + o->n)
						continue;
					c = cl[t][2 * k + (size_t)(b - o->idx)];
					seq = seq_of(t, k);
				}
				if (c.f < c.s)
					fw[nf++] = (struct zone){ c.f, c.s, seq };
				else
					bw[nb++] = (struct zone){ c.s, c.f, seq }; /* [s, f] */
			}
		}
		qsort(fw, nf, sizeof(struct zone), cmp_zone);
		for (size_t i = 1; i < nf; i++)
			MUST(fw[i].f > fw[i - 1].s,
				     "block %d not linearizable: values %#llx and %#llx were each read "
				     "while the other must have been current (zones [%llu,%llu] and "
				     "[%llu,%llu] overlap): a stale read or lost write",
				     b, (unsigned long long)fw[i - 1].seq, (unsigned long long)fw[i].seq,
				     (unsigned long long)fw[i - 1].f, (unsigned long long)fw[i - 1].s,
				     (unsigned long long)fw[i].f, (unsigned long long)fw[i].s);
		for (size_t j = 0; j < nb; j++) {
			/* the forward zone with the largest f below this zone's start */
			size_t lo = 0, hi = nf;
			while (lo < hi) {
				size_t mid = (lo + hi) / 2;
				if (fw[mid].f < bw[j].f)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (lo == 0)
				continue;
			const struct zone *z = &fw[lo - 1];
			MUST(!(z->f < bw[j].f && bw[j].s < z->s),
				  "block %d not linearizable: write %#llx (with its reads, [%llu,%llu]) "
				  "happened entirely while value %#llx had to be current ([%llu,%llu]): "
				  "a read saw an overwritten value",
				  b, (unsigned long long)bw[j].seq, (unsigned long long)bw[j].f,
				  (unsigned long long)bw[j].s, (unsigned long long)z->seq,
				  (unsigned long long)z->f, (unsigned long long)z->s);
		}
		free(fw);
		free(bw);
		fw = bw = NULL;
	}
	ok = true;
out:
	free(fw);
	free(bw);
	for (int t = 0; t < nthreads; t++)
		free(cl[t]);
	return ok;
}

typedef void (*mid_fn)(void *ctx);

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Run nthreads workers on dev for ms milliseconds (or cap ops each);
 * mid(ctx) runs on this thread half-way. */
static void run_lin_x(struct bdev *dev, uint64_t base, int nthreads, unsigned ms, size_t cap,
		      mid_fn mid, void *ctx, struct lin_result *res, bool expect_violation)
{
	struct worker ws[MAX_THREADS];
	pthread_t th[MAX_THREADS];
	atomic_store(&ticks, 0);
	atomic_store(&stop_flag, false);
	for (int t = 0; t < nthreads; t++) {
		ws[t] = (struct worker){ .id = t, .dev = dev, .base = base, .cap = cap,
					 .seed = 0x1234 + (uint64_t)t * 7919 };
		ws[t].ops = malloc(cap * sizeof(struct op));
		MFIX_CHECK(ws[t].ops);
	}
	for (int t = 0; t < nthreads; t++)
		MFIX_CHECK((pthread_create(&th[t], NULL, worker_main, &ws[t])) == (0));
	sleep_ms(ms / 2);
	if (mid)
		mid(ctx);
	sleep_ms(ms - ms / 2);
	atomic_store(&stop_flag, true);
	for (int t = 0; t < nthreads; t++)
		pthread_join(th[t], NULL);
	char why[512] = "";
	bool ok = check_history(ws, nthreads, dev, base, res, why, sizeof(why));
	for (int t = 0; t < nthreads; t++)
		free(ws[t].ops);
	if (expect_violation) {
		MFIX_CHECKM(!ok, "the checker missed a broken device");
		cr_log_info("checker caught it: %s", why);
		return;
	}
	MFIX_CHECKM(ok, "%s", why);
	MFIX_CHECKM((res->reads) > (100), "too few reads to mean anything (%llu)",
		     (unsigned long long)res->reads);
	MFIX_CHECKM((res->writes) > (100), "too few writes to mean anything (%llu)",
		     (unsigned long long)res->writes);
}

static void run_lin(struct bdev *dev, uint64_t base, int nthreads, unsigned ms, size_t cap,
		    mid_fn mid, void *ctx, struct lin_result *res)
{
	run_lin_x(dev, base, nthreads, ms, cap, mid, ctx, res, false);
}

/* Blocks 254..257: across a chunk boundary (16-block chunks) and across
 * the mirror's 1 MiB read-balancing boundary (blocks 0-255 are read from
 * one leg first, 256-511 from the other). */
#define BASE 254

static void mem_case(struct mirror_opts mo, mid_fn mid, void *(*mkctx)(struct mfix *))
{
	struct mfix f;
	struct mfix_cfg c = { 0 };
	c.mopts = mo;
	mfix_init(&f, &c);
	struct lin_result res;
	run_lin(f.dev, BASE, 8, 1200, 400000, mid, mkctx ? mkctx(&f) : &f, &res);
	cr_log_info("%llu reads, %llu writes checked", (unsigned long long)res.reads,
		    (unsigned long long)res.writes);
	/* both legs end identical (when both are live) */
	struct mirror_status st;
	mirror_get_status(f.m, &st);
	if (st.leg[0].state == LEG_IN_SYNC && st.leg[1].state == LEG_IN_SYNC) {
		uint64_t first;
		int64_t d = mfix_compare_legs(&f, &first);
		MFIX_CHECKM((d) == (0), "legs differ in %lld blocks, first %llu", (long long)d,
			     (unsigned long long)first);
	}
	MFIX_CHECK((mfix_close(&f)) == (0));
	mfix_destroy(&f);
}

Test(mirror_lin, mem_disks, .timeout = 120)
{
	mem_case((struct mirror_opts){ .no_cleaner = true }, NULL, NULL);
}

Test(mirror_lin, mem_disks_with_cleaner_racing, .timeout = 120)
{
	mem_case((struct mirror_opts){ .clean_delay_ms = 1 }, NULL, NULL);
}

static void fail_leg1(void *ctx)
{
	struct mfix *f = ctx;
	fault_disk_vanish(f->fault[1]);
}

Test(mirror_lin, leg_vanishes_mid_run, .timeout = 120)
{
	mem_case((struct mirror_opts){ .no_cleaner = true }, fail_leg1, NULL);
}

static void replace_and_resync(void *ctx)
{
	struct mfix *f = ctx;
	struct bdev *fresh = mem_disk_create(f->mem[0]->nblocks, "fresh-leg0");
	MFIX_CHECK(fresh);
	struct cat_error err;
	/* the mirror takes `fresh` over and closes it; the fixture's old
	 * mem disk for leg 0 stays as it is (no longer used). */
	MFIX_CHECKM((mirror_replace_leg(f->m, 0, fresh, &err)) == (0), "%s", err.msg);
	f->fault[0] = NULL;
	struct resync_result res;
	MFIX_CHECKM((recovery_resync(f->m, NULL, NULL, &res, &err)) == (0), "%s", err.msg);
	MFIX_CHECK((mirror_stale_chunks(f->m)) == (0));
	MFIX_CHECK((mirror_rebuilding_leg(f->m)) == (-1));
}

Test(mirror_lin, leg_replaced_and_rebuilt_mid_run, .timeout = 120)
{
	mem_case((struct mirror_opts){ .no_cleaner = true }, replace_and_resync, NULL);
}

/* --- two io_uring disks on /tmp files --- */

static void make_uring_disk(char *path, size_t len, struct bdev **out)
{
	snprintf(path, len, "/tmp/catamaran-lin-XXXXXX");
	int fd = mkstemp(path);
	MFIX_CHECK((fd) >= (0));
	close(fd);
	struct cat_error err;
	int created = 0;
	MFIX_CHECKM((uring_disk_create(path, 4u << 20, &created, &err)) == (0), "%s", err.msg);
	MFIX_CHECKM((uring_disk_open(path, 0, out, &err)) == (0), "%s", err.msg);
	unlink(path); /* the open disk keeps the file; nothing is left behind */
}

Test(mirror_lin, uring_disks, .timeout = 120)
{
	mfix_quiet();
	char p0[64], p1[64];
	struct bdev *legs[2];
	make_uring_disk(p0, sizeof(p0), &legs[0]);
	make_uring_disk(p1, sizeof(p1), &legs[1]);
	struct mirror_format_opts fo = { .chunk_blocks = 16, .assume_clean = true };
	struct cat_error err;
	MFIX_CHECKM((mirror_format(legs, &fo, &err)) == (0), "%s", err.msg);
	struct mirror_opts mo = { .clean_delay_ms = 5 };
	struct mirror *m;
	MFIX_CHECKM((mirror_open(legs, &mo, &m, &err)) == (0), "%s", err.msg);
	struct lin_result res;
	run_lin(mirror_bdev(m), BASE, 8, 800, 20000, NULL, NULL, &res);
	cr_log_info("uring: %llu reads, %llu writes checked", (unsigned long long)res.reads,
		    (unsigned long long)res.writes);
	/* legs identical */
	uint8_t *a = block_alloc(8 * BDEV_BLOCK_SIZE), *b = block_alloc(8 * BDEV_BLOCK_SIZE);
	MFIX_CHECK((mirror_read_leg(m, 0, BASE - 2, a, 8)) == (0));
	MFIX_CHECK((mirror_read_leg(m, 1, BASE - 2, b, 8)) == (0));
	MFIX_CHECKM((memcmp(a, b, 8 * BDEV_BLOCK_SIZE)) == (0), "io_uring legs differ");
	free(a);
	free(b);
	MFIX_CHECK((mirror_close(m)) == (0));
}

/* --- the checker itself: a device that breaks linearizability must fail --- */

struct broken_dev {
	struct bdev b;
	struct bdev *inner;
	pthread_mutex_t lock;
	uint8_t *prev; /* per block: the value before the last write */
	uint64_t count;
	int mode;      /* 0: every 97th read returns the previous value;
			* 1: every 89th write is acknowledged but dropped */
};

static int gather(const struct iovec *iov, int iovcnt, uint8_t *out)
{
	size_t off = 0;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(out + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	return (int)(off / BDEV_BLOCK_SIZE);
}

static void scatter(const uint8_t *in, const struct iovec *iov, int iovcnt)
{
	size_t off = 0;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(iov[i].iov_base, in + off, iov[i].iov_len);
		off += iov[i].iov_len;
	}
}

static int broken_readv(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt)
{
	struct broken_dev *x = (struct broken_dev *)d;
	pthread_mutex_lock(&x->lock);
	int rc = 0;
	if (x->mode == 0 && ++x->count % 97 == 0)
		scatter(x->prev + blkno * BDEV_BLOCK_SIZE, iov, iovcnt);
	else
		rc = bdev_readv(x->inner, blkno, iov, iovcnt);
	pthread_mutex_unlock(&x->lock);
	return rc;
}

static int broken_writev(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt)
{
	struct broken_dev *x = (struct broken_dev *)d;
	pthread_mutex_lock(&x->lock);
	int rc = 0;
	if (!(x->mode == 1 && ++x->count % 89 == 0)) {
		uint8_t tmp[2 * BDEV_BLOCK_SIZE];
		int n = gather(iov, iovcnt, tmp);
		for (int i = 0; i < n; i++)
			memcpy(x->prev + (blkno + (uint64_t)i) * BDEV_BLOCK_SIZE,
			       mem_disk_block(x->inner, blkno + (uint64_t)i), BDEV_BLOCK_SIZE);
		rc = bdev_writev(x->inner, blkno, iov, iovcnt);
	}
	pthread_mutex_unlock(&x->lock);
	return rc;
}

static int broken_flush(struct bdev *d)
{
	(void)d;
	return 0;
}

static void broken_close(struct bdev *d)
{
	struct broken_dev *x = (struct broken_dev *)d;
	bdev_close(x->inner);
	pthread_mutex_destroy(&x->lock);
	free(x->prev);
	free(x);
}

static const struct bdev_ops broken_ops = {
	.readv = broken_readv, .writev = broken_writev, .flush = broken_flush, .close = broken_close,
};

static void broken_case(int mode)
{
	struct broken_dev *x = calloc(1, sizeof(*x));
	x->inner = mem_disk_create(512, "broken-inner");
	x->prev = calloc(512, BDEV_BLOCK_SIZE);
	x->mode = mode;
	x->b.ops = &broken_ops;
	x->b.nblocks = 512;
	snprintf(x->b.name, sizeof(x->b.name), "broken");
	pthread_mutex_init(&x->lock, NULL);
	struct lin_result res;
	run_lin_x(&x->b, BASE, 8, 300, 50000, NULL, NULL, &res, true);
	bdev_close(&x->b);
}

Test(mirror_lin, checker_catches_stale_reads) { broken_case(0); }
Test(mirror_lin, checker_catches_lost_writes) { broken_case(1); }
