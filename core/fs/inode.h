/*
 * inode.h - in-memory inodes, the block map of a file, and allocation.
 *
 * An inode in memory (struct inode) caches the decoded disk inode. It is
 * found through the inode table of struct fs (a hash by inode number) and
 * counted three ways:
 *   refs     - references held by code running now (inode_get/inode_put);
 *   lookups  - the FUSE lookup count (fs_lookup etc. add, fs_forget drops);
 *   opens    - open file handles.
 * A disk inode is freed (its blocks and its number) when nlink == 0 and
 * lookups == 0 and opens == 0; until then an unlinked inode is an entry of
 * the orphan directory (FS_ORPHAN_INO, hidden, entries named by inode
 * number in hex) so that the next mount can free it after a crash. A file
 * being truncated by more than one transaction sits there too (with
 * nlink > 0): mount then finishes the truncation.
 *
 * Block map: logical blocks 0..11 use inode.direct[]; logical block n >= 12
 * is found in a radix tree of index blocks (511 pointers each) of `height`
 * levels under inode.root. 0 is a hole. The tree grows a level at a time at
 * the top, so files are sparse and up to 12 + 511^4 blocks.
 *
 * Locking: ip->lock (a mutex) protects ip->d and the inode's blocks (block
 * map, data, directory buckets). Callers take it; functions here that take
 * `struct inode *` assume it is held unless they say otherwise. Writes to the
 * shared inode-table block take buf_lock() inside. The allocator has its
 * own mutex (innermost). The inode table's mutex (fs->itable_lock) protects
 * the hash and the refs/lookups/opens counts only.
 *
 * Credits: a function that modifies blocks inside a transaction states how
 * many blocks it may add (INODE_*_CREDITS); callers sum them for tx_begin.
 */
#ifndef CAT_FS_INODE_H
#define CAT_FS_INODE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/fs/layout.h"

struct fs;
struct tx;
struct buf;

struct inode {
	uint64_t ino;
	pthread_mutex_t lock;
	struct fs_inode d;        /* under lock */
	uint64_t last_seq;        /* newest tx that changed this inode (under lock) */
	bool dead;                /* disk inode freed: set under lock and
				     fs->itable_lock (inode_mark_dead) */
	/* Under fs->itable_lock. */
	bool hashed;              /* in the table (a dead inode whose number
				     was reused is not) */
	uint32_t refs, opens;
	uint64_t lookups;
	struct inode *hnext;
};

/* Blocks one inode_update adds. */
#define INODE_UPDATE_CREDITS 1u
/* Blocks one inode_block(alloc=true) may add: data block, up to
 * FS_MAX_HEIGHT+1 index blocks, their bitmap blocks, the inode. */
#define INODE_ALLOC_CREDITS (2u * (FS_MAX_HEIGHT + 2u) + 1u)

/* Get a referenced in-memory inode; loads (and checks) it from disk.
 * -ENOENT if the inode is free, -EUCLEAN if its crc or fields are bad. */
int inode_get(struct fs *fs, uint64_t ino, struct inode **out);
void inode_put(struct fs *fs, struct inode *ip);
/* The disk inode is being freed (ip->lock held): see struct inode.dead. */
void inode_mark_dead(struct fs *fs, struct inode *ip);

/* Insert a freshly allocated inode (its number from alloc_inode). */
int inode_get_new(struct fs *fs, uint64_t ino, const struct fs_inode *d, struct inode **out);

/* Write ip->d into its inode-table block inside tx; ip->last_seq = tx seq. */
int inode_update(struct fs *fs, struct tx *tx, struct inode *ip);

/* Map logical block lblk. alloc=false: *pblk = 0 for a hole. alloc=true
 * (tx required): allocate a zeroed block (and index blocks) if missing. */
int inode_bmap(struct fs *fs, struct tx *tx, struct inode *ip, uint64_t lblk,
	       bool alloc, uint64_t *pblk);
/* The buffer of logical block lblk (referenced). A hole with alloc=false
 * gives *out = NULL and returns 0. With alloc the buffer has joined tx. */
int inode_block(struct fs *fs, struct tx *tx, struct inode *ip, uint64_t lblk,
		bool alloc, struct buf **out);

/* Free every block at logical index >= from_lblk, at most max_blocks of
 * them in this call; *done = true once nothing is left beyond from_lblk.
 * Callers loop with one transaction per call (credits:
 * inode_free_credits(max_blocks)). Updates d.blocks, not d.size. */
int inode_free_range(struct fs *fs, struct tx *tx, struct inode *ip,
		     uint64_t from_lblk, unsigned max_blocks, bool *done);
unsigned inode_free_credits(unsigned max_blocks);

/* Allocation (block and inode bitmaps), inside tx. */
int alloc_block(struct fs *fs, struct tx *tx, uint64_t goal, uint64_t *out);
int free_block(struct fs *fs, struct tx *tx, uint64_t blkno);
int alloc_inode(struct fs *fs, struct tx *tx, uint64_t *ino);
int free_inode(struct fs *fs, struct tx *tx, uint64_t ino);
#define ALLOC_CREDITS 1u  /* one bitmap block per alloc/free */

/* Orphan directory. Called inside a transaction with ip->lock held; they
 * take the orphan directory's lock, a leaf lock that is only ever taken
 * inside transactions (so it never waits for tx_begin). */
int orphan_add(struct fs *fs, struct tx *tx, struct inode *ip);
int orphan_remove(struct fs *fs, struct tx *tx, struct inode *ip);
#define ORPHAN_CREDITS 96u  /* dir_add into the orphan directory up to depth 10 */

/* Free an unlinked inode's blocks and number, in as many transactions as
 * it takes, then drop it from the orphan directory (ip->lock held, no
 * transaction open). Marks ip->dead. */
int inode_reclaim(struct fs *fs, struct inode *ip);
/* Free the blocks beyond d.size of an inode on the orphan directory,
 * then drop it from there (ip->lock held, no transaction open). */
int inode_finish_truncate(struct fs *fs, struct inode *ip);

#endif
