/*
 * io.c - syscall helpers for the mail store: every call checked, EINTR
 * retried, short reads and writes completed, errors as negative errno.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mail/mail_internal.h"

int io_open_at(int dirfd, const char *path, int flags, mode_t mode)
{
	for (;;) {
		int fd = openat(dirfd, path, flags | O_CLOEXEC, mode);
		if (fd >= 0)
			return fd;
		if (errno != EINTR)
			return -errno;
	}
}

int io_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, char *buf, size_t len, size_t *got)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = read(fd, buf + off, len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		off += (size_t)n;
	}
	*got = off;
	return 0;
}

/* Read a whole file; the size is taken from fstat, and a file that grows
 * meanwhile is read up to that size (Maildir files never change). */
static int read_fd(int fd, char **buf, size_t *len)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_size < 0 || (uint64_t)st.st_size >= SIZE_MAX)
		return -EFBIG;
	size_t size = (size_t)st.st_size;
	char *p = malloc(size + 1);
	if (!p)
		return -ENOMEM;
	size_t got = 0;
	int rc = read_all(fd, p, size, &got);
	if (rc < 0) {
		free(p);
		return rc;
	}
	p[got] = '\0';
	*buf = p;
	*len = got;
	return 0;
}

int io_read_file_at(int dirfd, const char *path, char **buf, size_t *len)
{
	int fd = io_open_at(dirfd, path, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	int rc = read_fd(fd, buf, len);
	int rc2 = io_close(fd);
	if (rc == 0 && rc2 < 0) {
		free(*buf);
		*buf = NULL;
		rc = rc2;
	}
	return rc;
}

int io_fsync(int fd)
{
	while (fsync(fd) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

/* close() is not retried on EINTR: on Linux the descriptor is gone. */
int io_close(int fd)
{
	if (close(fd) < 0 && errno != EINTR)
		return -errno;
	return 0;
}

int io_fsync_dir_at(int dirfd, const char *path)
{
	int fd = io_open_at(dirfd, path, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return fd;
	int rc = io_fsync(fd);
	int rc2 = io_close(fd);
	return rc < 0 ? rc : rc2;
}

/* out = "a/b/c" (c may be NULL: "a/b"); MAIL_PATH_MAX bytes. */
int io_path(char *out, const char *a, const char *b, const char *c)
{
	int n = c ? snprintf(out, MAIL_PATH_MAX, "%s/%s/%s", a, b, c)
		  : snprintf(out, MAIL_PATH_MAX, "%s/%s", a, b);
	if (n < 0 || n >= MAIL_PATH_MAX)
		return -ENAMETOOLONG;
	return 0;
}

int io_next_entry(DIR *d, struct dirent **out)
{
	errno = 0;
	*out = readdir(d);
	return *out || !errno ? 0 : -errno;
}

/* getdents64 straight into a buffer: no DIR stream to allocate, and the
 * directory stays open in the caller's cache. */
int io_scan_dir(int dirfd, int (*fn)(void *ctx, const char *name, unsigned char type),
		void *ctx)
{
	char buf[8192] __attribute__((aligned(8)));
	if (lseek(dirfd, 0, SEEK_SET) < 0)
		return -errno;
	for (;;) {
		ssize_t n = getdents64(dirfd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		for (ssize_t off = 0; off < n;) {
			struct dirent64 *e = (struct dirent64 *)(buf + off);
			off += e->d_reclen;
			int rc = fn(ctx, e->d_name, e->d_type);
			if (rc < 0)
				return rc;
		}
	}
}
