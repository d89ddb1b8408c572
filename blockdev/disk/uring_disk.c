/*
 * uring_disk.c - bdev over a file or block device through io_uring.
 *
 * Every thread owns one ring (struct thread_ring, created on first use and
 * freed by a pthread_key destructor). A ring carries a fixed table of slots,
 * one per operation in flight; an SQE's user_data points at its slot. Both
 * kinds of operations share the table:
 *   - batch requests from bdev_run_parallel (queue/drain), whose result goes
 *     to the caller's struct bdev_req when the completion is reaped;
 *   - synchronous readv/writev/flush, which wait for their own slot.
 * Whoever waits reaps every completion that arrives, so a synchronous call
 * made while a batch is queued on the same thread (a fault-injecting wrapper
 * beside an io_uring disk in one batch) completes the batch requests it
 * meets along the way, and drain() then finds them done. Because the table
 * has no more slots than the ring has SQEs, and the CQ ring is twice that,
 * neither queue can overflow.
 *
 * A short transfer is resubmitted once for the remainder from the same slot;
 * a second short transfer (or a zero-byte one, as from a vanished device)
 * ends the operation with -EIO.
 */
#include "blockdev/disk/uring_disk.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/log.h"

#define RING_ENTRIES 128u

struct uring_disk {
	struct bdev b;
	int fd;
	bool readonly;
	bool locked;
};

struct ring_slot {
	bool busy;
	bool complete;
	struct bdev_req *req;       /* batch request, NULL for a synchronous op */
	struct uring_disk *disk;
	enum bdev_op op;
	uint64_t offset;            /* byte offset of the first block */
	const struct iovec *iov;
	int iovcnt;
	size_t expect;              /* bytes the operation must move */
	size_t moved;               /* bytes moved so far */
	bool retried;               /* the one retry for a short transfer is used */
	struct iovec *rest;         /* owned iovec for the remainder, or NULL */
	int result;
};

struct thread_ring {
	struct io_uring ring;
	unsigned fork_generation;   /* ring belongs to the process of this generation */
	unsigned batch_pending;     /* queued batch requests not yet complete */
	bool broken;                /* ring torn down after a failure; re-create */
	struct ring_slot slots[RING_ENTRIES];
};

static pthread_key_t ring_key;
static pthread_once_t ring_key_once = PTHREAD_ONCE_INIT;
static int ring_key_error;
/* Bumped in a fork child: rings inherited from the parent share its
 * mappings and must never be used there. */
static unsigned fork_generation;

static const char *errno_text(int code, char *buf, size_t len)
{
	return strerror_r(code < 0 ? -code : code, buf, len);
}

/* ---- per-thread rings ------------------------------------------------- */

/* liburing unmaps a ring with the raw munmap syscall, which ThreadSanitizer
 * does not see: when a thread's ring is torn down and another thread's new
 * ring is mapped at the same address, TSan reports the two threads' ring
 * accesses as a race. The kernel orders the unmap before the map; these
 * annotations tell TSan so (and compile to nothing elsewhere). */
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
static char ring_mappings;   /* the sync object: any mapping change */
#define ring_mapped() __tsan_acquire(&ring_mappings)
#define ring_unmapped() __tsan_release(&ring_mappings)
#else
#define ring_mapped() ((void)0)
#define ring_unmapped() ((void)0)
#endif

static int ring_setup(struct io_uring *ring)
{
	int rc = io_uring_queue_init(RING_ENTRIES, ring, 0);
	if (rc == 0)
		ring_mapped();
	return rc;
}

static void ring_teardown(struct io_uring *ring)
{
	io_uring_queue_exit(ring);
	ring_unmapped();
}

static void thread_ring_free(struct thread_ring *tr)
{
	if (!tr->broken)
		ring_teardown(&tr->ring);
	for (unsigned i = 0; i < RING_ENTRIES; i++)
		free(tr->slots[i].rest);
	free(tr);
}

static void thread_ring_destructor(void *p)
{
	/* Every operation waits for its completions before it returns, so
	 * nothing is in flight when a thread exits. */
	if (p)
		thread_ring_free(p);
}

static void after_fork_in_child(void) { fork_generation++; }

static void ring_key_create(void)
{
	ring_key_error = -pthread_key_create(&ring_key, thread_ring_destructor);
	if (!ring_key_error)
		ring_key_error = -pthread_atfork(NULL, NULL, after_fork_in_child);
}

/* The calling thread's ring, created on first use; *out NULL on error. */
static int thread_ring_get(struct thread_ring **out)
{
	*out = NULL;
	pthread_once(&ring_key_once, ring_key_create);
	if (ring_key_error)
		return ring_key_error;
	struct thread_ring *tr = pthread_getspecific(ring_key);
	if (tr && tr->fork_generation == fork_generation) {
		if (tr->broken) {
			int rc = ring_setup(&tr->ring);
			if (rc < 0)
				return rc;
			tr->broken = false;
		}
		*out = tr;
		return 0;
	}
	if (tr) {
		/* Inherited across fork(): unmapping and closing in the child
		 * leaves the parent's ring untouched. */
		pthread_setspecific(ring_key, NULL);
		thread_ring_free(tr);
	}
	tr = calloc(1, sizeof(*tr));
	if (!tr)
		return -ENOMEM;
	int rc = ring_setup(&tr->ring);
	if (rc < 0) {
		free(tr);
		return rc;
	}
	tr->fork_generation = fork_generation;
	rc = -pthread_setspecific(ring_key, tr);
	if (rc) {
		thread_ring_free(tr);
		return rc;
	}
	*out = tr;
	return 0;
}

/* ---- slots ------------------------------------------------------------ */

static struct ring_slot *slot_alloc(struct thread_ring *tr)
{
	for (unsigned i = 0; i < RING_ENTRIES; i++) {
		if (!tr->slots[i].busy) {
			struct ring_slot *s = &tr->slots[i];
			*s = (struct ring_slot){ .busy = true };
			return s;
		}
	}
	return NULL;
}

static void slot_release(struct ring_slot *s)
{
	free(s->rest);
	*s = (struct ring_slot){ 0 };
}

static size_t iov_total(const struct iovec *iov, int iovcnt)
{
	size_t n = 0;
	for (int i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	return n;
}

static void slot_fill(struct ring_slot *s, struct uring_disk *disk, enum bdev_op op,
		      uint64_t blkno, const struct iovec *iov, int iovcnt)
{
	s->disk = disk;
	s->op = op;
	s->offset = blkno << BDEV_BLOCK_SHIFT;
	s->iov = iov;
	s->iovcnt = iovcnt;
	s->expect = op == BDEV_FLUSH ? 0 : iov_total(iov, iovcnt);
}

/* An iovec covering what is left of the transfer after s->moved bytes. */
static int slot_build_rest(struct ring_slot *s)
{
	size_t skip = s->moved;
	int first = 0;
	while (first < s->iovcnt && skip >= s->iov[first].iov_len)
		skip -= s->iov[first++].iov_len;
	int n = s->iovcnt - first;
	struct iovec *rest = malloc(sizeof(*rest) * (size_t)n);
	if (!rest)
		return -ENOMEM;
	memcpy(rest, s->iov + first, sizeof(*rest) * (size_t)n);
	rest[0].iov_base = (char *)rest[0].iov_base + skip;
	rest[0].iov_len -= skip;
	free(s->rest);
	s->rest = rest;
	s->iov = rest;
	s->iovcnt = n;
	return 0;
}

static int submit_pending(struct thread_ring *tr, unsigned wait_nr)
{
	for (;;) {
		int rc = io_uring_submit_and_wait(&tr->ring, wait_nr);
		if (rc >= 0)
			return 0;
		if (rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
			return rc;
		if (rc != -EINTR)
			usleep(100); /* kernel short of memory: give it a moment */
	}
}

/* Prepare the SQE for slot s (not submitted). */
static int slot_prep(struct thread_ring *tr, struct ring_slot *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&tr->ring);
	if (!sqe) {
		int rc = submit_pending(tr, 0);
		if (rc < 0)
			return rc;
		sqe = io_uring_get_sqe(&tr->ring);
		if (!sqe)
			return -EAGAIN;
	}
	int fd = s->disk->fd;
	uint64_t off = s->offset + s->moved;
	switch (s->op) {
	case BDEV_READ:
		io_uring_prep_readv(sqe, fd, s->iov, (unsigned)s->iovcnt, off);
		break;
	case BDEV_WRITE:
		io_uring_prep_writev(sqe, fd, s->iov, (unsigned)s->iovcnt, off);
		break;
	case BDEV_FLUSH:
		io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
		break;
	}
	io_uring_sqe_set_data(sqe, s);
	return 0;
}

static void slot_finish(struct thread_ring *tr, struct ring_slot *s, int result)
{
	s->result = result;
	s->complete = true;
	if (s->req) {
		/* Batch request: hand the result over and free the slot now. */
		s->req->result = result;
		tr->batch_pending--;
		slot_release(s);
	}
}

/* Account one completion: finish the slot, or resubmit the remainder of a
 * short transfer once. */
static void slot_complete(struct thread_ring *tr, struct ring_slot *s, int res)
{
	if (res < 0) {
		slot_finish(tr, s, res);
		return;
	}
	if (s->op == BDEV_FLUSH) {
		slot_finish(tr, s, 0);
		return;
	}
	s->moved += (size_t)res;
	if (s->moved >= s->expect) {
		slot_finish(tr, s, 0);
		return;
	}
	if (s->retried) {
		cat_log(CAT_LOG_WARN, "%s: short %s at block %llu (%zu of %zu bytes)",
			s->disk->b.name, s->op == BDEV_READ ? "read" : "write",
			(unsigned long long)(s->offset >> BDEV_BLOCK_SHIFT),
			s->moved, s->expect);
		slot_finish(tr, s, -EIO);
		return;
	}
	s->retried = true;
	int rc = slot_build_rest(s);
	if (!rc)
		rc = slot_prep(tr, s);
	if (rc)
		slot_finish(tr, s, -EIO);
}

/* Account every completion that is ready, without waiting. */
static void reap_ready(struct thread_ring *tr)
{
	struct io_uring_cqe *cqe;
	while (io_uring_peek_cqe(&tr->ring, &cqe) == 0) {
		struct ring_slot *s = io_uring_cqe_get_data(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&tr->ring, cqe);
		slot_complete(tr, s, res);
	}
}

/* Submit what is prepared, wait for at least one completion, account all
 * that are ready. Callers only wait while something is in flight. */
static int reap(struct thread_ring *tr)
{
	int rc = submit_pending(tr, 1);
	if (rc < 0)
		return rc;
	reap_ready(tr);
	return 0;
}

/* The ring itself failed (an error that a ring we own cannot give: EBADF,
 * EFAULT, ...). Tear it down, which makes the kernel cancel what is in
 * flight, and fail every unfinished operation; the next use re-creates it. */
static void ring_abandon(struct thread_ring *tr, int err)
{
	cat_log(CAT_LOG_ERROR, "io_uring wait failed (error %d): failing in-flight I/O", err);
	ring_teardown(&tr->ring);
	tr->broken = true;
	for (unsigned i = 0; i < RING_ENTRIES; i++)
		if (tr->slots[i].busy && !tr->slots[i].complete)
			slot_finish(tr, &tr->slots[i], err);
}

/* ---- synchronous operations -------------------------------------------- */

static int run_sync(struct uring_disk *disk, enum bdev_op op, uint64_t blkno,
		    const struct iovec *iov, int iovcnt)
{
	struct thread_ring *tr;
	int rc = thread_ring_get(&tr);
	if (rc < 0)
		return rc;
	struct ring_slot *s;
	while (!(s = slot_alloc(tr))) {
		/* Table full of queued batch requests: let some finish. */
		rc = reap(tr);
		if (rc < 0) {
			ring_abandon(tr, rc);
			return rc;
		}
	}
	slot_fill(s, disk, op, blkno, iov, iovcnt);
	rc = slot_prep(tr, s);
	if (rc < 0) {
		slot_release(s);
		return rc;
	}
	while (!s->complete) {
		rc = reap(tr);
		if (rc < 0)
			ring_abandon(tr, rc); /* completes s with rc */
	}
	int result = s->result;
	slot_release(s);
	return result;
}

static struct uring_disk *to_disk(struct bdev *d) { return (struct uring_disk *)d; }

static int uring_readv(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt)
{
	return run_sync(to_disk(d), BDEV_READ, blkno, iov, iovcnt);
}

static int uring_writev(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt)
{
	if (to_disk(d)->readonly)
		return -EROFS;
	return run_sync(to_disk(d), BDEV_WRITE, blkno, iov, iovcnt);
}

static int uring_flush(struct bdev *d)
{
	if (to_disk(d)->readonly)
		return 0; /* nothing of ours to make durable */
	return run_sync(to_disk(d), BDEV_FLUSH, 0, NULL, 0);
}

/* ---- batches (bdev_run_parallel) --------------------------------------- */

static int uring_queue(struct bdev *d, struct bdev_req *req)
{
	struct uring_disk *disk = to_disk(d);
	if (disk->readonly && req->op != BDEV_READ)
		return -EOPNOTSUPP; /* the synchronous path gives the answer */
	struct thread_ring *tr;
	if (thread_ring_get(&tr) < 0)
		return -EOPNOTSUPP;
	struct ring_slot *s = slot_alloc(tr);
	if (!s) {
		/* Full: push what is prepared and collect what is done. */
		if (submit_pending(tr, 0) < 0)
			return -EOPNOTSUPP;
		reap_ready(tr);
		s = slot_alloc(tr);
		if (!s)
			return -EOPNOTSUPP;
	}
	slot_fill(s, disk, req->op, req->blkno, req->iov, req->iovcnt);
	if (slot_prep(tr, s) < 0) {
		slot_release(s);
		return -EOPNOTSUPP;
	}
	s->req = req;
	req->result = 0;
	tr->batch_pending++;
	return 0;
}

static void uring_drain(void)
{
	struct thread_ring *tr;
	if (thread_ring_get(&tr) < 0)
		return; /* no ring means nothing was queued on this thread */
	while (tr->batch_pending) {
		int rc = reap(tr);
		if (rc < 0)
			ring_abandon(tr, rc);
	}
}

/* ---- open / close ------------------------------------------------------- */

static void uring_close(struct bdev *d)
{
	struct uring_disk *disk = to_disk(d);
	/* Unlock explicitly: the kernel tears a ring down asynchronously and
	 * may hold the file (and so its flock) a moment after close(). */
	if (disk->locked && flock(disk->fd, LOCK_UN) < 0)
		cat_log(CAT_LOG_WARN, "%s: unlock: error %d", d->name, errno);
	if (close(disk->fd) < 0)
		cat_log(CAT_LOG_WARN, "%s: close: error %d", d->name, errno);
	free(disk);
}

static const struct bdev_ops uring_disk_ops = {
	.readv = uring_readv,
	.writev = uring_writev,
	.flush = uring_flush,
	.close = uring_close,
	.queue = uring_queue,
	.drain = uring_drain,
};

static int path_error(struct cat_error *err, const char *path, int code)
{
	char buf[128];
	return cat_error_set(err, code, "%s: %s", path, errno_text(code, buf, sizeof(buf)));
}

/* Size in bytes of an open regular file or block device. */
static int fd_size(int fd, const struct stat *st, uint64_t *bytes)
{
	if (S_ISREG(st->st_mode)) {
		*bytes = (uint64_t)st->st_size;
		return 0;
	}
	if (ioctl(fd, BLKGETSIZE64, bytes) < 0)
		return -errno;
	return 0;
}

/* Exclusive opens and locks wait up to LOCK_WAIT_MS: a process killed a
 * moment ago keeps its files (its O_EXCL claim on a block device, its flock)
 * until the kernel has torn down its io_uring, and a daemon just unmounted
 * (umount returns at once) is still writing its last checkpoint and closing
 * the mirror clean. */
#define LOCK_WAIT_MS 5000

static int open_waiting(const char *path, int oflags)
{
	for (int waited = 0;; waited += 20) {
		int fd = open(path, oflags);
		if (fd >= 0 || errno != EBUSY || !(oflags & O_EXCL) || waited >= LOCK_WAIT_MS)
			return fd;
		usleep(20 * 1000);
	}
}

static int open_checked(const char *path, unsigned flags, bool *is_blk, struct cat_error *err)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return path_error(err, path, -errno);
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return cat_error_set(err, -EINVAL, "%s: not a regular file or block device", path);
	*is_blk = S_ISBLK(st.st_mode);

	int oflags = O_CLOEXEC | O_DIRECT;
	oflags |= (flags & URING_DISK_READONLY) ? O_RDONLY : O_RDWR;
	if (*is_blk && !(flags & URING_DISK_READONLY))
		oflags |= O_EXCL; /* refuse a device that is mounted or claimed */
	int fd = open_waiting(path, oflags);
	if (fd < 0 && errno == EINVAL) {
		/* A filesystem without O_DIRECT (old tmpfs): buffered I/O with
		 * fdatasync is still correct, only slower. */
		fd = open(path, oflags & ~O_DIRECT);
		if (fd >= 0)
			cat_log(CAT_LOG_WARN, "%s: O_DIRECT not supported, using buffered I/O", path);
	}
	if (fd < 0) {
		int code = -errno;
		if (code == -EBUSY)
			return cat_error_set(err, code, "%s: device is busy (mounted or in use)", path);
		return path_error(err, path, code);
	}
	/* The path may have been replaced between stat() and open(). */
	struct stat fst;
	if (fstat(fd, &fst) < 0 || fst.st_ino != st.st_ino || fst.st_dev != st.st_dev) {
		close(fd);
		return cat_error_set(err, -EAGAIN, "%s: changed while being opened", path);
	}
	return fd;
}

/* Exclusive lock, waiting up to LOCK_WAIT_MS (see open_waiting). */
static int lock_disk(int fd)
{
	for (int waited = 0;; waited += 20) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK || waited >= LOCK_WAIT_MS)
			return -errno;
		usleep(20 * 1000);
	}
}

int uring_disk_open(const char *path, unsigned flags, struct bdev **out,
		    struct cat_error *err)
{
	*out = NULL;
	bool is_blk;
	int fd = open_checked(path, flags, &is_blk, err);
	if (fd < 0)
		return fd;
	int rc = (flags & URING_DISK_NOLOCK) ? 0 : lock_disk(fd);
	if (rc < 0) {
		if (rc == -EWOULDBLOCK)
			rc = cat_error_set(err, -EBUSY, "%s: is in use by another process", path);
		else
			rc = path_error(err, path, rc);
		goto fail;
	}
	struct stat st;
	uint64_t bytes;
	rc = fstat(fd, &st) < 0 ? -errno : fd_size(fd, &st, &bytes);
	if (rc < 0) {
		path_error(err, path, rc);
		goto fail;
	}
	if (bytes < BDEV_BLOCK_SIZE) {
		rc = cat_error_set(err, -EINVAL, "%s: smaller than one block (%llu bytes)",
				   path, (unsigned long long)bytes);
		goto fail;
	}
	struct thread_ring *tr;
	rc = thread_ring_get(&tr);
	if (rc < 0) {
		char buf[128];
		rc = cat_error_set(err, rc, "%s: cannot set up io_uring: %s", path,
				   errno_text(rc, buf, sizeof(buf)));
		goto fail;
	}
	struct uring_disk *disk = calloc(1, sizeof(*disk));
	if (!disk) {
		rc = path_error(err, path, -ENOMEM);
		goto fail;
	}
	disk->b.ops = &uring_disk_ops;
	disk->b.nblocks = bytes >> BDEV_BLOCK_SHIFT;
	snprintf(disk->b.name, sizeof(disk->b.name), "%s", path);
	disk->fd = fd;
	disk->readonly = flags & URING_DISK_READONLY;
	disk->locked = !(flags & URING_DISK_NOLOCK);
	*out = &disk->b;
	return 0;
fail:
	close(fd);
	return rc;
}

/* ---- create ------------------------------------------------------------- */

static int check_blockdev_size(const char *path, uint64_t bytes, struct cat_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return path_error(err, path, -errno);
	uint64_t have = 0;
	int rc = ioctl(fd, BLKGETSIZE64, &have) < 0 ? -errno : 0;
	close(fd);
	if (rc < 0)
		return path_error(err, path, rc);
	if (bytes && have < bytes)
		return cat_error_set(err, -ENOSPC, "%s: device has %llu bytes, %llu needed", path,
				     (unsigned long long)have, (unsigned long long)bytes);
	return 0;
}

/* Make the file at least bytes long, with its blocks allocated. */
static int preallocate(int fd, uint64_t bytes)
{
	if (bytes == 0)
		return 0;
	if (fallocate(fd, 0, 0, (off_t)bytes) == 0)
		return 0;
	if (errno != EOPNOTSUPP)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size < bytes && ftruncate(fd, (off_t)bytes) < 0)
		return -errno;
	return 0;
}

/* Make a new directory entry durable. */
static int sync_parent_dir(const char *path)
{
	char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	char *slash = strrchr(copy, '/');
	const char *dir = slash ? (slash == copy ? "/" : (*slash = '\0', copy)) : ".";
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = fd < 0 ? -errno : 0;
	if (fd >= 0) {
		if (fsync(fd) < 0)
			rc = -errno;
		close(fd);
	}
	free(copy);
	return rc;
}

int uring_disk_create(const char *path, uint64_t bytes, int *created,
		      struct cat_error *err)
{
	if (created)
		*created = 0;
	struct stat st;
	if (stat(path, &st) == 0) {
		if (S_ISBLK(st.st_mode))
			return check_blockdev_size(path, bytes, err);
		if (!S_ISREG(st.st_mode))
			return cat_error_set(err, -EINVAL, "%s: not a regular file or block device", path);
	} else if (errno != ENOENT) {
		return path_error(err, path, -errno);
	}

	bool is_new = false;
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		is_new = fd >= 0;
	}
	if (fd < 0)
		return path_error(err, path, -errno);
	int rc = preallocate(fd, bytes);
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (!rc && is_new)
		rc = sync_parent_dir(path);
	if (rc < 0) {
		if (is_new)
			unlink(path);
		return path_error(err, path, rc);
	}
	if (created)
		*created = is_new;
	return 0;
}

int uring_disk_is_blockdev(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISBLK(st.st_mode);
}
