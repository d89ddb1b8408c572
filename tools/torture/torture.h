/*
 * torture.h - `catamaran torture`: kill -9, power cuts and disk pulls under
 * a real mail load, with every outcome checked against a ledger.
 *
 * The pieces (one file each):
 *   ledger.c   what the load was told: each message (token, user, content
 *              hash) with its state - sent, acknowledged (250 after DATA),
 *              delete pending (QUIT sent), deleted (+OK after QUIT). Kept in
 *              memory and appended to WORKDIR/ledger.log, outside the volume.
 *   load.c     SMTP writer threads and POP3 reader threads talking to the
 *              real `catamaran mail serve`; readers check every message
 *              they retrieve and delete what they read. Errors are counted
 *              as expected only while a disruption window is open (the
 *              daemon or the mail server is down); during a disk failure no
 *              window opens, so any error is a violation.
 *   verify.c   with the load stopped: read every mailbox through the mount
 *              and compare with the ledger (lost, partial, duplicated,
 *              resurrected).
 *   procs.c    the processes and disks: mount (foreground child), mail
 *              server, kill, unmount, fsck, check, control-socket requests,
 *              loop devices pulled by truncate + losetup -c.
 *   scenario.c one function per scenario: inflict it on a running volume,
 *              bring the service back, report the recovery time.
 *   cmd_torture.c  the command: options, cycles, progress, summary, --json.
 *
 * Everything here is a test driver: it may exit() on setup errors with a
 * message; violations are counted, never hidden, and make the exit status 1.
 * Threads: the ledger and the counters are thread-safe; the rest runs on the
 * command's main thread.
 */
#ifndef CAT_TOOLS_TORTURE_H
#define CAT_TOOLS_TORTURE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct prng;

#define TORTURE_USERS 8
#define TORTURE_PASSWORD "torture-password"

/* ---- ledger ---- */

enum msg_state {
	MSG_SENT,            /* DATA sent, no 250 seen: may or may not exist */
	MSG_ACKED,           /* 250 after DATA: must exist until deleted */
	MSG_DELETE_PENDING,  /* DELE + QUIT sent, no +OK seen: may be gone */
	MSG_DELETED,         /* +OK after QUIT: must never come back */
	MSG_ABSENT,          /* was MSG_SENT and not found: must not appear */
};

struct violations {
	atomic_ulong lost, partial, duplicated, resurrected, unexpected_errors;
};

struct ledger;

int ledger_open(const char *path, struct ledger **out);
void ledger_close(struct ledger *l);
/* A new message for user: fills token (32 bytes) and returns its index. */
size_t ledger_new(struct ledger *l, int user, uint64_t hash, char token[32]);
void ledger_set(struct ledger *l, size_t idx, enum msg_state s);
/* Look a token up: index or -1. */
long ledger_find(struct ledger *l, const char *token);
enum msg_state ledger_state(struct ledger *l, size_t idx);
int ledger_user(struct ledger *l, size_t idx);
uint64_t ledger_hash(struct ledger *l, size_t idx);
size_t ledger_count(struct ledger *l);
/* Acknowledged deliveries so far (ever). */
uint64_t ledger_acked_total(struct ledger *l);

/* ---- messages ---- */

/* FNV-1a over the body with every "\r\n" counted as "\n" (the store keeps
 * LF line ends, POP3 sends CRLF). */
uint64_t body_hash(const char *body, size_t len);
/* Build a message (headers + body, CRLF, not dot-stuffed) into a malloc'ed
 * buffer: random body of a random size, its hash in X-Torture-Hash. */
char *message_build(struct ledger *l, int user, struct prng *rng, size_t *len, size_t *idx);
/* Parse a stored or retrieved message: 0 with token and hash checked,
 * -EBADMSG when headers are missing or the body does not match its hash. */
int message_check(const char *msg, size_t len, char token[32]);

/* ---- load ---- */

struct load_config {
	uint16_t smtp_port, pop3_port;
	unsigned writers, readers;
	uint64_t seed;
};

struct load;

int load_start(const struct load_config *c, struct ledger *l, struct violations *v,
	       struct load **out);
/* Finish the transactions in flight, join the threads (the counters stay
 * readable until load_free). */
void load_stop(struct load *ld);
void load_free(struct load *ld);
/* Errors from now on are expected (the service is being disrupted) until
 * load_window_close(); a transaction overlapping the window is excused. */
void load_window_open(struct load *ld);
void load_window_close(struct load *ld);
/* Deliveries acknowledged / messages retrieved and verified, this run. */
uint64_t load_acked(struct load *ld);
uint64_t load_retrieved(struct load *ld);
uint64_t load_errors_expected(struct load *ld);

/* ---- verify ---- */

struct verify_result {
	uint64_t present, verified;
	uint64_t lost, partial, duplicated, resurrected;
};

/* Read ROOT/userN/{new,cur} and settle the ledger. Adds to v. */
int verify_mailboxes(const char *root, struct ledger *l, struct violations *v,
		     struct verify_result *res);

/* ---- processes and disks ---- */

struct volume {
	char workdir[512], mnt[600], root[700], users[600], log[600];
	char disk[2][600];        /* what the daemon opens: file or loop device */
	char file[2][600];        /* the backing file of each disk */
	bool loop;                /* disks are loop devices (real pulls possible) */
	unsigned generation;      /* replacement disks made so far */
	uint64_t size;
	pid_t daemon, mailer;
	uint16_t smtp_port, pop3_port;
	uint64_t crash_seed;      /* nonzero: mount -o crashtest=SEED */
	const char *resync_limit; /* mount -o resync_limit= (NULL: none) */
	const char *self;         /* path of this catamaran binary */
};

int volume_setup(struct volume *v, const char *workdir, uint64_t size, bool want_loop);
void volume_teardown(struct volume *v);
int volume_mount(struct volume *v);
int volume_mailer_start(struct volume *v);
void volume_mailer_kill(struct volume *v, int sig);
void volume_daemon_kill(struct volume *v);
/* Stop the mail server and unmount cleanly. */
int volume_unmount(struct volume *v);
/* fsck and check on the unmounted disks: 0 clean, 1 problem (logged). */
int volume_fsck(struct volume *v);
/* `mail adduser` with TORTURE_PASSWORD. */
int volume_adduser(struct volume *v, const char *name);
int volume_check(struct volume *v);
/* A control-socket request; the reply's output lines go to the log.
 * 0 on OK, negative errno from ERR, -EPIPE if the connection died. */
int volume_control(struct volume *v, const char *request, char *reply, size_t len);
/* Fail disk leg (0/1): through the control channel, or (really) by
 * truncating its loop device's file and losetup -c. */
int volume_pull(struct volume *v, int leg, bool real);
/* A fresh disk for leg, then `disk replace` (online rebuild, waited for). */
int volume_replace(struct volume *v, int leg);
/* Stale chunks left to resync (from status --json), or -errno. */
long volume_stale_chunks(struct volume *v, int *authoritative);

void tlog(struct volume *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double now_seconds(void);

/* ---- scenarios ---- */

struct cycle_result {
	double recovery_s;        /* service back after the fault; < 0: none */
	bool resync_hit;          /* pull-during-resync: resync was running */
};

typedef int (*scenario_fn)(struct volume *v, struct load *ld, struct prng *rng,
			   double seconds, struct cycle_result *res);

struct scenario {
	const char *name;
	const char *what;
	scenario_fn run;
	bool crashtest;          /* mount -o crashtest */
	const char *resync_limit;/* mount -o resync_limit (NULL: none) */
};

extern const struct scenario scenarios[];
extern const size_t nscenarios;

#endif
