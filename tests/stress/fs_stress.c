/*
 * fs_stress.c - the filesystem engine's concurrent paths, as a plain
 * program (so it also runs under ThreadSanitizer; see README.md).
 *
 * The volume is a mirror over two memory disks with the smallest journal
 * (so group commit, checkpointing and log wrap-around all happen often).
 *
 *   a  Maildir delivery: 8 threads each deliver messages into one shared
 *      maildir (create tmp/X, write, fsync, link new/X, fsyncdir, unlink
 *      tmp/X) while a reader lists new/ and renames each message to cur/
 *      and a third party calls syncfs. At the end every delivered message
 *      is in cur/ or new/ exactly once with its content, tmp/ is empty;
 *      after unmount + mount the same holds.
 *   b  private trees: 4 threads in their own directories create, append,
 *      overwrite, truncate, rename and unlink files, keeping a model of
 *      their own tree; compared after the run and after a remount.
 *   c  readdir under churn: a scanner lists a directory again and again
 *      while two threads add and remove entries of their own; entries
 *      present for the whole scan must come exactly once, none twice.
 *
 * Output: "FAIL: <scenario>: ..." per violation, "fs_stress: N passed,
 * M failed" at the end, exit 1 if M > 0. Arguments: scenario letters.
 * Environment: CATAMARAN_STRESS_SCALE (default 1), CATAMARAN_STRESS_LOG=1.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "blockdev/bdev.h"
#include "blockdev/mirror/mirror.h"
#include "blockdev/testdev/mem_disk.h"
#include "core/base/error.h"
#include "core/base/log.h"
#include "core/fs/fs.h"
#include "tests/stress/helpers/stress_report.h"

static double scale = 1.0;

#define CHECK(expr)                                                              \
	do {                                                                     \
		long _r = (long)(expr);                                          \
		if (_r < 0)                                                      \
			fail("%s:%d: %s = %ld (%s)", __FILE__, __LINE__, #expr, _r, \
			     strerror((int)-_r));                               \
	} while (0)

/* ---- the volume ---- */

struct volume {
	struct mirror *m;
	struct fs *fs;
};

static int volume_mount(struct volume *v)
{
	struct cat_error err = { 0 };
	struct fs_opts o = { .cache_bytes = 4u << 20, .commit_interval_ms = 50 };
	int r = fs_mount(mirror_bdev(v->m), &o, &v->fs, &err);
	if (r)
		fail("mount: %s", err.msg);
	return r;
}

static int volume_create(struct volume *v, uint64_t nblocks)
{
	struct bdev *legs[2] = { mem_disk_create(nblocks, "leg1"), mem_disk_create(nblocks, "leg2") };
	struct cat_error err = { 0 };
	struct mirror_format_opts fo = { .assume_clean = true };
	struct mirror_opts mo = { .clean_delay_ms = 20 };
	int r = mirror_format(legs, &fo, &err);
	if (!r)
		r = mirror_open(legs, &mo, &v->m, &err);
	struct fs_format_opts ffo = { .journal_blocks = 1024 };
	if (!r)
		r = fs_format(mirror_bdev(v->m), &ffo, &err);
	if (r) {
		fail("volume: %s", err.msg);
		return r;
	}
	return volume_mount(v);
}

static void volume_remount(struct volume *v)
{
	CHECK(fs_unmount(v->fs));
	v->fs = NULL;
	volume_mount(v);
}

static void volume_destroy(struct volume *v)
{
	if (v->fs)
		CHECK(fs_unmount(v->fs));
	CHECK(mirror_close(v->m));
}

static const struct fs_ctx root_ctx = { 0, 0 };

static uint64_t mkdir_at(struct fs *fs, uint64_t parent, const char *name)
{
	struct fs_attr a = { 0 };
	int r = fs_mkdir(fs, &root_ctx, parent, name, 0755, &a);
	if (r == -EEXIST)
		r = fs_lookup(fs, parent, name, &a);
	CHECK(r);
	return a.ino;
}

static void fill_message(char *buf, size_t len, unsigned thread, unsigned n)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)('a' + (thread * 7 + n * 13 + i) % 26);
}

/* Read a whole file by name; returns its length or -errno. */
static long read_named(struct fs *fs, uint64_t dir, const char *name, char *buf, size_t cap)
{
	struct fs_attr a;
	uint64_t fh;
	int r = fs_lookup(fs, dir, name, &a);
	if (r)
		return r;
	long n = fs_open(fs, a.ino, O_RDONLY, &fh);
	if (n == 0) {
		n = fs_read(fs, a.ino, fh, buf, cap, 0);
		fs_release(fs, a.ino, fh);
	}
	fs_forget(fs, a.ino, 1);
	return n;
}

/* ---- a: Maildir delivery ---- */

enum { MSG_LEN = 5000 };

struct maildir {
	struct fs *fs;
	uint64_t tmp, new, cur;
	unsigned per_thread;
	atomic_bool done;
	atomic_uint moved;
};

struct deliverer {
	struct maildir *md;
	unsigned id;
	pthread_t th;
};

static void deliver_one(struct maildir *md, unsigned id, unsigned n)
{
	char name[64], buf[MSG_LEN];
	snprintf(name, sizeof(name), "%u.M%uP%u.stress", n, id, id);
	fill_message(buf, sizeof(buf), id, n);
	struct fs_attr a;
	uint64_t fh;
	int r = fs_create(md->fs, &root_ctx, md->tmp, name, 0600, O_EXCL | O_WRONLY, &a, &fh);
	if (r) {
		fail("create tmp/%s: %s", name, strerror(-r));
		return;
	}
	if (fs_write(md->fs, a.ino, fh, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
		fail("write tmp/%s", name);
	CHECK(fs_fsync(md->fs, a.ino, fh, false));
	CHECK(fs_release(md->fs, a.ino, fh));
	struct fs_attr l;
	CHECK(fs_link(md->fs, a.ino, md->new, name, &l));
	CHECK(fs_fsyncdir(md->fs, md->new, 0, false));
	CHECK(fs_unlink(md->fs, md->tmp, name));
	fs_forget(md->fs, a.ino, 2);
}

static void *deliver_main(void *arg)
{
	struct deliverer *d = arg;
	for (unsigned n = 0; n < d->md->per_thread; n++)
		deliver_one(d->md, d->id, n);
	return NULL;
}

struct name_list {
	char (*names)[64];
	size_t n, cap;
};

static int collect_name(void *arg, const char *name, size_t len, const struct fs_attr *a,
			uint64_t off)
{
	(void)a, (void)off;
	struct name_list *l = arg;
	if (name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.')))
		return 0;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 256;
		l->names = realloc(l->names, l->cap * sizeof(*l->names));
	}
	snprintf(l->names[l->n++], 64, "%.*s", (int)len, name);
	return 0;
}

static void list_dir(struct fs *fs, uint64_t dir, struct name_list *l)
{
	l->n = 0;
	CHECK(fs_readdir(fs, dir, 0, 0, collect_name, l));
}

static void *pickup_main(void *arg)
{
	struct maildir *md = arg;
	struct name_list l = { 0 };
	while (!atomic_load(&md->done)) {
		list_dir(md->fs, md->new, &l);
		for (size_t i = 0; i < l.n; i++) {
			int r = fs_rename(md->fs, md->new, l.names[i], md->cur, l.names[i],
					  RENAME_NOREPLACE);
			if (r)
				fail("rename new/%s -> cur: %s", l.names[i], strerror(-r));
			else
				atomic_fetch_add(&md->moved, 1);
		}
		CHECK(fs_syncfs(md->fs));
	}
	free(l.names);
	return NULL;
}

static bool name_in(const struct name_list *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->names[i], name))
			return true;
	return false;
}

static void verify_maildir(struct maildir *md, unsigned nthreads)
{
	struct name_list nl = { 0 }, cl = { 0 }, tl = { 0 };
	list_dir(md->fs, md->new, &nl);
	list_dir(md->fs, md->cur, &cl);
	list_dir(md->fs, md->tmp, &tl);
	if (tl.n)
		fail("tmp/ holds %zu leftovers", tl.n);
	if (nl.n + cl.n != nthreads * md->per_thread)
		fail("%zu messages in new/ + %zu in cur/, delivered %u", nl.n, cl.n,
		     nthreads * md->per_thread);
	char want[MSG_LEN], got[MSG_LEN + 1];
	for (unsigned id = 0; id < nthreads; id++)
		for (unsigned n = 0; n < md->per_thread; n++) {
			char name[64];
			snprintf(name, sizeof(name), "%u.M%uP%u.stress", n, id, id);
			bool in_new = name_in(&nl, name), in_cur = name_in(&cl, name);
			if (in_new == in_cur) {
				fail("%s is in %s", name, in_new ? "new/ and cur/" : "neither new/ nor cur/");
				continue;
			}
			fill_message(want, sizeof(want), id, n);
			long len = read_named(md->fs, in_new ? md->new : md->cur, name, got, sizeof(got));
			if (len != MSG_LEN || memcmp(want, got, MSG_LEN))
				fail("%s: wrong content (length %ld)", name, len);
		}
	free(nl.names);
	free(cl.names);
	free(tl.names);
}

static void scenario_a(void)
{
	struct volume v;
	if (volume_create(&v, 16384))
		return;
	const unsigned nthreads = 8;
	struct maildir md = { .fs = v.fs, .per_thread = (unsigned)(60 * scale) + 1 };
	uint64_t root = mkdir_at(v.fs, 1, "Maildir");
	md.tmp = mkdir_at(v.fs, root, "tmp");
	md.new = mkdir_at(v.fs, root, "new");
	md.cur = mkdir_at(v.fs, root, "cur");
	struct deliverer d[8];
	pthread_t picker;
	pthread_create(&picker, NULL, pickup_main, &md);
	for (unsigned i = 0; i < nthreads; i++) {
		d[i] = (struct deliverer){ .md = &md, .id = i };
		pthread_create(&d[i].th, NULL, deliver_main, &d[i]);
	}
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(d[i].th, NULL);
	atomic_store(&md.done, true);
	pthread_join(picker, NULL);
	struct fs_stats st;
	fs_get_stats(v.fs, &st);
	printf("  a: %u deliveries, %u moved to cur/, %.1f ops per commit, %llu checkpoints\n",
	       nthreads * md.per_thread, atomic_load(&md.moved), st.ops_per_commit,
	       (unsigned long long)st.checkpoints);
	if (st.checkpoints == 0)
		fail("no checkpoint ran: the journal never wrapped");
	verify_maildir(&md, nthreads);
	volume_remount(&v);
	md.fs = v.fs;
	if (v.fs)
		verify_maildir(&md, nthreads);
	volume_destroy(&v);
}

/* ---- b: private trees ---- */

enum { NFILES = 16, MAXLEN = 40000 };

struct tree_worker {
	struct fs *fs;
	unsigned id;
	uint64_t dir;
	unsigned rounds;
	size_t len[NFILES];          /* model: file i's length, 0 = absent */
	unsigned char seed[NFILES];  /* model: content pattern */
	pthread_t th;
};

static void pattern(char *buf, size_t len, unsigned char seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)(seed + i * 31 + i / 4096);
}

static void write_file(struct tree_worker *w, unsigned i, size_t len, unsigned char seed)
{
	char name[32], *buf = malloc(MAXLEN);
	snprintf(name, sizeof(name), "f%u", i);
	struct fs_attr a;
	uint64_t fh;
	int r = fs_create(w->fs, &root_ctx, w->dir, name, 0644, O_WRONLY | O_TRUNC, &a, &fh);
	if (!r) {
		pattern(buf, len, seed);
		if (fs_write(w->fs, a.ino, fh, buf, len, 0) != (ssize_t)len)
			fail("thread %u: write %s", w->id, name);
		CHECK(fs_release(w->fs, a.ino, fh));
		fs_forget(w->fs, a.ino, 1);
		w->len[i] = len ? len : SIZE_MAX;   /* SIZE_MAX: exists, empty */
		w->seed[i] = seed;
	} else {
		fail("thread %u: create %s: %s", w->id, name, strerror(-r));
	}
	free(buf);
}

static void tree_step(struct tree_worker *w, unsigned k)
{
	unsigned i = (k * 7 + w->id) % NFILES, j = (k * 11 + 3) % NFILES;
	char a[32], b[32];
	snprintf(a, sizeof(a), "f%u", i);
	snprintf(b, sizeof(b), "f%u", j);
	switch (k % 4) {
	case 0:
	case 1:
		write_file(w, i, (k * 997u) % MAXLEN, (unsigned char)k);
		break;
	case 2:
		if (w->len[i] && i != j) {
			CHECK(fs_rename(w->fs, w->dir, a, w->dir, b, 0));
			w->len[j] = w->len[i];
			w->seed[j] = w->seed[i];
			w->len[i] = 0;
		}
		break;
	default:
		if (w->len[i]) {
			CHECK(fs_unlink(w->fs, w->dir, a));
			w->len[i] = 0;
		}
	}
}

static void *tree_main(void *arg)
{
	struct tree_worker *w = arg;
	for (unsigned k = 0; k < w->rounds; k++)
		tree_step(w, k);
	return NULL;
}

static void verify_tree(struct tree_worker *w)
{
	char *want = malloc(MAXLEN), *got = malloc(MAXLEN + 1);
	for (unsigned i = 0; i < NFILES; i++) {
		char name[32];
		snprintf(name, sizeof(name), "f%u", i);
		long n = read_named(w->fs, w->dir, name, got, MAXLEN + 1);
		size_t len = w->len[i] == SIZE_MAX ? 0 : w->len[i];
		if (!w->len[i]) {
			if (n != -ENOENT)
				fail("thread %u: %s should not exist (%ld)", w->id, name, n);
			continue;
		}
		pattern(want, len, w->seed[i]);
		if (n != (long)len || memcmp(want, got, len))
			fail("thread %u: %s: length %ld, want %zu, or content differs", w->id, name,
			     n, len);
	}
	free(want);
	free(got);
}

static void scenario_b(void)
{
	struct volume v;
	if (volume_create(&v, 16384))
		return;
	struct tree_worker w[4];
	for (unsigned t = 0; t < 4; t++) {
		char name[16];
		snprintf(name, sizeof(name), "t%u", t);
		w[t] = (struct tree_worker){ .fs = v.fs, .id = t, .rounds = (unsigned)(300 * scale) + 4 };
		w[t].dir = mkdir_at(v.fs, 1, name);
		pthread_create(&w[t].th, NULL, tree_main, &w[t]);
	}
	for (unsigned t = 0; t < 4; t++)
		pthread_join(w[t].th, NULL);
	for (unsigned t = 0; t < 4; t++)
		verify_tree(&w[t]);
	volume_remount(&v);
	for (unsigned t = 0; v.fs && t < 4; t++) {
		w[t].fs = v.fs;
		verify_tree(&w[t]);
	}
	volume_destroy(&v);
}

/* ---- c: readdir under churn ---- */

struct churn {
	struct fs *fs;
	uint64_t dir;
	unsigned id, rounds;
	atomic_bool *stop;
	pthread_t th;
};

static void *churn_main(void *arg)
{
	struct churn *c = arg;
	for (unsigned k = 0; k < c->rounds; k++) {
		char name[48];
		snprintf(name, sizeof(name), "churn-%u-%u", c->id, k % 200);
		struct fs_attr a;
		uint64_t fh;
		if (k / 200 % 2 == 0) {
			CHECK(fs_create(c->fs, &root_ctx, c->dir, name, 0644, O_EXCL, &a, &fh));
			fs_release(c->fs, a.ino, fh);
			fs_forget(c->fs, a.ino, 1);
		} else {
			CHECK(fs_unlink(c->fs, c->dir, name));
		}
	}
	atomic_store(c->stop, true);
	return NULL;
}

struct scan {
	unsigned *seen;     /* per stable entry */
	unsigned nstable;
	unsigned dup;
};

static int count_stable(void *arg, const char *name, size_t len, const struct fs_attr *a,
			uint64_t off)
{
	(void)a, (void)off;
	struct scan *s = arg;
	char nm[64];
	unsigned i;
	snprintf(nm, sizeof(nm), "%.*s", (int)len, name);   /* names are not NUL-terminated */
	if (sscanf(nm, "stable-%u", &i) == 1 && i < s->nstable && s->seen[i]++)
		s->dup++;
	return 0;
}

/* readdir in small batches (as FUSE does), resuming from the last cookie. */
static int batch_fill(void *arg, const char *name, size_t len, const struct fs_attr *a,
		      uint64_t off)
{
	uint64_t *ctx = arg;            /* [0] = remaining, [1] = last off, [2] = scan */
	if (ctx[0] == 0)
		return 1;
	ctx[0]--;
	ctx[1] = off;
	return count_stable((void *)(uintptr_t)ctx[2], name, len, a, off);
}

static void scan_once(struct fs *fs, uint64_t dir, struct scan *s)
{
	memset(s->seen, 0, s->nstable * sizeof(*s->seen));
	s->dup = 0;
	uint64_t off = 0;
	for (;;) {
		uint64_t ctx[3] = { 37, off, (uint64_t)(uintptr_t)s };
		CHECK(fs_readdir(fs, dir, 0, off, batch_fill, ctx));
		if (ctx[0] != 0)
			break;                  /* the directory ran out */
		off = ctx[1];
	}
	for (unsigned i = 0; i < s->nstable; i++)
		if (s->seen[i] != 1)
			fail("stable-%u seen %u times in one scan", i, s->seen[i]);
}

static void scenario_c(void)
{
	struct volume v;
	if (volume_create(&v, 16384))
		return;
	uint64_t dir = mkdir_at(v.fs, 1, "busy");
	struct scan s = { .nstable = 500 };
	s.seen = calloc(s.nstable, sizeof(*s.seen));
	for (unsigned i = 0; i < s.nstable; i++) {
		char name[32];
		struct fs_attr a;
		uint64_t fh;
		snprintf(name, sizeof(name), "stable-%u", i);
		CHECK(fs_create(v.fs, &root_ctx, dir, name, 0644, O_EXCL, &a, &fh));
		fs_release(v.fs, a.ino, fh);
		fs_forget(v.fs, a.ino, 1);
	}
	atomic_bool stop[2] = { false, false };
	struct churn c[2];
	for (unsigned t = 0; t < 2; t++) {
		c[t] = (struct churn){ .fs = v.fs, .dir = dir, .id = t, .stop = &stop[t],
				       .rounds = (unsigned)(1600 * scale) / 400 * 400 + 400 };
		pthread_create(&c[t].th, NULL, churn_main, &c[t]);
	}
	unsigned scans = 0;
	while (!atomic_load(&stop[0]) || !atomic_load(&stop[1])) {
		scan_once(v.fs, dir, &s);
		scans++;
	}
	for (unsigned t = 0; t < 2; t++)
		pthread_join(c[t].th, NULL);
	printf("  c: %u scans under churn\n", scans);
	free(s.seen);
	volume_destroy(&v);
}

/* ---- main ---- */

static void quiet(enum cat_log_level level, const char *msg)
{
	(void)level, (void)msg;
}

int main(int argc, char **argv)
{
	const char *env = getenv("CATAMARAN_STRESS_SCALE");
	if (env)
		scale = atof(env) > 0 ? atof(env) : 1.0;
	if (!getenv("CATAMARAN_STRESS_LOG"))
		cat_log_set_sink(quiet, CAT_LOG_ERROR);
	const char *which = argc > 1 ? argv[1] : "abc";
	struct { char letter; void (*run)(void); } all[] = {
		{ 'a', scenario_a }, { 'b', scenario_b }, { 'c', scenario_c },
	};
	int passed = 0, failed = 0;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (!strchr(which, all[i].letter))
			continue;
		static char name[2];
		name[0] = all[i].letter;
		stress_scenario = name;
		int before = stress_failures();
		all[i].run();
		bool ok = stress_failures() == before;
		if (ok)
			passed++;
		else
			failed++;
		printf("%s %c\n", ok ? "ok" : "FAILED", all[i].letter);
	}
	printf("fs_stress: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
