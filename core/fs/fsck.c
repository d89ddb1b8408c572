/*
 * fsck.c - offline check and repair of the filesystem (contract: fsck.h).
 *
 * Before the passes: the superblock is decoded (a checksum failure caused
 * only by bytes in its unused end is repaired; anything else stops fsck),
 * then the journal header is checked and, when the transaction at the tail
 * is valid (or when repairing), the log is replayed with journal_replay. A
 * log whose replay stops at a damaged transaction while later committed
 * ones of the same epoch lie in it is reported (they are lost). A header
 * beyond repair is rewritten empty (repair only).
 *
 * Then one pass, repeated while a repairing pass changed something (the
 * next pass verifies the repairs; at most FSCK_MAX_PASSES, the last one
 * read-only). All state is in memory, nothing goes through the engine:
 *
 *  A. Walk. Breadth first from the root, then from the orphan directory,
 *     with an explicit queue (no recursion along the tree). Each inode met
 *     is read once: slot checksum, file type, block map (index blocks'
 *     checksums, pointers inside the data area, no block claimed twice -
 *     a bitmap of the blocks found in use), block count, symlink shape,
 *     blocks beyond the size. Each directory: header, bucket table (slots
 *     agree with the local depths, every bucket used once), buckets
 *     (checksum, entries sorted and inside the bucket's key range), then
 *     each entry (valid unique name, key within DIR_PROBE of the name's
 *     hash, target an allocated inode of the entry's type, at most one link
 *     to a directory), the header's entry count and "..". Links are counted
 *     per inode (directories: subdirectories).
 *  B. Unattached inodes: allocated in the inode bitmap or seen only through
 *     the orphan directory, in no directory. Repair moves them to
 *     /lost+found as "#<ino>" (made if missing; directories first, their
 *     subtrees walked as in A), or frees them when they hold nothing.
 *  C. Orphans: an inode in the orphan directory with link count 0 is an
 *     unlinked file the next mount reclaims; repair reclaims it now. Files
 *     with blocks beyond their size are added there (mount finishes the
 *     truncation); linked directories are taken out.
 *  D. Link counts against the counted links.
 *  E. Directory rewrites: a directory whose structure is damaged or whose
 *     entries changed is written afresh from the entries that survived (new
 *     blocks first, then the inode, then the old blocks are released), as
 *     are a new root, orphan directory or lost+found.
 *  F. Bitmaps: the inode and block bitmaps against what was found in use.
 *
 * Without repair every step only reports; with it the fixes are written
 * straight to the device and flushed at the end of the pass.
 */
#include "core/fs/fsck.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "blockdev/bdev.h"
#include "core/base/crc32c.h"
#include "core/base/error.h"
#include "core/base/log.h"
#include "core/base/util.h"
#include "core/fs/dir.h"
#include "core/fs/journal.h"
#include "core/fs/layout.h"

#define KEY_END (1ull << 63)
#define BITS_PER_BLOCK (FS_BLOCK_SIZE * 8u)
#define BUCKET_SPACE (FS_BLOCK_SIZE - FS_BUCKET_HDR)
#define MAX_MESSAGES 500u
#define IO_CHUNK 256u
#define ICACHE_LINES 1024u   /* 4 MiB of inode table: 16384 inodes */

/* What a pass knows about an inode: f->kind[ino]. */
enum { K_UNSEEN, K_REG, K_DIR, K_LNK, K_FREE, K_BAD, K_GONE };
#define K_TYPE 0x07u
#define K_ORPHAN 0x08u    /* named in the orphan directory */
#define K_NAMED 0x10u     /* a directory with its (one) entry in a parent */
#define K_DONE 0x20u      /* a directory queued or checked */
#define K_NONEMPTY 0x40u  /* a directory with entries */
#define K_FRESH 0x80u     /* made by this pass (new root, lost+found) */

struct dent {
	uint64_t key, ino;
	uint32_t name;      /* offset in the list's name arena */
	uint8_t type, len;
	bool rekey;         /* key to be chosen again */
	bool drop;
};

struct elist {
	struct dent *e;
	size_t n, cap;
	char *names;
	size_t used, size;
};

struct u64vec {
	uint64_t *v;
	size_t n, cap;
};

/* A set of non-zero u64 (keys, name hashes): open addressing. */
struct u64set {
	uint64_t *v;
	size_t n, cap;          /* cap: a power of two, or 0 */
};

/* Data blocks of a directory or symlink by logical block (ascending). */
struct blkmap {
	struct u64vec lblk, pblk;
};

struct qent {
	uint64_t ino, parent;   /* parent 0: ".." not checked */
};

struct rewrite {
	uint64_t ino, parent;
	struct elist *list;
	bool own;               /* list to be freed with the record */
	bool fresh;             /* a new inode: no old blocks */
};

struct fsck {
	struct bdev *dev;
	const struct fsck_opts *o;
	struct fsck_report *rep;
	struct fs_super sb;
	bool repair;            /* this pass repairs */
	int rc;                 /* first operational error */
	struct cat_error *err;
	unsigned pass;
	uint64_t found, changes, shown;   /* this pass: problems, writes, lines */

	uint8_t *ibm, *bbm;     /* the bitmaps as on disk (and as fsck changed them) */
	uint8_t *itouched, *btouched;  /* bitmap blocks fsck changed, per block */
	uint8_t *used;          /* blocks found in use, metadata area included */
	uint8_t *kind;          /* K_* per inode */
	uint32_t *links;        /* names of a file; subdirectories of a directory */
	uint64_t alloc_hint;    /* where take_free_block looks next */
	uint64_t ibm_set, visited;      /* progress: inodes allocated, inodes read */

	uint8_t *icache;        /* inode-table blocks, direct-mapped by number */
	uint64_t *icache_no;    /* the block in each line + 1; 0 = empty */
	uint8_t *scratch, *scratch2;    /* one block each */
	uint8_t *lvl[FS_MAX_HEIGHT + 1]; /* an index block per tree level */

	struct qent *q;
	size_t qhead, qn, qcap;
	struct rewrite *rw;
	size_t nrw, rwcap;
	struct elist root_list, orphan_list, lf_list;
	struct u64set lf_names;         /* hashes of the names in lf_list */
	uint64_t lf_ino;
	uint32_t root_added, lf_added;  /* subdirectories this pass linked */
	struct u64vec past_eof;
	struct prng rng;
};

/* ---- messages and errors ---- */

static void say(struct fsck *f, const char *fmt, va_list ap)
{
	char msg[600];
	int n = f->pass > 1 ? snprintf(msg, sizeof(msg), "pass %u: ", f->pass) : 0;
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	if (f->o->problem)
		f->o->problem(f->o->arg, msg);
	else
		cat_log(CAT_LOG_WARN, "fsck: %s", msg);
}

static void problem(struct fsck *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void problem(struct fsck *f, const char *fmt, ...)
{
	f->found++;
	if (f->shown >= MAX_MESSAGES) {
		if (f->shown++ == MAX_MESSAGES)
			cat_log(CAT_LOG_WARN, "fsck: more problems than shown (only counted)");
		return;
	}
	f->shown++;
	va_list ap;
	va_start(ap, fmt);
	say(f, fmt, ap);
	va_end(ap);
}

static void fail(struct fsck *f, int rc, const char *what, uint64_t blk)
{
	if (f->rc)
		return;
	f->rc = rc;
	cat_error_set(f->err, rc, "%s: %s block %" PRIu64 ": %s", f->dev->name, what, blk,
		      strerror(-rc));
}

static void progress(struct fsck *f, const char *phase, uint64_t done, uint64_t total)
{
	if (f->o->progress)
		f->o->progress(f->o->arg, phase, done, total);
}

/* ---- block I/O (straight to the device) ---- */

static bool rd(struct fsck *f, uint64_t blk, void *buf)
{
	if (f->rc)
		return false;
	int r = bdev_read(f->dev, blk, buf, 1);
	if (r)
		fail(f, r, "reading", blk);
	return r == 0;
}

static void wr(struct fsck *f, uint64_t blk, const void *buf)
{
	if (f->rc || !f->repair)
		return;
	int r = bdev_write(f->dev, blk, buf, 1);
	if (r)
		fail(f, r, "writing", blk);
	f->changes++;
}

static int rd_many(struct fsck *f, uint64_t start, uint64_t n, uint8_t *buf)
{
	for (uint64_t b = 0; b < n && !f->rc; b += IO_CHUNK) {
		uint64_t k = n - b < IO_CHUNK ? n - b : IO_CHUNK;
		int r = bdev_read(f->dev, start + b, buf + b * FS_BLOCK_SIZE, k);
		if (r)
			fail(f, r, "reading", start + b);
	}
	return f->rc;
}

/* ---- bitmaps, vectors, entry lists ---- */

static bool bit_get(const uint8_t *m, uint64_t i) { return (m[i / 8] >> (i % 8)) & 1; }
static void bit_set(uint8_t *m, uint64_t i) { m[i / 8] |= (uint8_t)(1u << (i % 8)); }
static void bit_clr(uint8_t *m, uint64_t i) { m[i / 8] &= (uint8_t)~(1u << (i % 8)); }

/* fsck itself allocated or freed bit i: the bitmap on disk follows,
 * silently (what differs otherwise is a problem found). */
static void own_change(uint8_t *map, uint8_t *touched, uint64_t i, bool on)
{
	if (bit_get(map, i) == on)
		return;
	if (on)
		bit_set(map, i);
	else
		bit_clr(map, i);
	touched[i / BITS_PER_BLOCK] = 1;
}

static void nomem(struct fsck *f)
{
	if (!f->rc) {
		f->rc = -ENOMEM;
		cat_error_set(f->err, -ENOMEM, "out of memory");
	}
}

static bool grow(struct fsck *f, void **p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return true;
	size_t c = *cap ? *cap * 2 : 16;
	while (c < need)
		c *= 2;
	void *n = realloc(*p, c * size);
	if (!n) {
		nomem(f);
		return false;
	}
	*p = n;
	*cap = c;
	return true;
}

static void vec_push(struct fsck *f, struct u64vec *v, uint64_t x)
{
	if (grow(f, (void **)&v->v, &v->cap, v->n + 1, sizeof(*v->v)))
		v->v[v->n++] = x;
}

static size_t set_slot(const struct u64set *s, uint64_t x)
{
	size_t i = (size_t)((x * 0x9e3779b97f4a7c15ull) >> 20) & (s->cap - 1);
	while (s->v[i] && s->v[i] != x)
		i = (i + 1) & (s->cap - 1);
	return i;
}

static bool set_has(const struct u64set *s, uint64_t x)
{
	return s->cap && s->v[set_slot(s, x)] == x;
}

static void set_add(struct fsck *f, struct u64set *s, uint64_t x)
{
	if (2 * (s->n + 1) > s->cap) {
		struct u64set g = { .cap = s->cap ? 2 * s->cap : 64 };
		if (!(g.v = calloc(g.cap, sizeof(*g.v)))) {
			nomem(f);
			return;
		}
		for (size_t i = 0; i < s->cap; i++)
			if (s->v[i])
				g.v[set_slot(&g, s->v[i])] = s->v[i], g.n++;
		free(s->v);
		*s = g;
	}
	size_t i = set_slot(s, x);
	if (!s->v[i]) {
		s->v[i] = x;
		s->n++;
	}
}

static void set_free(struct u64set *s)
{
	free(s->v);
	*s = (struct u64set){ 0 };
}

static void vec_free(struct u64vec *v)
{
	free(v->v);
	*v = (struct u64vec){ 0 };
}

static void map_free(struct blkmap *m)
{
	vec_free(&m->lblk);
	vec_free(&m->pblk);
}

/* Physical block of logical block l, 0 if none (m is sorted). */
static uint64_t map_find(const struct blkmap *m, uint64_t l)
{
	size_t lo = 0, hi = m->lblk.n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (m->lblk.v[mid] < l)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < m->lblk.n && m->lblk.v[lo] == l ? m->pblk.v[lo] : 0;
}

static const char *ename(const struct elist *l, const struct dent *e)
{
	return l->names + e->name;
}

static struct dent *elist_add(struct fsck *f, struct elist *l, const char *name, size_t len,
			      uint64_t key, uint64_t ino, uint8_t type)
{
	if (!grow(f, (void **)&l->e, &l->cap, l->n + 1, sizeof(*l->e)) ||
	    !grow(f, (void **)&l->names, &l->size, l->used + len + 1, 1))
		return NULL;
	struct dent *e = &l->e[l->n++];
	*e = (struct dent){ .key = key, .ino = ino, .name = (uint32_t)l->used,
			    .type = type, .len = (uint8_t)len };
	memcpy(l->names + l->used, name, len);
	l->names[l->used + len] = '\0';
	l->used += len + 1;
	return e;
}

static void elist_free(struct elist *l)
{
	free(l->e);
	free(l->names);
	*l = (struct elist){ 0 };
}

/* Remove the dropped entries. */
static void elist_compact(struct elist *l)
{
	size_t k = 0;
	for (size_t i = 0; i < l->n; i++)
		if (!l->e[i].drop)
			l->e[k++] = l->e[i];
	l->n = k;
}

static struct dent *elist_find(struct elist *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (!l->e[i].drop && strcmp(ename(l, &l->e[i]), name) == 0)
			return &l->e[i];
	return NULL;
}

/* ---- inodes ---- */

static unsigned ktype(const struct fsck *f, uint64_t ino) { return f->kind[ino] & K_TYPE; }
static bool live(unsigned t) { return t == K_REG || t == K_DIR || t == K_LNK; }

static uint8_t dtype_of(unsigned t)
{
	return t == K_DIR ? DIR_TYPE_DIR : t == K_LNK ? DIR_TYPE_LNK : DIR_TYPE_REG;
}

static const char *tname(unsigned t)
{
	return t == K_DIR ? "directory" : t == K_LNK ? "symlink" : "file";
}

/* The slot of inode ino in the cache; *line is its cache line. */
static uint8_t *slot_of(struct fsck *f, uint64_t ino, size_t *line)
{
	uint64_t blk = f->sb.itable_start + ino / FS_INODES_PER_BLOCK;
	*line = (size_t)(blk % ICACHE_LINES);
	uint8_t *data = f->icache + *line * FS_BLOCK_SIZE;
	if (f->icache_no[*line] != blk + 1) {
		f->icache_no[*line] = 0;
		if (!rd(f, blk, data))
			return NULL;
		f->icache_no[*line] = blk + 1;
	}
	return data + (ino % FS_INODES_PER_BLOCK) * FS_INODE_SIZE;
}

/* Decode inode ino; a slot whose only damage is in its unused end (bytes
 * 184..251, always zero) is salvaged. -EUCLEAN if corrupt, -EIO. */
static int load_inode(struct fsck *f, uint64_t ino, struct fs_inode *d, bool *salvaged)
{
	size_t line;
	uint8_t *s = slot_of(f, ino, &line);
	*salvaged = false;
	if (!s)
		return -EIO;
	if (fs_inode_decode(s, d) == 0)
		return 0;
	uint8_t copy[FS_INODE_SIZE];
	memcpy(copy, s, sizeof(copy));
	memset(copy + 184, 0, 252 - 184);
	if (fs_inode_decode(copy, d))
		return -EUCLEAN;
	*salvaged = true;
	return 0;
}

static int get_inode(struct fsck *f, uint64_t ino, struct fs_inode *d)
{
	bool salvaged;
	return load_inode(f, ino, d, &salvaged);
}

static void store_inode(struct fsck *f, uint64_t ino, const struct fs_inode *d)
{
	if (!f->repair)
		return;
	size_t line;
	uint8_t *s = slot_of(f, ino, &line);
	if (!s)
		return;
	fs_inode_encode(d, s);
	wr(f, f->icache_no[line] - 1, f->icache + line * FS_BLOCK_SIZE);
}

/* Write a free slot (generation kept, as the engine does). */
static void clear_inode(struct fsck *f, uint64_t ino, uint32_t generation)
{
	struct fs_inode z = { .generation = generation };
	store_inode(f, ino, &z);
}

/* ---- block maps ---- */

static uint64_t pow511(unsigned h)
{
	uint64_t v = 1;
	while (h--)
		v *= FS_INDEX_FANOUT;
	return v;
}

enum walk_mode { WALK_CHECK, WALK_LIST };

struct walk {
	struct fsck *f;
	uint64_t ino;
	enum walk_mode mode;
	uint64_t count;        /* blocks found: data and index */
	uint64_t end;          /* 1 + the highest logical data block */
	struct blkmap *map;    /* CHECK: data blocks wanted (may be NULL) */
	struct u64vec *list;   /* LIST: every block */
	bool cut, dirty;       /* CHECK: a pointer was cut; the inode changed */
};

/* NULL if block b may be claimed now (and claims it), else why not. */
static const char *claim(struct fsck *f, uint64_t b)
{
	if (b < f->sb.data_start || b >= f->sb.nblocks)
		return "lies outside the data area";
	if (bit_get(f->used, b))
		return "is also used by another inode or pointer";
	bit_set(f->used, b);
	return NULL;
}

static void take_data(struct walk *w, uint64_t lblk, uint64_t p)
{
	w->count++;
	if (lblk + 1 > w->end)
		w->end = lblk + 1;
	if (w->mode == WALK_LIST) {
		vec_push(w->f, w->list, p);
	} else if (w->map) {
		vec_push(w->f, &w->map->lblk, lblk);
		vec_push(w->f, &w->map->pblk, p);
	}
}

/* CHECK: claim and read index block p into buf. LIST: read it. false when
 * it cannot be used (the reason reported by the caller in *why). */
static bool open_index(struct walk *w, uint64_t p, uint8_t *buf, const char **why)
{
	struct fsck *f = w->f;
	*why = NULL;
	if (w->mode == WALK_CHECK && (*why = claim(f, p)))
		return false;
	if (w->mode == WALK_LIST && (p < f->sb.data_start || p >= f->sb.nblocks))
		return false;
	if (!rd(f, p, buf))
		return false;
	if (fs_index_check(buf) == 0)
		return true;
	if (w->mode == WALK_CHECK) {
		bit_clr(f->used, p);
		*why = "is not a valid index block (checksum)";
	}
	return false;
}

static void walk_tree(struct walk *w, uint8_t *buf, uint64_t blkno, unsigned level,
		      uint64_t base);

/* Child i of an index block at `level` (> 1): another index block. */
static bool walk_child(struct walk *w, uint64_t p, unsigned level, uint64_t lo)
{
	const char *why;
	uint8_t *cb = w->f->lvl[level - 1];
	if (!open_index(w, p, cb, &why)) {
		if (why)
			problem(w->f, "inode %" PRIu64 ": index block %" PRIu64 " %s; pointer cut",
				w->ino, p, why);
		return w->f->rc == 0 && w->mode == WALK_CHECK && why;
	}
	w->count++;
	if (w->mode == WALK_LIST)
		vec_push(w->f, w->list, p);
	walk_tree(w, cb, p, level - 1, lo);
	return false;
}

/* Index block blkno (contents in buf) at `level` covers tree indexes
 * [base, base + 511^level). Cuts bad pointers (CHECK). */
static void walk_tree(struct walk *w, uint8_t *buf, uint64_t blkno, unsigned level,
		      uint64_t base)
{
	struct fsck *f = w->f;
	uint64_t span = pow511(level - 1);
	bool dirty = false;
	for (unsigned i = 0; i < FS_INDEX_FANOUT && !f->rc; i++) {
		uint64_t p = fs_index_get(buf, i), lo = base + i * span;
		if (!p)
			continue;
		bool cut = false;
		if (level > 1) {
			cut = walk_child(w, p, level, lo);
		} else if (w->mode == WALK_CHECK) {
			const char *why = claim(f, p);
			if (why)
				problem(f, "inode %" PRIu64 ": block %" PRIu64 " (logical %" PRIu64
					") %s; pointer cut", w->ino, p, FS_NDIRECT + lo, why);
			cut = why != NULL;
		}
		if (cut) {
			fs_index_set(buf, i, 0);
			dirty = w->cut = true;
		} else if (level == 1) {
			take_data(w, FS_NDIRECT + lo, p);
		}
	}
	if (dirty) {
		fs_index_seal(buf);
		wr(f, blkno, buf);
	}
}

/* Walk d's block map; CHECK may cut pointers in d (w->dirty). */
static void walk_inode(struct walk *w, struct fs_inode *d)
{
	struct fsck *f = w->f;
	for (unsigned i = 0; i < FS_NDIRECT; i++) {
		uint64_t p = d->direct[i];
		if (!p)
			continue;
		const char *why = w->mode == WALK_CHECK ? claim(f, p) : NULL;
		if (why) {
			problem(f, "inode %" PRIu64 ": block %" PRIu64 " (logical %u) %s; pointer cut",
				w->ino, p, i, why);
			d->direct[i] = 0;
			w->cut = w->dirty = true;
			continue;
		}
		if (w->mode == WALK_LIST && (p < f->sb.data_start || p >= f->sb.nblocks))
			continue;
		take_data(w, i, p);
	}
	if (!d->root)
		return;
	const char *why;
	uint8_t *buf = f->lvl[d->height];
	if (open_index(w, d->root, buf, &why)) {
		w->count++;
		if (w->mode == WALK_LIST)
			vec_push(f, w->list, d->root);
		walk_tree(w, buf, d->root, d->height, 0);
	} else if (why && !f->rc) {
		problem(f, "inode %" PRIu64 ": index root %" PRIu64 " %s; tree cut", w->ino,
			d->root, why);
		d->root = 0;
		d->height = 0;
		w->cut = w->dirty = true;
	}
}

/* Every block of inode d (after a CHECK walk of a repairing pass). */
static void list_blocks(struct fsck *f, uint64_t ino, struct fs_inode *d, struct u64vec *out)
{
	struct walk w = { .f = f, .ino = ino, .mode = WALK_LIST, .list = out };
	walk_inode(&w, d);
}

static void release_list(struct fsck *f, const struct u64vec *v)
{
	for (size_t i = 0; i < v->n; i++)
		if (v->v[i] >= f->sb.data_start && v->v[i] < f->sb.nblocks) {
			bit_clr(f->used, v->v[i]);
			own_change(f->bbm, f->btouched, v->v[i], false);
		}
}

/* Give back every block of ino in the map of used blocks (repair only). */
static void release_blocks(struct fsck *f, uint64_t ino)
{
	struct fs_inode d;
	struct u64vec v = { 0 };
	if (get_inode(f, ino, &d) == 0) {
		list_blocks(f, ino, &d, &v);
		release_list(f, &v);
	}
	vec_free(&v);
}

/* Free ino: its blocks and its slot (repair only). */
static void free_inode_all(struct fsck *f, uint64_t ino)
{
	if (!f->repair)
		return;
	struct fs_inode d;
	uint32_t gen = get_inode(f, ino, &d) == 0 ? d.generation : 0;
	release_blocks(f, ino);
	clear_inode(f, ino, gen);
	f->kind[ino] = K_GONE;
	own_change(f->ibm, f->itouched, ino, false);
}

/* Check the block map and block count of d; symlink data map in *map. */
static struct walk check_map(struct fsck *f, uint64_t ino, struct fs_inode *d,
			     struct blkmap *map)
{
	struct walk w = { .f = f, .ino = ino, .mode = WALK_CHECK, .map = map };
	walk_inode(&w, d);
	if (!f->rc && d->blocks != w.count) {
		if (!w.cut)
			problem(f, "inode %" PRIu64 ": block count %" PRIu64 ", found %" PRIu64,
				ino, d->blocks, w.count);
		d->blocks = w.count;
		w.dirty = true;
	}
	return w;
}

/* ---- visiting an inode ---- */

static unsigned type_of_mode(uint32_t mode)
{
	return S_ISREG(mode) ? K_REG : S_ISDIR(mode) ? K_DIR : S_ISLNK(mode) ? K_LNK : K_BAD;
}

/* A symlink: its target in logical block 0 only, 1..FS_SYMLINK_MAX bytes. */
static bool symlink_ok(const struct fs_inode *d, const struct blkmap *m, const struct walk *w)
{
	return d->size > 0 && d->size <= FS_SYMLINK_MAX && m->lblk.n == 1 &&
	       m->lblk.v[0] == 0 && w->count == 1;
}

/* A file or symlink met for the first time: check its blocks. */
static void check_file(struct fsck *f, uint64_t ino, struct fs_inode *d, unsigned t)
{
	struct blkmap map = { 0 };
	struct walk w = check_map(f, ino, d, t == K_LNK ? &map : NULL);
	if (w.dirty)
		store_inode(f, ino, d);
	f->kind[ino] = (uint8_t)t;
	if (t == K_LNK && !f->rc && !symlink_ok(d, &map, &w)) {
		problem(f, "inode %" PRIu64 ": symlink with a bad size (%" PRIu64 ") or blocks; "
			"cleared", ino, d->size);
		if (f->repair) {
			release_blocks(f, ino);
			clear_inode(f, ino, d->generation);
		}
		f->kind[ino] = K_BAD;
	}
	if (t == K_REG && w.end > (d->size + FS_BLOCK_SIZE - 1) / FS_BLOCK_SIZE)
		vec_push(f, &f->past_eof, ino);
	map_free(&map);
}

/* Read inode ino the first time this pass meets it; sets f->kind[ino]. */
static unsigned visit(struct fsck *f, uint64_t ino)
{
	struct fs_inode d;
	bool salvaged;
	f->visited++;
	if (f->visited % 1024 == 0)
		progress(f, "inodes", f->visited, f->ibm_set);
	int r = load_inode(f, ino, &d, &salvaged);
	if (r == -EIO)
		return f->kind[ino] = K_BAD;
	if (r) {
		problem(f, "inode %" PRIu64 ": corrupt (checksum or fields); cleared", ino);
		clear_inode(f, ino, 0);
		return f->kind[ino] = K_BAD;
	}
	if (salvaged) {
		problem(f, "inode %" PRIu64 ": damaged bytes in the unused end of its slot", ino);
		store_inode(f, ino, &d);
	}
	if (d.mode == 0)
		return f->kind[ino] = K_FREE;
	unsigned t = type_of_mode(d.mode);
	if (t == K_BAD) {
		problem(f, "inode %" PRIu64 ": unknown file type (mode 0%o); cleared", ino, d.mode);
		clear_inode(f, ino, d.generation);
		return f->kind[ino] = K_BAD;
	}
	if (t == K_DIR)
		f->kind[ino] = K_DIR;
	else
		check_file(f, ino, &d, t);
	return ktype(f, ino);
}

/* ---- directory rewrites (scheduled during the pass, done at its end) ---- */

static struct rewrite *find_rewrite(struct fsck *f, uint64_t ino)
{
	for (size_t i = 0; i < f->nrw; i++)
		if (f->rw[i].ino == ino)
			return &f->rw[i];
	return NULL;
}

static void schedule_rewrite(struct fsck *f, uint64_t ino, uint64_t parent,
			     struct elist *list, bool own, bool fresh)
{
	struct rewrite *r = find_rewrite(f, ino);
	if (r) {
		r->parent = parent;
		r->fresh = r->fresh || fresh;
		if (own) {
			elist_free(list);
			free(list);
		}
		return;
	}
	if (!grow(f, (void **)&f->rw, &f->rwcap, f->nrw + 1, sizeof(*f->rw))) {
		if (own) {
			elist_free(list);
			free(list);
		}
		return;
	}
	f->rw[f->nrw++] = (struct rewrite){ .ino = ino, .parent = parent, .list = list,
					    .own = own, .fresh = fresh };
}

/* The list a rewrite of ino would use: the kept lists of the root, the
 * orphan directory and lost+found are f's own. */
static struct elist *kept_list(struct fsck *f, uint64_t ino)
{
	if (ino == FS_ROOT_INO)
		return &f->root_list;
	if (ino == FS_ORPHAN_INO)
		return &f->orphan_list;
	if (ino == f->lf_ino && ino)
		return &f->lf_list;
	return NULL;
}

/* ---- reading a directory ---- */

struct dscan {
	struct fs_dirhdr h;
	bool hdr_ok;
	bool damaged;          /* structure unusable: entries salvaged from buckets */
	bool salvaged;         /* a block's unused end was damaged */
	uint64_t hdr_blk;
	struct elist list;
};

static bool valid_name(const char *name, size_t len)
{
	if (len == 0 || (len == 1 && name[0] == '.') ||
	    (len == 2 && name[0] == '.' && name[1] == '.'))
		return false;
	return !memchr(name, '/', len) && !memchr(name, '\0', len);
}

static unsigned table_blocks(unsigned depth)
{
	return ((1u << depth) + FS_DIR_TABLE_PER_BLOCK - 1) / FS_DIR_TABLE_PER_BLOCK;
}

/* Check a bucket's crc, salvaging damage confined to the zero bytes after
 * its entries. */
static bool bucket_crc_ok(struct fsck *f, uint8_t *p, bool *salvaged)
{
	if (fs_bucket_check(p) == 0)
		return true;
	uint32_t used = get_le32(p + 16);
	if (get_le32(p) != FS_BUCKET_MAGIC || used > BUCKET_SPACE)
		return false;
	uint8_t *copy = f->scratch2;
	memcpy(copy, p, FS_BLOCK_SIZE);
	memset(copy + FS_BUCKET_HDR + used, 0, BUCKET_SPACE - used);
	if (fs_bucket_check(copy))
		return false;
	memcpy(p, copy, FS_BLOCK_SIZE);
	*salvaged = true;
	return true;
}

/* Parse a bucket's entries into list. any: no key-range check (salvage). */
static bool parse_bucket(struct fsck *f, const uint8_t *p, bool any, uint32_t depth,
			 uint64_t slot, struct elist *list)
{
	uint32_t ld = get_le32(p + 8), count = get_le32(p + 12), used = get_le32(p + 16);
	if ((!any && ld > depth) || ld > FS_DIR_MAX_DEPTH || used > BUCKET_SPACE)
		return false;
	uint64_t prefix = any ? 0 : slot >> (depth - ld), prev = 0;
	size_t off = FS_BUCKET_HDR, end = FS_BUCKET_HDR + used, first = list->n;
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *e = p + off;
		if (end - off < FS_DIRENT_HDR || end - off < FS_DIRENT_HDR + (size_t)e[17])
			goto bad;
		uint64_t key = get_le64(e);
		if (key <= prev || key >= KEY_END || key < DIR_KEY_MIN ||
		    (!any && key >> (63 - ld) != prefix))
			goto bad;
		if (!elist_add(f, list, (const char *)e + FS_DIRENT_HDR, e[17], key,
			       get_le64(e + 8), e[16]))
			return false;
		prev = key;
		off += FS_DIRENT_HDR + e[17];
	}
	if (off == end)
		return true;
bad:
	list->n = first;
	return false;
}

/* Damaged structure: take the entries of every bucket that passes its checks. */
static void salvage_buckets(struct fsck *f, const struct blkmap *m, struct dscan *ds)
{
	ds->list.n = 0;
	for (size_t i = 0; i < m->lblk.n && !f->rc; i++) {
		if (m->lblk.v[i] < FS_DIR_BUCKET0 || !rd(f, m->pblk.v[i], f->scratch))
			continue;
		bool salvaged = false;
		if (bucket_crc_ok(f, f->scratch, &salvaged))
			parse_bucket(f, f->scratch, true, 0, 0, &ds->list);
	}
}

static bool read_header(struct fsck *f, const struct blkmap *m, struct dscan *ds)
{
	ds->hdr_blk = map_find(m, 0);
	if (!ds->hdr_blk || !rd(f, ds->hdr_blk, f->scratch))
		return false;
	if (fs_dirhdr_decode(f->scratch, &ds->h) == 0)
		return true;
	memset(f->scratch + 32, 0, FS_BLOCK_SIZE - 4 - 32);
	if (fs_dirhdr_decode(f->scratch, &ds->h))
		return false;
	ds->salvaged = true;
	return true;
}

/* Read the bucket table into slots[] (2^depth entries). */
static const char *read_table(struct fsck *f, const struct blkmap *m, struct dscan *ds,
			      uint32_t *slots)
{
	uint64_t nslots = 1ull << ds->h.depth;
	unsigned tb = table_blocks(ds->h.depth);
	for (unsigned t = 0; t < tb; t++) {
		uint64_t p = map_find(m, 1 + t);
		if (!p)
			return "a bucket table block is missing";
		if (!rd(f, p, f->scratch))
			return "unreadable";
		uint64_t first = (uint64_t)t * FS_DIR_TABLE_PER_BLOCK;
		uint64_t n = nslots - first < FS_DIR_TABLE_PER_BLOCK ? nslots - first
								     : FS_DIR_TABLE_PER_BLOCK;
		if (fs_dirtable_check(f->scratch)) {
			memset(f->scratch + 4 + 4 * n, 0, FS_BLOCK_SIZE - 4 - 4 * n);
			if (fs_dirtable_check(f->scratch))
				return "a bucket table block is corrupt";
			ds->salvaged = true;
		}
		for (uint64_t s = 0; s < n; s++)
			slots[first + s] = get_le32(f->scratch + 4 + 4 * s);
	}
	return NULL;
}

/* Walk the table's runs: each bucket serves exactly the aligned run of
 * 2^(depth - ld) slots its local depth says, and is used once. */
static const char *read_buckets(struct fsck *f, const struct blkmap *m, struct dscan *ds,
				const uint32_t *slots, uint8_t *seen)
{
	uint32_t depth = ds->h.depth, nb = ds->h.nbuckets;
	uint64_t nslots = 1ull << depth;
	for (uint64_t s = 0; s < nslots && !f->rc;) {
		uint32_t b = slots[s];
		if (b >= nb)
			return "a table slot names a bucket beyond the bucket count";
		if (bit_get(seen, b))
			return "the bucket table does not match the buckets' local depths";
		bit_set(seen, b);
		uint64_t p = map_find(m, FS_DIR_BUCKET0 + b);
		if (!p)
			return "a bucket block is missing";
		if (!rd(f, p, f->scratch))
			return "unreadable";
		if (!bucket_crc_ok(f, f->scratch, &ds->salvaged))
			return "a bucket is corrupt (checksum)";
		uint32_t ld = get_le32(f->scratch + 8);
		if (ld > depth)
			return "a bucket's local depth exceeds the directory's depth";
		uint64_t run = 1ull << (depth - ld);
		if (s % run)
			return "the bucket table does not match the buckets' local depths";
		for (uint64_t t = s; t < s + run; t++)
			if (slots[t] != b)
				return "the bucket table does not match the buckets' local depths";
		if (!parse_bucket(f, f->scratch, false, depth, s, &ds->list))
			return f->rc ? "out of memory" : "a bucket's entries are out of order or "
							 "outside its key range";
		s += run;
	}
	for (uint32_t b = 0; b < nb; b++)
		if (!bit_get(seen, b))
			return "a bucket is not used by the bucket table";
	return NULL;
}

/* Blocks a directory of this header must have, and no others. Table
 * blocks beyond what the depth needs are allowed: a doubling that ran out
 * of space leaves them, and the next doubling uses them. */
static const char *check_dir_blocks(const struct blkmap *m, const struct fs_dirhdr *h)
{
	for (size_t i = 0; i < m->lblk.n; i++) {
		uint64_t l = m->lblk.v[i];
		if (l != 0 && !(l >= 1 && l <= FS_DIR_TABLE_BLOCKS) &&
		    !(l >= FS_DIR_BUCKET0 && l < FS_DIR_BUCKET0 + h->nbuckets))
			return "it has a block where none belongs";
	}
	return NULL;
}

static const char *read_structure(struct fsck *f, const struct blkmap *m, struct dscan *ds)
{
	if (ds->h.nbuckets > (1u << ds->h.depth))
		return "more buckets than table slots";
	const char *why = check_dir_blocks(m, &ds->h);
	if (why)
		return why;
	uint32_t *slots = malloc(sizeof(*slots) << ds->h.depth);
	uint8_t *seen = calloc(((size_t)ds->h.nbuckets + 7) / 8, 1);
	if (!slots || !seen) {
		free(slots);
		free(seen);
		nomem(f);
		return "out of memory";
	}
	why = read_table(f, m, ds, slots);
	if (!why)
		why = read_buckets(f, m, ds, slots, seen);
	free(slots);
	free(seen);
	return why;
}

/* Header, table and buckets of directory ino into ds. */
static void scan_dir(struct fsck *f, uint64_t ino, const struct blkmap *m, struct dscan *ds)
{
	ds->hdr_ok = read_header(f, m, ds);
	const char *why = ds->hdr_ok ? read_structure(f, m, ds) : "its header is corrupt";
	if (f->rc)
		return;
	if (why) {
		problem(f, "directory %" PRIu64 ": %s; rebuilding it from the entries that "
			"survive", ino, why);
		ds->damaged = true;
		salvage_buckets(f, m, ds);
	} else if (ds->salvaged) {
		problem(f, "directory %" PRIu64 ": damaged bytes in the unused part of a block",
			ino);
	}
}

/* ---- checking a directory's entries ---- */

static void orphan_name(uint64_t ino, char *buf, size_t len)
{
	snprintf(buf, len, "%016" PRIx64, ino);
}

static int cmp_by_name(const void *a, const void *b, void *arg)
{
	const struct elist *l = arg;
	const struct dent *x = &l->e[*(const size_t *)a], *y = &l->e[*(const size_t *)b];
	int c = strcmp(ename(l, x), ename(l, y));
	if (c)
		return c;
	return x->key < y->key ? -1 : x->key > y->key;
}

/* Names: valid, unique; in the orphan directory the inode number in hex. */
static bool check_names(struct fsck *f, uint64_t dir, struct elist *l)
{
	bool changed = false;
	for (size_t i = 0; i < l->n; i++) {
		struct dent *e = &l->e[i];
		char hex[24];
		if (!valid_name(ename(l, e), e->len)) {
			problem(f, "directory %" PRIu64 ": entry for inode %" PRIu64 " has an invalid "
				"name; removed", dir, e->ino);
			e->drop = changed = true;
		} else if (dir == FS_ORPHAN_INO &&
			   (orphan_name(e->ino, hex, sizeof(hex)), strcmp(hex, ename(l, e)))) {
			problem(f, "orphan directory: entry '%s' names inode %" PRIu64 "; renamed",
				ename(l, e), e->ino);
			struct dent copy = *e;
			e->drop = changed = true;
			struct dent *n = elist_add(f, l, hex, strlen(hex), 0, copy.ino, copy.type);
			if (n)
				n->rekey = true;
			e = NULL;
		}
	}
	size_t *idx = malloc((l->n + 1) * sizeof(*idx));
	if (!idx) {
		nomem(f);
		return changed;
	}
	size_t k = 0;
	for (size_t i = 0; i < l->n; i++)
		if (!l->e[i].drop)
			idx[k++] = i;
	qsort_r(idx, k, sizeof(*idx), cmp_by_name, l);
	for (size_t i = 1; i < k; i++) {
		struct dent *a = &l->e[idx[i - 1]], *b = &l->e[idx[i]];
		if (strcmp(ename(l, a), ename(l, b)) == 0) {
			problem(f, "directory %" PRIu64 ": name '%s' appears twice; one removed", dir,
				ename(l, b));
			b->drop = changed = true;
		}
	}
	free(idx);
	return changed;
}

/* Keys within DIR_PROBE of the name's hash. */
static bool check_keys(struct fsck *f, uint64_t dir, struct elist *l)
{
	bool changed = false;
	for (size_t i = 0; i < l->n; i++) {
		struct dent *e = &l->e[i];
		if (e->drop || e->rekey)
			continue;
		uint64_t base = dir_name_key(f->sb.hash_seed, ename(l, e), e->len);
		if (e->key < base || e->key - base >= DIR_PROBE) {
			problem(f, "directory %" PRIu64 ": entry '%s' has key %" PRIu64 ", not its "
				"name's; re-keyed", dir, ename(l, e), e->key);
			e->rekey = changed = true;
		}
	}
	return changed;
}

static void enqueue(struct fsck *f, uint64_t ino, uint64_t parent)
{
	f->kind[ino] |= K_DONE;
	if (grow(f, (void **)&f->q, &f->qcap, f->qn + 1, sizeof(*f->q)))
		f->q[f->qn++] = (struct qent){ ino, parent };
}

static void verify_parent(struct fsck *f, uint64_t ino, uint64_t parent);

/* An entry of the orphan directory. */
static bool orphan_entry(struct fsck *f, struct dent *e)
{
	unsigned t = ktype(f, e->ino);
	bool changed = false;
	if (e->type != 0) {
		problem(f, "orphan directory: entry for inode %" PRIu64 " has type %u, not 0; "
			"fixed", e->ino, e->type);
		e->type = 0;
		changed = true;
	}
	f->kind[e->ino] |= K_ORPHAN;
	if (t == K_DIR && !(f->kind[e->ino] & K_DONE))
		enqueue(f, e->ino, 0);
	return changed;
}

/* An entry of an ordinary directory naming a live inode. */
static bool dir_entry(struct fsck *f, uint64_t dir, struct elist *l, struct dent *e)
{
	unsigned t = ktype(f, e->ino);
	bool changed = false;
	if (e->type != dtype_of(t)) {
		problem(f, "directory %" PRIu64 ": entry '%s' has type %u but inode %" PRIu64
			" is a %s; fixed", dir, ename(l, e), e->type, e->ino, tname(t));
		e->type = dtype_of(t);
		changed = true;
	}
	if (t != K_DIR) {
		if (f->links[e->ino] < UINT32_MAX)
			f->links[e->ino]++;
		return changed;
	}
	if (f->kind[e->ino] & K_NAMED) {
		problem(f, "directory %" PRIu64 ": entry '%s' is a second link to directory %"
			PRIu64 "; removed", dir, ename(l, e), e->ino);
		e->drop = true;
		return true;
	}
	f->kind[e->ino] |= K_NAMED;
	f->links[dir]++;
	if (dir == FS_ROOT_INO && strcmp(ename(l, e), "lost+found") == 0)
		f->lf_ino = e->ino;
	if (f->kind[e->ino] & K_DONE)
		verify_parent(f, e->ino, dir);
	else
		enqueue(f, e->ino, dir);
	return changed;
}

/* Targets: allocated inodes of the entry's type, one link per directory. */
static bool check_targets(struct fsck *f, uint64_t dir, struct elist *l)
{
	bool changed = false;
	for (size_t i = 0; i < l->n && !f->rc; i++) {
		struct dent *e = &l->e[i];
		if (e->drop)
			continue;
		if (e->ino <= FS_ORPHAN_INO || e->ino >= f->sb.ninodes) {
			problem(f, "directory %" PRIu64 ": entry '%s' points to inode %" PRIu64
				", which cannot be used; removed", dir, ename(l, e), e->ino);
			e->drop = changed = true;
			continue;
		}
		unsigned t = ktype(f, e->ino);
		if (t == K_UNSEEN)
			t = visit(f, e->ino);
		if (!live(t)) {
			problem(f, "directory %" PRIu64 ": entry '%s' points to %s inode %" PRIu64
				"; removed", dir, ename(l, e), t == K_FREE ? "free" : "corrupt", e->ino);
			e->drop = changed = true;
			continue;
		}
		if (dir == FS_ORPHAN_INO)
			changed |= orphan_entry(f, e);
		else
			changed |= dir_entry(f, dir, l, e);
	}
	return changed;
}

/* Rewrite the header's count and parent in place (structure sound). */
static void fix_header(struct fsck *f, uint64_t blk, uint64_t nentries, uint64_t parent)
{
	struct fs_dirhdr h;
	if (!f->repair || !rd(f, blk, f->scratch) || fs_dirhdr_decode(f->scratch, &h))
		return;
	h.nentries = nentries;
	h.parent = parent;
	fs_dirhdr_encode(&h, f->scratch);
	wr(f, blk, f->scratch);
}

/* A checked directory met again with a parent: its ".." must say so. */
static void verify_parent(struct fsck *f, uint64_t ino, uint64_t parent)
{
	struct rewrite *r = find_rewrite(f, ino);
	if (r) {
		r->parent = parent;
		return;
	}
	struct fs_inode d;
	struct fs_dirhdr h;
	if (get_inode(f, ino, &d) || !d.direct[0] || !rd(f, d.direct[0], f->scratch) ||
	    fs_dirhdr_decode(f->scratch, &h) || h.parent == parent)
		return;
	problem(f, "directory %" PRIu64 ": '..' is %" PRIu64 ", should be %" PRIu64, ino,
		h.parent, parent);
	fix_header(f, d.direct[0], h.nentries, parent);
}

static uint64_t parent_for_rewrite(const struct fsck *f, uint64_t ino, uint64_t parent,
				   const struct dscan *ds)
{
	if (parent)
		return parent;
	if (ino <= FS_ORPHAN_INO)
		return ino;
	if (ds->hdr_ok && ds->h.parent > 0 && ds->h.parent < f->sb.ninodes)
		return ds->h.parent;
	return FS_ROOT_INO;
}

/* Header count and "..", when the structure is sound. */
static bool check_header(struct fsck *f, uint64_t ino, uint64_t parent, struct dscan *ds,
			 uint64_t kept)
{
	bool fix = false;
	if (ds->h.nentries != kept) {
		problem(f, "directory %" PRIu64 ": header counts %" PRIu64 " entries, found %"
			PRIu64, ino, ds->h.nentries, kept);
		fix = true;
	}
	if (parent && ds->h.parent != parent) {
		problem(f, "directory %" PRIu64 ": '..' is %" PRIu64 ", should be %" PRIu64, ino,
			ds->h.parent, parent);
		fix = true;
	}
	return fix;
}

/* Hand the kept entries to a retained list or a rewrite. */
static void keep_entries(struct fsck *f, uint64_t ino, uint64_t parent, struct dscan *ds,
			 bool rewrite)
{
	struct elist *kept = kept_list(f, ino);
	if (kept) {
		elist_free(kept);
		*kept = ds->list;
		ds->list = (struct elist){ 0 };
		if (rewrite)
			schedule_rewrite(f, ino, parent_for_rewrite(f, ino, parent, ds), kept,
					 false, false);
		return;
	}
	if (!rewrite)
		return;
	struct elist *l = malloc(sizeof(*l));
	if (!l) {
		nomem(f);
		return;
	}
	*l = ds->list;
	ds->list = (struct elist){ 0 };
	schedule_rewrite(f, ino, parent_for_rewrite(f, ino, parent, ds), l, true, false);
}

/* Check directory ino (dequeued); parent 0 when unknown (orphans). */
static void check_dir(struct fsck *f, uint64_t ino, uint64_t parent)
{
	struct fs_inode d;
	if (get_inode(f, ino, &d))
		return;
	struct blkmap map = { 0 };
	struct walk w = check_map(f, ino, &d, &map);
	if (w.dirty)
		store_inode(f, ino, &d);
	struct dscan ds = { 0 };
	if (!f->rc)
		scan_dir(f, ino, &map, &ds);
	bool changed = ds.damaged || ds.salvaged;
	if (!f->rc) {
		changed |= check_names(f, ino, &ds.list);
		changed |= check_keys(f, ino, &ds.list);
		changed |= check_targets(f, ino, &ds.list);
	}
	elist_compact(&ds.list);
	if (ds.list.n)
		f->kind[ino] |= K_NONEMPTY;
	if (!f->rc && !changed && check_header(f, ino, parent, &ds, ds.list.n))
		fix_header(f, ds.hdr_blk, ds.list.n, parent ? parent : ds.h.parent);
	else if (!f->rc && changed && !ds.damaged && parent && ds.h.parent != parent)
		problem(f, "directory %" PRIu64 ": '..' is %" PRIu64 ", should be %" PRIu64, ino,
			ds.h.parent, parent);
	if (!f->rc)
		keep_entries(f, ino, parent, &ds, changed);
	elist_free(&ds.list);
	map_free(&map);
}

static void run_queue(struct fsck *f)
{
	while (f->qhead < f->qn && !f->rc) {
		struct qent e = f->q[f->qhead++];
		check_dir(f, e.ino, e.parent);
	}
}

/* ---- pass A: the walk ---- */

/* Root or orphan directory unusable: make a new empty one (repair). */
static void remake_dir(struct fsck *f, uint64_t ino)
{
	problem(f, "the %s directory (inode %" PRIu64 ") is damaged%s",
		ino == FS_ROOT_INO ? "root" : "orphan", ino,
		f->repair ? "; made anew (its entries go to /lost+found)" : "");
	if (!f->repair)
		return;
	f->kind[ino] = K_DIR | K_NAMED | K_DONE | K_FRESH;
	struct elist *l = kept_list(f, ino);
	elist_free(l);
	schedule_rewrite(f, ino, ino, l, false, true);
}

static void walk_from(struct fsck *f, uint64_t ino)
{
	unsigned t = visit(f, ino);
	if (f->rc)
		return;
	if (t != K_DIR) {
		remake_dir(f, ino);
		return;
	}
	f->kind[ino] |= K_NAMED;
	enqueue(f, ino, ino);
	run_queue(f);
}

/* ---- pass B: unattached inodes ---- */

static uint64_t take_free_inode(struct fsck *f)
{
	for (uint64_t i = FS_ORPHAN_INO + 1; i < f->sb.ninodes; i++)
		if (f->kind[i] == K_UNSEEN && !bit_get(f->ibm, i))
			return i;
	return 0;
}

/* /lost+found: the existing one, or a new one (repair). 0 if impossible. */
static uint64_t get_lost_found(struct fsck *f)
{
	if (f->lf_ino || !f->repair)
		return f->lf_ino;
	if (ktype(f, FS_ROOT_INO) != K_DIR || elist_find(&f->root_list, "lost+found"))
		return 0;
	uint64_t ino = take_free_inode(f);
	if (!ino)
		return 0;
	f->lf_ino = ino;
	f->kind[ino] = K_DIR | K_NAMED | K_DONE | K_FRESH;
	own_change(f->ibm, f->itouched, ino, true);
	elist_free(&f->lf_list);
	schedule_rewrite(f, ino, FS_ROOT_INO, &f->lf_list, false, true);
	struct dent *e = elist_add(f, &f->root_list, "lost+found", 10, 0, ino, DIR_TYPE_DIR);
	if (e)
		e->rekey = true;
	f->links[FS_ROOT_INO]++;
	f->root_added++;
	schedule_rewrite(f, FS_ROOT_INO, FS_ROOT_INO, &f->root_list, false, false);
	return ino;
}

static uint64_t name_hash(const struct fsck *f, const char *name)
{
	return dir_name_key(f->sb.hash_seed, name, strlen(name));
}

/* A name of lost+found (a hash match counts: it only costs a suffix). */
static bool lf_name_taken(struct fsck *f, const char *name)
{
	if (!f->lf_names.n)
		for (size_t i = 0; i < f->lf_list.n; i++)
			if (!f->lf_list.e[i].drop)
				set_add(f, &f->lf_names, name_hash(f, ename(&f->lf_list,
									   &f->lf_list.e[i])));
	return set_has(&f->lf_names, name_hash(f, name));
}

/* Link ino into /lost+found as #ino (repair). */
static bool attach(struct fsck *f, uint64_t ino, unsigned t)
{
	uint64_t lf = get_lost_found(f);
	if (!lf) {
		problem(f, "inode %" PRIu64 ": cannot link it into /lost+found (no room, or the "
			"name is taken by something else)", ino);
		return false;
	}
	char name[32];
	snprintf(name, sizeof(name), "#%" PRIu64, ino);
	for (unsigned n = 1; lf_name_taken(f, name); n++)
		snprintf(name, sizeof(name), "#%" PRIu64 ".%u", ino, n);
	set_add(f, &f->lf_names, name_hash(f, name));
	struct dent *e = elist_add(f, &f->lf_list, name, strlen(name), 0, ino, dtype_of(t));
	if (!e)
		return false;
	e->rekey = true;
	schedule_rewrite(f, lf, FS_ROOT_INO, &f->lf_list, false, false);
	f->rep->lost_found++;
	if (t == K_DIR) {
		f->kind[ino] |= K_NAMED;
		f->links[lf]++;
		f->lf_added++;
	} else {
		f->links[ino]++;
	}
	return true;
}

/* Linked nowhere but not an orphan awaiting reclaim. */
static bool pending_orphan(struct fsck *f, uint64_t ino);

static bool unattached(struct fsck *f, uint64_t ino)
{
	unsigned t = ktype(f, ino);
	if (!live(t) || (f->kind[ino] & K_FRESH))
		return false;
	bool linked = t == K_DIR ? (f->kind[ino] & K_NAMED) != 0 : f->links[ino] > 0;
	return !linked && !pending_orphan(f, ino);
}

static void adopt_dir(struct fsck *f, uint64_t ino)
{
	problem(f, "directory %" PRIu64 " is in no directory%s", ino,
		f->repair ? "; moved to /lost+found" : "");
	uint64_t parent = 0;
	if (f->repair && attach(f, ino, K_DIR))
		parent = f->lf_ino;
	f->kind[ino] |= K_NAMED;      /* handled (checking only: as if attached) */
	if (f->kind[ino] & K_DONE) {
		if (parent)
			verify_parent(f, ino, parent);
		return;
	}
	enqueue(f, ino, parent);
	run_queue(f);
}

static void adopt_file(struct fsck *f, uint64_t ino)
{
	struct fs_inode d;
	if (get_inode(f, ino, &d))
		return;
	unsigned t = ktype(f, ino);
	if (d.nlink == 0) {
		problem(f, "inode %" PRIu64 ": unlinked (link count 0) but not in the orphan "
			"directory%s", ino, f->repair ? "; freed" : "");
		free_inode_all(f, ino);
	} else if (d.size == 0 && d.blocks == 0) {
		problem(f, "inode %" PRIu64 ": empty %s in no directory%s", ino, tname(t),
			f->repair ? "; freed" : "");
		free_inode_all(f, ino);
	} else {
		problem(f, "inode %" PRIu64 " (%s, %" PRIu64 " bytes) is in no directory%s", ino,
			tname(t), d.size, f->repair ? "; moved to /lost+found" : "");
		if (f->repair)
			attach(f, ino, t);
	}
}

/* The ".." a directory's header records, 0 if unreadable. */
static uint64_t header_parent(struct fsck *f, uint64_t ino)
{
	struct fs_inode d;
	struct fs_dirhdr h;
	if (get_inode(f, ino, &d) || !d.direct[0] || d.direct[0] >= f->sb.nblocks ||
	    !rd(f, d.direct[0], f->scratch) || fs_dirhdr_decode(f->scratch, &h))
		return 0;
	return h.parent < f->sb.ninodes ? h.parent : 0;
}

static void find_unattached(struct fsck *f, struct u64vec *dirs, struct u64vec *files)
{
	for (uint64_t ino = FS_ORPHAN_INO + 1; ino < f->sb.ninodes && !f->rc; ino++) {
		unsigned t = ktype(f, ino);
		if (t == K_UNSEEN && bit_get(f->ibm, ino))
			t = visit(f, ino);
		if (unattached(f, ino))
			vec_push(f, t == K_DIR ? dirs : files, ino);
	}
}

/* Directories whose recorded parent is another unattached directory wait
 * (the parent's walk may reach them); the rest go first. */
static void adopt_dirs(struct fsck *f, const struct u64vec *dirs)
{
	for (int round = 0; round < 2 && !f->rc; round++)
		for (size_t i = 0; i < dirs->n && !f->rc; i++) {
			uint64_t ino = dirs->v[i];
			if (!unattached(f, ino))
				continue;
			uint64_t p = header_parent(f, ino);
			bool parent_waits = p > FS_ORPHAN_INO && p != ino && unattached(f, p) &&
					    ktype(f, p) == K_DIR;
			if (round == 1 || !parent_waits)
				adopt_dir(f, ino);
		}
}

static void pass_unattached(struct fsck *f)
{
	struct u64vec dirs = { 0 }, files = { 0 };
	find_unattached(f, &dirs, &files);
	adopt_dirs(f, &dirs);
	for (size_t i = 0; i < files.n && !f->rc; i++)
		if (unattached(f, files.v[i]))
			adopt_file(f, files.v[i]);
	vec_free(&dirs);
	vec_free(&files);
}

/* ---- pass C: orphans ---- */

static bool pending_orphan(struct fsck *f, uint64_t ino)
{
	uint8_t k = f->kind[ino];
	struct fs_inode d;
	if (!(k & K_ORPHAN) || !live(k & K_TYPE) || (k & (K_NAMED | K_NONEMPTY)) ||
	    ((k & K_TYPE) != K_DIR && f->links[ino] > 0))
		return false;
	return get_inode(f, ino, &d) == 0 && d.nlink == 0;
}

static void reclaim(struct fsck *f, uint64_t ino)
{
	free_inode_all(f, ino);
	f->rep->orphans_reclaimed++;
	cat_log(CAT_LOG_INFO, "fsck: reclaimed orphan inode %" PRIu64, ino);
}

static void add_orphan(struct fsck *f, uint64_t ino)
{
	char hex[24];
	orphan_name(ino, hex, sizeof(hex));
	struct dent *e = elist_add(f, &f->orphan_list, hex, strlen(hex), 0, ino, 0);
	if (e)
		e->rekey = true;
	f->kind[ino] |= K_ORPHAN;
}

/* Blocks beyond a file's size belong to an unfinished truncation: it must
 * be in the orphan directory, where mount finishes it. */
static bool check_past_eof(struct fsck *f)
{
	bool changed = false;
	for (size_t i = 0; i < f->past_eof.n; i++) {
		uint64_t ino = f->past_eof.v[i];
		if (ktype(f, ino) != K_REG || (f->kind[ino] & K_ORPHAN))
			continue;
		problem(f, "inode %" PRIu64 ": blocks beyond its size, and not in the orphan "
			"directory%s", ino, f->repair ? "; added there (mount truncates it)" : "");
		if (f->repair && ktype(f, FS_ORPHAN_INO) == K_DIR) {
			add_orphan(f, ino);
			changed = true;
		}
	}
	return changed;
}

static void pass_orphans(struct fsck *f)
{
	struct elist *l = &f->orphan_list;
	bool changed = false;
	for (size_t i = 0; i < l->n; i++) {
		uint64_t ino = l->e[i].ino;
		if (pending_orphan(f, ino)) {
			if (f->repair) {
				reclaim(f, ino);
			} else {
				f->rep->orphans_pending++;
				cat_log(CAT_LOG_INFO, "fsck: inode %" PRIu64 " is an unlinked orphan "
					"(mount reclaims it)", ino);
			}
		}
		unsigned t = ktype(f, ino);
		if (!live(t)) {
			l->e[i].drop = changed = true;   /* reclaimed or freed now */
		} else if (t == K_DIR && (f->kind[ino] & K_NAMED)) {
			problem(f, "directory %" PRIu64 " is in the orphan directory but linked; "
				"taken out", ino);
			l->e[i].drop = changed = true;
		}
	}
	elist_compact(l);
	changed |= check_past_eof(f);
	if (changed && f->repair && ktype(f, FS_ORPHAN_INO) == K_DIR)
		schedule_rewrite(f, FS_ORPHAN_INO, FS_ORPHAN_INO, l, false, false);
}

/* ---- pass D: link counts ---- */

static uint32_t expected_links(struct fsck *f, uint64_t ino, unsigned t, bool *known)
{
	*known = true;
	if (ino == FS_ORPHAN_INO)
		return 2;
	if (t == K_DIR && (ino == FS_ROOT_INO || (f->kind[ino] & K_NAMED)))
		return 2 + f->links[ino];
	if (t != K_DIR && f->links[ino])
		return f->links[ino];
	*known = pending_orphan(f, ino);
	return 0;
}

static void pass_links(struct fsck *f)
{
	for (uint64_t ino = 1; ino < f->sb.ninodes && !f->rc; ino++) {
		unsigned t = ktype(f, ino);
		if (!live(t) || (f->kind[ino] & K_FRESH))
			continue;
		bool known;
		uint32_t want = expected_links(f, ino, t, &known);
		struct fs_inode d;
		if (!known || get_inode(f, ino, &d) || d.nlink == want)
			continue;
		uint32_t added = ino == FS_ROOT_INO ? f->root_added
			       : ino == f->lf_ino ? f->lf_added : 0;
		if (d.nlink + added != want)
			problem(f, "inode %" PRIu64 ": link count %u, found %u", ino, d.nlink, want);
		d.nlink = want;
		store_inode(f, ino, &d);
	}
}

/* ---- pass E: writing directories ---- */

static uint64_t take_free_block(struct fsck *f)
{
	uint64_t n = f->sb.nblocks - f->sb.data_start;
	for (uint64_t k = 0; k < n; k++) {
		uint64_t b = f->alloc_hint;
		if (++f->alloc_hint >= f->sb.nblocks)
			f->alloc_hint = f->sb.data_start;
		if (b >= f->sb.data_start && !bit_get(f->used, b)) {
			bit_set(f->used, b);
			own_change(f->bbm, f->btouched, b, true);
			return b;
		}
	}
	return 0;
}

/* Builds a block map's index tree from pointers given in ascending order. */
struct tbuild {
	struct fsck *f;
	unsigned height;
	uint8_t *blk[FS_MAX_HEIGHT + 1];
	uint64_t id[FS_MAX_HEIGHT + 1];
	bool open[FS_MAX_HEIGHT + 1];
	uint64_t root;
	struct u64vec *got;     /* every block allocated */
	bool nospace;
};

static void tb_put(struct tbuild *t, unsigned level, uint64_t n, uint64_t ptr);

static void tb_flush(struct tbuild *t, unsigned level)
{
	uint64_t b = take_free_block(t->f);
	t->open[level] = false;
	if (!b) {
		t->nospace = true;
		return;
	}
	vec_push(t->f, t->got, b);
	fs_index_seal(t->blk[level]);
	wr(t->f, b, t->blk[level]);
	if (level == t->height)
		t->root = b;
	else
		tb_put(t, level + 1, t->id[level] * pow511(level), b);
}

/* Pointer for tree index n at `level` (1: to data; above: to index blocks). */
static void tb_put(struct tbuild *t, unsigned level, uint64_t n, uint64_t ptr)
{
	uint64_t id = n / pow511(level);
	if (t->open[level] && t->id[level] != id)
		tb_flush(t, level);
	if (!t->open[level]) {
		fs_index_init(t->blk[level]);
		t->open[level] = true;
		t->id[level] = id;
	}
	fs_index_set(t->blk[level], (unsigned)((n / pow511(level - 1)) % FS_INDEX_FANOUT), ptr);
}

static void tb_finish(struct tbuild *t)
{
	for (unsigned level = 1; level <= t->height; level++)
		if (t->open[level])
			tb_flush(t, level);
}

static unsigned height_for(uint64_t n)
{
	unsigned h = 1;
	while (h < FS_MAX_HEIGHT && n >= pow511(h))
		h++;
	return h;
}

static int cmp_dent_key(const void *a, const void *b)
{
	const struct dent *x = a, *y = b;
	return x->key < y->key ? -1 : x->key > y->key;
}

/* Give re-keyed (and duplicate-keyed) entries the first free key of their
 * probe range; keys of the others are kept (they are readdir cookies). */
static void assign_keys(struct fsck *f, uint64_t dir, struct elist *l)
{
	struct u64set keys = { 0 };
	for (size_t i = 0; i < l->n; i++) {
		struct dent *e = &l->e[i];
		if (!e->rekey && set_has(&keys, e->key))
			e->rekey = true;
		if (!e->rekey)
			set_add(f, &keys, e->key);
	}
	for (size_t i = 0; i < l->n && !f->rc; i++) {
		struct dent *e = &l->e[i];
		if (!e->rekey)
			continue;
		uint64_t base = dir_name_key(f->sb.hash_seed, ename(l, e), e->len);
		e->drop = true;
		for (unsigned k = 0; k < DIR_PROBE && base + k < KEY_END; k++)
			if (!set_has(&keys, base + k)) {
				e->key = base + k;
				e->drop = e->rekey = false;
				set_add(f, &keys, e->key);
				break;
			}
		if (e->drop)
			problem(f, "directory %" PRIu64 ": no free key for '%s'; entry removed", dir,
				ename(l, e));
	}
	set_free(&keys);
	elist_compact(l);
	if (l->n)
		qsort(l->e, l->n, sizeof(*l->e), cmp_dent_key);
}

static size_t dent_size(const struct dent *e) { return FS_DIRENT_HDR + e->len; }

/* Smallest depth at which every slot's entries fit in one bucket. */
static int choose_depth(const struct elist *l)
{
	for (unsigned d = 0; d <= FS_DIR_MAX_DEPTH; d++) {
		bool fits = true;
		for (size_t i = 0; i < l->n && fits;) {
			uint64_t slot = d ? l->e[i].key >> (63 - d) : 0;
			size_t bytes = 0;
			while (i < l->n && (d ? l->e[i].key >> (63 - d) : 0) == slot)
				bytes += dent_size(&l->e[i++]);
			fits = bytes <= BUCKET_SPACE;
		}
		if (fits)
			return (int)d;
	}
	return -1;
}

struct dlayout {
	const struct elist *l;
	unsigned depth, tb;
	uint64_t nb, parent;
	size_t cursor;          /* next entry to place in a bucket */
};

static void make_bucket(struct dlayout *y, uint64_t b, uint8_t *p)
{
	memset(p, 0, FS_BLOCK_SIZE);
	put_le32(p, FS_BUCKET_MAGIC);
	put_le32(p + 8, y->depth);
	size_t off = FS_BUCKET_HDR;
	uint32_t count = 0;
	while (y->cursor < y->l->n) {
		const struct dent *e = &y->l->e[y->cursor];
		if ((y->depth ? e->key >> (63 - y->depth) : 0) != b)
			break;
		put_le64(p + off, e->key);
		put_le64(p + off + 8, e->ino);
		p[off + 16] = e->type;
		p[off + 17] = e->len;
		memcpy(p + off + FS_DIRENT_HDR, ename(y->l, e), e->len);
		off += dent_size(e);
		count++;
		y->cursor++;
	}
	put_le32(p + 12, count);
	put_le32(p + 16, (uint32_t)(off - FS_BUCKET_HDR));
	fs_bucket_seal(p);
}

/* The contents of logical block lblk of the new directory. */
static void make_block(struct dlayout *y, uint64_t lblk, uint8_t *p)
{
	if (lblk == 0) {
		struct fs_dirhdr h = { .magic = FS_DIRHDR_MAGIC, .depth = y->depth,
				       .nbuckets = (uint32_t)y->nb, .nentries = y->l->n,
				       .parent = y->parent };
		fs_dirhdr_encode(&h, p);
	} else if (lblk <= y->tb) {
		memset(p, 0, FS_BLOCK_SIZE);
		uint64_t first = (lblk - 1) * FS_DIR_TABLE_PER_BLOCK;
		for (uint64_t s = first; s < y->nb && s < first + FS_DIR_TABLE_PER_BLOCK; s++)
			put_le32(p + 4 + 4 * (s - first), (uint32_t)s);
		fs_dirtable_seal(p);
	} else {
		make_bucket(y, lblk - FS_DIR_BUCKET0, p);
	}
}

static uint64_t nth_lblk(const struct dlayout *y, uint64_t i)
{
	return i <= y->tb ? i : FS_DIR_BUCKET0 + (i - 1 - y->tb);
}

/* Write the blocks of the new directory; its map into d. */
static bool write_dir_blocks(struct fsck *f, struct dlayout *y, struct fs_inode *d,
			     struct u64vec *got)
{
	uint64_t n = 1 + y->tb + y->nb;
	struct tbuild t = { .f = f, .got = got };
	uint64_t top = nth_lblk(y, n - 1);
	t.height = top >= FS_NDIRECT ? height_for(top - FS_NDIRECT) : 0;
	for (unsigned i = 1; i <= t.height; i++)
		t.blk[i] = f->lvl[i];
	for (uint64_t i = 0; i < n && !t.nospace && !f->rc; i++) {
		uint64_t lblk = nth_lblk(y, i), b = take_free_block(f);
		if (!b) {
			t.nospace = true;
			break;
		}
		vec_push(f, got, b);
		make_block(y, lblk, f->scratch);
		wr(f, b, f->scratch);
		if (lblk < FS_NDIRECT)
			d->direct[lblk] = b;
		else
			tb_put(&t, 1, lblk - FS_NDIRECT, b);
	}
	if (!t.nospace)
		tb_finish(&t);
	d->root = t.root;
	d->height = t.root ? t.height : 0;
	d->blocks = got->n;
	return !t.nospace;
}

static void fresh_inode(struct fsck *f, uint64_t ino, struct fs_inode *d)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	*d = (struct fs_inode){ .mode = S_IFDIR | (ino == FS_ROOT_INO ? 0755u : 0700u),
				.nlink = 2 + f->links[ino],
				.generation = (uint32_t)prng_next(&f->rng),
				.atime_sec = now.tv_sec, .mtime_sec = now.tv_sec,
				.ctime_sec = now.tv_sec, .atime_nsec = (uint32_t)now.tv_nsec,
				.mtime_nsec = (uint32_t)now.tv_nsec,
				.ctime_nsec = (uint32_t)now.tv_nsec };
}

/* Write directory rw->ino afresh: new blocks, then the inode, then the old
 * blocks go back to the free pool (a crash in between leaves either). */
static void rewrite_dir(struct fsck *f, struct rewrite *rw)
{
	struct fs_inode d;
	struct u64vec old = { 0 }, got = { 0 };
	if (rw->fresh)
		fresh_inode(f, rw->ino, &d);
	else if (get_inode(f, rw->ino, &d))
		return;
	if (!rw->fresh)
		list_blocks(f, rw->ino, &d, &old);
	elist_compact(rw->list);
	assign_keys(f, rw->ino, rw->list);
	int depth = choose_depth(rw->list);
	if (depth < 0) {
		problem(f, "directory %" PRIu64 ": its entries do not fit a directory", rw->ino);
		goto out;
	}
	struct dlayout y = { .l = rw->list, .depth = (unsigned)depth,
			     .tb = table_blocks((unsigned)depth), .nb = 1ull << depth,
			     .parent = rw->parent };
	memset(d.direct, 0, sizeof(d.direct));
	if (!write_dir_blocks(f, &y, &d, &got)) {
		problem(f, "directory %" PRIu64 ": no free blocks to rebuild it", rw->ino);
		release_list(f, &got);
		goto out;
	}
	store_inode(f, rw->ino, &d);
	release_list(f, &old);
out:
	vec_free(&old);
	vec_free(&got);
}

static void do_rewrites(struct fsck *f)
{
	for (size_t i = 0; i < f->nrw && !f->rc; i++)
		if (f->repair)
			rewrite_dir(f, &f->rw[i]);
}

/* ---- pass F: bitmaps ---- */

/* Compare bitmap block bi on disk with the expected bits; write it when
 * they differ. Counts bits in use (*used) and differences. */
static void compare_bitmap_block(struct fsck *f, uint8_t *disk, const uint8_t *want,
				 bool touched, uint64_t nbits, uint64_t bi, uint64_t start,
				 uint64_t diff[2], uint64_t first[2])
{
	uint64_t lo = bi * BITS_PER_BLOCK, hi = lo + BITS_PER_BLOCK < nbits ? lo + BITS_PER_BLOCK
									    : nbits;
	bool differs = false;
	for (uint64_t i = lo; i < hi; i++) {
		bool d = bit_get(disk, i), w = bit_get(want, i);
		if (d == w)
			continue;
		if (!diff[w])
			first[w] = i;
		diff[w]++;
		differs = true;
	}
	if ((differs || touched) && f->repair) {
		memcpy(disk + lo / 8, want + lo / 8, FS_BLOCK_SIZE);
		wr(f, start + bi, disk + lo / 8);
	}
}

static void compare_bitmap(struct fsck *f, const char *what, const char *unit, uint8_t *disk,
			   const uint8_t *touched, const uint8_t *want, uint64_t nbits,
			   uint64_t start, uint64_t nblk)
{
	uint64_t diff[2] = { 0, 0 }, first[2] = { 0, 0 };
	for (uint64_t bi = 0; bi < nblk && !f->rc; bi++) {
		compare_bitmap_block(f, disk, want, touched[bi], nbits, bi, start, diff, first);
		if (bi % 64 == 63 || bi + 1 == nblk)
			progress(f, "bitmaps", bi + 1, nblk);
	}
	if (diff[0])
		problem(f, "%s: %" PRIu64 " %s marked in use but unused (first %" PRIu64 ")%s",
			what, diff[0], unit, first[0], f->repair ? "; freed" : "");
	if (diff[1])
		problem(f, "%s: %" PRIu64 " %s in use but marked free (first %" PRIu64 ")%s",
			what, diff[1], unit, first[1], f->repair ? "; marked" : "");
}

static void count_usage(struct fsck *f, const uint8_t *iwant)
{
	struct fsck_report *r = f->rep;
	r->inodes_used = r->blocks_used = r->dirs = r->files = r->symlinks = 0;
	for (uint64_t i = 0; i < f->sb.ninodes; i++) {
		r->inodes_used += bit_get(iwant, i);
		unsigned t = ktype(f, i);
		r->dirs += t == K_DIR;
		r->files += t == K_REG;
		r->symlinks += t == K_LNK;
	}
	for (uint64_t b = 0; b < f->sb.nblocks; b++)
		r->blocks_used += bit_get(f->used, b);
	r->inodes_total = f->sb.ninodes;
	r->blocks_total = f->sb.nblocks;
}

static void pass_bitmaps(struct fsck *f)
{
	uint8_t *iwant = calloc(f->sb.ibitmap_blocks, FS_BLOCK_SIZE);
	if (!iwant) {
		nomem(f);
		return;
	}
	for (uint64_t i = 0; i < f->sb.ninodes; i++)
		if (i <= FS_ORPHAN_INO || live(ktype(f, i)))
			bit_set(iwant, i);
	compare_bitmap(f, "inode bitmap", "inodes", f->ibm, f->itouched, iwant, f->sb.ninodes,
		       f->sb.ibitmap_start, f->sb.ibitmap_blocks);
	compare_bitmap(f, "block bitmap", "blocks", f->bbm, f->btouched, f->used, f->sb.nblocks,
		       f->sb.bbitmap_start, f->sb.bbitmap_blocks);
	count_usage(f, iwant);
	free(iwant);
}

/* ---- one pass ---- */

static void pass_free(struct fsck *f)
{
	free(f->ibm);
	free(f->bbm);
	free(f->itouched);
	free(f->btouched);
	free(f->used);
	free(f->kind);
	free(f->links);
	free(f->q);
	for (size_t i = 0; i < f->nrw; i++)
		if (f->rw[i].own) {
			elist_free(f->rw[i].list);
			free(f->rw[i].list);
		}
	free(f->rw);
	elist_free(&f->root_list);
	elist_free(&f->orphan_list);
	elist_free(&f->lf_list);
	set_free(&f->lf_names);
	vec_free(&f->past_eof);
	f->ibm = f->bbm = f->used = f->kind = f->itouched = f->btouched = NULL;
	f->links = NULL;
	f->q = NULL;
	f->rw = NULL;
	f->qhead = f->qn = f->qcap = f->nrw = f->rwcap = 0;
}

static bool pass_init(struct fsck *f)
{
	const struct fs_super *s = &f->sb;
	f->found = f->changes = f->shown = f->visited = 0;
	f->lf_ino = 0;
	f->root_added = f->lf_added = 0;
	memset(f->icache_no, 0, ICACHE_LINES * sizeof(*f->icache_no));
	f->alloc_hint = s->data_start;
	f->ibm = block_alloc(s->ibitmap_blocks * FS_BLOCK_SIZE);
	f->bbm = block_alloc(s->bbitmap_blocks * FS_BLOCK_SIZE);
	f->used = calloc(s->bbitmap_blocks, FS_BLOCK_SIZE);
	f->kind = calloc(s->ninodes, 1);
	f->links = calloc(s->ninodes, sizeof(*f->links));
	f->itouched = calloc(s->ibitmap_blocks, 1);
	f->btouched = calloc(s->bbitmap_blocks, 1);
	if (!f->ibm || !f->bbm || !f->used || !f->kind || !f->links || !f->itouched ||
	    !f->btouched) {
		nomem(f);
		return false;
	}
	if (rd_many(f, s->ibitmap_start, s->ibitmap_blocks, f->ibm) ||
	    rd_many(f, s->bbitmap_start, s->bbitmap_blocks, f->bbm))
		return false;
	for (uint64_t b = 0; b < s->data_start; b++)
		bit_set(f->used, b);
	f->ibm_set = 0;
	for (uint64_t i = 0; i < s->ninodes; i++)
		f->ibm_set += bit_get(f->ibm, i);
	return true;
}

static void run_pass(struct fsck *f)
{
	if (pass_init(f)) {
		walk_from(f, FS_ROOT_INO);
		if (!f->rc)
			walk_from(f, FS_ORPHAN_INO);
		if (!f->rc)
			pass_unattached(f);
		progress(f, "inodes", f->ibm_set, f->ibm_set);
		if (!f->rc)
			pass_orphans(f);
		if (!f->rc)
			pass_links(f);
		if (!f->rc)
			do_rewrites(f);
		if (!f->rc)
			pass_bitmaps(f);
		if (!f->rc && f->repair && f->changes) {
			int r = bdev_flush(f->dev);
			if (r)
				fail(f, r, "flushing after", 0);
		}
	}
	pass_free(f);
}

/* ---- superblock and journal ---- */

static int check_super(struct fsck *f, uint8_t *blk)
{
	int r = bdev_read(f->dev, 0, blk, 1);
	if (r)
		return cat_error_set(f->err, r, "%s: reading the superblock: %s", f->dev->name,
				     strerror(-r));
	if (fs_super_decode(blk, &f->sb)) {
		memset(blk + 144, 0, FS_BLOCK_SIZE - 4 - 144);
		if (fs_super_decode(blk, &f->sb)) {
			f->rep->errors_found = f->rep->errors_left = 1;
			return cat_error_set(f->err, -EUCLEAN, "%s: the filesystem superblock is "
					     "damaged (bad magic, version, checksum or geometry); "
					     "fsck cannot rebuild it", f->dev->name);
		}
		problem(f, "superblock: damaged bytes in its unused part%s",
			f->o->repair ? "; rewritten" : "");
		if (f->o->repair) {
			fs_super_encode(&f->sb, blk);
			if ((r = bdev_write(f->dev, 0, blk, 1)))
				return cat_error_set(f->err, r, "%s: writing the superblock: %s",
						     f->dev->name, strerror(-r));
			f->rep->changed = true;
		}
	}
	if (f->sb.nblocks > f->dev->nblocks) {
		f->rep->errors_found = f->rep->errors_left = 1;
		return cat_error_set(f->err, -EUCLEAN, "%s: the superblock says %" PRIu64 " blocks, "
				     "the device has %" PRIu64, f->dev->name, f->sb.nblocks,
				     f->dev->nblocks);
	}
	return 0;
}

/* The journal header: 0 usable, -EUCLEAN not (repaired when possible). */
static int check_jhdr(struct fsck *f, uint8_t *blk, struct fs_jhdr *h)
{
	uint64_t jb = f->sb.journal_start;
	int r = bdev_read(f->dev, jb, blk, 1);
	if (r)
		return cat_error_set(f->err, r, "%s: reading the journal header: %s",
				     f->dev->name, strerror(-r));
	if (fs_jhdr_decode(blk, h) == 0 && h->tail_pos < f->sb.journal_blocks - 1)
		return 0;
	memset(blk + 32, 0, FS_BLOCK_SIZE - 4 - 32);
	bool salvaged = fs_jhdr_decode(blk, h) == 0 && h->tail_pos < f->sb.journal_blocks - 1;
	problem(f, "journal header: %s%s", salvaged ? "damaged bytes in its unused part"
		: "corrupt; the log cannot be replayed",
		!f->o->repair ? "" : salvaged ? "; rewritten" : "; log emptied");
	if (!f->o->repair)
		return -EUCLEAN;
	f->rep->changed = true;
	r = salvaged ? bdev_write(f->dev, jb, blk, 1) : journal_format(f->dev, &f->sb);
	if (!r && salvaged)
		r = bdev_flush(f->dev);
	if (r)
		return cat_error_set(f->err, r, "%s: writing the journal header: %s",
				     f->dev->name, strerror(-r));
	if (!salvaged)
		return -EUCLEAN;
	return 0;
}

/* Committed transactions of `epoch` after seq in the log: a replay that
 * stopped at seq lost them. */
static int count_lost(struct fsck *f, uint64_t epoch, uint64_t seq, uint64_t *lost)
{
	uint64_t nlog = f->sb.journal_blocks - 1, base = f->sb.journal_start + 1;
	uint8_t *buf = block_alloc(IO_CHUNK * FS_BLOCK_SIZE);
	if (!buf)
		return -ENOMEM;
	*lost = 0;
	for (uint64_t b = 0; b < nlog && !f->rc; b += IO_CHUNK) {
		uint64_t k = nlog - b < IO_CHUNK ? nlog - b : IO_CHUNK;
		if (rd_many(f, base + b, k, buf))
			break;
		for (uint64_t i = 0; i < k; i++) {
			struct fs_jcommit c;
			if (fs_jcommit_decode(buf + i * FS_BLOCK_SIZE, &c) == 0 &&
			    c.epoch == epoch && c.seq > seq)
				(*lost)++;
		}
		progress(f, "journal", b + k, nlog);
	}
	free(buf);
	return f->rc;
}

static bool read_log(struct fsck *f, uint64_t pos, uint8_t *blk)
{
	return rd(f, f->sb.journal_start + 1 + pos % (f->sb.journal_blocks - 1), blk);
}

/* The descriptors and data of the transaction at the tail pass their
 * checks; *n blocks, their chained crc in *crc, the commit at *off. */
static bool tx_body_ok(struct fsck *f, const struct fs_jhdr *h, struct fs_jdesc *d,
		       uint8_t *blk, uint64_t *n, uint32_t *crc, uint64_t *off)
{
	uint64_t nlog = f->sb.journal_blocks - 1, jend = f->sb.journal_start + f->sb.journal_blocks;
	for (uint32_t index = 0;; index++) {
		if (*off >= nlog || !read_log(f, h->tail_pos + *off, blk) ||
		    fs_jdesc_decode(blk, d) || d->epoch != h->epoch || d->seq != h->tail_seq ||
		    d->index != index || *off + 1 + d->count >= nlog)
			return false;
		*crc = crc32c(*crc, blk, FS_BLOCK_SIZE);
		for (uint32_t i = 0; i < d->count; i++) {
			uint64_t home = d->home[i];
			if (home >= f->sb.nblocks || (home >= f->sb.journal_start && home < jend) ||
			    !read_log(f, h->tail_pos + *off + 1 + i, blk))
				return false;
			*crc = crc32c(*crc, blk, FS_BLOCK_SIZE);
		}
		*n += d->count;
		*off += 1 + d->count;
		if (d->last)
			return true;
	}
}

/* Would replay apply a transaction? (Checked as journal.c's replay does.) */
static bool tx_at_tail(struct fsck *f, const struct fs_jhdr *h, uint8_t *blk)
{
	struct fs_jdesc *d = malloc(sizeof(*d));
	struct fs_jcommit c;
	uint64_t n = 0, off = 0;
	uint32_t crc = 0;
	bool ok = d && tx_body_ok(f, h, d, blk, &n, &crc, &off) &&
		  read_log(f, h->tail_pos + off, blk) && fs_jcommit_decode(blk, &c) == 0 &&
		  c.epoch == h->epoch && c.seq == h->tail_seq && c.nblocks == n && c.data_crc == crc;
	free(d);
	return ok;
}

/* Replay (when there is something to replay, or when repairing: replay
 * also moves the log to a new epoch); *end = the seq replay stopped at. */
static int replay(struct fsck *f, const struct fs_jhdr *h, uint8_t *blk, uint64_t *end)
{
	*end = h->tail_seq;
	if (!tx_at_tail(f, h, blk) && !f->o->repair)
		return f->rc;
	uint64_t n = 0;
	int r = journal_replay(f->dev, &f->sb, &n);
	if (r)
		return cat_error_set(f->err, r, "%s: replaying the journal: %s", f->dev->name,
				     strerror(-r));
	f->rep->journal_replayed = n;
	if (n)
		cat_log(CAT_LOG_INFO, "fsck: journal: replayed %" PRIu64 " transaction(s)", n);
	struct fs_jhdr after;
	if ((r = bdev_read(f->dev, f->sb.journal_start, blk, 1)) || fs_jhdr_decode(blk, &after))
		return cat_error_set(f->err, r ? r : -EIO, "%s: rereading the journal header",
				     f->dev->name);
	*end = after.tail_seq;
	return 0;
}

static int replay_journal(struct fsck *f, uint8_t *blk)
{
	struct fs_jhdr h;
	uint64_t end, lost = 0;
	int r = check_jhdr(f, blk, &h);
	if (r)
		return r == -EUCLEAN ? 0 : r;
	if ((r = replay(f, &h, blk, &end)) || (r = count_lost(f, h.epoch, end, &lost)))
		return r;
	f->rep->journal_lost = lost;
	if (lost)
		problem(f, "journal: transaction %" PRIu64 " is damaged (descriptor, data or commit "
			"block); replay stops there and %" PRIu64 " later committed "
			"transaction(s) are lost%s", end, lost, f->o->repair ? "" : " (a mount "
			"or --repair drops them)");
	return 0;
}

/* ---- the run ---- */

static void account(struct fsck *f, uint64_t pre_found)
{
	struct fsck_report *r = f->rep;
	if (r->passes == 1)
		r->errors_found = pre_found + f->found;
	if (f->changes)
		r->changed = true;
}

static int buffers_alloc(struct fsck *f)
{
	f->icache = block_alloc(ICACHE_LINES * FS_BLOCK_SIZE);
	f->icache_no = calloc(ICACHE_LINES, sizeof(*f->icache_no));
	f->scratch = block_alloc(FS_BLOCK_SIZE);
	f->scratch2 = block_alloc(FS_BLOCK_SIZE);
	bool ok = f->icache && f->icache_no && f->scratch && f->scratch2;
	for (unsigned i = 0; i <= FS_MAX_HEIGHT; i++)
		ok = (f->lvl[i] = block_alloc(FS_BLOCK_SIZE)) && ok;
	return ok ? 0 : cat_error_set(f->err, -ENOMEM, "out of memory");
}

static void buffers_free(struct fsck *f)
{
	free(f->icache);
	free(f->icache_no);
	free(f->scratch);
	free(f->scratch2);
	for (unsigned i = 0; i <= FS_MAX_HEIGHT; i++)
		free(f->lvl[i]);
}

/* Passes until one repairs nothing (or only checks); pre_*: the problems
 * of the superblock and journal. */
static int run_passes(struct fsck *f, uint64_t pre_found, uint64_t pre_left)
{
	struct fsck_report *rep = f->rep;
	for (;;) {
		f->repair = f->o->repair && rep->passes + 1 < FSCK_MAX_PASSES;
		rep->passes++;
		run_pass(f);
		if (f->rc)
			return f->rc;
		account(f, pre_found);
		if (!f->repair || f->changes == 0) {
			rep->errors_left = pre_left + f->found;
			return 0;
		}
		f->pass++;
	}
}

int fsck_run(struct bdev *dev, const struct fsck_opts *o, struct fsck_report *rep,
	     struct cat_error *err)
{
	static const struct fsck_opts none = { 0 };
	struct fsck f = { .dev = dev, .o = o ? o : &none, .rep = rep, .err = err, .pass = 1 };
	*rep = (struct fsck_report){ 0 };
	prng_seed(&f.rng, wallclock_ns() ^ now_ns());
	int r = buffers_alloc(&f);
	if (!r)
		r = check_super(&f, f.scratch);
	if (!r)
		r = replay_journal(&f, f.scratch);
	if (!r)
		r = run_passes(&f, f.found, f.o->repair ? 0 : f.found);
	if (!r && rep->errors_found < rep->errors_left)
		rep->errors_found = rep->errors_left;
	rep->errors_fixed = r ? 0 : rep->errors_found - rep->errors_left;
	buffers_free(&f);
	return r;
}

int fsck_exit_code(int rc, const struct fsck_report *rep)
{
	if (rc == -EUCLEAN)
		return FSCK_EXIT_ERRORS;
	if (rc < 0)
		return FSCK_EXIT_FAILED;
	if (rep->errors_left)
		return FSCK_EXIT_ERRORS;
	if (rep->errors_found || rep->changed)
		return FSCK_EXIT_FIXED;
	return FSCK_EXIT_CLEAN;
}
