/*
 * layout.c - encoders and decoders for the on-disk structures of layout.h.
 * Offsets are written out explicitly; README.md's tables list the same.
 */
#include "core/fs/layout.h"

#include <errno.h>
#include <string.h>

#include "core/base/crc32c.h"

/* The crc of a block (or inode slot) whose crc field at crc_off is zero. */
static uint32_t crc_with_hole(const uint8_t *p, size_t len, size_t crc_off)
{
	static const uint8_t zero[4];
	uint32_t c = crc32c(0, p, crc_off);
	c = crc32c(c, zero, 4);
	return crc32c(c, p + crc_off + 4, len - crc_off - 4);
}

static void seal(uint8_t *p, size_t len, size_t crc_off)
{
	put_le32(p + crc_off, crc_with_hole(p, len, crc_off));
}

static int check(const uint8_t *p, size_t len, size_t crc_off)
{
	return get_le32(p + crc_off) == crc_with_hole(p, len, crc_off) ? 0 : -EUCLEAN;
}

/* ---- superblock: crc at 4092 ---- */
void fs_super_encode(const struct fs_super *s, void *blk)
{
	uint8_t *p = blk;
	memset(p, 0, FS_BLOCK_SIZE);
	put_le64(p + 0, s->magic);
	put_le32(p + 8, s->version);
	put_le32(p + 12, s->flags);
	memcpy(p + 16, s->uuid, 16);
	const uint64_t f[] = { s->nblocks, s->journal_start, s->journal_blocks,
			       s->ibitmap_start, s->ibitmap_blocks, s->bbitmap_start,
			       s->bbitmap_blocks, s->itable_start, s->itable_blocks,
			       s->ninodes, s->data_start, s->hash_seed,
			       s->orphan_ino, s->created_ns };
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		put_le64(p + 32 + 8 * i, f[i]);
	seal(p, FS_BLOCK_SIZE, 4092);
}

int fs_super_decode(const void *blk, struct fs_super *s)
{
	const uint8_t *p = blk;
	if (get_le64(p) != FS_SB_MAGIC || check(p, FS_BLOCK_SIZE, 4092))
		return -EUCLEAN;
	s->magic = get_le64(p);
	s->version = get_le32(p + 8);
	s->flags = get_le32(p + 12);
	memcpy(s->uuid, p + 16, 16);
	uint64_t *f[] = { &s->nblocks, &s->journal_start, &s->journal_blocks,
			  &s->ibitmap_start, &s->ibitmap_blocks, &s->bbitmap_start,
			  &s->bbitmap_blocks, &s->itable_start, &s->itable_blocks,
			  &s->ninodes, &s->data_start, &s->hash_seed,
			  &s->orphan_ino, &s->created_ns };
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		*f[i] = get_le64(p + 32 + 8 * i);
	if (s->version != FS_VERSION)
		return -EUCLEAN;
	/* Areas in order, inside the volume, nothing overlapping. */
	if (s->journal_start != 1 || s->journal_blocks < 64 ||
	    s->ibitmap_start != s->journal_start + s->journal_blocks ||
	    s->bbitmap_start != s->ibitmap_start + s->ibitmap_blocks ||
	    s->itable_start != s->bbitmap_start + s->bbitmap_blocks ||
	    s->data_start != s->itable_start + s->itable_blocks ||
	    s->data_start >= s->nblocks ||
	    s->ibitmap_blocks * FS_BLOCK_SIZE * 8 < s->ninodes ||
	    s->bbitmap_blocks * FS_BLOCK_SIZE * 8 < s->nblocks ||
	    s->itable_blocks * FS_INODES_PER_BLOCK < s->ninodes ||
	    s->ninodes <= FS_ORPHAN_INO || s->orphan_ino != FS_ORPHAN_INO)
		return -EUCLEAN;
	return 0;
}

/* ---- journal header: crc at 4092 ---- */
void fs_jhdr_encode(const struct fs_jhdr *h, void *blk)
{
	uint8_t *p = blk;
	memset(p, 0, FS_BLOCK_SIZE);
	put_le64(p + 0, FS_JHDR_MAGIC);
	put_le64(p + 8, h->epoch);
	put_le64(p + 16, h->tail_seq);
	put_le64(p + 24, h->tail_pos);
	seal(p, FS_BLOCK_SIZE, 4092);
}

int fs_jhdr_decode(const void *blk, struct fs_jhdr *h)
{
	const uint8_t *p = blk;
	if (get_le64(p) != FS_JHDR_MAGIC || check(p, FS_BLOCK_SIZE, 4092))
		return -EUCLEAN;
	h->magic = FS_JHDR_MAGIC;
	h->epoch = get_le64(p + 8);
	h->tail_seq = get_le64(p + 16);
	h->tail_pos = get_le64(p + 24);
	return 0;
}

/* ---- descriptor: header 32 bytes, home[] from 32, crc at 4092 ---- */
void fs_jdesc_encode(const struct fs_jdesc *d, void *blk)
{
	uint8_t *p = blk;
	memset(p, 0, FS_BLOCK_SIZE);
	put_le32(p + 0, FS_JDESC_MAGIC);
	put_le32(p + 4, d->count);
	put_le64(p + 8, d->epoch);
	put_le64(p + 16, d->seq);
	put_le32(p + 24, d->index);
	put_le32(p + 28, d->last);
	for (uint32_t i = 0; i < d->count && i < FS_JDESC_MAX; i++)
		put_le64(p + 32 + 8 * i, d->home[i]);
	seal(p, FS_BLOCK_SIZE, 4092);
}

int fs_jdesc_decode(const void *blk, struct fs_jdesc *d)
{
	const uint8_t *p = blk;
	if (get_le32(p) != FS_JDESC_MAGIC || check(p, FS_BLOCK_SIZE, 4092))
		return -EUCLEAN;
	d->magic = FS_JDESC_MAGIC;
	d->count = get_le32(p + 4);
	d->epoch = get_le64(p + 8);
	d->seq = get_le64(p + 16);
	d->index = get_le32(p + 24);
	d->last = get_le32(p + 28);
	if (d->count == 0 || d->count > FS_JDESC_MAX || d->last > 1)
		return -EUCLEAN;
	for (uint32_t i = 0; i < d->count; i++)
		d->home[i] = get_le64(p + 32 + 8 * i);
	return 0;
}

/* ---- commit: crc at 4092 ---- */
void fs_jcommit_encode(const struct fs_jcommit *c, void *blk)
{
	uint8_t *p = blk;
	memset(p, 0, FS_BLOCK_SIZE);
	put_le32(p + 0, FS_JCOMMIT_MAGIC);
	put_le32(p + 4, c->ndesc);
	put_le64(p + 8, c->epoch);
	put_le64(p + 16, c->seq);
	put_le64(p + 24, c->nblocks);
	put_le32(p + 32, c->data_crc);
	put_le64(p + 40, c->commit_ns);
	seal(p, FS_BLOCK_SIZE, 4092);
}

int fs_jcommit_decode(const void *blk, struct fs_jcommit *c)
{
	const uint8_t *p = blk;
	if (get_le32(p) != FS_JCOMMIT_MAGIC || check(p, FS_BLOCK_SIZE, 4092))
		return -EUCLEAN;
	c->magic = FS_JCOMMIT_MAGIC;
	c->ndesc = get_le32(p + 4);
	c->epoch = get_le64(p + 8);
	c->seq = get_le64(p + 16);
	c->nblocks = get_le64(p + 24);
	c->data_crc = get_le32(p + 32);
	c->commit_ns = get_le64(p + 40);
	return 0;
}

/* ---- inode slot (256 bytes): crc at 252 ---- */
void fs_inode_encode(const struct fs_inode *in, void *slot)
{
	uint8_t *p = slot;
	memset(p, 0, FS_INODE_SIZE);
	put_le32(p + 0, in->mode);
	put_le32(p + 4, in->uid);
	put_le32(p + 8, in->gid);
	put_le32(p + 12, in->nlink);
	put_le32(p + 16, in->flags);
	put_le32(p + 20, in->generation);
	put_le64(p + 24, in->size);
	put_le64(p + 32, in->blocks);
	put_le64(p + 40, (uint64_t)in->atime_sec);
	put_le64(p + 48, (uint64_t)in->mtime_sec);
	put_le64(p + 56, (uint64_t)in->ctime_sec);
	put_le32(p + 64, in->atime_nsec);
	put_le32(p + 68, in->mtime_nsec);
	put_le32(p + 72, in->ctime_nsec);
	put_le32(p + 76, in->height);
	for (unsigned i = 0; i < FS_NDIRECT; i++)
		put_le64(p + 80 + 8 * i, in->direct[i]);
	put_le64(p + 176, in->root);
	put_le64(p + 184, in->reserved);
	seal(p, FS_INODE_SIZE, 252);
}

int fs_inode_decode(const void *slot, struct fs_inode *in)
{
	const uint8_t *p = slot;
	if (check(p, FS_INODE_SIZE, 252))
		return -EUCLEAN;
	in->mode = get_le32(p + 0);
	in->uid = get_le32(p + 4);
	in->gid = get_le32(p + 8);
	in->nlink = get_le32(p + 12);
	in->flags = get_le32(p + 16);
	in->generation = get_le32(p + 20);
	in->size = get_le64(p + 24);
	in->blocks = get_le64(p + 32);
	in->atime_sec = (int64_t)get_le64(p + 40);
	in->mtime_sec = (int64_t)get_le64(p + 48);
	in->ctime_sec = (int64_t)get_le64(p + 56);
	in->atime_nsec = get_le32(p + 64);
	in->mtime_nsec = get_le32(p + 68);
	in->ctime_nsec = get_le32(p + 72);
	in->height = get_le32(p + 76);
	for (unsigned i = 0; i < FS_NDIRECT; i++)
		in->direct[i] = get_le64(p + 80 + 8 * i);
	in->root = get_le64(p + 176);
	in->reserved = get_le64(p + 184);
	if (in->height > FS_MAX_HEIGHT || (in->height == 0) != (in->root == 0) ||
	    in->atime_nsec >= 1000000000u || in->mtime_nsec >= 1000000000u ||
	    in->ctime_nsec >= 1000000000u)
		return -EUCLEAN;
	return 0;
}

/* ---- index block: magic at 0, crc at 4, pointers from 8 ---- */
uint64_t fs_index_get(const void *blk, unsigned i)
{
	return get_le64((const uint8_t *)blk + 8 + 8 * i);
}

void fs_index_set(void *blk, unsigned i, uint64_t ptr)
{
	put_le64((uint8_t *)blk + 8 + 8 * i, ptr);
}

void fs_index_init(void *blk)
{
	memset(blk, 0, FS_BLOCK_SIZE);
	put_le32(blk, FS_INDEX_MAGIC);
	fs_index_seal(blk);
}

void fs_index_seal(void *blk)
{
	seal(blk, FS_BLOCK_SIZE, 4);
}

int fs_index_check(const void *blk)
{
	if (get_le32(blk) != FS_INDEX_MAGIC)
		return -EUCLEAN;
	return check(blk, FS_BLOCK_SIZE, 4);
}

/* ---- directory header: crc at 4092 ---- */
void fs_dirhdr_encode(const struct fs_dirhdr *h, void *blk)
{
	uint8_t *p = blk;
	memset(p, 0, FS_BLOCK_SIZE);
	put_le32(p + 0, FS_DIRHDR_MAGIC);
	put_le32(p + 4, h->depth);
	put_le32(p + 8, h->nbuckets);
	put_le64(p + 16, h->nentries);
	put_le64(p + 24, h->parent);
	seal(p, FS_BLOCK_SIZE, 4092);
}

int fs_dirhdr_decode(const void *blk, struct fs_dirhdr *h)
{
	const uint8_t *p = blk;
	if (get_le32(p) != FS_DIRHDR_MAGIC || check(p, FS_BLOCK_SIZE, 4092))
		return -EUCLEAN;
	h->magic = FS_DIRHDR_MAGIC;
	h->depth = get_le32(p + 4);
	h->nbuckets = get_le32(p + 8);
	h->nentries = get_le64(p + 16);
	h->parent = get_le64(p + 24);
	if (h->depth > FS_DIR_MAX_DEPTH || h->nbuckets == 0 ||
	    h->nbuckets > (1u << FS_DIR_MAX_DEPTH))
		return -EUCLEAN;
	return 0;
}

/* ---- bucket: magic at 0, crc at 4 ---- */
void fs_bucket_seal(void *blk)
{
	seal(blk, FS_BLOCK_SIZE, 4);
}

int fs_bucket_check(const void *blk)
{
	if (get_le32(blk) != FS_BUCKET_MAGIC)
		return -EUCLEAN;
	return check(blk, FS_BLOCK_SIZE, 4);
}

/* ---- directory table block: crc at 0 ---- */
void fs_dirtable_seal(void *blk)
{
	seal(blk, FS_BLOCK_SIZE, 0);
}

int fs_dirtable_check(const void *blk)
{
	return check(blk, FS_BLOCK_SIZE, 0);
}

/* ---- geometry ---- */
static uint64_t div_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

int fs_geometry(uint64_t nblocks, uint64_t ninodes_hint, struct fs_super *s)
{
	memset(s, 0, sizeof(*s));
	if (nblocks < 1024)
		return -ENOSPC;
	uint64_t jb = nblocks / 64;
	if (jb < 1024)
		jb = 1024;
	if (jb > 32768)
		jb = 32768;
	uint64_t ni = ninodes_hint ? ninodes_hint : nblocks / 4;
	if (ni < 64)
		ni = 64;
	if (ni > (1ull << 32))
		ni = 1ull << 32;
	ni = div_up(ni, FS_INODES_PER_BLOCK) * FS_INODES_PER_BLOCK;
	s->magic = FS_SB_MAGIC;
	s->version = FS_VERSION;
	s->nblocks = nblocks;
	s->journal_start = 1;
	s->journal_blocks = jb;
	s->ibitmap_start = 1 + jb;
	s->ibitmap_blocks = div_up(ni, FS_BLOCK_SIZE * 8);
	s->bbitmap_start = s->ibitmap_start + s->ibitmap_blocks;
	s->bbitmap_blocks = div_up(nblocks, FS_BLOCK_SIZE * 8);
	s->itable_start = s->bbitmap_start + s->bbitmap_blocks;
	s->itable_blocks = ni / FS_INODES_PER_BLOCK;
	s->ninodes = ni;
	s->data_start = s->itable_start + s->itable_blocks;
	if (s->data_start + 64 > nblocks)
		return -ENOSPC;
	return 0;
}
