/*
 * cli.h - pieces shared by the subcommands: opening the two disks of a
 * mirror with clear errors, progress display, and usage errors.
 *
 * Every message is one line on stderr, "catamaran CMD: DISK: problem".
 * Exit statuses used by all subcommands: 0 success, 1 the operation found
 * or left a problem, 2 error or bad usage (each command's --help says
 * exactly). Single-threaded: the progress state is a process global.
 */
#ifndef CAT_TOOLS_CLI_H
#define CAT_TOOLS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blockdev/bdev.h"
#include "blockdev/mirror/mirror.h"

/* Open DISK1 and DISK2 (io_uring disks) and assemble the mirror. On any
 * problem prints "catamaran CMD: <problem naming the disk>" and returns
 * -errno. Refuses the same file given twice. With opts->allow_degraded a
 * disk that cannot be opened is reported as a warning and left missing. */
int cli_open_mirror(const char *cmd, const char *path1, const char *path2,
		    const struct mirror_opts *opts, struct mirror **out);

/* Open both disks without assembling (format, status). Same checks and
 * messages as cli_open_mirror. flags: uring_disk_open flags. */
int cli_open_disks(const char *cmd, const char *path1, const char *path2,
		   unsigned flags, struct bdev *out[2]);

/* A progress_fn (recovery.h): a redrawn bar on a terminal (stderr), plain
 * lines every 10% otherwise. ctx unused. Call cli_progress_end() after. */
void cli_progress(void *ctx, const char *phase, uint64_t done, uint64_t total);
void cli_progress_end(void);
/* Erase the bar so a result line can be printed; the next cli_progress()
 * draws it again. */
void cli_progress_pause(void);

/* Open one disk (uring_disk_open flags) without printing: on failure msg
 * gets one line "PATH: problem" and -errno is returned. */
int cli_open_disk(const char *path, unsigned flags, struct bdev **out,
		  char *msg, size_t msglen);

/* True when a and b name the same file or block device (hard links,
 * symlinks and different spellings included). */
bool cli_same_disk(const char *a, const char *b);
/* The same, printing the one-line error "catamaran CMD: B: is the same
 * disk as A" when they are. */
bool cli_refuse_same_disk(const char *cmd, const char *a, const char *b);

/* Print "catamaran CMD: MESSAGE (see 'catamaran CMD --help')"; returns 2,
 * the exit status for bad usage. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The same for a getopt_long() result of '?' or ':' (opterr = 0). */
int cli_bad_option(const char *cmd, int c, char **argv);

/* Print s as a JSON string literal (quotes, escapes; "" for NULL). */
void cli_json_string(const char *s);

#endif
