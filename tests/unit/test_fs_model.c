/*
 * test_fs_model.c - the filesystem engine (core/fs/fs.h) against an
 * in-memory reference model (helpers/fs_model.h), on a memory disk.
 *
 * Random sequences of mkdir, create, writes at random offsets (also beyond
 * the end: sparse), truncates, link, unlink, rmdir, rename (plain,
 * RENAME_NOREPLACE, RENAME_EXCHANGE; directory moves and attempted loops),
 * symlink/readlink, lookups of missing names and requests that must fail go
 * to the model and the engine alike: the errno must agree, and after every
 * step the whole tree (readdir + lookup + getattr + read) must equal the
 * model's. The filesystem is remounted half-way and at the end. A threaded
 * variant gives each thread its own directory plus its own names in a
 * shared one (remounted between four phases). Then edge cases: a 100 000-
 * entry directory, readdir while entries come and go, a sparse file beyond
 * 4 GiB, 255/256-byte names, ENOSPC (also half-way through a mkdir: nothing
 * may leak), files unlinked while open, inode numbers reused at once, errno
 * of wrong requests, and three deadlocks (see the tests' comments).
 *
 * Rerun: a failure names the seed and step. CATAMARAN_FS_MODEL_SEED=<seed>
 * runs only that seed in the single-threaded test (the threaded test's seed
 * is its base, also from that variable); CATAMARAN_FS_MODEL_STEPS changes
 * the steps per seed. CATAMARAN_TEST_LOG=1 keeps the engine's log messages.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockdev/testdev/mem_disk.h"
#include "core/base/error.h"
#include "core/base/log.h"
#include "core/base/util.h"
#include "core/fs/fs.h"
#include "core/fs/layout.h"
#include "tests/unit/helpers/fs_model.h"
#include "tests/unit/helpers/fs_tree.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

/* Evaluate once; call Criterion only on failure (it is slow in loops). */
#define CHECK(cond, ...)                         \
	do {                                     \
		if (!(cond))                     \
			cr_assert_fail(__VA_ARGS__); \
	} while (0)

#define MiB (1ull << 20)
#define ROOT FS_ROOT_INO

static const struct fs_ctx CTX = { 1000, 1000 };

static void quiet_sink(enum cat_log_level level, const char *msg)
{
	(void)level, (void)msg;
}

static void quiet(void)
{
	const char *e = getenv("CATAMARAN_TEST_LOG");
	if (!e || !*e || !strcmp(e, "0"))
		cat_log_set_sink(quiet_sink, CAT_LOG_ERROR);
}

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *e = getenv(name);
	return e && *e ? strtoull(e, NULL, 0) : def;
}

/* ---- a filesystem on a memory disk ---- */

struct vol {
	struct bdev *disk;
	struct fs *fs;
	struct fs_opts opts;
};

static void vol_mount(struct vol *v)
{
	struct cat_error err;
	cat_error_clear(&err);
	int r = fs_mount(v->disk, &v->opts, &v->fs, &err);
	CHECK(r == 0, "fs_mount: %d (%s)", r, err.msg);
}

static void vol_open(struct vol *v, uint64_t bytes, const struct fs_format_opts *fo)
{
	quiet();
	memset(v, 0, sizeof(*v));
	v->disk = mem_disk_create(bytes / 4096, "fs-model-mem");
	CHECK(v->disk != NULL, "mem_disk_create");
	struct cat_error err;
	cat_error_clear(&err);
	int r = fs_format(v->disk, fo, &err);
	CHECK(r == 0, "fs_format: %d (%s)", r, err.msg);
	v->opts.cache_bytes = 32 * MiB;
	vol_mount(v);
}

static void vol_remount(struct vol *v)
{
	int r = fs_unmount(v->fs);
	v->fs = NULL;
	CHECK(r == 0, "fs_unmount: %d", r);
	vol_mount(v);
}

static void vol_close(struct vol *v)
{
	if (v->fs) {
		int r = fs_unmount(v->fs);
		v->fs = NULL;
		CHECK(r == 0, "fs_unmount: %d", r);
	}
	bdev_close(v->disk);
}

static uint64_t free_blocks(struct fs *fs)
{
	struct statvfs st;
	fs_statfs(fs, &st);
	return st.f_bfree;
}

static uint64_t free_inodes(struct fs *fs)
{
	struct statvfs st;
	fs_statfs(fs, &st);
	return st.f_ffree;
}

/* ---- the model-based run ---- */

static const struct gen_cfg GEN = {
	.max_nodes = 90, .max_write = 12000, .max_offset = 100000,
	.large_pct = 3, .max_large = 600000, .fsyncs = true, .errors = true,
};

/* What the random runs did: operations per kind, and how many failed. */
static struct {
	atomic_uint ok[OP_SYNCFS + 1], failed[OP_SYNCFS + 1];
} stats;

static void count_op(const struct fsop *op, int rc)
{
	atomic_fetch_add(rc == 0 ? &stats.ok[op->kind] : &stats.failed[op->kind], 1);
}

static void log_stats(const char *what)
{
	char buf[1024];
	size_t n = 0;
	for (int k = OP_MKDIR; k <= OP_SYNCFS; k++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %s %u/%u", fsop_name(k),
				      atomic_load(&stats.ok[k]), atomic_load(&stats.failed[k]));
	cr_log_info("%s: operations ok/failed:%s", what, buf);
	memset(&stats, 0, sizeof(stats));
}

/* One operation on model and engine; "" or what went wrong. */
static void step_op(struct fs *fs, struct model *m, struct inomap *im, struct lookups *lk,
		    struct fsop *op, char *why, size_t len)
{
	char detail[300] = "", desc[200];
	model_apply(m, op);
	int rc = fsop_exec(fs, op, im, lk, detail, sizeof(detail));
	count_op(op, rc);
	why[0] = 0;
	if (rc == FSOP_WRONG)
		snprintf(why, len, "%s: %s", fsop_describe(op, desc, sizeof(desc)), detail);
	else if (rc != op->expect && !(op->alt && rc == op->alt))
		snprintf(why, len, "%s: engine %d, model %d", fsop_describe(op, desc, sizeof(desc)),
			 rc, op->expect);
}

static void check_tree(struct fs *fs, struct model *m, struct prng *r, uint64_t seed,
		       unsigned step, const char *when)
{
	char msg[700];
	int rc = fs_compare(fs, ROOT, ROOT, m, m->root, r, msg, sizeof(msg));
	CHECK(rc == 0, "seed %llu step %u (%s): tree differs from the model: %s",
	      (unsigned long long)seed, step, when, msg);
}

static void run_seed(uint64_t seed, unsigned steps)
{
	struct vol v;
	vol_open(&v, 64 * MiB, NULL);
	struct model m;
	model_init(&m);
	struct inomap im;
	inomap_init(&im, 4 * (size_t)steps + 64);
	inomap_set(&im, m.root->id, ROOT);
	struct lookups lk = { 0 };
	struct prng r;
	prng_seed(&r, seed);
	struct area ar = { .tops = { m.root->id }, .ntops = 1 };
	char why[600];
	for (unsigned i = 0; i < steps; i++) {
		struct fsop op;
		gen_op(&m, &r, &ar, &GEN, &op);
		step_op(v.fs, &m, &im, &lk, &op, why, sizeof(why));
		CHECK(!why[0], "seed %llu step %u: %s", (unsigned long long)seed, i, why);
		if (prng_below(&r, 2))
			lookups_forget(v.fs, &lk);
		check_tree(v.fs, &m, &r, seed, i, "after the step");
		if (i == steps / 2) {
			lookups_forget(v.fs, &lk);
			vol_remount(&v);
			check_tree(v.fs, &m, &r, seed, i, "after a remount");
		}
	}
	lookups_forget(v.fs, &lk);
	vol_remount(&v);
	check_tree(v.fs, &m, &r, seed, steps, "after the final remount");
	vol_close(&v);
	lookups_free(&lk);
	inomap_free(&im);
	model_free(&m);
}

Test(fs_model, random_single_thread, .timeout = 600)
{
	uint64_t only = env_u64("CATAMARAN_FS_MODEL_SEED", 0);
	unsigned steps = (unsigned)env_u64("CATAMARAN_FS_MODEL_STEPS", 1000);
	uint64_t t0 = now_ns();
	unsigned nseeds = 0;
	for (uint64_t seed = 1; seed <= 8; seed++) {
		if (only && seed != only)
			continue;
		run_seed(only ? only : seed, steps);
		nseeds++;
	}
	if (only && !nseeds)
		run_seed(only, steps);
	cr_log_info("random_single_thread: %u seeds x %u steps in %.1f s", nseeds ? nseeds : 1,
		    steps, (double)(now_ns() - t0) / 1e9);
	log_stats("random_single_thread");
}

/* ---- threads: own directory each, plus own names in a shared one ---- */

#define NTHREADS 4

struct worker {
	int id;
	struct fs *fs;
	struct model *m;
	pthread_mutex_t *mu;
	struct inomap *im;
	struct area ar;
	struct prng r;
	struct lookups lk;
	unsigned steps, done;
	uint64_t seed;
	char err[700];
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char detail[300], desc[200];
	for (unsigned i = 0; i < w->steps && !w->err[0]; i++, w->done++) {
		struct fsop op;
		pthread_mutex_lock(w->mu);
		gen_op(w->m, &w->r, &w->ar, &GEN, &op);
		model_apply(w->m, &op);
		pthread_mutex_unlock(w->mu);
		detail[0] = 0;
		int rc = fsop_exec(w->fs, &op, w->im, &w->lk, detail, sizeof(detail));
		count_op(&op, rc);
		if (rc == FSOP_WRONG || (rc != op.expect && !(op.alt && rc == op.alt)))
			snprintf(w->err, sizeof(w->err), "thread %d step %u: %s: engine %d, model %d %s",
				 w->id, w->done, fsop_describe(&op, desc, sizeof(desc)), rc, op.expect,
				 detail);
		if (prng_below(&w->r, 4) == 0)
			lookups_forget(w->fs, &w->lk);
	}
	return NULL;
}

static void run_workers(struct worker *w, struct fs *fs, uint64_t seed)
{
	pthread_t t[NTHREADS];
	for (int i = 0; i < NTHREADS; i++) {
		w[i].fs = fs;
		CHECK(pthread_create(&t[i], NULL, worker_main, &w[i]) == 0, "pthread_create");
	}
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < NTHREADS; i++) {
		CHECK(!w[i].err[0], "threads, base seed %llu: %s", (unsigned long long)seed, w[i].err);
		lookups_forget(fs, &w[i].lk);
	}
}

/* mkdir in both, returning the model id */
static uint64_t both_mkdir(struct fs *fs, struct model *m, struct inomap *im, struct lookups *lk,
			   uint64_t parent, const char *name)
{
	struct fsop op = { .kind = OP_MKDIR, .a = parent };
	snprintf(op.name, sizeof(op.name), "%s", name);
	char why[600];
	step_op(fs, m, im, lk, &op, why, sizeof(why));
	CHECK(!why[0], "%s", why);
	return op.newid;
}

#define PHASES 4

Test(fs_model, random_threads, .timeout = 600)
{
	uint64_t seed = env_u64("CATAMARAN_FS_MODEL_SEED", 77);
	unsigned steps = (unsigned)env_u64("CATAMARAN_FS_MODEL_STEPS", 1000) * 10;
	struct vol v;
	vol_open(&v, 128 * MiB, NULL);
	struct model m;
	model_init(&m);
	struct inomap im;
	inomap_init(&im, 4 * (size_t)steps * NTHREADS + 64);
	inomap_set(&im, m.root->id, ROOT);
	struct lookups lk = { 0 };
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	uint64_t shared = both_mkdir(v.fs, &m, &im, &lk, m.root->id, "shared");
	struct worker w[NTHREADS];
	memset(w, 0, sizeof(w));
	for (int i = 0; i < NTHREADS; i++) {
		char name[16];
		snprintf(name, sizeof(name), "t%d", i);
		w[i] = (struct worker){ .id = i, .m = &m, .mu = &mu, .im = &im, .seed = seed };
		w[i].ar = (struct area){ .tops = { both_mkdir(v.fs, &m, &im, &lk, m.root->id, name) },
					 .ntops = 1, .shared = shared };
		snprintf(w[i].ar.prefix, sizeof(w[i].ar.prefix), "t%d.", i);
		prng_seed(&w[i].r, seed * 1000 + (uint64_t)i);
	}
	lookups_forget(v.fs, &lk);
	struct prng r;
	prng_seed(&r, seed);
	uint64_t t0 = now_ns();
	for (unsigned ph = 0; ph < PHASES; ph++) {
		for (int i = 0; i < NTHREADS; i++)
			w[i].steps = steps / PHASES;
		run_workers(w, v.fs, seed);
		check_tree(v.fs, &m, &r, seed, w[0].done, "threads, end of a phase");
		vol_remount(&v);
		check_tree(v.fs, &m, &r, seed, w[0].done, "threads, after a remount");
	}
	cr_log_info("random_threads: %d threads x %u steps in %.1f s", NTHREADS, steps,
		    (double)(now_ns() - t0) / 1e9);
	log_stats("random_threads");
	vol_close(&v);
	for (int i = 0; i < NTHREADS; i++)
		lookups_free(&w[i].lk);
	lookups_free(&lk);
	inomap_free(&im);
	model_free(&m);
}

/* ---- a directory of 100 000 entries ---- */

#define BIG_N 100000
#define BIG_THREADS 4

struct big_arg {
	struct fs *fs;
	uint64_t dir;
	int from, to;
	int rc, at;
};

static void big_name(int i, char *buf, size_t len)
{
	snprintf(buf, len, "17%08d.M%dP%dQ%d.mailhost,S=%d", i, i * 13 % 1000000, 4000 + i % 97,
		 i, 1000 + i % 5000);
}

static void *big_create(void *arg)
{
	struct big_arg *a = arg;
	char name[128];
	for (int i = a->from; i < a->to && !a->rc; i++) {
		struct fs_attr at;
		big_name(i, name, sizeof(name));
		a->rc = fs_mknod(a->fs, &CTX, a->dir, name, S_IFREG | 0600, &at);
		a->at = i;
		if (!a->rc)
			fs_forget(a->fs, at.ino, 1);
	}
	return NULL;
}

/* Every name of [0, n) with bit `present` set in want[] must be listed once,
 * and nothing else. */
static void check_listing(struct fs *fs, uint64_t dir, const uint8_t *want, int n,
			  unsigned batch, const char *when)
{
	struct dlist l = { 0 };
	int r = fs_list(fs, dir, batch, &l);
	CHECK(r == 0, "%s: readdir: %d", when, r);
	uint8_t *seen = calloc((size_t)n, 1);
	for (size_t i = 2; i < l.n; i++) {
		int k = -1;
		CHECK(sscanf(l.e[i].name, "17%08d.", &k) == 1 && k >= 0 && k < n,
		      "%s: unexpected name '%s'", when, l.e[i].name);
		char name[128];
		big_name(k, name, sizeof(name));
		CHECK(strcmp(name, l.e[i].name) == 0, "%s: unexpected name '%s'", when, l.e[i].name);
		CHECK(!seen[k], "%s: '%s' listed twice", when, name);
		CHECK(want[k], "%s: '%s' listed but removed", when, name);
		seen[k] = 1;
	}
	for (int k = 0; k < n; k++)
		CHECK(seen[k] == want[k], "%s: entry %d not listed", when, k);
	free(seen);
	dlist_free(&l);
}

Test(fs_model, directory_of_100000_entries, .timeout = 300)
{
	struct vol v;
	struct fs_format_opts fo = { .ninodes = 131072 };
	vol_open(&v, 256 * MiB, &fo);
	struct fs_attr a;
	CHECK(fs_mkdir(v.fs, &CTX, ROOT, "new", 0700, &a) == 0, "mkdir");
	uint64_t dir = a.ino;
	uint64_t t0 = now_ns();
	struct big_arg args[BIG_THREADS];
	pthread_t t[BIG_THREADS];
	for (int i = 0; i < BIG_THREADS; i++) {
		args[i] = (struct big_arg){ v.fs, dir, BIG_N * i / BIG_THREADS,
					    BIG_N * (i + 1) / BIG_THREADS, 0, 0 };
		pthread_create(&t[i], NULL, big_create, &args[i]);
	}
	for (int i = 0; i < BIG_THREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < BIG_THREADS; i++)
		CHECK(args[i].rc == 0, "creating entry %d of %d: %d", args[i].at, BIG_N, args[i].rc);
	double t_create = (double)(now_ns() - t0) / 1e9;

	uint64_t t1 = now_ns();
	char name[128];
	for (int i = 0; i < BIG_N; i++) {
		big_name(i, name, sizeof(name));
		int r = fs_lookup(v.fs, dir, name, &a);
		CHECK(r == 0, "lookup of entry %d: %d", i, r);
		fs_forget(v.fs, a.ino, 1);
	}
	double t_lookup = (double)(now_ns() - t1) / 1e9;
	uint8_t *want = malloc(BIG_N);
	memset(want, 1, BIG_N);
	uint64_t t2 = now_ns();
	check_listing(v.fs, dir, want, BIG_N, 500, "full readdir");
	double t_readdir = (double)(now_ns() - t2) / 1e9;
	CHECK(fs_getattr(v.fs, dir, &a) == 0 && a.nlink == 2, "nlink of the big directory");

	/* a third goes, a few are renamed in place; then after a remount */
	for (int i = 0; i < BIG_N; i += 3) {
		big_name(i, name, sizeof(name));
		CHECK(fs_unlink(v.fs, dir, name) == 0, "unlink entry %d", i);
		want[i] = 0;
	}
	vol_remount(&v);
	check_listing(v.fs, dir, want, BIG_N, 97, "readdir after removing a third and a remount");
	for (int i = 0; i < BIG_N; i++) {
		big_name(i, name, sizeof(name));
		int r = fs_lookup(v.fs, dir, name, &a);
		CHECK(r == (want[i] ? 0 : -ENOENT), "lookup of entry %d after remount: %d", i, r);
		if (!r)
			fs_forget(v.fs, a.ino, 1);
	}
	cr_log_info("100000 entries: create %.1f s, lookup %.1f s, readdir %.2f s", t_create,
		    t_lookup, t_readdir);
	free(want);
	vol_close(&v);
}

/* ---- readdir while entries come and go ---- */

#define KEEP_N 3000
#define CHURN_N 3000

struct churn_arg {
	struct fs *fs;
	uint64_t dir;
	atomic_bool stop;
	int rc;
	unsigned rounds;
};

static void *churn_main(void *arg)
{
	struct churn_arg *c = arg;
	struct prng r;
	prng_seed(&r, 5);
	uint8_t *present = calloc(CHURN_N, 1);
	char name[64];
	while (!atomic_load(&c->stop) && !c->rc) {
		int k = (int)prng_below(&r, CHURN_N);
		snprintf(name, sizeof(name), "churn%05d", k);
		if (present[k]) {
			c->rc = fs_unlink(c->fs, c->dir, name);
		} else {
			struct fs_attr a;
			c->rc = fs_mknod(c->fs, &CTX, c->dir, name, S_IFREG | 0600, &a);
			if (!c->rc)
				fs_forget(c->fs, a.ino, 1);
		}
		present[k] ^= 1;
		c->rounds++;
	}
	free(present);
	return NULL;
}

Test(fs_model, readdir_while_entries_change, .timeout = 300)
{
	struct vol v;
	vol_open(&v, 128 * MiB, NULL);
	struct fs_attr a;
	CHECK(fs_mkdir(v.fs, &CTX, ROOT, "busy", 0700, &a) == 0, "mkdir");
	uint64_t dir = a.ino;
	char name[64];
	for (int i = 0; i < KEEP_N; i++) {
		snprintf(name, sizeof(name), "keep%05d", i);
		CHECK(fs_mknod(v.fs, &CTX, dir, name, S_IFREG | 0600, &a) == 0, "mknod %s", name);
		fs_forget(v.fs, a.ino, 1);
	}
	struct churn_arg c = { .fs = v.fs, .dir = dir };
	pthread_t t;
	pthread_create(&t, NULL, churn_main, &c);
	struct prng r;
	prng_seed(&r, 9);
	uint8_t *seen = malloc(KEEP_N), *cseen = malloc(CHURN_N);
	unsigned scans = 0;
	uint64_t t0 = now_ns();
	while (scans < 40 || now_ns() - t0 < 3000000000ull) {
		struct dlist l = { 0 };
		unsigned batch = 1 + (unsigned)prng_below(&r, 64);
		int rc = fs_list(v.fs, dir, batch, &l);
		CHECK(rc == 0, "readdir during churn: %d", rc);
		memset(seen, 0, KEEP_N);
		memset(cseen, 0, CHURN_N);
		for (size_t i = 2; i < l.n; i++) {
			int k;
			if (sscanf(l.e[i].name, "keep%05d", &k) == 1) {
				CHECK(!seen[k], "scan %u (batch %u): '%s' listed twice", scans, batch,
				      l.e[i].name);
				seen[k] = 1;
			} else if (sscanf(l.e[i].name, "churn%05d", &k) == 1) {
				CHECK(!cseen[k], "scan %u (batch %u): '%s' listed twice", scans, batch,
				      l.e[i].name);
				cseen[k] = 1;
			} else {
				CHECK(0, "scan %u: unexpected name '%s'", scans, l.e[i].name);
			}
		}
		for (int k = 0; k < KEEP_N; k++)
			CHECK(seen[k], "scan %u (batch %u): keep%05d (present throughout) missing", scans,
			      batch, k);
		dlist_free(&l);
		scans++;
		if (scans > 2000)
			break;
	}
	atomic_store(&c.stop, true);
	pthread_join(t, NULL);
	CHECK(c.rc == 0, "churn thread: %d", c.rc);
	cr_log_info("readdir during churn: %u scans, %u changes", scans, c.rounds);
	free(seen);
	free(cseen);
	vol_close(&v);
}

/* ---- inode numbers reused at once ---- */

/*
 * A tiny inode table (64), four threads creating and unlinking their own
 * files: freed inode numbers come back quickly, also while the thread that
 * freed one still holds its in-memory inode. Every create must succeed
 * (no -EUCLEAN "allocated twice") and no file may show another's data.
 */
struct reuse_arg {
	struct fs *fs;
	int id, rc;
	unsigned rounds, made;
	atomic_bool *stop;
};

static void *reuse_main(void *arg)
{
	struct reuse_arg *x = arg;
	char name[32];
	uint64_t tag = 0;
	while (!atomic_load(x->stop) && !x->rc) {
		snprintf(name, sizeof(name), "r%d.%u", x->id, x->rounds % 8);
		struct fs_attr a;
		uint64_t fh;
		int r = fs_create(x->fs, &CTX, ROOT, name, 0644, O_CREAT | O_EXCL | O_RDWR, &a, &fh);
		if (r == -ENOSPC) {
			x->rounds++;
			continue;      /* the other threads hold every inode just now */
		}
		if (r) {
			x->rc = r;
			break;
		}
		x->made++;
		tag = (uint64_t)x->id << 32 | x->rounds;
		if (fs_write(x->fs, a.ino, fh, &tag, sizeof(tag), 0) != sizeof(tag))
			x->rc = -EIO;
		uint64_t back = 0;
		if (!x->rc && (fs_read(x->fs, a.ino, fh, &back, sizeof(back), 0) != sizeof(back) || back != tag))
			x->rc = -EBADMSG;
		fs_release(x->fs, a.ino, fh);
		if (!x->rc && (r = fs_unlink(x->fs, ROOT, name)))
			x->rc = r;
		fs_forget(x->fs, a.ino, 1);
		x->rounds++;
	}
	return NULL;
}

Test(fs_model, inode_numbers_reused_at_once, .timeout = 60)
{
	struct vol v;
	struct fs_format_opts fo = { .ninodes = 64 };
	vol_open(&v, 64 * MiB, &fo);
	uint64_t i0 = free_inodes(v.fs), b0 = free_blocks(v.fs);
	atomic_bool stop = false;
	struct reuse_arg x[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		x[i] = (struct reuse_arg){ .fs = v.fs, .id = i, .stop = &stop };
		pthread_create(&t[i], NULL, reuse_main, &x[i]);
	}
	usleep(2 * 1000 * 1000);
	atomic_store(&stop, true);
	unsigned made = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		made += x[i].made;
	}
	for (int i = 0; i < 4; i++)
		CHECK(x[i].rc == 0, "thread %d after %u rounds: %d", i, x[i].rounds, x[i].rc);
	CHECK(made > 1000, "only %u files made", made);
	CHECK(free_inodes(v.fs) == i0 && free_blocks(v.fs) == b0,
	      "all files gone, but %llu inodes free (%llu at the start), %llu blocks (%llu)",
	      (unsigned long long)free_inodes(v.fs), (unsigned long long)i0,
	      (unsigned long long)free_blocks(v.fs), (unsigned long long)b0);
	cr_log_info("inode reuse: %u files made", made);
	vol_close(&v);
}

/* ---- a sparse file beyond 4 GiB ---- */

static void check_zero(struct fs *fs, uint64_t ino, uint64_t off, size_t len)
{
	uint8_t *buf = malloc(len);
	memset(buf, 0xee, len);
	ssize_t n = fs_read(fs, ino, 0, buf, len, (off_t)off);
	CHECK(n == (ssize_t)len, "read of a hole at %llu: %zd", (unsigned long long)off, n);
	for (size_t i = 0; i < len; i++)
		CHECK(buf[i] == 0, "hole at %llu: byte %zu is %u", (unsigned long long)off, i, buf[i]);
	free(buf);
}

static void check_pattern(struct fs *fs, uint64_t ino, uint64_t off, size_t len, uint64_t seed)
{
	uint8_t *want = malloc(len), *got = malloc(len);
	fsop_pattern(seed, want, len);
	ssize_t n = fs_read(fs, ino, 0, got, len, (off_t)off);
	CHECK(n == (ssize_t)len && memcmp(want, got, len) == 0, "data at %llu (%zu bytes): read %zd, %s",
	      (unsigned long long)off, len, n, n == (ssize_t)len ? "different" : "short");
	free(want);
	free(got);
}

static void write_pattern(struct fs *fs, uint64_t ino, uint64_t fh, uint64_t off, size_t len,
			  uint64_t seed)
{
	uint8_t *buf = malloc(len);
	fsop_pattern(seed, buf, len);
	ssize_t n = fs_write(fs, ino, fh, buf, len, (off_t)off);
	CHECK(n == (ssize_t)len, "write of %zu at %llu: %zd", len, (unsigned long long)off, n);
	free(buf);
}

Test(fs_model, sparse_file_beyond_4GiB, .timeout = 120)
{
	struct vol v;
	vol_open(&v, 64 * MiB, NULL);
	uint64_t before = free_blocks(v.fs);
	struct fs_attr a;
	uint64_t fh;
	CHECK(fs_create(v.fs, &CTX, ROOT, "sparse", 0644, O_CREAT | O_EXCL | O_RDWR, &a, &fh) == 0,
	      "create");
	uint64_t ino = a.ino, G = 1ull << 30;
	write_pattern(v.fs, ino, fh, 5 * G, 10000, 1);          /* 5 GiB */
	write_pattern(v.fs, ino, fh, 4 * G - 3000, 6000, 2);    /* across 4 GiB */
	write_pattern(v.fs, ino, fh, 100, 50, 3);
	CHECK(fs_release(v.fs, ino, fh) == 0, "release");
	for (int round = 0; round < 2; round++) {
		CHECK(fs_getattr(v.fs, ino, &a) == 0, "getattr");
		CHECK(a.size == 5 * G + 10000, "size %llu", (unsigned long long)a.size);
		/* 3 + 2 + 1 data blocks and a few index blocks, nothing near 5 GiB */
		CHECK(a.blocks <= 8 * 16, "st_blocks %llu (512-byte units) for a sparse file",
		      (unsigned long long)a.blocks);
		check_pattern(v.fs, ino, 5 * G, 10000, 1);
		check_pattern(v.fs, ino, 4 * G - 3000, 6000, 2);
		check_pattern(v.fs, ino, 100, 50, 3);
		check_zero(v.fs, ino, 0, 100);
		check_zero(v.fs, ino, 150, 1 << 20);
		check_zero(v.fs, ino, 2 * G, 8192);
		check_zero(v.fs, ino, 4 * G - 70000, 67000);
		check_zero(v.fs, ino, 4 * G + 3000, 5000);
		check_zero(v.fs, ino, 5 * G - 8192, 8192);
		char x;
		CHECK(fs_read(v.fs, ino, 0, &x, 1, (off_t)(5 * G + 10000)) == 0, "read at EOF");
		vol_remount(&v);
	}
	/* truncating gives every block back */
	struct fs_setattr sa = { .valid = FS_SET_SIZE, .size = 0 };
	CHECK(fs_setattr(v.fs, ino, &sa, &a) == 0 && a.size == 0 && a.blocks == 0,
	      "truncate to 0: blocks %llu", (unsigned long long)a.blocks);
	sa.size = 6 * G;
	CHECK(fs_setattr(v.fs, ino, &sa, &a) == 0 && a.blocks == 0, "extend by truncate");
	check_zero(v.fs, ino, 5 * G, 10000);
	int r = fs_unlink(v.fs, ROOT, "sparse");
	CHECK(r == 0, "unlink: %d", r);
	fs_forget(v.fs, ino, 1);
	CHECK(free_blocks(v.fs) == before, "free blocks %llu, %llu before",
	      (unsigned long long)free_blocks(v.fs), (unsigned long long)before);
	vol_close(&v);
}

/* ---- names of 255 and 256 bytes ---- */

Test(fs_model, name_length_limits)
{
	struct vol v;
	vol_open(&v, 64 * MiB, NULL);
	char n255[256], n256[257], other[256];
	memset(n255, 'a', 255);
	n255[255] = 0;
	memset(n256, 'b', 256);
	n256[256] = 0;
	memset(other, 'c', 255);
	other[255] = 0;
	struct fs_attr a, d;
	uint64_t fh;
	CHECK(fs_create(v.fs, &CTX, ROOT, n255, 0644, O_CREAT | O_EXCL | O_RDWR, &a, &fh) == 0,
	      "create with a 255-byte name");
	fs_release(v.fs, a.ino, fh);
	CHECK(fs_lookup(v.fs, ROOT, n255, &a) == 0, "lookup of a 255-byte name");
	CHECK(fs_mkdir(v.fs, &CTX, ROOT, other, 0755, &d) == 0, "mkdir with a 255-byte name");
	CHECK(fs_link(v.fs, a.ino, d.ino, n255, &a) == 0, "link to a 255-byte name");
	CHECK(fs_symlink(v.fs, &CTX, "t", d.ino, other, &a) == 0, "symlink with a 255-byte name");
	CHECK(fs_rename(v.fs, d.ino, other, ROOT, "x", 0) == 0, "rename from a 255-byte name");
	CHECK(fs_rename(v.fs, ROOT, "x", d.ino, other, 0) == 0, "rename to a 255-byte name");
	int r;
	CHECK((r = fs_create(v.fs, &CTX, ROOT, n256, 0644, O_CREAT | O_EXCL | O_RDWR, &a, &fh)) ==
	      -ENAMETOOLONG, "create, 256 bytes: %d", r);
	CHECK((r = fs_mknod(v.fs, &CTX, ROOT, n256, S_IFREG | 0644, &a)) == -ENAMETOOLONG,
	      "mknod, 256 bytes: %d", r);
	CHECK((r = fs_mkdir(v.fs, &CTX, ROOT, n256, 0755, &a)) == -ENAMETOOLONG, "mkdir, 256: %d", r);
	CHECK((r = fs_lookup(v.fs, ROOT, n256, &a)) == -ENAMETOOLONG, "lookup, 256: %d", r);
	CHECK((r = fs_symlink(v.fs, &CTX, "t", ROOT, n256, &a)) == -ENAMETOOLONG, "symlink, 256: %d", r);
	CHECK((r = fs_link(v.fs, a.ino, ROOT, n256, &a)) == -ENAMETOOLONG, "link, 256: %d", r);
	CHECK((r = fs_unlink(v.fs, ROOT, n256)) == -ENAMETOOLONG, "unlink, 256: %d", r);
	CHECK((r = fs_rmdir(v.fs, ROOT, n256)) == -ENAMETOOLONG, "rmdir, 256: %d", r);
	CHECK((r = fs_rename(v.fs, ROOT, n255, ROOT, n256, 0)) == -ENAMETOOLONG, "rename to 256: %d", r);
	CHECK((r = fs_rename(v.fs, ROOT, n256, ROOT, "y", 0)) == -ENAMETOOLONG, "rename from 256: %d", r);
	vol_remount(&v);
	struct dlist l = { 0 };
	CHECK(fs_list(v.fs, ROOT, 3, &l) == 0 && l.n == 4, "root lists %zu entries", l.n);
	CHECK(fs_list(v.fs, d.ino, 1, &l) == 0 && l.n == 4, "directory lists %zu entries", l.n);
	dlist_free(&l);
	vol_close(&v);
}

/* ---- ENOSPC ---- */

struct filled {
	char name[32];
	uint64_t ino, size, seed;
};

/* Fill the volume under dir with files of 64 KiB until ENOSPC; returns how
 * many (their sizes may be short for the last). */
static size_t fill_volume(struct fs *fs, uint64_t dir, struct filled *f, size_t max)
{
	size_t n = 0;
	uint8_t *buf = malloc(65536);
	for (; n < max; n++) {
		struct fs_attr a;
		uint64_t fh;
		snprintf(f[n].name, sizeof(f[n].name), "fill%05zu", n);
		int r = fs_create(fs, &CTX, dir, f[n].name, 0644, O_CREAT | O_EXCL | O_RDWR, &a, &fh);
		if (r == -ENOSPC)
			break;
		CHECK(r == 0, "create %s: %d", f[n].name, r);
		f[n].ino = a.ino;
		f[n].seed = 1000 + n;
		fs_forget(fs, a.ino, 1);
		fsop_pattern(f[n].seed, buf, 65536);
		ssize_t w = fs_write(fs, a.ino, fh, buf, 65536, 0);
		CHECK(w == -ENOSPC || w > 0, "write %s: %zd", f[n].name, w);
		f[n].size = w > 0 ? (uint64_t)w : 0;
		CHECK(fs_release(fs, a.ino, fh) == 0, "release");
		if (w != 65536) {
			n++;
			break;
		}
	}
	free(buf);
	return n;
}

static void check_filled(struct fs *fs, uint64_t dir, const struct filled *f, size_t n)
{
	uint8_t *want = malloc(65536);
	for (size_t i = 0; i < n; i++) {
		struct fs_attr a;
		CHECK(fs_lookup(fs, dir, f[i].name, &a) == 0 && a.ino == f[i].ino, "lookup %s", f[i].name);
		fs_forget(fs, a.ino, 1);
		CHECK(a.size == f[i].size, "%s: size %llu, wrote %llu", f[i].name,
		      (unsigned long long)a.size, (unsigned long long)f[i].size);
		uint8_t *got;
		CHECK(fs_read_all(fs, a.ino, a.size, &got) == 0, "read %s", f[i].name);
		fsop_pattern(f[i].seed, want, 65536);
		CHECK(memcmp(want, got, a.size) == 0, "%s: contents differ", f[i].name);
		free(got);
	}
	free(want);
}

Test(fs_model, enospc_then_space_comes_back, .timeout = 120)
{
	struct vol v;
	vol_open(&v, 12 * MiB, NULL);
	uint64_t b0 = free_blocks(v.fs), i0 = free_inodes(v.fs);
	struct fs_attr a;
	CHECK(fs_mkdir(v.fs, &CTX, ROOT, "spool", 0755, &a) == 0, "mkdir");
	uint64_t dir = a.ino;
	fs_forget(v.fs, dir, 1);
	struct filled *f = calloc(4096, sizeof(*f));
	size_t n = fill_volume(v.fs, dir, f, 4096);
	CHECK(n > 10 && n < 4096, "filled %zu files", n);
	/* everything else fails cleanly now, or fits in what is left */
	int made = 0, r;
	char name[32];
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "late%d", i);
		if (i % 3 == 0)
			r = fs_mkdir(v.fs, &CTX, dir, name, 0755, &a);
		else if (i % 3 == 1)
			r = fs_symlink(v.fs, &CTX, "some/where/far/away", dir, name, &a);
		else
			r = fs_mknod(v.fs, &CTX, dir, name, S_IFREG | 0644, &a);
		CHECK(r == 0 || r == -ENOSPC, "%s: %d", name, r);
		if (!r) {
			made++;
			fs_forget(v.fs, a.ino, 1);
		}
	}
	check_filled(v.fs, dir, f, n);
	vol_remount(&v);
	check_filled(v.fs, dir, f, n);
	/* delete everything: every block and inode comes back */
	for (size_t i = 0; i < n; i++)
		CHECK((r = fs_unlink(v.fs, dir, f[i].name)) == 0, "unlink %s: %d", f[i].name, r);
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "late%d", i);
		r = i % 3 == 0 ? fs_rmdir(v.fs, dir, name) : fs_unlink(v.fs, dir, name);
		CHECK(r == 0 || r == -ENOENT, "remove %s: %d", name, r);
	}
	CHECK((r = fs_rmdir(v.fs, ROOT, "spool")) == 0, "rmdir spool: %d", r);
	CHECK(free_blocks(v.fs) == b0, "free blocks %llu after deleting everything, %llu at the "
	      "start (%d late entries made)", (unsigned long long)free_blocks(v.fs),
	      (unsigned long long)b0, made);
	CHECK(free_inodes(v.fs) == i0, "free inodes %llu, %llu at the start",
	      (unsigned long long)free_inodes(v.fs), (unsigned long long)i0);
	vol_remount(&v);
	CHECK(free_blocks(v.fs) == b0 && free_inodes(v.fs) == i0, "after a remount: %llu blocks, "
	      "%llu inodes free", (unsigned long long)free_blocks(v.fs),
	      (unsigned long long)free_inodes(v.fs));
	/* and the space is usable again */
	n = fill_volume(v.fs, ROOT, f, 4096);
	CHECK(n > 10, "refilled %zu files", n);
	free(f);
	vol_close(&v);
}

/* Grow (size > current) or shrink a file by whole blocks. */
static void resize_file(struct fs *fs, uint64_t ino, uint64_t fh, uint64_t *size, bool grow)
{
	if (grow) {
		uint8_t blk[4096];
		memset(blk, 7, sizeof(blk));
		if (fs_write(fs, ino, fh, blk, 4096, (off_t)*size) == 4096)
			*size += 4096;
	} else if (*size >= 4096) {
		struct fs_setattr sa = { .valid = FS_SET_SIZE, .size = *size - 4096 };
		struct fs_attr a;
		CHECK(fs_setattr(fs, ino, &sa, &a) == 0, "shrink");
		*size -= 4096;
	}
}

/* mkdir (and symlink, create) running out of space half-way: a directory
 * needs 5 blocks, so with 0..4 left mkdir fails after taking some. */
Test(fs_model, enospc_in_mkdir_leaks_nothing, .timeout = 120)
{
	struct vol v;
	vol_open(&v, 12 * MiB, NULL);
	uint64_t b0 = free_blocks(v.fs), i0 = free_inodes(v.fs);
	struct fs_attr a;
	uint64_t fh[2], ino[2], size[2] = { 0, 0 };
	const char *names[2] = { "big", "pad" };
	for (int i = 0; i < 2; i++) {
		CHECK(fs_create(v.fs, &CTX, ROOT, names[i], 0644, O_CREAT | O_EXCL | O_RDWR, &a, &fh[i]) == 0,
		      "create %s", names[i]);
		ino[i] = a.ino;
		fs_forget(v.fs, a.ino, 1);
	}
	uint8_t *buf = calloc(1, 1 << 20);
	for (;;) {
		ssize_t w = fs_write(v.fs, ino[0], fh[0], buf, 1 << 20, (off_t)size[0]);
		if (w <= 0)
			break;
		size[0] += (uint64_t)w & ~4095ull;
	}
	free(buf);
	int fails = 0, r;
	for (int round = 0; round < 3; round++)
		for (uint64_t k = 0; k <= 4; k++) {
			for (int i = 0; i < 200 && free_blocks(v.fs) != k; i++) {
				bool grow = free_blocks(v.fs) > k;   /* grow "pad", or shrink "big" */
				resize_file(v.fs, ino[grow], fh[grow], &size[grow], grow);
			}
			CHECK(free_blocks(v.fs) == k, "could not leave %llu blocks free", (unsigned long long)k);
			char name[32];
			snprintf(name, sizeof(name), "n%d.%llu", round, (unsigned long long)k);
			if (round == 0)
				r = fs_mkdir(v.fs, &CTX, ROOT, name, 0755, &a);
			else if (round == 1)
				r = fs_symlink(v.fs, &CTX, "target", ROOT, name, &a);
			else
				r = fs_mknod(v.fs, &CTX, ROOT, name, S_IFREG | 0644, &a);
			CHECK(r == 0 || r == -ENOSPC, "%s with %llu blocks free: %d", name,
			      (unsigned long long)k, r);
			if (r == 0)
				fs_forget(v.fs, a.ino, 1);
			else
				fails++;
		}
	for (int i = 0; i < 2; i++) {
		CHECK(fs_release(v.fs, ino[i], fh[i]) == 0, "release");
		CHECK(fs_unlink(v.fs, ROOT, names[i]) == 0, "unlink %s", names[i]);
	}
	struct dlist l = { 0 };
	CHECK(fs_list(v.fs, ROOT, 100, &l) == 0, "list");
	for (size_t i = 2; i < l.n; i++) {
		r = l.e[i].mode == S_IFDIR ? fs_rmdir(v.fs, ROOT, l.e[i].name) : fs_unlink(v.fs, ROOT, l.e[i].name);
		CHECK(r == 0, "remove %s: %d", l.e[i].name, r);
	}
	dlist_free(&l);
	CHECK(free_blocks(v.fs) == b0 && free_inodes(v.fs) == i0,
	      "after %d creations failed with ENOSPC and everything was removed: %llu blocks free "
	      "(%llu at the start), %llu inodes free (%llu)", fails,
	      (unsigned long long)free_blocks(v.fs), (unsigned long long)b0,
	      (unsigned long long)free_inodes(v.fs), (unsigned long long)i0);
	vol_close(&v);
}

/* ---- files unlinked while open ---- */

Test(fs_model, unlinked_while_open, .timeout = 60)
{
	struct vol v;
	vol_open(&v, 64 * MiB, NULL);
	uint64_t b0 = free_blocks(v.fs), i0 = free_inodes(v.fs);
	struct fs_attr a;
	uint64_t fh, fh2;
	CHECK(fs_create(v.fs, &CTX, ROOT, "open", 0644, O_CREAT | O_EXCL | O_RDWR, &a, &fh) == 0,
	      "create");
	uint64_t ino = a.ino;
	write_pattern(v.fs, ino, fh, 0, 1 << 20, 42);
	CHECK(fs_open(v.fs, ino, O_RDONLY, &fh2) == 0, "second open");
	uint64_t used = b0 - free_blocks(v.fs);
	CHECK(used >= 256, "1 MiB uses %llu blocks", (unsigned long long)used);
	CHECK(fs_unlink(v.fs, ROOT, "open") == 0, "unlink");
	CHECK(fs_lookup(v.fs, ROOT, "open", &a) == -ENOENT, "name gone");
	CHECK(fs_getattr(v.fs, ino, &a) == 0 && a.nlink == 0 && a.size == 1 << 20,
	      "getattr of the unlinked file: nlink %u size %llu", a.nlink, (unsigned long long)a.size);
	check_pattern(v.fs, ino, 0, 1 << 20, 42);
	write_pattern(v.fs, ino, fh, 1 << 20, 8192, 43);        /* still writable */
	check_pattern(v.fs, ino, 1 << 20, 8192, 43);
	fs_forget(v.fs, ino, 1);                                /* the create's lookup */
	CHECK(b0 - free_blocks(v.fs) >= used, "space freed while the file is open");
	CHECK(fs_release(v.fs, ino, fh) == 0, "release 1");
	check_pattern(v.fs, ino, 0, 1 << 20, 42);               /* the other handle */
	CHECK(b0 - free_blocks(v.fs) >= used, "space freed while the file is open");
	int r = fs_release(v.fs, ino, fh2);
	CHECK(r == 0, "release 2 (the last): %d", r);
	CHECK(free_blocks(v.fs) == b0 && free_inodes(v.fs) == i0,
	      "after the last release: %llu blocks free, %llu before",
	      (unsigned long long)free_blocks(v.fs), (unsigned long long)b0);
	CHECK(fs_getattr(v.fs, ino, &a) == -ENOENT, "inode still there after the last release");

	/* released first, forgotten last */
	CHECK(fs_create(v.fs, &CTX, ROOT, "f2", 0644, O_CREAT | O_EXCL | O_RDWR, &a, &fh) == 0,
	      "create f2");
	ino = a.ino;
	write_pattern(v.fs, ino, fh, 0, 300000, 44);
	CHECK(fs_release(v.fs, ino, fh) == 0, "release");
	CHECK(fs_unlink(v.fs, ROOT, "f2") == 0, "unlink f2");
	CHECK(fs_getattr(v.fs, ino, &a) == 0 && a.nlink == 0, "f2 kept while looked up");
	check_pattern(v.fs, ino, 0, 300000, 44);
	fs_forget(v.fs, ino, 1);
	CHECK(free_blocks(v.fs) == b0 && free_inodes(v.fs) == i0, "f2: space back after forget");

	/* a directory removed while a lookup holds it: lookups inside fail */
	CHECK(fs_mkdir(v.fs, &CTX, ROOT, "gone", 0755, &a) == 0, "mkdir");
	ino = a.ino;
	CHECK(fs_rmdir(v.fs, ROOT, "gone") == 0, "rmdir");
	CHECK((r = fs_lookup(v.fs, ino, "x", &a)) == -ENOENT, "lookup in a removed dir: %d", r);
	CHECK((r = fs_mknod(v.fs, &CTX, ino, "x", S_IFREG | 0644, &a)) == -ENOENT,
	      "create in a removed dir: %d", r);
	fs_forget(v.fs, ino, 1);
	vol_remount(&v);
	CHECK(free_blocks(v.fs) == b0 && free_inodes(v.fs) == i0, "after a remount");
	vol_close(&v);
}

/* ---- wrong requests ---- */

Test(fs_model, error_cases)
{
	struct vol v;
	vol_open(&v, 64 * MiB, NULL);
	struct fs_attr a, d, sub, f;
	uint64_t fh;
	int r;
	CHECK(fs_mkdir(v.fs, &CTX, ROOT, "d", 0755, &d) == 0, "mkdir d");
	CHECK(fs_mkdir(v.fs, &CTX, d.ino, "sub", 0755, &sub) == 0, "mkdir d/sub");
	CHECK(fs_mknod(v.fs, &CTX, d.ino, "f", S_IFREG | 0644, &f) == 0, "mknod d/f");
	CHECK(fs_mkdir(v.fs, &CTX, ROOT, "e", 0755, &a) == 0, "mkdir e");
#define ERR(call, want) CHECK((r = (call)) == (want), "%s: %d, want %d", #call, r, want)
	/* ENOENT */
	ERR(fs_lookup(v.fs, d.ino, "nope", &a), -ENOENT);
	ERR(fs_unlink(v.fs, d.ino, "nope"), -ENOENT);
	ERR(fs_rmdir(v.fs, d.ino, "nope"), -ENOENT);
	ERR(fs_rename(v.fs, d.ino, "nope", ROOT, "x", 0), -ENOENT);
	ERR(fs_rename(v.fs, d.ino, "f", ROOT, "nope", RENAME_EXCHANGE), -ENOENT);
	/* EEXIST */
	ERR(fs_mkdir(v.fs, &CTX, d.ino, "f", 0755, &a), -EEXIST);
	ERR(fs_mkdir(v.fs, &CTX, d.ino, "sub", 0755, &a), -EEXIST);
	ERR(fs_create(v.fs, &CTX, d.ino, "f", 0644, O_CREAT | O_EXCL | O_RDWR, &a, &fh), -EEXIST);
	ERR(fs_create(v.fs, &CTX, d.ino, "sub", 0644, O_CREAT | O_EXCL | O_RDWR, &a, &fh), -EEXIST);
	ERR(fs_link(v.fs, f.ino, d.ino, "sub", &a), -EEXIST);
	ERR(fs_symlink(v.fs, &CTX, "t", d.ino, "f", &a), -EEXIST);
	ERR(fs_rename(v.fs, ROOT, "e", d.ino, "sub", RENAME_NOREPLACE), -EEXIST);
	/* ENOTDIR */
	ERR(fs_lookup(v.fs, f.ino, "x", &a), -ENOTDIR);
	ERR(fs_mkdir(v.fs, &CTX, f.ino, "x", 0755, &a), -ENOTDIR);
	ERR(fs_rmdir(v.fs, d.ino, "f"), -ENOTDIR);
	ERR(fs_rename(v.fs, ROOT, "e", d.ino, "f", 0), -ENOTDIR);
	ERR(fs_opendir(v.fs, f.ino, &fh), -ENOTDIR);
	/* EISDIR */
	ERR(fs_unlink(v.fs, d.ino, "sub"), -EISDIR);
	ERR(fs_rename(v.fs, d.ino, "f", d.ino, "sub", 0), -EISDIR);
	ERR(fs_open(v.fs, d.ino, O_WRONLY, &fh), -EISDIR);
	ERR(fs_create(v.fs, &CTX, ROOT, "d", 0644, O_CREAT | O_RDWR, &a, &fh), -EISDIR);
	struct fs_setattr sa = { .valid = FS_SET_SIZE, .size = 10 };
	ERR(fs_setattr(v.fs, d.ino, &sa, &a), -EISDIR);
	/* ENOTEMPTY */
	ERR(fs_rmdir(v.fs, ROOT, "d"), -ENOTEMPTY);
	CHECK(fs_mkdir(v.fs, &CTX, ROOT, "e2", 0755, &a) == 0, "mkdir e2");
	ERR(fs_rename(v.fs, ROOT, "e2", ROOT, "d", 0), -ENOTEMPTY);
	ERR(fs_rename(v.fs, d.ino, "sub", ROOT, "d", 0), -ENOTEMPTY);  /* over its own parent */
	/* EINVAL */
	ERR(fs_rename(v.fs, ROOT, "d", sub.ino, "x", 0), -EINVAL);     /* into its own subdir */
	ERR(fs_rename(v.fs, ROOT, "d", d.ino, "x", 0), -EINVAL);       /* into itself */
	ERR(fs_rename(v.fs, ROOT, "e", sub.ino, "x", RENAME_EXCHANGE), -ENOENT);
	CHECK(fs_mkdir(v.fs, &CTX, sub.ino, "x", 0755, &a) == 0, "mkdir d/sub/x");
	ERR(fs_rename(v.fs, ROOT, "d", sub.ino, "x", RENAME_EXCHANGE), -EINVAL);
	ERR(fs_rename(v.fs, sub.ino, "x", ROOT, "d", RENAME_EXCHANGE), -EINVAL);
	ERR(fs_rename(v.fs, ROOT, "e", ROOT, "e2", RENAME_EXCHANGE | RENAME_NOREPLACE), -EINVAL);
	ERR(fs_rename(v.fs, ROOT, "e", ROOT, ".", 0), -EINVAL);
	ERR((int)fs_readlink(v.fs, f.ino, (char[8]){ 0 }, 8), -EINVAL);
	ERR(fs_rmdir(v.fs, d.ino, "."), -EINVAL);
	/* EPERM */
	ERR(fs_link(v.fs, sub.ino, ROOT, "hard", &a), -EPERM);
	/* the tree is what it was */
	struct dlist l = { 0 };
	CHECK(fs_list(v.fs, d.ino, 10, &l) == 0 && l.n == 4, "d lists %zu entries", l.n);
	dlist_free(&l);
	CHECK(fs_getattr(v.fs, d.ino, &a) == 0 && a.nlink == 3, "nlink of d: %u", a.nlink);
	CHECK(fs_getattr(v.fs, ROOT, &a) == 0 && a.nlink == 5, "nlink of /: %u", a.nlink);
#undef ERR
	vol_close(&v);
}

/*
 * An inode number that was never used: fs_format does not initialise the
 * inode table and inode_get decodes the slot without looking at the inode
 * bitmap, so a never-written slot fails its checksum (-EUCLEAN, logged as
 * corruption) instead of answering -ENOENT.
 */
Test(fs_model, getattr_of_unused_inode)
{
	struct vol v;
	vol_open(&v, 64 * MiB, NULL);
	struct fs_attr a;
	int r = fs_getattr(v.fs, 999, &a);
	fs_forget(v.fs, 999, 1);
	vol_close(&v);
	CHECK(r == -ENOENT, "getattr of a never-used inode: %d", r);
}

/* ---- deadlocks ---- */

/*
 * fs_link of a directory into itself: fs_link locks the new parent, then
 * the inode, before it checks that the inode is a directory (-EPERM). When
 * both are the same inode the second pthread_mutex_lock never returns.
 * Expected: -EPERM. (The timeout turns the hang into a failure.)
 */
Test(fs_model, link_dir_into_itself, .timeout = 10)
{
	struct vol v;
	vol_open(&v, 64 * MiB, NULL);
	struct fs_attr a;
	CHECK(fs_mkdir(v.fs, &CTX, ROOT, "d", 0755, &a) == 0, "mkdir");
	int r = fs_link(v.fs, a.ino, a.ino, "self", &a);
	CHECK(r == -EPERM, "link of a directory into itself: %d", r);
	r = fs_link(v.fs, ROOT, ROOT, "self", &a);
	CHECK(r == -EPERM, "link of / into itself: %d", r);
	vol_close(&v);
}

/*
 * rename(a/b/c/f -> a/b) against rmdir(a/b, "c"), repeated in two threads.
 * rename locks the parents c and a, then the children f and b; rmdir locks
 * b, then c. With b (the target, an ancestor of the source's parent) locked
 * after c, the two can wait for each other forever. Both requests must
 * fail (ENOTEMPTY / EISDIR for the rename, ENOTEMPTY for the rmdir).
 */
struct dl_arg {
	struct fs *fs;
	uint64_t a, b, c;
	atomic_bool stop;
	unsigned n;
	int bad;
};

static void *dl_rename(void *arg)
{
	struct dl_arg *x = arg;
	while (!atomic_load(&x->stop)) {
		int r = fs_rename(x->fs, x->c, "f", x->a, "b", 0);
		if (r != -ENOTEMPTY && r != -EISDIR)
			x->bad = r;
		x->n++;
	}
	return NULL;
}

static void *dl_rmdir(void *arg)
{
	struct dl_arg *x = arg;
	while (!atomic_load(&x->stop)) {
		int r = fs_rmdir(x->fs, x->b, "c");
		if (r != -ENOTEMPTY)
			x->bad = r;
	}
	return NULL;
}

Test(fs_model, rename_over_ancestor_vs_rmdir, .timeout = 20)
{
	struct vol v;
	vol_open(&v, 64 * MiB, NULL);
	struct fs_attr a, b, c, f;
	CHECK(fs_mkdir(v.fs, &CTX, ROOT, "a", 0755, &a) == 0, "mkdir a");
	CHECK(fs_mkdir(v.fs, &CTX, a.ino, "b", 0755, &b) == 0, "mkdir a/b");
	CHECK(fs_mkdir(v.fs, &CTX, b.ino, "c", 0755, &c) == 0, "mkdir a/b/c");
	CHECK(fs_mknod(v.fs, &CTX, c.ino, "f", S_IFREG | 0644, &f) == 0, "mknod a/b/c/f");
	struct dl_arg x = { .fs = v.fs, .a = a.ino, .b = b.ino, .c = c.ino };
	pthread_t t1, t2;
	pthread_create(&t1, NULL, dl_rename, &x);
	pthread_create(&t2, NULL, dl_rmdir, &x);
	uint64_t t0 = now_ns();
	while (now_ns() - t0 < 3000000000ull)
		usleep(10000);
	atomic_store(&x.stop, true);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	CHECK(x.bad == 0, "unexpected answer %d", x.bad);
	cr_log_info("rename vs rmdir: %u renames", x.n);
	vol_close(&v);
}

/*
 * rename between a directory and its parent (b/x <-> a/y, b inside a)
 * against rmdir(a, "b"). rename locks the two parents in inode-number
 * order; rmdir locks a, then b. When b has the lower number (it was made
 * first, then moved into a) rename takes b, then a, and the two wait for
 * each other forever. Linux's lock_rename locks the ancestor first.
 */
struct dl2_arg {
	struct fs *fs;
	uint64_t a, b;
	atomic_bool stop;
	unsigned n;
	int bad;
};

static void *dl2_rename(void *arg)
{
	struct dl2_arg *x = arg;
	while (!atomic_load(&x->stop)) {
		int r = fs_rename(x->fs, x->b, "x", x->a, "y", 0);
		if (!r)
			r = fs_rename(x->fs, x->a, "y", x->b, "x", 0);
		if (r)
			x->bad = r;
		x->n++;
	}
	return NULL;
}

static void *dl2_rmdir(void *arg)
{
	struct dl2_arg *x = arg;
	while (!atomic_load(&x->stop)) {
		int r = fs_rmdir(x->fs, x->a, "b");
		if (r != -ENOTEMPTY)
			x->bad = r;
	}
	return NULL;
}

Test(fs_model, rename_child_parent_vs_rmdir, .timeout = 20)
{
	struct vol v;
	vol_open(&v, 64 * MiB, NULL);
	struct fs_attr a, b, f;
	CHECK(fs_mkdir(v.fs, &CTX, ROOT, "b", 0755, &b) == 0, "mkdir b");
	CHECK(fs_mkdir(v.fs, &CTX, ROOT, "a", 0755, &a) == 0, "mkdir a");
	CHECK(b.ino < a.ino, "inode numbers: b %llu, a %llu", (unsigned long long)b.ino,
	      (unsigned long long)a.ino);
	CHECK(fs_mknod(v.fs, &CTX, b.ino, "keep", S_IFREG | 0644, &f) == 0, "mknod b/keep");
	CHECK(fs_mknod(v.fs, &CTX, b.ino, "x", S_IFREG | 0644, &f) == 0, "mknod b/x");
	CHECK(fs_rename(v.fs, ROOT, "b", a.ino, "b", 0) == 0, "rename b -> a/b");
	struct dl2_arg x = { .fs = v.fs, .a = a.ino, .b = b.ino };
	pthread_t t1, t2;
	pthread_create(&t1, NULL, dl2_rename, &x);
	pthread_create(&t2, NULL, dl2_rmdir, &x);
	uint64_t t0 = now_ns();
	while (now_ns() - t0 < 3000000000ull)
		usleep(10000);
	atomic_store(&x.stop, true);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	CHECK(x.bad == 0, "unexpected answer %d", x.bad);
	cr_log_info("rename child/parent vs rmdir: %u rename pairs", x.n);
	vol_close(&v);
}
