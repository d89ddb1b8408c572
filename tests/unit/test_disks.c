/*
 * test_disks.c - the bdev implementations: io_uring disk, memory disk,
 * crash simulator, fault injector.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dirent.h>

#include "blockdev/bdev.h"
#include "blockdev/disk/uring_disk.h"
#include "blockdev/testdev/crash_disk.h"
#include "blockdev/testdev/fault_disk.h"
#include "blockdev/testdev/mem_disk.h"
#include "core/base/log.h"
#include "core/base/util.h"

#define BS BDEV_BLOCK_SIZE

/* ---- helpers ------------------------------------------------------------- */

static char tmpdir[256];
static atomic_int warnings;

static void count_warnings(enum cat_log_level level, const char *msg)
{
	(void)msg;
	if (level >= CAT_LOG_WARN)
		atomic_fetch_add(&warnings, 1);
}

static void setup_tmpdir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/cat-disks-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	cat_log_set_sink(count_warnings, CAT_LOG_DEBUG);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static void remove_tmpdir(void) { nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static const char *tmp_path(const char *name)
{
	static char path[2][512];
	static int which;
	which ^= 1;
	snprintf(path[which], sizeof(path[which]), "%s/%s", tmpdir, name);
	return path[which];
}

/* Block contents derived from (tag, word index): any two tags differ. */
static void fill(void *buf, uint64_t tag)
{
	uint64_t *w = buf;
	for (size_t i = 0; i < BS / 8; i++)
		w[i] = (tag + 1) * 0x9E3779B97F4A7C15ull ^ i;
}

static bool holds(const void *buf, uint64_t tag)
{
	const uint64_t *w = buf;
	for (size_t i = 0; i < BS / 8; i++)
		if (w[i] != ((tag + 1) * 0x9E3779B97F4A7C15ull ^ i))
			return false;
	return true;
}

static bool is_zero(const void *buf)
{
	const uint8_t *b = buf;
	for (size_t i = 0; i < BS; i++)
		if (b[i])
			return false;
	return true;
}

static uint8_t *blocks(size_t n)
{
	uint8_t *p = block_alloc(n * BS);
	cr_assert_not_null(p);
	memset(p, 0, n * BS);
	return p;
}

static int write_tag(struct bdev *d, uint64_t blkno, uint64_t tag)
{
	uint8_t *b = blocks(1);
	fill(b, tag);
	int rc = bdev_write(d, blkno, b, 1);
	free(b);
	return rc;
}

/* 1 if block holds tag, 0 if not, negative errno on read error. */
static int check_tag(struct bdev *d, uint64_t blkno, uint64_t tag)
{
	uint8_t *b = blocks(1);
	int rc = bdev_read(d, blkno, b, 1);
	if (rc == 0)
		rc = holds(b, tag);
	free(b);
	return rc;
}

static struct bdev *open_disk(const char *name, uint64_t nblocks)
{
	const char *path = tmp_path(name);
	struct cat_error err = { 0 };
	int created = -1;
	cr_assert_eq(uring_disk_create(path, nblocks * BS, &created, &err), 0, "%s", err.msg);
	struct bdev *d = NULL;
	cr_assert_eq(uring_disk_open(path, 0, &d, &err), 0, "%s", err.msg);
	cr_assert_eq(d->nblocks, nblocks);
	return d;
}

static int count_open_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	cr_assert_not_null(dir);
	int n = 0;
	while (readdir(dir))
		n++;
	closedir(dir);
	return n;
}

/* ---- io_uring disk -------------------------------------------------------- */

TestSuite(uring_disk, .init = setup_tmpdir, .fini = remove_tmpdir);

Test(uring_disk, create_preallocates_and_only_grows)
{
	const char *path = tmp_path("a.img");
	struct cat_error err = { 0 };
	int created = -1;
	cr_assert_eq(uring_disk_create(path, 1 << 20, &created, &err), 0, "%s", err.msg);
	cr_assert_eq(created, 1);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, 1 << 20);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_geq((long long)st.st_blocks * 512, 1 << 20, "not preallocated");

	cr_assert_eq(uring_disk_create(path, 2 << 20, &created, &err), 0, "%s", err.msg);
	cr_assert_eq(created, 0);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, 2 << 20);

	cr_assert_eq(uring_disk_create(path, 1 << 20, &created, &err), 0, "%s", err.msg);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, 2 << 20, "create must never shrink");

	cr_assert_eq(uring_disk_create(tmpdir, 1 << 20, &created, &err), -EINVAL);
	cr_assert(strstr(err.msg, tmpdir), "%s", err.msg);
}

Test(uring_disk, vectored_io_survives_reopen)
{
	struct bdev *d = open_disk("a.img", 64);
	cr_assert_str_eq(d->name, tmp_path("a.img"));
	uint8_t *w = blocks(4);
	for (int i = 0; i < 4; i++)
		fill(w + i * BS, 100 + i);
	struct iovec wv[3] = { { w, BS }, { w + BS, 2 * BS }, { w + 3 * BS, BS } };
	cr_assert_eq(bdev_writev(d, 5, wv, 3), 0);

	uint8_t *r = blocks(4);
	struct iovec rv[2] = { { r + 2 * BS, 2 * BS }, { r, 2 * BS } };
	cr_assert_eq(bdev_readv(d, 5, rv, 2), 0);
	cr_assert(holds(r + 2 * BS, 100) && holds(r + 3 * BS, 101));
	cr_assert(holds(r, 102) && holds(r + BS, 103));
	cr_assert_eq(bdev_flush(d), 0);
	bdev_close(d);

	struct cat_error err = { 0 };
	cr_assert_eq(uring_disk_open(tmp_path("a.img"), 0, &d, &err), 0, "%s", err.msg);
	memset(r, 0, 4 * BS);
	cr_assert_eq(bdev_read(d, 5, r, 4), 0);
	for (int i = 0; i < 4; i++)
		cr_assert(holds(r + i * BS, 100 + i), "block %d lost after reopen", 5 + i);
	cr_assert_eq(bdev_read(d, 4, r, 1), 0);
	cr_assert(is_zero(r));
	bdev_close(d);
	free(w);
	free(r);
}

Test(uring_disk, bad_requests_rejected)
{
	struct bdev *d = open_disk("a.img", 16);
	uint8_t *b = blocks(3);
	cr_assert_eq(bdev_read(d, 16, b, 1), -ERANGE);
	cr_assert_eq(bdev_read(d, 15, b, 2), -ERANGE);
	cr_assert_eq(bdev_write(d, 1ull << 60, b, 1), -ERANGE);
	struct iovec odd = { b + 512, BS };
	cr_assert_eq(bdev_readv(d, 0, &odd, 1), -EINVAL);
	struct iovec shortv = { b, 100 };
	cr_assert_eq(bdev_writev(d, 0, &shortv, 1), -EINVAL);
	cr_assert_eq(bdev_readv(d, 0, &shortv, 0), -EINVAL);
	cr_assert_eq(bdev_read(d, 15, b, 1), 0);
	bdev_close(d);
	free(b);
}

Test(uring_disk, open_errors_name_the_path)
{
	struct bdev *d = (struct bdev *)1;
	struct cat_error err = { 0 };
	const char *missing = tmp_path("missing.img");
	cr_assert_eq(uring_disk_open(missing, 0, &d, &err), -ENOENT);
	cr_assert_null(d);
	char want[600];
	snprintf(want, sizeof(want), "%s: No such file or directory", missing);
	cr_assert_str_eq(err.msg, want);
	cr_assert_eq(err.code, -ENOENT);

	cr_assert_eq(uring_disk_open(tmpdir, 0, &d, &err), -EINVAL);
	cr_assert(strstr(err.msg, tmpdir) && strstr(err.msg, "not a regular file"), "%s", err.msg);

	const char *fifo = tmp_path("fifo");
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	cr_assert_eq(uring_disk_open(fifo, 0, &d, &err), -EINVAL);
	cr_assert(strstr(err.msg, fifo), "%s", err.msg);
	cr_assert_eq(uring_disk_open("/dev/null", 0, &d, &err), -EINVAL);

	const char *tiny = tmp_path("tiny.img");
	int fd = open(tiny, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 4095), 0);
	close(fd);
	cr_assert_eq(uring_disk_open(tiny, 0, &d, &err), -EINVAL);
	cr_assert(strstr(err.msg, tiny), "%s", err.msg);
}

Test(uring_disk, size_rounds_down_to_blocks)
{
	const char *path = tmp_path("odd.img");
	int fd = open(path, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 10 * BS + 1000), 0);
	close(fd);
	struct bdev *d;
	struct cat_error err;
	cr_assert_eq(uring_disk_open(path, 0, &d, &err), 0, "%s", err.msg);
	cr_assert_eq(d->nblocks, 10);
	bdev_close(d);
}

Test(uring_disk, second_open_is_busy)
{
	struct bdev *d = open_disk("a.img", 16);
	struct bdev *d2 = NULL;
	struct cat_error err = { 0 };
	cr_assert_eq(uring_disk_open(tmp_path("a.img"), 0, &d2, &err), -EBUSY);
	cr_assert_null(d2);
	cr_assert(strstr(err.msg, tmp_path("a.img")) && strstr(err.msg, "in use by another process"),
		  "%s", err.msg);
	cr_assert_eq(uring_disk_open(tmp_path("a.img"), URING_DISK_READONLY, &d2, &err), -EBUSY);
	/* Offline inspection skips the lock. */
	cr_assert_eq(uring_disk_open(tmp_path("a.img"), URING_DISK_NOLOCK | URING_DISK_READONLY,
				     &d2, &err), 0, "%s", err.msg);
	bdev_close(d2);
	bdev_close(d);
	/* The lock goes with the descriptor. */
	cr_assert_eq(uring_disk_open(tmp_path("a.img"), 0, &d2, &err), 0, "%s", err.msg);
	bdev_close(d2);
}

Test(uring_disk, readonly_refuses_writes)
{
	struct bdev *d = open_disk("a.img", 16);
	cr_assert_eq(write_tag(d, 3, 7), 0);
	bdev_close(d);
	struct cat_error err;
	cr_assert_eq(uring_disk_open(tmp_path("a.img"), URING_DISK_READONLY, &d, &err), 0, "%s", err.msg);
	cr_assert_eq(check_tag(d, 3, 7), 1);
	cr_assert_eq(write_tag(d, 3, 8), -EROFS);
	uint8_t *b = blocks(1);
	struct iovec iov = { b, BS };
	struct bdev_req req = { .dev = d, .op = BDEV_WRITE, .blkno = 1, .iov = &iov, .iovcnt = 1 };
	bdev_run_parallel(&req, 1);
	cr_assert_eq(req.result, -EROFS);
	cr_assert_eq(bdev_flush(d), 0);
	bdev_close(d);
	free(b);
}

struct io_thread {
	struct bdev *d;
	uint64_t first;
	int rounds;
	int errors;
};

static void *io_thread_main(void *arg)
{
	struct io_thread *t = arg;
	uint8_t *b = blocks(2);
	for (int i = 0; i < t->rounds; i++) {
		uint64_t blk = t->first + (uint64_t)(i % 32) * 2;
		fill(b, t->first * 1000 + (uint64_t)i);
		fill(b + BS, t->first * 1000 + (uint64_t)i + 1);
		if (bdev_write(t->d, blk, b, 2))
			t->errors++;
		memset(b, 0, 2 * BS);
		if (bdev_read(t->d, blk, b, 2) || !holds(b, t->first * 1000 + (uint64_t)i) ||
		    !holds(b + BS, t->first * 1000 + (uint64_t)i + 1))
			t->errors++;
		if (i % 50 == 0 && bdev_flush(t->d))
			t->errors++;
	}
	free(b);
	return NULL;
}

Test(uring_disk, threads_use_their_own_rings)
{
	struct bdev *d = open_disk("a.img", 256);
	int fds_before = count_open_fds();
	struct io_thread t[2] = { { d, 0, 300, 0 }, { d, 128, 300, 0 } };
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, io_thread_main, &t[i]), 0);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(t[i].errors, 0, "thread %d saw %d errors", i, t[i].errors);
	}
	/* Each thread's ring was torn down when it exited. */
	cr_assert_eq(count_open_fds(), fds_before);
	bdev_close(d);
}

Test(uring_disk, forked_child_gets_its_own_ring)
{
	struct bdev *d = open_disk("a.img", 16);
	cr_assert_eq(write_tag(d, 1, 1), 0);  /* the parent's ring exists */
	pid_t pid = fork();
	if (pid == 0) {
		/* No Criterion asserts in here: the runner does not know this
		 * process and hangs on its messages (--full-stats reports passing
		 * asserts too). */
		uint8_t *b = block_alloc(BS);
		bool ok = b != NULL;
		if (ok) {
			fill(b, 2);
			ok = bdev_write(d, 2, b, 1) == 0 && bdev_read(d, 1, b, 1) == 0 &&
			     holds(b, 1) && bdev_read(d, 2, b, 1) == 0 && holds(b, 2) &&
			     bdev_flush(d) == 0;
		}
		_exit(ok ? 0 : 1);
	}
	cr_assert_gt(pid, 0);
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child I/O failed");
	cr_assert_eq(check_tag(d, 2, 2), 1);
	cr_assert_eq(write_tag(d, 3, 3), 0);
	cr_assert_eq(check_tag(d, 3, 3), 1);
	bdev_close(d);
}

Test(uring_disk, parallel_batch_over_two_disks)
{
	struct bdev *a = open_disk("a.img", 64);
	struct bdev *b = open_disk("b.img", 64);
	uint8_t *buf = blocks(3);
	fill(buf, 1);
	fill(buf + BS, 2);
	fill(buf + 2 * BS, 3);
	struct iovec v1 = { buf, 2 * BS }, v2 = { buf + 2 * BS, BS };
	struct bdev_req w[3] = {
		{ .dev = a, .op = BDEV_WRITE, .blkno = 10, .iov = &v1, .iovcnt = 1, .result = 99 },
		{ .dev = b, .op = BDEV_WRITE, .blkno = 10, .iov = &v1, .iovcnt = 1, .result = 99 },
		{ .dev = b, .op = BDEV_WRITE, .blkno = 63, .iov = &v2, .iovcnt = 1, .result = 99 },
	};
	bdev_run_parallel(w, 3);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(w[i].result, 0, "req %d: %d", i, w[i].result);
	struct bdev_req f[2] = { { .dev = a, .op = BDEV_FLUSH, .result = 99 },
				 { .dev = b, .op = BDEV_FLUSH, .result = 99 } };
	bdev_run_parallel(f, 2);
	cr_assert_eq(f[0].result, 0);
	cr_assert_eq(f[1].result, 0);

	uint8_t *r = blocks(4);
	struct iovec ra = { r, 2 * BS }, rb = { r + 2 * BS, 2 * BS }, bad = { r, BS };
	struct bdev_req rd[3] = {
		{ .dev = a, .op = BDEV_READ, .blkno = 10, .iov = &ra, .iovcnt = 1 },
		{ .dev = b, .op = BDEV_READ, .blkno = 10, .iov = &rb, .iovcnt = 1 },
		{ .dev = b, .op = BDEV_READ, .blkno = 64, .iov = &bad, .iovcnt = 1 },
	};
	bdev_run_parallel(rd, 3);
	cr_assert_eq(rd[0].result, 0);
	cr_assert_eq(rd[1].result, 0);
	cr_assert_eq(rd[2].result, -ERANGE);
	cr_assert(holds(r, 1) && holds(r + BS, 2) && holds(r + 2 * BS, 1) && holds(r + 3 * BS, 2));
	cr_assert_eq(check_tag(b, 63, 3), 1);
	bdev_close(a);
	bdev_close(b);
	free(buf);
	free(r);
}

Test(uring_disk, batch_larger_than_the_ring)
{
	enum { N = 300 };
	struct bdev *d = open_disk("a.img", N);
	uint8_t *buf = blocks(N);
	static struct iovec iov[N];
	static struct bdev_req req[N];
	for (int i = 0; i < N; i++) {
		fill(buf + (size_t)i * BS, 5000 + (uint64_t)i);
		iov[i] = (struct iovec){ buf + (size_t)i * BS, BS };
		req[i] = (struct bdev_req){ .dev = d, .op = BDEV_WRITE, .blkno = (uint64_t)i,
					    .iov = &iov[i], .iovcnt = 1, .result = 99 };
	}
	bdev_run_parallel(req, N);
	for (int i = 0; i < N; i++)
		cr_assert_eq(req[i].result, 0, "req %d: %d", i, req[i].result);
	memset(buf, 0, (size_t)N * BS);
	for (int i = 0; i < N; i++)
		req[i].op = BDEV_READ;
	bdev_run_parallel(req, N);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(req[i].result, 0);
		cr_assert(holds(buf + (size_t)i * BS, 5000 + (uint64_t)i), "block %d", i);
	}
	bdev_close(d);
	free(buf);
}

Test(uring_disk, parallel_batch_mixed_with_sync_devices)
{
	struct bdev *a = open_disk("a.img", 32);
	struct bdev *b = open_disk("b.img", 32);
	struct bdev *fb = fault_disk_create(b); /* no queue(): runs synchronously on b */
	struct bdev *m = mem_disk_create(32, "mem");
	uint8_t *buf = blocks(1);
	fill(buf, 42);
	struct iovec v = { buf, BS };
	struct bdev_req w[3] = {
		{ .dev = a, .op = BDEV_WRITE, .blkno = 7, .iov = &v, .iovcnt = 1, .result = 99 },
		{ .dev = m, .op = BDEV_WRITE, .blkno = 7, .iov = &v, .iovcnt = 1, .result = 99 },
		{ .dev = fb, .op = BDEV_WRITE, .blkno = 7, .iov = &v, .iovcnt = 1, .result = 99 },
	};
	bdev_run_parallel(w, 3);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(w[i].result, 0, "req %d: %d", i, w[i].result);
	cr_assert_eq(check_tag(a, 7, 42), 1);
	cr_assert(holds(mem_disk_block(m, 7), 42));
	cr_assert_eq(check_tag(b, 7, 42), 1);

	fault_disk_fail_write(fb, 7, -EIO, true);
	bdev_run_parallel(w, 3);
	cr_assert_eq(w[0].result, 0);
	cr_assert_eq(w[1].result, 0);
	cr_assert_eq(w[2].result, -EIO);
	bdev_close(fb);
	bdev_close(m);
	bdev_close(a);
	bdev_close(b);
	free(buf);
}

Test(uring_disk, truncated_file_gives_eio)
{
	struct bdev *d = open_disk("a.img", 16);
	for (uint64_t i = 0; i < 16; i++)
		cr_assert_eq(write_tag(d, i, i), 0);
	/* The backing file shrinks under the open disk (a pulled device). */
	cr_assert_eq(truncate(tmp_path("a.img"), 8 * BS), 0);
	atomic_store(&warnings, 0);
	uint8_t *b = blocks(4);
	cr_assert_eq(bdev_read(d, 10, b, 1), -EIO);
	cr_assert_eq(bdev_read(d, 6, b, 4), -EIO, "read across the new end");
	cr_assert_geq(atomic_load(&warnings), 2, "short reads are logged");
	cr_assert_eq(bdev_read(d, 6, b, 2), 0);
	cr_assert(holds(b, 6) && holds(b + BS, 7));
	struct iovec v = { b, 2 * BS };
	struct bdev_req r = { .dev = d, .op = BDEV_READ, .blkno = 7, .iov = &v, .iovcnt = 1 };
	bdev_run_parallel(&r, 1);
	cr_assert_eq(r.result, -EIO);
	bdev_close(d);
	free(b);
}

static int run_cmd(const char *cmd, char *out, size_t len)
{
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	if (out && (!fgets(out, (int)len, p)))
		out[0] = '\0';
	if (out)
		out[strcspn(out, "\n")] = '\0';
	return pclose(p);
}

Test(uring_disk, loop_block_device)
{
	const char *img = tmp_path("loop.img");
	struct cat_error err = { 0 };
	cr_assert_eq(uring_disk_create(img, 64 * BS, NULL, &err), 0, "%s", err.msg);
	char cmd[700], dev[128];
	snprintf(cmd, sizeof(cmd), "losetup --find --show %s 2>/dev/null", img);
	if (run_cmd(cmd, dev, sizeof(dev)) != 0 || strncmp(dev, "/dev/loop", 9) != 0)
		cr_skip_test("no loop device available");

	cr_expect(uring_disk_is_blockdev(dev));
	cr_expect_not(uring_disk_is_blockdev(img));
	cr_expect_not(uring_disk_is_blockdev("/dev/null"));
	int created = -1;
	cr_expect_eq(uring_disk_create(dev, 64 * BS, &created, &err), 0, "%s", err.msg);
	cr_expect_eq(created, 0);
	cr_expect_eq(uring_disk_create(dev, 65 * BS, &created, &err), -ENOSPC);
	cr_expect(strstr(err.msg, dev), "%s", err.msg);

	struct bdev *d = NULL, *d2 = NULL;
	int rc = uring_disk_open(dev, 0, &d, &err);
	cr_expect_eq(rc, 0, "%s", err.msg);
	if (rc == 0) {
		cr_expect_eq(d->nblocks, 64);
		cr_expect_eq(uring_disk_open(dev, 0, &d2, &err), -EBUSY);
		cr_expect(strstr(err.msg, dev), "%s", err.msg);
		cr_expect_eq(write_tag(d, 5, 55), 0);
		cr_expect_eq(write_tag(d, 20, 77), 0);
		cr_expect_eq(bdev_flush(d), 0);
		cr_expect_eq(check_tag(d, 20, 77), 1);
		/* What a vanished disk looks like: backing file cut, loop resized. */
		cr_expect_eq(truncate(img, 16 * BS), 0);
		snprintf(cmd, sizeof(cmd), "losetup -c %s", dev);
		cr_expect_eq(run_cmd(cmd, NULL, 0), 0);
		cr_expect_lt(check_tag(d, 20, 77), 0, "read beyond the cut must fail");
		bdev_close(d);
	}
	snprintf(cmd, sizeof(cmd), "losetup -d %s", dev);
	cr_assert_eq(run_cmd(cmd, NULL, 0), 0);
	/* The written block reached the file through the device. */
	int fd = open(img, O_RDONLY);
	cr_assert_geq(fd, 0);
	uint8_t *b = blocks(1);
	cr_assert_eq(pread(fd, b, BS, 5 * BS), BS);
	cr_assert(holds(b, 55));
	free(b);
	close(fd);
}

/* ---- memory disk ------------------------------------------------------------ */

Test(mem_disk, zeroed_vectored_and_inspectable)
{
	struct bdev *d = mem_disk_create(200, "m0");
	cr_assert_not_null(d);
	cr_assert_eq(d->nblocks, 200);
	cr_assert_str_eq(d->name, "m0");
	uint8_t *b = blocks(70);
	cr_assert_eq(bdev_read(d, 0, b, 70), 0);
	for (int i = 0; i < 70; i++)
		cr_assert(is_zero(b + i * BS));
	/* Crosses the 64-block stripe boundary. */
	for (int i = 0; i < 70; i++)
		fill(b + (size_t)i * BS, 300 + (uint64_t)i);
	struct iovec v[2] = { { b, 10 * BS }, { b + 10 * BS, 60 * BS } };
	cr_assert_eq(bdev_writev(d, 60, v, 2), 0);
	for (int i = 0; i < 70; i++)
		cr_assert(holds(mem_disk_block(d, 60 + (uint64_t)i), 300 + (uint64_t)i));
	cr_assert(is_zero(mem_disk_block(d, 59)));
	cr_assert(is_zero(mem_disk_block(d, 130)));
	fill(mem_disk_block(d, 5), 9);
	cr_assert_eq(check_tag(d, 5, 9), 1);
	cr_assert_null(mem_disk_block(d, 200));
	cr_assert_eq(bdev_read(d, 199, b, 2), -ERANGE);
	cr_assert_eq(bdev_flush(d), 0);
	struct bdev *f = fault_disk_create(d);
	cr_assert_null(mem_disk_block(f, 0), "not a memory disk");
	bdev_close(f);
	bdev_close(d);
	free(b);
	cr_assert_null(mem_disk_create(0, "empty"));
}

struct tear_arg {
	struct bdev *d;
	uint64_t tag;
	atomic_bool *stop;
	int torn;
};

static void *tear_writer(void *arg)
{
	struct tear_arg *t = arg;
	uint8_t *b = blocks(1);
	fill(b, t->tag);
	while (!atomic_load(t->stop))
		bdev_write(t->d, 3, b, 1);
	free(b);
	return NULL;
}

Test(mem_disk, block_writes_are_atomic)
{
	struct bdev *d = mem_disk_create(8, NULL);
	cr_assert_str_eq(d->name, "mem");
	atomic_bool stop = false;
	struct tear_arg w[2] = { { d, 1, &stop, 0 }, { d, 2, &stop, 0 } };
	cr_assert_eq(write_tag(d, 3, 1), 0);
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, tear_writer, &w[i]);
	uint8_t *b = blocks(1);
	int torn = 0;
	for (int i = 0; i < 20000; i++) {
		cr_assert_eq(bdev_read(d, 3, b, 1), 0);
		if (!holds(b, 1) && !holds(b, 2))
			torn++;
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	cr_assert_eq(torn, 0, "%d torn reads", torn);
	bdev_close(d);
	free(b);
}

/* ---- crash disk ---------------------------------------------------------------- */

Test(crash_disk, cache_until_flush)
{
	struct bdev *m = mem_disk_create(32, "platter");
	struct bdev *c = crash_disk_create(m, NULL, 1, 50);
	cr_assert_eq(c->nblocks, 32);
	cr_assert_eq(write_tag(c, 4, 1), 0);
	cr_assert_eq(write_tag(c, 4, 2), 0);
	cr_assert_eq(write_tag(c, 5, 3), 0);
	cr_assert_eq(crash_disk_unflushed(c), 2);
	cr_assert_eq(check_tag(c, 4, 2), 1, "reads see the cache");
	cr_assert(is_zero(mem_disk_block(m, 4)), "not on the platter before flush");
	cr_assert_eq(bdev_flush(c), 0);
	cr_assert_eq(crash_disk_unflushed(c), 0);
	cr_assert(holds(mem_disk_block(m, 4), 2));
	cr_assert(holds(mem_disk_block(m, 5), 3));
	cr_assert_not(crash_disk_crashed(c));
	/* Close without a crash is a clean shutdown. */
	cr_assert_eq(write_tag(c, 6, 4), 0);
	bdev_close(c);
	cr_assert(holds(mem_disk_block(m, 6), 4));
	bdev_close(m);
}

/* One run: flushed blocks 0..7 (tag 10+b), then blocks 8..23 written three
 * times each (tags 1000+3b+k) without a flush, then a crash. Returns for
 * each unflushed block: -1 old, k the version that survived. */
static void crash_run(uint64_t seed, unsigned keep, int survivor[16])
{
	struct bdev *m = mem_disk_create(32, "platter");
	for (uint64_t b = 0; b < 32; b++)
		fill(mem_disk_block(m, b), 1);  /* "old" contents */
	struct bdev *c = crash_disk_create(m, NULL, seed, keep);
	for (uint64_t b = 0; b < 8; b++)
		cr_assert_eq(write_tag(c, b, 10 + b), 0);
	cr_assert_eq(bdev_flush(c), 0);
	for (int k = 0; k < 3; k++)
		for (uint64_t b = 8; b < 24; b++)
			cr_assert_eq(write_tag(c, b, 1000 + 3 * b + (uint64_t)k), 0);
	crash_disk_crash(c);
	cr_assert(crash_disk_crashed(c));
	uint8_t *buf = blocks(1);
	cr_assert_eq(bdev_read(c, 0, buf, 1), -EIO);
	cr_assert_eq(bdev_write(c, 0, buf, 1), -EIO);
	cr_assert_eq(bdev_flush(c), -EIO);
	free(buf);
	bdev_close(c);
	for (uint64_t b = 0; b < 8; b++)
		cr_assert(holds(mem_disk_block(m, b), 10 + b), "flushed block %llu lost",
			  (unsigned long long)b);
	for (uint64_t b = 24; b < 32; b++)
		cr_assert(holds(mem_disk_block(m, b), 1));
	for (uint64_t b = 8; b < 24; b++) {
		const uint8_t *p = mem_disk_block(m, b);
		int got = holds(p, 1) ? -1 : -2;
		for (int k = 0; k < 3; k++)
			if (holds(p, 1000 + 3 * b + (uint64_t)k))
				got = k;
		cr_assert_neq(got, -2, "block %llu holds neither old nor a written value",
			      (unsigned long long)b);
		survivor[b - 8] = got;
	}
	bdev_close(m);
}

Test(crash_disk, unflushed_writes_partially_survive)
{
	int lost = 0, kept = 0, older_version = 0, latest = 0;
	for (uint64_t seed = 0; seed < 64; seed++) {
		int s[16];
		crash_run(seed, 50, s);
		for (int i = 0; i < 16; i++) {
			lost += s[i] == -1;
			kept += s[i] >= 0;
			older_version += s[i] == 0 || s[i] == 1;
			latest += s[i] == 2;
		}
	}
	cr_assert_gt(lost, 0);
	cr_assert_gt(kept, 0);
	cr_assert_gt(older_version, 0, "an overwritten block can keep an earlier write");
	cr_assert_gt(latest, 0);
	/* 1024 coin flips at 50%: far from either end. */
	cr_assert(kept > 300 && kept < 724, "kept %d of 1024", kept);
}

Test(crash_disk, seed_decides_and_keep_percent_bounds)
{
	int a[16], b[16];
	crash_run(77, 50, a);
	crash_run(77, 50, b);
	cr_assert_arr_eq(a, b, sizeof(a), "same seed, same image");
	crash_run(5, 0, a);
	for (int i = 0; i < 16; i++)
		cr_assert_eq(a[i], -1);
	crash_run(5, 100, a);
	for (int i = 0; i < 16; i++)
		cr_assert_geq(a[i], 0);
}

Test(crash_disk, clock_crashes_both_disks_at_op_n)
{
	struct bdev *m[2] = { mem_disk_create(16, "p0"), mem_disk_create(16, "p1") };
	struct crash_clock clock;
	crash_clock_init(&clock);
	struct bdev *c[2] = { crash_disk_create(m[0], &clock, 1, 100),
			      crash_disk_create(m[1], &clock, 2, 0) };
	crash_clock_arm(&clock, 5);
	cr_assert_eq(write_tag(c[0], 1, 1), 0);  /* op 1 */
	cr_assert_eq(write_tag(c[1], 1, 1), 0);  /* op 2 */
	cr_assert_eq(bdev_flush(c[1]), 0);       /* op 3 */
	cr_assert_eq(write_tag(c[1], 2, 2), 0);  /* op 4 */
	cr_assert_eq(check_tag(c[0], 1, 1), -EIO, "op 5 finds the power gone");
	cr_assert(atomic_load(&clock.crashed));
	cr_assert(crash_disk_crashed(c[0]));
	cr_assert_eq(write_tag(c[1], 3, 3), -EIO, "the other disk is dead too");
	cr_assert(crash_disk_crashed(c[1]));
	bdev_close(c[0]);
	bdev_close(c[1]);
	cr_assert(holds(mem_disk_block(m[0], 1), 1), "keep 100: unflushed write kept");
	cr_assert(holds(mem_disk_block(m[1], 1), 1), "flushed");
	cr_assert(is_zero(mem_disk_block(m[1], 2)), "keep 0: unflushed write lost");
	cr_assert(is_zero(mem_disk_block(m[1], 3)), "written after the crash");
	bdev_close(m[0]);
	bdev_close(m[1]);
}

Test(crash_disk, idle_disk_on_crashed_clock_crashes_at_close)
{
	struct bdev *m[2] = { mem_disk_create(16, "p0"), mem_disk_create(16, "p1") };
	struct crash_clock clock = { 0 };  /* zero-initialised: not armed */
	struct bdev *c[2] = { crash_disk_create(m[0], &clock, 1, 0),
			      crash_disk_create(m[1], &clock, 2, 0) };
	for (int i = 0; i < 10; i++)
		cr_assert_eq(write_tag(c[i % 2], 1, (uint64_t)i), 0);
	crash_disk_crash(c[0]);
	bdev_close(c[1]);  /* never touched again: loses power all the same */
	bdev_close(c[0]);
	cr_assert(is_zero(mem_disk_block(m[0], 1)));
	cr_assert(is_zero(mem_disk_block(m[1], 1)));
	bdev_close(m[0]);
	bdev_close(m[1]);
}

/* Every crash point of a two-disk workload: a block is on the platter iff
 * the flush after it completed. */
Test(crash_disk, every_crash_point)
{
	enum { STEPS = 12 }; /* write, flush pairs alternating between disks */
	for (long long n = 1; n <= 2 * STEPS + 1; n++) {
		struct bdev *m[2] = { mem_disk_create(16, "p0"), mem_disk_create(16, "p1") };
		struct crash_clock clock;
		crash_clock_init(&clock);
		struct bdev *c[2] = { crash_disk_create(m[0], &clock, (uint64_t)n, 0),
				      crash_disk_create(m[1], &clock, (uint64_t)n + 99, 0) };
		crash_clock_arm(&clock, n);
		bool flushed[STEPS] = { 0 };
		for (int i = 0; i < STEPS; i++) {
			struct bdev *d = c[i % 2];
			if (write_tag(d, (uint64_t)i / 2, (uint64_t)i) < 0)
				break;
			if (bdev_flush(d) < 0)
				break;
			flushed[i] = true;
		}
		cr_assert_eq(crash_disk_crashed(c[0]), n <= 2 * STEPS);
		bdev_close(c[0]);
		bdev_close(c[1]);
		for (int i = 0; i < STEPS; i++) {
			bool there = holds(mem_disk_block(m[i % 2], (uint64_t)i / 2), (uint64_t)i);
			cr_assert_eq(there, flushed[i], "crash at op %lld, step %d", n, i);
		}
		bdev_close(m[0]);
		bdev_close(m[1]);
	}
}

struct flusher {
	struct bdev *d;
	uint64_t blkno;
	uint64_t last_flushed;
	int errors;
};

static void *flusher_main(void *arg)
{
	struct flusher *f = arg;
	for (uint64_t i = 1; i <= 300; i++) {
		if (write_tag(f->d, f->blkno, i) || bdev_flush(f->d))
			f->errors++;
		else
			f->last_flushed = i;
		if (write_tag(f->d, f->blkno, 100000 + i))  /* never flushed */
			f->errors++;
	}
	return NULL;
}

Test(crash_disk, concurrent_flushes_keep_what_completed)
{
	struct bdev *m = mem_disk_create(16, "p");
	struct bdev *c = crash_disk_create(m, NULL, 3, 0);
	struct flusher f[2] = { { c, 2, 0, 0 }, { c, 9, 0, 0 } };
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, flusher_main, &f[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	crash_disk_crash(c);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(f[i].errors, 0);
		cr_assert_eq(f[i].last_flushed, 300);
		const uint8_t *p = mem_disk_block(m, f[i].blkno);
		/* The other thread's flush may have carried the unflushed write. */
		cr_assert(holds(p, 300) || holds(p, 100300), "block %llu",
			  (unsigned long long)f[i].blkno);
	}
	bdev_close(c);
	bdev_close(m);
}

/* ---- fault disk ------------------------------------------------------------------- */

Test(fault_disk, block_faults_sticky_and_one_shot)
{
	struct bdev *m = mem_disk_create(16, "inner");
	struct bdev *f = fault_disk_create(m);
	cr_assert_str_eq(f->name, "inner");
	cr_assert_eq(f->nblocks, 16);
	for (uint64_t b = 0; b < 16; b++)
		cr_assert_eq(write_tag(f, b, b), 0);

	cr_assert_eq(fault_disk_fail_read(f, 3, -EIO, true), 0);
	cr_assert_eq(check_tag(f, 3, 3), -EIO);
	cr_assert_eq(check_tag(f, 3, 3), -EIO, "sticky");
	cr_assert_eq(check_tag(f, 2, 2), 1);
	uint8_t *b = blocks(4);
	cr_assert_eq(bdev_read(f, 1, b, 4), -EIO, "a request touching the block fails");
	cr_assert_eq(write_tag(f, 3, 33), 0, "read fault does not affect writes");

	cr_assert_eq(fault_disk_fail_read(f, 5, -ENXIO, false), 0);
	cr_assert_eq(check_tag(f, 5, 5), -ENXIO);
	cr_assert_eq(check_tag(f, 5, 5), 1, "one-shot fault is gone");

	/* Write fault mid-request: the blocks before it are written. */
	cr_assert_eq(fault_disk_fail_write(f, 10, -EIO, false), 0);
	for (int i = 0; i < 4; i++)
		fill(b + i * BS, 500 + (uint64_t)i);
	cr_assert_eq(bdev_write(f, 8, b, 4), -EIO);
	cr_assert(holds(mem_disk_block(m, 8), 500) && holds(mem_disk_block(m, 9), 501));
	cr_assert(holds(mem_disk_block(m, 10), 10) && holds(mem_disk_block(m, 11), 11));
	cr_assert_eq(bdev_write(f, 8, b, 4), 0, "one-shot: the rewrite repairs it");
	cr_assert(holds(mem_disk_block(m, 11), 503));

	cr_assert_eq(fault_disk_fail_write(f, 16, -EIO, true), -ERANGE);
	fault_disk_heal(f);
	cr_assert_eq(check_tag(f, 3, 33), 1);
	cr_assert_eq(fault_disk_failures(f), 5);
	bdev_close(f);
	/* The inner disk is not owned by the wrapper. */
	cr_assert_eq(check_tag(m, 3, 33), 1);
	bdev_close(m);
	free(b);
}

Test(fault_disk, fail_after_vanish_heal_counters)
{
	struct bdev *m = mem_disk_create(16, "inner");
	struct bdev *f = fault_disk_create(m);
	fault_disk_fail_after(f, 3, -EIO);
	cr_assert_eq(write_tag(f, 1, 1), 0);
	cr_assert_eq(bdev_flush(f), 0);
	cr_assert_eq(check_tag(f, 1, 1), 1);
	cr_assert_eq(write_tag(f, 2, 2), -EIO);
	cr_assert_eq(bdev_flush(f), -EIO);
	cr_assert_eq(check_tag(f, 1, 1), -EIO);
	cr_assert(is_zero(mem_disk_block(m, 2)));
	cr_assert_eq(fault_disk_ops(f), 6);
	cr_assert_eq(fault_disk_failures(f), 3);

	fault_disk_heal(f);
	cr_assert_eq(check_tag(f, 1, 1), 1);
	fault_disk_vanish(f);
	cr_assert_eq(check_tag(f, 1, 1), -ENODEV);
	cr_assert_eq(write_tag(f, 1, 1), -ENODEV);
	cr_assert_eq(bdev_flush(f), -ENODEV);
	fault_disk_heal(f);
	cr_assert_eq(write_tag(f, 2, 2), 0);
	cr_assert_eq(check_tag(f, 2, 2), 1);
	cr_assert_eq(fault_disk_ops(f), 12);
	cr_assert_eq(fault_disk_failures(f), 6);

	fault_disk_fail_after(f, 0, -ENXIO);
	cr_assert_eq(bdev_flush(f), -ENXIO, "zero: fail at once");
	bdev_close(f);
	bdev_close(m);
}

struct fault_flipper {
	struct bdev *f;
	atomic_bool *stop;
};

static void *flip_faults(void *arg)
{
	struct fault_flipper *t = arg;
	for (uint64_t i = 0; !atomic_load(t->stop); i++) {
		fault_disk_fail_read(t->f, i % 16, -EIO, i % 2);
		fault_disk_fail_write(t->f, (i + 3) % 16, -EIO, false);
		if (i % 7 == 0)
			fault_disk_heal(t->f);
	}
	return NULL;
}

Test(fault_disk, faults_change_while_io_runs)
{
	struct bdev *m = mem_disk_create(16, "inner");
	struct bdev *f = fault_disk_create(m);
	atomic_bool stop = false;
	struct fault_flipper t = { f, &stop };
	pthread_t th;
	pthread_create(&th, NULL, flip_faults, &t);
	uint8_t *b = blocks(2);
	int failures = 0;
	for (int i = 0; i < 20000; i++) {
		int rc = i % 2 ? bdev_read(f, (uint64_t)i % 15, b, 2) : bdev_write(f, (uint64_t)i % 15, b, 2);
		cr_assert(rc == 0 || rc == -EIO, "rc %d", rc);
		failures += rc < 0;
	}
	atomic_store(&stop, true);
	pthread_join(th, NULL);
	cr_assert_eq(fault_disk_failures(f), (uint64_t)failures);
	cr_assert_eq(fault_disk_ops(f), 20000);
	bdev_close(f);
	bdev_close(m);
	free(b);
}
