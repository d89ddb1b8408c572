/*
 * pickup.c - the locked side of a mailbox: pickup, list, read, delete,
 * unlock.
 *
 * Taking the lock snapshots the mailbox: every file of new/ is renamed to
 * cur/NAME:2, (as Maildir readers do), then cur/ is listed with sizes and
 * sorted by id. read and delete look ids up in that snapshot; an id not in
 * it (delivered after the snapshot) is looked for in new/.
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

struct names {
	char **v;
	size_t n, cap;
};

static void names_free(struct names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
}

static int names_add(struct names *ns, const char *name)
{
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? ns->cap * 2 : 16;
		char **v = realloc(ns->v, cap * sizeof *v);
		if (!v)
			return -ENOMEM;
		ns->v = v;
		ns->cap = cap;
	}
	ns->v[ns->n] = strdup(name);
	if (!ns->v[ns->n])
		return -ENOMEM;
	ns->n++;
	return 0;
}

static int read_names(DIR *d, struct names *ns)
{
	for (;;) {
		struct dirent *e;
		int rc = io_next_entry(d, &e);
		if (rc || !e)
			return rc;
		if (e->d_name[0] == '.')
			continue;   /* ".", "..", and Maildir hidden files */
		if ((rc = names_add(ns, e->d_name)) < 0)
			return rc;
	}
}

/* The visible file names of USER/SUB, read before anything is renamed. */
static int list_dir(struct mail_store *store, const char *user,
		    const char *sub, struct names *ns)
{
	char path[MAIL_PATH_MAX];
	int rc = io_path(path, user, sub, NULL);
	if (rc < 0)
		return rc;
	int fd = io_open_at(store->root_fd, path, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return fd;
	DIR *d = fdopendir(fd);
	if (!d) {
		rc = -errno;
		io_close(fd);
		return rc;
	}
	rc = read_names(d, ns);
	if (closedir(d) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* new/NAME -> cur/NAME:2, (a name that has an info part keeps it). */
static int move_one(struct mail_store *store, const char *user,
		    const char *name)
{
	char from[MAIL_PATH_MAX], to[MAIL_PATH_MAX], target[MAIL_ID_MAX + 4];
	int n = snprintf(target, sizeof target, "%s%s", name,
			 strchr(name, ':') ? "" : ":2,");
	if (n < 0 || (size_t)n >= sizeof target)
		return 0;   /* a foreign name too long to rename: leave it */
	int rc = io_path(from, user, "new", name);
	if (rc == 0)
		rc = io_path(to, user, "cur", target);
	if (rc < 0)
		return rc;
	if (renameat(store->root_fd, from, store->root_fd, to) < 0 &&
	    errno != ENOENT)
		return -errno;
	return 0;
}

static int move_new(struct mail_store *store, const char *user)
{
	struct names ns = { 0 };
	int rc = list_dir(store, user, "new", &ns);
	for (size_t i = 0; rc == 0 && i < ns.n; i++)
		rc = move_one(store, user, ns.v[i]);
	names_free(&ns);
	return rc;
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

/* Stat cur/NAME; 1 if it is a regular file (filled in), 0 to skip it. */
static int snap_fill(struct mail_store *store, const char *user,
		     char *name, struct snap_ent *e)
{
	char path[MAIL_PATH_MAX];
	struct stat st;
	int rc = io_path(path, user, "cur", name);
	if (rc < 0)
		return 0;   /* a foreign over-long name: not ours to list */
	if (fstatat(store->root_fd, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISREG(st.st_mode) || name_id_len(name) >= MAIL_ID_MAX)
		return 0;
	e->name = name;
	e->idlen = name_id_len(name);
	e->size = (uint64_t)st.st_size;
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

/* Takes ownership of the names in ns. */
static int snap_build(struct mail_store *store, struct hold *h,
		      struct names *ns)
{
	h->snap = calloc(ns->n ? ns->n : 1, sizeof *h->snap);
	if (!h->snap)
		return -ENOMEM;
	int rc = 0;
	for (size_t i = 0; i < ns->n; i++) {
		char *name = ns->v[i];
		ns->v[i] = NULL;
		rc = rc < 0 ? rc : snap_fill(store, h->user, name,
					     &h->snap[h->nsnap]);
		if (rc == 1)
			h->nsnap++;
		else
			free(name);
	}
	if (rc < 0)
		return rc;
	snap_sort(h);
	return 0;
}

static int snapshot_once(struct mail_store *store, struct hold *h)
{
	int rc = move_new(store, h->user);
	if (rc < 0)
		return rc;
	struct names ns = { 0 };
	rc = list_dir(store, h->user, "cur", &ns);
	if (rc == 0)
		rc = snap_build(store, h, &ns);
	names_free(&ns);
	return rc;
}

/* A mailbox may be half made (a deliverer between its mkdirs, or one
 * interrupted by a crash): then it is completed and listed again. */
static int snapshot(struct mail_store *store, struct hold *h)
{
	int rc = snapshot_once(store, h);
	if (rc != -ENOENT)
		return rc;
	rc = mailbox_create(store, h->user);
	return rc < 0 ? rc : snapshot_once(store, h);
}

static int read_cur(struct mail_store *store, const char *user,
		    const char *name, char **buf, size_t *len)
{
	char path[MAIL_PATH_MAX];
	int rc = io_path(path, user, "cur", name);
	return rc < 0 ? rc : io_read_file_at(store->root_fd, path, buf, len);
}

/* The public list from the snapshot, with contents if with_data. */
static int fill_list(struct mail_store *store, struct hold *h,
		     bool with_data, struct mail_list *out)
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
		int rc = read_cur(store, h->user, e->name, &m->data, &len);
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
	}
	return 0;
}

static int take(struct mail_store *store, const char *user, bool with_data,
		struct mail_list *out)
{
	if (!store || !out || !mail_name_valid(user))
		return -EINVAL;
	out->msgs = NULL;
	out->count = 0;
	struct hold *h = NULL;
	int rc = lock_take(store, user, &h);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&h->mu);
	rc = snapshot(store, h);
	if (rc == 0)
		rc = fill_list(store, h, with_data, out);
	pthread_mutex_unlock(&h->mu);
	if (rc < 0) {
		mail_list_free(out);
		lock_release(store, h);   /* drops our reference too */
	} else {
		lock_put(store, h);
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

/* The path of message id: from the snapshot, else new/ID. */
static int find_path(struct mail_store *store, struct hold *h,
		     const char *id, char *path, struct snap_ent **ent)
{
	struct snap_ent *e = snap_find(h, id);
	*ent = e;
	if (e)
		return io_path(path, h->user, "cur", e->name);
	int rc = io_path(path, h->user, "new", id);
	if (rc < 0)
		return rc;
	struct stat st;
	if (fstatat(store->root_fd, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
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

int mail_read(struct mail_store *store, const char *user, const char *id,
	      char **buf, size_t *len)
{
	if (!buf || !len)
		return -EINVAL;
	struct hold *h = NULL;
	int rc = locked_hold(store, user, id, &h);
	if (rc < 0)
		return rc;
	char path[MAIL_PATH_MAX];
	struct snap_ent *e;
	rc = find_path(store, h, id, path, &e);
	if (rc == 0)
		rc = io_read_file_at(store->root_fd, path, buf, len);
	unlock_hold(store, h);
	return rc;
}

int mail_delete(struct mail_store *store, const char *user, const char *id)
{
	struct hold *h = NULL;
	int rc = locked_hold(store, user, id, &h);
	if (rc < 0)
		return rc;
	char path[MAIL_PATH_MAX];
	struct snap_ent *e;
	rc = find_path(store, h, id, path, &e);
	if (rc == 0 && unlinkat(store->root_fd, path, 0) < 0)
		rc = -errno;
	if (rc == 0 || rc == -ENOENT) {
		if (e)
			e->deleted = true;
	}
	if (rc == 0)
		h->dirty = true;
	unlock_hold(store, h);
	return rc;
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
