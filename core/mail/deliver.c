/*
 * deliver.c - Maildir delivery: write tmp/NAME, fsync it, link() it into
 * new/, fsync new/, unlink tmp/NAME. Returns only when durable.
 *
 * Every step names files relative to the mailbox's directories, kept open
 * by the store's cache (mailbox.c): one delivery is seven system calls
 * (openat, write, fsync, close, linkat, fsync, unlinkat). A directory
 * removed under us makes creating in it fail with ENOENT: the mailbox is
 * then reopened (made again) and the step retried once.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "core/mail/mail_internal.h"

#define NAME_TRIES 100

/* Create tmp/NAME under a fresh unique name (EEXIST: another name;
 * ENOENT: tmp/ is gone, the mailbox is reopened once). Returns the fd; *mb
 * may be replaced by a reopened mailbox (the reference moves with it). */
static int create_tmp(struct mail_store *store, struct mailbox **mb, char *name)
{
	bool reopened = false;
	for (int i = 0; i < NAME_TRIES; i++) {
		int rc = name_unique(store, name, MAIL_ID_MAX);
		if (rc < 0)
			return rc;
		int fd = io_open_at((*mb)->tmp_fd, name, O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (fd >= 0)
			return fd;
		if (fd == -ENOENT && !reopened) {
			struct mailbox *fresh;
			rc = mailbox_reopen(store, *mb, &fresh);
			if (rc < 0)
				return rc;
			mailbox_put(store, *mb);
			*mb = fresh;
			reopened = true;
			continue;
		}
		if (fd != -EEXIST)
			return fd;
	}
	return -EEXIST;
}

static int write_tmp(int fd, const void *msg, size_t len)
{
	int rc = io_write_all(fd, msg, len);
	if (rc == 0)
		rc = io_fsync(fd);
	int rc2 = io_close(fd);
	return rc < 0 ? rc : rc2;
}

/* Link tmp/NAME of mb to new/ID, first under the tmp name, then under
 * fresh names while that one exists. Fills id. ENOENT (new/ is gone; or
 * tmp/NAME, and then the retry fails too): the mailbox is reopened once
 * and *fresh (NULL before) holds the reopened one, with a reference. */
static int link_new(struct mail_store *store, struct mailbox *mb, const char *tmp_name,
		    struct mailbox **fresh, char *id)
{
	strcpy(id, tmp_name);
	for (int i = 0; i < NAME_TRIES; i++) {
		const struct mailbox *target = *fresh ? *fresh : mb;
		if (linkat(mb->tmp_fd, tmp_name, target->new_fd, id, 0) == 0)
			return 0;
		int rc = -errno;
		if (rc == -ENOENT && !*fresh) {
			rc = mailbox_reopen(store, mb, fresh);
			if (rc < 0)
				return rc;
			continue;
		}
		if (rc != -EEXIST && rc != -EINTR)
			return rc;
		if (rc == -EEXIST && (rc = name_unique(store, id, MAIL_ID_MAX)) < 0)
			return rc;
	}
	return -EEXIST;
}

/* fsync new/; if that fails the message is withdrawn (best effort) so
 * that an error means "not delivered" as far as we can make it so. */
static int sync_new(const struct mailbox *mb, const char *id)
{
	int rc = io_fsync(mb->new_fd);
	if (rc < 0)
		(void)unlinkat(mb->new_fd, id, 0);
	return rc;
}

/* The steps after the tmp file was made in mb's tmp/. */
static int link_and_sync(struct mail_store *store, struct mailbox *mb,
			 const char *name, char *id)
{
	struct mailbox *fresh = NULL;
	int rc = link_new(store, mb, name, &fresh, id);
	if (rc == 0)
		rc = sync_new(fresh ? fresh : mb, id);
	if (fresh)
		mailbox_put(store, fresh);
	return rc;
}

int mail_deliver(struct mail_store *store, const char *user,
		 const void *msg, size_t len, char *id_out)
{
	if (!store || !mail_name_valid(user) || (!msg && len > 0))
		return -EINVAL;
	struct mailbox *mb;
	int rc = mailbox_get(store, user, &mb);
	if (rc < 0)
		return rc;
	char name[MAIL_ID_MAX], id[MAIL_ID_MAX];
	int fd = create_tmp(store, &mb, name);
	if (fd < 0) {
		mailbox_put(store, mb);
		return fd;
	}
	rc = write_tmp(fd, msg, len);
	if (rc == 0)
		rc = link_and_sync(store, mb, name, id);
	/* The tmp name is only a spool entry: once new/ holds the message,
	 * failing to remove it does not undo the delivery, and mail_recover
	 * removes it after this process exits. */
	(void)unlinkat(mb->tmp_fd, name, 0);
	mailbox_put(store, mb);
	if (rc == 0 && id_out)
		strcpy(id_out, id);
	return rc;
}
