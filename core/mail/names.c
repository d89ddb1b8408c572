/*
 * names.c - user names and Maildir file names.
 *
 * Our unique names are "SEC.M<usec>P<pid>Q<n>.HOST": SEC the Unix time,
 * usec zero-padded to 6 digits (so names of one host sort by time), n a
 * per-process delivery counter, HOST the host name with every character
 * other than [A-Za-z0-9-] replaced by '_' (so it never holds '/' or ':'),
 * cut at MAIL_HOST_MAX characters: an id is at most 70 characters (until
 * 10^10 deliveries by one process), as POP3 UIDL requires.
 */
#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/mail/mail_internal.h"

static atomic_ulong delivery_counter;

static bool name_char(char c)
{
	return isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-';
}

bool mail_name_valid(const char *name)
{
	if (!name || name[0] == '\0' || name[0] == '.')
		return false;
	size_t n = 0;
	for (; name[n]; n++) {
		if (n >= MAIL_NAME_MAX || !name_char(name[n]))
			return false;
	}
	return true;
}

void name_host(char *out)
{
	char raw[256];
	if (gethostname(raw, sizeof raw) < 0 || raw[0] == '\0')
		strcpy(raw, "localhost");
	raw[sizeof raw - 1] = '\0';
	size_t i = 0;
	for (; raw[i] && i < MAIL_HOST_MAX; i++) {
		char c = raw[i];
		out[i] = (isalnum((unsigned char)c) || c == '-') ? c : '_';
	}
	out[i] = '\0';
}

unsigned name_hash(const char *user)
{
	unsigned h = 2166136261u;   /* FNV-1a */
	for (const char *p = user; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h;
}

/* Append the decimal digits of v (at least width of them, zero-padded). */
static char *put_decimal(char *p, unsigned long long v, int width)
{
	char digits[24];
	int n = 0;
	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	while (n < width)
		digits[n++] = '0';
	while (n > 0)
		*p++ = digits[--n];
	return p;
}

/* "SEC.M<usec>P<pid>Q<n>.HOST", formatted by hand: it is made for every
 * delivery. */
int name_unique(const struct mail_store *store, char *out, size_t size)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
		return -errno;
	unsigned long q = atomic_fetch_add(&delivery_counter, 1) + 1;
	size_t host_len = strlen(store->host);
	if (size < 3 * 24 + 6 + host_len)
		return -ENAMETOOLONG;
	char *p = put_decimal(out, (unsigned long long)ts.tv_sec, 1);
	*p++ = '.';
	*p++ = 'M';
	p = put_decimal(p, (unsigned long long)(ts.tv_nsec / 1000), 6);
	*p++ = 'P';
	p = put_decimal(p, (unsigned long long)store->pid, 1);
	*p++ = 'Q';
	p = put_decimal(p, q, 1);
	*p++ = '.';
	memcpy(p, store->host, host_len + 1);
	return 0;
}

/* The id of a file name: everything before the ":2," info part. */
size_t name_id_len(const char *name)
{
	const char *colon = strchr(name, ':');
	return colon ? (size_t)(colon - name) : strlen(name);
}

/* An id a caller may pass: a plain file name without the info part. */
bool name_id_valid(const char *id)
{
	if (!id || id[0] == '\0' || id[0] == '.')
		return false;
	size_t n = strlen(id);
	return n < MAIL_ID_MAX && !strchr(id, '/') && !strchr(id, ':');
}

static const char *skip_digits(const char *p)
{
	const char *start = p;
	while (isdigit((unsigned char)*p))
		p++;
	return p > start ? p : NULL;
}

/* True if name is "SEC.M<usec>P<pid>Q<n>.HOST" with our HOST; sets pid. */
bool name_is_ours(const struct mail_store *store, const char *name,
		  pid_t *pid)
{
	const char *p = skip_digits(name);
	if (!p || p[0] != '.' || p[1] != 'M')
		return false;
	p = skip_digits(p + 2);
	if (!p || *p != 'P')
		return false;
	char *end;
	errno = 0;
	long v = strtol(p + 1, &end, 10);
	if (errno || end == p + 1 || v <= 0 || v > 0x3fffffff || *end != 'Q')
		return false;
	p = skip_digits(end + 1);
	if (!p || *p != '.' || strcmp(p + 1, store->host) != 0)
		return false;
	*pid = (pid_t)v;
	return true;
}
