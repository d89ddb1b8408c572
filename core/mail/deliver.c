/*
 * deliver.c - Maildir delivery: write tmp/NAME, fsync it, link() it into
 * new/, fsync new/, unlink tmp/NAME. Returns only when durable.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "core/mail/mail_internal.h"

#define NAME_TRIES 100

/* Create USER/tmp/NAME under a fresh unique name (EEXIST: another name;
 * ENOENT: the mailbox is created first). Returns the fd. */
static int create_tmp(struct mail_store *store, const char *user,
		      char *name, char *path)
{
	bool created = false;
	for (int i = 0; i < NAME_TRIES; i++) {
		int rc = name_unique(store, name, MAIL_ID_MAX);
		if (rc == 0)
			rc = io_path(path, user, "tmp", name);
		if (rc < 0)
			return rc;
		int fd = io_open_at(store->root_fd, path,
				    O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (fd >= 0)
			return fd;
		if (fd == -ENOENT && !created) {
			rc = mailbox_create(store, user);
			if (rc < 0)
				return rc;
			created = true;
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

/* Link tmp_path to USER/new/ID, first under the tmp name, then under
 * fresh names while that one exists. Fills id. */
static int link_new(struct mail_store *store, const char *user,
		    const char *tmp_path, const char *tmp_name, char *id)
{
	bool created = false;
	strcpy(id, tmp_name);
	for (int i = 0; i < NAME_TRIES; i++) {
		char path[MAIL_PATH_MAX];
		int rc = io_path(path, user, "new", id);
		if (rc < 0)
			return rc;
		if (linkat(store->root_fd, tmp_path, store->root_fd, path, 0) == 0)
			return 0;
		rc = -errno;
		if (rc == -ENOENT && !created) {
			rc = mailbox_create(store, user);
			if (rc < 0)
				return rc;
			created = true;
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
static int sync_new(struct mail_store *store, const char *user,
		    const char *id)
{
	char path[MAIL_PATH_MAX];
	int rc = io_path(path, user, "new", NULL);
	if (rc == 0)
		rc = io_fsync_dir_at(store->root_fd, path);
	if (rc < 0 && io_path(path, user, "new", id) == 0)
		(void)unlinkat(store->root_fd, path, 0);
	return rc;
}

int mail_deliver(struct mail_store *store, const char *user,
		 const void *msg, size_t len, char *id_out)
{
	if (!store || !mail_name_valid(user) || (!msg && len > 0))
		return -EINVAL;
	char name[MAIL_ID_MAX], id[MAIL_ID_MAX], tmp_path[MAIL_PATH_MAX];
	int fd = create_tmp(store, user, name, tmp_path);
	if (fd < 0)
		return fd;
	int rc = write_tmp(fd, msg, len);
	if (rc == 0)
		rc = link_new(store, user, tmp_path, name, id);
	if (rc == 0)
		rc = sync_new(store, user, id);
	/* The tmp name is only a spool entry: once new/ holds the message,
	 * failing to remove it does not undo the delivery, and mail_recover
	 * removes it after this process exits. */
	(void)unlinkat(store->root_fd, tmp_path, 0);
	if (rc == 0 && id_out)
		strcpy(id_out, id);
	return rc;
}
