/*
 * bcache.c - block cache: a hash of buffers by block number and an LRU list
 * of the unreferenced ones. See bcache.h for the contract.
 *
 * A miss inserts a buffer marked loading, drops the mutex for the read, and
 * wakes waiters when done. Eviction frees LRU buffers (unreferenced, not in
 * a transaction) while the cache is above its bound; referenced or pinned
 * buffers may push it above the bound temporarily.
 */
#include "core/fs/bcache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/bdev.h"
#include "core/base/util.h"
#include "core/fs/layout.h"

struct bcache {
	struct bdev *dev;
	pthread_mutex_t mu;
	pthread_cond_t loaded;
	struct buf **hash;
	size_t nhash;
	struct buf lru;            /* sentinel: lru.lru_next is the oldest */
	size_t nbufs, max_bufs;
	bcache_miss_fn miss;
	void *miss_arg;
	uint64_t hits, misses, evictions;
};

static size_t slot_of(const struct bcache *c, uint64_t blkno)
{
	return (size_t)((blkno * 0x9e3779b97f4a7c15ull) >> 20) % c->nhash;
}

int bcache_create(struct bdev *dev, size_t max_bytes, struct bcache **out)
{
	struct bcache *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->dev = dev;
	c->max_bufs = max_bytes / FS_BLOCK_SIZE;
	if (c->max_bufs < 256)
		c->max_bufs = 256;
	c->nhash = c->max_bufs * 2 + 1;
	c->hash = calloc(c->nhash, sizeof(*c->hash));
	if (!c->hash) {
		free(c);
		return -ENOMEM;
	}
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->loaded, NULL);
	c->lru.lru_next = c->lru.lru_prev = &c->lru;
	*out = c;
	return 0;
}

static void lru_unlink(struct buf *b)
{
	if (b->lru_next) {
		b->lru_prev->lru_next = b->lru_next;
		b->lru_next->lru_prev = b->lru_prev;
		b->lru_next = b->lru_prev = NULL;
	}
}

static void lru_append(struct bcache *c, struct buf *b)
{
	b->lru_prev = c->lru.lru_prev;
	b->lru_next = &c->lru;
	c->lru.lru_prev->lru_next = b;
	c->lru.lru_prev = b;
}

static void hash_remove(struct bcache *c, struct buf *b)
{
	struct buf **pp = &c->hash[slot_of(c, b->blkno)];
	while (*pp != b)
		pp = &(*pp)->hnext;
	*pp = b->hnext;
}

static void free_detached(struct bcache *c, struct buf *b)
{
	pthread_mutex_destroy(&b->lock);
	free(b->data);
	free(b);
	c->nbufs--;
}

static void buf_free(struct bcache *c, struct buf *b)
{
	lru_unlink(b);
	hash_remove(c, b);
	free_detached(c, b);
}

/* Free unreferenced, unpinned buffers from the LRU head while above bound. */
static void evict(struct bcache *c)
{
	struct buf *b = c->lru.lru_next;
	while (c->nbufs > c->max_bufs && b != &c->lru) {
		struct buf *next = b->lru_next;
		if (b->refs == 0) {
			buf_free(c, b);
			c->evictions++;
		}
		b = next;
	}
}

void bcache_destroy(struct bcache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nhash; i++)
		while (c->hash[i])
			buf_free(c, c->hash[i]);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->loaded);
	free(c->hash);
	free(c);
}

void bcache_set_miss_hook(struct bcache *c, bcache_miss_fn fn, void *arg)
{
	pthread_mutex_lock(&c->mu);
	c->miss = fn;
	c->miss_arg = arg;
	pthread_mutex_unlock(&c->mu);
}

static struct buf *find(struct bcache *c, uint64_t blkno)
{
	for (struct buf *b = c->hash[slot_of(c, blkno)]; b; b = b->hnext)
		if (b->blkno == blkno)
			return b;
	return NULL;
}

static struct buf *insert_new(struct bcache *c, uint64_t blkno)
{
	struct buf *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->data = block_alloc(FS_BLOCK_SIZE);
	if (!b->data) {
		free(b);
		return NULL;
	}
	pthread_mutex_init(&b->lock, NULL);
	b->blkno = blkno;
	b->refs = 1;
	size_t s = slot_of(c, blkno);
	b->hnext = c->hash[s];
	c->hash[s] = b;
	c->nbufs++;
	evict(c);
	return b;
}

/* Take a reference on a cached buffer (mu held): off the LRU while used. */
static void take(struct buf *b)
{
	if (b->refs++ == 0)
		lru_unlink(b);
}

static int load(struct bcache *c, struct buf *b)
{
	int r = 0;
	if (!c->miss || c->miss(c->miss_arg, b->blkno, b->data) == 0)
		r = bdev_read(c->dev, b->blkno, b->data, 1);
	return r;
}

int bcache_read(struct bcache *c, uint64_t blkno, struct buf **out)
{
	pthread_mutex_lock(&c->mu);
	for (;;) {
		struct buf *b = find(c, blkno);
		if (!b)
			break;
		take(b);
		while (b->loading)
			pthread_cond_wait(&c->loaded, &c->mu);
		if (b->valid) {
			c->hits++;
			pthread_mutex_unlock(&c->mu);
			*out = b;
			return 0;
		}
		/* Its load failed and it was detached: try again ourselves. */
		if (--b->refs == 0)
			free_detached(c, b);
	}
	struct buf *b = insert_new(c, blkno);
	if (!b) {
		pthread_mutex_unlock(&c->mu);
		return -ENOMEM;
	}
	b->loading = true;
	c->misses++;
	pthread_mutex_unlock(&c->mu);
	int r = load(c, b);
	pthread_mutex_lock(&c->mu);
	b->loading = false;
	b->valid = r == 0;
	pthread_cond_broadcast(&c->loaded);
	if (r) {
		hash_remove(c, b);      /* detached: the last reference frees it */
		if (--b->refs == 0)
			free_detached(c, b);
	}
	pthread_mutex_unlock(&c->mu);
	if (r)
		return r;
	*out = b;
	return 0;
}

int bcache_get_zeroed(struct bcache *c, uint64_t blkno, struct buf **out)
{
	pthread_mutex_lock(&c->mu);
	struct buf *b = find(c, blkno);
	if (b) {
		take(b);
		while (b->loading)
			pthread_cond_wait(&c->loaded, &c->mu);
	} else {
		b = insert_new(c, blkno);
		if (!b) {
			pthread_mutex_unlock(&c->mu);
			return -ENOMEM;
		}
	}
	memset(b->data, 0, FS_BLOCK_SIZE);
	b->valid = true;
	pthread_mutex_unlock(&c->mu);
	*out = b;
	return 0;
}

void bcache_hold(struct bcache *c, struct buf *b)
{
	pthread_mutex_lock(&c->mu);
	take(b);
	pthread_mutex_unlock(&c->mu);
}

void bcache_release(struct bcache *c, struct buf *b)
{
	if (!b)
		return;
	pthread_mutex_lock(&c->mu);
	if (--b->refs == 0) {
		lru_append(c, b);
		evict(c);
	}
	pthread_mutex_unlock(&c->mu);
}

void bcache_drop(struct bcache *c, uint64_t blkno)
{
	pthread_mutex_lock(&c->mu);
	struct buf *b = find(c, blkno);
	if (b && b->refs == 0 && !b->loading)
		buf_free(c, b);
	pthread_mutex_unlock(&c->mu);
}

void bcache_get_stats(struct bcache *c, struct bcache_stats *st)
{
	pthread_mutex_lock(&c->mu);
	st->hits = c->hits;
	st->misses = c->misses;
	st->evictions = c->evictions;
	st->buffers = c->nbufs;
	st->bytes = (uint64_t)c->nbufs * FS_BLOCK_SIZE;
	st->max_bytes = (uint64_t)c->max_bufs * FS_BLOCK_SIZE;
	pthread_mutex_unlock(&c->mu);
}
