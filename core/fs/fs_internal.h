/*
 * fs_internal.h - struct fs, shared by the modules of core/fs (not by
 * callers of fs.h). Locking of each field is stated beside it; the overall
 * lock order is in fs.h.
 */
#ifndef CAT_FS_FS_INTERNAL_H
#define CAT_FS_FS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/fs/bcache.h"
#include "core/fs/fs.h"
#include "core/fs/inode.h"
#include "core/fs/journal.h"
#include "core/fs/layout.h"

struct fs {
	struct bdev *dev;
	struct fs_super sb;         /* geometry: read-only after mount */
	struct fs_opts opts;
	struct bcache *cache;
	struct journal *j;

	/* The orphan directory, referenced for the whole mount. */
	struct inode *orphans;

	/* Allocator: bitmaps' in-memory counters and search hints. */
	pthread_mutex_t alloc_lock;
	uint64_t free_blocks, free_inodes;
	uint64_t block_hint, inode_hint;

	/* In-memory inodes: hash by number; refs/lookups/opens counts. */
	pthread_mutex_t itable_lock;
	struct inode **ihash;
	size_t ihash_size;
	uint64_t inodes_cached;

	/* Serialises directory moves (loop check), as Linux's s_vfs_rename_mutex. */
	pthread_mutex_t rename_lock;

	uint64_t orphans_reclaimed;
	uint32_t next_generation;   /* atomic */
};

/* Shared by the fs_*.c files (fs_mount.c). */
struct timespec fs_now(void);
void fs_attr_of(const struct inode *ip, struct fs_attr *a);
void fs_touch(struct inode *ip, bool mtime, bool ctime);
int fs_writable(struct fs *fs);                 /* 0 or -EROFS */
int fs_commit_wait(struct fs *fs, uint64_t seq);
void fs_count_lookup(struct fs *fs, struct inode *ip, int64_t delta);
void fs_count_open(struct fs *fs, struct inode *ip, int delta);
int fs_maybe_reclaim(struct fs *fs, struct inode *ip);
int fs_maybe_reclaim_locked(struct fs *fs, struct inode *ip);
uint32_t fs_next_generation(struct fs *fs);
int fs_mount_raw(struct bdev *dev, const struct fs_opts *o, struct fs **out,
		 struct cat_error *err);

/* Log a corruption found in `what` (names the object) and return -EUCLEAN. */
int fs_corrupt(struct fs *fs, const char *what, uint64_t id);

#endif
