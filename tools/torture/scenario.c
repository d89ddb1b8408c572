/*
 * scenario.c - what each torture scenario inflicts, and how the service is
 * brought back (torture.h).
 *
 * Each function is called with the volume mounted, the mail server up and
 * the load running; it waits a random part of the cycle, strikes, restores
 * the service and lets the load go on for the rest of the cycle. Errors of
 * the load are excused only inside load_window_open/close, which only the
 * scenarios that stop the service (kill, kill-mail, power, the kill of
 * pull-during-resync) open: losing one disk must cost the load nothing.
 * The recovery time runs from the strike until the service is back (mail
 * server greeting again; for disk pulls: until the replacement is rebuilt).
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/base/util.h"
#include "tools/torture/torture.h"

static void sleep_seconds(double s)
{
	if (s > 0)
		usleep((useconds_t)(s * 1e6));
}

/* A random moment in the first 80% of the cycle (at least 0.2 s of load). */
static double strike_at(struct prng *rng, double seconds)
{
	return 0.2 + (double)prng_below(rng, 1000) / 1000.0 * (seconds * 0.8 - 0.2);
}

/* The daemon is gone (killed or powered off): the mail server's files are
 * on a dead mount, so it goes too; remount, restart it. */
static int restart_all(struct volume *v)
{
	volume_mailer_kill(v, SIGKILL);
	int r = volume_mount(v);
	return r ? r : volume_mailer_start(v);
}

static int run_kill(struct volume *v, struct load *ld, struct prng *rng, double seconds,
		    struct cycle_result *res)
{
	double at = strike_at(rng, seconds);
	sleep_seconds(at);
	load_window_open(ld);
	tlog(v, "kill -9 the filesystem daemon (pid %d)", (int)v->daemon);
	volume_daemon_kill(v);
	double t0 = now_seconds();
	int r = restart_all(v);
	res->recovery_s = now_seconds() - t0;
	load_window_close(ld);
	sleep_seconds(seconds - at);
	return r;
}

static int run_kill_mail(struct volume *v, struct load *ld, struct prng *rng, double seconds,
			 struct cycle_result *res)
{
	double at = strike_at(rng, seconds);
	sleep_seconds(at);
	load_window_open(ld);
	tlog(v, "kill -9 the mail server (pid %d)", (int)v->mailer);
	volume_mailer_kill(v, SIGKILL);
	double t0 = now_seconds();
	int r = volume_mailer_start(v);
	res->recovery_s = now_seconds() - t0;
	load_window_close(ld);
	sleep_seconds(seconds - at);
	return r;
}

static int run_power(struct volume *v, struct load *ld, struct prng *rng, double seconds,
		     struct cycle_result *res)
{
	double at = strike_at(rng, seconds);
	sleep_seconds(at);
	load_window_open(ld);
	tlog(v, "power cut (daemon pid %d)", (int)v->daemon);
	int r = volume_control(v, "power-cut", NULL, 0);
	if (r != -EPIPE)
		return tlog(v, "power-cut: unexpected answer %d", r), -EPROTO;
	volume_daemon_kill(v);           /* reap it */
	double t0 = now_seconds();
	v->crash_seed = prng_next(rng) | 1;    /* a new cut pattern for the next one */
	r = restart_all(v);
	res->recovery_s = now_seconds() - t0;
	load_window_close(ld);
	sleep_seconds(seconds - at);
	return r;
}

/* A disk pull strikes a redundant array: wait until no resync is left
 * (after a mount, the stale chunks are copied in the background; failing
 * the only complete disk then is a double failure, not this scenario). */
static int wait_redundant(struct volume *v)
{
	for (int i = 0; i < 1200; i++) {
		long stale = volume_stale_chunks(v, NULL);
		char reply[8192];
		if (stale < 0)
			return (int)stale;
		if (stale == 0 && volume_control(v, "status --json", reply, sizeof(reply)) == 0 &&
		    !strstr(reply, "\"rebuilding\"") && !strstr(reply, "\"failed\"") &&
		    !strstr(reply, "\"missing\""))
			return 0;
		usleep(100000);
	}
	return -ETIMEDOUT;
}

/* Fail leg under load (half the time a real pull when the disks are loop
 * devices), let the degraded array serve a while, replace, rebuild. */
static int pull_and_replace(struct volume *v, struct prng *rng, int leg, double degraded_s)
{
	int r = wait_redundant(v);
	if (r)
		return tlog(v, "the array did not become redundant: %s", strerror(-r)), r;
	bool real = prng_next(rng) & 1;
	tlog(v, "pull disk %d (%s)", leg + 1, real && v->loop ? "loop device" : "control channel");
	r = volume_pull(v, leg, real);
	if (r)
		return tlog(v, "pull failed: %s", strerror(-r)), r;
	sleep_seconds(degraded_s);
	r = volume_replace(v, leg);
	if (r)
		tlog(v, "replace failed: %s", strerror(-r));
	return r;
}

static int run_pull(struct volume *v, int leg, struct prng *rng, double seconds,
		    struct cycle_result *res)
{
	double at = strike_at(rng, seconds);
	sleep_seconds(at);
	double t0 = now_seconds();
	int r = pull_and_replace(v, rng, leg, 0.5);
	res->recovery_s = now_seconds() - t0;
	sleep_seconds(seconds - at - res->recovery_s);
	return r;
}

static int run_pull1(struct volume *v, struct load *ld, struct prng *rng, double seconds,
		     struct cycle_result *res)
{
	(void)ld;
	return run_pull(v, 0, rng, seconds, res);
}

static int run_pull2(struct volume *v, struct load *ld, struct prng *rng, double seconds,
		     struct cycle_result *res)
{
	(void)ld;
	return run_pull(v, 1, rng, seconds, res);
}

static int run_pull_then_other(struct volume *v, struct load *ld, struct prng *rng,
			       double seconds, struct cycle_result *res)
{
	(void)ld;
	double at = strike_at(rng, seconds / 2);
	sleep_seconds(at);
	double t0 = now_seconds();
	int r = pull_and_replace(v, rng, 0, 0.3);
	sleep_seconds(seconds / 4);
	if (!r)
		r = pull_and_replace(v, rng, 1, 0.3);
	res->recovery_s = now_seconds() - t0;
	sleep_seconds(seconds - at - res->recovery_s);
	return r;
}

/* kill -9, remount (the resync of the chunks dirty at the kill starts in
 * the background), and fail the disk being resynced at once. */
static int run_pull_during_resync(struct volume *v, struct load *ld, struct prng *rng,
				  double seconds, struct cycle_result *res)
{
	double at = strike_at(rng, seconds);
	sleep_seconds(at);
	load_window_open(ld);
	tlog(v, "kill -9 the filesystem daemon (pid %d), then pull during the resync",
	     (int)v->daemon);
	volume_daemon_kill(v);
	double t0 = now_seconds();
	volume_mailer_kill(v, SIGKILL);
	int r = volume_mount(v), auth = 0;
	long stale = r ? r : volume_stale_chunks(v, &auth);
	if (stale < 0)
		return (int)stale;
	res->resync_hit = stale > 0;
	int leg = auth == 0 ? 1 : 0;     /* the disk the resync copies to */
	tlog(v, "%ld stale chunk(s) left; failing disk %d", stale, leg + 1);
	r = volume_pull(v, leg, false);  /* at once: a loop pull waits for I/O */
	if (!r)
		r = volume_mailer_start(v);
	res->recovery_s = now_seconds() - t0;
	load_window_close(ld);
	if (!r)
		r = volume_replace(v, leg);
	sleep_seconds(seconds - at - (now_seconds() - t0));
	return r;
}

/* Not a failure of ours but a test of the checker: cut one delivered
 * message in half behind the server's back. The cycle must report it
 * (partial, and lost if it was acknowledged) - `all` does not run it. */
static int run_selftest_damage(struct volume *v, struct load *ld, struct prng *rng,
			       double seconds, struct cycle_result *res)
{
	(void)ld;
	(void)res;
	sleep_seconds(seconds / 2);
	int r = -ENOENT;
	for (int u = 0; u < TORTURE_USERS && r; u++) {
		char dir[800], path[1100];
		snprintf(dir, sizeof(dir), "%s/user%d/new", v->root, (int)((prng_next(rng) + (uint64_t)u) % TORTURE_USERS));
		DIR *d = opendir(dir);
		struct dirent *de;
		struct stat st;
		while (d && r && (de = readdir(d)))
			if (de->d_name[0] != '.') {
				snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
				if (stat(path, &st) == 0 && truncate(path, st.st_size / 2) == 0) {
					tlog(v, "self-test: cut %s to half", path);
					r = 0;
				}
			}
		if (d)
			closedir(d);
	}
	sleep_seconds(seconds / 2);
	return r;
}

const struct scenario scenarios[] = {
	{ "kill", "kill -9 the filesystem daemon under load, remount", run_kill, false, NULL },
	{ "kill-mail", "kill -9 the mail server under load, restart it", run_kill_mail, false, NULL },
	{ "pull-disk1", "fail disk 1 under load, replace it, rebuild online", run_pull1, false, NULL },
	{ "pull-disk2", "fail disk 2 under load, replace it, rebuild online", run_pull2, false, NULL },
	/* A resync limit of 8 MiB/s makes the resync of a few 4 MiB chunks
	 * last long enough to be caught. */
	{ "pull-during-resync", "kill -9, remount, fail a disk while it resyncs",
	  run_pull_during_resync, false, "8M" },
	{ "pull-then-other", "fail disk 1, rebuild it, then fail disk 2, rebuild it",
	  run_pull_then_other, false, NULL },
	{ "power", "power cut: unflushed writes lost independently per disk", run_power, true, NULL },
	{ "selftest-damage", "(not in all) cut a message in half behind the server's back: "
	  "the checker must report it", run_selftest_damage, false, NULL },
};
const size_t nscenarios = sizeof(scenarios) / sizeof(scenarios[0]);
