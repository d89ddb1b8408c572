/*
 * scrub.c - compare both legs of a mirror block by block (recovery.h).
 * The mirror compares (and repairs) up to 256 blocks per call under its
 * stripe locks; this file walks the data area, merges the differing blocks
 * into maximal runs and reports them in ascending order.
 */
#include "recovery/recovery.h"

#include <errno.h>
#include <string.h>

#include "core/base/util.h"
#include "recovery/progress.h"

#define SCRUB_STEP 256u                      /* mirror_compare_range limit */

/* The run of differing blocks being built; reported once it cannot grow. */
struct run {
	uint64_t start, len;
	mismatch_fn report;
	void *ctx;
	struct scrub_result *res;
};

static void run_flush(struct run *r)
{
	if (!r->len)
		return;
	r->res->ranges++;
	if (r->report)
		r->report(r->ctx, r->start, r->len);
	r->len = 0;
}

static void run_add(struct run *r, uint64_t blkno)
{
	if (r->len && r->start + r->len == blkno) {
		r->len++;
		return;
	}
	run_flush(r);
	r->start = blkno;
	r->len = 1;
}

static bool leg_present(enum leg_state s)
{
	return s == LEG_IN_SYNC || s == LEG_REBUILDING;
}

int recovery_scrub(struct mirror *m, bool repair, mismatch_fn on_mismatch,
		   progress_fn progress, void *ctx, struct scrub_result *res,
		   struct cat_error *err)
{
	struct scrub_result local;
	if (!res)
		res = &local;
	*res = (struct scrub_result){ 0 };
	cat_error_clear(err);

	struct mirror_status st;
	mirror_get_status(m, &st);
	for (int i = 0; i < 2; i++) {
		if (st.leg[i].state == LEG_MISSING)
			return cat_error_set(err, -ENODEV, "scrub: disk %d is missing", i + 1);
		if (!leg_present(st.leg[i].state))
			return cat_error_set(err, -ENODEV, "scrub: disk %d (%s) has failed",
					     i + 1, st.leg[i].name);
	}

	const char *phase = repair ? "repair" : "scrub";
	struct run run = { .report = on_mismatch, .ctx = ctx, .res = res };
	uint64_t start = now_ns(), last_ns = start;
	int rc = 0;

	for (uint64_t blk = 0; blk < st.data_blocks; blk += SCRUB_STEP) {
		uint32_t n = (uint32_t)(st.data_blocks - blk < SCRUB_STEP ?
					st.data_blocks - blk : SCRUB_STEP);
		uint8_t mismatch[SCRUB_STEP / 8];
		memset(mismatch, 0, sizeof(mismatch));
		rc = mirror_compare_range(m, blk, n, mismatch, repair);
		if (rc < 0) {
			cat_error_set(err, rc, "scrub: blocks %llu-%llu: %s",
				      (unsigned long long)blk,
				      (unsigned long long)(blk + n - 1), strerror(-rc));
			break;
		}
		for (uint32_t i = 0; rc > 0 && i < n; i++)
			if (mismatch[i / 8] & (1u << (i % 8))) {
				run_add(&run, blk + i);
				res->mismatched++;
			}
		res->blocks += n;
		progress_tick(progress, ctx, phase, &last_ns, res->blocks, st.data_blocks);
	}
	run_flush(&run);
	if (progress)
		progress(ctx, phase, res->blocks, st.data_blocks);
	res->repaired = repair && rc >= 0 && res->mismatched > 0;
	res->seconds = (double)(now_ns() - start) / 1e9;
	return rc < 0 ? rc : 0;
}
