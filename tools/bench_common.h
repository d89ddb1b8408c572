/*
 * bench_common.h - pieces shared by the `catamaran bench` commands
 * (cmd_bench.c, cmd_bench_fs.c): option parsing, a start gate, a latency histogram,
 * latency formatting, and the resync a bench runs before loading a mirror
 * left unclean.
 */
#ifndef CAT_TOOLS_BENCH_COMMON_H
#define CAT_TOOLS_BENCH_COMMON_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mirror;

/* Log-linear buckets: 16 per power of two, so a percentile is within
 * 1/16 (6%) of the true value; exact below 16 ns. One per thread (no
 * locking); merge them at the end. */
#define HIST_SUB_BITS 4
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (64u * HIST_SUB)

struct latency_hist {
	uint64_t count, max_ns;
	uint64_t bucket[HIST_BUCKETS];
};

void hist_add(struct latency_hist *h, uint64_t ns);
void hist_merge(struct latency_hist *into, const struct latency_hist *h);
/* The pct-th percentile (0 < pct <= 100) in ns; 0 when empty. */
uint64_t hist_percentile(const struct latency_hist *h, double pct);

/* Start gate: workers wait until the main thread opens it, so thread
 * creation is not timed. Initialise with START_GATE_INIT. */
struct start_gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool open;
};
#define START_GATE_INIT { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false }
void start_gate_wait(struct start_gate *g);
void start_gate_open(struct start_gate *g);

/* Option values. On junk each prints "catamaran CMD: OPT wants ..., not
 * 'VALUE' (see 'catamaran CMD --help')" and returns -EINVAL. */
int bench_parse_count(const char *cmd, const char *opt, const char *s,
		      unsigned min, unsigned max, unsigned *out);
/* --seconds: a duration >= 0 (fractions allowed). */
int bench_parse_seconds(const char *cmd, const char *s, double *out);
/* A size like 4096, 4K, 64M, 1G. */
int bench_parse_size(const char *cmd, const char *opt, const char *s, uint64_t *out);

/* "812.4 us" below 1 ms, else "3.25 ms". Returns buf. */
const char *fmt_latency(uint64_t ns, char *buf, size_t len);

/* An unclean shutdown leaves stale chunks: copy them (with a progress bar)
 * before loading. Errors are printed as "catamaran CMD: resync failed: ..."
 * and returned as -errno. */
int bench_resync_if_needed(const char *cmd, struct mirror *m);

#endif
