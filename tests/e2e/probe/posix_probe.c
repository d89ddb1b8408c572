/*
 * posix_probe.c - POSIX behaviour of a mounted Catamaran volume, checked
 * through ordinary syscalls (run by tests/e2e/fuse_posix.sh, not by ctest).
 *
 * usage: posix_probe CHECK DIR [CATAMARAN]
 *
 * DIR is the mountpoint; each check works in its own fresh directory
 * DIR/CHECK.XXXXXX. CATAMARAN (the binary) is needed by lookup-counts only.
 * Exit 0 when the behaviour is right, 1 with one line "CHECK: reason".
 *
 *   unlinked-open    an open file outlives its last name; space comes back
 *   rename-over-open the fd of a replaced file keeps its old content
 *   renameat2        RENAME_NOREPLACE, RENAME_EXCHANGE and their errors
 *   readdir-cookies  getdents64 under churn: no entry lost or repeated;
 *                    telldir/seekdir resume at a saved cookie
 *   readdir-fresh    a directory kept open and listed again from the start
 *                    (as the mail store does) sees every change at once,
 *                    whatever the kernel keeps of earlier listings
 *   stable-ino       st_ino across hard links, rename, drop_caches
 *   nlink-times      directory link counts, mtime/ctime updates, ns times
 *   open-flags       O_EXCL, O_APPEND from two fds, O_TRUNC
 *   large-file       writes beyond 4 GiB, holes read as zeros
 *   fsync            fsync/fdatasync of a file, fsync of a directory
 *   statfs           block size, free blocks go down and come back
 *   lookup-counts    the kernel's FORGETs reach the daemon (inode count)
 *   maildir          concurrent deliveries and a reader: never a partial mail
 *   perm             allow_other + default_permissions for another uid
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GIB (1024ULL * 1024 * 1024)
#define MIB (1024ULL * 1024)

static const char *check_name = "posix_probe";
static const char *mountpoint;
static const char *catamaran;
static char work[4096];               /* this check's own directory */

/* ---- helpers ---- */

static void fail(const char *fmt, ...)
{
	int e = errno;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (e)
		printf("%s: %s (errno %d %s)\n", check_name, msg, e, strerror(e));
	else
		printf("%s: %s\n", check_name, msg);
	fflush(stdout);
	exit(1);
}

#define MUST(cond, ...) do { if (!(cond)) fail(__VA_ARGS__); } while (0)

/* work/name in a per-thread rotating buffer (several may be live at once). */
static const char *at(const char *fmt, ...)
{
	static _Thread_local char bufs[8][4096];
	static _Thread_local unsigned next;
	char *b = bufs[next++ % 8];
	int n = snprintf(b, 4096, "%s/", work);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b + n, 4096 - (size_t)n, fmt, ap);
	va_end(ap);
	return b;
}

static void make_work_dir(void)
{
	snprintf(work, sizeof(work), "%s/%s.XXXXXX", mountpoint, check_name);
	MUST(mkdtemp(work), "mkdtemp %s", work);
	MUST(chmod(work, 0755) == 0, "chmod %s", work);
}

static void put_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	MUST(fd >= 0, "create %s", path);
	MUST(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write %s", path);
	MUST(close(fd) == 0, "close %s", path);
}

/* The whole file as a string (empty if missing). */
static const char *get_file(const char *path)
{
	static _Thread_local char bufs[4][4096];
	static _Thread_local unsigned next;
	char *b = bufs[next++ % 4];
	b[0] = '\0';
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return b;
	ssize_t n = read(fd, b, 4095);
	MUST(n >= 0, "read %s", path);
	b[n] = '\0';
	close(fd);
	return b;
}

static struct stat stat_of(const char *path)
{
	struct stat st;
	MUST(stat(path, &st) == 0, "stat %s", path);
	return st;
}

static uint64_t free_blocks(void)
{
	struct statvfs sv;
	MUST(statvfs(mountpoint, &sv) == 0, "statvfs");
	return sv.f_bfree;
}

/* Write SIZE bytes of a pattern to a new file; returns the open fd. */
static int write_big(const char *path, size_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	MUST(fd >= 0, "create %s", path);
	static char chunk[1 << 20];
	memset(chunk, 0x5a, sizeof(chunk));
	for (size_t done = 0; done < size; done += sizeof(chunk))
		MUST(write(fd, chunk, sizeof(chunk)) == (ssize_t)sizeof(chunk), "write %s", path);
	MUST(fsync(fd) == 0, "fsync %s", path);
	return fd;
}

/* Poll statfs up to ~5 s until at least WANT blocks are free. */
static bool wait_free(uint64_t want)
{
	for (int i = 0; i < 100; i++) {
		if (free_blocks() >= want)
			return true;
		usleep(50000);
	}
	return false;
}

static void drop_caches(void)
{
	sync();
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	MUST(fd >= 0, "open /proc/sys/vm/drop_caches (needs root)");
	MUST(write(fd, "2\n", 2) == 2, "write drop_caches");
	close(fd);
}

static bool ts_after(struct timespec a, struct timespec b)
{
	return a.tv_sec > b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec > b.tv_nsec);
}

static bool ts_equal(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

static void pause_a_bit(void)
{
	usleep(20000);   /* so a new timestamp is distinguishable */
}

/* ---- unlinked-open ---- */

static void check_unlinked_open(void)
{
	const char *f = at("f");
	uint64_t before = free_blocks();
	int fd = write_big(f, 8 * MIB);
	uint64_t used = before - free_blocks();
	MUST(used >= 2048 * 9 / 10, "8 MiB written but f_bfree fell by only %" PRIu64, used);
	MUST(unlink(f) == 0, "unlink");
	MUST(access(f, F_OK) != 0 && errno == ENOENT, "name still there after unlink");
	MUST(pwrite(fd, "tail", 4, 8 * MIB) == 4, "write after unlink");
	char buf[8] = { 0 };
	MUST(pread(fd, buf, 4, 8 * MIB) == 4 && memcmp(buf, "tail", 4) == 0,
	     "read back after unlink: '%s'", buf);
	MUST(pread(fd, buf, 1, 12345) == 1 && buf[0] == 0x5a, "old data after unlink");
	struct stat st;
	MUST(fstat(fd, &st) == 0, "fstat after unlink");
	MUST(st.st_nlink == 0, "nlink after unlink is %ju", (uintmax_t)st.st_nlink);
	MUST(st.st_size == (off_t)(8 * MIB + 4), "size after unlink is %jd", (intmax_t)st.st_size);
	MUST(fsync(fd) == 0, "fsync after unlink");
	MUST(close(fd) == 0, "close");
	MUST(wait_free(before - used / 10), "space not back 5 s after close: f_bfree %" PRIu64
	     ", was %" PRIu64 " before the file", free_blocks(), before);
}

/* ---- rename-over-open ---- */

static void check_rename_over_open(void)
{
	put_file(at("a"), "content of a");
	put_file(at("b"), "content of b");
	int fd = open(at("b"), O_RDONLY);
	MUST(fd >= 0, "open b");
	ino_t a_ino = stat_of(at("a")).st_ino;
	MUST(rename(at("a"), at("b")) == 0, "rename a b");
	char buf[64] = { 0 };
	MUST(pread(fd, buf, sizeof(buf) - 1, 0) == 12, "read old b through fd");
	MUST(strcmp(buf, "content of b") == 0, "fd reads '%s', expected old b", buf);
	struct stat st;
	MUST(fstat(fd, &st) == 0 && st.st_nlink == 0, "replaced file nlink %ju",
	     (uintmax_t)st.st_nlink);
	MUST(strcmp(get_file(at("b")), "content of a") == 0, "b now reads '%s'",
	     get_file(at("b")));
	MUST(stat_of(at("b")).st_ino == a_ino, "b has not a's inode");
	MUST(access(at("a"), F_OK) != 0 && errno == ENOENT, "a still exists");
	close(fd);
}

/* ---- renameat2 ---- */

static int rename2(const char *from, const char *to, unsigned flags)
{
	return renameat2(AT_FDCWD, from, AT_FDCWD, to, flags) == 0 ? 0 : errno;
}

static void check_noreplace(void)
{
	put_file(at("x"), "x");
	put_file(at("y"), "y");
	int e = rename2(at("x"), at("y"), RENAME_NOREPLACE);
	MUST(e == EEXIST, "NOREPLACE onto existing: %s", strerror(e));
	MUST(!strcmp(get_file(at("x")), "x") && !strcmp(get_file(at("y")), "y"),
	     "NOREPLACE failure changed the files");
	e = rename2(at("x"), at("z"), RENAME_NOREPLACE);
	MUST(e == 0, "NOREPLACE onto free name: %s", strerror(e));
	MUST(!strcmp(get_file(at("z")), "x") && access(at("x"), F_OK) != 0,
	     "NOREPLACE move wrong");
}

static void check_exchange(void)
{
	put_file(at("p"), "P");
	put_file(at("q"), "Q");
	int e = rename2(at("p"), at("q"), RENAME_EXCHANGE);
	MUST(e == 0, "EXCHANGE two files: %s", strerror(e));
	MUST(!strcmp(get_file(at("p")), "Q") && !strcmp(get_file(at("q")), "P"),
	     "EXCHANGE did not swap: p='%s' q='%s'", get_file(at("p")), get_file(at("q")));
	MUST(mkdir(at("d"), 0755) == 0, "mkdir d");
	put_file(at("d/inner"), "I");
	nlink_t links = stat_of(work).st_nlink;
	e = rename2(at("p"), at("d"), RENAME_EXCHANGE);
	MUST(e == 0, "EXCHANGE file and dir: %s", strerror(e));
	MUST(S_ISDIR(stat_of(at("p")).st_mode) && S_ISREG(stat_of(at("d")).st_mode),
	     "EXCHANGE file/dir: types not swapped");
	MUST(!strcmp(get_file(at("p/inner")), "I") && !strcmp(get_file(at("d")), "Q"),
	     "EXCHANGE file/dir: contents not swapped");
	MUST(stat_of(work).st_nlink == links, "parent nlink %ju after exchange, was %ju",
	     (uintmax_t)stat_of(work).st_nlink, (uintmax_t)links);
	e = rename2(at("q"), at("missing"), RENAME_EXCHANGE);
	MUST(e == ENOENT, "EXCHANGE with a missing name: %s", strerror(e));
	MUST(!strcmp(get_file(at("q")), "P"), "failed EXCHANGE changed q");
}

static void check_exchange_across(void)
{
	/* A directory swapped into another parent: ".." and link counts follow. */
	MUST(mkdir(at("e1"), 0755) == 0 && mkdir(at("e1/sub"), 0755) == 0, "mkdir e1/sub");
	MUST(mkdir(at("e2"), 0755) == 0, "mkdir e2");
	put_file(at("e2/file"), "F");
	int e = rename2(at("e1/sub"), at("e2/file"), RENAME_EXCHANGE);
	MUST(e == 0, "EXCHANGE across dirs: %s", strerror(e));
	MUST(stat_of(at("e1")).st_nlink == 2 && stat_of(at("e2")).st_nlink == 3,
	     "nlink after cross EXCHANGE: e1 %ju (want 2), e2 %ju (want 3)",
	     (uintmax_t)stat_of(at("e1")).st_nlink, (uintmax_t)stat_of(at("e2")).st_nlink);
	MUST(stat_of(at("e2/file/..")).st_ino == stat_of(at("e2")).st_ino,
	     "'..' of the moved directory is not its new parent");
}

static void check_renameat2(void)
{
	check_noreplace();
	check_exchange();
	check_exchange_across();
	MUST(mkdir(at("top"), 0755) == 0 && mkdir(at("top/sub"), 0755) == 0, "mkdir top/sub");
	MUST(rename(at("top"), at("top/sub/inside")) != 0 && errno == EINVAL,
	     "moving a directory into its own subdirectory");
	MUST(stat_of(at("top/sub")).st_nlink == 2, "top/sub damaged by refused move");
}

/* ---- readdir-cookies ---- */

#define NFILES 2000

static atomic_bool churn_stop;

static void *churn(void *arg)
{
	(void)arg;
	for (unsigned i = 0; !atomic_load(&churn_stop); i++) {
		const char *p = at("d/churn%u", i % 300);
		if (i % 600 < 300)
			put_file(p, "c");
		else
			unlink(p);
	}
	return NULL;
}

/* One pass with getdents64 in a small buffer; counts each fNNNN name. */
static void count_pass(int *seen)
{
	int fd = open(at("d"), O_RDONLY | O_DIRECTORY);
	MUST(fd >= 0, "open d");
	char buf[512];
	long n;
	while ((n = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0) {
		for (long pos = 0; pos < n;) {
			struct dirent64 *de = (struct dirent64 *)(buf + pos);
			int k;
			if (sscanf(de->d_name, "f%d", &k) == 1 && k >= 0 && k < NFILES)
				seen[k]++;
			pos += de->d_reclen;
		}
	}
	MUST(n == 0, "getdents64");
	close(fd);
}

static void check_passes(void)
{
	pthread_t t;
	atomic_store(&churn_stop, false);
	MUST(pthread_create(&t, NULL, churn, NULL) == 0, "pthread_create");
	for (int pass = 0; pass < 3; pass++) {
		int seen[NFILES] = { 0 };
		count_pass(seen);
		for (int k = 0; k < NFILES; k++)
			MUST(seen[k] == 1, "pass %d: f%04d seen %d times under churn", pass, k,
			     seen[k]);
	}
	atomic_store(&churn_stop, true);
	pthread_join(t, NULL);
}

/* Read COUNT names from D into OUT (fNNNN names only, skipping others). */
static void read_names(DIR *d, char out[][256], int count)
{
	for (int i = 0; i < count;) {
		struct dirent *de = readdir(d);
		MUST(de, "directory ended early");
		if (de->d_name[0] == 'f')
			snprintf(out[i++], 256, "%s", de->d_name);
	}
}

static void check_seekdir(void)
{
	static char next[50][256], again[50][256], skip[700][256];
	DIR *d = opendir(at("d"));
	MUST(d, "opendir");
	read_names(d, skip, 700);
	long cookie = telldir(d);
	read_names(d, next, 50);
	read_names(d, skip, 300);
	seekdir(d, cookie);
	read_names(d, again, 50);
	for (int i = 0; i < 50; i++)
		MUST(!strcmp(next[i], again[i]), "seekdir same stream: entry %d is %s, was %s", i,
		     again[i], next[i]);
	closedir(d);
	d = opendir(at("d"));
	MUST(d, "opendir");
	seekdir(d, cookie);
	read_names(d, again, 50);
	for (int i = 0; i < 50; i++)
		MUST(!strcmp(next[i], again[i]), "seekdir new stream: entry %d is %s, was %s", i,
		     again[i], next[i]);
	closedir(d);
}

static void check_readdir_cookies(void)
{
	MUST(mkdir(at("d"), 0755) == 0, "mkdir d");
	for (int k = 0; k < NFILES; k++)
		put_file(at("d/f%04d", k), "");
	check_passes();
	check_seekdir();
}

/* ---- readdir-fresh ---- */

/* The names in the open directory fd, listed from its start, as one
 * sorted, space-separated string ("." and ".." left out). */
static const char *listing(int fd)
{
	static char names[64][256];
	static char out[4096];
	int n = 0;
	char buf[1024];
	long got;
	MUST(lseek(fd, 0, SEEK_SET) == 0, "lseek");
	while ((got = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0) {
		for (long pos = 0; pos < got;) {
			const struct dirent64 *de = (const struct dirent64 *)(buf + pos);
			pos += de->d_reclen;
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && n < 64)
				snprintf(names[n++], 256, "%s", de->d_name);
		}
	}
	MUST(got == 0, "getdents64");
	qsort(names, (size_t)n, sizeof(names[0]), (int (*)(const void *, const void *))strcmp);
	out[0] = '\0';
	for (int i = 0; i < n; i++)
		snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s", i ? " " : "", names[i]);
	return out;
}

static void expect_listing(int fd, const char *after, const char *want)
{
	const char *got = listing(fd);
	MUST(!strcmp(got, want), "after %s: listing is \"%s\", want \"%s\"", after, got, want);
}

/* A change made by another process: the kernel's copy must go all the same. */
static void child_creates(const char *path)
{
	pid_t pid = fork();
	MUST(pid >= 0, "fork");
	if (pid == 0) {
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
		_exit(fd >= 0 && close(fd) == 0 ? 0 : 1);
	}
	int st;
	MUST(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child create");
}

static void check_readdir_fresh(void)
{
	MUST(mkdir(at("d"), 0755) == 0 && mkdir(at("o"), 0755) == 0, "mkdir");
	int fd = open(at("d"), O_RDONLY | O_DIRECTORY);
	MUST(fd >= 0, "open d");
	expect_listing(fd, "mkdir", "");
	expect_listing(fd, "listing twice", "");
	put_file(at("d/a"), "1");
	expect_listing(fd, "create", "a");
	MUST(link(at("d/a"), at("d/b")) == 0, "link");
	expect_listing(fd, "link", "a b");
	put_file(at("o/c"), "2");
	MUST(rename(at("o/c"), at("d/c")) == 0, "rename in");
	expect_listing(fd, "rename in", "a b c");
	MUST(rename(at("d/b"), at("o/b")) == 0, "rename out");
	expect_listing(fd, "rename out", "a c");
	MUST(rename(at("d/a"), at("d/a2")) == 0, "rename within");
	expect_listing(fd, "rename within", "a2 c");
	MUST(mkdir(at("d/sub"), 0755) == 0, "mkdir sub");
	expect_listing(fd, "mkdir", "a2 c sub");
	MUST(rmdir(at("d/sub")) == 0, "rmdir sub");
	expect_listing(fd, "rmdir", "a2 c");
	MUST(unlink(at("d/c")) == 0, "unlink");
	expect_listing(fd, "unlink", "a2");
	child_creates(at("d/x"));
	expect_listing(fd, "a create by another process", "a2 x");
	MUST(symlink("a2", at("d/l")) == 0, "symlink");
	expect_listing(fd, "symlink", "a2 l x");
	MUST(rename(at("d/x"), at("d/a2")) == 0, "rename over");
	expect_listing(fd, "rename over an entry", "a2 l");
	close(fd);
}

/* ---- stable-ino ---- */

static void check_stable_ino(void)
{
	put_file(at("f"), "f");
	put_file(at("other"), "o");
	ino_t ino = stat_of(at("f")).st_ino;
	MUST(stat_of(at("other")).st_ino != ino, "two files share st_ino %ju", (uintmax_t)ino);
	MUST(link(at("f"), at("g")) == 0, "link");
	MUST(stat_of(at("g")).st_ino == ino, "hard link has another st_ino");
	MUST(rename(at("g"), at("h")) == 0, "rename");
	MUST(stat_of(at("h")).st_ino == ino, "st_ino changed by rename");
	ino_t other = stat_of(at("other")).st_ino;
	drop_caches();
	MUST(stat_of(at("f")).st_ino == ino && stat_of(at("h")).st_ino == ino,
	     "st_ino changed after drop_caches: %ju -> %ju", (uintmax_t)ino,
	     (uintmax_t)stat_of(at("f")).st_ino);
	MUST(stat_of(at("other")).st_ino == other, "other file's st_ino changed after drop_caches");
	MUST(stat_of(at("h")).st_nlink == 2, "nlink %ju after drop_caches, want 2",
	     (uintmax_t)stat_of(at("h")).st_nlink);
}

/* ---- nlink-times ---- */

static void check_dir_nlink(void)
{
	MUST(mkdir(at("n"), 0755) == 0, "mkdir n");
	MUST(stat_of(at("n")).st_nlink == 2, "new dir nlink %ju", (uintmax_t)stat_of(at("n")).st_nlink);
	MUST(mkdir(at("n/s1"), 0755) == 0 && mkdir(at("n/s2"), 0755) == 0, "mkdir s1 s2");
	put_file(at("n/file"), "x");
	MUST(stat_of(at("n")).st_nlink == 4, "nlink with 2 subdirs %ju",
	     (uintmax_t)stat_of(at("n")).st_nlink);
	MUST(rmdir(at("n/s1")) == 0, "rmdir");
	MUST(stat_of(at("n")).st_nlink == 3, "nlink after rmdir %ju",
	     (uintmax_t)stat_of(at("n")).st_nlink);
	MUST(rename(at("n/s2"), at("s2moved")) == 0, "rename dir out");
	MUST(stat_of(at("n")).st_nlink == 2, "nlink after moving a subdir out %ju",
	     (uintmax_t)stat_of(at("n")).st_nlink);
}

/* Run OP and require DIR's mtime and ctime to move forward. */
static void dir_times_change(const char *dir, const char *what, int (*op)(void))
{
	struct stat before = stat_of(dir);
	pause_a_bit();
	MUST(op() == 0, "%s", what);
	struct stat after = stat_of(dir);
	MUST(ts_after(after.st_mtim, before.st_mtim), "dir mtime unchanged by %s", what);
	MUST(ts_after(after.st_ctim, before.st_ctim), "dir ctime unchanged by %s", what);
}

static int op_add(void) { put_file(at("m/new"), "x"); return 0; }
static int op_rename_in(void) { return rename(at("m/new"), at("m/renamed")); }
static int op_remove(void) { return unlink(at("m/renamed")); }
static int op_move_in(void) { return rename(at("outside"), at("m/moved")); }

static void check_dir_times(void)
{
	MUST(mkdir(at("m"), 0755) == 0, "mkdir m");
	put_file(at("outside"), "o");
	dir_times_change(at("m"), "creating an entry", op_add);
	dir_times_change(at("m"), "renaming an entry", op_rename_in);
	dir_times_change(at("m"), "removing an entry", op_remove);
	dir_times_change(at("m"), "moving an entry in", op_move_in);
}

static void check_file_times(void)
{
	put_file(at("t"), "x");
	struct stat a = stat_of(at("t"));
	pause_a_bit();
	int fd = open(at("t"), O_WRONLY);
	MUST(fd >= 0 && pwrite(fd, "y", 1, 1) == 1, "write t");
	close(fd);
	struct stat b = stat_of(at("t"));
	MUST(ts_after(b.st_mtim, a.st_mtim), "file mtime unchanged by write");
	pause_a_bit();
	MUST(chmod(at("t"), 0600) == 0, "chmod");
	struct stat c = stat_of(at("t"));
	MUST(ts_after(c.st_ctim, b.st_ctim), "file ctime unchanged by chmod");
	MUST(ts_equal(c.st_mtim, b.st_mtim), "file mtime changed by chmod");
	pause_a_bit();
	MUST(link(at("t"), at("t2")) == 0, "link");
	struct stat d = stat_of(at("t"));
	MUST(ts_after(d.st_ctim, c.st_ctim), "file ctime unchanged by link");
}

static void check_utimens(void)
{
	struct timespec ts[2] = { { 1000000000, 123456789 }, { 1234567890, 987654321 } };
	MUST(utimensat(AT_FDCWD, at("t"), ts, 0) == 0, "utimensat");
	drop_caches();
	struct stat st = stat_of(at("t"));
	MUST(ts_equal(st.st_atim, ts[0]), "atime %jd.%09ld", (intmax_t)st.st_atim.tv_sec,
	     st.st_atim.tv_nsec);
	MUST(ts_equal(st.st_mtim, ts[1]), "mtime %jd.%09ld", (intmax_t)st.st_mtim.tv_sec,
	     st.st_mtim.tv_nsec);
}

static void check_nlink_times(void)
{
	check_dir_nlink();
	check_dir_times();
	check_file_times();
	check_utimens();
}

/* ---- open-flags ---- */

static void check_open_flags(void)
{
	put_file(at("e"), "exists");
	MUST(open(at("e"), O_WRONLY | O_CREAT | O_EXCL, 0644) < 0 && errno == EEXIST,
	     "O_EXCL on an existing name");
	MUST(strcmp(get_file(at("e")), "exists") == 0, "O_EXCL failure touched the file");
	put_file(at("ap"), "start\n");
	int a = open(at("ap"), O_WRONLY | O_APPEND);
	int b = open(at("ap"), O_WRONLY | O_APPEND);
	MUST(a >= 0 && b >= 0, "open O_APPEND");
	for (int i = 0; i < 50; i++) {
		MUST(write(a, "AAAAAAAAAA", 10) == 10, "append a");
		MUST(write(b, "BBBBBBB", 7) == 7, "append b");
	}
	close(a);
	close(b);
	char want[6 + 50 * 17 + 1] = "start\n";
	for (int i = 0; i < 50; i++)
		strcat(want, "AAAAAAAAAABBBBBBB");
	MUST(strcmp(get_file(at("ap")), want) == 0, "O_APPEND from two fds: size %jd, want %zu",
	     (intmax_t)stat_of(at("ap")).st_size, strlen(want));
	int t = open(at("ap"), O_RDWR | O_TRUNC);
	MUST(t >= 0, "open O_TRUNC");
	struct stat st;
	MUST(fstat(t, &st) == 0 && st.st_size == 0, "O_TRUNC left size %jd", (intmax_t)st.st_size);
	char c;
	MUST(read(t, &c, 1) == 0, "O_TRUNC: data still readable");
	close(t);
	MUST(stat_of(at("ap")).st_size == 0, "size after O_TRUNC close");
}

/* ---- large-file ---- */

static void expect_zero(int fd, off_t off, size_t len)
{
	static char buf[65536];
	MUST(len <= sizeof(buf), "expect_zero len");
	MUST(pread(fd, buf, len, off) == (ssize_t)len, "read hole at %jd", (intmax_t)off);
	for (size_t i = 0; i < len; i++)
		MUST(buf[i] == 0, "hole byte at %jd is 0x%02x", (intmax_t)off + (intmax_t)i,
		     (unsigned char)buf[i]);
}

static void check_large_file(void)
{
	const off_t p1 = (off_t)(4 * GIB + 17), p2 = (off_t)(6 * GIB);
	int fd = open(at("big"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	MUST(fd >= 0, "create big");
	MUST(pwrite(fd, "above-4G", 8, p1) == 8, "pwrite at 4 GiB + 17");
	MUST(pwrite(fd, "at-6G", 5, p2) == 5, "pwrite at 6 GiB");
	struct stat st;
	MUST(fstat(fd, &st) == 0 && st.st_size == p2 + 5, "size %jd, want %jd",
	     (intmax_t)st.st_size, (intmax_t)(p2 + 5));
	close(fd);
	drop_caches();
	fd = open(at("big"), O_RDONLY);
	MUST(fd >= 0, "reopen big");
	char buf[32] = { 0 };
	MUST(pread(fd, buf, 8, p1) == 8 && !memcmp(buf, "above-4G", 8), "read at 4 GiB + 17: '%s'", buf);
	MUST(pread(fd, buf, 32, p2) == 5 && !memcmp(buf, "at-6G", 5), "read at 6 GiB (short read at EOF)");
	expect_zero(fd, 0, 65536);
	expect_zero(fd, (off_t)(4 * GIB), 17);
	expect_zero(fd, p1 + 8, 65536);
	expect_zero(fd, (off_t)(5 * GIB), 65536);
	expect_zero(fd, p2 - 65536, 65536);
	MUST(stat_of(at("big")).st_size == p2 + 5, "size after reopen");
	close(fd);
	MUST(unlink(at("big")) == 0, "unlink big");
}

/* ---- fsync ---- */

static void check_fsync(void)
{
	int fd = open(at("f"), O_RDWR | O_CREAT, 0644);
	MUST(fd >= 0, "create");
	MUST(write(fd, "data", 4) == 4, "write");
	MUST(fsync(fd) == 0, "fsync file");
	MUST(pwrite(fd, "more", 4, 4) == 4, "write");
	MUST(fdatasync(fd) == 0, "fdatasync file");
	close(fd);
	int d = open(work, O_RDONLY | O_DIRECTORY);
	MUST(d >= 0, "open dir");
	MUST(fsync(d) == 0, "fsync directory");
	MUST(fdatasync(d) == 0, "fdatasync directory");
	MUST(syncfs(d) == 0, "syncfs");
	close(d);
}

/* ---- statfs ---- */

static void check_statfs(void)
{
	struct statvfs sv;
	MUST(statvfs(mountpoint, &sv) == 0, "statvfs");
	MUST(sv.f_bsize == 4096, "f_bsize %lu", sv.f_bsize);
	MUST(sv.f_frsize == 4096, "f_frsize %lu", sv.f_frsize);
	MUST(sv.f_blocks > 0 && sv.f_bfree <= sv.f_blocks && sv.f_bavail <= sv.f_bfree,
	     "f_blocks %lu f_bfree %lu f_bavail %lu", sv.f_blocks, sv.f_bfree, sv.f_bavail);
	MUST(sv.f_namemax == 255, "f_namemax %lu", sv.f_namemax);
	uint64_t before = sv.f_bfree;
	close(write_big(at("eight"), 8 * MIB));
	uint64_t after = free_blocks();
	MUST(after + 2048 <= before, "8 MiB written: f_bfree %" PRIu64 " -> %" PRIu64, before, after);
	MUST(after + 4096 >= before, "8 MiB cost %" PRIu64 " blocks", before - after);
	MUST(unlink(at("eight")) == 0, "unlink");
	MUST(wait_free(before - 64), "space not back 5 s after unlink: f_bfree %" PRIu64
	     ", was %" PRIu64, free_blocks(), before);
}

/* ---- lookup-counts ---- */

/* The "N inodes in memory" figure of `catamaran status MOUNTPOINT`. */
static long inodes_in_memory(void)
{
	int p[2];
	MUST(pipe(p) == 0, "pipe");
	pid_t pid = fork();
	MUST(pid >= 0, "fork");
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		execl(catamaran, catamaran, "status", mountpoint, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	FILE *f = fdopen(p[0], "r");
	char line[1024];
	long n = -1;
	while (fgets(line, sizeof(line), f)) {
		char *s = strstr(line, " inodes in memory");
		if (!s)
			continue;
		while (s > line && s[-1] >= '0' && s[-1] <= '9')
			s--;
		n = strtol(s, NULL, 10);
	}
	fclose(f);
	int status;
	waitpid(pid, &status, 0);
	MUST(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s status %s failed", catamaran,
	     mountpoint);
	MUST(n >= 0, "no 'inodes in memory' line from catamaran status");
	return n;
}

static void list_dir(const char *path)
{
	DIR *d = opendir(path);
	MUST(d, "opendir %s", path);
	while (readdir(d))
		;
	closedir(d);
}

static void check_lookup_counts(void)
{
	MUST(catamaran, "needs the catamaran binary as the 3rd argument");
	MUST(mkdir(at("l"), 0755) == 0, "mkdir");
	for (int i = 0; i < 5000; i++)
		put_file(at("l/%d", i), "");
	list_dir(at("l"));             /* readdirplus: a lookup count per entry */
	for (int i = 0; i < 5000; i += 2)
		MUST(unlink(at("l/%d", i)) == 0, "unlink");
	list_dir(at("l"));
	long n = -1;
	for (int i = 0; i < 50; i++) {   /* FORGETs arrive asynchronously */
		drop_caches();
		n = inodes_in_memory();
		if (n < 100)
			break;
		usleep(100000);
	}
	MUST(n < 100, "%ld inodes in memory after drop_caches (2500 files left, 2500 removed)", n);
	for (int i = 1; i < 5000; i += 2)
		MUST(unlink(at("l/%d", i)) == 0, "unlink");
}

/* ---- maildir ---- */

#define WRITERS 4
#define PER_WRITER 300

static atomic_int writers_left;

static uint32_t checksum(const char *p, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 16777619u;
	return h;
}

/* "Length: NNNNNNNN\n" body "Checksum: XXXXXXXX\n"; returns the length. */
static size_t make_message(char *buf, unsigned seed)
{
	size_t len = 17 + 19 + 100 + (seed * 2654435761u) % 30000;
	snprintf(buf, 18, "Length: %08zu\n", len);
	for (size_t i = 17; i < len - 19; i++)
		buf[i] = (i % 64 == 63) ? '\n' : (char)('a' + (seed + i) % 26);
	snprintf(buf + len - 19, 20, "Checksum: %08x\n", checksum(buf, len - 19));
	return len;
}

static bool message_ok(const char *buf, size_t n)
{
	size_t len;
	unsigned sum;
	if (n < 36 || sscanf(buf, "Length: %zu\n", &len) != 1 || len != n)
		return false;
	if (sscanf(buf + n - 19, "Checksum: %x\n", &sum) != 1)
		return false;
	return sum == checksum(buf, n - 19);
}

static void deliver(int w, int i, char *buf, int newdir)
{
	size_t len = make_message(buf, (unsigned)(w * PER_WRITER + i));
	const char *tmp = at("Maildir/tmp/w%d_%d", w, i);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
	MUST(fd >= 0, "create %s", tmp);
	for (size_t off = 0; off < len; off += 4096) {   /* several writes: partial is visible */
		size_t k = len - off < 4096 ? len - off : 4096;
		MUST(write(fd, buf + off, k) == (ssize_t)k, "write %s", tmp);
	}
	MUST(fsync(fd) == 0, "fsync %s", tmp);
	MUST(close(fd) == 0, "close %s", tmp);
	MUST(link(tmp, at("Maildir/new/w%d_%d", w, i)) == 0, "link into new/");
	MUST(fsync(newdir) == 0, "fsync new/");
	MUST(unlink(tmp) == 0, "unlink %s", tmp);
}

static void *writer(void *arg)
{
	int w = (int)(intptr_t)arg;
	char *buf = malloc(40000);
	int newdir = open(at("Maildir/new"), O_RDONLY | O_DIRECTORY);
	MUST(buf && newdir >= 0, "writer setup");
	for (int i = 0; i < PER_WRITER; i++)
		deliver(w, i, buf, newdir);
	close(newdir);
	free(buf);
	atomic_fetch_sub(&writers_left, 1);
	return NULL;
}

static void verify_message(const char *path, char *buf)
{
	int fd = open(path, O_RDONLY);
	MUST(fd >= 0, "open %s", path);
	ssize_t n = read(fd, buf, 39999);
	MUST(n >= 0, "read %s", path);
	close(fd);
	buf[n] = '\0';
	MUST(message_ok(buf, (size_t)n), "partial or corrupt message %s (%zd bytes)", path, n);
}

/* One scan of new/: move each message to cur/ and verify it; returns the count. */
static int reader_pass(char *buf)
{
	DIR *d = opendir(at("Maildir/new"));
	MUST(d, "opendir new/");
	int moved = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		const char *cur = at("Maildir/cur/%s:2,S", de->d_name);
		MUST(rename(at("Maildir/new/%s", de->d_name), cur) == 0, "rename %s to cur/",
		     de->d_name);
		verify_message(cur, buf);
		moved++;
	}
	closedir(d);
	return moved;
}

/* Every message in cur/ or new/ exactly once, complete; tmp/ empty. */
static void maildir_final(char *buf)
{
	static int seen[WRITERS][PER_WRITER];
	const char *sub[] = { "new", "cur", "tmp" };
	for (int s = 0; s < 3; s++) {
		DIR *d = opendir(at("Maildir/%s", sub[s]));
		MUST(d, "opendir %s", sub[s]);
		struct dirent *de;
		while ((de = readdir(d))) {
			int w, i;
			if (de->d_name[0] == '.')
				continue;
			MUST(s < 2, "tmp/ not empty: %s", de->d_name);
			MUST(sscanf(de->d_name, "w%d_%d", &w, &i) == 2 && w >= 0 && w < WRITERS &&
			     i >= 0 && i < PER_WRITER, "stray name %s/%s", sub[s], de->d_name);
			seen[w][i]++;
			verify_message(at("Maildir/%s/%s", sub[s], de->d_name), buf);
		}
		closedir(d);
	}
	for (int w = 0; w < WRITERS; w++)
		for (int i = 0; i < PER_WRITER; i++)
			MUST(seen[w][i] == 1, "message w%d_%d found %d times", w, i, seen[w][i]);
}

static void check_maildir(void)
{
	MUST(mkdir(at("Maildir"), 0700) == 0, "mkdir Maildir");
	MUST(mkdir(at("Maildir/tmp"), 0700) == 0 && mkdir(at("Maildir/new"), 0700) == 0 &&
	     mkdir(at("Maildir/cur"), 0700) == 0, "mkdir tmp new cur");
	pthread_t t[WRITERS];
	atomic_store(&writers_left, WRITERS);
	for (int w = 0; w < WRITERS; w++)
		MUST(pthread_create(&t[w], NULL, writer, (void *)(intptr_t)w) == 0, "pthread_create");
	char *buf = malloc(40000);
	MUST(buf, "malloc");
	int moved = 0;
	while (atomic_load(&writers_left) > 0)
		moved += reader_pass(buf);
	for (int w = 0; w < WRITERS; w++)
		pthread_join(t[w], NULL);
	moved += reader_pass(buf);
	MUST(moved == WRITERS * PER_WRITER, "reader moved %d messages, want %d", moved,
	     WRITERS * PER_WRITER);
	maildir_final(buf);
	free(buf);
}

/* ---- perm ---- */

/* In the child, as uid/gid 65534: returns the exit code (0 right). */
static void as_nobody(void)
{
	MUST(setgroups(0, NULL) == 0 && setgid(65534) == 0 && setuid(65534) == 0, "drop to 65534");
	MUST(open(at("secret"), O_RDONLY) < 0 && errno == EACCES,
	     "uid 65534 opened a root 0600 file (or wrong errno)");
	MUST(open(at("secret"), O_WRONLY) < 0 && errno == EACCES, "uid 65534 opened it for writing");
	int fd = open(at("pub/nobodys"), O_WRONLY | O_CREAT | O_EXCL, 0644);
	MUST(fd >= 0, "uid 65534 creating a file in a 1777 directory");
	MUST(write(fd, "mine", 4) == 4, "write own file");
	close(fd);
	MUST(unlink(at("pub/roots")) < 0 && (errno == EPERM || errno == EACCES),
	     "uid 65534 removed root's file from a sticky directory");
	MUST(mkdir(at("nope"), 0755) < 0 && errno == EACCES, "uid 65534 created in a 0755 root dir");
	exit(0);
}

static void check_perm(void)
{
	MUST(getuid() == 0, "must run as root");
	put_file(at("secret"), "secret");
	MUST(chmod(at("secret"), 0600) == 0, "chmod 0600");
	MUST(mkdir(at("pub"), 0777) == 0 && chmod(at("pub"), 01777) == 0, "mkdir pub 1777");
	put_file(at("pub/roots"), "root");
	fflush(stdout);
	pid_t pid = fork();
	MUST(pid >= 0, "fork");
	if (pid == 0)
		as_nobody();
	int status;
	MUST(waitpid(pid, &status, 0) == pid, "waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		exit(1);   /* the child printed why */
	struct stat st = stat_of(at("pub/nobodys"));
	MUST(st.st_uid == 65534 && st.st_gid == 65534, "new file owned by %u:%u, want 65534:65534",
	     st.st_uid, st.st_gid);
	MUST(strcmp(get_file(at("pub/nobodys")), "mine") == 0, "content of the other user's file");
}

/* ---- main ---- */

static const struct {
	const char *name;
	void (*fn)(void);
} checks[] = {
	{ "unlinked-open", check_unlinked_open },
	{ "rename-over-open", check_rename_over_open },
	{ "renameat2", check_renameat2 },
	{ "readdir-cookies", check_readdir_cookies },
	{ "readdir-fresh", check_readdir_fresh },
	{ "stable-ino", check_stable_ino },
	{ "nlink-times", check_nlink_times },
	{ "open-flags", check_open_flags },
	{ "large-file", check_large_file },
	{ "fsync", check_fsync },
	{ "statfs", check_statfs },
	{ "lookup-counts", check_lookup_counts },
	{ "maildir", check_maildir },
	{ "perm", check_perm },
};

int main(int argc, char **argv)
{
	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: posix_probe CHECK DIR [CATAMARAN]\nchecks:");
		for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++)
			fprintf(stderr, " %s", checks[i].name);
		fprintf(stderr, "\n");
		return 2;
	}
	mountpoint = argv[2];
	catamaran = argc == 4 ? argv[3] : NULL;
	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
		if (strcmp(argv[1], checks[i].name))
			continue;
		check_name = checks[i].name;
		make_work_dir();
		checks[i].fn();
		return 0;
	}
	fprintf(stderr, "posix_probe: unknown check %s\n", argv[1]);
	return 2;
}
