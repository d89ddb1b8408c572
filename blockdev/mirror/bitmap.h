/*
 * bitmap.h - the write-intent bitmap (md's bitmap, DRBD's activity log).
 *
 * One bit per chunk of chunk_blocks data blocks. Bit set on disk = "the two
 * legs may differ in this chunk". The rules that make crash recovery visit
 * only dirty chunks and still be correct:
 *
 *  1. Before the first write to a chunk whose bit is clear on disk, the bit
 *     is set, written to every live leg and flushed. Concurrent writers to
 *     other clean chunks share that one bitmap write + flush (group set).
 *  2. A bit is cleared only when the chunk has had no write in flight for a
 *     while (clean_delay), every leg is in sync, and both legs have been
 *     flushed after the chunk's last write completed. Clearing is lazy and
 *     batched (a lost clear only costs a needless resync).
 *  3. While a leg is failed or rebuilding, no bit is ever cleared, so the
 *     bitmap lists every chunk written while degraded.
 *
 * On-disk block: 16-byte header { le32 magic "CBMP", le32 crc32c of the
 * block with crc zero, le32 block index, le32 reserved } then 4080 bytes of
 * bits (chunk c is bit c % 32640 of block c / 32640, LSB first). A block
 * whose crc fails reads as all ones (every chunk dirty): never trust a
 * damaged bitmap.
 *
 * Locking: one mutex guards the in-memory state; one I/O at a time writes
 * bitmap blocks (io_busy flag + condition variable), so an older image of a
 * block can never overtake a newer one. The caller provides the legs to
 * write through callbacks, because only the mirror knows which are live.
 */
#ifndef CAT_BLOCKDEV_MIRROR_BITMAP_H
#define CAT_BLOCKDEV_MIRROR_BITMAP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "blockdev/bdev.h"

#define BITMAP_HEADER 16u
#define BITMAP_BITS_PER_BLOCK ((BDEV_BLOCK_SIZE - BITMAP_HEADER) * 8u) /* 32640 */
#define BITMAP_MAGIC 0x504d4243u /* "CBMP" */

/* Write `nblocks` bitmap blocks starting at bitmap-relative index `first`
 * from buf to every live leg and flush them. Returns 0 when at least one
 * leg took it. (Every bitmap write is flushed, clears too: a generation is
 * only called durable after a flush, whichever change it carried.) */
typedef int (*bitmap_write_fn)(void *ctx, uint32_t first, const void *buf,
			       uint32_t nblocks);

struct bitmap;

uint32_t bitmap_blocks_for(uint64_t nchunks);

/* Encode/decode the on-disk image of nchunks bits (nblocks blocks).
 * Decode ORs into bits (so two legs' bitmaps union) and returns how many
 * blocks failed their checksum (their chunks are all set). */
void bitmap_encode_block(const uint8_t *bits, uint64_t nchunks, uint32_t index, void *block);
int bitmap_decode_into(const void *image, uint32_t nblocks, uint64_t nchunks, uint8_t *bits);

/* In-memory bitmap starting from `bits` (nchunks bits, 1 = dirty on disk);
 * clean_delay_ns: idle time before a clean chunk's bit may be cleared. */
struct bitmap *bitmap_create(uint64_t nchunks, const uint8_t *bits,
			     uint64_t clean_delay_ns, bitmap_write_fn write, void *ctx);
void bitmap_destroy(struct bitmap *b);

/* Rule 1: call before writing chunks [first, last]; returns once their bits
 * are durable (0) or the bitmap could not be written (-errno). Every
 * successful start_write must be paired with end_write. */
int bitmap_start_write(struct bitmap *b, uint64_t first, uint64_t last);
void bitmap_end_write(struct bitmap *b, uint64_t first, uint64_t last);

/* Rule 2: clear the bits of idle chunks whose last write completed before
 * flushed_before_ns (the start time of a flush of every leg that completed).
 * Pass all_in_sync false to clear nothing (rule 3). Returns chunks cleared. */
uint64_t bitmap_clean(struct bitmap *b, uint64_t flushed_before_ns, bool all_in_sync);

/* Mark [first,last] dirty and write it (used by resync bookkeeping). */
int bitmap_mark_dirty(struct bitmap *b, uint64_t first, uint64_t last);

bool bitmap_test(struct bitmap *b, uint64_t chunk);
uint64_t bitmap_count(struct bitmap *b);

/* Copy the current dirty bits (nchunks bits) to out. */
void bitmap_snapshot(struct bitmap *b, uint8_t *out);

/* Write (and flush) the whole bitmap image, e.g. the union of both legs'
 * bitmaps at assembly, so each leg carries every dirty bit. */
int bitmap_write_all(struct bitmap *b);

/* Clear every bit (clean shutdown, no write in flight, legs flushed and in
 * sync) and write it. */
int bitmap_clear_all(struct bitmap *b);

#endif
