/*
 * crash_disk.c - volatile write cache over a backing bdev.
 *
 * The cache is the list of blocks written since the last completed flush,
 * in first-write order, each with its history of values (oldest first,
 * capped at MAX_VERSIONS: older ones are dropped, which only narrows the
 * choice at a crash), plus a hash index blkno -> entry. Flush writes the
 * newest value of each block to the backing device, flushes it, and empties
 * the cache. A crash picks, per block and independently, either the old
 * value (nothing written) or one of its versions, writes that, and empties
 * the cache. Iteration is in first-write order, so a seed always gives the
 * same image for the same single-threaded workload.
 *
 * One mutex per disk is held for the whole of every operation, so a flush
 * makes durable exactly the writes that completed before it started.
 */
#include "blockdev/testdev/crash_disk.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/base/util.h"

#define MAX_VERSIONS 16u

struct cached_block {
	uint64_t blkno;
	unsigned nversions;
	uint8_t *versions[MAX_VERSIONS]; /* oldest first; 4 KiB aligned */
};

struct crash_disk {
	struct bdev b;
	struct bdev *backing;
	struct crash_clock *clock;
	unsigned keep_percent;
	pthread_mutex_t lock;
	struct prng rng;                /* under lock */
	bool crashed;                   /* under lock */
	struct cached_block *cache;     /* in first-write order; under lock */
	size_t ncached, cache_cap;
	uint32_t *index;                /* open addressing: cache position + 1, 0 = empty */
	size_t index_size;              /* power of two, > 2 * ncached */
};

static struct crash_disk *to_crash(struct bdev *d) { return (struct crash_disk *)d; }

/* ---- clock -------------------------------------------------------------- */

void crash_clock_init(struct crash_clock *c)
{
	atomic_store(&c->ops_left, -1);
	atomic_store(&c->crashed, false);
}

void crash_clock_arm(struct crash_clock *c, long long ops)
{
	if (ops <= 0)
		atomic_store(&c->crashed, true);
	else
		atomic_store(&c->ops_left, ops);
}

/* Count one operation; true when the power is (now) off. */
static bool clock_tick(struct crash_clock *c)
{
	if (!c)
		return false;
	if (atomic_load(&c->crashed))
		return true;
	long long left = atomic_load(&c->ops_left);
	while (left > 0) {
		if (atomic_compare_exchange_weak(&c->ops_left, &left, left - 1)) {
			if (left > 1)
				return false;
			atomic_store(&c->crashed, true);
			return true;
		}
	}
	return atomic_load(&c->crashed);
}

/* ---- the cache ------------------------------------------------------------ */

static uint64_t hash_blkno(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

static struct cached_block *cache_find(struct crash_disk *c, uint64_t blkno)
{
	if (!c->index_size)
		return NULL;
	size_t mask = c->index_size - 1;
	for (size_t i = hash_blkno(blkno) & mask;; i = (i + 1) & mask) {
		uint32_t pos = c->index[i];
		if (!pos)
			return NULL;
		if (c->cache[pos - 1].blkno == blkno)
			return &c->cache[pos - 1];
	}
}

static void index_insert(uint32_t *index, size_t size, uint64_t blkno, uint32_t pos)
{
	size_t mask = size - 1;
	size_t i = hash_blkno(blkno) & mask;
	while (index[i])
		i = (i + 1) & mask;
	index[i] = pos;
}

/* Room for one more cached block, in the array and in the index. */
static int cache_reserve(struct crash_disk *c)
{
	if (c->ncached == c->cache_cap) {
		size_t cap = c->cache_cap ? c->cache_cap * 2 : 64;
		struct cached_block *n = realloc(c->cache, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		c->cache = n;
		c->cache_cap = cap;
	}
	if (2 * (c->ncached + 1) >= c->index_size) {
		size_t size = c->index_size ? c->index_size * 2 : 256;
		uint32_t *index = calloc(size, sizeof(*index));
		if (!index)
			return -ENOMEM;
		for (size_t i = 0; i < c->ncached; i++)
			index_insert(index, size, c->cache[i].blkno, (uint32_t)i + 1);
		free(c->index);
		c->index = index;
		c->index_size = size;
	}
	return 0;
}

static int cache_put(struct crash_disk *c, uint64_t blkno, const uint8_t *data)
{
	uint8_t *copy = block_alloc(BDEV_BLOCK_SIZE);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, data, BDEV_BLOCK_SIZE);
	struct cached_block *cb = cache_find(c, blkno);
	if (!cb) {
		if (cache_reserve(c) < 0) {
			free(copy);
			return -ENOMEM;
		}
		cb = &c->cache[c->ncached++];
		*cb = (struct cached_block){ .blkno = blkno };
		index_insert(c->index, c->index_size, blkno, (uint32_t)c->ncached);
	}
	if (cb->nversions == MAX_VERSIONS) {
		free(cb->versions[0]);
		memmove(cb->versions, cb->versions + 1, (MAX_VERSIONS - 1) * sizeof(cb->versions[0]));
		cb->nversions--;
	}
	cb->versions[cb->nversions++] = copy;
	return 0;
}

static void cache_clear(struct crash_disk *c)
{
	for (size_t i = 0; i < c->ncached; i++)
		for (unsigned v = 0; v < c->cache[i].nversions; v++)
			free(c->cache[i].versions[v]);
	c->ncached = 0;
	if (c->index)
		memset(c->index, 0, c->index_size * sizeof(*c->index));
}

/* ---- power ----------------------------------------------------------------- */

/* Power cut: each cached block independently reaches the platter (as one of
 * its versions) with keep_percent probability. Called with the lock held. */
static void crash_locked(struct crash_disk *c)
{
	if (c->crashed)
		return;
	c->crashed = true;
	if (c->clock)
		atomic_store(&c->clock->crashed, true);
	for (size_t i = 0; i < c->ncached; i++) {
		struct cached_block *cb = &c->cache[i];
		if (prng_below(&c->rng, 100) >= c->keep_percent)
			continue;
		uint8_t *survivor = cb->versions[prng_below(&c->rng, cb->nversions)];
		int rc = bdev_write(c->backing, cb->blkno, survivor, 1);
		if (rc < 0)
			cat_log(CAT_LOG_WARN, "%s: crash image: block %llu not written (error %d)",
				c->b.name, (unsigned long long)cb->blkno, rc);
	}
	int rc = bdev_flush(c->backing);
	if (rc < 0)
		cat_log(CAT_LOG_WARN, "%s: crash image: flush failed (error %d)", c->b.name, rc);
	cache_clear(c);
}

/* Start an operation: -EIO if the power is off (or goes off now). */
static int op_begin(struct crash_disk *c)
{
	if (c->crashed)
		return -EIO;
	if (clock_tick(c->clock)) {
		crash_locked(c);
		return -EIO;
	}
	return 0;
}

/* Write the newest value of every cached block to the platter. */
static int write_back_locked(struct crash_disk *c)
{
	for (size_t i = 0; i < c->ncached; i++) {
		struct cached_block *cb = &c->cache[i];
		int rc = bdev_write(c->backing, cb->blkno, cb->versions[cb->nversions - 1], 1);
		if (rc < 0)
			return rc;
	}
	int rc = bdev_flush(c->backing);
	if (rc < 0)
		return rc;
	cache_clear(c);
	return 0;
}

/* ---- bdev ops ---------------------------------------------------------------- */

static int crash_readv(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt)
{
	struct crash_disk *c = to_crash(d);
	pthread_mutex_lock(&c->lock);
	int rc = op_begin(c);
	for (int i = 0; i < iovcnt && !rc; i++) {
		uint8_t *buf = iov[i].iov_base;
		for (size_t off = 0; off < iov[i].iov_len && !rc; off += BDEV_BLOCK_SIZE) {
			struct cached_block *cb = cache_find(c, blkno);
			if (cb)
				memcpy(buf + off, cb->versions[cb->nversions - 1], BDEV_BLOCK_SIZE);
			else
				rc = bdev_read(c->backing, blkno, buf + off, 1);
			blkno++;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static int crash_writev(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt)
{
	struct crash_disk *c = to_crash(d);
	pthread_mutex_lock(&c->lock);
	int rc = op_begin(c);
	for (int i = 0; i < iovcnt && !rc; i++) {
		const uint8_t *buf = iov[i].iov_base;
		for (size_t off = 0; off < iov[i].iov_len && !rc; off += BDEV_BLOCK_SIZE)
			rc = cache_put(c, blkno++, buf + off);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static int crash_flush(struct bdev *d)
{
	struct crash_disk *c = to_crash(d);
	pthread_mutex_lock(&c->lock);
	int rc = op_begin(c);
	if (!rc)
		rc = write_back_locked(c);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* Closing without a crash is a clean shutdown: the drive writes its cache
 * out. A disk whose clock has crashed loses power first. */
static void crash_close(struct bdev *d)
{
	struct crash_disk *c = to_crash(d);
	pthread_mutex_lock(&c->lock);
	if (!c->crashed && c->clock && atomic_load(&c->clock->crashed))
		crash_locked(c);
	if (!c->crashed) {
		int rc = write_back_locked(c);
		if (rc < 0)
			cat_log(CAT_LOG_WARN, "%s: write-back at close failed (error %d)", d->name, rc);
	}
	cache_clear(c);
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_destroy(&c->lock);
	free(c->cache);
	free(c->index);
	free(c);
}

static const struct bdev_ops crash_disk_ops = {
	.readv = crash_readv,
	.writev = crash_writev,
	.flush = crash_flush,
	.close = crash_close,
};

struct bdev *crash_disk_create(struct bdev *backing, struct crash_clock *clock,
			       uint64_t seed, unsigned keep_percent)
{
	if (!backing)
		return NULL;
	struct crash_disk *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	if (pthread_mutex_init(&c->lock, NULL)) {
		free(c);
		return NULL;
	}
	c->b.ops = &crash_disk_ops;
	c->b.nblocks = backing->nblocks;
	snprintf(c->b.name, sizeof(c->b.name), "crash(%.240s)", backing->name);
	c->backing = backing;
	c->clock = clock;
	c->keep_percent = keep_percent > 100 ? 100 : keep_percent;
	prng_seed(&c->rng, seed);
	return &c->b;
}

void crash_disk_crash(struct bdev *d)
{
	struct crash_disk *c = to_crash(d);
	pthread_mutex_lock(&c->lock);
	crash_locked(c);
	pthread_mutex_unlock(&c->lock);
}

/* A disk whose clock has crashed has lost power even if it has not been
 * used since: apply its crash now. */
bool crash_disk_crashed(struct bdev *d)
{
	struct crash_disk *c = to_crash(d);
	pthread_mutex_lock(&c->lock);
	if (!c->crashed && c->clock && atomic_load(&c->clock->crashed))
		crash_locked(c);
	bool crashed = c->crashed;
	pthread_mutex_unlock(&c->lock);
	return crashed;
}

uint64_t crash_disk_unflushed(struct bdev *d)
{
	struct crash_disk *c = to_crash(d);
	pthread_mutex_lock(&c->lock);
	uint64_t n = c->ncached;
	pthread_mutex_unlock(&c->lock);
	return n;
}
