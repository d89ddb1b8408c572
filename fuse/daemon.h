/*
 * daemon.h - serve a Catamaran volume through FUSE until it is unmounted.
 *
 * cat_daemon_serve(): with an assembled mirror, start the resync of its
 * stale chunks in a background thread (the volume is served meanwhile; the
 * log and `status` tell its progress), mount the filesystem engine (journal
 * replay, orphan reclaim), clean up a dead FUSE mount left on the
 * mountpoint by a killed daemon, mount with the libfuse3 low-level API, call
 * ready(), and run the multi-threaded session loop until the filesystem is
 * unmounted (umount, fusermount3 -u) or SIGTERM/SIGINT/SIGHUP arrives. Then
 * in-flight operations complete, a running resync is waited for, the
 * engine commits and checkpoints, and the mirror is closed clean, so the
 * next mount needs no resync.
 *
 * The mirror is the caller's before the call and closed by it (always).
 * Process-level work (forking into the background) is the caller's: it must
 * happen before the mirror exists, since threads do not survive fork().
 *
 * Errors: negative errno with a message naming the problem in err.
 */
#ifndef CAT_FUSE_DAEMON_H
#define CAT_FUSE_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fuse/control.h"
#include "fuse/fuse_ops.h"
#include "recovery/recovery.h"

struct mirror;
struct cat_error;

struct cat_mount_opts {
	const char *mountpoint;
	const char *fsname;        /* shown in /proc/mounts */
	bool allow_other, default_permissions, read_only, sync;
	size_t cache_bytes;        /* 0 = engine default */
	uint64_t resync_limit;     /* bytes/s of the resync after mount; 0 = none */
	struct cat_fuse_config fuse;
	void (*ready)(void *arg);  /* called once mounted */
	void *ready_arg;
	struct control_test_hooks test;  /* tests only (power-cut); zero = none */
};

int cat_daemon_serve(struct mirror *m, const struct cat_mount_opts *o, struct cat_error *err);

/* If path is a dead FUSE mount (ENOTCONN), detach it. 1 = cleaned up,
 * 0 = nothing to do, negative errno on failure. */
int cat_clean_dead_mount(const char *path);

#endif
