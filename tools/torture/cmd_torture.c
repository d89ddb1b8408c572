/*
 * cmd_torture.c - `catamaran torture`: cycles of a scenario under mail
 * load, each verified, then a summary table (torture.h for the pieces).
 *
 * One cycle: start the load, let the scenario strike and restore service,
 * stop the load, verify every mailbox against the ledger, stop the mail
 * server, unmount, fsck, check that both disks are identical, mount again.
 * Any lost, partial, duplicated or resurrected message, unexpected load
 * error, fsck or mirror mismatch is a violation: exit status 1.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/base/util.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/torture/torture.h"

static const char torture_usage[] =
	"Usage: catamaran torture [OPTIONS] WORKDIR\n"
	"\n"
	"Run a mail load (SMTP deliveries, POP3 pickups and deletions through\n"
	"'catamaran mail serve') on a Catamaran volume made of two disks in\n"
	"WORKDIR (formatted on first use, reused after), and in each cycle inflict\n"
	"a failure, bring the service back and verify: every acknowledged delivery\n"
	"not deleted is present and intact; nothing partial, duplicated or back\n"
	"after its deletion was acknowledged; no load error outside the outage\n"
	"(none at all when one disk fails); fsck clean; both disks identical.\n"
	"Every acknowledgement is kept in WORKDIR/ledger.log, every step in\n"
	"WORKDIR/torture.log. Needs root (FUSE, loop devices).\n"
	"\n"
	"Scenarios (--scenario NAME, or all, in this order):\n"
	"%s"
	"\n"
	"Options:\n"
	"  -n, --cycles N              cycles per scenario (default 3)\n"
	"  -s, --scenario NAME         a scenario above, or all (default all)\n"
	"  -t, --seconds-per-cycle S   load time per cycle (default 3)\n"
	"      --seed N                random choices (default: from the clock; printed)\n"
	"      --size SIZE             size of each disk (default 512M)\n"
	"      --writers N             SMTP client threads (default 4)\n"
	"      --readers N             POP3 client threads (default 2)\n"
	"      --no-loop               plain files, no loop devices (pulls through the\n"
	"                              control channel only)\n"
	"      --json                  the summary as JSON on stdout\n"
	"  -h, --help                  show this help\n"
	"Exit status: 0 no violation, 1 a violation (see the table and torture.log),\n"
	"2 error or bad usage.\n";

struct torture_args {
	unsigned cycles, writers, readers;
	double seconds;
	uint64_t seed, size;
	const char *scenario, *workdir;
	bool loop, json;
};

struct scenario_stats {
	const struct scenario *sc;
	unsigned cycles, fsck_clean, mirrors_identical, resync_hits, errors;
	uint64_t acked, verified, retrieved, expected_errors;
	uint64_t lost, partial, duplicated, resurrected, unexpected;
	double recovery[4096];
	unsigned nrecovery;
};

static void usage(void)
{
	char list[2048] = "";
	size_t n = 0;
	for (size_t i = 0; i < nscenarios; i++)
		n += (size_t)snprintf(list + n, sizeof(list) - n, "  %-20s %s\n", scenarios[i].name,
				      scenarios[i].what);
	printf(torture_usage, list);
}

static int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static int parse_args(int argc, char **argv, struct torture_args *a)
{
	enum { SEED = 256, SIZE, WRITERS, READERS, NOLOOP, JSON };
	static const struct option longopts[] = {
		{ "cycles", required_argument, NULL, 'n' },
		{ "scenario", required_argument, NULL, 's' },
		{ "seconds-per-cycle", required_argument, NULL, 't' },
		{ "seed", required_argument, NULL, SEED },
		{ "size", required_argument, NULL, SIZE },
		{ "writers", required_argument, NULL, WRITERS },
		{ "readers", required_argument, NULL, READERS },
		{ "no-loop", no_argument, NULL, NOLOOP },
		{ "json", no_argument, NULL, JSON },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	*a = (struct torture_args){ .cycles = 3, .writers = 4, .readers = 2, .seconds = 3,
				    .seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20),
				    .size = 512ull << 20, .scenario = "all", .loop = true };
	int c;
	char *end;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":n:s:t:h", longopts, NULL)) != -1) {
		bool bad = false;
		if (c == 'n')
			bad = parse_uint(optarg, 1, 1000000, &a->cycles) < 0;
		else if (c == 's')
			a->scenario = optarg;
		else if (c == 't')
			bad = (a->seconds = strtod(optarg, &end)) < 0.5 || *end || a->seconds > 3600;
		else if (c == SEED)
			bad = (a->seed = strtoull(optarg, &end, 10)) == 0 || *end;
		else if (c == SIZE)
			bad = parse_size(optarg, &a->size) < 0 || a->size < (64ull << 20);
		else if (c == WRITERS)
			bad = parse_uint(optarg, 1, 256, &a->writers) < 0;
		else if (c == READERS)
			bad = parse_uint(optarg, 1, TORTURE_USERS, &a->readers) < 0;
		else if (c == NOLOOP)
			a->loop = false;
		else if (c == JSON)
			a->json = true;
		else if (c == 'h')
			return usage(), -1;
		else
			return cli_bad_option("torture", c, argv);
		if (bad)
			return cli_usage_error("torture", "--%s: bad value '%s'",
					       longopts[c >= SEED ? c - SEED + 3
						  : c == 'n' ? 0 : c == 's' ? 1 : 2].name, optarg);
	}
	if (argc - optind != 1)
		return cli_usage_error("torture", "needs WORKDIR");
	a->workdir = argv[optind];
	if (strcmp(a->scenario, "all")) {
		for (size_t i = 0; i < nscenarios; i++)
			if (!strcmp(scenarios[i].name, a->scenario))
				return 0;
		return cli_usage_error("torture", "--scenario: unknown scenario '%s'", a->scenario);
	}
	return 0;
}

/* ---- summary ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void recovery_stats(struct scenario_stats *s, double out[3])
{
	out[0] = out[1] = out[2] = -1;
	if (!s->nrecovery)
		return;
	qsort(s->recovery, s->nrecovery, sizeof(double), cmp_double);
	out[0] = s->recovery[0];
	out[1] = s->recovery[s->nrecovery / 2];
	out[2] = s->recovery[s->nrecovery - 1];
}

static uint64_t violations_of(const struct scenario_stats *s)
{
	return s->lost + s->partial + s->duplicated + s->resurrected + s->unexpected +
	       (s->cycles - s->fsck_clean) + (s->cycles - s->mirrors_identical) + s->errors;
}

static void print_table(struct scenario_stats *st, size_t n)
{
	printf("\n%-19s %6s %8s %8s %5s %5s %5s %5s %6s %7s %8s %s\n", "scenario", "cycles",
	       "acked", "verified", "lost", "part", "dup", "resur", "errors", "fsck",
	       "mirrors", "recovery s (min/median/max)");
	for (size_t i = 0; i < n; i++) {
		struct scenario_stats *s = &st[i];
		double rec[3];
		recovery_stats(s, rec);
		char fsck[16], mir[16];
		snprintf(fsck, sizeof(fsck), "%u/%u", s->fsck_clean, s->cycles);
		snprintf(mir, sizeof(mir), "%u/%u", s->mirrors_identical, s->cycles);
		printf("%-19s %6u %8llu %8llu %5llu %5llu %5llu %5llu %6llu %7s %8s %.2f/%.2f/%.2f",
		       s->sc->name, s->cycles, (unsigned long long)s->acked,
		       (unsigned long long)s->verified, (unsigned long long)s->lost,
		       (unsigned long long)s->partial, (unsigned long long)s->duplicated,
		       (unsigned long long)s->resurrected, (unsigned long long)s->unexpected,
		       fsck, mir, rec[0], rec[1], rec[2]);
		if (!strcmp(s->sc->name, "pull-during-resync"))
			printf("  (resync running at the pull: %u/%u)", s->resync_hits, s->cycles);
		if (s->errors)
			printf("  (%u cycle(s) could not restore service)", s->errors);
		printf("\n");
	}
	printf("\nacked: deliveries acknowledged (250 after DATA); verified: messages found\n"
	       "intact at the end of a cycle (summed over cycles); errors: load errors\n"
	       "outside an outage; fsck: clean runs; mirrors: identical disks.\n");
}

static void print_json(struct scenario_stats *st, size_t n, uint64_t seed, int verdict)
{
	printf("{\"seed\": %llu, \"violations\": %s, \"scenarios\": [", (unsigned long long)seed,
	       verdict ? "true" : "false");
	for (size_t i = 0; i < n; i++) {
		struct scenario_stats *s = &st[i];
		double rec[3];
		recovery_stats(s, rec);
		printf("%s\n {\"name\": \"%s\", \"cycles\": %u, \"acked\": %llu, \"verified\": %llu, "
		       "\"retrieved\": %llu, \"lost\": %llu, \"partial\": %llu, \"duplicated\": %llu, "
		       "\"resurrected\": %llu, \"unexpected_errors\": %llu, \"expected_errors\": %llu, "
		       "\"fsck_clean\": %u, \"mirrors_identical\": %u, \"failed_cycles\": %u, "
		       "\"resync_hits\": %u, \"recovery_s\": {\"min\": %.3f, \"median\": %.3f, "
		       "\"max\": %.3f}}",
		       i ? "," : "", s->sc->name, s->cycles, (unsigned long long)s->acked,
		       (unsigned long long)s->verified, (unsigned long long)s->retrieved,
		       (unsigned long long)s->lost, (unsigned long long)s->partial,
		       (unsigned long long)s->duplicated, (unsigned long long)s->resurrected,
		       (unsigned long long)s->unexpected, (unsigned long long)s->expected_errors,
		       s->fsck_clean, s->mirrors_identical, s->errors, s->resync_hits, rec[0], rec[1],
		       rec[2]);
	}
	printf("\n]}\n");
}

/* ---- cycles ---- */

/* Ctrl-C or SIGTERM ends the run after the cycle in progress: the volume is
 * unmounted, the loop devices detached and the summary printed. */
static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void progress(const struct torture_args *a, const struct scenario_stats *s,
		     bool final)
{
	bool tty = isatty(2);
	if (!tty && !final)
		return;
	fprintf(stderr, "%s[%s] cycle %u/%u: %llu acknowledged, %llu verified, %llu violation(s)%s",
		tty ? "\r\033[K" : "", s->sc->name, s->cycles, a->cycles,
		(unsigned long long)s->acked, (unsigned long long)s->verified,
		(unsigned long long)violations_of(s), tty && !final ? "" : "\n");
}

static int start_service(struct volume *v)
{
	int r = volume_mount(v);
	return r ? r : volume_mailer_start(v);
}

/* After the load: verify, unmount, fsck, check, remount. */
static int settle_cycle(struct volume *v, struct ledger *l, struct violations *viol,
			struct scenario_stats *s)
{
	struct verify_result vr;
	int r = verify_mailboxes(v->root, l, viol, &vr);
	if (r)
		return tlog(v, "verify: %s", strerror(-r)), r;
	s->verified += vr.verified;
	tlog(v, "verified: %llu present, %llu intact, lost %llu, partial %llu, dup %llu, resurrected %llu",
	     (unsigned long long)vr.present, (unsigned long long)vr.verified,
	     (unsigned long long)vr.lost, (unsigned long long)vr.partial,
	     (unsigned long long)vr.duplicated, (unsigned long long)vr.resurrected);
	r = volume_unmount(v);
	if (r)
		return r;
	s->fsck_clean += volume_fsck(v) == 0;
	s->mirrors_identical += volume_check(v) == 0;
	return start_service(v);
}

static int one_cycle(const struct torture_args *a, const struct scenario *sc,
		     struct volume *v, struct ledger *l, struct violations *viol,
		     struct prng *rng, struct scenario_stats *s)
{
	struct load_config lc = { .smtp_port = v->smtp_port, .pop3_port = v->pop3_port,
				  .writers = a->writers, .readers = a->readers,
				  .seed = prng_next(rng) };
	struct load *ld;
	int r = load_start(&lc, l, viol, &ld);
	if (r)
		return r;
	struct cycle_result res = { .recovery_s = -1 };
	tlog(v, "=== %s cycle %u", sc->name, s->cycles + 1);
	int rs = sc->run(v, ld, rng, a->seconds, &res);
	load_stop(ld);
	s->acked += load_acked(ld);
	s->retrieved += load_retrieved(ld);
	s->expected_errors += load_errors_expected(ld);
	load_free(ld);
	s->cycles++;
	if (rs) {     /* the service could not be restored: a violation */
		s->errors++;
		tlog(v, "%s: could not restore the service: %s", sc->name, strerror(-rs));
		fprintf(stderr, "catamaran torture: %s cycle %u: could not restore the service: %s "
			"(see %s)\n", sc->name, s->cycles, strerror(-rs), v->log);
		if (v->mailer <= 0 || v->daemon <= 0)
			r = v->daemon > 0 ? volume_mailer_start(v) : start_service(v);
		if (r)
			return r;
	}
	if (res.recovery_s >= 0 && s->nrecovery < sizeof(s->recovery) / sizeof(double))
		s->recovery[s->nrecovery++] = res.recovery_s;
	s->resync_hits += res.resync_hit;
	return settle_cycle(v, l, viol, s);
}

static void take_violations(struct violations *v, struct scenario_stats *s,
			    const unsigned long before[5])
{
	s->lost = atomic_load(&v->lost) - before[0];
	s->partial = atomic_load(&v->partial) - before[1];
	s->duplicated = atomic_load(&v->duplicated) - before[2];
	s->resurrected = atomic_load(&v->resurrected) - before[3];
	s->unexpected = atomic_load(&v->unexpected_errors) - before[4];
}

static int run_scenario(const struct torture_args *a, const struct scenario *sc,
			struct volume *v, struct ledger *l, struct violations *viol,
			struct prng *rng, struct scenario_stats *s)
{
	unsigned long before[5] = { atomic_load(&viol->lost), atomic_load(&viol->partial),
				    atomic_load(&viol->duplicated), atomic_load(&viol->resurrected),
				    atomic_load(&viol->unexpected_errors) };
	s->sc = sc;
	int r = 0;
	bool same_limit = !sc->resync_limit == !v->resync_limit;
	if (sc->crashtest != (v->crash_seed != 0) || !same_limit) {   /* other mount options */
		r = volume_unmount(v);
		v->crash_seed = sc->crashtest ? (prng_next(rng) | 1) : 0;
		v->resync_limit = sc->resync_limit;
		if (!r)
			r = start_service(v);
	}
	while (!r && s->cycles < a->cycles && !interrupted) {
		r = one_cycle(a, sc, v, l, viol, rng, s);
		take_violations(viol, s, before);
		progress(a, s, false);
	}
	progress(a, s, true);
	return r;
}

static int prepare(struct volume *v, const struct torture_args *a)
{
	int r = volume_setup(v, a->workdir, a->size, a->loop);
	if (r)
		return fprintf(stderr, "catamaran torture: %s: setting up the disks failed: %s "
			       "(see %s)\n", a->workdir, strerror(-r), v->log), r;
	r = volume_mount(v);
	if (r)
		return fprintf(stderr, "catamaran torture: mount failed (see %s)\n", v->log), r;
	/* A fresh mail tree and users file per run: the ledger starts empty. */
	char *rm[] = { "/bin/rm", "-rf", v->root, NULL };
	pid_t pid = fork();
	if (pid == 0)
		execv(rm[0], rm), _exit(127);
	waitpid(pid, NULL, 0);
	unlink(v->users);
	if (mkdir(v->root, 0700) < 0)
		return fprintf(stderr, "catamaran torture: %s: %s\n", v->root, strerror(errno)), -errno;
	for (int u = 0; u < TORTURE_USERS && !r; u++) {
		char name[16];
		snprintf(name, sizeof(name), "user%d", u);
		r = volume_adduser(v, name);
	}
	if (!r)
		r = volume_mailer_start(v);
	if (r)
		fprintf(stderr, "catamaran torture: starting the mail service failed (see %s)\n",
			v->log);
	return r;
}

int cmd_torture(int argc, char **argv)
{
	struct torture_args a;
	int r = parse_args(argc, argv, &a);
	if (r)
		return r < 0 ? 0 : r;
	static char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return fprintf(stderr, "catamaran torture: cannot find my own binary\n"), 2;
	self[n] = '\0';
	signal(SIGPIPE, SIG_IGN);
	static struct volume v;
	static struct scenario_stats stats[16];
	struct violations viol = { 0 };
	struct ledger *l = NULL;
	v.self = self;
	fprintf(stderr, "catamaran torture: seed %llu, %u cycle(s) of %s, %.1f s each, log %s/torture.log\n",
		(unsigned long long)a.seed, a.cycles, a.scenario, a.seconds, a.workdir);
	if (prepare(&v, &a)) {
		volume_teardown(&v);
		return 2;
	}
	char path[700];
	snprintf(path, sizeof(path), "%s/ledger.log", a.workdir);
	if ((r = ledger_open(path, &l)))
		fprintf(stderr, "catamaran torture: %s: %s\n", path, strerror(-r));
	struct prng rng;
	prng_seed(&rng, a.seed);
	size_t ns = 0;
	struct sigaction sa = { .sa_handler = on_interrupt };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	for (size_t i = 0; i < nscenarios && !r && !interrupted; i++)
		if ((!strcmp(a.scenario, "all") && strncmp(scenarios[i].name, "selftest", 8)) ||
		    !strcmp(a.scenario, scenarios[i].name))
			r = run_scenario(&a, &scenarios[i], &v, l, &viol, &rng, &stats[ns++]);
	if (r)
		fprintf(stderr, "catamaran torture: stopped: %s (see %s)\n", strerror(-r), v.log);
	volume_teardown(&v);
	ledger_close(l);
	int verdict = 0;
	for (size_t i = 0; i < ns; i++)
		verdict |= violations_of(&stats[i]) != 0;
	if (a.json)
		print_json(stats, ns, a.seed, verdict);
	else
		print_table(stats, ns);
	if (!a.json)
		printf("%s%s\n", r ? "ERROR: the run could not finish" :
		       verdict ? "VIOLATIONS FOUND" : "no violation",
		       interrupted ? " (interrupted: fewer cycles than asked)" : "");
	return r ? 2 : verdict;
}
