/*
 * mem_disk.h - a bdev kept in memory: the fastest device for unit tests.
 *
 * Writes are immediately "durable" (flush is a no-op). The image can be
 * inspected and compared directly. Thread-safe: a reader-writer lock per
 * 64-block stripe makes each block read/write atomic.
 */
#ifndef CAT_BLOCKDEV_MEM_DISK_H
#define CAT_BLOCKDEV_MEM_DISK_H

#include <stdint.h>

#include "blockdev/bdev.h"

/* A zero-filled disk of nblocks blocks. NULL on ENOMEM. */
struct bdev *mem_disk_create(uint64_t nblocks, const char *name);

/* Direct pointer to block blkno's 4096 bytes (tests only; no locking). */
uint8_t *mem_disk_block(struct bdev *d, uint64_t blkno);

#endif
