/*
 * fault_disk.c - a bdev wrapper that fails on command.
 *
 * Order of the checks on every operation: vanished (-ENODEV), then the
 * fail-after countdown, then the per-block faults. A write that hits a
 * faulty block first writes the blocks of the request before it, then
 * fails: a real disk that errors mid-request has transferred a prefix (the
 * short transfer of the header). A read fault just fails.
 *
 * The block faults are a small list under a mutex; everything else is
 * atomic, so faults can change while I/O runs. The lock is never held
 * across I/O to the inner device.
 */
#include "blockdev/testdev/fault_disk.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

struct block_fault {
	uint64_t blkno;
	int err;
	bool sticky;
	bool on_write;
};

struct fault_disk {
	struct bdev b;
	struct bdev *inner;
	pthread_mutex_t lock;
	struct block_fault *faults;     /* under lock */
	size_t nfaults, cap;
	atomic_bool vanished;
	atomic_llong ok_left;           /* fail-after countdown; < 0 = off */
	atomic_int after_err;
	atomic_ullong ops;
	atomic_ullong failures;         /* every error returned, injected or not */
};

static struct fault_disk *to_fault(struct bdev *d) { return (struct fault_disk *)d; }

static int as_error(int err) { return err < 0 ? err : -EIO; }

/* The fault (if any) for this request: vanished, countdown, none. */
static int device_fault(struct fault_disk *f)
{
	if (atomic_load(&f->vanished))
		return -ENODEV;
	long long left = atomic_load(&f->ok_left);
	while (left > 0)
		if (atomic_compare_exchange_weak(&f->ok_left, &left, left - 1))
			return 0;
	return left == 0 ? atomic_load(&f->after_err) : 0;
}

/* Lowest faulty block in [blkno, blkno + n) for this direction; a one-shot
 * fault is consumed. Returns 0 or the error, with *at the faulty block. */
static int block_fault(struct fault_disk *f, bool write, uint64_t blkno, uint64_t n,
		       uint64_t *at)
{
	pthread_mutex_lock(&f->lock);
	size_t hit = f->nfaults;
	for (size_t i = 0; i < f->nfaults; i++) {
		const struct block_fault *bf = &f->faults[i];
		if (bf->on_write == write && bf->blkno >= blkno && bf->blkno - blkno < n &&
		    (hit == f->nfaults || bf->blkno < f->faults[hit].blkno))
			hit = i;
	}
	int err = 0;
	if (hit < f->nfaults) {
		err = f->faults[hit].err;
		*at = f->faults[hit].blkno;
		if (!f->faults[hit].sticky)
			f->faults[hit] = f->faults[--f->nfaults];
	}
	pthread_mutex_unlock(&f->lock);
	return err;
}

static uint64_t iov_blocks(const struct iovec *iov, int iovcnt)
{
	uint64_t bytes = 0;
	for (int i = 0; i < iovcnt; i++)
		bytes += iov[i].iov_len;
	return bytes >> BDEV_BLOCK_SHIFT;
}

/* Write the first nblocks blocks of the request (the part before a fault). */
static int write_prefix(struct fault_disk *f, uint64_t blkno, const struct iovec *iov,
			int iovcnt, uint64_t nblocks)
{
	if (nblocks == 0)
		return 0;
	struct iovec *part = malloc(sizeof(*part) * (size_t)iovcnt);
	if (!part)
		return -ENOMEM;
	size_t left = nblocks << BDEV_BLOCK_SHIFT;
	int n = 0;
	for (; n < iovcnt && left; n++) {
		part[n] = iov[n];
		if (part[n].iov_len > left)
			part[n].iov_len = left;
		left -= part[n].iov_len;
	}
	int rc = bdev_writev(f->inner, blkno, part, n);
	free(part);
	return rc;
}

static int count(struct fault_disk *f, int rc)
{
	if (rc < 0)
		atomic_fetch_add(&f->failures, 1);
	return rc;
}

static int fault_readv(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt)
{
	struct fault_disk *f = to_fault(d);
	atomic_fetch_add(&f->ops, 1);
	uint64_t at;
	int rc = device_fault(f);
	if (!rc)
		rc = block_fault(f, false, blkno, iov_blocks(iov, iovcnt), &at);
	if (!rc)
		rc = bdev_readv(f->inner, blkno, iov, iovcnt);
	return count(f, rc);
}

static int fault_writev(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt)
{
	struct fault_disk *f = to_fault(d);
	atomic_fetch_add(&f->ops, 1);
	uint64_t at = 0;
	int rc = device_fault(f);
	if (rc)
		return count(f, rc);
	rc = block_fault(f, true, blkno, iov_blocks(iov, iovcnt), &at);
	if (rc) {
		/* The injected error is the answer whatever the prefix did. */
		(void)write_prefix(f, blkno, iov, iovcnt, at - blkno);
		return count(f, rc);
	}
	return count(f, bdev_writev(f->inner, blkno, iov, iovcnt));
}

static int fault_flush(struct bdev *d)
{
	struct fault_disk *f = to_fault(d);
	atomic_fetch_add(&f->ops, 1);
	int rc = device_fault(f);
	return count(f, rc ? rc : bdev_flush(f->inner));
}

static void fault_close(struct bdev *d)
{
	struct fault_disk *f = to_fault(d);
	pthread_mutex_destroy(&f->lock);
	free(f->faults);
	free(f);
}

static const struct bdev_ops fault_bdev_ops = {
	.readv = fault_readv,
	.writev = fault_writev,
	.flush = fault_flush,
	.close = fault_close,
};

struct bdev *fault_disk_create(struct bdev *inner)
{
	if (!inner)
		return NULL;
	struct fault_disk *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	if (pthread_mutex_init(&f->lock, NULL)) {
		free(f);
		return NULL;
	}
	f->b.ops = &fault_bdev_ops;
	f->b.nblocks = inner->nblocks;
	snprintf(f->b.name, sizeof(f->b.name), "%s", inner->name);
	f->inner = inner;
	atomic_init(&f->vanished, false);
	atomic_init(&f->ok_left, -1);
	atomic_init(&f->after_err, -EIO);
	atomic_init(&f->ops, 0);
	atomic_init(&f->failures, 0);
	return &f->b;
}

static int add_fault(struct bdev *d, uint64_t blkno, int err, bool sticky, bool on_write)
{
	struct fault_disk *f = to_fault(d);
	if (blkno >= d->nblocks)
		return -ERANGE;
	pthread_mutex_lock(&f->lock);
	int rc = 0;
	if (f->nfaults == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 8;
		struct block_fault *n = realloc(f->faults, cap * sizeof(*n));
		if (n) {
			f->faults = n;
			f->cap = cap;
		} else {
			rc = -ENOMEM;
		}
	}
	if (!rc)
		f->faults[f->nfaults++] = (struct block_fault){ blkno, as_error(err), sticky, on_write };
	pthread_mutex_unlock(&f->lock);
	return rc;
}

int fault_disk_fail_read(struct bdev *d, uint64_t blkno, int err, bool sticky)
{
	return add_fault(d, blkno, err, sticky, false);
}

int fault_disk_fail_write(struct bdev *d, uint64_t blkno, int err, bool sticky)
{
	return add_fault(d, blkno, err, sticky, true);
}

void fault_disk_fail_after(struct bdev *d, long long ops, int err)
{
	struct fault_disk *f = to_fault(d);
	/* The error first, so a racing operation that sees the countdown at
	 * zero never reads a stale error. */
	atomic_store(&f->after_err, as_error(err));
	atomic_store(&f->ok_left, ops < 0 ? 0 : ops);
}

void fault_disk_vanish(struct bdev *d) { atomic_store(&to_fault(d)->vanished, true); }

void fault_disk_heal(struct bdev *d)
{
	struct fault_disk *f = to_fault(d);
	atomic_store(&f->vanished, false);
	atomic_store(&f->ok_left, -1);
	pthread_mutex_lock(&f->lock);
	f->nfaults = 0;
	pthread_mutex_unlock(&f->lock);
}

uint64_t fault_disk_ops(struct bdev *d) { return atomic_load(&to_fault(d)->ops); }

uint64_t fault_disk_failures(struct bdev *d) { return atomic_load(&to_fault(d)->failures); }
