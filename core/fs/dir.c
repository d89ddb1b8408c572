/*
 * dir.c - directories as extendible hashes (the contract is in dir.h).
 *
 * Every name has a 63-bit key (SipHash-2-4 of the name under the volume's
 * hash seed); a name whose key is taken gets the first free key of its probe
 * range [key, key + DIR_PROBE). At global depth d the table maps the top d
 * bits of a key (its slot) to a bucket. A bucket of local depth ld holds
 * exactly the keys whose top ld bits are its prefix, the range
 * [prefix << (63 - ld), (prefix + 1) << (63 - ld)), and the 2^(d - ld) slots
 * starting with that prefix point at it. Entries are sorted inside a bucket,
 * so readdir walks the key space from cookie + 1 one bucket range at a time.
 * An add whose bucket is full splits it on key bit 62 - ld (doubling the
 * table first when ld == d): the upper half of the range, its entries and
 * its slots go to a new bucket. One add splits at most ADD_MAX_SPLITS times
 * and grows the table no further than dir_add_credits paid for. Each split
 * gathers every buffer it needs before changing any, so a failure leaves a
 * valid directory. Every block is checked (crc, and its fields against the
 * header and the slot it was reached by) before it is used.
 */
#include "core/fs/dir.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/fs/bcache.h"
#include "core/fs/fs_internal.h"
#include "core/fs/journal.h"
#include "core/fs/layout.h"

#define KEY_END (1ull << 63)        /* keys are < KEY_END */
#define PER_BLOCK FS_DIR_TABLE_PER_BLOCK
#define ADD_MAX_SPLITS 3u
_Static_assert(DIR_PROBE <= 32, "struct probe's taken mask is 32 bits");

/* Bucket header fields (magic at 0, crc at 4). */
#define B_DEPTH 8
#define B_COUNT 12
#define B_USED 16

#ifdef DIR_TEST_KEY_HOOK
/* Tests may rewrite keys (to force collisions); normal builds have no hook. */
uint64_t DIR_TEST_KEY_HOOK(uint64_t key, const char *name, size_t len);
#endif

/* ---- keys ---- */

static uint64_t rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static void sip_round(uint64_t v[4])
{
	v[0] += v[1]; v[1] = rotl(v[1], 13); v[1] ^= v[0]; v[0] = rotl(v[0], 32);
	v[2] += v[3]; v[3] = rotl(v[3], 16); v[3] ^= v[2];
	v[0] += v[3]; v[3] = rotl(v[3], 21); v[3] ^= v[0];
	v[2] += v[1]; v[1] = rotl(v[1], 17); v[1] ^= v[2]; v[2] = rotl(v[2], 32);
}

static void sip_absorb(uint64_t v[4], uint64_t m)
{
	v[3] ^= m;
	sip_round(v);
	sip_round(v);
	v[0] ^= m;
}

static uint64_t siphash24(uint64_t k0, uint64_t k1, const uint8_t *m, size_t len)
{
	uint64_t v[4] = { k0 ^ 0x736f6d6570736575ull, k1 ^ 0x646f72616e646f6dull,
			  k0 ^ 0x6c7967656e657261ull, k1 ^ 0x7465646279746573ull };
	size_t full = len & ~(size_t)7;
	uint64_t last = (uint64_t)len << 56;

	for (size_t i = 0; i < full; i += 8)
		sip_absorb(v, get_le64(m + i));
	for (size_t i = full; i < len; i++)
		last |= (uint64_t)m[i] << (8 * (i - full));
	sip_absorb(v, last);
	v[2] ^= 0xff;
	for (int i = 0; i < 4; i++)
		sip_round(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

uint64_t dir_name_key(uint64_t seed, const char *name, size_t len)
{
	uint64_t key = siphash24(seed, ~seed, (const uint8_t *)name, len) & (KEY_END - 1);
	return key < DIR_KEY_MIN ? key + DIR_KEY_MIN : key;
}

static int check_name(const char *name, size_t len)
{
	if (len == 0)
		return -EINVAL;
	if (len > FS_NAME_MAX)
		return -ENAMETOOLONG;
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return -EINVAL;
	if (memchr(name, '/', len) || memchr(name, '\0', len))
		return -EINVAL;
	return 0;
}

/* ---- one operation on one directory ---- */

struct dctx {
	struct fs *fs;
	struct tx *tx;             /* NULL for reads */
	struct inode *dp;
	struct buf *hbuf;          /* the header block, held */
	struct fs_dirhdr h;
	unsigned max_tblocks;      /* dir_add: table blocks it may use */
};

static int corrupt(struct dctx *d, const char *what)
{
	return fs_corrupt(d->fs, what, d->dp->ino);
}

static void put_buf(struct dctx *d, struct buf *b)
{
	if (b)
		bcache_release(d->fs->cache, b);
}

/* An existing block of the directory (a hole is corruption). */
static int read_block(struct dctx *d, uint64_t lblk, const char *what, struct buf **out)
{
	int err = inode_block(d->fs, d->tx, d->dp, lblk, false, out);
	if (err)
		return err;
	return *out ? 0 : corrupt(d, what);
}

static int hdr_load(struct fs *fs, struct tx *tx, struct inode *dp, struct dctx *d)
{
	*d = (struct dctx){ .fs = fs, .tx = tx, .dp = dp };
	int err = read_block(d, 0, "directory header", &d->hbuf);
	if (err)
		return err;
	if (fs_dirhdr_decode(d->hbuf->data, &d->h)) {
		put_buf(d, d->hbuf);
		d->hbuf = NULL;
		return corrupt(d, "directory header");
	}
	return 0;
}

static void hdr_store(struct dctx *d)
{
	tx_add(d->tx, d->hbuf);
	fs_dirhdr_encode(&d->h, d->hbuf->data);
}

static void hdr_done(struct dctx *d)
{
	put_buf(d, d->hbuf);
}

/* ---- the bucket table ---- */

static unsigned table_blocks(unsigned depth)
{
	return ((1u << depth) + PER_BLOCK - 1) / PER_BLOCK;
}

/* Slot `slot` in held table blocks bufs[0..], the first being table block first. */
static uint8_t *slot_ptr(struct buf **bufs, uint64_t first, uint64_t slot)
{
	return bufs[slot / PER_BLOCK - first]->data + 4 + 4 * (slot % PER_BLOCK);
}

static int table_read(struct dctx *d, uint64_t slot, uint32_t *bucket)
{
	struct buf *b;
	int err = read_block(d, 1 + slot / PER_BLOCK, "directory table", &b);
	if (err)
		return err;
	bool ok = fs_dirtable_check(b->data) == 0;
	if (ok) {
		*bucket = get_le32(slot_ptr(&b, slot / PER_BLOCK, slot));
		ok = *bucket < d->h.nbuckets;
	}
	put_buf(d, b);
	return ok ? 0 : corrupt(d, "directory table");
}

/* Hold table blocks [first, first + n) and join them to the transaction.
 * Blocks from `fresh` on lie beyond the current table: they are allocated
 * (whatever they held is dead); the others must pass their check. */
static int table_hold(struct dctx *d, unsigned first, unsigned n, unsigned fresh,
		      struct buf **bufs)
{
	for (unsigned i = 0; i < n; i++) {
		unsigned t = first + i;
		int err = t >= fresh
			? inode_block(d->fs, d->tx, d->dp, 1 + t, true, &bufs[i])
			: read_block(d, 1 + t, "directory table", &bufs[i]);
		if (!err && t < fresh && fs_dirtable_check(bufs[i]->data)) {
			put_buf(d, bufs[i]);
			err = corrupt(d, "directory table");
		}
		if (err) {
			while (i--)
				put_buf(d, bufs[i]);
			return err;
		}
	}
	for (unsigned i = 0; i < n; i++)
		tx_add(d->tx, bufs[i]);
	return 0;
}

static void table_release(struct dctx *d, unsigned n, struct buf **bufs)
{
	for (unsigned i = 0; i < n; i++) {
		fs_dirtable_seal(bufs[i]->data);
		put_buf(d, bufs[i]);
	}
}

/* depth + 1: new slot s = old slot s / 2, done in place from the top. */
static int table_double(struct dctx *d)
{
	unsigned old = table_blocks(d->h.depth), n = table_blocks(d->h.depth + 1);
	struct buf **bufs = calloc(n, sizeof(*bufs));
	if (!bufs)
		return -ENOMEM;
	int err = table_hold(d, 0, n, old, bufs);
	if (!err) {
		for (uint64_t s = (2ull << d->h.depth) - 1; s > 0; s--)
			put_le32(slot_ptr(bufs, 0, s), get_le32(slot_ptr(bufs, 0, s / 2)));
		table_release(d, n, bufs);
		d->h.depth++;
		hdr_store(d);
	}
	free(bufs);
	return err;
}

/* ---- buckets ---- */

static uint64_t ent_key(const uint8_t *e) { return get_le64(e); }
static uint64_t ent_ino(const uint8_t *e) { return get_le64(e + 8); }
static uint8_t ent_type(const uint8_t *e) { return e[16]; }
static size_t ent_namelen(const uint8_t *e) { return e[17]; }
static const char *ent_name(const uint8_t *e) { return (const char *)e + FS_DIRENT_HDR; }
static size_t ent_size(const uint8_t *e) { return FS_DIRENT_HDR + ent_namelen(e); }

static bool ent_is(const uint8_t *e, const char *name, size_t len)
{
	return ent_namelen(e) == len && memcmp(ent_name(e), name, len) == 0;
}

static size_t bucket_end(const uint8_t *p)
{
	return FS_BUCKET_HDR + get_le32(p + B_USED);
}

/* A held bucket and the key range it covers. */
struct bref {
	struct buf *buf;
	uint32_t num, ld;
	uint64_t prefix, start, end;
};

/* Entries in bounds and sorted, with valid names and keys that all start
 * with the prefix of the slot the bucket was reached by. */
static bool bucket_valid(const uint8_t *p, uint32_t depth, uint64_t slot)
{
	uint32_t ld = get_le32(p + B_DEPTH), count = get_le32(p + B_COUNT);
	if (ld > depth || get_le32(p + B_USED) > FS_BLOCK_SIZE - FS_BUCKET_HDR)
		return false;
	uint64_t prefix = slot >> (depth - ld), prev = 0;
	size_t off = FS_BUCKET_HDR, end = bucket_end(p);
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *e = p + off;
		if (end - off < FS_DIRENT_HDR || end - off < ent_size(e))
			return false;
		uint64_t key = ent_key(e);
		if (key <= prev || key >= KEY_END || key < DIR_KEY_MIN ||
		    key >> (63 - ld) != prefix ||
		    check_name(ent_name(e), ent_namelen(e)) != 0)
			return false;
		prev = key;
		off += ent_size(e);
	}
	return off == end;
}

/* The bucket covering key, checked. */
static int bucket_get(struct dctx *d, uint64_t key, struct bref *br)
{
	uint64_t slot = key >> (63 - d->h.depth);
	int err = table_read(d, slot, &br->num);
	if (err)
		return err;
	err = read_block(d, FS_DIR_BUCKET0 + br->num, "directory bucket", &br->buf);
	if (err)
		return err;
	const uint8_t *p = br->buf->data;
	if (fs_bucket_check(p) || !bucket_valid(p, d->h.depth, slot)) {
		put_buf(d, br->buf);
		return corrupt(d, "directory bucket");
	}
	br->ld = get_le32(p + B_DEPTH);
	br->prefix = slot >> (d->h.depth - br->ld);
	br->start = br->prefix << (63 - br->ld);
	br->end = (br->prefix + 1) << (63 - br->ld);
	return 0;
}

static void bucket_init(uint8_t *p, uint32_t ld)
{
	memset(p, 0, FS_BLOCK_SIZE);
	put_le32(p, FS_BUCKET_MAGIC);
	put_le32(p + B_DEPTH, ld);
}

static void bucket_set_counts(uint8_t *p, uint32_t count, size_t used)
{
	put_le32(p + B_COUNT, count);
	put_le32(p + B_USED, (uint32_t)used);
}

static bool bucket_fits(const uint8_t *p, size_t len)
{
	return bucket_end(p) + FS_DIRENT_HDR + len <= FS_BLOCK_SIZE;
}

static void bucket_insert(uint8_t *p, uint64_t key, const char *name, size_t len,
			  uint64_t ino, uint8_t type)
{
	size_t end = bucket_end(p), off = FS_BUCKET_HDR, size = FS_DIRENT_HDR + len;
	while (off < end && ent_key(p + off) < key)
		off += ent_size(p + off);
	memmove(p + off + size, p + off, end - off);
	put_le64(p + off, key);
	put_le64(p + off + 8, ino);
	p[off + 16] = type;
	p[off + 17] = (uint8_t)len;
	memcpy(p + off + FS_DIRENT_HDR, name, len);
	bucket_set_counts(p, get_le32(p + B_COUNT) + 1, end + size - FS_BUCKET_HDR);
}

static void bucket_delete(uint8_t *p, size_t off)
{
	size_t end = bucket_end(p), size = ent_size(p + off);
	memmove(p + off, p + off + size, end - off - size);
	memset(p + end - size, 0, size);
	bucket_set_counts(p, get_le32(p + B_COUNT) - 1, end - size - FS_BUCKET_HDR);
}

/* Move the entries with key >= mid from `from` to the empty bucket `to`;
 * both get local depth ld. */
static void bucket_move_upper(uint8_t *from, uint8_t *to, uint64_t mid, uint32_t ld)
{
	size_t end = bucket_end(from), off = FS_BUCKET_HDR;
	uint32_t count = get_le32(from + B_COUNT), kept = 0;
	while (off < end && ent_key(from + off) < mid) {
		off += ent_size(from + off);
		kept++;
	}
	bucket_init(to, ld);
	memcpy(to + FS_BUCKET_HDR, from + off, end - off);
	bucket_set_counts(to, count - kept, end - off);
	memset(from + off, 0, end - off);
	bucket_set_counts(from, kept, off - FS_BUCKET_HDR);
	put_le32(from + B_DEPTH, ld);
}

/* ---- split ---- */

/* Double the table if br's bucket is as deep as it, so that it can split. */
static int split_room(struct dctx *d, const struct bref *br)
{
	if (br->ld == FS_DIR_MAX_DEPTH)
		return -ENOSPC;
	if (d->h.nbuckets >= 1u << FS_DIR_MAX_DEPTH)
		return corrupt(d, "directory header");
	if (br->ld < d->h.depth)
		return 0;
	if (table_blocks(d->h.depth + 1) > d->max_tblocks)
		return -ENOSPC;  /* more than dir_add_credits paid for */
	return table_double(d);
}

/* Split br's bucket on its next key bit: the upper half of its range, with
 * its entries and its table slots, goes to the new bucket nbuf. The table
 * blocks holding those slots are held in bufs (the first is table block
 * lo / PER_BLOCK). */
static void split_apply(struct dctx *d, struct bref *br, struct buf *nbuf,
			struct buf **bufs, unsigned nblk, uint64_t lo, uint64_t n)
{
	uint64_t mid = (2 * br->prefix + 1) << (62 - br->ld);
	tx_add(d->tx, br->buf);
	tx_add(d->tx, nbuf);
	bucket_move_upper(br->buf->data, nbuf->data, mid, br->ld + 1);
	fs_bucket_seal(br->buf->data);
	fs_bucket_seal(nbuf->data);
	for (uint64_t s = lo; s < lo + n; s++)
		put_le32(slot_ptr(bufs, lo / PER_BLOCK, s), d->h.nbuckets);
	table_release(d, nblk, bufs);
	d->h.nbuckets++;
	hdr_store(d);
}

/* Split br's bucket, gathering the table blocks and the new bucket first so
 * that a failure changes nothing (but a doubling, complete in itself). */
static int split(struct dctx *d, struct bref *br)
{
	int err = split_room(d, br);
	if (err)
		return err;
	unsigned shift = d->h.depth - br->ld - 1;
	uint64_t lo = (2 * br->prefix + 1) << shift, n = 1ull << shift;
	unsigned first = (unsigned)(lo / PER_BLOCK);
	unsigned nblk = (unsigned)((lo + n - 1) / PER_BLOCK) - first + 1;
	struct buf **bufs = calloc(nblk, sizeof(*bufs)), *nbuf;
	if (!bufs)
		return -ENOMEM;
	err = table_hold(d, first, nblk, UINT_MAX, bufs);
	if (!err) {   /* the allocation last: a failure leaves no stray block */
		err = inode_block(d->fs, d->tx, d->dp, FS_DIR_BUCKET0 + d->h.nbuckets,
				  true, &nbuf);
		if (err) {
			table_release(d, nblk, bufs);
		} else {
			split_apply(d, br, nbuf, bufs, nblk, lo, n);
			put_buf(d, nbuf);
		}
	}
	free(bufs);
	return err;
}

/* ---- finding a name ---- */

struct probe {
	struct bref br;       /* the entry's bucket, held when found */
	size_t off;           /* the entry's offset in it */
	uint32_t taken;       /* bit i: key base + i belongs to another name */
};

static bool probe_bucket(struct probe *pr, const char *name, size_t len,
			 uint64_t base, uint64_t last)
{
	const uint8_t *p = pr->br.buf->data;
	size_t end = bucket_end(p);
	for (size_t off = FS_BUCKET_HDR; off < end; off += ent_size(p + off)) {
		uint64_t key = ent_key(p + off);
		if (key < base)
			continue;
		if (key > last)
			break;
		if (ent_is(p + off, name, len)) {
			pr->off = off;
			return true;
		}
		pr->taken |= 1u << (key - base);
	}
	return false;
}

/* Look for name among the keys [base, base + DIR_PROBE), which may reach
 * into a second bucket. 0 with pr->br held if found; -ENOENT (pr->taken
 * filled) if not. */
static int probe(struct dctx *d, const char *name, size_t len, uint64_t base,
		 struct probe *pr)
{
	uint64_t last = base + (DIR_PROBE - 1);
	if (last >= KEY_END)
		last = KEY_END - 1;
	pr->taken = 0;
	for (uint64_t pos = base; pos <= last; pos = pr->br.end) {
		int err = bucket_get(d, pos, &pr->br);
		if (err)
			return err;
		if (probe_bucket(pr, name, len, base, last))
			return 0;
		put_buf(d, pr->br.buf);
	}
	return -ENOENT;
}

static uint64_t name_key(struct dctx *d, const char *name, size_t len)
{
	uint64_t key = dir_name_key(d->fs->sb.hash_seed, name, len);
#ifdef DIR_TEST_KEY_HOOK
	key = DIR_TEST_KEY_HOOK(key, name, len);
#endif
	return key;
}

/* Header loaded and name found: the shared start of lookup, remove, replace. */
static int find(struct fs *fs, struct tx *tx, struct inode *dp, const char *name,
		size_t len, struct dctx *d, struct probe *pr)
{
	int err = check_name(name, len);
	if (err)
		return err;
	err = hdr_load(fs, tx, dp, d);
	if (err)
		return err;
	err = probe(d, name, len, name_key(d, name, len), pr);
	if (err)
		hdr_done(d);
	return err;
}

/* ---- the API ---- */

int dir_init(struct fs *fs, struct tx *tx, struct inode *dp, uint64_t parent)
{
	struct dctx d = { .fs = fs, .tx = tx, .dp = dp };
	struct buf *tb = NULL, *bb = NULL;
	int err = inode_block(fs, tx, dp, 1, true, &tb);
	if (!err)
		err = inode_block(fs, tx, dp, FS_DIR_BUCKET0, true, &bb);
	if (!err)
		err = inode_block(fs, tx, dp, 0, true, &d.hbuf);
	if (!err) {
		tx_add(tx, tb);
		tx_add(tx, bb);
		memset(tb->data, 0, FS_BLOCK_SIZE);   /* slot 0 -> bucket 0 */
		fs_dirtable_seal(tb->data);
		bucket_init(bb->data, 0);
		fs_bucket_seal(bb->data);
		d.h = (struct fs_dirhdr){ .magic = FS_DIRHDR_MAGIC, .depth = 0,
					  .nbuckets = 1, .nentries = 0, .parent = parent };
		hdr_store(&d);
	}
	put_buf(&d, tb);
	put_buf(&d, bb);
	hdr_done(&d);
	return err;
}

int dir_lookup(struct fs *fs, struct inode *dp, const char *name, size_t len,
	       uint64_t *ino, uint8_t *type)
{
	struct dctx d;
	struct probe pr;
	int err = find(fs, NULL, dp, name, len, &d, &pr);
	if (err)
		return err;
	const uint8_t *e = pr.br.buf->data + pr.off;
	*ino = ent_ino(e);
	*type = ent_type(e);
	put_buf(&d, pr.br.buf);
	hdr_done(&d);
	return 0;
}

/* Insert at key, splitting the key's bucket until the entry fits. */
static int add_at(struct dctx *d, uint64_t key, const char *name, size_t len,
		  uint64_t ino, uint8_t type)
{
	for (unsigned splits = 0;; splits++) {
		struct bref br;
		int err = bucket_get(d, key, &br);
		if (err)
			return err;
		if (bucket_fits(br.buf->data, len)) {
			tx_add(d->tx, br.buf);
			bucket_insert(br.buf->data, key, name, len, ino, type);
			fs_bucket_seal(br.buf->data);
			put_buf(d, br.buf);
			return 0;
		}
		err = splits < ADD_MAX_SPLITS ? split(d, &br) : -ENOSPC;
		put_buf(d, br.buf);
		if (err)
			return err;
	}
}

/* The first key of the probe range from base that is not taken; 0 if none. */
static uint64_t free_key(uint64_t base, uint32_t taken)
{
	for (unsigned i = 0; i < DIR_PROBE && base + i < KEY_END; i++)
		if (!(taken & (1u << i)))
			return base + i;
	return 0;
}

static unsigned add_credits(unsigned depth)
{
	unsigned top = depth < FS_DIR_MAX_DEPTH ? depth + 1 : depth;
	unsigned new_tables = table_blocks(top) - table_blocks(depth);
	return 1 + table_blocks(top) + (ADD_MAX_SPLITS + 1) +
	       (ADD_MAX_SPLITS + new_tables) * INODE_ALLOC_CREDITS;
}

unsigned dir_add_credits(struct fs *fs, struct inode *dp)
{
	struct dctx d;
	unsigned depth = FS_DIR_MAX_DEPTH - 1;   /* unreadable: the worst case */
	if (hdr_load(fs, NULL, dp, &d) == 0) {
		depth = d.h.depth;
		hdr_done(&d);
	}
	return add_credits(depth);
}

int dir_add(struct fs *fs, struct tx *tx, struct inode *dp, const char *name,
	    size_t len, uint64_t ino, uint8_t type)
{
	struct dctx d;
	struct probe pr;
	int err = check_name(name, len);
	if (err)
		return err;
	err = hdr_load(fs, tx, dp, &d);
	if (err)
		return err;
	uint64_t base = name_key(&d, name, len), key;
	err = probe(&d, name, len, base, &pr);
	if (err != -ENOENT) {
		if (err == 0)
			put_buf(&d, pr.br.buf);
		hdr_done(&d);
		return err ? err : -EEXIST;
	}
	key = free_key(base, pr.taken);
	d.max_tblocks = table_blocks(d.h.depth < FS_DIR_MAX_DEPTH ? d.h.depth + 1 : d.h.depth);
	err = key ? add_at(&d, key, name, len, ino, type) : -ENOSPC;
	if (!err) {
		d.h.nentries++;
		hdr_store(&d);
	}
	hdr_done(&d);
	return err;
}

int dir_remove(struct fs *fs, struct tx *tx, struct inode *dp, const char *name,
	       size_t len, uint64_t *ino, uint8_t *type)
{
	struct dctx d;
	struct probe pr;
	int err = find(fs, tx, dp, name, len, &d, &pr);
	if (err)
		return err;
	uint8_t *p = pr.br.buf->data;
	if (d.h.nentries == 0) {
		err = corrupt(&d, "directory header");
	} else {
		*ino = ent_ino(p + pr.off);
		*type = ent_type(p + pr.off);
		tx_add(tx, pr.br.buf);
		bucket_delete(p, pr.off);
		fs_bucket_seal(p);
		d.h.nentries--;
		hdr_store(&d);
	}
	put_buf(&d, pr.br.buf);
	hdr_done(&d);
	return err;
}

int dir_replace(struct fs *fs, struct tx *tx, struct inode *dp, const char *name,
		size_t len, uint64_t ino, uint8_t type)
{
	struct dctx d;
	struct probe pr;
	int err = find(fs, tx, dp, name, len, &d, &pr);
	if (err)
		return err;
	uint8_t *p = pr.br.buf->data;
	tx_add(tx, pr.br.buf);
	put_le64(p + pr.off + 8, ino);
	p[pr.off + 16] = type;
	fs_bucket_seal(p);
	put_buf(&d, pr.br.buf);
	hdr_done(&d);
	return 0;
}

int dir_set_parent(struct fs *fs, struct tx *tx, struct inode *dp, uint64_t parent)
{
	struct dctx d;
	int err = hdr_load(fs, tx, dp, &d);
	if (err)
		return err;
	d.h.parent = parent;
	hdr_store(&d);
	hdr_done(&d);
	return 0;
}

int dir_get_parent(struct fs *fs, struct inode *dp, uint64_t *parent)
{
	struct dctx d;
	int err = hdr_load(fs, NULL, dp, &d);
	if (err)
		return err;
	*parent = d.h.parent;
	hdr_done(&d);
	return 0;
}

int dir_count(struct fs *fs, struct inode *dp, uint64_t *nentries)
{
	struct dctx d;
	int err = hdr_load(fs, NULL, dp, &d);
	if (err)
		return err;
	*nentries = d.h.nentries;
	hdr_done(&d);
	return 0;
}

/* Call fn for br's entries with key >= from; true once fn asks to stop. */
static bool emit(const struct bref *br, uint64_t from, dir_iter_fn fn, void *arg)
{
	const uint8_t *p = br->buf->data;
	size_t end = bucket_end(p);
	for (size_t off = FS_BUCKET_HDR; off < end; off += ent_size(p + off)) {
		const uint8_t *e = p + off;
		if (ent_key(e) >= from &&
		    fn(arg, ent_name(e), ent_namelen(e), ent_ino(e), ent_type(e), ent_key(e)))
			return true;
	}
	return false;
}

int dir_iterate(struct fs *fs, struct inode *dp, uint64_t cookie,
		dir_iter_fn fn, void *arg)
{
	if (cookie >= KEY_END - 1)
		return 0;
	struct dctx d;
	int err = hdr_load(fs, NULL, dp, &d);
	if (err)
		return err;
	uint64_t pos = cookie + 1;
	while (pos < KEY_END) {
		struct bref br;
		err = bucket_get(&d, pos, &br);
		if (err)
			break;
		bool stop = emit(&br, pos, fn, arg);
		put_buf(&d, br.buf);
		if (stop)
			break;
		pos = br.end;
	}
	hdr_done(&d);
	return err;
}
