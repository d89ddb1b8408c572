/*
 * test_mail.c - the mail store library (core/mail/mail.h) on a temporary
 * directory of the host (ext4 under /tmp, or $CATAMARAN_MAIL_TEST_DIR;
 * one round trip on tmpfs under /dev/shm).
 *
 * Round trips of deliver / pickup / list / read / delete / unlock; ids
 * stable across reopen; the per-user lock against another thread (same
 * store and a second store: the OFD lock itself) and a forked process;
 * concurrent deliveries from 2 processes x 8 threads with a reader polling
 * new/ that must never see a partial message; pickup/delete racing with
 * deliveries; recover (old, dead-pid, live-pid tmp files); user name
 * validation; the users file.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/mail/mail.h"

static char root[256];

static void make_root_in(const char *base)
{
	snprintf(root, sizeof root, "%s/catamaran-mail.XXXXXX", base);
	cr_assert_not_null(mkdtemp(root), "mkdtemp: %s", strerror(errno));
}

/* CATAMARAN_MAIL_TEST_DIR runs the suite elsewhere, e.g. on a mount. */
static void setup(void)
{
	const char *base = getenv("CATAMARAN_MAIL_TEST_DIR");
	make_root_in(base && base[0] ? base : "/tmp");
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static void teardown(void)
{
	if (root[0])
		nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(mail, .init = setup, .fini = teardown, .timeout = 300);

/* ---- helpers ---- */

static struct mail_store *open_store(void)
{
	struct mail_store *s;
	int rc = mail_open(root, &s);
	cr_assert_eq(rc, 0, "mail_open: %d", rc);
	return s;
}

static void deliver(struct mail_store *s, const char *user, const char *text,
		    char *id)
{
	int rc = mail_deliver(s, user, text, strlen(text), id);
	cr_assert_eq(rc, 0, "mail_deliver(%s): %d", user, rc);
}

static size_t count_dir(const char *user, const char *sub)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s/%s", root, user, sub);
	DIR *d = opendir(path);
	cr_assert_not_null(d, "opendir %s: %s", path, strerror(errno));
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static bool file_exists(const char *user, const char *sub, const char *name)
{
	char path[768];
	snprintf(path, sizeof path, "%s/%s/%s/%s", root, user, sub, name);
	return access(path, F_OK) == 0;
}

/* ---- round trips ---- */

static void round_trip(void)
{
	struct mail_store *s = open_store();
	char id[3][MAIL_ID_MAX];
	const char *text[3] = { "one\n", "two two\n", "three three three\n" };
	for (int i = 0; i < 3; i++)
		deliver(s, "alice", text[i], id[i]);
	cr_assert_eq(count_dir("alice", "new"), 3);
	cr_assert_eq(count_dir("alice", "tmp"), 0);

	struct mail_list l;
	cr_assert_eq(mail_pickup(s, "alice", &l), 0);
	cr_assert_eq(l.count, 3);
	for (int i = 0; i < 3; i++) {
		cr_assert_str_eq(l.msgs[i].id, id[i]);
		cr_assert_str_eq(l.msgs[i].data, text[i]);
		cr_assert_eq(l.msgs[i].size, strlen(text[i]));
	}
	cr_assert_eq(mail_delete(s, "alice", id[1]), 0);
	cr_assert_eq(mail_delete(s, "alice", id[1]), -ENOENT);
	cr_assert_eq(mail_unlock(s, "alice"), 0);
	/* at unlock the kept ones moved to cur/ with :2,; the deleted one is
	 * nowhere */
	char cur_name[MAIL_ID_MAX + 4];
	snprintf(cur_name, sizeof cur_name, "%s:2,", id[0]);
	cr_assert(file_exists("alice", "cur", cur_name), "moved to cur/ with :2,");
	cr_assert_eq(count_dir("alice", "new"), 0);
	cr_assert_eq(count_dir("alice", "cur"), 2);
	mail_list_free(&l);
	cr_assert_eq(mail_close(s), 0);

	s = open_store();   /* ids are stable across sessions */
	cr_assert_eq(mail_list(s, "alice", &l), 0);
	cr_assert_eq(l.count, 2);
	cr_assert_str_eq(l.msgs[0].id, id[0]);
	cr_assert_str_eq(l.msgs[1].id, id[2]);
	cr_assert_null(l.msgs[0].data);
	cr_assert_eq(l.msgs[1].size, strlen(text[2]));
	char *buf;
	size_t len;
	cr_assert_eq(mail_read(s, "alice", id[2], &buf, &len), 0);
	cr_assert_eq(len, strlen(text[2]));
	cr_assert_str_eq(buf, text[2]);
	free(buf);
	cr_assert_eq(mail_read(s, "alice", id[1], &buf, &len), -ENOENT);
	cr_assert_eq(mail_unlock(s, "alice"), 0);
	mail_list_free(&l);
	cr_assert_eq(mail_close(s), 0);
}

Test(mail, round_trip_ext4)
{
	round_trip();
}

Test(mail, round_trip_tmpfs)
{
	teardown();
	make_root_in("/dev/shm");
	round_trip();
}

Test(mail, id_format)
{
	struct mail_store *s = open_store();
	char id[MAIL_ID_MAX];
	deliver(s, "bob", "x", id);
	long long sec;
	long usec, pid;
	unsigned long q;
	char host[128];
	int n = sscanf(id, "%lld.M%6ldP%ldQ%lu.%127s", &sec, &usec, &pid, &q, host);
	cr_assert_eq(n, 5, "id %s", id);
	cr_assert_eq(pid, (long)getpid());
	cr_assert_null(strchr(id, ':'));
	cr_assert_null(strchr(id, '/'));
	cr_assert_leq(strlen(id), 70, "UIDL limit: %s", id);
	cr_assert_leq(labs((long)(sec - time(NULL))), 5);
	mail_close(s);
}

Test(mail, empty_mailbox_is_created)
{
	struct mail_store *s = open_store();
	struct mail_list l;
	cr_assert_eq(mail_list(s, "nobody", &l), 0);
	cr_assert_eq(l.count, 0);
	cr_assert_eq(count_dir("nobody", "cur"), 0);
	cr_assert_eq(mail_unlock(s, "nobody"), 0);
	mail_list_free(&l);
	mail_close(s);
}

Test(mail, message_delivered_after_snapshot)
{
	struct mail_store *s = open_store();
	char id[MAIL_ID_MAX];
	struct mail_list l;
	cr_assert_eq(mail_list(s, "carol", &l), 0);
	cr_assert_eq(l.count, 0);
	deliver(s, "carol", "late\n", id);
	char *buf;
	size_t len;
	cr_assert_eq(mail_read(s, "carol", id, &buf, &len), 0);
	cr_assert_str_eq(buf, "late\n");
	free(buf);
	cr_assert_eq(mail_delete(s, "carol", id), 0);
	cr_assert_eq(mail_unlock(s, "carol"), 0);
	cr_assert_eq(count_dir("carol", "new") + count_dir("carol", "cur"), 0);
	mail_list_free(&l);
	mail_close(s);
}

Test(mail, foreign_names)
{
	struct mail_store *s = open_store();
	deliver(s, "dave", "ours\n", NULL);
	char path[512];
	snprintf(path, sizeof path, "%s/dave/cur/1000.postfix.host:2,S", root);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("seen\n", f);
	fclose(f);
	struct mail_list l;
	cr_assert_eq(mail_pickup(s, "dave", &l), 0);
	cr_assert_eq(l.count, 2);
	cr_assert_str_eq(l.msgs[0].id, "1000.postfix.host");
	cr_assert_str_eq(l.msgs[0].data, "seen\n");
	cr_assert_eq(mail_delete(s, "dave", "1000.postfix.host"), 0);
	cr_assert_eq(mail_unlock(s, "dave"), 0);
	mail_list_free(&l);
	mail_close(s);
}

Test(mail, close_releases_locks)
{
	struct mail_store *a = open_store(), *b = open_store();
	struct mail_list l;
	cr_assert_eq(mail_list(a, "erin", &l), 0);
	mail_list_free(&l);
	cr_assert_eq(mail_list(b, "erin", &l), -EBUSY);
	cr_assert_eq(mail_close(a), 0);
	cr_assert_eq(mail_list(b, "erin", &l), 0);
	mail_list_free(&l);
	mail_close(b);
}

/* ---- the lock ---- */

Test(mail, needs_lock)
{
	struct mail_store *s = open_store();
	char id[MAIL_ID_MAX];
	deliver(s, "frank", "x\n", id);
	char *buf;
	size_t len;
	cr_assert_eq(mail_delete(s, "frank", id), -ENOLCK);
	cr_assert_eq(mail_read(s, "frank", id, &buf, &len), -ENOLCK);
	cr_assert_eq(mail_unlock(s, "frank"), -ENOLCK);
	struct mail_list l;
	cr_assert_eq(mail_list(s, "frank", &l), 0);
	cr_assert_eq(mail_delete(s, "frank", "../../etc/passwd"), -EINVAL);
	cr_assert_eq(mail_delete(s, "frank", "x:2,S"), -EINVAL);
	cr_assert_eq(mail_delete(s, "frank", "nosuch"), -ENOENT);
	cr_assert_eq(mail_unlock(s, "frank"), 0);
	cr_assert_eq(mail_delete(s, "frank", id), -ENOLCK);
	mail_list_free(&l);
	mail_close(s);
}

/* A withdrawn delivery is gone from new/; one a session may be showing
 * (locked: -EBUSY) or has seen (in cur/: -ENOENT) stays; bad ids are
 * refused. */
Test(mail, withdraw)
{
	struct mail_store *s = open_store();
	char id[MAIL_ID_MAX], kept[MAIL_ID_MAX];
	deliver(s, "gina", "first\n", id);
	cr_assert_eq(mail_withdraw(s, "gina", id), 0);
	cr_assert_eq(count_dir("gina", "new"), 0);
	cr_assert_eq(mail_withdraw(s, "gina", id), -ENOENT);
	deliver(s, "gina", "second\n", kept);
	struct mail_list l;
	cr_assert_eq(mail_pickup(s, "gina", &l), 0);
	cr_assert_eq(l.count, 1);
	cr_assert_eq(mail_withdraw(s, "gina", kept), -EBUSY);
	mail_list_free(&l);
	cr_assert_eq(mail_unlock(s, "gina"), 0);
	cr_assert_eq(mail_withdraw(s, "gina", kept), -ENOENT);
	cr_assert_eq(count_dir("gina", "cur"), 1);
	cr_assert_eq(mail_withdraw(s, "gina", "../x"), -EINVAL);
	cr_assert_eq(mail_withdraw(s, "../gina", kept), -EINVAL);
	mail_close(s);
}

/* A Maildir reader that does not know our lock (Dovecot, mutt) moves a
 * message from new/ to cur/, or changes its flags, while we hold the
 * mailbox: mail_read and mail_delete still find it, under its new name. */
Test(mail, delete_follows_a_foreign_move)
{
	struct mail_store *s = open_store();
	char fresh[MAIL_ID_MAX], seen[MAIL_ID_MAX];
	deliver(s, "hugo", "seen\n", seen);
	struct mail_list l;
	cr_assert_eq(mail_pickup(s, "hugo", &l), 0);   /* seen goes to cur/ at unlock */
	mail_list_free(&l);
	cr_assert_eq(mail_unlock(s, "hugo"), 0);
	deliver(s, "hugo", "fresh\n", fresh);
	cr_assert_eq(mail_pickup(s, "hugo", &l), 0);
	cr_assert_eq(l.count, 2);
	char from[1024], to[1024];
	snprintf(from, sizeof from, "%s/hugo/new/%s", root, fresh);
	snprintf(to, sizeof to, "%s/hugo/cur/%s:2,S", root, fresh);
	cr_assert_eq(rename(from, to), 0);
	snprintf(from, sizeof from, "%s/hugo/cur/%s:2,", root, seen);
	snprintf(to, sizeof to, "%s/hugo/cur/%s:2,RS", root, seen);
	cr_assert_eq(rename(from, to), 0);
	char *buf;
	size_t len;
	cr_assert_eq(mail_read(s, "hugo", fresh, &buf, &len), 0);
	cr_assert_str_eq(buf, "fresh\n");
	free(buf);
	cr_assert_eq(mail_delete(s, "hugo", fresh), 0);
	cr_assert_eq(mail_delete(s, "hugo", seen), 0);
	cr_assert_eq(mail_delete(s, "hugo", seen), -ENOENT);
	cr_assert_eq(mail_unlock(s, "hugo"), 0);
	cr_assert_eq(count_dir("hugo", "new") + count_dir("hugo", "cur"), 0);
	mail_list_free(&l);
	mail_close(s);
}

struct try_arg {
	struct mail_store *s;
	int rc;
};

static void *try_pickup(void *p)
{
	struct try_arg *a = p;
	struct mail_list l;
	a->rc = mail_pickup(a->s, "gina", &l);
	if (a->rc == 0) {
		mail_list_free(&l);
		mail_unlock(a->s, "gina");
	}
	return NULL;
}

static int pickup_in_thread(struct mail_store *s)
{
	struct try_arg a = { s, 1 };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, try_pickup, &a), 0);
	pthread_join(t, NULL);
	return a.rc;
}

Test(mail, lock_excludes_threads)
{
	struct mail_store *a = open_store(), *b = open_store();
	deliver(a, "gina", "x\n", NULL);
	struct mail_list l;
	cr_assert_eq(mail_pickup(a, "gina", &l), 0);
	mail_list_free(&l);
	cr_assert_eq(mail_pickup(a, "gina", &l), -EBUSY, "holder itself");
	cr_assert_eq(pickup_in_thread(a), -EBUSY, "same store, other thread");
	cr_assert_eq(pickup_in_thread(b), -EBUSY, "other store: OFD lock");
	cr_assert_eq(mail_unlock(a, "gina"), 0);
	cr_assert_eq(pickup_in_thread(b), 0);
	cr_assert_eq(pickup_in_thread(a), 0);
	mail_close(a);
	mail_close(b);
}

/* A child process with its own store tries a pickup; its exit status is
 * 0 on success, 1 on -EBUSY, 2 otherwise. */
static int pickup_in_child(void)
{
	pid_t pid = fork();
	if (pid == 0) {   /* no cr_assert in a child: it talks to the runner */
		struct mail_store *s;
		if (mail_open(root, &s) < 0)
			_exit(2);
		struct mail_list l;
		int rc = mail_pickup(s, "gina", &l);
		if (rc == 0)
			mail_list_free(&l);
		mail_close(s);
		_exit(rc == 0 ? 0 : rc == -EBUSY ? 1 : 2);
	}
	cr_assert_geq(pid, 0);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

Test(mail, lock_excludes_processes)
{
	struct mail_store *s = open_store();
	deliver(s, "gina", "x\n", NULL);
	struct mail_list l;
	cr_assert_eq(mail_pickup(s, "gina", &l), 0);
	mail_list_free(&l);
	cr_assert_eq(pickup_in_child(), 1, "child must get -EBUSY");
	cr_assert_eq(mail_unlock(s, "gina"), 0);
	cr_assert_eq(pickup_in_child(), 0);
	cr_assert_eq(mail_pickup(s, "gina", &l), 0, "child's lock released");
	mail_list_free(&l);
	mail_close(s);
}

/* ---- concurrency ---- */

#define PROCS 2
#define THREADS 8
#define PER_THREAD 100

/* "P<p> T<t> I<i> L<len>\n" then a body determined by them. */
static size_t make_msg(char *buf, int p, int t, int i)
{
	size_t len = 100 + (size_t)((p * 7919 + t * 104729 + i * 31) % 20000);
	int n = snprintf(buf, 64, "P%d T%d I%d L%zu\n", p, t, i, len);
	for (size_t k = (size_t)n; k < len - 1; k++)
		buf[k] = (char)('a' + (k * 13 + (size_t)i) % 26);
	buf[len - 1] = '\n';
	return len;
}

/* True if data is exactly one message made by make_msg; sets its key. */
static bool msg_valid(const char *data, size_t len, int *key)
{
	int p, t, i;
	size_t want;
	if (sscanf(data, "P%d T%d I%d L%zu\n", &p, &t, &i, &want) != 4)
		return false;
	if (want != len || want > 30000)
		return false;
	char expect[30000];
	make_msg(expect, p, t, i);
	if (memcmp(expect, data, len) != 0)
		return false;
	*key = (p * THREADS + t) * PER_THREAD + i;
	return true;
}

struct deliverer {
	struct mail_store *s;
	int p, t, errors;
};

static void *deliver_thread(void *arg)
{
	struct deliverer *d = arg;
	char *buf = malloc(30000);
	for (int i = 0; i < PER_THREAD && buf; i++) {
		size_t len = make_msg(buf, d->p, d->t, i);
		if (mail_deliver(d->s, "heidi", buf, len, NULL) != 0)
			d->errors++;
	}
	free(buf);
	return NULL;
}

static int deliver_process(int p)
{
	struct mail_store *s;
	if (mail_open(root, &s) < 0)
		return 1;
	pthread_t th[THREADS];
	struct deliverer d[THREADS];
	for (int t = 0; t < THREADS; t++) {
		d[t] = (struct deliverer){ s, p, t, 0 };
		if (pthread_create(&th[t], NULL, deliver_thread, &d[t]) != 0)
			return 1;
	}
	int errors = 0;
	for (int t = 0; t < THREADS; t++) {
		pthread_join(th[t], NULL);
		errors += d[t].errors;
	}
	mail_close(s);
	return errors ? 1 : 0;
}

static atomic_bool stop_reader;

/* Reads every file of new/ over and over: each must be a whole message. */
struct reader {
	long reads, bad;
};

static void *reader_thread(void *arg)
{
	struct reader *r = arg;
	char path[512];
	snprintf(path, sizeof path, "%s/heidi/new", root);
	while (!atomic_load(&stop_reader)) {
		DIR *d = opendir(path);
		if (!d)
			continue;   /* not created yet */
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (e->d_name[0] == '.')
				continue;
			int fd = openat(dirfd(d), e->d_name, O_RDONLY);
			if (fd < 0)
				continue;
			static __thread char buf[32768];
			ssize_t n = read(fd, buf, sizeof buf - 1);
			close(fd);
			int key;
			r->reads++;
			if (n < 0 || !msg_valid(buf, (size_t)n, &key))
				r->bad++;
		}
		closedir(d);
	}
	return NULL;
}

Test(mail, concurrent_deliveries)
{
	pthread_t reader;
	struct reader r = { 0, 0 };
	atomic_store(&stop_reader, false);
	cr_assert_eq(pthread_create(&reader, NULL, reader_thread, &r), 0);
	pid_t pids[PROCS];
	for (int p = 0; p < PROCS; p++) {
		pids[p] = fork();
		if (pids[p] == 0)
			_exit(deliver_process(p));
		cr_assert_geq(pids[p], 0);
	}
	for (int p = 0; p < PROCS; p++) {
		int st;
		cr_assert_eq(waitpid(pids[p], &st, 0), pids[p]);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "deliverer %d", p);
	}
	atomic_store(&stop_reader, true);
	pthread_join(reader, NULL);
	cr_assert_eq(r.bad, 0, "reader saw %ld partial messages", r.bad);
	cr_assert_gt(r.reads, 0, "the reader read nothing");

	struct mail_store *s = open_store();
	struct mail_list l;
	cr_assert_eq(mail_pickup(s, "heidi", &l), 0);
	cr_assert_eq(l.count, PROCS * THREADS * PER_THREAD);
	static bool seen[PROCS * THREADS * PER_THREAD];
	for (size_t i = 0; i < l.count; i++) {
		int key;
		cr_assert(msg_valid(l.msgs[i].data, l.msgs[i].size, &key));
		cr_assert_not(seen[key], "message %d twice", key);
		seen[key] = true;
		if (i > 0)
			cr_assert_lt(strcmp(l.msgs[i - 1].id, l.msgs[i].id), 0);
	}
	cr_assert_eq(count_dir("heidi", "tmp"), 0);
	mail_unlock(s, "heidi");
	mail_list_free(&l);
	mail_close(s);
}

/* The Mailboat loop: deliverers and a picker that deletes what it gets. */
struct picker {
	struct mail_store *s;
	atomic_bool *stop;
	long got, busy, errors;
	bool seen[THREADS * PER_THREAD];
};

static void pick_once(struct picker *pk)
{
	struct mail_list l;
	int rc = mail_pickup(pk->s, "heidi", &l);
	if (rc == -EBUSY) {
		pk->busy++;
		return;
	}
	if (rc < 0) {
		fprintf(stderr, "pickup: %s\n", strerror(-rc));
		pk->errors++;
		return;
	}
	for (size_t i = 0; i < l.count; i++) {
		int key = -1;
		bool valid = msg_valid(l.msgs[i].data, l.msgs[i].size, &key);
		int drc = valid && !pk->seen[key]
			? mail_delete(pk->s, "heidi", l.msgs[i].id) : 0;
		if (!valid || pk->seen[key] || drc != 0) {
			fprintf(stderr, "message %s: valid %d key %d delete %d\n",
				l.msgs[i].id, valid, key, drc);
			pk->errors++;
			continue;
		}
		pk->seen[key] = true;
		pk->got++;
	}
	if (mail_unlock(pk->s, "heidi") != 0)
		pk->errors++;
	mail_list_free(&l);
}

static void *picker_thread(void *arg)
{
	struct picker *pk = arg;
	while (!atomic_load(pk->stop))
		pick_once(pk);
	pick_once(pk);
	return NULL;
}

Test(mail, pickup_races_deliveries)
{
	struct mail_store *s = open_store();
	atomic_bool stop = false;
	struct picker *pk = calloc(1, sizeof *pk);
	pk->s = s;
	pk->stop = &stop;
	pthread_t ptid, th[THREADS];
	struct deliverer d[THREADS];
	cr_assert_eq(pthread_create(&ptid, NULL, picker_thread, pk), 0);
	for (int t = 0; t < THREADS; t++) {
		d[t] = (struct deliverer){ s, 0, t, 0 };
		cr_assert_eq(pthread_create(&th[t], NULL, deliver_thread, &d[t]), 0);
	}
	for (int t = 0; t < THREADS; t++) {
		pthread_join(th[t], NULL);
		cr_assert_eq(d[t].errors, 0);
	}
	atomic_store(&stop, true);
	pthread_join(ptid, NULL);
	cr_assert_eq(pk->errors, 0);
	cr_assert_eq(pk->got, THREADS * PER_THREAD);
	cr_assert_eq(count_dir("heidi", "new") + count_dir("heidi", "cur"), 0);
	free(pk);
	mail_close(s);
}

/* ---- recover ---- */

static void make_tmp(const char *name, time_t age)
{
	char path[512];
	snprintf(path, sizeof path, "%s/ivan/tmp/%s", root, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, "part", 4), 4);
	close(fd);
	if (age > 0) {
		struct timespec ts[2] = { { time(NULL) - age, 0 },
					  { time(NULL) - age, 0 } };
		cr_assert_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
	}
}

static pid_t dead_pid(void)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	cr_assert_geq(pid, 0);
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
	return pid;
}

Test(mail, recover)
{
	struct mail_store *s = open_store();
	char id[MAIL_ID_MAX], name[MAIL_ID_MAX + 64];
	deliver(s, "ivan", "kept\n", id);
	const char *host = strchr(strchr(id, 'Q'), '.') + 1;
	pid_t live = fork();   /* a live deliverer in another process */
	if (live == 0) {
		alarm(60);   /* never outlive a failed test for long */
		pause();
		_exit(0);
	}
	cr_assert_geq(live, 0);
	pid_t dead = dead_pid();
	long now = (long)time(NULL);

	make_tmp("1.M000001P1Q1.elsewhere", 37 * 3600);   /* old: removed */
	snprintf(name, sizeof name, "%ld.M000002P%dQ1.%s", now, (int)dead, host);
	make_tmp(name, 0);                                   /* dead: removed */
	snprintf(name, sizeof name, "%ld.M000003P%dQ2.%s", now, (int)getpid(), host);
	make_tmp(name, 0);                                   /* us: kept */
	char live_name[MAIL_ID_MAX + 64];
	snprintf(live_name, sizeof live_name, "%ld.M000004P%dQ3.%s", now, (int)live, host);
	make_tmp(live_name, 0);                              /* live: kept */
	snprintf(name, sizeof name, "%ld.M000005P%dQ4.otherhost", now, (int)dead);
	make_tmp(name, 0);                         /* another host's: kept */
	make_tmp("postfix.tmp.name", 35 * 3600);   /* not old enough: kept */

	cr_assert_eq(mail_recover(s), 2);
	cr_assert_eq(count_dir("ivan", "tmp"), 4);
	cr_assert(file_exists("ivan", "tmp", live_name));
	cr_assert_eq(count_dir("ivan", "new"), 1, "delivered mail untouched");
	kill(live, SIGKILL);
	waitpid(live, NULL, 0);
	cr_assert_eq(mail_recover(s), 1, "the live one once it died");
	cr_assert_not(file_exists("ivan", "tmp", live_name));
	mail_close(s);
}

/* ---- names ---- */

Test(mail, name_validation)
{
	char long_name[70];
	memset(long_name, 'a', 65);
	long_name[65] = '\0';
	const char *bad[] = { "../x", "a/b", "", ".hidden", "..", ".", long_name,
			      "a b", "a:b", "x\n", "é" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_not(mail_name_valid(bad[i]), "'%s' accepted", bad[i]);
	cr_assert_not(mail_name_valid(NULL));
	char max_name[MAIL_NAME_MAX + 1];
	memset(max_name, 'a', MAIL_NAME_MAX);
	max_name[MAIL_NAME_MAX] = '\0';
	const char *good[] = { "alice", "a", "A.b-c_9", "x.", max_name };
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		cr_assert(mail_name_valid(good[i]), "'%s' refused", good[i]);

	struct mail_store *s = open_store();
	struct mail_list l;
	char *buf;
	size_t len;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_assert_eq(mail_deliver(s, bad[i], "x", 1, NULL), -EINVAL);
		cr_assert_eq(mail_pickup(s, bad[i], &l), -EINVAL);
		cr_assert_eq(mail_list(s, bad[i], &l), -EINVAL);
		cr_assert_eq(mail_read(s, bad[i], "id", &buf, &len), -EINVAL);
		cr_assert_eq(mail_delete(s, bad[i], "id"), -EINVAL);
		cr_assert_eq(mail_unlock(s, bad[i]), -EINVAL);
	}
	DIR *d = opendir(root);
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		cr_assert(e->d_name[0] == '.', "created %s", e->d_name);
	closedir(d);
	mail_close(s);
}

/* ---- users ---- */

Test(mail, users_file)
{
	char path[512];
	snprintf(path, sizeof path, "%s/users", root);
	cr_assert_eq(mail_user_add(path, "alice", "secret"), 0);
	cr_assert_eq(mail_user_add(path, "bob", "hunter2"), 0);
	cr_assert_eq(mail_user_add(path, "../evil", "x"), -EINVAL);
	cr_assert_eq(mail_user_add(path, "carol", ""), -EINVAL);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);

	struct mail_users *u;
	cr_assert_eq(mail_users_load(path, &u), 0);
	cr_assert(mail_user_exists(u, "alice"));
	cr_assert_not(mail_user_exists(u, "carol"));
	cr_assert_not(mail_user_exists(u, "../alice"));
	cr_assert_eq(mail_user_check(u, "alice", "secret"), 0);
	cr_assert_eq(mail_user_check(u, "bob", "hunter2"), 0);
	cr_assert_eq(mail_user_check(u, "alice", "hunter2"), -EACCES);
	cr_assert_eq(mail_user_check(u, "alice", ""), -EACCES);
	cr_assert_eq(mail_user_check(u, "carol", "secret"), -EACCES);
	mail_users_free(u);

	cr_assert_eq(mail_user_add(path, "alice", "changed"), 0);
	cr_assert_eq(mail_users_load(path, &u), 0);
	cr_assert_eq(mail_user_check(u, "alice", "secret"), -EACCES);
	cr_assert_eq(mail_user_check(u, "alice", "changed"), 0);
	cr_assert_eq(mail_user_check(u, "bob", "hunter2"), 0);
	mail_users_free(u);

	FILE *f = fopen(path, "r");
	char line[512];
	int lines = 0;
	while (fgets(line, sizeof line, f)) {
		lines++;
		cr_assert(strstr(line, ":$y$") || strstr(line, ":$6$"), "%s", line);
	}
	fclose(f);
	cr_assert_eq(lines, 2);
}

Test(mail, users_file_malformed)
{
	char path[512];
	snprintf(path, sizeof path, "%s/users", root);
	struct mail_users *u;
	cr_assert_eq(mail_users_load(path, &u), -ENOENT);
	FILE *f = fopen(path, "w");
	fputs("# comment\n\nalice:$6$x$y\n", f);
	fclose(f);
	cr_assert_eq(mail_users_load(path, &u), 0);
	cr_assert(mail_user_exists(u, "alice"));
	mail_users_free(u);
	f = fopen(path, "a");
	fputs("../x:$6$x$y\n", f);
	fclose(f);
	cr_assert_eq(mail_users_load(path, &u), -EINVAL);
	f = fopen(path, "w");
	fputs("alice:$6$x$y\nalice:$6$x$z\n", f);
	fclose(f);
	cr_assert_eq(mail_users_load(path, &u), -EINVAL, "duplicate");
}
