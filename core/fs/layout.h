/*
 * layout.h - the on-disk format of the Catamaran filesystem (see README.md,
 * "On-disk format", for the prose version a reader can be written from).
 *
 * The filesystem lives on a bdev of 4 KiB blocks (the mirror's data area).
 * All integers are little-endian; every structure below is encoded and
 * decoded field by field (never memcpy'd from a struct), so the layout is
 * what the *_encode/_decode functions say, not what the compiler pads.
 *
 *   block 0                      superblock
 *   [journal_start, +jblocks)    journal: block 0 is the journal header,
 *                                the rest a circular log of transactions
 *   [ibitmap_start, +ibm_blocks) inode bitmap (bit i = inode i in use)
 *   [bbitmap_start, +bbm_blocks) block bitmap (bit b = block b in use; the
 *                                metadata area itself is marked in use)
 *   [itable_start,  +it_blocks)  inode table, 16 inodes of 256 bytes a block
 *   [data_start, nblocks)        file data, index, directory blocks
 *
 * Checksums are crc32c (core/base/crc32c.h) over the structure with its crc
 * field taken as zero. Every metadata block carries one; file data blocks do
 * not yet (INODE_FLAG_DATA_CRC is reserved for per-block data checksums).
 *
 * Errors: *_decode return 0, or -EUCLEAN when magic, crc or a range check
 * fails (the caller names the damaged object).
 */
#ifndef CAT_FS_LAYOUT_H
#define CAT_FS_LAYOUT_H

#include <stdint.h>

#define FS_BLOCK_SIZE 4096u
#define FS_VERSION 1u

#define FS_SB_MAGIC       0x3153467461434154ull /* "TACatFS1" */
#define FS_JHDR_MAGIC     0x4a53467461434154ull /* journal header */
#define FS_JDESC_MAGIC    0x4a444543u           /* "CEDJ" descriptor */
#define FS_JCOMMIT_MAGIC  0x4a434d54u           /* "TMCJ" commit */
#define FS_INDEX_MAGIC    0x58444e49u           /* "INDX" */
#define FS_DIRHDR_MAGIC   0x52484944u           /* "DIHR" */
#define FS_BUCKET_MAGIC   0x4b435542u           /* "BUCK" */

#define FS_ROOT_INO 1u        /* inode 0 is never used */
#define FS_ORPHAN_INO 2u      /* hidden directory of orphans, named by inode number */
#define FS_INODE_SIZE 256u
#define FS_INODES_PER_BLOCK (FS_BLOCK_SIZE / FS_INODE_SIZE)
#define FS_NAME_MAX 255u
#define FS_NDIRECT 12u
#define FS_INDEX_FANOUT 511u  /* pointers per index block (8-byte header) */
#define FS_MAX_HEIGHT 4u      /* 12 + 511^4 blocks: > 250 TiB per file */
#define FS_LINK_MAX 65000u
#define FS_SYMLINK_MAX 4095u

/* ---- superblock (block 0) ---- */
struct fs_super {
	uint64_t magic;
	uint32_t version;
	uint32_t flags;
	uint8_t uuid[16];
	uint64_t nblocks;
	uint64_t journal_start, journal_blocks;
	uint64_t ibitmap_start, ibitmap_blocks;
	uint64_t bbitmap_start, bbitmap_blocks;
	uint64_t itable_start, itable_blocks;
	uint64_t ninodes;
	uint64_t data_start;
	uint64_t hash_seed;       /* directory hash key */
	uint64_t orphan_ino;      /* the orphan directory (FS_ORPHAN_INO) */
	uint64_t created_ns;
};

/* ---- journal ---- */
/* Journal header (first journal block). The log is empty when
 * tail_seq == the seq found at tail_pos fails to validate. */
struct fs_jhdr {
	uint64_t magic;
	uint64_t epoch;     /* bumped at every mount; a tx of another epoch is stale */
	uint64_t tail_seq;  /* seq of the oldest transaction still to replay */
	uint64_t tail_pos;  /* its descriptor, as an offset in the log area */
};

/* A transaction: descriptor block(s), then the journaled blocks' new
 * contents, then one commit block. Each descriptor lists up to
 * FS_JDESC_MAX home block numbers; the data of those blocks follows it. */
#define FS_JDESC_MAX 500u
struct fs_jdesc {
	uint32_t magic;
	uint32_t count;      /* home blocks listed here (1..FS_JDESC_MAX) */
	uint64_t epoch, seq;
	uint32_t index;      /* 0-based descriptor number within the tx */
	uint32_t last;       /* 1 if the commit block follows this group */
	uint64_t home[FS_JDESC_MAX];
};
struct fs_jcommit {
	uint32_t magic;
	uint32_t ndesc;      /* descriptors in the tx */
	uint64_t epoch, seq;
	uint64_t nblocks;    /* journaled blocks in the tx */
	uint32_t data_crc;   /* crc32c chained over every descriptor and data block */
	uint64_t commit_ns;
};

/* ---- inodes (256 bytes) ---- */
#define INODE_FLAG_DATA_CRC 0x1u /* reserved: per-block data checksums */
struct fs_inode {
	uint32_t mode;       /* S_IFREG/S_IFDIR/S_IFLNK | permission bits; 0 = free */
	uint32_t uid, gid;
	uint32_t nlink;
	uint32_t flags;
	uint32_t generation;
	uint64_t size;
	uint64_t blocks;     /* allocated blocks: data + index */
	int64_t atime_sec, mtime_sec, ctime_sec;
	uint32_t atime_nsec, mtime_nsec, ctime_nsec;
	uint32_t height;     /* levels of the index tree below `root` */
	uint64_t direct[FS_NDIRECT]; /* logical blocks 0..11; 0 = hole */
	uint64_t root;       /* index tree for logical blocks >= 12; 0 = none */
	uint64_t reserved;   /* zero */
};

/* ---- index blocks: 8-byte header (magic, crc) + 511 block pointers ---- */

/* ---- directories (see dir.h for the algorithm) ----
 * Logical block 0 of a directory: header. Logical blocks
 * [1, 1 + FS_DIR_TABLE_BLOCKS): the bucket table, 2^depth little-endian
 * u32 bucket numbers, FS_DIR_TABLE_PER_BLOCK per block after a 4-byte crc
 * (slot s: block 1 + s / 1023, byte 4 + 4 * (s % 1023)); only the blocks
 * the current depth uses exist. Bucket b lives at logical block
 * FS_DIR_BUCKET0 + b. */
#define FS_DIR_MAX_DEPTH 20u
#define FS_DIR_TABLE_PER_BLOCK 1023u
#define FS_DIR_TABLE_BLOCKS (((1u << FS_DIR_MAX_DEPTH) + FS_DIR_TABLE_PER_BLOCK - 1) / FS_DIR_TABLE_PER_BLOCK)
#define FS_DIR_BUCKET0 (1u + FS_DIR_TABLE_BLOCKS)
struct fs_dirhdr {
	uint32_t magic;
	uint32_t depth;      /* global depth of the bucket table */
	uint32_t nbuckets;   /* buckets allocated */
	uint64_t nentries;   /* entries, "." and ".." not counted */
	uint64_t parent;     /* inode number of ".." */
};
/* Bucket block: header {magic u32, crc u32, local_depth u32, count u32,
 * used u32 (bytes of entries)} = 20 bytes, then `count` entries sorted by
 * key: {key u64, ino u64, type u8, namelen u8, name[namelen]}. */
#define FS_BUCKET_HDR 20u
#define FS_DIRENT_HDR 18u

/* Encoders write a whole FS_BLOCK_SIZE block (or, for inodes, a 256-byte
 * slot) including the crc; decoders verify it. */
void fs_super_encode(const struct fs_super *s, void *blk);
int fs_super_decode(const void *blk, struct fs_super *s);
void fs_jhdr_encode(const struct fs_jhdr *h, void *blk);
int fs_jhdr_decode(const void *blk, struct fs_jhdr *h);
void fs_jdesc_encode(const struct fs_jdesc *d, void *blk);
int fs_jdesc_decode(const void *blk, struct fs_jdesc *d);
void fs_jcommit_encode(const struct fs_jcommit *c, void *blk);
int fs_jcommit_decode(const void *blk, struct fs_jcommit *c);
void fs_inode_encode(const struct fs_inode *in, void *slot);
int fs_inode_decode(const void *slot, struct fs_inode *in);
/* Index blocks are used in place: pointers are read and written with
 * fs_index_get/set; fs_index_seal recomputes the crc before the block is
 * journaled, fs_index_check verifies it after a read. */
uint64_t fs_index_get(const void *blk, unsigned i);
void fs_index_set(void *blk, unsigned i, uint64_t ptr);
void fs_index_init(void *blk);
void fs_index_seal(void *blk);
int fs_index_check(const void *blk);
void fs_dirhdr_encode(const struct fs_dirhdr *h, void *blk);
int fs_dirhdr_decode(const void *blk, struct fs_dirhdr *h);
/* Bucket and table-block crc helpers (their contents are managed by dir.c). */
void fs_bucket_seal(void *blk);
int fs_bucket_check(const void *blk);
void fs_dirtable_seal(void *blk);   /* crc at byte 0 */
int fs_dirtable_check(const void *blk);

/* Geometry chosen by format for a volume of nblocks blocks. */
int fs_geometry(uint64_t nblocks, uint64_t ninodes_hint, struct fs_super *s);

/* Little-endian helpers shared by the encoders and dir.c. */
static inline void put_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void put_le32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline void put_le64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline uint16_t get_le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t get_le32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = (v << 8) | p[i]; return v; }
static inline uint64_t get_le64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; return v; }

#endif
