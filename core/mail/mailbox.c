/*
 * mailbox.c - opening the store and creating a user's mailbox.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mail/mail_internal.h"

int mail_open(const char *root, struct mail_store **out)
{
	if (!root || !out)
		return -EINVAL;
	struct mail_store *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->root_fd = io_open_at(AT_FDCWD, root, O_RDONLY | O_DIRECTORY, 0);
	if (s->root_fd < 0) {
		int rc = s->root_fd;
		free(s);
		return rc;
	}
	int rc = pthread_mutex_init(&s->mu, NULL);
	if (rc != 0) {
		io_close(s->root_fd);
		free(s);
		return -rc;
	}
	name_host(s->host);
	*out = s;
	return 0;
}

int mail_close(struct mail_store *store)
{
	if (!store)
		return 0;
	int rc = lock_release_all(store);
	int rc2 = io_close(store->root_fd);
	pthread_mutex_destroy(&store->mu);
	free(store);
	return rc < 0 ? rc : rc2;
}

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
