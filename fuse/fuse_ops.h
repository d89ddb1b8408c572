/*
 * fuse_ops.h - the FUSE low-level adapter: fuse_lowlevel_ops -> fs.h.
 *
 * One fuse_lowlevel_ops table whose every operation calls the matching fs_*
 * function of core/fs and replies. FUSE node ids are the engine's inode
 * numbers (the root is 1 in both), so there is no translation table; the
 * engine keeps the lookup counts (fs_forget), as libfuse's passthrough_hp
 * keeps them in its inode table.
 *
 * Lookup counts: every reply that hands the kernel an entry (lookup,
 * create, mknod, mkdir, symlink, link, and each readdirplus entry that fits
 * in the buffer) matches exactly one count taken in the engine; a
 * readdirplus entry that did not fit gives its count back at once.
 *
 * Threads: the session runs multi-threaded; the engine does its own
 * locking (fs.h), so the adapter holds no locks.
 *
 * Errors are the engine's negative errno values, replied with fuse_reply_err.
 */
#ifndef CAT_FUSE_FUSE_OPS_H
#define CAT_FUSE_FUSE_OPS_H

#include <stdbool.h>

struct fs;
struct fuse_lowlevel_ops;

struct cat_fuse_config {
	double entry_timeout, attr_timeout;   /* kernel cache, seconds */
	bool readdirplus;
	bool dir_cache;      /* kernel keeps listings (FOPEN_CACHE_DIR) */
	unsigned max_write;                   /* bytes */
};

/* The operation table; its userdata is a struct cat_fuse_ctx. */
const struct fuse_lowlevel_ops *cat_fuse_ops(void);

struct cat_fuse_ctx {
	struct fs *fs;
	struct cat_fuse_config cfg;
};

#endif
