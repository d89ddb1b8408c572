/*
 * The two-disk mirror. Contract and lock order are in mirror.h; on-disk
 * layout in superblock.h / bitmap.h and blockdev/README.md.
 *
 * Shape of the code: assembly (reading both superblocks and deciding who
 * is authoritative and what is stale), the I/O paths (write both legs in
 * parallel under the stripe locks and the bitmap; read with failover and
 * repair; flush), leg failure (state change + superblock before the failing
 * request returns), resync primitives for recovery/, and the cleaner thread
 * that clears idle bitmap bits.
 */
#include "blockdev/mirror/mirror.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/mirror/bitmap.h"
#include "core/base/log.h"
#include "core/base/util.h"

#define NSTRIPES 1024u          /* lock stripes */
#define STRIPE_SHIFT 6          /* 64 blocks (256 KiB) per stripe group:
				 * group g = b >> 6 uses stripe g % NSTRIPES, so
				 * a 1 MiB request takes 4 locks, not 256 */
#define SEGMENT_BLOCKS 256u     /* resync/compare unit: 1 MiB */
#define DEFAULT_CLEAN_DELAY_MS 1000u

/* Two segment buffers for a resync or compare step. Kept in a small pool
 * on the mirror: a rebuild takes thousands of steps, and a fresh 1 MiB
 * allocation each time (mmap, page faults, munmap) costs a quarter of a
 * sequential copy's speed. */
struct seg_bufs {
	struct seg_bufs *next;
	uint8_t *a, *b;
	bool differ[SEGMENT_BLOCKS];
};

struct mirror_leg {
	struct bdev *_Atomic dev; /* NULL when missing; swapped by replace */
	atomic_int state;       /* enum leg_state; changed under state_lock */
	atomic_uint_fast64_t read_errors, write_errors, repaired;
};

struct mirror {
	struct bdev bdev;       /* must stay first: the mirror is a bdev */
	struct mirror_leg leg[2];
	struct msb sb;          /* array state; uuid/geometry/events/members */
	pthread_mutex_t state_lock;
	atomic_int auth;        /* authoritative leg, -1 if none */
	bool readonly;
	bool resync_compare;    /* compare before copying (not for blank disks) */
	uint8_t rebuild_member_state; /* what the superblocks say of the leg
				       * being resynced while its source lives */

	uint8_t *stale;         /* per chunk: rebuilding leg lacks it (atomic bytes) */
	atomic_uint_fast64_t stale_count;
	struct bitmap *bm;
	pthread_rwlock_t stripes[NSTRIPES];

	pthread_t cleaner;
	bool cleaner_running;
	pthread_mutex_t cleaner_lock;
	pthread_cond_t cleaner_wake;
	bool cleaner_stop;
	uint64_t clean_delay_ns;

	atomic_uint_fast64_t reads, writes, flushes;
	struct seg_bufs *seg_pool; /* free resync/compare buffers (state_lock) */
	struct bdev *retired[8]; /* replaced devices: closed at mirror_free,
				  * since the cleaner may still be using one */
	int nretired;
};

static const struct bdev_ops mirror_ops;

/* ---------- small helpers ---------- */

static int leg_state(const struct mirror *m, int i) { return atomic_load(&m->leg[i].state); }

static uint64_t chunk_of(const struct mirror *m, uint64_t blkno) { return blkno / m->sb.chunk_blocks; }

static bool chunk_stale(const struct mirror *m, uint64_t c)
{
	return __atomic_load_n(&m->stale[c >> 3], __ATOMIC_ACQUIRE) & (1u << (c & 7));
}

static void chunk_set_stale(struct mirror *m, uint64_t c, bool v)
{
	uint8_t bit = (uint8_t)(1u << (c & 7));
	uint8_t old = v ? __atomic_fetch_or(&m->stale[c >> 3], bit, __ATOMIC_ACQ_REL)
			: __atomic_fetch_and(&m->stale[c >> 3], (uint8_t)~bit, __ATOMIC_ACQ_REL);
	if (v && !(old & bit))
		atomic_fetch_add(&m->stale_count, 1);
	if (!v && (old & bit))
		atomic_fetch_sub(&m->stale_count, 1);
}

/* Does leg i hold current data for blocks [blkno, blkno + n)? */
static bool leg_holds(const struct mirror *m, int i, uint64_t blkno, uint64_t n)
{
	int st = leg_state(m, i);
	if (st == LEG_IN_SYNC)
		return true;
	if (st != LEG_REBUILDING)
		return false;
	for (uint64_t c = chunk_of(m, blkno); c <= chunk_of(m, blkno + n - 1); c++)
		if (chunk_stale(m, c))
			return false;
	return true;
}

static bool leg_live(const struct mirror *m, int i)
{
	int st = leg_state(m, i);
	return st == LEG_IN_SYNC || st == LEG_REBUILDING;
}

static uint64_t iov_blocks(const struct iovec *iov, int iovcnt)
{
	uint64_t bytes = 0;
	for (int i = 0; i < iovcnt; i++)
		bytes += iov[i].iov_len;
	return bytes >> BDEV_BLOCK_SHIFT;
}

/* ---------- stripe locks: ascending order, so no two requests deadlock ---------- */

static void stripe_range(uint64_t blkno, uint64_t n, uint32_t *a0, uint32_t *a1,
			 uint32_t *b0, uint32_t *b1)
{
	/* Two ascending runs [a0,a1) then [b0,b1) of stripe indices. */
	uint64_t g0 = blkno >> STRIPE_SHIFT, g1 = (blkno + n - 1) >> STRIPE_SHIFT;
	if (g1 - g0 + 1 >= NSTRIPES) {
		*a0 = 0, *a1 = NSTRIPES, *b0 = *b1 = NSTRIPES;
		return;
	}
	uint32_t s = (uint32_t)(g0 % NSTRIPES), e = s + (uint32_t)(g1 - g0 + 1);
	if (e <= NSTRIPES) {
		*a0 = s, *a1 = e, *b0 = *b1 = NSTRIPES;
	} else {
		*a0 = 0, *a1 = e - NSTRIPES, *b0 = s, *b1 = NSTRIPES;
	}
}

static void stripes_lock(struct mirror *m, uint64_t blkno, uint64_t n, bool exclusive)
{
	uint32_t a0, a1, b0, b1;
	stripe_range(blkno, n, &a0, &a1, &b0, &b1);
	for (uint32_t r = 0; r < 2; r++)
		for (uint32_t i = r ? b0 : a0; i < (r ? b1 : a1); i++) {
			if (exclusive)
				pthread_rwlock_wrlock(&m->stripes[i]);
			else
				pthread_rwlock_rdlock(&m->stripes[i]);
		}
}

static void stripes_unlock(struct mirror *m, uint64_t blkno, uint64_t n)
{
	uint32_t a0, a1, b0, b1;
	stripe_range(blkno, n, &a0, &a1, &b0, &b1);
	for (uint32_t r = 0; r < 2; r++)
		for (uint32_t i = r ? b0 : a0; i < (r ? b1 : a1); i++)
			pthread_rwlock_unlock(&m->stripes[i]);
}

/* ---------- superblocks and leg failure ---------- */

/* What the superblocks record for leg i. A bitmap resync keeps the leg's
 * old state on disk (in sync, or failed by its partner), so a crash in the
 * middle simply repeats the bitmap resync; but once the source has failed,
 * the half-resynced leg is recorded as rebuilding: it must never become
 * authoritative. */
static uint8_t member_state_on_disk(const struct mirror *m, int i)
{
	switch (leg_state(m, i)) {
	case LEG_IN_SYNC: return MEMBER_IN_SYNC;
	case LEG_REBUILDING:
		return atomic_load(&m->auth) >= 0 ? m->rebuild_member_state : MEMBER_REBUILDING;
	default: return MEMBER_FAILED;
	}
}

/* State lock held. Bump events and write every live leg's superblock as md
 * does (preflush, write, flush): the first flush makes everything the new
 * superblock vouches for durable before it (a rebuilt leg's data before
 * "in sync"), the second makes the superblock itself durable. A leg that
 * cannot take it is failed here (no recursion). */
static int write_superblocks_locked(struct mirror *m, bool clean)
{
	if (m->readonly)
		return 0;
	m->sb.events++;
	m->sb.clean = clean;
	m->sb.utime_ns = wallclock_ns();
	for (int i = 0; i < 2; i++)
		m->sb.member_state[i] = member_state_on_disk(m, i);
	int ok = 0;
	for (int i = 0; i < 2; i++) {
		if (!leg_live(m, i))
			continue;
		struct msb mine = m->sb;
		mine.disk_index = (uint32_t)i;
		int rc = bdev_flush(m->leg[i].dev);
		if (rc == 0)
			rc = msb_write(m->leg[i].dev, &mine);
		if (rc == 0)
			rc = bdev_flush(m->leg[i].dev);
		if (rc == 0) {
			ok++;
			continue;
		}
		cat_log(CAT_LOG_ERROR, "disk %d (%s): superblock write failed: %s; disk marked failed",
			i + 1, m->leg[i].dev->name, strerror(-rc));
		atomic_store(&m->leg[i].state, LEG_FAILED);
	}
	return ok ? 0 : -EIO;
}

/* The other leg becomes the authority if it holds everything. */
static void choose_authority_locked(struct mirror *m)
{
	int a = atomic_load(&m->auth);
	if (a >= 0 && leg_state(m, a) == LEG_IN_SYNC)
		return;
	atomic_store(&m->auth, leg_state(m, 0) == LEG_IN_SYNC ? 0
			       : leg_state(m, 1) == LEG_IN_SYNC ? 1 : -1);
}

/* Fail leg i because `dev` returned err. An error from a device that has
 * since been replaced in that slot is ignored. */
static int fail_leg(struct mirror *m, int i, struct bdev *dev, int err, const char *what)
{
	pthread_mutex_lock(&m->state_lock);
	if (!leg_live(m, i) || (dev && m->leg[i].dev != dev)) {
		pthread_mutex_unlock(&m->state_lock);
		return 0;
	}
	int prev = leg_state(m, i);
	atomic_store(&m->leg[i].state, LEG_FAILED);
	choose_authority_locked(m);
	int other = 1 - i;
	if (leg_live(m, other))
		cat_log(CAT_LOG_ERROR, "disk %d (%s) failed (%s%s%s); continuing degraded on disk %d",
			i + 1, m->leg[i].dev->name, what, err ? ": " : "",
			err ? strerror(-err) : "", other + 1);
	else
		cat_log(CAT_LOG_ERROR, "disk %d (%s) failed (%s%s%s); no disk left: I/O now fails",
			i + 1, m->leg[i].dev->name, what, err ? ": " : "", err ? strerror(-err) : "");
	if (prev == LEG_REBUILDING && atomic_load(&m->auth) < 0)
		cat_log(CAT_LOG_ERROR, "chunks not yet rebuilt now answer EIO");
	int rc = write_superblocks_locked(m, false);
	pthread_mutex_unlock(&m->state_lock);
	return rc;
}

int mirror_fail_leg(struct mirror *m, int leg, const char *why)
{
	if (leg < 0 || leg > 1)
		return -EINVAL;
	if (m->readonly)
		return -EROFS;
	if (!leg_live(m, leg))
		return -EALREADY;
	return fail_leg(m, leg, NULL, 0, why ? why : "failed by administrator");
}

/* ---------- I/O paths ---------- */

/* Write to every live leg in parallel; retry a failing leg once, then fail
 * it. Succeeds when a leg that holds these blocks took the write and is
 * still in service once every failure has been recorded (recording one
 * can take the other leg down too, if its superblock refuses the news). */
static int write_legs(struct mirror *m, uint64_t blkno, const struct iovec *iov, int iovcnt)
{
	struct bdev_req req[2];
	int legs[2], n = 0;
	uint64_t nblocks = iov_blocks(iov, iovcnt);
	for (int i = 0; i < 2; i++) {
		if (!leg_live(m, i))
			continue;
		req[n] = (struct bdev_req){ .dev = m->leg[i].dev, .op = BDEV_WRITE,
					    .blkno = m->sb.data_offset + blkno,
					    .iov = iov, .iovcnt = iovcnt };
		legs[n++] = i;
	}
	if (n == 0)
		return -EIO;
	bdev_run_parallel(req, n);
	for (int k = 0; k < n; k++) {
		int i = legs[k], rc = req[k].result;
		if (rc < 0 && rc != -ENODEV && rc != -ENXIO)
			rc = req[k].result = bdev_writev(req[k].dev, req[k].blkno, iov, iovcnt);
		if (rc < 0) {
			atomic_fetch_add(&m->leg[i].write_errors, 1);
			fail_leg(m, i, req[k].dev, rc, "write error");
		}
	}
	for (int k = 0; k < n; k++)
		if (req[k].result == 0 && leg_holds(m, legs[k], blkno, nblocks))
			return 0;
	return -EIO;
}

static int mirror_writev(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt)
{
	struct mirror *m = (struct mirror *)d;
	if (m->readonly)
		return -EROFS;
	uint64_t n = iov_blocks(iov, iovcnt);
	uint64_t c0 = chunk_of(m, blkno), c1 = chunk_of(m, blkno + n - 1);
	stripes_lock(m, blkno, n, true);
	int rc = bitmap_start_write(m->bm, c0, c1);
	if (rc == 0) {
		rc = write_legs(m, blkno, iov, iovcnt);
		bitmap_end_write(m->bm, c0, c1);
	}
	stripes_unlock(m, blkno, n);
	atomic_fetch_add(&m->writes, 1);
	return rc;
}

/* Read repair: the good copy is in iov; rewrite it over the bad block(s). */
static void repair_leg(struct mirror *m, int bad, uint64_t blkno, const struct iovec *iov,
		       int iovcnt, uint64_t n)
{
	if (m->readonly)
		return;
	int rc = bdev_writev(m->leg[bad].dev, m->sb.data_offset + blkno, iov, iovcnt);
	if (rc < 0) {
		atomic_fetch_add(&m->leg[bad].write_errors, 1);
		fail_leg(m, bad, m->leg[bad].dev, rc, "read error, and rewriting the block failed");
		return;
	}
	atomic_fetch_add(&m->leg[bad].repaired, n);
	cat_log(CAT_LOG_WARN, "disk %d (%s): read error at block %llu repaired from disk %d",
		bad + 1, m->leg[bad].dev->name, (unsigned long long)blkno, 2 - bad);
}

/* Leg to try first: spread reads over both legs by 1 MiB region when both
 * hold the data (md's read balancing), else whichever holds it. */
static int first_read_leg(const struct mirror *m, uint64_t blkno, uint64_t n)
{
	bool h0 = leg_holds(m, 0, blkno, n), h1 = leg_holds(m, 1, blkno, n);
	if (h0 && h1)
		return (int)((blkno / SEGMENT_BLOCKS) & 1);
	return h0 ? 0 : h1 ? 1 : -1;
}

static int mirror_readv(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt)
{
	struct mirror *m = (struct mirror *)d;
	uint64_t n = iov_blocks(iov, iovcnt);
	atomic_fetch_add(&m->reads, 1);
	stripes_lock(m, blkno, n, false);
	int rc = -EIO, first = first_read_leg(m, blkno, n);
	for (int attempt = 0, i = first; attempt < 2 && i >= 0; attempt++, i = 1 - i) {
		/* Device before state: a reader that sees a replacement device
		 * also sees it failed or stale (see mirror_replace_leg). */
		struct bdev *dev = m->leg[i].dev;
		if (!leg_holds(m, i, blkno, n))
			continue;
		rc = bdev_readv(dev, m->sb.data_offset + blkno, iov, iovcnt);
		if (rc == 0) {
			if (attempt == 1 && leg_live(m, 1 - i) && leg_holds(m, 1 - i, blkno, n))
				repair_leg(m, 1 - i, blkno, iov, iovcnt, n);
			break;
		}
		/* A bad sector is repaired from the other copy below; a
		 * vanished device is failed now. The last copy is never
		 * failed for a read error: the caller gets EIO instead. */
		atomic_fetch_add(&m->leg[i].read_errors, 1);
		if (rc == -ENODEV || rc == -ENXIO)
			fail_leg(m, i, dev, rc, "device gone");
	}
	stripes_unlock(m, blkno, n);
	return rc == 0 ? 0 : -EIO;
}

/* Flush every live leg in parallel; succeeds when a leg that holds every
 * block (in sync, not one still being rebuilt) took the flush and is still
 * in service after the failures were recorded. */
static int flush_legs(struct mirror *m)
{
	struct bdev_req req[2];
	int legs[2], n = 0;
	for (int i = 0; i < 2; i++)
		if (leg_live(m, i)) {
			req[n] = (struct bdev_req){ .dev = m->leg[i].dev, .op = BDEV_FLUSH };
			legs[n++] = i;
		}
	bdev_run_parallel(req, n);
	for (int k = 0; k < n; k++) {
		if (req[k].result == 0)
			continue;
		atomic_fetch_add(&m->leg[legs[k]].write_errors, 1);
		fail_leg(m, legs[k], req[k].dev, req[k].result, "flush error");
	}
	for (int k = 0; k < n; k++)
		if (req[k].result == 0 && leg_state(m, legs[k]) == LEG_IN_SYNC)
			return 0;
	return -EIO;
}

static int mirror_flush(struct bdev *d)
{
	struct mirror *m = (struct mirror *)d;
	atomic_fetch_add(&m->flushes, 1);
	if (m->readonly)
		return 0;
	int rc = flush_legs(m);
	/* A superblock update in progress (a leg failing) must be durable
	 * before writes that went to the survivor alone count as durable. */
	pthread_mutex_lock(&m->state_lock);
	pthread_mutex_unlock(&m->state_lock);
	return rc;
}

static void mirror_close_op(struct bdev *d) { (void)mirror_close((struct mirror *)d); }

static const struct bdev_ops mirror_ops = {
	.readv = mirror_readv,
	.writev = mirror_writev,
	.flush = mirror_flush,
	.close = mirror_close_op,
};

struct bdev *mirror_bdev(struct mirror *m) { return &m->bdev; }

struct mirror *mirror_from_bdev(struct bdev *d)
{
	return d && d->ops == &mirror_ops ? (struct mirror *)d : NULL;
}

/* ---------- format ---------- */

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Refuse to overwrite something that looks like data. */
static int check_overwritable(struct bdev *d, int i, struct cat_error *err)
{
	struct msb old;
	int rc = msb_read(d, &old, NULL);
	if (rc == 0 || rc == -EUCLEAN || rc == -EPROTO) {
		char u[37];
		uuid_format(old.uuid, u);
		return cat_error_set(err, -EEXIST,
				     rc == 0 ? "disk %d (%s): already holds a Catamaran array (UUID %s); use --force to overwrite it"
					     : "disk %d (%s): holds a damaged or newer Catamaran superblock%.0s; use --force to overwrite it",
				     i + 1, d->name, u);
	}
	if (rc != -EBADMSG)
		return cat_error_set(err, rc, "disk %d (%s): cannot read: %s", i + 1, d->name, strerror(-rc));
	uint64_t n = d->nblocks < 256 ? d->nblocks : 256;
	uint8_t *buf = block_alloc(n * BDEV_BLOCK_SIZE);
	if (!buf)
		return cat_error_set(err, -ENOMEM, "out of memory");
	rc = bdev_read(d, 0, buf, n);
	bool empty = rc == 0 && all_zero(buf, n * BDEV_BLOCK_SIZE);
	free(buf);
	if (rc < 0)
		return cat_error_set(err, rc, "disk %d (%s): cannot read: %s", i + 1, d->name, strerror(-rc));
	if (!empty)
		return cat_error_set(err, -ENOTEMPTY,
				     "disk %d (%s): is not empty (data in its first MiB); use --force to overwrite it",
				     i + 1, d->name);
	return 0;
}

/* Metadata area of one disk: zeroed superblock slots (the other slot must
 * not keep an older array's superblock), an empty bitmap, the superblock. */
static int write_fresh_metadata(struct bdev *d, const struct msb *sb, uint64_t nchunks)
{
	uint64_t n = sb->bitmap_offset + sb->bitmap_blocks;
	uint8_t *buf = block_alloc(n * BDEV_BLOCK_SIZE);
	uint8_t *bits = calloc(1, (size_t)sb->bitmap_blocks * BDEV_BLOCK_SIZE);
	int rc = -ENOMEM;
	if (buf && bits) {
		memset(buf, 0, n * BDEV_BLOCK_SIZE);
		msb_encode(sb, buf + (sb->events % MSB_SLOTS) * BDEV_BLOCK_SIZE);
		for (uint32_t i = 0; i < sb->bitmap_blocks; i++)
			bitmap_encode_block(bits, nchunks, i,
					    buf + (sb->bitmap_offset + i) * BDEV_BLOCK_SIZE);
		rc = bdev_write(d, 0, buf, n);
		if (rc == 0)
			rc = bdev_flush(d);
	}
	free(buf);
	free(bits);
	return rc;
}

int mirror_format(struct bdev *legs[2], const struct mirror_format_opts *o,
		  struct cat_error *err)
{
	static const struct mirror_format_opts defaults;
	o = o ? o : &defaults;
	if (!legs[0] || !legs[1] || legs[0] == legs[1])
		return cat_error_set(err, -EINVAL, "format needs two different disks");
	int small = legs[1]->nblocks < legs[0]->nblocks;
	struct msb sb = { .version = MSB_VERSION, .events = 1, .clean = true };
	if (msb_geometry(&sb, legs[small]->nblocks, o->chunk_blocks) < 0)
		return cat_error_set(err, -EINVAL,
				     o->chunk_blocks && (o->chunk_blocks & (o->chunk_blocks - 1))
					     ? "chunk size must be a power of two"
					     : "disk %d (%s): too small (at least 2 MiB needed)",
				     small + 1, legs[small]->name);
	if (legs[0]->nblocks != legs[1]->nblocks)
		cat_log(CAT_LOG_WARN, "disks differ in size; the array uses %llu blocks of each",
			(unsigned long long)sb.disk_blocks);
	for (int i = 0; i < 2 && !o->force; i++) {
		int rc = check_overwritable(legs[i], i, err);
		if (rc < 0)
			return rc;
	}
	int rc = uuid_generate(sb.uuid);
	if (rc < 0)
		return cat_error_set(err, rc, "cannot generate a UUID: %s", strerror(-rc));
	sb.ctime_ns = sb.utime_ns = wallclock_ns();
	sb.member_state[0] = MEMBER_IN_SYNC;
	sb.member_state[1] = o->assume_clean ? MEMBER_IN_SYNC : MEMBER_REBUILDING;
	for (int i = 0; i < 2; i++) {
		sb.disk_index = (uint32_t)i;
		rc = write_fresh_metadata(legs[i], &sb, msb_nchunks(&sb));
		if (rc < 0)
			return cat_error_set(err, rc, "disk %d (%s): write failed: %s", i + 1,
					     legs[i]->name, strerror(-rc));
	}
	return 0;
}

/* ---------- assembly ---------- */

struct assembly {
	struct msb sb[2];
	bool present[2];
	struct mirror_plan plan;
};

static int read_member(struct bdev *d, int i, struct msb *sb, struct cat_error *err)
{
	int rc = msb_read(d, sb, NULL);
	switch (rc) {
	case 0: break;
	case -EBADMSG:
		return cat_error_set(err, rc, "disk %d (%s): not a Catamaran disk (no superblock magic)", i + 1, d->name);
	case -EUCLEAN:
		return cat_error_set(err, rc, "disk %d (%s): superblock damaged (checksum or geometry wrong in both copies)", i + 1, d->name);
	case -EPROTO:
		return cat_error_set(err, rc, "disk %d (%s): superblock of an unsupported format version", i + 1, d->name);
	default:
		return cat_error_set(err, rc, "disk %d (%s): cannot read superblock: %s", i + 1, d->name, strerror(-rc));
	}
	if (sb->disk_blocks > d->nblocks) {
		char a[32], b[32];
		return cat_error_set(err, -EINVAL, "disk %d (%s): is %s but the array needs %s (truncated or wrong disk?)",
				     i + 1, d->name, format_size(d->nblocks * BDEV_BLOCK_SIZE, a, sizeof(a)),
				     format_size(sb->disk_blocks * BDEV_BLOCK_SIZE, b, sizeof(b)));
	}
	return 0;
}

static void plan_refuse(struct mirror_plan *p, const char *why)
{
	p->auth = p->rebuild = -1;
	snprintf(p->refusal, sizeof(p->refusal), "%s", why);
}

/* Who is authoritative and what the other needs: the table in README.md. */
void mirror_plan(const struct msb *sb[2], bool full_resync, struct mirror_plan *p)
{
	memset(p, 0, sizeof(*p));
	p->rebuild = -1;
	if (!sb[0] || !sb[1]) {
		int i = sb[0] ? 0 : 1;
		if (!sb[i])
			plan_refuse(p, "no usable disk");
		else if (sb[i]->member_state[i] != MEMBER_IN_SYNC)
			plan_refuse(p, i ? "disk 2 is incomplete (it was being rebuilt) and disk 1 is missing"
					 : "disk 1 is incomplete (it was being rebuilt) and disk 2 is missing");
		else
			p->auth = i;
		return;
	}
	bool complete[2], accuses[2];
	for (int i = 0; i < 2; i++) {
		complete[i] = sb[i]->member_state[i] == MEMBER_IN_SYNC;
		accuses[i] = sb[i]->member_state[1 - i] != MEMBER_IN_SYNC;
	}
	int newer = sb[1]->events > sb[0]->events ? 1 : 0;
	if (!complete[0] && !complete[1]) {
		plan_refuse(p, "neither disk is complete: both were being rebuilt");
		return;
	}
	if (complete[0] != complete[1]) {
		int c = complete[0] ? 0 : 1;
		if (accuses[1 - c]) {
			plan_refuse(p, "one disk's rebuild was interrupted by the failure of the other, "
				       "which is therefore stale: refusing to guess");
			return;
		}
		p->auth = c, p->rebuild = 1 - c, p->full = true;
	} else if (accuses[0] && accuses[1]) {
		p->auth = newer, p->rebuild = 1 - newer, p->full = p->split_brain = true;
	} else if (accuses[0] || accuses[1]) {
		p->auth = accuses[0] ? 0 : 1;
		p->rebuild = 1 - p->auth;
		p->full = sb[p->auth]->member_state[p->rebuild] == MEMBER_REBUILDING;
	} else {
		p->auth = newer;
		bool clean = sb[0]->clean && sb[1]->clean && sb[0]->events == sb[1]->events;
		if (!clean || full_resync)
			p->rebuild = 1 - newer;
	}
	if (p->rebuild < 0)
		return;
	p->full = p->full || full_resync;
	p->rebuild_state = p->full ? MEMBER_REBUILDING : sb[p->auth]->member_state[p->rebuild];
}

/* Union of the present legs' bitmaps (a damaged block reads as all dirty). */
static int read_bitmaps(struct mirror *m, uint8_t *bits)
{
	uint32_t nb = m->sb.bitmap_blocks;
	uint8_t *img = block_alloc((size_t)nb * BDEV_BLOCK_SIZE);
	if (!img)
		return -ENOMEM;
	for (int i = 0; i < 2; i++) {
		if (!m->leg[i].dev)
			continue;
		int rc = bdev_read(m->leg[i].dev, m->sb.bitmap_offset, img, nb);
		if (rc < 0)
			memset(img, 0, (size_t)nb * BDEV_BLOCK_SIZE); /* decodes as all dirty */
		int damaged = bitmap_decode_into(img, nb, msb_nchunks(&m->sb), bits);
		if (damaged)
			cat_log(CAT_LOG_WARN, "disk %d (%s): %d write-intent bitmap block(s) unreadable; their chunks will be resynced",
				i + 1, m->leg[i].dev->name, damaged);
	}
	free(img);
	return 0;
}

static int bitmap_write_cb(void *ctx, uint32_t first, const void *buf, uint32_t nblocks)
{
	struct mirror *m = ctx;
	struct iovec iov = { (void *)buf, (size_t)nblocks * BDEV_BLOCK_SIZE };
	struct bdev_req req[2];
	int legs[2], n = 0, ok = 0;
	for (int i = 0; i < 2; i++)
		if (leg_live(m, i)) {
			req[n] = (struct bdev_req){ .dev = m->leg[i].dev, .op = BDEV_WRITE,
						    .blkno = m->sb.bitmap_offset + first,
						    .iov = &iov, .iovcnt = 1 };
			legs[n++] = i;
		}
	bdev_run_parallel(req, n);
	for (int k = 0; k < n; k++) {
		int rc = req[k].result;
		if (rc == 0)
			rc = bdev_flush(m->leg[legs[k]].dev);
		if (rc == 0) {
			ok++;
			continue;
		}
		atomic_fetch_add(&m->leg[legs[k]].write_errors, 1);
		fail_leg(m, legs[k], req[k].dev, rc, "bitmap write error");
	}
	return ok ? 0 : -EIO;
}

static void *cleaner_main(void *arg);

static void stop_cleaner(struct mirror *m)
{
	if (!m->cleaner_running)
		return;
	pthread_mutex_lock(&m->cleaner_lock);
	m->cleaner_stop = true;
	pthread_cond_signal(&m->cleaner_wake);
	pthread_mutex_unlock(&m->cleaner_lock);
	pthread_join(m->cleaner, NULL);
	m->cleaner_running = false;
}

static void mirror_free(struct mirror *m)
{
	stop_cleaner(m);
	for (int i = 0; i < 2; i++)
		bdev_close(m->leg[i].dev);
	for (int i = 0; i < m->nretired; i++)
		bdev_close(m->retired[i]);
	for (unsigned i = 0; i < NSTRIPES; i++)
		pthread_rwlock_destroy(&m->stripes[i]);
	pthread_mutex_destroy(&m->state_lock);
	pthread_mutex_destroy(&m->cleaner_lock);
	pthread_cond_destroy(&m->cleaner_wake);
	bitmap_destroy(m->bm);
	while (m->seg_pool) {
		struct seg_bufs *sb = m->seg_pool;
		m->seg_pool = sb->next;
		free(sb->a);
		free(sb->b);
		free(sb);
	}
	free(m->stale);
	free(m);
}

static struct mirror *mirror_alloc(struct bdev *legs[2])
{
	struct mirror *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->bdev.ops = &mirror_ops;
	pthread_mutex_init(&m->state_lock, NULL);
	pthread_mutex_init(&m->cleaner_lock, NULL);
	pthread_cond_init(&m->cleaner_wake, NULL);
	for (unsigned i = 0; i < NSTRIPES; i++)
		pthread_rwlock_init(&m->stripes[i], NULL);
	for (int i = 0; i < 2; i++) {
		m->leg[i].dev = legs[i];
		atomic_store(&m->leg[i].state, legs[i] ? LEG_IN_SYNC : LEG_MISSING);
	}
	return m;
}

/* Apply the decided roles: leg states, stale chunks, bitmap. */
static int setup_state(struct mirror *m, const struct assembly *a, const struct mirror_opts *o)
{
	uint64_t nchunks = msb_nchunks(&m->sb);
	size_t bytes = (size_t)(nchunks + 7) / 8;
	uint8_t *bits = calloc(1, bytes);
	m->stale = calloc(1, bytes);
	if (!bits || !m->stale) {
		free(bits);
		return -ENOMEM;
	}
	int rc = read_bitmaps(m, bits);
	atomic_store(&m->auth, a->plan.auth);
	if (rc == 0 && a->plan.rebuild >= 0) {
		atomic_store(&m->leg[a->plan.rebuild].state, LEG_REBUILDING);
		/* DRBD's trick pays for a bitmap resync (mostly equal chunks);
		 * a full one copies sequentially, as fast as a plain copy. */
		m->resync_compare = !a->plan.full;
		m->rebuild_member_state = a->plan.rebuild_state;
		for (uint64_t c = 0; c < nchunks; c++)
			if (a->plan.full || (bits[c >> 3] & (1u << (c & 7))))
				chunk_set_stale(m, c, true);
	}
	uint32_t delay = o->clean_delay_ms ? o->clean_delay_ms : DEFAULT_CLEAN_DELAY_MS;
	m->clean_delay_ns = (uint64_t)delay * 1000000ull;
	if (rc == 0) {
		m->bm = bitmap_create(nchunks, bits, m->clean_delay_ns, bitmap_write_cb, m);
		rc = m->bm ? 0 : -ENOMEM;
	}
	free(bits);
	return rc;
}

/* Mark the array in use on disk: union bitmap on both legs, superblocks. */
static int activate(struct mirror *m, const struct assembly *a, struct cat_error *err)
{
	int rc = bitmap_write_all(m->bm);
	pthread_mutex_lock(&m->state_lock);
	if (rc == 0) {
		m->sb.events = a->sb[0].events > a->sb[1].events ? a->sb[0].events : a->sb[1].events;
		rc = write_superblocks_locked(m, false);
	}
	pthread_mutex_unlock(&m->state_lock);
	if (rc < 0)
		return cat_error_set(err, -EIO, "cannot write to either disk");
	return 0;
}

static int assemble(struct bdev *legs[2], const struct mirror_opts *o, struct assembly *a,
		    struct cat_error *err)
{
	memset(a, 0, sizeof(*a));
	for (int i = 0; i < 2; i++) {
		if (!legs[i])
			continue;
		int rc = read_member(legs[i], i, &a->sb[i], err);
		if (rc < 0)
			return rc;
	}
	if (!legs[0] && !legs[1])
		return cat_error_set(err, -ENODEV, "no disk given");
	if ((!legs[0] || !legs[1]) && !o->allow_degraded)
		return cat_error_set(err, -ENODEV, "disk %d is missing (degraded start not allowed)",
				     legs[0] ? 2 : 1);
	if (legs[0] && legs[1]) {
		char why[160];
		if (msb_pair_problem(&a->sb[0], &a->sb[1], why, sizeof(why)))
			return cat_error_set(err, -EINVAL, "disk 1 (%s) and disk 2 (%s) %s",
					     legs[0]->name, legs[1]->name, why);
	}
	/* Put each disk in the slot its superblock names (given in any order). */
	struct bdev *given[2] = { legs[0], legs[1] };
	struct msb sbs[2] = { a->sb[0], a->sb[1] };
	legs[0] = legs[1] = NULL;
	for (int i = 0; i < 2; i++)
		if (given[i]) {
			uint32_t k = sbs[i].disk_index;
			legs[k] = given[i];
			a->sb[k] = sbs[i];
			a->present[k] = true;
		}
	const struct msb *view[2] = { a->present[0] ? &a->sb[0] : NULL, a->present[1] ? &a->sb[1] : NULL };
	mirror_plan(view, o->full_resync, &a->plan);
	if (a->plan.auth < 0)
		return cat_error_set(err, -EUCLEAN, "cannot assemble %s + %s: %s",
				     legs[0] ? legs[0]->name : "-", legs[1] ? legs[1]->name : "-",
				     a->plan.refusal);
	if (a->plan.split_brain)
		cat_log(CAT_LOG_WARN, "split brain: each disk records the other as failed; disk %d has the higher event count and wins, disk %d will be fully overwritten",
			a->plan.auth + 1, 2 - a->plan.auth);
	return 0;
}

int mirror_open(struct bdev *legs_in[2], const struct mirror_opts *opts, struct mirror **out,
		struct cat_error *err)
{
	static const struct mirror_opts defaults;
	const struct mirror_opts *o = opts ? opts : &defaults;
	struct bdev *legs[2] = { legs_in[0], legs_in[1] };
	struct assembly a;
	int rc = assemble(legs, o, &a, err);
	struct mirror *m = rc < 0 ? NULL : mirror_alloc(legs);
	if (!m) {
		bdev_close(legs[0]);
		bdev_close(legs[1]);
		return rc < 0 ? rc : cat_error_set(err, -ENOMEM, "out of memory");
	}
	m->sb = a.sb[a.plan.auth];
	m->readonly = o->readonly;
	m->bdev.nblocks = m->sb.data_blocks;
	snprintf(m->bdev.name, sizeof(m->bdev.name), "mirror(%.120s,%.120s)",
		 legs[0] ? legs[0]->name : "-", legs[1] ? legs[1]->name : "-");
	rc = setup_state(m, &a, o);
	if (rc < 0)
		cat_error_set(err, rc, "cannot set up the mirror: %s", strerror(-rc));
	else if (!m->readonly)
		rc = activate(m, &a, err);
	if (rc == 0 && !m->readonly && !o->no_cleaner) {
		rc = -pthread_create(&m->cleaner, NULL, cleaner_main, m);
		m->cleaner_running = rc == 0;
		if (rc < 0)
			cat_error_set(err, rc, "cannot start the bitmap cleaner: %s", strerror(-rc));
	}
	if (rc < 0) {
		mirror_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

int mirror_close(struct mirror *m)
{
	if (!m)
		return 0;
	int rc = 0;
	stop_cleaner(m); /* before the final bitmap update */
	if (!m->readonly) {
		rc = flush_legs(m);
		bool in_sync = leg_state(m, 0) == LEG_IN_SYNC && leg_state(m, 1) == LEG_IN_SYNC;
		if (rc == 0 && in_sync)
			rc = bitmap_clear_all(m->bm);
		pthread_mutex_lock(&m->state_lock);
		bool rebuilding = mirror_rebuilding_leg(m) >= 0;
		int src = write_superblocks_locked(m, rc == 0 && !rebuilding);
		pthread_mutex_unlock(&m->state_lock);
		rc = rc ? rc : src;
	}
	mirror_free(m);
	return rc;
}

void mirror_abandon(struct mirror *m)
{
	if (m)
		mirror_free(m); /* stops the cleaner; writes no superblock */
}

/* ---------- resync primitives (driven by recovery/) ---------- */

int mirror_rebuilding_leg(const struct mirror *m)
{
	for (int i = 0; i < 2; i++)
		if (leg_state(m, i) == LEG_REBUILDING)
			return i;
	return -1;
}

int64_t mirror_next_stale_chunk(struct mirror *m, uint64_t from)
{
	uint64_t n = msb_nchunks(&m->sb);
	for (uint64_t c = from; c < n; c++) {
		if ((c & 7) == 0 && __atomic_load_n(&m->stale[c >> 3], __ATOMIC_ACQUIRE) == 0) {
			c += 7; /* whole byte clean */
			continue;
		}
		if (chunk_stale(m, c))
			return (int64_t)c;
	}
	return -1;
}

uint64_t mirror_stale_chunks(struct mirror *m) { return atomic_load(&m->stale_count); }

/* Write the runs of blocks flagged in differ[] from buf to dev. */
static int write_runs(struct mirror *m, struct bdev *dev, uint64_t blkno, const uint8_t *buf,
		      const bool *differ, uint32_t n, uint64_t *copied)
{
	for (uint32_t i = 0; i < n;) {
		if (!differ[i]) {
			i++;
			continue;
		}
		uint32_t j = i;
		while (j < n && differ[j])
			j++;
		int rc = bdev_write(dev, m->sb.data_offset + blkno + i,
				    buf + (size_t)i * BDEV_BLOCK_SIZE, j - i);
		if (rc < 0)
			return rc;
		*copied += j - i;
		i = j;
	}
	return 0;
}

/* Read the same blocks from the source (always) and the target (when
 * comparing) in parallel; mark differing blocks. */
static int read_pair(struct mirror *m, int s, int t, uint64_t blkno, uint32_t n, uint8_t *sbuf,
		     uint8_t *tbuf, bool compare, bool *differ, int *terr)
{
	struct iovec siov = { sbuf, (size_t)n * BDEV_BLOCK_SIZE }, tiov = { tbuf, siov.iov_len };
	struct bdev_req req[2] = {
		{ .dev = m->leg[s].dev, .op = BDEV_READ, .blkno = m->sb.data_offset + blkno, .iov = &siov, .iovcnt = 1 },
		{ .dev = m->leg[t].dev, .op = BDEV_READ, .blkno = m->sb.data_offset + blkno, .iov = &tiov, .iovcnt = 1 },
	};
	bdev_run_parallel(req, compare ? 2 : 1);
	if (req[0].result < 0 && req[0].result != -ENODEV && req[0].result != -ENXIO)
		req[0].result = bdev_readv(m->leg[s].dev, req[0].blkno, &siov, 1); /* one retry */
	*terr = compare ? req[1].result : 0;
	for (uint32_t i = 0; i < n; i++)
		differ[i] = !compare || *terr < 0 ||
			    memcmp(sbuf + (size_t)i * BDEV_BLOCK_SIZE, tbuf + (size_t)i * BDEV_BLOCK_SIZE,
				   BDEV_BLOCK_SIZE) != 0;
	return req[0].result;
}


static struct seg_bufs *seg_bufs_get(struct mirror *m)
{
	pthread_mutex_lock(&m->state_lock);
	struct seg_bufs *sb = m->seg_pool;
	if (sb)
		m->seg_pool = sb->next;
	pthread_mutex_unlock(&m->state_lock);
	if (sb)
		return sb;
	sb = calloc(1, sizeof(*sb));
	if (!sb)
		return NULL;
	sb->a = block_alloc(SEGMENT_BLOCKS * BDEV_BLOCK_SIZE);
	sb->b = block_alloc(SEGMENT_BLOCKS * BDEV_BLOCK_SIZE);
	if (sb->a && sb->b)
		return sb;
	free(sb->a);
	free(sb->b);
	free(sb);
	return NULL;
}

static void seg_bufs_put(struct mirror *m, struct seg_bufs *sb)
{
	pthread_mutex_lock(&m->state_lock);
	sb->next = m->seg_pool;
	m->seg_pool = sb;
	pthread_mutex_unlock(&m->state_lock);
}

/* The leg being rebuilt, its device and copy mode, taken together. */
struct resync_target {
	int leg;
	struct bdev *dev;
	bool compare;
};

/* Copy one segment to target under its stripe locks. -EAGAIN: the target
 * was replaced meanwhile (its chunk must stay stale). */
static int resync_segment(struct mirror *m, uint64_t blkno, uint32_t n, struct seg_bufs *bufs,
			  const struct resync_target *tg, uint64_t *copied)
{
	stripes_lock(m, blkno, n, true);
	int s = atomic_load(&m->auth), t = tg->leg, rc = 0, terr;
	if (leg_state(m, t) != LEG_REBUILDING)
		rc = -ENODEV;
	else if (m->leg[t].dev != tg->dev)
		rc = -EAGAIN;
	else if (s < 0 || leg_state(m, s) != LEG_IN_SYNC)
		rc = -EIO;
	if (rc == 0) {
		rc = read_pair(m, s, t, blkno, n, bufs->a, bufs->b, tg->compare, bufs->differ, &terr);
		if (rc < 0) {
			atomic_fetch_add(&m->leg[s].read_errors, 1);
			fail_leg(m, s, m->leg[s].dev, rc, "read error while resyncing the other disk");
			rc = -EIO;
		}
	}
	if (rc == 0) {
		rc = write_runs(m, tg->dev, blkno, bufs->a, bufs->differ, n, copied);
		if (rc < 0) {
			atomic_fetch_add(&m->leg[t].write_errors, 1);
			fail_leg(m, t, tg->dev, rc, "write error while being resynced");
			rc = -ENODEV;
		}
	}
	stripes_unlock(m, blkno, n);
	return rc;
}

int mirror_resync_chunk(struct mirror *m, uint64_t chunk, uint64_t *copied)
{
	uint64_t dummy = 0;
	copied = copied ? copied : &dummy;
	if (m->readonly)
		return -EROFS;
	if (chunk >= msb_nchunks(&m->sb))
		return -ERANGE;
	if (!chunk_stale(m, chunk))
		return 0;
	struct seg_bufs *bufs = seg_bufs_get(m);
	if (!bufs)
		return -ENOMEM;
	uint64_t first = chunk * m->sb.chunk_blocks;
	uint64_t end = first + m->sb.chunk_blocks;
	end = end < m->sb.data_blocks ? end : m->sb.data_blocks;
	/* A replace swaps the device and re-marks every chunk stale under the
	 * state lock; so the chunk is declared copied only if the device we
	 * copied to is still the target at that moment. */
	pthread_mutex_lock(&m->state_lock);
	struct resync_target tg = { .leg = mirror_rebuilding_leg(m) };
	if (tg.leg >= 0) {
		tg.dev = m->leg[tg.leg].dev;
		tg.compare = m->resync_compare;
	}
	pthread_mutex_unlock(&m->state_lock);
	int rc = tg.leg < 0 ? -ENODEV : 0;
	for (uint64_t b = first; b < end && rc == 0; b += SEGMENT_BLOCKS) {
		uint32_t n = (uint32_t)(end - b < SEGMENT_BLOCKS ? end - b : SEGMENT_BLOCKS);
		rc = resync_segment(m, b, n, bufs, &tg, copied);
	}
	if (rc == 0) {
		pthread_mutex_lock(&m->state_lock);
		if (leg_state(m, tg.leg) == LEG_REBUILDING && m->leg[tg.leg].dev == tg.dev)
			chunk_set_stale(m, chunk, false);
		pthread_mutex_unlock(&m->state_lock);
	}
	seg_bufs_put(m, bufs);
	return rc == -EAGAIN ? 0 : rc;
}

int mirror_resync_finish(struct mirror *m)
{
	if (m->readonly)
		return -EROFS;
	pthread_mutex_lock(&m->state_lock);
	int t = mirror_rebuilding_leg(m), rc = 0;
	if (t < 0)
		rc = 0;
	else if (atomic_load(&m->stale_count) > 0)
		rc = -EAGAIN;
	else {
		atomic_store(&m->leg[t].state, LEG_IN_SYNC);
		rc = write_superblocks_locked(m, false);
		cat_log(CAT_LOG_INFO, "disk %d (%s) is in sync", t + 1, m->leg[t].dev->name);
	}
	pthread_mutex_unlock(&m->state_lock);
	return rc;
}

int mirror_replace_leg(struct mirror *m, int leg, struct bdev *newdev, struct cat_error *err)
{
	if (leg < 0 || leg > 1 || !newdev)
		return cat_error_set(err, -EINVAL, "replace needs disk 1 or 2 and a new device");
	if (m->readonly)
		return cat_error_set(err, -EROFS, "mirror is read-only");
	if (newdev->nblocks < m->sb.disk_blocks)
		return cat_error_set(err, -ENOSPC, "%s: too small to replace disk %d", newdev->name, leg + 1);
	if (leg_state(m, 1 - leg) != LEG_IN_SYNC)
		return cat_error_set(err, -EBUSY, "disk %d is not in sync: nothing to rebuild from", 2 - leg);
	if (leg_live(m, leg))
		fail_leg(m, leg, NULL, 0, "being replaced");
	/* No I/O needs stopping: the old device is retired, not closed, so
	 * requests still using it finish harmlessly (their errors no longer
	 * count against the slot), and every chunk is marked stale before
	 * the new leg goes live, so nothing reads from it too early. */
	pthread_mutex_lock(&m->state_lock);
	struct bdev *old = m->leg[leg].dev;
	if (old && m->nretired == (int)(sizeof(m->retired) / sizeof(m->retired[0]))) {
		pthread_mutex_unlock(&m->state_lock);
		return cat_error_set(err, -EBUSY, "too many replacements in one session; restart first");
	}
	if (old)
		m->retired[m->nretired++] = old;
	uint64_t nchunks = msb_nchunks(&m->sb);
	for (uint64_t c = 0; c < nchunks; c++)
		chunk_set_stale(m, c, true);
	m->leg[leg].dev = newdev; /* after the stale bits, before the state */
	m->resync_compare = false; /* a new disk: copy, do not compare */
	m->rebuild_member_state = MEMBER_REBUILDING;
	atomic_store(&m->leg[leg].state, LEG_REBUILDING);
	atomic_store(&m->auth, 1 - leg);
	pthread_mutex_unlock(&m->state_lock);
	int rc = bitmap_write_all(m->bm);
	pthread_mutex_lock(&m->state_lock);
	if (rc == 0)
		rc = write_superblocks_locked(m, false);
	pthread_mutex_unlock(&m->state_lock);
	if (rc < 0)
		return cat_error_set(err, rc, "cannot write the new disk's metadata");
	cat_log(CAT_LOG_INFO, "disk %d replaced by %s; rebuilding", leg + 1, newdev->name);
	return 0;
}

/* ---------- scrub support ---------- */

int mirror_read_leg(struct mirror *m, int leg, uint64_t blkno, void *buf, uint64_t nblocks)
{
	if (leg < 0 || leg > 1 || !leg_live(m, leg))
		return -ENODEV;
	if (blkno >= m->sb.data_blocks || nblocks > m->sb.data_blocks - blkno || !nblocks)
		return -ERANGE;
	stripes_lock(m, blkno, nblocks, false);
	int rc = bdev_read(m->leg[leg].dev, m->sb.data_offset + blkno, buf, nblocks);
	stripes_unlock(m, blkno, nblocks);
	return rc;
}

int mirror_compare_range(struct mirror *m, uint64_t blkno, uint32_t n, uint8_t *mismatch, bool repair)
{
	if (!n || n > SEGMENT_BLOCKS || blkno >= m->sb.data_blocks || n > m->sb.data_blocks - blkno)
		return -ERANGE;
	if (repair && m->readonly)
		return -EROFS;
	if (!leg_live(m, 0) || !leg_live(m, 1))
		return -ENODEV;
	struct seg_bufs *bufs = seg_bufs_get(m);
	if (!bufs)
		return -ENOMEM;
	stripes_lock(m, blkno, n, repair);
	int s = atomic_load(&m->auth), terr = 0;
	s = s < 0 ? 0 : s;
	int rc = read_pair(m, s, 1 - s, blkno, n, bufs->a, bufs->b, true, bufs->differ, &terr);
	if (rc == 0 && terr < 0)
		rc = terr;
	int count = 0;
	if (rc == 0) {
		memset(mismatch, 0, (n + 7) / 8);
		for (uint32_t i = 0; i < n; i++)
			if (bufs->differ[i]) {
				mismatch[i >> 3] |= (uint8_t)(1u << (i & 7));
				count++;
			}
		uint64_t copied = 0;
		if (repair && count)
			rc = write_runs(m, m->leg[1 - s].dev, blkno, bufs->a, bufs->differ, n, &copied);
	}
	stripes_unlock(m, blkno, n);
	seg_bufs_put(m, bufs);
	return rc < 0 ? rc : count;
}

/* ---------- bitmap cleaner ---------- */

int64_t mirror_clean(struct mirror *m)
{
	if (m->readonly || bitmap_count(m->bm) == 0)
		return 0;
	uint64_t t0 = now_ns();
	int rc = flush_legs(m);
	if (rc < 0)
		return rc;
	bool in_sync = leg_state(m, 0) == LEG_IN_SYNC && leg_state(m, 1) == LEG_IN_SYNC;
	return (int64_t)bitmap_clean(m->bm, t0, in_sync);
}

static void *cleaner_main(void *arg)
{
	struct mirror *m = arg;
	pthread_mutex_lock(&m->cleaner_lock);
	while (!m->cleaner_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + m->clean_delay_ns / 2;
		ts.tv_sec += (time_t)(ns / 1000000000ull);
		ts.tv_nsec = (long)(ns % 1000000000ull);
		pthread_cond_timedwait(&m->cleaner_wake, &m->cleaner_lock, &ts);
		if (m->cleaner_stop)
			break;
		pthread_mutex_unlock(&m->cleaner_lock);
		(void)mirror_clean(m);
		pthread_mutex_lock(&m->cleaner_lock);
	}
	pthread_mutex_unlock(&m->cleaner_lock);
	return NULL;
}

/* ---------- status ---------- */

void mirror_get_status(struct mirror *m, struct mirror_status *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&m->state_lock);
	memcpy(st->uuid, m->sb.uuid, 16);
	st->events = m->sb.events;
	st->data_blocks = m->sb.data_blocks;
	st->chunk_blocks = m->sb.chunk_blocks;
	st->nchunks = msb_nchunks(&m->sb);
	st->dirty_chunks = bitmap_count(m->bm);
	st->stale_chunks = atomic_load(&m->stale_count);
	st->authoritative = atomic_load(&m->auth);
	st->readonly = m->readonly;
	for (int i = 0; i < 2; i++) {
		struct mirror_leg_status *l = &st->leg[i];
		l->state = (enum leg_state)leg_state(m, i);
		snprintf(l->name, sizeof(l->name), "%s", m->leg[i].dev ? m->leg[i].dev->name : "-");
		l->read_errors = atomic_load(&m->leg[i].read_errors);
		l->write_errors = atomic_load(&m->leg[i].write_errors);
		l->repaired_blocks = atomic_load(&m->leg[i].repaired);
	}
	pthread_mutex_unlock(&m->state_lock);
	st->reads = atomic_load(&m->reads);
	st->writes = atomic_load(&m->writes);
	st->flushes = atomic_load(&m->flushes);
}
