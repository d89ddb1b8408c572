/*
 * mirror.h - two disks that behave as one (RAID1 in the manner of md,
 * DRBD and SPDK raid1). The mirror is itself a bdev (mirror_bdev()).
 *
 * Guarantees (DESIGN.md section 1)
 *  - Reads and writes of a block are linearizable: a striped lock table
 *    (block -> stripe, sorted acquisition) is held across both disks' I/O.
 *  - A write goes to both live legs in parallel and completes when both
 *    have. A flush flushes every live leg, and also waits for any
 *    superblock update in progress, so once it returns the writes before it
 *    are durable on every in-sync disk and the array state that makes them
 *    authoritative is durable too.
 *  - A leg that returns an error on write (after one retry), or on the
 *    rewrite of a block that failed to read, or that reports -ENODEV/-ENXIO,
 *    is marked failed: the event counter is bumped and the superblock of
 *    the survivor is written and flushed before the failing request returns
 *    (md's rule: a degraded write is never acknowledged before the array
 *    knows it is degraded). Service continues on the survivor; with both
 *    legs failed every request fails with -EIO.
 *  - Reads go to the first leg that holds the block (in sync, or rebuilding
 *    past that chunk); on error the other leg is read and the bad block is
 *    rewritten from it (read repair).
 *  - Write-intent bitmap (bitmap.h) on both disks; a cleaner thread clears
 *    idle chunks lazily.
 *
 * Assembly (mirror_open): both superblocks are read. The authoritative disk
 * is the in-sync one with the higher event count (a disk that the other
 * records as failed is never authoritative; ties go to disk 1). The other
 * disk, if it is behind or the shutdown was unclean, becomes REBUILDING
 * with a set of stale chunks:
 *   - the union of both bitmaps when the bitmap can be trusted (unclean
 *     shutdown of an in-sync pair, or a disk that was failed by its
 *     partner and is now back: the partner kept every bit since);
 *   - every chunk when it cannot (a blank/replaced disk, a disk that was
 *     itself rebuilding, split brain where each disk says the other
 *     failed, or opts.full_resync).
 * A disk that records itself as rebuilding is never authoritative; if the
 * only complete disk is also stale (its partner failed it, then failed
 * during the rebuild), assembly refuses (-EUCLEAN) rather than guess.
 * Reading a stale chunk goes to the authoritative leg only; if that leg
 * fails, such reads answer -EIO rather than stale data. The copy itself is
 * driven from recovery/ with mirror_resync_chunk() and
 * mirror_resync_finish(); nothing is copied inside mirror_open.
 *
 * Locking order: stripe locks (ascending) -> bitmap lock -> state lock.
 * The state lock (leg states, events, superblock writes) is never held
 * while waiting for a stripe. Superblock writes are serialised by it.
 *
 * Errors: -EIO (no leg can serve the request), -ERANGE/-EINVAL (bad
 * request), -EROFS (opened read-only); mirror_open/mirror_format fill a
 * cat_error naming the disk and the problem.
 */
#ifndef CAT_BLOCKDEV_MIRROR_H
#define CAT_BLOCKDEV_MIRROR_H

#include <stdbool.h>
#include <stdint.h>

#include "blockdev/bdev.h"
#include "blockdev/mirror/superblock.h"
#include "core/base/error.h"

struct mirror;

enum leg_state {
	LEG_IN_SYNC = MEMBER_IN_SYNC,
	LEG_FAILED = MEMBER_FAILED,
	LEG_REBUILDING = MEMBER_REBUILDING,
	LEG_MISSING = 3, /* no device at all (opened degraded) */
};

struct mirror_format_opts {
	uint32_t chunk_blocks; /* 0 = automatic */
	bool force;            /* overwrite a Catamaran disk / non-empty device */
	bool assume_clean;     /* both data areas are known identical (e.g. new
				* zero-filled files); otherwise disk 2 is marked
				* for a full initial sync, as md does at create */
};

struct mirror_opts {
	bool readonly;          /* write nothing at all (status, check) */
	bool allow_degraded;    /* a NULL leg is accepted as missing */
	bool full_resync;       /* distrust the bitmap */
	uint32_t clean_delay_ms;/* bitmap cleaner idle time; 0 = 1000 ms */
	bool no_cleaner;        /* no background thread (tests drive mirror_clean) */
};

/* Write fresh superblocks and an empty bitmap to both disks; the array
 * spans the smaller of the two. Refuses (-EEXIST) a disk that already holds
 * a Catamaran superblock, and (-ENOTEMPTY) a block device whose first MiB is
 * not zero, unless o->force. Flushes both. The disks stay open (caller's). */
int mirror_format(struct bdev *legs[2], const struct mirror_format_opts *o,
		  struct cat_error *err);

/* Assemble. Takes ownership of legs[] (closed by mirror_close, also on
 * error). A NULL leg needs opts->allow_degraded. */
int mirror_open(struct bdev *legs[2], const struct mirror_opts *opts,
		struct mirror **out, struct cat_error *err);

/* Flush, clear the bitmap if both legs are in sync, mark clean, close the
 * legs, free. Returns the first error met (the mirror is freed anyway). */
int mirror_close(struct mirror *m);

/* The assembly decision of mirror_open, for tools that only look
 * (status). sb[i] is disk i's superblock (index = its disk_index), NULL
 * when that disk is missing or unreadable; a pair must have passed
 * msb_pair_problem(). */
struct mirror_plan {
	int auth;              /* authoritative disk index; -1 = refuse */
	int rebuild;           /* disk to resync, -1 = none */
	bool full;             /* every chunk, not just the bitmap's */
	bool split_brain;      /* each disk recorded the other as failed */
	uint8_t rebuild_state; /* member state the superblocks keep meanwhile */
	char refusal[160];     /* why auth < 0 */
};
void mirror_plan(const struct msb *sb[2], bool full_resync, struct mirror_plan *p);

/* Free without writing anything (simulates the process dying). */
void mirror_abandon(struct mirror *m);

struct bdev *mirror_bdev(struct mirror *m);
struct mirror *mirror_from_bdev(struct bdev *d); /* NULL if not a mirror */

/* Administrative failure ("disk fail"): as if the disk had been pulled. */
int mirror_fail_leg(struct mirror *m, int leg, const char *why);

/* Replace leg with newdev: a live leg is failed first; the old device is
 * retired (closed with the mirror); newdev gets a superblock and becomes
 * REBUILDING with every chunk stale; the copy is then driven like a resync.
 * Ownership: when the call refuses up front (-EINVAL, -EROFS, -ENOSPC,
 * -EBUSY) the caller keeps newdev; otherwise (0, or a failed metadata write
 * that leaves the new leg failed) the mirror owns it. */
int mirror_replace_leg(struct mirror *m, int leg, struct bdev *newdev,
		       struct cat_error *err);

/* --- resync / rebuild, driven by recovery/ --- */

/* Index of the leg being rebuilt, or -1. */
int mirror_rebuilding_leg(const struct mirror *m);
/* The next stale chunk >= from, or -1 when none is left. */
int64_t mirror_next_stale_chunk(struct mirror *m, uint64_t from);
uint64_t mirror_stale_chunks(struct mirror *m);
/* Copy one chunk from the authoritative leg to the rebuilding one, under
 * the stripe locks, comparing first (only differing blocks are written).
 * *copied gets blocks written. Returns 0; -ENODEV when the target leg
 * failed (the rebuild is over, the array stays degraded); -EIO when the
 * source failed (the chunk stays stale and answers -EIO). */
int mirror_resync_chunk(struct mirror *m, uint64_t chunk, uint64_t *copied);
/* No stale chunk left: mark the leg in sync and write superblocks. */
int mirror_resync_finish(struct mirror *m);

/* --- scrub and chosen-copy reads --- */

/* Read from one given leg (self-healing reads, scrub). Under stripe locks. */
int mirror_read_leg(struct mirror *m, int leg, uint64_t blkno, void *buf,
		    uint64_t nblocks);
/* Compare blocks [blkno, blkno+n) of both legs (n <= 256) under the stripe
 * locks; set bit i of mismatch[] (n bits) for each differing block; when
 * repair, rewrite those blocks on the non-authoritative leg. Returns the
 * number of differing blocks or -errno. */
int mirror_compare_range(struct mirror *m, uint64_t blkno, uint32_t n,
			 uint8_t *mismatch, bool repair);

/* Bitmap cleaner step (the background thread calls it; tests may too):
 * flush both legs, then clear idle in-sync chunks. Returns chunks cleared. */
int64_t mirror_clean(struct mirror *m);

struct mirror_leg_status {
	enum leg_state state;
	char name[256];
	uint64_t read_errors, write_errors, repaired_blocks;
};

struct mirror_status {
	uint8_t uuid[16];
	uint64_t events;
	uint64_t data_blocks;
	uint32_t chunk_blocks;
	uint64_t nchunks;
	uint64_t dirty_chunks;   /* bits set in the write-intent bitmap */
	uint64_t stale_chunks;   /* still to copy to the rebuilding leg */
	int authoritative;       /* leg index, -1 when none */
	bool readonly;
	struct mirror_leg_status leg[2];
	uint64_t reads, writes, flushes;
};

void mirror_get_status(struct mirror *m, struct mirror_status *st);

#endif
