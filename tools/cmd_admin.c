/*
 * cmd_admin.c - commands for a mounted volume, spoken to its daemon over
 * the control socket (fuse/control.h): `status MOUNTPOINT`, `disk fail`,
 * `disk replace`, `scrub`.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuse/control.h"
#include "tools/cli.h"
#include "tools/commands.h"

static const char disk_usage[] =
	"Usage: catamaran disk fail MOUNTPOINT 1|2\n"
	"       catamaran disk replace MOUNTPOINT 1|2 NEWDISK\n"
	"\n"
	"Disk administration while the volume is mounted.\n"
	"  fail     mark the disk failed, as if it had been pulled; service goes on\n"
	"           on the other disk (refused if it is the only one in service)\n"
	"  replace  bring in NEWDISK (a file or block device at least as large) in\n"
	"           place of disk 1|2 and rebuild it online from the other disk,\n"
	"           with progress; returns when both disks are in sync\n"
	"Exit status: 0 done, 1 the daemon refused or failed, 2 bad usage or no daemon.\n";

static const char scrub_usage[] =
	"Usage: catamaran scrub [--repair] MOUNTPOINT\n"
	"\n"
	"Compare the two disks of a mounted volume online, block by block, and\n"
	"report the ranges that differ; --repair copies them from the\n"
	"authoritative disk. Exit status: 0 identical (or repaired), 1 differences\n"
	"left or the scrub failed, 2 bad usage or no daemon.\n";

static int connect_daemon(const char *cmd, const char *mountpoint)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int r = control_socket_path(mountpoint, sa.sun_path, sizeof(sa.sun_path));
	if (r) {
		fprintf(stderr, "catamaran %s: %s: %s\n", cmd, mountpoint, strerror(-r));
		return -1;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "catamaran %s: %s: no Catamaran daemon serves it (%s)\n", cmd,
			mountpoint, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* One reply line; returns 0 to go on, else the final exit status + 1. */
static int handle_line(const char *cmd, char *line, bool *differs)
{
	if (line[0] == 'P' && line[1] == ' ') {
		char phase[64];
		uint64_t done, total;
		if (sscanf(line + 2, "%63s %" SCNu64 " %" SCNu64, phase, &done, &total) == 3)
			cli_progress(NULL, phase, done, total);
		return 0;
	}
	cli_progress_pause();
	if (line[0] == 'O' && line[1] == ' ') {
		if (!strncmp(line + 2, "mismatch:", 9))
			*differs = true;
		printf("%s\n", line + 2);
		return 0;
	}
	if (!strcmp(line, "OK"))
		return 1;
	int err = 0, off = 0;
	if (sscanf(line, "ERR %d %n", &err, &off) >= 1 && off > 0)
		fprintf(stderr, "catamaran %s: %s\n", cmd, line + off);
	else
		fprintf(stderr, "catamaran %s: unexpected reply from the daemon: %s\n", cmd, line);
	return 2;
}

/* Send one request and relay the reply. Exit status 0, 1 (refused/failed,
 * or differences with *differs), 2 (no daemon). */
static int control_request(const char *cmd, const char *mountpoint, const char *request,
			   bool *differs)
{
	int fd = connect_daemon(cmd, mountpoint);
	if (fd < 0)
		return 2;
	if (send(fd, request, strlen(request), MSG_NOSIGNAL) < 0 || send(fd, "\n", 1, MSG_NOSIGNAL) < 0) {
		fprintf(stderr, "catamaran %s: %s: %s\n", cmd, mountpoint, strerror(errno));
		close(fd);
		return 2;
	}
	FILE *in = fdopen(fd, "r");
	char line[2048];
	int verdict = 0;
	while (!verdict && in && fgets(line, sizeof(line), in)) {
		line[strcspn(line, "\n")] = '\0';
		verdict = handle_line(cmd, line, differs);
	}
	cli_progress_end();
	if (in)
		fclose(in);
	else
		close(fd);
	if (!verdict) {
		fprintf(stderr, "catamaran %s: the daemon closed the connection without an answer\n", cmd);
		return 1;
	}
	return verdict == 1 ? 0 : 1;
}

int cmd_status_mounted(const char *mountpoint, bool json)
{
	bool differs = false;
	return control_request("status", mountpoint, json ? "status --json" : "status", &differs);
}

int cmd_disk(int argc, char **argv)
{
	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		fputs(disk_usage, stdout);
		return 0;
	}
	bool differs = false;
	char req[4200];
	if (argc == 4 && !strcmp(argv[1], "fail")) {
		snprintf(req, sizeof(req), "disk fail %s", argv[3]);
	} else if (argc == 5 && !strcmp(argv[1], "replace")) {
		char *abs = realpath(argv[4], NULL);
		snprintf(req, sizeof(req), "disk replace %s %s", argv[3], abs ? abs : argv[4]);
		free(abs);
	} else {
		return cli_usage_error("disk", "expected 'fail MOUNTPOINT 1|2' or 'replace MOUNTPOINT 1|2 NEWDISK'");
	}
	if (strcmp(argv[3], "1") && strcmp(argv[3], "2"))
		return cli_usage_error("disk", "the disk is 1 or 2, not '%s'", argv[3]);
	return control_request("disk", argv[2], req, &differs);
}

int cmd_scrub(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "repair", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool repair = false;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":rh", longopts, NULL)) != -1) {
		if (c == 'r')
			repair = true;
		else if (c == 'h')
			return fputs(scrub_usage, stdout), 0;
		else
			return cli_bad_option("scrub", c, argv);
	}
	if (argc - optind != 1)
		return cli_usage_error("scrub", "needs the MOUNTPOINT of a mounted volume");
	bool differs = false;
	int r = control_request("scrub", argv[optind], repair ? "scrub --repair" : "scrub", &differs);
	return r ? r : (differs && !repair) ? 1 : 0;
}
