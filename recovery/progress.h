/*
 * progress.h - internal to recovery/: the one throttle behind every
 * progress report, so resync and scrub report alike (recovery.h promises
 * "at most every 100 ms, and once at the end").
 */
#ifndef CAT_RECOVERY_PROGRESS_H
#define CAT_RECOVERY_PROGRESS_H

#include <stdint.h>

#include "recovery/recovery.h"

/* Call progress(ctx, phase, done, total) if 100 ms passed since *last_ns
 * (then updated). progress may be NULL. */
void progress_tick(progress_fn progress, void *ctx, const char *phase,
		   uint64_t *last_ns, uint64_t done, uint64_t total);

#endif
