/*
 * fs_file.c - open files: open, read, write, fsync, release, and setattr
 * (which truncates).
 *
 * File data is journaled like metadata (data=journal): a write is atomic
 * per FS_WRITE_ATOMIC step, and after a crash a file never shows blocks of
 * a write whose transaction did not commit. Bytes beyond the size inside
 * the last block are always zero (truncate zeroes them), so extending a
 * file never exposes old data.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fs/fs_internal.h"

struct fs_handle {
	int flags;
};

static uint64_t max_file_size(void)
{
	uint64_t b = FS_NDIRECT, p = 1;
	for (unsigned i = 0; i < FS_MAX_HEIGHT; i++)
		p *= FS_INDEX_FANOUT;
	b += p;
	return b > (UINT64_MAX >> 13) ? UINT64_MAX >> 1 : b * FS_BLOCK_SIZE;
}

/* ---- truncation ---- */

static int zero_tail(struct fs *fs, struct tx *tx, struct inode *ip, uint64_t size)
{
	uint32_t off = (uint32_t)(size % FS_BLOCK_SIZE);
	if (off == 0)
		return 0;
	struct buf *b;
	int r = inode_block(fs, NULL, ip, size / FS_BLOCK_SIZE, false, &b);
	if (r || !b)
		return r;
	tx_add(tx, b);
	memset(b->data + off, 0, FS_BLOCK_SIZE - off);
	bcache_release(fs->cache, b);
	return 0;
}

#define TRUNCATE_STEP 64u

/* Inside tx: set the size; free what fits in this tx. *more: the rest has
 * to be freed by inode_finish_truncate after the tx (the inode is then on
 * the orphan directory, so a crash finishes the job at mount). */
static int set_size(struct fs *fs, struct tx *tx, struct inode *ip, uint64_t size, bool *more)
{
	*more = false;
	if (size >= ip->d.size) {
		ip->d.size = size;
		return 0;
	}
	int r = zero_tail(fs, tx, ip, size);
	ip->d.size = size;
	bool done = true;
	if (!r)
		r = inode_free_range(fs, tx, ip, (size + FS_BLOCK_SIZE - 1) / FS_BLOCK_SIZE,
				     TRUNCATE_STEP, &done);
	if (!r && !done) {
		r = orphan_add(fs, tx, ip);
		*more = true;
	}
	return r;
}

static unsigned setattr_credits(void)
{
	return INODE_UPDATE_CREDITS + 2 + ORPHAN_CREDITS + inode_free_credits(TRUNCATE_STEP);
}

/* ---- attributes ---- */

static void apply_times(struct inode *ip, const struct fs_setattr *sa)
{
	struct timespec now = fs_now();
	if (sa->valid & (FS_SET_ATIME | FS_SET_ATIME_NOW)) {
		struct timespec t = sa->valid & FS_SET_ATIME_NOW ? now : sa->atime;
		ip->d.atime_sec = t.tv_sec;
		ip->d.atime_nsec = (uint32_t)t.tv_nsec;
	}
	if (sa->valid & (FS_SET_MTIME | FS_SET_MTIME_NOW)) {
		struct timespec t = sa->valid & FS_SET_MTIME_NOW ? now : sa->mtime;
		ip->d.mtime_sec = t.tv_sec;
		ip->d.mtime_nsec = (uint32_t)t.tv_nsec;
	}
	struct timespec c = sa->valid & FS_SET_CTIME ? sa->ctime : now;
	ip->d.ctime_sec = c.tv_sec;
	ip->d.ctime_nsec = (uint32_t)c.tv_nsec;
}

static int check_setattr(const struct inode *ip, const struct fs_setattr *sa)
{
	if ((sa->valid & (FS_SET_ATIME | FS_SET_MTIME | FS_SET_CTIME)) &&
	    ((sa->atime.tv_nsec < 0 || sa->atime.tv_nsec >= 1000000000L) ||
	     (sa->mtime.tv_nsec < 0 || sa->mtime.tv_nsec >= 1000000000L) ||
	     (sa->ctime.tv_nsec < 0 || sa->ctime.tv_nsec >= 1000000000L)))
		return -EINVAL;
	if (!(sa->valid & FS_SET_SIZE))
		return 0;
	if (S_ISDIR(ip->d.mode))
		return -EISDIR;
	if (!S_ISREG(ip->d.mode))
		return -EINVAL;
	return sa->size > max_file_size() ? -EFBIG : 0;
}

static int setattr_locked(struct fs *fs, struct inode *ip, const struct fs_setattr *sa,
			  uint64_t *seq, bool *more)
{
	int r = check_setattr(ip, sa);
	struct tx tx;
	if (r || (r = tx_begin(fs->j, setattr_credits(), &tx)))
		return r;
	if (sa->valid & FS_SET_MODE)
		ip->d.mode = (ip->d.mode & S_IFMT) | (sa->mode & 07777);
	if (sa->valid & FS_SET_UID)
		ip->d.uid = sa->uid;
	if (sa->valid & FS_SET_GID)
		ip->d.gid = sa->gid;
	if (sa->valid & FS_SET_SIZE) {
		r = set_size(fs, &tx, ip, sa->size, more);
		fs_touch(ip, true, false);
	}
	apply_times(ip, sa);
	if (!r)
		r = inode_update(fs, &tx, ip);
	*seq = tx_end(&tx);
	return r;
}

int fs_setattr(struct fs *fs, uint64_t ino, const struct fs_setattr *sa, struct fs_attr *out)
{
	struct inode *ip;
	int r = fs_writable(fs);
	if (r || (r = inode_get(fs, ino, &ip)))
		return r;
	uint64_t seq = 0;
	bool more = false;
	pthread_mutex_lock(&ip->lock);
	r = setattr_locked(fs, ip, sa, &seq, &more);
	if (!r && more)
		r = inode_finish_truncate(fs, ip);
	if (!r && out)
		fs_attr_of(ip, out);
	pthread_mutex_unlock(&ip->lock);
	inode_put(fs, ip);
	return r ? r : fs_commit_wait(fs, seq);
}

/* ---- open, release ---- */

int fs_open_inode(struct fs *fs, struct inode *ip, int flags, uint64_t *fh)
{
	bool writing = (flags & O_ACCMODE) != O_RDONLY;
	int r = writing ? fs_writable(fs) : 0;
	if (r)
		return r;
	if (S_ISDIR(ip->d.mode) && writing)
		return -EISDIR;
	if (writing && (flags & O_TRUNC) && S_ISREG(ip->d.mode)) {
		struct fs_setattr sa = { .valid = FS_SET_SIZE | FS_SET_MTIME_NOW, .size = 0 };
		uint64_t seq;
		bool more = false;
		pthread_mutex_lock(&ip->lock);
		if (ip->d.size)
			r = setattr_locked(fs, ip, &sa, &seq, &more);
		if (!r && more)
			r = inode_finish_truncate(fs, ip);
		pthread_mutex_unlock(&ip->lock);
		if (r)
			return r;
	}
	struct fs_handle *h = malloc(sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->flags = flags;
	fs_count_open(fs, ip, 1);
	*fh = (uint64_t)(uintptr_t)h;
	return 0;
}

int fs_open(struct fs *fs, uint64_t ino, int flags, uint64_t *fh)
{
	struct inode *ip;
	int r = inode_get(fs, ino, &ip);
	if (r)
		return r;
	r = S_ISDIR(ip->d.mode) ? -EISDIR : fs_open_inode(fs, ip, flags, fh);
	inode_put(fs, ip);
	return r;
}

static uint64_t last_seq_of(struct inode *ip)
{
	pthread_mutex_lock(&ip->lock);
	uint64_t seq = ip->last_seq;
	pthread_mutex_unlock(&ip->lock);
	return seq;
}

int fs_release(struct fs *fs, uint64_t ino, uint64_t fh)
{
	struct inode *ip;
	int r = inode_get(fs, ino, &ip);
	if (r)
		return r;
	/* close(): the file's data must survive kill -9 from here on. */
	r = journal_wait(fs->j, last_seq_of(ip), false);
	free((struct fs_handle *)(uintptr_t)fh);
	fs_count_open(fs, ip, -1);
	int r2 = fs_maybe_reclaim(fs, ip);
	inode_put(fs, ip);
	return r ? r : r2;
}

int fs_flush(struct fs *fs, uint64_t ino, uint64_t fh)
{
	(void)fh;
	struct inode *ip;
	int r = inode_get(fs, ino, &ip);
	if (r)
		return r;
	uint64_t seq = last_seq_of(ip);
	inode_put(fs, ip);
	return journal_wait(fs->j, seq, false);
}

int fs_fsync(struct fs *fs, uint64_t ino, uint64_t fh, bool datasync)
{
	(void)fh, (void)datasync;
	struct inode *ip;
	int r = inode_get(fs, ino, &ip);
	if (r)
		return r;
	inode_put(fs, ip);
	/* DESIGN.md §1: everything that returned before fsync is durable
	 * after it, not just this file: commit what runs, flush. */
	return journal_sync(fs->j);
}

/* ---- read, write ---- */

ssize_t fs_read(struct fs *fs, uint64_t ino, uint64_t fh, void *buf, size_t size, off_t off)
{
	(void)fh;
	struct inode *ip;
	if (off < 0)
		return -EINVAL;
	int r = inode_get(fs, ino, &ip);
	if (r)
		return r;
	pthread_mutex_lock(&ip->lock);
	uint64_t pos = (uint64_t)off, end = pos + size;
	if (S_ISDIR(ip->d.mode))
		r = -EISDIR;
	if (end > ip->d.size)
		end = ip->d.size > pos ? ip->d.size : pos;
	size_t done = 0;
	while (!r && pos < end) {
		uint64_t lblk = pos / FS_BLOCK_SIZE;
		size_t in = (size_t)(pos % FS_BLOCK_SIZE);
		size_t n = FS_BLOCK_SIZE - in < end - pos ? FS_BLOCK_SIZE - in : (size_t)(end - pos);
		struct buf *b;
		if ((r = inode_block(fs, NULL, ip, lblk, false, &b)))
			break;
		if (b)
			memcpy((char *)buf + done, b->data + in, n);
		else
			memset((char *)buf + done, 0, n);       /* a hole */
		bcache_release(fs->cache, b);
		pos += n;
		done += n;
	}
	pthread_mutex_unlock(&ip->lock);
	inode_put(fs, ip);
	return done ? (ssize_t)done : r;
}

/* Journal blocks a write of nblocks file blocks may change: the data, the
 * index blocks above them (and a taller tree), the bitmap blocks, the inode. */
static unsigned write_credits(unsigned nblocks)
{
	return nblocks + FS_MAX_HEIGHT * (nblocks / FS_INDEX_FANOUT + 3) +
	       2 * (nblocks / (FS_BLOCK_SIZE * 8) + 2) + 2;
}

/* Blocks per write transaction: FS_WRITE_ATOMIC, less if the journal is small. */
static unsigned write_step_blocks(struct fs *fs)
{
	unsigned max = journal_max_credits(fs->j);
	unsigned n = FS_WRITE_ATOMIC / FS_BLOCK_SIZE;
	while (n > 1 && write_credits(n) > max)
		n--;
	return n;
}

/* One atomic step: up to `len` bytes at pos, in one tx. */
static ssize_t write_step(struct fs *fs, struct inode *ip, const char *src, size_t len,
			  uint64_t pos, uint64_t *seq)
{
	unsigned nblocks = (unsigned)((pos % FS_BLOCK_SIZE + len + FS_BLOCK_SIZE - 1) / FS_BLOCK_SIZE);
	struct tx tx;
	int r = tx_begin(fs->j, write_credits(nblocks), &tx);
	if (r)
		return r;
	size_t done = 0;
	while (done < len) {
		uint64_t p = pos + done;
		size_t in = (size_t)(p % FS_BLOCK_SIZE);
		size_t n = FS_BLOCK_SIZE - in < len - done ? FS_BLOCK_SIZE - in : len - done;
		struct buf *b;
		if ((r = inode_block(fs, &tx, ip, p / FS_BLOCK_SIZE, true, &b)))
			break;
		memcpy(b->data + in, src + done, n);
		bcache_release(fs->cache, b);
		done += n;
	}
	if (pos + done > ip->d.size)
		ip->d.size = pos + done;
	fs_touch(ip, done > 0, done > 0);
	int ru = inode_update(fs, &tx, ip);
	*seq = tx_end(&tx);
	if (!r)
		r = ru;
	return done ? (ssize_t)done : r;
}

ssize_t fs_write(struct fs *fs, uint64_t ino, uint64_t fh, const void *buf, size_t size,
		 off_t off)
{
	const struct fs_handle *h = (const struct fs_handle *)(uintptr_t)fh;
	struct inode *ip;
	int r = fs_writable(fs);
	if (r || (r = inode_get(fs, ino, &ip)))
		return r;
	pthread_mutex_lock(&ip->lock);
	uint64_t pos = h && (h->flags & O_APPEND) ? ip->d.size : (uint64_t)off;
	if (!S_ISREG(ip->d.mode))
		r = S_ISDIR(ip->d.mode) ? -EISDIR : -EINVAL;
	else if (off < 0 && !(h && (h->flags & O_APPEND)))
		r = -EINVAL;
	else if (pos + size > max_file_size() || pos + size < pos)
		r = -EFBIG;
	size_t done = 0, step = (size_t)write_step_blocks(fs) * FS_BLOCK_SIZE;
	uint64_t seq = 0;
	while (!r && done < size) {
		size_t room = step - (size_t)((pos + done) % FS_BLOCK_SIZE);
		size_t n = size - done < room ? size - done : room;
		ssize_t w = write_step(fs, ip, (const char *)buf + done, n, pos + done, &seq);
		if (w < 0)
			r = (int)w;
		else
			done += (size_t)w;
		if (w >= 0 && (size_t)w < n)
			break;
	}
	pthread_mutex_unlock(&ip->lock);
	inode_put(fs, ip);
	if (done && fs->opts.sync)
		r = journal_wait(fs->j, seq, true);
	return done && r >= 0 ? (ssize_t)done : r;
}
