/*
 * util.h - small helpers shared by every layer: sizes, UUIDs, clocks,
 * aligned buffers, a seeded PRNG. No locking: all functions are pure or
 * touch only their arguments.
 */
#ifndef CAT_BASE_UTIL_H
#define CAT_BASE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "4096", "64K", "1M", "8G", "1T" (binary units, optional "iB"/"B").
 * Returns 0, or -EINVAL on junk, -ERANGE on overflow. */
int parse_size(const char *s, uint64_t *out);

/* "1.5 GiB"-style rendering into buf. Returns buf. */
const char *format_size(uint64_t bytes, char *buf, size_t len);

/* 16 random bytes with the RFC 4122 version-4 bits; and its text form. */
int uuid_generate(uint8_t uuid[16]);
void uuid_format(const uint8_t uuid[16], char out[37]);

uint64_t now_ns(void);        /* CLOCK_MONOTONIC */
uint64_t wallclock_ns(void);  /* CLOCK_REALTIME */

/* 4 KiB-aligned allocation for O_DIRECT; free with free(). NULL on ENOMEM. */
void *block_alloc(size_t bytes);

/* splitmix64/xorshift PRNG: deterministic for a seed, one state per user. */
struct prng { uint64_t s; };
void prng_seed(struct prng *r, uint64_t seed);
uint64_t prng_next(struct prng *r);
uint64_t prng_below(struct prng *r, uint64_t n); /* uniform in [0, n) */

#endif
