/*
 * error.h - an errno plus a one-line message for the person at the terminal.
 *
 * Library functions return 0 or a negative errno. Those that can fail for a
 * reason a user must read (bad superblock, UUID mismatch, ...) also fill a
 * struct cat_error, whose message names the object and the problem, e.g.
 * "disk 2 (/srv/b.img): superblock checksum mismatch". Never exit() here.
 */
#ifndef CAT_BASE_ERROR_H
#define CAT_BASE_ERROR_H

#include <stddef.h>

struct cat_error {
	int code;          /* negative errno, 0 when none */
	char msg[512];
};

/* Record code and a printf-style message in err (err may be NULL);
 * returns code so callers can write `return cat_error_set(err, -EIO, ...)`. */
int cat_error_set(struct cat_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

void cat_error_clear(struct cat_error *err);

#endif
