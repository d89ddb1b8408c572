/*
 * cli.c - opening disks with clear errors, progress display and usage
 * errors for the subcommands (cli.h).
 */
#include "tools/cli.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockdev/disk/uring_disk.h"
#include "core/base/util.h"

/* ---- opening disks ------------------------------------------------------ */

/* The problems a user can fix get plain words; the rest keep the disk
 * layer's own message (it already names the path). */
static const char *open_problem(int rc, unsigned flags)
{
	bool ro = flags & URING_DISK_READONLY;
	switch (-rc) {
	case ENOENT: return "no such file or device";
	case ENOTDIR: return "no such file or device (a path component is not a directory)";
	case EROFS: return "not writable (read-only file system)";
	case EACCES:
	case EPERM: return ro ? "permission denied" : "not writable (permission denied)";
	case EBUSY: return "in use by another process (mounted or opened by catamaran)";
	}
	return NULL;
}

int cli_open_disk(const char *path, unsigned flags, struct bdev **out,
		  char *msg, size_t msglen)
{
	struct cat_error err = { 0 };
	int rc = uring_disk_open(path, flags, out, &err);
	if (rc == 0)
		return 0;
	const char *problem = open_problem(rc, flags);
	if (problem)
		snprintf(msg, msglen, "%s: %s", path, problem);
	else if (err.msg[0] && strstr(err.msg, path))
		snprintf(msg, msglen, "%s", err.msg);
	else
		snprintf(msg, msglen, "%s: %s", path, err.msg[0] ? err.msg : strerror(-rc));
	return rc;
}

/* Absolute path of a file that may not exist yet: its directory resolved,
 * its last component as given. */
static bool canonical_path(const char *path, char *out)
{
	char a[PATH_MAX], b[PATH_MAX], dir[PATH_MAX];
	if (snprintf(a, sizeof(a), "%s", path) >= (int)sizeof(a) ||
	    snprintf(b, sizeof(b), "%s", path) >= (int)sizeof(b))
		return false;
	if (!realpath(dirname(a), dir))
		return false;
	return snprintf(out, PATH_MAX, "%s/%s", dir, basename(b)) < PATH_MAX;
}

bool cli_same_disk(const char *a, const char *b)
{
	struct stat sa, sb;
	if (stat(a, &sa) == 0 && stat(b, &sb) == 0) {
		if (S_ISBLK(sa.st_mode) && S_ISBLK(sb.st_mode))
			return sa.st_rdev == sb.st_rdev;
		return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
	}
	char ca[PATH_MAX], cb[PATH_MAX];
	if (canonical_path(a, ca) && canonical_path(b, cb))
		return strcmp(ca, cb) == 0;
	return strcmp(a, b) == 0;
}

bool cli_refuse_same_disk(const char *cmd, const char *path1, const char *path2)
{
	if (!cli_same_disk(path1, path2))
		return false;
	if (strcmp(path1, path2) == 0)
		fprintf(stderr, "catamaran %s: %s: the same disk is given twice\n", cmd, path1);
	else
		fprintf(stderr, "catamaran %s: %s: is the same disk as %s\n", cmd, path2, path1);
	return true;
}

int cli_open_disks(const char *cmd, const char *path1, const char *path2,
		   unsigned flags, struct bdev *out[2])
{
	const char *paths[2] = { path1, path2 };
	out[0] = out[1] = NULL;
	if (cli_refuse_same_disk(cmd, path1, path2))
		return -EINVAL;
	for (int i = 0; i < 2; i++) {
		char msg[600];
		int rc = cli_open_disk(paths[i], flags, &out[i], msg, sizeof(msg));
		if (rc < 0) {
			fprintf(stderr, "catamaran %s: %s\n", cmd, msg);
			bdev_close(out[0]);
			out[0] = NULL;
			return rc;
		}
	}
	return 0;
}

int cli_open_mirror(const char *cmd, const char *path1, const char *path2,
		    const struct mirror_opts *opts, struct mirror **out)
{
	const char *paths[2] = { path1, path2 };
	struct bdev *legs[2] = { NULL, NULL };
	unsigned flags = opts->readonly ? URING_DISK_READONLY : 0;
	*out = NULL;
	if (cli_refuse_same_disk(cmd, path1, path2))
		return -EINVAL;

	int rc = 0, failed = -1;
	char msg[2][600];
	for (int i = 0; i < 2; i++) {
		int r = cli_open_disk(paths[i], flags, &legs[i], msg[i], sizeof(msg[i]));
		if (r < 0 && !opts->allow_degraded) {
			fprintf(stderr, "catamaran %s: %s\n", cmd, msg[i]);
			bdev_close(legs[0]);
			return r;
		}
		if (r < 0) {
			rc = r;
			failed = i;
		}
	}
	if (!legs[0] && !legs[1]) {
		fprintf(stderr, "catamaran %s: neither disk can be opened: %s; %s\n", cmd,
			msg[0], msg[1]);
		return rc;
	}
	if (failed >= 0) /* degraded start: say so, once */
		fprintf(stderr, "catamaran %s: %s (going on without it)\n", cmd, msg[failed]);

	struct cat_error err = { 0 };
	rc = mirror_open(legs, opts, out, &err);
	if (rc < 0) {
		if (err.msg[0])
			fprintf(stderr, "catamaran %s: %s\n", cmd, err.msg);
		else
			fprintf(stderr, "catamaran %s: %s, %s: %s\n", cmd, path1, path2,
				strerror(-rc));
	}
	return rc;
}

/* ---- usage errors ------------------------------------------------------- */

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "catamaran %s: %s (see 'catamaran %s --help')\n", cmd, msg, cmd);
	return 2;
}

int cli_bad_option(const char *cmd, int c, char **argv)
{
	/* A short option is in optopt; for a long one optind has moved past it. */
	char shortopt[3] = { '-', (char)optopt, '\0' };
	const char *opt = (optopt && optopt < 128 && c == '?') ? shortopt : argv[optind - 1];
	if (c == ':')
		return cli_usage_error(cmd, "option '%s' needs a value", opt);
	return cli_usage_error(cmd, "unknown option '%s'", opt);
}

/* ---- progress ----------------------------------------------------------- */

#define BAR_WIDTH 30

static struct {
	char phase[32];
	uint64_t start_ns, start_done; /* the rate counts from the first call */
	int last_decile;  /* plain mode: last 10% step printed */
	bool drawn;       /* tty mode: a bar is on the current line */
} prog;

static void progress_start(const char *phase, uint64_t done)
{
	cli_progress_end();
	snprintf(prog.phase, sizeof(prog.phase), "%s", phase);
	prog.start_ns = now_ns();
	prog.start_done = done;
	prog.last_decile = -1;
}

/* Resync counts chunks, scrub counts 4 KiB blocks (shown as MiB/s). */
static void format_rate(const char *phase, uint64_t done, double secs, char *buf, size_t len)
{
	if (secs < 0.05)
		snprintf(buf, len, "-");
	else if (strcmp(phase, "resync") == 0)
		snprintf(buf, len, "%.0f chunks/s", (double)done / secs);
	else if (strcmp(phase, "inodes") == 0)   /* fsck */
		snprintf(buf, len, "%.0f inodes/s", (double)done / secs);
	else
		snprintf(buf, len, "%.1f MiB/s", (double)done * BDEV_BLOCK_SIZE / secs / 1048576.0);
}

void cli_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
	(void)ctx;
	if (total == 0)
		return; /* nothing to do: nothing to show */
	if (strcmp(prog.phase, phase) != 0)
		progress_start(phase, done);
	double pct = total ? 100.0 * (double)done / (double)total : 100.0;
	if (pct > 100.0)
		pct = 100.0;

	if (!isatty(STDERR_FILENO)) {
		int decile = (int)(pct / 10.0);
		if (decile > prog.last_decile) {
			prog.last_decile = decile;
			fprintf(stderr, "catamaran: %s %d%% (%llu/%llu)\n", phase, decile * 10,
				(unsigned long long)done, (unsigned long long)total);
		}
		return;
	}
	char bar[BAR_WIDTH + 1], rate[48];
	int filled = (int)(pct * BAR_WIDTH / 100.0);
	for (int i = 0; i < BAR_WIDTH; i++)
		bar[i] = i < filled ? '#' : '.';
	bar[BAR_WIDTH] = '\0';
	format_rate(phase, done - prog.start_done, (double)(now_ns() - prog.start_ns) / 1e9,
		    rate, sizeof(rate));
	/* \033[K clears what a longer previous line left behind. */
	fprintf(stderr, "\r%-7s [%s] %5.1f%%  %llu/%llu  %s\033[K", phase, bar, pct,
		(unsigned long long)done, (unsigned long long)total, rate);
	fflush(stderr);
	prog.drawn = true;
}

void cli_progress_end(void)
{
	if (prog.drawn)
		fputc('\n', stderr);
	prog.drawn = false;
	prog.phase[0] = '\0';
}

void cli_progress_pause(void)
{
	if (prog.drawn)
		fputs("\r\033[K", stderr);
	prog.drawn = false;
}

void cli_json_string(const char *s)
{
	putchar('"');
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}
