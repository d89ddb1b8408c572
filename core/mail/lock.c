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
 * The lock file stays open in the store's mailbox cache (mailbox.c), so a
 * pickup is one fcntl to lock and one to unlock. A lock file removed while
 * open would let another opener lock a new file of the same name: after
 * locking, a file with no name left is closed and the path opened again.
 *
 * A hold is reference-counted: lock_get() returns it with a reference,
 * lock_put() drops it, and it is freed when the last reference goes after
 * lock_release() took it out of the table.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mail/mail_internal.h"

static unsigned bucket_of(const char *user)
{
	return name_hash(user) % MAIL_HOLD_BUCKETS;
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

/* A new entry in the table, not yet locked: -EBUSY if present. */
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

/* Mark h closing (no new references): true for the one caller that did
 * it first. h stays in the table, so no new hold of its user can start
 * before hold_unlink: its lock can be released in between without
 * another thread of this store locking the same open file description
 * (which would succeed, being the same owner) and losing its lock to
 * our F_UNLCK. */
static bool hold_claim(struct mail_store *store, struct hold *h)
{
	pthread_mutex_lock(&store->mu);
	bool first = !h->closing;
	h->closing = true;
	pthread_mutex_unlock(&store->mu);
	return first;
}

/* Take a claimed h out of the table and drop the table's reference. The
 * caller still holds a reference. */
static void hold_unlink(struct mail_store *store, struct hold *h)
{
	pthread_mutex_lock(&store->mu);
	struct hold **pp = find_slot(store, h->user);
	if (*pp == h) {
		*pp = h->next;
		h->refs--;
	}
	pthread_mutex_unlock(&store->mu);
}

static void hold_remove(struct mail_store *store, struct hold *h)
{
	if (hold_claim(store, h))
		hold_unlink(store, h);
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

static int open_lock_file(struct mail_store *store, const char *user)
{
	char path[MAIL_PATH_MAX];
	int rc = io_path(path, user, MAIL_LOCK_FILE, NULL);
	return rc < 0 ? rc : io_open_at(store->root_fd, path, O_RDWR | O_CREAT, 0600);
}

/* Lock mb's lock file (opened on first use): 0, -EBUSY, or -errno. */
static int lock_mailbox(struct mail_store *store, struct mailbox *mb)
{
	for (int tries = 0; tries < 2; tries++) {
		if (mb->lock_fd < 0) {
			int fd = open_lock_file(store, mb->user);
			if (fd < 0)
				return fd;
			mb->lock_fd = fd;
		}
		int rc = ofd_lock(mb->lock_fd, F_WRLCK);
		if (rc < 0)
			return rc;
		struct stat st;
		if (fstat(mb->lock_fd, &st) < 0) {
			rc = -errno;
			ofd_lock(mb->lock_fd, F_UNLCK);
			return rc;
		}
		if (st.st_nlink > 0)
			return 0;
		ofd_lock(mb->lock_fd, F_UNLCK);   /* removed: lock the new one */
		io_close(mb->lock_fd);
		mb->lock_fd = -1;
	}
	return -EBUSY;
}

/* mb's lock_fd is only touched by the holder of user's hold (the hold
 * table makes it one thread at a time in this store). */
int lock_take(struct mail_store *store, const char *user, struct hold **out)
{
	struct hold *h = NULL;
	int rc = hold_insert(store, user, &h);
	if (rc < 0)
		return rc;
	struct mailbox *mb = NULL;
	rc = mailbox_get(store, user, &mb);
	if (rc == 0)
		rc = lock_mailbox(store, mb);
	if (rc == -ENOENT && mb) {   /* the mailbox was removed: make it again */
		struct mailbox *fresh;
		rc = mailbox_reopen(store, mb, &fresh);
		mailbox_put(store, mb);
		mb = rc == 0 ? fresh : NULL;
		if (rc == 0)
			rc = lock_mailbox(store, mb);
	}
	if (rc < 0) {
		if (mb)
			mailbox_put(store, mb);
		hold_remove(store, h);
		lock_put(store, h);
		return rc;
	}
	pthread_mutex_lock(&store->mu);
	h->mb = mb;
	h->locked = true;
	pthread_mutex_unlock(&store->mu);
	*out = h;
	return 0;
}

struct hold *lock_get(struct mail_store *store, const char *user)
{
	pthread_mutex_lock(&store->mu);
	struct hold *h = *find_slot(store, user);
	if (h && (!h->locked || h->closing))
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
	if (!last)
		return;
	if (h->mb)
		mailbox_put(store, h->mb);
	hold_free(h);
}

/* The end of a session: kept messages of new/ go to cur/, and each
 * directory something was deleted from or moved into or out of is
 * fsync'ed. */
static int finish_session(struct hold *h)
{
	pthread_mutex_lock(&h->mu);
	int rc = snap_move_kept(h);
	bool sync_cur = h->dirty_cur, sync_new = h->dirty_new;
	h->dirty_cur = h->dirty_new = false;
	pthread_mutex_unlock(&h->mu);
	int rc2 = sync_cur ? io_fsync(h->mb->cur_fd) : 0;
	if (rc2 == 0 && sync_new)
		rc2 = io_fsync(h->mb->new_fd);
	return rc < 0 ? rc : rc2;
}

/* Called with one reference to h held by the caller (dropped here). An
 * explicit F_UNLCK releases the lock even if a forked child still shares
 * the open file description; the lock file stays open in the cache. The
 * mailbox is let go with the hold's last reference (lock_put). */
int lock_release(struct mail_store *store, struct hold *h)
{
	int rc = finish_session(h);
	if (hold_claim(store, h)) {
		int rc2 = ofd_lock(h->mb->lock_fd, F_UNLCK);
		if (rc == 0)
			rc = rc2;
		hold_unlink(store, h);
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
		if (h->locked) {
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
