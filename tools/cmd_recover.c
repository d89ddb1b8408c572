/*
 * cmd_recover.c - `catamaran recover`: assemble the mirror, copy the stale
 * chunks from the authoritative disk (recovery_resync) and close it cleanly.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/base/util.h"
#include "recovery/recovery.h"
#include "tools/cli.h"
#include "tools/commands.h"

static const char recover_usage[] =
	"Usage: catamaran recover [--full] [--degraded] DISK1 DISK2\n"
	"\n"
	"Bring the two disks of a mirror back in sync after a crash or a disk\n"
	"failure: the chunks that may differ (those in the write-intent bitmap, or\n"
	"every chunk when the bitmap cannot be trusted) are copied from the\n"
	"authoritative disk to the other one. The disks must not be in use.\n"
	"\n"
	"Options:\n"
	"  -f, --full       compare and copy every chunk, not just the dirty ones\n"
	"                   (for damage the bitmap cannot know about)\n"
	"  -d, --degraded   go on with one disk if the other cannot be opened\n"
	"  -h, --help       show this help\n"
	"\n"
	"Exit status: 0 both disks in sync, 1 the mirror is left degraded,\n"
	"2 error or bad usage.\n";

static int parse_args(int argc, char **argv, struct mirror_opts *o, const char *path[2])
{
	static const struct option longopts[] = {
		{ "full", no_argument, NULL, 'f' },
		{ "degraded", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":fdh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': o->full_resync = true; break;
		case 'd': o->allow_degraded = true; break;
		case 'h': fputs(recover_usage, stdout); return -1;
		default: return cli_bad_option("recover", c, argv);
		}
	}
	if (argc - optind != 2)
		return cli_usage_error("recover", "needs exactly two disks, DISK1 and DISK2");
	path[0] = argv[optind];
	path[1] = argv[optind + 1];
	return 0;
}

static void print_plan(const struct mirror_status *st, int target)
{
	if (target < 0) {
		printf("Nothing to resync.\n");
		return;
	}
	if (st->stale_chunks == 0) {
		printf("No chunk to copy; %s will be marked in sync\n", st->leg[target].name);
		return;
	}
	char size[32];
	printf("Resyncing %" PRIu64 " of %" PRIu64 " chunks (up to %s) from %s to %s\n",
	       st->stale_chunks, st->nchunks,
	       format_size(st->stale_chunks * st->chunk_blocks * BDEV_BLOCK_SIZE, size, sizeof(size)),
	       st->leg[st->authoritative].name, st->leg[target].name);
}

static void print_result(const struct resync_result *res, const struct mirror_status *st)
{
	char size[32];
	if (res->chunks)
		printf("Resync done: %" PRIu64 " chunk%s visited, %" PRIu64 " block%s (%s) copied in %.2f s\n",
		       res->chunks, res->chunks == 1 ? "" : "s", res->blocks_copied,
		       res->blocks_copied == 1 ? "" : "s",
		       format_size(res->blocks_copied * BDEV_BLOCK_SIZE, size, sizeof(size)), res->seconds);
	for (int i = 0; i < 2; i++)
		if (st->leg[i].state == LEG_MISSING)
			printf("Disk %d is missing: the mirror is DEGRADED\n", i + 1);
		else if (st->leg[i].state != LEG_IN_SYNC)
			printf("Disk %d (%s) is %s: the mirror is DEGRADED\n", i + 1, st->leg[i].name,
			       member_state_name((int)st->leg[i].state));
	if (st->leg[0].state == LEG_IN_SYNC && st->leg[1].state == LEG_IN_SYNC)
		printf("Both disks are in sync (authoritative: %s)\n",
		       st->authoritative >= 0 ? st->leg[st->authoritative].name : "none");
}

int cmd_recover(int argc, char **argv)
{
	struct mirror_opts o = { .no_cleaner = true };
	const char *path[2] = { NULL, NULL };
	int rc = parse_args(argc, argv, &o, path);
	if (rc)
		return rc < 0 ? 0 : rc;

	struct mirror *m;
	if (cli_open_mirror("recover", path[0], path[1], &o, &m) < 0)
		return 2;
	struct mirror_status st;
	mirror_get_status(m, &st);
	print_plan(&st, mirror_rebuilding_leg(m));

	struct resync_result res;
	struct cat_error err = { 0 };
	rc = recovery_resync(m, cli_progress, NULL, &res, &err);
	cli_progress_end();
	if (rc < 0)
		fprintf(stderr, "catamaran recover: %s\n", err.msg);
	mirror_get_status(m, &st);
	if (rc == 0)
		print_result(&res, &st);
	bool in_sync = st.leg[0].state == LEG_IN_SYNC && st.leg[1].state == LEG_IN_SYNC;

	int close_rc = mirror_close(m);
	if (close_rc < 0) {
		fprintf(stderr, "catamaran recover: %s, %s: closing the mirror failed: %s\n",
			path[0], path[1], strerror(-close_rc));
		return 2;
	}
	return rc < 0 ? 2 : in_sync ? 0 : 1;
}
