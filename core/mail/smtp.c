/*
 * smtp.c - SMTP (RFC 5321) for local delivery, on the engine of server.h.
 *
 * Messages are stored with LF line ends (the Maildir convention; POP3 sends
 * them back with CRLF), after dot-unstuffing, with a Return-Path: and a
 * Received: header first. A DATA line ending in a bare LF, or holding a
 * bare CR, rejects the whole message (SMTP smuggling); only CRLF.CRLF ends
 * DATA.
 *
 * LMTP (RFC 2033, lmtp_proto) is the same state machine with three
 * differences: LHLO instead of HELO/EHLO (which get 500), one reply per
 * accepted RCPT after the final dot (in RCPT order, duplicates included:
 * a mailbox named twice gets one copy and two replies), and 503 for DATA
 * without a valid recipient. A message rejected as a whole (too big, bare
 * CR/LF, long line) gets the same reply once per recipient.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/mail/smtp.h"

#define SMTP_MAX_ERRORS 20
/* The longest DATA line on the wire: a text line of SMTP_TEXT_LINE_MAX
 * octets (CRLF included) plus the dot added by dot-stuffing. */
#define DATA_LINE_WIRE_MAX (SMTP_TEXT_LINE_MAX + 1)

enum data_err { DATA_OK, DATA_TOO_BIG, DATA_BARE, DATA_LONG_LINE, DATA_NOMEM };

struct smtp {
	char helo[256];
	bool lmtp, greeted, esmtp, in_tx, in_data;
	char from[SMTP_CMD_LINE_MAX];
	char (*rcpt)[MAIL_NAME_MAX + 1];
	size_t nrcpt;
	enum data_err data_err;
	char *msg;
	size_t msg_len, msg_cap;
	uint64_t data_size;
	unsigned errors;
};

struct deliver_job {
	struct srv_job job;
	struct mail_store *store;
	char *msg;
	size_t len;
	char (*rcpt)[MAIL_NAME_MAX + 1];
	size_t nrcpt;
	bool lmtp;
	int rc;                   /* the first error */
	int *rcs;                 /* per recipient */
	char (*ids)[MAIL_ID_MAX]; /* per recipient */
};

static void reset_tx(struct smtp *st)
{
	st->in_tx = st->in_data = false;
	st->from[0] = '\0';
	st->nrcpt = 0;
	free(st->msg);
	st->msg = NULL;
	st->msg_len = st->msg_cap = 0;
	st->data_size = 0;
	st->data_err = DATA_OK;
}

static int open_session(struct srv_conn *c, bool lmtp)
{
	struct smtp *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->lmtp = lmtp;
	srv_set_state(c, st);
	srv_set_line_max(c, SMTP_CMD_LINE_MAX);
	srv_printf(c, "220 %s %s Catamaran\r\n", srv_hostname(srv_server(c)),
		   lmtp ? "LMTP" : "ESMTP");
	return 0;
}

static int smtp_open(struct srv_conn *c)
{
	return open_session(c, false);
}

static int lmtp_open(struct srv_conn *c)
{
	return open_session(c, true);
}

static void smtp_close(struct srv_conn *c)
{
	struct smtp *st = srv_state(c);
	if (!st)
		return;
	reset_tx(st); /* a partial message is discarded */
	free(st->rcpt);
	free(st);
	srv_set_state(c, NULL);
}

static void smtp_timeout(struct srv_conn *c)
{
	srv_printf(c, "421 4.4.2 %s Error: timeout exceeded\r\n", srv_hostname(srv_server(c)));
}

static bool msg_append(struct smtp *st, const char *p, size_t n)
{
	if (st->msg_len + n + 1 > st->msg_cap) {
		size_t cap = st->msg_cap ? st->msg_cap : 4096;
		while (cap < st->msg_len + n + 1)
			cap *= 2;
		char *m = realloc(st->msg, cap);
		if (!m)
			return false;
		st->msg = m;
		st->msg_cap = cap;
	}
	memcpy(st->msg + st->msg_len, p, n);
	st->msg_len += n;
	return true;
}

/* Printable ASCII only, for what a client says that we store in headers. */
static void sanitize(char *dst, size_t cap, const char *src)
{
	size_t j = 0;
	for (size_t i = 0; src[i] && j + 1 < cap; i++) {
		unsigned char ch = (unsigned char)src[i];
		if (ch > 32 && ch < 127 && ch != '<' && ch != '>' && ch != '(' && ch != ')')
			dst[j++] = (char)ch;
	}
	dst[j] = '\0';
}

static void start_message(struct srv_conn *c, struct smtp *st)
{
	char date[64], helo[128];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	sanitize(helo, sizeof(helo), st->helo);
	char hdr[1024];
	int n = snprintf(hdr, sizeof(hdr),
			 "Return-Path: <%s>\n"
			 "Received: from %s ([%s])\n"
			 "\tby %s (Catamaran) with %s;\n"
			 "\t%s\n",
			 st->from, helo[0] ? helo : "unknown", srv_peer(c),
			 srv_hostname(srv_server(c)),
			 st->lmtp ? "LMTP" : st->esmtp ? "ESMTP" : "SMTP", date);
	if (n < 0 || (size_t)n >= sizeof(hdr) || !msg_append(st, hdr, (size_t)n))
		st->data_err = DATA_NOMEM;
}

/* SMTP has one reply to DATA for all recipients. When one delivery failed
 * the client will send the message again to all of them, so the copies
 * already delivered are withdrawn first: no duplicates, unless a POP3
 * session took a copy in the meantime (mail_withdraw leaves those). */
static void withdraw_delivered(struct deliver_job *j)
{
	for (size_t i = 0; i < j->nrcpt; i++)
		if (j->rcs[i] == 0)
			(void)mail_withdraw(j->store, j->rcpt[i], j->ids[i]);
}

static void deliver_run(struct srv_job *job)
{
	struct deliver_job *j = (struct deliver_job *)job;
	j->rc = 0;
	for (size_t i = 0; i < j->nrcpt; i++) {
		size_t k = 0; /* LMTP keeps duplicates: deliver one copy */
		while (j->lmtp && k < i && strcmp(j->rcpt[k], j->rcpt[i]) != 0)
			k++;
		int rc;
		if (j->lmtp && k < i) {
			rc = j->rcs[k];
			memcpy(j->ids[i], j->ids[k], MAIL_ID_MAX);
		} else {
			rc = mail_deliver(j->store, j->rcpt[i], j->msg, j->len, j->ids[i]);
		}
		j->rcs[i] = rc;
		if (rc < 0 && j->rc == 0)
			j->rc = rc;
	}
	if (!j->lmtp && j->rc < 0)
		withdraw_delivered(j);
}

static void deliver_done(struct srv_job *job)
{
	struct deliver_job *j = (struct deliver_job *)job;
	struct srv_conn *c = job->conn;
	if (!j->lmtp && j->rc == 0) {
		srv_printf(c, "250 2.0.0 Ok: queued as %s\r\n", j->ids[0]);
	} else if (!j->lmtp) {
		srv_printf(c, "451 4.3.0 Local delivery failed (%s), try again later\r\n",
			   strerror(-j->rc));
	} else {
		for (size_t i = 0; i < j->nrcpt; i++) {
			int rc = j->rcs[i];
			if (rc == 0)
				srv_printf(c, "250 2.0.0 <%s> Ok: delivered as %s\r\n",
					   j->rcpt[i], j->ids[i]);
			else if (rc == -ENOSPC || rc == -EDQUOT)
				srv_printf(c, "452 4.2.2 <%s> Mailbox full (%s), try again later\r\n",
					   j->rcpt[i], strerror(-rc));
			else
				srv_printf(c, "451 4.3.0 <%s> Local delivery failed (%s), "
					      "try again later\r\n", j->rcpt[i], strerror(-rc));
		}
	}
	free(j->msg);
	free(j->rcpt);
	free(j->rcs);
	free(j->ids);
	free(j);
}

/* A reply to the end of DATA for the message as a whole: once in SMTP,
 * once per accepted recipient in LMTP (RFC 2033 4.2). */
__attribute__((format(printf, 3, 4)))
static void data_reply(struct srv_conn *c, const struct smtp *st, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	size_t n = st->lmtp ? st->nrcpt : 1;
	for (size_t i = 0; i < n; i++)
		srv_printf(c, "%s\r\n", buf);
}

static void end_of_data(struct srv_conn *c, struct smtp *st)
{
	srv_set_line_max(c, SMTP_CMD_LINE_MAX);
	st->in_data = false;
	switch (st->data_err) {
	case DATA_TOO_BIG:
		data_reply(c, st, "552 5.3.4 Message size exceeds fixed limit of %llu bytes",
			   (unsigned long long)srv_max_size(srv_server(c)));
		reset_tx(st);
		return;
	case DATA_BARE:
		data_reply(c, st, "554 5.6.0 Message contains a bare CR or LF, rejected");
		reset_tx(st);
		return;
	case DATA_LONG_LINE:
		data_reply(c, st, "500 5.5.2 Message contains a line longer than %d bytes",
			   SMTP_TEXT_LINE_MAX);
		reset_tx(st);
		return;
	case DATA_NOMEM:
		data_reply(c, st, "452 4.3.1 Insufficient system storage");
		reset_tx(st);
		return;
	case DATA_OK:
		break;
	}
	struct deliver_job *j = calloc(1, sizeof(*j));
	if (j) {
		j->lmtp = st->lmtp;
		j->rcs = calloc(st->nrcpt, sizeof(*j->rcs));
		j->ids = calloc(st->nrcpt, sizeof(*j->ids));
		if (!j->rcs || !j->ids) {
			free(j->rcs);
			free(j->ids);
			free(j);
			j = NULL;
		}
	}
	if (!j) {
		data_reply(c, st, "452 4.3.1 Insufficient system storage");
		reset_tx(st);
		return;
	}
	j->job.run = deliver_run;
	j->job.done = deliver_done;
	j->store = srv_store(srv_server(c));
	j->msg = st->msg;
	j->len = st->msg_len;
	j->rcpt = st->rcpt; /* ownership moves to the job */
	j->nrcpt = st->nrcpt;
	st->msg = NULL;
	st->rcpt = NULL;
	reset_tx(st);
	srv_submit(c, &j->job);
}

static void data_line(struct srv_conn *c, struct smtp *st, char *line, size_t len, bool too_long)
{
	/* RFC 5321 4.5.3.1.6: 1000 octets with the CRLF, "not counting the
	 * leading dot duplicated for transparency": the engine lets one more
	 * octet through (DATA_LINE_WIRE_MAX), allowed for a stuffed line only. */
	if (too_long || len > (size_t)SMTP_TEXT_LINE_MAX + (line[0] == '.')) {
		if (st->data_err == DATA_OK)
			st->data_err = DATA_LONG_LINE;
		return;
	}
	bool crlf = len >= 2 && line[len - 2] == '\r';
	size_t n = len - (crlf ? 2 : 1);
	if (crlf && n == 1 && line[0] == '.') {
		end_of_data(c, st);
		return;
	}
	if (!crlf || memchr(line, '\r', n)) {
		if (st->data_err == DATA_OK)
			st->data_err = DATA_BARE;
		return;
	}
	const char *p = line;
	if (n > 0 && p[0] == '.') { /* dot-unstuffing */
		p++;
		n--;
	}
	st->data_size += n + 2; /* as sent on the wire, for SIZE */
	if (st->data_err != DATA_OK)
		return;
	if (st->data_size > srv_max_size(srv_server(c))) {
		st->data_err = DATA_TOO_BIG;
		free(st->msg);
		st->msg = NULL;
		st->msg_len = st->msg_cap = 0;
		return;
	}
	if (!msg_append(st, p, n) || !msg_append(st, "\n", 1))
		st->data_err = DATA_NOMEM;
}

/* Parse "<path> params" after FROM:/TO:. addr gets the path without the
 * brackets; returns the parameters, or NULL on a syntax error. */
static char *parse_path(char *s, char *addr, size_t cap)
{
	while (*s == ' ')
		s++;
	char *end;
	if (*s == '<') {
		end = strchr(s + 1, '>');
		if (!end)
			return NULL;
		s++;
	} else {
		end = s + strcspn(s, " ");
		if (end == s)
			return NULL;
	}
	size_t n = (size_t)(end - s);
	if (n >= cap)
		return NULL;
	memcpy(addr, s, n);
	addr[n] = '\0';
	if (*end == '>')
		end++;
	if (*end && *end != ' ')
		return NULL;
	while (*end == ' ')
		end++;
	return end;
}

static void cmd_mail(struct srv_conn *c, struct smtp *st, char *arg)
{
	if (!st->greeted) {
		srv_printf(c, "503 5.5.1 Error: send HELO/EHLO first\r\n");
		return;
	}
	if (st->in_tx) {
		srv_printf(c, "503 5.5.1 Error: nested MAIL command\r\n");
		return;
	}
	if (strncasecmp(arg, "FROM:", 5) != 0) {
		srv_printf(c, "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
		return;
	}
	char addr[SMTP_CMD_LINE_MAX];
	char *params = parse_path(arg + 5, addr, sizeof(addr));
	if (!params) {
		srv_printf(c, "501 5.1.7 Bad sender address syntax\r\n");
		return;
	}
	while (*params) {
		char *sp = params + strcspn(params, " ");
		char save = *sp;
		*sp = '\0';
		if (strncasecmp(params, "SIZE=", 5) == 0) {
			char *e;
			errno = 0;
			unsigned long long size = strtoull(params + 5, &e, 10);
			if (*e || e == params + 5 || errno) {
				srv_printf(c, "501 5.5.4 Bad SIZE parameter\r\n");
				return;
			}
			if (size > srv_max_size(srv_server(c))) {
				srv_printf(c, "552 5.3.4 Message size exceeds fixed limit of %llu bytes\r\n",
					   (unsigned long long)srv_max_size(srv_server(c)));
				return;
			}
		} else if (strcasecmp(params, "BODY=8BITMIME") != 0 &&
			   strcasecmp(params, "BODY=7BIT") != 0) {
			srv_printf(c, "555 5.5.4 Unsupported MAIL parameter\r\n");
			return;
		}
		*sp = save;
		params = sp;
		while (*params == ' ')
			params++;
	}
	sanitize(st->from, sizeof(st->from), addr);
	st->in_tx = true;
	st->nrcpt = 0;
	srv_printf(c, "250 2.1.0 Ok\r\n");
}

static void cmd_rcpt(struct srv_conn *c, struct smtp *st, char *arg)
{
	if (!st->in_tx) {
		srv_printf(c, "503 5.5.1 Error: need MAIL command\r\n");
		return;
	}
	if (strncasecmp(arg, "TO:", 3) != 0) {
		srv_printf(c, "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
		return;
	}
	char addr[SMTP_CMD_LINE_MAX];
	char *params = parse_path(arg + 3, addr, sizeof(addr));
	if (!params || !addr[0]) {
		srv_printf(c, "501 5.1.3 Bad recipient address syntax\r\n");
		return;
	}
	if (*params) {
		srv_printf(c, "555 5.5.4 Unsupported RCPT parameter\r\n");
		return;
	}
	if (st->nrcpt >= SMTP_MAX_RCPTS) {
		srv_printf(c, "452 4.5.3 Error: too many recipients\r\n");
		return;
	}
	char *at = strrchr(addr, '@');
	if (at)
		*at = '\0';
	if (!mail_name_valid(addr) || !mail_user_exists(srv_users(srv_server(c)), addr)) {
		srv_printf(c, "550 5.7.1 Recipient address rejected: not a local user, relay denied\r\n");
		return;
	}
	if (!st->rcpt) {
		st->rcpt = malloc(SMTP_MAX_RCPTS * sizeof(*st->rcpt));
		if (!st->rcpt) {
			srv_printf(c, "452 4.3.1 Insufficient system storage\r\n");
			return;
		}
	}
	for (size_t i = 0; !st->lmtp && i < st->nrcpt; i++)
		if (strcmp(st->rcpt[i], addr) == 0) { /* one copy per mailbox */
			srv_printf(c, "250 2.1.5 Ok\r\n");
			return;
		}
	memcpy(st->rcpt[st->nrcpt++], addr, strlen(addr) + 1); /* valid: fits */
	srv_printf(c, "250 2.1.5 Ok\r\n");
}

static void smtp_line(struct srv_conn *c, char *line, size_t len, bool too_long)
{
	struct smtp *st = srv_state(c);
	if (st->in_data) {
		data_line(c, st, line, len, too_long);
		return;
	}
	if (too_long) {
		srv_printf(c, "500 5.5.2 Error: line too long\r\n");
		goto error;
	}
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		line[--len] = '\0';
	char *arg = line + strcspn(line, " ");
	size_t vlen = (size_t)(arg - line);
	while (*arg == ' ')
		arg++;
#define IS(v) (vlen == sizeof(v) - 1 && strncasecmp(line, v, vlen) == 0)
	if (st->lmtp ? IS("LHLO") : IS("EHLO") || IS("HELO")) {
		if (!*arg) {
			srv_printf(c, "501 5.5.4 Syntax: %.4s hostname\r\n", line);
			goto error;
		}
		reset_tx(st);
		snprintf(st->helo, sizeof(st->helo), "%s", arg);
		st->greeted = true;
		st->esmtp = !IS("HELO");
		if (st->esmtp)
			srv_printf(c, "250-%s\r\n250-PIPELINING\r\n250-SIZE %llu\r\n"
				      "250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n",
				   srv_hostname(srv_server(c)),
				   (unsigned long long)srv_max_size(srv_server(c)));
		else
			srv_printf(c, "250 %s\r\n", srv_hostname(srv_server(c)));
	} else if (IS("MAIL")) {
		cmd_mail(c, st, arg);
	} else if (IS("RCPT")) {
		cmd_rcpt(c, st, arg);
	} else if (IS("DATA")) {
		if (*arg) {
			srv_printf(c, "501 5.5.4 Syntax: DATA\r\n");
		} else if (!st->in_tx) {
			srv_printf(c, "503 5.5.1 Error: need MAIL command\r\n");
		} else if (st->nrcpt == 0) {
			srv_printf(c, "%s 5.5.1 Error: no valid recipients\r\n",
				   st->lmtp ? "503" : "554"); /* RFC 2033 4.2 */
		} else {
			st->in_data = true;
			st->data_err = DATA_OK;
			st->data_size = 0;
			srv_set_line_max(c, DATA_LINE_WIRE_MAX);
			start_message(c, st);
			srv_printf(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
		}
	} else if (IS("RSET")) {
		reset_tx(st);
		srv_printf(c, "250 2.0.0 Ok\r\n");
	} else if (IS("NOOP")) {
		srv_printf(c, "250 2.0.0 Ok\r\n");
	} else if (IS("QUIT")) {
		srv_printf(c, "221 2.0.0 Bye\r\n");
		srv_quit(c);
	} else if (IS("VRFY")) {
		srv_printf(c, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n");
	} else if (IS("EHLO") || IS("HELO") || IS("LHLO")) { /* the other protocol's */
		srv_printf(c, "500 5.5.1 Error: %s\r\n", st->lmtp ?
			   "this is an LMTP server, send LHLO" : "this is an SMTP server, not LMTP");
		goto error;
	} else if (IS("EXPN") || IS("HELP") || IS("ETRN") || IS("TURN") ||
		   IS("SEND") || IS("SOML") || IS("SAML") || IS("STARTTLS") || IS("AUTH") ||
		   IS("BDAT")) {
		srv_printf(c, "502 5.5.1 Error: command not implemented\r\n");
	} else {
		srv_printf(c, "500 5.5.2 Error: command not recognized\r\n");
		goto error;
	}
#undef IS
	return;
error:
	if (++st->errors >= SMTP_MAX_ERRORS) {
		srv_printf(c, "421 4.7.0 %s Error: too many errors\r\n", srv_hostname(srv_server(c)));
		srv_quit(c);
	}
}

const struct srv_proto lmtp_proto = {
	.name = "lmtp",
	.full_reply = "421 4.7.0 %s Too many connections, try again later\r\n",
	.on_open = lmtp_open,
	.on_line = smtp_line,
	.on_wake = NULL,
	.on_timeout = smtp_timeout,
	.on_close = smtp_close,
};

const struct srv_proto smtp_proto = {
	.name = "smtp",
	.full_reply = "421 4.7.0 %s Too many connections, try again later\r\n",
	.on_open = smtp_open,
	.on_line = smtp_line,
	.on_wake = NULL,
	.on_timeout = smtp_timeout,
	.on_close = smtp_close,
};
