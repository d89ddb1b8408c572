/*
 * load.c - the mail load of a torture run (torture.h).
 *
 * Writers: one SMTP connection each (EHLO once, then MAIL/RCPT/DATA per
 * message, a new connection after any error), one recipient per message,
 * chosen at random. A message is MSG_ACKED when 250 follows its DATA.
 * Readers: own a fixed share of the users (no two readers ever want the same
 * maildrop lock); each session logs in, STATs, RETRs up to 100 messages -
 * each checked against its own hash and against the ledger (a deleted one
 * coming back is a resurrection) - DELEs them and QUITs: the messages are
 * MSG_DELETE_PENDING from the QUIT until its +OK, then MSG_DELETED.
 *
 * Errors (connection refused or dropped, a timeout, 4xx/5xx, -ERR) are
 * expected only if the disruption window was open at some moment of the
 * transaction: each transaction records the window generation at its start
 * and compares at its end. All sockets have 15 s timeouts: a hung server is
 * an error too.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/base/util.h"
#include "tools/torture/torture.h"

struct load {
	struct load_config c;
	struct ledger *l;
	struct violations *v;
	atomic_bool stop;
	atomic_uint window_gen;   /* odd while the window is open */
	atomic_ulong acked, retrieved, expected_errors;
	pthread_t *threads;
	struct worker *workers;
	unsigned nthreads;
};

struct worker;

struct conn {
	int fd;
	char buf[65536];
	size_t have, pos;
};

struct worker {
	struct load *ld;
	unsigned id;
	struct prng rng;
};

/* ---- socket lines ---- */

static int conn_open(struct conn *c, uint16_t port)
{
	c->have = c->pos = 0;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	struct timeval tv = { .tv_sec = 15 };
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = -errno;
		close(c->fd);
		c->fd = -1;
		return e;
	}
	return 0;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static int send_all(struct conn *c, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -EPIPE;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* One line without its CRLF into line (cap bytes). */
static int read_line(struct conn *c, char *line, size_t cap)
{
	size_t n = 0;
	for (;;) {
		if (c->pos == c->have) {
			ssize_t r = recv(c->fd, c->buf, sizeof(c->buf), 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				return -EPIPE;
			c->have = (size_t)r;
			c->pos = 0;
		}
		char ch = c->buf[c->pos++];
		if (ch == '\n') {
			if (n && line[n - 1] == '\r')
				n--;
			line[n] = '\0';
			return (int)n;
		}
		if (n + 1 < cap)
			line[n++] = ch;
	}
}

/* An SMTP reply (multi-line too): its code, or -EPIPE. */
static int smtp_reply(struct conn *c)
{
	char line[1024];
	for (;;) {
		if (read_line(c, line, sizeof(line)) < 4)
			return -EPIPE;
		if (line[3] == ' ')
			return atoi(line);
	}
}

static int smtp_cmd(struct conn *c, const char *cmd)
{
	int r = send_all(c, cmd, strlen(cmd));
	return r ? r : smtp_reply(c);
}

/* A POP3 status line: 0 for +OK, -EPROTO for -ERR, -EPIPE. */
static int pop3_cmd(struct conn *c, const char *cmd)
{
	char line[1024];
	if (cmd && send_all(c, cmd, strlen(cmd)))
		return -EPIPE;
	if (read_line(c, line, sizeof(line)) < 0)
		return -EPIPE;
	return !strncmp(line, "+OK", 3) ? 0 : -EPROTO;
}

/* ---- errors and the window ---- */

static void transaction_failed(struct load *ld, unsigned gen_at_start, const char *what)
{
	unsigned now = atomic_load(&ld->window_gen);
	if (now != gen_at_start || (now & 1) || atomic_load(&ld->stop)) {
		atomic_fetch_add(&ld->expected_errors, 1);
		return;
	}
	/* the first few are printed; the count is in the summary */
	if (atomic_fetch_add(&ld->v->unexpected_errors, 1) < 10)
		fprintf(stderr, "catamaran torture: unexpected load error: %s\n", what);
}

void load_window_open(struct load *ld)
{
	atomic_fetch_add(&ld->window_gen, 1);
}

void load_window_close(struct load *ld)
{
	atomic_fetch_add(&ld->window_gen, 1);
}

/* ---- writers ---- */

/* Dot-stuff msg (CRLF lines) and end it with CRLF.CRLF. */
static char *dot_stuff(const char *msg, size_t len, size_t *out_len)
{
	char *s = malloc(len * 2 + 8);
	size_t n = 0;
	if (!s)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (msg[i] == '.' && (i == 0 || msg[i - 1] == '\n'))
			s[n++] = '.';
		s[n++] = msg[i];
	}
	memcpy(s + n, ".\r\n", 3);
	*out_len = n + 3;
	return s;
}

static int deliver_one(struct worker *w, struct conn *c)
{
	struct load *ld = w->ld;
	int user = (int)(prng_below(&w->rng, TORTURE_USERS));
	size_t len, slen, idx;
	char *msg = message_build(ld->l, user, &w->rng, &len, &idx);
	char *stuffed = dot_stuff(msg, len, &slen);
	free(msg);
	if (!stuffed)
		return -ENOMEM;
	char rcpt[128];
	snprintf(rcpt, sizeof(rcpt), "RCPT TO:<user%d@localhost>\r\n", user);
	int r = smtp_cmd(c, "MAIL FROM:<torture@localhost>\r\n");
	if (r == 250)
		r = smtp_cmd(c, rcpt);
	if (r == 250)
		r = smtp_cmd(c, "DATA\r\n");
	if (r == 354)
		r = send_all(c, stuffed, slen) ? -EPIPE : smtp_reply(c);
	free(stuffed);
	if (r == 250) {
		ledger_set(ld->l, idx, MSG_ACKED);
		atomic_fetch_add(&ld->acked, 1);
		return 0;
	}
	return r < 0 ? r : -r;   /* -code: the SMTP reply that refused it */
}

static void *writer_main(void *arg)
{
	struct worker *w = arg;
	struct load *ld = w->ld;
	struct conn c = { .fd = -1 };
	while (!atomic_load(&ld->stop)) {
		unsigned gen = atomic_load(&ld->window_gen);
		bool fresh = c.fd < 0;
		int r = fresh ? conn_open(&c, ld->c.smtp_port) : 0;
		if (!r && fresh) {
			r = smtp_reply(&c) == 220 ? 0 : -EPROTO;
			if (!r)
				r = smtp_cmd(&c, "EHLO torture\r\n") == 250 ? 0 : -EPROTO;
		}
		if (!r)
			r = deliver_one(w, &c);
		if (r) {
			char what[64];
			if (r <= -200)
				snprintf(what, sizeof(what), "SMTP delivery refused: %d", -r);
			else
				snprintf(what, sizeof(what), "SMTP delivery failed: %s", strerror(-r));
			conn_close(&c);
			transaction_failed(ld, gen, what);
			usleep(50000);
		}
	}
	if (c.fd >= 0)
		smtp_cmd(&c, "QUIT\r\n");
	conn_close(&c);
	return NULL;
}

/* ---- readers ---- */

/* Messages one POP3 session takes at most: enough for two readers to keep
 * up with four writers, so mailboxes (and verification) stay small over a
 * thousand cycles. */
#define PICKUP_MAX 100

/* RETR n: the message, dot-unstuffed, CRLF kept. */
static int retrieve(struct conn *c, unsigned n, char **out, size_t *len)
{
	char cmd[32], line[2048];
	snprintf(cmd, sizeof(cmd), "RETR %u\r\n", n);
	int r = pop3_cmd(c, cmd);
	if (r)
		return r;
	size_t cap = 65536, used = 0;
	char *buf = malloc(cap);
	for (;;) {
		int ln = read_line(c, line, sizeof(line));
		if (ln < 0 || !buf) {
			free(buf);
			return -EPIPE;
		}
		if (!strcmp(line, "."))
			break;
		const char *p = line[0] == '.' ? line + 1 : line;
		size_t pl = strlen(p);
		if (used + pl + 3 > cap) {
			char *nb = realloc(buf, cap *= 2);
			if (!nb) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
		}
		memcpy(buf + used, p, pl);
		used += pl;
		buf[used++] = '\r';
		buf[used++] = '\n';
	}
	*out = buf;
	*len = used;
	return 0;
}

/* Check one retrieved message; returns its ledger index or -1. */
static long check_retrieved(struct load *ld, const char *msg, size_t len)
{
	char token[32];
	if (message_check(msg, len, token)) {
		atomic_fetch_add(&ld->v->partial, 1);
		fprintf(stderr, "catamaran torture: POP3 returned a damaged message (%s)\n",
			token[0] ? token : "no token");
		return -1;
	}
	long idx = ledger_find(ld->l, token);
	if (idx < 0)
		return -1;
	enum msg_state s = ledger_state(ld->l, (size_t)idx);
	if (s == MSG_DELETED || s == MSG_ABSENT) {
		atomic_fetch_add(&ld->v->resurrected, 1);
		fprintf(stderr, "catamaran torture: %s came back after it was %s\n", token,
			s == MSG_DELETED ? "deleted" : "found absent");
	}
	atomic_fetch_add(&ld->retrieved, 1);
	return idx;
}

static int login(struct conn *c, int user)
{
	char cmd[128];
	int r = pop3_cmd(c, NULL);
	snprintf(cmd, sizeof(cmd), "USER user%d\r\n", user);
	if (!r)
		r = pop3_cmd(c, cmd);
	snprintf(cmd, sizeof(cmd), "PASS %s\r\n", TORTURE_PASSWORD);
	if (!r)
		r = pop3_cmd(c, cmd);
	return r;
}

static int count_messages(struct conn *c, unsigned *count)
{
	char line[256];
	int r = send_all(c, "STAT\r\n", 6) ? -EPIPE : read_line(c, line, sizeof(line));
	if (r < 0)
		return r;
	return sscanf(line, "+OK %u", count) == 1 ? 0 : -EPROTO;
}

/* One POP3 session for user: retrieve, check, delete, quit. */
static int pickup_session(struct load *ld, int user)
{
	struct conn c = { .fd = -1 };
	long taken[PICKUP_MAX];
	unsigned n = 0, count = 0;
	int r = conn_open(&c, ld->c.pop3_port);
	if (!r)
		r = login(&c, user);
	if (!r)
		r = count_messages(&c, &count);
	for (unsigned i = 1; !r && i <= count && n < PICKUP_MAX; i++) {
		char *msg, cmd[32];
		size_t len;
		r = retrieve(&c, i, &msg, &len);
		if (r)
			break;
		long idx = check_retrieved(ld, msg, len);
		free(msg);
		snprintf(cmd, sizeof(cmd), "DELE %u\r\n", i);
		r = pop3_cmd(&c, cmd);
		if (!r && idx >= 0)
			taken[n++] = idx;
	}
	if (!r) {
		for (unsigned i = 0; i < n; i++)
			ledger_set(ld->l, (size_t)taken[i], MSG_DELETE_PENDING);
		r = pop3_cmd(&c, "QUIT\r\n");
		for (unsigned i = 0; i < n; i++)
			if (!r)
				ledger_set(ld->l, (size_t)taken[i], MSG_DELETED);
	}
	conn_close(&c);
	return r;
}

static void *reader_main(void *arg)
{
	struct worker *w = arg;
	struct load *ld = w->ld;
	for (unsigned round = 0; !atomic_load(&ld->stop); round++) {
		/* users id, id + readers, ...: a share of its own */
		unsigned mine = (TORTURE_USERS - w->id + ld->c.readers - 1) / ld->c.readers;
		int user = (int)(w->id + (round % (mine ? mine : 1)) * ld->c.readers);
		unsigned gen = atomic_load(&ld->window_gen);
		if (user < TORTURE_USERS && pickup_session(ld, user))
			transaction_failed(ld, gen, "POP3 session failed");
		usleep(5000 + (useconds_t)prng_below(&w->rng, 20000));
	}
	return NULL;
}

/* ---- start/stop ---- */

int load_start(const struct load_config *c, struct ledger *l, struct violations *v,
	       struct load **out)
{
	struct load *ld = calloc(1, sizeof(*ld));
	unsigned n = c->writers + c->readers;
	struct worker *w = calloc(n, sizeof(*w));
	pthread_t *t = calloc(n, sizeof(*t));
	if (!ld || !w || !t) {
		free(ld);
		free(w);
		free(t);
		return -ENOMEM;
	}
	ld->threads = t;
	ld->workers = w;
	ld->c = *c;
	ld->l = l;
	ld->v = v;
	for (unsigned i = 0; i < n; i++) {
		w[i] = (struct worker){ .ld = ld, .id = i < c->writers ? i : i - c->writers };
		prng_seed(&w[i].rng, c->seed * 7919 + i * 104729 + 1);
		if (pthread_create(&ld->threads[i], NULL, i < c->writers ? writer_main : reader_main,
				   &w[i]))
			break;
		ld->nthreads++;
	}
	*out = ld;
	return ld->nthreads == n ? 0 : -EAGAIN;
}

void load_stop(struct load *ld)
{
	if (!ld)
		return;
	atomic_store(&ld->stop, true);
	for (unsigned i = 0; i < ld->nthreads; i++)
		pthread_join(ld->threads[i], NULL);
	ld->nthreads = 0;
}

void load_free(struct load *ld)
{
	if (!ld)
		return;
	free(ld->workers);
	free(ld->threads);
	free(ld);
}

uint64_t load_acked(struct load *ld) { return atomic_load(&ld->acked); }
uint64_t load_retrieved(struct load *ld) { return atomic_load(&ld->retrieved); }
uint64_t load_errors_expected(struct load *ld) { return atomic_load(&ld->expected_errors); }
