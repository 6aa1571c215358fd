/* sha256.h -- SHA-256 (FIPS 180-4), for identifying model files. */
#ifndef NATTER_SHA256_H
#define NATTER_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct sha256 {
	uint32_t h[8];
	uint64_t len;
	uint8_t buf[64];
	size_t nbuf;
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t n);
/* Writes the digest as 64 lowercase hex digits and a NUL into HEX (65 bytes). */
void sha256_final_hex(struct sha256 *s, char *hex);
/* Hashes a whole file; returns 0, or -1 with ERR set. */
int sha256_file(const char *path, char *hex, char *err, size_t errlen);

#endif
