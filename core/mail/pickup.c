/*
 * pickup.c - the locked side of a mailbox: pickup, list, read, delete,
 * unlock.
 *
 * Taking the lock snapshots the mailbox: new/ and cur/ are listed (with
 * sizes when asked) and sorted by id. read and delete look ids up in that
 * snapshot; an id not in it (delivered after the snapshot) is looked for
 * in new/. The messages of new/ stay there while the lock is held and
 * only those still present at unlock are renamed to cur/NAME:2, (as
 * Maildir readers do): a message picked up and deleted in one session, the
 * usual POP3 case, costs no rename.
 *
 * Files are named relative to the mailbox's open directories (mailbox.c),
 * which are listed with getdents64 on those descriptors: the hold makes
 * this thread their only reader. A pickup of one message that is deleted
 * is about 14 system calls: lock, list new/ and cur/, open/fstat/read/
 * close, unlink, and at unlock fsync new/, unlock.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mail/mail_internal.h"

/* Directory entries: names (and their d_type) read before anything is
 * renamed or opened. */
struct names {
	char **v;
	unsigned char *type;
	size_t n, cap;
};

static void names_free(struct names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
	free(ns->type);
}

static int names_grow(struct names *ns)
{
	size_t cap = ns->cap ? ns->cap * 2 : 16;
	char **v = realloc(ns->v, cap * sizeof *v);
	if (!v)
		return -ENOMEM;
	ns->v = v;
	unsigned char *type = realloc(ns->type, cap);
	if (!type)
		return -ENOMEM;
	ns->type = type;
	ns->cap = cap;
	return 0;
}

/* io_scan_dir callback: every visible name. */
static int names_add(void *ctx, const char *name, unsigned char type)
{
	struct names *ns = ctx;
	if (name[0] == '.')
		return 0;   /* ".", "..", and Maildir hidden files */
	if (ns->n == ns->cap && names_grow(ns) < 0)
		return -ENOMEM;
	ns->v[ns->n] = strdup(name);
	if (!ns->v[ns->n])
		return -ENOMEM;
	ns->type[ns->n++] = type;
	return 0;
}

/* new/NAME -> cur/NAME:2, (a name that has an info part keeps it). */
static int move_one(const struct mailbox *mb, const char *name)
{
	char target[MAIL_ID_MAX + 4];
	size_t len = strlen(name);
	if (len + 4 > sizeof target)
		return 0;   /* a foreign name too long to rename: leave it */
	memcpy(target, name, len + 1);
	if (!strchr(name, ':'))
		memcpy(target + len, ":2,", 4);
	if (renameat(mb->new_fd, name, mb->cur_fd, target) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

static int snap_cmp(const void *a, const void *b)
{
	const struct snap_ent *x = a, *y = b;
	size_t n = x->idlen < y->idlen ? x->idlen : y->idlen;
	int c = memcmp(x->name, y->name, n);
	if (c != 0)
		return c;
	return (x->idlen > y->idlen) - (x->idlen < y->idlen);
}

/* 1 if NAME in dirfd is a regular file (e filled in), 0 to skip it.
 * Without need_size (pickup: the read gives the size) a d_type of DT_REG
 * spares the fstatat. */
static int snap_fill(int dirfd, char *name, unsigned char type, bool need_size,
		     struct snap_ent *e)
{
	uint64_t size = 0;
	if (type != DT_REG || need_size) {
		struct stat st;
		if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return errno == ENOENT ? 0 : -errno;
		if (!S_ISREG(st.st_mode))
			return 0;
		size = (uint64_t)st.st_size;
	}
	if (name_id_len(name) >= MAIL_ID_MAX)
		return 0;
	e->name = name;
	e->idlen = name_id_len(name);
	e->size = size;
	e->deleted = false;
	return 1;
}

/* Sorted by id; of two files with one id (only a foreign tool makes
 * them) the first is kept and the other left alone. */
static void snap_sort(struct hold *h)
{
	qsort(h->snap, h->nsnap, sizeof *h->snap, snap_cmp);
	size_t out = 0;
	for (size_t i = 0; i < h->nsnap; i++) {
		if (out > 0 && snap_cmp(&h->snap[out - 1], &h->snap[i]) == 0) {
			free(h->snap[i].name);
			continue;
		}
		h->snap[out++] = h->snap[i];
	}
	h->nsnap = out;
}

/* Append the names of ns (of new/ when in_new, else cur/) to h's
 * snapshot, which has room for them; takes ownership of the names. */
static int snap_add(struct hold *h, struct names *ns, bool in_new, bool need_size)
{
	int dirfd = in_new ? h->mb->new_fd : h->mb->cur_fd;
	int rc = 0;
	for (size_t i = 0; i < ns->n; i++) {
		char *name = ns->v[i];
		ns->v[i] = NULL;
		struct snap_ent *e = &h->snap[h->nsnap];
		rc = rc < 0 ? rc : snap_fill(dirfd, name, ns->type[i], need_size, e);
		if (rc == 1) {
			e->in_new = in_new;
			h->nsnap++;
		} else {
			free(name);
		}
	}
	return rc < 0 ? rc : 0;
}

static int snapshot(struct hold *h, bool need_size)
{
	struct names in_new = { 0 }, in_cur = { 0 };
	int rc = io_scan_dir(h->mb->new_fd, names_add, &in_new);
	if (rc == 0)
		rc = io_scan_dir(h->mb->cur_fd, names_add, &in_cur);
	if (rc == 0) {
		h->snap = calloc(in_new.n + in_cur.n + 1, sizeof *h->snap);
		rc = h->snap ? 0 : -ENOMEM;
	}
	if (rc == 0)
		rc = snap_add(h, &in_new, true, need_size);
	if (rc == 0)
		rc = snap_add(h, &in_cur, false, need_size);
	if (rc == 0)
		snap_sort(h);
	names_free(&in_new);
	names_free(&in_cur);
	return rc;
}

static int snap_dirfd(const struct hold *h, const struct snap_ent *e)
{
	return e->in_new ? h->mb->new_fd : h->mb->cur_fd;
}

int snap_move_kept(struct hold *h)
{
	int first = 0;
	for (size_t i = 0; i < h->nsnap; i++) {
		struct snap_ent *e = &h->snap[i];
		if (!e->in_new || e->deleted)
			continue;
		int rc = move_one(h->mb, e->name);
		if (rc < 0 && first == 0)
			first = rc;
		h->dirty_new = h->dirty_cur = true;
	}
	return first;
}

/* The public list from the snapshot, with contents if with_data. */
static int fill_list(struct hold *h, bool with_data, struct mail_list *out)
{
	out->msgs = calloc(h->nsnap ? h->nsnap : 1, sizeof *out->msgs);
	out->count = 0;
	if (!out->msgs)
		return -ENOMEM;
	for (size_t i = 0; i < h->nsnap; i++) {
		struct snap_ent *e = &h->snap[i];
		struct mail_msg *m = &out->msgs[out->count];
		m->id = strndup(e->name, e->idlen);
		if (!m->id)
			return -ENOMEM;
		m->size = e->size;
		out->count++;
		if (!with_data)
			continue;
		size_t len;
		int rc = io_read_file_at(snap_dirfd(h, e), e->name, &m->data, &len);
		if (rc == -ENOENT) {   /* removed by a foreign tool meanwhile */
			free(m->id);
			m->id = NULL;
			out->count--;
			e->deleted = true;
			continue;
		}
		if (rc < 0)
			return rc;
		m->size = len;
		e->size = len;
	}
	return 0;
}

static int take_once(struct mail_store *store, const char *user, bool with_data,
		     struct mail_list *out, struct hold **held)
{
	struct hold *h = NULL;
	int rc = lock_take(store, user, &h);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&h->mu);
	rc = snapshot(h, !with_data);
	if (rc == 0)
		rc = fill_list(h, with_data, out);
	pthread_mutex_unlock(&h->mu);
	if (rc < 0) {
		mail_list_free(out);
		*held = h;   /* still locked: the caller releases it */
		return rc;
	}
	lock_put(store, h);
	return 0;
}

/* A mailbox directory removed while it was open answers ENOENT: the
 * mailbox is then reopened (made again) and taken once more. */
static int take(struct mail_store *store, const char *user, bool with_data,
		struct mail_list *out)
{
	if (!store || !out || !mail_name_valid(user))
		return -EINVAL;
	int rc = -ENOENT;
	for (int attempt = 0; attempt < 2 && rc == -ENOENT; attempt++) {
		out->msgs = NULL;
		out->count = 0;
		struct hold *h = NULL;
		rc = take_once(store, user, with_data, out, &h);
		if (!h)
			continue;
		struct mailbox *fresh;
		if (rc == -ENOENT && mailbox_reopen(store, h->mb, &fresh) == 0)
			mailbox_put(store, fresh);
		lock_release(store, h);   /* drops our reference too */
	}
	return rc;
}

int mail_pickup(struct mail_store *store, const char *user,
		struct mail_list *out)
{
	return take(store, user, true, out);
}

int mail_list(struct mail_store *store, const char *user,
	      struct mail_list *out)
{
	return take(store, user, false, out);
}

static struct snap_ent *snap_find(struct hold *h, const char *id)
{
	struct snap_ent key = { .name = (char *)id, .idlen = strlen(id) };
	struct snap_ent *e = bsearch(&key, h->snap, h->nsnap, sizeof *h->snap,
				     snap_cmp);
	return e && !e->deleted ? e : NULL;
}

/* Where message id is: its file in the snapshot, else new/ID. */
static int find_file(struct hold *h, const char *id, int *dirfd,
		     const char **name, struct snap_ent **ent)
{
	struct snap_ent *e = snap_find(h, id);
	*ent = e;
	if (e) {
		*dirfd = snap_dirfd(h, e);
		*name = e->name;
		return 0;
	}
	struct stat st;
	if (fstatat(h->mb->new_fd, id, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	*dirfd = h->mb->new_fd;
	*name = id;
	return S_ISREG(st.st_mode) ? 0 : -ENOENT;
}

/* Validate, find the hold (-ENOLCK) and lock it. */
static int locked_hold(struct mail_store *store, const char *user,
		       const char *id, struct hold **out)
{
	if (!store || !mail_name_valid(user) || !name_id_valid(id))
		return -EINVAL;
	struct hold *h = lock_get(store, user);
	if (!h)
		return -ENOLCK;
	pthread_mutex_lock(&h->mu);
	*out = h;
	return 0;
}

static void unlock_hold(struct mail_store *store, struct hold *h)
{
	pthread_mutex_unlock(&h->mu);
	lock_put(store, h);
}

/* io_scan_dir callback: the first name of cur/ with the id in ctx. */
struct id_search {
	const char *id;
	size_t idlen;
	char *found;
};

static int match_id(void *ctx, const char *name, unsigned char type)
{
	struct id_search *s = ctx;
	(void)type;
	if (s->found || name_id_len(name) != s->idlen || memcmp(name, s->id, s->idlen) != 0)
		return 0;
	s->found = strdup(name);
	return s->found ? 0 : -ENOMEM;
}

/* A message of the snapshot is gone from where the snapshot saw it: a
 * Maildir reader that does not know our lock (Dovecot, mutt) moved it from
 * new/ to cur/ or changed its flags. Find it in cur/ by its id and point e
 * there. -ENOENT if cur/ has no such id. */
static int relocate(struct hold *h, struct snap_ent *e)
{
	struct id_search s = { .id = e->name, .idlen = e->idlen };
	int rc = io_scan_dir(h->mb->cur_fd, match_id, &s);
	if (rc < 0)
		return rc;
	if (!s.found)
		return -ENOENT;
	free(e->name);
	e->name = s.found;
	e->in_new = false;
	return 0;
}

/* Apply op to message id of the locked hold h: to its file in the
 * snapshot (followed to cur/ if it was moved away, see relocate) or to
 * new/ID. *ent is its snapshot entry (NULL if none), *dirfd the directory
 * op was last applied in. */
static int on_message(struct hold *h, const char *id,
		      int (*op)(int dirfd, const char *name, void *arg), void *arg,
		      struct snap_ent **ent, int *dirfd)
{
	const char *name = NULL;
	int rc = find_file(h, id, dirfd, &name, ent);
	if (rc == 0)
		rc = op(*dirfd, name, arg);
	if (rc == -ENOENT && *ent && (rc = relocate(h, *ent)) == 0) {
		*dirfd = h->mb->cur_fd;
		rc = op(*dirfd, (*ent)->name, arg);
	}
	return rc;
}

struct read_out {
	char **buf;
	size_t *len;
};

static int read_op(int dirfd, const char *name, void *arg)
{
	struct read_out *out = arg;
	return io_read_file_at(dirfd, name, out->buf, out->len);
}

static int unlink_op(int dirfd, const char *name, void *arg)
{
	(void)arg;
	return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
}

int mail_read(struct mail_store *store, const char *user, const char *id,
	      char **buf, size_t *len)
{
	if (!buf || !len)
		return -EINVAL;
	struct hold *h = NULL;
	int rc = locked_hold(store, user, id, &h);
	if (rc < 0)
		return rc;
	struct read_out out = { buf, len };
	struct snap_ent *e;
	int dirfd;
	rc = on_message(h, id, read_op, &out, &e, &dirfd);
	unlock_hold(store, h);
	return rc;
}

int mail_delete(struct mail_store *store, const char *user, const char *id)
{
	struct hold *h = NULL;
	int rc = locked_hold(store, user, id, &h);
	if (rc < 0)
		return rc;
	struct snap_ent *e;
	int dirfd;
	rc = on_message(h, id, unlink_op, NULL, &e, &dirfd);
	if ((rc == 0 || rc == -ENOENT) && e)
		e->deleted = true;
	if (rc == 0 && dirfd == h->mb->new_fd)
		h->dirty_new = true;
	else if (rc == 0)
		h->dirty_cur = true;
	unlock_hold(store, h);
	return rc;
}

/* Under the user's lock, so that no session can be showing the message
 * while it goes: a locked mailbox is -EBUSY and the copy stays. */
int mail_withdraw(struct mail_store *store, const char *user, const char *id)
{
	if (!store || !mail_name_valid(user) || !id || !name_id_valid(id))
		return -EINVAL;
	struct hold *h = NULL;
	int rc = lock_take(store, user, &h);
	if (rc < 0)
		return rc;
	rc = unlinkat(h->mb->new_fd, id, 0) < 0 ? -errno : 0;
	if (rc == 0) {
		pthread_mutex_lock(&h->mu);
		h->dirty_new = true;   /* lock_release fsyncs new/ */
		pthread_mutex_unlock(&h->mu);
	}
	int rc2 = lock_release(store, h);
	return rc < 0 ? rc : rc2;
}

int mail_unlock(struct mail_store *store, const char *user)
{
	if (!store || !mail_name_valid(user))
		return -EINVAL;
	struct hold *h = lock_get(store, user);
	if (!h)
		return -ENOLCK;
	return lock_release(store, h);
}

void mail_list_free(struct mail_list *list)
{
	if (!list)
		return;
	for (size_t i = 0; list->msgs && i < list->count; i++) {
		free(list->msgs[i].id);
		free(list->msgs[i].data);
	}
	free(list->msgs);
	list->msgs = NULL;
	list->count = 0;
}
