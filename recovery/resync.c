/*
 * resync.c - copy the stale chunks of a mirror from the authoritative leg to
 * the rebuilding one (recovery.h). The mirror decides which chunks are stale
 * and does each copy under its stripe locks; this file only walks the chunks,
 * reports progress and closes the rebuild with mirror_resync_finish().
 */
#include "recovery/recovery.h"

#include <errno.h>
#include <stdatomic.h>
#include <unistd.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/base/util.h"
#include "recovery/progress.h"

#define MAX_ACTIVE_RESYNCS 64
/* A chunk may become stale again behind the walk (a leg failed and came
 * back); wrap around this many times before giving up. */
#define MAX_PASSES 4

/* Mirrors with a resync in progress: a second one is refused with -EBUSY. */
static pthread_mutex_t active_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mirror *active[MAX_ACTIVE_RESYNCS];

static int claim(struct mirror *m)
{
	int free_slot = -1;
	pthread_mutex_lock(&active_lock);
	for (int i = 0; i < MAX_ACTIVE_RESYNCS; i++) {
		if (active[i] == m) {
			pthread_mutex_unlock(&active_lock);
			return -EBUSY;
		}
		if (!active[i] && free_slot < 0)
			free_slot = i;
	}
	if (free_slot >= 0)
		active[free_slot] = m;
	pthread_mutex_unlock(&active_lock);
	return free_slot >= 0 ? 0 : -EBUSY;
}

static void release(struct mirror *m)
{
	pthread_mutex_lock(&active_lock);
	for (int i = 0; i < MAX_ACTIVE_RESYNCS; i++)
		if (active[i] == m)
			active[i] = NULL;
	pthread_mutex_unlock(&active_lock);
}

bool recovery_resync_running(struct mirror *m)
{
	bool running = false;
	pthread_mutex_lock(&active_lock);
	for (int i = 0; i < MAX_ACTIVE_RESYNCS; i++)
		running |= active[i] == m;
	pthread_mutex_unlock(&active_lock);
	return running;
}

static bool any_leg_out_of_sync(struct mirror *m)
{
	struct mirror_status st;
	mirror_get_status(m, &st);
	return st.leg[0].state != LEG_IN_SYNC || st.leg[1].state != LEG_IN_SYNC;
}

/* src: named as it was when the resync began (a failed leg loses its role). */
static int copy_failed(const char *src, uint64_t chunk, int rc, struct cat_error *err)
{
	if (rc == -EIO)
		return cat_error_set(err, rc, "resync: %s failed at chunk %llu; the chunks not "
				     "copied yet answer I/O errors", src, (unsigned long long)chunk);
	return cat_error_set(err, rc, "resync: chunk %llu from %s: %s",
			     (unsigned long long)chunk, src, strerror(-rc));
}

/* Walk the stale chunks, wrapping around while some remain. */
static _Atomic uint64_t resync_limit;   /* bytes/s, 0 = none */

void recovery_set_resync_limit(uint64_t bytes_per_second)
{
	atomic_store(&resync_limit, bytes_per_second);
}

/* Sleep until chunks chunks of chunk_bytes have taken their share of time. */
static void keep_resync_limit(uint64_t start_ns, uint64_t chunks, uint64_t chunk_bytes)
{
	uint64_t limit = atomic_load(&resync_limit);
	if (!limit)
		return;
	uint64_t due = start_ns + (uint64_t)((double)chunks * (double)chunk_bytes / (double)limit * 1e9);
	uint64_t now = now_ns();
	if (due > now)
		usleep((useconds_t)((due - now) / 1000));
}

static int copy_stale_chunks(struct mirror *m, progress_fn progress, void *ctx,
			     struct resync_result *res, struct cat_error *err)
{
	struct mirror_status st;
	mirror_get_status(m, &st);
	char src[sizeof(st.leg[0].name)];
	snprintf(src, sizeof(src), "%s", st.authoritative >= 0 ?
		 st.leg[st.authoritative].name : "the authoritative disk");

	uint64_t total = mirror_stale_chunks(m), last_ns = now_ns(), start_ns = last_ns;
	uint64_t chunk_bytes = (uint64_t)st.chunk_blocks * BDEV_BLOCK_SIZE;
	uint64_t from = 0;

	for (int pass = 0; pass < MAX_PASSES;) {
		int64_t chunk = mirror_next_stale_chunk(m, from);
		if (chunk < 0) {
			if (from == 0 || mirror_stale_chunks(m) == 0)
				break;
			from = 0;
			pass++;
			continue;
		}
		uint64_t copied = 0;
		int rc = mirror_resync_chunk(m, (uint64_t)chunk, &copied);
		if (rc == -ENODEV) {
			res->degraded = true; /* the target failed: stop, nothing lost */
			break;
		}
		if (rc < 0)
			return copy_failed(src, (uint64_t)chunk, rc, err);
		res->chunks++;
		res->blocks_copied += copied;
		if (res->chunks > total)
			total = res->chunks; /* chunks went stale behind us */
		progress_tick(progress, ctx, "resync", &last_ns, res->chunks, total);
		keep_resync_limit(start_ns, res->chunks, chunk_bytes);
		from = (uint64_t)chunk + 1;
	}
	if (progress)
		progress(ctx, "resync", res->chunks, res->degraded ? total : res->chunks);
	return 0;
}

int recovery_resync(struct mirror *m, progress_fn progress, void *ctx,
		    struct resync_result *res, struct cat_error *err)
{
	struct resync_result local;
	if (!res)
		res = &local;
	*res = (struct resync_result){ 0 };
	cat_error_clear(err);

	int rc = claim(m);
	if (rc < 0)
		return cat_error_set(err, rc, "resync: already running on this mirror");
	uint64_t start = now_ns();

	rc = copy_stale_chunks(m, progress, ctx, res, err);
	if (rc == 0 && !res->degraded && mirror_rebuilding_leg(m) >= 0) {
		if (mirror_stale_chunks(m) > 0)
			rc = cat_error_set(err, -EAGAIN,
					   "resync: chunks kept going stale; run it again");
		else if ((rc = mirror_resync_finish(m)) == -ENODEV)
			rc = 0; /* the target failed at the last moment: degraded */
		else if (rc < 0)
			cat_error_set(err, rc, "resync: could not mark the disk in sync");
	}
	if (rc == 0)
		res->degraded = any_leg_out_of_sync(m);
	res->seconds = (double)(now_ns() - start) / 1e9;
	release(m);
	return rc;
}
