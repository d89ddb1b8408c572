/*
 * recovery.h - what brings a mirror back to two identical disks: resync
 * after a crash (only the stale chunks the mirror found at assembly, from
 * the authoritative disk), rebuild of a replaced disk (every chunk), and
 * scrub (compare both data areas, optionally repair).
 *
 * The mirror stays fully usable while these run: each chunk is copied or
 * compared under the mirror's stripe locks, so concurrent writes are never
 * lost or overtaken. If the disk being rebuilt fails, the resync ends early
 * with the array degraded (result.degraded) and returns 0: nothing was lost.
 * If the source fails, the chunks not yet copied answer -EIO and the call
 * returns -EIO.
 *
 * Progress: progress_fn is called with (done, total) at most every 100 ms
 * and once at the end; it may be NULL. All functions are thread-safe in the
 * sense that one resync and one scrub may run beside ordinary I/O; two
 * resyncs of one mirror at once are not allowed (-EBUSY).
 */
#ifndef CAT_RECOVERY_H
#define CAT_RECOVERY_H

#include <stdbool.h>
#include <stdint.h>

#include "blockdev/mirror/mirror.h"
#include "core/base/error.h"

typedef void (*progress_fn)(void *ctx, const char *phase, uint64_t done,
			    uint64_t total);

struct resync_result {
	uint64_t chunks;        /* chunks visited */
	uint64_t blocks_copied; /* blocks that differed and were written */
	bool degraded;          /* the target failed: array left degraded */
	double seconds;
};

/* Whether a recovery_resync of m is running now. */
bool recovery_resync_running(struct mirror *m);

/* A speed limit for resyncs, in bytes per second of chunks visited (0: none,
 * the default), like md's speed_limit_max: keeps a background resync from
 * starving the service. Process-wide; takes effect at the next chunk. */
void recovery_set_resync_limit(uint64_t bytes_per_second);

/* Copy every stale chunk to the rebuilding leg, then mark it in sync.
 * Returns 0 (also when nothing was stale), -EIO when the source failed. */
int recovery_resync(struct mirror *m, progress_fn progress, void *ctx,
		    struct resync_result *res, struct cat_error *err);

/* A run of differing blocks [blkno, blkno + n). */
typedef void (*mismatch_fn)(void *ctx, uint64_t blkno, uint64_t n);

struct scrub_result {
	uint64_t blocks;      /* compared */
	uint64_t mismatched;  /* blocks that differed */
	uint64_t ranges;      /* maximal runs of differing blocks */
	bool repaired;
	double seconds;
};

/* Compare both legs over the whole data area, reporting maximal runs of
 * differing blocks through on_mismatch (in ascending order). With repair,
 * the authoritative leg's copy is written to the other. Needs both legs
 * present (-ENODEV otherwise). */
int recovery_scrub(struct mirror *m, bool repair, mismatch_fn on_mismatch,
		   progress_fn progress, void *ctx, struct scrub_result *res,
		   struct cat_error *err);

#endif
