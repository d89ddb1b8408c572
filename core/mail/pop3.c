/*
 * pop3.c - POP3 (RFC 1939, RFC 2449) on the engine of server.h.
 *
 * PASS runs on a worker: mail_user_check (crypt), then mail_list, which
 * takes the maildrop lock (-EBUSY: "-ERR [IN-USE]"), then each message is
 * read once to learn its size as sent (CRLF line ends). A wrong password is
 * answered after srv_auth_delay_ms, the connection parked meanwhile. DELE
 * only marks; QUIT in the TRANSACTION state deletes the marked messages and
 * unlocks (UPDATE state). A session that ends any other way unlocks without
 * deleting, on a detached job.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/mail/pop3.h"

#define POP3_MAX_AUTH_FAILS 3
#define POP3_MAX_ERRORS 20   /* protocol errors before we hang up, as SMTP */

enum pop3_state { ST_AUTH, ST_TRANS };

struct pop3 {
	enum pop3_state state;
	char user[MAIL_NAME_MAX + 1];
	bool have_user, locked;
	struct mail_list list;
	uint64_t *size;  /* as sent, CRLF */
	bool *deleted;
	unsigned fails;
	unsigned errors;
};

/* Convert a stored message (LF or CRLF line ends) to its wire form: CRLF
 * line ends, dot-stuffed when stuff, at most body_lines lines after the
 * header (all when < 0). out may be NULL (count only). Returns the length. */
static size_t wire_form(const char *buf, size_t len, long body_lines, bool stuff, char *out)
{
	size_t o = 0, i = 0;
	bool in_body = false;
	long body = 0;
	while (i < len) {
		if (in_body && body_lines >= 0 && body >= body_lines)
			break;
		const char *nl = memchr(buf + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - buf) : len;
		size_t n = end - i;
		if (nl && n > 0 && buf[end - 1] == '\r')
			n--;
		if (stuff && n > 0 && buf[i] == '.') {
			if (out)
				out[o] = '.';
			o++;
		}
		if (out) {
			memcpy(out + o, buf + i, n);
			out[o + n] = '\r';
			out[o + n + 1] = '\n';
		}
		o += n + 2;
		if (in_body)
			body++;
		else if (n == 0)
			in_body = true;
		i = nl ? end + 1 : len;
	}
	return o;
}

/* The UIDL of a message id. RFC 1939 7: "one to 70 characters in the range
 * 0x21 to 0x7E". Our own Maildir names fit (names.c), but files another
 * program put into the Maildir may be anything (Dovecot's names with
 * ",S=...,W=..." are often over 70 characters): those get "h" and 32 hex
 * digits of a 128-bit hash of the name instead, the same in every session. */
static void uidl_of(const char *id, char out[POP3_UIDL_MAX + 1])
{
	size_t n = strlen(id);
	bool ok = n >= 1 && n <= POP3_UIDL_MAX;
	for (size_t i = 0; ok && i < n; i++)
		ok = (unsigned char)id[i] >= 0x21 && (unsigned char)id[i] <= 0x7e;
	if (ok) {
		memcpy(out, id, n + 1);
		return;
	}
	/* two FNV-1a 64 variants (different offset bases), then a final mix */
	uint64_t a = 0xcbf29ce484222325ull, b = 0x84222325cbf29ce4ull;
	for (size_t i = 0; i < n; i++) {
		a = (a ^ (unsigned char)id[i]) * 0x100000001b3ull;
		b = (b ^ (unsigned char)id[i]) * 0x100000001b3ull;
		b ^= b >> 29;
	}
	a ^= a >> 33;
	a *= 0xff51afd7ed558ccdull;
	a ^= a >> 33;
	b ^= b >> 31;
	b *= 0xc4ceb9fe1a85ec53ull;
	b ^= b >> 33;
	snprintf(out, POP3_UIDL_MAX + 1, "h%016llx%016llx", (unsigned long long)a,
		 (unsigned long long)b);
}

/* ------------------------------- jobs ------------------------------- */

struct pass_job {
	struct srv_job job;
	struct mail_store *store;
	const struct mail_users *users;
	char user[MAIL_NAME_MAX + 1];
	char *pass;
	int auth_rc, rc;
	struct mail_list list;
	uint64_t *size;
};

static void pass_run(struct srv_job *job)
{
	struct pass_job *j = (struct pass_job *)job;
	j->auth_rc = mail_user_check(j->users, j->user, j->pass);
	explicit_bzero(j->pass, strlen(j->pass));
	if (j->auth_rc < 0)
		return;
	j->rc = mail_list(j->store, j->user, &j->list);
	if (j->rc < 0)
		return;
	j->size = calloc(j->list.count ? j->list.count : 1, sizeof(*j->size));
	if (!j->size) {
		mail_unlock(j->store, j->user);
		mail_list_free(&j->list);
		j->rc = -ENOMEM;
		return;
	}
	for (size_t i = 0; i < j->list.count; i++) {
		char *buf;
		size_t len;
		if (mail_read(j->store, j->user, j->list.msgs[i].id, &buf, &len) == 0) {
			j->size[i] = wire_form(buf, len, -1, false, NULL);
			free(buf);
		} else {
			j->size[i] = j->list.msgs[i].size;
		}
	}
}

static void pass_done(struct srv_job *job)
{
	struct pass_job *j = (struct pass_job *)job;
	struct srv_conn *c = job->conn;
	struct pop3 *st = srv_state(c);
	free(j->pass);
	st->have_user = false;
	if (j->auth_rc < 0) {
		st->fails++;
		srv_sleep(c, srv_auth_delay_ms(srv_server(c))); /* on_wake answers */
	} else if (j->rc == -EBUSY) {
		srv_printf(c, "-ERR [IN-USE] maildrop locked\r\n");
	} else if (j->rc < 0) {
		srv_printf(c, "-ERR [SYS/TEMP] cannot open the maildrop: %s\r\n", strerror(-j->rc));
	} else {
		st->locked = true;
		st->state = ST_TRANS;
		snprintf(st->user, sizeof(st->user), "%s", j->user);
		st->list = j->list;
		st->size = j->size;
		st->deleted = calloc(j->list.count ? j->list.count : 1, sizeof(bool));
		if (!st->deleted) {
			srv_printf(c, "-ERR [SYS/TEMP] out of memory\r\n");
			srv_quit(c); /* on_close unlocks */
		} else {
			uint64_t total = 0;
			for (size_t i = 0; i < st->list.count; i++)
				total += st->size[i];
			srv_printf(c, "+OK maildrop has %zu messages (%llu octets)\r\n",
				   st->list.count, (unsigned long long)total);
		}
	}
	free(j);
}

struct read_job {
	struct srv_job job;
	struct mail_store *store;
	char user[MAIL_NAME_MAX + 1];
	char id[MAIL_ID_MAX];
	long lines; /* TOP: body lines; RETR: -1 */
	uint64_t size;
	int rc;
	char *out;
	size_t out_len;
};

static void read_run(struct srv_job *job)
{
	struct read_job *j = (struct read_job *)job;
	char *buf;
	size_t len;
	j->rc = mail_read(j->store, j->user, j->id, &buf, &len);
	if (j->rc < 0)
		return;
	char head[64];
	int hn = j->lines < 0 ? snprintf(head, sizeof(head), "+OK %llu octets\r\n",
					 (unsigned long long)j->size)
			      : snprintf(head, sizeof(head), "+OK top of message follows\r\n");
	size_t body = wire_form(buf, len, j->lines, true, NULL);
	j->out = malloc((size_t)hn + body + 3);
	if (!j->out) {
		free(buf);
		j->rc = -ENOMEM;
		return;
	}
	memcpy(j->out, head, (size_t)hn);
	wire_form(buf, len, j->lines, true, j->out + hn);
	memcpy(j->out + hn + body, ".\r\n", 3);
	j->out_len = (size_t)hn + body + 3;
	free(buf);
}

static void read_done(struct srv_job *job)
{
	struct read_job *j = (struct read_job *)job;
	struct srv_conn *c = job->conn;
	if (j->rc == -ENOENT)
		srv_printf(c, "-ERR no such message (removed by another program?)\r\n");
	else if (j->rc < 0)
		srv_printf(c, "-ERR [SYS/TEMP] cannot read the message: %s\r\n", strerror(-j->rc));
	else
		srv_write(c, j->out, j->out_len);
	free(j->out);
	free(j);
}

struct quit_job {
	struct srv_job job;
	struct mail_store *store;
	char user[MAIL_NAME_MAX + 1];
	char **ids; /* NULL-terminated; NULL: just unlock */
	size_t ndel;
	int rc;
};

static void quit_run(struct srv_job *job)
{
	struct quit_job *j = (struct quit_job *)job;
	j->rc = 0;
	for (size_t i = 0; j->ids && j->ids[i]; i++) {
		int rc = mail_delete(j->store, j->user, j->ids[i]);
		if (rc < 0 && rc != -ENOENT && j->rc == 0)
			j->rc = rc;
		if (rc == 0)
			j->ndel++;
	}
	int rc = mail_unlock(j->store, j->user);
	if (rc < 0 && j->rc == 0)
		j->rc = rc;
	free(j->ids);
	j->ids = NULL;
	if (!job->conn) /* detached */
		free(j);
}

static void quit_done(struct srv_job *job)
{
	struct quit_job *j = (struct quit_job *)job;
	struct srv_conn *c = job->conn;
	if (j->rc == 0)
		srv_printf(c, "+OK Catamaran POP3 server signing off (%zu messages deleted)\r\n",
			   j->ndel);
	else
		srv_printf(c, "-ERR [SYS/TEMP] some deleted messages not removed: %s\r\n",
			   strerror(-j->rc));
	srv_quit(c);
	free(j);
}

/* ----------------------------- sessions ----------------------------- */

static int pop3_open(struct srv_conn *c)
{
	struct pop3 *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	srv_set_state(c, st);
	srv_set_line_max(c, POP3_LINE_MAX);
	srv_printf(c, "+OK Catamaran POP3 server ready\r\n");
	return 0;
}

static void drop_list(struct pop3 *st)
{
	mail_list_free(&st->list);
	memset(&st->list, 0, sizeof(st->list));
	free(st->size);
	free(st->deleted);
	st->size = NULL;
	st->deleted = NULL;
}

static void pop3_close(struct srv_conn *c)
{
	struct pop3 *st = srv_state(c);
	if (!st)
		return;
	if (st->locked) { /* no QUIT: unlock, delete nothing */
		struct quit_job *j = calloc(1, sizeof(*j));
		if (j) {
			j->job.run = quit_run;
			j->store = srv_store(srv_server(c));
			snprintf(j->user, sizeof(j->user), "%s", st->user);
			srv_submit_detached(srv_server(c), &j->job);
		} else {
			mail_unlock(srv_store(srv_server(c)), st->user);
		}
	}
	drop_list(st);
	free(st);
	srv_set_state(c, NULL);
}

static void pop3_wake(struct srv_conn *c)
{
	struct pop3 *st = srv_state(c);
	srv_printf(c, "-ERR [AUTH] invalid user name or password\r\n");
	if (st->fails >= POP3_MAX_AUTH_FAILS)
		srv_quit(c);
}

static void pop3_timeout(struct srv_conn *c)
{
	srv_printf(c, "-ERR [SYS/TEMP] autologout: idle timeout\r\n");
}

/* "n" -> index of a message that exists and is not deleted, or -1. */
static long msg_index(struct pop3 *st, const char *s)
{
	if (*s < '0' || *s > '9')
		return -1;
	char *e;
	errno = 0;
	unsigned long n = strtoul(s, &e, 10);
	if (errno || (*e && *e != ' ') || n == 0 || n > st->list.count || st->deleted[n - 1])
		return -1;
	return (long)n - 1;
}

static void cmd_list(struct srv_conn *c, struct pop3 *st, const char *arg, bool uidl)
{
	if (*arg) {
		long i = msg_index(st, arg);
		if (i < 0) {
			srv_printf(c, "-ERR no such message\r\n");
		} else if (uidl) {
			char u[POP3_UIDL_MAX + 1];
			uidl_of(st->list.msgs[i].id, u);
			srv_printf(c, "+OK %ld %s\r\n", i + 1, u);
		} else {
			srv_printf(c, "+OK %ld %llu\r\n", i + 1, (unsigned long long)st->size[i]);
		}
		return;
	}
	srv_printf(c, "+OK\r\n");
	for (size_t i = 0; i < st->list.count; i++) {
		if (st->deleted[i])
			continue;
		if (uidl) {
			char u[POP3_UIDL_MAX + 1];
			uidl_of(st->list.msgs[i].id, u);
			srv_printf(c, "%zu %s\r\n", i + 1, u);
		} else
			srv_printf(c, "%zu %llu\r\n", i + 1, (unsigned long long)st->size[i]);
	}
	srv_printf(c, ".\r\n");
}

static void cmd_read(struct srv_conn *c, struct pop3 *st, const char *arg, bool top)
{
	long i = msg_index(st, arg);
	if (i < 0) {
		srv_printf(c, "-ERR no such message\r\n");
		return;
	}
	long lines = -1;
	if (top) {
		const char *k = arg + strcspn(arg, " ");
		while (*k == ' ')
			k++;
		char *e;
		errno = 0;
		lines = *k >= '0' && *k <= '9' ? strtol(k, &e, 10) : -1;
		if (lines < 0 || errno || *e) {
			srv_printf(c, "-ERR syntax: TOP msg n\r\n");
			return;
		}
	}
	struct read_job *j = calloc(1, sizeof(*j));
	if (!j) {
		srv_printf(c, "-ERR [SYS/TEMP] out of memory\r\n");
		return;
	}
	j->job.run = read_run;
	j->job.done = read_done;
	j->store = srv_store(srv_server(c));
	snprintf(j->user, sizeof(j->user), "%s", st->user);
	snprintf(j->id, sizeof(j->id), "%s", st->list.msgs[i].id);
	j->lines = lines;
	j->size = st->size[i];
	srv_submit(c, &j->job);
}

static void cmd_quit(struct srv_conn *c, struct pop3 *st)
{
	if (st->state == ST_AUTH) {
		srv_printf(c, "+OK Catamaran POP3 server signing off\r\n");
		srv_quit(c);
		return;
	}
	struct quit_job *j = calloc(1, sizeof(*j));
	size_t n = 0;
	for (size_t i = 0; i < st->list.count; i++)
		n += st->deleted[i];
	char **ids = j ? calloc(n + 1, sizeof(char *)) : NULL;
	if (!ids) {
		free(j);
		srv_printf(c, "-ERR [SYS/TEMP] out of memory\r\n");
		return;
	}
	/* the ids point into a list that moves to the job's lifetime: copy */
	size_t k = 0;
	for (size_t i = 0; i < st->list.count; i++)
		if (st->deleted[i])
			ids[k++] = st->list.msgs[i].id;
	j->job.run = quit_run;
	j->job.done = quit_done;
	j->store = srv_store(srv_server(c));
	snprintf(j->user, sizeof(j->user), "%s", st->user);
	j->ids = ids;
	/* UPDATE state: the lock goes with the job; st->list stays alive
	 * (ids point into it) until on_close, after the job is done. */
	st->locked = false;
	srv_submit(c, &j->job);
}

/* A command that no client of ours sends: junk or a probe. The last one
 * allowed is answered with the hang-up instead of its own error. */
static void protocol_error(struct srv_conn *c, struct pop3 *st, const char *text)
{
	if (++st->errors >= POP3_MAX_ERRORS) {
		srv_printf(c, "-ERR too many errors, closing the connection\r\n");
		srv_quit(c);
		return;
	}
	srv_printf(c, "-ERR %s\r\n", text);
}

static void pop3_line(struct srv_conn *c, char *line, size_t len, bool too_long)
{
	struct pop3 *st = srv_state(c);
	if (too_long) {
		protocol_error(c, st, "line too long");
		return;
	}
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		line[--len] = '\0';
	char *arg = line + strcspn(line, " ");
	size_t vlen = (size_t)(arg - line);
	if (*arg == ' ')
		arg++;
#define IS(v) (vlen == sizeof(v) - 1 && strncasecmp(line, v, vlen) == 0)
	if (IS("CAPA")) {
		srv_printf(c, "+OK Capability list follows\r\nUSER\r\nUIDL\r\nTOP\r\n"
			      "PIPELINING\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
			      "IMPLEMENTATION Catamaran\r\n.\r\n");
	} else if (IS("QUIT")) {
		cmd_quit(c, st);
	} else if (IS("NOOP") && st->state == ST_TRANS) {
		srv_printf(c, "+OK\r\n");
	} else if (st->state == ST_AUTH) {
		if (IS("USER")) {
			if (!*arg || strlen(arg) > MAIL_NAME_MAX) {
				/* an impossible name: PASS will fail the usual way */
				snprintf(st->user, sizeof(st->user), "%s", "");
			} else {
				snprintf(st->user, sizeof(st->user), "%s", arg);
			}
			st->have_user = true;
			srv_printf(c, "+OK\r\n");
		} else if (IS("PASS")) {
			if (!st->have_user) {
				protocol_error(c, st, "USER first");
				return;
			}
			struct pass_job *j = calloc(1, sizeof(*j));
			char *pass = j ? strdup(arg) : NULL;
			if (!pass) {
				free(j);
				srv_printf(c, "-ERR [SYS/TEMP] out of memory\r\n");
				return;
			}
			explicit_bzero(arg, strlen(arg));
			j->job.run = pass_run;
			j->job.done = pass_done;
			j->store = srv_store(srv_server(c));
			j->users = srv_users(srv_server(c));
			snprintf(j->user, sizeof(j->user), "%s", st->user);
			j->pass = pass;
			srv_submit(c, &j->job);
		} else {
			protocol_error(c, st, "command not valid before login");
		}
	} else if (IS("STAT")) {
		size_t n = 0;
		uint64_t total = 0;
		for (size_t i = 0; i < st->list.count; i++)
			if (!st->deleted[i]) {
				n++;
				total += st->size[i];
			}
		srv_printf(c, "+OK %zu %llu\r\n", n, (unsigned long long)total);
	} else if (IS("LIST")) {
		cmd_list(c, st, arg, false);
	} else if (IS("UIDL")) {
		cmd_list(c, st, arg, true);
	} else if (IS("RETR")) {
		cmd_read(c, st, arg, false);
	} else if (IS("TOP")) {
		cmd_read(c, st, arg, true);
	} else if (IS("DELE")) {
		long i = msg_index(st, arg);
		if (i < 0) {
			srv_printf(c, "-ERR no such message\r\n");
		} else {
			st->deleted[i] = true;
			srv_printf(c, "+OK message %ld deleted\r\n", i + 1);
		}
	} else if (IS("RSET")) {
		for (size_t i = 0; i < st->list.count; i++)
			st->deleted[i] = false;
		srv_printf(c, "+OK\r\n");
	} else {
		protocol_error(c, st, "unknown command");
	}
#undef IS
}

const struct srv_proto pop3_proto = {
	.name = "pop3",
	.full_reply = "-ERR [SYS/TEMP] %s: too many connections, try again later\r\n",
	.on_open = pop3_open,
	.on_line = pop3_line,
	.on_wake = pop3_wake,
	.on_timeout = pop3_timeout,
	.on_close = pop3_close,
};
