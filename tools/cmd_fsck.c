/*
 * cmd_fsck.c - `catamaran fsck`: check (and with --repair fix) the
 * filesystem on a mirror, offline (core/fs/fsck.h does the work).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/error.h"
#include "core/fs/fsck.h"
#include "tools/cli.h"
#include "tools/commands.h"

#define FSCK_EXIT_USAGE 16

static const char fsck_usage[] =
	"Usage: catamaran fsck [--repair] [--json] DISK1 DISK2\n"
	"\n"
	"Check the filesystem on the mirror of DISK1 and DISK2 while nothing has it\n"
	"mounted: superblock, journal, every inode reachable from the root and the\n"
	"orphan directory, block maps, directory structure and entries, link counts,\n"
	"orphans and the allocation bitmaps. A journal holding committed\n"
	"transactions is replayed first (as a mount would); apart from that nothing\n"
	"is written without --repair.\n"
	"Each problem is printed on one line, then a summary.\n"
	"\n"
	"Options:\n"
	"  -r, --repair   fix what can be fixed: bitmaps rebuilt, link counts set, bad\n"
	"                 entries removed, damaged directories rebuilt, bad pointers cut,\n"
	"                 inodes in no directory moved to /lost+found as #INODE,\n"
	"                 unlinked orphans reclaimed; then check again\n"
	"  -j, --json     print one JSON object instead (fields in tools/README.md)\n"
	"  -h, --help     show this help\n"
	"\n"
	"Exit status (as e2fsck): 0 no problem, 1 problems found and all fixed,\n"
	"4 problems left, 8 operational error (disk unusable, I/O error),\n"
	"16 bad usage.\n";

struct fsck_args {
	bool repair, json;
	const char *path[2];
};

/* Problems seen, printed at once (text) or kept for the JSON object. */
struct problems {
	bool json;
	char **msg;
	size_t n, cap;
};

static void on_problem(void *arg, const char *msg)
{
	struct problems *p = arg;
	if (!p->json) {
		cli_progress_pause();
		printf("%s\n", msg);
		fflush(stdout);
		return;
	}
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 64;
		char **m = realloc(p->msg, cap * sizeof(*m));
		if (!m)
			return;
		p->msg = m;
		p->cap = cap;
	}
	if ((p->msg[p->n] = strdup(msg)))
		p->n++;
}

static void on_progress(void *arg, const char *phase, uint64_t done, uint64_t total)
{
	const struct problems *p = arg;
	if (!p->json && isatty(STDERR_FILENO))
		cli_progress(NULL, phase, done, total);
}

static const char *result_name(int code)
{
	switch (code) {
	case FSCK_EXIT_CLEAN: return "clean";
	case FSCK_EXIT_FIXED: return "fixed";
	case FSCK_EXIT_ERRORS: return "errors";
	}
	return "failed";
}

static void print_json(const struct fsck_args *a, const struct fsck_report *r,
		       const struct problems *p, int code, const char *error)
{
	printf("{\"disks\": [");
	cli_json_string(a->path[0]);
	printf(", ");
	cli_json_string(a->path[1]);
	printf("], \"repair\": %s, \"result\": \"%s\", \"exit\": %d, ", a->repair ? "true" : "false",
	       result_name(code), code);
	printf("\"error\": ");
	if (error)
		cli_json_string(error);
	else
		printf("null");
	printf(", \"errors_found\": %" PRIu64 ", \"errors_fixed\": %" PRIu64
	       ", \"errors_left\": %" PRIu64 ", \"passes\": %u, \"journal_replayed\": %" PRIu64
	       ", \"journal_lost\": %" PRIu64 ", \"inodes_used\": %" PRIu64
	       ", \"inodes_total\": %" PRIu64 ", \"blocks_used\": %" PRIu64
	       ", \"blocks_total\": %" PRIu64 ", \"directories\": %" PRIu64 ", \"files\": %" PRIu64
	       ", \"symlinks\": %" PRIu64 ", \"orphans_pending\": %" PRIu64
	       ", \"orphans_reclaimed\": %" PRIu64 ", \"lost_found\": %" PRIu64 ", \"problems\": [",
	       r->errors_found, r->errors_fixed, r->errors_left, r->passes, r->journal_replayed,
	       r->journal_lost, r->inodes_used, r->inodes_total, r->blocks_used, r->blocks_total,
	       r->dirs, r->files, r->symlinks, r->orphans_pending, r->orphans_reclaimed,
	       r->lost_found);
	for (size_t i = 0; i < p->n; i++) {
		if (i)
			printf(", ");
		cli_json_string(p->msg[i]);
	}
	printf("]}\n");
}

static void print_summary(const struct fsck_args *a, const struct fsck_report *r, int code)
{
	if (r->journal_replayed)
		printf("Journal: %" PRIu64 " transaction%s replayed\n", r->journal_replayed,
		       r->journal_replayed == 1 ? "" : "s");
	if (r->orphans_pending)
		printf("Orphans: %" PRIu64 " unlinked inode%s to be reclaimed at mount\n",
		       r->orphans_pending, r->orphans_pending == 1 ? "" : "s");
	if (r->orphans_reclaimed)
		printf("Orphans: %" PRIu64 " reclaimed\n", r->orphans_reclaimed);
	if (r->lost_found)
		printf("Moved to /lost+found: %" PRIu64 " inode%s\n", r->lost_found,
		       r->lost_found == 1 ? "" : "s");
	printf("%" PRIu64 "/%" PRIu64 " inodes (%" PRIu64 " directories, %" PRIu64 " files, %"
	       PRIu64 " symlinks), %" PRIu64 "/%" PRIu64 " blocks in use\n", r->inodes_used,
	       r->inodes_total, r->dirs, r->files, r->symlinks, r->blocks_used, r->blocks_total);
	if (code == FSCK_EXIT_CLEAN)
		printf("Filesystem clean\n");
	else if (code == FSCK_EXIT_FIXED)
		printf("Filesystem repaired: %" PRIu64 " problem%s fixed\n", r->errors_fixed,
		       r->errors_fixed == 1 ? "" : "s");
	else
		printf("Filesystem has problems: %" PRIu64 " found, %" PRIu64 " left%s\n",
		       r->errors_found, r->errors_left,
		       a->repair ? "" : " (run 'catamaran fsck --repair')");
}

static int parse_args(int argc, char **argv, struct fsck_args *a)
{
	static const struct option longopts[] = {
		{ "repair", no_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":rjh", longopts, NULL)) != -1) {
		if (c == 'r') {
			a->repair = true;
		} else if (c == 'j') {
			a->json = true;
		} else if (c == 'h') {
			fputs(fsck_usage, stdout);
			return -1;
		} else {
			cli_bad_option("fsck", c, argv);
			return FSCK_EXIT_USAGE;
		}
	}
	if (argc - optind != 2) {
		cli_usage_error("fsck", "needs exactly two disks, DISK1 and DISK2");
		return FSCK_EXIT_USAGE;
	}
	a->path[0] = argv[optind];
	a->path[1] = argv[optind + 1];
	return 0;
}

int cmd_fsck(int argc, char **argv)
{
	struct fsck_args a = { 0 };
	int rc = parse_args(argc, argv, &a);
	if (rc)
		return rc < 0 ? 0 : rc;
	struct mirror_opts mo = { .no_cleaner = true };
	struct mirror *m;
	if (cli_open_mirror("fsck", a.path[0], a.path[1], &mo, &m) < 0)
		return FSCK_EXIT_FAILED;
	struct problems probs = { .json = a.json };
	struct fsck_opts o = { .repair = a.repair, .progress = on_progress,
			       .problem = on_problem, .arg = &probs };
	struct fsck_report rep;
	struct cat_error err = { 0 };
	rc = fsck_run(mirror_bdev(m), &o, &rep, &err);
	cli_progress_end();
	int code = fsck_exit_code(rc, &rep);
	int rc2 = mirror_close(m);
	if (rc2 < 0 && rc == 0) {
		snprintf(err.msg, sizeof(err.msg), "closing the mirror: %s", strerror(-rc2));
		code = FSCK_EXIT_FAILED;
	}
	const char *error = code == FSCK_EXIT_FAILED || rc == -EUCLEAN ? err.msg : NULL;
	if (a.json)
		print_json(&a, &rep, &probs, code, error);
	else if (code != FSCK_EXIT_FAILED && rc != -EUCLEAN)
		print_summary(&a, &rep, code);
	if (error)
		fprintf(stderr, "catamaran fsck: %s\n", error);
	for (size_t i = 0; i < probs.n; i++)
		free(probs.msg[i]);
	free(probs.msg);
	return code;
}
