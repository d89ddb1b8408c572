/*
 * cmd_mail.c - `catamaran mail serve` (the SMTP and POP3 servers of
 * core/mail/server.h on a Maildir root) and `catamaran mail adduser`.
 *
 * serve raises its open-file limit to the hard limit, then waits for
 * signals on the main thread: SIGHUP reloads the users file (swapped into
 * the running server; a bad file keeps the old users), SIGINT / SIGTERM
 * stop, and every --recover-interval seconds mail_recover runs there too.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "core/mail/mail.h"
#include "core/mail/server.h"
#include "tools/cli.h"
#include "tools/commands.h"

static const char mail_usage[] =
	"Usage: catamaran mail serve --root DIR --users FILE [--smtp ADDR:PORT]\n"
	"                            [--pop3 ADDR:PORT] [--lmtp ADDR:PORT] [--max-size N]\n"
	"                            [--max-conns N] [--idle-timeout S] [--workers N]\n"
	"                            [--hostname NAME] [--recover-interval S]\n"
	"       catamaran mail adduser --root DIR --users FILE NAME\n"
	"\n"
	"serve: an SMTP server delivering to the local users of FILE (no relay)\n"
	"and a POP3 server for them, both on Maildir mailboxes under DIR. Runs in\n"
	"the foreground until SIGINT or SIGTERM. SIGHUP reloads FILE: sessions\n"
	"already logged in go on, new logins and RCPT use the new users; if FILE\n"
	"cannot be loaded the old users stay (one line on stderr). At start the\n"
	"open-file limit is raised to its hard limit (ulimit -Hn), one descriptor\n"
	"per connection; leftovers of interrupted deliveries are removed at start\n"
	"and then every --recover-interval seconds.\n"
	"  --smtp ADDR:PORT      SMTP listener (default 127.0.0.1:2525; 'off': none)\n"
	"  --pop3 ADDR:PORT      POP3 listener (default 127.0.0.1:1110; 'off': none)\n"
	"  --lmtp ADDR:PORT      LMTP listener, RFC 2033 (default: none)\n"
	"  --max-size N          largest message accepted, bytes (default 10485760)\n"
	"  --max-conns N         connections at once, both together (default 2048);\n"
	"                        one more gets 421 / -ERR and is closed\n"
	"  --idle-timeout S      close idle connections after S seconds (default 300)\n"
	"  --workers N           threads for disk and password work (default 4)\n"
	"  --hostname NAME       name in banners and Received: (default: hostname)\n"
	"  --recover-interval S  seconds between two recoveries (default 600;\n"
	"                        0: at start only)\n"
	"\n"
	"adduser: add NAME to FILE, or change its password; the password is read\n"
	"from the first line of stdin.\n"
	"\n"
	"Exit status: 0 success, 2 error or bad usage.\n";

static int parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	char *e;
	errno = 0;
	unsigned long long v = strtoull(s, &e, 10);
	if (errno || e == s || *e || s[0] == '-' || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Raise the soft open-file limit to the hard one (nr_open when that is
 * unlimited). Returns the soft limit now in force. */
static rlim_t raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 0;
	rlim_t want = rl.rlim_max;
	if (want == RLIM_INFINITY) {
		unsigned long nr_open = 0;
		FILE *f = fopen("/proc/sys/fs/nr_open", "r");
		if (f && fscanf(f, "%lu", &nr_open) != 1)
			nr_open = 0;
		if (f)
			fclose(f);
		want = nr_open ? (rlim_t)nr_open : 1048576;
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
		struct rlimit raised = { .rlim_cur = want, .rlim_max = rl.rlim_max };
		if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
			rl.rlim_cur = want;
	}
	return rl.rlim_cur;
}

static void warn_nofile(rlim_t limit, unsigned max_conns)
{
	/* One per connection, plus listeners, epoll and deliveries in flight,
	 * in the three quarters the store's mailbox cache leaves. */
	rlim_t need = ((rlim_t)(max_conns ? max_conns : 2048) + 128) * 4 / 3;
	if (limit != RLIM_INFINITY && limit < need)
		fprintf(stderr, "catamaran mail: warning: the open-file limit is %llu, below the "
			"%llu that --max-conns needs; new connections wait while it is reached\n",
			(unsigned long long)limit, (unsigned long long)need);
}

/* SIGHUP: load the users file again and hand it to the server. */
static void reload_users(struct mail_server *srv, const char *users_path)
{
	struct mail_users *fresh;
	int rc = mail_users_load(users_path, &fresh);
	if (rc == 0) {
		rc = mail_server_set_users(srv, fresh);
		if (rc < 0)
			mail_users_free(fresh);
	}
	if (rc < 0)
		fprintf(stderr, "catamaran mail: reloading %s: %s; keeping the old users\n",
			users_path, strerror(-rc));
	else
		fprintf(stderr, "catamaran mail: users reloaded from %s\n", users_path);
}

static void recover(struct mail_store *store)
{
	int rc = mail_recover(store);
	if (rc > 0)
		fprintf(stderr, "catamaran mail: removed %d leftover(s) of interrupted deliveries\n", rc);
	else if (rc < 0)
		fprintf(stderr, "catamaran mail: recovery: %s\n", strerror(-rc));
}

static uint64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The next signal of set, or 0 when *deadline_ms (CLOCK_MONOTONIC, 0:
 * none) has come; *deadline_ms is then moved on by interval_s. */
static int next_signal(const sigset_t *set, uint64_t *deadline_ms, unsigned interval_s)
{
	for (;;) {
		int sig;
		if (!*deadline_ms) {
			if (sigwait(set, &sig) == 0)
				return sig;
			continue;
		}
		uint64_t now = monotonic_ms();
		if (now >= *deadline_ms) {
			*deadline_ms = now + (uint64_t)interval_s * 1000;
			return 0;
		}
		uint64_t left = *deadline_ms - now;
		struct timespec ts = { .tv_sec = (time_t)(left / 1000),
				       .tv_nsec = (long)(left % 1000) * 1000000 };
		sig = sigtimedwait(set, NULL, &ts);
		if (sig > 0)
			return sig;
	}
}

/* Serve until SIGINT / SIGTERM (returned): SIGHUP reloads the users,
 * every recover_s seconds (0: never) mail_recover runs. */
static int serve_until_stopped(const sigset_t *set, struct mail_server *srv,
			       struct mail_store *store, const char *users_path,
			       unsigned recover_s)
{
	uint64_t deadline = recover_s ? monotonic_ms() + (uint64_t)recover_s * 1000 : 0;
	for (;;) {
		int sig = next_signal(set, &deadline, recover_s);
		if (sig == 0)
			recover(store);
		else if (sig == SIGHUP)
			reload_users(srv, users_path);
		else
			return sig;
	}
}

static int mail_serve(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "root", required_argument, NULL, 'r' },
		{ "users", required_argument, NULL, 'u' },
		{ "smtp", required_argument, NULL, 's' },
		{ "pop3", required_argument, NULL, 'p' },
		{ "lmtp", required_argument, NULL, 'l' },
		{ "max-size", required_argument, NULL, 'm' },
		{ "max-conns", required_argument, NULL, 'c' },
		{ "idle-timeout", required_argument, NULL, 't' },
		{ "workers", required_argument, NULL, 'w' },
		{ "hostname", required_argument, NULL, 'H' },
		{ "recover-interval", required_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *root = NULL, *users_path = NULL;
	unsigned recover_s = 600;
	struct mail_server_opts o = { .smtp_addr = "127.0.0.1:2525", .pop3_addr = "127.0.0.1:1110" };
	unsigned long long v;
	int c;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case 'r': root = optarg; break;
		case 'u': users_path = optarg; break;
		case 's': o.smtp_addr = strcmp(optarg, "off") ? optarg : NULL; break;
		case 'p': o.pop3_addr = strcmp(optarg, "off") ? optarg : NULL; break;
		case 'l': o.lmtp_addr = strcmp(optarg, "off") ? optarg : NULL; break;
		case 'H': o.hostname = optarg; break;
		case 'm':
			if (parse_uint(optarg, 1ull << 40, &v) || v == 0)
				return cli_usage_error("mail", "bad --max-size '%s'", optarg);
			o.max_size = v;
			break;
		case 'c':
			if (parse_uint(optarg, 1000000, &v) || v == 0)
				return cli_usage_error("mail", "bad --max-conns '%s'", optarg);
			o.max_conns = (unsigned)v;
			break;
		case 't':
			if (parse_uint(optarg, 86400, &v) || v == 0)
				return cli_usage_error("mail", "bad --idle-timeout '%s'", optarg);
			o.idle_timeout_s = (unsigned)v;
			break;
		case 'w':
			if (parse_uint(optarg, 256, &v) || v == 0)
				return cli_usage_error("mail", "bad --workers '%s'", optarg);
			o.workers = (unsigned)v;
			break;
		case 'R':
			if (parse_uint(optarg, 7 * 86400, &v))
				return cli_usage_error("mail", "bad --recover-interval '%s'", optarg);
			recover_s = (unsigned)v;
			break;
		case 'h': fputs(mail_usage, stdout); return 0;
		default: return cli_bad_option("mail", c, argv);
		}
	}
	if (!root || !users_path)
		return cli_usage_error("mail", "serve needs --root DIR and --users FILE");
	if (optind != argc)
		return cli_usage_error("mail", "unexpected argument '%s'", argv[optind]);
	if (!o.smtp_addr && !o.pop3_addr && !o.lmtp_addr)
		return cli_usage_error("mail", "every listener is off");

	/* Before mail_open: the store sizes its cache of open mailboxes by it. */
	warn_nofile(raise_nofile(), o.max_conns);
	struct mail_users *users;
	int rc = mail_users_load(users_path, &users);
	if (rc < 0) {
		fprintf(stderr, "catamaran mail: %s: %s\n", users_path, strerror(-rc));
		return 2;
	}
	struct mail_store *store;
	rc = mail_open(root, &store);
	if (rc < 0) {
		fprintf(stderr, "catamaran mail: %s: %s\n", root, strerror(-rc));
		mail_users_free(users);
		return 2;
	}
	recover(store);

	/* Block the signals in every thread; the main thread takes them. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct mail_server *srv;
	rc = mail_server_start(store, users, &o, &srv);
	if (rc < 0) {
		fprintf(stderr, "catamaran mail: cannot start the servers: %s\n", strerror(-rc));
		mail_close(store);
		mail_users_free(users);
		return 2;
	}
	if (o.smtp_addr)
		printf("SMTP on %s (port %d)\n", o.smtp_addr, mail_server_port(srv, MAIL_SMTP));
	if (o.pop3_addr)
		printf("POP3 on %s (port %d)\n", o.pop3_addr, mail_server_port(srv, MAIL_POP3));
	if (o.lmtp_addr)
		printf("LMTP on %s (port %d)\n", o.lmtp_addr, mail_server_port(srv, MAIL_LMTP));
	fflush(stdout);
	int sig = serve_until_stopped(&set, srv, store, users_path, recover_s);
	fprintf(stderr, "catamaran mail: signal %d, stopping\n", sig);
	mail_server_stop(srv); /* frees the reloaded users lists */
	rc = mail_close(store);
	mail_users_free(users);
	if (rc < 0) {
		fprintf(stderr, "catamaran mail: %s: closing: %s\n", root, strerror(-rc));
		return 2;
	}
	return 0;
}

static int mail_adduser(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "root", required_argument, NULL, 'r' },
		{ "users", required_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *root = NULL, *users_path = NULL;
	int c;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case 'r': root = optarg; break;
		case 'u': users_path = optarg; break;
		case 'h': fputs(mail_usage, stdout); return 0;
		default: return cli_bad_option("mail", c, argv);
		}
	}
	if (!users_path)
		return cli_usage_error("mail", "adduser needs --users FILE");
	if (argc - optind != 1)
		return cli_usage_error("mail", "adduser needs exactly one NAME");
	const char *name = argv[optind];
	if (!mail_name_valid(name))
		return cli_usage_error("mail", "'%s' is not a valid user name "
				       "(letters, digits, '.', '_', '-'; at most %d)", name, MAIL_NAME_MAX);
	if (root && access(root, F_OK) != 0) {
		fprintf(stderr, "catamaran mail: %s: %s\n", root, strerror(errno));
		return 2;
	}
	bool tty = isatty(STDIN_FILENO);
	struct termios old;
	if (tty) {
		fprintf(stderr, "Password for %s: ", name);
		tcgetattr(STDIN_FILENO, &old);
		struct termios noecho = old;
		noecho.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho);
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, stdin);
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	if (n < 0) {
		free(line);
		fprintf(stderr, "catamaran mail: no password on stdin\n");
		return 2;
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	if (n == 0) {
		free(line);
		fprintf(stderr, "catamaran mail: empty password\n");
		return 2;
	}
	int rc = mail_user_add(users_path, name, line);
	explicit_bzero(line, cap);
	free(line);
	if (rc < 0) {
		fprintf(stderr, "catamaran mail: %s: %s\n", users_path, strerror(-rc));
		return 2;
	}
	printf("User %s saved in %s\n", name, users_path);
	return 0;
}

int cmd_mail(int argc, char **argv)
{
	if (argc < 2) {
		fputs(mail_usage, stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(mail_usage, stdout);
		return 0;
	}
	if (strcmp(argv[1], "serve") == 0)
		return mail_serve(argc - 1, argv + 1);
	if (strcmp(argv[1], "adduser") == 0)
		return mail_adduser(argc - 1, argv + 1);
	return cli_usage_error("mail", "unknown subcommand '%s' (serve, adduser)", argv[1]);
}
