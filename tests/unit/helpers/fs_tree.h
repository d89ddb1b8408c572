/*
 * fs_tree.h - the engine side of the model tests: run a model operation
 * (fs_model.h) against a mounted filesystem, list directories through
 * fs_readdir, and take a snapshot of a whole tree to compare with the
 * model's.
 *
 * Lookup counts: every call that hands out an entry (lookup, create,
 * mkdir, symlink, link) adds one to the inode's lookup count, as FUSE
 * does. fsop_exec records them in a struct lookups; lookups_forget() sends
 * the matching fs_forget calls. The tree walk forgets at once.
 *
 * Thread-safety: one struct lookups per thread; an inomap may be shared
 * when each thread only writes the ids it made (the array never moves).
 */
#ifndef CAT_TESTS_FS_TREE_H
#define CAT_TESTS_FS_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/fs/fs.h"
#include "tests/unit/helpers/fs_model.h"

/* Model id -> inode number, fixed capacity (aborts beyond it). */
struct inomap {
	uint64_t *ino;
	size_t cap;
};
void inomap_init(struct inomap *im, size_t cap);
void inomap_free(struct inomap *im);
void inomap_set(struct inomap *im, uint64_t id, uint64_t ino);
uint64_t inomap_get(const struct inomap *im, uint64_t id);

struct lookups {
	uint64_t *ino, *count;
	size_t n, cap;
};
void lookups_add(struct lookups *l, uint64_t ino);
/* fs_forget everything recorded, then empty the list. */
void lookups_forget(struct fs *fs, struct lookups *l);
void lookups_free(struct lookups *l);

/* fsop_exec's answer when the call succeeded but what it returned is not
 * what the model says (the message says how). */
#define FSOP_WRONG 1

/* Run op (already applied to a model, so expect/newid/result_id/name2 are
 * set) on fs. Returns the engine's 0 / -errno, or FSOP_WRONG. New inodes
 * are entered in im under op->newid. */
int fsop_exec(struct fs *fs, const struct fsop *op, struct inomap *im, struct lookups *lk,
	      char *msg, size_t len);

/* ---- directory listings ---- */

struct dent {
	char name[256];
	uint64_t ino, off;
	uint32_t mode;       /* S_IFDIR / S_IFREG / S_IFLNK from readdir */
};
struct dlist {
	struct dent *e;
	size_t n, cap;
};
void dlist_free(struct dlist *l);
/* Every entry of directory ino, "." and ".." first, `batch` entries per
 * fs_readdir call (the filler then reports the buffer full). */
int fs_list(struct fs *fs, uint64_t ino, unsigned batch, struct dlist *out);

/* ---- snapshots of the engine's tree ---- */

/* The subtree under ino (whose ".." must be parent), as model_snap makes
 * it, through readdir + lookup + getattr + read/readlink. Also checks that
 * readdir and lookup agree, "." and "..", no duplicate names, holes read as
 * zeros... Returns 0, or non-zero with msg saying what went wrong. r (may
 * be NULL) varies the readdir batch sizes. */
int fs_snap(struct fs *fs, uint64_t ino, uint64_t parent, struct snap *s, struct prng *r,
	    char *msg, size_t len);

/* Compare the engine's subtree at ino with the model's subtree at dir:
 * 0 if equal, else non-zero with msg. */
int fs_compare(struct fs *fs, uint64_t ino, uint64_t parent, struct model *m,
	       struct mnode *dir, struct prng *r, char *msg, size_t len);

/* Read a whole regular file (size bytes) into a new buffer. */
int fs_read_all(struct fs *fs, uint64_t ino, uint64_t size, uint8_t **out);

#endif
