/*
 * mailbox.c - opening the store, creating a user's mailbox, and the
 * store's cache of open mailboxes.
 *
 * The cache keeps, per recently used user, the directories tmp/, new/ and
 * cur/ open (and the lock file once a pickup opened it), so that a
 * delivery is openat/linkat/unlinkat relative to them: no walk of
 * ROOT/USER/SUB per call, no open and close of new/ for each fsync. It is
 * a hash table with an LRU list under one mutex, bounded to a sixteenth of
 * the process's open-file limit (4 descriptors per entry, so a quarter of
 * it at most), between 16 and 4096 entries.
 *
 * An open directory keeps working after a rename of the mailbox, so an
 * entry is checked against ROOT/USER (device and inode) when it is used
 * and was last checked more than a second ago: a mailbox moved away or
 * replaced is noticed within a second. A removed directory is noticed at
 * once: creating an entry in it fails with ENOENT, and the callers then
 * reopen (mailbox_reopen), which makes the mailbox again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/mail/mail_internal.h"

#define RECHECK_NS 1000000000ull   /* ROOT/USER is looked at again after 1 s */
#define MAILBOXES_MIN 16
#define MAILBOXES_MAX 4096

/* ---- creating a mailbox ---- */

/* mkdir that accepts an existing directory. */
static int make_dir(int dirfd, const char *path)
{
	if (mkdirat(dirfd, path, 0700) == 0 || errno == EEXIST)
		return 0;
	return -errno;
}

/* ROOT/USER/{tmp,new,cur}, each new entry made durable by an fsync of its
 * parent. Called only when something was missing, so the fsyncs are also
 * done for directories another thread just created (EEXIST): we return
 * only once the whole mailbox is durable. */
int mailbox_create(struct mail_store *store, const char *user)
{
	static const char *const subdirs[] = { "tmp", "new", "cur" };
	int rc = make_dir(store->root_fd, user);
	if (rc == 0)
		rc = io_fsync(store->root_fd);
	for (size_t i = 0; rc == 0 && i < 3; i++) {
		char path[MAIL_PATH_MAX];
		rc = io_path(path, user, subdirs[i], NULL);
		if (rc == 0)
			rc = make_dir(store->root_fd, path);
	}
	if (rc == 0)
		rc = io_fsync_dir_at(store->root_fd, user);
	return rc;
}

/* ---- one mailbox ---- */

static uint64_t coarse_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}


/* Open USER/{tmp,new,cur} in user_fd; records USER's identity. */
static int open_subdirs(int user_fd, struct mailbox *mb)
{
	struct stat st;
	if (fstat(user_fd, &st) < 0)
		return -errno;
	mb->dev = st.st_dev;
	mb->ino = st.st_ino;
	int *fds[] = { &mb->tmp_fd, &mb->new_fd, &mb->cur_fd };
	static const char *const names[] = { "tmp", "new", "cur" };
	for (size_t i = 0; i < 3; i++) {
		int fd = io_open_at(user_fd, names[i], O_RDONLY | O_DIRECTORY, 0);
		if (fd < 0)
			return fd;
		*fds[i] = fd;
	}
	return 0;
}

static void close_subdirs(struct mailbox *mb)
{
	int *fds[] = { &mb->tmp_fd, &mb->new_fd, &mb->cur_fd };
	for (size_t i = 0; i < 3; i++) {
		if (*fds[i] >= 0)
			io_close(*fds[i]);
		*fds[i] = -1;
	}
}

static void mailbox_free(struct mailbox *mb)
{
	close_subdirs(mb);
	if (mb->lock_fd >= 0)
		io_close(mb->lock_fd);
	free(mb);
}

static int open_once(struct mail_store *store, struct mailbox *mb)
{
	int user_fd = io_open_at(store->root_fd, mb->user, O_RDONLY | O_DIRECTORY, 0);
	if (user_fd < 0)
		return user_fd;
	int rc = open_subdirs(user_fd, mb);
	io_close(user_fd);
	return rc;
}

/* A new, uncached entry for user with its directories open; a missing
 * mailbox (or part of one) is made first. */
static int mailbox_open(struct mail_store *store, const char *user, struct mailbox **out)
{
	struct mailbox *mb = calloc(1, sizeof *mb);
	if (!mb)
		return -ENOMEM;
	strcpy(mb->user, user);
	mb->tmp_fd = mb->new_fd = mb->cur_fd = mb->lock_fd = -1;
	mb->refs = 1;
	mb->checked_ns = coarse_now_ns();
	int rc = open_once(store, mb);
	if (rc == -ENOENT) {
		close_subdirs(mb);
		rc = mailbox_create(store, user);
		if (rc == 0)
			rc = open_once(store, mb);
	}
	if (rc < 0) {
		mailbox_free(mb);
		return rc;
	}
	*out = mb;
	return 0;
}

/* True if ROOT/USER is still the directory mb was opened from. */
static bool still_there(struct mail_store *store, const struct mailbox *mb)
{
	struct stat st;
	return fstatat(store->root_fd, mb->user, &st, 0) == 0 &&
	       st.st_dev == mb->dev && st.st_ino == mb->ino;
}

/* ---- the cache (all with store->mb_mu held) ---- */

static struct mailbox **cache_slot(struct mail_store *store, const char *user)
{
	struct mailbox **pp = &store->mailboxes[name_hash(user) % MAIL_MAILBOX_BUCKETS];
	while (*pp && strcmp((*pp)->user, user) != 0)
		pp = &(*pp)->next;
	return pp;
}

static void lru_unlink(struct mail_store *store, struct mailbox *mb)
{
	if (mb->lru_prev)
		mb->lru_prev->lru_next = mb->lru_next;
	else
		store->lru_head = mb->lru_next;
	if (mb->lru_next)
		mb->lru_next->lru_prev = mb->lru_prev;
	else
		store->lru_tail = mb->lru_prev;
	mb->lru_prev = mb->lru_next = NULL;
}

static void lru_push(struct mail_store *store, struct mailbox *mb)
{
	mb->lru_prev = NULL;
	mb->lru_next = store->lru_head;
	if (store->lru_head)
		store->lru_head->lru_prev = mb;
	else
		store->lru_tail = mb;
	store->lru_head = mb;
}

/* Take mb out of the cache and drop the cache's reference: true when that
 * was the last one (the caller frees it, after unlocking). */
static bool uncache(struct mail_store *store, struct mailbox *mb)
{
	struct mailbox **pp = cache_slot(store, mb->user);
	if (*pp == mb)
		*pp = mb->next;
	lru_unlink(store, mb);
	mb->cached = false;
	store->nmailboxes--;
	return --mb->refs == 0;
}

/* Insert mb (one reference: the caller's) and evict the least recently
 * used entries beyond the limit; those to free are chained on *victims. */
static void cache_insert(struct mail_store *store, struct mailbox *mb,
			 struct mailbox **victims)
{
	while (store->nmailboxes >= store->max_mailboxes && store->lru_tail) {
		struct mailbox *old = store->lru_tail;
		if (uncache(store, old)) {
			old->next = *victims;
			*victims = old;
		}
	}
	struct mailbox **pp = cache_slot(store, mb->user);
	mb->next = *pp;
	*pp = mb;
	lru_push(store, mb);
	mb->cached = true;
	mb->refs++;
	store->nmailboxes++;
}

static void free_chain(struct mailbox *mb)
{
	while (mb) {
		struct mailbox *next = mb->next;
		mailbox_free(mb);
		mb = next;
	}
}

/* The cached entry of user with a new reference, or NULL. *recheck: it
 * is due for a look at ROOT/USER. */
static struct mailbox *cache_find(struct mail_store *store, const char *user,
				  bool *recheck)
{
	struct mailbox *mb = *cache_slot(store, user);
	if (!mb)
		return NULL;
	mb->refs++;
	lru_unlink(store, mb);
	lru_push(store, mb);
	uint64_t now = coarse_now_ns();
	*recheck = now - mb->checked_ns > RECHECK_NS;
	if (*recheck)
		mb->checked_ns = now;   /* one thread rechecks */
	return mb;
}

/* ---- the API of mail_internal.h ---- */

/* Open user's mailbox and cache it, unless another thread did first. */
static int open_and_cache(struct mail_store *store, const char *user, struct mailbox **out)
{
	struct mailbox *mb;
	int rc = mailbox_open(store, user, &mb);
	if (rc < 0)
		return rc;
	struct mailbox *victims = NULL;
	bool recheck;
	pthread_mutex_lock(&store->mb_mu);
	struct mailbox *other = cache_find(store, user, &recheck);
	if (!other)
		cache_insert(store, mb, &victims);
	pthread_mutex_unlock(&store->mb_mu);
	free_chain(victims);
	if (other)
		mailbox_free(mb);
	*out = other ? other : mb;
	return 0;
}

int mailbox_get(struct mail_store *store, const char *user, struct mailbox **out)
{
	bool recheck = false;
	pthread_mutex_lock(&store->mb_mu);
	struct mailbox *mb = cache_find(store, user, &recheck);
	pthread_mutex_unlock(&store->mb_mu);
	if (!mb)
		return open_and_cache(store, user, out);
	if (recheck && !still_there(store, mb)) {
		int rc = mailbox_reopen(store, mb, out);
		mailbox_put(store, mb);
		return rc;
	}
	*out = mb;
	return 0;
}

void mailbox_put(struct mail_store *store, struct mailbox *mb)
{
	pthread_mutex_lock(&store->mb_mu);
	bool last = --mb->refs == 0;
	pthread_mutex_unlock(&store->mb_mu);
	if (last)
		mailbox_free(mb);
}

int mailbox_reopen(struct mail_store *store, struct mailbox *mb, struct mailbox **out)
{
	pthread_mutex_lock(&store->mb_mu);
	if (mb->cached)
		uncache(store, mb);   /* never the last reference: the caller has one */
	pthread_mutex_unlock(&store->mb_mu);
	return mailbox_get(store, mb->user, out);
}

void mailbox_close_all(struct mail_store *store)
{
	struct mailbox *victims = NULL;
	pthread_mutex_lock(&store->mb_mu);
	while (store->lru_head) {
		struct mailbox *mb = store->lru_head;
		if (uncache(store, mb)) {
			mb->next = victims;
			victims = mb;
		}
	}
	pthread_mutex_unlock(&store->mb_mu);
	free_chain(victims);
}

/* ---- the store ---- */

static size_t max_mailboxes(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return MAILBOXES_MAX;
	size_t n = (size_t)(rl.rlim_cur / 16);
	return n < MAILBOXES_MIN ? MAILBOXES_MIN : n > MAILBOXES_MAX ? MAILBOXES_MAX : n;
}

static int store_init(struct mail_store *s, const char *root)
{
	s->root_fd = io_open_at(AT_FDCWD, root, O_RDONLY | O_DIRECTORY, 0);
	if (s->root_fd < 0)
		return s->root_fd;
	int rc = pthread_mutex_init(&s->mu, NULL);
	if (rc != 0) {
		io_close(s->root_fd);
		return -rc;
	}
	rc = pthread_mutex_init(&s->mb_mu, NULL);
	if (rc != 0) {
		pthread_mutex_destroy(&s->mu);
		io_close(s->root_fd);
		return -rc;
	}
	s->pid = getpid();
	s->max_mailboxes = max_mailboxes();
	name_host(s->host);
	return 0;
}

int mail_open(const char *root, struct mail_store **out)
{
	if (!root || !out)
		return -EINVAL;
	struct mail_store *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	int rc = store_init(s, root);
	if (rc < 0) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

int mail_close(struct mail_store *store)
{
	if (!store)
		return 0;
	int rc = lock_release_all(store);
	mailbox_close_all(store);
	int rc2 = io_close(store->root_fd);
	pthread_mutex_destroy(&store->mb_mu);
	pthread_mutex_destroy(&store->mu);
	free(store);
	return rc < 0 ? rc : rc2;
}
