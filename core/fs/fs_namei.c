/*
 * fs_namei.c - namespace operations: lookup, forget, create/mknod/mkdir/
 * symlink, link, unlink, rmdir, rename, readlink, readdir.
 *
 * Each modifying operation: lock the inodes (fs.h's order), check
 * everything that can fail for a reason other than I/O, then tx_begin,
 * change, tx_end, unlock, and wait for the commit. Checking first keeps a
 * half-done change out of a transaction: there is no rollback.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fs/dir.h"
#include "core/fs/fs_internal.h"


static int check_name(const char *name)
{
	size_t len = strlen(name);
	if (len == 0)
		return -EINVAL;
	if (len > FS_NAME_MAX)
		return -ENAMETOOLONG;
	return 0;
}

static uint8_t dtype_of(uint32_t mode)
{
	return S_ISDIR(mode) ? DIR_TYPE_DIR : S_ISLNK(mode) ? DIR_TYPE_LNK : DIR_TYPE_REG;
}

/* Get a directory inode; -ENOTDIR otherwise. */
static int get_dir(struct fs *fs, uint64_t ino, struct inode **out)
{
	int r = inode_get(fs, ino, out);
	if (r)
		return r;
	if (!S_ISDIR((*out)->d.mode)) {
		inode_put(fs, *out);
		return -ENOTDIR;
	}
	return 0;
}

static int find_entry(struct fs *fs, struct inode *dp, const char *name, uint64_t *ino)
{
	uint8_t type;
	if (strcmp(name, ".") == 0) {
		*ino = dp->ino;
		return 0;
	}
	if (strcmp(name, "..") == 0)
		return dir_get_parent(fs, dp, ino);
	return dir_lookup(fs, dp, name, strlen(name), ino, &type);
}

/* Hand back an entry: attributes and one more lookup count. */
static void give_entry(struct fs *fs, struct inode *ip, struct fs_attr *out)
{
	pthread_mutex_lock(&ip->lock);
	if (out)
		fs_attr_of(ip, out);
	pthread_mutex_unlock(&ip->lock);
	fs_count_lookup(fs, ip, 1);
}

int fs_lookup(struct fs *fs, uint64_t parent, const char *name, struct fs_attr *out)
{
	int r = check_name(name);
	struct inode *dp, *ip;
	if (r || (r = get_dir(fs, parent, &dp)))
		return r;
	uint64_t ino = 0;
	pthread_mutex_lock(&dp->lock);
	r = dp->d.nlink ? find_entry(fs, dp, name, &ino) : -ENOENT;
	pthread_mutex_unlock(&dp->lock);
	inode_put(fs, dp);
	if (r || (r = inode_get(fs, ino, &ip)))
		return r == -ENOENT && ino ? fs_corrupt(fs, "directory entry to a free inode", ino) : r;
	give_entry(fs, ip, out);
	inode_put(fs, ip);
	return 0;
}

void fs_forget(struct fs *fs, uint64_t ino, uint64_t nlookup)
{
	struct inode *ip;
	if (inode_get(fs, ino, &ip))
		return;
	fs_count_lookup(fs, ip, -(int64_t)nlookup);
	fs_maybe_reclaim(fs, ip);
	inode_put(fs, ip);
}

int fs_getattr(struct fs *fs, uint64_t ino, struct fs_attr *out)
{
	struct inode *ip;
	int r = inode_get(fs, ino, &ip);
	if (r)
		return r;
	pthread_mutex_lock(&ip->lock);
	fs_attr_of(ip, out);
	pthread_mutex_unlock(&ip->lock);
	inode_put(fs, ip);
	return 0;
}

/* ---- creating ---- */

struct new_node {
	uint32_t mode;
	const char *target;        /* symlinks */
	struct inode *ip;          /* out */
};

static void init_disk_inode(struct fs *fs, const struct fs_ctx *c, uint32_t mode,
			    struct fs_inode *d)
{
	struct timespec t = fs_now();
	*d = (struct fs_inode){ .mode = mode, .uid = c ? c->uid : 0, .gid = c ? c->gid : 0,
				.nlink = S_ISDIR(mode) ? 2 : 1,
				.generation = fs_next_generation(fs),
				.atime_sec = t.tv_sec, .mtime_sec = t.tv_sec, .ctime_sec = t.tv_sec,
				.atime_nsec = (uint32_t)t.tv_nsec, .mtime_nsec = (uint32_t)t.tv_nsec,
				.ctime_nsec = (uint32_t)t.tv_nsec };
}

/* Fill a new inode's contents (directory structure, symlink target). */
static int fill_node(struct fs *fs, struct tx *tx, struct inode *dp, struct inode *ip,
		     const char *target)
{
	if (S_ISDIR(ip->d.mode))
		return dir_init(fs, tx, ip, dp->ino);
	if (!S_ISLNK(ip->d.mode))
		return 0;
	struct buf *b;
	int r = inode_block(fs, tx, ip, 0, true, &b);
	if (r)
		return r;
	size_t len = strlen(target);
	memcpy(b->data, target, len);
	bcache_release(fs->cache, b);
	ip->d.size = len;
	return 0;
}

/* Inside tx with dp locked: allocate, fill and link a new inode. */
static int create_in_tx(struct fs *fs, struct tx *tx, const struct fs_ctx *c,
			struct inode *dp, const char *name, struct new_node *nn)
{
	uint64_t ino;
	struct fs_inode d;
	int r = alloc_inode(fs, tx, &ino);
	if (r)
		return r;
	init_disk_inode(fs, c, nn->mode, &d);
	if ((r = inode_get_new(fs, ino, &d, &nn->ip)))
		return r;
	struct inode *ip = nn->ip;
	pthread_mutex_lock(&ip->lock);
	r = fill_node(fs, tx, dp, ip, nn->target);
	if (!r)
		r = inode_update(fs, tx, ip);
	if (!r)
		r = dir_add(fs, tx, dp, name, strlen(name), ino, dtype_of(nn->mode));
	if (r) {
		/* Undo inside this tx: the inode goes back to the free pool. */
		ip->d.nlink = 0;
		pthread_mutex_unlock(&ip->lock);
		return r;
	}
	pthread_mutex_unlock(&ip->lock);
	if (S_ISDIR(nn->mode))
		dp->d.nlink++;
	fs_touch(dp, true, true);
	return inode_update(fs, tx, dp);
}

/* The entry could not be added: give the new inode back, in the same tx. */
static void undo_create(struct fs *fs, struct tx *tx, struct inode *ip)
{
	pthread_mutex_lock(&ip->lock);
	uint32_t gen = ip->d.generation;
	bool done;
	inode_free_range(fs, tx, ip, 0, 64, &done);  /* what dir_init/fill_node got */
	memset(&ip->d, 0, sizeof(ip->d));
	ip->d.generation = gen;
	inode_update(fs, tx, ip);
	inode_mark_dead(fs, ip);
	free_inode(fs, tx, ip->ino);
	pthread_mutex_unlock(&ip->lock);
}

static unsigned create_credits(struct fs *fs, struct inode *dp, uint32_t mode)
{
	unsigned c = dir_add_credits(fs, dp) + ALLOC_CREDITS + 2 * INODE_UPDATE_CREDITS;
	if (S_ISDIR(mode))
		c += DIR_INIT_CREDITS;
	if (S_ISLNK(mode))
		c += INODE_ALLOC_CREDITS;
	return c;
}

static int make_node(struct fs *fs, const struct fs_ctx *c, uint64_t parent,
		     const char *name, struct new_node *nn, bool excl, bool *existed)
{
	int r = check_name(name);
	struct inode *dp;
	if (r || (r = fs_writable(fs)) || (r = get_dir(fs, parent, &dp)))
		return r;
	nn->ip = NULL;
	uint64_t ino, seq = 0;
	pthread_mutex_lock(&dp->lock);
	r = dp->d.nlink ? find_entry(fs, dp, name, &ino) : -ENOENT;
	if (r == 0 && !excl && existed) {
		*existed = true;
		r = inode_get(fs, ino, &nn->ip);
	} else if (r == 0) {
		r = -EEXIST;
	} else if (r == -ENOENT && dp->d.nlink == 0) {
		r = -ENOENT;                  /* the directory was removed */
	} else if (r == -ENOENT) {
		struct tx tx;
		r = tx_begin(fs->j, create_credits(fs, dp, nn->mode), &tx);
		if (!r) {
			r = create_in_tx(fs, &tx, c, dp, name, nn);
			if (r && nn->ip && nn->ip->d.nlink == 0)
				undo_create(fs, &tx, nn->ip);
			seq = tx_end(&tx);
		}
	}
	pthread_mutex_unlock(&dp->lock);
	inode_put(fs, dp);
	if (!r && seq)
		r = fs_commit_wait(fs, seq);
	if (r && nn->ip) {
		inode_put(fs, nn->ip);
		nn->ip = NULL;
	}
	return r;
}

static int make_and_give(struct fs *fs, const struct fs_ctx *c, uint64_t parent,
			 const char *name, uint32_t mode, const char *target,
			 struct fs_attr *out)
{
	struct new_node nn = { .mode = mode, .target = target };
	int r = make_node(fs, c, parent, name, &nn, true, NULL);
	if (r)
		return r;
	give_entry(fs, nn.ip, out);
	inode_put(fs, nn.ip);
	return 0;
}

int fs_mknod(struct fs *fs, const struct fs_ctx *c, uint64_t parent, const char *name,
	     uint32_t mode, struct fs_attr *out)
{
	if (!S_ISREG(mode) && (mode & S_IFMT) != 0)
		return -EPERM;               /* regular files only: no devices here */
	return make_and_give(fs, c, parent, name, S_IFREG | (mode & 07777), NULL, out);
}

int fs_mkdir(struct fs *fs, const struct fs_ctx *c, uint64_t parent, const char *name,
	     uint32_t mode, struct fs_attr *out)
{
	return make_and_give(fs, c, parent, name, S_IFDIR | (mode & 07777), NULL, out);
}

int fs_symlink(struct fs *fs, const struct fs_ctx *c, const char *target, uint64_t parent,
	       const char *name, struct fs_attr *out)
{
	size_t len = strlen(target);
	if (len == 0)
		return -ENOENT;
	if (len > FS_SYMLINK_MAX)
		return -ENAMETOOLONG;
	return make_and_give(fs, c, parent, name, S_IFLNK | 0777, target, out);
}

/* Defined in fs_file.c: open an inode (O_TRUNC handled) and make a handle. */
int fs_open_inode(struct fs *fs, struct inode *ip, int flags, uint64_t *fh);

int fs_create(struct fs *fs, const struct fs_ctx *c, uint64_t parent, const char *name,
	      uint32_t mode, int flags, struct fs_attr *out, uint64_t *fh)
{
	struct new_node nn = { .mode = S_IFREG | (mode & 07777) };
	bool existed = false;
	int r = make_node(fs, c, parent, name, &nn, flags & O_EXCL, &existed);
	if (r)
		return r;
	if (existed && S_ISDIR(nn.ip->d.mode))
		r = -EISDIR;
	if (!r)
		r = fs_open_inode(fs, nn.ip, existed ? flags : flags & ~O_TRUNC, fh);
	if (!r)
		give_entry(fs, nn.ip, out);
	inode_put(fs, nn.ip);
	return r;
}

/* ---- link, unlink, rmdir ---- */

int fs_link(struct fs *fs, uint64_t ino, uint64_t newparent, const char *newname,
	    struct fs_attr *out)
{
	int r = check_name(newname);
	struct inode *dp, *ip;
	if (r || (r = fs_writable(fs)) || (r = get_dir(fs, newparent, &dp)))
		return r;
	if ((r = inode_get(fs, ino, &ip))) {
		inode_put(fs, dp);
		return r;
	}
	/* A directory is refused before any lock: it may be dp itself, or
	 * above it (the type of an inode never changes while it is in use). */
	if (S_ISDIR(ip->d.mode)) {
		inode_put(fs, ip);
		inode_put(fs, dp);
		return -EPERM;
	}
	uint64_t existing, seq = 0;
	pthread_mutex_lock(&dp->lock);
	pthread_mutex_lock(&ip->lock);
	if (ip->d.nlink == 0 || dp->d.nlink == 0)
		r = -ENOENT;
	else if (ip->d.nlink >= FS_LINK_MAX)
		r = -EMLINK;
	else if ((r = find_entry(fs, dp, newname, &existing)) == 0)
		r = -EEXIST;
	else if (r == -ENOENT) {
		struct tx tx;
		r = tx_begin(fs->j, dir_add_credits(fs, dp) + 2 * INODE_UPDATE_CREDITS, &tx);
		if (!r) {
			r = dir_add(fs, &tx, dp, newname, strlen(newname), ip->ino,
				    dtype_of(ip->d.mode));
			if (!r) {
				ip->d.nlink++;
				fs_touch(ip, false, true);
				fs_touch(dp, true, true);
				r = inode_update(fs, &tx, ip);
			}
			if (!r)
				r = inode_update(fs, &tx, dp);
			seq = tx_end(&tx);
		}
	}
	pthread_mutex_unlock(&ip->lock);
	pthread_mutex_unlock(&dp->lock);
	if (!r)
		r = fs_commit_wait(fs, seq);
	if (!r)
		give_entry(fs, ip, out);
	inode_put(fs, ip);
	inode_put(fs, dp);
	return r;
}

/* Inside tx, dp and ip locked: one link of ip goes (entry already removed). */
static int drop_link(struct fs *fs, struct tx *tx, struct inode *dp, struct inode *ip)
{
	if (S_ISDIR(ip->d.mode)) {
		ip->d.nlink = 0;             /* its "." and its entry */
		dp->d.nlink--;               /* its ".." */
	} else {
		ip->d.nlink--;
	}
	fs_touch(ip, false, true);
	int r = ip->d.nlink == 0 ? orphan_add(fs, tx, ip) : 0;
	if (!r)
		r = inode_update(fs, tx, ip);
	return r;
}

static int remove_entry(struct fs *fs, uint64_t parent, const char *name, bool want_dir)
{
	int r = check_name(name);
	struct inode *dp, *ip = NULL;
	if (r || (r = fs_writable(fs)) || (r = get_dir(fs, parent, &dp)))
		return r;
	if (!strcmp(name, ".") || !strcmp(name, "..")) {
		inode_put(fs, dp);
		return want_dir ? (name[1] ? -ENOTEMPTY : -EINVAL) : -EISDIR;
	}
	uint64_t ino, seq = 0;
	pthread_mutex_lock(&dp->lock);
	r = find_entry(fs, dp, name, &ino);
	if (!r)
		r = inode_get(fs, ino, &ip);
	if (!r) {
		pthread_mutex_lock(&ip->lock);
		uint64_t n = 0;
		if (want_dir && !S_ISDIR(ip->d.mode))
			r = -ENOTDIR;
		else if (!want_dir && S_ISDIR(ip->d.mode))
			r = -EISDIR;
		else if (want_dir && !(r = dir_count(fs, ip, &n)) && n > 0)
			r = -ENOTEMPTY;
		struct tx tx;
		if (!r && !(r = tx_begin(fs->j, DIR_REMOVE_CREDITS + ORPHAN_CREDITS +
					 2 * INODE_UPDATE_CREDITS, &tx))) {
			uint8_t type;
			r = dir_remove(fs, &tx, dp, name, strlen(name), &ino, &type);
			if (!r)
				r = drop_link(fs, &tx, dp, ip);
			fs_touch(dp, true, true);
			if (!r)
				r = inode_update(fs, &tx, dp);
			seq = tx_end(&tx);
		}
		pthread_mutex_unlock(&ip->lock);
	}
	pthread_mutex_unlock(&dp->lock);
	if (!r)
		r = fs_commit_wait(fs, seq);
	if (!r)
		r = fs_maybe_reclaim(fs, ip);
	inode_put(fs, ip);
	inode_put(fs, dp);
	return r;
}

int fs_unlink(struct fs *fs, uint64_t parent, const char *name)
{
	return remove_entry(fs, parent, name, false);
}

int fs_rmdir(struct fs *fs, uint64_t parent, const char *name)
{
	return remove_entry(fs, parent, name, true);
}

ssize_t fs_readlink(struct fs *fs, uint64_t ino, char *buf, size_t size)
{
	struct inode *ip;
	int r = inode_get(fs, ino, &ip);
	if (r)
		return r;
	pthread_mutex_lock(&ip->lock);
	ssize_t n = -EINVAL;
	if (S_ISLNK(ip->d.mode)) {
		struct buf *b;
		n = inode_block(fs, NULL, ip, 0, false, &b);
		if (!n && (!b || ip->d.size > FS_SYMLINK_MAX))
			n = fs_corrupt(fs, "symlink", ino);
		if (!n) {
			size_t len = ip->d.size < size ? ip->d.size : size;
			memcpy(buf, b->data, len);
			n = (ssize_t)len;
		}
		if (b)
			bcache_release(fs->cache, b);
	}
	pthread_mutex_unlock(&ip->lock);
	inode_put(fs, ip);
	return n;
}

/* ---- readdir ---- */

int fs_opendir(struct fs *fs, uint64_t ino, uint64_t *fh)
{
	struct inode *dp;
	int r = get_dir(fs, ino, &dp);
	if (r)
		return r;
	inode_put(fs, dp);
	*fh = 0;
	return 0;
}

int fs_releasedir(struct fs *fs, uint64_t ino, uint64_t fh)
{
	(void)fs, (void)ino, (void)fh;
	return 0;
}

int fs_fsyncdir(struct fs *fs, uint64_t ino, uint64_t fh, bool datasync)
{
	(void)fh, (void)datasync;
	struct inode *dp;
	int r = inode_get(fs, ino, &dp);
	if (r)
		return r;
	inode_put(fs, dp);
	/* DESIGN.md §1: everything that returned before is durable after. */
	return journal_sync(fs->j);
}

struct readdir_ctx {
	fs_filldir_fn fn;
	void *arg;
};

static int emit_entry(void *arg, const char *name, size_t len, uint64_t ino, uint8_t type,
		      uint64_t key)
{
	struct readdir_ctx *c = arg;
	struct fs_attr a = { .ino = ino,
			     .mode = type == DIR_TYPE_DIR ? S_IFDIR
				     : type == DIR_TYPE_LNK ? S_IFLNK : S_IFREG };
	return c->fn(c->arg, name, len, &a, key);
}

int fs_readdir(struct fs *fs, uint64_t ino, uint64_t fh, uint64_t off,
	       fs_filldir_fn fn, void *arg)
{
	(void)fh;
	struct inode *dp;
	int r = get_dir(fs, ino, &dp);
	if (r)
		return r;
	pthread_mutex_lock(&dp->lock);
	uint64_t parent = dp->ino;
	struct fs_attr a = { .ino = dp->ino, .mode = S_IFDIR };
	bool full = false;
	if (off < 1)
		full = fn(arg, ".", 1, &a, 1);
	if (!full && off < 2 && !(r = dir_get_parent(fs, dp, &parent))) {
		a.ino = parent;
		full = fn(arg, "..", 2, &a, 2);
	}
	struct readdir_ctx c = { fn, arg };
	if (!r && !full)
		r = dir_iterate(fs, dp, off < DIR_KEY_MIN ? DIR_KEY_MIN - 1 : off, emit_entry, &c);
	pthread_mutex_unlock(&dp->lock);
	inode_put(fs, dp);
	return r;
}
