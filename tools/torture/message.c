/*
 * message.c - torture messages that check themselves (torture.h).
 *
 * A message carries its ledger token and the hash of its body in headers,
 * so any copy of it - a file in a Maildir, a POP3 RETR - can be checked
 * without the ledger: a cut or mixed-up message fails its own hash. Bodies
 * have random sizes (a few hundred bytes to ~40 KiB) and some lines start
 * with '.', so dot-stuffing is exercised both ways.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "tools/torture/torture.h"

uint64_t body_hash(const char *body, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < len; i++) {
		if (body[i] == '\r' && i + 1 < len && body[i + 1] == '\n')
			continue;
		h = (h ^ (uint8_t)body[i]) * 0x100000001b3ull;
	}
	return h;
}

static size_t random_body(char *buf, size_t len, struct prng *rng)
{
	static const char alphabet[] =
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:-";
	size_t n = 0;
	while (n + 80 < len) {
		size_t line = 1 + prng_next(rng) % 76;
		for (size_t i = 0; i < line; i++)
			buf[n++] = alphabet[prng_next(rng) % (sizeof(alphabet) - 1)];
		if (prng_next(rng) % 16 == 0)
			buf[n - line] = '.';
		buf[n++] = '\r';
		buf[n++] = '\n';
	}
	return n;
}

char *message_build(struct ledger *l, int user, struct prng *rng, size_t *len, size_t *idx)
{
	size_t body_max = 300 + prng_below(rng, prng_below(rng, 8) ? 4000 : 40000);
	char *body = malloc(body_max);
	char *msg = malloc(body_max + 512);
	if (!body || !msg) {
		fprintf(stderr, "catamaran torture: out of memory\n");
		exit(2);
	}
	size_t blen = random_body(body, body_max, rng);
	uint64_t h = body_hash(body, blen);
	char token[32];
	*idx = ledger_new(l, user, h, token);
	int hl = snprintf(msg, 512,
			  "From: <torture@localhost>\r\nTo: <user%d@localhost>\r\n"
			  "Subject: torture %s\r\nX-Torture-Id: %s\r\n"
			  "X-Torture-Hash: %016" PRIx64 "\r\n\r\n",
			  user, token, token, h);
	memcpy(msg + hl, body, blen);
	free(body);
	*len = (size_t)hl + blen;
	return msg;
}

/* The value of header name (up to the end of its line) in the header block
 * [msg, end); copies at most cap - 1 bytes. */
static int header_value(const char *msg, const char *end, const char *name, char *out,
			size_t cap)
{
	size_t nl = strlen(name);
	for (const char *p = msg; p < end;) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		if ((size_t)(eol - p) > nl && !strncasecmp(p, name, nl)) {
			const char *v = p + nl;
			while (v < eol && *v == ' ')
				v++;
			size_t n = (size_t)(eol - v);
			if (n && v[n - 1] == '\r')
				n--;
			if (n >= cap)
				return -EBADMSG;
			memcpy(out, v, n);
			out[n] = '\0';
			return 0;
		}
		p = eol + 1;
	}
	return -EBADMSG;
}

int message_check(const char *msg, size_t len, char token[32])
{
	const char *end = msg + len, *body = NULL;
	for (const char *p = msg; p < end; p++)
		if (*p == '\n' && (p + 1 < end) && (p[1] == '\n' ||
		    (p[1] == '\r' && p + 2 < end && p[2] == '\n'))) {
			body = p + (p[1] == '\n' ? 2 : 3);
			break;
		}
	char hash_hex[32];
	token[0] = '\0';
	if (!body || header_value(msg, body, "X-Torture-Id:", token, 32) ||
	    header_value(msg, body, "X-Torture-Hash:", hash_hex, sizeof(hash_hex)))
		return -EBADMSG;
	uint64_t want = strtoull(hash_hex, NULL, 16);
	return body_hash(body, (size_t)(end - body)) == want ? 0 : -EBADMSG;
}
