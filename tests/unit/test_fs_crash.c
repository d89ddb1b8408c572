/*
 * test_fs_crash.c - power cuts under the filesystem, enumerated over many
 * crash points (DESIGN.md §1 and §6).
 *
 * Stack: per leg mem disk <- crash disk <- fault disk (helpers/
 * mirror_fixture.h), both crash disks on one crash clock, a mirror over the
 * two, the filesystem on the mirror (32 MiB). A workload - Maildir delivery
 * (create tmp/x, write, fsync, link new/x, fsync new/, unlink tmp/x),
 * pickup (rename new/x -> cur/x:2,S), deletes, index rewrites, syncfs, and
 * random namespace operations beside it (helpers/fs_model.h) - is made in
 * advance on the reference model, with the tree after every operation.
 * Then, for each crash point, the clock is armed at the k-th disk operation
 * (mount included), the workload runs until operations start failing, the
 * power goes (each leg keeps its flushed writes and its own random subset of
 * the rest), and recovery runs as a restarted daemon would: mirror_open,
 * recovery_resync, fs_mount (journal replay, orphan reclaim). Checks:
 *   - the mount succeeds;
 *   - the tree (readdir, lookup, getattr, read) equals the model after some
 *     prefix of the operations that completed, from everything completed
 *     before the last completed fsync/fsyncdir/syncfs (DESIGN.md §1: all of
 *     it must survive) up to all completed ones plus the one in flight;
 *     variants: -o sync and kill -9 (nothing unflushed lost) must keep every
 *     completed operation;
 *   - nothing leaks: after deleting every file, the free block and inode
 *     counts are those of the fresh filesystem (the root and orphan
 *     directories may have grown), also after another remount.
 * A variant crashes the recovery itself (journal replay) once more before
 * the final one. Targeted tests below show single findings.
 *
 * Crash points: CATAMARAN_FS_CRASH_POINTS (default 2000) spread over the
 * variants; CATAMARAN_FS_CRASH_SEED changes the base seed. A failure names
 * the variant, point, seeds and arm; CATAMARAN_FS_CRASH_ONLY=<point> reruns
 * only that point of each variant (same POINTS and SEED; the directory hash
 * seed of the fresh filesystem and thread timing still vary, so the crash
 * may land a little differently). CATAMARAN_TEST_LOG=1 shows engine logs.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockdev/mirror/mirror.h"
#include "blockdev/testdev/crash_disk.h"
#include "blockdev/testdev/fault_disk.h"
#include "blockdev/testdev/mem_disk.h"
#include "core/base/util.h"
#include "core/fs/fs.h"
#include "core/fs/layout.h"
#include "recovery/recovery.h"
#include "tests/unit/helpers/fs_model.h"
#include "tests/unit/helpers/fs_tree.h"
#include "tests/unit/helpers/mirror_fixture.h"

#define CHECK MFIX_CHECKM
#define ROOT FS_ROOT_INO
#define VOL_BLOCKS 8192u          /* 32 MiB of filesystem */
#define DISK_BLOCKS (VOL_BLOCKS + 256u)
#define MAX_OPS 400

static const struct fs_ctx CTX = { 1000, 1000 };

/* ---- the formatted volume, made once per test and copied per point ---- */

struct image {
	size_t n[2];
	uint64_t *blk[2];
	uint8_t *data[2];
	uint64_t free_blocks, free_inodes, root_blocks, orphan_blocks;
	struct fs_format_opts fo;
};

static struct image img;

static void fs_counts(struct fs *fs, uint64_t *fb, uint64_t *fi, uint64_t *rb, uint64_t *ob)
{
	struct statvfs st;
	struct fs_attr a;
	fs_statfs(fs, &st);
	*fb = st.f_bfree;
	*fi = st.f_ffree;
	CHECK(fs_getattr(fs, ROOT, &a) == 0, "getattr /");
	*rb = a.blocks / 8;
	CHECK(fs_getattr(fs, FS_ORPHAN_INO, &a) == 0, "getattr of the orphan directory");
	*ob = a.blocks / 8;
}

static void make_image(const struct fs_format_opts *fo)
{
	struct mfix f;
	struct mfix_cfg c = { .disk_blocks = { DISK_BLOCKS, DISK_BLOCKS },
			      .mopts = { .no_cleaner = true } };
	mfix_init(&f, &c);
	struct cat_error err;
	cat_error_clear(&err);
	int r = fs_format(f.dev, fo, &err);
	CHECK(r == 0, "fs_format: %d (%s)", r, err.msg);
	struct fs *fs;
	struct fs_opts o = { .cache_bytes = 8u << 20 };
	CHECK(fs_mount(f.dev, &o, &fs, &err) == 0, "fs_mount: %s", err.msg);
	fs_counts(fs, &img.free_blocks, &img.free_inodes, &img.root_blocks, &img.orphan_blocks);
	CHECK(fs_unmount(fs) == 0, "fs_unmount");
	CHECK(mfix_close(&f) == 0, "mfix_close");
	for (int leg = 0; leg < 2; leg++) {
		uint64_t nb = f.mem[leg]->nblocks;
		img.blk[leg] = malloc(nb * sizeof(uint64_t));
		img.n[leg] = 0;
		for (uint64_t b = 0; b < nb; b++) {
			const uint64_t *p = (const uint64_t *)mem_disk_block(f.mem[leg], b);
			for (size_t i = 0; i < 512; i++)
				if (p[i]) {
					img.blk[leg][img.n[leg]++] = b;
					break;
				}
		}
		img.data[leg] = malloc(img.n[leg] * 4096);
		for (size_t i = 0; i < img.n[leg]; i++)
			memcpy(img.data[leg] + i * 4096, mem_disk_block(f.mem[leg], img.blk[leg][i]), 4096);
	}
	img.fo = fo ? *fo : (struct fs_format_opts){ 0 };
	mfix_destroy(&f);
}

static void free_image(void)
{
	for (int leg = 0; leg < 2; leg++) {
		free(img.blk[leg]);
		free(img.data[leg]);
	}
	memset(&img, 0, sizeof(img));
}

/* Blank mem disks holding the formatted image; nothing opened. */
static void fixture_from_image(struct mfix *f, uint64_t seed, unsigned keep_percent)
{
	struct mfix_cfg c = { .disk_blocks = { DISK_BLOCKS, DISK_BLOCKS },
			      .crash = true, .crash_seed = { seed * 2 + 1, seed * 2 + 2 },
			      .keep_percent = keep_percent, .mopts = { .no_cleaner = true },
			      .no_format = true };
	mfix_init(f, &c);
	for (int leg = 0; leg < 2; leg++)
		for (size_t i = 0; i < img.n[leg]; i++)
			memcpy(mem_disk_block(f->mem[leg], img.blk[leg][i]), img.data[leg] + i * 4096, 4096);
	int se[2];
	CHECK(msb_read(f->mem[0], &f->sb, se) == 0, "msb_read");
	f->data_offset = f->sb.data_offset;
	f->data_blocks = f->sb.data_blocks;
	f->chunk_blocks = f->sb.chunk_blocks;
	f->nchunks = msb_nchunks(&f->sb);
}

static bool crashed(struct mfix *f)
{
	return atomic_load(&f->clock.crashed);
}

static long long ops_counted(struct mfix *f)
{
	long long n = 0;
	for (int i = 0; i < 2; i++)
		if (f->fault[i])
			n += (long long)fault_disk_ops(f->fault[i]);
	return n;
}

/* Cut the power now and drop everything above the disks. */
static void power_cut(struct mfix *f, struct fs **fs, struct lookups *lk)
{
	crash_disk_crash(f->crash[0]);
	crash_disk_crash(f->crash[1]);
	if (*fs) {
		if (lk)
			lookups_forget(*fs, lk);
		fs_unmount(*fs);      /* fails: the disks are gone */
		*fs = NULL;
	}
	mfix_abandon(f);
}

/* ---- workloads, made on the model ---- */

struct variant {
	const char *name;
	unsigned share;          /* of 2000 crash points */
	unsigned nops;
	unsigned maildir_pct;    /* the rest: random namespace operations */
	uint64_t max_msg;        /* largest message (one write is <= 1 MiB) */
	unsigned keep_percent;   /* chance of an unflushed block to survive: 0 = 50 */
	bool kill9;              /* process death: nothing unflushed is lost */
	bool sync;               /* -o sync */
	bool crash_recovery;     /* crash the recovery once more */
	unsigned commit_ms;
};

struct workload {
	struct fsop *ops;
	size_t n;
	struct snap *snaps;      /* snaps[i]: the tree after ops[0..i) */
};

static const struct gen_cfg RANDOM_OPS = {
	.max_nodes = 40, .max_write = 12000, .max_offset = 60000, .large_pct = 0,
	.fsyncs = true, .errors = false,
};

/* Apply a batch to the model; ops with a == 0 act on the batch's first
 * node (the file a delivery creates, the maildir a setup makes). */
static void add_batch(struct model *m, struct workload *w, struct fsop *batch, size_t n)
{
	for (size_t i = 0; i < n && w->n < MAX_OPS; i++) {
		struct fsop *op = &batch[i];
		if (op->a == 0)
			op->a = batch[0].newid;
		if (op->a == 0 || !model_node(m, op->a))
			continue;
		model_apply(m, op);
		w->ops[w->n++] = *op;
		model_snap(m, m->root, &w->snaps[w->n]);
	}
}

static void make_workload(const struct variant *v, uint64_t seed, struct workload *w)
{
	struct model m;
	model_init(&m);
	struct prng r;
	prng_seed(&r, seed);
	w->ops = calloc(MAX_OPS, sizeof(*w->ops));
	w->snaps = calloc(MAX_OPS + 1, sizeof(*w->snaps));
	w->n = 0;
	model_snap(&m, m.root, &w->snaps[0]);
	struct fsop batch[12];
	size_t n = gen_maildir_setup(m.root->id, "Maildir", batch);
	add_batch(&m, w, batch, n);
	struct maildir_ids md = { batch[0].newid, batch[1].newid, batch[2].newid, batch[3].newid };
	memset(batch, 0, sizeof(batch));
	batch[0] = (struct fsop){ .kind = OP_MKDIR, .a = m.root->id };
	snprintf(batch[0].name, sizeof(batch[0].name), "misc");
	add_batch(&m, w, batch, 1);
	struct area ar = { .tops = { batch[0].newid }, .ntops = 1 };
	for (unsigned counter = 0; w->n < v->nops; counter++) {
		if (prng_below(&r, 100) < v->maildir_pct) {
			n = gen_maildir_step(&m, &r, &md, counter, v->max_msg, batch);
		} else {
			gen_op(&m, &r, &ar, &RANDOM_OPS, &batch[0]);
			n = 1;
		}
		add_batch(&m, w, batch, n);
	}
	model_free(&m);
}

static void free_workload(struct workload *w)
{
	for (size_t i = 0; i <= w->n; i++)
		snap_free(&w->snaps[i]);
	free(w->snaps);
	free(w->ops);
}

/* ---- one crash point ---- */

struct point {
	const struct variant *v;
	int index;
	uint64_t seed;
	long long arm;           /* 0: no crash (calibration) */
	double recovery_frac;
};

#define PT_FMT "%s point %d (seed %llu, arm %lld)"
#define PT_ARGS(p) (p)->v->name, (p)->index, (unsigned long long)(p)->seed, (p)->arm

struct outcome {
	size_t completed, lower;     /* ops completed; prefix that must survive */
	bool inflight;
	char inflight_op[200];
};

static struct {
	unsigned points, mount_crashed, recovery_crashed, inflight_taken;
	uint64_t completed, lost;
} stats;

static int is_sync_op(enum fsop_kind k)
{
	return k == OP_FSYNC || k == OP_FSYNCDIR || k == OP_SYNCFS;
}

/* Run the workload until it fails (the power is gone) or ends. */
static void run_workload(struct mfix *f, struct fs *fs, const struct point *p,
			 const struct workload *w, struct outcome *out, struct lookups *lk)
{
	struct inomap im;
	inomap_init(&im, 4 * MAX_OPS + 16);
	inomap_set(&im, 1, ROOT);
	char detail[300], desc[200];
	for (size_t i = 0; i < w->n; i++) {
		const struct fsop *op = &w->ops[i];
		detail[0] = 0;
		int rc = fsop_exec(fs, op, &im, lk, detail, sizeof(detail));
		if (rc != op->expect && !(op->alt && rc == op->alt)) {
			CHECK(crashed(f), PT_FMT ": before the power cut, op %zu %s: engine %d, model %d %s",
			      PT_ARGS(p), i, fsop_describe(op, desc, sizeof(desc)), rc, op->expect, detail);
			out->inflight = true;
			fsop_describe(op, out->inflight_op, sizeof(out->inflight_op));
			break;
		}
		out->completed = i + 1;
		if (is_sync_op(op->kind) || p->v->sync || p->v->kill9)
			out->lower = i + 1;
		if ((i * 2654435761u + p->seed) % 3 == 0)
			lookups_forget(fs, lk);
	}
	inomap_free(&im);
}

/* mirror_open + fs_mount over the current wrappers; false if the power
 * went meanwhile (then nothing is left open). */
static bool bring_up(struct mfix *f, const struct fs_opts *o, struct fs **fs, const char *what,
		     const struct point *p)
{
	struct cat_error err;
	cat_error_clear(&err);
	struct bdev *legs[2] = { f->fault[0], f->fault[1] };
	*fs = NULL;
	int r = mirror_open(legs, &f->cfg.mopts, &f->m, &err);
	if (r) {
		CHECK(crashed(f), PT_FMT ": %s: mirror_open failed before the power cut: %d (%s)",
		      PT_ARGS(p), what, r, err.msg);
		f->m = NULL;
		f->fault[0] = f->fault[1] = NULL;
		return false;
	}
	f->dev = mirror_bdev(f->m);
	struct resync_result res;
	r = recovery_resync(f->m, NULL, NULL, &res, &err);
	CHECK(r == 0 || crashed(f), PT_FMT ": %s: recovery_resync: %d (%s)", PT_ARGS(p), what, r, err.msg);
	r = r ? r : fs_mount(f->dev, o, fs, &err);
	if (r) {
		CHECK(crashed(f), PT_FMT ": %s: fs_mount failed before the power cut: %d (%s)",
		      PT_ARGS(p), what, r, err.msg);
		*fs = NULL;
		return false;
	}
	return true;
}

static struct fs_opts mount_opts(const struct variant *v)
{
	return (struct fs_opts){ .cache_bytes = 8u << 20, .sync = v->sync,
				 .commit_interval_ms = v->commit_ms };
}

/* Recovery with the clock armed at `arm` (0: not armed), power cut at the
 * end in any case; returns the disk operations it made. */
static long long crashed_recovery(struct mfix *f, const struct point *p, long long arm)
{
	f->cfg.crash = true;
	crash_clock_init(&f->clock);
	mfix_wrap(f);
	if (arm > 0)
		crash_clock_arm(&f->clock, arm);
	struct fs_opts o = mount_opts(p->v);
	struct fs *fs = NULL;
	long long used = 0;
	if (bring_up(f, &o, &fs, "crashed recovery", p) || !arm)
		used = ops_counted(f);
	power_cut(f, &fs, NULL);
	return used;
}

/* Disk operations of one uncrashed recovery, measured on the calibration
 * run (the recovery crash points are spread over 1.5 times that). */
static long long recovery_estimate;

static void crash_the_recovery(struct mfix *f, const struct point *p)
{
	long long arm = 1 + (long long)(p->recovery_frac * 1.5 * (double)recovery_estimate);
	long long n = crashed_recovery(f, p, arm);
	if (!n)
		stats.recovery_crashed++;
}

static void remove_tree(struct fs *fs, uint64_t dir, const struct point *p)
{
	struct dlist l = { 0 };
	CHECK(fs_list(fs, dir, 50, &l) == 0, PT_FMT ": readdir while cleaning up", PT_ARGS(p));
	for (size_t i = 2; i < l.n; i++) {
		int r;
		if (l.e[i].mode == S_IFDIR) {
			remove_tree(fs, l.e[i].ino, p);
			r = fs_rmdir(fs, dir, l.e[i].name);
		} else {
			r = fs_unlink(fs, dir, l.e[i].name);
		}
		CHECK(r == 0, PT_FMT ": removing '%s' after recovery: %d", PT_ARGS(p), l.e[i].name, r);
	}
	dlist_free(&l);
}

/* Everything deleted: the counts of the fresh filesystem come back. */
static void check_no_leak(struct fs *fs, const struct point *p, const char *when)
{
	uint64_t fb, fi, rb, ob;
	fs_counts(fs, &fb, &fi, &rb, &ob);
	CHECK(fi == img.free_inodes, PT_FMT ": %s: %llu inodes free, %llu on the fresh filesystem",
	      PT_ARGS(p), when, (unsigned long long)fi, (unsigned long long)img.free_inodes);
	CHECK(fb + (rb - img.root_blocks) + (ob - img.orphan_blocks) == img.free_blocks,
	      PT_FMT ": %s: %llu blocks free (root dir %llu, orphan dir %llu blocks), %llu on the "
	      "fresh filesystem (%llu, %llu)", PT_ARGS(p), when, (unsigned long long)fb,
	      (unsigned long long)rb, (unsigned long long)ob, (unsigned long long)img.free_blocks,
	      (unsigned long long)img.root_blocks, (unsigned long long)img.orphan_blocks);
}

/* The recovered tree must be one of snaps[lower .. completed (+1)]. */
static void check_tree(struct fs *fs, const struct point *p, const struct workload *w,
		       const struct outcome *out)
{
	struct snap got;
	char msg[700], msg2[700];
	struct prng r;
	prng_seed(&r, p->seed);
	int rc = fs_snap(fs, ROOT, ROOT, &got, &r, msg, sizeof(msg));
	CHECK(rc == 0, PT_FMT ": walking the recovered tree: %s", PT_ARGS(p), msg);
	size_t hi = out->completed + (out->inflight ? 1 : 0);
	if (hi > w->n)
		hi = w->n;
	for (size_t k = hi + 1; k-- > out->lower;) {
		if (snap_diff(&w->snaps[k], &got, msg, sizeof(msg)) == 0) {
			stats.completed += out->completed;
			stats.lost += out->completed > k ? out->completed - k : 0;
			stats.inflight_taken += k > out->completed;
			snap_free(&got);
			return;
		}
	}
	snap_diff(&w->snaps[out->completed], &got, msg, sizeof(msg));
	snap_diff(&w->snaps[out->lower], &got, msg2, sizeof(msg2));
	char desc[200] = "";
	if (out->lower > 0)
		fsop_describe(&w->ops[out->lower - 1], desc, sizeof(desc));
	CHECK(0, PT_FMT ": the recovered tree is no prefix of ops [%zu, %zu]%s%s (completed %zu; "
	      "last sync op: %s). Against all completed ops: %s. Against the lower bound: %s",
	      PT_ARGS(p), out->lower, hi, out->inflight ? ", in flight: " : "",
	      out->inflight ? out->inflight_op : "", out->completed, desc, msg, msg2);
}

/* Run one crash point; returns the disk operations made (calibration). */
static long long run_point(const struct point *p)
{
	const struct variant *v = p->v;
	struct workload w;
	make_workload(v, p->seed, &w);
	struct mfix f;
	fixture_from_image(&f, p->seed, v->kill9 ? 100 : v->keep_percent);

	/* --- until the power cut --- */
	crash_clock_init(&f.clock);
	mfix_wrap(&f);
	if (p->arm > 0)
		crash_clock_arm(&f.clock, p->arm);
	struct fs_opts o = mount_opts(v);
	struct fs *fs = NULL;
	struct lookups lk = { 0 };
	struct outcome out = { 0 };
	long long used = 0;
	if (bring_up(&f, &o, &fs, "first mount", p)) {
		run_workload(&f, fs, p, &w, &out, &lk);
		used = ops_counted(&f);
	} else {
		stats.mount_crashed++;
	}
	power_cut(&f, &fs, &lk);
	lookups_free(&lk);
	if (!p->arm) {
		if (v->crash_recovery)
			recovery_estimate = crashed_recovery(&f, p, 0);
		goto done;
	}

	if (v->crash_recovery)
		crash_the_recovery(&f, p);

	/* --- recovery and checks --- */
	f.cfg.crash = false;
	struct cat_error err;
	int r = mfix_open(&f, &err);
	CHECK(r == 0, PT_FMT ": mirror_open after the crash: %d (%s)", PT_ARGS(p), r, err.msg);
	struct resync_result res;
	r = recovery_resync(f.m, NULL, NULL, &res, &err);
	CHECK(r == 0, PT_FMT ": recovery_resync: %d (%s)", PT_ARGS(p), r, err.msg);
	r = fs_mount(f.dev, &o, &fs, &err);
	CHECK(r == 0, PT_FMT ": fs_mount after the crash: %d (%s)", PT_ARGS(p), r, err.msg);
	check_tree(fs, p, &w, &out);
	remove_tree(fs, ROOT, p);
	check_no_leak(fs, p, "after deleting everything");
	CHECK(fs_unmount(fs) == 0, PT_FMT ": unmount after recovery", PT_ARGS(p));
	CHECK(fs_mount(f.dev, &o, &fs, &err) == 0, PT_FMT ": mount after cleanup: %s", PT_ARGS(p),
	      err.msg);
	check_no_leak(fs, p, "after a remount");
	CHECK(fs_unmount(fs) == 0, PT_FMT ": unmount", PT_ARGS(p));
	CHECK(mfix_close(&f) == 0, PT_FMT ": mirror_close", PT_ARGS(p));
	stats.points++;
done:
	mfix_destroy(&f);
	free_workload(&w);
	return used;
}

static unsigned total_points(void)
{
	const char *e = getenv("CATAMARAN_FS_CRASH_POINTS");
	long n = e ? strtol(e, NULL, 0) : 0;
	return n > 0 ? (unsigned)n : 2000u;
}

static uint64_t base_seed(void)
{
	const char *e = getenv("CATAMARAN_FS_CRASH_SEED");
	return e ? strtoull(e, NULL, 0) : 0xF5C0A5ull;
}

static void run_variant(const struct variant *v)
{
	mfix_quiet();
	make_image(NULL);
	unsigned npoints = total_points() * v->share / 2000u;
	if (npoints < 1)
		npoints = 1;
	struct point cal = { .v = v, .index = -1, .seed = base_seed() ^ 0xCA1 };
	long long est = run_point(&cal);
	CHECK(est > 20, "%s: calibration made only %lld disk operations", v->name, est);
	struct prng r;
	prng_seed(&r, base_seed() ^ (uint64_t)v->share * 7919u ^ (uint64_t)v->nops);
	memset(&stats, 0, sizeof(stats));
	const char *only = getenv("CATAMARAN_FS_CRASH_ONLY");
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < npoints; i++) {
		struct point p = { .v = v, .index = (int)i };
		p.seed = base_seed() * 1000003u + i * 7919u + v->share;
		p.arm = 1 + (long long)((uint64_t)est * i / npoints) +
			(long long)prng_below(&r, (uint64_t)est / npoints + 1);
		p.recovery_frac = (double)prng_below(&r, 1000) / 1000.0;
		if (only && strtol(only, NULL, 0) != (long)i)
			continue;
		run_point(&p);
	}
	cr_log_info("%s: %u crash points in %.1f s (calibrated %lld disk ops): %u crashed in the "
		    "first mount, %u recoveries crashed; %llu ops completed, %llu of them lost "
		    "(allowed), %u in-flight ops found applied",
		    v->name, stats.points, (double)(now_ns() - t0) / 1e9, est, stats.mount_crashed,
		    stats.recovery_crashed, (unsigned long long)stats.completed,
		    (unsigned long long)stats.lost, stats.inflight_taken);
	free_image();
}

/*                                    name  share nops mail% max_msg keep kill9 sync crashrec ms */
static const struct variant V_MAILDIR = { "maildir", 600, 160, 100, 200000, 0, false, false, false, 0 };
static const struct variant V_MIXED = { "mixed", 600, 160, 50, 100000, 0, false, false, false, 2 };
static const struct variant V_LARGE = { "large-writes", 200, 100, 100, 1u << 20, 0, false, false, false, 0 };
static const struct variant V_RECOVERY = { "crashed-recovery", 300, 160, 60, 150000, 0, false, false, true, 0 };
static const struct variant V_SYNC = { "sync-mount", 150, 120, 60, 100000, 0, false, true, false, 0 };
static const struct variant V_KILL9 = { "kill-9", 150, 160, 60, 100000, 0, true, false, false, 0 };

Test(fs_crash, maildir, .timeout = 900) { run_variant(&V_MAILDIR); }
Test(fs_crash, mixed, .timeout = 900) { run_variant(&V_MIXED); }
Test(fs_crash, large_writes, .timeout = 900) { run_variant(&V_LARGE); }
Test(fs_crash, crash_during_recovery, .timeout = 900) { run_variant(&V_RECOVERY); }
Test(fs_crash, sync_mount, .timeout = 900) { run_variant(&V_SYNC); }
Test(fs_crash, kill9, .timeout = 900) { run_variant(&V_KILL9); }

/* ---- targeted findings ---- */

/* A volume on the fixture's crash disks, mounted. */
static struct fs *targeted_mount(struct mfix *f, const struct fs_format_opts *fo,
				 const struct fs_opts *o, bool lose_unflushed)
{
	struct mfix_cfg c = { .disk_blocks = { DISK_BLOCKS, DISK_BLOCKS }, .crash = true,
			      .crash_seed = { 11, 12 }, .lose_unflushed = lose_unflushed,
			      .mopts = { .no_cleaner = true } };
	mfix_init(f, &c);
	struct cat_error err;
	cat_error_clear(&err);
	int r = fs_format(f->dev, fo, &err);
	CHECK(r == 0, "fs_format: %d (%s)", r, err.msg);
	struct fs *fs;
	r = fs_mount(f->dev, o, &fs, &err);
	CHECK(r == 0, "fs_mount: %d (%s)", r, err.msg);
	return fs;
}

static struct fs *targeted_recover(struct mfix *f, struct fs **fs)
{
	power_cut(f, fs, NULL);
	f->cfg.crash = false;
	struct cat_error err;
	int r = mfix_open(f, &err);
	CHECK(r == 0, "mirror_open after the crash: %d (%s)", r, err.msg);
	struct fs_opts o = { .cache_bytes = 8u << 20 };
	struct fs *out;
	r = fs_mount(f->dev, &o, &out, &err);
	CHECK(r == 0, "fs_mount after the crash: %d (%s)", r, err.msg);
	return out;
}

static int make_file(struct fs *fs, uint64_t dir, const char *name, size_t len, uint64_t *ino)
{
	struct fs_attr a;
	uint64_t fh;
	int r = fs_create(fs, &CTX, dir, name, 0644, O_CREAT | O_EXCL | O_RDWR, &a, &fh);
	if (r)
		return r;
	fs_forget(fs, a.ino, 1);
	if (ino)
		*ino = a.ino;
	char *buf = malloc(len + 1);
	memset(buf, 'x', len);
	ssize_t w = len ? fs_write(fs, a.ino, fh, buf, len, 0) : 0;
	free(buf);
	r = fs_release(fs, a.ino, fh);
	return w < 0 ? (int)w : r;
}

static bool exists(struct fs *fs, uint64_t dir, const char *name)
{
	struct fs_attr a;
	int r = fs_lookup(fs, dir, name, &a);
	if (!r)
		fs_forget(fs, a.ino, 1);
	return r == 0;
}

/*
 * fs_fsync(F) waits only for F's newest transaction. When that one is
 * already flushed it returns at once, and operations that returned before
 * it (written to the log, not flushed) are lost with the power - against
 * DESIGN.md §1 ("everything that returned before a completed fsync ... is
 * present"). Same for fs_fsyncdir of a directory that did not change.
 * (The crash disks here lose every unflushed block.)
 */
Test(fs_crash, fsync_makes_earlier_operations_durable, .timeout = 60)
{
	mfix_quiet();
	struct mfix f;
	struct fs_opts o = { .cache_bytes = 8u << 20 };
	struct fs *fs = targeted_mount(&f, NULL, &o, true);
	uint64_t fino, fh;
	CHECK(make_file(fs, ROOT, "F", 0, &fino) == 0, "create F");
	CHECK(fs_open(fs, fino, O_RDWR, &fh) == 0, "open F");            /* F stays in memory */
	CHECK(fs_write(fs, fino, fh, "data", 4, 0) == 4, "write F");
	CHECK(fs_fsync(fs, fino, fh, false) == 0, "fsync F");
	CHECK(make_file(fs, ROOT, "G", 100, NULL) == 0, "create G");      /* not flushed */
	CHECK(fs_fsync(fs, fino, fh, false) == 0, "fsync F again");      /* must flush G too */
	crash_disk_crash(f.crash[0]);
	crash_disk_crash(f.crash[1]);
	fs_release(fs, fino, fh);
	fs = targeted_recover(&f, &fs);
	bool g = exists(fs, ROOT, "G");
	CHECK(exists(fs, ROOT, "F"), "F lost");
	fs_unmount(fs);
	mfix_destroy(&f);
	CHECK(g, "G (created before a completed fsync) lost at the power cut");
}

Test(fs_crash, fsyncdir_makes_earlier_operations_durable, .timeout = 60)
{
	mfix_quiet();
	struct mfix f;
	struct fs_opts o = { .cache_bytes = 8u << 20 };
	struct fs *fs = targeted_mount(&f, NULL, &o, true);
	struct fs_attr a;
	CHECK(fs_mkdir(fs, &CTX, ROOT, "new", 0755, &a) == 0, "mkdir");
	uint64_t newd = a.ino;
	CHECK(fs_fsyncdir(fs, newd, 0, false) == 0, "fsyncdir new");
	CHECK(make_file(fs, ROOT, "G", 100, NULL) == 0, "create G");
	CHECK(fs_fsyncdir(fs, newd, 0, false) == 0, "fsyncdir new again");
	fs = targeted_recover(&f, &fs);
	bool g = exists(fs, ROOT, "G");
	fs_unmount(fs);
	mfix_destroy(&f);
	CHECK(g, "G (created before a completed fsyncdir) lost at the power cut");
}

/*
 * A transaction that changed no block still uses up a sequence number
 * (journal.c commit_empty), but nothing is written to the log for it:
 * replay (replay_log) expects seq N at the next position, finds N + 1 and
 * stops, so every transaction after the empty one is ignored after a crash,
 * even after syncfs. An empty transaction: a create that fails with ENOSPC
 * in alloc_inode (all inodes used), committed alone.
 */
Test(fs_crash, empty_transaction_does_not_end_replay, .timeout = 60)
{
	mfix_quiet();
	struct mfix f;
	struct fs_format_opts fo = { .ninodes = 64, .journal_blocks = 3000 }; /* no checkpoint */
	struct fs_opts o = { .cache_bytes = 8u << 20, .commit_interval_ms = 5 };
	struct fs *fs = targeted_mount(&f, &fo, &o, false);
	char name[32];
	int n = 0, r = 0;
	while (n < 200) {
		snprintf(name, sizeof(name), "f%d", n);
		if ((r = make_file(fs, ROOT, name, 0, NULL)))
			break;
		n++;
	}
	CHECK(r == -ENOSPC, "filling the inodes: %d after %d files", r, n);
	usleep(300 * 1000);   /* the failed create commits alone (the committer wakes every 100 ms) */
	CHECK(fs_unlink(fs, ROOT, "f0") == 0, "unlink f0");
	CHECK(make_file(fs, ROOT, "after", 10, NULL) == 0, "create after");
	CHECK(fs_syncfs(fs) == 0, "syncfs");
	struct fs_stats st;
	fs_get_stats(fs, &st);
	cr_log_info("empty transaction: %llu commits, %llu checkpoints, %llu ops",
		    (unsigned long long)st.commits, (unsigned long long)st.checkpoints,
		    (unsigned long long)st.ops);
	fs = targeted_recover(&f, &fs);
	bool after = exists(fs, ROOT, "after"), f0 = exists(fs, ROOT, "f0");
	fs_unmount(fs);
	mfix_destroy(&f);
	CHECK(after && !f0, "after syncfs and a power cut: 'after' %s, 'f0' %s",
	      after ? "present" : "LOST", f0 ? "STILL THERE" : "gone");
}

/*
 * A file unlinked while open survives the power cut as an orphan; the next
 * mount frees it (and its blocks).
 */
Test(fs_crash, open_unlinked_file_reclaimed_after_crash, .timeout = 60)
{
	mfix_quiet();
	make_image(NULL);
	struct mfix f;
	fixture_from_image(&f, 3, 50);
	crash_clock_init(&f.clock);
	mfix_wrap(&f);
	struct point p = { .v = &V_MAILDIR, .index = -1, .seed = 3, .arm = 1 };
	struct fs_opts o = { .cache_bytes = 8u << 20 };
	struct fs *fs;
	CHECK(bring_up(&f, &o, &fs, "mount", &p), "mount");
	struct fs_attr a;
	uint64_t fh;
	CHECK(fs_create(fs, &CTX, ROOT, "open", 0644, O_CREAT | O_EXCL | O_RDWR, &a, &fh) == 0, "create");
	char *buf = calloc(1, 1 << 20);
	CHECK(fs_write(fs, a.ino, fh, buf, 1 << 20, 0) == 1 << 20, "write");
	free(buf);
	CHECK(fs_fsync(fs, a.ino, fh, false) == 0, "fsync");
	CHECK(fs_unlink(fs, ROOT, "open") == 0, "unlink");
	CHECK(fs_syncfs(fs) == 0, "syncfs");
	crash_disk_crash(f.crash[0]);
	crash_disk_crash(f.crash[1]);
	fs_release(fs, a.ino, fh);         /* after the power went: frees the handle only */
	power_cut(&f, &fs, NULL);
	f.cfg.crash = false;
	struct cat_error err;
	CHECK(mfix_open(&f, &err) == 0, "mirror_open: %s", err.msg);
	CHECK(fs_mount(f.dev, &o, &fs, &err) == 0, "fs_mount: %s", err.msg);
	struct fs_stats st;
	fs_get_stats(fs, &st);
	CHECK(st.orphans_reclaimed == 1, "%llu orphans reclaimed", (unsigned long long)st.orphans_reclaimed);
	check_no_leak(fs, &p, "after the orphan was reclaimed");
	fs_unmount(fs);
	mfix_close(&f);
	mfix_destroy(&f);
	free_image();
}

/*
 * fs.h: "fs_write of more than FS_WRITE_ATOMIC bytes is split into several
 * atomic steps" - so a write of FS_WRITE_ATOMIC bytes is one transaction.
 * fs_write makes steps of (write_step_blocks - 1) blocks (room for an
 * unaligned start): an aligned 1 MiB write takes two transactions even on
 * a large volume, and with the 1024-block journal of volumes below about
 * 800 MiB (at most 253 credits per transaction, 3 per block) steps are 78
 * blocks (312 KiB). A power cut between two steps leaves the write torn;
 * the large_writes crash variant finds that.
 */
static unsigned write_transactions(uint64_t volume_blocks, size_t len, off_t off)
{
	struct bdev *d = mem_disk_create(volume_blocks, "fs-write-atomic");
	struct cat_error err;
	cat_error_clear(&err);
	CHECK(fs_format(d, NULL, &err) == 0, "fs_format: %s", err.msg);
	struct fs *fs;
	struct fs_opts o = { .cache_bytes = 16u << 20 };
	CHECK(fs_mount(d, &o, &fs, &err) == 0, "fs_mount: %s", err.msg);
	struct fs_attr a;
	uint64_t fh;
	CHECK(fs_create(fs, &CTX, ROOT, "f", 0644, O_CREAT | O_EXCL | O_RDWR, &a, &fh) == 0, "create");
	CHECK(fs_syncfs(fs) == 0, "syncfs");
	struct fs_stats s0, s1;
	fs_get_stats(fs, &s0);
	char *buf = calloc(1, len);
	CHECK(fs_write(fs, a.ino, fh, buf, len, off) == (ssize_t)len, "write");
	free(buf);
	CHECK(fs_syncfs(fs) == 0, "syncfs");
	fs_get_stats(fs, &s1);
	fs_release(fs, a.ino, fh);
	fs_unmount(fs);
	bdev_close(d);
	return (unsigned)(s1.ops - s0.ops);
}

Test(fs_crash, write_of_1MiB_is_one_transaction, .timeout = 60)
{
	mfix_quiet();
	unsigned big = write_transactions(1u << 18, FS_WRITE_ATOMIC, 0);          /* 1 GiB */
	unsigned big_unaligned = write_transactions(1u << 18, FS_WRITE_ATOMIC - 4096, 100);
	unsigned small = write_transactions(VOL_BLOCKS, FS_WRITE_ATOMIC, 0);       /* 32 MiB */
	CHECK(big == 1 && big_unaligned == 1 && small == 1,
	      "transactions for one write of FS_WRITE_ATOMIC bytes: %u on 1 GiB (%u unaligned, "
	      "1 MiB - 4 KiB at offset 100), %u on 32 MiB", big, big_unaligned, small);
}
