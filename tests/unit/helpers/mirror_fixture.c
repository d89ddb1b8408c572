#include "tests/unit/helpers/mirror_fixture.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blockdev/mirror/bitmap.h"
#include "blockdev/testdev/fault_disk.h"
#include "blockdev/testdev/mem_disk.h"
#include "core/base/crc32c.h"
#include "core/base/log.h"
#include "core/base/util.h"

static void quiet_sink(enum cat_log_level level, const char *msg)
{
	(void)level;
	(void)msg;
}

void mfix_quiet(void)
{
	const char *e = getenv("CATAMARAN_TEST_LOG");
	if (e && *e && strcmp(e, "0"))
		return;
	cat_log_set_sink(quiet_sink, CAT_LOG_ERROR);
}

/* --- payloads ------------------------------------------------------------ */

struct mfix_hdr {
	uint64_t magic;
	uint64_t blkno;
	uint64_t seq;
	uint32_t crc;
	uint32_t pad;
};

void mfix_fill(void *block, uint64_t blkno, uint64_t seq)
{
	struct mfix_hdr *h = block;
	h->magic = MFIX_MAGIC;
	h->blkno = blkno;
	h->seq = seq;
	h->crc = 0;
	h->pad = 0;
	uint64_t *w = (uint64_t *)((uint8_t *)block + sizeof(*h));
	uint64_t x = (blkno * 0x9E3779B97F4A7C15ull) ^ (seq * 0xC2B2AE3D27D4EB4Full) ^ 1;
	for (size_t i = 0; i < (BDEV_BLOCK_SIZE - sizeof(*h)) / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[i] = x;
	}
	h->crc = crc32c(0, block, BDEV_BLOCK_SIZE);
}

int mfix_check(const void *block, uint64_t blkno, uint64_t *seq)
{
	const struct mfix_hdr *h = block;
	if (h->magic != MFIX_MAGIC) {
		const uint64_t *w = block;
		for (size_t i = 0; i < BDEV_BLOCK_SIZE / 8; i++)
			if (w[i])
				return -1;
		if (seq)
			*seq = 0;
		return 0;
	}
	uint8_t copy[BDEV_BLOCK_SIZE];
	memcpy(copy, block, BDEV_BLOCK_SIZE);
	((struct mfix_hdr *)copy)->crc = 0;
	if (crc32c(0, copy, BDEV_BLOCK_SIZE) != h->crc || h->blkno != blkno || h->seq == 0)
		return -1;
	if (seq)
		*seq = h->seq;
	return 1;
}

/* --- construction -------------------------------------------------------- */

static atomic_uint fixture_counter;

void mfix_new_mem(struct mfix *f, int leg, uint64_t nblocks)
{
	if (!nblocks)
		nblocks = f->mem[leg] ? f->mem[leg]->nblocks : MFIX_DEFAULT_BLOCKS;
	if (f->mem[leg])
		bdev_close(f->mem[leg]);
	f->mem[leg] = mem_disk_create(nblocks, f->name[leg]);
	cr_assert(f->mem[leg], "mem_disk_create(%llu) failed", (unsigned long long)nblocks);
}

void mfix_wrap(struct mfix *f)
{
	for (int i = 0; i < 2; i++) {
		cr_assert(f->fault[i] == NULL && f->crash[i] == NULL,
			  "mfix_wrap: leg %d still wrapped", i);
		struct bdev *below = f->mem[i];
		if (f->cfg.crash) {
			f->crash[i] = crash_disk_create(f->mem[i], &f->clock, f->cfg.crash_seed[i],
							f->cfg.lose_unflushed ? 0
							: f->cfg.keep_percent ? f->cfg.keep_percent : 50);
			cr_assert(f->crash[i], "crash_disk_create failed");
			below = f->crash[i];
		}
		f->fault[i] = fault_disk_create(below);
		cr_assert(f->fault[i], "fault_disk_create failed");
	}
}

void mfix_unwrap(struct mfix *f)
{
	for (int i = 0; i < 2; i++) {
		f->fault[i] = NULL; /* closed by the mirror */
		if (f->crash[i]) {
			bdev_close(f->crash[i]);
			f->crash[i] = NULL;
		}
	}
}

int mfix_open(struct mfix *f, struct cat_error *err)
{
	struct cat_error local;
	if (!err)
		err = &local;
	cat_error_clear(err);
	if (f->cfg.crash)
		crash_clock_init(&f->clock);
	mfix_wrap(f);
	struct bdev *legs[2] = { f->fault[0], f->fault[1] };
	f->m = NULL;
	f->dev = NULL;
	int rc = mirror_open(legs, &f->cfg.mopts, &f->m, err);
	if (rc) {
		f->m = NULL;
		mfix_unwrap(f);
		return rc;
	}
	f->dev = mirror_bdev(f->m);
	return 0;
}

void mfix_open_ok(struct mfix *f)
{
	struct cat_error err;
	int rc = mfix_open(f, &err);
	cr_assert_eq(rc, 0, "mirror_open: %d (%s)", rc, err.msg);
	cr_assert(f->dev);
	cr_assert_eq(f->dev->nblocks, f->data_blocks, "mirror size %llu, superblock says %llu",
		     (unsigned long long)f->dev->nblocks, (unsigned long long)f->data_blocks);
}

void mfix_init(struct mfix *f, const struct mfix_cfg *cfg)
{
	memset(f, 0, sizeof(*f));
	if (cfg)
		f->cfg = *cfg;
	mfix_quiet();
	unsigned id = atomic_fetch_add(&fixture_counter, 1);
	for (int i = 0; i < 2; i++) {
		snprintf(f->name[i], sizeof(f->name[i]), "memleg%d-p%d-f%u", i, (int)getpid(), id);
		uint64_t n = f->cfg.disk_blocks[i] ? f->cfg.disk_blocks[i] : MFIX_DEFAULT_BLOCKS;
		mfix_new_mem(f, i, n);
	}
	if (!f->cfg.chunk_blocks)
		f->cfg.chunk_blocks = MFIX_DEFAULT_CHUNK;
	if (f->cfg.no_format)
		return;
	struct mirror_format_opts fo = { .chunk_blocks = f->cfg.chunk_blocks,
					.assume_clean = !f->cfg.initial_sync };
	struct cat_error err;
	cat_error_clear(&err);
	int rc = mirror_format(f->mem, &fo, &err);
	cr_assert_eq(rc, 0, "mirror_format: %d (%s)", rc, err.msg);
	int se[2];
	rc = msb_read(f->mem[0], &f->sb, se);
	cr_assert_eq(rc, 0, "msb_read after format: %d", rc);
	f->data_offset = f->sb.data_offset;
	f->data_blocks = f->sb.data_blocks;
	f->chunk_blocks = f->sb.chunk_blocks;
	f->nchunks = msb_nchunks(&f->sb);
	cr_assert_eq(f->chunk_blocks, f->cfg.chunk_blocks);
	cr_assert(f->data_blocks > 0 && f->data_offset + f->data_blocks <= f->mem[0]->nblocks);
	if (!f->cfg.no_open)
		mfix_open_ok(f);
}

int mfix_close(struct mfix *f)
{
	int rc = 0;
	if (f->m) {
		rc = mirror_close(f->m);
		f->m = NULL;
		f->dev = NULL;
	}
	mfix_unwrap(f);
	return rc;
}

void mfix_abandon(struct mfix *f)
{
	if (f->m) {
		mirror_abandon(f->m);
		f->m = NULL;
		f->dev = NULL;
	}
	mfix_unwrap(f);
}

void mfix_destroy(struct mfix *f)
{
	if (f->m)
		mfix_abandon(f);
	for (int i = 0; i < 2; i++) {
		if (f->fault[i]) { /* wrapped but never handed to a mirror */
			bdev_close(f->fault[i]);
			f->fault[i] = NULL;
		}
	}
	mfix_unwrap(f);
	for (int i = 0; i < 2; i++) {
		if (f->mem[i])
			bdev_close(f->mem[i]);
		f->mem[i] = NULL;
	}
}

/* --- I/O through the mirror ---------------------------------------------- */

int mfix_write(struct mfix *f, uint64_t blk, uint64_t n, uint64_t seq, bool vectored)
{
	uint8_t *buf = block_alloc(n * BDEV_BLOCK_SIZE);
	MFIX_CHECK(buf);
	struct iovec iov[64];
	int iovcnt = 0;
	for (uint64_t i = 0; i < n; i++)
		mfix_fill(buf + i * BDEV_BLOCK_SIZE, blk + i, seq);
	if (vectored && n <= 64) {
		for (uint64_t i = 0; i < n; i++)
			iov[iovcnt++] = (struct iovec){ buf + i * BDEV_BLOCK_SIZE, BDEV_BLOCK_SIZE };
	} else {
		iov[iovcnt++] = (struct iovec){ buf, n * BDEV_BLOCK_SIZE };
	}
	int rc = bdev_writev(f->dev, blk, iov, iovcnt);
	free(buf);
	return rc;
}

int mfix_read_seq_dev(struct bdev *dev, uint64_t blk, uint64_t *seq)
{
	uint8_t *buf = block_alloc(BDEV_BLOCK_SIZE);
	MFIX_CHECK(buf);
	int rc = bdev_read(dev, blk, buf, 1);
	if (rc == 0) {
		rc = mfix_check(buf, blk, seq);
		if (rc < 0)
			rc = -EBADMSG;
	}
	free(buf);
	return rc;
}

int mfix_read_seq(struct mfix *f, uint64_t blk, uint64_t *seq)
{
	return mfix_read_seq_dev(f->dev, blk, seq);
}

/* --- inspection ---------------------------------------------------------- */

uint8_t *mfix_mem_data(struct mfix *f, int leg, uint64_t blk)
{
	MFIX_CHECK(blk < f->data_blocks);
	return mem_disk_block(f->mem[leg], f->data_offset + blk);
}

int mfix_mem_seq(struct mfix *f, int leg, uint64_t blk, uint64_t *seq)
{
	return mfix_check(mfix_mem_data(f, leg, blk), blk, seq);
}

uint64_t mfix_compare_mem(struct mfix *f, uint64_t *first)
{
	uint64_t diff = 0;
	if (first)
		*first = UINT64_MAX;
	for (uint64_t b = 0; b < f->data_blocks; b++) {
		if (memcmp(mfix_mem_data(f, 0, b), mfix_mem_data(f, 1, b), BDEV_BLOCK_SIZE)) {
			if (first && diff == 0)
				*first = b;
			diff++;
		}
	}
	return diff;
}

int64_t mfix_compare_legs(struct mfix *f, uint64_t *first)
{
	const uint64_t step = 64;
	uint8_t *a = block_alloc(step * BDEV_BLOCK_SIZE);
	uint8_t *b = block_alloc(step * BDEV_BLOCK_SIZE);
	MFIX_CHECK(a && b);
	int64_t diff = 0;
	if (first)
		*first = UINT64_MAX;
	for (uint64_t blk = 0; blk < f->data_blocks; blk += step) {
		uint64_t n = f->data_blocks - blk < step ? f->data_blocks - blk : step;
		int rc = mirror_read_leg(f->m, 0, blk, a, n);
		if (!rc)
			rc = mirror_read_leg(f->m, 1, blk, b, n);
		if (rc) {
			diff = rc;
			break;
		}
		for (uint64_t i = 0; i < n; i++) {
			if (memcmp(a + i * BDEV_BLOCK_SIZE, b + i * BDEV_BLOCK_SIZE, BDEV_BLOCK_SIZE)) {
				if (first && diff == 0)
					*first = blk + i;
				diff++;
			}
		}
	}
	free(a);
	free(b);
	return diff;
}

bool mfix_disk_bit(struct mfix *f, int leg, uint64_t chunk)
{
	uint32_t nb = f->sb.bitmap_blocks;
	uint8_t *img = malloc((size_t)nb * BDEV_BLOCK_SIZE);
	uint8_t *bits = calloc((f->nchunks + 7) / 8 + 1, 1);
	MFIX_CHECK(img && bits);
	for (uint32_t i = 0; i < nb; i++)
		memcpy(img + (size_t)i * BDEV_BLOCK_SIZE,
		       mem_disk_block(f->mem[leg], f->sb.bitmap_offset + i), BDEV_BLOCK_SIZE);
	bitmap_decode_into(img, nb, f->nchunks, bits);
	bool set = bits[chunk / 8] & (1u << (chunk % 8));
	free(img);
	free(bits);
	return set;
}

int mfix_msb(struct mfix *f, int leg, struct msb *sb)
{
	int se[2];
	return msb_read(f->mem[leg], sb, se);
}

void mfix_save(struct mfix *f, int leg, struct mfix_image *img)
{
	img->nblocks = f->mem[leg]->nblocks;
	img->data = malloc(img->nblocks * BDEV_BLOCK_SIZE);
	cr_assert(img->data);
	for (uint64_t b = 0; b < img->nblocks; b++)
		memcpy(img->data + b * BDEV_BLOCK_SIZE, mem_disk_block(f->mem[leg], b),
		       BDEV_BLOCK_SIZE);
}

void mfix_restore(struct mfix *f, int leg, const struct mfix_image *img)
{
	cr_assert_eq(img->nblocks, f->mem[leg]->nblocks);
	for (uint64_t b = 0; b < img->nblocks; b++)
		memcpy(mem_disk_block(f->mem[leg], b), img->data + b * BDEV_BLOCK_SIZE,
		       BDEV_BLOCK_SIZE);
}

void mfix_image_free(struct mfix_image *img)
{
	free(img->data);
	img->data = NULL;
}
