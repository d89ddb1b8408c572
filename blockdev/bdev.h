/*
 * bdev.h - the block device interface every layer above speaks.
 *
 * A bdev is an array of nblocks 4 KiB blocks. Every implementation (io_uring
 * disk, memory disk, crash simulator, fault injector, the mirror itself)
 * fills a struct bdev_ops; callers use the bdev_* wrappers below, never the
 * ops directly, so checks live in one place.
 *
 * Contract
 *  - readv/writev move whole blocks: every iov_len is a non-zero multiple of
 *    BDEV_BLOCK_SIZE and every iov_base is 4 KiB aligned (O_DIRECT needs it;
 *    the wrappers reject anything else with -EINVAL). The request covers
 *    blocks [blkno, blkno + total/4096), which must lie inside the device
 *    (-ERANGE otherwise).
 *  - A completed write is visible to every later read. It is durable only
 *    after a later flush() completes (a device may keep it in a volatile
 *    cache until then; the crash simulator does exactly that).
 *  - Errors are negative errno values. A short transfer is reported as -EIO.
 *    -ENODEV / -ENXIO mean the device is gone. Nothing here ever exits.
 *  - close() releases the device; the bdev pointer is invalid afterwards.
 *
 * Threads: every implementation is safe for concurrent callers. Ordering of
 * concurrent writes to the same block is the caller's business (the mirror
 * takes per-block locks above this interface).
 *
 * Parallel submission: bdev_run_parallel() issues a set of requests at once
 * and returns when all have completed. Devices that support it (io_uring
 * disks, through queue/drain) have their requests in flight together on the
 * calling thread's ring; the rest run synchronously. This is how the mirror
 * writes both legs in parallel from one thread.
 */
#ifndef CAT_BLOCKDEV_BDEV_H
#define CAT_BLOCKDEV_BDEV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#define BDEV_BLOCK_SIZE 4096u
#define BDEV_BLOCK_SHIFT 12

struct bdev;

enum bdev_op { BDEV_READ, BDEV_WRITE, BDEV_FLUSH };

struct bdev_req {
	struct bdev *dev;
	enum bdev_op op;
	uint64_t blkno;
	const struct iovec *iov;
	int iovcnt;
	int result;      /* out: 0 or -errno */
	size_t expect;   /* internal: bytes the request must move */
	bool queued;     /* internal: taken by ops->queue */
};

struct bdev_ops {
	int (*readv)(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt);
	int (*writev)(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt);
	int (*flush)(struct bdev *d);
	void (*close)(struct bdev *d);
	/* Optional (NULL = not supported). queue() adds req to the calling
	 * thread's batch and returns 0, or returns -EOPNOTSUPP to have it run
	 * synchronously; drain() submits the thread's batch and waits until
	 * every queued request has its result. */
	int (*queue)(struct bdev *d, struct bdev_req *req);
	void (*drain)(void);
};

struct bdev {
	const struct bdev_ops *ops;
	uint64_t nblocks;
	char name[256];  /* path or description, for messages */
};

/* Checked entry points (validate alignment and range, then call the op). */
int bdev_readv(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt);
int bdev_writev(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt);
int bdev_read(struct bdev *d, uint64_t blkno, void *buf, uint64_t nblocks);
int bdev_write(struct bdev *d, uint64_t blkno, const void *buf, uint64_t nblocks);
int bdev_flush(struct bdev *d);
void bdev_close(struct bdev *d);

/* Run n requests concurrently; each gets its own result. */
void bdev_run_parallel(struct bdev_req *reqs, int n);

/* Validate a request's shape; returns total bytes (> 0) or -EINVAL/-ERANGE. */
int64_t bdev_check_request(const struct bdev *d, uint64_t blkno,
			   const struct iovec *iov, int iovcnt);

#endif
