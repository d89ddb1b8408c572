/*
 * Write-intent bitmap: the rules are in bitmap.h. In memory each chunk has
 * a dirty bit, a count of writes in flight, the time its last write ended,
 * and the generation of the bitmap write that made its bit durable. A
 * writer that sets a bit takes a new generation and waits until a bitmap
 * write of at least that generation has completed; whoever finds no bitmap
 * I/O running performs it for everybody (group commit, as a journal does).
 */
#include "blockdev/mirror/bitmap.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/crc32c.h"
#include "core/base/util.h"

#define BYTES_PER_BLOCK (BITMAP_BITS_PER_BLOCK / 8u)

struct bitmap {
	pthread_mutex_t lock;
	pthread_cond_t io_done;
	uint64_t nchunks;
	uint32_t nblocks;
	uint64_t clean_delay_ns;
	bitmap_write_fn write;
	void *ctx;

	uint8_t *bits;         /* 1 = dirty (wanted on disk) */
	uint32_t *inflight;    /* writes in flight per chunk */
	uint64_t *last_end_ns; /* when the chunk's last write ended */
	uint64_t *set_gen;     /* generation that carries the chunk's bit */
	uint8_t *block_changed;/* bitmap block differs from what is on disk */
	uint8_t *io_buf;       /* nblocks encoded blocks */

	uint64_t gen_next;     /* last generation handed out */
	uint64_t gen_durable;  /* every change up to this is on disk */
	bool io_busy;
	int io_error;          /* result of the last bitmap write */
};

static bool bit_get(const uint8_t *b, uint64_t i) { return b[i >> 3] & (1u << (i & 7)); }
static void bit_set(uint8_t *b, uint64_t i) { b[i >> 3] |= (uint8_t)(1u << (i & 7)); }
static void bit_clr(uint8_t *b, uint64_t i) { b[i >> 3] &= (uint8_t)~(1u << (i & 7)); }

uint32_t bitmap_blocks_for(uint64_t nchunks)
{
	uint64_t n = (nchunks + BITMAP_BITS_PER_BLOCK - 1) / BITMAP_BITS_PER_BLOCK;
	return (uint32_t)(n ? n : 1);
}

static uint32_t block_crc(const uint8_t *block)
{
	uint8_t copy[BDEV_BLOCK_SIZE];
	memcpy(copy, block, BDEV_BLOCK_SIZE);
	memset(copy + 4, 0, 4);
	return crc32c(0, copy, BDEV_BLOCK_SIZE);
}

void bitmap_encode_block(const uint8_t *bits, uint64_t nchunks, uint32_t index, void *block)
{
	uint8_t *b = block;
	memset(b, 0, BDEV_BLOCK_SIZE);
	uint32_t v = htole32(BITMAP_MAGIC);
	memcpy(b, &v, 4);
	v = htole32(index);
	memcpy(b + 8, &v, 4);
	uint64_t first_byte = (uint64_t)index * BYTES_PER_BLOCK;
	uint64_t total_bytes = (nchunks + 7) / 8;
	if (first_byte < total_bytes) {
		uint64_t n = total_bytes - first_byte;
		memcpy(b + BITMAP_HEADER, bits + first_byte, n < BYTES_PER_BLOCK ? n : BYTES_PER_BLOCK);
	}
	v = htole32(block_crc(b));
	memcpy(b + 4, &v, 4);
}

int bitmap_decode_into(const void *image, uint32_t nblocks, uint64_t nchunks, uint8_t *bits)
{
	int damaged = 0;
	uint64_t total_bytes = (nchunks + 7) / 8;
	for (uint32_t i = 0; i < nblocks; i++) {
		const uint8_t *b = (const uint8_t *)image + (size_t)i * BDEV_BLOCK_SIZE;
		uint32_t magic, crc, index;
		memcpy(&magic, b, 4);
		memcpy(&crc, b + 4, 4);
		memcpy(&index, b + 8, 4);
		bool ok = le32toh(magic) == BITMAP_MAGIC && le32toh(index) == i &&
			  le32toh(crc) == block_crc(b);
		uint64_t first = (uint64_t)i * BYTES_PER_BLOCK;
		for (uint64_t k = 0; k < BYTES_PER_BLOCK && first + k < total_bytes; k++)
			bits[first + k] |= ok ? b[BITMAP_HEADER + k] : 0xff;
		damaged += !ok;
	}
	if (nchunks % 8) /* keep bits past the last chunk zero */
		bits[total_bytes - 1] &= (uint8_t)((1u << (nchunks % 8)) - 1);
	return damaged;
}

struct bitmap *bitmap_create(uint64_t nchunks, const uint8_t *bits,
			     uint64_t clean_delay_ns, bitmap_write_fn write, void *ctx)
{
	struct bitmap *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->nchunks = nchunks;
	b->nblocks = bitmap_blocks_for(nchunks);
	b->clean_delay_ns = clean_delay_ns;
	b->write = write;
	b->ctx = ctx;
	b->bits = calloc((size_t)b->nblocks, BYTES_PER_BLOCK);
	b->inflight = calloc(nchunks, sizeof(*b->inflight));
	b->last_end_ns = calloc(nchunks, sizeof(*b->last_end_ns));
	b->set_gen = calloc(nchunks, sizeof(*b->set_gen));
	b->block_changed = calloc(b->nblocks, 1);
	b->io_buf = block_alloc((size_t)b->nblocks * BDEV_BLOCK_SIZE);
	if (!b->bits || !b->inflight || !b->last_end_ns || !b->set_gen ||
	    !b->block_changed || !b->io_buf) {
		bitmap_destroy(b);
		return NULL;
	}
	if (bits)
		memcpy(b->bits, bits, (nchunks + 7) / 8);
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->io_done, NULL);
	return b;
}

void bitmap_destroy(struct bitmap *b)
{
	if (!b)
		return;
	if (b->io_buf) { /* fully constructed: the sync objects exist */
		pthread_mutex_destroy(&b->lock);
		pthread_cond_destroy(&b->io_done);
	}
	free(b->bits);
	free(b->inflight);
	free(b->last_end_ns);
	free(b->set_gen);
	free(b->block_changed);
	free(b->io_buf);
	free(b);
}

/* Called with the lock held and io_busy set by us. Writes every changed
 * block (one contiguous range, encoded under the lock so the image is a
 * consistent snapshot), drops the lock for the I/O, retakes it. */
static int write_changed_blocks(struct bitmap *b)
{
	uint32_t first = b->nblocks, last = 0;
	for (uint32_t i = 0; i < b->nblocks; i++) {
		if (!b->block_changed[i])
			continue;
		first = i < first ? i : first;
		last = i;
	}
	uint64_t gen = b->gen_next;
	if (first == b->nblocks) {
		b->gen_durable = gen;
		return 0;
	}
	for (uint32_t i = first; i <= last; i++) {
		bitmap_encode_block(b->bits, b->nchunks, i, b->io_buf + (size_t)(i - first) * BDEV_BLOCK_SIZE);
		b->block_changed[i] = 0;
	}
	pthread_mutex_unlock(&b->lock);
	int rc = b->write(b->ctx, first, b->io_buf, last - first + 1);
	pthread_mutex_lock(&b->lock);
	if (rc < 0) {
		for (uint32_t i = first; i <= last; i++)
			b->block_changed[i] = 1;
		return rc;
	}
	if (gen > b->gen_durable)
		b->gen_durable = gen;
	return 0;
}

/* Lock held. Returns once generation `gen` is durable or a write failed. */
static int wait_durable(struct bitmap *b, uint64_t gen)
{
	while (b->gen_durable < gen) {
		if (b->io_busy) {
			pthread_cond_wait(&b->io_done, &b->lock);
			continue;
		}
		b->io_busy = true;
		int rc = write_changed_blocks(b);
		b->io_busy = false;
		pthread_cond_broadcast(&b->io_done);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void mark_changed(struct bitmap *b, uint64_t chunk)
{
	b->block_changed[chunk / BITMAP_BITS_PER_BLOCK] = 1;
}

int bitmap_start_write(struct bitmap *b, uint64_t first, uint64_t last)
{
	pthread_mutex_lock(&b->lock);
	uint64_t need = 0;
	bool added = false;
	for (uint64_t c = first; c <= last; c++) {
		b->inflight[c]++;
		if (!bit_get(b->bits, c)) {
			if (!added)
				b->gen_next++;
			added = true;
			bit_set(b->bits, c);
			b->set_gen[c] = b->gen_next;
			mark_changed(b, c);
		}
		if (b->set_gen[c] > need)
			need = b->set_gen[c];
	}
	int rc = wait_durable(b, need);
	if (rc < 0)
		for (uint64_t c = first; c <= last; c++)
			b->inflight[c]--;
	pthread_mutex_unlock(&b->lock);
	return rc;
}

void bitmap_end_write(struct bitmap *b, uint64_t first, uint64_t last)
{
	uint64_t now = now_ns();
	pthread_mutex_lock(&b->lock);
	for (uint64_t c = first; c <= last; c++) {
		b->inflight[c]--;
		b->last_end_ns[c] = now;
	}
	pthread_mutex_unlock(&b->lock);
}

uint64_t bitmap_clean(struct bitmap *b, uint64_t flushed_before_ns, bool all_in_sync)
{
	if (!all_in_sync)
		return 0;
	uint64_t now = now_ns(), cleared = 0;
	pthread_mutex_lock(&b->lock);
	for (uint64_t c = 0; c < b->nchunks; c++) {
		if (!bit_get(b->bits, c) || b->inflight[c] ||
		    b->last_end_ns[c] >= flushed_before_ns ||
		    b->last_end_ns[c] + b->clean_delay_ns > now)
			continue;
		bit_clr(b->bits, c);
		mark_changed(b, c);
		cleared++;
	}
	if (cleared) {
		b->gen_next++;
		(void)wait_durable(b, b->gen_next); /* a lost clear is harmless */
	}
	pthread_mutex_unlock(&b->lock);
	return cleared;
}

int bitmap_mark_dirty(struct bitmap *b, uint64_t first, uint64_t last)
{
	pthread_mutex_lock(&b->lock);
	b->gen_next++;
	for (uint64_t c = first; c <= last; c++) {
		bit_set(b->bits, c);
		b->set_gen[c] = b->gen_next;
		mark_changed(b, c);
	}
	int rc = wait_durable(b, b->gen_next);
	pthread_mutex_unlock(&b->lock);
	return rc;
}

bool bitmap_test(struct bitmap *b, uint64_t chunk)
{
	pthread_mutex_lock(&b->lock);
	bool v = bit_get(b->bits, chunk);
	pthread_mutex_unlock(&b->lock);
	return v;
}

uint64_t bitmap_count(struct bitmap *b)
{
	uint64_t n = 0;
	pthread_mutex_lock(&b->lock);
	for (uint64_t i = 0; i < (b->nchunks + 7) / 8; i++)
		n += (uint64_t)__builtin_popcount(b->bits[i]);
	pthread_mutex_unlock(&b->lock);
	return n;
}

void bitmap_snapshot(struct bitmap *b, uint8_t *out)
{
	pthread_mutex_lock(&b->lock);
	memcpy(out, b->bits, (b->nchunks + 7) / 8);
	pthread_mutex_unlock(&b->lock);
}

int bitmap_write_all(struct bitmap *b)
{
	pthread_mutex_lock(&b->lock);
	memset(b->block_changed, 1, b->nblocks);
	b->gen_next++;
	int rc = wait_durable(b, b->gen_next);
	pthread_mutex_unlock(&b->lock);
	return rc;
}

int bitmap_clear_all(struct bitmap *b)
{
	pthread_mutex_lock(&b->lock);
	memset(b->bits, 0, (size_t)b->nblocks * BYTES_PER_BLOCK);
	pthread_mutex_unlock(&b->lock);
	return bitmap_write_all(b);
}
