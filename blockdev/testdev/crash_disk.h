/*
 * crash_disk.h - a disk with a volatile write cache, for power-loss tests
 * (CrashMonkey, littlefs emubd).
 *
 * It sits on a backing bdev that stands for the platter. A write lands in a
 * cache (reads see it at once); flush() writes the cached blocks to the
 * backing device, after which they survive a crash. crash_disk_crash()
 * simulates a power cut: everything flushed survives, and of the blocks
 * written since the last completed flush a random subset (each 4 KiB block
 * independently, chosen by the seed) reaches the backing device, the rest is
 * lost. A block written twice since the flush ends up with one of the values
 * written, or the old one. After the crash every operation fails with
 * -EIO until the object is closed; the backing device then holds the image
 * "after power came back".
 *
 * crash_clock_arm() makes the crash happen by itself at the n-th operation
 * (read, write or flush) counted across every crash disk sharing the same
 * struct crash_clock, so two mirror legs lose power at the same instant:
 * that operation finds the power gone (-EIO, nothing done), the disk that
 * counted it crashes at once, the others at their next operation, at
 * crash_disk_crashed() or at close.
 *
 * Closing a disk that has not crashed is a clean shutdown: its cache is
 * written to the backing device.
 *
 * Thread-safe (one mutex per disk; the clock is atomic).
 */
#ifndef CAT_BLOCKDEV_CRASH_DISK_H
#define CAT_BLOCKDEV_CRASH_DISK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "blockdev/bdev.h"

/* Shared by the disks that lose power together. Zero-initialise. */
struct crash_clock {
	atomic_llong ops_left;  /* crash when it counts down to 0; <= 0 = not armed */
	atomic_bool crashed;
};

void crash_clock_init(struct crash_clock *c);
/* Crash every disk on this clock at the ops-th operation from now
 * (ops <= 0: at once). */
void crash_clock_arm(struct crash_clock *c, long long ops);

/* A crash disk over backing (which it does not own: close it yourself
 * after closing the crash disk). seed chooses which unflushed blocks
 * survive; keep_percent is each such block's chance of surviving (50 is a
 * good default). clock may be NULL. */
struct bdev *crash_disk_create(struct bdev *backing, struct crash_clock *clock,
			       uint64_t seed, unsigned keep_percent);

/* Cut the power now (idempotent). The clock, if any, is marked crashed so
 * the other disks on it crash at their next operation. */
void crash_disk_crash(struct bdev *d);

bool crash_disk_crashed(struct bdev *d);

/* Blocks written since the last completed flush (still volatile). */
uint64_t crash_disk_unflushed(struct bdev *d);

#endif
