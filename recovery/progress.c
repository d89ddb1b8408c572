#include "recovery/progress.h"

#include "core/base/util.h"

#define PROGRESS_INTERVAL_NS 100000000ull /* 100 ms */

void progress_tick(progress_fn progress, void *ctx, const char *phase,
		   uint64_t *last_ns, uint64_t done, uint64_t total)
{
	uint64_t now = now_ns();
	if (progress && now - *last_ns >= PROGRESS_INTERVAL_NS) {
		*last_ns = now;
		progress(ctx, phase, done, total);
	}
}
