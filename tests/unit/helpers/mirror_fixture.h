/*
 * mirror_fixture.h - a mirror over two in-memory disks for unit tests.
 *
 * Stack of each leg (bottom to top):
 *
 *     mem disk  (owned by the fixture; survives any number of mirror opens)
 *     crash disk (optional, cfg.crash; owned by the fixture, shares f->clock)
 *     fault disk (always; the device handed to mirror_open, which owns it)
 *
 * Because neither the crash disk nor the fault disk owns what is below it,
 * the mem disks hold the "platter" image after a mirror is closed or
 * abandoned, and a new mirror can be assembled over them again
 * (mfix_open()). Fault disks address member-disk blocks, so data block b
 * of the mirror is block f->data_offset + b there (and on the mem disks).
 *
 * Payloads are self-describing: every block written by a test carries a
 * header { magic, blkno, seq, crc32c } and a body derived from (blkno, seq),
 * so a reader can tell which write a block came from, and that it is whole.
 *
 * Helpers that cannot reasonably fail assert with Criterion; the others
 * return 0 / -errno so tests can assert on the error.
 */
#ifndef CAT_TESTS_MIRROR_FIXTURE_H
#define CAT_TESTS_MIRROR_FIXTURE_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdint.h>

#include "blockdev/bdev.h"
#include "blockdev/mirror/mirror.h"
#include "blockdev/mirror/superblock.h"
#include "blockdev/testdev/crash_disk.h"
#include "core/base/error.h"

/* Criterion records every assertion it evaluates and ctest runs the
 * binaries with --full-stats, which sends each one to the runner: in loops
 * that is slow. These evaluate the condition once and call Criterion only
 * when it fails: MFIX_CHECK(cond) / MFIX_CHECKM(cond, fmt, ...). */
#define MFIX_CHECK(cond)                                         \
	do {                                                     \
		if (!(cond))                                     \
			cr_assert_fail("%s", "check failed: " #cond); \
	} while (0)
#define MFIX_CHECKM(cond, ...)                   \
	do {                                     \
		if (!(cond))                     \
			cr_assert_fail(__VA_ARGS__); \
	} while (0)

#define MFIX_DEFAULT_BLOCKS 1024u /* 4 MiB per leg */
#define MFIX_DEFAULT_CHUNK 16u
#define MFIX_MAGIC 0x4b4c425846494d43ull /* "CMIFXBLK" */

struct mfix_cfg {
	uint64_t disk_blocks[2]; /* 0: MFIX_DEFAULT_BLOCKS */
	uint32_t chunk_blocks;   /* 0: MFIX_DEFAULT_CHUNK */
	bool crash;              /* crash disk under each fault disk */
	uint64_t crash_seed[2];  /* independent per leg */
	unsigned keep_percent;   /* 0: 50 (see lose_unflushed) */
	bool lose_unflushed;     /* keep_percent 0: a crash loses every unflushed block */
	struct mirror_opts mopts;
	bool no_format;          /* blank disks */
	bool initial_sync;       /* format without assume_clean (disk 2 is
				  * then fully resynced at first open) */
	bool no_open;            /* format (unless no_format) but do not open */
};

struct mfix {
	struct mfix_cfg cfg;
	struct bdev *mem[2];
	struct bdev *crash[2];   /* NULL unless cfg.crash */
	struct bdev *fault[2];   /* top of each leg; the mirror owns it while open */
	struct crash_clock clock;
	struct mirror *m;
	struct bdev *dev;        /* mirror_bdev(m) */
	struct msb sb;           /* superblock of leg 0 right after format */
	uint64_t data_offset, data_blocks, nchunks;
	uint32_t chunk_blocks;
	char name[2][64];        /* names of the mem disks (unique per fixture) */
};

/* Drop library log messages below ERROR (set CATAMARAN_TEST_LOG=1 to keep
 * everything). */
void mfix_quiet(void);

/* Create the mem disks, format them (mirror_format on the bare mem disks),
 * read the geometry, and open the mirror (unless cfg->no_open). Asserts. */
void mfix_init(struct mfix *f, const struct mfix_cfg *cfg);

/* (Re)build the crash/fault wrappers over the mem disks and mirror_open
 * them with f->cfg.mopts. On failure f->m is NULL and the fault wrappers
 * are gone (mirror_open closed them); returns the error. */
int mfix_open(struct mfix *f, struct cat_error *err);
void mfix_open_ok(struct mfix *f);

/* Build wrappers only (mirror not opened); used by tests that pass
 * f->fault[] to mirror_open / mirror_format themselves. */
void mfix_wrap(struct mfix *f);
/* Forget wrappers the mirror has closed and close the fixture-owned
 * layers below them (crash disks). */
void mfix_unwrap(struct mfix *f);

/* mirror_close + unwrap. Returns mirror_close's result. */
int mfix_close(struct mfix *f);
/* mirror_abandon (the process dies) + unwrap. Crash disks are not
 * crashed here: call crash_disk_crash() first for a power cut. */
void mfix_abandon(struct mfix *f);
/* Close whatever is still open and free the mem disks. */
void mfix_destroy(struct mfix *f);

/* Replace f->mem[leg] by a fresh zero mem disk of nblocks (0: same size). */
void mfix_new_mem(struct mfix *f, int leg, uint64_t nblocks);

/* --- payloads --- */
void mfix_fill(void *block, uint64_t blkno, uint64_t seq);
/* 1: valid payload for blkno (seq in *seq); 0: all zero; -1: anything
 * else (wrong block, torn, garbage). */
int mfix_check(const void *block, uint64_t blkno, uint64_t *seq);

/* Write n blocks [blk, blk+n) of the mirror, each with payload seq
 * (one iovec per block when vectored). Returns bdev_writev's result. */
int mfix_write(struct mfix *f, uint64_t blk, uint64_t n, uint64_t seq, bool vectored);
/* Read one block through the mirror; returns the read's error, or
 * mfix_check's verdict as 1 / 0 / -EBADMSG (invalid). */
int mfix_read_seq(struct mfix *f, uint64_t blk, uint64_t *seq);
int mfix_read_seq_dev(struct bdev *dev, uint64_t blk, uint64_t *seq);

/* --- direct inspection of the mem disks (no I/O in flight, please) --- */
uint8_t *mfix_mem_data(struct mfix *f, int leg, uint64_t blk);
/* mfix_check on leg's mem image of data block blk. */
int mfix_mem_seq(struct mfix *f, int leg, uint64_t blk, uint64_t *seq);
/* Number of data blocks that differ between the two mem disks;
 * *first (may be NULL) gets the first one, UINT64_MAX if none. */
uint64_t mfix_compare_mem(struct mfix *f, uint64_t *first);
/* Same through mirror_read_leg (needs an open mirror with both legs);
 * returns -errno on a read error. */
int64_t mfix_compare_legs(struct mfix *f, uint64_t *first);
/* The on-disk write-intent bit of chunk on leg's mem disk. */
bool mfix_disk_bit(struct mfix *f, int leg, uint64_t chunk);
/* Superblock of leg's mem disk. */
int mfix_msb(struct mfix *f, int leg, struct msb *sb);

/* Whole-disk images (to rerun a step on the same starting point). */
struct mfix_image {
	uint64_t nblocks;
	uint8_t *data;
};
void mfix_save(struct mfix *f, int leg, struct mfix_image *img);
void mfix_restore(struct mfix *f, int leg, const struct mfix_image *img);
void mfix_image_free(struct mfix_image *img);

#endif
