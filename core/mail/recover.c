/*
 * recover.c - remove leftovers of interrupted deliveries from every
 * user's tmp/.
 *
 * A file in tmp/ is removed when
 *   - neither read nor written for 36 hours (atime and mtime older: the
 *     Maildir rule; no delivery takes that long), or
 *   - its name is one of ours for this host ("...P<pid>Q<n>.HOST") and
 *     process pid no longer exists (kill(pid, 0) fails with ESRCH).
 * A file of a live process (this one included) is never removed before
 * 36 hours: its delivery may still be running. A pid reused by another
 * process only delays the removal. Processes of another pid namespace
 * with the same host name are not told apart: give them another host
 * name, or run recover only where all deliverers are visible.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/mail/mail_internal.h"

#define STALE_SECONDS (36 * 3600)

static bool process_gone(pid_t pid)
{
	return kill(pid, 0) == -1 && errno == ESRCH;
}

static bool is_stale(const struct mail_store *store, int tmp_fd,
		     const char *name, time_t now)
{
	struct stat st;
	if (fstatat(tmp_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return false;
	if (S_ISDIR(st.st_mode))
		return false;
	time_t last = st.st_mtime > st.st_atime ? st.st_mtime : st.st_atime;
	if (now - last > STALE_SECONDS)
		return true;
	pid_t pid;
	return name_is_ours(store, name, &pid) && process_gone(pid);
}

/* Clean one tmp/ directory; returns files removed or -errno. */
static int clean_tmp(const struct mail_store *store, int tmp_fd, time_t now)
{
	DIR *d = fdopendir(tmp_fd);
	if (!d) {
		int rc = -errno;
		io_close(tmp_fd);
		return rc;
	}
	int removed = 0, rc = 0;
	for (;;) {
		struct dirent *e;
		int err = io_next_entry(d, &e);
		if (err && rc == 0)
			rc = err;
		if (!e)
			break;
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (!is_stale(store, tmp_fd, e->d_name, now))
			continue;
		if (unlinkat(tmp_fd, e->d_name, 0) == 0)
			removed++;
		else if (errno != ENOENT && rc == 0)
			rc = -errno;
	}
	if (closedir(d) < 0 && rc == 0)
		rc = -errno;
	return rc < 0 ? rc : removed;
}

static int recover_user(const struct mail_store *store, const char *user,
			time_t now)
{
	char path[MAIL_PATH_MAX];
	int rc = io_path(path, user, "tmp", NULL);
	if (rc < 0)
		return rc;
	int fd = io_open_at(store->root_fd, path,
			    O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
	if (fd == -ENOENT || fd == -ENOTDIR || fd == -ELOOP)
		return 0;   /* not a mailbox */
	if (fd < 0)
		return fd;
	return clean_tmp(store, fd, now);
}

int mail_recover(struct mail_store *store)
{
	if (!store)
		return -EINVAL;
	int fd = io_open_at(store->root_fd, ".", O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return fd;
	DIR *d = fdopendir(fd);
	if (!d) {
		int rc = -errno;
		io_close(fd);
		return rc;
	}
	time_t now = time(NULL);
	int total = 0, rc = 0;
	for (;;) {
		struct dirent *e;
		int err = io_next_entry(d, &e);
		if (err && rc == 0)
			rc = err;
		if (!e)
			break;
		if (!mail_name_valid(e->d_name))
			continue;
		int n = recover_user(store, e->d_name, now);
		if (n < 0 && rc == 0)
			rc = n;
		else if (n > 0)
			total += n;
	}
	if (closedir(d) < 0 && rc == 0)
		rc = -errno;
	return rc < 0 ? rc : total;
}
