/*
 * cmd_status.c - `catamaran status`: what each disk's superblock and bitmap
 * say, and what assembling them would do. Offline and read-only: the disks
 * are opened O_RDONLY without the lock, and nothing is ever written.
 *
 * The verdict is mirror_plan(), the very decision mirror_open takes.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/disk/uring_disk.h"
#include "blockdev/mirror/bitmap.h"
#include "blockdev/mirror/mirror.h"
#include "blockdev/mirror/superblock.h"
#include "core/base/util.h"
#include "tools/cli.h"
#include "tools/commands.h"

static const char status_usage[] =
	"Usage: catamaran status [--json] DISK1 DISK2\n"
	"       catamaran status [--json] MOUNTPOINT\n"
	"\n"
	"Show what each disk's superblock and write-intent bitmap record, and what\n"
	"'catamaran recover' would do with them. Read-only and offline: it may be\n"
	"run while the disks are in use, but then shows the last state written.\n"
	"With a MOUNTPOINT, asks the running daemon instead: live state of each\n"
	"disk, rebuild progress, journal and cache statistics, I/O counters.\n"
	"\n"
	"Options:\n"
	"  -j, --json   print one JSON object (fields in tools/README.md)\n"
	"  -h, --help   show this help\n"
	"\n"
	"Exit status: 0 both disks readable and of one array, 1 a disk has a\n"
	"problem (missing, unreadable, not a Catamaran disk, damaged, mismatched),\n"
	"2 bad usage.\n";

/* Everything status learns about one disk. */
struct disk_report {
	const char *path;
	char error[600];          /* why the disk is unusable; "" if it is fine */
	bool opened, sb_valid;
	int slot_errors[MSB_SLOTS];
	struct msb sb;
	uint64_t device_blocks;
	uint8_t *bits;            /* decoded bitmap, nchunks bits */
	uint64_t dirty_chunks;
	int bitmap_bad_blocks;
};

/* What assembling the two disks would do. */
struct verdict {
	const char *code;  /* clean, needs-resync, degraded, unusable */
	int authoritative; /* position 0/1, or -1 */
	const char *resync;/* none, bitmap, full */
	uint64_t stale_chunks;
	char message[700];
	bool problem;      /* exit status 1 */
};

static const char *slot_problem(int rc)
{
	switch (-rc) {
	case 0: return NULL;
	case EBADMSG: return "no superblock (empty or not Catamaran)";
	case EPROTO: return "unsupported format version";
	case EUCLEAN: return "checksum mismatch or impossible geometry";
	}
	return strerror(-rc);
}

/* Chunks set in a, or in a or b when b is given. */
static uint64_t count_bits(const uint8_t *a, const uint8_t *b, uint64_t n)
{
	uint64_t count = 0;
	for (uint64_t i = 0; i < n; i++)
		count += ((a[i / 8] | (b ? b[i / 8] : 0)) >> (i % 8)) & 1;
	return count;
}

static int read_bitmap(struct bdev *disk, struct disk_report *r)
{
	uint64_t nchunks = msb_nchunks(&r->sb);
	void *image = block_alloc((size_t)r->sb.bitmap_blocks * BDEV_BLOCK_SIZE);
	r->bits = calloc(nchunks / 8 + 1, 1);
	if (!image || !r->bits) {
		free(image);
		return -ENOMEM;
	}
	int rc = bdev_read(disk, r->sb.bitmap_offset, image, r->sb.bitmap_blocks);
	if (rc == 0) {
		r->bitmap_bad_blocks = bitmap_decode_into(image, r->sb.bitmap_blocks, nchunks, r->bits);
		r->dirty_chunks = count_bits(r->bits, NULL, nchunks);
	}
	free(image);
	return rc;
}

static void inspect_disk(const char *path, struct disk_report *r)
{
	struct bdev *disk;
	r->path = path;
	if (cli_open_disk(path, URING_DISK_READONLY | URING_DISK_NOLOCK, &disk,
			  r->error, sizeof(r->error)) < 0)
		return;
	r->opened = true;
	r->device_blocks = disk->nblocks;
	int rc = msb_read(disk, &r->sb, r->slot_errors);
	r->sb_valid = rc == 0;
	if (rc < 0 && rc != -EBADMSG && rc != -EUCLEAN && rc != -EPROTO)
		r->slot_errors[0] = r->slot_errors[1] = rc; /* I/O error: no slot read */
	if (rc == -EBADMSG)
		snprintf(r->error, sizeof(r->error), "%s: not a Catamaran disk (no superblock)", path);
	else if (rc == -EUCLEAN)
		snprintf(r->error, sizeof(r->error), "%s: superblock damaged in both slots", path);
	else if (rc == -EPROTO)
		snprintf(r->error, sizeof(r->error), "%s: superblock of an unsupported format version", path);
	else if (rc < 0)
		snprintf(r->error, sizeof(r->error), "%s: cannot read the superblock: %s",
			 path, strerror(-rc));
	else if (r->device_blocks < r->sb.disk_blocks)
		snprintf(r->error, sizeof(r->error),
			 "%s: disk is smaller than the array (%" PRIu64 " of %" PRIu64 " blocks)",
			 path, r->device_blocks, r->sb.disk_blocks);
	else if ((rc = read_bitmap(disk, r)) < 0)
		snprintf(r->error, sizeof(r->error), "%s: cannot read the bitmap: %s",
			 path, strerror(-rc));
	bdev_close(disk);
}

/* ---- verdict ------------------------------------------------------------ */

static bool self_in_sync(const struct disk_report *r)
{
	return r->sb.member_state[r->sb.disk_index] == MEMBER_IN_SYNC;
}

__attribute__((format(printf, 4, 5)))
static void verdict_set(struct verdict *v, const char *code, bool problem,
			const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v->message, sizeof(v->message), fmt, ap);
	va_end(ap);
	v->code = code;
	v->problem = problem;
}

/* Do two valid superblocks describe one array? Sets the verdict if not. */
static bool one_array(const struct disk_report r[2], struct verdict *v)
{
	char why[160];
	if (!msb_pair_problem(&r[0].sb, &r[1].sb, why, sizeof(why)))
		return true;
	verdict_set(v, "unusable", true, "%s and %s %s", r[0].path, r[1].path, why);
	return false;
}

static void judge_pair(const struct disk_report r[2], struct verdict *v)
{
	const struct disk_report *d[2];
	d[r[0].sb.disk_index] = &r[0];
	d[r[1].sb.disk_index] = &r[1];
	const struct msb *view[2] = { &d[0]->sb, &d[1]->sb };
	struct mirror_plan plan;
	mirror_plan(view, false, &plan); /* the decision mirror_open will take */
	if (plan.auth < 0) {
		verdict_set(v, "unusable", true, "%s + %s: %s", r[0].path, r[1].path, plan.refusal);
		return;
	}
	int auth = plan.auth, rebuild = plan.rebuild;
	v->authoritative = (int)(d[auth] - r);
	if (rebuild < 0) {
		verdict_set(v, "clean", false, "both disks in sync; %s leads", d[auth]->path);
		return;
	}
	uint64_t nchunks = msb_nchunks(&d[auth]->sb);
	v->resync = plan.full ? "full" : "bitmap";
	v->stale_chunks = plan.full ? nchunks : count_bits(d[0]->bits, d[1]->bits, nchunks);
	verdict_set(v, "needs-resync", false,
		    "%s is authoritative; %s needs a %s resync (%" PRIu64 " of %" PRIu64 " chunks)%s",
		    d[auth]->path, d[rebuild]->path, v->resync, v->stale_chunks, nchunks,
		    plan.split_brain ? "; split brain: each disk recorded the other as failed" : "");
}

/* Only r[good] is usable: can the array run on it alone? */
static void judge_single(const struct disk_report r[2], int good, struct verdict *v)
{
	if (!self_in_sync(&r[good])) {
		verdict_set(v, "unusable", true, "%s is the only usable disk and it is incomplete "
			    "(it was being rebuilt)", r[good].path);
		return;
	}
	v->authoritative = good;
	verdict_set(v, "degraded", true, "only %s is usable; replace %s or recover --degraded",
		    r[good].path, r[1 - good].path);
}

static void judge(const struct disk_report r[2], struct verdict *v)
{
	*v = (struct verdict){ .code = "unusable", .authoritative = -1, .resync = "none",
			       .problem = true };
	bool ok[2] = { !r[0].error[0], !r[1].error[0] };
	if (ok[0] && ok[1]) {
		if (one_array(r, v))
			judge_pair(r, v);
	} else if (ok[0] || ok[1]) {
		judge_single(r, ok[0] ? 0 : 1, v);
	} else {
		verdict_set(v, "unusable", true, "neither %s nor %s is usable", r[0].path, r[1].path);
	}
}

/* ---- text output -------------------------------------------------------- */

static void print_disk_text(int pos, const struct disk_report *r)
{
	printf("Disk %d: %s\n", pos + 1, r->path);
	for (int s = 0; r->opened && s < MSB_SLOTS; s++)
		printf("  slot %c        %s\n", 'A' + s,
		       r->slot_errors[s] ? slot_problem(r->slot_errors[s]) : "valid");
	if (!r->sb_valid) {
		printf("  problem       %s\n", r->error);
		return;
	}
	const struct msb *sb = &r->sb;
	char uuid[37], size[32];
	uuid_format(sb->uuid, uuid);
	printf("  array uuid    %s\n", uuid);
	printf("  disk index    %u\n", sb->disk_index);
	printf("  events        %" PRIu64 "\n", sb->events);
	printf("  members       index 0 %s, index 1 %s\n", member_state_name(sb->member_state[0]),
	       member_state_name(sb->member_state[1]));
	printf("  shutdown      %s\n", sb->clean ? "clean" : "unclean (or still in use)");
	printf("  device        %s (%" PRIu64 " blocks)\n",
	       format_size(r->device_blocks * BDEV_BLOCK_SIZE, size, sizeof(size)), r->device_blocks);
	printf("  data          %" PRIu64 " blocks from block %" PRIu64 " (%s)\n", sb->data_blocks,
	       sb->data_offset, format_size(sb->data_blocks * BDEV_BLOCK_SIZE, size, sizeof(size)));
	printf("  chunks        %" PRIu64 " of %s, bitmap %u block(s) at block %" PRIu64 "\n",
	       msb_nchunks(sb), format_size((uint64_t)sb->chunk_blocks * BDEV_BLOCK_SIZE, size, sizeof(size)),
	       sb->bitmap_blocks, sb->bitmap_offset);
	printf("  dirty chunks  %" PRIu64 "%s\n", r->dirty_chunks,
	       r->bitmap_bad_blocks ? " (bitmap damaged: those blocks count as all dirty)" : "");
	if (r->error[0])
		printf("  problem       %s\n", r->error);
}

/* ---- JSON output -------------------------------------------------------- */

/* "name": "value" (null when value is NULL); a bare value when name is NULL. */
static void json_field_string(const char *name, const char *value, bool comma)
{
	if (name)
		printf("\"%s\": ", name);
	if (value)
		cli_json_string(value);
	else
		printf("null");
	printf(comma ? ", " : "");
}

static void print_disk_json(int pos, const struct disk_report *r)
{
	const struct msb *sb = &r->sb;
	bool v = r->sb_valid;
	char uuid[37];
	uuid_format(sb->uuid, uuid);
	printf("{\"position\": %d, ", pos + 1);
	json_field_string("path", r->path, true);
	printf("\"opened\": %s, ", r->opened ? "true" : "false");
	json_field_string("error", r->error[0] ? r->error : NULL, true);
	printf("\"superblock_valid\": %s, \"slot_errors\": ", v ? "true" : "false");
	if (r->opened) {
		printf("[");
		for (int s = 0; s < MSB_SLOTS; s++) {
			json_field_string(NULL, slot_problem(r->slot_errors[s]), false);
			printf(s + 1 < MSB_SLOTS ? ", " : "");
		}
		printf("], ");
	} else {
		printf("null, ");
	}
	if (!v) {
		char blocks[24] = "null";
		if (r->opened)
			snprintf(blocks, sizeof(blocks), "%" PRIu64, r->device_blocks);
		printf("\"uuid\": null, \"disk_index\": null, \"events\": null, \"member_states\": null, "
		       "\"clean\": null, \"device_blocks\": %s, \"disk_blocks\": null, "
		       "\"data_offset\": null, \"data_blocks\": null, \"chunk_blocks\": null, "
		       "\"nchunks\": null, \"bitmap_offset\": null, \"bitmap_blocks\": null, "
		       "\"dirty_chunks\": null, \"bitmap_bad_blocks\": null}", blocks);
		return;
	}
	json_field_string("uuid", uuid, true);
	printf("\"disk_index\": %u, \"events\": %" PRIu64 ", \"member_states\": [", sb->disk_index,
	       sb->events);
	cli_json_string(member_state_name(sb->member_state[0]));
	printf(", ");
	cli_json_string(member_state_name(sb->member_state[1]));
	printf("], \"clean\": %s, \"device_blocks\": %" PRIu64 ", \"disk_blocks\": %" PRIu64
	       ", \"data_offset\": %" PRIu64 ", \"data_blocks\": %" PRIu64 ", \"chunk_blocks\": %u"
	       ", \"nchunks\": %" PRIu64 ", \"bitmap_offset\": %" PRIu64 ", \"bitmap_blocks\": %u"
	       ", \"dirty_chunks\": %" PRIu64 ", \"bitmap_bad_blocks\": %d}",
	       sb->clean ? "true" : "false", r->device_blocks, sb->disk_blocks, sb->data_offset,
	       sb->data_blocks, sb->chunk_blocks, msb_nchunks(sb), sb->bitmap_offset,
	       sb->bitmap_blocks, r->dirty_chunks, r->bitmap_bad_blocks);
}

static void print_json(const struct disk_report r[2], const struct verdict *v)
{
	printf("{\"disks\": [");
	print_disk_json(0, &r[0]);
	printf(", ");
	print_disk_json(1, &r[1]);
	printf("], ");
	json_field_string("verdict", v->code, true);
	if (v->authoritative >= 0)
		printf("\"authoritative\": %d, ", v->authoritative + 1);
	else
		printf("\"authoritative\": null, ");
	json_field_string("resync", v->resync, true);
	printf("\"stale_chunks\": %" PRIu64 ", ", v->stale_chunks);
	json_field_string("message", v->message, false);
	printf("}\n");
}

static int parse_args(int argc, char **argv, bool *json, const char *path[2])
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":jh", longopts, NULL)) != -1) {
		if (c == 'j') {
			*json = true;
		} else if (c == 'h') {
			fputs(status_usage, stdout);
			return -1;
		} else {
			return cli_bad_option("status", c, argv);
		}
	}
	if (argc - optind == 1) {
		path[0] = argv[optind];      /* a mountpoint */
		return 0;
	}
	if (argc - optind != 2)
		return cli_usage_error("status", "needs DISK1 DISK2, or the MOUNTPOINT of a mounted volume");
	path[0] = argv[optind];
	path[1] = argv[optind + 1];
	return 0;
}

int cmd_status(int argc, char **argv)
{
	bool json = false;
	const char *path[2] = { NULL, NULL };
	int rc = parse_args(argc, argv, &json, path);
	if (rc)
		return rc < 0 ? 0 : rc;
	if (!path[1])
		return cmd_status_mounted(path[0], json);

	struct disk_report r[2] = { 0 };
	struct verdict v;
	inspect_disk(path[0], &r[0]);
	if (cli_same_disk(path[0], path[1])) {
		r[1].path = path[1];
		snprintf(r[1].error, sizeof(r[1].error), "%s: is the same disk as %s", path[1], path[0]);
	} else {
		inspect_disk(path[1], &r[1]);
	}
	judge(r, &v);

	if (json) {
		print_json(r, &v);
	} else {
		print_disk_text(0, &r[0]);
		print_disk_text(1, &r[1]);
		printf("Verdict: %s: %s\n", v.code, v.message);
	}
	/* The one-line error: what is wrong with a disk, else with the pair. */
	bool disk_error = false;
	for (int p = 0; p < 2; p++)
		if (r[p].error[0]) {
			fprintf(stderr, "catamaran status: %s\n", r[p].error);
			disk_error = true;
		}
	if (v.problem && !disk_error)
		fprintf(stderr, "catamaran status: %s\n", v.message);
	free(r[0].bits);
	free(r[1].bits);
	return v.problem ? 1 : 0;
}
