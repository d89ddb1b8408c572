/*
 * users.c - the users file: one "name:crypt-hash" per line, '#' comments
 * and blank lines allowed. Hashes are made and checked with libxcrypt
 * (crypt_gensalt_rn / crypt_rn, both thread-safe).
 */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mail/mail_internal.h"

struct mail_user {
	char *name;
	char *hash;
};

struct mail_users {
	struct mail_user *v;
	size_t n;
};

void mail_users_free(struct mail_users *users)
{
	if (!users)
		return;
	for (size_t i = 0; i < users->n; i++) {
		free(users->v[i].name);
		free(users->v[i].hash);
	}
	free(users->v);
	free(users);
}

static const struct mail_user *find_user(const struct mail_users *users,
					 const char *name)
{
	for (size_t i = 0; users && i < users->n; i++) {
		if (strcmp(users->v[i].name, name) == 0)
			return &users->v[i];
	}
	return NULL;
}

bool mail_user_exists(const struct mail_users *users, const char *name)
{
	return mail_name_valid(name) && find_user(users, name) != NULL;
}

/* Split "name:hash" in place; -EINVAL if malformed. */
static int parse_line(char *line, char **name, char **hash)
{
	char *colon = strchr(line, ':');
	if (!colon)
		return -EINVAL;
	*colon = '\0';
	*name = line;
	*hash = colon + 1;
	size_t n = strlen(*hash);
	if (n > 0 && (*hash)[n - 1] == '\r')
		(*hash)[--n] = '\0';
	if (!mail_name_valid(*name) || n == 0 || strchr(*hash, ':'))
		return -EINVAL;
	return 0;
}

static bool skip_line(const char *line)
{
	return line[0] == '\0' || line[0] == '#' || strcmp(line, "\r") == 0;
}

static int add_user(struct mail_users *u, const char *name, const char *hash)
{
	if (find_user(u, name))
		return -EINVAL;
	struct mail_user *v = realloc(u->v, (u->n + 1) * sizeof *v);
	if (!v)
		return -ENOMEM;
	u->v = v;
	v[u->n].name = strdup(name);
	v[u->n].hash = strdup(hash);
	if (!v[u->n].name || !v[u->n].hash) {
		free(v[u->n].name);
		free(v[u->n].hash);
		return -ENOMEM;
	}
	u->n++;
	return 0;
}

static int parse_users(char *text, struct mail_users *u)
{
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (skip_line(line))
			continue;
		char *name, *hash;
		int rc = parse_line(line, &name, &hash);
		if (rc == 0)
			rc = add_user(u, name, hash);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int mail_users_load(const char *path, struct mail_users **out)
{
	if (!path || !out)
		return -EINVAL;
	char *text;
	size_t len;
	int rc = io_read_file_at(AT_FDCWD, path, &text, &len);
	if (rc < 0)
		return rc;
	struct mail_users *u = calloc(1, sizeof *u);
	if (!u) {
		free(text);
		return -ENOMEM;
	}
	rc = memchr(text, '\0', len) ? -EINVAL : parse_users(text, u);
	free(text);
	if (rc < 0) {
		mail_users_free(u);
		return rc;
	}
	*out = u;
	return 0;
}

/* crypt_rn into a heap crypt_data (it is large); NULL-safe result copy. */
static int hash_with(const char *password, const char *setting, char **out)
{
	struct crypt_data *cd = calloc(1, sizeof *cd);
	if (!cd)
		return -ENOMEM;
	errno = 0;
	const char *h = crypt_rn(password, setting, cd, sizeof *cd);
	int rc = 0;
	if (!h || h[0] == '*')
		rc = errno ? -errno : -EINVAL;
	else if (!(*out = strdup(h)))
		rc = -ENOMEM;
	free(cd);
	return rc;
}

static bool same_string(const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);
	unsigned char diff = na != nb;
	for (size_t i = 0; i < na && i < nb; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

static int new_setting(char *setting, size_t size)
{
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting, (int)size))
		return 0;
	if (crypt_gensalt_rn("$6$", 0, NULL, 0, setting, (int)size))
		return 0;
	return errno ? -errno : -EINVAL;
}

int mail_user_check(const struct mail_users *users, const char *name,
		    const char *password)
{
	if (!users || !password)
		return -EACCES;
	const struct mail_user *u = mail_name_valid(name)
		? find_user(users, name) : NULL;
	char dummy[CRYPT_GENSALT_OUTPUT_SIZE];
	const char *setting = u ? u->hash : dummy;
	if (!u && new_setting(dummy, sizeof dummy) < 0)
		return -EACCES;
	char *h = NULL;
	int rc = hash_with(password, setting, &h);
	if (rc == -ENOMEM)
		return rc;
	bool ok = rc == 0 && u && same_string(h, u->hash);
	free(h);
	return ok ? 0 : -EACCES;
}

/* ---- adding a user ---- */

/* The users file with name's line replaced by (or appended as) line. */
static int new_contents(const char *old, const char *name, const char *line,
			char **out)
{
	size_t cap = strlen(old) + strlen(line) + 3;
	char *buf = malloc(cap), *p = buf;
	if (!buf)
		return -ENOMEM;
	bool replaced = false;
	size_t nlen = strlen(name);
	for (const char *s = old; *s;) {
		const char *end = strchr(s, '\n');
		size_t n = end ? (size_t)(end - s) : strlen(s);
		bool mine = n > nlen && strncmp(s, name, nlen) == 0 &&
			    s[nlen] == ':';
		const char *src = mine && !replaced ? line : s;
		size_t len = mine && !replaced ? strlen(line) : n;
		if (!(mine && replaced)) {
			memcpy(p, src, len);
			p += len;
			*p++ = '\n';
		}
		replaced |= mine;
		s += n + (end ? 1 : 0);
	}
	if (!replaced) {
		strcpy(p, line);
		p += strlen(line);
		*p++ = '\n';
	}
	*p = '\0';
	*out = buf;
	return 0;
}

static int read_old(const char *path, char **text)
{
	size_t len;
	int rc = io_read_file_at(AT_FDCWD, path, text, &len);
	if (rc == -ENOENT) {
		*text = strdup("");
		return *text ? 0 : -ENOMEM;
	}
	if (rc == 0 && memchr(*text, '\0', len)) {
		free(*text);
		return -EINVAL;
	}
	return rc;
}

static int lock_users(const char *path)
{
	char lpath[MAIL_PATH_MAX];
	int n = snprintf(lpath, sizeof lpath, "%s.lock", path);
	if (n < 0 || n >= (int)sizeof lpath)
		return -ENAMETOOLONG;
	int fd = io_open_at(AT_FDCWD, lpath, O_RDWR | O_CREAT, 0600);
	if (fd < 0)
		return fd;
	struct flock fl;
	memset(&fl, 0, sizeof fl);
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	while (fcntl(fd, F_OFD_SETLKW, &fl) < 0) {
		if (errno != EINTR) {
			int rc = -errno;
			io_close(fd);
			return rc;
		}
	}
	return fd;
}

/* The directory of path, for the fsync after rename. */
static int parent_dir(const char *path, char *out)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return snprintf(out, MAIL_PATH_MAX, ".") < 0 ? -EINVAL : 0;
	size_t n = slash == path ? 1 : (size_t)(slash - path);
	if (n >= MAIL_PATH_MAX)
		return -ENAMETOOLONG;
	memcpy(out, path, n);
	out[n] = '\0';
	return 0;
}

/* Write text to PATH.tmp (0600), fsync, rename over path, fsync dir. */
static int replace_file(const char *path, const char *text)
{
	char tmp[MAIL_PATH_MAX], dir[MAIL_PATH_MAX];
	int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
	if (n < 0 || n >= (int)sizeof tmp)
		return -ENAMETOOLONG;
	int rc = parent_dir(path, dir);
	if (rc < 0)
		return rc;
	int fd = io_open_at(AT_FDCWD, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return fd;
	rc = fchmod(fd, 0600) < 0 ? -errno : 0;
	if (rc == 0)
		rc = io_write_all(fd, text, strlen(text));
	if (rc == 0)
		rc = io_fsync(fd);
	int rc2 = io_close(fd);
	if (rc == 0)
		rc = rc2;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		(void)unlink(tmp);
		return rc;
	}
	return io_fsync_dir_at(AT_FDCWD, dir);
}

static int make_line(const char *name, const char *password, char **line)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	int rc = new_setting(setting, sizeof setting);
	char *hash = NULL;
	if (rc == 0)
		rc = hash_with(password, setting, &hash);
	if (rc < 0)
		return rc;
	size_t n = strlen(name) + strlen(hash) + 2;
	*line = malloc(n);
	if (*line)
		snprintf(*line, n, "%s:%s", name, hash);
	free(hash);
	return *line ? 0 : -ENOMEM;
}

int mail_user_add(const char *path, const char *name, const char *password)
{
	if (!path || !mail_name_valid(name) || !password || !password[0])
		return -EINVAL;
	char *line = NULL, *old = NULL, *text = NULL;
	int rc = make_line(name, password, &line);
	if (rc < 0)
		return rc;
	int lock_fd = lock_users(path);
	rc = lock_fd < 0 ? lock_fd : read_old(path, &old);
	if (rc == 0)
		rc = new_contents(old, name, line, &text);
	if (rc == 0)
		rc = replace_file(path, text);
	if (lock_fd >= 0)
		io_close(lock_fd);
	free(line);
	free(old);
	free(text);
	return rc;
}
