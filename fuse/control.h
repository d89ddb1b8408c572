/*
 * control.h - the running daemon's control channel: a Unix socket through
 * which `catamaran status|disk|scrub MOUNTPOINT` talk to it.
 *
 * Socket: CONTROL_DIR/<mountpoint path with '/' as '_'>.sock (a root-only
 * directory, mode 0700), found from the mountpoint's real path.
 *
 * Protocol (text, one request per connection): the client sends one line,
 *     status | status --json | disk fail N | disk replace N PATH |
 *     scrub | scrub --repair | power-cut
 * ("power-cut" only on a daemon mounted with the test-only option
 * crashtest: it calls the hook, which loses unflushed writes and ends the
 * process as a power failure would; no reply.)
 * and reads lines until the connection closes: "P <phase> <done> <total>"
 * is progress, "O <text>" a line of output, and the last line is
 * "OK" or "ERR <errno> <message>".
 *
 * Threads: one accept thread; each connection is served on its own thread
 * (a rebuild can take long; status must still answer meanwhile).
 * control_stop() closes the socket and waits for the connections being
 * served, so an unmount waits for a running rebuild or scrub to end.
 */
#ifndef CAT_FUSE_CONTROL_H
#define CAT_FUSE_CONTROL_H

#include <stddef.h>

struct mirror;
struct fs;
struct control;
struct cat_error;

#define CONTROL_DIR "/run/catamaran"

/* The socket path for a mountpoint (resolved with realpath). */
int control_socket_path(const char *mountpoint, char *out, size_t len);

/* Test-only: what "power-cut" calls (it must not return). */
struct control_test_hooks {
	void (*power_cut)(void *arg);
	void *arg;
};

/* test may be NULL (then "power-cut" is refused). */
int control_start(const char *mountpoint, struct mirror *m, struct fs *fs,
		  const struct control_test_hooks *test, struct control **out,
		  struct cat_error *err);
void control_stop(struct control *c);

#endif
