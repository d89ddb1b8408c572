/*
 * lock.c - per-user exclusion across threads and processes.
 *
 * A user's lock is an fcntl OFD write lock (F_OFD_SETLK, never waiting) on
 * ROOT/USER/.catamaran.lock. OFD locks belong to the open file
 * description, so two opens of the file conflict whether they are made by
 * two processes or by two threads of one process (classic POSIX locks
 * would not: they belong to the process). The store's table of holds
 * records the locks it holds, so that delete/read/unlock find them, and
 * makes a second pickup through the same store fail fast with -EBUSY.
 *
 * A hold is reference-counted: lock_get() returns it with a reference,
 * lock_put() drops it, and it is freed when the last reference goes after
 * lock_release() took it out of the table.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/mail/mail_internal.h"

static unsigned bucket_of(const char *user)
{
	unsigned h = 2166136261u;
	for (const char *p = user; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h % MAIL_HOLD_BUCKETS;
}

static struct hold **find_slot(struct mail_store *store, const char *user)
{
	struct hold **pp = &store->holds[bucket_of(user)];
	while (*pp && strcmp((*pp)->user, user) != 0)
		pp = &(*pp)->next;
	return pp;
}

static void snap_clear(struct hold *h)
{
	for (size_t i = 0; i < h->nsnap; i++)
		free(h->snap[i].name);
	free(h->snap);
	h->snap = NULL;
	h->nsnap = 0;
}

static void hold_free(struct hold *h)
{
	snap_clear(h);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

/* A new entry in the table, not yet locked (fd -1): -EBUSY if present. */
static int hold_insert(struct mail_store *store, const char *user,
		       struct hold **out)
{
	struct hold *h = calloc(1, sizeof *h);
	if (!h)
		return -ENOMEM;
	int rc = pthread_mutex_init(&h->mu, NULL);
	if (rc != 0) {
		free(h);
		return -rc;
	}
	strcpy(h->user, user);
	h->fd = -1;
	h->refs = 2;   /* the table's and the taker's */
	pthread_mutex_lock(&store->mu);
	struct hold **pp = find_slot(store, user);
	if (*pp) {
		pthread_mutex_unlock(&store->mu);
		hold_free(h);
		return -EBUSY;
	}
	*pp = h;
	pthread_mutex_unlock(&store->mu);
	*out = h;
	return 0;
}

/* Take h out of the table and drop the table's reference; false if
 * another thread did it first. The caller still holds a reference. */
static bool hold_remove(struct mail_store *store, struct hold *h)
{
	pthread_mutex_lock(&store->mu);
	struct hold **pp = find_slot(store, h->user);
	bool mine = *pp == h;
	if (mine) {
		*pp = h->next;
		h->refs--;
	}
	h->closing = true;
	pthread_mutex_unlock(&store->mu);
	return mine;
}

static int ofd_lock(int fd, short type)
{
	struct flock fl;
	memset(&fl, 0, sizeof fl);
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	for (;;) {
		if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
			return 0;
		if (errno == EAGAIN || errno == EACCES)
			return -EBUSY;
		if (errno != EINTR)
			return -errno;
	}
}

/* Open and lock USER/.catamaran.lock, creating the mailbox if needed. */
static int open_locked(struct mail_store *store, const char *user)
{
	char path[MAIL_PATH_MAX];
	int rc = io_path(path, user, MAIL_LOCK_FILE, NULL);
	if (rc < 0)
		return rc;
	int fd = io_open_at(store->root_fd, path, O_RDWR | O_CREAT, 0600);
	if (fd == -ENOENT) {
		rc = mailbox_create(store, user);
		if (rc < 0)
			return rc;
		fd = io_open_at(store->root_fd, path, O_RDWR | O_CREAT, 0600);
	}
	if (fd < 0)
		return fd;
	rc = ofd_lock(fd, F_WRLCK);
	if (rc < 0) {
		io_close(fd);
		return rc;
	}
	return fd;
}

int lock_take(struct mail_store *store, const char *user, struct hold **out)
{
	struct hold *h = NULL;
	int rc = hold_insert(store, user, &h);
	if (rc < 0)
		return rc;
	int fd = open_locked(store, user);
	if (fd < 0) {
		hold_remove(store, h);
		lock_put(store, h);
		return fd;
	}
	pthread_mutex_lock(&store->mu);
	h->fd = fd;
	pthread_mutex_unlock(&store->mu);
	*out = h;
	return 0;
}

struct hold *lock_get(struct mail_store *store, const char *user)
{
	pthread_mutex_lock(&store->mu);
	struct hold *h = *find_slot(store, user);
	if (h && (h->fd < 0 || h->closing))
		h = NULL;
	if (h)
		h->refs++;
	pthread_mutex_unlock(&store->mu);
	return h;
}

void lock_put(struct mail_store *store, struct hold *h)
{
	pthread_mutex_lock(&store->mu);
	bool last = --h->refs == 0 && h->closing;
	pthread_mutex_unlock(&store->mu);
	if (last)
		hold_free(h);
}

/* fsync cur/ and new/ if something was deleted (or moved to cur/). */
static int sync_deletes(struct mail_store *store, struct hold *h)
{
	pthread_mutex_lock(&h->mu);
	bool dirty = h->dirty;
	h->dirty = false;
	pthread_mutex_unlock(&h->mu);
	if (!dirty)
		return 0;
	char path[MAIL_PATH_MAX];
	int rc = io_path(path, h->user, "cur", NULL);
	if (rc == 0)
		rc = io_fsync_dir_at(store->root_fd, path);
	if (rc == 0)
		rc = io_path(path, h->user, "new", NULL);
	if (rc == 0)
		rc = io_fsync_dir_at(store->root_fd, path);
	return rc;
}

/* Called with one reference to h held by the caller (dropped here). An
 * explicit F_UNLCK releases the lock even if a forked child still shares
 * the open file description. */
int lock_release(struct mail_store *store, struct hold *h)
{
	int rc = sync_deletes(store, h);
	if (hold_remove(store, h)) {
		int rc2 = ofd_lock(h->fd, F_UNLCK);
		int rc3 = io_close(h->fd);
		if (rc == 0)
			rc = rc2 < 0 ? rc2 : rc3;
	} else {
		rc = -ENOLCK;   /* a concurrent unlock won */
	}
	lock_put(store, h);
	return rc;
}

static struct hold *first_hold(struct mail_store *store)
{
	struct hold *h = NULL;
	pthread_mutex_lock(&store->mu);
	for (size_t i = 0; !h && i < MAIL_HOLD_BUCKETS; i++)
		h = store->holds[i];
	if (h)
		h->refs++;
	pthread_mutex_unlock(&store->mu);
	return h;
}

/* At mail_close: no other thread may use the store any more. */
int lock_release_all(struct mail_store *store)
{
	int first = 0;
	struct hold *h = NULL;
	while ((h = first_hold(store)) != NULL) {
		int rc = 0;
		if (h->fd >= 0) {
			rc = lock_release(store, h);
		} else {   /* a pickup still acquiring: misuse, just drop it */
			hold_remove(store, h);
			lock_put(store, h);
		}
		if (first == 0)
			first = rc;
	}
	return first;
}
