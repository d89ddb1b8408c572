/*
 * mail_internal.h - shared by the files of core/mail: the store, its cache
 * of open mailboxes, the lock table, Maildir names and the syscall helpers
 * (EINTR retried, short I/O completed, negative errno returned).
 */
#ifndef CAT_MAIL_INTERNAL_H
#define CAT_MAIL_INTERNAL_H

#include <pthread.h>
#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/mail/mail.h"

#define MAIL_HOST_MAX 32   /* keeps our ids within POP3 UIDL's 70 chars */
#define MAIL_PATH_MAX 512
#define MAIL_HOLD_BUCKETS 256
#define MAIL_MAILBOX_BUCKETS 1024
#define MAIL_LOCK_FILE ".catamaran.lock"

/* One entry of the snapshot taken by pickup/list: a file in cur/. */
struct snap_ent {
	char *name;        /* file name in new/ or cur/ */
	size_t idlen;      /* the id is name[0..idlen) */
	uint64_t size;
	bool in_new;       /* still in new/: moved to cur/ at unlock if kept */
	bool deleted;
};

/* A user's open mailbox, cached by the store: its directories stay open
 * so that a delivery or a pickup names files relative to them instead of
 * walking ROOT/USER/SUB/NAME each time. Reference-counted; an entry taken
 * out of the cache (evicted, or found stale) is closed by its last put. */
struct mailbox {
	struct mailbox *next;              /* hash chain */
	struct mailbox *lru_prev, *lru_next;   /* most recently used first */
	char user[MAIL_NAME_MAX + 1];
	int tmp_fd, new_fd, cur_fd;
	int lock_fd;       /* USER/.catamaran.lock, opened by the first pickup */
	dev_t dev;         /* identity of ROOT/USER when opened */
	ino_t ino;
	uint64_t checked_ns;   /* when ROOT/USER was last seen to be this one */
	int refs;          /* the cache's (while cached) + each user's */
	bool cached;
};

/* A user's lock held by this store (or being acquired / released). */
struct hold {
	struct hold *next;
	char user[MAIL_NAME_MAX + 1];
	struct mailbox *mb;   /* one reference; its lock_fd is locked */
	bool locked;       /* false while acquiring */
	int refs;          /* users of this entry; freed at 0 once closing */
	bool closing;      /* unlocked: no new references */
	bool dirty_new, dirty_cur;   /* changed since the lock was taken */
	pthread_mutex_t mu;   /* protects snap and the dirty flags */
	struct snap_ent *snap;
	size_t nsnap;
};

struct mail_store {
	int root_fd;
	pid_t pid;                      /* for our Maildir names */
	char host[MAIL_HOST_MAX + 1];   /* encoded for names */
	pthread_mutex_t mu;             /* protects the hold table */
	struct hold *holds[MAIL_HOLD_BUCKETS];
	pthread_mutex_t mb_mu;          /* protects the mailbox cache */
	struct mailbox *mailboxes[MAIL_MAILBOX_BUCKETS];
	struct mailbox *lru_head, *lru_tail;
	size_t nmailboxes, max_mailboxes;
};

/* ---- io.c ---- */
int io_open_at(int dirfd, const char *path, int flags, mode_t mode);
int io_write_all(int fd, const void *buf, size_t len);
int io_read_file_at(int dirfd, const char *path, char **buf, size_t *len);
int io_fsync(int fd);
int io_close(int fd);
/* The next entry of d in *out (NULL at the end): 0, or -errno on a read
 * error (readdir's "NULL and errno" rule in one place). */
int io_next_entry(DIR *d, struct dirent **out);
int io_fsync_dir_at(int dirfd, const char *path);
int io_path(char *out, const char *a, const char *b, const char *c);
/* Call fn(ctx, name, d_type) for every entry of the open directory dirfd
 * (from its start; "." and ".." included), with getdents64 on dirfd itself:
 * the caller must be the only reader of dirfd's position. Stops at the
 * first negative return of fn and returns it; 0 or -errno. */
int io_scan_dir(int dirfd, int (*fn)(void *ctx, const char *name, unsigned char type),
		void *ctx);

/* ---- names.c ---- */
unsigned name_hash(const char *user);
void name_host(char *out);
int name_unique(const struct mail_store *store, char *out, size_t size);
bool name_id_valid(const char *id);
size_t name_id_len(const char *name);
bool name_is_ours(const struct mail_store *store, const char *name,
		  pid_t *pid);

/* ---- mailbox.c ---- */
int mailbox_create(struct mail_store *store, const char *user);
/* The open mailbox of user (made if missing), with a reference. */
int mailbox_get(struct mail_store *store, const char *user, struct mailbox **out);
void mailbox_put(struct mail_store *store, struct mailbox *mb);
/* mb was found broken (a directory of it removed): drop it from the cache
 * and return a freshly opened one in *out (mb's reference is kept). */
int mailbox_reopen(struct mail_store *store, struct mailbox *mb, struct mailbox **out);
void mailbox_close_all(struct mail_store *store);

/* ---- lock.c ---- */
int lock_take(struct mail_store *store, const char *user, struct hold **out);
struct hold *lock_get(struct mail_store *store, const char *user);
void lock_put(struct mail_store *store, struct hold *h);
int lock_release(struct mail_store *store, struct hold *h);
int lock_release_all(struct mail_store *store);

/* ---- pickup.c ---- */
/* At unlock, with h->mu held: move the snapshot's messages still in new/
 * to cur/NAME:2, (marking both directories dirty). 0 or the first -errno. */
int snap_move_kept(struct hold *h);

#endif
