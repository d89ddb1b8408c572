/*
 * cmd_bench_fs.c - `catamaran bench fs` and `catamaran bench maildir`: the
 * Maildir delivery pattern, timed, on Catamaran's filesystem in-process and
 * on any directory with ordinary system calls (ext4 for reference, or a
 * FUSE mount of Catamaran).
 *
 * One delivery, as a mail delivery agent makes it:
 *     create tmp/NAME (O_EXCL), write the message, fsync, close,
 *     link tmp/NAME -> new/NAME, fsync new/, unlink tmp/NAME
 * N threads deliver one message after another into one shared maildir,
 * bench/{tmp,new}, so they contend on the same directories like a spool.
 * Each thread opens new/ once for its directory fsyncs. Names are unique
 * per run (a random run id), so delivered messages are simply left in new/.
 *
 * The loop and the report are shared; a backend (struct backend) supplies
 * the calls. The fs backend adds the journal's figures (fs_get_stats, as
 * differences over the run): commits, flushes and operations per commit,
 * which tell how well group commit shares one flush among the threads.
 *
 * SIGINT and SIGTERM are blocked in every thread (the mirror's and the
 * filesystem's threads inherit the mask); the main thread takes them with
 * sigtimedwait, so an interrupt ends the run cleanly: results are printed
 * and the filesystem unmounted.
 */
#include "tools/commands.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blockdev/mirror/mirror.h"
#include "core/base/error.h"
#include "core/base/util.h"
#include "core/fs/fs.h"
#include "core/fs/layout.h" /* FS_ROOT_INO */
#include "tools/bench_common.h"
#include "tools/cli.h"

#define EXIT_GOOD 0
#define EXIT_TROUBLE 2

#define MAX_THREADS 1024u
#define MAX_MESSAGE (64u << 20)
#define NS_PER_SEC 1000000000ull
#define WATCH_SLICE_NS 100000000ull /* the main thread looks at the run every 100 ms */
#define NAME_LEN 96

/* The maildir, under the filesystem's root or under DIR. */
#define MAILDIR_NAME "bench"

/* ------------------------------------------------------------------ */
/* Options                                                             */
/* ------------------------------------------------------------------ */

struct mail_opts {
	const char *cmd;       /* "bench fs" or "bench maildir", for messages */
	const char *bench;     /* "fs" or "maildir" */
	unsigned threads;
	double seconds;        /* 0 = until SIGINT/SIGTERM */
	uint64_t size;         /* message bytes */
	bool json;
	const char *path[2];   /* fs: DISK1, DISK2; maildir: DIR */
};

static void usage(FILE *out)
{
	fprintf(out,
"usage: catamaran bench fs [options] DISK1 DISK2\n"
"       catamaran bench maildir [options] DIR\n"
"\n"
"Times Maildir deliveries. N threads deliver messages one after another into\n"
"one shared maildir, bench/ (bench/tmp and bench/new are made if missing),\n"
"each delivery as a mail delivery agent makes it:\n"
"    create tmp/NAME (O_EXCL), write the message, fsync, close,\n"
"    link it to new/NAME, fsync the directory new/, unlink tmp/NAME\n"
"Prints deliveries per second and delivery latency percentiles. Delivered\n"
"messages are left in new/ (names are unique per run).\n"
"\n"
"bench fs runs in-process on the Catamaran filesystem of the mirror made of\n"
"DISK1 and DISK2 (made by `catamaran format`; a pending resync is run\n"
"first) and also prints the journal's commits, flushes and operations per\n"
"commit during the run. bench maildir makes the same deliveries with\n"
"ordinary system calls in DIR/bench, on any filesystem (ext4, a FUSE mount\n"
"of Catamaran, ...).\n"
"\n"
"  --threads N      delivering threads (default 1)\n"
"  --seconds S      run time (default 10; 0 = until SIGINT/SIGTERM)\n"
"  --size SIZE      message size, 1 byte to 64M (default 4K)\n"
"  --json           print the results as one JSON object\n"
"\n"
"SIGINT/SIGTERM end the run early; the results so far are printed.\n"
"Exit status: 0 success, 2 error.\n");
}

static int check_size(const struct mail_opts *o)
{
	if (o->size >= 1 && o->size <= MAX_MESSAGE)
		return 0;
	cli_usage_error(o->cmd, "--size must be from 1 byte to 64M");
	return -EINVAL;
}

static int check_operands(const struct mail_opts *o, int argc)
{
	int want = strcmp(o->bench, "fs") == 0 ? 2 : 1;
	if (argc != want) {
		cli_usage_error(o->cmd, want == 2 ? "needs exactly two disks, DISK1 and DISK2"
						  : "needs exactly one directory, DIR");
		return -EINVAL;
	}
	return 0;
}

/* argv[0] is "fs" or "maildir". Returns 0 to run, 1 when help was printed,
 * -EINVAL on a usage error (already reported). */
static int parse_options(int argc, char **argv, struct mail_opts *o)
{
	enum { OPT_THREADS = 256, OPT_SECONDS, OPT_SIZE, OPT_JSON, OPT_HELP };
	static const struct option longopts[] = {
		{ "threads", required_argument, NULL, OPT_THREADS },
		{ "seconds", required_argument, NULL, OPT_SECONDS },
		{ "size", required_argument, NULL, OPT_SIZE },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int rc = 0;
	optind = 0; /* glibc: full rescan; another subcommand may have used getopt */
	opterr = 0; /* cli_bad_option words the complaint */
	for (int c; rc == 0 && (c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1;) {
		switch (c) {
		case OPT_THREADS:
			rc = bench_parse_count(o->cmd, "--threads", optarg, 1, MAX_THREADS,
					       &o->threads);
			break;
		case OPT_SECONDS: rc = bench_parse_seconds(o->cmd, optarg, &o->seconds); break;
		case OPT_SIZE: rc = bench_parse_size(o->cmd, "--size", optarg, &o->size); break;
		case OPT_JSON: o->json = true; break;
		case 'h': case OPT_HELP: usage(stdout); return 1;
		default: cli_bad_option(o->cmd, c, argv); return -EINVAL;
		}
	}
	if (rc == 0)
		rc = check_size(o);
	if (rc == 0)
		rc = check_operands(o, argc - optind);
	if (rc == 0) {
		o->path[0] = argv[optind];
		o->path[1] = optind + 1 < argc ? argv[optind + 1] : NULL;
	}
	return rc;
}

/* ------------------------------------------------------------------ */
/* Backends                                                            */
/* ------------------------------------------------------------------ */

/* The calls of one delivery. ctx is the mounted filesystem or the maildir;
 * a thread's state holds what it keeps open (its handle on new/). On
 * failure deliver returns -errno and sets *step to the call that failed. */
struct backend {
	int (*thread_open)(void *ctx, void **state);
	int (*deliver)(void *state, const char *name, const void *data, size_t size,
		       const char **step);
	int (*thread_close)(void *state);
	/* The journal's counters; NULL when the backend has none. */
	void (*journal_stats)(void *ctx, struct fs_stats *st);
};

/* ---- Catamaran's filesystem, in-process -------------------------------- */

struct fs_bench {
	struct fs *fs;
	struct fs_ctx caller;
	uint64_t maildir, tmp, new;   /* inode numbers, one lookup held on each */
};

struct fs_thread {
	struct fs_bench *fb;
	uint64_t new_fh;              /* opendir handle on new/ */
};

/* parent/name as a directory, made if missing. Holds one lookup on *ino. */
static int fs_ensure_dir(struct fs_bench *fb, uint64_t parent, const char *name,
			 uint64_t *ino)
{
	struct fs_attr attr;
	int rc = fs_mkdir(fb->fs, &fb->caller, parent, name, 0700, &attr);
	if (rc == -EEXIST)
		rc = fs_lookup(fb->fs, parent, name, &attr);
	if (rc < 0)
		return rc;
	if (!S_ISDIR(attr.mode)) {
		fs_forget(fb->fs, attr.ino, 1);
		return -ENOTDIR;
	}
	*ino = attr.ino;
	return 0;
}

static int fs_make_maildir(struct fs_bench *fb)
{
	int rc = fs_ensure_dir(fb, FS_ROOT_INO, MAILDIR_NAME, &fb->maildir);
	if (rc < 0)
		return rc;
	rc = fs_ensure_dir(fb, fb->maildir, "tmp", &fb->tmp);
	if (rc < 0) {
		fs_forget(fb->fs, fb->maildir, 1);
		return rc;
	}
	rc = fs_ensure_dir(fb, fb->maildir, "new", &fb->new);
	if (rc < 0) {
		fs_forget(fb->fs, fb->tmp, 1);
		fs_forget(fb->fs, fb->maildir, 1);
	}
	return rc;
}

static void fs_drop_maildir(struct fs_bench *fb)
{
	fs_forget(fb->fs, fb->new, 1);
	fs_forget(fb->fs, fb->tmp, 1);
	fs_forget(fb->fs, fb->maildir, 1);
}

static int fs_thread_open(void *ctx, void **state)
{
	struct fs_thread *t = malloc(sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->fb = ctx;
	int rc = fs_opendir(t->fb->fs, t->fb->new, &t->new_fh);
	if (rc < 0) {
		free(t);
		return rc;
	}
	*state = t;
	return 0;
}

static int fs_thread_close(void *state)
{
	struct fs_thread *t = state;
	int rc = fs_releasedir(t->fb->fs, t->fb->new, t->new_fh);
	free(t);
	return rc;
}

/* Write the whole message, then fsync it (data on both disks). */
static int fs_write_message(struct fs *fs, uint64_t ino, uint64_t fh, const uint8_t *data,
			    size_t size, const char **step)
{
	*step = "write";
	for (size_t done = 0; done < size;) {
		ssize_t n = fs_write(fs, ino, fh, data + done, size - done, (off_t)done);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	*step = "fsync";
	return fs_fsync(fs, ino, fh, false);
}

/* Link into new/ and make the new name durable. Counts the lookup taken. */
static int fs_link_into_new(struct fs_thread *t, uint64_t ino, const char *name,
			    uint64_t *lookups, const char **step)
{
	struct fs_bench *fb = t->fb;
	struct fs_attr attr;
	*step = "link into new/";
	int rc = fs_link(fb->fs, ino, fb->new, name, &attr);
	if (rc < 0)
		return rc;
	(*lookups)++;
	*step = "fsync of new/";
	return fs_fsyncdir(fb->fs, fb->new, t->new_fh, false);
}

static int fs_deliver(void *state, const char *name, const void *data, size_t size,
		      const char **step)
{
	struct fs_thread *t = state;
	struct fs_bench *fb = t->fb;
	struct fs_attr attr;
	uint64_t fh;
	*step = "create in tmp/";
	int rc = fs_create(fb->fs, &fb->caller, fb->tmp, name, S_IFREG | 0600,
			   O_CREAT | O_EXCL | O_WRONLY, &attr, &fh);
	if (rc < 0)
		return rc;
	uint64_t ino = attr.ino, lookups = 1;
	rc = fs_write_message(fb->fs, ino, fh, data, size, step);
	int closed = fs_release(fb->fs, ino, fh);
	if (rc == 0 && closed < 0) {
		*step = "close";
		rc = closed;
	}
	if (rc == 0)
		rc = fs_link_into_new(t, ino, name, &lookups, step);
	if (rc == 0) {
		*step = "unlink from tmp/";
		rc = fs_unlink(fb->fs, fb->tmp, name);
	}
	fs_forget(fb->fs, ino, lookups);
	return rc;
}

static void fs_journal_stats(void *ctx, struct fs_stats *st)
{
	struct fs_bench *fb = ctx;
	fs_get_stats(fb->fs, st);
}

static const struct backend fs_backend = {
	.thread_open = fs_thread_open,
	.deliver = fs_deliver,
	.thread_close = fs_thread_close,
	.journal_stats = fs_journal_stats,
};

/* ---- ordinary system calls in a directory ------------------------------ */

struct md_bench {
	int tmp_fd, new_fd;           /* DIR/bench/tmp and DIR/bench/new */
};

struct md_thread {
	int tmp_fd;                   /* the shared one */
	int new_fd;                   /* this thread's own, for fsync */
};

/* dirfd/name as a directory, made if missing; returns an O_DIRECTORY fd. */
static int md_ensure_dir(int dirfd, const char *name)
{
	if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
		return -errno;
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* top: the directory DIR. */
static int md_make_maildir(int top, struct md_bench *mb)
{
	int maildir = md_ensure_dir(top, MAILDIR_NAME);
	if (maildir < 0)
		return maildir;
	int rc = md_ensure_dir(maildir, "tmp");
	if (rc >= 0) {
		mb->tmp_fd = rc;
		rc = md_ensure_dir(maildir, "new");
	}
	if (rc >= 0)
		mb->new_fd = rc;
	close(maildir);
	return rc < 0 ? rc : 0;
}

static int md_close_maildir(struct md_bench *mb)
{
	int rc = 0;
	if (mb->tmp_fd >= 0 && close(mb->tmp_fd) < 0)
		rc = -errno;
	if (mb->new_fd >= 0 && close(mb->new_fd) < 0)
		rc = -errno;
	return rc;
}

static int md_thread_open(void *ctx, void **state)
{
	struct md_bench *mb = ctx;
	struct md_thread *t = malloc(sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->tmp_fd = mb->tmp_fd;
	t->new_fd = openat(mb->new_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t->new_fd < 0) {
		int e = errno;
		free(t);
		return -e;
	}
	*state = t;
	return 0;
}

static int md_thread_close(void *state)
{
	struct md_thread *t = state;
	int rc = close(t->new_fd) < 0 ? -errno : 0;
	free(t);
	return rc;
}

static int md_write_message(int fd, const uint8_t *data, size_t size, const char **step)
{
	*step = "write";
	for (size_t done = 0; done < size;) {
		ssize_t n = write(fd, data + done, size - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	*step = "fsync";
	return fsync(fd) < 0 ? -errno : 0;
}

static int md_deliver(void *state, const char *name, const void *data, size_t size,
		      const char **step)
{
	struct md_thread *t = state;
	*step = "create in tmp/";
	int fd = openat(t->tmp_fd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int rc = md_write_message(fd, data, size, step);
	if (close(fd) < 0 && rc == 0) {
		*step = "close";
		rc = -errno;
	}
	if (rc == 0 && linkat(t->tmp_fd, name, t->new_fd, name, 0) < 0) {
		*step = "link into new/";
		rc = -errno;
	}
	if (rc == 0 && fsync(t->new_fd) < 0) {
		*step = "fsync of new/";
		rc = -errno;
	}
	if (rc == 0 && unlinkat(t->tmp_fd, name, 0) < 0) {
		*step = "unlink from tmp/";
		rc = -errno;
	}
	return rc;
}

static const struct backend md_backend = {
	.thread_open = md_thread_open,
	.deliver = md_deliver,
	.thread_close = md_thread_close,
	.journal_stats = NULL,
};

/* ------------------------------------------------------------------ */
/* The run                                                             */
/* ------------------------------------------------------------------ */

struct run;

struct worker {
	struct run *r;
	unsigned index;
	pthread_t thread;
	void *state;            /* the backend's, NULL until opened */
	struct latency_hist lat;
	uint64_t end_ns;        /* when its last delivery ended */
	int error;              /* first failure, -errno */
};

struct run {
	const struct mail_opts *o;
	const struct backend *be;
	void *ctx;
	uint8_t *message;       /* random, shared read-only by the workers */
	uint64_t run_id, run_secs; /* in every name, so names are unique per run */
	atomic_bool stop;
	atomic_bool error_reported;
	/* Start gate: workers wait until the main thread opens it, so thread
	 * creation is not timed. A failed start opens it with stop set. */
	struct start_gate gate;
	uint64_t start_ns;
	unsigned nworkers;      /* workers started */
	struct worker *workers;
};

/* Maildir-style: time.uniq, unique within and across runs. */
static void message_name(const struct run *r, unsigned worker, uint64_t n, char *buf,
			 size_t len)
{
	snprintf(buf, len, "%" PRIu64 ".R%016" PRIx64 "T%uN%" PRIu64 ".catamaran",
		 r->run_secs, r->run_id, worker, n);
}

/* The first failure of the run is printed; every failure stops it. */
static void worker_fail(struct worker *w, int rc, const char *step, const char *name)
{
	struct run *r = w->r;
	w->error = rc;
	if (!atomic_exchange(&r->error_reported, true))
		fprintf(stderr, "catamaran %s: delivery of %s: %s failed: %s\n", r->o->cmd,
			name, step, strerror(-rc));
	atomic_store(&r->stop, true);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->r;
	char name[NAME_LEN];
	start_gate_wait(&r->gate);
	w->end_ns = r->start_ns;
	for (uint64_t n = 0; !atomic_load_explicit(&r->stop, memory_order_relaxed); n++) {
		message_name(r, w->index, n, name, sizeof(name));
		const char *step = "";
		uint64_t t0 = now_ns();
		int rc = r->be->deliver(w->state, name, r->message, r->o->size, &step);
		uint64_t t1 = now_ns();
		if (rc < 0) {
			worker_fail(w, rc, step, name);
			break;
		}
		hist_add(&w->lat, t1 - t0);
		w->end_ns = t1;
	}
	return NULL;
}

static int run_prepare(struct run *r)
{
	if (getrandom(&r->run_id, sizeof(r->run_id), 0) != (ssize_t)sizeof(r->run_id))
		return -EIO;
	r->run_secs = wallclock_ns() / NS_PER_SEC;
	r->message = malloc(r->o->size);
	r->workers = calloc(r->o->threads, sizeof(*r->workers));
	if (!r->message || !r->workers)
		return -ENOMEM;
	struct prng rng;
	prng_seed(&rng, r->run_id);
	for (size_t i = 0; i < r->o->size; i++)
		r->message[i] = (uint8_t)prng_next(&rng);
	return 0;
}

/* Open the threads' states and start them (they wait at the gate). */
static int start_workers(struct run *r)
{
	for (unsigned i = 0; i < r->o->threads; i++) {
		struct worker *w = &r->workers[i];
		*w = (struct worker){ .r = r, .index = i };
		int rc = r->be->thread_open(r->ctx, &w->state);
		if (rc < 0) {
			fprintf(stderr, "catamaran %s: opening new/ for a thread: %s\n",
				r->o->cmd, strerror(-rc));
			return rc;
		}
		rc = pthread_create(&w->thread, NULL, worker_main, w);
		if (rc) {
			fprintf(stderr, "catamaran %s: cannot start thread %u: %s\n", r->o->cmd,
				i + 1, strerror(rc));
			r->be->thread_close(w->state);
			w->state = NULL;
			return -rc;
		}
		r->nworkers++;
	}
	return 0;
}

/* Sleep until the deadline, a stop (a worker failed) or SIGINT/SIGTERM. */
static void watch_run(struct run *r, const sigset_t *stop_set)
{
	uint64_t deadline = r->start_ns + (uint64_t)(r->o->seconds * 1e9);
	while (!atomic_load(&r->stop)) {
		uint64_t now = now_ns(), nap = WATCH_SLICE_NS;
		if (r->o->seconds > 0 && now >= deadline)
			break;
		if (r->o->seconds > 0 && deadline - now < nap)
			nap = deadline - now;
		struct timespec ts = { (time_t)(nap / NS_PER_SEC), (long)(nap % NS_PER_SEC) };
		if (sigtimedwait(stop_set, NULL, &ts) > 0)
			break;
		/* -1: EAGAIN (the nap is over) or EINTR: look again */
	}
	atomic_store(&r->stop, true);
}

/* The threads run; returns -errno when they could not all start. */
static int run_workers(struct run *r, const sigset_t *stop_set)
{
	int rc = start_workers(r);
	if (rc < 0)
		atomic_store(&r->stop, true);
	r->start_ns = now_ns();
	start_gate_open(&r->gate);
	if (rc == 0)
		watch_run(r, stop_set);
	for (unsigned i = 0; i < r->nworkers; i++)
		pthread_join(r->workers[i].thread, NULL);
	return rc;
}

static int close_workers(struct run *r)
{
	int first = 0;
	for (unsigned i = 0; i < r->o->threads && r->workers; i++) {
		if (!r->workers[i].state)
			continue;
		int rc = r->be->thread_close(r->workers[i].state);
		if (rc < 0 && first == 0) {
			fprintf(stderr, "catamaran %s: closing new/: %s\n", r->o->cmd,
				strerror(-rc));
			first = rc;
		}
	}
	return first;
}

/* ------------------------------------------------------------------ */
/* Results                                                             */
/* ------------------------------------------------------------------ */

struct totals {
	struct latency_hist lat;
	double seconds;
	int error;
	bool has_journal;
	uint64_t commits, ops, flushes;   /* during the run */
};

static void sum_workers(const struct run *r, struct totals *t)
{
	uint64_t end = r->start_ns;
	for (unsigned i = 0; i < r->nworkers; i++) {
		const struct worker *w = &r->workers[i];
		hist_merge(&t->lat, &w->lat);
		if (!t->error)
			t->error = w->error;
		if (w->end_ns > end)
			end = w->end_ns;
	}
	t->seconds = (double)(end - r->start_ns) / 1e9;
}

static void journal_delta(struct totals *t, const struct fs_stats *before,
			  const struct fs_stats *after)
{
	t->has_journal = true;
	t->commits = after->commits - before->commits;
	t->ops = after->ops - before->ops;
	t->flushes = after->flushes - before->flushes;
}

static double ratio(double a, double b)
{
	return b > 0 ? a / b : 0;
}

static const double percentiles[] = { 50, 90, 99 };
static const char *const percentile_names[] = { "p50", "p90", "p99" };
#define NPERCENTILES (sizeof(percentiles) / sizeof(percentiles[0]))

static void print_text(const struct mail_opts *o, const struct totals *t)
{
	char size[32], l[32];
	uint64_t n = t->lat.count;
	printf("bench %s: %u thread%s, %s messages, %.2f s\n", o->bench, o->threads,
	       o->threads == 1 ? "" : "s", format_size(o->size, size, sizeof(size)), t->seconds);
	printf("  deliveries %10" PRIu64 "  %9.1f /s\n     latency", n, ratio((double)n, t->seconds));
	for (size_t i = 0; i < NPERCENTILES; i++)
		printf("  %s %s", percentile_names[i],
		       fmt_latency(hist_percentile(&t->lat, percentiles[i]), l, sizeof(l)));
	printf("  max %s\n", fmt_latency(t->lat.max_ns, l, sizeof(l)));
	if (!t->has_journal)
		return;
	printf("  journal    %10" PRIu64 " commits  %9.1f /s  %.1f ops/commit  "
	       "%.2f deliveries/commit\n", t->commits, ratio((double)t->commits, t->seconds),
	       ratio((double)t->ops, (double)t->commits), ratio((double)n, (double)t->commits));
	printf("             %10" PRIu64 " ops  %" PRIu64 " flushes  %.2f flushes/delivery\n",
	       t->ops, t->flushes, ratio((double)t->flushes, (double)n));
}

static void print_json(const struct mail_opts *o, const struct totals *t)
{
	uint64_t n = t->lat.count;
	printf("{\"bench\":\"%s\",\"threads\":%u,\"size\":%" PRIu64 ",\"seconds\":%.3f,"
	       "\"deliveries\":%" PRIu64 ",\"deliveries_per_sec\":%.1f,\"lat_us\":{",
	       o->bench, o->threads, o->size, t->seconds, n, ratio((double)n, t->seconds));
	for (size_t i = 0; i < NPERCENTILES; i++)
		printf("\"%s\":%.1f,", percentile_names[i],
		       (double)hist_percentile(&t->lat, percentiles[i]) / 1e3);
	printf("\"max\":%.1f},\"journal\":", (double)t->lat.max_ns / 1e3);
	if (t->has_journal)
		printf("{\"commits\":%" PRIu64 ",\"ops\":%" PRIu64 ",\"flushes\":%" PRIu64
		       ",\"ops_per_commit\":%.2f,\"deliveries_per_commit\":%.3f}",
		       t->commits, t->ops, t->flushes, ratio((double)t->ops, (double)t->commits),
		       ratio((double)n, (double)t->commits));
	else
		printf("null");
	printf(",\"error\":%s}\n", t->error ? "true" : "false");
}

/* ------------------------------------------------------------------ */
/* Driving a backend                                                   */
/* ------------------------------------------------------------------ */

/* Prepare, run, report and close the threads of one benchmark. */
static int deliver_for(const struct mail_opts *o, const struct backend *be, void *ctx,
		       const sigset_t *stop_set)
{
	struct run r = { .o = o, .be = be, .ctx = ctx,
			 .gate = START_GATE_INIT };
	struct fs_stats before = { 0 }, after = { 0 };
	struct totals t = { 0 };
	int status = EXIT_TROUBLE;
	int rc = run_prepare(&r);
	if (rc < 0) {
		fprintf(stderr, "catamaran %s: %s\n", o->cmd, strerror(-rc));
		goto out;
	}
	if (be->journal_stats)
		be->journal_stats(ctx, &before);
	rc = run_workers(&r, stop_set);
	if (be->journal_stats) {
		be->journal_stats(ctx, &after);
		journal_delta(&t, &before, &after);
	}
	sum_workers(&r, &t);
	if (rc == 0) {
		if (o->json)
			print_json(o, &t);
		else
			print_text(o, &t);
		status = fflush(stdout) == 0 && t.error == 0 ? EXIT_GOOD : EXIT_TROUBLE;
	}
out:
	if (close_workers(&r) < 0)
		status = EXIT_TROUBLE;
	free(r.workers);
	free(r.message);
	return status;
}

static void block_stop_signals(sigset_t *stop_set, sigset_t *old_mask)
{
	sigemptyset(stop_set);
	sigaddset(stop_set, SIGINT);
	sigaddset(stop_set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, stop_set, old_mask);
}

/* ---- bench fs ------------------------------------------------------------ */

static int fs_mount_mirror(const struct mail_opts *o, struct mirror *m, struct fs **fs)
{
	struct fs_opts fo = { 0 };
	struct cat_error err = { 0 };
	int rc = fs_mount(mirror_bdev(m), &fo, fs, &err);
	if (rc < 0)
		fprintf(stderr, "catamaran %s: %s, %s: cannot mount a filesystem: %s "
			"(`catamaran format` makes one)\n", o->cmd, o->path[0], o->path[1],
			err.msg[0] ? err.msg : strerror(-rc));
	return rc;
}

/* Between mounting and unmounting. */
static int bench_mounted(const struct mail_opts *o, struct fs *fs, const sigset_t *stop_set)
{
	struct fs_bench fb = { .fs = fs, .caller = { (uint32_t)geteuid(), (uint32_t)getegid() } };
	int rc = fs_make_maildir(&fb);
	if (rc < 0) {
		fprintf(stderr, "catamaran %s: making /%s/tmp and /%s/new: %s\n", o->cmd,
			MAILDIR_NAME, MAILDIR_NAME, strerror(-rc));
		return EXIT_TROUBLE;
	}
	int status = deliver_for(o, &fs_backend, &fb, stop_set);
	fs_drop_maildir(&fb);
	return status;
}

static int bench_fs_mirror(const struct mail_opts *o, struct mirror *m,
			   const sigset_t *stop_set)
{
	struct fs *fs;
	if (bench_resync_if_needed(o->cmd, m) < 0 || fs_mount_mirror(o, m, &fs) < 0)
		return EXIT_TROUBLE;
	int status = bench_mounted(o, fs, stop_set);
	int rc = fs_unmount(fs);
	if (rc < 0) {
		fprintf(stderr, "catamaran %s: unmounting the filesystem: %s\n", o->cmd,
			strerror(-rc));
		status = EXIT_TROUBLE;
	}
	return status;
}

static int run_bench_fs(const struct mail_opts *o)
{
	sigset_t stop_set, old_mask;
	block_stop_signals(&stop_set, &old_mask);
	struct mirror_opts mo = { 0 };
	struct mirror *m;
	int status = EXIT_TROUBLE;
	if (cli_open_mirror(o->cmd, o->path[0], o->path[1], &mo, &m) == 0) {
		status = bench_fs_mirror(o, m, &stop_set);
		int rc = mirror_close(m);
		if (rc < 0) {
			fprintf(stderr, "catamaran %s: closing the mirror: %s\n", o->cmd,
				strerror(-rc));
			status = EXIT_TROUBLE;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	return status;
}

/* ---- bench maildir ------------------------------------------------------- */

static int run_bench_maildir(const struct mail_opts *o)
{
	sigset_t stop_set, old_mask;
	block_stop_signals(&stop_set, &old_mask);
	struct md_bench mb = { .tmp_fd = -1, .new_fd = -1 };
	int status = EXIT_TROUBLE;
	int top = open(o->path[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = top < 0 ? -errno : md_make_maildir(top, &mb);
	if (top < 0)
		fprintf(stderr, "catamaran %s: %s: %s\n", o->cmd, o->path[0], strerror(-rc));
	else if (rc < 0)
		fprintf(stderr, "catamaran %s: %s: making %s/tmp and %s/new: %s\n", o->cmd,
			o->path[0], MAILDIR_NAME, MAILDIR_NAME, strerror(-rc));
	else
		status = deliver_for(o, &md_backend, &mb, &stop_set);
	rc = md_close_maildir(&mb);
	if (top >= 0 && close(top) < 0)
		rc = -errno;
	if (rc < 0) {
		fprintf(stderr, "catamaran %s: %s: %s\n", o->cmd, o->path[0], strerror(-rc));
		status = EXIT_TROUBLE;
	}
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	return status;
}

/* ------------------------------------------------------------------ */
/* Entry                                                               */
/* ------------------------------------------------------------------ */

static int bench_entry(int argc, char **argv, const char *cmd,
		       int (*run)(const struct mail_opts *))
{
	struct mail_opts o = { .cmd = cmd, .bench = argv[0], .threads = 1, .seconds = 10,
			       .size = 4096 };
	int rc = parse_options(argc, argv, &o);
	if (rc)
		return rc > 0 ? EXIT_GOOD : EXIT_TROUBLE;
	return run(&o);
}

int cmd_bench_fs(int argc, char **argv)
{
	return bench_entry(argc, argv, "bench fs", run_bench_fs);
}

int cmd_bench_maildir(int argc, char **argv)
{
	return bench_entry(argc, argv, "bench maildir", run_bench_maildir);
}
