/*
 * fs_tree.c - running model operations on the engine and walking its tree
 * (contract: fs_tree.h).
 */
#include "tests/unit/helpers/fs_tree.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- id -> inode ---- */

void inomap_init(struct inomap *im, size_t cap)
{
	im->ino = calloc(cap, sizeof(*im->ino));
	im->cap = cap;
	if (!im->ino)
		abort();
}

void inomap_free(struct inomap *im)
{
	free(im->ino);
	im->ino = NULL;
}

void inomap_set(struct inomap *im, uint64_t id, uint64_t ino)
{
	if (id >= im->cap) {
		fprintf(stderr, "inomap: id %llu beyond capacity %zu\n", (unsigned long long)id,
			im->cap);
		abort();
	}
	im->ino[id] = ino;
}

uint64_t inomap_get(const struct inomap *im, uint64_t id)
{
	return id < im->cap ? im->ino[id] : 0;
}

/* ---- lookup counts ---- */

void lookups_add(struct lookups *l, uint64_t ino)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->ino[i] == ino) {
			l->count[i]++;
			return;
		}
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->ino = realloc(l->ino, l->cap * sizeof(*l->ino));
		l->count = realloc(l->count, l->cap * sizeof(*l->count));
		if (!l->ino || !l->count)
			abort();
	}
	l->ino[l->n] = ino;
	l->count[l->n++] = 1;
}

void lookups_forget(struct fs *fs, struct lookups *l)
{
	for (size_t i = 0; i < l->n; i++)
		fs_forget(fs, l->ino[i], l->count[i]);
	l->n = 0;
}

void lookups_free(struct lookups *l)
{
	free(l->ino);
	free(l->count);
	memset(l, 0, sizeof(*l));
}

/* ---- operations ---- */

static const struct fs_ctx CTX = { 1000, 1000 };

static int wrong(char *msg, size_t len, const char *fmt, unsigned long long a,
		 unsigned long long b)
{
	snprintf(msg, len, fmt, a, b);
	return FSOP_WRONG;
}

static int exec_write(struct fs *fs, uint64_t ino, const struct fsop *op, char *msg, size_t len)
{
	uint64_t fh;
	int r = fs_open(fs, ino, O_WRONLY, &fh);
	if (r)
		return r;
	uint8_t *buf = malloc(op->len ? op->len : 1);
	if (!buf)
		abort();
	fsop_pattern(op->seed, buf, op->len);
	ssize_t w = fs_write(fs, ino, fh, buf, op->len, (off_t)op->off);
	free(buf);
	r = fs_release(fs, ino, fh);
	if (w < 0)
		return (int)w;
	if ((uint64_t)w != op->len)
		return wrong(msg, len, "short write: %llu of %llu bytes", (unsigned long long)w,
			     op->len);
	return r;
}

static int exec_made(const struct fsop *op, struct inomap *im,
		     struct lookups *lk, const struct fs_attr *a, uint32_t type, char *msg,
		     size_t len)
{
	inomap_set(im, op->newid, a->ino);
	lookups_add(lk, a->ino);
	if ((a->mode & S_IFMT) != type)
		return wrong(msg, len, "new inode %llu has mode %llo", a->ino, a->mode);
	return 0;
}

int fsop_exec(struct fs *fs, const struct fsop *op, struct inomap *im, struct lookups *lk,
	      char *msg, size_t len)
{
	struct fs_attr a;
	uint64_t ia = inomap_get(im, op->a), ib = inomap_get(im, op->b), fh;
	int r = 0;
	switch (op->kind) {
	case OP_MKDIR:
		r = fs_mkdir(fs, &CTX, ia, op->name, 0755, &a);
		return r ? r : exec_made(op, im, lk, &a, S_IFDIR, msg, len);
	case OP_CREATE:
		r = fs_create(fs, &CTX, ia, op->name, 0644, O_CREAT | O_EXCL | O_RDWR, &a, &fh);
		if (r)
			return r;
		r = exec_made(op, im, lk, &a, S_IFREG, msg, len);
		int rr = fs_release(fs, a.ino, fh);
		return r ? r : rr;
	case OP_SYMLINK:
		r = fs_symlink(fs, &CTX, op->name2, ia, op->name, &a);
		return r ? r : exec_made(op, im, lk, &a, S_IFLNK, msg, len);
	case OP_LINK:
		r = fs_link(fs, ia, ib, op->name, &a);
		if (r)
			return r;
		lookups_add(lk, a.ino);
		return a.ino == ia ? 0 : wrong(msg, len, "link returned inode %llu, not %llu", a.ino, ia);
	case OP_UNLINK:
		return fs_unlink(fs, ia, op->name);
	case OP_RMDIR:
		return fs_rmdir(fs, ia, op->name);
	case OP_RENAME:
		return fs_rename(fs, ia, op->name, ib, op->name2, op->flags);
	case OP_WRITE:
		return exec_write(fs, ia, op, msg, len);
	case OP_TRUNCATE: {
		struct fs_setattr sa = { .valid = FS_SET_SIZE, .size = op->off };
		r = fs_setattr(fs, ia, &sa, &a);
		if (r)
			return r;
		return a.size == op->off ? 0 : wrong(msg, len, "size %llu after truncate to %llu",
						       a.size, op->off);
	}
	case OP_LOOKUP:
		r = fs_lookup(fs, ia, op->name, &a);
		if (r)
			return r;
		lookups_add(lk, a.ino);
		if (op->result_id && a.ino != inomap_get(im, op->result_id))
			return wrong(msg, len, "lookup found inode %llu, not %llu", a.ino,
				     inomap_get(im, op->result_id));
		return 0;
	case OP_READLINK: {
		char buf[4100];
		ssize_t n = fs_readlink(fs, ia, buf, sizeof(buf));
		if (n < 0)
			return (int)n;
		if ((size_t)n != strlen(op->name2) || memcmp(buf, op->name2, (size_t)n))
			return wrong(msg, len, "readlink: %llu bytes, want %llu", (unsigned long long)n,
				     strlen(op->name2));
		return 0;
	}
	case OP_FSYNC:
		return fs_fsync(fs, ia, 0, false);
	case OP_FSYNCDIR:
		return fs_fsyncdir(fs, ia, 0, false);
	case OP_SYNCFS:
		return fs_syncfs(fs);
	}
	return -ENOSYS;
}

/* ---- listings ---- */

void dlist_free(struct dlist *l)
{
	free(l->e);
	memset(l, 0, sizeof(*l));
}

struct list_ctx {
	struct dlist *out;
	unsigned batch, taken;
	uint64_t last_off;
};

static int list_fill(void *arg, const char *name, size_t namelen, const struct fs_attr *a,
		     uint64_t next_off)
{
	struct list_ctx *c = arg;
	if (c->taken == c->batch)
		return 1;
	struct dlist *l = c->out;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->e = realloc(l->e, l->cap * sizeof(*l->e));
		if (!l->e)
			abort();
	}
	struct dent *e = &l->e[l->n++];
	size_t n = namelen < 255 ? namelen : 255;
	memcpy(e->name, name, n);
	e->name[n] = 0;
	e->ino = a->ino;
	e->mode = a->mode & S_IFMT;
	e->off = next_off;
	c->taken++;
	c->last_off = next_off;
	return 0;
}

int fs_list(struct fs *fs, uint64_t ino, unsigned batch, struct dlist *out)
{
	uint64_t fh, off = 0;
	out->n = 0;
	int r = fs_opendir(fs, ino, &fh);
	if (r)
		return r;
	struct list_ctx c = { .out = out, .batch = batch ? batch : 1 };
	for (unsigned calls = 0; calls < 50000000u; calls++) {
		c.taken = 0;
		if ((r = fs_readdir(fs, ino, fh, off, list_fill, &c)))
			break;
		if (c.taken < c.batch)
			break;
		off = c.last_off;
	}
	int r2 = fs_releasedir(fs, ino, fh);
	return r ? r : r2;
}

/* ---- snapshots ---- */

int fs_read_all(struct fs *fs, uint64_t ino, uint64_t size, uint8_t **out)
{
	uint64_t fh;
	*out = NULL;
	int r = fs_open(fs, ino, O_RDONLY, &fh);
	if (r)
		return r;
	uint8_t *buf = malloc(size + 1);
	if (!buf)
		abort();
	uint64_t done = 0;
	while (!r && done < size) {
		size_t want = size - done < (1u << 20) ? (size_t)(size - done) : (1u << 20);
		ssize_t n = fs_read(fs, ino, fh, buf + done, want, (off_t)done);
		if (n <= 0)
			r = n < 0 ? (int)n : -EIO;      /* short file */
		else
			done += (uint64_t)n;
	}
	if (!r) {
		char x;
		ssize_t n = fs_read(fs, ino, fh, &x, 1, (off_t)size);
		if (n != 0)
			r = n < 0 ? (int)n : -EFBIG;   /* data beyond the size */
	}
	int r2 = fs_release(fs, ino, fh);
	if (!r)
		r = r2;
	if (r)
		free(buf);
	else
		*out = buf;
	return r;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct dent *)a)->name, ((const struct dent *)b)->name);
}

static uint8_t type_of(uint32_t mode)
{
	return S_ISDIR(mode) ? M_DIR : S_ISREG(mode) ? M_REG : S_ISLNK(mode) ? M_LNK : 0;
}

static int snap_entry(struct fs *fs, uint64_t dir, const struct dent *e, const char *path,
		      struct snap *s, struct prng *r, char *msg, size_t len);

static int snap_tree(struct fs *fs, uint64_t ino, uint64_t parent, const char *path,
		     struct snap *s, struct prng *r, char *msg, size_t len)
{
	struct dlist l = { 0 };
	unsigned batch = r ? 1 + (unsigned)prng_below(r, 40) : 64;
	int rc = fs_list(fs, ino, batch, &l);
	if (rc) {
		snprintf(msg, len, "readdir of '%s' (inode %llu): %d", path, (unsigned long long)ino, rc);
		goto out;
	}
	rc = 1;
	if (l.n < 2 || strcmp(l.e[0].name, ".") || l.e[0].ino != ino || strcmp(l.e[1].name, "..") ||
	    l.e[1].ino != parent) {
		snprintf(msg, len, "readdir of '%s': bad '.'/'..' (parent inode %llu wanted)", path,
			 (unsigned long long)parent);
		goto out;
	}
	qsort(l.e + 2, l.n - 2, sizeof(*l.e), by_name);
	for (size_t i = 3; i < l.n; i++)
		if (strcmp(l.e[i - 1].name, l.e[i].name) == 0) {
			snprintf(msg, len, "readdir of '%s' returned '%.80s' twice", path, l.e[i].name);
			goto out;
		}
	rc = 0;
	char *child = malloc(strlen(path) + 300);
	for (size_t i = 2; !rc && i < l.n; i++) {
		sprintf(child, "%s%s%s", path, *path ? "/" : "", l.e[i].name);
		rc = snap_entry(fs, ino, &l.e[i], child, s, r, msg, len);
	}
	free(child);
out:
	dlist_free(&l);
	return rc;
}

static int snap_entry(struct fs *fs, uint64_t dir, const struct dent *e, const char *path,
		      struct snap *s, struct prng *r, char *msg, size_t len)
{
	struct fs_attr a;
	int rc = fs_lookup(fs, dir, e->name, &a);
	if (rc) {
		snprintf(msg, len, "lookup of listed '%.100s': %d", path, rc);
		return 1;
	}
	fs_forget(fs, a.ino, 1);
	if (a.ino != e->ino || (a.mode & S_IFMT) != e->mode) {
		snprintf(msg, len, "'%.100s': readdir says inode %llu mode %o, lookup %llu mode %o",
			 path, (unsigned long long)e->ino, e->mode, (unsigned long long)a.ino,
			 a.mode & S_IFMT);
		return 1;
	}
	uint8_t t = type_of(a.mode);
	if (t == M_DIR) {
		snap_add(s, path, M_DIR, a.nlink, 0, 0, a.ino);
		return snap_tree(fs, a.ino, dir, path, s, r, msg, len);
	}
	if (t == M_LNK) {
		char buf[4100];
		ssize_t n = fs_readlink(fs, a.ino, buf, sizeof(buf));
		if (n < 0 || (uint64_t)n != a.size) {
			snprintf(msg, len, "readlink '%.100s': %zd (size %llu)", path, n,
				 (unsigned long long)a.size);
			return 1;
		}
		snap_add(s, path, M_LNK, a.nlink, a.size, hash_bytes(HASH_INIT, buf, (size_t)n), a.ino);
		return 0;
	}
	uint8_t *data;
	if ((rc = fs_read_all(fs, a.ino, a.size, &data))) {
		snprintf(msg, len, "reading '%.100s' (%llu bytes): %d", path,
			 (unsigned long long)a.size, rc);
		return 1;
	}
	snap_add(s, path, M_REG, a.nlink, a.size, hash_bytes(HASH_INIT, data, a.size), a.ino);
	free(data);
	return 0;
}

int fs_snap(struct fs *fs, uint64_t ino, uint64_t parent, struct snap *s, struct prng *r,
	    char *msg, size_t len)
{
	struct fs_attr a;
	snap_init(s);
	int rc = fs_getattr(fs, ino, &a);
	if (rc) {
		snprintf(msg, len, "getattr of the top directory %llu: %d", (unsigned long long)ino, rc);
		return 1;
	}
	snap_add(s, "", M_DIR, a.nlink, 0, 0, ino);
	rc = snap_tree(fs, ino, parent, "", s, r, msg, len);
	snap_finish(s);
	return rc;
}

int fs_compare(struct fs *fs, uint64_t ino, uint64_t parent, struct model *m,
	       struct mnode *dir, struct prng *r, char *msg, size_t len)
{
	struct snap want, got;
	int rc = fs_snap(fs, ino, parent, &got, r, msg, len);
	if (!rc) {
		model_snap(m, dir, &want);
		rc = snap_diff(&want, &got, msg, len);
		snap_free(&want);
	}
	snap_free(&got);
	return rc;
}
