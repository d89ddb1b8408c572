/*
 * cmd_bench_mail.c - `catamaran bench mail`: the Mailboat workload on the
 * mail store library (core/mail), in any directory.
 *
 * The workload is the one of Mailboat's benchmark (mailboat-bench, SOSP'19
 * "Perennial"): each of N threads runs ITERATIONS iterations of
 *     deliver "Hello world." (12 bytes) to a random user;
 *     pick up a random user, delete every message returned, unlock.
 * A request is one such iteration, as Mailboat counts it: its plot
 * (perennial artifact/paper-scripts/mailboat.plot) divides the total number
 * of iterations of all threads by the elapsed time.
 *
 * Mailboat's pickup waits for the user's lock; ours never blocks (-EBUSY),
 * so a pickup of a user another thread holds is retried (sched_yield) and
 * the retries are counted.
 *
 * --bare runs the same workload without the library: only the file
 * operations Mailboat makes (bench_mail_bare.h), no fsync, an in-process
 * lock. It is the floor of a file-per-message store on that directory,
 * to tell what the library's guarantees cost from what the kernel costs.
 *
 * The store caches open mailboxes up to a sixteenth of the open-file
 * limit, so the soft limit is raised to the hard one first, as Go
 * programs do at start since Go 1.19.
 *
 * Before the run every mailbox u0..uN-1 is made and emptied (not timed);
 * after it every mailbox is picked up again and the bench checks that
 * messages delivered - messages deleted == messages left, that every
 * message left is the benchmark's 12 bytes, and that no tmp/ holds a
 * leftover. Exit 1 when that check fails.
 */
#include "tools/commands.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/util.h"
#include "core/mail/mail.h"
#include "tools/bench_common.h"
#include "tools/bench_mail_bare.h"
#include "tools/cli.h"

#define CMD "bench mail"
#define EXIT_GOOD 0
#define EXIT_MISMATCH 1
#define EXIT_TROUBLE 2

#define MAX_THREADS 1024u
#define MAX_USERS 100000u
#define MAX_ITERATIONS 1000000000u
#define USER_LEN 16

/* Mailboat's message: "Hello world." is 12 bytes. */
static const char message[] = "Hello world.";
#define MESSAGE_LEN (sizeof(message) - 1)

/* ------------------------------------------------------------------ */
/* Options                                                             */
/* ------------------------------------------------------------------ */

struct mail_bench_opts {
	unsigned threads;
	unsigned iterations;   /* per thread */
	unsigned users;
	uint64_t seed;
	bool seed_given;
	bool json;
	bool bare;
	const char *dir;
};

static void usage(FILE *out)
{
	fprintf(out,
"usage: catamaran bench mail [options] DIR\n"
"\n"
"The Mailboat workload on the mail store library (mail_deliver, mail_pickup,\n"
"mail_delete, mail_unlock) with DIR as the store's root (DIR must exist; the\n"
"users are u0, u1, ...; their mailboxes DIR/uK are made if missing). Each of\n"
"N threads runs ITERATIONS iterations of:\n"
"    deliver the 12-byte message \"Hello world.\" to a random user;\n"
"    pick up a random user, delete every message returned, unlock.\n"
"A pickup of a user another thread holds (-EBUSY) is retried.\n"
"\n"
"A request is one iteration (one delivery plus one pickup with its deletes\n"
"and unlock), as Mailboat counts them: requests/s = threads * iterations /\n"
"elapsed time. Prints requests/s, iterations, elapsed time and the latency\n"
"of deliveries and of pickup sessions (pickup + deletes + unlock).\n"
"\n"
"Every message already in those mailboxes is deleted before the run (not\n"
"timed). After it, every mailbox is picked up again to VERIFY that messages\n"
"delivered - messages deleted == messages left in the store, that each one\n"
"left is the benchmark's message, and that no tmp/ holds a leftover.\n"
"\n"
"  --threads N      threads (default 1)\n"
"  --iterations N   iterations per thread (default 10000)\n"
"  --users N        users, u0..u(N-1) (default 100, as Mailboat)\n"
"  --seed S         seed of the random user choices (default: random; thread\n"
"                   i uses S+i). The run is reproducible only at 1 thread\n"
"  --bare           the same workload without the library, as the floor to\n"
"                   compare with: only Mailboat's file operations (create,\n"
"                   write, close, link, unlink; list, open, read, close,\n"
"                   unlink), no fsync, an in-process per-user lock, no move\n"
"                   to cur/. NOT durable and not safe for other processes\n"
"  --json           print the results as one JSON object\n"
"\n"
"Exit status: 0 success, 1 the verification failed, 2 error.\n");
}

static int parse_seed(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end || *s == '-') {
		cli_usage_error(CMD, "--seed wants a number from 0 to 2^64-1, not '%s'", s);
		return -EINVAL;
	}
	*out = (uint64_t)v;
	return 0;
}

/* Returns 0 to run, 1 when help was printed, -EINVAL on a usage error. */
static int parse_options(int argc, char **argv, struct mail_bench_opts *o)
{
	enum { OPT_THREADS = 256, OPT_ITERATIONS, OPT_USERS, OPT_SEED, OPT_BARE, OPT_JSON,
	       OPT_HELP };
	static const struct option longopts[] = {
		{ "threads", required_argument, NULL, OPT_THREADS },
		{ "iterations", required_argument, NULL, OPT_ITERATIONS },
		{ "users", required_argument, NULL, OPT_USERS },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "bare", no_argument, NULL, OPT_BARE },
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
			rc = bench_parse_count(CMD, "--threads", optarg, 1, MAX_THREADS, &o->threads);
			break;
		case OPT_ITERATIONS:
			rc = bench_parse_count(CMD, "--iterations", optarg, 1, MAX_ITERATIONS,
					       &o->iterations);
			break;
		case OPT_USERS:
			rc = bench_parse_count(CMD, "--users", optarg, 1, MAX_USERS, &o->users);
			break;
		case OPT_SEED:
			rc = parse_seed(optarg, &o->seed);
			o->seed_given = true;
			break;
		case OPT_BARE: o->bare = true; break;
		case OPT_JSON: o->json = true; break;
		case 'h': case OPT_HELP: usage(stdout); return 1;
		default: cli_bad_option(CMD, c, argv); return -EINVAL;
		}
	}
	if (rc == 0 && argc - optind != 1) {
		cli_usage_error(CMD, "needs exactly one directory, DIR");
		rc = -EINVAL;
	}
	if (rc == 0)
		o->dir = argv[optind];
	return rc;
}

/* ------------------------------------------------------------------ */
/* The run                                                             */
/* ------------------------------------------------------------------ */

struct bench;

struct worker {
	struct bench *b;
	unsigned index;
	pthread_t thread;
	uint64_t delivered, deleted, busy_retries;
	struct latency_hist deliver_lat, session_lat;
	uint64_t end_ns;
	int error;             /* first failure, -errno */
};

struct bench {
	const struct mail_bench_opts *o;
	struct mail_store *store;
	struct bare_mail *bare;   /* --bare: used instead of the store */
	char (*user)[USER_LEN];   /* "u0", "u1", ... */
	atomic_bool stop;         /* a worker failed */
	atomic_bool error_reported;
	struct start_gate gate;
	uint64_t start_ns;
	unsigned nworkers;
	struct worker *workers;
};

static void worker_fail(struct worker *w, int rc, const char *what, const char *user)
{
	struct bench *b = w->b;
	w->error = rc;
	if (!atomic_exchange(&b->error_reported, true))
		fprintf(stderr, "catamaran " CMD ": %s of %s: %s\n", what, user, strerror(-rc));
	atomic_store(&b->stop, true);
}

/* Pick up user, waiting (as Mailboat's pickup does) while another thread
 * holds the lock. */
static int pickup_waiting(struct worker *w, const char *user, struct mail_list *list)
{
	for (;;) {
		int rc = mail_pickup(w->b->store, user, list);
		if (rc != -EBUSY)
			return rc;
		w->busy_retries++;
		if (atomic_load_explicit(&w->b->stop, memory_order_relaxed))
			return rc;
		sched_yield();
	}
}

/* Pickup, delete everything returned, unlock. */
static int pickup_session(struct worker *w, const char *user)
{
	struct mail_list list;
	int rc = pickup_waiting(w, user, &list);
	if (rc < 0) {
		worker_fail(w, rc, "pickup", user);
		return rc;
	}
	for (size_t i = 0; rc == 0 && i < list.count; i++) {
		rc = mail_delete(w->b->store, user, list.msgs[i].id);
		if (rc == 0)
			w->deleted++;
		else
			worker_fail(w, rc, "delete", user);
	}
	mail_list_free(&list);
	int rc2 = mail_unlock(w->b->store, user);
	if (rc2 < 0 && rc == 0) {
		worker_fail(w, rc2, "unlock", user);
		rc = rc2;
	}
	return rc;
}

static int deliver_one(struct worker *w, unsigned to)
{
	struct bench *b = w->b;
	int rc = b->bare ? bare_mail_deliver(b->bare, to, w->index, w->delivered, message,
					     MESSAGE_LEN)
			 : mail_deliver(b->store, b->user[to], message, MESSAGE_LEN, NULL);
	if (rc < 0)
		worker_fail(w, rc, "delivery", b->user[to]);
	return rc;
}

static int pickup_one(struct worker *w, unsigned from)
{
	struct bench *b = w->b;
	if (!b->bare)
		return pickup_session(w, b->user[from]);
	int rc = bare_mail_pickup_delete(b->bare, from, &w->deleted);
	if (rc < 0)
		worker_fail(w, rc, "pickup", b->user[from]);
	return rc;
}

static int one_iteration(struct worker *w, struct prng *rng)
{
	struct bench *b = w->b;
	unsigned to = (unsigned)prng_below(rng, b->o->users);
	uint64_t t0 = now_ns();
	int rc = deliver_one(w, to);
	uint64_t t1 = now_ns();
	if (rc < 0)
		return rc;
	w->delivered++;
	hist_add(&w->deliver_lat, t1 - t0);
	rc = pickup_one(w, (unsigned)prng_below(rng, b->o->users));
	uint64_t t2 = now_ns();
	hist_add(&w->session_lat, t2 - t1);
	w->end_ns = t2;
	return rc;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct bench *b = w->b;
	struct prng rng;
	prng_seed(&rng, b->o->seed + w->index);
	start_gate_wait(&b->gate);
	w->end_ns = b->start_ns;
	for (unsigned i = 0; i < b->o->iterations; i++) {
		if (atomic_load_explicit(&b->stop, memory_order_relaxed))
			break;
		if (one_iteration(w, &rng) < 0)
			break;
	}
	return NULL;
}

/* Start the threads (they wait at the gate), open it, join them all. */
static int run_workers(struct bench *b)
{
	int rc = 0;
	for (unsigned i = 0; i < b->o->threads; i++) {
		struct worker *w = &b->workers[i];
		*w = (struct worker){ .b = b, .index = i };
		rc = pthread_create(&w->thread, NULL, worker_main, w);
		if (rc) {
			fprintf(stderr, "catamaran " CMD ": cannot start thread %u: %s\n", i + 1,
				strerror(rc));
			atomic_store(&b->stop, true);
			rc = -rc;
			break;
		}
		b->nworkers++;
	}
	b->start_ns = now_ns();
	start_gate_open(&b->gate);
	for (unsigned i = 0; i < b->nworkers; i++)
		pthread_join(b->workers[i].thread, NULL);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Before and after: empty, then count, every mailbox                  */
/* ------------------------------------------------------------------ */

struct census {
	uint64_t messages;   /* messages in the store */
	uint64_t foreign;    /* of those, not the benchmark's message */
	uint64_t tmp_files;  /* leftovers in tmp/ */
};

/* Pick up user and count (and optionally delete) its messages. */
static int census_user(struct mail_store *store, const char *user, bool empty,
		       struct census *c)
{
	struct mail_list list;
	int rc = mail_pickup(store, user, &list);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < list.count; i++) {
		const struct mail_msg *m = &list.msgs[i];
		c->messages++;
		if (m->size != MESSAGE_LEN || memcmp(m->data, message, MESSAGE_LEN) != 0)
			c->foreign++;
		if (empty && rc == 0)
			rc = mail_delete(store, user, m->id);
	}
	mail_list_free(&list);
	int rc2 = mail_unlock(store, user);
	return rc < 0 ? rc : rc2;
}

/* Files in DIR/USER/tmp (the library's layout, mail.h). */
static int count_tmp(const char *dir, const char *user, uint64_t *count)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s/tmp", dir, user) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	struct dirent *e;
	errno = 0;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			(*count)++;
		errno = 0;
	}
	int rc = errno ? -errno : 0;
	closedir(d);
	return rc;
}

/* Every user: count its messages (empty: and delete them) and tmp/ files. */
static int census(struct bench *b, bool empty, struct census *c)
{
	*c = (struct census){ 0 };
	for (unsigned u = 0; u < b->o->users; u++) {
		const char *user = b->user[u];
		int rc = census_user(b->store, user, empty, c);
		if (rc == 0)
			rc = count_tmp(b->o->dir, user, &c->tmp_files);
		if (rc < 0) {
			fprintf(stderr, "catamaran " CMD ": %s: %s %s: %s\n", b->o->dir,
				empty ? "emptying" : "counting", user, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Results                                                             */
/* ------------------------------------------------------------------ */

struct totals {
	uint64_t requests, delivered, deleted, busy_retries;
	struct latency_hist deliver_lat, session_lat;
	double seconds;
	int error;
	struct census before, after;
	bool verified;
};

static void sum_workers(const struct bench *b, struct totals *t)
{
	uint64_t end = b->start_ns;
	for (unsigned i = 0; i < b->nworkers; i++) {
		const struct worker *w = &b->workers[i];
		t->requests += w->session_lat.count;
		t->delivered += w->delivered;
		t->deleted += w->deleted;
		t->busy_retries += w->busy_retries;
		hist_merge(&t->deliver_lat, &w->deliver_lat);
		hist_merge(&t->session_lat, &w->session_lat);
		if (!t->error)
			t->error = w->error;
		if (w->end_ns > end)
			end = w->end_ns;
	}
	t->seconds = (double)(end - b->start_ns) / 1e9;
}

static void verify(struct totals *t)
{
	t->verified = t->delivered - t->deleted == t->after.messages &&
		      t->after.foreign == 0 && t->after.tmp_files == 0;
}

static double per_sec(uint64_t n, double seconds)
{
	return seconds > 0 ? (double)n / seconds : 0;
}

static void print_latency(const char *what, const struct latency_hist *h)
{
	char p50[32], p99[32], max[32];
	printf("  %-8s latency  p50 %s  p99 %s  max %s\n", what,
	       fmt_latency(hist_percentile(h, 50), p50, sizeof(p50)),
	       fmt_latency(hist_percentile(h, 99), p99, sizeof(p99)),
	       fmt_latency(h->max_ns, max, sizeof(max)));
}

static void print_text(const struct mail_bench_opts *o, const struct totals *t)
{
	printf("bench mail%s: %s, %u thread%s x %u iterations, %u users, seed %" PRIu64 "\n",
	       o->bare ? " --bare (no library, no fsync, not durable)" : "", o->dir, o->threads,
	       o->threads == 1 ? "" : "s", o->iterations, o->users, o->seed);
	printf("  requests %" PRIu64 " in %.3f s: %.1f requests/s\n", t->requests, t->seconds,
	       per_sec(t->requests, t->seconds));
	printf("  (a request = one iteration: a delivery + a pickup with its deletes "
	       "and unlock, as Mailboat counts)\n");
	print_latency("deliver", &t->deliver_lat);
	print_latency("pickup", &t->session_lat);
	printf("  delivered %" PRIu64 ", deleted %" PRIu64 ", pickups retried on a busy "
	       "lock %" PRIu64 "; emptied %" PRIu64 " messages before the run\n",
	       t->delivered, t->deleted, t->busy_retries, t->before.messages);
	printf("VERIFY %s: delivered %" PRIu64 " - deleted %" PRIu64 " = %" PRIu64
	       ", left in the store %" PRIu64 " (not the benchmark's message: %" PRIu64
	       ", tmp/ leftovers: %" PRIu64 ")\n", t->verified ? "OK" : "MISMATCH",
	       t->delivered, t->deleted, t->delivered - t->deleted, t->after.messages,
	       t->after.foreign, t->after.tmp_files);
}

static void print_json_latency(const char *name, const struct latency_hist *h)
{
	printf("\"%s\":{\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f}", name,
	       (double)hist_percentile(h, 50) / 1e3, (double)hist_percentile(h, 99) / 1e3,
	       (double)h->max_ns / 1e3);
}

static void print_json(const struct mail_bench_opts *o, const struct totals *t)
{
	printf("{\"bench\":\"mail\",\"mode\":\"%s\",\"dir\":", o->bare ? "bare" : "library");
	cli_json_string(o->dir);
	printf(",\"threads\":%u,\"iterations\":%u,\"users\":%u,\"seed\":%" PRIu64
	       ",\"requests\":%" PRIu64 ",\"seconds\":%.3f,\"requests_per_sec\":%.1f,"
	       "\"delivered\":%" PRIu64 ",\"deleted\":%" PRIu64 ",\"left\":%" PRIu64
	       ",\"foreign\":%" PRIu64 ",\"tmp_leftovers\":%" PRIu64 ",\"emptied_before\":%"
	       PRIu64 ",\"busy_retries\":%" PRIu64 ",\"lat_us\":{", o->threads, o->iterations,
	       o->users, o->seed, t->requests, t->seconds, per_sec(t->requests, t->seconds),
	       t->delivered, t->deleted, t->after.messages, t->after.foreign,
	       t->after.tmp_files, t->before.messages, t->busy_retries);
	print_json_latency("deliver", &t->deliver_lat);
	printf(",");
	print_json_latency("pickup", &t->session_lat);
	printf("},\"verified\":%s,\"error\":%s}\n", t->verified ? "true" : "false",
	       t->error ? "true" : "false");
}

/* ------------------------------------------------------------------ */
/* Entry                                                               */
/* ------------------------------------------------------------------ */

static int make_users(struct bench *b)
{
	b->user = calloc(b->o->users, sizeof(*b->user));
	b->workers = calloc(b->o->threads, sizeof(*b->workers));
	if (!b->user || !b->workers)
		return -ENOMEM;
	for (unsigned u = 0; u < b->o->users; u++)
		snprintf(b->user[u], USER_LEN, "u%u", u);
	return 0;
}

/* --bare: its directories, once the census made every mailbox. */
static int bare_open(struct bench *b)
{
	const char **names = calloc(b->o->users, sizeof *names);
	if (!names)
		return -ENOMEM;
	for (unsigned u = 0; u < b->o->users; u++)
		names[u] = b->user[u];
	int rc = bare_mail_open(b->o->dir, names, b->o->users, &b->bare);
	free(names);
	if (rc < 0)
		fprintf(stderr, "catamaran " CMD ": %s: --bare: %s\n", b->o->dir, strerror(-rc));
	return rc;
}

/* With the store open: empty, run, count, report. */
static int bench_store(struct bench *b)
{
	struct totals t = { 0 };
	int rc = make_users(b);
	if (rc < 0) {
		fprintf(stderr, "catamaran " CMD ": %s\n", strerror(-rc));
		return EXIT_TROUBLE;
	}
	if (census(b, true, &t.before) < 0)
		return EXIT_TROUBLE;
	if (b->o->bare && (rc = bare_open(b)) < 0)
		return EXIT_TROUBLE;
	rc = run_workers(b);
	bare_mail_close(b->bare);
	b->bare = NULL;
	sum_workers(b, &t);
	if (rc < 0 || t.error || census(b, false, &t.after) < 0)
		return EXIT_TROUBLE;
	verify(&t);
	if (b->o->json)
		print_json(b->o, &t);
	else
		print_text(b->o, &t);
	if (fflush(stdout) != 0)
		return EXIT_TROUBLE;
	return t.verified ? EXIT_GOOD : EXIT_MISMATCH;
}

/* Best effort: with the default 1024 the store would cache 64 mailboxes. */
static void raise_open_file_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int run_bench_mail(struct mail_bench_opts *o)
{
	raise_open_file_limit();
	if (!o->seed_given && getrandom(&o->seed, sizeof(o->seed), 0) != (ssize_t)sizeof(o->seed))
		o->seed = wallclock_ns();
	struct bench b = { .o = o, .gate = START_GATE_INIT };
	int rc = mail_open(o->dir, &b.store);
	if (rc < 0) {
		fprintf(stderr, "catamaran " CMD ": %s: %s\n", o->dir, strerror(-rc));
		return EXIT_TROUBLE;
	}
	int status = bench_store(&b);
	rc = mail_close(b.store);
	if (rc < 0) {
		fprintf(stderr, "catamaran " CMD ": %s: closing the store: %s\n", o->dir,
			strerror(-rc));
		status = EXIT_TROUBLE;
	}
	free(b.user);
	free(b.workers);
	return status;
}

int cmd_bench_mail(int argc, char **argv)
{
	struct mail_bench_opts o = { .threads = 1, .iterations = 10000, .users = 100 };
	int rc = parse_options(argc, argv, &o);
	if (rc)
		return rc > 0 ? EXIT_GOOD : EXIT_TROUBLE;
	return run_bench_mail(&o);
}
