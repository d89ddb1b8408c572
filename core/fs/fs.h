/*
 * fs.h - the Catamaran filesystem engine: the API the FUSE layer maps onto
 * one to one (fuse_lowlevel_ops), usable in-process by tests and benchmarks.
 *
 * Inode numbers are the FUSE node ids (FS_ROOT_INO = 1 is the root).
 * Operations that return an entry (lookup, create, mknod, mkdir, symlink,
 * link) add one to that inode's lookup count; fs_forget drops it. An inode
 * whose link count reached zero is freed when its lookup count is zero and
 * no handle is open (DESIGN.md §4); until then it is on the orphan list and
 * a crash leaves it to be reclaimed at the next mount.
 *
 * Durability (DESIGN.md §1): every namespace and attribute operation has
 * been written to the journal (on both mirror legs) when it returns, so
 * kill -9 loses none. fs_write returns once the data is in the running
 * transaction; fs_release and fs_fsync wait until it is in the log. fs_fsync,
 * fs_fsyncdir and fs_syncfs also flush both disks (power-loss safe). With
 * fs_opts.sync every operation is power-loss safe when it returns.
 * Every operation is atomic with respect to crashes. fs_write of more than
 * FS_WRITE_ATOMIC bytes is split into several atomic steps.
 *
 * Lock order (outer to inner): fs->rename_lock (directory moves only);
 * inode locks - parent before child, and for two unrelated inodes the lower
 * inode number first; then tx_begin (journal); then buf_lock of inode-table
 * blocks; then the allocator and orphan mutexes; then the inode table and
 * cache mutexes. Operations in different directories share no lock above
 * the journal, so they run in parallel and meet only in group commit.
 *
 * Errors are negative errno values: -ENOENT, -EEXIST, -ENOTDIR, -EISDIR,
 * -ENOTEMPTY, -ENAMETOOLONG, -EMLINK, -ENOSPC, -EINVAL, -EXDEV, -EPERM,
 * -EBADF, -EFBIG, -EROFS (read-only mount, or the journal stopped after a
 * write error), -EUCLEAN (corrupt metadata met: named in the log), -EIO.
 */
#ifndef CAT_FS_FS_H
#define CAT_FS_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>

struct bdev;
struct cat_error;
struct fs;

#define FS_WRITE_ATOMIC (1u << 20)

struct fs_format_opts {
	uint64_t ninodes;        /* 0 = one per 16 KiB */
	uint64_t journal_blocks; /* 0 = automatic */
	uint32_t root_uid, root_gid;
	uint32_t root_mode;      /* 0 = 0755 */
};

struct fs_opts {
	size_t cache_bytes;      /* 0 = 64 MiB */
	bool sync;               /* every operation durable on return */
	bool read_only;
	unsigned commit_interval_ms; /* 0 = 1000 */
};

struct fs_attr {
	uint64_t ino;
	uint32_t mode, nlink, uid, gid;
	uint64_t size, blocks;   /* blocks: 512-byte units, as st_blocks */
	struct timespec atime, mtime, ctime;
	uint32_t generation;
};

/* Caller identity (owner of new inodes). */
struct fs_ctx {
	uint32_t uid, gid;
};

/* fs_setattr: which fields to change. */
enum {
	FS_SET_MODE = 1 << 0, FS_SET_UID = 1 << 1, FS_SET_GID = 1 << 2,
	FS_SET_SIZE = 1 << 3, FS_SET_ATIME = 1 << 4, FS_SET_MTIME = 1 << 5,
	FS_SET_CTIME = 1 << 6, FS_SET_ATIME_NOW = 1 << 7, FS_SET_MTIME_NOW = 1 << 8,
};
struct fs_setattr {
	unsigned valid;
	uint32_t mode, uid, gid;
	uint64_t size;
	struct timespec atime, mtime, ctime;
};

/* readdir callback: return non-zero when the caller's buffer is full (the
 * entry was not taken; it will come again from `off` of the previous one). */
typedef int (*fs_filldir_fn)(void *arg, const char *name, size_t namelen,
			     const struct fs_attr *attr, uint64_t next_off);

int fs_format(struct bdev *dev, const struct fs_format_opts *o, struct cat_error *err);
/* Replays the journal, reclaims orphans, opens. */
int fs_mount(struct bdev *dev, const struct fs_opts *o, struct fs **out,
	     struct cat_error *err);
/* Commits, checkpoints, flushes; frees everything (lookup counts are
 * dropped: an unmount is a forget of everything). */
int fs_unmount(struct fs *fs);

int fs_lookup(struct fs *fs, uint64_t parent, const char *name, struct fs_attr *out);
void fs_forget(struct fs *fs, uint64_t ino, uint64_t nlookup);
int fs_getattr(struct fs *fs, uint64_t ino, struct fs_attr *out);
int fs_setattr(struct fs *fs, uint64_t ino, const struct fs_setattr *sa,
	       struct fs_attr *out);

/* flags: O_EXCL, O_TRUNC, O_APPEND, O_ACCMODE bits as for open(2). */
int fs_create(struct fs *fs, const struct fs_ctx *c, uint64_t parent,
	      const char *name, uint32_t mode, int flags, struct fs_attr *out,
	      uint64_t *fh);
int fs_mknod(struct fs *fs, const struct fs_ctx *c, uint64_t parent,
	     const char *name, uint32_t mode, struct fs_attr *out);
int fs_mkdir(struct fs *fs, const struct fs_ctx *c, uint64_t parent,
	     const char *name, uint32_t mode, struct fs_attr *out);
int fs_rmdir(struct fs *fs, uint64_t parent, const char *name);
int fs_unlink(struct fs *fs, uint64_t parent, const char *name);
int fs_link(struct fs *fs, uint64_t ino, uint64_t newparent, const char *newname,
	    struct fs_attr *out);
/* flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE (<linux/fs.h> values). */
int fs_rename(struct fs *fs, uint64_t parent, const char *name,
	      uint64_t newparent, const char *newname, unsigned flags);
int fs_symlink(struct fs *fs, const struct fs_ctx *c, const char *target,
	       uint64_t parent, const char *name, struct fs_attr *out);
/* Copies the target (not NUL-terminated) and returns its length. */
ssize_t fs_readlink(struct fs *fs, uint64_t ino, char *buf, size_t size);

int fs_open(struct fs *fs, uint64_t ino, int flags, uint64_t *fh);
ssize_t fs_read(struct fs *fs, uint64_t ino, uint64_t fh, void *buf, size_t size,
		off_t off);
/* With a handle opened O_APPEND, off is ignored and data goes at the end. */
ssize_t fs_write(struct fs *fs, uint64_t ino, uint64_t fh, const void *buf,
		 size_t size, off_t off);
int fs_fsync(struct fs *fs, uint64_t ino, uint64_t fh, bool datasync);
/* close(2) of one descriptor: wait until the file's changes are in the log. */
int fs_flush(struct fs *fs, uint64_t ino, uint64_t fh);
int fs_release(struct fs *fs, uint64_t ino, uint64_t fh);

int fs_opendir(struct fs *fs, uint64_t ino, uint64_t *fh);
/* Entries after cookie off (0 = from the start, then ".", ".."). */
int fs_readdir(struct fs *fs, uint64_t ino, uint64_t fh, uint64_t off,
	       fs_filldir_fn fn, void *arg);
int fs_releasedir(struct fs *fs, uint64_t ino, uint64_t fh);
int fs_fsyncdir(struct fs *fs, uint64_t ino, uint64_t fh, bool datasync);

int fs_statfs(struct fs *fs, struct statvfs *st);
int fs_syncfs(struct fs *fs);

struct fs_stats {
	uint64_t commits, ops, journal_blocks, flushes, checkpoints;
	double ops_per_commit;
	uint64_t log_blocks, log_used;
	uint64_t cache_hits, cache_misses, cache_bytes, cache_max_bytes;
	uint64_t inodes_cached, orphans_reclaimed;
};
void fs_get_stats(struct fs *fs, struct fs_stats *st);

#endif
