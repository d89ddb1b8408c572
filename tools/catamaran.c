/*
 * catamaran.c - the `catamaran` command: finds the subcommand and hands it
 * the arguments after its own name (commands.h).
 */
#include <stdio.h>
#include <string.h>

#include "tools/commands.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
};

static const struct command commands[] = {
	{ "format", cmd_format },
	{ "status", cmd_status },
	{ "recover", cmd_recover },
	{ "check", cmd_check },
	{ "mount", cmd_mount },
	{ "disk", cmd_disk },
	{ "scrub", cmd_scrub },
	{ "fsck", cmd_fsck },
	{ "bench", cmd_bench },
	{ "mail", cmd_mail },
	{ "torture", cmd_torture },
};

static const char usage[] =
	"Usage: catamaran COMMAND [OPTIONS] [ARGS]\n"
	"\n"
	"Catamaran mirrors two disks (files or block devices) into one crash-safe\n"
	"block device. These commands work on the two disks while no daemon uses them.\n"
	"\n"
	"Commands:\n"
	"  format DISK1 DISK2     write a new mirror with an empty filesystem onto two disks\n"
	"  status DISK1 DISK2     show both superblocks and what recovery would do\n"
	"  recover DISK1 DISK2    bring the disks back in sync after a crash or failure\n"
	"  check DISK1 DISK2      compare both disks block by block (read-only)\n"
	"  mount DISK1 DISK2 DIR  recover and serve the filesystem at DIR (FUSE)\n"
	"  status DIR             a mounted volume: disks, rebuild, journal, cache\n"
	"  disk fail|replace DIR  fail a disk, or replace and rebuild it, while mounted\n"
	"  scrub [--repair] DIR   compare the two disks of a mounted volume online\n"
	"  fsck DISK1 DISK2       check (--repair: fix) the filesystem on the mirror\n"
	"  bench blockdev ...     benchmark the block device layer\n"
	"  bench fs ...           time Maildir deliveries on the filesystem (in-process)\n"
	"  bench maildir DIR      time the same deliveries in any directory\n"
	"  bench mail DIR         the Mailboat workload on the mail store, requests/s\n"
	"  mail serve|adduser ... SMTP and POP3 servers on Maildir mailboxes\n"
	"  torture WORKDIR        kill -9, power cuts and disk pulls under mail load, verified\n"
	"\n"
	"Run 'catamaran help COMMAND' or 'catamaran COMMAND --help' for the options.\n"
	"Exit status: 0 success, 1 a problem was found or left (see each command),\n"
	"2 error or bad usage.\n";

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static int unknown_command(const char *name)
{
	fprintf(stderr, "catamaran: unknown command '%s' (see 'catamaran --help')\n", name);
	return 2;
}

/* `catamaran help [CMD]`: the general usage, or CMD --help. */
static int help(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage, stdout);
		return 0;
	}
	const struct command *c = find_command(argv[1]);
	if (!c)
		return unknown_command(argv[1]);
	char help_opt[] = "--help";
	char *args[] = { argv[1], help_opt, NULL };
	return c->run(2, args);
}

int main(int argc, char **argv)
{
	/* Called by mount(8) for fstab entries of type "catamaran". */
	const char *base = strrchr(argv[0], '/');
	if (strcmp(base ? base + 1 : argv[0], "mount.catamaran") == 0)
		return cmd_mount_helper(argc, argv);
	if (argc < 2) {
		fputs(usage, stderr);
		return 2;
	}
	const char *name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
		fputs(usage, stdout);
		return 0;
	}
	if (strcmp(name, "help") == 0)
		return help(argc - 1, argv + 1);
	const struct command *c = find_command(name);
	if (!c) {
		if (name[0] == '-')
			fprintf(stderr, "catamaran: unknown option '%s' (see 'catamaran --help')\n", name);
		else
			unknown_command(name);
		return 2;
	}
	return c->run(argc - 1, argv + 1);
}
