/*
 * superblock.h - the mirror superblock kept on each member disk.
 *
 * Layout of a member disk (block = 4 KiB, all integers little-endian):
 *
 *   block 0, 1        superblock slots A and B. A superblock with event
 *                     counter e is written to slot e % 2, so a write torn by
 *                     a power cut never destroys the previous good copy.
 *                     Reading takes the valid slot with the higher events.
 *   block 2 ..        write-intent bitmap (bitmap_blocks blocks, bitmap.h)
 *   data_offset ..    data area: data_blocks blocks, block i of the mirror
 *                     lives at data_offset + i on both disks
 *
 * The on-disk struct is msb_disk below (fixed offsets, 4096 bytes, crc32c
 * of the whole block with the crc field zero). msb_encode/msb_decode
 * convert to/from struct msb. Errors from msb_decode: -EBADMSG wrong magic
 * (not a Catamaran disk), -EPROTO unsupported version, -EUCLEAN checksum
 * mismatch or impossible geometry.
 *
 * No locking here: callers (mirror.c, tools) serialise superblock updates.
 */
#ifndef CAT_BLOCKDEV_MIRROR_SUPERBLOCK_H
#define CAT_BLOCKDEV_MIRROR_SUPERBLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blockdev/bdev.h"
#include "core/base/error.h"

#define MSB_MAGIC 0x31524d4e4d544143ull /* "CATMNMR1" read as LE bytes */
#define MSB_VERSION 1
#define MSB_SLOTS 2
#define MSB_BITMAP_START 2

enum member_state {
	MEMBER_IN_SYNC = 0,    /* holds every acknowledged write */
	MEMBER_FAILED = 1,     /* missed writes; never a source */
	MEMBER_REBUILDING = 2, /* being filled from the other disk */
};

/* In-memory superblock. */
struct msb {
	uint32_t version;
	uint8_t uuid[16];          /* array UUID, same on both disks */
	uint32_t disk_index;       /* 0 or 1: which leg this disk is */
	uint64_t events;           /* bumped on every state change */
	uint8_t member_state[2];   /* as this disk last knew them */
	bool clean;                /* shut down cleanly: no resync needed */
	uint64_t disk_blocks;      /* blocks of this disk in use by the array */
	uint64_t data_offset;      /* first data block on the disk */
	uint64_t data_blocks;      /* mirror size in blocks */
	uint32_t chunk_blocks;     /* bitmap granularity, a power of two */
	uint64_t bitmap_offset;    /* first bitmap block (MSB_BITMAP_START) */
	uint32_t bitmap_blocks;
	uint64_t ctime_ns, utime_ns;   /* created, last written (realtime) */
};

/* Geometry for a disk of disk_blocks blocks; chunk_blocks 0 = automatic
 * (1 MiB chunks, doubled until the bitmap has at most 2^20 chunks).
 * Returns -EINVAL if the disk is too small (< 2 MiB) or chunk_blocks is not
 * a power of two. Fills geometry fields of sb only. */
int msb_geometry(struct msb *sb, uint64_t disk_blocks, uint32_t chunk_blocks);

uint64_t msb_nchunks(const struct msb *sb);

void msb_encode(const struct msb *sb, void *block);
int msb_decode(const void *block, struct msb *sb);

/* Read both slots of a disk and return the newest valid superblock.
 * *slot_errors gets, per slot, 0 or the decode error. Returns 0, or the
 * decode error when neither slot is valid, or an I/O error. */
int msb_read(struct bdev *disk, struct msb *sb, int slot_errors[2]);

/* Write sb to slot events % 2 (no flush; the caller flushes). */
int msb_write(struct bdev *disk, const struct msb *sb);

const char *member_state_name(int state);

/* True when sb describes the same array geometry as ref (uuid excluded). */
bool msb_same_geometry(const struct msb *a, const struct msb *b);

/* Do two valid superblocks describe the two halves of one array? Returns
 * NULL if so, else why not ("belong to different arrays (UUID ... vs ...)",
 * ...), in the caller's buffer. */
const char *msb_pair_problem(const struct msb *a, const struct msb *b, char *buf, size_t len);

#endif
