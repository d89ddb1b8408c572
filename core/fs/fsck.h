/*
 * fsck.h - check (and repair) a Catamaran filesystem offline.
 *
 * fsck_run works on the raw bdev (the mirror's), never through the engine's
 * cache or journal, so it copes with damage a mount refuses. It replays the
 * journal first whenever it holds a committed transaction, repairing or not
 * (replay only completes committed transactions and is idempotent; the
 * report says how many), then walks the directory tree from the root and
 * the orphan directory and compares what it found with the allocation
 * bitmaps and the link counts (the passes are described at the top of
 * fsck.c).
 *
 * Without opts->repair nothing is written but that replay. With it,
 * every problem found is fixed where it can be (bitmaps rebuilt, link
 * counts set, bad entries removed, damaged directories rebuilt from the
 * entries that survive, bad pointers cut, unattached inodes moved to
 * /lost+found as "#<ino>", pending orphans reclaimed), writing straight to
 * the device and flushing at the end; fsck then checks again until a pass
 * finds nothing (at most FSCK_MAX_PASSES).
 *
 * Each problem is one line ("inode 1234: link count 2, found 1") handed to
 * opts->problem, or logged with cat_log when that is NULL.
 *
 * Errors: fsck_run returns 0 when the check ran (the verdict is in the
 * report), -EUCLEAN when the superblock is unusable (err names the damage;
 * rep->errors_left is 1), or another negative errno (-EIO, -ENOMEM) when it
 * could not run. fsck_exit_code maps that to e2fsck's exit statuses.
 */
#ifndef CAT_FS_FSCK_H
#define CAT_FS_FSCK_H

#include <stdbool.h>
#include <stdint.h>

struct bdev;
struct cat_error;

#define FSCK_MAX_PASSES 5u

/* e2fsck exit statuses. */
#define FSCK_EXIT_CLEAN 0     /* no problem */
#define FSCK_EXIT_FIXED 1     /* problems found and all fixed */
#define FSCK_EXIT_ERRORS 4    /* problems left */
#define FSCK_EXIT_FAILED 8    /* could not run (I/O error, out of memory) */

struct fsck_opts {
	bool repair;
	/* Progress of each phase ("journal", "inodes", "unattached",
	 * "bitmaps"): done out of total units. May be NULL. */
	void (*progress)(void *arg, const char *phase, uint64_t done, uint64_t total);
	/* One line per problem (no newline). NULL: cat_log(CAT_LOG_WARN). */
	void (*problem)(void *arg, const char *msg);
	void *arg;
};

struct fsck_report {
	uint64_t errors_found;      /* problems seen (every pass) */
	uint64_t errors_fixed;
	uint64_t errors_left;       /* problems still there at the end */
	bool changed;               /* fsck wrote to the filesystem (beyond replay) */
	unsigned passes;
	/* journal */
	uint64_t journal_replayed;  /* transactions replayed */
	uint64_t journal_lost;      /* committed transactions beyond a damaged one */
	/* what the last pass found in use */
	uint64_t inodes_used, inodes_total;
	uint64_t blocks_used, blocks_total;
	uint64_t dirs, files, symlinks;
	uint64_t orphans_pending;   /* unlinked inodes mount will reclaim */
	uint64_t orphans_reclaimed; /* reclaimed by this run (repair) */
	uint64_t lost_found;        /* inodes moved to /lost+found */
};

int fsck_run(struct bdev *dev, const struct fsck_opts *o, struct fsck_report *rep,
	     struct cat_error *err);

/* FSCK_EXIT_* for fsck_run's return value and report. */
int fsck_exit_code(int rc, const struct fsck_report *rep);

#endif
