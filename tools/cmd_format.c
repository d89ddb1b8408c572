/*
 * cmd_format.c - `catamaran format`: create (if needed) and format the two
 * disks of a new mirror. Files it creates are removed again on failure, and
 * empty files it grew are emptied again, so a failed format leaves things as
 * they were.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockdev/disk/uring_disk.h"
#include "blockdev/mirror/mirror.h"
#include "core/base/util.h"
#include "core/fs/fs.h"
#include "tools/cli.h"
#include "tools/commands.h"

#define DEFAULT_SIZE (1ull << 30)    /* new files when nothing else says */
#define MIN_SIZE (2ull << 20)        /* msb_geometry's minimum */

static const char format_usage[] =
	"Usage: catamaran format [--size SIZE] [--chunk SIZE] [--force] [--assume-clean]\n"
	"                        [--no-fs] DISK1 DISK2\n"
	"\n"
	"Write a new, empty mirror onto DISK1 and DISK2 (files or block devices)\n"
	"and an empty filesystem (the root directory) on it.\n"
	"A disk file that does not exist (or is empty) is created and preallocated.\n"
	"\n"
	"Options:\n"
	"  -s, --size SIZE    size of the disk files to create, e.g. 512M or 4G;\n"
	"                     default: the size of the other disk if it exists,\n"
	"                     else 1G. Existing disks keep their size.\n"
	"  -c, --chunk SIZE   write-intent bitmap chunk: a power of two, at least\n"
	"                     4K (default 1M, doubled on very large disks)\n"
	"  -f, --force        overwrite a disk that already holds a Catamaran\n"
	"                     mirror, or a block device that is not empty\n"
	"  -a, --assume-clean the two data areas are already identical: skip the\n"
	"                     initial full sync (implied when format created both\n"
	"                     files, which start zero-filled)\n"
	"  -n, --no-fs        the mirror only, no filesystem (a raw replicated\n"
	"                     block device, e.g. for 'bench blockdev --verify')\n"
	"  -h, --help         show this help\n"
	"\n"
	"The mirror spans the smaller disk, less 1 MiB or so for superblocks and bitmap.\n"
	"Without --assume-clean, disk 2 is marked for a full sync from disk 1, which\n"
	"the next 'catamaran recover' performs.\n"
	"Exit status: 0 formatted, 2 error or bad usage (nothing is written).\n";

struct format_args {
	uint64_t size;       /* 0 = not given */
	uint32_t chunk_blocks;
	bool force, assume_clean, no_fs;
	const char *path[2];
};

static int parse_args(int argc, char **argv, struct format_args *a)
{
	static const struct option longopts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "chunk", required_argument, NULL, 'c' },
		{ "force", no_argument, NULL, 'f' },
		{ "assume-clean", no_argument, NULL, 'a' },
		{ "no-fs", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":s:c:fanh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_size(optarg, &v) < 0 || v % BDEV_BLOCK_SIZE)
				return cli_usage_error("format", "--size: '%s' is not a size in whole 4K blocks", optarg);
			if (v < MIN_SIZE)
				return cli_usage_error("format", "--size: %s is too small (at least 2M)", optarg);
			a->size = v;
			break;
		case 'c':
			if (parse_size(optarg, &v) < 0 || v < BDEV_BLOCK_SIZE || v % BDEV_BLOCK_SIZE ||
			    (v & (v - 1)) || v / BDEV_BLOCK_SIZE > UINT32_MAX)
				return cli_usage_error("format", "--chunk: '%s' is not a power of two of at least 4K", optarg);
			a->chunk_blocks = (uint32_t)(v / BDEV_BLOCK_SIZE);
			break;
		case 'f':
			a->force = true;
			break;
		case 'a':
			a->assume_clean = true;
			break;
		case 'n':
			a->no_fs = true;
			break;
		case 'h':
			fputs(format_usage, stdout);
			return -1;
		default:
			return cli_bad_option("format", c, argv);
		}
	}
	if (argc - optind != 2)
		return cli_usage_error("format", "needs exactly two disks, DISK1 and DISK2");
	a->path[0] = argv[optind];
	a->path[1] = argv[optind + 1];
	return 0;
}

/* Size in bytes of an existing file or block device; 0 if it does not exist
 * or cannot be looked at (the open that follows will say why). */
static uint64_t existing_size(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return 0;
	if (!S_ISBLK(st.st_mode))
		return S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
	uint64_t bytes = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (ioctl(fd, BLKGETSIZE64, &bytes) < 0)
		bytes = 0;
	close(fd);
	return bytes;
}

/* What format did to a disk file before formatting, to undo on failure. */
enum prepared { KEPT, CREATED, GROWN };

/* Create the missing or empty disk files. */
static int prepare_files(const struct format_args *a, enum prepared done[2])
{
	for (int i = 0; i < 2; i++) {
		struct stat st;
		done[i] = KEPT;
		bool exists = stat(a->path[i], &st) == 0;
		if (exists && !(S_ISREG(st.st_mode) && st.st_size == 0))
			continue; /* used as it is; opening it checks it */
		if (!exists && errno != ENOENT)
			continue; /* the open will report it */
		uint64_t other = existing_size(a->path[1 - i]);
		uint64_t bytes = a->size ? a->size : other >= MIN_SIZE ? other : DEFAULT_SIZE;
		bytes -= bytes % BDEV_BLOCK_SIZE;
		struct cat_error err = { 0 };
		int created = 0;
		int rc = uring_disk_create(a->path[i], bytes, &created, &err);
		if (rc < 0) {
			fprintf(stderr, "catamaran format: %s\n", err.msg);
			return rc;
		}
		done[i] = created ? CREATED : GROWN;
	}
	return 0;
}

static void undo_files(const struct format_args *a, const enum prepared done[2])
{
	for (int i = 0; i < 2; i++) {
		if (done[i] == CREATED && unlink(a->path[i]) < 0)
			fprintf(stderr, "catamaran format: %s: cannot remove: %s\n",
				a->path[i], strerror(errno));
		if (done[i] == GROWN && truncate(a->path[i], 0) < 0)
			fprintf(stderr, "catamaran format: %s: cannot empty again: %s\n",
				a->path[i], strerror(errno));
	}
}

static void print_summary(const struct format_args *a, const struct msb *sb,
			  const uint64_t nblocks[2], const enum prepared done[2], bool clean,
			  bool with_fs)
{
	char uuid[37], size[32], chunk[32];
	uuid_format(sb->uuid, uuid);
	printf("Formatted a Catamaran mirror\n");
	printf("  uuid        %s\n", uuid);
	for (int i = 0; i < 2; i++)
		printf("  disk %d      %s (%s%s)\n", i + 1, a->path[i],
		       format_size(nblocks[i] * BDEV_BLOCK_SIZE, size, sizeof(size)),
		       done[i] == KEPT ? "" : ", created");
	printf("  size        %s (%llu blocks of 4 KiB)\n",
	       format_size(sb->data_blocks * BDEV_BLOCK_SIZE, size, sizeof(size)),
	       (unsigned long long)sb->data_blocks);
	printf("  chunk size  %s (%llu chunks)\n",
	       format_size((uint64_t)sb->chunk_blocks * BDEV_BLOCK_SIZE, chunk, sizeof(chunk)),
	       (unsigned long long)msb_nchunks(sb));
	if (with_fs)
		printf("  filesystem  empty, root directory owned by uid %u\n", (unsigned)getuid());
	else
		printf("  filesystem  none (--no-fs)\n");
	printf("  state       %s\n", clean ? "in sync" :
	       "disk 2 needs a full sync: run 'catamaran recover'");
}

/* The filesystem on the new mirror (mirror_open takes the legs). */
static int format_filesystem(struct bdev *legs[2])
{
	struct mirror_opts mo = { 0 };
	struct mirror *m;
	struct cat_error err = { 0 };
	int rc = mirror_open(legs, &mo, &m, &err);
	if (rc < 0) {
		fprintf(stderr, "catamaran format: %s\n", err.msg[0] ? err.msg : strerror(-rc));
		return rc;
	}
	struct fs_format_opts fo = { .root_uid = (uint32_t)getuid(), .root_gid = (uint32_t)getgid() };
	rc = fs_format(mirror_bdev(m), &fo, &err);
	if (rc < 0)
		fprintf(stderr, "catamaran format: %s\n", err.msg[0] ? err.msg : strerror(-rc));
	int rc2 = mirror_close(m);
	if (!rc && rc2 < 0)
		fprintf(stderr, "catamaran format: closing the mirror: %s\n", strerror(-rc2));
	return rc ? rc : rc2;
}

static int format_disks(const struct format_args *a, const enum prepared done[2])
{
	struct bdev *legs[2];
	if (cli_open_disks("format", a->path[0], a->path[1], 0, legs) < 0)
		return -1;
	/* Files format made itself are all zeros: identical already. */
	bool fresh = done[0] != KEPT && done[1] != KEPT;
	struct mirror_format_opts o = { .chunk_blocks = a->chunk_blocks, .force = a->force,
					.assume_clean = a->assume_clean || fresh };
	struct cat_error err = { 0 };
	struct msb sb;
	int rc = mirror_format(legs, &o, &err);
	if (rc < 0) {
		fprintf(stderr, "catamaran format: %s\n", err.msg[0] ? err.msg : strerror(-rc));
	} else if ((rc = msb_read(legs[0], &sb, NULL)) < 0) {
		fprintf(stderr, "catamaran format: %s: cannot read back the superblock: %s\n",
			a->path[0], strerror(-rc));
	}
	if (rc < 0) {
		bdev_close(legs[0]);
		bdev_close(legs[1]);
		return rc;
	}
	uint64_t nb[2] = { legs[0]->nblocks, legs[1]->nblocks };
	if (a->no_fs) {
		bdev_close(legs[0]);
		bdev_close(legs[1]);
	} else if ((rc = format_filesystem(legs)) < 0) {
		return rc;
	}
	print_summary(a, &sb, nb, done, o.assume_clean, !a->no_fs);
	return 0;
}

int cmd_format(int argc, char **argv)
{
	struct format_args a = { 0 };
	int rc = parse_args(argc, argv, &a);
	if (rc)
		return rc < 0 ? 0 : rc;
	if (cli_refuse_same_disk("format", a.path[0], a.path[1]))
		return 2;
	enum prepared done[2] = { KEPT, KEPT };
	if (prepare_files(&a, done) < 0 || format_disks(&a, done) < 0) {
		undo_files(&a, done);
		return 2;
	}
	return 0;
}
