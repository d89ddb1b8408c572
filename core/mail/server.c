/*
 * server.c - the connection engine of server.h: one epoll loop thread, a
 * fixed worker pool, line framing with hard limits, timers, a pause of the
 * listeners when accept() runs out of descriptors or memory, and the
 * users list swapped at run time (mail_server_set_users).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/mail/pop3.h"
#include "core/mail/server.h"
#include "core/mail/smtp.h"

#define SRV_IN_CAP 2048           /* > every line limit */
#define SRV_OUT_HIGH (256 * 1024) /* stop handling input above this */
#define SRV_TICK_MS 100
#define SRV_ACCEPT_BACKOFF_MS 100 /* listeners paused after EMFILE & co */

enum { KIND_LISTEN, KIND_EVENT, KIND_CONN };

struct listener {
	int kind;
	int fd;
	int port;
	const struct srv_proto *proto;
};

/* One users list and the connection jobs submitted while it was current
 * (they may hold the pointer, see srv_users). A replaced list is freed when
 * its last such job is done. */
struct users_ref {
	const struct mail_users *users;
	struct mail_users *owned;   /* == users when ours to free, else NULL */
	unsigned jobs;              /* loop thread only */
	struct users_ref *next;     /* in the retired list */
};

struct srv_conn {
	int kind;
	int fd;
	struct mail_server *srv;
	const struct srv_proto *proto;
	void *state;
	struct users_ref *job_users; /* the list current when the job started */
	struct srv_conn *prev, *next;
	char peer[INET6_ADDRSTRLEN];
	size_t line_max;
	size_t in_off, in_len;
	char *out;
	size_t out_off, out_len, out_cap;
	uint64_t last_active, wake_at;
	uint32_t mask;
	bool busy, sleeping, closing, quitting, eof, dead, discarding;
	char in[SRV_IN_CAP + 1];
};

struct mail_server {
	struct mail_store *store;
	const struct mail_users *users; /* == users_cur->users, loop thread */
	struct users_ref *users_cur, *users_retired; /* loop thread */
	pthread_mutex_t users_mu;       /* guards users_pending */
	struct users_ref *users_pending;
	atomic_bool users_changed;
	char hostname[256];
	uint64_t max_size;
	unsigned max_conns, idle_ms, auth_delay_ms;
	int epfd;
	struct { int kind; int fd; } ev;
	struct listener lis[3]; /* enum mail_proto */
	pthread_t loop;
	bool loop_started;
	atomic_bool stop;
	/* worker pool */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct srv_job *q_head, *q_tail, *done_head, *done_tail;
	bool quit, pool_stopped;
	pthread_t *workers;
	unsigned nworkers;
	/* connections, loop thread only */
	struct srv_conn *conns;
	unsigned nconns;
	uint64_t last_tick;
	uint64_t accept_resume_at;      /* listeners paused until then; 0: not */
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---------------------------- accessors ---------------------------- */

void *srv_state(struct srv_conn *c) { return c->state; }
void srv_set_state(struct srv_conn *c, void *state) { c->state = state; }
struct mail_server *srv_server(struct srv_conn *c) { return c->srv; }
const char *srv_peer(struct srv_conn *c) { return c->peer; }
bool srv_closing(struct srv_conn *c) { return c->closing; }
void srv_set_line_max(struct srv_conn *c, size_t max)
{
	c->line_max = max < SRV_IN_CAP ? max : SRV_IN_CAP;
}
struct mail_store *srv_store(struct mail_server *s) { return s->store; }
const struct mail_users *srv_users(struct mail_server *s) { return s->users; }
const char *srv_hostname(struct mail_server *s) { return s->hostname; }
uint64_t srv_max_size(struct mail_server *s) { return s->max_size; }
unsigned srv_auth_delay_ms(struct mail_server *s) { return s->auth_delay_ms; }

/* ------------------------------ users ------------------------------ */

static struct users_ref *users_ref_new(const struct mail_users *users,
				       struct mail_users *owned)
{
	struct users_ref *r = calloc(1, sizeof(*r));
	if (r) {
		r->users = users;
		r->owned = owned;
	}
	return r;
}

static void users_ref_free(struct users_ref *r)
{
	if (!r)
		return;
	mail_users_free(r->owned);
	free(r);
}

/* Free the replaced lists that no job holds any more. Loop thread. */
static void users_sweep(struct mail_server *s)
{
	struct users_ref **p = &s->users_retired;
	while (*p) {
		struct users_ref *r = *p;
		if (r->jobs == 0) {
			*p = r->next;
			users_ref_free(r);
		} else {
			p = &r->next;
		}
	}
}

/* Make the list handed to mail_server_set_users current. Loop thread. */
static void users_install(struct mail_server *s)
{
	atomic_store(&s->users_changed, false);
	pthread_mutex_lock(&s->users_mu);
	struct users_ref *r = s->users_pending;
	s->users_pending = NULL;
	pthread_mutex_unlock(&s->users_mu);
	if (!r)
		return;
	s->users_cur->next = s->users_retired;
	s->users_retired = s->users_cur;
	s->users_cur = r;
	s->users = r->users;
	users_sweep(s);
}

static void wake_loop(struct mail_server *s)
{
	uint64_t one = 1;
	ssize_t r = write(s->ev.fd, &one, sizeof(one));
	(void)r;
}

int mail_server_set_users(struct mail_server *s, struct mail_users *users)
{
	if (!s || !users)
		return -EINVAL;
	struct users_ref *r = users_ref_new(users, users);
	if (!r)
		return -ENOMEM;
	pthread_mutex_lock(&s->users_mu);
	struct users_ref *unseen = s->users_pending;
	s->users_pending = r;
	atomic_store(&s->users_changed, true);
	pthread_mutex_unlock(&s->users_mu);
	users_ref_free(unseen); /* replaced before the loop ever saw it */
	wake_loop(s);
	return 0;
}

/* A connection job is done: the list it may have used can go. */
static void job_users_release(struct mail_server *s, struct users_ref *r)
{
	if (!r)
		return;
	r->jobs--;
	if (r->jobs == 0 && s->users_retired)
		users_sweep(s);
}

/* ------------------------------ output ------------------------------ */

void srv_write(struct srv_conn *c, const void *buf, size_t len)
{
	if (c->closing || c->dead || len == 0)
		return;
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 512;
		while (cap < c->out_len + len)
			cap *= 2;
		char *n = realloc(c->out, cap);
		if (!n) {
			c->dead = true;
			return;
		}
		c->out = n;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, buf, len);
	c->out_len += len;
}

void srv_printf(struct srv_conn *c, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	srv_write(c, buf, (size_t)n);
}

void srv_quit(struct srv_conn *c)
{
	c->quitting = true;
}

static void conn_flush(struct srv_conn *c)
{
	while (!c->dead && c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			c->out_off += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			return;
		} else {
			c->dead = true;
		}
	}
	if (c->out_off == c->out_len) {
		c->out_off = c->out_len = 0;
		if (c->out_cap > 64 * 1024) { /* give back a RETR's buffer */
			free(c->out);
			c->out = NULL;
			c->out_cap = 0;
		}
	}
}

/* ------------------------------ workers ------------------------------ */

static void *worker_main(void *arg)
{
	struct mail_server *s = arg;
	for (;;) {
		pthread_mutex_lock(&s->mu);
		while (!s->q_head && !s->quit)
			pthread_cond_wait(&s->cv, &s->mu);
		struct srv_job *j = s->q_head;
		if (!j) {
			pthread_mutex_unlock(&s->mu);
			break;
		}
		s->q_head = j->next;
		if (!s->q_head)
			s->q_tail = NULL;
		pthread_mutex_unlock(&s->mu);

		struct srv_conn *c = j->conn;
		j->run(j); /* a detached job frees itself here */
		if (c) {
			pthread_mutex_lock(&s->mu);
			j->next = NULL;
			if (s->done_tail)
				s->done_tail->next = j;
			else
				s->done_head = j;
			s->done_tail = j;
			pthread_mutex_unlock(&s->mu);
			wake_loop(s);
		}
	}
	return NULL;
}

static void enqueue(struct mail_server *s, struct srv_job *j)
{
	j->next = NULL;
	pthread_mutex_lock(&s->mu);
	if (s->pool_stopped) {
		/* stopping: run here; a conn job is completed by the stop path */
		pthread_mutex_unlock(&s->mu);
		struct srv_conn *c = j->conn;
		j->run(j);
		if (c) {
			pthread_mutex_lock(&s->mu);
			if (s->done_tail)
				s->done_tail->next = j;
			else
				s->done_head = j;
			s->done_tail = j;
			pthread_mutex_unlock(&s->mu);
		}
		return;
	}
	if (s->q_tail)
		s->q_tail->next = j;
	else
		s->q_head = j;
	s->q_tail = j;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

void srv_submit(struct srv_conn *c, struct srv_job *job)
{
	job->conn = c;
	c->busy = true;
	c->job_users = c->srv->users_cur;
	c->job_users->jobs++;
	enqueue(c->srv, job);
}

void srv_submit_detached(struct mail_server *s, struct srv_job *job)
{
	job->conn = NULL;
	job->done = NULL;
	enqueue(s, job);
}

void srv_sleep(struct srv_conn *c, unsigned ms)
{
	c->sleeping = true;
	c->wake_at = now_ms() + ms;
}

/* ---------------------------- connections ---------------------------- */

static void conn_free(struct srv_conn *c)
{
	struct mail_server *s = c->srv;
	if (c->proto->on_close)
		c->proto->on_close(c);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	if (s->accept_resume_at)
		s->accept_resume_at = 1; /* an fd is free: retry accept() now */
	free(c->out);
	free(c);
}

/* Only at the top of an event handler: c may be freed. */
static void conn_close(struct srv_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	epoll_ctl(c->srv->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	if (!c->busy)
		conn_free(c);
}

static bool conn_parked(const struct srv_conn *c)
{
	return c->busy || c->sleeping || c->closing || c->quitting || c->dead;
}

/* Hand the complete lines of the input buffer to the protocol. */
static void conn_process(struct srv_conn *c)
{
	while (!conn_parked(c) && c->out_len - c->out_off < SRV_OUT_HIGH) {
		char *start = c->in + c->in_off;
		size_t avail = c->in_len - c->in_off;
		char *nl = memchr(start, '\n', avail);
		if (c->discarding) {
			if (!nl) {
				c->in_off = c->in_len = 0;
				return;
			}
			c->in_off += (size_t)(nl - start) + 1;
			c->discarding = false;
			c->proto->on_line(c, NULL, 0, true);
			continue;
		}
		if (!nl) {
			if (avail >= c->line_max) { /* cannot end within the limit */
				c->in_off = c->in_len = 0;
				c->discarding = true;
			}
			return;
		}
		size_t n = (size_t)(nl - start) + 1;
		char saved = start[n];
		start[n] = '\0';
		c->in_off += n;
		if (n > c->line_max)
			c->proto->on_line(c, NULL, 0, true);
		else
			c->proto->on_line(c, start, n, false);
		start[n] = saved; /* the first byte of the next line */
	}
}

static bool has_line(const struct srv_conn *c)
{
	return memchr(c->in + c->in_off, '\n', c->in_len - c->in_off) != NULL;
}

/* Process, flush, then close or update the epoll mask. c may be freed. */
static void conn_settle(struct srv_conn *c)
{
	if (c->closing)
		return;
	conn_process(c);
	conn_flush(c);
	bool out_empty = c->out_off == c->out_len;
	if (c->dead || (c->quitting && out_empty && !c->busy) ||
	    (c->eof && !conn_parked(c) && out_empty && (!has_line(c) || c->discarding))) {
		if (c->quitting && !c->dead)
			shutdown(c->fd, SHUT_WR);
		conn_close(c);
		return;
	}
	if (c->in_off > 0) { /* room for the next read */
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	uint32_t mask = 0;
	if (!conn_parked(c) && !c->eof && c->in_len < SRV_IN_CAP &&
	    c->out_len - c->out_off < SRV_OUT_HIGH)
		mask |= EPOLLIN | EPOLLRDHUP;
	if (!out_empty)
		mask |= EPOLLOUT;
	if (mask != c->mask) {
		struct epoll_event ev = { .events = mask, .data.ptr = c };
		epoll_ctl(c->srv->epfd, EPOLL_CTL_MOD, c->fd, &ev);
		c->mask = mask;
	}
}

static void conn_read(struct srv_conn *c)
{
	if (c->in_off > 0) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	if (c->in_len >= SRV_IN_CAP)
		return;
	ssize_t n = recv(c->fd, c->in + c->in_len, SRV_IN_CAP - c->in_len, MSG_DONTWAIT);
	if (n > 0) {
		c->in_len += (size_t)n;
		c->last_active = now_ms();
	} else if (n == 0) {
		c->eof = true;
	} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
		c->dead = true;
	}
}

static void conn_event(struct srv_conn *c, uint32_t ev)
{
	if ((ev & EPOLLERR) ||
	    ((ev & EPOLLHUP) && !(c->mask & EPOLLIN))) {
		conn_close(c);
		return;
	}
	if (ev & EPOLLOUT) {
		c->last_active = now_ms();
		conn_flush(c);
	}
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))
		conn_read(c);
	conn_settle(c);
}

/* Stop polling the listeners for SRV_ACCEPT_BACKOFF_MS: accept() failed
 * for want of descriptors or memory, and with level-triggered epoll the
 * pending connection would wake the loop again at once (a busy loop).
 * Connections already open are served meanwhile; nothing is logged. */
static void listeners_pause(struct mail_server *s)
{
	if (s->accept_resume_at)
		return;
	for (int i = 0; i < 3; i++) {
		if (s->lis[i].fd < 0)
			continue;
		struct epoll_event ev = { .events = 0, .data.ptr = &s->lis[i] };
		epoll_ctl(s->epfd, EPOLL_CTL_MOD, s->lis[i].fd, &ev);
	}
	s->accept_resume_at = now_ms() + SRV_ACCEPT_BACKOFF_MS;
}

static void listeners_resume_if_due(struct mail_server *s, uint64_t now)
{
	if (!s->accept_resume_at || now < s->accept_resume_at)
		return;
	s->accept_resume_at = 0;
	for (int i = 0; i < 3; i++) {
		if (s->lis[i].fd < 0)
			continue;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &s->lis[i] };
		epoll_ctl(s->epfd, EPOLL_CTL_MOD, s->lis[i].fd, &ev);
	}
}

static bool accept_out_of_resources(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

/* Over max_conns (or stopping): one reply, then close. */
static void reject_full(const struct mail_server *s, const struct listener *l, int fd)
{
	char reply[320];
	int n = snprintf(reply, sizeof reply, l->proto->full_reply, s->hostname);
	if (n > 0 && (size_t)n < sizeof reply) {
		ssize_t r = send(fd, reply, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)r;   /* best effort: the client is turned away either way */
	}
	close(fd);
}

static void peer_name(const struct sockaddr_storage *sa, char *buf, size_t cap)
{
	if (sa->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)cap);
	else if (sa->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, (socklen_t)cap);
	else
		snprintf(buf, cap, "unknown");
}

/* Register an accepted socket and greet. -ENOMEM: fd is closed. */
static int conn_open(struct mail_server *s, const struct listener *l, int fd,
		     const struct sockaddr_storage *sa)
{
	struct srv_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->kind = KIND_CONN;
	c->fd = fd;
	c->srv = s;
	c->proto = l->proto;
	c->line_max = 512;
	c->last_active = now_ms();
	peer_name(sa, c->peer, sizeof(c->peer));
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	c->mask = EPOLLIN | EPOLLRDHUP;
	struct epoll_event ev = { .events = c->mask, .data.ptr = c };
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = -errno;
		c->closing = true; /* not in epoll */
		conn_free(c);
		return err;
	}
	if (c->proto->on_open(c) < 0) {
		conn_close(c);
		return 0;
	}
	conn_settle(c);
	return 0;
}

static void accept_all(struct mail_server *s, struct listener *l)
{
	while (!s->accept_resume_at) {
		struct sockaddr_storage sa;
		socklen_t salen = sizeof(sa);
		int fd = accept4(l->fd, (struct sockaddr *)&sa, &salen,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (accept_out_of_resources(errno))
				listeners_pause(s);
			return; /* EAGAIN: all taken */
		}
		if (s->nconns >= s->max_conns || s->stop) {
			reject_full(s, l, fd);
			continue;
		}
		int rc = conn_open(s, l, fd, &sa);
		if (rc < 0 && accept_out_of_resources(-rc))
			listeners_pause(s);
	}
}

static void jobs_done(struct mail_server *s)
{
	uint64_t cnt;
	ssize_t r = read(s->ev.fd, &cnt, sizeof(cnt));
	(void)r;
	pthread_mutex_lock(&s->mu);
	struct srv_job *j = s->done_head;
	s->done_head = s->done_tail = NULL;
	pthread_mutex_unlock(&s->mu);
	while (j) {
		struct srv_job *next = j->next;
		struct srv_conn *c = j->conn;
		struct users_ref *users = c->job_users;
		c->job_users = NULL;
		c->busy = false;
		c->last_active = now_ms();
		j->done(j);
		if (c->closing)
			conn_free(c);
		else
			conn_settle(c);
		job_users_release(s, users);
		j = next;
	}
}

static void tick(struct mail_server *s)
{
	uint64_t now = now_ms();
	struct srv_conn *c = s->conns;
	while (c) {
		struct srv_conn *next = c->next;
		if (c->closing) {
			c = next;
			continue;
		}
		if (c->sleeping && now >= c->wake_at) {
			c->sleeping = false;
			c->last_active = now;
			if (c->proto->on_wake)
				c->proto->on_wake(c);
			conn_settle(c);
		} else if (!c->busy && !c->sleeping && now - c->last_active >= s->idle_ms) {
			if (c->quitting) {
				conn_close(c); /* does not read its last reply */
			} else {
				c->proto->on_timeout(c);
				c->quitting = true;
				c->last_active = now;
				conn_settle(c);
			}
		}
		c = next;
	}
}

/* epoll_wait timeout: the next tick, or the end of an accept() pause. */
static int loop_timeout_ms(const struct mail_server *s)
{
	if (!s->accept_resume_at)
		return SRV_TICK_MS;
	uint64_t now = now_ms();
	if (s->accept_resume_at <= now)
		return 0;
	uint64_t left = s->accept_resume_at - now;
	return left < SRV_TICK_MS ? (int)left : SRV_TICK_MS;
}

static void *loop_main(void *arg)
{
	struct mail_server *s = arg;
	struct epoll_event evs[64];
	while (!s->stop) {
		int n = epoll_wait(s->epfd, evs, 64, loop_timeout_ms(s));
		for (int i = 0; i < n && !s->stop; i++) {
			int kind = *(int *)evs[i].data.ptr;
			if (kind == KIND_LISTEN)
				accept_all(s, evs[i].data.ptr);
			else if (kind == KIND_EVENT)
				jobs_done(s);
			else
				conn_event(evs[i].data.ptr, evs[i].events);
		}
		if (atomic_load(&s->users_changed))
			users_install(s);
		uint64_t now = now_ms();
		listeners_resume_if_due(s, now);
		if (now - s->last_tick >= SRV_TICK_MS && !s->stop) {
			s->last_tick = now;
			tick(s);
		}
	}
	return NULL;
}

/* ------------------------------ start/stop ------------------------------ */

static int listen_on(const char *spec, int *fd_out, int *port_out)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof(host))
		return -EINVAL;
	const char *h = spec;
	size_t hl = (size_t)(colon - spec);
	if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res;
	if (getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &res) != 0)
		return -EINVAL;
	int err = -EADDRNOTAVAIL;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
			err = -errno;
			close(fd);
			continue;
		}
		struct sockaddr_storage sa;
		socklen_t len = sizeof(sa);
		getsockname(fd, (struct sockaddr *)&sa, &len);
		*port_out = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
							  : ((struct sockaddr_in *)&sa)->sin_port);
		*fd_out = fd;
		freeaddrinfo(res);
		return 0;
	}
	freeaddrinfo(res);
	return err;
}

static void server_free(struct mail_server *s)
{
	for (int i = 0; i < 3; i++)
		if (s->lis[i].fd >= 0)
			close(s->lis[i].fd);
	if (s->ev.fd >= 0)
		close(s->ev.fd);
	if (s->epfd >= 0)
		close(s->epfd);
	users_ref_free(s->users_cur);
	users_ref_free(s->users_pending);
	while (s->users_retired) {
		struct users_ref *r = s->users_retired;
		s->users_retired = r->next;
		users_ref_free(r);
	}
	pthread_mutex_destroy(&s->users_mu);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s->workers);
	free(s);
}

int mail_server_start(struct mail_store *store, const struct mail_users *users,
		      const struct mail_server_opts *o, struct mail_server **out)
{
	struct mail_server *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->store = store;
	s->users = users;
	s->max_size = o->max_size ? o->max_size : 10 * 1024 * 1024;
	s->max_conns = o->max_conns ? o->max_conns : 2048;
	s->idle_ms = (o->idle_timeout_s ? o->idle_timeout_s : 300) * 1000u;
	s->auth_delay_ms = o->auth_delay_ms ? o->auth_delay_ms : 1000;
	s->nworkers = o->workers ? o->workers : 4;
	if (o->hostname)
		snprintf(s->hostname, sizeof(s->hostname), "%s", o->hostname);
	else if (gethostname(s->hostname, sizeof(s->hostname) - 1) < 0 || !s->hostname[0])
		strcpy(s->hostname, "localhost");
	s->epfd = s->ev.fd = -1;
	for (int i = 0; i < 3; i++)
		s->lis[i].fd = s->lis[i].port = -1;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	pthread_mutex_init(&s->users_mu, NULL);
	int err = 0;
	s->users_cur = users_ref_new(users, NULL); /* the caller's: never freed */
	if (!s->users_cur) {
		err = -ENOMEM;
		goto fail;
	}
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	s->ev.kind = KIND_EVENT;
	s->ev.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->epfd < 0 || s->ev.fd < 0) {
		err = -errno;
		goto fail;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &s->ev };
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->ev.fd, &ev) < 0) {
		err = -errno;
		goto fail;
	}
	const char *addr[3] = { o->smtp_addr, o->pop3_addr, o->lmtp_addr };
	const struct srv_proto *proto[3] = { &smtp_proto, &pop3_proto, &lmtp_proto };
	for (int i = 0; i < 3; i++) {
		s->lis[i].kind = KIND_LISTEN;
		s->lis[i].proto = proto[i];
		if (!addr[i])
			continue;
		err = listen_on(addr[i], &s->lis[i].fd, &s->lis[i].port);
		if (err < 0)
			goto fail;
		ev.events = EPOLLIN;
		ev.data.ptr = &s->lis[i];
		if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lis[i].fd, &ev) < 0) {
			err = -errno;
			goto fail;
		}
	}
	s->workers = calloc(s->nworkers, sizeof(pthread_t));
	if (!s->workers) {
		err = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < s->nworkers; i++) {
		err = -pthread_create(&s->workers[i], NULL, worker_main, s);
		if (err < 0) {
			pthread_mutex_lock(&s->mu);
			s->quit = true;
			pthread_cond_broadcast(&s->cv);
			pthread_mutex_unlock(&s->mu);
			for (unsigned k = 0; k < i; k++)
				pthread_join(s->workers[k], NULL);
			goto fail;
		}
	}
	s->last_tick = now_ms();
	err = -pthread_create(&s->loop, NULL, loop_main, s);
	if (err < 0) {
		s->loop_started = false;
		mail_server_stop(s);
		return err;
	}
	s->loop_started = true;
	*out = s;
	return 0;
fail:
	server_free(s);
	return err;
}

int mail_server_port(const struct mail_server *s, enum mail_proto proto)
{
	return s->lis[proto].port;
}

void mail_server_stop(struct mail_server *s)
{
	s->stop = true;
	if (s->loop_started) {
		wake_loop(s);
		pthread_join(s->loop, NULL);
	}
	/* Every connection is closing from now on; idle ones go now (their
	 * on_close may queue a detached unlock job). */
	struct srv_conn *c = s->conns;
	while (c) {
		struct srv_conn *next = c->next;
		c->closing = true;
		if (!c->busy)
			conn_free(c);
		c = next;
	}
	pthread_mutex_lock(&s->mu);
	s->quit = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	for (unsigned i = 0; i < s->nworkers; i++)
		pthread_join(s->workers[i], NULL);
	pthread_mutex_lock(&s->mu);
	s->pool_stopped = true; /* from now on jobs run inline */
	pthread_mutex_unlock(&s->mu);
	for (;;) {
		pthread_mutex_lock(&s->mu);
		struct srv_job *j = s->done_head;
		s->done_head = s->done_tail = NULL;
		pthread_mutex_unlock(&s->mu);
		if (!j)
			break;
		while (j) {
			struct srv_job *next = j->next;
			c = j->conn;
			struct users_ref *users = c->job_users;
			c->job_users = NULL;
			c->busy = false;
			j->done(j);
			if (!c->busy)
				conn_free(c);
			job_users_release(s, users);
			j = next;
		}
	}
	server_free(s);
}
