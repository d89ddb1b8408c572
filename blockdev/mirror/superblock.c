#include "blockdev/mirror/superblock.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/mirror/bitmap.h"
#include "core/base/crc32c.h"
#include "core/base/util.h"

/* Byte offsets inside the 4096-byte superblock block (see README.md). */
enum {
	OFF_MAGIC = 0,          /* le64 */
	OFF_VERSION = 8,        /* le32 */
	OFF_CRC = 12,           /* le32, crc32c of the block with this field 0 */
	OFF_UUID = 16,          /* 16 bytes */
	OFF_DISK_INDEX = 32,    /* le32 */
	OFF_FLAGS = 36,         /* le32, bit 0 = clean */
	OFF_EVENTS = 40,        /* le64 */
	OFF_MEMBER_STATE = 48,  /* 2 bytes */
	OFF_DISK_BLOCKS = 56,   /* le64 */
	OFF_DATA_OFFSET = 64,   /* le64 */
	OFF_DATA_BLOCKS = 72,   /* le64 */
	OFF_CHUNK_BLOCKS = 80,  /* le32 */
	OFF_BITMAP_BLOCKS = 84, /* le32 */
	OFF_BITMAP_OFFSET = 88, /* le64 */
	OFF_CTIME = 96,         /* le64 */
	OFF_UTIME = 104,        /* le64 */
};

#define FLAG_CLEAN 1u
#define DATA_ALIGN_BLOCKS 256u        /* data area starts on a 1 MiB boundary */
#define DEFAULT_CHUNK_BLOCKS 256u     /* 1 MiB */
#define MAX_AUTO_CHUNKS (1ull << 20)

static void put32(uint8_t *b, int off, uint32_t v) { v = htole32(v); memcpy(b + off, &v, 4); }
static void put64(uint8_t *b, int off, uint64_t v) { v = htole64(v); memcpy(b + off, &v, 8); }
static uint32_t get32(const uint8_t *b, int off) { uint32_t v; memcpy(&v, b + off, 4); return le32toh(v); }
static uint64_t get64(const uint8_t *b, int off) { uint64_t v; memcpy(&v, b + off, 8); return le64toh(v); }

static bool is_pow2(uint64_t v) { return v && !(v & (v - 1)); }

uint64_t msb_nchunks(const struct msb *sb)
{
	return (sb->data_blocks + sb->chunk_blocks - 1) / sb->chunk_blocks;
}

int msb_geometry(struct msb *sb, uint64_t disk_blocks, uint32_t chunk_blocks)
{
	if (chunk_blocks && !is_pow2(chunk_blocks))
		return -EINVAL;
	if (disk_blocks < 2 * DATA_ALIGN_BLOCKS)
		return -EINVAL;
	uint64_t chunk = chunk_blocks ? chunk_blocks : DEFAULT_CHUNK_BLOCKS;
	while (!chunk_blocks && (disk_blocks + chunk - 1) / chunk > MAX_AUTO_CHUNKS)
		chunk <<= 1;
	if (chunk > UINT32_MAX)
		return -EINVAL;
	/* Size the bitmap for the whole disk; the data area is a little less. */
	uint32_t bm_blocks = bitmap_blocks_for((disk_blocks + chunk - 1) / chunk);
	uint64_t data_offset = MSB_BITMAP_START + bm_blocks;
	data_offset = (data_offset + DATA_ALIGN_BLOCKS - 1) / DATA_ALIGN_BLOCKS * DATA_ALIGN_BLOCKS;
	if (data_offset >= disk_blocks)
		return -EINVAL;
	sb->disk_blocks = disk_blocks;
	sb->chunk_blocks = (uint32_t)chunk;
	sb->bitmap_offset = MSB_BITMAP_START;
	sb->bitmap_blocks = bm_blocks;
	sb->data_offset = data_offset;
	sb->data_blocks = disk_blocks - data_offset;
	return 0;
}

void msb_encode(const struct msb *sb, void *block)
{
	uint8_t *b = block;
	memset(b, 0, BDEV_BLOCK_SIZE);
	put64(b, OFF_MAGIC, MSB_MAGIC);
	put32(b, OFF_VERSION, sb->version);
	memcpy(b + OFF_UUID, sb->uuid, 16);
	put32(b, OFF_DISK_INDEX, sb->disk_index);
	put32(b, OFF_FLAGS, sb->clean ? FLAG_CLEAN : 0);
	put64(b, OFF_EVENTS, sb->events);
	b[OFF_MEMBER_STATE] = sb->member_state[0];
	b[OFF_MEMBER_STATE + 1] = sb->member_state[1];
	put64(b, OFF_DISK_BLOCKS, sb->disk_blocks);
	put64(b, OFF_DATA_OFFSET, sb->data_offset);
	put64(b, OFF_DATA_BLOCKS, sb->data_blocks);
	put32(b, OFF_CHUNK_BLOCKS, sb->chunk_blocks);
	put32(b, OFF_BITMAP_BLOCKS, sb->bitmap_blocks);
	put64(b, OFF_BITMAP_OFFSET, sb->bitmap_offset);
	put64(b, OFF_CTIME, sb->ctime_ns);
	put64(b, OFF_UTIME, sb->utime_ns);
	put32(b, OFF_CRC, crc32c(0, b, BDEV_BLOCK_SIZE));
}

/* Geometry a writer of this version could have produced. */
static bool geometry_valid(const struct msb *sb)
{
	if (!is_pow2(sb->chunk_blocks) || sb->bitmap_offset != MSB_BITMAP_START)
		return false;
	if (sb->data_blocks == 0 || sb->data_offset < sb->bitmap_offset + sb->bitmap_blocks)
		return false;
	if (sb->data_offset > sb->disk_blocks ||
	    sb->data_blocks != sb->disk_blocks - sb->data_offset)
		return false;
	return sb->bitmap_blocks >= bitmap_blocks_for(msb_nchunks(sb));
}

int msb_decode(const void *block, struct msb *sb)
{
	const uint8_t *b = block;
	if (get64(b, OFF_MAGIC) != MSB_MAGIC)
		return -EBADMSG;
	uint8_t copy[BDEV_BLOCK_SIZE];
	memcpy(copy, b, sizeof(copy));
	put32(copy, OFF_CRC, 0);
	if (crc32c(0, copy, sizeof(copy)) != get32(b, OFF_CRC))
		return -EUCLEAN;
	memset(sb, 0, sizeof(*sb));
	sb->version = get32(b, OFF_VERSION);
	if (sb->version != MSB_VERSION)
		return -EPROTO;
	memcpy(sb->uuid, b + OFF_UUID, 16);
	sb->disk_index = get32(b, OFF_DISK_INDEX);
	sb->clean = get32(b, OFF_FLAGS) & FLAG_CLEAN;
	sb->events = get64(b, OFF_EVENTS);
	sb->member_state[0] = b[OFF_MEMBER_STATE];
	sb->member_state[1] = b[OFF_MEMBER_STATE + 1];
	sb->disk_blocks = get64(b, OFF_DISK_BLOCKS);
	sb->data_offset = get64(b, OFF_DATA_OFFSET);
	sb->data_blocks = get64(b, OFF_DATA_BLOCKS);
	sb->chunk_blocks = get32(b, OFF_CHUNK_BLOCKS);
	sb->bitmap_blocks = get32(b, OFF_BITMAP_BLOCKS);
	sb->bitmap_offset = get64(b, OFF_BITMAP_OFFSET);
	sb->ctime_ns = get64(b, OFF_CTIME);
	sb->utime_ns = get64(b, OFF_UTIME);
	if (sb->disk_index > 1 || sb->member_state[0] > MEMBER_REBUILDING ||
	    sb->member_state[1] > MEMBER_REBUILDING || !geometry_valid(sb))
		return -EUCLEAN;
	return 0;
}

int msb_read(struct bdev *disk, struct msb *sb, int slot_errors[2])
{
	uint8_t *buf = block_alloc(MSB_SLOTS * BDEV_BLOCK_SIZE);
	if (!buf)
		return -ENOMEM;
	int rc = bdev_read(disk, 0, buf, MSB_SLOTS);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	struct msb slot[MSB_SLOTS];
	int err[MSB_SLOTS], best = -1;
	for (int i = 0; i < MSB_SLOTS; i++) {
		err[i] = msb_decode(buf + i * BDEV_BLOCK_SIZE, &slot[i]);
		if (slot_errors)
			slot_errors[i] = err[i];
		if (!err[i] && (best < 0 || slot[i].events > slot[best].events))
			best = i;
	}
	free(buf);
	if (best < 0) /* "not ours" only when neither slot is even damaged-ours */
		return err[0] == -EBADMSG ? err[1] : err[0];
	*sb = slot[best];
	return 0;
}

int msb_write(struct bdev *disk, const struct msb *sb)
{
	uint8_t *buf = block_alloc(BDEV_BLOCK_SIZE);
	if (!buf)
		return -ENOMEM;
	msb_encode(sb, buf);
	int rc = bdev_write(disk, sb->events % MSB_SLOTS, buf, 1);
	free(buf);
	return rc;
}

const char *member_state_name(int state)
{
	switch (state) {
	case MEMBER_IN_SYNC: return "in-sync";
	case MEMBER_FAILED: return "failed";
	case MEMBER_REBUILDING: return "rebuilding";
	case 3: return "missing";
	}
	return "unknown";
}

bool msb_same_geometry(const struct msb *a, const struct msb *b)
{
	return a->disk_blocks == b->disk_blocks && a->data_offset == b->data_offset &&
	       a->data_blocks == b->data_blocks && a->chunk_blocks == b->chunk_blocks &&
	       a->bitmap_offset == b->bitmap_offset && a->bitmap_blocks == b->bitmap_blocks;
}

const char *msb_pair_problem(const struct msb *a, const struct msb *b, char *buf, size_t len)
{
	if (memcmp(a->uuid, b->uuid, 16)) {
		char u0[37], u1[37];
		uuid_format(a->uuid, u0);
		uuid_format(b->uuid, u1);
		snprintf(buf, len, "belong to different arrays (UUID %s vs %s)", u0, u1);
	} else if (a->disk_index == b->disk_index) {
		snprintf(buf, len, "both claim to be disk %u of the array (a copied disk?)", a->disk_index + 1);
	} else if (!msb_same_geometry(a, b)) {
		snprintf(buf, len, "disagree on the array's size or layout");
	} else {
		return NULL;
	}
	return buf;
}
