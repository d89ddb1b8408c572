/*
 * test_fsck.c - fsck (core/fs/fsck.h): a clean volume passes; each kind of
 * damage is reported (exit 4) without --repair, fixed (exit 1) with it, and
 * a second run is clean (exit 0); the repaired volume mounts and the files
 * that survived read back right. Then seeded random damage to metadata
 * blocks: fsck never crashes or hangs, and after --repair the volume checks
 * clean and mounts (or the superblock is named as beyond repair).
 *
 * Damage is done straight on the mem_disk image, with the encoders of
 * layout.h where a field must change with a valid checksum.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "blockdev/bdev.h"
#include "blockdev/testdev/mem_disk.h"
#include "core/base/crc32c.h"
#include "core/base/error.h"
#include "core/base/log.h"
#include "core/base/util.h"
#include "core/fs/dir.h"
#include "core/fs/fs.h"
#include "core/fs/fsck.h"
#include "core/fs/layout.h"

#define NBLOCKS 6144u
/* More than the default 1024 journal blocks: orphan reclaim at mount then
 * fits its transactions even where inode.c free_blocks_from still uses a
 * fixed 256-block step (522 credits, more than a 1024-block journal gives). */
#define JOURNAL_BLOCKS 2400u
#define NMAIL 400
#define BIG_BLOCKS 60u
#define SPARSE_OFF (100ull << 20)

static const struct fs_ctx ctx = { 0, 0 };

static void quiet_sink(enum cat_log_level level, const char *msg)
{
	(void)level, (void)msg;
}

static void setup(void)
{
	cat_log_set_sink(quiet_sink, CAT_LOG_DEBUG);
}

/* ---- volume helpers ---- */

/* Inode numbers of the populated tree. */
struct tree {
	uint64_t a, b, c, deep, hello, big, sparse, link, maildir, mnew, mail[NMAIL];
};

static uint8_t pattern(uint64_t id, uint64_t off)
{
	return (uint8_t)((id * 131 + off * 7 + (off >> 12)) & 0xff);
}

static void fill(uint8_t *buf, size_t n, uint64_t id, uint64_t off)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = pattern(id, off + i);
}

static struct fs *mount_ok(struct bdev *d)
{
	struct fs *fs;
	struct cat_error err = { 0 };
	struct fs_opts o = { .cache_bytes = 4u << 20 };
	int r = fs_mount(d, &o, &fs, &err);
	cr_assert_eq(r, 0, "mount: %d %s", r, err.msg);
	return fs;
}

static uint64_t make_file(struct fs *fs, uint64_t dir, const char *name, uint64_t id,
			  uint64_t off, size_t len)
{
	struct fs_attr a;
	uint64_t fh;
	cr_assert_eq(fs_create(fs, &ctx, dir, name, 0644, O_CREAT | O_RDWR, &a, &fh), 0, "%s", name);
	uint8_t *buf = malloc(len ? len : 1);
	fill(buf, len, id, off);
	if (len)
		cr_assert_eq(fs_write(fs, a.ino, fh, buf, len, (off_t)off), (ssize_t)len);
	free(buf);
	cr_assert_eq(fs_release(fs, a.ino, fh), 0);
	return a.ino;
}

static uint64_t make_dir(struct fs *fs, uint64_t parent, const char *name)
{
	struct fs_attr a;
	cr_assert_eq(fs_mkdir(fs, &ctx, parent, name, 0755, &a), 0, "mkdir %s", name);
	return a.ino;
}

static void populate(struct fs *fs, struct tree *t)
{
	struct fs_attr a;
	t->a = make_dir(fs, FS_ROOT_INO, "a");
	t->b = make_dir(fs, t->a, "b");
	t->c = make_dir(fs, t->b, "c");
	t->deep = make_file(fs, t->c, "deep", 1, 0, 5000);
	t->hello = make_file(fs, FS_ROOT_INO, "hello", 2, 0, 100);
	t->big = make_file(fs, FS_ROOT_INO, "big", 3, 0, BIG_BLOCKS * FS_BLOCK_SIZE);
	t->sparse = make_file(fs, FS_ROOT_INO, "sparse", 4, SPARSE_OFF, FS_BLOCK_SIZE);
	cr_assert_eq(fs_symlink(fs, &ctx, "hello", FS_ROOT_INO, "link", &a), 0);
	t->link = a.ino;
	cr_assert_eq(fs_link(fs, t->hello, t->a, "hard", &a), 0);
	t->maildir = make_dir(fs, FS_ROOT_INO, "maildir");
	t->mnew = make_dir(fs, t->maildir, "new");
	for (int i = 0; i < NMAIL; i++) {
		char name[32];
		snprintf(name, sizeof(name), "msg.%04d", i);
		t->mail[i] = make_file(fs, t->mnew, name, 100 + (uint64_t)i, 0, 200);
	}
}

static struct bdev *new_volume(struct tree *t)
{
	struct bdev *d = mem_disk_create(NBLOCKS, "fsck-test");
	cr_assert_not_null(d);
	struct cat_error err = { 0 };
	struct fs_format_opts fo = { .journal_blocks = JOURNAL_BLOCKS };
	cr_assert_eq(fs_format(d, &fo, &err), 0, "format: %s", err.msg);
	if (t) {
		struct fs *fs = mount_ok(d);
		populate(fs, t);
		cr_assert_eq(fs_unmount(fs), 0);
	}
	return d;
}

static struct bdev *clone_disk(struct bdev *src)
{
	struct bdev *d = mem_disk_create(src->nblocks, "fsck-clone");
	cr_assert_not_null(d);
	for (uint64_t b = 0; b < src->nblocks; b++)
		memcpy(mem_disk_block(d, b), mem_disk_block(src, b), FS_BLOCK_SIZE);
	return d;
}

/* ---- running fsck ---- */

struct msgs {
	char text[8192];
	size_t len;
	unsigned n;
};

static void collect(void *arg, const char *msg)
{
	struct msgs *m = arg;
	m->n++;
	int k = snprintf(m->text + m->len, sizeof(m->text) - m->len, "%s\n", msg);
	if (k > 0 && m->len + (size_t)k < sizeof(m->text))
		m->len += (size_t)k;
}

static int fsck(struct bdev *d, bool repair, struct fsck_report *rep, struct msgs *m)
{
	struct fsck_opts o = { .repair = repair, .problem = collect, .arg = m };
	struct cat_error err = { 0 };
	int r = fsck_run(d, &o, rep, &err);
	cr_assert(r == 0 || r == -EUCLEAN, "fsck_run: %d %s", r, err.msg);
	return fsck_exit_code(r, rep);
}

static int fsck_quiet(struct bdev *d, bool repair, struct fsck_report *rep)
{
	struct msgs m = { 0 };
	return fsck(d, repair, rep, &m);
}

/* Damaged volume d: 4 without repair (on a copy), 1 with, then 0. */
static void expect_fixed(struct bdev *d, const char *what)
{
	struct fsck_report rep;
	struct msgs m = { 0 };
	struct bdev *copy = clone_disk(d);
	int code = fsck(copy, false, &rep, &m);
	cr_assert_eq(code, FSCK_EXIT_ERRORS, "%s: check-only exit %d, messages:\n%s", what, code,
		     m.text);
	cr_assert_gt(rep.errors_left, 0);
	bdev_close(copy);
	m = (struct msgs){ 0 };
	code = fsck(d, true, &rep, &m);
	cr_assert_eq(code, FSCK_EXIT_FIXED, "%s: repair exit %d, messages:\n%s", what, code, m.text);
	cr_assert_eq(rep.errors_left, 0);
	m = (struct msgs){ 0 };
	code = fsck(d, false, &rep, &m);
	cr_assert_eq(code, FSCK_EXIT_CLEAN, "%s: after repair exit %d, messages:\n%s", what, code,
		     m.text);
}

/* ---- reading back ---- */

static bool content_ok(struct fs *fs, uint64_t ino, uint64_t id, uint64_t off, size_t len)
{
	uint8_t *buf = malloc(len), *want = malloc(len);
	fill(want, len, id, off);
	ssize_t n = fs_read(fs, ino, 0, buf, len, (off_t)off);
	bool ok = n == (ssize_t)len && memcmp(buf, want, len) == 0;
	free(buf);
	free(want);
	return ok;
}

static bool lookup(struct fs *fs, uint64_t dir, const char *name, uint64_t *ino)
{
	struct fs_attr a;
	if (fs_lookup(fs, dir, name, &a))
		return false;
	*ino = a.ino;
	return true;
}

static uint64_t path_ino(struct fs *fs, const char *path)
{
	char buf[256], *save = NULL;
	snprintf(buf, sizeof(buf), "%s", path);
	uint64_t ino = FS_ROOT_INO;
	for (char *p = strtok_r(buf, "/", &save); p; p = strtok_r(NULL, "/", &save))
		if (!lookup(fs, ino, p, &ino))
			return 0;
	return ino;
}

/* Everything populate made, but the inodes in skip (0-terminated). */
static void verify_tree(struct fs *fs, const struct tree *t, const uint64_t *skip)
{
	struct { const char *path; uint64_t ino, id, off; size_t len; } files[] = {
		{ "a/b/c/deep", t->deep, 1, 0, 5000 },
		{ "hello", t->hello, 2, 0, 100 },
		{ "a/hard", t->hello, 2, 0, 100 },
		{ "big", t->big, 3, 0, BIG_BLOCKS * FS_BLOCK_SIZE },
		{ "sparse", t->sparse, 4, SPARSE_OFF, FS_BLOCK_SIZE },
	};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		bool skipped = false;
		for (const uint64_t *s = skip; s && *s; s++)
			skipped |= *s == files[i].ino;
		if (skipped)
			continue;
		cr_assert_eq(path_ino(fs, files[i].path), files[i].ino, "%s", files[i].path);
		cr_assert(content_ok(fs, files[i].ino, files[i].id, files[i].off, files[i].len),
			  "%s reads back wrong", files[i].path);
	}
	char target[16];
	ssize_t n = fs_readlink(fs, t->link, target, sizeof(target));
	cr_assert(n == 5 && memcmp(target, "hello", 5) == 0);
}

static void verify_mail(struct fs *fs, const struct tree *t)
{
	for (int i = 0; i < NMAIL; i++) {
		char name[32];
		snprintf(name, sizeof(name), "maildir/new/msg.%04d", i);
		cr_assert_eq(path_ino(fs, name), t->mail[i], "%s", name);
		cr_assert(content_ok(fs, t->mail[i], 100 + (uint64_t)i, 0, 200), "%s", name);
	}
}

/* ---- raw access to the image ---- */

static struct fs_super super_of(struct bdev *d)
{
	struct fs_super sb;
	cr_assert_eq(fs_super_decode(mem_disk_block(d, 0), &sb), 0);
	return sb;
}

static uint8_t *slot(struct bdev *d, uint64_t ino)
{
	struct fs_super sb = super_of(d);
	return mem_disk_block(d, sb.itable_start + ino / FS_INODES_PER_BLOCK) +
	       (ino % FS_INODES_PER_BLOCK) * FS_INODE_SIZE;
}

static struct fs_inode inode_of(struct bdev *d, uint64_t ino)
{
	struct fs_inode in;
	cr_assert_eq(fs_inode_decode(slot(d, ino), &in), 0, "inode %" PRIu64, ino);
	return in;
}

static void set_inode(struct bdev *d, uint64_t ino, const struct fs_inode *in)
{
	fs_inode_encode(in, slot(d, ino));
}

static uint64_t pow511(unsigned h)
{
	uint64_t v = 1;
	while (h--)
		v *= FS_INDEX_FANOUT;
	return v;
}

/* Physical block of logical block lblk of an inode (0: hole). */
static uint64_t bmap(struct bdev *d, const struct fs_inode *in, uint64_t lblk)
{
	if (lblk < FS_NDIRECT)
		return in->direct[lblk];
	uint64_t n = lblk - FS_NDIRECT, cur = in->root;
	for (unsigned level = in->height; level-- > 0 && cur;)
		cur = fs_index_get(mem_disk_block(d, cur), (unsigned)((n / pow511(level)) %
								      FS_INDEX_FANOUT));
	return cur;
}

static void set_bit(struct bdev *d, uint64_t start, uint64_t i, bool on)
{
	uint8_t *p = mem_disk_block(d, start + i / (FS_BLOCK_SIZE * 8)) + (i % (FS_BLOCK_SIZE * 8)) / 8;
	if (on)
		*p |= (uint8_t)(1u << (i % 8));
	else
		*p &= (uint8_t)~(1u << (i % 8));
}

static bool get_bit(struct bdev *d, uint64_t start, uint64_t i)
{
	uint8_t *p = mem_disk_block(d, start + i / (FS_BLOCK_SIZE * 8)) + (i % (FS_BLOCK_SIZE * 8)) / 8;
	return (*p >> (i % 8)) & 1;
}

/* ---- the clean volume ---- */

TestSuite(fsck, .init = setup, .timeout = 120);

Test(fsck, fresh_and_populated_volumes_are_clean)
{
	struct bdev *d = new_volume(NULL);
	struct fsck_report rep;
	struct msgs m = { 0 };
	cr_assert_eq(fsck(d, false, &rep, &m), FSCK_EXIT_CLEAN, "%s", m.text);
	cr_assert_eq(rep.dirs, 2);
	bdev_close(d);

	struct tree t;
	d = new_volume(&t);
	m = (struct msgs){ 0 };
	struct bdev *before = clone_disk(d);
	cr_assert_eq(fsck(d, false, &rep, &m), FSCK_EXIT_CLEAN, "%s", m.text);
	for (uint64_t b = 0; b < d->nblocks; b++)
		cr_assert(memcmp(mem_disk_block(d, b), mem_disk_block(before, b), FS_BLOCK_SIZE) == 0,
			  "checking wrote block %" PRIu64, b);
	bdev_close(before);
	cr_assert_eq(rep.dirs, 7);               /* root, orphans, a, b, c, maildir, new */
	cr_assert_eq(rep.files, 4 + NMAIL);
	cr_assert_eq(rep.symlinks, 1);
	cr_assert_eq(fsck(d, true, &rep, &m), FSCK_EXIT_CLEAN, "%s", m.text);
	cr_assert_not(rep.changed);
	struct fs *fs = mount_ok(d);
	verify_tree(fs, &t, NULL);
	verify_mail(fs, &t);
	fs_unmount(fs);
	bdev_close(d);
}

/* ---- damage, one kind per test ---- */

Test(fsck, corrupt_inode_slot)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	slot(d, t.deep)[30] ^= 0x10;             /* a bit of the size: crc fails */
	expect_fixed(d, "inode slot");
	struct fs *fs = mount_ok(d);
	uint64_t skip[] = { t.deep, 0 };
	verify_tree(fs, &t, skip);
	verify_mail(fs, &t);
	cr_assert_eq(path_ino(fs, "a/b/c/deep"), 0);
	fs_unmount(fs);
	bdev_close(d);
}

Test(fsck, damage_in_unused_bytes_is_salvaged)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	slot(d, t.hello)[200] ^= 0x01;           /* the zero tail of the slot */
	mem_disk_block(d, 0)[1000] ^= 0x80;      /* the zero tail of the superblock */
	expect_fixed(d, "unused bytes");
	struct fs *fs = mount_ok(d);
	verify_tree(fs, &t, NULL);
	fs_unmount(fs);
	bdev_close(d);
}

Test(fsck, corrupt_index_block)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	struct fs_inode in = inode_of(d, t.big);
	cr_assert_neq(in.root, 0);
	mem_disk_block(d, in.root)[100] ^= 0x04;
	expect_fixed(d, "index block");
	struct fs *fs = mount_ok(d);
	uint64_t skip[] = { t.big, 0 };
	verify_tree(fs, &t, skip);
	/* The first 12 blocks survive; the rest became a hole. */
	cr_assert(content_ok(fs, t.big, 3, 0, FS_NDIRECT * FS_BLOCK_SIZE));
	struct fs_attr a;
	cr_assert_eq(fs_getattr(fs, t.big, &a), 0);
	cr_assert_eq(a.blocks, FS_NDIRECT * (FS_BLOCK_SIZE / 512));
	fs_unmount(fs);
	bdev_close(d);
}

/* Files of maildir/new now in maildir/new or /lost+found/#ino, intact. */
static unsigned count_mail_found(struct fs *fs, const struct tree *t, unsigned *in_lf)
{
	unsigned found = 0;
	*in_lf = 0;
	uint64_t lf = path_ino(fs, "lost+found");
	for (int i = 0; i < NMAIL; i++) {
		char name[48];
		uint64_t ino = 0;
		snprintf(name, sizeof(name), "msg.%04d", i);
		if (!lookup(fs, t->mnew, name, &ino) && lf) {
			snprintf(name, sizeof(name), "#%" PRIu64, t->mail[i]);
			if (lookup(fs, lf, name, &ino))
				(*in_lf)++;
		}
		if (ino) {
			cr_assert_eq(ino, t->mail[i]);
			cr_assert(content_ok(fs, ino, 100 + (uint64_t)i, 0, 200));
			found++;
		}
	}
	return found;
}

Test(fsck, corrupt_directory_bucket)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	struct fs_inode in = inode_of(d, t.mnew);
	uint64_t bucket = bmap(d, &in, FS_DIR_BUCKET0);
	cr_assert_neq(bucket, 0);
	mem_disk_block(d, bucket)[300] ^= 0x20;
	expect_fixed(d, "directory bucket");
	struct fs *fs = mount_ok(d);
	verify_tree(fs, &t, NULL);
	unsigned in_lf;
	cr_assert_eq(count_mail_found(fs, &t, &in_lf), NMAIL, "every message is somewhere");
	cr_assert_gt(in_lf, 0, "the bucket's entries went to lost+found");
	cr_assert_lt(in_lf, NMAIL);
	fs_unmount(fs);
	bdev_close(d);
}

Test(fsck, corrupt_directory_header)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	struct fs_inode in = inode_of(d, t.mnew);
	mem_disk_block(d, in.direct[0])[20] ^= 0x01;   /* the entry count */
	expect_fixed(d, "directory header");
	struct fs *fs = mount_ok(d);
	verify_tree(fs, &t, NULL);
	verify_mail(fs, &t);                           /* rebuilt from the buckets */
	fs_unmount(fs);
	bdev_close(d);
}

Test(fsck, corrupt_directory_table)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	struct fs_inode in = inode_of(d, t.mnew);
	mem_disk_block(d, in.direct[1])[4] ^= 0x01;    /* slot 0 */
	expect_fixed(d, "bucket table");
	struct fs *fs = mount_ok(d);
	verify_mail(fs, &t);
	fs_unmount(fs);
	bdev_close(d);
}

Test(fsck, wrong_header_count_and_parent)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	struct fs_inode in = inode_of(d, t.c);
	struct fs_dirhdr h;
	cr_assert_eq(fs_dirhdr_decode(mem_disk_block(d, in.direct[0]), &h), 0);
	h.nentries += 3;
	h.parent = t.a;
	fs_dirhdr_encode(&h, mem_disk_block(d, in.direct[0]));
	expect_fixed(d, "directory header fields");
	cr_assert_eq(fs_dirhdr_decode(mem_disk_block(d, in.direct[0]), &h), 0);
	cr_assert_eq(h.nentries, 1);
	cr_assert_eq(h.parent, t.b);
	bdev_close(d);
}

Test(fsck, block_bitmap_leak_and_double_use)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	struct fs_super sb = super_of(d);
	uint64_t free_blk = sb.nblocks - 1;
	cr_assert_not(get_bit(d, sb.bbitmap_start, free_blk));
	set_bit(d, sb.bbitmap_start, free_blk, true);          /* leak */
	uint64_t used_blk = inode_of(d, t.hello).direct[0];
	set_bit(d, sb.bbitmap_start, used_blk, false);         /* could be handed out twice */
	expect_fixed(d, "block bitmap");
	cr_assert_not(get_bit(d, sb.bbitmap_start, free_blk));
	cr_assert(get_bit(d, sb.bbitmap_start, used_blk));
	bdev_close(d);
}

Test(fsck, inode_bitmap_leak_and_missing)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	struct fs_super sb = super_of(d);
	set_bit(d, sb.ibitmap_start, sb.ninodes - 1, true);    /* a free slot marked used */
	set_bit(d, sb.ibitmap_start, t.hello, false);
	expect_fixed(d, "inode bitmap");
	cr_assert_not(get_bit(d, sb.ibitmap_start, sb.ninodes - 1));
	cr_assert(get_bit(d, sb.ibitmap_start, t.hello));
	bdev_close(d);
}

Test(fsck, wrong_link_counts)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	struct fs_inode in = inode_of(d, t.hello);
	in.nlink = 5;
	set_inode(d, t.hello, &in);
	in = inode_of(d, t.a);
	in.nlink = 2;                                      /* has one subdirectory */
	set_inode(d, t.a, &in);
	expect_fixed(d, "link counts");
	struct fs *fs = mount_ok(d);
	struct fs_attr a;
	cr_assert_eq(fs_getattr(fs, t.hello, &a), 0);
	cr_assert_eq(a.nlink, 2);
	cr_assert_eq(fs_getattr(fs, t.a, &a), 0);
	cr_assert_eq(a.nlink, 3);
	verify_tree(fs, &t, NULL);
	fs_unmount(fs);
	bdev_close(d);
}

Test(fsck, dangling_entry)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	struct fs_super sb = super_of(d);
	struct fs_inode in = inode_of(d, t.deep);
	for (unsigned i = 0; i < FS_NDIRECT; i++)
		if (in.direct[i])
			set_bit(d, sb.bbitmap_start, in.direct[i], false);
	struct fs_inode z = { .generation = in.generation };
	set_inode(d, t.deep, &z);                          /* freed behind the entry */
	set_bit(d, sb.ibitmap_start, t.deep, false);
	expect_fixed(d, "dangling entry");
	struct fs *fs = mount_ok(d);
	cr_assert_eq(path_ino(fs, "a/b/c/deep"), 0);
	uint64_t skip[] = { t.deep, 0 };
	verify_tree(fs, &t, skip);
	fs_unmount(fs);
	bdev_close(d);
}

Test(fsck, entry_with_wrong_type)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	struct fs_inode in = inode_of(d, t.c);
	uint64_t bucket = bmap(d, &in, FS_DIR_BUCKET0);
	uint8_t *p = mem_disk_block(d, bucket);
	cr_assert_eq(p[FS_BUCKET_HDR + 16], DIR_TYPE_REG);
	p[FS_BUCKET_HDR + 16] = DIR_TYPE_LNK;
	fs_bucket_seal(p);
	expect_fixed(d, "entry type");
	in = inode_of(d, t.c);
	p = mem_disk_block(d, bmap(d, &in, FS_DIR_BUCKET0));
	cr_assert_eq(p[FS_BUCKET_HDR + 16], DIR_TYPE_REG);
	struct fs *fs = mount_ok(d);
	verify_tree(fs, &t, NULL);
	fs_unmount(fs);
	bdev_close(d);
}

/* Add an entry to a directory of depth 0 (one bucket), as dir_add would. */
static void insert_entry(struct bdev *d, uint64_t dir, const char *name, uint64_t ino,
			 uint8_t type)
{
	struct fs_super sb = super_of(d);
	struct fs_inode in = inode_of(d, dir);
	struct fs_dirhdr h;
	cr_assert_eq(fs_dirhdr_decode(mem_disk_block(d, in.direct[0]), &h), 0);
	cr_assert_eq(h.depth, 0);
	uint8_t *p = mem_disk_block(d, bmap(d, &in, FS_DIR_BUCKET0));
	uint64_t key = dir_name_key(sb.hash_seed, name, strlen(name));
	uint32_t count = get_le32(p + 12), used = get_le32(p + 16);
	size_t off = FS_BUCKET_HDR, end = FS_BUCKET_HDR + used, len = strlen(name);
	while (off < end && get_le64(p + off) < key)
		off += FS_DIRENT_HDR + p[off + 17];
	memmove(p + off + FS_DIRENT_HDR + len, p + off, end - off);
	put_le64(p + off, key);
	put_le64(p + off + 8, ino);
	p[off + 16] = type;
	p[off + 17] = (uint8_t)len;
	memcpy(p + off + FS_DIRENT_HDR, name, len);
	put_le32(p + 12, count + 1);
	put_le32(p + 16, (uint32_t)(used + FS_DIRENT_HDR + len));
	fs_bucket_seal(p);
	h.nentries++;
	fs_dirhdr_encode(&h, mem_disk_block(d, in.direct[0]));
}

Test(fsck, second_link_to_a_directory)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	insert_entry(d, FS_ROOT_INO, "c-again", t.c, DIR_TYPE_DIR);
	struct fsck_report rep;
	struct bdev *copy = clone_disk(d);
	struct fs *fs = mount_ok(copy);                   /* the engine takes it as is */
	cr_assert_eq(path_ino(fs, "c-again/deep"), t.deep);
	fs_unmount(fs);
	bdev_close(copy);
	expect_fixed(d, "directory hard link");
	fs = mount_ok(d);
	/* The first link the walk meets stays (as e2fsck), ".." follows it. */
	uint64_t again = path_ino(fs, "c-again"), in_b = path_ino(fs, "a/b/c"), up = 0;
	cr_assert((again == t.c) != (in_b == t.c), "exactly one link left");
	cr_assert(lookup(fs, t.c, "..", &up));
	cr_assert_eq(up, again ? FS_ROOT_INO : t.b);
	cr_assert(content_ok(fs, t.deep, 1, 0, 5000));
	struct fs_attr a;
	cr_assert_eq(fs_getattr(fs, again ? FS_ROOT_INO : t.b, &a), 0);
	cr_assert_eq(a.nlink, again ? 5u : 3u);   /* root: a, maildir, c-again */
	fs_unmount(fs);
	cr_assert_eq(fsck_quiet(d, false, &rep), FSCK_EXIT_CLEAN);
	bdev_close(d);
}

Test(fsck, entry_to_a_reserved_inode)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	insert_entry(d, t.c, "up", FS_ROOT_INO, DIR_TYPE_DIR);
	insert_entry(d, t.c, "orphans", FS_ORPHAN_INO, DIR_TYPE_DIR);
	expect_fixed(d, "entries to inodes 1 and 2");
	struct fs *fs = mount_ok(d);
	verify_tree(fs, &t, NULL);
	fs_unmount(fs);
	bdev_close(d);
}

Test(fsck, orphan_with_no_links)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	struct fs *fs = mount_ok(d);
	struct fs_attr a;
	uint64_t fh;
	cr_assert_eq(fs_create(fs, &ctx, FS_ROOT_INO, "open", 0644, O_CREAT | O_RDWR, &a, &fh), 0);
	uint8_t buf[8192];
	fill(buf, sizeof(buf), 9, 0);
	cr_assert_eq(fs_write(fs, a.ino, fh, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	cr_assert_eq(fs_release(fs, a.ino, fh), 0);
	cr_assert_eq(fs_unlink(fs, FS_ROOT_INO, "open"), 0);
	cr_assert_eq(fs_unmount(fs), 0);      /* still looked up: stays an orphan */
	uint64_t orphan = a.ino;
	cr_assert_eq(inode_of(d, orphan).nlink, 0);

	struct fsck_report rep;
	struct msgs m = { 0 };
	cr_assert_eq(fsck(d, false, &rep, &m), FSCK_EXIT_CLEAN, "%s", m.text);
	cr_assert_eq(rep.orphans_pending, 1);
	cr_assert_eq(fsck(d, true, &rep, &m), FSCK_EXIT_FIXED, "%s", m.text);
	cr_assert_eq(rep.orphans_reclaimed, 1);
	cr_assert_eq(rep.errors_found, 0, "%s", m.text);
	cr_assert_eq(fsck(d, false, &rep, &m), FSCK_EXIT_CLEAN, "%s", m.text);
	cr_assert_eq(rep.orphans_pending, 0);
	struct fs_super sb = super_of(d);
	cr_assert_not(get_bit(d, sb.ibitmap_start, orphan));
	fs = mount_ok(d);
	verify_tree(fs, &t, NULL);
	fs_unmount(fs);
	bdev_close(d);
}

/* An allocated inode with data that no directory names. */
static uint64_t plant_lost_file(struct bdev *d, uint64_t id, size_t len)
{
	struct fs_super sb = super_of(d);
	uint64_t ino = sb.ninodes - 2, blk = sb.nblocks - 2;
	struct fs_inode in = { .mode = S_IFREG | 0600, .nlink = 1, .size = len,
			       .blocks = len ? 1 : 0, .generation = 7 };
	if (len) {
		in.direct[0] = blk;
		fill(mem_disk_block(d, blk), len, id, 0);
		set_bit(d, sb.bbitmap_start, blk, true);
	}
	set_inode(d, ino, &in);
	set_bit(d, sb.ibitmap_start, ino, true);
	return ino;
}

Test(fsck, unreachable_inode_goes_to_lost_found)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	uint64_t ino = plant_lost_file(d, 77, 3000);
	expect_fixed(d, "unreachable inode");
	struct fs *fs = mount_ok(d);
	char name[40];
	snprintf(name, sizeof(name), "lost+found/#%" PRIu64, ino);
	cr_assert_eq(path_ino(fs, name), ino);
	cr_assert(content_ok(fs, ino, 77, 0, 3000));
	verify_tree(fs, &t, NULL);
	fs_unmount(fs);
	bdev_close(d);
}

Test(fsck, unreachable_empty_inode_is_freed)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	uint64_t ino = plant_lost_file(d, 0, 0);
	expect_fixed(d, "unreachable empty inode");
	struct fs_super sb = super_of(d);
	cr_assert_not(get_bit(d, sb.ibitmap_start, ino));
	bdev_close(d);
}

Test(fsck, lost_directory_subtree)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	/* Cut "b" out of "a": b and c are then in no directory. */
	struct fs_inode in = inode_of(d, t.a);
	uint64_t bucket = bmap(d, &in, FS_DIR_BUCKET0);
	uint8_t *p = mem_disk_block(d, bucket);
	uint32_t count = get_le32(p + 12), used = get_le32(p + 16);
	size_t off = FS_BUCKET_HDR;
	while (get_le64(p + off + 8) != t.b)
		off += FS_DIRENT_HDR + p[off + 17];
	size_t size = FS_DIRENT_HDR + p[off + 17];
	memmove(p + off, p + off + size, FS_BUCKET_HDR + used - off - size);
	memset(p + FS_BUCKET_HDR + used - size, 0, size);
	put_le32(p + 12, count - 1);
	put_le32(p + 16, (uint32_t)(used - size));
	fs_bucket_seal(p);
	expect_fixed(d, "lost subtree");
	struct fs *fs = mount_ok(d);
	char name[64];
	snprintf(name, sizeof(name), "lost+found/#%" PRIu64 "/c/deep", t.b);
	cr_assert_eq(path_ino(fs, name), t.deep);
	cr_assert(content_ok(fs, t.deep, 1, 0, 5000));
	uint64_t dotdot = 0;
	snprintf(name, sizeof(name), "lost+found/#%" PRIu64, t.b);
	cr_assert_eq(path_ino(fs, name), t.b);
	cr_assert(lookup(fs, t.b, "..", &dotdot));
	cr_assert_eq(dotdot, path_ino(fs, "lost+found"));
	fs_unmount(fs);
	bdev_close(d);
}

Test(fsck, file_with_blocks_beyond_its_size)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	struct fs_inode in = inode_of(d, t.big);
	in.size = 2 * FS_BLOCK_SIZE;
	set_inode(d, t.big, &in);
	expect_fixed(d, "blocks beyond size");
	struct fs *fs = mount_ok(d);                      /* finishes the truncation */
	fs_unmount(fs);
	in = inode_of(d, t.big);
	cr_assert_eq(in.blocks, 2);
	struct fsck_report rep;
	cr_assert_eq(fsck_quiet(d, false, &rep), FSCK_EXIT_CLEAN);
	bdev_close(d);
}

Test(fsck, damaged_root_directory)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	slot(d, FS_ROOT_INO)[40] ^= 0x01;
	expect_fixed(d, "root inode");
	struct fs *fs = mount_ok(d);
	char name[64];
	snprintf(name, sizeof(name), "lost+found/#%" PRIu64 "/b/c/deep", t.a);
	cr_assert_eq(path_ino(fs, name), t.deep);
	snprintf(name, sizeof(name), "lost+found/#%" PRIu64, t.big);
	cr_assert_eq(path_ino(fs, name), t.big);
	cr_assert(content_ok(fs, t.big, 3, 0, BIG_BLOCKS * FS_BLOCK_SIZE));
	fs_unmount(fs);
	bdev_close(d);
}

Test(fsck, bad_superblock_is_named)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	mem_disk_block(d, 0)[40] ^= 0x01;                 /* nblocks */
	struct fsck_report rep;
	struct msgs m = { 0 };
	struct fsck_opts o = { .repair = true, .problem = collect, .arg = &m };
	struct cat_error err = { 0 };
	int r = fsck_run(d, &o, &rep, &err);
	cr_assert_eq(r, -EUCLEAN);
	cr_assert_eq(fsck_exit_code(r, &rep), FSCK_EXIT_ERRORS);
	cr_assert(strstr(err.msg, "superblock"), "%s", err.msg);
	bdev_close(d);
}

/* ---- the journal ---- */

/* A volume with committed transactions still in the log (as after a
 * crash): populated and unmounted, then two files made and synced, and the
 * image taken while mounted. */
static struct bdev *crashed_volume(struct tree *t, uint64_t *tail_pos)
{
	struct bdev *live = new_volume(t);
	struct fs *fs = mount_ok(live);
	make_file(fs, FS_ROOT_INO, "late1", 50, 0, 1000);
	make_file(fs, FS_ROOT_INO, "late2", 51, 0, 1000);
	cr_assert_eq(fs_syncfs(fs), 0);
	struct bdev *d = clone_disk(live);
	fs_unmount(fs);
	bdev_close(live);
	struct fs_super sb = super_of(d);
	struct fs_jhdr h;
	cr_assert_eq(fs_jhdr_decode(mem_disk_block(d, sb.journal_start), &h), 0);
	struct fs_jdesc *desc = malloc(sizeof(*desc));
	cr_assert_eq(fs_jdesc_decode(mem_disk_block(d, sb.journal_start + 1 + h.tail_pos), desc),
		     0, "a transaction at the tail");
	cr_assert_eq(desc->seq, h.tail_seq);
	free(desc);
	*tail_pos = h.tail_pos;
	return d;
}

Test(fsck, journal_replay_after_crash)
{
	struct tree t;
	uint64_t pos;
	struct bdev *d = crashed_volume(&t, &pos);
	struct fsck_report rep;
	struct msgs m = { 0 };
	cr_assert_eq(fsck(d, false, &rep, &m), FSCK_EXIT_CLEAN, "%s", m.text);
	cr_assert_geq(rep.journal_replayed, 2);
	struct fs *fs = mount_ok(d);
	cr_assert_neq(path_ino(fs, "late1"), 0);
	cr_assert_neq(path_ino(fs, "late2"), 0);
	fs_unmount(fs);
	bdev_close(d);
}

static void damaged_journal(bool commit)
{
	struct tree t;
	uint64_t pos;
	struct bdev *d = crashed_volume(&t, &pos);
	struct fs_super sb = super_of(d);
	uint8_t *desc = mem_disk_block(d, sb.journal_start + 1 + pos);
	uint64_t at = pos;
	if (commit)
		at = pos + 1 + get_le32(desc + 4);           /* the first tx's commit block */
	mem_disk_block(d, sb.journal_start + 1 + at)[100] ^= 0x08;
	struct fsck_report rep;
	struct bdev *copy = clone_disk(d);
	cr_assert_eq(fsck_quiet(copy, false, &rep), FSCK_EXIT_ERRORS);
	cr_assert_gt(rep.journal_lost, 0);
	cr_assert_eq(fsck_quiet(copy, false, &rep), FSCK_EXIT_ERRORS, "checking changes nothing");
	bdev_close(copy);
	expect_fixed(d, commit ? "journal commit block" : "journal descriptor");
	struct fs *fs = mount_ok(d);
	verify_tree(fs, &t, NULL);
	verify_mail(fs, &t);
	cr_assert_eq(path_ino(fs, "late2"), 0, "not replayed beyond the damage");
	fs_unmount(fs);
	bdev_close(d);
}

Test(fsck, damaged_journal_descriptor) { damaged_journal(false); }
Test(fsck, damaged_journal_commit_block) { damaged_journal(true); }

Test(fsck, corrupt_journal_header)
{
	struct tree t;
	struct bdev *d = new_volume(&t);
	struct fs_super sb = super_of(d);
	mem_disk_block(d, sb.journal_start)[10] ^= 0x01;
	expect_fixed(d, "journal header");
	struct fs *fs = mount_ok(d);
	verify_tree(fs, &t, NULL);
	fs_unmount(fs);
	bdev_close(d);
}

/* ---- fuzz ---- */

/* Metadata block kinds, for re-sealing damage with a valid checksum. */
enum mkind { M_OTHER, M_ITABLE, M_INDEX, M_DIRHDR, M_TABLE, M_BUCKET };

struct blocks {
	uint64_t *v;
	enum mkind *kind;
	size_t n, cap;
};

static void add_block(struct blocks *b, uint64_t blk, enum mkind k)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 256;
		b->v = realloc(b->v, b->cap * sizeof(*b->v));
		b->kind = realloc(b->kind, b->cap * sizeof(*b->kind));
	}
	b->kind[b->n] = k;
	b->v[b->n++] = blk;
}

static enum mkind dir_block_kind(uint64_t lblk)
{
	return lblk == 0 ? M_DIRHDR : lblk < FS_DIR_BUCKET0 ? M_TABLE : M_BUCKET;
}

static void add_index_blocks(struct bdev *d, struct blocks *b, uint64_t blk, unsigned level,
			     uint64_t base, bool dir)
{
	add_block(b, blk, M_INDEX);
	for (unsigned i = 0; i < FS_INDEX_FANOUT; i++) {
		uint64_t p = fs_index_get(mem_disk_block(d, blk), i);
		uint64_t lo = base + i * pow511(level - 1);
		if (p && level > 1)
			add_index_blocks(d, b, p, level - 1, lo, dir);
		else if (p && dir)
			add_block(b, p, dir_block_kind(FS_NDIRECT + lo));
	}
}

/* A checksum over len bytes with the crc field at crc_off taken as zero. */
static void reseal(uint8_t *p, size_t len, size_t crc_off)
{
	static const uint8_t zero[4];
	uint32_t c = crc32c(0, p, crc_off);
	c = crc32c(c, zero, 4);
	c = crc32c(c, p + crc_off + 4, len - crc_off - 4);
	put_le32(p + crc_off, c);
}

/* Damage that passes the checksum: what a bug rather than the disk does. */
static void reseal_block(uint8_t *p, enum mkind k)
{
	switch (k) {
	case M_ITABLE:
		for (unsigned s = 0; s < FS_INODES_PER_BLOCK; s++)
			reseal(p + s * FS_INODE_SIZE, FS_INODE_SIZE, 252);
		break;
	case M_INDEX: fs_index_seal(p); break;
	case M_DIRHDR: reseal(p, FS_BLOCK_SIZE, 4092); break;
	case M_TABLE: fs_dirtable_seal(p); break;
	case M_BUCKET: fs_bucket_seal(p); break;
	default: break;
	}
}

/* Every metadata block of the volume: superblock, journal header, bitmaps,
 * inode table blocks in use, index blocks, directory blocks. */
static struct blocks metadata_blocks(struct bdev *d)
{
	struct fs_super sb = super_of(d);
	struct blocks b = { 0 };
	add_block(&b, 0, M_OTHER);
	add_block(&b, sb.journal_start, M_OTHER);
	for (uint64_t i = 0; i < sb.ibitmap_blocks + sb.bbitmap_blocks; i++)
		add_block(&b, sb.ibitmap_start + i, M_OTHER);
	uint64_t last_blk = 0;
	for (uint64_t ino = 1; ino < sb.ninodes; ino++) {
		if (!get_bit(d, sb.ibitmap_start, ino))
			continue;
		uint64_t ib = sb.itable_start + ino / FS_INODES_PER_BLOCK;
		if (ib != last_blk)
			add_block(&b, last_blk = ib, M_ITABLE);
		struct fs_inode in = inode_of(d, ino);
		bool dir = S_ISDIR(in.mode);
		for (unsigned i = 0; dir && i < FS_NDIRECT; i++)
			if (in.direct[i])
				add_block(&b, in.direct[i], dir_block_kind(i));
		if (in.root)
			add_index_blocks(d, &b, in.root, in.height, 0, dir);
	}
	return b;
}

/* Read everything through the engine: no -EUCLEAN anywhere. */
static void read_all(struct fs *fs, uint64_t dir, int depth);

struct read_ctx {
	struct fs *fs;
	uint64_t ino[64];
	uint32_t mode[64];
	int n;
	uint64_t last;
};

static int take_entry(void *arg, const char *name, size_t len, const struct fs_attr *a,
		      uint64_t off)
{
	struct read_ctx *c = arg;
	if (c->n == 64)
		return 1;
	c->last = off;
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return 0;
	c->ino[c->n] = a->ino;
	c->mode[c->n++] = a->mode;
	return 0;
}

/* The engine can still change a repaired directory. */
static void touch_dir(struct fs *fs, uint64_t dir)
{
	struct fs_attr a;
	uint64_t fh;
	int r = fs_create(fs, &ctx, dir, "zz.fsck", 0600, O_CREAT | O_EXCL | O_RDWR, &a, &fh);
	if (r)
		cr_assert_fail("create in %" PRIu64 ": %d", dir, r);
	if (fs_write(fs, a.ino, fh, "x", 1, 0) != 1 || fs_release(fs, a.ino, fh))
		cr_assert_fail("write in %" PRIu64, dir);
	fs_forget(fs, a.ino, 1);
	if ((r = fs_unlink(fs, dir, "zz.fsck")))
		cr_assert_fail("unlink in %" PRIu64 ": %d", dir, r);
}

static void read_all(struct fs *fs, uint64_t dir, int depth)
{
	if (depth >= 32)
		cr_assert_fail("directories nested too deep");
	touch_dir(fs, dir);
	uint64_t off = 0;
	for (;;) {
		struct read_ctx c = { .fs = fs, .last = off };
		int r = fs_readdir(fs, dir, 0, off, take_entry, &c);
		if (r)
			cr_assert_fail("readdir %" PRIu64 ": %d", dir, r);
		for (int i = 0; i < c.n; i++) {
			struct fs_attr a;
			if (fs_getattr(fs, c.ino[i], &a))
				cr_assert_fail("getattr %" PRIu64, c.ino[i]);
			if (S_ISDIR(a.mode)) {
				read_all(fs, c.ino[i], depth + 1);
			} else if (S_ISREG(a.mode)) {
				static uint8_t buf[1 << 16];
				uint64_t n = a.size < sizeof(buf) ? a.size : sizeof(buf);
				ssize_t got = fs_read(fs, c.ino[i], 0, buf, n, 0);
				if (got < 0)
					cr_assert_fail("read %" PRIu64 ": %zd", c.ino[i], got);
			} else if (S_ISLNK(a.mode)) {
				char target[FS_SYMLINK_MAX];
				ssize_t got = fs_readlink(fs, c.ino[i], target, sizeof(target));
				if (got <= 0)
					cr_assert_fail("readlink %" PRIu64 ": %zd", c.ino[i], got);
			}
		}
		if (c.n < 64)
			break;
		off = c.last;
	}
}

static void fuzz_once(struct bdev *golden, const struct blocks *meta, struct prng *rng,
		      int iter)
{
	struct bdev *d = clone_disk(golden);
	const char *max_env = getenv("FSCK_FUZZ_BLOCKS");   /* blocks damaged per round */
	unsigned max = max_env ? (unsigned)atoi(max_env) : 3;
	unsigned nblk = 1 + (unsigned)prng_below(rng, max ? max : 1);
	char what[256];
	size_t wl = 0;
	for (unsigned k = 0; k < nblk; k++) {
		size_t pick = prng_below(rng, meta->n);
		uint64_t blk = meta->v[pick];
		unsigned nbytes = 1 + (unsigned)prng_below(rng, 8);
		bool sealed = prng_below(rng, 2);
		uint8_t *p = mem_disk_block(d, blk);
		unsigned mode = (unsigned)prng_below(rng, 10);
		if (mode == 0)
			memset(p, 0, FS_BLOCK_SIZE);               /* a lost write */
		for (unsigned i = 0; mode == 1 && i < FS_BLOCK_SIZE; i++)
			p[i] = (uint8_t)prng_next(rng);            /* garbage */
		for (unsigned i = 0; mode > 1 && i < nbytes; i++)
			p[prng_below(rng, FS_BLOCK_SIZE)] = (uint8_t)prng_next(rng);
		if (sealed)
			reseal_block(mem_disk_block(d, blk), meta->kind[pick]);
		wl += (size_t)snprintf(what + wl, sizeof(what) - wl, " %" PRIu64 "%s%u%s", blk,
				       mode == 0 ? "z" : mode == 1 ? "g" : "x", nbytes,
				       sealed ? "s" : "");
	}
	struct fsck_report rep;
	struct msgs m = { 0 };
	int code = fsck(d, false, &rep, &m);
	cr_assert(code == FSCK_EXIT_CLEAN || code == FSCK_EXIT_ERRORS,
		  "iter %d (blocks%s): check exit %d", iter, what, code);
	if (getenv("FSCK_FUZZ_VERBOSE"))
		fprintf(stderr, "iter %d (blocks%s): exit %d\n%s", iter, what, code, m.text);
	m = (struct msgs){ 0 };
	struct fsck_opts o = { .repair = true, .problem = collect, .arg = &m };
	struct cat_error err = { 0 };
	int r = fsck_run(d, &o, &rep, &err);
	code = fsck_exit_code(r, &rep);
	if (r == -EUCLEAN) {
		cr_assert(strstr(err.msg, "superblock"), "iter %d: %s", iter, err.msg);
		bdev_close(d);
		return;
	}
	cr_assert_eq(r, 0, "iter %d (blocks%s): %s", iter, what, err.msg);
	cr_assert(code == FSCK_EXIT_CLEAN || code == FSCK_EXIT_FIXED,
		  "iter %d (blocks%s): repair exit %d:\n%s", iter, what, code, m.text);
	m = (struct msgs){ 0 };
	code = fsck(d, false, &rep, &m);
	cr_assert_eq(code, FSCK_EXIT_CLEAN, "iter %d (blocks%s): after repair exit %d:\n%s", iter,
		     what, code, m.text);
	struct fs *fs = mount_ok(d);
	read_all(fs, FS_ROOT_INO, 0);
	cr_assert_eq(fs_unmount(fs), 0);
	m = (struct msgs){ 0 };
	code = fsck(d, false, &rep, &m);
	cr_assert_eq(code, FSCK_EXIT_CLEAN, "iter %d (blocks%s): after mount exit %d:\n%s", iter,
		     what, code, m.text);
	bdev_close(d);
}

static void fuzz(struct bdev *golden, struct blocks meta, uint64_t seed_base, int iters_default)
{
	struct prng rng;
	const char *seed_env = getenv("FSCK_FUZZ_SEED");
	uint64_t seed = seed_env ? strtoull(seed_env, NULL, 0) : seed_base;
	const char *iters_env = getenv("FSCK_FUZZ_ITERS");
	int iters = iters_env ? atoi(iters_env) : iters_default;
	prng_seed(&rng, seed);
	for (int i = 0; i < iters; i++)
		fuzz_once(golden, &meta, &rng, i);
	free(meta.v);
	free(meta.kind);
	bdev_close(golden);
}

Test(fsck, fuzz_metadata, .timeout = 300)
{
	struct tree t;
	struct bdev *golden = new_volume(&t);
	fuzz(golden, metadata_blocks(golden), 20261125, 150);
}

/* A crashed volume: the log's transactions are fair game too. */
Test(fsck, fuzz_crashed_volume, .timeout = 300)
{
	struct tree t;
	uint64_t pos;
	struct bdev *golden = crashed_volume(&t, &pos);
	struct blocks meta = metadata_blocks(golden);
	struct fs_super sb = super_of(golden);
	for (uint64_t i = 0; i < 24; i++)
		add_block(&meta, sb.journal_start + 1 + (pos + i) % (sb.journal_blocks - 1), M_OTHER);
	fuzz(golden, meta, 777, 60);
}
