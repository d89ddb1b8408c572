/*
 * ledger.c - what the load was told, message by message (torture.h).
 *
 * An array of entries indexed by creation order plus a hash table from
 * token to index; one mutex. Every change is appended to the log file as a
 * line "STATE TOKEN USER HASH" so a failed run can be read afterwards; the
 * file is outside the volume and only for people, the memory copy decides.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/torture/torture.h"

struct entry {
	char token[32];
	int user;
	enum msg_state state;
	uint64_t hash;
};

struct ledger {
	pthread_mutex_t mu;
	struct entry *e;
	size_t n, cap;
	long *table;            /* open addressing: index or -1 */
	size_t table_size;
	uint64_t acked_total;
	FILE *log;
};

static const char *state_name[] = { "sent", "acked", "delete-pending", "deleted", "absent" };

static uint64_t token_hash(const char *t)
{
	return body_hash(t, strlen(t));
}

static void table_put(struct ledger *l, size_t idx)
{
	size_t m = l->table_size - 1, i = token_hash(l->e[idx].token) & m;
	while (l->table[i] >= 0)
		i = (i + 1) & m;
	l->table[i] = (long)idx;
}

static int grow(struct ledger *l)
{
	size_t cap = l->cap ? l->cap * 2 : 4096;
	struct entry *e = realloc(l->e, cap * sizeof(*e));
	long *t = malloc(cap * 2 * sizeof(*t));
	if (!e || !t) {
		free(t);
		if (e)
			l->e = e;
		return -ENOMEM;
	}
	l->e = e;
	l->cap = cap;
	free(l->table);
	l->table = t;
	l->table_size = cap * 2;
	memset(t, 0xff, l->table_size * sizeof(*t));
	for (size_t i = 0; i < l->n; i++)
		table_put(l, i);
	return 0;
}

int ledger_open(const char *path, struct ledger **out)
{
	struct ledger *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	pthread_mutex_init(&l->mu, NULL);
	l->log = fopen(path, "w");
	if (!l->log || grow(l)) {
		int r = l->log ? -ENOMEM : -errno;
		ledger_close(l);
		return r;
	}
	*out = l;
	return 0;
}

void ledger_close(struct ledger *l)
{
	if (!l)
		return;
	if (l->log)
		fclose(l->log);
	free(l->e);
	free(l->table);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

static void log_entry(struct ledger *l, const struct entry *e)
{
	fprintf(l->log, "%s %s user%d %016" PRIx64 "\n", state_name[e->state], e->token,
		e->user, e->hash);
}

size_t ledger_new(struct ledger *l, int user, uint64_t hash, char token[32])
{
	pthread_mutex_lock(&l->mu);
	if (l->n == l->cap && grow(l)) {
		fprintf(stderr, "catamaran torture: out of memory\n");
		exit(2);
	}
	size_t idx = l->n++;
	struct entry *e = &l->e[idx];
	snprintf(e->token, sizeof(e->token), "T%zu.%04x", idx, (unsigned)(hash & 0xffff));
	e->user = user;
	e->hash = hash;
	e->state = MSG_SENT;
	table_put(l, idx);
	log_entry(l, e);
	memcpy(token, e->token, sizeof(e->token));
	pthread_mutex_unlock(&l->mu);
	return idx;
}

void ledger_set(struct ledger *l, size_t idx, enum msg_state s)
{
	pthread_mutex_lock(&l->mu);
	/* A reader may have picked the message up and deleted it before its
	 * writer saw the 250: the acknowledgement does not undo that. */
	bool late_ack = s == MSG_ACKED && l->e[idx].state != MSG_SENT;
	if (s == MSG_ACKED)
		l->acked_total++;
	if (!late_ack)
		l->e[idx].state = s;
	log_entry(l, &l->e[idx]);
	pthread_mutex_unlock(&l->mu);
}

long ledger_find(struct ledger *l, const char *token)
{
	pthread_mutex_lock(&l->mu);
	size_t m = l->table_size - 1, i = token_hash(token) & m;
	long found = -1;
	for (; l->table[i] >= 0; i = (i + 1) & m)
		if (!strcmp(l->e[l->table[i]].token, token)) {
			found = l->table[i];
			break;
		}
	pthread_mutex_unlock(&l->mu);
	return found;
}

#define GETTER(name, type, field)                           \
	type name(struct ledger *l, size_t idx)             \
	{                                                   \
		pthread_mutex_lock(&l->mu);                 \
		type v = l->e[idx].field;                   \
		pthread_mutex_unlock(&l->mu);               \
		return v;                                   \
	}
GETTER(ledger_state, enum msg_state, state)
GETTER(ledger_user, int, user)
GETTER(ledger_hash, uint64_t, hash)

size_t ledger_count(struct ledger *l)
{
	pthread_mutex_lock(&l->mu);
	size_t n = l->n;
	pthread_mutex_unlock(&l->mu);
	return n;
}

uint64_t ledger_acked_total(struct ledger *l)
{
	pthread_mutex_lock(&l->mu);
	uint64_t n = l->acked_total;
	fflush(l->log);
	pthread_mutex_unlock(&l->mu);
	return n;
}
