/*
 * test_smtp_pop3.c - the SMTP and POP3 servers (core/mail/server.h) at the
 * socket level: a server runs in-process on 127.0.0.1 with ports chosen by
 * the kernel, over a temporary Maildir root and a users file made with
 * mail_user_add; the tests talk to it as clients and look into the
 * mailboxes with mail_pickup.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/mail/mail.h"
#include "core/mail/server.h"

static char tmpdir[] = "/tmp/cat_srv_XXXXXX";
static char root[256], users_path[256];
static struct mail_store *store;
static struct mail_users *users;
static struct mail_server *srv;
static int smtp_port, pop3_port;
#ifdef MAIL_SERVER_LMTP
static int lmtp_port;
#endif

#define MAX_SIZE (64 * 1024)

static unsigned opt_max_conns, opt_idle_s = 30;

static void start(void)
{
	signal(SIGPIPE, SIG_IGN);
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(root, sizeof(root), "%s/mail", tmpdir);
	snprintf(users_path, sizeof(users_path), "%s/users", tmpdir);
	cr_assert_eq(mkdir(root, 0700), 0);
	cr_assert_eq(mail_user_add(users_path, "alice", "alice-pw"), 0);
	cr_assert_eq(mail_user_add(users_path, "bob", "bob pw"), 0);
	cr_assert_eq(mail_users_load(users_path, &users), 0);
	cr_assert_eq(mail_open(root, &store), 0);
	struct mail_server_opts o = {
		.smtp_addr = "127.0.0.1:0", .pop3_addr = "127.0.0.1:0",
		.hostname = "mx.test", .max_size = MAX_SIZE, .idle_timeout_s = opt_idle_s,
		.max_conns = opt_max_conns,
#ifdef MAIL_SERVER_LMTP /* server.h with an LMTP listener */
		.lmtp_addr = "127.0.0.1:0",
#endif
	};
	cr_assert_eq(mail_server_start(store, users, &o, &srv), 0);
#ifdef MAIL_SERVER_LMTP
	lmtp_port = mail_server_port(srv, MAIL_LMTP);
	cr_assert_gt(lmtp_port, 0);
#endif
	smtp_port = mail_server_port(srv, MAIL_SMTP);
	pop3_port = mail_server_port(srv, MAIL_POP3);
	cr_assert_gt(smtp_port, 0);
	cr_assert_gt(pop3_port, 0);
}

static void stop(void)
{
	mail_server_stop(srv);
	mail_close(store);
	mail_users_free(users);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(smtp, .init = start, .fini = stop, .timeout = 60);
TestSuite(pop3, .init = start, .fini = stop, .timeout = 60);

static void start_limits(void)
{
	opt_max_conns = 3;
	opt_idle_s = 1;
	start();
}
TestSuite(limits, .init = start_limits, .fini = stop, .timeout = 60);

/* ------------------------------ client ------------------------------ */

struct client {
	int fd;
	size_t len;
	char buf[256 * 1024];
};

static struct client *client_open(int port)
{
	struct client *c = calloc(1, sizeof(*c));
	cr_assert_not_null(c);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(c->fd, 0);
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s", strerror(errno));
	return c;
}

static void client_close(struct client *c)
{
	close(c->fd);
	free(c);
}

static void csendn(struct client *c, const char *s, size_t len)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = send(c->fd, s + off, len - off, MSG_NOSIGNAL);
		cr_assert_gt(n, 0, "send: %s", strerror(errno));
		off += (size_t)n;
	}
}

static void csend(struct client *c, const char *s)
{
	csendn(c, s, strlen(s));
}

/* One line with its CRLF stripped, in a static buffer; NULL at EOF. */
static const char *cline(struct client *c)
{
	static char line[256 * 1024];
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (nl) {
			size_t n = (size_t)(nl - c->buf);
			cr_assert(n > 0 && c->buf[n - 1] == '\r', "line without CRLF");
			memcpy(line, c->buf, n - 1);
			line[n - 1] = '\0';
			memmove(c->buf, nl + 1, c->len - n - 1);
			c->len -= n + 1;
			return line;
		}
		cr_assert_lt(c->len, sizeof(c->buf));
		ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (n <= 0)
			return NULL;
		c->len += (size_t)n;
	}
}

static void expect(struct client *c, const char *prefix)
{
	const char *l = cline(c);
	cr_assert_not_null(l, "EOF, expected '%s'", prefix);
	cr_assert(strncmp(l, prefix, strlen(prefix)) == 0, "got '%s', expected '%s'", l, prefix);
}

/* An EHLO answer: the continuation lines into caps, last line returned. */
static void expect_ehlo(struct client *c, char *caps, size_t cap)
{
	caps[0] = '\0';
	for (;;) {
		const char *l = cline(c);
		cr_assert_not_null(l);
		cr_assert(strncmp(l, "250", 3) == 0, "EHLO: %s", l);
		strncat(caps, l + 4, cap - strlen(caps) - 2);
		strcat(caps, "\n");
		if (l[3] == ' ')
			return;
	}
}

/* A POP3 multi-line body after its +OK line, dot-unstuffed, LF ends. */
static char *multiline(struct client *c)
{
	size_t cap = 1 << 16, len = 0;
	char *out = malloc(cap);
	for (;;) {
		const char *l = cline(c);
		cr_assert_not_null(l);
		if (strcmp(l, ".") == 0)
			break;
		if (l[0] == '.')
			l++;
		size_t n = strlen(l);
		cr_assert_lt(len + n + 2, cap);
		memcpy(out + len, l, n);
		out[len + n] = '\n';
		len += n + 1;
	}
	out[len] = '\0';
	return out;
}

static size_t mailbox_count(const char *user, char **first)
{
	struct mail_list l;
	int rc;
	for (int i = 0; i < 200; i++) { /* a POP3 session may still hold it */
		rc = mail_pickup(store, user, &l);
		if (rc != -EBUSY)
			break;
		usleep(10000);
	}
	cr_assert_eq(rc, 0, "pickup %s: %d", user, rc);
	size_t n = l.count;
	if (first)
		*first = n ? strdup(l.msgs[0].data) : NULL;
	mail_list_free(&l);
	cr_assert_eq(mail_unlock(store, user), 0);
	return n;
}

static struct client *smtp_hello(void)
{
	struct client *c = client_open(smtp_port);
	expect(c, "220 mx.test");
	csend(c, "EHLO client.test\r\n");
	char caps[1024];
	expect_ehlo(c, caps, sizeof(caps));
	return c;
}

/* ------------------------------- SMTP ------------------------------- */

Test(smtp, full_session_two_recipients)
{
	struct client *c = client_open(smtp_port);
	expect(c, "220 ");
	csend(c, "EHLO client.test\r\n");
	char caps[1024];
	expect_ehlo(c, caps, sizeof(caps));
	cr_assert_not_null(strstr(caps, "PIPELINING\n"));
	cr_assert_not_null(strstr(caps, "SIZE 65536\n"));
	cr_assert_not_null(strstr(caps, "8BITMIME\n"));
	cr_assert_not_null(strstr(caps, "ENHANCEDSTATUSCODES\n"));
	csend(c, "MAIL FROM: <sender@example.org> SIZE=100 BODY=8BITMIME\r\n");
	expect(c, "250 2.1.0");
	csend(c, "RCPT TO:<alice@example.org>\r\n");
	expect(c, "250 2.1.5");
	csend(c, "RCPT TO:<bob@elsewhere.test>\r\n");
	expect(c, "250 2.1.5");
	csend(c, "VRFY alice\r\n");
	expect(c, "252 ");
	csend(c, "NOOP\r\n");
	expect(c, "250 2.0.0");
	csend(c, "DATA\r\n");
	expect(c, "354 ");
	csend(c, "Subject: hi\r\n\r\nhello\r\n..leading dot\r\n.\r\n");
	expect(c, "250 2.0.0");
	csend(c, "QUIT\r\n");
	expect(c, "221 ");
	cr_assert_null(cline(c));
	client_close(c);
	const char *who[] = { "alice", "bob" };
	for (int i = 0; i < 2; i++) {
		char *msg;
		cr_assert_eq(mailbox_count(who[i], &msg), 1);
		cr_assert_not_null(strstr(msg, "Received: from client.test"));
		cr_assert_not_null(strstr(msg, "Return-Path: <sender@example.org>"));
		cr_assert_not_null(strstr(msg, "\nSubject: hi\n\nhello\n.leading dot\n"), "%s", msg);
		cr_assert_eq(strstr(msg, "..leading"), NULL);
		free(msg);
	}
}

Test(smtp, pipelining_in_order)
{
	struct client *c = client_open(smtp_port);
	expect(c, "220 ");
	csend(c, "EHLO p.test\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice@x>\r\n"
		 "RCPT TO:<nobody@x>\r\nRCPT TO:<bob@x>\r\nDATA\r\n");
	char caps[1024];
	expect_ehlo(c, caps, sizeof(caps));
	expect(c, "250 2.1.0");
	expect(c, "250 2.1.5");
	expect(c, "550 5.7.1");
	expect(c, "250 2.1.5");
	expect(c, "354 ");
	csend(c, "one\r\n.\r\nRSET\r\nMAIL FROM:<>\r\nRCPT TO:<bob@x>\r\nDATA\r\ntwo\r\n.\r\nNOOP\r\nQUIT\r\n");
	expect(c, "250 2.0.0");
	expect(c, "250 2.0.0"); /* RSET */
	expect(c, "250 2.1.0");
	expect(c, "250 2.1.5");
	expect(c, "354 ");
	expect(c, "250 2.0.0");
	expect(c, "250 2.0.0"); /* NOOP */
	expect(c, "221 ");
	client_close(c);
	cr_assert_eq(mailbox_count("alice", NULL), 1);
	cr_assert_eq(mailbox_count("bob", NULL), 2);
}

Test(smtp, no_relay_unknown_recipient)
{
	struct client *c = smtp_hello();
	csend(c, "RCPT TO:<alice@x>\r\n");
	expect(c, "503 5.5.1");
	csend(c, "MAIL FROM:<a@b>\r\n");
	expect(c, "250 ");
	csend(c, "RCPT TO:<mallory@example.org>\r\n");
	expect(c, "550 5.7.1");
	csend(c, "RCPT TO:<../alice@example.org>\r\n");
	expect(c, "550 5.7.1");
	csend(c, "RCPT TO:<someone@gmail.com>\r\n");
	expect(c, "550 5.7.1");
	csend(c, "DATA\r\n");
	expect(c, "554 5.5.1");
	csend(c, "QUIT\r\n");
	expect(c, "221 ");
	client_close(c);
}

Test(smtp, too_big_552)
{
	struct client *c = smtp_hello();
	csend(c, "MAIL FROM:<a@b> SIZE=1000000\r\n");
	expect(c, "552 5.3.4");
	csend(c, "MAIL FROM:<a@b>\r\n");
	expect(c, "250 ");
	csend(c, "RCPT TO:<alice@x>\r\n");
	expect(c, "250 ");
	csend(c, "DATA\r\n");
	expect(c, "354 ");
	char line[103];
	memset(line, 'x', 100);
	strcpy(line + 100, "\r\n");
	for (int i = 0; i < 1000; i++) /* 100 KB > 64 KiB */
		csend(c, line);
	csend(c, ".\r\n");
	expect(c, "552 5.3.4");
	csend(c, "NOOP\r\n");
	expect(c, "250 ");
	client_close(c);
	cr_assert_eq(mailbox_count("alice", NULL), 0);
}

Test(smtp, bare_lf_and_bare_cr_rejected)
{
	struct client *c = smtp_hello();
	const char *bodies[] = {
		"hello\nMAIL FROM:<x@y>\r\n.\r\n",      /* bare LF */
		"hello\r\n.\nRCPT TO:<bob@x>\r\n.\r\n",  /* LF . LF smuggling */
		"hello\rworld\r\n.\r\n",                 /* bare CR */
	};
	for (int i = 0; i < 3; i++) {
		csend(c, "MAIL FROM:<a@b>\r\n");
		expect(c, "250 ");
		csend(c, "RCPT TO:<alice@x>\r\n");
		expect(c, "250 ");
		csend(c, "DATA\r\n");
		expect(c, "354 ");
		csend(c, bodies[i]);
		expect(c, "554 5.6.0");
	}
	csend(c, "NOOP\r\n");
	expect(c, "250 ");
	client_close(c);
	cr_assert_eq(mailbox_count("alice", NULL), 0);
	cr_assert_eq(mailbox_count("bob", NULL), 0);
}

Test(smtp, vanish_mid_data)
{
	for (int i = 0; i < 5; i++) {
		struct client *c = smtp_hello();
		csend(c, "MAIL FROM:<a@b>\r\nRCPT TO:<alice@x>\r\nDATA\r\n");
		expect(c, "250 ");
		expect(c, "250 ");
		expect(c, "354 ");
		csend(c, "Subject: partial\r\n\r\nsome text\r\nand a half line");
		if (i % 2) { /* reset instead of FIN */
			struct linger lg = { 1, 0 };
			setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		client_close(c);
	}
	usleep(200000);
	struct client *c = smtp_hello(); /* still serving */
	csend(c, "QUIT\r\n");
	expect(c, "221 ");
	client_close(c);
	cr_assert_eq(mailbox_count("alice", NULL), 0);
}

Test(smtp, overlong_lines_and_junk)
{
	struct client *c = smtp_hello();
	char big[3000];
	memset(big, 'A', sizeof(big) - 3);
	strcpy(big + sizeof(big) - 3, "\r\n");
	csend(c, big);
	expect(c, "500 5.5.2");
	csendn(c, "\x01\x02\xff\xfe\x00junk\r\n", 11);
	expect(c, "500 ");
	csend(c, "NOOP\r\n");
	expect(c, "250 ");
	/* a DATA line over 1000: the message is rejected at its end */
	csend(c, "MAIL FROM:<a@b>\r\nRCPT TO:<alice@x>\r\nDATA\r\n");
	expect(c, "250 ");
	expect(c, "250 ");
	expect(c, "354 ");
	csend(c, "ok line\r\n");
	csend(c, big);
	csend(c, "after\r\n.\r\n");
	expect(c, "500 5.5.2");
	csend(c, "QUIT\r\n");
	expect(c, "221 ");
	client_close(c);
	cr_assert_eq(mailbox_count("alice", NULL), 0);
}

/* One recipient's delivery fails (bob's mailbox path is a plain file):
 * 451 for the message, and alice's copy is withdrawn, so that the
 * client's retry does not give her a second one. */
/* One message to alice and bob, pipelined; the reply to its end of DATA. */
static void send_to_both(struct client *c, const char *want)
{
	csend(c, "MAIL FROM:<a@b>\r\nRCPT TO:<alice@x>\r\nRCPT TO:<bob@x>\r\nDATA\r\n");
	for (int i = 0; i < 3; i++)
		expect(c, "250 ");
	expect(c, "354 ");
	csend(c, "Subject: both\r\n\r\nbody\r\n.\r\n");
	expect(c, want);
}

Test(smtp, partial_failure_withdraws_delivered_copies)
{
	char bob[300];
	snprintf(bob, sizeof(bob), "%s/bob", root);
	int fd = open(bob, O_WRONLY | O_CREAT | O_EXCL, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	struct client *c = smtp_hello();
	send_to_both(c, "451 4.3.0");
	cr_assert_eq(mailbox_count("alice", NULL), 0, "alice's copy was not withdrawn");
	/* the failure mended, the retry delivers one copy each */
	cr_assert_eq(unlink(bob), 0);
	send_to_both(c, "250 2.0.0");
	csend(c, "QUIT\r\n");
	expect(c, "221 ");
	client_close(c);
	cr_assert_eq(mailbox_count("alice", NULL), 1);
	cr_assert_eq(mailbox_count("bob", NULL), 1);
}

/* RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF,
 * "not counting the leading dot duplicated for transparency": a 998-octet
 * line starting with a dot is 1001 octets on the wire and must pass (swaks
 * sending such a line got 500 before). One octet more is still too long,
 * stuffed or not. */
Test(smtp, dot_stuffed_998_octet_line)
{
	static char line[1100], want[1100];
	want[0] = '.';
	memset(want + 1, 'x', 997);
	want[998] = '\0';
	line[0] = '.'; /* stuffed: 1001 octets */
	memcpy(line + 1, want, 998);
	memcpy(line + 999, "\r\n", 3);
	cr_assert_eq(strlen(line), 1001);
	struct client *c = smtp_hello();
	csend(c, "MAIL FROM:<a@b>\r\nRCPT TO:<alice@x>\r\nDATA\r\n");
	expect(c, "250 ");
	expect(c, "250 ");
	expect(c, "354 ");
	csend(c, "Subject: long\r\n\r\n");
	csend(c, line);
	csend(c, "end\r\n.\r\n");
	expect(c, "250 2.0.0");
	/* 999 octets unstuffed (1001 with CRLF), then 999 stuffed (1002) */
	for (int stuffed = 0; stuffed < 2; stuffed++) {
		memset(line, stuffed ? '.' : 'y', 1001);
		strcpy(line + (stuffed ? 1000 : 999), "\r\n");
		csend(c, "MAIL FROM:<a@b>\r\nRCPT TO:<alice@x>\r\nDATA\r\n");
		expect(c, "250 ");
		expect(c, "250 ");
		expect(c, "354 ");
		csend(c, line);
		csend(c, ".\r\n");
		expect(c, "500 5.5.2");
	}
	csend(c, "QUIT\r\n");
	expect(c, "221 ");
	client_close(c);
	char *msg;
	cr_assert_eq(mailbox_count("alice", &msg), 1);
	char *body = strstr(msg, "\n\n");
	cr_assert_not_null(body);
	cr_assert_eq(strncmp(body + 2, want, 998), 0);
	cr_assert_str_eq(body + 2 + 998, "\nend\n");
	free(msg);
}

Test(smtp, two_hundred_idle_connections)
{
	enum { N = 200 };
	struct client *c[N];
	for (int i = 0; i < N; i++)
		c[i] = client_open(smtp_port);
	for (int i = 0; i < N; i++)
		expect(c[i], "220 ");
	for (int i = 0; i < N; i++)
		csend(c[i], "QUIT\r\n");
	for (int i = 0; i < N; i++) {
		expect(c[i], "221 ");
		client_close(c[i]);
	}
}

/* ------------------------------- LMTP ------------------------------- */

/* An SMTP server is not an LMTP server (RFC 2033 5: never on port 25). */
Test(smtp, lhlo_refused)
{
	struct client *c = client_open(smtp_port);
	expect(c, "220 mx.test ESMTP");
	csend(c, "LHLO client.test\r\n");
	expect(c, "500 5.5.1");
	csend(c, "MAIL FROM:<a@b>\r\n");
	expect(c, "503 ");
	client_close(c);
}

#ifdef MAIL_SERVER_LMTP
static struct client *lmtp_hello(void)
{
	struct client *c = client_open(lmtp_port);
	expect(c, "220 mx.test LMTP");
	csend(c, "EHLO client.test\r\n"); /* RFC 2033 4.1: LHLO only */
	expect(c, "500 5.5.1");
	csend(c, "HELO client.test\r\n");
	expect(c, "500 5.5.1");
	csend(c, "LHLO client.test\r\n");
	char caps[1024];
	expect_ehlo(c, caps, sizeof(caps));
	cr_assert_not_null(strstr(caps, "PIPELINING\n"));         /* RFC 2033 4.1: MUST */
	cr_assert_not_null(strstr(caps, "ENHANCEDSTATUSCODES\n")); /* SHOULD */
	return c;
}

/* One reply per accepted RCPT after the dot, in order, a duplicate included
 * (one copy delivered); the refused recipient gets none. Pipelined, as
 * postal -L and swaks --protocol LMTP --pipeline send it. */
Test(smtp, lmtp_one_reply_per_recipient)
{
	struct client *c = lmtp_hello();
	csend(c, "MAIL FROM: <s@example.org>\r\nRCPT TO:<alice@x>\r\nRCPT TO:<nobody@x>\r\n"
		 "RCPT TO:<bob@x>\r\nRCPT TO: <alice@y>\r\nDATA\r\n");
	expect(c, "250 2.1.0");
	expect(c, "250 2.1.5");
	expect(c, "550 5.7.1");
	expect(c, "250 2.1.5");
	expect(c, "250 2.1.5");
	expect(c, "354 ");
	csend(c, "Subject: lmtp\r\n\r\n..dot\r\n.\r\nNOOP\r\n");
	expect(c, "250 2.0.0 <alice>");
	expect(c, "250 2.0.0 <bob>");
	expect(c, "250 2.0.0 <alice>");
	expect(c, "250 2.0.0"); /* NOOP: nothing more came before it */
	/* no recipient: 503 (RFC 2033 4.2), not 554 */
	csend(c, "MAIL FROM:<>\r\nRCPT TO:<nobody@x>\r\nDATA\r\nRSET\r\n");
	expect(c, "250 2.1.0");
	expect(c, "550 5.7.1");
	expect(c, "503 5.5.1");
	expect(c, "250 2.0.0");
	/* a message refused as a whole: the reply once per recipient */
	csend(c, "MAIL FROM:<>\r\nRCPT TO:<alice@x>\r\nRCPT TO:<bob@x>\r\nDATA\r\n");
	expect(c, "250 2.1.0");
	expect(c, "250 2.1.5");
	expect(c, "250 2.1.5");
	expect(c, "354 ");
	csend(c, "bare\nlf\r\n.\r\n");
	expect(c, "554 5.6.0");
	expect(c, "554 5.6.0");
	csend(c, "QUIT\r\n");
	expect(c, "221 ");
	client_close(c);
	char *msg;
	cr_assert_eq(mailbox_count("alice", &msg), 1);
	cr_assert_not_null(strstr(msg, "with LMTP;"), "%s", msg);
	cr_assert_not_null(strstr(msg, "\n\n.dot\n"), "%s", msg);
	free(msg);
	cr_assert_eq(mailbox_count("bob", NULL), 1);
}
#endif

/* ------------------------------- POP3 ------------------------------- */

static char ids[2][MAIL_ID_MAX];

static void deliver_two(void)
{
	const char *m1 = "Subject: one\nX-Test: 1\n\nline1\n.dotted\nline3\n";
	const char *m2 = "Subject: two\n\nbody two\n";
	cr_assert_eq(mail_deliver(store, "alice", m1, strlen(m1), ids[0]), 0);
	usleep(2000);
	cr_assert_eq(mail_deliver(store, "alice", m2, strlen(m2), ids[1]), 0);
	if (strcmp(ids[0], ids[1]) > 0) { /* listed sorted by id */
		char t[MAIL_ID_MAX];
		strcpy(t, ids[0]);
		strcpy(ids[0], ids[1]);
		strcpy(ids[1], t);
	}
}

static struct client *pop3_login(const char *user, const char *pass, const char *want)
{
	struct client *c = client_open(pop3_port);
	expect(c, "+OK");
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "USER %s\r\n", user);
	csend(c, cmd);
	expect(c, "+OK");
	snprintf(cmd, sizeof(cmd), "PASS %s\r\n", pass);
	csend(c, cmd);
	expect(c, want);
	return c;
}

Test(pop3, commands)
{
	deliver_two();
	struct client *c = client_open(pop3_port);
	expect(c, "+OK");
	csend(c, "CAPA\r\n");
	expect(c, "+OK");
	char *caps = multiline(c);
	cr_assert_not_null(strstr(caps, "UIDL\n"));
	cr_assert_not_null(strstr(caps, "TOP\n"));
	cr_assert_not_null(strstr(caps, "USER\n"));
	cr_assert_not_null(strstr(caps, "PIPELINING\n"));
	free(caps);
	csend(c, "STAT\r\n");
	expect(c, "-ERR");
	csend(c, "USER alice\r\nPASS alice-pw\r\n");
	expect(c, "+OK");
	expect(c, "+OK maildrop has 2 messages");
	/* sizes as sent: CRLF line ends */
	size_t s1 = strlen("Subject: one\nX-Test: 1\n\nline1\n.dotted\nline3\n") + 6;
	size_t s2 = strlen("Subject: two\n\nbody two\n") + 3;
	char want[700];
	csend(c, "STAT\r\n");
	snprintf(want, sizeof(want), "+OK 2 %zu", s1 + s2);
	expect(c, want);
	csend(c, "LIST\r\n");
	expect(c, "+OK");
	char *l = multiline(c);
	snprintf(want, sizeof(want), "1 %zu\n2 %zu\n", s1, s2);
	cr_assert_str_eq(l, want);
	free(l);
	csend(c, "LIST 2\r\n");
	snprintf(want, sizeof(want), "+OK 2 %zu", s2);
	expect(c, want);
	csend(c, "LIST 3\r\n");
	expect(c, "-ERR");
	csend(c, "UIDL\r\n");
	expect(c, "+OK");
	l = multiline(c);
	snprintf(want, sizeof(want), "1 %s\n2 %s\n", ids[0], ids[1]);
	cr_assert_str_eq(l, want);
	free(l);
	csend(c, "UIDL 1\r\n");
	snprintf(want, sizeof(want), "+OK 1 %s", ids[0]);
	expect(c, want);
	/* RETR: the raw lines carry the stuffed dot */
	csend(c, "RETR 1\r\n");
	snprintf(want, sizeof(want), "+OK %zu octets", s1);
	expect(c, want);
	expect(c, "Subject: one");
	expect(c, "X-Test: 1");
	expect(c, "");
	expect(c, "line1");
	const char *d = cline(c);
	cr_assert_str_eq(d, "..dotted");
	expect(c, "line3");
	d = cline(c);
	cr_assert_str_eq(d, ".");
	csend(c, "TOP 1 0\r\n");
	expect(c, "+OK");
	l = multiline(c);
	cr_assert_str_eq(l, "Subject: one\nX-Test: 1\n\n");
	free(l);
	csend(c, "TOP 1 2\r\n");
	expect(c, "+OK");
	l = multiline(c);
	cr_assert_str_eq(l, "Subject: one\nX-Test: 1\n\nline1\n.dotted\n");
	free(l);
	csend(c, "RETR 9\r\nNOOP\r\nFOO\r\n");
	expect(c, "-ERR");
	expect(c, "+OK");
	expect(c, "-ERR");
	csend(c, "DELE 1\r\nDELE 1\r\nSTAT\r\nRSET\r\nSTAT\r\nDELE 2\r\nLIST 2\r\nQUIT\r\n");
	expect(c, "+OK");
	expect(c, "-ERR");
	snprintf(want, sizeof(want), "+OK 1 %zu", s2);
	expect(c, want);
	expect(c, "+OK");
	snprintf(want, sizeof(want), "+OK 2 %zu", s1 + s2);
	expect(c, want);
	expect(c, "+OK");
	expect(c, "-ERR");
	expect(c, "+OK");
	cr_assert_null(cline(c));
	client_close(c);
	char *first;
	cr_assert_eq(mailbox_count("alice", &first), 1);
	cr_assert_not_null(strstr(first, "Subject: one"));
	free(first);
}

/* RFC 1939 7: a unique-id is 1..70 octets of 0x21..0x7E. A file another
 * program put into the Maildir may have a longer name (Dovecot's ",S=,W="
 * names): its UIDL is a stable hash instead; our own ids are sent as is. */
Test(pop3, uidl_of_a_long_foreign_name)
{
	deliver_two();
	const char *name = "1700000000.M123456P7890V0000000000000803I00000000000123ab_0."
			   "mail-server-1.example.internal,S=25,W=27";
	cr_assert_gt(strlen(name), 70);
	char path[600];
	snprintf(path, sizeof(path), "%s/alice/new/%s", root, name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("Subject: foreign\n\nhello\n", f);
	cr_assert_eq(fclose(f), 0);
	char first[3][80];
	for (int session = 0; session < 2; session++) {
		struct client *c = pop3_login("alice", "alice-pw", "+OK");
		csend(c, "UIDL\r\n");
		expect(c, "+OK");
		char *list = multiline(c);
		int n = 0, foreign = 0;
		for (char *l = strtok(list, "\n"); l; l = strtok(NULL, "\n"), n++) {
			cr_assert_lt(n, 3, "%s", l);
			int num;
			char uid[200];
			cr_assert_eq(sscanf(l, "%d %199s", &num, uid), 2, "%s", l);
			cr_assert_eq(num, n + 1);
			size_t len = strlen(uid);
			cr_assert(len >= 1 && len <= 70, "UIDL '%s' is %zu long", uid, len);
			for (size_t i = 0; i < len; i++)
				cr_assert(uid[i] >= 0x21 && uid[i] <= 0x7e);
			if (session == 0)
				strcpy(first[n], uid);
			else
				cr_assert_str_eq(uid, first[n], "UIDL changed between sessions");
			if (strcmp(uid, ids[0]) && strcmp(uid, ids[1])) {
				foreign = num;
				cr_assert_eq(uid[0], 'h');
				cr_assert_eq(len, 33);
			}
		}
		free(list);
		cr_assert_eq(n, 3);
		cr_assert_gt(foreign, 0);
		char cmd[64];
		snprintf(cmd, sizeof(cmd), "UIDL %d\r\n", foreign);
		csend(c, cmd);
		char want[100];
		snprintf(want, sizeof(want), "+OK %d %s", foreign, first[foreign - 1]);
		expect(c, want);
		snprintf(cmd, sizeof(cmd), "RETR %d\r\n", foreign);
		csend(c, cmd);
		expect(c, "+OK");
		char *msg = multiline(c);
		cr_assert_str_eq(msg, "Subject: foreign\n\nhello\n");
		free(msg);
		csend(c, "QUIT\r\n");
		expect(c, "+OK");
		client_close(c);
	}
	cr_assert_eq(mailbox_count("alice", NULL), 3);
}

Test(pop3, dele_without_quit_removes_nothing)
{
	deliver_two();
	struct client *c = pop3_login("alice", "alice-pw", "+OK maildrop has 2");
	csend(c, "DELE 1\r\nDELE 2\r\n");
	expect(c, "+OK");
	expect(c, "+OK");
	client_close(c);
	cr_assert_eq(mailbox_count("alice", NULL), 2); /* waits for the unlock */
	/* and a new session gets the maildrop again */
	c = pop3_login("alice", "alice-pw", "+OK maildrop has 2");
	csend(c, "QUIT\r\n");
	expect(c, "+OK");
	client_close(c);
}

/* Junk before login: an error each, and the connection is closed after
 * the twentieth, as SMTP does; the maildrop was never touched. */
Test(pop3, too_many_errors_before_login_closes)
{
	struct client *c = client_open(pop3_port);
	expect(c, "+OK");
	for (int i = 1; i < 20; i++) {
		csend(c, i % 2 ? "STAT\r\n" : "XYZZY\r\n");
		expect(c, "-ERR");
	}
	csend(c, "PASS early\r\n");
	expect(c, "-ERR too many errors");
	cr_assert_null(cline(c));
	client_close(c);
	c = pop3_login("alice", "alice-pw", "+OK"); /* others still served */
	csend(c, "QUIT\r\n");
	expect(c, "+OK");
	client_close(c);
}

Test(pop3, maildrop_in_use)
{
	deliver_two();
	struct client *a = pop3_login("alice", "alice-pw", "+OK");
	struct client *b = pop3_login("alice", "alice-pw", "-ERR [IN-USE]");
	client_close(b);
	csend(a, "STAT\r\n");
	expect(a, "+OK 2 ");
	csend(a, "QUIT\r\n");
	expect(a, "+OK");
	client_close(a);
	b = pop3_login("alice", "alice-pw", "+OK maildrop has 2");
	client_close(b);
}

Test(pop3, wrong_password_delayed)
{
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct client *c = pop3_login("alice", "wrong", "-ERR [AUTH]");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_assert_geq(dt, 0.9, "answered after %.3f s", dt);
	/* the loop was not blocked meanwhile: another session works */
	csend(c, "PASS alice-pw\r\n");
	expect(c, "-ERR"); /* USER again first */
	csend(c, "USER nosuchuser\r\nPASS x\r\n");
	expect(c, "+OK");
	expect(c, "-ERR [AUTH]");
	csend(c, "USER bob\r\nPASS bob pw\r\n");
	expect(c, "+OK");
	expect(c, "+OK maildrop has 0");
	csend(c, "QUIT\r\n");
	expect(c, "+OK");
	client_close(c);
}

Test(pop3, loop_not_blocked_by_auth_delay)
{
	struct client *bad = client_open(pop3_port);
	expect(bad, "+OK");
	csend(bad, "USER alice\r\nPASS nope\r\n");
	expect(bad, "+OK");
	usleep(100000);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct client *c = client_open(smtp_port);
	expect(c, "220 ");
	csend(c, "NOOP\r\n");
	expect(c, "250 ");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_assert_lt(dt, 0.5, "SMTP took %.3f s during a POP3 auth delay", dt);
	expect(bad, "-ERR [AUTH]");
	client_close(bad);
	client_close(c);
}

/* ------------------------------ limits ------------------------------ */

Test(limits, max_conns_and_idle_timeout)
{
	struct client *c[3];
	for (int i = 0; i < 3; i++) {
		c[i] = client_open(i == 2 ? pop3_port : smtp_port);
		expect(c[i], i == 2 ? "+OK" : "220 ");
	}
	struct client *x = client_open(smtp_port);
	expect(x, "421 4.7.0 mx.test "); /* RFC 5321 4.2: the 421 names us */
	cr_assert_null(cline(x));
	client_close(x);
	x = client_open(pop3_port);
	expect(x, "-ERR [SYS/TEMP] mx.test:");
	client_close(x);
	/* idle for 1 s: 421 / -ERR, then closed */
	expect(c[0], "421 4.4.2");
	cr_assert_null(cline(c[0]));
	expect(c[1], "421 4.4.2");
	expect(c[2], "-ERR");
	cr_assert_null(cline(c[2]));
	for (int i = 0; i < 3; i++)
		client_close(c[i]);
	usleep(100000);
	x = client_open(smtp_port); /* room again */
	expect(x, "220 ");
	client_close(x);
}

Test(limits, stall_mid_data_times_out)
{
	struct client *c = client_open(smtp_port);
	expect(c, "220 ");
	csend(c, "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice@x>\r\nDATA\r\npartial\r\n");
	expect(c, "250 ");
	expect(c, "250 ");
	expect(c, "250 ");
	expect(c, "354 ");
	expect(c, "421 4.4.2");
	cr_assert_null(cline(c));
	client_close(c);
	cr_assert_eq(mailbox_count("alice", NULL), 0);
}

Test(limits, pop3_session_timeout_unlocks)
{
	const char *m = "Subject: x\n\nbody\n";
	cr_assert_eq(mail_deliver(store, "alice", m, strlen(m), NULL), 0);
	struct client *c = pop3_login("alice", "alice-pw", "+OK maildrop has 1");
	csend(c, "DELE 1\r\n");
	expect(c, "+OK");
	expect(c, "-ERR");
	cr_assert_null(cline(c));
	client_close(c);
	cr_assert_eq(mailbox_count("alice", NULL), 1);
}
