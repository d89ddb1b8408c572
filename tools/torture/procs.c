/*
 * procs.c - the processes and disks of a torture run (torture.h).
 *
 * The daemon runs as `catamaran mount -f` in a child process, so its pid is
 * known and kill -9 hits exactly it; it is "up" when the mountpoint answers
 * statfs as a FUSE filesystem (its control socket is up before that). The
 * mail server is `catamaran mail serve` in another child; it is up when its
 * SMTP port greets. Every child's output goes to WORKDIR/torture.log, and so
 * do our own notes, so a failed cycle can be read there.
 *
 * Disks are loop devices over WORKDIR/disk*.img when losetup works (a real
 * pull: the file is truncated to nothing and `losetup -c` makes the kernel
 * see it, so every I/O fails), plain files otherwise (pulls then go through
 * the control channel only).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fuse/control.h"
#include "tools/torture/torture.h"

#define FUSE_SUPER_MAGIC 0x65735546

double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void tlog(struct volume *v, const char *fmt, ...)
{
	FILE *f = fopen(v->log, "a");
	if (!f)
		return;
	time_t t = time(NULL);
	char when[32];
	strftime(when, sizeof(when), "%H:%M:%S", localtime(&t));
	fprintf(f, "[%s torture] ", when);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fclose(f);
}

/* Start argv with stdout/stderr appended to the log (stdin from input if
 * not NULL, else /dev/null). */
static pid_t spawn(struct volume *v, char *const argv[], const char *input)
{
	int in[2] = { -1, -1 };
	if (input && pipe(in) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		int log = open(v->log, O_WRONLY | O_APPEND | O_CREAT, 0644);
		int null = open("/dev/null", O_RDONLY);
		dup2(input ? in[0] : null, 0);
		dup2(log, 1);
		dup2(log, 2);
		if (input)
			close(in[1]);
		execv(argv[0], argv);
		_exit(127);
	}
	if (input) {
		close(in[0]);
		if (pid > 0 && write(in[1], input, strlen(input)) < 0)
			pid = -1;
		close(in[1]);
	}
	return pid;
}

/* Run argv to the end: its exit status, or -1. */
static int run(struct volume *v, char *const argv[], const char *input)
{
	pid_t pid = spawn(v, argv, input);
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* First line of a command's stdout (losetup --show). */
static int run_read(const char *cmd, char *out, size_t len)
{
	FILE *p = popen(cmd, "r");
	if (!p)
		return -errno;
	out[0] = '\0';
	if (!fgets(out, (int)len, p))
		out[0] = '\0';
	int st = pclose(p);
	out[strcspn(out, "\n")] = '\0';
	return st == 0 && out[0] ? 0 : -EIO;
}

static int attach_loop(const char *file, char *dev, size_t len)
{
	char cmd[800];
	snprintf(cmd, sizeof(cmd), "losetup -f --show '%s' 2>/dev/null", file);
	return run_read(cmd, dev, len);
}

static void detach_loop(struct volume *v, const char *dev)
{
	char *argv[] = { "/sbin/losetup", "-d", (char *)dev, NULL };
	run(v, argv, NULL);
}

static int make_file(const char *path, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int r = ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
	close(fd);
	return r;
}

static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	close(fd);
	return ntohs(a.sin_port);
}

static int format_disks(struct volume *v)
{
	char size[32];
	snprintf(size, sizeof(size), "%llu", (unsigned long long)v->size);
	/* 4 MiB bitmap chunks: the resync after a kill then has whole
	 * megabytes to compare, long enough for pull-during-resync to strike
	 * while it runs. */
	char *argv[] = { (char *)v->self, "format", "--force", "--size", size, "--chunk", "4M",
			 v->disk[0], v->disk[1], NULL };
	return run(v, argv, NULL) == 0 ? 0 : -EIO;
}

/* WORKDIR/disks names the current backing files (replacements change
 * them), so a later run reuses the right two. */
static void save_disk_names(struct volume *v)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/disks", v->workdir);
	FILE *f = fopen(path, "w");
	if (f) {
		fprintf(f, "%s\n%s\n", v->file[0], v->file[1]);
		fclose(f);
	}
}

static void load_disk_names(struct volume *v)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/disks", v->workdir);
	FILE *f = fopen(path, "r");
	for (int i = 0; i < 2; i++) {
		snprintf(v->file[i], sizeof(v->file[i]), "%s/disk%d.img", v->workdir, i + 1);
		char line[600];
		if (f && fgets(line, sizeof(line), f) && line[0] == '/') {
			line[strcspn(line, "\n")] = '\0';
			snprintf(v->file[i], sizeof(v->file[i]), "%s", line);
		}
	}
	if (f)
		fclose(f);
}

int volume_setup(struct volume *v, const char *workdir, uint64_t size, bool want_loop)
{
	snprintf(v->workdir, sizeof(v->workdir), "%s", workdir);
	snprintf(v->mnt, sizeof(v->mnt), "%s/mnt", workdir);
	snprintf(v->users, sizeof(v->users), "%s/users", workdir);
	snprintf(v->log, sizeof(v->log), "%s/torture.log", workdir);
	snprintf(v->root, sizeof(v->root), "%s/mail", v->mnt);
	v->size = size;
	if ((mkdir(workdir, 0700) < 0 && errno != EEXIST) ||
	    (mkdir(v->mnt, 0700) < 0 && errno != EEXIST))
		return -errno;
	umount2(v->mnt, MNT_DETACH);      /* a dead mount of an earlier run */
	bool reuse = true;
	load_disk_names(v);
	for (int i = 0; i < 2; i++) {
		struct stat st;
		if (stat(v->file[i], &st) < 0 || (uint64_t)st.st_size != size) {
			reuse = false;
			int r = make_file(v->file[i], size);
			if (r)
				return r;
		}
		v->loop = want_loop && (i == 0 || v->loop) &&
			  attach_loop(v->file[i], v->disk[i], sizeof(v->disk[i])) == 0;
		if (!v->loop)
			snprintf(v->disk[i], sizeof(v->disk[i]), "%s", v->file[i]);
	}
	if (want_loop && !v->loop && v->disk[0][0] == '/' && strncmp(v->disk[0], "/dev/", 5) == 0) {
		detach_loop(v, v->disk[0]);   /* the second attach failed */
		snprintf(v->disk[0], sizeof(v->disk[0]), "%s", v->file[0]);
	}
	v->smtp_port = free_port();
	v->pop3_port = free_port();
	tlog(v, "setup: %s disks %s %s (%s)", reuse ? "reusing" : "new", v->disk[0], v->disk[1],
	     v->loop ? "loop devices" : "files");
	if (!reuse && format_disks(v))
		return -EIO;
	save_disk_names(v);
	return 0;
}

void volume_teardown(struct volume *v)
{
	if (v->mailer > 0)
		volume_mailer_kill(v, SIGKILL);
	if (v->daemon > 0)
		volume_unmount(v);
	for (int i = 0; i < 2 && v->loop; i++)
		detach_loop(v, v->disk[i]);
}

static bool is_mounted(const char *mnt)
{
	struct statfs sf;
	return statfs(mnt, &sf) == 0 && sf.f_type == FUSE_SUPER_MAGIC;
}

int volume_mount(struct volume *v)
{
	char opts[128];
	snprintf(opts, sizeof(opts), "resync_limit=%s", v->resync_limit ? v->resync_limit : "0");
	if (v->crash_seed)
		snprintf(opts + strlen(opts), sizeof(opts) - strlen(opts), ",crashtest=%llu",
			 (unsigned long long)v->crash_seed);
	char *argv[] = { (char *)v->self, "mount", "-f", "-o", opts, v->disk[0], v->disk[1],
			 v->mnt, NULL };
	v->daemon = spawn(v, argv, NULL);
	if (v->daemon < 0)
		return -errno;
	for (int i = 0; i < 6000; i++) {
		if (is_mounted(v->mnt))
			return 0;
		int st;
		if (waitpid(v->daemon, &st, WNOHANG) == v->daemon) {
			tlog(v, "mount failed (exit %d)", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
			v->daemon = 0;
			return -EIO;
		}
		usleep(10000);
	}
	return -ETIMEDOUT;
}

static bool smtp_greets(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char buf[4];
	bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
		  recv(fd, buf, 3, MSG_WAITALL) == 3 && !memcmp(buf, "220", 3);
	if (fd >= 0)
		close(fd);
	return ok;
}

int volume_mailer_start(struct volume *v)
{
	char smtp[32], pop3[32];
	snprintf(smtp, sizeof(smtp), "127.0.0.1:%u", v->smtp_port);
	snprintf(pop3, sizeof(pop3), "127.0.0.1:%u", v->pop3_port);
	char *argv[] = { (char *)v->self, "mail", "serve", "--root", v->root, "--users",
			 v->users, "--smtp", smtp, "--pop3", pop3, NULL };
	v->mailer = spawn(v, argv, NULL);
	if (v->mailer < 0)
		return -errno;
	for (int i = 0; i < 3000; i++) {
		if (smtp_greets(v->smtp_port))
			return 0;
		int st;
		if (waitpid(v->mailer, &st, WNOHANG) == v->mailer) {
			tlog(v, "mail serve failed (exit %d)", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
			v->mailer = 0;
			return -EIO;
		}
		usleep(10000);
	}
	return -ETIMEDOUT;
}

void volume_mailer_kill(struct volume *v, int sig)
{
	if (v->mailer <= 0)
		return;
	kill(v->mailer, sig);
	waitpid(v->mailer, NULL, 0);
	v->mailer = 0;
}

void volume_daemon_kill(struct volume *v)
{
	if (v->daemon <= 0)
		return;
	kill(v->daemon, SIGKILL);
	waitpid(v->daemon, NULL, 0);
	v->daemon = 0;
}

int volume_unmount(struct volume *v)
{
	volume_mailer_kill(v, SIGTERM);
	int r = -EBUSY;
	for (int i = 0; i < 500 && r == -EBUSY; i++) {
		r = umount2(v->mnt, 0) == 0 ? 0 : -errno;
		if (r == -EBUSY)
			usleep(20000);
	}
	int st = 0;
	if (v->daemon > 0 && waitpid(v->daemon, &st, 0) == v->daemon && !r)
		r = WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
	v->daemon = 0;
	if (r)
		tlog(v, "unmount failed: %s", strerror(-r));
	return r;
}

int volume_fsck(struct volume *v)
{
	char *argv[] = { (char *)v->self, "fsck", v->disk[0], v->disk[1], NULL };
	return run(v, argv, NULL) == 0 ? 0 : 1;
}

int volume_check(struct volume *v)
{
	char *argv[] = { (char *)v->self, "check", v->disk[0], v->disk[1], NULL };
	return run(v, argv, NULL) == 0 ? 0 : 1;
}

int volume_adduser(struct volume *v, const char *name)
{
	char *argv[] = { (char *)v->self, "mail", "adduser", "--root", v->root, "--users",
			 v->users, (char *)name, NULL };
	return run(v, argv, TORTURE_PASSWORD "\n") == 0 ? 0 : -EIO;
}

int volume_control(struct volume *v, const char *request, char *reply, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int r = control_socket_path(v->mnt, sa.sun_path, sizeof(sa.sun_path));
	int fd = r ? -1 : socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = r ? r : -errno;
		if (fd >= 0)
			close(fd);
		return r;
	}
	char line[64 * 1024];
	size_t n = (size_t)snprintf(line, sizeof(line), "%s\n", request);
	if (write(fd, line, n) != (ssize_t)n) {
		close(fd);
		return -EPIPE;
	}
	size_t got = 0;
	ssize_t k;
	while (got + 1 < sizeof(line) && (k = read(fd, line + got, sizeof(line) - 1 - got)) > 0)
		got += (size_t)k;
	close(fd);
	line[got] = '\0';
	tlog(v, "control '%s':\n%s", request, line);
	if (reply)
		snprintf(reply, len, "%s", line);
	char *last = got ? line + got - 1 : line;
	while (last > line && last[-1] != '\n')
		last--;
	if (!strncmp(last, "OK", 2))
		return 0;
	if (!strncmp(last, "ERR ", 4))
		return -abs(atoi(last + 4)) ? -abs(atoi(last + 4)) : -EIO;
	return -EPIPE;
}

static int leg_state(struct volume *v, int leg, char *state, size_t len)
{
	char reply[8192], key[32];
	int r = volume_control(v, "status --json", reply, sizeof(reply));
	if (r)
		return r;
	snprintf(key, sizeof(key), "\"disk%d\"", leg + 1);
	char *p = strstr(reply, key);
	p = p ? strstr(p, "\"state\": \"") : NULL;
	if (!p)
		return -EPROTO;
	p += 10;
	snprintf(state, len, "%.*s", (int)strcspn(p, "\""), p);
	return 0;
}

/* Truncate the loop device's file and make the kernel see it (losetup -c):
 * from then on every I/O fails, as with a disk pulled out. Between the two
 * steps a loop device would read zeros past the end of its file without an
 * error - a silent corruption no real pull causes - so the daemon is held
 * (SIGSTOP) for that instant, after its I/O in flight has drained. */
static int pull_loop(struct volume *v, int leg)
{
	int fd = open(v->disk[leg], O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (v->daemon > 0) {
		kill(v->daemon, SIGSTOP);
		usleep(50000);
	}
	int r = truncate(v->file[leg], 0) < 0 ? -errno : 0;
	if (!r && ioctl(fd, LOOP_SET_CAPACITY, 0) < 0)
		r = -errno;
	if (v->daemon > 0)
		kill(v->daemon, SIGCONT);
	close(fd);
	return r;
}

int volume_pull(struct volume *v, int leg, bool real)
{
	if (!real || !v->loop) {
		char req[32];
		snprintf(req, sizeof(req), "disk fail %d", leg + 1);
		return volume_control(v, req, NULL, 0);
	}
	tlog(v, "pulling disk %d: truncate %s, losetup -c %s", leg + 1, v->file[leg], v->disk[leg]);
	int r = pull_loop(v, leg);
	if (r)
		return r;
	/* The mirror fails the disk at its next I/O error; the load writes. */
	char state[64] = "";
	for (int i = 0; i < 1000; i++) {
		if (leg_state(v, leg, state, sizeof(state)) == 0 && strcmp(state, "in-sync") &&
		    strcmp(state, "rebuilding"))
			return 0;
		usleep(10000);
	}
	tlog(v, "disk %d still '%s' 10 s after the pull", leg + 1, state);
	return -ETIMEDOUT;
}

int volume_replace(struct volume *v, int leg)
{
	char file[600], disk[600], req[700];
	/* unique across runs: a later run must not reuse a disk in service */
	snprintf(file, sizeof(file), "%s/disk%d-%ld-r%u.img", v->workdir, leg + 1, (long)getpid(),
		 ++v->generation);
	int r = make_file(file, v->size);
	if (r)
		return r;
	snprintf(disk, sizeof(disk), "%s", file);
	if (v->loop && attach_loop(file, disk, sizeof(disk)))
		return -EIO;
	snprintf(req, sizeof(req), "disk replace %d %s", leg + 1, disk);
	r = -EBUSY;
	for (int i = 0; i < 600 && r == -EBUSY; i++)   /* a resync may still run */
		if ((r = volume_control(v, req, NULL, 0)) == -EBUSY)
			usleep(100000);
	if (r) {
		if (v->loop)
			detach_loop(v, disk);
		unlink(file);
		return r;
	}
	if (v->loop)
		detach_loop(v, v->disk[leg]);
	unlink(v->file[leg]);
	snprintf(v->disk[leg], sizeof(v->disk[leg]), "%s", disk);
	snprintf(v->file[leg], sizeof(v->file[leg]), "%s", file);
	save_disk_names(v);
	return 0;
}

long volume_stale_chunks(struct volume *v, int *authoritative)
{
	char reply[8192];
	int r = volume_control(v, "status --json", reply, sizeof(reply));
	if (r)
		return r;
	char *s = strstr(reply, "\"stale_chunks\": ");
	char *a = strstr(reply, "\"authoritative\": ");
	if (!s || !a)
		return -EPROTO;
	if (authoritative)
		*authoritative = atoi(a + 17) - 1;
	return atol(s + 16);
}
