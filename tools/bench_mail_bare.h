/*
 * bench_mail_bare.h - the Mailboat workload's file operations written
 * bare, for `catamaran bench mail --bare`: the floor under any store that
 * keeps one file per message, as Mailboat and Maildir do.
 *
 * A delivery is what Mailboat's Deliver does: create a spool file (here
 * USER/tmp/NAME), write, close, link() it into USER/new/, unlink the spool
 * name. A pickup session is Mailboat's Pickup + Delete + Unlock: under an
 * in-process per-user mutex (Mailboat's lock), list new/, open, read and
 * close each file, unlink each. Nothing else: no fsync (not durable), no
 * lock other processes respect, no move to cur/, no checks beyond the
 * system calls' results. It uses the library's layout, so the library can
 * count and empty what it leaves.
 *
 * Thread-safe; each user's session is serialized by its mutex. Errors are
 * negative errno values.
 */
#ifndef CAT_TOOLS_BENCH_MAIL_BARE_H
#define CAT_TOOLS_BENCH_MAIL_BARE_H

#include <stddef.h>
#include <stdint.h>

struct bare_mail;

/* Open DIR/USER/tmp and DIR/USER/new of each of the users (they must
 * exist: the library made them). */
int bare_mail_open(const char *dir, const char *const *users, unsigned nusers,
		   struct bare_mail **out);
void bare_mail_close(struct bare_mail *bm);

/* Deliver msg to user number u; name_seq makes the file name unique (the
 * caller's thread number and counter). */
int bare_mail_deliver(struct bare_mail *bm, unsigned u, unsigned thread,
		      uint64_t name_seq, const void *msg, size_t len);

/* Read and delete every message of user u; *deleted counts them. */
int bare_mail_pickup_delete(struct bare_mail *bm, unsigned u, uint64_t *deleted);

#endif
