/*
 * fs_rename.c - rename, with RENAME_NOREPLACE and RENAME_EXCHANGE, in one
 * transaction.
 *
 * Locks: fs->rename_lock when the parents differ (so the ancestry cannot
 * change between the loop check and the move, as Linux's
 * s_vfs_rename_mutex), then the two parents in inode-number order, then
 * the two children in inode-number order. The loop check walks up from the
 * new parent before any inode lock is held, locking one ancestor at a time.
 */
#include <errno.h>
#include <stdio.h>      /* RENAME_NOREPLACE, RENAME_EXCHANGE (_GNU_SOURCE) */
#include <string.h>
#include <sys/stat.h>

#include "core/fs/dir.h"
#include "core/fs/fs_internal.h"


struct rename_op {
	struct inode *sdp, *ddp;     /* source and destination parents */
	struct inode *upper;         /* the parent above the other, or NULL */
	struct inode *src, *dst;     /* dst NULL when the name is free */
	const char *sname, *dname;
	unsigned flags;
};

static uint8_t dtype_of(uint32_t mode)
{
	return S_ISDIR(mode) ? DIR_TYPE_DIR : S_ISLNK(mode) ? DIR_TYPE_LNK : DIR_TYPE_REG;
}

/* Is `ancestor` equal to dir or above it? (rename_lock held) */
static int is_ancestor(struct fs *fs, uint64_t ancestor, uint64_t dir)
{
	for (int depth = 0; depth < 100000; depth++) {
		if (dir == ancestor)
			return 1;
		if (dir == FS_ROOT_INO)
			return 0;
		struct inode *ip;
		int r = inode_get(fs, dir, &ip);
		if (r)
			return r;
		uint64_t parent = 0;
		pthread_mutex_lock(&ip->lock);
		r = S_ISDIR(ip->d.mode) ? dir_get_parent(fs, ip, &parent) : -ENOTDIR;
		pthread_mutex_unlock(&ip->lock);
		inode_put(fs, ip);
		if (r)
			return r;
		dir = parent;
	}
	return fs_corrupt(fs, "directory ancestry (a loop) above inode", dir);
}

static void lock_pair(struct inode *a, struct inode *b)
{
	if (!b || a == b) {
		pthread_mutex_lock(&a->lock);
		return;
	}
	if (a->ino > b->ino) {
		struct inode *t = a;
		a = b;
		b = t;
	}
	pthread_mutex_lock(&a->lock);
	pthread_mutex_lock(&b->lock);
}

/* The parents: the ancestor first when one is above the other (as
 * Linux's lock_rename), else by inode number. */
static void lock_parents(struct rename_op *o)
{
	if (o->upper && o->sdp != o->ddp) {
		struct inode *lower = o->upper == o->sdp ? o->ddp : o->sdp;
		pthread_mutex_lock(&o->upper->lock);
		pthread_mutex_lock(&lower->lock);
		return;
	}
	lock_pair(o->sdp, o->ddp);
}

static void unlock_pair(struct inode *a, struct inode *b)
{
	pthread_mutex_unlock(&a->lock);
	if (b && b != a)
		pthread_mutex_unlock(&b->lock);
}

/* Checks with everything locked; 1 = nothing to do. */
static int rename_check(struct fs *fs, struct rename_op *o)
{
	struct inode *s = o->src, *d = o->dst;
	if (o->sdp->d.nlink == 0 || o->ddp->d.nlink == 0)
		return -ENOENT;
	if (o->flags & RENAME_EXCHANGE)
		return d ? 0 : -ENOENT;
	if (!d)
		return 0;
	if (o->flags & RENAME_NOREPLACE)
		return -EEXIST;
	if (s == d)
		return 1;                    /* two links of one file: POSIX says no-op */
	if (S_ISDIR(s->d.mode) && !S_ISDIR(d->d.mode))
		return -ENOTDIR;
	if (!S_ISDIR(s->d.mode) && S_ISDIR(d->d.mode))
		return -EISDIR;
	uint64_t n = 0;
	int r = S_ISDIR(d->d.mode) ? dir_count(fs, d, &n) : 0;
	return r ? r : n ? -ENOTEMPTY : 0;
}

/* A directory child moved from one parent to another: fix ".." and counts. */
static int move_dir(struct fs *fs, struct tx *tx, struct inode *child, struct inode *from,
		    struct inode *to)
{
	if (!S_ISDIR(child->d.mode) || from == to)
		return 0;
	from->d.nlink--;
	to->d.nlink++;
	return dir_set_parent(fs, tx, child, to->ino);
}

static int rename_exchange(struct fs *fs, struct tx *tx, struct rename_op *o)
{
	int r = dir_replace(fs, tx, o->sdp, o->sname, strlen(o->sname), o->dst->ino,
			    dtype_of(o->dst->d.mode));
	if (!r)
		r = dir_replace(fs, tx, o->ddp, o->dname, strlen(o->dname), o->src->ino,
				dtype_of(o->src->d.mode));
	if (!r)
		r = move_dir(fs, tx, o->src, o->sdp, o->ddp);
	if (!r)
		r = move_dir(fs, tx, o->dst, o->ddp, o->sdp);
	fs_touch(o->dst, false, true);
	return r ? r : inode_update(fs, tx, o->dst);
}

static int rename_move(struct fs *fs, struct tx *tx, struct rename_op *o)
{
	uint64_t ino;
	uint8_t type;
	int r;
	if (o->dst) {
		r = dir_replace(fs, tx, o->ddp, o->dname, strlen(o->dname), o->src->ino,
				dtype_of(o->src->d.mode));
		if (!r && S_ISDIR(o->dst->d.mode)) {
			o->dst->d.nlink = 0;
			o->ddp->d.nlink--;   /* the replaced directory's ".." */
		} else if (!r) {
			o->dst->d.nlink--;
		}
		fs_touch(o->dst, false, true);
		if (!r && o->dst->d.nlink == 0)
			r = orphan_add(fs, tx, o->dst);
		if (!r)
			r = inode_update(fs, tx, o->dst);
	} else {
		/* Add first: if the add fails nothing has changed yet. */
		r = dir_add(fs, tx, o->ddp, o->dname, strlen(o->dname), o->src->ino,
			    dtype_of(o->src->d.mode));
	}
	if (!r)
		r = dir_remove(fs, tx, o->sdp, o->sname, strlen(o->sname), &ino, &type);
	if (!r)
		r = move_dir(fs, tx, o->src, o->sdp, o->ddp);
	return r;
}

static unsigned rename_credits(struct fs *fs, struct rename_op *o)
{
	return dir_add_credits(fs, o->ddp) + 2 * DIR_REMOVE_CREDITS + ORPHAN_CREDITS +
	       6 * INODE_UPDATE_CREDITS + 8;
}

/* With parents and children locked: check, then change in one tx. */
static int rename_locked(struct fs *fs, struct rename_op *o, uint64_t *seq)
{
	int r = rename_check(fs, o);
	if (r)
		return r == 1 ? 0 : r;
	struct tx tx;
	if ((r = tx_begin(fs->j, rename_credits(fs, o), &tx)))
		return r;
	r = (o->flags & RENAME_EXCHANGE) ? rename_exchange(fs, &tx, o) : rename_move(fs, &tx, o);
	fs_touch(o->src, false, true);
	fs_touch(o->sdp, true, true);
	fs_touch(o->ddp, true, true);
	if (!r)
		r = inode_update(fs, &tx, o->src);
	if (!r)
		r = inode_update(fs, &tx, o->sdp);
	if (!r && o->ddp != o->sdp)
		r = inode_update(fs, &tx, o->ddp);
	*seq = tx_end(&tx);
	return r;
}

static int lookup_child(struct fs *fs, struct inode *dp, const char *name, struct inode **out)
{
	uint64_t ino;
	uint8_t type;
	*out = NULL;
	int r = dir_lookup(fs, dp, name, strlen(name), &ino, &type);
	return r ? r : inode_get(fs, ino, out);
}

/* Loop check for directories that change parent (rename_lock held). */
static int check_loops(struct fs *fs, struct rename_op *o)
{
	int r = 0;
	/* Linux's order: these come before the loop checks */
	if ((o->flags & RENAME_NOREPLACE) && o->dst)
		return -EEXIST;
	if ((o->flags & RENAME_EXCHANGE) && !o->dst)
		return -ENOENT;
	if (o->sdp == o->ddp)
		return 0;
	if (S_ISDIR(o->src->d.mode) && (r = is_ancestor(fs, o->src->ino, o->ddp->ino)))
		return r < 0 ? r : -EINVAL;
	/* the target above the source's parent: rename("a/b/c/x", "a/b") */
	if (o->dst && S_ISDIR(o->dst->d.mode) && (r = is_ancestor(fs, o->dst->ino, o->sdp->ino)))
		return r < 0 ? r : (o->flags & RENAME_EXCHANGE) ? -EINVAL : -ENOTEMPTY;
	return 0;
}

/* Find both children with the parents locked (then unlocked again). */
static int find_children(struct fs *fs, struct rename_op *o)
{
	lock_parents(o);
	int r = lookup_child(fs, o->sdp, o->sname, &o->src);
	if (!r) {
		r = lookup_child(fs, o->ddp, o->dname, &o->dst);
		if (r == -ENOENT)
			r = 0;
	}
	unlock_pair(o->sdp, o->ddp);
	return r;
}

/* rename("a/b/c", "a/b"): the target is the source's own parent. */
static int check_dst_is_parent(const struct rename_op *o)
{
	if (o->dst && (o->dst == o->sdp || o->dst == o->ddp))
		return (o->flags & RENAME_EXCHANGE) ? -EINVAL : -ENOTEMPTY;
	return 0;
}

static int rename_names_ok(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (!la || !lb || !strcmp(a, ".") || !strcmp(a, "..") || !strcmp(b, ".") ||
	    !strcmp(b, ".."))
		return -EINVAL;
	return la > FS_NAME_MAX || lb > FS_NAME_MAX ? -ENAMETOOLONG : 0;
}

/* Which parent is above the other (rename_lock held when they differ). */
static int find_parent_order(struct fs *fs, struct rename_op *o)
{
	if (o->sdp == o->ddp)
		return 0;
	int r = is_ancestor(fs, o->sdp->ino, o->ddp->ino);
	if (r == 0 && (r = is_ancestor(fs, o->ddp->ino, o->sdp->ino)) == 1)
		o->upper = o->ddp;
	else if (r == 1)
		o->upper = o->sdp;
	return r < 0 ? r : 0;
}

static int get_parents(struct fs *fs, uint64_t p1, uint64_t p2, struct rename_op *o)
{
	int r = inode_get(fs, p1, &o->sdp);
	if (!r && (r = inode_get(fs, p2, &o->ddp)))
		return r;
	if (!r && (!S_ISDIR(o->sdp->d.mode) || !S_ISDIR(o->ddp->d.mode)))
		r = -ENOTDIR;
	return r;
}

int fs_rename(struct fs *fs, uint64_t parent, const char *name, uint64_t newparent,
	      const char *newname, unsigned flags)
{
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE) ||
	    (flags & RENAME_NOREPLACE && flags & RENAME_EXCHANGE))
		return -EINVAL;
	int r = rename_names_ok(name, newname);
	if (r || (r = fs_writable(fs)))
		return r;
	struct rename_op o = { .sname = name, .dname = newname, .flags = flags };
	bool cross = parent != newparent;
	if (cross)
		pthread_mutex_lock(&fs->rename_lock);
	uint64_t seq = 0;
	if (!(r = get_parents(fs, parent, newparent, &o)) && !(r = find_parent_order(fs, &o)) &&
	    !(r = find_children(fs, &o)) && !(r = check_loops(fs, &o)) &&
	    !(r = check_dst_is_parent(&o))) {
		lock_parents(&o);
		lock_pair(o.src, o.dst);
		/* The entries may have changed while unlocked: look again. */
		uint64_t si, di = 0;
		uint8_t t;
		r = dir_lookup(fs, o.sdp, name, strlen(name), &si, &t);
		int rd = dir_lookup(fs, o.ddp, newname, strlen(newname), &di, &t);
		if (!r && (si != o.src->ino || (rd == 0) != (o.dst != NULL) ||
			   (o.dst && di != o.dst->ino)))
			r = -EAGAIN;
		if (!r)
			r = rename_locked(fs, &o, &seq);
		unlock_pair(o.src, o.dst);
		unlock_pair(o.sdp, o.ddp);
	}
	if (cross)
		pthread_mutex_unlock(&fs->rename_lock);
	if (!r)
		r = fs_commit_wait(fs, seq);
	if (!r && o.dst)
		r = fs_maybe_reclaim(fs, o.dst);
	inode_put(fs, o.dst);
	inode_put(fs, o.src);
	inode_put(fs, o.ddp);
	inode_put(fs, o.sdp);
	return r == -EAGAIN ? fs_rename(fs, parent, name, newparent, newname, flags) : r;
}
