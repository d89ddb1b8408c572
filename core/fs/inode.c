/*
 * inode.c - in-memory inodes, block maps, allocation and orphans
 * (contract: inode.h).
 *
 * The in-memory inode lives while anybody counts it (refs, lookups, opens)
 * and is decoded afresh from its inode-table block when it comes back; the
 * block cache keeps that cheap. Bitmaps are searched from a rotating hint,
 * one bitmap block at a time, under the allocator mutex.
 */
#include "core/fs/inode.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fs/dir.h"
#include "core/fs/fs_internal.h"

#define BITS_PER_BLOCK (FS_BLOCK_SIZE * 8u)

/* ---- the in-memory inode table ---- */

static size_t ihash_slot(const struct fs *fs, uint64_t ino)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> 20) % fs->ihash_size;
}

static struct inode *ihash_find(struct fs *fs, uint64_t ino)
{
	for (struct inode *ip = fs->ihash[ihash_slot(fs, ino)]; ip; ip = ip->hnext)
		if (ip->ino == ino)
			return ip;
	return NULL;
}

static void itable_pos(const struct fs *fs, uint64_t ino, uint64_t *blk, size_t *off)
{
	*blk = fs->sb.itable_start + ino / FS_INODES_PER_BLOCK;
	*off = (size_t)(ino % FS_INODES_PER_BLOCK) * FS_INODE_SIZE;
}

/* 1 if the inode bitmap has ino in use, 0 if not, or -errno. */
static int inode_allocated(struct fs *fs, uint64_t ino)
{
	struct buf *b;
	int r = bcache_read(fs->cache, fs->sb.ibitmap_start + ino / BITS_PER_BLOCK, &b);
	if (r)
		return r;
	pthread_mutex_lock(&fs->alloc_lock);        /* bitmap bytes change under it */
	r = (b->data[(ino % BITS_PER_BLOCK) / 8] >> (ino % 8)) & 1;
	pthread_mutex_unlock(&fs->alloc_lock);
	bcache_release(fs->cache, b);
	return r;
}

int inode_get(struct fs *fs, uint64_t ino, struct inode **out)
{
	if (ino == 0 || ino >= fs->sb.ninodes)
		return -ENOENT;
	pthread_mutex_lock(&fs->itable_lock);
	struct inode *ip = ihash_find(fs, ino);
	if (ip) {
		bool dead = ip->dead;
		if (!dead) {
			ip->refs++;
			*out = ip;
		}
		pthread_mutex_unlock(&fs->itable_lock);
		return dead ? -ENOENT : 0;
	}
	pthread_mutex_unlock(&fs->itable_lock);

	uint64_t blk;
	size_t off;
	itable_pos(fs, ino, &blk, &off);
	struct buf *b;
	int r = bcache_read(fs->cache, blk, &b);
	if (r)
		return r;
	struct fs_inode d;
	buf_lock(b);
	r = fs_inode_decode(b->data + off, &d);
	buf_unlock(b);
	bcache_release(fs->cache, b);
	if (r)     /* a slot never written (format does not zero the table)? */
		return inode_allocated(fs, ino) == 0 ? -ENOENT : fs_corrupt(fs, "inode", ino);
	if (d.mode == 0)
		return -ENOENT;

	struct inode *n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->ino = ino;
	n->d = d;
	pthread_mutex_init(&n->lock, NULL);
	pthread_mutex_lock(&fs->itable_lock);
	ip = ihash_find(fs, ino);        /* somebody was quicker */
	if (ip) {
		bool dead = ip->dead;
		if (!dead) {
			ip->refs++;
			*out = ip;
		}
		pthread_mutex_unlock(&fs->itable_lock);
		pthread_mutex_destroy(&n->lock);
		free(n);
		return dead ? -ENOENT : 0;
	}
	n->refs = 1;
	n->hashed = true;
	size_t s = ihash_slot(fs, ino);
	n->hnext = fs->ihash[s];
	fs->ihash[s] = n;
	fs->inodes_cached++;
	pthread_mutex_unlock(&fs->itable_lock);
	*out = n;
	return 0;
}

static void ihash_remove(struct fs *fs, struct inode *ip);

/* Insert an inode just created in memory (alloc_inode gave the number). */
int inode_get_new(struct fs *fs, uint64_t ino, const struct fs_inode *d, struct inode **out)
{
	struct inode *n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->ino = ino;
	n->d = *d;
	n->refs = 1;
	n->hashed = true;
	pthread_mutex_init(&n->lock, NULL);
	pthread_mutex_lock(&fs->itable_lock);
	struct inode *old = ihash_find(fs, ino);
	if (old && old->dead) {
		/* The number was freed and reused while somebody still holds
		 * the dead inode: it leaves the table; its last put frees it. */
		ihash_remove(fs, old);
		old->hashed = false;
	} else if (old) {
		pthread_mutex_unlock(&fs->itable_lock);
		pthread_mutex_destroy(&n->lock);
		free(n);
		return fs_corrupt(fs, "inode (allocated twice)", ino);
	}
	size_t s = ihash_slot(fs, ino);
	n->hnext = fs->ihash[s];
	fs->ihash[s] = n;
	fs->inodes_cached++;
	pthread_mutex_unlock(&fs->itable_lock);
	*out = n;
	return 0;
}

static void ihash_remove(struct fs *fs, struct inode *ip)
{
	ip->hashed = false;
	struct inode **pp = &fs->ihash[ihash_slot(fs, ip->ino)];
	while (*pp != ip)
		pp = &(*pp)->hnext;
	*pp = ip->hnext;
	fs->inodes_cached--;
}

void inode_mark_dead(struct fs *fs, struct inode *ip)
{
	pthread_mutex_lock(&fs->itable_lock);
	ip->dead = true;
	pthread_mutex_unlock(&fs->itable_lock);
}

void inode_put(struct fs *fs, struct inode *ip)
{
	if (!ip)
		return;
	pthread_mutex_lock(&fs->itable_lock);
	bool last = --ip->refs == 0 && (!ip->hashed || (ip->lookups == 0 && ip->opens == 0));
	if (last && ip->hashed)
		ihash_remove(fs, ip);
	pthread_mutex_unlock(&fs->itable_lock);
	if (last) {
		pthread_mutex_destroy(&ip->lock);
		free(ip);
	}
}

int inode_update(struct fs *fs, struct tx *tx, struct inode *ip)
{
	uint64_t blk;
	size_t off;
	itable_pos(fs, ip->ino, &blk, &off);
	struct buf *b;
	int r = bcache_read(fs->cache, blk, &b);
	if (r)
		return r;
	tx_add(tx, b);
	buf_lock(b);
	fs_inode_encode(&ip->d, b->data + off);
	buf_unlock(b);
	bcache_release(fs->cache, b);
	ip->last_seq = tx->seq;
	return 0;
}

/* ---- allocation ---- */

/* Find and set a clear bit in [first, first + nbits) of the bitmap starting
 * at block `start`, beginning the search at hint. alloc_lock held. */
static int bitmap_alloc(struct fs *fs, struct tx *tx, uint64_t start, uint64_t nbits,
			uint64_t first, uint64_t hint, uint64_t *out)
{
	if (hint < first || hint >= nbits)
		hint = first;
	uint64_t nblk = (nbits + BITS_PER_BLOCK - 1) / BITS_PER_BLOCK;
	uint64_t hb = hint / BITS_PER_BLOCK;
	for (uint64_t k = 0; k <= nblk; k++) {
		uint64_t bi = (hb + k) % nblk;
		struct buf *b;
		int r = bcache_read(fs->cache, start + bi, &b);
		if (r)
			return r;
		uint64_t lo = bi * BITS_PER_BLOCK, hi = lo + BITS_PER_BLOCK;
		if (hi > nbits)
			hi = nbits;
		uint64_t from = (k == 0 && hint > lo) ? hint : lo;
		if (from < first)
			from = first;
		for (uint64_t bit = from; bit < hi; bit++) {
			uint8_t *byte = &b->data[(bit - lo) / 8];
			if (*byte == 0xff) {
				bit |= 7;
				continue;
			}
			if (!(*byte & (1u << (bit % 8)))) {
				tx_add(tx, b);
				*byte |= (uint8_t)(1u << (bit % 8));
				bcache_release(fs->cache, b);
				*out = bit;
				return 0;
			}
		}
		bcache_release(fs->cache, b);
	}
	return -ENOSPC;
}

static int bitmap_free(struct fs *fs, struct tx *tx, uint64_t start, uint64_t bit,
		       const char *what)
{
	struct buf *b;
	int r = bcache_read(fs->cache, start + bit / BITS_PER_BLOCK, &b);
	if (r)
		return r;
	uint8_t *byte = &b->data[(bit % BITS_PER_BLOCK) / 8];
	uint8_t mask = (uint8_t)(1u << (bit % 8));
	if (!(*byte & mask)) {
		bcache_release(fs->cache, b);
		return fs_corrupt(fs, what, bit);     /* freeing a free one */
	}
	tx_add(tx, b);
	*byte &= (uint8_t)~mask;
	bcache_release(fs->cache, b);
	return 0;
}

int alloc_block(struct fs *fs, struct tx *tx, uint64_t goal, uint64_t *out)
{
	pthread_mutex_lock(&fs->alloc_lock);
	int r = -ENOSPC;
	if (fs->free_blocks > 0)
		r = bitmap_alloc(fs, tx, fs->sb.bbitmap_start, fs->sb.nblocks,
				 fs->sb.data_start, goal ? goal : fs->block_hint, out);
	if (!r) {
		fs->free_blocks--;
		fs->block_hint = *out + 1;
	}
	pthread_mutex_unlock(&fs->alloc_lock);
	return r;
}

int free_block(struct fs *fs, struct tx *tx, uint64_t blkno)
{
	if (blkno < fs->sb.data_start || blkno >= fs->sb.nblocks)
		return fs_corrupt(fs, "block pointer", blkno);
	pthread_mutex_lock(&fs->alloc_lock);
	int r = bitmap_free(fs, tx, fs->sb.bbitmap_start, blkno, "block bitmap (double free)");
	if (!r)
		fs->free_blocks++;
	pthread_mutex_unlock(&fs->alloc_lock);
	bcache_drop(fs->cache, blkno);
	return r;
}

int alloc_inode(struct fs *fs, struct tx *tx, uint64_t *ino)
{
	pthread_mutex_lock(&fs->alloc_lock);
	int r = -ENOSPC;
	if (fs->free_inodes > 0)
		r = bitmap_alloc(fs, tx, fs->sb.ibitmap_start, fs->sb.ninodes,
				 FS_ORPHAN_INO + 1, fs->inode_hint, ino);
	if (!r) {
		fs->free_inodes--;
		fs->inode_hint = *ino + 1;
	}
	pthread_mutex_unlock(&fs->alloc_lock);
	return r;
}

int free_inode(struct fs *fs, struct tx *tx, uint64_t ino)
{
	pthread_mutex_lock(&fs->alloc_lock);
	int r = bitmap_free(fs, tx, fs->sb.ibitmap_start, ino, "inode bitmap (double free)");
	if (!r)
		fs->free_inodes++;
	pthread_mutex_unlock(&fs->alloc_lock);
	return r;
}

/* ---- block map ---- */

static uint64_t fanout_pow(unsigned h)
{
	uint64_t v = 1;
	while (h--)
		v *= FS_INDEX_FANOUT;
	return v;
}

static unsigned height_for(uint64_t n)   /* levels needed for tree index n */
{
	unsigned h = 1;
	while (h < FS_MAX_HEIGHT && n >= fanout_pow(h))
		h++;
	return n < fanout_pow(h) ? h : FS_MAX_HEIGHT + 1;
}

/* Allocate a block and hand back its zeroed buffer, joined to tx. */
static int new_block(struct fs *fs, struct tx *tx, struct inode *ip, bool index,
		     uint64_t *blkno, struct buf **out)
{
	int r = alloc_block(fs, tx, 0, blkno);
	if (r)
		return r;
	struct buf *b;
	if ((r = bcache_get_zeroed(fs->cache, *blkno, &b)))
		return r;
	tx_add(tx, b);
	if (index)
		fs_index_init(b->data);
	ip->d.blocks++;
	if (out)
		*out = b;
	else
		bcache_release(fs->cache, b);
	return 0;
}

static int read_index(struct fs *fs, struct inode *ip, uint64_t blkno, struct buf **out)
{
	if (blkno < fs->sb.data_start || blkno >= fs->sb.nblocks)
		return fs_corrupt(fs, "index pointer of inode", ip->ino);
	int r = bcache_read(fs->cache, blkno, out);
	if (r)
		return r;
	if (fs_index_check((*out)->data)) {
		bcache_release(fs->cache, *out);
		return fs_corrupt(fs, "index block of inode", ip->ino);
	}
	return 0;
}

/* Make the tree tall enough for `need` levels (alloc only). */
static int grow_tree(struct fs *fs, struct tx *tx, struct inode *ip, unsigned need)
{
	while (ip->d.height < need) {
		uint64_t nb;
		struct buf *b;
		int r = new_block(fs, tx, ip, true, &nb, &b);
		if (r)
			return r;
		if (!ip->d.root) {               /* first tree block: any height */
			bcache_release(fs->cache, b);
			ip->d.root = nb;
			ip->d.height = need;
			return 0;
		}
		fs_index_set(b->data, 0, ip->d.root);   /* old root covers [0, 511^h) */
		fs_index_seal(b->data);
		bcache_release(fs->cache, b);
		ip->d.root = nb;
		ip->d.height++;
	}
	return 0;
}

/* Walk the tree to the pointer for tree index n; *fresh set when the data
 * block was allocated now. */
static int tree_map(struct fs *fs, struct tx *tx, struct inode *ip, uint64_t n,
		    bool alloc, uint64_t *pblk, bool *fresh)
{
	uint64_t cur = ip->d.root;
	for (unsigned level = ip->d.height; level-- > 0;) {
		struct buf *b;
		int r = read_index(fs, ip, cur, &b);
		if (r)
			return r;
		unsigned i = (unsigned)((n / fanout_pow(level)) % FS_INDEX_FANOUT);
		uint64_t next = fs_index_get(b->data, i);
		if (!next && alloc) {
			tx_add(tx, b);
			r = new_block(fs, tx, ip, level > 0, &next, NULL);
			if (!r) {
				fs_index_set(b->data, i, next);
				fs_index_seal(b->data);
				*fresh = level == 0;
			}
		}
		bcache_release(fs->cache, b);
		if (r)
			return r;
		if (!next) {
			*pblk = 0;
			return 0;
		}
		cur = next;
	}
	*pblk = cur;
	return 0;
}

static int bmap(struct fs *fs, struct tx *tx, struct inode *ip, uint64_t lblk,
		bool alloc, uint64_t *pblk, bool *fresh)
{
	*fresh = false;
	if (lblk < FS_NDIRECT) {
		*pblk = ip->d.direct[lblk];
		if (*pblk || !alloc)
			return 0;
		int r = new_block(fs, tx, ip, false, pblk, NULL);
		if (r)
			return r;
		ip->d.direct[lblk] = *pblk;
		*fresh = true;
		return inode_update(fs, tx, ip);
	}
	uint64_t n = lblk - FS_NDIRECT;
	unsigned need = height_for(n);
	if (need > FS_MAX_HEIGHT)
		return -EFBIG;
	if (ip->d.height < need) {
		if (!alloc) {
			*pblk = 0;
			return 0;
		}
		int r = grow_tree(fs, tx, ip, need);
		if (r)
			return r;
	}
	uint64_t blocks_before = ip->d.blocks;
	int r = tree_map(fs, tx, ip, n, alloc, pblk, fresh);
	if (!r && alloc && (ip->d.blocks != blocks_before || *fresh))
		r = inode_update(fs, tx, ip);
	if (!r && *pblk && (*pblk < fs->sb.data_start || *pblk >= fs->sb.nblocks))
		return fs_corrupt(fs, "data pointer of inode", ip->ino);
	return r;
}

int inode_bmap(struct fs *fs, struct tx *tx, struct inode *ip, uint64_t lblk,
	       bool alloc, uint64_t *pblk)
{
	bool fresh;
	return bmap(fs, tx, ip, lblk, alloc, pblk, &fresh);
}

int inode_block(struct fs *fs, struct tx *tx, struct inode *ip, uint64_t lblk,
		bool alloc, struct buf **out)
{
	uint64_t pblk;
	bool fresh;
	*out = NULL;
	int r = bmap(fs, tx, ip, lblk, alloc, &pblk, &fresh);
	if (r || !pblk)
		return r;
	if (fresh) {
		/* new_block left a zeroed buffer in the cache, joined to tx */
		r = bcache_read(fs->cache, pblk, out);
		return r;
	}
	if (pblk < fs->sb.data_start || pblk >= fs->sb.nblocks)
		return fs_corrupt(fs, "data pointer of inode", ip->ino);
	r = bcache_read(fs->cache, pblk, out);
	if (!r && alloc)
		tx_add(tx, *out);
	return r;
}

/* ---- freeing ranges ---- */

struct free_ctx {
	struct fs *fs;
	struct tx *tx;
	struct inode *ip;
	uint64_t from;      /* first tree index to free */
	unsigned budget;
};

/* Free the subtree under index block blkno (level >= 1) covering tree
 * indexes [base, base + 511^level). Returns 1 if it is now empty. */
static int free_subtree(struct free_ctx *c, uint64_t blkno, unsigned level, uint64_t base)
{
	struct buf *b;
	int r = read_index(c->fs, c->ip, blkno, &b);
	if (r)
		return r;
	uint64_t span = fanout_pow(level - 1);
	bool empty = true;
	for (unsigned i = 0; i < FS_INDEX_FANOUT; i++) {
		uint64_t ptr = fs_index_get(b->data, i), lo = base + i * span;
		if (!ptr)
			continue;
		if (lo + span <= c->from || c->budget == 0) {
			empty = false;
			continue;
		}
		int gone = 1;
		if (level > 1 && (gone = free_subtree(c, ptr, level - 1, lo)) < 0) {
			r = gone;
			break;
		}
		if (gone) {
			if ((r = free_block(c->fs, c->tx, ptr)))
				break;
			c->budget--;
			c->ip->d.blocks--;
			tx_add(c->tx, b);
			fs_index_set(b->data, i, 0);
			fs_index_seal(b->data);
		} else {
			empty = false;
		}
	}
	bcache_release(c->fs->cache, b);
	return r ? r : empty;
}

int inode_free_range(struct fs *fs, struct tx *tx, struct inode *ip,
		     uint64_t from_lblk, unsigned max_blocks, bool *done)
{
	struct free_ctx c = { fs, tx, ip, 0, max_blocks };
	int r = 0;
	for (uint64_t l = from_lblk; l < FS_NDIRECT && c.budget; l++) {
		if (!ip->d.direct[l])
			continue;
		if ((r = free_block(fs, tx, ip->d.direct[l])))
			return r;
		ip->d.direct[l] = 0;
		ip->d.blocks--;
		c.budget--;
	}
	c.from = from_lblk > FS_NDIRECT ? from_lblk - FS_NDIRECT : 0;
	if (ip->d.root && c.budget) {
		int empty = free_subtree(&c, ip->d.root, ip->d.height, 0);
		if (empty < 0)
			return empty;
		if (empty && c.from == 0) {
			if ((r = free_block(fs, tx, ip->d.root)))
				return r;
			ip->d.blocks--;
			ip->d.root = 0;
			ip->d.height = 0;
		}
	}
	*done = c.budget > 0;
	return inode_update(fs, tx, ip);
}

unsigned inode_free_credits(unsigned max_blocks)
{
	return 2 * max_blocks + 2 * FS_MAX_HEIGHT + 2;
}

/* ---- orphans ---- */

static void orphan_name(uint64_t ino, char *name, size_t len)
{
	snprintf(name, len, "%016" PRIx64, ino);
}

int orphan_add(struct fs *fs, struct tx *tx, struct inode *ip)
{
	char name[24];
	orphan_name(ip->ino, name, sizeof(name));
	struct inode *od = fs->orphans;
	pthread_mutex_lock(&od->lock);
	int r = dir_add(fs, tx, od, name, strlen(name), ip->ino, 0);
	if (r == -EEXIST)
		r = 0;                       /* already there (a truncation) */
	pthread_mutex_unlock(&od->lock);
	return r;
}

int orphan_remove(struct fs *fs, struct tx *tx, struct inode *ip)
{
	char name[24];
	orphan_name(ip->ino, name, sizeof(name));
	struct inode *od = fs->orphans;
	pthread_mutex_lock(&od->lock);
	uint64_t ino;
	uint8_t type;
	int r = dir_remove(fs, tx, od, name, strlen(name), &ino, &type);
	if (r == -ENOENT)
		r = 0;
	pthread_mutex_unlock(&od->lock);
	return r;
}

/* Free blocks at and beyond from_lblk, one transaction per step. */
static int free_blocks_from(struct fs *fs, struct inode *ip, uint64_t from_lblk)
{
	unsigned step = 256;
	while (step > 1 && inode_free_credits(step) > journal_max_credits(fs->j))
		step /= 2;
	bool done = false;
	while (!done) {
		struct tx tx;
		int r = tx_begin(fs->j, inode_free_credits(step), &tx);
		if (r)
			return r;
		r = inode_free_range(fs, &tx, ip, from_lblk, step, &done);
		tx_end(&tx);
		if (r)
			return r;
	}
	return 0;
}

int inode_reclaim(struct fs *fs, struct inode *ip)
{
	int r = free_blocks_from(fs, ip, 0);
	if (r)
		return r;
	struct tx tx;
	if ((r = tx_begin(fs->j, ORPHAN_CREDITS + 2 * INODE_UPDATE_CREDITS, &tx)))
		return r;
	/* Dead before its number is free: inode_get no longer hands it out,
	 * and a new inode of the same number replaces it in the table. */
	inode_mark_dead(fs, ip);
	uint32_t gen = ip->d.generation;
	memset(&ip->d, 0, sizeof(ip->d));
	ip->d.generation = gen;              /* kept for the next user */
	r = inode_update(fs, &tx, ip);
	if (!r)
		r = free_inode(fs, &tx, ip->ino);
	if (!r)
		r = orphan_remove(fs, &tx, ip);
	tx_end(&tx);
	return r;
}

int inode_finish_truncate(struct fs *fs, struct inode *ip)
{
	/* Only regular files are truncated; a directory here is damage
	 * (its size says nothing about its blocks): leave it for fsck. */
	if (!S_ISREG(ip->d.mode))
		return fs_corrupt(fs, "orphan entry (not a regular file, link count > 0)", ip->ino);
	uint64_t keep = (ip->d.size + FS_BLOCK_SIZE - 1) / FS_BLOCK_SIZE;
	int r = free_blocks_from(fs, ip, keep);
	if (r)
		return r;
	struct tx tx;
	if ((r = tx_begin(fs->j, ORPHAN_CREDITS, &tx)))
		return r;
	r = orphan_remove(fs, &tx, ip);
	tx_end(&tx);
	return r;
}
