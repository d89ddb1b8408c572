/*
 * fuse_ops.c - fuse_lowlevel_ops over the filesystem engine (fuse_ops.h).
 *
 * Each handler: unpack the request, call fs_*, reply. Attribute and entry
 * replies carry the configured kernel-cache timeouts. readdirplus collects
 * a batch of names first (the engine calls back with the directory locked,
 * where a lookup would deadlock), then looks each one up, which takes the
 * lookup count the kernel will own.
 */
#define FUSE_USE_VERSION 312
#include "fuse/fuse_ops.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fs/fs.h"

static struct cat_fuse_ctx *ctx_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct fs_ctx caller_of(fuse_req_t req)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	return (struct fs_ctx){ .uid = c->uid, .gid = c->gid };
}

static void stat_of(const struct fs_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_size = (off_t)a->size;
	st->st_blocks = (blkcnt_t)a->blocks;
	st->st_blksize = 4096;
	st->st_atim = a->atime;
	st->st_mtim = a->mtime;
	st->st_ctim = a->ctime;
}

static void entry_of(fuse_req_t req, const struct fs_attr *a, struct fuse_entry_param *e)
{
	const struct cat_fuse_config *cfg = &ctx_of(req)->cfg;
	memset(e, 0, sizeof(*e));
	e->ino = a->ino;
	e->generation = a->generation;
	e->attr_timeout = cfg->attr_timeout;
	e->entry_timeout = cfg->entry_timeout;
	stat_of(a, &e->attr);
}

static void reply_entry_or_err(fuse_req_t req, int r, const struct fs_attr *a)
{
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	struct fuse_entry_param e;
	entry_of(req, a, &e);
	fuse_reply_entry(req, &e);
}

static void reply_attr_or_err(fuse_req_t req, int r, const struct fs_attr *a)
{
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	struct stat st;
	stat_of(a, &st);
	fuse_reply_attr(req, &st, ctx_of(req)->cfg.attr_timeout);
}

/* ---- session ---- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct cat_fuse_ctx *c = userdata;
	/* No writeback cache: every write reaches the engine, so close() and
	 * fsync() mean what DESIGN.md §1 says. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	if (c->cfg.readdirplus && (conn->capable & FUSE_CAP_READDIRPLUS))
		conn->want |= FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO;
	else
		conn->want &= ~(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
	if (c->cfg.max_write)
		conn->max_write = c->cfg.max_write;
}

/* ---- names ---- */

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs_attr a;
	int r = fs_lookup(ctx_of(req)->fs, parent, name, &a);
	if (r == -ENOENT) {
		/* A negative entry with a zero timeout: nothing cached. */
		struct fuse_entry_param e = { 0 };
		fuse_reply_entry(req, &e);
		return;
	}
	reply_entry_or_err(req, r, &a);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	fs_forget(ctx_of(req)->fs, ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		fs_forget(ctx_of(req)->fs, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct fs_attr a;
	int r = fs_getattr(ctx_of(req)->fs, ino, &a);
	reply_attr_or_err(req, r, &a);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	(void)fi;
	struct fs_setattr sa = { .mode = attr->st_mode, .uid = attr->st_uid,
				 .gid = attr->st_gid, .size = (uint64_t)attr->st_size,
				 .atime = attr->st_atim, .mtime = attr->st_mtim,
				 .ctime = attr->st_ctim };
	const struct { int fuse; unsigned fs; } map[] = {
		{ FUSE_SET_ATTR_MODE, FS_SET_MODE }, { FUSE_SET_ATTR_UID, FS_SET_UID },
		{ FUSE_SET_ATTR_GID, FS_SET_GID }, { FUSE_SET_ATTR_SIZE, FS_SET_SIZE },
		{ FUSE_SET_ATTR_ATIME, FS_SET_ATIME }, { FUSE_SET_ATTR_MTIME, FS_SET_MTIME },
		{ FUSE_SET_ATTR_ATIME_NOW, FS_SET_ATIME_NOW },
		{ FUSE_SET_ATTR_MTIME_NOW, FS_SET_MTIME_NOW }, { FUSE_SET_ATTR_CTIME, FS_SET_CTIME },
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (to_set & map[i].fuse)
			sa.valid |= map[i].fs;
	struct fs_attr a;
	int r = fs_setattr(ctx_of(req)->fs, ino, &sa, &a);
	reply_attr_or_err(req, r, &a);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[4097];
	ssize_t n = fs_readlink(ctx_of(req)->fs, ino, buf, sizeof(buf) - 1);
	if (n < 0) {
		fuse_reply_err(req, (int)-n);
		return;
	}
	buf[n] = '\0';
	fuse_reply_readlink(req, buf);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	(void)rdev;
	struct fs_ctx c = caller_of(req);
	struct fs_attr a;
	int r = fs_mknod(ctx_of(req)->fs, &c, parent, name, mode, &a);
	reply_entry_or_err(req, r, &a);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fs_ctx c = caller_of(req);
	struct fs_attr a;
	int r = fs_mkdir(ctx_of(req)->fs, &c, parent, name, mode, &a);
	reply_entry_or_err(req, r, &a);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -fs_unlink(ctx_of(req)->fs, parent, name));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -fs_rmdir(ctx_of(req)->fs, parent, name));
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct fs_ctx c = caller_of(req);
	struct fs_attr a;
	int r = fs_symlink(ctx_of(req)->fs, &c, link, parent, name, &a);
	reply_entry_or_err(req, r, &a);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	fuse_reply_err(req, -fs_rename(ctx_of(req)->fs, parent, name, newparent, newname, flags));
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct fs_attr a;
	int r = fs_link(ctx_of(req)->fs, ino, newparent, newname, &a);
	reply_entry_or_err(req, r, &a);
}

/* ---- files ---- */

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct fs_ctx c = caller_of(req);
	struct fs_attr a;
	uint64_t fh;
	int r = fs_create(ctx_of(req)->fs, &c, parent, name, mode, fi->flags, &a, &fh);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = fh;
	struct fuse_entry_param e;
	entry_of(req, &a, &e);
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		/* The opener was interrupted: give back the handle and count. */
		fs_release(ctx_of(req)->fs, a.ino, fh);
		fs_forget(ctx_of(req)->fs, a.ino, 1);
	}
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	uint64_t fh;
	int r = fs_open(ctx_of(req)->fs, ino, fi->flags, &fh);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = fh;
	if (fuse_reply_open(req, fi) == -ENOENT)
		fs_release(ctx_of(req)->fs, ino, fh);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	char *buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ssize_t n = fs_read(ctx_of(req)->fs, ino, fi->fh, buf, size, off);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		     off_t off, struct fuse_file_info *fi)
{
	ssize_t n = fs_write(ctx_of(req)->fs, ino, fi->fh, buf, size, off);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

/* close(): the data written through this file must survive kill -9 once
 * close returns, and close waits for FLUSH (RELEASE is asynchronous). */
static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, -fs_flush(ctx_of(req)->fs, ino, fi->fh));
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, -fs_release(ctx_of(req)->fs, ino, fi->fh));
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	fuse_reply_err(req, -fs_fsync(ctx_of(req)->fs, ino, fi->fh, datasync));
}

/* ---- directories ---- */

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	uint64_t fh;
	int r = fs_opendir(ctx_of(req)->fs, ino, &fh);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = fh;
	/* The kernel may answer getdents from its copy of the listing: every
	 * change to a directory goes through this mount, and the kernel drops
	 * the copy on each create, link, unlink, rename and mkdir in it. A mail
	 * store lists new/ and cur/ at every pickup; cur/ rarely changes. */
	if (ctx_of(req)->cfg.dir_cache) {
		fi->cache_readdir = 1;
		fi->keep_cache = 1;
	}
	fuse_reply_open(req, fi);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, -fs_releasedir(ctx_of(req)->fs, ino, fi->fh));
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	fuse_reply_err(req, -fs_fsyncdir(ctx_of(req)->fs, ino, fi->fh, datasync));
}

struct dirbuf {
	fuse_req_t req;
	char *buf;
	size_t size, used;
};

static int add_plain(void *arg, const char *name, size_t len, const struct fs_attr *a,
		     uint64_t next_off)
{
	struct dirbuf *d = arg;
	char nm[256];
	memcpy(nm, name, len);
	nm[len] = '\0';
	struct stat st = { .st_ino = a->ino, .st_mode = a->mode };
	size_t need = fuse_add_direntry(d->req, d->buf + d->used, d->size - d->used, nm, &st,
					(off_t)next_off);
	if (need > d->size - d->used)
		return 1;
	d->used += need;
	return 0;
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct dirbuf d = { .req = req, .buf = malloc(size), .size = size };
	if (!d.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	int r = fs_readdir(ctx_of(req)->fs, ino, fi->fh, (uint64_t)off, add_plain, &d);
	if (r)
		fuse_reply_err(req, -r);
	else
		fuse_reply_buf(req, d.buf, d.used);
	free(d.buf);
}

/* readdirplus: names first, lookups after (see the top of the file). */
struct name_batch {
	size_t n, max;
	struct { char name[256]; uint64_t off; uint32_t mode; uint64_t ino; } *e;
};

static int collect(void *arg, const char *name, size_t len, const struct fs_attr *a,
		   uint64_t next_off)
{
	struct name_batch *b = arg;
	if (b->n == b->max)
		return 1;
	memcpy(b->e[b->n].name, name, len);
	b->e[b->n].name[len] = '\0';
	b->e[b->n].off = next_off;
	b->e[b->n].mode = a->mode;
	b->e[b->n].ino = a->ino;
	b->n++;
	return 0;
}

static bool is_dot(const char *n)
{
	return n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'));
}

/* Add one entry with attributes; false when it did not fit. */
static bool add_plus(struct dirbuf *d, struct fs *fs, fuse_ino_t dir, const char *name,
		     uint64_t off, uint64_t ino, uint32_t mode)
{
	struct fuse_entry_param e = { 0 };
	struct fs_attr a;
	bool counted = false;
	if (is_dot(name)) {
		/* The kernel takes no count for these: node id 0, no lookup. */
		e.attr.st_ino = ino;
		e.attr.st_mode = mode;
	} else if (fs_lookup(fs, dir, name, &a) == 0) {
		entry_of(d->req, &a, &e);
		counted = true;
	} else {
		return true;                 /* gone meanwhile: skip it */
	}
	size_t need = fuse_add_direntry_plus(d->req, d->buf + d->used, d->size - d->used,
					     name, &e, (off_t)off);
	if (need > d->size - d->used) {
		if (counted)
			fs_forget(fs, a.ino, 1);
		return false;
	}
	d->used += need;
	return true;
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	struct fs *fs = ctx_of(req)->fs;
	struct dirbuf d = { .req = req, .buf = malloc(size), .size = size };
	struct name_batch b = { .max = size / 32 + 2 };
	b.e = malloc(b.max * sizeof(*b.e));
	int r = d.buf && b.e ? fs_readdir(fs, ino, fi->fh, (uint64_t)off, collect, &b) : -ENOMEM;
	for (size_t i = 0; !r && i < b.n; i++)
		if (!add_plus(&d, fs, ino, b.e[i].name, b.e[i].off, b.e[i].ino, b.e[i].mode))
			break;
	if (r)
		fuse_reply_err(req, -r);
	else
		fuse_reply_buf(req, d.buf, d.used);
	free(b.e);
	free(d.buf);
}

/* ---- whole filesystem ---- */

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct statvfs st;
	int r = fs_statfs(ctx_of(req)->fs, &st);
	if (r)
		fuse_reply_err(req, -r);
	else
		fuse_reply_statfs(req, &st);
}

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.create = op_create,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsyncdir,
	.statfs = op_statfs,
};

const struct fuse_lowlevel_ops *cat_fuse_ops(void)
{
	return &ops;
}
