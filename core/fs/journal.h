/*
 * journal.h - physical redo journal with group commit and checkpointing.
 *
 * Every change to the filesystem (metadata and file data alike) is made in
 * cached buffers inside a transaction and reaches the disk first as a copy
 * in the log, then (checkpoint) at its home location. An operation:
 *
 *     tx_begin(j, credits, &tx)      join the running transaction
 *     tx_add(&tx, buf)               before modifying buf (<= credits times)
 *     ... modify buf->data ...
 *     seq = tx_end(&tx)              the changes belong to transaction seq
 *     journal_wait(j, seq, durable)  wait until seq is in the log (and
 *                                    flushed to both disks if durable)
 *
 * Group commit (xv6 log.c's begin_op/end_op, grown up): all operations that
 * begin while a transaction is running join it. The commit thread closes the
 * running transaction when someone waits for it (or it is full, or a second
 * has passed), waits for its operations to end, copies the buffers (new
 * operations are held back only for that copy), opens the next transaction,
 * and writes descriptor + blocks + commit block in one vectored write. The
 * commit block carries a crc32c over the descriptors and data, so a
 * transaction whose blocks did not all reach the disk is ignored at replay;
 * no flush is needed between data and commit. One flush then serves every
 * durable waiter.
 *
 * Checkpointing: committed copies wait in the checkpoint set (newest copy per
 * block) until the checkpoint thread writes them home, flushes, and advances
 * the journal header's tail (written and flushed before the space is reused).
 * It runs when the log is half full, when the set exceeds its memory share,
 * and at close. A full log holds tx_begin back until space returns; it never
 * deadlocks because operations take no journal resources before tx_begin and
 * commit/checkpoint take no inode locks.
 *
 * Replay (at open, and by fsck): from the header's tail, each transaction
 * whose epoch, seq chain, descriptor crcs and commit crc are valid is written
 * home; the first invalid one ends the log. Then flush, and the header moves
 * to the end with a new epoch (so stale transactions from an earlier epoch
 * further on in the log can never validate). Replay is idempotent: a crash
 * during replay replays again.
 *
 * Locking: tx_begin() must be called with no buffer locks held; inode locks
 * may be held (the lock order is inode locks, then tx_begin). A transaction
 * never waits for an inode lock, so commit cannot deadlock with operations.
 *
 * Errors: -EIO (or the device's error) from commit/flush/checkpoint: the
 * journal then turns read-only (every later tx_begin and wait returns -EROFS
 * or the original error) - it never acknowledges what it could not write.
 * -EUCLEAN from open/replay when the header is corrupt.
 */
#ifndef CAT_FS_JOURNAL_H
#define CAT_FS_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>

struct bdev;
struct bcache;
struct buf;
struct fs_super;
struct journal;

struct tx {
	struct journal *j;
	uint64_t seq;
	unsigned credits, used;
};

struct journal_opts {
	bool sync;                 /* every journal_wait is durable */
	unsigned commit_interval_ms; /* commit a non-empty tx at least this often (default 1000) */
};

/* Replay the log into the home locations and leave it empty.
 * *replayed = number of transactions applied. Used by journal_open and fsck. */
int journal_replay(struct bdev *dev, const struct fs_super *sb, uint64_t *replayed);

/* Format: write an empty journal header. */
int journal_format(struct bdev *dev, const struct fs_super *sb);

/* Replays, then starts the commit and checkpoint threads. */
int journal_open(struct bdev *dev, struct bcache *c, const struct fs_super *sb,
		 const struct journal_opts *o, struct journal **out);
/* Commits and checkpoints everything, flushes, stops the threads. */
int journal_close(struct journal *j);

int tx_begin(struct journal *j, unsigned credits, struct tx *tx);
/* buf joins the transaction (holds a reference until it is committed). */
void tx_add(struct tx *tx, struct buf *b);
uint64_t tx_end(struct tx *tx);

/* Wait until transaction seq is in the log; durable: and flushed. */
int journal_wait(struct journal *j, uint64_t seq, bool durable);
/* Commit whatever is running and flush (syncfs). */
int journal_sync(struct journal *j);
/* Largest credits one tx_begin may ask for. */
unsigned journal_max_credits(const struct journal *j);
/* Sticky error (0 if healthy). */
int journal_error(const struct journal *j);

struct journal_stats {
	uint64_t commits, ops, blocks, flushes, checkpoints;
	uint64_t log_blocks, log_used, ckpt_set_blocks;
	double ops_per_commit;
};
void journal_get_stats(struct journal *j, struct journal_stats *st);

#endif
