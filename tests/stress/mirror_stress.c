/*
 * mirror_stress.c - every concurrent path of the mirror, as a plain program.
 *
 * Why not Criterion: Criterion binaries cannot start under ThreadSanitizer
 * (Criterion issue #274), and the TSan build is where races in the mirror
 * get caught. So this program drives the mirror with many threads, checks
 * real results itself, and ctest runs it in every build (see README.md).
 *
 * Each scenario builds a mirror, runs a workload beside some control
 * action, then stops the workload and checks: every block holds what the
 * model says, both legs compare equal (online, through
 * mirror_compare_range, and after mirror_close on the raw images), the
 * superblocks say clean and in sync, and a reassembly needs no resync.
 *
 *   a  6 owner threads + 1 writer + 2 readers of shared blocks, bitmap
 *      cleaner at 5 ms, mirror_read_leg mixed in; a large sparse disk so a
 *      request crosses the stripe table's wrap-around (stripe 1023 -> 0)
 *   b  same, while a control thread fails leg 1, replaces it, resyncs it
 *      under load, fails leg 2, replaces and resyncs that one too
 *   c  fault injection: one-shot read faults (read repair) on one leg and
 *      one-shot write faults (write retry) on the other, both directions;
 *      then a leg vanishes, is replaced, and its rebuild target fails
 *      halfway (resync ends degraded); then a final replace + resync
 *   d  recovery_scrub (with and without repair) looping beside the writers:
 *      never a mismatch; a final scrub after the last flush: none either
 *   e  two io_uring disks on /tmp files, 4 threads (one ring each); close
 *      and reopen: no stale chunk, data intact
 *   f  power cuts (crash disks, independent loss per leg) at random points
 *      under 4 writers with the cleaner running; after recovery every block
 *      holds its last flushed value or a later one, and a scrub finds the
 *      legs identical (a wrongly cleared bitmap bit would show here)
 *   g  the source of a rebuild vanishes halfway, under load: the resync
 *      fails with EIO, chunks not yet rebuilt answer EIO (never stale data),
 *      the rebuilt ones keep serving, and reassembly refuses (-EUCLEAN)
 *   h  the disk being rebuilt is replaced again while recovery_resync is
 *      copying onto it (an operator swapping a bad new disk), under load:
 *      once the resync completes, both legs must be identical
 *
 * In b, c, d and h every block no thread owns is written once beforehand
 * ("cold" data) and checked at the end: hot blocks are rewritten to both
 * legs within milliseconds, which would hide a chunk a rebuild skipped.
 *
 * Output: "FAIL: <scenario>: ..." for each violation; at the end
 * "mirror_stress: N passed, M failed"; exit status 1 when M > 0.
 * Arguments: scenario letters to run a subset (default: all).
 * Environment: CATAMARAN_STRESS_SCALE (default 1; < 1 shorter, > 1 longer),
 * CATAMARAN_STRESS_SEED=n to vary the workloads (default 1),
 * CATAMARAN_STRESS_LOG=1 to see the library's log messages.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "blockdev/bdev.h"
#include "blockdev/disk/uring_disk.h"
#include "blockdev/mirror/mirror.h"
#include "blockdev/testdev/crash_disk.h"
#include "blockdev/testdev/fault_disk.h"
#include "blockdev/testdev/mem_disk.h"
#include "core/base/crc32c.h"
#include "core/base/log.h"
#include "core/base/util.h"
#include "recovery/recovery.h"

#define BS BDEV_BLOCK_SIZE
#define MAX_OWNERS 8
#define MAX_OP_BLOCKS 72   /* an occasional big request crosses stripe groups */
#define CAND_MAX 48        /* crash mode: values a block may hold after a cut */
#define SHARED_READERS 2
#define CHUNK 16           /* small chunks: many bitmap bits to set and clear */
#define SMALL_DISK 4096u   /* 16 MiB per leg */

/* ------------------------------------------------------------------------ */
/* Reporting                                                                */

static const char *g_scenario = "-";
static atomic_int g_failures;          /* violations in the current scenario */
static pthread_mutex_t g_print_lock = PTHREAD_MUTEX_INITIALIZER;
static double g_scale = 1.0;
static uint64_t g_seed = 1;   /* CATAMARAN_STRESS_SEED: varies every workload */
static bool g_tsan;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&g_print_lock);
	/* Only the first few of a scenario: one bug can cascade. */
	if (atomic_fetch_add(&g_failures, 1) < 10)
		printf("FAIL: %s: %s\n", g_scenario, msg);
	fflush(stdout);
	pthread_mutex_unlock(&g_print_lock);
}

static bool failed(void) { return atomic_load(&g_failures) > 0; }

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&g_print_lock);
	printf("  [%s] ", g_scenario);
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	pthread_mutex_unlock(&g_print_lock);
	va_end(ap);
}

#define CHECK(cond, ...)                 \
	do {                             \
		if (!(cond))             \
			fail(__VA_ARGS__); \
	} while (0)

static atomic_bool g_show_log;
static atomic_uint_fast64_t g_log_errors;

static void log_sink(enum cat_log_level level, const char *msg)
{
	if (level >= CAT_LOG_ERROR)
		atomic_fetch_add(&g_log_errors, 1);
	if (atomic_load(&g_show_log)) {
		pthread_mutex_lock(&g_print_lock);
		printf("    log: %s\n", msg);
		pthread_mutex_unlock(&g_print_lock);
	}
}

/* A scenario that hangs (a deadlock) is reported by name, not by ctest's
 * timeout. */
static pthread_mutex_t wd_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cond = PTHREAD_COND_INITIALIZER;
static uint64_t wd_deadline_ns; /* 0 = idle; under wd_lock */
static const char *wd_name = "-"; /* scenario being watched; under wd_lock */
static bool wd_quit;

static void *watchdog_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&wd_lock);
	while (!wd_quit) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&wd_cond, &wd_lock, &ts);
		if (wd_deadline_ns && now_ns() > wd_deadline_ns) {
			printf("FAIL: %s: still running past its time limit (deadlock?)\n", wd_name);
			printf("mirror_stress: watchdog abort\n");
			fflush(stdout);
			_exit(1);
		}
	}
	pthread_mutex_unlock(&wd_lock);
	return NULL;
}

/* g_scenario is written only here, by the main thread, while no worker
 * runs; the watchdog reads its own copy under wd_lock. */
static void watchdog_arm(const char *name, double seconds)
{
	pthread_mutex_lock(&wd_lock);
	g_scenario = wd_name = name;
	wd_deadline_ns = seconds > 0 ? now_ns() + (uint64_t)(seconds * 1e9) : 0;
	pthread_mutex_unlock(&wd_lock);
}

static void sleep_ms(double ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6) };
	nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------------ */
/* Self-describing payloads: { magic, blkno, seq, crc32c } + body(blkno, seq) */

#define PAYLOAD_MAGIC 0x53534552544d4143ull /* "CATMRESS" */
#define HDR_BYTES 32u

static uint32_t payload_crc(const uint8_t *b)
{
	return crc32c(crc32c(0, b, 24), b + HDR_BYTES, BS - HDR_BYTES);
}

static void payload_fill(uint8_t *b, uint64_t blkno, uint64_t seq)
{
	struct prng r;
	prng_seed(&r, blkno * 0x100000001b3ull ^ seq);
	uint64_t magic = PAYLOAD_MAGIC;
	memcpy(b, &magic, 8);
	memcpy(b + 8, &blkno, 8);
	memcpy(b + 16, &seq, 8);
	memset(b + 24, 0, 8);
	for (uint32_t off = HDR_BYTES; off < BS; off += 8) {
		uint64_t v = prng_next(&r);
		memcpy(b + off, &v, 8);
	}
	uint32_t crc = payload_crc(b);
	memcpy(b + 24, &crc, 4);
}

/* 1: whole payload of blkno (*seq set); 0: all zero (*seq = 0); -1: other. */
static int payload_check(const uint8_t *b, uint64_t blkno, uint64_t *seq)
{
	uint64_t magic, blk, s;
	uint32_t crc;
	memcpy(&magic, b, 8);
	*seq = 0;
	if (magic != PAYLOAD_MAGIC) {
		for (uint32_t i = 0; i < BS; i++)
			if (b[i])
				return -1;
		return 0;
	}
	memcpy(&blk, b + 8, 8);
	memcpy(&s, b + 16, 8);
	memcpy(&crc, b + 24, 4);
	if (blk != blkno || crc != payload_crc(b))
		return -1;
	*seq = s;
	return 1;
}

/* Split n blocks at buf into 1, n or 2 iovecs (vectored paths). */
static int build_iov(struct iovec *iov, uint8_t *buf, uint64_t n, struct prng *r)
{
	switch (prng_below(r, 3)) {
	case 1:
		for (uint64_t i = 0; i < n; i++)
			iov[i] = (struct iovec){ buf + i * BS, BS };
		return (int)n;
	case 2:
		if (n > 1) {
			uint64_t k = 1 + prng_below(r, n - 1);
			iov[0] = (struct iovec){ buf, k * BS };
			iov[1] = (struct iovec){ buf + k * BS, (n - k) * BS };
			return 2;
		}
		/* fall through */
	default:
		iov[0] = (struct iovec){ buf, n * BS };
		return 1;
	}
}

/* ------------------------------------------------------------------------ */
/* Workload                                                                 */

struct wl;

struct owner {
	struct wl *w;
	int id;
	pthread_t th;
	uint64_t base, n;       /* blocks [base, base + n) belong to this thread */
	uint64_t *exp;          /* last value written (seq; 0 = zeros) */
	uint64_t seq;
	/* crash mode: values each block may hold after a power cut: its value
	 * at this thread's last completed flush, then every write since */
	uint64_t *cand;         /* n * CAND_MAX */
	uint8_t *ncand;
	int last_err;           /* crash mode: the error that stopped it */
	atomic_uint_fast64_t ops;
};

struct wl_cfg {
	int owners;
	uint64_t own_blocks;
	uint64_t own_stride;    /* distance between owners' regions (>= own_blocks) */
	uint64_t shared_base, shared_blocks; /* shared_blocks 0: no shared threads */
	bool read_leg;          /* mix in mirror_read_leg (both legs stay in sync) */
	bool crash_mode;        /* errors end a thread quietly; track candidates */
	bool uncertain;         /* EIO allowed once src_failed is set; a failed
				 * write leaves old or new (candidates) */
	bool cold;              /* every other block holds COLD_SEQ data, written
				 * once before the run (most of a real disk is
				 * cold: a lost copy there is never rewritten) */
};

struct wl {
	struct wl_cfg cfg;
	struct bdev *dev;       /* set before start, stable while running */
	struct mirror *m;
	uint64_t seed;
	atomic_bool stop;
	bool running;
	bool cold_written;
	struct owner own[MAX_OWNERS];
	pthread_t writer, readers[SHARED_READERS];
	_Atomic uint64_t *started, *completed; /* shared blocks: writer's seqs */
	uint64_t shared_seq;
	atomic_uint_fast64_t ops, shared_reads, shared_writes;
	atomic_bool src_failed; /* uncertain mode: EIO is now a legal answer */
	atomic_uint_fast64_t eio; /* uncertain mode: EIO answers seen */
};

static bool wl_stopping(struct wl *w) { return atomic_load(&w->stop) || failed(); }

static uint64_t owner_seq(struct owner *o) { return ((uint64_t)(o->id + 1) << 48) | ++o->seq; }

static bool owner_check(struct owner *o, const uint8_t *buf, uint64_t b, uint64_t n,
			const char *what)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t want = o->exp[b + i - o->base], got;
		int v = payload_check(buf + i * BS, b + i, &got);
		if (v < 0) {
			fail("%s: owner %d block %llu: torn, foreign or garbage block (expected seq %#llx)",
			     what, o->id, (unsigned long long)(b + i), (unsigned long long)want);
			return false;
		}
		if (got != want) {
			fail("%s: owner %d block %llu holds seq %#llx, expected its last write %#llx",
			     what, o->id, (unsigned long long)(b + i), (unsigned long long)got,
			     (unsigned long long)want);
			return false;
		}
	}
	return true;
}

/* Uncertain mode: each block must hold one of its candidates; a value
 * read settles the block's state. */
static bool owner_check_cand(struct owner *o, const uint8_t *buf, uint64_t b, uint64_t n,
			     const char *what)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t j = b + i - o->base, got;
		int v = payload_check(buf + i * BS, b + i, &got);
		bool ok = false;
		for (unsigned k = 0; v >= 0 && k < o->ncand[j] && !ok; k++)
			ok = o->cand[j * CAND_MAX + k] == got;
		if (!ok) {
			fail("%s: owner %d block %llu holds %s %#llx: not its last successful write "
			     "%#llx nor a failed write after it (stale data?)", what, o->id,
			     (unsigned long long)(b + i), v < 0 ? "garbage" : "seq",
			     (unsigned long long)got, (unsigned long long)o->exp[j]);
			return false;
		}
		o->exp[j] = got;
		o->cand[j * CAND_MAX] = got;
		o->ncand[j] = 1;
	}
	return true;
}

/* Uncertain mode: an error is legal only as EIO after the source failed. */
static void owner_error(struct owner *o, int rc, const char *what, uint64_t b, uint64_t n)
{
	struct wl *w = o->w;
	if (w->cfg.uncertain && rc == -EIO && atomic_load(&w->src_failed)) {
		atomic_fetch_add(&w->eio, 1);
		return;
	}
	if (!w->cfg.crash_mode)
		fail("owner %d: %s of blocks %llu+%llu: %s", o->id, what, (unsigned long long)b,
		     (unsigned long long)n, strerror(-rc));
}

/* Crash mode: forget candidates older than what this flush made durable. */
static void owner_flushed(struct owner *o)
{
	for (uint64_t i = 0; i < o->n; i++) {
		o->cand[i * CAND_MAX] = o->exp[i];
		o->ncand[i] = 1;
	}
}

static bool owner_cands_full(struct owner *o, uint64_t b, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (o->ncand[b - o->base + i] >= CAND_MAX)
			return true;
	return false;
}

static void *owner_main(void *arg)
{
	struct owner *o = arg;
	struct wl *w = o->w;
	struct prng r;
	prng_seed(&r, w->seed * 1000003u + (uint64_t)o->id * 7919u + o->seq);
	uint8_t *buf = block_alloc(MAX_OP_BLOCKS * BS);
	struct iovec iov[MAX_OP_BLOCKS];
	if (!buf) {
		fail("owner %d: out of memory", o->id);
		return NULL;
	}
	while (!wl_stopping(w)) {
		uint64_t n = prng_below(&r, 20) == 0 ? 1 + prng_below(&r, MAX_OP_BLOCKS)
						      : 1 + prng_below(&r, 8);
		n = n > o->n ? o->n : n;
		uint64_t b = o->base + prng_below(&r, o->n - n + 1);
		unsigned k = (unsigned)prng_below(&r, 100);
		bool full = (w->cfg.crash_mode || w->cfg.uncertain) && owner_cands_full(o, b, n);
		bool flush = k >= 94 || (w->cfg.crash_mode && full);
		int rc;
		if (flush) {
			rc = bdev_flush(w->dev);
			if (rc == 0 && w->cfg.crash_mode)
				owner_flushed(o);
			if (rc != 0)
				owner_error(o, rc, "flush", 0, 0);
		} else if (k < 46 && !full) {
			uint64_t seq = owner_seq(o);
			for (uint64_t i = 0; i < n; i++) {
				payload_fill(buf + i * BS, b + i, seq);
				if (w->cfg.crash_mode || w->cfg.uncertain) {
					uint64_t j = b + i - o->base;
					o->cand[j * CAND_MAX + o->ncand[j]++] = seq;
				}
			}
			int cnt = build_iov(iov, buf, n, &r);
			rc = bdev_writev(w->dev, b, iov, cnt);
			if (rc == 0)
				for (uint64_t i = 0; i < n; i++) {
					uint64_t j = b + i - o->base;
					o->exp[j] = seq;
					if (w->cfg.uncertain) {
						o->cand[j * CAND_MAX] = seq;
						o->ncand[j] = 1;
					}
				}
			else
				owner_error(o, rc, "write", b, n);
		} else if (k < 88 || !w->cfg.read_leg) {
			memset(buf, 0xa5, n * BS);
			int cnt = build_iov(iov, buf, n, &r);
			rc = bdev_readv(w->dev, b, iov, cnt);
			if (rc == 0 && w->cfg.uncertain)
				owner_check_cand(o, buf, b, n, "read");
			else if (rc == 0)
				owner_check(o, buf, b, n, "read");
			else
				owner_error(o, rc, "read", b, n);
		} else {
			int leg = (int)prng_below(&r, 2);
			memset(buf, 0x5a, n * BS);
			rc = mirror_read_leg(w->m, leg, b, buf, n);
			if (rc == 0)
				owner_check(o, buf, b, n, leg ? "mirror_read_leg(disk 2)" : "mirror_read_leg(disk 1)");
			else
				fail("owner %d: mirror_read_leg(%d) of blocks %llu+%llu: %s", o->id, leg,
				     (unsigned long long)b, (unsigned long long)n, strerror(-rc));
		}
		atomic_fetch_add(&o->ops, 1);
		atomic_fetch_add(&w->ops, 1);
		if (rc != 0 && w->cfg.crash_mode) {
			o->last_err = rc; /* the power is gone: this thread is done */
			break;
		}
	}
	free(buf);
	return NULL;
}

/* One writer over the shared blocks: started[b] is published before a write
 * is issued, completed[b] after it returned, so a reader that loads
 * completed[b] before its read and started[b] after it must see a value in
 * between, and never an older one than it saw before (single writer). */
static void *shared_writer_main(void *arg)
{
	struct wl *w = arg;
	struct prng r;
	prng_seed(&r, w->seed * 31337u + 1);
	uint8_t *buf = block_alloc(4 * BS);
	struct iovec iov[4];
	uint64_t nb = w->cfg.shared_blocks;
	while (buf && !wl_stopping(w)) {
		uint64_t n = 1 + prng_below(&r, 4);
		uint64_t off = prng_below(&r, nb - n + 1), b = w->cfg.shared_base + off;
		uint64_t seq = (0xffull << 48) | ++w->shared_seq;
		for (uint64_t i = 0; i < n; i++) {
			atomic_store(&w->started[off + i], seq);
			payload_fill(buf + i * BS, b + i, seq);
		}
		int rc = bdev_writev(w->dev, b, iov, build_iov(iov, buf, n, &r));
		if (rc != 0) {
			fail("shared writer: write of blocks %llu+%llu: %s", (unsigned long long)b,
			     (unsigned long long)n, strerror(-rc));
			break;
		}
		for (uint64_t i = 0; i < n; i++)
			atomic_store(&w->completed[off + i], seq);
		if (prng_below(&r, 16) == 0 && (rc = bdev_flush(w->dev)) != 0)
			fail("shared writer: flush: %s", strerror(-rc));
		atomic_fetch_add(&w->shared_writes, 1);
		atomic_fetch_add(&w->ops, 1);
	}
	free(buf);
	return NULL;
}

static void *shared_reader_main(void *arg)
{
	struct wl *w = arg;
	static atomic_int reader_ids;
	struct prng r;
	prng_seed(&r, w->seed * 4099u + (uint64_t)atomic_fetch_add(&reader_ids, 1) + 17);
	uint64_t nb = w->cfg.shared_blocks;
	uint8_t *buf = block_alloc(4 * BS);
	uint64_t *last = calloc(nb, sizeof(*last));
	struct iovec iov[4];
	uint64_t lo[4], hi[4];
	while (buf && last && !wl_stopping(w)) {
		uint64_t n = 1 + prng_below(&r, 4);
		uint64_t off = prng_below(&r, nb - n + 1), b = w->cfg.shared_base + off;
		for (uint64_t i = 0; i < n; i++)
			lo[i] = atomic_load(&w->completed[off + i]);
		memset(buf, 0xee, n * BS);
		int rc = bdev_readv(w->dev, b, iov, build_iov(iov, buf, n, &r));
		for (uint64_t i = 0; i < n; i++)
			hi[i] = atomic_load(&w->started[off + i]);
		if (rc != 0) {
			fail("shared reader: read of blocks %llu+%llu: %s", (unsigned long long)b,
			     (unsigned long long)n, strerror(-rc));
			break;
		}
		for (uint64_t i = 0; i < n; i++) {
			uint64_t got;
			int v = payload_check(buf + i * BS, b + i, &got);
			if (v < 0)
				fail("shared reader: block %llu is torn, foreign or garbage",
				     (unsigned long long)(b + i));
			else if (got < lo[i] || got > hi[i] || got < last[off + i])
				fail("shared reader: block %llu holds seq %#llx; not linearizable: "
				     "completed before the read %#llx, started by its end %#llx, "
				     "seen earlier %#llx", (unsigned long long)(b + i),
				     (unsigned long long)got, (unsigned long long)lo[i],
				     (unsigned long long)hi[i], (unsigned long long)last[off + i]);
			last[off + i] = got;
		}
		atomic_fetch_add(&w->shared_reads, 1);
		atomic_fetch_add(&w->ops, 1);
	}
	free(buf);
	free(last);
	return NULL;
}

static bool wl_init(struct wl *w, const struct wl_cfg *cfg, uint64_t seed)
{
	memset(w, 0, sizeof(*w));
	w->cfg = *cfg;
	w->seed = seed * 0x9e3779b97f4a7c15ull + g_seed;
	for (int t = 0; t < cfg->owners; t++) {
		struct owner *o = &w->own[t];
		o->w = w;
		o->id = t;
		o->base = (uint64_t)t * cfg->own_stride;
		o->n = cfg->own_blocks;
		o->exp = calloc(o->n, sizeof(*o->exp));
		o->cand = calloc(o->n * CAND_MAX, sizeof(*o->cand));
		o->ncand = calloc(o->n, 1);
		if (!o->exp || !o->cand || !o->ncand)
			return false;
		owner_flushed(o); /* zeros: the formatted state is durable */
	}
	if (cfg->shared_blocks) {
		w->started = calloc(cfg->shared_blocks, sizeof(*w->started));
		w->completed = calloc(cfg->shared_blocks, sizeof(*w->completed));
		if (!w->started || !w->completed)
			return false;
	}
	return true;
}

static void wl_free(struct wl *w)
{
	for (int t = 0; t < w->cfg.owners; t++) {
		free(w->own[t].exp);
		free(w->own[t].cand);
		free(w->own[t].ncand);
	}
	free((void *)w->started);
	free((void *)w->completed);
}

#define COLD_SEQ ((0xc0ull << 48) | 1)

static bool wl_owned(const struct wl *w, uint64_t b)
{
	if (b >= w->cfg.shared_base && b - w->cfg.shared_base < w->cfg.shared_blocks)
		return true;
	uint64_t t = b / w->cfg.own_stride;
	return t < (uint64_t)w->cfg.owners && b - t * w->cfg.own_stride < w->cfg.own_blocks;
}

/* Write (and flush) COLD_SEQ payloads to every block no thread owns. */
static void wl_cold_fill(struct wl *w, struct bdev *dev)
{
	uint8_t *buf = block_alloc(64 * BS);
	for (uint64_t b = 0; buf && b < dev->nblocks && !failed();) {
		uint64_t n = 0;
		while (b + n < dev->nblocks && n < 64 && !wl_owned(w, b + n)) {
			payload_fill(buf + n * BS, b + n, COLD_SEQ);
			n++;
		}
		if (n) {
			int rc = bdev_write(dev, b, buf, n);
			CHECK(rc == 0, "writing cold data at %llu+%llu: %s", (unsigned long long)b,
			      (unsigned long long)n, strerror(-rc));
		}
		b += n ? n : 1;
	}
	int rc = bdev_flush(dev);
	CHECK(rc == 0, "flush after cold data: %s", strerror(-rc));
	free(buf);
}

static void wl_cold_verify(struct wl *w, struct bdev *dev, const char *when)
{
	uint8_t *buf = block_alloc(64 * BS);
	uint64_t bad = 0, first = 0;
	for (uint64_t b = 0; buf && b < dev->nblocks && !failed(); b += 64) {
		uint64_t n = dev->nblocks - b < 64 ? dev->nblocks - b : 64;
		int rc = bdev_read(dev, b, buf, n);
		if (rc != 0) {
			fail("%s: read of cold blocks %llu+%llu: %s", when, (unsigned long long)b,
			     (unsigned long long)n, strerror(-rc));
			break;
		}
		for (uint64_t i = 0; i < n; i++) {
			uint64_t got;
			if (!wl_owned(w, b + i) && (payload_check(buf + i * BS, b + i, &got) != 1 ||
						    got != COLD_SEQ) && !bad++)
				first = b + i;
		}
	}
	CHECK(bad == 0, "%s: %llu cold blocks (written once before the run) read back wrong; "
	      "first: block %llu", when, (unsigned long long)bad, (unsigned long long)first);
	free(buf);
}

static void wl_start(struct wl *w, struct mirror *m)
{
	w->m = m;
	w->dev = mirror_bdev(m);
	if (w->cfg.cold && !w->cold_written) {
		wl_cold_fill(w, w->dev);
		w->cold_written = true;
	}
	atomic_store(&w->stop, false);
	for (int t = 0; t < w->cfg.owners; t++) {
		w->own[t].last_err = 0;
		if (pthread_create(&w->own[t].th, NULL, owner_main, &w->own[t]))
			abort();
	}
	if (w->cfg.shared_blocks) {
		if (pthread_create(&w->writer, NULL, shared_writer_main, w))
			abort();
		for (int i = 0; i < SHARED_READERS; i++)
			if (pthread_create(&w->readers[i], NULL, shared_reader_main, w))
				abort();
	}
	w->running = true;
}

static void wl_stop(struct wl *w)
{
	if (!w->running)
		return;
	atomic_store(&w->stop, true);
	for (int t = 0; t < w->cfg.owners; t++)
		pthread_join(w->own[t].th, NULL);
	if (w->cfg.shared_blocks) {
		pthread_join(w->writer, NULL);
		for (int i = 0; i < SHARED_READERS; i++)
			pthread_join(w->readers[i], NULL);
	}
	w->running = false;
}

/* Let the workload run for about ms (scaled) and at least min_ops (scaled)
 * operations, but no more than 10x ms: under TSan everything is slower. */
static void pace(struct wl *w, double ms, uint64_t min_ops)
{
	uint64_t t0 = now_ns(), o0 = atomic_load(&w->ops);
	uint64_t want = (uint64_t)(ms * g_scale * 1e6), hard = want * 10;
	uint64_t need = (uint64_t)((double)min_ops * g_scale / (g_tsan ? 8 : 1));
	for (;;) {
		if (failed())
			return;
		uint64_t el = now_ns() - t0, d = atomic_load(&w->ops) - o0;
		if ((el >= want && d >= need) || el >= hard)
			break;
		sleep_ms(1);
	}
	if (atomic_load(&w->ops) == o0)
		fail("the workload made no progress in %.0f ms (deadlock?)", ms * g_scale * 10);
}

/* Read every block of the model through dev and compare. */
static void wl_verify(struct wl *w, struct bdev *dev, const char *when)
{
	uint8_t *buf = block_alloc(64 * BS);
	if (!buf)
		return;
	for (int t = 0; t < w->cfg.owners && !failed(); t++) {
		struct owner *o = &w->own[t];
		for (uint64_t b = o->base; b < o->base + o->n && !failed(); b += 64) {
			uint64_t n = o->base + o->n - b < 64 ? o->base + o->n - b : 64;
			int rc = bdev_read(dev, b, buf, n);
			if (rc != 0)
				fail("%s: read of blocks %llu+%llu: %s", when, (unsigned long long)b,
				     (unsigned long long)n, strerror(-rc));
			else
				owner_check(o, buf, b, n, when);
		}
	}
	for (uint64_t i = 0; i < w->cfg.shared_blocks && !failed(); i++) {
		uint64_t b = w->cfg.shared_base + i, got;
		int rc = bdev_read(dev, b, buf, 1);
		if (rc != 0) {
			fail("%s: read of shared block %llu: %s", when, (unsigned long long)b, strerror(-rc));
			break;
		}
		int v = payload_check(buf, b, &got);
		uint64_t want = atomic_load(&w->completed[i]);
		if (v < 0 || got != want)
			fail("%s: shared block %llu holds seq %#llx (valid %d), expected %#llx", when,
			     (unsigned long long)b, (unsigned long long)got, v, (unsigned long long)want);
	}
	free(buf);
	if (w->cfg.cold && !failed())
		wl_cold_verify(w, dev, when);
}

static void wl_report(struct wl *w)
{
	char line[512];
	int len = snprintf(line, sizeof(line), "ops %llu (owners:",
			   (unsigned long long)atomic_load(&w->ops));
	for (int t = 0; t < w->cfg.owners; t++)
		len += snprintf(line + len, sizeof(line) - (size_t)len, " %llu",
				(unsigned long long)atomic_load(&w->own[t].ops));
	if (w->cfg.shared_blocks)
		snprintf(line + len, sizeof(line) - (size_t)len, "; shared writes %llu, reads %llu)",
			 (unsigned long long)atomic_load(&w->shared_writes),
			 (unsigned long long)atomic_load(&w->shared_reads));
	else
		snprintf(line + len, sizeof(line) - (size_t)len, ")");
	note("%s", line);
	for (int t = 0; t < w->cfg.owners; t++)
		CHECK(atomic_load(&w->own[t].ops) > 0, "owner %d never completed an operation", t);
}

/* ------------------------------------------------------------------------ */
/* Mirror helpers                                                           */

struct pool {                  /* every mem disk of a scenario (we own them) */
	struct bdev *mem[16];
	int n;
};

static struct bdev *pool_new(struct pool *p, uint64_t nblocks, const char *name)
{
	if (p->n == (int)(sizeof(p->mem) / sizeof(p->mem[0])))
		return NULL;
	struct bdev *d = mem_disk_create(nblocks, name);
	if (d)
		p->mem[p->n++] = d;
	return d;
}

static void pool_free(struct pool *p)
{
	for (int i = 0; i < p->n; i++)
		bdev_close(p->mem[i]);
	p->n = 0;
}

struct geom {
	uint64_t disk_blocks, data_offset, data_blocks, bitmap_blocks;
};

/* mirror_format two bare disks (assume_clean: both zero) and read back the
 * geometry from disk 1's superblock. */
static bool format_pair(struct bdev *legs[2], struct geom *g)
{
	struct cat_error err = { 0 };
	struct mirror_format_opts fo = { .chunk_blocks = CHUNK, .assume_clean = true };
	int rc = mirror_format(legs, &fo, &err);
	if (rc != 0) {
		fail("mirror_format: %s", err.msg);
		return false;
	}
	struct msb sb;
	rc = msb_read(legs[0], &sb, NULL);
	if (rc != 0) {
		fail("msb_read after format: %s", strerror(-rc));
		return false;
	}
	*g = (struct geom){ sb.disk_blocks, sb.data_offset, sb.data_blocks, sb.bitmap_blocks };
	return true;
}

static const struct mirror_opts stress_opts = { .clean_delay_ms = 5 };

/* Open a mirror over fault wrappers of two mem disks (the wrappers do not
 * own the mem disks, so the images outlive the mirror). */
static struct mirror *open_over(struct bdev *mem[2], struct bdev *top[2])
{
	struct bdev *legs[2] = { fault_disk_create(mem[0]), fault_disk_create(mem[1]) };
	if (top) {
		top[0] = legs[0];
		top[1] = legs[1];
	}
	struct mirror *m = NULL;
	struct cat_error err = { 0 };
	int rc = mirror_open(legs, &stress_opts, &m, &err);
	if (rc != 0) {
		fail("mirror_open: %s", err.msg);
		return NULL;
	}
	return m;
}

static const char *state_name(enum leg_state s)
{
	switch (s) {
	case LEG_IN_SYNC: return "in sync";
	case LEG_FAILED: return "failed";
	case LEG_REBUILDING: return "rebuilding";
	case LEG_MISSING: return "missing";
	}
	return "?";
}

static void expect_states(struct mirror *m, enum leg_state s0, enum leg_state s1, const char *when)
{
	struct mirror_status st;
	mirror_get_status(m, &st);
	if (st.leg[0].state != s0 || st.leg[1].state != s1)
		fail("%s: disks are %s / %s, expected %s / %s", when, state_name(st.leg[0].state),
		     state_name(st.leg[1].state), state_name(s0), state_name(s1));
}

/* Both legs through mirror_compare_range (no repair) over the data area. */
static void legs_equal_online(struct mirror *m, const char *when)
{
	struct mirror_status st;
	mirror_get_status(m, &st);
	uint8_t mism[32];
	for (uint64_t b = 0; b < st.data_blocks; b += 256) {
		uint32_t n = (uint32_t)(st.data_blocks - b < 256 ? st.data_blocks - b : 256);
		int rc = mirror_compare_range(m, b, n, mism, false);
		if (rc != 0) {
			uint32_t first = 0;
			while (rc > 0 && first < n && !(mism[first / 8] & (1u << (first % 8))))
				first++;
			fail("%s: mirror_compare_range(%llu, %u) = %d%s (first differing block %llu)",
			     when, (unsigned long long)b, n, rc, rc < 0 ? " (error)" : " differing blocks",
			     (unsigned long long)(b + first));
			return;
		}
	}
}

/* After mirror_close: both images carry a clean, in-sync superblock with the
 * same event count, and identical bitmaps and data areas. */
static void images_equal(struct bdev *a, struct bdev *b, const struct geom *g, const char *when)
{
	struct msb sa, sb;
	int ra = msb_read(a, &sa, NULL), rb = msb_read(b, &sb, NULL);
	if (ra || rb) {
		fail("%s: superblock unreadable (%d / %d)", when, ra, rb);
		return;
	}
	CHECK(sa.clean && sb.clean, "%s: superblocks not clean (%d / %d)", when, sa.clean, sb.clean);
	CHECK(sa.events == sb.events, "%s: event counts differ (%llu / %llu)", when,
	      (unsigned long long)sa.events, (unsigned long long)sb.events);
	CHECK(sa.disk_index == 0 && sb.disk_index == 1, "%s: disk indexes %u / %u", when,
	      sa.disk_index, sb.disk_index);
	for (int i = 0; i < 2; i++)
		CHECK(sa.member_state[i] == MEMBER_IN_SYNC && sb.member_state[i] == MEMBER_IN_SYNC,
		      "%s: disk %d not recorded in sync (%u / %u)", when, i + 1, sa.member_state[i],
		      sb.member_state[i]);
	uint64_t diff = 0, first = 0;
	for (uint64_t blk = MSB_BITMAP_START; blk < g->disk_blocks; blk++)
		if (memcmp(mem_disk_block(a, blk), mem_disk_block(b, blk), BS) != 0 && !diff++)
			first = blk;
	CHECK(diff == 0, "%s: %llu member blocks differ between the legs (first: disk block %llu, %s)",
	      when, (unsigned long long)diff, (unsigned long long)first,
	      first < g->data_offset ? "bitmap" : "data");
}

/* Close, compare the images, reassemble (no resync expected), verify the
 * model through the new mirror, close again, compare again. */
static void close_and_check(struct mirror *m, struct wl *w, struct bdev *mem[2], const struct geom *g)
{
	int rc = mirror_close(m);
	CHECK(rc == 0, "mirror_close: %s", strerror(-rc));
	images_equal(mem[0], mem[1], g, "after close");
	if (failed())
		return;
	m = open_over(mem, NULL);
	if (!m)
		return;
	CHECK(mirror_stale_chunks(m) == 0 && mirror_rebuilding_leg(m) < 0,
	      "reopen after a clean close wants a resync (%llu stale chunks, rebuilding disk %d)",
	      (unsigned long long)mirror_stale_chunks(m), mirror_rebuilding_leg(m) + 1);
	wl_verify(w, mirror_bdev(m), "after reopen");
	rc = mirror_close(m);
	CHECK(rc == 0, "mirror_close after reopen: %s", strerror(-rc));
	images_equal(mem[0], mem[1], g, "after reopen + close");
}

/* The cleaner must clear every bit once the writes are over. */
static void expect_bitmap_drains(struct mirror *m, const char *when)
{
	struct mirror_status st;
	uint64_t t0 = now_ns(), limit = (uint64_t)(5e9 * (g_scale < 1 ? 1 : g_scale));
	do {
		mirror_get_status(m, &st);
		if (st.dirty_chunks == 0)
			return;
		sleep_ms(5);
	} while (now_ns() - t0 < limit);
	fail("%s: %llu bitmap chunks still dirty %.1f s after the last write (cleaner stuck?)",
	     when, (unsigned long long)st.dirty_chunks, (double)limit / 1e9);
}

static int do_resync(struct mirror *m, struct resync_result *res, const char *what)
{
	struct cat_error err = { 0 };
	int rc = recovery_resync(m, NULL, NULL, res, &err);
	if (rc != 0)
		fail("%s: recovery_resync: %s", what, err.msg);
	return rc;
}

static bool replace_leg(struct mirror *m, int leg, struct bdev *newtop, const char *what)
{
	struct cat_error err = { 0 };
	int rc = newtop ? mirror_replace_leg(m, leg, newtop, &err) : -ENOMEM;
	if (rc != 0)
		fail("%s: mirror_replace_leg(disk %d): %s", what, leg + 1, newtop ? err.msg : "no memory");
	return rc == 0;
}

/* ------------------------------------------------------------------------ */
/* Scenarios                                                                */

/* Shared region layout over a small disk: 6 owners x 256 blocks, then 128
 * shared blocks (crossing a 64-block stripe group and several chunks). */
static struct wl_cfg small_cfg(int owners, bool shared)
{
	return (struct wl_cfg){ .owners = owners, .own_blocks = 256, .own_stride = 256,
				.shared_base = shared ? 6 * 256 + 40 : 0,
				.shared_blocks = shared ? 128 : 0 };
}

/* a: plain concurrency with the cleaner; a large sparse disk (~265 MiB of
 * address space, only touched pages cost memory) so the shared blocks
 * straddle block 65536, where the stripe index wraps (group 1023 -> 0),
 * and owner 0's stripes alias the shared blocks' upper half. */
static void scenario_a(void)
{
	struct pool p = { 0 };
	struct geom g;
	struct wl w;
	struct bdev *mem[2] = { pool_new(&p, 256 + 68096, "a-disk1"), pool_new(&p, 256 + 68096, "a-disk2") };
	if (!mem[0] || !mem[1] || !format_pair(mem, &g))
		goto out_pool;
	struct wl_cfg cfg = { .owners = 6, .own_blocks = 256, .own_stride = 11008,
			      .shared_base = 65536 - 40, .shared_blocks = 96, .read_leg = true };
	if (!wl_init(&w, &cfg, 0xa))
		goto out_wl;
	struct mirror *m = open_over(mem, NULL);
	if (!m)
		goto out_wl;
	wl_start(&w, m);
	for (int i = 0; i < 6 && !failed(); i++) {
		pace(&w, 400, 3000);
		/* a flush from a third party mid-run, and status readers */
		int rc = bdev_flush(mirror_bdev(m));
		CHECK(rc == 0, "flush from the control thread: %s", strerror(-rc));
		struct mirror_status st;
		mirror_get_status(m, &st);
	}
	wl_stop(&w);
	wl_report(&w);
	if (!failed()) {
		wl_verify(&w, mirror_bdev(m), "after the run");
		expect_states(m, LEG_IN_SYNC, LEG_IN_SYNC, "after the run");
		legs_equal_online(m, "after the run");
		expect_bitmap_drains(m, "after the run");
	}
	close_and_check(m, &w, mem, &g);
out_wl:
	wl_free(&w);
out_pool:
	pool_free(&p);
}

/* b: fail, replace, resync under load; fail the other; replace, resync. */
static void scenario_b(void)
{
	struct pool p = { 0 };
	struct geom g;
	struct wl w;
	struct bdev *mem[2] = { pool_new(&p, SMALL_DISK, "b-disk1"), pool_new(&p, SMALL_DISK, "b-disk2") };
	if (!mem[0] || !mem[1] || !format_pair(mem, &g))
		goto out_pool;
	struct wl_cfg cfg = small_cfg(6, true);
	cfg.cold = true;
	if (!wl_init(&w, &cfg, 0xb))
		goto out_wl;
	struct mirror *m = open_over(mem, NULL);
	if (!m)
		goto out_wl;
	uint64_t nchunks = (g.data_blocks + CHUNK - 1) / CHUNK;
	wl_start(&w, m);
	for (int round = 0; round < 2 && !failed(); round++) {
		int leg = round; /* disk 1 first, then the other one */
		pace(&w, 300, 2000);
		int rc = mirror_fail_leg(m, leg, "stress: failed by the control thread");
		CHECK(rc == 0, "mirror_fail_leg(disk %d): %s", leg + 1, strerror(-rc));
		expect_states(m, leg ? LEG_IN_SYNC : LEG_FAILED, leg ? LEG_FAILED : LEG_IN_SYNC,
			      "after mirror_fail_leg");
		pace(&w, 200, 1500); /* degraded service */
		char name[32];
		snprintf(name, sizeof(name), "b-new%d", round + 1);
		struct bdev *nm = pool_new(&p, SMALL_DISK, name);
		if (!nm || !replace_leg(m, leg, nm ? fault_disk_create(nm) : NULL, "b"))
			break;
		mem[leg] = nm;
		CHECK(mirror_rebuilding_leg(m) == leg && mirror_stale_chunks(m) == nchunks,
		      "after replace: rebuilding disk %d with %llu stale chunks, expected disk %d with %llu",
		      mirror_rebuilding_leg(m) + 1, (unsigned long long)mirror_stale_chunks(m), leg + 1,
		      (unsigned long long)nchunks);
		pace(&w, 100, 500); /* writes to a leg whose chunks are all stale */
		struct resync_result res;
		if (do_resync(m, &res, "b") != 0)
			break;
		CHECK(!res.degraded && res.chunks >= nchunks,
		      "resync under load: degraded %d, %llu chunks visited of %llu", res.degraded,
		      (unsigned long long)res.chunks, (unsigned long long)nchunks);
		expect_states(m, LEG_IN_SYNC, LEG_IN_SYNC, "after resync");
		CHECK(mirror_stale_chunks(m) == 0, "after resync: %llu stale chunks",
		      (unsigned long long)mirror_stale_chunks(m));
		note("round %d: resync of disk %d under load: %llu chunks, %llu blocks copied, %.2f s",
		     round + 1, leg + 1, (unsigned long long)res.chunks,
		     (unsigned long long)res.blocks_copied, res.seconds);
		legs_equal_online(m, "after resync, under load");
	}
	pace(&w, 200, 1500);
	wl_stop(&w);
	wl_report(&w);
	if (!failed()) {
		wl_verify(&w, mirror_bdev(m), "after the run");
		legs_equal_online(m, "after the run");
		expect_bitmap_drains(m, "after the run");
	}
	close_and_check(m, &w, mem, &g);
out_wl:
	wl_free(&w);
out_pool:
	pool_free(&p);
}

/* c: injected faults while the workload runs. */
static uint64_t pick_unused(struct prng *r, uint8_t *used, uint64_t n, uint64_t step)
{
	for (int tries = 0; tries < 64; tries++) {
		uint64_t i = prng_below(r, n / step) * step;
		if (!used[i]) {
			used[i] = 1;
			return i;
		}
	}
	return UINT64_MAX;
}

static void scenario_c(void)
{
	struct pool p = { 0 };
	struct geom g;
	struct wl w;
	struct bdev *mem[2] = { pool_new(&p, SMALL_DISK, "c-disk1"), pool_new(&p, SMALL_DISK, "c-disk2") };
	if (!mem[0] || !mem[1] || !format_pair(mem, &g))
		goto out_pool;
	struct wl_cfg cfg = small_cfg(6, true);
	cfg.cold = true;
	if (!wl_init(&w, &cfg, 0xc))
		goto out_wl;
	struct bdev *top[2];
	struct mirror *m = open_over(mem, top);
	if (!m)
		goto out_wl;
	struct prng r;
	prng_seed(&r, 0xc0ffee + g_seed);
	uint64_t owned = (uint64_t)cfg.owners * cfg.own_blocks;
	wl_start(&w, m);

	/* Phase 1: leg `rd` gets one-shot read faults on owners' blocks (read
	 * repair from the other leg), leg `wr` one-shot write faults on shared
	 * blocks (the write is retried once and succeeds). Write faults sit
	 * on distinct multiples of 4 so no write of <= 4 blocks meets two. */
	for (int phase = 0; phase < 2 && !failed(); phase++) {
		int rd = phase, wr = 1 - phase;
		struct mirror_status before, after;
		mirror_get_status(m, &before);
		uint64_t f_rd0 = fault_disk_failures(top[rd]), f_wr0 = fault_disk_failures(top[wr]);
		uint8_t used[128] = { 0 };
		int nread = 0, nwrite = 0;
		uint64_t t0 = now_ns();
		while (!failed() && now_ns() - t0 < (uint64_t)(300e6 * g_scale)) {
			uint64_t b = prng_below(&r, owned);
			nread += fault_disk_fail_read(top[rd], g.data_offset + b, -EIO, false) == 0;
			uint64_t s = pick_unused(&r, used, cfg.shared_blocks, 4);
			if (s != UINT64_MAX)
				nwrite += fault_disk_fail_write(top[wr], g.data_offset + cfg.shared_base + s,
								-EIO, false) == 0;
			sleep_ms(2);
		}
		pace(&w, 100, 1000); /* let pending faults be met */
		fault_disk_heal(top[rd]);
		fault_disk_heal(top[wr]);
		mirror_get_status(m, &after);
		uint64_t fired_rd = fault_disk_failures(top[rd]) - f_rd0;
		uint64_t fired_wr = fault_disk_failures(top[wr]) - f_wr0;
		uint64_t rerr = after.leg[rd].read_errors - before.leg[rd].read_errors;
		uint64_t rep = after.leg[rd].repaired_blocks - before.leg[rd].repaired_blocks;
		note("phase %d: disk %d: %d read faults set, %llu hit, %llu blocks repaired; "
		     "disk %d: %d write faults set, %llu hit", phase + 1, rd + 1, nread,
		     (unsigned long long)fired_rd, (unsigned long long)rep, wr + 1, nwrite,
		     (unsigned long long)fired_wr);
		expect_states(m, LEG_IN_SYNC, LEG_IN_SYNC, "after one-shot faults");
		CHECK(fired_rd > 0 && fired_wr > 0, "phase %d: no injected fault was ever hit", phase + 1);
		CHECK(rerr == fired_rd, "phase %d: disk %d: %llu read faults hit but %llu read errors counted",
		      phase + 1, rd + 1, (unsigned long long)fired_rd, (unsigned long long)rerr);
		CHECK(rep >= rerr, "phase %d: disk %d: %llu read errors but only %llu blocks repaired",
		      phase + 1, rd + 1, (unsigned long long)rerr, (unsigned long long)rep);
		CHECK(after.leg[0].write_errors == 0 && after.leg[1].write_errors == 0,
		      "phase %d: write errors counted (%llu / %llu) although every fault was one-shot",
		      phase + 1, (unsigned long long)after.leg[0].write_errors,
		      (unsigned long long)after.leg[1].write_errors);
		legs_equal_online(m, "after read repair");
	}

	/* Phase 2: disk 1 vanishes under load; it is replaced and resynced. */
	if (!failed()) {
		pace(&w, 100, 500);
		fault_disk_vanish(top[0]);
		pace(&w, 200, 1500);
		expect_states(m, LEG_FAILED, LEG_IN_SYNC, "after disk 1 vanished");
		struct bdev *nm = pool_new(&p, SMALL_DISK, "c-new1");
		top[0] = nm ? fault_disk_create(nm) : NULL;
		if (replace_leg(m, 0, top[0], "c: replace vanished disk")) {
			mem[0] = nm;
			/* Phase 3: the new disk fails halfway through its rebuild:
			 * the resync ends degraded and returns 0. */
			fault_disk_fail_after(top[0], 150, -EIO);
			struct resync_result res;
			if (do_resync(m, &res, "c: rebuild onto a failing disk") == 0) {
				CHECK(res.degraded, "resync onto a disk that fails: not reported degraded");
				expect_states(m, LEG_FAILED, LEG_IN_SYNC, "after the rebuild target failed");
				note("rebuild target failed after %llu chunks: degraded, as it should",
				     (unsigned long long)res.chunks);
			}
		}
		pace(&w, 150, 1000);
		nm = pool_new(&p, SMALL_DISK, "c-new2");
		if (!failed() && replace_leg(m, 0, nm ? fault_disk_create(nm) : NULL, "c: second replace")) {
			mem[0] = nm;
			struct resync_result res;
			if (do_resync(m, &res, "c: final rebuild") == 0)
				CHECK(!res.degraded, "final rebuild reported degraded");
			expect_states(m, LEG_IN_SYNC, LEG_IN_SYNC, "after the final rebuild");
		}
	}
	pace(&w, 150, 1000);
	wl_stop(&w);
	wl_report(&w);
	if (!failed()) {
		wl_verify(&w, mirror_bdev(m), "after the run");
		legs_equal_online(m, "after the run");
		expect_bitmap_drains(m, "after the run");
	}
	close_and_check(m, &w, mem, &g);
out_wl:
	wl_free(&w);
out_pool:
	pool_free(&p);
}

/* d: scrub (and repair) beside the writers. */
struct scrubber {
	struct mirror *m;
	atomic_bool stop;
	atomic_int passes;      /* read by the control thread */
	uint64_t blocks;        /* scrubber thread only */
};

static void on_mismatch(void *ctx, uint64_t blkno, uint64_t n)
{
	(void)ctx;
	fail("scrub under load: blocks %llu+%llu differ between the legs", (unsigned long long)blkno,
	     (unsigned long long)n);
}

static void on_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
	(void)phase;
	(void)total;
	struct scrubber *s = ctx;
	s->blocks = done;
}

static void *scrubber_main(void *arg)
{
	struct scrubber *s = arg;
	while (!atomic_load(&s->stop) && !failed()) {
		bool repair = atomic_load(&s->passes) % 2 == 1;
		struct scrub_result res;
		struct cat_error err = { 0 };
		int rc = recovery_scrub(s->m, repair, on_mismatch, on_progress, s, &res, &err);
		if (rc != 0) {
			fail("recovery_scrub(repair=%d) under load: %s", repair, err.msg);
			break;
		}
		CHECK(res.mismatched == 0 && res.ranges == 0 && !res.repaired,
		      "recovery_scrub(repair=%d) under load: %llu mismatched blocks in %llu ranges",
		      repair, (unsigned long long)res.mismatched, (unsigned long long)res.ranges);
		atomic_fetch_add(&s->passes, 1);
	}
	return NULL;
}

static void scenario_d(void)
{
	struct pool p = { 0 };
	struct geom g;
	struct wl w;
	struct bdev *mem[2] = { pool_new(&p, SMALL_DISK, "d-disk1"), pool_new(&p, SMALL_DISK, "d-disk2") };
	if (!mem[0] || !mem[1] || !format_pair(mem, &g))
		goto out_pool;
	struct wl_cfg cfg = small_cfg(6, true);
	cfg.read_leg = true;
	cfg.cold = true;
	if (!wl_init(&w, &cfg, 0xd))
		goto out_wl;
	struct mirror *m = open_over(mem, NULL);
	if (!m)
		goto out_wl;
	struct scrubber s = { .m = m };
	pthread_t th;
	wl_start(&w, m);
	if (pthread_create(&th, NULL, scrubber_main, &s))
		abort();
	pace(&w, 2000, 12000);
	while (!failed() && atomic_load(&s.passes) < 4)
		pace(&w, 50, 0); /* at least two scrubs and two repairs under load */
	atomic_store(&s.stop, true);
	pthread_join(th, NULL);
	wl_stop(&w);
	wl_report(&w);
	note("%d scrub passes under load (alternating repair)", atomic_load(&s.passes));
	if (!failed()) {
		int rc = bdev_flush(mirror_bdev(m));
		CHECK(rc == 0, "final flush: %s", strerror(-rc));
		struct scrub_result res;
		struct cat_error err = { 0 };
		rc = recovery_scrub(m, false, on_mismatch, NULL, NULL, &res, &err);
		CHECK(rc == 0 && res.mismatched == 0 && res.blocks == g.data_blocks,
		      "final scrub: rc %d (%s), %llu mismatched, %llu of %llu blocks compared", rc,
		      err.msg, (unsigned long long)res.mismatched, (unsigned long long)res.blocks,
		      (unsigned long long)g.data_blocks);
		wl_verify(&w, mirror_bdev(m), "after the run");
		legs_equal_online(m, "after the run");
		expect_bitmap_drains(m, "after the run");
	}
	close_and_check(m, &w, mem, &g);
out_wl:
	wl_free(&w);
out_pool:
	pool_free(&p);
}

/* e: two io_uring disks. */
static struct mirror *open_uring_pair(char path[2][80], bool format)
{
	struct bdev *legs[2] = { NULL, NULL };
	struct cat_error err = { 0 };
	for (int i = 0; i < 2; i++) {
		int rc = uring_disk_open(path[i], 0, &legs[i], &err);
		if (rc != 0) {
			fail("uring_disk_open: %s", err.msg);
			bdev_close(legs[0]);
			return NULL;
		}
	}
	if (format) {
		struct geom g;
		if (!format_pair(legs, &g)) {
			bdev_close(legs[0]);
			bdev_close(legs[1]);
			return NULL;
		}
	}
	struct mirror *m = NULL;
	int rc = mirror_open(legs, &stress_opts, &m, &err);
	if (rc != 0) {
		fail("mirror_open over io_uring disks: %s", err.msg);
		return NULL;
	}
	return m;
}

static void scenario_e(void)
{
	char dir[] = "/tmp/catamaran-stress-XXXXXX";
	char path[2][80];
	struct wl w;
	bool have_wl = false;
	if (!mkdtemp(dir)) {
		fail("mkdtemp: %s", strerror(errno));
		return;
	}
	for (int i = 0; i < 2; i++) {
		snprintf(path[i], sizeof(path[i]), "%s/disk%d.img", dir, i + 1);
		struct cat_error err = { 0 };
		int created = 0;
		if (uring_disk_create(path[i], (uint64_t)SMALL_DISK * BS, &created, &err) != 0) {
			fail("uring_disk_create: %s", err.msg);
			goto out;
		}
	}
	struct wl_cfg cfg = small_cfg(4, false);
	if (!(have_wl = wl_init(&w, &cfg, 0xe)))
		goto out;
	struct mirror *m = open_uring_pair(path, true);
	if (!m)
		goto out;
	wl_start(&w, m);
	for (int i = 0; i < 4 && !failed(); i++)
		pace(&w, 400, 1000);
	wl_stop(&w);
	wl_report(&w);
	if (!failed()) {
		wl_verify(&w, mirror_bdev(m), "after the run");
		legs_equal_online(m, "after the run");
		expect_bitmap_drains(m, "after the run");
	}
	int rc = mirror_close(m);
	CHECK(rc == 0, "mirror_close: %s", strerror(-rc));
	if (failed())
		goto out;
	/* Reassemble from the files: a clean close needs no resync. */
	m = open_uring_pair(path, false);
	if (!m)
		goto out;
	CHECK(mirror_stale_chunks(m) == 0 && mirror_rebuilding_leg(m) < 0,
	      "reopen after a clean close wants a resync (%llu stale chunks, rebuilding disk %d)",
	      (unsigned long long)mirror_stale_chunks(m), mirror_rebuilding_leg(m) + 1);
	expect_states(m, LEG_IN_SYNC, LEG_IN_SYNC, "after reopen");
	wl_verify(&w, mirror_bdev(m), "after reopen");
	legs_equal_online(m, "after reopen");
	/* A second short run on the reopened pair, with fresh threads (and so
	 * fresh rings), then a plain close. */
	wl_start(&w, m);
	pace(&w, 300, 500);
	wl_stop(&w);
	if (!failed())
		wl_verify(&w, mirror_bdev(m), "after the second run");
	rc = mirror_close(m);
	CHECK(rc == 0, "mirror_close after reopen: %s", strerror(-rc));
out:
	if (have_wl)
		wl_free(&w);
	for (int i = 0; i < 2; i++)
		unlink(path[i]);
	rmdir(dir);
}

/* f: power cuts under load. */
static void verify_after_crash(struct wl *w, struct bdev *dev, int round)
{
	uint8_t *buf = block_alloc(64 * BS);
	uint64_t unflushed_kept = 0, lost = 0;
	for (int t = 0; buf && t < w->cfg.owners && !failed(); t++) {
		struct owner *o = &w->own[t];
		for (uint64_t b = o->base; b < o->base + o->n && !failed(); b += 64) {
			int rc = bdev_read(dev, b, buf, 64);
			if (rc != 0) {
				fail("round %d: read after recovery: %s", round, strerror(-rc));
				break;
			}
			for (uint64_t i = 0; i < 64; i++) {
				uint64_t j = b + i - o->base, got;
				int v = payload_check(buf + i * BS, b + i, &got);
				bool ok = false;
				for (unsigned k = 0; v >= 0 && k < o->ncand[j] && !ok; k++)
					ok = o->cand[j * CAND_MAX + k] == got;
				if (!ok) {
					fail("round %d: owner %d block %llu holds %s %#llx after a power cut; "
					     "neither its last flushed value %#llx nor a later write "
					     "(%u candidates)", round, t, (unsigned long long)(b + i),
					     v < 0 ? "garbage" : "seq", (unsigned long long)got,
					     (unsigned long long)o->cand[j * CAND_MAX], o->ncand[j]);
					break;
				}
				if (got != o->cand[j * CAND_MAX])
					unflushed_kept++;
				if (got != o->exp[j])
					lost++;
				o->exp[j] = got;
			}
		}
		owner_flushed(o); /* what is there now is the new durable state */
	}
	free(buf);
	note("round %d: after the cut %llu blocks kept an unflushed write, %llu lost their "
	     "last unflushed one", round, (unsigned long long)unflushed_kept,
	     (unsigned long long)lost);
}

static void scenario_f(void)
{
	struct pool p = { 0 };
	struct geom g;
	struct wl w;
	struct bdev *mem[2] = { pool_new(&p, SMALL_DISK, "f-disk1"), pool_new(&p, SMALL_DISK, "f-disk2") };
	if (!mem[0] || !mem[1] || !format_pair(mem, &g))
		goto out_pool;
	struct wl_cfg cfg = small_cfg(4, false);
	cfg.crash_mode = true;
	if (!wl_init(&w, &cfg, 0xf))
		goto out_wl;
	struct prng r;
	prng_seed(&r, 0xf00d + g_seed);
	int rounds = 4;
	struct mirror *m = NULL;
	for (int round = 1; round <= rounds && !failed(); round++) {
		struct crash_clock clock;
		crash_clock_init(&clock);
		struct bdev *legs[2] = {
			crash_disk_create(mem[0], &clock, prng_next(&r), 50),
			crash_disk_create(mem[1], &clock, prng_next(&r), 50),
		};
		struct cat_error err = { 0 };
		int rc = mirror_open(legs, &stress_opts, &m, &err);
		if (rc != 0) {
			fail("round %d: mirror_open over crash disks: %s", round, err.msg);
			break;
		}
		wl_start(&w, m);
		pace(&w, 150 + (double)prng_below(&r, 250), 800);
		crash_clock_arm(&clock, 1 + (long long)prng_below(&r, 400));
		for (int t = 0; t < cfg.owners; t++) /* each stops at its first error */
			pthread_join(w.own[t].th, NULL);
		w.running = false;
		mirror_abandon(m); /* the process dies with the power */
		m = NULL;
		/* Power back: assemble over the platters, resync, check. */
		m = open_over(mem, NULL);
		if (!m)
			break;
		uint64_t stale = mirror_stale_chunks(m);
		struct resync_result res;
		if (do_resync(m, &res, "after a power cut") != 0)
			break;
		expect_states(m, LEG_IN_SYNC, LEG_IN_SYNC, "after recovery");
		note("round %d: cut after %llu ops; %llu stale chunks resynced, %llu blocks copied",
		     round, (unsigned long long)atomic_load(&w.ops), (unsigned long long)stale,
		     (unsigned long long)res.blocks_copied);
		struct scrub_result sr;
		rc = recovery_scrub(m, false, NULL, NULL, NULL, &sr, &err);
		CHECK(rc == 0 && sr.mismatched == 0,
		      "round %d: after resync the legs differ in %llu blocks (%llu ranges): a chunk "
		      "written before the cut was not in the write-intent bitmap (rc %d)", round,
		      (unsigned long long)sr.mismatched, (unsigned long long)sr.ranges, rc);
		verify_after_crash(&w, mirror_bdev(m), round);
		rc = mirror_close(m);
		m = NULL;
		CHECK(rc == 0, "round %d: mirror_close: %s", round, strerror(-rc));
	}
	if (!failed()) {
		images_equal(mem[0], mem[1], &g, "after the last round");
		m = open_over(mem, NULL);
		if (m) {
			CHECK(mirror_stale_chunks(m) == 0, "reopen after a clean close wants a resync");
			wl_verify(&w, mirror_bdev(m), "after reopen");
			int rc = mirror_close(m);
			CHECK(rc == 0, "mirror_close: %s", strerror(-rc));
		}
	}
out_wl:
	wl_free(&w);
out_pool:
	pool_free(&p);
}

/* g: the only complete disk fails while the other is being rebuilt. */
struct resync_job {
	struct mirror *m;
	int rc;
	struct resync_result res;
	struct cat_error err;
	atomic_bool done;
};

static void *resync_main(void *arg)
{
	struct resync_job *j = arg;
	j->rc = recovery_resync(j->m, NULL, NULL, &j->res, &j->err);
	atomic_store(&j->done, true);
	return NULL;
}

static void scenario_g(void)
{
	struct pool p = { 0 };
	struct geom g;
	struct wl w;
	struct bdev *mem[2] = { pool_new(&p, SMALL_DISK, "g-disk1"), pool_new(&p, SMALL_DISK, "g-disk2") };
	if (!mem[0] || !mem[1] || !format_pair(mem, &g))
		goto out_pool;
	struct wl_cfg cfg = small_cfg(6, false);
	cfg.uncertain = true;
	if (!wl_init(&w, &cfg, 0x9))
		goto out_wl;
	struct bdev *top[2];
	struct mirror *m = open_over(mem, top);
	if (!m)
		goto out_wl;
	uint64_t nchunks = (g.data_blocks + CHUNK - 1) / CHUNK;
	wl_start(&w, m);
	pace(&w, 200, 1500);
	int rc = mirror_fail_leg(m, 1, "stress: to be replaced");
	CHECK(rc == 0, "mirror_fail_leg(disk 2): %s", strerror(-rc));
	struct bdev *nm = pool_new(&p, SMALL_DISK, "g-new2");
	if (failed() || !replace_leg(m, 1, nm ? fault_disk_create(nm) : NULL, "g")) {
		wl_stop(&w);
		mirror_close(m);
		goto out_wl;
	}
	mem[1] = nm;
	struct resync_job job = { .m = m };
	pthread_t th;
	if (pthread_create(&th, NULL, resync_main, &job))
		abort();
	/* Vanish the source once ~40 chunks are copied: the owners' blocks
	 * (chunks 0-95) are then part rebuilt, part stale. */
	while (!atomic_load(&job.done) && mirror_stale_chunks(m) > nchunks - 40)
		sched_yield();
	atomic_store(&w.src_failed, true);
	fault_disk_vanish(top[0]);
	pthread_join(th, NULL);
	uint64_t stale = mirror_stale_chunks(m);
	if (job.rc == 0) {
		/* The copy won the race: nothing to check but a degraded array. */
		note("the rebuild finished before the source vanished; inconclusive run");
		pace(&w, 100, 500);
		wl_stop(&w);
		mirror_abandon(m);
		goto out_wl;
	}
	CHECK(job.rc == -EIO, "resync whose source vanished: %d (%s), expected EIO", job.rc, job.err.msg);
	pace(&w, 300, 2000); /* service on the half-rebuilt disk */
	wl_stop(&w);
	wl_report(&w);
	struct mirror_status st;
	mirror_get_status(m, &st);
	note("source vanished after %llu of %llu chunks; %llu stale; %llu EIO answers under load",
	     (unsigned long long)(nchunks - stale), (unsigned long long)nchunks,
	     (unsigned long long)stale, (unsigned long long)atomic_load(&w.eio));
	CHECK(st.leg[0].state == LEG_FAILED && st.leg[1].state == LEG_REBUILDING &&
	      st.authoritative == -1 && stale > 0 && stale < nchunks,
	      "after the source vanished: disks %s / %s, authority %d, %llu stale chunks",
	      state_name(st.leg[0].state), state_name(st.leg[1].state), st.authoritative + 1,
	      (unsigned long long)stale);
	/* Every block: EIO in a stale chunk, else a value it may hold. */
	uint8_t *buf = block_alloc(BS);
	uint64_t eio = 0, served = 0;
	for (int t = 0; buf && t < cfg.owners && !failed(); t++) {
		struct owner *o = &w.own[t];
		for (uint64_t b = o->base; b < o->base + o->n && !failed(); b++) {
			uint64_t c = b / CHUNK;
			bool is_stale = mirror_next_stale_chunk(m, c) == (int64_t)c;
			rc = bdev_read(mirror_bdev(m), b, buf, 1);
			if (is_stale) {
				CHECK(rc == -EIO, "block %llu in a chunk not rebuilt: read gave %d, expected EIO",
				      (unsigned long long)b, rc);
				eio++;
			} else if (rc != 0) {
				fail("block %llu in a rebuilt chunk: read: %s", (unsigned long long)b, strerror(-rc));
			} else {
				owner_check_cand(o, buf, b, 1, "after the source vanished");
				served++;
			}
		}
	}
	free(buf);
	note("owners' blocks: %llu served from the rebuilt chunks, %llu answer EIO",
	     (unsigned long long)served, (unsigned long long)eio);
	(void)mirror_close(m); /* an error here is fine: no complete disk is left */
	/* The disk that vanished comes back: it missed writes, the other is
	 * half rebuilt. Assembly must refuse rather than guess. */
	struct bdev *legs[2] = { fault_disk_create(mem[0]), fault_disk_create(mem[1]) };
	struct cat_error err = { 0 };
	m = NULL;
	rc = mirror_open(legs, &stress_opts, &m, &err);
	CHECK(rc == -EUCLEAN, "reassembly after the source failed mid-rebuild: %d (%s), expected EUCLEAN",
	      rc, rc ? err.msg : "assembled");
	if (rc == 0)
		mirror_close(m);
out_wl:
	wl_free(&w);
out_pool:
	pool_free(&p);
}

/* h: replace the disk that a running resync is copying to. */
static void scenario_h(void)
{
	struct pool p = { 0 };
	struct geom g;
	struct wl w;
	struct bdev *mem[2] = { pool_new(&p, SMALL_DISK, "h-disk1"), pool_new(&p, SMALL_DISK, "h-disk2") };
	if (!mem[0] || !mem[1] || !format_pair(mem, &g))
		goto out_pool;
	struct wl_cfg cfg = small_cfg(6, true);
	cfg.cold = true;
	if (!wl_init(&w, &cfg, 0x8))
		goto out_wl;
	struct mirror *m = open_over(mem, NULL);
	if (!m)
		goto out_wl;
	uint64_t nchunks = (g.data_blocks + CHUNK - 1) / CHUNK;
	struct prng r;
	prng_seed(&r, 0x4e01 + g_seed);
	wl_start(&w, m);
	pace(&w, 200, 1500);
	int rc = mirror_fail_leg(m, 1, "stress: to be replaced");
	CHECK(rc == 0, "mirror_fail_leg(disk 2): %s", strerror(-rc));
	struct bdev *nm = pool_new(&p, SMALL_DISK, "h-new");
	if (!failed() && replace_leg(m, 1, nm ? fault_disk_create(nm) : NULL, "h: first replace"))
		mem[1] = nm;
	int overlapped = 0;
	for (int k = 0; k < 4 && !failed(); k++) {
		struct resync_job job = { .m = m };
		pthread_t th;
		if (pthread_create(&th, NULL, resync_main, &job))
			abort();
		/* Replace once the copy is in the cold area (chunk >= 128 of 240:
		 * hot blocks get rewritten to both legs at once and hide a hole). */
		uint64_t at = 8 + prng_below(&r, nchunks - 128 - 16);
		while (!atomic_load(&job.done) && mirror_stale_chunks(m) > at)
			sched_yield();
		bool during = !atomic_load(&job.done);
		nm = pool_new(&p, SMALL_DISK, "h-newer");
		bool ok = replace_leg(m, 1, nm ? fault_disk_create(nm) : NULL, "h: replace during resync");
		pthread_join(th, NULL);
		if (!ok)
			break;
		mem[1] = nm;
		overlapped += during;
		CHECK(job.rc == 0, "resync interrupted by a replace: %d (%s)", job.rc, job.err.msg);
		struct resync_result res;
		if (mirror_rebuilding_leg(m) >= 0 && do_resync(m, &res, "h: resync after the replace") != 0)
			break;
		expect_states(m, LEG_IN_SYNC, LEG_IN_SYNC, "after the replacement's resync");
		legs_equal_online(m, during ? "disk replaced while its resync was copying, then resynced"
					    : "disk replaced after its resync, then resynced");
		pace(&w, 50, 300);
		if (k + 1 < 4 && !failed()) { /* the next round starts from a fresh replacement */
			nm = pool_new(&p, SMALL_DISK, "h-next");
			if (!replace_leg(m, 1, nm ? fault_disk_create(nm) : NULL, "h: next replace"))
				break;
			mem[1] = nm;
		}
	}
	note("%d of 4 replacements landed while the resync was copying", overlapped);
	pace(&w, 100, 500);
	wl_stop(&w);
	wl_report(&w);
	if (!failed()) {
		wl_verify(&w, mirror_bdev(m), "after the run");
		legs_equal_online(m, "after the run");
	}
	close_and_check(m, &w, mem, &g);
out_wl:
	wl_free(&w);
out_pool:
	pool_free(&p);
}

/* ------------------------------------------------------------------------ */

static const struct {
	char key;
	const char *name;
	void (*run)(void);
} scenarios[] = {
	{ 'a', "a: concurrent I/O + cleaner", scenario_a },
	{ 'b', "b: fail/replace/resync under load", scenario_b },
	{ 'c', "c: injected faults, vanished disk", scenario_c },
	{ 'd', "d: scrub + repair beside writers", scenario_d },
	{ 'e', "e: io_uring disks, reopen", scenario_e },
	{ 'f', "f: power cuts under load", scenario_f },
	{ 'g', "g: source fails mid-rebuild", scenario_g },
	{ 'h', "h: replace the disk being rebuilt", scenario_h },
};

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
#if defined(__SANITIZE_THREAD__)
	g_tsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
	g_tsan = true;
#endif
#endif
	const char *s = getenv("CATAMARAN_STRESS_SCALE");
	if (s && *s) {
		char *end;
		double v = strtod(s, &end);
		if (*end || !(v > 0)) {
			fprintf(stderr, "mirror_stress: CATAMARAN_STRESS_SCALE=%s: not a positive number\n", s);
			return 2;
		}
		g_scale = v < 0.05 ? 0.05 : v > 100 ? 100 : v;
	}
	const char *sd = getenv("CATAMARAN_STRESS_SEED");
	if (sd && *sd)
		g_seed = strtoull(sd, NULL, 0);
	const char *lg = getenv("CATAMARAN_STRESS_LOG");
	atomic_store(&g_show_log, lg && *lg && strcmp(lg, "0") != 0);
	cat_log_set_sink(log_sink, atomic_load(&g_show_log) ? CAT_LOG_DEBUG : CAT_LOG_WARN);

	pthread_t wd;
	if (pthread_create(&wd, NULL, watchdog_main, NULL))
		return 2;
	printf("mirror_stress: scale %.2f, seed %llu%s\n", g_scale, (unsigned long long)g_seed,
	       g_tsan ? " (ThreadSanitizer build)" : "");
	int passed = 0, nfailed = 0;
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		bool want = argc < 2;
		for (int a = 1; a < argc; a++)
			want |= strchr(argv[a], scenarios[i].key) != NULL;
		if (!want)
			continue;
		atomic_store(&g_failures, 0);
		uint64_t t0 = now_ns();
		watchdog_arm(scenarios[i].name, 300.0 * (g_scale < 1 ? 1 : g_scale) * (g_tsan ? 2 : 1));
		scenarios[i].run();
		watchdog_arm(scenarios[i].name, 0);
		bool ok = !failed();
		printf("%s %s (%.1f s)\n", ok ? "ok  " : "FAILED", g_scenario, (double)(now_ns() - t0) / 1e9);
		if (ok)
			passed++;
		else
			nfailed++;
	}
	pthread_mutex_lock(&wd_lock);
	wd_quit = true;
	pthread_cond_signal(&wd_cond);
	pthread_mutex_unlock(&wd_lock);
	pthread_join(wd, NULL);
	printf("mirror_stress: %d passed, %d failed\n", passed, nfailed);
	return nfailed ? 1 : 0;
}
