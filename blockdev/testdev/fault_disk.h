/*
 * fault_disk.h - wraps a bdev and makes it fail on command, for failure
 * tests: read or write errors at chosen blocks, an error on every operation
 * after N more, a short transfer, or a disk that vanishes (every operation
 * -ENODEV from then on, as a pulled cable).
 *
 * Faults can be changed at any time from any thread while I/O runs (the
 * settings are atomics / a mutex-protected list). The wrapper owns nothing:
 * closing it does not close the inner device.
 */
#ifndef CAT_BLOCKDEV_FAULT_DISK_H
#define CAT_BLOCKDEV_FAULT_DISK_H

#include <stdbool.h>
#include <stdint.h>

#include "blockdev/bdev.h"

struct bdev *fault_disk_create(struct bdev *inner);

/* Requests touching blkno fail with err (e.g. -EIO) on read / on write.
 * `sticky` false: the fault fires once, then is cleared (a bad sector
 * that a rewrite repairs). */
int fault_disk_fail_read(struct bdev *d, uint64_t blkno, int err, bool sticky);
int fault_disk_fail_write(struct bdev *d, uint64_t blkno, int err, bool sticky);

/* After `ops` more operations succeed, every operation fails with err. */
void fault_disk_fail_after(struct bdev *d, long long ops, int err);

/* Every operation from now on fails with -ENODEV. */
void fault_disk_vanish(struct bdev *d);

/* Remove every fault. */
void fault_disk_heal(struct bdev *d);

/* Operations seen / failed so far. */
uint64_t fault_disk_ops(struct bdev *d);
uint64_t fault_disk_failures(struct bdev *d);

#endif
