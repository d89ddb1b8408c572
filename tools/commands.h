/*
 * commands.h - the subcommands of the `catamaran` binary. Each takes the
 * arguments after its own name (argv[0] is the subcommand name) and returns
 * the process exit status. Subcommands print their own errors as one line
 * "catamaran CMD: DISK: problem" on stderr.
 */
#ifndef CAT_TOOLS_COMMANDS_H
#define CAT_TOOLS_COMMANDS_H

#include <stdbool.h>

int cmd_format(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_recover(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_mount(int argc, char **argv);    /* serve through FUSE (fuse/daemon.h) */
/* As /sbin/mount.catamaran: DISK1:DISK2 MOUNTPOINT [-o OPTS] (fstab). */
int cmd_mount_helper(int argc, char **argv);
/* A mounted volume, through its daemon's control socket (cmd_admin.c). */
int cmd_disk(int argc, char **argv);
int cmd_scrub(int argc, char **argv);
int cmd_status_mounted(const char *mountpoint, bool json);
int cmd_fsck(int argc, char **argv);    /* e2fsck exit statuses: 0/1/4/8/16 */
int cmd_bench(int argc, char **argv);   /* bench blockdev|fs|maildir ... */
/* Called by cmd_bench with argv[0] = "fs" / "maildir" (cmd_bench_fs.c). */
int cmd_bench_fs(int argc, char **argv);
int cmd_bench_maildir(int argc, char **argv);
int cmd_bench_mail(int argc, char **argv);   /* bench mail: Mailboat workload (cmd_bench_mail.c) */
int cmd_mail(int argc, char **argv);    /* mail serve|adduser (cmd_mail.c) */
int cmd_torture(int argc, char **argv); /* torture/cmd_torture.c */

#endif
