/*
 * fs_model.c - the reference model, random operations and snapshots
 * (contract: fs_model.h).
 *
 * Error order. The model answers as Linux's VFS does (for rename:
 * do_renameat2 then vfs_rename). The engine checks some doubly-wrong
 * requests in another order; those answers are accepted as op->alt:
 *   - link of a directory to a name that exists: Linux -EEXIST, engine -EPERM;
 *   - rename: the engine's loop checks run before RENAME_NOREPLACE's
 *     -EEXIST and RENAME_EXCHANGE's -ENOENT, and a target that is a
 *     directory above the source's parent (but not that parent) is checked
 *     for type (-EISDIR) instead of answering -ENOTEMPTY.
 * Under FUSE the kernel makes all of these checks before the filesystem
 * sees the request, so none of them is reachable there.
 */
#include "tests/unit/helpers/fs_model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define NAME_MAX_LEN 255u

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q) {
		fprintf(stderr, "fs_model: out of memory\n");
		abort();
	}
	return q;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(xrealloc(NULL, n), s, n);
}

/* ---- hashing and data patterns ---- */

uint64_t hash_bytes(uint64_t h, const void *p, size_t len)
{
	const uint8_t *b = p;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, b + i, 8);
		h = (h ^ w) * 0x100000001b3ull;
		h ^= h >> 29;
	}
	for (; i < len; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h ^ (uint64_t)len;
}

void fsop_pattern(uint64_t seed, void *buf, size_t len)
{
	uint8_t *p = buf;
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
	for (size_t i = 0; i < len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t k = len - i < 8 ? len - i : 8;
		memcpy(p + i, &x, k);
	}
}

/* ---- nodes ---- */

static struct mnode *node_new(struct model *m, enum mtype t)
{
	struct mnode *n = calloc(1, sizeof(*n));
	if (!n)
		abort();
	n->type = t;
	n->nlink = t == M_DIR ? 2 : 1;
	if (m->nids == m->ids_cap) {
		m->ids_cap = m->ids_cap ? m->ids_cap * 2 : 256;
		m->by_id = xrealloc(m->by_id, m->ids_cap * sizeof(*m->by_id));
	}
	n->id = m->nids;
	m->by_id[m->nids++] = n;
	m->live++;
	return n;
}

static void node_free(struct model *m, struct mnode *n)
{
	for (size_t i = 0; i < n->nents; i++)
		free(n->ents[i].name);
	free(n->ents);
	free(n->data);
	free(n->target);
	m->by_id[n->id] = NULL;
	m->live--;
	free(n);
}

void model_init(struct model *m)
{
	memset(m, 0, sizeof(*m));
	m->ids_cap = 256;
	m->by_id = xrealloc(NULL, m->ids_cap * sizeof(*m->by_id));
	m->by_id[0] = NULL;     /* id 0 is never used */
	m->nids = 1;
	m->root = node_new(m, M_DIR);
}

static void free_tree(struct model *m, struct mnode *d)
{
	for (size_t i = 0; i < d->nents; i++) {
		struct mnode *c = d->ents[i].node;
		if (c->type == M_DIR)
			free_tree(m, c);
		else if (--c->nlink == 0)
			node_free(m, c);
	}
	node_free(m, d);
}

void model_free(struct model *m)
{
	if (m->root)
		free_tree(m, m->root);
	free(m->by_id);
	memset(m, 0, sizeof(*m));
}

struct mnode *model_node(const struct model *m, uint64_t id)
{
	return id < m->nids ? m->by_id[id] : NULL;
}

static struct mentry *find_ent(const struct mnode *dir, const char *name)
{
	for (size_t i = 0; i < dir->nents; i++)
		if (strcmp(dir->ents[i].name, name) == 0)
			return &dir->ents[i];
	return NULL;
}

struct mnode *model_find(const struct mnode *dir, const char *name)
{
	struct mentry *e = dir && dir->type == M_DIR ? find_ent(dir, name) : NULL;
	return e ? e->node : NULL;
}

static void ent_add(struct mnode *dir, const char *name, struct mnode *n)
{
	if (dir->nents == dir->ents_cap) {
		dir->ents_cap = dir->ents_cap ? dir->ents_cap * 2 : 8;
		dir->ents = xrealloc(dir->ents, dir->ents_cap * sizeof(*dir->ents));
	}
	dir->ents[dir->nents++] = (struct mentry){ xstrdup(name), n };
	if (n->type == M_DIR) {
		n->parent = dir;
		dir->nlink++;
	}
}

/* Remove the entry (the node stays; its link count is the caller's). */
static void ent_del(struct mnode *dir, const char *name)
{
	struct mentry *e = find_ent(dir, name);
	if (e->node->type == M_DIR)
		dir->nlink--;
	free(e->name);
	*e = dir->ents[--dir->nents];
}

static void unref(struct model *m, struct mnode *n)
{
	if (n->type == M_DIR) {
		node_free(m, n);
		return;
	}
	if (--n->nlink == 0)
		node_free(m, n);
}

static int name_check(const char *name)
{
	size_t n = strlen(name);
	if (n == 0)
		return -EINVAL;
	return n > NAME_MAX_LEN ? -ENAMETOOLONG : 0;
}

/* x is dir or above it */
static bool ancestor_or_self(const struct mnode *x, const struct mnode *dir)
{
	for (const struct mnode *d = dir; d; d = d->parent)
		if (d == x)
			return true;
	return false;
}

/* ---- operations ---- */

static int m_make(struct model *m, struct fsop *op, enum mtype t)
{
	struct mnode *dir = model_node(m, op->a);
	int r = name_check(op->name);
	if (r)
		return r;
	if (dir->type != M_DIR)
		return -ENOTDIR;
	if (find_ent(dir, op->name))
		return -EEXIST;
	struct mnode *n = node_new(m, t);
	if (t == M_LNK) {
		n->target = xstrdup(op->name2);
		n->size = strlen(op->name2);
	}
	ent_add(dir, op->name, n);
	op->newid = n->id;
	return 0;
}

static int m_link(struct model *m, struct fsop *op)
{
	struct mnode *n = model_node(m, op->a), *dir = model_node(m, op->b);
	int r = name_check(op->name);
	if (r)
		return r;
	if (dir->type != M_DIR)
		return -ENOTDIR;
	bool exists = find_ent(dir, op->name) != NULL;
	if (n->type == M_DIR) {
		if (exists)
			op->alt = -EPERM;
		return exists ? -EEXIST : -EPERM;
	}
	if (exists)
		return -EEXIST;
	ent_add(dir, op->name, n);
	n->nlink++;
	return 0;
}

static int m_remove(struct model *m, struct fsop *op, bool want_dir)
{
	struct mnode *dir = model_node(m, op->a);
	int r = name_check(op->name);
	if (r)
		return r;
	if (dir->type != M_DIR)
		return -ENOTDIR;
	struct mentry *e = find_ent(dir, op->name);
	if (!e)
		return -ENOENT;
	struct mnode *n = e->node;
	if (want_dir && n->type != M_DIR)
		return -ENOTDIR;
	if (!want_dir && n->type == M_DIR)
		return -EISDIR;
	if (want_dir && n->nents)
		return -ENOTEMPTY;
	ent_del(dir, op->name);
	unref(m, n);
	return 0;
}

/* Linux's answer to a rename (no change made). */
static int rename_linux(struct mnode *sd, struct mnode *dd, struct mnode *s, struct mnode *d,
			unsigned flags)
{
	if ((flags & RENAME_NOREPLACE) && d)
		return -EEXIST;
	if ((flags & RENAME_EXCHANGE) && !d)
		return -ENOENT;
	if (sd != dd) {
		if (ancestor_or_self(s, dd))
			return -EINVAL;
		if (d && ancestor_or_self(d, sd))
			return (flags & RENAME_EXCHANGE) ? -EINVAL : -ENOTEMPTY;
	}
	if (s == d)
		return 0;
	if (flags & RENAME_EXCHANGE)
		return 0;
	if (d && s->type == M_DIR && d->type != M_DIR)
		return -ENOTDIR;
	if (d && s->type != M_DIR && d->type == M_DIR)
		return -EISDIR;
	if (d && d->type == M_DIR && d->nents)
		return -ENOTEMPTY;
	return 0;
}

/* The engine's order (fs_rename.c), for op->alt. */
static int rename_engine(struct mnode *sd, struct mnode *dd, struct mnode *s, struct mnode *d,
			 unsigned flags)
{
	if (sd != dd) {
		if (s->type == M_DIR && ancestor_or_self(s, dd))
			return -EINVAL;
		if (d && (flags & RENAME_EXCHANGE) && d->type == M_DIR && ancestor_or_self(d, sd))
			return -EINVAL;
	}
	if (d && (d == sd || d == dd))
		return (flags & RENAME_EXCHANGE) ? -EINVAL : -ENOTEMPTY;
	if (flags & RENAME_EXCHANGE)
		return d ? 0 : -ENOENT;
	if (!d)
		return 0;
	if (flags & RENAME_NOREPLACE)
		return -EEXIST;
	if (s == d)
		return 0;
	if (s->type == M_DIR && d->type != M_DIR)
		return -ENOTDIR;
	if (s->type != M_DIR && d->type == M_DIR)
		return -EISDIR;
	return d->nents ? -ENOTEMPTY : 0;
}

static void move_dir(struct mnode *n, struct mnode *from, struct mnode *to)
{
	if (n->type != M_DIR || from == to)
		return;
	from->nlink--;
	to->nlink++;
	n->parent = to;
}

static int m_rename(struct model *m, struct fsop *op)
{
	struct mnode *sd = model_node(m, op->a), *dd = model_node(m, op->b);
	int r = name_check(op->name);
	if (!r)
		r = name_check(op->name2);
	if (r)
		return r;
	if (sd->type != M_DIR || dd->type != M_DIR)
		return -ENOTDIR;
	struct mentry *se = find_ent(sd, op->name), *de = find_ent(dd, op->name2);
	if (!se)
		return -ENOENT;
	struct mnode *s = se->node, *d = de ? de->node : NULL;
	r = rename_linux(sd, dd, s, d, op->flags);
	int e = rename_engine(sd, dd, s, d, op->flags);
	if (r && e && e != r)
		op->alt = e;
	if (r || s == d)
		return r;
	if (op->flags & RENAME_EXCHANGE) {
		se->node = d;
		de->node = s;
		move_dir(s, sd, dd);
		move_dir(d, dd, sd);
		return 0;
	}
	if (d) {
		ent_del(dd, op->name2);
		unref(m, d);
	}
	/* entry moves: keep the link count as is (ent_add/ent_del adjust the
	 * parents' counts for directories) */
	ent_del(sd, op->name);
	ent_add(dd, op->name2, s);
	return 0;
}

static void file_resize(struct mnode *n, uint64_t size)
{
	if (size > n->data_cap) {
		size_t cap = n->data_cap ? n->data_cap : 4096;
		while (cap < size)
			cap *= 2;
		n->data = xrealloc(n->data, cap);
		n->data_cap = cap;
	}
	if (size > n->size)
		memset(n->data + n->size, 0, size - n->size);
	n->size = size;
	n->hash_ok = false;
}

static int m_write(struct model *m, struct fsop *op)
{
	struct mnode *n = model_node(m, op->a);
	if (n->type == M_DIR)
		return -EISDIR;
	if (n->type != M_REG)
		return -EINVAL;
	if (op->off + op->len > n->size)
		file_resize(n, op->off + op->len);
	fsop_pattern(op->seed, n->data + op->off, op->len);
	n->hash_ok = false;
	return 0;
}

static int m_truncate(struct model *m, struct fsop *op)
{
	struct mnode *n = model_node(m, op->a);
	if (n->type == M_DIR)
		return -EISDIR;
	if (n->type != M_REG)
		return -EINVAL;
	file_resize(n, op->off);
	return 0;
}

static int m_lookup(struct model *m, struct fsop *op)
{
	struct mnode *dir = model_node(m, op->a);
	int r = name_check(op->name);
	if (r)
		return r;
	if (dir->type != M_DIR)
		return -ENOTDIR;
	struct mentry *e = find_ent(dir, op->name);
	if (!e)
		return -ENOENT;
	op->result_id = e->node->id;
	return 0;
}

static int m_readlink(struct model *m, struct fsop *op)
{
	struct mnode *n = model_node(m, op->a);
	if (n->type != M_LNK)
		return -EINVAL;
	snprintf(op->name2, sizeof(op->name2), "%s", n->target);
	return 0;
}

int model_apply(struct model *m, struct fsop *op)
{
	int r = 0;
	op->alt = 0;
	op->newid = 0;
	op->result_id = 0;
	switch (op->kind) {
	case OP_MKDIR: r = m_make(m, op, M_DIR); break;
	case OP_CREATE: r = m_make(m, op, M_REG); break;
	case OP_SYMLINK: r = m_make(m, op, M_LNK); break;
	case OP_LINK: r = m_link(m, op); break;
	case OP_UNLINK: r = m_remove(m, op, false); break;
	case OP_RMDIR: r = m_remove(m, op, true); break;
	case OP_RENAME: r = m_rename(m, op); break;
	case OP_WRITE: r = m_write(m, op); break;
	case OP_TRUNCATE: r = m_truncate(m, op); break;
	case OP_LOOKUP: r = m_lookup(m, op); break;
	case OP_READLINK: r = m_readlink(m, op); break;
	case OP_FSYNC: case OP_FSYNCDIR: case OP_SYNCFS: r = 0; break;
	}
	op->expect = r;
	return r;
}

const char *fsop_name(enum fsop_kind k)
{
	static const char *names[] = { "?", "mkdir", "create", "symlink", "link", "unlink",
				       "rmdir", "rename", "write", "truncate", "lookup",
				       "readlink", "fsync", "fsyncdir", "syncfs" };
	return k <= OP_SYNCFS ? names[k] : "?";
}

static const char *short_name(const char *n, char *buf, size_t len)
{
	size_t l = strlen(n);
	if (l <= 40)
		return n;
	snprintf(buf, len, "%.20s...(%zu bytes)", n, l);
	return buf;
}

const char *fsop_describe(const struct fsop *op, char *buf, size_t len)
{
	char s1[64], s2[64];
	const char *n1 = short_name(op->name, s1, sizeof(s1));
	const char *n2 = short_name(op->name2, s2, sizeof(s2));
	unsigned long long a = op->a, b = op->b;
	switch (op->kind) {
	case OP_MKDIR: case OP_CREATE: case OP_UNLINK: case OP_RMDIR: case OP_LOOKUP:
		snprintf(buf, len, "%s #%llu/%s", fsop_name(op->kind), a, n1);
		break;
	case OP_SYMLINK:
		snprintf(buf, len, "symlink #%llu/%s -> %s", a, n1, n2);
		break;
	case OP_LINK:
		snprintf(buf, len, "link #%llu to #%llu/%s", a, b, n1);
		break;
	case OP_RENAME:
		snprintf(buf, len, "rename #%llu/%s -> #%llu/%s flags %u", a, n1, b, n2, op->flags);
		break;
	case OP_WRITE:
		snprintf(buf, len, "write #%llu off %llu len %llu", a, (unsigned long long)op->off,
			 (unsigned long long)op->len);
		break;
	case OP_TRUNCATE:
		snprintf(buf, len, "truncate #%llu to %llu", a, (unsigned long long)op->off);
		break;
	default:
		snprintf(buf, len, "%s #%llu", fsop_name(op->kind), a);
		break;
	}
	return buf;
}

/* ---- random operations ---- */

struct pick {
	uint64_t *dirs;                 /* directory ids in the area */
	size_t ndirs, dcap;
	struct { uint64_t dir; const char *name; const struct mnode *node; } *ents;
	size_t nents, ecap;
};

static bool visible(const struct area *ar, uint64_t dir, const char *name)
{
	return dir != ar->shared || strncmp(name, ar->prefix, strlen(ar->prefix)) == 0;
}

static void collect(const struct model *m, const struct area *ar, const struct mnode *d,
		    struct pick *p)
{
	if (p->ndirs == p->dcap) {
		p->dcap = p->dcap ? p->dcap * 2 : 64;
		p->dirs = xrealloc(p->dirs, p->dcap * sizeof(*p->dirs));
	}
	p->dirs[p->ndirs++] = d->id;
	for (size_t i = 0; i < d->nents; i++) {
		const struct mentry *e = &d->ents[i];
		if (!visible(ar, d->id, e->name))
			continue;
		if (p->nents == p->ecap) {
			p->ecap = p->ecap ? p->ecap * 2 : 64;
			p->ents = xrealloc(p->ents, p->ecap * sizeof(*p->ents));
		}
		p->ents[p->nents].dir = d->id;
		p->ents[p->nents].name = e->name;
		p->ents[p->nents].node = e->node;
		p->nents++;
		if (e->node->type == M_DIR)
			collect(m, ar, e->node, p);
	}
}

static void pick_collect(const struct model *m, const struct area *ar, struct pick *p)
{
	memset(p, 0, sizeof(*p));
	for (int i = 0; i < ar->ntops; i++)
		collect(m, ar, model_node(m, ar->tops[i]), p);
	if (ar->shared)
		collect(m, ar, model_node(m, ar->shared), p);
}

static void pick_free(struct pick *p)
{
	free(p->dirs);
	free(p->ents);
}

static const char *const POOL[] = { "a", "b", "c", "d", "e", "f", "sub", "x.1",
				    "1700000000.M1P2Q3.host:2,S", "tmp", "new", "cur" };
#define NPOOL (sizeof(POOL) / sizeof(POOL[0]))

static void random_name(struct prng *r, char *out, size_t len)
{
	unsigned k = (unsigned)prng_below(r, 100);
	if (k < 90) {
		snprintf(out, len, "%s", POOL[prng_below(r, NPOOL)]);
		return;
	}
	size_t n = k < 97 ? 1 + prng_below(r, 24) : 200 + prng_below(r, 56); /* <= 255 */
	for (size_t i = 0; i < n && i + 1 < len; i++)
		out[i] = (char)('a' + prng_below(r, 26));
	out[n < len ? n : len - 1] = 0;
}

/* A name for dir: an existing one (half the time, if any) or from the pool. */
static void pick_name(const struct model *m, struct prng *r, const struct area *ar,
		      uint64_t dir, char *out, size_t len)
{
	const struct mnode *d = model_node(m, dir);
	if (d->type == M_DIR && d->nents && prng_below(r, 2)) {
		for (int tries = 0; tries < 4; tries++) {
			const struct mentry *e = &d->ents[prng_below(r, d->nents)];
			if (visible(ar, dir, e->name)) {
				snprintf(out, len, "%s", e->name);
				return;
			}
		}
	}
	char base[256];
	random_name(r, base, sizeof(base));
	if (dir == ar->shared)
		snprintf(out, len, "%s%.*s", ar->prefix, (int)(NAME_MAX_LEN - strlen(ar->prefix)),
			 base);
	else
		snprintf(out, len, "%s", base);
}

static uint64_t any_dir(const struct pick *p, struct prng *r)
{
	return p->dirs[prng_below(r, p->ndirs)];
}

/* An entry whose node has the wanted type (0: any); index or -1. */
static long any_ent(const struct pick *p, struct prng *r, enum mtype t)
{
	if (!p->nents)
		return -1;
	for (int tries = 0; tries < 16; tries++) {
		size_t i = prng_below(r, p->nents);
		if (!t || p->ents[i].node->type == t)
			return (long)i;
	}
	for (size_t i = 0; i < p->nents; i++)
		if (!t || p->ents[i].node->type == t)
			return (long)i;
	return -1;
}

/* A directory at or below node d (for loop attempts). */
static uint64_t dir_below(const struct pick *p, struct prng *r, const struct mnode *d)
{
	uint64_t best = d->id;
	for (int tries = 0; tries < 8; tries++) {
		const struct mnode *c = NULL;
		uint64_t id = any_dir(p, r);
		for (size_t i = 0; i < p->nents; i++)
			if (p->ents[i].node->id == id)
				c = p->ents[i].node;
		if (c && ancestor_or_self(d, c))
			return id;
	}
	return best;
}

static void gen_write(const struct model *m, const struct pick *p, struct prng *r,
		      const struct gen_cfg *cfg, struct fsop *op)
{
	long i = any_ent(p, r, M_REG);
	if (i < 0) {
		op->kind = OP_CREATE;
		op->a = any_dir(p, r);
		return;
	}
	const struct mnode *n = p->ents[i].node;
	(void)m;
	op->kind = OP_WRITE;
	op->a = n->id;
	unsigned k = (unsigned)prng_below(r, 100);
	op->len = 1 + prng_below(r, cfg->max_write);
	if (cfg->large_pct && prng_below(r, 100) < cfg->large_pct)
		op->len = cfg->max_large / 2 + prng_below(r, cfg->max_large / 2 + 1);
	if (k < 15)
		op->off = 0;
	else if (k < 30)
		op->off = n->size;                                   /* append */
	else if (k < 45)
		op->off = n->size + prng_below(r, cfg->max_offset);  /* beyond EOF: sparse */
	else
		op->off = prng_below(r, n->size + 4096);
	op->seed = prng_next(r);
}

static void gen_rename(const struct model *m, const struct pick *p, struct prng *r,
		       const struct area *ar, struct fsop *op)
{
	op->kind = OP_RENAME;
	long i = any_ent(p, r, prng_below(r, 3) == 0 ? M_DIR : 0);
	if (i < 0 || prng_below(r, 20) == 0) {
		op->a = any_dir(p, r);
		pick_name(m, r, ar, op->a, op->name, sizeof(op->name));
	} else {
		op->a = p->ents[i].dir;
		snprintf(op->name, sizeof(op->name), "%s", p->ents[i].name);
	}
	const struct mnode *src = i >= 0 ? p->ents[i].node : NULL;
	unsigned k = (unsigned)prng_below(r, 100);
	if (src && src->type == M_DIR && k < 12)
		op->b = dir_below(p, r, src);                 /* a loop (or its own parent) */
	else if (k < 45)
		op->b = op->a;                                /* same directory */
	else
		op->b = any_dir(p, r);
	pick_name(m, r, ar, op->b, op->name2, sizeof(op->name2));
	unsigned f = (unsigned)prng_below(r, 10);
	op->flags = f < 6 ? 0 : f < 8 ? RENAME_NOREPLACE : RENAME_EXCHANGE;
}

/* Requests that must fail (or must work at the limits). */
static void gen_error(const struct model *m, const struct pick *p, struct prng *r,
		      const struct area *ar, struct fsop *op)
{
	long fi = any_ent(p, r, M_REG), di = any_ent(p, r, M_DIR);
	unsigned k = (unsigned)prng_below(r, 8);
	op->a = any_dir(p, r);
	switch (k) {
	case 0: /* a name of 255 bytes (fine) or 256 (too long) */
		op->kind = prng_below(r, 2) ? OP_CREATE : OP_MKDIR;
		memset(op->name, 'n', 256);
		op->name[255 + prng_below(r, 2)] = 0;
		if (op->a == ar->shared)
			memcpy(op->name, ar->prefix, strlen(ar->prefix));
		return;
	case 1: /* a file as the directory */
		op->kind = prng_below(r, 2) ? OP_MKDIR : OP_LOOKUP;
		if (fi >= 0)
			op->a = p->ents[fi].node->id;
		break;
	case 2: /* unlink a directory */
		op->kind = OP_UNLINK;
		if (di >= 0) {
			op->a = p->ents[di].dir;
			snprintf(op->name, sizeof(op->name), "%s", p->ents[di].name);
			return;
		}
		break;
	case 3: /* rmdir a file */
		op->kind = OP_RMDIR;
		if (fi >= 0) {
			op->a = p->ents[fi].dir;
			snprintf(op->name, sizeof(op->name), "%s", p->ents[fi].name);
			return;
		}
		break;
	case 4: /* write or truncate a directory */
		op->kind = prng_below(r, 2) ? OP_WRITE : OP_TRUNCATE;
		op->a = di >= 0 ? p->ents[di].node->id : op->a;
		op->len = 10;
		op->off = 5;
		return;
	case 5: /* hard link to a directory (fresh name; never into itself:
		 * see test_fs_model.c, link_dir_into_itself) */
		op->kind = OP_LINK;
		op->b = any_dir(p, r);
		op->a = di >= 0 ? p->ents[di].node->id : op->a;
		if (op->a == op->b)
			op->b = ar->tops[0] == op->a ? ar->shared ? ar->shared : op->b : ar->tops[0];
		if (op->a == op->b) {
			op->kind = OP_LOOKUP;
			snprintf(op->name, sizeof(op->name), "%smissing", ar->prefix);
			return;
		}
		snprintf(op->name, sizeof(op->name), "%slnk%u", op->b == ar->shared ? ar->prefix : "",
			 (unsigned)prng_below(r, 1000000));
		return;
	case 6: /* readlink of a non-symlink */
		op->kind = OP_READLINK;
		op->a = fi >= 0 ? p->ents[fi].node->id : op->a;
		return;
	default: /* lookup/unlink/rmdir of a missing name */
		op->kind = prng_below(r, 3) == 0 ? OP_LOOKUP : prng_below(r, 2) ? OP_UNLINK : OP_RMDIR;
		snprintf(op->name, sizeof(op->name), "%smissing%u",
			 op->a == ar->shared ? ar->prefix : "", (unsigned)prng_below(r, 1000000));
		return;
	}
	pick_name(m, r, ar, op->a, op->name, sizeof(op->name));
}

void gen_op(const struct model *m, struct prng *r, const struct area *ar,
	    const struct gen_cfg *cfg, struct fsop *op)
{
	struct pick p;
	pick_collect(m, ar, &p);
	memset(op, 0, sizeof(*op));
	bool crowded = p.nents > cfg->max_nodes;
	unsigned k = (unsigned)prng_below(r, 100);
	if (crowded && k < 40)
		k = 30 + (unsigned)prng_below(r, 10);          /* unlink/rmdir */
	if (cfg->errors && k >= 96) {
		gen_error(m, &p, r, ar, op);
	} else if (cfg->fsyncs && k >= 92) {
		long i = any_ent(&p, r, M_REG);
		unsigned f = (unsigned)prng_below(r, 3);
		op->kind = f == 0 && i >= 0 ? OP_FSYNC : f == 1 ? OP_FSYNCDIR : OP_SYNCFS;
		op->a = f == 0 && i >= 0 ? p.ents[i].node->id : any_dir(&p, r);
	} else if (k < 10) {
		op->kind = OP_MKDIR;
		op->a = any_dir(&p, r);
		pick_name(m, r, ar, op->a, op->name, sizeof(op->name));
	} else if (k < 22) {
		op->kind = OP_CREATE;
		op->a = any_dir(&p, r);
		pick_name(m, r, ar, op->a, op->name, sizeof(op->name));
	} else if (k < 28) {
		long i = any_ent(&p, r, prng_below(r, 4) ? M_REG : M_LNK);
		op->kind = OP_LINK;
		op->b = any_dir(&p, r);
		op->a = i >= 0 ? p.ents[i].node->id : op->b;
		pick_name(m, r, ar, op->b, op->name, sizeof(op->name));
		if (i < 0)
			op->kind = OP_MKDIR, op->a = op->b;
	} else if (k < 36) {
		long i = any_ent(&p, r, prng_below(r, 3) ? M_REG : 0);
		op->kind = OP_UNLINK;
		op->a = i >= 0 ? p.ents[i].dir : any_dir(&p, r);
		if (i >= 0)
			snprintf(op->name, sizeof(op->name), "%s", p.ents[i].name);
		else
			pick_name(m, r, ar, op->a, op->name, sizeof(op->name));
	} else if (k < 41) {
		long i = any_ent(&p, r, M_DIR);
		op->kind = OP_RMDIR;
		op->a = i >= 0 ? p.ents[i].dir : any_dir(&p, r);
		if (i >= 0)
			snprintf(op->name, sizeof(op->name), "%s", p.ents[i].name);
		else
			pick_name(m, r, ar, op->a, op->name, sizeof(op->name));
	} else if (k < 56) {
		gen_rename(m, &p, r, ar, op);
	} else if (k < 74) {
		gen_write(m, &p, r, cfg, op);
		if (op->kind == OP_CREATE)
			pick_name(m, r, ar, op->a, op->name, sizeof(op->name));
	} else if (k < 80) {
		long i = any_ent(&p, r, M_REG);
		op->kind = i >= 0 ? OP_TRUNCATE : OP_MKDIR;
		op->a = i >= 0 ? p.ents[i].node->id : any_dir(&p, r);
		if (i >= 0) {
			uint64_t sz = p.ents[i].node->size;
			unsigned t = (unsigned)prng_below(r, 4);
			op->off = t == 0 ? 0 : t == 1 ? prng_below(r, sz + 1)
				  : sz + prng_below(r, cfg->max_offset + 1);
		} else {
			pick_name(m, r, ar, op->a, op->name, sizeof(op->name));
		}
	} else if (k < 85) {
		op->kind = OP_SYMLINK;
		op->a = any_dir(&p, r);
		pick_name(m, r, ar, op->a, op->name, sizeof(op->name));
		size_t n = 1 + prng_below(r, 200);
		for (size_t i = 0; i < n; i++)
			op->name2[i] = (char)('!' + prng_below(r, 90));
		op->name2[n] = 0;
	} else if (k < 88) {
		long i = any_ent(&p, r, M_LNK);
		op->kind = i >= 0 ? OP_READLINK : OP_LOOKUP;
		op->a = i >= 0 ? p.ents[i].node->id : any_dir(&p, r);
		if (i < 0)
			pick_name(m, r, ar, op->a, op->name, sizeof(op->name));
	} else {
		op->kind = OP_LOOKUP;
		op->a = any_dir(&p, r);
		pick_name(m, r, ar, op->a, op->name, sizeof(op->name));
	}
	pick_free(&p);
}

/* ---- Maildir workload ---- */

static size_t add_op(struct fsop *ops, size_t n, enum fsop_kind k, uint64_t a, uint64_t b,
		     const char *name, const char *name2)
{
	memset(&ops[n], 0, sizeof(ops[n]));
	ops[n].kind = k;
	ops[n].a = a;
	ops[n].b = b;
	snprintf(ops[n].name, sizeof(ops[n].name), "%s", name ? name : "");
	snprintf(ops[n].name2, sizeof(ops[n].name2), "%s", name2 ? name2 : "");
	return n + 1;
}

size_t gen_maildir_setup(uint64_t parent, const char *name, struct fsop *ops)
{
	/* the caller resolves newid of ops[0] before the others (a = 0 means
	 * "the directory made by the first op") */
	size_t n = add_op(ops, 0, OP_MKDIR, parent, 0, name, NULL);
	n = add_op(ops, n, OP_MKDIR, 0, 0, "tmp", NULL);
	n = add_op(ops, n, OP_MKDIR, 0, 0, "new", NULL);
	n = add_op(ops, n, OP_MKDIR, 0, 0, "cur", NULL);
	return add_op(ops, n, OP_FSYNCDIR, parent, 0, NULL, NULL);
}

/* A random entry of dir (or NULL). */
static const struct mentry *any_entry(const struct mnode *d, struct prng *r)
{
	return d && d->nents ? &d->ents[prng_below(r, d->nents)] : NULL;
}

size_t gen_maildir_step(const struct model *m, struct prng *r, const struct maildir_ids *md,
			unsigned counter, uint64_t max_msg, struct fsop *ops)
{
	char name[128], cur[160];
	size_t n = 0;
	unsigned k = (unsigned)prng_below(r, 100);
	const struct mnode *newd = model_node(m, md->newd), *curd = model_node(m, md->cur);
	const struct mentry *e;
	if (k < 50) {
		/* delivery: tmp/x, write, fsync, link new/x, fsync new/, unlink tmp/x.
		 * Write ops name the file by the id create will give it: the
		 * caller patches a == 0 to the preceding create's newid. */
		snprintf(name, sizeof(name), "17000%05u.M%uP77Q%u.catamaran", counter, counter * 7,
			 counter);
		n = add_op(ops, n, OP_CREATE, md->tmp, 0, name, NULL);
		uint64_t len = 1 + prng_below(r, prng_below(r, 8) == 0 ? max_msg : 8192);
		uint64_t off = 0;
		while (off < len) {
			uint64_t step = len - off < 65536 ? len - off : 65536 + prng_below(r, len - off - 65535);
			n = add_op(ops, n, OP_WRITE, 0, 0, NULL, NULL);
			ops[n - 1].off = off;
			ops[n - 1].len = step;
			ops[n - 1].seed = prng_next(r);
			off += step;
			if (n >= 4)
				break;
		}
		n = add_op(ops, n, OP_FSYNC, 0, 0, NULL, NULL);
		n = add_op(ops, n, OP_LINK, 0, md->newd, name, NULL);
		n = add_op(ops, n, OP_FSYNCDIR, md->newd, 0, NULL, NULL);
		n = add_op(ops, n, OP_UNLINK, md->tmp, 0, name, NULL);
	} else if (k < 70 && (e = any_entry(newd, r))) {
		/* pickup: new/x -> cur/x:2,S */
		snprintf(cur, sizeof(cur), "%.120s:2,S", e->name);
		n = add_op(ops, n, OP_RENAME, md->newd, md->cur, e->name, cur);
		if (prng_below(r, 2))
			n = add_op(ops, n, OP_FSYNCDIR, md->cur, 0, NULL, NULL);
	} else if (k < 82 && (e = any_entry(curd, r))) {
		/* flag change (rename in place) or delete */
		if (prng_below(r, 2)) {
			snprintf(cur, sizeof(cur), "%.120sT", e->name);
			n = add_op(ops, n, OP_RENAME, md->cur, md->cur, e->name, cur);
		} else {
			n = add_op(ops, n, OP_UNLINK, md->cur, 0, e->name, NULL);
		}
	} else if (k < 90 && (e = any_entry(curd, r)) && e->node->type == M_REG) {
		/* an index file rewritten in place, or truncated */
		if (prng_below(r, 3)) {
			n = add_op(ops, n, OP_WRITE, e->node->id, 0, NULL, NULL);
			ops[0].off = prng_below(r, e->node->size + 1);
			ops[0].len = 1 + prng_below(r, 20000);
			ops[0].seed = prng_next(r);
		} else {
			n = add_op(ops, n, OP_TRUNCATE, e->node->id, 0, NULL, NULL);
			ops[0].off = prng_below(r, e->node->size + 1);
		}
	} else if (k < 95) {
		n = add_op(ops, n, OP_SYNCFS, 0, 0, NULL, NULL);
	} else {
		/* a folder */
		snprintf(name, sizeof(name), ".folder%u", counter);
		n = add_op(ops, n, OP_MKDIR, md->root, 0, name, NULL);
	}
	return n;
}

/* ---- snapshots ---- */

void snap_init(struct snap *s)
{
	memset(s, 0, sizeof(*s));
}

void snap_free(struct snap *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->rows[i].path);
		free(s->rows[i].leader);
	}
	free(s->rows);
	memset(s, 0, sizeof(*s));
}

void snap_add(struct snap *s, const char *path, uint8_t type, uint32_t nlink,
	      uint64_t size, uint64_t hash, uint64_t ident)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 64;
		s->rows = xrealloc(s->rows, s->cap * sizeof(*s->rows));
	}
	s->rows[s->n++] = (struct snap_row){ .path = xstrdup(path), .type = type, .nlink = nlink,
					     .size = size, .hash = hash, .ident = ident };
}

static int by_path(const void *a, const void *b)
{
	return strcmp(((const struct snap_row *)a)->path, ((const struct snap_row *)b)->path);
}

static int by_ident(const void *a, const void *b)
{
	const struct snap_row *x = *(struct snap_row *const *)a, *y = *(struct snap_row *const *)b;
	if (x->ident != y->ident)
		return x->ident < y->ident ? -1 : 1;
	return strcmp(x->path, y->path);
}

void snap_finish(struct snap *s)
{
	qsort(s->rows, s->n, sizeof(*s->rows), by_path);
	struct snap_row **v = xrealloc(NULL, (s->n + 1) * sizeof(*v));
	size_t k = 0;
	for (size_t i = 0; i < s->n; i++)
		if (s->rows[i].type != M_DIR && s->rows[i].nlink > 1)
			v[k++] = &s->rows[i];
	qsort(v, k, sizeof(*v), by_ident);
	for (size_t i = 0; i < k; i++) {
		size_t first = i;
		while (first > 0 && v[first - 1]->ident == v[i]->ident)
			first--;
		v[i]->leader = xstrdup(v[first]->path);
	}
	free(v);
}

static uint64_t node_hash(struct mnode *n)
{
	if (!n->hash_ok) {
		n->hash = n->type == M_REG ? hash_bytes(HASH_INIT, n->data, n->size)
					   : hash_bytes(HASH_INIT, n->target, strlen(n->target));
		n->hash_ok = true;
	}
	return n->hash;
}

static void snap_dir(struct mnode *d, const char *path, struct snap *s)
{
	char *child = xrealloc(NULL, strlen(path) + NAME_MAX_LEN + 8);
	for (size_t i = 0; i < d->nents; i++) {
		struct mnode *n = d->ents[i].node;
		sprintf(child, "%s%s%s", path, *path ? "/" : "", d->ents[i].name);
		if (n->type == M_DIR) {
			snap_add(s, child, M_DIR, n->nlink, 0, 0, n->id);
			snap_dir(n, child, s);
		} else {
			snap_add(s, child, (uint8_t)n->type, n->nlink, n->size, node_hash(n), n->id);
		}
	}
	free(child);
}

void model_snap(struct model *m, struct mnode *dir, struct snap *s)
{
	(void)m;
	snap_init(s);
	snap_add(s, "", M_DIR, dir->nlink, 0, 0, dir->id);
	snap_dir(dir, "", s);
	snap_finish(s);
}

static const char *type_name(uint8_t t)
{
	return t == M_DIR ? "dir" : t == M_REG ? "file" : t == M_LNK ? "symlink" : "?";
}

static void row_text(const struct snap_row *r, char *buf, size_t len)
{
	snprintf(buf, len, "'%.60s' %s nlink %u size %llu hash %016llx%s%.60s", r->path,
		 type_name(r->type), r->nlink, (unsigned long long)r->size,
		 (unsigned long long)r->hash, r->leader ? " same inode as " : "",
		 r->leader ? r->leader : "");
}

int snap_diff(const struct snap *want, const struct snap *got, char *msg, size_t len)
{
	size_t i = 0, j = 0;
	char a[256], b[256];
	while (i < want->n || j < got->n) {
		int c = i == want->n ? 1 : j == got->n ? -1 : strcmp(want->rows[i].path, got->rows[j].path);
		if (c < 0) {
			row_text(&want->rows[i], a, sizeof(a));
			snprintf(msg, len, "missing: %s", a);
			return 1;
		}
		if (c > 0) {
			row_text(&got->rows[j], b, sizeof(b));
			snprintf(msg, len, "unexpected: %s", b);
			return 1;
		}
		const struct snap_row *x = &want->rows[i], *y = &got->rows[j];
		bool same = x->type == y->type && x->nlink == y->nlink && x->size == y->size &&
			    x->hash == y->hash && !x->leader == !y->leader &&
			    (!x->leader || strcmp(x->leader, y->leader) == 0);
		if (!same) {
			row_text(x, a, sizeof(a));
			row_text(y, b, sizeof(b));
			snprintf(msg, len, "differs: want %s, got %s", a, b);
			return 1;
		}
		i++;
		j++;
	}
	return 0;
}
