/*
 * cmd_check.c - `catamaran check`: compare the data areas of both disks
 * block by block, read-only (recovery_scrub without repair).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

#include "recovery/recovery.h"
#include "tools/cli.h"
#include "tools/commands.h"

#define MAX_RANGES_SHOWN 1000

static const char check_usage[] =
	"Usage: catamaran check DISK1 DISK2\n"
	"\n"
	"Compare the data areas of both disks of a mirror block by block and list\n"
	"the runs of blocks that differ, as \"blocks A-B (N)\": mirror block\n"
	"numbers, 4 KiB each, counted from the start of the data area. Nothing is\n"
	"written; repair with 'catamaran recover --full'.\n"
	"\n"
	"Options:\n"
	"  -h, --help   show this help\n"
	"\n"
	"Exit status: 0 the disks are identical, 1 they differ, 2 error or bad usage.\n";

struct ranges_shown {
	uint64_t shown, hidden;
};

static void print_range(void *ctx, uint64_t blkno, uint64_t n)
{
	struct ranges_shown *r = ctx;
	if (r->shown == MAX_RANGES_SHOWN) {
		r->hidden++;
		return;
	}
	r->shown++;
	cli_progress_pause();
	printf("blocks %" PRIu64 "-%" PRIu64 " (%" PRIu64 ")\n", blkno, blkno + n - 1, n);
	fflush(stdout);
}

static int parse_args(int argc, char **argv, const char *path[2])
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (c != 'h')
			return cli_bad_option("check", c, argv);
		fputs(check_usage, stdout);
		return -1;
	}
	if (argc - optind != 2)
		return cli_usage_error("check", "needs exactly two disks, DISK1 and DISK2");
	path[0] = argv[optind];
	path[1] = argv[optind + 1];
	return 0;
}

int cmd_check(int argc, char **argv)
{
	const char *path[2] = { NULL, NULL };
	int rc = parse_args(argc, argv, path);
	if (rc)
		return rc < 0 ? 0 : rc;

	struct mirror_opts o = { .readonly = true, .no_cleaner = true };
	struct mirror *m;
	if (cli_open_mirror("check", path[0], path[1], &o, &m) < 0)
		return 2;
	struct mirror_status st;
	mirror_get_status(m, &st);

	struct ranges_shown shown = { 0 };
	struct scrub_result res;
	struct cat_error err = { 0 };
	rc = recovery_scrub(m, false, print_range, cli_progress, &shown, &res, &err);
	cli_progress_end();
	mirror_close(m); /* read-only: writes nothing */
	if (rc < 0) {
		fprintf(stderr, "catamaran check: %s\n", err.msg);
		return 2;
	}
	if (shown.hidden)
		printf("... and %" PRIu64 " more ranges\n", shown.hidden);
	if (res.mismatched)
		printf("Disks differ: %" PRIu64 " block%s in %" PRIu64 " range%s (%" PRIu64
		       " blocks compared in %.2f s)\n", res.mismatched, res.mismatched == 1 ? "" : "s",
		       res.ranges, res.ranges == 1 ? "" : "s", res.blocks, res.seconds);
	else
		printf("Disks are identical: %" PRIu64 " blocks compared in %.2f s\n", res.blocks,
		       res.seconds);
	if (st.stale_chunks)
		printf("Note: %" PRIu64 " chunks are marked for resync; run 'catamaran recover'\n",
		       st.stale_chunks);
	return res.mismatched ? 1 : 0;
}
