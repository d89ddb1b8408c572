/*
 * mem_disk.c - a bdev in anonymous memory.
 *
 * The image is one private anonymous mapping, so a large, mostly untouched
 * test disk costs only the pages written. Each 64-block stripe has a
 * reader-writer lock; a request takes the lock of one stripe at a time, so
 * every single block is read or written atomically (multi-block requests
 * are not atomic as a whole, as on a real disk).
 */
#include "blockdev/testdev/mem_disk.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define STRIPE_BLOCKS 64u

struct mem_disk {
	struct bdev b;
	uint8_t *data;
	size_t bytes;
	pthread_rwlock_t *stripes;
	uint64_t nstripes;
};

static struct mem_disk *to_mem(struct bdev *d) { return (struct mem_disk *)d; }

/* Copy between the image and an iovec, one stripe-locked run at a time. */
static int mem_transfer(struct bdev *d, uint64_t blkno, const struct iovec *iov,
			int iovcnt, bool write)
{
	struct mem_disk *m = to_mem(d);
	for (int i = 0; i < iovcnt; i++) {
		uint8_t *buf = iov[i].iov_base;
		uint64_t left = iov[i].iov_len >> BDEV_BLOCK_SHIFT;
		while (left) {
			uint64_t stripe = blkno / STRIPE_BLOCKS;
			uint64_t run = STRIPE_BLOCKS - blkno % STRIPE_BLOCKS;
			if (run > left)
				run = left;
			uint8_t *img = m->data + (blkno << BDEV_BLOCK_SHIFT);
			size_t len = run << BDEV_BLOCK_SHIFT;
			if (write) {
				pthread_rwlock_wrlock(&m->stripes[stripe]);
				memcpy(img, buf, len);
			} else {
				pthread_rwlock_rdlock(&m->stripes[stripe]);
				memcpy(buf, img, len);
			}
			pthread_rwlock_unlock(&m->stripes[stripe]);
			buf += len;
			blkno += run;
			left -= run;
		}
	}
	return 0;
}

static int mem_readv(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt)
{
	return mem_transfer(d, blkno, iov, iovcnt, false);
}

static int mem_writev(struct bdev *d, uint64_t blkno, const struct iovec *iov, int iovcnt)
{
	return mem_transfer(d, blkno, iov, iovcnt, true);
}

static int mem_flush(struct bdev *d)
{
	(void)d;
	return 0; /* memory is the platter: nothing volatile to push */
}

static void mem_close(struct bdev *d)
{
	struct mem_disk *m = to_mem(d);
	for (uint64_t i = 0; i < m->nstripes; i++)
		pthread_rwlock_destroy(&m->stripes[i]);
	free(m->stripes);
	munmap(m->data, m->bytes);
	free(m);
}

static const struct bdev_ops mem_disk_ops = {
	.readv = mem_readv,
	.writev = mem_writev,
	.flush = mem_flush,
	.close = mem_close,
};

struct bdev *mem_disk_create(uint64_t nblocks, const char *name)
{
	if (nblocks == 0 || nblocks > (SIZE_MAX >> BDEV_BLOCK_SHIFT))
		return NULL;
	struct mem_disk *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->bytes = (size_t)nblocks << BDEV_BLOCK_SHIFT;
	m->data = mmap(NULL, m->bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	m->nstripes = (nblocks + STRIPE_BLOCKS - 1) / STRIPE_BLOCKS;
	m->stripes = calloc(m->nstripes, sizeof(*m->stripes));
	if (m->data == MAP_FAILED || !m->stripes) {
		if (m->data != MAP_FAILED)
			munmap(m->data, m->bytes);
		free(m->stripes);
		free(m);
		return NULL;
	}
	for (uint64_t i = 0; i < m->nstripes; i++)
		pthread_rwlock_init(&m->stripes[i], NULL);
	m->b.ops = &mem_disk_ops;
	m->b.nblocks = nblocks;
	snprintf(m->b.name, sizeof(m->b.name), "%s", name ? name : "mem");
	return &m->b;
}

uint8_t *mem_disk_block(struct bdev *d, uint64_t blkno)
{
	if (!d || d->ops != &mem_disk_ops || blkno >= d->nblocks)
		return NULL;
	return to_mem(d)->data + (blkno << BDEV_BLOCK_SHIFT);
}
