/*
 * cmd_mount.c - `catamaran mount`: assemble the mirror, recover, and serve
 * the filesystem through FUSE (fuse/daemon.h), in the background unless -f.
 *
 * Backgrounding happens first, before any thread exists: the child does all
 * the work and tells the waiting parent through a pipe when the volume is
 * mounted (or why it failed), so `catamaran mount` returns only then, with
 * the right exit status - as fuse_daemonize() does, but earlier.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "core/base/error.h"
#include "core/base/log.h"
#include "core/base/util.h"
#include "blockdev/testdev/crash_disk.h"
#include "fuse/daemon.h"
#include "tools/cli.h"
#include "tools/commands.h"

static const char mount_usage[] =
	"Usage: catamaran mount [-f] [-o OPTIONS] DISK1 DISK2 MOUNTPOINT\n"
	"\n"
	"Assemble the mirror of DISK1 and DISK2, recover (journal replay, orphan\n"
	"cleanup) and serve the filesystem at MOUNTPOINT; stale chunks of the\n"
	"mirror are resynced in the background meanwhile ('catamaran status\n"
	"MOUNTPOINT' shows the progress). Runs in the background unless -f;\n"
	"returns once mounted.\n"
	"Unmount with 'umount MOUNTPOINT' (or fusermount3 -u, or SIGTERM).\n"
	"\n"
	"Options:\n"
	"  -f, --foreground      stay in the foreground, log to stderr\n"
	"  -o OPT[,OPT...]       mount options:\n"
	"       allow_other          let other users in (permissions still apply)\n"
	"       default_permissions  kernel permission checks (the default)\n"
	"       nodefault_permissions  no permission checks at all\n"
	"       ro                   read-only\n"
	"       sync                 every operation durable (flushed) on return\n"
	"       cache=SIZE           block cache bound (default 64M)\n"
	"       entry_timeout=S, attr_timeout=S   kernel cache (default 1 s)\n"
	"       noreaddirplus        plain readdir only\n"
	"       nodircache           the kernel keeps no directory listings\n"
	"                            (by default it does, until the directory\n"
	"                            changes)\n"
	"       max_write=SIZE       largest write request (default 1M)\n"
	"       resync_limit=SIZE    speed limit per second of the resync after\n"
	"                            mount (e.g. 50M; default: none)\n"
	"       crashtest=SEED       TESTS ONLY: each disk under a simulated volatile\n"
	"                            write cache; 'power-cut' on the control socket\n"
	"                            then loses unflushed writes and kills the daemon\n"
	"                            (catamaran torture --scenario power)\n"
	"  -h, --help            show this help\n"
	"Exit status: 0 mounted (and, with -f, unmounted cleanly), 2 error.\n";

struct mount_args {
	bool foreground;
	bool crashtest;
	uint64_t crash_seed;
	struct cat_mount_opts o;
	const char *disk[2];
};

static int parse_double(const char *v, double *out)
{
	char *end;
	errno = 0;
	double d = strtod(v, &end);
	if (errno || *end || d < 0 || d > 86400)
		return -1;
	*out = d;
	return 0;
}

static int parse_u64(const char *v, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (errno || end == v || *end)
		return -1;
	*out = n;
	return 0;
}

/* One -o option; 0 or a usage error. */
static int parse_one(struct mount_args *a, char *opt)
{
	char *val = strchr(opt, '=');
	uint64_t size;
	if (val)
		*val++ = '\0';
	struct cat_mount_opts *o = &a->o;
	if (!strcmp(opt, "allow_other") && !val)
		o->allow_other = true;
	else if (!strcmp(opt, "default_permissions") && !val)
		o->default_permissions = true;
	else if (!strcmp(opt, "nodefault_permissions") && !val)
		o->default_permissions = false;
	else if (!strcmp(opt, "ro") && !val)
		o->read_only = true;
	else if (!strcmp(opt, "rw") && !val)
		o->read_only = false;
	else if (!strcmp(opt, "sync") && !val)
		o->sync = true;
	else if (!strcmp(opt, "noreaddirplus") && !val)
		o->fuse.readdirplus = false;
	else if (!strcmp(opt, "nodircache") && !val)
		o->fuse.dir_cache = false;
	else if (!strcmp(opt, "cache") && val && parse_size(val, &size) == 0 && size >= (1u << 20))
		o->cache_bytes = (size_t)size;
	else if (!strcmp(opt, "max_write") && val && parse_size(val, &size) == 0 &&
		 size >= 4096 && size <= (1u << 20))
		o->fuse.max_write = (unsigned)size;
	else if (!strcmp(opt, "resync_limit") && val && parse_size(val, &size) == 0)
		o->resync_limit = size;
	else if (!strcmp(opt, "crashtest") && val && parse_u64(val, &a->crash_seed) == 0)
		a->crashtest = true;
	else if (!strcmp(opt, "entry_timeout") && val && !parse_double(val, &o->fuse.entry_timeout))
		;
	else if (!strcmp(opt, "attr_timeout") && val && !parse_double(val, &o->fuse.attr_timeout))
		;
	else if (!strcmp(opt, "dev") || !strcmp(opt, "suid") || !strcmp(opt, "nodev") ||
		 !strcmp(opt, "nosuid") || !strcmp(opt, "exec") || !strcmp(opt, "noexec") ||
		 !strcmp(opt, "auto") || !strcmp(opt, "noauto") || !strcmp(opt, "user") ||
		 !strcmp(opt, "nouser") || !strcmp(opt, "_netdev") || !strcmp(opt, "defaults") ||
		 !strcmp(opt, "nofail"))
		;  /* generic mount(8)/fstab options: nothing for us to do */
	else
		return cli_usage_error("mount", "-o: unknown or malformed option '%s%s%s'", opt,
				       val ? "=" : "", val ? val : "");
	return 0;
}

static int parse_options(struct mount_args *a, const char *list)
{
	char *copy = strdup(list), *save = NULL;
	int r = copy ? 0 : 2;
	for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t && !r;
	     t = strtok_r(NULL, ",", &save))
		r = parse_one(a, t);
	free(copy);
	return r;
}

static int parse_args(int argc, char **argv, struct mount_args *a)
{
	static const struct option longopts[] = {
		{ "foreground", no_argument, NULL, 'f' },
		{ "options", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	a->o.default_permissions = true;
	a->o.fuse = (struct cat_fuse_config){ .entry_timeout = 1.0, .attr_timeout = 1.0,
					      .readdirplus = true, .dir_cache = true,
					      .max_write = 1u << 20 };
	int c, r;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":fo:h", longopts, NULL)) != -1) {
		if (c == 'f')
			a->foreground = true;
		else if (c == 'o' && (r = parse_options(a, optarg)))
			return r;
		else if (c == 'h')
			return fputs(mount_usage, stdout), -1;
		else if (c != 'o')
			return cli_bad_option("mount", c, argv);
	}
	if (argc - optind != 3)
		return cli_usage_error("mount", "needs DISK1 DISK2 MOUNTPOINT");
	a->disk[0] = argv[optind];
	a->disk[1] = argv[optind + 1];
	a->o.mountpoint = argv[optind + 2];
	return 0;
}

static int check_mountpoint(const char *mp)
{
	struct stat st;
	if (cat_clean_dead_mount(mp) < 0 || stat(mp, &st) < 0) {
		fprintf(stderr, "catamaran mount: %s: %s\n", mp, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "catamaran mount: %s: not a directory\n", mp);
		return -1;
	}
	return 0;
}

/* ---- backgrounding ---- */

static int ready_fd = -1;

static void syslog_sink(enum cat_log_level level, const char *msg)
{
	static const int prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };
	syslog(prio[level], "%s", msg);
}

/* Mounted: release the waiting parent and leave the terminal. */
static void on_ready(void *arg)
{
	(void)arg;
	if (ready_fd < 0)
		return;
	if (write(ready_fd, "", 1) < 0)
		return;
	close(ready_fd);
	ready_fd = -1;
	int null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		if (null > 2)
			close(null);
	}
	openlog("catamaran", LOG_PID, LOG_DAEMON);
	cat_log_set_sink(syslog_sink, CAT_LOG_INFO);
}

/* In the parent: wait for the child's word. 0 mounted, 2 failed. */
static int wait_for_child(int fd, pid_t pid)
{
	char buf[1];
	ssize_t n = read(fd, buf, 1);
	close(fd);
	if (n == 1)
		return 0;
	int status;
	waitpid(pid, &status, 0);   /* it printed why on the shared stderr */
	return 2;
}

static int go_background(void)
{
	int p[2];
	if (pipe(p) < 0) {
		perror("catamaran mount: pipe");
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("catamaran mount: fork");
		return -1;
	}
	if (pid > 0) {
		close(p[1]);
		exit(wait_for_child(p[0], pid));
	}
	close(p[0]);
	ready_fd = p[1];
	setsid();
	return 0;
}

/* ---- -o crashtest=SEED (tests only) ----
 * Each disk sits under a crash disk (blockdev/testdev/crash_disk.h): a
 * volatile write cache that keeps what was not flushed in memory. The
 * control socket's "power-cut" then lets a random part of the unflushed
 * blocks of each disk reach it, independently, and kills the process: the
 * disks are left as a power failure would leave them. A clean unmount
 * writes the caches back through mirror_close (which closes the crash
 * disks); the backing disks under them are closed after it. */
static struct {
	struct crash_clock clock;
	struct bdev *raw[2];       /* the real disks, ours to close */
	struct bdev *cached[2];    /* the mirror's legs, closed by it */
} crashtest;

static void close_crashtest_disks(void)
{
	for (int i = 0; i < 2; i++) {
		if (crashtest.raw[i])
			bdev_close(crashtest.raw[i]);
		crashtest.raw[i] = NULL;
	}
}

static void crashtest_power_cut(void *arg)
{
	(void)arg;
	crash_clock_arm(&crashtest.clock, 0);
	for (int i = 0; i < 2; i++)
		crash_disk_crash(crashtest.cached[i]);
	_exit(137);      /* as kill -9 would: nothing else runs */
}

static int open_crashtest_mirror(struct mount_args *a, const struct mirror_opts *mo,
				 struct mirror **m)
{
	int r = cli_open_disks("mount", a->disk[0], a->disk[1], 0, crashtest.raw);
	if (r < 0)
		return r;
	crash_clock_init(&crashtest.clock);
	for (int i = 0; i < 2; i++) {
		crashtest.cached[i] = crash_disk_create(crashtest.raw[i], &crashtest.clock,
							a->crash_seed * 2 + (uint64_t)i, 50);
		if (!crashtest.cached[i]) {
			fprintf(stderr, "catamaran mount: out of memory\n");
			if (i == 1)
				bdev_close(crashtest.cached[0]);
			close_crashtest_disks();
			return -ENOMEM;
		}
	}
	struct cat_error err = { 0 };
	r = mirror_open(crashtest.cached, mo, m, &err);   /* owns the legs now */
	if (r < 0) {
		fprintf(stderr, "catamaran mount: %s\n", err.msg[0] ? err.msg : strerror(-r));
		close_crashtest_disks();
		return r;
	}
	a->o.test = (struct control_test_hooks){ .power_cut = crashtest_power_cut };
	cat_log(CAT_LOG_WARN, "mounted with -o crashtest: simulated write caches, for tests only");
	return 0;
}

static char fsname[600];

int cmd_mount(int argc, char **argv)
{
	struct mount_args a = { 0 };
	int r = parse_args(argc, argv, &a);
	if (r)
		return r < 0 ? 0 : r;
	if (cli_refuse_same_disk("mount", a.disk[0], a.disk[1]) || check_mountpoint(a.o.mountpoint))
		return 2;
	if (!a.foreground && go_background() < 0)
		return 2;
	struct mirror *m;
	struct mirror_opts mo = { .readonly = false };
	if (a.crashtest ? open_crashtest_mirror(&a, &mo, &m) < 0
			: cli_open_mirror("mount", a.disk[0], a.disk[1], &mo, &m) < 0)
		return 2;
	char *abs = realpath(a.disk[0], NULL);
	snprintf(fsname, sizeof(fsname), "catamaran:%s", abs ? abs : a.disk[0]);
	free(abs);
	a.o.fsname = fsname;
	a.o.ready = on_ready;
	struct cat_error err = { 0 };
	r = cat_daemon_serve(m, &a.o, &err);
	close_crashtest_disks();   /* none without -o crashtest */
	if (r) {
		cat_log(CAT_LOG_ERROR, "mount %s: %s", a.o.mountpoint, err.msg);
		if (ready_fd >= 0)
			fprintf(stderr, "catamaran mount: %s\n", err.msg);
		return 2;
	}
	return 0;
}

/* mount(8) runs "mount.catamaran SOURCE MOUNTPOINT [-sfnv] [-o OPTS]" for
 * an fstab line such as
 *     /srv/mail/disk1.img:/srv/mail/disk2.img  /var/mail  catamaran  allow_other  0 0
 * SOURCE names both disks, separated by ':'. */
int cmd_mount_helper(int argc, char **argv)
{
	if (argc < 3 || !strchr(argv[1], ':')) {
		fprintf(stderr, "usage: mount.catamaran DISK1:DISK2 MOUNTPOINT [-o OPTIONS]\n");
		return 2;
	}
	char *source = strdup(argv[1]);
	char *colon = source ? strchr(source, ':') : NULL;
	if (!colon)
		return 2;
	*colon = '\0';
	char *args[8];
	int n = 0;
	char mount_word[] = "mount";
	args[n++] = mount_word;
	for (int i = 3; i < argc && n < 5; i++)
		if (!strcmp(argv[i], "-o") && i + 1 < argc) {
			args[n++] = argv[i];
			args[n++] = argv[++i];
		}                /* -s, -f, -n, -v from mount(8): nothing to do */
	args[n++] = source;
	args[n++] = colon + 1;
	args[n++] = argv[2];
	args[n] = NULL;
	optind = 1;
	int r = cmd_mount(n, args);
	free(source);
	return r;
}
