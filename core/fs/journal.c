/*
 * journal.c - group commit, checkpointing and replay (contract: journal.h).
 *
 * State under j->mu: the running transaction (seq, open handles, reserved
 * credits, joined buffers), how far commits and flushes have got
 * (written_seq, flushed_seq, what waiters want), the log's occupancy (head,
 * the committed-but-not-checkpointed transactions), and the checkpoint set
 * (block number -> newest committed copy). Two threads: the committer and
 * the checkpointer. Neither holds j->mu across I/O.
 *
 * Log positions are offsets in [0, nlog) from block journal_start + 1; a
 * transaction's blocks may wrap around the end.
 */
#include "core/fs/journal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blockdev/bdev.h"
#include "core/base/crc32c.h"
#include "core/base/log.h"
#include "core/base/util.h"
#include "core/fs/bcache.h"
#include "core/fs/layout.h"

#define MAX_IOV_PER_WRITE 256
#define CKPT_BATCH 64

struct cp_entry {           /* newest committed copy of a home block */
	uint64_t blkno, seq;
	uint8_t *data;
	uint8_t *ckpt_data;     /* the copy a running checkpoint writes, when
				   data was replaced by a newer one meanwhile */
	struct cp_entry *next;
};

struct txrec {              /* a committed tx still needed in the log */
	uint64_t seq, pos, len;
};

struct journal {
	struct bdev *dev;
	struct bcache *cache;
	struct fs_super sb;
	uint64_t logbase, nlog, tx_max;
	struct journal_opts opts;
	uint64_t epoch;

	pthread_mutex_t mu;
	pthread_cond_t cv_begin, cv_done, cv_commit, cv_ckpt, cv_space;

	/* running transaction */
	uint64_t run_seq, run_ops, run_credits, run_start_ns;
	unsigned run_handles;
	bool run_locked;
	struct buf **run_bufs;
	size_t run_n, run_cap;

	/* progress */
	uint64_t written_seq, flushed_seq, want_seq, want_flush_seq;
	int error;
	bool stopping, ckpt_wanted;

	/* log occupancy */
	uint64_t head_pos, used;
	struct txrec *recs;
	size_t nrecs, recs_cap;

	/* checkpoint set */
	struct cp_entry **cp_hash;
	size_t cp_nhash, cp_count;
	bool ckpt_active;
	uint64_t ckpt_target;

	pthread_t committer, checkpointer;
	struct journal_stats st;
};

static uint64_t desc_count(uint64_t n) { return (n + FS_JDESC_MAX - 1) / FS_JDESC_MAX; }
static uint64_t tx_len(uint64_t n) { return n + desc_count(n) + 1; }

static bool home_ok(const struct fs_super *sb, uint64_t b)
{
	return b < sb->nblocks &&
	       !(b >= sb->journal_start && b < sb->journal_start + sb->journal_blocks);
}

/* ---- log I/O ---- */

/* Write or read n blocks at log position pos (wrapping) from/to bufs[]. */
static int log_io(struct bdev *dev, uint64_t logbase, uint64_t nlog, bool write,
		  uint64_t pos, uint8_t **bufs, uint64_t n)
{
	struct iovec iov[MAX_IOV_PER_WRITE];
	uint64_t done = 0;
	while (done < n) {
		uint64_t p = (pos + done) % nlog;
		uint64_t k = n - done;
		if (k > nlog - p)
			k = nlog - p;
		if (k > MAX_IOV_PER_WRITE)
			k = MAX_IOV_PER_WRITE;
		for (uint64_t i = 0; i < k; i++)
			iov[i] = (struct iovec){ bufs[done + i], FS_BLOCK_SIZE };
		int r = write ? bdev_writev(dev, logbase + p, iov, (int)k)
			      : bdev_readv(dev, logbase + p, iov, (int)k);
		if (r)
			return r;
		done += k;
	}
	return 0;
}

static int write_jhdr(struct bdev *dev, const struct fs_super *sb, const struct fs_jhdr *h)
{
	uint8_t *blk = block_alloc(FS_BLOCK_SIZE);
	if (!blk)
		return -ENOMEM;
	fs_jhdr_encode(h, blk);
	int r = bdev_write(dev, sb->journal_start, blk, 1);
	if (!r)
		r = bdev_flush(dev);
	free(blk);
	return r;
}

int journal_format(struct bdev *dev, const struct fs_super *sb)
{
	struct prng rng;
	prng_seed(&rng, now_ns() ^ wallclock_ns());
	/* A random epoch: nothing left in the log area by an earlier
	 * filesystem on these disks can validate. */
	struct fs_jhdr h = { .epoch = prng_next(&rng) | 1, .tail_seq = 1, .tail_pos = 0 };
	return write_jhdr(dev, sb, &h);
}

/* ---- replay ---- */

struct replay {
	struct bdev *dev;
	const struct fs_super *sb;
	uint64_t logbase, nlog, epoch;
	uint8_t **blocks;          /* descriptors and data of the tx being read */
	uint64_t *home;
	size_t cap;
};

static int replay_grow(struct replay *rp, size_t need)
{
	if (need <= rp->cap)
		return 0;
	size_t cap = rp->cap ? rp->cap * 2 : 1024;
	while (cap < need)
		cap *= 2;
	uint8_t **b = realloc(rp->blocks, cap * sizeof(*b));
	if (!b)
		return -ENOMEM;
	rp->blocks = b;
	for (size_t i = rp->cap; i < cap; i++)
		rp->blocks[i] = NULL;
	uint64_t *h = realloc(rp->home, cap * sizeof(*h));
	if (!h)
		return -ENOMEM;
	rp->home = h;
	for (size_t i = rp->cap; i < cap; i++) {
		rp->blocks[i] = block_alloc(FS_BLOCK_SIZE);
		if (!rp->blocks[i]) {
			rp->cap = i;
			return -ENOMEM;
		}
	}
	rp->cap = cap;
	return 0;
}

/* The end of the log is normally a block of an older epoch or seq. One that
 * carries this epoch and seq but fails its checks was damaged (or torn by
 * the crash): say so, since replay stops there. */
static void warn_if_damaged(const struct replay *rp, const uint8_t *blk, uint64_t seq,
			    const char *what)
{
	if (get_le64(blk + 8) == rp->epoch && get_le64(blk + 16) == seq)
		cat_log(CAT_LOG_WARN, "journal: transaction %llu has a bad %s; replay "
			"ends before it (a write torn by the crash, or damage)",
			(unsigned long long)seq, what);
}

/* Read and validate the transaction seq at pos. Returns its length in
 * blocks (> 0) with its data in rp->blocks[ndata..] order noted in *nhome,
 * 0 if there is no valid transaction there, or a negative error. */
static int64_t replay_read_tx(struct replay *rp, uint64_t pos, uint64_t *seqp,
			      uint64_t *nhome)
{
	struct fs_jdesc d;
	uint64_t off = 0, n = 0, seq = *seqp;
	uint32_t crc = 0;
	for (uint32_t index = 0;; index++) {
		if (off >= rp->nlog)
			return 0;
		int r = replay_grow(rp, n + 1);
		if (r)
			return r;
		uint8_t *db = rp->blocks[n];
		if ((r = log_io(rp->dev, rp->logbase, rp->nlog, false, pos + off, &db, 1)))
			return r;
		/* A transaction that changed nothing was given a seq but left no
		 * record: the first descriptor may carry a later seq than expected
		 * (never an earlier one: older records of this epoch lie behind). */
		if (index == 0 && !fs_jdesc_decode(db, &d) && d.epoch == rp->epoch && d.seq > seq)
			seq = d.seq;
		if (fs_jdesc_decode(db, &d) || d.epoch != rp->epoch || d.seq != seq ||
		    d.index != index) {
			warn_if_damaged(rp, db, seq, "descriptor");
			return 0;
		}
		crc = crc32c(crc, db, FS_BLOCK_SIZE);
		if ((r = replay_grow(rp, n + d.count + 1)))
			return r;
		if (off + 1 + d.count >= rp->nlog)
			return 0;
		if ((r = log_io(rp->dev, rp->logbase, rp->nlog, false, pos + off + 1,
				rp->blocks + n, d.count)))
			return r;
		for (uint32_t i = 0; i < d.count; i++) {
			if (!home_ok(rp->sb, d.home[i]))
				return 0;
			rp->home[n + i] = d.home[i];
			crc = crc32c(crc, rp->blocks[n + i], FS_BLOCK_SIZE);
		}
		n += d.count;
		off += 1 + d.count;
		if (d.last)
			break;
	}
	uint8_t *cb = rp->blocks[n];
	int r = log_io(rp->dev, rp->logbase, rp->nlog, false, pos + off, &cb, 1);
	if (r)
		return r;
	struct fs_jcommit c;
	if (fs_jcommit_decode(cb, &c) || c.epoch != rp->epoch || c.seq != seq ||
	    c.nblocks != n || c.data_crc != crc) {
		warn_if_damaged(rp, cb, seq, "commit block or data");
		return 0;
	}
	*nhome = n;
	*seqp = seq;
	return (int64_t)(off + 1);
}

static int replay_apply(struct replay *rp, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		int r = bdev_write(rp->dev, rp->home[i], rp->blocks[i], 1);
		if (r)
			return r;
	}
	return 0;
}

static void replay_free(struct replay *rp)
{
	for (size_t i = 0; i < rp->cap; i++)
		free(rp->blocks[i]);
	free(rp->blocks);
	free(rp->home);
}

/* Replays; on success *hdr_out is the new (empty-log) header. */
static int replay_log(struct bdev *dev, const struct fs_super *sb, uint64_t *replayed,
		      struct fs_jhdr *hdr_out)
{
	uint8_t *blk = block_alloc(FS_BLOCK_SIZE);
	if (!blk)
		return -ENOMEM;
	struct fs_jhdr h;
	int r = bdev_read(dev, sb->journal_start, blk, 1);
	if (!r && (fs_jhdr_decode(blk, &h) || h.tail_pos >= sb->journal_blocks - 1))
		r = -EUCLEAN;
	free(blk);
	if (r)
		return r;
	struct replay rp = { .dev = dev, .sb = sb, .logbase = sb->journal_start + 1,
			     .nlog = sb->journal_blocks - 1, .epoch = h.epoch };
	uint64_t pos = h.tail_pos, seq = h.tail_seq, count = 0, walked = 0;
	for (;;) {
		uint64_t n = 0;
		int64_t len = replay_read_tx(&rp, pos, &seq, &n);
		if (len < 0) {
			r = (int)len;
			break;
		}
		if (len == 0 || walked + (uint64_t)len > rp.nlog)
			break;
		if ((r = replay_apply(&rp, n)))
			break;
		pos = (pos + (uint64_t)len) % rp.nlog;
		walked += (uint64_t)len;
		seq++;
		count++;
	}
	replay_free(&rp);
	if (r)
		return r;
	if (count && (r = bdev_flush(dev)))
		return r;
	/* A new epoch: transactions written from now on are told apart from
	 * stale ones of this epoch still lying further on in the log. */
	struct fs_jhdr nh = { .magic = FS_JHDR_MAGIC, .epoch = h.epoch + 1,
			      .tail_seq = seq, .tail_pos = pos };
	if ((r = write_jhdr(dev, sb, &nh)))
		return r;
	*replayed = count;
	*hdr_out = nh;
	return 0;
}

int journal_replay(struct bdev *dev, const struct fs_super *sb, uint64_t *replayed)
{
	struct fs_jhdr h;
	return replay_log(dev, sb, replayed, &h);
}

/* ---- checkpoint set ---- */

static struct cp_entry **cp_slot(struct journal *j, uint64_t blkno)
{
	size_t s = (size_t)((blkno * 0x9e3779b97f4a7c15ull) >> 17) % j->cp_nhash;
	struct cp_entry **pp = &j->cp_hash[s];
	while (*pp && (*pp)->blkno != blkno)
		pp = &(*pp)->next;
	return pp;
}

/* Takes ownership of data (a copy whose transaction is in the log). While
 * a checkpoint runs, the copy it must write is kept aside. */
static int cp_put(struct journal *j, uint64_t blkno, uint64_t seq, uint8_t *data)
{
	struct cp_entry **pp = cp_slot(j, blkno);
	if (*pp) {
		struct cp_entry *e = *pp;
		if (j->ckpt_active && e->seq <= j->ckpt_target && !e->ckpt_data)
			e->ckpt_data = e->data;
		else
			free(e->data);
		e->data = data;
		e->seq = seq;
		return 0;
	}
	struct cp_entry *e = malloc(sizeof(*e));
	if (!e)
		return -ENOMEM;
	*e = (struct cp_entry){ .blkno = blkno, .seq = seq, .data = data };
	e->next = NULL;
	*pp = e;
	j->cp_count++;
	return 0;
}

static int cache_miss(void *arg, uint64_t blkno, void *dst)
{
	struct journal *j = arg;
	pthread_mutex_lock(&j->mu);
	struct cp_entry *e = *cp_slot(j, blkno);
	if (e)
		memcpy(dst, e->data, FS_BLOCK_SIZE);
	pthread_mutex_unlock(&j->mu);
	return e != NULL;
}

/* ---- transactions ---- */

static void fail(struct journal *j, int err)
{
	if (!j->error) {
		j->error = err;
		cat_log(CAT_LOG_ERROR, "journal: write failed (%s); the filesystem is now read-only",
			strerror(-err));
	}
	pthread_cond_broadcast(&j->cv_begin);
	pthread_cond_broadcast(&j->cv_done);
	pthread_cond_broadcast(&j->cv_space);
}

unsigned journal_max_credits(const struct journal *j)
{
	return (unsigned)(j->tx_max - desc_count(j->tx_max) - 1);
}

int journal_error(const struct journal *j)
{
	return __atomic_load_n(&j->error, __ATOMIC_RELAXED);
}

int tx_begin(struct journal *j, unsigned credits, struct tx *tx)
{
	if (credits > journal_max_credits(j))
		return -ENOSPC;
	pthread_mutex_lock(&j->mu);
	while (!j->error && (j->run_locked || j->run_credits + credits > journal_max_credits(j))) {
		if (j->want_seq < j->run_seq)
			j->want_seq = j->run_seq;
		pthread_cond_signal(&j->cv_commit);
		pthread_cond_wait(&j->cv_begin, &j->mu);
	}
	int r = j->error;
	if (!r) {
		if (j->run_ops == 0)
			j->run_start_ns = now_ns();
		j->run_handles++;
		j->run_credits += credits;
		j->run_ops++;
		*tx = (struct tx){ .j = j, .seq = j->run_seq, .credits = credits };
	}
	pthread_mutex_unlock(&j->mu);
	return r;
}

void tx_add(struct tx *tx, struct buf *b)
{
	struct journal *j = tx->j;
	pthread_mutex_lock(&j->mu);
	if (b->tx_seq != tx->seq) {
		if (j->run_n == j->run_cap) {
			size_t cap = j->run_cap ? j->run_cap * 2 : 256;
			struct buf **nb = realloc(j->run_bufs, cap * sizeof(*nb));
			if (!nb) {
				fail(j, -ENOMEM);
				pthread_mutex_unlock(&j->mu);
				return;
			}
			j->run_bufs = nb;
			j->run_cap = cap;
		}
		b->tx_seq = tx->seq;
		bcache_hold(j->cache, b);
		j->run_bufs[j->run_n++] = b;
		tx->used++;
	}
	pthread_mutex_unlock(&j->mu);
}

uint64_t tx_end(struct tx *tx)
{
	struct journal *j = tx->j;
	pthread_mutex_lock(&j->mu);
	if (--j->run_handles == 0 && j->run_locked)
		pthread_cond_signal(&j->cv_commit);
	pthread_mutex_unlock(&j->mu);
	return tx->seq;
}

int journal_wait(struct journal *j, uint64_t seq, bool durable)
{
	durable = durable || j->opts.sync;
	pthread_mutex_lock(&j->mu);
	for (;;) {
		if (j->error)
			break;
		if (j->written_seq >= seq && (!durable || j->flushed_seq >= seq))
			break;
		if (j->want_seq < seq)
			j->want_seq = seq;
		if (durable && j->want_flush_seq < seq)
			j->want_flush_seq = seq;
		pthread_cond_signal(&j->cv_commit);
		pthread_cond_wait(&j->cv_done, &j->mu);
	}
	int r = j->error;
	pthread_mutex_unlock(&j->mu);
	return r;
}

int journal_sync(struct journal *j)
{
	pthread_mutex_lock(&j->mu);
	uint64_t seq = j->run_ops ? j->run_seq : j->written_seq;
	/* Nothing ever committed since the last flush still needs one flush
	 * if seq was written but not flushed; journal_wait sees to that. */
	pthread_mutex_unlock(&j->mu);
	return journal_wait(j, seq, true);
}

/* ---- the committer ---- */

/* With mu held and the running tx closed to new handles: copy its buffers
 * into owned blocks, put them in the checkpoint set, and open the next tx.
 * Returns the blocks to write (descriptors, data, commit) in *out. */
static int commit_snapshot(struct journal *j, uint8_t ***out, uint64_t *len_out)
{
	uint64_t n = j->run_n, nd = desc_count(n), len = tx_len(n);
	uint8_t **blk = calloc(len, sizeof(*blk));
	if (!blk)
		return -ENOMEM;
	for (uint64_t i = 0; i < len; i++)
		if (!(blk[i] = block_alloc(FS_BLOCK_SIZE)))
			goto nomem;
	uint32_t crc = 0;
	struct fs_jdesc *d = malloc(sizeof(*d));
	if (!d)
		goto nomem;
	uint64_t at = 0;
	for (uint64_t k = 0; k < nd; k++) {
		uint64_t first = k * FS_JDESC_MAX, cnt = n - first;
		if (cnt > FS_JDESC_MAX)
			cnt = FS_JDESC_MAX;
		*d = (struct fs_jdesc){ .count = (uint32_t)cnt, .epoch = j->epoch,
					.seq = j->run_seq, .index = (uint32_t)k,
					.last = k + 1 == nd };
		for (uint64_t i = 0; i < cnt; i++)
			d->home[i] = j->run_bufs[first + i]->blkno;
		fs_jdesc_encode(d, blk[at]);
		crc = crc32c(crc, blk[at++], FS_BLOCK_SIZE);
		for (uint64_t i = 0; i < cnt; i++) {
			memcpy(blk[at], j->run_bufs[first + i]->data, FS_BLOCK_SIZE);
			crc = crc32c(crc, blk[at++], FS_BLOCK_SIZE);
		}
	}
	free(d);
	struct fs_jcommit c = { .ndesc = (uint32_t)nd, .epoch = j->epoch, .seq = j->run_seq,
				.nblocks = n, .data_crc = crc, .commit_ns = wallclock_ns() };
	fs_jcommit_encode(&c, blk[at]);
	*out = blk;
	*len_out = len;
	return 0;
nomem:
	for (uint64_t i = 0; i < len; i++)
		free(blk[i]);
	free(blk);
	return -ENOMEM;
}

/* Open the next transaction (mu held). The committed buffers keep their
 * references (in *held) until their copies are in the checkpoint set, so
 * that none is evicted and re-read from a stale home meanwhile. */
static struct buf **open_next_tx(struct journal *j, size_t *nheld)
{
	struct buf **held = j->run_bufs;
	*nheld = j->run_n;
	for (size_t i = 0; i < j->run_n; i++)
		j->run_bufs[i]->tx_seq = 0;
	j->st.ops += j->run_ops;
	j->st.blocks += j->run_n;
	j->run_bufs = NULL;
	j->run_n = j->run_cap = 0;
	j->run_ops = 0;
	j->run_credits = 0;
	j->run_seq++;
	j->run_locked = false;
	pthread_cond_broadcast(&j->cv_begin);
	return held;
}

static void release_held(struct journal *j, struct buf **held, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bcache_release(j->cache, held[i]);
	free(held);
}

/* Move the written tx's data copies into the checkpoint set (mu held);
 * blk[] keeps the descriptors and commit block for the caller to free. */
static int commit_to_cpset(struct journal *j, uint8_t **blk, struct buf **held,
			   size_t n, uint64_t seq)
{
	uint64_t at = 0;
	for (size_t i = 0; i < n; i++) {
		if (i % FS_JDESC_MAX == 0)
			at++;                        /* skip the descriptor */
		int r = cp_put(j, held[i]->blkno, seq, blk[at]);
		if (r)
			return r;
		blk[at++] = NULL;
	}
	return 0;
}

static int wait_for_space(struct journal *j, uint64_t len)
{
	while (!j->error && j->nlog - j->used < len) {
		j->ckpt_wanted = true;
		pthread_cond_signal(&j->cv_ckpt);
		pthread_cond_wait(&j->cv_space, &j->mu);
	}
	return j->error;
}

static int push_rec(struct journal *j, uint64_t seq, uint64_t pos, uint64_t len)
{
	if (j->nrecs == j->recs_cap) {
		size_t cap = j->recs_cap ? j->recs_cap * 2 : 64;
		struct txrec *r = realloc(j->recs, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		j->recs = r;
		j->recs_cap = cap;
	}
	j->recs[j->nrecs++] = (struct txrec){ seq, pos, len };
	return 0;
}

static void free_blocks(uint8_t **blk, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		free(blk[i]);
	free(blk);
}

/* Done with the running tx that changed no block (mu held). */
static void commit_empty(struct journal *j, uint64_t seq)
{
	size_t n;
	free(open_next_tx(j, &n));
	j->written_seq = seq;
	if (j->flushed_seq == seq - 1)
		j->flushed_seq = seq;
	pthread_cond_broadcast(&j->cv_done);
}

/* Commit the running transaction (mu held on entry and exit). */
static void commit_running(struct journal *j)
{
	j->run_locked = true;
	while (j->run_handles > 0)
		pthread_cond_wait(&j->cv_commit, &j->mu);
	uint64_t seq = j->run_seq;
	if (j->run_n == 0) {
		commit_empty(j, seq);
		return;
	}
	uint8_t **blk = NULL;
	uint64_t len = 0;
	int r = wait_for_space(j, tx_len(j->run_n));
	if (!r)
		r = commit_snapshot(j, &blk, &len);
	uint64_t pos = j->head_pos;
	if (!r)
		r = push_rec(j, seq, pos, len);
	if (r) {
		fail(j, r);
		return;
	}
	j->head_pos = (pos + len) % j->nlog;
	j->used += len;
	size_t nheld;
	struct buf **held = open_next_tx(j, &nheld);
	bool flush = j->opts.sync || j->want_flush_seq >= seq;
	pthread_mutex_unlock(&j->mu);

	r = log_io(j->dev, j->logbase, j->nlog, true, pos, blk, len);
	if (!r && flush)
		r = bdev_flush(j->dev);

	pthread_mutex_lock(&j->mu);
	if (!r)
		r = commit_to_cpset(j, blk, held, nheld, seq);
	free_blocks(blk, len);
	release_held(j, held, nheld);
	if (r) {
		fail(j, r);
		return;
	}
	j->written_seq = seq;
	if (flush) {
		j->flushed_seq = seq;
		j->st.flushes++;
	}
	j->st.commits++;
	if (j->used * 2 > j->nlog || j->cp_count * 2 > j->nlog) {
		j->ckpt_wanted = true;
		pthread_cond_signal(&j->cv_ckpt);
	}
	pthread_cond_broadcast(&j->cv_done);
}

static void flush_written(struct journal *j)
{
	uint64_t target = j->written_seq;
	pthread_mutex_unlock(&j->mu);
	int r = bdev_flush(j->dev);
	pthread_mutex_lock(&j->mu);
	if (r) {
		fail(j, r);
		return;
	}
	if (j->flushed_seq < target)
		j->flushed_seq = target;
	j->st.flushes++;
	pthread_cond_broadcast(&j->cv_done);
}

static bool commit_due(struct journal *j)
{
	if (j->run_ops == 0)
		return false;
	if (j->want_seq >= j->run_seq || j->run_locked)
		return true;
	return now_ns() - j->run_start_ns >= (uint64_t)j->opts.commit_interval_ms * 1000000u;
}

static void *committer_main(void *arg)
{
	struct journal *j = arg;
	pthread_mutex_lock(&j->mu);
	while (!j->error) {
		if (commit_due(j) || (j->stopping && j->run_ops)) {
			commit_running(j);
		} else if (j->want_flush_seq > j->flushed_seq &&
			   j->written_seq > j->flushed_seq) {
			flush_written(j);
		} else if (j->stopping) {
			break;
		} else {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&j->cv_commit, &j->mu, &ts);
		}
	}
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

/* ---- the checkpointer ---- */

/* Copy up to CKPT_BATCH entries, starting at *cursor in the list of block
 * numbers, into bufs (mu held). Returns how many. */
static size_t ckpt_gather(struct journal *j, const uint64_t *list, size_t nlist,
			  size_t *cursor, uint8_t **bufs, uint64_t *home)
{
	size_t k = 0;
	while (*cursor < nlist && k < CKPT_BATCH) {
		struct cp_entry *e = *cp_slot(j, list[(*cursor)++]);
		const uint8_t *src = !e ? NULL : e->ckpt_data ? e->ckpt_data
				   : e->seq <= j->ckpt_target ? e->data : NULL;
		if (!src)
			continue;            /* newer than this checkpoint */
		memcpy(bufs[k], src, FS_BLOCK_SIZE);
		home[k++] = e->blkno;
	}
	return k;
}

static int ckpt_write_home(struct journal *j, const uint64_t *list, size_t nlist,
			   uint8_t **bufs)
{
	uint64_t home[CKPT_BATCH];
	struct iovec iov[CKPT_BATCH];
	struct bdev_req req[CKPT_BATCH];
	size_t cursor = 0;
	for (;;) {
		pthread_mutex_lock(&j->mu);
		size_t k = ckpt_gather(j, list, nlist, &cursor, bufs, home);
		pthread_mutex_unlock(&j->mu);
		if (k == 0)
			return 0;
		for (size_t i = 0; i < k; i++) {
			iov[i] = (struct iovec){ bufs[i], FS_BLOCK_SIZE };
			req[i] = (struct bdev_req){ .dev = j->dev, .op = BDEV_WRITE,
						    .blkno = home[i], .iov = &iov[i], .iovcnt = 1 };
		}
		bdev_run_parallel(req, (int)k);
		for (size_t i = 0; i < k; i++)
			if (req[i].result)
				return req[i].result;
	}
}

/* List the set's block numbers (mu held). */
static uint64_t *ckpt_list(struct journal *j, size_t *n)
{
	uint64_t *list = malloc((j->cp_count + 1) * sizeof(*list));
	if (!list)
		return NULL;
	size_t k = 0;
	for (size_t s = 0; s < j->cp_nhash; s++)
		for (struct cp_entry *e = j->cp_hash[s]; e; e = e->next)
			list[k++] = e->blkno;
	*n = k;
	return list;
}

/* Drop entries not newer than target and the log records they needed;
 * returns the new header (mu held). */
static struct fs_jhdr ckpt_retire(struct journal *j, uint64_t target, uint64_t *freed)
{
	for (size_t s = 0; s < j->cp_nhash; s++) {
		struct cp_entry **pp = &j->cp_hash[s];
		while (*pp) {
			struct cp_entry *e = *pp;
			free(e->ckpt_data);
			e->ckpt_data = NULL;
			if (e->seq <= target) {
				*pp = e->next;
				free(e->data);
				free(e);
				j->cp_count--;
			} else {
				pp = &e->next;
			}
		}
	}
	size_t k = 0;
	*freed = 0;
	while (k < j->nrecs && j->recs[k].seq <= target)
		*freed += j->recs[k++].len;
	memmove(j->recs, j->recs + k, (j->nrecs - k) * sizeof(*j->recs));
	j->nrecs -= k;
	j->ckpt_active = false;
	struct fs_jhdr h = { .magic = FS_JHDR_MAGIC, .epoch = j->epoch };
	if (j->nrecs) {
		h.tail_seq = j->recs[0].seq;
		h.tail_pos = j->recs[0].pos;
	} else {
		h.tail_seq = target + 1;
		h.tail_pos = j->head_pos;
	}
	return h;
}

/* Write home every copy committed up to now (target), then free their log
 * space. The log is flushed first: a home block must never be newer than
 * what the durable log can replay. */
static int checkpoint(struct journal *j, uint8_t **bufs)
{
	pthread_mutex_lock(&j->mu);
	uint64_t target = j->written_seq;
	size_t n = 0;
	uint64_t *list = ckpt_list(j, &n);
	if (list) {
		j->ckpt_active = true;
		j->ckpt_target = target;
	}
	pthread_mutex_unlock(&j->mu);
	if (!list)
		return -ENOMEM;
	int r = bdev_flush(j->dev);
	if (!r)
		r = ckpt_write_home(j, list, n, bufs);
	free(list);
	if (!r)
		r = bdev_flush(j->dev);
	if (r)
		return r;
	pthread_mutex_lock(&j->mu);
	uint64_t freed;
	struct fs_jhdr h = ckpt_retire(j, target, &freed);
	pthread_mutex_unlock(&j->mu);
	/* The header must be durable before the freed space is reused. */
	r = write_jhdr(j->dev, &j->sb, &h);
	pthread_mutex_lock(&j->mu);
	if (!r) {
		j->used -= freed;
		j->st.checkpoints++;
		pthread_cond_broadcast(&j->cv_space);
	}
	pthread_mutex_unlock(&j->mu);
	return r;
}

static void *checkpointer_main(void *arg)
{
	struct journal *j = arg;
	uint8_t *bufs[CKPT_BATCH];
	for (int i = 0; i < CKPT_BATCH; i++)
		bufs[i] = block_alloc(FS_BLOCK_SIZE);
	pthread_mutex_lock(&j->mu);
	for (int i = 0; i < CKPT_BATCH; i++)
		if (!bufs[i])
			fail(j, -ENOMEM);
	while (!j->error) {
		if (j->ckpt_wanted && j->cp_count) {
			j->ckpt_wanted = false;
			pthread_mutex_unlock(&j->mu);
			int r = checkpoint(j, bufs);
			pthread_mutex_lock(&j->mu);
			if (r)
				fail(j, r);
		} else if (j->stopping) {
			break;
		} else {
			j->ckpt_wanted = false;
			pthread_cond_wait(&j->cv_ckpt, &j->mu);
		}
	}
	pthread_mutex_unlock(&j->mu);
	for (int i = 0; i < CKPT_BATCH; i++)
		free(bufs[i]);
	return NULL;
}

/* ---- open / close ---- */

static void journal_free(struct journal *j)
{
	for (size_t s = 0; j->cp_hash && s < j->cp_nhash; s++)
		while (j->cp_hash[s]) {
			struct cp_entry *e = j->cp_hash[s];
			j->cp_hash[s] = e->next;
			free(e->data);
			free(e->ckpt_data);   /* a checkpoint that failed */
			free(e);
		}
	free(j->cp_hash);
	free(j->recs);
	free(j->run_bufs);
	pthread_mutex_destroy(&j->mu);
	pthread_cond_destroy(&j->cv_begin);
	pthread_cond_destroy(&j->cv_done);
	pthread_cond_destroy(&j->cv_commit);
	pthread_cond_destroy(&j->cv_ckpt);
	pthread_cond_destroy(&j->cv_space);
	free(j);
}

static struct journal *journal_alloc(struct bdev *dev, struct bcache *c,
				     const struct fs_super *sb, const struct journal_opts *o)
{
	struct journal *j = calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	j->dev = dev;
	j->cache = c;
	j->sb = *sb;
	j->logbase = sb->journal_start + 1;
	j->nlog = sb->journal_blocks - 1;
	j->tx_max = j->nlog / 2 < 4096 ? j->nlog / 2 : 4096;
	if (o)
		j->opts = *o;
	if (!j->opts.commit_interval_ms)
		j->opts.commit_interval_ms = 1000;
	j->cp_nhash = j->nlog + 1;
	j->cp_hash = calloc(j->cp_nhash, sizeof(*j->cp_hash));
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cv_begin, NULL);
	pthread_cond_init(&j->cv_done, NULL);
	pthread_cond_init(&j->cv_commit, NULL);
	pthread_cond_init(&j->cv_ckpt, NULL);
	pthread_cond_init(&j->cv_space, NULL);
	if (!j->cp_hash) {
		journal_free(j);
		return NULL;
	}
	return j;
}

int journal_open(struct bdev *dev, struct bcache *c, const struct fs_super *sb,
		 const struct journal_opts *o, struct journal **out)
{
	uint64_t replayed = 0;
	struct fs_jhdr h;
	int r = replay_log(dev, sb, &replayed, &h);
	if (r)
		return r;
	if (replayed)
		cat_log(CAT_LOG_INFO, "journal: replayed %llu transaction(s)",
			(unsigned long long)replayed);
	struct journal *j = journal_alloc(dev, c, sb, o);
	if (!j)
		return -ENOMEM;
	j->epoch = h.epoch;
	j->head_pos = h.tail_pos;
	j->run_seq = h.tail_seq;
	j->written_seq = j->flushed_seq = h.tail_seq - 1;
	j->want_seq = j->want_flush_seq = h.tail_seq - 1;
	bcache_set_miss_hook(c, cache_miss, j);
	if (pthread_create(&j->committer, NULL, committer_main, j)) {
		journal_free(j);
		return -EAGAIN;
	}
	if (pthread_create(&j->checkpointer, NULL, checkpointer_main, j)) {
		pthread_mutex_lock(&j->mu);
		j->stopping = true;
		pthread_cond_signal(&j->cv_commit);
		pthread_mutex_unlock(&j->mu);
		pthread_join(j->committer, NULL);
		journal_free(j);
		return -EAGAIN;
	}
	*out = j;
	return 0;
}

int journal_close(struct journal *j)
{
	pthread_mutex_lock(&j->mu);
	j->stopping = true;
	pthread_cond_signal(&j->cv_commit);
	pthread_mutex_unlock(&j->mu);
	pthread_join(j->committer, NULL);
	pthread_mutex_lock(&j->mu);
	j->ckpt_wanted = true;
	pthread_cond_signal(&j->cv_ckpt);
	pthread_mutex_unlock(&j->mu);
	pthread_join(j->checkpointer, NULL);
	/* The checkpointer's last pass ran before it saw stopping only if
	 * something was pending; make sure the set is empty now. */
	int r = j->error;
	if (!r && j->cp_count) {
		uint8_t *bufs[CKPT_BATCH] = { 0 };
		for (int i = 0; i < CKPT_BATCH && !r; i++)
			if (!(bufs[i] = block_alloc(FS_BLOCK_SIZE)))
				r = -ENOMEM;
		if (!r)
			r = checkpoint(j, bufs);
		for (int i = 0; i < CKPT_BATCH; i++)
			free(bufs[i]);
	}
	if (!r)
		r = bdev_flush(j->dev);
	bcache_set_miss_hook(j->cache, NULL, NULL);
	for (size_t i = 0; i < j->run_n; i++) {
		j->run_bufs[i]->tx_seq = 0;
		bcache_release(j->cache, j->run_bufs[i]);
	}
	journal_free(j);
	return r;
}

void journal_get_stats(struct journal *j, struct journal_stats *st)
{
	pthread_mutex_lock(&j->mu);
	*st = j->st;
	st->log_blocks = j->nlog;
	st->log_used = j->used;
	st->ckpt_set_blocks = j->cp_count;
	st->ops_per_commit = st->commits ? (double)st->ops / (double)st->commits : 0;
	pthread_mutex_unlock(&j->mu);
}
