/*
 * cmd_bench.c - `catamaran bench blockdev`: a load generator for the mirror,
 * and the checker that tells whether a crash lost an acknowledged write.
 *
 * Load: the mirror API is synchronous (one request per call), so queue depth
 * is made of threads: --threads T --qd Q runs T*Q workers, each with one
 * request in flight. Workers write only the slots they own (slot % W == w),
 * so the writes to any one block come from one thread in program order; that
 * is what lets the checker compare sequence numbers across a crash.
 *
 * --verify LOG: every 4 KiB block written describes itself (vblock below).
 * After every --flush-every writes a worker flushes the mirror and only then
 * appends the (blkno, seq) records of the writes it completed before that
 * flush to LOG, one write(2) per batch. LOG thus names only acknowledged,
 * flushed writes; it lives in the page cache, so it survives kill -9 of this
 * process (not a power cut of the machine that holds it).
 *
 * --check LOG: reads every block of the data area through a read-only
 * mirror. A block named in LOG must hold this run's record for that block
 * with a sequence number at least the acknowledged one; every block must be
 * all zero or a valid self-describing block of some run.
 */
#include "tools/commands.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blockdev/bdev.h"
#include "blockdev/mirror/mirror.h"
#include "core/base/crc32c.h"
#include "core/base/error.h"
#include "core/base/util.h"
#include "tools/bench_common.h"
#include "tools/cli.h"

#define EXIT_GOOD 0
#define EXIT_VIOLATION 1
#define EXIT_TROUBLE 2

#define MAX_WORKERS 1024u
#define NS_PER_SEC 1000000000ull

/* ------------------------------------------------------------------ */
/* Options                                                             */
/* ------------------------------------------------------------------ */

enum pattern { PAT_RANDWRITE, PAT_RANDREAD, PAT_SEQWRITE, PAT_SEQREAD, PAT_MIXED };

static const char *const pattern_names[] = {
	[PAT_RANDWRITE] = "randwrite", [PAT_RANDREAD] = "randread",
	[PAT_SEQWRITE] = "seqwrite",   [PAT_SEQREAD] = "seqread",
	[PAT_MIXED] = "mixed",
};

/* Percentage of operations that are reads in the mixed pattern. */
#define MIXED_READ_PERCENT 70

struct bench_opts {
	unsigned threads, qd;
	enum pattern pattern;
	uint64_t bs;
	double seconds;        /* 0 = until SIGINT/SIGTERM */
	uint64_t span;         /* bytes; 0 = whole data area */
	unsigned flush_every;  /* writes per worker between flushes; 0 = never */
	const char *verify_log;
	const char *check_log;
	bool json;
	bool degraded;
	const char *disk[2];
};

static void usage(FILE *out)
{
	fprintf(out,
"usage: catamaran bench blockdev [options] DISK1 DISK2\n"
"       catamaran bench blockdev --check LOG [--degraded] DISK1 DISK2\n"
"       catamaran bench fs [options] DISK1 DISK2\n"
"       catamaran bench maildir [options] DIR\n"
"       catamaran bench mail [options] DIR\n"
"\n"
"bench fs and bench maildir time Maildir deliveries on the filesystem and\n"
"on any directory: see 'catamaran bench fs --help'. bench mail runs the\n"
"Mailboat workload (deliver, pickup, delete, unlock) on the mail store in\n"
"DIR: see 'catamaran bench mail --help'.\n"
"\n"
"bench blockdev runs a load on the mirror made of DISK1 and DISK2 (formatted\n"
"with `catamaran format`; a pending resync is run first) and prints IOPS,\n"
"MB/s and latency percentiles.\n"
"\n"
"  --threads N         submitting threads (default 1)\n"
"  --qd N              requests in flight per thread (default 1). The mirror\n"
"                      API is synchronous, so the queue depth is made of\n"
"                      threads: N*QD workers, each with one request in flight\n"
"  --pattern P         randwrite (default), randread, seqwrite, seqread, or\n"
"                      mixed (70%% reads, 30%% writes)\n"
"  --bs SIZE           request size, a multiple of 4096 (default 4K)\n"
"  --seconds S         run time (default 10; 0 = until SIGINT/SIGTERM)\n"
"  --span SIZE         use only the first SIZE bytes of the device\n"
"  --flush-every N     each worker flushes the mirror after N writes\n"
"                      (default 16; 0 = never, except at the end)\n"
"  --verify LOG        write self-describing blocks; append every write that\n"
"                      a completed flush made durable to LOG (new or empty file)\n"
"  --check LOG         read-only: verify the disks against LOG (run\n"
"                      `catamaran recover` first). Exit 0 good, 1 violations\n"
"  --degraded          accept a disk that cannot be opened as missing\n"
"  --json              print the results as one JSON object\n"
"\n"
"Exit status: 0 success, 1 violations found, 2 error.\n");
}

static int parse_pattern(const char *s, enum pattern *out)
{
	for (size_t i = 0; i < sizeof(pattern_names) / sizeof(pattern_names[0]); i++) {
		if (strcmp(s, pattern_names[i]) == 0) {
			*out = (enum pattern)i;
			return 0;
		}
	}
	cli_usage_error("bench", "unknown pattern '%s' "
			"(randwrite, randread, seqwrite, seqread, mixed)", s);
	return -EINVAL;
}

/* Returns 0 to run, 1 when help was printed, -EINVAL on a usage error. */
static int parse_options(int argc, char **argv, struct bench_opts *o)
{
	enum { OPT_THREADS = 256, OPT_QD, OPT_PATTERN, OPT_BS, OPT_SECONDS,
	       OPT_SPAN, OPT_FLUSH_EVERY, OPT_VERIFY, OPT_CHECK, OPT_JSON,
	       OPT_DEGRADED, OPT_HELP };
	static const struct option longopts[] = {
		{ "threads", required_argument, NULL, OPT_THREADS },
		{ "qd", required_argument, NULL, OPT_QD },
		{ "pattern", required_argument, NULL, OPT_PATTERN },
		{ "bs", required_argument, NULL, OPT_BS },
		{ "seconds", required_argument, NULL, OPT_SECONDS },
		{ "span", required_argument, NULL, OPT_SPAN },
		{ "flush-every", required_argument, NULL, OPT_FLUSH_EVERY },
		{ "verify", required_argument, NULL, OPT_VERIFY },
		{ "check", required_argument, NULL, OPT_CHECK },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "degraded", no_argument, NULL, OPT_DEGRADED },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	*o = (struct bench_opts){ .threads = 1, .qd = 1, .pattern = PAT_RANDWRITE,
				  .bs = BDEV_BLOCK_SIZE, .seconds = 10, .flush_every = 16 };
	int rc = 0;
	optind = 0; /* glibc: full rescan; another subcommand may have used getopt */
	opterr = 0; /* cli_bad_option words the complaint */
	for (int c; rc == 0 && (c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1;) {
		switch (c) {
		case OPT_THREADS:
			rc = bench_parse_count("bench", "--threads", optarg, 1, MAX_WORKERS, &o->threads);
			break;
		case OPT_QD:
			rc = bench_parse_count("bench", "--qd", optarg, 1, MAX_WORKERS, &o->qd);
			break;
		case OPT_PATTERN: rc = parse_pattern(optarg, &o->pattern); break;
		case OPT_BS: rc = bench_parse_size("bench", "--bs", optarg, &o->bs); break;
		case OPT_SECONDS: rc = bench_parse_seconds("bench", optarg, &o->seconds); break;
		case OPT_SPAN: rc = bench_parse_size("bench", "--span", optarg, &o->span); break;
		case OPT_FLUSH_EVERY:
			rc = bench_parse_count("bench", "--flush-every", optarg, 0, 1u << 20,
					       &o->flush_every);
			break;
		case OPT_VERIFY: o->verify_log = optarg; break;
		case OPT_CHECK: o->check_log = optarg; break;
		case OPT_JSON: o->json = true; break;
		case OPT_DEGRADED: o->degraded = true; break;
		case 'h': case OPT_HELP: usage(stdout); return 1;
		default: cli_bad_option("bench", c, argv); return -EINVAL;
		}
	}
	if (rc)
		return rc;
	if (argc - optind != 2) {
		cli_usage_error("bench", "needs exactly two disks, DISK1 and DISK2");
		return -EINVAL;
	}
	o->disk[0] = argv[optind];
	o->disk[1] = argv[optind + 1];
	const char *problem = NULL;
	if (o->threads * o->qd > MAX_WORKERS)
		problem = "--threads x --qd must be at most 1024";
	else if (o->bs == 0 || o->bs % BDEV_BLOCK_SIZE || o->bs > (64u << 20))
		problem = "--bs must be a multiple of 4096, at most 64M";
	else if (o->verify_log && o->check_log)
		problem = "--verify and --check exclude each other";
	else if (o->verify_log && o->flush_every == 0)
		problem = "--verify needs --flush-every of at least 1";
	if (problem) {
		cli_usage_error("bench", "%s", problem);
		return -EINVAL;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Self-describing blocks                                              */
/* ------------------------------------------------------------------ */

/*
 * Layout of a 4 KiB block written under --verify (little-endian):
 *   0 magic  8 run_id  16 blkno  24 seq  32 crc32c  36 zero  40.. filler
 * The filler is a PRNG stream seeded from seq and blkno, so a block can be
 * regenerated from its header; the crc covers the whole block with the crc
 * field zero.
 */
#define VBLOCK_MAGIC 0x314b4c4254414342ull /* "BCATBLK1" as LE bytes */
#define VB_OFF_MAGIC 0
#define VB_OFF_RUN 8
#define VB_OFF_BLKNO 16
#define VB_OFF_SEQ 24
#define VB_OFF_CRC 32
#define VB_OFF_FILLER 40

enum vblock_kind { VBLOCK_ZERO, VBLOCK_VALID, VBLOCK_GARBAGE };

struct vblock_id {
	uint64_t run_id, blkno, seq;
};

static void put_le64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static void put_le32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static uint64_t get_le64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }
static uint32_t get_le32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }

static uint64_t filler_seed(uint64_t seq, uint64_t blkno)
{
	return seq * 0x9E3779B97F4A7C15ull ^ blkno;
}

static void filler_generate(uint8_t *p, uint64_t seq, uint64_t blkno)
{
	struct prng r;
	prng_seed(&r, filler_seed(seq, blkno));
	for (size_t off = VB_OFF_FILLER; off < BDEV_BLOCK_SIZE; off += 8)
		put_le64(p + off, prng_next(&r));
}

static bool filler_matches(const uint8_t *p, uint64_t seq, uint64_t blkno)
{
	struct prng r;
	prng_seed(&r, filler_seed(seq, blkno));
	for (size_t off = VB_OFF_FILLER; off < BDEV_BLOCK_SIZE; off += 8)
		if (get_le64(p + off) != prng_next(&r))
			return false;
	return true;
}

/* crc32c of the block as if its crc field were zero. */
static uint32_t vblock_crc(const uint8_t *p)
{
	static const uint8_t zero[4];
	uint32_t c = crc32c(0, p, VB_OFF_CRC);
	c = crc32c(c, zero, sizeof(zero));
	return crc32c(c, p + VB_OFF_CRC + 4, BDEV_BLOCK_SIZE - VB_OFF_CRC - 4);
}

static void vblock_fill(uint8_t *p, const struct vblock_id *id)
{
	put_le64(p + VB_OFF_MAGIC, VBLOCK_MAGIC);
	put_le64(p + VB_OFF_RUN, id->run_id);
	put_le64(p + VB_OFF_BLKNO, id->blkno);
	put_le64(p + VB_OFF_SEQ, id->seq);
	put_le32(p + VB_OFF_CRC, 0);
	put_le32(p + VB_OFF_CRC + 4, 0);
	filler_generate(p, id->seq, id->blkno);
	put_le32(p + VB_OFF_CRC, vblock_crc(p));
}

static bool block_is_zero(const uint8_t *p)
{
	uint64_t acc = 0;
	for (size_t off = 0; off < BDEV_BLOCK_SIZE; off += 8) {
		uint64_t w;
		memcpy(&w, p + off, 8);
		acc |= w;
	}
	return acc == 0;
}

static enum vblock_kind vblock_inspect(const uint8_t *p, struct vblock_id *id)
{
	if (block_is_zero(p))
		return VBLOCK_ZERO;
	if (get_le64(p + VB_OFF_MAGIC) != VBLOCK_MAGIC ||
	    get_le32(p + VB_OFF_CRC) != vblock_crc(p))
		return VBLOCK_GARBAGE;
	id->run_id = get_le64(p + VB_OFF_RUN);
	id->blkno = get_le64(p + VB_OFF_BLKNO);
	id->seq = get_le64(p + VB_OFF_SEQ);
	if (get_le32(p + VB_OFF_CRC + 4) != 0 || !filler_matches(p, id->seq, id->blkno))
		return VBLOCK_GARBAGE;
	return VBLOCK_VALID;
}

/* ------------------------------------------------------------------ */
/* The acknowledged-write log                                          */
/* ------------------------------------------------------------------ */

/*
 * Text, one line per record, so it can be read with less(1):
 *   catamaran-bench-log 1 run=<16 hex> array=<uuid> blocks=<n> bs=<bytes>
 *   <blkno> <seq>          one per acknowledged write of bs bytes
 * Only lines ending in '\n' count: kill -9 can cut the last write(2) short.
 */
#define LOG_MAGIC "catamaran-bench-log"
#define LOG_VERSION 1
#define LOG_RECORD_MAX 42 /* two 20-digit numbers, a space, a newline */

struct ack_record {
	uint64_t blkno, seq;
};

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Open LOG for a new run: it must be new or empty, so one file never mixes
 * two runs. */
static int log_create(const char *path, int *fd_out)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		int e = errno;
		fprintf(stderr, "catamaran bench: %s: %s\n", path, strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		fprintf(stderr, "catamaran bench: %s: %s\n", path, strerror(e));
		close(fd);
		return -e;
	}
	if (st.st_size != 0) {
		fprintf(stderr, "catamaran bench: %s already holds a run; give a new or empty file\n",
			path);
		close(fd);
		return -EEXIST;
	}
	*fd_out = fd;
	return 0;
}

static int log_write_header(int fd, const char *path, uint64_t run_id,
			    const uint8_t uuid[16], uint64_t blocks, uint64_t bs)
{
	char uuid_text[37], line[256];
	uuid_format(uuid, uuid_text);
	int n = snprintf(line, sizeof(line),
			 LOG_MAGIC " %d run=%016" PRIx64 " array=%s blocks=%" PRIu64
			 " bs=%" PRIu64 "\n",
			 LOG_VERSION, run_id, uuid_text, blocks, bs);
	int rc = write_all(fd, line, (size_t)n);
	if (rc < 0)
		fprintf(stderr, "catamaran bench: %s: %s\n", path, strerror(-rc));
	return rc;
}

/* One write(2) for the whole batch (more only if the kernel writes short). */
static int log_append(int fd, char *scratch, const struct ack_record *recs, unsigned n)
{
	size_t len = 0;
	for (unsigned i = 0; i < n; i++)
		len += (size_t)sprintf(scratch + len, "%" PRIu64 " %" PRIu64 "\n",
				       recs[i].blkno, recs[i].seq);
	return write_all(fd, scratch, len);
}

struct loaded_log {
	bool has_header;
	uint64_t run_id;
	char uuid[37];
	uint64_t blocks, bs;
	struct ack_record *recs;
	size_t nrecs;
};

static int read_whole_file(const char *path, char **out, size_t *len_out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap + 1);
	int rc = buf ? 0 : -ENOMEM;
	while (rc == 0) {
		if (len == cap) {
			char *bigger = realloc(buf, cap * 2 + 1);
			if (!bigger) {
				rc = -ENOMEM;
				break;
			}
			buf = bigger;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = -errno;
		else if (n == 0)
			break;
		else
			len += (size_t)n;
	}
	close(fd);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	buf[len] = '\0';
	*out = buf;
	*len_out = len;
	return 0;
}

static int parse_header(const char *line, struct loaded_log *log)
{
	int version = 0;
	if (sscanf(line, LOG_MAGIC " %d run=%" SCNx64 " array=%36s blocks=%" SCNu64
		   " bs=%" SCNu64, &version, &log->run_id, log->uuid, &log->blocks,
		   &log->bs) != 5 || version != LOG_VERSION)
		return -EBADMSG;
	if (log->bs == 0 || log->bs % BDEV_BLOCK_SIZE)
		return -EBADMSG;
	log->has_header = true;
	return 0;
}

static int parse_record(const char *line, struct ack_record *rec)
{
	char extra;
	if (sscanf(line, "%" SCNu64 " %" SCNu64 " %c", &rec->blkno, &rec->seq, &extra) != 2)
		return -EBADMSG;
	return rec->seq ? 0 : -EBADMSG;
}

/* Parse the complete lines of text (a trailing partial line is ignored). */
static int parse_log(char *text, size_t len, const char *path, struct loaded_log *log)
{
	size_t cap = len / 4 + 1;
	log->recs = malloc(cap * sizeof(*log->recs));
	if (!log->recs)
		return -ENOMEM;
	size_t lineno = 0;
	for (char *line = text, *nl; (nl = memchr(line, '\n', len - (size_t)(line - text)));
	     line = nl + 1) {
		*nl = '\0';
		lineno++;
		int rc = lineno == 1 ? parse_header(line, log)
				     : parse_record(line, &log->recs[log->nrecs]);
		if (rc < 0) {
			fprintf(stderr, "catamaran bench: %s:%zu: not a bench log line\n",
				path, lineno);
			return rc;
		}
		if (lineno > 1)
			log->nrecs++;
	}
	return 0;
}

static int log_load(const char *path, struct loaded_log *log)
{
	*log = (struct loaded_log){ 0 };
	char *text = NULL;
	size_t len = 0;
	int rc = read_whole_file(path, &text, &len);
	if (rc < 0) {
		fprintf(stderr, "catamaran bench: %s: %s\n", path, strerror(-rc));
		return rc;
	}
	rc = parse_log(text, len, path, log);
	free(text);
	return rc;
}

/* ------------------------------------------------------------------ */
/* The run and its workers                                             */
/* ------------------------------------------------------------------ */

/* Set from the SIGINT/SIGTERM handler (lock-free atomics are allowed there). */
static atomic_int stop_signal;

static void on_stop_signal(int sig)
{
	atomic_store(&stop_signal, sig);
}

struct bench;

struct worker {
	struct bench *b;
	unsigned index;
	pthread_t thread;
	struct prng rng;
	uint8_t *buf;
	uint64_t owned;         /* slots index, index+W, ... below nslots */
	uint64_t cursor;        /* sequential patterns: next owned slot ordinal */
	unsigned unflushed;     /* writes since the last flush */
	struct ack_record *pending;
	unsigned npending;
	char *log_scratch;
	struct latency_hist read, write, flush;
	_Atomic uint64_t progress_ops, progress_bytes;
	uint64_t end_ns;
	uint64_t bad_reads;
	int error;              /* first failure, -errno */
};

struct bench {
	const struct bench_opts *o;
	struct bdev *dev;
	uint64_t span_blocks, nslots;
	unsigned bs_blocks, nworkers;
	bool verify;
	uint64_t run_id;
	int log_fd;
	_Atomic uint64_t next_seq;
	atomic_bool stop;
	atomic_uint bad_reads_reported;
	uint64_t start_ns, deadline_ns; /* deadline 0 = none */
	/* Start gate: workers wait until the main thread opens it, so that
	 * thread creation is not timed. A failed start opens it with stop set. */
	struct start_gate gate;
	struct worker *workers;
};

static bool pattern_writes(enum pattern p)
{
	return p == PAT_RANDWRITE || p == PAT_SEQWRITE || p == PAT_MIXED;
}

static bool next_is_read(struct worker *w)
{
	switch (w->b->o->pattern) {
	case PAT_RANDREAD: case PAT_SEQREAD: return true;
	case PAT_RANDWRITE: case PAT_SEQWRITE: return false;
	case PAT_MIXED: return prng_below(&w->rng, 100) < MIXED_READ_PERCENT;
	}
	return true;
}

/* Writes go to owned slots only (one writer per block, see the top);
 * random reads may go anywhere. Sequential patterns stripe the slots over
 * the workers so that together they sweep the span in order. */
static uint64_t next_slot(struct worker *w, bool is_read)
{
	struct bench *b = w->b;
	enum pattern p = b->o->pattern;
	if (p == PAT_SEQREAD || p == PAT_SEQWRITE) {
		uint64_t k = w->cursor++;
		if (w->cursor == w->owned)
			w->cursor = 0;
		return k * b->nworkers + w->index;
	}
	if (is_read)
		return prng_below(&w->rng, b->nslots);
	return prng_below(&w->rng, w->owned) * b->nworkers + w->index;
}

static void worker_fail(struct worker *w, int rc, const char *what, uint64_t blkno)
{
	if (w->error == 0) {
		w->error = rc;
		if (blkno == UINT64_MAX)
			fprintf(stderr, "catamaran bench: %s failed: %s\n", what, strerror(-rc));
		else
			fprintf(stderr, "catamaran bench: %s of block %" PRIu64 " failed: %s\n",
				what, blkno, strerror(-rc));
	}
	atomic_store(&w->b->stop, true);
}

static void verify_read_block(struct worker *w, const uint8_t *p, uint64_t blkno)
{
	struct vblock_id id;
	enum vblock_kind kind = vblock_inspect(p, &id);
	bool good = kind == VBLOCK_ZERO ||
		    (kind == VBLOCK_VALID && id.blkno == blkno &&
		     (id.run_id != w->b->run_id || id.seq < atomic_load(&w->b->next_seq)));
	if (good)
		return;
	w->bad_reads++;
	if (atomic_fetch_add(&w->b->bad_reads_reported, 1) < 5)
		fprintf(stderr, "catamaran bench: read of block %" PRIu64
			" returned a value never written\n", blkno);
}

static void verify_read(struct worker *w, uint64_t blkno)
{
	for (unsigned i = 0; i < w->b->bs_blocks; i++)
		verify_read_block(w, w->buf + (size_t)i * BDEV_BLOCK_SIZE, blkno + i);
}

/* Under --verify the buffer is filled before the clock starts. */
static void prepare_write(struct worker *w, uint64_t blkno, uint64_t *seq)
{
	struct bench *b = w->b;
	if (!b->verify)
		return;
	*seq = atomic_fetch_add(&b->next_seq, 1);
	for (unsigned i = 0; i < b->bs_blocks; i++) {
		struct vblock_id id = { b->run_id, blkno + i, *seq };
		vblock_fill(w->buf + (size_t)i * BDEV_BLOCK_SIZE, &id);
	}
}

/* Flush, then log the writes that completed before the flush began. */
static int flush_and_log(struct worker *w)
{
	struct bench *b = w->b;
	uint64_t t0 = now_ns();
	int rc = bdev_flush(b->dev);
	if (rc < 0) {
		worker_fail(w, rc, "flush", UINT64_MAX);
		return rc;
	}
	hist_add(&w->flush, now_ns() - t0);
	w->unflushed = 0;
	if (b->verify && w->npending > 0) {
		rc = log_append(b->log_fd, w->log_scratch, w->pending, w->npending);
		if (rc < 0) {
			worker_fail(w, rc, "appending to the log", UINT64_MAX);
			return rc;
		}
		w->npending = 0;
	}
	return 0;
}

static bool run_over(struct bench *b, uint64_t now)
{
	return atomic_load_explicit(&b->stop, memory_order_relaxed) ||
	       (b->deadline_ns && now >= b->deadline_ns);
}

static int one_request(struct worker *w, uint64_t *now)
{
	struct bench *b = w->b;
	bool is_read = next_is_read(w);
	uint64_t blkno = next_slot(w, is_read) * b->bs_blocks;
	uint64_t seq = 0;
	if (!is_read)
		prepare_write(w, blkno, &seq);

	uint64_t t0 = now_ns();
	int rc = is_read ? bdev_read(b->dev, blkno, w->buf, b->bs_blocks)
			 : bdev_write(b->dev, blkno, w->buf, b->bs_blocks);
	*now = now_ns();
	if (rc < 0) {
		worker_fail(w, rc, is_read ? "read" : "write", blkno);
		return rc;
	}
	hist_add(is_read ? &w->read : &w->write, *now - t0);
	atomic_fetch_add_explicit(&w->progress_ops, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&w->progress_bytes, b->o->bs, memory_order_relaxed);
	if (is_read) {
		if (b->verify)
			verify_read(w, blkno); /* outside the timed region */
		return 0;
	}
	if (b->verify)
		w->pending[w->npending++] = (struct ack_record){ blkno, seq };
	if (b->o->flush_every && ++w->unflushed == b->o->flush_every)
		return flush_and_log(w);
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct bench *b = w->b;
	start_gate_wait(&b->gate);
	uint64_t now = now_ns();
	while (!run_over(b, now))
		if (one_request(w, &now) < 0)
			break;
	w->end_ns = now;
	/* The last batch is acknowledged too, also after an interrupt. */
	if (w->unflushed > 0 || w->npending > 0)
		flush_and_log(w);
	return NULL;
}

static int worker_init(struct worker *w, struct bench *b, unsigned index)
{
	*w = (struct worker){ .b = b, .index = index };
	prng_seed(&w->rng, b->run_id ^ ((uint64_t)index << 32) ^ now_ns());
	w->owned = b->nslots / b->nworkers + (index < b->nslots % b->nworkers);
	w->buf = block_alloc(b->o->bs);
	if (!w->buf)
		return -ENOMEM;
	/* Without --verify the data is random once, so nothing below us can
	 * shortcut zero or repeated blocks. */
	for (size_t off = 0; off < b->o->bs; off += 8) {
		uint64_t v = prng_next(&w->rng);
		memcpy(w->buf + off, &v, 8);
	}
	if (b->verify) {
		w->pending = calloc(b->o->flush_every, sizeof(*w->pending));
		w->log_scratch = malloc((size_t)b->o->flush_every * LOG_RECORD_MAX + 1);
		if (!w->pending || !w->log_scratch)
			return -ENOMEM;
	}
	return 0;
}

static void worker_free(struct worker *w)
{
	free(w->buf);
	free(w->pending);
	free(w->log_scratch);
}

/* ------------------------------------------------------------------ */
/* Results                                                             */
/* ------------------------------------------------------------------ */

struct totals {
	struct latency_hist read, write, flush;
	double seconds;
	uint64_t bad_reads;
	int error;
};

static void sum_workers(const struct bench *b, struct totals *t)
{
	memset(t, 0, sizeof(*t));
	uint64_t end = b->start_ns;
	for (unsigned i = 0; i < b->nworkers; i++) {
		const struct worker *w = &b->workers[i];
		hist_merge(&t->read, &w->read);
		hist_merge(&t->write, &w->write);
		hist_merge(&t->flush, &w->flush);
		t->bad_reads += w->bad_reads;
		if (!t->error)
			t->error = w->error;
		if (w->end_ns > end)
			end = w->end_ns;
	}
	t->seconds = (double)(end - b->start_ns) / 1e9;
}

static double per_second(uint64_t n, double seconds)
{
	return seconds > 0 ? (double)n / seconds : 0;
}

static const double percentiles[] = { 50, 90, 99, 99.9 };
static const char *const percentile_names[] = { "p50", "p90", "p99", "p99.9" };
#define NPERCENTILES (sizeof(percentiles) / sizeof(percentiles[0]))

static void print_op_text(const char *name, const struct latency_hist *h,
			  uint64_t bs, double seconds, bool has_bytes)
{
	if (h->count == 0)
		return;
	char l[32];
	printf("  %-6s %10" PRIu64 " ops", name, h->count);
	if (has_bytes)
		printf("  %9.0f IOPS  %8.1f MB/s", per_second(h->count, seconds),
		       per_second(h->count * bs, seconds) / 1e6);
	printf("\n         latency");
	for (size_t i = 0; i < NPERCENTILES; i++)
		printf("  %s %s", percentile_names[i],
		       fmt_latency(hist_percentile(h, percentiles[i]), l, sizeof(l)));
	printf("  max %s\n", fmt_latency(h->max_ns, l, sizeof(l)));
}

static void print_text(const struct bench *b, const struct totals *t)
{
	const struct bench_opts *o = b->o;
	char bs[32], span[32];
	printf("bench blockdev: %s  bs %s  span %s  workers %u (%u threads x qd %u)  "
	       "flush every %u writes%s\n",
	       pattern_names[o->pattern], format_size(o->bs, bs, sizeof(bs)),
	       format_size(b->span_blocks * BDEV_BLOCK_SIZE, span, sizeof(span)),
	       b->nworkers, o->threads, o->qd, o->flush_every,
	       b->verify ? "  verify" : "");
	uint64_t ops = t->read.count + t->write.count;
	printf("  total  %10" PRIu64 " ops  %9.0f IOPS  %8.1f MB/s  in %.2f s\n", ops,
	       per_second(ops, t->seconds), per_second(ops * o->bs, t->seconds) / 1e6,
	       t->seconds);
	print_op_text("read", &t->read, o->bs, t->seconds, true);
	print_op_text("write", &t->write, o->bs, t->seconds, true);
	print_op_text("flush", &t->flush, o->bs, t->seconds, false);
	if (b->verify)
		printf("  verify: run %016" PRIx64 ", %" PRIu64 " reads of a value never written\n",
		       b->run_id, t->bad_reads);
}

static void print_op_json(const char *name, const struct latency_hist *h,
			  uint64_t bs, double seconds)
{
	printf("\"%s\":{\"ops\":%" PRIu64 ",\"iops\":%.1f,\"mbps\":%.3f,\"lat_us\":{",
	       name, h->count, per_second(h->count, seconds),
	       per_second(h->count * bs, seconds) / 1e6);
	for (size_t i = 0; i < NPERCENTILES; i++)
		printf("\"%s\":%.1f,", percentile_names[i],
		       (double)hist_percentile(h, percentiles[i]) / 1e3);
	printf("\"max\":%.1f}}", (double)h->max_ns / 1e3);
}

static void print_json(const struct bench *b, const struct totals *t)
{
	const struct bench_opts *o = b->o;
	uint64_t ops = t->read.count + t->write.count;
	printf("{\"pattern\":\"%s\",\"bs\":%" PRIu64 ",\"threads\":%u,\"qd\":%u,"
	       "\"workers\":%u,\"span_bytes\":%" PRIu64 ",\"flush_every\":%u,"
	       "\"seconds\":%.3f,\"iops\":%.1f,\"mbps\":%.3f,",
	       pattern_names[o->pattern], o->bs, o->threads, o->qd, b->nworkers,
	       b->span_blocks * BDEV_BLOCK_SIZE, o->flush_every, t->seconds,
	       per_second(ops, t->seconds), per_second(ops * o->bs, t->seconds) / 1e6);
	print_op_json("read", &t->read, o->bs, t->seconds);
	putchar(',');
	print_op_json("write", &t->write, o->bs, t->seconds);
	putchar(',');
	print_op_json("flush", &t->flush, 0, t->seconds);
	printf(",\"verify\":%s,\"bad_reads\":%" PRIu64 ",\"error\":%s}\n",
	       b->verify ? "true" : "false", t->bad_reads, t->error ? "true" : "false");
}

/* ------------------------------------------------------------------ */
/* bench blockdev (load)                                               */
/* ------------------------------------------------------------------ */

static int bench_geometry(struct bench *b, const struct bench_opts *o, struct bdev *dev)
{
	b->dev = dev;
	b->bs_blocks = (unsigned)(o->bs / BDEV_BLOCK_SIZE);
	b->nworkers = o->threads * o->qd;
	b->span_blocks = dev->nblocks;
	if (o->span && o->span / BDEV_BLOCK_SIZE < b->span_blocks)
		b->span_blocks = o->span / BDEV_BLOCK_SIZE;
	b->nslots = b->span_blocks / b->bs_blocks;
	if (b->nslots == 0) {
		fprintf(stderr, "catamaran bench: the span holds no request of %" PRIu64 " bytes\n",
			o->bs);
		return -EINVAL;
	}
	if (pattern_writes(o->pattern) && b->nslots < b->nworkers) {
		fprintf(stderr, "catamaran bench: the span has room for %" PRIu64
			" request(s) of %" PRIu64 " bytes, fewer than the %u writing workers\n",
			b->nslots, o->bs, b->nworkers);
		return -EINVAL;
	}
	return 0;
}

static int random_run_id(uint64_t *out)
{
	ssize_t n = getrandom(out, sizeof(*out), 0);
	if (n != (ssize_t)sizeof(*out))
		return n < 0 ? -errno : -EIO;
	return 0;
}

static int bench_open_log(struct bench *b, struct mirror *m)
{
	b->log_fd = -1;
	if (!b->verify)
		return 0;
	struct mirror_status st;
	mirror_get_status(m, &st);
	int rc = log_create(b->o->verify_log, &b->log_fd);
	if (rc == 0)
		rc = log_write_header(b->log_fd, b->o->verify_log, b->run_id, st.uuid,
				      b->dev->nblocks, b->o->bs);
	return rc;
}

static void print_progress(struct bench *b, uint64_t now, uint64_t *last_ops,
			   uint64_t *last_bytes, uint64_t *last_ns)
{
	uint64_t ops = 0, bytes = 0;
	for (unsigned i = 0; i < b->nworkers; i++) {
		ops += atomic_load_explicit(&b->workers[i].progress_ops, memory_order_relaxed);
		bytes += atomic_load_explicit(&b->workers[i].progress_bytes, memory_order_relaxed);
	}
	double dt = (double)(now - *last_ns) / 1e9;
	fprintf(stderr, "\r\033[K  %5.0f s  %9.0f IOPS  %8.1f MB/s",
		(double)(now - b->start_ns) / 1e9, (double)(ops - *last_ops) / dt,
		(double)(bytes - *last_bytes) / dt / 1e6);
	*last_ops = ops;
	*last_bytes = bytes;
	*last_ns = now;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / NS_PER_SEC), (long)(ns % NS_PER_SEC) };
	nanosleep(&ts, NULL); /* EINTR is fine: the caller looks at the flags */
}

/* The main thread waits for the deadline or a signal, drawing progress. */
static void watch_run(struct bench *b)
{
	bool tty = isatty(STDERR_FILENO);
	uint64_t last_ops = 0, last_bytes = 0, last_ns = b->start_ns;
	uint64_t next_report = b->start_ns + NS_PER_SEC;
	for (;;) {
		uint64_t now = now_ns();
		if (atomic_load(&stop_signal) || run_over(b, now))
			break;
		if (tty && now >= next_report) {
			print_progress(b, now, &last_ops, &last_bytes, &last_ns);
			next_report += NS_PER_SEC;
		}
		uint64_t nap = 100000000ull;
		if (b->deadline_ns && b->deadline_ns - now < nap)
			nap = b->deadline_ns - now;
		sleep_ns(nap);
	}
	atomic_store(&b->stop, true);
	if (tty && now_ns() >= b->start_ns + NS_PER_SEC)
		fputs("\r\033[K", stderr);
}

static int start_workers(struct bench *b, unsigned *started)
{
	*started = 0;
	for (unsigned i = 0; i < b->nworkers; i++) {
		int rc = worker_init(&b->workers[i], b, i);
		if (rc < 0) {
			worker_free(&b->workers[i]);
			return rc;
		}
		rc = pthread_create(&b->workers[i].thread, NULL, worker_main, &b->workers[i]);
		if (rc) {
			worker_free(&b->workers[i]);
			return -rc;
		}
		(*started)++;
	}
	return 0;
}


/*
 * Threads started while the caller blocks SIGINT/SIGTERM (workers, and the
 * mirror's own threads) inherit that mask, so a signal always lands on the
 * main thread and never interrupts an io_uring wait in the I/O path.
 */
static int run_workers(struct bench *b, const sigset_t *stop_set)
{
	b->workers = calloc(b->nworkers, sizeof(*b->workers));
	if (!b->workers)
		return -ENOMEM;
	unsigned started;
	int rc = start_workers(b, &started);
	if (rc < 0) {
		fprintf(stderr, "catamaran bench: cannot start workers: %s\n", strerror(-rc));
		atomic_store(&b->stop, true);
	}
	b->start_ns = now_ns();
	b->deadline_ns = b->o->seconds > 0
		? b->start_ns + (uint64_t)(b->o->seconds * 1e9) : 0;
	start_gate_open(&b->gate);
	if (rc == 0) {
		pthread_sigmask(SIG_UNBLOCK, stop_set, NULL);
		watch_run(b);
		pthread_sigmask(SIG_BLOCK, stop_set, NULL);
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(b->workers[i].thread, NULL);
	b->nworkers = started; /* only these have results (and buffers) */
	return rc;
}

static void free_workers(struct bench *b)
{
	for (unsigned i = 0; b->workers && i < b->nworkers; i++)
		worker_free(&b->workers[i]);
	free(b->workers);
}

static int report(const struct bench *b)
{
	struct totals t;
	sum_workers(b, &t);
	if (b->o->json)
		print_json(b, &t);
	else
		print_text(b, &t);
	if (fflush(stdout) != 0)
		return EXIT_TROUBLE;
	if (t.error)
		return EXIT_TROUBLE;
	return t.bad_reads ? EXIT_VIOLATION : EXIT_GOOD;
}

static int install_stop_handlers(struct sigaction old[2])
{
	struct sigaction sa = { .sa_handler = on_stop_signal };
	sigemptyset(&sa.sa_mask);
	atomic_store(&stop_signal, 0);
	if (sigaction(SIGINT, &sa, &old[0]) < 0 || sigaction(SIGTERM, &sa, &old[1]) < 0) {
		int e = errno;
		fprintf(stderr, "catamaran bench: sigaction: %s\n", strerror(e));
		return -e;
	}
	return 0;
}

static void restore_stop_handlers(const struct sigaction old[2])
{
	sigaction(SIGINT, &old[0], NULL);
	sigaction(SIGTERM, &old[1], NULL);
}

/* Everything between opening and closing the mirror. */
static int load_mirror(struct bench *b, struct mirror *m, const sigset_t *stop_set)
{
	if (bench_resync_if_needed("bench", m) < 0)
		return EXIT_TROUBLE;
	if (bench_geometry(b, b->o, mirror_bdev(m)) < 0)
		return EXIT_TROUBLE;
	if (b->verify && random_run_id(&b->run_id) < 0) {
		fprintf(stderr, "catamaran bench: getrandom failed\n");
		return EXIT_TROUBLE;
	}
	if (bench_open_log(b, m) < 0)
		return EXIT_TROUBLE;
	struct sigaction old[2];
	int status = EXIT_TROUBLE;
	if (install_stop_handlers(old) == 0) {
		int rc = run_workers(b, stop_set);
		status = report(b);
		if (rc < 0)
			status = EXIT_TROUBLE;
		restore_stop_handlers(old);
	}
	free_workers(b);
	if (b->log_fd >= 0 && close(b->log_fd) < 0) {
		fprintf(stderr, "catamaran bench: %s: %s\n", b->o->verify_log, strerror(errno));
		status = EXIT_TROUBLE;
	}
	return status;
}

static int run_load(const struct bench_opts *o)
{
	sigset_t stop_set, old_mask;
	sigemptyset(&stop_set);
	sigaddset(&stop_set, SIGINT);
	sigaddset(&stop_set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop_set, &old_mask);

	struct bench b = { .o = o, .verify = o->verify_log != NULL, .log_fd = -1,
			   .gate = START_GATE_INIT };
	atomic_init(&b.next_seq, 1);
	struct mirror_opts mo = { .allow_degraded = o->degraded };
	struct mirror *m;
	int status = EXIT_TROUBLE;
	if (cli_open_mirror("bench", o->disk[0], o->disk[1], &mo, &m) == 0) {
		status = load_mirror(&b, m, &stop_set);
		int rc = mirror_close(m);
		if (rc < 0) {
			fprintf(stderr, "catamaran bench: closing the mirror: %s\n", strerror(-rc));
			status = EXIT_TROUBLE;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	return status;
}

/* ------------------------------------------------------------------ */
/* bench blockdev --check                                              */
/* ------------------------------------------------------------------ */

/* 128 KiB reads: a mirror read holds one stripe lock per block, and
 * ThreadSanitizer's deadlock detector aborts past 64 locks held at once. */
#define CHECK_BATCH_BLOCKS 32u
#define CHECK_REPORT_MAX 10
#define PROGRESS_INTERVAL_NS 100000000ull /* cli_progress: at most every 100 ms */

struct check_state {
	const struct loaded_log *log;
	uint64_t *acked;        /* per block: highest acknowledged seq, 0 = none */
	uint64_t blocks, zero, this_run, other_runs, acked_blocks, violations;
};

/* Spread each record over the 4 KiB blocks of its request. */
static int apply_log(struct check_state *c, uint64_t nblocks, const char *path)
{
	const struct loaded_log *log = c->log;
	uint64_t per_req = log->bs / BDEV_BLOCK_SIZE;
	for (size_t i = 0; i < log->nrecs; i++) {
		const struct ack_record *r = &log->recs[i];
		if (r->blkno >= nblocks || per_req > nblocks - r->blkno) {
			fprintf(stderr, "catamaran bench: %s: record for block %" PRIu64
				" lies outside the device\n", path, r->blkno);
			return -ERANGE;
		}
		for (uint64_t k = 0; k < per_req; k++)
			if (c->acked[r->blkno + k] < r->seq)
				c->acked[r->blkno + k] = r->seq;
	}
	for (uint64_t i = 0; i < nblocks; i++)
		c->acked_blocks += c->acked[i] != 0;
	return 0;
}

static void violation(struct check_state *c, uint64_t blkno, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void violation(struct check_state *c, uint64_t blkno, const char *fmt, ...)
{
	if (c->violations++ >= CHECK_REPORT_MAX)
		return;
	va_list ap;
	va_start(ap, fmt);
	printf("  block %" PRIu64 ": ", blkno);
	vprintf(fmt, ap);
	putchar('\n');
	va_end(ap);
}

static void check_block(struct check_state *c, const uint8_t *p, uint64_t blkno)
{
	struct vblock_id id = { 0 };
	enum vblock_kind kind = vblock_inspect(p, &id);
	uint64_t acked = c->acked[blkno];
	bool ours = kind == VBLOCK_VALID && c->log->has_header && id.run_id == c->log->run_id;
	c->blocks++;
	if (kind == VBLOCK_GARBAGE) {
		violation(c, blkno, "holds a value never written (not a bench block)");
		return;
	}
	if (kind == VBLOCK_VALID && id.blkno != blkno) {
		violation(c, blkno, "holds a value never written (the block for %" PRIu64
			  ", seq %" PRIu64 ")", id.blkno, id.seq);
		return;
	}
	if (kind == VBLOCK_ZERO)
		c->zero++;
	else if (ours)
		c->this_run++;
	else
		c->other_runs++;
	if (acked == 0)
		return;
	if (kind == VBLOCK_ZERO)
		violation(c, blkno, "acknowledged write seq %" PRIu64 " lost: block is zero",
			  acked);
	else if (!ours)
		violation(c, blkno, "acknowledged write seq %" PRIu64 " lost: block holds seq %"
			  PRIu64 " of run %016" PRIx64, acked, id.seq, id.run_id);
	else if (id.seq < acked)
		violation(c, blkno, "acknowledged write seq %" PRIu64
			  " lost: block holds the older seq %" PRIu64, acked, id.seq);
}

static int scan_device(struct check_state *c, struct bdev *dev)
{
	uint8_t *buf = block_alloc((size_t)CHECK_BATCH_BLOCKS * BDEV_BLOCK_SIZE);
	if (!buf)
		return -ENOMEM;
	int rc = 0;
	uint64_t next_progress = 0;
	for (uint64_t blkno = 0; blkno < dev->nblocks && rc == 0; blkno += CHECK_BATCH_BLOCKS) {
		if (now_ns() >= next_progress) {
			cli_progress(NULL, "check", blkno, dev->nblocks);
			next_progress = now_ns() + PROGRESS_INTERVAL_NS;
		}
		uint64_t n = dev->nblocks - blkno;
		if (n > CHECK_BATCH_BLOCKS)
			n = CHECK_BATCH_BLOCKS;
		rc = bdev_read(dev, blkno, buf, n);
		if (rc < 0) {
			fprintf(stderr, "catamaran bench: reading blocks %" PRIu64 "..%" PRIu64
				": %s\n", blkno, blkno + n - 1, strerror(-rc));
			break;
		}
		for (uint64_t i = 0; i < n; i++)
			check_block(c, buf + i * BDEV_BLOCK_SIZE, blkno + i);
	}
	if (rc == 0)
		cli_progress(NULL, "check", dev->nblocks, dev->nblocks);
	cli_progress_end();
	free(buf);
	return rc;
}

/* The log must describe this array. An empty log (the run was killed
 * before it wrote its header) names no write: only validity is checked. */
static int log_matches(const struct loaded_log *log, struct mirror *m, const char *path)
{
	if (!log->has_header)
		return 0;
	struct mirror_status st;
	char uuid[37];
	mirror_get_status(m, &st);
	uuid_format(st.uuid, uuid);
	if (strcmp(uuid, log->uuid) != 0 || log->blocks != st.data_blocks) {
		fprintf(stderr, "catamaran bench: %s was written for array %s of %" PRIu64
			" blocks, these disks hold array %s of %" PRIu64 " blocks\n",
			path, log->uuid, log->blocks, uuid, st.data_blocks);
		return -EINVAL;
	}
	if (st.stale_chunks)
		fprintf(stderr, "catamaran bench: warning: %" PRIu64 " chunks still need "
			"recovery (run `catamaran recover`); reading them from the "
			"authoritative disk\n", st.stale_chunks);
	return 0;
}

static void print_check(const struct check_state *c, const char *path)
{
	const struct loaded_log *log = c->log;
	if (log->has_header)
		printf("bench check: %s: run %016" PRIx64 ", %zu acknowledged writes "
		       "covering %" PRIu64 " blocks\n", path, log->run_id, log->nrecs,
		       c->acked_blocks);
	else
		printf("bench check: %s: empty log (no acknowledged write)\n", path);
	printf("  %" PRIu64 " blocks read: %" PRIu64 " zero, %" PRIu64 " of this run, %"
	       PRIu64 " of other runs\n", c->blocks, c->zero, c->this_run, c->other_runs);
	if (c->violations > CHECK_REPORT_MAX)
		printf("  ... and %" PRIu64 " more\n", c->violations - CHECK_REPORT_MAX);
	printf("  %" PRIu64 " violations: %s\n", c->violations,
	       c->violations ? "FAILED" : "every acknowledged write is present");
}

static int check_mirror(const struct bench_opts *o, const struct loaded_log *log,
			struct mirror *m)
{
	struct bdev *dev = mirror_bdev(m);
	if (log_matches(log, m, o->check_log) < 0)
		return EXIT_TROUBLE;
	struct check_state c = { .log = log, .acked = calloc(dev->nblocks, sizeof(uint64_t)) };
	if (!c.acked) {
		fprintf(stderr, "catamaran bench: out of memory\n");
		return EXIT_TROUBLE;
	}
	int status = EXIT_TROUBLE;
	if (apply_log(&c, dev->nblocks, o->check_log) == 0 && scan_device(&c, dev) == 0) {
		print_check(&c, o->check_log);
		status = c.violations ? EXIT_VIOLATION : EXIT_GOOD;
	}
	free(c.acked);
	return status;
}

static int run_check(const struct bench_opts *o)
{
	struct loaded_log log;
	if (log_load(o->check_log, &log) < 0) {
		free(log.recs);
		return EXIT_TROUBLE;
	}
	struct mirror_opts mo = { .readonly = true, .allow_degraded = o->degraded,
				  .no_cleaner = true };
	struct mirror *m;
	int status = EXIT_TROUBLE;
	if (cli_open_mirror("bench", o->disk[0], o->disk[1], &mo, &m) == 0) {
		status = check_mirror(o, &log, m);
		int rc = mirror_close(m);
		if (rc < 0) {
			fprintf(stderr, "catamaran bench: closing the mirror: %s\n", strerror(-rc));
			status = EXIT_TROUBLE;
		}
	}
	free(log.recs);
	if (fflush(stdout) != 0)
		status = EXIT_TROUBLE;
	return status;
}

/* ------------------------------------------------------------------ */
/* Entry                                                               */
/* ------------------------------------------------------------------ */

int cmd_bench(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_TROUBLE : EXIT_GOOD;
	}
	if (strcmp(argv[1], "fs") == 0)
		return cmd_bench_fs(argc - 1, argv + 1);
	if (strcmp(argv[1], "maildir") == 0)
		return cmd_bench_maildir(argc - 1, argv + 1);
	if (strcmp(argv[1], "mail") == 0)
		return cmd_bench_mail(argc - 1, argv + 1);
	if (strcmp(argv[1], "blockdev") != 0)
		return cli_usage_error("bench", "unknown benchmark '%s' (there are: blockdev, "
				       "fs, maildir, mail)", argv[1]);
	struct bench_opts o;
	int rc = parse_options(argc - 1, argv + 1, &o);
	if (rc)
		return rc > 0 ? EXIT_GOOD : EXIT_TROUBLE;
	return o.check_log ? run_check(&o) : run_load(&o);
}
