/*
 * mail.h - the mail store: Maildir mailboxes under one root directory,
 * with the Mailboat API (deliver, pickup, delete, unlock, recover) and a
 * users file with crypt(3) password hashes.
 *
 * Contract
 *   - Layout: ROOT/USER/{tmp,new,cur} (standard Maildir) plus the lock file
 *     ROOT/USER/.catamaran.lock. ROOT must exist; a mailbox is created on
 *     first use (mkdir -p semantics, parents fsync'ed).
 *   - mail_deliver returns 0 only when the message is durable (power loss
 *     included): the file was written and fsync'ed in tmp/, link()ed into
 *     new/, new/ was fsync'ed. No reader ever sees a partial message in new/
 *     or cur/. A message id is the Maildir base name (the part before
 *     ":2,"), stable across sessions and processes: use it as the UIDL.
 *   - mail_pickup / mail_list take the user's lock and return a snapshot
 *     of new/ and cur/ sorted by id (oldest first for our own names).
 *     mail_read / mail_delete work on the locked mailbox. mail_unlock (or
 *     mail_close) moves the snapshot's messages still in new/ to cur/
 *     (adding ":2,", as Maildir readers do); deletions and moves are
 *     durable when it returns.
 *   - mail_recover removes leftovers of interrupted deliveries in every
 *     user's tmp/: files not touched for 36 hours, or files named by this
 *     host's Maildir name scheme whose process no longer exists. A delivery
 *     another live process is still writing is never removed.
 *   - Every function taking a user name validates it with mail_name_valid
 *     (-EINVAL otherwise): no path traversal, no other user's directory.
 *
 * Locking
 *   - One lock per user, held from a successful mail_pickup / mail_list
 *     until mail_unlock (or mail_close). It excludes other threads (of this
 *     or another store) and other processes: an fcntl OFD write lock on
 *     ROOT/USER/.catamaran.lock plus a table in the store. It never blocks:
 *     a second pickup/list of a locked user gets -EBUSY, also from the
 *     holder itself.
 *   - The lock belongs to the store, not to a thread: the caller that got it
 *     (e.g. one POP3 session) is the one that calls mail_read, mail_delete
 *     and mail_unlock for that user; those return -ENOLCK when the store
 *     does not hold the user's lock.
 *   - mail_deliver and mail_recover take no lock. All functions are
 *     thread-safe. A forked child must not use its parent's store (open a
 *     new one); lock files are opened O_CLOEXEC.
 *
 * Errors
 *   0 (or a count where said) on success, a negative errno otherwise.
 *   Never exit(), nothing printed. EINTR is retried, short reads and writes
 *   are completed.
 */
#ifndef CAT_MAIL_MAIL_H
#define CAT_MAIL_MAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAIL_NAME_MAX 64   /* longest user name */
#define MAIL_ID_MAX 256    /* size of a buffer that holds any id, with NUL */

struct mail_store;

struct mail_msg {
	char *id;          /* Maildir base name: the UIDL */
	uint64_t size;     /* bytes of the file as stored */
	char *data;        /* contents (NUL-terminated); NULL from mail_list */
};

struct mail_list {
	struct mail_msg *msgs;  /* sorted by id */
	size_t count;
};

/* Open the store rooted at the existing directory root. */
int mail_open(const char *root, struct mail_store **out);

/* Release every lock still held (deletions made durable), free the store.
 * Returns the first error of making deletions durable, 0 otherwise. */
int mail_close(struct mail_store *store);

/* Deliver len bytes to user's new/. id_out (MAIL_ID_MAX bytes, may be NULL)
 * receives the message id. 0 only when durable. */
int mail_deliver(struct mail_store *store, const char *user,
		 const void *msg, size_t len, char *id_out);

/* Take back a delivery this caller made and nobody has seen yet (a
 * delivery to several users that failed for one, so that the sender's
 * retry brings no duplicates): under user's lock, remove new/ID and fsync
 * new/. -EBUSY when the mailbox is locked (a session may be showing it)
 * and -ENOENT when a session moved it to cur/: then it stays. */
int mail_withdraw(struct mail_store *store, const char *user, const char *id);

/* Take user's lock (-EBUSY if held anywhere) and return every message with
 * its contents. On error the lock is not held. */
int mail_pickup(struct mail_store *store, const char *user,
		struct mail_list *out);

/* As mail_pickup, but ids and sizes only (data is NULL): for POP3. */
int mail_list(struct mail_store *store, const char *user,
	      struct mail_list *out);

/* Read one message of the locked mailbox into a malloc'ed, NUL-terminated
 * buffer. -ENOLCK without the lock, -ENOENT if no such message. */
int mail_read(struct mail_store *store, const char *user, const char *id,
	      char **buf, size_t *len);

/* Delete one message of the locked mailbox. -ENOLCK without the lock,
 * -ENOENT if no such message (or already deleted). */
int mail_delete(struct mail_store *store, const char *user, const char *id);

/* Move the messages of the snapshot still in new/ to cur/, make that and
 * the deletions durable (fsync of the directories they changed) and
 * release user's lock.
 * -ENOLCK if not held. The lock is released even when a step fails. */
int mail_unlock(struct mail_store *store, const char *user);

/* Remove leftovers of interrupted deliveries (see the contract). Returns
 * the number of files removed. */
int mail_recover(struct mail_store *store);

void mail_list_free(struct mail_list *list);

/* A user name: 1..MAIL_NAME_MAX of [A-Za-z0-9._-], not starting with '.'. */
bool mail_name_valid(const char *name);

/* ---- users file: lines "name:crypt-hash" ('#' comments, blank lines) ---- */

struct mail_users;

/* Load a users file. -EINVAL on a malformed line or a duplicate name. */
int mail_users_load(const char *path, struct mail_users **out);
void mail_users_free(struct mail_users *users);

bool mail_user_exists(const struct mail_users *users, const char *name);

/* 0 if name exists and password matches its hash, -EACCES otherwise (an
 * unknown user costs the same time as a wrong password), -ENOMEM. */
int mail_user_check(const struct mail_users *users, const char *name,
		    const char *password);

/* Add name, or change its password, with a yescrypt hash (SHA-512 crypt if
 * yescrypt is unavailable). The file is replaced atomically (temp file,
 * fsync, rename, fsync of the directory), mode 0600; concurrent callers
 * are serialized by an OFD lock on PATH.lock. */
int mail_user_add(const char *path, const char *name, const char *password);

#endif
