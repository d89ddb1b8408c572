/*
 * control.c - the daemon's control socket (control.h).
 */
#include "fuse/control.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "blockdev/disk/uring_disk.h"
#include "blockdev/mirror/mirror.h"
#include "core/base/error.h"
#include "core/base/log.h"
#include "core/base/util.h"
#include "core/fs/fs.h"
#include "recovery/recovery.h"

struct control {
	struct mirror *m;
	struct fs *fs;
	struct control_test_hooks test;
	int listen_fd, stop_pipe[2];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	pthread_t accept_thread;
	pthread_mutex_t mu;
	pthread_cond_t idle;
	unsigned active;           /* connections being served */
};

int control_socket_path(const char *mountpoint, char *out, size_t len)
{
	char *real = realpath(mountpoint, NULL);
	if (!real)
		return -errno;
	char name[4096];
	size_t k = 0;
	for (const char *p = real; *p && k + 1 < sizeof(name); p++)
		name[k++] = *p == '/' ? '_' : *p;
	name[k] = '\0';
	free(real);
	int n = snprintf(out, len, "%s/%s.sock", CONTROL_DIR, name);
	if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

/* ---- replies ---- */

struct conn {
	struct control *c;
	int fd;
};

static void say(struct conn *cn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct conn *cn, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* A client that went away only loses its answer. */
	if (send(cn->fd, line, (size_t)n, MSG_NOSIGNAL) < 0)
		return;
}

static void progress_line(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
	say(ctx, "P %s %" PRIu64 " %" PRIu64, phase, done, total);
}

static void finish(struct conn *cn, int r, const char *msg)
{
	if (r)
		say(cn, "ERR %d %s", -r, msg && *msg ? msg : strerror(-r));
	else
		say(cn, "OK");
}

/* ---- status ---- */

static const char *leg_state_name(enum leg_state s)
{
	return s == LEG_IN_SYNC ? "in-sync" : s == LEG_FAILED ? "failed"
	       : s == LEG_REBUILDING ? "rebuilding" : "missing";
}

static void status_text(struct conn *cn, const struct mirror_status *ms, const struct fs_stats *fs)
{
	char uuid[37];
	uuid_format(ms->uuid, uuid);
	say(cn, "O array uuid    %s", uuid);
	say(cn, "O events        %" PRIu64, ms->events);
	for (int i = 0; i < 2; i++)
		say(cn, "O disk %d        %s %s%s (read errors %" PRIu64 ", write errors %" PRIu64
			", repaired %" PRIu64 ")", i + 1, leg_state_name(ms->leg[i].state),
		    ms->leg[i].name, ms->authoritative == i ? " [authoritative]" : "",
		    ms->leg[i].read_errors, ms->leg[i].write_errors, ms->leg[i].repaired_blocks);
	say(cn, "O dirty chunks  %" PRIu64 " of %" PRIu64, ms->dirty_chunks, ms->nchunks);
	if (ms->stale_chunks)
		say(cn, "O rebuild       %" PRIu64 " chunks left of %" PRIu64 " (%.1f%% done)",
		    ms->stale_chunks, ms->nchunks,
		    100.0 * (double)(ms->nchunks - ms->stale_chunks) / (double)ms->nchunks);
	say(cn, "O block I/O     %" PRIu64 " reads, %" PRIu64 " writes, %" PRIu64 " flushes",
	    ms->reads, ms->writes, ms->flushes);
	say(cn, "O journal       %" PRIu64 " commits, %" PRIu64 " ops (%.1f per commit), %"
		PRIu64 " flushes, %" PRIu64 " checkpoints, log %" PRIu64 "/%" PRIu64 " blocks",
	    fs->commits, fs->ops, fs->ops_per_commit, fs->flushes, fs->checkpoints,
	    fs->log_used, fs->log_blocks);
	say(cn, "O cache         %" PRIu64 " hits, %" PRIu64 " misses, %" PRIu64 "/%" PRIu64
		" MiB, %" PRIu64 " inodes in memory", fs->cache_hits, fs->cache_misses,
	    fs->cache_bytes >> 20, fs->cache_max_bytes >> 20, fs->inodes_cached);
}

/* s as the inside of a JSON string (quotes and control characters escaped). */
static const char *json_escaped(const char *s, char *out, size_t len)
{
	size_t k = 0;
	for (; *s && k + 7 < len; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			k += (size_t)snprintf(out + k, len - k, "\\%c", c);
		else if (c < 0x20)
			k += (size_t)snprintf(out + k, len - k, "\\u%04x", c);
		else
			out[k++] = (char)c;
	}
	out[k] = '\0';
	return out;
}

static void status_json(struct conn *cn, const struct mirror_status *ms, const struct fs_stats *fs)
{
	char path[600];
	char uuid[37];
	uuid_format(ms->uuid, uuid);
	say(cn, "O {\"uuid\": \"%s\", \"events\": %" PRIu64 ", \"authoritative\": %d,", uuid,
	    ms->events, ms->authoritative + 1);
	for (int i = 0; i < 2; i++)
		say(cn, "O  \"disk%d\": {\"path\": \"%s\", \"state\": \"%s\", \"read_errors\": %" PRIu64
			", \"write_errors\": %" PRIu64 ", \"repaired_blocks\": %" PRIu64 "},",
		    i + 1, json_escaped(ms->leg[i].name, path, sizeof(path)),
		    leg_state_name(ms->leg[i].state),
		    ms->leg[i].read_errors, ms->leg[i].write_errors, ms->leg[i].repaired_blocks);
	say(cn, "O  \"chunks\": %" PRIu64 ", \"dirty_chunks\": %" PRIu64 ", \"stale_chunks\": %"
		PRIu64 ", \"reads\": %" PRIu64 ", \"writes\": %" PRIu64 ", \"flushes\": %" PRIu64 ",",
	    ms->nchunks, ms->dirty_chunks, ms->stale_chunks, ms->reads, ms->writes, ms->flushes);
	say(cn, "O  \"journal\": {\"commits\": %" PRIu64 ", \"ops\": %" PRIu64
		", \"ops_per_commit\": %.2f, \"flushes\": %" PRIu64 ", \"checkpoints\": %" PRIu64
		", \"log_used\": %" PRIu64 ", \"log_blocks\": %" PRIu64 "},",
	    fs->commits, fs->ops, fs->ops_per_commit, fs->flushes, fs->checkpoints,
	    fs->log_used, fs->log_blocks);
	say(cn, "O  \"cache\": {\"hits\": %" PRIu64 ", \"misses\": %" PRIu64 ", \"bytes\": %" PRIu64
		", \"max_bytes\": %" PRIu64 ", \"inodes\": %" PRIu64 "}}",
	    fs->cache_hits, fs->cache_misses, fs->cache_bytes, fs->cache_max_bytes,
	    fs->inodes_cached);
}

static void do_status(struct conn *cn, bool json)
{
	struct mirror_status ms;
	struct fs_stats fs;
	mirror_get_status(cn->c->m, &ms);
	fs_get_stats(cn->c->fs, &fs);
	if (json)
		status_json(cn, &ms, &fs);
	else
		status_text(cn, &ms, &fs);
	finish(cn, 0, NULL);
}

/* ---- disk admin ---- */

static int parse_disk(const char *s, int *leg)
{
	if (strcmp(s, "1") && strcmp(s, "2"))
		return -EINVAL;
	*leg = s[0] - '1';
	return 0;
}

static void do_fail(struct conn *cn, const char *which)
{
	int leg;
	if (parse_disk(which, &leg))
		{ finish(cn, -EINVAL, "the disk is 1 or 2"); return; }
	cat_log(CAT_LOG_WARN, "disk %d failed by the administrator", leg + 1);
	int r = mirror_fail_leg(cn->c->m, leg, "failed by the administrator (disk fail)");
	finish(cn, r, r == -EBUSY ? "that is the only disk in service" : NULL);
}

static void do_replace(struct conn *cn, const char *which, const char *path)
{
	int leg;
	struct cat_error err = { 0 };
	struct bdev *dev;
	if (parse_disk(which, &leg))
		{ finish(cn, -EINVAL, "the disk is 1 or 2"); return; }
	/* A resync still running (the one after mount) ends at its next chunk
	 * once the disk it copies to or from has failed; the new disk must not
	 * join it halfway, so wait for it to end. */
	for (int waited = 0; recovery_resync_running(cn->c->m); waited++) {
		if (waited == 0)
			say(cn, "O waiting for the running resync to end");
		usleep(100 * 1000);
	}
	int r = uring_disk_open(path, 0, &dev, &err);
	if (r)
		{ finish(cn, r, err.msg); return; }
	r = mirror_replace_leg(cn->c->m, leg, dev, &err);
	if (r == -EINVAL || r == -EROFS || r == -ENOSPC || r == -EBUSY)
		bdev_close(dev);          /* refused up front: still ours */
	if (r)
		{ finish(cn, r, err.msg); return; }
	cat_log(CAT_LOG_INFO, "disk %d replaced by %s; rebuilding online", leg + 1, path);
	struct resync_result res;
	r = recovery_resync(cn->c->m, progress_line, cn, &res, &err);
	if (!r)
		say(cn, "O rebuilt disk %d: %" PRIu64 " chunks, %" PRIu64 " blocks copied in %.1f s%s",
		    leg + 1, res.chunks, res.blocks_copied, res.seconds,
		    res.degraded ? " - the new disk failed, the array is degraded" : "");
	finish(cn, r, err.msg);
}

static void report_mismatch(void *ctx, uint64_t blkno, uint64_t n)
{
	say(ctx, "O mismatch: blocks %" PRIu64 "..%" PRIu64, blkno, blkno + n - 1);
}

static void do_scrub(struct conn *cn, bool repair)
{
	struct cat_error err = { 0 };
	struct scrub_result res;
	/* recovery_scrub reports ranges through its ctx: the connection */
	int r = recovery_scrub(cn->c->m, repair, report_mismatch, progress_line, cn, &res, &err);
	if (!r)
		say(cn, "O scrub: %" PRIu64 " blocks compared, %" PRIu64 " differed in %" PRIu64
			" range(s)%s", res.blocks, res.mismatched, res.ranges,
		    res.repaired ? ", repaired from the authoritative disk" : "");
	finish(cn, r, err.msg);
}

/* ---- connections ---- */

static void dispatch(struct conn *cn, char *line)
{
	char *arg[4] = { 0 }, *save = NULL;
	int n = 0;
	for (char *t = strtok_r(line, " \t\r\n", &save); t && n < 4; t = strtok_r(NULL, " \t\r\n", &save))
		arg[n++] = t;
	if (n >= 1 && !strcmp(arg[0], "status"))
		do_status(cn, n == 2 && !strcmp(arg[1], "--json"));
	else if (n == 3 && !strcmp(arg[0], "disk") && !strcmp(arg[1], "fail"))
		do_fail(cn, arg[2]);
	else if (n == 4 && !strcmp(arg[0], "disk") && !strcmp(arg[1], "replace"))
		do_replace(cn, arg[2], arg[3]);
	else if (n >= 1 && !strcmp(arg[0], "scrub"))
		do_scrub(cn, n == 2 && !strcmp(arg[1], "--repair"));
	else if (n == 1 && !strcmp(arg[0], "power-cut") && cn->c->test.power_cut)
		cn->c->test.power_cut(cn->c->test.arg);
	else if (n == 1 && !strcmp(arg[0], "power-cut"))
		finish(cn, -EPERM, "power-cut needs a daemon mounted with -o crashtest (tests only)");
	else
		finish(cn, -EINVAL, "unknown request");
}

static void *serve_conn(void *arg)
{
	struct conn *cn = arg;
	char line[4200];
	size_t k = 0;
	while (k + 1 < sizeof(line)) {
		ssize_t r = recv(cn->fd, line + k, 1, 0);
		if (r <= 0 || line[k] == '\n')
			break;
		k++;
	}
	line[k] = '\0';
	dispatch(cn, line);
	close(cn->fd);
	struct control *c = cn->c;
	free(cn);
	pthread_mutex_lock(&c->mu);
	if (--c->active == 0)
		pthread_cond_broadcast(&c->idle);
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

static void start_conn(struct control *c, int fd)
{
	struct conn *cn = malloc(sizeof(*cn));
	pthread_t t;
	if (!cn) {
		close(fd);
		return;
	}
	*cn = (struct conn){ .c = c, .fd = fd };
	pthread_mutex_lock(&c->mu);
	c->active++;
	pthread_mutex_unlock(&c->mu);
	if (pthread_create(&t, NULL, serve_conn, cn)) {
		close(fd);
		free(cn);
		pthread_mutex_lock(&c->mu);
		c->active--;
		pthread_mutex_unlock(&c->mu);
		return;
	}
	pthread_detach(t);
}

static void *accept_main(void *arg)
{
	struct control *c = arg;
	struct pollfd p[2] = { { .fd = c->listen_fd, .events = POLLIN },
			       { .fd = c->stop_pipe[0], .events = POLLIN } };
	for (;;) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (p[0].revents & POLLIN) {
			int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0)
				start_conn(c, fd);
		}
	}
	return NULL;
}

static int listen_on(struct control *c, struct cat_error *err)
{
	if (mkdir(CONTROL_DIR, 0700) < 0 && errno != EEXIST)
		return cat_error_set(err, -errno, "%s: %s", CONTROL_DIR, strerror(errno));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", c->path);
	unlink(c->path);                 /* left by a killed daemon */
	c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->listen_fd < 0 || bind(c->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(c->path, 0600) < 0 || listen(c->listen_fd, 16) < 0)
		return cat_error_set(err, -errno, "control socket %s: %s", c->path, strerror(errno));
	return 0;
}

int control_start(const char *mountpoint, struct mirror *m, struct fs *fs,
		  const struct control_test_hooks *test, struct control **out,
		  struct cat_error *err)
{
	struct control *c = calloc(1, sizeof(*c));
	if (!c)
		return cat_error_set(err, -ENOMEM, "out of memory");
	*c = (struct control){ .m = m, .fs = fs, .listen_fd = -1, .stop_pipe = { -1, -1 } };
	if (test)
		c->test = *test;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->idle, NULL);
	int r = control_socket_path(mountpoint, c->path, sizeof(c->path));
	if (r)
		cat_error_set(err, r, "%s: control socket path: %s", mountpoint, strerror(-r));
	if (!r)
		r = listen_on(c, err);
	if (!r && pipe2(c->stop_pipe, O_CLOEXEC) < 0)
		r = cat_error_set(err, -errno, "pipe: %s", strerror(errno));
	if (!r && pthread_create(&c->accept_thread, NULL, accept_main, c))
		r = cat_error_set(err, -EAGAIN, "cannot start the control thread");
	if (r) {
		if (c->listen_fd >= 0) {
			close(c->listen_fd);
			unlink(c->path);
		}
		for (int i = 0; i < 2; i++)
			if (c->stop_pipe[i] >= 0)
				close(c->stop_pipe[i]);
		free(c);
		return r;
	}
	*out = c;
	return 0;
}

void control_stop(struct control *c)
{
	if (!c)
		return;
	if (write(c->stop_pipe[1], "x", 1) < 0)
		cat_log(CAT_LOG_WARN, "control: cannot wake the accept thread");
	pthread_join(c->accept_thread, NULL);
	close(c->listen_fd);
	unlink(c->path);
	pthread_mutex_lock(&c->mu);
	while (c->active)
		pthread_cond_wait(&c->idle, &c->mu);
	pthread_mutex_unlock(&c->mu);
	close(c->stop_pipe[0]);
	close(c->stop_pipe[1]);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->idle);
	free(c);
}
