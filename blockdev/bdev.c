#include "blockdev/bdev.h"

#include <errno.h>
#include <stddef.h>

int64_t bdev_check_request(const struct bdev *d, uint64_t blkno,
			   const struct iovec *iov, int iovcnt)
{
	if (iovcnt <= 0 || !iov)
		return -EINVAL;
	uint64_t bytes = 0;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len == 0 || iov[i].iov_len % BDEV_BLOCK_SIZE ||
		    ((uintptr_t)iov[i].iov_base % BDEV_BLOCK_SIZE))
			return -EINVAL;
		bytes += iov[i].iov_len;
	}
	uint64_t n = bytes >> BDEV_BLOCK_SHIFT;
	if (blkno >= d->nblocks || n > d->nblocks - blkno)
		return -ERANGE;
	return (int64_t)bytes;
}

int bdev_readv(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt)
{
	int64_t r = bdev_check_request(d, blkno, iov, iovcnt);
	return r < 0 ? (int)r : d->ops->readv(d, blkno, iov, iovcnt);
}

int bdev_writev(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt)
{
	int64_t r = bdev_check_request(d, blkno, iov, iovcnt);
	return r < 0 ? (int)r : d->ops->writev(d, blkno, iov, iovcnt);
}

int bdev_read(struct bdev *d, uint64_t blkno, void *buf, uint64_t nblocks)
{
	struct iovec iov = { buf, nblocks << BDEV_BLOCK_SHIFT };
	return bdev_readv(d, blkno, &iov, 1);
}

int bdev_write(struct bdev *d, uint64_t blkno, const void *buf, uint64_t nblocks)
{
	struct iovec iov = { (void *)buf, nblocks << BDEV_BLOCK_SHIFT };
	return bdev_writev(d, blkno, &iov, 1);
}

int bdev_flush(struct bdev *d) { return d->ops->flush(d); }

void bdev_close(struct bdev *d)
{
	if (d)
		d->ops->close(d);
}

static int run_sync(struct bdev_req *r)
{
	switch (r->op) {
	case BDEV_READ: return bdev_readv(r->dev, r->blkno, r->iov, r->iovcnt);
	case BDEV_WRITE: return bdev_writev(r->dev, r->blkno, r->iov, r->iovcnt);
	case BDEV_FLUSH: return bdev_flush(r->dev);
	}
	return -EINVAL;
}

void bdev_run_parallel(struct bdev_req *reqs, int n)
{
	void (*drains[4])(void);
	int ndrains = 0;

	for (int i = 0; i < n; i++) {
		struct bdev_req *r = &reqs[i];
		r->queued = false;
		r->result = 0;
		if (r->op != BDEV_FLUSH) {
			int64_t bytes = bdev_check_request(r->dev, r->blkno, r->iov, r->iovcnt);
			if (bytes < 0) {
				r->result = (int)bytes;
				r->queued = true; /* nothing left to do */
				continue;
			}
			r->expect = (size_t)bytes;
		}
		const struct bdev_ops *ops = r->dev->ops;
		if (ops->queue && ops->queue(r->dev, r) == 0) {
			r->queued = true;
			int k = 0;
			while (k < ndrains && drains[k] != ops->drain)
				k++;
			if (k == ndrains && ndrains < 4)
				drains[ndrains++] = ops->drain;
		}
	}
	/* Mixed batches (a test device beside an io_uring disk) run the
	 * synchronous part first; all-io_uring batches go out in one submit. */
	for (int i = 0; i < n; i++)
		if (!reqs[i].queued)
			reqs[i].result = run_sync(&reqs[i]);
	for (int k = 0; k < ndrains; k++)
		drains[k]();
}
