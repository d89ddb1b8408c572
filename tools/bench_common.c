/*
 * bench_common.c - option parsing, latency histogram, latency formatting and
 * the pre-load resync shared by the bench commands (bench_common.h).
 */
#include "tools/bench_common.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/mirror/mirror.h"
#include "core/base/error.h"
#include "core/base/util.h"
#include "recovery/recovery.h"
#include "tools/cli.h"

static unsigned hist_index(uint64_t ns)
{
	if (ns < HIST_SUB)
		return (unsigned)ns;
	unsigned msb = 63u - (unsigned)__builtin_clzll(ns);
	unsigned shift = msb - HIST_SUB_BITS;
	return ((shift + 1) << HIST_SUB_BITS) + (unsigned)((ns >> shift) & (HIST_SUB - 1));
}

/* Middle of bucket i. */
static uint64_t hist_value(unsigned i)
{
	if (i < HIST_SUB)
		return i;
	unsigned shift = (i >> HIST_SUB_BITS) - 1;
	uint64_t low = (uint64_t)(HIST_SUB + (i & (HIST_SUB - 1))) << shift;
	return low + ((1ull << shift) >> 1);
}

void hist_add(struct latency_hist *h, uint64_t ns)
{
	h->bucket[hist_index(ns)]++;
	h->count++;
	if (ns > h->max_ns)
		h->max_ns = ns;
}

void hist_merge(struct latency_hist *into, const struct latency_hist *h)
{
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		into->bucket[i] += h->bucket[i];
	into->count += h->count;
	if (h->max_ns > into->max_ns)
		into->max_ns = h->max_ns;
}

uint64_t hist_percentile(const struct latency_hist *h, double pct)
{
	if (h->count == 0)
		return 0;
	uint64_t rank = (uint64_t)ceil(pct / 100.0 * (double)h->count);
	if (rank == 0)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= rank) {
			uint64_t v = hist_value(i);
			return v < h->max_ns ? v : h->max_ns;
		}
	}
	return h->max_ns;
}

int bench_parse_count(const char *cmd, const char *opt, const char *s,
		      unsigned min, unsigned max, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v < min || v > max) {
		cli_usage_error(cmd, "%s wants a number from %u to %u, not '%s'",
				opt, min, max, s);
		return -EINVAL;
	}
	*out = (unsigned)v;
	return 0;
}

int bench_parse_seconds(const char *cmd, const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0) || v > 1e7) {
		cli_usage_error(cmd, "--seconds wants a duration in seconds, not '%s'", s);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

int bench_parse_size(const char *cmd, const char *opt, const char *s, uint64_t *out)
{
	if (parse_size(s, out) == 0)
		return 0;
	cli_usage_error(cmd, "%s wants a size like 4K, 64M or 1G, not '%s'", opt, s);
	return -EINVAL;
}

const char *fmt_latency(uint64_t ns, char *buf, size_t len)
{
	if (ns < 1000000)
		snprintf(buf, len, "%.1f us", (double)ns / 1e3);
	else
		snprintf(buf, len, "%.2f ms", (double)ns / 1e6);
	return buf;
}

int bench_resync_if_needed(const char *cmd, struct mirror *m)
{
	if (mirror_rebuilding_leg(m) < 0)
		return 0;
	struct resync_result res;
	struct cat_error err = { 0 };
	int rc = recovery_resync(m, cli_progress, NULL, &res, &err);
	cli_progress_end();
	if (rc < 0)
		fprintf(stderr, "catamaran %s: resync failed: %s\n", cmd,
			err.msg[0] ? err.msg : strerror(-rc));
	return rc;
}

void start_gate_wait(struct start_gate *g)
{
	pthread_mutex_lock(&g->lock);
	while (!g->open)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

void start_gate_open(struct start_gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->open = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}
