/*
 * bench_mail_bare.c - see bench_mail_bare.h. The directories stay open for
 * the whole run (as the library's cache keeps them), so each operation is
 * one system call on a name relative to them.
 */
#include "tools/bench_mail_bare.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct bare_box {
	int tmp_fd, new_fd;
	pthread_mutex_t mu;   /* Mailboat's per-user lock; guards new_fd's offset */
};

struct bare_mail {
	struct bare_box *box;
	unsigned nboxes;
};

static int open_sub(const char *dir, const char *user, const char *sub)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof path, "%s/%s/%s", dir, user, sub) >= (int)sizeof path)
		return -ENAMETOOLONG;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

void bare_mail_close(struct bare_mail *bm)
{
	if (!bm)
		return;
	for (unsigned u = 0; u < bm->nboxes; u++) {
		close(bm->box[u].tmp_fd);
		close(bm->box[u].new_fd);
		pthread_mutex_destroy(&bm->box[u].mu);
	}
	free(bm->box);
	free(bm);
}

int bare_mail_open(const char *dir, const char *const *users, unsigned nusers,
		   struct bare_mail **out)
{
	struct bare_mail *bm = calloc(1, sizeof *bm);
	if (!bm || !(bm->box = calloc(nusers, sizeof *bm->box))) {
		free(bm);
		return -ENOMEM;
	}
	for (unsigned u = 0; u < nusers; u++) {
		struct bare_box *b = &bm->box[u];
		b->tmp_fd = open_sub(dir, users[u], "tmp");
		b->new_fd = b->tmp_fd < 0 ? -1 : open_sub(dir, users[u], "new");
		int rc = b->tmp_fd < 0 ? b->tmp_fd : b->new_fd;
		if (rc >= 0)
			rc = -pthread_mutex_init(&b->mu, NULL);
		if (rc < 0) {
			if (b->tmp_fd >= 0)
				close(b->tmp_fd);
			if (b->new_fd >= 0)
				close(b->new_fd);
			bare_mail_close(bm);
			return rc;
		}
		bm->nboxes = u + 1;
	}
	*out = bm;
	return 0;
}

int bare_mail_deliver(struct bare_mail *bm, unsigned u, unsigned thread,
		      uint64_t name_seq, const void *msg, size_t len)
{
	const struct bare_box *b = &bm->box[u];
	char name[64];
	snprintf(name, sizeof name, "bare.T%uQ%" PRIu64, thread, name_seq);
	int fd = openat(b->tmp_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, msg, len);
	int rc = n < 0 ? -errno : (size_t)n != len ? -EIO : 0;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && linkat(b->tmp_fd, name, b->new_fd, name, 0) < 0)
		rc = -errno;
	if (unlinkat(b->tmp_fd, name, 0) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* Read the file NAME of new/ (one read: the messages are small) and
 * remove it. */
static int take_one(const struct bare_box *b, const char *name)
{
	char buf[4096];
	int fd = openat(b->new_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = read(fd, buf, sizeof buf) < 0 ? -errno : 0;
	close(fd);
	if (rc == 0 && unlinkat(b->new_fd, name, 0) < 0)
		rc = -errno;
	return rc;
}

/* Read and remove every entry of new/. */
static int take_all(const struct bare_box *b, uint64_t *deleted)
{
	char buf[8192] __attribute__((aligned(8)));
	if (lseek(b->new_fd, 0, SEEK_SET) < 0)
		return -errno;
	ssize_t n;
	while ((n = getdents64(b->new_fd, buf, sizeof buf)) > 0) {
		for (ssize_t off = 0; off < n;) {
			const struct dirent64 *e = (const struct dirent64 *)(buf + off);
			off += e->d_reclen;
			if (e->d_name[0] == '.')
				continue;
			int rc = take_one(b, e->d_name);
			if (rc < 0)
				return rc;
			(*deleted)++;
		}
	}
	return n < 0 ? -errno : 0;
}

int bare_mail_pickup_delete(struct bare_mail *bm, unsigned u, uint64_t *deleted)
{
	struct bare_box *b = &bm->box[u];
	pthread_mutex_lock(&b->mu);
	int rc = take_all(b, deleted);
	pthread_mutex_unlock(&b->mu);
	return rc;
}
