/*
 * uring_disk.h - a bdev over a regular file or a raw block device, through
 * io_uring with O_DIRECT.
 *
 * Every thread that does I/O gets its own io_uring (created on first use,
 * freed at thread exit): rings are never shared between submitters, so the
 * submit path takes no lock. Reads and writes are IORING_OP_READV/WRITEV at
 * blkno * 4096; flush is IORING_OP_FSYNC with IORING_FSYNC_DATASYNC. A short
 * transfer is retried once for the remainder, then reported as -EIO; a
 * negative completion is returned as is (-EIO, -ENODEV, -ENXIO, ...).
 *
 * Opening takes an exclusive flock() on the file or device, so two processes
 * can never drive the same disk (-EBUSY, after waiting up to a second for a
 * process that just died to let go); block devices are also opened O_EXCL.
 * Closing unlocks explicitly. The device size is fstat() for files, BLKGETSIZE64 for devices,
 * rounded down to whole blocks.
 */
#ifndef CAT_BLOCKDEV_URING_DISK_H
#define CAT_BLOCKDEV_URING_DISK_H

#include <stdint.h>

#include "blockdev/bdev.h"
#include "core/base/error.h"

enum uring_open_flags {
	URING_DISK_READONLY = 1 << 0, /* O_RDONLY; writes fail with -EROFS */
	URING_DISK_NOLOCK   = 1 << 1, /* skip flock (offline inspection only) */
};

/* Open an existing file or block device. Errors name the path:
 * -ENOENT missing, -EACCES/-EROFS/-EPERM not writable, -EBUSY locked by
 * another process, -EINVAL not a regular file or block device / smaller
 * than one block. */
int uring_disk_open(const char *path, unsigned flags, struct bdev **out,
		    struct cat_error *err);

/* Create path if it does not exist and make it at least `bytes` long with
 * fallocate() (preallocated, so later writes do not allocate). A block
 * device is left as is (its size is checked against bytes when bytes != 0).
 * *created says whether the file was new. */
int uring_disk_create(const char *path, uint64_t bytes, int *created,
		      struct cat_error *err);

/* True when path is a block device. */
int uring_disk_is_blockdev(const char *path);

#endif
