/*
 * bcache.h - the block cache between the filesystem and its bdev.
 *
 * Every metadata and data block the filesystem touches goes through here.
 * A buffer is identified by its block number; there is at most one buffer
 * per block. bcache_read() returns it referenced and with valid contents;
 * bcache_release() drops the reference. Clean, unreferenced buffers are
 * evicted in LRU order once the cache holds more than its memory bound.
 *
 * The cache never writes: blocks reach the disk only through the journal
 * (journal.h), which commits a copy of each modified buffer to the log and
 * later checkpoints it home. While a modified block is committed but not yet
 * home, its newest committed contents live in the journal's checkpoint set;
 * the journal installs a miss hook so that a cache miss reads from there
 * instead of from the (stale) home block.
 *
 * Buffer contents: the caller serialises modifications of one buffer. Inode
 * table blocks are shared by unrelated inodes, so modifications of those
 * take buf_lock(); everything else is protected by the lock of the inode
 * that owns the block (see fs.h's lock order).
 *
 * Locking: one cache mutex protects the hash table, LRU and reference counts;
 * it is never held across I/O. A buffer being read is marked loading; other
 * readers wait on the cache's condition variable.
 *
 * Errors: -EIO (or the bdev's error) from a read; the buffer is then
 * dropped, so a later read retries. -ENOMEM.
 */
#ifndef CAT_FS_BCACHE_H
#define CAT_FS_BCACHE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bdev;
struct bcache;

struct buf {
	uint64_t blkno;
	uint8_t *data;            /* FS_BLOCK_SIZE bytes, 4 KiB aligned */
	pthread_mutex_t lock;     /* buf_lock(): content of shared blocks */
	/* Owned by the journal (under its mutex): the running transaction
	 * this buffer has joined, 0 if none. A buffer with tx_seq != 0 is
	 * pinned (not evictable). */
	uint64_t tx_seq;
	/* Private to bcache.c. */
	struct buf *hnext, *lru_prev, *lru_next;
	uint32_t refs;
	bool loading, valid;
};

/* Called on a miss before reading from the device: return 1 after filling
 * dst with the block's contents, 0 to read it from the device. */
typedef int (*bcache_miss_fn)(void *arg, uint64_t blkno, void *dst);

int bcache_create(struct bdev *dev, size_t max_bytes, struct bcache **out);
void bcache_destroy(struct bcache *c);   /* every buffer must be released */
void bcache_set_miss_hook(struct bcache *c, bcache_miss_fn fn, void *arg);

int bcache_read(struct bcache *c, uint64_t blkno, struct buf **out);
/* A buffer for a newly allocated block: contents zeroed, nothing read. */
int bcache_get_zeroed(struct bcache *c, uint64_t blkno, struct buf **out);
void bcache_hold(struct bcache *c, struct buf *b); /* another reference */
void bcache_release(struct bcache *c, struct buf *b);
/* Forget a cached block if unreferenced (the block was freed). */
void bcache_drop(struct bcache *c, uint64_t blkno);

static inline void buf_lock(struct buf *b) { pthread_mutex_lock(&b->lock); }
static inline void buf_unlock(struct buf *b) { pthread_mutex_unlock(&b->lock); }

struct bcache_stats {
	uint64_t hits, misses, evictions, buffers, bytes, max_bytes;
};
void bcache_get_stats(struct bcache *c, struct bcache_stats *st);

#endif
