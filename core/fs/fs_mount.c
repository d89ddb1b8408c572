/*
 * fs_mount.c - format, mount (journal replay, orphan reclaim), unmount,
 * statfs, syncfs, statistics, and the helpers the operation files share.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "blockdev/bdev.h"
#include "core/base/error.h"
#include "core/base/log.h"
#include "core/base/util.h"
#include "core/fs/dir.h"
#include "core/fs/fs_internal.h"

int fs_corrupt(struct fs *fs, const char *what, uint64_t id)
{
	(void)fs;
	cat_log(CAT_LOG_ERROR, "filesystem: corrupt %s %" PRIu64 " (run catamaran fsck)",
		what, id);
	return -EUCLEAN;
}

struct timespec fs_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

void fs_attr_of(const struct inode *ip, struct fs_attr *a)
{
	*a = (struct fs_attr){
		.ino = ip->ino, .mode = ip->d.mode, .nlink = ip->d.nlink,
		.uid = ip->d.uid, .gid = ip->d.gid,
		/* a directory's size: the bytes of its blocks, as ext4 reports */
		.size = S_ISDIR(ip->d.mode) ? ip->d.blocks * FS_BLOCK_SIZE : ip->d.size,
		.blocks = ip->d.blocks * (FS_BLOCK_SIZE / 512),
		.atime = { ip->d.atime_sec, ip->d.atime_nsec },
		.mtime = { ip->d.mtime_sec, ip->d.mtime_nsec },
		.ctime = { ip->d.ctime_sec, ip->d.ctime_nsec },
		.generation = ip->d.generation,
	};
}

void fs_touch(struct inode *ip, bool mtime, bool ctime)
{
	struct timespec t = fs_now();
	if (mtime) {
		ip->d.mtime_sec = t.tv_sec;
		ip->d.mtime_nsec = (uint32_t)t.tv_nsec;
	}
	if (ctime) {
		ip->d.ctime_sec = t.tv_sec;
		ip->d.ctime_nsec = (uint32_t)t.tv_nsec;
	}
}

int fs_writable(struct fs *fs)
{
	if (fs->opts.read_only)
		return -EROFS;
	int e = journal_error(fs->j);
	return e ? -EROFS : 0;
}

/* Wait for seq to be in the log (durable under -o sync). */
int fs_commit_wait(struct fs *fs, uint64_t seq)
{
	return journal_wait(fs->j, seq, fs->opts.sync);
}

void fs_count_lookup(struct fs *fs, struct inode *ip, int64_t delta)
{
	pthread_mutex_lock(&fs->itable_lock);
	if (delta < 0 && (uint64_t)-delta > ip->lookups)
		ip->lookups = 0;
	else
		ip->lookups = (uint64_t)((int64_t)ip->lookups + delta);
	pthread_mutex_unlock(&fs->itable_lock);
}

void fs_count_open(struct fs *fs, struct inode *ip, int delta)
{
	pthread_mutex_lock(&fs->itable_lock);
	ip->opens = (uint32_t)((int)ip->opens + delta);
	pthread_mutex_unlock(&fs->itable_lock);
}

/* With ip->lock held: free an unlinked inode nobody uses any more. */
int fs_maybe_reclaim_locked(struct fs *fs, struct inode *ip)
{
	if (ip->d.nlink != 0 || ip->dead || fs->opts.read_only)
		return 0;
	pthread_mutex_lock(&fs->itable_lock);
	bool unused = ip->refs == 1 && ip->lookups == 0 && ip->opens == 0;
	pthread_mutex_unlock(&fs->itable_lock);
	return unused ? inode_reclaim(fs, ip) : 0;
}

int fs_maybe_reclaim(struct fs *fs, struct inode *ip)
{
	pthread_mutex_lock(&ip->lock);
	int r = fs_maybe_reclaim_locked(fs, ip);
	pthread_mutex_unlock(&ip->lock);
	return r;
}

uint32_t fs_next_generation(struct fs *fs)
{
	return __atomic_add_fetch(&fs->next_generation, 1, __ATOMIC_RELAXED);
}

/* ---- format ---- */

static int write_zeroed(struct bdev *dev, uint64_t start, uint64_t n, uint8_t *zero)
{
	for (uint64_t b = 0; b < n; b += 256) {
		uint64_t k = n - b < 256 ? n - b : 256;
		int r = bdev_write(dev, start + b, zero, k);
		if (r)
			return r;
	}
	return 0;
}

/* Bitmaps with the metadata area and inodes 0..FS_ORPHAN_INO in use. */
static int format_bitmaps(struct bdev *dev, const struct fs_super *s, uint8_t *buf)
{
	memset(buf, 0, 256 * FS_BLOCK_SIZE);
	int r = write_zeroed(dev, s->ibitmap_start, s->ibitmap_blocks + s->bbitmap_blocks, buf);
	if (r)
		return r;
	buf[0] = (uint8_t)((1u << (FS_ORPHAN_INO + 1)) - 1);
	if ((r = bdev_write(dev, s->ibitmap_start, buf, 1)))
		return r;
	for (uint64_t bi = 0; bi * FS_BLOCK_SIZE * 8 < s->data_start; bi++) {
		memset(buf, 0, FS_BLOCK_SIZE);
		uint64_t lo = bi * FS_BLOCK_SIZE * 8;
		for (uint64_t b = lo; b < s->data_start && b < lo + FS_BLOCK_SIZE * 8; b++)
			buf[(b - lo) / 8] |= (uint8_t)(1u << (b % 8));
		if ((r = bdev_write(dev, s->bbitmap_start + bi, buf, 1)))
			return r;
	}
	return 0;
}

static int format_areas(struct bdev *dev, struct fs_super *s)
{
	uint8_t *buf = block_alloc(256 * FS_BLOCK_SIZE);
	if (!buf)
		return -ENOMEM;
	int r = format_bitmaps(dev, s, buf);
	if (!r)
		r = journal_format(dev, s);
	if (!r) {
		fs_super_encode(s, buf);
		r = bdev_write(dev, 0, buf, 1);
	}
	if (!r)
		r = bdev_flush(dev);
	free(buf);
	return r;
}

/* The root and orphan directories, made through the ordinary paths. */
static int make_dir_inode(struct fs *fs, uint64_t ino, uint64_t parent, uint32_t mode,
			  uint32_t uid, uint32_t gid)
{
	struct timespec t = fs_now();
	struct fs_inode d = { .mode = S_IFDIR | mode, .uid = uid, .gid = gid, .nlink = 2,
			      .generation = fs_next_generation(fs),
			      .atime_sec = t.tv_sec, .mtime_sec = t.tv_sec, .ctime_sec = t.tv_sec,
			      .atime_nsec = (uint32_t)t.tv_nsec, .mtime_nsec = (uint32_t)t.tv_nsec,
			      .ctime_nsec = (uint32_t)t.tv_nsec };
	struct inode *ip;
	int r = inode_get_new(fs, ino, &d, &ip);
	if (r)
		return r;
	struct tx tx;
	pthread_mutex_lock(&ip->lock);
	if (!(r = tx_begin(fs->j, DIR_INIT_CREDITS + 1, &tx))) {
		r = dir_init(fs, &tx, ip, parent);
		if (!r)
			r = inode_update(fs, &tx, ip);
		uint64_t seq = tx_end(&tx);
		if (!r)
			r = journal_wait(fs->j, seq, true);
	}
	pthread_mutex_unlock(&ip->lock);
	inode_put(fs, ip);
	return r;
}

int fs_format(struct bdev *dev, const struct fs_format_opts *o, struct cat_error *err)
{
	struct fs_format_opts def = { 0 };
	if (!o)
		o = &def;
	struct fs_super s;
	int r = fs_geometry(dev->nblocks, o->ninodes, &s);
	if (r)
		return cat_error_set(err, r, "%s: too small for a filesystem (%" PRIu64 " blocks)",
				     dev->name, dev->nblocks);
	if (o->journal_blocks && o->journal_blocks >= 64 &&
	    o->journal_blocks < dev->nblocks / 2) {
		uint64_t d = o->journal_blocks - s.journal_blocks;
		s.journal_blocks += d;
		s.ibitmap_start += d;
		s.bbitmap_start += d;
		s.itable_start += d;
		s.data_start += d;
	}
	if (uuid_generate(s.uuid))
		memset(s.uuid, 0x5a, sizeof(s.uuid));
	struct prng rng;
	prng_seed(&rng, wallclock_ns() ^ now_ns());
	s.hash_seed = prng_next(&rng);
	s.orphan_ino = FS_ORPHAN_INO;
	s.created_ns = wallclock_ns();
	if ((r = format_areas(dev, &s)))
		return cat_error_set(err, r, "%s: writing the filesystem: %s", dev->name, strerror(-r));
	struct fs *fs;
	struct fs_opts mo = { .cache_bytes = 8u << 20 };
	if ((r = fs_mount_raw(dev, &mo, &fs, err)))
		return r;
	r = make_dir_inode(fs, FS_ROOT_INO, FS_ROOT_INO, o->root_mode ? o->root_mode : 0755,
			   o->root_uid, o->root_gid);
	if (!r)
		r = make_dir_inode(fs, FS_ORPHAN_INO, FS_ORPHAN_INO, 0700, 0, 0);
	int r2 = fs_unmount(fs);
	if (!r)
		r = r2;
	if (r)
		return cat_error_set(err, r, "%s: creating the root directory: %s", dev->name,
				     strerror(-r));
	return 0;
}

/* ---- mount ---- */

static uint64_t count_clear_bits(const uint8_t *p, uint64_t nbits)
{
	uint64_t n = 0;
	for (uint64_t i = 0; i < nbits; i++)
		n += !(p[i / 8] & (1u << (i % 8)));
	return n;
}

static int count_free(struct fs *fs, uint64_t start, uint64_t nbits, uint64_t *out)
{
	uint64_t total = 0, per = FS_BLOCK_SIZE * 8;
	for (uint64_t bi = 0; bi * per < nbits; bi++) {
		struct buf *b;
		int r = bcache_read(fs->cache, start + bi, &b);
		if (r)
			return r;
		uint64_t k = nbits - bi * per < per ? nbits - bi * per : per;
		total += count_clear_bits(b->data, k);
		bcache_release(fs->cache, b);
	}
	*out = total;
	return 0;
}

static int read_super(struct bdev *dev, struct fs_super *s, struct cat_error *err)
{
	uint8_t *blk = block_alloc(FS_BLOCK_SIZE);
	if (!blk)
		return cat_error_set(err, -ENOMEM, "out of memory");
	int r = bdev_read(dev, 0, blk, 1);
	if (r) {
		free(blk);
		return cat_error_set(err, r, "%s: reading the filesystem superblock: %s",
				     dev->name, strerror(-r));
	}
	r = fs_super_decode(blk, s);
	free(blk);
	if (r)
		return cat_error_set(err, r, "%s: no valid Catamaran filesystem superblock "
				     "(bad magic, version, checksum or geometry)", dev->name);
	if (s->nblocks > dev->nblocks)
		return cat_error_set(err, -EUCLEAN, "%s: filesystem (%" PRIu64 " blocks) larger "
				     "than the device (%" PRIu64 ")", dev->name, s->nblocks,
				     dev->nblocks);
	return 0;
}

static void fs_free(struct fs *fs)
{
	if (fs->cache)
		bcache_destroy(fs->cache);
	pthread_mutex_destroy(&fs->alloc_lock);
	pthread_mutex_destroy(&fs->itable_lock);
	pthread_mutex_destroy(&fs->rename_lock);
	free(fs->ihash);
	free(fs);
}

/* Mount without the root/orphan checks (format uses it before they exist). */
int fs_mount_raw(struct bdev *dev, const struct fs_opts *o, struct fs **out,
		 struct cat_error *err)
{
	struct fs *fs = calloc(1, sizeof(*fs));
	if (!fs)
		return cat_error_set(err, -ENOMEM, "out of memory");
	fs->dev = dev;
	if (o)
		fs->opts = *o;
	if (!fs->opts.cache_bytes)
		fs->opts.cache_bytes = 64u << 20;
	pthread_mutex_init(&fs->alloc_lock, NULL);
	pthread_mutex_init(&fs->itable_lock, NULL);
	pthread_mutex_init(&fs->rename_lock, NULL);
	fs->next_generation = (uint32_t)(wallclock_ns() / 1000);
	fs->ihash_size = 4099;
	int r = read_super(dev, &fs->sb, err);
	if (!r && !(fs->ihash = calloc(fs->ihash_size, sizeof(*fs->ihash))))
		r = cat_error_set(err, -ENOMEM, "out of memory");
	if (!r && (r = bcache_create(dev, fs->opts.cache_bytes, &fs->cache)))
		cat_error_set(err, r, "out of memory");
	struct journal_opts jo = { .sync = fs->opts.sync,
				   .commit_interval_ms = fs->opts.commit_interval_ms };
	if (!r && (r = journal_open(dev, fs->cache, &fs->sb, &jo, &fs->j)))
		cat_error_set(err, r, "%s: journal: %s", dev->name,
			      r == -EUCLEAN ? "corrupt journal header" : strerror(-r));
	if (!r && ((r = count_free(fs, fs->sb.bbitmap_start, fs->sb.nblocks, &fs->free_blocks)) ||
		   (r = count_free(fs, fs->sb.ibitmap_start, fs->sb.ninodes, &fs->free_inodes))))
		cat_error_set(err, r, "%s: reading the allocation bitmaps: %s", dev->name,
			      strerror(-r));
	if (r) {
		if (fs->j)
			journal_close(fs->j);
		fs_free(fs);
		return r;
	}
	*out = fs;
	return 0;
}

struct orphan_list {
	uint64_t *ino;
	size_t n, cap;
};

static int collect_orphan(void *arg, const char *name, size_t len, uint64_t ino,
			  uint8_t type, uint64_t key)
{
	(void)name, (void)len, (void)type, (void)key;
	struct orphan_list *l = arg;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		uint64_t *p = realloc(l->ino, cap * sizeof(*p));
		if (!p)
			return 1;
		l->ino = p;
		l->cap = cap;
	}
	l->ino[l->n++] = ino;
	return 0;
}

/* Finish what a crash interrupted: free unlinked inodes, end truncations. */
static int reclaim_orphans(struct fs *fs)
{
	struct orphan_list l = { 0 };
	pthread_mutex_lock(&fs->orphans->lock);
	int r = dir_iterate(fs, fs->orphans, 0, collect_orphan, &l);
	pthread_mutex_unlock(&fs->orphans->lock);
	for (size_t i = 0; !r && i < l.n; i++) {
		struct inode *ip;
		if ((r = inode_get(fs, l.ino[i], &ip)))
			break;
		pthread_mutex_lock(&ip->lock);
		r = ip->d.nlink == 0 ? inode_reclaim(fs, ip) : inode_finish_truncate(fs, ip);
		pthread_mutex_unlock(&ip->lock);
		inode_put(fs, ip);
		fs->orphans_reclaimed++;
	}
	free(l.ino);
	return r;
}

int fs_mount(struct bdev *dev, const struct fs_opts *o, struct fs **out,
	     struct cat_error *err)
{
	struct fs *fs;
	int r = fs_mount_raw(dev, o, &fs, err);
	if (r)
		return r;
	struct inode *root = NULL;
	r = inode_get(fs, FS_ORPHAN_INO, &fs->orphans);
	if (!r && !S_ISDIR(fs->orphans->d.mode))
		r = -EUCLEAN;
	if (!r)
		r = inode_get(fs, FS_ROOT_INO, &root);
	if (!r && !S_ISDIR(root->d.mode))
		r = -EUCLEAN;
	inode_put(fs, root);
	if (r)
		cat_error_set(err, r, "%s: the %s directory is damaged (run catamaran fsck)",
			      dev->name, fs->orphans ? "root" : "orphan");
	if (!r && !fs->opts.read_only && (r = reclaim_orphans(fs)))
		cat_error_set(err, r, "%s: reclaiming orphan inodes: %s", dev->name, strerror(-r));
	if (r) {
		fs_unmount(fs);
		return r;
	}
	if (fs->orphans_reclaimed)
		cat_log(CAT_LOG_INFO, "filesystem: reclaimed %" PRIu64 " orphan inode(s)",
			fs->orphans_reclaimed);
	*out = fs;
	return 0;
}

static void drop_inodes(struct fs *fs)
{
	for (size_t s = 0; s < fs->ihash_size; s++)
		while (fs->ihash[s]) {
			struct inode *ip = fs->ihash[s];
			fs->ihash[s] = ip->hnext;
			pthread_mutex_destroy(&ip->lock);
			free(ip);
		}
}

int fs_unmount(struct fs *fs)
{
	int r = journal_close(fs->j);
	drop_inodes(fs);
	fs_free(fs);
	return r;
}

int fs_statfs(struct fs *fs, struct statvfs *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&fs->alloc_lock);
	st->f_bfree = st->f_bavail = fs->free_blocks;
	st->f_ffree = st->f_favail = fs->free_inodes;
	pthread_mutex_unlock(&fs->alloc_lock);
	st->f_bsize = st->f_frsize = FS_BLOCK_SIZE;
	st->f_blocks = fs->sb.nblocks;
	st->f_files = fs->sb.ninodes;
	st->f_namemax = FS_NAME_MAX;
	st->f_fsid = *(const unsigned long *)fs->sb.uuid;
	return 0;
}

int fs_syncfs(struct fs *fs)
{
	return journal_sync(fs->j);
}

void fs_get_stats(struct fs *fs, struct fs_stats *st)
{
	struct journal_stats js;
	struct bcache_stats cs;
	journal_get_stats(fs->j, &js);
	bcache_get_stats(fs->cache, &cs);
	*st = (struct fs_stats){
		.commits = js.commits, .ops = js.ops, .journal_blocks = js.blocks,
		.flushes = js.flushes, .checkpoints = js.checkpoints,
		.ops_per_commit = js.ops_per_commit, .log_blocks = js.log_blocks,
		.log_used = js.log_used, .cache_hits = cs.hits, .cache_misses = cs.misses,
		.cache_bytes = cs.bytes, .cache_max_bytes = cs.max_bytes,
		.orphans_reclaimed = fs->orphans_reclaimed,
	};
	pthread_mutex_lock(&fs->itable_lock);
	st->inodes_cached = fs->inodes_cached;
	pthread_mutex_unlock(&fs->itable_lock);
}
