/*
 * verify.c - compare the mailboxes with the ledger (torture.h).
 *
 * Runs with the load stopped. Every file in ROOT/userN/new and cur is read
 * and checked against its own hash (partial otherwise); a token seen twice
 * is duplicated; a token the ledger has as deleted (or found absent before)
 * is resurrected; an acknowledged, undeleted token not seen is lost. The
 * uncertain states are settled by what is found: a message sent without an
 * acknowledgement becomes acknowledged if present (it must stay) or absent
 * (it must never appear); a pending delete becomes deleted if gone, or
 * acknowledged again if its QUIT never took effect.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/torture/torture.h"

static int read_file(int dirfd, const char *name, char **out, size_t *len)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		int e = -errno;
		if (fd >= 0)
			close(fd);
		return e;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (buf && got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (!buf)
		return -ENOMEM;
	*out = buf;
	*len = got;
	return 0;
}

/* seen[idx] counts the copies of each ledger entry found. */
static int scan_dir(const char *path, struct ledger *l, struct violations *v,
		    unsigned char *seen, size_t nseen, struct verify_result *res)
{
	DIR *d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char *msg = NULL, token[32];
		size_t len = 0;
		int r = read_file(dirfd(d), de->d_name, &msg, &len);
		if (r == -ENOENT)
			continue;
		if (r) {
			closedir(d);
			return r;
		}
		res->present++;
		r = message_check(msg, len, token);
		free(msg);
		if (r) {
			res->partial++;
			atomic_fetch_add(&v->partial, 1);
			fprintf(stderr, "catamaran torture: %s/%s: damaged or partial message\n",
				path, de->d_name);
			continue;
		}
		long idx = ledger_find(l, token);
		if (idx < 0 || (size_t)idx >= nseen) {
			fprintf(stderr, "catamaran torture: %s/%s: unknown token %s\n", path,
				de->d_name, token);
			res->partial++;
			atomic_fetch_add(&v->partial, 1);
			continue;
		}
		res->verified++;
		if (seen[idx] < 255)
			seen[idx]++;
	}
	closedir(d);
	return 0;
}

static void settle(struct ledger *l, size_t idx, unsigned copies, struct violations *v,
		   struct verify_result *res)
{
	enum msg_state s = ledger_state(l, idx);
	if (copies > 1) {
		res->duplicated++;
		atomic_fetch_add(&v->duplicated, 1);
		fprintf(stderr, "catamaran torture: message %zu found %u times\n", idx, copies);
	}
	if (copies && (s == MSG_DELETED || s == MSG_ABSENT)) {
		res->resurrected++;
		atomic_fetch_add(&v->resurrected, 1);
		fprintf(stderr, "catamaran torture: message %zu is back after it was %s\n", idx,
			s == MSG_DELETED ? "deleted" : "found absent");
	} else if (!copies && s == MSG_ACKED) {
		res->lost++;
		atomic_fetch_add(&v->lost, 1);
		fprintf(stderr, "catamaran torture: acknowledged message %zu (user%d) is lost\n",
			idx, ledger_user(l, idx));
	} else if (s == MSG_SENT || s == MSG_DELETE_PENDING) {
		if (copies)
			ledger_set(l, idx, MSG_ACKED);
		else
			ledger_set(l, idx, s == MSG_SENT ? MSG_ABSENT : MSG_DELETED);
	}
}

int verify_mailboxes(const char *root, struct ledger *l, struct violations *v,
		     struct verify_result *res)
{
	size_t n = ledger_count(l);
	unsigned char *seen = calloc(n ? n : 1, 1);
	if (!seen)
		return -ENOMEM;
	*res = (struct verify_result){ 0 };
	int r = 0;
	for (int u = 0; u < TORTURE_USERS && !r; u++)
		for (int sub = 0; sub < 2 && !r; sub++) {
			char path[900];
			snprintf(path, sizeof(path), "%s/user%d/%s", root, u, sub ? "cur" : "new");
			r = scan_dir(path, l, v, seen, n, res);
		}
	for (size_t i = 0; i < n && !r; i++)
		settle(l, i, seen[i], v, res);
	free(seen);
	return r;
}
