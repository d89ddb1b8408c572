/*
 * server.h - the network side of the mail store: an SMTP and a POP3 server
 * on top of mail.h, driven by one connection engine.
 *
 * Concurrency model
 *   - One event-loop thread (epoll, level-triggered) owns every socket: the
 *     listeners and all connections, non-blocking. A connection is a small
 *     struct (a 2 KiB input buffer, an output buffer grown on demand, the
 *     protocol state), never a thread, so 1 000+ idle connections cost a few
 *     KiB each (3.5 KiB of RSS, measured by tests/stress/mail_conns.c).
 *     Input is cut into lines with hard limits (SMTP command line 512, SMTP
 *     text line 1000 - RFC 5321 4.5.3.1 -, POP3 line 512, CRLF included);
 *     an over-long line is discarded up to its end and reported to the
 *     protocol as one "too long" line (500 / -ERR, or the message is
 *     rejected at the end of DATA). Several commands in one buffer
 *     (PIPELINING) are handled one after the other, answers in order.
 *   - What blocks on the disk (mail_deliver with its fsyncs; mail_list,
 *     mail_read, mail_delete, mail_unlock; mail_user_check with crypt) runs
 *     on a small fixed pool of worker threads. While a job runs its
 *     connection is parked (reading paused, buffered commands wait); the
 *     worker posts the finished job back through an eventfd and the loop
 *     resumes the connection. Jobs of a closed connection (e.g. releasing a
 *     POP3 maildrop lock when a client vanishes) run detached.
 *   - Timers (idle timeout, the delay after a wrong POP3 password) are
 *     checked by the loop every 100 ms: a delayed connection is parked, the
 *     loop is never blocked.
 *   - Limits: max connections (one reply, 421 / -ERR, then close), idle
 *     timeout (421 / -ERR, then close), max message size (SMTP SIZE; 552
 *     after reading to the end of DATA), 100 recipients. A client that
 *     vanishes mid-DATA loses its partial message; nothing was delivered.
 *   - Out of descriptors or memory (accept: EMFILE, ENFILE, ENOBUFS,
 *     ENOMEM): the listeners are left out of epoll for 100 ms, or until a
 *     connection closes, so the loop does not spin on the pending
 *     connection; open connections are served meanwhile, nothing is logged.
 *     Waiting clients stay in the kernel's backlog until then.
 *   - Users: the list can be replaced while running (mail_server_set_users,
 *     e.g. on SIGHUP); the loop switches to it at its next turn and frees a
 *     replaced list once no worker job can still be using it.
 *   - Stop: the loop exits, workers finish their queue, every session is
 *     closed (maildrops unlocked without deleting).
 */
#ifndef CAT_MAIL_SERVER_H
#define CAT_MAIL_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mail/mail.h"

struct mail_server;

enum mail_proto { MAIL_SMTP = 0, MAIL_POP3 = 1, MAIL_LMTP = 2 };
#define MAIL_SERVER_LMTP 1 /* mail_server_opts.lmtp_addr exists */

struct mail_server_opts {
	const char *smtp_addr;      /* "ADDR:PORT" ("[v6]:PORT"); NULL: no SMTP */
	const char *pop3_addr;      /* the same for POP3; NULL: no POP3 */
	const char *lmtp_addr;      /* the same for LMTP (RFC 2033); NULL: none */
	const char *hostname;       /* in banners and Received:; NULL: gethostname */
	uint64_t max_size;          /* message size limit; 0: 10 MiB */
	unsigned max_conns;         /* both protocols together; 0: 2048 */
	unsigned idle_timeout_s;    /* 0: 300 s */
	unsigned workers;           /* 0: 4 */
	unsigned auth_delay_ms;     /* after a wrong POP3 password; 0: 1000 */
};

/* Bind the listeners (port 0 picks a free port, see mail_server_port) and
 * start the loop and the workers. store and users must outlive the server. */
int mail_server_start(struct mail_store *store, const struct mail_users *users,
		      const struct mail_server_opts *opts, struct mail_server **out);

/* The bound TCP port of a listener, -1 when it is not enabled. */
int mail_server_port(const struct mail_server *srv, enum mail_proto proto);

/* Close every connection (maildrops unlocked), stop the threads, free.
 * Frees every list given to mail_server_set_users, never the one given to
 * mail_server_start (the caller frees it afterwards). */
void mail_server_stop(struct mail_server *srv);

/* Replace the users list, e.g. after reloading the users file.
 *   - Any thread, at any time between mail_server_start and the call to
 *     mail_server_stop (not concurrently with it); calls may race each
 *     other, the last one wins.
 *   - On success the server owns users: do not touch or free it again. It
 *     is freed when replaced in turn and no longer used, or by
 *     mail_server_stop. On error (-EINVAL, -ENOMEM) the caller keeps it and
 *     the old list stays.
 *   - Asynchronous: the loop thread is woken and switches to it after the
 *     events it is handling (milliseconds). Commands handled
 *     before that, and jobs started before that (a POP3 PASS check), use
 *     the old list, which stays valid until they are done. */
int mail_server_set_users(struct mail_server *srv, struct mail_users *users);

/* ------------- the engine, for the protocols (smtp.c, pop3.c) ------------- */

struct srv_conn;

/* A job for the worker pool. Embed it as the first member of a protocol's
 * own job struct. run() runs on a worker; done() runs on the loop thread
 * afterwards (also when the connection was closed meanwhile: see
 * srv_closing) and frees the job. A detached job (srv_submit_detached) has
 * no done(): run() frees it. */
struct srv_job {
	struct srv_conn *conn;
	void (*run)(struct srv_job *job);
	void (*done)(struct srv_job *job);
	struct srv_job *next;
};

struct srv_proto {
	const char *name;
	/* Sent when max_conns is reached: a printf format with one %s, the
	 * host name (RFC 5321 4.2: a 421 names the server), ending in CRLF. */
	const char *full_reply;
	/* New connection: allocate the state, write the banner. <0: close. */
	int (*on_open)(struct srv_conn *c);
	/* One input line with its terminator ("\n" or "\r\n"), NUL-terminated
	 * in place; too_long: a line over the limit was discarded (line NULL). */
	void (*on_line)(struct srv_conn *c, char *line, size_t len, bool too_long);
	void (*on_wake)(struct srv_conn *c);      /* after srv_sleep */
	void (*on_timeout)(struct srv_conn *c);   /* idle: write the reply */
	void (*on_close)(struct srv_conn *c);     /* free the state */
};

/* Connection accessors. */
void *srv_state(struct srv_conn *c);
void srv_set_state(struct srv_conn *c, void *state);
struct mail_server *srv_server(struct srv_conn *c);
const char *srv_peer(struct srv_conn *c);        /* "1.2.3.4" */
bool srv_closing(struct srv_conn *c);            /* peer gone / stopping */
void srv_set_line_max(struct srv_conn *c, size_t max); /* terminator included */

/* Server accessors. */
struct mail_store *srv_store(struct mail_server *s);
/* The current users list. Loop thread only (the protocol callbacks). The
 * pointer stays valid until the callback returns, and, when that callback
 * submits a job with srv_submit, in that job until its done() has run. It
 * must not be kept longer, nor used in a detached job (the list may be
 * replaced and freed by mail_server_set_users). */
const struct mail_users *srv_users(struct mail_server *s);
const char *srv_hostname(struct mail_server *s);
uint64_t srv_max_size(struct mail_server *s);
unsigned srv_auth_delay_ms(struct mail_server *s);

/* Output (buffered, sent by the loop). */
void srv_write(struct srv_conn *c, const void *buf, size_t len);
void srv_printf(struct srv_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Send what is buffered, then close (QUIT). No more input is handled. */
void srv_quit(struct srv_conn *c);
/* Park c until job->done has run. */
void srv_submit(struct srv_conn *c, struct srv_job *job);
/* A job with no connection: run() runs on a worker and frees the job. */
void srv_submit_detached(struct mail_server *s, struct srv_job *job);
/* Park c for ms milliseconds, then call proto->on_wake. */
void srv_sleep(struct srv_conn *c, unsigned ms);

#endif
