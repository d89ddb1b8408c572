/*
 * mail_conns.c - the SMTP and POP3 servers (core/mail/server.h) under many
 * connections and bad clients, as a plain program (so it also runs under
 * ThreadSanitizer; see README.md). The server runs in-process on
 * 127.0.0.1 (ports chosen by the kernel) over a temporary Maildir root.
 *
 *   a  idle: 1 000 SMTP + 200 POP3 connections (2 400+ descriptors with
 *      both ends) sit idle after the greeting; the process may grow by at
 *      most RSS_FIXED + RSS_PER_CONN per connection and must not gain a
 *      thread. Then every connection completes a transaction at once,
 *      driven with poll() by 4 client threads (SMTP: EHLO MAIL RCPT DATA
 *      QUIT, 250 after the data; POP3: USER PASS STAT QUIT, one user each,
 *      the maildrop being locked per user); every message must be in its
 *      Maildir exactly once.
 *   b  junk, several clients at once: binary garbage, over-long command and
 *      text lines, clients stalling mid-DATA then vanishing (close or RST),
 *      half-closed sockets (before, in and after a command or a login),
 *      connect-and-go, a flood of commands nobody reads. Afterwards a fresh
 *      client is served correctly and no partial message is in any new/,
 *      cur/ or tmp/.
 *   c  users swapped while clients log in (mail_server_set_users): a user
 *      added to the file can log in, logins in flight never fail.
 *   d  out of descriptors: RLIMIT_NOFILE lowered so that the server cannot
 *      accept; it must not spin (CPU time over 1 s), must keep serving an
 *      open connection, and must accept the waiting clients once
 *      descriptors are free again.
 *   e  max_conns: the connection over the limit gets 421 / -ERR and EOF.
 *
 * Output: "FAIL: <scenario>: ..." per violation, "mail_conns: N passed, M
 * failed" at the end, exit 1 if M > 0. Arguments: scenario letters.
 * Environment: CATAMARAN_STRESS_SCALE multiplies the connection counts.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/mail/mail.h"
#include "core/mail/server.h"
#include "tests/stress/helpers/stress_report.h"

/* Measured on x86_64 per idle connection: 3.5 KiB of RSS (RelWithDebInfo),
 * 4.6 KiB (ASan), 22 KiB (TSan, whose shadow memory counts in RSS), and no
 * thread. The bounds leave 4x / 2x room for allocator and sanitizer
 * variation, and still catch a thread per connection (8.5 KiB resident
 * and 16 KiB of kernel stack at the very least) or a 64 KiB buffer each. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define RSS_FIXED (32ull << 20)
#define RSS_PER_CONN (48ull << 10)
#else
#define RSS_FIXED (8ull << 20)
#define RSS_PER_CONN (16ull << 10)
#endif

#define PASSWORD "stress-pw"
#define NBOXES 10            /* SMTP recipients box0..box9 */
#define DRIVE_THREADS 4
#define PHASE_TIMEOUT_MS 60000

static double scale = 1.0;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ------------------------------ the server ------------------------------ */

static char tmpdir[] = "/tmp/cat_mail_conns_XXXXXX";
static char root[256], users_path[300];
static struct mail_store *store;
static struct mail_users *users;
static struct mail_server *srv;
static int smtp_port, pop3_port;
static unsigned n_smtp = 1000, n_pop3 = 200;

/* p000..pNNN (one per POP3 connection) and box0..box9, all with PASSWORD:
 * one hash made by mail_user_add, copied (200 yescrypt hashes would take
 * seconds for nothing). */
static int make_users_file(void)
{
	int rc = mail_user_add(users_path, "p000", PASSWORD);
	if (rc < 0)
		return rc;
	char line[512];
	FILE *f = fopen(users_path, "r");
	if (!f)
		return -errno;
	char *ok = fgets(line, sizeof(line), f);
	fclose(f);
	char *hash = ok ? strchr(line, ':') : NULL;
	if (!hash)
		return -EINVAL;
	hash++;
	f = fopen(users_path, "w");
	if (!f)
		return -errno;
	for (unsigned i = 0; i < n_pop3; i++)
		fprintf(f, "p%03u:%s", i, hash);
	for (unsigned i = 0; i < NBOXES; i++)
		fprintf(f, "box%u:%s", i, hash);
	return fclose(f) == 0 ? 0 : -EIO;
}

static int server_setup(void)
{
	if (!mkdtemp(tmpdir))
		return -errno;
	snprintf(root, sizeof(root), "%s/mail", tmpdir);
	snprintf(users_path, sizeof(users_path), "%s/users", tmpdir);
	if (mkdir(root, 0700) < 0)
		return -errno;
	int rc = make_users_file();
	if (rc == 0)
		rc = mail_users_load(users_path, &users);
	if (rc == 0)
		rc = mail_open(root, &store);
	if (rc < 0)
		return rc;
	struct mail_server_opts o = {
		.smtp_addr = "127.0.0.1:0", .pop3_addr = "127.0.0.1:0",
		.hostname = "mx.stress", .max_size = 1 << 20, .max_conns = 8192,
		.idle_timeout_s = 120, .auth_delay_ms = 50,
	};
	rc = mail_server_start(store, users, &o, &srv);
	if (rc < 0)
		return rc;
	smtp_port = mail_server_port(srv, MAIL_SMTP);
	pop3_port = mail_server_port(srv, MAIL_POP3);
	return 0;
}

static void server_teardown(void)
{
	if (srv)
		mail_server_stop(srv);
	if (store)
		mail_close(store);
	mail_users_free(users);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		printf("warning: could not remove %s\n", tmpdir);
}

/* ------------------------------ measuring ------------------------------ */

static long rss_bytes(void)
{
	long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &size, &resident) != 2)
		resident = -1;
	fclose(f);
	return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

static int thread_count(void)
{
	char line[256];
	int n = -1;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

static double cpu_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Raise the soft descriptor limit to at least want. */
static int nofile_raise(rlim_t want)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	if (rl.rlim_cur >= want)
		return 0;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
		return -EMFILE;
	rl.rlim_cur = want;
	return setrlimit(RLIMIT_NOFILE, &rl) < 0 ? -errno : 0;
}

/* ------------------------------ sockets ------------------------------ */

static int connect_to(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static void set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Close with an RST instead of a FIN. */
static void close_rst(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* ------------------- scripted clients driven with poll() ------------------- */

/* A conversation: step 0 is the greeting; step k >= 1 sends cmd(k) and
 * waits for a final reply line starting with expect[k]. After the last
 * step the server must close the connection. */
struct script {
	const char *name;
	int nsteps;
	void (*cmd)(unsigned id, int step, char *buf, size_t cap);
	const char *const *expect;
	bool multiline; /* SMTP: "250-..." continues a reply */
};

struct cli {
	int fd;
	unsigned id;
	const struct script *sc;
	int step, goal;   /* stop once step == goal; goal == nsteps: then EOF */
	bool finished;
	size_t in_len, out_off, out_len;
	char in[1024];
	char out[512];
};

static void smtp_cmd(unsigned id, int step, char *buf, size_t cap)
{
	switch (step) {
	case 1: snprintf(buf, cap, "EHLO client%u.stress\r\n", id); break;
	case 2: snprintf(buf, cap, "MAIL FROM:<s%u@client.stress>\r\n", id); break;
	case 3: snprintf(buf, cap, "RCPT TO:<box%u@mx.stress>\r\n", id % NBOXES); break;
	case 4: snprintf(buf, cap, "DATA\r\n"); break;
	case 5:
		snprintf(buf, cap, "Subject: stress %u\r\nX-Stress-Id: smtp-%u\r\n\r\n"
			 "body of message %u\r\n..a dot-stuffed line\r\n.\r\n", id, id, id);
		break;
	default: snprintf(buf, cap, "QUIT\r\n"); break;
	}
}

static const char *const smtp_expect[] = { "220 ", "250 ", "250 ", "250 ", "354 ", "250 ", "221 " };
static const struct script smtp_script = { "smtp", 7, smtp_cmd, smtp_expect, true };

static void pop3_cmd(unsigned id, int step, char *buf, size_t cap)
{
	switch (step) {
	case 1: snprintf(buf, cap, "USER p%03u\r\n", id); break;
	case 2: snprintf(buf, cap, "PASS %s\r\n", PASSWORD); break;
	case 3: snprintf(buf, cap, "STAT\r\n"); break;
	default: snprintf(buf, cap, "QUIT\r\n"); break;
	}
}

static const char *const pop3_expect[] = { "+OK", "+OK", "+OK", "+OK 0 0", "+OK" };
static const struct script pop3_script = { "pop3", 5, pop3_cmd, pop3_expect, false };

static void cli_send(struct cli *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n > 0) {
			c->out_off += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else {
			if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
				fail("%s %u: send: %s", c->sc->name, c->id, strerror(errno));
				c->finished = true;
			}
			return;
		}
	}
}

static void cli_queue_step(struct cli *c)
{
	c->sc->cmd(c->id, c->step, c->out, sizeof(c->out));
	c->out_off = 0;
	c->out_len = strlen(c->out);
	cli_send(c);
}

static void cli_line(struct cli *c, const char *line)
{
	const struct script *sc = c->sc;
	if (c->step >= sc->nsteps) {
		fail("%s %u: '%.80s' after the last reply", sc->name, c->id, line);
		c->finished = true;
		return;
	}
	if (sc->multiline && strlen(line) >= 4 && line[3] == '-')
		return;
	const char *want = sc->expect[c->step];
	if (strncmp(line, want, strlen(want)) != 0) {
		fail("%s %u step %d: got '%.80s', want '%s'", sc->name, c->id, c->step, line, want);
		c->finished = true;
		return;
	}
	c->step++;
	if (c->step == c->goal && c->goal < sc->nsteps)
		c->finished = true;
	else if (c->step < sc->nsteps)
		cli_queue_step(c);
}

static void cli_recv(struct cli *c)
{
	ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len, 0);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			fail("%s %u: recv at step %d: %s", c->sc->name, c->id, c->step, strerror(errno));
			c->finished = true;
		}
		return;
	}
	if (n == 0) {
		if (c->step < c->sc->nsteps)
			fail("%s %u: closed by the server at step %d", c->sc->name, c->id, c->step);
		c->finished = true;
		return;
	}
	c->in_len += (size_t)n;
	c->in[c->in_len] = '\0';
	char *start = c->in, *crlf;
	while (!c->finished && (crlf = strstr(start, "\r\n"))) {
		*crlf = '\0';
		cli_line(c, start);
		start = crlf + 2;
	}
	c->in_len -= (size_t)(start - c->in);
	memmove(c->in, start, c->in_len);
	if (c->in_len >= sizeof(c->in) - 1) {
		fail("%s %u: reply line too long", c->sc->name, c->id);
		c->finished = true;
	}
}

struct slice {
	struct cli **v;
	size_t n;
};

/* Poll the unfinished clients of a slice until all are finished. */
static void *drive_main(void *arg)
{
	struct slice *sl = arg;
	struct pollfd *pf = calloc(sl->n ? sl->n : 1, sizeof(*pf));
	struct cli **who = calloc(sl->n ? sl->n : 1, sizeof(*who));
	uint64_t deadline = now_ms() + PHASE_TIMEOUT_MS;
	for (;;) {
		size_t k = 0;
		for (size_t i = 0; i < sl->n; i++) {
			struct cli *c = sl->v[i];
			if (c->finished)
				continue;
			pf[k] = (struct pollfd){ .fd = c->fd, .events = POLLIN };
			if (c->out_off < c->out_len)
				pf[k].events |= POLLOUT;
			who[k++] = c;
		}
		if (k == 0)
			break;
		if (now_ms() > deadline) {
			for (size_t j = 0; j < k; j++) {
				fail("%s %u: no answer at step %d", who[j]->sc->name, who[j]->id,
				     who[j]->step);
				who[j]->finished = true;
			}
			break;
		}
		if (poll(pf, k, 200) < 0 && errno != EINTR) {
			fail("poll: %s", strerror(errno));
			break;
		}
		for (size_t j = 0; j < k; j++) {
			if (pf[j].revents & POLLOUT)
				cli_send(who[j]);
			if ((pf[j].revents & (POLLIN | POLLHUP | POLLERR)) && !who[j]->finished)
				cli_recv(who[j]);
		}
	}
	free(pf);
	free(who);
	return NULL;
}

/* Drive v[0..n) to their goals with nthreads client threads (1: inline). */
static void drive(struct cli **v, size_t n, unsigned nthreads)
{
	if (nthreads <= 1) {
		struct slice sl = { v, n };
		drive_main(&sl);
		return;
	}
	pthread_t th[DRIVE_THREADS];
	struct slice sl[DRIVE_THREADS];
	if (nthreads > DRIVE_THREADS)
		nthreads = DRIVE_THREADS;
	size_t per = (n + nthreads - 1) / nthreads;
	for (unsigned t = 0; t < nthreads; t++) {
		size_t lo = t * per < n ? t * per : n;
		size_t hi = lo + per < n ? lo + per : n;
		sl[t] = (struct slice){ v + lo, hi - lo };
		pthread_create(&th[t], NULL, drive_main, &sl[t]);
	}
	for (unsigned t = 0; t < nthreads; t++)
		pthread_join(th[t], NULL);
}

/* ------------------------- blocking helper client ------------------------- */

struct bc {
	int fd;
	size_t len;
	char buf[16384];
};

static struct bc *bc_open(int port)
{
	int fd = connect_to(port);
	if (fd < 0) {
		fail("connect to port %d: %s", port, strerror(-fd));
		return NULL;
	}
	struct bc *b = calloc(1, sizeof(*b));
	if (!b) {
		close(fd);
		return NULL;
	}
	b->fd = fd;
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return b;
}

static void bc_close(struct bc *b)
{
	if (b) {
		close(b->fd);
		free(b);
	}
}

/* Send everything; false if the server is gone (fine for junk). */
static bool bc_sendn(struct bc *b, const void *p, size_t len)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = send(b->fd, (const char *)p + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		off += (size_t)n;
	}
	return true;
}

static bool bc_send(struct bc *b, const char *s)
{
	return bc_sendn(b, s, strlen(s));
}

/* The next line without CRLF (static per thread), NULL at EOF or timeout. */
static const char *bc_line(struct bc *b)
{
	static _Thread_local char line[sizeof(b->buf)];
	for (;;) {
		char *nl = memchr(b->buf, '\n', b->len);
		if (nl) {
			size_t n = (size_t)(nl - b->buf);
			memcpy(line, b->buf, n);
			line[n > 0 && line[n - 1] == '\r' ? n - 1 : n] = '\0';
			b->len -= n + 1;
			memmove(b->buf, nl + 1, b->len);
			return line;
		}
		if (b->len == sizeof(b->buf))
			b->len = 0; /* not a reply of ours: drop */
		ssize_t n = recv(b->fd, b->buf + b->len, sizeof(b->buf) - b->len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return NULL;
		b->len += (size_t)n;
	}
}

/* The final line of the next reply (SMTP "250-" lines skipped) must
 * start with want. */
static bool bc_expect(struct bc *b, const char *want, const char *what)
{
	const char *l;
	while ((l = bc_line(b)) && strlen(l) >= 4 && l[3] == '-' && l[0] >= '2' && l[0] <= '5')
		;
	if (!l || strncmp(l, want, strlen(want)) != 0) {
		fail("%s: got '%.80s', want '%s'", what, l ? l : "(EOF/timeout)", want);
		return false;
	}
	return true;
}

/* Read until the server closes; false after timeout_s without EOF. */
static bool bc_wait_eof(struct bc *b, unsigned timeout_s)
{
	struct timeval tv = { .tv_sec = timeout_s };
	setsockopt(b->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char junk[4096];
	for (;;) {
		ssize_t n = recv(b->fd, junk, sizeof(junk), 0);
		if (n == 0)
			return true;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == ECONNRESET;
	}
}

/* A complete SMTP delivery to box<box> marked "X-Stress-Id: <mark>". */
static bool smtp_deliver(int box, const char *mark)
{
	struct bc *b = bc_open(smtp_port);
	if (!b)
		return false;
	char cmd[512];
	bool ok = bc_expect(b, "220 ", "fresh greeting");
	ok = ok && bc_send(b, "EHLO fresh.stress\r\n") && bc_expect(b, "250 ", "fresh EHLO");
	ok = ok && bc_send(b, "MAIL FROM:<f@fresh.stress>\r\n") && bc_expect(b, "250 ", "fresh MAIL");
	snprintf(cmd, sizeof(cmd), "RCPT TO:<box%d@mx.stress>\r\n", box);
	ok = ok && bc_send(b, cmd) && bc_expect(b, "250 ", "fresh RCPT");
	ok = ok && bc_send(b, "DATA\r\n") && bc_expect(b, "354 ", "fresh DATA");
	snprintf(cmd, sizeof(cmd), "Subject: fresh\r\nX-Stress-Id: %s\r\n\r\nhello\r\n.\r\n", mark);
	ok = ok && bc_send(b, cmd) && bc_expect(b, "250 ", "fresh end of data");
	ok = ok && bc_send(b, "QUIT\r\n") && bc_expect(b, "221 ", "fresh QUIT");
	bc_close(b);
	return ok;
}

/* USER/PASS as name; retried while the maildrop is still locked by a
 * session that just went away (its unlock runs on a worker). */
static struct bc *pop3_login(const char *name, const char *pass, unsigned tries)
{
	char cmd[128];
	const char *l = NULL;
	for (unsigned t = 0; t < tries; t++) {
		struct bc *b = bc_open(pop3_port);
		if (!b)
			return NULL;
		snprintf(cmd, sizeof(cmd), "USER %s\r\nPASS %s\r\n", name, pass);
		if (bc_expect(b, "+OK", "pop3 greeting") && bc_send(b, cmd) &&
		    bc_expect(b, "+OK", "pop3 USER") && (l = bc_line(b)) && !strncmp(l, "+OK", 3))
			return b;
		bc_close(b);
		sleep_ms(100);
	}
	fail("pop3 login as %s: last answer '%.80s'", name, l ? l : "(EOF/timeout)");
	return NULL;
}

/* ------------------------------ the Maildir ------------------------------ */

/* Every "X-Stress-Id: smtp-N" in box0..box9 exactly once, nothing else. */
static void verify_smtp_messages(unsigned n)
{
	unsigned char *seen = calloc(n, 1);
	for (int box = 0; box < NBOXES; box++) {
		char user[16];
		snprintf(user, sizeof(user), "box%d", box);
		struct mail_list l;
		int rc = mail_pickup(store, user, &l);
		if (rc < 0) {
			fail("mail_pickup(%s): %s", user, strerror(-rc));
			continue;
		}
		for (size_t i = 0; i < l.count; i++) {
			const char *p = strstr(l.msgs[i].data, "X-Stress-Id: smtp-");
			unsigned id = p ? (unsigned)strtoul(p + 18, NULL, 10) : n;
			if (id >= n || id % NBOXES != (unsigned)box)
				fail("%s: unexpected message %s", user, l.msgs[i].id);
			else if (seen[id]++)
				fail("%s: message smtp-%u twice", user, id);
			else if (!strstr(l.msgs[i].data, "\n.a dot-stuffed line\n"))
				fail("%s: message smtp-%u lost its body", user, id);
		}
		mail_list_free(&l);
		mail_unlock(store, user);
	}
	unsigned missing = 0;
	for (unsigned i = 0; i < n; i++)
		missing += !seen[i];
	if (missing)
		fail("%u of %u SMTP messages are not in the Maildir", missing, n);
	free(seen);
}

static bool file_contains(const char *path, const char *needle)
{
	char buf[65536];
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

/* Files in ROOT/user/sub holding needle (every file when needle is NULL). */
static unsigned count_files(const char *user, const char *sub, const char *needle)
{
	char dir[600], path[900];
	snprintf(dir, sizeof(dir), "%s/%s/%s", root, user, sub);
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	unsigned n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (!needle || file_contains(path, needle))
			n++;
	}
	closedir(d);
	return n;
}

/* No message marked "partial-" anywhere, tmp/ empty, for every user. */
static void verify_no_partial(void)
{
	DIR *d = opendir(root);
	if (!d) {
		fail("opendir %s: %s", root, strerror(errno));
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		unsigned bad = count_files(e->d_name, "new", "partial-") +
			       count_files(e->d_name, "cur", "partial-");
		if (bad)
			fail("%s: %u partial message(s) delivered", e->d_name, bad);
		unsigned tmp = count_files(e->d_name, "tmp", NULL);
		if (tmp)
			fail("%s: %u file(s) left in tmp/", e->d_name, tmp);
	}
	closedir(d);
}

/* ------------------------------ a: idle + load ------------------------------ */

static struct cli *cli_new(const struct script *sc, unsigned id)
{
	struct cli *c = malloc(sizeof(*c));
	if (!c)
		return NULL;
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->id = id;
	c->sc = sc;
	memset(c->in, '-', sizeof(c->in)); /* resident before measuring */
	memset(c->out, '-', sizeof(c->out));
	return c;
}

/* Connect every client and read its greeting (on this thread). */
static bool open_idle(struct cli **v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int fd = connect_to(v[i]->sc == &smtp_script ? smtp_port : pop3_port);
		if (fd < 0) {
			fail("connection %zu: connect: %s", i, strerror(-fd));
			return false;
		}
		set_nonblock(fd);
		v[i]->fd = fd;
		v[i]->goal = 1;
	}
	drive(v, n, 1);
	for (size_t i = 0; i < n; i++)
		if (v[i]->step != 1)
			return false;
	return true;
}

static void check_idle_cost(long rss0, long rss1, int thr0, int thr1, size_t n)
{
	long grow = rss1 - rss0;
	printf("  %zu idle connections: RSS %+ld KiB (%.2f KiB per connection), threads %d -> %d\n",
	       n, grow / 1024, (double)grow / 1024.0 / (double)n, thr0, thr1);
	uint64_t bound = RSS_FIXED + RSS_PER_CONN * n;
	if (grow > 0 && (uint64_t)grow > bound)
		fail("RSS grew by %ld KiB for %zu idle connections (bound %llu KiB)", grow / 1024, n,
		     (unsigned long long)(bound / 1024));
	if (thr1 != thr0)
		fail("thread count went from %d to %d with idle connections", thr0, thr1);
}

static void scenario_idle_and_load(void)
{
	size_t n = n_smtp + n_pop3;
	struct cli **v = calloc(n, sizeof(*v));
	for (size_t i = 0; v && i < n; i++) {
		v[i] = i < n_smtp ? cli_new(&smtp_script, (unsigned)i)
				  : cli_new(&pop3_script, (unsigned)(i - n_smtp));
		if (!v[i]) {
			fail("out of memory");
			return;
		}
	}
	sleep_ms(200);
	long rss0 = rss_bytes();
	int thr0 = thread_count();
	uint64_t t0 = now_ms();
	bool ok = open_idle(v, n);
	printf("  %zu connections opened and greeted in %llu ms\n", n,
	       (unsigned long long)(now_ms() - t0));
	sleep_ms(500); /* idle */
	if (ok)
		check_idle_cost(rss0, rss_bytes(), thr0, thread_count(), n);

	t0 = now_ms();
	for (size_t i = 0; ok && i < n; i++) {
		v[i]->goal = v[i]->sc->nsteps;
		v[i]->finished = false;
		cli_queue_step(v[i]);
	}
	if (ok)
		drive(v, n, DRIVE_THREADS);
	printf("  %zu transactions in %llu ms\n", n, (unsigned long long)(now_ms() - t0));
	for (size_t i = 0; i < n; i++) {
		if (v[i]->fd >= 0)
			close(v[i]->fd);
		free(v[i]);
	}
	free(v);
	verify_smtp_messages(n_smtp);
}

/* ------------------------------ b: junk ------------------------------ */

static uint64_t junk_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Random bytes, NUL, CR, LF and 0xff included; the server answers or
 * closes; either is fine, as long as it does not hang. */
static void *junk_binary(void *arg)
{
	uint64_t seed = 0x9e3779b97f4a7c15ull ^ (uintptr_t)arg;
	for (int i = 0; i < 10; i++) {
		struct bc *b = bc_open(i % 2 ? pop3_port : smtp_port);
		if (!b)
			return NULL;
		bc_expect(b, i % 2 ? "+OK" : "220 ", "greeting before junk");
		char junk[16384];
		for (size_t k = 0; k < sizeof(junk); k++)
			junk[k] = (char)junk_rand(&seed);
		bc_sendn(b, junk, sizeof(junk));
		if (i % 3 == 0) { /* half-close: answered, then closed */
			shutdown(b->fd, SHUT_WR);
			if (!bc_wait_eof(b, 10))
				fail("binary junk then half-close: no EOF from the server");
		} else if (i % 3 == 1) { /* read a little, then go */
			bc_wait_eof(b, 1);
		}
		bc_close(b);
	}
	return NULL;
}

/* Over-long lines: answered with an error, the session goes on. */
static void *junk_long_lines(void *arg)
{
	(void)arg;
	size_t big = 100000;
	char *line = malloc(big + 16);
	memset(line, 'a', big);
	memcpy(line + big, "\r\n", 3);
	struct bc *b = bc_open(smtp_port);
	if (b && bc_expect(b, "220 ", "greeting")) {
		bc_send(b, "EHLO ");
		bc_send(b, line);
		bc_expect(b, "500 ", "SMTP over-long command");
		bc_send(b, "NOOP\r\n");
		bc_expect(b, "250 ", "SMTP NOOP after an over-long command");
		/* an over-long line in DATA rejects the message at its end */
		bc_send(b, "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<box1@mx>\r\nDATA\r\n");
		bc_expect(b, "250 ", "EHLO");
		bc_expect(b, "250 ", "MAIL");
		bc_expect(b, "250 ", "RCPT");
		bc_expect(b, "354 ", "DATA");
		bc_send(b, "X-Stress-Id: partial-long\r\n\r\n");
		bc_send(b, line);
		bc_send(b, "end\r\n.\r\n");
		bc_expect(b, "500 ", "SMTP over-long text line");
		bc_send(b, "QUIT\r\n");
		bc_expect(b, "221 ", "QUIT");
	}
	bc_close(b);
	b = bc_open(pop3_port);
	if (b && bc_expect(b, "+OK", "greeting")) {
		bc_send(b, "USER ");
		bc_send(b, line);
		bc_expect(b, "-ERR", "POP3 over-long command");
		bc_send(b, "CAPA\r\n");
		bc_expect(b, "+OK", "POP3 CAPA after an over-long command");
	}
	bc_close(b);
	/* an endless line, then EOF in the middle of it */
	b = bc_open(smtp_port);
	if (b && bc_expect(b, "220 ", "greeting")) {
		bc_sendn(b, line, big);
		bc_sendn(b, line, big);
		shutdown(b->fd, SHUT_WR);
		if (!bc_wait_eof(b, 10))
			fail("EOF inside an over-long line: the server did not close");
	}
	bc_close(b);
	free(line);
	return NULL;
}

/* Start a message to box<box> and leave it unfinished. */
static struct bc *start_partial(int box, unsigned id)
{
	struct bc *b = bc_open(smtp_port);
	if (!b)
		return NULL;
	char buf[512];
	snprintf(buf, sizeof(buf), "EHLO stall\r\nMAIL FROM:<a@b>\r\nRCPT TO:<box%d@mx>\r\nDATA\r\n", box);
	bool ok = bc_expect(b, "220 ", "greeting") && bc_send(b, buf) &&
		  bc_expect(b, "250 ", "EHLO") && bc_expect(b, "250 ", "MAIL") &&
		  bc_expect(b, "250 ", "RCPT") && bc_expect(b, "354 ", "DATA");
	snprintf(buf, sizeof(buf), "Subject: never\r\nX-Stress-Id: partial-%u\r\n\r\nsome text\r\n", id);
	if (!ok || !bc_send(b, buf)) {
		bc_close(b);
		return NULL;
	}
	return b;
}

/* Clients that stall mid-DATA, then vanish (FIN or RST), or half-close. */
static void *junk_stall_vanish(void *arg)
{
	(void)arg;
	struct bc *b[12];
	for (unsigned i = 0; i < 12; i++)
		b[i] = start_partial((int)(i % 3), i);
	sleep_ms(1000); /* stall */
	for (unsigned i = 0; i < 12; i++) {
		if (!b[i])
			continue;
		if (i % 3 == 0) {
			close_rst(b[i]->fd);
			free(b[i]);
			continue;
		}
		if (i % 3 == 1) {
			bc_close(b[i]);
			continue;
		}
		shutdown(b[i]->fd, SHUT_WR); /* half-closed inside DATA */
		const char *l = bc_line(b[i]);
		if (l && !strncmp(l, "250", 3))
			fail("half-closed inside DATA: the message was accepted: '%s'", l);
		if (!bc_wait_eof(b[i], 10))
			fail("half-closed inside DATA: the server did not close");
		bc_close(b[i]);
	}
	return NULL;
}

/* Half-closed after complete commands: answered, then closed; a POP3
 * session half-closed after login releases its maildrop. */
static void *junk_half_close(void *arg)
{
	(void)arg;
	struct bc *b = bc_open(smtp_port);
	if (b && bc_expect(b, "220 ", "greeting")) {
		bc_send(b, "EHLO half\r\nNOOP\r\n");
		shutdown(b->fd, SHUT_WR);
		bc_expect(b, "250 ", "EHLO before half-close");
		bc_expect(b, "250 ", "NOOP before half-close");
		if (!bc_wait_eof(b, 10))
			fail("SMTP half-close: the server did not close");
	}
	bc_close(b);
	char user[16];
	snprintf(user, sizeof(user), "p%03u", n_pop3 - 1);
	b = pop3_login(user, PASSWORD, 30);
	if (b) {
		shutdown(b->fd, SHUT_WR);
		if (!bc_wait_eof(b, 10))
			fail("POP3 half-close after login: the server did not close");
		bc_close(b);
		bc_close(pop3_login(user, PASSWORD, 30)); /* unlocked again */
	}
	return NULL;
}

/* Connect and go at once (FIN or RST), and a flood nobody reads. */
static void *junk_connect_and_go(void *arg)
{
	(void)arg;
	for (int i = 0; i < 100; i++) {
		int fd = connect_to(i % 2 ? pop3_port : smtp_port);
		if (fd < 0) {
			fail("connect: %s", strerror(-fd));
			return NULL;
		}
		if (i % 4 < 2)
			close(fd);
		else
			close_rst(fd);
	}
	struct bc *b = bc_open(smtp_port);
	if (b) {
		char flood[6 * 4096];
		for (size_t k = 0; k + 6 <= sizeof(flood); k += 6)
			memcpy(flood + k, "NOOP\r\n", 6);
		set_nonblock(b->fd); /* the server stops reading when its replies pile up */
		for (int k = 0; k < 40; k++)
			if (send(b->fd, flood, sizeof(flood), MSG_NOSIGNAL) < 0)
				break;
		close_rst(b->fd);
		free(b);
	}
	return NULL;
}

static void scenario_junk(void)
{
	void *(*kinds[])(void *) = { junk_binary, junk_binary, junk_long_lines,
				     junk_stall_vanish, junk_half_close, junk_connect_and_go };
	enum { NK = sizeof(kinds) / sizeof(kinds[0]) };
	pthread_t th[NK];
	for (uintptr_t i = 0; i < NK; i++)
		pthread_create(&th[i], NULL, kinds[i], (void *)i);
	for (int i = 0; i < NK; i++)
		pthread_join(th[i], NULL);
	sleep_ms(300); /* let the server see the last closes */
	unsigned before = count_files("box0", "new", NULL);
	if (!smtp_deliver(0, "fresh-after-junk"))
		fail("a fresh client after the junk was not served");
	if (count_files("box0", "new", "fresh-after-junk") != 1 ||
	    count_files("box0", "new", NULL) != before + 1)
		fail("box0/new: want exactly the fresh message added");
	bc_close(pop3_login("box0", PASSWORD, 30));
	verify_no_partial();
}

/* ------------------------------ c: users swap ------------------------------ */

static atomic_bool swapping;

static void *login_loop(void *arg)
{
	unsigned base = (unsigned)(uintptr_t)arg, n = 0;
	while (atomic_load(&swapping) || n < 5) {
		char user[16];
		snprintf(user, sizeof(user), "p%03u", (base + n++) % n_pop3);
		struct bc *b = pop3_login(user, PASSWORD, 1);
		if (b) {
			bc_send(b, "QUIT\r\n");
			bc_expect(b, "+OK", "QUIT");
		}
		bc_close(b);
	}
	return NULL;
}

static void scenario_users_swap(void)
{
	int rc = mail_user_add(users_path, "late", "late-pw");
	if (rc < 0) {
		fail("mail_user_add(late): %s", strerror(-rc));
		return;
	}
	atomic_store(&swapping, true);
	pthread_t th[2];
	for (uintptr_t i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, login_loop, (void *)(i * 50));
	for (int i = 0; i < 20; i++) {
		struct mail_users *u;
		rc = mail_users_load(users_path, &u);
		if (rc == 0)
			rc = mail_server_set_users(srv, u);
		if (rc < 0)
			fail("reload %d: %s", i, strerror(-rc));
		sleep_ms(i % 4 == 0 ? 0 : 20);
	}
	atomic_store(&swapping, false);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	struct bc *b = pop3_login("late", "late-pw", 5);
	if (b) {
		bc_send(b, "QUIT\r\n");
		bc_expect(b, "+OK", "late QUIT");
	}
	bc_close(b);
	if (mail_server_set_users(srv, NULL) != -EINVAL)
		fail("mail_server_set_users(NULL) accepted");
}

/* --------------------------- d: out of descriptors --------------------------- */

static int count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = -1; /* the directory's own descriptor */
	while (readdir(d))
		n++;
	closedir(d);
	return n - 2; /* . and .. */
}

static void scenario_emfile(void)
{
	struct rlimit saved;
	getrlimit(RLIMIT_NOFILE, &saved);
	struct bc *old = bc_open(smtp_port);
	if (!old || !bc_expect(old, "220 ", "greeting") || !bc_send(old, "EHLO old\r\n") ||
	    !bc_expect(old, "250 ", "EHLO")) {
		bc_close(old);
		return;
	}
	/* No descriptor left: fill the lowered table with client sockets. */
	struct rlimit low = saved;
	low.rlim_cur = (rlim_t)count_open_fds() + 40;
	if (setrlimit(RLIMIT_NOFILE, &low) < 0) {
		fail("setrlimit: %s", strerror(errno));
		bc_close(old);
		return;
	}
	int fds[1000], n = 0;
	while (n < 1000 && (fds[n] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0)
		n++;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)smtp_port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < n; i++)
		if (connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) < 0)
			fail("connect with a full table: %s", strerror(errno));
	printf("  %d clients waiting, no descriptor free\n", n);

	/* The server cannot accept: it must idle, and serve the old client. */
	double cpu0 = cpu_seconds();
	uint64_t t0 = now_ms();
	for (int i = 0; i < 5; i++) {
		bc_send(old, "NOOP\r\n");
		bc_expect(old, "250 ", "NOOP while out of descriptors");
		sleep_ms(200);
	}
	double cpu = cpu_seconds() - cpu0;
	double wall = (double)(now_ms() - t0) / 1000.0;
	printf("  out of descriptors: %.3f s CPU in %.2f s\n", cpu, wall);
	if (cpu > 0.3 * wall)
		fail("%.2f s CPU in %.2f s while accept() fails: a busy loop", cpu, wall);

	/* Free two thirds; the rest must be greeted. */
	int keep = n / 3;
	for (int i = keep; i < n; i++)
		close(fds[i]);
	t0 = now_ms();
	for (int i = 0; i < keep; i++) {
		struct timeval tv = { .tv_sec = 10 };
		setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		char buf[256];
		ssize_t r = recv(fds[i], buf, sizeof(buf) - 1, 0);
		if (r < 4 || memcmp(buf, "220 ", 4) != 0)
			fail("waiting client %d: no greeting after descriptors were freed", i);
	}
	printf("  %d waiting clients greeted %llu ms after descriptors were freed\n", keep,
	       (unsigned long long)(now_ms() - t0));
	for (int i = 0; i < keep; i++)
		close(fds[i]);
	setrlimit(RLIMIT_NOFILE, &saved);
	bc_send(old, "QUIT\r\n");
	bc_expect(old, "221 ", "QUIT");
	bc_close(old);
	if (!smtp_deliver(2, "after-emfile"))
		fail("no delivery after the descriptor shortage");
}

/* ------------------------------ e: max_conns ------------------------------ */

static void scenario_max_conns(void)
{
	struct mail_server *small;
	struct mail_server_opts o = { .smtp_addr = "127.0.0.1:0", .pop3_addr = "127.0.0.1:0",
				      .hostname = "small.stress", .max_conns = 4 };
	int rc = mail_server_start(store, users, &o, &small);
	if (rc < 0) {
		fail("mail_server_start: %s", strerror(-rc));
		return;
	}
	int sp = mail_server_port(small, MAIL_SMTP), pp = mail_server_port(small, MAIL_POP3);
	struct bc *b[4];
	for (int i = 0; i < 4; i++) {
		b[i] = bc_open(i < 2 ? sp : pp);
		if (b[i])
			bc_expect(b[i], i < 2 ? "220 " : "+OK", "greeting under the limit");
	}
	struct bc *x = bc_open(sp);
	if (x && bc_expect(x, "421 ", "SMTP over max_conns") && !bc_wait_eof(x, 5))
		fail("SMTP over max_conns: not closed");
	bc_close(x);
	x = bc_open(pp);
	if (x && bc_expect(x, "-ERR", "POP3 over max_conns") && !bc_wait_eof(x, 5))
		fail("POP3 over max_conns: not closed");
	bc_close(x);
	if (b[0]) {
		bc_send(b[0], "QUIT\r\n");
		bc_expect(b[0], "221 ", "QUIT");
		bc_wait_eof(b[0], 5);
	}
	const char *l = NULL;
	for (int t = 0; t < 20; t++) { /* room again once the server saw it go */
		x = bc_open(sp);
		l = x ? bc_line(x) : NULL;
		bool greeted = l && !strncmp(l, "220 ", 4);
		bc_close(x);
		if (greeted)
			break;
		l = NULL;
		sleep_ms(50);
	}
	if (!l)
		fail("no room after a connection under max_conns closed");
	for (int i = 0; i < 4; i++)
		bc_close(b[i]);
	mail_server_stop(small);
}

/* ------------------------------ main ------------------------------ */

int main(int argc, char **argv)
{
	const char *env = getenv("CATAMARAN_STRESS_SCALE");
	if (env)
		scale = atof(env) > 0.1 ? atof(env) : 0.1;
	n_smtp = (unsigned)(1000 * scale);
	n_pop3 = (unsigned)(200 * scale);
	if (n_pop3 > 1000)
		n_pop3 = 1000; /* p000..p999 */
	signal(SIGPIPE, SIG_IGN);
	rlim_t need = 2 * (rlim_t)(n_smtp + n_pop3) + 256;
	int rc = nofile_raise(need);
	if (rc < 0) {
		printf("FAIL: RLIMIT_NOFILE: cannot raise to %llu descriptors: %s\n",
		       (unsigned long long)need, strerror(-rc));
		return 1;
	}
	rc = server_setup();
	if (rc < 0) {
		printf("FAIL: setup in %s: %s\n", tmpdir, strerror(-rc));
		server_teardown();
		return 1;
	}
	const char *which = argc > 1 ? argv[1] : "abcde";
	struct { char letter; const char *name; void (*run)(void); } all[] = {
		{ 'a', "idle+load", scenario_idle_and_load },
		{ 'b', "junk", scenario_junk },
		{ 'c', "users swap", scenario_users_swap },
		{ 'd', "out of descriptors", scenario_emfile },
		{ 'e', "max_conns", scenario_max_conns },
	};
	int passed = 0, failed = 0;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (!strchr(which, all[i].letter))
			continue;
		stress_scenario = all[i].name;
		int before = stress_failures();
		uint64_t t0 = now_ms();
		printf("%c %s\n", all[i].letter, all[i].name);
		fflush(stdout);
		all[i].run();
		bool ok = stress_failures() == before;
		printf("  %s (%llu ms)\n", ok ? "ok" : "FAILED",
		       (unsigned long long)(now_ms() - t0));
		fflush(stdout);
		if (ok)
			passed++;
		else
			failed++;
	}
	server_teardown();
	printf("mail_conns: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
