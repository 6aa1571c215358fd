/* fnv.h -- FNV-1a, the 64-bit hash of byte strings the llm modules share (not for anything an attacker picks). */
#ifndef NATTER_FNV_H
#define NATTER_FNV_H

#include <stddef.h>
#include <stdint.h>

#define FNV_INIT 1469598103934665603ULL

/* H carried on over P[0..N): start from FNV_INIT, chain calls to hash
 * several pieces as one. */
static inline uint64_t
fnv(uint64_t h, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)p[i]) * 1099511628211ULL;
	return h;
}

#endif
