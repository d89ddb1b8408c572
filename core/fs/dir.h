/*
 * dir.h - directories: an extendible hash of name -> (inode, type).
 *
 * A directory is a sparse file (layout.h): logical block 0 is the header
 * (global depth, bucket count, entry count, parent inode), logical blocks
 * 1..FS_DIR_TABLE_BLOCKS hold the bucket table (2^depth u32 bucket numbers),
 * and bucket b is logical block FS_DIR_BUCKET0 + b. Each entry has a 63-bit
 * key derived from a keyed 64-bit hash of its name (fs->sb.hash_seed); the
 * top `depth` bits of the key select the table slot. Entries inside a bucket
 * are kept sorted by key. A full bucket splits (moving entries to a new
 * bucket by the next key bit, keys unchanged); if its local depth equals the
 * global depth the table doubles first. Buckets never merge.
 *
 * Keys are also the readdir cookies: dir_iterate(cookie) returns every entry
 * with key > cookie in increasing key order. Keys never change while an
 * entry exists, so an entry present for a whole scan is returned exactly
 * once, however the directory changes meanwhile. Keys are >= DIR_KEY_MIN
 * (cookies 0..2 belong to the start, "." and "..") and < 2^63.
 * Hash collisions: a name whose key is taken by another name gets the next
 * free key among key+1 .. key+DIR_PROBE-1; lookup checks that range.
 *
 * Lookup costs the header, one table block and one or two bucket blocks,
 * whatever the directory's size.
 *
 * Locking: the caller holds dp->lock for every call (modifications change
 * blocks owned by dp). Modifying calls take a transaction that the caller
 * began with at least dir_add_credits(fs, dp) / DIR_REMOVE_CREDITS.
 *
 * Errors: -ENOENT, -EEXIST, -ENAMETOOLONG (> FS_NAME_MAX), -EINVAL (empty
 * name, '/' or NUL in it, "." or ".."), -ENOSPC (no block, or the table is
 * at FS_DIR_MAX_DEPTH and the bucket cannot split), -EUCLEAN (a header,
 * table or bucket fails its checks), -EIO.
 */
#ifndef CAT_FS_DIR_H
#define CAT_FS_DIR_H

#include <stddef.h>
#include <stdint.h>

#include "core/fs/inode.h"

struct fs;
struct tx;
struct inode;

#define DIR_KEY_MIN 3u
#define DIR_PROBE 16u

/* d_type values stored in entries (same numbers as <dirent.h> DT_*). */
#define DIR_TYPE_REG 8u
#define DIR_TYPE_DIR 4u
#define DIR_TYPE_LNK 10u

/* Make dp (a fresh, empty inode of type directory) a directory with no
 * entries whose ".." is parent. Credits: DIR_INIT_CREDITS. */
int dir_init(struct fs *fs, struct tx *tx, struct inode *dp, uint64_t parent);
#define DIR_INIT_CREDITS (3u * INODE_ALLOC_CREDITS)

int dir_lookup(struct fs *fs, struct inode *dp, const char *name, size_t len,
	       uint64_t *ino, uint8_t *type);
int dir_add(struct fs *fs, struct tx *tx, struct inode *dp, const char *name,
	    size_t len, uint64_t ino, uint8_t type);
/* Credits dir_add may need now (grows with the table when it must double). */
unsigned dir_add_credits(struct fs *fs, struct inode *dp);
int dir_remove(struct fs *fs, struct tx *tx, struct inode *dp, const char *name,
	       size_t len, uint64_t *ino, uint8_t *type);
/* Point an existing entry at another inode (rename over an existing name). */
int dir_replace(struct fs *fs, struct tx *tx, struct inode *dp, const char *name,
		size_t len, uint64_t ino, uint8_t type);
#define DIR_REMOVE_CREDITS 2u   /* bucket + header */
int dir_set_parent(struct fs *fs, struct tx *tx, struct inode *dp, uint64_t parent);
int dir_get_parent(struct fs *fs, struct inode *dp, uint64_t *parent);
int dir_count(struct fs *fs, struct inode *dp, uint64_t *nentries);

/* Calls fn for each entry with key > cookie, in key order, until fn returns
 * non-zero (then dir_iterate returns 0) or the entries run out. `key` is the
 * entry's cookie. */
typedef int (*dir_iter_fn)(void *arg, const char *name, size_t len,
			   uint64_t ino, uint8_t type, uint64_t key);
int dir_iterate(struct fs *fs, struct inode *dp, uint64_t cookie,
		dir_iter_fn fn, void *arg);

/* The key of a name (exposed for fsck and tests). */
uint64_t dir_name_key(uint64_t seed, const char *name, size_t len);

#endif
