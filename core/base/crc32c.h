/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum of every on-disk structure.
 *
 * Uses the SSE4.2 instruction when the CPU has it, a table otherwise; both
 * give the same result. Thread-safe, no state. crc32c(0, buf, len) is the
 * standard CRC-32C of buf (initial ~0, final xor, as iSCSI/ext4 use it).
 */
#ifndef CAT_BASE_CRC32C_H
#define CAT_BASE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: crc32c(crc32c(0, a, n), b, m) == crc32c(0, a||b, n+m). */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#endif
