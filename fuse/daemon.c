/*
 * daemon.c - recovery, mount, session loop, clean unmount (daemon.h).
 */
#define FUSE_USE_VERSION 312
#include "fuse/daemon.h"

#include <errno.h>
#include <pthread.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "blockdev/mirror/mirror.h"
#include "core/base/error.h"
#include "core/base/log.h"
#include "core/fs/fs.h"
#include "fuse/control.h"

int cat_clean_dead_mount(const char *path)
{
	struct stat st;
	int removed = 0;
	/* Dead mounts can be stacked (each killed daemon left one). */
	while (removed < 16 && stat(path, &st) < 0 && errno == ENOTCONN) {
		if (umount2(path, MNT_DETACH) < 0)
			return -errno;
		removed++;
	}
	if (removed)
		cat_log(CAT_LOG_INFO, "%s: removed %d dead FUSE mount(s) left by a killed daemon",
			path, removed);
	return removed > 0;
}

/* The resync after a crash runs beside the service, as md's does: the
 * mirror serves a stale chunk from the authoritative disk until it is
 * copied, so the volume is usable at once and `catamaran status` shows
 * what is left. It is joined before the mirror is closed. */
struct online_resync {
	pthread_t thread;
	bool started;
	struct mirror *m;
	uint64_t limit;       /* bytes/s, 0 = none (-o resync_limit) */
};

static void *resync_main(void *arg)
{
	struct online_resync *rs = arg;
	struct resync_result res;
	struct cat_error err = { 0 };
	/* the limit is for this resync only: a rebuild asked for by `disk
	 * replace` cannot start before it ends and runs at full speed */
	recovery_set_resync_limit(rs->limit);
	int r = recovery_resync(rs->m, NULL, NULL, &res, &err);
	recovery_set_resync_limit(0);
	if (r)
		cat_log(CAT_LOG_ERROR, "resync failed: %s", err.msg);
	else
		cat_log(CAT_LOG_INFO, "resync done: %llu chunks, %llu blocks copied in %.1f s%s",
			(unsigned long long)res.chunks, (unsigned long long)res.blocks_copied,
			res.seconds, res.degraded ? " - the disk being rebuilt failed" : "");
	return NULL;
}

static void start_resync(struct online_resync *rs, struct mirror *m, uint64_t limit)
{
	rs->m = m;
	rs->limit = limit;
	if (mirror_stale_chunks(m) == 0 && mirror_rebuilding_leg(m) < 0)
		return;
	cat_log(CAT_LOG_INFO, "resyncing %llu stale chunk(s) online",
		(unsigned long long)mirror_stale_chunks(m));
	rs->started = pthread_create(&rs->thread, NULL, resync_main, rs) == 0;
	if (!rs->started)      /* no thread: do it now, before serving */
		resync_main(rs);
}

static void join_resync(struct online_resync *rs)
{
	if (rs->started)
		pthread_join(rs->thread, NULL);
	rs->started = false;
}

/* "-o" options for libfuse, from ours. */
static int session_args(const struct cat_mount_opts *o, struct fuse_args *args)
{
	char opts[512];
	snprintf(opts, sizeof(opts), "fsname=%s,subtype=catamaran%s%s%s",
		 o->fsname ? o->fsname : "catamaran", o->allow_other ? ",allow_other" : "",
		 o->default_permissions ? ",default_permissions" : "",
		 o->read_only ? ",ro" : "");
	if (fuse_opt_add_arg(args, "catamaran") || fuse_opt_add_arg(args, "-o") ||
	    fuse_opt_add_arg(args, opts))
		return -ENOMEM;
	return 0;
}

static int run_session(struct fs *fs, const struct cat_mount_opts *o, struct cat_error *err)
{
	struct cat_fuse_ctx ctx = { .fs = fs, .cfg = o->fuse };
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	if (session_args(o, &args))
		return cat_error_set(err, -ENOMEM, "out of memory");
	struct fuse_session *se = fuse_session_new(&args, cat_fuse_ops(), sizeof(struct fuse_lowlevel_ops), &ctx);
	fuse_opt_free_args(&args);
	if (!se)
		return cat_error_set(err, -EINVAL, "%s: cannot start a FUSE session", o->mountpoint);
	int r = 0;
	if (fuse_set_signal_handlers(se)) {
		r = cat_error_set(err, -EINVAL, "cannot install signal handlers");
	} else {
		cat_clean_dead_mount(o->mountpoint);
		if (fuse_session_mount(se, o->mountpoint)) {
			r = cat_error_set(err, -EIO, "%s: mount failed (is it a directory? is "
					  "/dev/fuse there?)", o->mountpoint);
		} else {
			if (o->ready)
				o->ready(o->ready_arg);
			struct fuse_loop_config *cfg = fuse_loop_cfg_create();
			fuse_loop_cfg_set_max_threads(cfg, 64);
			if (fuse_session_loop_mt(se, cfg) < 0)
				r = cat_error_set(err, -EIO, "%s: FUSE session failed", o->mountpoint);
			fuse_loop_cfg_destroy(cfg);
			fuse_session_unmount(se);
		}
		fuse_remove_signal_handlers(se);
	}
	fuse_session_destroy(se);
	return r;
}

int cat_daemon_serve(struct mirror *m, const struct cat_mount_opts *o, struct cat_error *err)
{
	struct online_resync rs = { .started = false };
	if (!o->read_only)
		start_resync(&rs, m, o->resync_limit);
	int r = 0;
	struct fs *fs = NULL;
	{
		struct fs_opts fo = { .cache_bytes = o->cache_bytes, .sync = o->sync,
				      .read_only = o->read_only };
		r = fs_mount(mirror_bdev(m), &fo, &fs, err);
	}
	struct control *ctl = NULL;
	if (!r)
		r = control_start(o->mountpoint, m, fs, &o->test, &ctl, err);
	if (!r)
		r = run_session(fs, o, err);
	control_stop(ctl);   /* waits for a rebuild or scrub it is running */
	join_resync(&rs);
	if (fs) {
		int r2 = fs_unmount(fs);
		if (!r && r2)
			r = cat_error_set(err, r2, "unmount: writing the last changes failed: %s",
					  strerror(-r2));
	}
	int r3 = mirror_close(m);
	if (!r && r3)
		r = cat_error_set(err, r3, "closing the mirror failed: %s", strerror(-r3));
	return r;
}
