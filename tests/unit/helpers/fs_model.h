/*
 * fs_model.h - an in-memory reference model of a filesystem tree, random
 * operations on it, and canonical snapshots to compare it with the real
 * engine (core/fs/fs.h).
 *
 * The model holds directories, regular files (their whole contents, holes
 * as zeros), symlinks and hard links, with link counts as POSIX has them
 * (a directory: 2 + its subdirectories). Its operations return 0 or the
 * -errno Linux gives, checking in Linux's order; where the engine checks in
 * another order for a request that is wrong twice over, the model names the
 * engine's answer as an accepted alternative (op->alt) - see fs_model.c.
 *
 * Operations are records (struct fsop) that name nodes by model id, so the
 * same list can be applied to a model and, through an id -> inode map, to
 * the engine (fs_tree.h). Node ids are handed out in creation order, so a
 * list replayed on a fresh model gives the same ids.
 *
 * A snapshot is the tree in canonical form: one row per path (sorted), with
 * type, size, link count, a hash of the contents or symlink target, and for
 * files with several names the first path of the same inode (so hard links
 * compare without knowing inode numbers).
 *
 * Not thread-safe: callers that share a model across threads lock it.
 */
#ifndef CAT_TESTS_FS_MODEL_H
#define CAT_TESTS_FS_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/util.h"

enum mtype { M_DIR = 1, M_REG = 2, M_LNK = 3 };

struct mnode;

struct mentry {
	char *name;
	struct mnode *node;
};

struct mnode {
	enum mtype type;
	uint64_t id;
	uint32_t nlink;
	struct mnode *parent;        /* directories */
	struct mentry *ents;         /* directories: unsorted */
	size_t nents, ents_cap;
	uint8_t *data;               /* regular files: size bytes */
	uint64_t size;
	size_t data_cap;
	uint64_t hash;               /* contents (or target) hash, when hash_ok */
	bool hash_ok;
	char *target;                /* symlinks */
};

struct model {
	struct mnode *root;          /* id 1 */
	struct mnode **by_id;        /* id -> live node, NULL once gone */
	size_t nids, ids_cap;
	size_t live;                 /* nodes alive */
};

void model_init(struct model *m);
void model_free(struct model *m);
struct mnode *model_node(const struct model *m, uint64_t id);
struct mnode *model_find(const struct mnode *dir, const char *name);

/* ---- operations ---- */

enum fsop_kind {
	OP_MKDIR = 1, OP_CREATE, OP_SYMLINK, OP_LINK, OP_UNLINK, OP_RMDIR,
	OP_RENAME, OP_WRITE, OP_TRUNCATE, OP_LOOKUP, OP_READLINK,
	OP_FSYNC, OP_FSYNCDIR, OP_SYNCFS,
};

struct fsop {
	enum fsop_kind kind;
	uint64_t a;          /* parent dir (create, mkdir, symlink, unlink, rmdir,
			      * lookup, rename source), file (write, truncate,
			      * link source, fsync, readlink) */
	uint64_t b;          /* link/rename: the destination directory */
	char name[260];      /* entry name (may be too long on purpose) */
	char name2[260];     /* rename: destination name; symlink: target */
	unsigned flags;      /* rename flags */
	uint64_t off, len;   /* write: offset and length; truncate: off = size */
	uint64_t seed;       /* write: data pattern */
	/* filled by model_apply */
	uint64_t newid;      /* node made by create/mkdir/symlink */
	int expect, alt;     /* -errno the model gives; alt: also accepted */
	uint64_t result_id;  /* lookup: the node found */
};

/* Apply op to the model; sets op->expect/alt/newid/result_id and returns
 * op->expect. */
int model_apply(struct model *m, struct fsop *op);

/* Fill buf with the data pattern of a write (seeded). */
void fsop_pattern(uint64_t seed, void *buf, size_t len);

const char *fsop_name(enum fsop_kind k);
/* "rename 12/a -> 7/b flags 1" etc., for messages. */
const char *fsop_describe(const struct fsop *op, char *buf, size_t len);

/* ---- random operations ---- */

/* Where a generator may act: the subtrees under tops[], and in `shared`
 * (if not 0) only the names starting with prefix (its own entries). */
struct area {
	uint64_t tops[2];
	int ntops;
	uint64_t shared;
	char prefix[16];
};

struct gen_cfg {
	unsigned max_nodes;     /* prefer removals above this many nodes */
	uint64_t max_write;     /* largest write length */
	uint64_t max_offset;    /* writes start below size + this */
	unsigned large_pct;     /* % of writes of up to max_large bytes */
	uint64_t max_large;
	bool fsyncs;            /* also generate fsync/fsyncdir/syncfs */
	bool errors;            /* also generate requests that must fail */
};

/* A random operation inside area (not yet applied). */
void gen_op(const struct model *m, struct prng *r, const struct area *ar,
	    const struct gen_cfg *cfg, struct fsop *op);

/* Maildir (crash workload). gen_maildir_setup: the operations that make
 * parent/name with tmp, new and cur, then fsync parent. gen_maildir_step:
 * the operations of one step - a delivery (create tmp/x, up to three
 * writes, fsync, link new/x, fsync new/, unlink tmp/x), a pickup (rename
 * new/x -> cur/x:2,S), a flag change or delete in cur/, an index rewrite or
 * truncate, a syncfs or a new folder - into ops[] (at most 8); returns how
 * many. In both, an operation with a == 0 acts on the node the batch's
 * first operation makes (the caller fills that in after applying it). */
struct maildir_ids {
	uint64_t root, tmp, newd, cur;
};
size_t gen_maildir_setup(uint64_t parent, const char *name, struct fsop *ops);
size_t gen_maildir_step(const struct model *m, struct prng *r, const struct maildir_ids *md,
			unsigned counter, uint64_t max_msg, struct fsop *ops);

/* ---- snapshots ---- */

struct snap_row {
	char *path;
	uint8_t type;
	uint32_t nlink;
	uint64_t size;
	uint64_t hash;
	uint64_t ident;      /* inode number / model id (not compared) */
	char *leader;        /* first path of the same inode if nlink > 1 */
};

struct snap {
	struct snap_row *rows;
	size_t n, cap;
};

void snap_init(struct snap *s);
void snap_free(struct snap *s);
void snap_add(struct snap *s, const char *path, uint8_t type, uint32_t nlink,
	      uint64_t size, uint64_t hash, uint64_t ident);
/* Sort by path and fill in the leaders (call once all rows are in). */
void snap_finish(struct snap *s);
/* The model's subtree under dir (paths relative to it, "" = dir itself). */
void model_snap(struct model *m, struct mnode *dir, struct snap *s);
/* 0 if equal, else 1 with the first difference described in msg. */
int snap_diff(const struct snap *want, const struct snap *got, char *msg, size_t len);

uint64_t hash_bytes(uint64_t h, const void *p, size_t len);
#define HASH_INIT 0xcbf29ce484222325ull

#endif
